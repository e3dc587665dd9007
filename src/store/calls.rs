//! The `calls` table: one row per inbound call, its verdict (status, reason, method: never the
//! person) and how the hand-off ended.

use std::time::SystemTime;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{Record, Store, StoreError, from_millis, to_millis};
use crate::config::Transfer;
use crate::identity::{CallerId, Method, Reason, Verdict};

/// What is known about a call when it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// idgate's call id.
    pub id: Uuid,
    /// Call-ID of the inbound leg.
    pub sip_call_id: String,
    /// The caller, normalised (stored as E.164, or `anonymous` for anything that is not a
    /// number, as in the token's `orig`).
    pub caller: CallerId,
    /// The called number (Request-URI user).
    pub called: String,
    /// The dialplan route that took the call, if any.
    pub route: Option<String>,
    /// The route's hand-off mode, if a route took the call.
    pub transfer_mode: Option<Transfer>,
    /// When the INVITE arrived.
    pub started_at: SystemTime,
}

/// `calls.status`: the verdict's `X-Identity-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// A completed eID order for the right person in this call.
    Verified,
    /// Anything else (see `reason`).
    Unverified,
}

impl CallStatus {
    /// `verified` or `unverified`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Verified => "verified",
            CallStatus::Unverified => "unverified",
        }
    }

    /// Parses the stored token back.
    pub fn parse(token: &str) -> Option<CallStatus> {
        [CallStatus::Verified, CallStatus::Unverified]
            .into_iter()
            .find(|s| s.as_str() == token)
    }
}

/// `calls.transfer_outcome`: how the hand-off to the queue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferOutcome {
    /// B2BUA: the queue answered and the legs were bridged.
    Connected,
    /// REFER: the PBX accepted the transfer.
    Referred,
    /// The caller hung up before the hand-off.
    Abandoned,
    /// Neither the target nor the fallback took the call.
    QueueUnavailable,
}

impl TransferOutcome {
    /// Every outcome, as accepted by [`Store::finish_call`].
    pub const ALL: [TransferOutcome; 4] = [
        TransferOutcome::Connected,
        TransferOutcome::Referred,
        TransferOutcome::Abandoned,
        TransferOutcome::QueueUnavailable,
    ];

    /// The stored token.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferOutcome::Connected => "connected",
            TransferOutcome::Referred => "referred",
            TransferOutcome::Abandoned => "abandoned",
            TransferOutcome::QueueUnavailable => "queue-unavailable",
        }
    }

    /// Parses the token back.
    pub fn parse(token: &str) -> Option<TransferOutcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == token)
    }
}

/// A stored call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    /// idgate's call id.
    pub id: Uuid,
    /// Call-ID of the inbound leg.
    pub sip_call_id: String,
    /// The caller: E.164, or `anonymous`.
    pub caller: String,
    /// The called number.
    pub called: String,
    /// The route that took the call.
    pub route: Option<String>,
    /// When the INVITE arrived (millisecond precision).
    pub started_at: SystemTime,
    /// When idgate answered.
    pub answered_at: Option<SystemTime>,
    /// When the verdict was reached.
    pub verdict_at: Option<SystemTime>,
    /// The verdict's status, once reached.
    pub status: Option<CallStatus>,
    /// Why unverified.
    pub reason: Option<Reason>,
    /// The method tried, if any.
    pub method: Option<Method>,
    /// The hand-off mode.
    pub transfer_mode: Option<Transfer>,
    /// How the hand-off ended.
    pub transfer_outcome: Option<TransferOutcome>,
    /// When the call ended.
    pub ended_at: Option<SystemTime>,
}

impl Store {
    /// Records a new call (and waits for the commit; the call path uses [`Store::record`]).
    pub async fn insert_call(&self, call: &NewCall) -> Result<(), StoreError> {
        self.commit(Record::Call(call.clone())).await
    }

    /// Records when idgate answered the call.
    pub async fn mark_answered(&self, id: Uuid, at: SystemTime) -> Result<(), StoreError> {
        self.commit(Record::Answered { id, at }).await
    }

    /// Records the verdict: status, reason and method only. The verified person is never stored
    /// with the call. A later verdict (re-verification) replaces an earlier one.
    pub async fn record_verdict(
        &self,
        id: Uuid,
        verdict: &Verdict,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        let verdict = verdict.clone();
        self.commit(Record::Verdict { id, verdict, at }).await
    }

    /// Records how the hand-off ended (`connected`, `referred`, `abandoned`,
    /// `queue-unavailable`) and when the call ended.
    pub async fn finish_call(
        &self,
        id: Uuid,
        outcome: &str,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        let outcome = TransferOutcome::parse(outcome).ok_or_else(|| StoreError::InvalidValue {
            field: "transfer_outcome",
            value: outcome.to_owned(),
            expected: "connected, referred, abandoned, queue-unavailable",
        })?;
        self.commit(Record::Ended { id, outcome, at }).await
    }

    /// The call with this id, if stored.
    pub async fn get_call(&self, id: Uuid) -> Result<Option<CallRow>, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        let row = sqlx::query(
            "SELECT id, sip_call_id, caller, called, route, started_at, answered_at, verdict_at, \
             status, reason, method, transfer_mode, transfer_outcome, ended_at \
             FROM calls WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("get_call"))?;
        row.map(|row| call_row(id, &row)).transpose()
    }
}

