//! `GET /v1/model/validation`: how the served model's forecasts, recorded daily in the ledger,
//! fared once their windows passed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::ModelRef;

/// The model's record over trailing windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "model": {"id": "e511b0d43982c4cf", "hash": "d08e..."}, "now": "2026-12-02T14:05:00Z", "asset": null,
    "windows": [{"days": 30, "from": "2026-11-02T00:00:00Z", "to": "2026-12-02T14:05:00Z", "entries": 2900,
        "horizons": [{"horizon_hours": 24, "points": 2850, "qlike_model": 0.36, "qlike_har": 0.38,
                      "qlike_har_operated": 0.37, "baseline": "har_operated",
                      "qlike_ratio": 0.973, "dm_statistic": -1.6, "dm_p_value": 0.11, "origin_days": 23,
                      "dm_daily_statistic": -1.1, "dm_daily_vs_har": -1.4, "qlike_served": 0.36,
                      "shortage_points": 2700, "shortage_base_rate": 0.08, "shortage_brier": 0.066,
                      "shortage_roc_auc": 0.71,
                      "coverage": [{"level": 0.95, "covered": 0.948}]}],
        "risk": {"alpha": 0.99, "tau_hours": 4, "points": 2890, "origin_days": 23, "breaches": 27, "breach_rate": 0.0093,
                 "expected_rate": 0.01, "kupiec_p_value": 0.71, "har_points": 2890, "har_breaches": 31,
                 "served_points": 2890, "served_breaches": 27}}]
}))]
pub struct ValidationResponse {
    /// The served model. The figures pool the entries of every model id served in the window
    /// (the daily recalibration makes a new id each day).
    pub model: ModelRef,
    /// The service's time, RFC 3339.
    pub now: String,
    /// The asset asked for; absent when the figures are pooled over assets.
    pub asset: Option<String>,
    /// The trailing windows: 30 and 120 days of origins.
    pub windows: Vec<ValidationWindow>,
}

/// Skill and calibration over one trailing window, pooled over assets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidationWindow {
    /// Days of origins.
    pub days: i64,
    /// First origin counted, RFC 3339.
    pub from: String,
    /// Last origin counted, RFC 3339.
    pub to: String,
    /// Scored ledger entries (asset and origin) in the window.
    pub entries: usize,
    /// Per served horizon.
    pub horizons: Vec<HorizonSkill>,
    /// The risk policy's drawdowns against the falls that followed.
    pub risk: Option<RiskCalibrationCheck>,
}

/// Volatility skill at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HorizonSkill {
    /// Horizon, hours.
    pub horizon_hours: usize,
    /// Points where the model, HAR and the realized variance all exist.
    pub points: usize,
    /// Mean QLIKE of the model.
    pub qlike_model: Option<f64>,
    /// Mean QLIKE of HAR on the same points.
    pub qlike_har: Option<f64>,
    /// Mean QLIKE of HAR operated as the model is (SPEC, "Operated comparison"): HAR's forecast
    /// times `mean(RV / F)` of its own recorded forecasts, pooled over assets, over the
    /// artifact's trailing window of days of origins whose windows had ended by then (fewer days
    /// while the ledger is younger). Absent where the served artifact has no daily correction.
    pub qlike_har_operated: Option<f64>,
    /// What the model is compared with: the better (lower mean QLIKE) of `har` and
    /// `har_operated` on these points.
    pub baseline: String,
    /// Model over the baseline (below 1: the model is better).
    pub qlike_ratio: Option<f64>,
    /// Diebold-Mariano statistic of model minus baseline losses, pooled over assets (Newey-West
    /// lag `ceil(H/24)`, SPEC's; negative: the model is better).
    pub dm_statistic: Option<f64>,
    /// Its two-sided p-value.
    pub dm_p_value: Option<f64>,
    /// Days of origins among the points.
    pub origin_days: usize,
    /// Diebold-Mariano statistic of the daily means of model minus baseline losses (each day
    /// counted once: assets move together; lag `ceil(H/24)`).
    pub dm_daily_statistic: Option<f64>,
    /// The same against HAR as fitted, what the fallback serves: what the gate reads
    /// (falling back is only worth it where the model loses to what would replace it), with
    /// the lag its thresholds were set with, `ceil(H/24) - 1` (the days daily origins' windows
    /// overlap).
    pub dm_daily_vs_har: Option<f64>,
    /// Mean QLIKE of what was served (the model's, or HAR's on the days the gate held the
    /// fallback) on the same points.
    pub qlike_served: Option<f64>,
    /// Points with a shortage label and the model's probability.
    pub shortage_points: usize,
    /// Share of them with a shortage.
    pub shortage_base_rate: Option<f64>,
    /// Brier score of the model's shortage probability.
    pub shortage_brier: Option<f64>,
    /// ROC AUC of the model's shortage probability (None without both classes).
    pub shortage_roc_auc: Option<f64>,
    /// Share of realized variances at or below each quantile.
    pub coverage: Vec<QuantileCoverage>,
}

/// One quantile level's coverage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuantileCoverage {
    /// The level.
    pub level: f64,
    /// Share covered (None without points).
    pub covered: Option<f64>,
}

/// LT breaches: the fall over `tau_hours` after the origin above the served D.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RiskCalibrationCheck {
    /// Quantile level of the drawdown (the service's default).
    pub alpha: f64,
    /// Hours over which the fall is measured (the default liquidation window).
    pub tau_hours: usize,
    /// Points with a complete window.
    pub points: usize,
    /// Days of origins among them.
    pub origin_days: usize,
    /// Falls above the model's own D, also on days the fallback was served
    /// (`served_breaches` counts those above the D served).
    pub breaches: usize,
    /// `breaches / points`.
    pub breach_rate: f64,
    /// `1 - alpha`.
    pub expected_rate: f64,
    /// Kupiec's unconditional-coverage p-value.
    pub kupiec_p_value: Option<f64>,
    /// Points with HAR's calibrated D.
    pub har_points: usize,
    /// Falls above HAR's calibrated D.
    pub har_breaches: usize,
    /// Points with a served D (the model's, or HAR's calibrated one on the fallback).
    pub served_points: usize,
    /// Falls above the served D.
    pub served_breaches: usize,
}
