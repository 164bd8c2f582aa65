//! `anomaly evaluate`: on a period, the false-alarm rate on real data against the stated rate,
//! the top events by score with their drivers, and the recall of each injected manipulation at
//! each strength (our generator, [`volcast_core::anomaly::inject`]). Rates and recall are given
//! twice: at the fitted thresholds, and at the thresholds operation uses, each day's scaled by
//! the scores of the days before it ([`volcast_core::anomaly::adaptive`]).

use std::collections::HashSet;
use std::fmt::Write as _;

use rayon::prelude::*;
use serde::Serialize;
use volcast_core::anomaly::features::FeatureConfig;
use volcast_core::anomaly::inject::{Pattern, inject_candles, inject_pool};
use volcast_core::anomaly::{AdaptiveConfig, DailyScales, Driver, Scorer, Verdict, features};
use volcast_core::time::{HOUR_MS, format_ms};

use super::Markets;

/// What to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct EvalConfig {
    /// First hour scored (open time, ms).
    pub from_ms: i64,
    /// Last hour scored (open time, ms).
    pub to_ms: i64,
    /// Injections per pattern and strength.
    pub injections: usize,
    /// Seed of the injection sampler.
    pub seed: u64,
    /// Top events listed.
    pub top: usize,
    /// How each day's threshold follows the days before it.
    pub adaptive: AdaptiveConfig,
}

/// Flags on real data against the stated rate.
#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    /// Markets scored.
    pub markets: usize,
    /// Rows scored in the period.
    pub scored: usize,
    /// Rows flagged.
    pub flagged: usize,
    /// `flagged / scored`.
    pub rate: f64,
    /// The detector's stated rate.
    pub stated_rate: f64,
    /// `rate / stated_rate`.
    pub ratio_to_stated: f64,
}

/// A run of flagged rows of one market (rows at most three hours apart).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Asset or pool.
    pub market: String,
    /// First flagged row.
    pub start: String,
    /// Last flagged row.
    pub end: String,
    /// Flagged rows.
    pub rows: usize,
    /// The highest-scoring row.
    pub peak: String,
    /// Its score.
    pub score: f64,
    /// Its threshold.
    pub threshold: f64,
    /// Its drivers.
    pub drivers: Vec<Driver>,
    /// The pattern it reads as, when a pattern's direction raised its flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// Recall of one pattern at one strength.
