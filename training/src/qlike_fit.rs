//! A log-linear variance forecast fitted on QLIKE ([`TrainingConfig::skip_qlike`]): the
//! coefficients `b` of `F = exp(x'b)` that minimise the summed QLIKE of the rows' realized
//! variances, plus the same ridge on the slopes as the least-squares start.
//!
//! QLIKE, `RV/F - ln(RV/F) - 1`, is minimised by the conditional mean of RV; least squares in
//! logs fits the conditional mean of ln RV and adds one constant `s^2 / 2` for the mean, which is
//! right only where the spread of ln RV is the same for every row. In `b` the QLIKE sum,
//! `sum exp(y - x'b) + x'b` up to terms without `b` (`y = ln RV`), is convex, so Newton's method
//! from the least-squares start with a step-halving line search finds its minimum.
//!
//! [`TrainingConfig::skip_qlike`]: volcast_model::config::TrainingConfig::skip_qlike

use nalgebra::{DMatrix, DVector};

/// The largest log miss `y - x'b` the objective exponentiates (as the training loss clamps it).
const MAX_LOG_MISS: f64 = 30.0;
/// Newton steps at most.
const MAX_STEPS: usize = 100;
/// Step halvings at most per Newton step.
const MAX_HALVINGS: usize = 40;

/// The ridge-penalised QLIKE objective (without its constant terms) at `b`:
/// `sum_i exp(y_i - x_i'b) + x_i'b - y_i - 1 + 0.5 sum_k ridge_k b_k^2`.
fn objective(x: &DMatrix<f64>, y: &DVector<f64>, ridge: &DVector<f64>, b: &DVector<f64>) -> f64 {
    let fitted = x * b;
    let loss: f64 = y
        .iter()
        .zip(fitted.iter())
        .map(|(y, f)| {
            let miss = (y - f).min(MAX_LOG_MISS);
            miss.exp() - miss - 1.0
        })
        .sum();
    let penalty: f64 = ridge.iter().zip(b.iter()).map(|(r, b)| r * b * b).sum();
    loss + 0.5 * penalty
}

