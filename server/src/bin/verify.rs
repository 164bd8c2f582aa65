//! `verify`: checks a decision log, from a store or an export (JSON lines of records, as
//! `--export-to` writes them), and names the first record that fails: an edited, deleted,
//! inserted or reordered record, or a signature not by a trusted key.
//!
//! ```text
//! verify --database-url sqlite://data/volcast.db --public-key <hex from GET /v1/keys>
//! verify --export decisions.jsonl --public-key <hex>
//! verify --database-url sqlite://data/volcast.db --export-to decisions.jsonl
//! ```
//!
//! Without `--public-key` the keys recorded in the store are trusted (and listed): an auditor
//! should give the key published by the service instead. Exit 0 when every record checks, 1 when
//! one fails, 2 when the log cannot be read.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use volcast_server::audit::key_id;
use volcast_server::audit::verify::Verifier;
use volcast_store::{DecisionRow, DecisionStore as _, Store};

/// Verify the chain and signatures of a decision log.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// The store to check (or to export from). Refused beside `--export` when given on the
    /// command line; from `VOLCAST_DATABASE_URL` (a shell the service runs from) it is left
    /// unused by `--export`.
    #[arg(long, env = "VOLCAST_DATABASE_URL")]
    database_url: Option<String>,
    /// An export to check: one JSON record per line, in chain order.
    #[arg(long)]
    export: Option<PathBuf>,
    /// A trusted public key (hex, from `GET /v1/keys`); repeat for several.
    #[arg(long)]
    public_key: Vec<String>,
    /// The head pinned earlier (`SEQ:HASH` from `GET /v1/keys`): the log must still hold it.
    #[arg(long)]
    expect_head: Option<String>,
    /// Write the store's records to this file (JSON lines) after checking them; it appears only
    /// when the whole log verified (written beside it as `FILE.partial` meanwhile). An SQLite
    /// database there (the store itself, say) is never overwritten.
    #[arg(long, requires = "database_url", conflicts_with = "export")]
    export_to: Option<PathBuf>,
}

/// Refuses an `--export-to` path that must not be replaced: a directory, an SQLite database
/// (the store being checked, named by mistake, was replaced by its own export) or one of its
/// side files (`-wal`, `-shm`, `-journal`: a live server's WAL holds committed decisions), or a
/// `FILE.partial` already there (this run would overwrite it, then remove it on failure).
fn export_target(path: &std::path::Path) -> Result<(), String> {
    let refused = |why: &str| Err(format!("--export-to {}: {why}", path.display()));
    if path.is_dir() {
        return refused("a directory; name a file");
    }
    let is_database = |p: &std::path::Path| {
        let mut head = [0u8; 16];
        std::fs::File::open(p)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok_and(|()| head == *b"SQLite format 3\0")
    };
    if is_database(path) {
        return refused("an SQLite database (the store?), not overwritten; name a new file");
    }
    let name = path.as_os_str().to_string_lossy();
    for side in ["-wal", "-shm", "-journal"] {
        if let Some(base) = name.strip_suffix(side)
            && is_database(std::path::Path::new(base))
        {
            return refused("a side file of an SQLite database (the store?), not overwritten");
        }
    }
    if partial(path).exists() {
        return Err(format!(
            "{} is already there (an earlier run's?): remove it or name another file",
            partial(path).display()
        ));
    }
    Ok(())
}

/// Where an export is written until the log has verified.
fn partial(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

const PAGE: u32 = 1000;

/// The arguments, `--database-url` refused beside `--export` only when given on the command
/// line: clap's `conflicts_with` counts a value from the environment too, so the README's
/// `verify --export` failed (exit 2) in any shell that had the service's `VOLCAST_DATABASE_URL`.
fn args() -> Args {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let mut command = Args::command();
    let matches = command.get_matches_mut();
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if args.export.is_some() {
        if matches.value_source("database_url") == Some(clap::parser::ValueSource::CommandLine) {
            command
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--database-url cannot be used with --export (an export is checked without the store)",
                )
                .exit();
        }
        args.database_url = None;
    }
    args
}

/// A JSON text whose objects each name a member once: a line with one named twice reads as two
/// records, depending on the reader (serde keeps the last, many keep the first), so what was
/// checked may not be what a reader of the export sees.
struct UniqueMembers;

