//! The committed `openapi.yaml` must equal the document generated from the code. To refresh it:
//! `cargo run -p volcast-server --bin openapi -- --out openapi.yaml` (from the repository root), or run
//! this test with `VOLCAST_UPDATE_OPENAPI=1`.

use std::path::Path;

#[test]
fn committed_openapi_yaml_is_up_to_date() {
    // Read at run time: a test binary reused from another checkout through a shared target dir
    // would otherwise point at that checkout.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let path = Path::new(&manifest).join("../openapi.yaml");
    let generated = volcast_server::openapi::yaml().unwrap();
    if std::env::var_os("VOLCAST_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml is stale: run `cargo run -p volcast-server --bin openapi -- --out openapi.yaml` \
         (or this test with VOLCAST_UPDATE_OPENAPI=1) and commit the result"
    );
}

#[test]
fn every_route_is_documented() {
    let doc = volcast_server::openapi::document();
    for path in [
        "/v1/forecast/volatility",
        "/v1/forecast/liquidity",
        "/v1/risk/parameters",
        "/v1/risk/stress",
        "/v1/model",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc.paths.paths.contains_key(path), "{path} missing");
    }
}

/// Every `/v1` operation documents its 400: a query string on a route that reads none is
/// refused with `invalid_query` (`GET /v1/model?x=1`), which the document did not say for the
/// routes without a body or a path parameter.
#[test]
fn every_v1_operation_documents_its_400() {
    let doc = volcast_server::openapi::document();
    for (path, item) in doc.paths.paths.iter().filter(|(p, _)| p.starts_with("/v1/")) {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ] {
            let Some(op) = op else { continue };
            assert!(
                op.responses.responses.contains_key("400"),
                "{method} {path} documents no 400"
            );
        }
    }
}

/// What the document says a request may hold is what the server accepts: a candle's optional
/// `trades` (accepted, but the schema's `additionalProperties: false` forbade it), and the page
/// sizes' lower bound of 1 (the document said 0, which is refused).
#[test]
fn the_document_allows_what_is_accepted_and_no_more() {
    let doc = serde_json::to_value(volcast_server::openapi::document()).unwrap();
    let candle = &doc["components"]["schemas"]["CandleDto"];
    assert_eq!(candle["additionalProperties"], false, "{candle}");
    assert!(candle["properties"]["trades"].is_object(), "{candle}");
    assert!(
        !candle["required"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "trades"),
        "{candle}"
    );
    // Read, but never written (answers, the decision log's candle windows).
    let read: volcast_server::dto::CandleDto = serde_json::from_value(serde_json::json!({
        "open_time": 0, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
        "quote_volume": 1.0, "trades": 12.0,
    }))
    .unwrap();
    assert_eq!(read.trades, Some(12.0));
    assert!(serde_json::to_value(read).unwrap().get("trades").is_none());
    for (path, max) in [("/v1/assets/{asset}/candles", 5000), ("/v1/decisions", 1000)] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(
            (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
            (&serde_json::json!(1), &serde_json::json!(max)),
            "{path}: {limit}"
        );
    }
}
