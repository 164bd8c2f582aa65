//! Opening an SQLite store: its URL (the file made ready, anything that is not a database
//! refused by name), one probe connection that says SQLite's own error at once, the settings of
//! every connection, and migrations that tolerate another process migrating the same new file.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use sqlx::Connection as _;

use crate::StoreError;

/// The longest a statement waits for SQLite's lock before it fails (`busy_timeout`).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Tries of the migrations before their error is reported (see [`migrate`]).
const MIGRATION_TRIES: u32 = 20;

/// `url` with `mode=rwc` (create the file when missing), its directory created; and the file.
pub(crate) fn url(url: &str) -> Result<(String, Option<PathBuf>), StoreError> {
    let (connect, file) = target(url)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Not an unsupported URL: the URL is fine, the path is not.
        let cannot = |why: String| StoreError::Directory {
            dir: dir.display().to_string(),
            why,
        };
        if let Some(on_the_way) = file_on_the_way(&file) {
            return Err(cannot(format!("{} is a file", on_the_way.display())));
        }
        std::fs::create_dir_all(dir).map_err(|e| cannot(e.to_string()))?;
    }
    refuse_non_database(&file)?;
    Ok((connect, Some(file)))
}

/// The `sqlite://` URL of the file at `path`: made absolute (a relative path's first
/// component would be read as the URL's host), every byte but `/` and URL-unreserved ones
/// percent-escaped. `sqlite://{path}` made of a directory named `rw sp` or `rw?mode=ro` was
/// refused ("invalid domain character") or read as a query.
#[must_use]
pub fn url_of(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    // Resolved as the system resolves it (`link/..` is not the link's directory), where it
    // exists: the URL parser would drop `..` with the component before it.
    let resolved = std::fs::canonicalize(path).ok().or_else(|| {
        let parent = std::fs::canonicalize(path.parent()?).ok()?;
        Some(parent.join(path.file_name()?))
    });
    let absolute = resolved
        .or_else(|| std::path::absolute(path).ok())
        .unwrap_or_else(|| path.to_owned());
    let mut url = String::from("sqlite://");
    for &b in absolute.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// The file an SQLite URL names: the one sqlx opens for it (its URL parser resolves `..` and
/// percent-escapes; a path decoded by hand differed from it).
pub(crate) fn file(url: &str) -> Result<PathBuf, StoreError> {
    target(url).map(|(_, file)| file)
}

/// The URL the store connects with (`mode=rwc` added when no mode is given) and the file sqlx
/// opens for it, asked of sqlx as its `Any` driver reads the URL. A database in memory is
/// refused: what is written there is lost when the process ends.
fn target(url: &str) -> Result<(String, PathBuf), StoreError> {
    let (path, query) = parts(url)?;
    let mut query = query.to_owned();
    if !query.contains("mode=") {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("mode=rwc");
    }
    let connect = format!("sqlite://{path}?{query}");
    let refused = |why: String| StoreError::Url {
        url: url.to_owned(),
        why,
    };
    let any: sqlx::any::AnyConnectOptions =
        connect.parse().map_err(|e: sqlx::Error| refused(e.to_string()))?;
    let in_memory = any
        .database_url
        .query_pairs()
        .any(|(k, v)| (k == "mode" && v == "memory") || (k == "vfs" && v == "memdb"));
    if in_memory {
        return Err(refused(
            "the store needs a file, not memory (what is written there is lost at exit): use sqlite://FILE"
                .to_owned(),
        ));
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(any.database_url.as_str())
        .map_err(|e| refused(e.to_string()))?;
    Ok((connect, options.get_filename().to_path_buf()))
}

/// Whether a store is at `file`: a file that is not empty (an empty one is a new store), or a
/// directory (refused as such when opened).
pub(crate) fn is_there(file: &Path) -> bool {
    std::fs::metadata(file).is_ok_and(|m| m.is_dir() || m.len() > 0)
}

/// The first of `file`'s ancestors that exists, where it is not a directory: a file on the
/// store's path (`create_dir_all` said only "File exists").
pub(crate) fn file_on_the_way(file: &Path) -> Option<PathBuf> {
    file.ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| a.exists())
        .filter(|a| !a.is_dir())
        .map(Path::to_path_buf)
}

/// Refuses an existing path that SQLite cannot open as a database ([`StoreError::NotSqlite`]);
/// a missing or empty file is a new store. A file with a rollback journal or a write-ahead log
/// beside it is left to SQLite, which may recover it.
fn refuse_non_database(file: &Path) -> Result<(), StoreError> {
    use std::io::Read as _;
    const HEADER: &[u8; 16] = b"SQLite format 3\0";
    let not = |why: String| {
        Err(StoreError::NotSqlite {
            path: file.display().to_string(),
            why,
        })
    };
    if file.is_dir() {
        return not("a directory".into());
    }
    let beside = |suffix: &str| {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        Path::new(&name).exists()
    };
    if beside("-journal") || beside("-wal") {
        return Ok(());
    }
    let Ok(mut opened) = std::fs::File::open(file) else {
        // Missing (created), or unreadable: SQLite's own error says which.
        return Ok(());
    };
    let mut head = Vec::with_capacity(HEADER.len());
    match opened.by_ref().take(HEADER.len() as u64).read_to_end(&mut head) {
        Ok(0) => Ok(()),
        Ok(_) if head == HEADER => Ok(()),
        Ok(n) => not(format!("its first {n} bytes are not SQLite's header")),
        Err(e) => not(e.to_string()),
    }
}

/// An SQLite URL's file path (as written, percent-encoded) and query; `:memory:` refused here,
/// a memory database asked for in the query by [`target`].
fn parts(url: &str) -> Result<(&str, &str), StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Url {
            url: url.to_owned(),
            why: "not an SQLite URL: use sqlite://FILE".to_owned(),
        })?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(StoreError::Url {
            url: url.to_owned(),
            why: "the store needs a file: use sqlite://FILE".to_owned(),
        });
    }
    if path == ":memory:" {
        return Err(StoreError::Url {
            url: url.to_owned(),
            why: "the store needs a file, not memory (what is written there is lost at exit): use sqlite://FILE".to_owned(),
        });
    }
    Ok((path, query))
}

