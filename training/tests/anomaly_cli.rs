//! The `anomaly` binary as a user runs it.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::process::Command;

/// A stated rate no fit can keep is refused before any data is read, naming the flag: 0 or a
/// negative rate gave thresholds that never flag, NaN null ones.
#[test]
fn train_refuses_a_rate_it_cannot_state() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("anomaly.json");
    for rate in ["0", "-1", "NaN", "100"] {
        let run = Command::new(env!("CARGO_BIN_EXE_anomaly"))
            .args([
                "train",
                "--fit-until",
                "2020-12-31",
                "--out",
                out.to_str().unwrap(),
            ])
            .arg(format!("--flags-per-month={rate}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{rate}: {stderr}");
        assert!(
            stderr.contains("--flags-per-month") && stderr.contains("(0, 72]"),
            "{rate}: {stderr}"
        );
        assert!(!out.exists(), "{rate}: a detector was written");
    }
}

/// A period that scores nothing is refused, not reported as zeros: `--from` after `--to`
/// (before anything is read), and a period after the data.
#[test]
fn evaluate_refuses_a_period_with_nothing_to_score() {
    let dir = tempfile::tempdir().unwrap();
    let anomaly = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_anomaly"))
            .args(["--data", dir.path().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let detector = dir.path().join("anomaly.json");
    let evaluate = |from: &str, to: &str| {
        anomaly(&[
            "evaluate",
            "--detector",
            detector.to_str().unwrap(),
            "--from",
            from,
            "--to",
            to,
        ])
    };
    let run = evaluate("2020-03-01", "2020-02-01");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && stderr.contains("--from is after --to"),
        "{stderr}"
    );
    // Three assets: too few for the market model, whose quantiles came out null, written to a
    // detector that never loaded. Refused, and nothing written.
    common::cli::generate(&dir.path().join("binance-spot-1h"), 120);
    let train = || {
        anomaly(&[
            "train",
            "--fit-until",
            "2020-03-31",
            "--out",
            detector.to_str().unwrap(),
        ])
    };
    let refused = train();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("at least 5 assets"),
        "{stderr}"
    );
    assert!(!detector.exists());
    let more = dir.path().join("more");
    common::cli::generate_assets(&more, 120, 6);
    std::fs::remove_dir_all(dir.path().join("binance-spot-1h")).unwrap();
    std::fs::rename(&more, dir.path().join("binance-spot-1h")).unwrap();
    let trained = train();
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let run = evaluate("2023-01-01", "2023-12-31");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && stderr.contains("nothing to score"),
        "{stderr}"
    );
    // The data's own months are scored.
    let run = evaluate("2020-04-01", "2020-04-29");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!String::from_utf8_lossy(&run.stdout).contains("In sample"));
    // A period that starts inside the detector's fit is scored, but said loudly to be in sample
    // (it was reported like a held-out score), in the JSON report too.
    let json = dir.path().join("report.json");
    let run = anomaly(&[
        "evaluate",
        "--detector",
        detector.to_str().unwrap(),
        "--from",
        "2020-03-01",
        "--to",
        "2020-04-29",
        "--json",
        json.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["in_sample"], serde_json::json!(true));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "{stderr}");
    assert!(
        stdout.contains("**In sample: the detector was fit on data until 2020-03-31")
            && stderr.contains("warning: In sample"),
        "{stdout}\n{stderr}"
    );
}

/// `--injections 0` is refused before anything is read (a recall over no injection was printed
/// as 0.000), and so is a `--json` that cannot be written.
#[test]
fn evaluate_refuses_no_injections_and_an_unwritable_report() {
    let dir = tempfile::tempdir().unwrap();
    let evaluate = |extra: &[&str]| {
        let run = Command::new(env!("CARGO_BIN_EXE_anomaly"))
            .args([
                "evaluate",
                "--detector",
                "/nonexistent.json",
                "--from",
                "2021-01-01",
                "--to",
                "2021-02-01",
            ])
            .args(extra)
            .output()
            .unwrap();
        (
            run.status.success(),
            String::from_utf8_lossy(&run.stderr).into_owned(),
        )
    };
    let (ok, stderr) = evaluate(&["--injections", "0"]);
    assert!(!ok && stderr.contains("--injections"), "{stderr}");
    let json = dir.path().join("nope/report.json");
    let (ok, stderr) = evaluate(&["--json", json.to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("--json") && stderr.contains("no directory"),
        "{stderr}"
    );
}

/// `folds` checks every year before it fits any: a year after the data wrote its fold's
/// detector and only then said there was nothing to score; one before the data (nothing to fit
/// on) is refused too (a year asked twice: the walk-forward's unit test).
#[test]
fn folds_refuse_a_year_without_data_before_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    common::cli::generate_assets(&dir.path().join("binance-spot-1h"), 30, 6);
    let out = dir.path().join("wf");
    // The generated candles open from 2020-01-01 for 30 days.
    for (years, said) in [("2030", "nothing to score"), ("2020", "nothing to fit on")] {
        let run = Command::new(env!("CARGO_BIN_EXE_anomaly"))
            .args(["--data", dir.path().to_str().unwrap(), "folds", "--years", years])
            .args(["--out", out.to_str().unwrap(), "--injections", "1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            !run.status.success() && stderr.contains(said),
            "{years}: {stderr}"
        );
        assert!(!out.exists(), "{years}: a fold was written");
    }
}
