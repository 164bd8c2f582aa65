//! Weights averaged over a run's last steps ([`TrainingConfig::weight_average_half_life_epochs`]):
//! an exponential moving average of every float parameter after each optimiser step, corrected
//! for its start (the first step's weights count fully), so the network scored and served is not
//! one noisy point of the optimiser's path.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

use volcast_model::network::VolModel;

#[cfg(doc)]
use volcast_model::config::TrainingConfig;

/// The running average of a network's weights.
#[derive(Debug, Clone)]
pub(super) struct Averager {
    /// Half-life, in epochs.
    half_life_epochs: f64,
    /// Per float parameter (in the module's visiting order), the decayed sum of its values.
    sums: Vec<Vec<f64>>,
    /// The decayed sum of the weights given so far (the bias correction's denominator).
    weight: f64,
}

/// Collects every float parameter's values, in visiting order.
struct Collect(Vec<Vec<f32>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        self.0.push(values);
    }
}

/// Replaces every float parameter's values by the next of `values`, in visiting order.
struct Replace<'a> {
    values: &'a [Vec<f32>],
    next: usize,
}

impl ModuleMapper for Replace<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(values) = self.values.get(self.next) else {
            return param;
        };
        self.next += 1;
        param.map(|t| {
            let (shape, device) = (t.shape(), t.device());
            if values.len() == shape.num_elements() {
                Tensor::from_data(TensorData::new(values.clone(), shape), &device)
            } else {
                t
            }
        })
    }
}

/// Every float parameter's values of `model`, in visiting order.
fn values_of(model: &VolModel) -> Vec<Vec<f32>> {
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

impl Averager {
    /// An empty average with a half-life of `half_life_epochs` epochs.
    pub(super) fn new(half_life_epochs: f64) -> Self {
        Self {
            half_life_epochs,
            sums: Vec::new(),
            weight: 0.0,
        }
    }

    /// The average continued from a checkpoint: `averaged` (the average then) with `weight` (the
    /// decayed sum of the weights then).
    pub(super) fn resumed(half_life_epochs: f64, averaged: &VolModel, weight: f64) -> Self {
        let sums = values_of(averaged)
            .into_iter()
            .map(|v| v.into_iter().map(|x| f64::from(x) * weight).collect())
            .collect();
        Self {
            half_life_epochs,
            sums,
            weight,
        }
    }

    /// The decayed sum of the weights given so far (saved with a checkpoint).
    pub(super) fn weight(&self) -> f64 {
        self.weight
    }

    /// Takes `model`'s weights after one of `steps_per_epoch` steps into the average.
    pub(super) fn observe(&mut self, model: &VolModel, steps_per_epoch: usize) {
        let half_life_steps = (self.half_life_epochs * steps_per_epoch as f64).max(1e-9);
        let keep = 0.5f64.powf(1.0 / half_life_steps);
        let values = values_of(model);
        if self.sums.len() != values.len() {
            self.sums = values.iter().map(|v| vec![0.0; v.len()]).collect();
            self.weight = 0.0;
        }
        for (sum, v) in self.sums.iter_mut().zip(&values) {
            for (s, &x) in sum.iter_mut().zip(v) {
                *s = keep * *s + (1.0 - keep) * f64::from(x);
            }
        }
        self.weight = keep * self.weight + (1.0 - keep);
    }

    /// `model` with the averaged weights (itself before any step was observed).
    pub(super) fn averaged(&self, model: VolModel) -> VolModel {
        if self.weight <= 0.0 {
            return model;
        }
        let values: Vec<Vec<f32>> = self
            .sums
            .iter()
            .map(|s| s.iter().map(|x| (x / self.weight) as f32).collect())
            .collect();
        model.map(&mut Replace {
            values: &values,
            next: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volcast_model::config::TrainingConfig;

    fn model(device: &Device) -> VolModel {
        TrainingConfig::default_run().model.init(device)
    }

    /// `model` with every float parameter shifted by `by`.
    fn shifted(model: VolModel, by: f32) -> VolModel {
        let values: Vec<Vec<f32>> = values_of(&model)
            .into_iter()
            .map(|v| v.into_iter().map(|x| x + by).collect())
            .collect();
        model.map(&mut Replace {
            values: &values,
            next: 0,
        })
    }

    fn first_value(model: &VolModel) -> f32 {
        values_of(model)[0][0]
    }

    #[test]
    fn the_average_weighs_recent_steps_more_and_starts_unbiased() {
        let device = Device::flex();
        let a = model(&device);
        let b = shifted(a.clone(), 1.0);
        let x = first_value(&a);
        // A half-life of one step (a quarter of a four-step epoch).
        let mut avg = Averager::new(0.25);
        avg.observe(&a, 4);
        // The first step's weights are the average, with no pull toward zero.
        assert!((first_value(&avg.averaged(a.clone())) - x).abs() < 1e-6);
        avg.observe(&b, 4);
        // Weights 1/2 (old, decayed) against 1/2 (new), normalised by 3/4: 1/3 and 2/3.
        let mixed = first_value(&avg.averaged(a.clone()));
        assert!(
            (mixed - (x + 2.0 / 3.0)).abs() < 1e-5,
            "{mixed} vs {}",
            x + 2.0 / 3.0
        );
        // Every parameter moves the same way, and the shapes are kept.
        let averaged = avg.averaged(a.clone());
        for (got, base) in values_of(&averaged).iter().zip(values_of(&a)) {
            assert_eq!(got.len(), base.len());
            for (g, b0) in got.iter().zip(base) {
                assert!((g - (b0 + 2.0 / 3.0)).abs() < 1e-4);
            }
        }
        // Resumed from the average and its weight, the next step gives what an unbroken run does.
        let mut resumed = Averager::resumed(0.25, &averaged, avg.weight());
        avg.observe(&a, 4);
        resumed.observe(&a, 4);
        let (u, r) = (avg.averaged(a.clone()), resumed.averaged(a.clone()));
        assert!((first_value(&u) - first_value(&r)).abs() < 1e-5);
    }

    #[test]
    fn nothing_observed_leaves_the_model_as_it_is() {
        let device = Device::flex();
        let a = model(&device);
        let x = first_value(&a);
        assert_eq!(first_value(&Averager::new(0.25).averaged(a)), x);
    }
}
