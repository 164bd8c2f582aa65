//! `openapi`: writes the OpenAPI document as YAML to stdout, or to the path given
//! (`cargo run -p volcast-server --bin openapi -- openapi.yaml`).

fn main() -> std::process::ExitCode {
    let yaml = match volcast_server::openapi::yaml() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("openapi: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match std::env::args_os().nth(1) {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, yaml) {
                eprintln!("openapi: cannot write {}: {e}", path.to_string_lossy());
                return std::process::ExitCode::FAILURE;
            }
        }
        None => print!("{yaml}"),
    }
    std::process::ExitCode::SUCCESS
}
