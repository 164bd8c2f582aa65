//! GARCH(1,1) per asset (SPEC "Baselines").
//!
//! Zero mean, normal quasi-likelihood on 100 x hourly returns of the fit period (missing returns
//! dropped), maximised with L-BFGS over an unconstrained parameterisation that keeps
//! `omega > 0`, `alpha, beta > 0` and `alpha + beta < 1`. The variance recursion starts, as
//! EWMA's does, at the mean of the first `min(168, n)` squared returns (with this start the
//! pooled QLIKE matches SPEC's reference within 0.15% at every horizon). Assets with fewer than [`MIN_FIT_RETURNS`] fit-period returns
//! use the median alpha and beta of the fitted assets with `omega_t = (1 - alpha - beta) m_t`,
//! `m_t` the asset's expanding mean of `r^2` up to t.

use serde::{Deserialize, Serialize};

use super::{FitError, LogSum, Objective, minimize};

/// Returns are multiplied by this before fitting, as SPEC asks (variances in percent squared).
pub const SCALE: f64 = 100.0;
/// Fewer fit-period returns than this and an asset uses the pooled fallback.
pub const MIN_FIT_RETURNS: usize = 2000;

/// GARCH(1,1) parameters on 100 x returns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GarchParams {
    /// Constant term, in percent squared per hour.
    pub omega: f64,
    /// Weight of the last squared return.
    pub alpha: f64,
    /// Weight of the last variance.
    pub beta: f64,
}

impl GarchParams {
    fn from_free(p: &[f64]) -> Self {
        let (e1, e2) = (p[1].exp(), p[2].exp());
        let d = 1.0 + e1 + e2;
        Self {
            omega: p[0].exp(),
            alpha: e1 / d,
            beta: e2 / d,
        }
    }

    fn to_free(self) -> Vec<f64> {
        let rest = 1.0 - self.alpha - self.beta;
        vec![self.omega.ln(), (self.alpha / rest).ln(), (self.beta / rest).ln()]
    }

    /// `alpha + beta`.
    #[must_use]
    pub fn persistence(&self) -> f64 {
        self.alpha + self.beta
    }
}

/// How one asset's GARCH variance is produced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssetGarch {
    /// Fitted on the asset's own fit-period returns.
    Fitted {
        /// Fitted parameters.
        params: GarchParams,
        /// Starting variance of the recursion (mean of the first 168 squared scaled returns).
        start_variance: f64,
        /// Fit-period returns used.
        n_returns: usize,
    },
    /// Too few fit-period returns: pooled alpha and beta, expanding-mean omega.
    Pooled {
        /// Median alpha of the fitted assets.
        alpha: f64,
        /// Median beta of the fitted assets.
        beta: f64,
        /// Fit-period returns the asset had.
        n_returns: usize,
    },
}

struct Likelihood<'a> {
    squares: &'a [f64],
    start: f64,
}

impl Objective for Likelihood<'_> {
    /// Mean negative quasi-log-likelihood and its gradient in the free parameters.
    fn value_and_gradient(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let GarchParams { omega, alpha, beta } = GarchParams::from_free(p);
        let mut s = self.start;
        let (mut d_omega, mut d_alpha, mut d_beta) = (0.0, 0.0, 0.0);
        let (mut g_omega, mut g_alpha, mut g_beta) = (0.0, 0.0, 0.0);
        let mut logs = LogSum::new();
        let mut ratio = 0.0;
        for &r2 in self.squares {
            logs.add(s);
            let z = r2 / s;
            ratio += z;
            let w = (1.0 - z) / s;
            g_omega += w * d_omega;
            g_alpha += w * d_alpha;
            g_beta += w * d_beta;
            d_omega = 1.0 + beta * d_omega;
            d_alpha = r2 + beta * d_alpha;
            d_beta = s + beta * d_beta;
            s = omega + alpha * r2 + beta * s;
        }
        let k = 0.5 / self.squares.len() as f64;
        let (g_omega, g_alpha, g_beta) = (k * g_omega, k * g_alpha, k * g_beta);
        let grad = vec![
            g_omega * omega,
            g_alpha * alpha * (1.0 - alpha) - g_beta * alpha * beta,
            -g_alpha * alpha * beta + g_beta * beta * (1.0 - beta),
        ];
        (k * (logs.finish() + ratio), grad)
    }
}

