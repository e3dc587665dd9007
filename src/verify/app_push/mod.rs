//! The company-app push provider: the company's own app, with its own strong login, confirms
//! the caller. idgate POSTs a signed push request to the company backend (`url`), the backend
//! pushes to the customer's app, and when the customer has answered it POSTs a signed result
//! to idgate's `POST /v1/app-push/callback`. Both directions are signed with HMAC-SHA256
//! ([`signature`]). The README section "Company app push" is the backend developer's spec.
//!
//! - [`AppPush`]: the [`Provider`]; one task per order (push, then wait for the callback or
//!   `order_timeout_secs`, cancel at the backend if the caller hangs up).
//! - [`Callbacks`]: the hub that connects the orders to the callback endpoint in `api`.
//! - [`fake`]: a fake company backend for tests and demos.

mod callbacks;
mod client;
mod config;
pub mod fake;
pub mod signature;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use callbacks::{Callbacks, Refusal, SignedHeaders};
pub use config::{AppPushConfig, Secret};

use super::{
    Failure, Hint, OrderRef, Provider, SetupError, Verification, VerifyRequest, VerifyUpdate,
};
use crate::identity::Method;
use callbacks::PendingOrder;
use client::Backend;

/// The company-app push provider. Cheap to clone; clones share the backend client and the
/// [`Callbacks`] hub.
#[derive(Debug, Clone)]
pub struct AppPush {
    backend: Arc<Backend>,
    callbacks: Callbacks,
    order_timeout: Duration,
}

impl AppPush {
    /// The provider `[provider.app-push]` describes, with a new [`Callbacks`] hub: reads the
    /// secret file and the CA file, and sets up TLS. Its callbacks arrive only if the hub is
    /// mounted on the HTTP API (see [`setup`]).
    pub fn from_config(config: &AppPushConfig) -> Result<AppPush, SetupError> {
        let settings = config.settings()?;
        Ok(AppPush {
            backend: Arc::new(Backend::new(&settings)?),
            callbacks: Callbacks::new(settings.key.clone(), settings.max_skew_secs),
            order_timeout: settings.order_timeout,
        })
    }

    /// The hub the callback endpoint delivers this provider's callbacks to.
    pub fn callbacks(&self) -> Callbacks {
        self.callbacks.clone()
    }
}

impl Provider for AppPush {
    fn method(&self) -> Method {
        Method::AppPush
    }

    fn supports_phone(&self) -> bool {
        true
    }

    fn start(&self, request: VerifyRequest) -> Verification {
        let id = Uuid::new_v4();
        // Registered before the push is sent: a fast backend may call back before it answers.
        let (pending, callback) = self.callbacks.register(id);
        tracing::debug!(call = %request.call_id, order = %id, "app-push order");
        let order = Order {
            id,
            request,
            backend: Arc::clone(&self.backend),
            order_timeout: self.order_timeout,
            callback,
            pending,
        };
        let (tx, rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        tokio::spawn(order.run(tx, cancel.clone()));
        // The order id is idgate's own, known before the push is sent.
        let order_ref = OrderRef::default();
        order_ref.set(&id.to_string());
        Verification::new(rx, cancel).with_order_ref(order_ref)
    }
}

/// One order's task state. Dropping it ends the order in the hub.
struct Order {
    id: Uuid,
    request: VerifyRequest,
    backend: Arc<Backend>,
    order_timeout: Duration,
    callback: oneshot::Receiver<VerifyUpdate>,
    /// Keeps the order pending in the hub (and its callback sender alive) until dropped.
    pending: PendingOrder,
}

impl Order {
    /// Pushes, then waits for the callback or the order timeout; if the `Verification` is
    /// cancelled or dropped first, cancels at the backend and sends nothing more.
    async fn run(mut self, tx: mpsc::Sender<VerifyUpdate>, cancel: CancellationToken) {
        let last = tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            last = self.drive(&tx) => Some(last),
        };
        let Order {
            id,
            request,
            backend,
            pending,
            ..
        } = self;
        // The order ends in the hub first: from now on its callback is answered 409.
        drop(pending);
        let call = request.call_id;
        let Some(last) = last else {
            backend.cancel(id, call).await;
            return;
        };
        if let VerifyUpdate::Failed(failure) = &last {
            tracing::info!(%call, order = %id, %failure, "app-push order failed");
        }
        if last == VerifyUpdate::Failed(Failure::Timeout) {
            // Withdraw the push from the app, without holding up the verdict.
            tokio::spawn(async move { backend.cancel(id, call).await });
        }
        let _ = tx.send(last).await;
    }

    /// The push and the wait; returns the final update.
    async fn drive(&mut self, tx: &mpsc::Sender<VerifyUpdate>) -> VerifyUpdate {
        if let Err(failure) = self.backend.push(self.id, &self.request).await {
            return VerifyUpdate::Failed(failure);
        }
        // A closed channel means the handle is gone, and `cancel` fires in `run`.
        let _ = tx.send(VerifyUpdate::Pending(Hint::Sent)).await;
        match tokio::time::timeout(self.order_timeout, &mut self.callback).await {
            Ok(Ok(update)) => update,
            // The hub keeps the sender while the order is pending (`pending` holds it there).
            Ok(Err(_)) => VerifyUpdate::Failed(Failure::Provider("callback hub closed".into())),
            Err(_) => VerifyUpdate::Failed(Failure::Timeout),
        }
    }
}
