//! `replay`: the service's daily operation (recalibration at 00:00 UTC, ledger, scoring, gate)
//! over a historical period from candle files, with the server's own code on a fresh store;
//! prints what was served each day, the gate's switches, and the QLIKE and LT breaches of what
//! was served beside always-model and always-HAR.
//!
//! ```text
//! cargo run --release --bin replay -- --model model-artifacts/693e44b5f740fc82 \
//!     --from 2021-01-01 --to 2021-12-31 --json replay-2021.json
//! ```

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;
use volcast_core::time::{Bound, parse_time};
use volcast_server::gate::{FALLBACK_HAR, GateRule};
use volcast_server::ledger::DAY_MS;
use volcast_server::replay::{ReplayOptions, ReplayReport, regate_replay, replay};

/// Replay the daily operation over history.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// The artifact served at the start (fit before `--from`).
    #[arg(long, required_unless_present = "regate")]
    model: Option<PathBuf>,
    /// Candle directories (default: ../shared/data/binance-spot-1h, else data/).
    #[arg(long, env = "VOLCAST_DATA", value_delimiter = ',')]
    data: Vec<PathBuf>,
    /// First daily origin (YYYY-MM-DD).
    #[arg(long)]
    from: String,
    /// Last daily origin (YYYY-MM-DD).
    #[arg(long)]
    to: String,
    /// Only these assets (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    assets: Option<Vec<String>>,
    /// Working directory for the replay's store and artifacts (default: a fresh temporary one).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Write the full report (every day, every switch, the figures) here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Instead of replaying, re-run the gate over a finished replay's ledger (its work dir's
    /// `replay.db`) and report what would have been served under the rule given by the `--gate-*`
    /// options.
    #[arg(long, conflicts_with = "model")]
    regate: Option<PathBuf>,
    /// Count excess LT breaches only where the model's rate exceeds the fallback's on the same
    /// window (default: the service's rule, `true`); `false` judges them by Kupiec's test alone.
    #[arg(long)]
    gate_breaches_vs_fallback: Option<bool>,
    /// Gate each horizon on its own (default: the service's rule); `true` serves HAR's variance
    /// only at the horizons where the model loses, the risk policy on breaches or the 4 h horizon.
    #[arg(long)]
    gate_per_horizon: Option<bool>,
    /// Score each horizon as its own window closes (default: the service's rule, `true`: the
    /// 4 h and 24 h figures, and the breaches, reach the gate within a day); `false` reads an
    /// entry once its 168 h window has passed, as the service did before.
    #[arg(long)]
    gate_windows_close: Option<bool>,
}

fn midnight(s: &str, name: &str) -> anyhow::Result<i64> {
    let ms = parse_time(s, Bound::Start).with_context(|| format!("--{name}"))?;
    if ms.rem_euclid(DAY_MS) != 0 {
        bail!("--{name} must be a day (00:00 UTC)");
    }
    Ok(ms)
}

fn print(report: &ReplayReport) {
    let s = &report.summary;
    let fallback_days = report
        .days
        .iter()
        .filter(|d| d.policy.starts_with(FALLBACK_HAR))
        .count();
    // A per-horizon rule's days read `model; HAR at 168 h`.
    let har_days = report.days.iter().filter(|d| d.policy.contains("HAR at")).count();
    let horizons = if har_days > 0 {
        format!(", {har_days} with some horizon's variance from HAR")
    } else {
        String::new()
    };
    println!(
        "\n{} days from {} to {}, {} on the fallback{horizons}; {} scored ledger entries",
        report.days.len(),
        s.from,
        s.to,
        fallback_days,
        s.entries
    );
    println!("\n| H | points | QLIKE served | always-model | always-HAR | served / better of the two |");
    println!("|--:|-------:|-------------:|-------------:|-----------:|---------------------------:|");
    for h in &s.horizons {
        let f = |x: Option<f64>| x.map_or_else(|| "-".into(), |v| format!("{v:.4}"));
        let best = h.qlike_model.zip(h.qlike_har).map(|(m, g)| m.min(g));
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            h.horizon_hours,
            h.points,
            f(h.qlike_served),
            f(h.qlike_model),
            f(h.qlike_har),
            f(h.qlike_served.zip(best).map(|(x, b)| x / b))
        );
    }
    if let Some(r) = &s.risk {
        let pct = |b: usize, n: usize| 100.0 * b as f64 / n.max(1) as f64;
        println!(
            "\nLT breaches at alpha {}, tau {} h: served {} / {} ({:.3}%, Kupiec p {}), always-model {} / {} ({:.3}%), always-HAR {} / {} ({:.3}%)",
            r.alpha,
            r.tau_hours,
            r.served_breaches,
            r.served_points,
            pct(r.served_breaches, r.served_points),
            volcast_core::scoring::kupiec_p_value(r.served_breaches, r.served_points, r.expected_rate)
                .map_or_else(|| "-".into(), |p| format!("{p:.3}")),
            r.breaches,
            r.points,
            pct(r.breaches, r.points),
            r.har_breaches,
            r.har_points,
            pct(r.har_breaches, r.har_points),
        );
    }
    println!("\nSwitches of the gate: {}", report.switches.len());
    for sw in &report.switches {
        let at = sw
            .horizon_hours
            .map_or_else(String::new, |h| format!(" at {h} h"));
        println!(
            "- {} -> {}{at}: {}",
            volcast_core::time::format_ms(sw.at),
            sw.policy,
            sw.reason
        );
    }
}

