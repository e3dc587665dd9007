//! The two call legs idgate holds: the caller's (a server INVITE dialog) and the queue's (a
//! client INVITE dialog, in B2BUA mode). Each turns the stack's dialog states into
//! [`LegEvent`]s and answers the in-dialog requests the stack leaves to the application.

use std::sync::{Arc, Mutex};

use rsipstack::dialog::dialog::{
    DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Method, Request, StatusCode, Uri};
use tokio::sync::mpsc;
use tracing::debug;

use super::message::{parse_dtmf_info, raw_header, sipfrag_status};
use super::{SipError, SipStack};

/// Something that happened on a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// Caller leg: the ACK for our 200 OK arrived (may repeat: ignore repeats).
    Confirmed,
    /// Queue leg: 180/183.
    Ringing,
    /// Queue leg: 2xx, with the answer SDP.
    Answered {
        /// The SDP answer.
        sdp: Vec<u8>,
    },
    /// Queue leg: a final non-2xx, or no answer at all (408/503).
    Failed {
        /// The SIP status code.
        code: u16,
    },
    /// A DTMF digit sent in SIP INFO.
    Dtmf(char),
    /// A NOTIFY about our REFER (RFC 3515): the sipfrag's status code.
    ReferProgress {
        /// The status of the referred INVITE.
        code: u16,
    },
    /// The dialog ended.
    Ended(EndReason),
}

/// Why a leg ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The far end sent BYE.
    HungUp,
    /// The caller sent CANCEL before answer.
    Cancelled,
    /// No ACK for our 2xx, or a transaction timed out.
    Timeout,
    /// We ended it.
    Local,
    /// Any other end.
    Other,
}

/// The caller's leg (UAS side).
pub struct CallerLeg {
    dialog: InviteDialog,
    events: mpsc::UnboundedReceiver<LegEvent>,
    local_sdp: Arc<Mutex<Option<Vec<u8>>>>,
}

impl CallerLeg {
    pub(super) fn new(stack: SipStack, dialog: InviteDialog, states: DialogStateReceiver) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let local_sdp = Arc::new(Mutex::new(None));
        tokio::spawn(pump(stack, states, tx, local_sdp.clone()));
        CallerLeg {
            dialog,
            events,
            local_sdp,
        }
    }

    /// Ends the INVITE with a final error response (403, 404, 488, 503, ...).
    pub fn reject(&self, code: u16) {
        let _ = self.dialog.reject(Some(StatusCode::from(code)), None);
    }

    /// Sends 180 Ringing.
    pub fn ringing(&self) {
        let _ = self.dialog.ringing(None, None);
    }

    /// Answers 200 OK with the SDP answer; the stack retransmits it until the ACK arrives.
    pub fn answer(&self, sdp: Vec<u8>) -> Result<(), SipError> {
        if let Ok(mut slot) = self.local_sdp.lock() {
            *slot = Some(sdp.clone());
        }
        let headers = vec![Header::ContentType("application/sdp".into())];
        self.dialog.accept(Some(headers), Some(sdp))?;
        Ok(())
    }

    /// Sends BYE.
    pub async fn hang_up(&self) {
        if let Err(e) = self.dialog.bye().await {
            debug!(error = %e, "BYE to the caller failed");
        }
    }

    /// A REFER to send in this leg's dialog, as a future of its own ('static), so the call
    /// task goes on handling events while the PBX answers.
    pub fn refer(
        &self,
        target: &str,
        headers: &[(String, String)],
        embedded: &str,
        referred_by: &str,
    ) -> impl std::future::Future<Output = u16> + Send + 'static {
        let dialog = self.dialog.clone();
        let (target, embedded, referred_by) = (
            target.to_owned(),
            embedded.to_owned(),
            referred_by.to_owned(),
        );
        let headers = headers.to_vec();
        async move { send_refer(&dialog, &target, &headers, &embedded, &referred_by).await }
    }
    /// The next event on this leg; None once the leg is gone.
    pub async fn next_event(&mut self) -> Option<LegEvent> {
        self.events.recv().await
    }
}

