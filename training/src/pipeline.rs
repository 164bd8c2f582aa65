//! The whole training pipeline behind `train`: load data, train, fit the baselines on the same
//! period, write the artifact, and score it out of sample when there is data after the fit period.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::calibrate::calibrate_artifact;
use crate::data::{list_dir, load_assets};
use crate::evaluate::report::EvaluationReport;
use crate::evaluate::{EvalConfig, evaluate};
use crate::rolling::CalibrateError;
use crate::trainer::{RunOptions, Trained, feature_spec, train_members};
use volcast_core::baselines::set::BaselineSet;
use volcast_core::candles::AssetCandles;
use volcast_core::forecast::HORIZONS;
use volcast_core::panel::prepare;
use volcast_core::time::{HOUR_MS, close_hour_of_open_ms, format_ms, hour_to_ms};
use volcast_model::artifact::{self, DataFile, HorizonMetrics, Metadata};
use volcast_model::config::TrainingConfig;
use volcast_model::device::{DeviceChoice, select};
use volcast_model::inference::LoadedModel;

/// Networks per artifact unless told otherwise (`--members`): an ensemble of three seeds, adopted
/// on the walk-forward folds by a rule written before its one look (README, "Walk-forward folds").
pub const DEFAULT_MEMBERS: usize = 3;

/// What to train and where to put it.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Candle directories; empty means the defaults ([`default_dirs`]).
    pub dirs: Vec<PathBuf>,
    /// Open time (ms) of the last candle training may use; None: the end of the data.
    pub fit_until_ms: Option<i64>,
    /// Device choice.
    pub device: DeviceChoice,
    /// The run's config.
    pub config: TrainingConfig,
    /// Artifacts directory.
    pub out: PathBuf,
    /// Point `<out>/default` at the new artifact.
    pub set_default: bool,
    /// Checkpoint directory; None: `<out>/.checkpoints/<hash of settings>`.
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the last checkpoint.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop after this many optimiser steps.
    pub max_steps: Option<usize>,
    /// Threads per training step; None: [`volcast_model::device::Selected::training_threads`].
    pub threads: Option<usize>,
    /// Networks trained with seeds `seed`, `seed + 1`, ... and served as their ensemble
    /// ([`Ensemble`](volcast_model::network::Ensemble)); 1: a single network.
    pub members: usize,
}

/// What a pipeline run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The artifact directory.
    pub dir: PathBuf,
    /// Out-of-sample evaluation, when data after the fit period existed.
    pub report: Option<EvaluationReport>,
    /// Training rows.
    pub train_rows: usize,
    /// Training throughput, rows per second.
    pub samples_per_second: f64,
    /// Training seconds (all sessions of a resumed run).
    pub training_seconds: f64,
    /// Device used.
    pub device: String,
}

/// The candle directories `given`, or the defaults ([`default_dirs`]) when none is.
///
/// # Errors
/// When none is given and no default holds candle files.
pub fn data_dirs(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if given.is_empty() {
        default_dirs()
    } else {
        Ok(given.to_vec())
    }
}

