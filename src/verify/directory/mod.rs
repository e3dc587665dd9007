//! The customer directory: which person a caller number belongs to, for caller-ID pushes.
//! Either idgate's own table (`store`, managed with `idgate customers` and `/v1/customers`) or
//! the company's CRM over HTTP ([`Crm`]), as `[directory] kind` says. The directory says whom
//! to push to, never that a caller is who they claim: only the eID order does.

mod cache;
mod crm;
pub mod input;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::config::{DirectoryConfig, DirectoryKind};
use crate::identity::{E164, PersonName, PersonalNumber};
use crate::store::{Store, StoreError};
use crate::verify::SetupError;

pub use crm::{Crm, CrmError};
pub use input::{InputError, parse_customer};

/// The person a caller number belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// Whom to push to (and whom a completed order must be for).
    pub personal_number: PersonalNumber,
    /// The name on file, if any.
    pub name: Option<PersonName>,
}

/// Why a lookup gave no answer. The call goes on as `Lookup::Failed` (keypad entry, or the
/// queue with `provider-error`).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The database could not be asked.
    #[error("customer table: {0}")]
    Store(#[from] StoreError),
    /// The CRM could not be asked, or gave an unusable answer.
    #[error(transparent)]
    Crm(#[from] CrmError),
}

/// The configured customer directory. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Directory {
    /// idgate's own `customers` table.
    Database(Store),
    /// The company's CRM.
    Crm(Arc<Crm>),
}

impl Directory {
    /// The directory `config` names; `store` is used for `kind = "database"`.
    pub fn from_config(config: &DirectoryConfig, store: &Store) -> Result<Self, SetupError> {
        Ok(match config.kind {
            DirectoryKind::Database => Directory::Database(store.clone()),
            DirectoryKind::Crm => Directory::Crm(Arc::new(Crm::new(config)?)),
        })
    }

    /// The person `number` belongs to; `None` if it is no customer's.
    pub async fn lookup(&self, number: &E164) -> Result<Option<DirectoryEntry>, LookupError> {
        match self {
            Directory::Database(store) => {
                Ok(store
                    .find_customer_by_number(number)
                    .await?
                    .map(|c| DirectoryEntry {
                        personal_number: c.personal_number,
                        name: c.name,
                    }))
            }
            Directory::Crm(crm) => Ok(crm.lookup(number).await?),
        }
    }
}
