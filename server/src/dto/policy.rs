//! Which policy the service serves ([`crate::gate`] decides): in every answer's model reference.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The model's policy is served.
pub const MODEL: &str = "model";
/// HAR's variance with its own calibrated drawdown rule is served.
pub const FALLBACK_HAR: &str = "fallback_har";
/// A horizon's variance served from HAR (the volatility answer's `served`, on the fallback).
pub const HAR: &str = "har";

/// Which policy is served, since when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyStatus {
    /// `model` or `fallback_har`.
    #[schema(example = "model")]
    pub name: String,
    /// When the gate last switched, RFC 3339 (absent: never).
    pub since: Option<String>,
    /// Why this policy is served.
    pub reason: String,
}

impl Default for PolicyStatus {
    fn default() -> Self {
        Self::model()
    }
}

impl PolicyStatus {
    /// The model's policy, before the gate ever switched.
    #[must_use]
    pub fn model() -> Self {
        Self {
            name: MODEL.into(),
            since: None,
            reason: "the model serves: the gate has not switched".into(),
        }
    }

    /// Whether the fallback is served.
    #[must_use]
    pub fn is_fallback(&self) -> bool {
        self.name == FALLBACK_HAR
    }
}
