//! All baselines fitted together on one fit period, and their forecast tables.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use super::FitError;
use super::ewma::Ewma;
use super::garch::{self, AssetGarch, GarchPath};
use super::har::{Har, HarPoint};
use super::shortage::ShortageLogistic;
use crate::backtest::normal_drawdown;
use crate::drawdown::{
    CALIBRATION_STRIDE, DrawdownCalibration, DrawdownRule, VarianceCurve, calibration_origins,
    fit_calibration,
};
use crate::forecast::{ForecastRequest, ForecastTable, HorizonForecasts, ShortageForecast};
use crate::grid::Asset;
use crate::panel::{PreparedAsset, daily_slots};
use crate::policy::{DrawdownWindow, VarianceOver, drawdown_within};

/// Fitted baselines.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineSet {
    /// Pooled EWMA decay.
    pub ewma: Ewma,
    /// GARCH per asset, in panel order.
    pub garch: Vec<AssetGarch>,
    /// Assets whose GARCH fit failed and that use the pooled fallback, with the reason.
    pub garch_failures: Vec<(String, String)>,
    /// HAR per horizon.
    pub har: BTreeMap<usize, Har>,
    /// Shortage logistic map per horizon.
    pub shortage: BTreeMap<usize, ShortageLogistic>,
    /// Fits that could not be made and what is missing because of them.
    pub warnings: Vec<String>,
}

/// Returns of the fit period (close hour <= `end_hour`), gaps dropped.
fn fit_returns(asset: &Asset, end_hour: i64) -> Vec<f64> {
    let end = asset.grid.slots_until(end_hour);
    asset.grid.ret[..end]
        .iter()
        .copied()
        .filter(|r| !r.is_nan())
        .collect()
}

/// GARCH's `(alpha, beta)` for every asset when no asset's could be fitted (a median needs at
/// least one fit).
const DEFAULT_GARCH: (f64, f64) = (0.05, 0.90);

impl BaselineSet {
    /// Fits every baseline on data with close hour at most `fit_end_hour`; samples with a
    /// forward window are used only when the window ends by then.
    ///
    /// # Errors
    /// [`FitError`] when a pooled fit (EWMA, HAR, shortage) has too little data or fails.
    pub fn fit(
        assets: &[Asset],
        prepared: &[PreparedAsset],
        fit_end_hour: i64,
        horizons: &[usize],
    ) -> Result<Self, FitError> {
        let returns: Vec<Vec<f64>> = assets.par_iter().map(|a| fit_returns(a, fit_end_hour)).collect();
        let ewma = Ewma::fit(&returns)?;

        let fitted: Vec<Option<Result<AssetGarch, FitError>>> = returns
            .par_iter()
            .map(|r| (r.len() >= garch::MIN_FIT_RETURNS).then(|| garch::fit(r)))
            .collect();
        let mut garch_failures = Vec::new();
        let ok: Vec<AssetGarch> = fitted
            .iter()
            .filter_map(|f| f.as_ref()?.as_ref().ok().copied())
            .collect();
        let mut warnings = Vec::new();
        let (alpha, beta) = garch::median_alpha_beta(&ok).unwrap_or_else(|| {
            // Said, not silent: every asset's GARCH is then these assumed parameters.
            warnings.push(format!(
                "no asset's GARCH(1,1) could be fitted (each needs {} fit-period returns, or its fit failed): \
                 every asset's GARCH uses the assumed alpha {} and beta {}",
                garch::MIN_FIT_RETURNS,
                DEFAULT_GARCH.0,
                DEFAULT_GARCH.1
            ));
            DEFAULT_GARCH
        });
        let garch = fitted
            .into_iter()
            .zip(assets)
            .zip(&returns)
            .map(|((f, asset), r)| match f {
                Some(Ok(model)) => model,
                other => {
                    if let Some(Err(e)) = other {
                        garch_failures.push((asset.id.clone(), e.to_string()));
                    }
                    AssetGarch::Pooled {
                        alpha,
                        beta,
                        n_returns: r.len(),
                    }
                }
            })
            .collect();

        let mut har = BTreeMap::new();
        let mut shortage = BTreeMap::new();
        for &h in horizons {
            let last_origin = fit_end_hour - i64::try_from(h).unwrap_or(i64::MAX);
            type PerAsset = (Vec<Vec<HarPoint>>, Vec<Vec<(f64, bool)>>);
            let (points, labelled): PerAsset = assets
                .par_iter()
                .zip(prepared)
                .map(|(asset, prep)| {
                    let mut scratch = Vec::new();
                    let mut points = Vec::new();
                    let mut labelled = Vec::new();
                    for slot in daily_slots(asset, i64::MIN / 2, last_origin) {
                        points.push(HarPoint {
                            target: prep.target(slot, h),
                            regressors: prep.har_regressors(slot),
                        });
                        let s = prep.shortage(slot, h, &mut scratch);
                        if let (Some(label), Some(score)) = (s.label, s.score) {
                            labelled.push((score, label));
                        }
                    }
                    (points, labelled)
                })
                .unzip();
            har.insert(h, Har::fit(h, &points.concat())?);
            // Without a logistic map the shortage score still ranks (ROC and PR AUC); only the
            // probability, and so the Brier score, is missing.
            match ShortageLogistic::fit(h, &labelled.concat()) {
                Ok(fit) => {
                    shortage.insert(h, fit);
                }
                Err(e) => warnings.push(format!("{e}; no baseline shortage probability at {h}h")),
            }
        }
        Ok(Self {
            ewma,
            garch,
            garch_failures,
            har,
            shortage,
            warnings,
        })
    }