#[derive(Debug, Clone, Serialize)]
pub struct Recall {
    /// Pattern name.
    pub pattern: &'static str,
    /// Strength level: 0 weakest, 1 middle, 2 strongest.
    pub level: usize,
    /// What the strength means.
    pub strength: &'static str,
    /// Injections made.
    pub injected: usize,
    /// Injections with a flag on a row they touched.
    pub detected: usize,
    /// `detected / injected`; null (NaN) without injections (none could be drawn in the
    /// period), as are the rates below.
    pub recall: f64,
    /// The same rows without the injection: how often they were flagged anyway.
    pub chance: f64,
    /// `recall` at the day's adapted threshold.
    pub recall_adaptive: f64,
    /// A candle pattern's recall with its hours judged alone, without the market (the `candles`
    /// model, which the risk and stress routes' flags and `--anomaly-action tighten` use), at
    /// the fitted threshold and at that model's own daily scale; none for pool patterns.
    pub recall_alone: Option<(f64, f64)>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Detector id.
    pub detector: String,
    /// Its fit end.
    pub fit_until: String,
    /// Period scored.
    pub from: String,
    /// Period scored.
    pub to: String,
    /// Whether the period starts inside the detector's fit period: its rates are then not an
    /// out-of-sample score ([`in_sample_warning`]).
    pub in_sample: bool,
    /// Asset-hours at the fitted threshold.
    pub candles: Rates,
    /// Asset-hours at each day's adapted threshold.
    pub candles_adaptive: Rates,
    /// Asset-hours judged alone, without the market (the model of the service's risk and
    /// stress routes), at the fitted threshold.
    pub candles_alone: Rates,
    /// The same at each day's adapted threshold (the alone model's own scale).
    pub candles_alone_adaptive: Rates,
    /// The same at the market model's daily scale instead (what the service applied to the
    /// alone model before stop 51).
    pub candles_alone_at_market_scale: Rates,
    /// Pool snapshots at the fitted threshold.
    pub pools: Option<Rates>,
    /// Pool snapshots at each day's adapted threshold.
    pub pools_adaptive: Option<Rates>,
    /// Each day's scale of the asset-hour threshold: lowest, median, highest.
    pub candle_scales: (f64, f64, f64),
    /// The same for asset-hours judged alone.
    pub candle_alone_scales: (f64, f64, f64),
    /// The same for pool snapshots.
    pub pool_scales: (f64, f64, f64),
    /// Top events of the asset-hours, then of the pools, each by `score / threshold`.
    pub top_events: Vec<Event>,
    /// Recall per pattern and strength.
    pub recall: Vec<Recall>,
    /// Flags (real and injected) that came without drivers: 0 is the bar.
    pub flags_without_drivers: usize,
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn rates(markets: usize, verdicts: &[&Verdict], stated: f64) -> Rates {
    let flagged = verdicts.iter().filter(|v| v.flagged).count();
    let rate = flagged as f64 / verdicts.len().max(1) as f64;
    Rates {
        markets,
        scored: verdicts.len(),
        flagged,
        rate,
        stated_rate: stated,
        ratio_to_stated: rate / stated,
    }
}

fn events(market: &str, verdicts: &[Verdict], out: &mut Vec<Event>) {
    let mut run: Vec<&Verdict> = Vec::new();
    let flush = |run: &mut Vec<&Verdict>, out: &mut Vec<Event>| {
        if let (Some(first), Some(last)) = (run.first(), run.last()) {
            let peak = run
                .iter()
                .max_by(|a, b| (a.score / a.threshold).total_cmp(&(b.score / b.threshold)));
            if let Some(p) = peak {
                out.push(Event {
                    market: market.to_owned(),
                    start: format_ms(first.time_ms),
                    end: format_ms(last.time_ms),
                    rows: run.len(),
                    peak: format_ms(p.time_ms),
                    score: p.score,
                    threshold: p.threshold,
                    drivers: p.drivers.clone(),
                    pattern: p.pattern.clone(),
                });
            }
        }
        run.clear();
    };
    for v in verdicts.iter().filter(|v| v.flagged) {
        if run.last().is_some_and(|l| v.time_ms - l.time_ms > 3 * HOUR_MS) {
            flush(&mut run, out);
        }
        run.push(v);
    }
    flush(&mut run, out);
}

/// One market's verdicts: at the fitted threshold (the period only), and at each day's adapted
/// one.
struct Scored {
    market: String,
    fixed: Vec<Verdict>,
    adaptive: Vec<Verdict>,
}

/// Each day's scale for the rows of `scored` (fitted-threshold verdicts from the window before
/// the period on), at `rate`.
fn day_scales(scored: &[Vec<Verdict>], rate: f64, config: &EvalConfig) -> DailyScales {
    let ratios: Vec<(i64, f64)> = scored
        .iter()
        .flatten()
        .map(|v| (v.time_ms, v.score / v.threshold))
        .collect();
    DailyScales::fit(&ratios, rate, config.from_ms, config.to_ms, &config.adaptive)
}

fn fixed(x: &[Scored]) -> Vec<&Verdict> {
    x.iter().flat_map(|s| &s.fixed).collect()
}

fn adaptive(x: &[Scored]) -> Vec<&Verdict> {
    x.iter().flat_map(|s| &s.adaptive).collect()
}

/// Lowest, median and highest scale of the period's days.
fn spread(scales: &DailyScales) -> (f64, f64, f64) {
    let mut all: Vec<f64> = scales.days().map(|(_, s)| s.unwrap_or(1.0)).collect();
    all.sort_by(f64::total_cmp);
    match (all.first(), all.get(all.len() / 2), all.last()) {
        (Some(&lo), Some(&mid), Some(&hi)) => (lo, mid, hi),
        _ => (1.0, 1.0, 1.0),
    }
}

/// Runs the evaluation. `markets` holds the data up to `config.to_ms` (the history before the
/// period feeds the features' baselines and the first days' scales).
#[must_use]
pub fn evaluate(scorer: &Scorer, markets: &Markets, config: &EvalConfig) -> Report {
    let d = &scorer.detector;
    // The first day's window counts back from that day's start, as the daily scales read it
    // (from `--from` itself, a `--from` after midnight left that day's first hours unscored).
    let since = config.from_ms.div_euclid(volcast_core::time::DAY_MS) * volcast_core::time::DAY_MS
        - config.adaptive.window_ms();
    let in_period = |t: i64| t >= config.from_ms && t <= config.to_ms;
    // Real data at the fitted thresholds, from the first day's window on: against the market
    // where it covers the hour, and every hour alone.
    let at_fitted = |market: Option<&features::MarketContext>| -> Vec<Vec<Verdict>> {
        markets
            .rows
            .par_iter()
            .map(|rows| {
                let mut v = scorer.score_rows_scaled(rows, market, since, |_, _| 1.0);
                v.retain(|v| v.time_ms <= config.to_ms);
                v
            })
            .collect()
    };
    let candle_all = at_fitted(Some(&markets.market));
    let alone_all = at_fitted(None);
    let pool_rows: Vec<Vec<Option<features::Row>>> = markets
        .pools
        .par_iter()
        .map(|p| features::pool_rows(&d.config.features, &p.snapshots, markets.candles_of(&p.asset)))
        .collect();
    let pool_all: Vec<Vec<Verdict>> = pool_rows
        .par_iter()
        .map(|rows| {
            rows.iter()
                .flatten()
                .filter(|r| r.time_ms >= since && r.time_ms <= config.to_ms)
                .filter_map(|r| scorer.pool_verdict_scaled(r, 1.0))
                .collect()
        })
        .collect();
    let candle_scales = day_scales(&candle_all, d.candle_rate, config);
    let alone_scales = day_scales(&alone_all, d.candle_rate, config);
    // As the service scales them: an hour judged against the market by the market model's
    // scale, an hour judged alone by the alone model's.
    let hour_scale = |t: i64, on_market: bool| {
        if on_market {
            candle_scales.at(t)
        } else {
            alone_scales.at(t)
        }
    };
    let pool_scales = day_scales(&pool_all, d.pool_rate.unwrap_or(d.candle_rate), config);
    // The period at each day's adapted threshold.
    let real: Vec<Scored> = markets
        .assets
        .par_iter()
        .zip(&markets.rows)
        .zip(candle_all)
        .map(|((a, rows), all)| Scored {
            market: a.asset.clone(),
            adaptive: scorer
                .score_rows_scaled(rows, Some(&markets.market), config.from_ms, hour_scale)
                .into_iter()
                .filter(|v| in_period(v.time_ms))
                .collect(),
            fixed: all.into_iter().filter(|v| in_period(v.time_ms)).collect(),
        })
        .collect();
    let alone_at = |scales: &DailyScales| -> Vec<Vec<Verdict>> {
        markets
            .rows
            .par_iter()
            .map(|rows| {
                scorer
                    .score_rows_scaled(rows, None, config.from_ms, |t, _| scales.at(t))
                    .into_iter()
                    .filter(|v| in_period(v.time_ms))
                    .collect()
            })
            .collect()
    };
    let alone: Vec<Scored> = markets
        .assets
        .iter()
        .zip(alone_at(&alone_scales))
        .zip(alone_all)
        .map(|((a, adaptive), all)| Scored {
            market: a.asset.clone(),
            adaptive,
            fixed: all.into_iter().filter(|v| in_period(v.time_ms)).collect(),
        })
        .collect();
    let at_market_scale: Vec<Verdict> = alone_at(&candle_scales).into_iter().flatten().collect();
    let real_pools: Vec<Scored> = markets
        .pools
        .par_iter()
        .zip(&pool_rows)
        .zip(pool_all)
        .map(|((p, rows), all)| Scored {
            market: p.id.clone(),
            adaptive: rows
                .iter()
                .flatten()
                .filter(|r| in_period(r.time_ms))
                .filter_map(|r| scorer.pool_verdict_scaled(r, pool_scales.at(r.time_ms)))
                .collect(),
            fixed: all.into_iter().filter(|v| in_period(v.time_ms)).collect(),
        })
        .collect();
    let scored = |x: &[Scored]| x.iter().filter(|s| !s.fixed.is_empty()).count();
    let candles = rates(scored(&real), &fixed(&real), d.candle_rate);
    let candles_adaptive = rates(scored(&real), &adaptive(&real), d.candle_rate);
    let candles_alone = rates(scored(&alone), &fixed(&alone), d.candle_rate);
    let candles_alone_adaptive = rates(scored(&alone), &adaptive(&alone), d.candle_rate);
    let candles_alone_at_market_scale = rates(
        scored(&alone),
        &at_market_scale.iter().collect::<Vec<_>>(),
        d.candle_rate,
    );
    let pools = d
        .pool_rate
        .map(|r| rates(scored(&real_pools), &fixed(&real_pools), r));
    let pools_adaptive = d
        .pool_rate
        .map(|r| rates(scored(&real_pools), &adaptive(&real_pools), r));
    // The top events of the asset-hours and of the pools, each by `score / threshold` at the
    // fitted thresholds.
    let mut top_events = Vec::new();
    for series in [&real, &real_pools] {
        let mut found = Vec::new();
        for s in series.iter() {
            events(&s.market, &s.fixed, &mut found);
        }
        found.sort_by(|a, b| (b.score / b.threshold).total_cmp(&(a.score / a.threshold)));
        found.truncate(config.top);
        top_events.extend(found);
    }
    let mut without_drivers = fixed(&real)
        .into_iter()
        .chain(adaptive(&real))
        .chain(fixed(&alone))
        .chain(adaptive(&alone))
        .chain(fixed(&real_pools))
        .chain(adaptive(&real_pools))
        .filter(|v| v.flagged && v.drivers.is_empty())
        .count();
    // Injections.
    let flagged_real = |pick: fn(&Scored) -> &Vec<Verdict>| -> HashSet<(usize, i64)> {
        real.iter()
            .chain(&real_pools)
            .enumerate()
            .flat_map(|(i, s)| pick(s).iter().filter(|v| v.flagged).map(move |v| (i, v.time_ms)))
            .collect()
    };
    let flagged = Flagged {
        fixed: flagged_real(|s| &s.fixed),
        candle_scales: &hour_scale,
        pool_scales: &pool_scales,
        n_assets: real.len(),
    };
    let mut recall = Vec::new();
    let mut rng = Rng(config.seed);
    for pattern in Pattern::ALL {
        // A detector without a pool model, or a period without pools, has no pool recall.
        if pattern.is_pool() && (d.pools.is_none() || markets.pools.is_empty()) {
            continue;
        }
        for (level, (strength, text)) in pattern.strengths().into_iter().enumerate() {
            let draws: Vec<(usize, usize)> = (0..config.injections)
                .filter_map(|_| draw(&mut rng, markets, pattern, config, &d.config.features))
                .collect();
            let results: Vec<Injected> = draws
                .par_iter()
                .map(|&(m, at)| inject_one(scorer, markets, pattern, strength, m, at, &flagged))
                .collect();
            let injected = results.len();
            let share = |f: fn(&Injected) -> bool| share_of(&results, f);
            without_drivers += results.iter().map(|r| r.bare).sum::<usize>();
            recall.push(Recall {
                pattern: pattern.name(),
                level,
                strength: text,
                injected,
                detected: results.iter().filter(|r| r.detected).count(),
                recall: share(|r| r.detected),
                chance: share(|r| r.chance),
                recall_adaptive: share(|r| r.detected_adaptive),
                recall_alone: results.first().and_then(|r| r.detected_alone).map(|_| {
                    (
                        share(|r| r.detected_alone.is_some_and(|(f, _)| f)),
                        share(|r| r.detected_alone.is_some_and(|(_, a)| a)),
                    )
                }),
            });
        }
    }
    Report {
        detector: d.id.clone(),
        fit_until: d.fit_until.clone(),
        from: format_ms(config.from_ms),
        to: format_ms(config.to_ms),
        in_sample: volcast_core::time::parse_time(&d.fit_until, volcast_core::time::Bound::Start)
            .is_ok_and(|fit| config.from_ms <= fit),
        candles,
        candles_adaptive,
        candles_alone,
        candles_alone_adaptive,
        candles_alone_at_market_scale,
        pools,
        pools_adaptive,
        candle_scales: spread(&candle_scales),
        candle_alone_scales: spread(&alone_scales),
        pool_scales: spread(&pool_scales),
        top_events,
        recall,
        flags_without_drivers: without_drivers,
    }
}

/// A market (asset index, or pool index) and a row in the period to inject at.
fn draw(
    rng: &mut Rng,
    markets: &Markets,
    pattern: Pattern,
    config: &EvalConfig,
    fc: &FeatureConfig,
) -> Option<(usize, usize)> {
    if pattern.is_pool() && markets.pools.is_empty() || markets.assets.is_empty() {
        return None;
    }
    for _ in 0..100 {
        if pattern.is_pool() {
            let i = rng.below(markets.pools.len());
            let p = &markets.pools[i];
            // A gap needs the exchange's price to be measured against.
            if pattern == Pattern::DexCexGap && markets.candles_of(&p.asset).is_none() {
                continue;
            }
            let idx: Vec<usize> = (fc.pool_warmup_snapshots + 1..p.snapshots.len())
                .filter(|&k| {
                    let t = p.snapshots[k].time_ms;
                    t >= config.from_ms && t <= config.to_ms
                })
                .collect();
            if !idx.is_empty() {
                return Some((i, idx[rng.below(idx.len())]));
            }
        } else {
            let i = rng.below(markets.assets.len());
            let c = &markets.assets[i].candles;
            // Past the warm-up: the hours before it are not scored.
            let warm_end = c[0].open_time + (fc.candle_warmup_hours as i64 + 1) * HOUR_MS;
            let lo = c.partition_point(|x| x.open_time < config.from_ms.max(warm_end));
            let hi = c.partition_point(|x| x.open_time <= config.to_ms);
            if hi > lo + pattern.span() {
                return Some((i, lo + rng.below(hi - lo - pattern.span())));
            }
        }
    }
    None
}

/// The real data's flags (market index: assets, then pools) and the scales of the days.
struct Flagged<'a> {
    fixed: HashSet<(usize, i64)>,
    /// An asset-hour's scale: by its open time and whether it was judged against the market.
    candle_scales: &'a (dyn Fn(i64, bool) -> f64 + Sync),
    pool_scales: &'a DailyScales,
    n_assets: usize,
}

