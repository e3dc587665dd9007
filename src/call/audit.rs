//! The call's audit trail in the store: verification events (started with the provider's order
//! reference, each new hint, the outcome, a cancel) and security events (identity headers from
//! the caller side, "not in a call" answers). Recording only records: it never changes what the
//! flow is told, and it never waits: the rows go to the store's journal, which logs a failed
//! write (without personal data) while the call goes on.

use std::net::IpAddr;
use std::time::SystemTime;

use uuid::Uuid;

use crate::identity::Method;
use crate::store::{
    Record, SecurityEvent, SecurityEventKind, Store, VerificationEvent, VerificationEventKind,
};
use crate::verify::{Failure, Hint, OrderRef, VerifyUpdate};

/// The running verification as the audit trail sees it.
struct Running {
    method: Method,
    /// The provider's order reference, set by the provider once the order exists.
    order_ref: OrderRef,
    /// When the order was started, until its `started` event is written. The event waits for
    /// the provider's first update (or the cancel), by which time the order reference is known.
    unwritten_start: Option<SystemTime>,
    last_hint: Option<Hint>,
}

/// One call's verification audit: the verification running now, if any.
pub(super) struct VerificationAudit {
    call_id: Uuid,
    running: Option<Running>,
}

impl VerificationAudit {
    /// The audit of call `call_id`, no verification running.
    pub(super) fn new(call_id: Uuid) -> Self {
        Self {
            call_id,
            running: None,
        }
    }

    /// An order was started (its `started` event is written with the first update).
    pub(super) fn started(&mut self, method: Method, order_ref: OrderRef, at: SystemTime) {
        self.running = Some(Running {
            method,
            order_ref,
            unwritten_start: Some(at),
            last_hint: None,
        });
    }

    /// A push that was never sent (the limits refused it, or could not be checked).
    pub(super) fn not_sent(&self, store: &Store, method: Method, failure: &Failure) {
        let detail = Some(failure.reason().as_str().to_owned());
        self.write(store, method, VerificationEventKind::Failed, detail);
    }

    /// An update from the provider (`None`: the provider's channel closed).
    pub(super) fn update(&mut self, store: &Store, update: Option<&VerifyUpdate>) {
        let Some(method) = self.write_start(store) else {
            return;
        };
        let (kind, detail) = match update {
            Some(VerifyUpdate::Pending(hint)) => {
                let Some(running) = self.running.as_mut() else {
                    return;
                };
                if running.last_hint == Some(*hint) {
                    return;
                }
                running.last_hint = Some(*hint);
                (VerificationEventKind::Hint, hint.as_str())
            }
            Some(VerifyUpdate::Complete(_)) => (VerificationEventKind::Completed, ""),
            Some(VerifyUpdate::Failed(failure)) => {
                (VerificationEventKind::Failed, failure.reason().as_str())
            }
            None => (VerificationEventKind::Failed, "provider-error"),
        };
        if kind != VerificationEventKind::Hint {
            self.running = None;
        }
        let detail = (!detail.is_empty()).then(|| detail.to_owned());
        self.write(store, method, kind, detail);
        if let Some(VerifyUpdate::Failed(Failure::NotInCall)) = update {
            self.security(store, SecurityEventKind::NotInCall, None, None);
        }
    }

    /// idgate cancelled the running order.
    pub(super) fn cancelled(&mut self, store: &Store) {
        let Some(method) = self.write_start(store) else {
            return;
        };
        self.running = None;
        self.write(store, method, VerificationEventKind::Cancelled, None);
    }

    /// Identity-prefixed headers from the caller side were removed (names only).
    pub(super) fn spoofed(&self, store: &Store, headers: &[String], source: IpAddr) {
        let names = headers.join(", ");
        let kind = SecurityEventKind::SpoofedHeaders;
        self.security(store, kind, Some(names), Some(source));
    }

