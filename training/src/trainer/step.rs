//! One optimisation step's pieces: a batch's tensors, the training loss (QLIKE, pinball and
//! shortage BCE, each averaged over the batch's targets), and the gradients of a batch split
//! over threads; and the holdout's QLIKE the early stopping reads.

use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::dataset::{PanelFeatures, Samples};
use crate::loss::{bce, log_mse, pinball, qlike};
use volcast_core::features::{MARKET_FLAG, N_CHANNELS, N_STATIC};
use volcast_model::config::TrainingConfig;
use volcast_model::network::VolModel;
use volcast_model::scaler::Scaler;

/// One batch of tensors.
pub(super) struct Batch {
    pub(super) sequence: Tensor<3>,
    pub(super) statics: Tensor<2>,
    pub(super) log_rv: Tensor<2>,
    pub(super) rv_mask: Tensor<2>,
    pub(super) shortage: Tensor<2>,
    pub(super) shortage_mask: Tensor<2>,
    /// Its targets.
    pub(super) points: Points,
}

/// How many targets a batch has, each counted at its row's weight: the losses' denominators.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Points {
    /// Log RV targets (QLIKE and pinball).
    rv: f32,
    /// Shortage labels.
    shortage: f32,
}

impl Points {
    /// Of the batches together.
    fn total(batches: &[Batch]) -> Self {
        batches.iter().fold(Self::default(), |t, b| Self {
            rv: t.rv + b.points.rv,
            shortage: t.shortage + b.points.shortage,
        })
    }
}

/// Builds a batch of rows `rows` of `samples` on `device`; `hide_market` hides the market
/// factor of the rows for which it returns true.
pub(super) fn batch(
    features: &PanelFeatures,
    samples: &Samples,
    rows: &[usize],
    scaler: &Scaler,
    window: usize,
    device: &Device,
    hide_market: &mut dyn FnMut() -> bool,
) -> Batch {
    let b = rows.len();
    let mut statics = Vec::with_capacity(b * N_STATIC);
    let mut sequence = vec![0f32; b * window * N_CHANNELS];
    let (mut y, mut ym, mut s, mut sm) = (
        Vec::with_capacity(b * 3),
        Vec::with_capacity(b * 3),
        Vec::with_capacity(b * 3),
        Vec::with_capacity(b * 3),
    );
    for (r, &i) in rows.iter().enumerate() {
        let mut x = samples.statics[i];
        if x[MARKET_FLAG] > 0.5 && hide_market() {
            // What the features say without market data: the asset's own variances, flag 0.
            x[16] = x[1];
            x[17] = x[2];
            x[MARKET_FLAG] = 0.0;
        }
        scaler.scale_static(&mut x);
        statics.extend_from_slice(&x);
        let (a, slot) = samples.index[i];
        let out = &mut sequence[r * window * N_CHANNELS..(r + 1) * window * N_CHANNELS];
        features.assets[a as usize].sequence_at(slot as usize, window, out);
        scaler.scale_sequence(out);
        // A mask is the target's weight: the row's where it exists, 0 where it does not.
        let w = samples.weight(i);
        for j in 0..3 {
            let v = samples.log_rv[i][j];
            y.push(if v.is_finite() { v } else { 0.0 });
            ym.push(if v.is_finite() { w } else { 0.0 });
            let l = samples.shortage[i][j];
            s.push(if l.is_finite() { l } else { 0.0 });
            sm.push(if l.is_finite() { w } else { 0.0 });
        }
    }
    let points = Points {
        rv: ym.iter().sum(),
        shortage: sm.iter().sum(),
    };
    let t2 = |v: Vec<f32>, c: usize| Tensor::<2>::from_data(TensorData::new(v, [b, c]), device);
    Batch {
        points,
        sequence: Tensor::<3>::from_data(TensorData::new(sequence, [b, window, N_CHANNELS]), device),
        statics: t2(statics, N_STATIC),
        log_rv: t2(y, 3),
        rv_mask: t2(ym, 3),
        shortage: t2(s, 3),
        shortage_mask: t2(sm, 3),
    }
}

/// Mean QLIKE per horizon of `model` on `samples` (inference, no gradients). With `rescaled`,
/// of its forecasts times each horizon's QLIKE-minimising scale there, `mean(RV / F)`: QLIKE is
/// then `ln mean(RV / F) - mean ln(RV / F)`, blind to the forecasts' level (for a network
/// trained on the squared log error, [`TrainingConfig::log_mse_variance`], whose level the
/// calibration sets).
#[must_use]
pub fn holdout_qlike(
    model: &VolModel,
    features: &PanelFeatures,
    samples: &Samples,
    scaler: &Scaler,
    window: usize,
    device: &Device,
    rescaled: bool,
) -> [f64; 3] {
    let mut scores = [QlikeSum::default(); 3];
    let rows: Vec<usize> = (0..samples.len()).collect();
    for chunk in rows.chunks(1024) {
        let batch = batch(features, samples, chunk, scaler, window, device, &mut || false);
        let f: Vec<f32> = model
            .forward(batch.sequence, batch.statics)
            .log_variance
            .into_data()
            .try_to_vec()
            .unwrap_or_default();
        for (r, &i) in chunk.iter().enumerate() {
            for (j, score) in scores.iter_mut().enumerate() {
                let y = samples.log_rv[i][j];
                if y.is_finite() {
                    score.add(f64::from(y) - f64::from(f[r * 3 + j]));
                }
            }
        }
    }
    scores.map(|s| s.mean(rescaled))
}

