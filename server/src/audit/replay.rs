//! A decision recomputed from what its record holds: the request, the candle window (by its
//! hash), the service's defaults then, the artifact (by id, checked against its hash) and the
//! gate's policy then. The answer must equal the recorded one to the last digit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use volcast_store::{DecisionRow, DecisionStore as _};

use super::{DecisionBody, DecisionModel, Kind};
use crate::dto::CandleDto;
use crate::dto::stress::StressRequest;
use crate::dto::{RiskRequest, RiskResponse};
use crate::error::ApiError;
use crate::queue::QueueConfig;
use crate::state::{AppState, Serving, Settings};

/// A replay's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// The record, parsed.
    pub body: DecisionBody,
    /// The answer recomputed.
    pub answer: serde_json::Value,
}

impl Replayed {
    /// Whether it equals the recorded answer.
    #[must_use]
    pub fn identical(&self) -> bool {
        self.answer == self.body.answer
    }
}

fn unavailable(m: impl Into<String>) -> ApiError {
    ApiError::ReplayUnavailable(m.into())
}

/// A recomputation's error as the replay's: a request this build refuses (a check added since
/// the decision was made) is no mistake of the auditor's, who sent an id only: 503
/// `replay_unavailable` saying so, not the route's 422 naming a field they cannot give. A busy
/// service (429) stays what it is.
fn refused_now(e: ApiError) -> ApiError {
    let (status, _) = e.status_and_code();
    if status.is_client_error() && status != axum::http::StatusCode::TOO_MANY_REQUESTS {
        unavailable(format!("this build refuses the recorded request: {e}"))
    } else {
        e
    }
}

/// Where this replica may keep the artifact of `model`: the directory the log recorded for its
/// id (the first replica to serve it recorded its own), then `<artifacts>/<id>` beside the
/// artifact served now. Each is checked on loading, so a wrong one is passed over.
async fn model_dirs(state: &AppState, model: &DecisionModel) -> Result<Vec<PathBuf>, ApiError> {
    let mut dirs = Vec::new();
    if let Some((_, dir)) = state.store()?.decision_model(&model.id).await? {
        dirs.push(PathBuf::from(dir));
    }
    // An id that is not a plain name (a record's own field) names no directory of its own.
    let plain = !model.id.is_empty()
        && model
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if let Some(root) = state
        .serving()
        .ok()
        .and_then(|s| s.info.dir.parent().map(Path::to_owned))
        .filter(|_| plain)
    {
        let beside = root.join(&model.id);
        // Only where it is: otherwise a log without a row for the model said the artifact "does
        // not load" rather than that the log names no directory for it.
        if beside.is_dir() && !dirs.contains(&beside) {
            dirs.push(beside);
        }
    }
    Ok(dirs)
}

/// The artifact the decision was made with, serving the policy it was made under: the one
/// served when it is the same artifact, else the one last loaded for a replay, else the first of
/// [`model_dirs`] holding it (its id and hash checked).
///
/// The load runs on a task of its own, which keeps what it loaded for the next replay even when
/// the request that started it has timed out: a load longer than the request timeout was thrown
/// away with the request, so such an artifact never replayed and each retry loaded it again.
async fn serving_for(state: &AppState, model: &DecisionModel) -> Result<Serving, ApiError> {
    let same = |s: &Serving| s.info.metadata.id == model.id && s.info.hash == model.hash;
    if let Ok(s) = state.serving()
        && same(&s)
    {
        return Ok(s);
    }
    let (state, model) = (state.clone(), model.clone());
    tokio::spawn(async move {
        // Bounded: the load holds the replay's model slot, and a load that hung (a stuck disk
        // or store) would otherwise hold it from every later replay until a restart.
        tokio::time::timeout(REPLAY_LOAD_LIMIT, load_for_replay(&state, &model))
            .await
            .unwrap_or_else(|_| {
                Err(unavailable(format!(
                    "the artifact of model {} did not load within {} s",
                    model.id,
                    REPLAY_LOAD_LIMIT.as_secs()
                )))
            })
    })
    .await
    .unwrap_or_else(|e| Err(unavailable(format!("the replay's model load failed: {e}"))))
}

