//! `anomaly chart`: one asset's price, volume and anomaly score over a window, flags marked, as
//! an SVG (plotters).

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use volcast_core::anomaly::Verdict;
use volcast_core::candles::Candle;
use volcast_core::time::HOUR_MS;

/// Draws `candles` (the window shown) with their `verdicts` (hours of the window scored) to an
/// SVG at `path`.
///
/// # Errors
/// An empty window or a drawing or write failure.
pub fn render(path: &Path, title: &str, candles: &[Candle], verdicts: &[Verdict]) -> anyhow::Result<()> {
    let (first, last) = match (candles.first(), candles.last()) {
        (Some(a), Some(b)) => (a.open_time, b.open_time),
        _ => return Err(anyhow!("no candles in the window")),
    };
    let hours = |t: i64| (t - first) as f64 / HOUR_MS as f64;
    let span = hours(last).max(1.0);
    let root = SVGBackend::new(path, (1100, 720)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
    let panels = root.split_evenly((3, 1));
    let flagged: Vec<&Verdict> = verdicts.iter().filter(|v| v.flagged).collect();

    let (lo, hi) = candles
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), c| (a.min(c.low), b.max(c.high)));
    let mut price = ChartBuilder::on(&panels[0])
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..span, lo * 0.98..hi * 1.02)
        .map_err(err)?;
    price
        .configure_mesh()
        .y_desc("close")
        .x_desc("hours from the window's start")
        .draw()
        .map_err(err)?;
    price
        .draw_series(LineSeries::new(
            candles.iter().map(|c| (hours(c.open_time), c.close)),
            &BLUE,
        ))
        .map_err(err)?;
    // Each flagged hour: its high-low range in red.
    for v in &flagged {
        if let Some(c) = candles.iter().find(|c| c.open_time == v.time_ms) {
            let x = hours(c.open_time);
            price
                .draw_series(LineSeries::new([(x, c.low), (x, c.high)], RED.stroke_width(3)))
                .map_err(err)?;
        }
    }

    let vmax = candles.iter().map(|c| c.quote_volume).fold(0.0, f64::max);
    let mut volume = ChartBuilder::on(&panels[1])
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..span, 0.0..vmax.max(1.0) * 1.05)
        .map_err(err)?;
    volume
        .configure_mesh()
        .y_desc("quote volume, millions")
        .y_label_formatter(&|v| format!("{:.1}", v / 1e6))
        .draw()
        .map_err(err)?;
    volume
        .draw_series(candles.iter().map(|c| {
            let x = hours(c.open_time);
            let hit = flagged.iter().any(|v| v.time_ms == c.open_time);
            let color = if hit {
                RED.filled()
            } else {
                BLACK.mix(0.5).filled()
            };
            Rectangle::new([(x - 0.4, 0.0), (x + 0.4, c.quote_volume)], color)
        }))
        .map_err(err)?;

    let ratio: Vec<(f64, f64)> = verdicts
        .iter()
        .map(|v| (hours(v.time_ms), (v.score / v.threshold).max(1e-3)))
        .collect();
    let rmax = ratio.iter().map(|p| p.1).fold(2.0, f64::max);
    let mut score = ChartBuilder::on(&panels[2])
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..span, 0.0..rmax * 1.05)
        .map_err(err)?;
    score
        .configure_mesh()
        .y_desc("score / threshold")
        .draw()
        .map_err(err)?;
    score
        .draw_series(LineSeries::new(ratio.iter().copied(), &BLACK))
        .map_err(err)?
        .label("score over its flag threshold");
    score
        .draw_series(LineSeries::new([(0.0, 1.0), (span, 1.0)], RED.stroke_width(1)))
        .map_err(err)?
        .label("flag threshold");
    score
        .draw_series(
            ratio
                .iter()
                .filter(|p| p.1 > 1.0)
                .map(|p| Circle::new(*p, 3, RED.filled())),
        )
        .map_err(err)?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
