//! The walk-forward summary as Markdown, and the aggregates over folds it shares with the seed
//! sets and the HTML page: per horizon the worst fold and the mean, the pooled breaches, the
//! shortage scores' means.

use super::hindsight::{render_hindsight, render_start_window};
use super::seeds::render_seed_sets;
use super::{FoldShortage, FoldSummary, WalkForwardReport};
use volcast_core::forecast::HORIZONS;

/// The summary as Markdown: a row per fold and horizon, the worst fold per horizon, and the
/// risk policy per fold.
#[must_use]
pub fn render(report: &WalkForwardReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("# Walk-forward folds\n\n");
    if report.fixed_recalibration {
        out.push_str(
            "The model scored with the corrections and HAR weights stored at each fold's fit end, \
             fixed for the year (`--fixed-recalibration`: a diagnostic of the daily job); the \
             baselines, HAR operated included, as usual.\n\n",
        );
    }
    if report.without_market {
        out.push_str(
            "The model scored without the market factor, as the server serves it \
             (`--without-market`).\n\n",
        );
    }
    if let Some(first) = report.seed_sets.first() {
        let _ = writeln!(
            out,
            "Seeds {} (the other seed sets under \"Seed sets\" below).\n",
            first.seeds()
        );
    }
    out.push_str(
        "| fold | H | points | HAR | HAR operated | model | model / better | DM p | DM p, daily means | worst coverage gap |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for cells in fold_rows(&report.folds) {
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push_str(
        "\nWorst fold per horizon (highest model / better baseline), the mean over folds, and that \
         mean weighted by each fold's points:\n\n\
         | H | fold | model / better | mean over folds | weighted by points |\n|---|---|---:|---:|---:|\n",
    );
    for row in per_horizon(&report.folds) {
        if let Some((year, worst)) = row.worst {
            let _ = writeln!(
                out,
                "| {}h | {year} | {worst:.4} | {:.4} | {:.4} |",
                row.h, row.mean, row.weighted
            );
        }
    }
    out.push_str(
        "\nRisk policy per fold (breach rate / mean LT), then pooled over the folds; the last column \
         compares the two shapes at equal breach rate (each rescaled in hindsight to breach exactly \
         1 - alpha of the fold's origins):\n\n\
         | fold | model | Kupiec p | har_calibrated | mean LT at equal breach rate, model / har_calibrated |\n\
         |---|---:|---:|---:|---:|\n",
    );
    let lt = |v: Option<f64>| or_dash(v, 4);
    for f in &report.folds {
        let (rate, mean_lt, kupiec) = f.model_policy;
        let _ = writeln!(
            out,
            "| {} | {:.2}% / {mean_lt:.4} | {} | {} | {} / {} |",
            f.year,
            100.0 * rate,
            or_dash(kupiec, 3),
            f.har_calibrated_policy
                .map_or_else(|| "-".to_owned(), |(r, l)| format!("{:.2}% / {l:.4}", 100.0 * r)),
            lt(f.equal_rate_lt.0),
            lt(f.equal_rate_lt.1)
        );
    }
    if !report.folds.is_empty() {
        let (breaches, n, kupiec) = pooled(&report.folds);
        let _ = writeln!(
            out,
            "| pooled | {:.2}% ({breaches} of {n}) | {} | | |",
            100.0 * breaches as f64 / n.max(1) as f64,
            or_dash(kupiec, 3)
        );
    }
    out.push_str(&render_shortage(&report.folds));
    let sets = report.sets();
    out.push_str(&render_hindsight(&sets));
    out.push_str(&render_start_window(&sets));
    if !report.seed_sets.is_empty() {
        out.push_str(&render_seed_sets(&report.seed_sets));
    }
    out
}

/// The liquidity-shortage scores per fold and horizon, then their mean over the folds.
fn render_shortage(folds: &[FoldSummary]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "\nLiquidity shortage per fold (ROC AUC and Brier score of the baseline score and of the model \
         as served), then the mean over the folds:\n\n\
         | fold | H | base rate | ROC AUC baseline / model | Brier baseline / model |\n\
         |---|---|---:|---:|---:|\n",
    );
    for f in folds {
        for h in &f.horizons {
            if let Some(s) = h.shortage {
                let _ = writeln!(
                    out,
                    "| {} | {}h | {:.4} | {:.4} / {:.4} | {:.4} / {:.4} |",
                    f.year, h.h, s.base_rate, s.roc_auc[0], s.roc_auc[1], s.brier[0], s.brier[1]
                );
            }
        }
    }
    for (h, m) in shortage_over_folds(folds) {
        let _ = writeln!(
            out,
            "| mean | {h}h | | {:.4} / {:.4} | {:.4} / {:.4} |",
            m.roc_auc[0], m.roc_auc[1], m.brier[0], m.brier[1]
        );
    }
    out
}

