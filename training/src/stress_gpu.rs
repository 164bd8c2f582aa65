//! The simulation's draws on a burn device: innovations, cumulative log closes and Brownian-bridge
//! lows are tensors `[paths, hours]` on the device (wgpu when a GPU is in use); the per-path
//! settlement against the book then runs on the CPU with the same code as [`volcast_core::stress::simulate`].
//!
//! Same model as the CPU path, other random streams: results agree up to sampling noise. The
//! device's generator is seeded with the input's seed. Student-t innovations need an integer
//! `df` here (`chi2(df)` as `-2 ln` of `df / 2` uniforms' product, plus a squared normal for odd
//! `df`); a fractional `df` and deterministic replays run on the CPU.

use burn::prelude::*;
use burn::tensor::Distribution;
use rayon::prelude::*;

use volcast_core::stress::{
    Book, Bridge, PathOutcome, Plan, PreparedBook, Scenario, StressError, StressInput,
    simulate as simulate_on_cpu, validate,
};

/// Paths per batch of tensors (bounds device memory: a few `[batch, hours]` f32 tensors).
pub const BATCH: usize = 16_384;
/// Smallest uniform drawn, so that `ln U` stays finite.
const MIN_UNIFORM: f64 = 1e-7;

/// Whether the device draws innovations of `df` degrees of freedom: normal ones (infinite) or a
/// whole number; [`simulate`] draws the others on the CPU.
#[must_use]
pub fn draws_df(df: f64) -> bool {
    !df.is_finite() || df.fract() == 0.0
}

/// Simulates `scenario` with the draws on `device` (replays, one deterministic path, and a
/// fractional `df` on the CPU).
///
/// # Errors
/// [`StressError`] for input [`validate`] rejects.
pub fn simulate(
    input: &StressInput,
    book: &Book,
    scenario: &Scenario,
    device: &Device,
) -> Result<Vec<PathOutcome>, StressError> {
    validate(input, book, scenario)?;
    let plan = Plan::new(input, scenario);
    if plan.replay.is_some() || !draws_df(plan.df) {
        return simulate_on_cpu(input, book, scenario);
    }
    let prepared = PreparedBook::new(book, input.price);
    let h = plan.horizon();
    device.seed(input.seed);
    let row = |values: Vec<f32>| Tensor::<2>::from_data(TensorData::new(values, [1, h]), device); // [1, hours]
    let sd = row(plan.sd.iter().map(|&s| s as f32).collect());
    let two_var = row(plan.var.iter().map(|&v| (2.0 * v) as f32).collect());
    let mut out = Vec::with_capacity(plan.paths);
    let mut done = 0;
    while done < plan.paths {
        let b = BATCH.min(plan.paths - done);
        // A read-back that fails is an error, never a batch of no paths.
        let lows = lows(&plan, b, &sd, &two_var, device).map_err(|message| StressError {
            field: "device".into(),
            message,
        })?;
        out.par_extend(lows.par_chunks(h).map_init(
            || (vec![0.0f64; h], Vec::new()),
            |(buffer, groups), path| {
                for (x, &l) in buffer.iter_mut().zip(path) {
                    *x = f64::from(l);
                }
                prepared.settle(buffer, &plan, groups)
            },
        ));
        done += b;
    }
    Ok(out)
}

