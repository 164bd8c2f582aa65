//! Pool-snapshot features: the pool's own price, LP supply, liquidity per LP token, flow rates
//! and the pool price beyond the exchange's band.

use serde::{Deserialize, Serialize};

use super::{Ewma, FeatureConfig, Row};
use crate::candles::Candle;
use crate::time::HOUR_MS;

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
/// Index of `pool_volume`, missing where the pool's USD volume is not tracked ([`volume_tracked`]).
pub const VOLUME_FEATURE: usize = 3;
/// The pool features a snapshot may lack: its USD volume, untracked, and the exchange's price.
pub const OPTIONAL_POOL_FEATURES: [usize; 2] = [VOLUME_FEATURE, GAP_FEATURE];

/// Whether the pool's USD volume between two snapshots is known. The subgraphs count a trade's
/// `volumeUSD` only when they can price its tokens, so a counter that did not move while the
/// transaction count did is unknown volume, not none: `pool_volume` is then missing for that
/// snapshot, as `cex_gap` is without the exchange's hour, and the volume baseline skips it.
#[must_use]
pub fn volume_tracked(prev: &PoolSnapshot, s: &PoolSnapshot) -> bool {
    !(s.tx_count > prev.tx_count && s.volume_usd <= prev.volume_usd)
}

/// The change of the liquidity per LP token `value` as the model reads it: a fall smaller than
/// `bound` where the LP supply changed too (`supply`, a log change) is the protocol fee minted as
/// LP tokens with the mint or burn (SushiSwap's `feeTo`: 1/6 of the fees since the last one), read
/// as no change. A drain leaves the LP supply where it was, or falls further.
fn fee_mint_read(value: f64, supply: f64, bound: f64) -> f64 {
    if supply != 0.0 && value < 0.0 && value > -bound {
        0.0
    } else {
        value
    }
}

