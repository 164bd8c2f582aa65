//! Activity features: each asset-hour and each pool snapshot measured against that market's own
//! recent behaviour (exponentially weighted, from strictly earlier data), so that one pooled
//! density model can judge every market on one scale.
//!
//! Every feature at time `t` uses the candle or snapshot at `t` and state built from data before
//! `t` only: scoring a window never reads past its last row, and cutting data after `t` changes
//! nothing at or before `t`.

use serde::{Deserialize, Serialize};

mod candle;
mod pool;

pub use candle::{
    CANDLE_DIRECTIONS, CANDLE_FEATURES, CANDLE_VOLUME, CANDLE_WICK, MARKET_FEATURES, MarketContext,
    PUMP_AND_DUMP, candle_rows, candle_rows_from,
};
pub use pool::{
    GAP_FEATURE, OPTIONAL_POOL_FEATURES, POOL_FEATURES, PoolSnapshot, VOLUME_FEATURE, cex_band_at, pool_rows,
    volume_tracked,
};

/// How the features forget: half-lives and the history needed before a row is scored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Half-life of the candle baselines, hours.
    pub candle_half_life_hours: f64,
    /// Hours of history an asset needs before its hours are scored.
    pub candle_warmup_hours: usize,
    /// Half-life of the pool baselines, snapshots.
    pub pool_half_life_snapshots: f64,
    /// Snapshots a pool needs before its snapshots are scored.
    pub pool_warmup_snapshots: usize,
    /// At a snapshot where the LP supply changed, a fall of the liquidity per LP token smaller
    /// than this (a log change) is read as none: the protocol fee minted as LP tokens at every
    /// mint and burn (SushiSwap's `feeTo`), not reserves leaving. 0: off, as in detectors
    /// fitted before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fee_mint_bound: f64,
    /// `out_and_back` reads the returns between consecutive hours only, its window starting
    /// over after a gap (SPEC: a return exists only where both candles do). Off, as in
    /// detectors fitted before it existed, the multi-hour return across a gap entered the
    /// window of the next five hours, judged against an hour's sigma: an outage's move read
    /// as a round trip after it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub trip_restarts_at_gaps: bool,
}

/// [`FeatureConfig::fee_mint_bound`] of new detectors: a fall of 0.5%, as a log change. A fee mint
/// dilutes by 1/6 of `sqrt(k)`'s growth since the last mint or burn: 0.5% would need 3% growth,
/// 20 times the pool's value traded at 0.3% between two of them; a drain worth flagging is far
/// larger. Set from that mechanism, then scored once on the folds (README, stop 41).
pub const FEE_MINT_BOUND: f64 = 0.005_012_541_823_544_282;

impl FeatureConfig {
    /// [`Self::fee_mint_bound`] as the fraction of the liquidity per LP token a fall is read
    /// against (0.005 for [`FEE_MINT_BOUND`]), as the CLI takes it and the answers show it.
    #[must_use]
    pub fn fee_mint_fraction(&self) -> f64 {
        -(-self.fee_mint_bound).exp_m1()
    }

    /// The same with the bound set from a fraction: a fall of `fraction` is `ln(1 - fraction)`.
    #[must_use]
    pub fn with_fee_mint_fraction(self, fraction: f64) -> Self {
        Self {
            fee_mint_bound: -(-fraction).ln_1p(),
            ..self
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_false(x: &bool) -> bool {
    !*x
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            candle_half_life_hours: 168.0,
            candle_warmup_hours: 168,
            pool_half_life_snapshots: 42.0,
            pool_warmup_snapshots: 30,
            fee_mint_bound: FEE_MINT_BOUND,
            trip_restarts_at_gaps: true,
        }
    }
}

/// One scored row: the model's inputs (NaN where a feature is unavailable) and, for the reasons,
/// the same quantities in plain units.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Open time of the hour, or the snapshot's time, Unix ms.
    pub time_ms: i64,
    /// Transformed features fed to the model, `NaN` where missing.
    pub values: Vec<f64>,
    /// Plain-unit values for the reasons (see [`describe`]).
    pub shown: Vec<f64>,
    /// The market's plain-unit values beside them, NaN where there is none.
    pub market: Vec<f64>,
    /// Candle rows: the hour's log return and the recent hourly scale it is measured against.
    pub ret: (f64, f64),
}

/// A bias-corrected exponentially weighted mean.
#[derive(Debug, Clone, Copy)]
struct Ewma {
    keep: f64,
    sum: f64,
    weight: f64,
}

