//! The log-variance head trained on the squared log error (`log_mse_variance`): another network
//! than QLIKE's from the same start, early-stopped on the holdout's QLIKE after its own variance
//! scale (finite, never negative), and recorded in the artifact's config; with the lognormal mean
//! (`lognormal_mean`) another network again, refused without the squared log error.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use volcast_model::device::{DeviceChoice, select};
use volcast_training::trainer::train;

mod common;
use common::{generated_panel, outputs_on_a_fixed_input, run_options, small_config, trained_artifact};

#[test]
fn the_squared_log_error_trains_another_network_scored_at_its_best_scale() {
    let (tmp, assets, fit_end_hour) = generated_panel();
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let qlike = small_config().with_refit_through_holdout(Some(false));
    let log_mse = qlike.clone().with_log_mse_variance(Some(true));
    let run_with = |config, name: &str| {
        train(
            &assets,
            config,
            fit_end_hour,
            &device,
            &run_options(&tmp.path().join(name), false, None),
        )
        .unwrap()
    };
    let a = run_with(&qlike, "qlike");
    let b = run_with(&log_mse, "log-mse");
    assert_ne!(
        outputs_on_a_fixed_input(&a.model, qlike.window, &device),
        outputs_on_a_fixed_input(&b.model, log_mse.window, &device)
    );
    // Scored at its own best scale, each epoch's holdout QLIKE is finite and at least 0 (the
    // scale-free score `ln mean(RV/F) - mean ln(RV/F)` is >= 0 by Jensen), and at most the
    // QLIKE run's would be at scale 1 plus that run's own level error: here simply below 1.
    assert_eq!(b.state.history.len(), log_mse.max_epochs);
    for scores in &b.state.history {
        for s in scores {
            assert!(s.is_finite() && *s >= 0.0 && *s < 1.0, "{scores:?}");
        }
    }

    // The lognormal mean: the head is trained on the same loss but its output is served plus
    // the spread's half variance, which the loss takes off again; so another network.
    let mut lognormal = log_mse.clone();
    lognormal.model = lognormal.model.with_lognormal_mean(Some(true));
    let c = run_with(&lognormal, "lognormal");
    let (out_b, out_c) = (
        outputs_on_a_fixed_input(&b.model, log_mse.window, &device),
        outputs_on_a_fixed_input(&c.model, lognormal.window, &device),
    );
    assert_ne!(out_b, out_c);
    for scores in &c.state.history {
        assert!(scores.iter().all(|s| s.is_finite() && *s >= 0.0), "{scores:?}");
    }
    // It needs the squared log error.
    let mut refused = qlike.clone();
    refused.model = refused.model.with_lognormal_mean(Some(true));
    let err = train(
        &assets,
        &refused,
        fit_end_hour,
        &device,
        &run_options(&tmp.path().join("refused"), false, None),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("lognormal_mean needs log_mse_variance"),
        "{err}"
    );
}

#[test]
fn an_artifact_trained_on_the_squared_log_error_says_so() {
    let (_tmp, loaded) = trained_artifact(|p| {
        p.config = p
            .config
            .clone()
            .with_max_epochs(1)
            .with_log_mse_variance(Some(true));
        p.members = 1;
    });
    assert!(loaded.config.has_log_mse_variance());
    // Calibrated like any artifact: its variance scale per horizon is finite and positive.
    let recalibration = loaded.metadata.recalibration.as_ref().unwrap();
    for (h, s) in &recalibration.variance_scale {
        assert!(s.is_finite() && *s > 0.0, "{h}: {s}");
    }
}
