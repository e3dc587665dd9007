//! What a GDPR export and an erasure report look like (serialised as JSON for the CLI and the
//! API).

use std::fmt;

use serde::Serialize;
use uuid::Uuid;

/// Everything idgate holds about one person, as JSON for the person. Holds their personal
/// number: its `Debug` shows nothing.
#[derive(Clone, Serialize)]
pub struct PersonExport {
    /// When the export was made.
    pub exported_at: String,
    /// The pseudonym push attempts are stored under.
    pub pseudonym: String,
    /// The directory entry, if they have one.
    pub customer: Option<ExportedCustomer>,
    /// Pushes to them, or from their numbers, oldest first.
    pub push_attempts: Vec<ExportedAttempt>,
    /// The calls those belong to, and the calls from their numbers, oldest first.
    pub calls: Vec<ExportedCall>,
    /// The evidence of the orders addressed to them.
    pub evidence: Vec<ExportedEvidence>,
}

impl fmt::Debug for PersonExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonExport")
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

/// A directory entry, in full.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedCustomer {
    /// The customer's id.
    pub id: String,
    /// The personal identity number, 12 digits.
    pub personal_number: String,
    /// The name on file.
    pub name: Option<String>,
    /// The numbers they call from.
    pub numbers: Vec<String>,
    /// When they were registered.
    pub created_at: Option<String>,
}

/// A push attempt (without the person column: for attempts from their number it may be someone
/// else's pseudonym).
#[derive(Debug, Clone, Serialize)]
pub struct ExportedAttempt {
    /// The attempt's id.
    pub id: String,
    /// idgate's call id.
    pub call_id: String,
    /// The caller number, if known.
    pub caller: Option<String>,
    /// `personal-number` (pushed to them) or `phone-number` (from one of their numbers).
    pub matched_by: &'static str,
    /// When it was started.
    pub started_at: Option<String>,
    /// When it ended.
    pub ended_at: Option<String>,
    /// How it ended.
    pub outcome: Option<String>,
}

/// A linked call and its audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedCall {
    /// idgate's call id.
    pub id: String,
    /// The `calls` row, if there is one.
    pub call: Option<ExportedCallRow>,
    /// What the verifications did.
    pub verification_events: Vec<serde_json::Value>,
    /// Spoofing attempts and fraud signals.
    pub security_events: Vec<serde_json::Value>,
    /// "Verify again" requests.
    pub reverifications: Vec<serde_json::Value>,
}

/// A `calls` row.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedCallRow {
    /// Call-ID of the inbound leg.
    pub sip_call_id: String,
    /// The caller number.
    pub caller: String,
    /// The called number.
    pub called: String,
    /// The route.
    pub route: Option<String>,
    /// When the INVITE arrived.
    pub started_at: String,
    /// When idgate answered.
    pub answered_at: Option<String>,
    /// When the verdict was reached.
    pub verdict_at: Option<String>,
    /// `verified` / `unverified`.
    pub status: Option<&'static str>,
    /// Why unverified.
    pub reason: Option<&'static str>,
    /// The method tried.
    pub method: Option<&'static str>,
    /// How the hand-off ended.
    pub transfer_outcome: Option<&'static str>,
    /// When the call ended.
    pub ended_at: Option<String>,
}

/// Evidence of an order addressed to them.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedEvidence {
    /// idgate's call id.
    pub call_id: String,
    /// The provider.
    pub method: String,
    /// When it was stored.
    pub recorded_at: Option<String>,
    /// The provider's evidence (JSON, or the stored text if it is not JSON).
    pub data: serde_json::Value,
}

/// What an erasure removed (or, for [`Store::preview_erase`], would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EraseReport {
    /// The directory entry removed, if there was one.
    pub customer: Option<Uuid>,
    /// Its phone numbers removed.
    pub numbers_removed: u64,
    /// Push attempts to their pseudonym deleted.
    pub attempts_deleted: u64,
    /// Push attempts from their numbers that lost the caller number.
    pub attempts_unlinked: u64,
    /// Evidence records deleted.
    pub evidence_deleted: u64,
    /// Linked calls whose caller number and Call-ID were redacted.
    pub calls_redacted: u64,
    /// Order references removed from the linked calls' verification events.
    pub order_refs_removed: u64,
    /// Source addresses removed from the linked calls' security events.
    pub sources_removed: u64,
}

impl fmt::Display for EraseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.customer {
            Some(id) => write!(f, "customer {id} and {} number(s)", self.numbers_removed)?,
            None => f.write_str("no directory entry")?,
        }
        write!(
            f,
            "; {} push attempt(s) deleted, {} unlinked; {} evidence record(s) deleted; \
             {} call(s) redacted; {} order reference(s) and {} source address(es) removed",
            self.attempts_deleted,
            self.attempts_unlinked,
            self.evidence_deleted,
            self.calls_redacted,
            self.order_refs_removed,
            self.sources_removed
        )
    }
}
