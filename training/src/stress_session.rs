//! What the `stress` command does before simulating: load an asset's candles, forecast at the
//! origin with an artifact, read the forecast with the risk policy, and turn it into a
//! [`StressInput`] and the replay windows.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use volcast_core::drawdown::{DrawdownCalibration, DrawdownRule};
use volcast_core::features::{AssetFeatures, MARKET_ASSET};
use volcast_core::grid::Asset;
use volcast_core::panel::{PreparedAsset, to_panel};
use volcast_core::policy::{self, Forecasts, RiskSettings};
use volcast_core::stress::{
    self, Book, DEFAULT_LIQUIDATION_THRESHOLD, REPLAY_COUNT, REPLAY_HORIZON, ReplayWindow, Scenario,
    ScenarioPolicy, ScenarioReport, Simulator, StressError, StressInput, input_at_origin,
    market_stress_scenarios, worst_windows,
};
use volcast_core::time::{Bound, close_hour_of_open_ms, format_hour, parse_time};
use volcast_model::inference::LoadedModel;

use crate::data::{list_dir, load_assets};

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
    /// The risk policy's settings (validated); `tau` is lengthened by the shortage probability.
    pub settings: RiskSettings,
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
    /// The risk policy at the origin: liquidity horizon, `tau_eff`, illiquidity, the curve.
    pub at_origin: policy::Recommendation,
    /// The simulation's input.
    pub input: StressInput,
    /// Historical windows to replay.
    pub replays: Vec<ReplayWindow>,
    /// Where they came from (`artifact` or `data up to ...`).
    pub replay_source: String,
    /// The artifact's drawdown calibration, when it has one (the recommendations use it).
    pub calibration: Option<DrawdownCalibration>,
}

impl Prepared {
    /// Simulates `scenarios` on `book` with the risk policy's parameters under each, for
    /// `settings` (those of the request, with the sale size the caller decided).
    ///
    /// # Errors
    /// The first scenario the simulator rejects.
    pub fn run(
        &self,
        book: &Book,
        scenarios: &[Scenario],
        settings: &RiskSettings,
        simulator: &Simulator<'_>,
    ) -> Result<Vec<ScenarioReport>, StressError> {
        let policy = ScenarioPolicy {
            forecast: &self.at_origin.curve,
            liquidity: &self.at_origin.liquidity,
            settings,
            rule: DrawdownRule::calibrated_or_reflection(self.calibration.as_ref()),
            window: policy::DrawdownWindow::UpToTau,
        };
        stress::run(&self.input, book, scenarios, &policy, simulator)
    }
}

/// The origin's slot in `asset`'s grid: the asked close hour, or the last candle.
fn origin_slot(asset: &Asset, at_ms: Option<i64>) -> anyhow::Result<(i64, usize)> {
    // The command refuses an origin off the hour with the text given; a library caller too.
    if let Some(ms) = at_ms.filter(|ms| ms.rem_euclid(volcast_core::time::HOUR_MS) != 0) {
        bail!("the origin {ms} (Unix ms) is not on a whole hour");
    }
    let origin_hour = at_ms.map_or_else(|| asset.grid.last_hour(), |ms| ms.div_euclid(3_600_000));
    let Some(slot) = asset.grid.slot(origin_hour).filter(|&s| asset.grid.has_candle(s)) else {
        let (first, last) = (asset.grid.first_hour, asset.grid.last_hour());
        bail!(
            "{} has no candle closing at {} ({}its data covers {} to {})",
            asset.id,
            format_hour(origin_hour),
            if (first..=last).contains(&origin_hour) {
                "a gap: that hour is missing, though "
            } else {
                ""
            },
            format_hour(first),
            format_hour(last)
        );
    };
    Ok((origin_hour, slot))
}

