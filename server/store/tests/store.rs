//! The store's contract, on every backend: SQLite always (a temporary file), PostgreSQL when
//! `VOLCAST_TEST_POSTGRES_URL` names a server (`.ci/run` starts a throw-away cluster and sets it).
//! No mocks: each test talks to the real database.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]

use volcast_core::candles::Candle;
use volcast_store::{Backend, CandleStore, LedgerEntry, LedgerStore, Store, StoreError};

const HOUR_MS: i64 = 3_600_000;
const START: i64 = 1_609_459_200_000; // 2021-01-01

fn candles(n: i64, from: i64) -> Vec<Candle> {
    (from..from + n)
        .map(|i| {
            let p = 100.0 + (i % 17) as f64 * 0.1;
            Candle {
                open_time: START + i * HOUR_MS,
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p + 0.5,
                volume: 10.0 + i as f64,
                quote_volume: 1_000.0 + 0.123_456_789_012_345_67 * i as f64,
            }
        })
        .collect()
}

/// The backends under test, each with a fresh store: a new SQLite file in `dir`, and PostgreSQL
/// when configured (its tables are shared, so each test uses its own asset ids).
async fn stores(dir: &std::path::Path) -> Vec<Store> {
    let mut out = vec![
        Store::open(&format!("sqlite://{}", dir.join("nested/volcast.db").display()))
            .await
            .unwrap(),
    ];
    if let Some(url) = postgres_url() {
        out.push(Store::open(&url).await.expect("VOLCAST_TEST_POSTGRES_URL"));
    }
    out
}

/// The test PostgreSQL database's URL, or None with the skip message where none is configured.
fn postgres_url() -> Option<String> {
    let url = std::env::var("VOLCAST_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("VOLCAST_TEST_POSTGRES_URL is not set: PostgreSQL skipped (.ci/run sets it)");
    }
    url
}

#[tokio::test]
async fn insert_is_idempotent_and_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()).await {
        let asset = format!("IDEM{:?}", store.backend());
        let batch = candles(1200, 0);
        assert_eq!(store.insert_candles(&asset, &batch).await.unwrap(), 1200);
        // Again, and overlapping: nothing is stored twice.
        assert_eq!(store.insert_candles(&asset, &batch).await.unwrap(), 0);
        assert_eq!(
            store.insert_candles(&asset, &candles(300, 1100)).await.unwrap(),
            200
        );
        let ranges = store.assets().await.unwrap();
        let range = ranges.iter().find(|r| r.asset == asset).unwrap();
        assert_eq!(range.count, 1400);
        assert_eq!(range.first_open_time, START);
        assert_eq!(range.last_open_time, START + 1399 * HOUR_MS);
        // Pages in time order, bounded, with every number exactly as written.
        let page = store
            .candles(&asset, START + 10 * HOUR_MS, START + 2000 * HOUR_MS, 50)
            .await
            .unwrap();
        assert_eq!(page, candles(50, 10), "{:?}", store.backend());
        assert_eq!(
            store.count(&asset, START, START + 99 * HOUR_MS).await.unwrap(),
            100
        );
        assert!(store.candles("NOSUCH", 0, i64::MAX, 10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_refused_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()).await {
        let asset = format!("ATOMIC{:?}", store.backend());
        let mut batch = candles(800, 0);
        batch[700].close = f64::NAN;
        let err = store.insert_candles(&asset, &batch).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Candle { open_time, .. } if *open_time == START + 700 * HOUR_MS),
            "{err}"
        );
        let mut off = candles(3, 0);
        off[1].open_time += 1;
        assert!(store.insert_candles(&asset, &off).await.is_err());
        assert_eq!(store.count(&asset, 0, i64::MAX).await.unwrap(), 0);
        assert!(store.assets().await.unwrap().iter().all(|r| r.asset != asset));
    }
}