/// Longest a replay's load of a decision's artifact may hold the replay's model slot.
const REPLAY_LOAD_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// [`serving_for`]'s load: the one last loaded for a replay when it is the decision's, else the
/// first of [`model_dirs`] holding it, kept for the next replay.
async fn load_for_replay(state: &AppState, model: &DecisionModel) -> Result<Serving, ApiError> {
    let same = |s: &Serving| s.info.metadata.id == model.id && s.info.hash == model.hash;
    let mut cached = state.replay_model().lock().await;
    if let Some(s) = cached.as_ref().filter(|s| same(s)) {
        return Ok(s.clone());
    }
    let dirs = model_dirs(state, model).await?;
    let mut first_failure = None;
    for dir in &dirs {
        let options = crate::config::LoadOptions {
            queue: QueueConfig {
                max_batch: 16,
                max_wait: std::time::Duration::ZERO,
                capacity: 64,
                retry_after: std::time::Duration::from_secs(1),
            },
            allow_uncalibrated: true,
            // A recorded request was within the limits when it was answered.
            max_candles: usize::MAX,
        };
        // Metrics of its own: a replay's warm-up and forward passes are not the service's
        // traffic.
        let own = Arc::new(crate::metrics::Metrics::new());
        // The directory goes to the server's log only: a caller learns the id, not where the
        // service keeps its files.
        let failure = match crate::loading::load(dir, options, &own).await {
            Ok(s) if same(&s) => {
                *cached = Some(s.clone());
                return Ok(s);
            }
            Ok(s) => {
                tracing::warn!(model = %model.id, dir = %dir.display(), found = %s.info.metadata.id, "replay: the artifact was replaced");
                unavailable(format!(
                    "the artifact recorded for model {} is now {} with hash {}, not the recorded one ({})",
                    model.id, s.info.metadata.id, s.info.hash, model.hash
                ))
            }
            Err(e) => {
                tracing::warn!(model = %model.id, dir = %dir.display(), error = %e, "replay: the artifact does not load");
                unavailable(format!(
                    "the artifact of model {} does not load (see the server log)",
                    model.id
                ))
            }
        };
        first_failure.get_or_insert(failure);
    }
    Err(first_failure
        .unwrap_or_else(|| unavailable(format!("the log names no directory for model {}", model.id))))
}

/// The anomaly detector a decision was made with, by the id its answer records: the one served
/// now when it is that one; else the recorded artifact's own (`anomaly.json` in the first of
/// [`model_dirs`] holding a detector of that id: its content id is checked on reading), as after
/// a reload that brought another artifact and its detector; else the one served now, whose id
/// then shows as a difference in the replayed answer.
async fn detector_then(
    state: &AppState,
    model: &DecisionModel,
    id: Option<&str>,
) -> Option<Arc<volcast_core::anomaly::Scorer>> {
    let now = state.anomaly_scorer();
    let Some(id) = id else {
        return now;
    };
    if now.as_ref().is_some_and(|s| s.detector.id == id) {
        return now;
    }
    let Ok(dirs) = model_dirs(state, model).await else {
        return now;
    };
    dirs.iter()
        .filter_map(|dir| crate::anomaly::load(&dir.join(crate::anomaly::FILE)).ok())
        .find(|recorded| recorded.detector.id == id)
        .or(now)
}

