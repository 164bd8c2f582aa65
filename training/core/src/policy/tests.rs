//! The risk policy's tests: its parameters by hand, bounded changes, shortage and slippage, and invariants over random inputs.

use super::*;
use proptest::prelude::*;

use crate::drawdown::{DrawdownCalibration, WindowCalibration};

const REFLECTION: DrawdownRule<'static> = DrawdownRule::Reflection;

fn curve(v4: f64, v24: f64, v168: f64) -> VarianceCurve {
    VarianceCurve {
        points: vec![(4, v4), (24, v24), (168, v168)],
    }
}

/// A calibration with fat tails: u quantiles above the reflected normal's.
fn calibration() -> DrawdownCalibration {
    let window = |tau| WindowCalibration {
        tau,
        n: 10_000,
        quantiles: vec![(0.5, 0.8), (0.9, 1.9), (0.99, 3.9), (0.999, 8.0)],
        tail_index: 0.3,
        miscoverage_factor: 1.0,
    };
    DrawdownCalibration {
        from: String::new(),
        until: String::new(),
        stride_hours: 5,
        exponent: 0.6,
        windows: vec![window(1), window(4), window(24), window(168)],
    }
}

fn input(tau: f64) -> PolicyInput {
    PolicyInput {
        alpha: 0.99,
        tau,
        tau_user: 24.0,
        bonus: 0.05,
        bonus_margin: 0.01,
        slippage: Some(0.002),
        window: DrawdownWindow::UpToTau,
    }
}

#[test]
fn calibrated_drawdown_by_hand() {
    let c = calibration();
    let p = parameters(
        &curve(0.0004, 0.002, 0.01),
        &input(4.0),
        None,
        DrawdownRule::Calibrated(&c),
    );
    // D = 1 - exp(-u sqrt(V)^g), u(0.99) = 3.9, V(4 h) = 0.0004, g = 0.6.
    assert!((p.drawdown - (1.0 - (-3.9 * 0.02f64.powf(0.6)).exp())).abs() < 1e-12);
    assert!(p.drawdown > parameters(&curve(0.0004, 0.002, 0.01), &input(4.0), None, REFLECTION).drawdown);
}

#[test]
fn threshold_keeps_the_invariant() {
    for d in [-0.5, 0.0, 0.1, 0.99, 1.5, f64::NAN] {
        for lb in [0.0, 0.05, 0.2] {
            let lt = threshold(d, lb);
            assert!(lt * (1.0 + lb) <= 1.0 + 1e-15 && lt >= 0.0, "{d} {lb}");
        }
    }
    assert!((threshold(0.1, 0.05) - 0.9 / 1.05).abs() < 1e-15);
    assert_eq!(
        threshold(f64::NAN, 0.05),
        0.0,
        "an unknown drawdown is the whole price"
    );
}

#[test]
fn non_finite_variance_is_flagged_and_never_loosens() {
    let cal = calibration();
    for rule in [
        DrawdownRule::Calibrated(&cal),
        REFLECTION,
        DrawdownRule::PlainNormal,
    ] {
        for v in [f64::NAN, f64::INFINITY, -1e-4] {
            assert!(rule.drawdown(v, 0.99, 4.0).is_nan(), "{v}: no drawdown from it");
            let p = parameters(&curve(v, v, v), &input(4.0), None, rule);
            assert!(!p.finite, "{v}");
            assert_eq!((p.liquidation_threshold, p.max_ltv), (0.0, 0.0), "{v}");
        }
        let p = parameters(&curve(0.0004, 0.002, 0.01), &input(4.0), None, rule);
        assert!(p.finite);
    }
}

#[test]
fn policy_by_hand() {
    let c = curve(0.0004, 0.002, 0.01);
    let p = parameters(&c, &input(4.0), None, REFLECTION);
    assert!(
        (p.liquidation_bonus - 0.05).abs() < 1e-15,
        "slippage + margin < floor"
    );
    let lt = (1.0 - p.drawdown) / 1.05;
    assert!((p.liquidation_threshold - lt).abs() < 1e-12);
    assert!((p.max_ltv - (lt - p.drawdown_user)).abs() < 1e-12);
    let mut wide = input(4.0);
    wide.slippage = Some(0.1);
    assert!((parameters(&c, &wide, None, REFLECTION).liquidation_bonus - 0.11).abs() < 1e-12);
}

