//! GDPR requests about one person: everything idgate holds about them ([`Store::export_person`])
//! and erasing it ([`Store::erase_person`]).
//!
//! What is "about them": their customer directory entry and numbers; the push attempts to their
//! pseudonym, or from one of their numbers; the calls of those attempts and the calls from their
//! numbers, with each call's verification events, security events and re-verifications; the
//! evidence (BankID's completion data) of the calls whose push went to their pseudonym (not of
//! calls where someone else was pushed from their phone: that is the other person's data).
//!
//! Erasing deletes the directory entry, the attempts to their pseudonym and that evidence;
//! attempts from their numbers lose the caller number; the linked calls keep their aggregate
//! columns but lose the caller number, the Call-ID, order references and source addresses (as
//! retention does). Both record an admin action, without the personal number, in the same
//! transaction as the work.

#[cfg(test)]
mod tests;
mod types;

pub use types::{
    EraseReport, ExportedAttempt, ExportedCall, ExportedCallRow, ExportedCustomer,
    ExportedEvidence, PersonExport,
};

use std::collections::BTreeSet;
use std::time::SystemTime;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::attempts::pseudonym;
use super::audit::{AdminAction, insert_admin_action};
use super::retention::Count;
use super::{CallRow, Store, StoreError, from_millis};
use crate::identity::PersonalNumber;
use crate::timefmt::rfc3339_millis;

/// A directory entry as read.
struct Entry {
    id: String,
    name: Option<String>,
    created_at: i64,
}

/// A push attempt as read.
struct Attempt {
    id: String,
    call_id: String,
    caller: Option<String>,
    by_person: bool,
    started_at: i64,
    ended_at: Option<i64>,
    outcome: Option<String>,
}

/// What the database links to one person.
struct Linked {
    entry: Option<Entry>,
    numbers: Vec<String>,
    attempts: Vec<Attempt>,
    /// Calls whose push went to the person's pseudonym.
    person_calls: BTreeSet<String>,
    /// Every linked call.
    calls: BTreeSet<String>,
}

impl Linked {
    /// The customer id for the queries, or one that matches nothing.
    fn customer_id(&self) -> &str {
        self.entry.as_ref().map_or("", |e| e.id.as_str())
    }

    /// The admin action's target: the customer id (or that there is none) and a count.
    fn target(&self, what: &str) -> String {
        match &self.entry {
            Some(e) => format!("customer {}: {what}", e.id),
            None => format!("no directory entry: {what}"),
        }
    }
}

impl Store {
    /// The id of `person`'s directory entry, if they have one.
    pub async fn customer_id_of(
        &self,
        person: &PersonalNumber,
    ) -> Result<Option<Uuid>, StoreError> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM customers WHERE personal_number = $1")
                .bind(person.as_digits())
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query("customer_id_of"))?;
        id.map(|id| Uuid::parse_str(&id).map_err(|_| StoreError::corrupt("customers", "id", &id)))
            .transpose()
    }

    /// Everything idgate holds about `person` (see the module doc), recording the export as an
    /// admin action by `actor`.
    pub async fn export_person(
        &self,
        person: &PersonalNumber,
        actor: &str,
        at: SystemTime,
    ) -> Result<PersonExport, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        let op = "export_person";
        let mut conn = self.writer.acquire().await.map_err(StoreError::query(op))?;
        let linked = linked(&mut conn, person).await?;
        let evidence = evidence(&mut conn, &linked.person_calls).await?;
        let action = AdminAction {
            at,
            actor: actor.to_owned(),
            action: "privacy-export".to_owned(),
            target: linked.target(&format!("{} call(s)", linked.calls.len())),
        };
        insert_admin_action(&mut conn, &action).await?;
        // The per-call reads below use the pool: give the connection back first (an in-memory
        // store has only one).
        drop(conn);
        let mut calls = Vec::new();
        for id in &linked.calls {
            calls.push(self.exported_call(id).await?);
        }
        calls.sort_by(|a, b| {
            let started = |c: &ExportedCall| c.call.as_ref().map(|r| r.started_at.clone());
            started(a).cmp(&started(b)).then_with(|| a.id.cmp(&b.id))
        });
        Ok(PersonExport {
            exported_at: rfc3339_millis(at),
            pseudonym: pseudonym(person),
            customer: linked.entry.as_ref().map(|e| ExportedCustomer {
                id: e.id.clone(),
                personal_number: person.as_digits().to_owned(),
                name: e.name.clone(),
                numbers: linked.numbers.clone(),
                created_at: time(Some(e.created_at)),
            }),
            push_attempts: linked.attempts.iter().map(exported_attempt).collect(),
            calls,
            evidence,
        })
    }

    /// Erases what idgate holds about `person` (see the module doc) in one transaction, with an
    /// admin action by `actor`.
    pub async fn erase_person(
        &self,
        person: &PersonalNumber,
        actor: &str,
        at: SystemTime,
    ) -> Result<EraseReport, StoreError> {
        self.erase(person, Some((actor, at))).await
    }

    /// What [`Store::erase_person`] would remove now; changes nothing.
    pub async fn preview_erase(&self, person: &PersonalNumber) -> Result<EraseReport, StoreError> {
        self.erase(person, None).await
    }

    /// Erases, then commits with an admin action (`record`) or rolls back.
    async fn erase(
        &self,
        person: &PersonalNumber,
        record: Option<(&str, SystemTime)>,
    ) -> Result<EraseReport, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        let op = "erase_person";
        let mut tx = self.begin_write(op).await?;
        let linked = linked(&mut tx, person).await?;
        let report = erase_linked(&mut tx, person, &linked).await?;
        let Some((actor, at)) = record else {
            tx.rollback().await.map_err(StoreError::query(op))?;
            return Ok(report);
        };
        let action = AdminAction {
            at,
            actor: actor.to_owned(),
            action: "privacy-erase".to_owned(),
            target: report.to_string(),
        };
        insert_admin_action(&mut tx, &action).await?;
        tx.commit().await.map_err(StoreError::query(op))?;
        Ok(report)
    }

    /// One linked call with its audit trail.
    async fn exported_call(&self, id: &str) -> Result<ExportedCall, StoreError> {
        let call_id =
            Uuid::parse_str(id).map_err(|_| StoreError::corrupt("push_attempts", "call_id", id))?;
        let call = self.get_call(call_id).await?;
        let verification_events = self.verification_events_for(call_id).await?;
        let security_events = self.security_events_for(call_id).await?;
        let reverifications = self.reverifications_for(call_id).await?;
        Ok(ExportedCall {
            id: id.to_owned(),
            call: call.as_ref().map(exported_call_row),
            verification_events: verification_events
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "at": rfc3339_millis(e.at),
                        "method": e.method.as_str(),
                        "kind": e.kind.as_str(),
                        "detail": e.detail,
                    })
                })
                .collect(),
            security_events: security_events
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "at": rfc3339_millis(e.at),
                        "kind": e.kind.as_str(),
                        "detail": e.detail,
                        "source": e.source.map(|ip| ip.to_string()),
                    })
                })
                .collect(),
            reverifications: reverifications.iter().map(|r| r.to_json()).collect(),
        })
    }
}

