//! Handler tests, in-process (`tower::ServiceExt::oneshot`) on a fake model: every route's happy
//! path, readiness, 429, timeout, body limit, request ids and metrics (bad input: `bad_input.rs`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{app, app_serving, app_with, call, candles, config, info, raw, single, with_quote_volume};
use serde_json::json;

const N: usize = 900;

#[tokio::test]
async fn volatility_single_and_batch() {
    let app = app();
    let (s, v, h) = call(&app, "POST", "/v1/forecast/volatility", Some(&single(N))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(h.contains_key("x-request-id"));
    assert_eq!(v["model"]["id"], "fake0123456789ab");
    assert_eq!(v["model"]["hash"].as_str().unwrap().len(), 64);
    let hs = v["items"][0]["horizons"].as_array().unwrap();
    assert_eq!(hs.len(), 3);
    let h24 = &hs[1];
    assert_eq!(h24["horizon_hours"], 24);
    let var = h24["variance"].as_f64().unwrap();
    assert!((h24["annualized_volatility"].as_f64().unwrap() - (var * 8760.0 / 24.0).sqrt()).abs() < 1e-12);
    assert_eq!(h24["quantiles"].as_array().unwrap().len(), 4);
    assert!(h24["har"]["variance"].as_f64().unwrap() > 0.0);
    assert_eq!(h24["served"], "model");

    let batch = json!({"items": [single(N), single(N + 5)], "horizons": [168, 4]});
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&batch)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let hs: Vec<i64> = v["items"][1]["horizons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["horizon_hours"].as_i64().unwrap())
        .collect();
    assert_eq!(hs, vec![168, 4]);
}

#[tokio::test]
async fn liquidity_reports_slippage_for_the_sale_size() {
    let app = app();
    let mut body = single(N);
    body["sale_size_usd"] = json!(2_000_000.0);
    let (s, v, _) = call(&app, "POST", "/v1/forecast/liquidity", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let h = &v["items"][0]["horizons"][1];
    let p = h["shortage_probability"].as_f64().unwrap();
    let cur = h["current_illiquidity"].as_f64().unwrap();
    let exp = h["expected_illiquidity"].as_f64().unwrap();
    assert!((exp - cur * (1.0 + p)).abs() < 1e-12);
    assert!((h["expected_slippage"].as_f64().unwrap() - exp * 2.0).abs() < 1e-12);
    assert!(h["baseline_shortage_probability"].as_f64().is_some());
    assert_eq!(h["liquidation_blocked"], false, "{h}");
    // A sale so large its slippage passes 1 (linear in the size: 5,913% was shown as if valid)
    // is said to be blocked, as the risk routes treat it.
    body["sale_size_usd"] = json!(2_000_000.0 * 2.0 / h["expected_slippage"].as_f64().unwrap());
    let (s, v, _) = call(&app, "POST", "/v1/forecast/liquidity", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let h = &v["items"][0]["horizons"][1];
    assert!(h["expected_slippage"].as_f64().unwrap() > 1.5, "{h}");
    assert_eq!(h["liquidation_blocked"], true, "{h}");
}

/// With a shortage stack in the corrections (the daily job's, `adaptive.shortage_stack`), the
/// served probability is the stack of the network's (the fake's 0.1 / 0.2 / 0.3) and the
/// baseline score's; horizons without coefficients serve the network's.
#[tokio::test]
async fn the_served_shortage_probability_is_stacked_where_the_corrections_say() {
    let k = [-0.5, 0.8, 0.3];
    let mut info = info();
    info.metadata.recalibration.as_mut().unwrap().shortage_stack = BTreeMap::from([(24, k)]);
    let app = app_serving(info, &config(), Duration::ZERO);
    let (s, v, _) = call(&app, "POST", "/v1/forecast/liquidity", Some(&single(N))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let hs = v["items"][0]["horizons"].as_array().unwrap();
    let at = |h: i64| hs.iter().find(|x| x["horizon_hours"] == h).unwrap();
    assert_eq!(at(4)["shortage_probability"], 0.1);
    assert_eq!(at(168)["shortage_probability"], 0.3);
    // The baseline's probability is sigmoid(-2 + ln score) (the fake's logistic map): the
    // score, back from it.
    let pb = at(24)["baseline_shortage_probability"].as_f64().unwrap();
    let score = ((pb / (1.0 - pb)).ln() + 2.0).exp();
    let want = volcast_model::artifact::stacked_probability(k, 0.2, score);
    let got = at(24)["shortage_probability"].as_f64().unwrap();
    assert!(
        (got - want).abs() < 1e-9 && (got - 0.2).abs() > 1e-3,
        "{got} vs {want}"
    );
}

/// With a term structure (`{168: 24}`), the served week is HAR's week times the network's day
/// over HAR's day (the fake's 6e-4 at 24 h), times the ratio of the two horizons' variance
/// factors, and the week's quantiles move with it; 4 h and 24 h are the network's. The model
/// card says so; an artifact without one says nothing.
#[tokio::test]
async fn a_carried_week_is_hars_week_moved_by_the_networks_day() {
    let (_, plain, _) = call(&app(), "GET", "/v1/model", None).await;
    assert!(plain.get("term_structure").is_none(), "{plain}");
    let mut info = info();
    info.metadata.term_structure = BTreeMap::from([(168, 24)]);
    let r = info.metadata.recalibration.as_mut().unwrap();
    r.variance_scale = BTreeMap::from([(24, 1.25), (168, 0.8)]);
    let app = app_serving(info, &config(), Duration::ZERO);
    let (s, card, _) = call(&app, "GET", "/v1/model", None).await;
    assert_eq!(s, StatusCode::OK, "{card}");
    assert_eq!(card["term_structure"]["168"], 24);
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&single(N))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let hs = v["items"][0]["horizons"].as_array().unwrap();
    let at = |h: i64| hs.iter().find(|x| x["horizon_hours"] == h).unwrap();
    let num = |x: &serde_json::Value| x.as_f64().unwrap();
    let har = |h: i64| num(&at(h)["har"]["variance"]);
    // The fake serves its numbers as corrected: the served week is the carry of those.
    let want = 0.8 / 1.25 * har(168) * 6e-4 / har(24);
    let got = num(&at(168)["variance"]);
    assert!(
        (got / want - 1.0).abs() < 1e-9 && (got / 4e-3 - 1.0).abs() > 1e-3,
        "{got} vs {want}"
    );
    let moved = got / 4e-3;
    for (q, fake) in at(168)["quantiles"]
        .as_array()
        .unwrap()
        .iter()
        .zip([1e-3, 3e-3, 1e-2, 2e-2])
    {
        assert!((num(&q["variance"]) / (fake * moved) - 1.0).abs() < 1e-9, "{q}");
    }
    assert_eq!(num(&at(24)["variance"]), 6e-4);
    assert_eq!(num(&at(4)["variance"]), 1e-4);
}

/// The model card shows the HAR guard: the setting, and the horizons where it serves HAR today
/// with the weight the rule had chosen; absent where the artifact has none. Likewise the
/// weight's growing window.
#[tokio::test]
async fn the_model_card_shows_the_har_guard() {
    let (_, plain, _) = call(&app(), "GET", "/v1/model", None).await;
    assert!(plain["recalibration"].get("har_guarded").is_none(), "{plain}");
    let mut info = info();
    let r = info.metadata.recalibration.as_mut().unwrap();
    r.har_weight = BTreeMap::from([(4, 0.0)]);
    r.har_guarded = BTreeMap::from([(4, 0.7)]);
    r.adaptive = Some(volcast_model::artifact::Adaptive {
        har_guard: true,
        blend_window_max_days: Some(365),
        ..volcast_model::artifact::Adaptive::default()
    });
    let app = app_serving(info, &config(), Duration::ZERO);
    let (s, card, _) = call(&app, "GET", "/v1/model", None).await;
    assert_eq!(s, StatusCode::OK, "{card}");
    assert_eq!(card["recalibration"]["har_weight"]["4"], 0.0);
    assert_eq!(card["recalibration"]["har_guarded"]["4"], 0.7);
    assert_eq!(card["recalibration"]["adaptive"]["har_guard"], true);
    assert_eq!(card["recalibration"]["adaptive"]["blend_window_max_days"], 365);
    assert!(
        plain["recalibration"]
            .get("adaptive")
            .is_none_or(|a| a.get("blend_window_max_days").is_none()),
        "{plain}"
    );
}

#[tokio::test]
async fn risk_parameters_keep_the_invariants_and_explain_themselves() {
    let app = app();
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&single(N))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let item = &v["items"][0];
    let p = &item["parameters"];
    let lt = p["liquidation_threshold"].as_f64().unwrap();
    let lb = p["liquidation_bonus"].as_f64().unwrap();
    let ltv = p["max_ltv"].as_f64().unwrap();
    assert!(lt * (1.0 + lb) <= 1.0 + 1e-12 && (0.0..=lt).contains(&ltv));
    let d = &item["derivation"];
    assert_eq!(d["alpha"], 0.99);
    assert_eq!(d["liquidity_horizon_hours"], 4);
    assert!((d["tau_effective_hours"].as_f64().unwrap() - 4.0 * 1.1).abs() < 1e-12);
    // The margins: maintenance D(alpha, tau_eff), initial the larger of D(alpha, tau_user) and
    // it; the user's reaction window (a day by default) is longer than tau_eff (4.4 h), so its
    // fall is the larger here, taken at its own window.
    let (dd, dd_user) = (
        d["drawdown"].as_f64().unwrap(),
        d["drawdown_user"].as_f64().unwrap(),
    );
    assert!((p["maintenance_margin"].as_f64().unwrap() - dd).abs() < 1e-15);
    let initial = p["initial_margin"].as_f64().unwrap();
    assert!(dd_user > dd);
    assert!((initial - dd_user).abs() < 1e-15);
    assert_eq!(d["initial_margin_hours"], d["drawdown_user_hours"]);
    assert_eq!(d["tau_user_hours"], 24.0);
    assert!(
        p["maintenance_margin"].as_f64().unwrap() < initial && initial < 1.0,
        "{p}"
    );
    assert!(d["har_reflection"]["liquidation_threshold"].as_f64().is_some());
    assert!(
        d["har_plain_normal"]["drawdown"].as_f64().unwrap()
            < d["har_reflection"]["drawdown"].as_f64().unwrap()
    );
    assert_eq!(d["forecasts"].as_array().unwrap().len(), 3);

    // A bounded change from a previous value.
    let mut body = single(N);
    body["previous"] = json!({"liquidation_threshold": 0.5, "max_ltv": 0.4});
    body["max_step"] = json!(0.05);
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let p = &v["items"][0]["parameters"];
    assert!((p["liquidation_threshold"].as_f64().unwrap() - 0.525).abs() < 1e-12);
    assert!((p["max_ltv"].as_f64().unwrap() - 0.42).abs() < 1e-12);
    assert_eq!(v["items"][0]["derivation"]["step_limited"], true);
    // As update records, only a value the step held back says so: here max LTV alone (no
    // previous threshold), never the bonus (each said the asset's flag until stop 65).
    body["previous"] = json!({"max_ltv": 0.4});
    let (s, v, _) = call(&app, "POST", "/v1/risk/updates", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let held: Vec<(&str, &serde_json::Value)> = v["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["update_type"].as_str().unwrap(),
                &u["additional_data"]["step_limited"],
            )
        })
        .collect();
    assert_eq!(
        held,
        [
            ("liquidation_threshold", &json!(false)),
            ("max_ltv", &json!(true)),
            ("liquidation_bonus", &json!(false))
        ],
        "{v}"
    );
    assert!(
        v["updates"][0]["reference_id"].is_null(),
        "not logged without a store: {v}"
    );
}

#[tokio::test]
async fn risk_parameters_use_the_artifacts_calibrated_drawdown() {
    use volcast_core::drawdown::{DrawdownCalibration, WindowCalibration};
    use volcast_model::artifact::RiskCalibration;
    let window = |tau| WindowCalibration {
        tau,
        n: 10_000,
        quantiles: vec![(0.5, 0.8), (0.99, 4.0), (0.999, 8.0)],
        tail_index: 0.3,
        miscoverage_factor: 1.0,
    };
    let calibration = DrawdownCalibration {
        from: "2023-01-01T00:00:00Z".into(),
        until: "2024-01-01T00:00:00Z".into(),
        stride_hours: 5,
        exponent: 0.6,
        windows: vec![window(1), window(168)],
    };
    let mut served = info();
    served.metadata.risk = Some(RiskCalibration {
        model: calibration.clone(),
        har: Some(calibration),
    });
    let calibrated = app_serving(served, &config(), Duration::ZERO);
    let (s, v, _) = call(&calibrated, "POST", "/v1/risk/parameters", Some(&single(N))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["items"][0]["derivation"];
    assert_eq!(d["drawdown_rule"], "calibrated");
    assert_eq!(
        d["calibration_window"],
        "2023-01-01T00:00:00Z .. 2024-01-01T00:00:00Z"
    );
    // u at alpha 0.99 is 4.0 at every tau: D = 1 - exp(-4 sqrt(V(tau_eff))^0.6).
    assert!((d["drawdown_multiplier"].as_f64().unwrap() - 4.0).abs() < 1e-12);
    assert!((d["drawdown_exponent"].as_f64().unwrap() - 0.6).abs() < 1e-12);
    // The variance where D was reached: `tau_eff` itself on this rising curve.
    let v_tau = d["drawdown_variance"].as_f64().unwrap();
    assert_eq!(d["drawdown_hours"], d["tau_effective_hours"]);
    assert_eq!(d["drawdown_variance"], d["variance_tau"]);
    let want = 1.0 - (-4.0 * v_tau.sqrt().powf(0.6)).exp();
    assert!((d["drawdown"].as_f64().unwrap() - want).abs() < 1e-12);
    // The HAR comparison uses HAR's own calibration, fatter than the reflection rule here.
    assert!(
        d["har_calibrated"]["drawdown"].as_f64().unwrap() > d["har_reflection"]["drawdown"].as_f64().unwrap()
    );

    // Without a calibration: the reflection rule, z_0.995.
    let (_, v, _) = call(&app(), "POST", "/v1/risk/parameters", Some(&single(N))).await;
    let d = &v["items"][0]["derivation"];
    assert_eq!(d["drawdown_rule"], "reflection-normal");
    assert!((d["drawdown_multiplier"].as_f64().unwrap() - 2.575_829_303_548_9).abs() < 1e-9);
    assert_eq!(d["drawdown_exponent"], 1.0);
    assert!(d["har_calibrated"].is_null());
}

#[tokio::test]
async fn model_card_health_readiness_metrics() {
    let app = app();
    let (s, v, _) = call(&app, "GET", "/v1/model", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["history_hours"], 889);
    assert_eq!(v["features"]["window_hours"], 32);
    assert_eq!(v["model"]["id"], "fake0123456789ab");
    assert_eq!(v["networks"], 1, "a single network's artifact");
    assert_eq!(v["recalibration"]["until"], "2024-01-01T00:00:00Z");
    assert_eq!(v["recalibration"]["rolling_days"], 120);
    assert_eq!(v["recalibration"]["variance_scale"]["4"], 1.0);
    assert_eq!(
        v["recalibration"]["variance_power"]["4"], 1.0,
        "the power the scale is applied at"
    );
    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK);
    let (s, v, _) = call(&app, "GET", "/readyz", None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ready")));
    let (s, v, _) = call(&app, "GET", "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["paths"]["/v1/risk/parameters"].is_object());
    let (s, _, _) = call(&app, "GET", "/docs/", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v, _) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().unwrap();
    assert!(text.contains(r#"route="/v1/model""#), "{text}");
    assert!(text.contains("volcast_model_ready 1"), "{text}");
    // 2024-01-01T00:00:00Z.
    assert!(
        text.contains("volcast_model_recalibrated_until_seconds 1704067200"),
        "{text}"
    );
}

#[tokio::test]
async fn not_ready_until_the_model_is_set() {
    use std::sync::Arc;
    let c = config();
    let state = volcast_server::state::AppState::new(
        volcast_server::state::Settings::from_config(&c).unwrap(),
        Arc::new(volcast_server::metrics::Metrics::new()),
    );
    let app = volcast_server::app(state);
    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(
        call(&app, "GET", "/readyz", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&single(N))).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("model_not_ready"))
    );
}
/// A body declared larger than the limit, over a socket, none of it sent: 413 at once. It was
/// read until the request's timeout and answered 503 `timeout` after 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_over_the_limit_is_413_at_once() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = app_with(&config(), Duration::ZERO);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    for length in ["16777217", "100000000000"] {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/forecast/volatility HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n{{"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), socket.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            read.is_ok(),
            "no answer within 3 s to Content-Length {length}: {answer}"
        );
        assert!(
            answer.starts_with("HTTP/1.1 413") && answer.contains("payload_too_large"),
            "Content-Length {length}: {answer}"
        );
    }
    server.abort();
}

