//! The artifacts committed under `model-artifacts/` still load into today's code and forecast.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use volcast_core::forecast::{Forecaster, HORIZONS};
use volcast_model::artifact;
use volcast_model::device::{DeviceChoice, select};
use volcast_model::inference::LoadedModel;
use volcast_tests::repo_root;
use volcast_training::evaluate::{EvalConfig, evaluate};

#[test]
fn committed_artifacts_load_and_forecast() {
    let root = repo_root().join("model-artifacts");
    let default = artifact::resolve(&root).expect("model-artifacts/default must name a committed artifact");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(artifact::METADATA).is_file())
        .collect();
    dirs.sort();
    assert!(dirs.contains(&default));
    assert!(
        dirs.len() >= 2,
        "the validation and the default artifact are committed"
    );

    let loaded = volcast_training::data::load_dirs(&[repo_root().join("data/sample")]).unwrap();
    let assets = volcast_core::panel::to_panel(&loaded);
    let device = select(DeviceChoice::Cpu).unwrap().device;
    for dir in dirs {
        let model = LoadedModel::load(&dir, &device).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(model.metadata.horizons, HORIZONS.to_vec());
        // The shipped design: three networks for 4 h and 24 h and three trained apart for the
        // week, one model file (README, "Train").
        assert_eq!(
            (
                model.model.len(),
                model.metadata.ensemble,
                model.metadata.members()
            ),
            (6, Some(6), 3),
            "{}",
            dir.display()
        );
        let third = 1.0 / 3.0;
        let weights = model
            .model
            .horizon_weights()
            .expect("each horizon from its own networks");
        assert_eq!(
            weights[..3],
            vec![vec![third, third, 0.0]; 3][..],
            "{}",
            dir.display()
        );
        assert_eq!(
            weights[3..],
            vec![vec![0.0, 0.0, third]; 3][..],
            "{}",
            dir.display()
        );
        assert!(
            model.metadata.risk.is_some(),
            "{}: not calibrated (run `calibrate`)",
            dir.display()
        );
        // Forecast on the sample data; the baselines are fitted there, the model is not.
        let config = EvalConfig {
            fit_until_ms: 1_588_287_600_000, // 2020-04-30 23:00
            eval_from_ms: 1_588_291_200_000,
            eval_until_ms: 1_595_116_800_000,
            horizons: HORIZONS.to_vec(),
            alpha: 0.99,
            tau: 4,
            bonus: 0.05,
            fit_exponent: false,
            operated_days: None,
        };
        let report = evaluate(
            &assets,
            &config,
            Some((&model as &dyn Forecaster, model.metadata.id.clone())),
        )
        .unwrap();
        let policy = &report.risk.policies["model"];
        assert!(
            policy.n > 100 && (0.3..1.0).contains(&policy.mean_lt),
            "{policy:?}"
        );
        for h in HORIZONS {
            let q = report.horizons[&h].qlike["model"];
            assert!(
                q.is_finite() && q > 0.0 && q < 10.0,
                "{}: {h}h QLIKE {q}",
                dir.display()
            );
        }
    }
}

/// A copy of the committed default artifact in a fresh directory.
fn copy_of_default(tmp: &std::path::Path) -> std::path::PathBuf {
    let src = artifact::resolve(&repo_root().join("model-artifacts")).unwrap();
    let dst = tmp.join(src.file_name().unwrap());
    std::fs::create_dir_all(&dst).unwrap();
    for name in [artifact::WEIGHTS, artifact::CONFIG, artifact::METADATA] {
        std::fs::copy(src.join(name), dst.join(name)).unwrap();
    }
    dst
}

/// Rewrites the copy's metadata through `edit`.
fn edit_metadata(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(artifact::METADATA);
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut meta);
    std::fs::write(&path, serde_json::to_string_pretty(&meta).unwrap()).unwrap();
}

