//! The anomaly detector's offline side: DEX pool files ([`load_pools`]), fitting a detector on the
//! shared data up to a date, writing it as a versioned artifact, and its evaluation ([`evaluate`])
//! and charts ([`chart`]).

pub mod chart;
pub mod evaluate;
mod pools;

pub use pools::{Pool, exchange_asset, load_pools, read_pool};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rayon::prelude::*;
use volcast_core::anomaly::features::{
    self, CANDLE_DIRECTIONS, CANDLE_FEATURES, CANDLE_VOLUME, CANDLE_WICK, GAP_FEATURE, MARKET_FEATURES,
    MarketContext, OPTIONAL_POOL_FEATURES, POOL_FEATURES, PUMP_AND_DUMP, Row,
};
use volcast_core::anomaly::{Copula, Detector, DetectorConfig, Directed, Direction};
use volcast_core::candles::{AssetCandles, Candle};
use volcast_core::time::{HOUR_MS, format_ms};

/// The shared data's hourly candle directory and its root.
#[derive(Debug, Clone)]
pub struct DataDirs {
    /// `../shared/data` or what `--data` says.
    pub root: PathBuf,
}

impl DataDirs {
    /// The hourly candle directory.
    #[must_use]
    pub fn candles(&self) -> PathBuf {
        self.root.join("binance-spot-1h")
    }
}

/// Candles and pools cut at `until_ms` (inclusive: candle open times and snapshot times).
#[derive(Debug, Clone)]
pub struct Markets {
    /// Assets with at least one candle.
    pub assets: Vec<AssetCandles>,
    /// Pools with at least one snapshot.
    pub pools: Vec<Pool>,
    /// Each asset's candle rows, in the order of `assets`.
    pub rows: Vec<Vec<Option<Row>>>,
    /// The whole market each hour.
    pub market: MarketContext,
}

impl Markets {
    /// Loads the shared data up to `until_ms`.
    ///
    /// # Errors
    /// Unreadable data.
    pub fn load(data: &DataDirs, until_ms: i64, config: &DetectorConfig) -> anyhow::Result<Self> {
        let mut assets = crate::data::load_dirs(&[data.candles()])
            .with_context(|| format!("loading {}", data.candles().display()))?;
        for a in &mut assets {
            a.candles.retain(|c| c.open_time <= until_ms);
        }
        assets.retain(|a| !a.candles.is_empty());
        if assets.is_empty() {
            bail!("no candles up to {}", format_ms(until_ms));
        }
        let mut pools = load_pools(&data.root)?;
        for p in &mut pools {
            p.snapshots.retain(|s| s.time_ms <= until_ms);
        }
        pools.retain(|p| p.snapshots.len() > 1);
        let rows: Vec<Vec<Option<Row>>> = assets
            .par_iter()
            .map(|a| features::candle_rows(&config.features, &a.candles))
            .collect();
        let market = MarketContext::new(&rows, config.market_min_assets);
        Ok(Self {
            assets,
            pools,
            rows,
            market,
        })
    }

    /// The candles of `asset`, when loaded.
    #[must_use]
    pub fn candles_of(&self, asset: &str) -> Option<&[Candle]> {
        self.assets
            .binary_search_by(|a| a.asset.as_str().cmp(asset))
            .ok()
            .map(|i| self.assets[i].candles.as_slice())
    }
}

/// The lowest normal score the activity features count with: an hour quieter than usual is
/// never the story (zero-volume hours of illiquid pairs would otherwise flag).
const QUIET_FLOOR: f64 = -1.0;

/// Every market's rows (open time, values), oldest first, as one list of fit rows, and per
/// row the index of the same market's row one hour earlier, if there is one.
fn chained(markets: Vec<Vec<(i64, Vec<f64>)>>) -> (Vec<Vec<f64>>, Vec<Option<usize>>) {
    let mut values = Vec::new();
    let mut earlier = Vec::new();
    for rows in markets {
        let mut last: Option<(i64, usize)> = None;
        for (t, v) in rows {
            earlier.push(last.filter(|&(s, _)| t - s == HOUR_MS).map(|(_, i)| i));
            last = Some((t, values.len()));
            values.push(v);
        }
    }
    (values, earlier)
}

