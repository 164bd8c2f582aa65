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

use std::time::Duration;

use serde::{Deserialize, Serialize};
use volcast_core::grid::HourlyGrid;
use volcast_core::policy::DEFAULT_TAU;
use volcast_core::scoring::{diebold_mariano, kupiec_p_value, qlike};
use volcast_core::targets::{drawdown, realized_variance};
use volcast_core::time::{HOUR_MS, format_ms};
use volcast_store::{CandleStore, LedgerEntry, LedgerStore};

use crate::dto::CandleDto;
use crate::dto::validation::{HorizonSkill, QuantileCoverage, RiskCalibrationCheck, ValidationWindow};
use crate::error::ApiError;
use crate::routes::forecast_items;
use crate::routes::risk_parameters::recommend;
use crate::state::{AppState, Serving};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Days before today the ledger job fills in when it starts (or finds days missing).
pub const CATCH_UP_DAYS: i64 = 7;
/// How often the ledger job looks for a new origin and for entries to score.
const JOB_PERIOD: Duration = Duration::from_secs(60);
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
}

/// What happened after an origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerOutcome {
    /// Realized variance over each horizon (None where SPEC's 90% rule fails).
    pub realized_variance: Vec<Option<f64>>,
    /// The largest fall over the `tau_hours` after the origin (None where a candle is missing).
    pub drawdown: Option<f64>,
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
    Ok(LedgerRecord {
        horizons: info.horizons().to_vec(),
        variance: pred.variance.clone(),
        har_variance: prep.har.iter().map(|v| v.is_finite().then_some(*v)).collect(),
        quantile_levels: info.metadata.quantile_levels.clone(),
        quantiles: pred.quantiles.clone(),
        shortage_probability: pred.shortage_probability.clone(),
        alpha: settings.alpha,
        tau_hours: settings.tau,
        drawdown: risk.derivation.drawdown,
        liquidation_threshold: risk.parameters.liquidation_threshold,
        har_drawdown: risk.derivation.har_calibrated.map(|c| c.drawdown),
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
    let done = store.recorded_assets(&serving.info.metadata.id, origin).await?;
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

/// The outcome of `record` made at `origin` from `candles` (those with open time from
/// `origin - 1 h` on), or None while a target window has not closed.
#[must_use]
pub fn outcome_of(
    record: &LedgerRecord,
    origin: i64,
    candles: &[volcast_core::candles::Candle],
) -> Option<LedgerOutcome> {
    let longest = record.horizons.iter().copied().max()?.max(DEFAULT_TAU);
    let last = candles.last()?.open_time;
    if last < origin + (i64::try_from(longest).ok()? - 1) * HOUR_MS {
        return None;
    }
    let grid = HourlyGrid::from_candles(candles);
    let t = grid.slot(origin / HOUR_MS)?;
    let realized = record
        .horizons
        .iter()
        .map(|&h| {
            realized_variance(&grid.ret, h)
                .get(t + h)
                .copied()
                .filter(|v| v.is_finite())
        })
        .collect();
    Some(LedgerOutcome {
        realized_variance: realized,
        drawdown: drawdown(&grid, t, DEFAULT_TAU),
    })
}

/// Scores every entry whose windows have closed by `now_ms` and whose candles are stored;
/// returns how many were scored. Entries whose windows are still open are not read further.
///
/// # Errors
/// The store's.
pub async fn score_pending(state: &AppState, now_ms: i64) -> Result<usize, ApiError> {
    let store = state.store()?;
    let mut scored = 0;
    for entry in store.unscored(SCORE_BATCH).await? {
        let Ok(record) = serde_json::from_str::<LedgerRecord>(&entry.record) else {
            tracing::error!(asset = %entry.asset, origin = %format_ms(entry.origin), "unreadable ledger record");
            continue;
        };
        let longest = record
            .horizons
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(DEFAULT_TAU);
        let span = i64::try_from(longest).unwrap_or(i64::MAX / HOUR_MS);
        if entry.origin.saturating_add(span.saturating_mul(HOUR_MS)) > now_ms {
            continue;
        }
        let candles = store
            .candles(
                &entry.asset,
                entry.origin - HOUR_MS,
                entry.origin + (span - 1) * HOUR_MS,
                u32::try_from(span + 1).unwrap_or(u32::MAX),
            )
            .await?;
        if let Some(outcome) = outcome_of(&record, entry.origin, &candles) {
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
    let serving = state.serving()?;
    let today = day_origin(now_ms);
    let last = state.store()?.last_origin(&serving.info.metadata.id).await?;
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

/// The ledger job: [`run_once`] every minute on the wall clock, for as long as the service runs.
pub async fn job(state: AppState) {
    let mut tick = tokio::time::interval(JOB_PERIOD);
    loop {
        tick.tick().await;
        let now = crate::routes::assets::now_ms();
        match run_once(&state, now).await {
            Ok((0, 0)) | Err(ApiError::NotReady) => {}
            Ok((recorded, scored)) => {
                tracing::info!(recorded, scored, "forecast ledger");
                if let Err(e) = windows(&state, now, None).await {
                    tracing::warn!("forecast ledger figures: {e}");
                }
            }
            Err(e) => tracing::warn!("forecast ledger: {e}"),
        }
    }
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
    let serving = state.serving()?;
    let store = state.store()?;
    let mut out = Vec::new();
    for days in [30, 120] {
        let from = now_ms - days * DAY_MS;
        let entries: Vec<Scored> = store
            .scored(&serving.info.metadata.id, from, now_ms)
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
    let (mut model, mut har) = (Vec::new(), Vec::new());
    let levels = &first_levels(entries);
    let mut covered = vec![0_usize; levels.len()];
    let mut with_rv = 0;
    for e in entries {
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
        by_asset.push((group, lm, lh));
    }
    by_asset.sort_by_key(|&(g, _, _)| g);
    let d: Vec<f64> = by_asset.iter().map(|&(_, m, g)| m - g).collect();
    let groups: Vec<usize> = by_asset.iter().map(|&(g, _, _)| g).collect();
    // Daily origins: windows of `h` hours overlap for ceil(h / 24) - 1 days.
    let lag = h.div_ceil(24).saturating_sub(1);
    let dm = diebold_mariano(&d, &groups, lag);
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
    for e in entries {
        let Some(fall) = e.outcome.drawdown else { continue };
        n += 1;
        breaches += usize::from(fall > e.record.drawdown);
        if let Some(d) = e.record.har_drawdown {
            har_n += 1;
            har_breaches += usize::from(fall > d);
        }
    }
    (n > 0).then(|| RiskCalibrationCheck {
        alpha,
        tau_hours: DEFAULT_TAU,
        points: n,
        breaches,
        breach_rate: breaches as f64 / n as f64,
        expected_rate: 1.0 - alpha,
        kupiec_p_value: kupiec_p_value(breaches, n, 1.0 - alpha),
        har_points: har_n,
        har_breaches,
    })
}
