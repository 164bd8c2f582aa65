//! One origin's forecasts, what the network gives and what the artifact's corrections and
//! combination turn into the served forecast ([`crate::inference`], [`crate::artifact`]).

/// One origin's forecasts, per horizon in the artifact's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Forecast variance of the horizon's summed log returns.
    pub variance: Vec<f64>,
    /// RV quantiles per horizon, one per level.
    pub quantiles: Vec<Vec<f64>>,
    /// Shortage probability per horizon.
    pub shortage_probability: Vec<f64>,
}
