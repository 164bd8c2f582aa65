//! [`History`]: the completed raw forecasts the corrections are measured on, and the daily
//! job's measurement itself (the corrections of a day, and of every day with adaptive levels).

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::artifact::{self, Adaptive, Recalibration};
use crate::inference::Prediction;
use volcast_core::forecast::Origin;
use volcast_core::grid::Asset;
use volcast_core::panel::PreparedAsset;
use volcast_core::scoring::qlike;
use volcast_core::time::{format_ms, hour_to_ms};

use super::{CalibrateError, MIN_RECALIBRATION_POINTS};

mod guard;
mod hindsight;
mod stack;
use guard::HarGuard;
pub use hindsight::BlendHindsight;
use stack::{ShortagePoint, fit_stack};

/// Completed raw forecasts of one horizon at daily origins.
#[derive(Debug, Clone, Default)]
struct HorizonPoints {
    horizon: usize,
    /// Origin hour of each point, increasing.
    hours: Vec<i64>,
    /// RV / F per point.
    variance_ratio: Vec<f64>,
    /// RV, the network's F and HAR's H per point (for the blend's weight).
    rv_model_har: Vec<[f64; 3]>,
    /// RV / q per level, then point (NaN where not finite).
    quantile_ratio: Vec<Vec<f64>>,
    /// The completed shortage forecasts, in origin order ([`History::with_shortage`]; empty
    /// without).
    shortage: Vec<ShortagePoint>,
}

impl HorizonPoints {
    /// The corrections in force at point `i`'s origin: those of its day in `served` (the days
    /// operated so far), else `stored` (the artifact's).
    fn in_force<'r>(
        &self,
        i: usize,
        served: &'r BTreeMap<i64, Option<Recalibration>>,
        stored: Option<&'r Recalibration>,
    ) -> Option<&'r Recalibration> {
        served
            .get(&super::day_of(self.hours[i]))
            .and_then(Option::as_ref)
            .or(stored)
    }
}

/// Raw (uncorrected) forecasts at daily origins with their realised RV, per horizon: the material
/// the corrections are measured on.
#[derive(Debug, Clone)]
pub struct History {
    levels: Vec<f64>,
    horizons: Vec<HorizonPoints>,
    /// Whether the corrections blend the network with HAR ([`Recalibration::har_weight`]).
    combine: bool,
}

/// The weights of the network against HAR tried (see [`Recalibration::har_weight`]).
const HAR_BLEND_WEIGHTS: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// The powers of the variance scale tried with [`Adaptive::shrink_as_served`]: none of it, half
/// of it (in logs), all of it.
const SCALE_POWERS: [f64; 3] = [0.0, 0.5, 1.0];

/// The points of each horizon a window holds, as index ranges into [`History`].
type Window = Vec<(usize, usize)>;

impl History {
    /// Collects the daily (00:00 UTC) origins among `origins`, with their raw `predictions` (same
    /// order; for all of `horizons`) and their realised RV, where RV and the forecasts are finite
    /// and positive. With `har`, its forecasts there too, and the corrections measured blend the
    /// network with it ([`Recalibration::har_weight`]).
    #[must_use]
    pub fn new(
        assets: &[Asset],
        prepared: &[PreparedAsset],
        origins: &[Origin],
        predictions: &[Option<Prediction>],
        horizons: &[usize],
        levels: &[f64],
        har: Option<&BTreeMap<usize, volcast_core::baselines::har::Har>>,
    ) -> Self {
        let horizons = horizons
            .iter()
            .enumerate()
            .map(|(j, &h)| {
                let har_h = har.and_then(|m| m.get(&h));
                let mut points: Vec<(i64, f64, Vec<f64>, [f64; 3])> = origins
                    .iter()
                    .zip(predictions)
                    .filter_map(|(o, p)| {
                        let p = p.as_ref()?;
                        let hour = assets[o.asset].grid.hour(o.slot);
                        let rv = prepared[o.asset].target(o.slot, h);
                        let f = p.variance[j];
                        let ok = hour.rem_euclid(24) == 0
                            && rv.is_finite()
                            && rv > 0.0
                            && f.is_finite()
                            && f > 0.0;
                        let hv =
                            har_h.map_or(f64::NAN, |m| m.forecast(prepared[o.asset].har_regressors(o.slot)));
                        ok.then(|| {
                            (
                                hour,
                                rv / f,
                                p.quantiles[j].iter().map(|q| rv / q).collect(),
                                [rv, f, hv],
                            )
                        })
                    })
                    .collect();
                points.sort_by_key(|p| p.0);
                HorizonPoints {
                    horizon: h,
                    hours: points.iter().map(|p| p.0).collect(),
                    variance_ratio: points.iter().map(|p| p.1).collect(),
                    rv_model_har: points.iter().map(|p| p.3).collect(),
                    quantile_ratio: (0..levels.len())
                        .map(|l| {
                            points
                                .iter()
                                .map(|p| p.2.get(l).copied().filter(|r| r.is_finite()).unwrap_or(f64::NAN))
                                .collect()
                        })
                        .collect(),
                    shortage: Vec::new(),
                }
            })
            .collect();
        Self {
            levels: levels.to_vec(),
            horizons,
            combine: har.is_some(),
        }
    }

