//! SPEC's walk-forward folds: for each year Y, everything (network, its calibration, the
//! baselines) fitted on the candles opened up to (Y-1)-12-31 23:00, then Y's daily origins scored
//! exactly as `evaluate` does, with the model operated as in production and compared with the
//! better of HAR and HAR operated the same way. One summary: each fold, and the worst.
//!
//! A fold's artifact lives in `<out>/fold-<Y>/` (its `default` pointer names it), so an
//! interrupted run resumes: a fold with an artifact is scored again without retraining, and one
//! interrupted mid-training resumes from its checkpoint.

mod hindsight;
pub mod html;
mod report;
mod seeds;

pub use report::render;
use report::{OverFolds, fold_rows, or_dash, per_horizon, pooled, shortage_over_folds};
pub use seeds::{SeedSet, seed_set};

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::evaluate::report::EvaluationReport;
use crate::evaluate::{EvalConfig, evaluate};
use crate::pipeline::{Pipeline, run as train};
use volcast_core::forecast::HORIZONS;
use volcast_core::grid::Asset;
use volcast_core::time::{Bound, HOUR_MS, parse_time};
use volcast_model::artifact;
use volcast_model::config::TrainingConfig;
use volcast_model::device::{DeviceChoice, select};
use volcast_model::inference::LoadedModel;

/// What to run.
#[derive(Debug, Clone)]
pub struct WalkForward {
    /// Candle directories.
    pub dirs: Vec<PathBuf>,
    /// Years scored, each its own fold.
    pub years: Vec<i32>,
    /// Where each fold's artifact goes (`fold-<Y>/`).
    pub out: PathBuf,
    /// Training device.
    pub device: DeviceChoice,
    /// The network's config (the same for every fold).
    pub config: TrainingConfig,
    /// Progress bars while training.
    pub progress: bool,
    /// Stop each fold's training after this many steps (smoke tests).
    pub max_steps: Option<usize>,
    /// Networks per fold ([`Pipeline::members`]).
    pub members: usize,
    /// Backtest settings: alpha, tau, bonus.
    pub risk: (f64, usize, f64),
    /// Adaptive-calibration steps overriding each fold artifact's.
    pub adaptive: crate::cli::AdaptiveSteps,
    /// Disjoint seed sets, each trained and scored on every fold ([`seed_set`]): 1 is one run;
    /// more say how much a design's figures are the seeds'.
    pub seed_sets: usize,
    /// The trailing window of the daily job (days), for the model and HAR operated alike;
    /// none: each fold artifact's declared window.
    pub rolling_days: Option<usize>,
    /// Score each fold's model with the corrections and HAR weights stored at its fit end,
    /// fixed for the whole year (`evaluate --fixed-recalibration`), against the same baselines
    /// (HAR operated as usual): a diagnostic of what the daily job adds.
    pub fixed_recalibration: bool,
    /// Folds trained with the same design but early-stopped (`--refit-through-holdout false`,
    /// the same seeds), laid out as `out` is: each fold's model is operated with that fold's
    /// stored corrections and risk calibration, and its forecasts at origins before the fit end
    /// ([`crate::rolling::DailyRecalibrated::with_before_fit_end`]): what the daily job would
    /// measure if the artifact kept its early-stopped networks for the days before its fit end.
    pub before_fit_end_from: Option<PathBuf>,
    /// Carry these horizons' network variance from shorter ones (`Metadata::term_structure`)
    /// in each fold's model, overriding its artifact's; trained folds are rescored.
    pub term_structure: Option<std::collections::BTreeMap<usize, usize>>,
    /// Score each fold's model without the market factor, as the server serves it
    /// ([`LoadedModel::without_market`]); trained folds are rescored.
    pub without_market: bool,
}

