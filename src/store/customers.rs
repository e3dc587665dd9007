//! The customer directory (`customers`, `customer_numbers`): which person a caller number
//! belongs to. It says who to push to, never that a number is trusted.
//!
//! One customer per personal identity number, one customer per phone number. Adding and
//! importing are single transactions; importing updates a person already registered (their
//! name, and any new numbers), so importing the same file twice changes nothing.

mod import;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::{Store, StoreError, to_millis};
use crate::identity::{E164, PersonName, PersonalNumber};

pub use import::{ImportError, ImportRow, ImportSummary};

/// A directory entry found by caller number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// The customer's id.
    pub id: Uuid,
    /// Whom to push to (and whom a completed order must be for).
    pub personal_number: PersonalNumber,
    /// The name on file, if any.
    pub name: Option<PersonName>,
}

/// A customer to register: the person and the numbers they call from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    /// Whom to push to.
    pub personal_number: PersonalNumber,
    /// The name on file.
    pub name: PersonName,
    /// The numbers they call from (at least one, no repeats).
    pub numbers: Vec<E164>,
}

/// A customer as listed: the personal identity number only masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSummary {
    /// The customer's id.
    pub id: Uuid,
    /// The personal identity number, masked (`19800101-****`).
    pub masked_personal_number: String,
    /// The name on file, if any.
    pub name: Option<PersonName>,
    /// The numbers they call from, in order.
    pub numbers: Vec<E164>,
}

/// Which customer an operation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerKey {
    /// By id.
    Id(Uuid),
    /// By personal identity number.
    PersonalNumber(PersonalNumber),
}

