//! `POST /v1/risk/parameters`: the risk policy ([`volcast_core::policy`]) on the model's forecasts.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use volcast_core::candles::Candle;
use volcast_core::curve::VarianceCurve;
use volcast_core::drawdown::{DrawdownCalibration, DrawdownRule};
use volcast_core::policy::{
    self, AskedSettings, DrawdownWindow, Forecasts, JSON_NAMES, PolicyInput, RiskSettings, StepRule,
    TAU_RANGE, UNIT_RANGE,
};
use volcast_model::artifact::RiskCalibration;
use volcast_model::inference::Prediction;

use crate::anomaly;
use crate::audit::{Inputs, Logged, ToLog, id_header, log_decisions, routes as logged};
use crate::auth::Caller;
use crate::dto::anomaly::AnomalyContext;
use crate::dto::policy as gate;
use crate::dto::{
    AssetRisk, CandleDto, Comparison, Derivation, ForecastUsed, Previous, RiskItem, RiskParameters,
    RiskRequest, RiskResponse, ServedPolicy,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::inputs::{Prepared, shape};
use crate::model_info::ModelInfo;
use crate::routes::{RISK_TAG, forecast_items, forecasts_used, unusable};
use crate::state::{AnswerRules, AppState, InitialMargin, Serving, UnknownLiquidity};

/// The request's settings, each left out taken from the config's defaults, checked against the
/// policy's ranges ([`RiskSettings::resolve`]).
///
/// # Errors
/// [`ApiError::OutOfRange`] naming the setting.
pub fn settings(body: &RiskRequest, state: &AppState) -> Result<RiskSettings, ApiError> {
    let asked = AskedSettings {
        alpha: body.alpha,
        tau: body.tau_hours,
        tau_user: body.tau_user_hours,
        bonus: body.bonus,
        bonus_margin: body.bonus_margin,
        sale_size_usd: body.sale_size_usd,
        max_step: body.max_step,
    };
    Ok(RiskSettings::resolve(
        &asked,
        &state.settings().defaults,
        &JSON_NAMES,
    )?)
}

/// Each previous value given must lie in [0, 1].
///
/// # Errors
/// [`ApiError::OutOfRange`] naming it as `named` says (`previous.max_ltv` in a body,
/// `previous_max_ltv` in a query).
pub fn check_previous(previous: Option<&Previous>, named: impl Fn(&str) -> String) -> Result<(), ApiError> {
    let Some(p) = previous else { return Ok(()) };
    for (name, value) in [
        ("liquidation_threshold", p.liquidation_threshold),
        ("max_ltv", p.max_ltv),
    ] {
        if let Some(v) = value {
            UNIT_RANGE.check(&named(name), v)?;
        }
    }
    Ok(())
}

/// A step bound needs something to bound: a `previous` that gives neither value, or
/// `max_step` where no previous value is given anywhere in the request, bounds nothing, and a
/// caller expecting a bounded change would get a full move (both were answered so until stop
/// 62). `previous` is each asset's as `named` says (`previous` in a body, `items[i].previous`
/// in a batch). Checked on what callers send, not on a replay: a decision recorded before
/// replays as it was answered.
///
/// # Errors
/// [`ApiError::InvalidValue`] on the first such `previous`, else on `max_step`.
pub fn check_bound<'a>(
    max_step: Option<f64>,
    previous: impl IntoIterator<Item = (String, Option<&'a Previous>)>,
) -> Result<(), ApiError> {
    let mut any = false;
    for (named, p) in previous {
        match p {
            Some(Previous {
                liquidation_threshold: None,
                max_ltv: None,
            }) => {
                return Err(ApiError::InvalidValue {
                    field: named,
                    message: "gives neither liquidation_threshold nor max_ltv, so it bounds nothing; \
                              leave it out for an unbounded answer"
                        .into(),
                });
            }
            Some(_) => any = true,
            None => {}
        }
    }
    if max_step.is_some() && !any {
        return Err(ApiError::InvalidValue {
            field: "max_step".into(),
            message: "max_step bounds the change from previous values, and none is given \
                      (`previous` in the body or in each item; `previous_liquidation_threshold` or \
                      `previous_max_ltv` in a query)"
                .into(),
        });
    }
    Ok(())
}

/// Liquidation threshold, max LTV, liquidation bonus and margins, with their derivation.
#[utoipa::path(
    post,
    path = "/v1/risk/parameters",
    tag = RISK_TAG,
    request_body = RiskRequest,
    responses(
        (status = 200, description = "Parameters, one item per asset", body = RiskResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body, batch or candle array too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid input (bad candle, alpha outside (0.5, 0.9999], tau over 168 h, `max_step` without a previous value, inputs whose magnitudes give a non-finite forecast...)", body = ErrorBody),
        (status = 429, description = "Inference queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Model not ready, decision log unavailable, or timeout", body = ErrorBody),
    ),
    description = "Every item's answer is appended to the signed decision log before it is returned: its \
                   `decision_id` (also in the `x-decision-id` header, comma-separated for a batch) looks it \
                   up at `GET /v1/decisions/{id}`."
)]
pub async fn parameters(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<RiskRequest>,
) -> Result<(HeaderMap, Json<RiskResponse>), ApiError> {
    let serving = state.serving()?;
    let (resp, record) = decided(&state, &serving, caller_id(caller), logged::PARAMETERS, body).await?;
    Ok((id_header(record.ids()), Json(resp)))
}

