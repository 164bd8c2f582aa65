//! SPEC's targets: realized variance, Amihud illiquidity, liquidity-shortage labels and drawdowns.
//!
//! All windows follow one rule: a window of `W` hours ending at slot `s` covers slots
//! `s-W+1 ..= s` and exists only if at least 90% of its values do (`10 n >= 9 W`). Sums are
//! rescaled by `W / n`; means are plain means of what exists.

use crate::grid::HourlyGrid;

/// SPEC's 90% rule for a window of `window` values of which `n` exist.
#[must_use]
pub fn covered(n: usize, window: usize) -> bool {
    10 * n >= 9 * window
}

/// Sum and count of the non-NaN values (all non-negative: squares, illiquidity) in every window
/// of `window` slots ending at each slot.
///
/// A sliding sum, re-added from scratch every `window` slots so rounding cannot drift far when
/// values span many orders of magnitude (illiquidity does).
fn rolling_sum_count(values: &[f64], window: usize) -> (Vec<f64>, Vec<u32>) {
    let n = values.len();
    let mut sums = Vec::with_capacity(n);
    let mut counts = Vec::with_capacity(n);
    // `positive`: values above zero in the window. A window without any sums to exactly 0, never
    // to the rounding left by subtracting what slid out (which can be negative).
    let (mut sum, mut count, mut positive) = (0.0f64, 0u32, 0u32);
    for s in 0..n {
        if window > 0 && s % window == 0 {
            // Exact re-sum of the window ending at s-1 before adding values[s].
            let start = s.saturating_sub(window - 1);
            (sum, count, positive) = (0.0, 0, 0);
            for v in values[start..s].iter().filter(|v| !v.is_nan()) {
                sum += v;
                count += 1;
                positive += u32::from(*v > 0.0);
            }
        } else if s >= window {
            let old = values[s - window];
            if !old.is_nan() {
                sum -= old;
                count -= 1;
                positive -= u32::from(old > 0.0);
            }
        }
        let v = values[s];
        if !v.is_nan() {
            sum += v;
            count += 1;
            positive += u32::from(v > 0.0);
        }
        sums.push(if positive == 0 { 0.0 } else { sum.max(0.0) });
        counts.push(count);
    }
    (sums, counts)
}

