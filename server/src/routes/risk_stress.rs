//! `POST /v1/risk/stress`: the stress simulation ([`volcast_core::stress`]) of a book of
//! positions on the model's forecast for their collateral asset, off the async runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use volcast_core::drawdown::{DrawdownCalibration, DrawdownRule};
use volcast_core::policy::{self, AskedSettings, Forecasts, JSON_NAMES, RiskSettings, SALE_SIZE_RANGE};
use volcast_core::stress::{
    self, Book, Bridge, DEFAULT_DF, DEFAULT_LIQUIDATION_THRESHOLD, Impact, Position, PreparedBook, Scenario,
    ScenarioPolicy, StressError, StressInput,
};

use crate::audit::{Inputs, ToLog, id_header, log_decisions, routes as logged};
use crate::auth::Caller;
use crate::dto::stress::{
    BookDto, DEFAULT_PATHS, MAX_HORIZON, MAX_PATHS, MAX_POSITIONS, MAX_SCENARIOS, MAX_WORK, ScenarioDto,
    ScenarioResultDto, StressRequest, StressResponse, TailDto,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::risk_parameters::{served_policy, watched_tau};
use crate::routes::{RISK_TAG, forecast_items, forecasts_used, param, unusable};
use crate::state::{AppState, Serving};

/// A simulation error names a field of the simulation's input; `scenario` is the request's
/// `scenarios[i]`.
fn invalid(e: StressError, scenario: Option<usize>) -> ApiError {
    let field = match (scenario, e.field.strip_prefix("scenario.")) {
        (Some(i), Some(rest)) => format!("scenarios[{i}].{rest}"),
        _ => e.field,
    };
    ApiError::InvalidValue {
        field,
        message: e.message,
    }
}

fn count(
    value: Option<u64>,
    default: u64,
    max: u64,
    field: &str,
    range: &'static str,
) -> Result<usize, ApiError> {
    let v = value.unwrap_or(default);
    if (1..=max).contains(&v) {
        Ok(usize::try_from(v).unwrap_or(usize::MAX))
    } else {
        Err(ApiError::OutOfRange {
            field: field.to_owned(),
            value: v as f64,
            range,
        })
    }
}

fn scenarios(
    body: Option<&[ScenarioDto]>,
    replays: &[stress::ReplayWindow],
) -> Result<Vec<Scenario>, ApiError> {
    let all_replays = || replays.iter().map(stress::ReplayWindow::scenario);
    let Some(asked) = body else {
        return Ok(Scenario::defaults().into_iter().chain(all_replays()).collect());
    };
    let too_many = || ApiError::InvalidValue {
        field: "scenarios".into(),
        message: format!(
            "give 1 to {MAX_SCENARIOS} scenarios, counting each of `replays`' {} windows \
             (leave it out for the default set)",
            replays.len()
        ),
    };
    if asked.is_empty() || asked.len() > MAX_SCENARIOS {
        return Err(too_many());
    }
    let mut out = Vec::new();
    for (i, s) in asked.iter().enumerate() {
        match s {
            ScenarioDto::Forecast {} => out.push(Scenario::Forecast),
            ScenarioDto::VolatilityShock { k } => out.push(Scenario::VolatilityShock { k: *k }),
            ScenarioDto::LiquidityDrain { k } => out.push(Scenario::LiquidityDrain { k: *k }),
            ScenarioDto::InstantDrop { pct } => out.push(Scenario::InstantDrop { pct: *pct }),
            ScenarioDto::Replay { name } => {
                let window =
                    replays
                        .iter()
                        .find(|w| &w.name == name)
                        .ok_or_else(|| ApiError::UnknownScenario {
                            field: format!("scenarios[{i}].name"),
                            name: name.clone(),
                            known: replays.iter().map(|w| w.name.clone()).collect(),
                        })?;
                out.push(window.scenario());
            }
            ScenarioDto::Replays {} => out.extend(all_replays()),
        }
        // The limit holds on the expanded list (`replays` stands for several).
        if out.len() > MAX_SCENARIOS {
            return Err(too_many());
        }
    }
    // `replays` on an artifact without historical windows stands for none.
    if out.is_empty() {
        return Err(ApiError::InvalidValue {
            field: "scenarios".into(),
            message: "no scenario to run: this artifact carries no historical windows for `replays`".into(),
        });
    }
    Ok(out)
}

/// The simulation work of a request, in path-steps: `paths x (horizon + ceil(positions / 16))`
/// summed over the scenarios, a replay counting one path of its own length. (Settling a position
/// on a path costs about a sixteenth of simulating an hour.)
#[must_use]
pub fn work(scenarios: &[Scenario], paths: usize, horizon: usize, positions: usize) -> u64 {
    let w = |paths: usize, hours: usize| {
        let per_path = u64::try_from(hours.saturating_add(positions.div_ceil(16))).unwrap_or(u64::MAX);
        u64::try_from(paths).unwrap_or(u64::MAX).saturating_mul(per_path)
    };
    scenarios
        .iter()
        .map(|s| match s {
            Scenario::Replay { log_returns, .. } => w(1, log_returns.len()),
            _ => w(paths, horizon),
        })
        .fold(0, u64::saturating_add)
}

/// Sets its flag when dropped: the handler's future is dropped when the request times out (or
/// the client goes away), and the simulation then stops before its next scenario.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Field of the [`StressError`] a cancelled simulation stops with.
const CANCELLED: &str = "cancelled";

/// A stress request, checked: everything about the book, the scenarios and the settings is
/// known to be valid before the model runs.
struct Checked {
    paths: usize,
    horizon: usize,
    seed: u64,
    df: f64,
    /// The risk settings; the sale size is the asked one, or the largest position's value.
    settings: RiskSettings,
    book: Book,
    /// The book's collateral value at the last close and its debt, USD.
    book_usd: (f64, f64),
    scenarios: Vec<Scenario>,
}

/// The request's book, at most [`MAX_POSITIONS`] positions.
fn book(body: &StressRequest, default_lt: f64) -> Result<Book, ApiError> {
    if body.positions.len() > MAX_POSITIONS {
        return Err(ApiError::InvalidValue {
            field: "positions".into(),
            message: format!(
                "the book holds {} positions; at most {MAX_POSITIONS} are accepted",
                body.positions.len()
            ),
        });
    }
    Ok(Book {
        positions: body
            .positions
            .iter()
            .map(|p| Position {
                collateral: p.collateral,
                debt: p.debt,
                liquidation_threshold: p.liquidation_threshold,
            })
            .collect(),
        default_liquidation_threshold: default_lt,
    })
}

/// Checks the request's counts, settings, book and scenarios ([`Checked`]).
fn check(
    body: &StressRequest,
    state: &AppState,
    replays: &[stress::ReplayWindow],
) -> Result<Checked, ApiError> {
    let paths = count(body.paths, DEFAULT_PATHS, MAX_PATHS, "paths", "[1, 200000]")?;
    let horizon = count(
        body.horizon_hours,
        MAX_HORIZON,
        MAX_HORIZON,
        "horizon_hours",
        "[1, 168]",
    )?;
    let df = param(body.df, DEFAULT_DF, "df", "(2, 1000]", |v| v > 2.0 && v <= 1000.0)?;
    let asked = AskedSettings {
        alpha: body.alpha,
        tau: body.tau_hours,
        tau_user: body.tau_user_hours,
        bonus: body.bonus,
        bonus_margin: body.bonus_margin,
        sale_size_usd: body.sale_size_usd,
        max_step: None,
    };
    let mut settings = RiskSettings::resolve(&asked, &state.settings().defaults, &JSON_NAMES)?;
    let default_lt = param(
        body.default_liquidation_threshold,
        DEFAULT_LIQUIDATION_THRESHOLD,
        "default_liquidation_threshold",
        "(0, 1]",
        |v| v > 0.0 && v <= 1.0,
    )?;
    let book = book(body, default_lt)?;
    let price = body.candles.last().map_or(f64::NAN, |c| c.close);
    // A book whose sums overflow would answer its totals as null, or blame the candles. (A
    // last close that is no price is the candles' error, answered when they are checked.)
    let book_usd = if price.is_finite() {
        stress::book_usd(&book, price).map_err(|message| ApiError::InvalidValue {
            field: "positions".into(),
            message,
        })?
    } else {
        let prepared = PreparedBook::new(&book, price);
        (prepared.collateral_usd(), prepared.debt_usd())
    };
    if body.sale_size_usd.is_none() {
        // The largest position's collateral value, within the range an asked size must keep.
        let largest = book.largest_value(price);
        if !SALE_SIZE_RANGE.contains(largest) {
            return Err(ApiError::InvalidValue {
                field: "sale_size_usd".into(),
                message: format!(
                    "omitted, it is the largest position's collateral value, {largest:e} USD, outside {}: \
                     give sale_size_usd",
                    SALE_SIZE_RANGE.text
                ),
            });
        }
        settings.sale_size_usd = largest;
    }
    let scenarios = scenarios(body.scenarios.as_deref(), replays)?;
    let work = work(&scenarios, paths, horizon, book.positions.len());
    if work > MAX_WORK {
        return Err(ApiError::TooMuchWork { work, max: MAX_WORK });
    }
    // The book and every scenario, on a placeholder input of the right shape.
    let input = StressInput {
        price: 1.0,
        hourly_variance: vec![0.0; horizon],
        df,
        slippage_per_usd: 0.0,
        liquidation_delay_hours: 0,
        paths,
        seed: body.seed.unwrap_or(1),
        bridge: state.settings().stress_bridge,
        impact: state.settings().stress_impact,
        replay_cut: state.settings().stress_replay_cut,
    };
    stress::validate(&input, &book, &Scenario::Forecast).map_err(|e| invalid(e, None))?;
    for (i, s) in scenarios.iter().enumerate() {
        stress::validate(&input, &book, s).map_err(|e| invalid(e, Some(i)))?;
    }
    Ok(Checked {
        paths,
        horizon,
        seed: input.seed,
        df,
        settings,
        book,
        book_usd,
        scenarios,
    })
}

/// Liquidations at risk and bad debt at risk of a book under the forecast and stress scenarios,
/// with the parameters the risk policy recommends under each.
#[utoipa::path(
    post,
    path = "/v1/risk/stress",
    tag = RISK_TAG,
    request_body = StressRequest,
    responses(
        (status = 200, description = "One result per scenario", body = StressResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body or candle array too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid input (bad candle, negative collateral, empty book, too many paths, too much simulation work, unknown scenario, inputs whose magnitudes give non-finite numbers...)", body = ErrorBody),
        (status = 429, description = "Inference queue full (`queue_full`) or every simulation slot taken (`stress_busy`); see Retry-After", body = ErrorBody),
        (status = 503, description = "Model not ready, decision log unavailable, or timeout", body = ErrorBody),
    ),
    description = "The answer is appended to the signed decision log before it is returned (`decision_id`, \
                   header `x-decision-id`)."
)]
pub async fn stress(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<StressRequest>,
) -> Result<(HeaderMap, Json<StressResponse>), ApiError> {
    let serving = state.serving()?;
    let mut resp = stress_answer(&state, &serving, &body).await?;
    let caller = crate::routes::risk_parameters::caller_id(caller);
    let record = log_decisions(&state, &serving.info, caller, logged::STRESS, || {
        vec![ToLog {
            asset: body.asset.clone(),
            inputs: Inputs::of(&body.candles, "request"),
            request: serde_json::to_string(&StressRequest {
                candles: Vec::new(),
                ..body
            })
            .unwrap_or_default(),
            answer: serde_json::to_string(&resp).unwrap_or_default(),
        }]
    })
    .await?;
    resp.decision_id = record.ids().and_then(|i| i.first().cloned());
    Ok((id_header(record.ids()), Json(resp)))
}