    /// Writes the pending `started` event, if any; the running order's method, if one runs.
    fn write_start(&mut self, store: &Store) -> Option<Method> {
        let running = self.running.as_mut()?;
        let method = running.method;
        if let Some(at) = running.unwritten_start.take() {
            let event = VerificationEvent {
                call_id: self.call_id,
                at,
                method,
                kind: VerificationEventKind::Started,
                detail: running.order_ref.get().map(str::to_owned),
            };
            store.record(Record::VerificationEvent(event));
        }
        Some(method)
    }

    fn write(
        &self,
        store: &Store,
        method: Method,
        kind: VerificationEventKind,
        detail: Option<String>,
    ) {
        let event = VerificationEvent {
            call_id: self.call_id,
            at: SystemTime::now(),
            method,
            kind,
            detail,
        };
        store.record(Record::VerificationEvent(event));
    }

    fn security(
        &self,
        store: &Store,
        kind: SecurityEventKind,
        detail: Option<String>,
        source: Option<IpAddr>,
    ) {
        let event = SecurityEvent {
            at: SystemTime::now(),
            call_id: Some(self.call_id),
            kind,
            detail,
            source,
        };
        store.record(Record::SecurityEvent(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{PersonalNumber, VerifiedPerson};

    fn summary(events: &[VerificationEvent]) -> Vec<(&'static str, Option<&str>)> {
        events
            .iter()
            .map(|e| (e.kind.as_str(), e.detail.as_deref()))
            .collect()
    }

    #[tokio::test]
    async fn a_verification_is_recorded_step_by_step_with_its_order_reference() {
        let store = Store::memory().await.unwrap();
        let call = Uuid::new_v4();
        let mut audit = VerificationAudit::new(call);
        let order_ref = OrderRef::default();
        audit.started(Method::Bankid, order_ref.clone(), SystemTime::now());
        // The provider learns its order reference before its first update.
        order_ref.set("131daac9-16c6-4618-beb0-365768f37288");
        for hint in [Hint::Sent, Hint::Sent, Hint::CallConfirm] {
            let update = VerifyUpdate::Pending(hint);
            audit.update(&store, Some(&update));
        }
        let person = VerifiedPerson {
            personal_number: PersonalNumber::parse("191212121212").unwrap(),
            name: None,
        };
        audit.update(&store, Some(&VerifyUpdate::Complete(person)));
        // Nothing runs any more: a late cancel records nothing.
        audit.cancelled(&store);
        let events = store.verification_events_for(call).await.unwrap();
        assert_eq!(
            summary(&events),
            [
                ("started", Some("131daac9-16c6-4618-beb0-365768f37288")),
                ("hint", Some("sent")),
                ("hint", Some("call-confirm")),
                ("completed", None),
            ]
        );
        assert!(!format!("{events:?}").contains("121212"));
    }

    #[tokio::test]
    async fn not_in_call_is_a_failure_and_a_security_event_and_a_cancel_is_recorded() {
        let store = Store::memory().await.unwrap();
        let call = Uuid::new_v4();
        let mut audit = VerificationAudit::new(call);
        audit.started(Method::Simulator, OrderRef::default(), SystemTime::now());
        let failed = VerifyUpdate::Failed(Failure::NotInCall);
        audit.update(&store, Some(&failed));
        audit.started(Method::Simulator, OrderRef::default(), SystemTime::now());
        audit.cancelled(&store);
        audit.not_sent(&store, Method::Simulator, &Failure::RateLimited);
        let events = store.verification_events_for(call).await.unwrap();
        assert_eq!(
            summary(&events),
            [
                ("started", None),
                ("failed", Some("not-in-call")),
                ("started", None),
                ("cancelled", None),
                ("failed", Some("rate-limited")),
            ]
        );
        let security = store.security_events_for(call).await.unwrap();
        assert_eq!(security.len(), 1);
        assert_eq!(security[0].kind, SecurityEventKind::NotInCall);
    }
}
