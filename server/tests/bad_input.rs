//! Bad input, in-process on a fake model: the table of refused bodies (status, code, field),
//! malformed and oversized numbers, non-finite forecasts failing closed, unknown fields, and
//! the rules on history, origins and quote volumes.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{app, call, config, raw, single, with_quote_volume};
use serde_json::{Value, json};

const N: usize = 900;

type Mutate = fn(&mut Value);
type Case = (
    &'static str,
    &'static str,
    Mutate,
    u16,
    &'static str,
    Option<&'static str>,
);

/// The bad-input table: (case, route, change to a valid single body, status, code, field).
fn cases() -> Vec<Case> {
    vec![
        (
            "missing candles",
            "/v1/forecast/volatility",
            |b| {
                b.as_object_mut().unwrap().remove("candles");
            },
            422,
            "missing_field",
            Some("candles"),
        ),
        (
            "missing asset",
            "/v1/forecast/volatility",
            |b| {
                b.as_object_mut().unwrap().remove("asset");
            },
            422,
            "missing_field",
            Some("asset"),
        ),
        (
            "missing high",
            "/v1/forecast/volatility",
            |b| {
                b["candles"][17].as_object_mut().unwrap().remove("high");
            },
            422,
            "missing_field",
            Some("candles[17].high"),
        ),
        (
            "string price",
            "/v1/forecast/liquidity",
            |b| b["candles"][3]["close"] = json!("1.0"),
            422,
            "invalid_value",
            Some("candles[3].close"),
        ),
        (
            "a horizon asked twice",
            "/v1/forecast/volatility",
            |b| b["horizons"] = json!([4, 24, 4]),
            422,
            "invalid_value",
            Some("horizons[2]"),
        ),
        (
            "a sale size on the volatility route",
            "/v1/forecast/volatility",
            |b| b["sale_size_usd"] = json!(-5.0),
            422,
            "invalid_value",
            Some("sale_size_usd"),
        ),
        (
            "zero price",
            "/v1/forecast/volatility",
            |b| b["candles"][9]["low"] = json!(0.0),
            422,
            "non_positive_price",
            Some("candles[9].low"),
        ),
        (
            "negative price",
            "/v1/risk/parameters",
            |b| b["candles"][9]["open"] = json!(-1.0),
            422,
            "non_positive_price",
            Some("candles[9].open"),
        ),
        (
            "high below low",
            "/v1/forecast/volatility",
            |b| {
                let low = b["candles"][17]["low"].as_f64().unwrap();
                b["candles"][17]["high"] = json!(low * 0.5);
            },
            422,
            "high_below_low",
            Some("candles[17].high"),
        ),
        (
            "close outside",
            "/v1/forecast/volatility",
            |b| {
                let h = b["candles"][2]["high"].as_f64().unwrap();
                b["candles"][2]["close"] = json!(h * 2.0);
            },
            422,
            "close_outside_range",
            Some("candles[2].close"),
        ),
        (
            "negative volume",
            "/v1/forecast/volatility",
            |b| b["candles"][4]["volume"] = json!(-1.0),
            422,
            "negative_volume",
            Some("candles[4].volume"),
        ),
        (
            "unsorted",
            "/v1/forecast/volatility",
            |b| {
                let c = b["candles"].as_array_mut().unwrap();
                c.swap(10, 11);
            },
            422,
            "unsorted_timestamps",
            Some("candles[11].open_time"),
        ),
        (
            "duplicate",
            "/v1/forecast/volatility",
            |b| {
                let t = b["candles"][10]["open_time"].clone();
                b["candles"][11]["open_time"] = t;
            },
            422,
            "duplicate_timestamp",
            Some("candles[11].open_time"),
        ),
        (
            "not on the hour",
            "/v1/forecast/volatility",
            |b| b["candles"][0]["open_time"] = json!(1_704_067_200_001_i64),
            422,
            "not_on_the_hour",
            Some("candles[0].open_time"),
        ),
        (
            "too few candles",
            "/v1/forecast/volatility",
            |b| {
                b["candles"].as_array_mut().unwrap().truncate(100);
            },
            422,
            "too_few_candles",
            Some("candles"),
        ),
        (
            "unknown horizon",
            "/v1/forecast/volatility",
            |b| b["horizons"] = json!([4, 12]),
            422,
            "unknown_horizon",
            Some("horizons[1]"),
        ),
        (
            "empty horizons",
            "/v1/forecast/liquidity",
            |b| b["horizons"] = json!([]),
            422,
            "invalid_value",
            Some("horizons"),
        ),
        (
            "alpha one",
            "/v1/risk/parameters",
            |b| b["alpha"] = json!(1.0),
            422,
            "out_of_range",
            Some("alpha"),
        ),
        (
            "alpha zero",
            "/v1/risk/parameters",
            |b| b["alpha"] = json!(0.0),
            422,
            "out_of_range",
            Some("alpha"),
        ),
        (
            "tau zero",
            "/v1/risk/parameters",
            |b| b["tau_hours"] = json!(0),
            422,
            "out_of_range",
            Some("tau_hours"),
        ),
        (
            "negative sale",
            "/v1/forecast/liquidity",
            |b| b["sale_size_usd"] = json!(-5),
            422,
            "out_of_range",
            Some("sale_size_usd"),
        ),
        (
            "previous above one",
            "/v1/risk/parameters",
            |b| b["previous"] = json!({"liquidation_threshold": 1.5}),
            422,
            "out_of_range",
            Some("previous.liquidation_threshold"),
        ),
        (
            "a step bound with nothing to bound",
            "/v1/risk/parameters",
            |b| b["max_step"] = json!(0.02),
            422,
            "invalid_value",
            Some("max_step"),
        ),
        (
            "a step bound with nothing to bound, as updates",
            "/v1/risk/updates",
            |b| b["max_step"] = json!(0.02),
            422,
            "invalid_value",
            Some("max_step"),
        ),
        (
            "a previous with neither value",
            "/v1/risk/parameters",
            |b| b["previous"] = json!({}),
            422,
            "invalid_value",
            Some("previous"),
        ),
        (
            "unknown field",
            "/v1/risk/parameters",
            |b| b["alpah"] = json!(0.9),
            422,
            "invalid_value",
            Some("alpah"),
        ),
        (
            "both shapes",
            "/v1/forecast/volatility",
            |b| b["items"] = json!([]),
            422,
            "invalid_shape",
            None,
        ),
        (
            "neither shape",
            "/v1/forecast/volatility",
            |b| *b = json!({}),
            422,
            "invalid_shape",
            None,
        ),
        (
            "empty batch",
            "/v1/forecast/volatility",
            |b| *b = json!({"items": []}),
            422,
            "empty_batch",
            Some("items"),
        ),
        (
            "bad item in batch",
            "/v1/risk/parameters",
            |b| {
                let mut bad = b.clone();
                bad["candles"][7]["high"] = json!(0.001);
                *b = json!({"items": [b.clone(), bad]});
            },
            422,
            "high_below_low",
            Some("items[1].candles[7].high"),
        ),
        (
            "empty asset",
            "/v1/forecast/volatility",
            |b| b["asset"] = json!(""),
            422,
            "invalid_value",
            Some("asset"),
        ),
        (
            "too many items",
            "/v1/forecast/volatility",
            |b| {
                let one = b.clone();
                *b = json!({"items": vec![one; 65]});
            },
            413,
            "batch_too_large",
            Some("items"),
        ),
    ]
}

