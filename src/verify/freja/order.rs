//! One Freja authentication, from `initAuthentication` to a final status: the task that polls
//! `getOneResult`, maps statuses to [`VerifyUpdate`]s, and cancels at Freja when idgate no
//! longer wants the answer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::api::{AuthResult, InitAuthRequest, Status, jws_payload};
use super::client::FrejaClient;
use crate::identity::{PersonName, PersonalNumber, VerifiedPerson};
use crate::verify::{Failure, Hint, OrderRef, VerifyUpdate};

/// How long an order is polled before idgate gives up on it (Freja gives the user about two
/// minutes; this only guards against an order that never reaches a final status).
pub const ORDER_DEADLINE: Duration = Duration::from_secs(180);

/// What one order needs.
#[derive(Debug)]
pub struct Order {
    /// The client.
    pub client: Arc<FrejaClient>,
    /// The `initAuthRequest` to send.
    pub request: InitAuthRequest,
    /// Time between polls.
    pub poll_interval: Duration,
    /// The country the returned SSN must belong to.
    pub country: String,
    /// idgate's call id, for logs.
    pub call_id: Uuid,
    /// Set to the `authRef` once the order exists (for the audit trail).
    pub order_ref: OrderRef,
}

/// What a `getOneResult` answer means for idgate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not final yet.
    Pending(Hint),
    /// Final: report this and stop.
    Done(VerifyUpdate),
}

/// Maps a result. `STARTED` and `DELIVERED_TO_MOBILE` are both `Sent`: delivery to the phone
/// does not mean the user opened the app. `REJECTED` (rejected by Freja for security reasons)
/// is reported as `NotInCall`, idgate's fraud signal; `RP_CANCELED` seen while polling means
/// another relying party's order for the same user cancelled ours (idgate stops polling once
/// it cancels), so it is a provider error.
pub fn step(result: &AuthResult, country: &str) -> Step {
    let failed = |failure| Step::Done(VerifyUpdate::Failed(failure));
    match result.status {
        Status::Started | Status::DeliveredToMobile => Step::Pending(Hint::Sent),
        Status::Approved => Step::Done(match approved_person(result, country) {
            Ok(person) => VerifyUpdate::Complete(person),
            Err(detail) => VerifyUpdate::Failed(Failure::Provider(detail.to_owned())),
        }),
        Status::Canceled => failed(Failure::Declined),
        // Freja refused the request (its own security checks), not the person: a provider
        // failure. Freja has no "I am not in a call" answer.
        Status::Rejected => failed(Failure::Provider("rejected by Freja".to_owned())),
        Status::Expired => failed(Failure::Timeout),
        Status::RpCanceled => failed(Failure::Provider(
            "RP_CANCELED: cancelled by a relying party (a concurrent order for this user)".into(),
        )),
    }
}

/// The person in an approval's `details` JWS (signature not verified: see
/// [`super::api::jws_payload`]).
fn approved_person(result: &AuthResult, country: &str) -> Result<VerifiedPerson, &'static str> {
    let jws = result
        .details
        .as_deref()
        .ok_or("APPROVED without details")?;
    let payload = jws_payload(jws).map_err(|_| "APPROVED with unreadable details")?;
    if payload.auth_ref != result.auth_ref || payload.status != Status::Approved {
        return Err("details do not match the order");
    }
    let attributes = payload.requested_attributes;
    let ssn = attributes.ssn.ok_or("APPROVED without the SSN attribute")?;
    if ssn.country != country {
        return Err("the SSN attribute is from another country");
    }
    let personal_number = PersonalNumber::parse(&ssn.ssn)
        .map_err(|_| "the SSN attribute is not a personal identity number")?;
    let name = attributes
        .basic_user_info
        .map(|b| PersonName::new(format!("{} {}", b.name, b.surname).trim().to_owned()));
    Ok(VerifiedPerson {
        personal_number,
        name,
    })
}

/// How polling ended.
enum End {
    /// A final status: report it; nothing to cancel.
    Final(VerifyUpdate),
    /// idgate gave up (error, deadline): report it and cancel at Freja.
    Abandon(VerifyUpdate),
    /// idgate no longer wants the answer: cancel at Freja, report nothing.
    Cancelled,
}

/// The order's task. The init request is never interrupted, so an order that exists at Freja
/// is always known here and cancelled if idgate stops waiting for it.
pub async fn run(order: Order, tx: mpsc::Sender<VerifyUpdate>, cancel: CancellationToken) {
    let call = order.call_id;
    let auth_ref = match order.client.init(&order.request).await {
        Ok(auth_ref) => auth_ref,
        Err(e) => {
            tracing::info!(%call, error = %e, "freja initAuthentication failed");
            let _ = tx.send(VerifyUpdate::Failed(e.failure())).await;
            return;
        }
    };
    order.order_ref.set(&auth_ref);
    let gone = cancel.is_cancelled() || tx.send(VerifyUpdate::Pending(Hint::Sent)).await.is_err();
    let end = if gone {
        End::Cancelled
    } else {
        poll(&order, &auth_ref, &tx, &cancel).await
    };
    match end {
        End::Final(update) => {
            let _ = tx.send(update).await;
        }
        End::Abandon(update) => {
            let _ = tx.send(update).await;
            cancel_at_freja(&order, &auth_ref).await;
        }
        End::Cancelled => cancel_at_freja(&order, &auth_ref).await,
    }
}

/// Polls until a final status, an error, the deadline, or cancellation.
async fn poll(
    order: &Order,
    auth_ref: &str,
    tx: &mpsc::Sender<VerifyUpdate>,
    cancel: &CancellationToken,
) -> End {
    let deadline = Instant::now() + ORDER_DEADLINE;
    let mut hint = Hint::Sent;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return End::Cancelled,
            () = sleep(order.poll_interval) => {}
        }
        if Instant::now() >= deadline {
            return End::Abandon(VerifyUpdate::Failed(Failure::Timeout));
        }
        let result = match order.client.get_one_result(auth_ref).await {
            Ok(result) => result,
            Err(e) => {
                tracing::info!(call = %order.call_id, error = %e, "freja getOneResult failed");
                return End::Abandon(VerifyUpdate::Failed(e.failure()));
            }
        };
        if cancel.is_cancelled() {
            return End::Cancelled;
        }
        match step(&result, &order.country) {
            Step::Done(update) => return End::Final(update),
            Step::Pending(now) if now != hint => {
                hint = now;
                if tx.send(VerifyUpdate::Pending(now)).await.is_err() {
                    return End::Cancelled;
                }
            }
            Step::Pending(_) => {}
        }
    }
}

/// `cancel` at Freja, best effort (the order expires on its own if this fails).
async fn cancel_at_freja(order: &Order, auth_ref: &str) {
    match order.client.cancel(auth_ref).await {
        Ok(()) => tracing::debug!(call = %order.call_id, "freja order cancelled"),
        Err(e) => tracing::info!(call = %order.call_id, error = %e, "freja cancel failed"),
    }
}
