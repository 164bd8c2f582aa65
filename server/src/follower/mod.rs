//! The live market-data follower: keeps the store's hourly candles of the followed assets up to
//! date from Binance's public klines endpoint (`GET /api/v3/klines`), beside the request path.
//!
//! One task per symbol, under one supervisor: a slow or failing symbol delays nobody else. Each
//! task starts after the asset's last stored candle (or `backfill_hours` back for an asset the
//! store lacks), pages forward 1000 candles at a time until it has every closed hour, then asks
//! again shortly after each hour closes. Only closed candles are stored, each page in one
//! transaction, after the same checks as every other way candles enter (`validate_candles`,
//! SPEC's bad-input rules); a page's rows before a refused one are kept, the refused one is
//! logged and asked for again after a backoff. An hour the exchange has no candle for is simply
//! skipped: the next page starts after the last candle it returned.
//!
//! Because the position is the store itself, a restart (even after `kill -9`) resumes at the
//! last committed candle and backfills the downtime; inserts skip stored hours, so nothing is
//! stored twice. Rate limits (429, 418), server errors, timeouts and network failures back off
//! exponentially with jitter, honouring `Retry-After`; a request the exchange refuses (an unknown
//! symbol) is reported in [`SymbolStatus`] and retried only every `backoff_max`.
//!
//! Nothing here runs on the request path: the follower's work happens in its own tasks, it takes
//! one store connection at a time, and its status lock is never held across an await.
//!
//! Stopping ([`Follower::shutdown`]) is graceful: each task stops at its next request or wait,
//! never in the middle of storing a page, for up to the request timeout and 5 s; a task still
//! busy then (a store that hangs, a lock another writer holds) is aborted, its page committed
//! whole or not at all, and asked for again at the next start.

mod klines;
mod status;
mod timing;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use volcast_core::candles::Candle;
use volcast_core::time::{HOUR_MS, format_ms};
use volcast_store::{AssetRange, CandleStore, Store};

use klines::{RoundError, fetch, prepare};
pub use status::{Clock, FollowState, FollowStatus, SymbolStatus, wall_clock_ms};
use timing::{Backoff, backfill_start, closed_before, next_poll};

/// Binance's public REST API.
pub const DEFAULT_BINANCE_URL: &str = "https://api.binance.com";

/// Most candles Binance returns per klines request.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// What to follow and how often to ask.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// Binance symbols to follow, e.g. `BTCUSDT` (upper-cased; each is the asset id in the store).
    pub symbols: Vec<String>,
    /// Also follow every asset already in the store (`--follow-all`).
    pub all: bool,
    /// Base URL of the Binance REST API, without `/api/...`.
    pub base_url: String,
    /// Longest wait between two requests for a symbol that is caught up; it asks sooner when the
    /// next hour closes sooner.
    pub poll: Duration,
    /// Time after an hour closes before its candle counts as closed (the exchange's last
    /// trades reach the candle).
    pub settle: Duration,
    /// First delay after a failure; it doubles with each failure in a row.
    pub backoff_min: Duration,
    /// Longest delay after failures; also the delay after a refused request (unknown symbol).
    pub backoff_max: Duration,
    /// Hours back from now where an asset without stored candles starts (the model needs 889).
    pub backfill_hours: u32,
    /// Limit for one request, connecting and reading the body included.
    pub request_timeout: Duration,
    /// Candles per request, 1 to [`MAX_PAGE_LIMIT`].
    pub page_limit: u32,
    /// Limit for one page's write to the store, and for the read of the stored assets at start.
    /// A write whose connection's peer vanished without a reset (a failover) never returned, and
    /// with one page written at a time every symbol stopped with it until a restart. Given up,
    /// the page is fetched and written again after the usual back-off: the write is idempotent.
    pub store_timeout: Duration,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            symbols: Vec::new(),
            all: false,
            base_url: DEFAULT_BINANCE_URL.to_owned(),
            poll: Duration::from_secs(60),
            settle: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            backfill_hours: 1000,
            request_timeout: Duration::from_secs(30),
            page_limit: MAX_PAGE_LIMIT,
            store_timeout: Duration::from_secs(120),
        }
    }
}

/// Why a follower could not start.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// No symbol given and not following the stored assets.
    #[error("nothing to follow: name symbols or follow all stored assets")]
    NothingToFollow,
    /// A symbol Binance cannot have.
    #[error("`{0}` is not a Binance symbol (1 to 20 letters A-Z and digits)")]
    Symbol(String),
    /// A setting out of its range.
    #[error("invalid follower setting: {0}")]
    Setting(String),
    /// The HTTP client could not be built (TLS backend).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// Not called inside a tokio runtime.
    #[error("the follower needs a tokio runtime: {0}")]
    Runtime(#[from] tokio::runtime::TryCurrentError),
}

