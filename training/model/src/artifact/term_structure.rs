//! A horizon's network variance carried from a shorter horizon's, relative to HAR
//! ([`super::Metadata::term_structure`]): `F_to := HAR_to * F_from / HAR_from`. The week is then
//! HAR's week moved by the network's view of the next day against HAR's, and the daily blend
//! weight with HAR at the week decides how much of that view is carried.

use std::collections::BTreeMap;

use super::Recalibration;
use crate::prediction::Prediction;

/// Carries each horizon `to` of `term_structure` from its `from` (both in `horizons`, the
/// order of `har` and of `p`'s forecasts): on raw forecasts `F_to := HAR_to * F_from /
/// HAR_from`; on forecasts already corrected by `recalibration`'s variance factors `s`
/// ([`Recalibration::apply`]) the raw carry corrected, `s_to / s_from * HAR_to * F_from /
/// HAR_from`, so that carrying and correcting commute. The RV quantiles at `to` move by the same
/// factor as its variance. A horizon whose HAR forecasts or forecasts are not finite and
/// positive keeps the network's own.
pub fn carry(
    term_structure: &BTreeMap<usize, usize>,
    horizons: &[usize],
    recalibration: Option<&Recalibration>,
    har: &[f64],
    p: &mut Prediction,
) {
    let at = |h: usize| horizons.iter().position(|&x| x == h);
    let positive = |x: f64| x.is_finite() && x > 0.0;
    for (&to, &from) in term_structure {
        let (Some(j), Some(i)) = (at(to), at(from)) else {
            continue;
        };
        let (Some(&har_to), Some(&har_from)) = (har.get(j), har.get(i)) else {
            continue;
        };
        let (own, source) = (p.variance[j], p.variance[i]);
        if ![har_to, har_from, own, source].into_iter().all(positive) {
            continue;
        }
        let factor = recalibration.map_or(1.0, |r| r.variance_factor(to) / r.variance_factor(from));
        let carried = factor * har_to * source / har_from;
        let moved = carried / own;
        p.variance[j] = carried;
        for q in &mut p.quantiles[j] {
            *q *= moved;
        }
    }
}

