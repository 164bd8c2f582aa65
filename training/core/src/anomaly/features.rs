//! Activity features: each asset-hour and each pool snapshot measured against that market's own
//! recent behaviour (exponentially weighted, from strictly earlier data), so that one pooled
//! density model can judge every market on one scale.
//!
//! Every feature at time `t` uses the candle or snapshot at `t` and state built from data before
//! `t` only: scoring a window never reads past its last row, and cutting data after `t` changes
//! nothing at or before `t`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::candles::Candle;
use crate::time::HOUR_MS;

/// The candle features without a market reference, in row order. Each is scale-free: a ratio
/// to, or a multiple of, the market's own recent behaviour.
pub const CANDLE_FEATURES: [&str; 6] = [
    "return",
    "range",
    "volume",
    "wick",
    "volume_per_range",
    "round_trip",
];
/// The same against the whole market (see [`MarketContext`]): the return apart from the
/// market's, and range, volume and wick surprises beyond the market's median surprise that hour.
pub const MARKET_FEATURES: [&str; 6] = [
    "return_vs_market",
    "range_vs_market",
    "volume_vs_market",
    "wick_vs_market",
    "volume_per_range_vs_market",
    "round_trip_vs_market",
];
/// Hours of `round_trip`: how far the price went and came back over the last five hours.
const TRIP_HOURS: usize = 5;
/// Hours averaged by `volume_per_range`: each hour's volume against its prediction (level and
/// hour of day) less its range against its prediction, over three hours.
const FLOW_HOURS: usize = 3;

/// The pool features, in row order.
/// The first three are changes since the last snapshot, each free of the quote token's USD price:
/// the pool's own price (`reserve_quote / reserve_asset`), the LP supply, and the liquidity per
/// LP token (`sqrt(reserve_asset reserve_quote) / total_supply`: neither a trade along the curve
/// nor adding or removing liquidity moves it; fees raise it slowly, and only reserves leaving
/// without their LP tokens cut it). The pool's liquidity is their sum, so it is not a feature.
pub const POOL_FEATURES: [&str; 6] = [
    "pool_price",
    "lp_supply",
    "lp_value",
    "pool_volume",
    "pool_tx",
    "cex_gap",
];
/// Index of `cex_gap`, the one pool feature that needs the asset's exchange candles.
pub const GAP_FEATURE: usize = 5;

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
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            candle_half_life_hours: 168.0,
            candle_warmup_hours: 168,
            pool_half_life_snapshots: 42.0,
            pool_warmup_snapshots: 30,
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

/// A log activity level (range, volume) against what its own recent behaviour predicts for the
/// hour: its recent level, plus that hour of the day's usual offset, plus the persistence of the
/// last hour's deviation; the miss in recent standard deviations of the misses. All from earlier
/// hours only. So "8x its usual volume" is judged against the hour of day, the hour before, and
/// how much that asset's volume usually varies.
#[derive(Debug, Clone)]
struct Predicted {
    level: Ewma,
    by_hour: [Ewma; 24],
    /// `E[d_t d_(t-1)]` and `E[d_(t-1)²]` of the deviations from level and hour.
    lag_cross: Ewma,
    lag_sq: Ewma,
    miss_sq: Ewma,
    /// The last hour's deviation and its time.
    last: Option<(i64, f64)>,
    floor: f64,
}

/// Half-life, in days, of each hour of the day's offset.
const HOUR_OF_DAY_HALF_LIFE_DAYS: f64 = 14.0;

impl Predicted {
    fn new(half_life: f64, floor: f64) -> Self {
        Self {
            level: Ewma::new(half_life),
            by_hour: [Ewma::new(HOUR_OF_DAY_HALF_LIFE_DAYS); 24],
            lag_cross: Ewma::new(half_life),
            lag_sq: Ewma::new(half_life),
            miss_sq: Ewma::new(half_life),
            last: None,
            floor,
        }
    }

    fn hour_of_day(time_ms: i64) -> usize {
        (time_ms.div_euclid(HOUR_MS) % 24) as usize
    }

