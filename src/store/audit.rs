//! The audit trail beside `calls`: `verification_events` (what each verification did over
//! time), `security_events` (spoofing attempts and fraud signals) and `admin_actions` (what
//! administrators did). No column holds a personal identity number: details are tokens, header
//! names, the provider's order reference and customer ids.

use std::net::IpAddr;
use std::time::SystemTime;

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Record, Store, StoreError, from_millis, to_millis};
use crate::identity::Method;

/// `verification_events.kind`: one step of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerificationEventKind {
    /// The order was started (detail: the provider's order reference, when it has one).
    Started,
    /// The provider reported a new hint (detail: the hint, e.g. `call-confirm`).
    Hint,
    /// The provider vouched for a person (the flow may still decide `mismatch`).
    Completed,
    /// The order ended without a person, or was never sent (detail: the reason token).
    Failed,
    /// idgate cancelled the order (the caller hung up, the call ended).
    Cancelled,
}

impl VerificationEventKind {
    /// Every kind, as stored.
    pub const ALL: [VerificationEventKind; 5] = [
        VerificationEventKind::Started,
        VerificationEventKind::Hint,
        VerificationEventKind::Completed,
        VerificationEventKind::Failed,
        VerificationEventKind::Cancelled,
    ];

    /// The stored token.
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationEventKind::Started => "started",
            VerificationEventKind::Hint => "hint",
            VerificationEventKind::Completed => "completed",
            VerificationEventKind::Failed => "failed",
            VerificationEventKind::Cancelled => "cancelled",
        }
    }

    /// Parses the stored token back.
    pub fn parse(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == token)
    }
}

/// One step of a verification, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationEvent {
    /// idgate's call id.
    pub call_id: Uuid,
    /// When it happened (millisecond precision).
    pub at: SystemTime,
    /// The provider.
    pub method: Method,
    /// What happened.
    pub kind: VerificationEventKind,
    /// The order reference, hint or reason token; never a personal identity number.
    pub detail: Option<String>,
}

/// `security_events.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityEventKind {
    /// Identity-prefixed headers arrived from the caller side and were removed.
    SpoofedHeaders,
    /// The person said in the app that they are not in a call with us (BankID
    /// `userDeclinedCall`): a fraud signal.
    NotInCall,
    /// A request from a source that is not a trusted peer.
    UntrustedSource,
}

impl SecurityEventKind {
    /// Every kind, as stored.
    pub const ALL: [SecurityEventKind; 3] = [
        SecurityEventKind::SpoofedHeaders,
        SecurityEventKind::NotInCall,
        SecurityEventKind::UntrustedSource,
    ];

    /// The stored token.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityEventKind::SpoofedHeaders => "spoofed-headers",
            SecurityEventKind::NotInCall => "not-in-call",
            SecurityEventKind::UntrustedSource => "untrusted-source",
        }
    }

    /// Parses the stored token back.
    pub fn parse(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == token)
    }
}

/// A spoofing attempt or fraud signal, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// When it happened.
    pub at: SystemTime,
    /// idgate's call id, when there is a call.
    pub call_id: Option<Uuid>,
    /// What happened.
    pub kind: SecurityEventKind,
    /// Header names only (`X-Identity-Status, X-Identity-Token`), never values.
    pub detail: Option<String>,
    /// The source address of the request, if known.
    pub source: Option<IpAddr>,
}

/// Something an administrator did, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAction {
    /// When.
    pub at: SystemTime,
    /// Who: `cli`, `api-token`, or `retention` (the background purge).
    pub actor: String,
    /// What: `customer-add`, `customer-remove`, `customer-import`, `privacy-export`,
    /// `privacy-erase`, `privacy-purge`.
    pub action: String,
    /// On what, without personal numbers (`customer 6f1c...`, counts).
    pub target: String,
}

impl AdminAction {
    /// An action by `actor` now.
    pub fn now(actor: &str, action: &str, target: String) -> Self {
        Self {
            at: SystemTime::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target,
        }
    }
}

impl Store {
    /// Records one step of a verification.
    pub async fn record_verification_event(
        &self,
        event: &VerificationEvent,
    ) -> Result<(), StoreError> {
        self.commit(Record::VerificationEvent(event.clone())).await
    }

    /// A call's verification events, in the order they happened.
    pub async fn verification_events_for(
        &self,
        call_id: Uuid,
    ) -> Result<Vec<VerificationEvent>, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        let op = "verification_events_for";
        let rows = sqlx::query(
            "SELECT id, at, method, kind, detail FROM verification_events \
             WHERE call_id = $1 ORDER BY at, id",
        )
        .bind(call_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        rows.iter()
            .map(|row| {
                let cols = Cols::new(row, "verification_events", op)?;
                Ok(VerificationEvent {
                    call_id,
                    at: cols.time("at")?,
                    method: cols.token("method", Method::parse)?,
                    kind: cols.token("kind", VerificationEventKind::parse)?,
                    detail: cols.get("detail")?,
                })
            })
            .collect()
    }

