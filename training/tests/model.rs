//! The model end to end on generated data: train a few steps on the CPU and on wgpu, write an
//! artifact, load it back, forecast, and refuse a mismatched one.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::path::Path;

use volcast_core::forecast::{Forecaster, HORIZONS};
use volcast_core::time::{Bound, HOUR_MS, parse_time};
use volcast_model::artifact::{self, CONFIG};
use volcast_model::config::TrainingConfig;
use volcast_model::device::{DeviceChoice, select};
use volcast_model::inference::LoadedModel;
use volcast_training::evaluate::{EvalConfig, evaluate};
use volcast_training::pipeline::run;

mod common;
use common::{
    assert_same_history, generated, generated_panel, outputs_on_a_fixed_input, pipeline, small_config,
};

#[test]
fn tiny_training_on_cpu_round_trips_through_an_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generated(&data, 150);
    let out = tmp.path().join("artifacts");
    let outcome = run(&pipeline(&data, &out, DeviceChoice::Cpu)).unwrap();

    // The pointer names the artifact; the id is the directory name.
    let dir = artifact::resolve(&out).unwrap();
    assert_eq!(dir, outcome.dir);
    let model = LoadedModel::load(&out, &select(DeviceChoice::Cpu).unwrap().device).unwrap();
    assert_eq!(
        Some(model.metadata.id.as_str()),
        dir.file_name().and_then(|n| n.to_str())
    );
    assert_eq!(model.metadata.horizons, HORIZONS.to_vec());
    assert_eq!(model.metadata.data.len(), 3);
    assert!(model.metadata.data.iter().all(|f| f.sha256.len() == 64));
    assert_eq!(model.metadata.har.len(), 3, "baselines travel with the artifact");
    // Calibrated after training: output corrections and the risk engine's drawdown quantiles.
    let recalibration = model.metadata.recalibration.as_ref().unwrap();
    assert_eq!(recalibration.variance_scale.len(), 3);
    assert!(
        recalibration
            .variance_scale
            .values()
            .all(|c| c.is_finite() && *c > 0.0)
    );
    let risk = model.metadata.risk.as_ref().unwrap();
    assert_eq!(risk.model.windows.len(), volcast_core::drawdown::TAU_GRID.len());

    // Out-of-sample scores exist (data runs past the fit period) and are stored.
    let report = outcome.report.unwrap();
    for h in HORIZONS {
        let r = &report.horizons[&h];
        assert!(r.n_points > 0);
        let q = r.qlike["model"];
        assert!(q.is_finite() && q > 0.0, "{h}h model QLIKE {q}");
        assert_eq!(r.calibration["model"].len(), 4);
        assert!(r.shortage.n_points > 0, "{h}h: no shortage labels to score");
        assert!(
            r.shortage.roc_auc.contains_key("model"),
            "{h}h: no shortage ROC AUC for the model"
        );
        assert!(model.metadata.validation[&h].qlike.contains_key("har"));
    }

    let policy = &report.risk.policies["model"];
    assert!(policy.n > 0 && (0.0..1.0).contains(&policy.mean_lt), "{policy:?}");

    // A second load forecasts the same numbers.
    let again = LoadedModel::load(&dir, &select(DeviceChoice::Cpu).unwrap().device).unwrap();
    let loaded = volcast_training::data::load_dirs(std::slice::from_ref(&data)).unwrap();
    let assets = volcast_core::panel::to_panel(&loaded);
    let config = EvalConfig {
        fit_until_ms: parse_time("2020-04-15", Bound::End).unwrap() / HOUR_MS * HOUR_MS,
        eval_from_ms: parse_time("2020-04-16", Bound::Start).unwrap(),
        eval_until_ms: parse_time("2020-05-20", Bound::End).unwrap(),
        horizons: HORIZONS.to_vec(),
        alpha: 0.99,
        tau: 4,
        bonus: 0.05,
        fit_exponent: false,
        operated_days: None,
    };
    let a = evaluate(&assets, &config, Some((&model as &dyn Forecaster, "a".into()))).unwrap();
    let b = evaluate(&assets, &config, Some((&again as &dyn Forecaster, "b".into()))).unwrap();
    assert_eq!(a.horizons[&24].qlike["model"], b.horizons[&24].qlike["model"]);
    assert_eq!(artifact::artifact_hash(&dir).unwrap(), model.hash);

    // Calibrating again changes nothing, so the id stays (scores are not part of it).
    let before = std::fs::read(dir.join(artifact::METADATA)).unwrap();
    let again = volcast_training::calibrate::calibrate_artifact(&model, &assets, &out, false).unwrap();
    assert_eq!(again.dir, dir);
    assert!(
        !again.created,
        "nothing to change: the published artifact is not rewritten"
    );
    assert_eq!(std::fs::read(dir.join(artifact::METADATA)).unwrap(), before);
    assert_eq!(risk.model.exponent, 1.0, "g = 1 unless asked");
    // With a fitted exponent: g on the grid (another artifact unless it comes out at 1).
    let fitted = volcast_training::calibrate::calibrate_artifact(&model, &assets, &out, true)
        .unwrap()
        .dir;
    let fitted_risk = artifact::read_metadata(&fitted).unwrap().risk.unwrap();
    let g = fitted_risk.model.exponent;
    assert!(
        (0.25..=1.5).contains(&g) && (g * 20.0 - (g * 20.0).round()).abs() < 1e-9,
        "{g}"
    );
    if fitted != dir {
        std::fs::remove_dir_all(&fitted).unwrap();
    }
    // Calibrated elsewhere, the artifact does not carry the source's out-of-sample scores,
    // measured under the source's corrections.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy =
        volcast_training::calibrate::calibrate_artifact(&model, &assets, elsewhere.path(), false).unwrap();
    assert!(copy.created);
    assert!(!model.metadata.validation.is_empty());
    assert!(artifact::read_metadata(&copy.dir).unwrap().validation.is_empty());
    replay_sees_no_future(&model, &loaded);
    daily_recalibration(&model, &assets, &out);
    the_daily_chain_is_the_replay(&model, &assets, &out);
    shortage_stack_in_the_replay(&model, &assets);
    blend_in_hindsight_is_what_the_replay_serves(&model, &assets);
    a_carried_week_serves_alike(&model, &assets, &out);
}

