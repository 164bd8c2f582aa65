//! The daily logistic stack of the shortage probability ([`Recalibration::shortage_stack`]):
//! the completed shortage forecasts it is fitted on, and its penalised maximum-likelihood fit.

#[cfg(doc)]
use crate::artifact::Recalibration;

/// One completed shortage forecast at a daily origin: the stack's regressors and the label.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShortagePoint {
    pub(super) hour: i64,
    /// `logit(p)` of the network and the log baseline score ([`crate::artifact::stack_inputs`]).
    pub(super) x: [f64; 2],
    pub(super) label: bool,
}

/// Fewest shortages, and fewest non-shortages, for the stack to be fitted.
pub(super) const MIN_STACK_CLASS: usize = 20;

/// Ridge on the stack's slopes toward the network alone (`b = 1`, `c = 0`), in units of the
/// summed log likelihood: negligible on a window of thousands of origins, it keeps the fit
/// finite where the classes separate.
const STACK_RIDGE: f64 = 1.0;

/// The logistic stack `(a, b, c)` of [`Recalibration::shortage_stack`] fitted on `points` by
/// maximum likelihood with [`STACK_RIDGE`] (Newton's method from the network alone); none with
/// fewer than [`MIN_STACK_CLASS`] shortages or non-shortages, or when it does not converge.
pub(super) fn fit_stack(points: &[ShortagePoint]) -> Option<[f64; 3]> {
    let positives = points.iter().filter(|p| p.label).count();
    if positives < MIN_STACK_CLASS || points.len() - positives < MIN_STACK_CLASS {
        return None;
    }
    let mut k = [0.0, 1.0, 0.0];
    for _ in 0..50 {
        // Gradient and Hessian of the penalised negative log likelihood.
        let mut g = [0.0, STACK_RIDGE * (k[1] - 1.0), STACK_RIDGE * k[2]];
        let mut hess = [[0.0; 3], [0.0, STACK_RIDGE, 0.0], [0.0, 0.0, STACK_RIDGE]];
        for p in points {
            let v = [1.0, p.x[0], p.x[1]];
            let q = volcast_core::baselines::shortage::sigmoid(k[0] + k[1] * v[1] + k[2] * v[2]);
            let e = q - f64::from(u8::from(p.label));
            let w = (q * (1.0 - q)).max(1e-12);
            for i in 0..3 {
                g[i] += e * v[i];
                for j in 0..3 {
                    hess[i][j] += w * v[i] * v[j];
                }
            }
        }
        let step = solve3(hess, g)?;
        // Newton's step, halved until the objective does not rise (it is convex).
        let before = stack_objective(points, k);
        let mut t = 1.0;
        let next = loop {
            let next = [k[0] - t * step[0], k[1] - t * step[1], k[2] - t * step[2]];
            if stack_objective(points, next) <= before || t < 1e-6 {
                break next;
            }
            t *= 0.5;
        };
        k = next;
        if step.iter().all(|s| t * s.abs() < 1e-9) {
            return k.iter().all(|x| x.is_finite()).then_some(k);
        }
    }
    None
}

/// The penalised negative log likelihood [`fit_stack`] minimises.
fn stack_objective(points: &[ShortagePoint], k: [f64; 3]) -> f64 {
    let nll: f64 = points
        .iter()
        .map(|p| {
            let z = k[0] + k[1] * p.x[0] + k[2] * p.x[1];
            // log(1 + e^z) - y z, without overflow.
            z.max(0.0) + (-z.abs()).exp().ln_1p() - if p.label { z } else { 0.0 }
        })
        .sum();
    nll + 0.5 * STACK_RIDGE * ((k[1] - 1.0).powi(2) + k[2].powi(2))
}

/// `A x = b` for a symmetric positive definite 3 x 3 `A` (Cholesky); none when it is not.
fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let mut l = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..=i {
            let s = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    let mut y = [0.0; 3];
    for i in 0..3 {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0; 3];
    for i in (0..3).rev() {
        x[i] = (y[i] - (i + 1..3).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}
