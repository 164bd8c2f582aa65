//! Seed sets (`walkforward --seed-sets K`): the design trained and scored again with disjoint
//! seeds, and the report that sets the sets side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{FoldHorizon, FoldShortage, FoldSummary, per_horizon, pooled, shortage_over_folds};
use volcast_core::forecast::HORIZONS;
use volcast_model::config::TrainingConfig;

/// One seed set's folds.
#[derive(Debug, Clone, Serialize)]
pub struct SeedSet {
    /// Its networks' seeds, `first_seed .. first_seed + members - 1`.
    pub first_seed: u64,
    /// Networks per fold.
    pub members: usize,
    /// Where its folds are (`fold-<Y>/` under it).
    pub out: PathBuf,
    /// Per fold.
    pub folds: Vec<FoldSummary>,
}

impl SeedSet {
    /// `42-44`, or `42` for one network.
    pub(super) fn seeds(&self) -> String {
        match self.members {
            0 | 1 => self.first_seed.to_string(),
            m => format!(
                "{}-{}",
                self.first_seed,
                self.first_seed.wrapping_add(m as u64 - 1)
            ),
        }
    }
}

/// Seed set `k`'s training config and folds directory: its networks' seeds follow the previous
/// set's (`seed + k members` on), so no two sets share a network; set 0 is the run without
/// `--seed-sets` (its folds in `out`, so a trained run gains a second set without retraining),
/// set `k` lives in `out/seeds-<its first seed>/`.
#[must_use]
pub fn seed_set(config: &TrainingConfig, out: &Path, members: usize, k: usize) -> (TrainingConfig, PathBuf) {
    // Wrapping, as the trainer's member seeds do (a seed near u64::MAX overflowed).
    let seed = config.seed.wrapping_add((k * members.max(1)) as u64);
    let dir = if k == 0 {
        out.to_path_buf()
    } else {
        out.join(format!("seeds-{seed}"))
    };
    (config.clone().with_seed(seed), dir)
}

/// The seed sets side by side: each set's means over folds, their mean, and per fold and
/// horizon every set's ratio with their mean and spread.
pub(super) fn render_seed_sets(sets: &[SeedSet]) -> String {
    let mut out = String::from(
        "\n## Seed sets\n\nThe same design trained and scored again with disjoint seeds: model / better baseline, \
         mean over folds per horizon (worst fold in brackets), and the risk policy pooled over the folds.\n\n",
    );
    out.push_str(&seeds_header(" pooled breaches (Kupiec p) |", "---|"));
    let cell = |worst: Option<(i32, f64)>, mean: f64| {
        worst.map_or_else(
            || format!("{mean:.4}"),
            |(y, w)| format!("{mean:.4} ({y}: {w:.4})"),
        )
    };
    for set in sets {
        let (breaches, n, kupiec) = pooled(&set.folds);
        let cells: Vec<String> = per_horizon(&set.folds)
            .into_iter()
            .map(|row| cell(row.worst, row.mean))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.2}% ({}) |",
            set.seeds(),
            cells.join(" | "),
            100.0 * breaches as f64 / n.max(1) as f64,
            super::or_dash(kupiec, 3)
        );
    }
    let first = &sets[0];
    let cells: Vec<String> = per_horizon(&mean_over_sets(sets))
        .into_iter()
        .map(|row| cell(row.worst, row.mean))
        .collect();
    let _ = writeln!(out, "| **mean over sets** | {} | |", cells.join(" | "));
    let weighted: Vec<String> = per_horizon(&mean_over_sets(sets))
        .into_iter()
        .map(|row| format!("{}h {:.4}", row.h, row.weighted))
        .collect();
    let _ = writeln!(
        out,
        "\nThe mean over sets, its mean over folds weighted by each fold's points: {}.",
        weighted.join(", ")
    );
    let names: Vec<String> = sets.iter().map(SeedSet::seeds).collect();
    let _ = writeln!(
        out,
        "\n| fold | H | {} | mean | spread |\n|---|---|{}---:|---:|",
        names.join(" | "),
        "---:|".repeat(names.len())
    );
    for f in &first.folds {
        for x in &f.horizons {
            let ratios = set_ratios(sets, f.year, x.h);
            let (mean, spread) = mean_and_spread(&ratios);
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.4}")).collect();
            let _ = writeln!(
                out,
                "| {} | {}h | {} | {mean:.4} | {spread:.4} |",
                f.year,
                x.h,
                each.join(" | ")
            );
        }
    }
    out.push_str(&render_shortage_sets(sets));
    out
}

