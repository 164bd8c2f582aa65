//! The forecast ledger: at every daily origin (00:00 UTC), for every stored asset, what the
//! service would serve then (the model's and HAR's variances, the quantiles, the shortage
//! probabilities, and the risk policy's D and LT at the default settings), made by the asset
//! routes' own code from the candles stored up to that origin; and, once the target windows have
//! passed, what happened, from the stored candles with SPEC's definitions (the core's
//! `realized_variance` and `drawdown`, as `evaluate` uses them). [`validation`] turns the scored
//! entries into the skill and calibration figures of `GET /v1/model/validation`.
//!
//! Nothing reads the future: a record uses only candles that closed by its origin, and an
//! outcome is written only when every candle of its longest window is stored.

use serde::{Deserialize, Serialize};
use volcast_core::grid::{Asset, HourlyGrid};
use volcast_core::panel::PreparedAsset;
use volcast_core::policy::DEFAULT_TAU;
use volcast_core::scoring::{brier, diebold_mariano, kupiec_p_value, qlike, roc_auc};
use volcast_core::targets::{SHORTAGE_REFERENCE_HOURS, drawdown};
use volcast_core::time::{HOUR_MS, format_ms};
use volcast_store::{CandleStore, LedgerEntry, LedgerStore};

use crate::dto::CandleDto;
use crate::dto::validation::{HorizonSkill, QuantileCoverage, RiskCalibrationCheck, ValidationWindow};
use crate::error::ApiError;
use crate::routes::forecast_items;
use crate::routes::risk_parameters::recommend;
use crate::state::{AppState, Serving};

pub use volcast_core::time::DAY_MS;
/// Days before today the ledger job fills in when it starts (or finds days missing).
pub const CATCH_UP_DAYS: i64 = 7;
/// Entries scored per pass.
const SCORE_BATCH: u32 = 5000;

/// What the service would have served at an origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// The served horizons, hours.
    pub horizons: Vec<usize>,
    /// The model's variance per horizon (as served: corrected, blended).
    pub variance: Vec<f64>,
    /// HAR's variance per horizon, where computable.
    pub har_variance: Vec<Option<f64>>,
    /// The quantile levels.
    pub quantile_levels: Vec<f64>,
    /// The variance quantiles per horizon, per level.
    pub quantiles: Vec<Vec<f64>>,
    /// The shortage probability per horizon.
    pub shortage_probability: Vec<f64>,
    /// The risk settings' alpha (the service's defaults).
    pub alpha: f64,
    /// The liquidation window, hours (the default).
    pub tau_hours: f64,
    /// D(alpha, tau_eff) of the served policy.
    pub drawdown: f64,
    /// The served liquidation threshold.
    pub liquidation_threshold: f64,
    /// D under HAR's variance with its own calibrated rule, where the artifact has one.
    pub har_drawdown: Option<f64>,
    /// The policy served at the origin: `model`, or `fallback_har` while the gate holds the
    /// fallback ([`crate::gate`]); the fields above stay the model's and HAR's either way.
    #[serde(default = "model_policy")]
    pub policy: String,
    /// The horizons whose variance was served from HAR where the gate judges each horizon on
    /// its own (absent: whole-policy gate, every horizon's variance follows `policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub har_horizons: Option<Vec<usize>>,
}

fn model_policy() -> String {
    crate::dto::policy::MODEL.to_owned()
}

impl LedgerRecord {
    /// Whether HAR's policy was served (the gate's fallback) rather than the model's.
    #[must_use]
    pub fn served_is_har(&self) -> bool {
        self.policy == crate::dto::policy::FALLBACK_HAR
    }

    /// Whether the variance served at `horizon` hours was HAR's rather than the model's.
    #[must_use]
    pub fn served_is_har_at(&self, horizon: usize) -> bool {
        self.har_horizons
            .as_ref()
            .map_or_else(|| self.served_is_har(), |h| h.contains(&horizon))
    }

    /// The D served: HAR's calibrated one on the fallback, else the model's.
    #[must_use]
    pub fn served_drawdown(&self) -> Option<f64> {
        if self.served_is_har() {
            self.har_drawdown
        } else {
            Some(self.drawdown)
        }
    }
}

/// What happened after an origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerOutcome {
    /// Realized variance over each horizon (None where SPEC's 90% rule fails).
    pub realized_variance: Vec<Option<f64>>,
    /// The largest fall over the `tau_hours` after the origin (None where a candle is missing).
    pub drawdown: Option<f64>,
    /// SPEC's liquidity-shortage label per horizon (None where it does not exist).
    #[serde(default)]
    pub shortage: Vec<Option<bool>>,
}

