//! Log HAR-RV (SPEC "Baselines"):
//! `ln RV(t,H) = b0 + b1 ln RV24(t) + b2 ln RV168(t) + b3 ln RV720(t)`, pooled OLS over assets on
//! fit-period daily origins, one fit per horizon, points with a zero target or regressor
//! dropped. The forecast corrects for the log: `F = exp(fitted + s^2 / 2)`, `s^2 = SSR / (n - 4)`.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::FitError;

/// Trailing windows of the regressors, in hours.
pub const REGRESSOR_WINDOWS: [usize; 3] = [24, 168, 720];

/// One horizon's fitted HAR regression.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Har {
    /// Horizon in hours.
    pub horizon: usize,
    /// `[b0, b1, b2, b3]`.
    pub coef: [f64; 4],
    /// Residual variance `SSR / (n - 4)`.
    pub residual_variance: f64,
    /// Points in the fit.
    pub n: usize,
}

/// One fitting point: the target and the three trailing realized variances (not in logs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HarPoint {
    /// RV(t, H).
    pub target: f64,
    /// RV24(t), RV168(t), RV720(t).
    pub regressors: [f64; 3],
}

fn usable(x: f64) -> bool {
    x > 0.0 && x.is_finite()
}

impl Har {
    /// Pooled OLS of the log target on the log regressors.
    ///
    /// # Errors
    /// [`FitError`] with fewer usable points than parameters or a singular design.
    pub fn fit(horizon: usize, points: &[HarPoint]) -> Result<Self, FitError> {
        let rows: Vec<&HarPoint> = points
            .iter()
            .filter(|p| usable(p.target) && p.regressors.iter().all(|&x| usable(x)))
            .collect();
        let n = rows.len();
        if n <= 4 {
            return Err(FitError::TooLittleData(format!(
                "HAR {horizon}h: {n} usable fit-period points, need more than 4"
            )));
        }
        let x = DMatrix::from_fn(n, 4, |i, j| {
            if j == 0 {
                1.0
            } else {
                rows[i].regressors[j - 1].ln()
            }
        });
        let y = DVector::from_iterator(n, rows.iter().map(|p| p.target.ln()));
        let solution =
            x.tr_mul(&x)
                .cholesky()
                .map(|c| c.solve(&x.tr_mul(&y)))
                .ok_or(FitError::NoConvergence {
                    what: "HAR least squares",
                    reason: "singular design matrix".to_owned(),
                })?;
        let residuals = &y - &x * &solution;
        let residual_variance = residuals.norm_squared() / (n - 4) as f64;
        Ok(Self {
            horizon,
            coef: [solution[0], solution[1], solution[2], solution[3]],
            residual_variance,
            n,
        })
    }

    /// Variance forecast from the three trailing realized variances; NaN when one is missing
    /// or zero.
    #[must_use]
    pub fn forecast(&self, regressors: [f64; 3]) -> f64 {
        if !regressors.iter().all(|&x| usable(x)) {
            return f64::NAN;
        }
        let fitted = self.coef[0]
            + self.coef[1] * regressors[0].ln()
            + self.coef[2] * regressors[1].ln()
            + self.coef[3] * regressors[2].ln();
        (fitted + 0.5 * self.residual_variance).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Rng;

    #[test]
    fn recovers_known_coefficients() {
        let truth = [-1.0, 0.4, 0.3, 0.2];
        let sigma = 0.5;
        let mut z = Rng::new(11);
        let points: Vec<HarPoint> = (0..100_000)
            .map(|_| {
                let regressors = [
                    (-8.0 + z.normal()).exp(),
                    (-8.0 + z.normal()).exp(),
                    (-8.0 + z.normal()).exp(),
                ];
                let fitted = truth[0]
                    + truth[1] * regressors[0].ln()
                    + truth[2] * regressors[1].ln()
                    + truth[3] * regressors[2].ln();
                HarPoint {
                    target: (fitted + sigma * z.normal()).exp(),
                    regressors,
                }
            })
            .collect();
        let har = Har::fit(24, &points).unwrap();
        // Standard errors at n = 100,000: about 0.0016 for the slopes and 0.025 for the intercept
        // (the log regressors sit near -8, far from zero); tolerances are four of them.
        assert!(
            (har.coef[0] - truth[0]).abs() < 0.1,
            "{:?} vs {truth:?}",
            har.coef
        );
        for (got, want) in har.coef[1..].iter().zip(&truth[1..]) {
            assert!((got - want).abs() < 0.007, "{:?} vs {truth:?}", har.coef);
        }
        assert!((har.residual_variance - sigma * sigma).abs() < 0.01);
        assert_eq!(har.n, 100_000);
        let f = har.forecast([1e-4, 1e-4, 1e-4]);
        let expected = (truth[0] + 0.9 * (1e-4f64).ln() + 0.5 * har.residual_variance).exp();
        assert!((f / expected - 1.0).abs() < 0.1);
        assert!(har.forecast([0.0, 1e-4, 1e-4]).is_nan());
    }

    #[test]
    fn drops_zero_points_and_refuses_too_few() {
        // Clean points of a known fit, plus points with a zero target or regressor, which SPEC
        // drops: the fit is the clean points' own, over their count.
        let mut z = Rng::new(3);
        let clean: Vec<HarPoint> = (0..50)
            .map(|_| {
                let regressors = [
                    (-8.0 + z.normal()).exp(),
                    (-8.0 + z.normal()).exp(),
                    (-8.0 + z.normal()).exp(),
                ];
                HarPoint {
                    target: (-8.0 + z.normal()).exp(),
                    regressors,
                }
            })
            .collect();
        let zero = |k: usize| {
            let mut p = clean[k];
            if k == 0 {
                p.target = 0.0;
            } else {
                p.regressors[k - 1] = 0.0;
            }
            p
        };
        let mut all = clean.clone();
        all.extend((0..4).map(zero));
        let (with, without) = (Har::fit(4, &all).unwrap(), Har::fit(4, &clean).unwrap());
        assert_eq!(with.n, 50);
        assert_eq!(with.coef, without.coef);
        // More than four usable points are needed (four coefficients).
        assert!(Har::fit(4, &clean[..5]).is_ok());
        assert!(Har::fit(4, &clean[..4]).is_err());
        let mut four = clean[..4].to_vec();
        four.extend((0..4).map(zero));
        assert!(Har::fit(4, &four).is_err());
    }
}
