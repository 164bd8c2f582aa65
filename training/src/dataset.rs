//! Training data: examples at chosen origins (features and targets from the shared code), the
//! time split with its early-stopping holdout, the input scaler, and the least-squares start of
//! the log-variance skip.

use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;

use volcast_core::baselines::shortage::ShortageLogistic;
use volcast_core::features::{AssetFeatures, Market, N_CHANNELS, N_STATIC, SHORTAGE_SCORE_FEATURES};
use volcast_core::forecast::HORIZONS;
use volcast_core::grid::Asset;
use volcast_core::panel::{PreparedAsset, daily_slots};
use volcast_model::config::TrainingConfig;
use volcast_model::scaler::Scaler;

use crate::qlike_fit::qlike_refine;

/// Training examples at chosen origins.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// `(asset, slot)` per row.
    pub index: Vec<(u32, u32)>,
    /// Unscaled static features per row.
    pub statics: Vec<[f32; N_STATIC]>,
    /// ln RV per horizon (NaN: missing or its window passes the limit).
    pub log_rv: Vec<[f32; 3]>,
    /// Shortage label per horizon (1, 0, NaN).
    pub shortage: Vec<[f32; 3]>,
    /// Weight of each row's losses; empty: every row counts 1.
    pub weight: Vec<f32>,
}

impl Samples {
    /// Number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True without rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Weight of row `i`'s losses.
    #[must_use]
    pub fn weight(&self, i: usize) -> f32 {
        self.weight.get(i).copied().unwrap_or(1.0)
    }

    /// Weights every row by `0.5^(age / half_life_days)`, its age the days from its origin hour
    /// to `end_hour` (a row at or after `end_hour` counts 1).
    pub fn weigh_by_recency(&mut self, assets: &[Asset], end_hour: i64, half_life_days: f64) {
        self.weight = self
            .index
            .iter()
            .map(|&(a, slot)| {
                let hour = assets[a as usize].grid.hour(slot as usize);
                let age_days = (end_hour - hour).max(0) as f64 / 24.0;
                0.5f64.powf(age_days / half_life_days) as f32
            })
            .collect();
    }
}

/// The per-asset inputs of a panel.
#[derive(Debug)]
pub struct PanelFeatures {
    /// Per asset.
    pub assets: Vec<AssetFeatures>,
    /// Per asset, SPEC's derived series.
    pub prepared: Vec<PreparedAsset>,
    /// BTC's trailing variances, when the panel has BTC.
    pub market: Option<Market>,
}

impl PanelFeatures {
    /// Computes everything the features need.
    #[must_use]
    pub fn new(assets: &[Asset]) -> Self {
        let prepared = volcast_core::panel::prepare(assets, &HORIZONS);
        let features = assets
            .par_iter()
            .zip(&prepared)
            .map(|(a, p)| AssetFeatures::new(a, p))
            .collect();
        Self {
            assets: features,
            prepared,
            market: volcast_model::inference::panel_market(assets),
        }
    }

    /// Samples at `slots(asset)` whose targets end by `limit_hour` (later targets are masked).
    pub fn samples<F>(&self, assets: &[Asset], limit_hour: i64, slots: F) -> Samples
    where
        F: Fn(&Asset) -> Vec<usize> + Sync,
    {
        let parts: Vec<Samples> = assets
            .par_iter()
            .enumerate()
            .map(|(a, asset)| {
                let mut out = Samples::default();
                let mut scratch = Vec::new();
                for slot in slots(asset) {
                    let Some(statics) = self.assets[a].static_at(slot, self.market.as_ref(), &mut scratch)
                    else {
                        continue;
                    };
                    let hour = asset.grid.hour(slot);
                    let prep = &self.prepared[a];
                    let mut log_rv = [f32::NAN; 3];
                    let mut shortage = [f32::NAN; 3];
                    for (j, &h) in HORIZONS.iter().enumerate() {
                        if hour + i64::try_from(h).unwrap_or(i64::MAX) > limit_hour {
                            continue;
                        }
                        let rv = prep.target(slot, h);
                        if rv > 0.0 && rv.is_finite() {
                            {
                                log_rv[j] = rv.ln() as f32;
                            }
                        }
                        if let Some(label) = prep.shortage(slot, h, &mut scratch).label {
                            shortage[j] = f32::from(u8::from(label));
                        }
                    }
                    if log_rv.iter().all(|v| v.is_nan()) {
                        continue;
                    }
                    out.index.push((
                        u32::try_from(a).unwrap_or(u32::MAX),
                        u32::try_from(slot).unwrap_or(u32::MAX),
                    ));
                    out.statics.push(statics);
                    out.log_rv.push(log_rv);
                    out.shortage.push(shortage);
                }
                out
            })
            .collect();
        let mut all = Samples::default();
        for p in parts {
            all.index.extend(p.index);
            all.statics.extend(p.statics);
            all.log_rv.extend(p.log_rv);
            all.shortage.extend(p.shortage);
        }
        all
    }
}

