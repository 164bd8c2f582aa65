//! The artifact's `config.json`: the network's architecture and the training run that made it
//! (saved beside the weights; loading an artifact rebuilds the network from it).

use burn::prelude::*;
use volcast_core::features::{HAR_FEATURES, LEVEL_FEATURES, N_CHANNELS, N_STATIC, VARIANCE_FEATURES};
use volcast_core::forecast::HORIZONS;

use crate::network::VolModelConfig;

/// The shortest recency half-life, days: the week's horizon keeps rows of weight (a week old
/// at the youngest, they weigh at least 0.5^7).
pub const MIN_RECENCY_HALF_LIFE_DAYS: f64 = 1.0;

/// The longest weight-averaging half-life, epochs: past it the per-step decay rounds to 1.
pub const MAX_AVERAGE_HALF_LIFE_EPOCHS: f64 = 1e6;

/// The default run's recency half-life, days: a row a year older counts half (issue 14, adopted on
/// the walk-forward folds at stop 32). The default run also trains until the fit end (adopted at
/// stop 33, [`TrainingConfig::refit_through_holdout`]).
pub const DEFAULT_RECENCY_HALF_LIFE_DAYS: f64 = 365.0;

/// Longest sequence window, hours (90 days): the network's memory grows with it.
pub const MAX_WINDOW: usize = 2_160;
/// Most rows per optimiser step.
pub const MAX_BATCH: usize = 8_192;
/// Widest encoder (`model.channels`) and hidden layer (`model.hidden`).
pub const MAX_WIDTH: usize = 1_024;

/// Whether `levels` can be RV quantile levels: at least two, increasing, each in (0, 1) (a
/// config's heads and an artifact's metadata alike). The quantile head learns the first level
/// and positive steps to the others: one level passed every check and panicked at the first
/// forward pass (a step of no levels).
#[must_use]
pub fn quantile_levels_ok(levels: &[f64]) -> bool {
    levels.len() >= 2
        && levels.iter().all(|q| q.is_finite() && *q > 0.0 && *q < 1.0)
        && levels.windows(2).all(|w| w[0] < w[1])
}

