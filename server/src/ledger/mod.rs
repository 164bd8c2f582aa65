//! The forecast ledger: at every daily origin (00:00 UTC), for every stored asset, what the
//! service would serve then (the model's and HAR's variances, the quantiles, the shortage
//! probabilities, and the risk policy's D and LT at the default settings), made by the asset
//! routes' own code from the candles stored up to that origin; and, once the target windows have
//! passed, what happened, from the stored candles with SPEC's definitions (the core's
//! `realized_variance` and `drawdown`, as `evaluate` uses them). [`validation`] turns the scored
//! entries into the skill and calibration figures of `GET /v1/model/validation`.
//!
//! Each horizon is scored as its own window closes: an entry's outcome is first written once its
//! shortest window and the drawdown's have closed, with the horizons still open marked so
//! ([`LedgerOutcome::open_horizons`]), and written again at the passes after each of them closes.
//! The figures and the gate read every horizon on the windows closed by then.
//!
//! Nothing reads the future: a record uses only candles that closed by its origin, and a window
//! is scored only once its time has passed and every candle of it is stored.

use serde::{Deserialize, Serialize};
use volcast_core::grid::{Asset, HourlyGrid};
use volcast_core::panel::PreparedAsset;
use volcast_core::policy::DEFAULT_TAU;
use volcast_core::targets::{SHORTAGE_REFERENCE_HOURS, drawdown};
use volcast_core::time::{HOUR_MS, format_ms};
use volcast_store::{CandleStore, LedgerEntry, LedgerStore};

use crate::dto::CandleDto;
use crate::dto::validation::ValidationWindow;
use crate::error::ApiError;
use crate::routes::forecast_items;
use crate::routes::risk_parameters::recommend;
use crate::state::{AppState, Serving};

mod figures;

pub use figures::{HarOperated, Scored, scored_of, validation};

pub use volcast_core::time::{DAY_MS, day_origin};
/// Days before today the ledger job fills in when it starts (or finds days missing).
pub const CATCH_UP_DAYS: i64 = 7;
/// Entries scored per pass.
const SCORE_BATCH: u32 = 5000;
/// How far the store's other assets must have moved past a window's end before the ledger stops
/// waiting for the window's own candles and judges it on what is stored: the gate's window ([`crate::gate::GateRule::DEFAULT`], 30 days), past which a late
/// outcome could no longer count in any decision.
pub const GIVE_UP_MS: i64 = 30 * DAY_MS;

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
    /// The served artifact's daily correction window, days (absent: no daily correction, or a
    /// record made before it was kept): HAR operated is measured on the same window
    /// ([`HarOperated`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operated_days: Option<usize>,
}

/// The unit tests' record: these forecasts, served by the model at the default settings.
#[cfg(test)]
pub(crate) fn test_record(
    horizons: Vec<usize>,
    variance: Vec<f64>,
    har_variance: Vec<Option<f64>>,
    operated_days: Option<usize>,
) -> LedgerRecord {
    let n = horizons.len();
    LedgerRecord {
        horizons,
        variance,
        har_variance,
        quantile_levels: Vec::new(),
        quantiles: vec![Vec::new(); n],
        shortage_probability: vec![0.1; n],
        alpha: 0.99,
        tau_hours: 4.0,
        drawdown: 0.1,
        liquidation_threshold: 0.8,
        har_drawdown: Some(0.1),
        policy: model_policy(),
        har_horizons: None,
        operated_days,
    }
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
    /// Horizons whose windows had not closed when this was written: their realized variance and
    /// label are None until a later pass scores them. Empty once the outcome is complete (and in
    /// outcomes written before horizons were scored as their windows close).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_horizons: Vec<usize>,
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

/// The record of a forecast at the service's default risk settings, its quantile level and
/// liquidation window SPEC's 0.99 and 4 h whatever `--alpha` and `--tau-hours` say: its outcome's
/// drawdown is scored over 4 h, and the gate pools a window's entries at one level.
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
    let settings = volcast_core::policy::RiskSettings {
        alpha: volcast_core::policy::DEFAULT_ALPHA,
        tau: DEFAULT_TAU as f64,
        ..state.settings().defaults
    };
    let risk = recommend(
        info,
        &settings,
        state.settings().answer_rules(),
        "",
        prep,
        pred,
        None,
    )?;
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
        operated_days: info.metadata.recalibration.as_ref().and_then(|r| r.rolling_days),
    })
}

