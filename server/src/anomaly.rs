//! The anomaly detector in the service: loading it, scanning requests and stored candles, and the
//! anomaly part of a risk recommendation (`--anomaly-action`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use std::sync::Arc;

use volcast_core::anomaly::features::{MarketContext, PoolSnapshot, Row, candle_rows, candle_rows_from};
use volcast_core::anomaly::{AdaptiveConfig, DailyScales, Detector, Scale, Scorer};
use volcast_core::candles::Candle;
use volcast_core::time::{DAY_MS, HOUR_MS, day_origin};

use crate::dto::anomaly::{AnomalyContext, AssetScan, PoolSnapshotDto, ScoredRow, SeriesScan};
use crate::error::ApiError;

/// The detector file looked for in the served artifact's directory.
pub const FILE: &str = "anomaly.json";

/// What an active flag does to risk parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Report flags in the derivation only.
    Report,
    /// An active flag doubles the liquidation window `tau` (up to 168 h).
    Tighten,
}

impl Action {
    /// As written in the derivation.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Report => "report",
            Self::Tighten => "tighten",
        }
    }
}

/// The anomaly settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnomalySettings {
    /// Whether a detector is loaded at all (`--anomaly`).
    pub enabled: bool,
    /// What an active flag does.
    pub action: Action,
    /// Hours before a risk answer's origin in which a flag is active.
    pub window_hours: u32,
}

/// Where the service's detector comes from: `--anomaly-detector`, else `anomaly.json` in the
/// served artifact's directory when there is anything by that name (a directory or a dangling
/// link there is a bad detector, refused as one, not an absent one served without a word).
#[must_use]
pub fn detector_path(configured: Option<&Path>, artifact_dir: &Path) -> Option<PathBuf> {
    match configured {
        Some(p) => Some(p.to_owned()),
        None => Some(artifact_dir.join(FILE)).filter(|p| p.symlink_metadata().is_ok()),
    }
}

/// Reads and prepares a detector.
///
/// # Errors
/// A message naming the file when it cannot be read or is not a valid detector.
pub fn load(path: &Path) -> Result<Arc<Scorer>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let d = Detector::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Arc::new(Scorer::new(d)))
}

/// Days of candles read before the window for the features' baselines (their half-life is a
/// week).
pub const SCALE_HISTORY_DAYS: i64 = 28;

/// The first candle [`day_scale`] reads for the day starting `day_ms`.
#[must_use]
pub fn scale_data_from(day_ms: i64, config: &AdaptiveConfig) -> i64 {
    day_ms - config.window_ms() - SCALE_HISTORY_DAYS * DAY_MS
}

/// The day's asset-hour threshold scales ([`day_scale`]), one per model; `None` where the
/// window held too few hours (the fitted threshold).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayScale {
    /// Of hours judged against the assets' market (the `candles_market` model).
    pub market: Option<f64>,
    /// Of hours judged alone (the `candles` model: the risk and stress routes, small scans).
    pub alone: Option<f64>,
}

impl DayScale {
    /// The scales to serve with: 1 (as fitted) where the window was thin.
    #[must_use]
    pub fn served(self, pools: f64) -> Scale {
        Scale {
            candles: self.market.unwrap_or(1.0),
            candles_alone: self.alone.unwrap_or(1.0),
            pools,
        }
    }
}

/// The asset-hour threshold scales for the day starting `day_ms`, from `assets`' candles (the
/// window before the day and some history before it), with the code of `anomaly evaluate`'s
/// replay: every asset's hours scored at the fitted thresholds, once against the assets'
/// market and once alone (each model's false-alarm rate drifts on its own), and
/// [`DailyScales`] on each one's `score / threshold`.
#[must_use]
pub fn day_scale(scorer: &Scorer, assets: &[Vec<Candle>], day_ms: i64, config: &AdaptiveConfig) -> DayScale {
    let d = &scorer.detector;
    let rows: Vec<Vec<Option<Row>>> = assets
        .iter()
        .map(|c| candle_rows(&d.config.features, c))
        .collect();
    let market = MarketContext::new(&rows, d.config.market_min_assets);
    let [by_market, alone] = scales_over(scorer, &rows, &market, day_ms, day_ms, config)
        .map(|s| s.days().next().and_then(|(_, s)| s));
    DayScale {
        market: by_market,
        alone,
    }
}

