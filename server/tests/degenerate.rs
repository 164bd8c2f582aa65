//! The degenerate-market rule on real candles: flattening the last k hours of a real window (a
//! stalled feed: every price the last real close) never raises LT or max LTV above what the
//! real window gives; the route refuses it (422 `degenerate_market`) instead. Also one pinned
//! hour inside the last day, and an hour without volume. BTC, ETH and DOGE from the shared data,
//! served by the committed default artifact.

mod common;

use std::path::PathBuf;

use serde_json::{Value, json};
use volcast_core::candles::Candle;

/// The shared hourly candles, or None (with a message) where they are absent.
fn shared() -> Option<PathBuf> {
    let dir = common::repo().join("../shared/data/binance-spot-1h");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("VOLCAST_REQUIRE_SHARED_DATA").is_none(),
        "VOLCAST_REQUIRE_SHARED_DATA is set but {} is absent",
        dir.display()
    );
    eprintln!("skipping: {} is absent", dir.display());
    None
}

fn body(asset: &str, candles: &[Candle]) -> Value {
    let candles: Vec<Value> = candles.iter().map(common::candle_json).collect();
    json!({"asset": asset, "candles": candles})
}

/// The last `k` candles stalled at the close before them (their volumes kept).
fn flattened(window: &[Candle], k: usize) -> Vec<Candle> {
    let mut out = window.to_vec();
    let n = out.len();
    let price = out[n - k - 1].close;
    for c in &mut out[n - k..] {
        (c.open, c.high, c.low, c.close) = (price, price, price, price);
    }
    out
}

#[tokio::test]
async fn flattened_windows_never_loosen_the_parameters() {
    let Some(data) = shared() else { return };
    let (app, need) = common::app_on(&common::repo().join("model-artifacts")).await;

    let mut checked = 0;
    for asset in ["BTCUSDT", "ETHUSDT", "DOGEUSDT"] {
        let all = volcast_training::data::read_file(&data.join(format!("{asset}.csv.gz"))).unwrap();
        // Windows ending on the last candle of several days of 2020 and 2021.
        for end in [
            all.len() - 1,
            all.len() - 2_000,
            all.len() - 6_000,
            all.len() - 9_000,
        ] {
            let window = &all[end + 1 - (need + 48)..=end];
            let (s, real, _) =
                common::call(&app, "POST", "/v1/risk/parameters", Some(&body(asset, window))).await;
            if s != 200 {
                // A real window refused as it is (an exchange stall, or too many missing hours):
                // nothing to loosen.
                assert!(s.is_client_error(), "{asset}: {real}");
                continue;
            }
            checked += 1;
            let p = &real["items"][0]["parameters"];
            let (lt, ltv) = (
                p["liquidation_threshold"].as_f64().unwrap(),
                p["max_ltv"].as_f64().unwrap(),
            );
            for k in [1, 2, 6, 12, 24, 48, 200] {
                let stalled = flattened(window, k);
                let (s, v, _) =
                    common::call(&app, "POST", "/v1/risk/parameters", Some(&body(asset, &stalled))).await;
                if s.is_client_error() {
                    assert_eq!(v["error"], "degenerate_market", "{asset} k={k}: {v}");
                    assert_eq!(
                        v["field"],
                        format!("candles[{}]", stalled.len() - 1),
                        "{asset} k={k}"
                    );
                    continue;
                }
                let q = &v["items"][0]["parameters"];
                assert!(
                    q["liquidation_threshold"].as_f64().unwrap() <= lt
                        && q["max_ltv"].as_f64().unwrap() <= ltv,
                    "{asset} k={k}: flattening loosened {p} to {q}"
                );
            }
            // One pinned hour inside the last day, or one hour without volume, is no evidence of
            // calm either.
            let mut pinned = window.to_vec();
            let i = pinned.len() - 10;
            let c = &mut pinned[i];
            (c.open, c.high, c.low) = (c.close, c.close, c.close);
            let (s, v, _) =
                common::call(&app, "POST", "/v1/risk/parameters", Some(&body(asset, &pinned))).await;
            assert_eq!(
                (s.as_u16(), v["field"].as_str()),
                (422, Some(format!("candles[{i}]").as_str())),
                "{v}"
            );
            let mut silent = window.to_vec();
            silent[i].quote_volume = 0.0;
            silent[i].volume = 0.0;
            let (s, v, _) =
                common::call(&app, "POST", "/v1/risk/parameters", Some(&body(asset, &silent))).await;
            assert_eq!(
                (s.as_u16(), v["error"].as_str()),
                (422, Some("degenerate_market")),
                "{v}"
            );
        }
    }
    assert!(checked >= 8, "only {checked} real windows were served to flatten");
}
