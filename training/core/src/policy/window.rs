//! `D(alpha, tau)` as SPEC defines it: the quantile of the largest fall *within* `tau` hours,
//! which cannot shrink as the window grows. Taken at `tau` alone it could: the calibrated
//! multiplier `u_alpha(t)` falls with `t` (short windows have fatter tails), and a forecast curve
//! may rise little or fall between horizons (a model expecting calm after a crash), so
//! `u(t) sqrt(V(t))^g` could be largest before `tau`. The served `D` is the largest over every
//! window up to `tau` ([`drawdown_within`]).
//!
//! The largest is found exactly, not on a grid. Between the knots of the variance source (a
//! curve's horizons) and of the rule (the calibrated windows), `u` is linear in `s = ln t` and
//! `ln V` is too, so `f(s) = u(s) exp(g ln V(s) / 2)` has `f' = exp(..) (b + e u(s))`, `b` and `e`
//! the two slopes: monotone where `b` and `e` have one sign, otherwise rising then falling with
//! its one maximum where `u(s) = -b/e`. Below the first knot and beyond the last `u` is constant
//! and `V` grows with `t`. So the largest `D` over `(0, tau]` is at `tau`, at a knot below it, or
//! at such a maximum below it; each of those candidates is fixed by the knots alone, whatever
//! `tau`, which keeps the result non-decreasing in `tau`.

use crate::drawdown::DrawdownRule;

use super::VarianceOver;

/// Which windows `D(alpha, tau)` is the quantile of the fall over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrawdownWindow {
    /// Every window up to `tau`: `max_{t <= tau} D(alpha, t)` ([`drawdown_within`]), so a longer
    /// window never gives a smaller drawdown.
    #[default]
    UpToTau,
    /// `tau` alone, as answered until stop 60; kept to replay decisions recorded then. A longer
    /// `tau` could give a looser threshold.
    AtTau,
}

/// A drawdown and the window it was taken at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowDrawdown {
    /// `D(alpha, hours)`, unclipped: NaN when the variance over `tau` (or the multiplier) is not
    /// usable.
    pub drawdown: f64,
    /// The window, hours: `tau`, or a shorter one where `D` is larger.
    pub hours: f64,
    /// The variance over that window: `D = 1 - exp(-u(hours) sqrt(variance)^g)`.
    pub variance: f64,
}

/// `D(alpha, tau)` by `rule` on the variance source `variance` over the windows `window` says.
/// NaN (at `tau`) when the drawdown at `tau` is: an unusable forecast is never taken from a
/// shorter window. [`DrawdownRule::PlainNormal`], the close at `tau` rather than a fall within
/// it, is always taken at `tau`.
#[must_use]
pub fn drawdown_within<V: VarianceOver + ?Sized>(
    variance: &V,
    rule: DrawdownRule<'_>,
    alpha: f64,
    tau: f64,
    window: DrawdownWindow,
) -> WindowDrawdown {
    let at = |t: f64| {
        let v = variance.variance_over(t);
        WindowDrawdown {
            drawdown: rule.drawdown(v, alpha, t),
            hours: t,
            variance: v,
        }
    };
    let mut best = at(tau);
    // The plain normal rule is the close at `tau` (SPEC's GARCH-normal policy), not a fall within.
    if window == DrawdownWindow::AtTau
        || matches!(rule, DrawdownRule::PlainNormal)
        || !best.drawdown.is_finite()
    {
        return best;
    }
    let mut knots = variance.knots();
    knots.extend(rule.knots());
    knots.retain(|t| t.is_finite() && *t > 0.0);
    knots.sort_by(f64::total_cmp);
    knots.dedup();
    let mut consider = |t: f64| {
        if t < tau {
            let d = at(t);
            if d.drawdown.is_finite() && d.drawdown > best.drawdown {
                best = d;
            }
        }
    };
    for pair in knots.windows(2) {
        let (ta, tb) = (pair[0], pair[1]);
        if ta >= tau {
            break;
        }
        consider(ta);
        if let Some(t) = peak(variance, rule, alpha, ta, tb) {
            consider(t);
        }
    }
    if let Some(&last) = knots.last() {
        consider(last);
    }
    best
}

