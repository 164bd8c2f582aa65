//! The liquidation-threshold backtest: each policy's LT at every origin against the fall over
//! the liquidation window that followed, its breaches by asset, day and episode, Kupiec's test,
//! and every policy's shape rescaled in hindsight to breach exactly `1 - alpha`.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::report::{AssetRiskReport, BreachEpisode, DayOutcome, HindsightBound, PolicyReport, RiskReport};
use volcast_core::backtest::{StaticPolicy, allowed_breaches, breached};
use volcast_core::forecast::{ForecastTable, Origin};
use volcast_core::grid::Asset;
use volcast_core::policy::threshold;
use volcast_core::scoring::kupiec_p_value;
use volcast_core::targets::drawdown;
use volcast_core::time::{format_ms, hour_to_ms};

/// A backtest point: origin index, realised drawdown, thresholds per policy.
type RiskPoint = (usize, f64, Vec<f64>);

/// Settings of the backtest.
#[derive(Debug, Clone, Copy)]
pub struct Backtest {
    /// Quantile level.
    pub alpha: f64,
    /// Liquidation window, hours.
    pub tau: usize,
    /// Liquidation bonus.
    pub bonus: f64,
}

fn policy_report(outcomes: impl Iterator<Item = (bool, f64)>, alpha: f64) -> PolicyReport {
    let (mut n, mut breaches, mut lt_sum) = (0usize, 0usize, 0.0);
    for (b, lt) in outcomes {
        n += 1;
        breaches += usize::from(b);
        lt_sum += lt;
    }
    PolicyReport {
        n,
        breaches,
        breach_rate: if n == 0 {
            f64::NAN
        } else {
            breaches as f64 / n as f64
        },
        mean_lt: if n == 0 { f64::NAN } else { lt_sum / n as f64 },
        kupiec_p_value: kupiec_p_value(breaches, n, 1.0 - alpha),
    }
}

/// Backtests the static policy and every table with a drawdown forecast on their common origins.
#[must_use]
pub fn score_risk(
    assets: &[Asset],
    origins: &[Origin],
    static_policy: &StaticPolicy,
    tables: &[ForecastTable],
    settings: Backtest,
) -> RiskReport {
    let Backtest { alpha, tau, bonus } = settings;
    let mut names = vec!["static".to_owned()];
    let drawdown_tables: Vec<&ForecastTable> = tables.iter().filter(|t| t.drawdown.is_some()).collect();
    names.extend(drawdown_tables.iter().map(|t| t.name.clone()));

    let Scored {
        points,
        spec,
        no_forecast,
    } = risk_points(assets, origins, static_policy, &drawdown_tables, tau, bonus);
    let static_all_origins = policy_report(
        spec.iter().map(|&(a, dd)| {
            (
                breached(1.0 - dd, static_policy.thresholds[a], bonus),
                static_policy.thresholds[a],
            )
        }),
        alpha,
    );
    let no_forecast = drawdown_tables
        .iter()
        .zip(no_forecast)
        .map(|(t, n)| (t.name.clone(), n))
        .collect();
    let backtest = RiskPoints {
        assets,
        origins,
        names: &names,
        points: &points,
        alpha,
        bonus,
    };
    let policies = backtest.policies();
    let per_asset = backtest.per_asset();
    let worst_breaches = backtest.worst_breaches();
    let hindsight = backtest.hindsight();
    let timeline = backtest.timeline();
    RiskReport {
        alpha,
        tau,
        bonus,
        policies,
        per_asset,
        worst_breaches,
        hindsight,
        timeline,
        spec_origins: spec.len(),
        no_forecast,
        static_all_origins,
    }
}

/// [`risk_points`]' answer.
struct Scored {
    /// The common origins, as `(origin index, realised drawdown, thresholds per policy)`.
    points: Vec<RiskPoint>,
    /// Every SPEC origin (its lows and close present) as `(asset, realised drawdown)`.
    spec: Vec<(usize, f64)>,
    /// Per drawdown table, SPEC origins without its drawdown.
    no_forecast: Vec<usize>,
}

