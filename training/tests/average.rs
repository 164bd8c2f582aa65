//! Weights averaged over the last steps (`weight_average_half_life_epochs`): the averaged network
//! is what the holdout scores, what early stopping keeps and, after the refit, what is served;
//! training continues from the raw weights, and a run cut at an epoch's end and resumed carries
//! the average on as if it had never stopped.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::path::Path;

use burn::module::Module;
use volcast_model::config::TrainingConfig;
use volcast_model::device::{DeviceChoice, select};
use volcast_model::network::VolModel;
use volcast_training::trainer::train;

mod common;
use common::{assert_same_history, generated_panel, outputs_on_a_fixed_input, run_options, small_config};

fn load(config: &TrainingConfig, path: &Path, device: &burn::prelude::Device) -> VolModel {
    config.model.init(device).try_load_file(path).unwrap()
}

#[test]
fn the_averaged_weights_are_scored_kept_and_served_and_survive_a_resume() {
    let (tmp, assets, fit_end_hour) = generated_panel();
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let raw_config = small_config()
        .with_max_epochs(2)
        .with_patience(2)
        .with_refit_through_holdout(Some(false));
    let config = raw_config
        .clone()
        .with_weight_average_half_life_epochs(Some(0.25));
    let window = config.window;
    let run = |config: &TrainingConfig, dir: &Path, resume: bool, steps: Option<usize>| {
        train(
            &assets,
            config,
            fit_end_hour,
            &device,
            &run_options(dir, resume, steps),
        )
    };

    let raw = run(&raw_config, &tmp.path().join("raw"), false, None).unwrap();
    let dir = tmp.path().join("averaged");
    let averaged = run(&config, &dir, false, None).unwrap();

    // The same steps were taken, but the holdout scored other weights: the averaged ones.
    assert_eq!(averaged.train_rows, raw.train_rows);
    assert_ne!(averaged.state.history, raw.state.history);
    let current = dir.join(std::fs::read_to_string(dir.join("current")).unwrap().trim());
    let last = load(&config, &current.join("last.bpk"), &device);
    let average = load(&config, &current.join("average.bpk"), &device);
    // Training continued from the raw weights, which are the raw run's.
    let raw_current = tmp.path().join("raw").join(
        std::fs::read_to_string(tmp.path().join("raw/current"))
            .unwrap()
            .trim(),
    );
    assert_eq!(
        outputs_on_a_fixed_input(&last, window, &device),
        outputs_on_a_fixed_input(
            &load(&raw_config, &raw_current.join("last.bpk"), &device),
            window,
            &device
        )
    );
    let moved = outputs_on_a_fixed_input(&average, window, &device)
        .iter()
        .zip(outputs_on_a_fixed_input(&last, window, &device))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-5, "the average moved the outputs by {moved} only");
    // What is served is the best epoch's average.
    let served = outputs_on_a_fixed_input(&averaged.model, window, &device);
    assert_eq!(
        served,
        outputs_on_a_fixed_input(
            &load(&config, &current.join("best.bpk"), &device),
            window,
            &device
        )
    );
    if averaged.state.best_epoch == 1 {
        assert_eq!(served, outputs_on_a_fixed_input(&average, window, &device));
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(current.join("state.json")).unwrap()).unwrap();
    assert!(state["average_weight"].as_f64().unwrap() > 0.9, "{state}");

    // Cut after the first epoch's last step, then resumed: the same scores and network as the
    // run that never stopped.
    let steps = averaged.train_rows / config.batch_size;
    let cut = tmp.path().join("cut");
    let first = run(&config, &cut, false, Some(steps)).unwrap();
    assert_eq!(first.state.history.len(), 1);
    let resumed = run(&config, &cut, true, None).unwrap();
    assert_same_history(&resumed.state.history, &averaged.state.history, 1e-6);
    let resumed_out = outputs_on_a_fixed_input(&resumed.model, window, &device);
    let gap = resumed_out
        .iter()
        .zip(&served)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(gap < 1e-4, "the resumed run serves outputs {gap} away");

    // Trained until the fit end, the refit's last average is served.
    let refit_config = config.clone().with_refit_through_holdout(Some(true));
    let refit_dir = tmp.path().join("refit");
    let refit = run(&refit_config, &refit_dir, false, None).unwrap();
    let refit_current = refit_dir.join("refit").join(
        std::fs::read_to_string(refit_dir.join("refit/current"))
            .unwrap()
            .trim(),
    );
    assert_eq!(
        outputs_on_a_fixed_input(&refit.model, window, &device),
        outputs_on_a_fixed_input(
            &load(&config, &refit_current.join("average.bpk"), &device),
            window,
            &device
        )
    );
}

#[test]
fn a_half_life_that_is_not_a_positive_number_is_refused() {
    let (tmp, assets, fit_end_hour) = generated_panel();
    let device = select(DeviceChoice::Cpu).unwrap().device;
    for bad in [0.0, -1.0, f64::NAN] {
        let config = small_config().with_weight_average_half_life_epochs(Some(bad));
        let options = run_options(tmp.path(), false, None);
        let err = train(&assets, &config, fit_end_hour, &device, &options).unwrap_err();
        assert!(
            err.to_string().contains("weight_average_half_life_epochs"),
            "{err}"
        );
    }
}
