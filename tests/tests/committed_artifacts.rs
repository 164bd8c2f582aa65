//! The artifacts committed under `model-artifacts/` still load into today's code and forecast.

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
