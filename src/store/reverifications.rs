//! The `reverifications` table: "verify again" requests from agents and their results, for the
//! call's audit trail (who asked, when, what came of it; never the person).

use std::time::SystemTime;

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError, from_millis, to_millis};
use crate::identity::Verdict;

/// One re-verification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverificationRow {
    /// The row's id.
    pub id: Uuid,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: SystemTime,
    /// When the result came, if it did.
    pub completed_at: Option<SystemTime>,
    /// `verified` / `unverified`, once completed.
    pub status: Option<String>,
    /// The reason, when unverified.
    pub reason: Option<String>,
    /// The method, once completed.
    pub method: Option<String>,
}

impl ReverificationRow {
    /// As the API and GDPR exports show it (RFC 3339 times).
    pub fn to_json(&self) -> serde_json::Value {
        use crate::timefmt::rfc3339_millis;
        serde_json::json!({
            "requested_by": self.requested_by,
            "requested_at": rfc3339_millis(self.requested_at),
            "completed_at": self.completed_at.map(rfc3339_millis),
            "status": self.status,
            "reason": self.reason,
            "method": self.method,
        })
    }
}

impl Store {
    /// Records that `requested_by` asked to verify the caller of `call_id` again; returns the
    /// row's id for [`Store::finish_reverification`].
    pub async fn begin_reverification(
        &self,
        call_id: Uuid,
        requested_by: &str,
        at: SystemTime,
    ) -> Result<Uuid, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO reverifications (id, call_id, requested_by, requested_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(call_id.to_string())
        .bind(requested_by)
        .bind(to_millis(at))
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("begin_reverification"))?;
        Ok(id)
    }

    /// Records a re-verification's result (status, reason, method: not the person).
    pub async fn finish_reverification(
        &self,
        id: Uuid,
        verdict: &Verdict,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE reverifications SET completed_at = $1, status = $2, reason = $3, method = $4 \
             WHERE id = $5 AND completed_at IS NULL",
        )
        .bind(to_millis(at))
        .bind(verdict.status_str())
        .bind(verdict.reason().map(|r| r.as_str()))
        .bind(verdict.method().map(|m| m.as_str()))
        .bind(id.to_string())
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("finish_reverification"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::RowNotFound {
                op: "finish_reverification",
                what: "open reverification",
                id,
            });
        }
        Ok(())
    }

    /// A call's re-verifications, oldest first.
    pub async fn reverifications_for(
        &self,
        call_id: Uuid,
    ) -> Result<Vec<ReverificationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, requested_by, requested_at, completed_at, status, reason, method \
             FROM reverifications WHERE call_id = $1 ORDER BY requested_at, id",
        )
        .bind(call_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reverifications_for"))?;
        rows.iter()
            .map(|row| {
                let id: String = row
                    .try_get("id")
                    .map_err(StoreError::query("reverifications_for"))?;
                let corrupt = |column| StoreError::corrupt("reverifications", column, &id);
                let time = |column| -> Result<Option<SystemTime>, StoreError> {
                    match row.try_get::<Option<i64>, _>(column) {
                        Ok(None) => Ok(None),
                        Ok(Some(ms)) => from_millis(ms).map(Some).ok_or_else(|| corrupt(column)),
                        Err(e) => Err(StoreError::query("reverifications_for")(e)),
                    }
                };
                let requested_at = time("requested_at")?.ok_or_else(|| corrupt("requested_at"))?;
                let get = |e| StoreError::query("reverifications_for")(e);
                Ok(ReverificationRow {
                    id: Uuid::parse_str(&id).map_err(|_| corrupt("id"))?,
                    requested_by: row.try_get("requested_by").map_err(get)?,
                    requested_at,
                    completed_at: time("completed_at")?,
                    status: row.try_get("status").map_err(get)?,
                    reason: row.try_get("reason").map_err(get)?,
                    method: row.try_get("method").map_err(get)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Method, PersonalNumber, Reason, VerifiedPerson};
    use std::time::{Duration, UNIX_EPOCH};

    async fn a_reverification_is_recorded_without_the_person(store: Store) {
        let call = Uuid::new_v4();
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_751_371_200 + s);
        let first = store
            .begin_reverification(call, "agent1", t(0))
            .await
            .expect("begin");
        let verified = Verdict::Verified {
            method: Method::Bankid,
            person: VerifiedPerson {
                personal_number: PersonalNumber::parse("191212121212").unwrap(),
                name: None,
            },
        };
        store
            .finish_reverification(first, &verified, t(5))
            .await
            .expect("finish");
        let second = store
            .begin_reverification(call, "token", t(10))
            .await
            .expect("begin");
        let declined = Verdict::Unverified {
            reason: Reason::Declined,
            method: Some(Method::Bankid),
        };
        store
            .finish_reverification(second, &declined, t(12))
            .await
            .expect("finish");
        assert!(
            store
                .finish_reverification(second, &verified, t(13))
                .await
                .is_err(),
            "a result is recorded once"
        );

        let rows = store.reverifications_for(call).await.expect("read");
        let summary: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.requested_by.as_str(),
                    r.status.as_deref(),
                    r.reason.as_deref(),
                    r.method.as_deref(),
                    r.completed_at,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("agent1", Some("verified"), None, Some("bankid"), Some(t(5))),
                (
                    "token",
                    Some("unverified"),
                    Some("declined"),
                    Some("bankid"),
                    Some(t(12))
                ),
            ]
        );
        assert_eq!(rows[0].requested_at, t(0));
        assert!(
            store
                .reverifications_for(Uuid::new_v4())
                .await
                .unwrap()
                .is_empty()
        );
    }

    crate::store::testdb::store_tests!(a_reverification_is_recorded_without_the_person,);
}