/// Checks a term structure: each horizon carried from a shorter one, both among `horizons`
/// with a HAR fit in `har`, and none carried from a horizon itself carried.
///
/// # Errors
/// The first offending pair.
pub fn check_term_structure<T>(
    term_structure: &BTreeMap<usize, usize>,
    horizons: &[usize],
    har: &BTreeMap<usize, T>,
) -> Result<(), String> {
    for (&to, &from) in term_structure {
        if from >= to {
            return Err(format!(
                "{to} h from {from} h: a horizon is carried from a shorter one"
            ));
        }
        if let Some(h) = [to, from].into_iter().find(|h| !horizons.contains(h)) {
            return Err(format!("{to} h from {from} h: the model has no {h} h horizon"));
        }
        if let Some(h) = [to, from].into_iter().find(|h| !har.contains_key(h)) {
            return Err(format!(
                "{to} h from {from} h: the artifact has no HAR fit at {h} h"
            ));
        }
        if term_structure.contains_key(&from) {
            return Err(format!(
                "{to} h from {from} h, itself carried: carry from a horizon the network forecasts"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HORIZONS: [usize; 3] = [4, 24, 168];

    fn prediction() -> Prediction {
        Prediction {
            variance: vec![1.0, 2.0, 10.0],
            quantiles: vec![vec![0.5, 2.0]; 3],
            shortage_probability: vec![0.1; 3],
        }
    }

    fn week_from_day() -> BTreeMap<usize, usize> {
        BTreeMap::from([(168, 24)])
    }

    fn corrections() -> Recalibration {
        Recalibration {
            variance_scale: BTreeMap::from([(4, 0.5), (24, 1.25), (168, 0.8)]),
            quantile_scale: BTreeMap::from([(168, vec![0.9, 1.5])]),
            ..Recalibration::default()
        }
    }

    fn apply(r: &Recalibration, p: &mut Prediction) {
        for (j, &h) in HORIZONS.iter().enumerate() {
            r.apply(h, &mut p.variance[j], &mut p.quantiles[j]);
        }
    }

    #[test]
    fn the_week_is_hars_week_moved_by_the_networks_day_against_hars() {
        let mut p = prediction();
        // HAR: 4 at a day, 24 at a week; the network says 2 at a day: half HAR's.
        carry(&week_from_day(), &HORIZONS, None, &[1.0, 4.0, 24.0], &mut p);
        assert_eq!(p.variance, [1.0, 2.0, 12.0]);
        // The week's quantiles move with its variance (10 -> 12); the others stay.
        assert_eq!(p.quantiles[2], [0.6, 2.4]);
        assert_eq!(p.quantiles[..2], [vec![0.5, 2.0], vec![0.5, 2.0]]);
        assert_eq!(p.shortage_probability, [0.1; 3]);
    }

    #[test]
    fn carrying_then_correcting_is_correcting_then_carrying() {
        let (har, r) = ([1.0, 4.0, 24.0], corrections());
        let mut raw_first = prediction();
        carry(&week_from_day(), &HORIZONS, None, &har, &mut raw_first);
        apply(&r, &mut raw_first);
        let mut corrected_first = prediction();
        apply(&r, &mut corrected_first);
        carry(&week_from_day(), &HORIZONS, Some(&r), &har, &mut corrected_first);
        for (a, b) in raw_first
            .variance
            .iter()
            .chain(raw_first.quantiles.iter().flatten())
            .zip(
                corrected_first
                    .variance
                    .iter()
                    .chain(corrected_first.quantiles.iter().flatten()),
            )
        {
            assert!(
                (a / b - 1.0).abs() < 1e-12,
                "{raw_first:?} vs {corrected_first:?}"
            );
        }
        // Carried at the corrections' ratio: 0.8 / 1.25 * 24 * (2 * 1.25) / 4.
        assert!((corrected_first.variance[2] - 0.8 * 12.0).abs() < 1e-12);
    }

    #[test]
    fn without_har_or_a_forecast_the_network_keeps_its_own() {
        for har in [
            vec![1.0, f64::NAN, 24.0],
            vec![1.0, 4.0, 0.0],
            vec![1.0, 4.0],
            Vec::new(),
        ] {
            let mut p = prediction();
            carry(&week_from_day(), &HORIZONS, None, &har, &mut p);
            assert_eq!(p, prediction(), "HAR {har:?}");
        }
        let mut p = prediction();
        p.variance[1] = f64::NAN;
        carry(&week_from_day(), &HORIZONS, None, &[1.0, 4.0, 24.0], &mut p);
        assert_eq!(p.variance[2], 10.0);
        // Nothing to carry: every horizon the network's own.
        let mut p = prediction();
        carry(&BTreeMap::new(), &HORIZONS, None, &[1.0, 4.0, 24.0], &mut p);
        assert_eq!(p, prediction());
    }

    #[test]
    fn a_term_structure_is_refused_unless_it_can_be_carried() {
        let har: BTreeMap<usize, ()> = HORIZONS.iter().map(|&h| (h, ())).collect();
        let check = |pairs: &[(usize, usize)], har: &BTreeMap<usize, ()>| {
            check_term_structure(&pairs.iter().copied().collect(), &HORIZONS, har)
        };
        assert_eq!(check(&[(168, 24)], &har), Ok(()));
        assert_eq!(check(&[], &har), Ok(()));
        for (pairs, says) in [
            (vec![(24, 168)], "shorter"),
            (vec![(24, 24)], "shorter"),
            (vec![(168, 12)], "no 12 h horizon"),
            (vec![(336, 24)], "no 336 h horizon"),
            (vec![(168, 24), (24, 4)], "itself carried"),
        ] {
            let e = check(&pairs, &har).unwrap_err();
            assert!(e.contains(says), "{pairs:?}: {e}");
        }
        let no_day: BTreeMap<usize, ()> = [(4, ()), (168, ())].into();
        assert!(
            check(&[(168, 24)], &no_day)
                .unwrap_err()
                .contains("no HAR fit at 24 h")
        );
    }
}
