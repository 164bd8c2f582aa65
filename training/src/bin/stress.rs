//! `stress`: simulates a lending book under the model's forecast distribution and named
//! scenarios, and times the simulation (`--bench`).
//!
//! ```text
//! cargo run --release --bin stress -- --data ../shared/data/binance-spot-1h --asset ETHUSDT \
//!     --model model-artifacts --positions book.json --at 2021-05-18T00:00:00Z --json out.json
//! cargo run --release --bin stress -- --bench --paths 100000 --horizon 168 --device cpu
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use volcast_core::policy::{
    AskedSettings, DEFAULT_ALPHA, DEFAULT_BONUS, DEFAULT_BONUS_MARGIN, DEFAULT_TAU, DEFAULT_TAU_USER,
    FLAG_NAMES, RiskSettings, SALE_SIZE_RANGE,
};
use volcast_core::stress::{self, Book, DEFAULT_DF, Position, Scenario, ScenarioReport, StressInput};
use volcast_core::time::{Bound, parse_time};
use volcast_model::device::{DeviceChoice, select};
use volcast_training::stress_gpu;
use volcast_training::stress_session::{Prepared, Request, prepare, read_book};

/// Stress-test a book of loans backed by one asset: liquidations at risk and bad debt at risk
/// (95th and 99th percentiles over simulated paths) under the model's forecast and under shocks
/// and historical replays, with the parameters the engine would recommend under each.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Candle directories (repeatable). Default: ../shared/data/binance-spot-1h when present,
    /// else data/ and its subdirectories.
    #[arg(long = "data", env = "VOLCAST_DATA", value_delimiter = ',')]
    data: Vec<PathBuf>,
    /// Collateral asset, e.g. ETHUSDT.
    #[arg(long, required_unless_present = "bench")]
    asset: Option<String>,
    /// Model artifact, or an artifacts directory with a `default` pointer.
    #[arg(long, default_value = "model-artifacts")]
    model: PathBuf,
    /// A JSON file holding the book: an array of {"collateral": units, "debt": USD,
    /// "liquidation_threshold"?}, or {"positions": [...], "default_liquidation_threshold": 0.8}.
    #[arg(long, required_unless_present = "bench")]
    positions: Option<PathBuf>,
    /// Simulated paths (1 to 10,000,000).
    #[arg(long, default_value_t = 100_000)]
    paths: usize,
    /// Hours simulated (1 to 8,760).
    #[arg(long, default_value_t = 168)]
    horizon: usize,
    /// Origin: close time of the last candle used (RFC 3339, on a whole hour; a plain date
    /// `YYYY-MM-DD` is its 00:00 UTC, the close of the day before's last candle); default the
    /// last candle.
    #[arg(long)]
    at: Option<String>,
    /// Where to draw the paths: cpu (the default: the server's streams, the same answer for a
    /// seed on every machine), wgpu on the GPU (software Vulkan included; other random
    /// streams), auto on a hardware GPU when one exists, else the CPU.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// Scenarios (repeatable): forecast, vol=K, drain=K, drop=PCT, replays. Default: forecast,
    /// vol=2, vol=3, drain=3, drop=20, drop=40 and the replays.
    #[arg(long = "scenario", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Student-t degrees of freedom of the hourly innovations, in (2, 1000] ("inf" for normal).
    #[arg(long, default_value_t = DEFAULT_DF)]
    df: f64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Quantile level of the recommended parameters' drawdown, in (0.5, 0.9999].
    #[arg(long, default_value_t = DEFAULT_ALPHA)]
    alpha: f64,
    /// Liquidation window, hours, in [1, 168] (lengthened by the shortage probability; also the
    /// sale delay).
    #[arg(long, default_value_t = DEFAULT_TAU as f64)]
    tau: f64,
    /// User reaction window, hours, in [1, 168].
    #[arg(long, default_value_t = DEFAULT_TAU_USER as f64)]
    tau_user: f64,
    /// Floor of the liquidation bonus, in [0, 1).
    #[arg(long, default_value_t = DEFAULT_BONUS)]
    bonus: f64,
    /// Margin over the expected slippage for the bonus, in [0, 1).
    #[arg(long, default_value_t = DEFAULT_BONUS_MARGIN)]
    bonus_margin: f64,
    /// Sale size for the recommended bonus's slippage, USD, in [0, 1e12]; default: the largest
    /// position's collateral value.
    #[arg(long)]
    sale_size: Option<f64>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Time the simulation of --paths x --horizon on a synthetic book instead (no data needed).
    #[arg(long)]
    bench: bool,
}

