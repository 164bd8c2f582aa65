//! `anomaly evaluate`: on a period, the false-alarm rate on real data against the stated rate,
//! the top events by score with their drivers, and the recall of each injected manipulation at
//! each strength (our generator, [`volcast_core::anomaly::inject`]).

use std::collections::HashSet;
use std::fmt::Write as _;

use rayon::prelude::*;
use serde::Serialize;
use volcast_core::anomaly::features::FeatureConfig;
use volcast_core::anomaly::inject::{Pattern, inject_candles, inject_pool};
use volcast_core::anomaly::{Driver, Scorer, Verdict, features};
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
    /// `detected / injected`.
    pub recall: f64,
    /// The same rows without the injection: how often they were flagged anyway.
    pub chance: f64,
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
    /// Asset-hours.
    pub candles: Rates,
    /// Pool snapshots.
    pub pools: Option<Rates>,
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

/// Runs the evaluation. `markets` holds the data up to `config.to_ms` (the history before the
/// period feeds the features' baselines).
#[must_use]
pub fn evaluate(scorer: &Scorer, markets: &Markets, config: &EvalConfig) -> Report {
    let d = &scorer.detector;
    let in_period = |t: i64| t >= config.from_ms && t <= config.to_ms;
    // Real data.
    let real: Vec<(String, Vec<Verdict>)> = markets
        .assets
        .par_iter()
        .zip(&markets.rows)
        .map(|(a, rows)| {
            let mut v = scorer.score_rows(rows, Some(&markets.market), config.from_ms);
            v.retain(|v| v.time_ms <= config.to_ms);
            (a.asset.clone(), v)
        })
        .collect();
    let real_pools: Vec<(String, Vec<Verdict>)> = markets
        .pools
        .par_iter()
        .map(|p| {
            let v = scorer.score_pool(&p.snapshots, markets.candles_of(&p.asset));
            (
                p.id.clone(),
                v.into_iter().filter(|v| in_period(v.time_ms)).collect(),
            )
        })
        .collect();
    let candle_verdicts = flat(&real);
    let pool_verdicts = flat(&real_pools);
    let scored = |x: &[(String, Vec<Verdict>)]| x.iter().filter(|(_, v)| !v.is_empty()).count();
    let candles = rates(scored(&real), &candle_verdicts, d.candle_rate);
    let pools = d.pool_rate.map(|r| rates(scored(&real_pools), &pool_verdicts, r));
    // The top events of the asset-hours and of the pools, each by `score / threshold`.
    let mut top_events = Vec::new();
    for series in [&real, &real_pools] {
        let mut found = Vec::new();
        for (m, v) in series.iter() {
            events(m, v, &mut found);
        }
        found.sort_by(|a, b| (b.score / b.threshold).total_cmp(&(a.score / a.threshold)));
        found.truncate(config.top);
        top_events.extend(found);
    }
    let mut without_drivers = candle_verdicts
        .iter()
        .chain(&pool_verdicts)
        .filter(|v| v.flagged && v.drivers.is_empty())
        .count();
    // Injections.
    let flagged_real: HashSet<(usize, i64)> = real
        .iter()
        .enumerate()
        .chain(real_pools.iter().enumerate().map(|(i, x)| (i + real.len(), x)))
        .flat_map(|(i, (_, v))| v.iter().filter(|v| v.flagged).map(move |v| (i, v.time_ms)))
        .collect();
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
            let results: Vec<(bool, bool, usize)> = draws
                .par_iter()
                .map(|&(m, at)| {
                    inject_one(
                        scorer,
                        markets,
                        pattern,
                        strength,
                        m,
                        at,
                        real.len(),
                        &flagged_real,
                    )
                })
                .collect();
            let injected = results.len();
            let detected = results.iter().filter(|r| r.0).count();
            let chance = results.iter().filter(|r| r.1).count();
            without_drivers += results.iter().map(|r| r.2).sum::<usize>();
            recall.push(Recall {
                pattern: pattern.name(),
                level,
                strength: text,
                injected,
                detected,
                recall: detected as f64 / injected.max(1) as f64,
                chance: chance as f64 / injected.max(1) as f64,
            });
        }
    }
    Report {
        detector: d.id.clone(),
        fit_until: d.fit_until.clone(),
        from: format_ms(config.from_ms),
        to: format_ms(config.to_ms),
        candles,
        pools,
        top_events,
        recall,
        flags_without_drivers: without_drivers,
    }
}

fn flat(x: &[(String, Vec<Verdict>)]) -> Vec<&Verdict> {
    x.iter().flat_map(|(_, v)| v.iter()).collect()
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

/// Injects once: (detected, the same rows flagged without it, flags without drivers).
#[allow(clippy::too_many_arguments)]
fn inject_one(
    scorer: &Scorer,
    markets: &Markets,
    pattern: Pattern,
    strength: f64,
    m: usize,
    at: usize,
    n_assets: usize,
    flagged_real: &HashSet<(usize, i64)>,
) -> (bool, bool, usize) {
    let fc = &scorer.detector.config.features;
    let verdicts: Vec<Verdict>;
    let (range, key, times): (std::ops::Range<usize>, usize, Vec<i64>);
    if pattern.is_pool() {
        let p = &markets.pools[m];
        let mut snaps = p.snapshots[..=at].to_vec();
        range = inject_pool(&mut snaps, at, pattern, strength);
        let rows = features::pool_rows(fc, &snaps, markets.candles_of(&p.asset));
        times = range.clone().map(|k| snaps[k].time_ms).collect();
        verdicts = rows[range]
            .iter()
            .flatten()
            .filter_map(|r| scorer.pool_verdict(r))
            .collect();
        key = n_assets + m;
    } else {
        let a = &markets.assets[m];
        let end = (at + pattern.span()).min(a.candles.len());
        let mut c = a.candles[..end].to_vec();
        range = inject_candles(&mut c, at, pattern, strength);
        let rows = features::candle_rows(fc, &c);
        times = range.clone().map(|k| c[k].open_time).collect();
        verdicts = rows[range]
            .iter()
            .flatten()
            .filter_map(|r| scorer.candle_verdict(r, Some(&markets.market)))
            .collect();
        key = m;
    }
    let detected = verdicts.iter().any(|v| v.flagged);
    let chance = times.iter().any(|t| flagged_real.contains(&(key, *t)));
    let bare = verdicts
        .iter()
        .filter(|v| v.flagged && v.drivers.is_empty())
        .count();
    (detected, chance, bare)
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
    let _ = writeln!(
        s,
        "| data | markets | rows scored | flagged | false-alarm rate | stated | ratio |\n|---|--:|--:|--:|--:|--:|--:|"
    );
    for (name, x) in [
        ("asset-hours", Some(&r.candles)),
        ("pool snapshots", r.pools.as_ref()),
    ] {
        if let Some(x) = x {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {:.4}% | {:.4}% | {:.2} |",
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
        "\n| pattern | strength | injected | recall | flagged anyway (no injection) |\n|---|---|--:|--:|--:|"
    );
    for x in &r.recall {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.3} |",
            x.pattern, x.strength, x.injected, x.recall, x.chance
        );
    }
    let _ = writeln!(s, "\nFlags without drivers: {}\n", r.flags_without_drivers);
    let _ = writeln!(
        s,
        "| market | flagged rows | peak | score / threshold | drivers |\n|---|---|---|--:|---|"
    );
    for e in &r.top_events {
        let drivers: Vec<String> = e
            .drivers
            .iter()
            .map(|d| format!("{} ({:+.1} sd)", d.description, d.z))
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
