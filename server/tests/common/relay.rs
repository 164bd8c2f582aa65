//! PostgreSQL as the tests reach it: a fresh database per test, a TCP relay between the service
//! and the server that a test can cut, sever or reset, and the sessions waiting on locks.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP relay to `upstream` that the test can cut or sever. Cut, it forwards nothing either
/// way (what it reads is held until the cut heals) and new connections reach nothing, as a
/// network partition looks to the client: no reset, no answer. Severed, the connections open
/// then carry nothing for good (what they carry is dropped, their sockets stay open, as when the
/// peer lost their state and never resets them), while new ones pass. Reset, the connections
/// open then are closed at both ends (as when a middlebox drops them with a reset), while new
/// ones pass.
pub struct Relay {
    pub port: u16,
    link: watch::Sender<Link>,
}

#[derive(Debug, Clone, Copy)]
struct Link {
    open: bool,
    /// Severing moves it on: a connection forwards only in the generation it was made in.
    generation: u64,
    /// Resetting moves it on: a connection made before is closed.
    resets: u64,
}

impl Relay {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (link, watch) = watch::channel(Link {
            open: true,
            generation: 0,
            resets: 0,
        });
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let mut link = watch.clone();
                tokio::spawn(async move {
                    let Ok(made) = link.wait_for(|l| l.open).await.map(|l| *l) else {
                        return;
                    };
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::spawn(pump(from_client, to_server, link.clone(), made));
                    tokio::spawn(pump(from_server, to_client, link, made));
                });
            }
        });
        Self { port, link }
    }

    pub fn cut(&self, cut: bool) {
        self.link.send_modify(|l| l.open = !cut);
    }

    pub fn sever(&self) {
        self.link.send_modify(|l| l.generation += 1);
    }

    pub fn reset(&self) {
        self.link.send_modify(|l| l.resets += 1);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
    made: Link,
) {
    let generation = made.generation;
    let mut reset = link.clone();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            // Reset: both halves dropped, so the sockets close.
            _ = reset.wait_for(|l| l.resets != made.resets) => return,
        };
        let n = match read {
            Ok(n) if n > 0 => n,
            _ if link.borrow().generation != generation => {
                // Severed: not even the close goes through.
                std::future::pending::<()>().await;
                return;
            }
            _ => return,
        };
        let Ok(now) = link
            .wait_for(|l| l.open || l.generation != generation)
            .await
            .map(|l| *l)
        else {
            return;
        };
        // Severed: dropped, the socket kept open.
        if now.generation == generation && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// `url` with its `host:port` replaced by the relay's.
pub fn through(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let at = if user.is_empty() { "" } else { "@" };
    format!("{scheme}://{user}{at}127.0.0.1:{port}{path}")
}

/// `url`'s `host:port`.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap().to_owned()
}

/// A new, empty database of the test cluster for one test (its chain, keys and locks its own,
/// whatever other tests write), its URL; or None (with a message) without a cluster.
pub async fn postgres_url() -> Option<String> {
    let Some(url) = std::env::var("VOLCAST_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("VOLCAST_TEST_POSTGRES_URL is not set: PostgreSQL skipped (.ci/run sets it)");
        return None;
    };
    let name = format!("outage_{}", volcast_server::audit::new_id(0).to_lowercase());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let base = &url[..url.rfind('/').unwrap()];
    Some(format!("{base}/{name}"))
}

/// The backends of `admin`'s database waiting on a lock in a statement starting with `query`.
pub async fn waiting_pids(admin: &sqlx::PgPool, query: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND ltrim(query) LIKE $1",
    )
    .bind(format!("{query}%"))
    .fetch_all(admin)
    .await
    .unwrap()
}

/// Drives `work` until a backend not in `seen` waits on a lock in a statement starting with
/// `query` (it reached the server), then drops it (a caller giving up); the backend is added
/// to `seen`. Panics when `work` comes back first, or nothing new waits within 15 s.
pub async fn give_up_once_waiting<T: std::fmt::Debug>(
    admin: &sqlx::PgPool,
    query: &str,
    seen: &mut std::collections::BTreeSet<i32>,
    work: impl Future<Output = T>,
) {
    tokio::pin!(work);
    let waits = async {
        loop {
            if let Some(pid) = waiting_pids(admin, query)
                .await
                .into_iter()
                .find(|p| !seen.contains(p))
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let reached = tokio::time::timeout(Duration::from_secs(15), async {
        tokio::select! {
            done = &mut work => panic!("came back behind the lock: {done:?}"),
            pid = waits => pid,
        }
    })
    .await;
    let pid = reached.unwrap_or_else(|_| {
        panic!(
            "never reached the server ({} before): no connection for it",
            seen.len()
        )
    });
    seen.insert(pid);
}

/// How many sessions of `admin`'s database wait on a lock in a statement starting with `query`.
pub async fn waiting_on_locks(admin: &sqlx::PgPool, query: &str) -> i64 {
    let (waiting,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND ltrim(query) LIKE $1",
    )
    .bind(format!("{query}%"))
    .fetch_one(admin)
    .await
    .unwrap();
    waiting
}

/// Waits (up to 30 s) until a session of `url`'s database waits on a lock in a statement
/// starting with `query`: a statement sent, whose connection may then be severed.
pub async fn until_waiting(url: &str, query: &str) {
    let admin = sqlx::PgPool::connect(url).await.unwrap();
    let started = Instant::now();
    loop {
        if waiting_on_locks(&admin, query).await > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no statement {query:?} waits on a lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin.close().await;
}
