//! `POST /v1/risk/stress` in-process on the fake model: every scenario reported with its
//! recommendation, the scenarios asked for, and the bad-input table.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::{app, call, candles, single};
use serde_json::{Value, json};

const N: usize = 900;

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
    assert!(drop["bad_debt_at_risk"]["p95"].as_f64().unwrap() >= 0.0);
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