/// The answer to a stress request by `serving` (the route's, and a replay's).
///
/// # Errors
/// The request's first problem, the model's or the simulation's.
pub async fn stress_answer(
    state: &AppState,
    serving: &Serving,
    body: &StressRequest,
) -> Result<StressResponse, ApiError> {
    let info = &serving.info;
    let mut checked = check(body, state, &info.metadata.stress_scenarios)?;
    let mut results = forecast_items(
        state,
        serving,
        vec![(String::new(), body.asset.clone(), body.candles.as_slice())],
    )
    .await?;
    let (prep, pred) = results
        .pop()
        .ok_or_else(|| ApiError::Internal("no forecast for the asset".into()))?;
    // The anomaly detector acts on the stress's window (checked by now) as on every risk
    // answer's.
    let (anomaly, tau) = watched_tau(state, serving, &body.candles, checked.settings.tau);
    checked.settings.tau = tau;
    let horizons = info.horizons();
    // While the gate holds the fallback, the stress runs on what the risk answers serve then:
    // HAR's variance with HAR's calibrated rule.
    let (har, served) = served_policy(info, &prep);
    let forecasts = Forecasts {
        horizons,
        variance: if har.is_some() { &prep.har } else { &pred.variance },
        shortage_probability: &pred.shortage_probability,
        illiquidity: &prep.illiquidity,
    };
    let calibration = har
        .cloned()
        .or_else(|| info.metadata.risk.as_ref().map(|r| r.model.clone()));
    let rule = DrawdownRule::calibrated_or_reflection(calibration.as_ref());
    let window = state.settings().drawdown_window;
    let origin = policy::recommend(&forecasts, &checked.settings, None, rule, window);
    let price = body.candles.last().map_or(f64::NAN, |c| c.close);
    let (bridge, impact) = (state.settings().stress_bridge, state.settings().stress_impact);
    let input = StressInput {
        bridge,
        impact,
        replay_cut: state.settings().stress_replay_cut,
        ..stress::input_at_origin(
            price,
            &origin,
            checked.horizon,
            checked.df,
            checked.paths,
            checked.seed,
        )
    };
    // The forecast's problems are the window's, answered before any work: a non-finite origin
    // recommendation, or no distribution to draw (e.g. zero variances).
    if !origin.policy.finite || origin.slippage.is_some_and(|s| !s.is_finite()) {
        return Err(unusable("", &prep.asset, "risk parameters at the origin"));
    }
    // An unknown illiquidity was a free sale: no price impact in any path, and the origin's
    // recommendation at the bonus floor (until stop 60).
    if state.settings().unknown_liquidity == crate::state::UnknownLiquidity::Refuse
        && origin.liquidity.expected_illiquidity.is_none()
    {
        return Err(crate::routes::risk_parameters::liquidity_unknown(
            "",
            &prep.asset,
            origin.liquidity.horizon,
            horizons,
            crate::routes::risk_parameters::PricedSale::Paths,
        ));
    }
    if let Err(e) = stress::validate(&input, &checked.book, &Scenario::Forecast) {
        return Err(ApiError::UnusableInput {
            field: "candles".into(),
            message: format!(
                "the forecast on {}'s candles gives no distribution to simulate ({e}); no stress \
                 answer is served on them",
                prep.asset
            ),
        });
    }
    let book = BookDto {
        positions: checked.book.positions.len(),
        collateral_usd: checked.book_usd.0,
        debt_usd: checked.book_usd.1,
    };
    let reports = simulate(
        state,
        checked.book,
        checked.scenarios,
        &input,
        &origin,
        &checked.settings,
        calibration,
    )
    .await?
    .into_iter()
    .map(|r| checked_result(r, &prep.asset, state.settings().initial_margin))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(StressResponse {
        decision_id: None,
        // Said only where it differs from `model.policy`: the gate holds the fallback and HAR
        // cannot serve this window (the answer named the fallback for the model's figures).
        served_policy: (served.name != info.policy.name).then_some(served),
        model: info.reference(),
        asset: prep.asset.clone(),
        origin: prep.origin(),
        price: input.price,
        horizon_hours: checked.horizon,
        seed: checked.seed,
        df: checked.df,
        forecasts: forecasts_used(horizons, &pred, &prep),
        liquidity_horizon_hours: origin.liquidity.horizon,
        current_illiquidity: origin.liquidity.current_illiquidity,
        slippage_per_usd: input.slippage_per_usd,
        tau_effective_hours: origin.liquidity.tau_effective,
        book,
        scenarios: reports,
        anomaly,
        lows: (bridge == Bridge::HourDrawn).then(|| "hour_drawn".to_owned()),
        impact: (impact == Impact::SoldTogether).then(|| "sold_together".to_owned()),
    })
}