    /// The deviation of `x` at `time_ms` from the level and the hour's offset.
    fn deviation(&self, time_ms: i64, x: f64) -> Option<f64> {
        let offset = self.by_hour[Self::hour_of_day(time_ms)].mean().unwrap_or(0.0);
        Some(x - self.level.mean()? - offset)
    }

    /// The part of the last hour's deviation expected to persist into `time_ms`.
    fn persisting(&self, time_ms: i64) -> f64 {
        match (self.last, self.lag_cross.mean(), self.lag_sq.mean()) {
            (Some((t, d)), Some(c), Some(v)) if time_ms - t == HOUR_MS && v > 1e-12 => {
                (c / v).clamp(0.0, 0.95) * d
            }
            _ => 0.0,
        }
    }

    /// `(miss in standard deviations, actual over predicted)`.
    fn feature(&self, time_ms: i64, x: f64) -> Option<(f64, f64)> {
        let miss = self.deviation(time_ms, x)? - self.persisting(time_ms);
        let sd = self.miss_sq.mean()?.sqrt().max(self.floor);
        Some((miss / sd, miss.exp()))
    }

    fn update(&mut self, time_ms: i64, x: f64) {
        if !x.is_finite() {
            return;
        }
        if let Some(d) = self.deviation(time_ms, x) {
            self.miss_sq.update((d - self.persisting(time_ms)).powi(2));
            if let Some((_, prev)) = self.last.filter(|(t, _)| time_ms - t == HOUR_MS) {
                self.lag_cross.update(d * prev);
                self.lag_sq.update(prev * prev);
            }
            // The hour's offset learns `x - level`, i.e. the deviation plus the offset it had.
            let hour = &mut self.by_hour[Self::hour_of_day(time_ms)];
            let offset = hour.mean().unwrap_or(0.0);
            hour.update(d + offset);
            self.last = Some((time_ms, d));
        }
        self.level.update(x);
    }
}

/// Lowest recent standard deviation of a log activity level (range, volume, volume per range).
const LOG_SD_FLOOR: f64 = 0.05;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The whole market each hour, from many assets' candle rows: the median return and the median
/// range, volume and wick surprise, where at least `min_assets` assets were scored that hour.
#[derive(Debug, Clone, Default)]
pub struct MarketContext {
    /// Per hour: the medians of the features (the return's as a plain return), then the medians
    /// of the plain values (for the reasons).
    by_hour: HashMap<i64, (Vec<f64>, Vec<f64>)>,
}

impl MarketContext {
    /// From each asset's rows ([`candle_rows`]).
    #[must_use]
    pub fn new(assets: &[&[Option<Row>]], min_assets: usize) -> Self {
        let n = CANDLE_FEATURES.len();
        let mut cols: HashMap<i64, Vec<Vec<f64>>> = HashMap::new();
        for rows in assets {
            for r in rows.iter().flatten() {
                let e = cols.entry(r.time_ms).or_insert_with(|| vec![Vec::new(); 2 * n]);
                e[0].push(r.ret.0);
                for j in 1..n {
                    e[j].push(r.values[j]);
                    e[n + j].push(r.shown[j]);
                }
            }
        }
        let by_hour = cols
            .into_iter()
            .filter(|(_, c)| c[0].len() >= min_assets.max(1))
            .map(|(t, mut c)| {
                let m: Vec<f64> = c
                    .iter_mut()
                    .map(|v| if v.is_empty() { f64::NAN } else { median(v) })
                    .collect();
                (t, (m[..n].to_vec(), m[n..].to_vec()))
            })
            .collect();
        Self { by_hour }
    }

    /// Hours covered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_hour.len()
    }

    /// Whether no hour is covered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_hour.is_empty()
    }

    /// `row` against the market ([`MARKET_FEATURES`]), or `None` for an hour not covered.
    #[must_use]
    pub fn adjust(&self, row: &Row) -> Option<Row> {
        let (m, plain) = self.by_hour.get(&row.time_ms)?;
        let (r, sigma) = row.ret;
        let mut values = row.values.clone();
        values[0] = ((r - m[0]).abs() / sigma).asinh();
        for j in 1..values.len() {
            values[j] -= m[j];
        }
        // The market's plain values: its return, and its median ratios (not the wick's).
        let market = (0..values.len())
            .map(|j| match j {
                0 => m[0],
                3 | 5 => f64::NAN,
                _ => plain[j],
            })
            .collect();
        Some(Row {
            time_ms: row.time_ms,
            values,
            shown: row.shown.clone(),
            market,
            ret: row.ret,
        })
    }
}

