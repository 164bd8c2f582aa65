//! Model inputs, computed from candles alone and observable at the origin: one source of truth
//! for the trainer, `evaluate --model` and the server (the spec and scaler travel in the artifact).
//!
//! Two parts per origin `t`:
//! - a *static* vector: log trailing realized variances (4/24/168/720 h), range-based variances
//!   (Parkinson 24/168 h, Garman-Klass 24 h), quote volume relative to its 30-day median, the
//!   shortage scores `M_H(t) / median`, illiquidity, time of day and week, and a market factor
//!   (BTC's trailing variances, with a flag saying whether it is available);
//! - a *sequence* of the last `window` hours, scale-free: the return and squared return over the
//!   trailing hourly variance at `t`, the Parkinson variance likewise, relative quote volume, and a
//!   missing-candle flag.

use serde::{Deserialize, Serialize};

use crate::grid::Asset;
use crate::panel::PreparedAsset;
use crate::targets::{SHORTAGE_REFERENCE_HOURS, covered, realized_variance, rolling_mean, trailing_median};

/// Version of the feature definitions this build trains with. An artifact built on a version
/// outside [`FEATURE_VERSIONS`] is refused; one inside is served with its own version's features.
///
/// - 2 (stop 64): a market variance that is missing (a gap in BTC's candles) makes the market
///   factor unavailable at that hour (`market_available` 0, the asset's own levels).
/// - 1: it was taken as the floor's log, about -46, and flagged available (`f64::max` returns
///   the number beside a NaN), on about a day after each gap of two hours or more.
pub const FEATURE_VERSION: u32 = 2;

/// The feature versions this build computes.
pub const FEATURE_VERSIONS: std::ops::RangeInclusive<u32> = 1..=FEATURE_VERSION;

/// Names of the static features, in order.
pub const STATIC_NAMES: [&str; 19] = [
    "ln_rv4",
    "ln_rv24",
    "ln_rv168",
    "ln_rv720",
    "ln_parkinson24",
    "ln_parkinson168",
    "ln_garman_klass24",
    "ln_rel_quote_volume24",
    "ln_shortage_score4",
    "ln_shortage_score24",
    "ln_shortage_score168",
    "ln_illiq24",
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
    "market_ln_rv24",
    "market_ln_rv168",
    "market_available",
];
/// Number of static features.
pub const N_STATIC: usize = STATIC_NAMES.len();
/// Index of ln RV24, ln RV168, ln RV720 (the HAR regressors) among the static features.
pub const HAR_FEATURES: [usize; 3] = [1, 2, 3];
/// The windows of the HAR regressors' realized variances, hours: a forecast needs all three.
pub const HAR_WINDOWS: [usize; 3] = [24, 168, 720];
/// The asset's own variance levels: ln RV over 4, 24, 168 and 720 hours and the range-based
/// estimators (Parkinson over 24 and 168 hours, Garman-Klass over 24), which measure the same
/// variance several times more efficiently than squared returns; the default log-variance skip's
/// columns at 4 h and 24 h (walk-forward items 21 and 24).
pub const VARIANCE_FEATURES: [usize; 7] = [0, 1, 2, 3, 4, 5, 6];
/// Index of the shortage score for horizons 4, 24, 168.
pub const SHORTAGE_SCORE_FEATURES: [usize; 3] = [8, 9, 10];
/// Static features that are levels (log variances, illiquidity) rather than ratios.
pub const LEVEL_FEATURES: [usize; 10] = [0, 1, 2, 3, 4, 5, 6, 11, 16, 17];
/// Index of the market-available flag.
pub const MARKET_FLAG: usize = 18;

/// Names of the sequence channels, in order.
pub const CHANNEL_NAMES: [&str; 5] = [
    "scaled_return",
    "ln_scaled_sq_return",
    "ln_scaled_parkinson",
    "ln_rel_quote_volume",
    "missing",
];
/// Number of sequence channels.
pub const N_CHANNELS: usize = CHANNEL_NAMES.len();

