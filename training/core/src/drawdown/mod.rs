//! Calibrated drawdown quantiles: `D(alpha, tau)`, the `alpha`-quantile of the largest fall to the
//! lowest low within `tau` hours (SPEC, "Risk parameters"), for any forecaster of variance.
//!
//! The forecaster gives the variance `V(tau)` of the `tau`-hour log return. The fall, in logs, is
//! `L = -ln(lowest low / close)`, and its scale-free version `u = L / sqrt(V(tau))^g`. Under a
//! driftless Brownian motion and an exact forecast, `g = 1` and `u` would be the reflected normal,
//! `u_alpha = z_{(1+alpha)/2}`; real prices have fatter tails and jumps, and the forecaster may be
//! biased, so the engine measures the distribution of `u` instead, on a calibration window the
//! forecaster was not scored on, per liquidation window `tau` on a grid ([`TAU_GRID`]), at a grid
//! of levels ([`LEVELS`]):
//!
//! - the exponent `g` is 1 (the scaled distribution, the default) or, when asked
//!   (`calibrate --fit-exponent`), the one of [`EXPONENT_GRID`] whose thresholds, each window at
//!   its own [`REFERENCE_LEVEL`] quantile, give the highest mean `1 - D` over the calibration
//!   points: all of them breach at the same in-sample rate, so this is the shape that gives away
//!   the least there. It comes out below 1 (large forecasts overstate how far large falls go, and
//!   with any tail it pays to spend breaches where the scale is large), which raises LT at equal
//!   breach rates but calibrates worse out of sample (README, "Risk engine"), hence opt-in;
//!
//! - between levels, `u` is linear in `-ln(1 - alpha)` (the exponential-tail scale);
//! - above the top level, a power tail `u_top ((1 - top) / (1 - alpha))^xi` with `xi` the Hill
//!   estimate over the exceedances of the top level (clamped to [`TAIL_INDEX_RANGE`]);
//! - between grid windows, `u` is linear in `ln tau`; outside the grid, the nearest window.
//!
//! Then `D(alpha, tau) = 1 - exp(-u_alpha(tau) sqrt(V(tau))^g)`, in `[0, 1]` and increasing in `V`.

use serde::{Deserialize, Serialize};

use crate::backtest::normal_quantile;
use crate::forecast::Origin;
use crate::grid::Asset;
use crate::targets::drawdown;

mod adaptive;

pub use adaptive::{Fall, MISCOVERAGE_FACTOR_RANGE, adaptive_factors};

/// Liquidation windows (hours) the calibration measures.
pub const TAU_GRID: [usize; 9] = [1, 2, 4, 8, 12, 24, 48, 96, 168];
/// Quantile levels measured empirically (a level is kept only with enough points above it).
pub const LEVELS: [f64; 9] = [0.5, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.998, 0.999];
/// Points needed above a level for its empirical quantile to be kept.
pub const MIN_EXCEEDANCES: f64 = 20.0;
/// Bounds on the Hill tail index used above the top level.
pub const TAIL_INDEX_RANGE: (f64, f64) = (0.05, 1.0);
/// Days of the fit period, counted back from its end, that calibration uses by default.
pub const CALIBRATION_DAYS: i64 = 365;
/// Hours between calibration origins (5 is prime to 24, so every hour of the day is sampled).
pub const CALIBRATION_STRIDE: i64 = 5;
/// Exponents `g` the calibration tries, in twentieths: 0.25, 0.30, .. 1.50.
pub const EXPONENT_GRID: std::ops::RangeInclusive<u32> = 5..=30;
/// Level at which the exponent is chosen (SPEC's default alpha).
pub const REFERENCE_LEVEL: f64 = 0.99;

pub use crate::curve::VarianceCurve;