/// A volume-like quantity against its recent mean: `ln((x + 0.05 m) / m)`; 0 with no history of
/// activity and none now.
fn activity_ratio(x: f64, mean: f64) -> f64 {
    let tiny = 1e-12;
    ((x + 0.05 * mean + tiny) / (mean + tiny)).ln()
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
        let value = liquidity - supply;
        let changes = [price, supply, value];
        // What the model reads: a protocol fee mint's dilution is no change.
        let read = [price, supply, fee_mint_read(value, supply, config.fee_mint_bound)];
        let tracked = volume_tracked(prev, s);
        let vol_rate = ((s.volume_usd - prev.volume_usd) / dt).max(0.0);
        let tx_rate = ((s.tx_count - prev.tx_count) / dt).max(0.0);
        let gap = cex
            .and_then(|c| cex_band_at(c, s.time_ms))
            .map(|band| beyond_band(s.implied_price_usd(), band))
            .filter(|g| g.is_finite());
        // Scored once warm, and once the pool has had transactions to measure the flow against
        // (and tracked volume, for the volume feature).
        let warm = k + 1 >= config.pool_warmup_snapshots && tx.mean().is_some_and(|m| m > 0.0);
        let volume_mean = volume.mean().filter(|m| *m > 0.0 && tracked);
        let row = if warm && changes.iter().all(|x| x.is_finite()) {
            let mut values: Vec<f64> = read
                .iter()
                .zip(&scaled)
                .map(|(x, sc)| sc.feature(*x).unwrap_or(f64::NAN))
                .collect();
            values.push(volume_mean.map_or(f64::NAN, |m| activity_ratio(vol_rate, m)));
            values.push(tx.mean().map_or(f64::NAN, |m| activity_ratio(tx_rate, m)));
            values.push(gap.and_then(|g| gap_scale.feature(g.abs())).unwrap_or(f64::NAN));
            let mut shown: Vec<f64> = changes.iter().map(|x| x.exp() - 1.0).collect();
            shown.push(volume_mean.map_or(f64::NAN, |m| vol_rate / m.max(1e-12)));
            shown.push(tx.mean().map_or(f64::NAN, |m| tx_rate / m.max(1e-12)));
            shown.push(gap.map_or(f64::NAN, |g| g.exp() - 1.0));
            values
                .iter()
                .enumerate()
                .all(|(j, x)| x.is_finite() || OPTIONAL_POOL_FEATURES.contains(&j))
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
        for (x, sc) in read.iter().zip(&mut scaled) {
            if x.is_finite() {
                sc.update(*x);
            }
        }
        if tracked {
            volume.update(vol_rate);
        }
        tx.update(tx_rate);
        if let Some(g) = gap {
            gap_scale.update(g);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::flat;
    use super::*;

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
    fn steady(k: usize) -> PoolSnapshot {
        PoolSnapshot {
            time_ms: k as i64 * 4 * HOUR_MS,
            reserve_asset: 1000.0 * (1.0 + 0.01 * (k as f64).sin()),
            reserve_quote: 10.0 / (1.0 + 0.01 * (k as f64).sin()),
            reserve_usd: 40_000.0,
            total_supply: 50.0,
            tx_count: 10.0 * k as f64,
            volume_usd: 1e5 * k as f64 + 2e4 * (k as f64 * 0.7).sin(),
        }
    }

    #[test]
    fn volume_the_subgraph_did_not_price_is_missing_not_zero() {
        let cfg = FeatureConfig::default();
        let tracked: Vec<PoolSnapshot> = (0..60).map(steady).collect();
        // Snapshot 50: ten transactions, and the USD volume counter did not move.
        let mut untracked = tracked.clone();
        for s in &mut untracked[50..] {
            s.volume_usd -= tracked[50].volume_usd - tracked[49].volume_usd;
        }
        assert!(volume_tracked(&tracked[49], &tracked[50]));
        assert!(!volume_tracked(&untracked[49], &untracked[50]));
        // No transactions and no volume is a quiet pool, not an untracked one.
        let mut quiet = tracked[50];
        quiet.tx_count = tracked[49].tx_count;
        quiet.volume_usd = tracked[49].volume_usd;
        assert!(volume_tracked(&tracked[49], &quiet));

        let a = pool_rows(&cfg, &tracked, None);
        let b = pool_rows(&cfg, &untracked, None);
        let r = b[50].as_ref().expect("scored on its other features");
        assert!(r.values[VOLUME_FEATURE].is_nan() && r.shown[VOLUME_FEATURE].is_nan());
        assert_eq!(
            r.values[4],
            a[50].as_ref().unwrap().values[4],
            "the transactions still count"
        );
        // The baseline skipped it: the next snapshot's volume is measured against about the same
        // baseline as with the volume tracked, not against one pulled down by a zero (a quiet
        // snapshot, `c`, which counts).
        let next = |rows: &[Option<Row>]| rows[51].as_ref().unwrap().values[VOLUME_FEATURE];
        let mut zero = untracked.clone();
        for s in &mut zero[50..] {
            s.tx_count -= 10.0;
        }
        let c = pool_rows(&cfg, &zero, None);
        assert!((next(&b) - next(&a)).abs() < 0.02, "{} vs {}", next(&b), next(&a));
        assert!(next(&c) > next(&b) + 0.01, "{} vs {}", next(&c), next(&b));

        // A pool whose volume is never tracked is scored on the rest.
        let mut never = tracked.clone();
        for s in &mut never {
            s.volume_usd = 0.0;
        }
        let rows = pool_rows(&cfg, &never, None);
        assert!(
            rows[40]
                .as_ref()
                .is_some_and(|r| r.values[VOLUME_FEATURE].is_nan())
        );
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
    fn a_fee_mint_beside_a_mint_or_burn_is_no_change_but_a_drain_still_is() {
        // Fees grow the liquidity per LP token by 0.01% a snapshot; at 55 an LP joins with 10%
        // more reserves and the tokens minted for them, plus `extra` more tokens (the protocol
        // fee minted with it when positive), and `fall` of the reserves leave on their own.
        let series = |extra: f64, fall: f64| -> Vec<PoolSnapshot> {
            (0..60)
                .map(|k| {
                    let grow = 1.0001f64.powi(k as i32);
                    let (scale, supply) = if k >= 55 {
                        (1.1 * (1.0 - fall), 55.0 * (1.0 + extra))
                    } else {
                        (1.0, 50.0)
                    };
                    PoolSnapshot {
                        reserve_asset: 1000.0 * grow * scale,
                        reserve_quote: 10.0 * grow * scale,
                        reserve_usd: 40_000.0 * grow * scale,
                        total_supply: supply,
                        ..steady(k)
                    }
                })
                .collect()
        };
        let on = FeatureConfig::default();
        let off = FeatureConfig {
            fee_mint_bound: 0.0,
            ..on
        };
        assert!((on.fee_mint_bound + (-0.005f64).ln_1p()).abs() < 1e-15);
        let row =
            |cfg: &FeatureConfig, snaps: &[PoolSnapshot]| pool_rows(cfg, snaps, None)[55].clone().unwrap();
        // A 0.1% fee mint with the join: no change as read, the raw change shown.
        let mint = series(0.001, 0.0);
        let r = row(&on, &mint);
        assert!(r.values[2].abs() < 1e-12, "{:?}", r.values);
        assert!((r.shown[2] + 0.0009).abs() < 1e-5, "{:?}", r.shown);
        assert!(row(&off, &mint).values[2] < -2.5);
        // Without the bound's conditions it reads as before: a fall beyond the bound with the
        // join, and a fall within it with the LP supply unchanged.
        let beyond = series(0.02, 0.0);
        // (`cex_gap`, the last, is missing without exchange candles: NaN.)
        let read =
            |cfg: &FeatureConfig, snaps: &[PoolSnapshot]| row(cfg, snaps).values[..GAP_FEATURE].to_vec();
        assert_eq!(read(&on, &beyond), read(&off, &beyond));
        let quiet: Vec<PoolSnapshot> = series(0.0, 0.0)
            .into_iter()
            .enumerate()
            .map(|(k, mut s)| {
                s.total_supply = 50.0;
                if k >= 55 {
                    s.reserve_asset *= 0.999 / 1.1;
                    s.reserve_quote *= 0.999 / 1.1;
                }
                s
            })
            .collect();
        let r = row(&on, &quiet);
        assert!(r.values[2] < -2.5);
        assert_eq!(read(&on, &quiet), read(&off, &quiet));
        // A drain with the join is read whole.
        let drain = series(0.001, 0.5);
        assert!(row(&on, &drain).values[2] < -5.0);
    }

    #[test]
    fn detectors_fitted_before_the_fee_mint_bound_read_pools_as_they_were_fitted() {
        let old = r#"{"candle_half_life_hours":168.0,"candle_warmup_hours":168,"pool_half_life_snapshots":42.0,"pool_warmup_snapshots":30}"#;
        let cfg: FeatureConfig = serde_json::from_str(old).unwrap();
        assert!(cfg.fee_mint_bound == 0.0);
        assert!(!cfg.trip_restarts_at_gaps);
        assert_eq!(serde_json::to_string(&cfg).unwrap(), old);
        assert!(
            serde_json::to_string(&FeatureConfig::default())
                .unwrap()
                .contains("fee_mint_bound")
        );
        assert!(
            serde_json::to_string(&FeatureConfig::default())
                .unwrap()
                .contains("\"trip_restarts_at_gaps\":true")
        );
    }
}
