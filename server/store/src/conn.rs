//! Pooled connections for work a caller may give up.

use sqlx::AnyConnection;

/// A connection for work its caller may give up mid-way (the decision log's deadline on an
/// append, the key watcher's on its read, the follower's on an insert). Dropped before
/// [`Self::keep`], it is closed rather than returned to the pool: sqlx returns a connection only
/// after a ping, and that ping waits behind the statement still running on the server (one
/// waiting on a lock, for as long as the lock is held), so each statement given up kept a
/// connection out of the pool, and a lock held for minutes drained the pool for every user of
/// the store (appends until stop 46, reads and candle inserts until stop 60). The server's
/// statement runs on either way.
pub(crate) struct CloseIfGivenUp {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    kept: bool,
}

impl CloseIfGivenUp {
    pub(crate) fn new(conn: sqlx::pool::PoolConnection<sqlx::Any>) -> Self {
        Self { conn, kept: false }
    }

    pub(crate) fn get(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// The write came back (done or failed): the connection goes back to the pool as usual.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for CloseIfGivenUp {
    fn drop(&mut self) {
        if !self.kept {
            self.conn.close_on_drop();
        }
    }
}

impl crate::Store {
    /// Runs `work` on a pooled connection of its own that goes back to the pool when `work`
    /// comes back (done or failed), and is closed if the caller gives up first (a read or write
    /// under a caller's timeout: see [`CloseIfGivenUp`]). Every statement of the store runs here.
    ///
    /// # Errors
    /// No connection, or `work`'s.
    pub(crate) async fn on_own_conn<T, E: From<sqlx::Error>>(
        &self,
        work: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = CloseIfGivenUp::new(self.pool.acquire().await?);
        let done = work(conn.get()).await;
        conn.keep();
        done
    }
}
