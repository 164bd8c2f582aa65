//! `evaluate`: scores the SPEC baselines (and optionally a trained model) on real candles.
//!
//! ```text
//! cargo run --release --bin evaluate -- --data ../shared/data/binance-spot-1h \
//!     --fit-until 2020-12-31 --eval-from 2021-01-01 --eval-until 2021-12-31 \
//!     --json eval.json --report eval.md
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use volcast_core::forecast::{Forecaster, HORIZONS};
use volcast_core::policy::{DEFAULT_ALPHA, DEFAULT_BONUS, DEFAULT_TAU};
use volcast_core::time::{Bound, HOUR_MS, hour_to_ms, parse_time};
use volcast_model::device::DeviceChoice;
use volcast_model::inference::LoadedModel;
use volcast_training::evaluate::report::EvaluationReport;
use volcast_training::evaluate::{EvalConfig, evaluate, render::render};
use volcast_training::rolling::{DailyRecalibrated, FixedModel, Recorded};

/// Score volatility, liquidity-shortage and liquidation-threshold forecasts the way SPEC says:
/// baselines fitted on the fit period, every forecaster scored on the same daily origins.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Directory of per-asset candle files (.csv, .csv.gz, .parquet or Binance kline dumps).
    /// Repeat to join directories; on a duplicated hour the first directory wins.
    #[arg(long = "data", required = true, env = "VOLCAST_DATA", value_delimiter = ',')]
    data: Vec<PathBuf>,
    /// Open time of the last candle fitting may use (RFC 3339, or YYYY-MM-DD for that day's
    /// last candle, 23:00).
    #[arg(long, default_value = "2020-12-31")]
    fit_until: String,
    /// First origin scored (RFC 3339 or YYYY-MM-DD); default: the hour after fit-until's candle.
    #[arg(long)]
    eval_from: Option<String>,
    /// Last origin scored (RFC 3339, or YYYY-MM-DD for the whole day); default: end of data.
    #[arg(long)]
    eval_until: Option<String>,
    /// Only these assets (comma-separated ids, e.g. BTCUSDT,ETHUSDT); default: every file found.
    #[arg(long, value_delimiter = ',')]
    assets: Option<Vec<String>>,
    /// Model artifact directory to score beside the baselines (the `model` column).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Device for the model's forward passes.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// Score the model with the corrections stored in the artifact, fixed. By default a model
    /// whose corrections declare a rolling window is scored as operated: corrections re-measured
    /// every day on the trailing window of completed forecasts (the `calibrate --until` job).
    #[arg(long, conflicts_with = "rolling_days")]
    fixed_recalibration: bool,
    /// Carry the network variance of a horizon from a shorter one's, relative to HAR
    /// (`168=24`: the week is HAR's week times the network's next day over HAR's day; `none`:
    /// each horizon the network's own). Default: the artifact's.
    /// Refused with --fixed-recalibration unless it is the artifact's own (its stored
    /// corrections were measured without it).
    #[arg(long, value_name = "TO=FROM|none", value_parser = volcast_training::cli::term_structure)]
    term_structure: Option<volcast_training::cli::TermStructure>,
    /// Score the model without the market factor (BTC's trailing variances), as the server
    /// serves every asset; by default a panel holding BTCUSDT gives it, as in training.
    #[arg(long)]
    without_market: bool,
    /// Re-measure the model's corrections every day on this many trailing days instead of the
    /// window its artifact declares (a sensitivity check).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    rolling_days: Option<u16>,
    /// Adaptive calibration of the model as operated (default: the artifact's settings).
    #[command(flatten)]
    adaptive: volcast_training::cli::AdaptiveSteps,
    /// Risk quantile level alpha for the liquidation-threshold backtest, in (0.5, 0.9999].
    #[arg(long, default_value_t = DEFAULT_ALPHA)]
    alpha: f64,
    /// Liquidation window tau in hours, in [1, 168].
    #[arg(long, default_value_t = DEFAULT_TAU)]
    tau: usize,
    /// Liquidation bonus LB, in [0, 1).
    #[arg(long, default_value_t = DEFAULT_BONUS)]
    bonus: f64,
    /// Calibrate the HAR and GARCH drawdowns with a fitted exponent of sqrt(V), as
    /// `calibrate --fit-exponent` does the model's (pass it when scoring such an artifact).
    #[arg(long)]
    fit_exponent: bool,
    /// Score HAR operated with its forecasts corrected daily on this many trailing days
    /// (`har_operated`). Default: the model's window when the model is operated that way.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    har_operated_days: Option<u16>,
    /// Write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the full report, per-asset tables included, as Markdown here.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    volcast_training::cli::writable_output("--json", args.json.as_deref())?;
    volcast_training::cli::writable_output("--report", args.report.as_deref())?;

    // Settings the scoring would refuse, before the model and the candles are read.
    volcast_training::evaluate::check_backtest(args.alpha, args.tau, args.bonus)
        .map_err(anyhow::Error::msg)?;
    let (fit_until_ms, eval_from_ms) = fit_until_and_eval_from(&args)?;
    let model = load_model(&args)?;
    refuse_ignored(&args, model.as_ref())?;
    if let Some(m) = &model {
        volcast_training::cli::refuse_in_sample(&m.metadata, fit_until_ms)?;
        if stored_corrections(m, &args) {
            volcast_training::cli::refuse_later_corrections(&m.metadata, fit_until_ms)?;
        }
    }

    let assets = load_panel(&args)?;
    let load_s = started.elapsed().as_secs_f64();
    tracing::info!(assets = assets.len(), seconds = load_s, "loaded candles");

    let eval_until_ms = match &args.eval_until {
        Some(s) => parse_time(s, Bound::End).context("--eval-until")?,
        None => hour_to_ms(assets.iter().map(|a| a.grid.last_hour()).max().unwrap_or(0)),
    };
    let forecaster = model.as_ref().map(|m| model_forecaster(m, &args));
    let operated_days = args
        .har_operated_days
        .map(usize::from)
        .or_else(|| forecaster.as_ref().and_then(|f| f.days()));
    let config = EvalConfig {
        operated_days,
        fit_until_ms,
        eval_from_ms,
        eval_until_ms,
        horizons: HORIZONS.to_vec(),
        alpha: args.alpha,
        tau: args.tau,
        bonus: args.bonus,
        fit_exponent: args.fit_exponent,
    };
    warn_if_risk_not_out_of_sample(model.as_ref(), fit_until_ms);
    let mut report = evaluate(
        &assets,
        &config,
        forecaster.as_ref().map(|f| (f.forecaster(), f.id().to_owned())),
    )?;
    if let (Some(f), Some(m)) = (&forecaster, &model) {
        report.config.operation = Some(volcast_training::evaluate::report::OperationReport {
            daily_window_days: f.days(),
            adaptive: match f {
                Scored::Daily(d) => d.daily().adaptive().cloned(),
                Scored::Fixed(_) => None,
            },
            term_structure: m.metadata.term_structure.clone(),
            without_market: args.without_market,
            before_fit_end_from: None,
            features_version: m.metadata.features.version,
        });
    }
    // The blend in hindsight, from the operation behind the model's forecasts.
    if let (Some(Scored::Daily(recorded)), Some(m)) = (&forecaster, &model)
        && let Some(op) = recorded.take()
    {
        report.blend_hindsight = op.blend_in_hindsight(eval_days(&config), m.metadata.recalibration.as_ref());
    }
    report.timings.insert("load_s".into(), load_s);
    report
        .timings
        .insert("total_s".into(), started.elapsed().as_secs_f64());

    print!("{}", render(&report, false));
    write_outputs(&report, &args)
}

