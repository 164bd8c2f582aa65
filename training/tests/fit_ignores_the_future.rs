//! Nothing fitted for a fit end reads a candle after it (SPEC, "Walk-forward": fit everything on
//! candles opened up to the fold's end): the baselines (EWMA's decay, GARCH, HAR, the shortage
//! logistic), the training and holdout rows with their labels, and the input scaler come out
//! bit for bit the same when every candle after the fit end changes (levels, ranges, volumes),
//! or only the first one after it (the first return outside the fit); the same change to the
//! last candle inside the fit changes them, so the comparison can fail.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use volcast_core::baselines::set::BaselineSet;
use volcast_core::candles::AssetCandles;
use volcast_core::forecast::HORIZONS;
use volcast_core::time::{Bound, HOUR_MS, close_hour_of_open_ms, parse_time};
use volcast_training::dataset::{PanelFeatures, Samples, fit_scaler, split};

/// Everything fitted for the fit end `fit_end_hour` on `loaded`, as text (NaN-safe: bits).
fn fitted(loaded: &[AssetCandles], fit_end_hour: i64) -> Vec<String> {
    let assets = volcast_core::panel::to_panel(loaded);
    let prepared = volcast_core::panel::prepare(&assets, &HORIZONS);
    let baselines = BaselineSet::fit(&assets, &prepared, fit_end_hour, &HORIZONS).unwrap();
    let config = common::small_config();
    let features = PanelFeatures::new(&assets);
    let (train, holdout) = split(&features, &assets, &config, fit_end_hour);
    assert!(
        train.len() > 100 && holdout.len() > 10,
        "{} / {}",
        train.len(),
        holdout.len()
    );
    let scaler = fit_scaler(&features, &train, config.window);
    let rows = |s: &Samples| {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        format!(
            "{:?} {:?} {:?} {:?} {:?}",
            s.index,
            s.statics.iter().map(|r| bits(r)).collect::<Vec<_>>(),
            s.log_rv.iter().map(|r| bits(r)).collect::<Vec<_>>(),
            s.shortage.iter().map(|r| bits(r)).collect::<Vec<_>>(),
            bits(&s.weight)
        )
    };
    vec![
        serde_json::to_string(&baselines).unwrap(),
        rows(&train),
        rows(&holdout),
        serde_json::to_string(&scaler).unwrap(),
    ]
}

/// `loaded` with the candles whose open time `hit` selects moved: open and close x1.5, the
/// high x1.8 and the low x1.2 (so each hour's range moves too, not only its level), volumes x3.
fn moved(loaded: &[AssetCandles], hit: impl Fn(i64) -> bool) -> Vec<AssetCandles> {
    let mut out = loaded.to_vec();
    for a in &mut out {
        for c in a.candles.iter_mut().filter(|c| hit(c.open_time)) {
            c.open *= 1.5;
            c.high *= 1.8;
            c.low *= 1.2;
            c.close *= 1.5;
            c.volume *= 3.0;
            c.quote_volume *= 3.0;
        }
    }
    out
}

#[test]
fn the_fits_do_not_move_when_the_candles_after_the_fit_end_do() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::generated(&data, 150);
    let loaded = volcast_training::data::load_dirs(&[data]).unwrap();
    // The last candle of the fit opens at 2020-04-15 23:00.
    let last_fit_open = parse_time("2020-04-15", Bound::End).unwrap() / HOUR_MS * HOUR_MS;
    let fit_end_hour = close_hour_of_open_ms(last_fit_open);
    assert!(
        loaded
            .iter()
            .all(|a| a.candles.last().unwrap().open_time > last_fit_open + 30 * 24 * HOUR_MS)
    );
    let base = fitted(&loaded, fit_end_hour);
    let labels = ["baselines", "training rows", "holdout rows", "scaler"];
    for (what, hit) in [
        (
            "every candle after the fit end",
            Box::new(move |t: i64| t > last_fit_open) as Box<dyn Fn(i64) -> bool>,
        ),
        (
            "the first candle after it",
            Box::new(move |t: i64| t == last_fit_open + HOUR_MS),
        ),
    ] {
        let after = fitted(&moved(&loaded, hit), fit_end_hour);
        for (k, label) in labels.iter().enumerate() {
            assert!(base[k] == after[k], "{label} moved with {what}");
        }
    }
    // The controls: moving the fit's last candle moves the baselines and the holdout's rows
    // (the training rows end 15 days before), moving one 20 days before the fit end moves the
    // training rows and the scaler.
    let last = fitted(&moved(&loaded, |t| t == last_fit_open), fit_end_hour);
    let earlier = fitted(
        &moved(&loaded, |t| t == last_fit_open - 20 * 24 * HOUR_MS),
        fit_end_hour,
    );
    for (k, moved) in [(0, &last), (2, &last), (1, &earlier), (3, &earlier)] {
        assert!(
            base[k] != moved[k],
            "{} did not see a candle inside the fit",
            labels[k]
        );
    }
}
