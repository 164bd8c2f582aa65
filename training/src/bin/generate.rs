//! `generate`: writes synthetic candle files (GARCH prices with outages) in SPEC's CSV format,
//! for demos and tests. The repository's `data/sample` was made with:
//!
//! ```text
//! cargo run --release --bin generate -- --out data/sample
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use volcast_core::synth::{SynthConfig, generate};
use volcast_core::time::{Bound, parse_time};
use volcast_training::data::write_csv;

/// Write synthetic hourly candles (one `.csv.gz` per asset, SPEC columns). Deterministic: the
/// same flags give the same candles.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Number of assets, named SYNTH01, SYNTH02, ... (1 to 10,000).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    assets: u64,
    /// Hours per asset (1 to 1,000,000: about 114 years).
    #[arg(long, default_value_t = 24 * 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    hours: u64,
    /// Open time of the first candle (RFC 3339 or YYYY-MM-DD).
    #[arg(long, default_value = "2020-01-01")]
    start: String,
    /// Seed; asset i uses seed + i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let start_ms = parse_time(&args.start, Bound::Start).context("--start")?;
    let off = start_ms.rem_euclid(volcast_core::time::HOUR_MS);
    if off != 0 {
        // Candles open on the hour: it was floored without a word.
        anyhow::bail!(
            "--start {} is not on a whole hour (candles open on the hour), such as {}",
            args.start,
            volcast_core::time::format_ms(start_ms - off)
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let hours = usize::try_from(args.hours).context("--hours")?;
    for i in 1..=args.assets {
        let config = SynthConfig::panel_asset(i, args.seed, hours, start_ms);
        let path = args.out.join(format!("SYNTH{i:02}.csv.gz"));
        write_csv(&path, &generate(&config)).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