/// The caller's key id.
#[must_use]
pub fn caller_id(caller: Option<Extension<Caller>>) -> Option<String> {
    caller.and_then(|Extension(c)| c.key_id)
}

/// The answer to a risk request, each item logged as a decision (when the service keeps a log)
/// and given its id.
///
/// # Errors
/// The request's first problem, the model's, or the log's.
pub async fn decided(
    state: &AppState,
    serving: &Serving,
    caller: Option<String>,
    route: &'static str,
    body: RiskRequest,
) -> Result<(RiskResponse, Logged), ApiError> {
    // After the settings' own checks (`max_step` 5 is out of range, whatever else), and not
    // before the shape's: a top-level `previous` beside `items` is refused as such.
    settings(&body, state)?;
    let previous: Vec<(String, Option<&Previous>)> = match &body.items {
        Some(_) if body.previous.is_some() => Vec::new(),
        Some(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("items[{i}].previous"), item.previous.as_ref()))
            .collect(),
        None => vec![("previous".to_owned(), body.previous.as_ref())],
    };
    if !previous.is_empty() {
        check_bound(body.max_step, previous)?;
    }
    // Taken before the body goes to the answer (only when there is a log to write them to).
    let records = state.decisions().is_some().then(|| per_asset_requests(&body));
    let resp = parameters_answer(state, serving, body).await?;
    with_ids(state, serving, caller, route, resp, |items| {
        items
            .iter()
            .zip(records.unwrap_or_default())
            .map(|(item, (request, inputs))| ToLog {
                asset: item.asset.clone(),
                request,
                inputs,
                answer: serde_json::to_string(item).unwrap_or_default(),
            })
            .collect()
    })
    .await
}

/// Logs the records `logs` makes of `resp`'s items (one per item; not called without a log)
/// and writes their ids into the items; what was logged.
///
/// # Errors
/// The log's.
pub async fn with_ids(
    state: &AppState,
    serving: &Serving,
    caller: Option<String>,
    route: &'static str,
    mut resp: RiskResponse,
    logs: impl FnOnce(&[AssetRisk]) -> Vec<ToLog>,
) -> Result<(RiskResponse, Logged), ApiError> {
    let record = log_decisions(state, &serving.info, caller, route, || logs(&resp.items)).await?;
    if let Some(ids) = record.ids() {
        for (item, id) in resp.items.iter_mut().zip(ids) {
            item.decision_id = Some(id.clone());
        }
    }
    Ok((resp, record))
}

/// The request for each asset as the log records it (settings, asset, previous values; the
/// candles go to [`Inputs`]).
fn per_asset_requests(body: &RiskRequest) -> Vec<(String, Inputs)> {
    let one = |asset: Option<String>, previous: Option<Previous>| {
        serde_json::to_string(&RiskRequest {
            asset,
            candles: None,
            previous,
            items: None,
            alpha: body.alpha,
            tau_hours: body.tau_hours,
            tau_user_hours: body.tau_user_hours,
            bonus: body.bonus,
            bonus_margin: body.bonus_margin,
            sale_size_usd: body.sale_size_usd,
            max_step: body.max_step,
        })
        .unwrap_or_default()
    };
    match &body.items {
        Some(items) => items
            .iter()
            .map(|i| {
                (
                    one(Some(i.asset.clone()), i.previous),
                    Inputs::of(&i.candles, "request"),
                )
            })
            .collect(),
        None => vec![(
            one(body.asset.clone(), body.previous),
            Inputs::of(body.candles.as_deref().unwrap_or_default(), "request"),
        )],
    }
}