#[tokio::test]
async fn a_reopened_store_keeps_its_data_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("volcast.db").display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.insert_candles("KEEP", &candles(24, 0)).await.unwrap();
    store.close().await;
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.count("KEEP", 0, i64::MAX).await.unwrap(), 24);
    // WAL mode: the write-ahead log sits beside the file.
    again.insert_candles("KEEP", &candles(1, 24)).await.unwrap();
    assert!(dir.path().join("volcast.db-wal").exists());
    assert!(matches!(
        Store::open("mysql://localhost/x").await,
        Err(StoreError::Url { .. })
    ));
    again.close().await;
    // A migration this build does not know, applied by a newer one (a rolling deploy): this
    // build still opens the store.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer build', 1, X'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let newer = Store::open(&url).await.unwrap();
    assert_eq!(newer.count("KEEP", 0, i64::MAX).await.unwrap(), 25);
    newer.close().await;
}

/// Migration 0007 on a ledger recorded before it, where two replicas recorded one origin with
/// two model ids: one entry is kept (the smallest model id's), and the origin is recorded once
/// from then on.
#[tokio::test]
async fn the_ledger_migration_keeps_one_entry_per_asset_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("volcast.db").display());
    Store::open(&url).await.unwrap().close().await;
    // Back to the schema before 0007, with an origin recorded twice.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for q in [
        "DROP INDEX ledger_asset_origin",
        "DELETE FROM _sqlx_migrations WHERE version = 7",
        "INSERT INTO ledger (asset, origin, model_id, record) VALUES ('A', 0, 'M2', '{}'), ('A', 0, 'M1', '{}'), ('A', 1, 'M2', '{}')",
    ] {
        sqlx::query(q).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = Store::open(&url).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT origin, model_id FROM ledger ORDER BY origin")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(rows, [(0, "M1".to_owned()), (1, "M2".to_owned())]);
    let entry = LedgerEntry {
        asset: "A".into(),
        origin: 0,
        model_id: "M3".into(),
        record: "{}".into(),
        outcome: None,
    };
    assert!(!store.record_forecast(&entry).await.unwrap());
}

