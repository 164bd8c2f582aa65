//! Server configuration: one clap struct, every option also an environment variable, each doc
//! comment the `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::queue::QueueConfig;
use volcast_core::policy::{AskedSettings, RiskSettings, SettingNames, SettingsError};

use clap::Parser;

/// The volcast forecasting and risk-parameter service.
#[derive(Debug, Clone, Parser)]
#[command(name = "server", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on (HOST:PORT; port 0 picks a free one, printed at start).
    #[arg(long, env = "VOLCAST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Model artifact: an artifact directory, or an artifacts directory whose `default` file
    /// names one.
    #[arg(long, env = "VOLCAST_ARTIFACT", default_value = "model-artifacts")]
    pub artifact: PathBuf,

    /// Serve an artifact that says it has no risk calibration (its drawdowns then use the less
    /// conservative reflection-normal rule); without this such an artifact is refused at start
    /// and at reload.
    #[arg(long, env = "VOLCAST_ALLOW_UNCALIBRATED", default_value_t = false)]
    pub allow_uncalibrated: bool,

    /// Most model inputs (assets) in one forward pass of the batching queue.
    #[arg(long, env = "VOLCAST_MAX_BATCH", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_batch: u32,

    /// Longest time, in microseconds, the queue waits for more requests before a forward pass
    /// (0: batch only what is already waiting, which under load is plenty); at most 1 s, and
    /// below the request timeout.
    #[arg(long, env = "VOLCAST_MAX_WAIT_US", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub max_wait_us: u64,

    /// Requests the inference queue holds before answering 429, 1 to 1,000,000 (its slots are
    /// allocated at start).
    #[arg(long, env = "VOLCAST_QUEUE_CAPACITY", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_capacity: u32,

    /// Seconds a client is told to wait (`Retry-After`) when the queue is full, at least 1.
    #[arg(long, env = "VOLCAST_RETRY_AFTER_S", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_after_s: u64,

    /// Request timeout in milliseconds (answered 503 `timeout`).
    #[arg(long, env = "VOLCAST_REQUEST_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,

    /// Largest request body in bytes (answered 413 `payload_too_large`), at least 1024.
    #[arg(long, env = "VOLCAST_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..))]
    pub max_body_bytes: usize,

    /// Most assets in one batch request (answered 413 `batch_too_large`), at least 1.
    #[arg(long, env = "VOLCAST_MAX_ITEMS", default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_items: usize,

    /// Most candles per asset in a request (answered 413 `too_many_candles`); only the most
    /// recent hours the model needs are used. At least the model's `history_hours` (checked when
    /// it loads).
    #[arg(long, env = "VOLCAST_MAX_CANDLES", default_value_t = 20_000)]
    pub max_candles: usize,

    /// Default quantile level of the drawdown, when a risk request gives none (SPEC: 0.99). The
    /// service's own validation (the ledger, the gate) judges the model at 0.99 whatever this
    /// says.
    #[arg(long, env = "VOLCAST_ALPHA", default_value_t = volcast_core::policy::DEFAULT_ALPHA)]
    pub alpha: f64,

    /// Default liquidation window in hours, when a risk request gives none (SPEC: 4). The
    /// service's own validation (the ledger, the gate) judges the model at 4 h whatever this
    /// says.
    #[arg(long, env = "VOLCAST_TAU_HOURS", default_value_t = volcast_core::policy::DEFAULT_TAU as f64)]
    pub tau_hours: f64,

    /// Default user reaction window in hours, when a risk request gives none (SPEC: 24).
    #[arg(long, env = "VOLCAST_TAU_USER_HOURS", default_value_t = volcast_core::policy::DEFAULT_TAU_USER as f64)]
    pub tau_user_hours: f64,

    /// Default floor of the liquidation bonus, when a risk request gives none (SPEC: 0.05).
    #[arg(long, env = "VOLCAST_BONUS", default_value_t = volcast_core::policy::DEFAULT_BONUS)]
    pub bonus: f64,

    /// Default sale size in USD for slippage, when a request gives none.
    #[arg(long, env = "VOLCAST_SALE_SIZE_USD", default_value_t = 1_000_000.0)]
    pub sale_size_usd: f64,

    /// Default margin added to the expected slippage for the liquidation bonus.
    #[arg(long, env = "VOLCAST_BONUS_MARGIN", default_value_t = 0.01)]
    pub bonus_margin: f64,

    /// Default maximum relative step from a previous value, when a request gives a previous
    /// value but no `max_step`.
    #[arg(long, env = "VOLCAST_MAX_STEP", default_value_t = 0.1)]
    pub max_step: f64,

    /// Longest a client may take to send a request's headers, in milliseconds, counted from
    /// when the connection waits for them: also how long an idle keep-alive connection stays
    /// open, and how long an answer waits for a client that reads nothing before the
    /// connection is closed. At least 100.
    #[arg(long, env = "VOLCAST_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub header_read_timeout_ms: u64,

    /// Most connections open at once; a connection over the cap is answered 503
    /// `too_many_connections` and closed (keep it well below the process's file-descriptor limit,
    /// less 64 for the refused connections that linger). At least 1.
    #[arg(long, env = "VOLCAST_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,

    /// After SIGTERM, how long in-flight requests may take, in milliseconds, before the
    /// connections still open are dropped; the store's connections are then closed within as
    /// long again, and the process exits.
    #[arg(long, env = "VOLCAST_SHUTDOWN_DEADLINE_MS", default_value_t = 10_000)]
    pub shutdown_deadline_ms: u64,

    /// The market-data store: `sqlite://FILE` (created with its directory and migrated on first
    /// start; the default is embedded) or `postgres://USER@HOST/DB` (for several replicas).
    #[arg(long, env = "VOLCAST_DATABASE_URL", default_value = volcast_store::DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Oldest an asset's last stored candle may be, counted from its close, before the asset
    /// routes answer 503 `stale_market_data` instead of forecasting on old data (`90m`, `2h`,
    /// `7d`). At least 61 minutes: the newest closed candle is up to an hour
    /// old on a store kept current, and the follower stores it seconds after it closes.
    #[arg(long, env = "VOLCAST_MAX_STALENESS", default_value = "2h", value_parser = parse_duration)]
    pub max_staleness: Duration,

    /// Re-measure the model's corrections inside the service every day at 00:00 UTC on the
    /// stored candles (the code of `calibrate --until`), and serve the result. Only for artifacts
    /// that declare a rolling window; `false` leaves it to the external job and SIGHUP.
    #[arg(long, env = "VOLCAST_DAILY_RECALIBRATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub daily_recalibration: bool,

    /// Where the daily recalibration writes its artifacts (one per day, content-addressed).
    #[arg(long, env = "VOLCAST_RECALIBRATED_DIR", default_value = "data/recalibrated")]
    pub recalibrated_dir: PathBuf,

    /// The decision log's Ed25519 signing key (PKCS#8 DER). Generated, with mode 0600, on
    /// first start when the file is absent; its public key is at `GET /v1/keys`. Default:
    /// `signing-key.pk8` beside the SQLite store (`data/` for PostgreSQL).
    #[arg(long, env = "VOLCAST_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,

    /// The anomaly detector's JSON (`anomaly train`). Default: `anomaly.json` in the served
    /// artifact's directory when there is one; without a detector the anomaly routes answer 503
    /// `detector_unavailable` and risk answers carry no anomaly section.
    #[arg(long, env = "VOLCAST_ANOMALY_DETECTOR")]
    pub anomaly_detector: Option<PathBuf>,

    /// Load an anomaly detector at all. `false` serves without one (the anomaly routes answer
    /// 503, risk answers carry no anomaly section): for a replica that does not need it, or to
    /// measure what the detector costs the risk route.
    #[arg(long, env = "VOLCAST_ANOMALY", default_value_t = true, action = clap::ArgAction::Set)]
    pub anomaly: bool,

    /// What an active anomaly flag on the collateral does to risk parameters: `report` (only
    /// reported in `derivation.anomaly`) or `tighten` (doubles the liquidation window tau, up to
    /// 168 h).
    #[arg(long, env = "VOLCAST_ANOMALY_ACTION", value_enum, default_value = "report")]
    pub anomaly_action: crate::anomaly::Action,

    /// Hours before a risk answer's origin in which a flagged hour makes a flag active.
    #[arg(long, env = "VOLCAST_ANOMALY_WINDOW_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=168))]
    pub anomaly_window_hours: u32,

    /// Append every risk answer to the signed decision log before returning it. `false` serves
    /// answers without a decision id and keeps no record (for benchmarks of the log's cost, or
    /// a replica nobody audits); the server warns at start.
    #[arg(long, env = "VOLCAST_DECISION_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub decision_log: bool,

    /// Serve without API keys on a non-loopback address. Without keys (created with the `keys`
    /// command) the server otherwise refuses to listen beyond loopback.
    #[arg(long, env = "VOLCAST_INSECURE_NO_AUTH", default_value_t = false)]
    pub insecure_no_auth: bool,

    /// Requests per minute one API key may make (a key's own limit, set at `keys create`,
    /// overrides it), from a bucket holding ten seconds' worth of them (at least one: at 3 a
    /// minute, one request, then one every 20 s); over it the answer is 429 `rate_limited` with
    /// `Retry-After`.
    #[arg(long, env = "VOLCAST_KEY_RATE_PER_MINUTE", default_value_t = 6000, value_parser = clap::value_parser!(u32).range(1..))]
    pub key_rate_per_minute: u32,

    /// Ask for an API key with the `read` scope on `/metrics` too; by default it stays open, like
    /// `/healthz`, `/readyz` and `/docs`.
    #[arg(long, env = "VOLCAST_METRICS_NEED_KEY", default_value_t = false)]
    pub metrics_need_key: bool,

    /// Follow these Binance symbols live (comma-separated, e.g. `BTCUSDT,ETHUSDT`): their closed
    /// hourly candles are stored as they close, after a backfill from the last stored one.
    #[arg(long, env = "VOLCAST_FOLLOW", value_delimiter = ',')]
    pub follow: Vec<String>,

    /// Follow every asset already in the store (besides `--follow`'s).
    #[arg(long, env = "VOLCAST_FOLLOW_ALL", default_value_t = false)]
    pub follow_all: bool,

    /// Base URL of Binance's REST API for the follower.
    #[arg(long, env = "VOLCAST_BINANCE_URL", default_value = crate::follower::DEFAULT_BINANCE_URL)]
    pub binance_url: String,

    /// Longest wait between two requests of a caught-up symbol (it asks sooner when the next
    /// hour closes sooner).
    #[arg(long, env = "VOLCAST_FOLLOW_POLL", default_value = "60s", value_parser = parse_duration)]
    pub follow_poll: Duration,

    /// Hours back from now where a followed asset with no stored candle starts (the model
    /// needs 889).
    #[arg(long, env = "VOLCAST_FOLLOW_BACKFILL_HOURS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub follow_backfill_hours: u32,

    /// Longest backoff of the follower after failures (429, 418, 5xx, network); the first is
    /// one second, doubling, with jitter.
    #[arg(long, env = "VOLCAST_FOLLOW_BACKOFF_MAX", default_value = "5m", value_parser = parse_duration)]
    pub follow_backoff_max: Duration,

    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` wins when set.
    #[arg(long, env = "VOLCAST_LOG", default_value = "info")]
    pub log: String,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "VOLCAST_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl Config {
    /// The server's defaults, whatever the environment says: for tools that run the server's
    /// code without being the server (`replay` read `VOLCAST_MAX_CANDLES` and `VOLCAST_LISTEN`,
    /// and failed on flags it does not have).
    ///
    /// # Errors
    /// None in practice: the defaults parse.
    pub fn defaults() -> Result<Self, clap::Error> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let matches = Self::command()
            .mut_args(|a| a.env(None))
            .try_get_matches_from(["server"])?;
        Self::from_arg_matches(&matches)
    }

    /// The defaults (and `VOLCAST_*` variables) with this artifact, for tests and embedding.
    ///
    /// # Errors
    /// A `VOLCAST_*` variable that does not parse.
    pub fn with_artifact(artifact: PathBuf) -> Result<Self, clap::Error> {
        let mut c = Self::try_parse_from(["server"])?;
        c.artifact = artifact;
        Ok(c)
    }

    /// The request timeout.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The defaults of the risk routes' settings (SPEC's unless this config says otherwise),
    /// checked against the same ranges as every request.
    ///
    /// # Errors
    /// A default outside its range, named by its flag.
    pub fn risk_defaults(&self) -> Result<RiskSettings, SettingsError> {
        let candidate = RiskSettings {
            alpha: self.alpha,
            tau: self.tau_hours,
            tau_user: self.tau_user_hours,
            bonus: self.bonus,
            sale_size_usd: self.sale_size_usd,
            bonus_margin: self.bonus_margin,
            max_step: self.max_step,
        };
        RiskSettings::resolve(&AskedSettings::default(), &candidate, &SERVER_FLAG_NAMES)
    }

    /// The connection limits ([`crate::serve::ConnectionLimits`]).
    #[must_use]
    pub fn connection_limits(&self) -> crate::serve::ConnectionLimits {
        crate::serve::ConnectionLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            max_connections: self.max_connections.max(1),
            max_refusing: MAX_REFUSING,
            refusal_linger: Duration::from_secs(1),
            shutdown_deadline: Duration::from_millis(self.shutdown_deadline_ms),
        }
    }

    /// The follower's settings, when it follows anything.
    #[must_use]
    pub fn follow_config(&self) -> Option<crate::follower::FollowConfig> {
        (!self.follow.is_empty() || self.follow_all).then(|| crate::follower::FollowConfig {
            symbols: self.follow.clone(),
            all: self.follow_all,
            base_url: self.binance_url.clone(),
            poll: self.follow_poll,
            backoff_max: self.follow_backoff_max.max(Duration::from_secs(1)),
            backfill_hours: self.follow_backfill_hours,
            ..crate::follower::FollowConfig::default()
        })
    }

    /// The queue's longest wait.
    #[must_use]
    pub fn max_wait(&self) -> Duration {
        Duration::from_micros(self.max_wait_us)
    }

    /// Limits that each parse but together leave nothing answered.
    ///
    /// # Errors
    /// What is wrong, naming the flags.
    pub fn check_limits(&self) -> Result<(), String> {
        if self.max_staleness < MIN_STALENESS {
            return Err(format!(
                "--max-staleness {:?} is below {} minutes: candles close hourly, so on a store kept \
                 current the newest is up to an hour old, and the asset routes would answer 503 \
                 stale_market_data for part of every hour",
                self.max_staleness,
                MIN_STALENESS.as_secs() / 60
            ));
        }
        if self.max_wait() >= self.request_timeout() {
            return Err(format!(
                "--max-wait-us {} is not below --request-timeout-ms {}: a request alone in the \
                 queue would wait for company until it timed out",
                self.max_wait_us, self.request_timeout_ms
            ));
        }
        Ok(())
    }
}

/// The server's flags of the risk settings, named in a refusal of their values.
const SERVER_FLAG_NAMES: SettingNames = SettingNames {
    alpha: "--alpha",
    tau: "--tau-hours",
    tau_user: "--tau-user-hours",
    bonus: "--bonus",
    bonus_margin: "--bonus-margin",
    sale_size_usd: "--sale-size-usd",
    max_step: "--max-step",
};

/// Shortest `--max-staleness`: an hour between closes, and a minute for the follower to ask for
/// and store the candle that closed.
pub const MIN_STALENESS: Duration = Duration::from_secs(61 * 60);

/// Most refused connections that linger at once to drain their client's request
/// ([`crate::serve::ConnectionLimits::max_refusing`]).
pub const MAX_REFUSING: usize = 64;

/// Variables named `VOLCAST_*` that other tools of the project read, not the server.
const OTHER_TOOLS_ENV: [&str; 7] = [
    "VOLCAST_DATA",
    "VOLCAST_SHARED_DATA",
    "VOLCAST_REQUIRE_SHARED_DATA",
    "VOLCAST_REQUIRE_WGPU",
    "VOLCAST_TEST_POSTGRES_URL",
    "VOLCAST_UPDATE_OPENAPI",
    "VOLCAST_LOADTEST_",
];

/// The names among `names` that look like the server's variables (`VOLCAST_*`) but that no
/// option reads, nor another tool of the project: a typo (`VOLCAST_MAX_BACH`) that would
/// otherwise leave the option at its default without a word.
#[must_use]
pub fn unread_env_names(names: impl IntoIterator<Item = String>) -> Vec<String> {
    use clap::CommandFactory as _;
    let command = Config::command();
    let read: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let mut unread: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with("VOLCAST_"))
        .filter(|n| !read.contains(n))
        .filter(|n| {
            !OTHER_TOOLS_ENV.iter().any(|o| {
                if o.ends_with('_') {
                    n.starts_with(o)
                } else {
                    n == o
                }
            })
        })
        .collect();
    unread.sort();
    unread
}

/// A duration written as a whole number and a unit: `s`, `m`, `h` or `d` (`2h`, `90s`).
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number and a unit, e.g. 2h or 90s"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d (e.g. 2h)")),
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?}: too long"))
}

/// How an artifact is loaded and served: its queue, and whether an uncalibrated one is allowed.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// The inference queue.
    pub queue: QueueConfig,
    /// Serve an artifact that says it has no risk calibration (`--allow-uncalibrated`).
    pub allow_uncalibrated: bool,
    /// Candles a request may carry (`--max-candles`): a model that needs more history than this
    /// could answer nothing, so it is refused at start and at every reload.
    pub max_candles: usize,
}

/// The load settings of a config.
#[must_use]
pub fn load_options(config: &Config) -> LoadOptions {
    LoadOptions {
        queue: queue_config(config),
        allow_uncalibrated: config.allow_uncalibrated,
        max_candles: config.max_candles,
    }
}

/// The queue settings of a config.
#[must_use]
pub fn queue_config(config: &Config) -> QueueConfig {
    QueueConfig {
        max_batch: usize::try_from(config.max_batch).unwrap_or(64),
        max_wait: config.max_wait(),
        capacity: usize::try_from(config.queue_capacity).unwrap_or(256),
        retry_after: Duration::from_secs(config.retry_after_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_unit() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "h", "2", "2w", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
    use clap::CommandFactory;

    /// Limits under which nothing could be answered are refused when parsed.
    #[test]
    fn limits_of_zero_are_refused() {
        for (flag, bad, least) in [
            ("--request-timeout-ms", "0", "1"),
            ("--max-items", "0", "1"),
            ("--max-connections", "0", "1"),
            ("--header-read-timeout-ms", "99", "100"),
            ("--max-body-bytes", "1023", "1024"),
            ("--max-wait-us", "1000001", "1000000"),
        ] {
            assert!(
                Config::try_parse_from(["server", flag, bad]).is_err(),
                "{flag} {bad}"
            );
            assert!(
                Config::try_parse_from(["server", flag, least]).is_ok(),
                "{flag} {least}"
            );
        }
    }

    /// A queue wait as long as the request timeout leaves a quiet server answering nothing.
    #[test]
    fn the_queue_wait_stays_below_the_request_timeout() {
        let at = |wait: &str, timeout: &str| {
            Config::try_parse_from(["server", "--max-wait-us", wait, "--request-timeout-ms", timeout])
                .unwrap()
                .check_limits()
        };
        assert!(at("0", "10000").is_ok());
        assert!(at("999999", "1000").is_ok());
        let refused = at("1000000", "1000").unwrap_err();
        assert!(refused.contains("--max-wait-us 1000000"), "{refused}");
        assert!(at("500000", "1").is_err());
    }

    /// SPEC: the risk defaults are "configurable per request and in config": each of the seven
    /// by its flag, checked against the requests' ranges and named by its flag when refused.
    #[test]
    fn every_risk_default_is_configurable_and_checked() {
        let defaults = |args: &[&str]| {
            let mut all = vec!["server"];
            all.extend_from_slice(args);
            Config::try_parse_from(all).unwrap().risk_defaults()
        };
        assert_eq!(defaults(&[]).unwrap(), RiskSettings::default());
        let set = defaults(&[
            "--alpha",
            "0.995",
            "--tau-hours",
            "8",
            "--tau-user-hours",
            "48",
            "--bonus",
            "0.07",
            "--bonus-margin",
            "0.02",
            "--sale-size-usd",
            "5000",
            "--max-step",
            "0.2",
        ])
        .unwrap();
        assert_eq!(
            set,
            RiskSettings {
                alpha: 0.995,
                tau: 8.0,
                tau_user: 48.0,
                bonus: 0.07,
                bonus_margin: 0.02,
                sale_size_usd: 5000.0,
                max_step: 0.2,
            }
        );
        for (flag, bad) in [
            ("--alpha", "0.3"),
            ("--tau-hours", "0.5"),
            ("--tau-user-hours", "200"),
            ("--bonus", "1"),
            ("--sale-size-usd", "-1"),
        ] {
            let e = defaults(&[&format!("{flag}={bad}")]).unwrap_err().to_string();
            assert!(
                e.starts_with(flag) && !e.starts_with(&format!("{flag}-")),
                "{flag}: {e}"
            );
        }
    }

    /// A staleness bound under an hour refused the asset routes for part of every hour on a
    /// store kept current (the newest closed candle is up to an hour old).
    #[test]
    fn a_staleness_bound_under_an_hour_and_a_minute_is_refused() {
        let at = |max: &str| {
            Config::try_parse_from(["server", "--max-staleness", max])
                .unwrap()
                .check_limits()
        };
        for refused in ["90s", "30m", "1h"] {
            let e = at(refused).unwrap_err();
            assert!(e.contains("--max-staleness") && e.contains("61 minutes"), "{e}");
        }
        for kept in ["61m", "2h", "7d"] {
            assert!(at(kept).is_ok(), "{kept}");
        }
        assert!(Config::try_parse_from(["server"]).unwrap().check_limits().is_ok());
    }

    /// A misspelled variable is named; the options' own and other tools' are not.
    #[test]
    fn variables_no_option_reads_are_named() {
        let names = [
            "VOLCAST_MAX_BACH",
            "VOLCAST_MAX_BATCH",
            "VOLCAST_DATA",
            "VOLCAST_LOADTEST_URL",
            "VOLCAST_LISTN",
            "RUST_LOG",
            "VOLCAST_LOG",
        ]
        .map(String::from);
        assert_eq!(
            unread_env_names(names),
            ["VOLCAST_LISTN", "VOLCAST_MAX_BACH"].map(String::from)
        );
    }

    #[test]
    fn every_option_has_env_and_help() {
        Config::command().debug_assert();
        for arg in Config::command().get_arguments() {
            if ["help", "version"].contains(&arg.get_id().as_str()) {
                continue;
            }
            assert!(arg.get_env().is_some(), "{} has no env", arg.get_id());
            assert!(arg.get_help().is_some(), "{} has no help", arg.get_id());
        }
    }
}
