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
/// Hours summed by `volume_per_range`: volume for the price range it moved, over three hours.
const FLOW_HOURS: usize = 3;

/// The pool features, in row order.
pub const POOL_FEATURES: [&str; 7] = [
    "reserve_asset",
    "reserve_quote",
    "tvl",
    "lp_supply",
    "pool_volume",
    "pool_tx",
    "cex_gap",
];
/// Index of `cex_gap`, the one pool feature that needs the asset's exchange candles.
pub const GAP_FEATURE: usize = 6;

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
    by_hour: HashMap<i64, Vec<f64>>,
}

impl MarketContext {
    /// From each asset's rows ([`candle_rows`]).
    #[must_use]
    pub fn new(assets: &[&[Option<Row>]], min_assets: usize) -> Self {
        let n = CANDLE_FEATURES.len();
        let mut cols: HashMap<i64, Vec<Vec<f64>>> = HashMap::new();
        for rows in assets {
            for r in rows.iter().flatten() {
                let e = cols.entry(r.time_ms).or_insert_with(|| vec![Vec::new(); n]);
                e[0].push(r.ret.0);
                for (j, col) in e.iter_mut().enumerate().skip(1) {
                    col.push(r.values[j]);
                }
            }
        }
        let by_hour = cols
            .into_iter()
            .filter(|(_, c)| c[0].len() >= min_assets.max(1))
            .map(|(t, mut c)| (t, c.iter_mut().map(|v| median(v)).collect()))
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
        let m = self.by_hour.get(&row.time_ms)?;
        let (r, sigma) = row.ret;
        let mut values = row.values.clone();
        values[0] = ((r - m[0]).abs() / sigma).asinh();
        for j in 1..values.len() {
            values[j] -= m[j];
        }
        // The market's plain values: its return, and its surprises as ratios (not the wick's).
        let market = m
            .iter()
            .enumerate()
            .map(|(j, x)| match j {
                0 => *x,
                3 | 5 => f64::NAN,
                _ => x.exp(),
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
    let (mut r2, mut range, mut vol, mut log_vol) =
        (Ewma::new(hl), Ewma::new(hl), Ewma::new(hl), Ewma::new(hl));
    // Volume per unit of range over the last three hours, on a log scale, and its recent level.
    let mut flow = Ewma::new(hl);
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
        let history = ((c.open_time - first.open_time) / HOUR_MS) as usize;
        let i = out.len();
        let recent = &candles[(i + 1).saturating_sub(FLOW_HOURS)..=i];
        let fl = vol.mean().zip(range.mean()).map(|(m, gm)| {
            let v3: f64 = recent.iter().map(quote_volume).sum();
            let g3: f64 = recent.iter().map(|c| (c.high / c.low).ln().max(0.0)).sum();
            ((v3 + 0.05 * m + 1e-12) / (g3 + 0.05 * gm + 1e-9)).ln()
        });
        if r.is_finite() {
            trip.push_back(r);
            if trip.len() > TRIP_HOURS {
                trip.pop_front();
            }
        }
        // Path length less net move: a price that went out and came back.
        let travelled: f64 = trip.iter().map(|x| x.abs()).sum();
        let round_trip = travelled - trip.iter().sum::<f64>().abs();
        let row = match (r2.mean(), range.mean(), lv, log_vol.mean(), fl, flow.mean()) {
            (Some(var), Some(gbar), Some(lv), Some(lbar), Some(fl), Some(fbar))
                if history >= config.candle_warmup_hours =>
            {
                let sigma = (var * gap_hours).sqrt().max(1e-5);
                let (wick_frac, wick_log) = wick(c);
                let values = vec![
                    (r.abs() / sigma).asinh(),
                    ((g + 1e-5) / (gbar + 1e-5)).ln(),
                    lv - lbar,
                    (wick_log / sigma).asinh(),
                    fl - fbar,
                    (round_trip / (sigma * (TRIP_HOURS as f64).sqrt())).asinh(),
                ];
                let shown = vec![
                    r,
                    (g + 1e-5) / (gbar + 1e-5),
                    (lv - lbar).exp(),
                    wick_frac,
                    (fl - fbar).exp(),
                    round_trip,
                ];
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
        range.update(g);
        if let Some(lv) = lv {
            log_vol.update(lv);
        }
        if let Some(fl) = fl {
            flow.update(fl);
        }
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

/// The exchange price at `time_ms`: the open of the candle holding that time moved toward its
/// close by the fraction of the hour passed. `None` without that hour's candle.
#[must_use]
pub fn cex_price_at(candles: &[Candle], time_ms: i64) -> Option<f64> {
    let hour = time_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let i = candles.binary_search_by_key(&hour, |c| c.open_time).ok()?;
    let c = &candles[i];
    let frac = (time_ms - hour) as f64 / HOUR_MS as f64;
    Some(c.open + (c.close - c.open) * frac)
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
    let mut scaled: Vec<Scaled> = (0..4).map(|_| Scaled::new(hl, 1e-4)).collect();
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
        let changes = [
            (s.reserve_asset / prev.reserve_asset).ln(),
            (s.reserve_quote / prev.reserve_quote).ln(),
            (s.reserve_usd / prev.reserve_usd).ln(),
            (s.total_supply / prev.total_supply).ln(),
        ];
        let vol_rate = ((s.volume_usd - prev.volume_usd) / dt).max(0.0);
        let tx_rate = ((s.tx_count - prev.tx_count) / dt).max(0.0);
        let gap = cex
            .and_then(|c| cex_price_at(c, s.time_ms))
            .map(|p| (s.implied_price_usd() / p).ln())
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
        "range" => format!("high-low range {shown:.1}x its recent mean"),
        "volume" => format!("volume {shown:.1}x its recent typical level"),
        "volume_per_range" => format!("3-hour volume per unit of price range {shown:.1}x its recent level"),
        "round_trip" => format!("price went {pct:.1}% out and back over 5 hours"),
        "wick" => format!("wick {pct:.2}% beyond the candle body"),
        "reserve_asset" => format!("asset reserve {pct:+.1}% since the last snapshot"),
        "reserve_quote" => format!("quote reserve {pct:+.1}% since the last snapshot"),
        "tvl" => format!("pool value {pct:+.1}% since the last snapshot"),
        "lp_supply" => format!("LP supply {pct:+.1}% since the last snapshot"),
        "pool_volume" => format!("pool volume rate {shown:.1}x its recent mean"),
        "pool_tx" => format!("pool transaction rate {shown:.1}x its recent mean"),
        "cex_gap" => format!("pool price {pct:+.2}% from the exchange price"),
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