    /// The same with the completed shortage forecasts among the daily origins of `origins`
    /// (network probability, baseline score and label, where all three exist), which the daily
    /// job's logistic stack is fitted on ([`Adaptive::shortage_stack`]).
    #[must_use]
    pub fn with_shortage(
        mut self,
        assets: &[Asset],
        prepared: &[PreparedAsset],
        origins: &[Origin],
        predictions: &[Option<Prediction>],
    ) -> Self {
        for (j, points) in self.horizons.iter_mut().enumerate() {
            let h = points.horizon;
            let mut found: Vec<ShortagePoint> = origins
                .par_iter()
                .zip(predictions)
                .map_init(Vec::new, |scratch, (o, p)| {
                    let hour = assets[o.asset].grid.hour(o.slot);
                    let p = p.as_ref()?.shortage_probability.get(j).copied()?;
                    if hour.rem_euclid(24) != 0 || !p.is_finite() {
                        return None;
                    }
                    let at = prepared[o.asset].shortage(o.slot, h, scratch);
                    let score = at.score.filter(|s| s.is_finite() && *s > 0.0)?;
                    Some(ShortagePoint {
                        hour,
                        x: artifact::stack_inputs(p, score),
                        label: at.label?,
                    })
                })
                .flatten()
                .collect();
            found.sort_by_key(|p| p.hour);
            points.shortage = found;
        }
        self
    }

    /// Per horizon, the logistic stack ([`fit_stack`]) on the completed shortage forecasts of
    /// the `days` days before `end_hour` whose label windows end by then; horizons where it
    /// cannot be fitted are left out.
    fn shortage_stack(&self, end_hour: i64, days: usize) -> BTreeMap<usize, [f64; 3]> {
        let from = end_hour - 24 * i64::try_from(days).unwrap_or(i64::MAX / 48);
        self.horizons
            .iter()
            .filter_map(|p| {
                let last = end_hour - i64::try_from(p.horizon).unwrap_or(i64::MAX / 2);
                let lo = p.shortage.partition_point(|x| x.hour < from);
                let hi = p.shortage.partition_point(|x| x.hour <= last).max(lo);
                fit_stack(&p.shortage[lo..hi]).map(|k| (p.horizon, k))
            })
            .collect()
    }

    /// The points of the window ending at `end_hour`: origins from `end_hour - 24 days` on whose
    /// target windows end by `end_hour`.
    fn window(&self, end_hour: i64, days: usize) -> Window {
        let from = end_hour - 24 * i64::try_from(days).unwrap_or(i64::MAX / 48);
        self.horizons
            .iter()
            .map(|p| {
                let last = end_hour - i64::try_from(p.horizon).unwrap_or(i64::MAX / 2);
                let lo = p.hours.partition_point(|&h| h < from);
                let hi = p.hours.partition_point(|&h| h <= last).max(lo);
                (lo, hi)
            })
            .collect()
    }

    /// The levels as declared, for every horizon.
    fn nominal_levels(&self) -> Vec<Vec<f64>> {
        vec![self.levels.clone(); self.horizons.len()]
    }

    /// The corrections measured on `window` (see [`Recalibration`]), each quantile scale at its
    /// level of `levels` (per horizon, in level order).
    fn measure(&self, window: &Window, levels: &[Vec<f64>]) -> Result<Recalibration, CalibrateError> {
        let mut out = Recalibration::default();
        for ((p, &(lo, hi)), levels) in self.horizons.iter().zip(window).zip(levels) {
            let n = hi - lo;
            if n < MIN_RECALIBRATION_POINTS {
                return Err(CalibrateError::TooLittleData(format!(
                    "{n} completed daily forecasts at {}h (need {MIN_RECALIBRATION_POINTS})",
                    p.horizon
                )));
            }
            let scale = p.variance_ratio[lo..hi].iter().sum::<f64>() / n as f64;
            if self.combine {
                out.har_weight
                    .insert(p.horizon, best_weight(&p.rv_model_har[lo..hi], scale));
            }
            let quantile_scale = levels
                .iter()
                .zip(&p.quantile_ratio)
                .map(|(&level, ratios)| {
                    let mut finite: Vec<f64> =
                        ratios[lo..hi].iter().copied().filter(|r| r.is_finite()).collect();
                    quantile_unsorted(&mut finite, level)
                })
                .collect();
            out.points.insert(p.horizon, n);
            out.variance_scale.insert(p.horizon, scale);
            out.quantile_scale.insert(p.horizon, quantile_scale);
        }
        Ok(out)
    }