    /// Records a spoofing attempt or fraud signal.
    pub async fn record_security_event(&self, event: &SecurityEvent) -> Result<(), StoreError> {
        self.commit(Record::SecurityEvent(event.clone())).await
    }

    /// A call's security events, in the order they happened.
    pub async fn security_events_for(
        &self,
        call_id: Uuid,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        let rows = sqlx::query(
            "SELECT id, at, call_id, kind, detail, source FROM security_events \
             WHERE call_id = $1 ORDER BY at, id",
        )
        .bind(call_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("security_events_for"))?;
        rows.iter()
            .map(|row| security_event(row, "security_events_for"))
            .collect()
    }

    /// Every security event at or after `since`, oldest first.
    pub async fn security_events_since(
        &self,
        since: SystemTime,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        let rows = sqlx::query(
            "SELECT id, at, call_id, kind, detail, source FROM security_events \
             WHERE at >= $1 ORDER BY at, id",
        )
        .bind(to_millis(since))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("security_events_since"))?;
        rows.iter()
            .map(|row| security_event(row, "security_events_since"))
            .collect()
    }

    /// Records an administrator's action.
    pub async fn record_admin_action(&self, action: &AdminAction) -> Result<(), StoreError> {
        insert_admin_action(
            &mut *self.writer.acquire().await.map_err(query_err)?,
            action,
        )
        .await
    }

    /// Every administrator action at or after `since`, oldest first.
    pub async fn admin_actions_since(
        &self,
        since: SystemTime,
    ) -> Result<Vec<AdminAction>, StoreError> {
        let op = "admin_actions_since";
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target FROM admin_actions \
             WHERE at >= $1 ORDER BY at, id",
        )
        .bind(to_millis(since))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        rows.iter()
            .map(|row| {
                let cols = Cols::new(row, "admin_actions", op)?;
                Ok(AdminAction {
                    at: cols.time("at")?,
                    actor: cols.get("actor")?,
                    action: cols.get("action")?,
                    target: cols.get("target")?,
                })
            })
            .collect()
    }
}

fn query_err(source: sqlx::Error) -> StoreError {
    StoreError::query("record_admin_action")(source)
}

/// Inserts a verification event on the journal's connection.
pub(super) async fn insert_verification_event(
    conn: &mut sqlx::AnyConnection,
    event: &VerificationEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO verification_events (call_id, at, method, kind, detail) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.call_id.to_string())
    .bind(to_millis(event.at))
    .bind(event.method.as_str())
    .bind(event.kind.as_str())
    .bind(event.detail.as_deref())
    .execute(conn)
    .await
    .map_err(StoreError::query("record_verification_event"))?;
    Ok(())
}

/// Inserts a security event on the journal's connection.
pub(super) async fn insert_security_event(
    conn: &mut sqlx::AnyConnection,
    event: &SecurityEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO security_events (at, call_id, kind, detail, source) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(to_millis(event.at))
    .bind(event.call_id.map(|id| id.to_string()))
    .bind(event.kind.as_str())
    .bind(event.detail.as_deref())
    .bind(event.source.map(|ip| ip.to_string()))
    .execute(conn)
    .await
    .map_err(StoreError::query("record_security_event"))?;
    Ok(())
}

/// Inserts an admin action on `conn` (inside a caller's transaction, or on its own).
pub(super) async fn insert_admin_action(
    conn: &mut sqlx::AnyConnection,
    action: &AdminAction,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO admin_actions (at, actor, action, target) VALUES ($1, $2, $3, $4)")
        .bind(to_millis(action.at))
        .bind(&action.actor)
        .bind(&action.action)
        .bind(&action.target)
        .execute(conn)
        .await
        .map_err(query_err)?;
    Ok(())
}

/// Decodes a `security_events` row.
fn security_event(row: &AnyRow, op: &'static str) -> Result<SecurityEvent, StoreError> {
    let cols = Cols::new(row, "security_events", op)?;
    let call_id: Option<String> = cols.get("call_id")?;
    let source: Option<String> = cols.get("source")?;
    Ok(SecurityEvent {
        at: cols.time("at")?,
        call_id: call_id
            .map(|id| Uuid::parse_str(&id).map_err(|_| cols.corrupt("call_id")))
            .transpose()?,
        kind: cols.token("kind", SecurityEventKind::parse)?,
        detail: cols.get("detail")?,
        source: source
            .map(|ip| ip.parse().map_err(|_| cols.corrupt("source")))
            .transpose()?,
    })
}

/// Typed access to the columns of one audit row; a value that does not parse back is
/// [`StoreError::Corrupt`], naming the row by its `id`.
struct Cols<'r> {
    row: &'r AnyRow,
    table: &'static str,
    id: String,
}