/// Whether an error forecasting an asset ends the ledger's pass rather than leaving the asset
/// out of the day: the store's or the model's readiness, and a full inference queue or a
/// timeout, which pass. Skipped, an asset missed at an older origin of a catch-up was never
/// recorded there (the next pass starts at the latest origin recorded); ended, the next pass
/// starts again where this one stopped. A window the rules refuse stays skipped: it would be
/// refused again.
fn ends_the_pass(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::StoreUnavailable(_)
            | ApiError::NotReady
            | ApiError::QueueFull { .. }
            | ApiError::Timeout { .. }
    )
}

/// Records, for every stored asset whose candle closing at `origin` is stored, what the served
/// model would serve at `origin`; returns how many entries are new. An asset whose window the
/// rules refuse is left out of that day (logged).
///
/// # Errors
/// The store's, the model's readiness, a full inference queue or a timeout.
pub async fn record_origin(state: &AppState, origin: i64) -> Result<usize, ApiError> {
    let serving = state.serving()?;
    if origin < knowledge_end(&serving.info.metadata) {
        // The served model has seen what followed this origin (it was fit, or its corrections
        // measured, on data past it): an entry would flatter it, and the gate reads the ledger.
        return Ok(0);
    }
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
            Err(e) if ends_the_pass(&e) => return Err(e),
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

/// The first origin (Unix ms) the served artifact knows nothing after: its fit end, or the end
/// of the window its corrections were measured on (the daily job's day), whichever is later. The
/// ledger's catch-up (after a first start or a downtime) records no origin before it.
#[must_use]
pub fn knowledge_end(metadata: &volcast_model::artifact::Metadata) -> i64 {
    let fit_end = volcast_model::operation::fit_end_hour(metadata).map_or(i64::MIN, |h| h * HOUR_MS);
    let measured = metadata
        .recalibration
        .as_ref()
        .and_then(|r| volcast_core::time::parse_time(&r.until, volcast_core::time::Bound::Start).ok())
        .unwrap_or(i64::MIN);
    fit_end.max(measured)
}

/// Hours of candles before an origin that scoring reads: the shortage label's 30-day median of
/// M_H needs `720 + H - 1` hours of illiquidity before the origin, each return its previous close.
#[must_use]
pub fn scoring_lookback_hours(record: &LedgerRecord) -> i64 {
    let longest = record.horizons.iter().copied().max().unwrap_or(0);
    i64::try_from(SHORTAGE_REFERENCE_HOURS + longest).unwrap_or(0)
}

/// The outcome of `record` made at `origin` from `candles` (those with open time from
/// `origin - scoring_lookback_hours` on; fewer only leaves shortage labels out), the asset's
/// last stored open time and the store's latest (any asset's), as of `now_ms`: every horizon whose window has closed scored, the
/// others listed open; None until the drawdown's window and the shortest horizon's have closed.
/// A window has closed once its time has passed and the store holds a candle at or after its
/// last hour (the window's own last candle may be one the exchange never had: SPEC's 90% rule
/// then decides). The realized variances and shortage labels are the core's
/// ([`PreparedAsset`], as `evaluate` scores), the fall [`drawdown`].
#[must_use]
pub fn outcome_of(
    record: &LedgerRecord,
    origin: i64,
    candles: &[volcast_core::candles::Candle],
    stored_last_open: i64,
    store_latest_open: i64,
    now_ms: i64,
) -> Option<LedgerOutcome> {
    let last = candles.last()?.open_time.max(stored_last_open);
    // Closed once the store holds a candle of the asset at or after the window's last hour, or,
    // where it never will (an asset no longer traded or followed), once the store holds other
    // assets' candles [`GIVE_UP_MS`] past the window: it is then judged on what is stored
    // (SPEC's 90% rule: missing), instead of staying open and ahead of every newer entry in the
    // scoring queue for good. A store that stopped altogether (a follower blocked for weeks)
    // gives up on nothing: its backfill still scores every window.
    let closed = |hours: usize| {
        hours > 0
            && hours_after(origin, hours) <= now_ms
            && (hours_after(origin, hours - 1) <= last
                || hours_after(origin, hours).saturating_add(GIVE_UP_MS) <= store_latest_open)
    };
    if !closed(DEFAULT_TAU) || !record.horizons.iter().any(|&h| closed(h)) {
        return None;
    }
    // The grid reaches the last hour of every closed window, a missing last candle as a missing
    // slot (SPEC's 90% rule then decides, as in `evaluate`, whose grid runs on), not as the
    // window's end.
    let through = record
        .horizons
        .iter()
        .copied()
        .filter(|&h| closed(h))
        .chain([DEFAULT_TAU])
        .max()
        .unwrap_or(DEFAULT_TAU);
    let mut grid = HourlyGrid::from_candles(candles);
    grid.pad_through(origin / HOUR_MS + i64::try_from(through).unwrap_or(0));
    let asset = Asset {
        id: String::new(),
        grid,
    };
    let t = asset.grid.slot(origin / HOUR_MS)?;
    let prepared = PreparedAsset::new(&asset, &record.horizons);
    let mut scratch = Vec::new();
    Some(LedgerOutcome {
        realized_variance: record
            .horizons
            .iter()
            .map(|&h| closed(h).then(|| prepared.target(t, h)).filter(|v| v.is_finite()))
            .collect(),
        drawdown: drawdown(&asset.grid, t, DEFAULT_TAU),
        shortage: record
            .horizons
            .iter()
            .map(|&h| {
                if closed(h) {
                    prepared.shortage(t, h, &mut scratch).label
                } else {
                    None
                }
            })
            .collect(),
        open_horizons: record.horizons.iter().copied().filter(|&h| !closed(h)).collect(),
    })
}

/// When the last of `record`'s windows from `origin` has closed (its longest horizon, or the
/// drawdown's tau), Unix ms: the entry's outcome is complete from the daily job's first pass
/// after then.
#[must_use]
pub fn closes_at(record: &LedgerRecord, origin: i64) -> i64 {
    let longest = record
        .horizons
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(DEFAULT_TAU);
    hours_after(origin, longest)
}

/// When the next window of an entry at `origin` closes that its outcome so far (`scored`, None
/// when never scored) leaves open, Unix ms: the first is the drawdown's and the shortest
/// horizon's together.
fn next_close(record: &LedgerRecord, origin: i64, scored: Option<&LedgerOutcome>) -> i64 {
    let open = scored.map_or(&record.horizons, |o| &o.open_horizons);
    let first = open.iter().copied().min().unwrap_or(0);
    let first = if scored.is_none() {
        first.max(DEFAULT_TAU)
    } else {
        first
    };
    hours_after(origin, first)
}

/// `hours` after `origin` (Unix ms), saturating.
#[must_use]
pub fn hours_after(origin: i64, hours: usize) -> i64 {
    let span = i64::try_from(hours).unwrap_or(i64::MAX / HOUR_MS);
    origin.saturating_add(span.saturating_mul(HOUR_MS))
}

/// Scores every entry with a window closed by `now_ms` and not scored yet, from the stored
/// candles; returns how many outcomes were written (a first one, or one with more horizons).
/// Entries whose next window is still open are not read further.
///
/// # Errors
/// The store's.
pub async fn score_pending(state: &AppState, now_ms: i64) -> Result<usize, ApiError> {
    let store = state.store()?;
    let mut scored = 0;
    let mut last_open = std::collections::HashMap::new();
    let store_latest = store
        .last_open_times()
        .await?
        .into_iter()
        .map(|(_, t)| t)
        .max()
        .unwrap_or(i64::MIN);
    for entry in store.unscored(SCORE_BATCH).await? {
        let Ok(record) = serde_json::from_str::<LedgerRecord>(&entry.record) else {
            tracing::error!(asset = %entry.asset, origin = %format_ms(entry.origin), "unreadable ledger record");
            continue;
        };
        let so_far: Option<LedgerOutcome> = entry
            .outcome
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok());
        if next_close(&record, entry.origin, so_far.as_ref()) > now_ms {
            continue;
        }
        let through = closes_at(&record, entry.origin).min(now_ms);
        let span = (through - entry.origin) / HOUR_MS;
        let before = scoring_lookback_hours(&record);
        // The asset's newest stored hour is read before its candles: a candle stored between
        // the two reads then shows in the candles, never in `stored_last` alone (read after,
        // it closed a window whose last hour the candles read lacked, and the outcome was
        // written complete on one return short, for good).
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
        let candles = store
            .candles(
                &entry.asset,
                entry.origin - before * HOUR_MS,
                entry.origin + (span - 1) * HOUR_MS,
                u32::try_from(before + span).unwrap_or(u32::MAX),
            )
            .await?;
        let Some(outcome) = outcome_of(&record, entry.origin, &candles, stored_last, store_latest, now_ms)
        else {
            continue;
        };
        if so_far.as_ref() == Some(&outcome) {
            continue;
        }
        let json = serde_json::to_string(&outcome).map_err(|e| ApiError::Internal(e.to_string()))?;
        store
            .set_outcome(&entry, &json, !outcome.open_horizons.is_empty())
            .await?;
        scored += 1;
    }
    Ok(scored)
}

