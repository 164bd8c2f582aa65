//! Model artifacts: a directory with the weights (burnpack), the training config and a metadata
//! file, named by a hash of its content. The contract between the trainer, `evaluate` and the
//! server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::prediction::Prediction;
use crate::scaler::Scaler;
use volcast_core::baselines::har::Har;
use volcast_core::baselines::shortage::ShortageLogistic;
use volcast_core::features::{FEATURE_VERSION, FEATURE_VERSIONS, FeatureSpec};

mod checks;
mod content;
mod recalibration;
pub mod term_structure;

pub use checks::{check_calibration, check_files, check_id, check_meaning};
pub use content::hashed_text;
pub use recalibration::{Adaptive, Recalibration, blend, scale_at_power, stack_inputs, stacked_probability};
pub use term_structure::check_term_structure;

/// Version of the artifact layout; loading refuses other versions.
pub const SCHEMA_VERSION: u32 = 1;
/// Weights file name.
pub const WEIGHTS: &str = "model.bpk";
/// Training config file name.
pub const CONFIG: &str = "config.json";
/// Metadata file name.
pub const METADATA: &str = "metadata.json";
/// Most networks an ensemble artifact may hold (each costs a forward pass per answer): `train`'s
/// 16 members, each with up to three networks (`per_horizon_epochs`, or its own and one trained
/// apart, `networks_apart`). It was 16, so `train --members 9` (18 networks with the week apart,
/// the default) trained every network and then refused its own artifact.
pub const MAX_ENSEMBLE: usize = 48;
/// Pointer file naming the default artifact, inside the artifacts directory.
pub const DEFAULT_POINTER: &str = "default";
/// The prefix of the holdout figures' names of networks trained apart for some horizons
/// (`TrainingConfig::networks_apart`): `apart-member-<i>`, or `apart-model` for one.
pub const APART_PREFIX: &str = "apart-";

/// A data file the model was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path as given to the trainer.
    pub path: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Rows (candles).
    pub rows: usize,
    /// Open time of the first candle, RFC 3339.
    pub first: String,
    /// Open time of the last candle, RFC 3339.
    pub last: String,
}

/// Pooled QLIKE and shortage scores at one horizon, model beside baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HorizonMetrics {
    /// Points scored.
    pub n_points: usize,
    /// QLIKE per forecaster (`model`, `ewma`, `garch`, `har`).
    pub qlike: BTreeMap<String, f64>,
    /// Shortage ROC AUC per forecaster (`model`, `baseline`).
    pub shortage_roc_auc: BTreeMap<String, f64>,
    /// Quantile coverage per level (as text, e.g. "0.95").
    pub coverage: BTreeMap<String, f64>,
}

