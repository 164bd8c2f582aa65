//! The forecast ledger on the committed sample (`SYNTH01`, moved to end at the current hour) and
//! the committed default artifact: a record is what the POST routes serve on the candles up to
//! its origin and reads nothing after it; outcomes equal SPEC's realized variance and drawdown
//! computed here independently; `GET /v1/model/validation` aggregates them exactly; the job
//! catches up the last week once; a reopened store keeps the ledger.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use volcast_core::candles::Candle;
use volcast_core::scoring::qlike;
use volcast_core::time::HOUR_MS;
use volcast_server::ledger::{
    CATCH_UP_DAYS, DAY_MS, LedgerOutcome, LedgerRecord, day_origin, record_origin, run_once, score_pending,
};
use volcast_server::routes::assets::now_ms;
use volcast_store::{CandleStore, LedgerStore, Store};

const ASSET: &str = "SYNTH01";
const FOREVER: Duration = Duration::from_secs(100_000 * 86_400);

fn artifact() -> std::path::PathBuf {
    common::repo().join("model-artifacts/default")
}

async fn store_with(dir: &std::path::Path, candles: &[Candle]) -> Store {
    let store = Store::open(&common::process::store_url(dir)).await.unwrap();
    store.insert_candles(ASSET, candles).await.unwrap();
    store
}

/// SPEC's realized variance over the `h` hours after `origin`, computed here from the candles:
/// hourly log returns of consecutive candles, rescaled by `h / n`, none unless 90% exist.
fn realized(candles: &[Candle], origin: i64, h: i64) -> Option<f64> {
    let close_at = |open: i64| candles.iter().find(|c| c.open_time == open).map(|c| c.close);
    let mut sum = 0.0;
    let mut n = 0;
    for k in 0..h {
        // The candle opening at origin + k closes within the window; its return needs the one before.
        if let (Some(c), Some(p)) = (
            close_at(origin + k * HOUR_MS),
            close_at(origin + (k - 1) * HOUR_MS),
        ) {
            sum += (c / p).ln().powi(2);
            n += 1;
        }
    }
    (10 * n >= 9 * h).then(|| sum * h as f64 / f64::from(u32::try_from(n).unwrap()))
}

/// The request candles of a forecast at `origin`: the last 889 before it.
fn window_before(data: &[Candle], origin: i64) -> Vec<Value> {
    let upto: Vec<&Candle> = data.iter().filter(|c| c.open_time < origin).collect();
    upto[upto.len() - 889..]
        .iter()
        .map(|c| common::candle_json(c))
        .collect()
}