#[tokio::test]
async fn bad_input_table() {
    let app = app();
    let valid = single(N);
    for (name, route, mutate, status, code, field) in cases() {
        let mut body = valid.clone();
        mutate(&mut body);
        let (s, v, _) = call(&app, "POST", route, Some(&body)).await;
        assert_eq!(s.as_u16(), status, "{name}: {v}");
        assert_eq!(v["error"], code, "{name}: {v}");
        if let Some(f) = field {
            assert_eq!(v["field"], f, "{name}: {v}");
        }
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}: {v}"
        );
    }
}

#[tokio::test]
async fn malformed_bodies_get_our_error_format() {
    let app = app();
    let send = |body: &'static str, ct: Option<&'static str>| {
        let mut req = Request::builder().method("POST").uri("/v1/forecast/volatility");
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.body(Body::from(body)).unwrap()
    };
    let (s, v, _) = raw(&app, send("{\"asset\": ", Some("application/json"))).await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (400, Some("malformed_json")));
    let (s, v, _) = raw(&app, send("not json", Some("application/json"))).await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (400, Some("malformed_json")));
    let (s, v, _) = raw(&app, send("{}", None)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (s, v, _) = raw(&app, send("{}", Some("text/plain"))).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    // An encoded body is refused as such (a gzip body read as malformed JSON; a plain one sent
    // under the header read as if it were not there); `identity` is no encoding.
    for (encoding, status) in [
        ("gzip", 415),
        ("br", 415),
        ("identity, gzip", 415),
        ("identity", 422),
    ] {
        let req = Request::builder()
            .method("POST")
            .uri("/v1/forecast/volatility")
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(Body::from("{}"))
            .unwrap();
        let (s, v, _) = raw(&app, req).await;
        assert_eq!(s.as_u16(), status, "{encoding}: {v}");
        if status == 415 {
            assert!(
                v["message"]
                    .as_str()
                    .unwrap()
                    .contains("send the JSON body unencoded"),
                "{v}"
            );
        }
    }
    let (s, v, _) = call(&app, "GET", "/v1/nope", None).await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (404, Some("not_found")));
    let (s, v, headers) = call(&app, "GET", "/v1/risk/parameters", None).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert_eq!(headers.get("allow").map(|a| a.to_str().unwrap()), Some("POST"));
    // A query on a route that reads none is refused, not ignored (here it would have answered
    // every horizon).
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/forecast/volatility?horizons=4",
        Some(&single(N)),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
        (400, Some("invalid_query"), Some("horizons")),
        "{v}"
    );
    let (s, v, _) = call(&app, "GET", "/v1/model?verbose", None).await;
    assert_eq!((s.as_u16(), v["field"].as_str()), (400, Some("verbose")), "{v}");
    let (s, v, _) = call(&app, "GET", "/v1/model?", None).await;
    assert_eq!(s.as_u16(), 200, "an empty query is none: {v}");
}

