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

use std::collections::{BTreeMap, HashSet};
use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use volcast_core::candles::{Candle, CandleError, validate_candles};
use volcast_core::time::{HOUR_MS, format_ms};
use volcast_store::{AssetRange, CandleStore, Store, StoreError};

/// Binance's public REST API.
pub const DEFAULT_BINANCE_URL: &str = "https://api.binance.com";

/// Most candles Binance returns per klines request.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Longest `Retry-After` honoured (a 418 ban can ask for days; we ask again after a day).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Characters of an error body kept in a message.
const MAX_BODY_CHARS: usize = 200;

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

/// The wall clock, Unix ms.
#[must_use]
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where "now" comes from: the wall clock, or a test's.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    #[must_use]
    pub fn system() -> Self {
        Self(Arc::new(wall_clock_ms))
    }

    /// A clock reading `now_ms` (Unix milliseconds).
    pub fn from_fn(now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now_ms))
    }

    /// Now, Unix milliseconds.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now_ms()).finish()
    }
}

/// What a symbol's task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowState {
    /// Not asked yet (the store is being read).
    Starting,
    /// Storing full pages: more closed candles are waiting.
    Backfilling,
    /// Every closed candle the exchange has is stored.
    CaughtUp,
    /// The last attempt failed (rate limit, server or network error, refused data); retrying
    /// with backoff.
    Retrying,
    /// The exchange refuses the request (e.g. an unknown symbol); asked again every
    /// `backoff_max`.
    Refused,
}

/// One followed symbol, as the status endpoints and metrics show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymbolStatus {
    /// The symbol, also the asset id in the store.
    pub symbol: String,
    /// What its task is doing.
    pub state: FollowState,
    /// Open time (Unix ms) of the newest candle stored, by this follower or before it started.
    pub last_open_time: Option<i64>,
    /// When (Unix ms) the last successful request finished.
    pub last_success_ms: Option<i64>,
    /// The most recent failure, kept after recovery (`consecutive_failures` says if it is current).
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Candles this follower stored (new rows).
    pub stored: u64,
    /// Requests sent to the exchange.
    pub requests: u64,
    /// Failed attempts, each followed by a retry.
    pub retries: u64,
    /// Answers 429 or 418 (rate limited).
    pub rate_limited: u64,
}

impl SymbolStatus {
    fn new(symbol: &str) -> Self {
        Self {
            symbol: symbol.to_owned(),
            state: FollowState::Starting,
            last_open_time: None,
            last_success_ms: None,
            last_error: None,
            consecutive_failures: 0,
            stored: 0,
            requests: 0,
            retries: 0,
            rate_limited: 0,
        }
    }
}

/// The followed symbols' status, shared with the follower's tasks; cheap to clone, and reading it
/// never waits on the network or the store.
#[derive(Debug, Clone, Default)]
pub struct FollowStatus(Arc<Mutex<BTreeMap<String, SymbolStatus>>>);

impl FollowStatus {
    /// Every followed symbol, by name.
    #[must_use]
    pub fn snapshot(&self) -> Vec<SymbolStatus> {
        self.lock().values().cloned().collect()
    }

    /// One symbol's status, if it is followed.
    #[must_use]
    pub fn get(&self, symbol: &str) -> Option<SymbolStatus> {
        self.lock().get(symbol).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SymbolStatus>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, symbol: &str) {
        self.lock()
            .entry(symbol.to_owned())
            .or_insert_with(|| SymbolStatus::new(symbol));
    }

    fn update(&self, symbol: &str, change: impl FnOnce(&mut SymbolStatus)) {
        if let Some(status) = self.lock().get_mut(symbol) {
            change(status);
        }
    }
}