/// One fold's summary.
#[derive(Debug, Clone, Serialize)]
pub struct FoldSummary {
    /// The year scored.
    pub year: i32,
    /// The fold's artifact id.
    pub artifact: String,
    /// Per horizon.
    pub horizons: Vec<FoldHorizon>,
    /// The model's risk policy at the backtest's settings: breach rate, mean LT, Kupiec p.
    pub model_policy: (f64, f64, Option<f64>),
    /// Its breaches and origins.
    pub model_breaches: (usize, usize),
    /// The backtest's quantile level.
    pub alpha: f64,
    /// The HAR-calibrated policy on the same origins: breach rate, mean LT.
    pub har_calibrated_policy: Option<(f64, f64)>,
    /// Mean LT of the model's and the HAR-calibrated policy's shapes rescaled, in hindsight, to
    /// breach exactly `1 - alpha` of the fold's origins: the two compared at equal breach rate.
    pub equal_rate_lt: (Option<f64>, Option<f64>),
    /// The daily job's state on each day of the year (empty for a model with fixed corrections).
    pub days: Vec<FoldDay>,
    /// Per horizon, the blend with HAR as served against fixed weights in hindsight over the
    /// year (a diagnostic; empty for a model without the blend).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blend_hindsight: Vec<crate::rolling::BlendHindsight>,
    /// The same over the daily origins of the trailing window the daily job starts the year
    /// from (its `rolling_days` before the fold's first day): what its first weights and
    /// corrections are measured on. Networks trained until the fit end
    /// (`refit_through_holdout`) were trained on those origins, so their figures there are in
    /// sample. Empty as `blend_hindsight` is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub start_window: Vec<crate::rolling::BlendHindsight>,
}

/// The state of the daily job on one day of a fold.
#[derive(Debug, Clone, Serialize)]
pub struct FoldDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Weight of the network against HAR per horizon of [`HORIZONS`] (none: stored corrections).
    pub har_weight: Vec<Option<f64>>,
    /// Power of the variance scale applied per horizon of [`HORIZONS`] (none: the whole scale;
    /// see `--shrink-as-served`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variance_power: Vec<Option<f64>>,
    /// Adaptive miscoverage factor of the drawdown at the backtest's window (the grid's first at
    /// or above it); none without adaptive calibration.
    pub miscoverage_factor: Option<f64>,
}

/// One fold's scores at one horizon.
#[derive(Debug, Clone, Serialize)]
pub struct FoldHorizon {
    /// Hours.
    pub h: usize,
    /// Common points.
    pub points: usize,
    /// Pooled QLIKE of HAR, HAR operated (when scored) and the model.
    pub har: f64,
    /// HAR operated like the model.
    pub har_operated: Option<f64>,
    /// The model.
    pub model: f64,
    /// Model over the better of HAR and HAR operated.
    pub ratio: f64,
    /// Diebold-Mariano p-value against the better of HAR and HAR operated.
    pub dm_p: Option<f64>,
    /// The same on the daily cross-sectional means (each day once).
    #[serde(default)]
    pub dm_daily_p: Option<f64>,
    /// Largest distance of an RV quantile's coverage from its level.
    pub worst_coverage_gap: f64,
    /// The liquidity-shortage scores (none where the horizon had no labelled points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortage: Option<FoldShortage>,
}

/// One fold's liquidity-shortage scores at one horizon (SPEC: ROC AUC and Brier, against the
/// baseline score's).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FoldShortage {
    /// Share of labelled shortages.
    pub base_rate: f64,
    /// ROC AUC of the baseline score and of the model.
    pub roc_auc: [f64; 2],
    /// Brier score of the baseline's logistic map and of the model.
    pub brier: [f64; 2],
}

/// Every fold, summarised, with the full evaluation reports.
#[derive(Debug, Clone, Serialize)]
pub struct WalkForwardReport {
    /// Per fold (of the first seed set).
    pub folds: Vec<FoldSummary>,
    /// Per fold, the whole `evaluate` report (of the first seed set).
    pub reports: Vec<EvaluationReport>,
    /// With more than one seed set, every set's summaries, the first's included.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seed_sets: Vec<SeedSet>,
    /// Whether the model was scored with its fit-end corrections fixed
    /// ([`WalkForward::fixed_recalibration`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fixed_recalibration: bool,
    /// Whether the model was scored without the market factor ([`WalkForward::without_market`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub without_market: bool,
}

impl WalkForwardReport {
    /// Each seed set's folds, or the one set's ([`Self::folds`]) without `--seed-sets`.
    pub(super) fn sets(&self) -> Vec<&[FoldSummary]> {
        if self.seed_sets.is_empty() {
            vec![&self.folds]
        } else {
            self.seed_sets.iter().map(|s| s.folds.as_slice()).collect()
        }
    }
}

