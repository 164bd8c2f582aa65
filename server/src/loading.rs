//! An artifact loaded and served: warmed off the async threads, its inference queue started,
//! its anomaly detector installed; reloads on SIGHUP or from the daily job, the old model kept
//! when a reload fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::LoadOptions;
use crate::metrics::{self, Metrics};
use crate::queue::BatchQueue;
use crate::state::{AppState, Serving};
use crate::{anomaly, model_info};

/// Why an artifact could not be loaded and served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The artifact could not be loaded.
    #[error("could not load the model: {0}")]
    Model(#[from] volcast_model::artifact::ArtifactError),
    /// The inference worker could not start.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The loading task died.
    #[error("model loading task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The artifact's anomaly detector could not be read: at a reload the old model and its
    /// detector keep serving, never the new model with the old detector.
    #[error("could not load the anomaly detector: {0}")]
    Detector(String),
    /// The model needs more candles than a request may carry (`--max-candles`): it could answer
    /// nothing, so it is not served (at a reload the old model keeps serving).
    #[error("{0}")]
    Limits(String),
}

/// Loads the artifact at `path` (an artifact, or a directory with a `default` pointer, read
/// afresh each time), warms it up off the async threads and starts its inference queue.
///
/// # Errors
/// [`LoadError`] when the artifact cannot be loaded or the worker cannot start.
pub async fn load(path: &Path, options: LoadOptions, metrics: &Arc<Metrics>) -> Result<Serving, LoadError> {
    tracing::info!(artifact = %path.display(), "loading model");
    let owned = path.to_owned();
    let (info, model) = tokio::task::spawn_blocking(move || {
        model_info::load_and_warm(&owned, options.queue.max_batch, options.allow_uncalibrated)
    })
    .await??;
    let needed = info.history_hours();
    if options.max_candles < needed {
        return Err(LoadError::Limits(format!(
            "--max-candles {} is below the model's history_hours {needed}: every forecast request \
             would be refused",
            options.max_candles
        )));
    }
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
        anomaly: None,
    })
}

/// Loads the anomaly detector for the artifact in `artifact_dir` ([`anomaly::detector_path`])
/// and installs it; without one (no `--anomaly-detector`, none in the directory) or with
/// `--anomaly false`, none is installed (the anomaly routes answer 503).
///
/// # Errors
/// The detector's file cannot be read or is not a valid detector.
pub fn install_detector(state: &AppState, artifact_dir: &Path) -> Result<(), String> {
    state.set_anomaly(detector_for(state, artifact_dir)?);
    Ok(())
}

/// The anomaly detector to install with the artifact in `artifact_dir` (see
/// [`install_detector`]); None when there is none to install.
fn detector_for(
    state: &AppState,
    artifact_dir: &Path,
) -> Result<Option<Arc<volcast_core::anomaly::Scorer>>, String> {
    if !state.settings().anomaly.enabled {
        tracing::info!("anomaly detection off (--anomaly false): the anomaly routes answer 503");
        return Ok(None);
    }
    let Some(path) = anomaly::detector_path(state.anomaly_path(), artifact_dir) else {
        tracing::info!(
            "no anomaly detector beside this artifact (anomaly.json) and no --anomaly-detector: \
             the anomaly routes answer 503"
        );
        return Ok(None);
    };
    let scorer = anomaly::load(&path)?;
    tracing::info!(detector = %scorer.detector.id, path = %path.display(), "anomaly detector ready");
    Ok(Some(scorer))
}

/// Loads the artifact at `path` afresh (following the `default` pointer) and swaps it in;
/// requests in flight finish on the old one. A failed reload keeps the old model. Counted in
/// `volcast_model_reloads_total{outcome}`; returns the old and new model ids.
///
/// # Errors
/// [`LoadError`] when the artifact cannot be loaded.
pub async fn reload(
    state: &AppState,
    path: &Path,
    options: LoadOptions,
    metrics: &Arc<Metrics>,
) -> Result<(String, String), LoadError> {
    let _swap = state.model_swap().await;
    let old = state
        .serving()
        .map(|s| s.info.metadata.id.clone())
        .unwrap_or_default();
    let outcome = |o: &str| metrics::ReloadLabels { outcome: o.into() };
    let loaded = load(path, options, metrics).await.and_then(|serving| {
        let detector = detector_for(state, &serving.info.dir).map_err(LoadError::Detector)?;
        Ok((serving, detector))
    });
    match loaded {
        Ok((serving, detector)) => {
            let new = serving.info.metadata.id.clone();
            state.set_serving_and_detector(serving, detector);
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
    hangups: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hangups) = hangups else { return };
    while hangups.recv().await.is_some() {
        let _ = reload(&state, &path, options, &metrics).await;
    }
}

/// Listens for SIGHUP from now on: a SIGHUP no longer ends the process (its default action),
/// and one received before the reloader runs (while the service starts) is a reload
/// once it does. `None`, logged, when the signal cannot be listened for.
#[cfg(unix)]
#[must_use]
pub fn listen_for_hangups() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .inspect_err(|e| tracing::error!("cannot listen for SIGHUP, reloads disabled: {e}"))
        .ok()
}