/// The origins with a realised drawdown and a finite forecast from every drawdown table, as
/// `(origin index, realised drawdown, thresholds per policy)`, the static policy first; and
/// SPEC's origins (a realised drawdown) with, per table, how many it gave no drawdown at.
fn risk_points(
    assets: &[Asset],
    origins: &[Origin],
    static_policy: &StaticPolicy,
    drawdown_tables: &[&ForecastTable],
    tau: usize,
    bonus: f64,
) -> Scored {
    // Per SPEC origin: (asset, realised drawdown, each table's drawdown where finite).
    let spec: Vec<(usize, usize, f64, Vec<Option<f64>>)> = origins
        .par_iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let dd = drawdown(&assets[o.asset].grid, o.slot, tau)?;
            let forecasts = drawdown_tables
                .iter()
                .map(|t| t.drawdown.as_ref().map(|d| d[i]).filter(|d| d.is_finite()))
                .collect();
            Some((i, o.asset, dd, forecasts))
        })
        .collect();
    let no_forecast = (0..drawdown_tables.len())
        .map(|j| spec.iter().filter(|p| p.3[j].is_none()).count())
        .collect();
    let points = spec
        .iter()
        .filter_map(|(i, a, dd, forecasts)| {
            let mut lts = vec![static_policy.thresholds[*a]];
            for d in forecasts {
                lts.push(threshold((*d)?, bonus));
            }
            Some((*i, *dd, lts))
        })
        .collect();
    Scored {
        points,
        spec: spec.iter().map(|&(_, a, dd, _)| (a, dd)).collect(),
        no_forecast,
    }
}

/// The backtest points and the policies they are scored for.
struct RiskPoints<'a> {
    /// The panel.
    assets: &'a [Asset],
    /// Origins the point indices refer to.
    origins: &'a [Origin],
    /// Policy names, in the order of the thresholds in each point.
    names: &'a [String],
    /// `(origin index, realised drawdown, thresholds per policy)`.
    points: &'a [RiskPoint],
    /// Quantile level.
    alpha: f64,
    /// Liquidation bonus.
    bonus: f64,
}

