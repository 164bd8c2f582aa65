//! The adaptive settings that artifacts calibrated from now on declare ([`Adaptive`]), each
//! chosen on the walk-forward folds.

#[cfg(doc)]
use crate::artifact::Adaptive;

/// Step of each RV quantile's level per completed forecast in artifacts calibrated from now on
/// ([`Adaptive::quantile_step`]): of 0, 0.0005 and 0.002, the one with the smallest worst
/// coverage gap over the walk-forward folds (README, "Adaptive calibration").
pub const DEFAULT_QUANTILE_STEP: f64 = 0.0005;
/// Step of the drawdown's log miscoverage factor per completed window ([`Adaptive::drawdown_step`]):
/// of 0, 0.0002 and 0.0005, 0 is the one that keeps every fold's breach rate in [0.7%, 1.3%] and
/// the pooled Kupiec p above 0.05 with the highest mean LT (README, "Adaptive calibration"); the
/// mechanism stays available (`--drawdown-step`).
pub const DEFAULT_DRAWDOWN_STEP: f64 = 0.0;

/// Horizons whose daily weight of the network against HAR is chosen on the forecasts as served
/// ([`Adaptive::blend_as_served_at`]) in artifacts calibrated from now on: 168 h, adopted at stop
/// 31 by a rule written before its one look at the walk-forward folds (README, "Blend weights on
/// the forecasts as served").
pub const DEFAULT_BLEND_AS_SERVED_AT: [usize; 1] = [168];

/// Whether artifacts calibrated from now on also choose the power of the variance correction as
/// served ([`Adaptive::shrink_as_served`]): not adopted, its one look at the walk-forward folds
/// made the week worse in every fold (README, walk-forward item 11); the mechanism stays
/// available (`--shrink-as-served`).
pub const DEFAULT_SHRINK_AS_SERVED: bool = false;

/// Whether artifacts calibrated from now on fit the daily logistic stack of the shortage
/// probability ([`Adaptive::shortage_stack`]): not adopted, its one look at the walk-forward
/// folds lost ROC AUC and Brier at a week in 2021 (README, walk-forward item 15); the mechanism
/// stays available (`--shortage-stack`).
pub const DEFAULT_SHORTAGE_STACK: bool = false;

/// Whether artifacts calibrated from now on guard the blend with HAR ([`Adaptive::har_guard`]):
/// not adopted, its one look at the walk-forward folds lowered the week's mean by less than its
/// rule asked and raised 4 h's (README, walk-forward item 18); the mechanism stays available
/// (`--har-guard`).
pub const DEFAULT_HAR_GUARD: bool = false;

/// The cap of the HAR weight's growing window in artifacts calibrated from now on
/// ([`Adaptive::blend_window_max_days`]): none, the weight's window is the corrections'
/// (README, walk-forward item 20); the mechanism stays available (`--blend-window-max-days`).
pub const DEFAULT_BLEND_WINDOW_MAX_DAYS: Option<usize> = None;
