//! Training the neural model (data in [`crate::dataset`]): AdamW with gradient clipping, early stopping on a holdout at the end of
//! the fit period, a checkpoint every epoch and resume after any interruption.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::{PanelFeatures, Samples, fit_scaler, linear_start, split};
use crate::loss::{bce, pinball, qlike};
use volcast_core::features::{FeatureSpec, MARKET_FLAG, N_CHANNELS, N_STATIC};
use volcast_core::grid::Asset;
use volcast_core::synth::Rng;
use volcast_model::config::TrainingConfig;
use volcast_model::network::VolModel;
use volcast_model::scaler::Scaler;

/// One batch of tensors.
struct Batch {
    sequence: Tensor<3>,
    statics: Tensor<2>,
    log_rv: Tensor<2>,
    rv_mask: Tensor<2>,
    shortage: Tensor<2>,
    shortage_mask: Tensor<2>,
}

/// Builds a batch of rows `rows` of `samples` on `device`; `hide_market` hides the market
/// factor of the rows for which it returns true.
fn batch(
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
        for j in 0..3 {
            let v = samples.log_rv[i][j];
            y.push(if v.is_finite() { v } else { 0.0 });
            ym.push(f32::from(u8::from(v.is_finite())));
            let l = samples.shortage[i][j];
            s.push(if l.is_finite() { l } else { 0.0 });
            sm.push(f32::from(u8::from(l.is_finite())));
        }
    }
    let t2 = |v: Vec<f32>, c: usize| Tensor::<2>::from_data(TensorData::new(v, [b, c]), device);
    Batch {
        sequence: Tensor::<3>::from_data(TensorData::new(sequence, [b, window, N_CHANNELS]), device),
        statics: t2(statics, N_STATIC),
        log_rv: t2(y, 3),
        rv_mask: t2(ym, 3),
        shortage: t2(s, 3),
        shortage_mask: t2(sm, 3),
    }
}

/// Mean QLIKE per horizon of `model` on `samples` (inference, no gradients).
#[must_use]
pub fn holdout_qlike(
    model: &VolModel,
    features: &PanelFeatures,
    samples: &Samples,
    scaler: &Scaler,
    window: usize,
    device: &Device,
) -> [f64; 3] {
    let mut sum = [0f64; 3];
    let mut n = [0f64; 3];
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
            for j in 0..3 {
                let y = samples.log_rv[i][j];
                if y.is_finite() {
                    let d = f64::from(y) - f64::from(f[r * 3 + j]);
                    sum[j] += d.exp() - d - 1.0;
                    n[j] += 1.0;
                }
            }
        }
    }
    [0, 1, 2].map(|j| sum[j] / n[j].max(1.0))
}

/// Where checkpoints of a run live and what they say.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// The run's config, as JSON (resume refuses another).
    pub config: String,
    /// Last completed epoch (0-based).
    pub epoch: usize,
    /// Best holdout score so far (mean QLIKE over horizons).
    pub best: f64,
    /// Epoch of the best score.
    pub best_epoch: usize,
    /// Epochs since the best.
    pub bad_epochs: usize,
    /// Holdout QLIKE per horizon, per completed epoch.
    pub history: Vec<[f64; 3]>,
    /// Seconds spent training so far.
    pub seconds: f64,
}

/// Files inside a checkpoint directory.
const LAST: &str = "last.bpk";
const BEST: &str = "best.bpk";
const OPTIM: &str = "optimizer.bpk";
const STATE: &str = "state.json";

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Too little data to train on.
    #[error("{0}")]
    NoData(String),
    /// Checkpoint I/O.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Writes `state` atomically (temporary file, then rename), so a kill leaves the old or the new.