#[tokio::test]
async fn out_of_range_numbers_and_gappy_history() {
    let app = app();
    // A valid single body's text with `from` replaced by `to` (numbers serde_json cannot
    // write), posted to `uri`: the status, code and field.
    let post_text = |uri: &'static str, from: &'static str, to: &'static str| {
        let app = app.clone();
        async move {
            let text = serde_json::to_string(&single(N)).unwrap().replacen(from, to, 1);
            let req = Request::builder()
                .method("POST")
                .uri(uri)
                .header("content-type", "application/json")
                .body(Body::from(text))
                .unwrap();
            let (s, v, _) = raw(&app, req).await;
            (
                s.as_u16(),
                v["error"].as_str().map(str::to_owned),
                v["field"].as_str().map(str::to_owned),
            )
        }
    };
    let got = post_text("/v1/forecast/volatility", "\"high\":", "\"high\":1e999,\"x\":").await;
    assert_eq!(
        got,
        (422, Some("non_finite".into()), Some("candles[0].high".into()))
    );
    // Outside a candle, a number too large for a float is a setting out of range, as the same
    // value in a query string is.
    let got = post_text("/v1/risk/parameters", "{", "{\"alpha\":1e999,").await;
    assert_eq!(got, (422, Some("out_of_range".into()), Some("alpha".into())));

    // Enough candles, but 100 missing hours inside the last 720: RV720 lacks its 648 returns.
    let mut body = single(1000);
    body["candles"].as_array_mut().unwrap().drain(850..950);
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&body)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
        (422, Some("insufficient_history"), Some("candles")),
        "{v}"
    );
}

const ROUTES: [&str; 3] = [
    "/v1/forecast/volatility",
    "/v1/forecast/liquidity",
    "/v1/risk/parameters",
];