/// With the week carried from the day (`term_structure` {168: 24}), the raw week is HAR's week
/// times the network's raw day over HAR's; the daily job measures its corrections on those, and
/// the artifact it writes serves, fixed, exactly what the replay serves that day (carrying and
/// correcting commute); 4 h and 24 h are served as without the carry.
fn a_carried_week_serves_alike(model: &LoadedModel, assets: &[volcast_core::grid::Asset], out: &Path) {
    use volcast_training::calibrate::refresh_recalibration;
    use volcast_training::rolling::{DailyRecalibrated, FixedModel, raw_predictions};
    let week = std::collections::BTreeMap::from([(168, 24)]);
    let carried = model.with_term_structure(&week).unwrap();
    assert!(
        model
            .with_term_structure(&std::collections::BTreeMap::from([(24, 168)]))
            .is_err()
    );
    let end = parse_time("2020-05-10", Bound::Start).unwrap() / HOUR_MS;
    let origins = origins_at(assets, end);
    let request = request_at(assets, &origins);
    let drawdown = request.drawdown;
    let own = raw_predictions(model, assets, &origins, drawdown).unwrap();
    let raw = raw_predictions(&carried, assets, &origins, drawdown).unwrap();
    let prepared = volcast_core::panel::prepare(assets, &HORIZONS);
    for (i, (a, b)) in own.iter().zip(&raw).enumerate() {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        let har = model
            .metadata
            .har_at(&prepared[origins[i].asset], origins[i].slot);
        let want = har[2] * a.variance[1] / har[1];
        assert!((b.variance[2] / want - 1.0).abs() < 1e-12, "origin {i}");
        assert_eq!(a.variance[..2], b.variance[..2]);
    }
    let refreshed_dir = refresh_recalibration(&carried, assets, end, out).unwrap().dir;
    let reloaded = LoadedModel::load(&refreshed_dir, &select(DeviceChoice::Cpu).unwrap().device).unwrap();
    assert_eq!(
        reloaded.metadata.term_structure, week,
        "the artifact keeps its term structure"
    );
    let r = reloaded.metadata.recalibration.as_ref().unwrap();
    assert!(r.variance_factor(168) != r.variance_factor(24), "{r:?}");
    let served = FixedModel(&reloaded).forecast(&request).unwrap();
    let replayed = DailyRecalibrated::new(&carried, 15).forecast(&request).unwrap();
    let plain = DailyRecalibrated::new(model, 15).forecast(&request).unwrap();
    for h in &HORIZONS {
        let (a, b) = (&served.horizons[h], &replayed.horizons[h]);
        assert!(same(&a.variance, &b.variance), "{h}h variance");
        for (qa, qb) in a.quantiles.iter().zip(&b.quantiles) {
            assert!(same(&qa.values, &qb.values), "{h}h quantile {}", qa.level);
        }
        // Quantiles are not blended with HAR: the week's show the carry whatever its weight.
        let quantiles_moved = !b
            .quantiles
            .iter()
            .zip(&plain.horizons[h].quantiles)
            .all(|(qb, qp)| same(&qb.values, &qp.values));
        assert_eq!(quantiles_moved, *h == 168, "{h}h: only the week is carried");
        if *h != 168 {
            assert!(
                same(&b.variance, &plain.horizons[h].variance),
                "{h}h is not carried"
            );
        }
    }
    // The week served: the carried raw week corrected, then blended with HAR's week.
    for (i, p) in raw.iter().enumerate() {
        let corrected = p.as_ref().unwrap().variance[2] * r.variance_factor(168);
        let har = model
            .metadata
            .har_at(&prepared[origins[i].asset], origins[i].slot)[2];
        let want = r
            .har_weight
            .get(&168)
            .map_or(corrected, |&w| artifact::blend(corrected, har, w));
        let got = served.horizons[&168].variance[i];
        assert!((got / want - 1.0).abs() < 1e-12, "origin {i}: {got} vs {want}");
    }
    // A stored term structure that cannot be carried is refused at load, with its reason.
    let meta_path = refreshed_dir.join(artifact::METADATA);
    let text = std::fs::read_to_string(&meta_path).unwrap();
    for (stored, says) in [
        (serde_json::json!({"24": 168}), "carried from a shorter one"),
        (serde_json::json!({"168": 12}), "no 12 h horizon"),
        (serde_json::json!({"168": 24, "24": 4}), "itself carried"),
    ] {
        let mut meta: serde_json::Value = serde_json::from_str(&text).unwrap();
        meta["term_structure"] = stored;
        std::fs::write(&meta_path, serde_json::to_string(&meta).unwrap()).unwrap();
        let err = LoadedModel::load(&refreshed_dir, &select(DeviceChoice::Cpu).unwrap().device).unwrap_err();
        assert!(
            err.to_string().contains("term_structure") && err.to_string().contains(says),
            "{err}"
        );
    }
}

