//! The market-data follower against a stub of Binance's klines endpoint (arrays of strings, as the
//! real one, on generated candles) and a real SQLite store: backfill across pages, the open candle
//! left out, a gap at the source, a repeated row, rate limits and server errors, a refused row,
//! an unknown symbol, restarts (also in the middle of a backfill) and following the stored
//! assets. Stored candles are compared with the generated ones field by field.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tempfile::TempDir;
use volcast_core::candles::Candle;
use volcast_server::follower::{
    Clock, FollowConfig, FollowError, FollowState, FollowStatus, Follower, SymbolStatus,
};
use volcast_store::{CandleStore, Store};

/// 2024-01-01T00:00:00Z.
const BASE: i64 = 1_704_067_200_000;
const H: i64 = 3_600_000;
/// Hours of candles the stub has per symbol.
const HOURS: i64 = 5000;

/// Open time of hour `h` after [`BASE`].
fn hour(h: i64) -> i64 {
    BASE + h * H
}

/// Half past hour `h`: the candle of hour `h` is open, every earlier one closed.
fn half_past(h: i64) -> i64 {
    hour(h) + H / 2
}

fn round8(x: f64) -> f64 {
    (x * 1e8).round() / 1e8
}

/// A deterministic random walk per symbol, every value with 8 decimals as Binance gives them.
fn generate(symbol: &str) -> Vec<Candle> {
    let mut state = symbol.bytes().fold(0x9E37_79B9_7F4A_7C15_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    }) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1_u64 << 53) as f64
    };
    let mut price = 100.0;
    (0..HOURS)
        .map(|h| {
            let open = round8(price);
            let close = round8(open * (1.0 + (uniform() - 0.5) * 0.02));
            let high = round8(open.max(close) * (1.0 + uniform() * 0.005));
            let low = round8(open.min(close) * (1.0 - uniform() * 0.005));
            let volume = round8(1000.0 * uniform());
            price = close;
            Candle {
                open_time: hour(h),
                open,
                high,
                low,
                close,
                volume,
                quote_volume: round8(volume * close),
            }
        })
        .collect()
}

/// What the stub does besides answering.
#[derive(Debug, Default)]
struct Knobs {
    /// Hours the exchange has no candle for.
    gaps: HashSet<i64>,
    /// An hour whose row is sent twice.
    duplicate: Option<i64>,
    /// An hour whose row has `high` below `low`.
    bad: Option<i64>,
    /// An hour whose row cannot be read (its quote volume `null`).
    unreadable: Option<i64>,
    /// An hour whose row's open time cannot be read (`null`), nor then the row.
    timeless: Option<i64>,
    /// An hour whose row's open time is written as a string.
    quoted_time: Option<i64>,
    /// Spaces after the page's JSON, bytes (an answer too large to be a klines page).
    padding: usize,
    /// Spaces after an error answer's JSON, bytes (a proxy's large error page).
    error_padding: usize,
    /// An hour whose row is sent after the next hour's (the page out of order).
    swap: Option<i64>,
    /// How far the exchange's clock is behind the host's, ms: its open candle and its `Date`
    /// header go by its own clock.
    lag: Option<i64>,
    /// The next answers: status and `Retry-After` seconds.
    failures: VecDeque<(u16, u64)>,
    /// Move the clock this far once the next answer is written (a slow network).
    advance_after: Option<i64>,
}

/// A request the stub received.
#[derive(Debug, Clone)]
struct Seen {
    symbol: String,
    start: i64,
    limit: Option<u32>,
    at: Instant,
}

#[derive(Debug)]
struct Stub {
    now: Arc<AtomicI64>,
    data: BTreeMap<String, Vec<Candle>>,
    knobs: Mutex<Knobs>,
    seen: Mutex<Vec<Seen>>,
}

impl Stub {
    fn set_now(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
    }

    fn knobs(&self) -> std::sync::MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap()
    }

    /// Start times of the requests for `symbol`, in order.
    fn starts(&self, symbol: &str) -> Vec<i64> {
        self.seen_for(symbol).iter().map(|s| s.start).collect()
    }

    fn seen_for(&self, symbol: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.symbol == symbol).cloned().collect()
    }

    /// The generated candles of `symbol` with open time in `[from, to]` that the exchange has.
    fn expected(&self, symbol: &str, from: i64, to: i64) -> Vec<Candle> {
        let gaps = self.knobs().gaps.clone();
        self.data[symbol]
            .iter()
            .filter(|c| (from..=to).contains(&c.open_time) && !gaps.contains(&c.open_time))
            .copied()
            .collect()
    }
}

