//! Access control: every route of the OpenAPI document but the open ones answers only a valid,
//! unrevoked key of its scope; 401 and 403 in the usual error format; the per-key rate limit;
//! the loopback rule; the `keys` CLI.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::process::Command;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::Value;
use volcast_server::auth::{Scope, new_key, route_scope};
use volcast_store::{KeyStore as _, Store};

const FOREVER: Duration = Duration::from_secs(100_000 * 86_400);

async fn store_in(dir: &std::path::Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("volcast.db").display()))
        .await
        .unwrap()
}

/// A store in `dir` and a service on the default artifact over it.
async fn state_in(dir: &std::path::Path) -> (Store, volcast_server::state::AppState) {
    let store = store_in(dir).await;
    let state = common::state_with_store(
        &common::repo().join("model-artifacts/default"),
        store.clone(),
        FOREVER,
    )
    .await;
    (store, state)
}

async fn call_with(
    app: &axum::Router,
    method: &Method,
    uri: &str,
    key: Option<&str>,
) -> (u16, Value, axum::http::HeaderMap) {
    let mut req = Request::builder().method(method.clone()).uri(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = if *method == Method::POST {
        req.header("content-type", "application/json")
            .body(Body::from("{}"))
    } else {
        req.body(Body::empty())
    }
    .unwrap();
    let (status, body, headers) = common::raw(app, req).await;
    (status.as_u16(), body, headers)
}

/// Every (method, path) of the OpenAPI document.
fn documented() -> Vec<(Method, String)> {
    let doc = serde_json::to_value(volcast_server::openapi::document()).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            out.push((
                Method::from_bytes(m.to_uppercase().as_bytes()).unwrap(),
                path.clone(),
            ));
        }
    }
    out
}

