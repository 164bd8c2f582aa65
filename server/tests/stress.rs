//! `POST /v1/risk/stress` in-process on the fake model: every scenario reported with its
//! recommendation, the scenarios asked for, and the bad-input table.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use axum::http::StatusCode;
use common::{app, call, candles, single};
use serde_json::{Value, json};

const N: usize = 900;

fn last_close(body: &Value) -> f64 {
    body["candles"][N - 1]["close"].as_f64().unwrap()
}

fn stress_body() -> Value {
    let mut body = single(N);
    let price = body["candles"][N - 1]["close"].as_f64().unwrap();
    // LTV 50% at LT 0.8 (liquidated by a 37.5% fall), 70% at LT 0.9 (22%), and no debt.
    body["positions"] = json!([
        {"collateral": 10.0, "debt": 10.0 * price * 0.5},
        {"collateral": 5.0, "debt": 5.0 * price * 0.7, "liquidation_threshold": 0.9},
        {"collateral": 1.0, "debt": 0.0}
    ]);
    body["paths"] = json!(2000);
    body
}

#[tokio::test]
async fn stress_reports_every_scenario_with_recommendations() {
    let app = app();
    let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&stress_body())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["model"]["id"], "fake0123456789ab");
    assert_eq!(v["horizon_hours"], 168);
    let scenarios = v["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "forecast",
            "volatility x2",
            "volatility x3",
            "liquidity drain x3",
            "instant drop 20%",
            "instant drop 40%",
            "replay BTCUSDT 2020-03-12"
        ]
    );
    for s in scenarios {
        for key in ["liquidations_at_risk", "bad_debt_at_risk"] {
            let t = &s[key];
            assert!(t["p95"].as_f64().unwrap() <= t["p99"].as_f64().unwrap(), "{s}");
        }
        let r = &s["recommended"];
        let (lt, lb) = (
            r["liquidation_threshold"].as_f64().unwrap(),
            r["liquidation_bonus"].as_f64().unwrap(),
        );
        assert!(lt * (1.0 + lb) <= 1.0 + 1e-12 && r["max_ltv"].as_f64().unwrap() <= lt);
    }
    // The replay is one deterministic path; its 45% fall liquidates the first two positions.
    let replay = &scenarios[6];
    assert_eq!(replay["paths"], 1);
    assert_eq!(replay["liquidated_positions"]["p99"], 2.0);
    // Shocks recommend lower thresholds than the forecast.
    let lt = |i: usize| {
        scenarios[i]["recommended"]["liquidation_threshold"]
            .as_f64()
            .unwrap()
    };
    assert!(lt(1) < lt(0) && lt(2) < lt(1) && lt(3) < lt(0));
    // Same request, same answer.
    let (_, again, _) = call(&app, "POST", "/v1/risk/stress", Some(&stress_body())).await;
    assert_eq!(v["scenarios"], again["scenarios"]);
}

