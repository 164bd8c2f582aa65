//! The copula's marginals: each feature's quantile table mapping it to a normal score, and a
//! feature's tables per bin of another's score (a conditional marginal).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// Largest normal score a feature maps to.
pub(super) const Z_CAP: f64 = 12.0;
/// Spacing of the quantile table, in normal scores.
pub(super) const KNOT_STEP: f64 = 0.05;

pub(super) fn std_normal() -> Normal {
    #[allow(clippy::unwrap_used)] // mean 0 and sd 1 are valid parameters.
    Normal::new(0.0, 1.0).unwrap()
}

/// A feature's marginal learned per bin of another feature's normal score: its normal score is
/// read from the tables of the two bins whose centres bracket the other's score, interpolated
/// between them (the nearest bin's beyond the outer centres). A conditional probability integral
/// transform: on the fit rows the feature's score is then independent of the other's, so an
/// hour whose wick is ordinary for its volume scores ordinary, and one whose wick is large for
/// its volume scores high, where the plain marginal would score them alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conditioned {
    /// The feature whose marginal is conditioned.
    pub feature: String,
    /// The feature it is conditioned on (its own marginal is the plain one, floored).
    pub on: String,
    /// Per bin, the mean normal score of `on` over the bin's fit rows, ascending.
    pub centres: Vec<f64>,
    /// Per bin, the feature's marginal on the bin's fit rows.
    pub tables: Vec<Marginal>,
}

/// One marginal as a quantile table: the value at each knot's normal score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marginal {
    /// Normal score of the first knot; knots are `KNOT_STEP` (0.05) apart.
    pub z_min: f64,
    /// The fit rows' quantile at each knot's normal score.
    pub knots: Vec<f64>,
}

/// Upper edges of the conditioning bins, in normal scores of the feature conditioned on (the
/// last bin is open above).
const CONDITION_EDGES: [f64; 4] = [0.0, 1.0, 2.0, 3.0];
/// Fewest fit rows of a conditioning bin; a smaller one is merged into its neighbour below.
const MIN_BIN_ROWS: usize = 2000;

impl Marginal {
    /// The quantile table of `col` (finite values), reaching as far into the tails as twenty
    /// values per tail allow out of `n` rows, at most 4 sd.
    pub(super) fn fit(mut col: Vec<f64>, n: usize) -> Self {
        let normal = std_normal();
        // (Under 40 rows the tail share would pass one half, and under 20 one, where the
        // inverse CDF panics: such a table reaches 1 sd.)
        let z_max = (-normal.inverse_cdf((20.0 / n.max(1) as f64).min(0.5))).clamp(1.0, 4.0);
        let steps = (2.0 * z_max / KNOT_STEP).floor() as usize;
        let z_min = -(steps as f64) * KNOT_STEP / 2.0;
        col.sort_by(f64::total_cmp);
        let knots = (0..=steps)
            .map(|s| quantile(&col, normal.cdf(z_min + s as f64 * KNOT_STEP)))
            .collect();
        Self { z_min, knots }
    }

    fn normal_score(&self, x: f64) -> f64 {
        to_normal(x, &self.knots, self.z_min)
    }
}

impl Conditioned {
    /// Fits `feature`'s marginal per bin of `on`'s normal scores `z_on` (one per row, NaN where
    /// missing) over the rows' values `x`.
    pub(super) fn fit(feature: &str, on: &str, x: &[f64], z_on: &[f64]) -> Self {
        // Rows per bin (both present), then bins too small merged downwards.
        let bin_of = |z: f64| CONDITION_EDGES.partition_point(|&e| e <= z);
        let mut bins: Vec<Vec<(f64, f64)>> = vec![Vec::new(); CONDITION_EDGES.len() + 1];
        for (&x, &z) in x.iter().zip(z_on) {
            if x.is_finite() && z.is_finite() {
                bins[bin_of(z)].push((x, z));
            }
        }
        for b in (1..bins.len()).rev() {
            if bins[b].len() < MIN_BIN_ROWS {
                let rows = std::mem::take(&mut bins[b]);
                bins[b - 1].extend(rows);
            }
        }
        bins.retain(|b| !b.is_empty());
        let centres = bins
            .iter()
            .map(|b| b.iter().map(|r| r.1).sum::<f64>() / b.len() as f64)
            .collect();
        let tables = bins
            .iter()
            .map(|b| Marginal::fit(b.iter().map(|r| r.0).collect(), b.len()))
            .collect();
        Self {
            feature: feature.to_owned(),
            on: on.to_owned(),
            centres,
            tables,
        }
    }

    /// The normal score of `x` given `on`'s normal score `z_on`; NaN where either is missing.
    pub(super) fn normal_score(&self, x: f64, z_on: f64) -> f64 {
        if !x.is_finite() || !z_on.is_finite() || self.tables.is_empty() {
            return f64::NAN;
        }
        let c = &self.centres;
        let last = c.len() - 1;
        if z_on <= c[0] {
            return self.tables[0].normal_score(x);
        }
        if z_on >= c[last] {
            return self.tables[last].normal_score(x);
        }
        let k = c.partition_point(|&e| e <= z_on) - 1;
        let t = (z_on - c[k]) / (c[k + 1] - c[k]).max(1e-12);
        (1.0 - t) * self.tables[k].normal_score(x) + t * self.tables[k + 1].normal_score(x)
    }
}

/// The `p` quantile of sorted values (linear interpolation); NaN when empty.
pub(super) fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Maps `x` to a normal score through the quantile table: linear between knots (the middle of a
/// run of equal knots), linear beyond the ends with the slope of the last ten knots, never
/// steeper than the whole table's mean slope (a flat end, ten equal knots, would otherwise send a
/// value a hair beyond it to [`Z_CAP`]), capped at [`Z_CAP`].
pub(super) fn to_normal(x: f64, knots: &[f64], z_min: f64) -> f64 {
    if !x.is_finite() || knots.len() < 12 {
        return f64::NAN;
    }
    let n = knots.len();
    let z_at = |i: f64| z_min + i * KNOT_STEP;
    let span = 10.0 * KNOT_STEP;
    // Ten knots' spread at the table's mean slope: the least spread an end may count with.
    let mean_spread = (knots[n - 1] - knots[0]) * 10.0 / (n - 1) as f64;
    if x > knots[n - 1] {
        let slope = span / (knots[n - 1] - knots[n - 11]).max(mean_spread).max(1e-12);
        return (z_at((n - 1) as f64) + (x - knots[n - 1]) * slope).min(Z_CAP);
    }
    if x < knots[0] {
        let slope = span / (knots[10] - knots[0]).max(mean_spread).max(1e-12);
        return (z_at(0.0) - (knots[0] - x) * slope).max(-Z_CAP);
    }
    // First knot >= x and first knot > x: equal knots share the middle of their run.
    let lo = knots.partition_point(|&k| k < x);
    let hi = knots.partition_point(|&k| k <= x);
    if hi > lo {
        return z_at((lo + hi - 1) as f64 / 2.0);
    }
    // knots[lo - 1] < x < knots[lo]
    let (a, b) = (knots[lo - 1], knots[lo]);
    z_at((lo - 1) as f64 + (x - a) / (b - a))
}
