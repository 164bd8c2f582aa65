//! The density model under the detector: a Gaussian copula over activity features (learned
//! marginals as quantile tables, a learned correlation), its flag thresholds per set of
//! available features, and its verdict on one row with the drivers of the score.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

pub use marginal::{Conditioned, Marginal};
use marginal::{quantile, to_normal};

mod marginal;
pub mod verdict;

/// Most drivers a flag reports.
pub const MAX_DRIVERS: usize = 3;

/// A Gaussian copula over features: learned marginals, learned correlation, thresholds per set
/// of available features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Copula {
    /// Feature names in row order.
    pub features: Vec<String>,
    /// Lowest normal score each feature counts with (`None`: both sides count).
    pub floors: Vec<Option<f64>>,
    /// Normal score of the first knot; knots are `KNOT_STEP` (0.05) apart.
    pub z_min: f64,
    /// Per feature, its fit-period quantile at each knot's normal score.
    pub knots: Vec<Vec<f64>>,
    /// Correlation of the normal scores on the fit rows.
    pub correlation: Vec<Vec<f64>>,
    /// Flag thresholds (of `d²`, the conditional surprise and each direction's statistic), one
    /// set per set of available features.
    pub thresholds: Vec<Threshold>,
    /// Fit rows.
    pub fit_rows: usize,
    /// Features whose marginal is learned given another feature's normal score (see
    /// [`Conditioned`]); empty in detectors fitted before it existed, which read as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditioned: Vec<Conditioned>,
    /// Directions in normal-score space with their own statistic (see [`Direction`]); empty in
    /// detectors fitted without them, which read as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directions: Vec<Direction>,
}

/// A named direction `a` over the normal scores, judged by its own statistic
/// `s = max(0, a' R⁻¹ z) / sqrt(a' R⁻¹ a)`: how far the row lies along `a` beyond what its
/// other features explain, in standard deviations. Under the copula it is the most powerful
/// test against a shift of `z` along `a` (a matched filter), so a pattern that moves several
/// features together (volume and volume for the range, say) is found at a far smaller excursion
/// than `d²`, which spreads its threshold over every feature, needs. One-sided.
///
/// A direction judged over several hours (`hours` > 1) sums the projection `a' R⁻¹ z` of the
/// hour and of the same market's `hours - 1` hours before it, scored by the same model, and
/// divides by `sqrt(hours)`: the matched filter for a pattern spread over those hours. The
/// sum stops at the first hour without a row (those hours count 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Direction {
    /// What the direction stands for (a pattern's name).
    pub name: String,
    /// Its weight on each feature, in row order.
    pub weights: Vec<f64>,
    /// Hours it is judged over, the scored one included (1 in detectors fitted before it
    /// existed, and not written when 1).
    #[serde(default = "one_hour", skip_serializing_if = "is_one_hour")]
    pub hours: usize,
}

/// Most hours a direction may be judged over.
pub const MAX_DIRECTION_HOURS: usize = 24;

/// One hour: serde's default of an hours field absent from older JSON.
pub(crate) fn one_hour() -> usize {
    1
}

/// Whether an hours field is one (not written, so older JSON and ids stay as they were).
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
pub(crate) fn is_one_hour(h: &usize) -> bool {
    *h == 1
}

/// The directions a copula is fitted with ([`Direction`]) and, for those judged over several
/// hours, each fit row's row an hour earlier.
#[derive(Debug, Clone, Default)]
pub struct Directed<'a> {
    /// The directions.
    pub directions: Vec<Direction>,
    /// Per fit row, the index of the same market's fit row one hour earlier, if there is one
    /// (empty: none has).
    pub earlier: &'a [Option<usize>],
}

impl Directed<'static> {
    /// `directions` on rows without hours before them.
    #[must_use]
    pub fn new(directions: Vec<Direction>) -> Self {
        Self {
            directions,
            earlier: &[],
        }
    }
}

/// The flag thresholds for rows missing exactly `missing` features: a row is flagged when its
/// `d²`, its largest conditional surprise or a direction's statistic is above its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Features absent from these rows.
    pub missing: Vec<String>,
    /// `d²` above which a row is flagged.
    pub d2: f64,
    /// Largest conditional surprise (one feature against what the others predict, in sd) above
    /// which a row is flagged.
    pub conditional: f64,
    /// Per direction of the model ([`Direction`]), its statistic above which a row is flagged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directed: Vec<f64>,
    /// Fit rows of this kind they were measured on.
    pub rows: usize,
}

