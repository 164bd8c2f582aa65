//! The gate's state, stepped day by day, and a rule re-run over a finished ledger.

use volcast_core::policy::DEFAULT_TAU;
use volcast_core::time::DAY_MS;

use super::{FALLBACK_HAR, GateRule, MODEL, PolicyStatus, Switch, breach_failure, decide, horizon_failure};
use crate::dto::validation::ValidationWindow;
use crate::ledger::{Scored, closes_at, hours_after, validation};

/// Where the gate stands: the risk policy served, and the horizons whose variance is served
/// from HAR.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GateState {
    /// The risk policy served (with the whole-policy rule, every horizon's variance with it).
    pub policy: PolicyStatus,
    /// When the gate last switched the risk policy, Unix ms.
    pub since: Option<i64>,
    /// The horizons (hours) whose variance is served from HAR under a per-horizon rule, each
    /// with when it went there.
    pub har_horizons: Vec<(usize, i64)>,
}

impl GateState {
    /// The horizons whose variance is served from HAR as a ledger record keeps them: None under
    /// the whole-policy rule (the policy says), else the list.
    #[must_use]
    pub fn served_har_horizons(&self, rule: &GateRule) -> Option<Vec<usize>> {
        rule.per_horizon
            .then(|| self.har_horizons.iter().map(|&(h, _)| h).collect())
    }

    /// What is served, in a word: the risk policy's name, with the horizons on HAR where a
    /// per-horizon rule has any (`model; HAR at 168 h`).
    #[must_use]
    pub fn label(&self, rule: &GateRule) -> String {
        match self.served_har_horizons(rule) {
            Some(h) if !h.is_empty() => {
                let list: Vec<String> = h.iter().map(|h| format!("{h} h")).collect();
                format!("{}; HAR at {}", self.policy.name, list.join(", "))
            }
            _ => self.policy.name.clone(),
        }
    }

    /// Applies a switch the gate made.
    pub fn apply(&mut self, switch: &Switch) {
        match switch.horizon_hours {
            None => {
                self.policy = switch.status();
                self.since = Some(switch.at);
            }
            Some(h) => {
                self.har_horizons.retain(|&(x, _)| x != h);
                if switch.policy == FALLBACK_HAR {
                    self.har_horizons.push((h, switch.at));
                    self.har_horizons.sort_unstable();
                }
            }
        }
    }

