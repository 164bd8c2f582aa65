//! Loading an artifact and forecasting with it: the same feature code as training, the scaler
//! and window from the artifact, batched forward passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use rayon::prelude::*;

use crate::artifact::{self, ArtifactError, CONFIG, Metadata, WEIGHTS};
use crate::config::TrainingConfig;
use crate::network::Ensemble;
pub use crate::prediction::Prediction;
use volcast_core::drawdown::{DrawdownRule, VarianceCurve};
use volcast_core::features::{AssetFeatures, MARKET_ASSET, Market, N_CHANNELS, N_STATIC};
use volcast_core::forecast::{
    ForecastError, ForecastRequest, ForecastTable, Forecaster, HorizonForecasts, QuantileForecast,
    ShortageForecast,
};
use volcast_core::grid::Asset;
use volcast_core::panel::PreparedAsset;
use volcast_core::policy::{DrawdownWindow, drawdown_within};

/// Rows per forward pass when forecasting many origins.
pub const BATCH: usize = 2048;

/// One origin's scaled inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    /// Standardised static features.
    pub statics: [f32; N_STATIC],
    /// Standardised `[window, channels]` sequence, row-major.
    pub sequence: Vec<f32>,
}

/// An artifact ready to forecast.
#[derive(Debug)]
pub struct LoadedModel {
    /// The network (or ensemble over seeds), in inference mode.
    pub model: Ensemble,
    /// Its metadata.
    pub metadata: Metadata,
    /// Its training config.
    pub config: TrainingConfig,
    /// The artifact directory.
    pub dir: PathBuf,
    /// SHA-256 over weights, config and metadata.
    pub hash: String,
    device: Device,
    /// Whether forecasts on a panel holding the market asset (BTC) get its market factor, as
    /// the network was trained (true); false forecasts every asset without it, as the server
    /// does ([`Self::without_market`]).
    use_market: bool,
}

