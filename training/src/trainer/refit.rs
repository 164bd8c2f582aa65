//! Training until the fit end ([`TrainingConfig::refit_through_holdout`]) once early stopping has
//! chosen the epochs, and, with per-horizon epochs ([`TrainingConfig::per_horizon_epochs`]), the
//! networks kept after each horizon's own epoch count, and the ensemble the members make.

use burn::module::Module;
use burn::prelude::*;

use super::checkpoint::{ckpt_err, current_checkpoint, written_by};
use super::start::TrainingData;
use super::{Pick, RunOptions, TrainError, Trained, run_phase};
use crate::dataset::Samples;
use volcast_model::config::TrainingConfig;
use volcast_model::network::{Ensemble, VolModel};

/// The networks of one member where each horizon is served by the network trained for its own
/// epochs: the distinct networks, and for each horizon (in the config's order) which one.
#[derive(Debug)]
pub struct HorizonNetworks {
    /// The networks, by increasing epoch count.
    pub networks: Vec<VolModel>,
    /// Their epoch counts.
    pub epochs: Vec<usize>,
    /// For each horizon, the index of its network.
    pub of_horizon: Vec<usize>,
}

/// Each horizon's epoch count: one more than the epoch of its lowest holdout QLIKE in
/// `history` (the earliest where tied); 1 with no history.
#[must_use]
pub fn per_horizon_epochs(history: &[[f64; 3]]) -> [usize; 3] {
    std::array::from_fn(|h| {
        history
            .iter()
            .enumerate()
            .filter(|(_, s)| s[h].is_finite())
            .min_by(|a, b| a.1[h].total_cmp(&b.1[h]).then(a.0.cmp(&b.0)))
            .map_or(1, |(e, _)| e + 1)
    })
}

/// Training until the fit end ([`TrainingConfig::refit_through_holdout`]): a fresh network from
/// the same seed and start, trained on `rows` for the epochs early stopping chose (no early
/// stopping; the last epoch's network is served), its checkpoints in `<checkpoint dir>/refit`
/// (resumable like the first run's). The answer keeps the first run's checkpoint state, whose
/// holdout scores are out of sample, with the seconds of both runs; its model, training rows and
/// speed (the same step's) are the refit's.
pub(super) fn refit(
    data: &TrainingData,
    rows: &Samples,
    config: &TrainingConfig,
    device: &Device,
    options: &RunOptions,
    early_stopped: Trained,
) -> Result<Trained, TrainError> {
    let per_horizon = config
        .has_per_horizon_epochs()
        .then(|| per_horizon_epochs(&early_stopped.state.history));
    let epochs = per_horizon.map_or(early_stopped.state.best_epoch + 1, |e| {
        e.iter().copied().max().unwrap_or(1)
    });
    // The epochs (0-based) whose networks are kept for the horizons.
    let snapshots: Vec<usize> = per_horizon.map_or_else(Vec::new, |e| {
        let mut s: Vec<usize> = e.iter().map(|n| n - 1).collect();
        s.sort_unstable();
        s.dedup();
        s
    });
    tracing::info!(
        epochs,
        per_horizon = ?per_horizon,
        rows = rows.len(),
        "training again until the fit end, for the epochs early stopping chose"
    );
    let refit_config = config.clone().with_max_epochs(epochs).with_patience(epochs);
    let dir = options.checkpoint_dir.join("refit");
    // A refit checkpoint of another epoch count (the first run was cut short by a step budget,
    // then resumed) is of no use: start the refit again.
    let json = options.run_key(&refit_config).map_err(|e| ckpt_err(&dir, e))?;
    let resume = options.resume && written_by(&dir, &json);
    if options.resume && !resume && current_checkpoint(&dir).is_some() {
        tracing::info!(
            epochs,
            "the refit's checkpoint is of another run: training it again"
        );
    }
    let options = RunOptions {
        checkpoint_dir: dir,
        resume,
        ..options.clone()
    };
    let refitted = run_phase(
        data,
        rows,
        &refit_config,
        device,
        &options,
        Pick::Final,
        &snapshots,
    )?;
    let horizon_networks = match per_horizon {
        Some(e) => Some(load_snapshots(
            &refit_config,
            &options.checkpoint_dir,
            &snapshots,
            e,
            device,
        )?),
        None => None,
    };
    let mut state = early_stopped.state;
    state.seconds += refitted.state.seconds;
    Ok(Trained {
        model: refitted.model,
        state,
        train_rows: refitted.train_rows,
        samples_per_second: refitted.samples_per_second,
        horizon_networks,
        ..early_stopped
    })
}