/// Reads what is linked to `person` (see the module doc).
async fn linked(conn: &mut AnyConnection, person: &PersonalNumber) -> Result<Linked, StoreError> {
    let op = "linked_to_person";
    let entry = sqlx::query(
        "SELECT id, display_name, created_at FROM customers WHERE personal_number = $1",
    )
    .bind(person.as_digits())
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::query(op))?
    .map(|row| -> Result<Entry, StoreError> {
        let id: String = row.try_get("id").map_err(StoreError::query(op))?;
        let corrupt = |column| StoreError::corrupt("customers", column, &id);
        Ok(Entry {
            name: row
                .try_get("display_name")
                .map_err(|_| corrupt("display_name"))?,
            created_at: row
                .try_get("created_at")
                .map_err(|_| corrupt("created_at"))?,
            id,
        })
    })
    .transpose()?;
    let mut linked = Linked {
        entry,
        numbers: Vec::new(),
        attempts: Vec::new(),
        person_calls: BTreeSet::new(),
        calls: BTreeSet::new(),
    };
    let customer = linked.customer_id().to_owned();
    linked.numbers = sqlx::query_scalar(
        "SELECT e164 FROM customer_numbers WHERE customer_id = $1 ORDER BY e164",
    )
    .bind(&customer)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query(op))?;
    let mine = pseudonym(person);
    let rows = sqlx::query(
        "SELECT id, call_id, caller, person, started_at, ended_at, outcome FROM push_attempts \
         WHERE person = $1 \
            OR caller IN (SELECT e164 FROM customer_numbers WHERE customer_id = $2) \
         ORDER BY started_at, id",
    )
    .bind(&mine)
    .bind(&customer)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query(op))?;
    for row in &rows {
        let attempt = attempt(row, &mine, op)?;
        if attempt.by_person {
            linked.person_calls.insert(attempt.call_id.clone());
        }
        linked.calls.insert(attempt.call_id.clone());
        linked.attempts.push(attempt);
    }
    let from_numbers: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM calls \
         WHERE caller IN (SELECT e164 FROM customer_numbers WHERE customer_id = $1)",
    )
    .bind(&customer)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query(op))?;
    linked.calls.extend(from_numbers);
    Ok(linked)
}

/// Decodes a `push_attempts` row; `mine` is the person's pseudonym.
fn attempt(row: &AnyRow, mine: &str, op: &'static str) -> Result<Attempt, StoreError> {
    let id: String = row.try_get("id").map_err(StoreError::query(op))?;
    let corrupt = |column| StoreError::corrupt("push_attempts", column, &id);
    let person: Option<String> = row.try_get("person").map_err(|_| corrupt("person"))?;
    Ok(Attempt {
        call_id: row.try_get("call_id").map_err(|_| corrupt("call_id"))?,
        caller: row.try_get("caller").map_err(|_| corrupt("caller"))?,
        by_person: person.as_deref() == Some(mine),
        started_at: row
            .try_get("started_at")
            .map_err(|_| corrupt("started_at"))?,
        ended_at: row.try_get("ended_at").map_err(|_| corrupt("ended_at"))?,
        outcome: row.try_get("outcome").map_err(|_| corrupt("outcome"))?,
        id,
    })
}

