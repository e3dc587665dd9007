//! One order's task: `phone/auth`, then `collect` every poll interval until BankID gives a final
//! status, the order is cancelled (then `cancel`), or three collects in a row fail.
//!
//! Logs carry the call id and status words only: never the orderRef, the personal number, the
//! name or a request body.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::api::{Collected, Completion};
use super::client::{Api, ApiError};
use super::config::Settings;
use crate::verify::{Failure, Hint, OrderRef, VerifyUpdate};

/// Consecutive failed collects after which the order is given up.
pub(super) const MAX_TRANSPORT_FAILURES: u32 = 3;

/// Where the evidence of completed orders goes (see [`Completion`]).
pub(super) type CompletionSink = Arc<dyn Fn(Uuid, Completion) + Send + Sync>;

/// Everything one order's task needs.
pub(super) struct Order {
    /// The RP API client.
    pub api: Api,
    /// Poll interval and the like.
    pub settings: Arc<Settings>,
    /// idgate's call id, for logs.
    pub call_id: Uuid,
    /// Where updates go.
    pub updates: mpsc::Sender<VerifyUpdate>,
    /// Cancelled when the `Verification` is cancelled or dropped.
    pub cancel: CancellationToken,
    /// Where the evidence of a completion goes.
    pub on_completion: Option<CompletionSink>,
    /// Set to the `orderRef` once the order exists (for the audit trail).
    pub order_ref: OrderRef,
}

/// How the collect loop ended.
enum End {
    /// BankID gave a final status (or an answer that ends the order): report it.
    Final(VerifyUpdate),
    /// We stop on our side: report this failure and cancel the order at BankID.
    GiveUp(Failure),
    /// The order was cancelled (or nobody listens any more): cancel it at BankID, report nothing.
    Cancelled,
}

impl Order {
    /// Runs the order to its end, starting it with the `/phone/auth` request `auth`.
    pub async fn run(self, auth: super::api::PhoneAuthRequest) {
        // Not raced against the cancel token: if the order was created, we need its orderRef
        // to cancel it. The request timeout bounds the wait.
        let order_ref = match self.api.phone_auth(&auth).await {
            Ok(order_ref) => order_ref,
            Err(e) => {
                tracing::warn!(call = %self.call_id, error = %e, "bankid phone/auth failed");
                let _ = self.updates.send(VerifyUpdate::Failed(e.failure())).await;
                return;
            }
        };
        drop(auth);
        self.order_ref.set(&order_ref);
        tracing::info!(call = %self.call_id, "bankid order started");
        let end = if self.cancel.is_cancelled() || !self.send(Hint::Sent).await {
            End::Cancelled
        } else {
            self.collect_loop(&order_ref).await
        };
        self.finish(end, &order_ref).await;
    }

    /// Reports `Pending(hint)`; false if nobody listens.
    async fn send(&self, hint: Hint) -> bool {
        self.updates.send(VerifyUpdate::Pending(hint)).await.is_ok()
    }

    /// Collects every poll interval until the order ends.
    async fn collect_loop(&self, order_ref: &str) -> End {
        let mut ticks = tokio::time::interval(self.settings.poll_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last = Hint::Sent;
        let mut failures = 0;
        loop {
            let answer = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return End::Cancelled,
                answer = async {
                    ticks.tick().await;
                    self.api.collect(order_ref).await
                } => answer,
            };
            let collected = match answer {
                Ok(response) => super::api::collected(response),
                Err(e) => match self.failed_collect(e, &mut failures) {
                    Some(end) => return end,
                    None => continue,
                },
            };
            failures = 0;
            match collected {
                Collected::Pending(Some(hint)) if hint != last => {
                    tracing::debug!(call = %self.call_id, ?hint, "bankid order progress");
                    last = hint;
                    if !self.send(hint).await {
                        return End::Cancelled;
                    }
                }
                Collected::Pending(_) => {}
                Collected::Failed(failure) => return End::Final(VerifyUpdate::Failed(failure)),
                Collected::Complete(person, completion) => {
                    if let Some(sink) = &self.on_completion {
                        sink(self.call_id, *completion);
                    }
                    return End::Final(VerifyUpdate::Complete(person));
                }
            }
        }
    }

    /// Counts a failed collect: `None` to try again at the next tick, or how the order ends.
    fn failed_collect(&self, error: ApiError, failures: &mut u32) -> Option<End> {
        tracing::warn!(call = %self.call_id, error = %error, "bankid collect failed");
        if !error.is_transient() {
            return Some(End::GiveUp(error.failure()));
        }
        *failures += 1;
        if *failures < MAX_TRANSPORT_FAILURES {
            return None;
        }
        let detail = format!("bankid: {MAX_TRANSPORT_FAILURES} collects in a row failed: {error}");
        Some(End::GiveUp(Failure::Provider(detail)))
    }

    /// Reports the end and cancels the order at BankID when it is still running there.
    async fn finish(self, end: End, order_ref: &str) {
        match end {
            End::Final(update) => {
                let outcome = match &update {
                    VerifyUpdate::Failed(failure) => failure.to_string(),
                    _ => "complete".to_owned(),
                };
                tracing::info!(call = %self.call_id, %outcome, "bankid order ended");
                let _ = self.updates.send(update).await;
            }
            End::GiveUp(failure) => {
                tracing::warn!(call = %self.call_id, %failure, "bankid order given up");
                let _ = self.updates.send(VerifyUpdate::Failed(failure)).await;
                self.cancel_at_bankid(order_ref).await;
            }
            End::Cancelled => {
                tracing::info!(call = %self.call_id, "bankid order cancelled");
                self.cancel_at_bankid(order_ref).await;
            }
        }
    }

    /// `POST cancel`, once, bounded by the request timeout; a failure is only logged.
    async fn cancel_at_bankid(&self, order_ref: &str) {
        if let Err(e) = self.api.cancel(order_ref).await {
            tracing::warn!(call = %self.call_id, error = %e, "bankid cancel failed");
        }
    }
}
