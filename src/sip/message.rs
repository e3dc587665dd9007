//! Reading and writing SIP message text: raw header lists, identity-header hygiene, the source
//! address, DTMF in SIP INFO, sipfrag status lines. Hand-written where rsipstack's typed
//! parsing loses information (user-part parameters, see RSIPSTACK-NOTES pitfall 1).

use std::net::IpAddr;

use rsipstack::sip::{Header, Request};

use crate::identity::headers::is_identity_header;

/// The request's headers as (name, value) text, split into the ones idgate keeps and the names
/// of identity-prefixed ones it removed (a caller must never be able to send its own verdict).
pub(super) fn inbound_headers(req: &Request, prefix: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut spoofed = Vec::new();
    for header in req.headers.iter() {
        let name = header.name().to_string();
        if is_identity_header(&name, prefix) {
            spoofed.push(name);
        } else {
            kept.push((name, header.value().to_string()));
        }
    }
    (kept, spoofed)
}

/// Where the request came from: the top Via's `received` parameter (set by the transport from
/// the packet's source, RFC 3261 §18.2.1), else its sent-by host.
pub(super) fn source_ip(req: &Request) -> Option<IpAddr> {
    let via = req
        .headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case("via") || h.name().eq_ignore_ascii_case("v"))?;
    let value = via.value();
    let first = value.split(',').next()?.trim();
    let mut parts = first.split(';');
    let sent_by = parts.next()?.split_whitespace().nth(1)?;
    let received = parts.find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("received")
            .then(|| parse_host_ip(value.trim()))?
    });
    if received.is_some() {
        return received;
    }
    let host = if let Some(rest) = sent_by.strip_prefix('[') {
        rest.split(']').next()?
    } else {
        sent_by.split(':').next()?
    };
    parse_host_ip(host)
}

fn parse_host_ip(text: &str) -> Option<IpAddr> {
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The digit in a SIP INFO body: `application/dtmf-relay` (`Signal=5`) or `application/dtmf`
/// (`5`). Returns None for anything else.
pub fn parse_dtmf_info(content_type: Option<&str>, body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let ctype = content_type.unwrap_or("").trim().to_ascii_lowercase();
    let raw = if ctype.starts_with("application/dtmf-relay") {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?
    } else if ctype.starts_with("application/dtmf") {
        text.trim()
    } else {
        return None;
    };
    dtmf_symbol(raw)
}

fn dtmf_symbol(raw: &str) -> Option<char> {
    let mut chars = raw.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        // RFC 4733 event numbers sometimes appear: 10 is '*', 11 is '#'.
        return match raw {
            "10" => Some('*'),
            "11" => Some('#'),
            _ => None,
        };
    }
    let c = c.to_ascii_uppercase();
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
}

/// The status code of a `message/sipfrag` body (`SIP/2.0 200 OK`), RFC 3515 §2.4.5.
pub(super) fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    parts
        .next()?
        .parse()
        .ok()
        .filter(|c| (100..700).contains(c))
}

/// A header with a raw name and value.
pub(super) fn raw_header(name: &str, value: &str) -> Header {
    Header::Other(name.to_string(), value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Request {
        match rsipstack::sip::SipMessage::try_from(text.as_bytes()) {
            Ok(rsipstack::sip::SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:5000@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.2.3:5070;branch=z9hG4bK1;received=127.0.0.9\r\n\
From: <sip:+46701234567@pbx>;tag=1\r\n\
To: <sip:5000@127.0.0.1>\r\n\
Call-ID: abc\r\n\
CSeq: 1 INVITE\r\n\
X-Identity-Status: verified\r\n\
x-identity-token: forged\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn identity_headers_are_removed_and_named() {
        let (kept, spoofed) = inbound_headers(&request(INVITE), "X-Identity-");
        assert_eq!(spoofed.len(), 2);
        assert!(
            kept.iter()
                .all(|(n, _)| !n.to_ascii_lowercase().starts_with("x-identity-"))
        );
        assert!(
            kept.iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("call-id") && v == "abc")
        );
    }

    #[test]
    fn source_is_received_param_else_sent_by() {
        assert_eq!(source_ip(&request(INVITE)), "127.0.0.9".parse().ok());
        let plain = INVITE.replace(";received=127.0.0.9", "");
        assert_eq!(source_ip(&request(&plain)), "10.1.2.3".parse().ok());
    }

    #[test]
    fn dtmf_info_bodies() {
        assert_eq!(
            parse_dtmf_info(
                Some("application/dtmf-relay"),
                b"Signal=5\r\nDuration=160\r\n"
            ),
            Some('5')
        );
        assert_eq!(
            parse_dtmf_info(Some("application/dtmf-relay"), b"Signal= #\r\n"),
            Some('#')
        );
        assert_eq!(parse_dtmf_info(Some("application/dtmf"), b"11"), Some('#'));
        assert_eq!(parse_dtmf_info(Some("application/dtmf"), b"*"), Some('*'));
        assert_eq!(parse_dtmf_info(Some("text/plain"), b"5"), None);
        assert_eq!(
            parse_dtmf_info(Some("application/dtmf-relay"), b"Signal=X"),
            None
        );
        assert_eq!(parse_dtmf_info(None, &[0xff, 0xfe]), None);
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here\r\n"), Some(486));
        assert_eq!(sipfrag_status(b"HTTP/1.1 200 OK"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 abc"), None);
        assert_eq!(sipfrag_status(b""), None);
    }
}
