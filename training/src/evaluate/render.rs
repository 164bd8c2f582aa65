//! Human-readable renderings of an [`EvaluationReport`]: the console summary and the Markdown
//! report (the same tables, plus per-asset detail).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::report::{EvaluationReport, HorizonReport};

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

/// A rate as a percent to two decimals, `-` where there is none (a policy without origins:
/// `--tau 168` on a period too short for one; it printed `NaN%`).
fn fmt_pct(v: f64) -> String {
    fmt_opt(Some(100.0 * v), 2) + if v.is_finite() { "%" } else { "" }
}

/// A Markdown table with right-aligned numeric columns, padded so it also reads as plain text.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|j| {
            rows.iter()
                .map(|r| r.get(j).map_or(0, String::len))
                .chain([header[j].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(j, (c, w))| {
                if j == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(header);
    let rule: String = widths
        .iter()
        .enumerate()
        .map(|(j, w)| {
            if j == 0 {
                format!("|{}", "-".repeat(w + 2))
            } else {
                format!("|{}:", "-".repeat(w + 1))
            }
        })
        .collect();
    out.push_str(&rule);
    out.push_str("|\n");
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn names_in<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, f64>>) -> Vec<String> {
    let order = ["ewma", "garch", "har", "baseline", "static", "model"];
    let mut names: Vec<String> = maps.flat_map(|m| m.keys().cloned()).collect();
    names.sort_by_key(|n| {
        (
            order.iter().position(|o| o == n).unwrap_or(order.len()),
            n.clone(),
        )
    });
    names.dedup();
    names
}

/// Renders the report. `per_asset` adds the per-asset tables (the Markdown report has them, the
/// console summary does not).
#[must_use]
pub fn render(report: &EvaluationReport, per_asset: bool) -> String {
    let mut out = String::new();
    render_intro(report, &mut out);
    render_qlike(report, &mut out);
    render_calibration(report, &mut out);
    render_shortage(report, &mut out);
    render_policies(report, &mut out);
    render_hindsight(report, &mut out);
    render_blend_hindsight(report, &mut out);
    if per_asset {
        render_per_asset(report, &mut out);
    }
    render_timings(report, &mut out);
    out
}

/// Writes the title, the settings and data line, and the fit warnings.
fn render_intro(report: &EvaluationReport, out: &mut String) {
    let c = &report.config;
    let _ = writeln!(out, "# volcast evaluation\n");
    let _ = writeln!(
        out,
        "Fit until {} (last candle open time); origins {} to {}, daily at 00:00 UTC. {} assets, {} candles ({} to {}).{}\n",
        c.fit_until,
        c.eval_from,
        c.eval_until,
        report.data.assets,
        report.data.candles,
        report.data.first_candle.as_deref().unwrap_or("-"),
        report.data.last_candle.as_deref().unwrap_or("-"),
        c.model
            .as_ref()
            .map_or_else(String::new, |m| format!(" Model: `{m}`."))
    );
    if c.model.is_some() {
        let d = &report.data;
        let _ = writeln!(
            out,
            "{} of the {} origins ({:.2}%) are refused by the degenerate-market rule (an hour of the last day without trading): the model as operated has no forecast there, so they leave every comparison with it.\n",
            d.degenerate_origins,
            d.origins,
            100.0 * d.degenerate_origins as f64 / d.origins.max(1) as f64
        );
    }

    for w in &report.fits.warnings {
        let _ = writeln!(out, "> warning: {w}\n");
    }
}

/// Writes the pooled QLIKE table per horizon, with the Diebold-Mariano test.
fn render_qlike(report: &EvaluationReport, out: &mut String) {
    let _ = writeln!(
        out,
        "## Volatility: pooled QLIKE on common points (lower is better)\n"
    );
    let names = names_in(report.horizons.values().map(|h| &h.qlike));
    let mut header = vec!["H".to_owned(), "points".to_owned(), "RV=0 excluded".to_owned()];
    header.extend(names.iter().cloned());
    header.extend([
        "DM vs better HAR".to_owned(),
        "DM p".to_owned(),
        "DM p, daily means".to_owned(),
        "assets won".to_owned(),
    ]);
    let rows: Vec<Vec<String>> = report
        .horizons
        .iter()
        .map(|(h, r)| {
            let mut row = vec![
                format!("{h}h"),
                r.n_points.to_string(),
                r.n_zero_rv_excluded.to_string(),
            ];
            row.extend(names.iter().map(|n| fmt_opt(r.qlike.get(n).copied(), 4)));
            row.push(
                r.dm.as_ref()
                    .map_or_else(|| "-".into(), |d| format!("{:.2} ({})", d.statistic, d.against)),
            );
            row.push(fmt_opt(r.dm.as_ref().map(|d| d.p_value), 4));
            row.push(fmt_opt(r.dm.as_ref().and_then(|d| d.daily_p_value), 4));
            row.push(
                r.dm.as_ref()
                    .map_or_else(|| "-".into(), |d| format!("{} / {}", d.asset_wins, d.assets)),
            );
            row
        })
        .collect();
    out.push_str(&table(&header, &rows));
}

/// Writes the quantile coverage table, if any horizon has quantile forecasts.
fn render_calibration(report: &EvaluationReport, out: &mut String) {
    let calibrated: Vec<_> = report
        .horizons
        .iter()
        .filter(|(_, r)| !r.calibration.is_empty())
        .collect();
    if !calibrated.is_empty() {
        let _ = writeln!(
            out,
            "\n## Interval calibration: share of RV below each quantile forecast\n"
        );
        let mut rows = Vec::new();
        for (h, r) in calibrated {
            for (name, levels) in &r.calibration {
                for l in levels {
                    rows.push(vec![
                        format!("{h}h"),
                        name.clone(),
                        format!("{:.3}", l.level),
                        format!("{:.3}", l.coverage),
                    ]);
                }
            }
        }
        out.push_str(&table(
            &["H".into(), "forecaster".into(), "level".into(), "coverage".into()],
            &rows,
        ));
    }
}

/// Writes the liquidity-shortage classification table per horizon.
fn render_shortage(report: &EvaluationReport, out: &mut String) {
    let _ = writeln!(out, "\n## Liquidity shortage\n");
    let snames = names_in(report.horizons.values().map(|h| &h.shortage.roc_auc));
    let mut header = vec!["H".to_owned(), "points".to_owned(), "base rate".to_owned()];
    for metric in ["ROC AUC", "PR AUC", "Brier"] {
        header.extend(snames.iter().map(|n| format!("{metric} {n}")));
    }
    let rows: Vec<Vec<String>> = report
        .horizons
        .iter()
        .map(|(h, r)| {
            let s = &r.shortage;
            let mut row = vec![
                format!("{h}h"),
                s.n_points.to_string(),
                fmt_opt(Some(s.base_rate), 4),
            ];
            for m in [&s.roc_auc, &s.pr_auc, &s.brier] {
                row.extend(snames.iter().map(|n| fmt_opt(m.get(n).copied(), 4)));
            }
            row
        })
        .collect();
    out.push_str(&table(&header, &rows));
}

/// Writes the liquidation-threshold backtest table, one row per policy.
fn render_policies(report: &EvaluationReport, out: &mut String) {
    let r = &report.risk;
    let _ = writeln!(
        out,
        "\n## Liquidation thresholds: backtest at alpha = {}, tau = {} h, LB = {}\n",
        r.alpha, r.tau, r.bonus
    );
    let rows: Vec<Vec<String>> = r
        .policies
        .iter()
        .map(|(name, p)| {
            vec![
                name.clone(),
                p.n.to_string(),
                p.breaches.to_string(),
                fmt_pct(p.breach_rate),
                fmt_opt(Some(p.mean_lt), 4),
                fmt_opt(p.kupiec_p_value, 4),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "policy".into(),
            "origins".into(),
            "breaches".into(),
            "breach rate".into(),
            "mean LT".into(),
            "Kupiec p".into(),
        ],
        &rows,
    ));
    let missing: Vec<String> = r
        .no_forecast
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    let s = &r.static_all_origins;
    let _ = writeln!(
        out,
        "\nScored on the {} origins where every policy has a forecast, of SPEC's {} (origins without \
         a forecast: {}). The static policy on all {}: {} breaches ({}) at mean LT {}.",
        r.policies.values().next().map_or(0, |p| p.n),
        r.spec_origins,
        if missing.is_empty() {
            "none".to_owned()
        } else {
            missing.join(", ")
        },
        r.spec_origins,
        s.breaches,
        fmt_pct(s.breach_rate),
        fmt_opt(Some(s.mean_lt), 4),
    );
}

/// Writes the hindsight-bound table, if the report has any.
fn render_hindsight(report: &EvaluationReport, out: &mut String) {
    let r = &report.risk;
    if !r.hindsight.is_empty() {
        let _ = writeln!(
            out,
            "\nHindsight bounds at {:.2}% breaches, fitted on these origins themselves (not policies: the \
             headroom each policy's shape leaves; its log allowance a replaced by k a^g, or per-asset \
             constants for `static_refit`):\n",
            100.0 * (1.0 - r.alpha)
        );
        let rows: Vec<Vec<String>> = r
            .hindsight
            .iter()
            .map(|(name, b)| {
                vec![
                    name.clone(),
                    fmt_opt(b.multiplier, 3),
                    fmt_opt(b.exponent, 2),
                    fmt_pct(b.breach_rate),
                    fmt_opt(Some(b.mean_lt), 4),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "policy".into(),
                "multiplier k".into(),
                "exponent g".into(),
                "breach rate".into(),
                "mean LT".into(),
            ],
            &rows,
        ));
    }
}

/// Writes the blend with HAR as served against fixed weights in hindsight, where computed.
fn render_blend_hindsight(report: &EvaluationReport, out: &mut String) {
    if report.blend_hindsight.is_empty() {
        return;
    }
    out.push_str(
        "\nThe blend with HAR against fixed weights in hindsight (a diagnostic, not a forecaster: each \
         fixed weight is chosen on the whole period). QLIKE over HAR alone's on the same points, the \
         daily origins the daily job holds: the network as served before the blend (weight 1), the \
         blend as served (the day's weight), and the best fixed weight of the grid:\n\n",
    );
    let rows: Vec<Vec<String>> = report
        .blend_hindsight
        .iter()
        .map(|b| {
            vec![
                format!("{}h", b.horizon),
                b.points.to_string(),
                format!("{:.4}", b.har),
                format!("{:.4}", b.network / b.har),
                format!("{:.4}", b.served / b.har),
                format!("{:.4}", b.best / b.har),
                format!("{:.1}", b.best_weight),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "H".into(),
            "points".into(),
            "HAR".into(),
            "network / HAR".into(),
            "served / HAR".into(),
            "best fixed / HAR".into(),
            "best weight".into(),
        ],
        &rows,
    ));
}

/// Writes the closing line of step timings.
fn render_timings(report: &EvaluationReport, out: &mut String) {
    let _ = writeln!(
        out,
        "\nTimings (s): {}",
        report
            .timings
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Writes the per-asset tables: volatility and shortage per horizon, then the backtest.
fn render_per_asset(report: &EvaluationReport, out: &mut String) {
    for (h, r) in &report.horizons {
        render_asset_horizon(*h, r, out);
    }
    render_asset_risk(report, out);
    render_worst_breaches(report, out);
}

/// Writes the per-asset mean QLIKE and shortage ROC AUC table of horizon `h`.
fn render_asset_horizon(h: usize, r: &HorizonReport, out: &mut String) {
    let _ = writeln!(out, "\n## Per asset, {h}h: mean QLIKE and shortage ROC AUC\n");
    let names = names_in(r.per_asset.iter().map(|a| &a.qlike));
    let snames = names_in(r.per_asset.iter().map(|a| &a.shortage_roc_auc));
    let mut header = vec!["asset".to_owned(), "points".to_owned()];
    header.extend(names.iter().cloned());
    header.extend(["shortage points".to_owned(), "base rate".to_owned()]);
    header.extend(snames.iter().map(|n| format!("AUC {n}")));
    let rows: Vec<Vec<String>> = r
        .per_asset
        .iter()
        .map(|a| {
            let mut row = vec![a.asset.clone(), a.n_points.to_string()];
            row.extend(names.iter().map(|n| fmt_opt(a.qlike.get(n).copied(), 4)));
            row.push(a.shortage_n.to_string());
            row.push(fmt_opt(a.shortage_base_rate, 3));
            row.extend(
                snames
                    .iter()
                    .map(|n| fmt_opt(a.shortage_roc_auc.get(n).copied(), 3)),
            );
            row
        })
        .collect();
    out.push_str(&table(&header, &rows));
}

/// Writes the per-asset liquidation-threshold backtest table.
fn render_asset_risk(report: &EvaluationReport, out: &mut String) {
    let _ = writeln!(
        out,
        "\n## Per asset: liquidation-threshold backtest (breach rate / mean LT)\n"
    );
    let names: Vec<String> = report.risk.policies.keys().cloned().collect();
    let mut header = vec!["asset".to_owned(), "origins".to_owned()];
    header.extend(names.iter().cloned());
    let rows: Vec<Vec<String>> = report
        .risk
        .per_asset
        .iter()
        .map(|a| {
            let n = a.policies.values().next().map_or(0, |p| p.n);
            let mut row = vec![a.asset.clone(), n.to_string()];
            row.extend(names.iter().map(|name| {
                a.policies.get(name).map_or_else(
                    || "-".to_owned(),
                    |p| format!("{} / {}", fmt_pct(p.breach_rate), fmt_opt(Some(p.mean_lt), 4)),
                )
            }));
            row
        })
        .collect();
    out.push_str(&table(&header, &rows));
}

/// Writes the largest breaches table, if there were breaches.
fn render_worst_breaches(report: &EvaluationReport, out: &mut String) {
    if !report.risk.worst_breaches.is_empty() {
        let _ = writeln!(out, "\n## Largest breaches\n");
        let rows: Vec<Vec<String>> = report
            .risk
            .worst_breaches
            .iter()
            .map(|b| {
                vec![
                    b.policy.clone(),
                    b.asset.clone(),
                    b.origin.clone(),
                    format!("{:.2}%", 100.0 * b.drawdown),
                    format!("{:.4}", b.lt),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "policy".into(),
                "asset".into(),
                "origin".into(),
                "fall".into(),
                "LT".into(),
            ],
            &rows,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::{fmt_opt, fmt_pct};

    /// A policy without origins reads `-`, never `NaN%`.
    #[test]
    fn a_missing_rate_reads_as_a_dash() {
        assert_eq!(fmt_pct(0.0123), "1.23%");
        assert_eq!(fmt_pct(f64::NAN), "-");
        assert_eq!(fmt_opt(Some(f64::NAN), 4), "-");
    }
}
