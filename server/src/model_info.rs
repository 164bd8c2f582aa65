//! The served model: what the handlers need to know about it ([`ModelInfo`]: metadata, scaler,
//! baselines) and the forward pass ([`Predictor`]), which lives on the batching queue's worker
//! thread.

use std::collections::BTreeMap;
use std::path::Path;

use volcast_core::baselines::har::Har;
use volcast_core::baselines::shortage::ShortageLogistic;
use volcast_core::features::{AssetFeatures, N_CHANNELS};
use volcast_model::artifact::{ArtifactError, HorizonMetrics, Metadata};
use volcast_model::inference::{LoadedModel, ModelInput, Prediction};

use crate::dto::{
    AdaptiveDto, DataFileDto, FeaturesDto, HorizonMetricsDto, ModelCard, ModelRef, RecalibrationDto,
};

/// A batched forward pass. Runs on one worker thread, so it needs `Send` only.
pub trait Predictor: Send + 'static {
    /// One prediction per input, in order.
    fn predict(&mut self, inputs: &[ModelInput]) -> Vec<Prediction>;
}

impl Predictor for LoadedModel {
    fn predict(&mut self, inputs: &[ModelInput]) -> Vec<Prediction> {
        LoadedModel::predict(self, inputs)
    }
}

/// Everything about the model the handlers use; shared read-only.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The artifact's metadata.
    pub metadata: Metadata,
    /// SHA-256 of the artifact.
    pub hash: String,
    /// Where it was loaded from (the daily recalibration reads its weights there).
    pub dir: std::path::PathBuf,
    /// The policy served ([`crate::gate`]): set by the service, not the artifact.
    pub policy: crate::dto::policy::PolicyStatus,
}

impl ModelInfo {
    /// From a loaded artifact.
    #[must_use]
    pub fn of(model: &LoadedModel) -> Self {
        Self {
            metadata: model.metadata.clone(),
            hash: model.hash.clone(),
            dir: model.dir.clone(),
            policy: crate::dto::policy::PolicyStatus::model(),
        }
    }

    /// The id and hash every answer carries.
    #[must_use]
    pub fn reference(&self) -> ModelRef {
        ModelRef {
            id: self.metadata.id.clone(),
            hash: self.hash.clone(),
            policy: self.policy.clone(),
        }
    }

    /// Horizons served, hours, in output order.
    #[must_use]
    pub fn horizons(&self) -> &[usize] {
        &self.metadata.horizons
    }

    /// Candles a request needs: the origin and the hours of history before it.
    #[must_use]
    pub fn history_hours(&self) -> usize {
        self.metadata.features.history_hours()
    }

    /// HAR baseline for a horizon.
    #[must_use]
    pub fn har(&self, horizon: usize) -> Option<&Har> {
        self.metadata.har.get(&horizon)
    }

    /// Baseline shortage map for a horizon.
    #[must_use]
    pub fn shortage_logistic(&self, horizon: usize) -> Option<&ShortageLogistic> {
        self.metadata.shortage_logistic.get(&horizon)
    }

    /// Scaled model inputs at `slot`, exactly as `LoadedModel::input_at` builds them without a
    /// market factor (the model was trained with market dropout); None without enough history.
    #[must_use]
    pub fn input_at(
        &self,
        features: &AssetFeatures,
        slot: usize,
        scratch: &mut Vec<f64>,
    ) -> Option<ModelInput> {
        volcast_model::inference::model_input(&self.metadata, features, slot, None, scratch)
    }