fn refused(dir: &std::path::Path) -> String {
    let device = select(DeviceChoice::Cpu).unwrap().device;
    match LoadedModel::load(dir, &device) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn damaged_artifacts_are_refused() {
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let tmp = tempfile::tempdir().unwrap();

    // An untouched copy loads: its files hash to its id.
    let intact = copy_of_default(&tmp.path().join("intact"));
    LoadedModel::load(&intact, &device).unwrap();

    // One flipped bit in the weights, of the right size: refused, not served under the same id.
    let flipped = copy_of_default(&tmp.path().join("flipped"));
    let weights = flipped.join(artifact::WEIGHTS);
    let mut bytes = std::fs::read(&weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&weights, bytes).unwrap();
    let e = refused(&flipped);
    assert!(e.contains("model.bpk hashes to"), "{e}");

    // Metadata edited after the fact: no horizons, a zeroed scaler, or a changed calibration.
    let empty = copy_of_default(&tmp.path().join("empty"));
    edit_metadata(&empty, |m| m["horizons"] = serde_json::json!([]));
    let e = refused(&empty);
    assert!(e.contains("horizons"), "{e}");
    let zeroed = copy_of_default(&tmp.path().join("zeroed"));
    edit_metadata(&zeroed, |m| {
        let n = m["scaler"]["static_std"].as_array().unwrap().len();
        m["scaler"]["static_std"] = serde_json::json!(vec![0.0; n]);
    });
    let e = refused(&zeroed);
    assert!(e.contains("scaler"), "{e}");
    let negative = copy_of_default(&tmp.path().join("negative"));
    edit_metadata(&negative, |m| {
        m["risk"]["model"]["windows"][3]["quantiles"][0][1] = serde_json::json!(-0.5);
    });
    let e = refused(&negative);
    assert!(e.contains("risk.model: window 8 h"), "{e}");
    // Edits that each look plausible: the fall quantiles of every window cut by a tenth (every
    // recommended LT higher), or the fit end moved a year earlier (`evaluate`'s guard against
    // scoring inside the fit would pass 2020). Only the id, which hashes the metadata, tells.
    let lowered = copy_of_default(&tmp.path().join("lowered"));
    edit_metadata(&lowered, |m| {
        for w in m["risk"]["model"]["windows"].as_array_mut().unwrap() {
            for q in w["quantiles"].as_array_mut().unwrap() {
                q[1] = serde_json::json!(q[1].as_f64().unwrap() * 0.9);
            }
        }
    });
    let earlier = copy_of_default(&tmp.path().join("earlier"));
    edit_metadata(&earlier, |m| {
        let until = m["fit_until"].as_str().unwrap().replacen("2021-", "2020-", 1);
        m["fit_until"] = serde_json::json!(until);
    });
    for edited in [lowered, earlier] {
        let e = refused(&edited);
        assert!(e.contains("metadata.json hashes to id"), "{e}");
    }
    // The out-of-sample scores are outside the id: a copy with other scores still loads (here
    // rewritten through a JSON value, its keys in another order).
    let rescored = copy_of_default(&tmp.path().join("rescored"));
    edit_metadata(&rescored, |m| m["validation"] = serde_json::json!({}));
    LoadedModel::load(&rescored, &device).unwrap();
    // An artifact a later build wrote, with a field this build does not know: its id is its
    // text's, so it still loads here (a rolled-back server keeps serving it).
    let later = copy_of_default(&tmp.path().join("later"));
    let path = later.join(artifact::METADATA);
    let text = std::fs::read_to_string(&path).unwrap();
    let old_id = artifact::read_metadata(&later).unwrap().id;
    let text = text.replacen(
        "\"schema_version\": 1,",
        "\"schema_version\": 1,\n  \"added_by_a_later_build\": [1, 2],",
        1,
    );
    let weights = std::fs::read(later.join(artifact::WEIGHTS)).unwrap();
    let config = std::fs::read_to_string(later.join(artifact::CONFIG)).unwrap();
    let new_id = artifact::content_id(&weights, &config, &artifact::hashed_text(&text).unwrap());
    assert_ne!(new_id, old_id);
    std::fs::write(&path, text.replacen(&old_id, &new_id, 1)).unwrap();
    assert_eq!(LoadedModel::load(&later, &device).unwrap().metadata.id, new_id);
    // An edited config, and metadata that vouches for nothing.
    let config = copy_of_default(&tmp.path().join("config"));
    let text = std::fs::read_to_string(config.join(artifact::CONFIG)).unwrap();
    std::fs::write(config.join(artifact::CONFIG), text.replacen("128", "64", 1)).unwrap();
    let e = refused(&config);
    assert!(e.contains("config.json hashes to"), "{e}");
    let unsealed = copy_of_default(&tmp.path().join("unsealed"));
    edit_metadata(&unsealed, |m| {
        m.as_object_mut().unwrap().remove("weights_sha256");
    });
    let e = refused(&unsealed);
    assert!(e.contains("records no SHA-256"), "{e}");

    // A truncated metadata file (a write killed half way) is refused too.
    let truncated = copy_of_default(&tmp.path().join("truncated"));
    std::fs::write(truncated.join(artifact::METADATA), "").unwrap();
    refused(&truncated);
}
