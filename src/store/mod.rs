//! The database: calls and the customer directory, with sqlx. SQLite now (a file, or memory for
//! tests); PostgreSQL later, so queries stay portable SQL (`$1` placeholders), ids are TEXT
//! UUIDs and timestamps BIGINT unix milliseconds. Migrations are embedded and run at connect.

mod attempts;
mod calls;
mod customers;
mod error;
mod evidence;
#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use attempts::{PushDecision, PushLimits, PushTarget, Refusal};
pub use calls::{CallRow, CallStatus, NewCall, TransferOutcome};
pub use customers::{
    Customer, CustomerError, CustomerKey, CustomerSummary, ImportError, ImportRow, ImportSummary,
    NewCustomer,
};
pub use error::StoreError;

/// How long a connection waits for another writer before giving up with "database is busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on the database. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens the database at `url` (`sqlite://idgate.db`: relative to the working directory,
    /// created if missing, WAL journal) and applies the embedded migrations.
    /// `sqlite::memory:` gives the same as [`Store::memory`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.contains(":memory:") {
            return Self::memory().await;
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|source| StoreError::Open { source })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { source })?;
        Self::migrated(pool).await
    }

    /// A fresh, private in-memory database (tests, demos). One connection that never closes,
    /// so the data lives as long as the store.
    pub async fn memory() -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|source| StoreError::Open { source })?
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { source })?;
        Self::migrated(pool).await
    }

    /// Applies the embedded migrations (`migrations/sqlite`).
    async fn migrated(pool: SqlitePool) -> Result<Store, StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { source })?;
        Ok(Store { pool })
    }

    /// Closes every connection (at shutdown, so the WAL is checkpointed).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A time as stored: unix milliseconds (times before 1970 are stored as 0).
fn to_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A stored time back; `None` if negative (a corrupt row).
fn from_millis(ms: i64) -> Option<SystemTime> {
    let ms = u64::try_from(ms).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}
