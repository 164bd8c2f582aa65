//! The forecast ledger ([`LedgerStore`]): what the service would serve at each daily origin, what
//! happened once its windows closed, and the gate's switches. The store keeps rows; recording,
//! scoring and the gate belong to the server.

use std::future::Future;

use sqlx::Row;

use crate::{Store, StoreError, rows_of};

/// One entry of the forecast ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Asset id.
    pub asset: String,
    /// The origin, Unix ms (the close of the last candle the forecast used).
    pub origin: i64,
    /// The model that forecast.
    pub model_id: String,
    /// What would have been served, JSON.
    pub record: String,
    /// What happened, JSON, once scored.
    pub outcome: Option<String>,
}

/// The forecast ledger: what the service would serve at each daily origin, and what happened.
pub trait LedgerStore {
    /// Records `entry` (its outcome ignored) unless one with the same asset and origin is there,
    /// whatever model made it (replicas sharing the store); returns whether it was new.
    fn record_forecast(&self, entry: &LedgerEntry) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The latest origin recorded (by any model: the ledger is what the service served, and the
    /// daily recalibration gives the model a new id every day), if any.
    fn last_origin(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// The assets recorded at `origin`.
    fn recorded_assets(&self, origin: i64) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Up to `limit` entries not scored yet or scored only in part, oldest origin first.
    fn unscored(&self, limit: u32) -> impl Future<Output = Result<Vec<LedgerEntry>, StoreError>> + Send;

    /// Sets the outcome of the entry with `entry`'s asset, origin and model; `partial` while
    /// some of its windows are still open (the entry stays among [`Self::unscored`]). A complete
    /// outcome is never replaced (two replicas scoring the same entry).
    fn set_outcome(
        &self,
        entry: &LedgerEntry,
        outcome: &str,
        partial: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The scored entries with origin in `[from_ms, to_ms]`, by origin then asset.
    fn scored(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<LedgerEntry>, StoreError>> + Send;

    /// Records a switch of the champion/challenger gate at `at` (Unix ms); an existing one at
    /// the same time is kept. Whether this one was recorded (false: one was already there, from
    /// another replica or an earlier run).
    fn record_switch(
        &self,
        at: i64,
        policy: &str,
        reason: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The gate's switches, oldest first: (time, policy, reason).
    fn switches(&self) -> impl Future<Output = Result<Vec<(i64, String, String)>, StoreError>> + Send;
}

fn entry_of(r: &sqlx::any::AnyRow) -> Result<LedgerEntry, sqlx::Error> {
    Ok(LedgerEntry {
        asset: r.try_get(0)?,
        origin: r.try_get(1)?,
        model_id: r.try_get(2)?,
        record: r.try_get(3)?,
        outcome: r.try_get(4)?,
    })
}

impl LedgerStore for Store {
    async fn record_forecast(&self, entry: &LedgerEntry) -> Result<bool, StoreError> {
        let done = self
            .on_own_conn(async |c| {
                sqlx::query(
                    // No conflict target: an entry already there under any of the table's
                    // unique keys is skipped. Named `(asset, origin)`, PostgreSQL checked the
                    // primary key `(asset, origin, model_id)` as a plain unique index, so two
                    // replicas recording the same entry at once could fail one with a unique
                    // violation instead of skipping it.
                    "INSERT INTO ledger (asset, origin, model_id, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
                )
                .bind(&entry.asset)
                .bind(entry.origin)
                .bind(&entry.model_id)
                .bind(&entry.record)
                .execute(c)
                .await
            })
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn last_origin(&self) -> Result<Option<i64>, StoreError> {
        let row = self
            .on_own_conn(async |c| sqlx::query("SELECT MAX(origin) FROM ledger").fetch_one(c).await)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn recorded_assets(&self, origin: i64) -> Result<Vec<String>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query("SELECT DISTINCT asset FROM ledger WHERE origin = $1 ORDER BY asset")
                    .bind(origin)
                    .fetch_all(c)
                    .await
            })
            .await?;
        let mut assets: Vec<String> = rows_of(&rows, |r| r.try_get(0))?;
        // Byte order whatever the database's collation: the ledger binary-searches it.
        assets.sort();
        Ok(assets)
    }

    async fn unscored(&self, limit: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query(
                    "SELECT asset, origin, model_id, record, outcome FROM ledger \
             WHERE outcome IS NULL OR partial <> 0 ORDER BY origin, asset LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(c)
                .await
            })
            .await?;
        rows_of(&rows, entry_of)
    }

    async fn set_outcome(&self, entry: &LedgerEntry, outcome: &str, partial: bool) -> Result<(), StoreError> {
        self.on_own_conn(async |c| {
            sqlx::query(
            // Never over a complete outcome: another replica's pass, scoring the same entry a
            // moment earlier with the hour's last candle, may have completed it.
            "UPDATE ledger SET outcome = $1, partial = $2 WHERE asset = $3 AND origin = $4 AND model_id = $5 \
             AND (outcome IS NULL OR partial <> 0)",
        )
        .bind(outcome)
        .bind(i64::from(partial))
        .bind(&entry.asset)
        .bind(entry.origin)
        .bind(&entry.model_id)
        .execute(c).await
        })
        .await?;
        Ok(())
    }

    async fn scored(&self, from_ms: i64, to_ms: i64) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query(
                    "SELECT asset, origin, model_id, record, outcome FROM ledger WHERE origin >= $1 \
             AND origin <= $2 AND outcome IS NOT NULL ORDER BY origin, asset",
                )
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(c)
                .await
            })
            .await?;
        rows_of(&rows, entry_of)
    }

    async fn record_switch(&self, at: i64, policy: &str, reason: &str) -> Result<bool, StoreError> {
        let done = self
            .on_own_conn(async |c| {
                sqlx::query(
            "INSERT INTO gate_switches (at, policy, reason) VALUES ($1, $2, $3) ON CONFLICT (at) DO NOTHING",
        )
        .bind(at)
        .bind(policy)
        .bind(reason)
        .execute(c).await
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn switches(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query("SELECT at, policy, reason FROM gate_switches ORDER BY at")
                    .fetch_all(c)
                    .await
            })
            .await?;
        rows_of(&rows, |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
    }
}
