//! Training the neural model: samples from the shared feature code, a least-squares start for
//! the log-variance skip, AdamW with gradient clipping, early stopping on a holdout at the end of
//! the fit period, a checkpoint every epoch and resume after any interruption.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::artifact::Scaler;
use crate::features::{
    AssetFeatures, FeatureSpec, HAR_FEATURES, LEVEL_FEATURES, MARKET_FLAG, Market, N_CHANNELS, N_STATIC,
};
use crate::forecast::HORIZONS;
use crate::grid::Asset;
use crate::model::loss::{bce, pinball, qlike};
use crate::model::{VolModel, VolModelConfig};
use crate::panel::{PreparedAsset, daily_slots};
use crate::synth::Rng;

/// Everything that defines a training run; saved beside the weights.
#[derive(Config, Debug)]
pub struct TrainingConfig {
    /// Architecture.
    pub model: VolModelConfig,
    /// Hours of history in the sequence input.
    #[config(default = 128)]
    pub window: usize,
    /// Spacing of training origins, hours.
    #[config(default = 4)]
    pub stride_hours: usize,
    /// Days at the end of the fit period held out for early stopping.
    #[config(default = 120)]
    pub holdout_days: usize,
    /// Rows per optimiser step.
    #[config(default = 256)]
    pub batch_size: usize,
    /// Most epochs.
    #[config(default = 12)]
    pub max_epochs: usize,
    /// Epochs without holdout improvement before stopping.
    #[config(default = 3)]
    pub patience: usize,
    /// AdamW learning rate.
    #[config(default = 3e-4)]
    pub learning_rate: f64,
    /// AdamW weight decay.
    #[config(default = 1e-4)]
    pub weight_decay: f32,
    /// Gradient norm clip.
    #[config(default = 1.0)]
    pub grad_clip_norm: f32,
    /// Weight of the quantile (pinball) loss.
    #[config(default = 0.5)]
    pub quantile_weight: f32,
    /// Weight of the shortage (cross-entropy) loss.
    #[config(default = 0.3)]
    pub shortage_weight: f32,
    /// Share of training rows whose market factor is hidden, so the model also serves
    /// requests without market data.
    #[config(default = 0.3)]
    pub market_dropout: f64,
    /// Static features the linear log-variance skip starts from (least squares on these;
    /// the others start at zero). Empty: all of them.
    #[config(default = "Vec::new()")]
    pub skip_features: Vec<usize>,
    /// Keep the skip at its least-squares start, so the network learns only a correction.
    #[config(default = false)]
    pub freeze_skip: bool,
    /// Seed of initialisation and shuffling.
    #[config(default = 42)]
    pub seed: u64,
}

impl TrainingConfig {
    /// The default run: TCN encoder, SPEC's horizons, quantiles 0.05, 0.5, 0.95, 0.99.
    #[must_use]
    pub fn default_run() -> Self {
        Self::new(
            VolModelConfig::new(N_STATIC, N_CHANNELS, HORIZONS.len(), vec![0.05, 0.5, 0.95, 0.99])
                .with_trunk_excluded(LEVEL_FEATURES.to_vec()),
        )
        .with_skip_features(HAR_FEATURES.to_vec())
        .with_freeze_skip(true)
    }
}

/// Training examples at chosen origins.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// `(asset, slot)` per row.
    pub index: Vec<(u32, u32)>,
    /// Unscaled static features per row.
    pub statics: Vec<[f32; N_STATIC]>,
    /// ln RV per horizon (NaN: missing or its window passes the limit).
    pub log_rv: Vec<[f32; 3]>,
    /// Shortage label per horizon (1, 0, NaN).
    pub shortage: Vec<[f32; 3]>,
}

impl Samples {
    /// Number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True without rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// The per-asset inputs of a panel.
#[derive(Debug)]
pub struct PanelFeatures {
    /// Per asset.
    pub assets: Vec<AssetFeatures>,
    /// Per asset, SPEC's derived series.
    pub prepared: Vec<PreparedAsset>,
    /// BTC's trailing variances, when the panel has BTC.
    pub market: Option<Market>,
}

impl PanelFeatures {
    /// Computes everything the features need.
    #[must_use]
    pub fn new(assets: &[Asset]) -> Self {
        let prepared = crate::panel::prepare(assets, &HORIZONS);
        let features = assets
            .par_iter()
            .zip(&prepared)
            .map(|(a, p)| AssetFeatures::new(a, p))
            .collect();
        Self {
            assets: features,
            prepared,
            market: crate::inference::panel_market(assets),
        }
    }

