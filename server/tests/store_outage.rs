//! The service when its PostgreSQL database cannot be reached, through a relay between them
//! that the tests cut (a network partition: no reset, no answer) or sever (the connections open
//! then never answer again):
//! - the decision log withholds the risk answers promptly, with 503 `decision_log_unavailable`,
//!   instead of holding each request for sqlx's 30-second wait for a connection, answers at
//!   once while the store stays down, and logs and serves again once the partition heals, with
//!   every answer served on the chain and none of the withheld ones;
//! - the API-key watcher gives up a read left hanging, so a revocation still takes effect;
//! - an append left hanging (severed, or held behind a lock past the writer's 60 s deadline), or
//!   one statement whose connection is lost while it waits, is settled by sending it again: its
//!   answer is served, committed once, in each of four cases; a transaction whose connection is
//!   lost before its COMMIT is withheld at once;
//! - SIGTERM while an append hangs still stops the server;
//! - a replica whose store is cut as its daily job starts serves the gate's fallback within
//!   seconds of the store's return;
//! - the market-data age gauges keep rising while the store cannot be read;
//! - a store cut over midnight uses none of the day's recalibration tries;
//! - appends and reads given up behind a lock held for minutes leave the store's pool usable,
//!   and their statements end within seconds, the lock still held;
//! - a daily pass whose read is left hanging is given up, and the job goes on;
//! - a replica's migrations wait for a lock past the store's lock timeout.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use common::relay::{
    Relay, give_up_once_waiting, host_port, postgres_url, through, until_waiting, waiting_on_locks,
};
use serde_json::{Value, json};
use volcast_server::audit::Signer;
use volcast_server::audit::log::DecisionLog;
use volcast_server::audit::verify::verify_all;
use volcast_server::auth::{Scope, new_key};
use volcast_store::{CandleStore as _, DecisionStore as _, KeyStore as _, LedgerStore as _, Store};

const FOREVER: Duration = Duration::from_secs(100_000 * 86_400);