/// `CallNotFound` when an update touched no row.
/// The `calls` writes, on the journal's connection (see [`super::journal`]).
pub(super) async fn insert_call_on(
    conn: &mut AnyConnection,
    call: &NewCall,
) -> Result<(), StoreError> {
    let caller = call.caller.as_claim();
    sqlx::query(
        "INSERT INTO calls (id, sip_call_id, caller, called, route, transfer_mode, started_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(call.id.to_string())
    .bind(&call.sip_call_id)
    .bind(&caller)
    .bind(&call.called)
    .bind(call.route.as_deref())
    .bind(call.transfer_mode.map(Transfer::as_str))
    .bind(to_millis(call.started_at))
    .execute(conn)
    .await
    .map_err(StoreError::insert("insert_call", "the call id"))?;
    Ok(())
}

pub(super) async fn mark_answered_on(
    conn: &mut AnyConnection,
    id: Uuid,
    at: SystemTime,
) -> Result<(), StoreError> {
    let query = sqlx::query("UPDATE calls SET answered_at = $1 WHERE id = $2").bind(to_millis(at));
    update_call(conn, "mark_answered", id, query).await
}

pub(super) async fn record_verdict_on(
    conn: &mut AnyConnection,
    id: Uuid,
    verdict: &Verdict,
    at: SystemTime,
) -> Result<(), StoreError> {
    let query = sqlx::query(
        "UPDATE calls SET status = $1, reason = $2, method = $3, verdict_at = $4 WHERE id = $5",
    )
    .bind(verdict.status_str())
    .bind(verdict.reason().map(Reason::as_str))
    .bind(verdict.method().map(Method::as_str))
    .bind(to_millis(at));
    update_call(conn, "record_verdict", id, query).await
}

pub(super) async fn set_transfer_mode_on(
    conn: &mut AnyConnection,
    id: Uuid,
    mode: Transfer,
) -> Result<(), StoreError> {
    let query =
        sqlx::query("UPDATE calls SET transfer_mode = $1 WHERE id = $2").bind(mode.as_str());
    update_call(conn, "set_transfer_mode", id, query).await
}

pub(super) async fn finish_call_on(
    conn: &mut AnyConnection,
    id: Uuid,
    outcome: TransferOutcome,
    at: SystemTime,
) -> Result<(), StoreError> {
    let query = sqlx::query("UPDATE calls SET transfer_outcome = $1, ended_at = $2 WHERE id = $3")
        .bind(outcome.as_str())
        .bind(to_millis(at));
    update_call(conn, "finish_call", id, query).await
}

/// Runs an `UPDATE calls ... WHERE id = $last` whose other parameters are bound: binds the id
/// last, and a call that does not exist is [`StoreError::CallNotFound`].
async fn update_call<'q>(
    conn: &mut AnyConnection,
    op: &'static str,
    id: Uuid,
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
) -> Result<(), StoreError> {
    let done = query
        .bind(id.to_string())
        .execute(conn)
        .await
        .map_err(StoreError::query(op))?;
    found(op, id, done.rows_affected())
}

fn found(op: &'static str, id: Uuid, rows: u64) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::CallNotFound { op, id })
    } else {
        Ok(())
    }
}

/// Decodes a `calls` row; a value that does not parse back is [`StoreError::Corrupt`].
pub(super) fn call_row(id: Uuid, row: &AnyRow) -> Result<CallRow, StoreError> {
    let row_id = id.to_string();
    let col = Columns { row, id: &row_id };
    Ok(CallRow {
        id,
        sip_call_id: col.get("sip_call_id")?,
        caller: col.get("caller")?,
        called: col.get("called")?,
        route: col.get("route")?,
        started_at: col
            .time("started_at")?
            .ok_or_else(|| StoreError::corrupt("calls", "started_at", &row_id))?,
        answered_at: col.time("answered_at")?,
        verdict_at: col.time("verdict_at")?,
        status: col.token("status", CallStatus::parse)?,
        reason: col.token("reason", Reason::parse)?,
        method: col.token("method", Method::parse)?,
        transfer_mode: col.token("transfer_mode", Transfer::parse)?,
        transfer_outcome: col.token("transfer_outcome", TransferOutcome::parse)?,
        ended_at: col.time("ended_at")?,
    })
}

/// Typed access to the columns of one `calls` row.
struct Columns<'r> {
    row: &'r AnyRow,
    id: &'r str,
}

impl Columns<'_> {
    fn get<T>(&self, column: &'static str) -> Result<T, StoreError>
    where
        T: for<'a> sqlx::Decode<'a, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.row
            .try_get(column)
            .map_err(|_| StoreError::corrupt("calls", column, self.id))
    }

    fn time(&self, column: &'static str) -> Result<Option<SystemTime>, StoreError> {
        let ms: Option<i64> = self.get(column)?;
        ms.map(|ms| from_millis(ms).ok_or_else(|| StoreError::corrupt("calls", column, self.id)))
            .transpose()
    }

    fn token<T>(
        &self,
        column: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        let raw: Option<String> = self.get(column)?;
        raw.map(|s| parse(&s).ok_or_else(|| StoreError::corrupt("calls", column, self.id)))
            .transpose()
    }
}
