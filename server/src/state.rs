//! Shared state of the handlers: settings, metrics, and the served model once it is ready.

use std::sync::{Arc, RwLock};

use volcast_core::policy::{RiskSettings, SettingsError};

use crate::config::Config;
use crate::dto::policy::PolicyStatus;
use crate::error::ApiError;
use crate::inputs::Limits;
use crate::metrics::Metrics;
use crate::model_info::ModelInfo;
use crate::queue::BatchQueue;

/// Settings the handlers read.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Per-asset limits.
    pub limits: Limits,
    /// Most assets per request.
    pub max_items: usize,
    /// Request body limit, bytes.
    pub max_body_bytes: usize,
    /// Request timeout.
    pub request_timeout: std::time::Duration,
    /// Defaults of the risk settings ([`Config::risk_defaults`]).
    pub defaults: RiskSettings,
    /// Oldest an asset's last stored candle may be (from its close) for the asset routes.
    pub max_staleness: std::time::Duration,
    /// Requests per minute an API key may make unless the key says otherwise.
    pub key_rate_per_minute: u32,
    /// Whether `/metrics` needs a key.
    pub metrics_need_key: bool,
    /// What an active anomaly flag does to risk parameters.
    pub anomaly: crate::anomaly::AnomalySettings,
    /// How a stress simulation draws each hour's low: the hour's drawn variance, except in the
    /// replay of a stress answer recorded before that (without `lows`).
    pub stress_bridge: volcast_core::stress::Bridge,
    /// Which sale a stress liquidation's price impact is charged on: the hour's positions sold
    /// together, except in the replay of a stress answer recorded before that (without
    /// `impact`).
    pub stress_impact: volcast_core::stress::Impact,
    /// Which hours of a replay window longer than the horizon a stress simulation applies: those
    /// of its deepest fall, except in the replay of a stress answer recorded before that (no
    /// scenario with `replay_from_hour`).
    pub stress_replay_cut: volcast_core::stress::ReplayCut,
    /// How max LTV is bounded after the step bound: SPEC's user buffer kept, except in the
    /// replay of a risk answer recorded before that (a `previous` without `step_rule`).
    pub step_rule: volcast_core::policy::StepRule,
    /// What a risk or stress answer does when the illiquidity its sale needs is unknown: refuse,
    /// except in the replay of an answer recorded before that (taken as no slippage).
    pub unknown_liquidity: UnknownLiquidity,
    /// Which windows `D(alpha, tau)` is taken over: every window up to tau, except in the
    /// replay of an answer recorded before that (`drawdown_hours` absent), taken at tau alone.
    pub drawdown_window: volcast_core::policy::DrawdownWindow,
    /// Which initial margin a risk or stress answer serves: at least the maintenance margin,
    /// except in the replay of an answer recorded before that (`initial_margin_hours` absent).
    pub initial_margin: InitialMargin,
}

/// The rules of a risk answer that changed over time and are kept to replay answers made under
/// the older ones ([`Settings::drawdown_window`], [`Settings::initial_margin`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnswerRules {
    /// Which windows `D(alpha, tau)` is taken over.
    pub window: volcast_core::policy::DrawdownWindow,
    /// Which initial margin is served.
    pub margin: InitialMargin,
}

impl Settings {
    /// The rules a risk answer is made under.
    #[must_use]
    pub fn answer_rules(&self) -> AnswerRules {
        AnswerRules {
            window: self.drawdown_window,
            margin: self.initial_margin,
        }
    }
}

/// The initial margin served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InitialMargin {
    /// `max(D(alpha, tau_user), D(alpha, tau_eff))`: never below the maintenance margin
    /// ([`volcast_core::policy::Policy::initial_margin`]), with the window it was taken at, the
    /// variance and multiplier behind `D(alpha, tau_user)` said in the derivation.
    #[default]
    AtLeastMaintenance,
    /// `D(alpha, tau_user)` alone, SPEC's letter, as answered until stop 61 (replayed so): a
    /// liquidation window longer than the user's put it below the maintenance margin, a
    /// position opened at it liquidatable at once.
    UserWindowAlone,
}

impl InitialMargin {
    /// The initial margin under this rule, from the policy's two drawdowns.
    #[must_use]
    pub fn of(self, drawdown_user: f64, at_least_maintenance: f64) -> f64 {
        match self {
            Self::AtLeastMaintenance => at_least_maintenance,
            Self::UserWindowAlone => drawdown_user,
        }
    }

    /// `x` where this rule says the numbers added with it, else None (as recorded before).
    #[must_use]
    pub fn said<T>(self, x: T) -> Option<T> {
        (self == Self::AtLeastMaintenance).then_some(x)
    }
}