/// Where `u(t) sqrt(V(t))^g` is largest strictly between the knots `ta < tb`, if it rises then
/// falls there (module docs); `u` and `ln V` taken as linear in `ln t` between them.
fn peak<V: VarianceOver + ?Sized>(
    variance: &V,
    rule: DrawdownRule<'_>,
    alpha: f64,
    ta: f64,
    tb: f64,
) -> Option<f64> {
    let (sa, sb) = (ta.ln(), tb.ln());
    let (ua, ub) = (rule.multiplier(alpha, ta), rule.multiplier(alpha, tb));
    let (va, vb) = (variance.variance_over(ta), variance.variance_over(tb));
    if !(ua.is_finite() && ub.is_finite() && va.is_finite() && vb.is_finite() && va > 0.0 && vb > 0.0) {
        return None;
    }
    let b = (ub - ua) / (sb - sa);
    let e = 0.5 * rule.exponent() * (vb.ln() - va.ln()) / (sb - sa);
    // One slope of each sign: `b + e u(s)` falls from positive to negative at most once (NaN
    // slopes are no peak).
    if b * e >= 0.0 || (b * e).is_nan() {
        return None;
    }
    let s = sa + (-b / e - ua) / b;
    (s > sa && s < sb).then(|| s.exp())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::curve::VarianceCurve;
    use crate::drawdown::{DrawdownCalibration, WindowCalibration};

    /// A calibration whose 0.99 multiplier is `u[i]` at window `taus[i]` (flat in the level).
    fn calibration(taus: &[usize], u: &[f64]) -> DrawdownCalibration {
        DrawdownCalibration {
            from: "2020-01-01T00:00:00Z".into(),
            until: "2021-01-01T00:00:00Z".into(),
            stride_hours: 5,
            exponent: 1.0,
            windows: taus
                .iter()
                .zip(u)
                .map(|(&tau, &u)| WindowCalibration {
                    tau,
                    n: 1000,
                    quantiles: vec![(0.5, u), (0.999, u)],
                    tail_index: 0.1,
                    miscoverage_factor: 1.0,
                })
                .collect(),
        }
    }

    fn curve(v4: f64, v24: f64, v168: f64) -> VarianceCurve {
        VarianceCurve::new(&[4, 24, 168], &[v4, v24, v168])
    }

    /// The probe's case: a curve that falls from 24 h to 168 h (LINK, 2020-03-13: 0.268, then
    /// 0.155) gave a smaller `D` at 168 h than at 24 h; the served one is the 24 h one.
    #[test]
    fn a_falling_curve_gives_its_peak_to_every_longer_window() {
        let c = curve(0.05, 0.268, 0.155);
        let rule = DrawdownRule::Reflection;
        let at = |tau| drawdown_within(&c, rule, 0.99, tau, DrawdownWindow::AtTau);
        let within = |tau| drawdown_within(&c, rule, 0.99, tau, DrawdownWindow::UpToTau);
        assert!(at(168.0).drawdown < at(24.0).drawdown, "the case this fixes");
        assert_eq!(within(168.0), at(24.0));
        assert_eq!(within(168.0).hours, 24.0);
        assert_eq!(within(168.0).variance, 0.268);
        // Where `D` rises with the window, nothing changes.
        assert_eq!(within(24.0), at(24.0));
        assert_eq!(within(4.0), at(4.0));
    }

    /// A multiplier falling faster than the variance rises (u 7.2 at 48 h, 4.3 at 168 h, as the
    /// default artifact's at 0.999): the peak lies between the windows, found exactly.
    #[test]
    fn a_peak_between_knots_is_found_exactly() {
        let cal = calibration(&[4, 48, 168], &[3.0, 7.2, 4.3]);
        let rule = DrawdownRule::Calibrated(&cal);
        // `ln V` rising at 0.85 per unit of `ln t` from 24 h: `u sqrt(V)` rises from 48 h
        // (`b + e u` is -2.31 + 0.425 x 7.2 > 0) and falls before 168 h (-2.31 + 0.425 x 4.3
        // < 0), so the peak is inside.
        let c = curve(0.002, 0.01, 0.01 * 7f64.powf(0.85));
        let got = drawdown_within(&c, rule, 0.99, 168.0, DrawdownWindow::UpToTau);
        let grid = (4800..=16800)
            .map(|i| f64::from(i) / 100.0)
            .map(|t| rule.drawdown(c.at(t), 0.99, t))
            .fold(0.0f64, f64::max);
        assert!(got.hours > 48.0 && got.hours < 168.0, "{got:?}");
        assert!(got.drawdown >= grid - 1e-12, "{got:?} below the grid's {grid}");
        assert!((got.drawdown - grid).abs() < 1e-6);
    }

    /// A curve with one usable point is a forecast (`V` proportional to the window); one with
    /// none stays unusable, never taken from a shorter window.
    #[test]
    fn a_forecast_without_a_usable_point_stays_unusable() {
        let c = curve(0.01, f64::NAN, f64::NAN);
        let d = drawdown_within(&c, DrawdownRule::Reflection, 0.99, 200.0, DrawdownWindow::UpToTau);
        assert_eq!(
            d,
            drawdown_within(&c, DrawdownRule::Reflection, 0.99, 200.0, DrawdownWindow::AtTau)
        );
        let none = VarianceCurve { points: vec![] };
        let d = drawdown_within(
            &none,
            DrawdownRule::Reflection,
            0.99,
            24.0,
            DrawdownWindow::UpToTau,
        );
        assert!(d.drawdown.is_nan() && d.hours == 24.0);
    }

    proptest! {
        /// Never smaller than at `tau`, never smaller for a longer window, and at least every
        /// window on an hourly grid below it.
        #[test]
        fn non_decreasing_in_tau(
            v in (1e-5f64..0.5, 1e-5f64..0.5, 1e-5f64..0.5),
            u in proptest::collection::vec(0.5f64..9.0, 9),
            alpha in 0.9f64..0.999,
            taus in (1.0f64..336.0, 1.0f64..336.0),
        ) {
            let cal = calibration(&crate::drawdown::TAU_GRID, &u);
            let c = curve(v.0, v.1, v.2);
            for rule in [DrawdownRule::Calibrated(&cal), DrawdownRule::Reflection] {
                let within = |t| drawdown_within(&c, rule, alpha, t, DrawdownWindow::UpToTau);
                let (short, long) = (taus.0.min(taus.1), taus.0.max(taus.1));
                prop_assert!(within(long).drawdown >= within(short).drawdown - 1e-12);
                prop_assert!(within(long).drawdown >= rule.drawdown(c.at(long), alpha, long));
                let mut t = 1.0;
                while t <= long {
                    prop_assert!(within(long).drawdown >= rule.drawdown(c.at(t), alpha, t) - 1e-12);
                    t += 0.5;
                }
            }
        }
    }
}