/// A running follower. Dropping it stops its tasks; [`Follower::shutdown`] also waits for them.
#[derive(Debug)]
pub struct Follower {
    status: FollowStatus,
    stop: Option<oneshot::Sender<()>>,
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
        let shared = Arc::new(Shared {
            store,
            client,
            klines_url,
            config,
            clock,
            writes: Semaphore::new(1),
            status: status.clone(),
        });
        let (stop, stopped) = oneshot::channel();
        let task = runtime.spawn(supervise(shared, symbols, stopped));
        Ok(Self {
            status,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The followed symbols' status (a handle that stays valid after the follower stops).
    #[must_use]
    pub fn status(&self) -> FollowStatus {
        self.status.clone()
    }

    /// Stops every task and waits until they have stopped. A page being stored when its task
    /// stops is committed whole or not at all, possibly just after this returns (the database
    /// finishes what it was sent): close the store to wait for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
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

/// Lists the store's assets, starts one task per symbol, and stops them all on `stop` (or when
/// the [`Follower`] is dropped).
async fn supervise(shared: Arc<Shared>, symbols: Vec<String>, mut stop: oneshot::Receiver<()>) {
    let mut tasks = JoinSet::new();
    tokio::select! {
        _ = &mut stop => return,
        () = start_tasks(&shared, symbols, &mut tasks) => {}
    }
    loop {
        tokio::select! {
            _ = &mut stop => break,
            joined = tasks.join_next() => match joined {
                None => {
                    let _ = (&mut stop).await;
                    break;
                }
                Some(Err(e)) if e.is_panic() => tracing::error!("a follower task panicked: {e}"),
                Some(_) => {}
            },
        }
    }
    tasks.shutdown().await;
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
        match shared.store.assets().await {
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
    loop {
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
            Err(e) => failed(&shared, &symbol, &e, &mut backoff),
        };
        tokio::time::sleep(delay).await;
    }
}

/// Open time of the first candle for an asset the store lacks.
fn backfill_start(now_ms: i64, hours: u32) -> i64 {
    now_ms
        .div_euclid(HOUR_MS)
        .saturating_sub(i64::from(hours))
        .saturating_mul(HOUR_MS)
}

/// How long a caught-up symbol waits: until the next candle has closed and settled, at most
/// `poll`.
fn next_poll(now_ms: i64, config: &FollowConfig) -> Duration {
    let settle = i64::try_from(config.settle.as_millis()).unwrap_or(HOUR_MS);
    let next = now_ms
        .saturating_sub(settle)
        .div_euclid(HOUR_MS)
        .saturating_add(1)
        .saturating_mul(HOUR_MS)
        .saturating_add(settle);
    let wait = Duration::from_millis(u64::try_from(next.saturating_sub(now_ms)).unwrap_or(0));
    wait.min(config.poll)
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

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("rate limited (HTTP {status})")]
    RateLimited {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    #[error("exchange unavailable (HTTP {status}): {message}")]
    Unavailable { status: StatusCode, message: String },
    #[error("exchange refused the request (HTTP {status}): {message}")]
    Refused { status: StatusCode, message: String },
    #[error("request failed: {0}")]
    Network(String),
    #[error("unreadable klines: {0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl RoundError {
    /// The exchange's answer, not the way to it, is at fault.
    fn is_refused_data(&self) -> bool {
        matches!(self, Self::Refused { .. } | Self::Malformed(_) | Self::Invalid(_))
    }
}

/// Asks for one page from `cursor`, stores its closed candles and moves `cursor` past them.
async fn round(shared: &Shared, symbol: &str, cursor: &mut i64) -> Result<Round, RoundError> {
    // Closed as of when the request leaves: the answer may be written before a slow response
    // arrives, and a candle that closed in between would be stored with its values so far.
    let asked = shared.clock.now_ms();
    let rows = fetch(shared, symbol, *cursor).await?;
    let now = shared.clock.now_ms();
    let page = prepare(symbol, &rows, *cursor, closed_before(asked, shared.config.settle));
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
        return Err(RoundError::Invalid(problem));
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

/// Latest open time of a closed, settled candle at `now_ms`, plus one.
fn closed_before(now_ms: i64, settle: Duration) -> i64 {
    let settle = i64::try_from(settle.as_millis()).unwrap_or(i64::MAX);
    now_ms
        .saturating_sub(HOUR_MS)
        .saturating_sub(settle)
        .saturating_add(1)
}

async fn store_page(shared: &Shared, symbol: &str, candles: &[Candle]) -> Result<u64, RoundError> {
    if candles.is_empty() {
        return Ok(0);
    }
    // The semaphore is never closed; without a permit the write would still be correct.
    let _permit = shared.writes.acquire().await.ok();
    Ok(shared.store.insert_candles(symbol, candles).await?)
}

/// One klines request: the rows of a 200 answer, or why there are none.
async fn fetch(shared: &Shared, symbol: &str, start: i64) -> Result<Vec<Value>, RoundError> {
    shared.status.update(symbol, |s| s.requests += 1);
    let response = shared
        .client
        .get(shared.klines_url.clone())
        .query(&[
            ("symbol", symbol),
            ("interval", "1h"),
            ("startTime", &start.to_string()),
            ("limit", &shared.config.page_limit.to_string()),
        ])
        .send()
        .await
        .map_err(|e| network(&e))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.map_err(|e| network(&e))?;
    if !status.is_success() {
        return Err(http_error(status, retry_after, &body));
    }
    serde_json::from_slice::<Vec<Value>>(&body).map_err(|e| RoundError::Malformed(e.to_string()))
}

fn network(e: &reqwest::Error) -> RoundError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    RoundError::Network(message)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// Classifies a non-2xx answer: rate limits and server errors are retried with backoff, other
/// refusals (unknown symbol, bad parameter) are the request's fault.
fn http_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> RoundError {
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::IM_A_TEAPOT {
        return RoundError::RateLimited { status, retry_after };
    }
    let message = error_message(body);
    if status.is_client_error() {
        RoundError::Refused { status, message }
    } else {
        RoundError::Unavailable { status, message }
    }
}

/// Binance's `{"code":-1121,"msg":"Invalid symbol."}`, or the start of another body.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct BinanceError {
        code: i64,
        msg: String,
    }
    match serde_json::from_slice::<BinanceError>(body) {
        Ok(e) => format!("{} (code {})", e.msg, e.code),
        Err(_) => String::from_utf8_lossy(body)
            .chars()
            .take(MAX_BODY_CHARS)
            .collect(),
    }
}

/// A page's candles to store, and what stopped it early.
#[derive(Debug)]
struct Page {
    /// Closed candles from the cursor on, once each, checked, oldest first.
    candles: Vec<Candle>,
    /// The unreadable or refused row that ended the page, if one did.
    problem: Option<String>,
}

/// Turns a page of klines into the candles to store: rows before `start` and candles not closed
/// before `closed_before` are left out, a repeated open time keeps its first row, and the page
/// ends before the first row that cannot be read or that [`validate_candles`] refuses.
fn prepare(symbol: &str, rows: &[Value], start: i64, closed_before: i64) -> Page {
    let mut candles = Vec::with_capacity(rows.len());
    let mut page_rows = Vec::with_capacity(rows.len());
    let mut seen = HashSet::new();
    let mut problem = None;
    for (row, raw) in rows.iter().enumerate() {
        let candle = match parse_kline(raw) {
            Ok(c) => c,
            Err(e) => {
                problem = Some(format!("row {row} of the page: {e}"));
                break;
            }
        };
        if candle.open_time < start || candle.open_time >= closed_before {
            continue;
        }
        if !seen.insert(candle.open_time) {
            tracing::warn!(symbol = %symbol, open_time = %format_ms(candle.open_time), "the exchange repeated a candle; keeping the first");
            continue;
        }
        candles.push(candle);
        page_rows.push(row);
    }
    if let Err(e) = validate_candles(&candles) {
        candles.truncate(e.row);
        let row = page_rows.get(e.row).copied().unwrap_or(e.row);
        problem = Some(format!("refused candle: {}", CandleError { row, ..e }));
    }
    Page { candles, problem }
}

/// One kline row: `[openTime, "open", "high", "low", "close", "volume", closeTime,
/// "quoteAssetVolume", ...]`.
fn parse_kline(raw: &Value) -> Result<Candle, String> {
    let fields = raw.as_array().ok_or("not an array")?;
    if fields.len() < 8 {
        return Err(format!("{} fields, expected at least 8", fields.len()));
    }
    let number = |i: usize, name: &str| -> Result<f64, String> {
        let value = match &fields[i] {
            Value::String(s) => s.trim().parse().ok(),
            Value::Number(n) => n.as_f64(),
            _ => None,
        };
        value.ok_or_else(|| format!("{name} = {} is not a number", fields[i]))
    };
    Ok(Candle {
        open_time: fields[0]
            .as_i64()
            .ok_or_else(|| format!("open time {} is not an integer", fields[0]))?,
        open: number(1, "open")?,
        high: number(2, "high")?,
        low: number(3, "low")?,
        close: number(4, "close")?,
        volume: number(5, "volume")?,
        quote_volume: number(7, "quote_volume")?,
    })
}

/// Exponential backoff with jitter: the n-th failure in a row waits a random time between
/// `backoff_min` and `backoff_min * 2^(n-1)`, capped at `backoff_max`.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    fn new(config: &FollowConfig) -> Self {
        Self {
            min: config.backoff_min,
            max: config.backoff_max,
            failures: 0,
        }
    }

    fn reset(&mut self) {
        self.failures = 0;
    }

    fn next_delay(&mut self) -> Duration {
        let ceiling = self.min.saturating_mul(1 << self.failures.min(30)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        self.min + ceiling.saturating_sub(self.min).mul_f64(fastrand::f64())
    }
}