/// Everything that defines a training run; saved beside the weights.
#[derive(Config, Debug)]
pub struct TrainingConfig {
    /// Architecture.
    pub model: VolModelConfig,
    /// Hours of history in the sequence input.
    #[config(default = 128)]
    pub window: usize,
    /// Spacing of training origins, hours.
    #[config(default = 4)]
    pub stride_hours: usize,
    /// Days at the end of the fit period held out for early stopping.
    #[config(default = 120)]
    pub holdout_days: usize,
    /// Rows per optimiser step.
    #[config(default = 256)]
    pub batch_size: usize,
    /// Most epochs.
    #[config(default = 12)]
    pub max_epochs: usize,
    /// Epochs without holdout improvement before stopping.
    #[config(default = 3)]
    pub patience: usize,
    /// AdamW learning rate.
    #[config(default = 3e-4)]
    pub learning_rate: f64,
    /// AdamW weight decay.
    #[config(default = 1e-4)]
    pub weight_decay: f32,
    /// Gradient norm clip.
    #[config(default = 1.0)]
    pub grad_clip_norm: f32,
    /// Weight of the quantile (pinball) loss.
    #[config(default = 0.5)]
    pub quantile_weight: f32,
    /// Weight of the shortage (cross-entropy) loss.
    #[config(default = 0.3)]
    pub shortage_weight: f32,
    /// Share of training rows whose market factor is hidden, so the model also serves
    /// requests without market data.
    #[config(default = 0.3)]
    pub market_dropout: f64,
    /// Static features the linear log-variance skip starts from (least squares on these;
    /// the others start at zero). Empty: all of them.
    #[config(default = "Vec::new()")]
    pub skip_features: Vec<usize>,
    /// Keep the skip at its least-squares start, so the network learns only a correction.
    #[config(default = false)]
    pub freeze_skip: bool,
    /// Seed of initialisation and shuffling.
    #[config(default = 42)]
    pub seed: u64,
    /// Recent rows weighted up: each training row's losses count `0.5^(age / half-life)`, its
    /// age in days before the holdout starts (the holdout, scaler and least-squares start stay
    /// unweighted). `None` (and a config written before this field): every row counts the same.
    pub recency_half_life_days: Option<f64>,
    /// Training until the fit end: after early stopping has picked the best epoch count `E` on
    /// the holdout, each network is trained again from the same seed and start for `E` epochs on
    /// every training origin up to the fit end (the holdout's hours included), and that network is
    /// served. `None` (and a config written before this field) or `Some(false)`: the early-stopped
    /// network is served, and the holdout's last days are never trained on.
    pub refit_through_holdout: Option<bool>,
    /// Weights averaged over the last steps: after every optimiser step, an exponential moving
    /// average of the weights with this half-life in epochs (corrected for its start); the
    /// averaged network is what the holdout scores, what early stopping keeps and, after the
    /// refit, what is served. Training continues from the raw weights. `None` (and a config
    /// written before this field): the weights after the epoch's last step.
    pub weight_average_half_life_epochs: Option<f64>,
    /// Each horizon served by networks trained for its own epochs: with the refit
    /// ([`Self::refit_through_holdout`]), each horizon's epoch count is the one of its own best
    /// holdout QLIKE in the first run (not the mean over horizons), the refit runs the largest of
    /// them, and each horizon is served by the refit's network after its own count. `None` (and
    /// a config written before this field) or `Some(false)`: one count for every horizon.
    pub per_horizon_epochs: Option<bool>,
    /// The log-variance head trained on the squared error of log RV instead of QLIKE: the
    /// conditional mean of log RV, biased low by a level the calibration's variance scale (and the
    /// daily job's) removes; early stopping then reads the holdout's QLIKE after its own variance
    /// scale. `None` (and a config written before this field) or `Some(false)`: QLIKE.
    pub log_mse_variance: Option<bool>,
    /// The shortage head starts from SPEC's baseline: its linear skip is set, per horizon, to
    /// the logistic map of the shortage label on the scaled `ln_shortage_score_H` feature fitted
    /// on the training rows, and frozen, so the network learns only a correction (as the
    /// variance head does from its least-squares skip). `None` (and a config written before this
    /// field) or `Some(false)`: a trainable skip from a random start.
    pub shortage_skip_from_baseline: Option<bool>,
    /// The log-variance skip fitted on QLIKE: its least-squares start (with `s^2 / 2`) refined,
    /// per horizon, to the minimum of the training rows' summed QLIKE (same rows, columns and
    /// ridge), so that it forecasts the conditional mean of RV where the spread of ln RV differs
    /// between rows. `None` (and a config written before this field) or `Some(false)`: least
    /// squares.
    pub skip_qlike: Option<bool>,
    /// Per-horizon exceptions to [`Self::skip_features`]: `(horizon in hours, columns)`, the
    /// columns the log-variance skip's least squares runs on at that horizon (empty: all).
    /// `None` (and a config written before this field): `skip_features` at every horizon.
    pub skip_features_at: Option<Vec<(usize, Vec<usize>)>>,
    /// Horizons served by networks trained apart ([`NetworksApart`]): as many networks again,
    /// trained with this config but their own skip columns (and no exceptions), serve those
    /// horizons, and this config's networks the others. `None` (and a config written before this
    /// field): every network serves every horizon.
    pub networks_apart: Option<NetworksApart>,
}

/// Networks trained apart for some horizons ([`TrainingConfig::networks_apart`]): the same run
/// (seeds, data, epochs chosen by their own early stopping) with the log-variance skip's least
/// squares on `skip_features`, serving only `horizons`. The heads share a trunk, so a skip that
/// serves short horizons better can train a trunk that serves the week worse (walk-forward items
/// 21 and 22); networks trained apart keep each group's trunk to itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworksApart {
    /// The horizons (hours) the apart networks serve: some, not all, of the model's.
    pub horizons: Vec<usize>,
    /// The static columns their skip starts from (empty: all), as [`TrainingConfig::skip_features`].
    pub skip_features: Vec<usize>,
}

