//! The contract every provider keeps, run against each provider and its local fake: an approved
//! order completes with the right person, each failure maps to its reason, a provider that
//! fails never leaves the caller waiting, and a cancelled order reaches the fake.

use std::time::Duration;

use tokio::time::timeout;
use uuid::Uuid;

use super::{Failure, Provider, Subject, VerifyRequest, VerifyUpdate};
use crate::identity::PersonalNumber;

/// What a fake answers for one person's orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripted {
    /// The person confirms in the app.
    Approve,
    /// The person cancels in the app.
    Decline,
    /// The person says they are not in a call with us.
    NotInCall,
    /// The order expires unanswered.
    Expire,
    /// The provider answers 5xx.
    ServerError,
}

/// How a contract test steers a fake.
pub trait FakeControl: Sync {
    /// What the fake answers for this person's orders from now on.
    fn script(&self, person: &PersonalNumber, outcome: Scripted);
    /// How many orders the fake has seen cancelled.
    fn cancelled(&self) -> usize;
    /// Whether the provider can say "the person is not in a call with us" (BankID's
    /// `userDeclinedCall`); Freja cannot.
    fn has_not_in_call(&self) -> bool {
        true
    }
}

/// How long one order may take in a contract test (fakes are configured to be fast).
const LIMIT: Duration = Duration::from_secs(20);

/// Runs the whole contract. `people` must hold five distinct valid personal numbers.
pub async fn run(provider: &dyn Provider, fake: &dyn FakeControl, people: [&str; 5]) {
    let [approve, decline, not_in_call, expire, error] = people.map(person);
    fake.script(&approve, Scripted::Approve);
    match final_update(provider, &approve).await {
        VerifyUpdate::Complete(p) => assert_eq!(p.personal_number, approve, "the completed person"),
        other => panic!("approve: expected Complete, got {other:?}"),
    }
    let cases = [
        (decline, Scripted::Decline, Failure::Declined),
        (not_in_call, Scripted::NotInCall, Failure::NotInCall),
        (expire, Scripted::Expire, Failure::Timeout),
    ];
    let asked = |script: &Scripted| *script != Scripted::NotInCall || fake.has_not_in_call();
    for (who, script, expected) in cases.into_iter().filter(|(_, s, _)| asked(s)) {
        fake.script(&who, script);
        assert_eq!(
            final_update(provider, &who).await,
            VerifyUpdate::Failed(expected),
            "{script:?}"
        );
    }
    fake.script(&error, Scripted::ServerError);
    match final_update(provider, &error).await {
        VerifyUpdate::Failed(Failure::Provider(_)) => {}
        other => panic!("server error: expected Failed(Provider), got {other:?}"),
    }
    cancel_reaches_the_fake(provider, fake, &approve).await;
}

fn person(digits: &str) -> PersonalNumber {
    PersonalNumber::parse(digits).unwrap_or_else(|e| panic!("contract person {digits}: {e}"))
}

fn request(who: &PersonalNumber) -> VerifyRequest {
    VerifyRequest {
        call_id: Uuid::new_v4(),
        subject: Subject::Person(who.clone()),
        language: "sv",
        intent: None,
    }
}

/// Starts an order and returns its final update; the channel must not close before one.
async fn final_update(provider: &dyn Provider, who: &PersonalNumber) -> VerifyUpdate {
    let mut order = provider.start(request(who));
    let result = timeout(LIMIT, async {
        while let Some(update) = order.updates.recv().await {
            if !matches!(update, VerifyUpdate::Pending(_)) {
                return Some(update);
            }
        }
        None
    })
    .await;
    match result {
        Ok(Some(update)) => update,
        Ok(None) => panic!("the order's updates ended without a final update"),
        Err(_) => panic!("no final update within {LIMIT:?}"),
    }
}

/// A cancelled order (the caller hung up) is cancelled at the provider too.
async fn cancel_reaches_the_fake(
    provider: &dyn Provider,
    fake: &dyn FakeControl,
    who: &PersonalNumber,
) {
    fake.script(who, Scripted::Expire);
    let before = fake.cancelled();
    let mut order = provider.start(request(who));
    // Wait until the order exists at the provider (its first Pending), then hang up.
    let first = timeout(LIMIT, order.updates.recv()).await;
    assert!(
        matches!(first, Ok(Some(VerifyUpdate::Pending(_)))),
        "first update: {first:?}"
    );
    order.cancel();
    drop(order);
    let waited = timeout(LIMIT, async {
        while fake.cancelled() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the fake never saw the cancel");
}