/// The quote volume of a candle, or `volume * close` when the quote volume is not given.
fn quote_volume(c: &Candle) -> f64 {
    if c.quote_volume > 0.0 {
        c.quote_volume
    } else {
        c.volume * c.close
    }
}

/// A volume-like quantity against its recent mean: `ln((x + 0.05 m) / m)`; 0 with no history of
/// activity and none now.
fn activity_ratio(x: f64, mean: f64) -> f64 {
    let tiny = 1e-12;
    ((x + 0.05 * mean + tiny) / (mean + tiny)).ln()
}

/// The larger wick, as a fraction of the price (how far the low went below the body, or the
/// high above it) and as a log distance.
fn wick(c: &Candle) -> (f64, f64) {
    let below = (c.open.min(c.close) / c.low).ln().max(0.0);
    let above = (c.high / c.open.max(c.close)).ln().max(0.0);
    if below >= above {
        (1.0 - (-below).exp(), below)
    } else {
        (above.exp() - 1.0, above)
    }
}

/// Candle rows for one asset's candles (oldest first), without a market reference (see
/// [`MarketContext::adjust`]). `None` for the hours still warming up.
#[must_use]
pub fn candle_rows(config: &FeatureConfig, candles: &[Candle]) -> Vec<Option<Row>> {
    let hl = config.candle_half_life_hours;
    let (mut r2, mut range, mut vol) = (Ewma::new(hl), Ewma::new(hl), Ewma::new(hl));
    // Log range, log volume and log volume per unit of range over the last three hours, each
    // against its own recent level and dispersion.
    let mut log_range = Predicted::new(hl, LOG_SD_FLOOR);
    let mut log_vol = Predicted::new(hl, LOG_SD_FLOOR);
    let mut flow = Standardized::new(hl, LOG_SD_FLOOR);
    let mut flow_hours: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    // The last hours' log returns, for `round_trip`.
    let mut trip: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    let mut out = Vec::with_capacity(candles.len());
    let Some(first) = candles.first() else {
        return out;
    };
    out.push(None);
    for w in candles.windows(2) {
        let (prev, c) = (&w[0], &w[1]);
        let gap_hours = ((c.open_time - prev.open_time) / HOUR_MS).max(1) as f64;
        let r = (c.close / prev.close).ln();
        let g = (c.high / c.low).ln().max(0.0);
        let v = quote_volume(c);
        // Volume on a log scale against its recent typical (geometric) level, floored at 5% of
        // the recent mean so that empty hours stay finite.
        let lv = vol.mean().map(|m| (v + 0.05 * m + 1e-12).ln());
        // Range likewise, floored at 5% of its recent mean.
        let lg = range.mean().map(|m| (g + 0.05 * m + 1e-12).ln());
        let history = ((c.open_time - first.open_time) / HOUR_MS) as usize;
        // Volume for the range it moved: the hour's volume against its level and hour of day,
        // less the range's against theirs (they move together in ordinary hours), averaged over
        // the last three hours.
        let dvg = lv.zip(lg).and_then(|(lv, lg)| {
            Some(log_vol.deviation(c.open_time, lv)? - log_range.deviation(c.open_time, lg)?)
        });
        if gap_hours > 1.0 {
            flow_hours.clear();
        }
        if let Some(x) = dvg {
            flow_hours.push_back(x);
            if flow_hours.len() > FLOW_HOURS {
                flow_hours.pop_front();
            }
        }
        let fl = (dvg.is_some() && flow_hours.len() == FLOW_HOURS)
            .then(|| flow_hours.iter().sum::<f64>() / FLOW_HOURS as f64);
        if r.is_finite() {
            trip.push_back(r);
            if trip.len() > TRIP_HOURS {
                trip.pop_front();
            }
        }
        // Path length less net move: a price that went out and came back.
        let travelled: f64 = trip.iter().map(|x| x.abs()).sum();
        let round_trip = travelled - trip.iter().sum::<f64>().abs();
        let predicted = |p: &Predicted, x: Option<f64>| p.feature(c.open_time, x?);
        let (zg, zv, zf) = (
            predicted(&log_range, lg),
            predicted(&log_vol, lv),
            fl.and_then(|x| flow.feature(x)),
        );
        let row = match (r2.mean(), zg, zv, zf) {
            (Some(var), Some((zg, g_ratio)), Some((zv, v_ratio)), Some((zf, f_ratio)))
                if history >= config.candle_warmup_hours =>
            {
                let sigma = (var * gap_hours).sqrt().max(1e-5);
                let (wick_frac, wick_log) = wick(c);
                let values = vec![
                    (r.abs() / sigma).asinh(),
                    zg,
                    zv,
                    (wick_log / sigma).asinh(),
                    zf,
                    (round_trip / (sigma * (TRIP_HOURS as f64).sqrt())).asinh(),
                ];
                let shown = vec![r, g_ratio, v_ratio, wick_frac, f_ratio, round_trip];
                values.iter().all(|x| x.is_finite()).then_some(Row {
                    time_ms: c.open_time,
                    values,
                    shown,
                    market: vec![f64::NAN; CANDLE_FEATURES.len()],
                    ret: (r, sigma),
                })
            }
            _ => None,
        };
        out.push(row);
        if r.is_finite() {
            r2.update(r * r / gap_hours);
        }
        if let Some(lg) = lg {
            log_range.update(c.open_time, lg);
        }
        if let Some(lv) = lv {
            log_vol.update(c.open_time, lv);
        }
        if let Some(fl) = fl {
            flow.update(fl);
        }
        range.update(g);
        vol.update(v);
    }
    out
}

