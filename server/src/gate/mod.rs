//! The champion/challenger gate: once a day, on the forecast ledger alone, it decides whether the
//! service serves the model's policy or the fallback, HAR's variance with HAR's own calibrated
//! drawdown rule (what every risk answer's `derivation.har_calibrated` already computes).
//!
//! The rule ([`GateRule::DEFAULT`], README "Continuous validation"), on the scored entries whose
//! origins fall in the trailing [`GateRule::window_days`] days, pooled over assets:
//! - **to the fallback** when, at some horizon with at least [`GateRule::min_days`] days of
//!   scored origins, the model's QLIKE is significantly worse than HAR's (the Diebold-Mariano
//!   statistic of the daily cross-sectional mean loss differences above [`GateRule::switch_dm`],
//!   5% two-sided: assets move together, so each day counts once), or when the model's LT
//!   breaches at the default alpha exceed `1 - alpha`, Kupiec's test rejects at
//!   [`GateRule::switch_kupiec_p`], and the fallback's LT was breached less often on the same
//!   window ([`GateRule::breaches_vs_fallback`]: a switch must buy safety);
//! - **back to the model** after at least [`GateRule::min_dwell_days`] on the fallback, when no
//!   horizon's DM statistic is above [`GateRule::recover_dm`] and the breaches no longer exceed
//!   `1 - alpha` with Kupiec's p below [`GateRule::recover_kupiec_p`] (or no longer exceed the
//!   fallback's).
//!
//! The thresholds differ each way and the fallback lasts a week at least, so the gate does not
//! flap. The ledger keeps the model's forecasts and breaches while the fallback is served, which
//! is how it can recover. Each horizon is scored as its own window closes (the breaches and the
//! 4 h horizon a few hours after the origin, 168 h a week after), so a regime change shows in the
//! gate's window at the next day's pass at the short horizons and in the breaches.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use volcast_core::time::{DAY_MS, format_ms};

pub use crate::dto::policy::{FALLBACK_HAR, MODEL, PolicyStatus};
use crate::dto::validation::{HorizonSkill, ValidationWindow};

mod state;

pub use state::{GateState, Regated, regate};

/// The gate's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateRule {
    /// Days of origins the decision reads.
    pub window_days: i64,
    /// Fewest days of scored origins at a horizon (or LT checks) for it to count.
    pub min_days: usize,
    /// DM statistic (model minus HAR QLIKE) above which the model is significantly worse.
    pub switch_dm: f64,
    /// DM statistic every horizon must be at or below to switch back.
    pub recover_dm: f64,
    /// Kupiec p below which excess breaches switch to the fallback.
    pub switch_kupiec_p: f64,
    /// Kupiec p below which excess breaches keep the fallback.
    pub recover_kupiec_p: f64,
    /// Fewest days on the fallback before switching back.
    pub min_dwell_days: i64,
    /// Whether excess breaches count only when the model's LT was breached more often than the
    /// fallback's (HAR's calibrated rule) on the same window: a switch must buy safety.
    pub breaches_vs_fallback: bool,
    /// Whether each horizon is gated on its own ([`GateState::step`]): a horizon's variance is
    /// served from HAR while the model loses there, and the risk policy falls back on excess
    /// breaches or while the liquidation window's horizon ([`DEFAULT_TAU`](volcast_core::policy::DEFAULT_TAU)) is on HAR.
    pub per_horizon: bool,
    /// Whether each horizon's figures read the entries whose own window has closed (the 4 h
    /// horizon's and the breaches' a few hours after the origin), not only those whose longest
    /// window has. What the live ledger does (it scores each horizon as its window closes), so
    /// [`regate`] reproduces the service with it on; off, it replays the service before that.
    pub score_as_windows_close: bool,
}

impl GateRule {
    /// The service's rule. Its thresholds were fixed before any replay was scored; the
    /// comparison of breaches with the fallback's, and scoring each horizon as its window
    /// closes, were adopted on the replays of the three walk-forward folds, each by a rule set
    /// before they were scored (README "Continuous validation").
    pub const DEFAULT: Self = Self {
        window_days: 30,
        min_days: 20,
        switch_dm: 1.96,
        recover_dm: 1.0,
        switch_kupiec_p: 0.05,
        recover_kupiec_p: 0.20,
        min_dwell_days: 7,
        breaches_vs_fallback: true,
        per_horizon: false,
        score_as_windows_close: true,
    };
}

/// A switch the gate made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Switch {
    /// When (the daily origin it was decided at), Unix ms.
    pub at: i64,
    /// The policy switched to.
    pub policy: String,
    /// The horizon switched, hours, where the gate judges each horizon on its own (absent: the
    /// risk policy, and with the whole-policy rule every horizon with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_hours: Option<usize>,
    /// Why.
    pub reason: String,
}