/// The blend in hindsight's "served" column is the mean QLIKE of what the replay serves at the
/// daily origins of the span (where the realised variance and HAR's forecast exist), its "HAR"
/// column HAR's there; the best fixed weight is at least as good as HAR alone and as the network
/// alone (both are on the grid).
fn blend_in_hindsight_is_what_the_replay_serves(model: &LoadedModel, assets: &[volcast_core::grid::Asset]) {
    use volcast_core::forecast::{DrawdownQuery, ForecastRequest};
    use volcast_core::scoring::qlike;
    use volcast_training::rolling::DailyRecalibrated;
    let first = parse_time("2020-04-16", Bound::Start).unwrap() / HOUR_MS;
    let last = parse_time("2020-05-05", Bound::Start).unwrap() / HOUR_MS;
    let origins: Vec<_> = (first..=last)
        .step_by(24)
        .flat_map(|hour| origins_at(assets, hour))
        .collect();
    let (served, op) = DailyRecalibrated::new(model, 15)
        .forecast_operated(&ForecastRequest {
            assets,
            origins: &origins,
            horizons: &HORIZONS,
            drawdown: DrawdownQuery { alpha: 0.99, tau: 4 },
        })
        .unwrap();
    let rows = op
        .unwrap()
        .blend_in_hindsight((first, last), model.metadata.recalibration.as_ref());
    assert_eq!(rows.len(), HORIZONS.len(), "the artifact blends with HAR");
    let prepared = volcast_core::panel::prepare(assets, &HORIZONS);
    for (j, (h, row)) in HORIZONS.iter().zip(&rows).enumerate() {
        assert_eq!(row.horizon, *h);
        let (mut served_sum, mut har_sum, mut n) = (0.0, 0.0, 0usize);
        for (i, o) in origins.iter().enumerate() {
            let rv = prepared[o.asset].target(o.slot, *h);
            let har = model.metadata.har_at(&prepared[o.asset], o.slot)[j];
            let f = served.horizons[h].variance[i];
            if rv.is_finite() && rv > 0.0 && har.is_finite() && har > 0.0 && f.is_finite() && f > 0.0 {
                served_sum += qlike(rv, f);
                har_sum += qlike(rv, har);
                n += 1;
            }
        }
        assert!(n > 20, "{h}h: {n} points");
        assert_eq!(row.points, n, "{h}h");
        let close = |a: f64, b: f64| (a / b - 1.0).abs() < 1e-9;
        assert!(close(row.served, served_sum / n as f64), "{h}h served {row:?}");
        assert!(close(row.har, har_sum / n as f64), "{h}h HAR {row:?}");
        assert!(row.best <= row.har && row.best <= row.network, "{h}h {row:?}");
    }
}

/// Every horizon at `origins` of `assets`, the drawdown at SPEC's defaults (0.99, 4 h).
fn request_at<'a>(
    assets: &'a [volcast_core::grid::Asset],
    origins: &'a [volcast_core::forecast::Origin],
) -> volcast_core::forecast::ForecastRequest<'a> {
    volcast_core::forecast::ForecastRequest {
        assets,
        origins,
        horizons: &HORIZONS,
        drawdown: volcast_core::forecast::DrawdownQuery { alpha: 0.99, tau: 4 },
    }
}

