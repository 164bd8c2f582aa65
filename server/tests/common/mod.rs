//! Test support: a fake model (hand-made metadata, constant forecasts) behind the real queue,
//! generated candles, and request helpers.

#![allow(dead_code, reason = "each test binary uses a part of these helpers")]
#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

pub mod relay;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use volcast_core::baselines::har::Har;
use volcast_core::baselines::shortage::ShortageLogistic;
use volcast_core::features::{FeatureSpec, N_CHANNELS, N_STATIC};
use volcast_core::stress::ReplayWindow;
use volcast_core::synth::{SynthConfig, generate};
use volcast_model::artifact::{Metadata, SCHEMA_VERSION};
use volcast_model::inference::{ModelInput, Prediction};
use volcast_model::scaler::Scaler;
use volcast_server::config::Config;
use volcast_server::metrics::Metrics;
use volcast_server::model_info::{ModelInfo, Predictor};
use volcast_server::queue::BatchQueue;
use volcast_server::state::{AppState, Serving, Settings};

pub mod process;

pub const START_MS: i64 = 1_704_067_200_000; // 2024-01-01

/// Constant forecasts, optionally slow.
pub struct Fake {
    pub delay: Duration,
}

impl Predictor for Fake {
    fn predict(&mut self, inputs: &[ModelInput]) -> Vec<Prediction> {
        std::thread::sleep(self.delay);
        inputs
            .iter()
            .map(|_| Prediction {
                variance: vec![1e-4, 6e-4, 4e-3],
                quantiles: vec![
                    vec![2e-5, 8e-5, 3e-4, 5e-4],
                    vec![1e-4, 5e-4, 2e-3, 3e-3],
                    vec![1e-3, 3e-3, 1e-2, 2e-2],
                ],
                shortage_probability: vec![0.1, 0.2, 0.3],
            })
            .collect()
    }
}

/// Forecasts that are not finite (a model fed inputs at the limits of floating point).
pub struct NanFake;

impl Predictor for NanFake {
    fn predict(&mut self, inputs: &[ModelInput]) -> Vec<Prediction> {
        let mut out = Fake {
            delay: Duration::ZERO,
        }
        .predict(inputs);
        for p in &mut out {
            p.variance[1] = f64::NAN;
        }
        out
    }
}

/// Forecasts of zero variance at every horizon (finite, but no distribution to draw from).
pub struct ZeroFake;

impl Predictor for ZeroFake {
    fn predict(&mut self, inputs: &[ModelInput]) -> Vec<Prediction> {
        let mut out = Fake {
            delay: Duration::ZERO,
        }
        .predict(inputs);
        for p in &mut out {
            p.variance = vec![0.0; p.variance.len()];
        }
        out
    }
}

/// An app serving `predictor` with the fake model's metadata and `config`'s settings.
pub fn app_predicting(predictor: Box<dyn Predictor>, config: &Config) -> Router {
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(Settings::from_config(config).unwrap(), Arc::clone(&metrics));
    let (queue, _worker) =
        BatchQueue::start(predictor, volcast_server::queue_config(config), metrics).unwrap();
    state.set_serving(Serving {
        info: Arc::new(info()),
        queue,
        anomaly: None,
    });
    volcast_server::app(state)
}

pub fn info() -> ModelInfo {
    let horizons = vec![4, 24, 168];
    let har = horizons
        .iter()
        .map(|&h| {
            let coef = [(h as f64 / 24.0).ln(), 1.0, 0.0, 0.0];
            (
                h,
                Har {
                    horizon: h,
                    coef,
                    residual_variance: 0.1,
                    n: 100,
                },
            )
        })
        .collect();
    let shortage_logistic = horizons
        .iter()
        .map(|&h| {
            (
                h,
                ShortageLogistic {
                    horizon: h,
                    intercept: -2.0,
                    slope: 1.0,
                    n: 100,
                },
            )
        })
        .collect();
    ModelInfo {
        metadata: Metadata {
            schema_version: SCHEMA_VERSION,
            id: "fake0123456789ab".into(),
            created_at: "2024-01-01T00:00:00Z".into(),
            code_version: "test".into(),
            features: FeatureSpec::current(32),
            scaler: Scaler {
                static_mean: vec![0.0; N_STATIC],
                static_std: vec![1.0; N_STATIC],
                channel_mean: vec![0.0; N_CHANNELS],
                channel_std: vec![1.0; N_CHANNELS],
            },
            horizons,
            quantile_levels: vec![0.05, 0.5, 0.95, 0.99],
            fit_until: "2023-12-31T23:00:00Z".into(),
            data: Vec::new(),
            holdout: BTreeMap::new(),
            validation: BTreeMap::new(),
            har,
            shortage_logistic,
            device: "cpu".into(),
            training_seconds: 0.0,
            risk: None,
            uncalibrated: Some("a test double".into()),
            // Neutral corrections (scales of 1), so the model card and metrics show them.
            fit_end_recalibration: None,
            recalibration: Some(volcast_model::artifact::Recalibration {
                from: "2023-09-02T00:00:00Z".into(),
                until: "2024-01-01T00:00:00Z".into(),
                points: BTreeMap::new(),
                variance_scale: BTreeMap::from([(4, 1.0)]),
                quantile_scale: BTreeMap::from([(4, vec![1.0; 4])]),
                rolling_days: Some(120),
                har_weight: BTreeMap::new(),
                variance_power: BTreeMap::from([(4, 1.0)]),
                har_guarded: BTreeMap::new(),
                shortage_stack: BTreeMap::new(),
                adaptive: None,
            }),
            stress_scenarios: vec![ReplayWindow {
                name: "BTCUSDT 2020-03-12".into(),
                asset: "BTCUSDT".into(),
                origin: "2020-03-11 00:00".into(),
                end: "2020-03-11 04:00".into(),
                fall: 0.5,
                // -20%, then a low 45% under the first close, then flat.
                log_returns: vec![
                    (0.8f64.ln(), 0.8f64.ln()),
                    (0.0, (0.55f64 / 0.8).ln()),
                    (0.0, 0.0),
                    (0.0, 0.0),
                ],
            }],
            ensemble: None,
            ensemble_horizon_weights: None,
            weights_sha256: None,
            config_sha256: None,
            term_structure: BTreeMap::new(),
            max_steps: None,
        },
        hash: "f".repeat(64),
        dir: std::path::PathBuf::new(),
        policy: volcast_server::gate::PolicyStatus::model(),
    }
}

