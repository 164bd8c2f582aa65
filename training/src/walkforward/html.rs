//! The walk-forward report as one self-contained HTML page with inline SVG charts drawn by
//! plotters (no script, no outside resource): the model's QLIKE over the better of HAR and HAR
//! operated per fold and horizon, a reliability diagram of the RV quantiles per horizon, the risk
//! policy per fold, its breach timeline with the LT served, and the daily job's combination
//! weights and adaptive factor over time.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::WalkForwardReport;

/// Every chart's size, pixels.
const SIZE: (u32, u32) = (560, 300);
/// Series colours, one per fold (or horizon).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];
const GREY: RGBColor = RGBColor(0x99, 0x99, 0x99);
const FONT: &str = "sans-serif";

/// What drawing on an in-memory SVG can fail with.
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One chart as an inline SVG element, drawn by `draw` on a white area of [`SIZE`]; a drawing
/// failure becomes a line of the page saying so, not a lost report.
fn chart(title: &str, draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Drawn) -> String {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
    };
    match drawn {
        Ok(()) => {
            svg.push('\n');
            svg
        }
        Err(e) => format!(
            "<p>{}: chart not drawn ({})</p>\n",
            esc(title),
            esc(&e.to_string())
        ),
    }
}

/// The chart's frame: caption, axes and light grid over `x` by `y`.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    DrawingAreaErrorKind<std::io::Error>,
> {
    ChartBuilder::on(root)
        .caption(title, (FONT, 15))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(x, y)
}

/// The series labels' box, at `at`.
fn legend<'a, 'b: 'a>(
    c: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    at: SeriesLabelPosition,
) -> Drawn {
    c.configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font((FONT, 11))
        .draw()
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
    if report.without_market {
        out.push_str(
            "<p><strong>The model scored without the market factor</strong>, as the server serves it \
             (<code>--without-market</code>).</p>\n",
        );
    }
    out.push_str(&ratio_chart(report));
    out.push_str(&qlike_table(report));
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
    out.push_str(&start_window_table(report));
    out.push_str("</body></html>\n");
    out
}

/// Grouped bars: per horizon, one bar per fold from the parity line at 1, its value above it.
fn ratio_chart(report: &WalkForwardReport) -> String {
    let horizons = volcast_core::forecast::HORIZONS;
    let ratio = |f: &super::FoldSummary, h: usize| {
        f.horizons
            .iter()
            .find(|x| x.h == h)
            .map(|x| x.ratio)
            .filter(|r| r.is_finite())
    };
    let values: Vec<f64> = report
        .folds
        .iter()
        .flat_map(|f| horizons.iter().filter_map(move |&h| ratio(f, h)))
        .collect();
    let lo = values.iter().copied().fold(1.0, f64::min).min(0.9) - 0.02;
    let hi = values.iter().copied().fold(1.0, f64::max).max(1.05) + 0.03;
    let title = "QLIKE of the model over the better baseline";
    let groups = horizons.len() as f64;
    let bar = 1.0 / (report.folds.len() as f64 + 1.0);
    chart(title, |root| {
        let mut c = frame(root, title, 0.0..groups, lo..hi)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("ratio")
            .y_label_formatter(&|v| format!("{v:.2}"))
            .label_style((FONT, 11))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (g, h) in horizons.iter().enumerate() {
            let at = (g as f64 + 0.5, lo);
            c.draw_series(std::iter::once(Text::new(
                format!("{h} h"),
                at,
                TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
            )))?;
        }
        for (k, f) in report.folds.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            let bars: Vec<(f64, f64)> = horizons
                .iter()
                .enumerate()
                .filter_map(|(g, &h)| ratio(f, h).map(|r| (g as f64 + bar * (k as f64 + 0.5), r)))
                .collect();
            c.draw_series(bars.iter().map(|&(x, r)| {
                Rectangle::new([(x, r.min(1.0)), (x + bar * 0.9, r.max(1.0))], colour.filled())
            }))?
            .label(f.year.to_string())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
            c.draw_series(bars.iter().map(|&(x, r)| {
                Text::new(
                    format!("{r:.3}"),
                    (x + bar * 0.45, r.max(1.0)),
                    TextStyle::from((FONT, 9).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))?;
        }
        c.draw_series(LineSeries::new([(0.0, 1.0), (groups, 1.0)], BLACK))?;
        legend(&mut c, SeriesLabelPosition::UpperRight)
    })
}

/// Coverage against level for one horizon, a series per fold, with the diagonal.
fn reliability_chart(report: &WalkForwardReport, h: usize) -> String {
    let title = format!("RV quantile coverage at {h} h");
    chart(&title, |root| {
        let mut c = frame(root, &title, 0.0..1.0, 0.0..1.0)?;
        c.configure_mesh()
            .x_desc("level")
            .y_desc("coverage")
            .label_style((FONT, 11))
            .draw()?;
        c.draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 4, 4, GREY.into()))?;
        for (k, r) in report.reports.iter().enumerate() {
            let Some(points) = r.horizons.get(&h).and_then(|hz| hz.calibration.get("model")) else {
                continue;
            };
            let colour = COLOURS[k % COLOURS.len()];
            let year = report.folds.get(k).map_or(0, |f| f.year);
            let xy = coverage_points(points);
            if xy.is_empty() {
                continue;
            }
            c.draw_series(LineSeries::new(xy.iter().copied(), colour))?
                .label(year.to_string())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour));
            c.draw_series(xy.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
        // The diagonal runs from the lower left to the upper right.
        legend(&mut c, SeriesLabelPosition::LowerRight)
    })
}

