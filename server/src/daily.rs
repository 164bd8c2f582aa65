//! The daily job inside the service, once a minute on the clock and all of it at the first pass
//! after 00:00 UTC, in this order:
//!
//! 1. **Recalibration**: the served model's corrections re-measured on the stored candles with
//!    the offline daily job's own code ([`refresh_recalibration`], what `calibrate --until`
//!    runs, itself the replay `evaluate` scores); the artifact it writes is loaded, warmed and
//!    swapped in atomically (a new model id in `/v1/model` and every answer). Only for artifacts
//!    that declare a rolling window; once a day (a failed one is tried up to three times,
//!    ten minutes apart; a pass that finds the day's 23:00 candles not all stored is no
//!    failure, and the next pass tries again, for up to six hours after midnight; nor is a store
//!    that cannot be read: the pass goes on and the next one tries again). Measured, as
//!    served, without the market factor.
//! 2. **Scoring** of the ledger entries whose windows have closed.
//! 3. **The gate** ([`crate::gate`]) on the ledger's last 30 days: the policy of the day.
//! 4. **The ledger** records what is served at the day's origin ([`crate::ledger`]).
//! 5. **The anomaly thresholds** of the day ([`crate::anomaly::day_scale`]): the detector's
//!    asset-hour thresholds scaled so that the stored assets' hours of the trailing 90 days
//!    would have been flagged at the stated rate, with the code of `anomaly evaluate`'s replay,
//!    one scale for hours judged against the market and one for hours judged alone; visible in
//!    `/v1/model` and every anomaly answer (`candle_threshold_scale`,
//!    `candle_alone_threshold_scale`) and in the `anomaly_threshold_scale` and
//!    `anomaly_alone_threshold_scale` gauges. Again after a reload of the detector.
//!
//! SIGHUP and the external `calibrate --until --set-default` job keep working: a reload serves
//! whatever the `default` pointer names, and the next day's recalibration starts from it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use volcast_core::anomaly::{AdaptiveConfig, Scale};
use volcast_core::candles::{AssetCandles, Candle};
use volcast_core::time::{Bound, HOUR_MS, format_ms, parse_time};
use volcast_model::inference::LoadedModel;
use volcast_model::operation::{fit_end_hour, refresh_recalibration};
use volcast_store::{CandleStore, LedgerStore};

use crate::config::LoadOptions;
use crate::error::ApiError;
use crate::gate::{GateRule, PolicyStatus, Switch, decide};
use crate::ledger::{DAY_MS, Scored, day_origin, scored_of, validation};
use crate::loading::load;
use crate::metrics::ReloadLabels;
use crate::state::AppState;

/// How often the job looks at the clock.
const JOB_PERIOD: Duration = Duration::from_secs(60);
/// The first wait before the gate's last switch is read again after a failed read at start,
/// doubled after each failure up to [`RESTORE_MAX_WAIT`].
const RESTORE_FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between reads of the gate's last switch at start.
const RESTORE_MAX_WAIT: Duration = Duration::from_secs(4);
/// The longest a read of the gate's last switch at start may take.
const RESTORE_READ_TIMEOUT: Duration = Duration::from_secs(6);
/// How long the job keeps reading the gate's last switch at start before leaving it to the passes.
const RESTORE_GIVE_UP: Duration = Duration::from_secs(120);
/// How long after midnight the day's pass waits for the 23:00 candle of every followed symbol
/// that traded the day before (the follower fetches it a few seconds after 00:00, symbol by
/// symbol): [`waiting_for_candles`].
const WAIT_FOR_CANDLES_MS: i64 = 15 * 60_000;
/// A failed recalibration is tried again this much later, at most [`RECALIBRATION_TRIES`] times
/// a day in all.
const RETRY_MS: i64 = 10 * 60_000;
/// Tries of the recalibration per day before it gives up until the next day.
const RECALIBRATION_TRIES: u32 = 3;