/// Training and holdout samples for a fit period ending at `fit_end_hour` (close hour).
#[must_use]
pub fn split(
    features: &PanelFeatures,
    assets: &[Asset],
    config: &TrainingConfig,
    fit_end_hour: i64,
) -> (Samples, Samples) {
    let holdout_start = fit_end_hour - 24 * i64::try_from(config.holdout_days).unwrap_or(0);
    let train = training_rows(features, assets, config, holdout_start);
    let holdout = features.samples(assets, fit_end_hour, |asset| {
        daily_slots(asset, holdout_start + 1, fit_end_hour).collect()
    });
    (train, holdout)
}

/// The training origins (every `stride_hours`) whose targets close by `end_hour`, weighted by
/// recency to `end_hour` when the config asks: the training rows of [`split`] (to the holdout's
/// start), and of training until the fit end ([`TrainingConfig::refit_through_holdout`]: to the
/// fit end, the holdout's hours included).
#[must_use]
pub fn training_rows(
    features: &PanelFeatures,
    assets: &[Asset],
    config: &TrainingConfig,
    end_hour: i64,
) -> Samples {
    let stride = i64::try_from(config.stride_hours.max(1)).unwrap_or(1);
    let mut rows = features.samples(assets, end_hour, |asset| {
        let g = &asset.grid;
        (0..g.slots_until(end_hour))
            .filter(|&s| g.hour(s).rem_euclid(stride) == 0)
            .collect()
    });
    if let Some(half_life) = config.recency_half_life_days {
        rows.weigh_by_recency(assets, end_hour, half_life);
    }
    rows
}

/// Fits the input scaler on training rows (sequence statistics from an evenly spread subset).
#[must_use]
pub fn fit_scaler(features: &PanelFeatures, train: &Samples, window: usize) -> Scaler {
    let mean_std = |columns: usize, rows: &mut dyn Iterator<Item = &[f32]>| {
        let (mut sum, mut sq, mut n) = (vec![0f64; columns], vec![0f64; columns], 0f64);
        for row in rows {
            for (c, &v) in row.iter().enumerate() {
                sum[c] += f64::from(v);
                sq[c] += f64::from(v) * f64::from(v);
            }
            n += 1.0;
        }
        let stats: (Vec<f32>, Vec<f32>) = (0..columns)
            .map(|c| {
                let m = sum[c] / n.max(1.0);
                let s = (sq[c] / n.max(1.0) - m * m).max(0.0).sqrt();
                (m as f32, if s > 1e-6 { s as f32 } else { 1.0 })
            })
            .unzip();
        stats
    };
    let (static_mean, static_std) = mean_std(N_STATIC, &mut train.statics.iter().map(|r| r.as_slice()));
    let step = (train.len() / 4000).max(1);
    let mut seq = Vec::new();
    for &(a, s) in train.index.iter().step_by(step) {
        let mut buf = vec![0f32; window * N_CHANNELS];
        features.assets[a as usize].sequence_at(s as usize, window, &mut buf);
        seq.extend(buf);
    }
    let (channel_mean, channel_std) = mean_std(N_CHANNELS, &mut seq.chunks_exact(N_CHANNELS));
    Scaler {
        static_mean,
        static_std,
        channel_mean,
        channel_std,
    }
}

