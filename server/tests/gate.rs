//! The champion/challenger gate, driven day by day on synthetic markets by the service's own
//! daily job (scoring, gate, ledger) with the committed default artifact's metadata (HAR, the
//! risk calibration) and a model that does not adapt: it forecasts the calm regime's variance
//! whatever the candles say. On a stationary market it never switches; when volatility triples
//! for a month it switches to HAR's policy within the documented delay (each horizon is scored
//! as its window closes, then the gate needs the evidence), every answer says so, and it switches
//! back once the month has left its window, without flapping. The ledger reads nothing after its
//! origins: cutting the candles after a day changes no entry before it.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::sync::Arc;

use serde_json::json;
use volcast_core::candles::Candle;
use volcast_server::daily::{DailyOptions, DailyState, run_once};
use volcast_server::gate::{FALLBACK_HAR, GateRule, MODEL, Switch, regate};
use volcast_server::ledger::{DAY_MS, LedgerOutcome, LedgerRecord, scored_of};
use volcast_server::metrics::Metrics;
use volcast_server::model_info::ModelInfo;
use volcast_server::queue::BatchQueue;
use volcast_server::state::{AppState, Serving, Settings};
use volcast_store::{CandleStore, LedgerStore, Store};

const START: i64 = 1_704_067_200_000; // 2024-01-01
const ASSETS: [&str; 5] = ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT"];
/// Days of candles before the first origin (the model's history is 889 hours).
const WARM_DAYS: i64 = 40;