/// A service serving the default artifact whose decision log (and store) reaches `url` through a
/// relay the test can cut or sever: the relay, a store on `url` directly, and the state.
async fn logged_behind_relay(url: &str) -> (Relay, Store, volcast_server::state::AppState) {
    let relay = Relay::start(host_port(url)).await;
    let store = Store::open(&through(url, relay.port)).await.unwrap();
    let direct = Store::open(url).await.unwrap();
    let artifact = common::repo().join("model-artifacts/default");
    let state = common::state_with_store(&artifact, store.clone(), FOREVER).await;
    let (signer, _) = Signer::generate().unwrap();
    state.set_decisions(
        DecisionLog::start(store, signer, Arc::clone(state.metrics()))
            .await
            .unwrap(),
    );
    (relay, direct, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_store_withholds_answers_promptly_and_logs_again_once_it_heals() {
    let Some(url) = postgres_url().await else { return };
    assert_eq!(
        through("postgres://volcast@127.0.0.1:5432/postgres", 9),
        "postgres://volcast@127.0.0.1:9/postgres"
    );
    let (relay, direct, state) = logged_behind_relay(&url).await;
    let app = volcast_server::app(state.clone());
    let history = state.serving().unwrap().info.history_hours();
    let series = common::market_json(6, 45);
    let asset = format!("PARTITION{}", volcast_server::audit::new_id(0));
    let window = |back: usize| {
        let end = series.len() - back;
        json!({"asset": asset, "candles": series[end - history..end]})
    };
    let ask = |back: usize| {
        let (app, body) = (app.clone(), window(back));
        async move {
            let started = Instant::now();
            let (status, answer, _) = common::call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
            (status, answer, started.elapsed())
        }
    };
    let mut served = Vec::new();
    let mut keep = |answer: &Value| {
        served.push(answer["items"][0]["decision_id"].as_str().unwrap().to_owned());
    };

    let (status, answer, _) = ask(0).await;
    assert_eq!(status, 200, "{answer}");
    keep(&answer);

    relay.cut(true);
    // The first request after the cut: its append waits for a connection (the idle one's check
    // hangs) for the pool's wait, not sqlx's default 30 s.
    let (status, answer, took) = ask(1).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], json!("decision_log_unavailable"), "{answer}");
    let bound = volcast_store::POSTGRES_ACQUIRE_TIMEOUT + Duration::from_secs(4);
    assert!(took < bound, "withheld after {took:?}, past {bound:?}");
    // Once the writer has found the store down (the read of its head failed too), it answers
    // at once instead of trying each request's append.
    tokio::time::sleep(volcast_store::POSTGRES_ACQUIRE_TIMEOUT + Duration::from_secs(2)).await;
    for back in 2..5 {
        let (status, answer, took) = ask(back).await;
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"], json!("decision_log_unavailable"), "{answer}");
        assert!(
            took < Duration::from_secs(2),
            "withheld after {took:?} while known down"
        );
    }
    let failures = state.metrics().decision_log_failures.get();
    assert_eq!(failures, 4, "every withheld decision counted");
    assert_eq!(
        state.metrics().decision_log_down.get(),
        1,
        "the outage shows in volcast_decision_log_down"
    );

    relay.cut(false);
    // Back within a few reads of the head (each waits up to the pool's wait).
    let healed = Instant::now();
    let answer = loop {
        let (status, answer, _) = ask(5).await;
        if status == 200 {
            break answer;
        }
        assert_eq!(answer["error"], json!("decision_log_unavailable"), "{answer}");
        assert!(
            healed.elapsed() < Duration::from_secs(30),
            "still withheld 30 s after the partition healed: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    keep(&answer);
    let (status, answer, _) = ask(6).await;
    assert_eq!(status, 200, "{answer}");
    keep(&answer);
    assert_eq!(
        state.metrics().decision_log_down.get(),
        0,
        "the outage is over in volcast_decision_log_down"
    );

    // Every answer served is on the chain, none withheld is, and the whole chain verifies.
    only_the_served_on_a_verified_chain(&direct, served).await;
}

/// A read of the API keys left hanging (its connection severed while the read waited on a lock:
/// no answer and no reset, ever) does not stop the key watcher. It gives the read up, reads
/// again on a new connection, and a key revoked meanwhile is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_of_the_keys_left_hanging_does_not_stop_revocations() {
    let Some(url) = postgres_url().await else { return };
    let relay = Relay::start(host_port(&url)).await;
    let store = Store::open(&through(&url, relay.port)).await.unwrap();
    let direct = Store::open(&url).await.unwrap();
    let key = new_key("watched", &[Scope::Read], None, 0).unwrap();
    direct.create_key(&key.row).await.unwrap();
    let artifact = common::repo().join("model-artifacts/default");
    let state = common::state_with_store(&artifact, store, FOREVER).await;
    state.access().set_keys(&direct.keys().await.unwrap());
    let app = volcast_server::app(state.clone());
    let watcher = tokio::spawn(volcast_server::auth::guard::watch_keys(state));
    let get = || {
        let app = app.clone();
        let token = key.token.clone();
        async move {
            let req = Request::get("/v1/model")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            common::raw(&app, req).await.0.as_u16()
        }
    };
    assert_eq!(get().await, 200);

    // Another session holds the keys' table: the watcher's next read is sent and waits on it.
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    until_waiting(&url, "SELECT id, name, scopes").await;
    // Its connection is gone for good; the lock goes, and the key is revoked.
    relay.sever();
    lock.rollback().await.unwrap();
    assert!(direct.revoke_key(&key.row.id, 1).await.unwrap());
    let revoked = Instant::now();
    loop {
        let status = get().await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_secs(90),
            "the revoked key is still accepted 90 s on: the watcher waits on the severed read"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("revoked key refused {:?} after the revocation", revoked.elapsed());
    watcher.abort();
}

/// How an append is left hanging, in [`hang_one_append`].
#[derive(Debug, Clone, Copy)]
struct Hang {
    /// The request's window is stored already: the append is one statement, which the server
    /// commits on its own once it runs; otherwise a transaction, whose COMMIT the writer sends
    /// only after its statements come back.
    one_statement: bool,
    /// Its connection severed once it waits (no answer and no reset, ever).
    sever: bool,
    /// Its connection closed at both ends once it waits: the append fails at once, not knowing
    /// whether the server will commit what it has.
    reset: bool,
    /// How long the record it waits behind is held from then.
    hold: Duration,
}

/// One append waits behind another session's uncommitted record of its sequence number (its
/// statements sent), is left hanging as `hang` says and given up after the writer's 60 s
/// deadline, or loses its connection. The writer then sends the same records again, which settles it: the answer is
/// served, committed once, either by the server on the first send or by the second. Requests
/// sent meanwhile are withheld at once when the writer gives the append up, the log goes on
/// after it, and the chain holds every answer served and no other.
async fn hang_one_append(hang: Hang) {
    let Some(url) = postgres_url().await else { return };
    let (relay, direct, state) = logged_behind_relay(&url).await;
    let app = volcast_server::app(state.clone());
    let history = state.serving().unwrap().info.history_hours();
    let series = common::market_json(7, 45);
    let ask = |back: usize| {
        let end = series.len() - back;
        let body = json!({"asset": "HUNG", "candles": series[end - history..end]});
        let app = app.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (status, answer, _) = common::call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
            (status, answer, started.elapsed())
        })
    };
    let id = |answer: &Value| answer["items"][0]["decision_id"].as_str().unwrap().to_owned();
    let mut served = Vec::new();
    let (status, answer, _) = ask(0).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    served.push(id(&answer));

    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut blocker = admin.begin().await.unwrap();
    let next = direct.head().await.unwrap().map_or(1, |(seq, _)| seq + 1);
    sqlx::query(
        "INSERT INTO decisions (seq, id, at, asset, body, hash, signature, signer) \
         VALUES ($1, 'blocker', 0, 'blocker', '', '', '', '')",
    )
    .bind(next)
    .execute(&mut *blocker)
    .await
    .unwrap();
    let hung = ask(usize::from(!hang.one_statement));
    until_waiting(&url, "INSERT INTO decisions").await;
    if hang.sever {
        relay.sever();
    }
    if hang.reset {
        relay.reset();
    }
    let release = tokio::spawn(async move {
        tokio::time::sleep(hang.hold).await;
        blocker.rollback().await.unwrap();
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let behind = ask(2);
    let Ok(settled) = tokio::time::timeout(Duration::from_secs(150), hung).await else {
        panic!("the hung append was never settled");
    };
    let (status, answer, took) = settled.unwrap();
    // A transaction whose connection is lost before its COMMIT is never committed: withheld at
    // once, and the request behind it is logged as usual.
    let lost_before_commit = hang.reset && !hang.one_statement;
    if lost_before_commit {
        assert_eq!(status, 503, "{answer}");
        assert!(took < hang.hold, "withheld after {took:?}");
    } else {
        let least = if hang.reset {
            hang.hold.saturating_sub(Duration::from_secs(1))
        } else {
            Duration::from_secs(55)
        };
        assert_eq!(status, 200, "committed once, so served: {answer}");
        assert!(took >= least, "settled after {took:?}");
        served.push(id(&answer));
    }
    let (status, answer, _) = behind.await.unwrap();
    if lost_before_commit {
        assert_eq!(status, 200, "{answer}");
        served.push(id(&answer));
    } else {
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"], json!("decision_log_unavailable"), "{answer}");
    }
    assert_eq!(
        state.metrics().decision_log_down.get(),
        0,
        "settled, the log is up again in volcast_decision_log_down"
    );
    release.await.unwrap();
    let (status, answer, took) = ask(3).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(took < Duration::from_secs(10), "the next answer took {took:?}");
    served.push(id(&answer));

    only_the_served_on_a_verified_chain(&direct, served).await;
}

/// The test database's chain holds every answer `served` and no other, and verifies.
async fn only_the_served_on_a_verified_chain(direct: &Store, mut served: Vec<String>) {
    let rows = direct
        .decisions(None, i64::MIN, i64::MAX, None, 1000)
        .await
        .unwrap();
    let mut logged: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    logged.sort();
    served.sort();
    assert_eq!(
        logged, served,
        "every answer served is on the chain, and no other"
    );
    let keys = direct
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, public, _)| (id, public));
    assert_eq!(verify_all(&rows, keys).unwrap(), rows.len() as u64);
}