    /// Forecast tables `ewma`, `garch`, `har` (variance; `garch` also the normal-quantile
    /// drawdown) and `baseline` (shortage score and probability) at the request's origins.
    #[must_use]
    pub fn forecast(&self, prepared: &[PreparedAsset], request: &ForecastRequest<'_>) -> Vec<ForecastTable> {
        let ewma_states: Vec<Vec<f64>> = request
            .assets
            .par_iter()
            .map(|a| self.ewma.states(&a.grid.ret))
            .collect();
        let garch_paths: Vec<GarchPath> = request
            .assets
            .par_iter()
            .zip(&self.garch)
            .map(|(a, m)| GarchPath::filter(m, &a.grid.ret))
            .collect();
        let origins = request.origins;
        let mut ewma = ForecastTable {
            name: "ewma".into(),
            ..ForecastTable::default()
        };
        let mut garch = ForecastTable {
            name: "garch".into(),
            ..ForecastTable::default()
        };
        let mut har = ForecastTable {
            name: "har".into(),
            ..ForecastTable::default()
        };
        let mut baseline = ForecastTable {
            name: "baseline".into(),
            ..ForecastTable::default()
        };
        for &h in request.horizons {
            let variance = |f: &(dyn Fn(usize, usize) -> f64 + Sync)| -> HorizonForecasts {
                HorizonForecasts {
                    variance: origins.par_iter().map(|o| f(o.asset, o.slot)).collect(),
                    ..HorizonForecasts::default()
                }
            };
            ewma.horizons
                .insert(h, variance(&|a, s| Ewma::forecast(ewma_states[a][s], h)));
            garch
                .horizons
                .insert(h, variance(&|a, s| garch_paths[a].forecast(s, h)));
            if let Some(model) = self.har.get(&h) {
                har.horizons
                    .insert(h, variance(&|a, s| model.forecast(prepared[a].har_regressors(s))));
            }
            {
                let logistic = self.shortage.get(&h);
                let score: Vec<f64> = origins
                    .par_iter()
                    .map_init(Vec::new, |scratch, o| {
                        prepared[o.asset]
                            .shortage(o.slot, h, scratch)
                            .score
                            .unwrap_or(f64::NAN)
                    })
                    .collect();
                let probability = score
                    .iter()
                    .map(|&s| match logistic {
                        Some(l) if !s.is_nan() => l.probability(s),
                        _ => f64::NAN,
                    })
                    .collect();
                baseline.horizons.insert(
                    h,
                    HorizonForecasts {
                        shortage: Some(ShortageForecast { score, probability }),
                        ..HorizonForecasts::default()
                    },
                );
            }
        }
        let q = request.drawdown;
        garch.drawdown = Some(
            origins
                .par_iter()
                .map(|o| normal_drawdown(garch_paths[o.asset].forecast(o.slot, q.tau), q.alpha))
                .collect(),
        );
        vec![ewma, garch, har, baseline]
    }

    /// Each asset's GARCH variance path.
    #[must_use]
    pub fn garch_paths(&self, assets: &[Asset]) -> Vec<GarchPath> {
        assets
            .par_iter()
            .zip(&self.garch)
            .map(|(a, m)| GarchPath::filter(m, &a.grid.ret))
            .collect()
    }

    /// Drawdown calibrations ([`crate::drawdown`]) of the HAR and GARCH variances, named
    /// [`HAR_CALIBRATED`] and [`GARCH_CALIBRATED`], on origins from `from_hour` whose windows end
    /// by `fit_end_hour`, with a fitted exponent when `fit_exponent` ([`crate::drawdown`]). A
    /// forecaster with too few points has none.
    #[must_use]
    pub fn calibrate_drawdowns(
        &self,
        assets: &[Asset],
        prepared: &[PreparedAsset],
        from_hour: i64,
        fit_end_hour: i64,
        fit_exponent: bool,
    ) -> BTreeMap<String, DrawdownCalibration> {
        let origins = calibration_origins(assets, from_hour, fit_end_hour, CALIBRATION_STRIDE);
        let paths = self.garch_paths(assets);
        let har_curves: Vec<VarianceCurve> = origins
            .par_iter()
            .map(|o| har_curve(&self.har, &prepared[o.asset], o.slot))
            .collect();
        let har = fit_calibration(
            assets,
            &origins,
            fit_end_hour,
            CALIBRATION_STRIDE,
            fit_exponent,
            &|i, tau| har_curves[i].at(tau as f64),
        );
        let garch = fit_calibration(
            assets,
            &origins,
            fit_end_hour,
            CALIBRATION_STRIDE,
            fit_exponent,
            &|i, tau| paths[origins[i].asset].forecast(origins[i].slot, tau),
        );
        [(HAR_CALIBRATED, har), (GARCH_CALIBRATED, garch)]
            .into_iter()
            .filter_map(|(name, c)| Some((name.to_owned(), c?)))
            .collect()
    }