/// The answer to a risk request (the POST route's, the asset route's on stored candles, and a
/// replay's), by `serving`.
///
/// # Errors
/// The request's first problem, or the model's.
pub async fn parameters_answer(
    state: &AppState,
    serving: &Serving,
    body: RiskRequest,
) -> Result<RiskResponse, ApiError> {
    let s = settings(&body, state)?;
    if body.items.is_some() && body.previous.is_some() {
        return Err(ApiError::InvalidShape(
            "with `items`, give `previous` inside each item".into(),
        ));
    }
    let previous = body.previous;
    let items = shape(
        (body.asset, body.candles),
        body.items,
        state.settings().max_items,
        |asset, candles| RiskItem {
            asset,
            candles,
            previous,
        },
    )?;
    for (prefix, item) in &items {
        check_previous(item.previous.as_ref(), |name| format!("{prefix}previous.{name}"))?;
    }
    let refs = items
        .iter()
        .map(|(p, i)| (p.clone(), i.asset.clone(), i.candles.as_slice()))
        .collect();
    let results = forecast_items(state, serving, refs).await?;
    let info = &serving.info;
    let out = results
        .into_iter()
        .zip(items)
        .map(|((prep, pred), (prefix, item))| {
            recommend_watched(
                state,
                serving,
                &s,
                &prefix,
                &prep,
                &pred,
                &item.candles,
                item.previous,
            )
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(RiskResponse {
        model: info.reference(),
        items: out,
    })
}

/// [`recommend`] with the anomaly detector's view of the window `candles`, where one is loaded:
/// its flags in `derivation.anomaly`, and the tighter tau an active flag asks for under
/// `--anomaly-action tighten`. Every risk answer (posted candles or stored ones) goes through it.
///
/// # Errors
/// As [`recommend`].
#[expect(
    clippy::too_many_arguments,
    reason = "recommend's inputs plus the window it scans"
)]
pub fn recommend_watched(
    state: &AppState,
    serving: &Serving,
    s: &RiskSettings,
    prefix: &str,
    prep: &Prepared,
    pred: &Prediction,
    candles: &[CandleDto],
    previous: Option<Previous>,
) -> Result<AssetRisk, ApiError> {
    let (context, tau) = watched_tau(state, serving, candles, s.tau);
    let item_settings = RiskSettings { tau, ..*s };
    let previous = previous.map(|p| (p, state.settings().step_rule));
    let mut risk = recommend(
        &serving.info,
        &item_settings,
        state.settings().answer_rules(),
        prefix,
        prep,
        pred,
        previous,
    )?;
    if state.settings().unknown_liquidity == UnknownLiquidity::Refuse
        && item_settings.sale_size_usd > 0.0
        && risk.derivation.expected_slippage.is_none()
    {
        let horizons: Vec<usize> = risk
            .derivation
            .forecasts
            .iter()
            .map(|f| f.horizon_hours)
            .collect();
        return Err(liquidity_unknown(
            prefix,
            &prep.asset,
            risk.derivation.liquidity_horizon_hours,
            &horizons,
            PricedSale::Sale,
        ));
    }
    risk.derivation.anomaly = context;
    Ok(risk)
}

/// Which answer an unknown illiquidity stops: a risk answer prices one sale, a stress
/// simulation every path's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PricedSale {
    /// A risk answer's sale of `sale_size_usd` (none at 0).
    Sale,
    /// A stress simulation's price impact, charged in every path whatever `sale_size_usd`.
    Paths,
}