/// Severed while it waited, then let go: the server committed the one statement on its own
/// (its answer lost), and the second send finds its records taken by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_append_the_server_committed_is_served() {
    hang_one_append(Hang {
        one_statement: true,
        sever: true,
        reset: false,
        hold: Duration::ZERO,
    })
    .await;
}

/// Severed while it waited, then let go: the transaction never gets its COMMIT and is ended by
/// the server once idle for 30 s; the second send commits the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_append_never_committed_is_committed_by_the_second_send() {
    hang_one_append(Hang {
        one_statement: false,
        sever: true,
        reset: false,
        hold: Duration::ZERO,
    })
    .await;
}

/// Not severed, but held past the writer's deadline (65 s): the statement still runs when the
/// lock goes. A look-up at the deadline would find nothing and withhold an answer the server
/// then commits; the second send waits behind the first and finds it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_held_past_the_deadline_is_served_once_it_commits() {
    hang_one_append(Hang {
        one_statement: true,
        sever: false,
        reset: false,
        hold: Duration::from_secs(65),
    })
    .await;
}

/// Its connection closed while it waited (the append fails at once with an I/O error), the lock
/// then held 3 s more: the server commits the one statement on its own once the lock goes, and
/// the second send finds it stored. Withheld at once before (a record of an answer never served).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_whose_connection_is_lost_the_server_committed_is_served() {
    hang_one_append(Hang {
        one_statement: true,
        sever: false,
        reset: true,
        hold: Duration::from_secs(3),
    })
    .await;
}

