//! The variance of the summed hourly log returns over any number of hours, from the model's
//! per-horizon forecasts: one rule shared by the server's risk engine and the stress simulation.
//!
//! `V(tau) = V(h0) tau / h0` below the shortest horizon, log-linear in `(ln H, ln V)` between
//! horizons, `V(hn) tau / hn` beyond the longest.

/// A variance forecast per horizon, in increasing horizon order.
#[derive(Debug, Clone, PartialEq)]
pub struct VarianceCurve {
    /// `(horizon hours, variance of the summed log returns)`, horizons increasing.
    pub points: Vec<(usize, f64)>,
}

impl VarianceCurve {
    /// From per-horizon forecasts in any order.
    #[must_use]
    pub fn new(horizons: &[usize], variances: &[f64]) -> Self {
        let mut points: Vec<(usize, f64)> = horizons.iter().copied().zip(variances.iter().copied()).collect();
        points.sort_by_key(|p| p.0);
        Self { points }
    }

    /// The points the curve is drawn through: a finite positive variance, as `(hours, variance)`.
    pub fn usable(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points
            .iter()
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .map(|&(h, v)| (h as f64, v))
    }

    /// The variance over `tau` hours (see the module docs); NaN without a usable point.
    #[must_use]
    pub fn at(&self, tau: f64) -> f64 {
        // Read in passes rather than collected: the risk policy calls this many times per
        // answer (the drawdown's windows), and `evaluate` per origin.
        let (Some((h0, v0)), Some((hn, vn))) = (self.usable().next(), self.usable().last()) else {
            return f64::NAN;
        };
        if tau <= h0 {
            return v0 * tau / h0;
        }
        if tau >= hn {
            return vn * tau / hn;
        }
        for ((ha, va), (hb, vb)) in self.usable().zip(self.usable().skip(1)) {
            if tau <= hb {
                let w = (tau.ln() - ha.ln()) / (hb.ln() - ha.ln());
                return ((1.0 - w) * va.ln() + w * vb.ln()).exp();
            }
        }
        vn * tau / hn
    }

    /// The variance of each hour's log return, hours `1..=horizon`: `V(h) - V(h - 1)`, never
    /// negative (a curve that falls between horizons gives those hours zero variance). NaN
    /// entries when the curve has no usable point.
    #[must_use]
    pub fn hourly(&self, horizon: usize) -> Vec<f64> {
        let mut previous = 0.0;
        let mut out = Vec::with_capacity(horizon);
        for h in 1..=horizon {
            let v = self.at(h as f64);
            // `f64::max` drops a NaN: without this a curve with no usable point would read as
            // hours of zero variance, a calm market, rather than as no forecast.
            if v.is_nan() {
                out.push(f64::NAN);
                continue;
            }
            out.push((v - previous).max(0.0));
            previous = previous.max(v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(v4: f64, v24: f64, v168: f64) -> VarianceCurve {
        VarianceCurve::new(&[24, 4, 168], &[v24, v4, v168])
    }

    /// No usable point is no forecast: NaN hours, never hours of zero variance.
    #[test]
    fn hourly_without_a_usable_point_is_nan() {
        for c in [
            curve(f64::NAN, f64::NAN, f64::NAN),
            curve(0.0, -1.0, f64::INFINITY),
        ] {
            let hours = c.hourly(6);
            assert!(hours.len() == 6 && hours.iter().all(|v| v.is_nan()), "{hours:?}");
        }
    }

    #[test]
    fn variance_curve_by_hand() {
        let c = curve(0.001, 0.004, 0.02);
        assert!((c.at(2.0) - 0.0005).abs() < 1e-15);
        assert!((c.at(4.0) - 0.001).abs() < 1e-15);
        assert!((c.at(24.0) - 0.004).abs() < 1e-15);
        assert!((c.at(336.0) - 0.04).abs() < 1e-15);
        // Geometric midpoint of 4 and 24 in ln H: the geometric mean of the variances.
        let mid = (4.0f64 * 24.0).sqrt();
        assert!((c.at(mid) - (0.001f64 * 0.004).sqrt()).abs() < 1e-12);
        assert!(VarianceCurve { points: vec![] }.at(4.0).is_nan());
    }

    #[test]
    fn hourly_increments_add_up_to_the_curve() {
        let c = curve(0.001, 0.004, 0.02);
        let hourly = c.hourly(168);
        assert_eq!(hourly.len(), 168);
        assert!((hourly[0] - 0.00025).abs() < 1e-15);
        assert!((hourly[..4].iter().sum::<f64>() - 0.001).abs() < 1e-15);
        assert!((hourly[..24].iter().sum::<f64>() - 0.004).abs() < 1e-12);
        assert!((hourly.iter().sum::<f64>() - 0.02).abs() < 1e-12);
        assert!(hourly.iter().all(|&v| v >= 0.0));
    }
}