/// Runs the simulation in a stress slot off the async runtime, stopping before the next
/// scenario once the request is gone.
async fn simulate(
    state: &AppState,
    book: Book,
    scenarios: Vec<Scenario>,
    input: &StressInput,
    origin: &policy::Recommendation,
    settings: &RiskSettings,
    calibration: Option<DrawdownCalibration>,
) -> Result<Vec<stress::ScenarioReport>, ApiError> {
    let slot = state.stress_slot()?;
    let (input, settings) = (input.clone(), *settings);
    let (forecast, liquidity) = (origin.curve.clone(), origin.liquidity);
    let window = state.settings().drawdown_window;
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let cancelled = Arc::clone(&cancel.0);
    let metrics = Arc::clone(state.metrics());
    let reports = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let policy = ScenarioPolicy {
            forecast: &forecast,
            liquidity: &liquidity,
            settings: &settings,
            rule: DrawdownRule::calibrated_or_reflection(calibration.as_ref()),
            window,
        };
        // Checked before each scenario: a timed-out request frees its slot after at most one
        // more scenario (each bounded by `MAX_WORK`).
        let simulate = |i: &StressInput, b: &Book, s: &Scenario| {
            if cancelled.load(Ordering::Relaxed) {
                metrics.stress_cancellations.inc();
                return Err(StressError {
                    field: CANCELLED.into(),
                    message: "the request was cancelled".into(),
                });
            }
            stress::simulate(i, b, s)
        };
        stress::run(&input, &book, &scenarios, &policy, &simulate)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("stress simulation failed: {e}")))?
    .map_err(|e| invalid(e, None));
    drop(cancel);
    reports
}

