//! DEX pool files of the shared data (`defi/uniswap-v2-pairs`, `defi/sushiswap-pairs`): each
//! pool's snapshots, priced in the exchange asset of its non-quote token.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use rayon::prelude::*;
use volcast_core::anomaly::features::PoolSnapshot;

/// One DEX pool's snapshots and the exchange asset they price.
#[derive(Debug, Clone)]
pub struct Pool {
    /// `<dex>:<TOKEN0>-<TOKEN1>`, e.g. `uniswap-v2:LINK-WETH`.
    pub id: String,
    /// The exchange asset of the pool's non-quote token, e.g. `LINKUSDT`.
    pub asset: String,
    /// Whether the asset is the pool's token0 (else token1).
    pub asset_is_token0: bool,
    /// Snapshots, oldest first.
    pub snapshots: Vec<PoolSnapshot>,
    /// Rows left out of [`Self::snapshots`] as unusable, by file line (the header is line 1)
    /// and why: a value that is not a finite number or is negative, or a time already read.
    /// [`load_pools`] logs them. Empty pools (no reserves yet) are left out too, but they are
    /// not faults and are not listed.
    pub skipped: Vec<(usize, String)>,
}

/// Quote tokens, most quote-like first: a pool's asset is its other token.
const QUOTES: [&str; 4] = ["USDT", "USDC", "DAI", "WETH"];

/// The exchange asset of a pool token (`WETH` trades as `ETHUSDT`, `WBTC` as `BTCUSDT`).
#[must_use]
pub fn exchange_asset(token: &str) -> String {
    match token {
        "WETH" => "ETHUSDT".into(),
        "WBTC" => "BTCUSDT".into(),
        t => format!("{t}USDT"),
    }
}

/// Which token of `TOKEN0-TOKEN1` is the asset: the one that is not the more quote-like.
fn asset_side(token0: &str, token1: &str) -> bool {
    let rank = |t: &str| QUOTES.iter().position(|q| *q == t).unwrap_or(usize::MAX);
    // token0 is the asset unless it ranks as a better quote than token1.
    rank(token0) >= rank(token1)
}