/// Per horizon of [`HORIZONS`] scored with shortage labels in some fold: the mean over those
/// folds of each shortage score (base rate, ROC AUC and Brier, baseline's and model's).
pub(super) fn shortage_over_folds(folds: &[FoldSummary]) -> Vec<(usize, FoldShortage)> {
    HORIZONS
        .iter()
        .filter_map(|&h| {
            let rows: Vec<FoldShortage> = folds
                .iter()
                .filter_map(|f| f.horizons.iter().find(|x| x.h == h)?.shortage)
                .collect();
            let n = rows.len() as f64;
            let mean = |f: &dyn Fn(&FoldShortage) -> f64| rows.iter().map(f).sum::<f64>() / n;
            (!rows.is_empty()).then(|| {
                (
                    h,
                    FoldShortage {
                        base_rate: mean(&|s| s.base_rate),
                        roc_auc: [mean(&|s| s.roc_auc[0]), mean(&|s| s.roc_auc[1])],
                        brier: [mean(&|s| s.brier[0]), mean(&|s| s.brier[1])],
                    },
                )
            })
        })
        .collect()
}

/// `x` to `digits` decimals, or `-` where there is none.
pub(super) fn or_dash(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// The cells of the per-fold table, one row per fold and horizon: fold, H, points, the pooled
/// QLIKE of HAR, HAR operated and the model, the model over the better baseline, the DM p-values
/// (pooled, and on the daily cross-sectional means) and the worst coverage gap (`-` where there is none). The Markdown report and the page both
/// print these.
pub(super) fn fold_rows(folds: &[FoldSummary]) -> Vec<[String; 10]> {
    folds
        .iter()
        .flat_map(|f| {
            f.horizons.iter().map(move |h| {
                [
                    f.year.to_string(),
                    format!("{}h", h.h),
                    h.points.to_string(),
                    format!("{:.4}", h.har),
                    or_dash(h.har_operated, 4),
                    format!("{:.4}", h.model),
                    format!("{:.4}", h.ratio),
                    or_dash(h.dm_p, 4),
                    or_dash(h.dm_daily_p, 4),
                    or_dash(Some(h.worst_coverage_gap).filter(|g| g.is_finite()), 3),
                ]
            })
        })
        .collect()
}

/// One horizon's model / better baseline over the folds.
pub(super) struct OverFolds {
    pub(super) h: usize,
    /// The worst fold: its year and ratio (none without folds).
    pub(super) worst: Option<(i32, f64)>,
    /// The mean over the folds.
    pub(super) mean: f64,
    /// The mean over the folds weighted by each fold's points (each scored origin counts the
    /// same, whichever year it is in).
    pub(super) weighted: f64,
}

/// Per horizon of [`HORIZONS`]: the worst fold among those with a ratio, the mean over the folds
/// and that mean weighted by their points (NaN where a fold has no ratio, or no fold a point).
pub(super) fn per_horizon(folds: &[FoldSummary]) -> Vec<OverFolds> {
    HORIZONS
        .iter()
        .map(|&h| {
            let rows: Vec<(i32, f64, f64)> = folds
                .iter()
                .filter_map(|f| {
                    f.horizons
                        .iter()
                        .find(|x| x.h == h)
                        .map(|x| (f.year, x.ratio, x.points as f64))
                })
                .collect();
            let points: f64 = rows.iter().map(|r| r.2).sum();
            OverFolds {
                h,
                // A fold without a ratio (no points at that horizon) is no worst fold: it was
                // ranked above every other (NaN); the means then stay NaN, saying so.
                worst: rows
                    .iter()
                    .map(|r| (r.0, r.1))
                    .filter(|r| r.1.is_finite())
                    .max_by(|a, b| a.1.total_cmp(&b.1)),
                mean: rows.iter().map(|r| r.1).sum::<f64>() / rows.len().max(1) as f64,
                weighted: if points > 0.0 {
                    rows.iter().map(|r| r.1 * r.2).sum::<f64>() / points
                } else {
                    f64::NAN
                },
            }
        })
        .collect()
}

/// The model policy's breaches and origins pooled over `folds`, with Kupiec's p.
pub(super) fn pooled(folds: &[FoldSummary]) -> (usize, usize, Option<f64>) {
    let (breaches, n) = folds.iter().fold((0, 0), |(b, n), f| {
        (b + f.model_breaches.0, n + f.model_breaches.1)
    });
    let kupiec = folds
        .first()
        .and_then(|f| volcast_core::scoring::kupiec_p_value(breaches, n, 1.0 - f.alpha));
    (breaches, n, kupiec)
}
