//! SPEC excludes points whose realized variance is zero: quiet hours (unchanged closes) right
//! after an origin must be counted in `n_zero_rv_excluded` and leave every pooled and per-asset
//! QLIKE finite, never a rounding residual scored as a variance (a negative one made every
//! pooled 4 h QLIKE, and so the JSON, null).

use volcast_core::candles::AssetCandles;
use volcast_core::panel::to_panel;
use volcast_core::synth::{SynthConfig, generate};
use volcast_core::time::{Bound, HOUR_MS, parse_time};
use volcast_training::evaluate::{EvalConfig, evaluate};

const START_MS: i64 = 1_577_836_800_000; // 2020-01-01

#[test]
fn quiet_windows_are_excluded_not_scored() {
    let mut loaded: Vec<AssetCandles> = (1..=3)
        .map(|i| AssetCandles {
            asset: format!("SYNTH{i:02}"),
            candles: generate(&SynthConfig {
                gap_rate: 0.0,
                ..SynthConfig::panel_asset(i, 7, 24 * 150, START_MS)
            }),
        })
        .collect();
    // SYNTH01: on every day from 2020-04-16, the four hours after midnight do not trade at a new
    // price (open = high = low = close = the previous close): the 4 h target is exactly 0.
    let eval_from = parse_time("2020-04-16", Bound::Start).unwrap();
    let candles = &mut loaded[0].candles;
    let mut quiet_days = 0;
    for k in 1..candles.len() {
        let t = candles[k].open_time;
        if t >= eval_from && (t / HOUR_MS) % 24 < 4 {
            let p = candles[k - 1].close;
            let c = &mut candles[k];
            (c.open, c.high, c.low, c.close) = (p, p, p, p);
            quiet_days += usize::from((t / HOUR_MS) % 24 == 0);
        }
    }
    let assets = to_panel(&loaded);
    let config = EvalConfig {
        fit_until_ms: parse_time("2020-04-15", Bound::End).unwrap() / HOUR_MS * HOUR_MS,
        eval_from_ms: eval_from,
        eval_until_ms: parse_time("2020-05-25", Bound::End).unwrap(),
        horizons: vec![4, 24],
        alpha: 0.99,
        tau: 4,
        bonus: 0.05,
        fit_exponent: false,
        operated_days: None,
    };
    let report = evaluate(&assets, &config, None).unwrap();
    let h4 = &report.horizons[&4];
    assert!(
        h4.n_zero_rv_excluded >= quiet_days.min(30),
        "{} zero windows excluded of {quiet_days} quiet days",
        h4.n_zero_rv_excluded
    );
    for (h, hz) in &report.horizons {
        for (name, q) in &hz.qlike {
            assert!(q.is_finite() && *q < 10.0, "{h} h pooled {name}: {q}");
        }
        for a in &hz.per_asset {
            for (name, q) in &a.qlike {
                assert!(q.is_finite() && *q < 10.0, "{h} h {} {name}: {q}", a.asset);
            }
        }
    }
}
