//! Standardisation of the model's inputs: means and deviations fitted on the training period
//! (`volcast_training::dataset`), stored in the artifact's metadata and applied at inference.

use serde::{Deserialize, Serialize};

/// Mean and standard deviation per input, fitted on the training period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Static feature means.
    pub static_mean: Vec<f32>,
    /// Static feature standard deviations (never zero).
    pub static_std: Vec<f32>,
    /// Sequence channel means.
    pub channel_mean: Vec<f32>,
    /// Sequence channel standard deviations (never zero).
    pub channel_std: Vec<f32>,
}

impl Scaler {
    /// Standardises static features in place.
    pub fn scale_static(&self, x: &mut [f32]) {
        for (v, (m, s)) in x.iter_mut().zip(self.static_mean.iter().zip(&self.static_std)) {
            *v = (*v - m) / s;
        }
    }

    /// Standardises a `[window, channels]` sequence in place.
    pub fn scale_sequence(&self, x: &mut [f32]) {
        let c = self.channel_mean.len();
        for row in x.chunks_exact_mut(c) {
            for (v, (m, s)) in row
                .iter_mut()
                .zip(self.channel_mean.iter().zip(&self.channel_std))
            {
                *v = (*v - m) / s;
            }
        }
    }
}