/// A scenario's result, failing closed: any non-finite number fails the request
/// ([`ApiError::UnusableInput`]). (A sale that cannot be liquidated is the policy's business:
/// LT = max LTV = 0, `liquidation_blocked`.)
fn checked_result(
    report: stress::ScenarioReport,
    asset: &str,
    margin: crate::state::InitialMargin,
) -> Result<ScenarioResultDto, ApiError> {
    if report.recommendation.slippage.is_some_and(|s| !s.is_finite()) {
        return Err(unusable("", asset, "expected slippage"));
    }
    if !report.recommendation.finite {
        return Err(unusable(
            "",
            asset,
            &format!("variances under scenario `{}`", report.scenario),
        ));
    }
    let dto = ScenarioResultDto::of(report, margin);
    let t = |t: &TailDto| [t.mean, t.p95, t.p99, t.es99];
    let c = &dto.liquidated_positions;
    let r = &dto.recommended;
    let numbers = [
        dto.liquidation_probability,
        dto.slippage_per_usd,
        dto.horizon_variance,
        c.mean,
        c.p50,
        c.p95,
        c.p99,
        r.liquidation_threshold,
        r.max_ltv,
        r.liquidation_bonus,
        r.maintenance_margin,
        r.initial_margin,
        r.variance_tau,
        r.variance_tau_user,
    ];
    let (lar, bdar) = (t(&dto.liquidations_at_risk), t(&dto.bad_debt_at_risk));
    for x in numbers.iter().chain(&lar).chain(&bdar) {
        if !x.is_finite() {
            return Err(unusable(
                "",
                asset,
                &format!("results under scenario `{}`", dto.scenario),
            ));
        }
    }
    Ok(dto)
}
