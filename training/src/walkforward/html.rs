//! The walk-forward report as one self-contained HTML page with inline SVG charts (no script, no
//! outside resource): the model's QLIKE over the better of HAR and HAR operated per fold and
//! horizon, a reliability diagram of the RV quantiles per horizon, the risk policy per fold, its
//! breach timeline with the LT served, and the daily job's combination weights and adaptive
//! factor over time.

use std::fmt::Write as _;

use super::WalkForwardReport;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 300.0;
const MARGIN: f64 = 48.0;
/// Series colours, one per fold.
const COLOURS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The page.
#[must_use]
pub fn render(report: &WalkForwardReport) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>volcast walk-forward folds</title>\
         <style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}\
         th{background:#f4f4f4}svg{margin:0.5em 1em 0.5em 0}</style></head><body>\n\
         <h1>Walk-forward folds</h1>\n<p>Each fold: the network, its calibration and the baselines fitted on the \
         years before, the year scored as <code>evaluate</code> does. Below 1 the model beats the better of HAR and \
         HAR operated like it.</p>\n",
    );
    if report.fixed_recalibration {
        out.push_str(
            "<p><strong>The model scored with the corrections and HAR weights stored at each fold's fit \
             end, fixed for the year</strong> (<code>--fixed-recalibration</code>: a diagnostic of the daily \
             job); the baselines, HAR operated included, as usual.</p>\n",
        );
    }
    out.push_str(&ratio_chart(report));
    out.push_str("<h2>Reliability of the RV quantiles</h2>\n<p>Share of realized RV below each quantile forecast, per fold; on the diagonal when calibrated.</p>\n");
    for h in volcast_core::forecast::HORIZONS {
        out.push_str(&reliability_chart(report, h));
    }
    out.push_str(&risk_table(report));
    if !report.seed_sets.is_empty() {
        out.push_str(&seed_sets_table(&report.seed_sets));
    }
    out.push_str(
        "<h2>Breaches over each fold</h2>\n<p>The model's cumulative breach rate since the fold's start \
         (solid) and the HAR-calibrated policy's (dashed), against the promise 1 - alpha (grey), with the \
         day's mean LT served (lower chart).</p>\n",
    );
    for (f, r) in report.folds.iter().zip(&report.reports) {
        out.push_str(&breach_timeline(f, r));
    }
    if report.folds.iter().any(|f| !f.days.is_empty()) {
        out.push_str(
            "<h2>The daily job's state</h2>\n<p>Weight of the network against HAR per horizon \
             (1: network alone), and the adaptive factor on the drawdown's miscoverage (below 1: a \
             level above alpha served, after breaches).</p>\n",
        );
        for f in &report.folds {
            out.push_str(&state_charts(f));
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// Grouped bars: per horizon, one bar per fold, with the parity line at 1.
fn ratio_chart(report: &WalkForwardReport) -> String {
    let horizons = volcast_core::forecast::HORIZONS;
    let values: Vec<f64> = report
        .folds
        .iter()
        .flat_map(|f| f.horizons.iter().map(|h| h.ratio))
        .filter(|r| r.is_finite())
        .collect();
    let lo = values.iter().copied().fold(1.0, f64::min).min(0.9) - 0.02;
    let hi = values.iter().copied().fold(1.0, f64::max).max(1.05) + 0.02;
    let y = |v: f64| MARGIN + (hi - v) / (hi - lo) * (HEIGHT - 2.0 * MARGIN);
    let mut svg = svg_open("QLIKE of the model over the better baseline");
    let group = (WIDTH - 2.0 * MARGIN) / horizons.len() as f64;
    let bar = group / (report.folds.len() as f64 + 1.0);
    for (g, &h) in horizons.iter().enumerate() {
        let x0 = MARGIN + g as f64 * group;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\">{h} h</text>",
            x0 + group / 2.0,
            HEIGHT - MARGIN + 16.0
        );
        for (k, f) in report.folds.iter().enumerate() {
            let Some(r) = f
                .horizons
                .iter()
                .find(|x| x.h == h)
                .map(|x| x.ratio)
                .filter(|r| r.is_finite())
            else {
                continue;
            };
            let (top, base) = (y(r.max(1.0)), y(r.min(1.0)));
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {h} h: {r:.4}</title></rect>",
                x0 + bar * (k as f64 + 0.5),
                bar * 0.9,
                (base - top).max(0.5),
                COLOURS[k % COLOURS.len()],
                f.year
            );
        }
    }
    let _ = write!(
        svg,
        "<line x1=\"{MARGIN}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>",
        WIDTH - MARGIN,
        y(1.0),
        y(1.0)
    );
    axis_labels(&mut svg, lo, hi, &y);
    legend(&mut svg, report);
    svg.push_str("</svg>\n");
    svg
}

