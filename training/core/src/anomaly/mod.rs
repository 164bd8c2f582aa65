//! Market-behaviour anomaly detection: a learned density over activity features, calibrated to a
//! stated false-alarm rate, with the reasons for every flag.
//!
//! # The model
//! Each asset-hour (and each DEX pool snapshot) becomes a row of scale-free activity features
//! ([`features`]): its return, range, volume, wick, volume per unit of range and out and back
//! against that market's own recent behaviour, and where the whole market is known, each of them
//! beyond the market's that hour; for pools the changes of reserves, value and LP supply, flow
//! rates and the gap between the pool's price and the exchange's. A Gaussian copula is fitted to
//! the rows of the fit period, pooled over all markets ([`Copula`]), one for candles alone, one for
//! candles against the market, one for pools:
//! - each feature's marginal is learned as a quantile table and mapped to normal scores `z`
//!   (the quiet side floored: an hour quieter than usual is never the story);
//! - their correlation is learned, so a combination that ordinary markets never show (volume
//!   without a price move, reserves that fall without LP supply falling) is surprising even when
//!   each feature alone is not;
//! - a row is judged by the Mahalanobis distance `d² = z' R⁻¹ z` (the negative log density up
//!   to constants), by its largest conditional surprise (one feature off alone) and, on
//!   asset-hours, along each candle pattern's direction ([`Direction`]; the pump's over its five
//!   hours). Each feature's share `z_i (R⁻¹ z)_i` of `d²`, or its part of the pattern's
//!   statistic, is what the reasons report.
//!
//! The flag thresholds sit at one common tail fraction of the fit rows, chosen so that `rate`
//! of them exceed any statistic's, one set per set of available features (a pool snapshot
//! without an exchange price is scored on the marginal of the others, with its own), so the
//! false-alarm rate on fit data is the stated one by construction and the score means the same
//! on every asset. In operation the thresholds are
//! scaled each day so that the trailing 90 days would have been flagged at the stated rate
//! ([`adaptive`]): a new year's hours are not the fit period's.

pub mod adaptive;
pub mod copula;
pub mod features;
pub mod inject;

use serde::{Deserialize, Serialize};

use crate::candles::Candle;
pub use adaptive::{AdaptiveConfig, DailyScales, Scale};
pub use copula::verdict::{Driver, Verdict};
pub use copula::{
    Conditioned, Copula, Directed, Direction, MAX_DIRECTION_HOURS, MAX_DRIVERS, Marginal, Threshold,
};
use copula::{
    Subset,
    verdict::{Hour, verdict, verdict_after},
};
use features::{FeatureConfig, MarketContext, PoolSnapshot, Row};

/// How the detector was built: features and the stated false-alarm rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Feature half-lives and warm-ups.
    pub features: FeatureConfig,
    /// Stated false alarms per market per 30 days on ordinary data.
    pub flags_per_month: f64,
    /// Fewest assets scored in an hour for the market's median to be taken.
    pub market_min_assets: usize,
    /// The wick's marginal learned given the hour's volume ([`Conditioned`]): a wick ordinary
    /// for the volume it traded on scores ordinary. Off in detectors fitted before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wick_given_volume: bool,
    /// Both candle models also judge each row along the candle patterns' directions
    /// ([`features::CANDLE_DIRECTIONS`], [`Direction`]). On by default (stop 45); off in
    /// detectors fitted before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub directed: bool,
    /// Hours the pump-and-dump direction is judged over ([`Direction::hours`]; with
    /// `directed`): [`PUMP_HOURS`] by default (stop 46); 1 (not written) in detectors fitted
    /// before it existed.
    #[serde(default = "copula::one_hour", skip_serializing_if = "copula::is_one_hour")]
    pub pump_hours: usize,
}

/// [`DetectorConfig::pump_hours`] of new detectors: the pump and dump's rise and reversal, the
/// five hours `out_and_back` reads. Scored once on the folds and adopted (README, stop 46).
pub const PUMP_HOURS: usize = 5;

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            features: FeatureConfig::default(),
            flags_per_month: 1.0,
            market_min_assets: 5,
            wick_given_volume: false,
            directed: true,
            pump_hours: PUMP_HOURS,
        }
    }
}

/// A fitted detector: config, the candle and pool models, and where they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    /// Content id: the first 16 hex digits of SHA-256 of the rest (set by the writer).
    pub id: String,
    /// Config it was fitted with.
    pub config: DetectorConfig,
    /// Last hour of fit data (RFC 3339).
    pub fit_until: String,
    /// Assets and pools it was fitted on.
    pub fit_markets: Vec<String>,
    /// The asset-hour model without a market reference ([`features::CANDLE_FEATURES`]).
    pub candles: Copula,
    /// The asset-hour model against the whole market ([`features::MARKET_FEATURES`]), used
    /// where the market's median is known for the hour.
    pub candles_market: Copula,
    /// The pool-snapshot model.
    pub pools: Option<Copula>,
    /// Stated false-alarm rate per scored asset-hour.
    pub candle_rate: f64,
    /// Stated false-alarm rate per scored pool snapshot.
    pub pool_rate: Option<f64>,
}