impl From<(i64, String, String)> for Switch {
    /// A switch as the store keeps it: (time, policy, reason).
    fn from((at, policy, reason): (i64, String, String)) -> Self {
        Self {
            at,
            policy,
            horizon_hours: None,
            reason,
        }
    }
}

impl Switch {
    /// The status it sets.
    #[must_use]
    pub fn status(&self) -> PolicyStatus {
        PolicyStatus {
            name: self.policy.clone(),
            since: Some(format_ms(self.at)),
            reason: self.reason.clone(),
        }
    }
}

/// Why the model fails the rule at horizon `h` at DM threshold `dm` (None: it does not, or the
/// horizon has too few days of scored origins to judge).
fn horizon_failure(rule: &GateRule, h: &HorizonSkill, dm: f64) -> Option<String> {
    if h.origin_days < rule.min_days {
        return None;
    }
    let (d, m, g) = (h.dm_daily_vs_har?, h.qlike_model?, h.qlike_har?);
    (d > dm).then(|| {
        format!(
            "at {} h the model's QLIKE {m:.4} is worse than HAR's {g:.4} over {} points on {} \
             days (DM of the daily means {d:.2} > {dm})",
            h.horizon_hours, h.points, h.origin_days
        )
    })
}

/// Why the model's LT fails the rule on `window` at Kupiec threshold `kupiec_p` (None: it
/// does not).
fn breach_failure(rule: &GateRule, window: &ValidationWindow, kupiec_p: f64) -> Option<String> {
    let r = window.risk.as_ref()?;
    if r.origin_days < rule.min_days
        || r.breach_rate <= r.expected_rate
        || !r.kupiec_p_value.is_some_and(|p| p < kupiec_p)
    {
        return None;
    }
    let fallback_rate = (r.har_points > 0).then(|| r.har_breaches as f64 / r.har_points as f64);
    let safer = fallback_rate.is_none_or(|f| r.breach_rate > f);
    if rule.breaches_vs_fallback && !safer {
        return None;
    }
    let versus = if rule.breaches_vs_fallback {
        fallback_rate.map_or_else(String::new, |f| {
            format!(", the fallback's {:.2}% on the same window", 100.0 * f)
        })
    } else {
        String::new()
    };
    Some(format!(
        "the model's LT was breached {} times in {} ({:.2}% against {:.2}% at alpha {}; Kupiec p \
         {:.4} < {kupiec_p}{versus})",
        r.breaches,
        r.points,
        100.0 * r.breach_rate,
        100.0 * r.expected_rate,
        r.alpha,
        r.kupiec_p_value.unwrap_or(f64::NAN),
    ))
}

/// Why the model fails the rule on `window` at thresholds `dm` and `kupiec_p` (empty: it
/// does not).
fn failures(rule: &GateRule, window: &ValidationWindow, dm: f64, kupiec_p: f64) -> Vec<String> {
    window
        .horizons
        .iter()
        .filter_map(|h| horizon_failure(rule, h, dm))
        .chain(breach_failure(rule, window, kupiec_p))
        .collect()
}

