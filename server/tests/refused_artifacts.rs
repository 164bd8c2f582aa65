//! Damaged or uncalibrated artifacts never become the served model: the real `server` binary
//! refuses them at start (exit 1, a message naming the problem) and at a SIGHUP reload (the old
//! model keeps serving, `/readyz` stays 200, and the failed-reload counter says so). The
//! committed default artifact is the healthy one; each case is a copy of it with one fault.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::path::{Path, PathBuf};

use common::process::{assert_still_serving, get, signal, start, start_and_wait, wait_for};
use serde_json::Value;
use volcast_model::artifact::{self, METADATA, WEIGHTS};

fn committed_default() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    artifact::resolve(&Path::new(&manifest).join("../model-artifacts")).unwrap()
}

/// A copy of the committed default artifact in `out/<name>`.
fn copy_default(out: &Path, name: &str) -> PathBuf {
    let from = committed_default();
    let dir = out.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// Rewrites the copy's metadata through `edit` and gives it the id `save` would have given it,
/// so that each case meets the check of its own fault rather than the id every edit breaks
/// (`hand_edited` keeps the old id).
fn edit_metadata(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join(METADATA);
    let mut meta: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut meta);
    let mut meta: artifact::Metadata = serde_json::from_value(meta).unwrap();
    let weights = std::fs::read(dir.join(WEIGHTS)).unwrap();
    let config = std::fs::read_to_string(dir.join(artifact::CONFIG)).unwrap();
    meta.id = artifact::id_of(&weights, &config, &meta).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&meta).unwrap()).unwrap();
}