/// (level, coverage) of the levels with a coverage: one without points (no complete outcome
/// at the horizon) is not drawn (plotters puts NaN at the bottom, which read as coverage 0).
fn coverage_points(points: &[crate::evaluate::report::CoverageReport]) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter(|p| p.coverage.is_finite())
        .map(|p| (p.level, p.coverage))
        .collect()
}

/// A number to `digits` decimals, or `-` where there is none or it is not finite.
fn num(x: Option<f64>, digits: usize) -> String {
    super::or_dash(x.filter(|v| v.is_finite()), digits)
}

/// A rate as a percentage to two decimals, or `-`.
fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", 100.0 * x)
    } else {
        "-".to_owned()
    }
}

/// One table row of `cells`, escaped.
fn row(cells: &[String]) -> String {
    let tds: String = cells.iter().map(|c| format!("<td>{}</td>", esc(c))).collect();
    format!("<tr>{tds}</tr>\n")
}

/// The figures behind the ratio chart: each fold and horizon's pooled QLIKE, the ratio, the DM
/// p-value and the worst coverage gap, then per horizon the mean over folds and the worst fold.
fn qlike_table(report: &WalkForwardReport) -> String {
    let mut out = String::from(
        "<table><tr><th>fold</th><th>H</th><th>points</th><th>HAR</th><th>HAR operated</th><th>model</th>\
         <th>model / better</th><th>DM p</th><th>DM p, daily means</th><th>worst coverage gap</th></tr>\n",
    );
    for cells in super::fold_rows(&report.folds) {
        out.push_str(&row(&cells));
    }
    for o in super::per_horizon(&report.folds) {
        let worst = o
            .worst
            .map_or_else(|| "-".to_owned(), |(y, w)| format!("{w:.4} ({y})"));
        let _ = writeln!(
            out,
            "<tr><th>mean over folds</th><td>{} h</td><td colspan=\"4\"></td><td>{}</td><td colspan=\"2\">worst fold: {worst}</td></tr>",
            o.h,
            num(Some(o.mean), 4)
        );
    }
    out.push_str("</table>\n");
    out
}

