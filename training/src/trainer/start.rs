//! What a training run starts from: the prepared rows, the scaler and the least-squares start
//! (made once, shared by an ensemble's members), then the model and optimiser, fresh or from the
//! current checkpoint.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;

use super::RunOptions;
use super::TrainError;
use super::average::Averager;
use super::checkpoint::{
    AVERAGE, CURRENT, CheckpointState, LAST, OPTIM, STATE, ckpt_err, current_checkpoint, current_state,
};
use crate::dataset::{
    PanelFeatures, Samples, fit_scaler, linear_start, shortage_start, split, training_rows,
};
use volcast_core::forecast::HORIZONS;
use volcast_core::grid::Asset;
use volcast_model::config::TrainingConfig;
use volcast_model::network::VolModel;
use volcast_model::scaler::Scaler;

/// What training reads, made once per run: the panel's features, the training and holdout rows,
/// the rows of training until the fit end where the config asks, the scaler fitted on the
/// training rows, and the least-squares start.
pub(super) struct TrainingData {
    pub(super) features: PanelFeatures,
    pub(super) train_set: Samples,
    pub(super) holdout: Samples,
    /// Every training origin up to the fit end ([`TrainingConfig::refit_through_holdout`]).
    pub(super) refit_set: Option<Samples>,
    pub(super) scaler: Scaler,
    pub(super) start: LinearStart,
}

impl TrainingData {
    /// Of `assets` with the fit period ending at `fit_end_hour`.
    pub(super) fn new(
        assets: &[Asset],
        config: &TrainingConfig,
        fit_end_hour: i64,
    ) -> Result<Self, TrainError> {
        let skip_columns = config.skip_columns(&HORIZONS).map_err(TrainError::Config)?;
        let features = PanelFeatures::new(assets);
        let (train_set, holdout) = split_enough_rows(&features, assets, config, fit_end_hour)?;
        let scaler = fit_scaler(&features, &train_set, config.window);
        let start = LinearStart::fit(config, &skip_columns, &train_set, &scaler);
        let refit_set = config
            .refits_through_holdout()
            .then(|| training_rows(&features, assets, config, fit_end_hour));
        Ok(Self {
            features,
            train_set,
            holdout,
            refit_set,
            scaler,
            start,
        })
    }
}

/// Splits the samples into training and holdout rows, refusing too few to train on, or options
/// [`TrainingConfig::check_training_options`] refuses.
pub(super) fn split_enough_rows(
    features: &PanelFeatures,
    assets: &[Asset],
    config: &TrainingConfig,
    fit_end_hour: i64,
) -> Result<(Samples, Samples), TrainError> {
    config.check_training_options().map_err(TrainError::Config)?;
    let (train_set, holdout) = split(features, assets, config, fit_end_hour);
    if train_set.len() < config.batch_size || holdout.is_empty() {
        return Err(TrainError::NoData(format!(
            "{} training rows and {} holdout rows: need at least {} and 1 (more history before the fit end, or fewer --holdout-days)",
            train_set.len(),
            holdout.len(),
            config.batch_size
        )));
    }
    Ok((train_set, holdout))
}

/// The linear skip's starting weights and the quantile biases a fresh model begins from; with
/// [`TrainingConfig::shortage_skip_from_baseline`], the shortage skip's too.
pub(super) struct LinearStart {
    pub(super) w: Vec<f32>,
    pub(super) b: Vec<f32>,
    pub(super) qb: Vec<f32>,
    pub(super) shortage: Option<(Vec<f32>, Vec<f32>)>,
}

impl LinearStart {
    /// Fits the starting values on the scaled training rows, the variance skip at each horizon on
    /// its `columns` ([`TrainingConfig::skip_columns`]).
    pub(super) fn fit(
        config: &TrainingConfig,
        columns: &[Vec<usize>],
        train_set: &Samples,
        scaler: &Scaler,
    ) -> Self {
        let (w, b, qb) = linear_start(
            train_set,
            scaler,
            &config.model.quantile_levels,
            columns,
            config.has_skip_qlike(),
        );
        let shortage = config
            .has_shortage_skip_from_baseline()
            .then(|| shortage_start(train_set, scaler));
        Self { w, b, qb, shortage }
    }
}

/// A freshly initialised model on `autodiff`, its skips and quantile biases set from `start`.
pub(super) fn fresh_model(config: &TrainingConfig, start: &LinearStart, autodiff: &Device) -> VolModel {
    let model = config
        .model
        .init(autodiff)
        .with_variance_skip(start.w.clone(), start.b.clone(), autodiff)
        .with_quantile_bias(start.qb.clone(), autodiff);
    let model = match &start.shortage {
        Some((w, b)) => model.with_shortage_skip(w.clone(), b.clone(), autodiff),
        None => model,
    };
    frozen(config, model)
}