#[tokio::test]
async fn latest_candles_last_times_and_counts_answer_by_asset() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()).await {
        let (a, b) = (
            format!("LATA{:?}", store.backend()),
            format!("LATB{:?}", store.backend()),
        );
        // A gap: hours 0..100 and 110..200 for `a`; 0..50 for `b`.
        let mut with_gap = candles(100, 0);
        with_gap.extend(candles(90, 110));
        store.insert_candles(&a, &with_gap).await.unwrap();
        store.insert_candles(&b, &candles(50, 0)).await.unwrap();

        // The last n by count, not by time: across the gap, oldest first.
        let last = store.latest_candles(&a, i64::MAX, 95).await.unwrap();
        assert_eq!(last.len(), 95);
        assert_eq!(last[..5], with_gap[95..100]);
        assert_eq!(last[5..], with_gap[100..]);
        // Up to a time.
        let upto = store.latest_candles(&a, START + 99 * HOUR_MS, 10).await.unwrap();
        assert_eq!(upto, with_gap[90..100]);
        assert!(
            store
                .latest_candles("NONE", i64::MAX, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let times = store.last_open_times().await.unwrap();
        assert!(times.contains(&(a.clone(), START + 199 * HOUR_MS)));
        assert!(times.contains(&(b.clone(), START + 49 * HOUR_MS)));

        let counts = store
            .counts(START + 40 * HOUR_MS, START + 119 * HOUR_MS)
            .await
            .unwrap();
        assert!(counts.contains(&(a.clone(), 60 + 10)));
        assert!(counts.contains(&(b.clone(), 10)));
        let none = store
            .counts(START + 1000 * HOUR_MS, START + 2000 * HOUR_MS)
            .await
            .unwrap();
        assert!(none.iter().all(|(x, _)| x != &a && x != &b));
    }
}

#[tokio::test]
async fn the_ledger_records_once_scores_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    for (k, store) in stores(dir.path()).await.into_iter().enumerate() {
        // The PostgreSQL database may hold other runs' entries: this backend's assets and days.
        let (a, b) = (format!("A{k}"), format!("B{k}"));
        let start = START + i64::try_from(k).unwrap() * 10_000 * 24 * HOUR_MS;
        let entry = |asset: &str, day: i64, model: &str| LedgerEntry {
            asset: asset.to_owned(),
            origin: start + day * 24 * HOUR_MS,
            model_id: model.to_owned(),
            record: format!("{{\"day\": {day}}}"),
            outcome: None,
        };
        if k == 0 {
            assert_eq!(store.last_origin().await.unwrap(), None);
        }
        assert!(store.record_forecast(&entry(&a, 0, "M1")).await.unwrap());
        assert!(store.record_forecast(&entry(&b, 0, "M1")).await.unwrap());
        // The next day, recalibrated: another model id, the same ledger.
        assert!(store.record_forecast(&entry(&a, 1, "M2")).await.unwrap());
        // Once per asset and origin: a second record keeps the first, whatever model made it
        // (two replicas, one recalibrated and one not, record the same origin).
        let mut again = entry(&a, 1, "M2");
        again.record = "{\"other\": true}".into();
        assert!(!store.record_forecast(&again).await.unwrap());
        assert!(!store.record_forecast(&entry(&a, 1, "M3")).await.unwrap());
        if k == 0 {
            assert_eq!(store.last_origin().await.unwrap(), Some(start + 24 * HOUR_MS));
        }
        assert_eq!(
            store.recorded_assets(start).await.unwrap(),
            [a.clone(), b.clone()]
        );
        assert_eq!(
            store.recorded_assets(start + 24 * HOUR_MS).await.unwrap(),
            std::slice::from_ref(&a)
        );

        let mine = |v: Vec<LedgerEntry>| {
            v.into_iter()
                .filter(|e| e.asset == a || e.asset == b)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            mine(store.unscored(1000).await.unwrap()),
            [entry(&a, 0, "M1"), entry(&b, 0, "M1"), entry(&a, 1, "M2")]
        );
        // Scored in part: read back among the scored, and still among those to score.
        store
            .set_outcome(&entry(&b, 0, "M1"), "{\"rv\": 0}", true)
            .await
            .unwrap();
        let partial = LedgerEntry {
            outcome: Some("{\"rv\": 0}".into()),
            ..entry(&b, 0, "M1")
        };
        assert_eq!(
            mine(store.unscored(1000).await.unwrap()),
            [entry(&a, 0, "M1"), partial.clone(), entry(&a, 1, "M2")]
        );
        assert_eq!(
            store.scored(start, start + 24 * HOUR_MS).await.unwrap(),
            [partial]
        );
        // Complete: no longer to score.
        store
            .set_outcome(&entry(&b, 0, "M1"), "{\"rv\": 1}", false)
            .await
            .unwrap();
        let scored = store.scored(start, start + 24 * HOUR_MS).await.unwrap();
        assert_eq!(scored.len(), 1);
        assert_eq!(
            (scored[0].asset.as_str(), scored[0].outcome.as_deref()),
            (b.as_str(), Some("{\"rv\": 1}"))
        );
        assert_eq!(
            mine(store.unscored(1000).await.unwrap()),
            [entry(&a, 0, "M1"), entry(&a, 1, "M2")]
        );
        // A replica scoring it a moment before the hour's last candle (in part) does not replace
        // the complete outcome another recorded.
        store
            .set_outcome(&entry(&b, 0, "M1"), "{\"rv\": 0}", true)
            .await
            .unwrap();
        let scored = store.scored(start, start + 24 * HOUR_MS).await.unwrap();
        assert_eq!(scored[0].outcome.as_deref(), Some("{\"rv\": 1}"));
        assert_eq!(
            mine(store.unscored(1000).await.unwrap()),
            [entry(&a, 0, "M1"), entry(&a, 1, "M2")]
        );
        assert!(
            store
                .scored(start + HOUR_MS, start + 100 * HOUR_MS)
                .await
                .unwrap()
                .is_empty()
        );

        // The gate's switches, oldest first; a second at the same time keeps the first.
        store
            .record_switch(start + 48 * HOUR_MS, "model", "back")
            .await
            .unwrap();
        assert!(store.record_switch(start, "fallback_har", "worse").await.unwrap());
        assert!(!store.record_switch(start, "model", "ignored").await.unwrap());
        let switches: Vec<_> = store
            .switches()
            .await
            .unwrap()
            .into_iter()
            .filter(|s| (start..=start + 48 * HOUR_MS).contains(&s.0))
            .collect();
        assert_eq!(
            switches,
            [
                (start, "fallback_har".to_owned(), "worse".to_owned()),
                (start + 48 * HOUR_MS, "model".to_owned(), "back".to_owned())
            ]
        );
    }
    // A restart keeps the ledger and the switches.
    let url = format!("sqlite://{}", dir.path().join("nested/volcast.db").display());
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.last_origin().await.unwrap(), Some(START + 24 * HOUR_MS));
    assert_eq!(again.switches().await.unwrap().len(), 2);
}