    /// Samples at `slots(asset)` whose targets end by `limit_hour` (later targets are masked).
    pub fn samples<F>(&self, assets: &[Asset], limit_hour: i64, slots: F) -> Samples
    where
        F: Fn(&Asset) -> Vec<usize> + Sync,
    {
        let parts: Vec<Samples> = assets
            .par_iter()
            .enumerate()
            .map(|(a, asset)| {
                let mut out = Samples::default();
                let mut scratch = Vec::new();
                for slot in slots(asset) {
                    let Some(statics) = self.assets[a].static_at(slot, self.market.as_ref(), &mut scratch)
                    else {
                        continue;
                    };
                    let hour = asset.grid.hour(slot);
                    let prep = &self.prepared[a];
                    let mut log_rv = [f32::NAN; 3];
                    let mut shortage = [f32::NAN; 3];
                    for (j, &h) in HORIZONS.iter().enumerate() {
                        if hour + i64::try_from(h).unwrap_or(i64::MAX) > limit_hour {
                            continue;
                        }
                        let rv = prep.target(slot, h);
                        if rv > 0.0 && rv.is_finite() {
                            #[allow(clippy::cast_possible_truncation)]
                            {
                                log_rv[j] = rv.ln() as f32;
                            }
                        }
                        if let Some(label) = prep.shortage(slot, h, &mut scratch).label {
                            shortage[j] = f32::from(u8::from(label));
                        }
                    }
                    if log_rv.iter().all(|v| v.is_nan()) {
                        continue;
                    }
                    out.index.push((
                        u32::try_from(a).unwrap_or(u32::MAX),
                        u32::try_from(slot).unwrap_or(u32::MAX),
                    ));
                    out.statics.push(statics);
                    out.log_rv.push(log_rv);
                    out.shortage.push(shortage);
                }
                out
            })
            .collect();
        let mut all = Samples::default();
        for p in parts {
            all.index.extend(p.index);
            all.statics.extend(p.statics);
            all.log_rv.extend(p.log_rv);
            all.shortage.extend(p.shortage);
        }
        all
    }
}

/// Training and holdout samples for a fit period ending at `fit_end_hour` (close hour).
#[must_use]
pub fn split(
    features: &PanelFeatures,
    assets: &[Asset],
    config: &TrainingConfig,
    fit_end_hour: i64,
) -> (Samples, Samples) {
    let holdout_start = fit_end_hour - 24 * i64::try_from(config.holdout_days).unwrap_or(0);
    let stride = i64::try_from(config.stride_hours.max(1)).unwrap_or(1);
    let train = features.samples(assets, holdout_start, |asset| {
        let g = &asset.grid;
        (0..g.slots_until(holdout_start))
            .filter(|&s| g.hour(s).rem_euclid(stride) == 0)
            .collect()
    });
    let holdout = features.samples(assets, fit_end_hour, |asset| {
        daily_slots(asset, holdout_start + 1, fit_end_hour).collect()
    });
    (train, holdout)
}

/// Fits the input scaler on training rows (sequence statistics from an evenly spread subset).
#[must_use]
pub fn fit_scaler(features: &PanelFeatures, train: &Samples, window: usize) -> Scaler {
    let mean_std = |columns: usize, rows: &mut dyn Iterator<Item = &[f32]>| {
        let (mut sum, mut sq, mut n) = (vec![0f64; columns], vec![0f64; columns], 0f64);
        for row in rows {
            for (c, &v) in row.iter().enumerate() {
                sum[c] += f64::from(v);
                sq[c] += f64::from(v) * f64::from(v);
            }
            n += 1.0;
        }
        #[allow(clippy::cast_possible_truncation)]
        let stats: (Vec<f32>, Vec<f32>) = (0..columns)
            .map(|c| {
                let m = sum[c] / n.max(1.0);
                let s = (sq[c] / n.max(1.0) - m * m).max(0.0).sqrt();
                (m as f32, if s > 1e-6 { s as f32 } else { 1.0 })
            })
            .unzip();
        stats
    };
    let (static_mean, static_std) = mean_std(N_STATIC, &mut train.statics.iter().map(|r| r.as_slice()));
    let step = (train.len() / 4000).max(1);
    let mut seq = Vec::new();
    for &(a, s) in train.index.iter().step_by(step) {
        let mut buf = vec![0f32; window * N_CHANNELS];
        features.assets[a as usize].sequence_at(s as usize, window, &mut buf);
        seq.extend(buf);
    }
    let (channel_mean, channel_std) = mean_std(N_CHANNELS, &mut seq.chunks_exact(N_CHANNELS));
    Scaler {
        static_mean,
        static_std,
        channel_mean,
        channel_std,
    }
}

/// Least-squares start of the log-variance skip and the quantile offsets.
///
/// Per horizon: ridge-stabilised OLS of ln RV on the standardised static features, its bias
/// raised by `s^2 / 2` (so `exp` forecasts the mean, as SPEC's HAR does), and the quantiles of
/// its residuals as starting quantile offsets.
#[must_use]
pub fn linear_start(
    train: &Samples,
    scaler: &Scaler,
    levels: &[f64],
    columns: &[usize],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let h = HORIZONS.len();
    let mut weight = vec![0f32; N_STATIC * h];
    let mut bias = vec![0f32; h];
    let mut q_bias = Vec::with_capacity(h * levels.len());
    for j in 0..h {
        let rows: Vec<(Vec<f64>, f64)> = train
            .statics
            .iter()
            .zip(&train.log_rv)
            .filter(|(_, y)| y[j].is_finite())
            .map(|(x, y)| {
                let mut x = *x;
                scaler.scale_static(&mut x);
                (
                    columns.iter().map(|&c| f64::from(x[c])).collect(),
                    f64::from(y[j]),
                )
            })
            .collect();
        let n = rows.len();
        let p = columns.len() + 1;
        let x = DMatrix::from_fn(n, p, |i, c| if c == 0 { 1.0 } else { rows[i].0[c - 1] });
        let y = DVector::from_iterator(n, rows.iter().map(|r| r.1));
        #[allow(clippy::cast_precision_loss)]
        let ridge = DMatrix::from_diagonal(&DVector::from_fn(
            p,
            |c, _| if c == 0 { 0.0 } else { 1e-3 * n as f64 },
        ));
        let beta = (x.tr_mul(&x) + ridge)
            .cholesky()
            .map_or_else(|| DVector::zeros(p), |c| c.solve(&x.tr_mul(&y)));
        let mut residuals: Vec<f64> = (&y - &x * &beta).iter().copied().collect();
        #[allow(clippy::cast_precision_loss)]
        let s2 = residuals.iter().map(|r| r * r).sum::<f64>() / (n.saturating_sub(p).max(1)) as f64;
        #[allow(clippy::cast_possible_truncation)]
        {
            bias[j] = (beta[0] + 0.5 * s2) as f32;
            for (k, &c) in columns.iter().enumerate() {
                weight[c * h + j] = beta[k + 1] as f32;
            }
        }
        // Residuals relative to the mean-corrected forecast.
        residuals.iter_mut().for_each(|r| *r -= 0.5 * s2);
        residuals.sort_by(f64::total_cmp);
        let quantile = |level: f64| {
            if residuals.is_empty() {
                return 0.0;
            }
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let i = ((residuals.len() - 1) as f64 * level).round() as usize;
            residuals[i]
        };
        let mut previous = 0.0;
        for (l, &level) in levels.iter().enumerate() {
            let q = quantile(level);
            #[allow(clippy::cast_possible_truncation)]
            let value = if l == 0 {
                q as f32
            } else {
                // Inverse softplus of the positive step.
                let step = (q - previous).max(1e-3);
                (step.exp_m1().ln()) as f32
            };
            q_bias.push(value);
            previous = q;
        }
    }
    (weight, bias, q_bias)
}

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
#[allow(clippy::too_many_lines)]
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
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
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
                #[allow(clippy::cast_precision_loss)]
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
    #[allow(clippy::cast_precision_loss)]
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

#[cfg(feature = "data")]
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

#[cfg(not(feature = "data"))]
fn progress_bar(_: bool, _: usize, _: usize, _: usize) -> Option<NoBar> {
    None
}

#[cfg(not(feature = "data"))]
struct NoBar;

#[cfg(not(feature = "data"))]
impl NoBar {
    fn set_position(&self, _: u64) {}
    fn set_message(&self, _: String) {}
    fn finish_with_message(&self, _: String) {}
}

/// The feature spec of a run.
#[must_use]
pub fn feature_spec(config: &TrainingConfig) -> FeatureSpec {
    FeatureSpec::current(config.window)
}