/// `model` with the skips the config keeps at their start frozen (gradients are not part of a
/// checkpoint, so a resumed model is frozen again).
fn frozen(config: &TrainingConfig, model: VolModel) -> VolModel {
    model
        .with_frozen_skip(config.freeze_skip)
        .with_frozen_shortage_skip(config.has_shortage_skip_from_baseline())
}

/// A new AdamW optimiser with the config's weight decay and gradient clipping.
pub(super) fn new_optimizer(config: &TrainingConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.grad_clip_norm)))
        .init()
}

/// What a run starts from: the model, its optimiser, the checkpoint state and the running
/// average of the weights where the config averages them.
pub(super) type Start = (VolModel, ModuleOptimizer, CheckpointState, Option<Averager>);

/// Model, optimiser, state and average to start from: the checkpoint's when resuming one, else
/// fresh ones.
pub(super) fn start_or_resume(
    config: &TrainingConfig,
    options: &RunOptions,
    start: &LinearStart,
    autodiff: &Device,
    config_json: String,
) -> Result<Start, TrainError> {
    let half_life = config.weight_average_half_life_epochs;
    let other_config = |dir: &std::path::Path| {
        ckpt_err(
            dir,
            "was written by a run with another config, fit end or candle files; use another \
             --checkpoint-dir or drop --resume",
        )
    };
    // Another run's checkpoint is refused before anything else is decided about it (one cut
    // short by a step budget was trained over from the start, the other run's pointer removed).
    if options.resume
        && let Some(dir) = current_checkpoint(&options.checkpoint_dir)
        && current_state(&options.checkpoint_dir).is_some_and(|s| s.config != config_json)
    {
        return Err(other_config(&dir));
    }
    let current = current_checkpoint(&options.checkpoint_dir)
        .filter(|_| options.resume)
        .filter(|_| {
            // An epoch a step budget cut short is no epoch to continue from without one.
            let cut = options.max_steps.is_none()
                && current_state(&options.checkpoint_dir).is_some_and(|s| s.cut_short);
            if cut {
                tracing::warn!(
                    dir = %options.checkpoint_dir.display(),
                    "the checkpoint's last epoch was cut short by --max-steps: training from the start"
                );
            }
            !cut
        });
    if let Some(dir) = &current {
        let state_path = dir.join(STATE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| ckpt_err(&state_path, e))?;
        let state: CheckpointState = serde_json::from_str(&text).map_err(|e| ckpt_err(&state_path, e))?;
        if state.config != config_json {
            return Err(other_config(dir));
        }
        let model = frozen(
            config,
            fresh_model(config, start, autodiff)
                .try_load_file(dir.join(LAST))
                .map_err(|e| ckpt_err(&dir.join(LAST), e))?,
        );
        let optim = new_optimizer(config)
            .load(dir.join(OPTIM))
            .map_err(|e| ckpt_err(&dir.join(OPTIM), e))?;
        let averager = match (half_life, state.average_weight) {
            (Some(h), Some(weight)) => {
                let averaged = config
                    .model
                    .init(autodiff)
                    .try_load_file(dir.join(AVERAGE))
                    .map_err(|e| ckpt_err(&dir.join(AVERAGE), e))?;
                Some(Averager::resumed(h, &averaged, weight))
            }
            (Some(h), None) => Some(Averager::new(h)),
            (None, _) => None,
        };
        tracing::info!(epoch = state.epoch + 1, "resuming");
        Ok((model, optim, state, averager))
    } else {
        if options.resume && current_checkpoint(&options.checkpoint_dir).is_none() {
            tracing::info!(
                dir = %options.checkpoint_dir.display(),
                "no checkpoint to resume there: training from the start"
            );
        }
        // A fresh run: an earlier run's checkpoint is no longer current.
        let pointer = options.checkpoint_dir.join(CURRENT);
        if pointer.exists() {
            std::fs::remove_file(&pointer).map_err(|e| ckpt_err(&pointer, e))?;
        }
        let state = CheckpointState {
            config: config_json,
            epoch: usize::MAX,
            best: f64::INFINITY,
            best_epoch: 0,
            bad_epochs: 0,
            history: Vec::new(),
            seconds: 0.0,
            average_weight: None,
            cut_short: false,
        };
        let averager = half_life.map(Averager::new);
        Ok((
            fresh_model(config, start, autodiff),
            new_optimizer(config),
            state,
            averager,
        ))
    }
}
