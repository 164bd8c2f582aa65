//! Access control and audit: API keys ([`KeyStore`]) and the signed decision log
//! ([`DecisionStore`]). The store keeps rows; hashing, signing and checking belong to the server.

use std::future::Future;

use sqlx::Row;

use crate::{Store, StoreError, rows_of, values_clause};

/// Decision records per `INSERT` (8 parameters each).
const DECISIONS_PER_INSERT: usize = 256;

/// One API key as stored: never its secret, only the secret's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// Public id (the part of the key before its secret), e.g. `k3f9a1c0d2e4b`.
    pub id: String,
    /// Who or what it is for.
    pub name: String,
    /// Comma-separated scopes: `read`, `risk`, `admin`.
    pub scopes: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Created, Unix ms.
    pub created: i64,
    /// Revoked, Unix ms.
    pub revoked: Option<i64>,
    /// Requests per minute allowed (the server's default when absent).
    pub rate_per_minute: Option<i64>,
}

/// The API keys.
pub trait KeyStore {
    /// Adds a key.
    fn create_key(&self, key: &ApiKeyRow) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every key, revoked ones included, by creation time.
    fn keys(&self) -> impl Future<Output = Result<Vec<ApiKeyRow>, StoreError>> + Send;

    /// Revokes the key `id` at `at` (Unix ms); whether a key not yet revoked was found.
    fn revoke_key(&self, id: &str, at: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// One record of the decision log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecisionRow {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Decision id (in the answer and its `x-decision-id` header).
    pub id: String,
    /// When it was made, Unix ms.
    pub at: i64,
    /// The asset.
    pub asset: String,
    /// The exact JSON hashed and signed.
    pub body: String,
    /// SHA-256 of `body`, hex.
    pub hash: String,
    /// Ed25519 signature, hex.
    pub signature: String,
    /// Id of the signing key.
    pub signer: String,
}

/// A record to append, with what it refers to.
#[derive(Debug, Clone)]
pub struct NewDecision {
    /// The record.
    pub row: DecisionRow,
    /// The candle window it was made on: (hash, JSON); `None` when already stored.
    pub inputs: Option<(String, String)>,
    /// The artifact: (model id, hash, directory); `None` when already stored.
    pub model: Option<(String, String, String)>,
}

/// The decision log: append-only.
pub trait DecisionStore {
    /// The last record's sequence number and hash.
    fn head(&self) -> impl Future<Output = Result<Option<(i64, String)>, StoreError>> + Send;

