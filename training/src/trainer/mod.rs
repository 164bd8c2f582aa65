//! Training the neural model (data in [`crate::dataset`]): AdamW with gradient clipping, early stopping on a holdout at the end of
//! the fit period, a checkpoint every epoch and resume after any interruption.

mod average;
pub mod bench;
mod checkpoint;
mod refit;
mod start;
use start::{TrainingData, fresh_model, new_optimizer, start_or_resume};
mod step;

use std::path::PathBuf;

use average::Averager;
pub use checkpoint::CheckpointState;
use checkpoint::{AVERAGE, BEST, LAST, OPTIM, ckpt_err, current_checkpoint, publish_checkpoint, save_atomic};
pub use refit::{HorizonNetworks, ensemble_apart, ensemble_of, per_horizon_epochs};
use refit::{refit, snapshot_file};
use std::time::Instant;
pub use step::holdout_qlike;
use step::{Batch, batch, gradients, loss_of, scalar};

use burn::optim::ModuleOptimizer;
use burn::prelude::*;

use volcast_core::features::FeatureSpec;
use volcast_core::grid::Asset;
use volcast_core::synth::Rng;
use volcast_model::config::TrainingConfig;
use volcast_model::network::VolModel;
use volcast_model::scaler::Scaler;

use crate::dataset::Samples;

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Too little data to train on.
    #[error("{0}")]
    NoData(String),
    /// A config value training cannot use.
    #[error("training config: {0}")]
    Config(String),
    /// Checkpoint I/O.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The loss stopped being a number: the weights have left the range the network can be
    /// trained from, and every later step would only spread the NaN.
    #[error(
        "training diverged: the loss was {loss} at step {step} of epoch {epoch} (learning_rate \
         {learning_rate:e}); lower the learning rate or the gradient clip"
    )]
    Diverged {
        /// The epoch, 1-based as the progress bar counts.
        epoch: usize,
        /// The step within the epoch, 1-based.
        step: usize,
        /// The loss it gave.
        loss: f32,
        /// The config's learning rate.
        learning_rate: f64,
    },
    /// The network's holdout forecasts at a horizon are not numbers (or no horizon has a
    /// holdout target) at the end of an epoch whose losses all were (nothing of the epoch is
    /// checkpointed).
    #[error(
        "training diverged: the network's holdout forecasts were not finite after epoch {epoch}; \
         lower the learning rate or the gradient clip"
    )]
    HoldoutNotFinite {
        /// The epoch, 1-based as the progress bar counts.
        epoch: usize,
    },
}

/// The epoch's early-stopping score: the mean of its holdout scores over the horizons that have
/// one (NaN: no holdout target); +inf where one is (forecasts that are not numbers), NaN when no
/// horizon has a score.
fn early_stopping_score(scores: [f64; 3]) -> f64 {
    let scored: Vec<f64> = scores.into_iter().filter(|s| !s.is_nan()).collect();
    if scored.is_empty() {
        f64::NAN
    } else {
        scored.iter().sum::<f64>() / scored.len() as f64
    }
}

/// What a finished run hands back.
#[derive(Debug)]
pub struct Trained {
    /// The served model (inference mode): the best epoch's, or the refit's last.
    pub model: VolModel,
    /// The scaler.
    pub scaler: Scaler,
    /// Final checkpoint state of the run with early stopping (its holdout scores); after a
    /// refit ([`TrainingConfig::refit_through_holdout`]) its seconds count both runs.
    pub state: CheckpointState,
    /// Training rows (the refit's, after one).
    pub train_rows: usize,
    /// Holdout rows.
    pub holdout_rows: usize,
    /// Rows processed per second (training steps only).
    pub samples_per_second: f64,
    /// With per-horizon epochs ([`TrainingConfig::per_horizon_epochs`]): the networks each
    /// horizon is served by.
    pub horizon_networks: Option<HorizonNetworks>,
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
    /// Stop each training session of one network after this many optimiser steps (tests and
    /// smoke runs): counted again for each member, each phase and a resumed session.
    pub max_steps: Option<usize>,
    /// Threads each optimiser step runs on: the batch is split into this many parts whose
    /// gradients are computed at once, each on its own copy of the model, and summed (the
    /// whole batch's gradient, to rounding). 1 on a GPU.
    pub threads: usize,
    /// What the rows come from beyond the config (the fit end and the candle files' hashes):
    /// a checkpoint resumes only under the same config and the same inputs.
    pub inputs: String,
}