#[derive(Debug, Deserialize)]
struct Params {
    symbol: String,
    interval: String,
    #[serde(rename = "startTime")]
    start_time: i64,
    limit: Option<u32>,
}

fn decimal(x: f64) -> String {
    format!("{x:.8}")
}

/// A kline row as Binance writes it.
fn kline(c: &Candle) -> Value {
    json!([
        c.open_time,
        decimal(c.open),
        decimal(c.high),
        decimal(c.low),
        decimal(c.close),
        decimal(c.volume),
        c.open_time + H - 1,
        decimal(c.quote_volume),
        1234,
        decimal(c.volume / 2.0),
        decimal(c.quote_volume / 2.0),
        "0"
    ])
}

/// The open candle as the exchange shows it mid-hour: its trades so far.
fn partial(c: &Candle) -> Candle {
    Candle {
        high: c.open,
        low: c.open,
        close: c.open,
        volume: c.volume / 2.0,
        quote_volume: c.quote_volume / 2.0,
        ..*c
    }
}

fn binance_error(status: StatusCode, code: i64, msg: &str) -> Response {
    (status, Json(json!({ "code": code, "msg": msg }))).into_response()
}

async fn klines(State(stub): State<Arc<Stub>>, Query(p): Query<Params>) -> Response {
    stub.seen.lock().unwrap().push(Seen {
        symbol: p.symbol.clone(),
        start: p.start_time,
        limit: p.limit,
        at: Instant::now(),
    });
    let mut knobs = stub.knobs();
    if let Some((status, retry_after)) = knobs.failures.pop_front() {
        let status = StatusCode::from_u16(status).unwrap();
        let mut body = json!({ "code": -1003, "msg": "Too much request weight used." }).to_string();
        body.push_str(&" ".repeat(knobs.error_padding));
        let headers = [
            (header::RETRY_AFTER, retry_after.to_string()),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ];
        return (status, headers, body).into_response();
    }
    let Some(candles) = stub.data.get(&p.symbol) else {
        return binance_error(StatusCode::BAD_REQUEST, -1121, "Invalid symbol.");
    };
    if p.interval != "1h" {
        return binance_error(StatusCode::BAD_REQUEST, -1120, "Invalid interval.");
    }
    let now = stub.now.load(Ordering::SeqCst) - knobs.lag.unwrap_or(0);
    let limit = p.limit.unwrap_or(500).min(1000) as usize;
    let mut rows = Vec::new();
    let exists = |c: &&Candle| c.open_time >= p.start_time && c.open_time <= now;
    for c in candles.iter().filter(exists) {
        if knobs.gaps.contains(&c.open_time) {
            continue;
        }
        let shown = if c.open_time + H > now { partial(c) } else { *c };
        let mut row = kline(&shown);
        if knobs.bad == Some(c.open_time) {
            row[2] = json!(decimal(c.low / 2.0));
        }
        if knobs.unreadable == Some(c.open_time) {
            row[7] = Value::Null;
        }
        if knobs.timeless == Some(c.open_time) {
            row[0] = Value::Null;
        }
        if knobs.quoted_time == Some(c.open_time) {
            row[0] = json!(c.open_time.to_string());
        }
        if knobs.duplicate == Some(c.open_time) {
            rows.push(row.clone());
        }
        rows.push(row);
    }
    if let Some(t) = knobs.swap {
        let at = |t: i64| rows.iter().position(|r| r[0] == json!(t));
        if let (Some(i), Some(j)) = (at(t), at(t + H)) {
            rows.swap(i, j);
        }
    }
    rows.truncate(limit);
    if let Some(ms) = knobs.advance_after.take() {
        stub.now.fetch_add(ms, Ordering::SeqCst);
    }
    if knobs.lag.is_some() {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap());
        return ([(header::DATE, httpdate::fmt_http_date(at))], Json(rows)).into_response();
    }
    if knobs.padding > 0 {
        let mut body = serde_json::to_string(&rows).unwrap();
        body.push_str(&" ".repeat(knobs.padding));
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    Json(rows).into_response()
}

