//! The OpenAPI document, built from the same router the server runs (utoipa-axum), and the
//! YAML committed as `openapi.yaml` at the repository root.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::routes::{assets, forecast, meta, risk_parameters, risk_stress};
use crate::state::AppState;

/// Top-level document: title, description, tags.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "volcast",
        description = "Volatility and liquidity-shortage forecasts for crypto assets, and the DeFi risk \
                       parameters derived from them. Every forecast route takes one asset (`asset` and \
                       `candles`) or a batch (`items`) and needs at least `history_hours` hourly candles \
                       per asset (see `GET /v1/model`); the routes under `/v1/assets/{asset}/` answer the \
                       same from the service's own stored candles. Errors answer `{\"error\", \"message\", \"field\"}`."
    ),
    tags(
        (name = "forecast", description = "Model forecasts and the model card"),
        (name = "risk", description = "Protocol risk parameters"),
        (name = "market data", description = "The service's own market data: stored assets and candles (the asset routes under /v1/assets/{asset}/ forecast from it)"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// The documented routes.
#[must_use]
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(forecast::volatility))
        .routes(routes!(forecast::liquidity))
        .routes(routes!(risk_parameters::parameters))
        .routes(routes!(risk_stress::stress))
        .routes(routes!(assets::assets))
        .routes(routes!(assets::candles))
        .routes(routes!(assets::volatility))
        .routes(routes!(assets::liquidity))
        .routes(routes!(assets::risk))
        .routes(routes!(meta::model))
        .routes(routes!(meta::validation))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::metrics))
}

/// The OpenAPI document.
#[must_use]
pub fn document() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// The document as YAML, as committed in `openapi.yaml`.
///
/// # Errors
/// When serialization fails (it does not for this document).
pub fn yaml() -> Result<String, String> {
    document().to_yaml().map_err(|e| e.to_string())
}
