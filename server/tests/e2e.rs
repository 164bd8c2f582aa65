//! End to end: train a tiny model on generated data, start the real `server` binary on
//! `127.0.0.1:0`, read its `listening on` line, call every endpoint over HTTP, then SIGTERM it
//! with a request in flight and check that the request completes and the process exits cleanly.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::{Server, assert_still_serving, get, signal, start, wait_for};

use serde_json::{Value, json};
use volcast_core::features::AssetFeatures;
use volcast_core::grid::{Asset, HourlyGrid};
use volcast_core::panel::PreparedAsset;
use volcast_core::synth::{SynthConfig, generate};
use volcast_core::time::{Bound, HOUR_MS, parse_time};
use volcast_model::config::TrainingConfig;
use volcast_model::device::{DeviceChoice, select};
use volcast_model::inference::LoadedModel;
use volcast_server::model_info::ModelInfo;
use volcast_training::data::write_csv;
use volcast_training::pipeline::{Pipeline, run};

const START_MS: i64 = 1_577_836_800_000; // 2020-01-01

fn train(tmp: &Path) -> std::path::PathBuf {
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 1..=3 {
        let candles = generate(&SynthConfig::panel_asset(i, 7, 24 * 150, START_MS));
        write_csv(&data.join(format!("SYNTH{i:02}.csv")), &candles).unwrap();
    }
    let mut config = TrainingConfig::default_run()
        .with_window(32)
        .with_batch_size(64)
        .with_max_epochs(1)
        .with_holdout_days(15)
        .with_stride_hours(6);
    config.model = config.model.with_channels(8).with_layers(3).with_hidden(16);
    let out = tmp.join("artifacts");
    run(&Pipeline {
        dirs: vec![data],
        fit_until_ms: Some(parse_time("2020-04-15", Bound::End).unwrap() / HOUR_MS * HOUR_MS),
        device: DeviceChoice::Cpu,
        config,
        out: out.clone(),
        set_default: true,
        checkpoint_dir: None,
        resume: false,
        progress: false,
        max_steps: None,
        threads: None,
        members: 1,
    })
    .unwrap();
    out
}

fn candles(n: usize) -> Vec<Value> {
    let c = generate(&SynthConfig {
        gap_rate: 0.0,
        ..SynthConfig::panel_asset(2, 11, n, START_MS)
    });
    c.iter()
        .map(|c| {
            json!({"open_time": c.open_time, "open": c.open, "high": c.high, "low": c.low,
                   "close": c.close, "volume": c.volume, "quote_volume": c.quote_volume})
        })
        .collect()
}

