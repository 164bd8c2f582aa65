//! What the `stress` command does before simulating: load an asset's candles, forecast at the
//! origin with an artifact, and turn the forecasts into a [`StressInput`] and the replay
//! windows.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{ReplayWindow, StressInput, market_stress_scenarios, worst_windows};
use crate::curve::VarianceCurve;
use crate::data::{list_dir, load_assets};
use crate::features::{AssetFeatures, MARKET_ASSET, Market};
use crate::inference::LoadedModel;
use crate::panel::PreparedAsset;
use crate::stress::{REPLAY_COUNT, REPLAY_HORIZON};
use crate::time::{Bound, close_hour_of_open_ms, format_hour, parse_time};

/// What to forecast and simulate.
#[derive(Debug, Clone)]
pub struct Request {
    /// Candle directories.
    pub dirs: Vec<PathBuf>,
    /// Asset id.
    pub asset: String,
    /// Artifact (directory or artifacts directory with a `default` pointer).
    pub model: PathBuf,
    /// Origin: Unix ms of the close of the last candle used; None: the last candle.
    pub at_ms: Option<i64>,
    /// Hours simulated.
    pub horizon: usize,
    /// Liquidation window asked for, hours (lengthened by the shortage probability).
    pub tau: f64,
    /// Paths.
    pub paths: usize,
    /// Seed.
    pub seed: u64,
    /// Student-t degrees of freedom.
    pub df: f64,
}

/// The forecasts behind a simulation and the simulation's input.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Asset id.
    pub asset: String,
    /// Origin close hour, `YYYY-MM-DD HH:MM` UTC.
    pub origin: String,
    /// Artifact id.
    pub model_id: String,
    /// Artifact hash.
    pub model_hash: String,
    /// Served horizons, hours.
    pub horizons: Vec<usize>,
    /// Forecast variance per horizon.
    pub variance: Vec<f64>,
    /// Shortage probability per horizon.
    pub shortage_probability: Vec<f64>,
    /// Horizon whose liquidity forecast applies to the liquidation window.
    pub liquidity_horizon: usize,
    /// Current `M_H` at that horizon, when computable.
    pub illiquidity: Option<f64>,
    /// `tau (1 + p)`.
    pub tau_effective: f64,
    /// The simulation's input.
    pub input: StressInput,
    /// Historical windows to replay.
    pub replays: Vec<ReplayWindow>,
    /// Where they came from (`artifact` or `data up to ...`).
    pub replay_source: String,
    /// The artifact's drawdown calibration, when it has one (the recommendations use it).
    pub calibration: Option<crate::drawdown::DrawdownCalibration>,
}

