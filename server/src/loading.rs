//! An artifact loaded and served: warmed off the async threads, its inference queue started,
//! its anomaly detector installed; reloads on SIGHUP or from the daily job, the old model kept
//! when a reload fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::queue::{BatchQueue, QueueConfig};
use crate::state::{AppState, Serving};
use crate::{ServeError, anomaly, model_info};

/// How an artifact is loaded and served: its queue, and whether an uncalibrated one is allowed.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// The inference queue.
    pub queue: QueueConfig,
    /// Serve an artifact that says it has no risk calibration (`--allow-uncalibrated`).
    pub allow_uncalibrated: bool,
}

/// The load settings of a config.
#[must_use]
pub fn load_options(config: &Config) -> LoadOptions {
    LoadOptions {
        queue: queue_config(config),
        allow_uncalibrated: config.allow_uncalibrated,
    }
}

/// The queue settings of a config.
#[must_use]
pub fn queue_config(config: &Config) -> QueueConfig {
    QueueConfig {
        max_batch: usize::try_from(config.max_batch).unwrap_or(64),
        max_wait: config.max_wait(),
        capacity: usize::try_from(config.queue_capacity).unwrap_or(256),
        retry_after: std::time::Duration::from_secs(config.retry_after_s),
    }
}

/// Loads the artifact at `path` (an artifact, or a directory with a `default` pointer, read
/// afresh each time), warms it up off the async threads and starts its inference queue.
///
/// # Errors
/// [`ServeError`] when the artifact cannot be loaded or the worker cannot start.
pub async fn load(path: &Path, options: LoadOptions, metrics: &Arc<Metrics>) -> Result<Serving, ServeError> {
    tracing::info!(artifact = %path.display(), "loading model");
    let owned = path.to_owned();
    let (info, model) = tokio::task::spawn_blocking(move || {
        model_info::load_and_warm(&owned, options.queue.max_batch, options.allow_uncalibrated)
    })
    .await??;
    let (queue, _worker) = BatchQueue::start(Box::new(model), options.queue, Arc::clone(metrics))?;
    tracing::info!(model = %info.metadata.id, hash = %info.hash, "model ready");
    if let Some(r) = &info.metadata.recalibration {
        tracing::info!(
            from = %r.from,
            until = %r.until,
            rolling_days = %r.rolling_days.map_or_else(|| "fixed".to_owned(), |d| d.to_string()),
            "output corrections measured on this window (refresh daily: calibrate --until)"
        );
    }
    Ok(Serving {
        info: Arc::new(info),
        queue,
    })
}

/// Loads the anomaly detector for the artifact in `artifact_dir` ([`anomaly::detector_path`])
/// and installs it; without one (no `--anomaly-detector`, none in the directory) the detector
/// already loaded, if any, stays; with `--anomaly false` none is installed.
///
/// # Errors
/// The detector's file cannot be read or is not a valid detector.
pub fn install_detector(state: &AppState, artifact_dir: &Path) -> Result<(), String> {
    if !state.settings().anomaly.enabled {
        tracing::info!("anomaly detection off (--anomaly false): the anomaly routes answer 503");
        return Ok(());
    }
    let Some(path) = anomaly::detector_path(state.anomaly_path(), artifact_dir) else {
        if state.anomaly_scorer().is_none() {
            tracing::info!("no anomaly detector: the anomaly routes answer 503");
        }
        return Ok(());
    };
    let scorer = anomaly::load(&path)?;
    tracing::info!(detector = %scorer.detector.id, path = %path.display(), "anomaly detector ready");
    state.set_anomaly(Some(scorer));
    Ok(())
}

/// Loads the artifact at `path` afresh (following the `default` pointer) and swaps it in;
/// requests in flight finish on the old one. A failed reload keeps the old model. Counted in
/// `volcast_model_reloads_total{outcome}`; returns the old and new model ids.
///
/// # Errors
/// [`ServeError`] when the artifact cannot be loaded.
pub async fn reload(
    state: &AppState,
    path: &Path,
    options: LoadOptions,
    metrics: &Arc<Metrics>,
) -> Result<(String, String), ServeError> {
    let old = state
        .serving()
        .map(|s| s.info.metadata.id.clone())
        .unwrap_or_default();
    let outcome = |o: &str| metrics::ReloadLabels { outcome: o.into() };
    match load(path, options, metrics).await {
        Ok(serving) => {
            let new = serving.info.metadata.id.clone();
            if let Err(e) = install_detector(state, &serving.info.dir) {
                tracing::error!("anomaly detector not reloaded, the old one is kept: {e}");
            }
            state.set_serving(serving);
            metrics.reloads.get_or_create(&outcome("ok")).inc();
            tracing::info!(old = %old, new = %new, "model reloaded");
            Ok((old, new))
        }
        Err(e) => {
            metrics.reloads.get_or_create(&outcome("failed")).inc();
            tracing::error!(serving = %old, "reload failed, still serving the old model: {e}");
            Err(e)
        }
    }
}

/// On every SIGHUP, [`reload`]s the artifact (so the daily `calibrate --until --set-default`
/// job takes effect).
#[cfg(unix)]
pub(crate) async fn reload_on_hangup(
    state: AppState,
    path: PathBuf,
    options: LoadOptions,
    metrics: Arc<Metrics>,
) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGHUP, reloads disabled: {e}");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let _ = reload(&state, &path, options, &metrics).await;
    }
}