impl RunOptions {
    /// What a checkpoint records of the run that wrote it, and must match to be resumed: the
    /// config and [`RunOptions::inputs`].
    ///
    /// # Errors
    /// The config does not serialise.
    pub(crate) fn run_key(&self, config: &TrainingConfig) -> Result<String, serde_json::Error> {
        let json = serde_json::to_string(config)?;
        Ok(if self.inputs.is_empty() {
            json
        } else {
            format!("{json}\n{}", self.inputs)
        })
    }
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
    let data = TrainingData::new(assets, config, fit_end_hour)?;
    train_on(&data, config, device, options)
}

/// Trains `members` networks on the same rows, member i with the config's seed + i and its
/// checkpoints in `<checkpoint dir>/member-<i>` (member 0's are [`train`]'s own), for an
/// [`volcast_model::network::Ensemble`]. In seed order.
///
/// # Errors
/// [`TrainError`] on too little data or checkpoint I/O failure, naming no member: the first
/// failure stops the run, and a rerun with `resume` continues from the members' checkpoints.
pub fn train_members(
    assets: &[Asset],
    config: &TrainingConfig,
    fit_end_hour: i64,
    device: &Device,
    options: &RunOptions,
    members: usize,
) -> Result<Vec<Trained>, TrainError> {
    let data = TrainingData::new(assets, config, fit_end_hour)?;
    (0..members.max(1))
        .map(|i| {
            let seed = config.seed.wrapping_add(i as u64);
            if members > 1 {
                tracing::info!(
                    member = i + 1,
                    of = members,
                    seed,
                    "training a member of the ensemble"
                );
            }
            let options = RunOptions {
                checkpoint_dir: member_checkpoint_dir(&options.checkpoint_dir, i),
                ..options.clone()
            };
            train_on(&data, &config.clone().with_seed(seed), device, &options)
        })
        .collect()
}

/// Where member `i` of an ensemble keeps its checkpoints: `dir` for member 0 (a single
/// network's run), `dir/member-<i>` for the others.
#[must_use]
fn member_checkpoint_dir(dir: &std::path::Path, i: usize) -> PathBuf {
    if i == 0 {
        dir.to_owned()
    } else {
        dir.join(format!("member-{i}"))
    }
}

/// [`train`] on rows already prepared: the run with early stopping on the holdout, then, where
/// the config trains until the fit end, [`refit`].
fn train_on(
    data: &TrainingData,
    config: &TrainingConfig,
    device: &Device,
    options: &RunOptions,
) -> Result<Trained, TrainError> {
    let early_stopped = run_phase(data, &data.train_set, config, device, options, Pick::Best, &[])?;
    match &data.refit_set {
        Some(rows) => refit(data, rows, config, device, options, early_stopped),
        None => Ok(early_stopped),
    }
}

/// Which network of the last checkpoint a run answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    /// The best on the holdout ([`BEST`]).
    Best,
    /// The last epoch's: its weights averaged where the config averages them ([`AVERAGE`]),
    /// else as they were after its last step ([`LAST`]).
    Final,
}

impl Pick {
    /// The checkpoint file holding it under `config`.
    fn file(self, config: &TrainingConfig) -> &'static str {
        match self {
            Self::Best => BEST,
            Self::Final if config.weight_average_half_life_epochs.is_some() => AVERAGE,
            Self::Final => LAST,
        }
    }
}