/// What the daily job does besides the ledger.
#[derive(Debug, Clone)]
pub struct DailyOptions {
    /// Recalibrate inside the service (`--daily-recalibration`).
    pub recalibrate: bool,
    /// Where the recalibrated artifacts go (`--recalibrated-dir`).
    pub artifacts_dir: PathBuf,
    /// How the recalibrated artifact is loaded.
    pub load: LoadOptions,
    /// The longest each step of a pass may take ([`STORE_DEADLINE`] in the service): a step
    /// given up fails the pass, and the next pass starts afresh.
    pub store_deadline: Duration,
}

/// The longest each step of a daily pass may take, its store reads and writes and the little
/// computing between them (never the recalibration's computation, which is not cancelled). A
/// query whose connection's peer is gone without a reset (a failover), its request already
/// acknowledged, never returns, and the pass waiting on it stopped the daily job
/// (recalibration, scoring, the gate, the ledger and the anomaly thresholds) until a restart.
/// Far longer than any step takes on a healthy store. A step given up is safe: its reads are
/// read again, and its writes are idempotent (the ledger's entries and the gate's switch are
/// inserted once, by their keys; an outcome set twice is the same outcome).
pub const STORE_DEADLINE: Duration = Duration::from_secs(10 * 60);

/// `step`, given up after `limit` as the store's failure.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    step: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(limit, step).await.unwrap_or_else(|_| {
        Err(ApiError::StoreUnavailable(format!(
            "{what}: not done within {limit:?} (a store that does not answer)"
        )))
    })
}

