//! `train --bench`: the training step timed on the real data and the run's config, without
//! writing anything. Reports samples per second at each batch size and thread count asked for,
//! and where one single-threaded step's time goes (building the batch, forward pass and loss,
//! backward pass, optimiser), so a speed claim is a command anyone can rerun.

use std::time::Instant;

use burn::prelude::*;

use super::{Averager, Run, RunOptions, TrainError, TrainingData};
use volcast_core::grid::Asset;
use volcast_model::config::TrainingConfig;
use volcast_model::network::EncoderPath;

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    /// Batch sizes.
    pub batch_sizes: Vec<usize>,
    /// Thread counts (see [`RunOptions::threads`]).
    pub threads: Vec<usize>,
    /// Timed optimiser steps per measurement.
    pub steps: usize,
    /// Untimed steps before (allocations and caches settle, GPU kernels compile).
    pub warmup: usize,
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// Rows per optimiser step.
    pub batch_size: usize,
    /// Threads per step.
    pub threads: usize,
    /// Training rows per second over the timed steps.
    pub samples_per_second: f64,
    /// Milliseconds per step.
    pub ms_per_step: f64,
    /// Cores busy during the timed steps: the process's CPU time over the wall time (Linux;
    /// None elsewhere).
    pub cores: Option<f64>,
}

/// CPU seconds this process has used (user and system), from `/proc/self/stat` (Linux, whose
/// `USER_HZ` there is 100 ticks a second); None where it cannot be read.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Milliseconds per single-threaded step in each phase, at the first batch size.
#[derive(Debug, Clone, Copy, Default)]
pub struct Profile {
    /// Batch size profiled.
    pub batch_size: usize,
    /// Reading features into the batch's tensors (market dropout included).
    pub batch_ms: f64,
    /// Forward pass and loss, up to reading the loss value.
    pub forward_ms: f64,
    /// Backward pass and collecting the gradients.
    pub backward_ms: f64,
    /// Gradient clipping and the AdamW update.
    pub optimizer_ms: f64,
}

/// Times the training step of `config` on `assets` (fit period ending at `fit_end_hour`) on
/// `device`, and profiles a single-threaded step with each [`EncoderPath`], in the order of
/// [`EncoderPath::ALL`]. On a GPU the phases of the profile are only when the host queued them (the work
/// itself is asynchronous); the totals wait for the device.
///
/// # Errors
/// [`TrainError::NoData`] when there are too few training rows.
pub fn bench(
    assets: &[Asset],
    config: &TrainingConfig,
    fit_end_hour: i64,
    device: &Device,
    settings: &BenchSettings,
) -> Result<(Vec<BenchRow>, [Profile; 3]), TrainError> {
    let data = TrainingData::new(assets, config, fit_end_hour)?;
    // A batch larger than the rows (or than training takes) stepped on no row at all: no work
    // timed, and a throughput made up from the batch size.
    let rows = data.train_set.len();
    if let Some(&bad) = settings
        .batch_sizes
        .iter()
        .find(|&&b| b == 0 || b > rows || b > volcast_model::config::MAX_BATCH)
    {
        return Err(TrainError::Config(format!(
            "bench batch size {bad}: between 1 and the training rows ({rows}), at most {}",
            volcast_model::config::MAX_BATCH
        )));
    }
    let autodiff = device.clone().autodiff();
    let mut rows_out = Vec::new();
    let mut profiles = [Profile::default(); 3];
    for (i, &batch_size) in settings.batch_sizes.iter().enumerate() {
        let config = config.clone().with_batch_size(batch_size);
        for &threads in &settings.threads {
            let options = RunOptions {
                checkpoint_dir: std::env::temp_dir(),
                resume: false,
                progress: false,
                max_steps: None,
                threads,
                inputs: String::new(),
            };
            let run = Run {
                config: &config,
                options: &options,
                data: &data,
                rows: &data.train_set,
                device,
                autodiff: &autodiff,
                snapshots: &[],
            };
            rows_out.push(run.time_steps(settings));
            if i == 0 && threads == settings.threads[0] {
                profiles = EncoderPath::ALL.map(|path| run.profile(settings, path));
            }
        }
    }
    Ok((rows_out, profiles))
}

impl Run<'_> {
    /// `settings.warmup` steps, then `settings.steps` timed ones, from a fresh model (each step
    /// taken into the running average of the weights where the config averages them, as in
    /// training).
    fn time_steps(&self, settings: &BenchSettings) -> BenchRow {
        let config = self.config;
        let (mut model, mut optim, order, mut rng) = self.fresh();
        let mut averager = config.weight_average_half_life_epochs.map(Averager::new);
        let steps_per_epoch = self.rows.len() / config.batch_size.max(1);
        let mut batches = order.chunks_exact(config.batch_size).cycle();
        let mut clock = Instant::now();
        let mut cpu_start = None;
        for k in 0..settings.warmup + settings.steps {
            if k == settings.warmup {
                sync(&model);
                clock = Instant::now();
                cpu_start = cpu_seconds();
            }
            let rows = batches.next().unwrap_or(&[]);
            model = self.step(model, &mut optim, rows, &mut rng).0;
            if let Some(a) = averager.as_mut() {
                a.observe(&model, steps_per_epoch);
            }
        }
        sync(&model);
        let seconds = clock.elapsed().as_secs_f64();
        let cores = cpu_start
            .zip(cpu_seconds())
            .map(|(start, end)| (end - start) / seconds.max(f64::MIN_POSITIVE));
        BenchRow {
            cores,
            batch_size: config.batch_size,
            threads: self.options.threads,
            samples_per_second: (settings.steps * config.batch_size) as f64 / seconds,
            ms_per_step: 1e3 * seconds / settings.steps.max(1) as f64,
        }
    }

    /// The single-threaded step of [`Run::step`], phase by phase, with the encoder's `path`.
    fn profile(&self, settings: &BenchSettings, path: EncoderPath) -> Profile {
        let config = self.config;
        let (mut model, mut optim, order, mut rng) = self.fresh();
        let mut batches = order.chunks_exact(config.batch_size).cycle();
        let mut total = Profile {
            batch_size: config.batch_size,
            ..Profile::default()
        };
        for k in 0..settings.warmup + settings.steps {
            let rows = batches.next().unwrap_or(&[]);
            let t0 = Instant::now();
            let batch = self.batch(rows, &mut rng);
            let points = batch.points;
            let t1 = Instant::now();
            let (sequence, statics) = (batch.sequence.clone(), batch.statics.clone());
            let out = model.forward_through(sequence, statics, path);
            let loss = super::loss_of(out, batch, points, config);
            let _ = super::scalar(loss.clone());
            let t2 = Instant::now();
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
            let t3 = Instant::now();
            model = optim.step(config.learning_rate, model, grads);
            sync(&model);
            let t4 = Instant::now();
            if k >= settings.warmup {
                total.batch_ms += (t1 - t0).as_secs_f64();
                total.forward_ms += (t2 - t1).as_secs_f64();
                total.backward_ms += (t3 - t2).as_secs_f64();
                total.optimizer_ms += (t4 - t3).as_secs_f64();
            }
        }
        let per_step = 1e3 / settings.steps.max(1) as f64;
        Profile {
            batch_ms: total.batch_ms * per_step,
            forward_ms: total.forward_ms * per_step,
            backward_ms: total.backward_ms * per_step,
            optimizer_ms: total.optimizer_ms * per_step,
            ..total
        }
    }
}

/// Waits for the device to finish the work queued so far (a read of a parameter).
fn sync(model: &volcast_model::network::VolModel) {
    let _ = model.variance_skip.weight.val().sum().into_data();
}
