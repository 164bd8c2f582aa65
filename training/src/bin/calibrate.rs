//! `calibrate`: measures an artifact's corrections and risk-engine calibration (the drawdown
//! distribution of its variance forecasts on the last year of its fit period) and writes the
//! calibrated artifact. `train` does this itself; use this for artifacts made before, or after
//! changing the rule.
//!
//! With `--until <day>` it is the daily job instead: it re-measures only the corrections, on the
//! trailing window of forecasts completed by that day (data after the fit period welcome), and
//! keeps the weights and the risk calibration. The server runs the same job itself every day at
//! 00:00 UTC on its stored candles (`--daily-recalibration`); offline, run it on the latest
//! candles with `--set-default`, then send the server SIGHUP to swap it in. `evaluate` replays
//! it at every origin.
//!
//! ```text
//! cargo run --release --bin calibrate -- --model model-artifacts/<id> [--set-default] [--fit-exponent]
//! cargo run --release --bin calibrate -- --model model-artifacts --until 2022-03-01 --set-default
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;
use volcast_core::backtest::normal_quantile;
use volcast_core::drawdown::DrawdownCalibration;
use volcast_core::time::{Bound, HOUR_MS, parse_time};
use volcast_model::artifact;
use volcast_model::device::{DeviceChoice, select};
use volcast_model::inference::LoadedModel;
use volcast_training::anomaly::DETECTOR_FILE;
use volcast_training::calibrate::{calibrate_artifact, refresh_recalibration};
use volcast_training::pipeline::score_out_of_sample;

/// Calibrate an artifact's drawdown quantiles D(alpha, tau) on the last year of its fit period.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
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
    /// The daily job: re-measure only the corrections, on the trailing window ending at this
    /// time (RFC 3339, or YYYY-MM-DD for 00:00 UTC that day; at or after the fit end).
    #[arg(long)]
    until: Option<String>,
    /// Fit the exponent g in D = 1 - exp(-u sqrt(V)^g) instead of g = 1: more LT at equal
    /// breach rates, but worse calibrated out of sample (README, "Risk engine").
    #[arg(long, conflicts_with = "until")]
    fit_exponent: bool,
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(run)
}

fn summary(name: &str, c: &DrawdownCalibration) {
    println!(
        "{name}: origins {} .. {} every {} h, exponent g = {:.2} (D = 1 - exp(-u sqrt(V)^g))",
        c.from, c.until, c.stride_hours, c.exponent
    );
    println!(
        "(the reflected normal, g = 1: u(0.99) = {:.3})",
        normal_quantile(0.995)
    );
    println!("| tau | points | u(0.95) | u(0.99) | u(0.999) | tail index |");
    println!("|----:|-------:|--------:|--------:|---------:|-----------:|");
    for w in &c.windows {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            w.tau,
            w.n,
            w.multiplier(0.95),
            w.multiplier(0.99),
            w.multiplier(0.999),
            w.tail_index
        );
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let dirs = volcast_training::pipeline::data_dirs(&args.data)?;
    let selected = select(args.device)?;
    let model = LoadedModel::load(&args.model, &selected.device)?;
    // Before any work: a detector the calibrated artifact would carry and the server refuse.
    carried_detector(&model.dir)?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => beside(&model.dir)?,
    };
    // Before any work: a place the artifact cannot be written was found only at the end, with
    // the system's words alone ("/proc/nope: No such file or directory").
    std::fs::create_dir_all(&out)
        .with_context(|| format!("--out {}: cannot make the artifacts directory", out.display()))?;
    let loaded = volcast_training::data::load_assets(&dirs, None)?;
    if loaded.is_empty() {
        bail!("no candle files in {dirs:?}");
    }
    let assets = volcast_core::panel::to_panel(&loaded);
    drop(loaded);
    if let Some(until) = &args.until {
        let end_hour = parse_time(until, Bound::Start)
            .context("--until")?
            .div_euclid(HOUR_MS);
        // The daily corrections are measured on the forecasts as the server serves them:
        // without the market factor (README, "As served: without the market factor").
        let model = model.without_market();
        let saved = refresh_recalibration(&model, &assets, end_hour, &out)?;
        if !saved.created {
            println!(
                "nothing to change: {} already holds these corrections",
                saved.dir.display()
            );
        }
        let dir = saved.dir;
        let refreshed = artifact::read_metadata(&dir)?;
        if let Some(r) = &refreshed.recalibration {
            println!("corrections measured on origins {} .. {}", r.from, r.until);
            println!("| H | points | variance scale | quantile scales |");
            println!("|--:|-------:|---------------:|-----------------|");
            for (h, scale) in &r.variance_scale {
                let q: Vec<String> = r.quantile_scale[h].iter().map(|s| format!("{s:.3}")).collect();
                println!("| {h} | {} | {scale:.3} | {} |", r.points[h], q.join(" / "));
            }
        }
        return finish(&args, &out, &model.dir, &dir, &refreshed.id);
    }
    let saved = calibrate_artifact(&model, &assets, &out, args.fit_exponent)?;
    let dir = saved.dir;
    if saved.created {
        let fit_until_ms = parse_time(&model.metadata.fit_until, Bound::Start)?;
        if score_out_of_sample(&dir, &assets, &selected.device, fit_until_ms)?.is_some() {
            println!("out-of-sample metrics (data after the fit period) written to its metadata");
        }
    } else {
        // A published artifact is never rewritten: same content, same id, nothing to do.
        println!(
            "nothing to change: {} already holds this calibration",
            dir.display()
        );
    }
    let calibrated = artifact::read_metadata(&dir)?;
    if let Some(risk) = &calibrated.risk {
        summary("model", &risk.model);
        if let Some(har) = &risk.har {
            summary("har", har);
        }
    }
    finish(&args, &out, &model.dir, &dir, &calibrated.id)
}

