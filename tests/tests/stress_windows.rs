//! The stress replays found in the real data: BTC's worst weeks up to the default artifact's fit
//! end include 12 March 2020 and 19 May 2021.

use volcast_core::stress::market_stress_scenarios;
use volcast_core::time::{Bound, close_hour_of_open_ms, parse_time};
use volcast_tests::shared_hourly;
use volcast_training::data::load_assets;

#[test]
fn worst_btc_weeks_include_march_2020_and_may_2021() {
    let Some(dir) = shared_hourly() else { return };
    let loaded = load_assets(&[dir], Some(&["BTCUSDT".to_owned()])).unwrap();
    let panel = volcast_core::panel::to_panel(&loaded);
    let fit_end = close_hour_of_open_ms(parse_time("2021-12-31", Bound::End).unwrap());
    let windows = market_stress_scenarios(&panel, fit_end);
    let names: Vec<&str> = windows.iter().map(|w| w.name.as_str()).collect();
    assert!(names.contains(&"BTCUSDT 2020-03-12"), "{names:?}");
    assert!(names.contains(&"BTCUSDT 2021-05-19"), "{names:?}");
    assert!(windows.windows(2).all(|p| p[0].fall >= p[1].fall));
    assert!(windows.iter().all(|w| w.log_returns.len() == 168));
    // Up to the end of 2020 May 2021 is out of reach.
    let early = market_stress_scenarios(&panel, fit_end - 365 * 24);
    assert!(early.iter().all(|w| !w.name.contains("2021")), "{early:?}");
}