/// SPEC's liquidity-shortage label at `origin` for horizon `h`, computed here from the candles:
/// Amihud illiquidity `|r| / quote volume * 1e6` per hour, M_H its mean over the `h` hours
/// closing by a time (90% of them present), the label `M_H(origin + h) > 2 median` of the 720
/// values of M_H closing in `(origin - 720 h, origin]` (648 of them present, a non-zero median).
fn shortage(by_open: &std::collections::HashMap<i64, Candle>, origin: i64, h: i64) -> Option<bool> {
    let illiq = |open: i64| {
        let (c, p) = (by_open.get(&open)?, by_open.get(&(open - HOUR_MS))?);
        (c.quote_volume > 0.0).then(|| (c.close / p.close).ln().abs() / c.quote_volume * 1e6)
    };
    let m = |close: i64| {
        let values: Vec<f64> = (1..=h).filter_map(|k| illiq(close - k * HOUR_MS)).collect();
        (10 * values.len() >= 9 * usize::try_from(h).unwrap())
            .then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let mut past: Vec<f64> = (0..720).filter_map(|k| m(origin - k * HOUR_MS)).collect();
    if 10 * past.len() < 9 * 720 {
        return None;
    }
    past.sort_by(f64::total_cmp);
    let n = past.len();
    let median = if n % 2 == 1 {
        past[n / 2]
    } else {
        0.5 * (past[n / 2 - 1] + past[n / 2])
    };
    if median <= 0.0 {
        return None;
    }
    Some(m(origin + h * HOUR_MS)? > 2.0 * median)
}

/// The largest fall over the 4 hours after `origin`.
fn fall(candles: &[Candle], origin: i64) -> Option<f64> {
    let at = |open: i64| candles.iter().find(|c| c.open_time == open);
    let close = at(origin - HOUR_MS)?.close;
    let mut lowest = f64::INFINITY;
    for k in 0..4 {
        lowest = lowest.min(at(origin + k * HOUR_MS)?.low);
    }
    Some(1.0 - lowest / close)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_records_what_is_served_and_scores_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (data, store, state, app) = serving_sample(dir.path()).await;
    let today = day_origin(now_ms());
    // Thirteen origins whose week-long windows have all closed. Each is recorded exactly when
    // the POST route forecasts the candles up to it (the sample has gaps: an origin without its
    // candle, or whose window SPEC's rules refuse, is left out). Forecasts: asked for no sale,
    // since a sale is refused where the 4 h illiquidity is unknown (a gap among the origin's
    // last four hours; the sample ends at the current hour, so where its gaps fall moves with
    // the hour the test runs at), and the ledger records such a window under the rule it keeps
    // (README, "Risk engine"). `priced`: the origins the route also prices a sale at.
    let mut origins = Vec::new();
    let mut priced = Vec::new();
    for origin in (8..=20).rev().map(|d| today - d * DAY_MS) {
        let window = window_before(&data, origin);
        let status = |sale: f64| {
            let body = json!({"asset": ASSET, "candles": window, "sale_size_usd": sale});
            let app = app.clone();
            async move {
                common::call(&app, "POST", "/v1/risk/parameters", Some(&body))
                    .await
                    .0
            }
        };
        let serves = match window.last() {
            Some(last) if last["open_time"] == json!(origin - HOUR_MS) => status(0.0).await == 200,
            _ => false,
        };
        if serves && status(1e6).await == 200 {
            priced.push(origin);
        }
        assert_eq!(
            record_origin(&state, origin).await.unwrap(),
            usize::from(serves),
            "{origin}"
        );
        assert_eq!(record_origin(&state, origin).await.unwrap(), 0, "recorded once");
        if serves {
            origins.push(origin);
        }
    }
    assert!(origins.len() >= 10, "{origins:?}");

    // A record is what the POST routes serve on the candles up to its origin.
    assert!(!priced.is_empty(), "{origins:?}");
    let origin = priced[priced.len().min(4) - 1];
    let entries = store.unscored(100).await.unwrap();
    let entry = entries.iter().find(|e| e.origin == origin).unwrap();
    let record: LedgerRecord = serde_json::from_str(&entry.record).unwrap();
    let upto: Vec<Candle> = data.iter().filter(|c| c.open_time < origin).copied().collect();
    let window = window_before(&data, origin);
    let (status, vol, _) = common::call(
        &app,
        "POST",
        "/v1/forecast/volatility",
        Some(&json!({"asset": ASSET, "candles": window})),
    )
    .await;
    assert_eq!(status, 200, "{vol}");
    let served: Vec<f64> = vol["items"][0]["horizons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["variance"].as_f64().unwrap())
        .collect();
    assert_eq!(record.variance, served);
    let (_, risk, _) = common::call(
        &app,
        "POST",
        "/v1/risk/parameters",
        Some(&json!({"asset": ASSET, "candles": window})),
    )
    .await;
    let item = &risk["items"][0];
    assert_eq!(
        json!(record.liquidation_threshold),
        item["parameters"]["liquidation_threshold"]
    );
    assert_eq!(json!(record.drawdown), item["derivation"]["drawdown"]);

    // Nothing after the origin is read: a store cut at the origin records the same.
    let cut_dir = tempfile::tempdir().unwrap();
    let cut_store = store_with(cut_dir.path(), &upto).await;
    let cut = common::state_with_store(&artifact(), cut_store.clone(), FOREVER).await;
    assert_eq!(record_origin(&cut, origin).await.unwrap(), 1);
    assert_eq!(cut_store.unscored(10).await.unwrap()[0].record, entry.record);
    // ... and there, with no outcome yet, nothing is scored.
    assert_eq!(score_pending(&cut, now_ms()).await.unwrap(), 0);

    // Scoring: every entry, each outcome as computed here.
    assert_eq!(score_pending(&state, now_ms()).await.unwrap(), origins.len());
    assert_eq!(score_pending(&state, now_ms()).await.unwrap(), 0);
    let model = record.horizons.clone();
    let scored = store.scored(i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(scored.len(), origins.len());
    let mut qlikes = vec![Vec::new(); model.len()];
    let mut har_qlikes = vec![Vec::new(); model.len()];
    // The record keeps the served artifact's correction window (HAR operated is measured on it).
    assert_eq!(record.operated_days, Some(120));
    let by_open: std::collections::HashMap<i64, Candle> = data.iter().map(|c| (c.open_time, *c)).collect();
    let mut labelled = 0;
    let (mut points, mut breaches) = (0, 0);
    for e in &scored {
        let record: LedgerRecord = serde_json::from_str(&e.record).unwrap();
        let outcome: LedgerOutcome = serde_json::from_str(e.outcome.as_deref().unwrap()).unwrap();
        for (k, &h) in model.iter().enumerate() {
            let want = realized(&data, e.origin, i64::try_from(h).unwrap());
            let got = outcome.realized_variance[k];
            match (want, got) {
                (Some(w), Some(g)) => {
                    assert!((w - g).abs() <= 1e-12 * w, "{h} h at {}: {w} vs {g}", e.origin);
                }
                (w, g) => assert_eq!(w, g),
            }
            if let (Some(rv), Some(Some(g))) = (got, record.har_variance.get(k)) {
                qlikes[k].push(qlike(rv, record.variance[k]));
                har_qlikes[k].push(qlike(rv, *g));
            }
        }
        assert_eq!(outcome.drawdown, fall(&data, e.origin));
        for (k, &h) in model.iter().enumerate() {
            let want = shortage(&by_open, e.origin, i64::try_from(h).unwrap());
            assert_eq!(outcome.shortage[k], want, "shortage at {h} h, {}", e.origin);
            labelled += usize::from(want.is_some());
        }
        if let Some(f) = outcome.drawdown {
            points += 1;
            breaches += usize::from(f > record.drawdown);
        }
    }

    // The validation route aggregates exactly those.
    let (status, validation, _) = common::call(&app, "GET", "/v1/model/validation", None).await;
    assert_eq!(status, 200, "{validation}");
    let month = &validation["windows"][0];
    assert_eq!(
        (month["days"].clone(), month["entries"].clone()),
        (json!(30), json!(origins.len()))
    );
    for (k, q) in qlikes.iter().enumerate() {
        let h = &month["horizons"][k];
        assert_eq!(h["points"], json!(q.len()));
        let mean = q.iter().sum::<f64>() / q.len() as f64;
        assert!(
            (h["qlike_model"].as_f64().unwrap() - mean).abs() <= 1e-12 * mean,
            "{h}"
        );
        // Fewer completed forecasts than a correction needs (20): HAR operated is HAR, the
        // baseline.
        let har = har_qlikes[k].iter().sum::<f64>() / q.len() as f64;
        assert!(
            (h["qlike_har"].as_f64().unwrap() - har).abs() <= 1e-12 * har,
            "{h}"
        );
        assert_eq!(h["qlike_har_operated"], h["qlike_har"], "{h}");
        assert_eq!(h["baseline"], json!("har"), "{h}");
        let ratio = h["qlike_ratio"].as_f64().unwrap();
        assert!((ratio - mean / har).abs() <= 1e-12, "{h}");
        assert_eq!(
            h["coverage"].as_array().unwrap().len(),
            record.quantile_levels.len()
        );
    }
    assert!(labelled > 0, "no shortage label to check");
    assert_eq!(month["risk"]["points"], json!(points));
    assert_eq!(month["risk"]["breaches"], json!(breaches));
    assert_eq!(validation["windows"][1]["days"], json!(120));
    // One asset's figures: here the only asset, so the same; another asset has none.
    let (status, one, _) = common::call(&app, "GET", "/v1/model/validation?asset=SYNTH01", None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["asset"], json!(ASSET));
    assert_eq!(one["windows"][0]["horizons"], month["horizons"]);
    let (_, other, _) = common::call(&app, "GET", "/v1/model/validation?asset=OTHER", None).await;
    assert_eq!(other["windows"][0]["entries"], json!(0));
    let (status, _, _) = common::call(&app, "GET", "/v1/model/validation?assets=X", None).await;
    assert_eq!(status, 400);
    // An id no asset can have is a mistake, not an asset without figures.
    for bad in ["", "%00"] {
        let uri = format!("/v1/model/validation?asset={bad}");
        let (status, body, _) = common::call(&app, "GET", &uri, None).await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str(), body["field"].as_str()),
            (422, Some("invalid_value"), Some("asset")),
            "{bad}: {body}"
        );
    }
    // The pooled figures are gauges too.
    let (_, _, _) = common::call(&app, "GET", "/metrics", None).await;
    let rendered = state.metrics().render();
    let ratio = month["horizons"][0]["qlike_ratio"].as_f64().unwrap();
    let line = format!(
        "volcast_validation_qlike_ratio{{window_days=\"30\",horizon_hours=\"{}\"}} ",
        model[0]
    );
    let gauge: f64 = rendered
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .unwrap_or_else(|| panic!("{line}: {rendered}"))
        .parse()
        .unwrap();
    assert!((gauge - ratio).abs() <= 1e-12 * ratio);
    let mut briers = 0;
    for (name, key) in [
        ("volcast_validation_shortage_roc_auc", "shortage_roc_auc"),
        ("volcast_validation_shortage_brier", "shortage_brier"),
    ] {
        for (k, h) in model.iter().enumerate() {
            let Some(want) = month["horizons"][k][key].as_f64() else {
                continue;
            };
            briers += usize::from(key == "shortage_brier");
            let line = format!("{name}{{window_days=\"30\",horizon_hours=\"{h}\"}} ");
            let got: f64 = rendered
                .lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .unwrap_or_else(|| panic!("{line}: {rendered}"))
                .parse()
                .unwrap();
            assert!((got - want).abs() <= 1e-12, "{name} {h}: {got} vs {want}");
        }
    }
    // The Brier score exists wherever a shortage label does: each such horizon's was compared.
    let labelled = (0..model.len())
        .filter(|&k| month["horizons"][k]["shortage_points"].as_u64().unwrap() > 0)
        .count();
    assert!(labelled > 0 && briers == labelled, "{briers} of {labelled}");

    // A reopened store keeps the ledger: a new service reports the same.
    store.close().await;
    let reopened = Store::open(&common::process::store_url(dir.path()))
        .await
        .unwrap();
    let (again, _) = common::app_with_store(&artifact(), reopened, FOREVER).await;
    let (_, after, _) = common::call(&again, "GET", "/v1/model/validation", None).await;
    // (The windows end at the time of asking, so their bounds move on.)
    for w in 0..2 {
        for key in ["entries", "horizons", "risk"] {
            assert_eq!(after["windows"][w][key], validation["windows"][w][key], "{key}");
        }
    }
}

/// Whether the POST risk route serves the candles up to `origin` (its candle stored, its window
/// passing SPEC's rules).
async fn serves(app: &axum::Router, data: &[Candle], origin: i64) -> bool {
    let window = window_before(data, origin);
    match window.last() {
        Some(last) if last["open_time"] == json!(origin - HOUR_MS) => {
            let body = json!({"asset": ASSET, "candles": window});
            common::call(app, "POST", "/v1/risk/parameters", Some(&body))
                .await
                .0
                == 200
        }
        _ => false,
    }
}

/// A daily origin 9 to 20 days back that the routes serve (its windows closed by now).
/// One asset's 1,900 hours stored in `dir` and the default artifact served on them: the candles,
/// the store, the state and its app.
async fn serving_sample(
    dir: &std::path::Path,
) -> (Vec<Candle>, Store, volcast_server::state::AppState, axum::Router) {
    let data = common::sample_ending(1, 1900);
    let store = store_with(dir, &data).await;
    let state = common::state_with_store(&artifact(), store.clone(), FOREVER).await;
    let app = volcast_server::app(state.clone());
    (data, store, state, app)
}

async fn served_origin(app: &axum::Router, data: &[Candle]) -> i64 {
    let today = day_origin(now_ms());
    for d in 9..=20 {
        if serves(app, data, today - d * DAY_MS).await {
            return today - d * DAY_MS;
        }
    }
    panic!("no origin the routes serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_catches_up_the_last_week_once() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, state, app) = serving_sample(dir.path()).await;
    let now = now_ms();
    let today = day_origin(now);
    // Today's origin too (its candle, closing at 00:00, is stored), and the seven days before.
    let mut servable = Vec::new();
    for d in 0..=CATCH_UP_DAYS {
        let origin = today - d * DAY_MS;
        if serves(&app, &data, origin).await {
            servable.push(origin);
        }
    }
    let (recorded, scored) = run_once(&state, now).await.unwrap();
    assert_eq!(recorded, servable.len());
    // Each one whose 4 h window has closed (and its candles are stored, up to the last hour) is
    // scored at once, as far as its windows have closed.
    let now_hour = now.div_euclid(HOUR_MS) * HOUR_MS;
    assert_eq!(
        scored,
        servable.iter().filter(|&&o| o + 4 * HOUR_MS <= now_hour).count()
    );
    assert_eq!(run_once(&state, now).await.unwrap().0, 0);

    // An asset whose candle arrives after the day was recorded is recorded on the next pass.
    let late: Vec<Candle> = data.iter().filter(|c| c.open_time < today).copied().collect();
    state
        .store()
        .unwrap()
        .insert_candles("LATE", &late)
        .await
        .unwrap();
    let late_serves = usize::from(servable.contains(&today));
    assert_eq!(run_once(&state, now).await.unwrap().0, late_serves);
    assert_eq!(run_once(&state, now).await.unwrap().0, 0);

    // A served model whose corrections were measured through two days ago (the daily job's
    // artifact of that day) catches up no origin before then: it has seen what followed them,
    // and an entry would flatter it before the gate.
    let dir = tempfile::tempdir().unwrap();
    let fresh = common::state_with_store(&artifact(), store_with(dir.path(), &data).await, FOREVER).await;
    let serving = fresh.serving().unwrap();
    let mut info = (*serving.info).clone();
    let measured = today - 2 * DAY_MS;
    info.metadata.recalibration.as_mut().unwrap().until = volcast_core::time::format_ms(measured);
    fresh.set_serving(volcast_server::state::Serving {
        info: std::sync::Arc::new(info),
        queue: serving.queue.clone(),
        anomaly: None,
    });
    let after = servable.iter().filter(|&&o| o >= measured).count();
    assert!(after < servable.len(), "{servable:?}");
    assert_eq!(run_once(&fresh, now).await.unwrap().0, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_horizon_is_scored_as_its_window_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, store, full, app) = serving_sample(dir.path()).await;
    let origin = served_origin(&app, &data).await;
    let outcome = |e: &volcast_store::LedgerEntry| -> LedgerOutcome {
        serde_json::from_str(e.outcome.as_deref().unwrap()).unwrap()
    };

    // A service whose store has the candles up to 30 hours after the origin.
    let at = origin + 30 * HOUR_MS;
    let part: Vec<Candle> = data.iter().filter(|c| c.open_time < at).copied().collect();
    let cut_dir = tempfile::tempdir().unwrap();
    let cut_store = store_with(cut_dir.path(), &part).await;
    let cut = common::state_with_store(&artifact(), cut_store.clone(), FOREVER).await;
    assert_eq!(record_origin(&cut, origin).await.unwrap(), 1);
    // Before the first window (4 h, the drawdown's too) closes, nothing is scored.
    assert_eq!(score_pending(&cut, origin + 3 * HOUR_MS).await.unwrap(), 0);
    // 30 hours on: the 4 h and 24 h horizons and the fall, each as computed here; the week open.
    assert_eq!(score_pending(&cut, at).await.unwrap(), 1);
    let scored = cut_store.scored(origin, origin).await.unwrap();
    let first = outcome(&scored[0]);
    let record: LedgerRecord = serde_json::from_str(&scored[0].record).unwrap();
    assert_eq!(record.horizons, [4, 24, 168]);
    assert_eq!(first.open_horizons, [168]);
    for (k, h) in [(0, 4), (1, 24)] {
        let (want, got) = (
            realized(&data, origin, h).unwrap(),
            first.realized_variance[k].unwrap(),
        );
        assert!((want - got).abs() <= 1e-12 * want, "{h} h: {want} vs {got}");
    }
    assert_eq!(first.realized_variance[2], None);
    assert_eq!(first.shortage[2], None);
    assert_eq!(first.drawdown, fall(&data, origin));
    // Still to score, and nothing new to write until the week's window closes.
    assert_eq!(cut_store.unscored(10).await.unwrap().len(), 1);
    assert_eq!(score_pending(&cut, at + 2 * DAY_MS).await.unwrap(), 0);
    // Its time passed but its candles missing: still open.
    assert_eq!(score_pending(&cut, origin + 168 * HOUR_MS).await.unwrap(), 0);

    // The week's candles arrive: complete, and exactly what scoring it all at once gives.
    let rest: Vec<Candle> = data
        .iter()
        .filter(|c| c.open_time >= at && c.open_time < origin + 168 * HOUR_MS)
        .copied()
        .collect();
    cut_store.insert_candles(ASSET, &rest).await.unwrap();
    assert_eq!(score_pending(&cut, origin + 168 * HOUR_MS).await.unwrap(), 1);
    assert!(cut_store.unscored(10).await.unwrap().is_empty());
    let last = outcome(&cut_store.scored(origin, origin).await.unwrap()[0]);
    assert!(last.open_horizons.is_empty());
    assert_eq!(record_origin(&full, origin).await.unwrap(), 1);
    assert_eq!(score_pending(&full, now_ms()).await.unwrap(), 1);
    assert_eq!(outcome(&store.scored(origin, origin).await.unwrap()[0]), last);
    assert_eq!(
        (
            last.realized_variance[0],
            last.realized_variance[1],
            last.drawdown
        ),
        (
            first.realized_variance[0],
            first.realized_variance[1],
            first.drawdown
        ),
        "what was scored early stays"
    );
}

/// A window whose last candle the exchange never had is scored by SPEC's 90% rule, as
/// `evaluate` scores it, not lost: the week's last hour missing, a later candle stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_without_its_last_candle_is_scored_by_the_ninety_percent_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, _, app) = serving_sample(dir.path()).await;
    let origin = served_origin(&app, &data).await;
    // The candles up to two hours past the week, without the week's last one.
    let gone = origin + 167 * HOUR_MS;
    let part: Vec<Candle> = data
        .iter()
        .filter(|c| c.open_time < origin + 170 * HOUR_MS && c.open_time != gone)
        .copied()
        .collect();
    assert!(
        data.iter().any(|c| c.open_time == gone),
        "the sample has the hour"
    );
    let cut_dir = tempfile::tempdir().unwrap();
    let cut_store = store_with(cut_dir.path(), &part).await;
    let cut = common::state_with_store(&artifact(), cut_store.clone(), FOREVER).await;
    assert_eq!(record_origin(&cut, origin).await.unwrap(), 1);
    assert_eq!(score_pending(&cut, origin + 170 * HOUR_MS).await.unwrap(), 1);
    let scored = cut_store.scored(origin, origin).await.unwrap();
    let outcome: LedgerOutcome = serde_json::from_str(scored[0].outcome.as_deref().unwrap()).unwrap();
    assert!(outcome.open_horizons.is_empty());
    let (want, got) = (
        realized(&part, origin, 168).unwrap(),
        outcome.realized_variance[2].expect("167 of 168 returns: scored"),
    );
    assert!((want - got).abs() <= 1e-12 * want, "{want} vs {got}");
    // What the full week gives differs: the rule rescaled 167 returns.
    assert!((realized(&data, origin, 168).unwrap() - got).abs() > 1e-12 * got);
}

/// An entry whose asset's candles stop (delisted, no longer followed) is not left open for
/// good, ahead of every newer entry in the scoring queue: once the store's other assets are 30
/// days past its week's end, the week is judged on what is stored (missing, by SPEC's 90% rule)
/// and the entry is complete. A store that stopped altogether gives up on nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_candles_stop_is_completed_thirty_days_after_its_window() {
    use volcast_server::ledger::GIVE_UP_MS;
    let dir = tempfile::tempdir().unwrap();
    let (data, _, _, app) = serving_sample(dir.path()).await;
    let origin = served_origin(&app, &data).await;
    // The candles stop two days after the origin.
    let part: Vec<Candle> = data
        .iter()
        .filter(|c| c.open_time < origin + 48 * HOUR_MS)
        .copied()
        .collect();
    let cut_dir = tempfile::tempdir().unwrap();
    let cut_store = store_with(cut_dir.path(), &part).await;
    let cut = common::state_with_store(&artifact(), cut_store.clone(), FOREVER).await;
    assert_eq!(record_origin(&cut, origin).await.unwrap(), 1);
    let week_end = origin + 168 * HOUR_MS;
    // 4 h and 24 h scored; the week waits for its candles, and waits still a day short of the
    // thirty.
    assert_eq!(score_pending(&cut, week_end).await.unwrap(), 1);
    assert_eq!(cut_store.unscored(10).await.unwrap().len(), 1);
    // Nothing else stored: the whole store stopped, and the week waits however long.
    let much_later = week_end + 3 * GIVE_UP_MS;
    assert_eq!(score_pending(&cut, much_later).await.unwrap(), 0);
    // Another asset stored a day short of the thirty past the week, then at the thirty.
    let other = |open_time: i64| Candle {
        open_time,
        ..part[part.len() - 1]
    };
    let store_other = |t: i64| {
        let store = cut_store.clone();
        async move { store.insert_candles("OTHER", &[other(t)]).await.unwrap() }
    };
    store_other(week_end + GIVE_UP_MS - DAY_MS).await;
    assert_eq!(score_pending(&cut, much_later).await.unwrap(), 0);
    store_other(week_end + GIVE_UP_MS).await;
    assert_eq!(score_pending(&cut, much_later).await.unwrap(), 1);
    assert!(cut_store.unscored(10).await.unwrap().is_empty());
    let scored = cut_store.scored(origin, origin).await.unwrap();
    let outcome: LedgerOutcome = serde_json::from_str(scored[0].outcome.as_deref().unwrap()).unwrap();
    assert!(outcome.open_horizons.is_empty(), "{outcome:?}");
    assert_eq!(outcome.realized_variance[2], None);
    assert!(outcome.realized_variance[1].is_some());
}