/// What a risk or stress answer does when the illiquidity `M_H` at its liquidity horizon is
/// unknown (fewer than 90% of those hours with quote volume: SPEC's rule) and it sells a size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownLiquidity {
    /// 422 `unusable_input`: an unknown slippage is not taken as none.
    #[default]
    Refuse,
    /// Taken as no slippage (the bonus at its floor, no liquidation blocked, no price impact in
    /// a stress): the answers recorded until stop 60, replayed so. Fail-open: a week with more
    /// hours without volume gave a looser LT than the same week trading.
    AsNoSlippage,
}

impl Settings {
    /// From the config.
    ///
    /// # Errors
    /// A default risk setting outside its range ([`Config::risk_defaults`]).
    pub fn from_config(c: &Config) -> Result<Self, SettingsError> {
        Ok(Self {
            limits: Limits {
                max_candles: c.max_candles,
            },
            max_items: c.max_items,
            max_body_bytes: c.max_body_bytes,
            request_timeout: c.request_timeout(),
            defaults: c.risk_defaults()?,
            max_staleness: c.max_staleness,
            key_rate_per_minute: c.key_rate_per_minute,
            metrics_need_key: c.metrics_need_key,
            anomaly: crate::anomaly::AnomalySettings {
                enabled: c.anomaly,
                action: c.anomaly_action,
                window_hours: c.anomaly_window_hours,
            },
            stress_bridge: volcast_core::stress::Bridge::default(),
            stress_impact: volcast_core::stress::Impact::default(),
            stress_replay_cut: volcast_core::stress::ReplayCut::default(),
            step_rule: volcast_core::policy::StepRule::default(),
            unknown_liquidity: UnknownLiquidity::default(),
            drawdown_window: volcast_core::policy::DrawdownWindow::default(),
            initial_margin: InitialMargin::default(),
        })
    }
}

/// The model being served and its queue.
#[derive(Debug, Clone)]
pub struct Serving {
    /// What the handlers know about the model.
    pub info: Arc<ModelInfo>,
    /// The way to its forward pass.
    pub queue: BatchQueue,
    /// The anomaly detector served with it, as [`AppState::serving`] read them both: a request
    /// that holds its `Serving` scores every item with one detector, the one installed with its
    /// model (a reload swaps both at once). What is set here is replaced at every read.
    pub anomaly: Option<Arc<volcast_core::anomaly::Scorer>>,
}

/// Stress simulations running at once; more are answered 429 (each one uses every core).
pub const MAX_STRESS_JOBS: usize = 2;
/// Anomaly scans running at once; more wait for a slot (within the request timeout). A scan of
/// stored candles takes its slot before it reads every stored asset's hours over its window, so
/// this bounds that memory too (a posted batch is parsed and checked before it waits).
pub const MAX_SCAN_JOBS: usize = 2;

#[derive(Debug)]
struct Inner {
    settings: Settings,
    metrics: Arc<Metrics>,
    serving: RwLock<Option<Serving>>,
    stress_slots: Arc<tokio::sync::Semaphore>,
    scan_slots: Arc<tokio::sync::Semaphore>,
    past_scales: crate::anomaly::PastScales,
    store: Option<volcast_store::Store>,
    follow: std::sync::OnceLock<crate::follower::FollowStatus>,
    forecasts: ForecastCache,
    policy: RwLock<(PolicyStatus, Option<i64>)>,
    clock: RwLock<crate::follower::Clock>,
    access: crate::auth::Access,
    anomaly: RwLock<Option<Arc<volcast_core::anomaly::Scorer>>>,
    anomaly_path: std::sync::OnceLock<std::path::PathBuf>,
    decisions: std::sync::OnceLock<crate::audit::log::DecisionLog>,
    replay_model: tokio::sync::Mutex<Option<Serving>>,
    reload_target: std::sync::OnceLock<(std::path::PathBuf, crate::config::LoadOptions)>,
    reloading: tokio::sync::Mutex<()>,
}

/// Most assets whose latest forecast [`ForecastCache`] keeps.
const MAX_CACHED_FORECASTS: usize = 1024;

/// What a stored forecast was made from: the asset's last open time and candle count (any
/// insert for the asset changes them), the candles read, and the model's hash.
pub type ForecastKey = (i64, i64, usize, String);

/// A forecast made from stored candles: the prepared inputs and the model's prediction.
pub type StoredForecast = Arc<(
    crate::inputs::Prepared,
    volcast_model::inference::Prediction,
    crate::audit::Inputs,
)>;