    /// The gate's decisions at the daily origin `day_ms` on the ledger's figures over the
    /// rule's trailing window, applied: the switches made. Under the whole-policy rule, at most
    /// one ([`decide`]); under a per-horizon rule, each horizon is judged on its own DM (to HAR
    /// above [`GateRule::switch_dm`], back after [`GateRule::min_dwell_days`] at or below
    /// [`GateRule::recover_dm`]), then the risk policy on the breaches and on whether the
    /// liquidation window's horizon is on HAR.
    pub fn step(&mut self, rule: &GateRule, window: &ValidationWindow, day_ms: i64) -> Vec<Switch> {
        let mut made = Vec::new();
        if !rule.per_horizon {
            made.extend(decide(rule, &self.policy, self.since, window, day_ms));
            for s in &made {
                self.apply(s);
            }
            return made;
        }
        {
            let span = format!("over the last {} days of scored forecasts", rule.window_days);
            let dwelt = |since: i64| day_ms - since >= rule.min_dwell_days * DAY_MS;
            for h in &window.horizons {
                let on_har = self.har_horizons.iter().find(|&&(x, _)| x == h.horizon_hours);
                let switch = match on_har {
                    None => horizon_failure(rule, h, rule.switch_dm)
                        .map(|why| (FALLBACK_HAR, format!("{span}, {why}"))),
                    Some(&(_, since)) => (dwelt(since)
                        && h.origin_days >= rule.min_days
                        && horizon_failure(rule, h, rule.recover_dm).is_none())
                    .then(|| {
                        (
                            MODEL,
                            format!(
                                "at {} h the model recovered {span}: its DM statistic is not above {}",
                                h.horizon_hours, rule.recover_dm
                            ),
                        )
                    }),
                };
                if let Some((policy, reason)) = switch {
                    made.push(Switch {
                        at: day_ms,
                        policy: policy.into(),
                        horizon_hours: Some(h.horizon_hours),
                        reason,
                    });
                }
            }
            for s in &made {
                self.apply(s);
            }
            let tau_on_har = self.har_horizons.iter().any(|&(x, _)| x == DEFAULT_TAU);
            let tau_why =
                format!("the variance at {DEFAULT_TAU} h, which the LT rests on, is served from HAR");
            let lt = if self.policy.is_fallback() {
                let recovered = window
                    .risk
                    .as_ref()
                    .is_some_and(|r| r.origin_days >= rule.min_days)
                    && breach_failure(rule, window, rule.recover_kupiec_p).is_none();
                (self.since.is_none_or(dwelt) && !tau_on_har && recovered).then(|| {
                    (
                        MODEL,
                        format!(
                            "the model's LT recovered {span}: no excess breaches at Kupiec p < {} and \
                             the variance at {DEFAULT_TAU} h is the model's",
                            rule.recover_kupiec_p
                        ),
                    )
                })
            } else {
                let why: Vec<String> = breach_failure(rule, window, rule.switch_kupiec_p)
                    .into_iter()
                    .chain(tau_on_har.then_some(tau_why))
                    .collect();
                (!why.is_empty()).then(|| (FALLBACK_HAR, format!("{span}, {}", why.join("; "))))
            };
            if let Some((policy, reason)) = lt {
                let switch = Switch {
                    at: day_ms,
                    policy: policy.into(),
                    horizon_hours: None,
                    reason,
                };
                self.apply(&switch);
                made.push(switch);
            }
        }
        made
    }
}

/// A rule re-run over a scored ledger ([`regate`]).
#[derive(Debug, Clone)]
pub struct Regated {
    /// The switches the rule makes, in order.
    pub switches: Vec<Switch>,
    /// The policy served on each day of the period: (daily origin, policy name).
    pub days: Vec<(i64, String)>,
    /// The period's entries, each with the policy the rule served at its origin.
    pub entries: Vec<Scored>,
}

/// The gate under `rule` re-run, day by day, over a finished ledger whose entries (`entries`,
/// by origin, as [`LedgerStore::scored`](volcast_store::LedgerStore::scored) returns them)
/// include the rule's window before `from_ms`: at each daily origin of `[from_ms, to_ms]` it
/// decides on the entries the daily job had scored by then (with
/// [`GateRule::score_as_windows_close`], each horizon on the entries whose own window had closed
/// by the origin; without, those whose longest window had: [`closes_at`]) with
/// [`decide`], as the job's pass does, starting from the model's policy. The
/// ledger's forecasts and outcomes do not depend on the policy served, so this is what the
/// service would have served under `rule` (how `replay --regate` compares rules on the folds).
#[must_use]
pub fn regate(rule: &GateRule, entries: &[Scored], from_ms: i64, to_ms: i64) -> Regated {
    let mut state = GateState::default();
    let (mut switches, mut days, mut served) = (Vec::new(), Vec::new(), Vec::new());
    let mut day = from_ms;
    while day <= to_ms {
        let from = day - rule.window_days * DAY_MS;
        let lo = entries.partition_point(|e| e.origin < from);
        let hi = entries.partition_point(|e| e.origin <= day);
        let evidence = evidence(rule, &entries[lo..hi], from, day);
        switches.extend(state.step(rule, &evidence, day));
        let har_horizons = state.served_har_horizons(rule);
        let next = entries.partition_point(|e| e.origin < day);
        for e in &entries[next..hi] {
            let mut e = e.clone();
            e.record.policy.clone_from(&state.policy.name);
            e.record.har_horizons.clone_from(&har_horizons);
            served.push(e);
        }
        days.push((day, state.label(rule)));
        day += DAY_MS;
    }
    Regated {
        switches,
        days,
        entries: served,
    }
}

