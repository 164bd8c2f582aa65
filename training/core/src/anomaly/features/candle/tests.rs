//! The candle features' tests: warm-up and no look-ahead, plain units, the hour-of-day and
//! lag predictions, volume without its range, out and back, the market's medians.

use super::super::{describe, flat};
use super::*;

#[test]
fn rows_warm_up_and_never_read_ahead() {
    let c = flat(400);
    let cfg = FeatureConfig::default();
    let rows = candle_rows(&cfg, &c);
    assert_eq!(rows.len(), 400);
    assert!(rows[..cfg.candle_warmup_hours].iter().all(Option::is_none));
    assert!(rows[cfg.candle_warmup_hours..].iter().all(Option::is_some));
    // Leaving out the rows before hour 250 changes none after it.
    let late = candle_rows_from(&cfg, &c, 250 * HOUR_MS);
    assert!(late[..250].iter().all(Option::is_none));
    assert_eq!(format!("{:?}", &late[250..]), format!("{:?}", &rows[250..]));
    // Cutting the data after hour 300 changes nothing at or before it.
    let cut = candle_rows(&cfg, &c[..301]);
    // (Debug text: the rows hold NaN, which is never equal to itself.)
    assert_eq!(format!("{:?}", &cut[..]), format!("{:?}", &rows[..301]));
}
#[test]
fn hours_before_1970_read_the_same_hour_of_day() {
    // Negative open times (a request's candles moved before 1970): the same hours of the day,
    // never an index out of bounds.
    let c = flat(400);
    let day = 24 * HOUR_MS;
    let shift = -1000 * day;
    let moved: Vec<_> = c
        .iter()
        .map(|x| Candle {
            open_time: x.open_time + shift,
            ..*x
        })
        .collect();
    let cfg = FeatureConfig::default();
    let values = |rows: Vec<Option<Row>>| -> Vec<Option<String>> {
        rows.iter()
            .map(|r| r.as_ref().map(|r| format!("{:?}", r.values)))
            .collect()
    };
    let (rows, early) = (candle_rows(&cfg, &c), candle_rows(&cfg, &moved));
    assert!(values(rows) == values(early), "the same features, hour by hour");
}
#[test]
fn volume_ratio_reads_in_plain_units() {
    let mut c = flat(400);
    c[399].quote_volume = 10_000.0;
    let rows = candle_rows(&FeatureConfig::default(), &c);
    let r = rows[399].as_ref().unwrap();
    // Against the typical level, both with the floor of 5% of the recent mean (1,000).
    let want = 10_050.0 / 1_050.0;
    assert!((r.shown[2] - want).abs() < 1e-6, "{}", r.shown[2]);
    assert!(describe("volume", r.shown[2], f64::NAN).starts_with("volume 9.6x"));
}
#[test]
fn volume_is_judged_against_the_hour_of_day_and_the_hour_before() {
    // Volume three times higher from 12:00 to 15:00 UTC every day: after a few weeks the
    // afternoon is expected, so an ordinary afternoon is no surprise, while the same
    // volume at night is.
    let n = 24 * 40;
    let mut c = flat(n);
    for (i, x) in c.iter_mut().enumerate() {
        if (12..16).contains(&(i % 24)) {
            x.quote_volume = 3000.0;
        }
    }
    let rows = candle_rows(&FeatureConfig::default(), &c);
    let afternoon = rows[n - 24 + 13].as_ref().unwrap();
    assert!(afternoon.values[2].abs() < 1.0, "{}", afternoon.values[2]);
    let mut night = c.clone();
    night[n - 24 + 3].quote_volume = 3000.0;
    let rows = candle_rows(&FeatureConfig::default(), &night);
    assert!(rows[n - 24 + 3].as_ref().unwrap().values[2] > 3.0);
}
#[test]
fn volume_without_its_range_is_averaged_over_three_hours_against_both_predictions() {
    // Eight times the volume for three hours, the range as usual: a surprise from the first
    // hour, reading about 8x at the third (each hour's volume against its prediction, less
    // its range against its own), while 8x volume with 8x the range is no surprise.
    let n = 24 * 30;
    let mut c = flat(n + 3);
    for x in &mut c[n..] {
        x.quote_volume *= 8.0;
    }
    let rows = candle_rows(&FeatureConfig::default(), &c);
    let z: Vec<f64> = (n..n + 3).map(|i| rows[i].as_ref().unwrap().values[4]).collect();
    assert!(z.iter().all(|&z| z > 5.0), "{z:?}");
    let third = rows[n + 2].as_ref().unwrap().shown[4];
    assert!((third / 8.0 - 1.0).abs() < 0.1, "{third}");
    let mut moving = flat(n + 3);
    for x in &mut moving[n..] {
        x.quote_volume *= 8.0;
        x.high = x.open * 1.032;
        x.low = x.open * 0.968;
    }
    let rows = candle_rows(&FeatureConfig::default(), &moving);
    let z = rows[n + 2].as_ref().unwrap().values[4];
    assert!(z.abs() < 1.5, "{z}");
}
#[test]
fn out_and_back_is_the_smaller_leg_of_a_reversal_not_the_length_of_the_path() {
    let close = |x: f64, want: f64| (x - want).abs() < 1e-12;
    // Up 0.2 over three hours, back over two: the smaller leg, 0.2.
    assert!(close(
        out_and_back([0.1, 0.05, 0.05, -0.1, -0.1].into_iter()),
        0.2
    ));
    // Down and part of the way back: the leg back, 0.05.
    assert!(close(
        out_and_back([-0.1, -0.1, 0.05, 0.0, 0.0].into_iter()),
        0.05
    ));
    // A drift one way only: nothing went out and came back.
    assert!(close(
        out_and_back([0.01, 0.02, 0.0, 0.03, 0.01].into_iter()),
        0.0
    ));
    // Chop: the largest undone swing (0.03), not the path length less the net move (0.12).
    assert!(close(
        out_and_back([0.03, -0.03, 0.03, -0.03, 0.0].into_iter()),
        0.03
    ));
    assert!(close(out_and_back(std::iter::empty()), 0.0));
}
#[test]
fn a_pump_and_dump_reads_as_its_size_out_and_back() {
    let cfg = FeatureConfig::default();
    let mut c = flat(400);
    crate::anomaly::inject::inject_candles(&mut c, 395, crate::anomaly::inject::Pattern::PumpAndDump, 0.2);
    let rows = candle_rows(&cfg, &c);
    let r = rows[399].as_ref().unwrap();
    assert_eq!(CANDLE_FEATURES[5], "out_and_back");
    assert!((r.shown[5] - 1.2_f64.ln()).abs() < 0.01, "{}", r.shown[5]);
    let text = describe("out_and_back", r.shown[5], f64::NAN);
    assert!(
        text.starts_with("price went 18.") && text.ends_with("% out and back over 5 hours"),
        "{text}"
    );
}
/// A 6-hour outage across which the price rose 10%, then 5% down over the two hours after: the
/// return across the gap is no hour's, and the window of `out_and_back` starts over after it
/// (detectors fitted before, without the setting, read the gap's move as a round trip).
#[test]
fn out_and_back_starts_over_after_a_gap() {
    let mut c = flat(400);
    c.drain(380..386);
    for x in &mut c {
        let hour = x.open_time / HOUR_MS;
        let k = match hour {
            386 => 1.10,
            387 => 1.10 * 0.975,
            h if h >= 388 => 1.10 * 0.975 * 0.975,
            _ => 1.0,
        };
        (x.open, x.high, x.low, x.close) = (x.open * k, x.high * k, x.low * k, x.close * k);
    }
    let at = c.iter().position(|x| x.open_time == 388 * HOUR_MS).unwrap();
    let back = |cfg: &FeatureConfig| candle_rows(cfg, &c)[at].as_ref().unwrap().shown[5];
    let on = FeatureConfig::default();
    assert!(on.trip_restarts_at_gaps);
    let returns = [
        (c[at - 1].close / c[at - 2].close).ln(),
        (c[at].close / c[at - 1].close).ln(),
    ];
    assert!(
        (back(&on) - out_and_back(returns.into_iter())).abs() < 1e-12,
        "{}",
        back(&on)
    );
    assert!(back(&on) < 0.03, "{}", back(&on));
    let off = FeatureConfig {
        trip_restarts_at_gaps: false,
        ..on
    };
    assert!(back(&off) > 0.03, "{}", back(&off));
}
#[test]
fn the_market_takes_medians_of_enough_assets() {
    let cfg = FeatureConfig::default();
    let a = flat(300);
    let mut b = flat(300);
    b[250].quote_volume = 8000.0;
    let (ra, rb) = (candle_rows(&cfg, &a), candle_rows(&cfg, &b));
    assert!(MarketContext::new(&[&ra, &rb], 3).is_empty());
    let m = MarketContext::new(&[&ra, &ra, &rb], 3);
    assert_eq!(m.len(), 300 - cfg.candle_warmup_hours);
    // The market's median volume surprise at hour 250 is the calm one: b's spike stands out.
    let adj = m.adjust(rb[250].as_ref().unwrap()).unwrap();
    let raw = rb[250].as_ref().unwrap();
    assert!((adj.values[2] - raw.values[2]).abs() < 1e-9);
    let calm = m.adjust(ra[250].as_ref().unwrap()).unwrap();
    assert!(calm.values[2].abs() < 1e-9 && calm.values[0].abs() < 1e-9);
    assert!(describe("volume_vs_market", adj.shown[2], adj.market[2]).contains("the market's 1.0x"));
}
