//! The ledger's figures: scored entries read back, and skill and calibration over them (what
//! `GET /v1/model/validation`, the gate and the replay report).

use volcast_core::policy::DEFAULT_TAU;
use volcast_core::scoring::{brier, diebold_mariano, kupiec_p_value, qlike, roc_auc};
use volcast_core::time::{DAY_MS, HOUR_MS, format_ms};
use volcast_model::operation::TrailingRatios;
use volcast_store::LedgerEntry;

use super::{LedgerOutcome, LedgerRecord};
use crate::dto::validation::{HorizonSkill, QuantileCoverage, RiskCalibrationCheck, ValidationWindow};

/// A scored entry, read back.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Asset id.
    pub asset: String,
    /// The origin, Unix ms.
    pub origin: i64,
    /// What was recorded.
    pub record: LedgerRecord,
    /// What happened.
    pub outcome: LedgerOutcome,
}

/// Reads a scored ledger entry (None when unreadable).
#[must_use]
pub fn scored_of(entry: &LedgerEntry) -> Option<Scored> {
    Some(Scored {
        asset: entry.asset.clone(),
        origin: entry.origin,
        record: serde_json::from_str(&entry.record).ok()?,
        outcome: serde_json::from_str(entry.outcome.as_deref()?).ok()?,
    })
}

/// HAR operated as the served model is (SPEC, "Operated comparison"; `evaluate`'s
/// `har_operated`): at each daily origin, the ledger's HAR forecast times `mean(RV / F)` of HAR's
/// own recorded forecasts, pooled over assets, over the trailing days of origins whose windows
/// had ended by then, as many days as the served artifact's daily correction reads
/// ([`LedgerRecord::operated_days`]): the correction the daily job measures for the model,
/// measured the same way on HAR. Only what the ledger holds counts, so its first days run on
/// fewer days of history (below [`volcast_model::operation::MIN_RECALIBRATION_POINTS`] points,
/// HAR as fitted). Where a record names no window, HAR operated is HAR.
#[derive(Debug, Clone, Default)]
pub struct HarOperated {
    /// Per horizon (hours), HAR's recorded ratios by origin (ms).
    ratios: std::collections::BTreeMap<usize, TrailingRatios>,
}

impl HarOperated {
    /// HAR's recorded ratios in `entries`: every asset's (the correction is pooled, whatever
    /// the figures are for), reaching the window's days plus the longest horizon before the
    /// first origin the figures count.
    #[must_use]
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a Scored>) -> Self {
        let mut points: std::collections::BTreeMap<usize, Vec<(i64, f64)>> =
            std::collections::BTreeMap::new();
        for e in entries {
            for (k, &h) in e.record.horizons.iter().enumerate() {
                if let (Some(Some(rv)), Some(Some(f))) = (
                    e.outcome.realized_variance.get(k).copied(),
                    e.record.har_variance.get(k).copied(),
                ) && f.is_finite()
                    && f > 0.0
                {
                    points.entry(h).or_default().push((e.origin, rv / f));
                }
            }
        }
        Self {
            ratios: points
                .into_iter()
                .map(|(h, p)| (h, TrailingRatios::new(p)))
                .collect(),
        }
    }

    /// HAR's correction for `e`'s forecast at `h` hours: the mean over the `days` days before
    /// its origin's day of the ratios whose windows had ended by then; 1 without enough of them
    /// or without a window.
    fn scale(&self, e: &Scored, h: usize) -> f64 {
        let (Some(ratios), Some(days)) = (self.ratios.get(&h), e.record.operated_days) else {
            return 1.0;
        };
        let day = super::day_origin(e.origin);
        let days = i64::try_from(days).unwrap_or(i64::MAX / DAY_MS);
        let horizon = i64::try_from(h).unwrap_or(i64::MAX / HOUR_MS);
        ratios.scale(
            day.saturating_sub(days.saturating_mul(DAY_MS)),
            day.saturating_sub(horizon.saturating_mul(HOUR_MS)),
        )
    }
}