#[tokio::test]
async fn api_keys_are_created_listed_and_revoked_once() {
    use volcast_store::{ApiKeyRow, KeyStore as _};
    let dir = tempfile::tempdir().unwrap();
    for (k, store) in stores(dir.path()).await.into_iter().enumerate() {
        let id = format!("ktest{k}{}", START % 1000 + i64::from(std::process::id()));
        let row = ApiKeyRow {
            id: id.clone(),
            name: "bot".into(),
            scopes: "read,risk".into(),
            secret_sha256: "ab".repeat(32),
            created: 5,
            revoked: None,
            rate_per_minute: Some(60),
        };
        store.create_key(&row).await.unwrap();
        assert!(store.create_key(&row).await.is_err(), "ids are unique");
        let listed = store.keys().await.unwrap();
        assert_eq!(listed.iter().find(|r| r.id == id), Some(&row));
        assert!(store.revoke_key(&id, 9).await.unwrap());
        assert!(
            !store.revoke_key(&id, 10).await.unwrap(),
            "revoked once, at the first time"
        );
        assert!(!store.revoke_key("nobody", 10).await.unwrap());
        let after = store.keys().await.unwrap();
        assert_eq!(after.iter().find(|r| r.id == id).unwrap().revoked, Some(9));
    }
}

