//! The service's own market data: hourly candles per asset, in an embedded SQLite file by default
//! or in PostgreSQL for deployments with several server replicas, behind [`CandleStore`].
//!
//! One implementation serves both backends through sqlx's `Any` driver, selected by the URL
//! (`sqlite://data/volcast.db`, `postgres://user@host/db`). The schema is versioned: the migrations
//! under `migrations/<backend>/` are embedded in the binary and applied at [`Store::open`], each
//! once. SQLite runs in WAL mode (readers never wait for the writer) with full synchronous
//! commits, so a committed write survives a crash.
//!
//! Writes are idempotent and atomic: [`CandleStore::insert_candles`] stores a batch in one
//! transaction and skips hours already stored, so loading the same file twice changes nothing,
//! and a failure leaves the store as it was.

mod access;
mod candles;
mod conn;
mod ledger;
mod postgres;
mod redact;
mod sqlite;

pub use access::{ApiKeyRow, DecisionRow, DecisionStore, KeyStore, NewDecision};
pub use candles::{AssetRange, CandleStore};
pub use ledger::{LedgerEntry, LedgerStore};
pub use redact::redact_url;
pub use sqlite::url_of as sqlite_url;
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};

/// Default store: an SQLite file beside the repository's data, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/volcast.db";

/// How long PostgreSQL keeps a session idle inside a transaction before ending it.
const IDLE_IN_TRANSACTION: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest a PostgreSQL statement waits for a lock before the server aborts it. Longer than
/// the decision log's 60 s deadline on an append, so an append held behind a lock is settled as
/// before (its statement may still commit once the lock goes, within this wait); but no statement
/// waits forever behind a lock that is never let go (a replica's dead session, a forgotten
/// `BEGIN` in psql), each holding a server connection: an append given up and sent again every
/// minute would otherwise pile up one more of them a minute.
pub const POSTGRES_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// The migrations every tool reading an existing store needs ([`Store::open_existing`]): up to
/// 0005, which made the keys and the decision log; the later ones (the ledger's) change nothing
/// they read. A tool of a newer build can so revoke a key or verify a log on a store of an older
/// one, without upgrading it first.
pub const READ_SCHEMA: i64 = 5;

/// How often a PostgreSQL backend of the store checks that its client is still connected while
/// it runs a statement (`client_connection_check_interval`).
pub const CLIENT_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest an operation waits for a PostgreSQL connection, connecting or checking an idle
/// one included (sqlx's default is 30 s). A database that cannot be reached (down, or a network
/// partition that leaves connections hanging) then fails each operation after this wait instead
/// of holding the decision log and the requests behind it for half a minute a try. A statement
/// that waits on a lock once connected is not bounded by it.
pub const POSTGRES_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported backend, or no file for SQLite.
    #[error("database URL {url:?}: {why}")]
    Url {
        /// The URL, without its password.
        url: String,
        /// What is wrong with it, and what to write.
        why: String,
    },
    /// A candle the store refuses (a non-finite number, or an open time not on the hour).
    #[error("{asset} candle at open time {open_time}: {message}")]
    Candle {
        /// The asset.
        asset: String,
        /// Its open time (Unix ms).
        open_time: i64,
        /// What is wrong.
        message: String,
    },
    /// The database failed. sqlx's error is in the text and is not also the source: a chain
    /// printed whole (`{:#}`, as the command-line tools print it) said SQLite's message three
    /// times.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// The connection was lost (or spoke nonsense) once a write's statement or COMMIT may have
    /// gone out: the server may have committed it, or may still.
    #[error("database, committed or not unknown: {0}")]
    OutcomeUnknown(sqlx::Error),
    /// Another writer took the same key first (the decision log's sequence number).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A migration failed (its error in the text only, as [`Self::Database`]).
    #[error("schema migration: {0}")]
    Migration(sqlx::migrate::MigrateError),
    /// The SQLite URL names something that is not an SQLite database: a directory, or a file
    /// that is neither empty nor starts with SQLite's header (a mistyped URL naming a log or a
    /// JSON file). Said at once: opened, every connection failed and the pool waited its whole
    /// acquire timeout before reporting only that it timed out.
    #[error("{path} is not an SQLite database ({why}): check the URL")]
    NotSqlite {
        /// The file.
        path: String,
        /// What it is instead.
        why: String,
    },
    /// The SQLite file's directory could not be made (a file on its path, no permission).
    #[error("cannot create the store's directory {dir}: {why}")]
    Directory {
        /// The directory.
        dir: String,
        /// Why not, as the system says it.
        why: String,
    },
    /// [`Store::open_existing`] found a database without this build's schema: none at all (not
    /// a volcast store), or an older one it does not upgrade.
    #[error("{0}")]
    Schema(String),
    /// [`Store::open_existing`] found no SQLite store there.
    #[error("no store at {path}: {why} (check the URL; a store is created by the server or `ingest`)")]
    Missing {
        /// The file.
        path: String,
        /// What is there instead: no file, an empty one, a file on the way.
        why: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(e)
    }
}

