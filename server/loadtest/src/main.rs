//! `loadtest`: throughput and p50/p99 latency of single-asset `POST /v1/risk/parameters`
//! requests against a running server on the loopback interface, at several concurrencies; with
//! `--asset`, beside `GET /v1/assets/{asset}/risk` on the same stored candles (the POST body is
//! the asset's latest `history_hours` stored candles, read once from the server), level by level.
//!
//! Bounded: at most `--requests` requests and `--max-seconds` per concurrency level, and only to
//! 127.0.0.1 / localhost. The body (generated candles, deterministic, or the stored ones) is
//! built once and reused.
//!
//! ```sh
//! cargo run --release --bin server -- --artifact /tmp/volcast-art &
//! cargo run --release --bin loadtest -- --url http://127.0.0.1:8080 --concurrency 1,16,64
//! # GET from the store beside POST (stored 2021 data: start the server with a long --max-staleness)
//! cargo run --release --bin loadtest -- --asset BTCUSDT
//! # the anomaly scan of a 64-asset batch, 889 candles each
//! cargo run --release --bin loadtest -- --scan-batch 64 --candles 889 --concurrency 1 --requests 30
//! ```
//!
//! # Layout
//! One file: the flags, the request body, one level of concurrency (`level`), and the report.
//! Its own crate so that only it (and the server's tests) pull in an HTTP client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use volcast_core::synth::{SynthConfig, generate};
use volcast_server::dto::anomaly::{ScanItem, ScanRequest};
use volcast_server::dto::{CandleDto, RiskRequest};

/// Load test of the risk route.
#[derive(Debug, Parser)]
#[command(name = "loadtest", about)]
struct Args {
    /// Server base URL; must be on 127.0.0.1 or localhost (any loopback address).
    #[arg(long, env = "VOLCAST_LOADTEST_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Candles per request (default: the model's `history_hours`, at least 720).
    #[arg(long, env = "VOLCAST_LOADTEST_CANDLES", value_parser = clap::value_parser!(u32).range(1..=MAX_CANDLES))]
    candles: Option<u32>,
    /// Concurrency levels, comma-separated.
    #[arg(
        long,
        env = "VOLCAST_LOADTEST_CONCURRENCY",
        value_delimiter = ',',
        default_value = "1,16,64",
        value_parser = clap::value_parser!(u32).range(1..=4096)
    )]
    concurrency: Vec<u32>,
    /// Requests per level (the cap; `--max-seconds` may stop a level sooner).
    #[arg(long, env = "VOLCAST_LOADTEST_REQUESTS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Longest run per level, seconds.
    #[arg(long, env = "VOLCAST_LOADTEST_MAX_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    max_seconds: u64,
    /// Warm-up requests per level, not counted.
    #[arg(long, env = "VOLCAST_LOADTEST_WARMUP", default_value_t = 50)]
    warmup: usize,
    /// A stored asset: also time `GET /v1/assets/ASSET/risk`, and POST its stored candles.
    #[arg(long, env = "VOLCAST_LOADTEST_ASSET")]
    asset: Option<String>,
    /// Time `POST /v1/anomaly/scan` instead: a batch of this many generated assets, `--candles`
    /// each.
    #[arg(long, env = "VOLCAST_LOADTEST_SCAN_BATCH", value_parser = clap::value_parser!(u32).range(1..=4096), conflicts_with = "asset")]
    scan_batch: Option<u32>,
}

/// One kind of request the test sends.
#[derive(Debug, Clone)]
enum Target {
    /// A POST of a JSON body.
    Post { url: String, body: bytes::Bytes },
    /// A GET.
    Get { url: String },
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Self::Post { url, body } => format!("POST {url} ({} KiB body)", body.len() / 1024),
            Self::Get { url } => format!("GET {url}"),
        }
    }
}

#[derive(Debug, Default)]
struct Level {
    latencies: Vec<Duration>,
    errors: usize,
    rejected: usize,
    elapsed: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[i]
}

async fn level(client: &reqwest::Client, target: &Target, args: &Args, c: u32) -> Level {
    // Warm-up.
    for _ in 0..args.warmup {
        let _ = send(client, target).await;
    }
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(c as usize);
    for _ in 0..c {
        let (client, target, next) = (client.clone(), target.clone(), Arc::clone(&next));
        let total = args.requests;
        tasks.push(tokio::spawn(async move {
            let mut out = Level::default();
            while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                let t = Instant::now();
                match send(&client, &target).await {
                    Ok(200) => out.latencies.push(t.elapsed()),
                    Ok(429) => out.rejected += 1,
                    _ => out.errors += 1,
                }
            }
            out
        }));
    }
    let mut all = Level::default();
    for t in tasks {
        if let Ok(l) = t.await {
            all.latencies.extend(l.latencies);
            all.errors += l.errors;
            all.rejected += l.rejected;
        }
    }
    all.elapsed = started.elapsed();
    all.latencies.sort_unstable();
    all
}

fn request_to(client: &reqwest::Client, target: &Target) -> reqwest::RequestBuilder {
    match target {
        Target::Post { url, body } => client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone()),
        Target::Get { url } => client.get(url),
    }
}

async fn send(client: &reqwest::Client, target: &Target) -> Result<u16, reqwest::Error> {
    let response = request_to(client, target).send().await?;
    let status = response.status().as_u16();
    let _ = response.bytes().await?;
    Ok(status)
}

/// Candles per request at most (a body of 10^8 candles aborted the process on allocation).
const MAX_CANDLES: i64 = 1_000_000;

