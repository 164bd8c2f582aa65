//! Accepting connections with limits, so slow or idle clients cannot hold the service: a
//! deadline for each request's headers (which also closes idle keep-alive connections), the
//! same deadline for a client that stops reading its answers (a write that makes no progress
//! that long closes the connection), a cap on
//! open connections past which a new one is answered 503 `too_many_connections` at once (never
//! left to exhaust file descriptors: at most [`ConnectionLimits::max_refusing`] refused
//! connections linger to drain what their client sent, the others are closed after one
//! non-blocking write of the answer), and a graceful shutdown with a deadline after which the
//! connections still open are dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's headers, counted from when the connection
    /// waits for them (so also the longest an idle keep-alive connection stays open), and the
    /// longest an answer may wait for the client to read it.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections over the cap answered at once with time to drain what their client
    /// sent (up to twice `refusal_linger` each); past it a refused connection gets one
    /// non-blocking write of the 503 and is closed, so a flood holds at most this many
    /// descriptors above the cap.
    pub max_refusing: usize,
    /// How long a refused connection's answer may take to write, and then how long what its
    /// client sent is drained (one second in the service).
    pub refusal_linger: Duration,
    /// After a shutdown is asked, how long in-flight requests may take before the connections
    /// still open are dropped.
    pub shutdown_deadline: Duration,
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then drains.
///
/// # Errors
/// None today: accept errors (e.g. out of descriptors) are logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(limits.max_refusing));
    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                connections.spawn(connection(stream, app.clone(), limits, draining.clone(), permit));
            }
            Err(_) => {
                metrics.connections_refused.inc();
                let response = refusal(limits.max_connections);
                match Arc::clone(&refusing).try_acquire_owned() {
                    Ok(slot) => {
                        connections.spawn(refuse(stream, response, limits.refusal_linger, slot));
                    }
                    Err(_) => {
                        // A flood: no task, no wait; closed once this one write is done.
                        let _ = stream.try_write(response.as_bytes());
                    }
                }
            }
        }
    }
    drop(listener);
    tracing::info!(
        open = connections.len(),
        deadline_ms = limits.shutdown_deadline.as_millis(),
        "shutdown: no new connections; finishing in-flight requests"
    );
    let _ = drain.send(true);
    let finished = tokio::time::timeout(limits.shutdown_deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            dropped = connections.len(),
            "shutdown deadline passed: dropping the connections still open"
        );
        connections.abort_all();
    }
    Ok(())
}

/// One HTTP/1.1 connection, closed gracefully when the service drains.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    mut draining: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let stall = WriteStall::default();
    let stream = Watched {
        inner: stream,
        stall: stall.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let mut closing = false;
    let mut watch = tokio::time::interval(
        (limits.header_read_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
    );
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection closed: {e}");
                }
                return;
            }
            _ = watch.tick() => {
                // A client that stopped reading its answers: its slot is freed (dropping the
                // connection closes the socket).
                if stall.longer_than(limits.header_read_timeout) {
                    tracing::debug!("connection closed: the client read nothing for the header read timeout");
                    return;
                }
            }
            changed = draining.changed(), if !closing => {
                // Asked to drain, or the server is gone: finish the request in flight, then close.
                let _ = changed;
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The 503 answer to a connection over the cap of `max`.
fn refusal(max: usize) -> String {
    let body = serde_json::to_string(&ApiError::TooManyConnections { max }.body()).unwrap_or_default();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Answers a connection over the cap with `response` and closes it (write side first, then
/// whatever the client sent is read and dropped for up to `linger`, so the answer is not lost
/// to a reset), holding one of the refusal slots meanwhile.
async fn refuse(stream: TcpStream, response: String, linger: Duration, _slot: OwnedSemaphorePermit) {
    if tokio::time::timeout(linger, write_all(&stream, response.as_bytes()))
        .await
        .is_err()
    {
        return;
    }
    let Ok(std) = stream.into_std() else { return };
    let _ = std.shutdown(std::net::Shutdown::Write);
    let Ok(stream) = TcpStream::from_std(std) else {
        return;
    };
    let _ = tokio::time::timeout(linger, drain_reads(&stream)).await;
}

/// Writes all of `bytes`.
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads and drops until the peer closes.
async fn drain_reads(stream: &TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// When the connection's writes last stopped making progress, if they have: milliseconds since
/// the connection opened, plus one (0: not stalled). Atomic, as every write of the connection
/// notes it.
#[derive(Debug, Clone)]
struct WriteStall {
    opened: std::time::Instant,
    since: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for WriteStall {
    fn default() -> Self {
        Self {
            opened: std::time::Instant::now(),
            since: Arc::default(),
        }
    }
}

impl WriteStall {
    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn set(&self, stalled: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if stalled {
            // Kept when already stalled: the stall dates from its first write that waited.
            let _ = self.since.compare_exchange(0, self.now(), Relaxed, Relaxed);
        } else {
            self.since.store(0, Relaxed);
        }
    }

    fn longer_than(&self, limit: Duration) -> bool {
        let since = self.since.load(std::sync::atomic::Ordering::Relaxed);
        since != 0 && u128::from(self.now().saturating_sub(since)) > limit.as_millis()
    }
}

/// A connection's stream that notes when its writes stall (the client's window is full: it is
/// not reading) and when they move again.
#[derive(Debug)]
struct Watched {
    inner: TcpStream,
    stall: WriteStall,
}

impl Watched {
    fn noted<T>(&self, poll: std::task::Poll<T>) -> std::task::Poll<T> {
        self.stall.set(poll.is_pending());
        poll
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.noted(poll)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.noted(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.noted(poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    use super::*;

    /// Whether the server still holds `s` open: after the 503 and its end of stream, two writes
    /// apart; a socket the server closed answers the first with a reset, failing the second.
    fn held_open(s: &mut StdStream) -> bool {
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("too_many_connections"), "{answer}");
        let first = s.write_all(b"x");
        std::thread::sleep(Duration::from_millis(100));
        first.is_ok() && s.write_all(b"y").is_ok()
    }

    /// Past the cap, at most `max_refusing` refused connections linger to drain their client;
    /// the others get the same 503 and are closed at once, so a flood cannot hold descriptors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_connections_linger_only_up_to_their_own_cap() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1,
            max_refusing: 2,
            // Long enough that the lingering ones hold their slots through the test, however
            // slow the machine.
            refusal_linger: Duration::from_secs(10),
            shutdown_deadline: Duration::from_millis(100),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Router::new(),
            limits,
            Arc::new(Metrics::new()),
            async {
                let _ = stopped.await;
            },
        ));
        let held = tokio::task::spawn_blocking(move || {
            let connect = || {
                let s = StdStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                s
            };
            let _slot = connect();
            let mut lingering: Vec<_> = (0..2).map(|_| connect()).collect();
            let mut closed = connect();
            let held: Vec<bool> = lingering.iter_mut().map(held_open).collect();
            (held, held_open(&mut closed))
        })
        .await
        .unwrap();
        assert_eq!(held, (vec![true, true], false));
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