/// Least-squares start of the log-variance skip and the quantile offsets.
///
/// Per horizon: ridge-stabilised OLS of ln RV on the standardised static features `columns[j]`
/// (the others start at zero), its bias
/// raised by `s^2 / 2` (so `exp` forecasts the mean, as SPEC's HAR does), and the quantiles of
/// its residuals as starting quantile offsets. With `qlike`
/// ([`TrainingConfig::skip_qlike`]), the skip's bias and weights are then refined to the
/// minimum of the rows' summed QLIKE (same rows and ridge, [`qlike_refine`]); the quantile
/// offsets stay the least-squares ones.
#[must_use]
pub fn linear_start(
    train: &Samples,
    scaler: &Scaler,
    levels: &[f64],
    columns: &[Vec<usize>],
    qlike: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let h = HORIZONS.len();
    let mut weight = vec![0f32; N_STATIC * h];
    let mut bias = vec![0f32; h];
    let mut q_bias = Vec::with_capacity(h * levels.len());
    for j in 0..h {
        let columns = &columns[j];
        let rows: Vec<(Vec<f64>, f64)> = train
            .statics
            .iter()
            .zip(&train.log_rv)
            .filter(|(_, y)| y[j].is_finite())
            .map(|(x, y)| {
                let mut x = *x;
                scaler.scale_static(&mut x);
                (
                    columns.iter().map(|&c| f64::from(x[c])).collect(),
                    f64::from(y[j]),
                )
            })
            .collect();
        let n = rows.len();
        let p = columns.len() + 1;
        let x = DMatrix::from_fn(n, p, |i, c| if c == 0 { 1.0 } else { rows[i].0[c - 1] });
        let y = DVector::from_iterator(n, rows.iter().map(|r| r.1));
        let ridge = DMatrix::from_diagonal(&DVector::from_fn(
            p,
            |c, _| if c == 0 { 0.0 } else { 1e-3 * n as f64 },
        ));
        let beta = (x.tr_mul(&x) + &ridge)
            .cholesky()
            .map_or_else(|| DVector::zeros(p), |c| c.solve(&x.tr_mul(&y)));
        let mut residuals: Vec<f64> = (&y - &x * &beta).iter().copied().collect();
        let s2 = residuals.iter().map(|r| r * r).sum::<f64>() / (n.saturating_sub(p).max(1)) as f64;
        let mut skip = beta;
        skip[0] += 0.5 * s2;
        if qlike {
            skip = qlike_refine(&x, &y, &ridge.diagonal(), skip);
        }
        bias[j] = skip[0] as f32;
        for (k, &c) in columns.iter().enumerate() {
            weight[c * h + j] = skip[k + 1] as f32;
        }
        // Residuals relative to the mean-corrected forecast.
        residuals.iter_mut().for_each(|r| *r -= 0.5 * s2);
        residuals.sort_by(f64::total_cmp);
        let quantile = |level: f64| {
            if residuals.is_empty() {
                return 0.0;
            }
            let i = ((residuals.len() - 1) as f64 * level).round() as usize;
            residuals[i]
        };
        let mut previous = 0.0;
        for (l, &level) in levels.iter().enumerate() {
            let q = quantile(level);
            let value = if l == 0 {
                q as f32
            } else {
                // Inverse softplus of the positive step.
                let step = (q - previous).max(1e-3);
                (step.exp_m1().ln()) as f32
            };
            q_bias.push(value);
            previous = q;
        }
    }
    (weight, bias, q_bias)
}