/// Everything about an artifact except its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Content-derived id (also the directory name).
    pub id: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// `volcast-training` version and git commit when known.
    pub code_version: String,
    /// Model inputs.
    pub features: FeatureSpec,
    /// Input scaler.
    pub scaler: Scaler,
    /// Horizons, hours, in output order.
    pub horizons: Vec<usize>,
    /// RV quantile levels, in output order.
    pub quantile_levels: Vec<f64>,
    /// Open time of the last candle fitting used, RFC 3339.
    pub fit_until: String,
    /// Training data.
    pub data: Vec<DataFile>,
    /// Early-stopping holdout metrics (last days of the fit period).
    pub holdout: BTreeMap<usize, HorizonMetrics>,
    /// Out-of-sample metrics after the fit period, when the training data had any.
    pub validation: BTreeMap<usize, HorizonMetrics>,
    /// Baselines fitted on the same period, for the server's side-by-side answers.
    pub har: BTreeMap<usize, Har>,
    /// Baseline shortage logistic maps.
    pub shortage_logistic: BTreeMap<usize, ShortageLogistic>,
    /// Device trained on.
    pub device: String,
    /// Training wall time, seconds.
    pub training_seconds: f64,
    /// Drawdown calibrations of the model's and the HAR baseline's variances (the risk engine);
    /// absent in artifacts made before the engine was calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskCalibration>,
    /// Why the artifact carries no risk calibration, when it was published without one on
    /// purpose (too little history to calibrate on). An artifact with neither this nor
    /// [`Self::risk`] is refused by the server ([`check_calibration`]): an interrupted `train`
    /// or a hand-made artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncalibrated: Option<String>,
    /// Post-hoc corrections of the network's outputs measured on the early-stopping holdout;
    /// absent in artifacts made before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalibration: Option<Recalibration>,
    /// In an artifact the daily job wrote, the corrections the trained artifact carried at its
    /// fit end ([`Self::recalibration`] there): the replay values forecasts made before the
    /// daily job's first day as served with them, so each day's job, started from the day
    /// before's artifact, measures what the replay from the trained one does. Absent in a
    /// trained artifact, whose own corrections are those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_end_recalibration: Option<Recalibration>,
    /// The market asset's worst historical windows up to the fit end, replayed by the stress
    /// simulation; empty in artifacts made before they were recorded.
    #[serde(default)]
    pub stress_scenarios: Vec<volcast_core::stress::ReplayWindow>,
    /// Networks in `model.bpk` when it holds an ensemble over seeds
    /// ([`crate::network::Ensemble`]); absent for a single network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<usize>,
    /// Where each horizon is served by networks of its own (trained for the epochs best at that
    /// horizon): per network of `model.bpk`, per horizon, its weight in that horizon's mean
    /// ([`crate::network::Ensemble::with_horizon_weights`]); absent: every network at every
    /// horizon alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble_horizon_weights: Option<Vec<Vec<f32>>>,
    /// SHA-256 of `model.bpk`, checked at every load ([`check_files`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// SHA-256 of `config.json`, checked at every load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    /// Horizons whose network variance is carried from a shorter one's ([`term_structure::carry`]): per
    /// horizon, the horizon it is carried from (e.g. `{168: 24}`: the week is HAR's week times
    /// the network's next day over HAR's); empty: each horizon is the network's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub term_structure: BTreeMap<usize, usize>,
    /// Optimiser steps per network training stopped after (`--max-steps`: a smoke run, not a
    /// trained model); absent for a full training. `walkforward` never reuses such a fold for a
    /// run without the same limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
}

/// The risk engine's calibration, measured on the last days of the fit period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskCalibration {
    /// Of the model's variance curve.
    pub model: volcast_core::drawdown::DrawdownCalibration,
    /// Of the artifact's HAR variance curve (the server's side-by-side answers).
    pub har: Option<volcast_core::drawdown::DrawdownCalibration>,
}