/// Equal to 12 digits, element by element.
fn same(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x / y - 1.0).abs() < 1e-12)
}

/// Every asset's origin at `hour` (close hour), in asset order.
fn origins_at(assets: &[volcast_core::grid::Asset], hour: i64) -> Vec<volcast_core::forecast::Origin> {
    assets
        .iter()
        .enumerate()
        .map(|(a, asset)| volcast_core::forecast::Origin {
            asset: a,
            slot: asset.grid.slot(hour).unwrap(),
        })
        .collect()
}

/// The adaptive settings a trained artifact declares (every trained artifact declares some).
fn declared_adaptive(model: &LoadedModel) -> &artifact::Adaptive {
    model
        .metadata
        .recalibration
        .as_ref()
        .and_then(|r| r.adaptive.as_ref())
        .unwrap()
}

/// With `adaptive.shortage_stack`, the replay fits each day's stack on the window's completed
/// origins and serves, at that day's origins, the stacked probability of the network's raw one
/// and the baseline score (the network's where an origin has no score); variances as without it.
fn shortage_stack_in_the_replay(model: &LoadedModel, assets: &[volcast_core::grid::Asset]) {
    use volcast_core::forecast::DrawdownQuery;
    use volcast_training::rolling::{DailyRecalibrated, raw_predictions};

    // A window long enough (100 days, back into the fit period) for both classes at each horizon.
    let days = 100;
    let end = parse_time("2020-05-20", Bound::Start).unwrap() / HOUR_MS;
    let declared = declared_adaptive(model).clone();
    let stacked = artifact::Adaptive {
        shortage_stack: true,
        ..declared.clone()
    };
    let origins = origins_at(assets, end);
    let day = end - end.rem_euclid(24);
    let op = DailyRecalibrated::new(model, days)
        .with_adaptive(Some(stacked))
        .operate(assets, &origins, (day, day))
        .unwrap();
    let plain = DailyRecalibrated::new(model, days)
        .with_adaptive(Some(declared))
        .operate(assets, &origins, (day, day))
        .unwrap();
    let r = op.corrections[&day].as_ref().unwrap();
    assert!(!r.shortage_stack.is_empty(), "no horizon had both classes: {r:?}");
    let drawdown = DrawdownQuery { alpha: 0.99, tau: 4 };
    let raw = raw_predictions(model, assets, &origins, drawdown).unwrap();
    let prepared = volcast_core::panel::prepare(assets, &HORIZONS);
    for (i, o) in origins.iter().enumerate() {
        let (served, without) = (op.served[i].as_ref().unwrap(), plain.served[i].as_ref().unwrap());
        assert_eq!(
            served.variance, without.variance,
            "origin {i}: the stack touches only p"
        );
        let scores = model.metadata.shortage_scores_at(&prepared[o.asset], o.slot);
        for (j, h) in HORIZONS.iter().enumerate() {
            let p = raw[i].as_ref().unwrap().shortage_probability[j];
            let want = match r.shortage_stack.get(h) {
                Some(&k) if scores[j].is_finite() && scores[j] > 0.0 => {
                    artifact::stacked_probability(k, p, scores[j])
                }
                _ => p,
            };
            let got = served.shortage_probability[j];
            assert!((got - want).abs() < 1e-12, "{h}h origin {i}: {got} vs {want}");
        }
    }
}

/// `evaluate`'s replay of the daily job uses only what is observable at each origin: cutting the
/// candles after it changes nothing.
fn replay_sees_no_future(model: &LoadedModel, loaded: &[volcast_core::candles::AssetCandles]) {
    use volcast_core::forecast::{DrawdownQuery, ForecastRequest};
    use volcast_training::rolling::DailyRecalibrated;

    let end_hour = parse_time("2020-05-10", Bound::Start).unwrap() / HOUR_MS;
    let cut: Vec<_> = loaded
        .iter()
        .map(|a| volcast_core::candles::AssetCandles {
            asset: a.asset.clone(),
            candles: a
                .candles
                .iter()
                .filter(|c| c.open_time < end_hour * HOUR_MS)
                .cloned()
                .collect(),
        })
        .collect();
    let forecast = |assets: &[volcast_core::grid::Asset]| {
        let origins = origins_at(assets, end_hour);
        DailyRecalibrated::new(model, 15)
            .forecast(&ForecastRequest {
                assets,
                origins: &origins,
                horizons: &HORIZONS,
                drawdown: DrawdownQuery { alpha: 0.99, tau: 4 },
            })
            .unwrap()
    };
    let full = forecast(&volcast_core::panel::to_panel(loaded));
    let past = forecast(&volcast_core::panel::to_panel(&cut));
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x / y - 1.0).abs() < 1e-9);
    for h in HORIZONS {
        let (f, p) = (&full.horizons[&h], &past.horizons[&h]);
        assert!(
            close(&f.variance, &p.variance),
            "{h}h: {:?} vs {:?}",
            f.variance,
            p.variance
        );
        for (qf, qp) in f.quantiles.iter().zip(&p.quantiles) {
            assert!(close(&qf.values, &qp.values), "{h}h quantile {}", qf.level);
        }
    }
    assert!(close(
        full.drawdown.as_ref().unwrap(),
        past.drawdown.as_ref().unwrap()
    ));
}