#[tokio::test]
async fn the_decision_log_appends_in_order_and_refuses_a_taken_sequence_number() {
    use volcast_store::{DecisionRow, DecisionStore as _, NewDecision};
    let dir = tempfile::tempdir().unwrap();
    for (k, store) in stores(dir.path()).await.into_iter().enumerate() {
        // PostgreSQL may hold other runs' records: start from its head.
        let head = store.head().await.unwrap().map_or(0, |(s, _)| s);
        let tag = format!("{k}-{}-{head}", std::process::id());
        let record = |seq: i64, asset: &str, with_refs: bool| NewDecision {
            row: DecisionRow {
                seq,
                id: format!("dec_{tag}_{seq}"),
                at: 1_000 + seq,
                asset: asset.to_owned(),
                body: format!("{{\"seq\":{seq}}}"),
                hash: format!("h{seq}"),
                signature: "s".into(),
                signer: "key".into(),
            },
            inputs: with_refs.then(|| (format!("w{tag}"), "[]".to_owned())),
            model: with_refs.then(|| (format!("m{tag}"), "hash".to_owned(), "/artifacts/m".to_owned())),
        };
        let asset = format!("X{tag}");
        // With its window and artifact (a transaction), then two on their own (one statement).
        store
            .append_decisions(&[record(head + 1, &asset, true)])
            .await
            .unwrap();
        store
            .append_decisions(&[record(head + 2, "OTHER", false), record(head + 3, &asset, false)])
            .await
            .unwrap();
        assert_eq!(
            store.head().await.unwrap(),
            Some((head + 3, format!("h{}", head + 3)))
        );
        // A taken sequence number: a conflict, and nothing of the batch is written, either way.
        for with_refs in [false, true] {
            let taken = store
                .append_decisions(&[
                    record(head + 4, &asset, with_refs),
                    record(head + 3, &asset, with_refs),
                ])
                .await;
            assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
            assert_eq!(store.head().await.unwrap().unwrap().0, head + 3);
        }
        let found = store
            .decision(&format!("dec_{tag}_{}", head + 2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, record(head + 2, "OTHER", false).row);
        assert_eq!(store.decision("dec_none").await.unwrap(), None);
        // From the first (no `after`), the lowest seq an i64 holds included: a row slipped in
        // there is read, not skipped by a strict `seq > i64::MIN`; an explicit `after` stays
        // strict. On SQLite only: the row would stay in a PostgreSQL database kept between runs.
        if store.backend() == Backend::Sqlite {
            store
                .append_decisions(&[record(i64::MIN, &asset, false)])
                .await
                .unwrap();
            let seqs = |after| {
                let store = store.clone();
                let asset = asset.clone();
                async move {
                    let rows = store.decisions(Some(&asset), i64::MIN, i64::MAX, after, 1).await;
                    rows.unwrap().iter().map(|r| r.seq).collect::<Vec<_>>()
                }
            };
            assert_eq!(seqs(None).await, [i64::MIN]);
            assert_eq!(seqs(Some(i64::MIN)).await, [head + 1]);
        }
        // A NUL, which PostgreSQL's text refuses: found nowhere, on either backend.
        assert_eq!(store.decision("dec_\0x").await.unwrap(), None);
        assert!(
            store
                .decisions(Some("\0"), i64::MIN, i64::MAX, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let mine = store
            .decisions(Some(&asset), i64::MIN, i64::MAX, Some(0), 10)
            .await
            .unwrap();
        assert_eq!(
            mine.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [head + 1, head + 3]
        );
        let page = store
            .decisions(None, i64::MIN, i64::MAX, Some(head + 1), 1)
            .await
            .unwrap();
        assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [head + 2]);
        let late = store
            .decisions(None, 1_000 + head + 3, i64::MAX, Some(head), 10)
            .await
            .unwrap();
        assert_eq!(late.iter().map(|r| r.seq).collect::<Vec<_>>(), [head + 3]);
        assert_eq!(
            store
                .decision_inputs(&format!("w{tag}"))
                .await
                .unwrap()
                .as_deref(),
            Some("[]")
        );
        assert_eq!(
            store.decision_model(&format!("m{tag}")).await.unwrap(),
            Some(("hash".to_owned(), "/artifacts/m".to_owned()))
        );
        assert!(
            store
                .decision_model_dirs()
                .await
                .unwrap()
                .contains(&"/artifacts/m".to_owned())
        );
        store
            .record_signing_key(&format!("key{tag}"), "ab", 7)
            .await
            .unwrap();
        store
            .record_signing_key(&format!("key{tag}"), "cd", 8)
            .await
            .unwrap();
        let keys = store.signing_keys().await.unwrap();
        assert!(
            keys.contains(&(format!("key{tag}"), "ab".to_owned(), 7)),
            "the first record is kept"
        );
    }
}

/// Two replicas appending decisions whose candle windows are both new to the store, each in
/// the order its requests came (one X then Y, the other Y then X): both succeed. Each used to hold one window's key while waiting on the other's, a deadlock
/// PostgreSQL broke by aborting one writer's batch (every answer in it withheld). A trigger
/// slows the inserts of these windows so the two transactions overlap.
#[tokio::test]
async fn two_writers_storing_the_same_new_windows_in_opposite_orders_do_not_deadlock() {
    use volcast_store::{DecisionRow, DecisionStore as _, NewDecision};
    let Some(url) = postgres_url() else { return };
    let (a, b) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    for sql in [
        "CREATE OR REPLACE FUNCTION volcast_test_slow_window() RETURNS trigger AS $$ \
         BEGIN IF NEW.hash LIKE 'slow-%' THEN PERFORM pg_sleep(0.3); END IF; RETURN NEW; END $$ \
         LANGUAGE plpgsql",
        "DROP TRIGGER IF EXISTS volcast_test_slow_window ON decision_inputs",
        "CREATE TRIGGER volcast_test_slow_window BEFORE INSERT ON decision_inputs \
         FOR EACH ROW EXECUTE FUNCTION volcast_test_slow_window()",
    ] {
        sqlx::query(sql).execute(&admin).await.unwrap();
    }
    // Far past the head: the other tests of this binary append to the same table meanwhile.
    let head = a.head().await.unwrap().map_or(0, |(s, _)| s) + 1_000_000;
    let tag = format!("{}-{head}", std::process::id());
    let window = |w: &str| Some((format!("slow-{tag}-{w}"), "[]".to_owned()));
    let record = |writer: &str, seq: i64, w: &str| NewDecision {
        row: DecisionRow {
            seq,
            id: format!("dec_{tag}_{writer}_{seq}"),
            at: 1_000 + seq,
            asset: format!("D{tag}"),
            body: "{}".into(),
            hash: format!("h{seq}"),
            signature: "s".into(),
            signer: "key".into(),
        },
        inputs: window(w),
        model: None,
    };
    // Distinct sequence numbers: nothing but the windows can make them wait on each other.
    let first = [record("a", head + 1, "x"), record("a", head + 2, "y")];
    let second = [record("b", head + 3, "y"), record("b", head + 4, "x")];
    let (ra, rb) = tokio::join!(a.append_decisions(&first), b.append_decisions(&second));
    sqlx::query("DROP TRIGGER IF EXISTS volcast_test_slow_window ON decision_inputs")
        .execute(&admin)
        .await
        .unwrap();
    assert!(ra.is_ok() && rb.is_ok(), "{ra:?} {rb:?}");
}

/// A PostgreSQL database whose collation is ICU's en-US (as in the official images' default
/// locale), beside the configured one; `None` with a message where PostgreSQL is not configured
/// or has no ICU.
async fn postgres_with_a_locale_collation() -> Option<Store> {
    let url = std::env::var("VOLCAST_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let name = format!("volcast_icu_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin)
        .await;
    let created = sqlx::query(&format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
    ))
    .execute(&admin)
    .await;
    admin.close().await;
    if let Err(e) = created {
        eprintln!("no ICU collation in this PostgreSQL ({e}): the locale-collation store skipped");
        return None;
    }
    let (base, _) = url.rsplit_once('/').unwrap();
    Some(Store::open(&format!("{base}/{name}")).await.unwrap())
}

/// Lists by asset come back in byte order on every backend, whatever the database's collation:
/// the service binary-searches them (a locale collation puts `aaveusdt` before `BTCUSDT`).
#[tokio::test]
async fn lists_by_asset_are_in_byte_order_whatever_the_collation() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = stores(dir.path()).await;
    all.extend(postgres_with_a_locale_collation().await);
    for (k, store) in all.iter().enumerate() {
        let origin = START + i64::try_from(k).unwrap() * 20_000 * 24 * HOUR_MS + 7 * HOUR_MS;
        for asset in ["aaveusdt", "BTCUSDT", "ZECUSDT", "_under", "zz-lower"] {
            let asset = format!("{asset}{k}");
            store.insert_candles(&asset, &candles(3, 0)).await.unwrap();
            let entry = LedgerEntry {
                asset,
                origin,
                model_id: "M".into(),
                record: "{}".into(),
                outcome: None,
            };
            store.record_forecast(&entry).await.unwrap();
        }
        let sorted = |names: &[String]| names.windows(2).all(|w| w[0] <= w[1]);
        let assets: Vec<String> = store
            .assets()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.asset)
            .collect();
        assert!(sorted(&assets), "{:?}: {assets:?}", store.backend());
        let times: Vec<String> = store
            .last_open_times()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert!(sorted(&times), "{:?}: {times:?}", store.backend());
        let counts: Vec<String> = store
            .counts(START, START + 10 * HOUR_MS)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert!(sorted(&counts), "{:?}: {counts:?}", store.backend());
        let recorded = store.recorded_assets(origin).await.unwrap();
        assert_eq!(recorded.len(), 5);
        assert!(sorted(&recorded), "{:?}: {recorded:?}", store.backend());
    }
}