impl TrainingConfig {
    /// The default run: TCN encoder, SPEC's horizons, quantiles 0.05, 0.5, 0.95, 0.99, recent rows
    /// weighted up with a half-life of [`DEFAULT_RECENCY_HALF_LIFE_DAYS`], trained until the fit
    /// end once early stopping has chosen the epochs; 4 h and 24 h served by networks whose skip
    /// starts from the asset's variance levels ([`VARIANCE_FEATURES`]), the week by networks
    /// trained apart whose skip starts from SPEC's HAR regressors (adopted at stop 44).
    #[must_use]
    pub fn default_run() -> Self {
        Self::plain_run()
            .with_skip_features(VARIANCE_FEATURES.to_vec())
            .with_networks_apart(Some(NetworksApart {
                horizons: vec![168],
                skip_features: HAR_FEATURES.to_vec(),
            }))
    }

    /// The default run before stop 44: every horizon served by one group of networks whose skip
    /// starts from SPEC's HAR regressors (the default's networks apart are this run's).
    #[must_use]
    pub fn plain_run() -> Self {
        Self::new(
            VolModelConfig::new(N_STATIC, N_CHANNELS, HORIZONS.len(), vec![0.05, 0.5, 0.95, 0.99])
                .with_trunk_excluded(LEVEL_FEATURES.to_vec()),
        )
        .with_skip_features(HAR_FEATURES.to_vec())
        .with_freeze_skip(true)
        .with_recency_half_life_days(Some(DEFAULT_RECENCY_HALF_LIFE_DAYS))
        .with_refit_through_holdout(Some(true))
    }

    /// Whether each horizon is served by networks trained for its own epochs
    /// ([`Self::per_horizon_epochs`]).
    #[must_use]
    pub fn has_per_horizon_epochs(&self) -> bool {
        self.per_horizon_epochs == Some(true)
    }

    /// Whether the log-variance head is trained on the squared log error
    /// ([`Self::log_mse_variance`]).
    #[must_use]
    pub fn has_log_mse_variance(&self) -> bool {
        self.log_mse_variance == Some(true)
    }

    /// Whether the shortage skip starts at the baseline's logistic map, frozen
    /// ([`Self::shortage_skip_from_baseline`]).
    #[must_use]
    pub fn has_shortage_skip_from_baseline(&self) -> bool {
        self.shortage_skip_from_baseline == Some(true)
    }

    /// The static columns the log-variance skip starts from at each of `horizons` (hours):
    /// [`Self::skip_features_at`]'s where it names the horizon, else [`Self::skip_features`];
    /// an empty list means every static feature.
    ///
    /// # Errors
    /// A column that is not a static feature, a horizon not in `horizons`, or one named twice.
    pub fn skip_columns(&self, horizons: &[usize]) -> Result<Vec<Vec<usize>>, String> {
        let all = |c: &[usize]| {
            if c.is_empty() {
                (0..N_STATIC).collect()
            } else {
                c.to_vec()
            }
        };
        let check = |what: &str, c: &[usize]| match c.iter().find(|&&i| i >= N_STATIC) {
            Some(i) => Err(format!(
                "{what} names column {i}: there are {N_STATIC} static features"
            )),
            None => Ok(()),
        };
        check("skip_features", &self.skip_features)?;
        let mut out = vec![all(&self.skip_features); horizons.len()];
        let exceptions = self.skip_features_at.as_deref().unwrap_or_default();
        let positions = horizon_positions("skip_features_at", exceptions.iter().map(|(h, _)| *h), horizons)?;
        for (j, (h, columns)) in positions.into_iter().zip(exceptions) {
            check(&format!("skip_features_at {h} h"), columns)?;
            out[j] = all(columns);
        }
        Ok(out)
    }

