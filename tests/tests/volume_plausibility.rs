//! The server's quote-volume plausibility rule (`implausible_volume`) accepts real markets: every
//! window a request could send (the last 889 hours before an origin, one origin a day) of every
//! shared asset stays inside `VOLUME_RATIO_RANGE`. Prints the extreme ratios seen.

use volcast_core::candles::{VOLUME_RATIO_RANGE, median_quote_volume};
use volcast_core::time::HOUR_MS;

/// Hours a request's candles span for the shipped features (`history_hours`).
const WINDOW_HOURS: i64 = 889;

#[test]
fn real_quote_volumes_are_plausible() {
    let Some(dir) = volcast_tests::shared_hourly() else {
        return;
    };
    let assets = volcast_training::data::load_assets(&[dir], None).unwrap();
    assert!(assets.len() > 100);
    let (mut lowest, mut highest) = (f64::INFINITY, 0.0f64);
    let mut windows = 0usize;
    for a in &assets {
        let c = &a.candles;
        for end in (0..c.len()).step_by(24) {
            let from = c[end].open_time - (WINDOW_HOURS - 1) * HOUR_MS;
            let start = c[..end].partition_point(|x| x.open_time < from);
            let window = &c[start..=end];
            let Some(median) = median_quote_volume(window) else {
                continue;
            };
            for v in window.iter().map(|x| x.quote_volume).filter(|v| *v > 0.0) {
                lowest = lowest.min(v / median);
                highest = highest.max(v / median);
            }
            windows += 1;
        }
    }
    eprintln!(
        "{windows} windows of {} assets: quote volume / window median from {lowest:.3e} to {highest:.3e}",
        assets.len()
    );
    let (min, max) = VOLUME_RATIO_RANGE;
    // With a margin of at least 10 on both sides.
    assert!(
        lowest > 10.0 * min && highest < max / 10.0,
        "{lowest:e} .. {highest:e}"
    );
}