#[tokio::test]
async fn non_finite_forecasts_fail_closed() {
    // A model answering NaN is never served: no null variance, no lenient LT.
    let nan = common::app_predicting(Box::new(common::NanFake), &config());
    for route in ROUTES {
        let (s, v, _) = call(&nan, "POST", route, Some(&single(N))).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
            (422, Some("unusable_input"), Some("candles")),
            "{route}: {v}"
        );
        assert!(v["message"].as_str().unwrap().contains("SYNTH01"), "{v}");
    }
    let batch = json!({"items": [single(N), single(N)]});
    let (s, v, _) = call(&nan, "POST", "/v1/risk/parameters", Some(&batch)).await;
    assert_eq!(
        (s.as_u16(), v["field"].as_str()),
        (422, Some("items[0].candles")),
        "{v}"
    );
    // Quote volumes of 1e307 pass the candle rules but overflow the features.
    let app = app();
    for route in ROUTES {
        let (s, v, _) = call(&app, "POST", route, Some(&with_quote_volume(N, 1e307))).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str()),
            (422, Some("unusable_input")),
            "{route}: {v}"
        );
    }
}

#[tokio::test]
async fn unknown_fields_and_arrays_for_objects_are_rejected() {
    let app = app();
    let valid = single(N);
    let item = |f: fn(&mut Value)| {
        let mut v = valid.clone();
        f(&mut v);
        v
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/risk/parameters",
            json!({"items": [item(|v| v["previus"] = json!({"liquidation_threshold": 0.5}))]}),
            "items[0].previus",
        ),
        (
            "/v1/risk/parameters",
            json!({"items": [item(|v| v["previous"] = json!({"liquidation_treshold": 0.5}))]}),
            "items[0].previous.liquidation_treshold",
        ),
        (
            "/v1/forecast/volatility",
            json!({"items": [item(|v| v["horizon"] = json!(4))]}),
            "items[0].horizon",
        ),
        (
            "/v1/forecast/volatility",
            item(|v| v["candles"][5]["quote_volum"] = json!(1.0)),
            "candles[5].quote_volum",
        ),
        (
            "/v1/forecast/volatility",
            item(|v| {
                let c = v["candles"][5].clone();
                v["candles"][5] = json!([
                    c["open_time"],
                    c["open"],
                    c["high"],
                    c["low"],
                    c["close"],
                    c["volume"],
                    c["quote_volume"]
                ]);
            }),
            "candles[5]",
        ),
        (
            "/v1/risk/parameters",
            json!({"items": [[valid["asset"], valid["candles"]]]}),
            "items[0]",
        ),
        (
            "/v1/risk/parameters",
            item(|v| v["previous"] = json!([0.5, 0.4])),
            "previous",
        ),
    ];
    for (route, body, field) in cases {
        let (s, v, _) = call(&app, "POST", route, Some(&body)).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
            (422, Some("invalid_value"), Some(field)),
            "{v}"
        );
    }
    // A body that is an array, not an object.
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/forecast/volatility",
        Some(&json!([null, null, null])),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
        (422, Some("invalid_value"), Some("body")),
        "{v}"
    );
}

#[tokio::test]
async fn alpha_and_windows_stay_where_the_drawdown_is_defined() {
    let app = app();
    for (key, value, ok) in [
        ("alpha", 0.5, false),
        ("alpha", 0.3, false),
        ("alpha", 0.99999, false),
        ("alpha", 0.9999, true),
        ("alpha", 0.51, true),
        ("tau_hours", 169.0, false),
        ("tau_hours", 168.0, true),
        ("tau_user_hours", 169.0, false),
        ("tau_user_hours", 168.0, true),
    ] {
        let mut body = single(N);
        body[key] = json!(value);
        let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
        if ok {
            assert_eq!(s, StatusCode::OK, "{key} = {value}: {v}");
        } else {
            assert_eq!(
                (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
                (422, Some("out_of_range"), Some(key)),
                "{key} = {value}: {v}"
            );
        }
    }
}

#[tokio::test]
async fn origin_is_rfc3339_and_open_times_are_bounded() {
    let app = app();
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&single(N))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let origin = v["items"][0]["origin"].as_str().unwrap();
    // 900 candles from 2024-01-01T00:00Z: the last closes 900 h later, 2024-02-07T12:00Z.
    assert_eq!(origin, "2024-02-07T12:00:00Z");
    for t in [-1_i64, 1_000_000_000_000, 4_102_444_800_000, i64::MAX - 3_600_000] {
        let mut body = single(N);
        let last = N - 1;
        body["candles"][last]["open_time"] = json!(t);
        let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&body)).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
            (422, Some("out_of_range"), Some("candles[899].open_time")),
            "{t}: {v}"
        );
    }
}

