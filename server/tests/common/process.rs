//! The real `server` binary as a child process: start it on a free port, signal it, poll it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `server` process, killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://ADDR`.
    pub base: String,
    /// The directory of its market-data store, unless the test named one.
    pub store_dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command, and the temporary directory of its store when `args` names none (so no test
/// writes a store into the repository).
fn command(artifact: &Path, args: &[&str]) -> (Command, Option<tempfile::TempDir>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    if !args.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    command
        .arg("--artifact")
        .arg(artifact)
        .args(args)
        .env("VOLCAST_LOG", "warn")
        .env_remove("VOLCAST_DATABASE_URL")
        .stdout(Stdio::piped());
    let dir = (!args.contains(&"--database-url")).then(|| {
        let dir = tempfile::tempdir().unwrap();
        command.arg("--database-url").arg(store_url(dir.path()));
        dir
    });
    (command, dir)
}

/// The URL of an SQLite store in `dir`.
pub fn store_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("volcast.db").display())
}

/// Starts the server on `artifact` with extra `args`, once it prints `listening on ADDR`.
pub fn start(artifact: &Path, args: &[&str]) -> Server {
    let (mut command, store_dir) = command(artifact, args);
    let mut child = command.stderr(Stdio::inherit()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Server {
        child,
        base: format!("http://{addr}"),
        store_dir,
    }
}

/// Starts the server on `artifact` with extra `args` and expects it to exit on its own within
/// 60 s: returns whether it succeeded and what it wrote to stderr.
pub fn start_and_wait(artifact: &Path, args: &[&str]) -> (bool, String) {
    let (ok, _, stderr) = start_and_wait_output(artifact, args);
    (ok, stderr)
}

/// [`start_and_wait`], with what it wrote to stdout: whether it succeeded, stdout, stderr.
pub fn start_and_wait_output(artifact: &Path, args: &[&str]) -> (bool, String, String) {
    let (mut command, _store_dir) = command(artifact, args);
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server kept running on {}", artifact.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    (status.success(), stdout, stderr)
}

/// Sends `signal` (e.g. `-HUP`) to the server process.
pub fn signal(server: &Server, signal: &str) {
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// `GET url`: the body.
pub async fn get(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Polls `url` until its body satisfies `done`, for up to 60 s; returns the last body.
pub async fn wait_for(client: &reqwest::Client, url: String, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = get(client, url.clone()).await;
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After a refused reload: `/v1/model` still names `id` and `/readyz` answers 200.
pub async fn assert_still_serving(client: &reqwest::Client, base: &str, id: &str, what: &str) {
    let card: serde_json::Value =
        serde_json::from_str(&get(client, format!("{base}/v1/model")).await).unwrap();
    assert_eq!(card["model"]["id"], id, "{what}: the old model keeps serving");
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ready, 200, "{what}");
}