/// `b` paths of hourly lows, row-major `[b, hours]`.
fn lows(
    plan: &Plan,
    b: usize,
    sd: &Tensor<2>,
    two_var: &Tensor<2>,
    device: &Device,
) -> Result<Vec<f32>, String> {
    let h = plan.horizon();
    let uniform = || Tensor::<2>::random([b, h], Distribution::Uniform(MIN_UNIFORM, 1.0), device); // [paths, hours]
    let z = Tensor::<2>::random([b, h], Distribution::Normal(0.0, 1.0), device); // [paths, hours]
    // The innovations, and each hour's bridge variance (times 2): the variance the hour drew,
    // or its mean ([`volcast_core::stress::Bridge`]).
    let (eps, two_var) = if plan.df.is_finite() {
        // chi2(df) = -2 ln(U_1 ... U_{df/2}) (+ Z'^2 for odd df); eps = Z sqrt((df - 2) / chi2).
        let pairs = (plan.df / 2.0).floor() as usize;
        let mut chi2 = Tensor::<2>::zeros([b, h], device);
        for _ in 0..pairs {
            chi2 = chi2 - uniform().log() * 2.0;
        }
        if plan.df % 2.0 == 1.0 {
            chi2 = chi2 + Tensor::<2>::random([b, h], Distribution::Normal(0.0, 1.0), device).powi_scalar(2);
        }
        let mix = chi2.recip() * (plan.df - 2.0); // [paths, hours]: the square of the mixing factor
        let two_var = match plan.bridge {
            Bridge::HourDrawn => mix.clone() * two_var.clone(),
            Bridge::MeanVariance => two_var.clone(),
        };
        (z * mix.sqrt(), two_var)
    } else {
        (z, two_var.clone())
    };
    let y = (eps * sd.clone()).cumsum(1) + plan.start; // [paths, hours] log closes
    let first = Tensor::<2>::full([b, 1], plan.start, device); // [paths, 1]
    let previous = if h > 1 {
        Tensor::cat(vec![first, y.clone().narrow(1, 0, h - 1)], 1) // [paths, hours]
    } else {
        first
    };
    let d = y.clone() - previous.clone();
    let spread = (d.powi_scalar(2) - uniform().log() * two_var).sqrt();
    let low = (previous + y - spread) * 0.5; // [paths, hours]
    low.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| format!("reading the lows back from the device: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use volcast_core::stress::{Position, summarize};
    use volcast_model::device::{DeviceChoice, select};

    fn check_against_cpu(device: &Device) {
        let input = StressInput {
            price: 2000.0,
            hourly_variance: vec![2e-4; 168],
            df: 4.0,
            slippage_per_usd: 1e-7,
            liquidation_delay_hours: 4,
            paths: 4000,
            seed: 1,
            bridge: Bridge::default(),
            impact: volcast_core::stress::Impact::default(),
            replay_cut: volcast_core::stress::ReplayCut::default(),
        };
        let book = Book {
            positions: (1..=20)
                .map(|k| Position {
                    collateral: 10.0,
                    debt: 10.0 * 2000.0 * (0.5 + 0.015 * f64::from(k)),
                    liquidation_threshold: None,
                })
                .collect(),
            default_liquidation_threshold: 0.85,
        };
        for scenario in [Scenario::Forecast, Scenario::InstantDrop { pct: 20.0 }] {
            let cpu = summarize(&simulate_on_cpu(&input, &book, &scenario).unwrap());
            let gpu = summarize(&simulate(&input, &book, &scenario, device).unwrap());
            assert_eq!(gpu.paths, 4000);
            let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0);
            assert!(
                (cpu.liquidation_probability - gpu.liquidation_probability).abs() < 0.04,
                "{scenario:?}: {cpu:?} vs {gpu:?}"
            );
            assert!(
                close(cpu.liquidations_at_risk.p95, gpu.liquidations_at_risk.p95, 0.1),
                "{scenario:?}: {cpu:?} vs {gpu:?}"
            );
            assert!(
                close(cpu.liquidated_positions.mean, gpu.liquidated_positions.mean, 0.1),
                "{scenario:?}: {cpu:?} vs {gpu:?}"
            );
        }
    }

    #[test]
    fn tensor_draws_match_the_cpu_on_flex() {
        check_against_cpu(&select(DeviceChoice::Cpu).unwrap().device);
    }

    #[test]
    fn tensor_draws_match_the_cpu_on_wgpu() {
        let required = std::env::var_os("VOLCAST_REQUIRE_WGPU").is_some();
        match select(DeviceChoice::Wgpu) {
            Ok(selected) => check_against_cpu(&selected.device),
            Err(e) => {
                assert!(!required, "VOLCAST_REQUIRE_WGPU is set but {e}");
                eprintln!("skipping: {e} (set VOLCAST_REQUIRE_WGPU=1 to make this a failure)");
            }
        }
    }
}