/// Coverage against level for one horizon, a series per fold, with the diagonal.
fn reliability_chart(report: &WalkForwardReport, h: usize) -> String {
    let side = HEIGHT - 2.0 * MARGIN;
    let x = |v: f64| MARGIN + v * side;
    let y = |v: f64| HEIGHT - MARGIN - v * side;
    let mut svg = svg_open(&format!("RV quantile coverage at {h} h"));
    let _ = write!(
        svg,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"4\"/>",
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    );
    for (k, r) in report.reports.iter().enumerate() {
        let Some(points) = r.horizons.get(&h).and_then(|hz| hz.calibration.get("model")) else {
            continue;
        };
        let colour = COLOURS[k % COLOURS.len()];
        let year = report.folds.get(k).map_or(0, |f| f.year);
        let path: Vec<String> = points
            .iter()
            .map(|c| format!("{:.1},{:.1}", x(c.level), y(c.coverage)))
            .collect();
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\"/>",
            path.join(" ")
        );
        for c in points {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{year}: level {} coverage {:.3}</title></circle>",
                x(c.level),
                y(c.coverage),
                c.level,
                c.coverage
            );
        }
    }
    axis_labels(&mut svg, 0.0, 1.0, &y);
    legend(&mut svg, report);
    svg.push_str("</svg>\n");
    svg
}

/// The risk policy per fold.
fn risk_table(report: &WalkForwardReport) -> String {
    let mut out = String::from(
        "<h2>Risk policy per fold</h2>\n<table><tr><th>fold</th><th>model breaches</th><th>model mean LT</th>\
         <th>Kupiec p</th><th>HAR-calibrated breaches</th><th>HAR-calibrated mean LT</th></tr>\n",
    );
    for f in &report.folds {
        let (rate, lt, kupiec) = f.model_policy;
        let (hr, hl) = f.har_calibrated_policy.unwrap_or((f64::NAN, f64::NAN));
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{:.2}%</td><td>{lt:.4}</td><td>{}</td><td>{:.2}%</td><td>{hl:.4}</td></tr>",
            f.year,
            100.0 * rate,
            kupiec.map_or_else(|| "-".to_owned(), |p| format!("{p:.3}")),
            100.0 * hr
        );
    }
    out.push_str("</table>\n");
    out
}

