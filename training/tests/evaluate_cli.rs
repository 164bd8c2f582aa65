//! The `evaluate` binary as a user runs it.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;
use common::cli::{generate, run};

#[test]
fn evaluate_writes_the_documented_json_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    generate(&data, 150);
    let json = dir.path().join("eval.json");
    let md = dir.path().join("eval.md");
    let out = run(
        env!("CARGO_BIN_EXE_evaluate"),
        &[
            "--data",
            data.to_str().unwrap(),
            "--fit-until",
            "2020-04-15",
            "--eval-from",
            "2020-04-16",
            "--eval-until",
            "2020-05-20",
            "--json",
            json.to_str().unwrap(),
            "--report",
            md.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("pooled QLIKE"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for h in ["4", "24", "168"] {
        let hz = &v["horizons"][h];
        assert!(hz["n_points"].as_u64().unwrap() > 0, "{h}");
        for name in ["ewma", "garch", "har"] {
            assert!(hz["qlike"][name].as_f64().unwrap() > 0.0, "{h} {name}");
        }
        assert!(hz.get("dm").is_some());
        assert!(hz["shortage"]["base_rate"].is_number());
        assert!(hz["per_asset"].is_array());
    }
    for name in ["static", "garch"] {
        for field in ["breach_rate", "mean_lt", "n"] {
            assert!(v["risk"]["policies"][name][field].is_number(), "{name}.{field}");
        }
    }
    assert_eq!(v["config"]["eval_until"], "2020-05-20T23:59:59Z");
    let report = std::fs::read_to_string(&md).unwrap();
    assert!(
        report.contains("Per asset") && report.contains("SYNTH02"),
        "{report}"
    );
}

#[test]
fn evaluate_explains_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let out = run(
        env!("CARGO_BIN_EXE_evaluate"),
        &["--data", missing.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read directory"), "{err}");

    std::fs::write(
        dir.path().join("BAD.csv"),
        "open_time,open,high,low,close,volume,quote_volume\n0,1,1,1,1,1,1\n3600000,1,1,1,-1,1,1\n",
    )
    .unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_evaluate"),
        &["--data", dir.path().to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("BAD.csv") && err.contains("row 1") && err.contains("close"),
        "{err}"
    );

    let out = run(
        env!("CARGO_BIN_EXE_evaluate"),
        &["--data", dir.path().to_str().unwrap(), "--fit-until", "someday"],
    );
    // Settings that would change nothing are refused, not ignored: the model's without a
    // model, and the daily job's on stored corrections.
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-artifacts");
    let default = artifacts.join(std::fs::read_to_string(artifacts.join("default")).unwrap().trim());
    for (args, says) in [
        (vec!["--rolling-days", "30"], "--rolling-days acts on the model"),
        (
            vec!["--fixed-recalibration"],
            "--fixed-recalibration acts on the model",
        ),
        (vec!["--quantile-step", "0.002"], "acts on the model"),
        (
            vec![
                "--model",
                default.to_str().unwrap(),
                "--fixed-recalibration",
                "--quantile-step",
                "0.002",
            ],
            "would change nothing",
        ),
    ] {
        let out = run(
            env!("CARGO_BIN_EXE_evaluate"),
            &[&["--data", dir.path().to_str().unwrap()][..], &args].concat(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fit-until"));
    // A risk setting out of range is refused before the data is read (here: a missing
    // directory, which it was refused for instead).
    let out = run(
        env!("CARGO_BIN_EXE_evaluate"),
        &["--data", missing.to_str().unwrap(), "--alpha", "1.5"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--alpha"), "{err}");

    // An evaluation period after the data (150 days from 2020-01-01): nothing to score is an
    // error, not a report of NaN.
    let data = dir.path().join("candles");
    generate(&data, 150);
    let out = run(
        env!("CARGO_BIN_EXE_evaluate"),
        &[
            "--data",
            data.to_str().unwrap(),
            "--fit-until",
            "2020-04-15",
            "--eval-from",
            "2020-07-01",
            "--eval-until",
            "2020-08-01",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to score"), "{err}");
}