/// Reads one pool file (`TOKEN0-TOKEN1.csv.gz`, the subgraph's columns).
///
/// # Errors
/// An unreadable file, a missing column or an unparsable row, naming the file and row.
pub fn read_pool(path: &Path, dex: &str) -> anyhow::Result<Pool> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".csv.gz").or_else(|| n.strip_suffix(".csv")))
        .with_context(|| format!("{}: not a pool file name", path.display()))?;
    let (t0, t1) = stem
        .split_once('-')
        .with_context(|| format!("{}: expected TOKEN0-TOKEN1", path.display()))?;
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    if path.extension().is_some_and(|e| e == "gz") {
        // Every member: a file of concatenated gzip members is read whole (as candles are).
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .with_context(|| format!("decompressing {}", path.display()))?;
    } else {
        text = String::from_utf8(raw).with_context(|| format!("{}: not UTF-8", path.display()))?;
    }
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("{}: no column {name}", path.display()))
    };
    let asset_is_token0 = asset_side(t0, t1);
    let (ra, rq) = if asset_is_token0 {
        (col("reserve0")?, col("reserve1")?)
    } else {
        (col("reserve1")?, col("reserve0")?)
    };
    let (time, usd, supply, tx, vol) = (
        col("datetime")?,
        col("reserveUSD")?,
        col("totalSupply")?,
        col("txCount")?,
        col("volumeUSD")?,
    );
    let mut snapshots = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in lines.enumerate() {
        // A blank line (one at the end of the file, most often) holds no snapshot.
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let num = |j: usize| -> anyhow::Result<f64> {
            f.get(j)
                .and_then(|s| s.parse::<f64>().ok())
                .with_context(|| format!("{} line {}: bad {}", path.display(), i + 2, header[j]))
        };
        let t = chrono::NaiveDateTime::parse_from_str(
            f.get(time).copied().unwrap_or_default(),
            "%Y-%m-%d %H:%M:%S",
        )
        .with_context(|| format!("{} line {}: bad datetime", path.display(), i + 2))?;
        let s = PoolSnapshot {
            time_ms: t.and_utc().timestamp_millis(),
            reserve_asset: num(ra)?,
            reserve_quote: num(rq)?,
            reserve_usd: num(usd)?,
            total_supply: num(supply)?,
            tx_count: num(tx)?,
            volume_usd: num(vol)?,
        };
        let values = [
            (ra, s.reserve_asset),
            (rq, s.reserve_quote),
            (usd, s.reserve_usd),
            (supply, s.total_supply),
            (tx, s.tx_count),
            (vol, s.volume_usd),
        ];
        // A NaN would reach the features (a NaN transaction count was kept), a negative
        // reserve or volume is no pool's state: left out, and said.
        if let Some((j, v)) = values.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            skipped.push((i + 2, format!("{} is {v}", header[*j])));
            continue;
        }
        // Empty pools (before the first deposit) price nothing.
        if s.reserve_asset > 0.0 && s.reserve_quote > 0.0 && s.reserve_usd > 0.0 {
            snapshots.push((i + 2, s));
        }
    }
    snapshots.sort_by_key(|(_, s)| s.time_ms);
    let mut kept: Vec<PoolSnapshot> = Vec::with_capacity(snapshots.len());
    for (line, s) in snapshots {
        match kept.last() {
            Some(last) if last.time_ms == s.time_ms => {
                skipped.push((line, format!("{} repeats an earlier row's time", header[time])));
            }
            // Cumulative counts that fall were reset: the next snapshot's rate would be the
            // whole count, a burst no pool had (the service refuses such snapshots too).
            Some(last) if s.tx_count < last.tx_count => {
                skipped.push((line, format!("{} falls from {}", header[tx], last.tx_count)));
            }
            Some(last) if s.volume_usd < last.volume_usd => {
                skipped.push((line, format!("{} falls from {}", header[vol], last.volume_usd)));
            }
            // Reserves with no LP token are no pool's state.
            _ if s.total_supply == 0.0 => {
                skipped.push((line, format!("{} is 0 beside reserves", header[supply])));
            }
            _ => kept.push(s),
        }
    }
    skipped.sort_unstable();
    Ok(Pool {
        id: format!("{dex}:{stem}"),
        asset: exchange_asset(if asset_is_token0 { t0 } else { t1 }),
        asset_is_token0,
        snapshots: kept,
        skipped,
    })
}

