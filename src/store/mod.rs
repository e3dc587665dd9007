//! The database: calls and the customer directory, with sqlx's `Any` driver over SQLite (a
//! file, or memory for tests) or PostgreSQL (several instances sharing one database). Every
//! query is written once in portable SQL (`$1` placeholders); ids are TEXT UUIDs and timestamps
//! BIGINT unix milliseconds. Migrations (`migrations/sqlite`, `migrations/postgres`: the same
//! tables) are embedded and run at connect. PostgreSQL connections are plain TCP in this
//! version (no TLS feature in sqlx): keep the database on a trusted network or a local socket.

mod attempts;
mod audit;
mod call_list;
mod calls;
mod customers;
mod error;
mod evidence;
mod journal;
mod privacy;
pub mod retention;
mod reverifications;
#[cfg(test)]
pub(crate) mod testdb;
#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions};

pub use attempts::{PushDecision, PushLimits, PushTarget, Refusal};
pub use audit::{
    AdminAction, SecurityEvent, SecurityEventKind, VerificationEvent, VerificationEventKind,
};
pub use call_list::{CallFilter, MAX_LIMIT};
pub use calls::{CallRow, CallStatus, NewCall, TransferOutcome};
pub use customers::{
    Customer, CustomerError, CustomerKey, CustomerSummary, ImportError, ImportRow, ImportSummary,
    NewCustomer,
};
pub use error::StoreError;
pub use journal::{JournalStats, Record};
pub use privacy::{
    EraseReport, ExportedAttempt, ExportedCall, ExportedCallRow, ExportedCustomer,
    ExportedEvidence, PersonExport,
};
pub use retention::PurgeReport;
pub use reverifications::ReverificationRow;

/// Set on every SQLite file connection: WAL journal, foreign keys, 5 s waiting for another
/// process's writer before giving up with "database is busy", and `synchronous = NORMAL`: in
/// WAL mode a commit then writes the WAL without an fsync (the WAL is synced at checkpoints).
/// The database cannot be corrupted by a crash; a power cut can lose the last commits before
/// the checkpoint. That is the trade the calls-per-second target needs on a plain disk: with
/// `FULL`, ten small commits per call each wait for a flush (about 200 calls/s on disk).
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL";

/// Most connections one instance opens to PostgreSQL.
const PG_MAX_CONNECTIONS: u32 = 16;

/// Most read connections to a SQLite file (reads run in parallel under WAL).
const SQLITE_READERS: u32 = 8;

/// Which database a store talks to (the few places where the SQL differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database. Cheap to clone (connection pools).
///
/// Writes go through `writer`. For a SQLite file that is a pool of ONE connection: SQLite has
/// one writer at a time anyway, and with several writing connections they contend for the
/// lock through SQLite's busy handler, which sleeps 1, 2, 5, 10 … 100 ms between tries; that
/// sleeping, not the work, made the long tail at a few hundred calls per second. One writing
/// connection turns the contention into a first-come, first-served wait for the pool. Reads
/// use `pool` (several connections, running beside the writer under WAL). For PostgreSQL and
/// the in-memory database both are the same pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
    /// The call path's writes, group-committed on `writer` (see [`journal`]).
    journal: journal::Journal,
}

impl Store {
    /// Opens the database at `url` and applies the embedded migrations.
    ///
    /// - `sqlite://idgate.db`: relative to the working directory, created if missing, WAL
    ///   journal; `sqlite::memory:` gives the same as [`Store::memory`].
    /// - `postgres://user@host:5432/db` (or `postgresql://`): the database must exist; plain
    ///   TCP (no TLS in this version).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::connect_postgres(url).await;
        }
        if url.contains(":memory:") {
            return Self::memory().await;
        }
        // Parsed as SQLite first, so a bad SQLite URL fails here with SQLite's own message.
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|source| StoreError::Open { source })?
            .create_if_missing(true);
        let any = AnyConnectOptions::from_str(options.to_url_lossy().as_str())
            .map_err(|source| StoreError::Open { source })?;
        // The writer first: it creates the file and runs the migrations before a reader opens.
        let writer = Self::sqlite_file_pool(1).connect_with(any.clone()).await;
        let writer = writer.map_err(|source| StoreError::Open { source })?;
        Self::migrate(&writer, Backend::Sqlite).await?;
        let pool = Self::sqlite_file_pool(SQLITE_READERS)
            .connect_with(any)
            .await
            .map_err(|source| StoreError::Open { source })?;
        Ok(Store {
            pool,
            journal: journal::Journal::start(writer.clone(), Backend::Sqlite),
            writer,
            backend: Backend::Sqlite,
        })
    }

    /// Pool options for a SQLite file: `max` connections, each set up with [`SQLITE_PRAGMAS`],
    /// kept open (opening one costs a file open and the pragmas: tens of milliseconds under
    /// load, which showed as slow answers in the first second after a start).
    fn sqlite_file_pool(max: u32) -> AnyPoolOptions {
        AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(max)
            .idle_timeout(None)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(SQLITE_PRAGMAS).execute(conn).await?;
                    Ok(())
                })
            })
    }

    /// A fresh, private in-memory SQLite database (tests, demos). One connection that never
    /// closes, so the data lives as long as the store.
    pub async fn memory() -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str("sqlite::memory:")
            .map_err(|source| StoreError::Open { source })?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("PRAGMA foreign_keys = ON")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { source })?;
        Self::migrated(pool, Backend::Sqlite).await
    }

    /// Connects to PostgreSQL (the URL's query may carry `options=-c search_path=...`).
    async fn connect_postgres(url: &str) -> Result<Store, StoreError> {
        let options =
            AnyConnectOptions::from_str(url).map_err(|source| StoreError::Open { source })?;
        let pool = AnyPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            // Not sqlx's 30 s: with the database away, the journal learns it and tells its
            // waiters (push checks) within seconds; records are kept and retried anyway.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { source })?;
        Self::migrated(pool, Backend::Postgres).await
    }

    /// Applies the embedded migrations, then builds the store on `pool` alone.
    async fn migrated(pool: AnyPool, backend: Backend) -> Result<Store, StoreError> {
        Self::migrate(&pool, backend).await?;
        Ok(Store {
            journal: journal::Journal::start(pool.clone(), backend),
            writer: pool.clone(),
            pool,
            backend,
        })
    }

    /// Applies the embedded migrations of the backend.
    async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator
            .run(pool)
            .await
            .map_err(|source| StoreError::Migrate { source })
    }

    /// Closes every connection (at shutdown, so the WAL is checkpointed).
    /// Queued writes are committed first.
    pub async fn close(&self) {
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "queued database writes not committed at shutdown");
        }
        self.pool.close().await;
        self.writer.close().await;
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