/// The seed sets side by side (`--seed-sets`): each set's mean over folds per horizon, with
/// their mean, then every set's ratio per fold and horizon with the spread.
fn seed_sets_table(sets: &[super::SeedSet]) -> String {
    let names: Vec<String> = sets.iter().map(super::SeedSet::seeds).collect();
    let mut out = String::from(
        "<h2>Seed sets</h2>\n<p>The same design trained and scored again with disjoint seeds; the charts above \
         are the first set's. Model over the better baseline, mean over folds (worst fold in brackets).</p>\n\
         <table><tr><th>seeds</th>",
    );
    for h in volcast_core::forecast::HORIZONS {
        let _ = write!(out, "<th>{h} h</th>");
    }
    out.push_str("<th>pooled breaches (Kupiec p)</th></tr>\n");
    let cells = |rows: Vec<super::OverFolds>| -> String {
        rows.iter()
            .map(|r| match r.worst {
                Some((y, w)) => format!("<td>{:.4} ({y}: {w:.4})</td>", r.mean),
                None => format!("<td>{:.4}</td>", r.mean),
            })
            .collect()
    };
    for (set, name) in sets.iter().zip(&names) {
        let (breaches, n, kupiec) = super::pooled(&set.folds);
        let _ = writeln!(
            out,
            "<tr><td>{}</td>{}<td>{:.2}% ({})</td></tr>",
            esc(name),
            cells(super::per_horizon(&set.folds)),
            100.0 * breaches as f64 / n.max(1) as f64,
            kupiec.map_or_else(|| "-".to_owned(), |p| format!("{p:.3}"))
        );
    }
    let _ = writeln!(
        out,
        "<tr><th>mean over sets</th>{}<td></td></tr>\n</table>",
        cells(super::per_horizon(&super::seeds::mean_over_sets(sets)))
    );
    out.push_str("<table><tr><th>fold</th><th>H</th>");
    for name in &names {
        let _ = write!(out, "<th>{}</th>", esc(name));
    }
    out.push_str("<th>mean</th><th>spread</th></tr>\n");
    for f in &sets[0].folds {
        for x in &f.horizons {
            let ratios = super::seeds::set_ratios(sets, f.year, x.h);
            let (mean, spread) = super::seeds::mean_and_spread(&ratios);
            let each: String = ratios.iter().map(|r| format!("<td>{r:.4}</td>")).collect();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{} h</td>{each}<td>{mean:.4}</td><td>{spread:.4}</td></tr>",
                f.year, x.h
            );
        }
    }
    out.push_str("</table>\n");
    out
}

/// One line of a [`line_chart`]: label, colour, dashed, values per day (NaN: a gap).
type Series<'a> = (&'a str, &'a str, bool, Vec<f64>);