fn finish(args: &Args, out: &Path, source: &Path, dir: &Path, id: &str) -> anyhow::Result<()> {
    println!("calibrated artifact: {}", dir.display());
    if carry_detector(source, dir)? {
        println!("anomaly detector carried over from {}", source.display());
    }
    if args.set_default {
        artifact::set_default(out, id).with_context(|| format!("pointing {}/default", out.display()))?;
        println!("default -> {id}");
    }
    Ok(())
}

/// Copies the source artifact's anomaly detector into the calibrated artifact `dir` where that
/// has none, so a server started or reloaded on the new artifact keeps the detector (either
/// would serve none); whether it was copied.
fn carry_detector(source: &Path, dir: &Path) -> anyhow::Result<bool> {
    let to = dir.join(DETECTOR_FILE);
    let Some(from) = carried_detector(source)? else {
        return Ok(false);
    };
    if to.exists() {
        return Ok(false);
    }
    let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
    artifact::replace_durably(&to, &bytes).with_context(|| format!("writing {}", to.display()))?;
    Ok(true)
}

/// The source artifact's anomaly detector file where it has one, once it is checked to load: a
/// truncated or hand-edited one is refused here, since the server refuses an artifact whose
/// detector cannot be read and the calibrated artifact would carry it.
fn carried_detector(source: &Path) -> anyhow::Result<Option<PathBuf>> {
    let path = source.join(DETECTOR_FILE);
    // Anything by that name is a detector to carry: a directory or a dangling link is refused.
    if path.symlink_metadata().is_err() {
        return Ok(None);
    }
    volcast_training::anomaly::load(&path).with_context(|| {
        format!(
            "the source artifact's anomaly detector cannot be carried into the calibrated one \
             (the server would refuse it): retrain it with `anomaly train`, or move {} away",
            path.display()
        )
    })?;
    Ok(Some(path))
}

/// The directory that holds the artifact `dir`, where the calibrated one goes by default: also
/// for a bare name or `.` (whose parent is the empty path, where the write would fail after
/// the artifact was renamed into place, or land inside the source artifact).
fn beside(dir: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::fs::canonicalize(dir).with_context(|| dir.display().to_string())?;
    Ok(absolute.parent().map(PathBuf::from).unwrap_or(absolute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calibrated_artifact_goes_beside_its_source_whatever_the_path_names_it() {
        let here = std::env::current_dir().unwrap();
        let artifact = tempfile::Builder::new()
            .prefix(".beside-")
            .tempdir_in(&here)
            .unwrap();
        let name = artifact.path().file_name().unwrap();
        // A bare name and `.` have the empty path as parent.
        assert_eq!(beside(Path::new(name)).unwrap(), here);
        assert_eq!(beside(Path::new(".")).unwrap(), here.parent().unwrap());
        assert_eq!(beside(&artifact.path().join(".")).unwrap(), here);
        assert!(beside(Path::new("no-such-artifact")).is_err());
    }

    #[test]
    fn the_source_detector_is_carried_into_a_calibrated_artifact_without_one() {
        let root = tempfile::tempdir().unwrap();
        let (source, dir) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        // The committed artifacts' detectors: carried only when they load.
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-artifacts");
        let d1 = std::fs::read(committed.join("e511b0d43982c4cf").join(DETECTOR_FILE)).unwrap();
        let d2 = std::fs::read(committed.join("693e44b5f740fc82").join(DETECTOR_FILE)).unwrap();
        // None to carry.
        assert!(!carry_detector(&source, &dir).unwrap());
        assert!(!dir.join(DETECTOR_FILE).exists());
        std::fs::write(source.join(DETECTOR_FILE), &d1).unwrap();
        assert!(carry_detector(&source, &dir).unwrap());
        assert_eq!(std::fs::read(dir.join(DETECTOR_FILE)).unwrap(), d1);
        // One there already (an artifact published before, or fitted for it) stays.
        std::fs::write(source.join(DETECTOR_FILE), &d2).unwrap();
        assert!(!carry_detector(&source, &dir).unwrap());
        assert_eq!(std::fs::read(dir.join(DETECTOR_FILE)).unwrap(), d1);
        // The same directory (nothing changed): nothing to do.
        assert!(!carry_detector(&source, &source).unwrap());
        // One that does not load, or a directory by its name: refused, never carried.
        std::fs::remove_file(dir.join(DETECTOR_FILE)).unwrap();
        std::fs::write(source.join(DETECTOR_FILE), &d2[..d2.len() / 2]).unwrap();
        assert!(carry_detector(&source, &dir).is_err());
        std::fs::remove_file(source.join(DETECTOR_FILE)).unwrap();
        std::fs::create_dir(source.join(DETECTOR_FILE)).unwrap();
        assert!(carry_detector(&source, &dir).is_err());
        assert!(!dir.join(DETECTOR_FILE).exists());
    }
}
