//! Scoring forecast tables against SPEC's targets: QLIKE on common points, Diebold-Mariano,
//! quantile coverage and shortage classification (the liquidation-threshold backtest is
//! [`super::risk`]).

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::report::{AssetHorizonReport, CoverageReport, DmReport, HorizonReport, ShortageReport};
use volcast_core::forecast::{ForecastTable, Origin};
use volcast_core::grid::Asset;
use volcast_core::panel::PreparedAsset;
use volcast_core::scoring::{
    average_precision, brier, diebold_mariano, diebold_mariano_daily, qlike, roc_auc,
};

/// Name of the forecaster that DM compares with HAR.
pub const MODEL: &str = "model";

/// What the model is compared with (SPEC, "Operated comparison"): the better of these on the
/// same points.
const HAR_BASELINES: [&str; 2] = ["har", "har_operated"];

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Scores every table's variance, quantiles and shortage forecasts at horizon `h`.
#[must_use]
pub fn score_horizon(
    h: usize,
    assets: &[Asset],
    prepared: &[PreparedAsset],
    origins: &[Origin],
    tables: &[ForecastTable],
) -> HorizonReport {
    let variance = variance_forecasts(h, tables);
    let targets: Vec<f64> = origins
        .par_iter()
        .map(|o| prepared[o.asset].target(o.slot, h))
        .collect();

    let (points, n_zero) = common_points(&targets, &variance);
    let losses: BTreeMap<&str, Vec<f64>> = variance
        .iter()
        .map(|&(name, f)| (name, points.iter().map(|&i| qlike(targets[i], f[i])).collect()))
        .collect();
    let qlike_pooled: BTreeMap<String, f64> = losses
        .iter()
        .map(|(name, l)| ((*name).to_owned(), mean(l.iter().copied())))
        .collect();

    let days: Vec<i64> = points
        .iter()
        .map(|&i| assets[origins[i].asset].grid.hour(origins[i].slot).div_euclid(24))
        .collect();
    let dm = dm_against_har(h, &losses, &points, origins, &days);
    let calibration = quantile_coverage(h, tables, &points, &targets);

    let (shortage, shortage_points) = score_shortage(h, prepared, origins, tables);

    let per_asset = HorizonPoints {
        h,
        origins,
        tables,
        points: &points,
        losses: &losses,
        shortage_points: &shortage_points,
    }
    .per_asset(assets);

    HorizonReport {
        n_points: points.len(),
        n_zero_rv_excluded: n_zero,
        qlike: qlike_pooled,
        dm,
        calibration,
        shortage,
        per_asset,
    }
}

/// The non-empty variance forecasts at horizon `h`, by table name.
fn variance_forecasts(h: usize, tables: &[ForecastTable]) -> Vec<(&str, &[f64])> {
    tables
        .iter()
        .filter_map(|t| {
            let f = t.horizons.get(&h)?;
            (!f.variance.is_empty()).then_some((t.name.as_str(), f.variance.as_slice()))
        })
        .collect()
}

/// Common points (origin indices with a nonzero target) and the count of zero targets excluded.
fn common_points(targets: &[f64], variance: &[(&str, &[f64])]) -> (Vec<usize>, usize) {
    // Common points: a target and a finite positive forecast from every forecaster.
    let mut points = Vec::new();
    let mut n_zero = 0;
    for (i, &rv) in targets.iter().enumerate() {
        if rv.is_nan() || !variance.iter().all(|(_, f)| f[i].is_finite() && f[i] > 0.0) {
            continue;
        }
        if rv == 0.0 {
            n_zero += 1;
        } else {
            points.push(i);
        }
    }
    (points, n_zero)
}

/// Diebold-Mariano test of the model's QLIKE losses against the better of HAR and HAR operated
/// on the same points (SPEC, "Operated comparison"), the baseline the QLIKE ratio is against:
/// never GARCH or EWMA, even where one of them scores better. Pooled over the points, and on
/// the daily cross-sectional means (`days[j]`: point `j`'s origin day).
fn dm_against_har(
    h: usize,
    losses: &BTreeMap<&str, Vec<f64>>,
    points: &[usize],
    origins: &[Origin],
    days: &[i64],
) -> Option<DmReport> {
    losses.get(MODEL).and_then(|model| {
        let (best, best_losses) = losses
            .iter()
            .filter(|(name, _)| HAR_BASELINES.contains(name))
            .min_by(|a, b| mean(a.1.iter().copied()).total_cmp(&mean(b.1.iter().copied())))?;
        let d: Vec<f64> = model.iter().zip(best_losses).map(|(m, b)| m - b).collect();
        let group: Vec<usize> = points.iter().map(|&i| origins[i].asset).collect();
        let test = diebold_mariano(&d, &group, h.div_ceil(24))?;
        let daily = diebold_mariano_daily(&d, days, h.div_ceil(24));
        let (asset_wins, assets) = asset_wins(&d, &group);
        Some(DmReport {
            against: (*best).to_owned(),
            statistic: test.statistic,
            p_value: test.p_value,
            mean_difference: test.mean_difference,
            lag: test.lag,
            daily_statistic: daily.map(|t| t.statistic),
            daily_p_value: daily.map(|t| t.p_value),
            days: daily.map_or(0, |t| t.n),
            asset_wins,
            assets,
        })
    })
}

