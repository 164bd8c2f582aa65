//! The `replay` binary as a user runs it.

use std::process::Command;

/// The replay runs the server's code with the server's defaults, not with a server's
/// `VOLCAST_*` settings in the environment: `VOLCAST_MAX_CANDLES=100` refused it ("below the
/// model's history_hours") and `VOLCAST_LISTEN=bogus` failed on a flag it does not have. Here
/// it goes on to the period's own check.
#[test]
fn a_servers_environment_does_not_configure_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    std::fs::create_dir(&data).unwrap();
    // Three hours of 2024-01-01.
    let start = 1_704_067_200_000_i64;
    let mut csv = String::from("open_time,open,high,low,close,volume,quote_volume\n");
    for h in 0..3 {
        csv.push_str(&format!("{},100,101,99,100,10,1000\n", start + h * 3_600_000));
    }
    std::fs::write(data.join("AAAUSDT.csv"), csv).unwrap();
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model-artifacts/default");
    let out = Command::new(env!("CARGO_BIN_EXE_replay"))
        .args([
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
        .args(["--from", "2024-01-02", "--to", "2024-01-03"])
        .args(["--work-dir", dir.path().join("work").to_str().unwrap()])
        .env("VOLCAST_MAX_CANDLES", "100")
        .env("VOLCAST_LISTEN", "bogus")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is after the data's last candle"), "{stderr}");
}

/// `--regate` reads a finished replay's ledger: the replay's own options (`--assets`, `--data`,
/// `--work-dir`) were accepted and ignored (every asset regated while the user asked for one);
/// they are refused, before the file is looked for. `VOLCAST_DATA` in the environment is not.
#[test]
fn a_regate_refuses_the_options_of_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("replay.db");
    let regate = |extra: &[&str], data_env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_replay"));
        command
            .args([
                "--regate",
                db.to_str().unwrap(),
                "--from",
                "2021-01-01",
                "--to",
                "2021-01-02",
            ])
            .args(extra)
            .env_remove("VOLCAST_DATA");
        if let Some(d) = data_env {
            command.env("VOLCAST_DATA", d);
        }
        let out = command.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for (flag, value) in [("--assets", "BTCUSDT"), ("--data", "x"), ("--work-dir", "w")] {
        let stderr = regate(&[flag, value], None);
        assert!(
            stderr.contains(&format!("{flag} is for a replay")),
            "{flag}: {stderr}"
        );
    }
    let stderr = regate(&[], Some("x"));
    assert!(stderr.contains("no such file"), "{stderr}");
}
