//! The blend with HAR as served against fixed weights chosen in hindsight, per fold and horizon
//! ([`crate::rolling::BlendHindsight`]): a diagnostic of the daily weighting rule, not a design.

use std::fmt::Write as _;

use super::FoldSummary;
use crate::rolling::BlendHindsight;

/// The diagnostic as Markdown, one row per fold and horizon of the first of `sets` (each set's
/// folds, one set without `--seed-sets`): each forecaster's QLIKE over HAR alone's on the same
/// points, averaged over the sets, and each set's best fixed weight. Empty when no fold has it.
pub(super) fn render_hindsight(sets: &[&[FoldSummary]]) -> String {
    let Some(first) = sets.first() else {
        return String::new();
    };
    if first.iter().all(|f| f.blend_hindsight.is_empty()) {
        return String::new();
    }
    let mut out = format!(
        "\nThe blend with HAR against fixed weights in hindsight (a diagnostic, not a design: each \
         fixed weight is chosen on the whole fold). QLIKE over HAR alone's on the same points, the \
         daily origins the daily job holds{}: the network as served before the blend (weight 1), \
         the blend as served (the day's weight), and the best fixed weight of the grid:\n\n\
         | fold | H | points | HAR | network / HAR | served / HAR | best fixed / HAR | best weight |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
        if sets.len() > 1 {
            format!(
                " (ratios: the mean over the {} seed sets; weights: each set's)",
                sets.len()
            )
        } else {
            String::new()
        }
    );
    for f in *first {
        for b in &f.blend_hindsight {
            let each = across_sets(sets, f.year, b.horizon, |x| &x.blend_hindsight);
            let ratio = |g: &dyn Fn(&BlendHindsight) -> f64| {
                each.iter().map(|x| g(x) / x.har).sum::<f64>() / each.len().max(1) as f64
            };
            let weights: Vec<String> = each.iter().map(|x| format!("{:.1}", x.best_weight)).collect();
            let _ = writeln!(
                out,
                "| {} | {}h | {} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
                f.year,
                b.horizon,
                b.points,
                b.har,
                ratio(&|x| x.network),
                ratio(&|x| x.served),
                ratio(&|x| x.best),
                weights.join(", ")
            );
        }
    }
    out
}

/// The diagnostic `pick` reads of fold `year` at horizon `h`, from every set that has it.
fn across_sets<'a>(
    sets: &[&'a [FoldSummary]],
    year: i32,
    h: usize,
    pick: fn(&FoldSummary) -> &[BlendHindsight],
) -> Vec<&'a BlendHindsight> {
    sets.iter()
        .filter_map(|s| {
            pick(s.iter().find(|x| x.year == year)?)
                .iter()
                .find(|x| x.horizon == h)
        })
        .collect()
}

/// Where the daily job starts each fold: per fold and horizon of the first of `sets`, the
/// points before the fold, and the network as served before the blend over HAR alone on the
/// trailing window it starts from (the days before the fold) and over the fold's year, each
/// averaged over `sets` (`-` where none has it). Empty when no fold has it. The Markdown report
/// and the page render these cells.
pub(super) fn start_window_rows(sets: &[&[FoldSummary]]) -> Vec<[String; 5]> {
    let Some(first) = sets.first() else {
        return Vec::new();
    };
    let mean = |year: i32, h: usize, pick: fn(&FoldSummary) -> &[BlendHindsight]| {
        let each = across_sets(sets, year, h, pick);
        (!each.is_empty()).then(|| each.iter().map(|b| b.network / b.har).sum::<f64>() / each.len() as f64)
    };
    first
        .iter()
        .flat_map(|f| f.start_window.iter().map(move |b| (f, b)))
        .map(|(f, b)| {
            [
                f.year.to_string(),
                format!("{}h", b.horizon),
                b.points.to_string(),
                super::or_dash(mean(f.year, b.horizon, |x| &x.start_window), 4),
                super::or_dash(mean(f.year, b.horizon, |x| &x.blend_hindsight), 4),
            ]
        })
        .collect()
}

/// [`start_window_rows`] as Markdown, with what they say. Empty when there are none.
pub(super) fn render_start_window(sets: &[&[FoldSummary]]) -> String {
    let rows = start_window_rows(sets);
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nWhere the daily job starts each fold: the network as served before the blend, over HAR \
         alone, on the daily origins of the trailing window its first weights and corrections are \
         measured on (the days before the fold, forecasts made by the fold's networks, which were \
         trained on those days when trained until the fit end), beside the same over the fold's \
         year (the mean over the seed sets):\n\n\
         | fold | H | points before | network / HAR before the fold | network / HAR in the fold |\n\
         |---|---|---:|---:|---:|\n",
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rolling::BlendHindsight;

    fn fold(year: i32, best_weight: f64, best: f64) -> FoldSummary {
        FoldSummary {
            year,
            artifact: String::new(),
            horizons: Vec::new(),
            model_policy: (0.0, 0.0, None),
            model_breaches: (0, 0),
            alpha: 0.99,
            har_calibrated_policy: None,
            equal_rate_lt: (None, None),
            days: Vec::new(),
            blend_hindsight: vec![BlendHindsight {
                horizon: 168,
                points: 10,
                har: 0.5,
                network: 0.6,
                served: 0.51,
                best_weight,
                best,
            }],
            start_window: Vec::new(),
        }
    }

    #[test]
    fn the_start_window_sits_beside_the_year_averaged_over_sets() {
        let mut a = fold(2019, 0.3, 0.49);
        let mut b = fold(2019, 0.5, 0.47);
        assert!(
            render_start_window(&[&[a.clone()]]).is_empty(),
            "nothing before the fold"
        );
        for (f, network) in [(&mut a, 0.45), (&mut b, 0.55)] {
            f.start_window = vec![BlendHindsight {
                points: 7,
                network,
                ..f.blend_hindsight[0]
            }];
        }
        let out = render_start_window(&[&[a], &[b]]);
        // Before: (0.9 + 1.1) / 2; in the fold 0.6 / 0.5 in both sets.
        assert!(out.contains("| 2019 | 168h | 7 | 1.0000 | 1.2000 |"), "{out}");
    }

    #[test]
    fn rows_average_the_ratios_over_sets_and_list_each_sets_weight() {
        let a = [fold(2019, 0.3, 0.49)];
        let b = [fold(2019, 0.5, 0.47)];
        let out = render_hindsight(&[&a, &b]);
        assert!(out.contains("the mean over the 2 seed sets"), "{out}");
        // Best fixed: (0.98 + 0.94) / 2.
        assert!(
            out.contains("| 2019 | 168h | 10 | 0.5000 | 1.2000 | 1.0200 | 0.9600 | 0.3, 0.5 |"),
            "{out}"
        );
        let one = render_hindsight(&[&a]);
        assert!(
            one.contains("| 2019 | 168h | 10 | 0.5000 | 1.2000 | 1.0200 | 0.9800 | 0.3 |"),
            "{one}"
        );
        let mut none = fold(2019, 0.3, 0.49);
        none.blend_hindsight.clear();
        assert!(render_hindsight(&[&[none]]).is_empty());
        assert!(render_hindsight(&[]).is_empty());
    }
}
