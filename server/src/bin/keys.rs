//! `keys`: API keys of the volcast service, in its store. The secret is printed once, at
//! creation; the store keeps only its SHA-256.
//!
//! ```text
//! keys create --name risk-bot --scopes read,risk [--rate-per-minute 600]
//! keys list
//! keys revoke k3f9a1c0d2e4b
//! ```
//!
//! A running server reads the keys again every two seconds.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use volcast_server::auth::{new_key, parse_scopes};
use volcast_store::{KeyStore as _, Store};

/// Create, list and revoke the service's API keys.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// The store (as the server's `--database-url`).
    #[arg(long, env = "VOLCAST_DATABASE_URL", default_value = volcast_store::DEFAULT_DATABASE_URL, global = true)]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a key and print it (once).
    Create {
        /// Who or what it is for.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: read (forecasts, model, market data, decisions by id),
        /// risk (risk routes, stress, replays), admin (decision export, reload).
        #[arg(long)]
        scopes: String,
        /// Requests per minute (default: the server's `--key-rate-per-minute`), from a bucket
        /// holding ten seconds' worth (at least one request: at 3 a minute, one every 20 s).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate_per_minute: Option<u32>,
    },
    /// List the keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key's id (`k...`: the part of the key `vck_<id>_<secret>` between `vck_` and
        /// the next `_`). The whole key is read as its id: its secret is never shown.
        id: String,
    },
}

/// The id in `given`: an id as written, or the id of a whole key (with or without `vck_`),
/// its secret dropped (a key pasted whole matched no id, and the error showed its secret).
fn key_id(given: &str) -> &str {
    let given = given.trim();
    let given = given
        .strip_prefix(volcast_server::auth::KEY_PREFIX)
        .unwrap_or(given);
    given.split_once('_').map_or(given, |(id, _)| id)
}

/// A command, its key made.
enum Action {
    Create(volcast_server::auth::NewKey),
    List,
    Revoke(String),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keys: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
async fn run(args: Args) -> Result<(), String> {
    // Creating a key may create the store (before the server's first start); listing or
    // revoking reads one that exists, so a mistyped URL is an error, not an empty table.
    let shown = volcast_server::redact_url(&args.database_url);
    let now = volcast_server::follower::wall_clock_ms();
    // The key made before the store is opened: a refused `--scopes` creates no store.
    let action = match args.command {
        Command::Create {
            name,
            scopes,
            rate_per_minute,
        } => Action::Create(new_key(&name, &parse_scopes(&scopes)?, rate_per_minute, now)?),
        Command::List => Action::List,
        Command::Revoke { id } => Action::Revoke(key_id(&id).to_owned()),
    };
    let existed = Store::exists(&args.database_url).map_err(|e| e.said_of(&shown))?;
    let store = match action {
        Action::Create(_) => Store::open(&args.database_url).await,
        Action::List | Action::Revoke(_) => Store::open_existing(&args.database_url).await,
    }
    .map_err(|e| e.said_of(&shown))?;
    match action {
        Action::Create(key) => {
            store.create_key(&key.row).await.map_err(|e| e.to_string())?;
            println!("{}", key.token);
            eprintln!(
                "key {} ({}) with scopes {} in {shown}: shown once, keep it secret",
                key.row.id, key.row.name, key.row.scopes,
            );
            if !existed {
                // A mistyped URL made a store of its own, which no server reads: said, since
                // the key would then be refused (401) without a clue why.
                eprintln!(
                    "note: there was no store at {shown}: this command created it; give the \
                     server the same --database-url, or the key is unknown to it"
                );
            }
        }
        Action::List => {
            println!("id\tname\tscopes\tcreated\trevoked\trate_per_minute");
            for k in store.keys().await.map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    volcast_server::auth::shown_name(&k.name),
                    k.scopes,
                    volcast_core::time::format_ms(k.created),
                    k.revoked
                        .map_or_else(|| "-".to_owned(), volcast_core::time::format_ms),
                    k.rate_per_minute
                        .map_or_else(|| "default".to_owned(), |r| r.to_string()),
                );
            }
        }
        Action::Revoke(id) => {
            if store.revoke_key(&id, now).await.map_err(|e| e.to_string())? {
                eprintln!("key {id} revoked");
            } else {
                return Err(format!("no key {id} that is not already revoked"));
            }
        }
    }
    store.close().await;
    Ok(())
}
