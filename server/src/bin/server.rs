//! `server`: parses the config, starts logging, binds, prints `listening on ADDR`, and runs the
//! service until SIGTERM or Ctrl-C.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use volcast_server::Config;

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("server: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let deadline = std::time::Duration::from_millis(config.shutdown_deadline_ms);
    let code = runtime.block_on(serve(config));
    // Blocking work still running once the server has stopped (the daily recalibration, a
    // model load from a reload) is given the shutdown deadline too, not waited for to the end:
    // its artifact is written to a temporary directory and renamed, so no artifact id is
    // half-written (a `.tmp-<pid>` directory can stay), and the next start recalibrates again.
    runtime.shutdown_timeout(deadline);
    code
}

async fn serve(config: Config) -> std::process::ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    // A SIGHUP from here on never ends the process, and is a reload once the server runs: the
    // stream opened here is the one `run_listening` reads (one opened later would miss a SIGHUP
    // sent as soon as the address is printed).
    #[cfg(unix)]
    let hangups = volcast_server::loading::listen_for_hangups();
    #[cfg(not(unix))]
    let hangups = None;
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("server: cannot listen on {}: {e}", config.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    // Announced once the start is allowed (the store open, the keys checked against the address).
    let announce = |listener: &tokio::net::TcpListener| match listener.local_addr() {
        Ok(addr) => {
            println!("listening on {addr}");
            tracing::info!(%addr, "listening");
        }
        Err(e) => tracing::warn!("cannot read the bound address: {e}"),
    };
    match volcast_server::run_listening(config, listener, shutdown_signal(), hangups, announce).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