impl<'r> Cols<'r> {
    fn new(row: &'r AnyRow, table: &'static str, op: &'static str) -> Result<Self, StoreError> {
        let id: i64 = row.try_get("id").map_err(StoreError::query(op))?;
        Ok(Cols {
            row,
            table,
            id: id.to_string(),
        })
    }

    fn corrupt(&self, column: &'static str) -> StoreError {
        StoreError::corrupt(self.table, column, &self.id)
    }

    fn get<T>(&self, column: &'static str) -> Result<T, StoreError>
    where
        T: for<'a> sqlx::Decode<'a, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.row.try_get(column).map_err(|_| self.corrupt(column))
    }

    fn time(&self, column: &'static str) -> Result<SystemTime, StoreError> {
        from_millis(self.get(column)?).ok_or_else(|| self.corrupt(column))
    }

    fn token<T>(
        &self,
        column: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        let raw: String = self.get(column)?;
        parse(&raw).ok_or_else(|| self.corrupt(column))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn t(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_751_371_200_000 + ms)
    }

    fn event(
        call_id: Uuid,
        ms: u64,
        kind: VerificationEventKind,
        detail: Option<&str>,
    ) -> VerificationEvent {
        VerificationEvent {
            call_id,
            at: t(ms),
            method: Method::Bankid,
            kind,
            detail: detail.map(str::to_owned),
        }
    }

    async fn verification_events_come_back_in_order(store: Store) {
        let call = Uuid::new_v4();
        let events = [
            event(
                call,
                0,
                VerificationEventKind::Started,
                Some("131daac9-16c6-4618-beb0-365768f37288"),
            ),
            event(call, 0, VerificationEventKind::Hint, Some("sent")),
            event(call, 900, VerificationEventKind::Hint, Some("call-confirm")),
            event(
                call,
                2000,
                VerificationEventKind::Failed,
                Some("not-in-call"),
            ),
        ];
        for e in &events {
            store.record_verification_event(e).await.expect("record");
        }
        let other = event(Uuid::new_v4(), 5, VerificationEventKind::Cancelled, None);
        store
            .record_verification_event(&other)
            .await
            .expect("record");
        assert_eq!(
            store.verification_events_for(call).await.expect("read"),
            events
        );
        assert_eq!(
            store
                .verification_events_for(other.call_id)
                .await
                .expect("read"),
            [other]
        );
    }

    async fn security_events_keep_header_names_and_the_source(store: Store) {
        let call = Uuid::new_v4();
        let spoofed = SecurityEvent {
            at: t(0),
            call_id: Some(call),
            kind: SecurityEventKind::SpoofedHeaders,
            detail: Some("X-Identity-Status, X-Identity-Token".to_owned()),
            source: Some("192.0.2.10".parse().expect("ip")),
        };
        let not_in_call = SecurityEvent {
            at: t(10),
            call_id: Some(call),
            kind: SecurityEventKind::NotInCall,
            detail: None,
            source: None,
        };
        let untrusted = SecurityEvent {
            at: t(20),
            call_id: None,
            kind: SecurityEventKind::UntrustedSource,
            detail: None,
            source: Some("2001:db8::1".parse().expect("ip")),
        };
        for e in [&spoofed, &not_in_call, &untrusted] {
            store.record_security_event(e).await.expect("record");
        }
        assert_eq!(
            store.security_events_for(call).await.expect("read"),
            [spoofed.clone(), not_in_call.clone()]
        );
        assert_eq!(
            store.security_events_since(t(10)).await.expect("read"),
            [not_in_call, untrusted]
        );
    }

    async fn admin_actions_are_kept_in_order(store: Store) {
        let action = |ms, what: &str| AdminAction {
            at: t(ms),
            actor: "cli".to_owned(),
            action: what.to_owned(),
            target: "customer 6f1c2a52-40a4-4d3c-9a3c-2f4f6a0a4c11".to_owned(),
        };
        let (add, remove) = (action(0, "customer-add"), action(5, "customer-remove"));
        store.record_admin_action(&add).await.expect("record");
        store.record_admin_action(&remove).await.expect("record");
        assert_eq!(
            store.admin_actions_since(t(0)).await.expect("read"),
            [add, remove.clone()]
        );
        assert_eq!(
            store.admin_actions_since(t(1)).await.expect("read"),
            [remove]
        );
    }

    async fn a_corrupt_kind_is_reported_not_guessed(store: Store) {
        let call = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO verification_events (call_id, at, method, kind) \
             VALUES ($1, 0, 'carrier-pigeon', 'started')",
        )
        .bind(call.to_string())
        .execute(&store.pool)
        .await
        .expect("insert");
        let e = store.verification_events_for(call).await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Corrupt {
                    column: "method",
                    ..
                }
            ),
            "{e}"
        );
    }

    crate::store::testdb::store_tests!(
        verification_events_come_back_in_order,
        security_events_keep_header_names_and_the_source,
        admin_actions_are_kept_in_order,
        a_corrupt_kind_is_reported_not_guessed,
    );
}
