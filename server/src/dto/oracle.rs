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
    /// The same in basis points, as on-chain configurations hold it, rounded toward safety:
    /// the liquidation threshold and max LTV down, the bonus up, and the threshold a basis point
    /// lower where that is needed for `LT (1 + LB) <= 1` to hold in basis points too.
    pub new_value_bps: u32,
    /// The caller's previous value (`previous` of the request), when given.
    pub previous_value: Option<f64>,
    /// The same in basis points, rounded to the nearest.
    pub previous_value_bps: Option<u32>,
    /// The decision behind it (`GET /v1/decisions/{id}`); null when the decision was not
    /// logged (the service runs without a store, or with `--decision-log false`).
    pub reference_id: Option<String>,
    /// When it was decided, Unix seconds: its decision's `at` (`GET /v1/decisions/{id}`),
    /// floored to the second.
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
    /// Liquidation window used, hours (`derivation.tau_hours`: the one asked for, or longer
    /// where an active anomaly flag lengthened it under `--anomaly-action tighten`).
    pub tau_hours: f64,
    /// Whether the step limit held this update's value back (the threshold's or max LTV's: it
    /// differs from `derivation.unbounded`; never the bonus, which the step does not bound).
    /// Until stop 65 the asset's flag, on all three updates.
    pub step_limited: bool,
    /// On the max LTV update: whether max LTV moved further than the step allows, because the
    /// user's buffer under LT wins over it (`derivation.step_overridden` says why); absent when
    /// not (until stop 65 on all three updates).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub step_overridden: bool,
}

/// Answer of the update routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdatesResponse {
    /// Three per asset (liquidation threshold, max LTV, liquidation bonus), in request order.
    pub updates: Vec<RiskParameterUpdate>,
}

/// A fraction in basis points, rounded by `round` (`f64::round`, `floor` or `ceil`). A hair of
/// tolerance keeps a fraction that is a whole number of basis points (0.8123, held as
/// 8122.999.. after the product) at that number.
fn bps_by(x: f64, round: fn(f64) -> f64) -> u32 {
    let scaled = x.clamp(0.0, 1.0) * 10_000.0;
    let nearest = scaled.round();
    let v = if (scaled - nearest).abs() < 1e-6 {
        nearest
    } else {
        round(scaled)
    };
    // In [0, 10000]: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = v as u32;
    v
}