/// The threshold scales of each day from `from_ms`'s through `to_ms`'s, against the market and
/// alone, as the daily job measures them ([`day_scale`]): each day's from the hours of every
/// asset's `rows` in the window before that day, scored at the fitted thresholds.
fn scales_over(
    scorer: &Scorer,
    rows: &[Vec<Option<Row>>],
    market: &MarketContext,
    from_ms: i64,
    to_ms: i64,
    config: &AdaptiveConfig,
) -> [DailyScales; 2] {
    let (first, last) = (day_origin(from_ms), day_origin(to_ms));
    let fit = |market: Option<&MarketContext>| {
        let ratios: Vec<(i64, f64)> = rows
            .iter()
            .flat_map(|rows| scorer.score_rows_scaled(rows, market, first - config.window_ms(), |_, _| 1.0))
            .filter(|v| v.time_ms < last)
            .map(|v| (v.time_ms, v.score / v.threshold))
            .collect();
        DailyScales::fit(&ratios, scorer.detector.candle_rate, from_ms, to_ms, config)
    };
    let (by_market, alone) = rayon::join(|| fit(Some(market)), || fit(None));
    [by_market, alone]
}

/// Fewest candles a scan needs: the warm-up and one scored hour (the candle `warm-up` hours
/// after the first is the first scored).
#[must_use]
pub fn min_candles(scorer: &Scorer) -> usize {
    scorer.detector.config.features.candle_warmup_hours + 1
}

/// Checks one pool series: times in the open-time range, strictly increasing and not after the
/// server's clock, reserves and supply positive, the cumulative counters not negative and never
/// falling (a reset count was scored as a burst of activity: five spurious flags from one edited
/// snapshot), all finite.
///
/// # Errors
/// [`ApiError::InvalidValue`] naming the field.
pub fn check_pool(field: &str, pool: &[PoolSnapshotDto]) -> Result<Vec<PoolSnapshot>, ApiError> {
    let bad = |i: usize, name: &str, message: &str| ApiError::InvalidValue {
        field: format!("{field}[{i}].{name}"),
        message: message.to_owned(),
    };
    let now = crate::follower::wall_clock_ms();
    for (i, s) in pool.iter().enumerate() {
        for (name, v, positive) in [
            ("reserve_asset", s.reserve_asset, true),
            ("reserve_quote", s.reserve_quote, true),
            ("reserve_usd", s.reserve_usd, true),
            ("total_supply", s.total_supply, true),
            ("tx_count", s.tx_count, false),
            ("volume_usd", s.volume_usd, false),
        ] {
            if !v.is_finite() {
                return Err(bad(i, name, "must be a finite number"));
            }
            if positive && v <= 0.0 || v < 0.0 {
                return Err(bad(
                    i,
                    name,
                    if positive { "must be > 0" } else { "must be >= 0" },
                ));
            }
        }
        if !(crate::inputs::MIN_OPEN_TIME_MS..crate::inputs::END_OPEN_TIME_MS).contains(&s.time) {
            return Err(ApiError::OutOfRange {
                field: format!("{field}[{i}].time"),
                value: s.time as f64,
                range: crate::inputs::OPEN_TIME_RANGE,
            });
        }
        if i > 0 && s.time <= pool[i - 1].time {
            return Err(bad(i, "time", "snapshot times must be strictly increasing"));
        }
        if s.time > now.saturating_add(crate::inputs::FORMING_GRACE_MS) {
            return Err(bad(
                i,
                "time",
                &format!(
                    "{} is after the server's clock ({}): send snapshots taken",
                    volcast_core::time::format_ms(s.time),
                    volcast_core::time::format_ms(now)
                ),
            ));
        }
        if let Some(prev) = i.checked_sub(1).map(|j| &pool[j]) {
            for (name, v, before) in [
                ("tx_count", s.tx_count, prev.tx_count),
                ("volume_usd", s.volume_usd, prev.volume_usd),
            ] {
                if v < before {
                    return Err(bad(
                        i,
                        name,
                        &format!("is cumulative: {v} is below the previous snapshot's {before}"),
                    ));
                }
            }
        }
    }
    Ok(pool.iter().map(|&s| s.into()).collect())
}