/// The daily job (`calibrate --until`) and `evaluate`'s replay of it agree, and the job refuses
/// windows it cannot measure.
/// The service's daily job starts each day from the artifact it wrote the day before. Chained
/// so, day after day from just after the fit end (while its window still holds forecasts made
/// before the fit end, weighed as served with the corrections then in force), each day's
/// corrections and drawdown factors are the replay's of that day from the trained artifact:
/// what the service serves does not depend on the day it last restarted.
fn the_daily_chain_is_the_replay(model: &LoadedModel, assets: &[volcast_core::grid::Asset], out: &Path) {
    use volcast_training::calibrate::refresh_recalibration;
    use volcast_training::rolling::DailyRecalibrated;

    let mut metadata = model.metadata.clone();
    if let Some(a) = metadata.recalibration.as_mut().and_then(|r| r.adaptive.as_mut()) {
        a.drawdown_step = 0.0005;
    }
    let model = &model.with_metadata(metadata);
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let hour = |t: &str| parse_time(t, Bound::Start).unwrap() / HOUR_MS;
    let (first, last) = (hour("2020-04-17"), hour("2020-04-26"));
    let op = DailyRecalibrated::new(model, 15)
        .operate(assets, &[], (first, last))
        .unwrap();
    let mut current = model.with_metadata(model.metadata.clone());
    for day in (first..=last).step_by(24) {
        let saved = refresh_recalibration(&current, assets, day, &out.join("chain")).unwrap();
        current = LoadedModel::load(&saved.dir, &device).unwrap();
        let replayed = op.corrections[&day].as_ref().unwrap();
        assert_eq!(
            current.metadata.recalibration.as_ref(),
            Some(replayed),
            "day {}",
            volcast_core::time::format_ms(day * HOUR_MS)
        );
        let factors = model
            .metadata
            .risk
            .as_ref()
            .unwrap()
            .model
            .with_factors(&op.factors[&day]);
        assert_eq!(current.metadata.risk.as_ref().unwrap().model, factors);
    }
}

/// `calibrate` on an artifact the daily job wrote measures the corrections at the fit end anew,
/// and they are the fit end's from then on: the daily job's record of the trained artifact's
/// corrections (`fit_end_recalibration`) is not carried over, or the replay and the next daily
/// job would start from the old ones (and leave out a HAR blend the new ones have).
fn calibrated_again_it_carries_its_own_fit_end(
    refreshed_dir: &Path,
    assets: &[volcast_core::grid::Asset],
    trained: &LoadedModel,
) {
    let refreshed = LoadedModel::load(refreshed_dir, &select(DeviceChoice::Cpu).unwrap().device).unwrap();
    assert_eq!(
        refreshed.metadata.fit_end_recalibration.as_ref(),
        trained.metadata.recalibration.as_ref(),
        "the daily job records the trained artifact's corrections"
    );
    let mut metadata = refreshed.metadata.clone();
    // As an artifact made under an older rule: its fit-end corrections differ from today's.
    if let Some(r) = metadata.fit_end_recalibration.as_mut() {
        r.har_weight.clear();
    }
    let older = refreshed.with_metadata(metadata);
    let elsewhere = tempfile::tempdir().unwrap();
    let again =
        volcast_training::calibrate::calibrate_artifact(&older, assets, elsewhere.path(), false).unwrap();
    let again = artifact::read_metadata(&again.dir).unwrap();
    assert_eq!(again.fit_end_recalibration, None);
    let own = again.recalibration.as_ref().unwrap();
    assert!(!own.har_weight.is_empty(), "calibrated now, it blends with HAR");
    assert_eq!(again.fit_end_corrections(), Some(own));
}

