//! The flags that set how an artifact is operated: adaptive calibration and the term structure.

use std::collections::BTreeMap;

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
            "--term-structure with --fixed-recalibration: the artifact's stored corrections were \
             measured without that term structure; score it operated (without \
             --fixed-recalibration), where they are re-measured daily on the carried forecasts"
        );
    }
    model
        .with_term_structure(t)
        .map_err(|e| anyhow::anyhow!("--term-structure: {e}"))
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

/// The open time (Unix ms) of the last candle `metadata`'s model was fit on.
///
/// # Errors
/// When its `fit_until` is not a time.
pub fn fit_end_of(metadata: &volcast_model::artifact::Metadata) -> anyhow::Result<i64> {
    use anyhow::Context as _;
    volcast_core::time::parse_time(&metadata.fit_until, volcast_core::time::Bound::Start)
        .with_context(|| format!("model {}: fit_until {:?}", metadata.id, metadata.fit_until))
}

/// Refuses to score `metadata`'s model against a fit period ending at `fit_until_ms` (the open
/// time of its last candle) when the model was fit on later candles: it would be scored on
/// origins it was trained on, beside baselines fit on less data than it had.
///
/// # Errors
/// That refusal, saying what to give instead.
pub fn refuse_in_sample(
    metadata: &volcast_model::artifact::Metadata,
    fit_until_ms: i64,
) -> anyhow::Result<()> {
    let fit_end = fit_end_of(metadata)?;
    if fit_end > fit_until_ms {
        anyhow::bail!(
            "model {} was fit on candles until {}, after this evaluation's fit end {}: scored here it \
             would be scored on origins it was trained on. Give --fit-until {} or later, or a model \
             fit by {} (train --fit-until)",
            metadata.id,
            metadata.fit_until,
            volcast_core::time::format_ms(fit_until_ms),
            volcast_core::time::format_ms(fit_end)
                .get(..10)
                .unwrap_or_default(),
            volcast_core::time::format_ms(fit_until_ms)
                .get(..10)
                .unwrap_or_default(),
        );
    }
    Ok(())
}

/// Refuses to score `metadata`'s model with its stored corrections (`--fixed-recalibration`, or
/// an artifact without a trailing window) when they were measured on outcomes after the fit end
/// `fit_until_ms` (the open time of its last candle): a copy recalibrated later (`calibrate
/// --until`, the service's daily job) would correct the scored origins with their own outcomes.
///
/// # Errors
/// That refusal, saying what to do instead.
pub fn refuse_later_corrections(
    metadata: &volcast_model::artifact::Metadata,
    fit_until_ms: i64,
) -> anyhow::Result<()> {
    use volcast_core::time::{Bound, HOUR_MS, format_ms, parse_time};
    let Some(r) = &metadata.recalibration else {
        return Ok(());
    };
    let until = parse_time(&r.until, Bound::Start)
        .map_err(|e| anyhow::anyhow!("model {}: recalibration until {:?}: {e}", metadata.id, r.until))?;
    // Target windows of a fit through the candle opening at `fit_until_ms` end by its close.
    if until > fit_until_ms + HOUR_MS {
        anyhow::bail!(
            "model {}'s stored corrections were measured on outcomes until {}, after this evaluation's \
             fit end {}: scored with them, origins would be corrected with their own outcomes. Score it \
             with its corrections re-measured daily (drop --fixed-recalibration, give --rolling-days), \
             or score the artifact as trained",
            metadata.id,
            r.until,
            format_ms(fit_until_ms)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{AdaptiveSteps, HorizonList, WindowDays, horizon_list, term_structure, window_days};
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

    /// Stored corrections measured after the fit end are refused; the validation artifact's
    /// own (measured up to its fit end's close) and none at all are not.
    #[test]
    fn corrections_measured_after_the_fit_end_are_refused() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../model-artifacts/693e44b5f740fc82/metadata.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut metadata: volcast_model::artifact::Metadata =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let fit_until =
            volcast_core::time::parse_time("2020-12-31T23:00:00Z", volcast_core::time::Bound::Start)
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(super::refuse_later_corrections(&metadata, fit_until).is_ok());
        if let Some(r) = metadata.recalibration.as_mut() {
            r.until = "2021-12-31T00:00:00Z".into();
        }
        let refused = super::refuse_later_corrections(&metadata, fit_until).map_err(|e| e.to_string());
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("stored corrections")),
            "{refused:?}"
        );
        metadata.recalibration = None;
        assert!(super::refuse_later_corrections(&metadata, fit_until).is_ok());
    }
}