/// The networks kept at the refit's `snapshots` epochs (0-based, increasing), from its last
/// checkpoint in `dir`, for horizons whose epoch counts are `per_horizon`.
fn load_snapshots(
    config: &TrainingConfig,
    dir: &std::path::Path,
    snapshots: &[usize],
    per_horizon: [usize; 3],
    device: &Device,
) -> Result<HorizonNetworks, TrainError> {
    let current = current_checkpoint(dir).ok_or_else(|| ckpt_err(dir, "no checkpoint was written"))?;
    let networks = snapshots
        .iter()
        .map(|&e| {
            let path = current.join(snapshot_file(e));
            config
                .model
                .init(device)
                .try_load_file(&path)
                .map_err(|err| ckpt_err(&path, err))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let of_horizon = per_horizon
        .iter()
        .map(|n| snapshots.iter().position(|&e| e + 1 == *n).unwrap_or(0))
        .collect();
    Ok(HorizonNetworks {
        networks,
        epochs: snapshots.iter().map(|e| e + 1).collect(),
        of_horizon,
    })
}

/// The file of the network kept after epoch `epoch` (0-based) for per-horizon serving.
pub(super) fn snapshot_file(epoch: usize) -> String {
    format!("snapshot-{epoch:04}.bpk")
}

/// The artifact's networks from the trained members: their own, each at every horizon alike;
/// or, with per-horizon epochs, every member's distinct networks, each horizon the mean over the
/// members of the network trained for that horizon's epochs.
///
/// # Errors
/// [`TrainError::NoData`] when none was trained.
pub fn ensemble_of(members: Vec<Trained>) -> Result<Ensemble, TrainError> {
    let n = members.len();
    if members.iter().any(|t| t.horizon_networks.is_none()) {
        return Ensemble::from_members(members.into_iter().map(|t| t.model).collect())
            .ok_or_else(none_trained);
    }
    let mut networks = Vec::new();
    let mut weights: Vec<Vec<f32>> = Vec::new();
    for h in members.into_iter().filter_map(|t| t.horizon_networks) {
        for (k, network) in h.networks.into_iter().enumerate() {
            weights.push(
                h.of_horizon
                    .iter()
                    .map(|&i| if i == k { 1.0 / n as f32 } else { 0.0 })
                    .collect(),
            );
            networks.push(network);
        }
    }
    let weighted = weights.iter().any(|row| row.contains(&0.0));
    Ok(Ensemble::from_members(networks)
        .ok_or_else(none_trained)?
        .with_horizon_weights(weighted.then_some(weights)))
}

/// The ensemble of `main` and networks trained apart ([`TrainingConfig::networks_apart`]):
/// `apart` serve the horizons where `is_apart` (in the config's horizon order) is true, as the
/// mean over them, `main` the others; both groups' networks in `model.bpk`, main first, with
/// their horizon weights.
///
/// # Errors
/// An empty group, or a member with per-horizon networks (the config refuses the two together).
pub fn ensemble_apart(
    main: Vec<Trained>,
    apart: Vec<Trained>,
    is_apart: &[bool],
) -> Result<Ensemble, TrainError> {
    if main.is_empty() || apart.is_empty() {
        return Err(none_trained());
    }
    if main.iter().chain(&apart).any(|t| t.horizon_networks.is_some()) {
        return Err(TrainError::Config(
            "networks apart cannot be combined with per-horizon epochs".into(),
        ));
    }
    let row = |n: usize, serves: bool| -> Vec<f32> {
        is_apart
            .iter()
            .map(|&a| if a == serves { 1.0 / n as f32 } else { 0.0 })
            .collect()
    };
    let weights: Vec<Vec<f32>> = std::iter::repeat_n(row(main.len(), false), main.len())
        .chain(std::iter::repeat_n(row(apart.len(), true), apart.len()))
        .collect();
    let networks = main.into_iter().chain(apart).map(|t| t.model).collect();
    Ok(Ensemble::from_members(networks)
        .ok_or_else(none_trained)?
        .with_horizon_weights(Some(weights)))
}

fn none_trained() -> TrainError {
    TrainError::NoData("no network was trained".into())
}

#[cfg(test)]
mod tests {
    use super::{HorizonNetworks, ensemble_apart, ensemble_of, per_horizon_epochs};
    use crate::trainer::{CheckpointState, Trained};
    use burn::prelude::Device;
    use volcast_model::config::TrainingConfig;
    use volcast_model::scaler::Scaler;

    #[test]
    fn each_horizon_takes_the_epochs_of_its_own_best_holdout_score() {
        let history = [
            [0.80, 0.50, 0.40],
            [0.78, 0.49, 0.41],
            [0.79, 0.47, 0.42],
            [0.77, 0.47, f64::NAN],
        ];
        // 4 h best after epoch 3 (4 epochs), 24 h first reached its best after epoch 2 (3), the
        // week after epoch 0 (1; a missing score is not a best).
        assert_eq!(per_horizon_epochs(&history), [4, 3, 1]);
        assert_eq!(per_horizon_epochs(&[]), [1, 1, 1]);
    }

    fn trained(networks: usize, of_horizon: Vec<usize>) -> Trained {
        let device = Device::flex();
        let config = TrainingConfig::default_run();
        Trained {
            model: config.model.init(&device),
            scaler: Scaler {
                static_mean: Vec::new(),
                static_std: Vec::new(),
                channel_mean: Vec::new(),
                channel_std: Vec::new(),
            },
            state: CheckpointState {
                config: String::new(),
                epoch: 0,
                best: 0.0,
                best_epoch: 0,
                bad_epochs: 0,
                history: Vec::new(),
                seconds: 0.0,
                average_weight: None,
                cut_short: false,
            },
            train_rows: 0,
            holdout_rows: 0,
            samples_per_second: 0.0,
            horizon_networks: Some(HorizonNetworks {
                networks: (0..networks).map(|_| config.model.init(&device)).collect(),
                epochs: (1..=networks).collect(),
                of_horizon,
            }),
        }
    }

    #[test]
    fn each_horizon_is_the_mean_over_members_of_its_own_network() {
        // Member 0: the week from its first network, 4 h and 24 h from its second; member 1:
        // one network for every horizon.
        let ensemble = ensemble_of(vec![trained(2, vec![1, 1, 0]), trained(1, vec![0, 0, 0])]).unwrap();
        assert_eq!(ensemble.len(), 3);
        assert_eq!(
            ensemble.horizon_weights().unwrap(),
            [vec![0.0, 0.0, 0.5], vec![0.5, 0.5, 0.0], vec![0.5, 0.5, 0.5]]
        );
        // The same epochs at every horizon: one network per member, no weights.
        let plain = ensemble_of(vec![trained(1, vec![0, 0, 0]), trained(1, vec![0, 0, 0])]).unwrap();
        assert_eq!(plain.len(), 2);
        assert!(plain.horizon_weights().is_none());
    }

    #[test]
    fn networks_apart_serve_their_horizons_and_the_others_the_rest() {
        let plain = || Trained {
            horizon_networks: None,
            ..trained(1, vec![0, 0, 0])
        };
        let with_snapshots = trained(2, vec![1, 1, 0]);
        let ensemble = ensemble_apart(
            vec![plain(), plain(), plain()],
            vec![plain(), plain()],
            &[false, false, true],
        )
        .unwrap();
        assert_eq!(ensemble.len(), 5);
        let third = 1.0 / 3.0;
        assert_eq!(
            ensemble.horizon_weights().unwrap(),
            [
                vec![third, third, 0.0],
                vec![third, third, 0.0],
                vec![third, third, 0.0],
                vec![0.0, 0.0, 0.5],
                vec![0.0, 0.0, 0.5]
            ]
        );
        volcast_model::network::Ensemble::check_horizon_weights(ensemble.horizon_weights().unwrap(), 5, 3)
            .expect("each horizon's weights sum to 1");
        assert!(ensemble_apart(vec![plain()], vec![with_snapshots], &[false, false, true]).is_err());
        assert!(ensemble_apart(vec![plain()], Vec::new(), &[false, false, true]).is_err());
    }
}
