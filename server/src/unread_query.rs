//! Refuses a query string on a route that reads none: `POST /v1/forecast/volatility?horizons=4`
//! would otherwise answer every horizon, the parameter silently ignored. Which routes read a
//! query is taken from the OpenAPI document, the routes' own declarations.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};

use crate::error::ApiError;

/// The documented routes that declare a query parameter: path template to methods.
#[derive(Debug, Clone, Default)]
pub struct QueryRoutes(HashMap<String, Vec<&'static str>>);

impl QueryRoutes {
    /// From the OpenAPI document.
    #[must_use]
    pub fn of(doc: &OpenApi) -> Self {
        let mut out: HashMap<String, Vec<&'static str>> = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let methods = [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            for (method, op) in methods {
                if op.as_ref().is_some_and(reads_query) {
                    out.entry(path.clone()).or_default().push(method);
                }
            }
        }
        Self(out)
    }

    fn reads(&self, method: &str, path: &str) -> bool {
        self.0.get(path).is_some_and(|methods| methods.contains(&method))
    }
}

/// Whether `op` declares a query parameter.
pub(crate) fn reads_query(op: &Operation) -> bool {
    op.parameters
        .iter()
        .flatten()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query))
}

/// The middleware: a non-empty query on a `/v1` route that declares no query parameter is
/// answered 400 `invalid_query`, naming the first parameter given. HEAD reads what GET reads:
/// axum answers it with the GET handler.
pub async fn refuse(State(routes): State<Arc<QueryRoutes>>, req: Request, next: Next) -> Response {
    let query = req.uri().query().filter(|q| !q.is_empty());
    let matched = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let method = match req.method() {
        &Method::HEAD => "GET",
        m => m.as_str(),
    };
    if let (Some(query), Some(path)) = (query, matched)
        && path.starts_with("/v1/")
        && !routes.reads(method, path)
    {
        let first = query.split('&').next().unwrap_or_default();
        let name = first.split('=').next().unwrap_or_default();
        return ApiError::InvalidQuery {
            field: if name.is_empty() {
                "query".into()
            } else {
                name.into()
            },
            message: format!("{} {path} reads no query parameters", req.method()),
        }
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_query_routes_are_found() {
        let routes = QueryRoutes::of(&crate::openapi::document());
        assert!(routes.reads("GET", "/v1/assets/{asset}/forecast/volatility"));
        assert!(routes.reads("GET", "/v1/decisions"));
        assert!(!routes.reads("POST", "/v1/forecast/volatility"));
        assert!(!routes.reads("GET", "/v1/model"));
    }
}