impl LoadedModel {
    /// Loads an artifact directory (or the `default` pointer of an artifacts directory).
    ///
    /// # Errors
    /// [`ArtifactError`] when files are missing, unreadable or do not fit this build's model.
    pub fn load(path: &Path, device: &Device) -> Result<Self, ArtifactError> {
        let dir = artifact::resolve(path)?;
        let metadata = artifact::read_metadata(&dir)?;
        artifact::check_meaning(&dir, &metadata)?;
        let config_path = dir.join(CONFIG);
        let text = std::fs::read_to_string(&config_path).map_err(|e| ArtifactError::Io {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        let weights_path = dir.join(WEIGHTS);
        let weights = std::fs::read(&weights_path).map_err(|e| ArtifactError::Io {
            path: weights_path.clone(),
            message: e.to_string(),
        })?;
        artifact::check_files(&dir, &metadata, &weights, &text)?;
        let config: TrainingConfig = serde_json::from_str(&text).map_err(|e| ArtifactError::Io {
            path: config_path,
            message: format!("not a training config: {e}"),
        })?;
        config
            .model
            .lognormal_spread()
            .map_err(|e| ArtifactError::Incompatible {
                path: dir.clone(),
                message: e,
            })?;
        // The metadata names the outputs the configured heads give: a disagreement would read
        // them with the wrong stride or against the wrong levels.
        if metadata.horizons.len() != config.model.n_horizons
            || metadata.quantile_levels != config.model.quantile_levels
        {
            return Err(ArtifactError::Incompatible {
                path: dir.clone(),
                message: format!(
                    "metadata names horizons {:?} and quantile levels {:?}, but the config's heads give {} horizons at levels {:?}: edited by hand?",
                    metadata.horizons,
                    metadata.quantile_levels,
                    config.model.n_horizons,
                    config.model.quantile_levels
                ),
            });
        }
        let incompatible = |e: String| ArtifactError::Incompatible {
            path: dir.clone(),
            message: format!("weights do not fit the configured model: {e}"),
        };
        let model = match metadata.ensemble {
            Some(n) => Ensemble::init(&config.model, n, device)
                .try_load_file(weights_path)
                .map_err(|e| incompatible(e.to_string()))?,
            None => Ensemble::single(
                config
                    .model
                    .init(device)
                    .try_load_file(weights_path)
                    .map_err(|e| incompatible(e.to_string()))?,
            ),
        }
        .with_horizon_weights(metadata.ensemble_horizon_weights.clone());
        // Last: an edit the checks above name is refused with their reason, any other with this.
        artifact::check_id(&dir, &metadata, &weights, &text)?;
        let hash = artifact::artifact_hash(&dir)?;
        Ok(Self {
            model,
            metadata,
            config,
            dir,
            hash,
            device: device.clone(),
            use_market: true,
        })
    }

    /// The same network with other metadata (the calibration steps).
    #[must_use]
    pub fn with_metadata(&self, metadata: Metadata) -> Self {
        Self {
            model: self.model.clone(),
            metadata,
            config: self.config.clone(),
            dir: self.dir.clone(),
            hash: self.hash.clone(),
            device: self.device.clone(),
            use_market: self.use_market,
        }
    }

    /// The same model forecasting every asset without the market factor, as the server serves
    /// it (a posted window carries no market; the features then take the asset's own levels and
    /// the market flag 0, the branch 30% of training rows saw).
    #[must_use]
    pub fn without_market(mut self) -> Self {
        self.use_market = false;
        self
    }

    /// The same model with its week (or any horizon) carried as `term_structure` says
    /// ([`Metadata::term_structure`]); the stored corrections are kept as they are.
    ///
    /// # Errors
    /// What [`artifact::check_term_structure`] finds wrong for this model.
    pub fn with_term_structure(&self, term_structure: &BTreeMap<usize, usize>) -> Result<Self, String> {
        let m = &self.metadata;
        artifact::check_term_structure(term_structure, &m.horizons, &m.har)?;
        Ok(self.with_metadata(Metadata {
            term_structure: term_structure.clone(),
            ..m.clone()
        }))
    }

    /// Hours of history in the sequence input.
    #[must_use]
    pub fn window(&self) -> usize {
        self.metadata.features.window
    }

    /// Scaled inputs at `slot`, or None where the features do not exist (too little history).
    #[must_use]
    pub fn input_at(
        &self,
        features: &AssetFeatures,
        slot: usize,
        market: Option<&Market>,
        scratch: &mut Vec<f64>,
    ) -> Option<ModelInput> {
        model_input(&self.metadata, features, slot, market, scratch)
    }

    /// Forecasts for a batch of inputs (any length; split into passes of [`BATCH`]).
    #[must_use]
    pub fn predict(&self, inputs: &[ModelInput]) -> Vec<Prediction> {
        let refs: Vec<&ModelInput> = inputs.iter().collect();
        self.predict_refs(&refs)
    }

    fn predict_refs(&self, inputs: &[&ModelInput]) -> Vec<Prediction> {
        inputs
            .chunks(BATCH)
            .flat_map(|chunk| self.predict_chunk(chunk))
            .collect()
    }

    fn predict_chunk(&self, inputs: &[&ModelInput]) -> Vec<Prediction> {
        let b = inputs.len();
        if b == 0 {
            return Vec::new();
        }
        let window = self.window();
        let statics: Vec<f32> = inputs.iter().flat_map(|i| i.statics).collect();
        let sequence: Vec<f32> = inputs.iter().flat_map(|i| i.sequence.iter().copied()).collect();
        let statics = Tensor::<2>::from_data(TensorData::new(statics, [b, N_STATIC]), &self.device); // [batch, n_static]
        let sequence =
            Tensor::<3>::from_data(TensorData::new(sequence, [b, window, N_CHANNELS]), &self.device); // [batch, window, channels]
        let out = self.model.forward(sequence, statics);
        let h = self.metadata.horizons.len();
        let k = self.metadata.quantile_levels.len();
        let to_vec = |t: TensorData| t.try_to_vec::<f32>().unwrap_or_default();
        let log_var = to_vec(out.log_variance.into_data());
        let log_q = to_vec(out.log_quantiles.into_data());
        let logit = to_vec(out.shortage_logit.into_data());
        (0..b)
            .map(|i| {
                let mut p = Prediction {
                    variance: (0..h).map(|j| f64::from(log_var[i * h + j]).exp()).collect(),
                    quantiles: (0..h)
                        .map(|j| {
                            (0..k)
                                .map(|l| f64::from(log_q[(i * h + j) * k + l]).exp())
                                .collect()
                        })
                        .collect(),
                    shortage_probability: (0..h)
                        .map(|j| 1.0 / (1.0 + (-f64::from(logit[i * h + j])).exp()))
                        .collect(),
                };
                if let Some(r) = &self.metadata.recalibration {
                    for (j, &horizon) in self.metadata.horizons.iter().enumerate() {
                        r.apply(horizon, &mut p.variance[j], &mut p.quantiles[j]);
                    }
                }
                p
            })
            .collect()
    }
}

/// Scaled model inputs at `slot` with `metadata`'s window and scaler, or None where the features
/// do not exist (too little history). The one place inputs are assembled, for `evaluate`, the
/// trainer's scoring and the server alike.
#[must_use]
pub fn model_input(
    metadata: &Metadata,
    features: &AssetFeatures,
    slot: usize,
    market: Option<&Market>,
    scratch: &mut Vec<f64>,
) -> Option<ModelInput> {
    let mut statics = features.static_at(slot, market, scratch)?;
    metadata.scaler.scale_static(&mut statics);
    let window = metadata.features.window;
    let mut sequence = vec![0.0; window * N_CHANNELS];
    features.sequence_at(slot, window, &mut sequence);
    metadata.scaler.scale_sequence(&mut sequence);
    Some(ModelInput { statics, sequence })
}

/// The market factor of a panel, when it holds the market asset, as this build's features take
/// it.
#[must_use]
pub fn panel_market(assets: &[Asset]) -> Option<Market> {
    panel_market_of_version(assets, volcast_core::features::FEATURE_VERSION)
}

/// [`panel_market`] as features of `version` take it (an artifact's own).
#[must_use]
pub fn panel_market_of_version(assets: &[Asset], version: u32) -> Option<Market> {
    assets
        .iter()
        .find(|a| a.id == MARKET_ASSET)
        .map(|a| Market::of_version(a, version))
}

impl Forecaster for LoadedModel {
    fn name(&self) -> &str {
        "model"
    }

    fn forecast(&self, request: &ForecastRequest<'_>) -> Result<ForecastTable, ForecastError> {
        let per_origin = self.predictions(request)?;
        Ok(self.table(&per_origin, request))
    }
}

impl LoadedModel {
    /// Refuses horizons the model does not forecast.
    ///
    /// # Errors
    /// [`ForecastError`] naming them.
    pub fn check_horizons(&self, wanted: &[usize]) -> Result<(), ForecastError> {
        let horizons = &self.metadata.horizons;
        let missing: Vec<usize> = wanted.iter().filter(|h| !horizons.contains(h)).copied().collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ForecastError {
                forecaster: self.metadata.id.clone(),
                message: format!("the model does not forecast horizons {missing:?} (it has {horizons:?})"),
            })
        }
    }