/// Where the daily job starts each fold (`hindsight::start_window_rows`, the Markdown report's
/// table): the network against HAR on the window before the fold and in the fold's year.
fn start_window_table(report: &WalkForwardReport) -> String {
    let rows = super::hindsight::start_window_rows(&report.sets());
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Where the daily job starts each fold</h2>\n<p>The network as served before the blend, over \
         HAR alone, on the trailing window the daily job's first weights and corrections are measured on \
         (the days before the fold: forecasts of networks trained on those days when trained until the fit \
         end), beside the same over the fold's year; the mean over the seed sets.</p>\n\
         <table><tr><th>fold</th><th>H</th><th>points before</th><th>network / HAR before the fold</th>\
         <th>network / HAR in the fold</th></tr>\n",
    );
    for cells in rows {
        out.push_str(&row(&cells));
    }
    out.push_str("</table>\n");
    out
}

/// The risk policy per fold, and both policies' mean LT at the promised breach rate.
fn risk_table(report: &WalkForwardReport) -> String {
    let mut out = String::from(
        "<h2>Risk policy per fold</h2>\n<table><tr><th>fold</th><th>model breaches</th><th>model mean LT</th>\
         <th>Kupiec p</th><th>HAR-calibrated breaches</th><th>HAR-calibrated mean LT</th>\
         <th>mean LT at 1 - alpha breaches: model / HAR-calibrated</th></tr>\n",
    );
    for f in &report.folds {
        let (rate, lt, kupiec) = f.model_policy;
        let (hr, hl) = f.har_calibrated_policy.unwrap_or((f64::NAN, f64::NAN));
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{lt:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
            f.year,
            pct(rate),
            num(kupiec, 3),
            pct(hr),
            num(Some(hl), 4),
            num(f.equal_rate_lt.0, 4),
            num(f.equal_rate_lt.1, 4)
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
            super::or_dash(kupiec, 3)
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
type Series<'a> = (&'a str, RGBColor, bool, Vec<f64>);

/// Lines over the days of a fold, with an optional reference level (grey); each series breaks
/// at its gaps. Empty where no value is finite.
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
    // A flat series (a factor that stayed at 1) still gets a readable scale around its value.
    let pad = ((hi - lo) * 0.05).max(0.02 * hi.abs().max(lo.abs())).max(1e-6);
    let days = series.iter().map(|s| s.3.len()).max().unwrap_or(1).max(2);
    chart(title, |root| {
        let mut c = frame(root, title, 0.0..(days - 1) as f64, lo - pad..hi + pad)?;
        c.configure_mesh()
            .x_desc("days since the fold's start")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| {
                if percent {
                    format!("{:.2}%", 100.0 * v)
                } else {
                    format!("{v:.3}")
                }
            })
            .label_style((FONT, 11))
            .draw()?;
        if let Some(r) = reference {
            c.draw_series(LineSeries::new([(0.0, r), ((days - 1) as f64, r)], GREY))?;
        }
        for &(label, colour, dashed, ref values) in series {
            // The runs of finite values, each drawn as one line.
            let runs = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect::<Vec<_>>();
            let runs: Vec<&[(f64, f64)]> = runs.split(|p| !p.1.is_finite()).filter(|r| r.len() > 1).collect();
            for (k, run) in runs.iter().enumerate() {
                let drawn = if dashed {
                    c.draw_series(DashedLineSeries::new(run.iter().copied(), 5, 3, colour.into()))?
                } else {
                    c.draw_series(LineSeries::new(run.iter().copied(), colour))?
                };
                if k == 0 {
                    drawn
                        .label(label)
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour));
                }
            }
        }
        legend(&mut c, SeriesLabelPosition::UpperRight)
    })
}

