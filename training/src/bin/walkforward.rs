//! `walkforward`: SPEC's walk-forward folds. For each year, the network, its calibration and
//! the baselines are fitted on the candles before it, then the year is scored as `evaluate`
//! does; one summary per fold and the worst.
//!
//! ```text
//! cargo run --release --bin walkforward                    # folds 2019, 2020, 2021 on the shared data
//! cargo run --release --bin walkforward -- --years 2021    # one fold
//! cargo run --release --bin walkforward -- --seed-sets 2   # and again with seeds 45-47
//! ```

use std::path::PathBuf;

use clap::Parser;
use clap::builder::TypedValueParser as _;
use volcast_core::policy::{DEFAULT_ALPHA, DEFAULT_BONUS, DEFAULT_TAU};
use volcast_model::device::DeviceChoice;
use volcast_training::walkforward::{WalkForward, render, run, write_json};

/// Walk-forward folds: fit on the years before each scored year, score it, summarise.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Candle directories (repeatable; also `VOLCAST_DATA`, comma-separated, as every other
    /// command reads it). Default: ../shared/data/binance-spot-1h when present.
    #[arg(long, env = "VOLCAST_DATA", value_delimiter = ',')]
    data: Vec<PathBuf>,
    /// Years scored, one fold each (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [2019, 2020, 2021],
          value_parser = clap::value_parser!(i32).range(2000..=2100))]
    years: Vec<i32>,
    /// Where each fold's artifact goes (`<out>/fold-<Y>/`); a fold found there is not retrained.
    #[arg(long, default_value = "walk-forward")]
    out: PathBuf,
    /// Training device.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// A training config JSON to start from (default: the default model's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the first network (default: the config's).
    #[arg(long)]
    seed: Option<u64>,
    /// Disjoint seed sets, each trained and scored on every fold: set k's networks take the
    /// seeds after set k-1's (with seed 42 and 3 members: 42-44, 45-47, ...); the first set's
    /// folds are in --out, set k's in `<out>/seeds-<its first seed>/`. The report adds each set's
    /// means and, per fold and horizon, every set's ratio with their mean and spread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8).map(usize::from))]
    seed_sets: usize,
    /// Most epochs per fold.
    #[arg(long)]
    epochs: Option<usize>,
    /// Days held out for early stopping.
    #[arg(long)]
    holdout_days: Option<usize>,
    /// The design's training settings (recency weighting, the refit, weight averaging,
    /// per-horizon epochs); each defaults to the config's.
    #[command(flatten)]
    design: volcast_training::cli::DesignFlags,
    /// Stop each network's training session after this many optimiser steps, at least 1 (smoke tests;
    /// counted again per member and per phase).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_steps: Option<usize>,
    /// Networks per fold, trained with successive seeds and served as one ensemble (`train
    /// --members`). A fold already trained with another number is refused, not retrained.
    #[arg(long, default_value_t = volcast_training::pipeline::DEFAULT_MEMBERS,
          value_parser = clap::value_parser!(u16).range(1..=16).map(usize::from))]
    members: usize,
    /// Risk quantile level for the backtest, in (0.5, 0.9999].
    #[arg(long, default_value_t = DEFAULT_ALPHA)]
    alpha: f64,
    /// Liquidation window, hours, in [1, 168].
    #[arg(long, default_value_t = DEFAULT_TAU)]
    tau: usize,
    /// Liquidation bonus, in [0, 1).
    #[arg(long, default_value_t = DEFAULT_BONUS)]
    bonus: f64,
    /// Adaptive calibration of each fold's model (default: the artifact's settings); a trained
    /// fold is rescored with them without retraining.
    #[command(flatten)]
    adaptive: volcast_training::cli::AdaptiveSteps,
    /// The daily job's trailing window in days, for the model's corrections and HAR operated
    /// alike (default: each fold artifact's, its holdout's 120); trained folds are rescored.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    rolling_days: Option<usize>,
    /// Score each fold's model with the corrections and HAR weights stored at its fit end,
    /// fixed for the year, as `evaluate --fixed-recalibration` does (a diagnostic of what the
    /// daily job adds; the baselines, HAR operated included, as usual); trained folds are
    /// rescored.
    #[arg(long)]
    fixed_recalibration: bool,
    /// Folds of the same design trained early-stopped (`--refit-through-holdout false`, the
    /// same seeds and --seed-sets, e.g. `--out DIR` of such a run): each fold is operated with
    /// that fold's stored corrections and risk calibration, and its forecasts at origins before
    /// the fit end, so that the daily job's windows reaching back before the fit end hold
    /// forecasts of networks not trained on them (README, "The daily job's first window is in
    /// sample"); trained folds are rescored.
    #[arg(long, value_name = "DIR")]
    before_fit_end_from: Option<PathBuf>,
    /// Carry the network variance of a horizon from a shorter one's, relative to HAR
    /// (`168=24`: the week is HAR's week times the network's next day over HAR's day; `none`:
    /// each horizon the network's own). Default: each fold artifact's; trained folds are
    /// rescored.
    /// Refused with --fixed-recalibration unless it is the artifact's own (its stored
    /// corrections were measured without it).
    #[arg(long, value_name = "TO=FROM|none", value_parser = volcast_training::cli::term_structure)]
    term_structure: Option<volcast_training::cli::TermStructure>,
    /// Score each fold's model without the market factor (BTC's trailing variances), as the
    /// server serves every asset; trained folds are rescored.
    #[arg(long)]
    without_market: bool,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
    /// Write every fold's summary and full evaluation as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as an HTML page with charts here.
    #[arg(long)]
    html: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(run_args)
}

