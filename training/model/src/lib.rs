//! volcast's neural model: the burn modules, the artifact that stores them, and inference.
//! No optimiser and no file loading beyond the artifact: the server depends on this crate.
//!
//! # Layout
//! - [`device`]: choosing the compute device (flex CPU or wgpu), with one log line on fallback.
//! - [`network`]: the burn modules (sequence encoder, trunk, per-horizon heads).
//! - [`lstm_fused`]: the LSTM recurrence as one operation with a handwritten backward pass (CPU).
//! - [`config`]: the artifact's `config.json`, architecture and training hyperparameters.
//! - [`prediction`]: one origin's forecasts, per horizon.
//! - [`scaler`]: standardisation of the model's inputs, fitted at training, stored in the artifact.
//! - [`artifact`]: the artifact directory (weights, config, metadata), its id and its loading.
//! - [`inference`]: a loaded artifact forecasting at origins, batched.
//! - [`operation`]: the model as operated: its corrections re-measured every day (the daily
//!   job, run by the service and replayed by `evaluate`).

pub mod artifact;
pub mod config;
pub mod device;
pub mod inference;
pub mod lstm_fused;
pub mod network;
pub mod operation;
pub mod prediction;
pub mod scaler;