/// Loads, forecasts and builds the input.
///
/// # Errors
/// Missing data, asset or artifact; an origin without a candle or without enough history.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn prepare(r: &Request) -> anyhow::Result<Prepared> {
    let device = crate::device::select(crate::device::DeviceChoice::Cpu)?.device;
    let model = LoadedModel::load(&r.model, &device)?;
    let with_market = r.asset != MARKET_ASSET
        && r.dirs
            .iter()
            .any(|d| list_dir(d).is_ok_and(|files| files.contains_key(MARKET_ASSET)));
    let mut wanted = vec![r.asset.clone()];
    if with_market {
        wanted.push(MARKET_ASSET.to_owned());
    }
    let loaded = load_assets(&r.dirs, Some(&wanted))?;
    let panel = crate::to_panel(&loaded);
    let Some(asset) = panel.iter().find(|a| a.id == r.asset) else {
        bail!("asset {} not found in the data", r.asset);
    };
    let origin_hour = r
        .at_ms
        .map_or_else(|| asset.grid.last_hour(), |ms| ms.div_euclid(3_600_000));
    let Some(slot) = asset.grid.slot(origin_hour).filter(|&s| asset.grid.has_candle(s)) else {
        bail!(
            "{} has no candle closing at {} (its data covers {} to {})",
            r.asset,
            format_hour(origin_hour),
            format_hour(asset.grid.first_hour),
            format_hour(asset.grid.last_hour())
        );
    };
    let horizons = model.metadata.horizons.clone();
    let prepared = PreparedAsset::new(asset, &horizons);
    let features = AssetFeatures::new(asset, &prepared);
    let market = panel.iter().find(|a| a.id == MARKET_ASSET).map(Market::new);
    let input = model
        .input_at(&features, slot, market.as_ref(), &mut Vec::new())
        .with_context(|| {
            format!(
                "not enough history before {} for the model's features (720 hours of returns)",
                format_hour(origin_hour)
            )
        })?;
    let prediction = model
        .predict(&[input])
        .pop()
        .context("the model returned no forecast")?;

    let mut sorted = horizons.clone();
    sorted.sort_unstable();
    let liquidity_horizon = sorted
        .iter()
        .copied()
        .find(|&h| h as f64 >= r.tau)
        .or_else(|| sorted.last().copied())
        .context("the artifact serves no horizon")?;
    let j = horizons.iter().position(|&h| h == liquidity_horizon).unwrap_or(0);
    let p = prediction.shortage_probability[j].clamp(0.0, 1.0);
    let illiquidity = prepared
        .illiq_mean
        .get(&liquidity_horizon)
        .and_then(|m| m.get(slot))
        .copied()
        .filter(|m| m.is_finite());
    let tau_effective = r.tau * (1.0 + p);
    let curve = VarianceCurve::new(&horizons, &prediction.variance);

    let fit_end_hour = parse_time(&model.metadata.fit_until, Bound::End)
        .map(close_hour_of_open_ms)
        .unwrap_or(origin_hour);
    let (replays, replay_source) = if model.metadata.stress_scenarios.is_empty() {
        // The artifact's training data, as `stress_scenarios` would hold (whatever the origin).
        let until = fit_end_hour;
        let windows = if panel.iter().any(|a| a.id == MARKET_ASSET) {
            market_stress_scenarios(&panel, until)
        } else {
            worst_windows(asset, until, REPLAY_HORIZON, REPLAY_COUNT)
        };
        (windows, format!("data up to {}", format_hour(until)))
    } else {
        (model.metadata.stress_scenarios.clone(), "artifact".to_owned())
    };

    Ok(Prepared {
        asset: r.asset.clone(),
        origin: format_hour(origin_hour),
        calibration: model.metadata.risk.as_ref().map(|r| r.model.clone()),
        model_id: model.metadata.id.clone(),
        model_hash: model.hash.clone(),
        horizons,
        variance: prediction.variance.clone(),
        shortage_probability: prediction.shortage_probability.clone(),
        liquidity_horizon,
        illiquidity,
        tau_effective,
        input: StressInput {
            price: asset.grid.close[slot],
            hourly_variance: curve.hourly(r.horizon),
            df: r.df,
            // Expected illiquidity M (1 + p) is |r| per $1M traded.
            slippage_per_usd: illiquidity.map_or(0.0, |m| m * (1.0 + p) / 1e6),
            liquidation_delay_hours: tau_effective.ceil() as usize,
            paths: r.paths,
            seed: r.seed,
        },
        replays,
        replay_source,
    })
}

/// Reads a book: a JSON array of positions, or an object with `positions` and
/// `default_liquidation_threshold`.
///
/// # Errors
/// Unreadable file or JSON of neither shape.
pub fn read_book(path: &Path) -> anyhow::Result<super::Book> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Shape {
        List(Vec<super::Position>),
        Book(super::Book),
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let shape: Shape = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON array of {{\"collateral\", \"debt\", \"liquidation_threshold\"?}} or {{\"positions\": [...], \"default_liquidation_threshold\": 0.8}}",
            path.display()
        )
    })?;
    Ok(match shape {
        Shape::List(positions) => super::Book {
            positions,
            default_liquidation_threshold: super::DEFAULT_LIQUIDATION_THRESHOLD,
        },
        Shape::Book(book) => book,
    })
}