fn main() -> std::process::ExitCode {
    volcast_training::cli::main(run)
}

fn run() -> anyhow::Result<()> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches)?;
    if args.regate.is_some() {
        // `--data` from the command line only: `VOLCAST_DATA` in a shell does not refuse it.
        let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        if let Some(flag) = [
            ("data", "--data"),
            ("assets", "--assets"),
            ("work_dir", "--work-dir"),
        ]
        .into_iter()
        .find_map(|(id, flag)| given(id).then_some(flag))
        {
            bail!(
                "{flag} is for a replay: --regate reads the finished replay's ledger as it is \
                 (every asset it recorded, from its own replay.db)"
            );
        }
    }
    volcast_training::cli::writable_output("--json", args.json.as_deref())?;
    let from_ms = midnight(&args.from, "from")?;
    let to_ms = midnight(&args.to, "to")?;
    if to_ms < from_ms {
        bail!("--to is before --from");
    }
    let gate_options = [
        args.gate_breaches_vs_fallback,
        args.gate_per_horizon,
        args.gate_windows_close,
    ];
    if gate_options.iter().any(Option::is_some) && args.regate.is_none() {
        bail!("the --gate-* options apply to --regate only (a replay runs the service's rule)");
    }
    if let Some(db) = &args.regate {
        // Opening a missing SQLite file would create an empty one.
        if !db.is_file() {
            bail!(
                "--regate {}: no such file (a replay's work dir holds replay.db)",
                db.display()
            );
        }
        let mut rule = GateRule::DEFAULT;
        if let Some(b) = args.gate_breaches_vs_fallback {
            rule.breaches_vs_fallback = b;
        }
        if let Some(b) = args.gate_per_horizon {
            rule.per_horizon = b;
        }
        if let Some(b) = args.gate_windows_close {
            rule.score_as_windows_close = b;
        }
        let url = volcast_store::sqlite_url(db);
        let report = tokio::runtime::Runtime::new()?.block_on(regate_replay(&url, &rule, from_ms, to_ms))?;
        return finish(&report, args.json.as_deref());
    }
    let Some(model) = args.model.clone() else {
        bail!("--model is needed to replay");
    };
    let dirs = volcast_training::pipeline::data_dirs(&args.data)?;
    let assets = volcast_training::data::load_assets(&dirs, args.assets.as_deref())?;
    if assets.is_empty() {
        bail!("no candle files in {dirs:?}");
    }
    let temp;
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let options = ReplayOptions {
        artifact: model,
        from_ms,
        to_ms,
        database_url: volcast_store::sqlite_url(&work.join("replay.db")),
        artifacts_dir: work.join("artifacts"),
    };
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(replay(&options, &assets, |day, pass| {
        eprintln!(
            "{} {} {} recorded {} scored {}{}{} ({:.0} s)",
            day.day,
            day.model_id,
            day.policy,
            day.recorded,
            pass.scored,
            if pass.recalibrated.is_some() {
                ", recalibrated"
            } else {
                ""
            },
            pass.switch
                .as_ref()
                .map_or_else(String::new, |s| format!(", SWITCH to {}", s.policy)),
            started.elapsed().as_secs_f64()
        );
    }))?;
    finish(&report, args.json.as_deref())
}

/// Prints the report, and writes it as JSON to `json` if given.
fn finish(report: &ReplayReport, json: Option<&std::path::Path>) -> anyhow::Result<()> {
    print(report);
    if let Some(path) = json {
        volcast_training::cli::write_report(path, serde_json::to_string_pretty(report)?)?;
        println!("\nreport: {}", path.display());
    }
    Ok(())
}