/// The model's forecast for `asset` made at `origin` (Unix ms, on the hour) from the candles
/// stored up to it, with the POST routes' code; `Ok(None)` when the candle closing at the origin
/// is not stored.
///
/// # Errors
/// The store's, or what the routes answer for that window (a 422 when SPEC's rules refuse it).
pub async fn forecast_at(
    state: &AppState,
    serving: &Serving,
    asset: &str,
    origin: i64,
) -> Result<Option<(crate::inputs::Prepared, volcast_model::inference::Prediction)>, ApiError> {
    let need = serving.info.history_hours();
    let candles: Vec<CandleDto> = state
        .store()?
        .latest_candles(asset, origin - HOUR_MS, u32::try_from(need).unwrap_or(u32::MAX))
        .await?
        .into_iter()
        .map(CandleDto::from)
        .collect();
    if candles.last().map(|c| c.open_time) != Some(origin - HOUR_MS) {
        return Ok(None);
    }
    let mut out = forecast_items(state, serving, vec![(String::new(), asset.to_owned(), &candles)]).await?;
    Ok(out.pop())
}

/// The record of a forecast at the service's default risk settings.
///
/// # Errors
/// [`ApiError::UnusableInput`] when the policy's numbers are not finite.
pub fn record_of(
    state: &AppState,
    serving: &Serving,
    prep: &crate::inputs::Prepared,
    pred: &volcast_model::inference::Prediction,
) -> Result<LedgerRecord, ApiError> {
    let info = &serving.info;
    let settings = state.settings().defaults;
    let risk = recommend(info, &settings, "", prep, pred, None)?;
    let model = risk.derivation.policy.model;
    Ok(LedgerRecord {
        horizons: info.horizons().to_vec(),
        variance: pred.variance.clone(),
        har_variance: prep.har.iter().map(|v| v.is_finite().then_some(*v)).collect(),
        quantile_levels: info.metadata.quantile_levels.clone(),
        quantiles: pred.quantiles.clone(),
        shortage_probability: pred.shortage_probability.clone(),
        alpha: settings.alpha,
        tau_hours: settings.tau,
        // The model's own D and LT, also while the fallback is served (the gate judges them).
        drawdown: model.map_or(risk.derivation.drawdown, |m| m.drawdown),
        liquidation_threshold: model
            .map_or(risk.parameters.liquidation_threshold, |m| m.liquidation_threshold),
        har_drawdown: risk.derivation.har_calibrated.map(|c| c.drawdown),
        policy: risk.derivation.policy.name.clone(),
        har_horizons: None,
    })
}

/// Records, for every stored asset whose candle closing at `origin` is stored, what the served
/// model would serve at `origin`; returns how many entries are new. An asset whose window the
/// rules refuse is left out of that day (logged).
///
/// # Errors
/// The store's, or the model's readiness.
pub async fn record_origin(state: &AppState, origin: i64) -> Result<usize, ApiError> {
    let serving = state.serving()?;
    let store = state.store()?;
    let done = store.recorded_assets(origin).await?;
    let mut new = 0;
    for range in store.assets().await? {
        if range.last_open_time < origin - HOUR_MS
            || range.first_open_time > origin - HOUR_MS
            || done.binary_search(&range.asset).is_ok()
        {
            continue;
        }
        let forecast = match forecast_at(state, &serving, &range.asset, origin).await {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e @ (ApiError::StoreUnavailable(_) | ApiError::NotReady)) => return Err(e),
            Err(e) => {
                tracing::info!(asset = %range.asset, origin = %format_ms(origin), "no ledger entry: {e}");
                continue;
            }
        };
        let record = match record_of(state, &serving, &forecast.0, &forecast.1) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(asset = %range.asset, origin = %format_ms(origin), "no ledger entry: {e}");
                continue;
            }
        };
        let entry = LedgerEntry {
            asset: range.asset,
            origin,
            model_id: serving.info.metadata.id.clone(),
            record: serde_json::to_string(&record).map_err(|e| ApiError::Internal(e.to_string()))?,
            outcome: None,
        };
        new += usize::from(store.record_forecast(&entry).await?);
    }
    Ok(new)
}

/// Hours of candles before an origin that scoring reads: the shortage label's 30-day median of
/// M_H needs `720 + H - 1` hours of illiquidity before the origin, each return its previous close.
#[must_use]
pub fn scoring_lookback_hours(record: &LedgerRecord) -> i64 {
    let longest = record.horizons.iter().copied().max().unwrap_or(0);
    i64::try_from(SHORTAGE_REFERENCE_HOURS + longest).unwrap_or(0)
}

/// The outcome of `record` made at `origin` from `candles` (those with open time from
/// `origin - scoring_lookback_hours` on; fewer only leaves shortage labels out) and the asset's
/// last stored open time, or None while a target window has not closed. The realized variances
/// and shortage labels are the core's ([`PreparedAsset`], as `evaluate` scores), the fall
/// [`drawdown`].
#[must_use]
pub fn outcome_of(
    record: &LedgerRecord,
    origin: i64,
    candles: &[volcast_core::candles::Candle],
    stored_last_open: i64,
) -> Option<LedgerOutcome> {
    let longest = record.horizons.iter().copied().max()?.max(DEFAULT_TAU);
    // Closed once the store holds a candle at or after the window's last hour (the window's
    // own last candle may be one the exchange never had: SPEC's 90% rule then decides).
    let last = candles.last()?.open_time.max(stored_last_open);
    if last < origin + (i64::try_from(longest).ok()? - 1) * HOUR_MS {
        return None;
    }
    let asset = Asset {
        id: String::new(),
        grid: HourlyGrid::from_candles(candles),
    };
    let t = asset.grid.slot(origin / HOUR_MS)?;
    let prepared = PreparedAsset::new(&asset, &record.horizons);
    let mut scratch = Vec::new();
    Some(LedgerOutcome {
        realized_variance: record
            .horizons
            .iter()
            .map(|&h| Some(prepared.target(t, h)).filter(|v| v.is_finite()))
            .collect(),
        drawdown: drawdown(&asset.grid, t, DEFAULT_TAU),
        shortage: record
            .horizons
            .iter()
            .map(|&h| prepared.shortage(t, h, &mut scratch).label)
            .collect(),
    })
}

