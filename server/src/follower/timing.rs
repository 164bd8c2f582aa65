//! When the follower asks: where a backfill starts, how long a caught-up symbol waits, which
//! candles count as closed, and the backoff after a failure.

use std::time::Duration;

use volcast_core::time::HOUR_MS;

use super::FollowConfig;

/// Open time of the first candle for an asset the store lacks.
pub(super) fn backfill_start(now_ms: i64, hours: u32) -> i64 {
    now_ms
        .div_euclid(HOUR_MS)
        .saturating_sub(i64::from(hours))
        .saturating_mul(HOUR_MS)
}

/// How long a caught-up symbol waits: until the next candle has closed and settled, at most
/// `poll`.
pub(super) fn next_poll(now_ms: i64, config: &FollowConfig) -> Duration {
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

/// Latest open time of a closed, settled candle at `now_ms`, plus one.
pub(super) fn closed_before(now_ms: i64, settle: Duration) -> i64 {
    let settle = i64::try_from(settle.as_millis()).unwrap_or(i64::MAX);
    now_ms
        .saturating_sub(HOUR_MS)
        .saturating_sub(settle)
        .saturating_add(1)
}

/// Exponential backoff with jitter: the n-th failure in a row waits a random time between
/// `backoff_min` and `backoff_min * 2^(n-1)`, capped at `backoff_max`.
#[derive(Debug)]
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(super) fn new(config: &FollowConfig) -> Self {
        Self {
            min: config.backoff_min,
            max: config.backoff_max,
            failures: 0,
        }
    }

    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }

    pub(super) fn next_delay(&mut self) -> Duration {
        let ceiling = self.min.saturating_mul(1 << self.failures.min(30)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        self.min + ceiling.saturating_sub(self.min).mul_f64(fastrand::f64())
    }
}