/// Two processes opening one new SQLite file at once (the server and `ingest` started
/// together): both open it, one migrating it and the other finding it migrated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_opens_of_a_new_sqlite_store_at_once_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    // The race is narrow (the switch to WAL): before the switch was tried again, twenty pairs
    // failed 2 runs in 22, a hundred pairs 5 runs in 8.
    for i in 0..100 {
        let url = format!("sqlite://{}", dir.path().join(format!("race-{i}.db")).display());
        let (a, b) = tokio::join!(Store::open(&url), Store::open(&url));
        let (a, b) = (a.unwrap(), b.unwrap());
        a.insert_candles("RACE", &candles(2, 0)).await.unwrap();
        assert_eq!(b.count("RACE", 0, i64::MAX).await.unwrap(), 2);
        a.close().await;
        b.close().await;
    }
}

/// A store opened while another process holds the file's lock longer than sqlx's own 5 s wait
/// (an `ingest` writing a large batch into a file not yet in WAL mode, or a `sqlite3` shell
/// inside a transaction) waits for it, up to the store's 10 s, rather than failing on the lock.
/// The first connection, before the pool's, waits too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_store_waits_for_another_connections_lock() {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.db");
    let url = format!("sqlite://{}", path.display());
    // A database in SQLite's default rollback-journal mode, locked by a write transaction.
    let mut holder = sqlx::AnyConnection::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE other (x INTEGER)")
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();
    sqlx::query("INSERT INTO other VALUES (1)")
        .execute(&mut holder)
        .await
        .unwrap();
    let held = std::time::Duration::from_millis(6_500);
    let release = tokio::spawn(async move {
        tokio::time::sleep(held).await;
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
        holder.close().await.unwrap();
    });
    let started = std::time::Instant::now();
    let store = Store::open(&url).await.expect("the open waits for the lock");
    assert!(started.elapsed() >= held - std::time::Duration::from_millis(500));
    release.await.unwrap();
    store.insert_candles("HELD", &candles(2, 0)).await.unwrap();
    assert_eq!(store.count("HELD", 0, i64::MAX).await.unwrap(), 2);
    store.close().await;
}

