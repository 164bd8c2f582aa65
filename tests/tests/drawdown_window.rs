//! The served drawdown is the largest over every window up to tau (README, "Risk engine"). At
//! the bar's settings (alpha 0.99, tau 4 h) that changes no drawdown `evaluate` scores on the
//! committed artifacts: below the curves' first horizon (4 h) the variance is `V(4) t / 4`
//! whatever the forecast, so a shorter window wins only where the calibrated multiplier falls
//! steeply below 4 h, and theirs do not. Reads only the artifacts' calibrations (no market data).

use volcast_core::curve::VarianceCurve;
use volcast_core::drawdown::DrawdownRule;
use volcast_core::policy::{DrawdownWindow, drawdown_within};
use volcast_model::artifact::read_metadata;
use volcast_tests::repo_root;

#[test]
fn the_judged_drawdowns_are_unchanged_on_the_committed_artifacts() {
    for id in ["693e44b5f740fc82", "e511b0d43982c4cf"] {
        let metadata = read_metadata(&repo_root().join("model-artifacts").join(id)).unwrap();
        let risk = metadata.risk.as_ref().expect("calibrated");
        let calibrations = [Some(&risk.model), risk.har.as_ref()];
        for calibration in calibrations.into_iter().flatten() {
            let rule = DrawdownRule::Calibrated(calibration);
            for i in 0..=60 {
                // 4 h variances from 1e-6 to 1, and curves rising, flat or falling beyond.
                let v4 = 10f64.powf(-6.0 + f64::from(i) / 10.0);
                for (k24, k168) in [(6.0, 42.0), (1.0, 1.0), (0.2, 0.05)] {
                    let curve = VarianceCurve::new(&[4, 24, 168], &[v4, v4 * k24, v4 * k168]);
                    let at = drawdown_within(&curve, rule, 0.99, 4.0, DrawdownWindow::AtTau);
                    let within = drawdown_within(&curve, rule, 0.99, 4.0, DrawdownWindow::UpToTau);
                    assert_eq!(within, at, "{id}: v4 {v4}, x{k24} at 24 h, x{k168} at 168 h");
                }
            }
        }
    }
}