    /// Appends `records` (consecutive, the first following the head) in one transaction, with
    /// their inputs and artifacts. [`StoreError::Conflict`] when another writer took a sequence
    /// number first; nothing is written then. [`StoreError::OutcomeUnknown`] when the connection
    /// was lost once the statement (or the COMMIT) may have gone out: committed or not unknown.
    fn append_decisions(
        &self,
        records: &[NewDecision],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The record with id `id`.
    fn decision(&self, id: &str) -> impl Future<Output = Result<Option<DecisionRow>, StoreError>> + Send;

    /// Up to `limit` records with `seq > after` (from the first, whatever its seq, for `None`),
    /// time in `[from_ms, to_ms]` and, when given, of `asset`, in chain order.
    fn decisions(
        &self,
        asset: Option<&str>,
        from_ms: i64,
        to_ms: i64,
        after: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DecisionRow>, StoreError>> + Send;

    /// The candle window with SHA-256 `sha256`, JSON.
    fn decision_inputs(
        &self,
        sha256: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The artifact of `model_id` a decision refers to: (hash, directory).
    fn decision_model(
        &self,
        model_id: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, StoreError>> + Send;

    /// Every artifact directory a decision refers to.
    fn decision_model_dirs(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Records a signing key (kept if already there).
    fn record_signing_key(
        &self,
        key_id: &str,
        public_key: &str,
        at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every signing key: (id, public key hex, first used).
    fn signing_keys(&self) -> impl Future<Output = Result<Vec<(String, String, i64)>, StoreError>> + Send;
}

fn key_of(r: &sqlx::any::AnyRow) -> Result<ApiKeyRow, sqlx::Error> {
    Ok(ApiKeyRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        scopes: r.try_get(2)?,
        secret_sha256: r.try_get(3)?,
        created: r.try_get(4)?,
        revoked: r.try_get(5)?,
        rate_per_minute: r.try_get(6)?,
    })
}

fn decision_of(r: &sqlx::any::AnyRow) -> Result<DecisionRow, sqlx::Error> {
    Ok(DecisionRow {
        seq: r.try_get(0)?,
        id: text(r, 1)?,
        at: r.try_get(2)?,
        asset: text(r, 3)?,
        body: text(r, 4)?,
        hash: text(r, 5)?,
        signature: text(r, 6)?,
        signer: text(r, 7)?,
    })
}

/// A text column read as [`decision_columns`] selects it: bytes on SQLite, where a record edited
/// in the file may hold any (its invalid UTF-8 replaced: the record then fails its hash, named
/// by `verify`, where the page holding it failed to read at all), text on PostgreSQL, which
/// holds nothing else.
fn text(r: &sqlx::any::AnyRow, i: usize) -> Result<String, sqlx::Error> {
    use sqlx::ValueRef as _;
    // By the value's own type, no decode tried and failed per cell.
    let blob = r.try_get_raw(i)?.type_info().kind() == sqlx::any::AnyTypeInfoKind::Blob;
    if !blob {
        return r.try_get(i);
    }
    let bytes: Vec<u8> = r.try_get(i)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The columns of a decision, in [`decision_of`]'s order. SQLite types a value, not a column:
/// an edited record may hold text that is not UTF-8, a blob, or text where a number belongs,
/// and one such value made every read of a page holding it fail (503, `verify` exit 2 without
/// naming the record). Its text columns are read as bytes, `at` as a number. `seq` is read as
/// stored: it orders the chain and the pages, and a cast would read text there as 0 (a page
/// cursor that never moves, a head every append conflicts with), where it is now a loud error.
/// The page query of [`DecisionStore::decisions`]: one asset's (`by_asset`, its parameter
/// first) or every decision, at times in a bounded range (`by_time`, two parameters next; on
/// SQLite a row whose `at` is not an integer, edited to text, is read whatever the range: it
/// sorts above every number, and was left out of the page that should show it failing), with
/// `seq` `after_op` the next parameter, in log order, at most the last. One asset's is served
/// by the index on `(asset, seq)` (migration 0008).
pub(crate) fn decisions_sql(
    backend: crate::Backend,
    by_asset: bool,
    by_time: bool,
    after_op: &str,
) -> String {
    let columns = decision_columns(backend);
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("${n}")
    };
    let asset = if by_asset {
        format!("asset = {} AND ", param())
    } else {
        String::new()
    };
    let time = if by_time {
        let (from, to) = (param(), param());
        match backend {
            crate::Backend::Sqlite => {
                format!("(at >= {from} AND at <= {to} OR typeof(at) <> 'integer') AND ")
            }
            crate::Backend::Postgres => format!("at >= {from} AND at <= {to} AND "),
        }
    } else {
        String::new()
    };
    let (after, limit) = (param(), param());
    format!(
        "SELECT {columns} FROM decisions WHERE {asset}{time}seq {after_op} {after} ORDER BY seq LIMIT {limit}"
    )
}

fn decision_columns(backend: crate::Backend) -> &'static str {
    match backend {
        crate::Backend::Sqlite => {
            "seq, CAST(id AS BLOB), CAST(at AS INTEGER), CAST(asset AS BLOB), \
             CAST(body AS BLOB), CAST(hash AS BLOB), CAST(signature AS BLOB), CAST(signer AS BLOB)"
        }
        crate::Backend::Postgres => "seq, id, at, asset, body, hash, signature, signer",
    }
}

impl KeyStore for Store {
    async fn create_key(&self, key: &ApiKeyRow) -> Result<(), StoreError> {
        self.on_own_conn(async |c| {
            sqlx::query(
                "INSERT INTO api_keys (id, name, scopes, secret_sha256, created, revoked, rate_per_minute) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&key.id)
            .bind(&key.name)
            .bind(&key.scopes)
            .bind(&key.secret_sha256)
            .bind(key.created)
            .bind(key.revoked)
            .bind(key.rate_per_minute)
            .execute(c)
            .await
        })
        .await?;
        Ok(())
    }

    async fn keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query(
                    "SELECT id, name, scopes, secret_sha256, created, revoked, rate_per_minute FROM api_keys \
             ORDER BY created, id",
                )
                .fetch_all(c)
                .await
            })
            .await?;
        rows_of(&rows, key_of)
    }

    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let done = self
            .on_own_conn(async |c| {
                sqlx::query("UPDATE api_keys SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
                    .bind(at)
                    .bind(id)
                    .execute(c)
                    .await
            })
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// The `INSERT` of `n` decision rows.
fn insert_sql(backend: crate::Backend, n: usize) -> String {
    format!(
        "INSERT INTO decisions (seq, id, at, asset, body, hash, signature, signer) VALUES {}",
        values_clause(backend, n, 8)
    )
}

/// `sql` ([`insert_sql`]) with `records`' rows bound.
fn bind_decisions<'q>(
    sql: &'q str,
    records: &'q [NewDecision],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query(sql);
    for r in records {
        let d = &r.row;
        query = query
            .bind(d.seq)
            .bind(&d.id)
            .bind(d.at)
            .bind(&d.asset)
            .bind(&d.body)
            .bind(&d.hash)
            .bind(&d.signature)
            .bind(&d.signer);
    }
    query
}

fn conflict(e: sqlx::Error) -> StoreError {
    match &e {
        // A sequence number taken by another writer; or PostgreSQL's deadlock (40P01) and
        // serialization failure (40001): the transaction was rolled back, and a retry (which
        // re-reads the head) is what the writer does for a taken number too.
        sqlx::Error::Database(d)
            if d.is_unique_violation() || matches!(d.code().as_deref(), Some("40P01" | "40001")) =>
        {
            StoreError::Conflict(d.message().to_owned())
        }
        _ => StoreError::Database(e),
    }
}

/// A write's error once its statement or COMMIT may have gone out: a lost connection (or one
/// that spoke nonsense) leaves whether the server commits it unknown.
fn unknown_if_lost(e: StoreError) -> StoreError {
    match e {
        StoreError::Database(
            e @ (sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed),
        ) => StoreError::OutcomeUnknown(e),
        e => e,
    }
}

/// [`DecisionStore::append_decisions`] on `conn`.
async fn append_on(
    conn: &mut sqlx::AnyConnection,
    backend: crate::Backend,
    records: &[NewDecision],
) -> Result<(), StoreError> {
    let single = records.len() <= DECISIONS_PER_INSERT
        && records.iter().all(|r| r.inputs.is_none() && r.model.is_none());
    if single {
        // One statement is atomic on its own: no transaction round trips (the common case
        // under load, where the windows and the artifact are already stored).
        let sql = insert_sql(backend, records.len());
        return bind_decisions(&sql, records)
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(|e| unknown_if_lost(conflict(e)));
    }
    // The windows and artifacts in key order, each once: two replicas storing the same new
    // keys in the order their requests came (BTC then ETH on one, ETH then BTC on the other)
    // would each wait on the other's uncommitted key, a deadlock PostgreSQL breaks by
    // aborting one.
    let mut inputs: Vec<&(String, String)> = records.iter().filter_map(|r| r.inputs.as_ref()).collect();
    inputs.sort_by(|a, b| a.0.cmp(&b.0));
    inputs.dedup_by(|a, b| a.0 == b.0);
    let mut models: Vec<&(String, String, String)> =
        records.iter().filter_map(|r| r.model.as_ref()).collect();
    models.sort_by(|a, b| a.0.cmp(&b.0));
    models.dedup_by(|a, b| a.0 == b.0);
    let mut tx = sqlx::Connection::begin(conn).await?;
    for (hash, candles) in inputs {
        sqlx::query(
            "INSERT INTO decision_inputs (hash, candles) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash)
        .bind(candles)
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
    }
    for (id, hash, dir) in models {
        sqlx::query(
            "INSERT INTO decision_models (model_id, hash, dir) VALUES ($1, $2, $3) \
             ON CONFLICT (model_id) DO NOTHING",
        )
        .bind(id)
        .bind(hash)
        .bind(dir)
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
    }
    for chunk in records.chunks(DECISIONS_PER_INSERT) {
        let sql = insert_sql(backend, chunk.len());
        bind_decisions(&sql, chunk)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
    }
    tx.commit().await.map_err(|e| unknown_if_lost(conflict(e)))?;
    Ok(())
}

impl DecisionStore for Store {
    async fn head(&self) -> Result<Option<(i64, String)>, StoreError> {
        let sql = match self.backend {
            crate::Backend::Sqlite => {
                "SELECT seq, CAST(hash AS BLOB) FROM decisions ORDER BY seq DESC LIMIT 1"
            }
            crate::Backend::Postgres => "SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1",
        };
        let row = self
            .on_own_conn(async |c| sqlx::query(sql).fetch_optional(c).await)
            .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, text(&r, 1)?)))
            .transpose()?)
    }