/// Runs every fold: trains (or resumes, or reuses) its artifact, then scores its year.
///
/// # Errors
/// A data, training or evaluation failure, naming the fold.
pub fn run(wf: &WalkForward) -> anyhow::Result<WalkForwardReport> {
    // Settings that would refuse the scoring are refused before any fold is trained.
    let (alpha, tau, bonus) = wf.risk;
    crate::evaluate::check_backtest(alpha, tau, bonus).map_err(anyhow::Error::msg)?;
    // And a config each fold's training would refuse, before the data is read.
    wf.config
        .check(&HORIZONS)
        .map_err(|e| anyhow::anyhow!("training config: {e}"))?;
    let dirs = crate::pipeline::data_dirs(&wf.dirs)?;
    let assets = volcast_core::panel::to_panel(&crate::data::load_assets(&dirs, None)?);
    check_years(&wf.years, &assets)?;
    // What a reused fold must have been trained on.
    let data = crate::pipeline::data_hashes(&dirs)?;
    let mut reports = Vec::new();
    let mut seed_sets = Vec::new();
    for k in 0..wf.seed_sets.max(1) {
        let (config, out) = seed_set(&wf.config, &wf.out, wf.members, k);
        let first_seed = config.seed;
        let before_fit_end_from = wf
            .before_fit_end_from
            .as_ref()
            .map(|root| seed_set(&wf.config, root, wf.members, k).1);
        let set = WalkForward {
            config,
            out: out.clone(),
            before_fit_end_from,
            ..wf.clone()
        };
        let mut folds = Vec::new();
        for &year in &wf.years {
            let (summary, report) = fold(&set, &dirs, &assets, &data, year)
                .with_context(|| format!("fold {year}, seeds from {first_seed}"))?;
            folds.push(summary);
            if k == 0 {
                reports.push(report);
            }
        }
        seed_sets.push(SeedSet {
            first_seed,
            members: wf.members.max(1),
            out,
            folds,
        });
    }
    let folds = seed_sets[0].folds.clone();
    if seed_sets.len() == 1 {
        seed_sets.clear();
    }
    Ok(WalkForwardReport {
        folds,
        reports,
        seed_sets,
        fixed_recalibration: wf.fixed_recalibration,
        without_market: wf.without_market,
    })
}

/// Refuses, before any fold is trained, a year asked twice (it would count twice in the means
/// over folds) or one in which no asset has a candle after its first origin (nothing to score:
/// `evaluate` would say so only once the fold's networks were trained).
fn check_years(years: &[i32], assets: &[Asset]) -> anyhow::Result<()> {
    let first = assets.iter().map(|a| (a.grid.first_hour - 1) * HOUR_MS).min();
    let last = assets.iter().map(|a| a.grid.last_hour() * HOUR_MS).max();
    check_years_against(years, first.zip(last))
}

/// Refuses, before any fold is fitted, a year asked twice, one before the data (no candle opened
/// before it to fit on) or one after it (no candle closes after its first hour), against
/// `span`: the data's first candle's open time and its last candle's close time (`None`: no
/// candle).
///
/// # Errors
/// A year asked twice, or one outside the data.
pub fn check_years_against(years: &[i32], span: Option<(i64, i64)>) -> anyhow::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    let last = span.map(|(_, last)| last);
    for &year in years {
        if !seen.insert(year) {
            bail!("--years names {year} twice: each fold counts once in the means over folds");
        }
        let start = parse_time(&format!("{year}-01-01"), Bound::Start)?;
        if let Some((first, _)) = span
            && first >= start
        {
            bail!(
                "fold {year}: no candle opens before {} (the data starts at {}): nothing to fit on",
                volcast_core::time::format_ms(start),
                volcast_core::time::format_ms(first)
            );
        }
        if last.is_none_or(|l| l <= start) {
            bail!(
                "fold {year}: no candle closes after {} (the data ends at {}): nothing to score",
                volcast_core::time::format_ms(start),
                last.map_or_else(|| "no candle".into(), volcast_core::time::format_ms)
            );
        }
    }
    Ok(())
}