    /// Drawdown-only tables for the calibrated baselines at the request's origins.
    #[must_use]
    pub fn calibrated_tables(
        &self,
        calibrations: &BTreeMap<String, DrawdownCalibration>,
        prepared: &[PreparedAsset],
        request: &ForecastRequest<'_>,
    ) -> Vec<ForecastTable> {
        let q = request.drawdown;
        let tau = q.tau as f64;
        let paths = self.garch_paths(request.assets);
        calibrations
            .iter()
            .map(|(name, c)| {
                let rule = DrawdownRule::Calibrated(c);
                let drawdown = request
                    .origins
                    .par_iter()
                    .map(|o| {
                        let within = |variance: &dyn VarianceOver| {
                            let v = variance.variance_over(tau);
                            if v.is_finite() && v > 0.0 {
                                drawdown_within(variance, rule, q.alpha, tau, DrawdownWindow::UpToTau)
                                    .drawdown
                            } else {
                                f64::NAN
                            }
                        };
                        if name == GARCH_CALIBRATED {
                            // One hour past tau: the hour tau falls in is interpolated.
                            within(&GarchSums(paths[o.asset].forecasts_to(o.slot, q.tau + 1)))
                        } else {
                            within(&har_curve(&self.har, &prepared[o.asset], o.slot))
                        }
                    })
                    .collect();
                ForecastTable {
                    name: name.clone(),
                    drawdown: Some(drawdown),
                    ..ForecastTable::default()
                }
            })
            .collect()
    }
}

/// A GARCH path's variance over any hours within its sums of step-ahead forecasts at whole
/// hours `0..` ([`GarchPath::forecasts_to`]), linear between them (each hour a knot); NaN
/// beyond.
struct GarchSums(Vec<f64>);

impl VarianceOver for GarchSums {
    fn variance_over(&self, hours: f64) -> f64 {
        let whole = hours.floor().max(0.0) as usize;
        let frac = hours - whole as f64;
        match (self.0.get(whole), self.0.get(whole + 1)) {
            (Some(&below), _) if frac == 0.0 => below,
            (Some(&below), Some(&above)) => below + frac * (above - below),
            _ => f64::NAN,
        }
    }

    fn knots(&self) -> Vec<f64> {
        (1..self.0.len()).map(|h| h as f64).collect()
    }
}

/// Policy name of the calibrated HAR drawdown.
pub const HAR_CALIBRATED: &str = "har_calibrated";
/// Policy name of the calibrated GARCH drawdown.
pub const GARCH_CALIBRATED: &str = "garch_calibrated";

/// The HAR variance forecasts at `slot` as a curve over its fitted horizons.
#[must_use]
pub fn har_curve(har: &BTreeMap<usize, Har>, prepared: &PreparedAsset, slot: usize) -> VarianceCurve {
    let regressors = prepared.har_regressors(slot);
    VarianceCurve {
        points: har.iter().map(|(&h, m)| (h, m.forecast(regressors))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::HourlyGrid;
    use crate::synth::{SynthConfig, generate};

    /// A panel too short for any GARCH fit says that every asset's GARCH is the assumed one.
    #[test]
    fn assumed_garch_parameters_are_a_warning() {
        let hours = 1_500;
        let assets: Vec<Asset> = (0..3)
            .map(|seed| Asset {
                id: format!("S{seed}"),
                grid: HourlyGrid::from_candles(&generate(&SynthConfig {
                    hours,
                    seed,
                    gap_rate: 0.0,
                    ..SynthConfig::default()
                })),
            })
            .collect();
        let horizons = [4, 24];
        let prepared: Vec<PreparedAsset> = assets.iter().map(|a| PreparedAsset::new(a, &horizons)).collect();
        let fit_end = assets[0].grid.last_hour();
        let set = BaselineSet::fit(&assets, &prepared, fit_end, &horizons).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            set.garch.iter().all(|g| matches!(g, AssetGarch::Pooled { .. })),
            "an asset was fitted on {hours} hours"
        );
        let said = set
            .warnings
            .iter()
            .filter(|w| w.contains("assumed alpha"))
            .count();
        assert!(said == 1, "warnings: {:?}", set.warnings);
    }
}
