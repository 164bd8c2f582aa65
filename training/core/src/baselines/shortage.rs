//! The liquidity-shortage baseline (SPEC "Evaluation protocol"): the score
//! `M_H(t) / median_30d(M_H)`, mapped to a probability by a logistic fit on
//! `ln(clip(score, 1e-3, 1e3))` over fit-period origins.

use serde::{Deserialize, Serialize};

use super::{FitError, Objective, minimize};

/// The logistic map from shortage score to probability, for one horizon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShortageLogistic {
    /// Horizon in hours.
    pub horizon: usize,
    /// Intercept of the logit.
    pub intercept: f64,
    /// Slope on the log score.
    pub slope: f64,
    /// Fit-period points used.
    pub n: usize,
}

/// The regressor: `ln(clip(score, 1e-3, 1e3))`.
#[must_use]
pub fn log_score(score: f64) -> f64 {
    score.clamp(1e-3, 1e3).ln()
}

/// The logistic function, without overflow for large `|z|`.
#[must_use]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

struct LogLoss<'a> {
    x: &'a [f64],
    y: &'a [bool],
}

impl Objective for LogLoss<'_> {
    fn value_and_gradient(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let (mut loss, mut g0, mut g1) = (0.0, 0.0, 0.0);
        for (&x, &y) in self.x.iter().zip(self.y) {
            let z = p[0] + p[1] * x;
            // log(1 + e^z) - y z, computed without overflow.
            loss += z.max(0.0) + (-z.abs()).exp().ln_1p() - if y { z } else { 0.0 };
            let e = sigmoid(z) - if y { 1.0 } else { 0.0 };
            g0 += e;
            g1 += e * x;
        }
        let k = 1.0 / self.x.len() as f64;
        (k * loss, vec![k * g0, k * g1])
    }
}

impl ShortageLogistic {
    /// Fits the logistic map on `(score, label)` pairs by maximum likelihood.
    ///
    /// # Errors
    /// [`FitError`] without both classes among the points, or when the optimiser fails.
    pub fn fit(horizon: usize, points: &[(f64, bool)]) -> Result<Self, FitError> {
        let positives = points.iter().filter(|p| p.1).count();
        if positives == 0 || positives == points.len() {
            return Err(FitError::TooLittleData(format!(
                "shortage logistic {horizon}h: needs both shortage and normal fit-period points ({} points, {positives} shortages)",
                points.len()
            )));
        }
        let x: Vec<f64> = points.iter().map(|p| log_score(p.0)).collect();
        let y: Vec<bool> = points.iter().map(|p| p.1).collect();
        let p = minimize(&LogLoss { x: &x, y: &y }, vec![-2.0, 1.0], "shortage logistic")?;
        Ok(Self {
            horizon,
            intercept: p[0],
            slope: p[1],
            n: points.len(),
        })
    }

    /// Probability of a shortage given the baseline score.
    #[must_use]
    pub fn probability(&self, score: f64) -> f64 {
        sigmoid(self.intercept + self.slope * log_score(score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Rng;

    #[test]
    fn recovers_a_known_logistic() {
        let mut z = Rng::new(5);
        let points: Vec<(f64, bool)> = (0..50_000)
            .map(|i| {
                let x = z.normal();
                let p = sigmoid(-1.5 + 2.0 * x);
                // Stratified uniform from the index keeps the test deterministic.
                let u = ((f64::from(i) * 0.618_033_988_749_895) % 1.0).abs();
                (x.exp(), u < p)
            })
            .collect();
        let fit = ShortageLogistic::fit(24, &points).unwrap();
        assert!((fit.intercept + 1.5).abs() < 0.08, "{fit:?}");
        assert!((fit.slope - 2.0).abs() < 0.08, "{fit:?}");
        assert!((fit.probability(1.0) - sigmoid(fit.intercept)).abs() < 1e-12);
    }

    #[test]
    fn one_class_is_an_error() {
        assert!(ShortageLogistic::fit(4, &[(1.0, false); 10]).is_err());
    }
}