    /// The corrections the daily job measures at `end_hour` on the trailing `days` days.
    ///
    /// # Errors
    /// [`CalibrateError::TooLittleData`] when a horizon has fewer than
    /// [`MIN_RECALIBRATION_POINTS`] completed forecasts in the window.
    pub fn recalibration(&self, end_hour: i64, days: usize) -> Result<Recalibration, CalibrateError> {
        let out = self.measure(&self.window(end_hour, days), &self.nominal_levels())?;
        Ok(stamped(out, end_hour, days))
    }

    /// The corrections in force on each day (midnight hours) from `first_day` to `last_day`, as
    /// the daily job measures them on the trailing `days` days (None where a window holds too few
    /// completed forecasts: `stored` then applies). With `adaptive`, each RV quantile's scale is
    /// measured at a level moved by adaptive conformal inference ([`Adaptive`]): nominal up to
    /// `anchor` (the fit end's midnight), then after each forecast completed since, by
    /// `quantile_step (level - covered)`, covered meaning RV at or below the quantile served at
    /// its origin (its scale of that day). With [`Adaptive::har_guard`], a horizon's weight is 0
    /// (HAR alone) on the days when the weighting rule's forecasts completed since the anchor
    /// have a higher total QLIKE than HAR's ([`Recalibration::har_guarded`]). For the state to be
    /// exact, `first_day` must be at most the anchor minus the longest horizon.
    #[must_use]
    pub fn operate(
        &self,
        (first_day, last_day): (i64, i64),
        days: usize,
        anchor: i64,
        adaptive: Option<&Adaptive>,
        stored: Option<&Recalibration>,
    ) -> BTreeMap<i64, Option<Recalibration>> {
        let step = adaptive.map_or(0.0, |a| a.quantile_step);
        let mut levels = self.nominal_levels();
        let mut out: BTreeMap<i64, Option<Recalibration>> = BTreeMap::new();
        let mut guard = adaptive
            .filter(|a| self.combine && a.har_guard)
            .map(|_| HarGuard::new(self));
        let mut day = first_day;
        while day <= last_day {
            if let Some(g) = &mut guard {
                g.advance(self, day, anchor, &out, stored);
            }
            if step != 0.0 {
                for (p, levels) in self.horizons.iter().zip(&mut levels) {
                    let h = i64::try_from(p.horizon).unwrap_or(i64::MAX / 2);
                    // Forecasts completed in (day - 24, day] and after the anchor.
                    let a = p.hours.partition_point(|&x| x <= (day - 24).max(anchor) - h);
                    let b = p.hours.partition_point(|&x| x <= day - h).max(a);
                    for i in a..b {
                        let scales = p
                            .in_force(i, &out, stored)
                            .and_then(|c| c.quantile_scale.get(&p.horizon));
                        for (l, (state, &level)) in levels.iter_mut().zip(&self.levels).enumerate() {
                            let r = p.quantile_ratio[l][i];
                            if r.is_finite() {
                                let scale = scales.and_then(|k| k.get(l)).copied().unwrap_or(1.0);
                                let covered = f64::from(u8::from(r <= scale));
                                *state = (*state + step * (level - covered)).clamp(-0.25, 1.25);
                            }
                        }
                    }
                }
            }
            let measured = self.measure(&self.window(day, days), &levels).ok().map(|r| {
                let mut r = stamped(r, day, days);
                r.adaptive = adaptive.map(|a| Adaptive {
                    quantile_level: self
                        .horizons
                        .iter()
                        .zip(&levels)
                        .map(|(p, l)| (p.horizon, l.clone()))
                        .collect(),
                    ..a.clone()
                });
                if let Some(a) = adaptive.filter(|a| self.combine && a.blends_any_as_served()) {
                    let weight_days = a.blend_window_days(days, day, anchor);
                    self.weigh_as_served(&mut r, a, day, weight_days, &out, stored);
                }
                if let Some(g) = &guard {
                    g.apply(self, &mut r);
                }
                if adaptive.is_some_and(|a| a.shortage_stack) {
                    r.shortage_stack = self.shortage_stack(day, days);
                }
                r
            });
            out.insert(day, measured);
            day += 24;
        }
        out
    }
}

