//! The `walkforward` binary as a user runs it.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;
use common::cli::{copy_tree, run};

/// `walkforward` trains one network per fold on the years before it, scores each year as
/// `evaluate` does (HAR operated beside HAR), prints the summary with the worst fold, writes the
/// JSON and the HTML page, and on a second run reuses the folds' artifacts instead of retraining.
#[test]
fn walkforward_trains_and_scores_each_fold_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    std::fs::create_dir_all(&data).unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_generate"),
        &[
            "--out",
            data.to_str().unwrap(),
            "--assets",
            "3",
            "--hours",
            &(24 * 760).to_string(),
            "--start",
            "2019-06-01",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut config = volcast_model::config::TrainingConfig::default_run()
        .with_window(32)
        .with_batch_size(64)
        .with_stride_hours(6);
    config.model = config.model.with_channels(8).with_layers(3).with_hidden(16);
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let folds = dir.path().join("folds");
    let json = dir.path().join("wf.json");
    let html = dir.path().join("wf.html");
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--years",
        "2020,2021",
        "--out",
        folds.to_str().unwrap(),
        "--device",
        "cpu",
        "--config",
        config_path.to_str().unwrap(),
        "--epochs",
        "1",
        "--max-steps",
        "10",
        "--holdout-days",
        "15",
        "--no-progress",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ];
    let first = run(env!("CARGO_BIN_EXE_walkforward"), &args);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    for fold in [
        "| 2020 | 4h |",
        "| 2021 | 168h |",
        "Worst fold per horizon",
        "| 2021 |",
        "| pooled |",
    ] {
        assert!(stdout.contains(fold), "{fold}: {stdout}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let folds_json = v["folds"].as_array().unwrap();
    assert_eq!(folds_json.len(), 2);
    for f in folds_json {
        for h in f["horizons"].as_array().unwrap() {
            assert!(h["points"].as_u64().unwrap() > 0, "{h}");
            assert!(h["ratio"].as_f64().unwrap() > 0.0, "{h}");
        }
        // The daily job's state on every day of the fold's year.
        let days = f["days"].as_array().unwrap();
        assert!(days.len() >= 150, "{}", days.len());
        assert!(
            days[0]["day"].as_str().unwrap().ends_with("-01-01"),
            "{}",
            days[0]
        );
        assert!(f["equal_rate_lt"][0].as_f64().unwrap() > 0.0, "{f}");
        // The blend against fixed weights in hindsight: HAR alone (weight 0) and the network
        // alone (weight 1) are on the grid, so the best fixed weight is at least as good as both.
        let hindsight = f["blend_hindsight"].as_array().unwrap();
        assert_eq!(hindsight.len(), 3, "{f}");
        for b in hindsight {
            let x = |k: &str| b[k].as_f64().unwrap();
            assert!(b["points"].as_u64().unwrap() > 0, "{b}");
            assert!(x("best") <= x("har") && x("best") <= x("network"), "{b}");
            assert!(x("served").is_finite() && x("served") >= 0.0, "{b}");
            assert!((0.0..=1.0).contains(&x("best_weight")), "{b}");
        }
    }
    assert!(stdout.contains("against fixed weights in hindsight"), "{stdout}");
    for (f, r) in folds_json.iter().zip(v["reports"].as_array().unwrap()) {
        assert_eq!(
            f["blend_hindsight"], r["blend_hindsight"],
            "the fold's evaluation report has it too"
        );
    }
    // The breach timeline: each day's origins and breaches add up to the fold's.
    for (f, r) in folds_json.iter().zip(v["reports"].as_array().unwrap()) {
        let timeline = r["risk"]["timeline"]["model"].as_array().unwrap();
        let sum = |k: &str| timeline.iter().map(|d| d[k].as_u64().unwrap()).sum::<u64>();
        assert_eq!(sum("breaches"), f["model_breaches"][0].as_u64().unwrap());
        assert_eq!(sum("n"), f["model_breaches"][1].as_u64().unwrap());
    }
    // Each fold was fitted before its year only.
    assert_eq!(v["reports"][0]["config"]["fit_until"], "2019-12-31T23:00:00Z");
    assert_eq!(v["reports"][1]["config"]["fit_until"], "2020-12-31T23:00:00Z");
    assert_eq!(v["reports"][1]["config"]["eval_from"], "2021-01-01T00:00:00Z");

    // The page: the ratio chart, a reliability diagram per horizon, the risk table, and per
    // fold the breach timeline, the LT served, the HAR weights and the adaptive factor.
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 4 + 2 * 4, "{page}");
    for title in [
        "2021: cumulative breach rate",
        "2020: weight of the network against HAR",
    ] {
        assert!(page.contains(title), "{title}");
    }
    assert!(page.contains("<rect") && page.contains("<polyline"), "{page}");
    assert!(
        !page.contains("--fixed-recalibration"),
        "operated: no diagnostic banner"
    );
    assert!(
        page.contains("<td>2020</td>") && page.contains("<td>2021</td>"),
        "{page}"
    );
    assert!(!page.contains("NaN"), "{page}");
    // Where the daily job starts each fold, as in the Markdown report.
    assert!(
        page.contains("<h2>Where the daily job starts each fold</h2>"),
        "{page}"
    );
    let md_row = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Where the daily job starts each fold"))
        .find(|l| l.starts_with("| 2021 | 168h | "))
        .unwrap();
    let cells: Vec<&str> = md_row.trim_matches('|').split('|').map(str::trim).collect();
    assert!(
        page.contains(&format!("<tr><td>{}</td></tr>", cells.join("</td><td>"))),
        "{md_row}"
    );
    // The figures behind the ratio chart, as in the JSON: each fold and horizon's ratio.
    for f in folds_json {
        for x in f["horizons"].as_array().unwrap() {
            let row = format!(
                "<tr><td>{}</td><td>{}h</td><td>{}</td>",
                f["year"], x["h"], x["points"]
            );
            let ratio = format!("<td>{:.4}</td>", x["ratio"].as_f64().unwrap());
            let line = page
                .lines()
                .find(|l| l.starts_with(&row))
                .unwrap_or_else(|| panic!("{row}: {page}"));
            assert!(line.contains(&ratio), "{line} lacks {ratio}");
        }
    }
    assert_eq!(page.matches("<th>mean over folds</th>").count(), 3, "{page}");

    // Again: the folds' artifacts are reused, with the same figures.
    let second = run(env!("CARGO_BIN_EXE_walkforward"), &args);
    assert!(second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("fold already trained"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&second.stdout), stdout);
    // The shortage scores per fold and their mean over folds.
    for needle in ["Liquidity shortage per fold", "| mean | 24h |"] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }

    // The daily job's window: the folds' own (their holdout's 15 days) reproduces the run; another
    // rescores the same folds with other corrections, for the model and HAR operated alike.
    let with_days = |days: &str| {
        let mut a = args.to_vec();
        a.extend(["--rolling-days", days]);
        let out = run(env!("CARGO_BIN_EXE_walkforward"), &a);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(with_days("15"), stdout);
    let longer = with_days("40");
    let operated = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("| 2021 | 24h | "))
            .map(str::to_owned)
            .collect()
    };
    assert_ne!(operated(&longer), operated(&stdout), "{longer}");

    // The week carried from the day (`--term-structure 168=24`) rescores the same folds: the
    // week's model figures move, 4 h and 24 h do not; `none` is each fold's own design; a
    // pair that cannot be carried is refused.
    let with_term_structure = |pairs: &str| {
        let mut a = args.to_vec();
        a.extend(["--term-structure", pairs]);
        run(env!("CARGO_BIN_EXE_walkforward"), &a)
    };
    let carried = with_term_structure("168=24");
    assert!(
        carried.status.success(),
        "{}",
        String::from_utf8_lossy(&carried.stderr)
    );
    let carried = String::from_utf8_lossy(&carried.stdout).into_owned();
    let fold_row = |text: &str, prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned);
    for year in ["2020", "2021"] {
        for h in ["4h", "24h"] {
            let prefix = format!("| {year} | {h} | ");
            assert_eq!(
                fold_row(&carried, &prefix),
                fold_row(&stdout, &prefix),
                "{prefix}"
            );
        }
    }
    assert!(
        ["2020", "2021"].iter().any(|y| {
            let prefix = format!("| {y} | 168h | ");
            fold_row(&carried, &prefix) != fold_row(&stdout, &prefix)
        }),
        "the week did not move: {carried}"
    );
    let none = with_term_structure("none");
    assert_eq!(String::from_utf8_lossy(&none.stdout), stdout);
    let refused = with_term_structure("24=168");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--term-structure") && stderr.contains("carried from a shorter one"),
        "{stderr}"
    );
    // Fixed corrections were measured without the carry: refused, saying why.
    let mut fixed_carried = args.to_vec();
    fixed_carried.extend(["--term-structure", "168=24", "--fixed-recalibration"]);
    let refused = run(env!("CARGO_BIN_EXE_walkforward"), &fixed_carried);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("corrections were measured without that term structure; score it operated"),
        "{stderr}"
    );

    // The daily job as a diagnostic: the same folds scored with their fit-end corrections fixed,
    // against the same baselines (HAR operated included); the model's figures move, the
    // baselines' do not, and the daily job's state is not reported.
    let fixed_json = dir.path().join("fixed.json");
    let mut fixed_args = args.to_vec();
    let json_at = fixed_args.len() - 3;
    fixed_args[json_at] = fixed_json.to_str().unwrap();
    fixed_args.push("--fixed-recalibration");
    let fixed = run(env!("CARGO_BIN_EXE_walkforward"), &fixed_args);
    let fixed_out = String::from_utf8_lossy(&fixed.stdout);
    assert!(
        fixed.status.success(),
        "{}",
        String::from_utf8_lossy(&fixed.stderr)
    );
    assert!(
        fixed_out.contains("fixed for the year (`--fixed-recalibration`"),
        "{fixed_out}"
    );
    let fixed_page = std::fs::read_to_string(&html).unwrap();
    assert!(
        fixed_page.contains("<code>--fixed-recalibration</code>"),
        "the page says so too"
    );
    assert!(!fixed_page.contains("NaN"), "{fixed_page}");
    let rows = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| l.starts_with("| 2020 | ") || l.starts_with("| 2021 | "))
            .take(6)
            .map(|l| l.split(" | ").map(str::to_owned).collect())
            .collect()
    };
    let (daily_rows, fixed_rows) = (rows(&stdout), rows(&fixed_out));
    assert_eq!(daily_rows.len(), 6);
    for (d, f) in daily_rows.iter().zip(&fixed_rows) {
        assert_eq!(
            d[..5],
            f[..5],
            "fold, horizon, points, HAR and HAR operated: {fixed_out}"
        );
    }
    assert!(
        daily_rows.iter().zip(&fixed_rows).any(|(d, f)| d[5] != f[5]),
        "the model's figures did not move: {fixed_out}"
    );
    let fv: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&fixed_json).unwrap()).unwrap();
    assert_eq!(fv["fixed_recalibration"], true);
    assert!(v["fixed_recalibration"].is_null(), "absent from an operated run");
    // Each fold's report says how its model was operated (the daily job's window and adaptive
    // settings, or corrections fixed), beside HAR operated's window.
    let operation = |r: &serde_json::Value| r["reports"][0]["config"]["operation"].clone();
    assert_eq!(operation(&v)["daily_window_days"], 15, "{}", operation(&v));
    assert!(
        operation(&v)["adaptive"]["quantile_step"].is_number(),
        "{}",
        operation(&v)
    );
    assert!(operation(&fv)["daily_window_days"].is_null() && operation(&fv)["adaptive"].is_null());
    assert_eq!(fv["reports"][0]["config"]["operated_days"], 15);
    assert_eq!(
        operation(&v)["features_version"],
        volcast_core::features::FEATURE_VERSION
    );
    for f in fv["folds"].as_array().unwrap() {
        for key in ["days", "blend_hindsight"] {
            assert!(f[key].as_array().is_none_or(Vec::is_empty), "{key}: {f}");
        }
    }
    fixed_args.extend(["--quantile-step", "0.001"]);
    let refused = run(env!("CARGO_BIN_EXE_walkforward"), &fixed_args);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("would change nothing"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A trained fold is never scored as another design: asked with other training settings,
    // it is refused, naming what differs.
    let mut other = args.to_vec();
    other.extend(["--recency-half-life-days", "none"]);
    let refused = run(env!("CARGO_BIN_EXE_walkforward"), &other);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("another training config")
            && stderr.contains("recency_half_life_days: 365.0 vs null"),
        "{stderr}"
    );

    // Early-stopped folds to measure the days before the fit end on: folds trained until the
    // fit end are not that, and the daily job it acts on is off with fixed corrections.
    let mut before = args.to_vec();
    let folds_dir = folds.to_str().unwrap();
    before.extend(["--before-fit-end-from", folds_dir]);
    let refused = run(env!("CARGO_BIN_EXE_walkforward"), &before);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not trained as the fold's design early-stopped")
            && stderr.contains("refit_through_holdout: true vs false"),
        "{stderr}"
    );
    before.push("--fixed-recalibration");
    let refused = run(env!("CARGO_BIN_EXE_walkforward"), &before);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--fixed-recalibration turns off"));
    assert!(
        stdout.contains("Where the daily job starts each fold") && stdout.contains("| points before |"),
        "{stdout}"
    );

    // A second seed set: the first set's fold is reused as it was, the second (seeds 45-47)
    // trained in its own directory, and the report sets them side by side.
    let mut sets = args.to_vec();
    sets[3] = "2021";
    sets.extend(["--seed-sets", "2"]);
    let both = run(env!("CARGO_BIN_EXE_walkforward"), &sets);
    let both_out = String::from_utf8_lossy(&both.stdout);
    assert!(both.status.success(), "{}", String::from_utf8_lossy(&both.stderr));
    assert!(folds.join("seeds-45/fold-2021/default").exists());
    let first_2021: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| 2021 | "))
        .take(3)
        .collect();
    assert_eq!(first_2021.len(), 3);
    for line in &first_2021 {
        assert!(both_out.contains(line), "{line}: {both_out}");
    }
    for needle in [
        "Seeds 42-44",
        "## Seed sets",
        "| 42-44 | ",
        "| 45-47 | ",
        "| **mean over sets** |",
        "| 2021 | 168h | ",
    ] {
        assert!(both_out.contains(needle), "{needle}: {both_out}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let seeds: Vec<u64> = v["seed_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["first_seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [42, 45]);
    assert_ne!(
        v["seed_sets"][0]["folds"][0]["artifact"],
        v["seed_sets"][1]["folds"][0]["artifact"]
    );
    let page = std::fs::read_to_string(&html).unwrap();
    for needle in [
        "<h2>Seed sets</h2>",
        "<td>42-44</td>",
        "<td>45-47</td>",
        "<th>mean over sets</th>",
        "<td>2021</td><td>168 h</td>",
    ] {
        assert!(page.contains(needle), "{needle}: {page}");
    }
    assert!(!page.contains("NaN"), "{page}");

    // A fold's artifact is never scored as another fold's: the 2021 fold (fit until 2020's end)
    // where the 2020 fold belongs is refused; and `evaluate` refuses to score it on origins it
    // was trained on.
    let moved = dir.path().join("moved");
    copy_tree(&folds.join("fold-2021"), &moved.join("fold-2020"));
    let mut elsewhere = args.to_vec();
    elsewhere[3] = "2020";
    elsewhere[5] = moved.to_str().unwrap();
    let refused = run(env!("CARGO_BIN_EXE_walkforward"), &elsewhere);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not the fold's fit end 2019-12-31T23:00:00Z"),
        "{stderr}"
    );
    let fold_2021 = folds.join("fold-2021");
    let in_sample = [
        "--data",
        data.to_str().unwrap(),
        "--model",
        fold_2021.to_str().unwrap(),
        "--fit-until",
        "2020-06-30",
    ];
    let refused = run(env!("CARGO_BIN_EXE_evaluate"), &in_sample);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("origins it was trained on") && stderr.contains("--fit-until 2020-12-31 or later"),
        "{stderr}"
    );
    // The folds were smoke runs (`--max-steps 10`): a run without the limit never scores them
    // as trained folds.
    let full: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|&(i, a)| *a != "--max-steps" && !(i > 0 && args[i - 1] == "--max-steps"))
        .map(|(_, a)| *a)
        .collect();
    let refused = run(env!("CARGO_BIN_EXE_walkforward"), &full);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("trained with --max-steps 10, this run asks for full training"),
        "{stderr}"
    );
    // A backtest setting out of range is refused before any fold is trained.
    let fresh = dir.path().join("fresh");
    let mut bad_alpha = args.to_vec();
    bad_alpha[5] = fresh.to_str().unwrap();
    bad_alpha.extend(["--alpha", "2"]);
    let refused = run(env!("CARGO_BIN_EXE_walkforward"), &bad_alpha);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--alpha"));
    assert!(!fresh.join("fold-2020").exists(), "a fold was trained first");
    // Trained folds are reused only on the candle files they were trained on: one file
    // replaced by another asset's is refused, naming it.
    let other = dir.path().join("other-candles");
    copy_tree(&data, &other);
    let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(&other)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    std::fs::copy(&names[1], &names[0]).unwrap();
    let mut other_data = args.to_vec();
    other_data[1] = other.to_str().unwrap();
    let refused = run(env!("CARGO_BIN_EXE_walkforward"), &other_data);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let first = names[0].file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains("other candle files") && stderr.contains(first),
        "{stderr}"
    );
}