#[test]
fn bounded_change_moves_at_most_the_step() {
    let c = curve(0.0004, 0.002, 0.01);
    let b = Bound {
        liquidation_threshold: Some(0.5),
        max_ltv: Some(0.4),
        max_step: 0.1,
        rule: StepRule::KeepsUserBuffer,
    };
    let p = parameters(&c, &input(4.0), Some(&b), REFLECTION);
    assert!((p.liquidation_threshold - 0.55).abs() < 1e-12);
    assert!((p.max_ltv - 0.44).abs() < 1e-12);
    assert!(p.step_limited);
    // A previous value above the invariant's cap is pulled down to the cap.
    let b = Bound {
        liquidation_threshold: Some(1.0),
        max_ltv: Some(1.0),
        max_step: 0.0,
        rule: StepRule::KeepsUserBuffer,
    };
    let p = parameters(&c, &input(4.0), Some(&b), REFLECTION);
    assert!(p.liquidation_threshold * (1.0 + p.liquidation_bonus) <= 1.0 + 1e-12);
    assert!(p.max_ltv <= p.liquidation_threshold);
}

/// A max LTV held up by the step keeps `D(alpha, tau_user)` below the bounded LT (it may fall
/// faster than the step); the rule of older records kept it below LT only.
#[test]
fn the_step_bound_keeps_the_user_buffer() {
    let c = curve(0.0004, 0.002, 0.01);
    let (lt, ltv) = (0.8, 0.79);
    let at = |rule| {
        let b = Bound {
            liquidation_threshold: Some(lt),
            max_ltv: Some(ltv),
            max_step: 0.01,
            rule,
        };
        parameters(&c, &input(4.0), Some(&b), REFLECTION)
    };
    let new = at(StepRule::KeepsUserBuffer);
    let old = at(StepRule::LtvBelowLtOnly);
    assert!(new.drawdown_user > 0.05, "{}", new.drawdown_user);
    assert_eq!(new.liquidation_threshold, old.liquidation_threshold);
    assert!(
        old.max_ltv > old.liquidation_threshold - old.drawdown_user + 0.01,
        "{old:?}"
    );
    assert!(
        (new.max_ltv - (new.liquidation_threshold - new.drawdown_user)).abs() < 1e-12,
        "{new:?}"
    );
    assert!(new.step_limited);
    // It fell more than the step allows below the previous 0.79: said so.
    assert!(new.buffer_over_step && !old.buffer_over_step);
    assert_eq!(
        StepRule::named("keeps_user_buffer"),
        Some(StepRule::KeepsUserBuffer)
    );
    assert_eq!(StepRule::named("a later rule"), None);
    // Where the step does not bind, both rules agree.
    let far = |rule| {
        let b = Bound {
            liquidation_threshold: Some(0.5),
            max_ltv: Some(0.3),
            max_step: 10.0,
            rule,
        };
        parameters(&c, &input(4.0), Some(&b), REFLECTION)
    };
    assert_eq!(far(StepRule::KeepsUserBuffer), far(StepRule::LtvBelowLtOnly));
    assert_eq!(far(StepRule::UnboundedFromZero), far(StepRule::KeepsUserBuffer));
    assert_eq!(
        StepRule::named("keeps_user_buffer_unbounded_from_zero"),
        Some(StepRule::UnboundedFromZero)
    );
}

/// A previous value of 0 (lending closed by a blocked answer, sent back as `previous`) bounds
/// nothing: a relative step from 0 allows only 0, so the parameters could never leave it. The
/// rule of answers recorded before keeps them at 0, for their replay.
#[test]
fn a_previous_value_of_zero_bounds_nothing() {
    let c = curve(0.0004, 0.002, 0.01);
    let free = parameters(&c, &input(4.0), None, REFLECTION);
    assert!(free.liquidation_threshold > 0.5 && free.max_ltv > 0.3, "{free:?}");
    let at = |rule, previous: (f64, f64)| {
        let b = Bound {
            liquidation_threshold: Some(previous.0),
            max_ltv: Some(previous.1),
            max_step: 0.05,
            rule,
        };
        parameters(&c, &input(4.0), Some(&b), REFLECTION)
    };
    let reopened = at(StepRule::UnboundedFromZero, (0.0, 0.0));
    assert_eq!(
        (reopened.liquidation_threshold, reopened.max_ltv),
        (free.liquidation_threshold, free.max_ltv)
    );
    assert!(!reopened.step_limited);
    // One of the two at 0: only it is free; the other keeps its step.
    let one = at(StepRule::UnboundedFromZero, (0.0, 0.2));
    assert_eq!(one.liquidation_threshold, free.liquidation_threshold);
    assert!((one.max_ltv - 0.21).abs() < 1e-12, "{one:?}");
    let stuck = at(StepRule::KeepsUserBuffer, (0.0, 0.0));
    assert_eq!((stuck.liquidation_threshold, stuck.max_ltv), (0.0, 0.0));
    assert!(stuck.step_limited);
}