/// The measured distribution of the scale-free fall `u` for one liquidation window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCalibration {
    /// Liquidation window, hours.
    pub tau: usize,
    /// Calibration points (origins with a complete window and a forecast).
    pub n: usize,
    /// `(level, u quantile)`, levels increasing.
    pub quantiles: Vec<(f64, f64)>,
    /// Hill tail index above the top level.
    pub tail_index: f64,
    /// Adaptive calibration's factor `m` on the miscoverage: the level served for `alpha` is
    /// `1 - (1 - alpha) m` ([`adaptive_factors`]); 1 as measured.
    #[serde(default = "unit", skip_serializing_if = "is_unit")]
    pub miscoverage_factor: f64,
}

fn unit() -> f64 {
    1.0
}

#[allow(clippy::trivially_copy_pass_by_ref, clippy::float_cmp)]
fn is_unit(x: &f64) -> bool {
    *x == 1.0
}

impl WindowCalibration {
    /// Fits from the scale-free falls of one window; None with too few points for the median.
    #[must_use]
    pub fn fit(tau: usize, mut u: Vec<f64>) -> Option<Self> {
        u.retain(|x| x.is_finite() && *x >= 0.0);
        let n = u.len();
        u.sort_by(f64::total_cmp);
        let quantiles: Vec<(f64, f64)> = LEVELS
            .iter()
            .filter(|&&l| (1.0 - l) * n as f64 >= MIN_EXCEEDANCES)
            .map(|&l| (l, interpolated_quantile(&u, l)))
            .collect();
        let &(_, top) = quantiles.last()?;
        let logs: Vec<f64> = u.iter().filter(|&&x| x > top).map(|x| (x / top).ln()).collect();
        let hill = if logs.is_empty() || top <= 0.0 {
            TAIL_INDEX_RANGE.1
        } else {
            logs.iter().sum::<f64>() / logs.len() as f64
        };
        Some(Self {
            tau,
            n,
            quantiles,
            tail_index: hill.clamp(TAIL_INDEX_RANGE.0, TAIL_INDEX_RANGE.1),
            miscoverage_factor: 1.0,
        })
    }

    /// `u_alpha` (see the module docs) at the served level `1 - (1 - alpha) m`
    /// ([`Self::miscoverage_factor`]). Levels at or below the lowest measured one get its value.
    #[must_use]
    pub fn multiplier(&self, alpha: f64) -> f64 {
        self.measured_multiplier(1.0 - (1.0 - alpha) * self.miscoverage_factor)
    }

    /// Checks what [`Self::fit`] and the adaptive calibration guarantee, for a calibration read
    /// from a file: a window and a point count, measured levels increasing in (0, 1) with finite
    /// quantiles that do not fall and a positive top one (a zero top would serve no drawdown at
    /// any level), and the tail index and miscoverage factor within their clamps.
    ///
    /// # Errors
    /// The first problem, in words.
    pub fn check(&self) -> Result<(), String> {
        let tau = self.tau;
        if tau == 0 || self.n == 0 {
            return Err(format!("window of {tau} h with {} points: both positive", self.n));
        }
        let Some(&(_, top)) = self.quantiles.last() else {
            return Err(format!("window {tau} h: no measured quantiles"));
        };
        let mut below: Option<(f64, f64)> = None;
        for &(level, u) in &self.quantiles {
            if !(level > 0.0 && level < 1.0 && u.is_finite() && u >= 0.0) {
                return Err(format!(
                    "window {tau} h: quantile ({level}, {u}): a level in (0, 1), a finite u >= 0"
                ));
            }
            if let Some((l, v)) = below
                && !(level > l && u >= v)
            {
                return Err(format!(
                    "window {tau} h: quantile ({level}, {u}) after ({l}, {v}): levels increase \
                     and quantiles do not fall"
                ));
            }
            below = Some((level, u));
        }
        if top <= 0.0 {
            return Err(format!("window {tau} h: the top quantile is 0"));
        }
        let within = |x: f64, (lo, hi): (f64, f64)| (lo..=hi).contains(&x);
        if !within(self.tail_index, TAIL_INDEX_RANGE) {
            return Err(format!(
                "window {tau} h: tail_index {} outside {TAIL_INDEX_RANGE:?}",
                self.tail_index
            ));
        }
        if !within(self.miscoverage_factor, MISCOVERAGE_FACTOR_RANGE) {
            return Err(format!(
                "window {tau} h: miscoverage_factor {} outside {MISCOVERAGE_FACTOR_RANGE:?}",
                self.miscoverage_factor
            ));
        }
        Ok(())
    }