/// The job's memory between passes: the candles the recalibration reads (refreshed from the
/// store, never trusted beyond it: an asset whose stored count changed is read again) and the
/// days already handled.
#[derive(Debug, Default)]
pub struct DailyState {
    candles: HashMap<String, Vec<Candle>>,
    /// The day of the last recalibration done (or found not needed) and the model served after
    /// it: a reload that serves another model later that day (SIGHUP, `POST /v1/admin/reload`
    /// after `train --set-default`) is recalibrated again, not served with older corrections
    /// until the next day.
    recalibrated: Option<(i64, String)>,
    /// The day of the last failed recalibrations, how many, and when the last was tried.
    failed: Option<(i64, u32, i64)>,
    gate_day: Option<i64>,
    /// The day, detector and scales of the last anomaly thresholds set.
    anomaly: Option<(i64, String, Scale)>,
    /// The day the recalibration was last logged as waiting for the day's candles.
    waiting_logged: Option<i64>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pass {
    /// The id of the artifact swapped in by the recalibration, if any.
    pub recalibrated: Option<String>,
    /// The gate's switch, if any.
    pub switch: Option<Switch>,
    /// Ledger entries recorded.
    pub recorded: usize,
    /// Ledger entries scored.
    pub scored: usize,
    /// The anomaly thresholds' scales, when set this pass.
    pub anomaly_scale: Option<Scale>,
}

impl DailyState {
    /// Whether the day's recalibration may be tried now: not after [`RECALIBRATION_TRIES`]
    /// failures today, nor within [`RETRY_MS`] of the last.
    fn may_recalibrate(&self, today: i64, now_ms: i64) -> bool {
        match self.failed {
            Some((day, tries, last)) if day == today => {
                tries < RECALIBRATION_TRIES && now_ms - last >= RETRY_MS
            }
            _ => true,
        }
    }
}

/// Whether the day's pass should wait: within [`WAIT_FOR_CANDLES_MS`] of midnight, a symbol the
/// live follower follows traded the day before but has no 23:00 candle stored yet (the follower
/// asks for it a few seconds after 00:00). Without a follower the store is filled by other means
/// (`ingest`, a replay), and the pass does not wait; a recalibration that finds the day's 23:00
/// candles not all stored waits on its own ([`Recalibrated::CandlesNotYet`]).
///
/// # Errors
/// The store's.
async fn waiting_for_candles(state: &AppState, today: i64, now_ms: i64) -> Result<bool, ApiError> {
    let Some(followed) = state.follow_status() else {
        return Ok(false);
    };
    if now_ms - today >= WAIT_FOR_CANDLES_MS {
        return Ok(false);
    }
    let followed: std::collections::HashSet<String> =
        followed.snapshot().into_iter().map(|s| s.symbol).collect();
    Ok(state
        .store()?
        .last_open_times()
        .await?
        .iter()
        .any(|(asset, last)| followed.contains(asset) && lacks_last_hour(*last, today)))
}

/// Whether an asset whose last stored candle opened at `last` traded the day before `today` but
/// lacks that day's 23:00 candle.
fn lacks_last_hour(last: i64, today: i64) -> bool {
    (today - DAY_MS..today - HOUR_MS).contains(&last)
}

/// Restores the policy served from the gate's last switch in the store (after a restart).
///
/// # Errors
/// The store's.
pub async fn restore_policy(state: &AppState) -> Result<(), ApiError> {
    if let Some(switch) = state.store()?.switches().await?.pop().map(Switch::from) {
        adopt(state, &switch);
    }
    Ok(())
}

/// Serves the policy of the store's last switch, when it is not the one served already. A
/// policy this build does not know (a newer replica's, a row written by hand) is not served by
/// its name: the model answered under it, named `bogus` in every answer (until stop 60). The
/// safer policy, HAR's fallback, is served instead, saying why.
fn adopt(state: &AppState, last: &Switch) {
    let (current, since) = state.policy();
    if since.is_some_and(|s| s > last.at) {
        // Served since a later switch than this one (read before it was recorded): kept.
        return;
    }
    let mut status = last.status();
    if ![crate::gate::MODEL, crate::gate::FALLBACK_HAR].contains(&status.name.as_str()) {
        tracing::error!(
            policy = %last.policy,
            since = %format_ms(last.at),
            "the gate's last switch names a policy this build does not know: serving HAR's fallback"
        );
        status = PolicyStatus {
            name: crate::gate::FALLBACK_HAR.into(),
            since: status.since,
            reason: format!(
                "the gate's last switch names a policy this build does not know ({}): the safer \
                 fallback is served",
                last.policy.escape_debug()
            ),
        };
    }
    if since != Some(last.at) || current.name != status.name {
        tracing::info!(policy = %status.name, since = %format_ms(last.at), "policy restored from the gate's last switch");
        state.set_policy(status, Some(last.at));
    }
}

/// One pass at `now_ms` (see the module's order).
///
/// # Errors
/// The store's, or the model's readiness. A failed recalibration is logged and counted, and the
/// pass goes on with the model served.
pub async fn run_once(
    state: &AppState,
    options: &DailyOptions,
    daily: &mut DailyState,
    now_ms: i64,
) -> Result<Pass, ApiError> {
    let today = day_origin(now_ms);
    let mut pass = Pass::default();
    let limit = options.store_deadline;
    if bounded(
        limit,
        "the day's last candles",
        waiting_for_candles(state, today, now_ms),
    )
    .await?
    {
        // The day's last candles are still coming in: the day's work waits for them (a pass
        // that ran without them would recalibrate, gate and record on yesterday's data).
        pass.scored = bounded(limit, "scoring", crate::ledger::score_pending(state, now_ms)).await?;
        return Ok(pass);
    }
    let served = state.serving().ok().map(|s| (today, s.info.metadata.id.clone()));
    if options.recalibrate && daily.recalibrated != served && daily.may_recalibrate(today, now_ms) {
        match recalibrate(state, options, daily, today, now_ms).await {
            Ok(Recalibrated::Swapped(id)) => {
                count(state, "ok");
                pass.recalibrated = Some(id.clone());
                daily.recalibrated = Some((today, id));
            }
            Ok(Recalibrated::NotNeeded) => daily.recalibrated = served,
            // Not a failure: tried again at the next pass.
            Ok(Recalibrated::CandlesNotYet) => {
                if daily.waiting_logged != Some(today) {
                    daily.waiting_logged = Some(today);
                    tracing::info!(day = %format_ms(today), "daily recalibration waits for the day's last candles");
                }
            }
            Err(ApiError::NotReady) => return Err(ApiError::NotReady),
            // The store could not be read: no try of the day is used (an outage at midnight
            // used them all, and the model served uncorrected until the next day). Its reads
            // come before any work, so the next pass, a minute later, tries again cheaply; this
            // one goes on with the rest of the day's work.
            Err(ApiError::StoreUnavailable(e)) => {
                count(state, "store_unavailable");
                tracing::warn!(day = %format_ms(today), "daily recalibration could not read the store, tried again at the next pass: {e}");
            }
            Err(e) => {
                count(state, "failed");
                let tries = daily.failed.filter(|f| f.0 == today).map_or(0, |f| f.1) + 1;
                daily.failed = Some((today, tries, now_ms));
                let next = if tries < RECALIBRATION_TRIES {
                    format!("tried again in {} min", RETRY_MS / 60_000)
                } else {
                    "not tried again until tomorrow".to_owned()
                };
                tracing::warn!(day = %format_ms(today), tries, "daily recalibration failed, serving the model as it was ({next}): {e}");
            }
        }
    }
    pass.scored = bounded(limit, "scoring", crate::ledger::score_pending(state, now_ms)).await?;
    if daily.gate_day != Some(today) {
        pass.switch = bounded(limit, "the gate", gate(state, today)).await?;
        daily.gate_day = Some(today);
    } else {
        // The day is decided here, but a replica sharing the store may have recorded a switch
        // for it since (it gated later, on more scored outcomes): serve what the store says.
        bounded(limit, "the gate's last switch", restore_policy(state)).await?;
    }
    let (recorded, scored) = bounded(limit, "the ledger", crate::ledger::run_once(state, now_ms)).await?;
    pass.recorded = recorded;
    pass.scored += scored;
    pass.anomaly_scale = bounded(
        limit,
        "the anomaly thresholds",
        anomaly_threshold(state, daily, today),
    )
    .await?;
    Ok(pass)
}

/// Sets the day's anomaly threshold scales, once a day and again whenever the detector served
/// is not the one they were set on (a reload); the scales set, if any.
///
/// # Errors
/// The store's.
async fn anomaly_threshold(
    state: &AppState,
    daily: &mut DailyState,
    today: i64,
) -> Result<Option<Scale>, ApiError> {
    let Some(scorer) = state.anomaly_scorer() else {
        return Ok(None);
    };
    let id = scorer.detector.id.clone();
    let scale = match &daily.anomaly {
        Some((day, done, s)) if *day == today && *done == id => {
            if scorer.scale() == *s {
                return Ok(None);
            }
            *s
        }
        _ => {
            let config = AdaptiveConfig::default();
            let from = crate::anomaly::scale_data_from(today, &config);
            let store = state.store()?;
            let mut assets = Vec::new();
            for (asset, n) in store.counts(from, today - HOUR_MS).await? {
                let limit = u32::try_from(n).unwrap_or(u32::MAX);
                assets.push(store.candles(&asset, from, today - HOUR_MS, limit).await?);
            }
            let sc = Arc::clone(&scorer);
            let found =
                tokio::task::spawn_blocking(move || crate::anomaly::day_scale(&sc, &assets, today, &config))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
            for (model, s) in [("candles_market", found.market), ("candles", found.alone)] {
                match s {
                    Some(s) => {
                        tracing::info!(day = %format_ms(today), model, scale = s, detector = %id, "anomaly threshold scaled");
                    }
                    None => {
                        tracing::info!(day = %format_ms(today), model, detector = %id, "anomaly threshold as fitted: too few stored hours in the window");
                    }
                }
            }
            found.served(scorer.scale().pools)
        }
    };
    // A detector reloaded while the scale was measured (or as it is set) is measured again at
    // the next pass.
    let scaled = scorer.as_ref().clone().with_scale(scale);
    if !state.replace_anomaly(&id, Arc::new(scaled)) {
        return Ok(None);
    }
    state.metrics().anomaly_threshold_scale.set(scale.candles);
    state
        .metrics()
        .anomaly_alone_threshold_scale
        .set(scale.candles_alone);
    daily.anomaly = Some((today, id, scale));
    Ok(Some(scale))
}

fn count(state: &AppState, outcome: &str) {
    state
        .metrics()
        .recalibrations
        .get_or_create(&ReloadLabels {
            outcome: outcome.into(),
        })
        .inc();
}

/// The gate at the daily origin `day_ms`: decides on the ledger's scored entries of the rule's
/// window (origins before the day: what the day's first pass sees, whenever this pass runs), and
/// on a switch records it, serves the new policy and logs it.
///
/// The store's last switch is adopted first: a replica sharing the store, or an earlier run of
/// this one, may have switched since this process last looked. When it switched at this origin
/// already, the day is decided and nothing is decided again (a restart later in the day would
/// otherwise decide on outcomes scored since, and a switch it could not record would be served
/// anyway).
///
/// # Errors
/// The store's.
pub async fn gate(state: &AppState, day_ms: i64) -> Result<Option<Switch>, ApiError> {
    let rule = GateRule::DEFAULT;
    let from = day_ms - rule.window_days * DAY_MS;
    let store = state.store()?;
    if let Some(last) = store.switches().await?.pop().map(Switch::from) {
        adopt(state, &last);
        if last.at >= day_ms {
            return Ok(None);
        }
    }
    let entries: Vec<Scored> = store
        .scored(from, day_ms - 1)
        .await?
        .iter()
        .filter_map(scored_of)
        .collect();
    // The gate reads the model against HAR, what it falls back to (`dm_daily_vs_har`).
    let window = validation(&entries, rule.window_days, from, day_ms, None);
    let (current, since) = state.policy();
    let Some(switch) = decide(&rule, &current, since, &window, day_ms) else {
        return Ok(None);
    };
    if !store
        .record_switch(switch.at, &switch.policy, &switch.reason)
        .await?
    {
        // Another replica decided this origin first: serve what it recorded.
        restore_policy(state).await?;
        return Ok(None);
    }
    state.set_policy(switch.status(), Some(switch.at));
    state
        .metrics()
        .policy_switches
        .get_or_create(&ReloadLabels {
            outcome: switch.policy.clone(),
        })
        .inc();
    tracing::warn!(policy = %switch.policy, at = %format_ms(day_ms), reason = %switch.reason, "gate switch");
    Ok(Some(switch))
}

/// What a recalibration pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Recalibrated {
    /// A new model was swapped in: its id.
    Swapped(String),
    /// Nothing to do: a fixed artifact, or corrections already measured at the day.
    NotNeeded,
    /// The day's last candles (23:00) are not all stored yet: no stored asset has its own, or
    /// one that traded the day before lacks it (the store filled late: an `ingest` run after
    /// midnight, file by file; a follower catching up, symbol by symbol). Not a failed try: the
    /// job tries again at its next pass, until [`CANDLES_DEADLINE_MS`] after midnight, instead
    /// of giving up for the day after [`RECALIBRATION_TRIES`] or measuring on half the panel.
    CandlesNotYet,
}

