//! The `generate` and `ingest` binaries as a user runs them.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;
use common::cli::{generate, run};

/// `generate` refuses counts that would write empty files (or none) or exhaust memory, naming
/// the flag and its range, and writes nothing.
#[test]
fn generate_refuses_empty_and_huge_counts() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("g");
    for (flag, value) in [
        ("--assets", "0"),
        ("--hours", "0"),
        ("--hours", "1000000000000"),
        ("--assets", "10001"),
        // Off the hour: it was floored without a word.
        ("--start", "2020-01-01T00:30:00Z"),
    ] {
        let out = run(
            env!("CARGO_BIN_EXE_generate"),
            &["--out", out_dir.to_str().unwrap(), flag, value],
        );
        assert!(!out.status.success(), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag} {value}: {err}");
        assert!(!out_dir.exists(), "{flag} {value} wrote files");
    }
    let out = run(
        env!("CARGO_BIN_EXE_generate"),
        &[
            "--out",
            out_dir.to_str().unwrap(),
            "--assets",
            "1",
            "--hours",
            "48",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 48 hours at most (an outage drops rows), one file.
    let candles = volcast_training::data::read_file(&out_dir.join("SYNTH01.csv.gz")).unwrap();
    assert!((1..=48).contains(&candles.len()), "{}", candles.len());
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
}

/// `ingest` loads every good file, leaves a file with one bad row out entirely (naming the row),
/// and one from the future too, and a second run changes nothing.
#[test]
fn ingest_loads_files_whole_or_not_at_all_and_is_idempotent() {
    use volcast_store::CandleStore as _;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    generate(&data, 40);
    // A fourth asset whose 51st candle (row 50) has its low above its high.
    let first = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("SYNTH01"))
        .unwrap();
    let mut candles = volcast_training::data::read_file(&first).unwrap();
    candles[50].low = candles[50].high * 2.0;
    volcast_training::data::write_csv(&data.join("BROKEN.csv"), &candles).unwrap();
    // And one whose candles are dated in 2100 (a clock or unit slip): never stored.
    let mut future = volcast_training::data::read_file(&first).unwrap();
    for c in &mut future {
        c.open_time += 80 * 365 * 24 * 3_600_000;
    }
    volcast_training::data::write_csv(&data.join("FUTURE.csv"), &future).unwrap();

    let db = dir.path().join("store/volcast.db");
    let url = format!("sqlite://{}", db.display());
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--database-url",
        &url,
        "--no-progress",
    ];
    // A directory above the candles (as `anomaly --data` takes) holds none: an error, and no
    // store created, not "0 files stored".
    let above = run(
        env!("CARGO_BIN_EXE_ingest"),
        &[
            "--data",
            dir.path().to_str().unwrap(),
            "--database-url",
            &url,
            "--no-progress",
        ],
    );
    assert_eq!(above.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&above.stderr).contains("no candle files"));
    assert!(!db.exists());
    // Files that are all refused store nothing, and leave no new, empty store behind.
    let refused_only = dir.path().join("refused");
    std::fs::create_dir_all(&refused_only).unwrap();
    std::fs::copy(data.join("BROKEN.csv"), refused_only.join("BROKEN.csv")).unwrap();
    let none = run(
        env!("CARGO_BIN_EXE_ingest"),
        &[
            "--data",
            refused_only.to_str().unwrap(),
            "--database-url",
            &url,
            "--no-progress",
        ],
    );
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert_eq!(none.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("BROKEN.csv") && stderr.contains("nothing stored"),
        "{stderr}"
    );
    assert!(!db.exists(), "{stderr}");
    let first = run(env!("CARGO_BIN_EXE_ingest"), &args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr),
    );
    assert_eq!(first.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("3 files stored"), "{stdout}");
    let new: u64 = stdout
        .split(": ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(new > 2 * 40 * 24, "{stdout}");
    assert!(
        stderr.contains("BROKEN.csv") && stderr.contains("row 50"),
        "{stderr}"
    );
    // Named once: the file's error names it already.
    assert_eq!(stderr.matches("BROKEN.csv").count(), 1, "{stderr}");
    assert!(
        stderr.contains("FUTURE.csv") && stderr.contains("row 0") && stderr.contains("not closed yet"),
        "{stderr}"
    );
    assert!(db.exists());

    let second = run(env!("CARGO_BIN_EXE_ingest"), &args);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("0 new candles") && stdout.contains(&format!("{new} already stored")),
        "{stdout}"
    );
    assert_eq!(second.status.code(), Some(1), "the broken and future files again");

    // A file with SQLite's header and nothing SQLite can read after it: SQLite's refusal said
    // once, not once per link of the error's chain (it was said three times).
    let damaged = dir.path().join("damaged.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.resize(8192, 0xA5);
    std::fs::write(&damaged, bytes).unwrap();
    let refused = run(
        env!("CARGO_BIN_EXE_ingest"),
        &[
            "--data",
            data.to_str().unwrap(),
            "--database-url",
            &format!("sqlite://{}", damaged.display()),
            "--no-progress",
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("file is not a database").count(), 1, "{stderr}");

    // A store that cannot be reached is named without its password.
    let unreachable = run(
        env!("CARGO_BIN_EXE_ingest"),
        &[
            "--data",
            data.to_str().unwrap(),
            "--database-url",
            "postgres://volcast:s3cret@127.0.0.1:1/volcast",
            "--no-progress",
        ],
    );
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success(), "{stderr}");
    assert!(
        stderr.contains("opening the store postgres://volcast:***@127.0.0.1:1/volcast")
            && !stderr.contains("s3cret"),
        "{stderr}"
    );

    // A parameter the PostgreSQL driver would ignore (here a misspelt `sslmode`, which would
    // connect unencrypted) is refused before any connection, and the URL is said once.
    let misspelt = run(
        env!("CARGO_BIN_EXE_ingest"),
        &[
            "--data",
            data.to_str().unwrap(),
            "--database-url",
            "postgres://volcast:s3cret@127.0.0.1:1/volcast?ssl_mode=require",
            "--no-progress",
        ],
    );
    let stderr = String::from_utf8_lossy(&misspelt.stderr);
    assert!(!misspelt.status.success(), "{stderr}");
    assert!(
        stderr.contains("unknown parameter `ssl_mode`") && !stderr.contains("s3cret"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("127.0.0.1:1/volcast").count(), 1, "{stderr}");

    // A "corrected" file whose hour 60 differs from the stored one: said, not silently counted
    // as already stored, and the stored values kept.
    let corrected_dir = dir.path().join("corrected");
    std::fs::create_dir_all(&corrected_dir).unwrap();
    let corrected = common::cli::corrected_synth01(&data, &corrected_dir);
    let third = run(
        env!("CARGO_BIN_EXE_ingest"),
        &[
            "--data",
            corrected_dir.to_str().unwrap(),
            "--database-url",
            &url,
            "--no-progress",
        ],
    );
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert_eq!(third.status.code(), Some(1), "{stderr}");
    let at = volcast_core::time::format_ms(corrected[60].open_time);
    assert!(
        stderr.contains("SYNTH01.csv")
            && stderr.contains(&at)
            && stderr.contains("1 candle(s) in 1 file(s) differ"),
        "{stderr}"
    );

    // The same two directories in one run, into a new store: SPEC's merge, the first directory
    // winning the hour both hold, not a conflict (two directories that round a volume
    // differently failed every such run).
    let merged_url = format!("sqlite://{}", dir.path().join("merged.db").display());
    let original = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("SYNTH01"))
        .unwrap();
    let merged = run(
        env!("CARGO_BIN_EXE_ingest"),
        &[
            "--data",
            &format!("{},{}", corrected_dir.display(), original.display()),
            "--database-url",
            &merged_url,
            "--no-progress",
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&merged.stdout),
        String::from_utf8_lossy(&merged.stderr),
    );
    assert!(
        merged.status.success() && stdout.contains("1 candle(s) of an hour an earlier file of this run held"),
        "{stdout}{stderr}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let assets = runtime.block_on(async {
        let store = volcast_store::Store::open(&url).await.unwrap();
        store.assets().await.unwrap()
    });
    let ids: Vec<&str> = assets.iter().map(|a| a.asset.as_str()).collect();
    assert_eq!(
        ids,
        ["SYNTH01", "SYNTH02", "SYNTH03"],
        "the broken and the future files left no candle"
    );
    assert_eq!(
        assets.iter().map(|a| a.count).sum::<i64>(),
        i64::try_from(new).unwrap()
    );
}

/// Each command's help opens with what that command does, not with the crate's description
/// (`#[command(about)]` without a value put the package's text above every command's own).
#[test]
fn each_commands_help_says_what_it_does() {
    for (bin, opening) in [
        (env!("CARGO_BIN_EXE_train"), "Train the volcast model"),
        (env!("CARGO_BIN_EXE_evaluate"), "Score volatility"),
        (
            env!("CARGO_BIN_EXE_calibrate"),
            "Calibrate an artifact's drawdown",
        ),
        (env!("CARGO_BIN_EXE_anomaly"), "The anomaly detector"),
        (env!("CARGO_BIN_EXE_walkforward"), "Walk-forward folds"),
        (env!("CARGO_BIN_EXE_generate"), "Write synthetic hourly candles"),
        (
            env!("CARGO_BIN_EXE_ingest"),
            "Load candle files into the market-data store",
        ),
        (env!("CARGO_BIN_EXE_stress"), "Stress-test a book of loans"),
    ] {
        let out = run(bin, &["--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && help.starts_with(opening), "{bin}: {help}");
        assert!(!help.contains(env!("CARGO_PKG_DESCRIPTION")), "{bin}: {help}");
    }
}