/// What one injection did.
struct Injected {
    /// A flag on a touched row at the fitted threshold.
    detected: bool,
    /// The same at the day's adapted threshold.
    detected_adaptive: bool,
    /// The same rows flagged without it (fitted threshold).
    chance: bool,
    /// Flags without drivers.
    bare: usize,
    /// A candle pattern's hours judged alone (without the market): flagged at the fitted
    /// threshold, and at the alone model's daily scale.
    detected_alone: Option<(bool, bool)>,
}

/// Injects once.
fn inject_one(
    scorer: &Scorer,
    markets: &Markets,
    pattern: Pattern,
    strength: f64,
    m: usize,
    at: usize,
    flagged: &Flagged<'_>,
) -> Injected {
    let fc = &scorer.detector.config.features;
    let (rows, range, key) = if pattern.is_pool() {
        let p = &markets.pools[m];
        let mut snaps = p.snapshots[..=at].to_vec();
        let range = inject_pool(&mut snaps, at, pattern, strength);
        let rows = features::pool_rows(fc, &snaps, markets.candles_of(&p.asset));
        (rows, range, flagged.n_assets + m)
    } else {
        let a = &markets.assets[m];
        let end = (at + pattern.span()).min(a.candles.len());
        let mut c = a.candles[..end].to_vec();
        let range = inject_candles(&mut c, at, pattern, strength);
        (features::candle_rows(fc, &c), range, m)
    };
    let touched: Vec<&features::Row> = rows[range.clone()].iter().flatten().collect();
    // The touched rows' verdicts with thresholds times `scale(time, judged against the market)`;
    // a candle pattern's read the hours just before them too.
    let verdicts_against = |market: Option<&_>, scale: &dyn Fn(i64, bool) -> f64| -> Vec<Verdict> {
        if pattern.is_pool() {
            touched
                .iter()
                .filter_map(|r| scorer.pool_verdict_scaled(r, scale(r.time_ms, false)))
                .collect()
        } else {
            let Some(first) = touched.first() else {
                return Vec::new();
            };
            let before = range.start.saturating_sub(scorer.lookback_hours());
            scorer.score_rows_scaled(&rows[before..range.end], market, first.time_ms, scale)
        }
    };
    let verdicts = |scale: &dyn Fn(i64, bool) -> f64| verdicts_against(Some(&markets.market), scale);
    let fixed = verdicts(&|_, _| 1.0);
    let adaptive = if pattern.is_pool() {
        verdicts(&|t, _| flagged.pool_scales.at(t))
    } else {
        verdicts(flagged.candle_scales)
    };
    let bare = fixed
        .iter()
        .chain(&adaptive)
        .filter(|v| v.flagged && v.drivers.is_empty())
        .count();
    // Judged alone, as the risk window is: every hour takes the alone model's scale.
    let detected_alone = (!pattern.is_pool()).then(|| {
        let flagged_at =
            |scale: &dyn Fn(i64, bool) -> f64| verdicts_against(None, scale).iter().any(|v| v.flagged);
        (
            flagged_at(&|_, _| 1.0),
            flagged_at(&|t, _| (flagged.candle_scales)(t, false)),
        )
    });
    Injected {
        detected: fixed.iter().any(|v| v.flagged),
        detected_adaptive: adaptive.iter().any(|v| v.flagged),
        chance: touched.iter().any(|r| flagged.fixed.contains(&(key, r.time_ms))),
        bare,
        detected_alone,
    }
}

