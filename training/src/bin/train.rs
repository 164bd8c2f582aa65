//! `train`: fits the neural volatility and liquidity model and writes a versioned artifact.
//!
//! ```text
//! cargo run --release --bin train                          # default model, all shared data
//! cargo run --release --bin train -- --fit-until 2020-12-31  # validation model, scored on 2021
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use clap::builder::TypedValueParser as _;
use volcast_core::time::{Bound, parse_time};
use volcast_model::config::TrainingConfig;
use volcast_model::device::DeviceChoice;
use volcast_model::network::EncoderKind;
use volcast_training::pipeline::{Pipeline, run as run_pipeline};

/// Train the volcast model (pooled over assets) and write an artifact to `model-artifacts/<id>/`.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
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
    /// Sequence encoder (default: the `--config`'s, else tcn).
    #[arg(long, value_enum)]
    encoder: Option<Encoder>,
    /// The LSTM's recurrence on the CPU: one fused operation, or composed from tensor
    /// operations as on wgpu (the same function to rounding, several times slower; to compare
    /// the two).
    #[arg(long, value_enum, default_value = "fused")]
    lstm_path: LstmPath,
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
    /// The design's training settings (recency weighting, the refit, weight averaging,
    /// per-horizon epochs); each defaults to the config's.
    #[command(flatten)]
    design: volcast_training::cli::DesignFlags,
    /// Seed (of the first network; member i of an ensemble uses seed + i).
    #[arg(long)]
    seed: Option<u64>,
    /// Networks trained with successive seeds and served as one ensemble (the mean of their
    /// log variances, log quantiles and shortage logits); 1: a single network.
    #[arg(long, default_value_t = volcast_training::pipeline::DEFAULT_MEMBERS,
          value_parser = clap::value_parser!(u16).range(1..=16).map(usize::from))]
    members: usize,
    /// Stop each network's training session after this many optimiser steps, at least 1 (smoke tests;
    /// counted again per member, per phase and after a resume).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_steps: Option<usize>,
    /// Threads per optimiser step (the batch is split over them and the gradients summed).
    /// Default: every core on the CPU, 1 on a GPU.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// Artifacts directory.
    #[arg(long, default_value = "model-artifacts")]
    out: PathBuf,
    /// Point `<out>/default` (what the server loads) at the new artifact.
    #[arg(long)]
    set_default: bool,
    /// Checkpoint directory. Default: `<out>/.checkpoints/<hash of the config, fit end and candle
    /// files' SHA-256>`. A checkpoint resumes only under the same config, fit end and candle
    /// files.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Continue an interrupted run from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// No progress bar (log lines only).
    #[arg(long)]
    no_progress: bool,
    /// Time the training step instead of training (nothing is written): samples/s per batch
    /// size and thread count, and where a single-threaded step's time goes.
    #[arg(long)]
    bench: bool,
    /// With --bench: timed optimiser steps per measurement (after a few untimed ones).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000), requires = "bench")]
    bench_steps: u64,
    /// With --bench: batch sizes, comma-separated. Default: the config's.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=1_000_000), requires = "bench")]
    bench_batch_sizes: Vec<u64>,
    /// With --bench: thread counts, comma-separated. Default: 1 and --threads' default.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=256), requires = "bench")]
    bench_threads: Vec<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Encoder {
    Tcn,
    Lstm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LstmPath {
    Fused,
    Composed,
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(run)
}

fn config_from(args: &Args) -> anyhow::Result<TrainingConfig> {
    let mut config = volcast_training::cli::training_config(args.config.as_deref())?;
    if let Some(e) = args.encoder {
        config.model.encoder = match e {
            Encoder::Tcn => EncoderKind::Tcn,
            Encoder::Lstm => EncoderKind::Lstm,
        };
    }
    if let Some(v) = args.epochs {
        config.max_epochs = v;
    }
    if let Some(v) = args.batch_size {
        anyhow::ensure!(v > 0, "--batch-size 0: give at least 1");
        config.batch_size = v;
    }
    if let Some(v) = args.stride_hours {
        anyhow::ensure!(v > 0, "--stride-hours 0: give at least 1");
        config.stride_hours = v;
    }
    if let Some(v) = args.holdout_days {
        config.holdout_days = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    args.design.apply(&mut config)?;
    Ok(config)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    volcast_model::lstm_fused::use_fused(args.lstm_path == LstmPath::Fused);
    let started = Instant::now();
    let pipeline = Pipeline {
        dirs: args.data.clone(),
        fit_until_ms: args
            .fit_until
            .as_deref()
            .map(|s| parse_time(s, Bound::End))
            .transpose()
            .context("--fit-until")?,
        device: args.device,
        config: config_from(&args)?,
        out: args.out.clone(),
        set_default: args.set_default,
        checkpoint_dir: args.checkpoint_dir.clone(),
        resume: args.resume,
        progress: !args.no_progress,
        max_steps: args.max_steps,
        threads: args.threads.and_then(|t| usize::try_from(t).ok()),
        members: args.members,
    };
    if args.bench {
        return print_bench(&pipeline, &args);
    }
    let outcome = run_pipeline(&pipeline)?;
    if let Some(report) = &outcome.report {
        print!("{}", volcast_training::evaluate::render::render(report, false));
    }
    println!(
        "artifact {} on {} ({} training rows, {:.0} samples/s, {:.0} s training, {:.0} s total){}",
        outcome.dir.display(),
        outcome.device,
        outcome.train_rows,
        outcome.samples_per_second,
        outcome.training_seconds,
        started.elapsed().as_secs_f64(),
        if args.set_default { "; now the default" } else { "" }
    );
    // Published without a risk calibration (too little history): the server refuses it unless
    // told otherwise, so a default pointed at it stops the next start. Said, not buried in logs.
    // (The artifact was just written and loaded: a read failing now is no reason to fail a run
    // whose artifact is published, but it is said.)
    let uncalibrated = match volcast_model::artifact::read_metadata(&outcome.dir) {
        Ok(m) => m.uncalibrated,
        Err(e) => {
            eprintln!(
                "warning: could not read {}'s metadata to check its risk calibration: {e}",
                outcome.dir.display()
            );
            None
        }
    };
    if let Some(why) = uncalibrated {
        eprintln!(
            "warning: the artifact has NO risk calibration ({why}); the server serves it only with \
             --allow-uncalibrated{}",
            if args.set_default {
                ", and it is now the default: a server started on this directory will refuse it"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `--bench`: the step's speed and profile as Markdown tables.
fn print_bench(pipeline: &Pipeline, args: &Args) -> anyhow::Result<()> {
    let sizes = |v: &[u64]| -> Vec<usize> { v.iter().filter_map(|&x| usize::try_from(x).ok()).collect() };
    let steps = usize::try_from(args.bench_steps).unwrap_or(200);
    let outcome = volcast_training::pipeline::bench(
        pipeline,
        steps,
        &sizes(&args.bench_batch_sizes),
        &sizes(&args.bench_threads),
    )?;
    let config = &pipeline.config;
    println!(
        "Training step on {}: {:?} encoder, window {}, {steps} timed steps each.\n",
        outcome.device, config.model.encoder, config.window
    );
    if outcome.cpu_rows.is_empty() {
        println!("| batch | threads | samples/s | ms/step | cores used |\n|---:|---:|---:|---:|---:|");
        for r in &outcome.rows {
            println!(
                "| {} | {} | {:.0} | {:.2} | {} |",
                r.batch_size,
                r.threads,
                r.samples_per_second,
                r.ms_per_step,
                r.cores.map_or_else(|| "-".to_owned(), |c| format!("{c:.2}"))
            );
        }
    } else {
        println!(
            "| batch | samples/s | ms/step | CPU samples/s ({} threads) | speed-up over CPU |\n|---:|---:|---:|---:|---:|",
            outcome.cpu_rows.first().map_or(1, |r| r.threads)
        );
        for r in &outcome.rows {
            let cpu = outcome
                .cpu_rows
                .iter()
                .find(|c| c.batch_size == r.batch_size)
                .map_or(f64::NAN, |c| c.samples_per_second);
            println!(
                "| {} | {:.0} | {:.2} | {cpu:.0} | {:.2}x |",
                r.batch_size,
                r.samples_per_second,
                r.ms_per_step,
                r.samples_per_second / cpu
            );
        }
    }
    print_profile(&outcome.profile, config.model.encoder == EncoderKind::Lstm);
    Ok(())
}

/// Where one single-threaded step's time goes, by phase, for each of `bench`'s encoder paths
/// (the composed one only for the LSTM: the TCN's is as trained).
fn print_profile(profiles: &[volcast_training::trainer::bench::Profile; 3], lstm: bool) {
    use volcast_training::trainer::bench::Profile;
    let [now, composed, every_hour] = profiles;
    let mut columns = vec![("as trained", now)];
    if lstm {
        columns.push(("composed", composed));
    }
    columns.push(("every hour", every_hour));
    fn total(p: &Profile) -> f64 {
        p.batch_ms + p.forward_ms + p.backward_ms + p.optimizer_ms
    }
    let share = |x: f64, p: &Profile| 100.0 * x / total(p).max(f64::MIN_POSITIVE);
    println!(
        "\nOne single-threaded step at batch {}, by phase, ms: as trained{}, and with the encoder run over every hour of the window (the step before the last-step paths; the same function):\n",
        now.batch_size,
        if lstm {
            ", with the LSTM's last state composed from tensor operations (wgpu's path, the CPU's before the fused operation)"
        } else {
            ""
        }
    );
    let header: String = columns
        .iter()
        .map(|(name, _)| format!(" {name} | share |"))
        .collect();
    let rule: String = columns.iter().map(|_| "---:|---:|").collect();
    println!("| phase |{header}\n|---|{rule}");
    /// A phase's time in a profile.
    type Phase = fn(&Profile) -> f64;
    let phases: [(&str, Phase); 4] = [
        ("batch (features to tensors)", |p| p.batch_ms),
        ("forward and loss", |p| p.forward_ms),
        ("backward", |p| p.backward_ms),
        ("optimiser (clipping, AdamW)", |p| p.optimizer_ms),
    ];
    let rows = phases.into_iter().chain([("total", total as Phase)]);
    for (name, phase) in rows {
        let cells: String = columns
            .iter()
            .map(|(_, p)| format!(" {:.2} | {:.0}% |", phase(p), share(phase(p), p)))
            .collect();
        println!("| {name} |{cells}");
    }
}