/// The coefficients minimising `objective`, from `start` (the least-squares fit with its
/// `s^2 / 2`, the skip as it stood before). `x`: one row per observation, its first column the
/// intercept's ones; `y`: ln RV; `ridge`: per coefficient (0 for the intercept). Returns `start`
/// where no step lowers the objective (already the minimum, or a degenerate system).
#[must_use]
pub fn qlike_refine(
    x: &DMatrix<f64>,
    y: &DVector<f64>,
    ridge: &DVector<f64>,
    start: DVector<f64>,
) -> DVector<f64> {
    let n = x.nrows();
    if n == 0 {
        return start;
    }
    let mut b = start;
    let mut value = objective(x, y, ridge, &b);
    for _ in 0..MAX_STEPS {
        let fitted = x * &b;
        // Per row: d/df of exp(y - f) + f is 1 - exp(y - f); the second derivative exp(y - f).
        let curvature = DVector::from_iterator(
            n,
            y.iter()
                .zip(fitted.iter())
                .map(|(y, f)| (y - f).min(MAX_LOG_MISS).exp()),
        );
        let slope = curvature.map(|c| 1.0 - c);
        let gradient = x.tr_mul(&slope) + ridge.component_mul(&b);
        let weighted = DMatrix::from_fn(n, x.ncols(), |i, c| x[(i, c)] * curvature[i]);
        let hessian = x.tr_mul(&weighted) + DMatrix::from_diagonal(ridge);
        let Some(step) = hessian.cholesky().map(|c| c.solve(&gradient)) else {
            return b;
        };
        let mut scale = 1.0;
        let mut moved = false;
        for _ in 0..MAX_HALVINGS {
            let candidate = &b - &step * scale;
            let candidate_value = objective(x, y, ridge, &candidate);
            if candidate_value < value {
                let gain = value - candidate_value;
                b = candidate;
                value = candidate_value;
                moved = gain > 1e-12 * n as f64;
                break;
            }
            scale *= 0.5;
        }
        if !moved {
            break;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use volcast_core::synth::Rng;

    /// Rows `ln RV = a + c z + e`, `e` normal with a spread that grows with `z` when
    /// `heteroskedastic`; the design `[1, z]`.
    fn rows(n: usize, heteroskedastic: bool, seed: u64) -> (DMatrix<f64>, DVector<f64>) {
        let mut rng = Rng::new(seed);
        let mut z = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let zi = rng.normal();
            let spread = if heteroskedastic {
                (0.8 + 0.4 * zi).clamp(0.2, 2.0)
            } else {
                0.8
            };
            z.push(zi);
            y.push(-1.0 + 0.7 * zi + spread * rng.normal());
        }
        let x = DMatrix::from_fn(n, 2, |i, c| if c == 0 { 1.0 } else { z[i] });
        (x, DVector::from_vec(y))
    }

    /// The least-squares fit with `s^2 / 2` added to the intercept (the skip's start).
    fn least_squares(x: &DMatrix<f64>, y: &DVector<f64>) -> DVector<f64> {
        let mut b = (x.tr_mul(x)).cholesky().expect("full rank").solve(&x.tr_mul(y));
        let residuals = y - x * &b;
        let s2 = residuals.norm_squared() / (x.nrows() - x.ncols()) as f64;
        b[0] += 0.5 * s2;
        b
    }

    fn mean_qlike(x: &DMatrix<f64>, y: &DVector<f64>, b: &DVector<f64>) -> f64 {
        let zero = DVector::zeros(b.len());
        objective(x, y, &zero, b) / x.nrows() as f64
    }

    #[test]
    fn with_one_spread_for_every_row_it_agrees_with_least_squares_and_its_lognormal_mean() {
        // ln RV normal with a constant spread: E[RV | z] = exp(a + c z + s^2 / 2), so both fits
        // aim at the same coefficients.
        let (x, y) = rows(40_000, false, 3);
        let start = least_squares(&x, &y);
        let ridge = DVector::zeros(2);
        let fitted = qlike_refine(&x, &y, &ridge, start.clone());
        assert!((fitted[0] - (-1.0 + 0.32)).abs() < 0.03, "{fitted}");
        assert!((fitted[1] - 0.7).abs() < 0.03, "{fitted}");
        assert!((fitted - start).amax() < 0.03);
    }

    #[test]
    fn where_the_spread_grows_with_the_regressor_it_takes_the_mean_s_slope_and_scores_better() {
        // The spread 0.8 + 0.4 z: the conditional mean's log, a + c z + (0.8 + 0.4 z)^2 / 2,
        // rises faster in z than the median's; least squares misses that, QLIKE's fit does not.
        let (x, y) = rows(40_000, true, 5);
        let start = least_squares(&x, &y);
        let ridge = DVector::zeros(2);
        let fitted = qlike_refine(&x, &y, &ridge, start.clone());
        assert!(
            fitted[1] > start[1] + 0.15,
            "QLIKE {fitted}, least squares {start}"
        );
        let (x_new, y_new) = rows(40_000, true, 6);
        let (fit_score, start_score) = (
            mean_qlike(&x_new, &y_new, &fitted),
            mean_qlike(&x_new, &y_new, &start),
        );
        assert!(
            fit_score < start_score - 0.01,
            "out of sample: QLIKE fit {fit_score}, least squares {start_score}"
        );
    }

    #[test]
    fn it_never_ends_above_its_start_and_a_ridge_pulls_the_slope_in() {
        let (x, y) = rows(2_000, true, 8);
        let start = least_squares(&x, &y);
        let free = qlike_refine(&x, &y, &DVector::zeros(2), start.clone());
        let ridge = DVector::from_vec(vec![0.0, 2_000.0]);
        let held = qlike_refine(&x, &y, &ridge, start.clone());
        assert!(objective(&x, &y, &ridge, &held) <= objective(&x, &y, &ridge, &start));
        assert!(held[1].abs() < free[1].abs(), "{held} {free}");
        // No rows: the start back.
        let empty = qlike_refine(&DMatrix::zeros(0, 2), &DVector::zeros(0), &ridge, start.clone());
        assert_eq!(empty, start);
    }
}
