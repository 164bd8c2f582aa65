//! The ledger's figures: scored entries read back, and skill and calibration over them (what
//! `GET /v1/model/validation`, the gate and the replay report).

use volcast_core::policy::DEFAULT_TAU;
use volcast_core::scoring::{brier, diebold_mariano, kupiec_p_value, qlike, roc_auc};
use volcast_core::time::format_ms;
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

/// Skill and calibration over `entries` (origins in `[from, to]`), pooled over assets.
#[must_use]
pub fn validation(entries: &[Scored], days: i64, from: i64, to: i64) -> ValidationWindow {
    let Some(first) = entries.first() else {
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
    let horizons = first
        .record
        .horizons
        .iter()
        .enumerate()
        .map(|(k, &h)| horizon_skill(entries, &assets, k, h))
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

fn horizon_skill(entries: &[Scored], assets: &[&str], k: usize, h: usize) -> HorizonSkill {
    // Points where the model, HAR and the realized variance all exist, grouped by asset in time
    // order (the entries come by origin, then asset).
    let mut by_asset: Vec<(usize, f64, f64)> = Vec::new();
    let mut daily: std::collections::BTreeMap<i64, (f64, u32)> = std::collections::BTreeMap::new();
    let (mut model, mut har) = (Vec::new(), Vec::new());
    let levels = &first_levels(entries);
    let mut covered = vec![0_usize; levels.len()];
    let mut with_rv = 0;
    // Shortage: the model's probability against SPEC's label, wherever the label exists.
    let (mut probabilities, mut labels) = (Vec::new(), Vec::new());
    // What was served: the model's loss, or HAR's on the fallback's days.
    let mut served = Vec::new();
    for e in entries {
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
        with_rv += 1;
        for (j, q) in e.record.quantiles.get(k).into_iter().flatten().enumerate() {
            if let Some(c) = covered.get_mut(j) {
                *c += usize::from(rv <= *q);
            }
        }
        let (Some(&f), Some(Some(g))) = (e.record.variance.get(k), e.record.har_variance.get(k).copied())
        else {
            continue;
        };
        let group = assets.binary_search(&e.asset.as_str()).unwrap_or(0);
        let (lm, lh) = (qlike(rv, f), qlike(rv, g));
        model.push(lm);
        har.push(lh);
        served.push(if e.record.served_is_har_at(h) { lh } else { lm });
        by_asset.push((group, lm, lh));
        let day = daily.entry(e.origin).or_insert((0.0, 0));
        day.0 += lm - lh;
        day.1 += 1;
    }
    // The same test on the daily cross-sectional means: assets move together, so the pooled
    // test overstates the evidence; this one counts each day once.
    let daily_means: Vec<f64> = daily.values().map(|&(sum, n)| sum / f64::from(n)).collect();
    by_asset.sort_by_key(|&(g, _, _)| g);
    let d: Vec<f64> = by_asset.iter().map(|&(_, m, g)| m - g).collect();
    let groups: Vec<usize> = by_asset.iter().map(|&(g, _, _)| g).collect();
    // Daily origins: windows of `h` hours overlap for ceil(h / 24) - 1 days.
    let lag = h.div_ceil(24).saturating_sub(1);
    let dm = diebold_mariano(&d, &groups, lag);
    let dm_daily = diebold_mariano(&daily_means, &vec![0; daily_means.len()], lag);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let (qm, qh) = (mean(&model), mean(&har));
    HorizonSkill {
        horizon_hours: h,
        points: model.len(),
        qlike_model: qm,
        qlike_har: qh,
        qlike_ratio: qm.zip(qh).map(|(m, g)| m / g),
        dm_statistic: dm.map(|d| d.statistic),
        dm_p_value: dm.map(|d| d.p_value),
        origin_days: daily_means.len(),
        dm_daily_statistic: dm_daily.map(|d| d.statistic),
        qlike_served: mean(&served),
        shortage_points: labels.len(),
        shortage_base_rate: (!labels.is_empty())
            .then(|| labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64),
        shortage_brier: brier(&probabilities, &labels),
        shortage_roc_auc: roc_auc(&probabilities, &labels),
        coverage: levels
            .iter()
            .zip(&covered)
            .map(|(&level, &c)| QuantileCoverage {
                level,
                covered: (with_rv > 0).then(|| c as f64 / with_rv as f64),
            })
            .collect(),
    }
}

fn first_levels(entries: &[Scored]) -> Vec<f64> {
    entries
        .first()
        .map(|e| e.record.quantile_levels.clone())
        .unwrap_or_default()
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
