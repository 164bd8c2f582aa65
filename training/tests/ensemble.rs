//! An ensemble over seeds end to end: trained by the pipeline, written as one artifact, loaded
//! back as its members' mean, its first member the single network of the same run; a damaged
//! member count refused, never a panic.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use burn::prelude::*;
use volcast_core::forecast::HORIZONS;
use volcast_model::artifact;
use volcast_model::device::{DeviceChoice, select};
use volcast_model::inference::LoadedModel;
use volcast_training::pipeline::run;

mod common;
use common::{generated, pipeline, random_inputs};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec().unwrap()
}

#[test]
fn an_ensemble_artifact_serves_its_members_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generated(&data, 120);
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let trained = |members: usize, out: &str| {
        let mut p = pipeline(&data, &tmp.path().join(out), DeviceChoice::Cpu);
        p.max_steps = Some(12);
        p.members = members;
        LoadedModel::load(&run(&p).unwrap().dir, &device).unwrap()
    };
    let single = trained(1, "single");
    let pair = trained(2, "pair");

    assert_eq!(single.model.len(), 1);
    assert_eq!(
        single.metadata.ensemble, None,
        "a single network's metadata is as before"
    );
    assert_eq!(pair.model.len(), 2);
    assert_eq!(pair.metadata.ensemble, Some(2));
    for h in HORIZONS {
        let names: Vec<&String> = pair.metadata.holdout[&h].qlike.keys().collect();
        assert_eq!(names, ["member-0", "member-1"], "{h}h holdout figures per member");
        assert!(single.metadata.holdout[&h].qlike.contains_key("model"));
    }

    let window = pair.window();
    let (sequence, statics) = random_inputs(5, window, &device);
    let forward = |m: &volcast_model::network::VolModel| m.forward(sequence.clone(), statics.clone());

    // Member 0 is the single run's network (same seed, same rows: training is deterministic);
    // member 1 differs.
    let members: Vec<_> = pair.model.members().map(forward).collect();
    let alone = values(forward(single.model.first()).log_variance);
    assert_eq!(values(members[0].log_variance.clone()), alone);
    assert_ne!(values(members[1].log_variance.clone()), alone);

    // The ensemble answers with the members' mean log variance, log quantiles and logits.
    let out = pair.model.forward(sequence.clone(), statics.clone());
    let mean =
        |a: Vec<f32>, b: Vec<f32>| -> Vec<f32> { a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect() };
    let close = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
    };
    let pairs = [
        (
            values(out.log_variance),
            mean(
                values(members[0].log_variance.clone()),
                values(members[1].log_variance.clone()),
            ),
        ),
        (
            values(out.log_quantiles),
            mean(
                values(members[0].log_quantiles.clone()),
                values(members[1].log_quantiles.clone()),
            ),
        ),
        (
            values(out.shortage_logit),
            mean(
                values(members[0].shortage_logit.clone()),
                values(members[1].shortage_logit.clone()),
            ),
        ),
    ];
    for (got, want) in &pairs {
        assert!(close(got, want), "{got:?} vs {want:?}");
    }

    // A damaged member count is refused with a reason: too many (the weights hold two), one (a
    // single network has no count), none (the file is not one network).
    let meta_path = pair.dir.join(artifact::METADATA);
    let text = std::fs::read_to_string(&meta_path).unwrap();
    for (count, says) in [
        (serde_json::json!(3), "do not fit"),
        (serde_json::json!(1), "ensemble of 1"),
        (serde_json::json!(null), "do not fit"),
    ] {
        let mut meta: serde_json::Value = serde_json::from_str(&text).unwrap();
        meta["ensemble"] = count;
        std::fs::write(&meta_path, serde_json::to_string(&meta).unwrap()).unwrap();
        let err = LoadedModel::load(&pair.dir, &device).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
}