    /// Reads a config from JSON as written beside every artifact, refusing a key the config does
    /// not have (a misspelt `learning_rat` would otherwise be dropped and the default trained
    /// without a word). Keys a config written before a field existed lacks take their defaults.
    ///
    /// # Errors
    /// Text that is not a config, or the first unknown key by its path.
    pub fn from_json(text: &str) -> Result<Self, String> {
        // A byte-order mark (an editor's "UTF-8 with BOM") is no part of the JSON.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let given: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if !given.is_object() {
            // serde reads a struct from an array too, by position: `[128, 4, ...]` trained.
            return Err("a training config is a JSON object of named fields".to_owned());
        }
        // From the text, not `given`: a repeated key is refused, and an error has its line and
        // column. A value of the wrong type is named by its path (`window: "abc"` said only
        // "invalid type: string, expected usize" and a column). Trailing text was refused by
        // the parse into `given`.
        let mut text_de = serde_json::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(&mut text_de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.into_inner().to_string()
            } else {
                format!("`{path}`: {}", e.into_inner())
            }
        })?;
        let known = serde_json::to_value(&config).map_err(|e| e.to_string())?;
        match unknown_key(&given, &known, "") {
            Some(path) => Err(format!("unknown field `{path}`")),
            None => Ok(config),
        }
    }

    /// Checks the whole config before any data is read or any network trained: the heads' sizes
    /// this build's inputs and `horizons` need, quantile levels increasing in (0, 1), a window,
    /// widths, epochs, patience and batch of at least 1, a finite positive learning rate,
    /// finite non-negative loss weights and weight decay, a positive gradient clip, a market
    /// dropout share in [0, 1], trunk exclusions among the static features,
    /// a holdout long enough to score the longest horizon, the training options
    /// ([`Self::check_training_options`]), then the design ([`Self::networks_apart_config`]).
    ///
    /// # Errors
    /// The first problem, naming the field.
    pub fn check(&self, horizons: &[usize]) -> Result<(), String> {
        let m = &self.model;
        let sizes = [
            ("model.n_static", m.n_static, N_STATIC),
            ("model.n_channels", m.n_channels, N_CHANNELS),
            ("model.n_horizons", m.n_horizons, horizons.len()),
        ];
        if let Some((name, got, want)) = sizes.iter().find(|(_, got, want)| got != want) {
            return Err(format!("{name} is {got}, but this build's model needs {want}"));
        }
        let levels = &m.quantile_levels;
        if !quantile_levels_ok(levels) {
            return Err(format!(
                "model.quantile_levels {levels:?}: at least two, increasing, each in (0, 1)"
            ));
        }
        let at_least_one = [
            ("window", self.window),
            ("stride_hours", self.stride_hours),
            ("batch_size", self.batch_size),
            ("max_epochs", self.max_epochs),
            ("patience", self.patience),
            ("model.channels", m.channels),
            ("model.kernel", m.kernel),
            ("model.layers", m.layers),
            ("model.hidden", m.hidden),
        ];
        if let Some((name, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} is 0: it must be at least 1"));
        }
        let at_most = [
            ("window", self.window, MAX_WINDOW),
            ("batch_size", self.batch_size, MAX_BATCH),
            ("model.channels", m.channels, MAX_WIDTH),
            ("model.hidden", m.hidden, MAX_WIDTH),
        ];
        if let Some((name, v, max)) = at_most.iter().find(|(_, v, max)| v > max) {
            return Err(format!("{name} is {v}: at most {max}"));
        }
        if m.encoder == crate::network::EncoderKind::Tcn {
            // Layer i is dilated 2^i: hours past the window would only ever see padding, and
            // each layer's padding costs memory (40 layers asked for terabytes).
            let reach = u32::try_from(m.layers)
                .ok()
                .and_then(|l| 1usize.checked_shl(l))
                .and_then(|span| (m.kernel - 1).checked_mul(span - 1))
                .and_then(|r| r.checked_add(1));
            if reach.is_none_or(|r| r > self.window) {
                return Err(format!(
                    "model.layers {} with model.kernel {}: the TCN's receptive field, 1 + (kernel - 1)(2^layers - 1) = {} hours, is longer than the window of {} hours",
                    m.layers,
                    m.kernel,
                    reach.map_or_else(|| "more than 2^64".to_owned(), |r| r.to_string()),
                    self.window
                ));
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(format!(
                "learning_rate {}: a finite number above 0",
                self.learning_rate
            ));
        }
        let weights = [
            ("weight_decay", self.weight_decay),
            ("quantile_weight", self.quantile_weight),
            ("shortage_weight", self.shortage_weight),
        ];
        if let Some((name, v)) = weights.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            return Err(format!("{name} {v}: a finite number, 0 or more"));
        }
        if !(self.grad_clip_norm.is_finite() && self.grad_clip_norm > 0.0) {
            return Err(format!(
                "grad_clip_norm {}: a finite number above 0",
                self.grad_clip_norm
            ));
        }
        if !(0.0..=1.0).contains(&self.market_dropout) {
            return Err(format!(
                "market_dropout {}: a share in [0, 1]",
                self.market_dropout
            ));
        }
        if let Some(i) = m.trunk_excluded.iter().find(|&&i| i >= N_STATIC) {
            return Err(format!(
                "model.trunk_excluded names column {i}: there are {N_STATIC} static features"
            ));
        }
        let longest_days = horizons.iter().max().map_or(0, |h| h.div_ceil(24));
        if self.holdout_days <= longest_days {
            return Err(format!(
                "holdout_days {}: more than {longest_days} days, or the longest horizon has no \
                 holdout origin to stop on",
                self.holdout_days
            ));
        }
        self.check_training_options()?;
        self.networks_apart_config(horizons).map(|_| ())
    }

    /// The training options' half of [`Self::check`], which the trainer checks again: a recency
    /// half-life of at least [`MIN_RECENCY_HALF_LIFE_DAYS`] and a weight-averaging half-life in
    /// (0, [`MAX_AVERAGE_HALF_LIFE_EPOCHS`]], `lognormal_mean` only on the
    /// squared-log-error head and with levels symmetric about the median, per-horizon epochs
    /// only with the refit.
    ///
    /// # Errors
    /// The first problem, naming the field.
    pub fn check_training_options(&self) -> Result<(), String> {
        // Bounds where the weights still mean what they say: below a day, the rows of the
        // week's horizon (a week old at the youngest) weigh under 0.5^7 and soon exactly 0 in
        // f32, so a horizon trained on nothing (1e-6 days wrote an artifact whose scores never
        // moved); beyond a million epochs the average's per-step decay rounds to 1 in f64 and
        // the average was silently the last step's weights (1e17).
        let half_lives = [
            (
                "recency_half_life_days",
                self.recency_half_life_days,
                "days",
                MIN_RECENCY_HALF_LIFE_DAYS..=f64::MAX,
                "at least a day",
            ),
            (
                "weight_average_half_life_epochs",
                self.weight_average_half_life_epochs,
                "epochs",
                0.0..=MAX_AVERAGE_HALF_LIFE_EPOCHS,
                "at most a million epochs",
            ),
        ];
        for (name, h, unit, range, bound) in half_lives {
            let Some(h) = h else { continue };
            if !(h.is_finite() && h > 0.0) {
                return Err(format!(
                    "{name} is {h}: a half-life is a positive number of {unit}"
                ));
            }
            if !range.contains(&h) {
                return Err(format!("{name} is {h}: {bound}"));
            }
        }
        if self.model.has_lognormal_mean() && !self.has_log_mse_variance() {
            return Err(
                "model.lognormal_mean needs log_mse_variance: the head it corrects is the mean of log RV"
                    .into(),
            );
        }
        self.model.lognormal_spread()?;
        if self.has_per_horizon_epochs() && !self.refits_through_holdout() {
            return Err(
                "per_horizon_epochs needs refit_through_holdout: the horizons' networks are the refit's"
                    .into(),
            );
        }
        Ok(())
    }

    /// The config of the networks trained apart and the horizons they serve, where the config
    /// has them ([`Self::networks_apart`]); checks the skip's columns of both groups first.
    ///
    /// # Errors
    /// What [`Self::skip_columns`] refuses, in either group; apart horizons that are none, all,
    /// repeated or not the model's; or networks apart beside per-horizon epochs (each horizon is
    /// served by networks of its own in both, and the two do not compose).
    pub fn networks_apart_config(
        &self,
        horizons: &[usize],
    ) -> Result<Option<(Vec<usize>, TrainingConfig)>, String> {
        self.skip_columns(horizons)?;
        let Some(apart) = &self.networks_apart else {
            return Ok(None);
        };
        if self.has_per_horizon_epochs() {
            return Err("networks_apart cannot be combined with per_horizon_epochs".to_owned());
        }
        let served = horizon_positions("networks_apart", apart.horizons.iter().copied(), horizons)?;
        if served.is_empty() || served.len() == horizons.len() {
            return Err(format!(
                "networks_apart serves {:?} h: name some, not all, of the model's {horizons:?}",
                apart.horizons
            ));
        }
        let config = self
            .clone()
            .with_skip_features(apart.skip_features.clone())
            .with_skip_features_at(None)
            .with_networks_apart(None);
        config
            .skip_columns(horizons)
            .map_err(|e| format!("networks_apart: {e}"))?;
        Ok(Some((apart.horizons.clone(), config)))
    }

    /// Whether the log-variance skip is fitted on QLIKE ([`Self::skip_qlike`]).
    #[must_use]
    pub fn has_skip_qlike(&self) -> bool {
        self.skip_qlike == Some(true)
    }

    /// Whether the served networks are trained again through the fit end
    /// ([`Self::refit_through_holdout`]).
    #[must_use]
    pub fn refits_through_holdout(&self) -> bool {
        self.refit_through_holdout == Some(true)
    }
}