fn parse_scenario(text: &str) -> anyhow::Result<Option<Scenario>> {
    let (name, value) = text.split_once('=').unwrap_or((text, ""));
    let number = || -> anyhow::Result<f64> {
        value
            .parse()
            .with_context(|| format!("scenario `{text}`: `{value}` is not a number"))
    };
    Ok(Some(match name.trim() {
        "forecast" => Scenario::Forecast,
        "vol" | "volatility" => Scenario::VolatilityShock { k: number()? },
        "drain" | "liquidity" => Scenario::LiquidityDrain { k: number()? },
        "drop" => Scenario::InstantDrop { pct: number()? },
        "replays" => return Ok(None),
        other => bail!("unknown scenario `{other}`: use forecast, vol=K, drain=K, drop=PCT or replays"),
    }))
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(|| run(&Args::parse()))
}

/// The simulator for the chosen device: the burn device when it is wgpu, the CPU otherwise.
/// A fractional `df` is drawn on the CPU whatever the device (the GPU path draws a chi-square
/// as a sum of `df / 2` exponentials), and said so: the report and the bench named the GPU for
/// paths the CPU drew.
fn simulator(choice: DeviceChoice, df: f64) -> anyhow::Result<(String, Box<stress::Simulator<'static>>)> {
    if choice == DeviceChoice::Cpu {
        return Ok(("cpu".to_owned(), Box::new(stress::simulate)));
    }
    if !stress_gpu::draws_df(df) {
        eprintln!("--df {df}: not a whole number, so the paths are drawn on the CPU");
        return Ok(("cpu".to_owned(), Box::new(stress::simulate)));
    }
    let selected = select(choice)?;
    if selected.description.starts_with("wgpu") {
        let device = selected.device;
        Ok((
            selected.description,
            Box::new(move |i: &StressInput, b: &Book, s: &Scenario| stress_gpu::simulate(i, b, s, &device)),
        ))
    } else {
        Ok(("cpu".to_owned(), Box::new(stress::simulate)))
    }
}

/// The risk policy's settings from the flags, checked against the policy's ranges; the sale
/// size is the largest position's until the price is known.
fn settings(args: &Args) -> anyhow::Result<RiskSettings> {
    let asked = AskedSettings {
        alpha: Some(args.alpha),
        tau: Some(args.tau),
        tau_user: Some(args.tau_user),
        bonus: Some(args.bonus),
        bonus_margin: Some(args.bonus_margin),
        sale_size_usd: args.sale_size,
        max_step: None,
    };
    Ok(RiskSettings::resolve(
        &asked,
        &RiskSettings::default(),
        &FLAG_NAMES,
    )?)
}

/// The scenarios asked for (the defaults and the replays when none), `replays` expanded.
fn scenarios(args: &Args, replays: &[stress::ReplayWindow]) -> anyhow::Result<Vec<Scenario>> {
    let mut scenarios = Vec::new();
    let mut with_replays = args.scenarios.is_empty();
    if args.scenarios.is_empty() {
        scenarios = Scenario::defaults();
    }
    for s in &args.scenarios {
        match parse_scenario(s)? {
            Some(s) => scenarios.push(s),
            None => with_replays = true,
        }
    }
    if with_replays {
        scenarios.extend(replays.iter().map(stress::ReplayWindow::scenario));
    }
    Ok(scenarios)
}

/// Most paths, hours and degrees of freedom the command takes: the server's df bound (the GPU
/// path draws `df / 2` uniforms per innovation), and sizes that fit in memory.
const MAX_PATHS: usize = 10_000_000;
const MAX_HORIZON: usize = 8_760;
const MAX_DF: f64 = 1_000.0;

