//! One task per call: it feeds the call's [`Flow`](crate::flow::Flow) its inputs and carries
//! out the flow's actions through `sip`, `media`, `verify` and `store`. Decisions belong to
//! the flow; this module only does what it is told and reports what happened.

mod policy;
mod setup;
mod task;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::Dialplan;
use crate::identity::headers::HeaderOptions;
use crate::media::{MediaEngine, PromptSet};
use crate::sip::{IncomingCall, SipStack};
use crate::store::Store;
use crate::verify::Provider;

/// Everything a call task needs, shared by all calls.
pub struct Services {
    /// The SIP stack (for the queue leg).
    pub sip: SipStack,
    /// The media engine (RTP streams).
    pub media: MediaEngine,
    /// Prompt sets by language ("sv", "en").
    pub prompts: HashMap<String, Arc<PromptSet>>,
    /// The identity provider.
    pub provider: Arc<dyn Provider>,
    /// The database.
    pub store: Store,
    /// The routes.
    pub dialplan: Dialplan,
    /// How identity headers are written.
    pub headers: HeaderOptions,
    /// Signs `X-Identity-Token` and holds the keys served as the JWKS.
    pub tokens: crate::identity::token::TokenIssuer,
    /// The address written in SDP.
    pub media_ip: IpAddr,
    /// Live calls.
    pub registry: Registry,
    /// The anti push-bombing limits.
    pub limits: crate::store::PushLimits,
    /// Where `POST /v1/app-push/callback` delivers callbacks: the app-push provider's pending
    /// orders (`Some` only when `provider.kind = "app-push"`).
    pub app_push: Option<crate::verify::app_push::Callbacks>,
    /// The customer directory caller numbers are looked up in (`[directory]`).
    pub directory: crate::verify::directory::Directory,
}

/// The live calls of this instance (read by the `api` module).
#[derive(Default)]
pub struct Registry {
    active: AtomicU64,
    total: AtomicU64,
}

impl Registry {
    /// Calls in progress.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Calls taken since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn enter(&self) -> ActiveGuard<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self)
    }
}

struct ActiveGuard<'a>(&'a Registry);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes incoming calls until the SIP layer closes the channel; one task per call.
pub async fn run_intake(services: Arc<Services>, mut calls: mpsc::Receiver<IncomingCall>) {
    while let Some(call) = calls.recv().await {
        let services = services.clone();
        tokio::spawn(async move {
            let id = Uuid::new_v4();
            let span = tracing::info_span!("call", call = %id);
            let _active = services.registry.enter();
            tracing::Instrument::instrument(task::run(&services, id, call), span).await;
        });
    }
}