/// Why a detector's JSON was refused.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// Not a detector's JSON.
    // Not a source as well: a chain printed whole (`{:#}`) would say the parser's message twice.
    #[error("not an anomaly detector: {0}")]
    Parse(serde_json::Error),
    /// The id does not match the content: edited or damaged.
    #[error("anomaly detector id {recorded} does not match its content ({computed})")]
    Id {
        /// The id in the file.
        recorded: String,
        /// The id of the content.
        computed: String,
    },
    /// Fitted on other features than this code computes (a detector from before a feature
    /// changed): its marginals and correlations would be read against the wrong numbers.
    #[error(
        "anomaly detector {id} was fitted on the {model} features {fitted:?}, but this code computes {computed:?}: refit it (anomaly train)"
    )]
    Features {
        /// The detector's id.
        id: String,
        /// Which model: `candles`, `candles_market` or `pools`.
        model: &'static str,
        /// The features it was fitted on.
        fitted: Vec<String>,
        /// The features this code computes.
        computed: Vec<String>,
    },
    /// A model's tables do not fit its features ([`copula::Copula::check_shape`]).
    #[error("anomaly detector {id}: the {model} model is malformed: {detail}")]
    Shape {
        /// The detector's id.
        id: String,
        /// Which model.
        model: &'static str,
        /// What does not fit.
        detail: String,
    },
    /// A model's directions do not fit it: a weight per feature each, finite, and a threshold per
    /// direction in each of its thresholds.
    #[error("anomaly detector {id}: the {model} model's directions do not fit it: {detail}")]
    Directions {
        /// The detector's id.
        id: String,
        /// Which model.
        model: &'static str,
        /// What does not fit.
        detail: String,
    },
}

impl Detector {
    /// The content id: the first 16 hex digits of the SHA-256 of the JSON with an empty id.
    #[must_use]
    pub fn content_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut blank = self.clone();
        blank.id = String::new();
        let text = serde_json::to_string(&blank).unwrap_or_default();
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Parses a detector's JSON and checks its id against its content and its features against
    /// the ones this code computes.
    ///
    /// # Errors
    /// [`DetectorError`].
    pub fn from_json(text: &str) -> Result<Self, DetectorError> {
        let d: Self = serde_json::from_str(text).map_err(DetectorError::Parse)?;
        let computed = d.content_id();
        if computed != d.id {
            return Err(DetectorError::Id {
                recorded: d.id,
                computed,
            });
        }
        d.check_features()?;
        Ok(d)
    }

    /// Each model's features are the ones this code computes, in the same order.
    fn check_features(&self) -> Result<(), DetectorError> {
        let models = [
            ("candles", Some(&self.candles), &features::CANDLE_FEATURES[..]),
            (
                "candles_market",
                Some(&self.candles_market),
                &features::MARKET_FEATURES[..],
            ),
            ("pools", self.pools.as_ref(), &features::POOL_FEATURES[..]),
        ];
        for (model, copula, names) in models {
            let Some(copula) = copula else { continue };
            if let Err(detail) = copula.check_shape() {
                return Err(DetectorError::Shape {
                    id: self.id.clone(),
                    model,
                    detail,
                });
            }
            if let Err(detail) = copula.check_directions() {
                return Err(DetectorError::Directions {
                    id: self.id.clone(),
                    model,
                    detail,
                });
            }
            if copula
                .features
                .iter()
                .map(String::as_str)
                .ne(names.iter().copied())
            {
                return Err(DetectorError::Features {
                    id: self.id.clone(),
                    model,
                    fitted: copula.features.clone(),
                    computed: names.iter().map(|s| (*s).to_owned()).collect(),
                });
            }
        }
        Ok(())
    }
}

/// A loaded detector, ready to score: the inverted correlations precomputed.
#[derive(Debug, Clone)]
pub struct Scorer {
    /// The detector.
    pub detector: Detector,
    candle_subsets: Vec<Subset>,
    market_subsets: Vec<Subset>,
    pool_subsets: Vec<Subset>,
    scale: Scale,
}

impl Scorer {
    /// Prepares `detector` for scoring.
    #[must_use]
    pub fn new(detector: Detector) -> Self {
        let candle_subsets = detector.candles.subsets();
        let market_subsets = detector.candles_market.subsets();
        let pool_subsets = detector.pools.as_ref().map(Copula::subsets).unwrap_or_default();
        Self {
            detector,
            candle_subsets,
            market_subsets,
            pool_subsets,
            scale: Scale::default(),
        }
    }

    /// The same detector with its thresholds multiplied by `scale` ([`adaptive`]).
    #[must_use]
    pub fn with_scale(mut self, scale: Scale) -> Self {
        self.scale = scale;
        self
    }

    /// The scales its thresholds are multiplied by (1: as fitted).
    #[must_use]
    pub fn scale(&self) -> Scale {
        self.scale
    }

    /// Scores one asset's candles: one verdict per scored hour (hours still warming up are
    /// left out), against the whole market where `market` covers the hour.
    #[must_use]
    pub fn score_candles(&self, candles: &[Candle], market: Option<&MarketContext>) -> Vec<Verdict> {
        self.score_candles_from(candles, market, i64::MIN)
    }

