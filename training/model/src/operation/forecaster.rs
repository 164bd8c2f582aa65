//! The model as a [`Forecaster`]: with its stored corrections ([`FixedModel`]), operated with
//! them re-measured daily ([`DailyRecalibrated`]), and the latter keeping the [`Operation`]
//! behind its last forecast ([`Recorded`]); [`operated`] picks as the artifact declares.

use std::collections::HashMap;

use super::{DailyRecalibrated, Operation, day_of};
use crate::inference::LoadedModel;
use volcast_core::drawdown::{DrawdownCalibration, DrawdownRule, VarianceCurve};
use volcast_core::forecast::{ForecastError, ForecastRequest, ForecastTable, Forecaster};
use volcast_core::policy::{DrawdownWindow, drawdown_within};

/// `model` as it is meant to be operated: [`DailyRecalibrated`] when its corrections declare
/// [`Recalibration::rolling_days`](crate::artifact::Recalibration::rolling_days), else the artifact as stored.
#[must_use]
pub fn operated(model: &LoadedModel) -> Box<dyn Forecaster + '_> {
    match model.metadata.recalibration.as_ref().and_then(|r| r.rolling_days) {
        Some(days) => Box::new(DailyRecalibrated::new(model, days)),
        None => Box::new(FixedModel(model)),
    }
}

/// The artifact with its stored corrections, fixed.
#[derive(Debug)]
pub struct FixedModel<'a>(pub &'a LoadedModel);

impl Forecaster for FixedModel<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn forecast(&self, request: &ForecastRequest<'_>) -> Result<ForecastTable, ForecastError> {
        self.0.forecast(request)
    }
}

impl Forecaster for DailyRecalibrated<'_> {
    fn name(&self) -> &str {
        self.model.name()
    }

    fn forecast(&self, request: &ForecastRequest<'_>) -> Result<ForecastTable, ForecastError> {
        self.forecast_operated(request).map(|(table, _)| table)
    }
}

impl DailyRecalibrated<'_> {
    /// [`Forecaster::forecast`] with the [`Operation`] behind it (none for no origin).
    ///
    /// # Errors
    /// [`ForecastError`] when the model fails or does not forecast the horizons asked.
    pub fn forecast_operated(
        &self,
        request: &ForecastRequest<'_>,
    ) -> Result<(ForecastTable, Option<Operation>), ForecastError> {
        self.model.check_horizons(request.horizons)?;
        let assets = request.assets;
        if request.origins.is_empty() {
            return Ok((self.model.table(&[], request), None));
        }
        let first = request
            .origins
            .iter()
            .map(|o| day_of(assets[o.asset].grid.hour(o.slot)))
            .min()
            .unwrap_or(0);
        let op = self.operate(assets, request.origins, (first, first))?;
        let mut table = self.model.table(&op.served, request);
        // The drawdown at the level moved by the adaptive factors in force at each origin.
        if let (Some(risk), false) = (&self.model.metadata.risk, op.factors.is_empty()) {
            let q = request.drawdown;
            let tau = q.tau as f64;
            let horizons = &self.model.metadata.horizons;
            let per_day: HashMap<i64, DrawdownCalibration> = op
                .factors
                .iter()
                .map(|(&day, f)| (day, risk.model.with_factors(f)))
                .collect();
            table.drawdown = Some(
                request
                    .origins
                    .iter()
                    .zip(&op.served)
                    .map(|(o, p)| {
                        let day = day_of(assets[o.asset].grid.hour(o.slot));
                        match (p, per_day.get(&day)) {
                            (Some(p), Some(c)) => {
                                drawdown_within(
                                    &VarianceCurve::new(horizons, &p.variance),
                                    DrawdownRule::Calibrated(c),
                                    q.alpha,
                                    tau,
                                    DrawdownWindow::UpToTau,
                                )
                                .drawdown
                            }
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            );
        }
        Ok((table, Some(op)))
    }
}

/// A [`DailyRecalibrated`] that keeps the [`Operation`] behind its last forecast, for a caller
/// that scores it through [`Forecaster`] (as `evaluate` does) and then reads the daily job's
/// state (the blend in hindsight, each day's corrections) without operating the model again.
#[derive(Debug)]
pub struct Recorded<'a> {
    daily: DailyRecalibrated<'a>,
    last: std::sync::Mutex<Option<Operation>>,
}

impl<'a> Recorded<'a> {
    /// Records `daily`'s operations.
    #[must_use]
    pub fn new(daily: DailyRecalibrated<'a>) -> Self {
        Self {
            daily,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The model operated.
    #[must_use]
    pub fn daily(&self) -> &DailyRecalibrated<'a> {
        &self.daily
    }

    /// The operation behind the last forecast (taken: a second call gives none).
    #[must_use]
    pub fn take(&self) -> Option<Operation> {
        self.last.lock().ok().and_then(|mut last| last.take())
    }
}

impl Forecaster for Recorded<'_> {
    fn name(&self) -> &str {
        self.daily.name()
    }

    fn forecast(&self, request: &ForecastRequest<'_>) -> Result<ForecastTable, ForecastError> {
        let (table, op) = self.daily.forecast_operated(request)?;
        if let Ok(mut last) = self.last.lock() {
            *last = op;
        }
        Ok(table)
    }
}
