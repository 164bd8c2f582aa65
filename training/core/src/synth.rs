//! Synthetic hourly candles from a GARCH(1,1) price process, for tests, demos and the sample
//! data the repository ships (`data/sample`): never a substitute for market data in evaluation.
//!
//! Deterministic for a seed: a SplitMix64 generator and Box-Muller normals, no RNG crate.

use crate::candles::Candle;
use crate::time::HOUR_MS;

/// Deterministic uniform and normal draws.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// How to generate one asset.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Hours to generate (gaps included).
    pub hours: usize,
    /// Open time of the first candle, Unix ms on the hour.
    pub start_ms: i64,
    /// Random seed.
    pub seed: u64,
    /// GARCH(1,1) on raw hourly log returns: omega.
    pub omega: f64,
    /// GARCH alpha.
    pub alpha: f64,
    /// GARCH beta.
    pub beta: f64,
    /// Probability per hour that an outage of 1 to 6 hours starts.
    pub gap_rate: f64,
    /// First open price.
    pub start_price: f64,
    /// Typical quote volume per hour.
    pub quote_volume: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            hours: 24 * 120,
            start_ms: 1_577_836_800_000, // 2020-01-01
            seed: 1,
            omega: 2e-7,
            alpha: 0.08,
            beta: 0.90,
            gap_rate: 0.002,
            start_price: 100.0,
            quote_volume: 5e6,
        }
    }
}

impl SynthConfig {
    /// Settings of asset `index` (1-based) in a generated panel: assets differ in level and
    /// persistence of volatility and in liquidity. Asset i uses seed `seed + i`.
    #[must_use]
    pub fn panel_asset(index: u64, seed: u64, hours: usize, start_ms: i64) -> Self {
        Self {
            hours,
            start_ms: start_ms.div_euclid(HOUR_MS) * HOUR_MS,
            seed: seed + index,
            omega: 1e-7 * index as f64,
            alpha: 0.05 + 0.02 * (index % 3) as f64,
            beta: 0.90 - 0.02 * (index % 3) as f64,
            quote_volume: 2e7 / (index * index).max(1) as f64,
            ..Self::default()
        }
    }
}

/// Generates candles: GARCH returns, a daily volatility cycle, highs and lows beyond the
/// open-close range, volume that rises with the move and drifts through liquidity regimes with
/// sudden drains, and occasional outages (absent rows).
#[must_use]
pub fn generate(config: &SynthConfig) -> Vec<Candle> {
    let mut rng = Rng::new(config.seed);
    let mut variance = config.omega / (1.0 - config.alpha - config.beta).max(1e-6);
    let mut price = config.start_price;
    let mut out = Vec::with_capacity(config.hours);
    let mut outage = 0usize;
    // Log liquidity: a slow AR(1) with occasional drains, so illiquidity has regimes.
    let mut liquidity = 0.0f64;
    for h in 0..config.hours {
        liquidity = 0.995 * liquidity + 0.05 * rng.normal();
        if rng.uniform() < 0.002 {
            liquidity -= 1.5;
        }
        let hour_of_day = h % 24;
        let cycle = 1.0 + 0.3 * (std::f64::consts::TAU * hour_of_day as f64 / 24.0).sin();
        let sigma = (variance * cycle).sqrt();
        let r = sigma * rng.normal();
        variance = config.omega + config.alpha * r * r + config.beta * variance;
        let open = price;
        let close = open * r.exp();
        price = close;
        if outage == 0 && rng.uniform() < config.gap_rate {
            let length = 1 + (rng.uniform() * 6.0) as usize;
            outage = length;
        }
        if outage > 0 {
            outage -= 1;
            continue;
        }
        let high = open.max(close) * (sigma * 0.6 * rng.normal().abs()).exp();
        let low = open.min(close) / (sigma * 0.6 * rng.normal().abs()).exp();
        let quote_volume =
            config.quote_volume * (liquidity + 0.5 * rng.normal()).exp() * (1.0 + 50.0 * r.abs());
        let vwap = low + (high - low) * rng.uniform();
        let open_time = config.start_ms + h as i64 * HOUR_MS;
        out.push(Candle {
            open_time,
            open,
            high,
            low,
            close,
            volume: quote_volume / vwap,
            quote_volume,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candles::validate_candles;

    #[test]
    fn generated_candles_pass_validation_and_have_gaps() {
        let config = SynthConfig {
            hours: 5000,
            ..SynthConfig::default()
        };
        let candles = generate(&config);
        validate_candles(&candles).unwrap();
        assert!(candles.len() < 5000 && candles.len() > 4800, "{}", candles.len());
        assert_eq!(generate(&config), candles, "same seed, same candles");
    }
}