/// On PostgreSQL too, a tool reading an existing store (`verify`, `keys list`) opens one of this
/// build's schema without migrating, and refuses an empty database without creating a table
/// in it (a read-only role could not have created them: the tool failed to open the store).
#[tokio::test]
async fn a_reading_tool_opens_postgres_without_changing_its_schema() {
    let Some(url) = postgres_url() else { return };
    Store::open(&url).await.unwrap().close().await;
    Store::open_existing(&url).await.unwrap().close().await;
    let name = format!("volcast_empty_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin)
        .await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let empty = format!("{base}/{name}");
    let e = Store::open_existing(&empty)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("holds no volcast store"), "{e}");
    let inside = sqlx::PgPool::connect(&empty).await.unwrap();
    let (tables,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'")
            .fetch_one(&inside)
            .await
            .unwrap();
    inside.close().await;
    assert_eq!(tables, 0, "the tool created tables");
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
}

/// Candles given out of time order are stored as given in order (the insert takes their rows in
/// time order, so two writers of overlapping hours never wait on each other's locks): the same
/// rows and the same per-asset range as in order.
#[tokio::test]
async fn candles_out_of_order_are_stored_as_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()).await {
        let asset = format!("REV{:?}", store.backend());
        let batch = candles(50, 0);
        let mut reversed = batch.clone();
        reversed.reverse();
        assert_eq!(store.insert_candles(&asset, &reversed).await.unwrap(), 50);
        assert_eq!(
            store
                .candles(&asset, START, START + 100 * HOUR_MS, 1000)
                .await
                .unwrap(),
            batch
        );
        let range = store.asset(&asset).await.unwrap().unwrap();
        assert_eq!(
            (range.first_open_time, range.last_open_time, range.count),
            (START, START + 49 * HOUR_MS, 50)
        );
    }
}

/// Migration 0008's index on one asset's decisions in log order exists on both backends (the
/// store's unit tests check SQLite's per-asset page reads it).
#[tokio::test]
async fn the_per_asset_decision_index_exists_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("nested/volcast.db");
    let mut urls = vec![format!("sqlite://{}", sqlite.display())];
    urls.extend(postgres_url());
    for store in stores(dir.path()).await {
        store.close().await;
    }
    sqlx::any::install_default_drivers();
    for url in urls {
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let sql = if url.starts_with("sqlite") {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'decisions_asset_seq'"
        } else {
            "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'decisions' AND indexname = 'decisions_asset_seq'"
        };
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        assert_eq!(n, 1, "{}", url.split('@').next_back().unwrap_or_default());
        pool.close().await;
    }
}