async fn serving(dir: &std::path::Path) -> AppState {
    let store = Store::open(&common::process::store_url(dir)).await.unwrap();
    let artifact = common::repo().join("model-artifacts/default");
    let config = volcast_server::config::Config::with_artifact(artifact.clone()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let state = AppState::with_store(
        Settings::from_config(&config).unwrap(),
        Arc::clone(&metrics),
        Some(store),
    );
    let dir = volcast_model::artifact::resolve(&artifact).unwrap();
    let info = ModelInfo {
        metadata: volcast_model::artifact::read_metadata(&dir).unwrap(),
        hash: "0".repeat(64),
        dir,
        policy: volcast_server::gate::PolicyStatus::model(),
    };
    let (queue, _worker) = BatchQueue::start(
        Box::new(common::Calm),
        volcast_server::queue_config(&config),
        metrics,
    )
    .unwrap();
    state.set_serving(Serving {
        info: Arc::new(info),
        queue,
        anomaly: None,
    });
    state
}

/// The days (index from the start) the gate switched, with the policy switched to; the store's
/// candles fill day by day as they close, and the job runs a minute after each midnight.
async fn run(state: &AppState, data: &[Vec<Candle>], days: i64) -> Vec<(i64, String)> {
    let store = state.store().unwrap();
    let options = DailyOptions {
        recalibrate: false,
        artifacts_dir: std::path::PathBuf::new(),
        load: volcast_server::load_options(&common::config()),
        store_deadline: volcast_server::daily::STORE_DEADLINE,
    };
    let mut daily = DailyState::default();
    let mut switches = Vec::new();
    for day in 1..=days {
        let midnight = START + day * DAY_MS;
        for (asset, candles) in ASSETS.iter().zip(data) {
            let today: Vec<Candle> = candles
                .iter()
                .filter(|c| (midnight - DAY_MS..midnight).contains(&c.open_time))
                .copied()
                .collect();
            store.insert_candles(asset, &today).await.unwrap();
        }
        if day < WARM_DAYS {
            continue;
        }
        let pass = run_once(state, &options, &mut daily, midnight + 60_000)
            .await
            .unwrap();
        if let Some(s) = pass.switch {
            eprintln!("day {day}: to {}: {}", s.policy, s.reason);
            switches.push((day, s.policy));
        }
    }
    switches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_holds_on_a_stationary_market() {
    let dir = tempfile::tempdir().unwrap();
    let state = serving(dir.path()).await;
    let data: Vec<Vec<Candle>> = (0..ASSETS.len())
        .map(|a| common::market(START, a, 150, None))
        .collect();
    let switches = run(&state, &data, 150).await;
    assert_eq!(switches, []);
    // The ledger did fill and score: 110 days of origins for each asset.
    let store = state.store().unwrap();
    let scored = store.scored(i64::MIN, i64::MAX).await.unwrap();
    assert!(scored.len() > 90 * ASSETS.len(), "{}", scored.len());
    assert_eq!(state.policy().0.name, MODEL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_switches_on_a_drift_within_its_delay_and_back_once_it_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let state = serving(dir.path()).await;
    // Thirty days of drift from day 80: the gate has had 40 days of ledger by then.
    let (drift, days) = (80, 180);
    let data: Vec<Vec<Candle>> = (0..ASSETS.len())
        .map(|a| common::market(START, a, days + 1, Some((drift, drift + 30))))
        .collect();
    let switches = run(&state, &data, days).await;
    // To the fallback within two weeks: the 4 h and 24 h forecasts and the breaches are scored
    // the day after, then the evidence. Back once the drift has left the 30-day window (and the
    // week's horizon has been scored past it), and only once each way.
    assert_eq!(switches.len(), 2, "{switches:?}");
    let (to_fallback, back) = (&switches[0], &switches[1]);
    assert_eq!(to_fallback.1, FALLBACK_HAR);
    assert!((drift + 1..=drift + 14).contains(&to_fallback.0), "{switches:?}");
    assert_eq!(back.1, MODEL);
    assert!(
        (drift + 30 + 1..=drift + 30 + 7 + 35).contains(&back.0),
        "{switches:?}"
    );

    // The switches are in the store, with their reasons; a restart restores the policy.
    let store = state.store().unwrap();
    let stored = store.switches().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        stored[0].2.contains("worse than HAR") || stored[0].2.contains("breached"),
        "{}",
        stored[0].2
    );

    // The gate re-run over the finished ledger (what `replay --regate` does) makes exactly the
    // live switches.
    let (from, to) = (START + WARM_DAYS * DAY_MS, START + days * DAY_MS);
    let entries: Vec<_> = store
        .scored(i64::MIN, to)
        .await
        .unwrap()
        .iter()
        .filter_map(scored_of)
        .collect();
    let live: Vec<Switch> = stored.into_iter().map(Switch::from).collect();
    assert_eq!(regate(&GateRule::DEFAULT, &entries, from, to).switches, live);
    // Each rule switches to the fallback on this drift within the documented delay: the model's
    // LT is breached more than HAR's, which follows the volatility. Reading an entry only once
    // its week has passed (the service before) switches a week after the drift at the soonest,
    // and later than the service now.
    for (breaches_vs_fallback, score_as_windows_close) in [(false, true), (true, true), (true, false)] {
        let rule = GateRule {
            breaches_vs_fallback,
            score_as_windows_close,
            ..GateRule::DEFAULT
        };
        let first = regate(&rule, &entries, from, to).switches[0].clone();
        assert_eq!(first.policy, FALLBACK_HAR);
        let day = (first.at - START) / DAY_MS;
        let soonest = if score_as_windows_close {
            drift + 1
        } else {
            drift + 7
        };
        assert!(
            (soonest..=drift + 14).contains(&day),
            "{breaches_vs_fallback} {score_as_windows_close}: {first:?}"
        );
        if !score_as_windows_close {
            assert!(day > to_fallback.0, "{first:?} vs {to_fallback:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_on_the_fallback_every_answer_says_so_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = serving(dir.path()).await;
    let (drift, days) = (80, 100);
    let data: Vec<Vec<Candle>> = (0..ASSETS.len())
        .map(|a| common::market(START, a, days + 1, Some((drift, drift + 30))))
        .collect();
    let switches = run(&state, &data, days).await;
    assert_eq!(switches.len(), 1, "{switches:?}");
    let app = volcast_server::app(state.clone());
    let (status, ready, _) = common::call(&app, "GET", "/readyz", None).await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["model"]["policy"]["name"], FALLBACK_HAR);
    let (_, card, _) = common::call(&app, "GET", "/v1/model", None).await;
    assert_eq!(card["model"]["policy"]["name"], FALLBACK_HAR);
    // A risk answer: HAR's variance with HAR's calibrated rule, the model's beside it.
    let upto: Vec<&Candle> = data[0]
        .iter()
        .filter(|c| c.open_time < START + days * DAY_MS)
        .collect();
    let window: Vec<serde_json::Value> = upto[upto.len() - 889..]
        .iter()
        .map(|c| common::candle_json(c))
        .collect();
    let body = json!({"asset": ASSETS[0], "candles": window});
    let (status, risk, _) = common::call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
    assert_eq!(status, 200, "{risk}");
    let item = &risk["items"][0];
    let derivation = &item["derivation"];
    assert_eq!(risk["model"]["policy"]["name"], FALLBACK_HAR);
    assert_eq!(derivation["policy"]["name"], FALLBACK_HAR);
    assert!(derivation["policy"]["reason"].as_str().unwrap().contains("HAR"));
    assert_eq!(derivation["drawdown"], derivation["har_calibrated"]["drawdown"]);
    assert!(derivation["policy"]["model"]["drawdown"].as_f64().unwrap() > 0.0);
    // A volatility answer: both forecasts, HAR's served at every horizon.
    let (status, vol, _) = common::call(&app, "POST", "/v1/forecast/volatility", Some(&body)).await;
    assert_eq!(status, 200, "{vol}");
    for h in vol["items"][0]["horizons"].as_array().unwrap() {
        assert!(h["har"]["variance"].as_f64().unwrap() > 0.0, "{h}");
        assert_eq!(h["served"], "har", "{h}");
    }
    // A stress run: on HAR's variance too, and on the model's once the model serves again.
    let mut stress = body.clone();
    stress["positions"] = json!([{"collateral": 10, "debt": 100}]);
    stress["paths"] = json!(100);
    stress["horizon_hours"] = json!(168);
    stress["scenarios"] = json!([{"kind": "forecast"}]);
    let week = |answer: &serde_json::Value| answer["scenarios"][0]["horizon_variance"].as_f64().unwrap();
    let (status, on_fallback, _) = common::call(&app, "POST", "/v1/risk/stress", Some(&stress)).await;
    assert_eq!(status, 200, "{on_fallback}");
    let har_week = derivation["forecasts"][2]["har_variance"].as_f64().unwrap();
    let model_week = derivation["forecasts"][2]["variance"].as_f64().unwrap();
    assert!(
        (week(&on_fallback) / har_week - 1.0).abs() < 1e-9,
        "{on_fallback}"
    );
    let metrics = common::call(&app, "GET", "/metrics", None).await.1;
    assert!(
        metrics.as_str().unwrap().contains("volcast_policy_fallback 1"),
        "{metrics}"
    );
    let (policy, since) = state.policy();
    state.set_policy(volcast_server::gate::PolicyStatus::model(), None);
    let (_, on_model, _) = common::call(&app, "POST", "/v1/risk/stress", Some(&stress)).await;
    assert!((week(&on_model) / model_week - 1.0).abs() < 1e-9, "{on_model}");
    assert!((har_week / model_week - 1.0).abs() > 1e-6, "the two weeks differ");
    state.set_policy(policy, since);

    // A new service on the same store starts on the fallback.
    let again = serving(dir.path()).await;
    volcast_server::daily::restore_policy(&again).await.unwrap();
    assert_eq!(again.policy().0.name, FALLBACK_HAR);
    // A process that never restored (a restart before its first pass, another replica) and
    // gates the switch's day again decides nothing: it serves what the store recorded that day.
    let switched_at = START + switches[0].0 * DAY_MS;
    let other = serving(dir.path()).await;
    assert_eq!(other.policy().0.name, MODEL);
    let decided = volcast_server::daily::gate(&other, switched_at).await.unwrap();
    assert_eq!(decided, None);
    assert_eq!(other.policy().0.name, FALLBACK_HAR);
    assert_eq!(other.policy().1, Some(switched_at));
    // A replica that gated its day before another recorded a switch (here: one serving the
    // model though the store's last switch says otherwise) follows the store at its next pass
    // that day, not the next midnight.
    let options = DailyOptions {
        recalibrate: false,
        artifacts_dir: std::path::PathBuf::new(),
        load: volcast_server::load_options(&common::config()),
        store_deadline: volcast_server::daily::STORE_DEADLINE,
    };
    let mut daily = DailyState::default();
    let next_day = switched_at + DAY_MS;
    run_once(&other, &options, &mut daily, next_day + 60_000)
        .await
        .unwrap();
    assert_eq!(other.policy().0.name, FALLBACK_HAR);
    other.set_policy(volcast_server::gate::PolicyStatus::model(), None);
    run_once(&other, &options, &mut daily, next_day + 120_000)
        .await
        .unwrap();
    assert_eq!(other.policy().0.name, FALLBACK_HAR);
    assert_eq!(other.policy().1, Some(switched_at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_candles_after_a_day_changes_nothing_before_it() {
    let (drift, days, cut) = (60, 100, 85);
    let data: Vec<Vec<Candle>> = (0..ASSETS.len())
        .map(|a| common::market(START, a, days + 1, Some((drift, drift + 30))))
        .collect();
    let full = tempfile::tempdir().unwrap();
    let full_state = serving(full.path()).await;
    let full_switches = run(&full_state, &data, days).await;
    let short = tempfile::tempdir().unwrap();
    let short_state = serving(short.path()).await;
    let short_switches = run(&short_state, &data, cut).await;
    // The same switches up to the cut.
    let before: Vec<_> = full_switches.iter().filter(|s| s.0 <= cut).cloned().collect();
    assert_eq!(before, short_switches);
    // The same entries at every origin up to the cut, scored the same where both are scored.
    let read = |store: &Store| {
        let store = store.clone();
        async move { store.scored(i64::MIN, START + cut * DAY_MS).await.unwrap() }
    };
    let (a, b) = (
        read(full_state.store().unwrap()).await,
        read(short_state.store().unwrap()).await,
    );
    assert!(!b.is_empty());
    // (The cut's last week is scored in part: compared on the windows it has scored.)
    let a: Vec<_> = a
        .into_iter()
        .filter_map(|e| {
            let x = b.iter().find(|x| x.asset == e.asset && x.origin == e.origin)?;
            let open = serde_json::from_str::<LedgerOutcome>(x.outcome.as_deref()?)
                .ok()?
                .open_horizons;
            let mut outcome: LedgerOutcome = serde_json::from_str(e.outcome.as_deref()?).ok()?;
            let record: LedgerRecord = serde_json::from_str(&e.record).ok()?;
            for (k, h) in record.horizons.iter().enumerate() {
                if open.contains(h) {
                    outcome.realized_variance[k] = None;
                    outcome.shortage[k] = None;
                }
            }
            outcome.open_horizons = open;
            Some((e.asset, e.origin, e.record, outcome))
        })
        .collect();
    let b: Vec<_> = b
        .into_iter()
        .map(|x| {
            let outcome: LedgerOutcome = serde_json::from_str(x.outcome.as_deref().unwrap()).unwrap();
            (x.asset, x.origin, x.record, outcome)
        })
        .collect();
    assert!(
        b.iter().any(|x| !x.3.open_horizons.is_empty()),
        "some scored in part"
    );
    assert_eq!(a, b);
    for origin in (WARM_DAYS..=cut).map(|d| START + d * DAY_MS) {
        assert_eq!(
            full_state.store().unwrap().recorded_assets(origin).await.unwrap(),
            short_state
                .store()
                .unwrap()
                .recorded_assets(origin)
                .await
                .unwrap()
        );
    }
}

/// A switch naming a policy this build does not know (a newer replica's, a row written by hand)
/// is not served by its name: the model answered under it, every answer naming `bogus`, and
/// `/readyz` said ready. HAR's fallback is served instead, its reason naming the unknown policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_to_a_policy_this_build_does_not_know_serves_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let state = serving(dir.path()).await;
    state
        .store()
        .unwrap()
        .record_switch(START, "bogus", "written by hand")
        .await
        .unwrap();
    volcast_server::daily::restore_policy(&state).await.unwrap();
    let (policy, since) = state.policy();
    assert_eq!(policy.name, FALLBACK_HAR, "{policy:?}");
    assert!(policy.reason.contains("(bogus)"), "{policy:?}");
    assert_eq!(since, Some(START));
    assert!(
        state.metrics().render().contains("volcast_policy_fallback 1"),
        "the fallback gauge"
    );
}
