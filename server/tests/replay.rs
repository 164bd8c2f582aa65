//! The replay over history and another gate rule over its ledger: `regate_replay` under the rule
//! the replay ran with reports exactly what the replay served (every day's policy, the switches,
//! the figures), read back from the replay's own store; a store without the period's entries is
//! refused with a clear error.

mod common;

use volcast_core::candles::AssetCandles;
use volcast_server::gate::GateRule;
use volcast_server::ledger::DAY_MS;
use volcast_server::replay::{ReplayOptions, regate_replay, replay};

const START: i64 = 1_704_067_200_000; // 2024-01-01
/// Days of candles before the first origin (the model's history is 889 hours).
const WARM_DAYS: i64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_regate_under_the_replays_rule_reports_what_the_replay_served() {
    let dir = tempfile::tempdir().unwrap();
    // Twenty days of tripled volatility from day 60: the gate has a reason to move. The regate
    // under the replay's rule must match the replay whether or not it switched; the per-horizon
    // checks below need some horizons moved and some not, which a lower threshold gives.
    let days = 110;
    let assets: Vec<AssetCandles> = ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT"]
        .iter()
        .enumerate()
        .map(|(a, name)| AssetCandles {
            asset: (*name).to_owned(),
            candles: common::market(START, a, days + 8, Some((60, 80))),
        })
        .collect();
    let (from_ms, to_ms) = (START + WARM_DAYS * DAY_MS, START + days * DAY_MS);
    let url = format!("sqlite://{}", dir.path().join("replay.db").display());
    let options = ReplayOptions {
        artifact: common::repo().join("model-artifacts/default"),
        from_ms,
        to_ms,
        database_url: url.clone(),
        artifacts_dir: dir.path().join("artifacts"),
    };
    let live = replay(&options, &assets, |_, _| {}).await.unwrap();
    assert!(live.summary.entries > 50 * 5, "{}", live.summary.entries);

    let regated = regate_replay(&url, &GateRule::DEFAULT, from_ms, to_ms)
        .await
        .unwrap();
    assert_eq!(regated.switches, live.switches);
    let policies = |r: &volcast_server::replay::ReplayReport| {
        r.days
            .iter()
            .map(|d| (d.day.clone(), d.policy.clone(), d.recorded))
            .collect::<Vec<_>>()
    };
    assert_eq!(policies(&regated), policies(&live));
    assert_eq!(
        serde_json::to_value(&regated.summary).unwrap(),
        serde_json::to_value(&live.summary).unwrap()
    );

    // Each horizon on its own: a horizon the rule never moved serves the model's variance on
    // every day, so its served QLIKE is the model's; the risk policy likewise. At a lower
    // switching threshold than the service's (1.5 for 1.96) the drift moves some horizons and
    // leaves others, so both cases are checked. (A moved horizon's served
    // QLIKE can equal the model's: the served model's own daily combination with HAR may have
    // gone to HAR there too.)
    let per_horizon = GateRule {
        per_horizon: true,
        switch_dm: 1.5,
        ..GateRule::DEFAULT
    };
    let apart = regate_replay(&url, &per_horizon, from_ms, to_ms).await.unwrap();
    assert_eq!(apart.days.len(), policies(&live).len());
    let moved_horizons: Vec<Option<usize>> = apart.switches.iter().map(|s| s.horizon_hours).collect();
    let moves =
        |h: &volcast_server::dto::validation::HorizonSkill| moved_horizons.contains(&Some(h.horizon_hours));
    assert!(
        apart.summary.horizons.iter().any(moves) && !apart.summary.horizons.iter().all(moves),
        "every horizon or none moved ({moved_horizons:?}): a check below would be vacuous"
    );
    for h in &apart.summary.horizons {
        let moved = apart
            .switches
            .iter()
            .any(|s| s.horizon_hours == Some(h.horizon_hours));
        let on_har = apart
            .days
            .iter()
            .filter(|d| d.policy.contains(&format!(" {} h", h.horizon_hours)))
            .count();
        assert_eq!(moved, on_har > 0, "{:?}", apart.days);
        if !moved {
            assert_eq!(h.qlike_served, h.qlike_model, "{}", h.horizon_hours);
        }
    }
    let risk = apart.summary.risk.as_ref().unwrap();
    if !apart.switches.iter().any(|s| s.horizon_hours.is_none()) {
        assert_eq!(risk.served_breaches, risk.breaches);
    }

    // A period the ledger does not hold is refused, naming it.
    let later = to_ms + 400 * DAY_MS;
    let e = regate_replay(&url, &GateRule::DEFAULT, later, later + DAY_MS)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("holds no scored ledger entry"), "{e}");
}

/// A period the replay would fill with nothing is refused before the first day: origins inside
/// the artifact's fit (the ledger records none: an empty report, exit 0) or after the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_inside_the_fit_or_after_the_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let assets = vec![AssetCandles {
        asset: "AAAUSDT".to_owned(),
        candles: common::market(START, 0, 60, None),
    }];
    let refused = |from_ms: i64, to_ms: i64, name: &str| {
        let options = ReplayOptions {
            artifact: common::repo().join("model-artifacts/default"),
            from_ms,
            to_ms,
            database_url: format!("sqlite://{}", dir.path().join(name).display()),
            artifacts_dir: dir.path().join("artifacts"),
        };
        let assets = assets.clone();
        async move {
            replay(&options, &assets, |_, _| {})
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        }
    };
    // The default artifact's last candle opened at 2021-12-31T23:00:00Z.
    let inside = refused(START - 800 * DAY_MS, START + 10 * DAY_MS, "inside.db").await;
    assert!(
        inside.contains("is within the artifact's fit")
            && inside.contains("the first day it has not seen is 2022-01-01T00:00:00Z"),
        "{inside}"
    );
    let after = refused(START + 50 * DAY_MS, START + 70 * DAY_MS, "after.db").await;
    assert!(
        after.contains("is after the data's last candle (closing 2024-03-01T00:00:00Z)")
            && after.contains("the last day it can replay is 2024-03-01T00:00:00Z"),
        "{after}"
    );
}