/// Fits GARCH(1,1) by quasi-maximum likelihood to raw (unscaled) returns with no gaps.
///
/// # Errors
/// [`FitError`] when the returns have no variance or the optimiser fails.
pub fn fit(returns: &[f64]) -> Result<AssetGarch, FitError> {
    let squares: Vec<f64> = returns.iter().map(|r| (r * SCALE).powi(2)).collect();
    let warmup = squares.len().clamp(1, super::ewma::WARMUP);
    let start = squares[..warmup.min(squares.len())].iter().sum::<f64>() / warmup as f64;
    if !(start > 0.0 && start.is_finite()) {
        // The recursion starts from the mean of the first returns' squares: a flat first week
        // (a pinned listing) leaves it nothing to start from, whatever the later returns do.
        return Err(FitError::TooLittleData(format!(
            "GARCH: the first {warmup} fit-period returns have no variance, and the recursion starts from their mean"
        )));
    }
    let objective = Likelihood {
        squares: &squares,
        start,
    };
    let initial = GarchParams {
        omega: 0.05 * start,
        alpha: 0.05,
        beta: 0.90,
    };
    let free = minimize(&objective, initial.to_free(), "GARCH(1,1) likelihood")?;
    Ok(AssetGarch::Fitted {
        params: GarchParams::from_free(&free),
        start_variance: start,
        n_returns: returns.len(),
    })
}

/// An asset's GARCH path: per slot, the one-step-ahead variance after that slot and the
/// constant term in force there (raw return units).
#[derive(Debug, Clone, PartialEq)]
pub struct GarchPath {
    /// One-step-ahead variance after each slot; NaN before the first return.
    pub one_step: Vec<f64>,
    /// `omega` at each slot (constant for a fitted asset, `(1 - alpha - beta) m_t` for the
    /// pooled fallback).
    pub omega: Vec<f64>,
    /// `alpha + beta`.
    pub persistence: f64,
}

impl GarchPath {
    /// Filters `ret` (a grid's returns, NaN = missing, skipped) through the asset's model.
    #[must_use]
    pub fn filter(model: &AssetGarch, ret: &[f64]) -> Self {
        let n = ret.len();
        let mut one_step = vec![f64::NAN; n];
        let mut omega = vec![f64::NAN; n];
        let scale2 = SCALE * SCALE;
        match *model {
            AssetGarch::Fitted {
                params,
                start_variance,
                ..
            } => {
                let mut s = start_variance;
                let mut started = false;
                for (slot, &r) in ret.iter().enumerate() {
                    if !r.is_nan() {
                        let r2 = (r * SCALE).powi(2);
                        s = params.omega + params.alpha * r2 + params.beta * s;
                        started = true;
                    }
                    if started {
                        one_step[slot] = s / scale2;
                        omega[slot] = params.omega / scale2;
                    }
                }
                Self {
                    one_step,
                    omega,
                    persistence: params.persistence(),
                }
            }
            AssetGarch::Pooled { alpha, beta, .. } => {
                let phi = alpha + beta;
                let (mut sum, mut count) = (0.0, 0u32);
                let mut s = f64::NAN;
                for (slot, &r) in ret.iter().enumerate() {
                    if !r.is_nan() {
                        let r2 = r * r;
                        sum += r2;
                        count += 1;
                        let w = (1.0 - phi) * sum / f64::from(count);
                        let previous = if s.is_nan() { r2 } else { s };
                        s = w + alpha * r2 + beta * previous;
                    }
                    if count > 0 {
                        one_step[slot] = s;
                        omega[slot] = (1.0 - phi) * sum / f64::from(count);
                    }
                }
                Self {
                    one_step,
                    omega,
                    persistence: phi,
                }
            }
        }
    }

    /// Sum of the 1..=H step-ahead variance forecasts made at `slot`; NaN when none exists.
    ///
    /// Summed step by step (`v <- omega + phi v`) rather than by the closed form, whose
    /// `1 / (1 - phi)` loses every digit when the fitted persistence is within 1e-12 of one,
    /// as it is for several crypto assets.
    #[must_use]
    pub fn forecast(&self, slot: usize, horizon: usize) -> f64 {
        self.steps(slot).take(horizon).fold(0.0, |total, v| total + v)
    }

    /// [`Self::forecast`] at every horizon `0..=horizon` (the sums as they accumulate, each
    /// equal to its own `forecast`).
    #[must_use]
    pub fn forecasts_to(&self, slot: usize, horizon: usize) -> Vec<f64> {
        std::iter::once(0.0)
            .chain(self.steps(slot).take(horizon).scan(0.0, |total, v| {
                *total += v;
                Some(*total)
            }))
            .collect()
    }

