//! What every command-line binary shares: logging to stderr and the exit status.

use std::collections::BTreeMap;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Runs a command with logging on: success exits 0; an error is printed with its causes and
/// exits 1.
pub fn main(run: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    init_logging();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The training config in the JSON file at `path` (as written beside every artifact), or the
/// default model's when there is none.
///
/// # Errors
/// When the file cannot be read or is not a training config.
pub fn training_config(
    path: Option<&std::path::Path>,
) -> anyhow::Result<volcast_model::config::TrainingConfig> {
    use anyhow::Context as _;
    let Some(path) = path else {
        return Ok(volcast_model::config::TrainingConfig::default_run());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a training config", path.display()))
}

/// Adaptive-calibration steps given on a command line (`--quantile-step`, `--drawdown-step`),
/// flattened into a command's arguments; each overrides the artifact's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdaptiveSteps {
    /// Step of each RV quantile's level per completed forecast (adaptive calibration), in [0, 0.1];
    /// 0 keeps the levels fixed. Default: the artifact's.
    #[arg(long, value_parser = step)]
    pub quantile_step: Option<f64>,
    /// Step of the drawdown's log miscoverage factor per completed window, in [0, 0.1]; 0 keeps it
    /// fixed. Default: the artifact's.
    #[arg(long, value_parser = step)]
    pub drawdown_step: Option<f64>,
    /// Choose the daily weight of the network against HAR on the forecasts as they were served
    /// (`true`) or re-scaled by the window's own scale (`false`). Default: the artifact's.
    #[arg(long)]
    pub blend_as_served: Option<bool>,
    /// Choose the daily weight as served at these horizons only (comma-separated hours, e.g.
    /// `168`; `none` for no horizon). Default: the artifact's.
    #[arg(long, value_parser = horizon_list)]
    pub blend_as_served_at: Option<HorizonList>,
    /// At the horizons whose weight is chosen as served, also choose each day how much of the
    /// variance correction to apply (its power: 0, 0.5 or 1), with the weight, on the window's
    /// forecasts as they would have been served. Default: the artifact's.
    #[arg(long, value_name = "true|false")]
    pub shrink_as_served: Option<bool>,
    /// Stack the shortage probability each day: a logistic map of the network's logit and the
    /// baseline score's log, fitted on the window's completed origins. Default: the artifact's.
    #[arg(long, value_name = "true|false")]
    pub shortage_stack: Option<bool>,
    /// Guard the blend with HAR: serve HAR alone at a horizon on the days when the weighting
    /// rule's forecasts since the fit end have scored worse (cumulative QLIKE) than HAR's.
    /// Default: the artifact's.
    #[arg(long, value_name = "true|false")]
    pub har_guard: Option<bool>,
    /// At the horizons whose weight is chosen as served, let the weight's window grow with the
    /// history since the fit end, from the corrections' window up to DAYS (1 to 3650); `none`:
    /// the corrections' window. Default: the artifact's.
    #[arg(long, value_name = "DAYS|none", value_parser = window_days)]
    pub blend_window_max_days: Option<WindowDays>,
}

/// `--blend-window-max-days`: a number of days, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowDays(pub Option<usize>);

fn window_days(s: &str) -> Result<WindowDays, String> {
    if s.trim() == "none" {
        return Ok(WindowDays(None));
    }
    let days: usize = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a number of days: {e}"))?;
    if (1..=3650).contains(&days) {
        Ok(WindowDays(Some(days)))
    } else {
        Err(format!("{days} is not between 1 and 3650 days (or none)"))
    }
}

/// A comma-separated list of horizons in hours (`none`: empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HorizonList(pub Vec<usize>);

fn horizon_list(s: &str) -> Result<HorizonList, String> {
    if s.trim() == "none" {
        return Ok(HorizonList(Vec::new()));
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let h: usize = part
            .trim()
            .parse()
            .map_err(|e| format!("{part:?} is not a horizon in hours: {e}"))?;
        if h == 0 || h > 24 * 7 * 4 {
            return Err(format!("{h} is not a horizon between 1 and 672 hours"));
        }
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out.sort_unstable();
    Ok(HorizonList(out))
}

/// `--term-structure`: which horizons' network variance is carried from a shorter horizon's
/// (`168=24`: the week is HAR's week times the network's next day over HAR's; comma-separated
/// pairs; `none`: every horizon the network's own). See `Metadata::term_structure`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermStructure(pub BTreeMap<usize, usize>);

/// Parses [`TermStructure`].
///
/// # Errors
/// Anything but `none` or `TO=FROM` pairs of horizons in hours, each TO given once.
pub fn term_structure(s: &str) -> Result<TermStructure, String> {
    let mut out = BTreeMap::new();
    if s.trim() == "none" {
        return Ok(TermStructure(out));
    }
    for part in s.split(',') {
        let (to, from) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not TO=FROM (e.g. 168=24)"))?;
        let to = horizon_list(to)?.0;
        let from = horizon_list(from)?.0;
        let ([to], [from]) = (to.as_slice(), from.as_slice()) else {
            return Err(format!("{part:?} is not one horizon = one horizon"));
        };
        if out.insert(*to, *from).is_some() {
            return Err(format!("{to} h is given twice"));
        }
    }
    Ok(TermStructure(out))
}

/// `model` with the week (or any horizon) carried as `--term-structure` says, or as it is
/// without the flag. With `fixed` corrections (`--fixed-recalibration`) a term structure other
/// than the artifact's is refused: its stored corrections were measured on other forecasts,
/// while operated (the default) they are re-measured every day on the carried ones.
///
/// # Errors
/// That refusal, or a term structure the model cannot carry, naming the flag.
pub fn with_term_structure(
    model: volcast_model::inference::LoadedModel,
    term_structure: Option<&BTreeMap<usize, usize>>,
    fixed: bool,
) -> anyhow::Result<volcast_model::inference::LoadedModel> {
    let Some(t) = term_structure.filter(|t| **t != model.metadata.term_structure) else {
        return Ok(model);
    };
    if fixed {
        anyhow::bail!(
            "--term-structure with --fixed-recalibration: the artifact's stored corrections were              measured without that term structure; score it operated (without              --fixed-recalibration), where they are re-measured daily on the carried forecasts"
        );
    }
    model
        .with_term_structure(t)
        .map_err(|e| anyhow::anyhow!("--term-structure: {e}"))
}

/// `--recency-half-life-days`: a positive number of days, or `none` (every training row counts
/// the same); see `TrainingConfig::recency_half_life_days`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HalfLife(pub Option<f64>);

/// Parses [`HalfLife`] in days.
///
/// # Errors
/// Anything but `none` or a positive, finite number.
pub fn half_life_days(s: &str) -> Result<HalfLife, String> {
    half_life(s, "days")
}

/// Parses `--weight-average-half-life-epochs`: a positive number of epochs, or `none` (the
/// weights after each epoch's last step); see `TrainingConfig::weight_average_half_life_epochs`.
///
/// # Errors
/// Anything but `none` or a positive, finite number.
pub fn half_life_epochs(s: &str) -> Result<HalfLife, String> {
    half_life(s, "epochs")
}

/// A positive number of `unit`, or `none`.
fn half_life(s: &str, unit: &str) -> Result<HalfLife, String> {
    if s.trim() == "none" {
        return Ok(HalfLife(None));
    }
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a number of {unit}: {e}"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("{value} is not a positive number of {unit} (or none)"));
    }
    Ok(HalfLife(Some(value)))
}

/// The training settings that define the model's design, as flags shared by `train` and
/// `walkforward` (flattened into each); every one absent leaves the config's value.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DesignFlags {
    /// Weight recent training rows up: each row's losses count 0.5^(age / DAYS), its age the
    /// days before the holdout starts; `none`: every row the same. Default: the config's.
    #[arg(long, value_name = "DAYS|none", value_parser = half_life_days)]
    pub recency_half_life_days: Option<HalfLife>,
    /// Train until the fit end: after early stopping picks the epoch count on the holdout, train
    /// each network again from the same start for that many epochs on every origin up to the fit
    /// end (the holdout's included) and serve that one. Default: the config's.
    #[arg(long, value_name = "true|false")]
    pub refit_through_holdout: Option<bool>,
    /// Average the weights over the last steps: an exponential moving average after every step
    /// with this half-life in epochs, scored on the holdout and served; `none`: the weights after
    /// each epoch's last step. Default: the config's.
    #[arg(long, value_name = "EPOCHS|none", value_parser = half_life_epochs)]
    pub weight_average_half_life_epochs: Option<HalfLife>,
    /// Serve each horizon by networks trained for its own epochs (its best holdout QLIKE in the
    /// first run; needs the refit). Default: the config's.
    #[arg(long, value_name = "true|false")]
    pub per_horizon_epochs: Option<bool>,
    /// Train the log-variance head on the squared error of log RV instead of QLIKE (early
    /// stopping on the holdout's QLIKE after its own variance scale). Default: the config's.
    #[arg(long, value_name = "true|false")]
    pub log_mse_variance: Option<bool>,
    /// Serve the log variance as the lognormal mean, the head's mean of log RV plus half the
    /// variance of log RV read from the network's quantiles (needs `--log-mse-variance true`).
    /// Default: the config's.
    #[arg(long, value_name = "true|false")]
    pub lognormal_mean: Option<bool>,
    /// Start the shortage head from SPEC's baseline: its linear skip set to the logistic map of
    /// the label on the log shortage score, fitted on the training rows, and frozen, so the
    /// network learns a correction. Default: the config's.
    #[arg(long, value_name = "true|false")]
    pub shortage_skip_from_baseline: Option<bool>,
    /// Fit the log-variance skip on QLIKE: its least-squares start refined to the minimum of the
    /// training rows' summed QLIKE (same rows, columns and ridge). Default: the config's.
    #[arg(long, value_name = "true|false")]
    pub skip_qlike: Option<bool>,
    /// The static features the log-variance skip's least squares runs on, by name or index,
    /// comma-separated (e.g. `ln_rv24,ln_rv168,ln_rv720`, SPEC's HAR regressors), or `all`; the
    /// others start at zero. Default: the config's.
    #[arg(long, value_name = "NAMES|all", value_parser = skip_features)]
    pub skip_features: Option<SkipFeatures>,
    /// An exception to `--skip-features` at one horizon, `H=NAMES|all` (e.g.
    /// `168=ln_rv24,ln_rv168,ln_rv720`); repeat it for several horizons. Given at all, it
    /// replaces the config's exceptions. Default: the config's.
    #[arg(long, value_name = "H=NAMES|all", value_parser = skip_features_at)]
    pub skip_features_at: Vec<(usize, SkipFeatures)>,
    /// Horizons served by networks trained apart, `H[,H]=NAMES|all` (e.g.
    /// `168=ln_rv24,ln_rv168,ln_rv720`): as many networks again, trained with the run's config
    /// but the log-variance skip on NAMES, serve those horizons, the run's networks the others
    /// (twice the training time and networks); `none`: every network serves every horizon.
    /// Default: the config's (the default run: `168=ln_rv24,ln_rv168,ln_rv720`).
    #[arg(long, value_name = "H[,H]=NAMES|all|none", value_parser = networks_apart)]
    pub networks_apart: Option<NetworksApartArg>,
}