/// The asset whose trailing variance is the market factor.
pub const MARKET_ASSET: &str = "BTCUSDT";

const LN_FLOOR: f64 = 1e-20;
const CLIP: f32 = 12.0;

/// What the model sees, recorded in the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// [`FEATURE_VERSION`] at training time.
    pub version: u32,
    /// Static feature names.
    pub static_names: Vec<String>,
    /// Sequence channel names.
    pub channel_names: Vec<String>,
    /// Hours of history in the sequence.
    pub window: usize,
    /// Market-factor asset.
    pub market_asset: String,
}

impl FeatureSpec {
    /// This build's features with a sequence of `window` hours.
    #[must_use]
    pub fn current(window: usize) -> Self {
        Self {
            version: FEATURE_VERSION,
            static_names: STATIC_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            channel_names: CHANNEL_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            window,
            market_asset: MARKET_ASSET.to_owned(),
        }
    }

    /// Hours of candles a forecast needs before the origin: the 720-hour trailing variance, and
    /// the 30-day median of the 168-hour illiquidity mean behind the shortage score.
    #[must_use]
    pub fn history_hours(&self) -> usize {
        (SHORTAGE_REFERENCE_HOURS + 168).max(self.window) + 1
    }
}

/// The market factor: BTC's log trailing variances by close hour.
#[derive(Debug, Clone, PartialEq)]
pub struct Market {
    first_hour: i64,
    ln_rv24: Vec<f64>,
    ln_rv168: Vec<f64>,
}

impl Market {
    /// From the market asset's grid, as this build's features take it ([`FEATURE_VERSION`]).
    #[must_use]
    pub fn new(asset: &Asset) -> Self {
        Self::of_version(asset, FEATURE_VERSION)
    }

    /// From the market asset's grid, as features of `version` take it: from version 2 a missing
    /// variance stays missing (the factor is unavailable at that hour); version 1 took the
    /// floor's log for it.
    #[must_use]
    pub fn of_version(asset: &Asset, version: u32) -> Self {
        let ln = |w| {
            let rv = realized_variance(&asset.grid.ret, w);
            if version >= 2 {
                ln_floor(&rv)
            } else {
                rv.iter().map(|v| v.max(LN_FLOOR).ln()).collect()
            }
        };
        Self {
            first_hour: asset.grid.first_hour,
            ln_rv24: ln(24),
            ln_rv168: ln(168),
        }
    }

    fn at(&self, hour: i64) -> Option<(f64, f64)> {
        let i = usize::try_from(hour - self.first_hour).ok()?;
        let (a, b) = (*self.ln_rv24.get(i)?, *self.ln_rv168.get(i)?);
        (a.is_finite() && b.is_finite()).then_some((a, b))
    }
}

/// Per-hour series behind the features of one asset.
#[derive(Debug, Clone)]
pub struct AssetFeatures {
    first_hour: i64,
    /// ln of trailing RV over 4, 24, 168, 720 hours.
    ln_rv: [Vec<f64>; 4],
    ln_pk24: Vec<f64>,
    ln_pk168: Vec<f64>,
    ln_gk24: Vec<f64>,
    /// Mean quote volume of the last 24 hours.
    qv24: Vec<f64>,
    quote_volume: Vec<f64>,
    /// M_H per horizon 4, 24, 168.
    illiq_mean: [Vec<f64>; 3],
    ret: Vec<f64>,
    /// Parkinson variance of each hour.
    pk: Vec<f64>,
}

fn ln_floor(v: &[f64]) -> Vec<f64> {
    v.iter()
        .map(|x| {
            if x.is_nan() {
                f64::NAN
            } else {
                x.max(LN_FLOOR).ln()
            }
        })
        .collect()
}