#[tokio::test]
async fn stress_runs_the_scenarios_asked_for() {
    let app = app();
    let mut body = stress_body();
    body["scenarios"] =
        json!([{"kind": "instant_drop", "pct": 60.0}, {"kind": "replay", "name": "BTCUSDT 2020-03-12"}]);
    body["horizon_hours"] = json!(24);
    let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let drop = &v["scenarios"][0];
    assert_eq!(drop["scenario"], "instant drop 60%");
    assert_eq!(drop["liquidation_probability"], 1.0);
    // A 60% fall leaves the 50%-LTV position's collateral at 0.4 of its price, under its debt.
    assert!(drop["bad_debt_at_risk"]["p95"].as_f64().unwrap() > 0.0);
    assert_eq!(v["scenarios"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn stress_bad_input_is_422_with_the_field() {
    let app = app();
    type Mutate = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutate, &str, &str)> = vec![
        (
            "negative collateral",
            Box::new(|b| b["positions"][1]["collateral"] = json!(-1.0)),
            "invalid_value",
            "positions[1].collateral",
        ),
        (
            "empty book",
            Box::new(|b| b["positions"] = json!([])),
            "invalid_value",
            "positions",
        ),
        (
            "too many paths",
            Box::new(|b| b["paths"] = json!(200_001)),
            "out_of_range",
            "paths",
        ),
        (
            "zero paths",
            Box::new(|b| b["paths"] = json!(0)),
            "out_of_range",
            "paths",
        ),
        (
            "long horizon",
            Box::new(|b| b["horizon_hours"] = json!(169)),
            "out_of_range",
            "horizon_hours",
        ),
        ("low df", Box::new(|b| b["df"] = json!(2.0)), "out_of_range", "df"),
        (
            "threshold above 1",
            Box::new(|b| b["positions"][0]["liquidation_threshold"] = json!(1.5)),
            "invalid_value",
            "positions[0].liquidation_threshold",
        ),
        (
            "unknown scenario kind",
            Box::new(|b| b["scenarios"] = json!([{"kind": "meteor"}])),
            "invalid_value",
            "scenarios[0]",
        ),
        (
            "unknown replay",
            Box::new(|b| b["scenarios"] = json!([{"kind": "replay", "name": "LUNA 2022-05-09"}])),
            "unknown_scenario",
            "scenarios[0].name",
        ),
        (
            "drop of 100%",
            Box::new(|b| {
                b["scenarios"] = json!([{"kind": "forecast"}, {"kind": "instant_drop", "pct": 100.0}]);
            }),
            "invalid_value",
            "scenarios[1].pct",
        ),
        (
            "no scenarios",
            Box::new(|b| b["scenarios"] = json!([])),
            "invalid_value",
            "scenarios",
        ),
        (
            "too few candles",
            Box::new(|b| b["candles"] = json!(candles(10))),
            "too_few_candles",
            "candles",
        ),
        (
            // The sale size it defaults to is held to the range an asked one must keep.
            "a position worth more than 1e12 USD, no sale size",
            Box::new(|b| b["positions"][0]["collateral"] = json!(2e12 / last_close(b))),
            "invalid_value",
            "sale_size_usd",
        ),
        (
            // Its sums overflowed: the book's totals were answered null with a 200.
            "a book worth more than 1e15 USD",
            Box::new(|b| {
                b["positions"][0]["collateral"] = json!(1e305);
                b["sale_size_usd"] = json!(1e6);
            }),
            "invalid_value",
            "positions",
        ),
        (
            // Its sums overflowed: answered as unusable candles.
            "a book owing more than 1e15 USD",
            Box::new(|b| {
                b["positions"] =
                    json!([{"collateral": 1e3, "debt": 1e308}, {"collateral": 1e3, "debt": 1e308}]);
                b["sale_size_usd"] = json!(1e6);
            }),
            "invalid_value",
            "positions",
        ),
    ];
    for (name, mutate, code, field) in cases {
        let mut body = stress_body();
        mutate(&mut body);
        let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {v}");
        assert_eq!(v["error"], code, "{name}: {v}");
        assert!(
            v["field"].as_str().is_some_and(|f| f.starts_with(field)),
            "{name}: {v}"
        );
    }
}

/// A book at the limit is served, its totals numbers.
#[tokio::test]
async fn stress_serves_a_book_at_its_limit() {
    let mut body = stress_body();
    let price = last_close(&body);
    body["positions"] = json!([{"collateral": 1e15 / price * 0.999, "debt": 1e15 * 0.5}]);
    body["sale_size_usd"] = json!(1e6);
    body["scenarios"] = json!([{"kind": "forecast"}]);
    let (s, v, _) = call(&app(), "POST", "/v1/risk/stress", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["book"]["collateral_usd"].as_f64().is_some_and(|x| x > 9.9e14),
        "{v}"
    );
    assert!(v["book"]["debt_usd"].as_f64().is_some(), "{v}");
}

/// `replays` on an artifact without historical windows runs nothing: refused, not an empty 200.
#[tokio::test]
async fn stress_replays_without_windows_are_refused() {
    let mut info = common::info();
    info.metadata.stress_scenarios.clear();
    let app = common::app_serving(info, &common::config(), std::time::Duration::ZERO);
    let mut body = stress_body();
    body["scenarios"] = json!([{"kind": "replays"}]);
    let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
        (422, Some("invalid_value"), Some("scenarios")),
        "{v}"
    );
}

#[tokio::test]
async fn stress_limits_hold_on_expanded_scenarios_and_work() {
    let app = app();
    // `replays` stands for every window (one in the fake artifact): 31 + 2 = 33 > 32.
    let mut body = stress_body();
    let mut scenarios = vec![json!({"kind": "forecast"}); 31];
    scenarios.extend([json!({"kind": "replays"}), json!({"kind": "replays"})]);
    body["scenarios"] = json!(scenarios);
    let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
        (422, Some("invalid_value"), Some("scenarios")),
        "{v}"
    );
    // Within every per-field limit, but over the work budget.
    let mut body = stress_body();
    body["paths"] = json!(200_000);
    body["scenarios"] = json!(vec![json!({"kind": "volatility_shock", "k": 2.0}); 32]);
    let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
        (422, Some("too_much_work"), Some("paths")),
        "{v}"
    );
}

