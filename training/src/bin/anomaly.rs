//! `anomaly`: the market-behaviour anomaly detector's commands.
//!
//! ```text
//! cargo run --release --bin anomaly -- train --fit-until 2021-12-31 --out model-artifacts/e511b0d43982c4cf/anomaly.json
//! cargo run --release --bin anomaly -- train --fit-until 2020-12-31 --out model-artifacts/693e44b5f740fc82/anomaly.json
//! cargo run --release --bin anomaly -- evaluate --detector model-artifacts/693e44b5f740fc82/anomaly.json --from 2021-01-01 --to 2021-12-31
//! cargo run --release --bin anomaly -- folds                  # for Y in 2019..2021: fit to Y-1, score Y
//! cargo run --release --bin anomaly -- folds --flags-per-month 2 --out walk-forward/anomaly-2pm
//! cargo run --release --bin anomaly -- chart --detector model-artifacts/693e44b5f740fc82/anomaly.json \
//!     --asset KLAYUSDT --from 2021-10-07 --to 2021-10-12 --out chart.svg
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use volcast_core::anomaly::{AdaptiveConfig, DetectorConfig, MAX_DIRECTION_HOURS, Scorer};
use volcast_core::time::{Bound, parse_time};
use volcast_training::anomaly::evaluate::{EvalConfig, evaluate, in_sample_warning, render};
use volcast_training::anomaly::{DataDirs, Markets, chart, fit, load, save, summary};

/// The anomaly detector: fit, evaluate on a period with injected manipulations, chart.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// The shared data's root (holding `binance-spot-1h/` and `defi/`).
    #[arg(
        long,
        env = "VOLCAST_SHARED_DATA",
        default_value = "../shared/data",
        global = true
    )]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fits a detector on the data up to `--fit-until` and writes it.
    Train {
        /// Last day (or hour) of fit data.
        #[arg(long)]
        fit_until: String,
        /// Where the detector's JSON goes (the server reads `anomaly.json` in the directory of
        /// the artifact it serves).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        fit: FitArgs,
    },
    /// Scores a period: false alarms on real data, top events, recall of injected manipulations.
    Evaluate {
        /// The detector's JSON.
        #[arg(long)]
        detector: PathBuf,
        #[command(flatten)]
        eval: EvalArgs,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Walk-forward: for each year, fit on the data before it and evaluate it.
    Folds {
        /// Years scored.
        #[arg(long, value_delimiter = ',', default_values_t = [2019, 2020, 2021])]
        years: Vec<i32>,
        /// Where each fold's detector and report go (`<out>/fold-<Y>/`).
        #[arg(long, default_value = "walk-forward/anomaly")]
        out: PathBuf,
        /// Injections per pattern and strength (at least 1: a recall over none was printed as 0).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        injections: u32,
        /// Seed of the injection sampler.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Each fold's detector.
        #[command(flatten)]
        fit: FitArgs,
    },
    /// Draws one asset's price, volume and score over a window, flags marked, as SVG.
    Chart {
        /// The detector's JSON.
        #[arg(long)]
        detector: PathBuf,
        /// Asset, e.g. BTCUSDT.
        #[arg(long)]
        asset: String,
        /// First hour shown.
        #[arg(long)]
        from: String,
        /// Last hour shown.
        #[arg(long)]
        to: String,
        /// Where the SVG goes.
        #[arg(long)]
        out: PathBuf,
    },
}

/// A stated rate a fit can measure: 0, a negative or NaN would give thresholds that never or
/// always flag.
fn flags_per_month(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if x > 0.0 && x <= 72.0 {
        Ok(x)
    } else {
        Err(format!("{x} is outside (0, 72]"))
    }
}