#[tokio::test]
async fn oversized_body_is_413() {
    let mut c = config();
    c.max_body_bytes = 10_000;
    let app = app_with(&c, Duration::ZERO);
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&single(N))).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    let mut c = config();
    c.max_candles = 500;
    let app = app_with(&c, Duration::ZERO);
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&single(N))).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (413, Some("too_many_candles")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429_with_retry_after() {
    let mut c = config();
    c.queue_capacity = 1;
    c.max_batch = 1;
    c.retry_after_s = 3;
    let app = app_with(&c, Duration::from_millis(300));
    let body = single(N);
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { call(&app, "POST", "/v1/risk/parameters", Some(&body)).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in calls {
        let (s, v, h) = t.await.unwrap();
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(v["error"], "queue_full");
            assert_eq!(h["retry-after"], "3");
        }
        statuses.push(s.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[tokio::test]
async fn slow_model_times_out_with_503() {
    let mut c = config();
    c.request_timeout_ms = 50;
    let app = app_with(&c, Duration::from_millis(400));
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&single(N))).await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (503, Some("timeout")), "{v}");
}

/// A forward pass that runs past three request timeouts (and a second) makes `/readyz` 503
/// `stuck` (a load balancer stops sending requests that would all time out), and ready again
/// once it ends.
#[tokio::test]
async fn readyz_says_stuck_while_a_forward_pass_outlasts_three_request_timeouts() {
    let mut c = config();
    c.request_timeout_ms = 50;
    let app = app_with(&c, Duration::from_millis(2_000));
    let sent = std::time::Instant::now();
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&single(N))).await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (503, Some("timeout")), "{v}");
    // Polled, not read at fixed times: on a busy machine the pass starts late, and its stuck
    // stretch (from max(3 x 50 ms, 1 s) to 2 s after it starts) moves with it.
    let mut stuck_at = None;
    loop {
        let (s, v, _) = call(&app, "GET", "/readyz", None).await;
        let waited = sent.elapsed();
        match (s.as_u16(), v["status"].as_str(), stuck_at) {
            (200, Some("ready"), None) => {}
            (503, Some("stuck"), _) => {
                assert!(v["model"]["id"].is_string(), "{v}");
                stuck_at.get_or_insert(waited);
                let text = metrics_text(&app).await;
                assert!(text.contains("volcast_model_ready 0"), "{text}");
            }
            // Ready again once the pass ended.
            (200, Some("ready"), Some(_)) => {
                let text = metrics_text(&app).await;
                assert!(text.contains("volcast_model_ready 1"), "{text}");
                break;
            }
            _ => panic!("{s} {v} after {waited:?}"),
        }
        assert!(
            waited < Duration::from_secs(10),
            "not stuck and then ready within 10 s: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not before a second (three timeouts are less).
    let stuck_at = stuck_at.unwrap();
    assert!(stuck_at >= Duration::from_secs(1), "stuck after {stuck_at:?}");
    assert!(sent.elapsed() >= Duration::from_millis(2_000));
}

/// `/metrics`' text.
async fn metrics_text(app: &axum::Router) -> String {
    let (s, v, _) = call(app, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    v.as_str().map(str::to_owned).unwrap_or_default()
}

#[tokio::test]
async fn request_id_is_kept_when_given() {
    let app = app();
    let req = Request::builder()
        .uri("/healthz")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let (_, _, h) = raw(&app, req).await;
    assert_eq!(h["x-request-id"], "abc-123");
    assert_eq!(candles(3).len(), 3);
}

#[tokio::test]
async fn large_bodies_are_parsed_off_the_async_threads_with_the_same_errors() {
    let app = app();
    // Over the blocking-parse threshold: a valid request, then a broken one.
    let padding = " ".repeat(volcast_server::extract::BLOCKING_PARSE_BYTES);
    let valid = format!("{padding}{}", serde_json::to_string(&single(N)).unwrap());
    let req = Request::builder()
        .method("POST")
        .uri("/v1/forecast/volatility")
        .header("content-type", "application/json")
        .body(Body::from(valid))
        .unwrap();
    let (s, v, _) = raw(&app, req).await;
    assert_eq!(s, 200, "{v}");
    let broken = format!("{padding}{{\"asset\": ");
    let req = Request::builder()
        .method("POST")
        .uri("/v1/forecast/volatility")
        .header("content-type", "application/json")
        .body(Body::from(broken))
        .unwrap();
    let (s, v, _) = raw(&app, req).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("malformed_json")),
        "{v}"
    );
}