/// The evidence of `calls`, oldest first.
async fn evidence(
    conn: &mut AnyConnection,
    calls: &BTreeSet<String>,
) -> Result<Vec<ExportedEvidence>, StoreError> {
    let op = "export_person";
    let mut out = Vec::new();
    for call in calls {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT method, recorded_at, data FROM verification_evidence \
             WHERE call_id = $1 ORDER BY recorded_at, id",
        )
        .bind(call)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::query(op))?;
        out.extend(
            rows.into_iter()
                .map(|(method, recorded_at, data)| ExportedEvidence {
                    call_id: call.clone(),
                    method,
                    recorded_at: time(Some(recorded_at)),
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
                }),
        );
    }
    out.sort_by(|a, b| a.recorded_at.cmp(&b.recorded_at));
    Ok(out)
}

/// The statements that erase a linked call's personal data, each taking the call id as `$1`,
/// with the report field each counts into.
const ERASE_CALL: [(&str, Count<EraseReport>); 3] = [
    (
        "UPDATE calls SET \
           caller = CASE WHEN caller = 'anonymous' THEN caller ELSE 'redacted' END, \
           sip_call_id = 'redacted' \
         WHERE id = $1 AND (caller NOT IN ('redacted', 'anonymous') OR sip_call_id <> 'redacted')",
        |r| &mut r.calls_redacted,
    ),
    (
        "UPDATE verification_events SET detail = NULL \
         WHERE call_id = $1 AND kind = 'started' AND detail IS NOT NULL",
        |r| &mut r.order_refs_removed,
    ),
    (
        "UPDATE security_events SET source = NULL WHERE call_id = $1 AND source IS NOT NULL",
        |r| &mut r.sources_removed,
    ),
];

/// Erases what `linked` found, on `conn` (a transaction).
async fn erase_linked(
    conn: &mut AnyConnection,
    person: &PersonalNumber,
    linked: &Linked,
) -> Result<EraseReport, StoreError> {
    let op = "erase_person";
    let mut report = EraseReport::default();
    let mut run = async |sql: &'static str, arg: &str| -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(arg.to_owned())
            .execute(&mut *conn)
            .await
            .map_err(StoreError::query(op))?;
        Ok(done.rows_affected())
    };
    for call in &linked.calls {
        for (sql, field) in ERASE_CALL {
            *field(&mut report) += run(sql, call).await?;
        }
    }
    for call in &linked.person_calls {
        report.evidence_deleted +=
            run("DELETE FROM verification_evidence WHERE call_id = $1", call).await?;
    }
    report.attempts_deleted = run(
        "DELETE FROM push_attempts WHERE person = $1",
        &pseudonym(person),
    )
    .await?;
    let customer = linked.customer_id();
    report.attempts_unlinked = run(
        "UPDATE push_attempts SET caller = NULL \
         WHERE caller IN (SELECT e164 FROM customer_numbers WHERE customer_id = $1)",
        customer,
    )
    .await?;
    report.numbers_removed = run(
        "DELETE FROM customer_numbers WHERE customer_id = $1",
        customer,
    )
    .await?;
    if run("DELETE FROM customers WHERE id = $1", customer).await? > 0 {
        report.customer = linked
            .entry
            .as_ref()
            .and_then(|e| Uuid::parse_str(&e.id).ok());
    }
    Ok(report)
}

/// An attempt as exported.
fn exported_attempt(a: &Attempt) -> ExportedAttempt {
    ExportedAttempt {
        id: a.id.clone(),
        call_id: a.call_id.clone(),
        caller: a.caller.clone(),
        matched_by: if a.by_person {
            "personal-number"
        } else {
            "phone-number"
        },
        started_at: time(Some(a.started_at)),
        ended_at: time(a.ended_at),
        outcome: a.outcome.clone(),
    }
}

/// A `calls` row as exported.
fn exported_call_row(row: &CallRow) -> ExportedCallRow {
    let at = |t: Option<SystemTime>| t.map(rfc3339_millis);
    ExportedCallRow {
        sip_call_id: row.sip_call_id.clone(),
        caller: row.caller.clone(),
        called: row.called.clone(),
        route: row.route.clone(),
        started_at: rfc3339_millis(row.started_at),
        answered_at: at(row.answered_at),
        verdict_at: at(row.verdict_at),
        status: row.status.map(|s| s.as_str()),
        reason: row.reason.map(|r| r.as_str()),
        method: row.method.map(|m| m.as_str()),
        transfer_outcome: row.transfer_outcome.map(|o| o.as_str()),
        ended_at: at(row.ended_at),
    }
}

/// A stored time as RFC 3339 text.
fn time(ms: Option<i64>) -> Option<String> {
    ms.and_then(from_millis).map(rfc3339_millis)
}
