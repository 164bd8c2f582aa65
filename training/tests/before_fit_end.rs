//! The daily job with the forecasts before the fit end made by other networks
//! (`DailyRecalibrated::with_before_fit_end`, `walkforward --before-fit-end-from`): the windows
//! that reach back before the fit end are measured on those networks' forecasts, the rest on the
//! served model's.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use volcast_model::operation::fit_end_hour;
use volcast_training::rolling::DailyRecalibrated;

mod common;
use common::trained_artifact;

#[test]
fn windows_before_the_fit_end_are_measured_on_the_other_networks() {
    let (tmp, served) = trained_artifact(|_| {});
    let (_tmp_b, other) = trained_artifact(|p| p.config = p.config.clone().with_seed(7));
    let assets = volcast_core::panel::to_panel(
        &volcast_training::data::load_dirs(&[tmp.path().join("data")]).unwrap(),
    );
    let fit_end = fit_end_hour(&served.metadata).unwrap();
    let anchor = fit_end - fit_end.rem_euclid(24);
    let days = (anchor, anchor + 24 * 5);
    let operate = |d: DailyRecalibrated<'_>| d.operate(&assets, &[], days).unwrap().corrections;
    let plain = operate(DailyRecalibrated::new(&served, 15));
    let scale = |c: &std::collections::BTreeMap<i64, Option<volcast_model::artifact::Recalibration>>,
                 day: i64| { c[&day].as_ref().unwrap().variance_scale.clone() };

    // The same networks before the fit end: the same operation.
    let same = operate(DailyRecalibrated::new(&served, 15).with_before_fit_end(&served));
    assert_eq!(format!("{same:?}"), format!("{plain:?}"));

    // On the fit end's day the window lies wholly before it: measured on the other networks'
    // forecasts alone, as the other model's own daily job measures it.
    let mixed = operate(DailyRecalibrated::new(&served, 15).with_before_fit_end(&other));
    let others = operate(DailyRecalibrated::new(&other, 15));
    assert_eq!(scale(&mixed, anchor), scale(&others, anchor));
    assert_ne!(
        scale(&mixed, anchor),
        scale(&plain, anchor),
        "two seeds, two networks"
    );
    // Five days on, the window holds the served model's forecasts after the fit end too.
    let later = anchor + 24 * 5;
    assert_ne!(scale(&mixed, later), scale(&others, later));
    assert_ne!(scale(&mixed, later), scale(&plain, later));
}