/// The windows to replay: the artifact's, or the worst of its training data when it has none.
fn replays(
    model: &LoadedModel,
    panel: &[Asset],
    asset: &Asset,
    origin_hour: i64,
) -> (Vec<ReplayWindow>, String) {
    if !model.metadata.stress_scenarios.is_empty() {
        return (model.metadata.stress_scenarios.clone(), "artifact".to_owned());
    }
    // The artifact's training data, as `stress_scenarios` would hold (whatever the origin).
    let until = parse_time(&model.metadata.fit_until, Bound::End)
        .map(close_hour_of_open_ms)
        .unwrap_or(origin_hour);
    let windows = if panel.iter().any(|a| a.id == MARKET_ASSET) {
        market_stress_scenarios(panel, until)
    } else {
        worst_windows(asset, until, REPLAY_HORIZON, REPLAY_COUNT)
    };
    (windows, format!("data up to {}", format_hour(until)))
}

/// Loads, forecasts, applies the risk policy at the origin and builds the input.
///
/// # Errors
/// Missing data, asset or artifact; an origin without a candle or without enough history.
pub fn prepare(r: &Request) -> anyhow::Result<Prepared> {
    let device = volcast_model::device::select(volcast_model::device::DeviceChoice::Cpu)?.device;
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
    let panel = to_panel(&loaded);
    let Some(asset) = panel.iter().find(|a| a.id == r.asset) else {
        bail!("asset {} not found in the data", r.asset);
    };
    let (origin_hour, slot) = origin_slot(asset, r.at_ms)?;
    let quiet = asset.grid.hours_without_trading(slot);
    if let Some(&latest) = quiet.last() {
        bail!(
            "{} of the {} hours up to {} show no trading (no price range or no quote volume), the \
             latest closing at {}: a stalled or halted market cannot support a forecast",
            quiet.len(),
            volcast_core::grid::EVIDENCE_HOURS,
            format_hour(origin_hour),
            format_hour(asset.grid.hour(latest))
        );
    }
    let horizons = model.metadata.horizons.clone();
    if horizons.is_empty() {
        bail!("the artifact serves no horizon");
    }
    let prepared = PreparedAsset::new(asset, &horizons);
    let features = AssetFeatures::new(asset, &prepared);
    // Without the market factor, as the server forecasts every window (a posted window carries
    // no market): with it, the forecast scenario's parameters differed from the risk route's on
    // the same candles (until stop 62, for every asset but BTCUSDT itself). The market asset is
    // loaded for the replay windows only.
    let input = model
        .input_at(&features, slot, None, &mut Vec::new())
        .with_context(|| {
            let origin = format_hour(origin_hour);
            features
                .why_invalid(slot, &origin)
                .unwrap_or_else(|| format!("no model features at {origin}"))
        })?;
    let mut prediction = model
        .predict(&[input])
        .pop()
        .context("the model returned no forecast")?;
    model.metadata.combine_at(&prepared, slot, &mut prediction);
    let illiquidity = prepared.illiquidity_at(slot, &horizons);
    let calibration = model.metadata.risk.as_ref().map(|r| r.model.clone());
    let forecasts = Forecasts {
        horizons: &horizons,
        variance: &prediction.variance,
        shortage_probability: &prediction.shortage_probability,
        illiquidity: &illiquidity,
    };
    let rule = DrawdownRule::calibrated_or_reflection(calibration.as_ref());
    let at_origin = policy::recommend(
        &forecasts,
        &r.settings,
        None,
        rule,
        policy::DrawdownWindow::UpToTau,
    );
    let input = input_at_origin(
        asset.grid.close[slot],
        &at_origin,
        r.horizon,
        r.df,
        r.paths,
        r.seed,
    );
    let (replays, replay_source) = replays(&model, &panel, asset, origin_hour);
    Ok(Prepared {
        asset: r.asset.clone(),
        origin: format_hour(origin_hour),
        calibration,
        model_id: model.metadata.id.clone(),
        model_hash: model.hash.clone(),
        horizons,
        variance: prediction.variance.clone(),
        shortage_probability: prediction.shortage_probability.clone(),
        at_origin,
        input,
        replays,
        replay_source,
    })
}

