//! Adaptive conformal inference on the drawdown level: the factor each calibrated window's
//! level is served at, moved day by day by the breaches of the windows completed before.

use super::DrawdownCalibration;

/// Bounds on the adaptive miscoverage factor: the level served for alpha 0.99 stays within
/// [0.95, 0.999].
pub const MISCOVERAGE_FACTOR_RANGE: (f64, f64) = (0.1, 5.0);

/// One completed drawdown window at a daily origin: its origin hour, the log fall
/// `L = -ln(lowest low / close)` over the window, and the served forecast's scale `sqrt(V(tau))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fall {
    /// Origin hour (a midnight).
    pub hour: i64,
    /// Log fall over the window.
    pub log_fall: f64,
    /// `sqrt(V(tau))` of the forecast served at the origin.
    pub scale: f64,
}

/// Adaptive conformal inference on the drawdown level (Gibbs and Candes, 2021), per window of
/// `calibration`: each window's factor `m` (the served level for `alpha` is `1 - (1 - alpha) m`)
/// starts at 1 and, for every window that completes after `anchor` (a midnight), moves in logs by
/// `step (1 - breach / (1 - alpha))`: up by `step` without a breach, down by
/// `step (alpha / (1 - alpha))` with one, so that in the long run the threshold served at the
/// reference level `alpha` is breached at rate `1 - alpha` whatever the drift of the forecaster
/// (clamped to [`MISCOVERAGE_FACTOR_RANGE`]). A breach is judged with the factor in force at the
/// window's origin. Updates are applied at each midnight for the windows completed during the
/// day before, so the factors of day `d` use only windows that ended by `d`.
///
/// `falls[i]` holds the completed windows of `calibration.windows[i]` at daily origins, in
/// increasing origin order. Returns, for each midnight from `first_day` to `last_day`, the
/// factors in force that day (all 1 up to the anchor).
#[must_use]
pub fn adaptive_factors(
    calibration: &DrawdownCalibration,
    falls: &[Vec<Fall>],
    alpha: f64,
    step: f64,
    anchor: i64,
    (first_day, last_day): (i64, i64),
) -> std::collections::BTreeMap<i64, Vec<f64>> {
    let (lo, hi) = (MISCOVERAGE_FACTOR_RANGE.0.ln(), MISCOVERAGE_FACTOR_RANGE.1.ln());
    let mut log_m = vec![0.0f64; calibration.windows.len()];
    let mut out = std::collections::BTreeMap::new();
    let mut day = first_day;
    while day <= last_day {
        for (i, window) in calibration.windows.iter().enumerate() {
            let tau = i64::try_from(window.tau).unwrap_or(i64::MAX / 2);
            let Some(points) = falls.get(i) else { continue };
            // Windows completed in (day - 24, day] and after the anchor.
            let from = (day - 24).max(anchor) - tau;
            let a = points.partition_point(|p| p.hour <= from);
            let b = points.partition_point(|p| p.hour <= day - tau);
            let mut change = 0.0;
            for p in &points[a..b.max(a)] {
                let m = out
                    .get(&(p.hour - p.hour.rem_euclid(24)))
                    .and_then(|f: &Vec<f64>| f.get(i).copied())
                    .unwrap_or(1.0);
                let u = window.measured_multiplier(1.0 - (1.0 - alpha) * m);
                let breach = p.log_fall > u * p.scale.powf(calibration.exponent);
                change += step * (1.0 - f64::from(u8::from(breach)) / (1.0 - alpha));
            }
            if day > anchor {
                log_m[i] = (log_m[i] + change).clamp(lo, hi);
            }
        }
        // Clamped again after exp: ln then exp of a bound may land a rounding outside it.
        let (min, max) = MISCOVERAGE_FACTOR_RANGE;
        out.insert(day, log_m.iter().map(|x| x.exp().clamp(min, max)).collect());
        day += 24;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::WindowCalibration;
    use super::super::tests::reflected_sample;
    use super::*;

    /// A forecaster that understates the fall's scale by 1.2 after the calibration: measured as
    /// calibrated it breaches about 3% of the time at alpha 0.99; the adaptive factor brings the
    /// breaches of its later windows back near 1%, judged with the factor in force at each origin.
    #[test]
    fn adaptive_factor_restores_the_breach_rate_under_drift() {
        let window = WindowCalibration::fit(4, reflected_sample(100_000)).unwrap();
        let c = DrawdownCalibration {
            from: String::new(),
            until: String::new(),
            stride_hours: 5,
            exponent: 1.0,
            windows: vec![window],
        };
        let mut rng = crate::synth::Rng::new(3);
        let days = 1500i64;
        let falls: Vec<Fall> = (0..days)
            .flat_map(|d| (0..60).map(move |_| d))
            .map(|d| Fall {
                hour: d * 24,
                log_fall: rng.normal().abs() * 0.01 * 1.2,
                scale: 0.01,
            })
            .collect();
        let rate = |step: f64| {
            let f = adaptive_factors(&c, std::slice::from_ref(&falls), 0.99, step, 0, (0, days * 24));
            let late: Vec<&Fall> = falls.iter().filter(|p| p.hour >= 500 * 24).collect();
            let breaches = late
                .iter()
                .filter(|p| {
                    let served = c.with_factors(&f[&p.hour]);
                    p.log_fall > served.multiplier(0.99, 4.0) * p.scale
                })
                .count();
            breaches as f64 / late.len() as f64
        };
        let fixed = rate(0.0);
        assert!(fixed > 0.025, "{fixed}");
        let adapted = rate(0.0005);
        assert!((0.007..=0.013).contains(&adapted), "{adapted}");
        // Factors are 1 up to and at the anchor, and bounded.
        let f = adaptive_factors(
            &c,
            std::slice::from_ref(&falls),
            0.99,
            0.05,
            100 * 24,
            (0, days * 24),
        );
        assert!(f.range(..=100 * 24).all(|(_, m)| m[0] == 1.0));
        assert!(
            f.values()
                .all(|m| (MISCOVERAGE_FACTOR_RANGE.0..=MISCOVERAGE_FACTOR_RANGE.1).contains(&m[0]))
        );
    }
}
