//! Networks trained apart for some horizons (`TrainingConfig::networks_apart`): one artifact whose
//! apart horizons are served by the networks a run with the apart skip alone trains, and the
//! others by the networks a run with the main config alone trains; a resumed run rebuilds it
//! from the checkpoints of both groups without training again.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use volcast_model::config::{NetworksApart, TrainingConfig};
use volcast_model::device::{DeviceChoice, select};
use volcast_model::inference::LoadedModel;
use volcast_model::network::VolModel;
use volcast_training::pipeline::{Pipeline, run};

mod common;
use common::{generated, outputs_on_a_fixed_input, pipeline, small_config};

const RANGE_SKIP: [usize; 7] = [0, 1, 2, 3, 4, 5, 6];
const HAR_SKIP: [usize; 3] = [1, 2, 3];

fn with_range_skip(c: TrainingConfig) -> TrainingConfig {
    c.with_max_epochs(2).with_skip_features(RANGE_SKIP.to_vec())
}

fn trained(p: &Pipeline) -> LoadedModel {
    let device = select(DeviceChoice::Cpu).unwrap().device;
    LoadedModel::load(&run(p).unwrap().dir, &device).unwrap()
}

fn outputs(networks: &[&VolModel], window: usize) -> Vec<Vec<f32>> {
    let device = select(DeviceChoice::Cpu).unwrap().device;
    networks
        .iter()
        .map(|n| outputs_on_a_fixed_input(n, window, &device))
        .collect()
}

#[test]
fn each_group_serves_its_horizons_with_the_networks_its_own_run_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generated(&data, 120);
    let run_of = |name: &str, config: TrainingConfig| {
        let mut p = pipeline(&data, &tmp.path().join(name), DeviceChoice::Cpu);
        p.config = config;
        p.members = 2;
        p.checkpoint_dir = Some(tmp.path().join(name).join("ckpt"));
        p
    };
    let apart_config = with_range_skip(small_config()).with_networks_apart(Some(NetworksApart {
        horizons: vec![168],
        skip_features: HAR_SKIP.to_vec(),
    }));
    let both = run_of("both", apart_config);
    let combined = trained(&both);
    let main = trained(&run_of("main", with_range_skip(small_config())));
    let week = trained(&run_of(
        "week",
        small_config()
            .with_max_epochs(2)
            .with_skip_features(HAR_SKIP.to_vec()),
    ));

    // Four networks, two members: the main group's first, then the apart group's.
    assert_eq!(combined.metadata.ensemble, Some(4));
    assert_eq!(combined.metadata.members(), 2);
    let half = 0.5;
    assert_eq!(
        combined.metadata.ensemble_horizon_weights,
        Some(vec![
            vec![half, half, 0.0],
            vec![half, half, 0.0],
            vec![0.0, 0.0, half],
            vec![0.0, 0.0, half],
        ])
    );
    let names: Vec<&String> = combined.metadata.holdout[&168].qlike.keys().collect();
    assert_eq!(
        names,
        ["apart-member-0", "apart-member-1", "member-0", "member-1"]
    );
    // The apart group's holdout figures are the week run's, the main group's the main run's.
    for (name, plain) in [("apart-member-1", "member-1"), ("member-0", "member-0")] {
        let from = if name.starts_with("apart") { &week } else { &main };
        assert_eq!(
            combined.metadata.holdout[&24].qlike[name], from.metadata.holdout[&24].qlike[plain],
            "{name}"
        );
    }

    // The networks are those of the two plain runs, same seeds, in that order.
    let window = combined.config.window;
    let networks: Vec<&VolModel> = combined.model.members().collect();
    let expected: Vec<&VolModel> = main.model.members().chain(week.model.members()).collect();
    assert_eq!(outputs(&networks, window), outputs(&expected, window));
    assert_ne!(
        outputs(&networks[..1], window),
        outputs(&networks[2..3], window),
        "the groups' skips differ, so do their networks"
    );

    // What is served: 4 h and 24 h the main run's, the week the week run's.
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let (sequence, statics) = common::random_inputs(3, window, &device);
    let log_variance = |m: &LoadedModel| -> Vec<f32> {
        m.model
            .forward(sequence.clone(), statics.clone())
            .log_variance
            .into_data()
            .try_to_vec()
            .unwrap()
    };
    let (got, short, long) = (log_variance(&combined), log_variance(&main), log_variance(&week));
    for (i, g) in got.iter().enumerate() {
        let want = if i % 3 == 2 { long[i] } else { short[i] };
        assert!(
            (g - want).abs() < 1e-5,
            "row {} horizon {}: {g} vs {want}",
            i / 3,
            i % 3
        );
    }

    // Resumed from both groups' checkpoints, the run trains nothing and makes the same networks.
    let again = trained(&Pipeline {
        resume: true,
        out: tmp.path().join("again"),
        ..both
    });
    assert_eq!(again.metadata.weights_sha256, combined.metadata.weights_sha256);
    assert_eq!(again.metadata.holdout, combined.metadata.holdout);
}