/// A sale whose illiquidity is unknown at liquidity horizon `horizon` (of the served
/// `horizons`): refused, not taken as free (a week with fewer than 90% of its hours trading
/// gave a looser LT and the bonus floor). The message names what SPEC's 90% rule counts (an
/// hour with a return, so the hour before it too, and quote volume) and only the remedies that
/// apply to `priced`.
pub fn liquidity_unknown(
    prefix: &str,
    asset: &str,
    horizon: usize,
    horizons: &[usize],
    priced: PricedSale,
) -> ApiError {
    let others: Vec<String> = horizons
        .iter()
        .filter(|&&h| h != horizon)
        .map(ToString::to_string)
        .collect();
    let elsewhere = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; a tau_hours read at another liquidity horizon ({} h: tau_hours reads the shortest \
             served horizon at least as long, or the longest) may have one",
            others.join(", ")
        )
    };
    let priced = match priced {
        PricedSale::Sale => format!("sale_size_usd 0 needs none{elsewhere}"),
        PricedSale::Paths => format!(
            "the simulation charges every path's price impact at it, whatever \
             sale_size_usd{elsewhere}"
        ),
    };
    ApiError::UnusableInput {
        field: format!("{prefix}candles"),
        message: format!(
            "the illiquidity of {asset} at the {horizon} h liquidity horizon (SPEC's M_H, needed \
             for the sale's slippage) is unknown: fewer than 90% of its last {horizon} hours have \
             both a return (the hour and the one before it present) and quote volume, and an \
             unknown slippage is not taken as none; {priced}"
        ),
    }
}

/// The anomaly detector's context on `candles` and the liquidation window it leaves: `tau`,
/// doubled (up to the longest allowed) under an active flag with `--anomaly-action tighten`;
/// `(None, tau)` without a detector. Every risk answer and the stress simulation go by it.
/// Only the candles of the last `history_hours` hours are scored, those the model reads
/// ([`crate::inputs::window_start`]): the features' moving averages start at the first candle
/// scored, so older candles in front would move a score near its threshold.
#[must_use]
pub fn watched_tau(
    state: &AppState,
    serving: &Serving,
    candles: &[CandleDto],
    tau: f64,
) -> (Option<AnomalyContext>, f64) {
    serving.anomaly.as_ref().map_or((None, tau), |sc| {
        let read =
            &candles[crate::inputs::window_start(candles, serving.info.history_hours(), |c| c.open_time)..];
        let candles: Vec<Candle> = read.iter().map(|&c| c.into()).collect();
        let (context, tau) =
            anomaly::risk_context(sc, state.settings().anomaly, &candles, tau, TAU_RANGE.max);
        (Some(context), tau)
    })
}

/// The gate's fallback on this window, where it is served: HAR's calibrated drawdown rule
/// (with HAR's variance) while the gate holds the fallback, the artifact has a HAR calibration
/// and HAR's variance exists on the window ([`served_policy`]'s, by which every risk answer
/// and the stress simulation serve).
fn fallback_har<'a>(info: &'a ModelInfo, prep: &Prepared) -> Option<&'a DrawdownCalibration> {
    info.metadata
        .risk
        .as_ref()
        .and_then(|c| c.har.as_ref())
        .filter(|_| info.policy.is_fallback() && prep.har_usable())
}

/// The policy an answer on `prep` serves, and HAR's calibration when it is the fallback's: the
/// fallback where the gate holds it and HAR can serve the window, else the model's, saying why.
pub fn served_policy<'a>(
    info: &'a ModelInfo,
    prep: &Prepared,
) -> (Option<&'a DrawdownCalibration>, ServedPolicy) {
    let har = fallback_har(info, prep);
    let served = match (info.policy.is_fallback(), har) {
        (_, Some(_)) => ServedPolicy {
            name: gate::FALLBACK_HAR.into(),
            reason: format!("the gate serves HAR's policy: {}", info.policy.reason),
            model: None,
        },
        (true, None) => ServedPolicy {
            name: gate::MODEL.into(),
            reason: format!(
                "the gate holds the fallback ({}), but {}: the model's policy is served",
                info.policy.reason,
                if info.metadata.risk.as_ref().and_then(|c| c.har.as_ref()).is_none() {
                    "the artifact has no HAR calibration"
                } else {
                    "HAR's variance does not exist on this window"
                }
            ),
            model: None,
        },
        (false, None) => ServedPolicy {
            name: gate::MODEL.into(),
            reason: info.policy.reason.clone(),
            model: None,
        },
    };
    (har, served)
}