/// The faulty copies, by name, with a word their refusal must contain.
fn faulty(out: &Path) -> Vec<(&'static str, PathBuf, &'static str)> {
    let flipped = copy_default(out, "flipped");
    let weights = flipped.join(WEIGHTS);
    let mut bytes = std::fs::read(&weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();

    let no_horizons = copy_default(out, "no-horizons");
    edit_metadata(&no_horizons, |m| m["horizons"] = Value::Array(Vec::new()));

    let zero_scaler = copy_default(out, "zero-scaler");
    edit_metadata(&zero_scaler, |m| {
        for s in m["scaler"]["channel_std"].as_array_mut().unwrap() {
            *s = 0.0.into();
        }
    });

    // A daily job's corrections that cannot be served: refused at load, not a failure on
    // every request.
    let bad_scale = copy_default(out, "bad-correction");
    edit_metadata(&bad_scale, |m| {
        m["recalibration"]["variance_scale"]["24"] = (-1.0).into();
    });

    // What an interrupted `train` would have left: no calibration and no word on why.
    let silent = copy_default(out, "silently-uncalibrated");
    edit_metadata(&silent, |m| {
        m.as_object_mut().unwrap().remove("risk");
    });

    // Metadata that no longer names what the configured heads give: other quantile levels
    // (coverage would be read against the wrong ones), or a horizon more (a wrong stride).
    let other_levels = copy_default(out, "other-levels");
    edit_metadata(&other_levels, |m| {
        m["quantile_levels"] = serde_json::json!([0.1, 0.5, 0.9, 0.99]);
    });
    let extra_horizon = copy_default(out, "extra-horizon");
    edit_metadata(&extra_horizon, |m| {
        m["horizons"] = serde_json::json!([4, 24, 168, 336]);
        m.as_object_mut().unwrap().remove("ensemble_horizon_weights");
    });

    // An anomaly detector that cannot be read: never a new model served with the old detector.
    let bad_detector = copy_default(out, "bad-detector");
    std::fs::write(bad_detector.join("anomaly.json"), "{ not a detector").unwrap();
    // One that is a directory: refused too, not served as if there were none.
    let dir_detector = copy_default(out, "directory-detector");
    std::fs::remove_file(dir_detector.join("anomaly.json")).unwrap();
    std::fs::create_dir(dir_detector.join("anomaly.json")).unwrap();

    // A plausible hand edit (the week's fall quantile cut by a tenth, a higher LT) keeps the
    // old id, which the edited metadata no longer hashes to.
    let hand_edited = copy_default(out, "hand-edited");
    let path = hand_edited.join(METADATA);
    let mut meta: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let u = &mut meta["risk"]["model"]["windows"][8]["quantiles"][5][1];
    *u = (u.as_f64().unwrap() * 0.9).into();
    std::fs::write(&path, serde_json::to_string_pretty(&meta).unwrap()).unwrap();

    // A calibration that cannot be served: the week's fall quantiles turned negative.
    let negative = copy_default(out, "negative-quantiles");
    edit_metadata(&negative, |m| {
        for q in m["risk"]["model"]["windows"][8]["quantiles"]
            .as_array_mut()
            .unwrap()
        {
            q[1] = (-q[1].as_f64().unwrap()).into();
        }
    });

    let declared = declared_uncalibrated(out);
    vec![
        ("hand-edited", hand_edited, "metadata.json hashes to id"),
        ("negative-quantiles", negative, "risk.model: window 168 h"),
        ("bad-detector", bad_detector, "anomaly detector"),
        ("directory-detector", dir_detector, "anomaly detector"),
        ("other-levels", other_levels, "edited by hand"),
        ("extra-horizon", extra_horizon, "edited by hand"),
        ("flipped", flipped, "damaged or replaced"),
        ("no-horizons", no_horizons, "horizons []"),
        ("zero-scaler", zero_scaler, "scaler"),
        ("bad-correction", bad_scale, "variance_scale at 24h"),
        ("silently-uncalibrated", silent, "does not say why"),
        ("declared-uncalibrated", declared, "--allow-uncalibrated"),
    ]
}

/// An artifact that says why it has no calibration: served only with `--allow-uncalibrated`.
fn declared_uncalibrated(out: &Path) -> PathBuf {
    let dir = copy_default(out, "declared-uncalibrated");
    edit_metadata(&dir, |m| {
        let m = m.as_object_mut().unwrap();
        m.remove("risk");
        m.insert(
            "uncalibrated".into(),
            "too little history to calibrate: a test".into(),
        );
    });
    dir
}

#[test]
fn faulty_artifacts_are_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, dir, why) in faulty(tmp.path()) {
        let (ok, stderr) = start_and_wait(&dir, &[]);
        assert!(!ok, "{name}: the server started");
        assert!(stderr.contains(why), "{name}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncalibrated_artifact_that_says_so_is_served_only_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = declared_uncalibrated(tmp.path());
    let server = start(&dir, &["--allow-uncalibrated"]);
    let client = reqwest::Client::new();
    let ready = wait_for(&client, format!("{}/readyz", server.base), |b| {
        b.contains(r#""status":"ready""#)
    })
    .await;
    assert!(ready.contains(r#""status":"ready""#), "{ready}");
    let status = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_artifacts_are_refused_at_reload_and_the_old_model_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    let good = copy_default(&artifacts, "good");
    let good_id = artifact::read_metadata(&good).unwrap().id;
    artifact::set_default(&artifacts, "good").unwrap();
    let faults = faulty(&artifacts);

    let server = start(&artifacts, &[]);
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let card = wait_for(&client, format!("{base}/v1/model"), |b| b.contains(&good_id)).await;
    assert!(card.contains(&good_id), "{card}");

    for (i, (name, _, _)) in faults.iter().enumerate() {
        artifact::set_default(&artifacts, name).unwrap();
        signal(&server, "-HUP");
        let failed = format!(r#"volcast_model_reloads_total{{outcome="failed"}} {}"#, i + 1);
        let metrics = wait_for(&client, format!("{base}/metrics"), |b| b.contains(&failed)).await;
        assert!(metrics.contains(&failed), "{name}: {metrics}");
        assert_still_serving(&client, &base, &good_id, name).await;
    }
    assert!(
        !get(&client, format!("{base}/metrics"))
            .await
            .contains(r#"outcome="ok""#),
        "no faulty artifact was swapped in"
    );
}
