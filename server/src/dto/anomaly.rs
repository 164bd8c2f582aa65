//! Bodies of the anomaly routes (`POST /v1/anomaly/scan`, `GET /v1/assets/{asset}/anomalies`)
//! and the anomaly part of a risk derivation.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use volcast_core::anomaly::features::PoolSnapshot;
use volcast_core::anomaly::{Driver, Scorer, Verdict};
use volcast_core::time::format_ms;

use super::CandleDto;

/// One snapshot of the asset's DEX pool against a quote token (the Uniswap V2 / SushiSwap
/// subgraphs' fields, with the asset's side picked out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"time": 1_609_459_200_000_i64, "reserve_asset": 1_250_000.0, "reserve_quote": 9_800.0, "reserve_usd": 14_500_000.0, "total_supply": 95_000.0, "tx_count": 412_345.0, "volume_usd": 2_350_000_000.0}))]
pub struct PoolSnapshotDto {
    /// Snapshot time, Unix milliseconds UTC; strictly increasing, and not after the server's
    /// clock (10 s of grace).
    pub time: i64,
    /// Reserve of the asset, token units (> 0).
    pub reserve_asset: f64,
    /// Reserve of the quote token, token units (> 0).
    pub reserve_quote: f64,
    /// Pool value, USD (> 0); with `reserve_asset` it gives the pool's price of the asset.
    pub reserve_usd: f64,
    /// LP tokens outstanding (> 0).
    pub total_supply: f64,
    /// Cumulative transaction count (>= 0, never below the previous snapshot's).
    pub tx_count: f64,
    /// Cumulative volume, USD (>= 0, never below the previous snapshot's). Where `tx_count` rose since the previous snapshot and this
    /// did not, the volume is taken as untracked (the subgraphs count only volume they can
    /// price): `pool_volume` is not scored for that snapshot.
    pub volume_usd: f64,
}

impl From<PoolSnapshotDto> for PoolSnapshot {
    fn from(s: PoolSnapshotDto) -> Self {
        Self {
            time_ms: s.time,
            reserve_asset: s.reserve_asset,
            reserve_quote: s.reserve_quote,
            reserve_usd: s.reserve_usd,
            total_supply: s.total_supply,
            tx_count: s.tx_count,
            volume_usd: s.volume_usd,
        }
    }
}

/// One asset of a batch scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanItem {
    /// Asset id.
    pub asset: String,
    /// Its hourly candles, oldest first.
    #[serde(deserialize_with = "crate::extract::objects::vec")]
    pub candles: Vec<CandleDto>,
    /// Its DEX pool's snapshots, oldest first (optional).
    #[serde(default, deserialize_with = "crate::extract::objects::option_vec")]
    pub pool: Option<Vec<PoolSnapshotDto>>,
}

/// A scan: one asset (`asset`, `candles`, optionally `pool`) or a batch (`items`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// Single shape: the asset id.
    pub asset: Option<String>,
    /// Single shape: its candles, oldest first; at least the detector's warm-up plus one.
    #[serde(default, deserialize_with = "crate::extract::objects::option_vec")]
    pub candles: Option<Vec<CandleDto>>,
    /// Single shape: its DEX pool's snapshots, oldest first.
    #[serde(default, deserialize_with = "crate::extract::objects::option_vec")]
    pub pool: Option<Vec<PoolSnapshotDto>>,
    /// Batch shape: several assets. With five or more, the batch is the market: each asset's
    /// features are scored against the batch's medians (`*_vs_market`).
    #[serde(default, deserialize_with = "crate::extract::objects::option_vec")]
    pub items: Option<Vec<ScanItem>>,
}