/// One DEX pool snapshot: the pool of `asset` against a quote token, as the subgraphs give it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// Snapshot time, Unix ms UTC.
    pub time_ms: i64,
    /// Reserve of the asset, token units.
    pub reserve_asset: f64,
    /// Reserve of the quote token, token units.
    pub reserve_quote: f64,
    /// Pool value, USD.
    pub reserve_usd: f64,
    /// LP tokens outstanding.
    pub total_supply: f64,
    /// Cumulative transaction count.
    pub tx_count: f64,
    /// Cumulative volume, USD.
    pub volume_usd: f64,
}

impl PoolSnapshot {
    /// The asset's USD price the pool implies: half the pool's value over the asset's reserve.
    #[must_use]
    pub fn implied_price_usd(&self) -> f64 {
        self.reserve_usd / (2.0 * self.reserve_asset)
    }
}

/// The exchange's price band around `time_ms`: the lowest low and highest high of the hour
/// holding that time and the hour before it (the pool's last trade may predate the hour).
/// `None` without that hour's candle.
#[must_use]
pub fn cex_band_at(candles: &[Candle], time_ms: i64) -> Option<(f64, f64)> {
    let hour = time_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let i = candles.binary_search_by_key(&hour, |c| c.open_time).ok()?;
    let c = &candles[i];
    let (mut low, mut high) = (c.low, c.high);
    if let Some(p) = i
        .checked_sub(1)
        .map(|k| &candles[k])
        .filter(|p| p.open_time == hour - HOUR_MS)
    {
        low = low.min(p.low);
        high = high.max(p.high);
    }
    Some((low, high))
}

/// How far a pool price lies beyond the exchange's band, as a log distance: positive above the
/// high, negative below the low, 0 inside.
fn beyond_band(price: f64, (low, high): (f64, f64)) -> f64 {
    if price > high {
        (price / high).ln()
    } else if price < low {
        (price / low).ln()
    } else {
        0.0
    }
}

/// A signed change over its recent root mean square: `asinh(x / rms)`.
struct Scaled {
    sq: Ewma,
    floor: f64,
}

impl Scaled {
    fn new(half_life: f64, floor: f64) -> Self {
        Self {
            sq: Ewma::new(half_life),
            floor,
        }
    }

