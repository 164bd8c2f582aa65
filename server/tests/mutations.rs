//! Random mutations of valid requests, on the committed default artifact (and its anomaly
//! detector) with a store holding a fresh asset: whatever a client sends, the service answers 2xx or 4xx in its error format,
//! never a 5xx, and every 200 keeps the contract's invariants (variances positive with their
//! square roots, RV quantiles increasing, probabilities in [0, 1], `0 <= max LTV <= LT <= 1`,
//! `LT (1 + LB) <= 1`). The table in `bad_input.rs` names the refusals one by one; this test
//! looks for what no table thought of. Seeded, so a failure replays: it prints the seed, the
//! route and the body.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use volcast_store::{CandleStore, Store};

/// Requests per route family: enough to reach the nested fields several times each.
const BODIES: usize = 3000;
const QUERIES: usize = 2000;

/// Placeholders serialised as JSON strings and then replaced by tokens `serde_json` cannot
/// write: non-finite numbers and numbers beyond `f64`.
const RAW_TOKENS: [(&str, &str); 4] = [
    ("\"__nan__\"", "NaN"),
    ("\"__inf__\"", "Infinity"),
    ("\"__big__\"", "1e309"),
    ("\"__neg_big__\"", "-1e309"),
];

fn weird(rng: &mut fastrand::Rng) -> Value {
    let pick = [
        Value::Null,
        json!(""),
        json!("x"),
        json!(-1),
        json!(0),
        json!(1),
        json!(2),
        json!(0.5),
        json!(1e308),
        json!(-1e308),
        json!(5e-324),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(3.7),
        json!([]),
        json!({}),
        json!([1]),
        json!({"a": 1}),
        json!(true),
        json!("\u{0}"),
        json!("é".repeat(3000)),
        json!("2021-01-01T00:00:00Z"),
        json!("9999-12-31T23:59:59Z"),
        json!(4),
        json!(24),
        json!(168),
        json!(1_000_000_000_000_i64),
        json!("__nan__"),
        json!("__inf__"),
        json!("__big__"),
        json!("__neg_big__"),
    ];
    pick[rng.usize(..pick.len())].clone()
}

