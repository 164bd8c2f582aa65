//! Several networks of one architecture trained with different seeds, answering as one: the mean
//! of their log variances, log quantiles and shortage logits.
//!
//! The mean of log variances (a geometric mean of the variances) never scores a worse QLIKE than
//! the members' average QLIKE: QLIKE is convex in the log forecast. Averaged log quantiles stay
//! increasing in the level, since each member's are.

use burn::prelude::*;

use super::{VolModel, VolModelConfig, VolOutput};

/// The networks of an artifact: one, or an ensemble over seeds (member i trained with the
/// config's seed + i). Never empty.
#[derive(Module, Debug)]
pub struct Ensemble {
    first: VolModel,
    rest: Vec<VolModel>,
    /// Where horizons are served by different networks: per network, per horizon, its weight
    /// in that horizon's mean (each horizon's weights sum to 1). None: every network counts
    /// the same at every horizon.
    #[module(skip)]
    horizon_weights: Option<Vec<Vec<f32>>>,
}

impl Ensemble {
    /// One network on its own.
    #[must_use]
    pub fn single(model: VolModel) -> Self {
        Self {
            first: model,
            rest: Vec::new(),
            horizon_weights: None,
        }
    }

    /// The members in seed order; None when there are none.
    #[must_use]
    pub fn from_members(members: Vec<VolModel>) -> Option<Self> {
        let mut members = members.into_iter();
        let first = members.next()?;
        Some(Self {
            first,
            rest: members.collect(),
            horizon_weights: None,
        })
    }

    /// `n` (at least one) members with fresh weights, to load a saved ensemble into.
    #[must_use]
    pub fn init(config: &VolModelConfig, n: usize, device: &Device) -> Self {
        Self {
            first: config.init(device),
            rest: (1..n).map(|_| config.init(device)).collect(),
            horizon_weights: None,
        }
    }

    /// Number of members.
    #[must_use]
    pub fn len(&self) -> usize {
        1 + self.rest.len()
    }

    /// Always false: an ensemble has at least one member.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first member (the config's own seed).
    #[must_use]
    pub fn first(&self) -> &VolModel {
        &self.first
    }

    /// The members in seed order.
    pub fn members(&self) -> impl Iterator<Item = &VolModel> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    /// The same networks with each horizon served by some of them: `weights[network][horizon]`,
    /// each horizon's summing to 1 ([`Self::check_horizon_weights`]); None: all of them alike.
    #[must_use]
    pub fn with_horizon_weights(mut self, weights: Option<Vec<Vec<f32>>>) -> Self {
        self.horizon_weights = weights;
        self
    }

    /// The per-horizon weights of the networks, where horizons are served by different ones.
    #[must_use]
    pub fn horizon_weights(&self) -> Option<&[Vec<f32>]> {
        self.horizon_weights.as_deref()
    }

    /// Whether `weights` fit `networks` networks over `horizons` horizons: one row per network,
    /// one finite, non-negative weight per horizon, each horizon's summing to 1.
    ///
    /// # Errors
    /// What does not fit.
    pub fn check_horizon_weights(
        weights: &[Vec<f32>],
        networks: usize,
        horizons: usize,
    ) -> Result<(), String> {
        if weights.len() != networks {
            return Err(format!(
                "{} rows of horizon weights for {networks} networks",
                weights.len()
            ));
        }
        if let Some(row) = weights.iter().find(|r| r.len() != horizons) {
            return Err(format!(
                "a row of {} horizon weights for {horizons} horizons",
                row.len()
            ));
        }
        for h in 0..horizons {
            let column: Vec<f32> = weights.iter().map(|r| r[h]).collect();
            let sum: f32 = column.iter().sum();
            if column.iter().any(|w| !w.is_finite() || *w < 0.0) || (sum - 1.0).abs() > 1e-4 {
                return Err(format!(
                    "the weights of horizon {h} are {column:?}: non-negative, summing to 1"
                ));
            }
        }
        Ok(())
    }

    /// The members' mean output (a single member's own); with horizon weights, each horizon's
    /// weighted mean over the networks serving it.
    #[must_use]
    pub fn forward(&self, sequence: Tensor<3>, statics: Tensor<2>) -> VolOutput {
        if let Some(weights) = &self.horizon_weights {
            return self.weighted_forward(weights, &sequence, &statics);
        }
        let Some((last, middle)) = self.rest.split_last() else {
            return self.first.forward(sequence, statics);
        };
        let add = |a: VolOutput, b: VolOutput| VolOutput {
            log_variance: a.log_variance + b.log_variance,
            log_quantiles: a.log_quantiles + b.log_quantiles,
            shortage_logit: a.shortage_logit + b.shortage_logit,
        };
        let mut sum = self.first.forward(sequence.clone(), statics.clone());
        for m in middle {
            sum = add(sum, m.forward(sequence.clone(), statics.clone()));
        }
        let sum = add(sum, last.forward(sequence, statics));
        let scale = 1.0 / self.len() as f32;
        VolOutput {
            log_variance: sum.log_variance.mul_scalar(scale),
            log_quantiles: sum.log_quantiles.mul_scalar(scale),
            shortage_logit: sum.shortage_logit.mul_scalar(scale),
        }
    }

    /// Each horizon's weighted mean of the networks' outputs (`weights[network][horizon]`).
    fn weighted_forward(&self, weights: &[Vec<f32>], sequence: &Tensor<3>, statics: &Tensor<2>) -> VolOutput {
        let device = statics.device();
        let mut sum: Option<VolOutput> = None;
        for (network, w) in self.members().zip(weights) {
            if w.iter().all(|x| *x == 0.0) {
                continue;
            }
            let out = network.forward(sequence.clone(), statics.clone());
            let h = w.len();
            let w2 = Tensor::<2>::from_data(TensorData::new(w.clone(), [1, h]), &device);
            let w3 = Tensor::<3>::from_data(TensorData::new(w.clone(), [1, h, 1]), &device);
            let weighted = VolOutput {
                log_variance: out.log_variance * w2.clone(),
                log_quantiles: out.log_quantiles * w3,
                shortage_logit: out.shortage_logit * w2,
            };
            sum = Some(match sum {
                None => weighted,
                Some(a) => VolOutput {
                    log_variance: a.log_variance + weighted.log_variance,
                    log_quantiles: a.log_quantiles + weighted.log_quantiles,
                    shortage_logit: a.shortage_logit + weighted.shortage_logit,
                },
            });
        }
        sum.unwrap_or_else(|| self.first.forward(sequence.clone(), statics.clone()))
    }
}