/// A config every fold's training would refuse is refused before any data is read (it was
/// refused at the first fold, after the data was loaded and hashed).
#[test]
fn a_config_the_folds_would_refuse_is_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-data");
    let config = volcast_model::config::TrainingConfig::default_run().with_recency_half_life_days(Some(0.5));
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let refused = run(
        env!("CARGO_BIN_EXE_walkforward"),
        &[
            "--data",
            missing.to_str().unwrap(),
            "--out",
            dir.path().join("folds").to_str().unwrap(),
            "--config",
            config_path.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("training config: recency_half_life_days is 0.5: at least a day"),
        "{stderr}"
    );
}

/// `--rolling-days` with `--fixed-recalibration` is refused before any data is read: the model has
/// no daily job then, and the window went to HAR operated alone (help: "for the model's
/// corrections and HAR operated alike"); `evaluate` refuses the pair too.
#[test]
fn a_daily_window_without_a_daily_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-data");
    let folds = dir.path().join("folds");
    let refused = run(
        env!("CARGO_BIN_EXE_walkforward"),
        &[
            "--data",
            missing.to_str().unwrap(),
            "--out",
            folds.to_str().unwrap(),
            "--rolling-days",
            "30",
            "--fixed-recalibration",
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("--rolling-days") && stderr.contains("--fixed-recalibration turns off"),
        "{stderr}"
    );
}

/// An output that cannot be written at the end is refused before any work: the folds ran for
/// minutes and failed at their last step, "writing ...". (The data named here do not exist: the
/// refusal comes first.)
#[test]
fn an_output_that_cannot_be_written_is_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-data");
    let folds = dir.path().join("folds");
    for (flag, path, said) in [
        ("--json", dir.path().join("nope/x.json"), "no directory"),
        ("--html", dir.path().to_owned(), "a directory; name a file"),
    ] {
        let refused = run(
            env!("CARGO_BIN_EXE_walkforward"),
            &[
                "--data",
                missing.to_str().unwrap(),
                "--out",
                folds.to_str().unwrap(),
                flag,
                path.to_str().unwrap(),
            ],
        );
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("{flag} {}", path.display())) && stderr.contains(said),
            "{stderr}"
        );
    }
    // `evaluate` alike.
    let json = dir.path().join("nope/x.json");
    let refused = run(
        env!("CARGO_BIN_EXE_evaluate"),
        &[
            "--data",
            missing.to_str().unwrap(),
            "--report",
            json.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("--report") && stderr.contains("no directory"),
        "{stderr}"
    );
}