impl AssetFeatures {
    /// Precomputes the per-hour series; `prepared` must hold the horizons 4, 24 and 168.
    #[must_use]
    pub fn new(asset: &Asset, prepared: &PreparedAsset) -> Self {
        let g = &asset.grid;
        let ln2 = std::f64::consts::LN_2;
        let pk: Vec<f64> = g
            .high
            .iter()
            .zip(&g.low)
            .map(|(h, l)| (h / l).ln().powi(2) / (4.0 * ln2))
            .collect();
        let gk: Vec<f64> = (0..g.len())
            .map(|i| {
                0.5 * (g.high[i] / g.low[i]).ln().powi(2)
                    - (2.0 * ln2 - 1.0) * (g.close[i] / g.open[i]).ln().powi(2)
            })
            .collect();
        let rv = |w: usize| {
            prepared
                .rv
                .get(&w)
                .cloned()
                .unwrap_or_else(|| realized_variance(&g.ret, w))
        };
        let m = |h: usize| {
            prepared
                .illiq_mean
                .get(&h)
                .cloned()
                .unwrap_or_else(|| vec![f64::NAN; g.len()])
        };
        Self {
            first_hour: g.first_hour,
            ln_rv: [
                ln_floor(&rv(4)),
                ln_floor(&rv(24)),
                ln_floor(&rv(168)),
                ln_floor(&rv(720)),
            ],
            ln_pk24: ln_floor(&realized_variance_of(&pk, 24)),
            ln_pk168: ln_floor(&realized_variance_of(&pk, 168)),
            ln_gk24: ln_floor(&realized_variance_of(&gk, 24)),
            qv24: rolling_mean(&g.quote_volume, 24),
            quote_volume: g.quote_volume.clone(),
            illiq_mean: [m(4), m(24), m(168)],
            ret: g.ret.clone(),
            pk,
        }
    }

    /// Whether a forecast can be made at `slot`: the HAR regressors exist.
    #[must_use]
    pub fn valid(&self, slot: usize) -> bool {
        slot < self.ret.len() && [1, 2, 3].iter().all(|&k| self.ln_rv[k][slot].is_finite())
    }

    /// Why no forecast can be made at `slot` ([`Self::valid`] false), in words, `before` naming
    /// the origin (e.g. "the last candle"): the first of the HAR regressors' windows (24, 168,
    /// 720 hours) with too few hourly returns under SPEC's 90% rule, and whether the data are
    /// too short for it or have too many missing hours inside it. None when valid.
    #[must_use]
    pub fn why_invalid(&self, slot: usize, before: &str) -> Option<String> {
        if self.valid(slot) {
            return None;
        }
        if slot >= self.ret.len() {
            return Some(format!("no candle at {before}"));
        }
        for w in HAR_WINDOWS {
            let from = (slot + 1).saturating_sub(w);
            let got = self.ret[from..=slot].iter().filter(|x| x.is_finite()).count();
            let need = (0..=w).find(|&n| covered(n, w)).unwrap_or(w);
            if got >= need {
                continue;
            }
            // Slot 0 has no return: `slot` returns at most end at `slot`.
            let why = if slot < need {
                format!("not enough history: the data start {slot} hours before it")
            } else {
                "too many missing hours".to_owned()
            };
            return Some(format!(
                "{why}: the {w}-hour realized variance before {before} needs {need} hourly \
                 returns (SPEC's 90% rule); the candles give {got}"
            ));
        }
        Some(format!(
            "too many missing hours before {before} for the realized-variance features (SPEC's \
             90% rule)"
        ))
    }

