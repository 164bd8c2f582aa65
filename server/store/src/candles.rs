//! Hourly candles per asset ([`CandleStore`]) and each asset's summary (first and last candle,
//! count), kept in the same transaction as each insert.

use std::future::Future;

use sqlx::Row;
use volcast_core::candles::Candle;
use volcast_core::time::HOUR_MS;

use crate::{Store, StoreError, rows_of, values_clause};

/// Candles per `INSERT` statement (8 parameters each; SQLite allows 32,766 per statement and
/// PostgreSQL 65,535).
const INSERT_BATCH: usize = 500;

/// One stored asset: its first and last candle and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRange {
    /// Asset id, e.g. `BTCUSDT`.
    pub asset: String,
    /// Open time of the first candle, Unix ms.
    pub first_open_time: i64,
    /// Open time of the last candle, Unix ms.
    pub last_open_time: i64,
    /// Candles stored.
    pub count: i64,
}

/// Market data in the core's terms: hourly candles per asset.
pub trait CandleStore {
    /// Stores `candles` of `asset` (any order) in one transaction, skipping hours already stored
    /// (the stored candle is kept); returns how many were new. Refuses the whole batch, writing
    /// nothing, when a candle has a non-finite number or an open time off the hour.
    fn insert_candles(
        &self,
        asset: &str,
        candles: &[Candle],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every asset with candles, by id (from the per-asset summary every insert keeps).
    fn assets(&self) -> impl Future<Output = Result<Vec<AssetRange>, StoreError>> + Send;

    /// `asset`'s candles with open time in `[from_ms, to_ms]`, oldest first, at most `limit`.
    fn candles(
        &self,
        asset: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Candle>, StoreError>> + Send;

    /// How many candles `asset` has with open time in `[from_ms, to_ms]`.
    fn count(
        &self,
        asset: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// `asset`'s last `n` candles with open time at or before `to_ms`, oldest first (what a
    /// forecast at the latest stored hour reads).
    fn latest_candles(
        &self,
        asset: &str,
        to_ms: i64,
        n: u32,
    ) -> impl Future<Output = Result<Vec<Candle>, StoreError>> + Send;

    /// Every asset's last candle open time, by id (cheaper than [`CandleStore::assets`]: no count).
    fn last_open_times(&self) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;

    /// One asset's range and count, `None` when nothing of it is stored (a key lookup: what an
    /// answer by asset checks first).
    fn asset(&self, asset: &str) -> impl Future<Output = Result<Option<AssetRange>, StoreError>> + Send;

    /// How many candles each asset has with open time in `[from_ms, to_ms]`, by id (assets with
    /// none are left out).
    fn counts(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;
}

/// Refuses what the store must never hold.
fn check(asset: &str, c: &Candle) -> Result<(), StoreError> {
    let fields = [c.open, c.high, c.low, c.close, c.volume, c.quote_volume];
    let message = if c.open_time.rem_euclid(HOUR_MS) != 0 {
        Some("open time is not on the hour".to_owned())
    } else if fields.iter().any(|x| !x.is_finite()) {
        Some("a price or volume is not a finite number".to_owned())
    } else {
        None
    };
    message.map_or(Ok(()), |message| {
        Err(StoreError::Candle {
            asset: asset.to_owned(),
            open_time: c.open_time,
            message,
        })
    })
}

fn candle_of(row: &sqlx::any::AnyRow) -> Result<Candle, sqlx::Error> {
    Ok(Candle {
        open_time: row.try_get(0)?,
        open: row.try_get(1)?,
        high: row.try_get(2)?,
        low: row.try_get(3)?,
        close: row.try_get(4)?,
        volume: row.try_get(5)?,
        quote_volume: row.try_get(6)?,
    })
}

impl CandleStore for Store {
    async fn insert_candles(&self, asset: &str, candles: &[Candle]) -> Result<u64, StoreError> {
        for c in candles {
            check(asset, c)?;
        }
        // In time order whatever the caller's: two writers of overlapping hours then take the
        // rows' locks in the same order, never each waiting on the other (PostgreSQL's deadlock).
        let mut candles = std::borrow::Cow::Borrowed(candles);
        if !candles.is_sorted_by_key(|c| c.open_time) {
            candles.to_mut().sort_by_key(|c| c.open_time);
        }
        self.on_own_conn(async |c| {
            let mut tx = sqlx::Connection::begin(c).await?;
            let mut inserted = 0;
            for chunk in candles.chunks(INSERT_BATCH) {
                let sql = format!(
                    "INSERT INTO candles (asset, open_time, open, high, low, close, volume, quote_volume) \
                     VALUES {} ON CONFLICT (asset, open_time) DO NOTHING",
                    values_clause(self.backend, chunk.len(), 8)
                );
                let mut query = sqlx::query(&sql);
                for c in chunk {
                    query = query
                        .bind(asset)
                        .bind(c.open_time)
                        .bind(c.open)
                        .bind(c.high)
                        .bind(c.low)
                        .bind(c.close)
                        .bind(c.volume)
                        .bind(c.quote_volume);
                }
                inserted += query.execute(&mut *tx).await?.rows_affected();
            }
            if inserted > 0 {
                // Hours skipped as already stored lie within the stored range, so the batch's
                // bounds (its first and last candles, sorted above) are the new candles' bounds
                // as far as the range goes.
                let first = candles.first().map_or(0, |c| c.open_time);
                let last = candles.last().map_or(0, |c| c.open_time);
                sqlx::query(
                    "INSERT INTO assets (asset, first_open_time, last_open_time, candles) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (asset) DO UPDATE SET \
                     first_open_time = CASE WHEN excluded.first_open_time < assets.first_open_time \
                         THEN excluded.first_open_time ELSE assets.first_open_time END, \
                     last_open_time = CASE WHEN excluded.last_open_time > assets.last_open_time \
                         THEN excluded.last_open_time ELSE assets.last_open_time END, \
                     candles = assets.candles + excluded.candles",
                )
                .bind(asset)
                .bind(first)
                .bind(last)
                .bind(i64::try_from(inserted).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(inserted)
        })
        .await
        .map_err(StoreError::from)
    }

    async fn assets(&self) -> Result<Vec<AssetRange>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query(
                    "SELECT asset, first_open_time, last_open_time, candles FROM assets ORDER BY asset",
                )
                .fetch_all(c)
                .await
            })
            .await?;
        let mut ranges = rows_of(&rows, range_of)?;
        // Byte order whatever the database's collation (PostgreSQL's follows its locale):
        // callers binary-search these lists.
        ranges.sort_by(|a, b| a.asset.cmp(&b.asset));
        Ok(ranges)
    }

    async fn candles(
        &self,
        asset: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<Candle>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query(
                    "SELECT open_time, open, high, low, close, volume, quote_volume FROM candles \
             WHERE asset = $1 AND open_time >= $2 AND open_time <= $3 ORDER BY open_time LIMIT $4",
                )
                .bind(asset)
                .bind(from_ms)
                .bind(to_ms)
                .bind(i64::from(limit))
                .fetch_all(c)
                .await
            })
            .await?;
        rows_of(&rows, candle_of)
    }

    async fn count(&self, asset: &str, from_ms: i64, to_ms: i64) -> Result<i64, StoreError> {
        let row = self
            .on_own_conn(async |c| {
                sqlx::query(
                    "SELECT COUNT(*) FROM candles WHERE asset = $1 AND open_time >= $2 AND open_time <= $3",
                )
                .bind(asset)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_one(c)
                .await
            })
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn latest_candles(&self, asset: &str, to_ms: i64, n: u32) -> Result<Vec<Candle>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query(
                    "SELECT open_time, open, high, low, close, volume, quote_volume FROM candles \
             WHERE asset = $1 AND open_time <= $2 ORDER BY open_time DESC LIMIT $3",
                )
                .bind(asset)
                .bind(to_ms)
                .bind(i64::from(n))
                .fetch_all(c)
                .await
            })
            .await?;
        let mut out = rows.iter().map(candle_of).collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    async fn last_open_times(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query("SELECT asset, last_open_time FROM assets ORDER BY asset")
                    .fetch_all(c)
                    .await
            })
            .await?;
        Ok(by_asset(pairs(&rows)?))
    }

    async fn counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        // One index range per asset (the key starts with the asset), not a scan of every candle.
        let rows = self
            .on_own_conn(async |c| {
                sqlx::query(
                    "SELECT asset, (SELECT COUNT(*) FROM candles c WHERE c.asset = a.asset \
             AND c.open_time >= $1 AND c.open_time <= $2) AS n FROM assets a ORDER BY asset",
                )
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(c)
                .await
            })
            .await?;
        Ok(by_asset(
            pairs(&rows)?.into_iter().filter(|(_, n)| *n > 0).collect(),
        ))
    }

    async fn asset(&self, asset: &str) -> Result<Option<AssetRange>, StoreError> {
        let row = self
            .on_own_conn(async |c| {
                sqlx::query(
                    "SELECT asset, first_open_time, last_open_time, candles FROM assets WHERE asset = $1",
                )
                .bind(asset)
                .fetch_optional(c)
                .await
            })
            .await?;
        row.as_ref().map(range_of).transpose().map_err(StoreError::from)
    }
}

fn range_of(r: &sqlx::any::AnyRow) -> Result<AssetRange, sqlx::Error> {
    Ok(AssetRange {
        asset: r.try_get(0)?,
        first_open_time: r.try_get(1)?,
        last_open_time: r.try_get(2)?,
        count: r.try_get(3)?,
    })
}

/// `pairs` in the byte order of their assets, whatever the database's collation (PostgreSQL's
/// follows its locale, SQLite's is binary): callers binary-search these lists.
fn by_asset<T>(mut pairs: Vec<(String, T)>) -> Vec<(String, T)> {
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// Rows of (asset, number).
fn pairs(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(String, i64)>, StoreError> {
    rows_of(rows, |r| Ok((r.try_get(0)?, r.try_get(1)?)))
}
