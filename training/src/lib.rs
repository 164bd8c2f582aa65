//! volcast's training side: loading candle files, training the network, calibrating and
//! recalibrating artifacts, evaluating forecasters, and the command-line binaries. The server
//! never depends on this crate (`.ci/run` checks).
//!
//! # Layout
//! - [`cli`]: what every binary shares (logging, exit status).
//! - [`data`]: candle files (CSV, gzip CSV, Parquet, Binance kline dumps) with polars.
//! - [`dataset`]: training rows, the time split, the scaler fit and the linear start.
//! - [`qlike_fit`]: the linear start refined on QLIKE, where the config asks.
//! - [`loss`]: the training losses (QLIKE, pinball, cross-entropy), masked.
//! - [`trainer`]: the training loop: AdamW, early stopping, checkpoints and resume.
//! - [`rolling`]: the model as operated: corrections re-measured daily on a trailing window.
//! - [`calibrate`]: an artifact's corrections and risk calibration, on fit-period data.
//! - [`evaluate`]: SPEC's evaluation protocol: every forecaster scored on the same points.
//! - [`pipeline`]: `train` end to end: load, train, fit baselines, write, calibrate, score.
//! - [`stress_session`]: what the `stress` command prepares (forecast, input, replay windows).
//! - [`stress_gpu`]: the stress simulation's draws on a burn device.
//! - [`walkforward`]: SPEC's yearly folds and their report.
//! - [`ingest`]: candle files into the market-data store, a file whole or not at all.
//! - [`anomaly`]: the anomaly detector's pool files, fit, evaluation and charts.
//! - `bin/`: `train`, `evaluate`, `walkforward`, `calibrate`, `stress`, `generate`, `ingest`,
//!   `anomaly`.

pub mod anomaly;
pub mod calibrate;
pub mod cli;
pub mod data;
pub mod dataset;
pub mod evaluate;
pub mod ingest;
pub mod loss;
pub mod pipeline;
pub mod qlike_fit;
pub mod rolling;
pub mod stress_gpu;
pub mod stress_session;
pub mod trainer;
pub mod walkforward;
