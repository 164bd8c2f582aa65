//! What the binaries' tests share: running one, generated candle files, copying a tree.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary `bin` with `args` to its end.
pub fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

/// Three generated assets of `days` days in `dir` (`generate`).
pub fn generate(dir: &Path, days: usize) {
    generate_assets(dir, days, 3);
}

/// [`generate`] with `assets` assets.
pub fn generate_assets(dir: &Path, days: usize, assets: usize) {
    let hours = (24 * days).to_string();
    let out = run(
        env!("CARGO_BIN_EXE_generate"),
        &[
            "--out",
            dir.to_str().unwrap(),
            "--assets",
            &assets.to_string(),
            "--hours",
            &hours,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `SYNTH01`'s candles from the generated files in `data`, with hour 60's close 1% higher
/// (its high lifted to match): a corrected file, written to `to` as `SYNTH01.csv`; returns the
/// candles.
pub fn corrected_synth01(data: &Path, to: &Path) -> Vec<volcast_core::candles::Candle> {
    let synth01 = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("SYNTH01"))
        .unwrap();
    let mut candles = volcast_training::data::read_file(&synth01).unwrap();
    candles[60].close *= 1.01;
    candles[60].high = candles[60].high.max(candles[60].close);
    if synth01.parent() == Some(to) {
        std::fs::remove_file(&synth01).unwrap();
    }
    volcast_training::data::write_csv(&to.join("SYNTH01.csv"), &candles).unwrap();
    candles
}

/// Copies the directory `from` (files and subdirectories) to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