/// The stub on `127.0.0.1:0` and a store file in a temporary directory.
struct Harness {
    stub: Arc<Stub>,
    base_url: String,
    db_url: String,
    _dir: TempDir,
}

async fn harness(symbols: &[&str], now: i64) -> Harness {
    let stub = Arc::new(Stub {
        now: Arc::new(AtomicI64::new(now)),
        data: symbols.iter().map(|s| ((*s).to_owned(), generate(s))).collect(),
        knobs: Mutex::default(),
        seen: Mutex::default(),
    });
    let app = Router::new()
        .route("/api/v3/klines", get(klines))
        .with_state(Arc::clone(&stub));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/v.db", dir.path().display());
    Harness {
        stub,
        base_url,
        db_url,
        _dir: dir,
    }
}

impl Harness {
    async fn store(&self) -> Store {
        Store::open(&self.db_url).await.unwrap()
    }

    /// Fast polls and tiny backoffs, so a test takes milliseconds per round.
    fn config(&self, symbols: &[&str], backfill_hours: u32) -> FollowConfig {
        FollowConfig {
            symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
            base_url: self.base_url.clone(),
            poll: Duration::from_millis(20),
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(20),
            backfill_hours,
            request_timeout: Duration::from_secs(5),
            ..FollowConfig::default()
        }
    }

    /// The stub's clock, so both sides agree on which candles are closed.
    fn clock(&self) -> Clock {
        let now = Arc::clone(&self.stub.now);
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    }

    fn follow(&self, store: &Store, config: FollowConfig) -> Follower {
        Follower::spawn(store.clone(), config, self.clock()).unwrap()
    }
}

async fn stored(store: &Store, symbol: &str) -> Vec<Candle> {
    store.candles(symbol, i64::MIN, i64::MAX, u32::MAX).await.unwrap()
}

/// Waits (at most 20 s) until `done` holds for the follower's status.
async fn wait_until(status: &FollowStatus, what: &str, done: impl Fn(&[SymbolStatus]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let snapshot = status.snapshot();
        if done(&snapshot) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {snapshot:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn symbol<'a>(statuses: &'a [SymbolStatus], name: &str) -> &'a SymbolStatus {
    statuses.iter().find(|s| s.symbol == name).unwrap()
}

/// Waits until `name` is caught up with its last stored candle at `last`.
async fn caught_up(status: &FollowStatus, name: &str, last: i64) {
    wait_until(status, &format!("{name} caught up at {last}"), |s| {
        s.iter()
            .any(|s| s.symbol == name && s.state == FollowState::CaughtUp && s.last_open_time == Some(last))
    })
    .await;
}

#[tokio::test]
async fn backfills_across_pages_and_stores_only_closed_candles_once() {
    let h = harness(&["BTCUSDT"], half_past(3000)).await;
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["btcusdt"], 2500));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(2999)).await;

    let expected = h.stub.expected("BTCUSDT", hour(500), hour(2999));
    assert_eq!(expected.len(), 2500);
    assert_eq!(stored(&store, "BTCUSDT").await, expected);
    let s = status.get("BTCUSDT").unwrap();
    assert_eq!(s.stored, 2500);
    assert_eq!(s.consecutive_failures, 0);
    assert_eq!(s.last_error, None);
    assert_eq!(s.last_success_ms, Some(half_past(3000)));
    let seen = h.stub.seen_for("BTCUSDT");
    assert_eq!(
        &h.stub.starts("BTCUSDT")[..3],
        &[hour(500), hour(1500), hour(2500)]
    );
    assert!(seen.iter().all(|s| s.limit == Some(1000) && s.start >= hour(500)));
    assert!(s.requests >= 3);
    // The open candle (hour 3000) was served with its values so far, and not stored.
    assert_eq!(store.count("BTCUSDT", hour(3000), i64::MAX).await.unwrap(), 0);

    // Once it has closed it is stored, with its final values.
    h.stub.set_now(half_past(3001));
    caught_up(&status, "BTCUSDT", hour(3000)).await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(500), hour(3000))
    );
    assert_eq!(status.get("BTCUSDT").unwrap().stored, 2501);
    follower.shutdown().await;
}

