use super::*;
use crate::backtest::normal_quantile;
use crate::drawdown::DrawdownRule;

fn input(hourly_variance: f64, horizon: usize, paths: usize) -> StressInput {
    StressInput {
        price: 100.0,
        hourly_variance: vec![hourly_variance; horizon],
        df: DEFAULT_DF,
        slippage_per_usd: 0.0,
        liquidation_delay_hours: 4,
        paths,
        seed: 11,
        bridge: Bridge::default(),
        impact: Impact::default(),
        replay_cut: ReplayCut::default(),
    }
}

fn book(ltv: f64) -> Book {
    // One unit of collateral worth 100, debt at `ltv` of it.
    Book {
        positions: vec![Position {
            collateral: 1.0,
            debt: 100.0 * ltv,
            liquidation_threshold: None,
        }],
        default_liquidation_threshold: 0.85,
    }
}

#[test]
fn zero_variance_liquidates_nothing() {
    let i = input(0.0, 168, 2000);
    let out = simulate(&i, &book(0.84), &Scenario::Forecast).unwrap();
    assert!(out.iter().all(|o| *o == PathOutcome::default()));
    let s = summarize(&out);
    assert!(s.liquidation_probability == 0.0 && s.bad_debt_at_risk.p99 == 0.0);
}

#[test]
fn far_in_the_money_never_liquidates() {
    // 1% LTV: the price must fall 98.8%; at 1% hourly vol over a week it never does.
    let out = simulate(
        &input(1e-4, 168, 20_000),
        &book(0.01),
        &Scenario::VolatilityShock { k: 3.0 },
    )
    .unwrap();
    assert_eq!(summarize(&out).liquidation_probability, 0.0);
}

#[test]
fn instant_drop_of_half_liquidates_a_high_ltv_position() {
    let out = simulate(
        &input(1e-4, 24, 5000),
        &book(0.8),
        &Scenario::InstantDrop { pct: 50.0 },
    )
    .unwrap();
    let s = summarize(&out);
    assert!((s.liquidation_probability - 1.0).abs() < f64::EPSILON);
    // Sold at or below half price: 100 * 0.5 < 80 of debt, so bad debt on every path.
    assert!(
        out.iter()
            .all(|o| o.bad_debt_usd > 29.0 && o.liquidated_usd <= 50.0)
    );
    assert!((s.liquidated_positions.p50 - 1.0).abs() < f64::EPSILON);
}

#[test]
fn percentiles_are_monotone() {
    let mut b = book(0.7);
    for k in 1..50 {
        b.positions.push(Position {
            collateral: f64::from(k),
            debt: f64::from(k) * (40.0 + f64::from(k)),
            liquidation_threshold: Some(0.9),
        });
    }
    for scenario in Scenario::defaults() {
        let mut i = input(4e-4, 168, 5000);
        i.slippage_per_usd = 1e-5;
        let s = summarize(&simulate(&i, &b, &scenario).unwrap());
        for t in [s.liquidations_at_risk, s.bad_debt_at_risk] {
            assert!(t.p95 <= t.p99 && t.p99 <= t.es99 + 1e-9, "{scenario:?}: {t:?}");
            assert!(t.mean <= t.es99 + 1e-9);
        }
        let c = s.liquidated_positions;
        assert!(c.p50 <= c.p95 && c.p95 <= c.p99, "{c:?}");
    }
}

#[test]
fn bridge_lows_lie_below_both_closes() {
    for scenario in [Scenario::Forecast, Scenario::InstantDrop { pct: 30.0 }] {
        let i = input(1e-3, 168, 1);
        let plan = Plan::new(&i, &scenario);
        let mut sampler = Sampler::stream(5, 0);
        let (mut lows, mut closes) = (vec![0.0; 168], vec![0.0; 168]);
        for _ in 0..500 {
            plan.sample_path(&mut sampler, plan.t_constants(), &mut lows, &mut closes);
            let mut previous = plan.start;
            for (&low, &close) in lows.iter().zip(&closes) {
                assert!(
                    low <= previous.min(close) && low.is_finite(),
                    "{previous} {close} {low}"
                );
                previous = close;
            }
        }
    }
}