/// Fit until the open time of (year-1)-12-31 23:00; score year's origins.
fn fold(
    wf: &WalkForward,
    dirs: &[PathBuf],
    assets: &[Asset],
    data: &[(String, String)],
    year: i32,
) -> anyhow::Result<(FoldSummary, EvaluationReport)> {
    let fit_until_ms = parse_time(&format!("{}-12-31", year - 1), Bound::End)? / HOUR_MS * HOUR_MS;
    let fold_dir = wf.out.join(format!("fold-{year}"));
    let dir = match artifact::resolve(&fold_dir) {
        Ok(dir) => {
            tracing::info!(year, artifact = %dir.display(), "fold already trained: scoring it");
            dir
        }
        Err(_) => {
            tracing::info!(year, "training the fold's network, calibration and baselines");
            train(&Pipeline {
                dirs: dirs.to_vec(),
                fit_until_ms: Some(fit_until_ms),
                device: wf.device,
                config: wf.config.clone(),
                out: fold_dir.clone(),
                set_default: true,
                checkpoint_dir: None,
                resume: true,
                progress: wf.progress,
                max_steps: wf.max_steps,
                threads: None,
                members: wf.members,
            })?
            .dir
        }
    };
    let device = select(DeviceChoice::Cpu)?.device;
    let model = load_as_operated(&dir, wf, &device)?;
    let fit_end = crate::cli::fit_end_of(&model.metadata)?;
    if fit_end != fit_until_ms {
        bail!(
            "{} was fit on candles until {}, not the fold's fit end {}: it is another fold's or another run's; use another --out",
            dir.display(),
            model.metadata.fit_until,
            volcast_core::time::format_ms(fit_until_ms)
        );
    }
    check_reusable(&dir, &model.metadata, wf, data)?;
    let differ = config_differences(&model.config, &wf.config);
    if !differ.is_empty() {
        bail!(
            "{} was trained with another training config ({}): give the same settings (e.g. --refit-through-holdout false, --recency-half-life-days none or --weight-average-half-life-epochs none, for a fold trained before that setting), or use another --out",
            dir.display(),
            differ.join("; ")
        );
    }
    let before = match &wf.before_fit_end_from {
        Some(root) => Some(before_fit_end(
            &root.join(format!("fold-{year}")),
            &model,
            wf,
            data,
            &device,
        )?),
        None => None,
    };
    // Operated with the early-stopped fold's stored corrections and risk calibration.
    let model = match &before {
        Some(b) => {
            let mut metadata = model.metadata.clone();
            metadata.recalibration.clone_from(&b.metadata.recalibration);
            metadata.risk.clone_from(&b.metadata.risk);
            model.with_metadata(metadata)
        }
        None => model,
    };
    let (alpha, tau, bonus) = wf.risk;
    let config = EvalConfig {
        fit_until_ms,
        eval_from_ms: parse_time(&format!("{year}-01-01"), Bound::Start)?,
        eval_until_ms: parse_time(&format!("{year}-12-31"), Bound::End)?,
        horizons: HORIZONS.to_vec(),
        alpha,
        tau,
        bonus,
        fit_exponent: false,
        operated_days: wf
            .rolling_days
            .or(model.metadata.recalibration.as_ref().and_then(|r| r.rolling_days)),
    };
    let declared = model.metadata.recalibration.as_ref();
    let daily = config
        .operated_days
        .filter(|_| declared.is_some() && !wf.fixed_recalibration)
        .map(|days| {
            let daily = crate::rolling::DailyRecalibrated::new(&model, days)
                .with_adaptive(wf.adaptive.apply(declared.and_then(|r| r.adaptive.as_ref())));
            crate::rolling::Recorded::new(match &before {
                Some(b) => daily.with_before_fit_end(b),
                None => daily,
            })
        });
    if daily.is_none() {
        crate::cli::refuse_later_corrections(&model.metadata, fit_until_ms)
            .with_context(|| dir.display().to_string())?;
    }
    let fixed = crate::rolling::FixedModel(&model);
    let operated: &dyn volcast_core::forecast::Forecaster = match &daily {
        Some(d) => d,
        None => &fixed,
    };
    let mut report = evaluate(assets, &config, Some((operated, model.metadata.id.clone())))?;
    report.config.operation = Some(crate::evaluate::report::OperationReport {
        daily_window_days: daily.as_ref().map(|d| d.daily().days()),
        adaptive: daily.as_ref().and_then(|d| d.daily().adaptive().cloned()),
        term_structure: model.metadata.term_structure.clone(),
        without_market: wf.without_market,
        before_fit_end_from: wf.before_fit_end_from.as_ref().map(|p| p.display().to_string()),
        features_version: model.metadata.features.version,
    });
    let mut summary = summary(year, &model.metadata.id, &report);
    if let Some(daily) = &daily {
        let hour = |ms: i64| ms.div_euclid(HOUR_MS);
        let days = (
            hour(config.eval_from_ms),
            hour(config.eval_until_ms) - hour(config.eval_until_ms).rem_euclid(24),
        );
        // The operation behind the forecasts just scored, not the model operated again.
        let op = match daily.take() {
            Some(op) => op,
            None => daily.daily().operate(assets, &[], days)?,
        };
        summary.blend_hindsight = op.blend_in_hindsight(days, declared);
        let span = 24 * i64::try_from(daily.daily().days()).unwrap_or(0);
        summary.start_window = op.blend_in_hindsight((days.0 - span, days.0 - 24), declared);
        report.blend_hindsight.clone_from(&summary.blend_hindsight);
        let window = model
            .metadata
            .risk
            .as_ref()
            .and_then(|r| r.model.windows.iter().position(|w| w.tau >= tau));
        summary.days = op
            .corrections
            .iter()
            .filter(|(d, _)| (days.0..=days.1).contains(*d))
            .map(|(&day, r)| FoldDay {
                day: volcast_core::time::format_ms(volcast_core::time::hour_to_ms(day))
                    .chars()
                    .take(10)
                    .collect(),
                har_weight: HORIZONS
                    .iter()
                    .map(|h| r.as_ref().and_then(|r| r.har_weight.get(h)).copied())
                    .collect(),
                variance_power: if r.as_ref().is_some_and(|r| !r.variance_power.is_empty()) {
                    HORIZONS
                        .iter()
                        .map(|h| r.as_ref().and_then(|r| r.variance_power.get(h)).copied())
                        .collect()
                } else {
                    Vec::new()
                },
                miscoverage_factor: window.and_then(|w| op.factors.get(&day)?.get(w).copied()),
            })
            .collect();
    }
    Ok((summary, report))
}