    fn feature(&self, x: f64) -> Option<f64> {
        self.sq.mean().map(|m| (x / m.sqrt().max(self.floor)).asinh())
    }

    fn update(&mut self, x: f64) {
        self.sq.update(x * x);
    }
}

/// Pool rows for one pool's snapshots (oldest first). `cex` are the asset's exchange candles,
/// when known: without them (or without the hour) `cex_gap` is missing.
#[must_use]
pub fn pool_rows(config: &FeatureConfig, snaps: &[PoolSnapshot], cex: Option<&[Candle]>) -> Vec<Option<Row>> {
    let hl = config.pool_half_life_snapshots;
    let mut scaled: Vec<Scaled> = (0..GAP_FEATURE - 2).map(|_| Scaled::new(hl, 1e-4)).collect();
    let mut gap_scale = Scaled::new(hl, 1e-3);
    let (mut volume, mut tx) = (Ewma::new(hl), Ewma::new(hl));
    let mut out = Vec::with_capacity(snaps.len());
    if snaps.is_empty() {
        return out;
    }
    out.push(None);
    for (k, w) in snaps.windows(2).enumerate() {
        let (prev, s) = (&w[0], &w[1]);
        let dt = ((s.time_ms - prev.time_ms) as f64 / HOUR_MS as f64).max(0.25);
        let price = (s.reserve_quote / s.reserve_asset / (prev.reserve_quote / prev.reserve_asset)).ln();
        let liquidity =
            0.5 * (s.reserve_asset * s.reserve_quote / (prev.reserve_asset * prev.reserve_quote)).ln();
        let supply = (s.total_supply / prev.total_supply).ln();
        let changes = [price, supply, liquidity - supply];
        let vol_rate = ((s.volume_usd - prev.volume_usd) / dt).max(0.0);
        let tx_rate = ((s.tx_count - prev.tx_count) / dt).max(0.0);
        let gap = cex
            .and_then(|c| cex_band_at(c, s.time_ms))
            .map(|band| beyond_band(s.implied_price_usd(), band))
            .filter(|g| g.is_finite());
        // Scored once warm, and once the pool has had flow to measure the flow against.
        let warm = k + 1 >= config.pool_warmup_snapshots
            && volume.mean().is_some_and(|m| m > 0.0)
            && tx.mean().is_some_and(|m| m > 0.0);
        let row = if warm && changes.iter().all(|x| x.is_finite()) {
            let mut values: Vec<f64> = changes
                .iter()
                .zip(&scaled)
                .map(|(x, sc)| sc.feature(*x).unwrap_or(f64::NAN))
                .collect();
            values.push(volume.mean().map_or(f64::NAN, |m| activity_ratio(vol_rate, m)));
            values.push(tx.mean().map_or(f64::NAN, |m| activity_ratio(tx_rate, m)));
            values.push(gap.and_then(|g| gap_scale.feature(g.abs())).unwrap_or(f64::NAN));
            let mut shown: Vec<f64> = changes.iter().map(|x| x.exp() - 1.0).collect();
            shown.push(volume.mean().map_or(f64::NAN, |m| vol_rate / m.max(1e-12)));
            shown.push(tx.mean().map_or(f64::NAN, |m| tx_rate / m.max(1e-12)));
            shown.push(gap.map_or(f64::NAN, |g| g.exp() - 1.0));
            values[..GAP_FEATURE]
                .iter()
                .all(|x| x.is_finite())
                .then_some(Row {
                    time_ms: s.time_ms,
                    values,
                    shown,
                    market: vec![f64::NAN; POOL_FEATURES.len()],
                    ret: (f64::NAN, f64::NAN),
                })
        } else {
            None
        };
        out.push(row);
        for (x, sc) in changes.iter().zip(&mut scaled) {
            if x.is_finite() {
                sc.update(*x);
            }
        }
        volume.update(vol_rate);
        tx.update(tx_rate);
        if let Some(g) = gap {
            gap_scale.update(g);
        }
    }
    out
}

