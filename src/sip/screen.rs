//! Header and content inspection of a parsed request (RFC 3261 §8.2.2.3, §8.2.3): what idgate
//! refuses after the syntax gate (`intake`) and before any dialog or call logic. These answers go
//! through the server transaction, so they are retransmitted and absorbed like any other.

use rsipstack::sip::{Header, Method, Request, StatusCode};

use super::message::raw_header;

/// Option tags idgate accepts in `Require` (the `Supported` of its OPTIONS answer).
const SUPPORTED: [&str; 1] = ["replaces"];

/// A request refused here: the status and the headers that explain it.
#[derive(Debug)]
pub(super) struct Refusal {
    /// 420, 415 or 406.
    pub status: StatusCode,
    /// `Unsupported` (420) or `Accept` (415).
    pub headers: Vec<Header>,
}

/// Whether a request idgate serves must be refused for an extension it does not support (420),
/// a body it cannot read (415) or an `Accept` its answer cannot meet (406). ACK and CANCEL are
/// never refused (RFC 3261 §8.2.2.3).
pub(super) fn screen(req: &Request) -> Option<Refusal> {
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return None;
    }
    let raw = |name: &'static str| {
        req.headers
            .iter()
            .filter(move |h| h.name().eq_ignore_ascii_case(name))
            .map(|h| h.value().to_string())
    };
    let unsupported: Vec<String> = raw("Require")
        .flat_map(|v| list(&v))
        .filter(|tag| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag)))
        .collect();
    if !unsupported.is_empty() {
        return Some(Refusal {
            status: StatusCode::BadExtension,
            headers: vec![raw_header("Unsupported", &unsupported.join(", "))],
        });
    }
    if !matches!(req.method, Method::Invite | Method::Update | Method::PRack) {
        return None;
    }
    let content_type = raw("Content-Type").chain(raw("c")).next();
    if !req.body.is_empty() && !content_type.as_deref().is_some_and(readable_body) {
        return Some(Refusal {
            status: StatusCode::UnsupportedMediaType,
            headers: vec![raw_header("Accept", "application/sdp")],
        });
    }
    let accept: Vec<String> = raw("Accept").flat_map(|v| list(&v)).collect();
    let sdp_ok = accept.is_empty() || accept.iter().any(|a| accepts_sdp(a));
    if req.method == Method::Invite && !sdp_ok {
        return Some(Refusal {
            status: StatusCode::NotAcceptable,
            headers: Vec::new(),
        });
    }
    None
}

/// The comma-separated items of a header value, trimmed, empty ones dropped.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// SDP, or a multipart body the call logic may find SDP in (SIP-I trunks send
/// `multipart/mixed` with SDP and ISUP).
fn readable_body(content_type: &str) -> bool {
    let media = media_type(content_type);
    media == "application/sdp" || media.starts_with("multipart/")
}

/// An `Accept` item that admits an SDP answer.
fn accepts_sdp(item: &str) -> bool {
    matches!(
        media_type(item).as_str(),
        "application/sdp" | "application/*" | "*/*"
    )
}