/// The largest of `gaps`; NaN where there is none or one is NaN (a level without points, which
/// `f64::max` dropped: an empty horizon read as perfectly calibrated, 0.000).
fn worst_gap(gaps: impl Iterator<Item = f64>) -> f64 {
    let mut worst: Option<f64> = None;
    for g in gaps {
        if g.is_nan() {
            return f64::NAN;
        }
        worst = Some(worst.map_or(g, |w| w.max(g)));
    }
    worst.unwrap_or(f64::NAN)
}

fn summary(year: i32, artifact: &str, report: &EvaluationReport) -> FoldSummary {
    let horizons = report
        .horizons
        .iter()
        .map(|(&h, r)| {
            let q = |name: &str| r.qlike.get(name).copied();
            let har = q("har").unwrap_or(f64::NAN);
            let har_operated = q("har_operated");
            let model = q("model").unwrap_or(f64::NAN);
            FoldHorizon {
                h,
                points: r.n_points,
                har,
                har_operated,
                model,
                ratio: model / har_operated.map_or(har, |o| o.min(har)),
                dm_p: r.dm.as_ref().map(|d| d.p_value),
                dm_daily_p: r.dm.as_ref().and_then(|d| d.daily_p_value),
                worst_coverage_gap: r.calibration.get("model").map_or(f64::NAN, |c| {
                    worst_gap(c.iter().map(|c| (c.coverage - c.level).abs()))
                }),
                shortage: (r.shortage.n_points > 0).then(|| {
                    let s = &r.shortage;
                    let both = |m: &std::collections::BTreeMap<String, f64>| {
                        ["baseline", "model"].map(|k| m.get(k).copied().unwrap_or(f64::NAN))
                    };
                    FoldShortage {
                        base_rate: s.base_rate,
                        roc_auc: both(&s.roc_auc),
                        brier: both(&s.brier),
                    }
                }),
            }
        })
        .collect();
    let policies = &report.risk.policies;
    let model_policy = policies.get("model").map_or((f64::NAN, f64::NAN, None), |p| {
        (p.breach_rate, p.mean_lt, p.kupiec_p_value)
    });
    FoldSummary {
        year,
        artifact: artifact.to_owned(),
        horizons,
        model_policy,
        model_breaches: policies.get("model").map_or((0, 0), |p| (p.breaches, p.n)),
        alpha: report.risk.alpha,
        har_calibrated_policy: policies.get("har_calibrated").map(|p| (p.breach_rate, p.mean_lt)),
        equal_rate_lt: (
            report.risk.hindsight.get("model").map(|b| b.mean_lt),
            report.risk.hindsight.get("har_calibrated").map(|b| b.mean_lt),
        ),
        days: Vec::new(),
        blend_hindsight: Vec::new(),
        start_window: Vec::new(),
    }
}

