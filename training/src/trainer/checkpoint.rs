//! A training run's checkpoints: each epoch's weights, optimiser and state in their own
//! directory, made current by one rename of a pointer, so a kill at any moment leaves a whole
//! checkpoint to resume from.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainError;

/// Where checkpoints of a run live and what they say.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// The run's config, as JSON (resume refuses another).
    pub config: String,
    /// Last completed epoch (0-based).
    pub epoch: usize,
    /// Best holdout score so far (mean QLIKE over horizons; infinite before any).
    #[serde(deserialize_with = "best_or_null")]
    pub best: f64,
    /// Epoch of the best score.
    pub best_epoch: usize,
    /// Epochs since the best.
    pub bad_epochs: usize,
    /// Holdout QLIKE per horizon, per completed epoch (NaN where a horizon had no score).
    #[serde(deserialize_with = "scores_or_null")]
    pub history: Vec<[f64; 3]>,
    /// Seconds spent training so far.
    pub seconds: f64,
    /// With weights averaged ([`volcast_model::config::TrainingConfig::weight_average_half_life_epochs`]):
    /// the decayed sum of the weights the average in `AVERAGE` holds (None: no average, and a
    /// state written before the field).
    #[serde(default)]
    pub average_weight: Option<f64>,
    /// Whether the last epoch was cut short by the step budget (`--max-steps`): a run without
    /// one never resumes from it, as if the epoch were complete, but starts again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut_short: bool,
}

/// The best score, `null` read back as infinite: the best starts there, and serde_json writes
/// it as `null` (NaN would never be beaten).
fn best_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// Each epoch's scores, a `null` (serde_json's NaN) read back as NaN: a state with a horizon's
/// score NaN did not read, so `--resume` stopped and the refit began again silently.
fn scores_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<[f64; 3]>, D::Error> {
    let rows = Vec::<[Option<f64>; 3]>::deserialize(d)?;
    Ok(rows
        .into_iter()
        .map(|r| r.map(|x| x.unwrap_or(f64::NAN)))
        .collect())
}

/// Files inside a checkpoint directory.
pub(super) const LAST: &str = "last.bpk";
pub(super) const BEST: &str = "best.bpk";
pub(super) const OPTIM: &str = "optimizer.bpk";
/// The averaged weights after the epoch's last step, when the run averages them.
pub(super) const AVERAGE: &str = "average.bpk";
pub(super) const STATE: &str = "state.json";
/// Names the directory of the last complete checkpoint (`epoch-NNNN`), replaced by a rename.
pub(super) const CURRENT: &str = "current";

pub(super) fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The directory of the last complete checkpoint, when there is one.
pub(super) fn current_checkpoint(dir: &Path) -> Option<PathBuf> {
    let name = std::fs::read_to_string(dir.join(CURRENT)).ok()?;
    let current = dir.join(name.trim());
    current.is_dir().then_some(current)
}

/// The state of the current checkpoint in `dir`, when there is one and it reads.
pub(super) fn current_state(dir: &Path) -> Option<CheckpointState> {
    current_checkpoint(dir)
        .and_then(|c| std::fs::read_to_string(c.join(STATE)).ok())
        .and_then(|text| serde_json::from_str::<CheckpointState>(&text).ok())
}

/// Whether the current checkpoint in `dir` was written by a run with the config `config_json`.
pub(super) fn written_by(dir: &Path, config_json: &str) -> bool {
    current_state(dir).is_some_and(|state| state.config == config_json)
}

/// Writes `state` into the epoch's checkpoint directory, then makes that directory the current
/// one with a single rename of the [`CURRENT`] pointer, and removes the previous one. A kill at
/// any moment leaves the previous epoch's weights, optimiser and state together, or this
/// epoch's together: `--resume` never redoes or skips an epoch.
pub(super) fn publish_checkpoint(
    dir: &Path,
    epoch_dir: &Path,
    state: &CheckpointState,
) -> Result<(), TrainError> {
    let path = epoch_dir.join(STATE);
    let json = serde_json::to_string_pretty(state).map_err(|e| ckpt_err(&path, e))?;
    std::fs::write(&path, json).map_err(|e| ckpt_err(&path, e))?;
    // On disk before the pointer names it: after a power loss the current checkpoint is whole.
    let sync = |p: &Path| volcast_model::artifact::sync_path(p).map_err(|e| ckpt_err(p, e));
    for entry in std::fs::read_dir(epoch_dir).map_err(|e| ckpt_err(epoch_dir, e))? {
        sync(&entry.map_err(|e| ckpt_err(epoch_dir, e))?.path())?;
    }
    sync(epoch_dir)?;
    let previous = current_checkpoint(dir);
    let name = epoch_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{CURRENT}.tmp"));
    std::fs::write(&tmp, name).map_err(|e| ckpt_err(&tmp, e))?;
    sync(&tmp)?;
    std::fs::rename(&tmp, dir.join(CURRENT)).map_err(|e| ckpt_err(&dir.join(CURRENT), e))?;
    sync(dir)?;
    if let Some(previous) = previous.filter(|p| p != epoch_dir) {
        std::fs::remove_dir_all(&previous).map_err(|e| ckpt_err(&previous, e))?;
    }
    Ok(())
}

/// Writes a file through `save` to a temporary name in `dir`, then renames it to `name`.
pub(super) fn save_atomic(
    dir: &Path,
    name: &str,
    save: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), TrainError> {
    let tmp = dir.join(format!("{name}.tmp"));
    save(&tmp).map_err(|e| ckpt_err(&tmp, e))?;
    // burn appends its extension when missing; find what was written.
    let written = if tmp.exists() {
        tmp
    } else {
        tmp.with_extension("tmp.bpk")
    };
    std::fs::rename(&written, dir.join(name)).map_err(|e| ckpt_err(&dir.join(name), e))
}

#[cfg(test)]
mod tests {
    /// A state whose scores hold a NaN (a horizon without a score) reads back, NaN where it was.
    #[test]
    fn a_state_with_a_missing_score_reads_back() {
        let state = super::CheckpointState {
            config: "{}".into(),
            epoch: 2,
            best: f64::INFINITY,
            best_epoch: 0,
            bad_epochs: 1,
            history: vec![[0.5, f64::NAN, 0.3], [0.4, 0.2, 0.1]],
            seconds: 1.0,
            average_weight: None,
            cut_short: false,
        };
        let text = serde_json::to_string(&state).unwrap_or_else(|e| panic!("{e}"));
        let back: super::CheckpointState =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(back.best == f64::INFINITY && back.history[0][1].is_nan());
        assert_eq!((back.history[0][0], back.history[1]), (0.5, [0.4, 0.2, 0.1]));
    }
}
