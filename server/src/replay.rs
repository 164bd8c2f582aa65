//! The daily operation replayed over history from candle files, with the server's own code: a
//! fresh store is filled hour by hour as the candles would have closed, and at every simulated
//! midnight [`daily::run_once`] runs exactly as in the service (recalibration, scoring, gate,
//! ledger). The report is what was served each day, the gate's switches, and the QLIKE and
//! breach rate of what was served beside always-model and always-HAR on the same points.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use volcast_core::candles::AssetCandles;
use volcast_core::time::{HOUR_MS, format_ms};
use volcast_store::{CandleStore, LedgerStore, Store};

use crate::daily::{self, DailyOptions, DailyState};
use crate::dto::validation::ValidationWindow;
use crate::gate::{GateRule, Switch, regate};
use crate::ledger::{DAY_MS, scored_of, validation};
use crate::metrics::Metrics;
use crate::state::{AppState, Settings};

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The artifact served at the start (its fit end at or before `from_ms`).
    pub artifact: PathBuf,
    /// First daily origin, Unix ms (a midnight).
    pub from_ms: i64,
    /// Last daily origin, Unix ms (a midnight).
    pub to_ms: i64,
    /// The store to fill: must be empty.
    pub database_url: String,
    /// Where the daily recalibration writes its artifacts.
    pub artifacts_dir: PathBuf,
}

/// What was served on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayServed {
    /// The daily origin, RFC 3339.
    pub day: String,
    /// The model id served (recalibrated that day when the artifact declares it); empty in a
    /// regated report.
    pub model_id: String,
    /// `model` or `fallback_har` (the risk policy), followed under a per-horizon rule by the
    /// horizons whose variance was HAR's (`model; HAR at 168 h`).
    pub policy: String,
    /// Ledger entries recorded at the origin.
    pub recorded: usize,
}

/// The replay's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// The artifact served at the start.
    pub artifact: String,
    /// Each day, in order.
    pub days: Vec<DayServed>,
    /// The gate's switches, in order.
    pub switches: Vec<Switch>,
    /// The ledger's figures over every origin of the period: `qlike_served` beside the model's
    /// and HAR's per horizon, `served_breaches` beside the model's and HAR's.
    pub summary: ValidationWindow,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReplayError(pub String);

macro_rules! replay_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ReplayError {
            fn from(e: $t) -> Self {
                Self(e.to_string())
            }
        }
    )*};
}
replay_error_from!(
    volcast_store::StoreError,
    crate::error::ApiError,
    crate::ServeError,
    crate::loading::LoadError
);

/// Candles of `assets` with open time in `[from, to)`, per asset.
fn slice(
    assets: &[AssetCandles],
    from: i64,
    to: i64,
) -> impl Iterator<Item = (&str, &[volcast_core::candles::Candle])> {
    assets.iter().filter_map(move |a| {
        let lo = a.candles.partition_point(|c| c.open_time < from);
        let hi = a.candles.partition_point(|c| c.open_time < to);
        (hi > lo).then(|| (a.asset.as_str(), &a.candles[lo..hi]))
    })
}

