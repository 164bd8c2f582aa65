//! `calibrate`: measures an artifact's risk-engine calibration (the drawdown distribution of its
//! variance forecasts on the last year of its fit period) and writes the calibrated artifact.
//! `train` does this itself; use this for artifacts made before, or after changing the rule.
//!
//! ```text
//! cargo run --release --bin calibrate -- --model model-artifacts/<id> [--set-default]
//! ```

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use volcast_training::artifact;
use volcast_training::calibrate::calibrate_artifact;
use volcast_training::device::{DeviceChoice, select};
use volcast_training::drawdown::DrawdownCalibration;
use volcast_training::inference::LoadedModel;
use volcast_training::pipeline::score_out_of_sample;
use volcast_training::risk::normal_quantile;
use volcast_training::time::{Bound, parse_time};

/// Calibrate an artifact's drawdown quantiles D(alpha, tau) on the last year of its fit period.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// The artifact to calibrate (a directory, or an artifacts directory with a `default`).
    #[arg(long)]
    model: PathBuf,
    /// Candle directories (default: ../shared/data/binance-spot-1h, else data/). Only windows
    /// that end by the artifact's fit end are used.
    #[arg(long, env = "VOLCAST_DATA", value_delimiter = ',')]
    data: Vec<PathBuf>,
    /// Where to write the calibrated artifact (default: beside the input).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Point `<out>/default` at the calibrated artifact.
    #[arg(long)]
    set_default: bool,
    /// Device for the model's forward passes.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(run)
}

fn summary(name: &str, c: &DrawdownCalibration) {
    println!(
        "{name}: origins {} .. {} every {} h",
        c.from, c.until, c.stride_hours
    );
    println!("| tau | points | u(0.95) | u(0.99) | u(0.999) | reflected normal z(0.99) | tail index |");
    println!("|----:|-------:|--------:|--------:|---------:|-------------------------:|-----------:|");
    for w in &c.windows {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            w.tau,
            w.n,
            w.multiplier(0.95),
            w.multiplier(0.99),
            w.multiplier(0.999),
            normal_quantile(0.995),
            w.tail_index
        );
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let dirs = if args.data.is_empty() {
        volcast_training::pipeline::default_dirs()?
    } else {
        args.data.clone()
    };
    let selected = select(args.device)?;
    let model = LoadedModel::load(&args.model, &selected.device)?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => model.dir.parent().map(PathBuf::from).unwrap_or_default(),
    };
    let loaded = volcast_training::data::load_assets(&dirs, None)?;
    if loaded.is_empty() {
        bail!("no candle files in {dirs:?}");
    }
    let assets = volcast_training::to_panel(&loaded);
    drop(loaded);
    let dir = calibrate_artifact(&model, &assets, &out)?;
    let fit_until_ms = parse_time(&model.metadata.fit_until, Bound::Start)?;
    if score_out_of_sample(&dir, &assets, &selected.device, fit_until_ms)?.is_some() {
        println!("out-of-sample metrics (data after the fit period) written to its metadata");
    }
    let calibrated = artifact::read_metadata(&dir)?;
    if let Some(risk) = &calibrated.risk {
        summary("model", &risk.model);
        if let Some(har) = &risk.har {
            summary("har", har);
        }
    }
    let id = calibrated.id.clone();
    println!("calibrated artifact: {}", dir.display());
    if args.set_default {
        artifact::set_default(&out, &id).with_context(|| format!("pointing {}/default", out.display()))?;
        println!("default -> {id}");
    }
    Ok(())
}
