//! The OpenAPI document, built from the same router the server runs (utoipa-axum), and the
//! YAML committed as `openapi.yaml` at the repository root.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::routes::{anomaly, assets, decisions, forecast, meta, risk_parameters, risk_stress, updates};
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
        (name = "audit", description = "The signed, hash-chained decision log: keys, records, replays"),
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
        .routes(routes!(anomaly::scan))
        .routes(routes!(anomaly::asset_anomalies))
        .routes(routes!(updates::post_updates))
        .routes(routes!(updates::asset_updates))
        .routes(routes!(decisions::keys))
        .routes(routes!(decisions::decisions))
        .routes(routes!(decisions::decision))
        .routes(routes!(decisions::replay))
        .routes(routes!(meta::reload))
        .routes(routes!(meta::model))
        .routes(routes!(meta::validation))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::metrics))
}

/// The router and its OpenAPI document, with the access control of [`crate::auth`] written in.
pub fn parts() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = api_router().split_for_parts();
    secure(&mut doc);
    (router, doc)
}

/// The OpenAPI document.
#[must_use]
pub fn document() -> utoipa::openapi::OpenApi {
    parts().1
}

/// Adds the bearer scheme (Swagger UI's "Authorize" takes a key), and to every route that needs a
/// key: the scheme, its scope in the description, and the 401, 403 and 429 answers.
fn secure(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("vck_<id>_<secret>")
                .description(Some(
                    "An API key made with `keys create`; each route needs one of its scopes (read, risk, admin).",
                ))
                .build(),
        ),
    );
    let error = |text: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(text)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    // A query string on a `/v1` route that reads none is refused (`unread_query`).
    for (path, item) in &mut doc.paths.paths {
        if !path.starts_with("/v1/") {
            continue;
        }
        for op in operations(item) {
            if crate::unread_query::reads_query(op) {
                continue;
            }
            let refused = "a query string: this route reads no query parameters (`invalid_query`)";
            let responses = &mut op.responses.responses;
            match responses.get_mut("400") {
                Some(RefOr::T(r)) => r.description.push_str(&format!("; or {refused}")),
                _ => {
                    let mut text = refused.to_owned();
                    text[..1].make_ascii_uppercase();
                    responses.insert("400".into(), error(&text));
                }
            }
        }
    }
    for (path, item) in &mut doc.paths.paths {
        // `/metrics` needs a key only under `--metrics-need-key`: documented as optional.
        let (scope, only_if) = match (
            crate::auth::route_scope(path, false),
            crate::auth::route_scope(path, true),
        ) {
            (Some(scope), _) => (scope, ""),
            (None, Some(scope)) => (scope, "With `--metrics-need-key`: "),
            (None, None) => continue,
        };
        for op in operations(item) {
            let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
            op.security = Some(if only_if.is_empty() {
                vec![bearer]
            } else {
                vec![SecurityRequirement::default(), bearer]
            });
            let needs = if only_if.is_empty() { "Needs" } else { "needs" };
            let note = format!("{only_if}{needs} an API key with the `{}` scope.", scope.name());
            op.description = Some(match op.description.take() {
                Some(d) => format!("{d}\n\n{note}"),
                None => note,
            });
            let responses = &mut op.responses.responses;
            responses.insert(
                "401".into(),
                error(&format!(
                    "{only_if}No API key, or one that is unknown, wrong or revoked (`unauthorized`)"
                )),
            );
            responses.insert(
                "403".into(),
                error(&format!(
                    "{only_if}The key lacks the `{}` scope (`forbidden`)",
                    scope.name()
                )),
            );
            match responses.get_mut("429") {
                Some(RefOr::T(r)) => r
                    .description
                    .push_str("; or the key is over its rate limit (`rate_limited`)"),
                _ => {
                    responses.insert(
                        "429".into(),
                        error(&format!(
                            "{only_if}The key is over its rate limit (`rate_limited`); see Retry-After"
                        )),
                    );
                }
            }
        }
    }
}

/// The document as YAML, as committed in `openapi.yaml`.
///
/// # Errors
/// When serialization fails (it does not for this document).
pub fn yaml() -> Result<String, String> {
    document().to_yaml().map_err(|e| e.to_string())
}

/// A path's operations, of the methods the service routes.
fn operations(
    item: &mut utoipa::openapi::path::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}