#[tokio::test]
async fn a_gap_at_the_source_is_skipped_and_later_hours_still_arrive() {
    let h = harness(&["BTCUSDT"], half_past(2200)).await;
    h.stub.knobs().gaps = [hour(1000), hour(1001), hour(1002), hour(2199)].into();
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 2200));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(2198)).await;
    let expected = h.stub.expected("BTCUSDT", hour(0), hour(2199));
    assert_eq!(expected.len(), 2196);
    assert_eq!(stored(&store, "BTCUSDT").await, expected);
    // The page after the gap starts where the exchange's candles go on.
    assert_eq!(&h.stub.starts("BTCUSDT")[..3], &[hour(0), hour(1000), hour(2003)]);

    h.stub.set_now(half_past(2203));
    caught_up(&status, "BTCUSDT", hour(2202)).await;
    let expected = h.stub.expected("BTCUSDT", hour(0), hour(2202));
    assert_eq!(expected.len(), 2199);
    assert_eq!(stored(&store, "BTCUSDT").await, expected);
    assert_eq!(status.get("BTCUSDT").unwrap().stored, 2199);
    follower.shutdown().await;
}

#[tokio::test]
async fn a_repeated_row_is_stored_once_and_refuses_nothing() {
    let h = harness(&["BTCUSDT"], half_past(1500)).await;
    h.stub.knobs().duplicate = Some(hour(500));
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 1500));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(1499)).await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(0), hour(1499))
    );
    let s = status.get("BTCUSDT").unwrap();
    assert_eq!((s.stored, s.retries, s.last_error), (1500, 0, None));
    // The first page held 999 hours (one twice), so the second starts at hour 999.
    assert_eq!(&h.stub.starts("BTCUSDT")[..2], &[hour(0), hour(999)]);
    follower.shutdown().await;
}

#[tokio::test]
async fn a_page_out_of_order_loses_no_hour() {
    let h = harness(&["BTCUSDT"], half_past(1500)).await;
    h.stub.knobs().swap = Some(hour(3));
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 1500));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(1499)).await;
    let (got, expected) = (
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(0), hour(1499)),
    );
    assert_eq!(got.len(), expected.len(), "hours stored");
    assert!(got == expected, "the stored candles differ from the exchange's");
    assert_eq!(status.get("BTCUSDT").unwrap().stored, 1500);
    follower.shutdown().await;
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_with_backoff() {
    let h = harness(&["BTCUSDT"], half_past(1200)).await;
    h.stub.knobs().failures = [(429, 1), (429, 0), (418, 0), (503, 0), (500, 0)].into();
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 1200));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(1199)).await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(0), hour(1199))
    );
    let s = status.get("BTCUSDT").unwrap();
    assert_eq!(
        (s.stored, s.rate_limited, s.retries, s.consecutive_failures),
        (1200, 3, 5, 0)
    );
    assert!(s.last_error.as_deref().unwrap().contains("HTTP 500"), "{s:?}");
    let seen = h.stub.seen_for("BTCUSDT");
    assert!(seen[..6].iter().all(|s| s.start == hour(0)), "{seen:?}");
    assert_eq!(seen[6].start, hour(1000));
    // `Retry-After: 1` is honoured although the backoff is at most 20 ms; the others are not slow.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(990));
    assert!(seen[5].at - seen[1].at < Duration::from_millis(900));
    follower.shutdown().await;
}

#[tokio::test]
async fn a_refused_row_keeps_the_rows_before_it_and_is_asked_for_again() {
    let (h, store, follower, status) = refused_three_times_at(hour(700)).await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(0), hour(699))
    );
    let s = status.get("BTCUSDT").unwrap();
    assert_eq!(
        (s.state, s.stored, s.last_open_time),
        (FollowState::Retrying, 700, Some(hour(699)))
    );
    let error = s.last_error.unwrap();
    // Named by the open time and field (the row is its place in the last page asked for).
    assert!(
        error.contains(&format!("open_time {}", hour(700))) && error.contains("high"),
        "{error}"
    );
    assert!(h.stub.starts("BTCUSDT")[1..].iter().all(|&t| t == hour(700)));

    // Corrected at the source: the follower goes on from the refused hour.
    h.stub.knobs().bad = None;
    caught_up(&status, "BTCUSDT", hour(999)).await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(0), hour(999))
    );
    follower.shutdown().await;
}

