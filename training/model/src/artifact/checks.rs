//! What loading checks before an artifact serves: its metadata's meaning, its risk calibration,
//! that its files are the ones its metadata vouches for, and that the metadata is the one its id
//! vouches for.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{ArtifactError, CONFIG, MAX_ENSEMBLE, METADATA, Metadata, WEIGHTS, content_id, hex};

/// Checks what an artifact's metadata says before anything is served from it: horizons and
/// quantile levels present and sane, the scaler finite with positive deviations and the right
/// lengths, the window usable, the feature names this build computes, and corrections that can
/// be served ([`super::Recalibration::check`]), a term structure that can be carried, and a risk
/// calibration that can be served
/// ([`volcast_core::drawdown::DrawdownCalibration::check`]).
///
/// # Errors
/// [`ArtifactError::Incompatible`] naming the first problem.
pub fn check_meaning(dir: &Path, meta: &Metadata) -> Result<(), ArtifactError> {
    let bad = |message: String| {
        Err(ArtifactError::Incompatible {
            path: dir.to_owned(),
            message,
        })
    };
    let mut sorted = meta.horizons.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if meta.horizons.is_empty() || sorted.len() != meta.horizons.len() || sorted.first() == Some(&0) {
        return bad(format!(
            "horizons {:?}: at least one, distinct, positive",
            meta.horizons
        ));
    }
    let levels = &meta.quantile_levels;
    if !crate::config::quantile_levels_ok(levels) {
        return bad(format!(
            "quantile levels {levels:?}: at least two, increasing, in (0, 1)"
        ));
    }
    let sc = &meta.scaler;
    let (n_static, n_channels) = (
        volcast_core::features::N_STATIC,
        volcast_core::features::N_CHANNELS,
    );
    if sc.static_mean.len() != n_static
        || sc.static_std.len() != n_static
        || sc.channel_mean.len() != n_channels
        || sc.channel_std.len() != n_channels
    {
        return bad(format!(
            "scaler sizes {}/{}/{}/{} do not match {n_static} static features and {n_channels} channels",
            sc.static_mean.len(),
            sc.static_std.len(),
            sc.channel_mean.len(),
            sc.channel_std.len()
        ));
    }
    let means_finite = sc
        .static_mean
        .iter()
        .chain(&sc.channel_mean)
        .all(|v| v.is_finite());
    let stds_positive = sc
        .static_std
        .iter()
        .chain(&sc.channel_std)
        .all(|v| v.is_finite() && *v > 0.0);
    if !(means_finite && stds_positive) {
        return bad("scaler: means must be finite and deviations finite and positive".into());
    }
    if meta.features.window == 0 {
        return bad("features: the sequence window is 0 hours".into());
    }
    if let Some(n) = meta.ensemble
        && !(2..=MAX_ENSEMBLE).contains(&n)
    {
        return bad(format!(
            "ensemble of {n} networks: 2 to {MAX_ENSEMBLE} (a single network has no `ensemble`)"
        ));
    }
    if let Some(w) = &meta.ensemble_horizon_weights
        && let Err(e) = crate::network::Ensemble::check_horizon_weights(
            w,
            meta.ensemble.unwrap_or(1),
            meta.horizons.len(),
        )
    {
        return bad(format!("ensemble_horizon_weights: {e}"));
    }
    // By name and order, not by count alone: an artifact of an earlier build whose features
    // were in another order (under the same version) would be fed today's columns.
    let f = &meta.features;
    let names_differ = |have: &[String], want: &[&str]| {
        have.len() != want.len() || have.iter().zip(want).any(|(a, b)| a != b)
    };
    if names_differ(&f.static_names, &volcast_core::features::STATIC_NAMES)
        || names_differ(&f.channel_names, &volcast_core::features::CHANNEL_NAMES)
    {
        return bad("features: the names do not match this build's inputs, in order".into());
    }
    if f.market_asset != volcast_core::features::MARKET_ASSET {
        return bad(format!(
            "features: the market asset is {}, but this build's market factor is {}",
            f.market_asset,
            volcast_core::features::MARKET_ASSET
        ));
    }
    if let Some(Err(e)) = meta.recalibration.as_ref().map(|r| r.check(levels.len())) {
        return bad(format!("recalibration: {e}"));
    }
    if let Some(Err(e)) = meta.fit_end_recalibration.as_ref().map(|r| r.check(levels.len())) {
        return bad(format!("fit_end_recalibration: {e}"));
    }
    if let Err(e) = super::check_term_structure(&meta.term_structure, &meta.horizons, &meta.har) {
        return bad(format!("term_structure: {e}"));
    }
    if let Some(risk) = &meta.risk {
        if let Err(e) = risk.model.check() {
            return bad(format!("risk.model: {e}"));
        }
        if let Some(Err(e)) = risk
            .har
            .as_ref()
            .map(volcast_core::drawdown::DrawdownCalibration::check)
        {
            return bad(format!("risk.har: {e}"));
        }
    }
    Ok(())
}