/// When the last of `record`'s windows from `origin` has closed (its longest horizon, or the
/// drawdown's tau), Unix ms: the entry is scored at the daily job's first pass from then on.
#[must_use]
pub fn closes_at(record: &LedgerRecord, origin: i64) -> i64 {
    let longest = record
        .horizons
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(DEFAULT_TAU);
    let span = i64::try_from(longest).unwrap_or(i64::MAX / HOUR_MS);
    origin.saturating_add(span.saturating_mul(HOUR_MS))
}

/// Scores every entry whose windows have closed by `now_ms` and whose candles are stored;
/// returns how many were scored. Entries whose windows are still open are not read further.
///
/// # Errors
/// The store's.
pub async fn score_pending(state: &AppState, now_ms: i64) -> Result<usize, ApiError> {
    let store = state.store()?;
    let mut scored = 0;
    let mut last_open = std::collections::HashMap::new();
    for entry in store.unscored(SCORE_BATCH).await? {
        let Ok(record) = serde_json::from_str::<LedgerRecord>(&entry.record) else {
            tracing::error!(asset = %entry.asset, origin = %format_ms(entry.origin), "unreadable ledger record");
            continue;
        };
        let closes = closes_at(&record, entry.origin);
        if closes > now_ms {
            continue;
        }
        let span = (closes - entry.origin) / HOUR_MS;
        let before = scoring_lookback_hours(&record);
        let candles = store
            .candles(
                &entry.asset,
                entry.origin - before * HOUR_MS,
                entry.origin + (span - 1) * HOUR_MS,
                u32::try_from(before + span).unwrap_or(u32::MAX),
            )
            .await?;
        let stored_last = match last_open.get(&entry.asset) {
            Some(&t) => t,
            None => {
                let t = store
                    .asset(&entry.asset)
                    .await?
                    .map_or(i64::MIN, |r| r.last_open_time);
                last_open.insert(entry.asset.clone(), t);
                t
            }
        };
        if let Some(outcome) = outcome_of(&record, entry.origin, &candles, stored_last) {
            let json = serde_json::to_string(&outcome).map_err(|e| ApiError::Internal(e.to_string()))?;
            store.set_outcome(&entry, &json).await?;
            scored += 1;
        }
    }
    Ok(scored)
}

/// The daily origin at or before `now_ms` (00:00 UTC).
#[must_use]
pub fn day_origin(now_ms: i64) -> i64 {
    now_ms.div_euclid(DAY_MS) * DAY_MS
}

/// One pass of the ledger job at `now_ms`: records the daily origins not yet recorded with the
/// served model (the last [`CATCH_UP_DAYS`] at most), and on the latest recorded one the assets
/// whose candle arrived late; then scores what has matured.
///
/// # Errors
/// The store's, or the model's readiness.
pub async fn run_once(state: &AppState, now_ms: i64) -> Result<(usize, usize), ApiError> {
    state.serving()?;
    let today = day_origin(now_ms);
    let last = state.store()?.last_origin().await?;
    let first = last.map_or(today - CATCH_UP_DAYS * DAY_MS, |l| {
        l.max(today - CATCH_UP_DAYS * DAY_MS)
    });
    let mut recorded = 0;
    let mut origin = first;
    while origin <= today {
        recorded += record_origin(state, origin).await?;
        origin += DAY_MS;
    }
    Ok((recorded, score_pending(state, now_ms).await?))
}

/// The served model's figures over the last 30 and 120 days of origins at `now_ms` (what
/// `GET /v1/model/validation` answers): pooled over assets, or for `asset` alone. The pooled
/// figures also set the validation gauges.
///
/// # Errors
/// The store's, or the model's readiness.
pub async fn windows(
    state: &AppState,
    now_ms: i64,
    asset: Option<&str>,
) -> Result<Vec<ValidationWindow>, ApiError> {
    state.serving()?;
    let store = state.store()?;
    let mut out = Vec::new();
    for days in [30, 120] {
        let from = now_ms - days * DAY_MS;
        let entries: Vec<Scored> = store
            .scored(from, now_ms)
            .await?
            .iter()
            .filter(|e| asset.is_none_or(|a| e.asset == a))
            .filter_map(scored_of)
            .collect();
        let window = validation(&entries, days, from, now_ms);
        if asset.is_none() {
            state.metrics().set_validation(&window);
        }
        out.push(window);
    }
    Ok(out)
}

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
