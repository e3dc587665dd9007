//! Evidence of completed orders, for the audit trail (BankID's `completionData`).

use std::time::SystemTime;

use uuid::Uuid;

use super::{Record, Store, StoreError, to_millis};
use crate::identity::Method;

impl Store {
    /// Stores a provider's evidence (JSON) for a call.
    pub async fn record_evidence(
        &self,
        call_id: Uuid,
        method: Method,
        data: &str,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        let data = data.to_owned();
        self.commit(Record::Evidence {
            call_id,
            method,
            data,
            at,
        })
        .await
    }

    /// The evidence stored for a call, oldest first: (method, JSON).
    pub async fn evidence_for(&self, call_id: Uuid) -> Result<Vec<(String, String)>, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        sqlx::query_as(
            "SELECT method, data FROM verification_evidence WHERE call_id = $1 ORDER BY recorded_at",
        )
        .bind(call_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("evidence_for"))
    }
}

/// Inserts evidence on the journal's connection.
pub(super) async fn insert_evidence(
    conn: &mut sqlx::AnyConnection,
    call_id: Uuid,
    method: Method,
    data: &str,
    at: SystemTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO verification_evidence (id, call_id, method, recorded_at, data) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(call_id.to_string())
    .bind(method.as_str())
    .bind(to_millis(at))
    .bind(data)
    .execute(conn)
    .await
    .map_err(StoreError::query("record_evidence"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn evidence_is_kept_per_call(store: Store) {
        let call = Uuid::new_v4();
        store
            .record_evidence(
                call,
                Method::Bankid,
                r#"{"signature":"PHNpZz4="}"#,
                SystemTime::now(),
            )
            .await
            .expect("record");
        let stored = store.evidence_for(call).await.expect("read");
        assert_eq!(
            stored,
            vec![(
                "bankid".to_string(),
                r#"{"signature":"PHNpZz4="}"#.to_string()
            )]
        );
        assert!(
            store
                .evidence_for(Uuid::new_v4())
                .await
                .expect("read")
                .is_empty()
        );
    }

    crate::store::testdb::store_tests!(evidence_is_kept_per_call,);
}