#[test]
fn unliquidatable_slippage_never_lowers_the_bonus() {
    let c = curve(0.0004, 0.002, 0.01);
    let b = Bound {
        liquidation_threshold: Some(0.8),
        max_ltv: Some(0.7),
        max_step: 0.1,
        rule: StepRule::KeepsUserBuffer,
    };
    let normal = parameters(&c, &input(4.0), Some(&b), REFLECTION);
    assert!(!normal.liquidation_blocked);
    for s in [0.5, 0.99] {
        let mut i = input(4.0);
        i.slippage = Some(s);
        let p = parameters(&c, &i, None, REFLECTION);
        assert!(!p.liquidation_blocked && (p.liquidation_bonus - (s + 0.01)).abs() < 1e-12);
    }
    // Worse liquidity never lowers the bonus, margin included: just under 1 the sum is capped
    // at the bonus of a blocked sale, never above it.
    let mut last = 0.0;
    for s in [0.0, 0.5, 0.79, 0.8, 0.81, 0.99, 0.999_999, 1.0, 1.5, 7.8e303] {
        let mut i = input(4.0);
        i.slippage = Some(s);
        i.bonus_margin = 0.2;
        let lb = parameters(&c, &i, None, REFLECTION).liquidation_bonus;
        assert!(lb >= last && lb <= MAX_BONUS, "{s}: {lb} after {last}");
        assert!(lb >= (s + 0.2).min(MAX_BONUS), "{s}: {lb}");
        last = lb;
    }
    for s in [1.0, 7.8e303, f64::INFINITY, f64::NAN] {
        let mut i = input(4.0);
        i.slippage = Some(s);
        let p = parameters(&c, &i, Some(&b), REFLECTION);
        assert!(p.liquidation_blocked, "{s}");
        assert!(p.liquidation_bonus >= MAX_BONUS, "{s}: {}", p.liquidation_bonus);
        assert_eq!((p.liquidation_threshold, p.max_ltv), (0.0, 0.0), "{s}");
        assert_eq!(p.unbounded_liquidation_threshold, 0.0);
    }
}

#[test]
fn shortage_lengthens_tau_and_picks_a_horizon() {
    assert!((effective_tau(4.0, 0.5) - 6.0).abs() < 1e-15);
    assert!((effective_tau(4.0, f64::NAN) - 4.0).abs() < 1e-15);
    assert_eq!(liquidity_horizon(&[4, 24, 168], 6.0), Some(24));
    assert_eq!(liquidity_horizon(&[4, 24, 168], 500.0), Some(168));
    assert!((slippage(0.01, 2e6) - 0.02).abs() < 1e-15);
}

fn positive() -> impl Strategy<Value = f64> {
    prop_oneof![1e-10..1e-6, 1e-6..1e-2, 1e-2..10.0]
}