#[test]
fn running_minimum_matches_the_reflection_principle() {
    // Normal innovations, 4 hours of variance 1e-4 each: P(min <= -m) = 2 Phi(-m / sigma), so
    // the 99% quantile of the fall is m = z_{0.995} * 0.02 in log terms.
    let mut i = input(1e-4, 4, 200_000);
    i.df = f64::INFINITY;
    let plan = Plan::new(&i, &Scenario::Forecast);
    let mut minima: Vec<f64> = (0..200)
        .into_par_iter()
        .flat_map_iter(|chunk| {
            let mut sampler = Sampler::stream(3, chunk);
            let (mut lows, mut closes) = ([0.0; 4], [0.0; 4]);
            (0..1000)
                .map(|_| {
                    plan.sample_path(&mut sampler, None, &mut lows, &mut closes);
                    -lows.iter().copied().fold(f64::INFINITY, f64::min)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    minima.sort_unstable_by(f64::total_cmp);
    let simulated = rank_quantile(&minima, 0.99);
    let expected = normal_quantile(0.995) * 0.02;
    assert!(
        (simulated / expected - 1.0).abs() < 0.03,
        "{simulated} vs {expected}"
    );
    // Closes only would understate it: the close at 4 h has quantile z_{0.99} * 0.02.
    assert!(simulated > normal_quantile(0.99) * 0.02 * 1.05);
}

/// With Student-t innovations each hour is Brownian at the variance it drew, so the reflection
/// principle holds hour by hour: P(low <= -m) = 2 P(close <= -m). Drawn at the hour's mean
/// variance (until stop 50), the low's tail fell short of it.
#[test]
fn student_t_hours_dip_as_deep_as_the_reflection_principle_says() {
    let ratio = |bridge: Bridge| {
        let i = StressInput {
            bridge,
            ..input(1e-4, 1, 1)
        };
        let plan = Plan::new(&i, &Scenario::Forecast);
        let t = plan.t_constants();
        let (lows, closes): (Vec<f64>, Vec<f64>) = (0..400)
            .into_par_iter()
            .flat_map_iter(|chunk| {
                let mut sampler = Sampler::stream(21, chunk);
                let (mut low, mut close) = ([0.0; 1], [0.0; 1]);
                (0..1000)
                    .map(|_| {
                        plan.sample_path(&mut sampler, t, &mut low, &mut close);
                        (low[0], close[0])
                    })
                    .collect::<Vec<_>>()
            })
            .unzip();
        let mut sorted = closes.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        // The close's 0.5% quantile, a fall of about 3.5 hourly sd.
        let m = sorted[sorted.len() / 200];
        let below = |v: &[f64]| v.iter().filter(|&&x| x <= m).count() as f64;
        below(&lows) / below(&closes)
    };
    let drawn = ratio(Bridge::HourDrawn);
    let mean = ratio(Bridge::MeanVariance);
    eprintln!("P(low <= -m) / P(close <= -m): {drawn:.3} at the drawn variance, {mean:.3} at the mean");
    assert!((drawn / 2.0 - 1.0).abs() < 0.05, "{drawn}");
    // The mean variance's bridge fell far short in the tail (1.19 at stop 50).
    assert!(mean < 1.5, "{mean}");
}

#[test]
fn liquidation_probability_matches_the_reflection_principle() {
    // A position that triggers when the price falls below exp(-m): probability 2 Phi(-m/sigma).
    let mut i = input(1e-4, 4, 100_000);
    i.df = f64::INFINITY;
    let m = normal_quantile(0.975) * 0.02; // P = 5%
    let b = Book {
        positions: vec![Position {
            collateral: 1.0,
            debt: 100.0 * (-m).exp(),
            liquidation_threshold: Some(1.0),
        }],
        default_liquidation_threshold: 0.8,
    };
    let p = summarize(&simulate(&i, &b, &Scenario::Forecast).unwrap()).liquidation_probability;
    assert!((p - 0.05).abs() < 0.003, "{p}");
}

#[test]
fn student_t_innovations_have_unit_variance_and_fat_tails() {
    let i = input(1e-4, 1, 1);
    let plan = Plan::new(&i, &Scenario::Forecast);
    let t = plan.t_constants();
    let mut sampler = Sampler::stream(9, 0);
    let draws: Vec<f64> = (0..400_000)
        .map(|_| {
            let (shape, scale) = t.unwrap();
            sampler.normal() * scale / sampler.gamma(shape).sqrt()
        })
        .collect();
    let n = draws.len() as f64;
    let var = draws.iter().map(|x| x * x).sum::<f64>() / n;
    assert!((var - 1.0).abs() < 0.05, "{var}");
    // Standardised t(4): P(|x| > 3) = P(|T| > 3 sqrt 2) = 1.31%, against 0.27% for a normal.
    let share = draws.iter().filter(|x| x.abs() > 3.0).count() as f64 / n;
    assert!((share - 0.0131).abs() < 0.001, "{share}");
}

#[test]
fn deterministic_for_a_seed_and_thread_count() {
    let i = input(4e-4, 168, 3000);
    let b = book(0.75);
    let a = simulate(&i, &b, &Scenario::Forecast).unwrap();
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| simulate(&i, &b, &Scenario::Forecast).unwrap());
    assert_eq!(a, single);
    let mut other = i.clone();
    other.seed += 1;
    assert_ne!(a, simulate(&other, &b, &Scenario::Forecast).unwrap());
}

#[test]
fn delay_and_slippage_each_add_bad_debt() {
    let mut i = input(4e-4, 168, 4000);
    let b = book(0.84);
    let calm = summarize(&simulate(&i, &b, &Scenario::Forecast).unwrap());
    // The delay alone (no slippage to scale): the sale takes the lowest low of more hours.
    let delayed = summarize(&simulate(&i, &b, &Scenario::LiquidityDrain { k: 3.0 }).unwrap());
    assert!(delayed.bad_debt_at_risk.mean > calm.bad_debt_at_risk.mean);
    assert!((calm.liquidation_probability - delayed.liquidation_probability).abs() < 1e-12);
    // The slippage alone.
    i.slippage_per_usd = 1e-3;
    let slipped = summarize(&simulate(&i, &b, &Scenario::Forecast).unwrap());
    assert!(slipped.bad_debt_at_risk.mean > calm.bad_debt_at_risk.mean);
    assert!((calm.liquidation_probability - slipped.liquidation_probability).abs() < 1e-12);
}

/// The positions a path liquidates in one hour are sold together and pay the impact of their
/// total, so one loan and the same loan split into a thousand identical ones give the same
/// outcome on every path. Charged on each position's own sale (until stop 55), the split book
/// paid a thousandth of the impact.
#[test]
fn bad_debt_does_not_depend_on_how_the_book_is_split() {
    let whole = Book {
        positions: vec![Position {
            collateral: 1000.0,
            debt: 1000.0 * 100.0 * 0.78,
            liquidation_threshold: None,
        }],
        default_liquidation_threshold: 0.8,
    };
    let split = Book {
        positions: vec![
            Position {
                collateral: 1.0,
                debt: 100.0 * 0.78,
                liquidation_threshold: None,
            };
            1000
        ],
        ..whole.clone()
    };
    let outcomes = |impact: Impact, book: &Book| {
        let i = StressInput {
            // 30% impact on the whole 100,000 USD at the origin price: more than the 22%
            // margin of its debt, so every liquidation leaves bad debt.
            slippage_per_usd: 3e-6,
            impact,
            ..input(4e-4, 48, 2000)
        };
        simulate(&i, book, &Scenario::Forecast).unwrap()
    };
    // The same outcome on every path, `n` loans for each of `a`'s.
    let same = |a: &[PathOutcome], b: &[PathOutcome], n: u32| {
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            let near = |p: f64, q: f64| (p - q).abs() <= 1e-9 * x.liquidated_usd.max(1.0);
            assert!(
                x.liquidated_positions * n == y.liquidated_positions
                    && near(x.liquidated_usd, y.liquidated_usd)
                    && near(x.bad_debt_usd, y.bad_debt_usd),
                "path {k}: {x:?} against {y:?}"
            );
        }
    };
    let (a, b) = (
        outcomes(Impact::SoldTogether, &whole),
        outcomes(Impact::SoldTogether, &split),
    );
    assert!(
        a.iter().filter(|o| o.bad_debt_usd > 0.0).count() > 100,
        "paths with bad debt"
    );
    same(&a, &b, 1000);
    // One position alone pays the same either way; split, the old rule undercharged it.
    same(&a, &outcomes(Impact::PerPosition, &whole), 1);
    let old = summarize(&outcomes(Impact::PerPosition, &split));
    assert!(old.bad_debt_at_risk.mean < 0.5 * summarize(&b).bad_debt_at_risk.mean);
}

#[test]
fn replay_is_one_deterministic_path() {
    // -10% then -30% of lows: a 0.8 LTV position at LT 0.85 triggers in hour 2.
    let scenario = Scenario::Replay {
        name: "test".into(),
        log_returns: vec![(0.9f64.ln(), 0.9f64.ln()), (0.0, (0.7f64 / 0.9).ln()), (0.0, 0.0)],
    };
    let out = simulate(&input(1e-4, 5, 1000), &book(0.8), &scenario).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].liquidated_positions, 1);
    assert!((out[0].liquidated_usd - 70.0).abs() < 1e-9);
    assert!((out[0].bad_debt_usd - 10.0).abs() < 1e-9);
    // Its rate for the recommendation: the 3 hours replayed, not the 5 simulated.
    let plan = Plan::new(&input(1e-4, 5, 1000), &scenario);
    let rate = 0.9f64.ln().powi(2) / 3.0;
    assert!(
        (plan.variance_over(4.0) - 4.0 * rate).abs() < 1e-15,
        "{}",
        plan.variance_over(4.0)
    );
}

