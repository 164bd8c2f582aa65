//! A row's verdict: its statistics against their thresholds, the flag, the drivers of the
//! score and the pattern it reads as, with the hours before it that a direction over several
//! hours reads.

use super::{Copula, MAX_DRIVERS, Subset, complete, conditional, mahalanobis, over_hours, projection};
use crate::anomaly::features::{self, Row};
use serde::{Deserialize, Serialize};

/// One scored hour: its row and the row's normal scores under the model judging it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hour<'a> {
    pub(crate) row: &'a Row,
    pub(crate) z: &'a [f64],
}

/// One reason for a score: a feature, how far from normal it was and its share of the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    /// Feature name.
    pub feature: String,
    /// Its normal score: standard deviations from the fit period's typical market-hour.
    pub z: f64,
    /// Its share of the score, `z_i (R⁻¹ z)_i / d²`.
    pub share: f64,
    /// The feature in plain units (a return, a ratio to the recent mean, a change).
    pub value: f64,
    /// The reason in words.
    pub description: String,
    /// Hours before the scored one that this part was measured in (0: that hour): a flag raised
    /// along a pattern judged over several hours ([`Direction::hours`](super::Direction::hours))
    /// names the parts of all of them, and its description begins "2 h before: ".
    #[serde(default, skip_serializing_if = "is_zero_hours")]
    pub hours_before: usize,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_zero_hours(h: &usize) -> bool {
    *h == 0
}

/// One row's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Open time of the hour, or the snapshot's time, Unix ms.
    pub time_ms: i64,
    /// The surprise on the scale of `d²`: `d²`, or the largest conditional surprise scaled so
    /// that its own threshold falls on `threshold` (`threshold (c / c*)²`), whichever is further
    /// beyond its threshold.
    pub score: f64,
    /// The `d²` threshold for this row's feature set.
    pub threshold: f64,
    /// `score > threshold`.
    pub flagged: bool,
    /// Top drivers by share, for flagged rows (empty otherwise).
    pub drivers: Vec<Driver>,
    /// For a flagged row raised by a direction's statistic ([`Direction`](super::Direction)), the direction's
    /// name: the pattern the row reads as.
    pub pattern: Option<String>,
}

/// One row's verdict, its thresholds multiplied by `scale` (see [`super::adaptive`]; 1: as
/// fitted), without hours before it.
pub(crate) fn verdict(model: &Copula, subsets: &[Subset], row: &Row, scale: f64) -> Option<Verdict> {
    let z = model.normal_scores(&row.values);
    verdict_after(model, subsets, Hour { row, z: &z }, &std::iter::empty(), scale)
}

/// One part of a direction's statistic: `hours_before` the scored hour, the `i`-th present
/// feature, its part `f_i z_i / sqrt(hours)`.
struct Part {
    hours_before: usize,
    i: usize,
    part: f64,
}

/// The verdict on `hour` (its scores `z` under `model`), with the hours just before it, most
/// recent first and one hour apart, scored by the same model (`earlier`; the directions over
/// several hours read them), its thresholds multiplied by `scale`.
pub(crate) fn verdict_after<'a>(
    model: &Copula,
    subsets: &[Subset],
    hour: Hour<'a>,
    earlier: &(impl Iterator<Item = Hour<'a>> + Clone),
    scale: f64,
) -> Option<Verdict> {
    let (row, z) = (hour.row, hour.z);
    let subset = subsets
        .iter()
        .find(|s| (0..z.len()).all(|j| s.present.contains(&j) == z[j].is_finite()))?;
    let (d2, parts, pz) = mahalanobis(&subset.precision, &subset.present, z);
    let (lead, c) = conditional(&subset.precision, &pz);
    let on_d2_scale = |stat: f64, threshold: f64| subset.threshold * (stat / threshold.max(1e-12)).powi(2);
    let by_conditional = on_d2_scale(c, subset.conditional);
    // The scored hour and the ones before it its directions may read (an iterator, not a list:
    // every scored hour passes here).
    let hours = || std::iter::once(hour).chain(earlier.clone());
    // The direction furthest beyond its threshold: its name, filter, hours, statistic, and the
    // statistic on the scale of `d²`.
    let by_direction = subset
        .directed
        .iter()
        .map(|d| {
            let stat = over_hours(
                d.hours,
                hours().map(|h| projection(&d.filter, &subset.present, h.z)),
            );
            (d, stat, on_d2_scale(stat, d.threshold))
        })
        .max_by(|a, b| a.2.total_cmp(&b.2));
    let by_directed = by_direction.map_or(0.0, |d| d.2);
    let score = d2.max(by_conditional).max(by_directed);
    let threshold = subset.threshold * scale;
    let flagged = score > threshold;
    let led_by_direction = by_directed > d2.max(by_conditional);
    let driver = |h: &Hour<'_>, hours_before: usize, i: usize, share: f64| {
        let j = subset.present[i];
        let name = &model.features[j];
        let said = features::describe(name, h.row.shown[j], h.row.market[j]);
        Driver {
            feature: name.clone(),
            z: h.z[j],
            share,
            value: h.row.shown[j],
            description: if hours_before == 0 {
                said
            } else {
                format!("{hours_before} h before: {said}")
            },
            hours_before,
        }
    };
    let drivers = match by_direction {
        _ if !flagged => Vec::new(),
        Some((d, stat, _)) if led_by_direction => {
            // A flag raised by a direction names its features, over its hours, by their part
            // of its statistic, each a twentieth of it or more.
            let root = (d.hours.max(1) as f64).sqrt();
            let mut all: Vec<Part> = hours()
                .take(d.hours.max(1))
                .enumerate()
                .filter(|(_, h)| complete(&subset.present, h.z))
                .flat_map(|(k, h)| {
                    (0..subset.present.len()).map(move |i| Part {
                        hours_before: k,
                        i,
                        part: d.filter[i] * h.z[subset.present[i]] / root,
                    })
                })
                .collect();
            all.sort_by(|a, b| b.part.total_cmp(&a.part));
            all.into_iter()
                .take(MAX_DRIVERS)
                .filter(|p| p.part >= 0.05 * stat)
                .filter_map(|p| {
                    let h = hours().nth(p.hours_before)?;
                    // Its share of that hour's `d²`.
                    let (d2, parts, _) = mahalanobis(&subset.precision, &subset.present, h.z);
                    Some(driver(&h, p.hours_before, p.i, parts[p.i] / d2.max(1e-12)))
                })
                .collect()
        }
        _ => {
            // By share of `d²`; a flag raised by one feature's conditional surprise names it
            // first.
            let mut order: Vec<usize> = (0..parts.len()).collect();
            order.sort_by(|&a, &b| parts[b].total_cmp(&parts[a]));
            if by_conditional > d2 {
                order.retain(|&i| i != lead);
                order.insert(0, lead);
            }
            order
                .into_iter()
                .take(MAX_DRIVERS)
                .filter(|&i| parts[i] > 0.0 || i == lead && by_conditional > d2)
                .map(|i| driver(&hour, 0, i, parts[i] / d2.max(1e-12)))
                .collect()
        }
    };
    let pattern = by_direction
        .filter(|_| flagged && led_by_direction)
        .map(|d| d.0.name.clone());
    Some(Verdict {
        time_ms: row.time_ms,
        score,
        threshold,
        flagged,
        drivers,
        pattern,
    })
}
