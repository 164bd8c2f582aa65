//! The sample data the repository ships is what our generator makes, so it can be rebuilt and
//! trusted: regenerate it and compare candle by candle.

use volcast_core::synth::{SynthConfig, generate};
use volcast_tests::repo_root;
use volcast_training::data::{load_dirs, read_file};

#[test]
fn committed_sample_is_reproducible() {
    let sample = repo_root().join("data/sample");
    let assets = load_dirs(std::slice::from_ref(&sample)).unwrap();
    assert_eq!(assets.len(), 3);
    // `generate --out data/sample` with its defaults: 200 days from 2020-01-01, seed 1.
    for (i, asset) in (1u64..).zip(&assets) {
        assert_eq!(asset.asset, format!("SYNTH{i:02}"));
        let expected = generate(&SynthConfig::panel_asset(i, 1, 24 * 200, 1_577_836_800_000));
        let got = read_file(&sample.join(format!("SYNTH{i:02}.csv.gz"))).unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g.open_time, e.open_time);
            // Written with Rust's shortest round-trip formatting: exact.
            assert_eq!((g.open, g.high, g.low, g.close), (e.open, e.high, e.low, e.close));
            assert_eq!((g.volume, g.quote_volume), (e.volume, e.quote_volume));
        }
    }
}
