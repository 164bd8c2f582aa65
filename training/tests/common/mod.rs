//! What the model tests share: generated candles, a small config and a pipeline over them.

#![allow(dead_code, reason = "each test file uses some of these")]

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

pub fn small_config() -> TrainingConfig {
    let mut c = TrainingConfig::default_run()
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