/// The shortage scores of the sets: each set's mean over folds of the model's ROC AUC and Brier
/// per horizon and their mean, then per fold and horizon the mean over sets beside the baseline.
fn render_shortage_sets(sets: &[SeedSet]) -> String {
    let mut out = String::from(
        "\nLiquidity shortage: the model's ROC AUC / Brier score, mean over folds per horizon, per set \
         and on the mean over sets; then per fold the mean over sets beside the baseline score's:\n\n",
    );
    out.push_str(&seeds_header("", ""));
    let row = |folds: &[FoldSummary]| -> String {
        let means = shortage_over_folds(folds);
        HORIZONS
            .iter()
            .map(|h| {
                means.iter().find(|m| m.0 == *h).map_or_else(
                    || "-".to_owned(),
                    |(_, m)| format!("{:.4} / {:.4}", m.roc_auc[1], m.brier[1]),
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    for set in sets {
        let _ = writeln!(out, "| {} | {} |", set.seeds(), row(&set.folds));
    }
    let mean = mean_over_sets(sets);
    let _ = writeln!(out, "| **mean over sets** | {} |", row(&mean));
    out.push_str(
        "\n| fold | H | ROC AUC baseline / model (mean over sets) | Brier baseline / model (mean over sets) |\n\
         |---|---|---:|---:|\n",
    );
    for f in &mean {
        for x in &f.horizons {
            if let Some(s) = x.shortage {
                let _ = writeln!(
                    out,
                    "| {} | {}h | {:.4} / {:.4} | {:.4} / {:.4} |",
                    f.year, x.h, s.roc_auc[0], s.roc_auc[1], s.brier[0], s.brier[1]
                );
            }
        }
    }
    out
}

/// The header of a table with a row per seed set and a column per horizon of [`HORIZONS`], then
/// `extra` columns (their heads, and `extra_rule` their rule cells).
fn seeds_header(extra: &str, extra_rule: &str) -> String {
    let heads: Vec<String> = HORIZONS.iter().map(|h| format!("{h}h")).collect();
    format!(
        "| seeds | {} |{extra}\n|---|{}{extra_rule}\n",
        heads.join(" | "),
        "---:|".repeat(heads.len())
    )
}

/// The first set's folds with each ratio replaced by its mean over the sets that scored it.
pub(super) fn mean_over_sets(sets: &[SeedSet]) -> Vec<FoldSummary> {
    sets.first().map_or_else(Vec::new, |first| {
        first
            .folds
            .iter()
            .map(|f| {
                let mut m = f.clone();
                for x in &mut m.horizons {
                    x.ratio = mean_and_spread(&set_ratios(sets, f.year, x.h)).0;
                    x.shortage = mean_shortage(sets, f.year, x.h);
                }
                m
            })
            .collect()
    })
}

/// The shortage scores at `year` and `h`, the model's averaged over the sets that scored them
/// (the baseline's are the same in every set); none where no set has them.
fn mean_shortage(sets: &[SeedSet], year: i32, h: usize) -> Option<FoldShortage> {
    let each: Vec<FoldShortage> = set_horizons(sets, year, h).filter_map(|x| x.shortage).collect();
    let first = *each.first()?;
    let n = each.len() as f64;
    Some(FoldShortage {
        roc_auc: [
            first.roc_auc[0],
            each.iter().map(|s| s.roc_auc[1]).sum::<f64>() / n,
        ],
        brier: [first.brier[0], each.iter().map(|s| s.brier[1]).sum::<f64>() / n],
        ..first
    })
}

/// The mean of `values` and their range (largest less smallest).
pub(super) fn mean_and_spread(values: &[f64]) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let spread = values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - values.iter().copied().fold(f64::INFINITY, f64::min);
    (mean, spread)
}

/// Every set's model / better baseline at `year` and `h` (the sets that scored it).
pub(super) fn set_ratios(sets: &[SeedSet], year: i32, h: usize) -> Vec<f64> {
    set_horizons(sets, year, h).map(|x| x.ratio).collect()
}

/// Every set's scores at `year` and `h`, in set order (the sets that scored it).
fn set_horizons(sets: &[SeedSet], year: i32, h: usize) -> impl Iterator<Item = &FoldHorizon> {
    sets.iter().filter_map(move |s| {
        s.folds
            .iter()
            .find(|f| f.year == year)?
            .horizons
            .iter()
            .find(|x| x.h == h)
    })
}

#[cfg(test)]
mod tests {
    use super::super::{FoldHorizon, WalkForwardReport, config_differences, render};
    use super::*;

    fn fold_with(year: i32, ratios: [f64; 3], breaches: (usize, usize)) -> FoldSummary {
        FoldSummary {
            year,
            artifact: format!("a{year}"),
            horizons: HORIZONS
                .iter()
                .zip(ratios)
                .map(|(&h, ratio)| FoldHorizon {
                    h,
                    points: 100,
                    har: 1.0,
                    har_operated: Some(1.0),
                    model: ratio,
                    ratio,
                    dm_p: None,
                    dm_daily_p: None,
                    worst_coverage_gap: 0.0,
                    shortage: Some(FoldShortage {
                        base_rate: 0.1,
                        roc_auc: [0.8, ratio],
                        brier: [0.1, ratio / 10.0],
                    }),
                })
                .collect(),
            model_policy: (0.01, 0.8, None),
            model_breaches: breaches,
            alpha: 0.99,
            har_calibrated_policy: None,
            equal_rate_lt: (None, None),
            days: Vec::new(),
            blend_hindsight: Vec::new(),
            start_window: Vec::new(),
        }
    }

    /// The report of `sets`, operated, its folds the first set's.
    fn report_of(sets: &[SeedSet]) -> WalkForwardReport {
        WalkForwardReport {
            folds: sets[0].folds.clone(),
            reports: Vec::new(),
            seed_sets: sets.to_vec(),
            fixed_recalibration: false,
            without_market: false,
        }
    }

    /// A fold with no points at a horizon (a year past the data's end) has no ratio: it was the
    /// "worst fold" (NaN ranked above every number); the worst is now among the folds with a
    /// ratio, the means say NaN, and its coverage gap reads `-`, not 0.000.
    #[test]
    fn a_fold_without_a_ratio_is_no_worst_fold() {
        let mut empty = fold_with(2022, [0.9, 0.9, f64::NAN], (0, 10));
        empty.horizons[2].points = 0;
        empty.horizons[2].worst_coverage_gap = f64::NAN;
        let folds = [fold_with(2021, [0.95, 0.97, 1.05], (1, 100)), empty];
        let rows = per_horizon(&folds);
        assert_eq!(rows[2].worst, Some((2021, 1.05)));
        assert!(rows[2].mean.is_nan() && rows[2].weighted.is_nan());
        assert_eq!(rows[0].worst, Some((2021, 0.95)));
        assert!((rows[0].mean - 0.925).abs() < 1e-12);
        let cells = super::super::fold_rows(&folds);
        assert_eq!(cells[5][9], "-");
        assert_eq!(cells[2][9], "0.000");
        assert_eq!(super::super::worst_gap([0.01, 0.03, 0.02].into_iter()), 0.03);
        assert!(super::super::worst_gap([0.01, f64::NAN].into_iter()).is_nan());
        assert!(super::super::worst_gap(std::iter::empty()).is_nan());
    }

    #[test]
    fn means_over_folds_weighted_by_points_count_each_origin_the_same() {
        // 2020 holds three times 2019's points.
        let with_points = |mut f: FoldSummary, points| {
            f.horizons.iter_mut().for_each(|x| x.points = points);
            f
        };
        let set = |first_seed, ratios_2019, ratios_2020| SeedSet {
            first_seed,
            members: 3,
            out: PathBuf::new(),
            folds: vec![
                with_points(fold_with(2019, ratios_2019, (10, 1000)), 100),
                with_points(fold_with(2020, ratios_2020, (10, 1000)), 300),
            ],
        };
        let sets = [
            set(42, [0.98, 0.96, 1.01], [0.97, 0.95, 0.99]),
            set(45, [1.00, 0.97, 1.03], [0.97, 0.96, 0.98]),
        ];
        let rows = per_horizon(&sets[0].folds);
        assert!((rows[0].mean - 0.975).abs() < 1e-12);
        assert!((rows[0].weighted - 0.9725).abs() < 1e-12, "{}", rows[0].weighted);
        let report = report_of(&sets);
        let text = render(&report);
        assert!(
            text.contains("| 4h | 2019 | 0.9800 | 0.9750 | 0.9725 |"),
            "{text}"
        );
        // Over the sets' means per fold: 4 h (0.99 + 3 x 0.97) / 4, 24 h (0.965 + 3 x 0.955) / 4,
        // 168 h (1.02 + 3 x 0.985) / 4 = 0.99375.
        assert!(
            text.contains("weighted by each fold's points: 4h 0.9750, 24h 0.9575, 168h 0.993"),
            "{text}"
        );
        // No points at all: no weighted mean, not a division by zero.
        let empty = vec![with_points(fold_with(2019, [1.0; 3], (0, 0)), 0)];
        assert!(per_horizon(&empty)[0].weighted.is_nan());
    }

    #[test]
    fn seed_sets_take_disjoint_seeds_and_the_first_keeps_the_run_s_folds() {
        let config = TrainingConfig::default_run().with_seed(42);
        let out = Path::new("wf");
        let sets: Vec<(u64, PathBuf)> = (0..3)
            .map(|k| {
                let (c, dir) = seed_set(&config, out, 3, k);
                (c.seed, dir)
            })
            .collect();
        assert_eq!(
            sets,
            [
                (42, PathBuf::from("wf")),
                (45, PathBuf::from("wf/seeds-45")),
                (48, PathBuf::from("wf/seeds-48"))
            ]
        );
        // Nothing else of the config changes.
        assert!(config_differences(&seed_set(&config, out, 3, 1).0, &config) == ["seed: 45 vs 42"]);
        assert_eq!(seed_set(&config, out, 1, 2).0.seed, 44);
    }

    #[test]
    fn the_seed_sets_table_gives_each_set_s_means_and_per_fold_their_mean_and_spread() {
        let set = |first_seed, folds| SeedSet {
            first_seed,
            members: 3,
            out: PathBuf::new(),
            folds,
        };
        let sets = [
            set(
                42,
                vec![
                    fold_with(2019, [0.98, 0.96, 1.01], (10, 1000)),
                    fold_with(2020, [0.97, 0.95, 0.99], (10, 1000)),
                ],
            ),
            set(
                45,
                vec![
                    fold_with(2019, [1.00, 0.97, 1.03], (12, 1000)),
                    fold_with(2020, [0.97, 0.96, 0.98], (8, 1000)),
                ],
            ),
        ];
        let report = report_of(&sets);
        let text = render(&report);
        assert!(text.contains("Seeds 42-44 (the other seed sets"), "{text}");
        assert!(
            text.contains(
                "| seeds | 4h | 24h | 168h | pooled breaches (Kupiec p) |\n|---|---:|---:|---:|---|\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("| seeds | 4h | 24h | 168h |\n|---|---:|---:|---:|\n"),
            "{text}"
        );
        // Each set's means over folds, worst fold in brackets, pooled breaches.
        assert!(
            text.contains(
                "| 42-44 | 0.9750 (2019: 0.9800) | 0.9550 (2019: 0.9600) | 1.0000 (2019: 1.0100) | 1.00% ("
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| 45-47 | 0.9850 (2019: 1.0000) | 0.9650 (2019: 0.9700) | 1.0050 (2019: 1.0300) | 1.00% ("
            ),
            "{text}"
        );
        // The mean over sets: per fold first (2019 at 4 h: 0.99), then over folds.
        assert!(
            text.contains("| **mean over sets** | 0.9800 (2019: 0.9900) | 0.9600 (2019: 0.9650) | 1.0025 (2019: 1.0200) | |"),
            "{text}"
        );
        assert!(
            text.contains("| 2019 | 168h | 1.0100 | 1.0300 | 1.0200 | 0.0200 |"),
            "{text}"
        );
        assert!(
            text.contains("| 2020 | 24h | 0.9500 | 0.9600 | 0.9550 | 0.0100 |"),
            "{text}"
        );
        // Shortage: per fold of the first set and its mean over folds (the helper's model ROC
        // AUC is the ratio, its Brier a tenth of it; the baseline's 0.8 and 0.1)...
        assert!(
            text.contains("| 2019 | 4h | 0.1000 | 0.8000 / 0.9800 | 0.1000 / 0.0980 |"),
            "{text}"
        );
        assert!(
            text.contains("| mean | 4h | | 0.8000 / 0.9750 | 0.1000 / 0.0975 |"),
            "{text}"
        );
        // ... per set, on the mean over sets, and per fold on the mean over sets.
        assert!(
            text.contains("| 42-44 | 0.9750 / 0.0975 | 0.9550 / 0.0955 | 1.0000 / 0.1000 |"),
            "{text}"
        );
        assert!(
            text.contains("| **mean over sets** | 0.9800 / 0.0980 | 0.9600 / 0.0960 |"),
            "{text}"
        );
        assert!(
            text.contains("| 2019 | 4h | 0.8000 / 0.9900 | 0.1000 / 0.0990 |"),
            "{text}"
        );
        // One set: no such section.
        let one = WalkForwardReport {
            seed_sets: Vec::new(),
            ..report
        };
        assert!(!render(&one).contains("Seed sets"));
    }
}
