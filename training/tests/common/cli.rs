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