/// The same with a transaction, its connection lost before its COMMIT was sent: never committed
/// (the server ends it once its statement returns to a closed connection), so withheld at once,
/// and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_whose_connection_is_lost_before_its_commit_is_withheld_at_once() {
    hang_one_append(Hang {
        one_statement: false,
        sever: false,
        reset: true,
        hold: Duration::from_secs(3),
    })
    .await;
}

/// SIGTERM while an append hangs on a severed connection: the real server still exits, within
/// its shutdown deadline for the requests and again for the store's connections, instead of
/// waiting for ever for the hung connection to come back to the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_while_an_append_hangs_still_exits() {
    let Some(url) = postgres_url().await else { return };
    let relay = Relay::start(host_port(&url)).await;
    let direct = Store::open(&url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing-key.pk8");
    let artifact = common::repo().join("model-artifacts/default");
    let server = common::process::start(
        &artifact,
        &[
            "--database-url",
            &through(&url, relay.port),
            "--signing-key",
            key.to_str().unwrap(),
            "--shutdown-deadline-ms",
            "2000",
        ],
    );
    let client = reqwest::Client::new();
    // The whole series: the route reads the window it needs from its end.
    let series = common::market_json(8, 45);
    let asset = format!("TERM{}", volcast_server::audit::new_id(0));
    let body = json!({"asset": asset, "candles": series});
    let ready = Instant::now();
    while client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(ready.elapsed() < Duration::from_secs(60), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url_risk = format!("{}/v1/risk/parameters", server.base);
    let answer = client.post(&url_risk).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());

    // The next append waits behind another session's record of its sequence number, and its
    // connection is severed.
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut lock = admin.begin().await.unwrap();
    let next = direct.head().await.unwrap().map_or(1, |(seq, _)| seq + 1);
    sqlx::query(
        "INSERT INTO decisions (seq, id, at, asset, body, hash, signature, signer) \
         VALUES ($1, $2, 0, 'blocker', '', '', '', '')",
    )
    .bind(next)
    .bind(format!("blocker{}", volcast_server::audit::new_id(0)))
    .execute(&mut *lock)
    .await
    .unwrap();
    // A window not stored yet: the append is a transaction, whose connection the pool cannot
    // take back while it hangs (one statement on the pool is cancelled by the pool's close).
    let fresh = json!({"asset": asset, "candles": series[..series.len() - 1]});
    let hung = tokio::spawn({
        let (client, url_risk, body) = (client.clone(), url_risk.clone(), fresh);
        async move {
            client
                .post(&url_risk)
                .json(&body)
                .send()
                .await
                .map(|r| r.status())
        }
    });
    until_waiting(&url, "INSERT INTO decisions").await;
    relay.sever();
    lock.rollback().await.unwrap();

    let mut server = server;
    common::process::signal(&server, "-TERM");
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGTERM (deadline 2 s)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("exited with {status} {:?} after SIGTERM", signalled.elapsed());
    // The request in flight was answered or cut by the exit, never served unlogged.
    if let Ok(Ok(answered)) = hung.await {
        assert_ne!(answered, 200, "answered while its append hung");
    }
}