/// The asset routes' forecasts per asset at its latest stored hour, reused while the store
/// holds exactly the candles they were made from and the same model serves.
#[derive(Debug, Default)]
pub struct ForecastCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (ForecastKey, StoredForecast)>>,
}

impl ForecastCache {
    /// `asset`'s forecast made under `key`, if kept.
    #[must_use]
    pub fn get(&self, asset: &str, key: &ForecastKey) -> Option<StoredForecast> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(asset)
            .filter(|(k, _)| k == key)
            .map(|(_, f)| Arc::clone(f))
    }

    /// Keeps `forecast` as `asset`'s, made under `key` (when full, in place of the forecast made
    /// on the oldest candles).
    pub fn put(&self, asset: &str, key: ForecastKey, forecast: StoredForecast) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        make_room(&mut entries, asset, MAX_CACHED_FORECASTS);
        entries.insert(asset.to_owned(), (key, forecast));
    }
}

/// Room for `asset` in `entries` of at most `cap`: the entry whose last candle is the oldest (an
/// asset no longer updated, first) goes. Every entry went when full, so a listing of more assets
/// than the cap (`GET /v1/assets` forecasts each) emptied it part way and found none again.
fn make_room<V>(entries: &mut std::collections::HashMap<String, (ForecastKey, V)>, asset: &str, cap: usize) {
    if entries.len() < cap || entries.contains_key(asset) {
        return;
    }
    let oldest = entries
        .iter()
        .min_by_key(|(name, (key, _))| (key.0, name.as_str()))
        .map(|(name, _)| name.clone());
    if let Some(name) = oldest {
        entries.remove(&name);
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    /// A full cache gives up one entry, the one on the oldest candles, not all of them.
    #[test]
    fn a_full_cache_gives_up_its_oldest_forecast_alone() {
        let key = |last: i64| (last, 100, 889, "hash".to_owned());
        let mut entries: std::collections::HashMap<String, (ForecastKey, ())> =
            (0..4).map(|i| (format!("A{i}"), (key(10 - i), ()))).collect();
        make_room(&mut entries, "A0", 4);
        assert_eq!(entries.len(), 4, "a kept asset makes no room");
        make_room(&mut entries, "NEW", 4);
        let mut left: Vec<&str> = entries.keys().map(String::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["A0", "A1", "A2"], "A3's candles end first");
        make_room(&mut entries, "NEW", 8);
        assert_eq!(entries.len(), 3);
    }
}

/// Handler state; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// State with no model yet (readiness false until [`AppState::set_serving`]) and no
    /// market-data store (the asset routes answer 503 `store_unavailable`).
    #[must_use]
    pub fn new(settings: Settings, metrics: Arc<Metrics>) -> Self {
        Self::with_store(settings, metrics, None)
    }

    /// State with no model yet, reading market data from `store`.
    #[must_use]
    pub fn with_store(
        settings: Settings,
        metrics: Arc<Metrics>,
        store: Option<volcast_store::Store>,
    ) -> Self {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_STRESS_JOBS));
        Self::build(settings, metrics, store, slots)
    }

    /// A state of its own for a decision's replay: `settings`, metrics of its own, no store and
    /// no model yet, but this service's stress slots, so a replayed simulation counts against
    /// [`MAX_STRESS_JOBS`] as a live one does (429 `stress_busy` when both are taken).
    #[must_use]
    pub fn for_replay(&self, settings: Settings) -> Self {
        let slots = Arc::clone(&self.inner.stress_slots);
        Self::build(settings, Arc::new(Metrics::new()), None, slots)
    }

    fn build(
        settings: Settings,
        metrics: Arc<Metrics>,
        store: Option<volcast_store::Store>,
        stress_slots: Arc<tokio::sync::Semaphore>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                metrics,
                serving: RwLock::new(None),
                stress_slots,
                scan_slots: Arc::new(tokio::sync::Semaphore::new(MAX_SCAN_JOBS)),
                past_scales: crate::anomaly::PastScales::default(),
                store,
                follow: std::sync::OnceLock::new(),
                forecasts: ForecastCache::default(),
                policy: RwLock::new((PolicyStatus::model(), None)),
                clock: RwLock::new(crate::follower::Clock::system()),
                access: crate::auth::Access::new(settings.key_rate_per_minute, settings.metrics_need_key),
                anomaly: RwLock::new(None),
                anomaly_path: std::sync::OnceLock::new(),
                decisions: std::sync::OnceLock::new(),
                replay_model: tokio::sync::Mutex::new(None),
                reload_target: std::sync::OnceLock::new(),
                reloading: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Shows the live follower's status (in `GET /v1/assets` and the metrics); set once.
    /// Access control: the keys in force and their rate limits.
    #[must_use]
    pub fn access(&self) -> &crate::auth::Access {
        &self.inner.access
    }

    /// The decision log, when the service keeps one (it does whenever it has a store).
    #[must_use]
    pub fn decisions(&self) -> Option<&crate::audit::log::DecisionLog> {
        self.inner.decisions.get()
    }

    /// Starts logging decisions to `log` (once).
    pub fn set_decisions(&self, log: crate::audit::log::DecisionLog) {
        let _ = self.inner.decisions.set(log);
    }

    /// The artifact last loaded to replay a decision made with another model than the one served.
    #[must_use]
    pub fn replay_model(&self) -> &tokio::sync::Mutex<Option<Serving>> {
        &self.inner.replay_model
    }

    /// Where `POST /v1/admin/reload` loads from, and how (set by [`crate::run`]).
    pub fn set_reload_target(&self, path: std::path::PathBuf, options: crate::config::LoadOptions) {
        let _ = self.inner.reload_target.set((path, options));
    }

    /// The reload target, when there is one.
    #[must_use]
    pub fn reload_target(&self) -> Option<&(std::path::PathBuf, crate::config::LoadOptions)> {
        self.inner.reload_target.get()
    }

    pub fn set_follow_status(&self, status: crate::follower::FollowStatus) {
        let _ = self.inner.follow.set(status);
    }

    /// The asset routes' forecasts from stored candles.
    #[must_use]
    pub fn forecasts(&self) -> &ForecastCache {
        &self.inner.forecasts
    }

    /// The live follower's status, when the service follows anything.
    #[must_use]
    pub fn follow_status(&self) -> Option<&crate::follower::FollowStatus> {
        self.inner.follow.get()
    }

    /// The market-data store.
    ///
    /// # Errors
    /// [`ApiError::StoreUnavailable`] when the service runs without one.
    pub fn store(&self) -> Result<&volcast_store::Store, ApiError> {
        self.inner
            .store
            .as_ref()
            .ok_or_else(|| ApiError::StoreUnavailable("this service runs without a market-data store".into()))
    }

    /// Installs the ready model, replacing the one served (the day's recalibration of the same
    /// artifact), its detector kept: requests already holding the old one finish on it.
    pub fn set_serving(&self, serving: Serving) {
        self.swap(serving, None);
    }

    /// [`Self::set_serving`] with another artifact's detector, or none, installed at the same
    /// moment: no request reads the new model with the old detector or the reverse. A detector
    /// kept from the artifact served before scored the new model's answers with another fit's
    /// (until stop 60), which a start on the new artifact never does.
    pub fn set_serving_and_detector(
        &self,
        serving: Serving,
        detector: Option<Arc<volcast_core::anomaly::Scorer>>,
    ) {
        self.swap(serving, Some(detector));
    }

    /// Swaps `serving` in, and `detector` when given (`Some(None)`: none).
    fn swap(&self, mut serving: Serving, detector: Option<Option<Arc<volcast_core::anomaly::Scorer>>>) {
        // The serving lock first, then the policy's and the detector's, as every reader and
        // `set_policy` take them: the policy read here is still the gate's at the swap.
        let mut served = self
            .inner
            .serving
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (policy, _) = self.policy();
        if serving.info.policy != policy {
            serving.info = Arc::new(ModelInfo {
                policy,
                ..(*serving.info).clone()
            });
        }
        let until = serving
            .info
            .metadata
            .recalibration
            .as_ref()
            .and_then(|r| volcast_core::time::parse_time(&r.until, volcast_core::time::Bound::Start).ok())
            .map_or(0, |ms| ms.div_euclid(1000));
        if let Some(detector) = detector {
            self.set_anomaly(detector);
        }
        *served = Some(serving);
        drop(served);
        self.inner.metrics.model_ready.set(1);
        self.inner.metrics.recalibrated_until.set(until);
    }

    /// Now, Unix ms: the wall clock, or the one [`AppState::set_clock`] gave (what the asset
    /// routes' staleness, the validation windows and the daily job read).
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.inner
            .clock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .now_ms()
    }

    /// Reads time from `clock` from now on (a simulation, a test).
    pub fn set_clock(&self, clock: crate::follower::Clock) {
        *self
            .inner
            .clock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = clock;
    }

    /// The policy served ([`crate::gate`]) and when the gate last switched (Unix ms).
    #[must_use]
    pub fn policy(&self) -> (PolicyStatus, Option<i64>) {
        self.inner
            .policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Serves `policy` from now on (switched at `since`): every answer's model reference says
    /// so; the gauge `volcast_policy_fallback` follows.
    pub fn set_policy(&self, policy: PolicyStatus, since: Option<i64>) {
        self.inner
            .metrics
            .policy_fallback
            .set(i64::from(policy.is_fallback()));
        // The serving lock first, as `set_serving_and_detector` takes it before it reads the
        // policy: a model swapped in at the same moment never keeps the policy before.
        let mut serving = self
            .inner
            .serving
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *self
            .inner
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (policy.clone(), since);
        if let Some(s) = serving.as_mut() {
            s.info = Arc::new(ModelInfo {
                policy,
                ..(*s.info).clone()
            });
        }
    }

    /// The model, once ready (a cheap handle: it stays valid across a reload).
    ///
    /// # Errors
    /// [`ApiError::NotReady`] while it loads.
    pub fn serving(&self) -> Result<Serving, ApiError> {
        let served = self
            .inner
            .serving
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut serving = served.clone().ok_or(ApiError::NotReady)?;
        serving.anomaly = self.anomaly_scorer();
        drop(served);
        Ok(serving)
    }

    /// Held by whatever replaces the served model (a reload, the daily recalibration) from
    /// before it reads what to load until the swap: two of them never interleave, so the last
    /// to start is the one served (a reload that read an older `default` cannot finish last).
    pub async fn model_swap(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.reloading.lock().await
    }

    /// The anomaly detector, when one is loaded.
    #[must_use]
    pub fn anomaly_scorer(&self) -> Option<Arc<volcast_core::anomaly::Scorer>> {
        self.inner
            .anomaly
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The anomaly detector.
    ///
    /// # Errors
    /// [`ApiError::DetectorUnavailable`] when none is loaded.
    pub fn anomaly(&self) -> Result<Arc<volcast_core::anomaly::Scorer>, ApiError> {
        self.anomaly_scorer().ok_or(ApiError::DetectorUnavailable)
    }

    /// Sets where the anomaly detector is read from (`--anomaly-detector`); set once.
    pub fn set_anomaly_path(&self, path: std::path::PathBuf) {
        let _ = self.inner.anomaly_path.set(path);
    }

    /// Where the anomaly detector is read from, when configured.
    #[must_use]
    pub fn anomaly_path(&self) -> Option<&std::path::Path> {
        self.inner.anomaly_path.get().map(std::path::PathBuf::as_path)
    }

    /// Installs (or removes) the anomaly detector.
    pub fn set_anomaly(&self, scorer: Option<Arc<volcast_core::anomaly::Scorer>>) {
        *self
            .inner
            .anomaly
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = scorer;
    }

    /// Installs `scorer` in place of the served detector when that is still the one of id
    /// `expected` (a rescaled copy of it), atomically; false, leaving it, when another was
    /// installed since (a reload). Checked and set apart, a reload in between (its model and
    /// its own detector, or none) had the old detector put back beside the new model.
    pub fn replace_anomaly(&self, expected: &str, scorer: Arc<volcast_core::anomaly::Scorer>) -> bool {
        let mut served = self
            .inner
            .anomaly
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if served.as_ref().is_none_or(|now| now.detector.id != expected) {
            return false;
        }
        *served = Some(scorer);
        true
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// A slot for one stress simulation, held until the permit is dropped.
    ///
    /// # Errors
    /// [`ApiError::StressBusy`] when [`MAX_STRESS_JOBS`] are running, with a `Retry-After` of the
    /// request timeout (rounded up): a running simulation has finished or been cancelled by then.
    /// Counted in `volcast_stress_rejections_total`.
    pub fn stress_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.inner.stress_slots)
            .try_acquire_owned()
            .map_err(|_| {
                self.inner.metrics.stress_rejections.inc();
                let timeout = self.inner.settings.request_timeout;
                let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
                ApiError::StressBusy {
                    max: MAX_STRESS_JOBS,
                    retry_after: std::time::Duration::from_secs(secs.max(1)),
                }
            })
    }

    /// The anomaly thresholds' scales of past days the stored-candles scans measured.
    #[must_use]
    pub fn past_scales(&self) -> &crate::anomaly::PastScales {
        &self.inner.past_scales
    }

    /// A slot for an anomaly scan, waiting for one while [`MAX_SCAN_JOBS`] run. The scan holds
    /// it until its blocking work ends, so one whose request timed out still counts until then.
    ///
    /// # Errors
    /// None in practice: the semaphore is never closed.
    pub async fn scan_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.inner.scan_slots)
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Internal(format!("anomaly scan slots: {e}")))
    }
}