#[tokio::test]
async fn unsafe_or_long_request_ids_are_replaced() {
    let app = app();
    let long = "a".repeat(volcast_server::MAX_REQUEST_ID_LEN + 1);
    for bad in [long.as_str(), "abc 123", "id\"quoted", "a=b"] {
        let req = Request::builder()
            .uri("/healthz")
            .header("x-request-id", bad)
            .body(Body::empty())
            .unwrap();
        let (_, _, h) = raw(&app, req).await;
        let echoed = h["x-request-id"].to_str().unwrap();
        assert_ne!(echoed, bad);
        assert!(
            volcast_server::acceptable_request_id(echoed.as_bytes()),
            "{echoed}"
        );
    }
    // Two ids are one too many: a fresh one replaces both.
    let req = Request::builder()
        .uri("/healthz")
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .body(Body::empty())
        .unwrap();
    let (_, _, h) = raw(&app, req).await;
    assert_eq!(h.get_all("x-request-id").iter().count(), 1);
    assert!(!["one", "two"].contains(&h["x-request-id"].to_str().unwrap()));
}

#[tokio::test]
async fn swagger_ui_calls_no_outside_validator() {
    let (s, v, _) = call(&app(), "GET", "/docs/swagger-initializer.js", None).await;
    assert_eq!(s, 200);
    let js = v.as_str().unwrap();
    assert!(
        js.contains(r#""validatorUrl": "none""#) || js.contains(r#""validatorUrl":"none""#),
        "{js}"
    );
}

#[tokio::test]
async fn worse_illiquidity_never_lowers_the_bonus() {
    let app = app();
    // Quote volumes of 1e-300: the slippage of the default sale would overflow; no answer (the
    // volume itself is refused, below the least accepted, 1e-12).
    let body = with_quote_volume(N, 1e-300);
    for route in ["/v1/forecast/liquidity", "/v1/risk/parameters"] {
        let (s, v, _) = call(&app, "POST", route, Some(&body)).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str()),
            (422, Some("out_of_range")),
            "{route}: {v}"
        );
    }
    // A finite slippage >= 1 (volumes of 1e-11): the size cannot be liquidated, LT = max LTV =
    // 0, LB at its maximum, whatever the previous values.
    let mut body = with_quote_volume(N, 1e-11);
    body["sale_size_usd"] = json!(1.0);
    body["previous"] = json!({"liquidation_threshold": 0.8, "max_ltv": 0.7});
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let p = &v["items"][0]["parameters"];
    assert_eq!(p["liquidation_threshold"], 0.0, "{v}");
    assert_eq!(p["max_ltv"], 0.0, "{v}");
    assert_eq!(p["liquidation_bonus"], 1.0, "{v}");
    let d = &v["items"][0]["derivation"];
    assert!(d["expected_slippage"].as_f64().unwrap() >= 1.0, "{d}");
    assert!(d["liquidation_blocked"].as_str().unwrap().contains(">= 1"), "{d}");
    // Ordinary liquidity: not blocked.
    let (_, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&single(N))).await;
    assert!(
        v["items"][0]["derivation"]["liquidation_blocked"].is_null(),
        "{v}"
    );
}

#[tokio::test]
async fn metrics_map_unknown_methods_to_other() {
    let app = app();
    let (s, _, _) = call(&app, "X12345", "/healthz", None).await;
    assert_eq!(s.as_u16(), 405);
    let (_, m, _) = call(&app, "GET", "/metrics", None).await;
    let m = m.as_str().unwrap();
    assert!(!m.contains("X12345"), "{m}");
    assert!(m.contains("method=\"other\""), "{m}");
}
