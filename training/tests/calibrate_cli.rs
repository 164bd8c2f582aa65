//! The `calibrate` binary as a user runs it.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::path::Path;

use common::cli::{generate, run};

/// A source artifact whose anomaly detector cannot be read is refused before any work, naming
/// the file: the calibrated artifact would carry the detector, and the server refuses an artifact
/// whose detector it cannot read (a truncated `anomaly.json` was copied without a word).
#[test]
fn a_detector_that_cannot_be_read_is_refused_before_calibrating() {
    let dir = tempfile::tempdir().unwrap();
    let committed =
        volcast_model::artifact::resolve(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-artifacts"))
            .unwrap();
    let source = dir.path().join("artifacts").join("source");
    std::fs::create_dir_all(&source).unwrap();
    for entry in std::fs::read_dir(&committed).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), source.join(entry.file_name())).unwrap();
    }
    let detector = source.join("anomaly.json");
    let text = std::fs::read_to_string(&detector).unwrap();
    std::fs::write(&detector, &text[..text.len() / 2]).unwrap();
    let data = dir.path().join("candles");
    generate(&data, 30);
    let out = dir.path().join("calibrated");
    let refused = run(
        env!("CARGO_BIN_EXE_calibrate"),
        &[
            "--model",
            source.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("anomaly detector cannot be carried") && stderr.contains("anomaly.json"),
        "{stderr}"
    );
    // The parser's message once, not once as the detector error's text and again as its source.
    assert_eq!(stderr.matches("EOF while parsing").count(), 1, "{stderr}");
    assert!(!out.exists(), "a calibrated artifact was written");
}

/// An `--out` that cannot hold the calibrated artifact is refused before any data is read,
/// saying what it was for (it failed at the end, with the system's words alone).
#[test]
fn an_out_that_cannot_be_made_is_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-artifacts");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = file.join("artifacts");
    let refused = run(
        env!("CARGO_BIN_EXE_calibrate"),
        &[
            "--model",
            committed.to_str().unwrap(),
            "--data",
            dir.path().join("no-such-data").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--out {}: cannot make the artifacts directory",
            out.display()
        )),
        "{stderr}"
    );
}