/// One connection before the pool's, its failure said as SQLite says it ("database disk image
/// is malformed"): the pool retries a connection that fails until its acquire timeout, 30 s, and
/// then reports only that it timed out.
pub(crate) async fn probe(url: &str) -> Result<(), StoreError> {
    let mut probe = sqlx::AnyConnection::connect(url).await?;
    // Waiting on another process's lock as the pool's connections do (the server and `ingest`
    // started together), not failing on it after sqlx's own 5 s.
    busy_timeout(&mut probe).await?;
    wal(&mut probe).await?;
    sqlx::query("SELECT count(*) FROM sqlite_master")
        .fetch_one(&mut probe)
        .await?;
    probe.close().await?;
    Ok(())
}

/// Every pooled connection's settings: WAL (readers never wait for the writer), full
/// synchronous commits (a committed write survives a crash), and the store's lock wait.
pub(crate) async fn configure(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    busy_timeout(conn).await?;
    wal(conn).await?;
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut *conn)
        .await
        .map(drop)
}

/// Switches to WAL mode, trying again while another connection holds the lock: the switch
/// takes an exclusive lock that SQLite does not wait for (`busy_timeout` does not apply), so two
/// processes opening one new file at once failed now and then with "database is locked".
async fn wal(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    loop {
        match sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await {
            // SQLITE_BUSY or SQLITE_LOCKED ("database is locked"), until the lock wait has
            // passed, however long each try sat in SQLite's busy handler.
            Err(sqlx::Error::Database(e))
                if e.message().contains("locked") && started.elapsed() < LOCK_WAIT =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other.map(drop),
        }
    }
}

async fn busy_timeout(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("PRAGMA busy_timeout = {}", LOCK_WAIT.as_millis()))
        .execute(conn)
        .await
        .map(drop)
}