impl<'de> serde::Deserialize<'de> for UniqueMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueMembers)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueMembers {
    type Value = Self;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<Self>()?.is_some() {}
        Ok(Self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("member {key:?} appears twice")));
            }
            map.next_value::<Self>()?;
        }
        Ok(Self)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = args();
    let export_to = args.export_to.clone();
    // The export's `FILE.partial`, made here (never one already there) so that the cleanup below
    // removes only this run's file.
    let out = match export_to.as_deref().map(|p| {
        export_target(p)?;
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(partial(p))
            .map_err(|e| format!("{}: {e}", partial(p).display()))
    }) {
        Some(Ok(file)) => Some(std::io::BufWriter::new(file)),
        Some(Err(e)) => {
            eprintln!("verify: {e}");
            return ExitCode::from(2);
        }
        None => None,
    };
    let made = out.is_some();
    let mut outcome = run(args, out).await;
    // The export exists only for a log that verified: no half file to mistake for the log.
    if let Some(path) = export_to.filter(|_| made) {
        let written = partial(&path);
        if matches!(outcome, Ok(Ok(()))) {
            if let Err(e) = std::fs::rename(&written, &path) {
                outcome = Err(format!("{}: {e}", path.display()));
            }
        } else {
            let _ = std::fs::remove_file(&written);
        }
    }
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => {
            eprintln!("verify: FAILED: {failure}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("verify: {e}");
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::print_stdout)]
async fn run(
    args: Args,
    mut out: Option<std::io::BufWriter<std::fs::File>>,
) -> Result<Result<(), String>, String> {
    let mut keys: Vec<(String, String)> = args
        .public_key
        .iter()
        .map(|k| {
            let bytes = hex::decode(k.trim()).map_err(|e| format!("--public-key {k}: {e}"))?;
            // An Ed25519 public key is 32 bytes: a shorter one (`00`) trusted no signer, and every
            // record then failed as signed by an untrusted key (exit 1, read as tampering).
            if bytes.len() != 32 {
                return Err(format!(
                    "--public-key {k}: an Ed25519 public key is 32 bytes (64 hex digits), not {}",
                    bytes.len()
                ));
            }
            Ok((key_id(&bytes), k.trim().to_owned()))
        })
        .collect::<Result<_, String>>()?;
    let pinned = match &args.expect_head {
        Some(e) => {
            let (seq, hash) = e
                .split_once(':')
                .ok_or_else(|| format!("--expect-head {e}: give SEQ:HASH"))?;
            let seq: i64 = seq.parse().map_err(|x| format!("--expect-head {e}: {x}"))?;
            if seq < 1 {
                return Err(format!(
                    "--expect-head {e}: sequence numbers start at 1 (give the head GET /v1/keys shows)"
                ));
            }
            Some((seq, hash.to_owned()))
        }
        None => None,
    };
    let mut verifier;
    // The candle windows checked (a store's records only: an export holds none).
    let mut windows = std::collections::HashSet::new();
    if let Some(url) = &args.database_url {
        // A missing file is an unreadable log (exit 2), never an empty one created here.
        let store = Store::open_existing(url)
            .await
            .map_err(|e| e.said_of(&volcast_server::redact_url(url)))?;
        let recorded = store.signing_keys().await.map_err(|e| e.to_string())?;
        // A server records its signing key when it starts: a store without one, and without a
        // record, is no decision log (a mistyped PostgreSQL database, say), not an empty one.
        if recorded.is_empty()
            && store
                .decisions(None, i64::MIN, i64::MAX, None, 1)
                .await
                .map_err(|e| e.to_string())?
                .is_empty()
        {
            store.close().await;
            return Err(format!(
                "{} holds no decision log (no signing key, no record): check --database-url",
                volcast_server::redact_url(url)
            ));
        }
        if keys.is_empty() {
            for (id, public, _) in recorded {
                if !volcast_server::audit::key_named(&id, &public) {
                    // Its id is not derived from it: a forger's key swapped in under that id.
                    eprintln!(
                        "verify: not trusting the store's key for {id}: {public} is not the key that id names"
                    );
                    continue;
                }
                println!(
                    "trusting key {id} ({public}) as recorded in the store; pass --public-key to check against the published one"
                );
                keys.push((id, public));
            }
        }
        verifier = Verifier::new(keys);
        if let Some((seq, _)) = &pinned {
            verifier.watch(*seq);
        }
        // The head before reading: every record up to it must be among those read. A row the
        // time-bounded read leaves out (on SQLite an `at` edited to text sorts above every
        // number) would otherwise end the chain early, and "OK" be said of a shorter log. Read
        // first, as the server may append while this runs.
        let head_before = store.head().await.map_err(|e| e.to_string())?;
        // From the lowest sequence number stored, not from 1: a row slipped in below the chain
        // (seq 0 or negative) is read, and fails, rather than skipped.
        let mut after = None;
        loop {
            let page = store
                .decisions(None, i64::MIN, i64::MAX, after, PAGE)
                .await
                .map_err(|e| e.to_string())?;
            for r in &page {
                let body = match verifier.check(r) {
                    Ok(body) => body,
                    Err(f) => return Ok(Err(f.to_string())),
                };
                // Each candle window once: a record that verified but whose window was edited
                // or lost cannot be replayed, and "OK" said nothing of it (until stop 60).
                if windows.insert(body.candles.hash.clone())
                    && let Some(reason) = window_fault(&store, &body.candles.hash).await?
                {
                    let f = volcast_server::audit::verify::Failure {
                        seq: r.seq,
                        id: r.id.clone(),
                        reason,
                    };
                    return Ok(Err(f.to_string()));
                }
                if let Some(w) = out.as_mut() {
                    let line = serde_json::to_string(r).map_err(|e| e.to_string())?;
                    writeln!(w, "{line}").map_err(|e| e.to_string())?;
                }
            }
            match page.last() {
                Some(r) if page.len() == PAGE as usize => after = Some(r.seq),
                _ => break,
            }
        }
        let read_to = verifier.head().map_or(0, |(seq, _)| *seq);
        if let Some((seq, _)) = head_before.filter(|(seq, _)| *seq > read_to) {
            return Ok(Err(format!(
                "the store's head is seq {seq}, but the records read end at seq {read_to}: a \
                 record past it was left out of the read (its `at` edited)"
            )));
        }
        store.close().await;
    } else if let Some(path) = &args.export {
        if keys.is_empty() {
            return Err("checking an export needs --public-key (from GET /v1/keys)".into());
        }
        verifier = Verifier::new(keys);
        if let Some((seq, _)) = &pinned {
            verifier.watch(*seq);
        }
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
            // A byte-order mark (an editor's save) is no part of the first record.
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                &line
            };
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => return Ok(Err(format!("line {}: not a record: {e}", i + 1))),
            };
            if let Err(e) = serde_json::from_str::<UniqueMembers>(line) {
                return Ok(Err(format!(
                    "line {}: {e}: readers differ on which one the record says",
                    i + 1
                )));
            }
            let row: DecisionRow = match serde_json::from_value(value.clone()) {
                Ok(r) => r,
                Err(e) => return Ok(Err(format!("line {}: not a record: {e}", i + 1))),
            };
            let body = match verifier.check(&row) {
                Ok(body) => body,
                // Records missing from an export are also what a page read with a filter
                // holds: said, so that an auditor does not read a filtered export as tampering.
                Err(f) if f.reason.contains("missing before it") => {
                    return Ok(Err(format!(
                        "{f} (an export is checked as the whole chain from seq 1: pages read \
                         with `asset`, `from`, `to` or `after` hold part of it; export the log \
                         unfiltered, or check the store)"
                    )));
                }
                Err(f) => return Ok(Err(f.to_string())),
            };
            // A line of the HTTP export also carries its body parsed (`decision`): what a tool
            // reading it sees must be what was signed.
            if let Some(shown) = value.get("decision").filter(|d| !d.is_null())
                && !serde_json::to_value(body).is_ok_and(|signed| same_json(&signed, shown))
            {
                return Ok(Err(format!(
                    "record seq {} (id {}): its `decision` is not its signed body: edited after it \
                     was exported",
                    row.seq, row.id
                )));
            }
        }
        if verifier.checked == 0 {
            // As a store without a record is refused: an empty file is no decision log.
            return Err(format!(
                "{} holds no record: an empty export is no decision log (check --export)",
                path.display()
            ));
        }
    } else {
        return Err("give --database-url or --export".into());
    }
    if let Some(mut w) = out {
        w.flush().map_err(|e| e.to_string())?;
    }
    if let Some((seq, hash)) = &pinned {
        let seq = *seq;
        // The pinned record must be in the chain checked with that hash (a later head is fine).
        match verifier.head() {
            Some((last, _)) if *last < seq => {
                return Ok(Err(format!(
                    "the log ends at seq {last}, before the pinned head {seq}: records were removed"
                )));
            }
            None => return Ok(Err(format!("the log is empty, but seq {seq} was pinned"))),
            _ => {}
        }
        if !verifier.saw(seq, hash) {
            return Ok(Err(format!(
                "record seq {seq} does not hash to the pinned {hash}"
            )));
        }
    }
    let head = verifier
        .head()
        .map_or_else(|| "empty".to_owned(), |(s, h)| format!("{s}:{h}"));
    if args.database_url.is_some() {
        println!(
            "verify: OK: {} records, head {head}, {} candle windows",
            verifier.checked,
            windows.len()
        );
    } else {
        println!(
            "verify: OK: {} records, head {head} (the candle windows are in the store, not the export: \
             verify --database-url checks them)",
            verifier.checked
        );
    }
    Ok(Ok(()))
}

/// Why the candle window `hash` a record names cannot replay it: not in the store, not
/// parsing, or not hashing to its name (edited). `None` when it is intact.
async fn window_fault(store: &Store, hash: &str) -> Result<Option<String>, String> {
    let Some(json) = store.decision_inputs(hash).await.map_err(|e| e.to_string())? else {
        return Ok(Some(format!(
            "its candle window {hash} is not in the log: the decision cannot be replayed"
        )));
    };
    Ok(
        match serde_json::from_str::<Vec<volcast_server::dto::CandleDto>>(&json) {
            Err(e) => Some(format!("its candle window {hash} does not parse: {e}")),
            Ok(candles) if volcast_server::audit::window_hash(&candles) != hash => Some(format!(
                "its candle window {hash} was altered: it hashes to another"
            )),
            Ok(_) => None,
        },
    )
}

/// Whether two JSON values are the same, numbers compared by value: a tool that rewrites `4.0`
/// as `4` (jq 1.6) changes no number, and serde_json's own equality tells the two apart.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same_json(a, b)))
        }
        _ => a == b,
    }
}