/// Running sums for the mean QLIKE of log forecasts, from their misses `d = ln RV - ln F`.
#[derive(Debug, Clone, Copy, Default)]
struct QlikeSum {
    /// Of `e^d - d - 1`.
    qlike: f64,
    /// Of `e^d = RV / F`.
    ratio: f64,
    /// Of `d`.
    log_ratio: f64,
    n: f64,
}

impl QlikeSum {
    fn add(&mut self, d: f64) {
        self.qlike += d.exp() - d - 1.0;
        self.ratio += d.exp();
        self.log_ratio += d;
        self.n += 1.0;
    }

    /// The mean QLIKE; `rescaled`: of the forecasts times `s = mean(RV / F)`, which is
    /// `mean(RV / (s F)) - mean ln(RV / (s F)) - 1 = ln s - mean d`.
    /// NaN without points: a horizon with no holdout target has no score (it scored 0, or
    /// -inf rescaled, the best there is, which early stopping then kept for good). A forecast
    /// that is not a number scores +inf (never NaN, which would read as no target).
    fn mean(&self, rescaled: bool) -> f64 {
        if self.n == 0.0 {
            return f64::NAN;
        }
        let n = self.n;
        if !(self.qlike.is_finite() && self.ratio.is_finite() && self.log_ratio.is_finite()) {
            return f64::INFINITY;
        }
        if rescaled {
            (self.ratio / n).ln() - self.log_ratio / n
        } else {
            self.qlike / n
        }
    }
}

/// The training loss of `model` on `batch`, each term averaged over `points` (the whole
/// batch's when `batch` is one part of it).
fn training_loss(model: &VolModel, batch: Batch, points: Points, config: &TrainingConfig) -> Tensor<1> {
    let out = model.forward(batch.sequence.clone(), batch.statics.clone());
    loss_of(out, batch, points, config)
}

/// The training loss of the model's output `out` on `batch`.
pub(super) fn loss_of(
    out: volcast_model::network::VolOutput,
    batch: Batch,
    points: Points,
    config: &TrainingConfig,
) -> Tensor<1> {
    let variance_loss: fn(Tensor<2>, Tensor<2>, Tensor<2>, f32) -> Tensor<1> =
        if config.has_log_mse_variance() {
            log_mse
        } else {
            qlike
        };
    // The squared log error scores the head's output; with the lognormal mean that is the
    // served log variance less the spread's half variance.
    let log_variance = match config.model.lognormal_spread() {
        Ok(Some(spread)) => out.log_variance.clone() - spread.half_variance(&out.log_quantiles),
        _ => out.log_variance,
    };
    variance_loss(
        log_variance,
        batch.log_rv.clone(),
        batch.rv_mask.clone(),
        points.rv,
    ) + pinball(
        out.log_quantiles,
        batch.log_rv,
        batch.rv_mask,
        &config.model.quantile_levels,
        points.rv,
    ) * config.quantile_weight
        + bce(
            out.shortage_logit,
            batch.shortage,
            batch.shortage_mask,
            points.shortage,
        ) * config.shortage_weight
}

/// The value of a one-element tensor.
pub(super) fn scalar(t: Tensor<1>) -> f32 {
    t.into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default()
        .first()
        .copied()
        .unwrap_or(f32::NAN)
}

/// The gradients and loss of `model` on one part of a batch whose targets are `points`.
fn part_gradients(
    model: &VolModel,
    batch: Batch,
    points: Points,
    config: &TrainingConfig,
) -> (GradientsParams, f32) {
    let loss = training_loss(model, batch, points, config);
    let value = scalar(loss.clone());
    (GradientsParams::from_grads(loss.backward(), model), value)
}

/// The gradients and loss of `model` on the batch made of `parts`: the first part on this
/// thread, each other one on its own thread and its own copy of the model (a fork on `autodiff`:
/// the same parameters, its own graph), then summed.
pub(super) fn gradients(
    model: &VolModel,
    parts: Vec<Batch>,
    config: &TrainingConfig,
    autodiff: &Device,
) -> (GradientsParams, f32) {
    let points = Points::total(&parts);
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return (GradientsParams::new(), f32::NAN);
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = parts
            .map(|part| {
                let replica = model.clone().fork(autodiff);
                scope.spawn(move || part_gradients(&replica, part, points, config))
            })
            .collect();
        let (mut grads, mut value) = part_gradients(model, first, points, config);
        for other in others {
            let (more, v) = other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            model.visit(&mut AddGradients {
                into: &mut grads,
                from: more,
            });
            value += v;
        }
        (grads, value)
    })
}

