//! One risk policy: the same candles and settings give the same parameters from
//! `POST /v1/risk/parameters`, from the forecast scenario of `POST /v1/risk/stress`, and from the
//! `stress` command's function (`volcast_training::stress_session`), to the last digit, for a
//! sale that can be liquidated and for one whose slippage is `>= 1`, with the market asset
//! (BTCUSDT) beside the asset in the command's data. The committed default artifact serves all
//! three.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use serde_json::{Value, json};
use volcast_core::candles::Candle;
use volcast_core::policy::{AskedSettings, FLAG_NAMES, RiskSettings};
use volcast_core::stress::{self, Book, Position, Scenario};
use volcast_core::time::HOUR_MS;
use volcast_training::data::{read_file, write_csv};
use volcast_training::stress_session::{Request, prepare};

const HORIZON: usize = 48;

/// The last `n` candles of the committed sample asset.
fn sample_candles(n: usize) -> Vec<Candle> {
    let all = read_file(&common::repo().join("data/sample/SYNTH01.csv.gz")).unwrap();
    all[all.len() - n..].to_vec()
}

/// The parameters the three callers give, in one order: LT, max LTV, LB, maintenance and initial
/// margins, and whether the sale is blocked.
#[derive(Debug, PartialEq)]
struct Answer {
    numbers: [f64; 5],
    blocked: bool,
}

fn numbers(v: &Value) -> [f64; 5] {
    [
        "liquidation_threshold",
        "max_ltv",
        "liquidation_bonus",
        "maintenance_margin",
        "initial_margin",
    ]
    .map(|k| v[k].as_f64().unwrap())
}

#[tokio::test]
async fn route_stress_route_and_cli_give_the_same_parameters() {
    let artifact = common::repo().join("model-artifacts/default");
    let (app, history) = common::app_on(&artifact).await;

    // The request carries a day more than the model needs; the server keeps the last
    // `history` hours, which is what the command is given.
    let candles = sample_candles(history + 24);
    let last = candles.last().unwrap().open_time;
    let from = last - (i64::try_from(history).unwrap() - 1) * HOUR_MS;
    let kept: Vec<Candle> = candles.iter().filter(|c| c.open_time >= from).copied().collect();
    let dir = tempfile::tempdir().unwrap();
    write_csv(&dir.path().join("SYNTH01.csv"), &kept).unwrap();
    // The market asset beside it (its own prices): the command loads it for its replay windows,
    // and must not give the forecast its market factor, which the server never does.
    let market: Vec<Candle> = kept
        .iter()
        .zip((-3..=3).cycle())
        .map(|(c, k)| {
            let f = 30.0 * (1.0 + 0.01 * f64::from(k));
            Candle {
                open: c.open * f,
                high: c.high * f * 1.002,
                low: c.low * f * 0.998,
                close: c.close * f,
                ..*c
            }
        })
        .collect();
    write_csv(&dir.path().join("BTCUSDT.csv"), &market).unwrap();
    let body_candles: Vec<Value> = candles.iter().map(common::candle_json).collect();

    // A sale the market absorbs, and one whose slippage is far above 1.
    for sale in [1e5, 1e12] {
        let settings = json!({"alpha": 0.99, "tau_hours": 6.0, "tau_user_hours": 24.0, "bonus": 0.05,
                              "bonus_margin": 0.01, "sale_size_usd": sale});
        let mut risk_body = json!({"asset": "SYNTH01", "candles": body_candles});
        let mut stress_body = json!({"asset": "SYNTH01", "candles": body_candles, "paths": 64,
                                     "horizon_hours": HORIZON, "positions": [{"collateral": 1.0, "debt": 1.0}],
                                     "scenarios": [{"kind": "forecast"}]});
        for (k, v) in settings.as_object().unwrap() {
            risk_body[k] = v.clone();
            stress_body[k] = v.clone();
        }

        let (status, risk, _) = common::call(&app, "POST", "/v1/risk/parameters", Some(&risk_body)).await;
        assert_eq!(status, 200, "{risk}");
        let item = &risk["items"][0];
        let route = Answer {
            numbers: numbers(&item["parameters"]),
            blocked: !item["derivation"]["liquidation_blocked"].is_null(),
        };

        let (status, stressed, _) = common::call(&app, "POST", "/v1/risk/stress", Some(&stress_body)).await;
        assert_eq!(status, 200, "{stressed}");
        let scenario = &stressed["scenarios"][0];
        let stress_route = Answer {
            numbers: numbers(&scenario["recommended"]),
            blocked: scenario["liquidation_blocked"].as_bool().unwrap(),
        };

        let asked = AskedSettings {
            alpha: Some(0.99),
            tau: Some(6.0),
            tau_user: Some(24.0),
            bonus: Some(0.05),
            bonus_margin: Some(0.01),
            sale_size_usd: Some(sale),
            max_step: None,
        };
        let risk_settings = RiskSettings::resolve(&asked, &RiskSettings::default(), &FLAG_NAMES).unwrap();
        let prepared = prepare(&Request {
            dirs: vec![dir.path().to_owned()],
            asset: "SYNTH01".into(),
            model: artifact.clone(),
            at_ms: None,
            horizon: HORIZON,
            settings: risk_settings,
            paths: 64,
            seed: 1,
            df: stress::DEFAULT_DF,
        })
        .unwrap();
        let book = Book {
            positions: vec![Position {
                collateral: 1.0,
                debt: 1.0,
                liquidation_threshold: None,
            }],
            default_liquidation_threshold: stress::DEFAULT_LIQUIDATION_THRESHOLD,
        };
        let reports = prepared
            .run(&book, &[Scenario::Forecast], &risk_settings, &stress::simulate)
            .unwrap();
        let r = &reports[0].recommendation;
        let cli = Answer {
            numbers: [
                r.liquidation_threshold,
                r.max_ltv,
                r.liquidation_bonus,
                r.maintenance_margin,
                r.initial_margin,
            ],
            blocked: r.liquidation_blocked,
        };

        assert_eq!(route, stress_route, "sale {sale}: route vs stress route");
        assert_eq!(route, cli, "sale {sale}: route vs the stress command");
        assert_eq!(route.blocked, sale > 1e6, "sale {sale}: {route:?}");
        if route.blocked {
            assert_eq!(
                route.numbers[..2],
                [0.0, 0.0],
                "a blocked sale gives LT = max LTV = 0"
            );
        }
    }
}