#[test]
fn bad_input_is_named() {
    let i = input(1e-4, 4, 10);
    let mut b = book(0.5);
    b.positions[0].collateral = -1.0;
    let e = simulate(&i, &b, &Scenario::Forecast).unwrap_err();
    assert_eq!(e.field, "positions[0].collateral");
    let e = simulate(
        &i,
        &Book {
            positions: vec![],
            ..book(0.5)
        },
        &Scenario::Forecast,
    )
    .unwrap_err();
    assert_eq!(e.field, "positions");
    let mut small_df = i.clone();
    small_df.df = 2.0;
    assert_eq!(
        simulate(&small_df, &book(0.5), &Scenario::Forecast)
            .unwrap_err()
            .field,
        "df"
    );
    let e = simulate(&i, &book(0.5), &Scenario::InstantDrop { pct: 100.0 }).unwrap_err();
    assert_eq!(e.field, "scenario.pct");
}

/// A forecast curve without a usable point is refused, not simulated as a market without
/// volatility.
#[test]
fn a_curve_without_a_usable_point_is_refused() {
    let curve = crate::curve::VarianceCurve::new(&[4, 24, 168], &[f64::NAN, f64::NAN, f64::NAN]);
    let i = StressInput {
        hourly_variance: curve.hourly(4),
        ..input(1e-4, 4, 10)
    };
    let e = simulate(&i, &book(0.5), &Scenario::Forecast).unwrap_err();
    assert_eq!(e.field, "hourly_variance[0]");
}