/// Lines over the days of a fold, with an optional reference level.
fn line_chart(title: &str, series: &[Series<'_>], reference: Option<f64>, percent: bool) -> String {
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.3.iter().copied())
            .chain(reference)
            .filter(|v| v.is_finite())
    };
    let lo = finite().fold(f64::INFINITY, f64::min);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return String::new();
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let (lo, hi) = (lo - pad, hi + pad);
    let n = series.iter().map(|s| s.3.len()).max().unwrap_or(1).max(2);
    let x = |i: usize| MARGIN + i as f64 / (n - 1) as f64 * (WIDTH - 2.0 * MARGIN);
    let y = |v: f64| MARGIN + (hi - v) / (hi - lo) * (HEIGHT - 2.0 * MARGIN);
    let mut svg = svg_open(title);
    if let Some(r) = reference {
        let _ = write!(
            svg,
            "<line x1=\"{MARGIN}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>",
            WIDTH - MARGIN,
            y(r),
            y(r)
        );
    }
    for (k, (label, colour, dashed, values)) in series.iter().enumerate() {
        let mut segments: Vec<Vec<String>> = vec![Vec::new()];
        for (i, v) in values.iter().enumerate() {
            if v.is_finite() {
                if let Some(s) = segments.last_mut() {
                    s.push(format!("{:.1},{:.1}", x(i), y(*v)));
                }
            } else if segments.last().is_some_and(|s| !s.is_empty()) {
                segments.push(Vec::new());
            }
        }
        let dash = if *dashed { " stroke-dasharray=\"5 3\"" } else { "" };
        for s in segments.iter().filter(|s| s.len() > 1) {
            let _ = write!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\"{dash}><title>{}</title></polyline>",
                s.join(" "),
                esc(label)
            );
        }
        let ly = MARGIN + 14.0 * k as f64;
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"3\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{ly:.1}\" font-size=\"11\">{}</text>",
            WIDTH - MARGIN - 110.0,
            ly - 5.0,
            WIDTH - MARGIN - 96.0,
            esc(label)
        );
    }
    for k in 0..=4 {
        let v = lo + (hi - lo) * f64::from(k) / 4.0;
        let text = if percent {
            format!("{:.2}%", 100.0 * v)
        } else {
            format!("{v:.3}")
        };
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\">{text}</text>",
            MARGIN - 4.0,
            y(v) + 3.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The cumulative breach rate of the model and the HAR-calibrated policy over a fold, and the
/// model's mean LT per day.
fn breach_timeline(fold: &super::FoldSummary, report: &crate::evaluate::report::EvaluationReport) -> String {
    let cumulative = |name: &str| -> Vec<f64> {
        let (mut n, mut b) = (0usize, 0usize);
        report.risk.timeline.get(name).map_or_else(Vec::new, |days| {
            days.iter()
                .map(|d| {
                    n += d.n;
                    b += d.breaches;
                    if n == 0 { f64::NAN } else { b as f64 / n as f64 }
                })
                .collect()
        })
    };
    let lt = |name: &str| -> Vec<f64> {
        report
            .risk
            .timeline
            .get(name)
            .map_or_else(Vec::new, |days| days.iter().map(|d| d.mean_lt).collect())
    };
    let promise = 1.0 - fold.alpha;
    let mut out = line_chart(
        &format!("{}: cumulative breach rate", fold.year),
        &[
            ("model", COLOURS[0], false, cumulative("model")),
            ("har_calibrated", COLOURS[1], true, cumulative("har_calibrated")),
        ],
        Some(promise),
        true,
    );
    out.push_str(&line_chart(
        &format!("{}: mean LT served per day", fold.year),
        &[
            ("model", COLOURS[0], false, lt("model")),
            ("har_calibrated", COLOURS[1], true, lt("har_calibrated")),
        ],
        None,
        false,
    ));
    out
}

/// The HAR weights per horizon and the drawdown's adaptive factor over a fold.
fn state_charts(fold: &super::FoldSummary) -> String {
    if fold.days.is_empty() {
        return String::new();
    }
    let labels: Vec<String> = volcast_core::forecast::HORIZONS
        .iter()
        .map(|h| format!("{h} h"))
        .collect();
    let weights: Vec<Series<'_>> = labels
        .iter()
        .enumerate()
        .map(|(j, label)| {
            let values = fold
                .days
                .iter()
                .map(|d| d.har_weight.get(j).copied().flatten().unwrap_or(f64::NAN))
                .collect();
            (label.as_str(), COLOURS[j % COLOURS.len()], false, values)
        })
        .collect();
    let mut out = line_chart(
        &format!("{}: weight of the network against HAR", fold.year),
        &weights,
        None,
        false,
    );
    let factor: Vec<f64> = fold
        .days
        .iter()
        .map(|d| d.miscoverage_factor.unwrap_or(f64::NAN))
        .collect();
    out.push_str(&line_chart(
        &format!("{}: drawdown miscoverage factor", fold.year),
        &[("factor", COLOURS[3], false, factor)],
        Some(1.0),
        false,
    ));
    out
}

fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">\
         <title>{0}</title><text x=\"{MARGIN}\" y=\"20\" font-size=\"14\">{0}</text>",
        esc(title)
    )
}

fn axis_labels(svg: &mut String, lo: f64, hi: f64, y: &dyn Fn(f64) -> f64) {
    for k in 0..=4 {
        let v = lo + (hi - lo) * f64::from(k) / 4.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\">{v:.2}</text>",
            MARGIN - 4.0,
            y(v) + 3.0
        );
    }
}

fn legend(svg: &mut String, report: &WalkForwardReport) {
    for (k, f) in report.folds.iter().enumerate() {
        let x = WIDTH - MARGIN - 60.0;
        let y = MARGIN + 14.0 * k as f64;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"11\">{}</text>",
            y - 9.0,
            COLOURS[k % COLOURS.len()],
            x + 14.0,
            f.year
        );
    }
}