/// One asset's parameters and derivation from its forecasts (`prefix`: the item's JSON path),
/// moving at most the step from `previous` by its rule where given, under `rules` (`D` over the
/// windows it says, its initial margin).
///
/// # Errors
/// [`ApiError::UnusableInput`] when a number of the answer is not finite.
pub fn recommend(
    info: &ModelInfo,
    s: &RiskSettings,
    rules: AnswerRules,
    prefix: &str,
    prep: &Prepared,
    pred: &Prediction,
    previous: Option<(Previous, StepRule)>,
) -> Result<AssetRisk, ApiError> {
    let AnswerRules { window, margin } = rules;
    let horizons = info.horizons();
    let forecasts = Forecasts {
        horizons,
        variance: &pred.variance,
        shortage_probability: &pred.shortage_probability,
        illiquidity: &prep.illiquidity,
    };
    let calibration = info.metadata.risk.as_ref();
    let model_rule = DrawdownRule::calibrated_or_reflection(calibration.map(|c| &c.model));
    let asked_previous = previous.map(|(p, rule)| policy::Previous {
        liquidation_threshold: p.liquidation_threshold,
        max_ltv: p.max_ltv,
        rule,
    });
    let (har, served) = served_policy(info, prep);
    let rule = har.map_or(model_rule, DrawdownRule::Calibrated);
    let fallback = served.name == gate::FALLBACK_HAR;
    let forecasts = if fallback {
        Forecasts {
            variance: &prep.har,
            ..forecasts
        }
    } else {
        forecasts
    };
    let rec = policy::recommend(&forecasts, s, asked_previous.as_ref(), rule, window);
    let (liquidity, slippage, p) = (rec.liquidity, rec.slippage, rec.policy);
    // Fail closed: a non-finite slippage (magnitudes overflowing) is no answer at all.
    if slippage.is_some_and(|x| !x.is_finite()) {
        return Err(unusable(prefix, &prep.asset, "expected slippage"));
    }
    let numbers = [
        p.drawdown,
        p.drawdown_user,
        p.liquidation_threshold,
        p.max_ltv,
        p.liquidation_bonus,
        liquidity.tau_effective,
    ];
    if !p.finite || !numbers.iter().all(|x| x.is_finite()) {
        return Err(unusable(prefix, &prep.asset, "risk parameters"));
    }
    let input = PolicyInput {
        window,
        ..s.input(liquidity.tau_effective, slippage)
    };
    let comparisons = comparisons(calibration, prep, horizons, &input);
    // While the fallback is served: what the model's own policy gives on the same window.
    let served = ServedPolicy {
        model: fallback.then(|| compare(&VarianceCurve::new(horizons, &pred.variance), &input, model_rule)),
        ..served
    };
    let answer = Answer {
        settings: s,
        window,
        margin,
        recommendation: &rec,
        rule,
        calibration,
        forecasts: forecasts_used(horizons, pred, prep),
        previous,
        comparisons,
        served,
    };
    Ok(AssetRisk {
        decision_id: None,
        origin: prep.origin(),
        parameters: answer.parameters(),
        derivation: answer.derivation(),
        asset: prep.asset.clone(),
    })
}

/// Everything an asset's answer says: the policy's recommendation and what it was asked.
struct Answer<'a> {
    settings: &'a RiskSettings,
    window: DrawdownWindow,
    margin: InitialMargin,
    recommendation: &'a policy::Recommendation,
    rule: DrawdownRule<'a>,
    calibration: Option<&'a RiskCalibration>,
    forecasts: Vec<ForecastUsed>,
    previous: Option<(Previous, StepRule)>,
    comparisons: Comparisons,
    served: ServedPolicy,
}