impl StoreError {
    /// Whether a write that failed so may still have been committed ([`Self::OutcomeUnknown`]).
    /// A failure to get a connection, an error the database answered (its transaction then
    /// rolled back), or a connection lost inside a transaction before its COMMIT is definite.
    #[must_use]
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::OutcomeUnknown(_))
    }

    /// The error said after the store it is about, `shown` (its URL without the password):
    /// `"{shown}: {self}"`, or the error alone where it quotes the URL itself ([`Self::Url`]),
    /// which would otherwise be said twice.
    #[must_use]
    pub fn said_of(&self, shown: &str) -> String {
        match self {
            Self::Url { .. } => self.to_string(),
            _ => format!("{shown}: {self}"),
        }
    }
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend a URL names.
    ///
    /// # Errors
    /// [`StoreError::Url`] for any other scheme.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            // A mistyped scheme (`postgress://`) still carries its password: not repeated.
            Err(StoreError::Url {
                url: redact_url(url),
                why: "unsupported: use sqlite://FILE or postgres://...".to_owned(),
            })
        }
    }
}

/// The store: a connection pool to SQLite or PostgreSQL with the schema migrated.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    file: Option<std::path::PathBuf>,
}

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The embedded migrations, tolerating migrations applied by a newer build: during a rolling
/// deploy on a shared PostgreSQL (or after a newer `ingest` ran on the file), a replica of the
/// older build must still start. The migrations are additive (new tables, columns with
/// defaults, indexes), so an older build keeps working on a newer schema.
pub(crate) fn tolerant(embedded: &sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator {
        migrations: embedded.migrations.clone(),
        ignore_missing: true,
        locking: embedded.locking,
        no_tx: embedded.no_tx,
    }
}