/// Skill and calibration over `entries` (origins in `[from, to]`), pooled over assets; with
/// `operated`, the model is compared with the better of HAR and HAR operated (SPEC, "Operated
/// comparison"), else with HAR.
#[must_use]
pub fn validation(
    entries: &[Scored],
    days: i64,
    from: i64,
    to: i64,
    operated: Option<&HarOperated>,
) -> ValidationWindow {
    if entries.is_empty() {
        return ValidationWindow {
            days,
            from: format_ms(from),
            to: format_ms(to),
            entries: 0,
            horizons: Vec::new(),
            risk: None,
        };
    };
    let assets: Vec<&str> = {
        let mut a: Vec<&str> = entries.iter().map(|e| e.asset.as_str()).collect();
        a.sort_unstable();
        a.dedup();
        a
    };
    // The horizons the latest entry forecast (the model served now), each scored on the
    // entries that forecast it: a model reloaded with other horizons leaves entries of both in
    // the window, and an index read as the first entry's horizons scored one model's 24 h as
    // another's 4 h. A horizon no longer forecast is not judged (it would hold the gate's
    // recovery back for want of days).
    let latest = entries
        .iter()
        .max_by_key(|e| e.origin)
        .map_or(&[][..], |e| &e.record.horizons[..]);
    let levels = &all_levels(entries);
    let horizons = latest
        .iter()
        .map(|&h| horizon_skill(entries, &assets, h, levels, operated))
        .collect();
    ValidationWindow {
        days,
        from: format_ms(from),
        to: format_ms(to),
        entries: entries.len(),
        horizons,
        risk: risk_check(entries),
    }
}

/// One point's losses: the model's, HAR's, HAR operated's (HAR's without `operated`).
#[derive(Clone, Copy)]
struct Losses {
    group: usize,
    origin: i64,
    model: f64,
    har: f64,
    operated: f64,
}