impl RiskPoints<'_> {
    /// Whether policy `j` is breached at point `p`, and its threshold there.
    fn outcome(&self, p: &RiskPoint, j: usize) -> (bool, f64) {
        (breached(1.0 - p.1, p.2[j], self.bonus), p.2[j])
    }

    /// Backtest of every policy over all points.
    fn policies(&self) -> BTreeMap<String, PolicyReport> {
        self.names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                (
                    name.clone(),
                    policy_report(self.points.iter().map(|p| self.outcome(p, j)), self.alpha),
                )
            })
            .collect()
    }

    /// Backtest of every policy per asset with any point.
    fn per_asset(&self) -> Vec<AssetRiskReport> {
        self.assets
            .iter()
            .enumerate()
            .filter_map(|(a, asset)| {
                let mine: Vec<_> = self
                    .points
                    .iter()
                    .filter(|p| self.origins[p.0].asset == a)
                    .collect();
                (!mine.is_empty()).then(|| AssetRiskReport {
                    asset: asset.id.clone(),
                    policies: self
                        .names
                        .iter()
                        .enumerate()
                        .map(|(j, name)| {
                            (
                                name.clone(),
                                policy_report(mine.iter().map(|p| self.outcome(p, j)), self.alpha),
                            )
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// The ten largest breaches of each policy, largest first.
    fn worst_breaches(&self) -> Vec<BreachEpisode> {
        let mut worst_breaches = Vec::new();
        for (j, name) in self.names.iter().enumerate() {
            let mut breaches: Vec<_> = self.points.iter().filter(|p| self.outcome(p, j).0).collect();
            breaches.sort_by(|a, b| b.1.total_cmp(&a.1));
            worst_breaches.extend(breaches.iter().take(10).map(|p| {
                let o = self.origins[p.0];
                BreachEpisode {
                    policy: name.clone(),
                    asset: self.assets[o.asset].id.clone(),
                    origin: format_ms(hour_to_ms(self.assets[o.asset].grid.hour(o.slot))),
                    drawdown: p.1,
                    lt: p.2[j],
                }
            }));
        }
        worst_breaches
    }

    /// Each policy's outcomes per day, pooled over assets, in day order.
    fn timeline(&self) -> BTreeMap<String, Vec<DayOutcome>> {
        let mut days: BTreeMap<i64, Vec<&RiskPoint>> = BTreeMap::new();
        for p in self.points {
            let o = self.origins[p.0];
            let hour = self.assets[o.asset].grid.hour(o.slot);
            days.entry(hour - hour.rem_euclid(24)).or_default().push(p);
        }
        self.names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let outcomes = days
                    .iter()
                    .map(|(&day, points)| {
                        let r = policy_report(points.iter().map(|p| self.outcome(p, j)), self.alpha);
                        DayOutcome {
                            day: format_ms(hour_to_ms(day)).chars().take(10).collect(),
                            n: r.n,
                            breaches: r.breaches,
                            mean_lt: r.mean_lt,
                        }
                    })
                    .collect();
                (name.clone(), outcomes)
            })
            .collect()
    }

    /// Hindsight bounds of every policy, plus the per-asset static refit.
    fn hindsight(&self) -> BTreeMap<String, HindsightBound> {
        let (points, alpha, bonus) = (self.points, self.alpha, self.bonus);
        let mut hindsight: BTreeMap<String, HindsightBound> = self
            .names
            .iter()
            .enumerate()
            .filter_map(|(j, name)| Some((name.clone(), hindsight_bound(points, j, alpha, bonus)?)))
            .collect();
        if let Some(b) = static_refit(self.assets, self.origins, points, alpha, bonus) {
            hindsight.insert("static_refit".to_owned(), b);
        }
        hindsight
    }
}

/// Exponents `g` the hindsight search tries on the log allowance: 0.25, 0.30, .. 2.00.
const HINDSIGHT_EXPONENTS: std::ops::RangeInclusive<u32> = 5..=40;

/// [`HindsightBound`] of policy `j` over `points` (origin, realised drawdown, thresholds): the
/// best over [`HINDSIGHT_EXPONENTS`] of [`scaled_bound`]; None without points or when no finite
/// multiplier reaches the rate.
fn hindsight_bound(points: &[RiskPoint], j: usize, alpha: f64, bonus: f64) -> Option<HindsightBound> {
    HINDSIGHT_EXPONENTS
        .filter_map(|g| scaled_bound(points, j, alpha, bonus, f64::from(g) / 20.0))
        .max_by(|a, b| a.mean_lt.total_cmp(&b.mean_lt))
}

/// Policy `j` with its log allowance `a = -ln(LT (1 + LB))` replaced by `k a^g`, `k` the smallest
/// multiplier that leaves at most a share `1 - alpha` of `points` breached.
fn scaled_bound(points: &[RiskPoint], j: usize, alpha: f64, bonus: f64, g: f64) -> Option<HindsightBound> {
    // The policy breaches at multiplier k exactly where fall / a^g > k.
    let allowance = |lt: f64| (-(lt * (1.0 + bonus)).ln()).max(0.0).powf(g);
    let ratio = |p: &RiskPoint| {
        let fall = -(1.0 - p.1).ln();
        let a = allowance(p.2[j]);
        if a > 0.0 {
            fall / a
        } else if fall > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    };
    let mut ratios: Vec<f64> = points.iter().map(ratio).collect();
    if ratios.is_empty() {
        return None;
    }
    let allowed = allowed_breaches(1.0 - alpha, ratios.len());
    let rank = allowed.min(ratios.len() - 1);
    // The (allowed + 1)-th largest ratio: at most `allowed` lie strictly above it.
    let (_, &mut k, _) = ratios.select_nth_unstable_by(rank, |a, b| b.total_cmp(a));
    if !k.is_finite() {
        return None;
    }
    let scaled: Vec<(bool, f64)> = points
        .iter()
        .map(|p| {
            let mut lt = (-k * allowance(p.2[j])).exp() / (1.0 + bonus);
            // A point at or under k is no breach, also after rounding: exp(-k a) / (1 + LB)
            // times (1 + LB) can land a float step above 1 - drawdown at the point that set k
            // (as in `largest_safe_threshold`).
            if ratio(p) <= k {
                while lt > 0.0 && lt * (1.0 + bonus) > 1.0 - p.1 {
                    lt = lt.next_down();
                }
            }
            (breached(1.0 - p.1, lt, bonus), lt)
        })
        .collect();
    let r = policy_report(scaled.into_iter(), alpha);
    Some(HindsightBound {
        multiplier: Some(k),
        exponent: Some(g),
        n: r.n,
        breach_rate: r.breach_rate,
        mean_lt: r.mean_lt,
    })
}

/// Per-asset constant thresholds fitted on the evaluation points themselves (as the static
/// policy is on the fit period).
fn static_refit(
    assets: &[Asset],
    origins: &[Origin],
    points: &[RiskPoint],
    alpha: f64,
    bonus: f64,
) -> Option<HindsightBound> {
    let mut ratios = vec![Vec::new(); assets.len()];
    for p in points {
        ratios[origins[p.0].asset].push(1.0 - p.1);
    }
    let policy = StaticPolicy::fit(ratios, 1.0 - alpha, bonus)?;
    let outcomes = points.iter().map(|p| {
        let lt = policy.thresholds[origins[p.0].asset];
        (breached(1.0 - p.1, lt, bonus), lt)
    });
    let r = policy_report(outcomes, alpha);
    Some(HindsightBound {
        multiplier: None,
        exponent: None,
        n: r.n,
        breach_rate: r.breach_rate,
        mean_lt: r.mean_lt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Policies are scored on their common origins; the report says how many of SPEC's origins
    /// that leaves out and for which table, and scores the static policy on all of them.
    #[test]
    fn backtest_counts_the_origins_left_out() {
        use volcast_core::candles::Candle;
        use volcast_core::grid::HourlyGrid;
        use volcast_core::time::HOUR_MS;
        // 10 days of hourly candles, each hour's low 2% under its close on even days.
        let candles: Vec<Candle> = (0..240_i64)
            .map(|h| Candle {
                open_time: h * HOUR_MS,
                open: 100.0,
                high: 100.0,
                low: if (h / 24) % 2 == 0 { 98.0 } else { 100.0 },
                close: 100.0,
                volume: 1.0,
                quote_volume: 100.0,
            })
            .collect();
        let assets = [Asset {
            id: "A".into(),
            grid: HourlyGrid::from_candles(&candles),
        }];
        // Nine daily origins, each with its 4 lows.
        let origins: Vec<Origin> = (0..9)
            .map(|d| Origin {
                asset: 0,
                slot: 24 * d,
            })
            .collect();
        let table = |name: &str, refused: &[usize]| ForecastTable {
            name: name.into(),
            horizons: BTreeMap::new(),
            drawdown: Some(
                (0..origins.len())
                    .map(|i| if refused.contains(&i) { f64::NAN } else { 0.01 })
                    .collect(),
            ),
        };
        let tables = [table("model", &[0, 3]), table("har_calibrated", &[3, 5])];
        let static_policy = StaticPolicy {
            thresholds: vec![0.99 / 1.05],
            pooled: 0.99 / 1.05,
            fit_origins: vec![100],
        };
        let settings = Backtest {
            alpha: 0.99,
            tau: 4,
            bonus: 0.05,
        };
        let r = score_risk(&assets, &origins, &static_policy, &tables, settings);
        assert_eq!(r.spec_origins, 9);
        assert_eq!(r.no_forecast["model"], 2);
        assert_eq!(r.no_forecast["har_calibrated"], 2);
        // Origins 0, 3 and 5 left out of every policy's figures.
        for p in r.policies.values() {
            assert_eq!(p.n, 6);
        }
        // The static policy (a 1% allowance) breaches on the even days' 2% lows: days 0, 2, 4, 6,
        // 8 of all nine; on the common origins (1, 2, 4, 6, 7, 8), four.
        assert_eq!((r.static_all_origins.n, r.static_all_origins.breaches), (9, 5));
        assert_eq!(r.policies["static"].breaches, 4);
    }

    #[test]
    fn hindsight_bound_is_the_tightest_multiplier_at_the_rate() {
        // 1,000 points, falls 0.1% .. 100% of a 10% allowance (LT (1 + LB) = 0.9), two policies:
        // the same allowance everywhere, and one twice as wide on even points.
        let bonus = 0.05;
        let points: Vec<RiskPoint> = (0..1000)
            .map(|i| {
                let x = f64::from(i + 1) / 1000.0;
                let fall = 1.0 - (x * 0.9f64.ln()).exp();
                let wide = if i % 2 == 0 { 0.81 } else { 0.9 };
                (i as usize, fall, vec![0.9 / (1.0 + bonus), wide / (1.0 + bonus)])
            })
            .collect();
        let flat = scaled_bound(&points, 0, 0.99, bonus, 1.0).unwrap();
        // Ratios are 0.001 .. 1.0: the 11th largest is 0.990, and exactly 10 points lie above it.
        assert!((flat.multiplier.unwrap() - 0.990).abs() < 1e-12, "{flat:?}");
        assert!((flat.breach_rate - 0.01).abs() < 1e-12);
        let lt = (0.990 * 0.9f64.ln()).exp() / (1.0 + bonus);
        assert!((flat.mean_lt - lt).abs() < 1e-12);
        // Any multiplier below it breaches more than 1%.
        let looser = points
            .iter()
            .filter(|p| -(1.0 - p.1).ln() > 0.989 * -(0.9f64.ln()))
            .count();
        assert!(looser > 10);

        // A flat allowance has one shape whatever the exponent.
        let best = hindsight_bound(&points, 0, 0.99, bonus).unwrap();
        assert!((best.mean_lt - flat.mean_lt).abs() < 1e-12, "{best:?}");

        let wide = hindsight_bound(&points, 1, 0.99, bonus).unwrap();
        assert!(wide.breach_rate <= 0.01 + 1e-12, "{wide:?}");
        assert!(
            wide.mean_lt < flat.mean_lt,
            "a shape that spends allowance where it is not needed ranks lower"
        );
        assert!(hindsight_bound(&[], 0, 0.99, bonus).is_none());
    }

    #[test]
    fn hindsight_bound_finds_the_exponent_of_the_true_shape() {
        // The policy's log allowance is 4 times wider on even points, but their falls are only
        // twice as large: the shape that fits is a^0.5.
        let bonus = 0.05;
        let points: Vec<RiskPoint> = (0..2000u32)
            .map(|i| {
                let x = f64::from(i / 2 + 1) / 1000.0;
                let (scale, a): (f64, f64) = if i % 2 == 0 { (0.2, 0.4) } else { (0.1, 0.1) };
                let fall = 1.0 - (-scale * x).exp();
                (i as usize, fall, vec![(-a).exp() / (1.0 + bonus)])
            })
            .collect();
        let linear = scaled_bound(&points, 0, 0.99, bonus, 1.0).unwrap();
        let best = hindsight_bound(&points, 0, 0.99, bonus).unwrap();
        assert_eq!(best.exponent, Some(0.5), "{best:?}");
        assert!(best.breach_rate <= 0.01 + 1e-12, "{best:?}");
        assert!(best.mean_lt > linear.mean_lt + 0.01, "{best:?} vs {linear:?}");
    }

    /// The point that sets the multiplier is no breach, whatever the rounding of
    /// exp(-k a) / (1 + LB) (1 + LB) against 1 - drawdown: the bound never breaches more than
    /// the rate allows, on any draw of falls and allowances and any exponent.
    #[test]
    fn hindsight_bound_never_breaches_past_the_rate() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for bonus in [0.0, 0.05, 0.1, 0.0725] {
            for draw in 0..40 {
                let points: Vec<RiskPoint> = (0..500)
                    .map(|i| {
                        let fall = 0.3 * uniform();
                        let a = 0.02 + 0.4 * uniform();
                        (i, fall, vec![(-a).exp() / (1.0 + bonus)])
                    })
                    .collect();
                for g in HINDSIGHT_EXPONENTS {
                    let g = f64::from(g) / 20.0;
                    let b = scaled_bound(&points, 0, 0.99, bonus, g).unwrap();
                    assert!(
                        b.breach_rate <= 0.01 + 1e-12,
                        "bonus {bonus}, draw {draw}, exponent {g}: {b:?}"
                    );
                }
            }
        }
    }
}