/// A reason in words: what feature `name` measured, from its plain-unit value `shown` and the
/// market's beside it (`market`, NaN where none).
#[must_use]
pub fn describe(name: &str, shown: f64, market: f64) -> String {
    let pct = 100.0 * shown;
    let own = match name.trim_end_matches("_vs_market") {
        "return" => format!("hourly return {pct:+.2}%"),
        "range" => format!("high-low range {shown:.1}x what its recent behaviour predicts for the hour"),
        "volume" => format!("volume {shown:.1}x what its recent behaviour predicts for the hour"),
        "volume_per_range" => {
            format!("volume per unit of price range {shown:.1}x its usual over the last 3 hours")
        }
        "round_trip" => format!("price went {pct:.1}% out and back over 5 hours"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(n: usize) -> Vec<Candle> {
        (0..n)
            .map(|i| {
                let p = 100.0 * (1.0 + 0.01 * ((i as f64) * 0.7).sin());
                Candle {
                    open_time: i as i64 * HOUR_MS,
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

    #[test]
    fn rows_warm_up_and_never_read_ahead() {
        let c = flat(400);
        let cfg = FeatureConfig::default();
        let rows = candle_rows(&cfg, &c);
        assert_eq!(rows.len(), 400);
        assert!(rows[..cfg.candle_warmup_hours].iter().all(Option::is_none));
        assert!(rows[cfg.candle_warmup_hours..].iter().all(Option::is_some));
        // Cutting the data after hour 300 changes nothing at or before it.
        let cut = candle_rows(&cfg, &c[..301]);
        // (Debug text: the rows hold NaN, which is never equal to itself.)
        assert_eq!(format!("{:?}", &cut[..]), format!("{:?}", &rows[..301]));
    }

    #[test]
    fn volume_ratio_reads_in_plain_units() {
        let mut c = flat(400);
        c[399].quote_volume = 10_000.0;
        let rows = candle_rows(&FeatureConfig::default(), &c);
        let r = rows[399].as_ref().unwrap();
        // Against the typical level, both with the floor of 5% of the recent mean (1,000).
        let want = 10_050.0 / 1_050.0;
        assert!((r.shown[2] - want).abs() < 1e-6, "{}", r.shown[2]);
        assert!(describe("volume", r.shown[2], f64::NAN).starts_with("volume 9.6x"));
    }

    #[test]
    fn volume_is_judged_against_the_hour_of_day_and_the_hour_before() {
        // Volume three times higher from 12:00 to 15:00 UTC every day: after a few weeks the
        // afternoon is expected, so an ordinary afternoon is no surprise, while the same
        // volume at night is.
        let n = 24 * 40;
        let mut c = flat(n);
        for (i, x) in c.iter_mut().enumerate() {
            if (12..16).contains(&(i % 24)) {
                x.quote_volume = 3000.0;
            }
        }
        let rows = candle_rows(&FeatureConfig::default(), &c);
        let afternoon = rows[n - 24 + 13].as_ref().unwrap();
        assert!(afternoon.values[2].abs() < 1.0, "{}", afternoon.values[2]);
        let mut night = c.clone();
        night[n - 24 + 3].quote_volume = 3000.0;
        let rows = candle_rows(&FeatureConfig::default(), &night);
        assert!(rows[n - 24 + 3].as_ref().unwrap().values[2] > 3.0);
    }

    #[test]
    fn volume_without_its_range_is_averaged_over_three_hours_against_both_predictions() {
        // Eight times the volume for three hours, the range as usual: a surprise from the first
        // hour, reading about 8x at the third (each hour's volume against its prediction, less
        // its range against its own), while 8x volume with 8x the range is no surprise.
        let n = 24 * 30;
        let mut c = flat(n + 3);
        for x in &mut c[n..] {
            x.quote_volume *= 8.0;
        }
        let rows = candle_rows(&FeatureConfig::default(), &c);
        let z: Vec<f64> = (n..n + 3).map(|i| rows[i].as_ref().unwrap().values[4]).collect();
        assert!(z.iter().all(|&z| z > 5.0), "{z:?}");
        let third = rows[n + 2].as_ref().unwrap().shown[4];
        assert!((third / 8.0 - 1.0).abs() < 0.1, "{third}");
        let mut moving = flat(n + 3);
        for x in &mut moving[n..] {
            x.quote_volume *= 8.0;
            x.high = x.open * 1.032;
            x.low = x.open * 0.968;
        }
        let rows = candle_rows(&FeatureConfig::default(), &moving);
        let z = rows[n + 2].as_ref().unwrap().values[4];
        assert!(z.abs() < 1.5, "{z}");
    }

    #[test]
    fn a_pool_price_is_measured_beyond_the_exchange_band() {
        let c = flat(3);
        let (low, high) = cex_band_at(&c, 2 * HOUR_MS + 600_000).unwrap();
        // The band spans this hour and the one before.
        assert_eq!(low, c[1].low.min(c[2].low));
        assert_eq!(high, c[1].high.max(c[2].high));
        assert_eq!(beyond_band(0.5 * (low + high), (low, high)), 0.0);
        assert!((beyond_band(high * 1.05, (low, high)) - 1.05f64.ln()).abs() < 1e-12);
        assert!(beyond_band(low * 0.9, (low, high)) < 0.0);
        assert!(cex_band_at(&c, 5 * HOUR_MS).is_none());
    }

    #[test]
    fn liquidity_per_lp_token_moves_only_when_reserves_leave_without_their_tokens() {
        let snap = |k: usize, scale: f64, supply: f64| PoolSnapshot {
            time_ms: k as i64 * 4 * HOUR_MS,
            reserve_asset: 1000.0 * scale * (1.0 + 0.01 * (k as f64).sin()),
            reserve_quote: 10.0 * scale / (1.0 + 0.01 * (k as f64).sin()),
            reserve_usd: 40_000.0 * scale,
            total_supply: supply,
            tx_count: 10.0 * k as f64,
            volume_usd: 1e5 * k as f64,
        };
        let cfg = FeatureConfig::default();
        let mut snaps: Vec<PoolSnapshot> = (0..60).map(|k| snap(k, 1.0, 50.0)).collect();
        // An LP exit: half the reserves and half the tokens.
        snaps[55] = snap(55, 0.5, 25.0);
        for (k, s) in snaps.iter_mut().enumerate().skip(56) {
            *s = snap(k, 0.5, 25.0);
        }
        let exit = pool_rows(&cfg, &snaps, None);
        let r = exit[55].as_ref().unwrap();
        assert!((r.shown[1] + 0.5).abs() < 1e-9 && r.shown[2].abs() < 1e-9);
        // A drain: the reserves halve, the tokens stay.
        let mut drained: Vec<PoolSnapshot> = (0..60).map(|k| snap(k, 1.0, 50.0)).collect();
        crate::anomaly::inject::inject_pool(
            &mut drained,
            55,
            crate::anomaly::inject::Pattern::PoolDrain,
            0.5,
        );
        let r = pool_rows(&cfg, &drained, None)[55].clone().unwrap();
        assert!(r.shown[1].abs() < 1e-12 && (r.shown[2] + 0.5).abs() < 1e-9);
        assert!(r.values[2] < -3.0);
    }

    #[test]
    fn the_market_takes_medians_of_enough_assets() {
        let cfg = FeatureConfig::default();
        let a = flat(300);
        let mut b = flat(300);
        b[250].quote_volume = 8000.0;
        let (ra, rb) = (candle_rows(&cfg, &a), candle_rows(&cfg, &b));
        assert!(MarketContext::new(&[&ra, &rb], 3).is_empty());
        let m = MarketContext::new(&[&ra, &ra, &rb], 3);
        assert_eq!(m.len(), 300 - cfg.candle_warmup_hours);
        // The market's median volume surprise at hour 250 is the calm one: b's spike stands out.
        let adj = m.adjust(rb[250].as_ref().unwrap()).unwrap();
        let raw = rb[250].as_ref().unwrap();
        assert!((adj.values[2] - raw.values[2]).abs() < 1e-9);
        let calm = m.adjust(ra[250].as_ref().unwrap()).unwrap();
        assert!(calm.values[2].abs() < 1e-9 && calm.values[0].abs() < 1e-9);
        assert!(describe("volume_vs_market", adj.shown[2], adj.market[2]).contains("the market's 1.0x"));
    }
}