impl History {
    /// Re-chooses `r`'s weights of the network against HAR, at the horizons `adaptive` says
    /// ([`Adaptive::blends_as_served`]), on the window of `days` days before `day`
    /// ([`Adaptive::blend_window_days`]) with each completed forecast as it was served: the
    /// network's raw forecast times the variance scale in force at its origin (`served`, the days operated so far; `stored` before
    /// them), not times the scale measured on this same window, which fits the network's level
    /// in sample and HAR's not. With [`Adaptive::shrink_as_served`], the power of the scale
    /// ([`Recalibration::variance_power`], of [`SCALE_POWERS`]) is chosen with the weight, each
    /// forecast as it would have been served at that power.
    fn weigh_as_served(
        &self,
        r: &mut Recalibration,
        adaptive: &Adaptive,
        day: i64,
        days: usize,
        served: &BTreeMap<i64, Option<Recalibration>>,
        stored: Option<&Recalibration>,
    ) {
        let powers: &[f64] = if adaptive.shrink_as_served {
            &SCALE_POWERS
        } else {
            &[1.0]
        };
        for (p, &(lo, hi)) in self.horizons.iter().zip(&self.window(day, days)) {
            if !adaptive.blends_as_served(p.horizon) {
                continue;
            }
            let in_force: Vec<(f64, [f64; 3])> = (lo..hi)
                .map(|i| {
                    let scale = p
                        .in_force(i, served, stored)
                        .and_then(|c| c.variance_scale.get(&p.horizon))
                        .copied()
                        .unwrap_or(1.0);
                    (scale, p.rv_model_har[i])
                })
                .collect();
            let best = powers
                .iter()
                .map(|&s| {
                    let points: Vec<[f64; 3]> = in_force
                        .iter()
                        .map(|&(scale, [rv, f, har])| [rv, artifact::scale_at_power(scale, s) * f, har])
                        .collect();
                    let (w, qlike) = best_blend(&points, 1.0);
                    (s, w, qlike)
                })
                .filter(|c| c.2.is_finite())
                .min_by(|a, b| a.2.total_cmp(&b.2));
            let (s, w) = best.map_or((1.0, 1.0), |c| (c.0, c.1));
            r.har_weight.insert(p.horizon, w);
            if adaptive.shrink_as_served {
                r.variance_power.insert(p.horizon, s);
            }
        }
    }
}

/// `r` with the window it was measured on: the `days` days before `end_hour`.
fn stamped(mut r: Recalibration, end_hour: i64, days: usize) -> Recalibration {
    r.from = format_ms(hour_to_ms(
        end_hour - 24 * i64::try_from(days).unwrap_or(i64::MAX / 48),
    ));
    r.until = format_ms(hour_to_ms(end_hour));
    r.rolling_days = Some(days);
    r
}

/// The weight of the network (its forecasts times `scale`) against HAR, of
/// [`HAR_BLEND_WEIGHTS`], whose blends have the lowest mean QLIKE on `points` (RV, F, H); the
/// network alone when no blend is finite.
fn best_weight(points: &[[f64; 3]], scale: f64) -> f64 {
    best_blend(points, scale).0
}

/// [`best_weight`] with its mean QLIKE (NaN when no blend is finite). Of equal scores, the
/// first weight tried; where no point has a usable HAR forecast (every weight scores the same),
/// the network alone, so that the weight kept does not serve HAR alone on the next day for want
/// of evidence.
fn best_blend(points: &[[f64; 3]], scale: f64) -> (f64, f64) {
    if !points.iter().any(|p| p[2].is_finite() && p[2] > 0.0) {
        let q = blend_qlike(points, scale, 1.0);
        return (1.0, if q.is_finite() { q } else { f64::NAN });
    }
    HAR_BLEND_WEIGHTS
        .iter()
        .map(|&w| (w, blend_qlike(points, scale, w)))
        .filter(|c| c.1.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((1.0, f64::NAN))
}

/// Mean QLIKE on `points` (RV, F, H) of the network's forecasts times `scale` blended with HAR
/// at weight `w` ([`artifact::blend`]).
fn blend_qlike(points: &[[f64; 3]], scale: f64, w: f64) -> f64 {
    points
        .iter()
        .map(|&[rv, f, hv]| qlike(rv, artifact::blend(scale * f, hv, w)))
        .sum::<f64>()
        / points.len().max(1) as f64
}

/// [`volcast_core::drawdown::interpolated_quantile`] of unsorted values (reordered), in linear time.
fn quantile_unsorted(values: &mut [f64], level: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = level.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let (_, &mut below, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let next = above.iter().copied().min_by(f64::total_cmp).unwrap_or(below);
    let frac = pos - lo as f64;
    below + frac * (next - below)
}

#[cfg(test)]
mod tests;
