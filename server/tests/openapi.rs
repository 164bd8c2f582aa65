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