/// One run of epochs on `rows` (early stopping on the holdout as `config` says) with its
/// checkpoints in `options`' directory, keeping the networks served after the `snapshots`
/// epochs (0-based); answers with the network `pick` of the last checkpoint.
fn run_phase(
    data: &TrainingData,
    rows: &Samples,
    config: &TrainingConfig,
    device: &Device,
    options: &RunOptions,
    pick: Pick,
    snapshots: &[usize],
) -> Result<Trained, TrainError> {
    let pick = pick.file(config);
    let dir = &options.checkpoint_dir;
    std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, e))?;
    let config_json = options.run_key(config).map_err(|e| ckpt_err(dir, e))?;
    let autodiff = device.clone().autodiff();
    autodiff.seed(config.seed);
    let (model, optim, state, averager) =
        start_or_resume(config, options, &data.start, &autodiff, config_json)?;

    let run = Run {
        config,
        options,
        data,
        rows,
        device,
        autodiff: &autodiff,
        snapshots,
    };
    let (state, counters) = run.epochs(model, optim, state, averager)?;
    let current = current_checkpoint(dir).ok_or_else(|| ckpt_err(dir, "no checkpoint was written"))?;
    let model = config
        .model
        .init(device)
        .try_load_file(current.join(pick))
        .map_err(|e| ckpt_err(&current.join(pick), e))?;
    Ok(Trained {
        model,
        state,
        train_rows: rows.len(),
        holdout_rows: data.holdout.len(),
        scaler: data.scaler.clone(),
        samples_per_second: counters.samples_per_second(),
        horizon_networks: None,
    })
}

/// Rows and seconds of the optimiser steps taken in this session.
#[derive(Debug, Default)]
struct StepCounters {
    rows_done: usize,
    step_seconds: f64,
    steps: usize,
}

impl StepCounters {
    /// Rows processed per second of optimiser steps (0 before any step).
    fn samples_per_second(&self) -> f64 {
        if self.step_seconds > 0.0 {
            self.rows_done as f64 / self.step_seconds
        } else {
            0.0
        }
    }
}

/// What the epochs of a run read: its settings, data, scaler and devices.
struct Run<'a> {
    config: &'a TrainingConfig,
    options: &'a RunOptions,
    data: &'a TrainingData,
    /// The rows it trains on: `data.train_set`, or the refit's.
    rows: &'a Samples,
    /// Inference device (holdout scoring).
    device: &'a Device,
    /// Training device (autodiff).
    autodiff: &'a Device,
    /// Epochs (0-based) whose served networks each checkpoint keeps from then on.
    snapshots: &'a [usize],
}