pub fn config() -> Config {
    Config::with_artifact("unused".into()).unwrap()
}

/// An app serving the fake model with `config`'s settings.
pub fn app_with(config: &Config, delay: Duration) -> Router {
    app_serving(info(), config, delay)
}

/// An app serving the fake model's forecasts with other metadata.
pub fn app_serving(info: ModelInfo, config: &Config, delay: Duration) -> Router {
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(Settings::from_config(config).unwrap(), Arc::clone(&metrics));
    let (queue, _worker) = BatchQueue::start(
        Box::new(Fake { delay }),
        volcast_server::queue_config(config),
        metrics,
    )
    .unwrap();
    state.set_serving(Serving {
        info: Arc::new(info),
        queue,
        anomaly: None,
    });
    volcast_server::app(state)
}

pub fn app() -> Router {
    app_with(&config(), Duration::ZERO)
}

/// `n` clean hourly candles as JSON values.
pub fn candles(n: usize) -> Vec<Value> {
    let c = generate(&SynthConfig {
        gap_rate: 0.0,
        ..SynthConfig::panel_asset(1, 7, n, START_MS)
    });
    c.iter().map(candle_json).collect()
}

pub fn single(n: usize) -> Value {
    json!({"asset": "SYNTH01", "candles": candles(n)})
}

/// [`single`] with every candle's quote volume set to `qv`.
pub fn with_quote_volume(n: usize, qv: f64) -> Value {
    let mut body = single(n);
    for c in body["candles"].as_array_mut().unwrap() {
        c["quote_volume"] = json!(qv);
    }
    body
}

pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let req = Request::builder().method(method).uri(uri);
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(b).unwrap())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    raw(app, req).await
}

pub async fn raw(app: &Router, req: Request<Body>) -> (StatusCode, Value, axum::http::HeaderMap) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value, headers)
}

/// The committed sample asset's last `n` candles (`data/sample/SYNTH01.csv.gz`), moved in time so
/// that the last one opens `hours_ago` hours before the current hour: fresh market data for the
/// store's staleness rule.
pub fn sample_ending(hours_ago: i64, n: usize) -> Vec<volcast_core::candles::Candle> {
    use volcast_core::time::HOUR_MS;
    let all = volcast_training::data::read_file(&repo().join("data/sample/SYNTH01.csv.gz")).unwrap();
    let all = &all[all.len() - n..];
    let now_hour = volcast_server::routes::assets::now_ms().div_euclid(HOUR_MS) * HOUR_MS;
    let shift = now_hour - hours_ago * HOUR_MS - all.last().unwrap().open_time;
    all.iter()
        .map(|c| volcast_core::candles::Candle {
            open_time: c.open_time + shift,
            ..*c
        })
        .collect()
}

/// The repository root.
pub fn repo() -> std::path::PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    std::path::Path::new(&manifest).join("..")
}

/// A candle as the API takes it.
pub fn candle_json(c: &volcast_core::candles::Candle) -> Value {
    json!({"open_time": c.open_time, "open": c.open, "high": c.high, "low": c.low,
           "close": c.close, "volume": c.volume, "quote_volume": c.quote_volume})
}