/// A running follower. Dropping it stops its tasks; [`Follower::shutdown`] also waits for them.
#[derive(Debug)]
pub struct Follower {
    status: FollowStatus,
    /// Set to true to stop the supervisor and, through it, every task.
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts following `config`'s symbols (and with `all`, the store's assets) into `store`,
    /// reading "now" from `clock`. Returns at once; the tasks run on the current tokio runtime.
    ///
    /// # Errors
    /// [`FollowError`] for an invalid setting or symbol, nothing to follow, no HTTP client, or no
    /// runtime.
    pub fn spawn(store: Store, config: FollowConfig, clock: Clock) -> Result<Self, FollowError> {
        let symbols = symbols(&config)?;
        let klines_url = check_settings(&config)?;
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .user_agent(concat!("volcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(FollowError::Client)?;
        let runtime = tokio::runtime::Handle::try_current()?;
        let status = FollowStatus::default();
        for symbol in &symbols {
            status.register(symbol);
        }
        let (stop, stop_requested) = watch::channel(false);
        let shared = Arc::new(Shared {
            stop_requested,
            store,
            client,
            klines_url,
            config,
            clock,
            writes: Semaphore::new(1),
            status: status.clone(),
        });
        let task = runtime.spawn(supervise(shared, symbols));
        Ok(Self {
            status,
            stop,
            task: Some(task),
        })
    }

    /// The followed symbols' status (a handle that stays valid after the follower stops).
    #[must_use]
    pub fn status(&self) -> FollowStatus {
        self.status.clone()
    }

    /// Stops every task and waits until they have stopped: a task stops at its next request or
    /// wait, and one storing a page finishes storing it first, so nothing is written after this
    /// returns. A task still busy `request_timeout` plus 5 s after the stop is aborted (a page
    /// it was storing is committed whole or not at all).
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
            && e.is_panic()
        {
            tracing::error!("market-data follower panicked: {e}");
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The config's symbols, upper-cased, checked and without repeats.
fn symbols(config: &FollowConfig) -> Result<Vec<String>, FollowError> {
    let mut out: Vec<String> = Vec::new();
    for raw in &config.symbols {
        let symbol = raw.trim().to_ascii_uppercase();
        if !is_symbol(&symbol) {
            return Err(FollowError::Symbol(raw.clone()));
        }
        if !out.contains(&symbol) {
            out.push(symbol);
        }
    }
    if out.is_empty() && !config.all {
        return Err(FollowError::NothingToFollow);
    }
    Ok(out)
}

fn is_symbol(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Checks the timing settings and returns the klines URL.
fn check_settings(config: &FollowConfig) -> Result<Url, FollowError> {
    let bad = |what: &str| Err(FollowError::Setting(what.to_owned()));
    if !(1..=MAX_PAGE_LIMIT).contains(&config.page_limit) {
        return bad("the page limit must be 1 to 1000 candles");
    }
    if config.poll.is_zero() || config.backoff_min.is_zero() || config.request_timeout.is_zero() {
        return bad("poll, backoff and request timeout must be longer than zero");
    }
    if config.backoff_max < config.backoff_min {
        return bad("the longest backoff is shorter than the first");
    }
    let url = format!("{}/api/v3/klines", config.base_url.trim_end_matches('/'));
    match Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
        Ok(_) => bad(&format!("{}: not an http(s) URL", config.base_url)),
        Err(e) => bad(&format!("{}: {e}", config.base_url)),
    }
}

/// What every task of a follower shares.
struct Shared {
    /// Becomes true when the follower is to stop: the supervisor, and each task at its next
    /// request or wait.
    stop_requested: watch::Receiver<bool>,
    store: Store,
    client: reqwest::Client,
    klines_url: Url,
    config: FollowConfig,
    clock: Clock,
    /// One page stored at a time: the follower never takes more than one of the store's
    /// connections from the request path.
    writes: Semaphore,
    status: FollowStatus,
}

/// Lists the store's assets, starts one task per symbol, and once the follower is told to stop
/// (the tasks see the same signal) waits for them (aborted when the [`Follower`] is dropped).
async fn supervise(shared: Arc<Shared>, symbols: Vec<String>) {
    let mut tasks = JoinSet::new();
    let stopped_while_starting = tokio::select! {
        () = stop_requested(&shared) => true,
        () = start_tasks(&shared, symbols, &mut tasks) => false,
    };
    if !stopped_while_starting {
        loop {
            tokio::select! {
                () = stop_requested(&shared) => break,
                joined = tasks.join_next() => match joined {
                    None => {
                        stop_requested(&shared).await;
                        break;
                    }
                    Some(Err(e)) if e.is_panic() => tracing::error!("a follower task panicked: {e}"),
                    Some(_) => {}
                },
            }
        }
    }
    // Each task stops at its next request or wait; one storing a page finishes it first.
    let grace = shared.config.request_timeout + Duration::from_secs(5);
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            ?grace,
            "market-data follower tasks still busy after the stop: aborted"
        );
        tasks.shutdown().await;
    }
}

/// Resolves once the follower is told to stop.
async fn stop_requested(shared: &Shared) {
    let mut requested = shared.stop_requested.clone();
    // An error means the follower is gone: stop too.
    let _ = requested.wait_for(|&stop| stop).await;
}

async fn start_tasks(shared: &Arc<Shared>, mut symbols: Vec<String>, tasks: &mut JoinSet<()>) {
    let stored = stored_assets(shared).await;
    if shared.config.all {
        for range in &stored {
            if !is_symbol(&range.asset) {
                tracing::warn!(asset = %range.asset, "not following a stored asset that is no Binance symbol");
            } else if !symbols.contains(&range.asset) {
                symbols.push(range.asset.clone());
            }
        }
    }
    if symbols.is_empty() {
        tracing::warn!("market-data follower: the store has no assets to follow");
    }
    for symbol in symbols {
        let last = stored
            .iter()
            .find(|r| r.asset == symbol)
            .map(|r| r.last_open_time);
        shared.status.register(&symbol);
        shared.status.update(&symbol, |s| s.last_open_time = last);
        tasks.spawn(follow(Arc::clone(shared), symbol, last));
    }
}

/// The store's assets, retried with backoff until the store answers.
async fn stored_assets(shared: &Shared) -> Vec<AssetRange> {
    let mut backoff = Backoff::new(&shared.config);
    loop {
        match crate::within(shared.config.store_timeout, shared.store.assets()).await {
            Ok(assets) => return assets,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(retry_in = ?delay, "market-data follower cannot list the stored assets: {e}");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One symbol's loop: pages until caught up, then waits for the next hour; backs off on failure.
async fn follow(shared: Arc<Shared>, symbol: String, last_stored: Option<i64>) {
    let config = &shared.config;
    let mut cursor = last_stored.map_or_else(
        || backfill_start(shared.clock.now_ms(), config.backfill_hours),
        |t| t.saturating_add(HOUR_MS),
    );
    tracing::info!(symbol = %symbol, from = %format_ms(cursor), "following");
    let mut backoff = Backoff::new(config);
    let mut catching_up = 0_u64;
    // The hour the exchange's candle was last refused at, and when it was first refused.
    let mut refused: Option<(i64, i64)> = None;
    loop {
        if *shared.stop_requested.borrow() {
            return;
        }
        let delay = match round(&shared, &symbol, &mut cursor).await {
            Ok(Round { stored, more }) => {
                backoff.reset();
                catching_up += stored;
                if more {
                    continue;
                }
                caught_up(&shared, &symbol, catching_up, cursor);
                catching_up = 0;
                next_poll(shared.clock.now_ms(), config)
            }
            Err(RoundError::Stopped) => return,
            Err(e) => {
                // The refused hour may lie past the cursor: hours missing before it, or an
                // open time off the hour. Either way nothing before it is left to store.
                if let RoundError::Invalid(message, Some(at)) = &e
                    && *at >= cursor
                {
                    let now = shared.clock.now_ms();
                    let since = refused.filter(|r| r.0 == *at).map_or(now, |r| r.1);
                    refused = Some((*at, since));
                    if now - since >= SKIP_REFUSED_AFTER_MS {
                        skip_refused(&shared, &symbol, *at, message);
                        cursor = at.div_euclid(HOUR_MS).saturating_add(1).saturating_mul(HOUR_MS);
                        refused = None;
                        continue;
                    }
                }
                failed(&shared, &symbol, &e, &mut backoff)
            }
        };
        tokio::select! {
            () = stop_requested(&shared) => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// How long the exchange's candle of one hour may be refused before the follower goes on past
/// it, the hour then missing as SPEC treats a missing hour: a row the exchange never corrects
/// would otherwise hold back every later hour of the asset for good.
pub const SKIP_REFUSED_AFTER_MS: i64 = HOUR_MS;

/// Goes on past the hour `at` whose candle the exchange keeps sending refused: logged as an
/// error, and named in the symbol's `last_error`.
fn skip_refused(shared: &Shared, symbol: &str, at: i64, message: &str) {
    let note = format!(
        "the candle at {} was refused for {} min ({message}); skipped, the hour is missing",
        format_ms(at),
        SKIP_REFUSED_AFTER_MS / 60_000
    );
    tracing::error!(symbol = %symbol, "market data: {note}");
    shared
        .status
        .update(symbol, |s| s.last_error = Some(note.clone()));
}

fn caught_up(shared: &Shared, symbol: &str, stored: u64, cursor: i64) {
    let mut first = false;
    shared.status.update(symbol, |s| {
        first = s.state != FollowState::CaughtUp;
        s.state = FollowState::CaughtUp;
    });
    let through = format_ms(cursor.saturating_sub(HOUR_MS));
    if first || stored > 1 {
        tracing::info!(symbol = %symbol, stored, through = %through, "caught up");
    } else {
        tracing::debug!(symbol = %symbol, stored, through = %through, "caught up");
    }
}

/// Records a failed attempt, logs it, and says how long to wait.
fn failed(shared: &Shared, symbol: &str, error: &RoundError, backoff: &mut Backoff) -> Duration {
    let delay = match error {
        RoundError::Refused { .. } => shared.config.backoff_max,
        RoundError::RateLimited { retry_after, .. } => {
            backoff.next_delay().max(retry_after.unwrap_or_default())
        }
        _ => backoff.next_delay(),
    };
    let message = error.to_string();
    let refused = matches!(error, RoundError::Refused { .. });
    shared.status.update(symbol, |s| {
        s.state = if refused {
            FollowState::Refused
        } else {
            FollowState::Retrying
        };
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.retries += 1;
        if matches!(error, RoundError::RateLimited { .. }) {
            s.rate_limited += 1;
        }
        s.last_error = Some(message.clone());
    });
    if error.is_refused_data() {
        tracing::error!(symbol = %symbol, retry_in = ?delay, "market data refused: {message}");
    } else {
        tracing::warn!(symbol = %symbol, retry_in = ?delay, "market data request failed: {message}");
    }
    delay
}

/// What a successful attempt did.
struct Round {
    /// Candles new to the store.
    stored: u64,
    /// The page was full and moved the cursor: ask again at once.
    more: bool,
}

/// Asks for one page from `cursor`, stores its closed candles and moves `cursor` past them.
async fn round(shared: &Shared, symbol: &str, cursor: &mut i64) -> Result<Round, RoundError> {
    // Closed as of when the request leaves: the answer may be written before a slow response
    // arrives, and a candle that closed in between would be stored with its values so far.
    let asked = shared.clock.now_ms();
    shared.status.update(symbol, |s| s.requests += 1);
    let config = &shared.config;
    // The request, not the write after it, is given up when the follower stops.
    let (rows, exchange_now) = tokio::select! {
        rows = fetch(&shared.client, &shared.klines_url, config.page_limit, symbol, *cursor) => rows?,
        () = stop_requested(shared) => return Err(RoundError::Stopped),
    };
    let now = shared.clock.now_ms();
    // Closed by this host's clock and by the exchange's (its `Date`), whichever is behind: a
    // host clock ahead of the exchange's would take the open candle, whose values then stay.
    let closed = exchange_now.map_or(asked, |e| e.min(asked));
    let page = prepare(
        symbol,
        &rows,
        *cursor,
        closed_before(closed, shared.config.settle),
    );
    let stored = store_page(shared, symbol, &page.candles).await?;
    let start = *cursor;
    if let Some(last) = page.candles.last() {
        *cursor = last.open_time.saturating_add(HOUR_MS);
    }
    shared.status.update(symbol, |s| {
        // A page cut short by a refused row is no success, though its rows before are stored.
        if page.problem.is_none() {
            s.last_success_ms = Some(now);
            s.consecutive_failures = 0;
        }
        s.stored += stored;
        if let Some(last) = page.candles.last() {
            s.last_open_time = Some(s.last_open_time.map_or(last.open_time, |t| t.max(last.open_time)));
        }
    });
    if let Some(problem) = page.problem {
        return Err(RoundError::Invalid(problem, page.refused_at));
    }
    let more = rows.len() >= shared.config.page_limit as usize && *cursor > start;
    if more {
        shared
            .status
            .update(symbol, |s| s.state = FollowState::Backfilling);
        tracing::info!(symbol = %symbol, stored, through = %format_ms(cursor.saturating_sub(HOUR_MS)), "backfilling");
    }
    Ok(Round { stored, more })
}

async fn store_page(shared: &Shared, symbol: &str, candles: &[Candle]) -> Result<u64, RoundError> {
    if candles.is_empty() {
        return Ok(0);
    }
    // The semaphore is never closed; without a permit the write would still be correct.
    let _permit = shared.writes.acquire().await.ok();
    let limit = shared.config.store_timeout;
    match tokio::time::timeout(limit, shared.store.insert_candles(symbol, candles)).await {
        Ok(stored) => Ok(stored?),
        Err(_) => Err(RoundError::StoreTimeout(limit)),
    }
}