fn run_args() -> anyhow::Result<()> {
    let args = Args::parse();
    volcast_training::cli::writable_output("--json", args.json.as_deref())?;
    volcast_training::cli::writable_output("--html", args.html.as_deref())?;
    args.adaptive.check_horizons(&volcast_core::forecast::HORIZONS)?;
    if args.fixed_recalibration && args.rolling_days.is_some() {
        anyhow::bail!(
            "--rolling-days sets the daily job's window, which --fixed-recalibration turns off for \
             the model: HAR operated alone would take it (as `evaluate`, which refuses the pair)"
        );
    }
    if args.fixed_recalibration && args.before_fit_end_from.is_some() {
        anyhow::bail!("--before-fit-end-from acts on the daily job, which --fixed-recalibration turns off");
    }
    if args.fixed_recalibration && !args.adaptive.is_empty() {
        anyhow::bail!(
            "--fixed-recalibration scores the corrections stored at the fit end: the daily job's \
             settings (--quantile-step, --blend-as-served-at, ...) would change nothing"
        );
    }
    let mut config = volcast_training::cli::training_config(args.config.as_deref())?;
    if let Some(v) = args.epochs {
        anyhow::ensure!(v > 0, "--epochs 0: give at least 1");
        config.max_epochs = v;
    }
    if let Some(v) = args.holdout_days {
        config.holdout_days = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    args.design.apply(&mut config)?;
    let wf = WalkForward {
        dirs: args.data.clone(),
        years: args.years.clone(),
        out: args.out.clone(),
        device: args.device,
        config,
        progress: !args.no_progress,
        max_steps: args.max_steps,
        members: args.members,
        risk: (args.alpha, args.tau, args.bonus),
        adaptive: args.adaptive,
        seed_sets: args.seed_sets,
        rolling_days: args.rolling_days,
        fixed_recalibration: args.fixed_recalibration,
        before_fit_end_from: args.before_fit_end_from,
        term_structure: args.term_structure.map(|t| t.0),
        without_market: args.without_market,
    };
    let report = run(&wf)?;
    print!("{}", render(&report));
    if let Some(path) = &args.json {
        write_json(&report, path)?;
    }
    if let Some(path) = &args.html {
        volcast_training::cli::write_report(path, volcast_training::walkforward::html::render(&report))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--data a,b` (and `VOLCAST_DATA=a,b`) names two directories, as in every other command.
    #[test]
    fn data_splits_on_commas() {
        let args = Args::try_parse_from(["walkforward", "--data", "a,b", "--out", "x"]);
        assert_eq!(
            args.map(|a| a.data).ok(),
            Some(vec![PathBuf::from("a"), PathBuf::from("b")])
        );
    }
}