impl Run<'_> {
    /// Runs the epochs after `state.epoch` until the last, early stopping or the step budget,
    /// checkpointing after each (with the running average of the weights, where there is one);
    /// returns the final state and the step counters.
    fn epochs(
        &self,
        mut model: VolModel,
        mut optim: ModuleOptimizer,
        mut state: CheckpointState,
        mut averager: Option<Averager>,
    ) -> Result<(CheckpointState, StepCounters), TrainError> {
        let config = self.config;
        let started = Instant::now();
        let seconds_before = state.seconds;
        let mut counters = StepCounters::default();
        let first_epoch = state.epoch.wrapping_add(1);
        tracing::info!(
            train_rows = self.rows.len(),
            holdout_rows = self.data.holdout.len(),
            "training"
        );
        for epoch in first_epoch..config.max_epochs {
            if state.bad_epochs >= config.patience {
                break;
            }
            let steps_before = counters.steps;
            let (trained, scored, scores) =
                self.epoch(model, &mut optim, &mut counters, &mut averager, epoch)?;
            model = trained;
            state.cut_short = counters.steps - steps_before < self.rows.len() / config.batch_size;
            let nets = Networks {
                model: &model,
                served: &scored,
                averager: averager.as_ref(),
            };
            let epoch_dir = self.checkpoint(&mut state, epoch, scores, nets, &optim)?;
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            publish_checkpoint(&self.options.checkpoint_dir, &epoch_dir, &state)?;
            if self.step_budget_spent(counters.steps) {
                break;
            }
        }
        Ok((state, counters))
    }

    /// Whether the optional cap on optimiser steps (tests and smoke runs) is reached.
    fn step_budget_spent(&self, steps: usize) -> bool {
        self.options.max_steps.is_some_and(|m| steps >= m)
    }

    /// One epoch: the training rows in this epoch's seeded order, one optimiser step per full
    /// batch (each taken into the running average of the weights, where there is one), then the
    /// holdout score per horizon of the network served (the averaged one where there is an
    /// average; shown on the bar and logged). Returns the trained model, the network served and
    /// its scores; [`TrainError::Diverged`] at the first step whose loss is not finite (nothing
    /// of the epoch is checkpointed, so a resume starts from the last sound one).
    fn epoch(
        &self,
        mut model: VolModel,
        optim: &mut ModuleOptimizer,
        counters: &mut StepCounters,
        averager: &mut Option<Averager>,
        epoch: usize,
    ) -> Result<(VolModel, VolModel, [f64; 3]), TrainError> {
        let config = self.config;
        let (order, mut rng) = shuffled_rows(self.rows.len(), config.seed, epoch);
        let n_batches = order.len() / config.batch_size;
        let bar = progress_bar(self.options.progress, n_batches, epoch, config.max_epochs);
        let mut loss_sum = 0.0;
        for (k, rows) in order.chunks_exact(config.batch_size).enumerate() {
            let t = Instant::now();
            let (stepped, value) = self.step(model, optim, rows, &mut rng);
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch: epoch + 1,
                    step: k + 1,
                    loss: value,
                    learning_rate: config.learning_rate,
                });
            }
            model = stepped;
            if let Some(a) = averager.as_mut() {
                a.observe(&model, n_batches);
            }
            counters.step_seconds += t.elapsed().as_secs_f64();
            counters.rows_done += rows.len();
            counters.steps += 1;
            loss_sum += f64::from(value);
            if let Some(bar) = &bar {
                bar.set_position(k as u64 + 1);
                bar.set_message(format!("loss {:.4}", loss_sum / (k + 1) as f64));
            }
            if self.step_budget_spent(counters.steps) {
                break;
            }
        }
        let scored = served(&model, averager.as_ref());
        let scores = holdout_qlike(
            &scored,
            &self.data.features,
            &self.data.holdout,
            &self.data.scaler,
            config.window,
            self.device,
            config.has_log_mse_variance(),
        );
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
        // A holdout forecast that is not a number (a last step that left NaN weights behind a
        // finite loss), or no score at all, must not be checkpointed as a bad epoch (a resume
        // would start from it).
        if !early_stopping_score(scores).is_finite() {
            return Err(TrainError::HoldoutNotFinite { epoch: epoch + 1 });
        }
        Ok((model, scored, scores))
    }

    /// One optimiser step on the training rows `rows` (market dropout drawn from `rng`), the
    /// batch split over [`RunOptions::threads`] threads; returns the updated model and the
    /// batch's loss.
    fn step(
        &self,
        model: VolModel,
        optim: &mut ModuleOptimizer,
        rows: &[usize],
        rng: &mut Rng,
    ) -> (VolModel, f32) {
        let config = self.config;
        let parts = self.options.threads.clamp(1, rows.len().max(1));
        // Built in row order: the market dropout draws are those of one whole batch.
        let batches: Vec<Batch> = rows
            .chunks(rows.len().div_ceil(parts).max(1))
            .map(|part| self.batch(part, rng))
            .collect();
        let (grads, value) = gradients(&model, batches, config, self.autodiff);
        (optim.step(config.learning_rate, model, grads), value)
    }

    /// The training rows `rows` as a batch on the training device, market dropout drawn from
    /// `rng`.
    fn batch(&self, rows: &[usize], rng: &mut Rng) -> Batch {
        let dropout = self.config.market_dropout;
        batch(
            &self.data.features,
            self.rows,
            rows,
            &self.data.scaler,
            self.config.window,
            self.autodiff,
            &mut || rng.uniform() < dropout,
        )
    }

    /// A fresh model from the least-squares start, its optimiser, and the first epoch's row
    /// order and dropout generator (the device seeded as a run starts).
    fn fresh(&self) -> (VolModel, ModuleOptimizer, Vec<usize>, Rng) {
        let config = self.config;
        self.autodiff.seed(config.seed);
        let model = fresh_model(config, &self.data.start, self.autodiff);
        let (order, rng) = shuffled_rows(self.rows.len(), config.seed, 0);
        (model, new_optimizer(config), order, rng)
    }

    /// Records the epoch's holdout `scores` in `state` (best, early-stopping count) and writes
    /// the epoch's checkpoint directory (not yet current, [`publish_checkpoint`]): the best
    /// network served (this epoch's when it improved, else the previous best; averaged where
    /// `averager` is), the last model and the optimiser, and the average with its weight.
    /// Returns the directory.
    fn checkpoint(
        &self,
        state: &mut CheckpointState,
        epoch: usize,
        scores: [f64; 3],
        Networks {
            model,
            served,
            averager,
        }: Networks<'_>,
        optim: &ModuleOptimizer,
    ) -> Result<PathBuf, TrainError> {
        let root = &self.options.checkpoint_dir;
        let previous = current_checkpoint(root);
        let epoch_dir = root.join(format!("epoch-{epoch:04}"));
        if epoch_dir.exists() {
            std::fs::remove_dir_all(&epoch_dir).map_err(|e| ckpt_err(&epoch_dir, e))?;
        }
        std::fs::create_dir_all(&epoch_dir).map_err(|e| ckpt_err(&epoch_dir, e))?;
        let dir = &epoch_dir;
        let score = early_stopping_score(scores);
        state.epoch = epoch;
        state.history.push(scores);
        if score < state.best {
            state.best = score;
            state.best_epoch = epoch;
            state.bad_epochs = 0;
            save_network(dir, BEST, served)?;
        } else {
            state.bad_epochs += 1;
            let best = previous
                .as_ref()
                .map(|p| p.join(BEST))
                .ok_or_else(|| ckpt_err(dir, "no earlier best model to keep"))?;
            std::fs::copy(&best, dir.join(BEST)).map_err(|e| ckpt_err(&best, e))?;
        }
        save_network(dir, LAST, model)?;
        save_atomic(dir, OPTIM, |p| optim.save(p).map_err(|e| e.to_string()))?;
        // The networks kept for per-horizon serving: the earlier ones carried forward, this
        // epoch's added when it is one of them.
        if let Some(previous) = &previous {
            for &e in self.snapshots.iter().filter(|&&e| e < epoch) {
                let file = snapshot_file(e);
                std::fs::copy(previous.join(&file), dir.join(&file))
                    .map_err(|err| ckpt_err(&previous.join(&file), err))?;
            }
        }
        if self.snapshots.contains(&epoch) {
            save_network(dir, &snapshot_file(epoch), served)?;
        }
        state.average_weight = averager.map(Averager::weight);
        if averager.is_some() {
            save_network(dir, AVERAGE, served)?;
        }
        Ok(epoch_dir)
    }
}