    async fn append_decisions(&self, records: &[NewDecision]) -> Result<(), StoreError> {
        // Acquired first: a failed connect is a definite failure, never an unknown outcome.
        self.on_own_conn(async |c| append_on(c, self.backend, records).await)
            .await
    }

    async fn decision(&self, id: &str) -> Result<Option<DecisionRow>, StoreError> {
        if id.contains('\0') {
            // No stored text holds a NUL (PostgreSQL refuses it): found nowhere, on either
            // backend, rather than a database error on one.
            return Ok(None);
        }
        let columns = decision_columns(self.backend);
        let row = self
            .on_own_conn(async |c| {
                sqlx::query(&format!("SELECT {columns} FROM decisions WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(c)
                    .await
            })
            .await?;
        Ok(row.as_ref().map(decision_of).transpose()?)
    }

    async fn decisions(
        &self,
        asset: Option<&str>,
        from_ms: i64,
        to_ms: i64,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        if asset.is_some_and(|a| a.contains('\0')) {
            return Ok(Vec::new());
        }
        // From the first (`None`): every seq, so a row slipped in at the lowest an i64 holds is
        // read (and fails `verify`) rather than skipped by a strict `seq > i64::MIN`.
        let (after_op, after) = match after {
            Some(a) => (">", a),
            None => (">=", i64::MIN),
        };
        // Without a time range, no time predicate: on SQLite an `at` edited to text sorts
        // above every number, and `at <= i64::MAX` left such a record out of an unbounded
        // export (it is read, and fails `verify`, instead).
        let by_time = (from_ms, to_ms) != (i64::MIN, i64::MAX);
        let sql = decisions_sql(self.backend, asset.is_some(), by_time, after_op);
        let rows = self
            .on_own_conn(async |c| {
                let mut query = sqlx::query(&sql);
                if let Some(a) = asset {
                    query = query.bind(a);
                }
                if by_time {
                    query = query.bind(from_ms).bind(to_ms);
                }
                query.bind(after).bind(i64::from(limit)).fetch_all(c).await
            })
            .await?;
        rows_of(&rows, decision_of)
    }

    async fn decision_inputs(&self, hash: &str) -> Result<Option<String>, StoreError> {
        // Read as bytes on SQLite, as a decision's text is ([`text`]): an edited window that is
        // not UTF-8 fails its hash ("altered"), not the read.
        let sql = match self.backend {
            crate::Backend::Sqlite => "SELECT CAST(candles AS BLOB) FROM decision_inputs WHERE hash = $1",
            crate::Backend::Postgres => "SELECT candles FROM decision_inputs WHERE hash = $1",
        };
        let row = self
            .on_own_conn(async |c| sqlx::query(sql).bind(hash).fetch_optional(c).await)
            .await?;
        Ok(row.map(|r| text(&r, 0)).transpose()?)
    }

    async fn decision_model(&self, model_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = self
            .on_own_conn(async |c| {
                sqlx::query(match self.backend {
                    crate::Backend::Sqlite => {
                        "SELECT CAST(hash AS BLOB), CAST(dir AS BLOB) FROM decision_models WHERE model_id = $1"
                    }
                    crate::Backend::Postgres => "SELECT hash, dir FROM decision_models WHERE model_id = $1",
                })
                .bind(model_id)
                .fetch_optional(c)
                .await
            })
            .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((text(&r, 0)?, text(&r, 1)?)))
            .transpose()?)
    }