    /// Like [`Self::score_candles`], scoring only the hours opening at or after `from_ms` (the
    /// earlier ones still build the baselines, and the [`Self::lookback_hours`] before it are
    /// read by the directions over several hours).
    #[must_use]
    pub fn score_candles_from(
        &self,
        candles: &[Candle],
        market: Option<&MarketContext>,
        from_ms: i64,
    ) -> Vec<Verdict> {
        let rows = features::candle_rows_from(
            &self.detector.config.features,
            candles,
            self.lookback_from(from_ms),
        );
        self.score_rows(&rows, market, from_ms)
    }

    /// Hours before a scored hour its verdict reads: the longest direction's, less one
    /// ([`Direction::hours`]; 0 when every direction is judged on one hour).
    #[must_use]
    pub fn lookback_hours(&self) -> usize {
        self.detector
            .candles
            .lookback_hours()
            .max(self.detector.candles_market.lookback_hours())
    }

    /// The first hour whose row the verdicts from `from_ms` on read.
    #[must_use]
    pub fn lookback_from(&self, from_ms: i64) -> i64 {
        from_ms.saturating_sub(self.lookback_hours() as i64 * crate::time::HOUR_MS)
    }

    /// Scores one asset's candle rows already made ([`features::candle_rows`]), oldest first,
    /// from `from_ms` on: for a batch whose rows also make its market.
    #[must_use]
    pub fn score_rows(
        &self,
        rows: &[Option<Row>],
        market: Option<&MarketContext>,
        from_ms: i64,
    ) -> Vec<Verdict> {
        self.score_rows_scaled(rows, market, from_ms, |_, on_market| {
            self.scale.of_hour(on_market)
        })
    }

    /// [`Self::score_rows`] with each hour's thresholds times `scale(open time, judged against
    /// the market)` instead (for a replay, where each day has its own). Each row is judged
    /// against the market where `market` covers its hour, else alone; a direction over several
    /// hours reads the hours just before it that the same model judged.
    #[must_use]
    pub fn score_rows_scaled(
        &self,
        rows: &[Option<Row>],
        market: Option<&MarketContext>,
        from_ms: i64,
        scale: impl Fn(i64, bool) -> f64,
    ) -> Vec<Verdict> {
        let lookback = self.lookback_hours();
        let first = self.lookback_from(from_ms);
        // The last hours scored, most recent first: whether against the market, the row as
        // judged, its normal scores.
        // (Borrowed where the row is judged alone, so no row is copied.)
        let mut recent: std::collections::VecDeque<(bool, std::borrow::Cow<'_, Row>, Vec<f64>)> =
            std::collections::VecDeque::new();
        let mut out = Vec::new();
        for r in rows.iter().flatten().filter(|r| r.time_ms >= first) {
            let adjusted = market.and_then(|m| m.adjust(r));
            let on_market = adjusted.is_some();
            let (model, subsets) = if on_market {
                (&self.detector.candles_market, &self.market_subsets)
            } else {
                (&self.detector.candles, &self.candle_subsets)
            };
            let row = adjusted.map_or(std::borrow::Cow::Borrowed(r), std::borrow::Cow::Owned);
            let z = model.normal_scores(&row.values);
            if r.time_ms >= from_ms {
                let earlier = recent
                    .iter()
                    .enumerate()
                    .take_while(|(k, (m, e, _))| {
                        *m == on_market && e.time_ms == r.time_ms - (*k as i64 + 1) * crate::time::HOUR_MS
                    })
                    .map(|(_, (_, row, z))| Hour { row, z });
                out.extend(verdict_after(
                    model,
                    subsets,
                    Hour { row: &row, z: &z },
                    &earlier,
                    scale(r.time_ms, on_market),
                ));
            }
            if lookback > 0 {
                recent.push_front((on_market, row, z));
                recent.truncate(lookback);
            }
        }
        out
    }

    /// Scores one pool's snapshots, with the asset's exchange candles when known.
    #[must_use]
    pub fn score_pool(&self, snaps: &[PoolSnapshot], cex: Option<&[Candle]>) -> Vec<Verdict> {
        let Some(model) = &self.detector.pools else {
            return Vec::new();
        };
        let rows = features::pool_rows(&self.detector.config.features, snaps, cex);
        rows.iter()
            .flatten()
            .filter_map(|r| verdict(model, &self.pool_subsets, r, self.scale.pools))
            .collect()
    }

    /// Scores one prepared row with the pool model (for evaluation).
    #[must_use]
    pub fn pool_verdict(&self, row: &Row) -> Option<Verdict> {
        self.pool_verdict_scaled(row, self.scale.pools)
    }

    /// [`Self::pool_verdict`] with the thresholds times `scale` instead.
    #[must_use]
    pub fn pool_verdict_scaled(&self, row: &Row, scale: f64) -> Option<Verdict> {
        let model = self.detector.pools.as_ref()?;
        verdict(model, &self.pool_subsets, row, scale)
    }
}
