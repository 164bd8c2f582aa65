//! The `anomaly` binary as a user runs it.

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