/// A replica whose store is cut just before its daily job starts, the store's last gate switch
/// being to the fallback: once the partition heals it serves the fallback within seconds, not at
/// the job's next pass a minute later (it served the model's policy until then).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_cut_as_the_daily_job_starts_restores_the_fallback_soon_after_it_returns() {
    use volcast_server::gate::{FALLBACK_HAR, MODEL};
    let Some(url) = postgres_url().await else { return };
    let direct = Store::open(&url).await.unwrap();
    assert!(
        direct
            .record_switch(
                1_700_006_400_000,
                FALLBACK_HAR,
                "the test's: the model lost to HAR"
            )
            .await
            .unwrap()
    );
    let relay = Relay::start(host_port(&url)).await;
    let store = Store::open(&through(&url, relay.port)).await.unwrap();
    let artifact = common::repo().join("model-artifacts/default");
    let state = common::state_with_store(&artifact, store, FOREVER).await;
    assert_eq!(state.policy().0.name, MODEL);
    relay.cut(true);
    let config = volcast_server::Config::with_artifact(artifact).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = tokio::spawn(volcast_server::daily::job(
        state.clone(),
        volcast_server::daily::DailyOptions {
            recalibrate: false,
            artifacts_dir: dir.path().to_owned(),
            load: volcast_server::load_options(&config),
            store_deadline: volcast_server::daily::STORE_DEADLINE,
        },
    ));
    // The first reads fail (each waits the pool's 5 s for a connection): the job's at start,
    // and its first pass's.
    tokio::time::sleep(volcast_store::POSTGRES_ACQUIRE_TIMEOUT * 2 + Duration::from_secs(1)).await;
    assert_eq!(state.policy().0.name, MODEL, "nothing could be read yet");
    relay.cut(false);
    let healed = Instant::now();
    while state.policy().0.name != FALLBACK_HAR {
        assert!(
            healed.elapsed() < Duration::from_secs(20),
            "still serving the model's policy 20 s after the partition healed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    job.abort();
}

/// `volcast_market_data_age_seconds` while the store cannot be read: it keeps rising from the
/// last candle times read, so a staleness alert fires (it stayed at its last reading).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_market_data_age_keeps_rising_while_the_store_cannot_be_read() {
    let Some(url) = postgres_url().await else { return };
    let direct = Store::open(&url).await.unwrap();
    let candles = common::market(common::START_MS, 0, 1, None);
    direct.insert_candles("AGED", &candles).await.unwrap();
    let relay = Relay::start(host_port(&url)).await;
    let store = Store::open(&through(&url, relay.port)).await.unwrap();
    let artifact = common::repo().join("model-artifacts/default");
    let state = common::state_with_store(&artifact, store, FOREVER).await;
    let age = || {
        state
            .metrics()
            .render()
            .lines()
            .find(|l| l.starts_with("volcast_market_data_age_seconds{asset=\"AGED\"}"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
    };
    let watcher = tokio::spawn(volcast_server::watch_market_data(
        state.clone(),
        Duration::from_secs(1),
    ));
    let started = Instant::now();
    let before = loop {
        if let Some(a) = age() {
            break a;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no gauge after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    relay.cut(true);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = age().unwrap();
    assert!(
        after >= before + 8,
        "the gauge went from {before} s to {after} s in 12 s without the store"
    );
    watcher.abort();
}

/// A store cut over midnight: each of the day's passes fails to read it, and none of them uses
/// one of the day's three recalibration tries (they all did, and the model served uncorrected
/// until the next day); once the store is back, the next pass recalibrates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_cut_over_midnight_leaves_the_days_recalibration_tries() {
    use volcast_server::daily::{DailyOptions, DailyState, run_once};
    use volcast_server::ledger::DAY_MS;
    let Some(url) = postgres_url().await else { return };
    let direct = Store::open(&url).await.unwrap();
    let midnight = common::START_MS + 46 * DAY_MS;
    for asset in 0..4 {
        let candles: Vec<_> = common::market(common::START_MS, asset, 48, None)
            .into_iter()
            .filter(|c| c.open_time < midnight)
            .collect();
        direct
            .insert_candles(&format!("A{asset}USDT"), &candles)
            .await
            .unwrap();
    }
    let relay = Relay::start(host_port(&url)).await;
    let store = Store::open(&through(&url, relay.port)).await.unwrap();
    let artifact = common::repo().join("model-artifacts/default");
    let state = common::state_with_store(&artifact, store, FOREVER).await;
    let dir = tempfile::tempdir().unwrap();
    let options = DailyOptions {
        recalibrate: true,
        artifacts_dir: dir.path().join("recalibrated"),
        load: volcast_server::load_options(&common::config()),
        store_deadline: volcast_server::daily::STORE_DEADLINE,
    };
    let mut daily = DailyState::default();
    relay.cut(true);
    // Four passes ten minutes apart, one more than the day's tries.
    for minutes in [1, 11, 21, 31] {
        let pass = run_once(&state, &options, &mut daily, midnight + minutes * 60_000).await;
        assert!(pass.is_err(), "{minutes} min: {pass:?} with the store cut");
    }
    relay.cut(false);
    let pass = run_once(&state, &options, &mut daily, midnight + 41 * 60_000)
        .await
        .unwrap();
    let id = pass.recalibrated.expect("recalibrated once the store is back");
    assert_eq!(state.serving().unwrap().info.metadata.id, id);
    let metrics = state.metrics().render();
    assert!(
        metrics.contains("volcast_model_daily_recalibrations_total{outcome=\"store_unavailable\"} 4")
            && !metrics.contains("outcome=\"failed\""),
        "{metrics}"
    );
}

/// Appends given up one after another behind a lock that is never let go, as the decision log's
/// writer gives up a hung append and sends it again every minute: the store's other users still
/// get connections (each given-up append's connection was kept out of the pool, behind its
/// statement, until the lock went: eight drained the pool), and every such statement ends within
/// seconds of being given up (until stop 60 at the server's lock timeout, 90 s, each give-up
/// adding a backend), none committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_given_up_behind_a_lock_neither_drain_the_pool_nor_wait_forever() {
    use volcast_store::{DecisionRow, NewDecision, POSTGRES_LOCK_TIMEOUT};
    let Some(url) = postgres_url().await else { return };
    let store = Store::open(&url).await.unwrap();
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut blocker = admin.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO decisions (seq, id, at, asset, body, hash, signature, signer) \
         VALUES (1, 'blocker', 0, 'blocker', '', '', '', '')",
    )
    .execute(&mut *blocker)
    .await
    .unwrap();
    let started = Instant::now();
    let record = NewDecision {
        row: DecisionRow {
            seq: 1,
            id: "dec_behind_the_lock".into(),
            at: 1,
            asset: "HELD".into(),
            body: "{}".into(),
            hash: "h1".into(),
            signature: "s".into(),
            signer: "key".into(),
        },
        inputs: None,
        model: None,
    };
    // More than the pool's eight connections, each given up once it waits on the lock.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let append = store.append_decisions(std::slice::from_ref(&record));
        give_up_once_waiting(&admin, "INSERT INTO decisions", &mut seen, append).await;
    }
    let head = tokio::time::timeout(Duration::from_secs(10), store.head()).await;
    assert!(
        matches!(head, Ok(Ok(None))),
        "the store's pool after ten appends given up: {head:?}"
    );
    // Their statements end within seconds of being given up, the lock still held: each backend
    // sees its client gone (`client_connection_check_interval`). They ran on to the server's
    // lock timeout (90 s) before, each give-up adding a backend to the server's count.
    while waiting_on_locks(&admin, "INSERT INTO decisions").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "statements still wait on the lock after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() < POSTGRES_LOCK_TIMEOUT,
        "ended after {:?}, at the lock timeout",
        started.elapsed()
    );
    blocker.rollback().await.unwrap();
    assert_eq!(store.head().await.unwrap(), None, "none of them committed");
}