    async fn decision_model_dirs(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query("SELECT DISTINCT dir FROM decision_models ORDER BY dir")
                    .fetch_all(c)
                    .await
            })
            .await?;
        rows_of(&rows, |r| r.try_get(0))
    }

    async fn record_signing_key(&self, key_id: &str, public_key: &str, at: i64) -> Result<(), StoreError> {
        self.on_own_conn(async |c| {
            sqlx::query(
                "INSERT INTO signing_keys (key_id, public_key, first_used) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id) DO NOTHING",
            )
            .bind(key_id)
            .bind(public_key)
            .bind(at)
            .execute(c)
            .await
        })
        .await?;
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query(match self.backend {
                    // Bytes on SQLite, as a decision's text ([`text`]): a key edited to bytes
                    // that are not UTF-8 is then not trusted (it names no key), where `verify`
                    // failed to read the keys at all (exit 2).
                    crate::Backend::Sqlite => {
                        "SELECT CAST(key_id AS BLOB), CAST(public_key AS BLOB), first_used FROM signing_keys \
                         ORDER BY first_used, key_id"
                    }
                    crate::Backend::Postgres => {
                        "SELECT key_id, public_key, first_used FROM signing_keys ORDER BY first_used, key_id"
                    }
                })
                .fetch_all(c)
                .await
            })
            .await?;
        rows_of(&rows, |r| Ok((text(r, 0)?, text(r, 1)?, r.try_get(2)?)))
    }
}