#[test]
fn recommendation_follows_the_scenario() {
    let i = input(1e-4, 168, 100);
    let settings = crate::policy::RiskSettings::default();
    let forecast = crate::curve::VarianceCurve::new(&[4, 24, 168], &[4e-4, 24e-4, 168e-4]);
    let liquidity = crate::policy::liquidity(&[4, 24, 168], &[0.0; 3], &[f64::NAN; 3], settings.tau);
    let policy = ScenarioPolicy {
        forecast: &forecast,
        liquidity: &liquidity,
        settings: &settings,
        rule: DrawdownRule::Reflection,
        window: crate::policy::DrawdownWindow::UpToTau,
    };
    let scenarios = [
        Scenario::Forecast,
        Scenario::VolatilityShock { k: 2.0 },
        Scenario::LiquidityDrain { k: 3.0 },
    ];
    let reports = run(&i, &book(0.5), &scenarios, &policy, &simulate).unwrap();
    let (base, shock, drain) = (
        &reports[0].recommendation,
        &reports[1].recommendation,
        &reports[2].recommendation,
    );
    assert!((base.variance_tau - 4e-4).abs() < 1e-15);
    assert!((shock.variance_tau - 16e-4).abs() < 1e-15);
    assert!((drain.variance_tau - 12e-4).abs() < 1e-15);
    // Under the forecast, the scenario's parameters are the policy's at the origin.
    let at_origin = crate::policy::recommend(
        &crate::policy::Forecasts {
            horizons: &[4, 24, 168],
            variance: &[4e-4, 24e-4, 168e-4],
            shortage_probability: &[0.0; 3],
            illiquidity: &[f64::NAN; 3],
        },
        &settings,
        None,
        DrawdownRule::Reflection,
        crate::policy::DrawdownWindow::UpToTau,
    );
    assert_eq!(base.liquidation_threshold, at_origin.policy.liquidation_threshold);
    assert_eq!(base.max_ltv, at_origin.policy.max_ltv);
    assert!(shock.liquidation_threshold < base.liquidation_threshold);
    assert!(drain.liquidation_threshold < base.liquidation_threshold);
    let by_hand = (1.0 - (1.0 - (-normal_quantile(0.995) * 0.02f64).exp())) / 1.05;
    assert!((base.liquidation_threshold - by_hand).abs() < 1e-12);
    assert!(base.liquidation_threshold * (1.0 + base.liquidation_bonus) <= 1.0 + 1e-12);
    assert_eq!(reports[2].liquidation_delay_hours, 12);
}

