//! Loading candle files into the market-data store (`ingest`): every file is read and checked
//! against SPEC's bad-input rules exactly as `evaluate` reads it, then stored in one transaction,
//! so a file is loaded whole or not at all; hours already stored are skipped, so loading the same
//! files again changes nothing.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use volcast_store::{CandleStore, StoreError};

use crate::data::{LoadError, asset_id, file_error, list_dir, read_file};
use volcast_core::time::{HOUR_MS, format_ms};

/// Files read in parallel before they are stored in turn.
const READ_AHEAD: usize = 8;

/// One file that could not be loaded, and why (file, field and row for a bad value).
#[derive(Debug)]
pub struct Refused {
    /// The file.
    pub path: PathBuf,
    /// Why it was left out.
    pub reason: String,
}

/// What an ingestion did.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// Files stored.
    pub files: usize,
    /// Candles new to the store.
    pub inserted: u64,
    /// Candles read that the store already held.
    pub already_stored: u64,
    /// Of those, the ones whose stored values differ from the file's: the stored ones are kept
    /// (a stored hour is never rewritten), so a corrected file changes nothing there.
    pub conflicting: u64,
    /// The first differing hour of each file with any: (file, open time).
    pub conflicts: Vec<(PathBuf, i64)>,
    /// Candles of an hour an earlier file of the same run held for the asset, with other
    /// values than the stored ones: the first stored value is kept, as SPEC merges directories
    /// (the first wins a duplicated hour), and they are not counted as conflicts. Two
    /// directories rounding a volume differently (`binance-spot-1h` and
    /// `binance-spot-1h-trades`) are not a corrected file.
    pub first_file_kept: u64,
    /// Files left out, the store unchanged for them.
    pub refused: Vec<Refused>,
}

/// Why ingestion stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A directory could not be listed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The store failed (not a refused file: the database itself).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A path given is neither a directory nor a candle file.
    #[error("{0}: not a directory or a candle file (.csv, .csv.gz, .parquet)")]
    NotCandles(PathBuf),
}

/// The candle files under `paths` (directories, or files), with their asset ids, in order.
///
/// # Errors
/// [`IngestError`] when a directory cannot be listed or a path is not a candle file.
pub fn candle_files(paths: &[PathBuf]) -> Result<Vec<(String, PathBuf)>, IngestError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            out.extend(list_dir(path)?);
        } else {
            let id = asset_id(path).ok_or_else(|| IngestError::NotCandles(path.clone()))?;
            out.push((id, path.clone()));
        }
    }
    Ok(out)
}

/// Loads `files` into `store`; `on_file` is called after each with its path (progress).
///
/// # Errors
/// [`IngestError::Store`] when the database fails; a bad file is not an error but a
/// [`Refused`] entry in the report.
pub async fn ingest<S: CandleStore>(
    store: &S,
    files: &[(String, PathBuf)],
    on_file: &(dyn Fn(&Path) + Sync),
) -> Result<IngestReport, IngestError> {
    let mut report = IngestReport::default();
    // The hours each asset's earlier files of this run held, for the assets with more than
    // one file (the others need none).
    let mut files_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (asset, _) in files {
        *files_of.entry(asset.as_str()).or_default() += 1;
    }
    let mut earlier: std::collections::HashMap<&str, std::collections::HashSet<i64>> =
        std::collections::HashMap::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(i64::MAX, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    for chunk in files.chunks(READ_AHEAD) {
        let read: Vec<_> = chunk
            .par_iter()
            .map(|(_, path)| read_file(path).and_then(|c| closed_by(c, now).map_err(|m| file_error(path, m))))
            .collect();
        for ((asset, path), candles) in chunk.iter().zip(read) {
            match candles {
                Ok(candles) => match store.insert_candles(asset, &candles).await {
                    Ok(new) => {
                        report.files += 1;
                        report.inserted += new;
                        report.already_stored += candles.len() as u64 - new;
                        if new < candles.len() as u64 {
                            let (kept, differing): (Vec<i64>, Vec<i64>) = differing(store, asset, &candles)
                                .await?
                                .into_iter()
                                .partition(|t| earlier.get(asset.as_str()).is_some_and(|e| e.contains(t)));
                            report.first_file_kept += kept.len() as u64;
                            if let Some(&first) = differing.first() {
                                report.conflicting += differing.len() as u64;
                                report.conflicts.push((path.clone(), first));
                            }
                        }
                        if files_of.get(asset.as_str()).is_some_and(|&n| n > 1) {
                            earlier
                                .entry(asset.as_str())
                                .or_default()
                                .extend(candles.iter().map(|c| c.open_time));
                        }
                    }
                    Err(e @ StoreError::Candle { .. }) => report.refused.push(Refused {
                        path: path.clone(),
                        reason: e.to_string(),
                    }),
                    Err(e) => return Err(e.into()),
                },
                Err(e) => report.refused.push(Refused {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            }
            on_file(path);
        }
    }
    Ok(report)
}

/// The open times of `candles` (one file's, oldest first) whose stored values differ from them.
///
/// # Errors
/// The store's.
async fn differing<S: CandleStore>(
    store: &S,
    asset: &str,
    candles: &[volcast_core::candles::Candle],
) -> Result<Vec<i64>, IngestError> {
    let (Some(first), Some(last)) = (candles.first(), candles.last()) else {
        return Ok(Vec::new());
    };
    let hours = u32::try_from((last.open_time - first.open_time) / HOUR_MS + 1).unwrap_or(u32::MAX);
    let stored = store
        .candles(asset, first.open_time, last.open_time, hours)
        .await?;
    let by_time: std::collections::HashMap<i64, &volcast_core::candles::Candle> =
        stored.iter().map(|c| (c.open_time, c)).collect();
    Ok(candles
        .iter()
        .filter(|c| by_time.get(&c.open_time).is_some_and(|s| **s != **c))
        .map(|c| c.open_time)
        .collect())
}

/// `candles` when every one closed by `now` (Unix ms). A candle not closed yet (from the future,
/// a clock or unit slip in the file, or the hour still open) would move the asset's last stored
/// hour ahead: the follower would resume after it, skipping real hours, and the staleness check
/// would never see the asset as stale.
fn closed_by(
    candles: Vec<volcast_core::candles::Candle>,
    now: i64,
) -> Result<Vec<volcast_core::candles::Candle>, String> {
    match candles
        .iter()
        .position(|c| c.open_time.saturating_add(HOUR_MS) > now)
    {
        None => Ok(candles),
        Some(row) => Err(format!(
            "row {row}: the candle opening at {} has not closed yet (now {}): a candle from the future is never stored",
            format_ms(candles[row].open_time),
            format_ms(now)
        )),
    }
}
