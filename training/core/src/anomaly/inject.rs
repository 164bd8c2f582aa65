//! Our generator of synthetic manipulations, injected into real data to measure what the
//! detector finds: pump-and-dump, wash trading, a spoofed wick, a pool drain, a DEX-CEX gap, each
//! at three strengths.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::features::PoolSnapshot;
use crate::candles::Candle;

/// A manipulation pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// A rise over three hours on volume many times normal, then back over two hours.
    PumpAndDump,
    /// Volume many times normal for three hours, the price moving as it did.
    WashTrading,
    /// One hour's low far below its body, the close where it was.
    SpoofedWick,
    /// The pool's reserves and value cut by a fraction between two snapshots, LP supply
    /// unchanged, and left there.
    PoolDrain,
    /// One snapshot's pool price moved away from the exchange's (a trade along the constant
    /// product), arbitraged back by the next.
    DexCexGap,
}

impl Pattern {
    /// Every pattern.
    pub const ALL: [Self; 5] = [
        Self::PumpAndDump,
        Self::WashTrading,
        Self::SpoofedWick,
        Self::PoolDrain,
        Self::DexCexGap,
    ];

    /// Name, as in the reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::PumpAndDump => "pump_and_dump",
            Self::WashTrading => "wash_trading",
            Self::SpoofedWick => "spoofed_wick",
            Self::PoolDrain => "pool_drain",
            Self::DexCexGap => "dex_cex_gap",
        }
    }

    /// Whether it is injected into pool snapshots (else into candles).
    #[must_use]
    pub fn is_pool(self) -> bool {
        matches!(self, Self::PoolDrain | Self::DexCexGap)
    }

    /// The three strengths, weakest first, and what each means.
    #[must_use]
    pub fn strengths(self) -> [(f64, &'static str); 3] {
        match self {
            Self::PumpAndDump => [
                (0.10, "+10% over 3 h on 3x volume, back over 2 h"),
                (0.20, "+20% over 3 h on 6x volume, back over 2 h"),
                (0.40, "+40% over 3 h on 12x volume, back over 2 h"),
            ],
            Self::WashTrading => [
                (4.0, "4x volume for 3 h"),
                (8.0, "8x volume for 3 h"),
                (16.0, "16x volume for 3 h"),
            ],
            Self::SpoofedWick => [
                (0.05, "low 5% below the body"),
                (0.10, "low 10% below the body"),
                (0.20, "low 20% below the body"),
            ],
            Self::PoolDrain => [
                (0.25, "reserves cut by 25%"),
                (0.50, "reserves halved"),
                (0.75, "reserves cut by 75%"),
            ],
            Self::DexCexGap => [
                (0.02, "pool price 2% off the exchange"),
                (0.05, "pool price 5% off the exchange"),
                (0.10, "pool price 10% off the exchange"),
            ],
        }
    }

    /// Rows the pattern spans from where it starts.
    #[must_use]
    pub fn span(self) -> usize {
        match self {
            Self::PumpAndDump => 5,
            Self::WashTrading => 3,
            Self::SpoofedWick | Self::PoolDrain | Self::DexCexGap => 1,
        }
    }
}

/// Moves one candle's prices from factor `fo` at its open to `fc` at its close.
fn reprice(c: &mut Candle, fo: f64, fc: f64) {
    let (o, cl) = (c.open * fo, c.close * fc);
    c.high = (c.high * fo.max(fc)).max(o).max(cl);
    c.low = (c.low * fo.min(fc)).min(o).min(cl);
    c.open = o;
    c.close = cl;
}