/// Refuses settings that would change nothing (they were accepted and ignored): the model's
/// settings without `--model`, and the daily job's where the model is scored with its stored
/// corrections.
fn refuse_ignored(args: &Args, model: Option<&LoadedModel>) -> anyhow::Result<()> {
    let model_flags = [
        ("--fixed-recalibration", args.fixed_recalibration),
        ("--term-structure", args.term_structure.is_some()),
        ("--rolling-days", args.rolling_days.is_some()),
        ("--without-market", args.without_market),
        (
            "--quantile-step, --blend-as-served-at, ...",
            !args.adaptive.is_empty(),
        ),
    ];
    match model {
        None => {
            if let Some((flag, _)) = model_flags.iter().find(|(_, given)| *given) {
                bail!("{flag} acts on the model's forecasts: give --model, or leave it out");
            }
        }
        Some(m) if stored_corrections(m, args) && !args.adaptive.is_empty() => bail!(
            "model {} is scored with its stored corrections ({}): the daily job's settings \
             (--quantile-step, --blend-as-served-at, ...) would change nothing",
            m.metadata.id,
            if args.fixed_recalibration {
                "--fixed-recalibration"
            } else {
                "its artifact declares no rolling window; give --rolling-days"
            }
        ),
        Some(_) => {}
    }
    Ok(())
}

/// The fit period's last candle (ms) and the first origin scored, from `--fit-until` and
/// `--eval-from`.
fn fit_until_and_eval_from(args: &Args) -> anyhow::Result<(i64, i64)> {
    // A bare date means that day's last candle, which opens at 23:00.
    let fit_until_ms = parse_time(&args.fit_until, Bound::End)
        .map(|end| end.div_euclid(HOUR_MS) * HOUR_MS)
        .context("--fit-until")?;
    let eval_from_ms = match &args.eval_from {
        Some(s) => parse_time(s, Bound::Start).context("--eval-from")?,
        None => fit_until_ms + HOUR_MS,
    };
    Ok((fit_until_ms, eval_from_ms))
}