/// Applies the migrations not yet applied. sqlx takes no lock across processes on SQLite: two
/// processes opening a new file at once (the server and `ingest` started together) both find a
/// migration unapplied, and the one that applies it second fails. Each failure follows another's
/// progress, so trying again finds more applied; a migration that fails on its own fails every
/// time and is reported after the last try.
pub(crate) async fn migrate(pool: &sqlx::AnyPool) -> Result<(), StoreError> {
    let migrator = crate::tolerant(&MIGRATIONS);
    let mut tries = 0;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if tries < MIGRATION_TRIES => {
                tries += 1;
                tracing::debug!(tries, "store migration raced another process: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{READ_SCHEMA, Store};

    /// The version of this build's last SQLite migration.
    fn latest_migration() -> i64 {
        MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
    }

    #[test]
    fn an_sqlite_url_names_a_file_created_when_missing() {
        let (url, file) = url("sqlite:///tmp/x/v.db").unwrap();
        assert_eq!(url, "sqlite:///tmp/x/v.db?mode=rwc");
        assert_eq!(file.as_deref(), Some(Path::new("/tmp/x/v.db")));
        assert!(super::url("sqlite://:memory:").is_err());
        assert!(super::url("sqlite://").is_err());
    }

    /// A URL naming a directory or a file that is not a database is refused at once, by name
    /// (every connection failed and the pool reported only "timed out" after 30 s); a missing or
    /// empty file is a new store, and an existing store opens.
    #[tokio::test]
    async fn a_url_naming_something_else_than_a_database_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, "not a database\n").unwrap();
        let started = std::time::Instant::now();
        for (path, says) in [
            (&notes, "first 15 bytes"),
            (&dir.path().to_path_buf(), "a directory"),
        ] {
            let url = format!("sqlite://{}", path.display());
            let e = Store::open(&url)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("is not an SQLite database") && e.contains(says) && e.contains("check the URL"),
                "{url}: {e}"
            );
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A tool that reads an existing store says what a directory is, not that it is missing.
        let url = format!("sqlite://{}", dir.path().display());
        let e = Store::open_existing(&url)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("a directory"), "{e}");
        let (empty, fresh) = (dir.path().join("empty.db"), dir.path().join("sub/fresh.db"));
        std::fs::write(&empty, "").unwrap();
        for path in [&empty, &fresh, &fresh] {
            Store::open(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
        }
        // A store whose pages are damaged past its header: SQLite's own error, at once.
        let damaged = dir.path().join("damaged.db");
        let store = Store::open(&format!("sqlite://{}", damaged.display()))
            .await
            .unwrap();
        store.close().await;
        let mut bytes = std::fs::read(&damaged).unwrap();
        assert!(bytes.len() >= 4096, "{}", bytes.len());
        bytes[100..4096].fill(0xA5);
        std::fs::write(&damaged, bytes).unwrap();
        let started = std::time::Instant::now();
        let e = Store::open(&format!("sqlite://{}", damaged.display()))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("malformed"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A file where the store's directory would be: said as such, not as an unsupported URL.
        let e = Store::open(&format!("sqlite://{}/volcast.db", notes.display()))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("cannot create the store's directory") && e.contains("notes.txt"),
            "{e}"
        );
        // With a journal beside it, SQLite may recover what looks damaged: its own call.
        std::fs::write(dir.path().join("notes.txt-journal"), "").unwrap();
        assert!(super::url(&format!("sqlite://{}", notes.display())).is_ok());
    }

    /// A path made into a URL names that path, whatever characters a URL reads otherwise.
    #[tokio::test]
    async fn a_path_made_a_url_opens_that_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["rw sp", "rw?mode=ro", "50%", "a#b", "c:d", "[e]|^<f>", "é"] {
            let sub = dir.path().join(name);
            std::fs::create_dir(&sub).unwrap();
            let path = sub.join("replay.db");
            let url = url_of(&path);
            let store = Store::open(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(store.file(), Some(path.as_path()), "{url}");
            store.close().await;
            assert!(path.is_file(), "{url}");
        }
    }

    /// What is at the URL's file, as the tools that read a store see it: a percent-encoded
    /// path is the file sqlx opens, an empty file is no store yet, a file on the path is named,
    /// and memory is no store.
    #[tokio::test]
    async fn the_file_a_url_names_is_the_one_sqlx_opens() {
        let dir = tempfile::tempdir().unwrap();
        let encoded = format!("sqlite://{}/my%20store.db", dir.path().display());
        assert!(!Store::exists(&encoded).unwrap());
        let e = Store::open_existing(&encoded).await.err().map(|e| e.to_string());
        assert!(e.as_deref().unwrap_or_default().contains("no such file"), "{e:?}");
        let store = Store::open(&encoded).await.unwrap();
        assert_eq!(store.file(), Some(dir.path().join("my store.db").as_path()));
        store.close().await;
        assert!(dir.path().join("my store.db").is_file());
        assert!(Store::exists(&encoded).unwrap());
        Store::open_existing(&encoded).await.unwrap().close().await;

        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        let url = format!("sqlite://{}", empty.display());
        assert!(!Store::exists(&url).unwrap(), "an empty file is a new store");
        let e = Store::open_existing(&url).await.err().map(|e| e.to_string());
        assert!(
            e.as_deref().unwrap_or_default().contains("an empty file"),
            "{e:?}"
        );
        assert_eq!(
            std::fs::metadata(&empty).unwrap().len(),
            0,
            "a read wrote nothing"
        );

        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, "not a directory\n").unwrap();
        let url = format!("sqlite://{}/sub/volcast.db", notes.display());
        for e in [
            Store::open(&url).await.err(),
            Store::open_existing(&url).await.err(),
        ] {
            let e = e.map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&format!("{} is a file", notes.display())), "{e}");
        }
        // `..` is resolved as sqlx's URL parser resolves it: the file checked is the one opened.
        let dotted = format!("sqlite://{}/sub/../dotted.db", dir.path().display());
        let store = Store::open(&dotted).await.unwrap();
        assert_eq!(store.file(), Some(dir.path().join("dotted.db").as_path()));
        store.close().await;
        assert!(dir.path().join("dotted.db").is_file() && Store::exists(&dotted).unwrap());
        for url in [
            "sqlite::memory:",
            "sqlite://x.db?mode=memory",
            "sqlite://x.db?mode=memor%79",
            "sqlite://x.db?vfs=memdb",
            "sqlite://",
        ] {
            let e = Store::open(url).await.err().map(|e| e.to_string());
            assert!(
                e.as_deref().unwrap_or_default().contains("needs a file"),
                "{url}: {e:?}"
            );
        }
    }

    /// A tool reading an existing store (`verify`, `keys list`) changes no schema: one without
    /// a migration it reads is refused, saying how to upgrade it, and left as it was; one of an
    /// older build that has what it reads, or of a newer build, is read; a database that is not
    /// a volcast store is refused and gains no table (all were migrated on opening, until
    /// stop 60).
    #[tokio::test]
    async fn reading_an_existing_store_changes_no_schema() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let store = Store::open(&url).await.unwrap();
        let last = latest_migration();
        let versions = async || -> Vec<i64> {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&store.pool)
                .await
                .unwrap()
        };
        // An older build's store (the last migration not applied) and a newer build's (one
        // migration this build does not know) are read, unchanged.
        for (edit, version) in [
            ("DELETE FROM _sqlx_migrations WHERE version = $1", last),
            (
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ($1, 'newer', TRUE, X'00', 0)",
                9999,
            ),
        ] {
            sqlx::query(edit)
                .bind(version)
                .execute(&store.pool)
                .await
                .unwrap();
            let before = versions().await;
            Store::open_existing(&url).await.unwrap().close().await;
            assert_eq!(versions().await, before, "the tool migrated the store");
        }
        // One without the access tables' migration (0005).
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
            .bind(READ_SCHEMA)
            .execute(&store.pool)
            .await
            .unwrap();
        let before = versions().await;
        let e = Store::open_existing(&url)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("lacks schema migration 0005") && e.contains("upgrade it"),
            "{e}"
        );
        assert_eq!(versions().await, before, "the tool migrated the store");
        store.close().await;
        // Another application's database.
        let other = format!("sqlite://{}", dir.path().join("other.db").display());
        let pool = sqlx::AnyPool::connect(&format!("{other}?mode=rwc"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        let e = Store::open_existing(&other)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("holds no volcast store"), "{e}");
        let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(tables, 1, "the tool gave it volcast's tables");
        pool.close().await;
    }

    /// A signing key or artifact row edited to bytes that are not UTF-8 is read (its text with
    /// U+FFFD, so it names no key and no directory), not a read error that stopped `verify`.
    #[tokio::test]
    async fn rows_holding_bytes_that_are_not_text_are_read() {
        use crate::DecisionStore as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("v.db").display()))
            .await
            .unwrap();
        for edit in [
            "INSERT INTO signing_keys (key_id, public_key, first_used) VALUES ('k', CAST(X'61FF' AS TEXT), 1)",
            "INSERT INTO decision_models (model_id, hash, dir) VALUES ('m', X'FF', CAST(X'2FFF' AS TEXT))",
        ] {
            sqlx::query(edit).execute(&store.pool).await.unwrap();
        }
        assert_eq!(
            store.signing_keys().await.unwrap(),
            [("k".to_owned(), "a\u{fffd}".to_owned(), 1)]
        );
        assert_eq!(
            store.decision_model("m").await.unwrap(),
            Some(("\u{fffd}".to_owned(), "/\u{fffd}".to_owned()))
        );
    }

    /// One asset's page of decisions walks the `(asset, seq)` index from its cursor; before
    /// migration 0008 SQLite read the asset's decisions in the time range by `(asset, at)` and
    /// sorted them all for each page (`USE TEMP B-TREE FOR ORDER BY`), quadratic over an export.
    #[tokio::test]
    async fn an_assets_page_of_decisions_reads_its_index_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("v.db").display()))
            .await
            .unwrap();
        for (after_op, by_time) in [(">", true), (">=", true), (">", false)] {
            let sql = crate::access::decisions_sql(crate::Backend::Sqlite, true, by_time, after_op);
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&store.pool)
                .await
                .unwrap();
            let plan: Vec<String> = rows.iter().map(|r| sqlx::Row::get::<String, _>(r, 3)).collect();
            assert!(
                plan.iter().any(|d| d.contains("USING INDEX decisions_asset_seq"))
                    && !plan.iter().any(|d| d.contains("TEMP B-TREE")),
                "{after_op} {by_time}: {plan:?}"
            );
        }
    }
}