/// Which detector answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DetectorRef {
    /// Content id of the detector.
    pub id: String,
    /// Last hour of its fit data.
    pub fit_until: String,
    /// Stated false alarms per market per 30 days on ordinary data (the calibration target).
    pub flags_per_month: f64,
    /// The same as a rate per scored asset-hour.
    pub candle_rate: f64,
    /// The same as a rate per pool snapshot, when the detector has a pool model.
    pub pool_rate: Option<f64>,
    /// At a pool snapshot where the LP supply changed, a fall of the liquidity per LP token
    /// (`lp_value`) smaller than this fraction is read as none: the protocol fee minted as LP
    /// tokens with a mint or burn (SushiSwap's `feeTo`), not reserves leaving. The driver still
    /// shows the raw change. 0: every fall read as it is (detectors fitted before stop 41).
    pub fee_mint_bound: f64,
    /// `out_and_back` (the `pump_and_dump` pattern's round trip over 5 hours) reads the returns
    /// between consecutive hours only, starting over after a missing hour. False for detectors
    /// fitted before stop 65 (the committed ones): the multi-hour return across a gap entered
    /// the next hours' round trip.
    #[serde(default)]
    pub trip_restarts_at_gaps: bool,
    /// The candle patterns judged along their own directions, each with its own threshold:
    /// `pump_and_dump`, `wash_trading`, `spoofed_wick`. A flagged hour raised along one names it
    /// (`pattern`). Empty for a detector fitted without them (before stop 45).
    pub patterns: Vec<String>,
    /// Per pattern (same order), the hours it is judged over, the scored one included: its
    /// surprise summed over them (`pump_and_dump`: 5 since stop 46, the rise and its reversal;
    /// the others 1).
    pub pattern_hours: Vec<usize>,
    /// The day's multiplier of the fitted asset-hour thresholds for hours judged against their
    /// market (scans of five or more assets): every such `threshold` in an answer is the fitted
    /// one times it. The daily job sets it at 00:00 UTC to the `1 - candle_rate` quantile of
    /// `score / fitted threshold` over the stored assets' hours of the trailing 90 days, so
    /// that the flag rate stays at the stated one as markets change; 1 (as fitted) until the
    /// store holds enough hours (20 expected flags), and bounded to 0.5..4.
    pub candle_threshold_scale: f64,
    /// The same for hours judged alone, without a market reference (the risk and stress
    /// routes, scans of fewer than five assets, hours the market does not cover), measured the
    /// same way on the stored hours each judged alone.
    pub candle_alone_threshold_scale: f64,
    /// The same for pool snapshots: 1, the store holds no pool series.
    pub pool_threshold_scale: f64,
}

impl DetectorRef {
    /// Of a served detector, with the scales in use.
    #[must_use]
    pub fn of(scorer: &Scorer) -> Self {
        let d = &scorer.detector;
        let scale = scorer.scale();
        Self {
            id: d.id.clone(),
            fit_until: d.fit_until.clone(),
            flags_per_month: d.config.flags_per_month,
            candle_rate: d.candle_rate,
            pool_rate: d.pool_rate,
            fee_mint_bound: d.config.features.fee_mint_fraction(),
            trip_restarts_at_gaps: d.config.features.trip_restarts_at_gaps,
            patterns: d.candles.directions.iter().map(|x| x.name.clone()).collect(),
            pattern_hours: d.candles.directions.iter().map(|x| x.hours).collect(),
            candle_threshold_scale: scale.candles,
            candle_alone_threshold_scale: scale.candles_alone,
            pool_threshold_scale: scale.pools,
        }
    }
}

/// The detector served, in the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServedDetector {
    /// The detector.
    pub detector: DetectorRef,
    /// `--anomaly-action`: `report` or `tighten`.
    pub action: String,
    /// `--anomaly-window-hours`.
    pub window_hours: u32,
}

/// A reason for a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriverDto {
    /// Feature: `return`, `range`, `volume`, `wick`, `volume_per_range`, `out_and_back` (each
    /// with `_vs_market` when scored against the batch's market); for pools `pool_price`,
    /// `lp_supply`, `lp_value` (liquidity per LP token), `pool_volume`, `pool_tx`, `cex_gap`.
    pub feature: String,
    /// Standard deviations from the fit period's typical market-hour (normal score).
    pub z: f64,
    /// Its share of `d²`.
    pub share: f64,
    /// The feature in plain units: a change as a fraction, a ratio to what the market's recent
    /// behaviour predicts, or for `return` and `out_and_back` a log change (ln of the price
    /// ratio, which the description shows as a percent: 100 ln, a halved close -69.31%).
    pub value: f64,
    /// The reason in words.
    pub description: String,
    /// For a flag raised along a pattern judged over several hours (`pump_and_dump`, see
    /// `detector.pattern_hours`), how many hours before the flagged one this part was measured
    /// (its `z`, `share` and `value` are that hour's, and the description begins "2 h before:
    /// "). Absent for the flagged hour itself.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hours_before: usize,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_zero(h: &usize) -> bool {
    *h == 0
}

impl From<Driver> for DriverDto {
    fn from(d: Driver) -> Self {
        Self {
            feature: d.feature,
            z: d.z,
            share: d.share,
            value: d.value,
            description: d.description,
            hours_before: d.hours_before,
        }
    }
}