/// One checked asset of a scan: its id, candles and pool snapshots, if any.
pub type ScanInput = (String, Vec<Candle>, Option<Vec<PoolSnapshot>>);

/// Scans a batch: each asset's hours, and its pool's snapshots against its candles. With the
/// detector's `market_min_assets` (five) or more assets the batch is the market
/// (`market_context: batch`). Each asset's candle rows are made once, for its own scores and the
/// market's medians.
#[must_use]
pub fn scan_batch(scorer: &Scorer, items: &[ScanInput]) -> Vec<AssetScan> {
    let min_assets = scorer.detector.config.market_min_assets;
    let rows: Vec<Vec<Option<Row>>> = items
        .iter()
        .map(|(_, c, _)| candle_rows(&scorer.detector.config.features, c))
        .collect();
    let market = (items.len() >= min_assets).then(|| MarketContext::new(&rows, min_assets));
    items
        .iter()
        .zip(&rows)
        .map(|((asset, candles, pool), rows)| AssetScan {
            asset: asset.clone(),
            market_context: if market.is_some() { "batch" } else { "none" }.into(),
            hours: SeriesScan::of(scorer.score_rows(rows, market.as_ref(), i64::MIN), true),
            pool: pool
                .as_deref()
                .map(|p| SeriesScan::of(scorer.score_pool(p, Some(candles)), true)),
        })
        .collect()
}

/// The threshold scales of days that [`store_scan`] measured, by detector and day: each day's is
/// every stored asset's, so a scan of another asset over the same days reads them here instead
/// of scoring every stored asset again. Kept for the process's life, so candles stored later
/// for those days' windows (a backfill of the past) change them only after a restart.
#[derive(Debug, Default)]
pub struct PastScales {
    days: std::sync::Mutex<std::collections::HashMap<DetectorDay, [Option<f64>; 2]>>,
}

/// A detector's id and a day's start (Unix ms).
type DetectorDay = (String, i64);

/// Most days [`PastScales`] keeps before it starts over.
const PAST_SCALES_KEPT: usize = 20_000;

impl PastScales {
    /// Each day's scales from `from_ms`'s through `to_ms`'s of `detector`, against the market
    /// and alone, when every one of those days is kept.
    fn get(&self, detector: &str, from_ms: i64, to_ms: i64) -> Option<[DailyScales; 2]> {
        let days = self
            .days
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (first, last) = (day_origin(from_ms), day_origin(to_ms));
        let (mut market, mut alone) = (Vec::new(), Vec::new());
        let mut day = first;
        while day <= last {
            let [m, a] = *days.get(&(detector.to_owned(), day))?;
            market.push(m);
            alone.push(a);
            day += DAY_MS;
        }
        Some([
            DailyScales::from_days(first, market),
            DailyScales::from_days(first, alone),
        ])
    }

    /// Keeps `scales`' days up to the one of `latest_ms`, the latest candle read (a day's
    /// scale reads the hours before it, all stored once a later one is: a day the store had not
    /// reached yet is measured again), where a scale was measured (a day with too few hours
    /// before it is cheap to measure again, and an empty stretch of the past fills nothing).
    fn keep(&self, detector: &str, [market, alone]: &[DailyScales; 2], latest_ms: i64) {
        let mut days = self
            .days
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if days.len() > PAST_SCALES_KEPT {
            days.clear();
        }
        for ((day, m), (_, a)) in market.days().zip(alone.days()) {
            if day <= latest_ms && (m.is_some() || a.is_some()) {
                days.insert((detector.to_owned(), day), [m, a]);
            }
        }
    }
}

