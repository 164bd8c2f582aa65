//! `ingest`: loads candle files (CSV, gzip CSV, Parquet, Binance's kline dumps, as `evaluate`
//! reads them) into the market-data store the server answers from.
//!
//! ```text
//! cargo run --release --bin ingest -- --data ../shared/data/binance-spot-1h
//! cargo run --release --bin ingest -- --data new/BTCUSDT.csv.gz --database-url postgres://volcast@db/volcast
//! ```
//!
//! Each file is loaded whole or not at all (one transaction); a bad row leaves its file out,
//! named with the field and the row, and the command exits 1 after loading the others. Hours
//! already stored are skipped: a second run changes nothing.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use volcast_store::{DEFAULT_DATABASE_URL, Store};
use volcast_training::ingest::{candle_files, ingest};

/// Load candle files into the market-data store.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Candle directories or files (repeatable; also `VOLCAST_DATA`, comma-separated).
    #[arg(long, env = "VOLCAST_DATA", value_delimiter = ',', required = true)]
    data: Vec<PathBuf>,
    /// The store: `sqlite://FILE` (created with its directory when missing) or `postgres://...`.
    #[arg(long, env = "VOLCAST_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(run)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let files = candle_files(&args.data)?;
    // Nothing to load is a mistake (a parent directory: files are looked for in the directory
    // named, not below it), never a success that stored nothing.
    anyhow::ensure!(
        !files.is_empty(),
        "no candle files (.csv, .csv.gz, .parquet) in {}: name the directory that holds them \
         (e.g. ../shared/data/binance-spot-1h)",
        args.data
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = Instant::now();
    // Errors name the store without its password.
    let shown = volcast_store::redact_url(&args.database_url);
    // A store this run creates and stores nothing in (every file refused) is not left behind:
    // an empty store the server would then start on, as if it held data.
    let existed = Store::exists(&args.database_url).unwrap_or(true);
    let report = runtime.block_on(async {
        let store = Store::open(&args.database_url)
            .await
            .map_err(|e| anyhow::anyhow!("opening the store {}", e.said_of(&shown)))?;
        let bar = if args.no_progress {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(files.len() as u64)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let report = ingest(&store, &files, &|path| {
            bar.set_message(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            bar.inc(1);
        })
        .await
        .with_context(|| format!("storing candles in {shown}"))?;
        bar.finish_and_clear();
        store.close().await;
        anyhow::Ok((report, store.file().map(std::path::Path::to_owned)))
    })?;
    let (report, file) = report;
    if let Some(file) = file
        .as_deref()
        .filter(|_| !existed && report.inserted == 0 && report.already_stored == 0)
    {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = file.as_os_str().to_owned();
            path.push(suffix);
            // Gone already is fine; any other failure leaves an empty store, said below.
            let _ = std::fs::remove_file(&path);
        }
        eprintln!(
            "nothing stored: the new store {} is removed{}",
            file.display(),
            if file.exists() {
                " (it could not be: it is still there, empty)"
            } else {
                ""
            }
        );
    }
    println!(
        "{} stored in {:.1} s: {} new candles, {} already stored",
        match report.files {
            1 => "1 file".to_owned(),
            n => format!("{n} files"),
        },
        started.elapsed().as_secs_f64(),
        report.inserted,
        report.already_stored
    );
    if let Some(file) = file {
        println!("store file: {:.1} MiB", sqlite_size(&file) as f64 / 1_048_576.0);
    }
    for r in &report.refused {
        // A file's own error names it already.
        let path = r.path.display().to_string();
        if r.reason.starts_with(&path) {
            eprintln!("left out {}", r.reason);
        } else {
            eprintln!("left out {path}: {}", r.reason);
        }
    }
    if report.first_file_kept > 0 {
        println!(
            "{} candle(s) of an hour an earlier file of this run held, with other values: the \
             first stored value kept, not a conflict (the first directory wins a duplicated hour, \
             as SPEC merges them)",
            report.first_file_kept
        );
    }
    for (path, first) in &report.conflicts {
        eprintln!(
            "{}: differs from the stored candles, first at {} (the stored values are kept)",
            path.display(),
            volcast_core::time::format_ms(*first)
        );
    }
    anyhow::ensure!(
        report.refused.is_empty(),
        "{} file(s) left out, the store unchanged for them",
        report.refused.len()
    );
    anyhow::ensure!(
        report.conflicting == 0,
        "{} candle(s) in {} file(s) differ from the hours already stored; a stored hour is never \
         rewritten, so their stored values are kept (a corrected file loads into a new store)",
        report.conflicting,
        report.conflicts.len()
    );
    Ok(())
}

/// Bytes of an SQLite store (its file and write-ahead log).
fn sqlite_size(file: &std::path::Path) -> u64 {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = file.as_os_str().to_owned();
    wal.push("-wal");
    size(file) + size(std::path::Path::new(&wal))
}