/// A last candle that is still forming (it closes after now) is refused, naming it; the hour
/// before, closed, is served.
#[tokio::test]
async fn a_forming_last_candle_is_refused() {
    let app = app();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let now = i64::try_from(now).unwrap();
    let hour = 3_600_000_i64;
    let shifted = |last_open: i64| {
        let mut body = single(N);
        let candles = body["candles"].as_array_mut().unwrap();
        let shift = last_open - candles[N - 1]["open_time"].as_i64().unwrap();
        for c in candles.iter_mut() {
            c["open_time"] = json!(c["open_time"].as_i64().unwrap() + shift);
        }
        body
    };
    let mut this_hour = now - now.rem_euclid(hour);
    // Away from the turn of the hour, so the hour does not change under the test (or fall in
    // the 10 s margin).
    if now.rem_euclid(hour) > hour - 30_000 {
        tokio::time::sleep(std::time::Duration::from_millis(
            u64::try_from(hour - now.rem_euclid(hour) + 1_000).unwrap(),
        ))
        .await;
        this_hour += hour;
    }
    let body = shifted(this_hour);
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&body)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
        (422, Some("invalid_value"), Some("candles[899].open_time")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("still forming"), "{v}");
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/forecast/volatility",
        Some(&shifted(this_hour - hour)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn insufficient_history_names_the_window_that_fails() {
    let app = app();
    // Two missing hours just before the last candle: the 24-hour window fails, not the 720.
    let mut body = single(N);
    body["candles"].as_array_mut().unwrap().drain(N - 3..N - 1);
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&body)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (422, Some("insufficient_history")),
        "{v}"
    );
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("24-hour") && m.contains("22"), "{m}");
    // 100 missing hours inside the last 168: the 168-hour window.
    let mut body = single(1000);
    body["candles"].as_array_mut().unwrap().drain(850..950);
    let (_, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&body)).await;
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("168-hour") && m.contains("152"), "{m}");
    // 80 missing hours inside the last 720, none in the last 168: the 720-hour window.
    let mut body = single(1000);
    body["candles"].as_array_mut().unwrap().drain(400..480);
    let (_, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&body)).await;
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("720-hour") && m.contains("648"), "{m}");
}

#[tokio::test]
async fn implausible_quote_volumes_are_refused() {
    let app = app();
    let base = single(N)["candles"][N - 1]["quote_volume"].as_f64().unwrap();
    // A spike of 1e4 times (real markets reach about 6e3) is served.
    let mut body = single(N);
    body["candles"][N - 1]["quote_volume"] = json!(base * 1e4);
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // One fat-fingered candle a million times too large, or too small, is refused by name, on
    // every route, before it can move the forecasts.
    for (k, route) in [
        (1e6, "/v1/risk/parameters"),
        (1e-10, "/v1/forecast/volatility"),
        (1e20, "/v1/forecast/liquidity"),
    ] {
        let mut body = single(N);
        body["candles"][N - 5]["quote_volume"] = json!(base * k);
        let (s, v, _) = call(&app, "POST", route, Some(&body)).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
            (422, Some("implausible_volume"), Some("candles[895].quote_volume")),
            "{k} {route}: {v}"
        );
    }
    // In a batch the path names the item; zero volume (an hour without trades) is no implausible
    // volume (before the last day, where the degenerate-market rule would refuse it).
    let mut item = single(N);
    item["candles"][N - 100]["quote_volume"] = json!(0.0);
    let mut bad = single(N);
    bad["candles"][20]["quote_volume"] = json!(base * 1e9);
    let body = json!({"items": [item, bad]});
    let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&body)).await;
    assert_eq!(
        (s.as_u16(), v["field"].as_str()),
        (422, Some("items[1].candles[20].quote_volume")),
        "{v}"
    );
}