/// One stored asset's scan of the hours from `from` to `to`, against the market of the other
/// stored assets' `others` candles (`market_context: store`) where there are enough of them
/// (the detector's `market_min_assets`, the asset included), else alone.
///
/// Each hour is judged at the threshold scale of its own day (measured in blocks of days): the
/// scale the daily job measures ([`day_scale`]), on the stored hours of the 90 days before that day, not
/// today's, which reads up to 90 days after a past hour (the hour itself and what followed), so
/// that a past window's flags moved from day to day (until stop 63). `candles` and every one of
/// `others` reach back to [`scan_data_from`]`(from)`.
///
/// The days' scales are read from `past` where it keeps them all, else measured (and kept
/// there up to the last day the candles reach).
#[must_use]
pub fn store_scan(
    scorer: &Scorer,
    asset: String,
    candles: &[Candle],
    others: &[Vec<Candle>],
    (from, to): (i64, i64),
    all: bool,
    past: &PastScales,
) -> AssetScan {
    let d = &scorer.detector;
    let assets: Vec<&[Candle]> = std::iter::once(candles)
        .chain(others.iter().map(Vec::as_slice))
        .collect();
    let [by_market, alone] = past.get(&d.id, from, to).unwrap_or_else(|| {
        let measured = block_scales(scorer, &assets, from, to);
        let latest = assets
            .iter()
            .filter_map(|c| c.last().map(|c| c.open_time))
            .max()
            .unwrap_or(i64::MIN);
        past.keep(&d.id, &measured, latest);
        measured
    });
    // The asset's rows first, then the others'; all of them make the market.
    let rows: Vec<Vec<Option<Row>>> = assets
        .iter()
        .map(|c| candle_rows_from(&d.config.features, c, scorer.lookback_from(from)))
        .collect();
    let market = (rows.len() >= d.config.market_min_assets)
        .then(|| MarketContext::new(&rows, d.config.market_min_assets));
    let hours = scorer.score_rows_scaled(&rows[0], market.as_ref(), from, |t, on_market| {
        if on_market { by_market.at(t) } else { alone.at(t) }
    });
    AssetScan {
        asset,
        market_context: if market.is_some() { "store" } else { "none" }.into(),
        hours: SeriesScan::of(hours, all),
        pool: None,
    }
}

/// Days in one block of [`block_scales`]' grid.
const SCALE_BLOCK_DAYS: i64 = 30;

/// The start of the block of [`block_scales`]' grid that holds the day of `time_ms`.
fn scale_block(time_ms: i64) -> i64 {
    let block = SCALE_BLOCK_DAYS * DAY_MS;
    time_ms.div_euclid(block) * block
}