/// Sends REFER (RFC 3515) to `target` with `headers` embedded in the Refer-To URI and on the
/// REFER itself; returns the REFER's final status (0 when none came).
async fn send_refer(
    dialog: &InviteDialog,
    target: &str,
    headers: &[(String, String)],
    embedded: &str,
    referred_by: &str,
) -> u16 {
    let sep = if target.contains('?') { '&' } else { '?' };
    let refer_to = rsipstack::sip::ReferTo::new(format!("<{target}{sep}{embedded}>"));
    let mut extra: Vec<Header> = headers.iter().map(|(n, v)| raw_header(n, v)).collect();
    // The stack adds the dialog's Contact itself: a second one would make the REFER invalid.
    extra.push(raw_header("Referred-By", &format!("<{referred_by}>")));
    match dialog.refer(refer_to, Some(extra), None).await {
        Ok(Some(resp)) => u16::from(resp.status_code),
        Ok(None) => 0,
        Err(e) => {
            debug!(error = %e, "REFER failed");
            0
        }
    }
}

/// What to send to the queue (B2BUA mode).
#[derive(Debug, Clone)]
pub struct OutboundCall {
    /// The queue target (`sip:queue@127.0.0.1:5080`).
    pub target: String,
    /// The From user (the caller number, or `anonymous`).
    pub from_user: String,
    /// The From display name, if any, as the content of an RFC 3261 quoted-string (`"` and `\`
    /// already escaped): rsipstack writes it between the quotes as it is.
    pub from_display: Option<String>,
    /// Extra headers (the identity headers).
    pub headers: Vec<(String, String)>,
    /// The SDP offer.
    pub offer: Vec<u8>,
}

/// The queue's leg (UAC side).
pub struct QueueLeg {
    dialog: InviteDialog,
    events: mpsc::UnboundedReceiver<LegEvent>,
}

impl QueueLeg {
    /// CANCEL while ringing, BYE once answered.
    pub async fn hang_up(&self) {
        if let Err(e) = self.dialog.hangup().await {
            debug!(error = %e, "ending the queue leg failed");
        }
    }

    /// The next event on this leg; None once the leg is gone.
    pub async fn next_event(&mut self) -> Option<LegEvent> {
        self.events.recv().await
    }
}

impl SipStack {
    /// Sends the INVITE of the queue leg and returns at once; the outcome arrives as events.
    pub fn place_call(&self, call: OutboundCall) -> Result<QueueLeg, SipError> {
        let callee = parse_uri(&call.target)?;
        // The caller URI holds the caller's number: a parse error must not carry it.
        let caller =
            parse_uri(&format!("sip:{}@{}", call.from_user, self.inner.local)).map_err(|_| {
                SipError::BadUri {
                    uri: "(the caller URI)".to_string(),
                    detail: "the caller number is not a valid SIP user".to_string(),
                }
            })?;
        let option = InviteOption {
            caller_display_name: call.from_display,
            caller,
            callee,
            contact: self.contact(),
            content_type: Some("application/sdp".into()),
            offer: Some(call.offer.clone()),
            headers: Some(call.headers.iter().map(|(n, v)| raw_header(n, v)).collect()),
            ..Default::default()
        };
        let (state_tx, states) = self.inner.dialogs.new_dialog_state_channel();
        let (dialog, outcome) = self.inner.dialogs.do_invite_async(option, state_tx)?;
        let (tx, events) = mpsc::unbounded_channel();
        // A re-INVITE or UPDATE from the queue (session refresh) is answered with our offer,
        // which stays our session description for this leg (RFC 3264 §8).
        let local_sdp = Arc::new(Mutex::new(Some(call.offer)));
        tokio::spawn(pump(self.clone(), states, tx.clone(), local_sdp));
        tokio::spawn(async move {
            let event = match outcome.await {
                Ok(Ok((_, Some(resp))))
                    if resp.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful =>
                {
                    LegEvent::Answered { sdp: resp.body }
                }
                Ok(Ok((_, Some(resp)))) => LegEvent::Failed {
                    code: u16::from(resp.status_code),
                },
                Ok(Ok((_, None))) => LegEvent::Failed { code: 408 },
                Ok(Err(e)) => {
                    debug!(error = %e, "queue INVITE failed");
                    LegEvent::Failed { code: 503 }
                }
                Err(_) => LegEvent::Failed { code: 500 },
            };
            let _ = tx.send(event);
        });
        Ok(QueueLeg { dialog, events })
    }
}