fn daily_recalibration(model: &LoadedModel, assets: &[volcast_core::grid::Asset], out: &Path) {
    use volcast_training::calibrate::refresh_recalibration;
    use volcast_training::rolling::CalibrateError;
    use volcast_training::rolling::{DailyRecalibrated, raw_predictions};

    // Trained artifacts declare the holdout as their rolling window.
    assert_eq!(
        model.metadata.recalibration.as_ref().unwrap().rolling_days,
        Some(15)
    );
    let hour = |t: &str| parse_time(t, Bound::Start).unwrap() / HOUR_MS;
    let end = hour("2020-05-10");
    // Trained artifacts adapt their quantile levels; the drawdown's level adapts when a step is
    // given (off by default, README "Adaptive calibration"): both, here.
    let declared = declared_adaptive(model);
    assert!(declared.quantile_step > 0.0);
    let mut metadata = model.metadata.clone();
    if let Some(a) = metadata.recalibration.as_mut().and_then(|r| r.adaptive.as_mut()) {
        a.drawdown_step = 0.0005;
    }
    let model = &model.with_metadata(metadata);
    let refreshed_dir = refresh_recalibration(model, assets, end, out).unwrap().dir;
    let refreshed = artifact::read_metadata(&refreshed_dir).unwrap();
    calibrated_again_it_carries_its_own_fit_end(&refreshed_dir, assets, model);
    let r = refreshed.recalibration.as_ref().unwrap();
    assert_eq!(
        (r.until.as_str(), r.from.as_str()),
        ("2020-05-10T00:00:00Z", "2020-04-25T00:00:00Z")
    );
    assert_eq!(r.rolling_days, Some(15));
    assert_ne!(refreshed.id, model.metadata.id, "new corrections, new id");
    // The risk calibration is kept; only its adaptive factors moved (artifacts calibrated now
    // adapt their levels from the fit end on).
    let risk = refreshed.risk.as_ref().unwrap();
    let mut reset = risk.clone();
    reset.model = reset.model.with_factors(&[]);
    assert_eq!(
        Some(&reset),
        model.metadata.risk.as_ref(),
        "the risk calibration is kept"
    );
    let adaptive = r.adaptive.as_ref().unwrap();
    assert!(adaptive.quantile_step > 0.0 && adaptive.drawdown_step > 0.0);
    assert_eq!(adaptive.quantile_level.len(), HORIZONS.len());
    assert!(
        adaptive
            .quantile_level
            .values()
            .any(|l| l != &model.metadata.quantile_levels),
        "25 days of outcomes moved the levels: {:?}",
        adaptive.quantile_level
    );
    assert!(
        risk.model.windows.iter().any(|w| w.miscoverage_factor != 1.0),
        "25 days of outcomes moved the drawdown's level"
    );
    assert_eq!(
        std::fs::read(refreshed_dir.join(artifact::WEIGHTS)).unwrap(),
        std::fs::read(model.dir.join(artifact::WEIGHTS)).unwrap(),
        "same weights"
    );

    // At that day's origins, the replay applies exactly what the job measured.
    let origins = origins_at(assets, end);
    let request = request_at(assets, &origins);
    let drawdown = request.drawdown;
    let replayed = DailyRecalibrated::new(model, 15).forecast(&request).unwrap();
    let raw = raw_predictions(model, assets, &origins, drawdown).unwrap();
    // Corrected, then blended with HAR by the day's weights (at 168 h chosen on the forecasts
    // as served: `adaptive.blend_as_served_at`).
    assert_eq!(adaptive.blend_as_served_at, [168]);
    let prepared = volcast_core::panel::prepare(assets, &HORIZONS);
    for (j, h) in HORIZONS.iter().enumerate() {
        for (i, p) in raw.iter().enumerate() {
            let corrected = p.as_ref().unwrap().variance[j] * r.variance_scale[h];
            let har = model
                .metadata
                .har_at(&prepared[origins[i].asset], origins[i].slot)[j];
            let want = r
                .har_weight
                .get(h)
                .map_or(corrected, |&w| artifact::blend(corrected, har, w));
            let got = replayed.horizons[h].variance[i];
            assert!(
                (got / want - 1.0).abs() < 1e-12,
                "{h}h origin {i}: {got} vs {want}"
            );
        }
    }

    // The artifact the job wrote serves, fixed, exactly what the replay served that day:
    // variance, quantiles at their moved levels, and the drawdown at the moved level.
    let served = volcast_training::rolling::FixedModel(&model.with_metadata(refreshed.clone()))
        .forecast(&request)
        .unwrap();
    for h in &HORIZONS {
        let (a, b) = (&served.horizons[h], &replayed.horizons[h]);
        assert!(same(&a.variance, &b.variance), "{h}h variance");
        for (qa, qb) in a.quantiles.iter().zip(&b.quantiles) {
            assert!(same(&qa.values, &qb.values), "{h}h quantile {}", qa.level);
        }
    }
    let (a, b) = (served.drawdown.unwrap(), replayed.drawdown.unwrap());
    assert!(same(&a, &b), "drawdown {a:?} vs {b:?}");

    // With a shortage stack in its corrections (`adaptive.shortage_stack`), the artifact serves
    // the stacked probability of the network's and the baseline score's, where the score
    // exists, and the network's elsewhere; variances and quantiles as before.
    let mut stacked = refreshed.clone();
    let k = [-0.5, 0.8, 0.3];
    stacked.recalibration.as_mut().unwrap().shortage_stack = HORIZONS.iter().map(|&h| (h, k)).collect();
    let with_stack = volcast_training::rolling::FixedModel(&model.with_metadata(stacked.clone()))
        .forecast(&request)
        .unwrap();
    let mut scored = 0;
    for (j, h) in HORIZONS.iter().enumerate() {
        let (a, b) = (&with_stack.horizons[h], &served.horizons[h]);
        assert!(same(&a.variance, &b.variance), "{h}h variance");
        let (stacked_p, network_p) = (
            &a.shortage.as_ref().unwrap().probability,
            &b.shortage.as_ref().unwrap().probability,
        );
        for (i, o) in origins.iter().enumerate() {
            let score = stacked.shortage_scores_at(&prepared[o.asset], o.slot)[j];
            let want = if score.is_finite() && score > 0.0 {
                scored += 1;
                artifact::stacked_probability(k, network_p[i], score)
            } else {
                network_p[i]
            };
            assert!(
                (stacked_p[i] - want).abs() < 1e-12,
                "{h}h origin {i}: {} vs {want}",
                stacked_p[i]
            );
        }
    }
    assert!(scored > 0, "some origins have a baseline score");

    // Windows it cannot measure: before the fit end, or past the candles.
    for bad in ["2020-04-01", "2020-07-01"] {
        let err = refresh_recalibration(model, assets, hour(bad), out).unwrap_err();
        assert!(matches!(err, CalibrateError::Window(_)), "{bad}: {err}");
    }
}