/// Adds `from`'s gradient of each parameter visited into `into`.
struct AddGradients<'a> {
    into: &'a mut GradientsParams,
    from: GradientsParams,
}

impl burn::module::ModuleVisitor for AddGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if let Some(more) = self.from.remove::<D>(param.id) {
            let sum = match self.into.remove::<D>(param.id) {
                Some(g) => g + more,
                None => more,
            };
            self.into.register(param.id, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::tests::{START_MS, assets};
    use crate::dataset::{fit_scaler, split};
    use volcast_core::time::HOUR_MS;

    #[test]
    fn a_row_counts_by_its_weight_in_the_loss() {
        let device = Device::flex();
        let assets = assets();
        let features = PanelFeatures::new(&assets);
        // Every row counts the same unless the test says otherwise.
        let mut config = TrainingConfig::default_run()
            .with_window(32)
            .with_holdout_days(10)
            .with_recency_half_life_days(None);
        config.model = config.model.with_channels(8).with_layers(3).with_hidden(16);
        let (mut train, _) = split(&features, &assets, &config, START_MS / HOUR_MS + 24 * 110);
        let scaler = fit_scaler(&features, &train, config.window);
        let model = config.model.init(&device);
        let loss = |samples: &Samples, rows: &[usize]| {
            let b = batch(
                &features,
                samples,
                rows,
                &scaler,
                config.window,
                &device,
                &mut || false,
            );
            let points = b.points;
            scalar(loss_of(
                model.forward(b.sequence.clone(), b.statics.clone()),
                b,
                points,
                &config,
            ))
        };
        let (first, second) = (0, train.len() / 2);
        let alone = loss(&train, &[first]);
        let both = loss(&train, &[first, second]);
        assert!(
            (alone - both).abs() > 1e-4,
            "two different rows: {alone} vs {both}"
        );

        // Weight 0 leaves the row out; equal weights, whatever their size, are the plain mean.
        train.weight = vec![1.0; train.len()];
        train.weight[second] = 0.0;
        assert!((loss(&train, &[first, second]) - alone).abs() < 1e-5);
        train.weight = vec![0.25; train.len()];
        assert!((loss(&train, &[first, second]) - both).abs() < 1e-5);
        // A row weighted 3 counts as three copies of it.
        train.weight = vec![1.0; train.len()];
        train.weight[second] = 3.0;
        let copies = loss(
            &Samples {
                weight: Vec::new(),
                ..train.clone()
            },
            &[first, second, second, second],
        );
        assert!((loss(&train, &[first, second]) - copies).abs() < 1e-5);
    }

    #[test]
    fn the_rescaled_holdout_qlike_is_that_of_the_forecasts_at_their_best_scale() {
        let (rv, f) = ([0.5, 2.0, 9.0, 0.1], [1.0, 1.0, 3.0, 0.4]);
        let mut sum = QlikeSum::default();
        for (r, f) in rv.iter().zip(f) {
            sum.add(f64::ln(r / f));
        }
        let qlike = |scale: f64| {
            rv.iter()
                .zip(f)
                .map(|(r, f)| r / (scale * f) - (r / (scale * f)).ln() - 1.0)
                .sum::<f64>()
                / 4.0
        };
        assert!((sum.mean(false) - qlike(1.0)).abs() < 1e-12);
        let best = rv.iter().zip(f).map(|(r, f)| r / f).sum::<f64>() / 4.0;
        assert!((sum.mean(true) - qlike(best)).abs() < 1e-12);
        // No other scale does better, and the level of the forecasts does not matter.
        for s in [0.5, 0.9, 1.1, 2.0] {
            assert!(qlike(best * s) > sum.mean(true));
        }
        let mut doubled = QlikeSum::default();
        for (r, f) in rv.iter().zip(f) {
            doubled.add(f64::ln(r / (2.0 * f)));
        }
        assert!((doubled.mean(true) - sum.mean(true)).abs() < 1e-12);
    }

    #[test]
    fn a_horizon_without_points_has_no_score() {
        assert!(QlikeSum::default().mean(false).is_nan());
        assert!(QlikeSum::default().mean(true).is_nan());
        // One whose forecasts are not numbers scores the worst there is, not "none".
        let mut broken = QlikeSum::default();
        broken.add(0.1);
        broken.add(f64::NAN);
        assert_eq!(broken.mean(false), f64::INFINITY);
        assert_eq!(broken.mean(true), f64::INFINITY);
    }
}