/// Recomputes the decision `row` records.
///
/// # Errors
/// [`ApiError::ReplayUnavailable`] when the record is not as it was signed (its hash, its row's
/// fields, its signature by the key the store records for its signer), or its inputs or artifact
/// are missing or altered; the request's or the model's errors as the route would answer them.
pub async fn replay(state: &AppState, row: &DecisionRow) -> Result<Replayed, ApiError> {
    // The record itself first, as `verify` checks it (its place in the chain aside): a record
    // edited in the store, its answer made to match an edited request, would replay identically.
    let store = state.store()?;
    let altered = |why: String| unavailable(format!("the record is not as it was signed: {why}"));
    let body = super::verify::record_body(row).map_err(altered)?;
    let keys = store.signing_keys().await?;
    let public = keys
        .iter()
        .find(|(id, public, _)| *id == row.signer && super::key_named(id, public))
        .map(|(_, public, _)| public.as_str());
    super::verify::record_signed(row, public).map_err(altered)?;
    let sha = &body.candles.hash;
    let json = store
        .decision_inputs(sha)
        .await?
        .ok_or_else(|| unavailable(format!("the candle window {sha} is not in the log")))?;
    let candles: Vec<CandleDto> = serde_json::from_str(&json)
        .map_err(|e| unavailable(format!("the candle window does not parse: {e}")))?;
    if super::window_hash(&candles) != *sha {
        return Err(unavailable(format!("the candle window {sha} was altered")));
    }
    let serving = serving_for(state, &body.model).await?;
    // A state of its own: the defaults and the gate's policy of then, no metrics of the service.
    // The anomaly action of then, where the answer records one; the detector of then
    // ([`detector_then`]) at the threshold scale of then (1, as fitted, where the answer
    // records none).
    let mut anomaly = state.settings().anomaly;
    // A risk answer records it in its derivation, a stress answer at its top level.
    let recorded = match &body.answer["derivation"] {
        serde_json::Value::Null => &body.answer["anomaly"],
        derivation => &derivation["anomaly"],
    };
    let detector = detector_then(state, &body.model, recorded["detector"].as_str()).await;
    match recorded["action"].as_str() {
        Some("tighten") => anomaly.action = crate::anomaly::Action::Tighten,
        Some("report") => anomaly.action = crate::anomaly::Action::Report,
        _ => {}
    }
    if let Some(w) = recorded["window_hours"]
        .as_u64()
        .and_then(|w| u32::try_from(w).ok())
    {
        anomaly.window_hours = w;
    }
    // A stress answer recorded before it said how its lows were drawn drew them at each
    // hour's mean variance.
    let stress_bridge = if body.kind() == Kind::Stress && body.answer["lows"].is_null() {
        volcast_core::stress::Bridge::MeanVariance
    } else {
        volcast_core::stress::Bridge::HourDrawn
    };
    // One recorded before it said which sale its price impact was charged on charged each
    // position's own.
    let stress_impact = match &body.answer["impact"] {
        serde_json::Value::Null if body.kind() == Kind::Stress => volcast_core::stress::Impact::PerPosition,
        serde_json::Value::Null => volcast_core::stress::Impact::SoldTogether,
        named if named == "sold_together" => volcast_core::stress::Impact::SoldTogether,
        named => {
            return Err(unavailable(format!(
                "the record names a price-impact rule this build does not know: {named}"
            )));
        }
    };
    // A stress answer recorded before replays were cut at their deepest fall applied a longer
    // window's first hours; one that needed no cut is the same under either rule.
    let cut = body.answer["scenarios"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| !r["replay_from_hour"].is_null()));
    let stress_replay_cut = if cut {
        volcast_core::stress::ReplayCut::DeepestFall
    } else {
        volcast_core::stress::ReplayCut::First
    };
    // A risk answer recorded before it named its step rule kept max LTV at most LT only.
    let step_rule = match &body.answer["derivation"]["step_rule"] {
        serde_json::Value::Null => volcast_core::policy::StepRule::LtvBelowLtOnly,
        named => {
            volcast_core::policy::StepRule::named(named.as_str().unwrap_or_default()).ok_or_else(|| {
                unavailable(format!(
                    "the record names a step rule this build does not know: {named}"
                ))
            })?
        }
    };
    // An answer recorded while an unknown illiquidity was taken as no slippage (until stop 60):
    // a risk answer without an expected slippage for a sale, a stress answer without price
    // impact. Answered since, either would have been refused.
    let unknown_liquidity = match body.kind() {
        Kind::Stress if body.answer["current_illiquidity"].is_null() => {
            crate::state::UnknownLiquidity::AsNoSlippage
        }
        Kind::Stress => crate::state::UnknownLiquidity::Refuse,
        _ if body.answer["derivation"]["expected_slippage"].is_null() => {
            crate::state::UnknownLiquidity::AsNoSlippage
        }
        _ => crate::state::UnknownLiquidity::Refuse,
    };
    // An answer recorded while D was taken at tau alone (until stop 61) says at no window where
    // its drawdown was reached: a risk answer without `drawdown_hours`, a stress answer whose
    // scenarios have none.
    let recorded_window = match body.kind() {
        Kind::Stress => body.answer["scenarios"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| !r["recommended"]["drawdown_hours"].is_null())),
        _ => !body.answer["derivation"]["drawdown_hours"].is_null(),
    };
    let drawdown_window = if recorded_window {
        volcast_core::policy::DrawdownWindow::UpToTau
    } else {
        volcast_core::policy::DrawdownWindow::AtTau
    };
    // One recorded while the initial margin was D(alpha, tau_user) alone (until stop 61), even
    // below the maintenance margin, says at no window where it was taken.
    let recorded_margin = match body.kind() {
        Kind::Stress => body.answer["scenarios"].as_array().is_some_and(|s| {
            s.iter()
                .any(|r| !r["recommended"]["initial_margin_hours"].is_null())
        }),
        _ => !body.answer["derivation"]["initial_margin_hours"].is_null(),
    };
    let initial_margin = if recorded_margin {
        crate::state::InitialMargin::AtLeastMaintenance
    } else {
        crate::state::InitialMargin::UserWindowAlone
    };
    let settings = Settings {
        unknown_liquidity,
        drawdown_window,
        initial_margin,
        defaults: body.defaults,
        anomaly,
        stress_bridge,
        stress_impact,
        stress_replay_cut,
        step_rule,
        // The recorded request was within the limits when it was answered; limits lowered
        // since (a restart with a smaller `--max-candles`) must not refuse its replay.
        limits: crate::inputs::Limits {
            max_candles: usize::MAX,
        },
        max_items: usize::MAX,
        ..*state.settings()
    };
    let then = state.for_replay(settings);
    // A decision made without a detector (or a stress answer recorded before stress answers
    // showed it) is replayed without one.
    let had_detector = !recorded.is_null();
    let scale = recorded["threshold_scale"].as_f64().unwrap_or(1.0);
    then.set_anomaly(detector.filter(|_| had_detector).map(|s| {
        // The risk window is judged alone; before the alone model had its own scale, the
        // recorded one (the market model's) was applied to it.
        let then_scale = volcast_core::anomaly::Scale {
            candles: scale,
            candles_alone: scale,
            ..s.scale()
        };
        Arc::new(s.as_ref().clone().with_scale(then_scale))
    }));
    then.set_policy(body.model.policy.clone(), None);
    then.set_serving(serving);
    let serving = then.serving()?;
    let malformed = |e: serde_json::Error| unavailable(format!("the recorded request does not parse: {e}"));
    let answer = match body.kind() {
        Kind::Parameters => {
            let request: RiskRequest = serde_json::from_value(body.request.clone()).map_err(malformed)?;
            let request = RiskRequest {
                asset: request.asset.or_else(|| Some(body.asset.clone())),
                candles: Some(candles),
                ..request
            };
            let RiskResponse { items, .. } =
                crate::routes::risk_parameters::parameters_answer(&then, &serving, request)
                    .await
                    .map_err(refused_now)?;
            serde_json::to_value(items.first()).unwrap_or_default()
        }
        Kind::Stress => {
            let request: StressRequest = serde_json::from_value(body.request.clone()).map_err(malformed)?;
            let request = StressRequest { candles, ..request };
            let mut resp = crate::routes::risk_stress::stress_answer(&then, &serving, &request)
                .await
                .map_err(refused_now)?;
            // Answers recorded before stop 65 did not say that a fallback HAR could not serve
            // was not served: the same figures, replayed without the field they lack.
            if body.answer.get("served_policy").is_none() {
                resp.served_policy = None;
            }
            serde_json::to_value(resp).unwrap_or_default()
        }
    };
    Ok(Replayed { body, answer })
}