/// Reads a book: a JSON array of positions, or an object with `positions` and
/// `default_liquidation_threshold`.
///
/// # Errors
/// Unreadable file or JSON of neither shape.
pub fn read_book(path: &Path) -> anyhow::Result<Book> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let shapes = "a JSON array of {\"collateral\", \"debt\", \"liquidation_threshold\"?} or \
                  {\"positions\": [...], \"default_liquidation_threshold\": 0.8}";
    // Read from the text, each shape on its own: an unknown field is named (an untagged read
    // would only say that neither shape matched), a repeated key is refused (through a JSON
    // value the last one won, so `"debt": 1, "debt": 2` was simulated with debt 2), and an error
    // names the position and field (`positions[2].debt`).
    // A byte-order mark (an editor's "UTF-8 with BOM") is no part of the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut de = serde_json::Deserializer::from_str(text);
    let book = if text.trim_start().starts_with('[') {
        serde_path_to_error::deserialize(&mut de).map(|positions| Book {
            positions,
            default_liquidation_threshold: DEFAULT_LIQUIDATION_THRESHOLD,
        })
    } else {
        serde_path_to_error::deserialize(&mut de)
    };
    let at = |path: String| match path.as_str() {
        "." => String::new(),
        p if p.starts_with('[') => format!(" `positions{p}`:"),
        p => format!(" `{p}`:"),
    };
    let book = book.map_err(|e| {
        let place = at(e.path().to_string());
        anyhow::anyhow!("{}:{place} {}; expected {shapes}", path.display(), e.into_inner())
    })?;
    de.end()
        .with_context(|| format!("{}: expected {shapes}", path.display()))?;
    Ok(book)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> anyhow::Result<Book> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("book.json");
        std::fs::write(&path, text)?;
        read_book(&path)
    }

    #[test]
    fn a_book_is_read_in_either_shape_and_a_misspelt_field_is_refused_by_name() -> anyhow::Result<()> {
        let list = read(r#"[{"collateral": 1, "debt": 2, "liquidation_threshold": 0.9}]"#)?;
        assert_eq!(list.positions[0].liquidation_threshold, Some(0.9));
        assert_eq!(list.default_liquidation_threshold, DEFAULT_LIQUIDATION_THRESHOLD);
        let book =
            read(r#"{"positions": [{"collateral": 1, "debt": 2}], "default_liquidation_threshold": 0.7}"#)?;
        assert_eq!(book.default_liquidation_threshold, 0.7);
        for (text, field) in [
            (
                r#"[{"collateral": 1, "debt": 2, "liquidation_treshold": 0.95}]"#,
                "liquidation_treshold",
            ),
            (r#"{"positions": [], "extra": 1}"#, "extra"),
            // Repeated keys: the last one won.
            (
                r#"[{"collateral": 1, "debt": 1, "debt": 2}]"#,
                "`positions[0]`: duplicate field `debt`",
            ),
            (
                r#"{"positions": [], "positions": [{"collateral": 1, "debt": 2}]}"#,
                "duplicate field `positions`",
            ),
            // The position and field of a bad value.
            (
                r#"[{"collateral": 1, "debt": 2}, {"collateral": 1, "debt": "1"}]"#,
                "`positions[1].debt`: invalid type: string \"1\", expected f64",
            ),
            (
                r#"{"positions": [{"collateral": -1e999, "debt": 2}]}"#,
                "number out of range",
            ),
            (r#"[] []"#, "trailing characters"),
            (
                "\u{feff}[{\"collateral\": 1, \"debt\": 2, \"debt\": 3}]",
                "duplicate field",
            ),
        ] {
            let error = format!("{:#}", read(text).expect_err(text));
            assert!(error.contains(field), "{error}");
        }
        Ok(())
    }
}
