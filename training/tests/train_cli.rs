//! The `train` binary as a user runs it.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::path::Path;
use std::process::Command;

mod common;
use common::cli::{copy_tree, corrected_synth01, generate, generate_assets, run};

/// `--recency-half-life-days` trains with recent rows weighted up, `--refit-through-holdout`
/// trains until the fit end, `--weight-average-half-life-epochs` averages the weights and
/// `--per-horizon-epochs` serves each horizon from its own epochs, each recorded in the
/// artifact's config; a half-life that is not a positive number is refused, from
/// the command line or from a config file, and so is a refit that is not `true` or `false`.
/// The training config of the artifact `<out>/default` names, after `trained` succeeded.
fn default_config(trained: &std::process::Output, out: &Path) -> serde_json::Value {
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let id = std::fs::read_to_string(out.join("default")).unwrap();
    serde_json::from_str(&std::fs::read_to_string(out.join(id.trim()).join("config.json")).unwrap()).unwrap()
}

#[test]
fn train_weighs_recent_rows_and_refits_as_asked_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    generate(&data, 150);
    let out = dir.path().join("artifacts");
    let base = quick_run(&data, &out);
    let with = |extra: &[&str]| run(env!("CARGO_BIN_EXE_train"), &[&base[..], extra].concat());

    let trained = with(&[
        "--recency-half-life-days",
        "30",
        "--refit-through-holdout",
        "true",
        "--weight-average-half-life-epochs",
        "0.25",
        "--per-horizon-epochs",
        "true",
        "--networks-apart",
        "none",
        "--log-mse-variance",
        "true",
        "--lognormal-mean",
        "true",
        "--set-default",
    ]);
    let config = default_config(&trained, &out);
    assert_eq!(config["recency_half_life_days"], serde_json::json!(30.0));
    assert_eq!(config["refit_through_holdout"], serde_json::json!(true));
    assert_eq!(config["weight_average_half_life_epochs"], serde_json::json!(0.25));
    assert_eq!(config["per_horizon_epochs"], serde_json::json!(true));
    assert_eq!(config["log_mse_variance"], serde_json::json!(true));
    assert_eq!(config["model"]["lognormal_mean"], serde_json::json!(true));
    assert_eq!(config["networks_apart"], serde_json::Value::Null);
    // A config the model cannot be built or trained from: refused, naming the field, before
    // any data is read or network trained (it panicked, or trained for nothing).
    let bad_config = |edit: &dyn Fn(&mut volcast_model::config::TrainingConfig)| {
        let mut config = volcast_model::config::TrainingConfig::default_run();
        edit(&mut config);
        let path = dir.path().join("bad-config.json");
        std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
        let out = with(&["--config", path.to_str().unwrap()]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = bad_config(&|c| c.model.quantile_levels = vec![0.95, 0.5, 0.05, 0.99]);
    assert!(
        e.contains("model.quantile_levels") && e.contains("increasing"),
        "{e}"
    );
    // One level: the head's steps to the others are none (it panicked at the first step).
    let e = bad_config(&|c| c.model.quantile_levels = vec![0.5]);
    assert!(
        e.contains("model.quantile_levels") && e.contains("at least two"),
        "{e}"
    );
    let e = bad_config(&|c| c.model.n_static = 18);
    assert!(e.contains("model.n_static is 18"), "{e}");
    let e = bad_config(&|c| c.window = 0);
    assert!(e.contains("window is 0"), "{e}");
    let e = bad_config(&|c| c.learning_rate = -1.0);
    assert!(e.contains("learning_rate -1"), "{e}");
    let e = bad_config(&|c| c.grad_clip_norm = -1.0);
    assert!(e.contains("grad_clip_norm -1"), "{e}");
    let e = bad_config(&|c| c.market_dropout = 2.0);
    assert!(e.contains("market_dropout 2"), "{e}");
    // A learning rate the network cannot be trained at: said so at the first loss that is not a
    // number (it ended in a checkpoint error, naming a file no step had written).
    let e = bad_config(&|c| c.learning_rate = 1e30);
    assert!(
        e.contains("training diverged") && e.contains("(learning_rate 1e30)"),
        "{e}"
    );
    // A misspelt key: refused by name (it was dropped, and the default learning rate trained).
    let mut misspelt = serde_json::to_value(volcast_model::config::TrainingConfig::default_run()).unwrap();
    misspelt["learning_rat"] = serde_json::json!(0.1);
    let file = dir.path().join("misspelt.json");
    std::fs::write(&file, misspelt.to_string()).unwrap();
    let refused = with(&["--config", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("unknown field `learning_rat`"), "{err}");
    // A fit end after the data's last candle (150 days from 2020-01-01 end on 2020-05-29):
    // refused, naming that candle, before any training.
    let refused = with(&["--fit-until", "2020-07-01"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("after the data's last candle") && stderr.contains("2020-05-29T23:00:00Z"),
        "{stderr}"
    );
    // Per-horizon epochs beside the default's networks apart: refused, by name, before any data.
    let refused = with(&["--per-horizon-epochs", "true"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("networks_apart cannot be combined with per_horizon_epochs"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // The lognormal mean corrects the squared log error's head: refused with QLIKE's, by name.
    let refused = with(&["--lognormal-mean", "true"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("lognormal_mean needs log_mse_variance"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = with(&["--weight-average-half-life-epochs", "0"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--weight-average-half-life-epochs"));
    let refused = with(&["--refit-through-holdout", "maybe"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--refit-through-holdout"));
    // A budget of no step (it ran one step per session and recorded max_steps 0).
    let refused = with(&["--max-steps", "0"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--max-steps"));

    for bad in ["0", "-30", "soon", "0.5"] {
        let refused = with(&[&format!("--recency-half-life-days={bad}")]);
        assert!(!refused.status.success());
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("--recency-half-life-days"), "{bad}: {err}");
    }
    for (flag, bad) in [("--batch-size", "0"), ("--stride-hours", "0")] {
        let refused = with(&[flag, bad]);
        assert!(!refused.status.success(), "{flag} {bad}");
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains(&format!("{flag} 0")), "{err}");
    }
    // A config's encoder is kept unless `--encoder` is given (it was replaced by the flag's
    // default, tcn, without a word).
    let mut lstm = volcast_model::config::TrainingConfig::default_run();
    lstm.model.encoder = volcast_model::network::EncoderKind::Lstm;
    let file = dir.path().join("lstm.json");
    std::fs::write(&file, serde_json::to_string(&lstm).unwrap()).unwrap();
    let encoder_of = |extra: &[&str]| {
        let trained = with(&[&["--config", file.to_str().unwrap(), "--set-default"][..], extra].concat());
        default_config(&trained, &out)["model"]["encoder"].clone()
    };
    let (kept, overridden) = (encoder_of(&[]), encoder_of(&["--encoder", "tcn"]));
    assert_eq!(
        kept,
        serde_json::to_value(volcast_model::network::EncoderKind::Lstm).unwrap()
    );
    assert_eq!(
        overridden,
        serde_json::to_value(volcast_model::network::EncoderKind::Tcn).unwrap()
    );
    let mut negative = config;
    negative["recency_half_life_days"] = serde_json::json!(-30.0);
    let file = dir.path().join("negative.json");
    std::fs::write(&file, negative.to_string()).unwrap();
    let refused = with(&["--config", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("recency_half_life_days is -30"), "{err}");
}

#[test]
fn train_resumes_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    generate(&data, 150);
    let out = dir.path().join("artifacts");
    let ckpt = dir.path().join("ckpt");
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--device",
        "cpu",
        "--epochs",
        "40",
        "--holdout-days",
        "15",
        "--out",
        out.to_str().unwrap(),
        "--checkpoint-dir",
        ckpt.to_str().unwrap(),
        "--no-progress",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first checkpoint, then kill -9 in the middle of the next epoch.
    let pointer = ckpt.join("current");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !pointer.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(pointer.exists(), "no checkpoint within 2 minutes");
    // The pointer names a complete checkpoint: weights, optimiser and state together.
    let state = |ckpt: &Path| {
        let current = ckpt.join(std::fs::read_to_string(ckpt.join("current")).unwrap().trim());
        for file in ["best.bpk", "last.bpk", "optimizer.bpk"] {
            assert!(current.join(file).is_file(), "{file} missing beside the state");
        }
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(current.join("state.json")).unwrap(),
        )
        .unwrap()
    };
    let before = state(&ckpt);
    let epochs_before = before["history"].as_array().unwrap().len();
    assert!(epochs_before >= 1);

    // Resumed on another split, or on a changed candle file: refused, the checkpoint kept.
    let changed = dir.path().join("changed");
    copy_tree(&data, &changed);
    corrected_synth01(&changed, &changed);
    let mut other_split: Vec<&str> = args.to_vec();
    other_split.extend(["--fit-until", "2020-05-20", "--resume"]);
    let mut other_data: Vec<&str> = args.to_vec();
    other_data[1] = changed.to_str().unwrap();
    other_data.push("--resume");
    for refused in [other_split, other_data] {
        let out_run = run(env!("CARGO_BIN_EXE_train"), &refused);
        let stderr = String::from_utf8_lossy(&out_run.stderr);
        assert!(!out_run.status.success(), "{refused:?}: {stderr}");
        assert!(
            stderr.contains("another config, fit end or candle files"),
            "{stderr}"
        );
    }
    assert_eq!(
        state(&ckpt),
        before,
        "a refused resume left the checkpoint as it was"
    );

    // The same files under another directory name resume.
    let same = dir.path().join("same");
    copy_tree(&data, &same);
    let mut resumed: Vec<&str> = args.to_vec();
    resumed[1] = same.to_str().unwrap();
    resumed.push("--resume");
    let out_run = run(env!("CARGO_BIN_EXE_train"), &resumed);
    let stderr = String::from_utf8_lossy(&out_run.stderr);
    assert!(out_run.status.success(), "{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    let after = state(&ckpt);
    let history = after["history"].as_array().unwrap();
    assert!(history.len() > epochs_before, "resumed run trained further");
    // The epochs before the kill are kept as they were.
    assert_eq!(
        history[..epochs_before],
        before["history"].as_array().unwrap()[..]
    );
    assert!(String::from_utf8_lossy(&out_run.stdout).contains("artifact"));
}

/// `train --bench` times the step on the CPU at one and every thread, with the phase profile,
/// and on wgpu (software Vulkan in CI) also the CPU at the same batch sizes for the speed-up;
/// nothing is written.
#[test]
fn train_bench_prints_speed_and_profile() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    generate(&data, 150);
    let out_dir = dir.path().join("artifacts");
    let args = |device: &'static str, sizes: &'static str, threads: &'static str| {
        vec![
            "--bench".to_owned(),
            "--bench-steps".to_owned(),
            "3".to_owned(),
            "--bench-threads".to_owned(),
            threads.to_owned(),
            "--bench-batch-sizes".to_owned(),
            sizes.to_owned(),
            "--device".to_owned(),
            device.to_owned(),
            "--data".to_owned(),
            data.to_str().unwrap().to_owned(),
            "--fit-until".to_owned(),
            "2020-04-15".to_owned(),
            "--holdout-days".to_owned(),
            "15".to_owned(),
            "--out".to_owned(),
            out_dir.to_str().unwrap().to_owned(),
        ]
    };
    let cpu_args = args("cpu", "32,64", "1,2");
    let out = run(
        env!("CARGO_BIN_EXE_train"),
        &cpu_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| 32 |") || l.starts_with("| 64 |"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    for row in &rows {
        assert!(row[3].parse::<f64>().unwrap() > 0.0, "{stdout}");
    }
    for phase in [
        "| batch (features to tensors) |",
        "| forward and loss |",
        "| backward |",
        "| total |",
    ] {
        assert!(stdout.contains(phase), "{stdout}");
    }
    assert!(!out_dir.exists(), "--bench writes nothing");
    // A batch larger than the training rows stepped on no row: refused, not timed.
    let too_large = args("cpu", "32,1000000", "1");
    let out = run(
        env!("CARGO_BIN_EXE_train"),
        &too_large.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("bench batch size 1000000"), "{stderr}");

    let required = std::env::var_os("VOLCAST_REQUIRE_WGPU").is_some();
    let gpu_args = args("wgpu", "32", "1");
    let out = run(
        env!("CARGO_BIN_EXE_train"),
        &gpu_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !required && stderr.contains("no wgpu adapter") {
        eprintln!("skipping the wgpu half: {stderr}");
        return;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("speed-up over CPU"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("| 32 |") && l.ends_with("x |")),
        "{stdout}"
    );
}

/// An artifact published without a risk calibration (one asset: too few completed daily
/// forecasts at a week to measure its corrections) is said so on stderr, with what it means for
/// a default pointed at it.
#[test]
fn train_says_loudly_when_the_artifact_has_no_risk_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    generate_assets(&data, 120, 1);
    let out = dir.path().join("artifacts");
    let trained = run(
        env!("CARGO_BIN_EXE_train"),
        &[&quick_run(&data, &out)[..], &["--set-default"]].concat(),
    );
    let stderr = String::from_utf8_lossy(&trained.stderr);
    assert!(trained.status.success(), "{stderr}");
    let dir = volcast_model::artifact::resolve(&out).unwrap();
    assert!(
        volcast_model::artifact::read_metadata(&dir)
            .unwrap()
            .uncalibrated
            .is_some()
    );
    assert!(
        stderr.contains("NO risk calibration") && stderr.contains("now the default"),
        "{stderr}"
    );
}

/// A run of three steps of one epoch of one network on CPU, on `data`, into `out`.
fn quick_run<'a>(data: &'a Path, out: &'a Path) -> [&'a str; 15] {
    [
        "--data",
        data.to_str().unwrap(),
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--members",
        "1",
        "--holdout-days",
        "15",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ]
}

/// A `--bench-*` option without `--bench` is refused: it was ignored, and a normal training run
/// started in its place.
#[test]
fn bench_options_need_bench() {
    for flag in ["--bench-steps", "--bench-batch-sizes", "--bench-threads"] {
        let out = run(
            env!("CARGO_BIN_EXE_train"),
            &[flag, "5", "--data", "/nonexistent"],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: {err}");
        assert!(
            err.contains("the following required arguments were not provided") && err.contains("  --bench\n"),
            "{flag}: {err}"
        );
    }
}