/// The `--model` artifact on the chosen device, when one is given.
fn load_model(args: &Args) -> anyhow::Result<Option<LoadedModel>> {
    match &args.model {
        Some(path) => {
            let selected = volcast_model::device::select(args.device)?;
            let mut model = LoadedModel::load(path, &selected.device)?;
            if args.without_market {
                model = model.without_market();
            }
            let model = volcast_training::cli::with_term_structure(
                model,
                args.term_structure.as_ref().map(|t| &t.0),
                args.fixed_recalibration,
            )?;
            args.adaptive.check_horizons(&model.metadata.horizons)?;
            Ok(Some(model))
        }
        None => Ok(None),
    }
}

/// The candles of `--data` (only `--assets` when given) as a panel; none found is an error.
fn load_panel(args: &Args) -> anyhow::Result<Vec<volcast_core::grid::Asset>> {
    let loaded = volcast_training::data::load_assets(&args.data, args.assets.as_deref())?;
    if loaded.is_empty() {
        bail!(
            "no candle files (.csv, .csv.gz, .parquet) in {}",
            args.data
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let assets = volcast_core::panel::to_panel(&loaded);
    drop(loaded);
    Ok(assets)
}

/// Warns when the model's risk calibration used data after `--fit-until` (its backtest is then
/// not out of sample).
fn warn_if_risk_not_out_of_sample(model: Option<&LoadedModel>, fit_until_ms: i64) {
    if let Some(risk) = model.and_then(|m| m.metadata.risk.as_ref())
        && parse_time(&risk.model.until, Bound::Start).is_ok_and(|until| until > fit_until_ms + HOUR_MS)
    {
        tracing::warn!(
            calibrated_until = %risk.model.until,
            "the model's risk calibration used data after --fit-until: its backtest is not out of sample"
        );
    }
}

/// The model as scored: recalibrated daily on a trailing window (`--rolling-days` or the
/// artifact's) unless `--fixed-recalibration`, else with its stored corrections.
enum Scored<'m> {
    /// Operated with its corrections re-measured daily (the operation kept for the blend in
    /// hindsight).
    Daily(Box<Recorded<'m>>),
    /// With its stored corrections.
    Fixed(FixedModel<'m>),
}

impl Scored<'_> {
    /// The forecaster `evaluate` scores.
    fn forecaster(&self) -> &dyn Forecaster {
        match self {
            Self::Daily(d) => d.as_ref(),
            Self::Fixed(f) => f,
        }
    }

    /// The artifact's id.
    fn id(&self) -> &str {
        match self {
            Self::Daily(d) => &d.daily().model().metadata.id,
            Self::Fixed(f) => &f.0.metadata.id,
        }
    }

    /// The daily job's trailing window, days (none with fixed corrections).
    fn days(&self) -> Option<usize> {
        match self {
            Self::Daily(d) => Some(d.daily().days()),
            Self::Fixed(_) => None,
        }
    }
}

/// The trailing window the model's corrections are re-measured on every day, none when it is
/// scored with its stored ones.
fn daily_window(m: &LoadedModel, args: &Args) -> Option<usize> {
    let declared = m.metadata.recalibration.as_ref().and_then(|r| r.rolling_days);
    args.rolling_days
        .map(usize::from)
        .or(declared)
        .filter(|_| !args.fixed_recalibration)
}

/// Whether the model is scored with its stored corrections.
fn stored_corrections(m: &LoadedModel, args: &Args) -> bool {
    daily_window(m, args).is_none()
}

fn model_forecaster<'m>(m: &'m LoadedModel, args: &Args) -> Scored<'m> {
    match daily_window(m, args) {
        Some(days) => {
            println!(
                "model {}: corrections re-measured every day on the trailing {days} days \
                 (--fixed-recalibration for the stored ones)",
                m.metadata.id
            );
            Scored::Daily(Box::new(Recorded::new(
                DailyRecalibrated::new(m, days).with_adaptive(
                    args.adaptive.apply(
                        m.metadata
                            .recalibration
                            .as_ref()
                            .and_then(|r| r.adaptive.as_ref()),
                    ),
                ),
            )))
        }
        _ => Scored::Fixed(FixedModel(m)),
    }
}

/// The midnights (hours) of the first and last days whose 00:00 origins `config` scores.
fn eval_days(config: &EvalConfig) -> (i64, i64) {
    let first = config.eval_from_ms.div_euclid(HOUR_MS) + 23;
    let last = config.eval_until_ms.div_euclid(HOUR_MS);
    (first - first.rem_euclid(24), last - last.rem_euclid(24))
}

/// Writes the report as JSON (`--json`) and as Markdown (`--report`) where asked.
fn write_outputs(report: &EvaluationReport, args: &Args) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(report)?;
        volcast_training::cli::write_report(path, json)?;
    }
    if let Some(path) = &args.report {
        volcast_training::cli::write_report(path, render(report, true))?;
    }
    Ok(())
}