/// How a detector is fitted.
#[derive(Debug, clap::Args)]
struct FitArgs {
    /// Stated false alarms per market per 30 days on ordinary data, above 0 and at most 72 (one
    /// hour in ten).
    #[arg(long, default_value_t = 1.0, value_parser = flags_per_month)]
    flags_per_month: f64,
    /// Learn the wick's marginal given the hour's volume (a wick ordinary for its volume
    /// scores ordinary): `true` or `false`.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    wick_given_volume: bool,
    /// Also judge each asset-hour along the candle patterns' directions (pump and dump, wash
    /// trading, spoofed wick), each with its own threshold at the common tail fraction: `true`
    /// or `false`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    directed: bool,
    /// Hours the pump-and-dump direction is judged over, the scored one included (1: that hour
    /// alone; at most 24): its projection summed over them (with `--directed true`).
    #[arg(long, default_value_t = DetectorConfig::default().pump_hours)]
    pump_hours: usize,
    /// At a pool snapshot where the LP supply changed, a fall of the liquidity per LP token
    /// smaller than this fraction is read as the protocol fee minted with it, not a drain (0:
    /// off; at most 0.1).
    #[arg(long, default_value_t = 0.005)]
    fee_mint_bound: f64,
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// First hour scored.
    #[arg(long)]
    from: String,
    /// Last hour scored.
    #[arg(long)]
    to: String,
    /// Injections per pattern and strength (at least 1: a recall over none was printed as 0).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    injections: u32,
    /// Seed of the injection sampler.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Top events listed.
    #[arg(long, default_value_t = 15)]
    top: usize,
}

fn time(text: &str, bound: Bound) -> anyhow::Result<i64> {
    parse_time(text, bound).map_err(|e| anyhow::anyhow!("{e}"))
}

fn train(data: &DataDirs, until: i64, out: &Path, fit_args: &FitArgs) -> anyhow::Result<()> {
    let bound = fit_args.fee_mint_bound;
    if !(0.0..=0.1).contains(&bound) {
        anyhow::bail!("--fee-mint-bound {bound}: a fraction from 0 to 0.1");
    }
    let hours = fit_args.pump_hours;
    if !(1..=MAX_DIRECTION_HOURS).contains(&hours) {
        anyhow::bail!("--pump-hours {hours}: from 1 to {MAX_DIRECTION_HOURS}");
    }
    let mut config = DetectorConfig {
        flags_per_month: fit_args.flags_per_month,
        wick_given_volume: fit_args.wick_given_volume,
        directed: fit_args.directed,
        pump_hours: hours,
        ..DetectorConfig::default()
    };
    config.features = config.features.with_fee_mint_fraction(bound);
    let min_assets = config.market_min_assets;
    let markets = Markets::load(data, until, &config)?;
    let d = fit(&markets, until, config);
    // Without fit rows a model's quantiles are not numbers: the file would be written and never
    // load again (nor serve).
    for (model, rows) in [
        ("candles", d.candles.fit_rows),
        ("candles_market", d.candles_market.fit_rows),
    ] {
        anyhow::ensure!(
            rows > 0,
            "the {model} model has no fit rows up to the fit end{}: nothing written",
            if model == "candles_market" {
                format!(" (the market model needs at least {min_assets} assets trading in the same hours)")
            } else {
                String::new()
            }
        );
    }
    // Written only if it loads back: a served detector is never replaced by one that does not.
    save(&d, out)?;
    for (k, v) in summary(&d) {
        println!("{k}: {v}");
    }
    println!("written: {}", out.display());
    Ok(())
}

