//! SPEC's econometric baselines: EWMA, GARCH(1,1) and log HAR-RV for variance, and the
//! illiquidity-ratio score for liquidity shortage.
//!
//! Each is fitted on the fit period only and then produces forecasts at any origin from data
//! observable at that origin. The maths rests on maintained crates: `argmin` minimises the
//! likelihoods, `nalgebra` solves the least squares.

pub mod ewma;
pub mod garch;
pub mod har;
pub mod set;
pub mod shortage;

use std::sync::Mutex;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

/// A baseline could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// Not enough fit-period data.
    #[error("{0}")]
    TooLittleData(String),
    /// The optimiser or solver failed.
    #[error("{what} did not converge: {reason}")]
    NoConvergence {
        /// Which fit.
        what: &'static str,
        /// The optimiser's message.
        reason: String,
    },
}

/// Sum of `ln x` over many values, with one logarithm per block of products: likelihood loops
/// run several times faster without losing accuracy (blocks of 8 stay far from f64's limits for
/// variances between 1e-30 and 1e30).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogSum {
    product: f64,
    in_block: u32,
    total: f64,
}

impl LogSum {
    pub(crate) fn new() -> Self {
        Self {
            product: 1.0,
            in_block: 0,
            total: 0.0,
        }
    }

    #[inline]
    pub(crate) fn add(&mut self, x: f64) {
        self.product *= x;
        self.in_block += 1;
        if self.in_block == 8 {
            self.total += self.product.ln();
            self.product = 1.0;
            self.in_block = 0;
        }
    }

    pub(crate) fn finish(self) -> f64 {
        self.total + self.product.ln()
    }
}

/// A smooth objective whose value and gradient come from one pass over the data.
pub(crate) trait Objective: Sync {
    /// Value and gradient at `p`; a non-finite value marks `p` as infeasible.
    fn value_and_gradient(&self, p: &[f64]) -> (f64, Vec<f64>);
}

/// A point with its value and gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

/// Adapts an [`Objective`] to argmin, caching the last point so the value and the gradient
/// at one point cost a single pass.
struct Cached<'a, O> {
    objective: &'a O,
    last: Mutex<Option<Evaluated>>,
}

impl<O: Objective> Cached<'_, O> {
    fn eval(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((q, v, g)) = last.as_ref()
            && q.as_slice() == p
        {
            return (*v, g.clone());
        }
        let (v, g) = self.objective.value_and_gradient(p);
        // Infeasible points get a huge finite value so the line search backs off.
        let (v, g) = if v.is_finite() && g.iter().all(|x| x.is_finite()) {
            (v, g)
        } else {
            (1e30, vec![0.0; p.len()])
        };
        *last = Some((p.to_vec(), v, g.clone()));
        (v, g)
    }
}

impl<O: Objective> CostFunction for Cached<'_, O> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.eval(p).0)
    }
}

impl<O: Objective> Gradient for Cached<'_, O> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.eval(p).1)
    }
}

/// Minimises `objective` from `start` with L-BFGS and a More-Thuente line search.
pub(crate) fn minimize(
    objective: &impl Objective,
    start: Vec<f64>,
    what: &'static str,
) -> Result<Vec<f64>, FitError> {
    let fail = |reason: String| FitError::NoConvergence { what, reason };
    let problem = Cached {
        objective,
        last: Mutex::new(None),
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-9)
        .and_then(|s| s.with_tolerance_cost(1e-14))
        .map_err(|e| fail(e.to_string()))?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(start).max_iters(300))
        .run()
        .map_err(|e| fail(e.to_string()))?;
    let state = result.state();
    match state.get_best_param() {
        Some(p) if state.get_best_cost().is_finite() && state.get_best_cost() < 1e30 => Ok(p.clone()),
        _ => Err(fail("no feasible point found".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_matches_plain_sum() {
        let xs: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 1e-5).collect();
        let mut s = LogSum::new();
        xs.iter().for_each(|&x| s.add(x));
        let plain: f64 = xs.iter().map(|x| x.ln()).sum();
        assert!((s.finish() - plain).abs() < 1e-9 * plain.abs());
    }

    struct Bowl;
    impl Objective for Bowl {
        fn value_and_gradient(&self, p: &[f64]) -> (f64, Vec<f64>) {
            let (x, y) = (p[0] - 3.0, p[1] + 1.0);
            (x * x + 10.0 * y * y, vec![2.0 * x, 20.0 * y])
        }
    }

    #[test]
    fn minimize_finds_a_bowl_bottom() {
        let p = minimize(&Bowl, vec![0.0, 0.0], "bowl").unwrap();
        assert!((p[0] - 3.0).abs() < 1e-6 && (p[1] + 1.0).abs() < 1e-6, "{p:?}");
    }
}