/// What [`Report::in_sample`] means for the report, in words.
#[must_use]
pub fn in_sample_warning(r: &Report) -> String {
    format!(
        "In sample: the detector was fit on data until {}, and the scored period starts at {}: \
         these rates are not an out-of-sample score (give --from after the fit end, or a \
         detector fit earlier with `anomaly train --fit-until`)",
        r.fit_until, r.from
    )
}

/// The report as Markdown tables.
#[must_use]
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Detector {} (fit until {}), scored {} .. {}\n",
        r.detector, r.fit_until, r.from, r.to
    );
    if r.in_sample {
        let _ = writeln!(s, "**{}**\n", in_sample_warning(r));
    }
    let _ = writeln!(
        s,
        "| data | threshold | markets | rows scored | flagged | false-alarm rate | stated | ratio |\n|---|---|--:|--:|--:|--:|--:|--:|"
    );
    for (name, threshold, x) in [
        ("asset-hours", "fitted", Some(&r.candles)),
        ("asset-hours", "adapted daily", Some(&r.candles_adaptive)),
        ("asset-hours alone", "fitted", Some(&r.candles_alone)),
        (
            "asset-hours alone",
            "adapted daily",
            Some(&r.candles_alone_adaptive),
        ),
        (
            "asset-hours alone",
            "the market's daily scale",
            Some(&r.candles_alone_at_market_scale),
        ),
        ("pool snapshots", "fitted", r.pools.as_ref()),
        ("pool snapshots", "adapted daily", r.pools_adaptive.as_ref()),
    ] {
        if let Some(x) = x {
            let _ = writeln!(
                s,
                "| {name} | {threshold} | {} | {} | {} | {:.4}% | {:.4}% | {:.2} |",
                x.markets,
                x.scored,
                x.flagged,
                100.0 * x.rate,
                100.0 * x.stated_rate,
                x.ratio_to_stated
            );
        }
    }
    let _ = writeln!(
        s,
        "\nDaily scale of the threshold (lowest, median, highest): asset-hours {:.2} / {:.2} / {:.2}, asset-hours alone {:.2} / {:.2} / {:.2}, pool snapshots {:.2} / {:.2} / {:.2}",
        r.candle_scales.0,
        r.candle_scales.1,
        r.candle_scales.2,
        r.candle_alone_scales.0,
        r.candle_alone_scales.1,
        r.candle_alone_scales.2,
        r.pool_scales.0,
        r.pool_scales.1,
        r.pool_scales.2
    );
    let _ = writeln!(
        s,
        "\n| pattern | strength | injected | recall (fitted) | recall (adapted daily) | flagged anyway (no injection) | judged alone: recall (fitted / adapted) |\n|---|---|--:|--:|--:|--:|--:|"
    );
    for x in &r.recall {
        let alone = x
            .recall_alone
            .map_or_else(|| "-".to_owned(), |(f, a)| format!("{} / {}", rate(f), rate(a)));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {alone} |",
            x.pattern,
            x.strength,
            x.injected,
            rate(x.recall),
            rate(x.recall_adaptive),
            rate(x.chance)
        );
    }
    let _ = writeln!(s, "\nFlags without drivers: {}\n", r.flags_without_drivers);
    let _ = writeln!(
        s,
        "| market | flagged rows | peak | score / threshold | drivers |\n|---|---|---|--:|---|"
    );
    for e in &r.top_events {
        let drivers: Vec<String> = e
            .pattern
            .iter()
            .map(|p| format!("reads as {p}"))
            .chain(
                e.drivers
                    .iter()
                    .map(|d| format!("{} ({:+.1} sd)", d.description, d.z)),
            )
            .collect();
        let rows = if e.start == e.end {
            e.start.clone()
        } else {
            format!("{} .. {} ({})", e.start, e.end, e.rows)
        };
        let _ = writeln!(
            s,
            "| {} | {rows} | {} | {:.1} | {} |",
            e.market,
            e.peak,
            e.score / e.threshold,
            drivers.join("; ")
        );
    }
    s
}

/// The share of `results` for which `f` holds; NaN (JSON null, `-` in the report) over no
/// injection (a period where none could be drawn read as a recall of 0).
fn share_of(results: &[Injected], f: fn(&Injected) -> bool) -> f64 {
    if results.is_empty() {
        return f64::NAN;
    }
    results.iter().filter(|r| f(r)).count() as f64 / results.len() as f64
}

/// A rate to three decimals, `-` where there is none.
fn rate(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "-".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recall over no injection is none, not 0 (it read as a detector that misses all).
    #[test]
    fn a_share_of_no_injection_is_none() {
        assert!(share_of(&[], |r| r.detected).is_nan());
        assert_eq!(rate(f64::NAN), "-");
        let one = Injected {
            detected: true,
            detected_adaptive: false,
            chance: false,
            bare: 0,
            detected_alone: None,
        };
        assert!((share_of(&[one], |r| r.detected) - 1.0).abs() < 1e-12);
        assert_eq!(rate(0.25), "0.250");
    }
}