#[tokio::test]
async fn stress_unknown_fields_and_arrays_are_rejected() {
    let app = app();
    let cases: Vec<(Value, &str)> = vec![
        (json!([{"kind": "forecast", "k": 3.0}]), "scenarios[0].k"),
        (json!([{"kind": "replays", "name": "x"}]), "scenarios[0].name"),
        (json!([["volatility_shock", 2.0]]), "scenarios[0]"),
    ];
    for (scenarios, field) in cases {
        let mut body = stress_body();
        body["scenarios"] = scenarios;
        let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
            (422, Some("invalid_value"), Some(field)),
            "{v}"
        );
    }
    let mut body = stress_body();
    body["positions"][0] = json!([10.0, 100.0]);
    let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
    assert_eq!(
        (s.as_u16(), v["field"].as_str()),
        (422, Some("positions[0]")),
        "{v}"
    );
    for (key, value) in [("alpha", 0.4), ("tau_user_hours", 169.0)] {
        let mut body = stress_body();
        body[key] = json!(value);
        let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str()),
            (422, Some("out_of_range")),
            "{v}"
        );
    }
}

#[tokio::test]
async fn stress_fails_closed_on_non_finite_forecasts_and_blocks_unliquidatable_sales() {
    let nan = common::app_predicting(Box::new(common::NanFake), &common::config());
    let (s, v, _) = call(&nan, "POST", "/v1/risk/stress", Some(&stress_body())).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (422, Some("unusable_input")),
        "{v}"
    );
    // Zero variances: no distribution to simulate. The forecast's problem, named as such (it was
    // `invalid_value` on a field the request does not have, `hourly_variance[0]`).
    let zero = common::app_predicting(Box::new(common::ZeroFake), &common::config());
    let (s, v, _) = call(&zero, "POST", "/v1/risk/stress", Some(&stress_body())).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
        (422, Some("unusable_input"), Some("candles")),
        "{v}"
    );
    // Quote volumes of 1e-11 (just above the least accepted): a slippage far above 1 per sale;
    // every scenario recommends LT 0.
    let app = app();
    let mut body = stress_body();
    for c in body["candles"].as_array_mut().unwrap() {
        c["quote_volume"] = json!(1e-11);
    }
    body["sale_size_usd"] = json!(1.0);
    let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for sc in v["scenarios"].as_array().unwrap() {
        let r = &sc["recommended"];
        assert_eq!(sc["liquidation_blocked"], true, "{sc}");
        assert_eq!(r["liquidation_threshold"], 0.0, "{sc}");
        assert_eq!(r["max_ltv"], 0.0, "{sc}");
        assert_eq!(r["liquidation_bonus"], 1.0, "{sc}");
    }
    let (_, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&stress_body())).await;
    assert_eq!(v["scenarios"][0]["liquidation_blocked"], false, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_stress_simulations_stop_and_free_their_slot() {
    let mut c = common::config();
    c.request_timeout_ms = 300;
    let app = common::app_with(&c, std::time::Duration::ZERO);
    // 32 scenarios of about 0.1 s each: several seconds in all, far past the timeout.
    let mut body = stress_body();
    body["paths"] = json!(36_000);
    body["scenarios"] = json!(vec![json!({"kind": "volatility_shock", "k": 2.0}); 32]);
    let started = std::time::Instant::now();
    let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&body)).await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (503, Some("timeout")), "{v}");
    // The simulation stops at its next scenario, well before all 32 would have run.
    loop {
        let (_, m, _) = call(&app, "GET", "/metrics", None).await;
        if m.as_str()
            .unwrap()
            .contains("volcast_stress_cancellations_total 1")
        {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "the timed-out simulation is still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn a_full_stress_slot_says_so_and_is_counted() {
    use std::sync::Arc;
    use volcast_server::metrics::Metrics;
    use volcast_server::state::{AppState, MAX_STRESS_JOBS, Settings};
    let mut c = common::config();
    c.request_timeout_ms = 10_000;
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(Settings::from_config(&c).unwrap(), Arc::clone(&metrics));
    let held: Vec<_> = (0..MAX_STRESS_JOBS)
        .map(|_| state.stress_slot().unwrap())
        .collect();
    let e = state.stress_slot().unwrap_err();
    let body = e.body();
    assert_eq!(body.error, volcast_server::error::ErrorCode::StressBusy);
    assert!(!body.message.contains("inference queue"), "{}", body.message);
    let r = axum::response::IntoResponse::into_response(e);
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "10");
    assert!(metrics.render().contains("volcast_stress_rejections_total 1"));
    drop(held);
    assert!(state.stress_slot().is_ok());
}

