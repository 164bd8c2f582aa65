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
}

impl Ensemble {
    /// One network on its own.
    #[must_use]
    pub fn single(model: VolModel) -> Self {
        Self {
            first: model,
            rest: Vec::new(),
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
        })
    }

    /// `n` (at least one) members with fresh weights, to load a saved ensemble into.
    #[must_use]
    pub fn init(config: &VolModelConfig, n: usize, device: &Device) -> Self {
        Self {
            first: config.init(device),
            rest: (1..n).map(|_| config.init(device)).collect(),
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

    /// The members' mean output (a single member's own).
    #[must_use]
    pub fn forward(&self, sequence: Tensor<3>, statics: Tensor<2>) -> VolOutput {
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
}
