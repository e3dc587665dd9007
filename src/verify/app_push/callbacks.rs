//! The hub between running app-push orders and the callback endpoint (`api`): each order
//! registers here before its push is sent, and the endpoint hands each signed callback to
//! [`Callbacks::deliver`], which checks it and wakes the order. Transport-free: the caller
//! passes the headers, the body and the time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Deserialize;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::signature::{SignatureError, SigningKey, unix_now};
use crate::identity::{PersonName, PersonalNumber, VerifiedPerson};
use crate::verify::{Failure, VerifyUpdate};

/// Pending app-push orders, shared by the provider and the callback endpoint. Cheap to clone;
/// clones share the orders.
#[derive(Debug, Clone)]
pub struct Callbacks {
    hub: Arc<Hub>,
}

#[derive(Debug)]
struct Hub {
    key: SigningKey,
    max_skew_secs: u64,
    orders: Mutex<HashMap<Uuid, Slot>>,
}

/// An order's place in the hub.
#[derive(Debug)]
enum Slot {
    /// Waiting for its callback.
    Pending(oneshot::Sender<VerifyUpdate>),
    /// Answered, timed out or cancelled; remembered until `forget_at` (unix seconds) so a
    /// replayed callback is told 409, not 404. After that its timestamp is stale anyway.
    Ended { forget_at: u64 },
}

/// The signature headers of a callback, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignedHeaders<'a> {
    /// `X-Idgate-Timestamp`, if present and text.
    pub timestamp: Option<&'a str>,
    /// `X-Idgate-Signature`, if present and text.
    pub signature: Option<&'a str>,
}

/// Why a callback was refused. Whose fault: always the sender's (or an attacker's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The signature is missing, malformed or wrong, or the timestamp is outside the skew.
    #[error("{0}")]
    Signature(#[from] SignatureError),
    /// Signed, but not a valid callback body (the detail holds no values from the body).
    #[error("not a valid callback: {0}")]
    BadBody(String),
    /// No order with this id is known here (never existed, or long gone).
    #[error("unknown order {0}")]
    UnknownOrder(Uuid),
    /// The order already ended: answered before (a replay), timed out, or cancelled.
    #[error("order {0} is no longer pending")]
    NotPending(Uuid),
}

impl Refusal {
    /// A short token for logs and the response body.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Signature(SignatureError::Missing) => "unsigned",
            Refusal::Signature(SignatureError::Malformed) => "malformed-signature",
            Refusal::Signature(SignatureError::Mismatch) => "bad-signature",
            Refusal::Signature(SignatureError::Stale { .. }) => "stale-timestamp",
            Refusal::BadBody(_) => "bad-body",
            Refusal::UnknownOrder(_) => "unknown-order",
            Refusal::NotPending(_) => "not-pending",
        }
    }

    /// The order it was about, once the signature was good.
    pub fn order(&self) -> Option<Uuid> {
        match self {
            Refusal::UnknownOrder(order) | Refusal::NotPending(order) => Some(*order),
            _ => None,
        }
    }
}

/// The callback body as sent. Unknown fields are ignored (room for later additions).
#[derive(Deserialize)]
struct CallbackBody {
    order: Uuid,
    status: Status,
    personal_number: Option<String>,
    name: Option<String>,
}

/// `status` in a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Status {
    Approved,
    Declined,
    NotInCall,
    Expired,
    Failed,
}

impl CallbackBody {
    /// The update this callback ends its order with.
    fn update(self) -> Result<VerifyUpdate, Refusal> {
        Ok(match self.status {
            Status::Approved => VerifyUpdate::Complete(self.person()?),
            Status::Declined => VerifyUpdate::Failed(Failure::Declined),
            Status::NotInCall => VerifyUpdate::Failed(Failure::NotInCall),
            Status::Expired => VerifyUpdate::Failed(Failure::Timeout),
            Status::Failed => VerifyUpdate::Failed(Failure::Provider(
                "the company backend reported the push failed".to_owned(),
            )),
        })
    }

    /// The person an `approved` callback vouches for.
    fn person(&self) -> Result<VerifiedPerson, Refusal> {
        let raw = self.personal_number.as_deref().ok_or_else(|| {
            Refusal::BadBody("approved needs personal_number (12 digits)".to_owned())
        })?;
        let personal_number = PersonalNumber::parse(raw)
            .map_err(|e| Refusal::BadBody(format!("personal_number: {e}")))?;
        let name = self
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| PersonName::new(n.to_owned()));
        Ok(VerifiedPerson {
            personal_number,
            name,
        })
    }
}

