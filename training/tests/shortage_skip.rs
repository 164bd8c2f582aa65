//! The shortage head started from SPEC's baseline (`shortage_skip_from_baseline`): the served
//! networks' shortage skip is the baseline's logistic map on each horizon's own log shortage
//! score, kept there through training and the refit, and recorded in the artifact's config.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use volcast_core::features::{N_STATIC, SHORTAGE_SCORE_FEATURES};
use volcast_core::forecast::HORIZONS;

mod common;
use common::trained_artifact;

/// The skip's `[n_static, horizons]` weights of every served network.
fn skip_weights(loaded: &volcast_model::inference::LoadedModel) -> Vec<Vec<f32>> {
    loaded
        .model
        .members()
        .map(|m| {
            m.shortage_skip
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        })
        .collect()
}

/// The skip's per-horizon intercepts of every served network.
fn skip_biases(loaded: &volcast_model::inference::LoadedModel) -> Vec<Vec<f32>> {
    loaded
        .model
        .members()
        .map(|m| {
            m.shortage_skip
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn the_shortage_skip_starts_at_the_baseline_and_stays_there() {
    let (_tmp, loaded) = trained_artifact(|p| {
        p.config = p
            .config
            .clone()
            .with_max_epochs(2)
            .with_shortage_skip_from_baseline(Some(true));
        p.members = 2;
    });
    assert!(loaded.config.has_shortage_skip_from_baseline());
    assert!(
        loaded.config.refits_through_holdout(),
        "served: the refit's networks"
    );
    let h = HORIZONS.len();
    let skips = skip_weights(&loaded);
    assert_eq!(skips.len(), 2);
    for w in &skips {
        assert_eq!(w.len(), N_STATIC * h);
        for (i, v) in w.iter().enumerate() {
            let (feature, j) = (i / h, i % h);
            if feature == SHORTAGE_SCORE_FEATURES[j] {
                // A higher score than usual means a shortage is more likely.
                assert!(*v > 0.0, "horizon {j}: slope {v}");
            } else {
                assert_eq!(
                    *v, 0.0,
                    "feature {feature}, horizon {j}: trained away from the start"
                );
            }
        }
    }
    // The same start for every member, untouched by their different training: the slopes and
    // the intercepts (the baseline's logistic map, base rates below one half: negative).
    assert_eq!(skips[0], skips[1]);
    let biases = skip_biases(&loaded);
    assert_eq!(biases[0], biases[1]);
    assert_eq!(biases[0].len(), h);
    assert!(biases[0].iter().all(|b| b.is_finite() && *b < 0.0), "{biases:?}");

    // Without the setting: a trainable skip from a random start.
    let (_tmp, plain) = trained_artifact(|p| {
        p.config = p.config.clone().with_max_epochs(1);
        p.members = 1;
    });
    assert!(!plain.config.has_shortage_skip_from_baseline());
    assert!(skip_weights(&plain)[0].iter().filter(|v| **v != 0.0).count() > h);
}