/// The figures the gate reads on `day` over `entries` (the rule's window of origins from
/// `from`): those of the entries the job had scored by then ([`closes_at`]) or, with
/// [`GateRule::score_as_windows_close`], at each horizon those whose own window had closed and
/// for the breaches those whose liquidation window ([`DEFAULT_TAU`]) had.
fn evidence(rule: &GateRule, entries: &[Scored], from: i64, day: i64) -> ValidationWindow {
    let closed_by = |close: &dyn Fn(&Scored) -> i64| -> Vec<Scored> {
        entries.iter().filter(|e| close(e) <= day).cloned().collect()
    };
    if !rule.score_as_windows_close {
        let window = closed_by(&|e| closes_at(&e.record, e.origin));
        return validation(&window, rule.window_days, from, day, None);
    }
    let mut evidence = validation(
        &closed_by(&|e| hours_after(e.origin, DEFAULT_TAU)),
        rule.window_days,
        from,
        day,
        None,
    );
    let horizons: Vec<usize> = evidence.horizons.iter().map(|h| h.horizon_hours).collect();
    for (k, h) in horizons.into_iter().enumerate() {
        let at_h = validation(
            &closed_by(&|e| hours_after(e.origin, h)),
            rule.window_days,
            from,
            day,
            None,
        );
        if let Some(skill) = at_h.horizons.into_iter().find(|s| s.horizon_hours == h) {
            evidence.horizons[k] = skill;
        }
    }
    evidence
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::validation::HorizonSkill;
    use crate::gate::tests::window;

    /// [`window`] at 4, 24 and 168 h with these DM statistics.
    fn horizons(dm: [f64; 3], breaches: usize) -> ValidationWindow {
        let mut w = window(0.0, breaches);
        let one = w.horizons[0].clone();
        w.horizons = [4, 24, 168]
            .into_iter()
            .zip(dm)
            .map(|(h, d)| HorizonSkill {
                horizon_hours: h,
                dm_daily_vs_har: Some(d),
                ..one.clone()
            })
            .collect();
        w
    }

    /// An entry of `asset` at `origin` whose forecasts miss the realized variance by `miss`.
    fn entry(asset: &str, origin: i64, miss: f64) -> Scored {
        use crate::ledger::LedgerOutcome;
        Scored {
            asset: asset.to_owned(),
            origin,
            record: crate::ledger::test_record(
                vec![4, 24, 168],
                vec![1e-4 * miss; 3],
                vec![Some(1e-4 / miss); 3],
                None,
            ),
            outcome: LedgerOutcome {
                realized_variance: vec![Some(1e-4); 3],
                drawdown: Some(0.01),
                shortage: vec![Some(false); 3],
                open_horizons: Vec::new(),
            },
        }
    }

    #[test]
    fn scored_as_windows_close_each_horizon_reads_the_origins_its_own_window_has_closed_on() {
        let day = 100 * DAY_MS;
        // Daily origins over the 30 days before `day`, two assets.
        let entries: Vec<Scored> = (1..=30)
            .rev()
            .flat_map(|k: i64| ["A", "B"].map(|a| entry(a, day - k * DAY_MS, 1.0 + 0.01 * k as f64)))
            .collect();
        let read = |rule: &GateRule| {
            let w = evidence(rule, &entries, day - 30 * DAY_MS, day);
            let days: Vec<(usize, usize)> = w
                .horizons
                .iter()
                .map(|h| (h.horizon_hours, h.origin_days))
                .collect();
            (days, w.entries)
        };
        // The job's rule before: an entry counts once its week has passed (origins 7 to 30
        // days back).
        let whole = GateRule {
            score_as_windows_close: false,
            ..GateRule::DEFAULT
        };
        assert_eq!(read(&whole), (vec![(4, 24), (24, 24), (168, 24)], 48));
        // Each horizon as its window closes (the service's rule now): yesterday's origin counts
        // at 4 h and 24 h, and in the breaches (their 4 h window); the week's horizon is unchanged.
        const { assert!(GateRule::DEFAULT.score_as_windows_close) };
        assert_eq!(read(&GateRule::DEFAULT), (vec![(4, 30), (24, 30), (168, 24)], 60));
    }

    #[test]
    fn a_per_horizon_gate_moves_each_horizon_on_its_own_and_the_lt_with_the_tau_horizon() {
        let rule = GateRule {
            per_horizon: true,
            ..GateRule::DEFAULT
        };
        let mut state = GateState::default();
        // The model loses at a week only: that horizon goes to HAR, the risk policy stays.
        let made = state.step(&rule, &horizons([0.0, 0.0, 2.5], 10), 0);
        assert_eq!(made.len(), 1);
        assert_eq!(
            (made[0].policy.as_str(), made[0].horizon_hours),
            (FALLBACK_HAR, Some(168))
        );
        assert!(made[0].reason.contains("at 168 h"), "{}", made[0].reason);
        assert_eq!(state.policy.name, MODEL);
        assert_eq!(state.label(&rule), "model; HAR at 168 h");
        assert_eq!(state.served_har_horizons(&rule), Some(vec![168]));
        // Then at 4 h, which the LT rests on: that horizon and the risk policy fall back.
        let made = state.step(&rule, &horizons([2.5, 0.0, 2.5], 10), DAY_MS);
        assert_eq!(made.len(), 2, "{made:?}");
        assert_eq!(made[0].horizon_hours, Some(4));
        assert_eq!(
            (made[1].policy.as_str(), made[1].horizon_hours),
            (FALLBACK_HAR, None)
        );
        assert!(made[1].reason.contains("served from HAR"), "{}", made[1].reason);
        assert_eq!(state.label(&rule), "fallback_har; HAR at 4 h, 168 h");
        // Recovered everywhere, but within each one's week: nothing moves.
        assert!(state.step(&rule, &horizons([0.0; 3], 10), 6 * DAY_MS).is_empty());
        // A week after it went, 168 h comes back; 4 h (a day later) and the LT wait.
        let made = state.step(&rule, &horizons([0.0; 3], 10), 7 * DAY_MS);
        assert_eq!(made.len(), 1);
        assert_eq!(
            (made[0].policy.as_str(), made[0].horizon_hours),
            (MODEL, Some(168))
        );
        // Then 4 h, and with it the LT.
        let made = state.step(&rule, &horizons([0.0; 3], 10), 8 * DAY_MS);
        assert_eq!(made.len(), 2, "{made:?}");
        assert_eq!(made[1].horizon_hours, None);
        assert_eq!(
            state,
            GateState {
                policy: made[1].status(),
                since: Some(8 * DAY_MS),
                har_horizons: Vec::new(),
            }
        );
        // Excess breaches alone move the risk policy alone.
        let mut state = GateState::default();
        let made = state.step(&rule, &horizons([0.0; 3], 25), 0);
        assert_eq!(made.len(), 1);
        assert_eq!(
            (made[0].policy.as_str(), made[0].horizon_hours),
            (FALLBACK_HAR, None)
        );
        assert!(state.har_horizons.is_empty());
        // The whole-policy rule keeps no horizons of its own.
        let mut whole = GateState::default();
        let made = whole.step(&GateRule::DEFAULT, &horizons([0.0, 0.0, 2.5], 10), 0);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].horizon_hours, None);
        assert_eq!(whole.policy.name, FALLBACK_HAR);
        assert_eq!(whole.served_har_horizons(&GateRule::DEFAULT), None);
        assert_eq!(whole.label(&GateRule::DEFAULT), FALLBACK_HAR);
    }
}