/// What an epoch's checkpoint saves: the network trained, the one served from it (averaged where
/// the run averages, in inference mode; scored on the holdout) and the average's state.
#[derive(Clone, Copy)]
struct Networks<'a> {
    model: &'a VolModel,
    served: &'a VolModel,
    averager: Option<&'a Averager>,
}

/// Saves `network` as `name` in the checkpoint directory `dir` ([`save_atomic`]).
fn save_network(dir: &std::path::Path, name: &str, network: &VolModel) -> Result<(), TrainError> {
    let network = network.clone();
    save_atomic(dir, name, |p| network.save_file(p).map_err(|e| e.to_string()))
}

/// The network a run scores and serves from `model` (in inference mode): its averaged weights
/// where `averager` holds an average, else `model`'s own.
fn served(model: &VolModel, averager: Option<&Averager>) -> VolModel {
    let valid = model.valid();
    match averager {
        Some(a) => a.averaged(valid),
        None => valid,
    }
}

/// The training rows in epoch `epoch`'s seeded shuffle, and the generator that then draws the
/// epoch's market dropout.
fn shuffled_rows(n: usize, seed: u64, epoch: usize) -> (Vec<usize>, Rng) {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9));
    for i in (1..order.len()).rev() {
        let j = (rng.uniform() * (i + 1) as f64) as usize;
        order.swap(i, j.min(i));
    }
    (order, rng)
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

#[cfg(test)]
mod tests {
    use super::early_stopping_score;

    /// A horizon without holdout targets (NaN) leaves the others to decide; one whose forecasts
    /// are not numbers (+inf) makes the epoch no score at all; none scored is NaN.
    #[test]
    fn early_stopping_reads_the_scored_horizons() {
        assert!((early_stopping_score([0.2, f64::NAN, 0.4]) - 0.3).abs() < 1e-12);
        assert!((early_stopping_score([0.2, 0.3, 0.4]) - 0.3).abs() < 1e-12);
        assert_eq!(early_stopping_score([0.2, f64::INFINITY, 0.4]), f64::INFINITY);
        assert!(early_stopping_score([f64::NAN; 3]).is_nan());
    }
}