/// Parses a signed body; serde's message is not kept, as it can quote the body's values.
fn parse(body: &[u8]) -> Result<CallbackBody, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Refusal::BadBody(format!(
            "expected JSON {{order, status, personal_number, name}} ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

impl Callbacks {
    /// An empty hub checking signatures with `key` and timestamps against `max_skew_secs`.
    pub fn new(key: SigningKey, max_skew_secs: u64) -> Self {
        Self {
            hub: Arc::new(Hub {
                key,
                max_skew_secs,
                orders: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Checks a callback (signature, timestamp, body, order) and, if it answers a pending
    /// order, ends that order with it. `now` is unix seconds. Returns the order answered.
    pub fn deliver(
        &self,
        headers: SignedHeaders<'_>,
        body: &[u8],
        now: u64,
    ) -> Result<Uuid, Refusal> {
        let max_skew = self.hub.max_skew_secs;
        let key = &self.hub.key;
        key.verify(headers.timestamp, headers.signature, body, now, max_skew)?;
        let callback = parse(body)?;
        let order = callback.order;
        let update = callback.update()?;
        let mut orders = self.lock();
        forget_old(&mut orders, now);
        match orders.get(&order) {
            None => return Err(Refusal::UnknownOrder(order)),
            Some(Slot::Ended { .. }) => return Err(Refusal::NotPending(order)),
            Some(Slot::Pending(_)) => {}
        }
        let ended = Slot::Ended {
            forget_at: self.forget_at(now),
        };
        if let Some(Slot::Pending(tx)) = orders.insert(order, ended) {
            // The order may have just stopped waiting; then the callback is moot.
            let _ = tx.send(update);
        }
        Ok(order)
    }

    /// Registers a new order; its callback arrives on the receiver. The order stays pending
    /// until the guard is dropped.
    pub(super) fn register(&self, order: Uuid) -> (PendingOrder, oneshot::Receiver<VerifyUpdate>) {
        let (tx, rx) = oneshot::channel();
        let mut orders = self.lock();
        forget_old(&mut orders, unix_now());
        orders.insert(order, Slot::Pending(tx));
        let guard = PendingOrder {
            callbacks: self.clone(),
            order,
        };
        (guard, rx)
    }

    /// How many orders wait for their callback.
    pub fn pending(&self) -> usize {
        let orders = self.lock();
        orders
            .values()
            .filter(|s| matches!(s, Slot::Pending(_)))
            .count()
    }

    /// When an order ending `now` is forgotten: a replay signed up to `max_skew` in the future
    /// stays acceptable by timestamp until `now + 2 * max_skew`.
    fn forget_at(&self, now: u64) -> u64 {
        now.saturating_add(self.hub.max_skew_secs.saturating_mul(2))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Slot>> {
        // The map stays consistent whatever panicked while holding it: use it anyway.
        self.hub
            .orders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Drops ended orders past their time.
fn forget_old(orders: &mut HashMap<Uuid, Slot>, now: u64) {
    orders.retain(|_, slot| match slot {
        Slot::Pending(_) => true,
        Slot::Ended { forget_at } => *forget_at > now,
    });
}

/// A registered order; dropping it ends the order in the hub (any later callback gets 409).
#[derive(Debug)]
pub(super) struct PendingOrder {
    callbacks: Callbacks,
    order: Uuid,
}

impl Drop for PendingOrder {
    fn drop(&mut self) {
        let now = unix_now();
        let ended = Slot::Ended {
            forget_at: self.callbacks.forget_at(now),
        };
        let mut orders = self.callbacks.lock();
        if let Some(slot @ Slot::Pending(_)) = orders.get_mut(&self.order) {
            *slot = ended;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn hub() -> (Callbacks, SigningKey) {
        let key = SigningKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        (Callbacks::new(key.clone(), 300), key)
    }

    fn deliver(
        hub: &Callbacks,
        key: &SigningKey,
        body: &str,
        ts: u64,
        now: u64,
    ) -> Result<Uuid, Refusal> {
        let ts_text = ts.to_string();
        let sig = key.sign(ts, body.as_bytes());
        let headers = SignedHeaders {
            timestamp: Some(&ts_text),
            signature: Some(&sig),
        };
        hub.deliver(headers, body.as_bytes(), now)
    }

    fn body(order: Uuid, rest: &str) -> String {
        format!(r#"{{"order":"{order}",{rest}}}"#)
    }

    #[test]
    fn each_status_maps_to_its_update() {
        let (hub, key) = hub();
        let cases = [
            (
                r#""status":"declined""#,
                VerifyUpdate::Failed(Failure::Declined),
            ),
            (
                r#""status":"not-in-call""#,
                VerifyUpdate::Failed(Failure::NotInCall),
            ),
            (
                r#""status":"expired""#,
                VerifyUpdate::Failed(Failure::Timeout),
            ),
        ];
        for (rest, expected) in cases {
            let order = Uuid::new_v4();
            let (_guard, mut rx) = hub.register(order);
            assert_eq!(deliver(&hub, &key, &body(order, rest), NOW, NOW), Ok(order));
            assert_eq!(rx.try_recv(), Ok(expected));
        }
        let order = Uuid::new_v4();
        let (_guard, mut rx) = hub.register(order);
        let approved =
            r#""status":"approved","personal_number":"198001019804","name":" Ann ","x":1"#;
        deliver(&hub, &key, &body(order, approved), NOW, NOW).unwrap();
        let Ok(VerifyUpdate::Complete(person)) = rx.try_recv() else {
            panic!("not complete");
        };
        assert_eq!(person.personal_number.as_digits(), "198001019804");
        assert_eq!(
            person.name.map(|n| n.as_str().to_owned()),
            Some("Ann".to_owned())
        );
    }

    #[test]
    fn a_bad_body_leaves_the_order_pending_and_never_echoes_values() {
        let (hub, key) = hub();
        let order = Uuid::new_v4();
        let (_guard, mut rx) = hub.register(order);
        let bad = [
            body(order, r#""status":"approved""#),
            body(
                order,
                r#""status":"approved","personal_number":"198001019805""#,
            ),
            body(
                order,
                r#""status":"approved","personal_number":198001019804"#,
            ),
            body(order, r#""status":"maybe""#),
            "not json".to_owned(),
        ];
        for b in bad {
            let e = deliver(&hub, &key, &b, NOW, NOW).unwrap_err();
            assert_eq!(e.kind(), "bad-body", "{b}");
            assert!(!e.to_string().contains("19800101"), "{e}");
        }
        assert!(rx.try_recv().is_err());
        assert_eq!(hub.pending(), 1);
    }

    #[test]
    fn replays_late_and_unknown_orders() {
        let (hub, key) = hub();
        let order = Uuid::new_v4();
        let (guard, _rx) = hub.register(order);
        let declined = body(order, r#""status":"declined""#);
        assert_eq!(deliver(&hub, &key, &declined, NOW, NOW), Ok(order));
        assert_eq!(
            deliver(&hub, &key, &declined, NOW, NOW + 10),
            Err(Refusal::NotPending(order))
        );
        drop(guard);
        // An order that stopped waiting (timeout, cancel) refuses its late callback.
        let late = Uuid::new_v4();
        drop(hub.register(late));
        let now = unix_now();
        let refused = deliver(&hub, &key, &body(late, r#""status":"declined""#), now, now);
        assert_eq!(refused, Err(Refusal::NotPending(late)));
        let unknown = Uuid::new_v4();
        let refused = deliver(
            &hub,
            &key,
            &body(unknown, r#""status":"declined""#),
            NOW,
            NOW,
        );
        assert_eq!(
            refused.as_ref().map_err(Refusal::kind),
            Err("unknown-order")
        );
        assert_eq!(hub.pending(), 0);
    }

    #[test]
    fn ended_orders_are_forgotten_after_twice_the_skew() {
        let (hub, key) = hub();
        let order = Uuid::new_v4();
        let (_guard, _rx) = hub.register(order);
        let declined = body(order, r#""status":"declined""#);
        deliver(&hub, &key, &declined, NOW, NOW).unwrap();
        let later = NOW + 600;
        assert_eq!(
            deliver(&hub, &key, &declined, later, later),
            Err(Refusal::UnknownOrder(order))
        );
    }

    #[test]
    fn signature_refusals_come_first() {
        let (hub, key) = hub();
        let order = Uuid::new_v4();
        let (_guard, _rx) = hub.register(order);
        let declined = body(order, r#""status":"declined""#);
        let other = SigningKey::new(b"another secret, 32 bytes or more").unwrap();
        let kind = |r: Result<Uuid, Refusal>| r.unwrap_err().kind();
        assert_eq!(
            kind(deliver(&hub, &other, &declined, NOW, NOW)),
            "bad-signature"
        );
        assert_eq!(
            kind(deliver(&hub, &key, &declined, NOW - 301, NOW)),
            "stale-timestamp"
        );
        let unsigned = hub.deliver(SignedHeaders::default(), declined.as_bytes(), NOW);
        assert_eq!(kind(unsigned), "unsigned");
        assert_eq!(hub.pending(), 1);
    }
}