/// The served forecast is `evaluate`'s without the market factor, to rounding: the routes on
/// an asset's candles (posted alone, posted in a batch beside BTCUSDT's, and stored beside
/// BTCUSDT's) against `LoadedModel::without_market` on a panel that also holds BTCUSDT (whose
/// market factor `evaluate` gives by default). Variances and shortage probabilities alike. With
/// the market factor the evaluated forecast differs, so a route that took BTC's market from the
/// batch or the store would fail here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_forecast_is_the_evaluated_one_without_the_market() {
    use volcast_core::forecast::{DrawdownQuery, ForecastRequest, Origin};
    use volcast_core::grid::{Asset, HourlyGrid};
    use volcast_core::synth::{SynthConfig, generate};
    use volcast_model::device::{DeviceChoice, select};
    use volcast_model::inference::LoadedModel;
    use volcast_store::CandleStore as _;

    let artifact = common::repo().join("model-artifacts/default");
    let dir = tempfile::tempdir().unwrap();
    let store = volcast_store::Store::open(&format!("sqlite://{}", dir.path().join("v.db").display()))
        .await
        .unwrap();
    let candles = |index: u64| {
        generate(&SynthConfig {
            gap_rate: 0.0,
            ..SynthConfig::panel_asset(index, 17, 1200, common::START_MS)
        })
    };
    let (btc, x) = (candles(1), candles(2));
    store.insert_candles("BTCUSDT", &btc).await.unwrap();
    store.insert_candles("X", &x).await.unwrap();
    let forever = std::time::Duration::from_secs(100_000 * 86_400);
    let state = common::state_with_store(&artifact, store, forever).await;
    let app = volcast_server::app(state);
    let json_of = |c: &[Candle]| c.iter().map(common::candle_json).collect::<Vec<_>>();
    // (variance, shortage probability) per horizon of X's item in a route's answers.
    let served = |vol: &Value, liq: &Value, item: usize| -> Vec<(f64, f64)> {
        let hs = |v: &Value, key: &str| -> Vec<f64> {
            v["items"][item]["horizons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h[key].as_f64().unwrap())
                .collect()
        };
        hs(vol, "variance")
            .into_iter()
            .zip(hs(liq, "shortage_probability"))
            .collect()
    };
    let mut answers = Vec::new();
    let alone = json!({"asset": "X", "candles": json_of(&x)});
    let batch = json!({"items": [{"asset": "BTCUSDT", "candles": json_of(&btc)}, {"asset": "X", "candles": json_of(&x)}]});
    for (body, item) in [(&alone, 0), (&batch, 1)] {
        let mut got = Vec::new();
        for route in ["/v1/forecast/volatility", "/v1/forecast/liquidity"] {
            let (status, v, _) = common::call(&app, "POST", route, Some(body)).await;
            assert_eq!(status, 200, "{route}: {v}");
            got.push(v);
        }
        answers.push(served(&got[0], &got[1], item));
    }
    let mut got = Vec::new();
    for route in [
        "/v1/assets/X/forecast/volatility",
        "/v1/assets/X/forecast/liquidity",
    ] {
        let (status, v, _) = common::call(&app, "GET", route, None).await;
        assert_eq!(status, 200, "{route}: {v}");
        got.push(v);
    }
    answers.push(served(&got[0], &got[1], 0));

    let device = select(DeviceChoice::Cpu).unwrap().device;
    let panel = [
        Asset {
            id: "BTCUSDT".into(),
            grid: HourlyGrid::from_candles(&btc),
        },
        Asset {
            id: "X".into(),
            grid: HourlyGrid::from_candles(&x),
        },
    ];
    let origins = [Origin {
        asset: 1,
        slot: panel[1].grid.len() - 1,
    }];
    let evaluated = |model: LoadedModel| -> Vec<(f64, f64)> {
        let horizons = model.metadata.horizons.clone();
        let p = model
            .predictions(&ForecastRequest {
                assets: &panel,
                origins: &origins,
                horizons: &horizons,
                drawdown: DrawdownQuery { alpha: 0.99, tau: 4 },
            })
            .unwrap()
            .remove(0)
            .unwrap();
        p.variance.into_iter().zip(p.shortage_probability).collect()
    };
    let with_market = evaluated(LoadedModel::load(&artifact, &device).unwrap());
    let without = evaluated(LoadedModel::load(&artifact, &device).unwrap().without_market());
    let close = |a: f64, b: f64| (a / b - 1.0).abs() < 1e-6;
    for (i, got) in answers.iter().enumerate() {
        assert_eq!(got.len(), without.len());
        for (k, (s, e)) in got.iter().zip(&without).enumerate() {
            assert!(
                close(s.0, e.0) && close(s.1, e.1),
                "answer {i}, horizon {k}: served {s:?}, evaluated {e:?}"
            );
        }
    }
    assert!(
        answers[0]
            .iter()
            .zip(&with_market)
            .any(|(s, m)| !close(s.0, m.0) || !close(s.1, m.1)),
        "the market factor changes nothing here: {:?} vs {with_market:?}",
        answers[0]
    );
}