/// The threshold scales, against the market and alone, of the days from `from_ms`'s through
/// `to_ms`'s, from `assets`' candles: the days are measured in blocks of 30 on a fixed grid
/// (from the Unix epoch), each block on the candles from [`scale_data_from`] its first day, so
/// a day's scale is the same whichever window asked for it (a window's own start moved the
/// features' baselines, so a day's scale depended on the request that measured it first).
/// The first day of a block is measured exactly as the daily job measures it ([`day_scale`]);
/// the others on baselines up to 29 days longer.
fn block_scales(scorer: &Scorer, assets: &[&[Candle]], from_ms: i64, to_ms: i64) -> [DailyScales; 2] {
    let d = &scorer.detector;
    let config = AdaptiveConfig::default();
    let (first, last) = (day_origin(from_ms), day_origin(to_ms));
    let step = SCALE_BLOCK_DAYS * DAY_MS;
    let blocks: Vec<i64> = (0..)
        .map(|k| scale_block(first) + k * step)
        .take_while(|&b| b <= last)
        .collect();
    // The blocks on every core (each scores every asset over its 90 days and more).
    let measured: Vec<[DailyScales; 2]> = blocks
        .par_iter()
        .map(|&block| {
            let lo = first.max(block);
            let hi = last.min(block + step - DAY_MS);
            let start = scale_data_from(block, &config);
            let rows: Vec<Vec<Option<Row>>> = assets
                .iter()
                .map(|c| {
                    let c = &c[c.partition_point(|c| c.open_time < start)..];
                    candle_rows_from(
                        &d.config.features,
                        c,
                        scorer.lookback_from(lo - config.window_ms()),
                    )
                })
                .collect();
            let market = MarketContext::new(&rows, d.config.market_min_assets);
            scales_over(scorer, &rows, &market, lo, hi, &config)
        })
        .collect();
    let days = |k: usize| -> Vec<Option<f64>> {
        measured
            .iter()
            .flat_map(|m| m[k].days().map(|(_, s)| s))
            .collect()
    };
    [
        DailyScales::from_days(first, days(0)),
        DailyScales::from_days(first, days(1)),
    ]
}

/// The first candle [`store_scan`] reads for a scan from `from_ms`: the window of the scale of
/// the first day of `from_ms`'s block of days and the history before it
/// ([`scale_data_from`]), earlier than what the scan's own verdicts read ([`min_candles`], the
/// directions' lookback and [`SCALE_HISTORY_DAYS`] of baselines) unless that is longer.
#[must_use]
pub fn scan_data_from(scorer: &Scorer, from_ms: i64) -> i64 {
    let own = i64::try_from(min_candles(scorer) + scorer.lookback_hours()).unwrap_or(i64::MAX / HOUR_MS)
        + SCALE_HISTORY_DAYS * 24;
    from_ms
        .saturating_sub(own.saturating_mul(HOUR_MS))
        .min(scale_data_from(scale_block(from_ms), &AdaptiveConfig::default()))
}

/// The anomaly part of a risk recommendation on `candles` (the request's window), and the
/// liquidation window to use: `tau` doubled (up to `max_tau`) when the action is `tighten` and
/// a flag is active.
#[must_use]
pub fn risk_context(
    scorer: &Scorer,
    settings: AnomalySettings,
    candles: &[Candle],
    tau: f64,
    max_tau: f64,
) -> (AnomalyContext, f64) {
    let last = candles.last().map_or(0, |c| c.open_time);
    let since = last - i64::from(settings.window_hours.max(1) - 1) * HOUR_MS;
    let verdicts = scorer.score_candles_from(candles, None, since);
    let scored = verdicts.len();
    let flags: Vec<ScoredRow> = verdicts
        .into_iter()
        .filter(|v| v.flagged)
        .map(ScoredRow::from)
        .collect();
    let active = !flags.is_empty();
    let tightened = (2.0 * tau).min(max_tau);
    let applied = active && settings.action == Action::Tighten && tightened > tau;
    let effect = match (active, settings.action) {
        // Not "no flag": hours after a gap, or without a week of history before them, have no
        // row to judge.
        (false, _) if scored == 0 => format!(
            "none of the last {} h could be scored (missing candles, or too little history before \
             them): no flag could be raised",
            settings.window_hours
        ),
        (false, _) => format!("no flag in the last {} h", settings.window_hours),
        (true, Action::Report) => "flag reported; parameters not changed (--anomaly-action report)".into(),
        (true, Action::Tighten) if applied => {
            format!("tau lengthened from {tau} h to {tightened} h by the active flag")
        }
        (true, Action::Tighten) => format!("tau already {tau} h, the longest allowed"),
    };
    (
        AnomalyContext {
            detector: scorer.detector.id.clone(),
            threshold_scale: scorer.scale().candles_alone,
            window_hours: settings.window_hours,
            active,
            flags,
            action: settings.action.name().into(),
            applied,
            effect,
        },
        if applied { tightened } else { tau },
    )
}
