//! Helpers shared by the end-to-end tests in `tests/tests/`: where the shared market data is,
//! and a clean skip when it is absent.
//!
//! # Layout
//! - this file: [`shared_hourly`] and [`repo_root`].
//! - `tests/reference.rs`: the baselines against SPEC's reference table, on all shared assets.
//! - `tests/validation_model.rs`: the validation artifact's 2021 figures and bars.
//! - `tests/committed_artifacts.rs`: the committed artifacts load and forecast; damaged copies
//!   are refused.
//! - `tests/sample_data.rs`, `tests/stress_windows.rs`, `tests/volume_plausibility.rs`: the
//!   sample data, the stress replay windows and the volume rule on real data.

use std::path::PathBuf;

/// `../shared/data/binance-spot-1h` beside the repository (or `$VOLCAST_SHARED_DATA`), when
/// present. Tests that need it call this and return early on `None`, saying why; with
/// `VOLCAST_REQUIRE_SHARED_DATA` set, its absence is a failure instead.
#[must_use]
pub fn shared_hourly() -> Option<PathBuf> {
    let dir = std::env::var_os("VOLCAST_SHARED_DATA").map_or_else(
        || repo_root().join("../shared/data/binance-spot-1h"),
        PathBuf::from,
    );
    if dir.is_dir() {
        Some(dir)
    } else if std::env::var_os("VOLCAST_REQUIRE_SHARED_DATA").is_some() {
        // CI sets this where the data exists: a test that would skip there is a broken test.
        panic!(
            "VOLCAST_REQUIRE_SHARED_DATA is set but {} is not a directory",
            dir.display()
        );
    } else {
        eprintln!(
            "skipping: shared market data not found at {} (set VOLCAST_SHARED_DATA to its binance-spot-1h folder)",
            dir.display()
        );
        None
    }
}

/// The repository root: from the `CARGO_MANIFEST_DIR` cargo sets when it runs the tests, so a
/// test binary built in another checkout (a shared target directory) still reads this one.
#[must_use]
pub fn repo_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.join("..")
}