    /// The static features at `slot` (unscaled), or None when [`Self::valid`] is false.
    #[must_use]
    pub fn static_at(
        &self,
        slot: usize,
        market: Option<&Market>,
        scratch: &mut Vec<f64>,
    ) -> Option<[f32; N_STATIC]> {
        if !self.valid(slot) {
            return None;
        }
        let [rv4, rv24, rv168, rv720] = [0, 1, 2, 3].map(|k| self.ln_rv[k][slot]);
        let or = |v: f64, fallback: f64| if v.is_finite() { v } else { fallback };
        let median_qv = trailing_median(&self.quote_volume, slot, SHORTAGE_REFERENCE_HOURS, scratch);
        let rel_volume = match (median_qv, self.qv24[slot]) {
            (Some(m), q) if m > 0.0 && q > 0.0 => (q / m).ln(),
            _ => 0.0,
        };
        let mut score = |k: usize| {
            let m = &self.illiq_mean[k];
            match trailing_median(m, slot, SHORTAGE_REFERENCE_HOURS, scratch) {
                Some(median) if median > 0.0 && m[slot].is_finite() => {
                    (m[slot] / median).clamp(1e-3, 1e3).ln()
                }
                _ => 0.0,
            }
        };
        let hour = self.first_hour + i64::try_from(slot).unwrap_or(0);
        let tau = std::f64::consts::TAU;
        let (h, d) = (
            (hour.rem_euclid(24)) as f64 / 24.0,
            (hour.div_euclid(24) + 3).rem_euclid(7) as f64 / 7.0,
        );
        let (market_24, market_168, available) = match market.and_then(|m| m.at(hour)) {
            Some((a, b)) => (a, b, 1.0),
            None => (rv24, rv168, 0.0),
        };
        let values = [
            or(rv4, rv24),
            rv24,
            rv168,
            rv720,
            or(self.ln_pk24[slot], rv24),
            or(self.ln_pk168[slot], rv168),
            or(self.ln_gk24[slot], rv24),
            rel_volume,
            score(0),
            score(1),
            score(2),
            or(self.illiq_mean[1][slot].max(LN_FLOOR).ln(), -10.0),
            (tau * h).sin(),
            (tau * h).cos(),
            (tau * d).sin(),
            (tau * d).cos(),
            market_24,
            market_168,
            available,
        ];
        Some(values.map(|v| v as f32))
    }

    /// Writes the `window` hours ending at `slot` into `out` (`[window, N_CHANNELS]`, row-major,
    /// oldest first), scaled by the trailing hourly variance at `slot`.
    pub fn sequence_at(&self, slot: usize, window: usize, out: &mut [f32]) {
        let ln_scale = self.ln_rv[3][slot] - (720f64).ln();
        let scale = (0.5 * ln_scale).exp();
        let ln_qv_ref = self.qv24[slot].max(1e-9).ln();
        for (row, chunk) in out.chunks_exact_mut(N_CHANNELS).take(window).enumerate() {
            let k = (slot + 1 + row).checked_sub(window);
            let r = k.map_or(f64::NAN, |k| self.ret[k]);
            let pk = k.map_or(f64::NAN, |k| self.pk[k]);
            let qv = k.map_or(f64::NAN, |k| self.quote_volume[k]);
            let missing = r.is_nan();
            let clip = |v: f64| (v as f32).clamp(-CLIP, CLIP);
            chunk[0] = if missing { 0.0 } else { clip(r / scale) };
            chunk[1] = if missing {
                0.0
            } else {
                clip((r * r).max(LN_FLOOR).ln() - ln_scale)
            };
            chunk[2] = if pk.is_finite() {
                clip(pk.max(LN_FLOOR).ln() - ln_scale)
            } else {
                0.0
            };
            chunk[3] = if qv.is_finite() && qv > 0.0 {
                clip(qv.ln() - ln_qv_ref)
            } else {
                0.0
            };
            chunk[4] = f32::from(u8::from(missing));
        }
    }
}

