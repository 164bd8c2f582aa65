//! What the service says about itself: the model card of `GET /v1/model` (scores, data, features,
//! corrections in force) and the health answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ModelRef, anomaly};

/// Scores at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HorizonMetricsDto {
    /// Points scored.
    pub n_points: usize,
    /// QLIKE per forecaster.
    pub qlike: BTreeMap<String, f64>,
    /// Shortage ROC AUC per forecaster.
    pub shortage_roc_auc: BTreeMap<String, f64>,
    /// Quantile coverage per level.
    pub coverage: BTreeMap<String, f64>,
}

/// A training data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DataFileDto {
    /// The file's name (its directory on the training machine is not shown).
    pub path: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Candles.
    pub rows: usize,
    /// First open time, RFC 3339.
    pub first: String,
    /// Last open time, RFC 3339.
    pub last: String,
}

/// The model's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeaturesDto {
    /// Feature definitions version.
    pub version: u32,
    /// Static features.
    pub static_names: Vec<String>,
    /// Sequence channels.
    pub channel_names: Vec<String>,
    /// Hours in the sequence.
    pub window_hours: usize,
}

/// Answer of `GET /v1/model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelCard {
    /// Id and hash.
    pub model: ModelRef,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Code version that trained it.
    pub code_version: String,
    /// Horizons, hours.
    pub horizons: Vec<usize>,
    /// RV quantile levels.
    pub quantile_levels: Vec<f64>,
    /// Candles a request needs per asset (the origin and the hours before it).
    pub history_hours: usize,
    /// Open time of the last candle fitting used.
    pub fit_until: String,
    /// First and last training candle (open times, RFC 3339).
    pub training_range: Option<[String; 2]>,
    /// Training files.
    pub training_data: Vec<DataFileDto>,
    /// Early-stopping holdout metrics per horizon (of an ensemble, per member: `member-0`, ...,
    /// and the networks trained apart for some horizons, `apart-member-0`, ...),
    /// of the networks that chose the number of epochs, so out of sample; where the config trains
    /// until the fit end (`refit_through_holdout`), the served networks then trained on the
    /// holdout too.
    pub holdout: BTreeMap<String, HorizonMetricsDto>,
    /// Out-of-sample validation metrics per horizon.
    pub validation: BTreeMap<String, HorizonMetricsDto>,
    /// Inputs.
    pub features: FeaturesDto,
    /// Device trained on.
    pub device: String,
    /// Networks whose mean log forecasts are served: an ensemble trained with successive seeds,
    /// or 1; with networks trained apart (`networks_apart`; 6 for the shipped artifacts: three
    /// for 4 h and 24 h, three for the week) or per-horizon epochs (`per_horizon_epochs`, every
    /// member's distinct networks), each horizon served by its own.
    pub networks: usize,
    /// Historical windows `POST /v1/risk/stress` can replay (`{"kind": "replay", "name": ...}`).
    pub stress_scenarios: Vec<String>,
    /// The corrections applied to the network's variance and quantiles, and the window they were
    /// measured on; none for an artifact without them.
    pub recalibration: Option<RecalibrationDto>,
    /// Horizons whose network variance is carried from a shorter horizon's, relative to HAR:
    /// per horizon (hours, as text), the horizon it is carried from. `{"168": 24}`: the week is
    /// HAR's week times the network's next day over HAR's next day (the artifact setting
    /// `term_structure`, off in the shipped artifacts); absent: each horizon the network's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub term_structure: BTreeMap<String, usize>,
    /// The anomaly detector served beside the model (see `POST /v1/anomaly/scan`), and what an
    /// active flag does to risk parameters; none without a detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly_detector: Option<anomaly::ServedDetector>,
}

