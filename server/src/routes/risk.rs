//! `POST /v1/risk/parameters`: the risk engine ([`crate::risk`]) on the model's forecasts.

use axum::Json;
use axum::extract::State;
use volcast_training::inference::Prediction;
use volcast_training::risk::{DEFAULT_ALPHA, DEFAULT_BONUS, DEFAULT_TAU, DEFAULT_TAU_USER};

use crate::dto::{
    AssetRisk, Comparison, Derivation, Previous, RiskItem, RiskParameters, RiskRequest, RiskResponse,
};
use crate::engine::{Prepared, shape};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::model::ModelInfo;
use crate::risk::{self, Bound, DrawdownRule, PolicyInput, VarianceCurve};
use crate::routes::{RISK_TAG, forecast_items, forecasts_used, param, unusable};
use crate::state::AppState;

/// Longest liquidation or user window, hours: the drawdown calibration covers 1 to 168 h. The
/// cap applies to the requested windows; the shortage can lengthen `tau` up to twice it.
pub const MAX_TAU_HOURS: f64 = 168.0;
/// Allowed windows, in words.
pub const TAU_RANGE: &str = "[1, 168]";
/// Allowed quantile levels, in words: the drawdown `D(alpha, tau)` is defined (calibrated) for
/// `alpha` in (0.5, 0.9999].
pub const ALPHA_RANGE: &str = "(0.5, 0.9999]";

/// Whether `alpha` is in [`ALPHA_RANGE`].
#[must_use]
pub fn alpha_ok(alpha: f64) -> bool {
    alpha > 0.5 && alpha <= 0.9999
}

/// Validated settings of a risk request.
#[derive(Debug, Clone, Copy)]
struct Settings {
    alpha: f64,
    tau: f64,
    tau_user: f64,
    bonus: f64,
    bonus_margin: f64,
    sale: f64,
    max_step: f64,
}

#[allow(clippy::cast_precision_loss)]
fn settings(body: &RiskRequest, state: &AppState) -> Result<Settings, ApiError> {
    let d = state.settings().defaults;
    let hours = |v| (1.0..=MAX_TAU_HOURS).contains(&v);
    Ok(Settings {
        alpha: param(body.alpha, DEFAULT_ALPHA, "alpha", ALPHA_RANGE, alpha_ok)?,
        tau: param(body.tau_hours, DEFAULT_TAU as f64, "tau_hours", TAU_RANGE, hours)?,
        tau_user: param(
            body.tau_user_hours,
            DEFAULT_TAU_USER as f64,
            "tau_user_hours",
            TAU_RANGE,
            hours,
        )?,
        bonus: param(body.bonus, DEFAULT_BONUS, "bonus", "[0, 1)", |v| {
            (0.0..1.0).contains(&v)
        })?,
        bonus_margin: param(body.bonus_margin, d.bonus_margin, "bonus_margin", "[0, 1)", |v| {
            (0.0..1.0).contains(&v)
        })?,
        sale: param(
            body.sale_size_usd,
            d.sale_size_usd,
            "sale_size_usd",
            "[0, 1e12]",
            |v| (0.0..=1e12).contains(&v),
        )?,
        max_step: param(body.max_step, d.max_step, "max_step", "[0, 1]", |v| {
            (0.0..=1.0).contains(&v)
        })?,
    })
}

fn check_previous(prefix: &str, previous: Option<&Previous>) -> Result<(), ApiError> {
    let Some(p) = previous else { return Ok(()) };
    for (name, value) in [
        ("liquidation_threshold", p.liquidation_threshold),
        ("max_ltv", p.max_ltv),
    ] {
        if let Some(v) = value {
            param(Some(v), 0.0, &format!("{prefix}previous.{name}"), "[0, 1]", |v| {
                (0.0..=1.0).contains(&v)
            })?;
        }
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
        (status = 422, description = "Invalid input (bad candle, alpha outside (0.5, 0.9999], tau over 168 h, inputs whose magnitudes give a non-finite forecast...)", body = ErrorBody),
        (status = 429, description = "Inference queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Model not ready, or timeout", body = ErrorBody),
    )
)]
pub async fn parameters(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RiskRequest>,
) -> Result<Json<RiskResponse>, ApiError> {
    let serving = state.serving()?;
    let s = settings(&body, &state)?;
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
        check_previous(prefix, item.previous.as_ref())?;
    }
    let refs = items
        .iter()
        .map(|(p, i)| (p.clone(), i.asset.clone(), i.candles.as_slice()))
        .collect();
    let results = forecast_items(&state, &serving, refs).await?;
    let info = &serving.info;
    let out = results
        .into_iter()
        .zip(items)
        .map(|((prep, pred), (prefix, item))| recommend(info, &s, &prefix, prep, &pred, item.previous))
        .collect::<Result<_, _>>()?;
    Ok(Json(RiskResponse {
        model: info.reference(),
        items: out,
    }))
}

