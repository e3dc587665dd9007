//! Importing customers in bulk (a CSV file through `idgate customers import`): all rows in one
//! transaction, every error naming the row's line.

use std::time::SystemTime;

use sqlx::{Any, Transaction};
use uuid::Uuid;

use super::{CustomerError, NewCustomer, attach_numbers};
use crate::store::{Store, StoreError, to_millis};

/// One customer to import and the line of the source file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The line in the source file (1 is the header), for error messages.
    pub line: u64,
    /// The customer.
    pub customer: NewCustomer,
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows read.
    pub rows: usize,
    /// Customers registered by this import.
    pub added: usize,
    /// Rows for customers already registered (their name set, new numbers added).
    pub updated: usize,
    /// Phone numbers registered by this import.
    pub numbers_added: usize,
}

/// Why an import failed. Nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A row could not be imported (a number of another customer, or a database error on it).
    #[error("line {line}: {reason}")]
    Row {
        /// The row's line in the source file.
        line: u64,
        /// Why.
        reason: CustomerError,
    },
    /// The transaction could not be started or committed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Imports `rows` in one transaction: all of them, or none if any fails. A person already
    /// registered keeps their id, gets the row's name, and gains the row's numbers; a number
    /// already registered to another customer fails the import, naming the line.
    pub async fn import_customers(&self, rows: &[ImportRow]) -> Result<ImportSummary, ImportError> {
        let op = "import_customers";
        let mut tx = self.writer.begin().await.map_err(StoreError::query(op))?;
        let mut summary = ImportSummary {
            rows: rows.len(),
            ..ImportSummary::default()
        };
        for row in rows {
            let at_line = |reason| ImportError::Row {
                line: row.line,
                reason,
            };
            let (id, added) = upsert(&mut tx, &row.customer)
                .await
                .map_err(|e| at_line(e.into()))?;
            if added {
                summary.added += 1;
            } else {
                summary.updated += 1;
            }
            summary.numbers_added += attach_numbers(&mut tx, id, &row.customer.numbers)
                .await
                .map_err(at_line)?;
        }
        tx.commit().await.map_err(StoreError::query(op))?;
        Ok(summary)
    }
}

/// Registers the person, or sets the name of the one already registered. Returns their id and
/// whether they are new. A write first, so the transaction holds the write lock from here on.
async fn upsert(
    tx: &mut Transaction<'static, Any>,
    customer: &NewCustomer,
) -> Result<(Uuid, bool), StoreError> {
    let op = "import_customers";
    let new_id = Uuid::new_v4();
    let raw_id: String = sqlx::query_scalar(
        "INSERT INTO customers (id, display_name, personal_number, created_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (personal_number) DO UPDATE SET display_name = excluded.display_name \
         RETURNING id",
    )
    .bind(new_id.to_string())
    .bind(customer.name.as_str())
    .bind(customer.personal_number.as_digits())
    .bind(to_millis(SystemTime::now()))
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::query(op))?;
    let id =
        Uuid::parse_str(&raw_id).map_err(|_| StoreError::corrupt("customers", "id", &raw_id))?;
    Ok((id, id == new_id))
}