    /// The model card of `GET /v1/model`.
    #[must_use]
    pub fn card(&self) -> ModelCard {
        let m = &self.metadata;
        let metrics = |map: &BTreeMap<usize, HorizonMetrics>| {
            map.iter()
                .map(|(h, x)| {
                    (
                        h.to_string(),
                        HorizonMetricsDto {
                            n_points: x.n_points,
                            qlike: x.qlike.clone(),
                            shortage_roc_auc: x.shortage_roc_auc.clone(),
                            coverage: x.coverage.clone(),
                        },
                    )
                })
                .collect()
        };
        let first = m.data.iter().map(|d| d.first.clone()).min();
        let last = m.data.iter().map(|d| d.last.clone()).max();
        ModelCard {
            model: self.reference(),
            created_at: m.created_at.clone(),
            code_version: m.code_version.clone(),
            horizons: m.horizons.clone(),
            quantile_levels: m.quantile_levels.clone(),
            history_hours: self.history_hours(),
            fit_until: m.fit_until.clone(),
            training_range: first.zip(last).map(|(a, b)| [a, b]),
            training_data: m
                .data
                .iter()
                .map(|d| DataFileDto {
                    // The file name only: where the trainer's files lay is none of a caller's business.
                    path: Path::new(&d.path)
                        .file_name()
                        .map_or_else(|| d.path.clone(), |n| n.to_string_lossy().into_owned()),
                    sha256: d.sha256.clone(),
                    rows: d.rows,
                    first: d.first.clone(),
                    last: d.last.clone(),
                })
                .collect(),
            holdout: metrics(&m.holdout),
            validation: metrics(&m.validation),
            features: FeaturesDto {
                version: m.features.version,
                static_names: m.features.static_names.clone(),
                channel_names: m.features.channel_names.clone(),
                window_hours: m.features.window,
            },
            device: m.device.clone(),
            networks: m.ensemble.unwrap_or(1),
            stress_scenarios: m.stress_scenarios.iter().map(|w| w.name.clone()).collect(),
            recalibration: m.recalibration.as_ref().map(|r| RecalibrationDto {
                from: r.from.clone(),
                until: r.until.clone(),
                rolling_days: r.rolling_days,
                variance_scale: r
                    .variance_scale
                    .iter()
                    .map(|(h, s)| (h.to_string(), *s))
                    .collect(),
                quantile_scale: r
                    .quantile_scale
                    .iter()
                    .map(|(h, s)| (h.to_string(), s.clone()))
                    .collect(),
                har_weight: r.har_weight.iter().map(|(h, w)| (h.to_string(), *w)).collect(),
                variance_power: r
                    .variance_power
                    .iter()
                    .map(|(h, s)| (h.to_string(), *s))
                    .collect(),
                shortage_stack: r
                    .shortage_stack
                    .iter()
                    .map(|(h, k)| (h.to_string(), *k))
                    .collect(),
                har_guarded: r.har_guarded.iter().map(|(h, w)| (h.to_string(), *w)).collect(),
                adaptive: r.adaptive.as_ref().map(|a| AdaptiveDto {
                    quantile_step: a.quantile_step,
                    drawdown_step: a.drawdown_step,
                    quantile_level: a
                        .quantile_level
                        .iter()
                        .map(|(h, l)| (h.to_string(), l.clone()))
                        .collect(),
                    miscoverage_factor: m
                        .risk
                        .iter()
                        .flat_map(|risk| &risk.model.windows)
                        .map(|w| (w.tau.to_string(), w.miscoverage_factor))
                        .collect(),
                    blend_as_served_at: m
                        .horizons
                        .iter()
                        .copied()
                        .filter(|&h| a.blends_as_served(h))
                        .collect(),
                    shrink_as_served: a.shrink_as_served,
                    shortage_stack: a.shortage_stack,
                    har_guard: a.har_guard,
                    blend_window_max_days: a.blend_window_max_days,
                }),
            }),
            term_structure: m
                .term_structure
                .iter()
                .map(|(to, from)| (to.to_string(), *from))
                .collect(),
            anomaly_detector: None,
        }
    }
}

/// Loads an artifact on the CPU (refusing one without a risk calibration unless
/// `allow_uncalibrated`, see [`volcast_model::artifact::check_calibration`]) and runs one forward pass of each batch size the queue will use
/// at its extremes, so the first request pays no warm-up.
///
/// # Errors
/// [`ArtifactError`] when the artifact is missing or does not fit this build.
pub fn load_and_warm(
    path: &Path,
    max_batch: usize,
    allow_uncalibrated: bool,
) -> Result<(ModelInfo, LoadedModel), ArtifactError> {
    let device = volcast_model::device::select(volcast_model::device::DeviceChoice::Cpu)
        .map(|s| s.device)
        .map_err(|e| ArtifactError::Incompatible {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let model = LoadedModel::load(path, &device)?;
    volcast_model::artifact::check_calibration(&model.dir, &model.metadata, allow_uncalibrated)?;
    let info = ModelInfo::of(&model);
    let dummy = ModelInput {
        statics: [0.0; volcast_core::features::N_STATIC],
        sequence: vec![0.0; info.metadata.features.window * N_CHANNELS],
    };
    for n in [1, max_batch.max(1)] {
        let out = model.predict(&vec![dummy.clone(); n]);
        if out.len() != n {
            return Err(ArtifactError::Incompatible {
                path: path.to_owned(),
                message: format!("warm-up forward pass returned {} rows for {n}", out.len()),
            });
        }
    }
    Ok((info, model))
}