    /// The forecasts at every origin of `request` for all the artifact's horizons (None where the
    /// inputs do not exist or the degenerate-market rule refuses the window, as the service
    /// does), with the stored corrections applied and blended with the artifact's HAR where
    /// they say so ([`crate::artifact::Recalibration::har_weight`]).
    ///
    /// # Errors
    /// [`ForecastError`] when `request` asks for a horizon the model does not have.
    pub fn predictions(
        &self,
        request: &ForecastRequest<'_>,
    ) -> Result<Vec<Option<Prediction>>, ForecastError> {
        self.check_horizons(request.horizons)?;
        let horizons = &self.metadata.horizons;
        let market = self
            .use_market
            .then(|| panel_market_of_version(request.assets, self.metadata.features.version))
            .flatten();
        let prepared: Vec<PreparedAsset> = request
            .assets
            .par_iter()
            .map(|a| PreparedAsset::new(a, horizons))
            .collect();
        let features: Vec<AssetFeatures> = request
            .assets
            .par_iter()
            .zip(&prepared)
            .map(|(a, p)| AssetFeatures::new(a, p))
            .collect();
        // Inputs are built a few passes at a time: a window of every origin at once would take
        // gigabytes on a long evaluation.
        let mut out = Vec::with_capacity(request.origins.len());
        for chunk in request.origins.chunks(8 * BATCH) {
            let inputs: Vec<Option<ModelInput>> = chunk
                .par_iter()
                .map_init(Vec::new, |scratch, o| {
                    // The degenerate-market rule: the service refuses these windows, so the
                    // model as operated has no forecast there.
                    let grid = &request.assets[o.asset].grid;
                    if !grid.hours_without_trading(o.slot).is_empty() {
                        return None;
                    }
                    self.input_at(&features[o.asset], o.slot, market.as_ref(), scratch)
                })
                .collect();
            let present: Vec<&ModelInput> = inputs.iter().flatten().collect();
            let mut predictions = self.predict_refs(&present).into_iter();
            out.extend(chunk.iter().zip(&inputs).map(|(o, i)| {
                let mut p = i.as_ref().and_then(|_| predictions.next())?;
                self.metadata.combine_at(&prepared[o.asset], o.slot, &mut p);
                Some(p)
            }));
        }
        Ok(out)
    }

