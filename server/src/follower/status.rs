//! What the follower reports: each symbol's state and counters, shared with its tasks, and the
//! clock it reads "now" from (the wall clock, or a test's).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

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

    pub(super) fn register(&self, symbol: &str) {
        self.lock()
            .entry(symbol.to_owned())
            .or_insert_with(|| SymbolStatus::new(symbol));
    }

    pub(super) fn update(&self, symbol: &str, change: impl FnOnce(&mut SymbolStatus)) {
        if let Some(status) = self.lock().get_mut(symbol) {
            change(status);
        }
    }
}