proptest! {
    #[test]
    fn invariants_hold_for_any_input(
        v in (positive(), positive(), positive()),
        alpha in 0.001f64..0.999,
        tau in 0.5f64..500.0,
        tau_user in 0.5f64..2000.0,
        bonus in 0.0f64..0.5,
        margin in 0.0f64..0.1,
        slip in prop::option::of(0.0f64..5.0),
        prev in prop::option::of((0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0)),
        rule in 0u8..3,
    ) {
        let c = curve(v.0, v.1, v.2);
        let i = PolicyInput { alpha, tau, tau_user, bonus, bonus_margin: margin, slippage: slip, window: DrawdownWindow::UpToTau };
        let b = prev.map(|(lt, ltv, s)| Bound { liquidation_threshold: Some(lt), max_ltv: Some(ltv), max_step: s, rule: StepRule::KeepsUserBuffer });
        let cal = calibration();
        let r = [DrawdownRule::Calibrated(&cal), REFLECTION, DrawdownRule::PlainNormal][usize::from(rule)];
        let p = parameters(&c, &i, b.as_ref(), r);
        prop_assert!(p.liquidation_threshold * (1.0 + p.liquidation_bonus) <= 1.0 + 1e-12);
        // SPEC's protection: a position liquidated at LT covers debt and bonus after a fall of
        // D (a step bound may hold LT above it: README "Implementation notes").
        if b.is_none() && p.finite {
            let fallen = 1.0 - p.drawdown.clamp(0.0, 1.0);
            prop_assert!(p.liquidation_threshold * (1.0 + p.liquidation_bonus) <= fallen + 1e-12);
        }
        // SPEC's bonus: at least the slippage plus the margin (up to the cap).
        if let Some(s) = slip {
            prop_assert!(p.liquidation_bonus >= (s + margin).min(MAX_BONUS) - 1e-12);
        }
        prop_assert!(0.0 <= p.max_ltv && p.max_ltv <= p.liquidation_threshold);
        // SPEC's user buffer, step bound or not.
        prop_assert!(p.max_ltv <= (p.liquidation_threshold - p.drawdown_user).max(0.0));
        prop_assert!((0.0..=1.0).contains(&p.liquidation_threshold));
        prop_assert!((0.0..=1.0).contains(&p.maintenance_margin));
        prop_assert!((0.0..=1.0).contains(&p.initial_margin));
        // A position opened at its initial margin is not already below maintenance, whichever
        // window is the longer; the initial margin is the user window's drawdown otherwise.
        prop_assert!(p.initial_margin >= p.maintenance_margin);
        prop_assert!(p.initial_margin >= p.drawdown_user);
        prop_assert!(p.liquidation_bonus >= bonus);
    }

    #[test]
    fn threshold_does_not_rise_with_variance(
        v in (positive(), positive(), positive()),
        scale in (1.0f64..100.0, 1.0f64..100.0, 1.0f64..100.0),
        tau in 0.5f64..500.0,
        alpha in 0.5f64..0.999,
    ) {
        let i = PolicyInput { alpha, tau, tau_user: 24.0, bonus: 0.05, bonus_margin: 0.01, slippage: None, window: DrawdownWindow::UpToTau };
        let cal = calibration();
        for r in [DrawdownRule::Calibrated(&cal), REFLECTION, DrawdownRule::PlainNormal] {
            let low = parameters(&curve(v.0, v.1, v.2), &i, None, r);
            let high = parameters(&curve(v.0 * scale.0, v.1 * scale.1, v.2 * scale.2), &i, None, r);
            prop_assert!(high.liquidation_threshold <= low.liquidation_threshold + 1e-12);
            prop_assert!(high.max_ltv <= low.max_ltv + 1e-12);
        }
    }
}

/// A value far from 1 is said in the exponent form (1e308 was written with 309 digits), others
/// as Rust writes them.
#[test]
fn values_in_messages_stay_short() {
    assert_eq!(said(1e308), "1e308");
    assert_eq!(said(-1e-320), "-1e-320");
    assert_eq!(said(2.5e15), "2.5e15");
    assert_eq!(said(0.99), "0.99");
    assert_eq!(said(1e12), "1000000000000");
    assert_eq!(said(0.0), "0");
    assert_eq!(said(f64::INFINITY), "inf");
    let e = SettingsError {
        field: "tau_hours".into(),
        value: 1e308,
        range: "[1, 168]",
    };
    assert_eq!(e.to_string(), "tau_hours = 1e308 is outside [1, 168]");
}