/// BTCUSDT followed from hour 0 at half past hour 1000, its candle at `bad` refused by the
/// exchange, once the follower has had it refused three times in a row.
async fn refused_three_times_at(bad: i64) -> (Harness, Store, Follower, FollowStatus) {
    refused_three_times_after_gaps(bad, &[]).await
}

/// [`refused_three_times_at`], the exchange having no candle at `gaps`.
async fn refused_three_times_after_gaps(bad: i64, gaps: &[i64]) -> (Harness, Store, Follower, FollowStatus) {
    refused_three_times_with(|k| {
        k.bad = Some(bad);
        k.gaps = gaps.iter().copied().collect();
    })
    .await
}

/// BTCUSDT followed from hour 0 at half past hour 1000, the exchange set by `knobs`, once the
/// follower has had a page refused three times in a row.
async fn refused_three_times_with(
    knobs: impl FnOnce(&mut Knobs),
) -> (Harness, Store, Follower, FollowStatus) {
    let h = harness(&["BTCUSDT"], half_past(1000)).await;
    knobs(&mut h.stub.knobs());
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 1000));
    let status = follower.status();
    wait_until(&status, "three refusals", |s| {
        symbol(s, "BTCUSDT").consecutive_failures >= 3
    })
    .await;
    (h, store, follower, status)
}

/// A candle the exchange never corrects is skipped once refused for an hour (the follower's
/// clock), as a missing hour: the hours after it still arrive.
#[tokio::test]
async fn a_candle_refused_for_an_hour_is_skipped_as_a_missing_hour() {
    let (h, store, follower, status) = refused_three_times_at(hour(700)).await;
    // Within the hour: still asked for, nothing after it stored; an hour later, still refused:
    // skipped, and the rest of the history arrives.
    only_hour_700_is_skipped_an_hour_later(&h, &store, &status).await;
    let error = status.get("BTCUSDT").unwrap().last_error.unwrap();
    assert!(error.contains("skipped, the hour is missing"), "{error}");
    follower.shutdown().await;
}

/// A row that cannot be read (a field the exchange sent as `null`) but whose open time can is
/// refused at that hour and skipped after an hour as a refused candle is: it used to name no
/// hour, so the symbol asked for it again for good and no later hour was ever stored.
#[tokio::test]
async fn a_row_that_cannot_be_read_is_skipped_after_an_hour_as_a_refused_candle_is() {
    let (h, store, follower, status) = refused_three_times_with(|k| k.unreadable = Some(hour(700))).await;
    let error = status.get("BTCUSDT").unwrap().last_error.unwrap();
    assert!(error.contains("quote_volume"), "{error}");
    only_hour_700_is_skipped_an_hour_later(&h, &store, &status).await;
    let error = status.get("BTCUSDT").unwrap().last_error.unwrap();
    assert!(error.contains("skipped, the hour is missing"), "{error}");
    follower.shutdown().await;
}

/// A row whose open time cannot be read either stands for the hour after the row before it:
/// refused there and skipped after an hour as any unreadable row (it ended the page naming no
/// hour, so the symbol asked for it again for good and no later hour was ever stored).
#[tokio::test]
async fn a_row_without_a_readable_open_time_is_skipped_after_an_hour_too() {
    let (h, store, follower, status) = refused_three_times_with(|k| k.timeless = Some(hour(700))).await;
    let error = status.get("BTCUSDT").unwrap().last_error.unwrap();
    assert!(error.contains("open time null"), "{error}");
    only_hour_700_is_skipped_an_hour_later(&h, &store, &status).await;
    follower.shutdown().await;
}

/// An open time written as a string (a mirror's rewriting) is read as the integer it holds.
#[tokio::test]
async fn an_open_time_written_as_a_string_is_read() {
    let h = harness(&["BTCUSDT"], half_past(1000)).await;
    h.stub.knobs().quoted_time = Some(hour(700));
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 1000));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(999)).await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(0), hour(999))
    );
    follower.shutdown().await;
}

/// With hour 700 refused, everything before it is stored; an hour later it is skipped and the
/// rest of the history arrives, hour 700 alone missing.
async fn only_hour_700_is_skipped_an_hour_later(h: &Harness, store: &Store, status: &FollowStatus) {
    assert_eq!(status.get("BTCUSDT").unwrap().last_open_time, Some(hour(699)));
    h.stub.now.fetch_add(H, Ordering::SeqCst);
    caught_up(status, "BTCUSDT", hour(1000)).await;
    let mut expected = h.stub.expected("BTCUSDT", hour(0), hour(1000));
    expected.retain(|c| c.open_time != hour(700));
    assert_eq!(stored(store, "BTCUSDT").await, expected);
}

