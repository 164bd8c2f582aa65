//! The `stress` binary as a user runs it.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::path::Path;

use common::cli::{generate, run};

/// The book's bounds are the route's: a book whose value overflows the sums is refused by name
/// (its totals and tails came out NaN), and so is a largest position worth more than a sale size
/// may be unless `--sale-size` is given; with it, the same book is simulated. An `--at` off the
/// hour is refused too.
#[test]
fn a_book_outside_the_routes_bounds_or_an_origin_off_the_hour_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("candles");
    generate(&data, 60);
    let synth01 = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("SYNTH01"))
        .unwrap();
    let candles = volcast_training::data::read_file(&synth01).unwrap();
    let price = candles.last().unwrap().close;
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-artifacts");
    let stress = |book: &serde_json::Value, extra: &[&str]| {
        let path = dir.path().join("book.json");
        std::fs::write(&path, book.to_string()).unwrap();
        let args = [
            "--data",
            data.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--asset",
            "SYNTH01",
            "--positions",
            path.to_str().unwrap(),
            "--device",
            "cpu",
            "--paths",
            "200",
            "--horizon",
            "24",
            "--scenario",
            "forecast",
        ];
        run(env!("CARGO_BIN_EXE_stress"), &[&args[..], extra].concat())
    };
    let huge = serde_json::json!([{"collateral": 1e300, "debt": 0.0}]);
    let out = stress(&huge, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("collateral value at the last close") && stderr.contains("at most 1e15 USD"),
        "{stderr}"
    );
    let large = serde_json::json!([{"collateral": 5e12 / price, "debt": 1e6}]);
    let out = stress(&large, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("largest position's collateral value") && stderr.contains("give --sale-size"),
        "{stderr}"
    );
    let out = stress(&large, &["--sale-size", "1000000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // An origin off the hour is refused (it was rounded down without a word); on it, simulated.
    let small = serde_json::json!([{"collateral": 1.0, "debt": 10.0}]);
    let out = stress(&small, &["--at", "2020-02-20T12:30:00.5Z"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--at 2020-02-20T12:30:00.5Z is not on a whole hour")
            && stderr.contains("not on a whole hour")
            && stderr.contains("such as 2020-02-20T12:00:00"),
        "{stderr}"
    );
    let out = stress(&small, &["--at", "2020-02-20T12:00:00Z"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // An origin too early for the features: told which window lacks returns, and that the
    // data are too short (not that hours are missing).
    // `--at` is the origin, the close of its last candle: 100 hourly returns before it.
    let early = volcast_core::time::format_ms(candles[0].open_time + 101 * 3_600_000);
    let out = stress(&small, &["--at", &early]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not enough history: the data start 100 hours before it: the 168-hour")
            && stderr.contains("needs 152 hourly returns (SPEC's 90% rule); the candles give 100"),
        "{stderr}"
    );
}