    /// `u_alpha` as measured, without the adaptive factor.
    fn measured_multiplier(&self, alpha: f64) -> f64 {
        let x = |l: f64| -(1.0 - l).ln();
        let Some(&(l0, u0)) = self.quantiles.first() else {
            return f64::NAN;
        };
        if alpha <= l0 {
            return u0;
        }
        for pair in self.quantiles.windows(2) {
            let ((la, ua), (lb, ub)) = (pair[0], pair[1]);
            if alpha <= lb {
                let w = (x(alpha) - x(la)) / (x(lb) - x(la));
                return ua + w * (ub - ua);
            }
        }
        let &(top_level, top) = self.quantiles.last().unwrap_or(&(l0, u0));
        top * ((1.0 - top_level) / (1.0 - alpha)).powf(self.tail_index)
    }
}

/// A forecaster's drawdown calibration over the window grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrawdownCalibration {
    /// First calibration origin, RFC 3339.
    pub from: String,
    /// Last hour a calibration window may reach, RFC 3339.
    pub until: String,
    /// Hours between calibration origins.
    pub stride_hours: i64,
    /// Exponent `g` of `sqrt(V)` (1 in artifacts calibrated before it was measured).
    #[serde(default = "unit_exponent")]
    pub exponent: f64,
    /// Per liquidation window, increasing.
    pub windows: Vec<WindowCalibration>,
}

fn unit_exponent() -> f64 {
    1.0
}

/// `1 - exp(-u sqrt(V)^g)` in `[0, 1]`; NaN when the variance is not a finite number `>= 0` or
/// the multiplier is not finite: an unusable forecast is the caller's error, never a zero
/// drawdown.
fn scaled_drawdown(multiplier: f64, variance: f64, exponent: f64) -> f64 {
    if !(variance.is_finite() && variance >= 0.0 && multiplier.is_finite()) {
        return f64::NAN;
    }
    clip01(1.0 - (-multiplier * variance.sqrt().powf(exponent)).exp())
}

