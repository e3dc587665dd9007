//! Retention (`[store] retention_days`): the personal data of calls older than the retention
//! period is removed, and what is left is aggregate data: the `calls` rows (status, reason,
//! method, route, timestamps, outcome), push attempts without caller or person, verification
//! events without order references, security events without source addresses, re-verifications
//! and admin actions.
//!
//! | table | what is removed |
//! |---|---|
//! | `calls` | `caller` becomes `redacted` (`anonymous` stays), `sip_call_id` becomes `redacted` |
//! | `verification_evidence` | deleted |
//! | `push_attempts` | `caller` and `person` (the pseudonym) set to NULL; the limits only look at rows within their window, which validation keeps shorter than the retention period |
//! | `verification_events` | the order reference (`detail` of `started`) set to NULL |
//! | `security_events` | `source` set to NULL |

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::audit::AdminAction;
use super::{Backend, Store, StoreError, to_millis};

/// How often `serve` purges (and once at start).
pub const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// What a purge removed (or, for [`Store::preview_purge`], would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Calls whose caller number and Call-ID were replaced by `redacted`.
    pub calls_redacted: u64,
    /// Evidence records (BankID's completion data) deleted.
    pub evidence_deleted: u64,
    /// Push attempts whose caller number and person pseudonym were removed.
    pub attempts_unlinked: u64,
    /// Provider order references removed from verification events.
    pub order_refs_removed: u64,
    /// Source addresses removed from security events.
    pub sources_removed: u64,
}

impl PurgeReport {
    /// Whether nothing was (or would be) removed.
    pub fn is_empty(&self) -> bool {
        *self == PurgeReport::default()
    }
}

impl fmt::Display for PurgeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} call(s) redacted, {} evidence record(s) deleted, {} push attempt(s) unlinked, \
             {} order reference(s) and {} source address(es) removed",
            self.calls_redacted,
            self.evidence_deleted,
            self.attempts_unlinked,
            self.order_refs_removed,
            self.sources_removed
        )
    }
}

/// The count in a report that a statement's affected rows go to.
pub(super) type Count<R> = fn(&mut R) -> &mut u64;

/// The statements of a purge, in order, with the report field each counts into. Every one
/// takes the cutoff (unix ms) as `$1`.
const PURGE: [(&str, Count<PurgeReport>); 5] = [
    (
        "UPDATE calls SET \
           caller = CASE WHEN caller = 'anonymous' THEN caller ELSE 'redacted' END, \
           sip_call_id = 'redacted' \
         WHERE started_at < $1 \
           AND (caller NOT IN ('redacted', 'anonymous') OR sip_call_id <> 'redacted')",
        |r| &mut r.calls_redacted,
    ),
    (
        "DELETE FROM verification_evidence \
         WHERE recorded_at < $1 OR call_id IN (SELECT id FROM calls WHERE started_at < $1)",
        |r| &mut r.evidence_deleted,
    ),
    (
        "UPDATE push_attempts SET caller = NULL, person = NULL \
         WHERE started_at < $1 AND (caller IS NOT NULL OR person IS NOT NULL)",
        |r| &mut r.attempts_unlinked,
    ),
    (
        "UPDATE verification_events SET detail = NULL \
         WHERE at < $1 AND kind = 'started' AND detail IS NOT NULL",
        |r| &mut r.order_refs_removed,
    ),
    (
        "UPDATE security_events SET source = NULL WHERE at < $1 AND source IS NOT NULL",
        |r| &mut r.sources_removed,
    ),
];

impl Store {
    /// Removes the personal data of everything older than `older_than` (see the module doc),
    /// in one transaction. Running it again removes nothing more.
    pub async fn purge_personal_data(
        &self,
        older_than: SystemTime,
    ) -> Result<PurgeReport, StoreError> {
        self.purge(older_than, true).await
    }

    /// What [`Store::purge_personal_data`] would remove now; changes nothing (the same
    /// statements, rolled back).
    pub async fn preview_purge(&self, older_than: SystemTime) -> Result<PurgeReport, StoreError> {
        self.purge(older_than, false).await
    }

    async fn purge(&self, older_than: SystemTime, commit: bool) -> Result<PurgeReport, StoreError> {
        // The call path writes through the journal: see its writes first.
        self.flush().await?;
        let op = "purge_personal_data";
        let mut tx = self.begin_write(op).await?;
        let mut report = PurgeReport::default();
        for (sql, field) in PURGE {
            let done = sqlx::query(sql)
                .bind(to_millis(older_than))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op))?;
            *field(&mut report) = done.rows_affected();
        }
        if commit {
            tx.commit().await
        } else {
            tx.rollback().await
        }
        .map_err(StoreError::query(op))?;
        Ok(report)
    }

    /// A write transaction. SQLite: `BEGIN IMMEDIATE`, so one that reads before it writes
    /// queues on the busy timeout instead of failing on a stale snapshot.
    pub(super) async fn begin_write(
        &self,
        op: &'static str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
        .map_err(StoreError::query(op))
    }
}

/// The cutoff for a retention period: everything that started before it is purged.
pub fn retention_cutoff(now: SystemTime, keep: Duration) -> SystemTime {
    now.checked_sub(keep).unwrap_or(UNIX_EPOCH)
}

/// `serve`'s retention task: purges at once, then every [`PURGE_INTERVAL`], until `cancel`
/// fires. `keep: None` (`retention_days = 0`) keeps everything and returns at once. A failed
/// purge is logged and tried again at the next interval; each purge that removed something is
/// recorded as an admin action by `retention`.
pub async fn purge_periodically(store: Store, keep: Option<Duration>, cancel: CancellationToken) {
    let Some(keep) = keep else {
        tracing::info!("store.retention_days = 0: personal data is kept until erased");
        return;
    };
    let mut ticks = tokio::time::interval(PURGE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = purge_once(&store, keep) => {}
        }
    }
}

/// One scheduled purge, logged and recorded.
async fn purge_once(store: &Store, keep: Duration) {
    let now = SystemTime::now();
    let cutoff = retention_cutoff(now, keep);
    let report = match store.purge_personal_data(cutoff).await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(error = %e, "retention: purge failed; tried again in an hour");
            return;
        }
    };
    if report.is_empty() {
        tracing::debug!("retention: nothing to purge");
        return;
    }
    tracing::info!(%report, "retention: personal data past the retention period removed");
    let action = AdminAction {
        at: now,
        actor: "retention".to_owned(),
        action: "privacy-purge".to_owned(),
        target: format!(
            "data before {}: {report}",
            crate::timefmt::rfc3339_millis(cutoff)
        ),
    };
    if let Err(e) = store.record_admin_action(&action).await {
        tracing::warn!(error = %e, "retention: purge not recorded as an admin action");
    }
}