/// A ledger of `assets` assets over the `days` daily origins before today, written straight
/// into a store: HAR forecasts 1e-4, the model 1.7e-4, and the realized variance runs at about
/// three times HAR's more than 120 days back and twice since.
async fn synthetic_ledger(store: &Store, assets: usize, days: i64) -> Vec<(i64, [f64; 3])> {
    let today = day_origin(now_ms());
    let mut points = Vec::new();
    for k in 1..=days {
        let origin = today - k * DAY_MS;
        for a in 0..assets {
            let level = if k > 120 { 3.0 } else { 2.0 };
            let rv = [0, 1, 2].map(|j| {
                let n = k * 7 + i64::try_from(a * 5 + j).unwrap();
                1e-4 * level * (1.0 + 0.4 * ((n % 11) as f64 / 11.0 - 0.5))
            });
            let record = LedgerRecord {
                horizons: vec![4, 24, 168],
                variance: vec![1.7e-4; 3],
                har_variance: vec![Some(1e-4); 3],
                quantile_levels: Vec::new(),
                quantiles: vec![Vec::new(); 3],
                shortage_probability: vec![0.1; 3],
                alpha: 0.99,
                tau_hours: 4.0,
                drawdown: 0.1,
                liquidation_threshold: 0.8,
                har_drawdown: Some(0.1),
                policy: "model".into(),
                har_horizons: None,
                operated_days: Some(120),
            };
            let outcome = LedgerOutcome {
                realized_variance: rv.map(Some).to_vec(),
                drawdown: Some(0.01),
                shortage: vec![Some(false); 3],
                open_horizons: Vec::new(),
            };
            let entry = volcast_store::LedgerEntry {
                asset: format!("A{a}"),
                origin,
                model_id: "m".into(),
                record: serde_json::to_string(&record).unwrap(),
                outcome: None,
            };
            assert!(store.record_forecast(&entry).await.unwrap());
            store
                .set_outcome(&entry, &serde_json::to_string(&outcome).unwrap(), false)
                .await
                .unwrap();
            points.push((origin, rv));
        }
    }
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validation_route_compares_with_har_operated_measured_before_its_windows_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&common::process::store_url(dir.path()))
        .await
        .unwrap();
    let points = synthetic_ledger(&store, 3, 260).await;
    let (app, _) = common::app_with_store(&artifact(), store, FOREVER).await;
    let (status, body, _) = common::call(&app, "GET", "/v1/model/validation", None).await;
    assert_eq!(status, 200, "{body}");
    for (w, days) in [(0, 30), (1, 120)] {
        let window = &body["windows"][w];
        // Origins from `days` days before now: the last `days - 1` days' (now is past 00:00).
        let today = day_origin(now_ms());
        let counted: Vec<&(i64, [f64; 3])> = points.iter().filter(|p| p.0 > today - days * DAY_MS).collect();
        assert_eq!(window["entries"], json!(counted.len()), "{days} days");
        for (j, h) in [4_i64, 24, 168].into_iter().enumerate() {
            // HAR operated by brute force: 1e-4 times the mean RV / F of every asset's
            // forecasts from the 120 days before each origin whose windows had ended.
            let (mut operated, mut har) = (0.0, 0.0);
            for (origin, rv) in &counted {
                let past: Vec<f64> = points
                    .iter()
                    .filter(|p| p.0 >= origin - 120 * DAY_MS && p.0 <= origin - h * HOUR_MS)
                    .map(|p| p.1[j] / 1e-4)
                    .collect();
                assert!(past.len() >= 20);
                let scale = past.iter().sum::<f64>() / past.len() as f64;
                operated += qlike(rv[j], scale * 1e-4);
                har += qlike(rv[j], 1e-4);
            }
            let n = counted.len() as f64;
            let (operated, har) = (operated / n, har / n);
            let skill = &window["horizons"][j];
            let got = skill["qlike_har_operated"].as_f64().unwrap();
            assert!(
                (got - operated).abs() <= 1e-9 * operated,
                "{days} d, {h} h: {got} vs {operated}"
            );
            let better = if operated < har { "har_operated" } else { "har" };
            if days == 30 {
                // Since day 120 the level is steady: corrected, HAR is the better.
                assert_eq!(better, "har_operated");
            }
            assert_eq!(skill["baseline"], json!(better), "{skill}");
            let model = skill["qlike_model"].as_f64().unwrap();
            let ratio = skill["qlike_ratio"].as_f64().unwrap();
            assert!((ratio - model / operated.min(har)).abs() <= 1e-9, "{skill}");
        }
    }
    // One asset's figures: its own points, HAR operated still corrected by every asset's
    // ratios (pooled, as the daily correction is), not by its own alone.
    let (status, one, _) = common::call(&app, "GET", "/v1/model/validation?asset=A1", None).await;
    assert_eq!(status, 200, "{one}");
    let today = day_origin(now_ms());
    let j = 1;
    let scale_at = |origin: i64, own: bool| {
        let past: Vec<f64> = points
            .iter()
            .enumerate()
            .filter(|(i, p)| (!own || i % 3 == 1) && p.0 >= origin - 120 * DAY_MS && p.0 <= origin - DAY_MS)
            .map(|(_, p)| p.1[j] / 1e-4)
            .collect();
        past.iter().sum::<f64>() / past.len() as f64
    };
    let (mut pooled, mut own) = (0.0, 0.0);
    let mine: Vec<&(i64, [f64; 3])> = points
        .iter()
        .enumerate()
        .filter(|(i, p)| i % 3 == 1 && p.0 > today - 30 * DAY_MS)
        .map(|(_, p)| p)
        .collect();
    for (origin, rv) in &mine {
        pooled += qlike(rv[j], scale_at(*origin, false) * 1e-4);
        own += qlike(rv[j], scale_at(*origin, true) * 1e-4);
    }
    let n = mine.len() as f64;
    let (pooled, own) = (pooled / n, own / n);
    let got = one["windows"][0]["horizons"][j]["qlike_har_operated"]
        .as_f64()
        .unwrap();
    assert_eq!(one["windows"][0]["entries"], json!(mine.len()));
    assert!((got - pooled).abs() <= 1e-9 * pooled, "{got} vs {pooled}");
    assert!(
        (got - own).abs() > 1e-9 * own,
        "the asset's own ratios give the same: no check"
    );
    // A regate of the same ledger over the same origins reports the same HAR operated: it
    // reads as far before its period too.
    let regated = volcast_server::replay::regate_replay(
        &common::process::store_url(dir.path()),
        &volcast_server::gate::GateRule::DEFAULT,
        today - 119 * DAY_MS,
        today - DAY_MS,
    )
    .await
    .unwrap();
    for j in 0..3 {
        let route = body["windows"][1]["horizons"][j]["qlike_har_operated"]
            .as_f64()
            .unwrap();
        let replayed = regated.summary.horizons[j].qlike_har_operated.unwrap();
        assert!((route - replayed).abs() <= 1e-12 * route, "{route} vs {replayed}");
    }
}