/// Fits a detector on `markets` (already cut at the fit end `until_ms`).
#[must_use]
pub fn fit(markets: &Markets, until_ms: i64, config: DetectorConfig) -> Detector {
    let fc = config.features;
    let (candle_rows, candle_earlier) = chained(
        markets
            .rows
            .iter()
            .map(|rows| {
                rows.iter()
                    .flatten()
                    .map(|r| (r.time_ms, r.values.clone()))
                    .collect()
            })
            .collect(),
    );
    let (market_rows, market_earlier) = chained(
        markets
            .rows
            .par_iter()
            .map(|rows| {
                rows.iter()
                    .flatten()
                    .filter_map(|r| markets.market.adjust(r).map(|a| (a.time_ms, a.values)))
                    .collect()
            })
            .collect(),
    );
    let candle_rate = config.flags_per_month / 720.0;
    let floors = vec![Some(QUIET_FLOOR); CANDLE_FEATURES.len()];
    // The wick given the volume: the same positions in both candle models.
    let given: Vec<(usize, usize)> = if config.wick_given_volume {
        vec![(CANDLE_WICK, CANDLE_VOLUME)]
    } else {
        Vec::new()
    };
    let directions: Vec<Direction> = if config.directed {
        CANDLE_DIRECTIONS
            .iter()
            .map(|(name, weights)| Direction {
                name: (*name).to_owned(),
                weights: weights.to_vec(),
                hours: if *name == PUMP_AND_DUMP {
                    config.pump_hours
                } else {
                    1
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    let candles = Copula::fit(
        &CANDLE_FEATURES,
        floors.clone(),
        &candle_rows,
        &[],
        candle_rate,
        &given,
        Directed {
            directions: directions.clone(),
            earlier: &candle_earlier,
        },
    );
    let candles_market = Copula::fit(
        &MARKET_FEATURES,
        floors,
        &market_rows,
        &[],
        candle_rate,
        &given,
        Directed {
            directions,
            earlier: &market_earlier,
        },
    );
    let pool_rows: Vec<Vec<f64>> = markets
        .pools
        .par_iter()
        .flat_map_iter(|p| {
            features::pool_rows(&fc, &p.snapshots, markets.candles_of(&p.asset))
                .into_iter()
                .flatten()
                .map(|r| r.values)
        })
        .collect();
    // The stated rate per pool-month, as a rate per snapshot at the pools' own spacing.
    let pool_days: f64 = markets
        .pools
        .iter()
        .map(|p| {
            let (a, b) = (p.snapshots[0].time_ms, p.snapshots[p.snapshots.len() - 1].time_ms);
            (b - a) as f64 / 86_400_000.0
        })
        .sum();
    let snaps: usize = markets.pools.iter().map(|p| p.snapshots.len()).sum();
    let (pools, pool_rate) = if pool_rows.len() >= 1000 && pool_days > 0.0 {
        let per_month = snaps as f64 / pool_days * 30.0;
        let rate = config.flags_per_month / per_month;
        let mut floors = vec![None; POOL_FEATURES.len()];
        for j in [GAP_FEATURE - 2, GAP_FEATURE - 1, GAP_FEATURE] {
            floors[j] = Some(QUIET_FLOOR);
        }
        let model = Copula::fit(
            &POOL_FEATURES,
            floors,
            &pool_rows,
            &OPTIONAL_POOL_FEATURES,
            rate,
            &[],
            Directed::default(),
        );
        (Some(model), Some(rate))
    } else {
        (None, None)
    };
    let mut fit_markets: Vec<String> = markets.assets.iter().map(|a| a.asset.clone()).collect();
    fit_markets.extend(markets.pools.iter().map(|p| p.id.clone()));
    let mut d = Detector {
        id: String::new(),
        config,
        fit_until: format_ms(until_ms),
        fit_markets,
        candles,
        candles_market,
        pools,
        candle_rate,
        pool_rate,
    };
    d.id = d.content_id();
    d
}

/// The detector's file in an artifact's directory, where the server looks by default (outside
/// the artifact's content id).
pub const DETECTOR_FILE: &str = "anomaly.json";

/// Writes `d` as pretty JSON to `path`, replacing it whole and flushed
/// ([`volcast_model::artifact::replace_durably`]), once the JSON is checked to load back (a
/// model whose quantiles are not numbers is written as nulls, and the server would refuse to
/// start on it): a detector that does not leaves what `path` held untouched.
///
/// # Errors
/// A detector that does not load back, or any write failure.
pub fn save(d: &Detector, path: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(d)?;
    if let Err(e) = Detector::from_json(&json) {
        anyhow::bail!(
            "the fitted detector does not load back ({e}): nothing written to {}",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    volcast_model::artifact::replace_durably(path, json.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a detector and checks its id against its content.
///
/// # Errors
/// Unreadable, not a detector, or an id that does not match the content.
pub fn load(path: &Path) -> anyhow::Result<Detector> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Detector::from_json(&text).with_context(|| path.display().to_string())
}

/// Per market, how many rows the fit used: for the training summary.
#[must_use]
pub fn summary(d: &Detector) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("id", d.id.clone());
    m.insert("fit_until", d.fit_until.clone());
    m.insert("candle_rows", d.candles.fit_rows.to_string());
    m.insert("candle_market_rows", d.candles_market.fit_rows.to_string());
    m.insert(
        "pool_rows",
        d.pools.as_ref().map_or(0, |p| p.fit_rows).to_string(),
    );
    m.insert("candle_rate_per_hour", format!("{:.6}", d.candle_rate));
    m.insert(
        "pool_rate_per_snapshot",
        d.pool_rate.map_or("-".into(), |r| format!("{r:.6}")),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use volcast_core::anomaly::{Scorer, Verdict};

    /// Six assets' synthetic hourly candles (a random walk with random volume and wicks), their
    /// rows and market, no pools.
    fn synthetic_markets(config: &DetectorConfig) -> Markets {
        let mut seed = 9u64;
        let mut u = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let assets: Vec<AssetCandles> = (0..6)
            .map(|k| {
                let mut price = 100.0;
                let candles = (0..1500)
                    .map(|h| {
                        let open = price;
                        price *= 1.0 + 0.01 * (u() - 0.5);
                        let wick = 0.005 * u() * u();
                        Candle {
                            open_time: 1_600_000_000_000 + h * 3_600_000,
                            open,
                            high: open.max(price) * (1.0 + 0.002 * u()),
                            low: open.min(price) * (1.0 - wick),
                            close: price,
                            volume: 10.0 + 100.0 * u() * u(),
                            quote_volume: 0.0,
                        }
                    })
                    .collect();
                AssetCandles {
                    asset: format!("A{k}USDT"),
                    candles,
                }
            })
            .collect();
        let rows: Vec<Vec<Option<Row>>> = assets
            .iter()
            .map(|a| features::candle_rows(&config.features, &a.candles))
            .collect();
        let market = MarketContext::new(&rows, config.market_min_assets);
        Markets {
            assets,
            pools: Vec::new(),
            rows,
            market,
        }
    }

    /// `d` written and read back whole, its id checked.
    fn assert_round_trips(d: &Detector) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anomaly.json");
        save(d, &path).unwrap();
        assert_eq!(&load(&path).unwrap(), d);
    }

    #[test]
    fn a_detector_that_does_not_load_back_leaves_the_file_it_would_replace() {
        let config = DetectorConfig::default();
        let d = fit(&synthetic_markets(&config), 1_700_000_000_000, config);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anomaly.json");
        save(&d, &path).unwrap();
        let before = std::fs::read(&path).unwrap();
        // Its content no longer matches its id: the server would refuse it.
        let mut broken = d.clone();
        broken.fit_until = "2030-01-01T00:00:00Z".into();
        let e = save(&broken, &path).unwrap_err().to_string();
        assert!(e.contains("does not load back"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(load(&path).unwrap(), d);
    }

    #[test]
    fn the_wick_given_volume_option_conditions_both_candle_models_and_is_recorded() {
        let until = 1_700_000_000_000;
        let plain = fit(
            &synthetic_markets(&DetectorConfig::default()),
            until,
            DetectorConfig::default(),
        );
        assert!(plain.candles.conditioned.is_empty() && plain.candles_market.conditioned.is_empty());
        // Off, the detector's JSON is what it was before the option existed (older ids hold).
        assert!(
            !serde_json::to_string(&plain)
                .unwrap()
                .contains("wick_given_volume")
        );
        let config = DetectorConfig {
            wick_given_volume: true,
            ..DetectorConfig::default()
        };
        let d = fit(&synthetic_markets(&config), until, config);
        assert!(d.config.wick_given_volume);
        for (model, wick, volume) in [
            (&d.candles, "wick", "volume"),
            (&d.candles_market, "wick_vs_market", "volume_vs_market"),
        ] {
            let c = &model.conditioned;
            assert_eq!(c.len(), 1);
            assert_eq!((c[0].feature.as_str(), c[0].on.as_str()), (wick, volume));
        }
        assert_ne!(d.id, plain.id);
        assert_round_trips(&d);
    }

    #[test]
    fn the_directed_option_gives_both_candle_models_the_patterns_directions_and_is_recorded() {
        let until = 1_700_000_000_000;
        let off = DetectorConfig {
            directed: false,
            ..DetectorConfig::default()
        };
        let plain = fit(&synthetic_markets(&off), until, off);
        // Off, the detector's JSON is what it was before the option existed (older ids hold).
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("directed") && !text.contains("directions"));
        // On by default.
        let config = DetectorConfig::default();
        assert!(config.directed);
        let d = fit(&synthetic_markets(&config), until, config);
        assert!(d.config.directed);
        for model in [&d.candles, &d.candles_market] {
            let names: Vec<&str> = model.directions.iter().map(|x| x.name.as_str()).collect();
            assert_eq!(names, ["pump_and_dump", "wash_trading", "spoofed_wick"]);
            // Each direction weighs the features its pattern moves, in the model's row order.
            let wick = &model.directions[2].weights;
            assert_eq!(wick.len(), model.features.len());
            let moved: Vec<&str> = (0..wick.len())
                .filter(|&j| wick[j] > 0.0)
                .map(|j| model.features[j].as_str())
                .collect();
            assert!(
                moved[0].starts_with("range") && moved[1].starts_with("wick"),
                "{moved:?}"
            );
            assert!(model.thresholds.iter().all(|t| t.directed.len() == 3));
        }
        assert_ne!(d.id, plain.id);
        assert_round_trips(&d);
    }

    #[test]
    fn the_pump_is_judged_over_five_hours_by_default_and_one_hour_writes_the_json_it_always_wrote() {
        let until = 1_700_000_000_000;
        let one = DetectorConfig {
            pump_hours: 1,
            ..DetectorConfig::default()
        };
        let plain = fit(&synthetic_markets(&one), until, one);
        let text = serde_json::to_string(&plain).unwrap();
        assert!(
            !text.contains("pump_hours") && !text.contains("\"hours\""),
            "{text}"
        );
        assert_eq!(Scorer::new(plain.clone()).lookback_hours(), 0);
        let config = DetectorConfig::default();
        assert_eq!(config.pump_hours, 5);
        let d = fit(&synthetic_markets(&config), until, config);
        for model in [&d.candles, &d.candles_market] {
            let hours: Vec<usize> = model.directions.iter().map(|x| x.hours).collect();
            assert_eq!(hours, [5, 1, 1]);
        }
        assert_eq!(Scorer::new(d.clone()).lookback_hours(), 4);
        assert_ne!(d.id, plain.id);
        // A stored detector judged over 0 hours is refused at load.
        let mut zero = d;
        zero.candles.directions[0].hours = 0;
        zero.id = zero.content_id();
        let err = Detector::from_json(&serde_json::to_string(&zero).unwrap()).unwrap_err();
        assert!(err.to_string().contains("0 hours"), "{err}");
    }

    #[test]
    fn scoring_from_an_hour_reads_the_hours_before_it_as_scoring_everything_does() {
        let config = DetectorConfig::default();
        let markets = synthetic_markets(&config);
        let scorer = Scorer::new(fit(&markets, 1_700_000_000_000, config));
        let candles = &markets.assets[0].candles;
        // Whether the hours before `from` changed any verdict (else this test could not fail).
        let mut read = false;
        for market in [None, Some(&markets.market)] {
            let all = scorer.score_rows(&markets.rows[0], market, i64::MIN);
            // From hours whose pump statistic reads four hours before them.
            for at in [400usize, 401, 777, 1200] {
                let from = candles[at].open_time;
                let expected: Vec<&Verdict> = all.iter().filter(|v| v.time_ms >= from).collect();
                let got = scorer.score_rows(&markets.rows[0], market, from);
                assert_eq!(got.iter().collect::<Vec<_>>(), expected);
                let mut blind = markets.rows[0].clone();
                blind[at - 4..at].fill(None);
                read |= scorer.score_rows(&blind, market, from) != got;
                if market.is_none() {
                    // The rows made from the lookback on, as a risk answer makes them.
                    let cut = scorer.score_candles_from(candles, None, from);
                    assert_eq!(cut.iter().collect::<Vec<_>>(), expected);
                }
            }
        }
        assert!(read, "no verdict read the hours before its window");
    }

    #[test]
    fn an_evaluation_gives_every_flag_drivers_and_its_table_names_an_events_pattern() {
        use evaluate::{EvalConfig, evaluate, render};
        use volcast_core::anomaly::{AdaptiveConfig, Scorer};
        let config = DetectorConfig::default();
        let markets = synthetic_markets(&config);
        let d = fit(&markets, 1_700_000_000_000, config);
        let from_ms = 1_600_000_000_000 + 1100 * 3_600_000;
        let eval = EvalConfig {
            from_ms,
            to_ms: from_ms + 390 * 3_600_000,
            injections: 40,
            seed: 1,
            top: 5,
            adaptive: AdaptiveConfig::default(),
        };
        let mut report = evaluate(&Scorer::new(d), &markets, &eval);
        assert_eq!(report.flags_without_drivers, 0);
        // On a calm market a 20% spoofed wick is found, whatever raised its flag.
        let wick = report
            .recall
            .iter()
            .find(|r| r.pattern == "spoofed_wick" && r.level == 2)
            .unwrap();
        assert!(wick.recall > 0.9, "{wick:?}");
        // Judged alone, as the risk route judges the window, it is found too; every candle
        // pattern reports that recall, no pool pattern does.
        let (alone, alone_adaptive) = wick.recall_alone.unwrap();
        assert!(alone > 0.9 && (0.0..=1.0).contains(&alone_adaptive), "{wick:?}");
        for r in &report.recall {
            let pool = r.pattern == "pool_drain" || r.pattern == "dex_cex_gap";
            assert_eq!(r.recall_alone.is_none(), pool, "{r:?}");
        }
        // An event flagged along a pattern's direction says so before its drivers.
        report.top_events.insert(
            0,
            evaluate::Event {
                market: "A0USDT".into(),
                start: "2020-10-01T00:00:00Z".into(),
                end: "2020-10-01T00:00:00Z".into(),
                rows: 1,
                peak: "2020-10-01T00:00:00Z".into(),
                score: 30.0,
                threshold: 20.0,
                drivers: Vec::new(),
                pattern: Some("wash_trading".into()),
            },
        );
        let text = render(&report);
        assert!(text.contains("| 1.5 | reads as wash_trading |"), "{text}");
    }

    /// The first day's scale reads that day's whole window whatever the hour `--from` names
    /// (from `--from` itself, the day's first hours were left out of its window).
    #[test]
    fn the_first_days_scale_does_not_move_with_the_hour_of_from() {
        use evaluate::{EvalConfig, evaluate};
        use volcast_core::anomaly::{AdaptiveConfig, Scorer};
        use volcast_core::time::DAY_MS;
        let config = DetectorConfig::default();
        let markets = synthetic_markets(&config);
        let d = fit(&markets, 1_700_000_000_000, config);
        let scorer = Scorer::new(d);
        let day = (1_600_000_000_000 + 1100 * 3_600_000_i64).div_euclid(DAY_MS) * DAY_MS + DAY_MS;
        let at = |from_ms: i64| {
            evaluate(
                &scorer,
                &markets,
                &EvalConfig {
                    from_ms,
                    to_ms: day + 23 * 3_600_000,
                    injections: 1,
                    seed: 1,
                    top: 1,
                    adaptive: AdaptiveConfig::default(),
                },
            )
        };
        let (midnight, late) = (at(day), at(day + 22 * 3_600_000));
        assert_eq!(midnight.candle_scales, late.candle_scales);
        assert_eq!(midnight.pool_scales, late.pool_scales);
    }

    #[test]
    fn a_detector_that_does_not_fit_this_code_is_refused_even_with_a_matching_id() {
        let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-artifacts");
        let id = std::fs::read_to_string(artifacts.join("default")).unwrap();
        let path = artifacts.join(id.trim()).join("anomaly.json");
        let shipped = load(&path).unwrap();
        // The same detector as it was before `out_and_back` replaced `round_trip`, its id
        // recomputed so that only the features are wrong.
        let mut old = shipped.clone();
        old.candles.features[5] = "round_trip".into();
        old.id = old.content_id();
        let err = Detector::from_json(&serde_json::to_string(&old).unwrap()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("candles features") && text.contains("round_trip") && text.contains("refit"),
            "{text}"
        );
        let mut reordered = shipped.clone();
        reordered.candles_market.features.swap(0, 1);
        reordered.id = reordered.content_id();
        assert!(Detector::from_json(&serde_json::to_string(&reordered).unwrap()).is_err());
        // Directions that do not fit their model: a weight short, a threshold missing.
        let mut short = shipped.clone();
        short.candles.directions[1].weights.pop();
        short.id = short.content_id();
        let text = Detector::from_json(&serde_json::to_string(&short).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("candles model's directions") && text.contains("wash_trading"),
            "{text}"
        );
        let mut unthresholded = shipped;
        unthresholded.candles_market.thresholds[0].directed.pop();
        unthresholded.id = unthresholded.content_id();
        let text = Detector::from_json(&serde_json::to_string(&unthresholded).unwrap())
            .unwrap_err()
            .to_string();
        assert!(text.contains("candles_market model's directions"), "{text}");
    }

    /// Tables that do not fit their features are refused at load, naming what: they used to
    /// load, then panic at start-up or at every request, or never flag.
    #[test]
    fn a_detector_whose_tables_do_not_fit_its_features_is_refused() {
        let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-artifacts");
        let id = std::fs::read_to_string(artifacts.join("default")).unwrap();
        let shipped = load(&artifacts.join(id.trim()).join("anomaly.json")).unwrap();
        type Edit = fn(&mut Detector);
        let cases: [(Edit, &str); 5] = [
            (|d| d.candles.correlation.truncate(1), "correlation"),
            (|d| d.candles_market.correlation[2].truncate(1), "correlation"),
            (|d| d.candles.floors.truncate(1), "floors"),
            (|d| d.candles_market.thresholds.clear(), "no thresholds"),
            (|d| d.candles.knots.truncate(1), "knot tables"),
        ];
        for (edit, said) in cases {
            let mut d = shipped.clone();
            edit(&mut d);
            d.id = d.content_id();
            let text = Detector::from_json(&serde_json::to_string(&d).unwrap())
                .map(|_| String::from("loaded"))
                .unwrap_or_else(|e| e.to_string());
            assert!(
                text.contains("malformed") && text.contains(said),
                "{said}: {text}"
            );
        }
    }
}