/// Checks that the risk calibration is present or explicitly absent before an artifact is
/// served: an uncalibrated artifact's drawdowns use the less conservative reflection-normal rule,
/// so it is served only when it says why it has no calibration and the operator allows it
/// (`allow_uncalibrated`, the server's `--allow-uncalibrated`).
///
/// # Errors
/// [`ArtifactError::Incompatible`] saying what is wrong and what to do.
pub fn check_calibration(dir: &Path, meta: &Metadata, allow_uncalibrated: bool) -> Result<(), ArtifactError> {
    let bad = |message: String| {
        Err(ArtifactError::Incompatible {
            path: dir.to_owned(),
            message,
        })
    };
    match (&meta.risk, &meta.uncalibrated) {
        (Some(_), None) => Ok(()),
        (Some(_), Some(_)) => bad(format!(
            "{METADATA} carries a risk calibration and also says it has none: edited by hand?"
        )),
        (None, None) => bad(format!(
            "{METADATA} carries no risk calibration and does not say why (an interrupted `train` \
             or a hand-made artifact?): calibrate it with `calibrate --model {}`",
            dir.display()
        )),
        (None, Some(_)) if allow_uncalibrated => Ok(()),
        (None, Some(why)) => bad(format!(
            "the artifact is not risk-calibrated ({why}), so its drawdowns would use the less \
             conservative reflection-normal rule; start the server with --allow-uncalibrated to \
             serve it anyway"
        )),
    }
}

/// Checks the weights and the config against the SHA-256 the metadata records for them: a
/// flipped bit or a truncated or swapped file is refused. An artifact without the checksums
/// (made before they were recorded) is refused too: nothing vouches for its files.
///
/// # Errors
/// [`ArtifactError::Incompatible`] naming the file that differs.
pub fn check_files(dir: &Path, meta: &Metadata, weights: &[u8], config: &str) -> Result<(), ArtifactError> {
    let bad = |message: String| {
        Err(ArtifactError::Incompatible {
            path: dir.to_owned(),
            message,
        })
    };
    let (Some(want_weights), Some(want_config)) = (&meta.weights_sha256, &meta.config_sha256) else {
        return bad(format!(
            "{METADATA} records no SHA-256 of the weights and config, so nothing vouches for them; \
             re-save the artifact with this build"
        ));
    };
    let got = hex(&Sha256::digest(weights));
    if &got != want_weights {
        return bad(format!(
            "{WEIGHTS} hashes to {got} but {METADATA} records {want_weights}: damaged or replaced"
        ));
    }
    let got = hex(&Sha256::digest(config.as_bytes()));
    if &got != want_config {
        return bad(format!(
            "{CONFIG} hashes to {got} but {METADATA} records {want_config}: damaged or edited"
        ));
    }
    Ok(())
}

/// Checks the metadata against the artifact's id, which hashes the weights, the config and the
/// metadata, its id field and its `validation` scores left out (those `train` and `calibrate`
/// write beside it after saving). The checksums of [`check_files`] vouch for the weights and the
/// config; this vouches for everything else the artifact serves with: a hand-edited risk
/// calibration, fit end, scaler or correction is refused as a flipped bit in the weights is, even
/// where each value on its own is plausible.
///
/// The metadata matches when either reading of it hashes to the id: the file's own text, its
/// whitespace left out ([`super::content::hashed_text`]), which keeps an artifact's id under a
/// build that reads its fields differently (one added, dropped or reordered since, or a build
/// rolled back); or the metadata as this build reads it ([`super::id_of`]), which keeps it when
/// a JSON tool rewrote the file with its keys in another order.
///
/// # Errors
/// [`ArtifactError::Incompatible`] giving the id the file's text hashes to.
pub fn check_id(dir: &Path, meta: &Metadata, weights: &[u8], config: &str) -> Result<(), ArtifactError> {
    let bad = |message: String| {
        Err(ArtifactError::Incompatible {
            path: dir.to_owned(),
            message,
        })
    };
    let path = dir.join(METADATA);
    let text = std::fs::read_to_string(&path).map_err(|e| ArtifactError::Io {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let Some(hashed) = super::content::hashed_text(&text) else {
        return bad(format!("{METADATA} is not a JSON object"));
    };
    let got = content_id(weights, config, &hashed);
    if got == meta.id || super::id_of(weights, config, meta).is_ok_and(|id| id == meta.id) {
        return Ok(());
    }
    bad(format!(
        "{METADATA} hashes to id {got} but names the artifact {}: edited or damaged after the \
         artifact was saved (only its `validation` scores may change); retrain it",
        meta.id
    ))
}