/// The gate's decision at the daily origin `day_ms`, serving `current` (switched at `since_ms`),
/// with the ledger's figures over the rule's trailing window: the switch to make, if any.
#[must_use]
pub fn decide(
    rule: &GateRule,
    current: &PolicyStatus,
    since_ms: Option<i64>,
    window: &ValidationWindow,
    day_ms: i64,
) -> Option<Switch> {
    let span = format!("over the last {} days of scored forecasts", rule.window_days);
    if current.is_fallback() {
        if since_ms.is_some_and(|s| day_ms - s < rule.min_dwell_days * DAY_MS) {
            return None;
        }
        // Recovery needs evidence: every horizon, and the LT's breaches, judged on enough days
        // (a window with no scored entry at all, after an outage, proves nothing).
        let enough = !window.horizons.is_empty()
            && window.horizons.iter().all(|h| h.origin_days >= rule.min_days)
            && window
                .risk
                .as_ref()
                .is_some_and(|r| r.origin_days >= rule.min_days);
        let still = failures(rule, window, rule.recover_dm, rule.recover_kupiec_p);
        (enough && still.is_empty()).then(|| Switch {
            at: day_ms,
            policy: MODEL.into(),
            horizon_hours: None,
            reason: format!(
                "the model recovered {span}: no horizon's DM statistic above {} and no excess \
                 LT breaches at Kupiec p < {}",
                rule.recover_dm, rule.recover_kupiec_p
            ),
        })
    } else {
        let failing = failures(rule, window, rule.switch_dm, rule.switch_kupiec_p);
        (!failing.is_empty()).then(|| Switch {
            at: day_ms,
            policy: FALLBACK_HAR.into(),
            horizon_hours: None,
            reason: format!("{span}, {}", failing.join("; ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::validation::RiskCalibrationCheck;

    pub(super) fn window(dm: f64, breaches: usize) -> ValidationWindow {
        ValidationWindow {
            days: 30,
            from: String::new(),
            to: String::new(),
            entries: 1000,
            horizons: vec![HorizonSkill {
                horizon_hours: 24,
                points: 1000,
                qlike_model: Some(0.4),
                qlike_har: Some(0.38),
                // The model loses clearly to HAR operated whatever `dm`: the gate must read
                // only its comparison with HAR, what the fallback would serve.
                qlike_har_operated: Some(0.3),
                baseline: "har_operated".into(),
                qlike_ratio: Some(0.4 / 0.3),
                dm_statistic: None,
                dm_p_value: None,
                origin_days: 25,
                dm_daily_statistic: Some(9.9),
                dm_daily_vs_har: Some(dm),
                qlike_served: None,
                shortage_points: 0,
                shortage_base_rate: None,
                shortage_brier: None,
                shortage_roc_auc: None,
                coverage: Vec::new(),
            }],
            risk: Some(RiskCalibrationCheck {
                alpha: 0.99,
                tau_hours: 4,
                points: 1000,
                origin_days: 25,
                breaches,
                breach_rate: breaches as f64 / 1000.0,
                expected_rate: 0.01,
                kupiec_p_value: volcast_core::scoring::kupiec_p_value(breaches, 1000, 0.01),
                har_points: 1000,
                har_breaches: 10,
                served_points: 1000,
                served_breaches: breaches,
            }),
        }
    }

    #[test]
    fn the_gate_switches_on_significance_and_back_with_hysteresis() {
        // The breaches judged by Kupiec's test alone, as the issue words the rule.
        let rule = GateRule {
            breaches_vs_fallback: false,
            ..GateRule::DEFAULT
        };
        let model = PolicyStatus::model();
        // Worse but not significantly: stays.
        assert_eq!(decide(&rule, &model, None, &window(1.5, 10), 0), None);
        // Significantly worse: switches, and says why.
        let s = decide(&rule, &model, None, &window(2.5, 10), 0).unwrap();
        assert_eq!(s.policy, FALLBACK_HAR);
        assert!(s.reason.contains("daily means 2.50"), "{}", s.reason);
        // Too many breaches (25 in 1000 against 10 expected): switches.
        let s = decide(&rule, &model, None, &window(0.0, 25), 0).unwrap();
        assert!(s.reason.contains("breached 25 times"), "{}", s.reason);
        // Too few breaches is the safe side: no switch.
        assert_eq!(decide(&rule, &model, None, &window(0.0, 0), 0), None);
        // Counted against the fallback's breaches (10 in 1000 here): 25 still switch, but not
        // when the fallback was breached as often.
        let versus = GateRule {
            breaches_vs_fallback: true,
            ..rule
        };
        let s2 = decide(&versus, &model, None, &window(0.0, 25), 0).unwrap();
        assert!(s2.reason.contains("the fallback's 1.00%"), "{}", s2.reason);
        let mut worse_fallback = window(0.0, 25);
        worse_fallback.risk.as_mut().unwrap().har_breaches = 25;
        assert_eq!(decide(&versus, &model, None, &worse_fallback, 0), None);
        let fallback = s.status();
        // Recovered, but within the week: stays on the fallback.
        assert_eq!(
            decide(&rule, &fallback, Some(0), &window(0.0, 10), 6 * DAY_MS),
            None
        );
        // Recovered after a week: back.
        let back = decide(&rule, &fallback, Some(0), &window(0.0, 10), 7 * DAY_MS).unwrap();
        assert_eq!(back.policy, MODEL);
        // Between the thresholds (DM 1.5): the fallback holds, the model would not have switched.
        assert_eq!(
            decide(&rule, &fallback, Some(0), &window(1.5, 10), 30 * DAY_MS),
            None
        );
        // Too few points to judge: nothing moves.
        let mut thin = window(3.0, 40);
        thin.horizons[0].origin_days = 19;
        thin.risk.as_mut().unwrap().origin_days = 19;
        assert_eq!(decide(&rule, &model, None, &thin, 0), None);
        assert_eq!(decide(&rule, &fallback, Some(0), &thin, 30 * DAY_MS), None);
        // No evidence at all (a window with no scored entry, after an outage): the fallback
        // holds; nor with the horizons judged but the LT's breaches on too few days.
        let mut empty = window(0.0, 0);
        empty.horizons.clear();
        empty.risk = None;
        assert_eq!(decide(&rule, &fallback, Some(0), &empty, 40 * DAY_MS), None);
        let mut thin_risk = window(0.0, 10);
        thin_risk.risk.as_mut().unwrap().origin_days = 19;
        assert_eq!(decide(&rule, &fallback, Some(0), &thin_risk, 40 * DAY_MS), None);
    }
}