/// The precomputed inverse of a feature subset's correlation.
#[derive(Debug, Clone)]
pub(crate) struct Subset {
    present: Vec<usize>,
    precision: DMatrix<f64>,
    threshold: f64,
    conditional: f64,
    /// Per direction, its filter and threshold.
    directed: Vec<Filter>,
}

/// A direction prepared for one set of present features.
#[derive(Debug, Clone)]
struct Filter {
    name: String,
    /// `R⁻¹ a` over the present features scaled by `1 / sqrt(a' R⁻¹ a)`: its dot product with
    /// `z` is the direction's projection.
    filter: Vec<f64>,
    /// Hours it is judged over.
    hours: usize,
    /// The statistic's threshold.
    threshold: f64,
}

impl Copula {
    /// Fits the copula on `rows` (NaN marks a missing feature; only `optional` features may be
    /// missing) and sets one set of thresholds per set of present optional features: on `d²`,
    /// on the largest conditional surprise and on each of `directed`'s statistics (over the rows'
    /// chains of hours for a direction over several), each at the same tail fraction of the fit
    /// rows, chosen so that `rate` of the fit rows exceed any.
    #[must_use]
    pub fn fit(
        names: &[&str],
        floors: Vec<Option<f64>>,
        rows: &[Vec<f64>],
        optional: &[usize],
        rate: f64,
        given: &[(usize, usize)],
        directed: Directed<'_>,
    ) -> Self {
        let Directed { directions, earlier } = directed;
        let k = names.len();
        let n = rows.len();
        let marginals: Vec<Marginal> = (0..k)
            .map(|j| Marginal::fit(rows.iter().map(|r| r[j]).filter(|x| x.is_finite()).collect(), n))
            .collect();
        let z_min = marginals.first().map_or(0.0, |m| m.z_min);
        let mut model = Self {
            features: names.iter().map(|s| (*s).to_owned()).collect(),
            floors,
            z_min,
            knots: marginals.into_iter().map(|m| m.knots).collect(),
            correlation: vec![vec![0.0; k]; k],
            thresholds: Vec::new(),
            fit_rows: rows.len(),
            conditioned: Vec::new(),
            directions,
        };
        let mut zs: Vec<Vec<f64>> = rows.iter().map(|r| model.normal_scores(r)).collect();
        // The conditioned marginals, on the plain (floored) scores of the features they are
        // conditioned on; then the rows' scores through them.
        model.conditioned = given
            .iter()
            .map(|&(j, on)| {
                let z_on: Vec<f64> = zs.iter().map(|z| z[on]).collect();
                let x: Vec<f64> = rows.iter().map(|r| r[j]).collect();
                Conditioned::fit(names[j], names[on], &x, &z_on)
            })
            .collect();
        if !model.conditioned.is_empty() {
            zs = rows.iter().map(|r| model.normal_scores(r)).collect();
        }
        let (mut sum, mut count) = (vec![vec![0.0; k]; k], vec![vec![0.0f64; k]; k]);
        for z in &zs {
            for a in 0..k {
                for b in 0..k {
                    if z[a].is_finite() && z[b].is_finite() {
                        sum[a][b] += z[a] * z[b];
                        count[a][b] += 1.0;
                    }
                }
            }
        }
        let cov: Vec<Vec<f64>> = (0..k)
            .map(|a| (0..k).map(|b| sum[a][b] / count[a][b].max(1.0)).collect())
            .collect();
        // A covariance of normal scores has a unit diagonal up to the floors and the ties;
        // rescale it to a correlation, shrunk slightly so every subset inverts.
        model.correlation = (0..k)
            .map(|a| {
                (0..k)
                    .map(|b| {
                        let c = cov[a][b] / (cov[a][a] * cov[b][b]).sqrt().max(1e-12);
                        if a == b { 1.0 } else { 0.98 * c }
                    })
                    .collect()
            })
            .collect();
        // Every subset of the optional features gets a threshold, measured by scoring the fit
        // rows with those features removed.
        let mut subsets: Vec<Vec<usize>> = vec![Vec::new()];
        for &j in optional {
            let more: Vec<Vec<usize>> = subsets
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    s.push(j);
                    s
                })
                .collect();
            subsets.extend(more);
        }
        // A set of features no fit row has complete gets no threshold (there is nothing to
        // measure one on): a row with that set is not judged.
        model.thresholds = subsets
            .iter()
            .filter_map(|missing| model.thresholds_without(missing, &zs, earlier, rate))
            .collect();
        model
    }

    /// The thresholds for the fit rows missing exactly the features `missing` (their normal
    /// scores `zs`, each row's row an hour earlier in `earlier`): every statistic at the common
    /// tail fraction that `rate` of those rows exceed.
    fn thresholds_without(
        &self,
        missing: &[usize],
        zs: &[Vec<f64>],
        earlier: &[Option<usize>],
        rate: f64,
    ) -> Option<Threshold> {
        let present: Vec<usize> = (0..self.features.len())
            .filter(|j| !missing.contains(j))
            .collect();
        let prec = self.precision(&present);
        let filters = self.filters(&prec, &present);
        // Each row's projection on each filter, row after row (0 for a row outside this set),
        // which the directions over several hours sum along the rows' chains.
        let m = filters.len();
        let along: Vec<f64> = zs
            .iter()
            .flat_map(|z| filters.iter().map(|f| projection(f, &present, z)))
            .collect();
        let scored: Vec<Vec<f64>> = zs
            .iter()
            .enumerate()
            .filter(|(_, z)| complete(&present, z))
            .map(|(i, z)| {
                let (d2, _, pz) = mahalanobis(&prec, &present, z);
                let mut stats = vec![d2, conditional(&prec, &pz).1];
                // Row `i` and the rows before it, one hour apart.
                let chain = std::iter::successors(Some(i), |&r| earlier.get(r).copied().flatten());
                stats.extend(
                    self.directions
                        .iter()
                        .enumerate()
                        .map(|(d, dir)| over_hours(dir.hours, chain.clone().map(|r| along[r * m + d]))),
                );
                stats
            })
            .collect();
        if scored.is_empty() {
            return None;
        }
        let thresholds = joint_thresholds(&scored, rate);
        Some(Threshold {
            missing: missing.iter().map(|&j| self.features[j].clone()).collect(),
            d2: thresholds[0],
            conditional: thresholds[1],
            directed: thresholds[2..].to_vec(),
            rows: scored.len(),
        })
    }

    /// Each feature's normal score (NaN where missing), floored where the model says; a
    /// conditioned feature's given the (floored) score of the feature it is conditioned on.
    #[must_use]
    pub fn normal_scores(&self, row: &[f64]) -> Vec<f64> {
        let floor = |j: usize, z: f64| match self.floors[j] {
            // (`f64::max` would turn a missing feature's NaN into the floor.)
            Some(f) if z.is_finite() => z.max(f),
            _ => z,
        };
        let mut z: Vec<f64> = row
            .iter()
            .zip(&self.knots)
            .enumerate()
            .map(|(j, (&x, knots))| floor(j, to_normal(x, knots, self.z_min)))
            .collect();
        if self.conditioned.is_empty() {
            return z;
        }
        // Conditioned on the plain scores, whatever the order of the conditioned features.
        let plain = z.clone();
        for c in &self.conditioned {
            let (Some(j), Some(on)) = (self.index(&c.feature), self.index(&c.on)) else {
                continue;
            };
            z[j] = floor(j, c.normal_score(row[j], plain[on]));
        }
        z
    }

    /// Whether the model's tables fit its features: a floor and a knot table per feature, a
    /// finite k x k correlation, at least one set of thresholds, and conditioned marginals and
    /// thresholds naming its own features (a file edited or cut short would otherwise panic
    /// at scoring, or never flag).
    ///
    /// # Errors
    /// What does not fit, in words.
    pub fn check_shape(&self) -> Result<(), String> {
        let k = self.features.len();
        if k == 0 {
            return Err("it has no features".into());
        }
        if self.floors.len() != k || self.knots.len() != k {
            return Err(format!(
                "{} floors and {} knot tables for {k} features",
                self.floors.len(),
                self.knots.len()
            ));
        }
        if self.correlation.len() != k
            || self
                .correlation
                .iter()
                .any(|row| row.len() != k || !row.iter().all(|x| x.is_finite()))
        {
            return Err(format!("its correlation is not a finite {k} x {k} matrix"));
        }
        if self.thresholds.is_empty() {
            return Err("it has no thresholds: it would never flag".into());
        }
        if let Some(t) = self
            .thresholds
            .iter()
            .find(|t| t.missing.iter().any(|m| !self.features.contains(m)))
        {
            return Err(format!(
                "thresholds for rows missing {:?} name an unknown feature",
                t.missing
            ));
        }
        for c in &self.conditioned {
            if !self.features.contains(&c.feature) || !self.features.contains(&c.on) {
                return Err(format!(
                    "{} conditioned on {} names an unknown feature",
                    c.feature, c.on
                ));
            }
            if c.centres.is_empty() || c.centres.len() != c.tables.len() {
                return Err(format!(
                    "{} conditioned on {} has {} bin centres for {} tables",
                    c.feature,
                    c.on,
                    c.centres.len(),
                    c.tables.len()
                ));
            }
        }
        Ok(())
    }

    /// Whether each direction fits the model: a finite weight per feature, judged over 1 to
    /// [`MAX_DIRECTION_HOURS`] hours, and a threshold per direction in each set of thresholds.
    ///
    /// # Errors
    /// What does not fit.
    pub fn check_directions(&self) -> Result<(), String> {
        let k = self.features.len();
        for d in &self.directions {
            if d.weights.len() != k || !d.weights.iter().all(|w| w.is_finite()) {
                return Err(format!(
                    "direction {} has {} weights for {k} features, or one not finite",
                    d.name,
                    d.weights.len()
                ));
            }
            if !(1..=MAX_DIRECTION_HOURS).contains(&d.hours) {
                return Err(format!(
                    "direction {} is judged over {} hours, not 1 to {MAX_DIRECTION_HOURS}",
                    d.name, d.hours
                ));
            }
        }
        match self
            .thresholds
            .iter()
            .find(|t| t.directed.len() != self.directions.len())
        {
            Some(t) => Err(format!(
                "thresholds for rows missing {:?} hold {} directed thresholds for {} directions",
                t.missing,
                t.directed.len(),
                self.directions.len()
            )),
            None => Ok(()),
        }
    }

    /// Hours before the scored one its directions read (0 when all are judged on one hour).
    #[must_use]
    pub fn lookback_hours(&self) -> usize {
        self.directions
            .iter()
            .map(|d| d.hours.max(1) - 1)
            .max()
            .unwrap_or(0)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f == name)
    }

    fn precision(&self, present: &[usize]) -> DMatrix<f64> {
        let m = present.len();
        let r = DMatrix::from_fn(m, m, |a, b| self.correlation[present[a]][present[b]]);
        r.try_inverse().unwrap_or_else(|| DMatrix::identity(m, m))
    }

    /// Per direction, `R⁻¹ a / sqrt(a' R⁻¹ a)` over the `present` features (`prec` their
    /// `R⁻¹`): its dot product with the present scores is the direction's statistic.
    fn filters(&self, prec: &DMatrix<f64>, present: &[usize]) -> Vec<Vec<f64>> {
        self.directions
            .iter()
            .map(|d| {
                let a: Vec<f64> = present
                    .iter()
                    .map(|&j| d.weights.get(j).copied().unwrap_or(0.0))
                    .collect();
                let pa: Vec<f64> = (0..a.len())
                    .map(|r| (0..a.len()).map(|c| prec[(r, c)] * a[c]).sum())
                    .collect();
                let norm = a
                    .iter()
                    .zip(&pa)
                    .map(|(x, y)| x * y)
                    .sum::<f64>()
                    .max(1e-12)
                    .sqrt();
                pa.into_iter().map(|x| x / norm).collect()
            })
            .collect()
    }

    pub(crate) fn subsets(&self) -> Vec<Subset> {
        self.thresholds
            .iter()
            .map(|t| {
                let present: Vec<usize> = (0..self.features.len())
                    .filter(|&j| !t.missing.contains(&self.features[j]))
                    .collect();
                let precision = self.precision(&present);
                let directed = self
                    .directions
                    .iter()
                    .zip(self.filters(&precision, &present))
                    .zip(&t.directed)
                    .map(|((d, filter), &threshold)| Filter {
                        name: d.name.clone(),
                        filter,
                        hours: d.hours,
                        threshold,
                    })
                    .collect();
                Subset {
                    precision,
                    present,
                    threshold: t.d2,
                    conditional: t.conditional,
                    directed,
                }
            })
            .collect()
    }
}