impl Answer<'_> {
    /// The parameters served.
    fn parameters(&self) -> RiskParameters {
        let p = &self.recommendation.policy;
        RiskParameters {
            liquidation_threshold: p.liquidation_threshold,
            max_ltv: p.max_ltv,
            liquidation_bonus: p.liquidation_bonus,
            maintenance_margin: p.maintenance_margin,
            initial_margin: self.margin.of(p.drawdown_user, p.initial_margin),
        }
    }

    /// How they were derived.
    fn derivation(self) -> Derivation {
        let (s, p, rule) = (self.settings, &self.recommendation.policy, self.rule);
        let (liquidity, slippage) = (&self.recommendation.liquidity, self.recommendation.slippage);
        let params = self.parameters();
        // Where D was reached, said under the rule that looks below tau (absent, as recorded
        // then, under the rule kept for replays).
        let said = |x: f64| (self.window == DrawdownWindow::UpToTau).then_some(x);
        Derivation {
            alpha: s.alpha,
            tau_hours: s.tau,
            tau_effective_hours: liquidity.tau_effective,
            tau_user_hours: s.tau_user,
            liquidity_horizon_hours: liquidity.horizon,
            shortage_probability: liquidity.shortage_probability,
            forecasts: self.forecasts,
            variance_tau: p.variance_tau,
            variance_tau_user: p.variance_tau_user,
            drawdown_rule: rule.name().to_owned(),
            drawdown_multiplier: rule.multiplier(s.alpha, p.drawdown_hours),
            drawdown_exponent: rule.exponent(),
            calibration_window: self
                .calibration
                .map(|c| format!("{} .. {}", c.model.from, c.model.until)),
            drawdown: p.drawdown,
            drawdown_user: p.drawdown_user,
            drawdown_hours: said(p.drawdown_hours),
            drawdown_variance: said(p.drawdown_variance),
            drawdown_user_hours: said(p.drawdown_user_hours),
            drawdown_user_variance: self.margin.said(p.drawdown_user_variance),
            drawdown_user_multiplier: self.margin.said(rule.multiplier(s.alpha, p.drawdown_user_hours)),
            initial_margin_hours: self.margin.said(p.initial_margin_hours),
            sale_size_usd: s.sale_size_usd,
            expected_illiquidity: liquidity.expected_illiquidity,
            expected_slippage: slippage,
            bonus_floor: s.bonus,
            bonus_margin: s.bonus_margin,
            unbounded: RiskParameters {
                liquidation_threshold: p.unbounded_liquidation_threshold,
                max_ltv: p.unbounded_max_ltv,
                ..params
            },
            previous: self.previous.map(|(p, _)| p),
            max_step: self.previous.map(|_| s.max_step),
            step_limited: p.step_limited,
            step_rule: self.previous.and_then(|(_, rule)| rule.name()).map(str::to_owned),
            step_overridden: p.buffer_over_step.then(|| {
                format!(
                    "max LTV fell more than max_step ({}) below the previous {}: it is kept \
                     D(alpha, tau_user) = {} under the bounded LT, SPEC's user buffer, which wins \
                     over the step",
                    s.max_step,
                    self.previous.and_then(|(p, _)| p.max_ltv).unwrap_or(f64::NAN),
                    p.drawdown_user
                )
            }),
            liquidation_blocked: p
                .liquidation_blocked
                .then(|| blocked_reason(slippage.unwrap_or(f64::NAN), s.sale_size_usd)),
            har_calibrated: self.comparisons.calibrated,
            har_reflection: self.comparisons.reflection,
            har_plain_normal: self.comparisons.plain_normal,
            policy: self.served,
            anomaly: None,
        }
    }
}

/// Why LT and max LTV are 0 when the sale cannot be liquidated.
#[must_use]
pub fn blocked_reason(slippage: f64, sale_size_usd: f64) -> String {
    format!(
        "expected slippage {slippage:?} of selling {sale_size_usd} USD is >= 1: the sale would lose the \
         whole price, so LT and max LTV are 0 and the bonus is at its maximum, {}",
        policy::MAX_BONUS
    )
}

/// What HAR's variance would give under each drawdown rule, with the same bonus and window.
struct Comparisons {
    calibrated: Option<Comparison>,
    reflection: Option<Comparison>,
    plain_normal: Option<Comparison>,
}

/// D, LT and max LTV of the policy on `curve` under `rule`, unbounded.
fn compare(curve: &VarianceCurve, input: &PolicyInput, rule: DrawdownRule<'_>) -> Comparison {
    let c = policy::parameters(curve, input, None, rule);
    Comparison {
        drawdown: c.drawdown,
        liquidation_threshold: c.liquidation_threshold,
        max_ltv: c.max_ltv,
    }
}

fn comparisons(
    calibration: Option<&RiskCalibration>,
    prep: &Prepared,
    horizons: &[usize],
    input: &PolicyInput,
) -> Comparisons {
    let har_ok = prep.har_usable();
    let har_curve = VarianceCurve::new(horizons, &prep.har);
    let har = |r: Option<DrawdownRule<'_>>| r.filter(|_| har_ok).map(|r| compare(&har_curve, input, r));
    Comparisons {
        calibrated: har(calibration
            .and_then(|c| c.har.as_ref())
            .map(DrawdownRule::Calibrated)),
        reflection: har(Some(DrawdownRule::Reflection)),
        plain_normal: har(Some(DrawdownRule::PlainNormal)),
    }
}