fn realized_variance_of(values: &[f64], window: usize) -> Vec<f64> {
    // Same 90% rule and W/n rescaling as realized variance, on per-hour variance estimates.
    let roots: Vec<f64> = values
        .iter()
        .map(|v| if v.is_nan() { f64::NAN } else { v.max(0.0).sqrt() })
        .collect();
    realized_variance(&roots, window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::HourlyGrid;
    use crate::synth::{SynthConfig, generate};

    fn asset(hours: usize) -> (Asset, PreparedAsset) {
        let candles = generate(&SynthConfig {
            hours,
            ..SynthConfig::default()
        });
        let asset = Asset {
            id: "S".into(),
            grid: HourlyGrid::from_candles(&candles),
        };
        let prepared = PreparedAsset::new(&asset, &[4, 24, 168]);
        (asset, prepared)
    }

    #[test]
    fn static_features_are_finite_once_history_suffices() {
        let (a, p) = asset(2000);
        let f = AssetFeatures::new(&a, &p);
        let mut scratch = Vec::new();
        assert!(
            f.static_at(100, None, &mut scratch).is_none(),
            "RV720 needs 648 returns"
        );
        let slot = (1000..1100).find(|&s| f.valid(s)).unwrap();
        let x = f.static_at(slot, None, &mut scratch).unwrap();
        assert!(x.iter().all(|v| v.is_finite()), "{x:?}");
        assert_eq!(x[MARKET_FLAG], 0.0);
        // ln RV24 agrees with the target code.
        let rv24 = p.rv_at(24, slot);
        assert!((f64::from(x[1]) - rv24.ln()).abs() < 1e-5);
        // The market factor is used when present.
        let m = Market::new(&a);
        let y = f.static_at(slot, Some(&m), &mut scratch).unwrap();
        assert_eq!(y[MARKET_FLAG], 1.0);
        assert!((y[16] - x[1]).abs() < 1e-5, "own series as market: same ln RV24");
    }

    /// A gap in the market asset's candles leaves its trailing variance missing for a while:
    /// from version 2 the market factor is unavailable there (flag 0, the asset's own levels);
    /// version 1's features (served to the artifacts trained on them) took ln of the floor,
    /// about -46, flagged available.
    #[test]
    fn a_missing_market_variance_is_no_market() {
        let (a, p) = asset(2000);
        let f = AssetFeatures::new(&a, &p);
        let mut gapped = a.clone();
        let at = 1500_usize;
        for i in at..at + 3 {
            gapped.grid.ret[i] = f64::NAN;
        }
        let slot = at + 10;
        let hour = a.grid.first_hour + i64::try_from(slot).unwrap();
        let mut scratch = Vec::new();
        let own = f.static_at(slot, None, &mut scratch).unwrap();
        let now = Market::new(&gapped);
        assert_eq!(now.at(hour), None);
        let x = f.static_at(slot, Some(&now), &mut scratch).unwrap();
        assert_eq!(x[MARKET_FLAG], 0.0);
        assert_eq!(x[16], own[16], "the asset's own level, as without a market");
        let v1 = Market::of_version(&gapped, 1);
        let (rv24, _) = v1.at(hour).unwrap();
        assert!((rv24 - LN_FLOOR.ln()).abs() < 1e-9, "{rv24}");
        assert_eq!(
            f.static_at(slot, Some(&v1), &mut scratch).unwrap()[MARKET_FLAG],
            1.0
        );
        // Where the market's variances exist, both versions agree.
        let later = a.grid.first_hour + 1900;
        assert_eq!(
            Market::new(&gapped).at(later),
            Market::of_version(&gapped, 1).at(later)
        );
        assert!(Market::new(&gapped).at(later).is_some());
    }

    #[test]
    fn an_origin_without_features_is_told_whether_history_is_short_or_has_gaps() {
        let (a, p) = asset(2000);
        let f = AssetFeatures::new(&a, &p);
        let slot = (1000..1100).find(|&s| f.valid(s)).unwrap();
        assert_eq!(f.why_invalid(slot, "the origin"), None);
        // 100 returns where the 168-hour window needs 152 (the 24-hour one has its 24).
        assert_eq!(
            f.why_invalid(100, "2020-01-05T04:00:00Z").as_deref(),
            Some(
                "not enough history: the data start 100 hours before it: the 168-hour realized \
                 variance before 2020-01-05T04:00:00Z needs 152 hourly returns (SPEC's 90% rule); \
                 the candles give 100"
            )
        );
        // Thirty hours missing inside the week before a slot with enough history: a gap (31
        // returns missing: the first hour after it has no previous close).
        let mut candles = generate(&SynthConfig {
            hours: 2000,
            ..SynthConfig::default()
        });
        candles.drain(1500..1530);
        let gapped = Asset {
            id: "S".into(),
            grid: HourlyGrid::from_candles(&candles),
        };
        let p = PreparedAsset::new(&gapped, &[4, 24, 168]);
        let f = AssetFeatures::new(&gapped, &p);
        let said = f.why_invalid(1600, "the last candle").unwrap();
        assert!(
            said.starts_with(
                "too many missing hours: the 168-hour realized variance before the \
                 last candle needs 152 hourly returns"
            ) && said.ends_with("the candles give 137"),
            "{said}"
        );
        assert_eq!(f.why_invalid(5000, "then").as_deref(), Some("no candle at then"));
    }

    #[test]
    fn sequence_is_causal_and_scale_free() {
        let candles = generate(&SynthConfig {
            hours: 2000,
            ..SynthConfig::default()
        });
        let build = |c: &[crate::candles::Candle]| {
            let a = Asset {
                id: "S".into(),
                grid: HourlyGrid::from_candles(c),
            };
            let p = PreparedAsset::new(&a, &[4, 24, 168]);
            (a, p)
        };
        let (a, p) = build(&candles);
        let f = AssetFeatures::new(&a, &p);
        let slot = (1000..1100)
            .find(|&s| f.valid(s) && a.grid.ret[s].is_finite() && a.grid.ret[s + 1].is_finite())
            .unwrap();
        let window = 64;
        let mut out = vec![0.0f32; window * N_CHANNELS];
        f.sequence_at(slot, window, &mut out);
        assert!(out.iter().all(|v| v.is_finite()));
        // The last row is the return at the origin itself.
        let r = a.grid.ret[slot];
        let scale = (p.rv_at(720, slot) / 720.0).sqrt();
        assert!((f64::from(out[(window - 1) * N_CHANNELS]) - r / scale).abs() < 1e-4);
        // Causal: every hour after the origin changed (prices up half, volumes tripled), the
        // origin's sequence and static features are unchanged; the next hour's are not.
        let origin_hour = a.grid.first_hour + i64::try_from(slot).unwrap();
        let later: Vec<crate::candles::Candle> = candles
            .iter()
            .map(|c| {
                if c.open_time / crate::time::HOUR_MS + 1 > origin_hour {
                    crate::candles::Candle {
                        open: c.open * 1.5,
                        high: c.high * 1.5,
                        low: c.low * 1.5,
                        close: c.close * 1.5,
                        volume: c.volume * 3.0,
                        quote_volume: c.quote_volume * 3.0,
                        ..*c
                    }
                } else {
                    *c
                }
            })
            .collect();
        let (b, q) = build(&later);
        let g = AssetFeatures::new(&b, &q);
        let mut moved = vec![0.0f32; window * N_CHANNELS];
        g.sequence_at(slot, window, &mut moved);
        assert_eq!(out, moved);
        let mut scratch = Vec::new();
        assert_eq!(
            f.static_at(slot, None, &mut scratch),
            g.static_at(slot, None, &mut scratch)
        );
        assert!(f.valid(slot + 1) && g.valid(slot + 1));
        f.sequence_at(slot + 1, window, &mut out);
        g.sequence_at(slot + 1, window, &mut moved);
        assert_ne!(out, moved, "the change reaches the next hour's features");
        // Near the start of the grid, rows before slot 0 are marked missing.
        let mut early = vec![0.0f32; window * N_CHANNELS];
        f.sequence_at(10, window, &mut early);
        assert_eq!(early[4], 1.0);
    }
}