/// The liquidation threshold, max LTV and bonus in basis points, rounded toward safety: LT and
/// max LTV down, LB up (so it still covers the slippage), then LT lowered until
/// `LT (10000 + LB)` is at most `10000 * 10000` and at most the fractions' `LT (1 + LB)` in the
/// same units (so `LT (1 + LB) <= 1 - D`, where the fractions keep it, holds in basis points too);
/// max LTV at most LT less the fractions' buffer `LT - max LTV` rounded up, so the user's buffer
/// under LT is never narrower in basis points than served (until stop 62 max LTV was floored
/// on its own and lowered by as many basis points as LT was, which could narrow the buffer by
/// up to one: LT 0.80009 and max LTV 0.70000 gave 8000 and 7000).
fn safe_bps(lt: f64, max_ltv: f64, bonus: f64) -> (u32, u32, u32) {
    const WHOLE: u64 = 10_000 * 10_000;
    let lt_fraction = lt.clamp(0.0, 1.0);
    let lb = bps_by(bonus, f64::ceil);
    // The fractions' product in units of 1e-8, with a hair of tolerance for rounding: in
    // [0, 2e8], so the cast cannot truncate.
    let product = (lt_fraction * (1.0 + bonus.clamp(0.0, 1.0)) * 1e8 + 1e-6).floor();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bound = (product as u64).min(WHOLE);
    let floored = bps_by(lt, f64::floor);
    let mut lt = floored;
    while lt > 0 && u64::from(lt) * u64::from(10_000 + lb) > bound {
        lt -= 1;
    }
    let buffer = bps_by(lt_fraction - max_ltv.clamp(0.0, 1.0), f64::ceil);
    let ltv = bps_by(max_ltv, f64::floor).min(lt.saturating_sub(buffer));
    (lt, ltv, lb)
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
                let (lt_bps, ltv_bps, lb_bps) =
                    safe_bps(p.liquidation_threshold, p.max_ltv, p.liquidation_bonus);
                // Per value: held back by the step where it differs from the unbounded one.
                let held = |new: f64, unbounded: f64| d.step_limited && new != unbounded;
                let lt_held = held(p.liquidation_threshold, d.unbounded.liquidation_threshold);
                let ltv_held = held(p.max_ltv, d.unbounded.max_ltv);
                [
                    (
                        "liquidation_threshold",
                        p.liquidation_threshold,
                        lt_bps,
                        previous.and_then(|x| x.liquidation_threshold),
                        (lt_held, false),
                    ),
                    (
                        "max_ltv",
                        p.max_ltv,
                        ltv_bps,
                        previous.and_then(|x| x.max_ltv),
                        (ltv_held, d.step_overridden.is_some()),
                    ),
                    (
                        "liquidation_bonus",
                        p.liquidation_bonus,
                        lb_bps,
                        None,
                        (false, false),
                    ),
                ]
                .into_iter()
                .map(
                    move |(kind, new, new_bps, old, (step_limited, step_overridden))| RiskParameterUpdate {
                        market: item.asset.clone(),
                        update_type: kind.to_owned(),
                        new_value: new,
                        new_value_bps: new_bps,
                        previous_value: old,
                        previous_value_bps: old.map(|x| bps_by(x, f64::round)),
                        reference_id: item.decision_id.clone(),
                        timestamp: timestamp_s,
                        additional_data: UpdateData {
                            model_id: model.id.clone(),
                            model_hash: model.hash.clone(),
                            policy: d.policy.name.clone(),
                            origin: item.origin.clone(),
                            alpha: d.alpha,
                            tau_hours: d.tau_hours,
                            step_limited,
                            step_overridden,
                        },
                    },
                )
            })
            .collect();
        Self { updates }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_points_round_toward_safety_and_keep_the_invariant() {
        // The threshold at its cap for a 5% bonus: 0.952381 would round to 9524, and
        // 9524 x 1.05 = 10000.2 bps, over 1.
        // Max LTV keeps the buffer under LT: 0.952381 - 0.9 is 523.81 bps, so 524.
        assert_eq!(safe_bps(1.0 / 1.05, 0.9, 0.05), (9523, 8999, 500));
        // Whole basis points stay as they are.
        assert_eq!(safe_bps(0.8123, 0.75, 0.0612), (8123, 7500, 612));
        // Max LTV never above LT; blocked liquidation (LT = 0, LB = 1) stays so.
        assert_eq!(safe_bps(0.5, 0.5, 0.05), (5000, 5000, 500));
        assert_eq!(safe_bps(0.0, 0.0, 1.0), (0, 0, 10_000));
        // Over a grid of bonuses, each at its largest threshold: LT (1 + LB) <= 1 in basis
        // points, LT and max LTV not above their values, LB not below.
        for i in 0..2000_u32 {
            let bonus = 0.01 + f64::from(i) * 0.000_123_7;
            let lt = 1.0 / (1.0 + bonus);
            let (lt_bps, ltv_bps, lb_bps) = safe_bps(lt, lt - 0.05, bonus);
            assert!(
                u64::from(lt_bps) * u64::from(10_000 + lb_bps) <= 100_000_000,
                "{bonus}"
            );
            assert!(f64::from(lt_bps) <= lt * 10_000.0 + 1e-6, "{bonus}");
            assert!(f64::from(lb_bps) >= bonus * 10_000.0 - 1e-6, "{bonus}");
            assert!(ltv_bps <= lt_bps);
            // The user's buffer (0.05 here) keeps its width in basis points.
            assert!(
                f64::from(lt_bps - ltv_bps) >= 0.05f64 * 10_000.0 - 1e-6,
                "{bonus}"
            );
            assert!(
                lt * 10_000.0 - f64::from(lt_bps) < 2.0,
                "{bonus}: at most a basis point lower"
            );
        }
    }

    /// The user's buffer `LT - max LTV` is never narrower in basis points than served, over a
    /// grid of thresholds and buffers that are not whole basis points (the reviewer's case:
    /// LT 0.80009 and max LTV 0.70000 gave 8000 and 7000, a buffer of 1000 for 1000.9).
    #[test]
    fn basis_points_never_narrow_the_users_buffer() {
        assert_eq!(safe_bps(0.800_09, 0.7, 0.05), (8000, 6999, 500));
        for i in 0..500_u32 {
            for j in 0..40_u32 {
                let lt = 0.3 + f64::from(i) * 0.001_201_3;
                let buffer = f64::from(j) * 0.004_571_3;
                let max_ltv = (lt - buffer).max(0.0);
                let (lt_bps, ltv_bps, _) = safe_bps(lt, max_ltv, 0.05);
                assert!(
                    f64::from(lt_bps - ltv_bps) >= (lt - max_ltv) * 10_000.0 - 1e-6,
                    "LT {lt}, max LTV {max_ltv}: {lt_bps} and {ltv_bps}"
                );
                assert!(f64::from(ltv_bps) <= max_ltv * 10_000.0 + 1e-6);
                assert!(
                    max_ltv * 10_000.0 - f64::from(ltv_bps) < 3.0,
                    "less than three bps lower"
                );
            }
        }
    }

    /// Rounding the bonus up must not lift `LT (1 + LB)` over `1 - D`: with D 0.10 and LB
    /// 0.05005, LT 0.857102 floors to 8571 and LB ceils to 501, and 8571 x 10501 is 0.90004
    /// of 1e8, over 0.9.
    #[test]
    fn basis_points_keep_the_drawdown_invariant() {
        // LT a basis point under its floor: max LTV goes down with it, so the buffer under LT
        // keeps its width.
        assert_eq!(safe_bps(0.9 / 1.050_05, 0.8, 0.050_05), (8570, 7998, 501));
        for i in 0..400_u32 {
            for j in 0..50_u32 {
                let d = 0.001 + f64::from(i) * 0.002_37;
                let bonus = f64::from(j) * 0.003_71;
                let lt = (1.0 - d) / (1.0 + bonus);
                let (lt_bps, _, lb_bps) = safe_bps(lt, 0.0, bonus);
                let room = ((1.0 - d) * 1e8 + 1e-6).floor();
                #[allow(clippy::cast_precision_loss)]
                let product = (u64::from(lt_bps) * u64::from(10_000 + lb_bps)) as f64;
                assert!(product <= room, "D {d}, LB {bonus}: {lt_bps} x {lb_bps}");
                assert!(lt * 10_000.0 - f64::from(lt_bps) < 2.0, "D {d}, LB {bonus}");
            }
        }
    }
}