/// The cumulative breach rate of the model and the HAR-calibrated policy over a fold, and the
/// model's mean LT per day.
fn breach_timeline(fold: &super::FoldSummary, report: &crate::evaluate::report::EvaluationReport) -> String {
    let start =
        volcast_core::time::parse_time(&format!("{}-01-01", fold.year), volcast_core::time::Bound::Start)
            .unwrap_or(0);
    let cumulative = |name: &str| -> Vec<f64> {
        let (mut n, mut b) = (0usize, 0usize);
        report.risk.timeline.get(name).map_or_else(Vec::new, |days| {
            by_day(start, days, |d| {
                n += d.n;
                b += d.breaches;
                if n == 0 { f64::NAN } else { b as f64 / n as f64 }
            })
        })
    };
    let lt = |name: &str| -> Vec<f64> {
        report
            .risk
            .timeline
            .get(name)
            .map_or_else(Vec::new, |days| by_day(start, days, |d| d.mean_lt))
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

/// `value` of each day in `days` at its place among the calendar days from `start` (Unix ms),
/// NaN on a day without one: a day without risk points (a market-wide gap) shifted every later
/// day left, off the daily job's charts, which count every day.
fn by_day(
    start: i64,
    days: &[crate::evaluate::report::DayOutcome],
    mut value: impl FnMut(&crate::evaluate::report::DayOutcome) -> f64,
) -> Vec<f64> {
    let mut out = Vec::new();
    for d in days {
        let Ok(at) = volcast_core::time::parse_time(&d.day, volcast_core::time::Bound::Start) else {
            continue;
        };
        let Ok(k) = usize::try_from((at - start).div_euclid(volcast_core::time::DAY_MS)) else {
            continue;
        };
        let v = value(d);
        if out.len() <= k {
            out.resize(k + 1, f64::NAN);
        }
        out[k] = v;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_breaks_at_its_gaps_and_an_empty_chart_is_left_out() {
        let values = vec![0.5, 0.6, f64::NAN, 0.7, 0.8, 0.9];
        let svg = line_chart("t", &[("a", COLOURS[0], false, values)], Some(0.5), false);
        assert!(svg.starts_with("<svg"), "{svg}");
        // In the series' colour: the two runs and the legend's sample; no NaN anywhere.
        assert_eq!(svg.matches("stroke=\"#1F77B4\"").count(), 3, "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
        assert!(line_chart("t", &[("a", COLOURS[0], false, vec![f64::NAN; 3])], None, false).is_empty());
    }

    #[test]
    fn a_level_without_coverage_is_not_drawn() {
        use crate::evaluate::report::CoverageReport;
        let at = |level: f64, coverage: f64| CoverageReport { level, coverage };
        assert_eq!(
            coverage_points(&[at(0.1, 0.12), at(0.5, f64::NAN), at(0.9, 0.88)]),
            vec![(0.1, 0.12), (0.9, 0.88)]
        );
        assert!(coverage_points(&[at(0.1, f64::NAN), at(0.9, f64::NAN)]).is_empty());
    }

    /// A day without risk points leaves its place empty: the days after it stay at theirs.
    #[test]
    fn timeline_days_keep_their_calendar_place() {
        use crate::evaluate::report::DayOutcome;
        let day = |day: &str, mean_lt: f64| DayOutcome {
            day: day.into(),
            n: 1,
            breaches: 0,
            mean_lt,
        };
        let start = volcast_core::time::parse_time("2021-01-01", volcast_core::time::Bound::Start).unwrap();
        let v = by_day(start, &[day("2021-01-01", 0.8), day("2021-01-03", 0.9)], |d| {
            d.mean_lt
        });
        assert_eq!(v.len(), 3);
        assert!((v[0] - 0.8).abs() < 1e-12 && v[1].is_nan() && (v[2] - 0.9).abs() < 1e-12);
    }

    #[test]
    fn a_flat_series_gets_a_readable_scale() {
        let svg = line_chart("t", &[("f", COLOURS[3], false, vec![1.0; 30])], Some(1.0), false);
        // Tick labels around the value, not one value repeated.
        assert!(svg.contains("1.010") && svg.contains("0.990"), "{svg}");
    }

    #[test]
    fn a_dashed_series_is_drawn_in_dashes() {
        let solid = line_chart("t", &[("a", COLOURS[0], false, vec![0.0, 1.0, 0.5])], None, true);
        let dashed = line_chart("t", &[("a", COLOURS[0], true, vec![0.0, 1.0, 0.5])], None, true);
        let paths = |svg: &str| svg.matches("stroke=\"#1F77B4\"").count();
        // A line and the legend's sample, against many dashes.
        assert_eq!(paths(&solid), 2, "{solid}");
        assert!(paths(&dashed) > 4, "{dashed}");
        assert!(dashed.contains('%'), "percent ticks");
    }
}
