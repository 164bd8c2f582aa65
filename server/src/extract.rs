//! The JSON body extractor: axum's body rejections and serde's errors become [`ApiError`]s with
//! our error body, a stable code and the offending field as a JSON path.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body, parsed with the path of any offending field.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

/// Body limit the extractor reports in its 413 message (set by the router from the config).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Bodies larger than this are parsed on a blocking thread, so a large (or hostile) body never
/// holds an async worker that `/healthz` and every other request share.
pub const BLOCKING_PARSE_BYTES: usize = 64 * 1024;

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned + Send + 'static,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        // Every coding of every Content-Encoding header (`identity, gzip` is gzip).
        if let Some(encoding) = req
            .headers()
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split(',')
                    .map(|c| c.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
        {
            return Err(ApiError::UnsupportedEncoding(encoding));
        }
        let set = req.extensions().get::<BodyLimit>().map(|l| l.0);
        let limit = set.unwrap_or(0);
        // A body declared larger than the limit is refused before any of it is read: read, it
        // would be refused only once the limit's worth had come, and a client that declares a
        // size it never sends was held until the request's timeout and answered 503 `timeout`.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(set), Some(declared)) = (set, declared)
            && declared > u64::try_from(set).unwrap_or(u64::MAX)
        {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BodyUnreadable(rejection.body_text())
            }
        })?;
        if bytes.len() <= BLOCKING_PARSE_BYTES {
            return parse(&bytes).map(ApiJson);
        }
        tokio::task::spawn_blocking(move || parse(&bytes))
            .await
            .map_err(|e| ApiError::Internal(format!("body parser failed: {e}")))?
            .map(ApiJson)
    }
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|mime| {
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// Parses a JSON body into `T`, naming the offending field on failure.
///
/// # Errors
/// [`ApiError::MalformedJson`] for syntax errors; [`ApiError::MissingField`],
/// [`ApiError::InvalidValue`] or a `non_finite` [`ApiError::BadCandle`] for well-formed JSON
/// that does not fit.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is a JSON object: serde's derives would also take the fields as an array.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => ApiError::InvalidValue {
                field: "body".into(),
                message: "the request body must be a JSON object".into(),
            },
            Err(e) => ApiError::MalformedJson {
                message: e.to_string(),
            },
        });
    }
    // Fast path without path tracking; on failure, parse again to find the field.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::MalformedJson {
            message: e.to_string(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        classify(&path, &inner)
    })?;
    de.end().map_err(|e| ApiError::MalformedJson {
        message: e.to_string(),
    })?;
    Ok(value)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn classify(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = e.to_string();
    let field = if path == "." {
        String::new()
    } else {
        path.to_owned()
    };
    if message.starts_with("number out of range") {
        // A candle's value is a bad candle (`non_finite`); any other number a setting out of
        // range (as the same value in a query string is).
        if path.split('.').any(|segment| segment.starts_with("candles[")) {
            return ApiError::BadCandle {
                field,
                value: f64::INFINITY,
                problem: volcast_core::candles::CandleProblem::NonFinite,
            };
        }
        return ApiError::OutOfRange {
            field,
            value: f64::INFINITY,
            range: "the finite numbers",
        };
    }
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedJson { message },
        Category::Data => {
            if let Some(name) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                ApiError::MissingField {
                    field: join(path, name),
                }
            } else if let Some(name) = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
            {
                // The path already ends at the unknown field.
                ApiError::InvalidValue {
                    field: if path.ends_with(name) {
                        path.to_owned()
                    } else {
                        join(path, name)
                    },
                    message,
                }
            } else {
                ApiError::InvalidValue {
                    field: if field.is_empty() { "body".into() } else { field },
                    message,
                }
            }
        }
    }
}