/// The daily job's refreshed artifact, pointed at by `default`, is served after a SIGHUP; a
/// pointer to nothing is refused and the server keeps its model.
async fn reload_on_sighup(
    server: &Server,
    client: &reqwest::Client,
    model: &LoadedModel,
    tmp: &Path,
    artifacts: &Path,
) {
    let loaded = volcast_training::data::load_dirs(&[tmp.join("data")]).unwrap();
    let assets = volcast_core::panel::to_panel(&loaded);
    let end = parse_time("2020-05-10", Bound::Start).unwrap() / HOUR_MS;
    let dir = volcast_training::calibrate::refresh_recalibration(model, &assets, end, artifacts)
        .unwrap()
        .dir;
    let id = dir.file_name().unwrap().to_str().unwrap().to_owned();
    volcast_model::artifact::set_default(artifacts, &id).unwrap();
    signal(server, "-HUP");
    let base = &server.base;
    let card = wait_for(client, format!("{base}/v1/model"), |b| b.contains(&id)).await;
    let card: Value = serde_json::from_str(&card).unwrap();
    assert_eq!(card["model"]["id"], id.as_str());
    assert_eq!(card["recalibration"]["until"], "2020-05-10T00:00:00Z");
    assert_eq!(
        card["recalibration"]["adaptive"]["blend_as_served_at"],
        json!([168]),
        "the daily job keeps the weight at a week chosen as served, as calibrated"
    );
    let metrics = get(client, format!("{base}/metrics")).await;
    assert!(
        metrics.contains(r#"volcast_model_reloads_total{outcome="ok"} 1"#),
        "{metrics}"
    );
    // 2020-05-10T00:00:00Z.
    assert!(
        metrics.contains("volcast_model_recalibrated_until_seconds 1589068800"),
        "{metrics}"
    );

    volcast_model::artifact::set_default(artifacts, "0000000000000000").unwrap();
    signal(server, "-HUP");
    // The reload counter itself: the daily job's own counter of failed recalibrations has the
    // same label and may already read 1.
    let metrics = wait_for(client, format!("{base}/metrics"), |b| {
        b.contains(r#"volcast_model_reloads_total{outcome="failed"} 1"#)
    })
    .await;
    assert!(
        metrics.contains(r#"volcast_model_reloads_total{outcome="failed"} 1"#),
        "{metrics}"
    );
    assert_still_serving(client, base, &id, "a pointer to nothing").await;
}

async fn post(client: &reqwest::Client, url: String, body: &Value) -> (u16, Value) {
    let r = client.post(url).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = train(tmp.path());

    // The server builds model inputs exactly as the trainer's inference code.
    let loaded = LoadedModel::load(&artifacts, &select(DeviceChoice::Cpu).unwrap().device).unwrap();
    let info = ModelInfo::of(&loaded);
    let raw = generate(&SynthConfig::panel_asset(2, 11, 1000, START_MS));
    let asset = Asset {
        id: "X".into(),
        grid: HourlyGrid::from_candles(&raw),
    };
    let features = AssetFeatures::new(&asset, &PreparedAsset::new(&asset, &info.metadata.horizons));
    let slot = asset.grid.len() - 1;
    let mut scratch = Vec::new();
    assert_eq!(
        info.input_at(&features, slot, &mut scratch),
        loaded.input_at(&features, slot, None, &mut scratch)
    );

    let server = start(&artifacts, &[]);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not ready after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let card: Value = client
        .get(format!("{base}/v1/model"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(card["model"]["id"], info.metadata.id.as_str());
    assert_eq!(card["model"]["hash"], info.hash.as_str());
    let need = card["history_hours"].as_u64().unwrap() as usize;
    assert!(card["training_range"].is_array());

    let body = json!({"asset": "SYNTH02", "candles": candles(need)});
    for route in [
        "/v1/forecast/volatility",
        "/v1/forecast/liquidity",
        "/v1/risk/parameters",
    ] {
        let (s, v) = post(&client, format!("{base}{route}"), &body).await;
        assert_eq!(s, 200, "{route}: {v}");
        assert_eq!(v["model"]["hash"], info.hash.as_str());
        assert_eq!(v["items"].as_array().unwrap().len(), 1);
    }
    let (_, v) = post(&client, format!("{base}/v1/risk/parameters"), &body).await;
    let p = &v["items"][0]["parameters"];
    let (lt, lb) = (
        p["liquidation_threshold"].as_f64().unwrap(),
        p["liquidation_bonus"].as_f64().unwrap(),
    );
    assert!(lt > 0.0 && lt * (1.0 + lb) <= 1.0 + 1e-12, "{v}");
    let short = json!({"asset": "SYNTH02", "candles": candles(need - 1)});
    let (s, v) = post(&client, format!("{base}/v1/risk/parameters"), &short).await;
    assert_eq!((s, v["error"].as_str()), (422, Some("too_few_candles")));
    let (s, v) = post(
        &client,
        format!("{base}/v1/risk/parameters"),
        &json!({"items": [body.clone(), body.clone()], "alpha": 2}),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str(), v["field"].as_str()),
        (422, Some("out_of_range"), Some("alpha"))
    );
    let metrics = get(&client, format!("{base}/metrics")).await;
    assert!(metrics.contains("route=\"/v1/risk/parameters\""), "{metrics}");
    assert_eq!(
        client.get(format!("{base}/docs/")).send().await.unwrap().status(),
        200
    );
    let spec: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/v1/forecast/liquidity"].is_object());

    reload_on_sighup(&server, &client, &loaded, tmp.path(), &artifacts).await;

    // SIGTERM with a batch in flight: it completes, then the process exits 0.
    let batch = json!({"items": vec![body.clone(); 32]});
    let in_flight = {
        let (client, url) = (client.clone(), format!("{base}/v1/forecast/volatility"));
        tokio::spawn(async move { post(&client, url, &batch).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    signal(&server, "-TERM");
    let mut server = server;
    let (s, v) = in_flight.await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 32);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