/// The artifact in `dir` as the run operates it: with `--term-structure`, where one is asked
/// (the served fold's and the one whose forecasts precede the fit end alike).
fn load_as_operated(
    dir: &Path,
    wf: &WalkForward,
    device: &burn::tensor::Device,
) -> anyhow::Result<LoadedModel> {
    let mut model = LoadedModel::load(dir, device)?;
    if wf.without_market {
        model = model.without_market();
    }
    crate::cli::with_term_structure(model, wf.term_structure.as_ref(), wf.fixed_recalibration)
        .with_context(|| dir.display().to_string())
}

/// The early-stopped fold in `fold_dir` for `model`'s ([`WalkForward::before_fit_end_from`]):
/// the same fit end, and the same training config but for the refit.
///
/// # Errors
/// No artifact there, or one fitted to another end or trained with another design.
fn before_fit_end(
    fold_dir: &Path,
    model: &LoadedModel,
    wf: &WalkForward,
    data: &[(String, String)],
    device: &burn::tensor::Device,
) -> anyhow::Result<LoadedModel> {
    let dir = artifact::resolve(fold_dir)
        .with_context(|| format!("--before-fit-end-from: no trained fold in {}", fold_dir.display()))?;
    // With the fold's term structure too: the forecasts before the fit end are carried as the
    // served ones are.
    let before = load_as_operated(&dir, wf, device)?;
    if before.metadata.fit_until != model.metadata.fit_until {
        bail!(
            "--before-fit-end-from: {} is fitted until {}, the fold until {}",
            dir.display(),
            before.metadata.fit_until,
            model.metadata.fit_until
        );
    }
    // Trained as the fold is, on the same data, but early-stopped (the config check below).
    check_reusable(&dir, &before.metadata, wf, data).context("--before-fit-end-from")?;
    let asked = wf.config.clone().with_refit_through_holdout(Some(false));
    let differ = config_differences(&before.config, &asked);
    if !differ.is_empty() {
        bail!(
            "--before-fit-end-from: {} was not trained as the fold's design early-stopped ({})",
            dir.display(),
            differ.join("; ")
        );
    }
    Ok(before)
}

