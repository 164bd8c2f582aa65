//! `train`: fits the neural volatility and liquidity model and writes a versioned artifact.
//!
//! ```text
//! cargo run --release --bin train                          # default model, all shared data
//! cargo run --release --bin train -- --fit-until 2020-12-31  # validation model, scored on 2021
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use volcast_training::artifact::{self, DataFile, HorizonMetrics, Metadata};
use volcast_training::baselines::set::BaselineSet;
use volcast_training::candles::AssetCandles;
use volcast_training::data::{list_dir, load_assets};
use volcast_training::device::{DeviceChoice, select};
use volcast_training::evaluate::report::EvaluationReport;
use volcast_training::evaluate::{EvalConfig, evaluate};
use volcast_training::forecast::HORIZONS;
use volcast_training::inference::LoadedModel;
use volcast_training::model::EncoderKind;
use volcast_training::panel::prepare;
use volcast_training::time::{Bound, HOUR_MS, close_hour_of_open_ms, format_ms, hour_to_ms, parse_time};
use volcast_training::training::{RunOptions, TrainingConfig, feature_spec, train};

/// Train the volcast model (pooled over assets) and write an artifact to `model-artifacts/<id>/`.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Candle directories (repeatable). Default: ../shared/data/binance-spot-1h when present,
    /// else data/ and its subdirectories.
    #[arg(long = "data", env = "VOLCAST_DATA", value_delimiter = ',')]
    data: Vec<PathBuf>,
    /// Open time of the last candle training may use (RFC 3339, or YYYY-MM-DD for its 23:00
    /// candle). Default: the end of the data. Data after it is used to report validation metrics.
    #[arg(long)]
    fit_until: Option<String>,
    /// Where to train: a hardware GPU via wgpu if present else the CPU (auto), wgpu on any
    /// adapter (software Vulkan included), or the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// Sequence encoder.
    #[arg(long, value_enum, default_value = "tcn")]
    encoder: Encoder,
    /// A training config JSON (as written beside every artifact) to start from; flags given
    /// explicitly below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Most epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Rows per optimiser step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Spacing of training origins, hours.
    #[arg(long)]
    stride_hours: Option<usize>,
    /// Days before the fit end held out for early stopping.
    #[arg(long)]
    holdout_days: Option<usize>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after this many optimiser steps (smoke tests).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Artifacts directory.
    #[arg(long, default_value = "model-artifacts")]
    out: PathBuf,
    /// Point `<out>/default` (what the server loads) at the new artifact.
    #[arg(long)]
    set_default: bool,
    /// Checkpoint directory. Default: `<out>/.checkpoints/<hash of config and data>`.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Continue an interrupted run from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// No progress bar (log lines only).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Encoder {
    Tcn,
    Lstm,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn default_dirs() -> anyhow::Result<Vec<PathBuf>> {
    let shared = PathBuf::from("../shared/data/binance-spot-1h");
    if shared.is_dir() {
        return Ok(vec![shared]);
    }
    let data = PathBuf::from("data");
    let mut dirs = vec![data.clone()];
    if let Ok(entries) = std::fs::read_dir(&data) {
        let mut subs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        dirs.extend(subs);
    }
    let has_candles = dirs.iter().any(|d| list_dir(d).is_ok_and(|f| !f.is_empty()));
    if !has_candles {
        bail!(
            "no candle data found: ../shared/data/binance-spot-1h does not exist and data/ holds no .csv, .csv.gz or .parquet files. \
             Pass --data DIR, or make sample data with `cargo run --release --bin generate -- --out data/sample`"
        );
    }
    Ok(dirs)
}

fn config_from(args: &Args) -> anyhow::Result<TrainingConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a training config", path.display()))?
        }
        None => TrainingConfig::default_run(),
    };
    config.model.encoder = match args.encoder {
        Encoder::Tcn => EncoderKind::Tcn,
        Encoder::Lstm => EncoderKind::Lstm,
    };
    if let Some(v) = args.epochs {
        config.max_epochs = v;
    }
    if let Some(v) = args.batch_size {
        config.batch_size = v.max(1);
    }
    if let Some(v) = args.stride_hours {
        config.stride_hours = v.max(1);
    }
    if let Some(v) = args.holdout_days {
        config.holdout_days = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    Ok(config)
}

fn data_files(dirs: &[PathBuf], loaded: &[AssetCandles]) -> anyhow::Result<Vec<DataFile>> {
    let by_id: BTreeMap<&str, &AssetCandles> = loaded.iter().map(|a| (a.asset.as_str(), a)).collect();
    let mut files = Vec::new();
    for dir in dirs {
        for (id, path) in list_dir(dir)? {
            let Some(asset) = by_id.get(id.as_str()) else {
                continue;
            };
            files.push(DataFile {
                path: path.display().to_string(),
                sha256: artifact::sha256_file(&path)
                    .with_context(|| format!("hashing {}", path.display()))?,
                rows: asset.candles.len(),
                first: asset
                    .candles
                    .first()
                    .map(|c| format_ms(c.open_time))
                    .unwrap_or_default(),
                last: asset
                    .candles
                    .last()
                    .map(|c| format_ms(c.open_time))
                    .unwrap_or_default(),
            });
        }
    }
    Ok(files)
}