/// The README's scope table, written out: every documented route's scope, so that a route the
/// table in `route_scope` misspells (and so sends to `admin`, failing closed) is caught.
#[test]
fn each_documented_route_has_the_scope_the_readme_gives() {
    let expected = |method: &str, path: &str| -> Option<Scope> {
        match (method, path) {
            (_, "/healthz" | "/readyz" | "/metrics") => None,
            ("GET", "/v1/decisions") | ("POST", "/v1/admin/reload") => Some(Scope::Admin),
            ("POST", "/v1/decisions/{id}/replay") => Some(Scope::Risk),
            ("GET" | "POST", p) if p.contains("/risk") => Some(Scope::Risk),
            _ => Some(Scope::Read),
        }
    };
    let routes = documented();
    for (method, path) in &routes {
        assert_eq!(
            route_scope(path, false),
            expected(method.as_str(), path),
            "{method} {path}"
        );
    }
    // The routes a `read` key is for, by name (README, "Access control").
    for path in [
        "/v1/assets/{asset}/forecast/volatility",
        "/v1/assets/{asset}/forecast/liquidity",
        "/v1/assets/{asset}/candles",
        "/v1/assets/{asset}/anomalies",
    ] {
        assert!(routes.iter().any(|(_, p)| p == path), "{path} is documented");
        assert_eq!(route_scope(path, false), Some(Scope::Read), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_needs_a_valid_key_of_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let (store, state) = state_in(dir.path()).await;
    let mut tokens = std::collections::BTreeMap::new();
    for scope in Scope::ALL {
        let k = new_key(scope.name(), &[scope], None, 0).unwrap();
        store.create_key(&k.row).await.unwrap();
        tokens.insert(scope, k.token);
    }
    let revoked = new_key("revoked", &Scope::ALL, None, 0).unwrap();
    store.create_key(&revoked.row).await.unwrap();
    assert!(store.revoke_key(&revoked.row.id, 1).await.unwrap());
    assert!(
        !store.revoke_key(&revoked.row.id, 2).await.unwrap(),
        "revoked once"
    );
    state.access().set_keys(&store.keys().await.unwrap());
    let app = volcast_server::app(state);
    // The right id with another secret, and a key that never existed.
    let admin = &tokens[&Scope::Admin];
    let wrong_secret = format!("{}{}", &admin[..admin.len() - 4], "ffff");
    let wrong_secret = if wrong_secret == *admin {
        format!("{}{}", &admin[..admin.len() - 4], "0000")
    } else {
        wrong_secret
    };
    let bad_keys = [
        wrong_secret.as_str(),
        "vck_k000000000000_00",
        "not-a-key",
        revoked.token.as_str(),
    ];

    let routes = documented();
    let open: Vec<&str> = routes
        .iter()
        .filter(|(_, p)| route_scope(p, false).is_none())
        .map(|(_, p)| p.as_str())
        .collect();
    assert_eq!(open, ["/healthz", "/metrics", "/readyz"], "the open routes");
    assert!(routes.len() >= 20, "{} routes", routes.len());
    for (method, path) in &routes {
        let uri = path.replace("{asset}", "BTCUSDT").replace("{id}", "dec_0");
        let Some(scope) = route_scope(path, false) else {
            let (status, _, _) = call_with(&app, method, &uri, None).await;
            assert!(![401, 403].contains(&status), "{method} {path}: {status}");
            continue;
        };
        let (status, body, headers) = call_with(&app, method, &uri, None).await;
        assert_eq!(status, 401, "{method} {path} without a key: {body}");
        assert_eq!(body["error"], "unauthorized", "{method} {path}");
        assert!(body["message"].as_str().unwrap().contains("Bearer"));
        assert_eq!(headers["www-authenticate"], "Bearer");
        for bad in bad_keys {
            let (status, body, _) = call_with(&app, method, &uri, Some(bad)).await;
            assert_eq!(status, 401, "{method} {path} with {bad}: {body}");
            assert_eq!(body["error"], "unauthorized");
        }
        for (other, token) in &tokens {
            let (status, body, _) = call_with(&app, method, &uri, Some(token)).await;
            if *other == scope {
                assert!(
                    ![401, 403].contains(&status),
                    "{method} {path} with its scope: {status} {body}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} with a {} key: {body}", other.name());
                assert_eq!(body["error"], "forbidden");
                assert!(body["message"].as_str().unwrap().contains(scope.name()));
            }
        }
        // A method the route does not serve, with a key of its scope: 405, not a 403 naming
        // another scope.
        let wrong = if *method == Method::GET {
            Method::DELETE
        } else {
            Method::GET
        };
        let (status, body, _) = call_with(&app, &wrong, &uri, Some(tokens[&scope].as_str())).await;
        assert_eq!(status, 405, "{wrong} {path}: {body}");
        assert_eq!(body["error"], "method_not_allowed", "{wrong} {path}");
    }
    // The docs stay open.
    for uri in ["/openapi.json", "/docs/"] {
        let (status, _, _) = call_with(&app, &Method::GET, uri, None).await;
        assert_eq!(status, 200, "{uri}");
    }
}

#[test]
fn the_document_shows_the_bearer_scheme_and_each_routes_scope() {
    let doc = serde_json::to_value(volcast_server::openapi::document()).unwrap();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let risk = &doc["paths"]["/v1/risk/parameters"]["post"];
    assert_eq!(risk["security"][0]["bearer"], serde_json::json!([]));
    assert!(risk["description"].as_str().unwrap().contains("`risk` scope"));
    for code in ["401", "403", "429"] {
        assert!(risk["responses"][code].is_object(), "{code}");
    }
    assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_is_told_when_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (store, state) = state_in(dir.path()).await;
    // Six a minute: one at once, then one every ten seconds.
    let k = new_key("slow", &[Scope::Read], Some(6), 0).unwrap();
    store.create_key(&k.row).await.unwrap();
    state.access().set_keys(&store.keys().await.unwrap());
    let app = volcast_server::app(state);
    let (status, _, _) = call_with(&app, &Method::GET, "/v1/model", Some(&k.token)).await;
    assert_eq!(status, 200);
    let (status, body, headers) = call_with(&app, &Method::GET, "/v1/model", Some(&k.token)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((9..=10).contains(&wait), "{wait}");
    // Open routes are not counted.
    let (status, _, _) = call_with(&app, &Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
}

/// Two `Authorization` headers are refused (401) in either order: the first was checked and the
/// other ignored, so a valid key first let any second one through, and the reverse was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_refused_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, state) = state_in(dir.path()).await;
    let k = new_key("reader", &[Scope::Read], None, 0).unwrap();
    store.create_key(&k.row).await.unwrap();
    state.access().set_keys(&store.keys().await.unwrap());
    let app = volcast_server::app(state);
    let valid = format!("Bearer {}", k.token);
    for pair in [
        [valid.as_str(), "Bearer garbage"],
        ["Bearer garbage", valid.as_str()],
    ] {
        let req = Request::builder()
            .uri("/v1/model")
            .header("authorization", pair[0])
            .header("authorization", pair[1])
            .body(Body::empty())
            .unwrap();
        let (status, body, headers) = common::raw(&app, req).await;
        assert_eq!(status, 401, "{pair:?}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("one Authorization header"),
            "{body}"
        );
        assert!(headers.contains_key("www-authenticate"));
    }
    let (status, _, _) = call_with(&app, &Method::GET, "/v1/model", Some(&k.token)).await;
    assert_eq!(status, 200);
}

/// A start refused for listening beyond loopback without keys never says `listening on` (it
/// printed it, bound, before the refusal: a supervisor waiting for the line took it as started).
#[test]
fn a_refused_start_never_announces_its_address() {
    let artifact = common::repo().join("model-artifacts/default");
    let (ok, stdout, stderr) = common::process::start_and_wait_output(&artifact, &["--listen", "0.0.0.0:0"]);
    assert!(!ok && stderr.contains("refusing to listen"), "{stderr}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    // A follower setting that cannot run refuses the start before the announcement too.
    for args in [["--follow", "BTC-USDT"], ["--follow-poll", "0s"]] {
        let mut args = args.to_vec();
        if args[0] != "--follow" {
            args.extend(["--follow", "BTCUSDT"]);
        }
        let (ok, stdout, stderr) = common::process::start_and_wait_output(&artifact, &args);
        assert!(!ok && stderr.contains("follower"), "{args:?}: {stderr}");
        assert!(!stdout.contains("listening on"), "{args:?}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_only_loopback_is_served_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        volcast_server::Config::with_artifact(common::repo().join("model-artifacts/default")).unwrap();
    config.database_url = format!("sqlite://{}", dir.path().join("volcast.db").display());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = volcast_server::run(config.clone(), listener, async {}).await;
    assert!(
        matches!(refused, Err(volcast_server::ServeError::NoAuth(_))),
        "{refused:?}"
    );
    // A --max-candles below the model's history would refuse every forecast: the start fails
    // (no shutdown asked: one asked at once would end the start before the model loads).
    let short = volcast_server::Config {
        max_candles: 100,
        insecure_no_auth: true,
        ..config.clone()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = volcast_server::run(short, listener, std::future::pending()).await;
    assert!(
        matches!(&refused, Err(volcast_server::ServeError::Limits(m)) if m.contains("--max-candles 100")),
        "{refused:?}"
    );
    // With --insecure-no-auth it starts (and stops at once).
    config.insecure_no_auth = true;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let served = volcast_server::run(config.clone(), listener, async {}).await;
    assert!(served.is_ok(), "{served:?}");
    // With a key in the store, a non-loopback address is fine without the flag.
    let store = store_in(dir.path()).await;
    store
        .create_key(&new_key("ops", &[Scope::Read], None, 0).unwrap().row)
        .await
        .unwrap();
    store.close().await;
    config.insecure_no_auth = false;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let served = volcast_server::run(config, listener, async {}).await;
    assert!(served.is_ok(), "{served:?}");
    // The signing key was made beside the store, readable by its owner only.
    assert!(dir.path().join("signing-key.pk8").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_cli_creates_lists_and_revokes_without_showing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("volcast.db").display());
    let keys = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keys"))
            .args(args)
            .args(["--database-url", &url])
            .output()
            .unwrap()
    };
    // Listing or revoking in a store that does not exist fails, and creates nothing.
    for args in [&["list"][..], &["revoke", "k0123456789ab"]] {
        let out = keys(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("no such file"),
            "{args:?}: {err}"
        );
        assert!(!dir.path().join("volcast.db").exists(), "{args:?}");
    }
    // A URL the store refuses is said once (the store's error quotes it already), without its
    // password.
    let out = Command::new(env!("CARGO_BIN_EXE_keys"))
        .args(["list", "--database-url", "postgress://u:s3cret@h/db"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unsupported"), "{err}");
    assert_eq!(err.matches("postgress://u:***@h/db").count(), 1, "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    // A key refused for its scopes creates no store either.
    assert!(
        !keys(&["create", "--name", "x", "--scopes", "write"])
            .status
            .success()
    );
    assert!(!dir.path().join("volcast.db").exists());
    let out = keys(&[
        "create",
        "--name",
        "risk-bot",
        "--scopes",
        "read,risk",
        "--rate-per-minute",
        "120",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The store did not exist: said, since no server may read the one this created.
    assert!(
        err.contains("there was no store at") && err.contains("this command created it"),
        "{err}"
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("vck_k"), "{token}");
    let (id, secret) = token["vck_".len()..].split_once('_').unwrap();
    let out = keys(&["list"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains(id) && listing.contains("read,risk") && listing.contains("120"));
    assert!(!listing.contains(secret), "the secret is never listed");
    let store = store_in(dir.path()).await;
    let rows = store.keys().await.unwrap();
    assert!(!rows[0].secret_sha256.contains(secret), "only the hash is stored");
    assert!(
        !keys(&["create", "--name", "x", "--scopes", "write"])
            .status
            .success()
    );
    // The whole key pasted is read as its id; its secret is never shown.
    let out = keys(&["revoke", &token]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains(id), "{err}");
    assert!(!err.contains(secret), "{err}");
    let out = keys(&["revoke", &token["vck_".len()..]]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "already revoked: {err}");
    assert!(err.contains(id) && !err.contains(secret), "{err}");
    assert!(!keys(&["revoke", id]).status.success(), "already revoked");
    assert!(store.keys().await.unwrap()[0].revoked.is_some());
    // In a store that exists, no such note.
    let again = keys(&["create", "--name", "second", "--scopes", "read"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success() && !err.contains("there was no store"),
        "{err}"
    );
}
