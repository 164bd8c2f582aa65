//! Risk parameters as the update records risk oracles publish (one per parameter), so a steward
//! contract or a keeper consumes them without translation.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AssetRisk, ModelRef};

/// One parameter update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"market": "BTCUSDT", "update_type": "liquidation_threshold", "new_value": 0.8123, "new_value_bps": 8123, "previous_value": 0.8, "previous_value_bps": 8000, "reference_id": "dec_6f1c0e1b8d6a4c2f9e0b7a5d3c1f2e4a", "timestamp": 1_704_067_200, "additional_data": {"model_id": "693e44b5f740fc82", "model_hash": "9f2c...", "policy": "model", "origin": "2024-01-01T00:00:00Z", "alpha": 0.99, "tau_hours": 4.0, "step_limited": false}}))]
pub struct RiskParameterUpdate {
    /// The market: the asset id.
    pub market: String,
    /// `liquidation_threshold`, `max_ltv` or `liquidation_bonus`.
    pub update_type: String,
    /// The new value, a fraction.
    pub new_value: f64,
    /// The same in basis points, rounded to the nearest (as on-chain configurations hold it).
    pub new_value_bps: u32,
    /// The caller's previous value (`previous` of the request), when given.
    pub previous_value: Option<f64>,
    /// The same in basis points.
    pub previous_value_bps: Option<u32>,
    /// The decision behind it (`GET /v1/decisions/{id}`); absent when the service runs without
    /// a store.
    pub reference_id: Option<String>,
    /// When it was decided, Unix seconds.
    pub timestamp: i64,
    /// What it rests on.
    pub additional_data: UpdateData,
}

/// What an update rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdateData {
    /// Model id.
    pub model_id: String,
    /// Artifact hash.
    pub model_hash: String,
    /// The policy served (`model` or `fallback_har`).
    pub policy: String,
    /// Forecast origin, RFC 3339.
    pub origin: String,
    /// Drawdown quantile level.
    pub alpha: f64,
    /// Liquidation window asked for, hours.
    pub tau_hours: f64,
    /// Whether the step limit held the value back.
    pub step_limited: bool,
}

/// Answer of the update routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdatesResponse {
    /// Three per asset (liquidation threshold, max LTV, liquidation bonus), in request order.
    pub updates: Vec<RiskParameterUpdate>,
}

/// A fraction in basis points.
fn bps(x: f64) -> u32 {
    // Parameters are fractions in [0, 1]: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = (x.clamp(0.0, 1.0) * 10_000.0).round() as u32;
    v
}

impl UpdatesResponse {
    /// The updates of `items`, decided at `timestamp_s` by `model`.
    #[must_use]
    pub fn of(items: &[AssetRisk], model: &ModelRef, timestamp_s: i64) -> Self {
        let updates = items
            .iter()
            .flat_map(|item| {
                let p = &item.parameters;
                let d = &item.derivation;
                let previous = d.previous;
                [
                    (
                        "liquidation_threshold",
                        p.liquidation_threshold,
                        previous.and_then(|x| x.liquidation_threshold),
                    ),
                    ("max_ltv", p.max_ltv, previous.and_then(|x| x.max_ltv)),
                    ("liquidation_bonus", p.liquidation_bonus, None),
                ]
                .into_iter()
                .map(move |(kind, new, old)| RiskParameterUpdate {
                    market: item.asset.clone(),
                    update_type: kind.to_owned(),
                    new_value: new,
                    new_value_bps: bps(new),
                    previous_value: old,
                    previous_value_bps: old.map(bps),
                    reference_id: item.decision_id.clone(),
                    timestamp: timestamp_s,
                    additional_data: UpdateData {
                        model_id: model.id.clone(),
                        model_hash: model.hash.clone(),
                        policy: d.policy.name.clone(),
                        origin: item.origin.clone(),
                        alpha: d.alpha,
                        tau_hours: d.tau_hours,
                        step_limited: d.step_limited,
                    },
                })
            })
            .collect();
        Self { updates }
    }
}