/// One scored hour (or pool snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoredRow {
    /// Candle open time, or the snapshot's time (RFC 3339).
    pub time: String,
    /// The surprise on the scale of `d²`, the Mahalanobis distance² of the activity features'
    /// normal scores: `d²`, the largest single feature's surprise given the others, or (asset
    /// hours) the largest surprise along a candle pattern's direction (`pattern`), each scaled so
    /// that its own threshold falls on `threshold`, whichever is furthest beyond its threshold.
    pub score: f64,
    /// The flag threshold (of `d²`) for this row's features: the fitted one times the day's
    /// scale (`detector.candle_threshold_scale` for an hour judged against its market,
    /// `candle_alone_threshold_scale` for one judged alone, `pool_threshold_scale`).
    pub threshold: f64,
    /// `score > threshold`.
    pub flagged: bool,
    /// Top reasons (flagged rows only), largest share first (for a row flagged along a
    /// pattern's direction, largest part of that surprise first, over the pattern's hours:
    /// `hours_before`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<DriverDto>,
    /// The candle pattern a flagged hour reads as, when the surprise along its direction
    /// raised the flag: `pump_and_dump`, `wash_trading` or `spoofed_wick`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

impl From<Verdict> for ScoredRow {
    fn from(v: Verdict) -> Self {
        Self {
            time: format_ms(v.time_ms),
            score: v.score,
            threshold: v.threshold,
            flagged: v.flagged,
            drivers: v.drivers.into_iter().map(DriverDto::from).collect(),
            pattern: v.pattern,
        }
    }
}

/// Scores of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SeriesScan {
    /// Rows scored (the first rows of a window only warm the baselines up).
    pub scored: usize,
    /// Rows flagged.
    pub flagged: usize,
    /// The rows: every scored row for a scan, the flagged ones for the asset route unless
    /// `all=true`.
    pub rows: Vec<ScoredRow>,
}

impl SeriesScan {
    /// From verdicts, keeping every row or only the flagged ones.
    #[must_use]
    pub fn of(verdicts: Vec<Verdict>, all: bool) -> Self {
        let scored = verdicts.len();
        let flagged = verdicts.iter().filter(|v| v.flagged).count();
        Self {
            scored,
            flagged,
            rows: verdicts
                .into_iter()
                .filter(|v| all || v.flagged)
                .map(ScoredRow::from)
                .collect(),
        }
    }
}

/// One asset's scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetScan {
    /// Asset id.
    pub asset: String,
    /// Whether the hours were scored against the market: `batch` (a scan's batch of five or
    /// more assets: its medians, the `*_vs_market` features), `store` (the asset route, with five
    /// or more stored assets: theirs) or `none` (the asset's own features, on their own
    /// thresholds).
    pub market_context: String,
    /// Its hours.
    pub hours: SeriesScan,
    /// Its pool's snapshots, when given.
    pub pool: Option<SeriesScan>,
}

/// A scan's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScanResponse {
    /// The detector.
    pub detector: DetectorRef,
    /// One per asset, in request order.
    pub items: Vec<AssetScan>,
}

/// Query of `GET /v1/assets/{asset}/anomalies`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnomaliesQuery {
    /// First hour (Unix ms, RFC 3339 or a date); default: seven days before `to`.
    pub from: Option<String>,
    /// Last hour (Unix ms, RFC 3339 or a date); default: the latest stored candle.
    pub to: Option<String>,
    /// Every scored hour, not only the flagged ones (default false).
    pub all: Option<bool>,
}

/// What an active anomaly flag did to a risk recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnomalyContext {
    /// The detector.
    pub detector: String,
    /// The day's scale of its asset-hour thresholds the flags were judged at: the scale of hours
    /// judged alone (`DetectorRef.candle_alone_threshold_scale`; before stop 51, the market
    /// one, `candle_threshold_scale`, was applied); a decision's replay uses it.
    pub threshold_scale: f64,
    /// Hours before the origin searched for flags.
    pub window_hours: u32,
    /// Whether a flag is active: an hour of the window was flagged.
    pub active: bool,
    /// The flagged hours of the window, with their drivers.
    pub flags: Vec<ScoredRow>,
    /// The service's setting: `report` (flags are reported only) or `tighten` (an active flag
    /// doubles the liquidation window `tau`, up to 168 h).
    pub action: String,
    /// Whether the parameters were tightened.
    pub applied: bool,
    /// What was done, in words.
    pub effect: String,
}
