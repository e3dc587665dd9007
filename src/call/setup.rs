//! From INVITE to ACK: route, caller number, media, SDP answer, the call row, 200 OK. Every way
//! a call can fail before it is answered ends in [`SetupError::status`], one place.

use std::sync::Arc;
use std::time::SystemTime;

use uuid::Uuid;

use crate::config::Route;
use crate::identity::CallerId;
use crate::identity::caller::extract_caller;
use crate::identity::headers::CallerDisplayName;
use crate::media::sdp::{self, Negotiated, SdpError};
use crate::media::srtp::SrtpSession;
use crate::media::{MediaError, MediaStream, PromptSet};
use crate::sip::{CallerLeg, IncomingCall, LegEvent};
use crate::store::{NewCall, Record, TransferOutcome};

use super::Services;

/// A call that has been answered and ACKed.
pub(super) struct Answered {
    pub leg: CallerLeg,
    pub stream: MediaStream,
    pub media: Negotiated,
    pub route: Route,
    pub caller: CallerId,
    /// The caller's From display name, uncleaned (for the queue leg's display-name tag).
    pub caller_display_name: Option<CallerDisplayName>,
    pub prompts: Arc<PromptSet>,
    /// The Request-URI user.
    pub called: String,
    /// When the INVITE arrived (as in the call row).
    pub started_at: SystemTime,
}

/// Why a call ended before it was answered.
#[derive(Debug, thiserror::Error)]
pub(super) enum SetupError {
    /// No route matches the called number.
    #[error("no route for the called number")]
    NoRoute,
    /// The offer has no codec idgate speaks (PCMU/PCMA).
    #[error("no codec in common")]
    NoCommonCodec,
    /// The offer is missing or cannot be parsed.
    #[error("no usable SDP offer")]
    BadOffer,
    /// No offered stream meets `[media] srtp` (plain RTP when required, SAVP when off, SAVP
    /// without a usable `a=crypto` line).
    #[error("media security: {0}")]
    Security(&'static str),
    /// No RTP port or socket.
    #[error("media unavailable: {0}")]
    Media(#[from] MediaError),
    /// The route's language has no prompts.
    #[error("no prompts for language {0}")]
    NoPrompts(String),
    /// The SRTP contexts could not be built (a local crypto problem).
    #[error("SRTP unavailable: {0}")]
    Srtp(String),
    /// The SIP stack refused the answer.
    #[error("could not answer: {0}")]
    Answer(String),
    /// The caller cancelled, or never ACKed.
    #[error("caller left before the call was set up")]
    Abandoned,
}

impl SetupError {
    /// The final response the INVITE gets (None: the dialog has already ended).
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            SetupError::NoRoute => Some(404),
            SetupError::NoCommonCodec | SetupError::BadOffer | SetupError::Security(_) => Some(488),
            SetupError::Media(_) | SetupError::NoPrompts(_) | SetupError::Srtp(_) => Some(503),
            SetupError::Answer(_) => Some(500),
            SetupError::Abandoned => None,
        }
    }
}

/// Answers the call, or ends it with the final response its failure calls for.
pub(super) async fn answer(
    services: &Services,
    id: Uuid,
    mut call: IncomingCall,
) -> Option<Answered> {
    let invited = std::time::Instant::now();
    match try_answer(services, id, &mut call).await {
        Ok(ready) => {
            services.metrics.answered(invited.elapsed());
            Some(Answered {
                leg: call.leg,
                stream: ready.stream,
                media: ready.media,
                route: ready.route,
                caller: ready.caller,
                caller_display_name: call.caller_display_name,
                prompts: ready.prompts,
                called: call.called.clone().unwrap_or_default(),
                started_at: ready.started_at,
            })
        }
        Err(e) => {
            tracing::info!(reason = %e, status = ?e.status(), "call not answered");
            match e.status() {
                Some(code) => {
                    services.metrics.rejected(code);
                    call.leg.reject(code);
                }
                None => {
                    services.store.record(Record::Ended {
                        id,
                        outcome: TransferOutcome::Abandoned,
                        at: SystemTime::now(),
                    });
                }
            }
            None
        }
    }
}