impl DrawdownCalibration {
    /// `u_alpha(tau)`: linear in `ln tau` between measured windows, the nearest one outside.
    #[must_use]
    pub fn multiplier(&self, alpha: f64, tau: f64) -> f64 {
        let (Some(first), Some(last)) = (self.windows.first(), self.windows.last()) else {
            return f64::NAN;
        };
        if tau <= first.tau as f64 {
            return first.multiplier(alpha);
        }
        for pair in self.windows.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if tau <= b.tau as f64 {
                let (ta, tb) = ((a.tau as f64).ln(), (b.tau as f64).ln());
                let w = (tau.ln() - ta) / (tb - ta);
                return (1.0 - w) * a.multiplier(alpha) + w * b.multiplier(alpha);
            }
        }
        last.multiplier(alpha)
    }

    /// Checks a calibration read from a file: its period (RFC 3339, `from` before `until`), a
    /// positive stride, an exponent within [`EXPONENT_GRID`] (1 included), and at least one
    /// window, windows increasing, each sound ([`WindowCalibration::check`]).
    ///
    /// # Errors
    /// The first problem, in words.
    pub fn check(&self) -> Result<(), String> {
        let time = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
        match (time(&self.from), time(&self.until)) {
            (Some(from), Some(until)) if from < until => {}
            _ => {
                return Err(format!(
                    "period {} to {}: two RFC 3339 times, the first before the second",
                    self.from, self.until
                ));
            }
        }
        if self.stride_hours <= 0 {
            return Err(format!("stride_hours {}: positive", self.stride_hours));
        }
        let grid = (
            f64::from(*EXPONENT_GRID.start()) / 20.0,
            f64::from(*EXPONENT_GRID.end()) / 20.0,
        );
        if !(grid.0..=grid.1).contains(&self.exponent) {
            return Err(format!(
                "exponent {} outside [{}, {}]",
                self.exponent, grid.0, grid.1
            ));
        }
        if self.windows.is_empty() {
            return Err("no windows".into());
        }
        if let Some(pair) = self.windows.windows(2).find(|p| p[0].tau >= p[1].tau) {
            return Err(format!(
                "windows {} h then {} h: increasing",
                pair[0].tau, pair[1].tau
            ));
        }
        self.windows.iter().try_for_each(WindowCalibration::check)
    }

    /// `D(alpha, tau)` for a forecast variance `variance` of the `tau`-hour return.
    #[must_use]
    pub fn drawdown(&self, variance: f64, alpha: f64, tau: f64) -> f64 {
        scaled_drawdown(self.multiplier(alpha, tau), variance, self.exponent)
    }

    /// The calibration with each window's adaptive factor set from `factors` (same order as
    /// [`Self::windows`]; missing ones are 1).
    #[must_use]
    pub fn with_factors(&self, factors: &[f64]) -> Self {
        let mut out = self.clone();
        for (i, w) in out.windows.iter_mut().enumerate() {
            w.miscoverage_factor = factors.get(i).copied().unwrap_or(1.0);
        }
        out
    }
}

/// How a drawdown quantile is obtained from a variance.
#[derive(Debug, Clone, Copy)]
pub enum DrawdownRule<'a> {
    /// Measured on a calibration window ([`DrawdownCalibration`]).
    Calibrated(&'a DrawdownCalibration),
    /// The running minimum of a driftless Brownian motion: `z_{(1+alpha)/2}`.
    Reflection,
    /// The close at `t + tau` under a normal return: `z_alpha` (SPEC's GARCH-normal policy).
    PlainNormal,
}

impl<'a> DrawdownRule<'a> {
    /// The calibrated rule when there is a calibration, else the reflection principle (an
    /// artifact made before the engine was calibrated).
    #[must_use]
    pub fn calibrated_or_reflection(calibration: Option<&'a DrawdownCalibration>) -> Self {
        calibration.map_or(Self::Reflection, Self::Calibrated)
    }

    /// `D(alpha, tau)` in `[0, 1]` for the `tau`-hour variance `variance`; increasing in it.
    #[must_use]
    pub fn drawdown(&self, variance: f64, alpha: f64, tau: f64) -> f64 {
        scaled_drawdown(self.multiplier(alpha, tau), variance, self.exponent())
    }

    /// The exponent `g` in `D = 1 - exp(-u sqrt(V)^g)`: measured for a calibrated rule, 1 otherwise.
    #[must_use]
    pub fn exponent(&self) -> f64 {
        match self {
            Self::Calibrated(c) => c.exponent,
            Self::Reflection | Self::PlainNormal => 1.0,
        }
    }

    /// The multiplier `u` of `sqrt(V(tau))^g` in `D = 1 - exp(-u sqrt(V)^g)`.
    #[must_use]
    pub fn multiplier(&self, alpha: f64, tau: f64) -> f64 {
        match self {
            Self::Calibrated(c) => c.multiplier(alpha, tau),
            Self::Reflection => normal_quantile(0.5 * (1.0 + alpha)),
            Self::PlainNormal => normal_quantile(alpha).max(0.0),
        }
    }

    /// The windows between which the multiplier is linear in `ln tau` (the calibrated ones),
    /// hours; none for a multiplier constant in `tau`.
    #[must_use]
    pub fn knots(&self) -> Vec<f64> {
        match self {
            Self::Calibrated(c) => c.windows.iter().map(|w| w.tau as f64).collect(),
            Self::Reflection | Self::PlainNormal => Vec::new(),
        }
    }

