//! Listing calls for the management API (`GET /v1/calls`): by time, verdict and caller.

use std::time::SystemTime;

use sqlx::Row;
use uuid::Uuid;

use super::calls::{CallRow, CallStatus, call_row};
use super::{Store, StoreError, to_millis};
use crate::identity::Reason;

/// The most rows one request returns.
pub const MAX_LIMIT: u32 = 1000;

/// Which calls to list; every field narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Started at or after.
    pub from: Option<SystemTime>,
    /// Started before.
    pub to: Option<SystemTime>,
    /// The verdict's status.
    pub status: Option<CallStatus>,
    /// The unverified reason.
    pub reason: Option<Reason>,
    /// The caller, as stored (E.164 or `anonymous`).
    pub caller: Option<String>,
    /// At most this many (newest first), capped at [`MAX_LIMIT`]; 0 means 100.
    pub limit: u32,
}

impl Store {
    /// Calls matching `filter`, newest first.
    pub async fn list_calls(&self, filter: &CallFilter) -> Result<Vec<CallRow>, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut param = || {
            n += 1;
            format!("${n}")
        };
        if filter.from.is_some() {
            conditions.push(format!("started_at >= {}", param()));
        }
        if filter.to.is_some() {
            conditions.push(format!("started_at < {}", param()));
        }
        if filter.status.is_some() {
            conditions.push(format!("status = {}", param()));
        }
        if filter.reason.is_some() {
            conditions.push(format!("reason = {}", param()));
        }
        if filter.caller.is_some() {
            conditions.push(format!("caller = {}", param()));
        }
        let limit = match filter.limit {
            0 => 100,
            n => n.min(MAX_LIMIT),
        };
        let sql = format!(
            "SELECT id, sip_call_id, caller, called, route, started_at, answered_at, verdict_at, \
             status, reason, method, transfer_mode, transfer_outcome, ended_at FROM calls{} \
             ORDER BY started_at DESC, id LIMIT {limit}",
            if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            }
        );
        // Only fixed column names and `$n` placeholders were put into `sql`; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        if let Some(from) = filter.from {
            query = query.bind(to_millis(from));
        }
        if let Some(to) = filter.to {
            query = query.bind(to_millis(to));
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(reason) = filter.reason {
            query = query.bind(reason.as_str());
        }
        if let Some(caller) = &filter.caller {
            query = query.bind(caller.clone());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("list_calls"))?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id").map_err(StoreError::query("list_calls"))?;
                let id =
                    Uuid::parse_str(&id).map_err(|_| StoreError::corrupt("calls", "id", &id))?;
                call_row(id, row)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::identity::{CallerId, E164, Method, Verdict};
    use crate::store::NewCall;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_751_371_200 + s)
    }

    async fn call(store: &Store, s: u64, caller: &str, verdict: Option<Verdict>) -> Uuid {
        let id = Uuid::new_v4();
        let caller = match caller {
            "anonymous" => CallerId::Anonymous,
            n => CallerId::Number(E164::parse(n, "SE").unwrap()),
        };
        let row = NewCall {
            id,
            sip_call_id: format!("sip-{s}"),
            caller,
            called: "support".to_owned(),
            route: Some("support".to_owned()),
            transfer_mode: None,
            started_at: at(s),
        };
        store.insert_call(&row).await.unwrap();
        if let Some(v) = verdict {
            store.record_verdict(id, &v, at(s + 1)).await.unwrap();
        }
        id
    }

    async fn calls_are_filtered_and_newest_first(store: Store) {
        let not_found = Verdict::Unverified {
            reason: Reason::NotFound,
            method: None,
        };
        let declined = Verdict::Unverified {
            reason: Reason::Declined,
            method: Some(Method::Bankid),
        };
        let a = call(&store, 10, "+46701234567", Some(not_found)).await;
        let b = call(&store, 20, "anonymous", Some(declined)).await;
        let c = call(&store, 30, "+46701234567", None).await;
        let ids = |rows: Vec<CallRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();

        let all = store.list_calls(&CallFilter::default()).await.unwrap();
        assert_eq!(ids(all), [c, b, a]);
        let filter = CallFilter {
            caller: Some("+46701234567".to_owned()),
            ..CallFilter::default()
        };
        assert_eq!(ids(store.list_calls(&filter).await.unwrap()), [c, a]);
        let filter = CallFilter {
            status: Some(CallStatus::Unverified),
            reason: Some(Reason::Declined),
            ..CallFilter::default()
        };
        assert_eq!(ids(store.list_calls(&filter).await.unwrap()), [b]);
        let filter = CallFilter {
            from: Some(at(15)),
            to: Some(at(30)),
            ..CallFilter::default()
        };
        assert_eq!(ids(store.list_calls(&filter).await.unwrap()), [b]);
        let filter = CallFilter {
            limit: 1,
            ..CallFilter::default()
        };
        assert_eq!(ids(store.list_calls(&filter).await.unwrap()), [c]);
    }

    crate::store::testdb::store_tests!(calls_are_filtered_and_newest_first,);
}