/// The same when the exchange sends the hour before the unreadable row after it (the page out
/// of order): that hour is stored, and only the unreadable one is skipped. The page used to end
/// at the unreadable row, so the hour after it in the page was never read and, once the
/// unreadable hour was skipped, never asked for again.
#[tokio::test]
async fn an_unreadable_row_before_an_earlier_hour_in_the_page_loses_only_its_own() {
    let (h, store, follower, status) = refused_three_times_with(|k| {
        k.unreadable = Some(hour(700));
        k.swap = Some(hour(699));
    })
    .await;
    only_hour_700_is_skipped_an_hour_later(&h, &store, &status).await;
    follower.shutdown().await;
}

/// An error answer is classified by its status whatever its size: a 429 with a large body is
/// still rate limiting (retried after its `Retry-After`), not an answer too large.
#[tokio::test]
async fn a_large_error_answer_is_classified_by_its_status() {
    let h = harness(&["BTCUSDT"], half_past(1000)).await;
    h.stub.knobs().failures.push_back((429, 0));
    h.stub.knobs().error_padding = 9 << 20;
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 1000));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(999)).await;
    let s = status.get("BTCUSDT").unwrap();
    assert_eq!(s.rate_limited, 1, "{s:?}");
    follower.shutdown().await;
}

/// An answer far larger than a klines page (a proxy's, or a wrong `--binance-url`'s) is refused,
/// not read into memory whole, and following goes on once the answers are pages again.
#[tokio::test]
async fn an_answer_too_large_to_be_a_klines_page_is_refused() {
    let h = harness(&["BTCUSDT"], half_past(1000)).await;
    h.stub.knobs().padding = 9 << 20;
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 1000));
    let status = follower.status();
    wait_until(&status, "two failures", |s| {
        symbol(s, "BTCUSDT").consecutive_failures >= 2
    })
    .await;
    let s = status.get("BTCUSDT").unwrap();
    assert_eq!((s.stored, s.last_open_time), (0, None));
    let error = s.last_error.unwrap();
    assert!(error.contains("larger than 8388608 bytes"), "{error}");
    h.stub.knobs().padding = 0;
    caught_up(&status, "BTCUSDT", hour(999)).await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(0), hour(999))
    );
    follower.shutdown().await;
}

/// The same when the exchange has no candle just before the refused one: each page then starts
/// past the follower's cursor, at the refused hour, which is skipped all the same (it used to
/// hold the asset back for good, a restart included).
#[tokio::test]
async fn a_candle_refused_after_a_gap_is_skipped_too() {
    let (h, store, follower, status) = refused_three_times_after_gaps(hour(701), &[hour(700)]).await;
    assert_eq!(status.get("BTCUSDT").unwrap().last_open_time, Some(hour(699)));
    h.stub.now.fetch_add(H, Ordering::SeqCst);
    caught_up(&status, "BTCUSDT", hour(1000)).await;
    let mut expected = h.stub.expected("BTCUSDT", hour(0), hour(1000));
    expected.retain(|c| c.open_time != hour(700) && c.open_time != hour(701));
    assert_eq!(stored(&store, "BTCUSDT").await, expected);
    follower.shutdown().await;
}

#[tokio::test]
async fn an_unknown_symbol_is_reported_and_stops_no_other() {
    let h = harness(&["BTCUSDT"], half_past(300)).await;
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["NOPEUSDT", "BTCUSDT"], 300));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(299)).await;
    wait_until(&status, "NOPEUSDT refused twice", |s| {
        symbol(s, "NOPEUSDT").consecutive_failures >= 2
    })
    .await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(0), hour(299))
    );
    let nope = status.get("NOPEUSDT").unwrap();
    assert_eq!(
        (nope.state, nope.stored, nope.last_open_time),
        (FollowState::Refused, 0, None)
    );
    assert!(nope.last_error.unwrap().contains("Invalid symbol."));
    assert_eq!(store.count("NOPEUSDT", i64::MIN, i64::MAX).await.unwrap(), 0);
    let names: Vec<String> = status.snapshot().into_iter().map(|s| s.symbol).collect();
    assert_eq!(names, ["BTCUSDT", "NOPEUSDT"]);
    follower.shutdown().await;
}