/// Of the assets in `group` (point `j`'s asset), those whose mean loss difference `d`
/// (model minus baseline) is below 0, and how many assets there are.
fn asset_wins(d: &[f64], group: &[usize]) -> (usize, usize) {
    let mut by_asset: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for (&x, &g) in d.iter().zip(group) {
        let e = by_asset.entry(g).or_insert((0.0, 0));
        e.0 += x;
        e.1 += 1;
    }
    let wins = by_asset
        .values()
        .filter(|(sum, n)| (*sum / *n as f64) < 0.0)
        .count();
    (wins, by_asset.len())
}

/// Share of targets below each quantile forecast on the common points, per table with quantiles.
fn quantile_coverage(
    h: usize,
    tables: &[ForecastTable],
    points: &[usize],
    targets: &[f64],
) -> BTreeMap<String, Vec<CoverageReport>> {
    tables
        .iter()
        .filter_map(|t| {
            let quantiles = &t.horizons.get(&h)?.quantiles;
            (!quantiles.is_empty()).then(|| {
                let coverage = quantiles
                    .iter()
                    .map(|q| CoverageReport {
                        level: q.level,
                        coverage: mean(
                            points
                                .iter()
                                .map(|&i| f64::from(u8::from(targets[i] < q.values[i]))),
                        ),
                    })
                    .collect();
                (t.name.clone(), coverage)
            })
        })
        .collect()
}

/// The scored points of one horizon, for the per-asset breakdown.
struct HorizonPoints<'a> {
    /// Horizon, hours.
    h: usize,
    /// Origins the point indices refer to.
    origins: &'a [Origin],
    /// The forecast tables scored.
    tables: &'a [ForecastTable],
    /// Common variance points (origin indices).
    points: &'a [usize],
    /// QLIKE losses per forecaster, aligned with `points`.
    losses: &'a BTreeMap<&'a str, Vec<f64>>,
    /// Shortage points `(origin index, label, rank scores per forecaster)`.
    shortage_points: &'a [(usize, bool, Vec<f64>)],
}

impl HorizonPoints<'_> {
    /// One report per asset with any variance or shortage point.
    fn per_asset(&self, assets: &[Asset]) -> Vec<AssetHorizonReport> {
        assets
            .iter()
            .enumerate()
            .filter_map(|(a, asset)| self.asset_report(a, asset))
            .collect()
    }

    /// Mean QLIKE and shortage scores of asset `a`; None when it has no point.
    fn asset_report(&self, a: usize, asset: &Asset) -> Option<AssetHorizonReport> {
        let (h, origins, points) = (self.h, self.origins, self.points);
        let mine: Vec<usize> = (0..points.len())
            .filter(|&k| origins[points[k]].asset == a)
            .collect();
        let short: Vec<&(usize, bool, Vec<f64>)> = self
            .shortage_points
            .iter()
            .filter(|p| origins[p.0].asset == a)
            .collect();
        if mine.is_empty() && short.is_empty() {
            return None;
        }
        let labels: Vec<bool> = short.iter().map(|p| p.1).collect();
        let shortage_roc_auc = shortage_names(h, self.tables)
            .enumerate()
            .filter_map(|(j, name)| {
                let scores: Vec<f64> = short.iter().map(|p| p.2[j]).collect();
                Some((name.to_owned(), roc_auc(&scores, &labels)?))
            })
            .collect();
        Some(AssetHorizonReport {
            asset: asset.id.clone(),
            n_points: mine.len(),
            // No QLIKE where the asset has no common point (e.g. only zero-RV windows).
            qlike: self
                .losses
                .iter()
                .filter(|_| !mine.is_empty())
                .map(|(name, l)| ((*name).to_owned(), mean(mine.iter().map(|&k| l[k]))))
                .collect(),
            shortage_n: short.len(),
            shortage_base_rate: (!short.is_empty())
                .then(|| mean(labels.iter().map(|&y| f64::from(u8::from(y))))),
            shortage_roc_auc,
        })
    }
}

fn shortage_names(h: usize, tables: &[ForecastTable]) -> impl Iterator<Item = &str> {
    tables
        .iter()
        .filter(move |t| t.horizons.get(&h).is_some_and(|f| f.shortage.is_some()))
        .map(|t| t.name.as_str())
}