    /// The 1, 2, .. step-ahead variance forecasts made at `slot`: `v <- omega + phi v`.
    fn steps(&self, slot: usize) -> impl Iterator<Item = f64> + '_ {
        let (omega, phi) = (self.omega[slot], self.persistence);
        std::iter::successors(Some(self.one_step[slot]), move |v| Some(omega + phi * v))
    }
}

/// Median alpha and beta of the fitted assets, for the pooled fallback.
#[must_use]
pub fn median_alpha_beta(models: &[AssetGarch]) -> Option<(f64, f64)> {
    let (mut alphas, mut betas): (Vec<f64>, Vec<f64>) = models
        .iter()
        .filter_map(|m| match m {
            AssetGarch::Fitted { params, .. } => Some((params.alpha, params.beta)),
            AssetGarch::Pooled { .. } => None,
        })
        .unzip();
    Some((median(&mut alphas)?, median(&mut betas)?))
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulate(p: GarchParams, n: usize, seed: u64) -> Vec<f64> {
        let mut z = crate::synth::Rng::new(seed);
        let mut s = p.omega / (1.0 - p.persistence());
        (0..n)
            .map(|_| {
                let r = s.sqrt() * z.normal();
                s = p.omega + p.alpha * r * r + p.beta * s;
                r / SCALE
            })
            .collect()
    }

    #[test]
    fn recovers_simulated_parameters() {
        // 50,000 hourly returns (about the longest fit period in the shared data). Tolerance:
        // a few standard errors of the QML estimates at this length (alpha and beta about 0.005).
        let truth = GarchParams {
            omega: 0.02,
            alpha: 0.08,
            beta: 0.90,
        };
        let returns = simulate(truth, 50_000, 7);
        let AssetGarch::Fitted { params, .. } = fit(&returns).unwrap() else {
            panic!("expected a fitted model");
        };
        assert!((params.alpha - truth.alpha).abs() < 0.015, "{params:?}");
        assert!((params.beta - truth.beta).abs() < 0.02, "{params:?}");
        let lr = params.omega / (1.0 - params.persistence());
        assert!((lr - 1.0).abs() < 0.2, "long-run variance {lr} vs 1.0");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let returns = simulate(
            GarchParams {
                omega: 0.05,
                alpha: 0.1,
                beta: 0.85,
            },
            3000,
            3,
        );
        let squares: Vec<f64> = returns.iter().map(|r| (r * SCALE).powi(2)).collect();
        let lik = Likelihood {
            squares: &squares,
            start: 1.0,
        };
        let p = vec![-2.0, 0.3, 2.5];
        let (_, g) = lik.value_and_gradient(&p);
        for i in 0..3 {
            let mut up = p.clone();
            let mut down = p.clone();
            up[i] += 1e-6;
            down[i] -= 1e-6;
            let fd = (lik.value_and_gradient(&up).0 - lik.value_and_gradient(&down).0) / 2e-6;
            assert!(
                (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "param {i}: {fd} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn multi_step_forecast_by_hand() {
        let path = GarchPath {
            one_step: vec![2.0],
            omega: vec![0.5],
            persistence: 0.5,
        };
        // 2 + (1 + 0.5) + (1 + 0.25) = 4.75
        assert!((path.forecast(0, 3) - 4.75).abs() < 1e-12);
    }

    #[test]
    fn forecast_is_stable_at_unit_persistence() {
        // alpha + beta = 1 - 1e-15: the sum is H s + omega H (H - 1) / 2 to many digits.
        let path = GarchPath {
            one_step: vec![1e-4],
            omega: vec![1e-7],
            persistence: 1.0 - 1e-15,
        };
        let expected = 168.0 * 1e-4 + 1e-7 * 168.0 * 167.0 / 2.0;
        assert!((path.forecast(0, 168) / expected - 1.0).abs() < 1e-9);
    }

    #[test]
    fn pooled_fallback_reverts_to_the_expanding_mean() {
        let model = AssetGarch::Pooled {
            alpha: 0.1,
            beta: 0.8,
            n_returns: 3,
        };
        let ret = [f64::NAN, 0.1, f64::NAN, 0.3];
        let path = GarchPath::filter(&model, &ret);
        assert!(path.one_step[0].is_nan());
        assert!((path.one_step[1] - 0.01).abs() < 1e-15);
        assert_eq!(path.one_step[2], path.one_step[1]);
        // m = (0.01 + 0.09) / 2 = 0.05; s = 0.1 * 0.05 + 0.1 * 0.09 + 0.8 * 0.01
        assert!((path.one_step[3] - (0.005 + 0.009 + 0.008)).abs() < 1e-15);
        assert!((path.omega[3] - 0.1 * 0.05).abs() < 1e-15);
    }
}