/// `--networks-apart`: the config's `networks_apart`, or `None` for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworksApartArg(pub Option<volcast_model::config::NetworksApart>);

/// Parses `--networks-apart`: `none`, or comma-separated horizons in hours, `=`, then what
/// [`skip_features`] takes (whether the model forecasts at them is checked when the run starts).
///
/// # Errors
/// No `=`, a horizon that is not a positive whole number of hours, or a bad list.
pub fn networks_apart(s: &str) -> Result<NetworksApartArg, String> {
    if s.trim() == "none" {
        return Ok(NetworksApartArg(None));
    }
    let Some((hours, list)) = s.split_once('=') else {
        return Err(format!(
            "{s:?}: give H[,H]=NAMES, e.g. 168=ln_rv24,ln_rv168,ln_rv720, or none"
        ));
    };
    let horizons = hours
        .split(',')
        .map(|h| horizon_hours(h, "H[,H]=NAMES"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworksApartArg(Some(volcast_model::config::NetworksApart {
        horizons,
        skip_features: skip_features(list)?.0,
    })))
}

/// `--skip-features`: static feature columns, sorted and deduplicated; empty means all of them
/// (as `TrainingConfig::skip_features` reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipFeatures(pub Vec<usize>);

/// Parses `--skip-features-at`: `H=` then what [`skip_features`] takes; `H` a positive number of
/// hours (whether the model forecasts at it is checked when the run starts).
///
/// # Errors
/// No `=`, an `H` that is not a positive whole number of hours, or a bad list.
pub fn skip_features_at(s: &str) -> Result<(usize, SkipFeatures), String> {
    let Some((h, list)) = s.split_once('=') else {
        return Err(format!("{s:?}: give H=NAMES, e.g. 168=ln_rv24,ln_rv168,ln_rv720"));
    };
    Ok((horizon_hours(h, "H=NAMES")?, skip_features(list)?))
}

/// One horizon of a `form` argument (`H=NAMES`, ...): a positive whole number of hours.
fn horizon_hours(h: &str, form: &str) -> Result<usize, String> {
    h.trim()
        .parse::<usize>()
        .ok()
        .filter(|&h| h > 0)
        .ok_or_else(|| format!("{h:?} is not a horizon in hours (give {form})"))
}

/// Parses [`SkipFeatures`]: `all`, or a comma-separated list of static feature names
/// (`volcast_core::features::STATIC_NAMES`) or their indices.
///
/// # Errors
/// An empty list or item, or a name or index that is not a static feature (the message lists them).
pub fn skip_features(s: &str) -> Result<SkipFeatures, String> {
    use volcast_core::features::STATIC_NAMES;
    if s.trim() == "all" {
        return Ok(SkipFeatures(Vec::new()));
    }
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim) {
        let index = STATIC_NAMES
            .iter()
            .position(|n| *n == item)
            .or_else(|| item.parse::<usize>().ok().filter(|&i| i < STATIC_NAMES.len()));
        match index {
            Some(i) => out.push(i),
            None => {
                return Err(format!(
                    "{item:?} is not a static feature: give `all`, or names or indices 0..{} of {}",
                    STATIC_NAMES.len() - 1,
                    STATIC_NAMES.join(", ")
                ));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(SkipFeatures(out))
}

impl DesignFlags {
    /// Sets in `config` every setting given, then checks the skip's columns (given here or in
    /// the config), so that a bad one is refused before any data is read.
    ///
    /// # Errors
    /// A skip column or horizon the model does not have, or networks apart that do not fit
    /// (`TrainingConfig::networks_apart_config`).
    pub fn apply(&self, config: &mut volcast_model::config::TrainingConfig) -> anyhow::Result<()> {
        if let Some(v) = self.recency_half_life_days {
            config.recency_half_life_days = v.0;
        }
        if let Some(v) = self.refit_through_holdout {
            config.refit_through_holdout = Some(v);
        }
        if let Some(v) = self.weight_average_half_life_epochs {
            config.weight_average_half_life_epochs = v.0;
        }
        if let Some(v) = self.per_horizon_epochs {
            config.per_horizon_epochs = Some(v);
        }
        if let Some(v) = self.log_mse_variance {
            config.log_mse_variance = Some(v);
        }
        if let Some(v) = self.lognormal_mean {
            config.model.lognormal_mean = Some(v);
        }
        if let Some(v) = self.shortage_skip_from_baseline {
            config.shortage_skip_from_baseline = Some(v);
        }
        if let Some(v) = self.skip_qlike {
            config.skip_qlike = Some(v);
        }
        if let Some(v) = &self.skip_features {
            config.skip_features.clone_from(&v.0);
        }
        if !self.skip_features_at.is_empty() {
            config.skip_features_at = Some(
                self.skip_features_at
                    .iter()
                    .map(|(h, c)| (*h, c.0.clone()))
                    .collect(),
            );
        }
        if let Some(v) = &self.networks_apart {
            config.networks_apart.clone_from(&v.0);
        }
        config
            .networks_apart_config(&volcast_core::forecast::HORIZONS)
            .map(drop)
            .map_err(anyhow::Error::msg)
    }
}

impl AdaptiveSteps {
    /// Refuses a `--blend-as-served-at` horizon that the model does not forecast, and
    /// `--shrink-as-served true` or `--blend-window-max-days DAYS` with no horizon blended as
    /// served (each would change nothing, silently).
    ///
    /// # Errors
    /// The first such horizon, with the model's; or the shrink or the window with no horizon to
    /// act at.
    pub fn check_horizons(&self, horizons: &[usize]) -> anyhow::Result<()> {
        if let Some(h) = self
            .blend_as_served_at
            .iter()
            .flat_map(|l| &l.0)
            .find(|h| !horizons.contains(h))
        {
            anyhow::bail!("--blend-as-served-at {h}: the model forecasts at {horizons:?} hours only");
        }
        let no_horizon = self.blend_as_served_at.as_ref().is_some_and(|l| l.0.is_empty())
            && self.blend_as_served != Some(true);
        if self.shrink_as_served == Some(true) && no_horizon {
            anyhow::bail!(
                "--shrink-as-served true acts at the horizons blended as served, and \
                 --blend-as-served-at none leaves none"
            );
        }
        if let (Some(WindowDays(Some(days))), true) = (self.blend_window_max_days, no_horizon) {
            anyhow::bail!(
                "--blend-window-max-days {days} acts at the horizons blended as served, and \
                 --blend-as-served-at none leaves none"
            );
        }
        Ok(())
    }

    /// Whether no setting is given.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.quantile_step.is_none()
            && self.drawdown_step.is_none()
            && self.blend_as_served.is_none()
            && self.blend_as_served_at.is_none()
            && self.shrink_as_served.is_none()
            && self.shortage_stack.is_none()
            && self.har_guard.is_none()
            && self.blend_window_max_days.is_none()
    }

    /// The settings `declared` by an artifact with these overrides (None: none declared and
    /// none given).
    #[must_use]
    pub fn apply(
        &self,
        declared: Option<&volcast_model::artifact::Adaptive>,
    ) -> Option<volcast_model::artifact::Adaptive> {
        if self.is_empty() {
            return declared.cloned();
        }
        Some(volcast_model::artifact::Adaptive {
            quantile_step: self
                .quantile_step
                .or(declared.map(|a| a.quantile_step))
                .unwrap_or(0.0),
            drawdown_step: self
                .drawdown_step
                .or(declared.map(|a| a.drawdown_step))
                .unwrap_or(0.0),
            quantile_level: BTreeMap::new(),
            blend_as_served: self
                .blend_as_served
                .or(declared.map(|a| a.blend_as_served))
                .unwrap_or(false),
            blend_as_served_at: self
                .blend_as_served_at
                .as_ref()
                .map(|h| h.0.clone())
                .or(declared.map(|a| a.blend_as_served_at.clone()))
                .unwrap_or_default(),
            shrink_as_served: self
                .shrink_as_served
                .or(declared.map(|a| a.shrink_as_served))
                .unwrap_or(false),
            shortage_stack: self
                .shortage_stack
                .or(declared.map(|a| a.shortage_stack))
                .unwrap_or(false),
            har_guard: self.har_guard.or(declared.map(|a| a.har_guard)).unwrap_or(false),
            blend_window_max_days: self
                .blend_window_max_days
                .map_or_else(|| declared.and_then(|a| a.blend_window_max_days), |w| w.0),
        })
    }
}

fn step(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=0.1).contains(&x) {
        Ok(x)
    } else {
        Err(format!("{x} is outside [0, 0.1]"))
    }
}

#[cfg(test)]
mod tests {
    use super::{
        AdaptiveSteps, HalfLife, HorizonList, SkipFeatures, WindowDays, half_life_days, half_life_epochs,
        horizon_list, skip_features, term_structure, window_days,
    };
    use std::collections::BTreeMap;
    use volcast_model::artifact::Adaptive;

    #[test]
    fn term_structure_reads_pairs_and_none() {
        assert_eq!(term_structure("168=24").unwrap().0, BTreeMap::from([(168, 24)]));
        assert_eq!(
            term_structure(" 168 = 24 ,24=4").unwrap().0,
            BTreeMap::from([(168, 24), (24, 4)])
        );
        assert!(term_structure("none").unwrap().0.is_empty());
        for (bad, says) in [
            ("168", "TO=FROM"),
            ("168=", "not a horizon"),
            ("168=24,168=4", "twice"),
            ("0=24", "between 1 and 672"),
            ("168=4,24", "TO=FROM"),
        ] {
            let e = term_structure(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn half_lives_are_positive_days_or_none() {
        assert_eq!(half_life_days("365"), Ok(HalfLife(Some(365.0))));
        assert_eq!(half_life_days(" 0.5 "), Ok(HalfLife(Some(0.5))));
        assert_eq!(half_life_days("none"), Ok(HalfLife(None)));
        for bad in ["", "a", "0", "-365", "inf", "NaN"] {
            assert!(half_life_days(bad).is_err(), "{bad:?}");
        }
        assert_eq!(half_life_epochs("0.25"), Ok(HalfLife(Some(0.25))));
        assert_eq!(half_life_epochs("none"), Ok(HalfLife(None)));
        let err = half_life_epochs("-1").unwrap_err();
        assert!(err.contains("epochs"), "{err}");
    }

    #[test]
    fn skip_features_are_names_or_indices_or_all() {
        assert_eq!(
            skip_features("ln_rv24,ln_rv168,ln_rv720"),
            Ok(SkipFeatures(vec![1, 2, 3]))
        );
        assert_eq!(skip_features(" 6, ln_rv4,4,6 "), Ok(SkipFeatures(vec![0, 4, 6])));
        assert_eq!(skip_features("all"), Ok(SkipFeatures(Vec::new())));
        for bad in ["", "ln_rv", "19", "-1", "1,,2", "none"] {
            let err = skip_features(bad).unwrap_err();
            assert!(err.contains("ln_parkinson168"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn skip_features_flag_sets_the_config_and_its_absence_keeps_it() {
        let mut config = volcast_model::config::TrainingConfig::default_run();
        let before = config.skip_features.clone();
        super::DesignFlags::default().apply(&mut config).unwrap();
        assert_eq!(config.skip_features, before);
        let flags = super::DesignFlags {
            skip_features: Some(SkipFeatures(vec![0, 1, 2, 3, 4, 5, 6])),
            ..Default::default()
        };
        flags.apply(&mut config).unwrap();
        assert_eq!(config.skip_features, vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(config.skip_features_at, None);
        let at = super::skip_features_at("168=ln_rv24,ln_rv168,ln_rv720").unwrap();
        assert_eq!(at, (168, SkipFeatures(vec![1, 2, 3])));
        let flags = super::DesignFlags {
            skip_features_at: vec![at],
            ..Default::default()
        };
        flags.apply(&mut config).unwrap();
        assert_eq!(config.skip_features_at, Some(vec![(168, vec![1, 2, 3])]));
        assert_eq!(
            config.skip_columns(&[4, 24, 168]),
            Ok(vec![
                vec![0, 1, 2, 3, 4, 5, 6],
                vec![0, 1, 2, 3, 4, 5, 6],
                vec![1, 2, 3]
            ])
        );
        // A horizon the model does not forecast is refused before any data is read.
        let flags = super::DesignFlags {
            skip_features_at: vec![super::skip_features_at("12=1").unwrap()],
            ..Default::default()
        };
        let err = flags.apply(&mut config).unwrap_err().to_string();
        assert!(err.contains("12 h"), "{err}");
        for bad in ["168", "=1", "0=1", "x=1", "168=", "168=ln_rv"] {
            assert!(super::skip_features_at(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn networks_apart_flag_parses_sets_the_config_and_is_checked_before_any_data() {
        use volcast_model::config::NetworksApart;
        let parsed = super::networks_apart("168=ln_rv24,ln_rv168,ln_rv720").unwrap();
        let expected = NetworksApart {
            horizons: vec![168],
            skip_features: vec![1, 2, 3],
        };
        assert_eq!(parsed.0.as_ref(), Some(&expected));
        assert_eq!(
            super::networks_apart(" 24,168 =all").unwrap().0.unwrap().horizons,
            vec![24, 168]
        );
        assert_eq!(super::networks_apart("none").unwrap().0, None);
        for bad in ["168", "=1", "0=1", "x=1", "168=", "168=ln_rv", "4,,168=1"] {
            assert!(super::networks_apart(bad).is_err(), "{bad:?}");
        }
        let mut config = volcast_model::config::TrainingConfig::default_run();
        super::DesignFlags {
            networks_apart: Some(parsed),
            ..Default::default()
        }
        .apply(&mut config)
        .unwrap();
        assert_eq!(config.networks_apart, Some(expected));
        // Absent, the config's stays; `none` removes it.
        super::DesignFlags::default().apply(&mut config).unwrap();
        assert!(config.networks_apart.is_some());
        super::DesignFlags {
            networks_apart: Some(super::networks_apart("none").unwrap()),
            ..Default::default()
        }
        .apply(&mut config)
        .unwrap();
        assert_eq!(config.networks_apart, None);
        // Every horizon apart, or one the model does not forecast, is refused before any data.
        for bad in ["4,24,168=1", "12=1"] {
            let err = super::DesignFlags {
                networks_apart: Some(super::networks_apart(bad).unwrap()),
                ..Default::default()
            }
            .apply(&mut config)
            .unwrap_err()
            .to_string();
            assert!(err.contains("networks_apart"), "{bad}: {err}");
        }
    }

    #[test]
    fn horizon_lists_parse_sorted_and_deduplicated_and_reject_nonsense() {
        assert_eq!(horizon_list("168"), Ok(HorizonList(vec![168])));
        assert_eq!(horizon_list(" 168, 4,168 "), Ok(HorizonList(vec![4, 168])));
        assert_eq!(horizon_list("none"), Ok(HorizonList(Vec::new())));
        for bad in ["", "a", "0", "-4", "4,,24", "1000"] {
            assert!(horizon_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_command_line_overrides_the_declared_horizons_and_keeps_them_otherwise() {
        let declared = Adaptive {
            quantile_step: 0.0005,
            blend_as_served_at: vec![168],
            ..Adaptive::default()
        };
        let none = AdaptiveSteps::default();
        assert_eq!(none.apply(Some(&declared)).unwrap().blend_as_served_at, [168]);
        let off = AdaptiveSteps {
            blend_as_served_at: Some(HorizonList(Vec::new())),
            ..AdaptiveSteps::default()
        };
        let resolved = off.apply(Some(&declared)).unwrap();
        assert!(resolved.blend_as_served_at.is_empty());
        assert_eq!(resolved.quantile_step, 0.0005, "the other settings kept");
        assert!(!resolved.blends_any_as_served());
        let shrink = AdaptiveSteps {
            shrink_as_served: Some(true),
            ..AdaptiveSteps::default()
        };
        let resolved = shrink.apply(Some(&declared)).unwrap();
        assert!(resolved.shrink_as_served);
        assert_eq!(resolved.blend_as_served_at, [168], "the other settings kept");
        assert!(!resolved.shortage_stack);
        let stack = AdaptiveSteps {
            shortage_stack: Some(true),
            ..AdaptiveSteps::default()
        };
        let resolved = stack.apply(Some(&declared)).unwrap();
        assert!(resolved.shortage_stack && !resolved.shrink_as_served);
        assert_eq!(resolved.blend_as_served_at, [168], "the other settings kept");
        assert!(!resolved.har_guard);
        let guard = AdaptiveSteps {
            har_guard: Some(true),
            ..AdaptiveSteps::default()
        };
        let resolved = guard.apply(Some(&declared)).unwrap();
        assert!(resolved.har_guard && !resolved.shortage_stack);
        assert_eq!(resolved.blend_as_served_at, [168], "the other settings kept");
        assert_eq!(resolved.blend_window_max_days, None);
        let grow = AdaptiveSteps {
            blend_window_max_days: Some(window_days("365").unwrap()),
            ..AdaptiveSteps::default()
        };
        let resolved = grow.apply(Some(&declared)).unwrap();
        assert_eq!(resolved.blend_window_max_days, Some(365));
        assert_eq!(resolved.blend_as_served_at, [168], "the other settings kept");
        let with_window = Adaptive {
            blend_window_max_days: Some(365),
            ..declared.clone()
        };
        let none = AdaptiveSteps {
            blend_window_max_days: Some(window_days("none").unwrap()),
            ..AdaptiveSteps::default()
        };
        assert_eq!(
            none.apply(Some(&with_window)).unwrap().blend_window_max_days,
            None
        );
        assert_eq!(
            guard.apply(Some(&with_window)).unwrap().blend_window_max_days,
            Some(365),
            "kept when not given"
        );
        for bad in ["0", "3651", "-1", "a year"] {
            assert!(window_days(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_horizon_the_model_does_not_forecast_is_refused() {
        let steps = |h: Vec<usize>| AdaptiveSteps {
            blend_as_served_at: Some(HorizonList(h)),
            ..AdaptiveSteps::default()
        };
        assert!(steps(vec![4, 168]).check_horizons(&[4, 24, 168]).is_ok());
        assert!(steps(Vec::new()).check_horizons(&[4, 24, 168]).is_ok());
        assert!(AdaptiveSteps::default().check_horizons(&[4]).is_ok());
        let err = steps(vec![48])
            .check_horizons(&[4, 24, 168])
            .unwrap_err()
            .to_string();
        assert!(err.contains("48") && err.contains("[4, 24, 168]"), "{err}");
        let shrink = |blend_as_served| AdaptiveSteps {
            shrink_as_served: Some(true),
            blend_as_served,
            ..steps(Vec::new())
        };
        let err = shrink(None)
            .check_horizons(&[4, 24, 168])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--shrink-as-served"), "{err}");
        let grow = |days| AdaptiveSteps {
            blend_window_max_days: Some(WindowDays(days)),
            ..steps(Vec::new())
        };
        let err = grow(Some(365))
            .check_horizons(&[4, 24, 168])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--blend-window-max-days 365"), "{err}");
        assert!(
            grow(None).check_horizons(&[4, 24, 168]).is_ok(),
            "none: nothing to act on"
        );
        assert!(shrink(Some(true)).check_horizons(&[4, 24, 168]).is_ok());
        let declared_horizons = AdaptiveSteps {
            shrink_as_served: Some(true),
            ..AdaptiveSteps::default()
        };
        assert!(declared_horizons.check_horizons(&[4, 24, 168]).is_ok());
    }
}