/// Quote volumes all tiny and alike pass the median check, but an hour's illiquidity `|r| / qv`
/// overflows below about 1e-302 and a non-finite illiquidity read as unknown: the window would
/// have been served as perfectly liquid (the bonus at its floor). A positive quote volume below
/// 1e-12 is refused, on every route; SPEC's optional `trades` is accepted (and not used); an
/// asset id's limit is 64 characters, not bytes.
#[tokio::test]
async fn tiny_quote_volumes_trades_and_wide_asset_ids() {
    let app = app();
    for route in [
        "/v1/risk/parameters",
        "/v1/forecast/volatility",
        "/v1/forecast/liquidity",
    ] {
        let (s, v, _) = call(&app, "POST", route, Some(&with_quote_volume(N, 1e-310))).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str()),
            (422, Some("out_of_range")),
            "{route}: {v}"
        );
        assert!(v["field"].as_str().unwrap().ends_with("].quote_volume"), "{v}");
    }
    let mut with_trades = single(N);
    for c in with_trades["candles"].as_array_mut().unwrap() {
        c["trades"] = json!(1234);
    }
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&with_trades)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, plain, _) = call(&app, "POST", "/v1/risk/parameters", Some(&single(N))).await;
    assert_eq!(
        v["items"][0]["parameters"], plain["items"][0]["parameters"],
        "trades are not used"
    );
    for (asset, status) in [("Ä".repeat(64), 200), ("Ä".repeat(65), 422)] {
        let mut body = single(N);
        body["asset"] = json!(asset);
        let (s, v, _) = call(&app, "POST", "/v1/forecast/volatility", Some(&body)).await;
        assert_eq!(s.as_u16(), status, "{v}");
    }
}

/// The history rule counts hours spanned, not candles: a window with one hour missing inside is
/// judged by SPEC's 90% rule and served, with the answer the same window padded by an older,
/// unused candle gets; a window spanning one hour too few is refused.
#[tokio::test]
async fn a_window_with_a_missing_hour_is_judged_by_its_span() {
    let app = app();
    let need = 889;
    let full = single(N);
    let last: Vec<Value> = full["candles"].as_array().unwrap()[N - need..].to_vec();
    let mut gapped = last.clone();
    gapped.remove(400);
    let mut body = full.clone();
    body["candles"] = json!(gapped);
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut padded = gapped.clone();
    padded.insert(0, full["candles"][0].clone());
    body["candles"] = json!(padded);
    let (s, p, _) = call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(v["items"][0], p["items"][0]);
    body["candles"] = json!(last[1..].to_vec());
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&body)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (422, Some("too_few_candles")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("spans 888 hours"), "{v}");
}

/// `max_step` bounds the change from previous values: in a batch it is answered where any item
/// gives one (the others are unbounded, as a single item without `previous` is), and refused
/// where none does; an item's `previous` with neither value is refused by its path; the checks
/// of the settings and of the shape come first. (The asset route's query: `assets.rs`.)
#[tokio::test]
async fn a_step_bound_needs_a_previous_value_somewhere() {
    let app = app();
    let valid = single(N);
    let item = |previous: Value| {
        let mut v = valid.clone();
        if !previous.is_null() {
            v["previous"] = previous;
        }
        v
    };
    let batch = |previous: [Value; 2]| {
        let [a, b] = previous;
        json!({"items": [item(a), item(b)], "max_step": 0.02})
    };
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/risk/parameters",
        Some(&batch([Value::Null, json!({"max_ltv": 0.5})])),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"][0]["derivation"]["max_step"], Value::Null, "{v}");
    assert_eq!(v["items"][1]["derivation"]["max_step"], json!(0.02), "{v}");
    for (previous, field) in [
        ([Value::Null, Value::Null], "max_step"),
        ([json!({"max_ltv": 0.5}), json!({})], "items[1].previous"),
    ] {
        let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&batch(previous))).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
            (422, Some("invalid_value"), Some(field)),
            "{v}"
        );
    }
    // The settings' range first, and a top-level `previous` beside `items` is a shape error.
    let mut wide = batch([Value::Null, Value::Null]);
    wide["max_step"] = json!(5);
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&wide)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str(), v["field"].as_str()),
        (422, Some("out_of_range"), Some("max_step")),
        "{v}"
    );
    let mut both = batch([Value::Null, Value::Null]);
    both["previous"] = json!({"max_ltv": 0.5});
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&both)).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (422, Some("invalid_shape")),
        "{v}"
    );
    // Without `max_step` a batch with no previous value is the plain answer.
    let mut plain = batch([Value::Null, Value::Null]);
    plain.as_object_mut().unwrap().remove("max_step");
    let (s, v, _) = call(&app, "POST", "/v1/risk/parameters", Some(&plain)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