/// Refuses the artifact in `dir` (its `metadata`) as a fold of this run where it was trained
/// with another step limit (a smoke run is never scored as a trained fold, nor the reverse),
/// on other candle files than `data`, with another number of networks, or on features of
/// another version: the checks a reused fold gets, and the early-stopped fold of
/// `--before-fit-end-from` too.
fn check_reusable(
    dir: &Path,
    metadata: &artifact::Metadata,
    wf: &WalkForward,
    data: &[(String, String)],
) -> anyhow::Result<()> {
    // Loading serves an older version's artifact with its own features, but a fold of this run
    // is this build's design: one trained on older features is retrained, not scored beside it.
    let version = volcast_core::features::FEATURE_VERSION;
    if metadata.features.version != version {
        bail!(
            "{} was trained on features version {}, this build trains version {version}: a fold \
             is reused only on this build's features; use another --out",
            dir.display(),
            metadata.features.version
        );
    }
    if metadata.max_steps != wf.max_steps {
        let limit =
            |m: Option<usize>| m.map_or_else(|| "full training".to_owned(), |n| format!("--max-steps {n}"));
        bail!(
            "{} was trained with {}, this run asks for {}: a smoke run is never scored as a trained \
             fold (or the reverse); use another --out",
            dir.display(),
            limit(metadata.max_steps),
            limit(wf.max_steps)
        );
    }
    let recorded = crate::pipeline::recorded_data(metadata);
    if recorded != data {
        let differ = recorded
            .iter()
            .filter(|f| !data.contains(f))
            .chain(data.iter().filter(|f| !recorded.contains(f)))
            .map(|(name, _)| name.as_str())
            .next()
            .unwrap_or_default();
        bail!(
            "{} was trained on other candle files than --data holds now ({differ} differs or is \
             missing on one side): a fold is reused only on the data it was trained on; use another --out",
            dir.display()
        );
    }
    let members = metadata.members();
    if members != wf.members.max(1) {
        bail!(
            "{} holds {} network(s) but {} were asked for: score it with --members {}, or use another --out",
            dir.display(),
            members,
            wf.members,
            members
        );
    }
    Ok(())
}

/// Writes the JSON report to `path`.
///
/// # Errors
/// A write failure.
pub fn write_json(report: &WalkForwardReport, path: &Path) -> anyhow::Result<()> {
    crate::cli::write_report(path, serde_json::to_string_pretty(report)?)
}

