//! Each horizon served by networks trained for its own epochs (`per_horizon_epochs`): the refit
//! runs the largest of the horizons' epoch counts and keeps the network after each; the
//! artifact's ensemble serves each horizon from its own, and says so in its metadata.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use burn::module::Module;
use volcast_model::device::{DeviceChoice, select};
use volcast_model::network::{Ensemble, VolModel};
use volcast_training::trainer::{per_horizon_epochs, train};

mod common;
use common::{
    generated_panel, outputs_on_a_fixed_input, random_inputs, run_options, small_config, trained_artifact,
};

#[test]
fn the_refit_keeps_the_network_after_each_horizons_own_epochs() {
    let (tmp, assets, fit_end_hour) = generated_panel();
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let config = small_config()
        .with_max_epochs(4)
        .with_patience(4)
        .with_per_horizon_epochs(Some(true));
    let dir = tmp.path().join("run");
    let trained = train(
        &assets,
        &config,
        fit_end_hour,
        &device,
        &run_options(&dir, false, None),
    )
    .unwrap();
    let per_horizon = per_horizon_epochs(&trained.state.history);
    let networks = trained.horizon_networks.as_ref().unwrap();
    let mut distinct = per_horizon.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "every horizon chose {distinct:?} epochs: nothing below is per horizon"
    );
    assert_eq!(networks.epochs, distinct);
    for (h, &n) in per_horizon.iter().enumerate() {
        assert_eq!(networks.epochs[networks.of_horizon[h]], n, "horizon {h}");
    }
    // The refit ran the largest count, and its last network is the one kept for it.
    let most = *distinct.last().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("refit/current")).unwrap().trim(),
        format!("epoch-{:04}", most - 1)
    );
    let last = outputs_on_a_fixed_input(&trained.model, config.window, &device);
    assert_eq!(
        outputs_on_a_fixed_input(networks.networks.last().unwrap(), config.window, &device),
        last
    );
    // Each kept network is the refit's after its epochs: an earlier one differs from the last.
    let current = dir.join("refit").join(format!("epoch-{:04}", most - 1));
    for (k, &n) in networks.epochs.iter().enumerate() {
        let file: VolModel = config
            .model
            .init(&device)
            .try_load_file(current.join(format!("snapshot-{:04}.bpk", n - 1)))
            .unwrap();
        let kept = outputs_on_a_fixed_input(&networks.networks[k], config.window, &device);
        assert_eq!(outputs_on_a_fixed_input(&file, config.window, &device), kept);
        if n < most {
            assert_ne!(kept, last, "the network after {n} epochs is not the last");
        }
    }

    // Without the refit there are no per-horizon networks to serve: refused.
    let err = train(
        &assets,
        &config.clone().with_refit_through_holdout(Some(false)),
        fit_end_hour,
        &device,
        &run_options(&tmp.path().join("no-refit"), false, None),
    )
    .unwrap_err();
    assert!(err.to_string().contains("per_horizon_epochs"), "{err}");
}

#[test]
fn an_artifact_serves_each_horizon_from_its_own_networks() {
    let (_tmp, loaded) = trained_artifact(|p| {
        p.config = p
            .config
            .clone()
            .with_max_epochs(3)
            .with_patience(3)
            .with_per_horizon_epochs(Some(true));
        p.members = 2;
    });
    let device = select(DeviceChoice::Cpu).unwrap().device;
    assert_eq!(loaded.metadata.members(), 2);
    let config = &loaded.config;
    assert_eq!(config.per_horizon_epochs, Some(true));
    let networks: Vec<&VolModel> = loaded.model.members().collect();
    // On this seeded data the members' horizons chose different epochs (were they all the same,
    // each member would be one network, as before, and the metadata would have no weights).
    match &loaded.metadata.ensemble_horizon_weights {
        None => panic!("expected networks per horizon, got {} networks", networks.len()),
        Some(weights) => {
            assert!(networks.len() > 2);
            Ensemble::check_horizon_weights(weights, networks.len(), 3).unwrap();
            assert_eq!(loaded.model.horizon_weights(), Some(&weights[..]));
            // The served log variance is each horizon's weighted mean of the networks'.
            let window = loaded.window();
            let (sequence, statics) = random_inputs(3, window, &device);
            let got: Vec<f32> = loaded
                .model
                .forward(sequence.clone(), statics.clone())
                .log_variance
                .into_data()
                .try_to_vec()
                .unwrap();
            let each: Vec<Vec<f32>> = networks
                .iter()
                .map(|m| {
                    m.forward(sequence.clone(), statics.clone())
                        .log_variance
                        .into_data()
                        .try_to_vec()
                        .unwrap()
                })
                .collect();
            for (i, g) in got.iter().enumerate() {
                let h = i % 3;
                let want: f32 = each.iter().zip(weights).map(|(e, w)| w[h] * e[i]).sum();
                assert!(
                    (g - want).abs() < 1e-4,
                    "row {} horizon {h}: {g} vs {want}",
                    i / 3
                );
            }
        }
    }
}