/// `deserialize_with` helpers that accept JSON objects only where a struct is expected (serde's
/// derives also take a struct's fields as an array, `[1, 2, ...]`, which would silently bind
/// values by position). Field paths are kept for the error.
pub mod objects {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::value::MapAccessDeserializer;
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    /// A `T` that must be given as a JSON object.
    struct Object<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = T;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                    T::deserialize(MapAccessDeserializer::new(map))
                }
            }
            d.deserialize_map(V(PhantomData)).map(Object)
        }
    }

    /// A list of `T`, each a JSON object.
    struct Objects<T>(Vec<T>);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Objects<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = Vec<T>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an array of JSON objects")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                    while let Some(Object(x)) = seq.next_element::<Object<T>>()? {
                        out.push(x);
                    }
                    Ok(out)
                }
            }
            d.deserialize_seq(V(PhantomData)).map(Objects)
        }
    }

    /// An optional object.
    ///
    /// # Errors
    /// When the value is neither null nor an object that deserializes into `T`.
    pub fn option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
        Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
    }

    /// An array of objects.
    ///
    /// # Errors
    /// When the value is not an array of objects that deserialize into `T`.
    pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(Objects::deserialize(d)?.0)
    }

    /// An optional array of objects.
    ///
    /// # Errors
    /// When the value is neither null nor an array of objects that deserialize into `T`.
    pub fn option_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Vec<T>>, D::Error> {
        Ok(Option::<Objects<T>>::deserialize(d)?.map(|o| o.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed, to exercise the extractor's errors")]
    struct Outer {
        items: Vec<Inner>,
        #[serde(default)]
        candles: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "only parsed, to exercise the extractor's errors")]
    struct Inner {
        high: f64,
        low: f64,
    }

    fn code_and_field(body: &str) -> (String, Option<String>) {
        let e = parse::<Outer>(body.as_bytes()).unwrap_err();
        let code = serde_json::to_value(e.status_and_code().1).unwrap();
        (code.as_str().unwrap().to_owned(), e.field().map(str::to_owned))
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(code_and_field("{"), ("malformed_json".to_owned(), None));
        assert_eq!(code_and_field("{} x"), ("malformed_json".to_owned(), None));
        assert_eq!(
            code_and_field(r#"{"items": [{"high": 1, "low": 1}, {"high": 1}]}"#),
            ("missing_field".to_owned(), Some("items[1].low".into()))
        );
        assert_eq!(
            code_and_field(r#"{"items": [{"high": "x", "low": 1}]}"#),
            ("invalid_value".to_owned(), Some("items[0].high".into()))
        );
        // Too large for a float: a bad candle in a candle, a setting out of range elsewhere.
        assert_eq!(
            code_and_field(r#"{"items": [], "candles": [{"high": 1e999, "low": 1}]}"#),
            ("non_finite".to_owned(), Some("candles[0].high".into()))
        );
        assert_eq!(
            code_and_field(r#"{"items": [{"high": 1e999, "low": 1}]}"#),
            ("out_of_range".to_owned(), Some("items[0].high".into()))
        );
        assert_eq!(
            code_and_field(r#"{"items": [], "alpah": 1}"#),
            ("invalid_value".to_owned(), Some("alpah".into()))
        );
        assert_eq!(
            code_and_field("{}"),
            ("missing_field".to_owned(), Some("items".into()))
        );
    }
}

/// Query parameters, parsed into `T` (whose unknown parameters are refused with
/// `deny_unknown_fields`); a parameter that does not parse is answered 400 `invalid_query`
/// naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Self(q.0))
            .map_err(|rejection| query_error(&rejection.body_text()))
    }
}

/// A path parameter, parsed into `T`; one that does not (a segment that is not UTF-8 once
/// percent-decoded, such as `%FF`) is answered 400 `invalid_query` naming it, in our error
/// format rather than axum's plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|rejection| {
                let text = rejection.body_text();
                // axum names the parameter between backticks ("Invalid UTF-8 in `asset`").
                let field = text
                    .split('`')
                    .nth(1)
                    .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or("path");
                ApiError::InvalidQuery {
                    field: field.to_owned(),
                    message: format!("path parameter: {text}"),
                }
            })
    }
}

/// Our error for a query string axum could not parse (`Failed to deserialize query string:
/// alpha: invalid float literal`, or `...: unknown field `alpah`, expected one of ...`).
fn query_error(text: &str) -> ApiError {
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    let named = detail
        .split_once(": ")
        .filter(|(path, _)| !path.is_empty() && path.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    let unknown = detail
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    match (named, unknown) {
        (Some((field, message)), _) => ApiError::InvalidQuery {
            field: field.to_owned(),
            message: message.to_owned(),
        },
        (None, Some(field)) => ApiError::InvalidQuery {
            field: field.to_owned(),
            message: detail.replace("field", "query parameter"),
        },
        (None, None) => ApiError::InvalidQuery {
            field: "query".to_owned(),
            message: detail.to_owned(),
        },
    }
}
