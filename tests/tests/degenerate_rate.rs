//! How often the degenerate-market rule refuses real markets: at every daily origin (00:00 UTC)
//! of every shared asset, whether an hour of the last day shows no trading (no price range or no
//! quote volume). Prints the overall rate and the assets refused most, and checks that the large
//! markets are refused only on rare exchange stalls.
//!
//! `cargo test --release -p volcast-tests --test degenerate_rate -- --nocapture`

use volcast_core::panel::to_panel;

#[test]
fn real_markets_are_rarely_degenerate() {
    let Some(dir) = volcast_tests::shared_hourly() else {
        return;
    };
    let loaded = volcast_training::data::load_assets(&[dir], None).unwrap();
    let assets = to_panel(&loaded);
    let (mut origins, mut refused) = (0usize, 0usize);
    let mut per_asset: Vec<(String, usize, usize)> = Vec::new();
    for a in &assets {
        let g = &a.grid;
        let (mut n, mut r) = (0usize, 0usize);
        for slot in 24..g.len() {
            if g.hour(slot).rem_euclid(24) != 0 || !g.has_candle(slot) {
                continue;
            }
            n += 1;
            r += usize::from(!g.hours_without_trading(slot).is_empty());
        }
        origins += n;
        refused += r;
        per_asset.push((a.id.clone(), n, r));
    }
    per_asset.sort_by(|x, y| (y.2 * x.1).cmp(&(x.2 * y.1)));
    let share = |r: usize, n: usize| 100.0 * r as f64 / n.max(1) as f64;
    eprintln!(
        "{refused} of {origins} daily origins ({:.2}%) of {} assets have an hour without trading in the last day",
        share(refused, origins),
        assets.len()
    );
    for (id, n, r) in per_asset.iter().take(10) {
        eprintln!("  {id}: {r} of {n} ({:.1}%)", share(*r, *n));
    }
    assert!(origins > 80_000);
    assert!(
        share(refused, origins) < 3.0,
        "the rule refuses too much of the market"
    );
    for big in ["BTCUSDT", "ETHUSDT"] {
        let (_, n, r) = per_asset.iter().find(|p| p.0 == big).unwrap();
        assert!(share(*r, *n) < 1.0, "{big}: {r} of {n}");
    }
}

/// The model as operated (what `evaluate`, calibration and the backtest score) has no forecast
/// on a window the rule refuses, as the service answers none, and has one on the others.
#[test]
fn the_operated_model_has_no_forecast_on_refused_windows() {
    use volcast_core::forecast::{DrawdownQuery, ForecastRequest, HORIZONS, Origin};
    let Some(dir) = volcast_tests::shared_hourly() else {
        return;
    };
    let wanted: Vec<String> = ["BTCUSDT", "DENTUSDT", "DUSKUSDT"].map(String::from).to_vec();
    let loaded = volcast_training::data::load_assets(&[dir], Some(&wanted)).unwrap();
    let assets = to_panel(&loaded);
    let device = volcast_model::device::select(volcast_model::device::DeviceChoice::Cpu)
        .unwrap()
        .device;
    let model = volcast_model::inference::LoadedModel::load(
        &volcast_tests::repo_root().join("model-artifacts"),
        &device,
    )
    .unwrap();
    let origins: Vec<Origin> = assets
        .iter()
        .enumerate()
        .flat_map(|(asset, a)| {
            (1000..a.grid.len())
                .filter(|&slot| a.grid.hour(slot).rem_euclid(24) == 0 && a.grid.has_candle(slot))
                .map(move |slot| Origin { asset, slot })
        })
        .collect();
    let predictions = model
        .predictions(&ForecastRequest {
            assets: &assets,
            origins: &origins,
            horizons: &HORIZONS,
            drawdown: DrawdownQuery { alpha: 0.99, tau: 4 },
        })
        .unwrap();
    let (mut refused, mut served) = (0usize, 0usize);
    for (o, p) in origins.iter().zip(&predictions) {
        let degenerate = !assets[o.asset].grid.hours_without_trading(o.slot).is_empty();
        if degenerate {
            assert!(
                p.is_none(),
                "{} slot {}: forecast on a refused window",
                assets[o.asset].id,
                o.slot
            );
            refused += 1;
        } else {
            served += usize::from(p.is_some());
        }
    }
    eprintln!("{refused} refused and {served} served origins");
    assert!(
        refused > 50 && served > 1000,
        "{refused} refused, {served} served"
    );
}