#[tokio::test]
async fn a_restart_resumes_after_the_last_stored_candle_and_backfills_the_downtime() {
    let h = harness(&["BTCUSDT"], half_past(1500)).await;
    let store = h.store().await;
    // Small pages, stopped in the middle of the backfill.
    let config = FollowConfig {
        page_limit: 100,
        ..h.config(&["BTCUSDT"], 1200)
    };
    let follower = h.follow(&store, config.clone());
    wait_until(&follower.status(), "300 candles", |s| {
        symbol(s, "BTCUSDT").stored >= 300
    })
    .await;
    // Shutdown is graceful: a task storing a page finishes it before it stops, so nothing is
    // written after `shutdown` returns and the count below is final.
    follower.shutdown().await;
    store.close().await;
    let store = h.store().await;
    let before = stored(&store, "BTCUSDT").await;
    let kept = before.len() as i64;
    assert!((300..=1200).contains(&kept), "{kept}");
    assert_eq!(
        before,
        h.stub.expected("BTCUSDT", hour(300), hour(300 + kept - 1))
    );
    store.close().await;

    // Down for 20 hours; the new follower sees the same file.
    h.stub.set_now(half_past(1520));
    let asked = h.stub.starts("BTCUSDT").len();
    let store = h.store().await;
    let follower = h.follow(&store, config);
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(1519)).await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(300), hour(1519))
    );
    assert_eq!(store.count("BTCUSDT", i64::MIN, i64::MAX).await.unwrap(), 1220);
    assert_eq!(status.get("BTCUSDT").unwrap().stored, (1220 - kept) as u64);
    let starts = h.stub.starts("BTCUSDT");
    assert_eq!(starts[asked], hour(300 + kept));
    assert!(starts[asked..].iter().all(|&t| t >= hour(300 + kept)));
    follower.shutdown().await;
}

#[tokio::test]
async fn following_all_resumes_every_stored_asset() {
    let h = harness(&["BTCUSDT", "ETHUSDT"], half_past(250)).await;
    let store = h.store().await;
    let eth = h.stub.expected("ETHUSDT", hour(100), hour(199));
    assert_eq!(store.insert_candles("ETHUSDT", &eth).await.unwrap(), 100);
    let odd = h.stub.expected("BTCUSDT", hour(0), hour(9));
    assert_eq!(store.insert_candles("btc-usd", &odd).await.unwrap(), 10);
    let config = FollowConfig {
        all: true,
        ..h.config(&["BTCUSDT"], 50)
    };
    let follower = h.follow(&store, config);
    let status = follower.status();
    caught_up(&status, "ETHUSDT", hour(249)).await;
    caught_up(&status, "BTCUSDT", hour(249)).await;
    assert_eq!(
        stored(&store, "ETHUSDT").await,
        h.stub.expected("ETHUSDT", hour(100), hour(249))
    );
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(200), hour(249))
    );
    assert_eq!(h.stub.starts("ETHUSDT")[0], hour(200));
    assert_eq!(status.get("ETHUSDT").unwrap().stored, 50);
    // A stored asset that is no Binance symbol is left alone.
    let names: Vec<String> = status.snapshot().into_iter().map(|s| s.symbol).collect();
    assert_eq!(names, ["BTCUSDT", "ETHUSDT"]);
    assert_eq!(store.count("btc-usd", i64::MIN, i64::MAX).await.unwrap(), 10);
    follower.shutdown().await;
}

#[tokio::test]
async fn invalid_settings_are_refused_at_start() {
    let h = harness(&[], half_past(10)).await;
    let store = h.store().await;
    let spawn = |config: FollowConfig| Follower::spawn(store.clone(), config, h.clock()).err();
    assert!(matches!(
        spawn(h.config(&[], 10)),
        Some(FollowError::NothingToFollow)
    ));
    assert!(matches!(spawn(h.config(&["BTC/USDT"], 10)), Some(FollowError::Symbol(s)) if s == "BTC/USDT"));
    let bad = [
        FollowConfig {
            page_limit: 0,
            ..h.config(&["BTCUSDT"], 10)
        },
        FollowConfig {
            page_limit: 1001,
            ..h.config(&["BTCUSDT"], 10)
        },
        FollowConfig {
            backoff_min: Duration::ZERO,
            ..h.config(&["BTCUSDT"], 10)
        },
        FollowConfig {
            base_url: "ftp://example.invalid".into(),
            ..h.config(&["BTCUSDT"], 10)
        },
    ];
    for config in bad {
        assert!(matches!(spawn(config), Some(FollowError::Setting(_))));
    }
    assert_eq!(FollowConfig::default().base_url, "https://api.binance.com");
}