/// `d²` of the present features, each one's share `z_i (R⁻¹ z)_i`, and `R⁻¹ z`.
fn mahalanobis(prec: &DMatrix<f64>, present: &[usize], z: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let v: Vec<f64> = present.iter().map(|&j| z[j]).collect();
    let pv: Vec<f64> = (0..v.len())
        .map(|a| (0..v.len()).map(|b| prec[(a, b)] * v[b]).sum())
        .collect();
    let parts: Vec<f64> = v.iter().zip(&pv).map(|(a, b)| a * b).collect();
    (parts.iter().sum(), parts, pv)
}

/// The largest conditional surprise and where: for each present feature, how many standard
/// deviations its normal score lies from what the others predict, `|(R⁻¹ z)_i| / sqrt((R⁻¹)_ii)`
/// (the standardised residual of `z_i` given the rest). Where one feature alone is off (volume
/// without the range that goes with it, a wick without the move), this finds it at a lower
/// false-alarm cost than `d²`, which spreads its threshold over every feature.
fn conditional(prec: &DMatrix<f64>, pz: &[f64]) -> (usize, f64) {
    pz.iter()
        .enumerate()
        .map(|(a, x)| (a, x.abs() / prec[(a, a)].max(1e-12).sqrt()))
        .fold((0, 0.0), |best, x| if x.1 > best.1 { x } else { best })
}

