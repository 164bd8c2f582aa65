//! What the model tests share: generated candles, a small config and a pipeline over them.

#![allow(dead_code, reason = "each test file uses some of these")]

pub mod cli;

use std::path::Path;

use volcast_core::synth::{SynthConfig, generate};
use volcast_core::time::{Bound, HOUR_MS, parse_time};
use volcast_model::config::TrainingConfig;
use volcast_model::device::DeviceChoice;
use volcast_training::data::write_csv;
use volcast_training::pipeline::Pipeline;

pub const START_MS: i64 = 1_577_836_800_000; // 2020-01-01

pub fn generated(dir: &Path, days: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 1..=3 {
        let candles = generate(&SynthConfig::panel_asset(i, 7, 24 * days, START_MS));
        write_csv(&dir.join(format!("SYNTH{i:02}.csv")), &candles).unwrap();
    }
}

/// The default run before networks apart ([`TrainingConfig::plain_run`]), small: one group of
/// networks, so each test trains once; `networks_apart.rs` and the CLI and server end-to-end
/// tests train the default's two groups.
pub fn small_config() -> TrainingConfig {
    let mut c = TrainingConfig::plain_run()
        .with_window(32)
        .with_batch_size(64)
        .with_max_epochs(2)
        .with_holdout_days(15)
        .with_stride_hours(6);
    c.model = c.model.with_channels(8).with_layers(3).with_hidden(16);
    c
}

pub fn pipeline(data: &Path, out: &Path, device: DeviceChoice) -> Pipeline {
    Pipeline {
        dirs: vec![data.to_owned()],
        fit_until_ms: Some(parse_time("2020-04-15", Bound::End).unwrap() / HOUR_MS * HOUR_MS),
        device,
        config: small_config(),
        out: out.to_owned(),
        set_default: true,
        checkpoint_dir: None,
        resume: false,
        progress: false,
        max_steps: None,
        threads: None,
        members: 1,
    }
}

/// An artifact trained by the pipeline on 120 days of generated candles (CPU), its pipeline
/// first set by `adjust`, and loaded; with the temporary directory that holds it.
pub fn trained_artifact(
    adjust: impl FnOnce(&mut Pipeline),
) -> (tempfile::TempDir, volcast_model::inference::LoadedModel) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generated(&data, 120);
    let device = volcast_model::device::select(DeviceChoice::Cpu).unwrap().device;
    let mut p = pipeline(&data, &tmp.path().join("out"), DeviceChoice::Cpu);
    adjust(&mut p);
    let loaded = volcast_model::inference::LoadedModel::load(
        &volcast_training::pipeline::run(&p).unwrap().dir,
        &device,
    )
    .unwrap();
    (tmp, loaded)
}

/// 150 days of generated candles as a panel, in a temporary directory (kept alive by the
/// answer), and the fit end 2020-04-15 as a close hour.
pub fn generated_panel() -> (tempfile::TempDir, Vec<volcast_core::grid::Asset>, i64) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generated(&data, 150);
    let loaded = volcast_training::data::load_dirs(&[data]).unwrap();
    let assets = volcast_core::panel::to_panel(&loaded);
    let fit_until = parse_time("2020-04-15", Bound::End).unwrap() / HOUR_MS * HOUR_MS;
    (tmp, assets, volcast_core::time::close_hour_of_open_ms(fit_until))
}

/// A model's outputs (log variance, log quantiles, shortage logits) on one fixed input.
pub fn outputs_on_a_fixed_input(
    model: &volcast_model::network::VolModel,
    window: usize,
    device: &burn::prelude::Device,
) -> Vec<f32> {
    use burn::prelude::{Tensor, TensorData};
    use volcast_core::features::{N_CHANNELS, N_STATIC};
    let sequence: Vec<f32> = (0..window * N_CHANNELS)
        .map(|i| (i % 7) as f32 * 0.1 - 0.3)
        .collect();
    let statics: Vec<f32> = (0..N_STATIC).map(|i| (i % 3) as f32 * 0.2 - 0.2).collect();
    let out = model.forward(
        Tensor::<3>::from_data(TensorData::new(sequence, [1, window, N_CHANNELS]), device),
        Tensor::<2>::from_data(TensorData::new(statics, [1, N_STATIC]), device),
    );
    let mut v = out.log_variance.into_data().try_to_vec::<f32>().unwrap();
    v.extend(out.log_quantiles.into_data().try_to_vec::<f32>().unwrap());
    v.extend(out.shortage_logit.into_data().try_to_vec::<f32>().unwrap());
    v
}

/// Asserts two runs' holdout histories (per epoch, per horizon) have as many epochs and agree
/// within `relative` of each score.
pub fn assert_same_history(got: &[[f64; 3]], want: &[[f64; 3]], relative: f64) {
    assert_eq!(got.len(), want.len(), "epochs");
    for (a, b) in got.iter().zip(want) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= relative * y.abs(), "{x} against {y}");
        }
    }
}

/// Options of a test's training run: checkpoints in `dir`, two threads, no progress bar.
pub fn run_options(
    dir: &Path,
    resume: bool,
    max_steps: Option<usize>,
) -> volcast_training::trainer::RunOptions {
    volcast_training::trainer::RunOptions {
        checkpoint_dir: dir.to_owned(),
        resume,
        progress: false,
        max_steps,
        threads: 2,
        inputs: String::new(),
    }
}

/// `n` rows of standard normal model inputs (sequence of `window` hours, statics).
pub fn random_inputs(
    n: usize,
    window: usize,
    device: &burn::prelude::Device,
) -> (burn::prelude::Tensor<3>, burn::prelude::Tensor<2>) {
    use burn::prelude::Tensor;
    use burn::tensor::Distribution;
    use volcast_core::features::{N_CHANNELS, N_STATIC};
    (
        Tensor::<3>::random([n, window, N_CHANNELS], Distribution::Normal(0.0, 1.0), device),
        Tensor::<2>::random([n, N_STATIC], Distribution::Normal(0.0, 1.0), device),
    )
}