/// Paths to the nodes of `v` (objects, arrays and leaves; at most three elements of an array).
fn nodes(v: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>, rng: &mut fastrand::Rng) {
    if !path.is_empty() {
        out.push(path.clone());
    }
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                path.push(Step::Key(k.clone()));
                nodes(x, path, out, rng);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for _ in 0..3 {
                let i = rng.usize(..items.len());
                path.push(Step::Index(i));
                nodes(&items[i], path, out, rng);
                path.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// One to three random changes: a node replaced by an odd value, removed, scaled, or (for an
/// array element) the array duplicated at it, cut, reversed or moved in time.
fn mutate(body: &Value, rng: &mut fastrand::Rng) -> Value {
    let mut b = body.clone();
    for _ in 0..[1, 1, 1, 2, 3][rng.usize(..5)] {
        let mut paths = Vec::new();
        nodes(&b, &mut Vec::new(), &mut paths, rng);
        if paths.is_empty() {
            break;
        }
        let path = paths.swap_remove(rng.usize(..paths.len()));
        let (last, parent) = path.split_last().unwrap();
        let op = rng.f64();
        let Some(parent) = at(&mut b, parent) else {
            continue;
        };
        match (last, parent) {
            (Step::Key(k), Value::Object(map)) if (0.55..0.7).contains(&op) => {
                map.remove(k);
            }
            (Step::Index(i), Value::Array(items)) if (0.55..0.8).contains(&op) => match rng.u8(..4) {
                0 => {
                    let copy = items[*i].clone();
                    items.insert(*i, copy);
                }
                1 => items.truncate(rng.usize(..items.len())),
                2 => items.reverse(),
                _ => {
                    let shift = [1, 3_600_000_i64 * 1_000_000, -1_000_000_000_000_000][rng.usize(..3)];
                    for c in items.iter_mut() {
                        if let Some(t) = c.get("open_time").and_then(Value::as_i64) {
                            c["open_time"] = json!(t.saturating_add(shift));
                        }
                    }
                }
            },
            (step, parent) => {
                let Some(node) = at(parent, std::slice::from_ref(step)) else {
                    continue;
                };
                if op >= 0.8
                    && let Some(x) = node.as_f64()
                {
                    *node = json!(x * [0.0, -1.0, 1e-12, 1e12, 1e300][rng.usize(..5)]);
                } else {
                    *node = weird(rng);
                }
            }
        }
    }
    b
}

fn raw_body(v: &Value, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut text = serde_json::to_string(v).unwrap();
    for (placeholder, token) in RAW_TOKENS {
        text = text.replace(placeholder, token);
    }
    // Now and then a body cut short.
    if rng.u8(..20) == 0 {
        let mut cut = rng.usize(..text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text.into_bytes()
}

/// What breaks the contract in a 200 answer, if anything.
fn broken_invariant(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => items.iter().find_map(broken_invariant),
        Value::Object(map) => {
            let num = |k: &str| map.get(k).and_then(Value::as_f64);
            if let (Some(var), Some(vol)) = (num("variance"), num("volatility"))
                && !(var > 0.0 && (var.sqrt() - vol).abs() <= 1e-9 * vol.max(1.0))
            {
                return Some(format!("variance {var}, volatility {vol}"));
            }
            if let Some(Value::Array(qs)) = map.get("quantiles") {
                let mut levels: Vec<(f64, f64)> = qs
                    .iter()
                    .filter_map(|q| Some((q["level"].as_f64()?, q["variance"].as_f64()?)))
                    .collect();
                levels.sort_by(|a, b| a.0.total_cmp(&b.0));
                if levels.windows(2).any(|w| w[1].1 < w[0].1) {
                    return Some(format!("quantiles not increasing: {levels:?}"));
                }
            }
            for k in ["shortage_probability", "baseline_shortage_probability"] {
                if let Some(p) = num(k)
                    && !(0.0..=1.0).contains(&p)
                {
                    return Some(format!("{k} {p}"));
                }
            }
            if let (Some(lt), Some(ltv)) = (num("liquidation_threshold"), num("max_ltv")) {
                let lb = num("liquidation_bonus").unwrap_or(0.0);
                // LB = 1 only where liquidation is blocked (LT = max LTV = 0), README "Routes".
                let bonus_ok = (0.0..1.0).contains(&lb) || (lb == 1.0 && lt == 0.0);
                let ordered = 0.0 <= ltv && ltv <= lt && lt <= 1.0;
                if !(ordered && bonus_ok) || lt * (1.0 + lb) > 1.0 + 1e-12 {
                    return Some(format!("LT {lt}, max LTV {ltv}, LB {lb}"));
                }
            }
            map.values().find_map(broken_invariant)
        }
        _ => None,
    }
}

#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u16, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, status: u16, body: &Value) {
        *self.by_status.entry(status).or_default() += 1;
        let failure = if status >= 500 {
            Some(format!("{status}: {body}"))
        } else if status >= 400 {
            let well_formed = body["error"].is_string() && body["message"].is_string();
            (!well_formed).then(|| format!("{status} not in the error format: {body}"))
        } else if status == 200 {
            broken_invariant(body).map(|why| format!("200 breaks an invariant: {why}"))
        } else {
            None
        };
        if let Some(f) = failure {
            let mut what = what.to_owned();
            what.truncate(600);
            self.failures.push(format!("{f}\n  request: {what}"));
        }
    }
}

async fn send(app: &axum::Router, method: &str, uri: &str, body: Vec<u8>) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, body, _) = common::raw(app, req).await;
    (status.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_get_an_answer_or_a_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("volcast.db").display()))
        .await
        .unwrap();
    let candles = common::sample_ending(1, 1000);
    store.insert_candles("FRESH", &candles).await.unwrap();
    let artifact = common::repo().join("model-artifacts/default");
    let state = common::state_with_store(&artifact, store, Duration::from_secs(7200)).await;
    let dir = state.serving().unwrap().info.dir.clone();
    volcast_server::install_detector(&state, &dir).unwrap();
    assert!(
        state.anomaly_scorer().is_some(),
        "the default artifact ships anomaly.json"
    );
    let app = volcast_server::app(state);

    let one: Value = json!({
        "asset": "FRESH",
        "candles": candles.iter().map(common::candle_json).collect::<Vec<_>>(),
    });
    let with = |extra: Value| {
        let mut b = one.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let valid: Vec<(&str, Value)> = vec![
        ("/v1/forecast/volatility", with(json!({"horizons": [4, 24, 168]}))),
        (
            "/v1/forecast/volatility",
            json!({"items": [one.clone(), with(json!({"asset": "OTHER"}))]}),
        ),
        ("/v1/forecast/liquidity", with(json!({"sale_size_usd": 1e6}))),
        (
            "/v1/risk/parameters",
            with(json!({"alpha": 0.99, "tau_hours": 4,
            "previous": {"liquidation_threshold": 0.8, "max_ltv": 0.7}})),
        ),
        (
            "/v1/risk/parameters",
            json!({"alpha": 0.95,
            "items": [with(json!({"previous": {"liquidation_threshold": 0.8}}))]}),
        ),
        ("/v1/risk/updates", with(json!({"alpha": 0.99}))),
        (
            "/v1/risk/stress",
            with(json!({"paths": 200, "horizon_hours": 24,
            "positions": [{"collateral": 100, "debt": 150_000},
                          {"collateral": 20, "debt": 20_000, "liquidation_threshold": 0.9}],
            "scenarios": [{"kind": "instant_drop", "pct": 30}]})),
        ),
        ("/v1/anomaly/scan", one.clone()),
    ];
    // Every valid body is served as it is.
    for (route, body) in &valid {
        let (status, answer) = send(&app, "POST", route, serde_json::to_vec(body).unwrap()).await;
        assert_eq!(status, 200, "{route}: {answer}");
        assert_eq!(broken_invariant(&answer), None, "{route}");
    }

    let seed = 48;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally::default();
    for _ in 0..BODIES {
        let (route, body) = &valid[rng.usize(..valid.len())];
        let body = raw_body(&mutate(body, &mut rng), &mut rng);
        let (status, answer) = send(&app, "POST", route, body.clone()).await;
        tally.check(
            &format!("POST {route} {}", String::from_utf8_lossy(&body)),
            status,
            &answer,
        );
    }

    let gets = [
        "/v1/assets/{a}/risk",
        "/v1/assets/{a}/risk/updates",
        "/v1/assets/{a}/forecast/volatility",
        "/v1/assets/{a}/forecast/liquidity",
        "/v1/assets/{a}/candles",
        "/v1/assets/{a}/anomalies",
        "/v1/decisions",
        "/v1/decisions/{a}",
        "/v1/model/validation",
    ];
    let params = [
        "from",
        "to",
        "all",
        "limit",
        "horizons",
        "sale_size_usd",
        "alpha",
        "tau_hours",
        "tau_user_hours",
        "bonus",
        "bonus_margin",
        "max_step",
        "previous_liquidation_threshold",
        "previous_max_ltv",
        "asset",
        "after",
        "bogus",
    ];
    let values = [
        "",
        "x",
        "-1",
        "0",
        "1",
        "0.99",
        "1e309",
        "NaN",
        "inf",
        "-inf",
        "4,24",
        "4,,24",
        "99999999999999999999",
        "2021-01-01T00:00:00Z",
        "2021-01-01",
        "true",
        "false",
        "%00",
        "1.5",
        "168",
        "4",
        "FRESH",
        "%2e%2e%2f",
        "%C3%A9",
        "%FF",
        "9999999999999999999999999999999",
        "9223372036854775807",
        "1900-01-01T00:00:00Z",
    ];
    let assets = [
        "FRESH", "FRESH", "NOPE", "%2F", "..", "%C3%A9", "%FF", "%00", "a%20b", "dec_00",
    ];
    for _ in 0..QUERIES {
        let mut uri = gets[rng.usize(..gets.len())].replace("{a}", assets[rng.usize(..assets.len())]);
        for i in 0..rng.usize(..4) {
            let sep = if i == 0 { '?' } else { '&' };
            let (p, v) = (
                params[rng.usize(..params.len())],
                values[rng.usize(..values.len())],
            );
            uri.push_str(&format!("{sep}{p}={v}"));
        }
        let (status, answer) = send(&app, "GET", &uri, Vec::new()).await;
        tally.check(&format!("GET {uri}"), status, &answer);
    }

    let n = |s: u16| tally.by_status.get(&s).copied().unwrap_or(0);
    let refused: usize = tally.by_status.range(400..500).map(|(_, c)| c).sum();
    eprintln!("seed {seed}: statuses {:?}", tally.by_status);
    assert!(
        tally.failures.is_empty(),
        "seed {seed}: {} of {} requests broke the contract; the first:\n{}",
        tally.failures.len(),
        BODIES + QUERIES,
        tally.failures[..tally.failures.len().min(5)].join("\n")
    );
    // Not vacuous: the mutations reach both sides, answers and refusals.
    let total = BODIES + QUERIES;
    assert!(n(200) * 20 >= total, "too few answers: {:?}", tally.by_status);
    assert!(refused * 3 >= total, "too few refusals: {:?}", tally.by_status);
}
