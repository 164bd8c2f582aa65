//! The asset routes answer from the service's own market data: on real shared candles loaded by
//! `ingest`'s code into an SQLite store, `GET /v1/assets/{asset}/risk`, `.../forecast/volatility`
//! and `.../forecast/liquidity` equal the POST routes' answers on the same candles, to the last
//! digit; the listing, paging and errors say what they should; and stale data fails closed with
//! 503 `stale_market_data` while fresh data is served. The committed default artifact serves.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use volcast_core::candles::Candle;
use volcast_core::time::{HOUR_MS, format_ms};
use volcast_store::{CandleStore, Store};
use volcast_training::data::read_file;
use volcast_training::ingest::{candle_files, ingest};

/// Longer than the shared data's age: the parity test forecasts at the data's last hour.
const FOREVER: Duration = Duration::from_secs(100_000 * 86_400);

fn artifact() -> std::path::PathBuf {
    common::repo().join("model-artifacts/default")
}

async fn store_in(dir: &std::path::Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("volcast.db").display()))
        .await
        .unwrap()
}

fn post_body(asset: &str, candles: &[Candle], settings: &Value) -> Value {
    let mut body =
        json!({"asset": asset, "candles": candles.iter().map(common::candle_json).collect::<Vec<_>>()});
    for (k, v) in settings.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_routes_equal_the_post_routes_on_real_stored_candles() {
    let Some(shared) = common::shared_candles() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let assets = ["BTCUSDT", "ETHUSDT", "LINKUSDT"];
    let paths: Vec<_> = assets
        .iter()
        .map(|a| shared.join(format!("{a}.csv.gz")))
        .collect();
    let report = ingest(&store, &candle_files(&paths).unwrap(), &|_| {})
        .await
        .unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    let (app, metrics) = common::app_with_store(&artifact(), store.clone(), FOREVER).await;
    let (status, model, _) = common::call(&app, "GET", "/v1/model", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        model["networks"],
        json!(6),
        "the shipped ensemble: three networks for 4 h and 24 h, three trained apart for the week"
    );
    let history = usize::try_from(model["history_hours"].as_u64().unwrap()).unwrap();

    // The listing: every asset, its range as in its file, servable, and all of the last 30 days
    // missing (the shared data ends in 2021).
    let (status, listing, _) = common::call(&app, "GET", "/v1/assets", None).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["history_hours"], json!(history));
    let listed: Vec<&str> = listing["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["asset"].as_str().unwrap())
        .collect();
    assert_eq!(listed, assets);

    for (asset, path) in assets.iter().zip(&paths) {
        let file = read_file(path).unwrap();
        let status_of = listing["assets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["asset"] == *asset)
            .unwrap();
        assert_eq!(status_of["candles"], json!(file.len()));
        assert_eq!(status_of["first_open_time"], json!(format_ms(file[0].open_time)));
        assert_eq!(
            status_of["last_open_time"],
            json!(format_ms(file.last().unwrap().open_time))
        );
        assert_eq!(status_of["missing_hours_30d"], json!(720));
        assert_eq!(
            (status_of["stale"].clone(), status_of["servable"].clone()),
            (json!(false), json!(true))
        );

        // The same candles the GET routes read: the file's last `history`.
        let window = &file[file.len() - history..];
        let cases = [
            (
                format!(
                    "/v1/assets/{asset}/risk?alpha=0.995&tau_hours=6&tau_user_hours=48&sale_size_usd=250000"
                ),
                "/v1/risk/parameters",
                json!({"alpha": 0.995, "tau_hours": 6.0, "tau_user_hours": 48.0, "sale_size_usd": 250_000.0}),
            ),
            (
                format!("/v1/assets/{asset}/risk"),
                "/v1/risk/parameters",
                json!({}),
            ),
            (
                format!("/v1/assets/{asset}/risk?previous_liquidation_threshold=0.9&max_step=0.02"),
                "/v1/risk/parameters",
                json!({"previous": {"liquidation_threshold": 0.9}, "max_step": 0.02}),
            ),
            (
                format!("/v1/assets/{asset}/forecast/volatility?horizons=24,4"),
                "/v1/forecast/volatility",
                json!({"horizons": [24, 4]}),
            ),
            (
                format!("/v1/assets/{asset}/forecast/liquidity?sale_size_usd=5e5"),
                "/v1/forecast/liquidity",
                json!({"sale_size_usd": 5e5}),
            ),
        ];
        for (get, post, settings) in cases {
            let (status, by_asset, _) = common::call(&app, "GET", &get, None).await;
            assert_eq!(status, 200, "{get}: {by_asset}");
            let (status, posted, _) =
                common::call(&app, "POST", post, Some(&post_body(asset, window, &settings))).await;
            assert_eq!(status, 200, "{post}: {posted}");
            assert_eq!(by_asset, posted, "{get}");
            assert_eq!(
                by_asset["items"][0]["origin"],
                json!(format_ms(file.last().unwrap().open_time + HOUR_MS))
            );
        }
    }
    // A new candle moves the answer (the forecast made before is not reused): the origin is an
    // hour later and the answer equals the POST answer on the new window.
    let btc = read_file(&paths[0]).unwrap();
    let last = *btc.last().unwrap();
    let next = Candle {
        open_time: last.open_time + HOUR_MS,
        open: last.close,
        high: last.close * 1.01,
        low: last.close * 0.97,
        close: last.close * 0.98,
        ..last
    };
    assert_eq!(store.insert_candles("BTCUSDT", &[next]).await.unwrap(), 1);
    let mut extended = btc.clone();
    extended.push(next);
    let (status, by_asset, _) = common::call(&app, "GET", "/v1/assets/BTCUSDT/risk", None).await;
    assert_eq!(status, 200, "{by_asset}");
    let body = post_body("BTCUSDT", &extended[extended.len() - history..], &json!({}));
    let (_, posted, _) = common::call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
    assert_eq!(by_asset, posted);
    assert_eq!(
        by_asset["items"][0]["origin"],
        json!(format_ms(next.open_time + HOUR_MS))
    );

    // The gauge: seconds since BTCUSDT's last candle closed (years, here).
    let rendered = metrics.render();
    let line = rendered
        .lines()
        .find(|l| l.starts_with("volcast_market_data_age_seconds{asset=\"BTCUSDT\"}"))
        .unwrap();
    let age: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(age > 4.0 * 365.0 * 86_400.0, "{line}");

    // Paging through stored candles gives the file's (and the new one), with the next page's
    // start.
    let btc = extended;
    let start = btc.len() - 30;
    let uri = format!(
        "/v1/assets/BTCUSDT/candles?from={}&limit=20",
        btc[start].open_time
    );
    let (status, page, _) = common::call(&app, "GET", &uri, None).await;
    assert_eq!(status, 200, "{page}");
    let want: Vec<Value> = btc[start..start + 20].iter().map(common::candle_json).collect();
    assert_eq!(page["candles"], json!(want));
    assert_eq!(page["next_from"], json!(format_ms(btc[start + 20].open_time)));
    let uri = format!(
        "/v1/assets/BTCUSDT/candles?from={}",
        page["next_from"].as_str().unwrap()
    );
    let (_, rest, _) = common::call(&app, "GET", &uri, None).await;
    let want: Vec<Value> = btc[start + 20..].iter().map(common::candle_json).collect();
    assert_eq!(
        (rest["candles"].clone(), rest["next_from"].clone()),
        (json!(want), Value::Null)
    );
    let (_, latest, _) = common::call(&app, "GET", "/v1/assets/BTCUSDT/candles?limit=3", None).await;
    let want: Vec<Value> = btc[btc.len() - 3..].iter().map(common::candle_json).collect();
    assert_eq!(latest["candles"], json!(want));
}

async fn call_error(app: &axum::Router, uri: &str) -> (u16, String, Value) {
    let (status, body, _) = common::call(app, "GET", uri, None).await;
    (
        status.as_u16(),
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["field"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_data_is_served_and_stale_data_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    // FRESH's last candle closed at the current hour; STALE's closed 3 hours ago (over 2 h).
    let fresh = common::sample_ending(1, 1000);
    let stale = common::sample_ending(4, 1000);
    store.insert_candles("FRESH", &fresh).await.unwrap();
    store.insert_candles("STALE", &stale).await.unwrap();
    store.insert_candles("SHORT", &fresh[900..]).await.unwrap();
    // FLAT's last three hours show no trading (no price range): SPEC's degenerate-market rule.
    let mut flat = fresh.clone();
    for c in flat.iter_mut().rev().take(3) {
        (c.high, c.low, c.close) = (c.open, c.open, c.open);
    }
    store.insert_candles("FLAT", &flat).await.unwrap();
    let (app, _) = common::app_with_store(&artifact(), store, Duration::from_secs(7200)).await;

    let (status, body, _) = common::call(&app, "GET", "/v1/assets/FRESH/risk", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = common::call(&app, "GET", "/v1/assets/STALE/risk", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "stale_market_data");
    let last = format_ms(stale.last().unwrap().open_time);
    assert!(body["message"].as_str().unwrap().contains(&last), "{body}");
    for route in ["forecast/volatility", "forecast/liquidity"] {
        let (status, _, _) = call_error(&app, &format!("/v1/assets/STALE/{route}")).await;
        assert_eq!(status, 503, "{route}");
    }
    // Stored candles stay readable: staleness is about forecasting on them.
    let (status, _, _) = common::call(&app, "GET", "/v1/assets/STALE/candles?limit=5", None).await;
    assert_eq!(status, 200);

    let (_, listing, _) = common::call(&app, "GET", "/v1/assets", None).await;
    let by_id = |id: &str| {
        listing["assets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["asset"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            by_id("FRESH")["stale"].clone(),
            by_id("FRESH")["servable"].clone()
        ),
        (json!(false), json!(true))
    );
    // The 720 closed hours before now, less those stored (the sample has a few gaps of its own).
    let now_hour = volcast_server::routes::assets::now_ms().div_euclid(HOUR_MS) * HOUR_MS;
    let missing = |c: &[Candle]| {
        720 - c
            .iter()
            .filter(|c| (now_hour - 720 * HOUR_MS..now_hour).contains(&c.open_time))
            .count()
    };
    assert!(missing(&stale) >= 3);
    assert_eq!(by_id("FRESH")["missing_hours_30d"], json!(missing(&fresh)));
    assert_eq!(
        (
            by_id("STALE")["stale"].clone(),
            by_id("STALE")["servable"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(by_id("STALE")["missing_hours_30d"], json!(missing(&stale)));
    assert_eq!(by_id("SHORT")["servable"], json!(false));
    assert!(by_id("SHORT")["reason"].as_str().unwrap().contains("100 candles"));
    assert_eq!(by_id("FLAT")["servable"], json!(false));
    assert!(
        by_id("FLAT")["reason"]
            .as_str()
            .unwrap()
            .contains("show no trading"),
        "{listing}"
    );

    // Client mistakes, each in our error format; and what the store lacks, which is no
    // client's mistake (these two answered 422 `too_few_candles` on field `candles`, which the
    // caller never sent).
    let cases: [(&str, u16, &str, Value); 10] = [
        ("/v1/assets/NOPE/risk", 404, "unknown_asset", Value::Null),
        ("/v1/assets/NOPE/candles", 404, "unknown_asset", Value::Null),
        ("/v1/assets/SHORT/risk", 503, "stored_data_unusable", Value::Null),
        ("/v1/assets/FLAT/risk", 503, "stored_data_unusable", Value::Null),
        (
            "/v1/assets/FRESH/risk?alpah=0.99",
            400,
            "invalid_query",
            json!("alpah"),
        ),
        (
            "/v1/assets/FRESH/risk?alpha=abc",
            400,
            "invalid_query",
            json!("alpha"),
        ),
        (
            "/v1/assets/FRESH/risk?alpha=2",
            422,
            "out_of_range",
            json!("alpha"),
        ),
        (
            "/v1/assets/FRESH/forecast/volatility?horizons=4,x",
            400,
            "invalid_query",
            json!("horizons"),
        ),
        (
            "/v1/assets/FRESH/forecast/volatility?horizons=5",
            422,
            "unknown_horizon",
            json!("horizons[0]"),
        ),
        (
            "/v1/assets/FRESH/candles?limit=0",
            422,
            "out_of_range",
            json!("limit"),
        ),
    ];
    for (uri, status, code, field) in cases {
        assert_eq!(
            call_error(&app, uri).await,
            (status, code.to_owned(), field),
            "{uri}"
        );
    }
    // Said of the store, with the POST routes' reason.
    let (_, short, _) = common::call(&app, "GET", "/v1/assets/SHORT/risk", None).await;
    let message = short["message"].as_str().unwrap();
    assert!(
        message.starts_with("the stored candles of SHORT cannot be served: ")
            && message.contains("100 hours"),
        "{short}"
    );
    let (status, code, field) =
        call_error(&app, "/v1/assets/FRESH/candles?from=2024-02-01&to=2024-01-01").await;
    assert_eq!(
        (status, code.as_str(), field),
        (422, "invalid_value", json!("from"))
    );
    let (status, code, _) = call_error(&app, &format!("/v1/assets/{}/risk", "X".repeat(65))).await;
    assert_eq!((status, code.as_str()), (422, "invalid_value"));
}

#[tokio::test]
async fn without_a_store_the_asset_routes_say_so() {
    let (app, _) = common::app_on(&artifact()).await;
    for uri in [
        "/v1/assets",
        "/v1/assets/BTCUSDT/risk",
        "/v1/assets/BTCUSDT/candles",
    ] {
        let (status, code, _) = call_error(&app, uri).await;
        assert_eq!((status, code.as_str()), (503, "store_unavailable"), "{uri}");
    }
    // The query's own mistake is said first, store or none.
    let (status, code, field) = call_error(&app, "/v1/assets/BTCUSDT/candles?from=garbage").await;
    assert_eq!(
        (status, code.as_str(), field),
        (400, "invalid_query", json!("from"))
    );
}

/// One stored hour missing among the last four leaves the 4 h illiquidity (SPEC's M_4: 90% of
/// four hours is all four returns) unknown while the forecast still stands. The default risk
/// answer (tau 4 h reads the 4 h horizon, and a sale is priced) is refused as the store's fault
/// (503 `stored_data_unusable`: the caller sent no candles, so no 422 on field `candles`), with a
/// reason that names the missing return and only the remedies that apply (no "shorter tau":
/// there is no shorter horizon); a query that needs no 4 h illiquidity is answered. A `max_step`
/// without `previous_*` is refused (it bounds nothing). HEAD with a query on a GET route that
/// reads one answers as GET does (it was refused 400 `invalid_query`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_hour_missing_at_the_liquidity_horizon_is_the_stores_fault() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let mut gap = common::sample_ending(1, 1000);
    let n = gap.len();
    assert_eq!(
        gap[n - 1].open_time - gap[n - 4].open_time,
        3 * HOUR_MS,
        "the sample's last four hours are all there"
    );
    gap.remove(n - 3);
    store.insert_candles("GAP", &gap).await.unwrap();
    let (app, _) = common::app_with_store(&artifact(), store, Duration::from_secs(7200)).await;

    for uri in ["/v1/assets/GAP/risk", "/v1/assets/GAP/risk/updates"] {
        let (status, body, _) = common::call(&app, "GET", uri, None).await;
        assert_eq!(
            (status.as_u16(), &body["error"], &body["field"]),
            (503, &json!("stored_data_unusable"), &Value::Null),
            "{uri}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        for said in [
            "the stored candles of GAP cannot be served",
            "4 h liquidity horizon",
            "both a return (the hour and the one before it present) and quote volume",
            "sale_size_usd 0 needs none",
            "another liquidity horizon (24, 168 h",
        ] {
            assert!(message.contains(said), "{said}: {body}");
        }
        assert!(!message.contains("shorter"), "{body}");
    }
    // A step bound with no previous value bounds nothing: refused before any forecast.
    let (status, body, _) = common::call(&app, "GET", "/v1/assets/GAP/risk?max_step=0.02", None).await;
    assert_eq!(
        (status.as_u16(), &body["error"], &body["field"]),
        (422, &json!("invalid_value"), &json!("max_step")),
        "{body}"
    );
    for query in [
        "sale_size_usd=0",
        "tau_hours=5",
        "sale_size_usd=0&max_step=0.02&previous_max_ltv=0.5",
    ] {
        let (status, body, _) =
            common::call(&app, "GET", &format!("/v1/assets/GAP/risk?{query}"), None).await;
        assert_eq!(status, 200, "{query}: {body}");
    }
    // The POST route on the same window: the caller's candles, so 422 on them.
    let posted = post_body("GAP", &gap[gap.len() - 900..], &json!({}));
    let (status, body, _) = common::call(&app, "POST", "/v1/risk/parameters", Some(&posted)).await;
    assert_eq!(
        (status.as_u16(), &body["error"], &body["field"]),
        (422, &json!("unusable_input"), &json!("candles")),
        "{body}"
    );

    for uri in [
        "/v1/assets/GAP/candles?limit=5",
        "/v1/assets/GAP/forecast/volatility?horizons=4",
        "/v1/decisions?limit=5",
    ] {
        let (head, _, _) = common::call(&app, "HEAD", uri, None).await;
        let (get, body, _) = common::call(&app, "GET", uri, None).await;
        assert_eq!(head, get, "{uri}: {body}");
        assert_ne!(head, 400, "{uri}: {body}");
    }
    let (status, body, _) = common::call(&app, "HEAD", "/v1/model?x=1", None).await;
    assert_eq!(
        status, 400,
        "a route that reads no query still refuses one: {body}"
    );
}

/// A query mistake on the stored risk routes is answered 422 while the model is still loading,
/// not 503 `model_not_ready` (a client retried a request that could never succeed).
#[tokio::test]
async fn a_bad_query_is_refused_before_the_model_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let config = volcast_server::Config::with_artifact(artifact()).unwrap();
    let state = volcast_server::state::AppState::with_store(
        volcast_server::state::Settings::from_config(&config).unwrap(),
        std::sync::Arc::new(volcast_server::metrics::Metrics::new()),
        Some(store_in(dir.path()).await),
    );
    let app = volcast_server::app(state);
    for uri in [
        "/v1/assets/BTCUSDT/risk?alpha=5",
        "/v1/assets/BTCUSDT/risk/updates?alpha=5",
        "/v1/assets/BTCUSDT/forecast/liquidity?sale_size_usd=-5",
    ] {
        let (status, code, _) = call_error(&app, uri).await;
        assert_eq!((status, code.as_str()), (422, "out_of_range"), "{uri}");
    }
    // An asset id no asset can have, on every stored-forecast route.
    let long = "X".repeat(65);
    for route in [
        "risk",
        "risk/updates",
        "forecast/volatility",
        "forecast/liquidity",
    ] {
        let uri = format!("/v1/assets/{long}/{route}");
        let (status, code, _) = call_error(&app, &uri).await;
        assert_eq!((status, code.as_str()), (422, "invalid_value"), "{uri}");
    }
    let (status, code, _) = call_error(&app, "/v1/assets/BTCUSDT/risk").await;
    assert_eq!((status, code.as_str()), (503, "model_not_ready"));
}