    /// The forecast table of `request` from its per-origin `predictions` (see
    /// [`Self::predictions`]), with the drawdown quantile when the artifact is risk-calibrated.
    #[must_use]
    pub fn table(&self, per_origin: &[Option<Prediction>], request: &ForecastRequest<'_>) -> ForecastTable {
        let horizons = &self.metadata.horizons;

        let mut table = ForecastTable {
            name: "model".into(),
            ..ForecastTable::default()
        };
        if let Some(risk) = &self.metadata.risk {
            let q = request.drawdown;
            let tau = q.tau as f64;
            let rule = DrawdownRule::Calibrated(&risk.model);
            table.drawdown = Some(
                per_origin
                    .iter()
                    .map(|p| {
                        p.as_ref().map_or(f64::NAN, |p| {
                            drawdown_within(
                                &VarianceCurve::new(horizons, &p.variance),
                                rule,
                                q.alpha,
                                tau,
                                DrawdownWindow::UpToTau,
                            )
                            .drawdown
                        })
                    })
                    .collect(),
            );
        }
        for &h in request.horizons {
            let j = horizons.iter().position(|&x| x == h).unwrap_or(0);
            let pick = |f: &dyn Fn(&Prediction) -> f64| -> Vec<f64> {
                per_origin
                    .iter()
                    .map(|p| p.as_ref().map_or(f64::NAN, f))
                    .collect()
            };
            let probability = pick(&|p| p.shortage_probability[j]);
            table.horizons.insert(
                h,
                HorizonForecasts {
                    variance: pick(&|p| p.variance[j]),
                    shortage: Some(ShortageForecast {
                        score: probability.clone(),
                        probability,
                    }),
                    quantiles: self
                        .metadata
                        .quantile_levels
                        .iter()
                        .enumerate()
                        .map(|(l, &level)| QuantileForecast {
                            level,
                            values: pick(&|p| p.quantiles[j][l]),
                        })
                        .collect(),
                },
            );
        }
        table
    }
}
