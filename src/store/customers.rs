//! The customer directory (`customers`, `customer_numbers`): which person a caller number
//! belongs to. It says who to push to, never that a number is trusted.

use std::time::SystemTime;

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError, to_millis};
use crate::identity::{E164, PersonName, PersonalNumber};

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

impl Store {
    /// Adds a customer with the phone numbers they call from, in one transaction. Fails with
    /// [`StoreError::Duplicate`] if the person or any number is already registered.
    pub async fn add_customer(
        &self,
        name: &PersonName,
        personal_number: &PersonalNumber,
        numbers: &[E164],
    ) -> Result<Uuid, StoreError> {
        let op = "add_customer";
        let id = Uuid::new_v4();
        let mut tx = self.pool.begin().await.map_err(StoreError::query(op))?;
        sqlx::query(
            "INSERT INTO customers (id, display_name, personal_number, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(name.as_str())
        .bind(personal_number.as_digits())
        .bind(to_millis(SystemTime::now()))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::insert(op, "the personal identity number"))?;
        for number in numbers {
            sqlx::query("INSERT INTO customer_numbers (e164, customer_id) VALUES ($1, $2)")
                .bind(number.as_str())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::insert(op, "a phone number"))?;
        }
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
        let digits: String = row
            .try_get("personal_number")
            .map_err(|_| corrupt("personal_number"))?;
        let personal_number =
            PersonalNumber::parse(&digits).map_err(|_| corrupt("personal_number"))?;
        let name: Option<String> = row
            .try_get("display_name")
            .map_err(|_| corrupt("display_name"))?;
        Ok(Some(Customer {
            id,
            personal_number,
            name: name.map(PersonName::new),
        }))
    }
}
