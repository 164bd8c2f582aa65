//! Whatever replaces the served model takes its turn: a reload started while another swap is in
//! progress (a reload, the daily recalibration) waits for it, so the last to start is the one
//! served, never a reload that read an older `default` and finished last.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::path::Path;
use std::time::Duration;

use volcast_model::artifact;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_waits_for_the_swap_in_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    copy_tree(&common::repo().join("model-artifacts"), &artifacts);
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
    let config = volcast_server::config::Config::with_artifact(artifacts.clone()).unwrap();
    let state = common::state_with_config(&config, store).await;
    assert_eq!(state.serving().unwrap().info.metadata.id, served);

    artifact::set_default(&artifacts, other).unwrap();
    let swap = state.model_swap().await;
    let reload = tokio::spawn({
        let state = state.clone();
        let options = volcast_server::load_options(&config);
        async move { volcast_server::reload(&state, &artifacts, options, state.metrics()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reload.is_finished(), "the reload waits for the swap in progress");
    assert_eq!(state.serving().unwrap().info.metadata.id, served);
    drop(swap);
    let (old, new) = reload.await.unwrap().unwrap();
    assert_eq!((old.as_str(), new.as_str()), (served.as_str(), other));
    assert_eq!(state.serving().unwrap().info.metadata.id, other);
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