/// Refuses a period the replay would fill with nothing: a first origin inside the artifact's
/// fit (the ledger records no origin the model was fitted on, so such days recorded nothing and
/// the report came out empty, exit 0), or origins after the data's last candle (each day ran
/// the daily job over no new candle: `--to 2100-01-01` ran for minutes).
fn check_period(
    options: &ReplayOptions,
    fit_until: &str,
    assets: &[AssetCandles],
) -> Result<(), ReplayError> {
    let fit_close = volcast_core::time::parse_time(fit_until, volcast_core::time::Bound::Start)
        .map_err(|e| ReplayError(format!("the artifact's fit_until {fit_until}: {e}")))?
        + HOUR_MS;
    if options.from_ms < fit_close {
        return Err(ReplayError(format!(
            "--from {} is within the artifact's fit (its last candle opened at {fit_until}): the \
             first day it has not seen is {}; give a later --from or an artifact fit before it",
            format_ms(options.from_ms),
            format_ms((fit_close + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS)
        )));
    }
    let last_close = assets
        .iter()
        .filter_map(|a| a.candles.last())
        .map(|c| c.open_time + HOUR_MS)
        .max()
        .ok_or_else(|| ReplayError("no candles to replay".into()))?;
    if options.to_ms > last_close {
        return Err(ReplayError(format!(
            "--to {} is after the data's last candle (closing {}): the last day it can replay is {}",
            format_ms(options.to_ms),
            format_ms(last_close),
            format_ms(last_close.div_euclid(DAY_MS) * DAY_MS)
        )));
    }
    Ok(())
}

/// Replays the daily operation over `[from_ms, to_ms]` on `assets`; `progress` hears of each
/// day.
///
/// # Errors
/// When the store is not empty or fails, or the artifact cannot be served.
pub async fn replay(
    options: &ReplayOptions,
    assets: &[AssetCandles],
    progress: impl Fn(&DayServed, &daily::Pass),
) -> Result<ReplayReport, ReplayError> {
    let store = Store::open(&options.database_url)
        .await
        .map_err(|e| ReplayError(format!("opening the replay's store: {e}")))?;
    if !store.assets().await?.is_empty() || store.last_origin().await?.is_some() {
        return Err(ReplayError("the replay needs an empty store".into()));
    }
    // The server's defaults, not the environment's `VOLCAST_*` settings of a server.
    let config = crate::config::Config::defaults().map_err(|e| ReplayError(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let settings = Settings::from_config(&config).map_err(|e| ReplayError(e.to_string()))?;
    let state = AppState::with_store(settings, Arc::clone(&metrics), Some(store.clone()));
    let load = crate::config::load_options(&config);
    let serving = crate::loading::load(&options.artifact, load, &metrics).await?;
    check_period(options, &serving.info.metadata.fit_until, assets)?;
    state.set_serving(serving);
    let daily_options = DailyOptions {
        recalibrate: true,
        artifacts_dir: options.artifacts_dir.clone(),
        load,
        store_deadline: daily::STORE_DEADLINE,
    };
    // Everything that closed before the first origin's day, then each day as it closes.
    for (asset, candles) in slice(assets, i64::MIN, options.from_ms - DAY_MS) {
        store.insert_candles(asset, candles).await?;
    }
    let mut daily_state = DailyState::default();
    let mut days = Vec::new();
    let mut day = options.from_ms;
    while day <= options.to_ms {
        for (asset, candles) in slice(assets, day - DAY_MS, day) {
            store.insert_candles(asset, candles).await?;
        }
        // A minute after midnight, as the service's job first sees the day.
        let pass = daily::run_once(&state, &daily_options, &mut daily_state, day + 60_000).await?;
        let serving = state.serving()?;
        let served = DayServed {
            day: format_ms(day),
            model_id: serving.info.metadata.id.clone(),
            policy: serving.info.policy.name.clone(),
            recorded: store.recorded_assets(day).await?.len(),
        };
        progress(&served, &pass);
        days.push(served);
        day += DAY_MS;
    }
    // The outcomes of the last origins: the candles of the week after, then the scoring.
    let longest = 168 * HOUR_MS;
    for (asset, candles) in slice(assets, options.to_ms - DAY_MS, options.to_ms + longest) {
        store.insert_candles(asset, candles).await?;
    }
    while crate::ledger::score_pending(&state, options.to_ms + longest + DAY_MS).await? > 0 {}
    let entries: Vec<_> = store
        .scored(options.from_ms, options.to_ms)
        .await?
        .iter()
        .filter_map(scored_of)
        .collect();
    let span_days = (options.to_ms - options.from_ms) / DAY_MS + 1;
    let switches = store.switches().await?.into_iter().map(Switch::from).collect();
    // As the regate reads it: with any entry recorded before the period (the job's catch-up).
    let operated = crate::ledger::har_operated_for(&store, &entries, options.from_ms).await?;
    store.close().await;
    Ok(ReplayReport {
        artifact: options.artifact.display().to_string(),
        days,
        switches,
        summary: validation(
            &entries,
            span_days,
            options.from_ms,
            options.to_ms,
            Some(&operated),
        ),
    })
}

/// A finished replay's ledger (its store at `database_url`) under another gate rule: what the
/// service would have served over `[from_ms, to_ms]` under `rule` ([`regate`]), in the replay's
/// report (the days' model ids left empty: the ledger's entries do not keep them).
///
/// # Errors
/// When the store cannot be read or holds no entry in the period.
pub async fn regate_replay(
    database_url: &str,
    rule: &GateRule,
    from_ms: i64,
    to_ms: i64,
) -> Result<ReplayReport, ReplayError> {
    let store = Store::open_existing(database_url)
        .await
        .map_err(|e| ReplayError(format!("opening the replay's store: {e}")))?;
    let entries: Vec<_> = store
        .scored(from_ms - rule.window_days * DAY_MS, to_ms)
        .await?
        .iter()
        .filter_map(scored_of)
        .collect();
    // HAR operated in the summary reads as far before the period as the records' window.
    let operated = crate::ledger::har_operated_for(&store, &entries, from_ms).await?;
    store.close().await;
    if !entries.iter().any(|e| e.origin >= from_ms) {
        return Err(ReplayError(format!(
            "{database_url} holds no scored ledger entry from {}",
            format_ms(from_ms)
        )));
    }
    let regated = regate(rule, &entries, from_ms, to_ms);
    let days = regated
        .days
        .iter()
        .map(|(day, policy)| {
            let lo = regated.entries.partition_point(|e| e.origin < *day);
            let hi = regated.entries.partition_point(|e| e.origin <= *day);
            DayServed {
                day: format_ms(*day),
                model_id: String::new(),
                policy: policy.clone(),
                recorded: hi - lo,
            }
        })
        .collect();
    let span_days = (to_ms - from_ms) / DAY_MS + 1;
    Ok(ReplayReport {
        artifact: format!("regated from {database_url}"),
        days,
        switches: regated.switches,
        summary: validation(&regated.entries, span_days, from_ms, to_ms, Some(&operated)),
    })
}