/// Whether the scores `z` hold every one of the `present` features.
fn complete(present: &[usize], z: &[f64]) -> bool {
    present.iter().all(|&j| z.get(j).is_some_and(|x| x.is_finite()))
}

/// The projection `f · z` of the scores `z` of the `present` features on a direction's filter
/// `f` ([`Copula::filters`]); 0 for scores missing one of them (an hour outside this set of
/// features counts nothing).
fn projection(filter: &[f64], present: &[usize], z: &[f64]) -> f64 {
    if !complete(present, z) {
        return 0.0;
    }
    present.iter().zip(filter).map(|(&j, f)| f * z[j]).sum::<f64>()
}

/// A direction's statistic over `hours` ([`Direction`]) from the projections of the hour and
/// the ones before it, most recent first: `max(0, their sum) / sqrt(hours)`. For one hour,
/// `max(0, f · z)`.
fn over_hours(hours: usize, projections: impl Iterator<Item = f64>) -> f64 {
    let hours = hours.max(1);
    (projections.take(hours).sum::<f64>() / (hours as f64).sqrt()).max(0.0)
}

/// Thresholds on each of the rows' statistics (`d²`, the largest conditional surprise, each
/// direction's) at one common tail fraction of the fit rows, the fraction chosen so that `rate`
/// of the rows exceed any of them.
fn joint_thresholds(rows: &[Vec<f64>], rate: f64) -> Vec<f64> {
    let m = rows.first().map_or(0, Vec::len);
    let sorted: Vec<Vec<f64>> = (0..m)
        .map(|i| {
            let mut v: Vec<f64> = rows.iter().map(|r| r[i]).collect();
            v.sort_by(f64::total_cmp);
            v
        })
        .collect();
    let n = rows.len();
    // Each row's tail fraction on each statistic; it is flagged at tail fraction q when the
    // smallest is below q.
    let tail = |sorted: &[f64], x: f64| (n - sorted.partition_point(|&y| y < x)) as f64 / n as f64;
    let mut smallest: Vec<f64> = rows
        .iter()
        .map(|r| {
            sorted
                .iter()
                .zip(r)
                .map(|(s, &x)| tail(s, x))
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    smallest.sort_by(f64::total_cmp);
    let q = quantile(&smallest, rate);
    sorted.iter().map(|s| quantile(s, 1.0 - q)).collect()
}

#[cfg(test)]
mod tests;
