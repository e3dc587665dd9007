//! Store errors: which operation failed, and whether a retry may help. No variant carries
//! personal data (sqlx errors name tables and constraints, never bound values).

use uuid::Uuid;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (bad URL, unreadable file or directory).
    #[error("cannot open the database: {source}")]
    Open {
        /// What sqlx said.
        source: sqlx::Error,
    },
    /// The embedded migrations could not be applied.
    #[error("cannot migrate the database: {source}")]
    Migrate {
        /// What sqlx said.
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("{op}: {source}")]
    Query {
        /// The store operation (`insert_call`, ...).
        op: &'static str,
        /// What sqlx said.
        source: sqlx::Error,
    },
    /// A unique value (a customer's number or personal identity number) is already taken.
    #[error("{op}: {what} is already registered")]
    Duplicate {
        /// The store operation.
        op: &'static str,
        /// What is taken, without the value (`a phone number`).
        what: &'static str,
    },
    /// The call does not exist.
    #[error("{op}: no call {id}")]
    CallNotFound {
        /// The store operation.
        op: &'static str,
        /// idgate's call id.
        id: Uuid,
    },
    /// A row the operation needs does not exist (or is already finished).
    #[error("{op}: no {what} {id}")]
    RowNotFound {
        /// The store operation.
        op: &'static str,
        /// What was looked for (`open reverification`).
        what: &'static str,
        /// Its id.
        id: Uuid,
    },
    /// A stored value does not parse back (edited by hand, or a bug): never guessed at.
    #[error("{table}.{column} in row {row} is not valid")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The row's id.
        row: String,
    },
    /// The database did not answer (or was busy) when a write that someone waits for was due;
    /// queued records are kept and written later (see `store::journal`).
    #[error("{op}: the database is unavailable ({detail})")]
    Unavailable {
        /// The store operation.
        op: &'static str,
        /// What the database or driver said.
        detail: String,
    },
    /// The journal's writer task has stopped (idgate is shutting down).
    #[error("{op}: the database writer has stopped")]
    WriterStopped {
        /// The store operation.
        op: &'static str,
    },
    /// A write in a batch failed; the journal retries each write alone (internal).
    #[error("a write in the batch failed")]
    BatchSpoiled,
    /// A value handed to the store is not one it records.
    #[error("{field}: {value:?} is not one of {expected}")]
    InvalidValue {
        /// The column.
        field: &'static str,
        /// The value given (never personal data: only tokens are checked this way).
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

impl StoreError {
    /// Whether the same operation may succeed if retried (busy database, I/O, pool timeout).
    pub fn is_transient(&self) -> bool {
        let source = match self {
            StoreError::Open { source } | StoreError::Query { source, .. } => source,
            StoreError::Unavailable { .. } => return true,
            _ => return false,
        };
        match source {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|c| transient_code(&c)),
            _ => false,
        }
    }

    /// Wraps a query error of operation `op`.
    pub(crate) fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| StoreError::Query { op, source }
    }

    /// Wraps an insert's error, turning a unique violation into [`StoreError::Duplicate`].
    pub(crate) fn insert(op: &'static str, what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| match &source {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Duplicate { op, what }
            }
            _ => StoreError::Query { op, source },
        }
    }

    /// A column that does not parse back.
    pub(crate) fn corrupt(table: &'static str, column: &'static str, row: &str) -> Self {
        StoreError::Corrupt {
            table,
            column,
            row: row.to_owned(),
        }
    }
}

/// Whether a database error code means "try again". PostgreSQL codes are five-character
/// SQLSTATEs: connection exceptions (class 08), serialization failure, deadlock, lock not
/// available, too many connections, administrator shutdown. SQLite codes are numbers of at most
/// four digits: SQLITE_BUSY (5) and SQLITE_LOCKED (6), including extended codes.
fn transient_code(code: &str) -> bool {
    if code.len() == 5 {
        return code.starts_with("08")
            || matches!(code, "40001" | "40P01" | "55P03" | "53300" | "57P01");
    }
    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}