/// Whether `url` is plain HTTP to this host, as parsed by the client that sends the requests
/// (a hand split took `localhost` in `http://localhost:1@192.0.2.1/` for the host).
fn loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = url.host_str().unwrap_or("");
    url.scheme() == "http"
        && (host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let base = args.url.trim_end_matches('/').to_owned();
    if !loopback(&base) {
        eprintln!("loadtest: only http://127.0.0.1 or http://localhost targets are allowed");
        return std::process::ExitCode::FAILURE;
    }
    // Only to the loopback address checked: no redirect followed elsewhere, no proxy from the
    // environment in between.
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let history = match client.get(format!("{base}/v1/model")).send().await {
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["history_hours"].as_u64())
            .and_then(|h| usize::try_from(h).ok()),
        Err(e) => {
            eprintln!("loadtest: cannot reach {base}/v1/model: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let n = args
        .candles
        .map_or_else(|| history.unwrap_or(889).max(720), |n| n as usize);
    let (asset, candles) = match &args.asset {
        None => ("SYNTH01".to_owned(), synthetic(n)),
        Some(asset) => match stored(&client, &base, asset, n).await {
            Ok(c) => (asset.clone(), c),
            Err(e) => {
                eprintln!("loadtest: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let request = RiskRequest {
        asset: Some(asset.clone()),
        candles: Some(candles),
        ..RiskRequest::default()
    };
    let body = match serde_json::to_vec(&request) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            eprintln!("loadtest: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut targets = vec![Target::Post {
        url: format!("{base}/v1/risk/parameters"),
        body,
    }];
    if let Some(k) = args.scan_batch {
        let items: Vec<ScanItem> = (0..k)
            .map(|i| ScanItem {
                asset: format!("SYNTH{i:02}"),
                candles: synthetic_asset(n, u64::from(i)),
                pool: None,
            })
            .collect();
        let request = ScanRequest {
            items: Some(items),
            ..ScanRequest::default()
        };
        match serde_json::to_vec(&request) {
            Ok(b) => {
                targets = vec![Target::Post {
                    url: format!("{base}/v1/anomaly/scan"),
                    body: bytes::Bytes::from(b),
                }];
            }
            Err(e) => {
                eprintln!("loadtest: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    } else if args.asset.is_some() {
        targets.push(Target::Get {
            url: format!("{base}/v1/assets/{asset}/risk"),
        });
    }
    for t in &targets {
        // The server's own words when it refuses (a `--candles` below the model's history).
        let first = match request_to(&client, t).send().await {
            Ok(r) => Ok((r.status().as_u16(), r.text().await.unwrap_or_default())),
            Err(e) => Err(e),
        };
        match first {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                eprintln!("loadtest: a first {} answered {status}: {body}", t.describe());
                return std::process::ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("loadtest: a first {} failed: {e}", t.describe());
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    match args.scan_batch {
        Some(k) => println!(
            "anomaly scan of {k} generated assets, {n} candles each; up to {} requests or {} s per level",
            args.requests, args.max_seconds
        ),
        None => println!(
            "single asset {asset}, {n} candles; up to {} requests or {} s per level",
            args.requests, args.max_seconds
        ),
    }
    println!("| request | concurrency | requests | req/s | p50 ms | p99 ms | 429 | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    let mut failed = 0;
    for &c in &args.concurrency {
        let mut rates = Vec::new();
        for t in &targets {
            let l = level(&client, t, &args, c).await;
            failed += l.errors;
            let ok = l.latencies.len();
            let rps = ok as f64 / l.elapsed.as_secs_f64().max(1e-9);
            rates.push(rps);
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "| {} | {c} | {ok} | {rps:.0} | {:.2} | {:.2} | {} | {} |",
                t.describe(),
                ms(percentile(&l.latencies, 0.5)),
                ms(percentile(&l.latencies, 0.99)),
                l.rejected,
                l.errors
            );
        }
        if let [post, get] = rates[..] {
            ratios.push((c, get / post.max(1e-9)));
        }
    }
    for (c, r) in ratios {
        println!("GET/POST throughput at concurrency {c}: {r:.2}x");
    }
    if failed > 0 {
        // Rates measured over failures are no measure of the service: not a success.
        eprintln!("loadtest: {failed} requests failed (no answer, or a status other than 200 and 429)");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// `n` generated candles (deterministic, no gaps).
fn synthetic(n: usize) -> Vec<CandleDto> {
    synthetic_asset(n, 0)
}

/// `n` generated candles of asset number `i` (deterministic, no gaps).
fn synthetic_asset(n: usize, i: u64) -> Vec<CandleDto> {
    let start_ms = 1_704_067_200_000; // 2024-01-01
    generate(&SynthConfig {
        gap_rate: 0.0,
        ..SynthConfig::panel_asset(1 + i, 42 + i, n, start_ms)
    })
    .into_iter()
    .map(CandleDto::from)
    .collect()
}

/// The latest `n` stored candles of `asset`, read from the server.
async fn stored(
    client: &reqwest::Client,
    base: &str,
    asset: &str,
    n: usize,
) -> Result<Vec<CandleDto>, String> {
    let url = format!("{base}/v1/assets/{asset}/candles?limit={n}");
    let response = client.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let page: serde_json::Value = response.json().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {page}"));
    }
    serde_json::from_value(page["candles"].clone()).map_err(|e| format!("{url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::loopback;

    #[test]
    fn only_plain_http_to_this_host_is_a_target() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
            "http://127.0.0.2",
        ] {
            assert!(loopback(url), "{url}");
        }
        for url in [
            // What a hand split of the string took for the host: the user, not 192.0.2.1.
            "http://localhost:18181@192.0.2.1:9/",
            "http://127.0.0.1@example.com/",
            "http://192.0.2.1/",
            "https://127.0.0.1/",
            "127.0.0.1:8080",
            "http://localhost.example.com/",
        ] {
            assert!(!loopback(url), "{url}");
        }
    }
}