impl Store {
    /// Connects to `url` (`sqlite://FILE`, created with its directory when missing, or
    /// `postgres://...`) and applies the migrations not yet applied.
    ///
    /// # Errors
    /// [`StoreError`] when the URL is unsupported, the database cannot be reached or created, or
    /// a migration fails.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect(url, true).await
    }

    /// [`Store::open`] for tools that read a store that must already exist (`verify`, `keys
    /// list` and `revoke`, the gate's replay): an SQLite file that does not exist is refused
    /// instead of created empty, so a mistyped URL is an error, not an empty, "verified" log.
    /// Nor does it apply migrations (until stop 60 it did): an auditor's `verify` upgraded the
    /// production schema under the replicas still running the older build, needed the right to
    /// create tables (a read-only PostgreSQL role could not open the store), and gave any SQLite
    /// database it was pointed at volcast's tables. A schema without the migrations the reading
    /// tools need ([`READ_SCHEMA`]) is refused, saying how to upgrade it; a later one, of this
    /// build or a newer one, is read (the migrations are additive).
    ///
    /// # Errors
    /// [`StoreError::Missing`] for a missing or empty SQLite file; [`StoreError::Schema`] for a
    /// database without this build's schema; else as [`Store::open`].
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        if Backend::of_url(url)? == Backend::Sqlite {
            let file = sqlite::file(url)?;
            // Missing or empty: refused here. A directory there is not a store: refused as such
            // below.
            if !sqlite::is_there(&file) {
                let why = match sqlite::file_on_the_way(&file) {
                    Some(f) => format!("{} is a file, not a directory", f.display()),
                    None if file.exists() => "an empty file".to_owned(),
                    None => "no such file".to_owned(),
                };
                return Err(StoreError::Missing {
                    path: file.display().to_string(),
                    why,
                });
            }
        }
        let store = Self::connect(url, false).await?;
        let checked = store.check_schema().await;
        if checked.is_err() {
            store.close().await;
        }
        checked.map(|()| store)
    }

    /// Refuses a database that lacks a migration the reading tools need ([`READ_SCHEMA`]), or
    /// has no schema at all.
    async fn check_schema(&self) -> Result<(), StoreError> {
        let exists_sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = '_sqlx_migrations' \
                                  AND schemaname = ANY (current_schemas(false))"
            }
        };
        let tables: i64 = self
            .on_own_conn(async |c| sqlx::query_scalar(exists_sql).fetch_one(c).await)
            .await?;
        if tables == 0 {
            return Err(StoreError::Schema(
                "this database holds no volcast store (no schema): check the URL; a store is created \
                 by the server or `ingest`"
                    .into(),
            ));
        }
        let applied: Vec<i64> = self
            .on_own_conn(async |c| {
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(c)
                    .await
            })
            .await?;
        if let Some(missing) = (1..=READ_SCHEMA).find(|v| !applied.contains(v)) {
            return Err(StoreError::Schema(format!(
                "the store lacks schema migration {missing:04}, which this tool reads (it needs \
                 0001 to {READ_SCHEMA:04}): start the server (or run `ingest`) on it once to \
                 upgrade it; this tool does not change a schema"
            )));
        }
        Ok(())
    }

    /// Whether [`Store::open`] would find a store at `url` rather than make a new one: whether
    /// the SQLite file exists and is not empty (a directory counts: it is refused when opened).
    /// A PostgreSQL database is never created by the store: true.
    ///
    /// # Errors
    /// [`StoreError::Url`] for an unsupported URL.
    pub fn exists(url: &str) -> Result<bool, StoreError> {
        Ok(match Backend::of_url(url)? {
            Backend::Sqlite => sqlite::is_there(&sqlite::file(url)?),
            Backend::Postgres => true,
        })
    }

    /// Connects to `url`, applying the migrations not yet applied when `migrate` says so.
    async fn connect(url: &str, migrate: bool) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = Backend::of_url(url)?;
        let (url, file) = match backend {
            Backend::Sqlite => sqlite::url(url)?,
            Backend::Postgres => {
                postgres::check(url)?;
                (url.to_owned(), None)
            }
        };
        if backend == Backend::Sqlite {
            sqlite::probe(&url).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time in SQLite; a few readers beside it in WAL mode.
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(match backend {
                // A local file: the wait is for the pool's own connections only.
                Backend::Sqlite => std::time::Duration::from_secs(30),
                Backend::Postgres => POSTGRES_ACQUIRE_TIMEOUT,
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlite::configure(conn).await?;
                    } else {
                        // A transaction whose client is gone mid-way (a connection left hanging,
                        // given up by the decision log's writer) would hold its rows' locks, and
                        // the log's next sequence numbers with them, until the server noticed
                        // the dead client (hours). The store never leaves a transaction idle.
                        sqlx::query(&format!(
                            "SET idle_in_transaction_session_timeout = {}",
                            IDLE_IN_TRANSACTION.as_millis()
                        ))
                        .execute(&mut *conn)
                        .await?;
                        sqlx::query(&format!(
                            "SET lock_timeout = {}",
                            POSTGRES_LOCK_TIMEOUT.as_millis()
                        ))
                        .execute(&mut *conn)
                        .await?;
                        // A statement whose caller gave up is closed with its connection
                        // (`conn.rs`), and its backend checks every second that the client is
                        // still there, ending the statement once it is not: without the check a
                        // statement waiting on a lock ran on to the lock timeout, and each give-up
                        // (a new connection then opened) added a backend to the server's count.
                        // PostgreSQL 14 and later, on Linux; older servers refuse the setting,
                        // which is then left unset.
                        if let Err(e) = sqlx::query(&format!(
                            "SET client_connection_check_interval = {}",
                            CLIENT_CHECK.as_millis()
                        ))
                        .execute(&mut *conn)
                        .await
                        {
                            tracing::debug!("client_connection_check_interval not set: {e}");
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        match backend {
            _ if !migrate => {}
            Backend::Sqlite => sqlite::migrate(&pool).await?,
            Backend::Postgres => {
                // On a session without the store's lock timeout: migrations wait as long as
                // another replica's take (or a backup's lock on a table they alter), where a
                // replica started beside them would otherwise fail to start.
                let mut conn = pool.acquire().await?;
                sqlx::query("SET lock_timeout = 0").execute(&mut *conn).await?;
                let migrated = tolerant(&POSTGRES_MIGRATIONS).run_direct(&mut *conn).await;
                // Not back to the pool: its session has no lock timeout.
                conn.close_on_drop();
                migrated?;
            }
        }
        Ok(Self { pool, backend, file })
    }

    /// The SQLite file, for an SQLite store.
    #[must_use]
    pub fn file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// The backend in use.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `(?, ?), (?, ?)` for `rows` rows of `cols` parameters: anonymous `?` for SQLite (it looks a
/// numbered parameter's name up in a list, one lookup per parameter, which made a
/// 4,000-parameter insert quadratic), `$1, $2...` for PostgreSQL.
pub(crate) fn values_clause(backend: Backend, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|i| {
            let p = (1..=cols)
                .map(|k| match backend {
                    Backend::Sqlite => "?".to_owned(),
                    Backend::Postgres => format!("${}", cols * i + k),
                })
                .collect::<Vec<_>>();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every row read by `read`, or the first error.
pub(crate) fn rows_of<T>(
    rows: &[sqlx::any::AnyRow],
    read: impl Fn(&sqlx::any::AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(read)
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::of_url("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgres://u@h/db").ok(), Some(Backend::Postgres));
        assert_eq!(
            Backend::of_url("postgresql://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(matches!(
            Backend::of_url("mysql://h/db"),
            Err(StoreError::Url { .. })
        ));
        let e = Backend::of_url("postgress://u:secret@h/db")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .unwrap_or_default()
                .contains("postgress://u:***@h/db"),
            "{e:?}"
        );
    }
}
