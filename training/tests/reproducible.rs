//! Training on the CPU is reproducible: the same command, on one thread or two, writes networks
//! (the default ensemble of three) that score the same to the last digit; the LSTM trained through its fused recurrence scores
//! as the one composed from tensor operations, to rounding.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Synthetic candles: three assets, 150 days from 2020-01-01 (to 2020-05-29).
fn generate(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_generate"))
        .args(["--out", dir.to_str().unwrap(), "--assets", "3", "--hours", "3600"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Trains on `data` into `out` with `extra` flags and returns the artifact's holdout and
/// validation figures (scored on the two months after the fit end).
fn train(data: &Path, out: &Path, extra: &[&str]) -> (Value, Value) {
    let mut args = vec![
        "--data",
        data.to_str().unwrap(),
        "--device",
        "cpu",
        "--fit-until",
        "2020-03-31",
        "--holdout-days",
        "15",
        "--epochs",
        "2",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(&args)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let artifact = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("metadata.json").is_file())
        .unwrap();
    let metadata: Value =
        serde_json::from_str(&std::fs::read_to_string(artifact.join("metadata.json")).unwrap()).unwrap();
    (metadata["holdout"].clone(), metadata["validation"].clone())
}

/// Every model QLIKE in `figures` (per horizon), in order.
fn model_qlike(figures: &Value) -> Vec<f64> {
    ["4", "24", "168"]
        .iter()
        .map(|h| figures[*h]["qlike"]["model"].as_f64().unwrap())
        .collect()
}

#[test]
fn the_same_command_trains_the_same_network() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    generate(&data);
    for threads in ["1", "2"] {
        let first = train(
            &data,
            &dir.path().join(format!("a{threads}")),
            &["--threads", threads],
        );
        let second = train(
            &data,
            &dir.path().join(format!("b{threads}")),
            &["--threads", threads],
        );
        assert_eq!(first, second, "{threads} threads");
        assert!(model_qlike(&first.1).iter().all(|q| q.is_finite()), "{}", first.1);
    }
}

#[test]
fn the_fused_and_composed_lstm_train_to_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    generate(&data);
    let run = |path: &str| {
        let out = dir.path().join(path);
        // One network each, so the holdout figures are the network's own (`model`).
        train(
            &data,
            &out,
            &["--encoder", "lstm", "--lstm-path", path, "--members", "1"],
        )
    };
    let (fused, composed) = (run("fused"), run("composed"));
    for (what, a, b) in [
        ("holdout", &fused.0, &composed.0),
        ("validation", &fused.1, &composed.1),
    ] {
        for (x, y) in model_qlike(a).into_iter().zip(model_qlike(b)) {
            assert!(x.is_finite() && y.is_finite(), "{what}: {a} {b}");
            assert!((x - y).abs() <= 1e-3 * y.abs(), "{what}: fused {x}, composed {y}");
        }
    }
}