#[tokio::test]
async fn a_host_clock_ahead_of_the_exchanges_stores_no_open_candle() {
    let h = harness(&["BTCUSDT"], half_past(3000)).await;
    h.stub.knobs().lag = Some(10 * 60_000);
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 10));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(2999)).await;
    // The host's clock 6 s past hour 3000's close, the exchange's 10 minutes behind: hour 3000
    // is still open there (its values so far), and its `Date` says so.
    h.stub.set_now(hour(3001) + 6_000);
    let asked = h.stub.starts("BTCUSDT").len();
    wait_until(&status, "more rounds", |_| {
        h.stub.starts("BTCUSDT").len() >= asked + 5
    })
    .await;
    assert_eq!(
        stored(&store, "BTCUSDT").await.last().map(|c| c.open_time),
        Some(hour(2999)),
        "the open hour 3000 is not stored"
    );
    // Once the exchange's clock passes the close, hour 3000 is stored with its final values.
    h.stub.set_now(hour(3001) + 10 * 60_000 + 6_000);
    caught_up(&status, "BTCUSDT", hour(3000)).await;
    assert!(
        stored(&store, "BTCUSDT").await == h.stub.expected("BTCUSDT", hour(2990), hour(3000)),
        "hour 3000 is stored with its final values"
    );
    follower.shutdown().await;
}

#[tokio::test]
async fn a_candle_that_closes_while_the_answer_travels_is_not_stored_with_its_partial_values() {
    let h = harness(&["BTCUSDT"], half_past(3000)).await;
    let store = h.store().await;
    let follower = h.follow(&store, h.config(&["BTCUSDT"], 10));
    let status = follower.status();
    caught_up(&status, "BTCUSDT", hour(2999)).await;
    // The next answer is written at half past hour 3000 (hour 3000 open, its values so far), and
    // the clock passes the hour's close before the follower reads it.
    h.stub.knobs().advance_after = Some(H);
    caught_up(&status, "BTCUSDT", hour(3000)).await;
    assert_eq!(
        stored(&store, "BTCUSDT").await,
        h.stub.expected("BTCUSDT", hour(2990), hour(3000)),
        "hour 3000 is stored with its final values"
    );
    follower.shutdown().await;
}

/// A page's write left hanging on the store (PostgreSQL through a relay that severs the write's
/// connection once it waits on a lock: no answer and no reset, ever) is given up after the
/// follower's store timeout and written again, and every symbol is followed to its last closed
/// candle. With one page written at a time, the hung write stopped every symbol until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_left_hanging_on_the_store_is_given_up_and_following_goes_on() {
    use common::relay::{Relay, host_port, postgres_url, through, until_waiting};
    let Some(url) = postgres_url().await else { return };
    let relay = Relay::start(host_port(&url)).await;
    let store = Store::open(&through(&url, relay.port)).await.unwrap();
    let symbols = ["AAAUSDT", "BBBUSDT"];
    let h = harness(&symbols, half_past(300)).await;
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE candles IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let config = FollowConfig {
        store_timeout: Duration::from_secs(3),
        ..h.config(&symbols, 200)
    };
    let follower = h.follow(&store, config);
    until_waiting(&url, "INSERT INTO candles").await;
    relay.sever();
    lock.rollback().await.unwrap();
    let status = follower.status();
    let started = Instant::now();
    loop {
        let snapshot = status.snapshot();
        if symbols
            .iter()
            .all(|name| symbol(&snapshot, name).last_open_time == Some(hour(299)))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not followed to the end 60 s after the write hung: {snapshot:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in symbols {
        assert_eq!(
            stored(&store, name).await,
            h.stub.expected(name, hour(100), hour(299)),
            "{name}"
        );
    }
    follower.shutdown().await;
}
