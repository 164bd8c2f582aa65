//! `kill -9` while the server follows and stores: the real `server` binary follows a symbol from
//! a stub of Binance's klines endpoint (slow pages of 100 candles, so the kill lands in the
//! middle of the backfill), into an SQLite file. After the kill, everything committed is there
//! and exact; a restarted server resumes at the last stored hour, backfills the rest, stores no
//! hour twice, and then serves `GET /v1/assets/{asset}/risk` from the followed data under the
//! default staleness limit.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use volcast_core::candles::Candle;
use volcast_core::time::HOUR_MS;
use volcast_server::routes::assets::now_ms;
use volcast_store::{CandleStore, Store};

const SYMBOL: &str = "KILLUSDT";
/// Hours the follower backfills for an asset it has never stored.
const BACKFILL: i64 = 1200;
/// Candles per stub answer (fewer than asked: the follower asks again after its poll).
const PAGE: usize = 100;

/// Hourly candles from `from` through the current (open) hour: a deterministic random walk with
/// trading every hour.
fn generate(from: i64, to: i64) -> Vec<Candle> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1_u64 << 53) as f64
    };
    let round8 = |x: f64| (x * 1e8).round() / 1e8;
    let mut price = 50.0;
    (0..)
        .map(|h| from + h * HOUR_MS)
        .take_while(|&t| t <= to)
        .map(|open_time| {
            let open = round8(price);
            let close = round8(open * (1.0 + (uniform() - 0.5) * 0.02));
            let high = round8(open.max(close) * (1.0 + 0.001 + uniform() * 0.004));
            let low = round8(open.min(close) * (1.0 - 0.001 - uniform() * 0.004));
            let volume = round8(500.0 + 500.0 * uniform());
            price = close;
            Candle {
                open_time,
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

struct Stub {
    data: Vec<Candle>,
    /// Start times asked, in order.
    starts: Mutex<Vec<i64>>,
}

#[derive(Deserialize)]
struct Params {
    symbol: String,
    #[serde(rename = "startTime")]
    start_time: i64,
}

fn text(x: f64) -> String {
    format!("{x:.8}")
}

/// Up to [`PAGE`] candles from `startTime`, slowly, the open hour's candle with partial values.
async fn klines(State(stub): State<Arc<Stub>>, Query(p): Query<Params>) -> Json<Value> {
    assert_eq!(p.symbol, SYMBOL);
    stub.starts.lock().unwrap().push(p.start_time);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let now = now_ms();
    let rows: Vec<Value> = stub
        .data
        .iter()
        .filter(|c| c.open_time >= p.start_time && c.open_time <= now)
        .take(PAGE)
        .map(|c| {
            let open = c.open_time + HOUR_MS > now;
            let (high, low, close) = if open {
                (c.open, c.open, c.open)
            } else {
                (c.high, c.low, c.close)
            };
            json!([
                c.open_time,
                text(c.open),
                text(high),
                text(low),
                text(close),
                text(c.volume),
                c.open_time + HOUR_MS - 1,
                text(c.quote_volume),
                100,
                "0",
                "0",
                "0"
            ])
        })
        .collect();
    Json(Value::Array(rows))
}

async fn count(store: &Store) -> i64 {
    store.count(SYMBOL, i64::MIN, i64::MAX).await.unwrap()
}

/// Waits up to a minute for `done`.
async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_following_loses_nothing_committed_and_the_restart_backfills() {
    let now_hour = now_ms().div_euclid(HOUR_MS) * HOUR_MS;
    let first = now_hour - BACKFILL * HOUR_MS;
    // A few hours of slack past now, so the test may run across an hour's close.
    let stub = Arc::new(Stub {
        data: generate(first - 50 * HOUR_MS, now_hour + 3 * HOUR_MS),
        starts: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub_url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/api/v3/klines", get(klines))
        .with_state(Arc::clone(&stub));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let url = common::process::store_url(dir.path());
    let args = [
        "--database-url",
        &url,
        "--follow",
        SYMBOL,
        "--binance-url",
        &stub_url,
        "--follow-poll",
        "1s",
        "--follow-backfill-hours",
        "1200",
    ];
    let artifact = common::repo().join("model-artifacts/default");
    let store = Store::open(&url).await.unwrap();

    // Kill -9 once a few pages are stored, while it goes on storing.
    let mut server = common::process::start(&artifact, &args);
    wait_for("three pages", async || count(&store).await >= 3 * PAGE as i64).await;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let committed = count(&store).await;
    let kept = store.latest_candles(SYMBOL, i64::MAX, u32::MAX).await.unwrap();
    assert_eq!(kept.len() as i64, committed);
    let want: Vec<Candle> = stub
        .data
        .iter()
        .filter(|c| c.open_time >= first)
        .take(kept.len())
        .copied()
        .collect();
    assert_eq!(
        kept, want,
        "what was committed before the kill is the exchange's candles, from the backfill's start"
    );
    assert!(
        committed < BACKFILL,
        "the kill did not land in the backfill ({committed} stored)"
    );
    let asked_before = stub.starts.lock().unwrap().len();

    // Restart: it resumes after the last stored hour and stores every closed hour once.
    let server = common::process::start(&artifact, &args);
    let closed = |now: i64| -> Vec<Candle> {
        stub.data
            .iter()
            .filter(|c| c.open_time >= first && c.open_time + HOUR_MS <= now)
            .copied()
            .collect()
    };
    wait_for("the backfill", async || {
        let n = count(&store).await;
        n >= closed(now_ms() - 10_000).len() as i64 && n > 0
    })
    .await;
    let first_after = stub.starts.lock().unwrap()[asked_before];
    assert_eq!(first_after, kept.last().unwrap().open_time + HOUR_MS);
    let stored = store.latest_candles(SYMBOL, i64::MAX, u32::MAX).await.unwrap();
    let want = closed(now_ms());
    assert!(
        stored.len() == want.len() || stored.len() + 1 == want.len(),
        "{} vs {}",
        stored.len(),
        want.len()
    );
    assert_eq!(
        stored,
        want[..stored.len()],
        "each hour once, equal to the exchange's"
    );
    assert_eq!(stored.len() as i64, count(&store).await);

    // The followed data serves the asset routes under the default staleness limit, and the
    // listing shows the follower.
    let client = reqwest::Client::new();
    let risk: Value = client
        .get(format!("{}/v1/assets/{SYMBOL}/risk", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        risk["items"][0]["parameters"]["liquidation_threshold"].is_f64(),
        "{risk}"
    );
    let listing: Value = client
        .get(format!("{}/v1/assets", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["assets"][0]["asset"], SYMBOL);
    assert_eq!(listing["assets"][0]["stale"], false);
    assert_eq!(listing["following"][0]["symbol"], SYMBOL, "{listing}");
    assert_eq!(listing["following"][0]["state"], "caught_up", "{listing}");
    // The gauges: what this process stored (the rest came before the kill), and fresh data.
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |name: &str| -> i64 {
        let prefix = format!("{name}{{asset=\"{SYMBOL}\"}} ");
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{name}: {metrics}"));
        line[prefix.len()..].parse().unwrap()
    };
    // (One more if an hour closed since `stored` was read.)
    let new = stored.len() as i64 - committed;
    let gauged = gauge("volcast_follower_candles_stored");
    assert!((new..=new + 1).contains(&gauged), "{gauged} vs {new}");
    assert_eq!(gauge("volcast_follower_consecutive_failures"), 0);
    drop(server);
}
