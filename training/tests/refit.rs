//! Training until the fit end (`refit_through_holdout`): the early-stopped run, then the same
//! start trained again on every origin up to the fit end for the epochs it chose; resumable, and
//! a refit checkpoint of another epoch count trained again rather than resumed.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::path::Path;

use volcast_model::device::{DeviceChoice, select};
use volcast_training::trainer::{RunOptions, train};

mod common;
use common::{assert_same_history, generated_panel, outputs_on_a_fixed_input, small_config};

/// Training until the fit end: the early-stopped run as before (its holdout scores kept, out of
/// sample), then a second run from the same start for the epochs it chose on every origin up to
/// the fit end, whose last network is served; a rerun with `resume` trains nothing again.
#[test]
fn training_until_the_fit_end_retrains_the_chosen_epochs_on_the_holdout_too() {
    let (tmp, assets, fit_end_hour) = generated_panel();
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let budget = |dir: &Path, resume: bool, max_steps: Option<usize>| RunOptions {
        checkpoint_dir: dir.to_owned(),
        resume,
        progress: false,
        max_steps,
        threads: 2,
        inputs: String::new(),
    };
    let options = |dir: &Path, resume: bool| budget(dir, resume, None);
    let plain_config = small_config()
        .with_max_epochs(3)
        .with_refit_through_holdout(Some(false));
    let config = plain_config.clone().with_refit_through_holdout(Some(true));
    let plain = train(
        &assets,
        &plain_config,
        fit_end_hour,
        &device,
        &options(&tmp.path().join("plain"), false),
    )
    .unwrap();
    let dir = tmp.path().join("refit");
    let refit = train(&assets, &config, fit_end_hour, &device, &options(&dir, false)).unwrap();

    // The first run is the plain run: same epochs, same holdout scores (to parallel rounding).
    assert_eq!(refit.state.best_epoch, plain.state.best_epoch);
    assert_same_history(&refit.state.history, &plain.state.history, 1e-9);
    // The second ran the chosen number of epochs, on more rows: the holdout's 15 days.
    let epochs = plain.state.best_epoch + 1;
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.join("refit")
                .join(format!("epoch-{:04}/state.json", epochs - 1)),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(state["history"].as_array().unwrap().len(), epochs);
    assert!(
        refit.state.seconds > state["seconds"].as_f64().unwrap(),
        "the training time counts both runs"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("refit/current")).unwrap().trim(),
        format!("epoch-{:04}", epochs - 1)
    );
    let assets_n = assets.len();
    assert!(
        refit.train_rows >= plain.train_rows + assets_n * 14 * 4,
        "{} rows against {}",
        refit.train_rows,
        plain.train_rows
    );
    // The served network is the second run's last, not the early-stopped one.
    let last: volcast_model::network::VolModel = {
        use burn::module::Module;
        config
            .model
            .init(&device)
            .try_load_file(dir.join(format!("refit/epoch-{:04}/last.bpk", epochs - 1)))
            .unwrap()
    };
    let served = outputs_on_a_fixed_input(&refit.model, config.window, &device);
    let early = outputs_on_a_fixed_input(&plain.model, config.window, &device);
    assert_eq!(served, outputs_on_a_fixed_input(&last, config.window, &device));
    let moved = served
        .iter()
        .zip(&early)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the refit moved the outputs by {moved} only");

    // A rerun with resume finds both runs done and serves the same network.
    let again = train(&assets, &config, fit_end_hour, &device, &options(&dir, true)).unwrap();
    assert_eq!(again.state.history.len(), refit.state.history.len());
    assert_eq!(
        outputs_on_a_fixed_input(&again.model, config.window, &device),
        served
    );
}