/// The fields in which `trained` (a fold's stored config) and `asked` differ, as
/// `name: trained vs asked`: a fold found on disk is scored only under the config it was
/// trained with, so that a changed default never scores an old fold as the new design.
fn config_differences(trained: &TrainingConfig, asked: &TrainingConfig) -> Vec<String> {
    // A config written before the refit's field (`None`) trained without it, as `Some(false)` does.
    let explicit = |c: &TrainingConfig| {
        let refit = c.refits_through_holdout();
        let per_horizon = c.has_per_horizon_epochs();
        let log_mse = c.has_log_mse_variance();
        let shortage_skip = c.has_shortage_skip_from_baseline();
        let skip_qlike = c.has_skip_qlike();
        let mut c = c
            .clone()
            .with_refit_through_holdout(Some(refit))
            .with_per_horizon_epochs(Some(per_horizon))
            .with_log_mse_variance(Some(log_mse))
            .with_shortage_skip_from_baseline(Some(shortage_skip))
            .with_skip_qlike(Some(skip_qlike));
        c.model.lognormal_mean = Some(c.model.has_lognormal_mean());
        c
    };
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (
        serde_json::to_value(explicit(trained)),
        serde_json::to_value(explicit(asked)),
    ) else {
        return vec!["unreadable".to_owned()];
    };
    let null = serde_json::Value::Null;
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null));
            (x != y).then(|| format!("{k}: {x} vs {y}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_is_reused_only_at_its_step_limit_data_and_member_count() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-artifacts/e511b0d43982c4cf");
        let committed = artifact::read_metadata(&dir).unwrap();
        // The committed artifact's features are version 1: as this build's, it is reusable.
        let mut metadata = committed.clone();
        metadata.features.version = volcast_core::features::FEATURE_VERSION;
        let data = crate::pipeline::recorded_data(&metadata);
        let wf = WalkForward {
            dirs: Vec::new(),
            years: vec![2021],
            out: PathBuf::new(),
            device: DeviceChoice::Cpu,
            config: TrainingConfig::default_run(),
            progress: false,
            max_steps: metadata.max_steps,
            members: metadata.members(),
            risk: (0.99, 4, 0.05),
            adaptive: crate::cli::AdaptiveSteps::default(),
            seed_sets: 1,
            rolling_days: None,
            fixed_recalibration: false,
            before_fit_end_from: None,
            term_structure: None,
            without_market: false,
        };
        check_reusable(&dir, &metadata, &wf, &data).unwrap();
        let refused = |wf: &WalkForward, data: &[(String, String)]| {
            check_reusable(&dir, &metadata, wf, data).unwrap_err().to_string()
        };
        let smoke = WalkForward {
            max_steps: Some(5),
            ..wf.clone()
        };
        assert!(refused(&smoke, &data).contains("--max-steps 5"));
        let other = WalkForward {
            members: metadata.members() + 1,
            ..wf.clone()
        };
        assert!(refused(&other, &data).contains("network(s)"));
        let mut changed = data.clone();
        changed[0].1 = "0".repeat(64);
        assert!(refused(&wf, &changed).contains("other candle files"));
        assert!(refused(&wf, &data[1..]).contains("other candle files"));
        let older = check_reusable(&dir, &committed, &wf, &data)
            .unwrap_err()
            .to_string();
        assert!(older.contains("features version 1"), "{older}");
    }

    #[test]
    fn a_year_asked_twice_or_without_candles_after_its_start_is_refused_before_training() {
        // One asset's hours over 2020, closing up to 2021-01-01 00:00.
        let start = parse_time("2020-01-01", Bound::Start).unwrap();
        let candles: Vec<volcast_core::candles::Candle> = (0..=366 * 24)
            .map(|h| volcast_core::candles::Candle {
                open_time: start - HOUR_MS + h * HOUR_MS,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
                quote_volume: 1.0,
            })
            .collect();
        let assets = volcast_core::panel::to_panel(&[volcast_core::candles::AssetCandles {
            asset: "A".into(),
            candles,
        }]);
        let last_close = assets[0].grid.last_hour() * HOUR_MS;
        assert_eq!(last_close, parse_time("2021-01-01", Bound::Start).unwrap());
        assert!(check_years(&[2020], &assets).is_ok());
        let twice = check_years(&[2020, 2020], &assets).unwrap_err().to_string();
        assert!(twice.contains("2020 twice"), "{twice}");
        // The data's last candle closes at 2021's first origin: nothing after it to score.
        let after = check_years(&[2020, 2021], &assets).unwrap_err().to_string();
        assert!(
            after.contains("fold 2021") && after.contains("nothing to score"),
            "{after}"
        );
        assert!(check_years(&[2020], &[]).is_err());
        // The data's first candle opens at 2019-12-31 23:00: nothing before 2019 to fit on.
        let before = check_years(&[2019, 2020], &assets).unwrap_err().to_string();
        assert!(
            before.contains("fold 2019") && before.contains("nothing to fit on"),
            "{before}"
        );
    }

    #[test]
    fn a_fold_trained_under_another_config_is_named_field_by_field() {
        let now = TrainingConfig::default_run();
        assert!(config_differences(&now, &now.clone()).is_empty());
        let before = now.clone().with_recency_half_life_days(None).with_max_epochs(3);
        assert_eq!(
            config_differences(&before, &now),
            ["max_epochs: 3 vs 12", "recency_half_life_days: null vs 365.0"]
        );
        // A config from before the refit's field trained without it: asked without it, it is
        // the same; asked with it (today's default), the difference reads false vs true.
        let old = now.clone().with_refit_through_holdout(None);
        let without = now.clone().with_refit_through_holdout(Some(false));
        assert!(config_differences(&old, &without).is_empty());
        assert_eq!(
            config_differences(&old, &now),
            ["refit_through_holdout: false vs true"]
        );
        // Likewise per-horizon epochs.
        let one_count = now.clone().with_per_horizon_epochs(None);
        assert!(config_differences(&one_count, &now.clone().with_per_horizon_epochs(Some(false))).is_empty());
        assert_eq!(
            config_differences(&one_count, &now.clone().with_per_horizon_epochs(Some(true))),
            ["per_horizon_epochs: false vs true"]
        );
        // Likewise the squared log error and the lognormal mean (a field of the model's config).
        let mut explicit = now.clone().with_log_mse_variance(Some(false));
        explicit.model.lognormal_mean = Some(false);
        assert!(config_differences(&now, &explicit).is_empty());
        let mut lognormal = explicit.clone().with_log_mse_variance(Some(true));
        lognormal.model.lognormal_mean = Some(true);
        let differ = config_differences(&now, &lognormal);
        assert_eq!(differ.len(), 2, "{differ:?}");
        assert_eq!(differ[0], "log_mse_variance: false vs true");
        assert!(
            differ[1].starts_with("model: ") && differ[1].contains("\"lognormal_mean\":true"),
            "{differ:?}"
        );
    }
}