impl Ewma {
    fn new(half_life: f64) -> Self {
        Self {
            keep: 0.5f64.powf(1.0 / half_life.max(1e-9)),
            sum: 0.0,
            weight: 0.0,
        }
    }

    fn update(&mut self, x: f64) {
        if x.is_finite() {
            self.sum = self.keep * self.sum + (1.0 - self.keep) * x;
            self.weight = self.keep * self.weight + (1.0 - self.keep);
        }
    }

    fn mean(&self) -> Option<f64> {
        (self.weight > 1e-12).then(|| self.sum / self.weight)
    }
}

/// A quantity against its own recent level and dispersion: `(x - mean) / sd`, both exponentially
/// weighted over earlier values only, the sd floored. So one asset's "8x its usual volume" is
/// measured against how much that asset's volume usually varies.
#[derive(Debug, Clone, Copy)]
struct Standardized {
    level: Ewma,
    sq: Ewma,
    floor: f64,
}

impl Standardized {
    fn new(half_life: f64, floor: f64) -> Self {
        Self {
            level: Ewma::new(half_life),
            sq: Ewma::new(half_life),
            floor,
        }
    }

    /// `(x against the recent level in recent standard deviations, exp(x - level))`, like
    /// [`Predicted::feature`].
    fn feature(&self, x: f64) -> Option<(f64, f64)> {
        let m = self.level.mean()?;
        let v = self.sq.mean()?;
        Some(((x - m) / v.sqrt().max(self.floor), (x - m).exp()))
    }

    fn update(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if let Some(m) = self.level.mean() {
            self.sq.update((x - m) * (x - m));
        }
        self.level.update(x);
    }
}

/// Lowest recent standard deviation of a log activity level (range, volume, volume per range).
const LOG_SD_FLOOR: f64 = 0.05;

/// A reason in words: what feature `name` measured, from its plain-unit value `shown` and the
/// market's beside it (`market`, NaN where none).
#[must_use]
pub fn describe(name: &str, shown: f64, market: f64) -> String {
    // A return and `out_and_back` are log changes, said as log percents (100 ln of the price
    // ratio: a close that halved reads -69.31%). Said as price changes they would read better,
    // but the sentences are in the decision log (a risk or stress answer's anomaly flags), and a
    // recorded decision must replay to the same text: a new wording needs a replay rule first.
    let pct = 100.0 * shown;
    let own = match name.trim_end_matches("_vs_market") {
        "return" => format!("hourly return {pct:+.2}%"),
        "range" => format!("high-low range {shown:.1}x what its recent behaviour predicts for the hour"),
        "volume" => format!("volume {shown:.1}x what its recent behaviour predicts for the hour"),
        "volume_per_range" => {
            format!("volume per unit of price range {shown:.1}x its usual over the last 3 hours")
        }
        "out_and_back" => format!("price went {pct:.1}% out and back over 5 hours"),
        "wick" => format!("wick {pct:.2}% beyond the candle body"),
        "pool_price" => format!("pool price {pct:+.1}% since the last snapshot"),
        "lp_supply" => format!("LP supply {pct:+.1}% since the last snapshot"),
        "lp_value" => format!("liquidity per LP token {pct:+.1}% since the last snapshot"),
        "pool_volume" => format!("pool volume rate {shown:.1}x its recent mean"),
        "pool_tx" => format!("pool transaction rate {shown:.1}x its recent mean"),
        "cex_gap" => format!("pool price {pct:+.2}% beyond the exchange's range of the hour"),
        other => format!("{other} = {shown}"),
    };
    if !name.ends_with("_vs_market") {
        return own;
    }
    match name {
        "return_vs_market" if market.is_finite() => {
            format!("{own}, the market's {:+.2}%", 100.0 * market)
        }
        "range_vs_market" | "volume_vs_market" | "volume_per_range_vs_market" if market.is_finite() => {
            format!("{own}, the market's {market:.1}x")
        }
        _ => format!("{own}, beyond the market's"),
    }
}

/// Candles for the tests: a gentle sine around 100, a 0.8% range, constant volume.
#[cfg(test)]
pub(crate) fn flat(n: usize) -> Vec<crate::candles::Candle> {
    (0..n)
        .map(|i| {
            let p = 100.0 * (1.0 + 0.01 * ((i as f64) * 0.7).sin());
            crate::candles::Candle {
                open_time: i as i64 * crate::time::HOUR_MS,
                open: p,
                high: p * 1.004,
                low: p * 0.996,
                close: p,
                volume: 10.0,
                quote_volume: 1000.0,
            }
        })
        .collect()
}