/// Refuses counts the simulation cannot run in reasonable memory and time.
fn check_sizes(args: &Args) -> anyhow::Result<()> {
    if !(1..=MAX_PATHS).contains(&args.paths) {
        bail!("--paths {}: from 1 to {MAX_PATHS}", args.paths);
    }
    if !(1..=MAX_HORIZON).contains(&args.horizon) {
        bail!("--horizon {}: from 1 to {MAX_HORIZON} hours", args.horizon);
    }
    if !(args.df > 2.0 && (args.df <= MAX_DF || args.df == f64::INFINITY)) {
        bail!(
            "--df {}: in (2, {MAX_DF}], or inf for normal innovations",
            args.df
        );
    }
    Ok(())
}

fn run(args: &Args) -> anyhow::Result<()> {
    check_sizes(args)?;
    volcast_training::cli::writable_output("--json", args.json.as_deref())?;
    if args.bench {
        return bench(args);
    }
    let (Some(asset), Some(positions)) = (&args.asset, &args.positions) else {
        bail!("--asset and --positions are required (or --bench)");
    };
    let dirs = volcast_training::pipeline::data_dirs(&args.data)?;
    let book = read_book(positions)?;
    let mut settings = settings(args)?;
    let at_ms = args.at.as_deref().map(origin_ms).transpose()?;
    let prepared = prepare(&Request {
        dirs,
        asset: asset.clone(),
        model: args.model.clone(),
        at_ms,
        horizon: args.horizon,
        settings,
        paths: args.paths,
        seed: args.seed,
        df: args.df,
    })?;
    let scenarios = scenarios(args, &prepared.replays)?;
    // The route's bounds: a book whose sums overflow gave NaN totals and tails.
    stress::book_usd(&book, prepared.input.price)
        .map_err(|e| anyhow::anyhow!("{}: {e}", positions.display()))?;
    if args.sale_size.is_none() {
        let largest = book.largest_value(prepared.input.price);
        if !SALE_SIZE_RANGE.contains(largest) {
            bail!(
                "the largest position's collateral value, {largest:e} USD, is outside {}: give --sale-size",
                SALE_SIZE_RANGE.text
            );
        }
        settings.sale_size_usd = largest;
    }
    let (device, simulate) = simulator(args.device, args.df)?;
    let started = Instant::now();
    let reports = prepared.run(&book, &scenarios, &settings, simulate.as_ref())?;
    let done = Done {
        asset,
        device,
        seconds: started.elapsed().as_secs_f64(),
        prepared: &prepared,
        book: &book,
        settings: &settings,
        reports: &reports,
    };
    done.print();
    if let Some(path) = &args.json {
        volcast_training::cli::write_report(path, serde_json::to_string_pretty(&done.json())?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A finished run: what was simulated, on what, and its reports.
struct Done<'a> {
    asset: &'a str,
    device: String,
    seconds: f64,
    prepared: &'a Prepared,
    book: &'a Book,
    settings: &'a RiskSettings,
    reports: &'a [ScenarioReport],
}

impl Done<'_> {
    /// The forecasts, the book and the table of scenarios, on stdout.
    fn print(&self) {
        let (prepared, input) = (self.prepared, &self.prepared.input);
        println!(
            "{} at {} (close {:.4}), model {}, {} paths x {} h on {}, df {}, {:.2} s",
            self.asset,
            prepared.origin,
            input.price,
            prepared.model_id,
            input.paths,
            input.hourly_variance.len(),
            self.device,
            input.df,
            self.seconds
        );
        let forecasts: Vec<String> = prepared
            .horizons
            .iter()
            .zip(&prepared.variance)
            .zip(&prepared.shortage_probability)
            .map(|((h, v), p)| format!("{h}h vol {:.2}% (shortage {:.0}%)", 100.0 * v.sqrt(), 100.0 * p))
            .collect();
        println!("forecast: {}", forecasts.join(", "));
        let book = stress::PreparedBook::new(self.book, input.price);
        let liquidity = &prepared.at_origin.liquidity;
        println!(
            "book: {} position{}, collateral ${:.0}, debt ${:.0}; slippage {:.3e} per $ (M_{}h {}), liquidation delay {} h (tau_eff {:.2} h); replays from {}",
            self.book.positions.len(),
            if self.book.positions.len() == 1 { "" } else { "s" },
            book.collateral_usd(),
            book.debt_usd(),
            input.slippage_per_usd,
            liquidity.horizon,
            liquidity
                .current_illiquidity
                .map_or("n/a".to_owned(), |m| format!("{m:.4}")),
            input.liquidation_delay_hours,
            liquidity.tau_effective,
            prepared.replay_source
        );
        print_table(self.reports);
    }

    /// The whole run as JSON (`--json`).
    fn json(&self) -> serde_json::Value {
        let (prepared, input) = (self.prepared, &self.prepared.input);
        let liquidity = &prepared.at_origin.liquidity;
        let book = stress::PreparedBook::new(self.book, input.price);
        serde_json::json!({
            "asset": self.asset,
            "origin": prepared.origin,
            "model": {"id": prepared.model_id, "hash": prepared.model_hash},
            "device": self.device,
            "price": input.price,
            "paths": input.paths,
            "horizon_hours": input.hourly_variance.len(),
            "df": if input.df.is_finite() { Some(input.df) } else { None },
            "seed": input.seed,
            "forecasts": prepared.horizons.iter().enumerate().map(|(k, h)| serde_json::json!({
                "horizon_hours": h,
                "variance": prepared.variance[k],
                "shortage_probability": prepared.shortage_probability[k],
            })).collect::<Vec<_>>(),
            "liquidity_horizon_hours": liquidity.horizon,
            "current_illiquidity": liquidity.current_illiquidity,
            "slippage_per_usd": input.slippage_per_usd,
            "tau_effective_hours": liquidity.tau_effective,
            "liquidation_delay_hours": input.liquidation_delay_hours,
            "settings": self.settings,
            "book": {
                "positions": self.book.positions.len(),
                "collateral_usd": book.collateral_usd(),
                "debt_usd": book.debt_usd(),
            },
            "replay_source": prepared.replay_source,
            "replays": prepared.replays.iter().map(|w| serde_json::json!({
                "name": w.name, "origin": w.origin, "end": w.end, "fall": w.fall,
            })).collect::<Vec<_>>(),
            "scenarios": self.reports,
        })
    }
}

fn print_table(reports: &[ScenarioReport]) {
    println!(
        "{:<30} {:>7} {:>12} {:>12} {:>12} {:>12} {:>12} {:>6} {:>7} {:>7} {:>6}",
        "scenario",
        "P(liq)",
        "LaR mean",
        "LaR p95",
        "LaR p99",
        "BDaR p95",
        "BDaR p99",
        "n p99",
        "LT",
        "maxLTV",
        "LB"
    );
    for r in reports {
        let s = &r.summary;
        let rec = &r.recommendation;
        println!(
            "{:<30} {:>6.2}% {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>6.0} {:>7.4} {:>7.4} {:>6.4}",
            r.scenario,
            100.0 * s.liquidation_probability,
            s.liquidations_at_risk.mean,
            s.liquidations_at_risk.p95,
            s.liquidations_at_risk.p99,
            s.bad_debt_at_risk.p95,
            s.bad_debt_at_risk.p99,
            s.liquidated_positions.p99,
            rec.liquidation_threshold,
            rec.max_ltv,
            rec.liquidation_bonus
        );
    }
}

/// Times `--paths x --horizon` on a synthetic book: 1% hourly volatility, Student-t(4), 200
/// positions at LTVs from 40% to 84%.
fn bench(args: &Args) -> anyhow::Result<()> {
    let input = StressInput {
        price: 100.0,
        hourly_variance: vec![1e-4; args.horizon],
        df: args.df,
        slippage_per_usd: 1e-8,
        liquidation_delay_hours: 4,
        paths: args.paths,
        seed: args.seed,
        bridge: stress::Bridge::default(),
        impact: stress::Impact::default(),
        replay_cut: stress::ReplayCut::default(),
    };
    let book = Book {
        positions: (0..200)
            .map(|i| Position {
                collateral: 1000.0,
                debt: 1000.0 * 100.0 * (0.40 + 0.0022 * f64::from(i)),
                liquidation_threshold: None,
            })
            .collect(),
        default_liquidation_threshold: 0.85,
    };
    let mut runs: Vec<(String, Box<stress::Simulator<'static>>)> =
        vec![("cpu".to_owned(), Box::new(stress::simulate))];
    if args.device != DeviceChoice::Cpu {
        let (name, sim) = simulator(args.device, args.df)?;
        if name != "cpu" {
            runs.push((name, sim));
        }
    }
    println!(
        "stress bench: {} paths x {} hourly steps, {} positions, df {}, {} rayon threads",
        input.paths,
        args.horizon,
        book.positions.len(),
        input.df,
        rayon::current_num_threads()
    );
    for (name, sim) in runs {
        // One warm-up run (tables, thread pool, device kernels), then the best of three.
        let warm = sim(&input, &book, &Scenario::Forecast)?;
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let started = Instant::now();
            let out = sim(&input, &book, &Scenario::Forecast)?;
            best = best.min(started.elapsed().as_secs_f64());
            std::hint::black_box(out);
        }
        let s = stress::summarize(&warm);
        println!(
            "{name}: {best:.3} s ({:.0} paths/s, {:.1} M steps/s); P(liq) {:.2}%, bad debt p99 ${:.0}",
            input.paths as f64 / best,
            (input.paths * args.horizon) as f64 / best / 1e6,
            100.0 * s.liquidation_probability,
            s.bad_debt_at_risk.p99
        );
    }
    Ok(())
}

/// `--at` in Unix ms, refused off the whole hour (before any file is read), where it was rounded
/// down to the hour without a word.
fn origin_ms(text: &str) -> anyhow::Result<i64> {
    let ms = parse_time(text, Bound::Start)?;
    let off = ms.rem_euclid(volcast_core::time::HOUR_MS);
    if off != 0 {
        bail!(
            "--at {text} is not on a whole hour: the origin is a candle's close time, such as {}",
            volcast_core::time::format_ms(ms - off)
        );
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the command cannot run are refused before anything is read (a `--df` of 1e12 on
    /// the GPU drew 5e11 uniforms per innovation; `--paths` of 1e10 aborted on allocation).
    #[test]
    fn sizes_out_of_range_are_refused() {
        let with = |extra: &[&str]| {
            let mut argv = vec!["stress", "--bench"];
            argv.extend_from_slice(extra);
            check_sizes(&Args::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?)
        };
        assert!(with(&[]).is_ok());
        assert!(with(&["--df", "inf"]).is_ok());
        for (flag, bad) in [
            ("--df", "1e12"),
            ("--df", "2"),
            ("--df", "NaN"),
            ("--paths", "10000000000"),
            ("--paths", "0"),
            ("--horizon", "1000000000000"),
        ] {
            let err = with(&[flag, bad]).unwrap_err().to_string();
            assert!(err.contains(flag), "{flag} {bad}: {err}");
        }
    }

    /// A report reruns to the same figures on any machine unless a GPU is asked for: `auto`
    /// took a hardware GPU's other random streams where one was.
    #[test]
    fn the_paths_are_drawn_on_the_cpu_unless_a_gpu_is_asked_for() {
        let parsed = |extra: &[&str]| {
            let mut argv = vec!["stress", "--bench"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).map(|a| a.device).ok()
        };
        assert_eq!(parsed(&[]), Some(DeviceChoice::Cpu));
        assert_eq!(parsed(&["--device", "wgpu"]), Some(DeviceChoice::Wgpu));
        assert_eq!(parsed(&["--device", "auto"]), Some(DeviceChoice::Auto));
    }
}