/// A replay window longer than the horizon applies the hours of its deepest fall, not its first
/// ones: a week-long crash window replayed at 24 h showed no loss at all, its fall lying past
/// the first day. The rule of answers recorded before is kept for their replay.
#[test]
fn a_long_replay_is_cut_at_its_deepest_fall() {
    // Flat for 100 hours, then ten hours of 4% falls (a 34% crash), then a slow recovery.
    let mut window = vec![(0.0, -0.001); 100];
    window.extend(vec![(0.96f64.ln(), 0.95f64.ln()); 10]);
    window.extend(vec![(0.01, 0.0); 58]);
    assert_eq!(
        deepest_fall(&window, 24),
        100 - 14,
        "the earliest start holding the whole fall"
    );
    assert_eq!(deepest_fall(&window, 168), 0);
    assert_eq!(deepest_fall(&window[..10], 24), 0);
    let scenario = Scenario::Replay {
        name: "crash".into(),
        log_returns: window,
    };
    let at = |cut: ReplayCut| {
        let i = StressInput {
            replay_cut: cut,
            ..input(1e-4, 24, 1)
        };
        (
            summarize(&simulate(&i, &book(0.7), &scenario).unwrap()).liquidation_probability,
            Plan::new(&i, &scenario).replay_from,
        )
    };
    assert_eq!(at(ReplayCut::DeepestFall), (1.0, Some(86)));
    assert_eq!(at(ReplayCut::First), (0.0, None), "the first day is flat");
    // A window that fits in the horizon is applied whole from its first hour under either rule.
    let whole = StressInput {
        replay_cut: ReplayCut::DeepestFall,
        ..input(1e-4, 168, 1)
    };
    assert_eq!(Plan::new(&whole, &scenario).replay_from, None);
}