#[test]
fn mismatched_artifact_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generated(&data, 120);
    let out = tmp.path().join("artifacts");
    let mut p = pipeline(&data, &out, DeviceChoice::Cpu);
    p.fit_until_ms = None;
    p.max_steps = Some(2);
    let outcome = run(&p).unwrap();
    let device = select(DeviceChoice::Cpu).unwrap().device;
    // Another architecture in the config: the weights no longer fit.
    let path = outcome.dir.join(CONFIG);
    let mut config: TrainingConfig = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config.model = config.model.with_channels(12);
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    // The checksum in the metadata refuses the edited config first...
    let err = LoadedModel::load(&outcome.dir, &device).unwrap_err();
    assert!(err.to_string().contains("config.json hashes to"), "{err}");
    // ...and with the checksum updated to vouch for it, the weights do not fit it.
    let meta_path = outcome.dir.join(artifact::METADATA);
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["config_sha256"] = serde_json::json!(artifact::sha256_file(&path).unwrap());
    std::fs::write(&meta_path, serde_json::to_string(&meta).unwrap()).unwrap();
    let err = LoadedModel::load(&outcome.dir, &device).unwrap_err();
    assert!(err.to_string().contains("do not fit"), "{err}");
    // No artifact at all.
    assert!(LoadedModel::load(&tmp.path().join("nothing"), &device).is_err());
}

