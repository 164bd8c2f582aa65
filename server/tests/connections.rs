//! Slow and idle clients cannot hold the service: idle connections do not stop `/healthz` from
//! answering and are closed after the header deadline, connections over the cap get an immediate
//! 503, and a client trickling its headers cannot keep the process alive past the shutdown
//! deadline after SIGTERM. The committed default artifact is served.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use volcast_server::Config;

fn artifacts() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&manifest).join("../model-artifacts")
}

/// Starts `run` on a free port; returns the address and a trigger for the shutdown.
async fn start(
    mut config: Config,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let store_dir = tempfile::tempdir().unwrap();
    config.database_url = format!("sqlite://{}", store_dir.path().join("volcast.db").display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        volcast_server::run(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    // Ready once the model answers.
    for _ in 0..300 {
        if healthz(addr).await.contains("200 OK") && ready(addr).await {
            return (addr, stop, server, store_dir);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

/// One `GET` on a fresh connection (blocking, off the runtime's threads): the whole answer.
async fn get(addr: SocketAddr, path: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        let Ok(mut s) = TcpStream::connect(addr) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        if s.write_all(request.as_bytes()).is_err() {
            return String::new();
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap()
}

async fn healthz(addr: SocketAddr) -> String {
    get(addr, "/healthz").await
}

async fn ready(addr: SocketAddr) -> bool {
    get(addr, "/readyz").await.contains("200 OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_neither_block_healthz_nor_stay_open() {
    let mut config = Config::with_artifact(artifacts()).unwrap();
    config.header_read_timeout_ms = 1_000;
    let (addr, stop, server, _store_dir) = start(config).await;

    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(addr).unwrap());
    }
    let started = Instant::now();
    let answer = healthz(addr).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        // Blocked, it would wait for the idle ones' 1 s header deadline; the margin is for a
        // busy 2-core CI machine.
        took < Duration::from_millis(500),
        "/healthz took {took:?} beside 300 idle connections"
    );

    // Past the header deadline the server closes them: a read sees the end of the stream.
    let mut first = idle.swap_remove(0);
    let read = tokio::task::spawn_blocking(move || {
        first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        first.read(&mut buf)
    })
    .await
    .unwrap();
    assert!(
        matches!(read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
        "an idle connection stayed open: {read:?}"
    );
    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_an_immediate_503() {
    let mut config = Config::with_artifact(artifacts()).unwrap();
    config.max_connections = 8;
    config.header_read_timeout_ms = 30_000;
    let (addr, stop, server, _store_dir) = start(config).await;
    // The readiness probes' connections are closed; wait until their slots are free.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = tokio::time::timeout(Duration::from_secs(2), healthz(addr))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    // A slot freed is a slot served.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(healthz(addr).await.starts_with("HTTP/1.1 200"));
    let _ = stop.send(());
    server.await.unwrap();
}

/// A client that sends requests but never reads the answers (its receive window full) does
/// not keep its slot: once its answer has waited the header read timeout, the connection is
/// closed and the next client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_loses_its_slot() {
    let mut config = Config::with_artifact(artifacts()).unwrap();
    config.max_connections = 1;
    config.header_read_timeout_ms = 1_000;
    let (addr, stop, server, _store_dir) = start(config).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    // 200 pipelined requests for the OpenAPI document (over 100 KB each), never read.
    let requests = "GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n".repeat(200);
    tokio::io::AsyncWriteExt::write_all(&mut stalled, requests.as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        healthz(addr).await.contains("too_many_connections"),
        "the stalled client holds the only slot at first"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let answer = healthz(addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stalled);
    let _ = stop.send(());
    server.await.unwrap();
}

#[test]
fn a_slow_header_client_cannot_delay_shutdown_past_the_deadline() {
    // The store (and the signing key beside it) in a directory of the test's own: the default,
    // `data/volcast.db`, was written into the repository (and a developer's
    // `VOLCAST_DATABASE_URL` was used as it was).
    let store_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--listen", "127.0.0.1:0", "--artifact"])
        .arg(artifacts())
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            store_dir.path().join("volcast.db").display()
        ))
        .env_remove("VOLCAST_DATABASE_URL")
        .env("VOLCAST_LOG", "warn")
        .env("VOLCAST_HEADER_READ_TIMEOUT_MS", "60000")
        .env("VOLCAST_SHUTDOWN_DEADLINE_MS", "500")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().to_owned();

    // One byte of headers every 100 ms, for far longer than the deadline.
    // Whether it connected at all: a client that never did tested nothing.
    let trickle = std::thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            return false;
        };
        for b in
            b"GET /healthz HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    });
    std::thread::sleep(Duration::from_millis(500));
    let took = terminate(&mut child);
    assert!(
        took < Duration::from_millis(2_500),
        "shutdown took {took:?} with a 500 ms deadline"
    );
    assert!(trickle.join().unwrap(), "the slow client never connected");
    assert!(
        store_dir.path().join("volcast.db").exists(),
        "the store is the test's own"
    );
}

/// Sends SIGTERM to `child` and waits for its exit, which must be a success within 5 s; how
/// long it took.
fn terminate(child: &mut std::process::Child) -> Duration {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "the server was still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exited.success(), "{exited}");
    signalled.elapsed()
}

/// Kills the child when a test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM while the model is still loading ends the process within the shutdown deadline:
/// here the load never ends (the artifact's `default` pointer is a FIFO nobody writes), and
/// the server used to wait for it for good, past any supervisor's grace period.
#[cfg(unix)]
#[test]
fn a_shutdown_during_the_first_load_does_not_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir(&artifacts).unwrap();
    let made = Command::new("mkfifo")
        .arg(artifacts.join("default"))
        .status()
        .unwrap();
    assert!(made.success());
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--listen", "127.0.0.1:0", "--artifact"])
        .arg(&artifacts)
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("v.db").display()))
        .arg("--recalibrated-dir")
        .arg(dir.path().join("recalibrated"))
        .env("VOLCAST_LOG", "warn")
        .env("VOLCAST_SHUTDOWN_DEADLINE_MS", "500")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().to_owned();
    // Serving (so listening for SIGTERM) and still loading: `/readyz` answers 503 `loading`.
    let asked = Instant::now();
    loop {
        let answer = TcpStream::connect(&addr).ok().and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        });
        if answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 503") && a.contains("loading"))
        {
            break;
        }
        assert!(asked.elapsed() < Duration::from_secs(10), "{answer:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.0.try_wait().unwrap().is_none(), "still loading");
    // A reload asked meanwhile is told the model is not ready (it was told the reload failed
    // and "the old model is still served", with no old model).
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"POST /v1/admin/reload HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("model_not_ready"),
        "{answer}"
    );
    let took = terminate(&mut child.0);
    assert!(
        took < Duration::from_millis(2_500),
        "shutdown took {took:?} with a 500 ms deadline"
    );
}