/// Reads given up one after another behind a lock on their table (a `VACUUM FULL`, an `ALTER`,
/// another replica's migration), as the key watcher gives up its read every 5 s: the store's
/// other users still get connections. Each given-up read's connection went back to the pool
/// through a ping that waited behind the read's own statement, for as long as the lock was held
/// (up to the server's lock timeout): eight such reads drained the pool, and with it the decision
/// log and every asset route, on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_given_up_behind_a_lock_do_not_drain_the_pool() {
    let Some(url) = postgres_url().await else { return };
    let store = Store::open(&url).await.unwrap();
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut blocker = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    // More than the pool's eight connections, each given up once it waits on the lock.
    let started = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        give_up_once_waiting(&admin, "SELECT id, name, scopes", &mut seen, store.keys()).await;
    }
    let other = tokio::time::timeout(Duration::from_secs(10), store.assets()).await;
    assert!(
        matches!(other, Ok(Ok(_))),
        "the store's pool after ten reads given up: {other:?}"
    );
    // And their backends end with them, the lock still held: none is left to wait for it.
    while waiting_on_locks(&admin, "SELECT id, name, scopes").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "reads given up still wait on the lock after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    blocker.rollback().await.unwrap();
    assert!(store.keys().await.unwrap().is_empty());
}