/// The skill at horizon `h` on the entries that forecast it (each read at its own index of
/// `h`), with the coverage of each of `levels` on the entries that forecast that level.
fn horizon_skill(
    entries: &[Scored],
    assets: &[&str],
    h: usize,
    levels: &[f64],
    operated: Option<&HarOperated>,
) -> HorizonSkill {
    // Points where the model, HAR and the realized variance all exist, in the entries' order
    // (by origin, then asset).
    let mut points: Vec<Losses> = Vec::new();
    let mut covered = vec![0_usize; levels.len()];
    let mut with_rv = vec![0_usize; levels.len()];
    // Shortage: the model's probability against SPEC's label, wherever the label exists.
    let (mut probabilities, mut labels) = (Vec::new(), Vec::new());
    // What was served: the model's loss, or HAR's on the fallback's days.
    let mut served = Vec::new();
    let mut with_window = false;
    for e in entries {
        let Some(k) = e.record.horizons.iter().position(|&x| x == h) else {
            continue;
        };
        if let (Some(Some(label)), Some(&p)) = (
            e.outcome.shortage.get(k).copied(),
            e.record.shortage_probability.get(k),
        ) && p.is_finite()
        {
            probabilities.push(p);
            labels.push(label);
        }
        let Some(Some(rv)) = e.outcome.realized_variance.get(k).copied() else {
            continue;
        };
        if rv <= 0.0 {
            continue;
        }
        let quantiles = e.record.quantiles.get(k).into_iter().flatten();
        for (level, q) in e.record.quantile_levels.iter().zip(quantiles) {
            if let Some(j) = levels.iter().position(|l| l == level) {
                with_rv[j] += 1;
                covered[j] += usize::from(rv <= *q);
            }
        }
        let (Some(&f), Some(Some(g))) = (e.record.variance.get(k), e.record.har_variance.get(k).copied())
        else {
            continue;
        };
        // SPEC's common points: every forecast finite and positive. A zero forecast (the
        // served checks allow >= 0) made QLIKE inf - inf = NaN, and the NaN ran through the
        // means and the DM of the whole window, where the gate read `NaN > threshold` as no
        // failure.
        let usable = |x: f64| x.is_finite() && x > 0.0;
        if !usable(f) || !usable(g) {
            continue;
        }
        let har = qlike(rv, g);
        let losses = Losses {
            group: assets.binary_search(&e.asset.as_str()).unwrap_or(0),
            origin: e.origin,
            model: qlike(rv, f),
            har,
            operated: operated.map_or(har, |o| qlike(rv, o.scale(e, h) * g)),
        };
        with_window |= e.record.operated_days.is_some();
        served.push(if e.record.served_is_har_at(h) {
            losses.har
        } else {
            losses.model
        });
        points.push(losses);
    }
    let mean = |v: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = v.fold((0.0, 0_usize), |(s, n), x| (s + x, n + 1));
        (n > 0).then(|| sum / n as f64)
    };
    let (qm, qh, qo) = (
        mean(&mut points.iter().map(|p| p.model)),
        mean(&mut points.iter().map(|p| p.har)),
        mean(&mut points.iter().map(|p| p.operated)),
    );
    // HAR operated is reported where some point's record names a correction window; the
    // baseline is the better of HAR and HAR operated on these points (HAR on a tie).
    let operated = operated.filter(|_| with_window);
    let against_operated = operated.is_some() && qo.zip(qh).is_some_and(|(o, g)| o < g);
    let baseline = |p: &Losses| if against_operated { p.operated } else { p.har };
    let qb = if against_operated { qo } else { qh };
    // The model-versus-baseline tests take SPEC's lag, ceil(h / 24), as `evaluate` does. The
    // gate's test against HAR keeps the lag its thresholds were set and replayed with: daily
    // origins' windows of `h` hours overlap for ceil(h / 24) - 1 days.
    let lag = h.div_ceil(24);
    let gate_lag = lag.saturating_sub(1);
    let dm_daily = |loss: &dyn Fn(&Losses) -> f64, lag: usize| {
        // The same test on the daily cross-sectional means: assets move together, so the
        // pooled test overstates the evidence; this one counts each day once.
        let mut daily: std::collections::BTreeMap<i64, (f64, u32)> = std::collections::BTreeMap::new();
        for p in &points {
            let day = daily.entry(p.origin).or_insert((0.0, 0));
            day.0 += p.model - loss(p);
            day.1 += 1;
        }
        let means: Vec<f64> = daily.values().map(|&(sum, n)| sum / f64::from(n)).collect();
        (means.len(), diebold_mariano(&means, &vec![0; means.len()], lag))
    };
    let mut by_asset = points.clone();
    by_asset.sort_by_key(|p| p.group);
    let d: Vec<f64> = by_asset.iter().map(|p| p.model - baseline(p)).collect();
    let groups: Vec<usize> = by_asset.iter().map(|p| p.group).collect();
    let dm = diebold_mariano(&d, &groups, lag);
    let (origin_days, dm_vs_baseline) = dm_daily(&baseline, lag);
    let (_, dm_vs_har) = dm_daily(&|p: &Losses| p.har, gate_lag);
    HorizonSkill {
        horizon_hours: h,
        points: points.len(),
        qlike_model: qm,
        qlike_har: qh,
        qlike_har_operated: operated.and(qo),
        baseline: if against_operated { "har_operated" } else { "har" }.to_owned(),
        qlike_ratio: qm.zip(qb).map(|(m, g)| m / g),
        dm_statistic: dm.map(|d| d.statistic),
        dm_p_value: dm.map(|d| d.p_value),
        origin_days,
        dm_daily_statistic: dm_vs_baseline.map(|d| d.statistic),
        dm_daily_vs_har: dm_vs_har.map(|d| d.statistic),
        qlike_served: mean(&mut served.iter().copied()),
        shortage_points: labels.len(),
        shortage_base_rate: (!labels.is_empty())
            .then(|| labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64),
        shortage_brier: brier(&probabilities, &labels),
        shortage_roc_auc: roc_auc(&probabilities, &labels),
        coverage: levels
            .iter()
            .zip(covered.iter().zip(&with_rv))
            .map(|(&level, (&c, &n))| QuantileCoverage {
                level,
                covered: (n > 0).then(|| c as f64 / n as f64),
            })
            .collect(),
    }
}