/// How long after midnight the recalibration waits for every asset that traded the day before
/// to have its 23:00 candle; after that it runs on what is stored (an asset delisted during the
/// day would otherwise hold it back all day).
pub const CANDLES_DEADLINE_MS: i64 = 6 * HOUR_MS;

/// Whether the day's last candles are still coming in (see [`Recalibrated::CandlesNotYet`]).
///
/// # Errors
/// The store's.
async fn candles_not_yet(state: &AppState, today: i64, now_ms: i64) -> Result<bool, ApiError> {
    if now_ms - today >= CANDLES_DEADLINE_MS {
        return Ok(false);
    }
    let lasts = state.store()?.last_open_times().await?;
    let none_there = !lasts.iter().any(|&(_, last)| last >= today - HOUR_MS);
    let behind = lasts.iter().any(|&(_, last)| lacks_last_hour(last, today));
    Ok(none_there || behind)
}

/// The recalibration at the daily origin `today` (see the module).
async fn recalibrate(
    state: &AppState,
    options: &DailyOptions,
    daily: &mut DailyState,
    today: i64,
    now_ms: i64,
) -> Result<Recalibrated, ApiError> {
    // No reload in between: the model re-measured is the one replaced.
    let _swap = state.model_swap().await;
    let serving = state.serving()?;
    let metadata = &serving.info.metadata;
    let Some(days) = metadata.recalibration.as_ref().and_then(|r| r.rolling_days) else {
        return Ok(Recalibrated::NotNeeded);
    };
    let until = metadata
        .recalibration
        .as_ref()
        .and_then(|r| parse_time(&r.until, Bound::Start).ok());
    if until.is_some_and(|u| u >= today) {
        return Ok(Recalibrated::NotNeeded);
    }
    let fit_end = fit_end_hour(metadata).map_err(|e| ApiError::Internal(e.to_string()))?;
    let today_hour = today / HOUR_MS;
    if today_hour < fit_end {
        return Ok(Recalibrated::NotNeeded);
    }
    let limit = options.store_deadline;
    if bounded(
        limit,
        "the day's last candles",
        candles_not_yet(state, today, now_ms),
    )
    .await?
    {
        return Ok(Recalibrated::CandlesNotYet);
    }
    // Every candle the offline job's replay reads: the daily origins from the fit end's window
    // (and the longest outcome before it) on, each with its history and HAR's 30 days.
    let span = 24 * (i64::try_from(days).unwrap_or(0) + 8)
        + i64::try_from(serving.info.history_hours()).unwrap_or(0)
        + 744;
    let from = (fit_end.min(today_hour) - span) * HOUR_MS;
    let candles = bounded(
        limit,
        "the recalibration's candles",
        refresh_candles(state, daily, from, today - HOUR_MS),
    )
    .await?;
    // The replay reads the candles from the fit end's window on; a store that starts later (a
    // follower's backfill alone) gives other adaptive states and weights than the replay's.
    if let Some(first) = candles
        .iter()
        .filter_map(|a| a.candles.first())
        .map(|c| c.open_time)
        .min()
        && first > from
    {
        tracing::warn!(
            needed_from = %format_ms(from),
            stored_from = %format_ms(first),
            "the store starts after the candles the daily recalibration reads (the fit end's window on): \
             its state is measured on what is stored, not as the replay measures it; ingest the \
             candles from before the fit end"
        );
    }
    let dir = serving.info.dir.clone();
    let out = options.artifacts_dir.clone();
    let saved = tokio::task::spawn_blocking(move || {
        let device = volcast_model::device::select(volcast_model::device::DeviceChoice::Cpu)
            .map_err(|e| e.to_string())?
            .device;
        // Measured on the forecasts as served: without the market factor (README, "As served:
        // without the market factor"), as `calibrate --until` and `evaluate --without-market`.
        let model = LoadedModel::load(&dir, &device)
            .map_err(|e| e.to_string())?
            .without_market();
        let panel = volcast_core::panel::to_panel(&candles);
        refresh_recalibration(&model, &panel, today_hour, &out).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::Internal)?;
    // The served artifact's detector goes with it, as `calibrate` carries it: a replay looks
    // for a decision's detector beside its artifact, and found none in a recalibrated one.
    let detector = serving.info.dir.join(crate::anomaly::FILE);
    if detector.is_file() && !saved.dir.join(crate::anomaly::FILE).exists() {
        let copied = std::fs::read(&detector).and_then(|bytes| {
            volcast_model::artifact::replace_durably(&saved.dir.join(crate::anomaly::FILE), &bytes)
        });
        if let Err(e) = copied {
            tracing::warn!(dir = %saved.dir.display(), "the served detector was not copied beside the recalibrated artifact: {e}");
        }
    }
    let new = load(&saved.dir, options.load, state.metrics())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = new.info.metadata.id.clone();
    tracing::info!(old = %metadata.id, new = %id, day = %format_ms(today), "daily recalibration swapped in");
    state.set_serving(new);
    Ok(Recalibrated::Swapped(id))
}

/// Every stored asset's candles with open time in `[from, to]`, from the job's copy brought up
/// to date: new candles appended, an asset read again whenever its stored count in the range
/// differs from the copy's.
async fn refresh_candles(
    state: &AppState,
    daily: &mut DailyState,
    from: i64,
    to: i64,
) -> Result<Arc<Vec<AssetCandles>>, ApiError> {
    let store = state.store()?;
    let counts: HashMap<String, i64> = store.counts(from, to).await?.into_iter().collect();
    daily.candles.retain(|asset, _| counts.contains_key(asset));
    for (asset, &n) in &counts {
        let kept = daily.candles.entry(asset.clone()).or_default();
        kept.retain(|c| (from..=to).contains(&c.open_time));
        let after = kept.last().map_or(from, |c| c.open_time + HOUR_MS);
        let limit = u32::try_from((to - after) / HOUR_MS + 1).unwrap_or(u32::MAX);
        if after <= to {
            kept.extend(store.candles(asset, after, to, limit).await?);
        }
        if i64::try_from(kept.len()).unwrap_or(i64::MAX) != n {
            let all = u32::try_from((to - from) / HOUR_MS + 1).unwrap_or(u32::MAX);
            *kept = store.candles(asset, from, to, all).await?;
        }
    }
    let mut out: Vec<AssetCandles> = daily
        .candles
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .map(|(asset, candles)| AssetCandles {
            asset: asset.clone(),
            candles: candles.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.asset.cmp(&b.asset));
    Ok(Arc::new(out))
}

/// The job: [`run_once`] every minute on the wall clock, for as long as the service runs.
pub async fn job(state: AppState, options: DailyOptions) {
    let passes = async {
        let mut daily = DailyState::default();
        let mut tick = tokio::time::interval(JOB_PERIOD);
        loop {
            tick.tick().await;
            let now = state.now_ms();
            match run_once(&state, &options, &mut daily, now).await {
                Ok(pass) if pass == Pass::default() => {}
                Err(ApiError::NotReady) => {}
                Ok(pass) => {
                    tracing::info!(recorded = pass.recorded, scored = pass.scored, "forecast ledger");
                    let figures = crate::ledger::windows(&state, now, None);
                    if let Err(e) = bounded(options.store_deadline, "the ledger's figures", figures).await {
                        tracing::warn!("forecast ledger figures: {e}");
                    }
                }
                Err(e) => tracing::warn!("daily job: {e}"),
            }
        }
    };
    tokio::join!(restore_at_start(&state), passes);
}

/// The gate's last switch, read as the job starts and, while the store does not answer, again
/// after 1, 2, then every 4 s (each read given up after [`RESTORE_READ_TIMEOUT`]), beside the
/// passes: a store that fails just after the service opened it would otherwise leave the model's
/// policy served, though the store says the gate fell back, until the first pass that reaches
/// the store (a minute later). Given up after [`RESTORE_GIVE_UP`], the passes adopting it then.
async fn restore_at_start(state: &AppState) {
    let started = std::time::Instant::now();
    let mut wait = RESTORE_FIRST_WAIT;
    loop {
        match crate::within(RESTORE_READ_TIMEOUT, restore_policy(state)).await {
            Ok(()) => return,
            Err(e) => tracing::warn!("cannot restore the gate's policy: {e}"),
        }
        if started.elapsed() >= RESTORE_GIVE_UP {
            tracing::warn!("giving up restoring the gate's policy at start; the daily passes adopt it");
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RESTORE_MAX_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_recalibration_is_tried_again_later_a_few_times_a_day() {
        let today = 1_704_067_200_000;
        let mut daily = DailyState::default();
        assert!(daily.may_recalibrate(today, today + 60_000));
        daily.failed = Some((today, 1, today + 60_000));
        assert!(!daily.may_recalibrate(today, today + 60_000 + RETRY_MS - 1));
        assert!(daily.may_recalibrate(today, today + 60_000 + RETRY_MS));
        daily.failed = Some((today, RECALIBRATION_TRIES, today + 60_000));
        assert!(!daily.may_recalibrate(today, today + DAY_MS - 1));
        // A new day starts afresh.
        assert!(daily.may_recalibrate(today + DAY_MS, today + DAY_MS + 60_000));
    }
}