/// While the gate holds the fallback on an artifact without a HAR calibration, the stress runs
/// on the model's policy and says so; it named the fallback alone, for the model's figures.
#[tokio::test]
async fn a_fallback_that_cannot_be_served_is_said_so() {
    use std::sync::Arc;
    use volcast_server::dto::policy::PolicyStatus;
    use volcast_server::metrics::Metrics;
    use volcast_server::queue::BatchQueue;
    use volcast_server::state::{AppState, Serving, Settings};
    let c = common::config();
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(Settings::from_config(&c).unwrap(), Arc::clone(&metrics));
    let fake = common::Fake {
        delay: std::time::Duration::ZERO,
    };
    let (queue, _worker) =
        BatchQueue::start(Box::new(fake), volcast_server::queue_config(&c), metrics).unwrap();
    state.set_serving(Serving {
        info: Arc::new(common::info()),
        queue,
        anomaly: None,
    });
    let app = volcast_server::app(state.clone());
    let (s, on_model, _) = call(&app, "POST", "/v1/risk/stress", Some(&stress_body())).await;
    assert_eq!(s, StatusCode::OK, "{on_model}");
    assert!(on_model.get("served_policy").is_none(), "{on_model}");
    state.set_policy(
        PolicyStatus {
            name: volcast_server::gate::FALLBACK_HAR.into(),
            since: None,
            reason: "drift".into(),
        },
        None,
    );
    let (s, v, _) = call(&app, "POST", "/v1/risk/stress", Some(&stress_body())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["model"]["policy"]["name"], "fallback_har", "{v}");
    assert_eq!(v["served_policy"]["name"], "model", "{v}");
    let reason = v["served_policy"]["reason"].as_str().unwrap();
    assert!(reason.contains("no HAR calibration"), "{reason}");
    // The model's figures, as before the switch.
    assert_eq!(v["scenarios"], on_model["scenarios"]);
}
