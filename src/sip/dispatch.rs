//! The loop over incoming server transactions: in-dialog requests go to their dialog, new
//! INVITEs become [`IncomingCall`]s, everything else gets its final response here.

use rsipstack::sip::{Header, HeadersExt, Method, StatusCode};
use rsipstack::transaction::{TransactionReceiver, transaction::Transaction};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::challenge;
use super::intake::ALLOW;
use super::leg::CallerLeg;
use super::message::{from_display_name, inbound_headers};
use super::screen::screen;
use super::{IncomingCall, SipStack};
use crate::identity::caller::request_uri_user;

pub(super) async fn run(
    stack: SipStack,
    mut incoming: TransactionReceiver,
    calls: mpsc::Sender<IncomingCall>,
    cancel: CancellationToken,
) {
    loop {
        let tx = tokio::select! {
            _ = cancel.cancelled() => break,
            tx = incoming.recv() => match tx {
                Some(tx) => tx,
                None => break,
            },
        };
        let stack = stack.clone();
        let calls = calls.clone();
        tokio::spawn(async move { handle(stack, tx, calls).await });
    }
}

async fn handle(stack: SipStack, mut tx: Transaction, calls: mpsc::Sender<IncomingCall>) {
    // RFC 3261 §8.2: method inspection (405 below) comes first, so only served methods are
    // inspected for extensions and content.
    let served = ALLOW
        .split(", ")
        .any(|m| m == tx.original.method.to_string());
    if let Some(refusal) = served.then(|| screen(&tx.original)).flatten() {
        debug!(status = %refusal.status, "request refused on inspection");
        if let Err(e) = tx.reply_with(refusal.status, refusal.headers, None).await {
            debug!(error = %e, "could not send final response");
        }
        return;
    }
    if let Some(mut dialog) = stack.inner.dialogs.match_dialog(&tx) {
        if let Err(e) = dialog.handle(&mut tx).await {
            debug!(error = %e, "in-dialog request failed");
        }
        return;
    }
    let status = match tx.original.method {
        Method::Invite if has_to_tag(&tx) => StatusCode::CallTransactionDoesNotExist,
        Method::Invite => return new_invite(stack, tx, calls).await,
        Method::Ack => return, // a stray ACK gets no response (RFC 3261 §17.2.3)
        Method::Options => return options(&stack, tx).await,
        Method::Bye
        | Method::Cancel
        | Method::Info
        | Method::Update
        | Method::PRack
        | Method::Notify
        | Method::Refer => StatusCode::CallTransactionDoesNotExist,
        _ => StatusCode::MethodNotAllowed,
    };
    let allow = vec![Header::Allow(ALLOW.into())];
    if let Err(e) = tx.reply_with(status, allow, None).await {
        debug!(error = %e, "could not send final response");
    }
}

fn has_to_tag(tx: &Transaction) -> bool {
    tx.original
        .to_header()
        .ok()
        .and_then(|to| to.tag().ok().flatten())
        .is_some()
}

/// OPTIONS: 200 while accepting calls, 503 with `Retry-After` while draining or at the call
/// limit (a load balancer's health probe, RFC 3261 §11.2).
async fn options(stack: &SipStack, mut tx: Transaction) {
    let (status, mut headers) = match stack.inner.settings.admit.accepting() {
        Ok(()) => (StatusCode::OK, Vec::new()),
        Err(retry_after) => (
            StatusCode::ServiceUnavailable,
            vec![retry_after_header(retry_after)],
        ),
    };
    headers.extend([
        Header::Allow(ALLOW.into()),
        Header::Accept("application/sdp".into()),
        Header::Other("Supported".into(), "replaces".into()),
    ]);
    if let Err(e) = tx.reply_with(status, headers, None).await {
        debug!(error = %e, "could not answer OPTIONS");
    }
}

fn retry_after_header(secs: u32) -> Header {
    Header::Other("Retry-After".into(), secs.to_string())
}

async fn new_invite(stack: SipStack, mut tx: Transaction, calls: mpsc::Sender<IncomingCall>) {
    // Trusted peer, trunk credentials, or both (`sip::auth`); else 401 or 403 is sent.
    let Some(admitted) = challenge::admit_invite(&stack, &mut tx).await else {
        return;
    };
    // Refused before a dialog exists: nothing is answered, nothing to clean up.
    if let Err(retry_after) = stack.inner.settings.admit.admit_call() {
        let headers = vec![retry_after_header(retry_after)];
        if let Err(e) = tx
            .reply_with(StatusCode::ServiceUnavailable, headers, None)
            .await
        {
            debug!(error = %e, "could not refuse an INVITE");
        }
        return;
    }
    let (state_tx, state_rx) = stack.inner.dialogs.new_dialog_state_channel();
    let dialog = match stack.inner.dialogs.get_or_create_server_invite(
        &tx,
        state_tx,
        None,
        Some(stack.contact_for(&tx)),
    ) {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "cannot create a dialog for an INVITE");
            let _ = tx.reply(StatusCode::ServerInternalError).await;
            return;
        }
    };
    let (headers, spoofed) = inbound_headers(&tx.original, &stack.inner.settings.header_prefix);
    let call = IncomingCall {
        sip_call_id: tx
            .original
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default(),
        called: request_uri_user(&tx.original.uri.to_string()),
        caller_display_name: from_display_name(&headers),
        headers,
        spoofed,
        source: admitted.source,
        trusted_peer: admitted.trusted_peer,
        offer: tx.original.body.clone(),
        leg: CallerLeg::new(stack.clone(), dialog.clone(), state_rx),
    };
    if calls.try_send(call).is_err() {
        warn!("call intake is full: INVITE answered 503");
        let _ = dialog.reject(Some(StatusCode::ServiceUnavailable), None);
    }
    let mut dialog = dialog;
    if let Err(e) = dialog.handle(&mut tx).await {
        debug!(error = %e, "INVITE transaction ended with an error");
    }
}
