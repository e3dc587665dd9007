//! One task per call: it feeds the call's [`Flow`](crate::flow::Flow) its inputs and carries
//! out the flow's actions through `sip`, `media`, `verify` and `store`. Decisions belong to
//! the flow; this module only does what it is told and reports what happened.

mod admission;
mod audit;
mod live;
mod policy;
mod setup;
mod task;

pub use admission::{Admission, CallGate, Refusal};
pub use live::{
    CallView, ENDED_RETENTION, NewLiveCall, Phase, Registry, ReverifyError, ReverifyView,
};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

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
    /// Whether the caller leg may, must or must not use SDES-SRTP (`[media] srtp`).
    pub srtp: crate::media::srtp::SrtpPolicy,
    /// Live calls.
    pub registry: Arc<Registry>,
    /// The anti push-bombing limits.
    pub limits: crate::store::PushLimits,
    /// Where `POST /v1/app-push/callback` delivers callbacks: the app-push provider's pending
    /// orders (`Some` only when `provider.kind = "app-push"`).
    pub app_push: Option<crate::verify::app_push::Callbacks>,
    /// The customer directory caller numbers are looked up in (`[directory]`).
    pub directory: crate::verify::directory::Directory,
    /// What `/metrics` exports.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Overload limits and draining.
    pub admission: Arc<Admission>,
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