/// The corrections of the network's outputs in force (see the README, "Operation: daily
/// recalibration").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecalibrationDto {
    /// First origin of the window, RFC 3339.
    pub from: String,
    /// End of the window (every target used ended by then), RFC 3339. Refreshed daily by
    /// `calibrate --until`; an old date here means the job has stopped.
    pub until: String,
    /// Length of the trailing window the daily job uses, days; none when the corrections are
    /// fixed at training.
    pub rolling_days: Option<usize>,
    /// Multiplier of the variance forecast, per horizon (hours).
    pub variance_scale: BTreeMap<String, f64>,
    /// Multipliers of the RV quantiles, per horizon, in `quantile_levels` order.
    pub quantile_scale: BTreeMap<String, Vec<f64>>,
    /// Weight of the corrected network against the HAR baseline per horizon (hours): the
    /// variance served is `exp(w ln F + (1 - w) ln H)`. Empty for artifacts made before the
    /// blend (the network alone).
    pub har_weight: BTreeMap<String, f64>,
    /// Power at which `variance_scale` is applied per horizon (hours), where the daily job chose
    /// it with the HAR weight (`adaptive.shrink_as_served`): the network's variance is multiplied
    /// by `variance_scale^power`. Empty: the whole scale at every horizon.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variance_power: BTreeMap<String, f64>,
    /// The daily logistic stack of the shortage probability per horizon (hours), `[a, b, c]`:
    /// the probability served is `sigmoid(a + b logit(p) + c ln(clip(score, 1e-3, 1e3)))`, `p`
    /// the network's and `score` the baseline's `M_H(t) / median` (`adaptive.shortage_stack`).
    /// Empty: the network's probability at every horizon.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shortage_stack: BTreeMap<String, [f64; 3]>,
    /// Horizons (hours) where the HAR guard (`adaptive.har_guard`) serves HAR alone today,
    /// with the weight the daily rule had chosen: the rule's forecasts since the fit end have
    /// scored worse than HAR's. Empty: the rule's weight at every horizon.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub har_guarded: BTreeMap<String, f64>,
    /// Adaptive calibration in force: how the daily job moves the levels behind the RV quantiles
    /// and the drawdown quantile; none for artifacts with fixed levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveDto>,
}

/// Adaptive conformal calibration (see the README, "Adaptive calibration").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdaptiveDto {
    /// Step of each RV quantile's level per completed forecast.
    pub quantile_step: f64,
    /// Step of the drawdown's log miscoverage factor per completed window.
    pub drawdown_step: f64,
    /// Level each quantile scale was measured at, per horizon (hours), in `quantile_levels` order.
    pub quantile_level: BTreeMap<String, Vec<f64>>,
    /// Miscoverage factor per liquidation window (hours) of the risk calibration: the level
    /// served for `alpha` is `1 - (1 - alpha) m`.
    pub miscoverage_factor: BTreeMap<String, f64>,
    /// Horizons (hours) whose daily HAR weight is chosen on the forecasts as they were served
    /// (each times the correction in force at its origin) rather than re-scaled by the window's
    /// own correction; empty: none.
    #[serde(default)]
    pub blend_as_served_at: Vec<usize>,
    /// Whether, at those horizons, the daily job also chooses the power of the variance scale
    /// (`variance_power`) with the weight.
    #[serde(default)]
    pub shrink_as_served: bool,
    /// Whether the daily job fits the shortage stack (`shortage_stack`) on the trailing window.
    #[serde(default)]
    pub shortage_stack: bool,
    /// Whether the daily job guards the blend with HAR (`har_guarded`).
    #[serde(default)]
    pub har_guard: bool,
    /// Where set, the window the HAR weight is chosen on (at the horizons above) grows with the
    /// history since the fit end, from `rolling_days` up to this many days; absent: the
    /// corrections' window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blend_window_max_days: Option<usize>,
}

/// Answer of `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready`, `degraded` (ready, serving the gate's fallback policy), `loading`, or
    /// (`/readyz`, 503) `stuck` (a forward pass running longer than three request timeouts, and
    /// at least a second) or
    /// `stopped` (the inference worker has ended).
    pub status: String,
    /// The model, once loaded.
    pub model: Option<ModelRef>,
}
