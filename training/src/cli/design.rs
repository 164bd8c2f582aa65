//! The flags that set the model's design, shared by `train` and `walkforward`.

/// `--recency-half-life-days`: at least a day, or `none` (every training row counts
/// the same); see `TrainingConfig::recency_half_life_days`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HalfLife(pub Option<f64>);

/// Parses [`HalfLife`] in days.
///
/// # Errors
/// Anything but `none` or a positive, finite number.
pub fn half_life_days(s: &str) -> Result<HalfLife, String> {
    let h = half_life(s, "days")?;
    match h.0 {
        Some(v) if v < volcast_model::config::MIN_RECENCY_HALF_LIFE_DAYS => Err(format!(
            "{v} days: at least a day (shorter, the week's rows weigh nothing), or none"
        )),
        _ => Ok(h),
    }
}

/// Parses `--weight-average-half-life-epochs`: a positive number of epochs up to a million, or `none` (the
/// weights after each epoch's last step); see `TrainingConfig::weight_average_half_life_epochs`.
///
/// # Errors
/// Anything but `none` or a positive, finite number.
pub fn half_life_epochs(s: &str) -> Result<HalfLife, String> {
    let h = half_life(s, "epochs")?;
    match h.0 {
        Some(v) if v > volcast_model::config::MAX_AVERAGE_HALF_LIFE_EPOCHS => Err(format!(
            "{v} epochs: at most a million (longer, the average is the last step's weights), or none"
        )),
        _ => Ok(h),
    }
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
    /// days before the holdout starts, DAYS at least 1; `none`: every row the same. Default: the
    /// config's.
    #[arg(long, value_name = "DAYS|none", value_parser = half_life_days)]
    pub recency_half_life_days: Option<HalfLife>,
    /// Train until the fit end: after early stopping picks the epoch count on the holdout, train
    /// each network again from the same start for that many epochs on every origin up to the fit
    /// end (the holdout's included) and serve that one. Default: the config's.
    #[arg(long, value_name = "true|false")]
    pub refit_through_holdout: Option<bool>,
    /// Average the weights over the last steps: an exponential moving average after every step
    /// with this half-life in epochs (at most 1e6), scored on the holdout and served; `none`: the
    /// weights after each epoch's last step. Default: the config's.
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

#[cfg(test)]
mod tests {
    use super::{HalfLife, SkipFeatures, half_life_days, half_life_epochs, skip_features};

    #[test]
    fn half_lives_are_within_their_bounds_or_none() {
        assert_eq!(half_life_days("365"), Ok(HalfLife(Some(365.0))));
        assert_eq!(half_life_days(" 1.5 "), Ok(HalfLife(Some(1.5))));
        assert_eq!(half_life_days("none"), Ok(HalfLife(None)));
        let err = half_life_days("0.5").unwrap_err();
        assert!(err.contains("at least a day"), "{err}");
        let err = half_life_epochs("1e17").unwrap_err();
        assert!(err.contains("at most a million"), "{err}");
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
}
