//! EWMA variance (RiskMetrics style) with one decay pooled over assets (SPEC "Baselines").
//!
//! `sigma2[t+1] = lambda sigma2[t] + (1 - lambda) r[t]^2` on hourly returns. The state starts at
//! the mean of the first `min(168, n)` squared returns, a missing return leaves it unchanged, and
//! a forecast exists once 168 returns have been seen. `F(t, H) = H sigma2[t+1]`.

use argmin::core::{CostFunction, Executor, State};
use argmin::solver::brent::BrentOpt;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{FitError, LogSum};

/// Returns seen before the first forecast, and the length of the starting mean.
pub const WARMUP: usize = 168;

/// The fitted EWMA baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    /// Decay per hour.
    pub lambda: f64,
}

fn start_state(returns: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for r in returns.take(WARMUP) {
        sum += r * r;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// Gaussian negative log-likelihood (without constants) of one asset's returns after the warm-up.
fn negative_log_likelihood(returns: &[f64], lambda: f64) -> f64 {
    let Some(mut s) = start_state(returns.iter().copied()) else {
        return 0.0;
    };
    let mut logs = LogSum::new();
    let mut ratio = 0.0;
    // The first WARMUP returns make the starting state; the likelihood scores the rest, each
    // against the state before it (the convention of SPEC's reference lambda, 0.9634).
    for (k, &r) in returns.iter().enumerate() {
        // A state of exactly 0 (a flat first week: a pinned listing) forecasts nothing: its
        // first move, against 1e-30, added a term of 1e24 to the pooled cost whatever lambda,
        // which drowned every other asset's (as GARCH's fit guards too).
        if k >= WARMUP && s > 0.0 {
            let v = s.max(1e-30);
            logs.add(v);
            ratio += r * r / v;
        }
        s = lambda * s + (1.0 - lambda) * r * r;
    }
    0.5 * (logs.finish() + ratio)
}

struct Pooled<'a> {
    assets: &'a [Vec<f64>],
}

impl CostFunction for Pooled<'_> {
    type Param = f64;
    type Output = f64;
    fn cost(&self, lambda: &f64) -> Result<f64, argmin::core::Error> {
        // Each asset's term in parallel, summed in asset order: a parallel float sum's order
        // varies from run to run, and so would the fitted decay in its last digits.
        let terms: Vec<f64> = self
            .assets
            .par_iter()
            .map(|r| negative_log_likelihood(r, *lambda))
            .collect();
        Ok(terms.iter().sum())
    }
}

impl Ewma {
    /// Fits the pooled decay by maximum Gaussian likelihood over every asset's fit-period
    /// returns (`assets[i]` holds asset i's returns in time order, missing ones left out).
    ///
    /// # Errors
    /// [`FitError`] when there are no returns or the optimiser fails.
    pub fn fit(assets: &[Vec<f64>]) -> Result<Self, FitError> {
        if assets.iter().all(Vec::is_empty) {
            return Err(FitError::TooLittleData("EWMA: no fit-period returns".to_owned()));
        }
        let solver = BrentOpt::new(0.5, 0.9999).set_tolerance(1e-10, 1e-9);
        let result = Executor::new(Pooled { assets }, solver)
            .configure(|s| s.max_iters(200))
            .run()
            .map_err(|e| FitError::NoConvergence {
                what: "EWMA lambda",
                reason: e.to_string(),
            })?;
        let lambda = *result
            .state()
            .get_best_param()
            .ok_or_else(|| FitError::NoConvergence {
                what: "EWMA lambda",
                reason: "no best point".to_owned(),
            })?;
        Ok(Self { lambda })
    }

    /// One-step-ahead variance after each slot (`out[s]` = sigma2 for slot s+1), NaN until
    /// [`WARMUP`] returns have been seen. `ret` is a grid's return column (NaN = missing).
    #[must_use]
    pub fn states(&self, ret: &[f64]) -> Vec<f64> {
        let mut out = vec![f64::NAN; ret.len()];
        let Some(mut s) = start_state(ret.iter().copied().filter(|r| !r.is_nan())) else {
            return out;
        };
        let mut seen = 0usize;
        for (slot, &r) in ret.iter().enumerate() {
            if !r.is_nan() {
                s = self.lambda * s + (1.0 - self.lambda) * r * r;
                seen += 1;
            }
            if seen >= WARMUP {
                out[slot] = s;
            }
        }
        out
    }