/// Why an artifact could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A file is missing or unreadable.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The artifact was made for another layout or feature set.
    #[error("{path}: {message}")]
    Incompatible {
        /// The artifact directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

fn io(path: &Path, e: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Reads and checks an artifact's metadata.
///
/// # Errors
/// [`ArtifactError`] when missing, unreadable or incompatible with this build.
pub fn read_metadata(dir: &Path) -> Result<Metadata, ArtifactError> {
    let path = dir.join(METADATA);
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let meta: Metadata =
        serde_json::from_str(&text).map_err(|e| io(&path, format!("not valid metadata: {e}")))?;
    let incompatible = |message: String| ArtifactError::Incompatible {
        path: dir.to_owned(),
        message,
    };
    if meta.schema_version != SCHEMA_VERSION {
        return Err(incompatible(format!(
            "artifact schema {} but this build reads {SCHEMA_VERSION}",
            meta.schema_version
        )));
    }
    if !FEATURE_VERSIONS.contains(&meta.features.version) {
        return Err(incompatible(format!(
            "features version {} but this build computes versions {} to {FEATURE_VERSION}",
            meta.features.version,
            FEATURE_VERSIONS.start()
        )));
    }
    Ok(meta)
}

impl Metadata {
    /// The corrections in force before the daily job's first day: the trained artifact's
    /// ([`Self::fit_end_recalibration`] where the daily job wrote this one, else its own).
    #[must_use]
    pub fn fit_end_corrections(&self) -> Option<&Recalibration> {
        self.fit_end_recalibration
            .as_ref()
            .or(self.recalibration.as_ref())
    }

    /// The members trained (seeds): the networks of `model.bpk`, or, where horizons are served
    /// by networks of their own, the members the holdout figures name (those of the networks
    /// trained apart, named with [`APART_PREFIX`], not counted: they take the same seeds).
    #[must_use]
    pub fn members(&self) -> usize {
        let networks = self.ensemble.unwrap_or(1);
        if self.ensemble_horizon_weights.is_none() {
            return networks;
        }
        self.holdout.values().next().map_or(networks, |m| {
            m.qlike
                .keys()
                .filter(|name| !name.starts_with(APART_PREFIX))
                .count()
                .max(1)
        })
    }

    /// The artifact's HAR forecasts at `slot` of `prepared`, one per horizon in artifact order
    /// (NaN where a horizon has no HAR or the regressors are missing).
    #[must_use]
    pub fn har_at(&self, prepared: &volcast_core::panel::PreparedAsset, slot: usize) -> Vec<f64> {
        let regressors = prepared.har_regressors(slot);
        self.horizons
            .iter()
            .map(|h| self.har.get(h).map_or(f64::NAN, |m| m.forecast(regressors)))
            .collect()
    }

    /// SPEC's baseline shortage score `M_H(t) / median` per horizon (artifact order) at `slot`
    /// of `prepared` (NaN where it does not exist).
    #[must_use]
    pub fn shortage_scores_at(&self, prepared: &volcast_core::panel::PreparedAsset, slot: usize) -> Vec<f64> {
        let mut scratch = Vec::new();
        self.horizons
            .iter()
            .map(|&h| prepared.shortage(slot, h, &mut scratch).score.unwrap_or(f64::NAN))
            .collect()
    }

    /// What follows the network at `slot` of `prepared` ([`Self::combine`]), with the HAR
    /// forecasts and baseline shortage scores there computed only where it needs them.
    pub fn combine_at(&self, prepared: &volcast_core::panel::PreparedAsset, slot: usize, p: &mut Prediction) {
        let r = self.recalibration.as_ref();
        let har = if !self.term_structure.is_empty() || r.is_some_and(|r| !r.har_weight.is_empty()) {
            self.har_at(prepared, slot)
        } else {
            Vec::new()
        };
        let scores = if r.is_some_and(|r| !r.shortage_stack.is_empty()) {
            self.shortage_scores_at(prepared, slot)
        } else {
            Vec::new()
        };
        self.combine(&har, &scores, p);
    }

    /// What follows the network (its corrections, if any, already applied): the horizons of
    /// [`Self::term_structure`] carried ([`term_structure::carry`], under the corrections'
    /// variance factors if any), then the variance blended with the HAR forecasts `har` by the
    /// corrections' weights and the shortage probability stacked with the baseline `scores`,
    /// where the corrections say so (both in artifact order; an empty slice leaves its step out).
    /// The one sequence for the server, `evaluate`, `stress` and the daily job's raw forecasts.
    pub fn combine(&self, har: &[f64], scores: &[f64], p: &mut Prediction) {
        term_structure::carry(
            &self.term_structure,
            &self.horizons,
            self.recalibration.as_ref(),
            har,
            p,
        );
        if let Some(r) = &self.recalibration {
            r.blend_har(&self.horizons, &mut p.variance, har);
            r.stack_shortage(&self.horizons, &mut p.shortage_probability, scores);
        }
    }
}

/// Resolves an artifact path: a directory with a metadata file, or an artifacts directory
/// holding a `default` pointer.
///
/// # Errors
/// [`ArtifactError::Io`] when neither.
pub fn resolve(path: &Path) -> Result<PathBuf, ArtifactError> {
    if path.join(METADATA).is_file() {
        return Ok(path.to_owned());
    }
    let pointer = if path.file_name().is_some_and(|n| n == DEFAULT_POINTER) && path.is_file() {
        path.to_owned()
    } else {
        path.join(DEFAULT_POINTER)
    };
    let id = std::fs::read_to_string(&pointer).map_err(|_| {
        io(
            path,
            "not an artifact directory (no metadata.json) nor an artifacts directory with a `default` pointer",
        )
    })?;
    let dir = pointer.parent().unwrap_or(Path::new(".")).join(id.trim());
    if dir.join(METADATA).is_file() {
        Ok(dir)
    } else {
        Err(io(
            &pointer,
            format!("names artifact `{}`, which does not exist", id.trim()),
        ))
    }
}

/// SHA-256 of a file, hex.
///
/// # Errors
/// Any I/O error.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Content id of an artifact: the first 16 hex digits of SHA-256 over its weights, config and
/// metadata (with the id field empty, and [`save`] empties the out-of-sample `validation` scores
/// too: re-scoring or re-calibrating an artifact to the same content keeps its id).
#[must_use]
pub fn content_id(weights: &[u8], config: &str, metadata_without_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(weights);
    h.update(config.as_bytes());
    h.update(metadata_without_id.as_bytes());
    hex(&h.finalize())[..16].to_owned()
}

/// The content id [`save`] gives `metadata` beside `weights` and `config`: [`content_id`] over
/// the metadata's compact JSON with the id field and the `validation` scores emptied
/// ([`content::hashed_text`]: the id covers what training and calibration made, not the
/// out-of-sample scores written beside it after saving). Loading recomputes it ([`check_id`]),
/// so no field of the metadata can be changed unseen.
///
/// # Errors
/// The metadata failing to serialise (it never does: every field is plain data).
pub fn id_of(weights: &[u8], config: &str, metadata: &Metadata) -> Result<String, String> {
    let text = serde_json::to_string(metadata).map_err(|e| e.to_string())?;
    let hashed = hashed_text(&text).ok_or("the metadata is not a JSON object")?;
    Ok(content_id(weights, config, &hashed))
}

/// Hash of a whole artifact directory's files (weights, config, metadata), reported by the
/// server with every answer.
///
/// # Errors
/// [`ArtifactError::Io`] when a file is unreadable.
pub fn artifact_hash(dir: &Path) -> Result<String, ArtifactError> {
    let mut h = Sha256::new();
    for name in [WEIGHTS, CONFIG, METADATA] {
        let path = dir.join(name);
        h.update(std::fs::read(&path).map_err(|e| io(&path, e))?);
    }
    Ok(hex(&h.finalize()))
}

/// Where [`save`] put an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// `out/<id>`.
    pub dir: PathBuf,
    /// Whether this call created it; false when an artifact with the same content was already
    /// there, which is then left exactly as it was (published artifacts are never rewritten).
    pub created: bool,
}

/// Writes an artifact into `out/<id>/` (through a temporary directory and one rename, so a crash
/// never leaves a half-written artifact under its id) and says where. `metadata.id` is filled in.
/// An existing `out/<id>/` is never touched.
///
/// # Errors
/// [`ArtifactError::Io`] on any write failure.
pub fn save<C: Serialize>(
    out: &Path,
    model: crate::network::Ensemble,
    config: &C,
    mut metadata: Metadata,
) -> Result<Saved, ArtifactError> {
    use burn::module::Module;
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let tmp = out.join(format!(".tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    let weights_path = tmp.join(WEIGHTS);
    // A single network is stored as itself, as before ensembles existed.
    metadata.ensemble = (model.len() > 1).then_some(model.len());
    metadata.ensemble_horizon_weights = model.horizon_weights().map(<[Vec<f32>]>::to_vec);
    let written = if model.len() > 1 {
        model.save_file(&weights_path)
    } else {
        model.first().clone().save_file(&weights_path)
    };
    written.map_err(|e| io(&weights_path, e))?;
    let weights = std::fs::read(&weights_path).map_err(|e| io(&weights_path, e))?;
    let config_json = serde_json::to_string_pretty(config).map_err(|e| io(&tmp, e))?;
    metadata.weights_sha256 = Some(hex(&Sha256::digest(&weights)));
    metadata.config_sha256 = Some(hex(&Sha256::digest(config_json.as_bytes())));
    metadata.id = id_of(&weights, &config_json, &metadata).map_err(|e| io(&tmp, e))?;
    let meta_json = serde_json::to_string_pretty(&metadata).map_err(|e| io(&tmp, e))?;
    std::fs::write(tmp.join(CONFIG), config_json).map_err(|e| io(&tmp.join(CONFIG), e))?;
    std::fs::write(tmp.join(METADATA), meta_json).map_err(|e| io(&tmp.join(METADATA), e))?;
    let dir = out.join(&metadata.id);
    let created = !dir.exists();
    if created {
        // On disk before the name appears: after a power loss an artifact is whole or absent,
        // never a directory of empty files taken as done.
        for path in [weights_path, tmp.join(CONFIG), tmp.join(METADATA), tmp.clone()] {
            sync(&path)?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
        sync(out)?;
    } else {
        // Same content, same id: the artifact is already there, and stays as it is.
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    Ok(Saved { dir, created })
}

/// Points `out/default` at artifact `id`.
///
/// # Errors
/// [`ArtifactError::Io`] on a write failure.
pub fn set_default(out: &Path, id: &str) -> Result<(), ArtifactError> {
    let pointer = out.join(DEFAULT_POINTER);
    // A name of its own per write: two writers (two `--set-default` runs, two threads) never
    // rename each other's file.
    replace_durably(&pointer, format!("{id}\n").as_bytes()).map_err(|e| io(&pointer, e))
}

/// Flushes a file or a directory (its entries) to disk.
fn sync(path: &Path) -> Result<(), ArtifactError> {
    sync_path(path).map_err(|e| io(path, e))
}

/// Flushes a file or a directory (its entries) to disk.
///
/// # Errors
/// The open or the flush failing.
pub fn sync_path(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all())
}

/// Replaces `path` with `contents` whole: written to a temporary name of its own beside it,
/// flushed, renamed over `path`, and the directory flushed. A kill or a power loss leaves the
/// old file or the new one, never a truncated one; two writers never rename each other's
/// temporary file.
///
/// # Errors
/// A write, flush or rename failing (the temporary file is then removed where it can be).
pub fn replace_durably(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, contents)
        .and_then(|()| sync_path(&tmp))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_path(dir)
}

#[cfg(test)]
mod tests {
    /// The committed artifacts' metadata (features version 1), and a copy of it under `edit` in
    /// a directory of its own: what loading's checks say of it.
    fn checked_after(edit: impl FnOnce(&mut super::Metadata)) -> Result<(), super::ArtifactError> {
        let committed =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model-artifacts/e511b0d43982c4cf");
        let mut meta = super::read_metadata(&committed).unwrap_or_else(|e| panic!("{e}"));
        edit(&mut meta);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let text = serde_json::to_string(&meta).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join(super::METADATA), text).unwrap_or_else(|e| panic!("{e}"));
        let meta = super::read_metadata(dir.path())?;
        super::check_meaning(dir.path(), &meta)
    }

    /// Artifacts of every feature version this build computes load (version 1's keep their
    /// market factor's old reading, [`volcast_core::features::Market::of_version`]); a later one
    /// is refused, and so are features named otherwise or in another order, or another market
    /// asset (only the names' count was compared).
    #[test]
    fn an_artifact_is_served_only_with_the_features_it_was_trained_on() {
        assert!(checked_after(|_| {}).is_ok(), "the committed artifact, version 1");
        assert!(checked_after(|m| m.features.version = 2).is_ok());
        let said = |r: Result<(), super::ArtifactError>| r.map_or_else(|e| e.to_string(), |()| "ok".into());
        let later = said(checked_after(|m| m.features.version = 3));
        assert!(later.contains("features version 3"), "{later}");
        let swapped = said(checked_after(|m| m.features.static_names.swap(0, 1)));
        assert!(swapped.contains("names do not match"), "{swapped}");
        let renamed = said(checked_after(|m| m.features.channel_names[4] = "gap".into()));
        assert!(renamed.contains("names do not match"), "{renamed}");
        let market = said(checked_after(|m| m.features.market_asset = "ETHUSDT".into()));
        assert!(market.contains("market asset is ETHUSDT"), "{market}");
    }

    /// `train --members 16` (the largest it takes) with networks apart and per-horizon epochs
    /// makes an artifact loading accepts; a hand-made one beyond is refused.
    #[test]
    fn the_largest_ensemble_train_makes_loads() {
        let with = |n: usize| {
            checked_after(|m| {
                m.ensemble = Some(n);
                m.ensemble_horizon_weights = None;
            })
        };
        assert!(with(18).is_ok(), "9 members and their networks apart");
        assert!(with(16 * 3).is_ok());
        assert!(with(16 * 3 + 1).is_err());
    }

    /// A replacement that cannot land (the name is a directory) fails and leaves no temporary
    /// file behind; one that can replaces the file whole.
    #[test]
    fn a_durable_replacement_lands_whole_or_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("metadata.json");
        std::fs::write(&file, "old").unwrap_or_else(|e| panic!("{e}"));
        super::replace_durably(&file, b"new").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read_to_string(&file).unwrap_or_default(), "new");
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap_or_else(|e| panic!("{e}"));
        assert!(super::replace_durably(&blocked, b"x").is_err());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.len() == 2 && !names.iter().any(|n| n.ends_with(".tmp")),
            "{names:?}"
        );
    }

    /// Writers of the `default` pointer at the same time each leave it whole, and none fails
    /// for another's temporary file.
    #[test]
    fn concurrent_default_pointers_never_collide() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().to_owned();
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let out = out.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        super::set_default(&out, &format!("id{i}")).unwrap_or_else(|e| panic!("{e}"));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap_or_else(|_| panic!("a writer failed"));
        }
        let pointer = std::fs::read_to_string(out.join(super::DEFAULT_POINTER)).unwrap_or_default();
        assert!(
            pointer.starts_with("id") && pointer.ends_with('\n'),
            "{pointer:?}"
        );
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}
