//! `openapi`: the service's OpenAPI document as YAML, to stdout, to a file (`--out`), or checked
//! against a committed file (`--check`, exit 1 when it differs).
//!
//! ```text
//! cargo run -p volcast-server --bin openapi -- --out openapi.yaml
//! cargo run -p volcast-server --bin openapi -- --check openapi.yaml
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Write or check the OpenAPI document of the volcast service.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// Write the document here instead of to stdout.
    #[arg(long, conflicts_with = "check")]
    out: Option<PathBuf>,
    /// Compare the document with this file; exit 1 when they differ.
    #[arg(long)]
    check: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let yaml = match volcast_server::openapi::yaml() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("openapi: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.check {
        return match std::fs::read_to_string(path) {
            Ok(committed) if committed == yaml => ExitCode::SUCCESS,
            Ok(_) => {
                eprintln!(
                    "openapi: {} is stale; regenerate it with `cargo run -p volcast-server --bin openapi -- --out {}`",
                    path.display(),
                    path.display()
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("openapi: cannot read {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    match &args.out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, yaml) {
                eprintln!("openapi: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        None => print!("{yaml}"),
    }
    ExitCode::SUCCESS
}