/// One pass of the ledger job at `now_ms`: records the daily origins not yet recorded with the
/// served model (the last [`CATCH_UP_DAYS`] at most), and on the latest recorded one the assets
/// whose candle arrived late; then scores what has matured. A full inference queue or a timeout
/// stops the recording at its origin ([`record_origin`]), for the next pass to come back to,
/// and the scoring still runs.
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
        match record_origin(state, origin).await {
            Ok(n) => recorded += n,
            // A full queue or a timeout passes: the next pass comes back to this origin (the
            // latest recorded, or the one before it), and the daily job goes on meanwhile.
            Err(e @ (ApiError::QueueFull { .. } | ApiError::Timeout { .. })) => {
                tracing::info!(origin = %format_ms(origin), "the ledger's pass stops here, the next one comes back to it: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
        origin += DAY_MS;
    }
    Ok((recorded, score_pending(state, now_ms).await?))
}

/// HAR operated ([`HarOperated`]) for figures over `entries` (origins from `from` on): measured
/// on them and on the scored entries before `from`, as far back as their records' correction
/// window and longest horizon reach (HAR operated at the first origins reads the days before
/// them).
///
/// # Errors
/// The store's.
pub async fn har_operated_for(
    store: &volcast_store::Store,
    entries: &[Scored],
    from: i64,
) -> Result<HarOperated, volcast_store::StoreError> {
    let reach = entries
        .iter()
        .filter_map(|e| {
            let days = i64::try_from(e.record.operated_days?).ok()?;
            let hours = i64::try_from(e.record.horizons.iter().copied().max()?).ok()?;
            Some(
                days.saturating_mul(DAY_MS)
                    .saturating_add(hours.saturating_mul(HOUR_MS)),
            )
        })
        .max();
    let earlier: Vec<Scored> = match reach {
        Some(reach) => store
            .scored(from.saturating_sub(reach), from - 1)
            .await?
            .iter()
            .filter_map(scored_of)
            .collect(),
        None => Vec::new(),
    };
    Ok(HarOperated::new(
        earlier.iter().chain(entries.iter().filter(|e| e.origin >= from)),
    ))
}

/// The served model's figures over the last 30 and 120 days of origins at `now_ms` (what
/// `GET /v1/model/validation` answers): pooled over assets, or for `asset` alone, against the
/// better of HAR and HAR operated ([`HarOperated`], measured on every asset's entries). The
/// pooled figures also set the validation gauges.
///
/// # Errors
/// The store's, or the model's readiness.
pub async fn windows(
    state: &AppState,
    now_ms: i64,
    asset: Option<&str>,
) -> Result<Vec<ValidationWindow>, ApiError> {
    const WINDOWS: [i64; 2] = [30, 120];
    state.serving()?;
    let store = state.store()?;
    let longest = now_ms - WINDOWS[1] * DAY_MS;
    let entries: Vec<Scored> = store
        .scored(longest, now_ms)
        .await?
        .iter()
        .filter_map(scored_of)
        .collect();
    let operated = har_operated_for(store, &entries, longest).await?;
    let mut out = Vec::new();
    for days in WINDOWS {
        let from = now_ms - days * DAY_MS;
        // The entries come by origin: the window is their tail, filtered to one asset if asked.
        let tail = &entries[entries.partition_point(|e| e.origin < from)..];
        let counted: std::borrow::Cow<'_, [Scored]> = match asset {
            None => tail.into(),
            Some(a) => tail
                .iter()
                .filter(|e| e.asset == a)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        };
        let window = validation(&counted, days, from, now_ms, Some(&operated));
        if asset.is_none() {
            state.metrics().set_validation(&window);
        }
        out.push(window);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// What passes (a full queue, a timeout, the store, the model loading) ends the pass so the
    /// next one comes back to the origin; what the window's rules refuse leaves the asset out.
    #[test]
    fn a_passing_error_ends_the_pass_and_a_refused_window_is_skipped() {
        let second = Duration::from_secs(1);
        for e in [
            ApiError::QueueFull { retry_after: second },
            ApiError::Timeout { timeout: second },
            ApiError::NotReady,
            ApiError::StoreUnavailable("down".into()),
        ] {
            assert!(ends_the_pass(&e), "{e}");
        }
        for e in [
            ApiError::UnusableInput {
                field: "candles".into(),
                message: "non-finite".into(),
            },
            ApiError::InvalidShape("x".into()),
        ] {
            assert!(!ends_the_pass(&e), "{e}");
        }
    }
}