fn parse_uri(text: &str) -> Result<Uri, SipError> {
    Uri::try_from(text).map_err(|e| SipError::BadUri {
        uri: text.to_string(),
        detail: e.to_string(),
    })
}

/// Turns dialog states into leg events and answers the requests handed to the application.
async fn pump(
    stack: SipStack,
    mut states: DialogStateReceiver,
    events: mpsc::UnboundedSender<LegEvent>,
    local_sdp: Arc<Mutex<Option<Vec<u8>>>>,
) {
    while let Some(state) = states.recv().await {
        let event = match state {
            DialogState::Confirmed(..) => Some(LegEvent::Confirmed),
            DialogState::Early(..) => Some(LegEvent::Ringing),
            DialogState::Info(_, req, handle) => info(&req, handle).await,
            DialogState::Notify(_, req, handle) => notify(&req, handle).await,
            DialogState::Updated(_, req, handle) => {
                refresh(&req, handle, &local_sdp).await;
                None
            }
            DialogState::Options(_, _, handle) => {
                let _ = handle.reply(StatusCode::OK).await;
                None
            }
            DialogState::Refer(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                let _ = handle.reply(StatusCode::MethodNotAllowed).await;
                None
            }
            DialogState::Terminated(id, reason) => {
                stack.inner.dialogs.remove_dialog(&id);
                let _ = events.send(LegEvent::Ended(end_reason(&reason)));
                break;
            }
            _ => None,
        };
        if let Some(event) = event
            && events.send(event).is_err()
        {
            break;
        }
    }
}

async fn info(req: &Request, handle: TransactionHandle) -> Option<LegEvent> {
    let ctype = req
        .headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case("content-type"))
        .map(|h| h.value().to_string());
    let digit = parse_dtmf_info(ctype.as_deref(), &req.body);
    let status = if digit.is_some() || req.body.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UnsupportedMediaType
    };
    let _ = handle.reply(status).await;
    digit.map(LegEvent::Dtmf)
}

async fn notify(req: &Request, handle: TransactionHandle) -> Option<LegEvent> {
    let _ = handle.reply(StatusCode::OK).await;
    sipfrag_status(&req.body).map(|code| LegEvent::ReferProgress { code })
}

/// A re-INVITE or UPDATE (session refresh, hold): answered with the current SDP. rsipstack has
/// no RFC 4028 logic (RSIPSTACK-NOTES pitfall 4); full re-negotiation comes with the media issue.
async fn refresh(req: &Request, handle: TransactionHandle, local_sdp: &Mutex<Option<Vec<u8>>>) {
    let body = local_sdp.lock().ok().and_then(|s| s.clone());
    let with_body = req.method == Method::Invite || !req.body.is_empty();
    match body.filter(|_| with_body) {
        Some(sdp) => {
            let headers = vec![Header::ContentType("application/sdp".into())];
            let _ = handle
                .respond(StatusCode::OK, Some(headers), Some(sdp))
                .await;
        }
        None => {
            let _ = handle.reply(StatusCode::OK).await;
        }
    }
}

fn end_reason(reason: &TerminatedReason) -> EndReason {
    match reason {
        TerminatedReason::UacBye | TerminatedReason::UasBye => EndReason::HungUp,
        TerminatedReason::UacCancel => EndReason::Cancelled,
        TerminatedReason::Timeout => EndReason::Timeout,
        _ => EndReason::Other,
    }
}

impl std::fmt::Debug for CallerLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerLeg")
            .field("dialog", &self.dialog.id().to_string())
            .finish()
    }
}

impl std::fmt::Debug for QueueLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueLeg")
            .field("dialog", &self.dialog.id().to_string())
            .finish()
    }
}