fn metrics_from(report: &EvaluationReport) -> BTreeMap<usize, HorizonMetrics> {
    report
        .horizons
        .iter()
        .map(|(&h, r)| {
            let coverage = r
                .calibration
                .get("model")
                .map(|levels| {
                    levels
                        .iter()
                        .map(|l| (format!("{}", l.level), l.coverage))
                        .collect()
                })
                .unwrap_or_default();
            (
                h,
                HorizonMetrics {
                    n_points: r.n_points,
                    qlike: r.qlike.clone(),
                    shortage_roc_auc: r.shortage.roc_auc.clone(),
                    coverage,
                },
            )
        })
        .collect()
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[allow(clippy::too_many_lines)]
fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let dirs = if args.data.is_empty() {
        default_dirs()?
    } else {
        args.data.clone()
    };
    let config = config_from(&args)?;
    let selected = select(args.device)?;
    tracing::info!(device = %selected.description, "device");

    let loaded = load_assets(&dirs, None)?;
    if loaded.is_empty() {
        bail!(
            "no candle files in {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let assets = volcast_training::to_panel(&loaded);
    let last_hour = assets.iter().map(|a| a.grid.last_hour()).max().unwrap_or(0);
    let fit_until_ms = match &args.fit_until {
        Some(s) => {
            parse_time(s, Bound::End)
                .context("--fit-until")?
                .div_euclid(HOUR_MS)
                * HOUR_MS
        }
        None => hour_to_ms(last_hour - 1),
    };
    let fit_end_hour = close_hour_of_open_ms(fit_until_ms);
    tracing::info!(assets = assets.len(), fit_until = %format_ms(fit_until_ms), "data loaded");

    let checkpoint_dir = args.checkpoint_dir.clone().unwrap_or_else(|| {
        let key = artifact::content_id(
            fit_until_ms.to_string().as_bytes(),
            &serde_json::to_string(&config).unwrap_or_default(),
            &dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        args.out.join(".checkpoints").join(key)
    });
    let options = RunOptions {
        checkpoint_dir: checkpoint_dir.clone(),
        resume: args.resume,
        progress: !args.no_progress,
        max_steps: args.max_steps,
    };
    let trained = train(&assets, &config, fit_end_hour, &selected.device, &options)?;
    let training_seconds = trained.state.seconds;
    tracing::info!(
        seconds = training_seconds,
        samples_per_second = trained.samples_per_second,
        best_epoch = trained.state.best_epoch + 1,
        "trained"
    );

    // Baselines on the same fit period, for the server's side-by-side answers.
    let prepared = prepare(&assets, &HORIZONS);
    let baselines = BaselineSet::fit(&assets, &prepared, fit_end_hour, &HORIZONS)?;
    let holdout = trained
        .state
        .history
        .get(trained.state.best_epoch)
        .map(|scores| {
            HORIZONS
                .iter()
                .zip(scores)
                .map(|(&h, &q)| {
                    (
                        h,
                        HorizonMetrics {
                            qlike: BTreeMap::from([("model".to_owned(), q)]),
                            ..HorizonMetrics::default()
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let metadata = Metadata {
        schema_version: artifact::SCHEMA_VERSION,
        id: String::new(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        code_version: format!(
            "volcast-training {}{}",
            env!("CARGO_PKG_VERSION"),
            git_commit().map(|c| format!(" ({c})")).unwrap_or_default()
        ),
        features: feature_spec(&config),
        scaler: trained.scaler.clone(),
        horizons: HORIZONS.to_vec(),
        quantile_levels: config.model.quantile_levels.clone(),
        fit_until: format_ms(fit_until_ms),
        data: data_files(&dirs, &loaded)?,
        holdout,
        validation: BTreeMap::new(),
        har: baselines.har.clone(),
        shortage_logistic: baselines.shortage.clone(),
        device: selected.description.clone(),
        training_seconds,
    };
    let dir = artifact::save(&args.out, trained.model, &config, metadata)?;

    // Out-of-sample scores on the data after the fit period, when there is any.
    if last_hour > fit_end_hour + 24 * 30 {
        let model = LoadedModel::load(&dir, &selected.device)?;
        let eval = EvalConfig {
            fit_until_ms,
            eval_from_ms: fit_until_ms + HOUR_MS,
            eval_until_ms: hour_to_ms(last_hour),
            horizons: HORIZONS.to_vec(),
            alpha: 0.99,
            tau: 4,
            bonus: 0.05,
        };
        let report = evaluate(&assets, &eval, Some((&model, model.metadata.id.clone())))?;
        print!("{}", volcast_training::evaluate::render::render(&report, false));
        let mut metadata = model.metadata.clone();
        metadata.validation = metrics_from(&report);
        // The id covers the content at training time; validation scores are added after.
        let path = dir.join(artifact::METADATA);
        std::fs::write(&path, serde_json::to_string_pretty(&metadata)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if args.set_default {
        artifact::set_default(&args.out, &id)?;
    }
    println!(
        "artifact {} ({} training rows, {:.0} samples/s, {:.0} s training, {:.0} s total){}",
        dir.display(),
        trained.train_rows,
        trained.samples_per_second,
        training_seconds,
        started.elapsed().as_secs_f64(),
        if args.set_default { "; now the default" } else { "" }
    );
    Ok(())
}
