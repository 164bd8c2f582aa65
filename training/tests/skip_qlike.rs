//! The log-variance skip fitted on QLIKE (`skip_qlike`): recorded in the artifact's config,
//! away from the least-squares start, and kept there (frozen) through training and the refit.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use volcast_core::features::{HAR_FEATURES, N_STATIC};
use volcast_core::forecast::HORIZONS;

mod common;
use common::trained_artifact;

/// The variance skip's `[n_static, horizons]` weights and its biases, of every served network.
fn variance_skips(loaded: &volcast_model::inference::LoadedModel) -> Vec<(Vec<f32>, Vec<f32>)> {
    loaded
        .model
        .members()
        .map(|m| {
            let w = m
                .variance_skip
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let b = m
                .variance_skip
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            (w, b)
        })
        .collect()
}

#[test]
fn the_qlike_skip_moves_from_the_least_squares_start_and_stays_where_it_was_fitted() {
    let (_tmp, fitted) = trained_artifact(|p| {
        p.config = p.config.clone().with_max_epochs(1).with_skip_qlike(Some(true));
        p.members = 2;
    });
    let (_tmp2, plain) = trained_artifact(|p| {
        p.config = p.config.clone().with_max_epochs(1);
        p.members = 2;
    });
    assert!(fitted.config.has_skip_qlike());
    assert!(!plain.config.has_skip_qlike());

    let (qlike, least_squares) = (variance_skips(&fitted), variance_skips(&plain));
    // Frozen: every member keeps the one start, whatever its seed did to the rest.
    assert_eq!(qlike[0], qlike[1]);
    assert_eq!(least_squares[0], least_squares[1]);

    let h = HORIZONS.len();
    let (wq, bq) = &qlike[0];
    let (wl, bl) = &least_squares[0];
    assert_eq!(wq.len(), N_STATIC * h);
    for (i, (q, l)) in wq.iter().zip(wl).enumerate() {
        if !HAR_FEATURES.contains(&(i / h)) {
            assert!(
                *q == 0.0 && *l == 0.0,
                "weight {i}: only the HAR regressors carry weight"
            );
        }
    }
    // Same rows, columns and ridge, another loss: the fit moves, every horizon.
    for j in 0..h {
        let moved = HAR_FEATURES
            .iter()
            .map(|&c| (wq[c * h + j] - wl[c * h + j]).abs())
            .fold((bq[j] - bl[j]).abs(), f32::max);
        assert!(
            moved > 1e-4,
            "horizon {j}: the QLIKE fit did not move from least squares"
        );
        assert!(bq[j].is_finite() && wq.iter().all(|v| v.is_finite()));
    }
}