fn write_state(dir: &Path, state: &CheckpointState) -> Result<(), TrainError> {
    let path = dir.join(STATE);
    let tmp = dir.join("state.json.tmp");
    let json = serde_json::to_string_pretty(state).map_err(|e| ckpt_err(&path, e))?;
    std::fs::write(&tmp, json).map_err(|e| ckpt_err(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| ckpt_err(&path, e))
}

fn save_atomic(
    dir: &Path,
    name: &str,
    save: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), TrainError> {
    let tmp = dir.join(format!("{name}.tmp"));
    save(&tmp).map_err(|e| ckpt_err(&tmp, e))?;
    // burn appends its extension when missing; find what was written.
    let written = if tmp.exists() {
        tmp
    } else {
        tmp.with_extension("tmp.bpk")
    };
    std::fs::rename(&written, dir.join(name)).map_err(|e| ckpt_err(&dir.join(name), e))
}

/// What a finished run hands back.
#[derive(Debug)]
pub struct Trained {
    /// The best model (inference mode).
    pub model: VolModel,
    /// The scaler.
    pub scaler: Scaler,
    /// Final checkpoint state.
    pub state: CheckpointState,
    /// Training rows.
    pub train_rows: usize,
    /// Holdout rows.
    pub holdout_rows: usize,
    /// Rows processed per second (training steps only).
    pub samples_per_second: f64,
}

/// Options of [`train`] that are not part of the model's definition.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Checkpoint directory.
    pub checkpoint_dir: PathBuf,
    /// Continue from the checkpoint there.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop after this many optimiser steps in total (tests and smoke runs).
    pub max_steps: Option<usize>,
}