/// Why a customer could not be registered. No variant carries a personal identity number or a
/// phone number.
#[derive(Debug, thiserror::Error)]
pub enum CustomerError {
    /// The person is already registered (adding only; importing updates them instead).
    #[error("the personal identity number is already registered")]
    PersonTaken,
    /// A phone number already belongs to another customer.
    #[error("phone number {position} is already registered to another customer")]
    NumberTaken {
        /// Which of the customer's numbers, from 1.
        position: usize,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Adds a customer with the phone numbers they call from, in one transaction. Fails with
    /// [`StoreError::Duplicate`] if the person or any number is already registered.
    pub async fn add_customer(
        &self,
        name: &PersonName,
        personal_number: &PersonalNumber,
        numbers: &[E164],
    ) -> Result<Uuid, StoreError> {
        let customer = NewCustomer {
            personal_number: personal_number.clone(),
            name: name.clone(),
            numbers: numbers.to_vec(),
        };
        self.insert_customer(&customer).await.map_err(|e| {
            let what = match e {
                CustomerError::Store(e) => return e,
                CustomerError::PersonTaken => "the personal identity number",
                CustomerError::NumberTaken { .. } => "a phone number",
            };
            StoreError::Duplicate {
                op: "add_customer",
                what,
            }
        })
    }

    /// Registers a new customer, in one transaction: nothing is kept if the person or any
    /// number is already registered.
    pub async fn insert_customer(&self, customer: &NewCustomer) -> Result<Uuid, CustomerError> {
        let op = "insert_customer";
        let id = Uuid::new_v4();
        let mut tx = self.writer.begin().await.map_err(StoreError::query(op))?;
        sqlx::query(
            "INSERT INTO customers (id, display_name, personal_number, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(customer.name.as_str())
        .bind(customer.personal_number.as_digits())
        .bind(to_millis(SystemTime::now()))
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::insert(op, "person")(e) {
            StoreError::Duplicate { .. } => CustomerError::PersonTaken,
            other => CustomerError::Store(other),
        })?;
        attach_numbers(&mut tx, id, &customer.numbers).await?;
        tx.commit().await.map_err(StoreError::query(op))?;
        Ok(id)
    }

    /// The customer a caller number belongs to, if any. A stored value that does not parse back
    /// is [`StoreError::Corrupt`].
    pub async fn find_customer_by_number(
        &self,
        number: &E164,
    ) -> Result<Option<Customer>, StoreError> {
        let op = "find_customer_by_number";
        let row = sqlx::query(
            "SELECT c.id, c.display_name, c.personal_number \
             FROM customer_numbers n JOIN customers c ON c.id = n.customer_id \
             WHERE n.e164 = $1",
        )
        .bind(number.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let raw_id: String = row.try_get("id").map_err(StoreError::query(op))?;
        let corrupt = |column| StoreError::corrupt("customers", column, &raw_id);
        let id = Uuid::parse_str(&raw_id).map_err(|_| corrupt("id"))?;
        let personal_number = personal_number_of(&row, &raw_id)?;
        let name: Option<String> = row
            .try_get("display_name")
            .map_err(|_| corrupt("display_name"))?;
        Ok(Some(Customer {
            id,
            personal_number,
            name: name.map(PersonName::new),
        }))
    }

    /// Every customer with their numbers, oldest first, personal identity numbers masked.
    pub async fn list_customers(&self) -> Result<Vec<CustomerSummary>, StoreError> {
        let op = "list_customers";
        let rows = sqlx::query(
            "SELECT c.id, c.display_name, c.personal_number, n.e164 \
             FROM customers c LEFT JOIN customer_numbers n ON n.customer_id = c.id \
             ORDER BY c.created_at, c.id, n.e164",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        let mut list: Vec<CustomerSummary> = Vec::new();
        for row in rows {
            let raw_id: String = row.try_get("id").map_err(StoreError::query(op))?;
            let number: Option<String> = row.try_get("e164").map_err(StoreError::query(op))?;
            let number = number
                .map(|n| E164::parse(&n, "SE"))
                .transpose()
                .map_err(|_| StoreError::corrupt("customer_numbers", "e164", &raw_id))?;
            match list.last_mut() {
                Some(last) if last.id.to_string() == raw_id => last.numbers.extend(number),
                _ => list.push(summary(&row, &raw_id, number)?),
            }
        }
        Ok(list)
    }

    /// Removes a customer and their numbers. `false` if there was no such customer.
    pub async fn remove_customer(&self, key: &CustomerKey) -> Result<bool, StoreError> {
        let query = match key {
            CustomerKey::Id(id) => {
                sqlx::query("DELETE FROM customers WHERE id = $1").bind(id.to_string())
            }
            CustomerKey::PersonalNumber(p) => {
                sqlx::query("DELETE FROM customers WHERE personal_number = $1")
                    .bind(p.as_digits().to_owned())
            }
        };
        let done = query
            .execute(&self.writer)
            .await
            .map_err(StoreError::query("remove_customer"))?;
        Ok(done.rows_affected() > 0)
    }
}

/// The first row of a customer in [`Store::list_customers`].
fn summary(
    row: &AnyRow,
    raw_id: &str,
    number: Option<E164>,
) -> Result<CustomerSummary, StoreError> {
    let corrupt = |column| StoreError::corrupt("customers", column, raw_id);
    let id = Uuid::parse_str(raw_id).map_err(|_| corrupt("id"))?;
    let name: Option<String> = row
        .try_get("display_name")
        .map_err(|_| corrupt("display_name"))?;
    Ok(CustomerSummary {
        id,
        masked_personal_number: personal_number_of(row, raw_id)?.masked(),
        name: name.map(PersonName::new),
        numbers: number.into_iter().collect(),
    })
}

/// The `personal_number` column of a `customers` row, parsed back.
fn personal_number_of(row: &AnyRow, raw_id: &str) -> Result<PersonalNumber, StoreError> {
    let corrupt = || StoreError::corrupt("customers", "personal_number", raw_id);
    let digits: String = row.try_get("personal_number").map_err(|_| corrupt())?;
    PersonalNumber::parse(&digits).map_err(|_| corrupt())
}

/// Gives customer `id` each of `numbers`. A number already theirs is kept as is; one that
/// belongs to someone else is [`CustomerError::NumberTaken`]. Returns how many were new.
async fn attach_numbers(
    tx: &mut Transaction<'static, Any>,
    id: Uuid,
    numbers: &[E164],
) -> Result<usize, CustomerError> {
    let op = "attach_numbers";
    let mut added = 0;
    for (i, number) in numbers.iter().enumerate() {
        let done = sqlx::query(
            "INSERT INTO customer_numbers (e164, customer_id) VALUES ($1, $2) \
             ON CONFLICT (e164) DO NOTHING",
        )
        .bind(number.as_str())
        .bind(id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query(op))?;
        if done.rows_affected() > 0 {
            added += 1;
            continue;
        }
        let owner: String =
            sqlx::query_scalar("SELECT customer_id FROM customer_numbers WHERE e164 = $1")
                .bind(number.as_str())
                .fetch_one(&mut **tx)
                .await
                .map_err(StoreError::query(op))?;
        if owner != id.to_string() {
            return Err(CustomerError::NumberTaken { position: i + 1 });
        }
    }
    Ok(added)
}
