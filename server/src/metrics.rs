//! Prometheus metrics: requests and latency by matched route, the inference queue, the batches.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the request metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method (`other` for a non-standard one).
    pub method: String,
    /// Matched route template (`unmatched` for 404s).
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of the reload counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `failed`.
    pub outcome: String,
}

/// Labels of the access-control rejections.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// 401, 403 or 429.
    pub status: u16,
}

/// Labels of the per-asset market-data metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AssetLabels {
    /// Asset id.
    pub asset: String,
}

/// Labels of the validation gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidationLabels {
    /// Days of origins in the window (30 or 120).
    pub window_days: i64,
    /// Horizon, hours (0 for the risk figures).
    pub horizon_hours: usize,
}

/// Labels of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// HTTP method.
    pub method: String,
    /// Matched route template.
    pub route: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// All metrics of one server instance (no global registry, so tests can run many).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by method, route and status.
    pub requests: Family<RouteLabels, Counter>,
    /// Latency by method and route.
    pub latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    /// Jobs waiting in the inference queue.
    pub queue_depth: Gauge,
    /// Requests refused with 429 because the inference queue was full.
    pub queue_rejections: Counter,
    /// Stress requests refused with 429 because every simulation slot was taken.
    pub stress_rejections: Counter,
    /// Stress simulations stopped early because their request had timed out (or gone).
    pub stress_cancellations: Counter,
    /// Connections answered 503 at once because the service held its maximum.
    pub connections_refused: Counter,
    /// Inputs per forward pass.
    pub batch_size: Histogram,
    /// Seconds per forward pass.
    pub inference_seconds: Histogram,
    /// 1 while the model is loaded, warm and answering (`/readyz` 200), as of the last scrape.
    pub model_ready: Gauge,
    /// Unix time the model's corrections were measured up to (0 without corrections).
    pub recalibrated_until: Gauge,
    /// Model reloads (SIGHUP) by outcome.
    pub reloads: Family<ReloadLabels, Counter>,
    /// The day's multiplier of the anomaly detector's asset-hour threshold for hours judged
    /// against the market (1: as fitted).
    pub anomaly_threshold_scale: Gauge<f64, AtomicU64>,
    /// The same for hours judged alone (the risk and stress routes, small scans).
    pub anomaly_alone_threshold_scale: Gauge<f64, AtomicU64>,
    /// Seconds since each stored asset's last candle closed.
    pub market_data_age: Family<AssetLabels, Gauge>,
    /// Candles the follower stored per followed asset since the start.
    pub follower_stored: Family<AssetLabels, Gauge>,
    /// The follower's failed attempts in a row per followed asset (0 when healthy).
    pub follower_failures: Family<AssetLabels, Gauge>,
    /// Rate-limited answers (429, 418) per followed asset since the start.
    pub follower_rate_limited: Family<AssetLabels, Gauge>,
    /// The ledger's mean QLIKE of the model over its baseline's (the better of HAR and HAR
    /// operated), per window and horizon.
    pub validation_qlike_ratio: Family<ValidationLabels, Gauge<f64, AtomicU64>>,
    /// The ledger's LT breach rate per window (`horizon_hours` 0).
    pub validation_breach_rate: Family<ValidationLabels, Gauge<f64, AtomicU64>>,
    /// The ledger's shortage ROC AUC of the model, per window and horizon.
    pub validation_shortage_auc: Family<ValidationLabels, Gauge<f64, AtomicU64>>,
    /// The ledger's shortage Brier score of the model, per window and horizon.
    pub validation_shortage_brier: Family<ValidationLabels, Gauge<f64, AtomicU64>>,
    /// 1 while the gate serves the fallback policy (HAR's), else 0.
    pub policy_fallback: Gauge,
    /// The gate's switches by the policy switched to.
    pub policy_switches: Family<ReloadLabels, Counter>,
    /// The daily recalibrations inside the service by outcome.
    pub recalibrations: Family<ReloadLabels, Counter>,
    /// Requests refused by access control, by status.
    pub auth_rejections: Family<AuthLabels, Counter>,
    /// Decisions appended to the decision log.
    pub decisions_logged: Counter,
    /// Decisions withheld because the log could not append them.
    pub decision_log_failures: Counter,
    /// 1 while the decision log answers every request at once with 503 (its store down, or an
    /// append left hanging not settled yet), else 0.
    pub decision_log_down: Gauge,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("volcast");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency =
            Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let queue_depth = Gauge::default();
        let queue_rejections = Counter::default();
        let stress_rejections = Counter::default();
        let stress_cancellations = Counter::default();
        let connections_refused = Counter::default();
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        let inference_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        let model_ready = Gauge::default();
        let recalibrated_until = Gauge::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let anomaly_threshold_scale = Gauge::<f64, AtomicU64>::default();
        anomaly_threshold_scale.set(1.0);
        let anomaly_alone_threshold_scale = Gauge::<f64, AtomicU64>::default();
        anomaly_alone_threshold_scale.set(1.0);
        let market_data_age = Family::<AssetLabels, Gauge>::default();
        let validation_qlike_ratio = Family::<ValidationLabels, Gauge<f64, AtomicU64>>::default();
        let validation_breach_rate = Family::<ValidationLabels, Gauge<f64, AtomicU64>>::default();
        let validation_shortage_auc = Family::<ValidationLabels, Gauge<f64, AtomicU64>>::default();
        let validation_shortage_brier = Family::<ValidationLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "validation_shortage_roc_auc",
            "ROC AUC of the model's shortage probability on the forecast ledger",
            validation_shortage_auc.clone(),
        );
        registry.register(
            "validation_shortage_brier",
            "Brier score of the model's shortage probability on the forecast ledger",
            validation_shortage_brier.clone(),
        );
        let policy_fallback = Gauge::default();
        let policy_switches = Family::<ReloadLabels, Counter>::default();
        let recalibrations = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "policy_fallback",
            "1 while the champion/challenger gate serves the fallback policy (HAR's variance and its calibrated rule)",
            policy_fallback.clone(),
        );
        registry.register(
            "policy_switches",
            "Switches of the champion/challenger gate, by the policy switched to (outcome: model or fallback_har)",
            policy_switches.clone(),
        );
        registry.register(
            "model_daily_recalibrations",
            "Daily recalibrations inside the service (at 00:00 UTC on the stored candles) by outcome",
            recalibrations.clone(),
        );
        registry.register(
            "validation_qlike_ratio",
            "Mean QLIKE of the served model over the better of HAR and HAR operated on the forecast ledger (below 1: the model is better)",
            validation_qlike_ratio.clone(),
        );
        registry.register(
            "validation_breach_rate",
            "Share of ledger origins whose 4-hour fall exceeded the served D (expected: 1 - alpha)",
            validation_breach_rate.clone(),
        );
        let follower_stored = Family::<AssetLabels, Gauge>::default();
        let follower_failures = Family::<AssetLabels, Gauge>::default();
        let follower_rate_limited = Family::<AssetLabels, Gauge>::default();
        registry.register(
            "follower_candles_stored",
            "Candles the live follower stored for the asset since the start",
            follower_stored.clone(),
        );
        registry.register(
            "follower_consecutive_failures",
            "The live follower's failed attempts in a row for the asset (alert when it grows)",
            follower_failures.clone(),
        );
        registry.register(
            "follower_rate_limited",
            "Answers 429 or 418 the live follower got for the asset since the start",
            follower_rate_limited.clone(),
        );
        registry.register(
            "market_data_age_seconds",
            "Seconds since the asset's last stored candle closed",
            market_data_age.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "inference_queue_depth",
            "Jobs waiting for the model",
            queue_depth.clone(),
        );
        registry.register(
            "inference_queue_rejections",
            "Requests refused because the queue was full",
            queue_rejections.clone(),
        );
        registry.register(
            "stress_rejections",
            "Stress requests refused because every simulation slot was taken",
            stress_rejections.clone(),
        );
        registry.register(
            "stress_cancellations",
            "Stress simulations stopped early because their request timed out or went away",
            stress_cancellations.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections answered 503 at once because the service held its maximum",
            connections_refused.clone(),
        );
        registry.register(
            "inference_batch_size",
            "Inputs per forward pass",
            batch_size.clone(),
        );
        registry.register(
            "inference_duration_seconds",
            "Seconds per forward pass",
            inference_seconds.clone(),
        );
        registry.register(
            "model_ready",
            "1 while the model is loaded, warm and answering (/readyz 200)",
            model_ready.clone(),
        );
        registry.register(
            "model_recalibrated_until_seconds",
            "Unix time the model's corrections were measured up to (alert when it falls behind: \
             the daily calibrate --until job has stopped)",
            recalibrated_until.clone(),
        );
        registry.register(
            "anomaly_threshold_scale",
            "The day's multiplier of the anomaly detector's asset-hour flag threshold for hours \
             judged against the market, set by the daily job from the stored candles of the \
             trailing 90 days (1: as fitted)",
            anomaly_threshold_scale.clone(),
        );
        registry.register(
            "anomaly_alone_threshold_scale",
            "The same for hours judged alone, without a market reference (the risk and stress \
             routes, scans of fewer than five assets)",
            anomaly_alone_threshold_scale.clone(),
        );
        registry.register(
            "model_reloads",
            "Model reloads on SIGHUP by outcome (a failed one keeps the old model)",
            reloads.clone(),
        );
        let auth_rejections = Family::<AuthLabels, Counter>::default();
        let decisions_logged = Counter::default();
        let decision_log_failures = Counter::default();
        let decision_log_down = Gauge::default();
        registry.register(
            "auth_rejections",
            "Requests refused by access control (401 no valid key, 403 scope, 429 rate limit)",
            auth_rejections.clone(),
        );
        registry.register(
            "decisions_logged",
            "Decisions appended to the signed decision log",
            decisions_logged.clone(),
        );
        registry.register(
            "decision_log_failures",
            "Decisions withheld (503) because the decision log could not append them",
            decision_log_failures.clone(),
        );
        registry.register(
            "decision_log_down",
            "1 while the decision log answers every request at once with 503 (its store down, or \
             an append left hanging not settled yet), else 0",
            decision_log_down.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            queue_depth,
            queue_rejections,
            stress_rejections,
            stress_cancellations,
            connections_refused,
            batch_size,
            inference_seconds,
            model_ready,
            recalibrated_until,
            reloads,
            anomaly_threshold_scale,
            anomaly_alone_threshold_scale,
            market_data_age,
            follower_stored,
            follower_failures,
            follower_rate_limited,
            validation_qlike_ratio,
            validation_breach_rate,
            validation_shortage_auc,
            validation_shortage_brier,
            policy_fallback,
            policy_switches,
            recalibrations,
            auth_rejections,
            decisions_logged,
            decision_log_failures,
            decision_log_down,
        }
    }

    /// Sets the validation gauges from a window's figures.
    pub fn set_validation(&self, window: &crate::dto::validation::ValidationWindow) {
        for h in &window.horizons {
            let labels = ValidationLabels {
                window_days: window.days,
                horizon_hours: h.horizon_hours,
            };
            for (gauge, value) in [
                (&self.validation_qlike_ratio, h.qlike_ratio),
                (&self.validation_shortage_auc, h.shortage_roc_auc),
                (&self.validation_shortage_brier, h.shortage_brier),
            ] {
                if let Some(v) = value {
                    gauge.get_or_create(&labels).set(v);
                }
            }
        }
        if let Some(risk) = &window.risk {
            self.validation_breach_rate
                .get_or_create(&ValidationLabels {
                    window_days: window.days,
                    horizon_hours: 0,
                })
                .set(risk.breach_rate);
        }
    }

    /// Sets the follower's gauges from its status.
    pub fn set_follower(&self, symbols: &[crate::follower::SymbolStatus]) {
        for s in symbols {
            let labels = AssetLabels {
                asset: s.symbol.clone(),
            };
            let as_i64 = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
            self.follower_stored.get_or_create(&labels).set(as_i64(s.stored));
            self.follower_failures
                .get_or_create(&labels)
                .set(i64::from(s.consecutive_failures));
            self.follower_rate_limited
                .get_or_create(&labels)
                .set(as_i64(s.rate_limited));
        }
    }

    /// Sets an asset's market-data age from milliseconds since its last candle closed.
    pub fn set_market_data_age(&self, asset: &str, age_ms: i64) {
        self.market_data_age
            .get_or_create(&AssetLabels {
                asset: asset.to_owned(),
            })
            .set(age_ms.div_euclid(1000));
    }

    /// The text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("could not encode metrics: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `method` label: a standard HTTP method, or `other` (so that arbitrary methods cannot
/// create label values without bound).
#[must_use]
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::PATCH => "PATCH",
        M::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware recording every request by its matched route.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method()).to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    metrics
        .latency
        .get_or_create(&LatencyLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RouteLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}