/// Injects `pattern` at `strength` into candles starting at index `at`; returns the rows it
/// touched. Candles are left valid (SPEC's rules). A candle pattern only; pool patterns change
/// nothing and return an empty range.
pub fn inject_candles(candles: &mut [Candle], at: usize, pattern: Pattern, strength: f64) -> Range<usize> {
    let end = (at + pattern.span()).min(candles.len());
    match pattern {
        Pattern::PumpAndDump => {
            let peak = 1.0 + strength;
            let volume_x = 30.0 * strength;
            // Price factor at each hour's close: up over three hours, down over two.
            let at_close = |k: usize| match k {
                0..=2 => peak.powf((k + 1) as f64 / 3.0),
                3 => peak.sqrt(),
                _ => 1.0,
            };
            for (k, c) in candles[at..end].iter_mut().enumerate() {
                let fo = if k == 0 { 1.0 } else { at_close(k - 1) };
                let fc = at_close(k);
                reprice(c, fo, fc);
                c.volume *= volume_x;
                c.quote_volume *= volume_x * 0.5 * (fo + fc);
            }
        }
        Pattern::WashTrading => {
            for c in &mut candles[at..end] {
                c.volume *= strength;
                c.quote_volume *= strength;
            }
        }
        Pattern::SpoofedWick => {
            for c in &mut candles[at..end] {
                c.low = c.low.min(c.open.min(c.close) * (1.0 - strength));
            }
        }
        Pattern::PoolDrain | Pattern::DexCexGap => return at..at,
    }
    at..end
}

/// Injects a pool pattern at snapshot `at`; returns the snapshots it touched (empty for a
/// candle pattern).
pub fn inject_pool(snaps: &mut [PoolSnapshot], at: usize, pattern: Pattern, strength: f64) -> Range<usize> {
    if at >= snaps.len() {
        return at..at;
    }
    match pattern {
        Pattern::PoolDrain => {
            let keep = 1.0 - strength;
            for s in &mut snaps[at..] {
                s.reserve_asset *= keep;
                s.reserve_quote *= keep;
                s.reserve_usd *= keep;
            }
        }
        Pattern::DexCexGap => {
            // A trade along x*y = k moving the price by (1 + g).
            let root = (1.0 + strength).sqrt();
            let s = &mut snaps[at];
            s.reserve_asset /= root;
            s.reserve_quote *= root;
            s.reserve_usd *= root;
        }
        _ => return at..at,
    }
    at..at + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candles::validate_candles;
    use crate::time::HOUR_MS;

    fn candles(n: usize) -> Vec<Candle> {
        (0..n)
            .map(|i| Candle {
                open_time: i as i64 * HOUR_MS,
                open: 100.0,
                high: 101.0,
                low: 99.0,
                close: 100.0,
                volume: 5.0,
                quote_volume: 500.0,
            })
            .collect()
    }

    #[test]
    fn pump_and_dump_rises_then_returns_on_volume() {
        let mut c = candles(20);
        let r = inject_candles(&mut c, 10, Pattern::PumpAndDump, 0.2);
        assert_eq!(r, 10..15);
        assert!((c[12].close / 100.0 - 1.2).abs() < 1e-12);
        assert!((c[14].close - 100.0).abs() < 1e-9);
        assert!((c[11].volume / 5.0 - 6.0).abs() < 1e-9);
        assert_eq!(c[15], candles(20)[15]);
        assert!(validate_candles(&c).is_ok());
    }

    #[test]
    fn wick_and_wash_keep_the_close() {
        let mut c = candles(5);
        inject_candles(&mut c, 2, Pattern::SpoofedWick, 0.1);
        assert!((c[2].low - 90.0).abs() < 1e-9 && (c[2].close - 100.0).abs() < 1e-12);
        inject_candles(&mut c, 1, Pattern::WashTrading, 8.0);
        assert!((c[1].quote_volume - 4000.0).abs() < 1e-9 && c[1].close == 100.0);
        assert!(validate_candles(&c).is_ok());
    }

    #[test]
    fn pool_patterns_move_what_they_say() {
        let s = PoolSnapshot {
            time_ms: 0,
            reserve_asset: 1000.0,
            reserve_quote: 10.0,
            reserve_usd: 40_000.0,
            total_supply: 50.0,
            tx_count: 10.0,
            volume_usd: 1e6,
        };
        let mut v = vec![s; 4];
        inject_pool(&mut v, 2, Pattern::PoolDrain, 0.5);
        assert_eq!(v[1], s);
        assert!((v[3].reserve_usd - 20_000.0).abs() < 1e-9 && v[3].total_supply == 50.0);
        let mut v = vec![s; 3];
        inject_pool(&mut v, 1, Pattern::DexCexGap, 0.05);
        let ratio = v[1].implied_price_usd() / s.implied_price_usd();
        assert!((ratio - 1.05).abs() < 1e-12);
        assert!((v[1].reserve_asset * v[1].reserve_quote - 10_000.0).abs() < 1e-6);
        assert_eq!(v[2], s);
    }
}