/// Every pool under `defi/` of the shared data (`uniswap-v2-pairs`, `sushiswap-pairs`).
///
/// # Errors
/// The first unreadable pool file.
pub fn load_pools(data: &Path) -> anyhow::Result<Vec<Pool>> {
    let mut files = Vec::new();
    for (dir, dex) in [
        ("uniswap-v2-pairs", "uniswap-v2"),
        ("sushiswap-pairs", "sushiswap"),
    ] {
        let d = data.join("defi").join(dir);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        // Pool files only: a README or a folder beside them is not a pool.
        for e in entries.flatten() {
            let path = e.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_file() && (name.ends_with(".csv") || name.ends_with(".csv.gz")) {
                files.push((path, dex));
            }
        }
    }
    files.sort();
    let pools: Vec<Pool> = files
        .par_iter()
        .map(|(p, dex)| read_pool(p, dex))
        .collect::<anyhow::Result<_>>()?;
    for p in pools.iter().filter(|p| !p.skipped.is_empty()) {
        let (line, why) = &p.skipped[0];
        tracing::warn!(
            pool = %p.id,
            skipped = p.skipped.len(),
            "pool rows left out as unusable, the first at line {line}: {why}"
        );
    }
    Ok(pools)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_assets_are_the_non_quote_token() {
        assert!(asset_side("LINK", "WETH"));
        assert!(!asset_side("WETH", "CRV"));
        assert!(asset_side("WETH", "USDT"));
        assert!(asset_side("WETH", "USDC"));
        assert!(!asset_side("USDC", "WETH"));
        assert!(asset_side("WBTC", "WETH"));
        assert_eq!(exchange_asset("WETH"), "ETHUSDT");
        assert_eq!(exchange_asset("WBTC"), "BTCUSDT");
    }

    #[test]
    fn a_pool_file_reads_with_its_asset_side() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("WETH-CRV.csv");
        std::fs::write(
            &p,
            "datetime,liquidityProviderCount,reserve0,reserve1,reserveETH,reserveUSD,token0Price,token1Price,totalSupply,trackedReserveETH,txCount,volumeToken0,volumeToken1,volumeUSD\n\
             2021-01-01 00:10:00,0,10,20000,20,40000,1,1,100,20,5,1,1,1000\n\
             2021-01-01 03:40:00,0,11,19000,22,44000,1,1,101,22,9,1,1,1500\n",
        )
        .unwrap();
        let pool = read_pool(&p, "sushiswap").unwrap();
        assert_eq!(pool.asset, "CRVUSDT");
        assert!(!pool.asset_is_token0);
        assert_eq!(pool.snapshots.len(), 2);
        assert!((pool.snapshots[0].reserve_asset - 20000.0).abs() < 1e-9);
        assert!((pool.snapshots[0].implied_price_usd() - 1.0).abs() < 1e-12);
        assert!(pool.skipped.is_empty());
    }

    /// Rows no pool can be in are left out and listed by line (a NaN transaction count was
    /// kept, a negative reserve or a repeated time dropped without a word); an empty pool is
    /// left out as before, and is no fault.
    #[test]
    fn unusable_pool_rows_are_left_out_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("LINK-WETH.csv");
        std::fs::write(
            &p,
            "datetime,reserve0,reserve1,reserveUSD,totalSupply,txCount,volumeUSD\n\
             2021-01-01 00:00:00,10,1,40,100,5,1000\n\
             2021-01-01 01:00:00,10,1,40,100,NaN,1000\n\
             2021-01-01 02:00:00,-10,1,40,100,6,1000\n\
             2021-01-01 03:00:00,0,0,0,0,6,0\n\
             2021-01-01 00:00:00,11,1,41,100,7,1000\n\
             2021-01-01 04:00:00,10,1,40,100,8,inf\n\
             2021-01-01 05:00:00,12,1,44,100,9,1100\n\
             2021-01-01 06:00:00,12,1,44,100,2,1200\n\
             2021-01-01 07:00:00,12,1,44,100,10,900\n\
             2021-01-01 08:00:00,12,1,44,0,11,1300\n\
             2021-01-01 09:00:00,12,1,44,100,12,1400\n\n",
        )
        .unwrap();
        let pool = read_pool(&p, "uniswap-v2").unwrap();
        assert_eq!(pool.snapshots.len(), 3);
        assert!(
            (pool.snapshots[0].reserve_asset - 10.0).abs() < 1e-12,
            "the first of a repeated time"
        );
        assert_eq!(
            pool.skipped,
            vec![
                (3, "txCount is NaN".to_owned()),
                (4, "reserve0 is -10".to_owned()),
                (6, "datetime repeats an earlier row's time".to_owned()),
                (7, "volumeUSD is inf".to_owned()),
                (9, "txCount falls from 9".to_owned()),
                (10, "volumeUSD falls from 1100".to_owned()),
                (11, "totalSupply is 0 beside reserves".to_owned()),
            ]
        );
    }

    /// A pool folder's other files (a README, a folder) are not pools (they stopped `train`,
    /// `evaluate` and `chart`), and a gzip file of several members is read whole (its later
    /// members were dropped without a word).
    #[test]
    fn pool_folders_read_pool_files_whole_and_only_them() {
        use std::io::Write;
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("defi").join("uniswap-v2-pairs");
        std::fs::create_dir_all(dir.join("old")).unwrap();
        std::fs::write(dir.join("README.md"), "pool snapshots\n").unwrap();
        let member = |text: &str| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(text.as_bytes()).unwrap();
            gz.finish().unwrap()
        };
        let mut bytes = member(
            "datetime,reserve0,reserve1,reserveUSD,totalSupply,txCount,volumeUSD\n\
             2021-01-01 00:00:00,10,1,40,100,5,1000\n",
        );
        bytes.extend(member("2021-01-01 01:00:00,11,1,41,100,6,1100\n"));
        std::fs::write(dir.join("LINK-WETH.csv.gz"), bytes).unwrap();
        let pools = load_pools(data.path()).unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].snapshots.len(), 2, "both gzip members");
    }
}