/// The shortage skip's start ([`volcast_model::config::TrainingConfig::shortage_skip_from_baseline`]):
/// per horizon, SPEC's baseline logistic map ([`ShortageLogistic::fit`]) fitted on the training
/// rows with a label, on their `ln_shortage_score_H` feature (the baseline's regressor,
/// `ln(clip(score, 1e-3, 1e3))`), carried into the scaled feature's coordinates; every other
/// weight 0. `(weight, bias)` in the layout of [`linear_start`]'s. A horizon whose map cannot be
/// fitted (one class only) keeps the base rate's logit (slope 0).
#[must_use]
pub fn shortage_start(train: &Samples, scaler: &Scaler) -> (Vec<f32>, Vec<f32>) {
    let h = HORIZONS.len();
    let mut weight = vec![0f32; N_STATIC * h];
    let mut bias = vec![0f32; h];
    for (j, &feature) in SHORTAGE_SCORE_FEATURES.iter().enumerate().take(h) {
        // The feature is the log score itself: the baseline's own fit, on the score.
        let points: Vec<(f64, bool)> = train
            .statics
            .iter()
            .zip(&train.shortage)
            .filter(|(_, y)| y[j].is_finite())
            .map(|(x, y)| (f64::from(x[feature]).exp(), y[j] > 0.5))
            .collect();
        let (mean, std) = (
            f64::from(scaler.static_mean[feature]),
            f64::from(scaler.static_std[feature]),
        );
        // logit = a + b x = (a + b mean) + (b std) x_scaled.
        let (a, b) = match ShortageLogistic::fit(HORIZONS[j], &points) {
            Ok(fit) => (fit.intercept + fit.slope * mean, fit.slope * std),
            Err(_) => {
                let positives = points.iter().filter(|p| p.1).count() as f64;
                let rate = ((positives + 0.5) / (points.len() as f64 + 1.0)).clamp(1e-6, 1.0 - 1e-6);
                ((rate / (1.0 - rate)).ln(), 0.0)
            }
        };
        bias[j] = a as f32;
        weight[feature * h + j] = b as f32;
    }
    (weight, bias)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_variance_skip_fits_each_horizon_on_its_own_columns_only() {
        // ln RV = 0.5 x0 + 0.3 x4 + noise at every horizon; 4 h and 24 h may use columns 0 and 4,
        // 168 h only column 0 (x4 is independent of x0, so its slope there stays 0.5).
        let mut rng = volcast_core::synth::Rng::new(3);
        let mut train = Samples::default();
        for i in 0..20_000u32 {
            let (x0, x4) = (rng.normal(), rng.normal());
            let y = (0.5 * x0 + 0.3 * x4 + 0.1 * rng.normal()) as f32;
            let mut statics = [0f32; N_STATIC];
            statics[0] = x0 as f32;
            statics[4] = x4 as f32;
            statics[7] = rng.normal() as f32;
            train.index.push((0, i));
            train.statics.push(statics);
            train.log_rv.push([y; 3]);
            train.shortage.push([f32::NAN; 3]);
        }
        let scaler = Scaler {
            static_mean: vec![0.0; N_STATIC],
            static_std: vec![1.0; N_STATIC],
            channel_mean: vec![0.0; N_CHANNELS],
            channel_std: vec![1.0; N_CHANNELS],
        };
        let (w, _, _) = linear_start(&train, &scaler, &[0.5], &[vec![0, 4], vec![0, 4], vec![0]], false);
        let h = HORIZONS.len();
        let at = |c: usize, j: usize| w[c * h + j];
        for j in 0..2 {
            assert!(
                (at(0, j) - 0.5).abs() < 0.01 && (at(4, j) - 0.3).abs() < 0.01,
                "{w:?}"
            );
        }
        assert!((at(0, 2) - 0.5).abs() < 0.01 && at(4, 2) == 0.0, "{w:?}");
        // Columns not named start at zero at every horizon.
        assert!((0..h).all(|j| at(7, j) == 0.0), "{w:?}");
    }

    #[test]
    fn the_shortage_start_is_the_baseline_s_logistic_map_on_the_log_score() {
        // Rows whose 24 h label follows logit p = -2 + 1.5 x, x the scaled log score (mean 0.5,
        // deviation 2 before scaling); the 4 h label has one class only, 168 h none.
        let mut rng = volcast_core::synth::Rng::new(9);
        let n = 40_000;
        let mut train = Samples::default();
        for i in 0..n {
            let x = rng.normal();
            let mut statics = [0f32; N_STATIC];
            statics[SHORTAGE_SCORE_FEATURES[1]] = (0.5 + 2.0 * x) as f32;
            let p = 1.0 / (1.0 + (2.0 - 1.5 * x).exp());
            let u = (f64::from(i) * 0.618_033_988_749_895) % 1.0;
            train.index.push((0, i));
            train.statics.push(statics);
            train.log_rv.push([0.0; 3]);
            train.shortage.push([0.0, f32::from(u8::from(u < p)), f32::NAN]);
        }
        let mut scaler = Scaler {
            static_mean: vec![0.0; N_STATIC],
            static_std: vec![1.0; N_STATIC],
            channel_mean: vec![0.0; N_CHANNELS],
            channel_std: vec![1.0; N_CHANNELS],
        };
        scaler.static_mean[SHORTAGE_SCORE_FEATURES[1]] = 0.5;
        scaler.static_std[SHORTAGE_SCORE_FEATURES[1]] = 2.0;
        let (w, b) = shortage_start(&train, &scaler);
        let h = HORIZONS.len();
        let slope = w[SHORTAGE_SCORE_FEATURES[1] * h + 1];
        assert!(
            (slope - 1.5).abs() < 0.05 && (b[1] + 2.0).abs() < 0.05,
            "{slope} {}",
            b[1]
        );
        // Only the horizon's own score carries weight.
        let nonzero = w.iter().filter(|v| **v != 0.0).count();
        assert_eq!(nonzero, 1, "{w:?}");
        // One class only (4 h, never a shortage): the base rate's logit, low; no labels: 0.
        assert!(b[0] < -8.0 && b[2].abs() < 1e-6, "{b:?}");
    }
    use volcast_core::grid::HourlyGrid;
    use volcast_core::synth::{SynthConfig, generate};
    use volcast_core::time::HOUR_MS;

    pub(crate) const START_MS: i64 = 1_577_836_800_000; // 2020-01-01

    /// Two synthetic assets, 120 days from 2020-01-01.
    pub(crate) fn assets() -> Vec<Asset> {
        (1..=2)
            .map(|i| Asset {
                id: format!("S{i}"),
                grid: HourlyGrid::from_candles(&generate(&SynthConfig::panel_asset(
                    i,
                    7,
                    24 * 120,
                    START_MS,
                ))),
            })
            .collect()
    }

    #[test]
    fn recency_weights_halve_each_half_life_before_the_holdout_and_are_off_by_default() {
        let assets = assets();
        let features = PanelFeatures::new(&assets);
        let fit_end = START_MS / HOUR_MS + 24 * 110;
        let mut config = TrainingConfig::default_run()
            .with_holdout_days(10)
            .with_recency_half_life_days(None);
        let (plain, holdout) = split(&features, &assets, &config, fit_end);
        assert!(plain.weight.is_empty() && holdout.weight.is_empty());
        assert!(plain.len() > 100);

        config.recency_half_life_days = Some(20.0);
        let (train, holdout) = split(&features, &assets, &config, fit_end);
        assert_eq!(train.index, plain.index, "weighting keeps every row");
        assert!(holdout.weight.is_empty(), "the holdout is never weighted");
        let holdout_start = fit_end - 24 * 10;
        for (i, &(a, slot)) in train.index.iter().enumerate() {
            let age_days = (holdout_start - assets[a as usize].grid.hour(slot as usize)) as f64 / 24.0;
            let want = 0.5f64.powf(age_days / 20.0);
            assert!(
                (f64::from(train.weight(i)) - want).abs() < 1e-6,
                "row {i}: {} vs {want}",
                train.weight(i)
            );
        }
        // The newest rows count almost 1, the oldest far less.
        let newest = train.weight.iter().copied().fold(0.0f32, f32::max);
        let oldest = train.weight.iter().copied().fold(1.0f32, f32::min);
        assert!(newest > 0.95 && newest <= 1.0, "{newest}");
        assert!(
            oldest < 0.25,
            "the first rows, after the features' warm-up, are over 40 days back: {oldest}"
        );
    }

    #[test]
    fn the_refit_trains_on_every_origin_up_to_the_fit_end_weighted_to_it() {
        let assets = assets();
        let features = PanelFeatures::new(&assets);
        let fit_end = START_MS / HOUR_MS + 24 * 110;
        let config = TrainingConfig::default_run()
            .with_holdout_days(10)
            .with_recency_half_life_days(Some(20.0));
        let (train, _) = split(&features, &assets, &config, fit_end);
        let refit = training_rows(&features, &assets, &config, fit_end);
        let holdout_start = fit_end - 24 * 10;
        // The split's training rows first, then the holdout's hours (whose week-ahead targets
        // close by the fit end), at the same stride.
        let older = |rows: &Samples| -> Vec<(u32, u32)> {
            rows.index
                .iter()
                .copied()
                .filter(|&(a, s)| assets[a as usize].grid.hour(s as usize) < holdout_start - 168)
                .collect()
        };
        assert_eq!(older(&refit), older(&train), "the old rows are the split's");
        let newest = refit
            .index
            .iter()
            .map(|&(a, s)| assets[a as usize].grid.hour(s as usize))
            .max()
            .expect("rows");
        assert!(
            newest > holdout_start + 24 * 9,
            "the holdout's hours are trained on: {newest}"
        );
        assert!(newest < fit_end, "no target closes after the fit end");
        assert!(
            refit.len() > train.len() + 2 * 6 * 9,
            "{} vs {}",
            refit.len(),
            train.len()
        );
        for (i, &(a, slot)) in refit.index.iter().enumerate() {
            let hour = assets[a as usize].grid.hour(slot as usize);
            assert_eq!(hour.rem_euclid(4), 0, "the config's stride");
            let want = 0.5f64.powf((fit_end - hour) as f64 / 24.0 / 20.0);
            assert!((f64::from(refit.weight(i)) - want).abs() < 1e-6, "row {i}");
        }
    }
}