fn recommend(
    info: &ModelInfo,
    s: &Settings,
    prefix: &str,
    prep: Prepared,
    pred: &Prediction,
    previous: Option<Previous>,
) -> Result<AssetRisk, ApiError> {
    let horizons = info.horizons();
    let liquidity = risk::liquidity(horizons, &pred.shortage_probability, &prep.illiquidity, s.tau);
    let (lh, p, tau_eff) = (
        liquidity.horizon,
        liquidity.shortage_probability,
        liquidity.tau_effective,
    );
    let expected = liquidity.expected_illiquidity;
    let slippage = expected.map(|m| risk::slippage(m, s.sale));
    // Fail closed: a non-finite slippage (magnitudes overflowing) is no answer at all.
    if slippage.is_some_and(|x| !x.is_finite()) {
        return Err(unusable(prefix, &prep.asset, "expected slippage"));
    }
    let input = PolicyInput {
        alpha: s.alpha,
        tau: tau_eff,
        tau_user: s.tau_user,
        bonus: s.bonus,
        bonus_margin: s.bonus_margin,
        slippage,
    };
    let bound = previous.map(|p| Bound {
        liquidation_threshold: p.liquidation_threshold,
        max_ltv: p.max_ltv,
        max_step: s.max_step,
    });
    let model_curve = VarianceCurve::new(horizons, &pred.variance);
    let calibration = info.metadata.risk.as_ref();
    let rule = DrawdownRule::calibrated_or_reflection(calibration.map(|c| &c.model));
    let policy = risk::policy(&model_curve, &input, bound.as_ref(), rule);
    let har_ok = prep.har.iter().all(|v| v.is_finite() && *v > 0.0);
    let har_curve = VarianceCurve::new(horizons, &prep.har);
    let compare = |r: Option<DrawdownRule<'_>>| {
        let r = r?;
        har_ok.then(|| {
            let c = risk::policy(&har_curve, &input, None, r);
            Comparison {
                drawdown: c.drawdown,
                liquidation_threshold: c.liquidation_threshold,
                max_ltv: c.max_ltv,
            }
        })
    };
    let params = RiskParameters {
        liquidation_threshold: policy.liquidation_threshold,
        max_ltv: policy.max_ltv,
        liquidation_bonus: policy.liquidation_bonus,
        maintenance_margin: policy.maintenance_margin,
        initial_margin: policy.initial_margin,
    };
    let model_numbers = [
        policy.drawdown,
        policy.drawdown_user,
        policy.liquidation_threshold,
        policy.max_ltv,
        policy.liquidation_bonus,
        tau_eff,
    ];
    if !model_numbers.iter().all(|x| x.is_finite()) {
        return Err(unusable(prefix, &prep.asset, "risk parameters"));
    }
    Ok(AssetRisk {
        origin: prep.origin(),
        parameters: params,
        derivation: Derivation {
            alpha: s.alpha,
            tau_hours: s.tau,
            tau_effective_hours: tau_eff,
            tau_user_hours: s.tau_user,
            liquidity_horizon_hours: lh,
            shortage_probability: p,
            forecasts: forecasts_used(horizons, pred, &prep),
            variance_tau: model_curve.at(tau_eff),
            variance_tau_user: model_curve.at(s.tau_user),
            drawdown_rule: rule.name().to_owned(),
            drawdown_multiplier: rule.multiplier(s.alpha, tau_eff),
            drawdown_exponent: rule.exponent(),
            calibration_window: calibration.map(|c| format!("{} .. {}", c.model.from, c.model.until)),
            drawdown: policy.drawdown,
            drawdown_user: policy.drawdown_user,
            sale_size_usd: s.sale,
            expected_illiquidity: expected,
            expected_slippage: slippage,
            bonus_floor: s.bonus,
            bonus_margin: s.bonus_margin,
            unbounded: RiskParameters {
                liquidation_threshold: policy.unbounded_liquidation_threshold,
                max_ltv: policy.unbounded_max_ltv,
                ..params
            },
            previous,
            max_step: previous.map(|_| s.max_step),
            step_limited: policy.step_limited,
            liquidation_blocked: policy.liquidation_blocked.then(|| {
                format!(
                    "expected slippage {:?} of selling {} USD is >= 1: the sale would lose the whole \
                     price, so LT and max LTV are 0 and the bonus is at its maximum, {}",
                    slippage.unwrap_or(f64::NAN),
                    s.sale,
                    risk::MAX_BONUS
                )
            }),
            har_calibrated: compare(
                calibration
                    .and_then(|c| c.har.as_ref())
                    .map(DrawdownRule::Calibrated),
            ),
            har_reflection: compare(Some(DrawdownRule::Reflection)),
            har_plain_normal: compare(Some(DrawdownRule::PlainNormal)),
        },
        asset: prep.asset,
    })
}