    /// Short name for derivations and reports.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Calibrated(_) => "calibrated",
            Self::Reflection => "reflection-normal",
            Self::PlainNormal => "plain-normal",
        }
    }
}

/// Type-7 (linear) empirical quantile of increasingly sorted values; NaN when empty.
#[must_use]
pub fn interpolated_quantile(sorted: &[f64], level: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = level.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Clips into `[0, 1]`; NaN becomes 1 (the most conservative drawdown or margin).
#[must_use]
pub fn clip01(x: f64) -> f64 {
    if x.is_nan() { 1.0 } else { x.clamp(0.0, 1.0) }
}

/// Calibration origins: every [`CALIBRATION_STRIDE`]-th hour (by absolute hour) whose close hour
/// lies in `[from_hour, until_hour - 1]`, for every asset.
#[must_use]
pub fn calibration_origins(assets: &[Asset], from_hour: i64, until_hour: i64, stride: i64) -> Vec<Origin> {
    let stride = stride.max(1);
    assets
        .iter()
        .enumerate()
        .flat_map(|(a, asset)| {
            let g = &asset.grid;
            (0..g.len())
                .filter(move |&slot| {
                    let h = g.hour(slot);
                    h >= from_hour && h < until_hour && h.rem_euclid(stride) == 0 && !g.close[slot].is_nan()
                })
                .map(move |slot| Origin { asset: a, slot })
        })
        .collect()
}

/// Fits a calibration: for each window of [`TAU_GRID`], the falls and forecast scales at the
/// origins whose window ends by `until_hour`, with `variance(origin index, tau)` the forecaster's
/// `tau`-hour variance (NaN or non-positive: the point is skipped); then the exponent (1, or
/// [`best_exponent`] with `fit_exponent`) and each window's distribution of `u`. None when a
/// window has too few points.
pub fn fit_calibration(
    assets: &[Asset],
    origins: &[Origin],
    until_hour: i64,
    stride_hours: i64,
    fit_exponent: bool,
    variance: &(dyn Fn(usize, usize) -> f64 + Sync),
) -> Option<DrawdownCalibration> {
    use rayon::prelude::*;
    // Per window: (log fall L, forecast scale sqrt(V)).
    let falls: Vec<Vec<(f64, f64)>> = TAU_GRID
        .par_iter()
        .map(|&tau| {
            origins
                .iter()
                .enumerate()
                .filter_map(|(i, o)| {
                    let g = &assets[o.asset].grid;
                    if g.hour(o.slot) + i64::try_from(tau).ok()? > until_hour {
                        return None;
                    }
                    let fall = drawdown(g, o.slot, tau)?;
                    let v = variance(i, tau);
                    (v.is_finite() && v > 0.0 && fall < 1.0).then(|| (-(1.0 - fall).ln(), v.sqrt()))
                })
                .collect()
        })
        .collect();
    let exponent = if fit_exponent { best_exponent(&falls)? } else { 1.0 };
    let windows = TAU_GRID
        .par_iter()
        .zip(&falls)
        .map(|(&tau, f)| WindowCalibration::fit(tau, scale_free(f, exponent)))
        .collect::<Option<Vec<_>>>()?;
    let first = origins.iter().map(|o| assets[o.asset].grid.hour(o.slot)).min()?;
    Some(DrawdownCalibration {
        from: crate::time::format_ms(crate::time::hour_to_ms(first)),
        until: crate::time::format_ms(crate::time::hour_to_ms(until_hour)),
        stride_hours,
        exponent,
        windows,
    })
}

/// `u = L / s^g` for each `(L, s)`.
fn scale_free(falls: &[(f64, f64)], exponent: f64) -> Vec<f64> {
    falls.iter().map(|&(l, s)| l / s.powf(exponent)).collect()
}

/// The exponent of [`EXPONENT_GRID`] whose thresholds `1 - exp(-u s^g)`, `u` each window's
/// in-sample [`REFERENCE_LEVEL`] quantile of `L / s^g`, have the highest mean over all windows'
/// points; None without points.
#[must_use]
pub fn best_exponent(falls: &[Vec<(f64, f64)>]) -> Option<f64> {
    use rayon::prelude::*;
    let mean_kept = |g: f64| -> Option<f64> {
        let (mut sum, mut n) = (0.0, 0usize);
        for f in falls.iter().filter(|f| !f.is_empty()) {
            let mut u = scale_free(f, g);
            u.sort_by(f64::total_cmp);
            let q = interpolated_quantile(&u, REFERENCE_LEVEL);
            sum += f.iter().map(|&(_, s)| (-q * s.powf(g)).exp()).sum::<f64>();
            n += f.len();
        }
        (n > 0).then(|| sum / n as f64)
    };
    EXPONENT_GRID
        .into_par_iter()
        .filter_map(|g| {
            let g = f64::from(g) / 20.0;
            Some((g, mean_kept(g)?))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(g, _)| g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reflected(alpha: f64) -> f64 {
        normal_quantile(0.5 * (1.0 + alpha))
    }

    /// Falls of a reflected normal: |z| has quantile z_{(1+alpha)/2}.
    pub(super) fn reflected_sample(n: usize) -> Vec<f64> {
        let mut rng = crate::synth::Rng::new(7);
        (0..n).map(|_| rng.normal().abs()).collect()
    }

    #[test]
    fn recovers_the_reflected_normal() {
        let w = WindowCalibration::fit(4, reflected_sample(200_000)).unwrap();
        assert_eq!(w.quantiles.len(), LEVELS.len());
        for alpha in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let got = w.multiplier(alpha);
            assert!(
                (got / reflected(alpha) - 1.0).abs() < 0.03,
                "{alpha}: {got} vs {}",
                reflected(alpha)
            );
        }
        // Beyond the data the power tail continues above the top level, still near the normal.
        let far = w.multiplier(0.9999);
        assert!(
            far > w.multiplier(0.999) && far < 1.3 * reflected(0.9999),
            "{far}"
        );
    }

    #[test]
    fn small_samples_keep_only_supported_levels() {
        let w = WindowCalibration::fit(4, reflected_sample(1000)).unwrap();
        // 1000 points: 20 above 0.98, so 0.975 is the top measured level.
        assert_eq!(w.quantiles.last().unwrap().0, 0.975);
        assert!(WindowCalibration::fit(4, reflected_sample(30)).is_none());
    }

    #[test]
    fn interpolates_between_windows() {
        let make = |tau, scale: f64| WindowCalibration {
            tau,
            n: 1000,
            quantiles: vec![(0.5, scale), (0.99, 2.0 * scale)],
            tail_index: 0.2,
            miscoverage_factor: 1.0,
        };
        let c = DrawdownCalibration {
            from: String::new(),
            until: String::new(),
            stride_hours: 1,
            exponent: 1.0,
            windows: vec![make(4, 1.0), make(16, 2.0)],
        };
        assert!((c.multiplier(0.99, 8.0) - 3.0).abs() < 1e-12);
        assert!((c.multiplier(0.99, 1.0) - 2.0).abs() < 1e-12);
        assert!((c.multiplier(0.99, 100.0) - 4.0).abs() < 1e-12);
        // Above the top level: power tail.
        assert!((c.multiplier(0.999, 4.0) - 2.0 * 10f64.powf(0.2)).abs() < 1e-12);
        let d = c.drawdown(0.01, 0.99, 4.0);
        assert!((d - (1.0 - (-0.2f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn a_calibration_read_from_a_file_is_checked_field_by_field() {
        let w = WindowCalibration::fit(4, reflected_sample(1000)).unwrap();
        let good = DrawdownCalibration {
            from: "2020-01-01T03:00:00Z".into(),
            until: "2021-01-01T00:00:00Z".into(),
            stride_hours: 5,
            exponent: 1.0,
            windows: vec![w.clone(), WindowCalibration { tau: 8, ..w }],
        };
        good.check().unwrap();
        type Edit = fn(&mut DrawdownCalibration);
        let cases: [(&str, Edit); 16] = [
            ("period", |c| c.until.clone_from(&c.from)),
            ("period", |c| c.from = "yesterday".into()),
            ("stride_hours 0", |c| c.stride_hours = 0),
            ("exponent 0", |c| c.exponent = 0.0),
            ("exponent NaN", |c| c.exponent = f64::NAN),
            ("exponent 3", |c| c.exponent = 3.0),
            ("no windows", |c| c.windows.clear()),
            ("8 h then 4 h", |c| c.windows.reverse()),
            ("0 points", |c| c.windows[1].n = 0),
            ("no measured quantiles", |c| c.windows[0].quantiles.clear()),
            ("a finite u >= 0", |c| c.windows[0].quantiles[2].1 = -1.0),
            ("a level in (0, 1)", |c| c.windows[0].quantiles[0].0 = 1.0),
            ("levels increase", |c| c.windows[1].quantiles.reverse()),
            ("top quantile is 0", |c| {
                c.windows[0].quantiles.iter_mut().for_each(|q| q.1 = 0.0);
            }),
            ("tail_index -5", |c| c.windows[1].tail_index = -5.0),
            ("miscoverage_factor 0", |c| c.windows[0].miscoverage_factor = 0.0),
        ];
        for (says, edit) in cases {
            let mut c = good.clone();
            edit(&mut c);
            let e = c.check().unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    /// Falls `L = |z| s^g_true` over forecast scales `s` spread over two decades.
    fn falls_with_exponent(g_true: f64) -> Vec<Vec<(f64, f64)>> {
        let mut rng = crate::synth::Rng::new(11);
        let one = (0..50_000)
            .map(|i| {
                let s = 0.003 * 100f64.powf(f64::from(i % 100) / 99.0);
                (rng.normal().abs() * s.powf(g_true), s)
            })
            .collect();
        vec![one]
    }

    #[test]
    fn best_exponent_follows_the_shape_of_the_falls() {
        // With normal tails the best thresholds spend a little more of the breaches where the
        // scale is large (the density at the threshold is lower there), so the exponent found
        // sits at or a little below the true one, and rises with it.
        let mut last = 0.0;
        for g_true in [0.4, 0.6, 0.8, 1.0, 1.2] {
            let g = best_exponent(&falls_with_exponent(g_true)).unwrap();
            assert!(g <= g_true + 1e-9 && g >= g_true - 0.15, "{g_true}: {g}");
            assert!(g > last, "{g_true}: {g} after {last}");
            last = g;
        }
        assert_eq!(best_exponent(&[]), None);
    }

    proptest! {
        #[test]
        fn drawdown_rises_with_variance_and_level(
            sample in prop::collection::vec(0.0f64..10.0, 50..400),
            v in 1e-8f64..1.0,
            k in 1.0f64..50.0,
            alpha in 0.5f64..0.9999,
            step in 0.0f64..0.4,
            tau in 1.0f64..200.0,
            g in 0.25f64..1.5,
        ) {
            let w = WindowCalibration::fit(4, sample).unwrap();
            let c = DrawdownCalibration { from: String::new(), until: String::new(), stride_hours: 1, exponent: g, windows: vec![w] };
            for rule in [DrawdownRule::Calibrated(&c), DrawdownRule::Reflection, DrawdownRule::PlainNormal] {
                let d = rule.drawdown(v, alpha, tau);
                prop_assert!((0.0..=1.0).contains(&d));
                prop_assert!(rule.drawdown(v * k, alpha, tau) >= d);
                let higher = (alpha + step * (1.0 - alpha)).min(0.9999);
                prop_assert!(rule.drawdown(v, higher, tau) >= d - 1e-12);
            }
        }
    }
}