/// Realized variance of the `window` returns ending at each slot: `sum r^2 * W / n`, NaN unless
/// 90% of the returns exist.
///
/// Trailing RV_W at origin `t` is `rv[t]`; the forward target RV(t, H) is `rv_H[t + H]`.
#[must_use]
pub fn realized_variance(ret: &[f64], window: usize) -> Vec<f64> {
    let squares: Vec<f64> = ret.iter().map(|r| r * r).collect();
    let (sums, counts) = rolling_sum_count(&squares, window);
    sums.iter()
        .zip(&counts)
        .map(|(&s, &n)| {
            if n > 0 && covered(n as usize, window) {
                s * window as f64 / f64::from(n)
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Amihud illiquidity per slot: `|r| / quote_volume * 1e6`; NaN where the return is missing or
/// quote volume is zero.
#[must_use]
pub fn illiquidity(grid: &HourlyGrid) -> Vec<f64> {
    grid.ret
        .iter()
        .zip(&grid.quote_volume)
        .map(|(r, qv)| {
            if r.is_nan() || qv.is_nan() || *qv == 0.0 {
                f64::NAN
            } else {
                r.abs() / qv * 1e6
            }
        })
        .collect()
}

/// Mean of the `window` values ending at each slot, NaN unless 90% of them exist (SPEC's M_H).
#[must_use]
pub fn rolling_mean(values: &[f64], window: usize) -> Vec<f64> {
    let (sums, counts) = rolling_sum_count(values, window);
    sums.iter()
        .zip(&counts)
        .map(|(&s, &n)| {
            if n > 0 && covered(n as usize, window) {
                s / f64::from(n)
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Hours in the trailing window whose median is the shortage reference (30 days).
pub const SHORTAGE_REFERENCE_HOURS: usize = 720;

/// Median of the values in the `window` slots ending at `end` (inclusive), needing 90% of them;
/// the mean of the two middle values when their number is even. `scratch` is reused storage.
#[must_use]
pub fn trailing_median(values: &[f64], end: usize, window: usize, scratch: &mut Vec<f64>) -> Option<f64> {
    if end >= values.len() {
        return None;
    }
    let start = (end + 1).saturating_sub(window);
    scratch.clear();
    scratch.extend(values[start..=end].iter().copied().filter(|v| !v.is_nan()));
    let n = scratch.len();
    if n == 0 || !covered(n, window) {
        return None;
    }
    let (_, &mut upper, _) = scratch.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = scratch[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(0.5 * (lower + upper))
}

/// Liquidity-shortage facts at one origin for one horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShortageAtOrigin {
    /// The label `M_H(t+H) > 2 median`, when it exists.
    pub label: Option<bool>,
    /// The baseline score `M_H(t) / median`, when it exists.
    pub score: Option<f64>,
}

/// Shortage label and baseline score at origin slot `t`, given `m` = M_H per slot.
///
/// Both need the 30-day median of M_H over `(t-720h, t]` (90% present, non-zero).
#[must_use]
pub fn shortage_at(m: &[f64], t: usize, horizon: usize, scratch: &mut Vec<f64>) -> ShortageAtOrigin {
    let none = ShortageAtOrigin {
        label: None,
        score: None,
    };
    let Some(median) = trailing_median(m, t, SHORTAGE_REFERENCE_HOURS, scratch) else {
        return none;
    };
    if median <= 0.0 {
        return none;
    }
    let future = m.get(t + horizon).copied().unwrap_or(f64::NAN);
    let now = m[t];
    ShortageAtOrigin {
        label: (!future.is_nan()).then_some(future > 2.0 * median),
        score: (!now.is_nan()).then(|| now / median),
    }
}

/// Largest fall within `tau` hours after origin slot `t`: `1 - min(low over slots t+1..=t+tau) /
/// close[t]`. None unless the close at `t` and all `tau` candles exist.
#[must_use]
pub fn drawdown(grid: &HourlyGrid, t: usize, tau: usize) -> Option<f64> {
    let close = *grid.close.get(t)?;
    if close.is_nan() || t + tau >= grid.len() {
        return None;
    }
    let mut lowest = f64::INFINITY;
    for &low in &grid.low[t + 1..=t + tau] {
        if low.is_nan() {
            return None;
        }
        lowest = lowest.min(low);
    }
    Some(1.0 - lowest / close)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candles::Candle;
    use crate::time::HOUR_MS;

    const NAN: f64 = f64::NAN;

    fn close_enough(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
    }

    #[test]
    fn ninety_percent_rule_is_integer() {
        assert!(covered(9, 10));
        assert!(!covered(8, 10));
        assert!(covered(648, 720));
        assert!(!covered(647, 720));
        assert!(covered(4, 4));
        assert!(!covered(3, 4)); // 30 < 36
        assert!(covered(22, 24)); // 220 >= 216
        assert!(!covered(21, 24));
    }

    #[test]
    fn a_window_of_zero_returns_has_zero_variance_exactly() {
        // Subtracting 0.01, 0.04 and 0.49 from their sum leaves -5.6e-17, and 0.09, 0.01, 0.49
        // leaves +5.6e-17: a quiet window's RV must be 0 (excluded by SPEC), not a negative
        // number (a NaN QLIKE) or a tiny positive one (a QLIKE of about 36).
        for first in [[0.1, 0.2, 0.7], [0.3, 0.1, 0.7]] {
            let mut ret = vec![0.5];
            ret.extend(first);
            ret.extend([0.0; 8]);
            let rv = realized_variance(&ret, 4);
            for (slot, v) in rv.iter().enumerate().skip(7) {
                assert!(v.to_bits() == 0.0f64.to_bits(), "slot {slot}: {v:e}");
            }
        }
    }

    #[test]
    fn realized_variance_by_hand() {
        // Window 4 needs all 4 returns (10*3 = 30 < 36).
        let r = [NAN, 0.1, -0.2, 0.1, 0.3, NAN, 0.2];
        let rv = realized_variance(&r, 4);
        assert!(rv[..4].iter().all(|v| v.is_nan()));
        // slots 1..=4: 0.01 + 0.04 + 0.01 + 0.09 = 0.15
        assert!(close_enough(rv[4], 0.15));
        assert!(rv[5].is_nan() && rv[6].is_nan());

        // Window 10 with 9 returns present: rescaled by 10/9.
        let mut r = vec![0.1; 10];
        r[3] = NAN;
        let rv = realized_variance(&r, 10);
        assert!(close_enough(rv[9], 9.0 * 0.01 * 10.0 / 9.0));
        r[4] = NAN;
        assert!(realized_variance(&r, 10)[9].is_nan());
    }

    #[test]
    fn rolling_sums_survive_huge_values_leaving_the_window() {
        let mut v = vec![1e-6; 50];
        v[3] = 1e12;
        let m = rolling_mean(&v, 5);
        assert!(close_enough(m[49], 1e-6), "{}", m[49]);
        assert!(close_enough(m[10], 1e-6), "{}", m[10]);
    }

    fn grid(closes: &[Option<f64>], qv: f64) -> HourlyGrid {
        let candles: Vec<Candle> = closes
            .iter()
            .enumerate()
            .filter_map(|(h, c)| {
                c.map(|c| Candle {
                    open_time: i64::try_from(h).unwrap() * HOUR_MS,
                    open: c,
                    high: c * 1.01,
                    low: c * 0.98,
                    close: c,
                    volume: 1.0,
                    quote_volume: qv,
                })
            })
            .collect();
        HourlyGrid::from_candles(&candles)
    }

    #[test]
    fn illiquidity_by_hand() {
        let g = grid(&[Some(100.0), Some(110.0), None, Some(99.0), Some(99.0)], 2e6);
        let il = illiquidity(&g);
        assert!(il[0].is_nan());
        assert!(close_enough(il[1], (1.1f64).ln() / 2e6 * 1e6));
        assert!(il[2].is_nan() && il[3].is_nan()); // gap: no return
        assert_eq!(il[4], 0.0);
        let g = grid(&[Some(100.0), Some(110.0)], 0.0);
        assert!(illiquidity(&g)[1].is_nan());
    }

    #[test]
    fn median_even_odd_and_coverage() {
        let mut s = Vec::new();
        let v = [5.0, 1.0, 3.0, 2.0];
        assert_eq!(trailing_median(&v, 3, 4, &mut s), Some(2.5));
        assert_eq!(trailing_median(&v, 2, 3, &mut s), Some(3.0));
        let v = [5.0, NAN, 3.0, 2.0];
        assert_eq!(trailing_median(&v, 3, 4, &mut s), None);
        let mut v = vec![1.0; 720];
        v[..72].fill(NAN);
        v[719] = 9.0;
        assert_eq!(trailing_median(&v, 719, 720, &mut s), Some(1.0));
        v[72] = NAN;
        assert_eq!(trailing_median(&v, 719, 720, &mut s), None);
    }

    #[test]
    fn shortage_label_and_score() {
        let mut m = vec![1.0; 800];
        m[730] = 2.5;
        m[719] = 1.5;
        let mut s = Vec::new();
        let at = shortage_at(&m, 719, 11, &mut s);
        assert_eq!(at.label, Some(true));
        assert_eq!(at.score, Some(1.5));
        let at = shortage_at(&m, 719, 12, &mut s);
        assert_eq!(at.label, Some(false));
        // Too little history: no label.
        assert_eq!(shortage_at(&m, 600, 4, &mut s).label, None);
        // Zero median: no label.
        let z = vec![0.0; 800];
        assert_eq!(shortage_at(&z, 719, 4, &mut s).label, None);
        // Future missing: no label, score still there.
        let mut m = vec![1.0; 724];
        m[723] = NAN;
        let at = shortage_at(&m, 719, 4, &mut s);
        assert_eq!((at.label, at.score), (None, Some(1.0)));
    }

    #[test]
    fn drawdown_uses_lowest_low_and_needs_every_candle() {
        let g = grid(&[Some(100.0), Some(90.0), Some(95.0), None, Some(80.0)], 1.0);
        // origin slot 0 (close 100): lows 88.2, 93.1 over tau 2
        let d = drawdown(&g, 0, 2).unwrap();
        assert!(close_enough(d, 1.0 - 90.0 * 0.98 / 100.0));
        assert_eq!(drawdown(&g, 0, 3), None);
        assert_eq!(drawdown(&g, 3, 1), None);
        assert_eq!(drawdown(&g, 4, 1), None);
    }
}