/// Shortage scores; also returns the points `(origin index, label, rank scores per forecaster)`.
fn score_shortage(
    h: usize,
    prepared: &[PreparedAsset],
    origins: &[Origin],
    tables: &[ForecastTable],
) -> (ShortageReport, Vec<(usize, bool, Vec<f64>)>) {
    let forecasts: Vec<_> = tables
        .iter()
        .filter_map(|t| t.horizons.get(&h)?.shortage.as_ref())
        .collect();
    let labels: Vec<Option<bool>> = origins
        .par_iter()
        .map_init(Vec::new, |scratch, o| {
            prepared[o.asset].shortage(o.slot, h, scratch).label
        })
        .collect();
    let points: Vec<(usize, bool, Vec<f64>)> = labels
        .iter()
        .enumerate()
        .filter_map(|(i, label)| {
            let label = (*label)?;
            forecasts
                .iter()
                .all(|f| f.score[i].is_finite())
                .then(|| (i, label, forecasts.iter().map(|f| f.score[i]).collect()))
        })
        .collect();
    let y: Vec<bool> = points.iter().map(|p| p.1).collect();
    let mut report = ShortageReport {
        n_points: points.len(),
        base_rate: mean(y.iter().map(|&b| f64::from(u8::from(b)))),
        ..ShortageReport::default()
    };
    for (j, (name, f)) in shortage_names(h, tables).zip(&forecasts).enumerate() {
        let scores: Vec<f64> = points.iter().map(|p| p.2[j]).collect();
        let probabilities: Vec<f64> = points.iter().map(|p| f.probability[p.0]).collect();
        if let Some(v) = roc_auc(&scores, &y) {
            report.roc_auc.insert(name.to_owned(), v);
        }
        if let Some(v) = average_precision(&scores, &y) {
            report.pr_auc.insert(name.to_owned(), v);
        }
        // A forecaster without probabilities (a failed logistic fit) gets no Brier score.
        if probabilities.iter().all(|p| p.is_finite())
            && let Some(v) = brier(&probabilities, &y)
        {
            report.brier.insert(name.to_owned(), v);
        }
    }
    (report, points)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where GARCH scores better than both HARs, DM is still against the better HAR, as the
    /// QLIKE ratio is.
    #[test]
    fn dm_is_against_the_better_har_never_garch() {
        let n = 40;
        let origins: Vec<Origin> = (0..n).map(|slot| Origin { asset: 0, slot }).collect();
        let points: Vec<usize> = (0..n).collect();
        // Losses that move apart (a constant difference has no variance, and no test).
        let wave = |base: f64, period: usize| -> Vec<f64> {
            (0..n).map(|i| base + 0.01 * (i % period) as f64).collect()
        };
        let mut losses = BTreeMap::new();
        losses.insert(MODEL, wave(0.50, 3));
        losses.insert("garch", wave(0.10, 5));
        losses.insert("ewma", wave(0.20, 7));
        losses.insert("har", wave(0.60, 5));
        losses.insert("har_operated", wave(0.55, 7));
        let days: Vec<i64> = (0..n as i64).collect();
        let dm = dm_against_har(4, &losses, &points, &origins, &days);
        assert_eq!(dm.map(|d| d.against).as_deref(), Some("har_operated"));
        losses.remove("har_operated");
        let dm = dm_against_har(4, &losses, &points, &origins, &days);
        assert_eq!(dm.map(|d| d.against).as_deref(), Some("har"));
    }

    /// SPEC's per-asset wins: assets whose mean QLIKE is below the better HAR's, counted
    /// against the baseline the test is against.
    #[test]
    fn per_asset_wins_are_counted_against_the_better_har() {
        // Three assets of 20 points: the model beats HAR operated on the first only, and HAR on
        // the first two.
        let n = 60;
        let origins: Vec<Origin> = (0..n)
            .map(|i| Origin {
                asset: i / 20,
                slot: i % 20,
            })
            .collect();
        let points: Vec<usize> = (0..n).collect();
        let by_asset = |levels: [f64; 3]| -> Vec<f64> {
            (0..n).map(|i| levels[i / 20] + 0.01 * (i % 3) as f64).collect()
        };
        let mut losses = BTreeMap::new();
        losses.insert(MODEL, by_asset([0.30, 0.50, 0.90]));
        losses.insert(
            "har",
            by_asset([0.60, 0.60, 0.60])
                .iter()
                .map(|x| x + 0.002 * (x * 100.0).sin())
                .collect(),
        );
        losses.insert("har_operated", by_asset([0.40, 0.45, 0.50]));
        let days: Vec<i64> = (0..n as i64).map(|i| i % 20).collect();
        let dm = dm_against_har(24, &losses, &points, &origins, &days).unwrap();
        assert_eq!(
            (dm.against.as_str(), dm.asset_wins, dm.assets),
            ("har_operated", 1, 3)
        );
        losses.remove("har_operated");
        let dm = dm_against_har(24, &losses, &points, &origins, &days).unwrap();
        assert_eq!((dm.against.as_str(), dm.asset_wins, dm.assets), ("har", 2, 3));
    }
}