/// The default data: `../shared/data/binance-spot-1h` when present, else `data/` and its
/// subdirectories.
///
/// # Errors
/// When neither holds candle files, with what to do about it.
pub fn default_dirs() -> anyhow::Result<Vec<PathBuf>> {
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
    // A directory's refusal (a candle-named entry that is no readable file) is said, not read
    // as "no candle data".
    // A missing `data/` is no refusal: the advice below says what to do.
    let mut has_candles = false;
    for d in &dirs {
        match list_dir(d) {
            Ok(files) => has_candles |= !files.is_empty(),
            Err(crate::data::LoadError::Directory { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !has_candles {
        bail!(
            "no candle data found: ../shared/data/binance-spot-1h does not exist and data/ holds no .csv, .csv.gz or .parquet files. \
             Pass --data DIR, or make sample data with `cargo run --release --bin generate -- --out data/sample`"
        );
    }
    Ok(dirs)
}

/// Each candle file in `dirs` as `(file name, SHA-256)`, sorted by name, a name in several
/// directories in their order (the first directory's candle wins an hour both hold, so the
/// order is part of the data): what an artifact's `data` records of them ([`recorded_data`]).
///
/// # Errors
/// A directory or a file that cannot be read.
pub fn data_hashes(dirs: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut hashes = Vec::new();
    for dir in dirs {
        for path in list_dir(dir)?.into_values() {
            let sha = artifact::sha256_file(&path).with_context(|| format!("hashing {}", path.display()))?;
            hashes.push((file_name(&path), sha));
        }
    }
    hashes.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(hashes)
}

/// The candle files `metadata` records as `(file name, SHA-256)`, sorted as [`data_hashes`]
/// sorts them (its files are recorded directory by directory, in `--data`'s order).
#[must_use]
pub fn recorded_data(metadata: &Metadata) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = metadata
        .data
        .iter()
        .map(|f| (file_name(Path::new(&f.path)), f.sha256.clone()))
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn data_files(dirs: &[PathBuf], loaded: &[AssetCandles]) -> anyhow::Result<Vec<DataFile>> {
    let by_id: BTreeMap<&str, &AssetCandles> = loaded.iter().map(|a| (a.asset.as_str(), a)).collect();
    let mut listed = Vec::new();
    for dir in dirs {
        listed.extend(list_dir(dir)?);
    }
    let mut per_asset: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, _) in &listed {
        *per_asset.entry(id.as_str()).or_default() += 1;
    }
    let mut files = Vec::new();
    for (id, path) in &listed {
        let Some(asset) = by_id.get(id.as_str()) else {
            continue;
        };
        // An asset joined from several files: each file's own rows, not the joined series'.
        let own;
        let candles = if per_asset[id.as_str()] > 1 {
            own = crate::data::read_file(path)?;
            &own
        } else {
            &asset.candles
        };
        files.push(DataFile {
            path: path.display().to_string(),
            sha256: artifact::sha256_file(path).with_context(|| format!("hashing {}", path.display()))?,
            rows: candles.len(),
            first: candles
                .first()
                .map(|c| format_ms(c.open_time))
                .unwrap_or_default(),
            last: candles.last().map(|c| format_ms(c.open_time)).unwrap_or_default(),
        });
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

/// Scores the artifact at `dir` on the data after its fit period (when there are more than 30
/// days of it) with SPEC's defaults and writes the metrics into its metadata (`validation`; the
/// content id covers what training made, not these scores).
///
/// # Errors
/// A load, evaluation or write failure.
pub fn score_out_of_sample(
    dir: &Path,
    assets: &[volcast_core::grid::Asset],
    device: &burn::prelude::Device,
    fit_until_ms: i64,
) -> anyhow::Result<Option<EvaluationReport>> {
    let fit_end_hour = close_hour_of_open_ms(fit_until_ms);
    let last_hour = assets.iter().map(|a| a.grid.last_hour()).max().unwrap_or(0);
    if last_hour <= fit_end_hour + 24 * 30 {
        return Ok(None);
    }
    let model = LoadedModel::load(dir, device)?;
    let eval = EvalConfig {
        fit_until_ms,
        eval_from_ms: fit_until_ms + HOUR_MS,
        eval_until_ms: hour_to_ms(last_hour),
        horizons: HORIZONS.to_vec(),
        alpha: 0.99,
        tau: 4,
        bonus: 0.05,
        fit_exponent: false,
        operated_days: model.metadata.recalibration.as_ref().and_then(|r| r.rolling_days),
    };
    let operated = crate::rolling::operated(&model);
    let scored = evaluate(
        assets,
        &eval,
        Some((operated.as_ref(), model.metadata.id.clone())),
    )?;
    let mut metadata = model.metadata.clone();
    metadata.validation = metrics_from(&scored);
    // Replaced whole and flushed: a kill or a power loss mid-write never leaves a truncated
    // metadata.json under the artifact's id (the scores are outside the id, which stays valid).
    let path = dir.join(artifact::METADATA);
    artifact::replace_durably(&path, serde_json::to_string_pretty(&metadata)?.as_bytes())
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(Some(scored))
}

/// The training step's speed on the pipeline's data, device and config (`train --bench`):
/// nothing is trained to the end or written. Threads default to 1 and
/// [`volcast_model::device::Selected::training_threads`]; batch sizes to the config's.
///
/// # Errors
/// A load failure, or too little data to train on.
pub fn bench(
    p: &Pipeline,
    steps: usize,
    batch_sizes: &[usize],
    threads: &[usize],
) -> anyhow::Result<BenchOutcome> {
    let dirs = data_dirs(&p.dirs)?;
    let selected = select(p.device)?;
    tracing::info!(device = %selected.description, "device");
    let data = LoadedData::load(&dirs, p.fit_until_ms)?;
    let mut default_threads = vec![1, selected.training_threads()];
    default_threads.dedup();
    let settings = crate::trainer::bench::BenchSettings {
        batch_sizes: if batch_sizes.is_empty() {
            vec![p.config.batch_size]
        } else {
            batch_sizes.to_vec()
        },
        threads: if threads.is_empty() {
            default_threads
        } else {
            threads.to_vec()
        },
        steps: steps.max(1),
        warmup: (steps / 10).clamp(2, 20),
    };
    let (rows, profile) = crate::trainer::bench::bench(
        &data.assets,
        &p.config,
        data.fit_end_hour,
        &selected.device,
        &settings,
    )?;
    // On a GPU, the CPU at the same batch sizes (on every core) for the speed-up.
    let cpu_rows = if selected.cpu {
        Vec::new()
    } else {
        let cpu = select(DeviceChoice::Cpu)?;
        let settings = crate::trainer::bench::BenchSettings {
            threads: vec![cpu.training_threads()],
            ..settings
        };
        crate::trainer::bench::bench(&data.assets, &p.config, data.fit_end_hour, &cpu.device, &settings)?.0
    };
    Ok(BenchOutcome {
        device: selected.description,
        rows,
        cpu_rows,
        profile,
    })
}

/// What [`bench()`] measured.
#[derive(Debug)]
pub struct BenchOutcome {
    /// The device, described.
    pub device: String,
    /// One per batch size and thread count.
    pub rows: Vec<crate::trainer::bench::BenchRow>,
    /// On a GPU: the CPU at the same batch sizes, every core; empty on the CPU.
    pub cpu_rows: Vec<crate::trainer::bench::BenchRow>,
    /// Where a single-threaded step's time goes, at the first batch size, with each of
    /// [`volcast_model::network::EncoderPath::ALL`].
    pub profile: [crate::trainer::bench::Profile; 3],
}

/// Runs the pipeline.
///
/// # Errors
/// Any failure to load, train, write or evaluate, with context.
pub fn run(p: &Pipeline) -> anyhow::Result<Outcome> {
    let dirs = data_dirs(&p.dirs)?;
    let config = &p.config;
    config
        .check(&HORIZONS)
        .map_err(|e| anyhow::anyhow!("training config: {e}"))?;
    let selected = select(p.device)?;
    tracing::info!(device = %selected.description, "device");

    let data = LoadedData::load(&dirs, p.fit_until_ms)?;
    // The files' hashes as trained on, taken before training: after it (minutes to hours), a
    // file replaced meanwhile was recorded with its new hash beside the old rows.
    let files = data_files(&dirs, &data.loaded)?;
    let inputs = run_inputs(&dirs, data.fit_until_ms)?;
    let options = RunOptions {
        checkpoint_dir: checkpoint_dir(p, &inputs),
        resume: p.resume,
        progress: p.progress,
        max_steps: p.max_steps,
        threads: p.threads.unwrap_or_else(|| selected.training_threads()),
        inputs,
    };
    let (members, apart) = train_groups(p, &data, &selected.device, &options)?;
    let apart_members = apart.as_ref().map_or(&[][..], |(_, t)| t.as_slice());
    let mut metadata = artifact_metadata(
        config,
        files,
        &data,
        &members,
        apart_members,
        &selected.description,
    )?;
    metadata.max_steps = p.max_steps;
    let training_seconds = metadata.training_seconds;
    let all = || members.iter().chain(apart_members);
    let samples_per_second = all().map(|t| t.samples_per_second).sum::<f64>() / all().count() as f64;
    tracing::info!(
        seconds = training_seconds,
        samples_per_second,
        best_epochs = ?all().map(|t| t.state.best_epoch + 1).collect::<Vec<_>>(),
        "trained"
    );
    let train_rows = members.first().map_or(0, |t| t.train_rows);
    let model = match apart {
        Some((horizons, trained)) => {
            let is_apart: Vec<bool> = HORIZONS.iter().map(|h| horizons.contains(h)).collect();
            crate::trainer::ensemble_apart(members, trained, &is_apart)?
        }
        None => crate::trainer::ensemble_of(members)?,
    };
    // The uncalibrated artifact is written to a staging directory no pointer names, calibrated
    // from there into `out`, then removed: an interrupted run leaves no loadable uncalibrated
    // artifact among the published ones.
    let staging = p.out.join(format!(".staging-{}", std::process::id()));
    let uncalibrated = artifact::save(&staging, model, config, metadata)?.dir;
    let dir = calibrate_or_keep(&uncalibrated, &data.assets, &p.out, &selected.device);
    let _ = std::fs::remove_dir_all(&staging);
    let dir = dir?;

    let report = score_out_of_sample(&dir, &data.assets, &selected.device, data.fit_until_ms)?;
    if p.set_default {
        set_default_to(&p.out, &dir)?;
    }
    Ok(Outcome {
        dir,
        report,
        train_rows,
        samples_per_second,
        training_seconds,
        device: selected.description,
    })
}

/// The networks trained apart for some horizons and the horizons (hours) they serve.
type ApartGroup = (Vec<usize>, Vec<Trained>);

/// Trains the run's networks and, where the config has networks apart
/// ([`TrainingConfig::networks_apart`]), the apart group with its own config and checkpoints in
/// `<checkpoints>/apart` (resumable like the others), with the horizons it serves. The config's
/// networks apart are checked before anything is trained.
fn train_groups(
    p: &Pipeline,
    data: &LoadedData,
    device: &burn::prelude::Device,
    options: &RunOptions,
) -> anyhow::Result<(Vec<Trained>, Option<ApartGroup>)> {
    let apart_config = p
        .config
        .networks_apart_config(&HORIZONS)
        .map_err(anyhow::Error::msg)?;
    let train = |config: &TrainingConfig, options: &RunOptions| {
        train_members(
            &data.assets,
            config,
            data.fit_end_hour,
            device,
            options,
            p.members,
        )
    };
    let members = train(&p.config, options)?;
    let apart = match apart_config {
        Some((horizons, config)) => {
            tracing::info!(?horizons, "training the networks apart");
            let options = RunOptions {
                checkpoint_dir: options.checkpoint_dir.join("apart"),
                ..options.clone()
            };
            Some((horizons, train(&config, &options)?))
        }
        None => None,
    };
    Ok((members, apart))
}

/// The candles a run trains on, as loaded and as a panel, and the end of its fit period.
struct LoadedData {
    loaded: Vec<AssetCandles>,
    assets: Vec<volcast_core::grid::Asset>,
    fit_until_ms: i64,
    fit_end_hour: i64,
}

impl LoadedData {
    /// Loads the candles in `dirs` (refusing none) and places the fit period's end: the hour of
    /// `fit_until_ms`, or the last candle before the end of the data.
    fn load(dirs: &[PathBuf], fit_until_ms: Option<i64>) -> anyhow::Result<Self> {
        let loaded = load_assets(dirs, None)?;
        if loaded.is_empty() {
            bail!(
                "no candle files in {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let assets = volcast_core::panel::to_panel(&loaded);
        let last_hour = assets.iter().map(|a| a.grid.last_hour()).max().unwrap_or(0);
        let last_open = hour_to_ms(last_hour - 1);
        let fit_until_ms = fit_until_ms.map_or(last_open, |ms| ms.div_euclid(HOUR_MS) * HOUR_MS);
        if fit_until_ms > last_open {
            bail!(
                "--fit-until {} is after the data's last candle ({}): the artifact would claim a \
                 fit period it has no candles for; give one at or before it (a bare date means \
                 its 23:00 candle)",
                format_ms(fit_until_ms),
                format_ms(last_open)
            );
        }
        let fit_end_hour = close_hour_of_open_ms(fit_until_ms);
        tracing::info!(assets = assets.len(), fit_until = %format_ms(fit_until_ms), "data loaded");
        Ok(Self {
            loaded,
            assets,
            fit_until_ms,
            fit_end_hour,
        })
    }
}

/// What a run's rows come from beyond its config, for [`RunOptions::inputs`]: the fit end, the
/// feature version and each candle file's name and SHA-256 (so a checkpoint is never resumed on
/// another split, on other features' rows or on changed files, whatever the directories are
/// called).
fn run_inputs(dirs: &[PathBuf], fit_until_ms: i64) -> anyhow::Result<String> {
    let files = data_hashes(dirs)?
        .into_iter()
        .map(|(name, sha)| format!("{name}={sha}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(format!(
        "fit_until_ms={fit_until_ms}; features=v{}; data={files}",
        volcast_core::features::FEATURE_VERSION
    ))
}

/// The checkpoint directory: the one asked for, else `<out>/.checkpoints/<hash of the config
/// and the inputs>` ([`run_inputs`]: the fit end and the candle files' hashes), so a run on
/// other data or another split starts in a directory of its own instead of meeting a checkpoint
/// it may not resume (`walkforward` always resumes).
fn checkpoint_dir(p: &Pipeline, inputs: &str) -> PathBuf {
    p.checkpoint_dir.clone().unwrap_or_else(|| {
        let key = artifact::content_id(
            b"checkpoint",
            &serde_json::to_string(&p.config).unwrap_or_default(),
            inputs,
        );
        p.out.join(".checkpoints").join(key)
    })
}

/// The best epoch's holdout QLIKE per horizon, as the artifact's `holdout` metrics: `model` for
/// a single network; `member-<i>` per member of an ensemble (what each one's early stopping saw;
/// the ensemble itself is scored out of sample); the networks trained apart's as
/// `apart-member-<i>` ([`artifact::APART_PREFIX`]; `apart-model` for one).
fn holdout_metrics(members: &[Trained], apart: &[Trained]) -> BTreeMap<usize, HorizonMetrics> {
    let mut out: BTreeMap<usize, HorizonMetrics> = BTreeMap::new();
    let groups = [(members, ""), (apart, artifact::APART_PREFIX)];
    for (name, trained) in groups.iter().flat_map(|(group, prefix)| {
        group.iter().enumerate().map(move |(i, t)| {
            let name = if group.len() == 1 {
                format!("{prefix}model")
            } else {
                format!("{prefix}member-{i}")
            };
            (name, t)
        })
    }) {
        let state = &trained.state;
        let Some(scores) = state.history.get(state.best_epoch) else {
            continue;
        };
        // A horizon without holdout targets has no score: absent (a NaN was written as null,
        // which the artifact's reader refuses).
        for (&h, &q) in HORIZONS.iter().zip(scores).filter(|(_, q)| q.is_finite()) {
            out.entry(h).or_default().qlike.insert(name.clone(), q);
        }
    }
    out
}

/// The trained model's metadata, with the baselines fitted on the same period.
fn artifact_metadata(
    config: &TrainingConfig,
    files: Vec<DataFile>,
    data: &LoadedData,
    members: &[Trained],
    apart: &[Trained],
    device: &str,
) -> anyhow::Result<Metadata> {
    let assets = &data.assets;
    let fit_end_hour = data.fit_end_hour;
    // Baselines on the same fit period, for the server's side-by-side answers.
    let prepared = prepare(assets, &HORIZONS);
    let baselines = BaselineSet::fit(assets, &prepared, fit_end_hour, &HORIZONS)?;
    let holdout = holdout_metrics(members, apart);
    let scaler = members
        .first()
        .map(|t| t.scaler.clone())
        .context("no network was trained")?;
    // The scaler is fitted on the training rows, which both groups share; one artifact serves
    // every network with one scaler.
    if apart.iter().any(|t| t.scaler != scaler) {
        bail!("the networks trained apart were fitted with another input scaler");
    }
    Ok(Metadata {
        schema_version: artifact::SCHEMA_VERSION,
        id: String::new(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        code_version: format!(
            "volcast-training {}{}",
            env!("CARGO_PKG_VERSION"),
            git_commit().map(|c| format!(" ({c})")).unwrap_or_default()
        ),
        features: feature_spec(config),
        scaler,
        horizons: HORIZONS.to_vec(),
        quantile_levels: config.model.quantile_levels.clone(),
        fit_until: format_ms(data.fit_until_ms),
        data: files,
        holdout,
        validation: BTreeMap::new(),
        har: baselines.har.clone(),
        shortage_logistic: baselines.shortage.clone(),
        device: device.to_owned(),
        training_seconds: members.iter().chain(apart).map(|t| t.state.seconds).sum(),
        risk: None,
        uncalibrated: None,
        recalibration: None,
        fit_end_recalibration: None,
        ensemble: None,
        ensemble_horizon_weights: None,
        stress_scenarios: volcast_core::stress::market_stress_scenarios(assets, fit_end_hour),
        // Filled by `artifact::save` from the files it writes.
        weights_sha256: None,
        config_sha256: None,
        term_structure: BTreeMap::new(),
        max_steps: None,
    })
}

/// Calibrates the risk engine of the artifact at `uncalibrated` and returns the calibrated
/// artifact, or on too little history publishes it marked uncalibrated
/// ([`artifact::Metadata::uncalibrated`]).
fn calibrate_or_keep(
    uncalibrated: &Path,
    assets: &[volcast_core::grid::Asset],
    out: &Path,
    device: &burn::prelude::Device,
) -> anyhow::Result<PathBuf> {
    let model = LoadedModel::load(uncalibrated, device)?;
    match calibrate_artifact(&model, assets, out, false) {
        Ok(saved) => {
            tracing::info!(artifact = %saved.dir.display(), "risk engine calibrated");
            Ok(saved.dir)
        }
        // Too little history: the artifact is published saying so, and serves (with the
        // reflection-normal rule) only where the operator allows it: `--allow-uncalibrated`.
        Err(CalibrateError::TooLittleData(why)) => {
            tracing::warn!(%why, "risk engine not calibrated; D uses the reflection-normal rule");
            let mut metadata = model.metadata.clone();
            metadata.uncalibrated = Some(format!("too little history to calibrate: {why}"));
            let saved = artifact::save(out, model.model.clone(), &model.config, metadata)?;
            Ok(saved.dir)
        }
        Err(e) => Err(e.into()),
    }
}

/// Points `<out>/default` at the artifact `dir`.
fn set_default_to(out: &Path, dir: &Path) -> anyhow::Result<()> {
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    artifact::set_default(out, &id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// An asset joined from two directories' files is recorded file by file, each with its own
    /// rows and range.
    #[test]
    fn each_file_of_a_joined_asset_is_recorded_with_its_own_rows() {
        const H: i64 = 3_600_000;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let candle = |t: i64| volcast_core::candles::Candle {
            open_time: t * H,
            open: 1.0,
            high: 1.1,
            low: 0.9,
            close: 1.0,
            volume: 1.0,
            quote_volume: 1.0,
        };
        for (d, hours) in [(&a, 0..10), (&b, 10..30)] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
            let candles: Vec<_> = hours.map(candle).collect();
            crate::data::write_csv(&d.join("X.csv"), &candles).unwrap_or_else(|e| panic!("{e}"));
        }
        let dirs = vec![a, b];
        // A checkpoint of rows made by other features' code is not resumed.
        let inputs = super::run_inputs(&dirs, 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            inputs.contains(&format!("features=v{};", volcast_core::features::FEATURE_VERSION)),
            "{inputs}"
        );
        let loaded = crate::data::load_assets(&dirs, None).unwrap_or_else(|e| panic!("{e}"));
        let files = super::data_files(&dirs, &loaded).unwrap_or_else(|e| panic!("{e}"));
        let rows: Vec<usize> = files.iter().map(|f| f.rows).collect();
        assert_eq!(rows, [10, 20]);
        assert_eq!(files[1].first, volcast_core::time::format_ms(10 * H));

        // The directories' order is part of the data (the first wins an hour both hold): the
        // same files in the other order are other data to a fold or a checkpoint; what an
        // artifact records reads as the hashes of its own order.
        let hashes = |dirs: &[std::path::PathBuf]| super::data_hashes(dirs).unwrap_or_else(|e| panic!("{e}"));
        let reversed = vec![dirs[1].clone(), dirs[0].clone()];
        assert_ne!(hashes(&dirs), hashes(&reversed));
        let metadata = |files: Vec<volcast_model::artifact::DataFile>| {
            let mut m: volcast_model::artifact::Metadata = serde_json::from_str(
                &std::fs::read_to_string(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../model-artifacts/e511b0d43982c4cf/metadata.json"),
                )
                .unwrap_or_else(|e| panic!("{e}")),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            m.data = files;
            m
        };
        assert_eq!(super::recorded_data(&metadata(files)), hashes(&dirs));
        let files = super::data_files(&reversed, &loaded).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(super::recorded_data(&metadata(files)), hashes(&reversed));
    }
}