/// The positions in `horizons` of the horizons (hours) a config field `what` names, in its order.
///
/// # Errors
/// A horizon the model does not forecast, or one named twice.
fn horizon_positions(
    what: &str,
    named: impl IntoIterator<Item = usize>,
    horizons: &[usize],
) -> Result<Vec<usize>, String> {
    let mut positions = Vec::new();
    for h in named {
        let Some(j) = horizons.iter().position(|&x| x == h) else {
            return Err(format!(
                "{what} names {h} h: the model forecasts at {horizons:?} hours"
            ));
        };
        if positions.contains(&j) {
            return Err(format!("{what} names {h} h twice"));
        }
        positions.push(j);
    }
    Ok(positions)
}

/// The first key of `given` (by its dotted path under `at`) that `known`, the same config
/// written back, does not have: one serde dropped as unknown.
fn unknown_key(given: &serde_json::Value, known: &serde_json::Value, at: &str) -> Option<String> {
    let (serde_json::Value::Object(given), serde_json::Value::Object(known)) = (given, known) else {
        return None;
    };
    given.iter().find_map(|(key, value)| {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match known.get(key) {
            None => Some(path),
            Some(written) => unknown_key(value, written, &path),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::TrainingConfig;

    #[test]
    fn a_config_with_an_unknown_key_or_a_nonsense_value_is_refused_by_name() {
        let default = serde_json::to_value(TrainingConfig::default_run()).expect("serialises");
        let read = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut json = default.clone();
            edit(&mut json);
            TrainingConfig::from_json(&json.to_string())
        };
        assert_eq!(
            read(&|_| {}).expect("the default reads back").seed,
            TrainingConfig::default_run().seed
        );
        let e = read(&|j| j["learning_rat"] = 0.1.into()).unwrap_err();
        assert_eq!(e, "unknown field `learning_rat`");
        let e = read(&|j| j["model"]["chanels"] = 8.into()).unwrap_err();
        assert_eq!(e, "unknown field `model.chanels`");
        let e = read(&|j| j["networks_apart"]["horizon"] = 1.into()).unwrap_err();
        assert_eq!(e, "unknown field `networks_apart.horizon`");
        assert!(TrainingConfig::from_json("{").is_err());
        let text = default.to_string();
        let bom = TrainingConfig::from_json(&format!("\u{feff}{text}")).expect("a BOM is skipped");
        assert_eq!(bom.seed, TrainingConfig::default_run().seed);
        let e = TrainingConfig::from_json("[128, 4]").unwrap_err();
        assert!(e.contains("a JSON object"), "{e}");
        let repeated = format!("{{\"seed\": 1,{}", &text[1..]);
        let e = TrainingConfig::from_json(&repeated).unwrap_err();
        assert!(e.starts_with("duplicate field `seed` at line 1"), "{e}");
        let e = TrainingConfig::from_json(&format!("{text} {{}}")).unwrap_err();
        assert!(e.starts_with("trailing characters"), "{e}");
        let e = read(&|j| j["window"] = "abc".into()).unwrap_err();
        assert!(e.starts_with("`window`: invalid type: string"), "{e}");
        let e = read(&|j| j["model"]["channels"] = (-3).into()).unwrap_err();
        assert!(
            e.starts_with("`model.channels`: invalid value: integer `-3`"),
            "{e}"
        );

        let h = [4, 24, 168];
        TrainingConfig::default_run()
            .check(&h)
            .expect("the default is valid");
        type Edit = fn(TrainingConfig) -> TrainingConfig;
        let cases: [(&str, Edit); 19] = [
            (
                "recency_half_life_days is -30: a half-life is a positive number of days",
                |c| c.with_recency_half_life_days(Some(-30.0)),
            ),
            ("recency_half_life_days is 0", |c| {
                c.with_recency_half_life_days(Some(0.0))
            }),
            ("weight_average_half_life_epochs is NaN", |c| {
                c.with_weight_average_half_life_epochs(Some(f64::NAN))
            }),
            ("recency_half_life_days is 0.000001: at least a day", |c| {
                c.with_recency_half_life_days(Some(1e-6))
            }),
            (
                "weight_average_half_life_epochs is 100000000000000000: at most a million epochs",
                |c| c.with_weight_average_half_life_epochs(Some(1e17)),
            ),
            ("per_horizon_epochs needs refit_through_holdout", |c| {
                c.with_networks_apart(None)
                    .with_per_horizon_epochs(Some(true))
                    .with_refit_through_holdout(None)
            }),
            ("lognormal_mean needs log_mse_variance", |mut c| {
                c.model = c.model.with_lognormal_mean(Some(true));
                c.with_log_mse_variance(None)
            }),
            ("grad_clip_norm -1", |c| c.with_grad_clip_norm(-1.0)),
            ("grad_clip_norm 0", |c| c.with_grad_clip_norm(0.0)),
            ("weight_decay -0.1", |c| c.with_weight_decay(-0.1)),
            ("quantile_weight -1", |c| c.with_quantile_weight(-1.0)),
            ("shortage_weight NaN", |c| c.with_shortage_weight(f32::NAN)),
            ("market_dropout 2", |c| c.with_market_dropout(2.0)),
            ("market_dropout -0.5", |c| c.with_market_dropout(-0.5)),
            ("window is 100000: at most 2160", |c| c.with_window(100_000)),
            ("model.hidden is 5000: at most 1024", |mut c| {
                c.model.hidden = 5000;
                c
            }),
            (
                "receptive field, 1 + (kernel - 1)(2^layers - 1) = 256 hours",
                |mut c| {
                    c.model.layers = 8;
                    c
                },
            ),
            ("more than 2^64", |mut c| {
                c.model.layers = 70;
                c
            }),
            ("trunk_excluded names column 99", |mut c| {
                c.model.trunk_excluded = vec![1, 99];
                c
            }),
        ];
        for (says, edit) in cases {
            let e = edit(TrainingConfig::default_run()).check(&h).unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn skip_columns_take_the_exceptions_and_refuse_what_is_not_there() {
        let c = TrainingConfig::default_run()
            .with_skip_features(Vec::new())
            .with_skip_features_at(Some(vec![(24, vec![1, 2, 3])]));
        let all: Vec<usize> = (0..super::N_STATIC).collect();
        assert_eq!(
            c.skip_columns(&[4, 24, 168]),
            Ok(vec![all.clone(), vec![1, 2, 3], all])
        );
        let bad = |c: TrainingConfig| c.skip_columns(&[4, 24, 168]).unwrap_err();
        let e = bad(c.clone().with_skip_features_at(Some(vec![(12, vec![1])])));
        assert!(e.contains("12 h"), "{e}");
        let e = bad(c
            .clone()
            .with_skip_features_at(Some(vec![(24, vec![1]), (24, vec![2])])));
        assert!(e.contains("twice"), "{e}");
        let e = bad(c.clone().with_skip_features_at(Some(vec![(24, vec![99])])));
        assert!(e.contains("column 99"), "{e}");
        let e = bad(c.with_skip_features(vec![1, 19]));
        assert!(e.contains("column 19"), "{e}");
    }

    #[test]
    fn networks_apart_train_with_their_own_skip_and_refuse_what_does_not_compose() {
        use super::NetworksApart;
        let h = [4, 24, 168];
        let apart = |horizons: Vec<usize>, skip: Vec<usize>| {
            TrainingConfig::default_run()
                .with_skip_features(vec![0, 1, 2, 3, 4, 5, 6])
                .with_skip_features_at(Some(vec![(4, vec![0, 1])]))
                .with_networks_apart(Some(NetworksApart {
                    horizons,
                    skip_features: skip,
                }))
        };
        assert!(matches!(
            TrainingConfig::plain_run().networks_apart_config(&h),
            Ok(None)
        ));
        let (served, config) = TrainingConfig::default_run()
            .networks_apart_config(&h)
            .expect("the default is valid")
            .expect("the default trains the week apart");
        assert_eq!(served, vec![168]);
        assert_eq!(config.skip_columns(&h), Ok(vec![vec![1, 2, 3]; 3]));
        assert_eq!(
            TrainingConfig::default_run().skip_columns(&h),
            Ok(vec![vec![0, 1, 2, 3, 4, 5, 6]; 3])
        );
        let (served, config) = apart(vec![168], vec![1, 2, 3])
            .networks_apart_config(&h)
            .expect("valid")
            .expect("networks apart");
        assert_eq!(served, vec![168]);
        assert_eq!(config.skip_columns(&h), Ok(vec![vec![1, 2, 3]; 3]));
        assert_eq!(config.networks_apart, None);
        assert_eq!(config.seed, 42);
        let e = apart(vec![12], vec![1]).networks_apart_config(&h).unwrap_err();
        assert!(e.contains("12 h"), "{e}");
        let e = apart(vec![168, 168], vec![1])
            .networks_apart_config(&h)
            .unwrap_err();
        assert!(e.contains("twice"), "{e}");
        for bad in [vec![], vec![4, 24, 168]] {
            let e = apart(bad, vec![1]).networks_apart_config(&h).unwrap_err();
            assert!(e.contains("some, not all"), "{e}");
        }
        let e = apart(vec![168], vec![40]).networks_apart_config(&h).unwrap_err();
        assert!(e.contains("networks_apart") && e.contains("column 40"), "{e}");
        let e = apart(vec![168], vec![1])
            .with_per_horizon_epochs(Some(true))
            .networks_apart_config(&h)
            .unwrap_err();
        assert!(e.contains("per_horizon_epochs"), "{e}");
    }

    #[test]
    fn a_config_written_before_recency_weighting_the_refit_averaging_and_per_horizon_epochs_loads_as_it_was_trained()
     {
        let mut json = serde_json::to_value(TrainingConfig::plain_run()).expect("serialises");
        let fields = json.as_object_mut().expect("an object");
        assert!(fields.remove("recency_half_life_days").is_some());
        assert!(fields.remove("refit_through_holdout").is_some());
        assert!(fields.remove("weight_average_half_life_epochs").is_some());
        assert!(fields.remove("per_horizon_epochs").is_some());
        assert!(fields.remove("log_mse_variance").is_some());
        assert!(fields.remove("shortage_skip_from_baseline").is_some());
        assert!(fields.remove("skip_qlike").is_some());
        assert!(fields.remove("skip_features_at").is_some());
        assert!(fields.remove("networks_apart").is_some());
        let model = fields["model"].as_object_mut().expect("the model's config");
        assert!(model.remove("lognormal_mean").is_some());
        let old: TrainingConfig = serde_json::from_value(json.clone()).expect("loads");
        assert_eq!(old.recency_half_life_days, None);
        assert_eq!(
            old.weight_average_half_life_epochs, None,
            "a config from before weight averaging serves the weights after the last step"
        );
        assert!(
            !old.has_per_horizon_epochs(),
            "a config from before per-horizon epochs serves every horizon from one network"
        );
        assert!(
            !old.model.has_lognormal_mean(),
            "a config from before the lognormal mean serves the head's output"
        );
        assert!(
            !old.has_log_mse_variance(),
            "a config from before the squared log error trained the variance on QLIKE"
        );
        assert!(
            !old.has_shortage_skip_from_baseline(),
            "a config from before the baseline's shortage start trained its skip from a random start"
        );
        assert!(
            !old.has_skip_qlike(),
            "a config from before the QLIKE skip fitted it by least squares"
        );
        assert_eq!(
            old.skip_columns(&[4, 24, 168]),
            Ok(vec![vec![1, 2, 3]; 3]),
            "a config from before per-horizon skip columns used its skip_features at every horizon"
        );
        assert!(
            matches!(old.networks_apart_config(&[4, 24, 168]), Ok(None)),
            "a config from before networks apart served every horizon from every network"
        );
        assert!(
            !old.refits_through_holdout(),
            "a config from before the refit serves the early-stopped network"
        );

        json["recency_half_life_days"] = serde_json::json!(365.0);
        let new: TrainingConfig = serde_json::from_value(json).expect("loads");
        assert_eq!(new.recency_half_life_days, Some(365.0));
    }
}