/// The app serving the real artifact at `artifact` (loaded and warmed as at start), and the
/// hours of history its model needs.
pub async fn app_on(artifact: &std::path::Path) -> (Router, usize) {
    let config = Config::with_artifact(artifact.to_owned()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(Settings::from_config(&config).unwrap(), Arc::clone(&metrics));
    let serving = volcast_server::load(artifact, volcast_server::load_options(&config), &metrics)
        .await
        .unwrap();
    let history = serving.info.metadata.features.history_hours();
    state.set_serving(serving);
    (volcast_server::app(state), history)
}

/// The app serving the real artifact at `artifact` with the market-data store `store` and
/// `max_staleness`.
pub async fn app_with_store(
    artifact: &std::path::Path,
    store: volcast_store::Store,
    max_staleness: Duration,
) -> (Router, Arc<Metrics>) {
    let state = state_with_store(artifact, store, max_staleness).await;
    let metrics = Arc::clone(state.metrics());
    (volcast_server::app(state), metrics)
}

/// The state behind [`app_with_store`], for tests that call the service's jobs directly.
pub async fn state_with_store(
    artifact: &std::path::Path,
    store: volcast_store::Store,
    max_staleness: Duration,
) -> AppState {
    let mut config = Config::with_artifact(artifact.to_owned()).unwrap();
    config.max_staleness = max_staleness;
    state_with_config(&config, store).await
}

/// [`state_with_store`] under `config` (its artifact served).
pub async fn state_with_config(config: &Config, store: volcast_store::Store) -> AppState {
    state_with_settings(config, store, |_| {}).await
}

/// [`state_with_config`], its settings edited by `edit` (a rule of an earlier build, say).
pub async fn state_with_settings(
    config: &Config,
    store: volcast_store::Store,
    edit: impl FnOnce(&mut Settings),
) -> AppState {
    let artifact = config.artifact.as_path();
    let metrics = Arc::new(Metrics::new());
    let mut settings = Settings::from_config(config).unwrap();
    edit(&mut settings);
    let state = AppState::with_store(settings, Arc::clone(&metrics), Some(store));
    let serving = volcast_server::load(artifact, volcast_server::load_options(config), &metrics)
        .await
        .unwrap();
    state.set_serving(serving);
    state
}

/// The shared hourly candles, or None (with a message) where they are absent.
pub fn shared_candles() -> Option<std::path::PathBuf> {
    let dir = repo().join("../shared/data/binance-spot-1h");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("VOLCAST_REQUIRE_SHARED_DATA").is_none(),
        "VOLCAST_REQUIRE_SHARED_DATA is set but {} is absent",
        dir.display()
    );
    eprintln!("skipping: {} is absent", dir.display());
    None
}

/// Hourly volatility of [`market`]'s calm regime.
pub const SIGMA: f64 = 0.01;

/// Forecasts of [`market`]'s calm regime, exact there (variance `SIGMA^2 H`, the quantiles of
/// a sum of `H` squared normals, little shortage), whatever the candles say: a model that does
/// not adapt.
pub struct Calm;

impl Predictor for Calm {
    fn predict(&mut self, inputs: &[ModelInput]) -> Vec<Prediction> {
        let v = |h: f64| SIGMA * SIGMA * h;
        inputs
            .iter()
            .map(|_| Prediction {
                variance: vec![v(4.0), v(24.0), v(168.0)],
                quantiles: [4.0_f64, 24.0, 168.0]
                    .iter()
                    .map(|&h: &f64| {
                        let sd = (2.0 / h).sqrt();
                        [-1.645, 0.0, 1.645, 2.326]
                            .iter()
                            .map(|z: &f64| v(h) * (1.0 + z * sd).max(0.05))
                            .collect()
                    })
                    .collect(),
                shortage_probability: vec![0.05, 0.05, 0.05],
            })
            .collect()
    }
}

/// [`market`]'s candles of `asset` over `days` from [`START_MS`], without drift, as request JSON.
pub fn market_json(asset: usize, days: i64) -> Vec<Value> {
    market(START_MS, asset, days, None)
        .iter()
        .map(candle_json)
        .collect()
}

/// Hourly candles of asset number `asset` from `start_ms` over `days` days: normal returns of
/// volatility [`SIGMA`], times 3 on the days (from the start) in `drift`; every number with 8
/// decimals, as an exchange gives them.
pub fn market(
    start_ms: i64,
    asset: usize,
    days: i64,
    drift: Option<(i64, i64)>,
) -> Vec<volcast_core::candles::Candle> {
    let eight = |x: f64| format!("{x:.8}").parse::<f64>().unwrap();
    let mut rng = volcast_core::synth::Rng::new(11 + asset as u64);
    let mut close = 100.0;
    (0..days * 24)
        .map(|h| {
            let day = h / 24;
            let sigma = if drift.is_some_and(|(from, to)| (from..to).contains(&day)) {
                3.0 * SIGMA
            } else {
                SIGMA
            };
            let open = close;
            close = eight(open * (sigma * rng.normal()).exp());
            let wick = (0.3 * sigma * rng.normal().abs()).exp();
            volcast_core::candles::Candle {
                open_time: start_ms + h * volcast_core::time::HOUR_MS,
                open,
                high: eight(open.max(close) * wick),
                low: eight(open.min(close) / wick),
                close,
                volume: 1000.0,
                quote_volume: eight(1e6 * (1.0 + 0.1 * rng.normal()).max(0.1)),
            }
        })
        .collect()
}

/// A directory tree copied, files and subdirectories.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