/// Every quantile level some entry forecast, ascending.
fn all_levels(entries: &[Scored]) -> Vec<f64> {
    let mut levels: Vec<f64> = entries
        .iter()
        .flat_map(|e| e.record.quantile_levels.iter().copied())
        .filter(|l| l.is_finite())
        .collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    levels
}

fn risk_check(entries: &[Scored]) -> Option<RiskCalibrationCheck> {
    let alpha = entries.first()?.record.alpha;
    let (mut n, mut breaches, mut har_n, mut har_breaches) = (0, 0, 0, 0);
    let (mut served_n, mut served_breaches) = (0, 0);
    let mut days = std::collections::BTreeSet::new();
    for e in entries {
        let Some(fall) = e.outcome.drawdown else { continue };
        n += 1;
        days.insert(e.origin);
        breaches += usize::from(fall > e.record.drawdown);
        if let Some(d) = e.record.har_drawdown {
            har_n += 1;
            har_breaches += usize::from(fall > d);
        }
        if let Some(d) = e.record.served_drawdown() {
            served_n += 1;
            served_breaches += usize::from(fall > d);
        }
    }
    (n > 0).then(|| RiskCalibrationCheck {
        alpha,
        tau_hours: DEFAULT_TAU,
        points: n,
        origin_days: days.len(),
        breaches,
        breach_rate: breaches as f64 / n as f64,
        expected_rate: 1.0 - alpha,
        kupiec_p_value: kupiec_p_value(breaches, n, 1.0 - alpha),
        har_points: har_n,
        har_breaches,
        served_points: served_n,
        served_breaches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `asset`'s entry at `origin` at 24 h: the model forecasts `model`, HAR 1, and `rv`
    /// followed; `operated_days` as recorded.
    fn entry(asset: usize, origin: i64, model: f64, rv: f64, operated_days: Option<usize>) -> Scored {
        Scored {
            asset: format!("A{asset:02}"),
            origin,
            record: crate::ledger::test_record(vec![24], vec![model], vec![Some(1.0)], operated_days),
            outcome: LedgerOutcome {
                realized_variance: vec![Some(rv)],
                drawdown: Some(0.01),
                shortage: vec![Some(false)],
                open_horizons: Vec::new(),
            },
        }
    }

    /// 60 days of 30 assets whose realized variance runs at about twice HAR's forecast, 2.4
    /// times from day 30 on; the model forecasts 1.7, so it beats HAR and loses to HAR
    /// corrected on its own past.
    fn ledger(operated_days: Option<usize>) -> Vec<Scored> {
        (0..60_i64)
            .flat_map(|d| {
                (0..30).map(move |a| {
                    let wiggle = 1.0 + 0.3 * (((d * 31 + a as i64 * 17) % 13) as f64 / 13.0 - 0.5);
                    let level = if d < 30 { 2.0 } else { 2.4 };
                    entry(a, d * DAY_MS, 1.7, level * wiggle, operated_days)
                })
            })
            .collect()
    }

    #[test]
    fn the_model_is_compared_with_har_operated_measured_on_windows_ended_by_each_origin() {
        let all = ledger(Some(10));
        let operated = HarOperated::new(&all);
        let (from, to) = (20 * DAY_MS, 59 * DAY_MS);
        let counted: Vec<Scored> = all.iter().filter(|e| e.origin >= from).cloned().collect();
        let w = validation(&counted, 40, from, to, Some(&operated));
        let h = &w.horizons[0];
        // HAR operated by brute force: at each origin, the mean RV / F of every asset's
        // forecasts from the 10 days before whose 24 h windows had ended (origins a day back
        // or more).
        let mut expected = 0.0;
        for e in &counted {
            let past: Vec<f64> = all
                .iter()
                .filter(|p| p.origin >= e.origin - 10 * DAY_MS && p.origin <= e.origin - DAY_MS)
                .map(|p| p.outcome.realized_variance[0].unwrap_or(f64::NAN))
                .collect();
            let scale = past.iter().sum::<f64>() / past.len() as f64;
            expected += qlike(e.outcome.realized_variance[0].unwrap_or(f64::NAN), scale);
        }
        expected /= counted.len() as f64;
        let (m, g, o) = (
            h.qlike_model.unwrap_or(f64::NAN),
            h.qlike_har.unwrap_or(f64::NAN),
            h.qlike_har_operated.unwrap_or(f64::NAN),
        );
        assert!((o - expected).abs() < 1e-12, "{o} vs {expected}");
        assert!(o < m && m < g, "operated {o}, model {m}, HAR {g}");
        assert_eq!(h.baseline, "har_operated");
        assert!((h.qlike_ratio.unwrap_or(f64::NAN) - m / o).abs() < 1e-12);
        // Against the baseline the model loses; against HAR, what the gate reads, it wins.
        assert!(h.dm_daily_statistic.is_some_and(|d| d > 0.0), "{h:?}");
        assert!(h.dm_statistic.is_some_and(|d| d > 0.0), "{h:?}");
        assert!(h.dm_daily_vs_har.is_some_and(|d| d < 0.0), "{h:?}");
        assert_eq!(h.origin_days, 40);
    }

    /// A model reloaded with other horizons leaves entries of both in the window: the served
    /// model's horizons are each scored on the entries that forecast them, read at their own
    /// index, and each quantile level on the entries that forecast it.
    #[test]
    fn entries_of_models_with_other_horizons_are_scored_horizon_by_horizon() {
        // Old entries at 4, 24 and 168 h; new ones at 24 and 168 h. Each forecast is its
        // horizon in hours, and so is the realized variance: a forecast read at the wrong
        // index has a QLIKE above 0.
        let make = |origin: i64, horizons: Vec<usize>| {
            let forecasts: Vec<f64> = horizons.iter().map(|&h| h as f64).collect();
            let n = horizons.len();
            let mut record = crate::ledger::test_record(
                horizons,
                forecasts.clone(),
                forecasts.iter().map(|&f| Some(f)).collect(),
                None,
            );
            record.quantile_levels = if n == 3 { vec![0.05, 0.95] } else { vec![0.5, 0.95] };
            // Covers at its upper level only; the old model's lower level never does.
            record.quantiles = forecasts.iter().map(|&f| vec![f / 2.0, 2.0 * f]).collect();
            Scored {
                asset: "A00".into(),
                origin,
                record,
                outcome: LedgerOutcome {
                    realized_variance: forecasts.iter().map(|&f| Some(f)).collect(),
                    drawdown: Some(0.01),
                    shortage: vec![Some(false); n],
                    open_horizons: Vec::new(),
                },
            }
        };
        let entries: Vec<Scored> = (0..10)
            .map(|d| make(d * DAY_MS, vec![4, 24, 168]))
            .chain((10..25).map(|d| make(d * DAY_MS, vec![24, 168])))
            .collect();
        let w = validation(&entries, 25, 0, 24 * DAY_MS, None);
        let got: Vec<(usize, usize)> = w.horizons.iter().map(|h| (h.horizon_hours, h.points)).collect();
        assert_eq!(
            got,
            [(24, 25), (168, 25)],
            "the 4 h the served model dropped is not judged"
        );
        for h in &w.horizons {
            assert!(h.qlike_model.is_some_and(|q| q.abs() < 1e-12), "{h:?}");
            let coverage: Vec<(f64, Option<f64>)> = h.coverage.iter().map(|c| (c.level, c.covered)).collect();
            // 0.05 only of the old entries, 0.5 only of the new, 0.95 of both.
            assert_eq!(coverage, [(0.05, Some(0.0)), (0.5, Some(0.0)), (0.95, Some(1.0))]);
        }
    }

    /// A record whose model (or HAR) forecast is zero is no common point: its QLIKE is NaN,
    /// which the window's means and DM carried and the gate read as no failure.
    #[test]
    fn a_zero_forecast_is_no_common_point() {
        let mut entries = ledger(None);
        entries[0].record.variance[0] = 0.0;
        entries[1].record.har_variance[0] = Some(0.0);
        let w = validation(&entries, 60, 0, 59 * DAY_MS, None);
        let h = &w.horizons[0];
        assert_eq!(h.points, entries.len() - 2);
        for figure in [
            h.qlike_model,
            h.qlike_har,
            h.dm_daily_statistic,
            h.dm_daily_vs_har,
            h.dm_statistic,
        ] {
            assert!(figure.is_some_and(f64::is_finite), "{h:?}");
        }
        // The same window without the two points.
        let rest: Vec<Scored> = entries[2..].to_vec();
        let without = validation(&rest, 60, 0, 59 * DAY_MS, None);
        assert_eq!(h.qlike_model, without.horizons[0].qlike_model);
        assert_eq!(h.dm_daily_vs_har, without.horizons[0].dm_daily_vs_har);
    }

    #[test]
    fn without_a_correction_window_the_model_is_compared_with_har() {
        for (entries, operated) in [
            // Records that name no window (no daily correction, or made before it was kept).
            (ledger(None), true),
            // A caller that asks for HAR alone (the gate).
            (ledger(Some(10)), false),
        ] {
            let all = HarOperated::new(&entries);
            let w = validation(&entries, 60, 0, 59 * DAY_MS, operated.then_some(&all));
            let h = &w.horizons[0];
            assert_eq!(h.qlike_har_operated, None);
            assert_eq!(h.baseline, "har");
            let (m, g) = (h.qlike_model.unwrap_or(f64::NAN), h.qlike_har.unwrap_or(f64::NAN));
            assert!((h.qlike_ratio.unwrap_or(f64::NAN) - m / g).abs() < 1e-12);
            assert!(h.dm_daily_statistic.is_some_and(|d| d < 0.0));
            // Both on the daily means of model minus HAR: SPEC's lag, ceil(24 / 24) = 1, for
            // the reported test; the gate's, 0, for its own.
            let mut days: std::collections::BTreeMap<i64, (f64, f64)> = std::collections::BTreeMap::new();
            for e in &entries {
                let rv = e.outcome.realized_variance[0].unwrap_or(f64::NAN);
                let day = days.entry(e.origin).or_insert((0.0, 0.0));
                day.0 += qlike(rv, e.record.variance[0]) - qlike(rv, 1.0);
                day.1 += 1.0;
            }
            let means: Vec<f64> = days.values().map(|&(s, n)| s / n).collect();
            let groups = vec![0; means.len()];
            let stat = |lag| diebold_mariano(&means, &groups, lag).map(|d| d.statistic);
            assert_eq!(h.dm_daily_statistic, stat(1));
            assert_eq!(h.dm_daily_vs_har, stat(0));
            assert_ne!(stat(1), stat(0));
            // The pooled test: the differences grouped by asset, in time order, SPEC's lag.
            let mut by_asset: Vec<&Scored> = entries.iter().collect();
            by_asset.sort_by(|x, y| x.asset.cmp(&y.asset));
            let d: Vec<f64> = by_asset
                .iter()
                .map(|e| {
                    let rv = e.outcome.realized_variance[0].unwrap_or(f64::NAN);
                    qlike(rv, e.record.variance[0]) - qlike(rv, 1.0)
                })
                .collect();
            let groups: Vec<usize> = by_asset
                .iter()
                .map(|e| e.asset[1..].parse().unwrap_or(usize::MAX))
                .collect();
            let pooled = diebold_mariano(&d, &groups, 1).map(|d| d.statistic);
            assert!(pooled.is_some());
            assert_eq!(h.dm_statistic, pooled);
        }
    }
}