    /// Forecast variance over `horizon` hours from a one-step state.
    #[must_use]
    pub fn forecast(one_step: f64, horizon: usize) -> f64 {
        let h = horizon as f64;
        h * one_step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_by_hand_and_gaps_leave_it_unchanged() {
        let lambda = 0.9;
        let mut ret = vec![0.01; WARMUP];
        ret.extend([0.02, f64::NAN, 0.0]);
        let s = Ewma { lambda }.states(&ret);
        assert!(s[WARMUP - 2].is_nan());
        // Start = 1e-4; the first WARMUP updates with r^2 = 1e-4 keep it there.
        assert!((s[WARMUP - 1] - 1e-4).abs() < 1e-18);
        let after = 0.9 * 1e-4 + 0.1 * 4e-4;
        assert!((s[WARMUP] - after).abs() < 1e-18);
        assert_eq!(s[WARMUP + 1], s[WARMUP]);
        assert!((s[WARMUP + 2] - 0.9 * after).abs() < 1e-18);
        assert!((Ewma::forecast(2e-4, 24) - 4.8e-3).abs() < 1e-15);
    }

    #[test]
    fn the_state_starts_at_the_mean_of_the_first_returns_seen() {
        // Unequal returns (so the start rule matters), a missing one among the first: SPEC's
        // start is the mean of the first min(168, n) squared returns, the missing one skipped.
        // A slow decay keeps the start's weight after 168 updates (0.99^168 = 0.18).
        let lambda = 0.99;
        let r = |i: usize| 0.01 * (1.0 + (i % 4) as f64);
        let mut ret: Vec<f64> = (0..WARMUP + 10).map(r).collect();
        ret[5] = f64::NAN;
        let seen: Vec<f64> = ret.iter().copied().filter(|x| !x.is_nan()).collect();
        let start = seen[..WARMUP].iter().map(|x| x * x).sum::<f64>() / WARMUP as f64;
        let mut want = start;
        for x in &seen[..WARMUP] {
            want = lambda * want + (1.0 - lambda) * x * x;
        }
        let s = Ewma { lambda }.states(&ret);
        // The 168th return seen is at slot 168 (one slot lost to the gap).
        assert!(s[WARMUP - 1].is_nan());
        assert!((s[WARMUP] - want).abs() < 1e-15 * want, "{} vs {want}", s[WARMUP]);
        // Another start (the first return squared, say) gives another state.
        let mut other = seen[0] * seen[0];
        for x in &seen[..WARMUP] {
            other = lambda * other + (1.0 - lambda) * x * x;
        }
        assert!((other - want).abs() > 1e-3 * want);
    }

    #[test]
    fn fit_recovers_a_persistent_decay() {
        let mut z = crate::synth::Rng::new(99);
        // Returns simulated from the EWMA model itself: sigma2 follows lambda = 0.95.
        let mut state = 1e-4f64;
        let returns: Vec<f64> = (0..40_000)
            .map(|_| {
                let r = state.sqrt() * z.normal();
                state = 0.95 * state + 0.05 * r * r + 1e-7;
                r
            })
            .collect();
        let fit = Ewma::fit(std::slice::from_ref(&returns)).unwrap();
        assert!((fit.lambda - 0.95).abs() < 0.01, "{}", fit.lambda);
        // Beside an asset whose first week is flat: the same decay.
        let flat: Vec<f64> = std::iter::repeat_n(0.0, 168)
            .chain((0..500).map(|k| if k % 2 == 0 { 1e-3 } else { -1e-3 }))
            .collect();
        let fit = Ewma::fit(&[returns, flat]).unwrap();
        assert!((fit.lambda - 0.95).abs() < 0.01, "{}", fit.lambda);
    }
}