#[test]
fn a_few_training_steps_on_wgpu() {
    let required = std::env::var_os("VOLCAST_REQUIRE_WGPU").is_some();
    if let Err(e) = select(DeviceChoice::Wgpu) {
        assert!(!required, "VOLCAST_REQUIRE_WGPU is set but {e}");
        eprintln!("skipping: {e} (set VOLCAST_REQUIRE_WGPU=1 to make this a failure)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generated(&data, 120);
    let out = tmp.path().join("artifacts");
    let mut p = pipeline(&data, &out, DeviceChoice::Wgpu);
    p.fit_until_ms = None;
    p.max_steps = Some(3);
    let outcome = run(&p).unwrap();
    assert!(outcome.device.starts_with("wgpu"), "{}", outcome.device);
    // Trained on wgpu, loads and forecasts on the CPU.
    let model = LoadedModel::load(&outcome.dir, &select(DeviceChoice::Cpu).unwrap().device).unwrap();
    assert!(model.metadata.device.starts_with("wgpu"));
}

/// A checkpoint whose last epoch a step budget cut short (`--max-steps`) is never continued by a
/// run without one as if that epoch were complete: the run starts again and ends with the
/// uninterrupted run's epochs.
#[test]
fn resume_without_a_budget_never_continues_an_epoch_the_budget_cut_short() {
    use volcast_training::trainer::train;
    let (tmp, assets, fit_end_hour) = generated_panel();
    let config = small_config()
        .with_max_epochs(2)
        .with_refit_through_holdout(Some(false));
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let options = common::run_options;
    let whole = train(
        &assets,
        &config,
        fit_end_hour,
        &device,
        &options(&tmp.path().join("whole"), false, None),
    )
    .unwrap();
    // One whole epoch, then one step of the second.
    let cut = tmp.path().join("cut");
    let steps_per_epoch = whole.train_rows / config.batch_size;
    let smoke = train(
        &assets,
        &config,
        fit_end_hour,
        &device,
        &options(&cut, false, Some(steps_per_epoch + 1)),
    )
    .unwrap();
    assert!(
        smoke.state.epoch == 1 && smoke.state.cut_short,
        "{:?}",
        smoke.state.history
    );
    // A resume under another config is refused, cut short or not (it trained over the
    // checkpoint from the start, with a warning, where README says it stops).
    let other = train(
        &assets,
        &config.clone().with_max_epochs(3),
        fit_end_hour,
        &device,
        &options(&cut, true, None),
    )
    .unwrap_err()
    .to_string();
    assert!(other.contains("another config"), "{other}");
    let resumed = train(
        &assets,
        &config,
        fit_end_hour,
        &device,
        &options(&cut, true, None),
    )
    .unwrap();
    assert!(!resumed.state.cut_short);
    assert_same_history(&resumed.state.history, &whole.state.history, 1e-12);
}

/// A kill while an epoch's checkpoint is being written (its files half there, its state written,
/// the `current` pointer's replacement written but not yet renamed) leaves the previous epoch
/// current: `--resume` redoes exactly the interrupted epoch and ends with the model an
/// uninterrupted run gives, to the last bit.
#[test]
fn resume_after_a_checkpoint_write_cut_short_gives_the_uninterrupted_model() {
    use volcast_training::trainer::train;
    let (tmp, assets, fit_end_hour) = generated_panel();
    // The first run's checkpoints alone (the refit's resume: the test below).
    let config = small_config()
        .with_max_epochs(3)
        .with_refit_through_holdout(Some(false));
    let device = select(DeviceChoice::Cpu).unwrap().device;
    let options = common::run_options;
    // Training is not bit-reproducible on the CPU (parallel sums: two fresh runs differ in the
    // last digits), so models are compared by their outputs on a fixed input.
    let outputs =
        |model: &volcast_model::network::VolModel| outputs_on_a_fixed_input(model, config.window, &device);

    let whole = tmp.path().join("whole");
    let uninterrupted = train(
        &assets,
        &config,
        fit_end_hour,
        &device,
        &options(&whole, false, None),
    )
    .unwrap();
    assert_eq!(uninterrupted.state.history.len(), 3);

    // Two epochs, then the third one's checkpoint write cut short.
    let cut = tmp.path().join("cut");
    let steps_per_epoch = uninterrupted.train_rows / config.batch_size;
    let two = train(
        &assets,
        &config,
        fit_end_hour,
        &device,
        &options(&cut, false, Some(2 * steps_per_epoch)),
    )
    .unwrap();
    assert_eq!(two.state.epoch, 1);
    let current = std::fs::read_to_string(cut.join("current")).unwrap();
    assert_eq!(current.trim(), "epoch-0001");
    let partial = cut.join("epoch-0002");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("best.bpk"), b"half a file").unwrap();
    std::fs::write(partial.join("last.bpk.tmp"), b"half a file").unwrap();
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("epoch-0001/state.json")).unwrap()).unwrap();
    state["epoch"] = 2.into();
    std::fs::write(partial.join("state.json"), state.to_string()).unwrap();
    std::fs::write(cut.join("current.tmp"), "epoch-0002").unwrap();

    let resumed = train(
        &assets,
        &config,
        fit_end_hour,
        &device,
        &options(&cut, true, None),
    )
    .unwrap();
    // Each epoch once, with the same holdout scores (summed in parallel: equal to ~1e-15).
    assert_eq!(resumed.state.history.len(), 3);
    assert_same_history(&resumed.state.history, &uninterrupted.state.history, 1e-12);
    assert_eq!(resumed.state.epoch, 2);
    assert_eq!(resumed.state.best_epoch, uninterrupted.state.best_epoch);
    // The best model, and the last one (trained on from the right weights and optimiser state).
    let last = |dir: &Path| {
        use burn::module::Module;
        config
            .model
            .init(&device)
            .try_load_file(dir.join("epoch-0002/last.bpk"))
            .unwrap()
    };
    for (a, b) in [
        (resumed.model.clone(), uninterrupted.model.clone()),
        (last(&cut), last(&whole)),
    ] {
        for (x, y) in outputs(&a).iter().zip(outputs(&b)) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "outputs {x} against {y}");
        }
    }
    let current = std::fs::read_to_string(cut.join("current")).unwrap();
    assert_eq!(current.trim(), "epoch-0002");
}
