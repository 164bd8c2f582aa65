//! Whatever replaces the served model takes its turn: a reload started while another swap is in
//! progress (a reload, the daily recalibration) waits for it and reads `default` only then, so
//! the last to start is the one served, never a reload that read an older `default` and
//! finished last.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::time::Duration;

use volcast_model::artifact;

/// The repository's artifacts copied into a temporary directory (kept alive by the answer), the
/// id `default` names there and the other shipped one, and an empty store beside them.
async fn copied_artifacts() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    String,
    &'static str,
    volcast_store::Store,
) {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    common::copy_tree(&common::repo().join("model-artifacts"), &artifacts);
    let served = artifact::read_metadata(&artifact::resolve(&artifacts).unwrap())
        .unwrap()
        .id;
    let other = if served == "693e44b5f740fc82" {
        "e511b0d43982c4cf"
    } else {
        "693e44b5f740fc82"
    };
    let store = volcast_store::Store::open(&format!("sqlite://{}", tmp.path().join("v.db").display()))
        .await
        .unwrap();
    (tmp, artifacts, served, other, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_waits_for_the_swap_in_progress() {
    let (_tmp, artifacts, served, other, store) = copied_artifacts().await;
    let config = volcast_server::config::Config::with_artifact(artifacts.clone()).unwrap();
    let state = common::state_with_config(&config, store).await;
    assert_eq!(state.serving().unwrap().info.metadata.id, served);

    // A swap in progress (its holder moves `default` to another artifact before it ends), and
    // a reload started meanwhile, while `default` still names the served artifact: the reload
    // reads `default` only once the swap is done, so it serves what the swap left.
    let swap = state.model_swap().await;
    let reload = tokio::spawn({
        let state = state.clone();
        let artifacts = artifacts.clone();
        let options = volcast_server::load_options(&config);
        async move { volcast_server::reload(&state, &artifacts, options, state.metrics()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reload.is_finished(), "the reload waits for the swap in progress");
    assert_eq!(state.serving().unwrap().info.metadata.id, served);
    artifact::set_default(&artifacts, other).unwrap();
    drop(swap);
    let (old, new) = reload.await.unwrap().unwrap();
    assert_eq!((old.as_str(), new.as_str()), (served.as_str(), other));
    assert_eq!(state.serving().unwrap().info.metadata.id, other);
}

/// A reload that fails keeps the old model and answers 503 `reload_failed` saying what failed,
/// never the directory the service keeps its artifacts in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_names_what_failed_not_the_artifacts_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("kept-here-artifacts");
    common::copy_tree(&common::repo().join("model-artifacts"), &artifacts);
    let store = volcast_store::Store::open(&format!("sqlite://{}", tmp.path().join("v.db").display()))
        .await
        .unwrap();
    let config = volcast_server::config::Config::with_artifact(artifacts.clone()).unwrap();
    let state = common::state_with_config(&config, store).await;
    state.set_reload_target(artifacts.clone(), volcast_server::load_options(&config));
    let served = state.serving().unwrap().info.metadata.id.clone();
    let dir = artifact::resolve(&artifacts).unwrap();
    std::fs::write(dir.join("metadata.json"), "{ not json").unwrap();
    let app = volcast_server::app(state.clone());
    let (status, body, _) = common::call(&app, "POST", "/v1/admin/reload", None).await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (503, &serde_json::json!("reload_failed")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("metadata.json") && !message.contains("kept-here"),
        "{message}"
    );
    assert_eq!(state.serving().unwrap().info.metadata.id, served);
}

/// A SIGHUP right after the server says it listens (while its store opens and its model loads)
/// is a reload once it is up, never the end of the process (SIGHUP's default action).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_while_the_server_starts_is_a_reload_not_an_exit() {
    use common::process::{signal, start, wait_for};
    let mut server = start(&common::repo().join("model-artifacts"), &[]);
    signal(&server, "-HUP");
    let client = reqwest::Client::new();
    let ready = wait_for(&client, format!("{}/readyz", server.base), |b| {
        b.contains(r#""status":"ready""#)
    })
    .await;
    assert!(server.child.try_wait().unwrap().is_none(), "the server exited");
    assert!(ready.contains(r#""status":"ready""#), "{ready}");
    let ok = r#"volcast_model_reloads_total{outcome="ok"} 1"#;
    let metrics = wait_for(&client, format!("{}/metrics", server.base), |b| b.contains(ok)).await;
    assert!(metrics.contains(ok), "{metrics}");
}

/// A service on the artifacts in `artifacts` (an SQLite store in `dir`), with its artifact's
/// anomaly detector installed as the server installs it: its config and state.
async fn detected_state(
    dir: &std::path::Path,
    artifacts: &std::path::Path,
) -> (volcast_server::config::Config, volcast_server::state::AppState) {
    let store = volcast_store::Store::open(&format!("sqlite://{}", dir.join("v.db").display()))
        .await
        .unwrap();
    let mut config = volcast_server::config::Config::with_artifact(artifacts.to_owned()).unwrap();
    config.max_staleness = Duration::from_secs(100_000 * 86_400);
    let state = common::state_with_config(&config, store).await;
    volcast_server::install_detector(&state, &state.serving().unwrap().info.dir).unwrap();
    (config, state)
}

/// Reloads between the two committed artifacts (each with its own anomaly detector) while
/// batches of risk requests are answered: every answer's detector is its model's, and a batch
/// is scored by one detector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_scored_by_its_models_detector_across_reloads() {
    use serde_json::{Value, json};
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    common::copy_tree(&common::repo().join("model-artifacts"), &artifacts);
    let ids = ["693e44b5f740fc82", "e511b0d43982c4cf"];
    let detector_of = |id: &str| {
        let text = std::fs::read_to_string(artifacts.join(id).join("anomaly.json")).unwrap();
        volcast_core::anomaly::Detector::from_json(&text).unwrap().id
    };
    let detectors: std::collections::HashMap<String, String> =
        ids.iter().map(|id| ((*id).to_owned(), detector_of(id))).collect();
    assert_ne!(
        detectors[ids[0]], detectors[ids[1]],
        "the two artifacts' detectors differ"
    );
    let (config, state) = detected_state(tmp.path(), &artifacts).await;
    let app = volcast_server::app(state.clone());
    let history = state.serving().unwrap().info.history_hours();
    let candles = common::market_json(3, 45);
    let window = Value::Array(candles[candles.len() - history..].to_vec());
    let body = json!({"items": (0..8).map(|i| json!({"asset": format!("A{i}"), "candles": window})).collect::<Vec<_>>()});
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let askers: Vec<_> = (0..3)
        .map(|_| {
            let (app, body, stop) = (app.clone(), body.clone(), std::sync::Arc::clone(&stop));
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, v, _) = common::call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
                    assert_eq!(status, 200, "{v}");
                    answers.push(v);
                }
                answers
            })
        })
        .collect();
    let options = volcast_server::load_options(&config);
    for k in 0..30 {
        artifact::set_default(&artifacts, ids[k % 2]).unwrap();
        volcast_server::reload(&state, &artifacts, options, state.metrics())
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut checked = 0;
    for asker in askers {
        for v in asker.await.unwrap() {
            let model = v["model"]["id"].as_str().unwrap();
            for item in v["items"].as_array().unwrap() {
                let detector = item["derivation"]["anomaly"]["detector"].as_str().unwrap();
                assert_eq!(
                    detector, detectors[model],
                    "model {model} answered with detector {detector}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 10, "{checked} answers");
}

/// A reload to a model that needs more candles than a request may carry (`--max-candles`) is
/// refused and the old model keeps serving, as at start: it could answer nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_model_the_limits_cannot_serve_keeps_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    common::copy_tree(&common::repo().join("model-artifacts"), &artifacts);
    let store = volcast_store::Store::open(&format!("sqlite://{}", tmp.path().join("v.db").display()))
        .await
        .unwrap();
    let config = volcast_server::config::Config::with_artifact(artifacts.clone()).unwrap();
    let state = common::state_with_config(&config, store).await;
    let served = state.serving().unwrap();
    let needed = served.info.history_hours();
    let with = |max_candles| volcast_server::config::LoadOptions {
        max_candles,
        ..volcast_server::load_options(&config)
    };
    let refused = volcast_server::reload(&state, &artifacts, with(needed - 1), state.metrics())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, volcast_server::LoadError::Limits(m) if m.contains(&format!("--max-candles {}", needed - 1))),
        "{refused}"
    );
    assert!(std::sync::Arc::ptr_eq(
        &state.serving().unwrap().info,
        &served.info
    ));
    // At the limit, it serves.
    volcast_server::reload(&state, &artifacts, with(needed), state.metrics())
        .await
        .unwrap();
    assert!(!std::sync::Arc::ptr_eq(
        &state.serving().unwrap().info,
        &served.info
    ));
}

/// `POST /v1/admin/reload` answered 503 `timeout` (it waited for the daily recalibration's
/// swap longer than the request timeout) still reloads once the swap is done: only the waiting
/// is given up, never the reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_request_that_times_out_still_reloads() {
    let (_tmp, artifacts, served, other, store) = copied_artifacts().await;
    let mut config = volcast_server::config::Config::with_artifact(artifacts.clone()).unwrap();
    config.request_timeout_ms = 300;
    let state = common::state_with_config(&config, store).await;
    state.set_reload_target(artifacts.clone(), volcast_server::load_options(&config));
    let app = volcast_server::app(state.clone());
    let swap = state.model_swap().await;
    artifact::set_default(&artifacts, other).unwrap();
    let (status, body, _) = common::call(&app, "POST", "/v1/admin/reload", None).await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (503, &serde_json::json!("timeout")),
        "{body}"
    );
    assert_eq!(state.serving().unwrap().info.metadata.id, served);
    drop(swap);
    for _ in 0..600 {
        if state.serving().unwrap().info.metadata.id == other {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the reload asked for was given up with the request");
}

/// A reload to an artifact without a detector serves none, as a start on that artifact does:
/// the detector of the artifact served before stayed (until stop 60), so the new model's
/// answers were scored by another fit's detector, which depended on the reload history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_an_artifact_without_a_detector_serves_none() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    common::copy_tree(&common::repo().join("model-artifacts"), &artifacts);
    common::copy_tree(
        &artifacts.join("693e44b5f740fc82"),
        &artifacts.join("without-detector"),
    );
    std::fs::remove_file(artifacts.join("without-detector/anomaly.json")).unwrap();
    let (config, state) = detected_state(tmp.path(), &artifacts).await;
    assert!(
        state.anomaly_scorer().is_some(),
        "the default artifact has its detector"
    );
    let options = volcast_server::load_options(&config);
    artifact::set_default(&artifacts, "without-detector").unwrap();
    volcast_server::reload(&state, &artifacts, options, state.metrics())
        .await
        .unwrap();
    assert!(
        state.anomaly_scorer().is_none(),
        "kept the previous artifact's detector {:?}",
        state.anomaly_scorer().map(|s| s.detector.id.clone())
    );
    // And back: the default's own detector again.
    artifact::set_default(&artifacts, "e511b0d43982c4cf").unwrap();
    volcast_server::reload(&state, &artifacts, options, state.metrics())
        .await
        .unwrap();
    assert!(state.anomaly_scorer().is_some());
}