fn run_eval(
    data: &DataDirs,
    detector: &Path,
    eval: &EvalConfig,
    json: Option<&Path>,
) -> anyhow::Result<String> {
    if eval.from_ms > eval.to_ms {
        anyhow::bail!("--from is after --to: nothing to score");
    }
    let d = load(detector)?;
    let markets = Markets::load(data, eval.to_ms, &d.config)?;
    let report = evaluate(&Scorer::new(d), &markets, eval);
    // A period the data does not cover is a mistake, not a report of zeros.
    if report.candles_alone.scored == 0 {
        anyhow::bail!(
            "no candle hour of the data lies in {} .. {}: nothing to score",
            report.from,
            report.to
        );
    }
    if report.in_sample {
        eprintln!("warning: {}", in_sample_warning(&report));
    }
    if let Some(path) = json {
        volcast_training::cli::write_report(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(render(&report))
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(|| {
        let args = Args::parse();
        let data = DataDirs {
            root: args.data.clone(),
        };
        match args.command {
            Command::Train { fit_until, out, fit } => train(&data, time(&fit_until, Bound::End)?, &out, &fit),
            Command::Evaluate { detector, eval, json } => {
                volcast_training::cli::writable_output("--json", json.as_deref())?;
                let config = EvalConfig {
                    from_ms: time(&eval.from, Bound::Start)?,
                    to_ms: time(&eval.to, Bound::End)?,
                    injections: eval.injections as usize,
                    seed: eval.seed,
                    top: eval.top,
                    adaptive: AdaptiveConfig::default(),
                };
                print!("{}", run_eval(&data, &detector, &config, json.as_deref())?);
                Ok(())
            }
            Command::Folds {
                years,
                out,
                injections,
                seed,
                fit,
            } => {
                // Every year checked before any fold is fitted: a year after the data wrote its
                // detector and only then said there was nothing to score.
                let assets = volcast_training::data::load_dirs(&[data.candles()])
                    .with_context(|| format!("loading {}", data.candles().display()))?;
                let first = assets
                    .iter()
                    .filter_map(|a| a.candles.first().map(|c| c.open_time))
                    .min();
                let last = assets
                    .iter()
                    .filter_map(|a| {
                        a.candles
                            .last()
                            .map(|c| c.open_time + volcast_core::time::HOUR_MS)
                    })
                    .max();
                drop(assets);
                volcast_training::walkforward::check_years_against(&years, first.zip(last))?;
                for y in years {
                    let dir = out.join(format!("fold-{y}"));
                    let path = dir.join(volcast_training::anomaly::DETECTOR_FILE);
                    let until = time(&format!("{}-12-31", y - 1), Bound::End)?;
                    // Always refitted (seconds): a detector left by an earlier build would
                    // score this code's features with another code's model.
                    train(&data, until, &path, &fit)?;
                    let config = EvalConfig {
                        from_ms: time(&format!("{y}-01-01"), Bound::Start)?,
                        to_ms: time(&format!("{y}-12-31"), Bound::End)?,
                        injections: injections as usize,
                        seed,
                        top: 10,
                        adaptive: AdaptiveConfig::default(),
                    };
                    let text = run_eval(&data, &path, &config, Some(&dir.join("report.json")))?;
                    volcast_training::cli::write_report(&dir.join("report.md"), &text)?;
                    println!("## Fold {y}\n\n{text}");
                }
                Ok(())
            }
            Command::Chart {
                detector,
                asset,
                from,
                to,
                out,
            } => {
                let d = load(&detector)?;
                let title = format!(
                    "{asset}, {from} .. {to}: close, volume, anomaly score (detector {}, fit until {})",
                    d.id, d.fit_until
                );
                let (from, to) = (time(&from, Bound::Start)?, time(&to, Bound::End)?);
                let markets = Markets::load(&data, to, &d.config)?;
                let candles = markets.candles_of(&asset).with_context(|| {
                    format!(
                        "no candles of {asset} up to {}",
                        volcast_core::time::format_ms(to)
                    )
                })?;
                let verdicts = Scorer::new(d).score_candles(candles, Some(&markets.market));
                let shown: Vec<_> = candles.iter().filter(|c| c.open_time >= from).copied().collect();
                let scored: Vec<_> = verdicts.into_iter().filter(|v| v.time_ms >= from).collect();
                chart::render(&out, &title, &shown, &scored)?;
                println!("written: {}", out.display());
                Ok(())
            }
        }
    })
}