/// A daily pass whose read is left hanging (its connection severed once the query went out: no
/// answer and no reset, ever) is given up after the pass's store deadline, and the job's next
/// passes run. It waited for good, and the whole daily job with it (recalibration, scoring, the
/// gate, the ledger and the anomaly thresholds) until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_pass_left_hanging_on_the_store_is_given_up() {
    use volcast_server::daily::{DailyOptions, DailyState, run_once};
    let Some(url) = postgres_url().await else { return };
    let relay = Relay::start(host_port(&url)).await;
    let store = Store::open(&through(&url, relay.port)).await.unwrap();
    let artifact = common::repo().join("model-artifacts/default");
    let state = common::state_with_store(&artifact, store, FOREVER).await;
    let dir = tempfile::tempdir().unwrap();
    let deadline = Duration::from_secs(5);
    let options = DailyOptions {
        recalibrate: false,
        artifacts_dir: dir.path().to_owned(),
        load: volcast_server::load_options(&common::config()),
        store_deadline: deadline,
    };
    let now = common::START_MS + 10 * volcast_server::ledger::DAY_MS + 60_000;
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE assets IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let pass = {
        let (state, options) = (state.clone(), options.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let pass = run_once(&state, &options, &mut DailyState::default(), now).await;
            (pass, started.elapsed())
        })
    };
    until_waiting(&url, "SELECT").await;
    relay.sever();
    lock.rollback().await.unwrap();
    let Ok(given_up) = tokio::time::timeout(deadline * 4, pass).await else {
        panic!(
            "the pass still waits on its severed read after {:?}",
            deadline * 4
        );
    };
    let (pass, took) = given_up.unwrap();
    assert!(pass.is_err(), "{pass:?}");
    assert!(took >= deadline, "given up after {took:?}");
    // New connections reach the store: a later pass runs (the pool drops its severed idle
    // connections as they fail their checks).
    let started = Instant::now();
    let mut daily = DailyState::default();
    while let Err(e) = run_once(&state, &options, &mut daily, now).await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no pass ran within 60 s of the sever: {e}"
        );
    }
}

/// A replica starting while another session holds a lock its migrations need for longer than
/// the store's lock timeout (another replica's long migration, a backup's lock): it waits and
/// starts once the lock goes. Its migrations ran under the 90 s lock timeout of every store
/// session, and the replica failed to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_wait_past_the_stores_lock_timeout() {
    use volcast_store::POSTGRES_LOCK_TIMEOUT;
    let Some(url) = postgres_url().await else { return };
    drop(Store::open(&url).await.unwrap());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let opening = tokio::spawn({
        let url = url.clone();
        async move { Store::open(&url).await.map(drop) }
    });
    tokio::time::sleep(POSTGRES_LOCK_TIMEOUT + Duration::from_secs(5)).await;
    assert!(!opening.is_finished(), "{:?}", opening.await);
    lock.rollback().await.unwrap();
    let opened = tokio::time::timeout(Duration::from_secs(20), opening).await;
    assert!(matches!(opened, Ok(Ok(Ok(())))), "{opened:?}");
}