/// Trains on `assets` with fit period ending at `fit_end_hour`.
///
/// # Errors
/// [`TrainError`] on too little data or checkpoint I/O failure.
pub fn train(
    assets: &[Asset],
    config: &TrainingConfig,
    fit_end_hour: i64,
    device: &Device,
    options: &RunOptions,
) -> Result<Trained, TrainError> {
    let features = PanelFeatures::new(assets);
    let (train_set, holdout) = split(&features, assets, config, fit_end_hour);
    if train_set.len() < config.batch_size || holdout.is_empty() {
        return Err(TrainError::NoData(format!(
            "{} training rows and {} holdout rows: need at least {} and 1 (more history before the fit end, or fewer --holdout-days)",
            train_set.len(),
            holdout.len(),
            config.batch_size
        )));
    }
    let window = config.window;
    let scaler = fit_scaler(&features, &train_set, window);
    let columns: Vec<usize> = if config.skip_features.is_empty() {
        (0..N_STATIC).collect()
    } else {
        config.skip_features.clone()
    };
    let (w, b, qb) = linear_start(&train_set, &scaler, &config.model.quantile_levels, &columns);

    let dir = &options.checkpoint_dir;
    std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, e))?;
    let config_json = serde_json::to_string(config).map_err(|e| ckpt_err(dir, e))?;
    let autodiff = device.clone().autodiff();
    autodiff.seed(config.seed);
    let fresh = || {
        config
            .model
            .init(&autodiff)
            .with_variance_skip(w.clone(), b.clone(), &autodiff)
            .with_quantile_bias(qb.clone(), &autodiff)
            .with_frozen_skip(config.freeze_skip)
    };
    let make_optim = || {
        AdamWConfig::new()
            .with_weight_decay(config.weight_decay)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(config.grad_clip_norm)))
            .init()
    };

    let state_path = dir.join(STATE);
    let (mut model, mut optim, mut state) = if options.resume && state_path.is_file() {
        let text = std::fs::read_to_string(&state_path).map_err(|e| ckpt_err(&state_path, e))?;
        let state: CheckpointState = serde_json::from_str(&text).map_err(|e| ckpt_err(&state_path, e))?;
        if state.config != config_json {
            return Err(ckpt_err(
                dir,
                "was written by a run with another config; use another --checkpoint-dir or drop --resume",
            ));
        }
        let model = fresh()
            .try_load_file(dir.join(LAST))
            .map_err(|e| ckpt_err(&dir.join(LAST), e))?
            .with_frozen_skip(config.freeze_skip);
        let optim = make_optim()
            .load(dir.join(OPTIM))
            .map_err(|e| ckpt_err(&dir.join(OPTIM), e))?;
        tracing::info!(epoch = state.epoch + 1, "resuming");
        (model, optim, state)
    } else {
        let state = CheckpointState {
            config: config_json,
            epoch: usize::MAX,
            best: f64::INFINITY,
            best_epoch: 0,
            bad_epochs: 0,
            history: Vec::new(),
            seconds: 0.0,
        };
        (fresh(), make_optim(), state)
    };

    let started = Instant::now();
    let seconds_before = state.seconds;
    let mut rows_done = 0usize;
    let mut step_seconds = 0.0;
    let mut steps = 0usize;
    let first_epoch = state.epoch.wrapping_add(1);
    tracing::info!(
        train_rows = train_set.len(),
        holdout_rows = holdout.len(),
        "training"
    );
    for epoch in first_epoch..config.max_epochs {
        if state.bad_epochs >= config.patience {
            break;
        }
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        let mut rng = Rng::new(config.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9));
        for i in (1..order.len()).rev() {
            let j = (rng.uniform() * (i + 1) as f64) as usize;
            order.swap(i, j.min(i));
        }
        let n_batches = order.len() / config.batch_size;
        let bar = progress_bar(options.progress, n_batches, epoch, config.max_epochs);
        let mut loss_sum = 0.0;
        for (k, rows) in order.chunks_exact(config.batch_size).enumerate() {
            let t = Instant::now();
            let dropout = config.market_dropout;
            let batch = batch(
                &features,
                &train_set,
                rows,
                &scaler,
                window,
                &autodiff,
                &mut || rng.uniform() < dropout,
            );
            let out = model.forward(batch.sequence, batch.statics);
            let loss = qlike(out.log_variance, batch.log_rv.clone(), batch.rv_mask.clone())
                + pinball(
                    out.log_quantiles,
                    batch.log_rv,
                    batch.rv_mask,
                    &config.model.quantile_levels,
                ) * config.quantile_weight
                + bce(out.shortage_logit, batch.shortage, batch.shortage_mask) * config.shortage_weight;
            let value = loss
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default()
                .first()
                .copied()
                .unwrap_or(f32::NAN);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.learning_rate, model, grads);
            step_seconds += t.elapsed().as_secs_f64();
            rows_done += rows.len();
            steps += 1;
            loss_sum += f64::from(value);
            if let Some(bar) = &bar {
                bar.set_position(k as u64 + 1);
                bar.set_message(format!("loss {:.4}", loss_sum / (k + 1) as f64));
            }
            if options.max_steps.is_some_and(|m| steps >= m) {
                break;
            }
        }
        let scores = holdout_qlike(&model.valid(), &features, &holdout, &scaler, window, device);
        let score = scores.iter().sum::<f64>() / 3.0;
        if let Some(bar) = bar {
            bar.finish_with_message(format!(
                "holdout QLIKE 4h {:.4} 24h {:.4} 168h {:.4}",
                scores[0], scores[1], scores[2]
            ));
        }
        tracing::info!(
            epoch,
            holdout_4h = scores[0],
            holdout_24h = scores[1],
            holdout_168h = scores[2],
            "epoch done"
        );
        state.epoch = epoch;
        state.history.push(scores);
        if score < state.best {
            state.best = score;
            state.best_epoch = epoch;
            state.bad_epochs = 0;
            let m = model.clone();
            save_atomic(dir, BEST, |p| m.save_file(p).map_err(|e| e.to_string()))?;
        } else {
            state.bad_epochs += 1;
        }
        let m = model.clone();
        save_atomic(dir, LAST, |p| m.save_file(p).map_err(|e| e.to_string()))?;
        save_atomic(dir, OPTIM, |p| optim.save(p).map_err(|e| e.to_string()))?;
        state.seconds = seconds_before + started.elapsed().as_secs_f64();
        write_state(dir, &state)?;
        if options.max_steps.is_some_and(|m| steps >= m) {
            break;
        }
    }
    let best = config
        .model
        .init(device)
        .try_load_file(dir.join(BEST))
        .map_err(|e| ckpt_err(&dir.join(BEST), e))?;
    let samples_per_second = if step_seconds > 0.0 {
        rows_done as f64 / step_seconds
    } else {
        0.0
    };
    Ok(Trained {
        model: best,
        scaler,
        state,
        train_rows: train_set.len(),
        holdout_rows: holdout.len(),
        samples_per_second,
    })
}

fn progress_bar(show: bool, len: usize, epoch: usize, epochs: usize) -> Option<indicatif::ProgressBar> {
    show.then(|| {
        let bar = indicatif::ProgressBar::new(len as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("epoch {prefix} {bar:30} {pos}/{len} {elapsed} {msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(format!("{}/{epochs}", epoch + 1));
        bar
    })
}

/// The feature spec of a run.
#[must_use]
pub fn feature_spec(config: &TrainingConfig) -> FeatureSpec {
    FeatureSpec::current(config.window)
}