struct Ready {
    stream: MediaStream,
    media: Negotiated,
    route: Route,
    caller: CallerId,
    prompts: Arc<PromptSet>,
    started_at: SystemTime,
}

async fn try_answer(
    services: &Services,
    id: Uuid,
    call: &mut IncomingCall,
) -> Result<Ready, SetupError> {
    let route = call
        .called
        .as_deref()
        .and_then(|called| services.dialplan.route_for(called))
        .cloned()
        .ok_or(SetupError::NoRoute)?;
    let caller = extract_caller(&call.headers, call.trusted_peer, &route.region);
    let lang = route.language.as_str();
    let prompts = services
        .prompts
        .get(lang)
        .cloned()
        .ok_or_else(|| SetupError::NoPrompts(lang.to_string()))?;
    let offer = std::str::from_utf8(&call.offer).map_err(|_| SetupError::BadOffer)?;
    let stream = services.media.open(prompts.clone()).await?;
    let session_id = u64::from(id.as_fields().0);
    let media = sdp::answer(
        offer,
        services.media_ip,
        stream.local_addr().port(),
        session_id,
        services.srtp,
    )
    .map_err(|e| match e {
        SdpError::NoCommonCodec => SetupError::NoCommonCodec,
        SdpError::Security(why) => SetupError::Security(why),
        _ => SetupError::BadOffer,
    })?;
    if let Some(sdes) = &media.srtp {
        let session = SrtpSession::new(sdes).map_err(|e| SetupError::Srtp(e.to_string()))?;
        stream.secure(session);
    }
    let started_at = SystemTime::now();
    record_call(services, id, call, &caller, &route, started_at);
    ring_before_answer(&mut call.leg, route.answer_after).await?;
    call.leg
        .answer(media.sdp.clone().into_bytes())
        .map_err(|e| SetupError::Answer(e.to_string()))?;
    wait_for_ack(&mut call.leg).await?;
    let at = SystemTime::now();
    services.store.record(Record::Answered { id, at });
    Ok(Ready {
        stream,
        media,
        route,
        caller,
        prompts,
        started_at,
    })
}

/// Rings (180) for the route's `answer_after`, watching for the caller's CANCEL.
async fn ring_before_answer(
    leg: &mut CallerLeg,
    ring: std::time::Duration,
) -> Result<(), SetupError> {
    if ring.is_zero() {
        return Ok(());
    }
    leg.ringing();
    let deadline = tokio::time::Instant::now() + ring;
    loop {
        match tokio::time::timeout_at(deadline, leg.next_event()).await {
            Err(_) => return Ok(()),
            Ok(Some(LegEvent::Ended(_)) | None) => return Err(SetupError::Abandoned),
            Ok(Some(_)) => {}
        }
    }
}

async fn wait_for_ack(leg: &mut CallerLeg) -> Result<(), SetupError> {
    while let Some(event) = leg.next_event().await {
        match event {
            LegEvent::Confirmed => return Ok(()),
            LegEvent::Ended(_) => return Err(SetupError::Abandoned),
            _ => {}
        }
    }
    Err(SetupError::Abandoned)
}

/// The call row, queued (the answer does not wait for the database). A database failure never
/// stops a call: the journal logs it and the call goes on.
fn record_call(
    services: &Services,
    id: Uuid,
    call: &IncomingCall,
    caller: &CallerId,
    route: &Route,
    started_at: SystemTime,
) {
    let row = NewCall {
        id,
        sip_call_id: call.sip_call_id.clone(),
        caller: caller.clone(),
        called: call.called.clone().unwrap_or_default(),
        route: Some(route.name.clone()),
        transfer_mode: Some(route.transfer),
        started_at,
    };
    services.store.record(Record::Call(row));
}