proptest! {
    /// At one bonus (no illiquidity known, so the floor), a longer liquidation or reaction
    /// window never gives a looser answer: SPEC's `D` is the fall *within* the window. Under the
    /// rule kept for replays it could (the next test).
    #[test]
    fn a_longer_window_never_loosens_the_answer(
        v in (1e-5f64..0.3, 1e-5f64..0.3, 1e-5f64..0.3),
        p in (0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0),
        alpha in 0.9f64..0.999,
        taus in (1.0f64..168.0, 1.0f64..168.0),
    ) {
        let (short, long) = (taus.0.min(taus.1), taus.0.max(taus.1));
        let cal = calibration();
        let shortage = [p.0, p.1, p.2];
        let forecasts = Forecasts {
            horizons: &[4, 24, 168],
            variance: &[v.0, v.1, v.2],
            shortage_probability: &shortage,
            illiquidity: &[f64::NAN; 3],
        };
        for rule in [DrawdownRule::Calibrated(&cal), REFLECTION] {
            let at = |tau: f64, tau_user: f64| {
                let settings = RiskSettings { alpha, tau, tau_user, ..RiskSettings::default() };
                recommend(&forecasts, &settings, None, rule, DrawdownWindow::UpToTau)
            };
            let (a, b) = (at(short, 24.0), at(long, 24.0));
            prop_assert!(b.liquidity.tau_effective >= a.liquidity.tau_effective);
            prop_assert!(b.policy.drawdown >= a.policy.drawdown - 1e-12);
            prop_assert!(b.policy.liquidation_threshold <= a.policy.liquidation_threshold + 1e-12);
            let (a, b) = (at(4.0, short), at(4.0, long));
            prop_assert!(b.policy.drawdown_user >= a.policy.drawdown_user - 1e-12);
            prop_assert!(b.policy.max_ltv <= a.policy.max_ltv + 1e-12);
        }
    }
}

/// The two ways the rule kept for replays loosened a longer window, both fixed: a shortage
/// expected at 4 h but not at 24 h (tau 5 h lengthened less than tau 4 h), and a variance curve
/// that falls from 24 h to 168 h.
#[test]
fn the_replayed_rule_could_loosen_a_longer_window() {
    let forecasts = |variance: &'static [f64], shortage: &'static [f64]| Forecasts {
        horizons: &[4, 24, 168],
        variance,
        shortage_probability: shortage,
        illiquidity: &[f64::NAN; 3],
    };
    let lt = |f: &Forecasts<'_>, tau: f64, window| {
        let settings = RiskSettings {
            tau,
            ..RiskSettings::default()
        };
        recommend(f, &settings, None, REFLECTION, window)
    };
    let shortage = forecasts(&[0.001, 0.006, 0.042], &[0.5, 0.1, 0.1]);
    let old = (
        lt(&shortage, 4.0, DrawdownWindow::AtTau),
        lt(&shortage, 5.0, DrawdownWindow::AtTau),
    );
    assert!(
        (old.0.liquidity.tau_effective - 6.0).abs() < 1e-12
            && (old.1.liquidity.tau_effective - 5.5).abs() < 1e-12
    );
    assert!(old.1.policy.liquidation_threshold > old.0.policy.liquidation_threshold);
    let new = lt(&shortage, 5.0, DrawdownWindow::UpToTau);
    assert!((new.liquidity.tau_effective - 6.0).abs() < 1e-12);
    assert_eq!(
        new.policy.liquidation_threshold,
        lt(&shortage, 4.0, DrawdownWindow::UpToTau)
            .policy
            .liquidation_threshold
    );

    let falling = forecasts(&[0.05, 0.268, 0.155], &[0.0; 3]);
    let old = (
        lt(&falling, 24.0, DrawdownWindow::AtTau),
        lt(&falling, 168.0, DrawdownWindow::AtTau),
    );
    assert!(old.1.policy.liquidation_threshold > old.0.policy.liquidation_threshold);
    let new = lt(&falling, 168.0, DrawdownWindow::UpToTau);
    assert_eq!(
        new.policy.liquidation_threshold,
        old.0.policy.liquidation_threshold
    );
    assert_eq!(new.policy.drawdown_hours, 24.0);
}

/// A previous value outside [0, 1] bounds nothing (a negative one crossed the clamp's bounds,
/// a panic, for a library caller the routes' checks do not cover); a slippage of -inf is no
/// number a sale can be liquidated at.
#[test]
fn previous_values_outside_the_unit_range_bound_nothing() {
    let c = curve(0.0004, 0.002, 0.01);
    let free = parameters(&c, &input(4.0), None, REFLECTION);
    for previous in [-0.5, 1.5] {
        let b = Bound {
            liquidation_threshold: Some(previous),
            max_ltv: Some(previous),
            max_step: 0.1,
            rule: StepRule::KeepsUserBuffer,
        };
        let p = parameters(&c, &input(4.0), Some(&b), REFLECTION);
        assert_eq!(p.liquidation_threshold, free.liquidation_threshold, "{previous}");
    }
    assert!(unliquidatable(Some(f64::NEG_INFINITY)));
    assert!(!unliquidatable(Some(0.5)) && !unliquidatable(None));
}
