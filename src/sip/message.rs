//! Reading and writing SIP message text: raw header lists, identity-header hygiene, the source
//! address, DTMF in SIP INFO, sipfrag status lines. Hand-written where rsipstack's typed
//! parsing loses information (user-part parameters, see RSIPSTACK-NOTES pitfall 1).

use std::net::IpAddr;

use rsipstack::sip::{Header, Request};

use crate::identity::headers::{CallerDisplayName, is_identity_header};

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

/// The display name of the first `From` (or compact `f`) header among raw `(name, value)`
/// lines (RFC 3261 §20.20, `name-addr` of §25.1): a quoted-string with its quoted-pairs undone,
/// or the tokens before `<`. `None` for an addr-spec, an empty display name or an unclosed
/// quote. Nothing is cleaned here: the name is the caller's, see `identity::headers::display`.
pub(super) fn from_display_name(headers: &[(String, String)]) -> Option<CallerDisplayName> {
    let is_from = |name: &str| {
        ["from", "f"]
            .iter()
            .any(|n| name.trim().eq_ignore_ascii_case(n))
    };
    let value = headers.iter().find(|(name, _)| is_from(name))?.1.trim();
    let name = match value.strip_prefix('"') {
        Some(inside) => unquote(inside)?,
        None => value.split_once('<')?.0.trim().to_owned(),
    };
    (!name.is_empty()).then(|| CallerDisplayName::new(name))
}

/// The content of a quoted-string whose opening `"` is already consumed, with `\x` read as `x`
/// (RFC 3261 §25.1 quoted-pair); `None` when the closing `"` is missing.
fn unquote(inside: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = inside.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
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

    fn display_name(from: &str) -> Option<String> {
        let headers = [
            ("Via".to_owned(), "x".to_owned()),
            ("From".to_owned(), from.to_owned()),
        ];
        from_display_name(&headers).map(|name| name.as_str().to_owned())
    }

    #[test]
    fn from_display_names() {
        let name = display_name("\"\u{2714} Fake Verified\" <sip:+46701234567@pbx>;tag=1");
        assert_eq!(name.as_deref(), Some("\u{2714} Fake Verified"));
        let escaped = display_name(r#""Robert \"Bob\" \\ T" <sip:1@pbx>;tag=1"#);
        assert_eq!(escaped.as_deref(), Some(r#"Robert "Bob" \ T"#));
        let tokens = display_name("  Bob   Smith <sip:1@pbx>;tag=1");
        assert_eq!(tokens.as_deref(), Some("Bob   Smith"));
        assert_eq!(display_name("<sip:1@pbx>;tag=1"), None);
        assert_eq!(display_name("\"\" <sip:1@pbx>;tag=1"), None);
        assert_eq!(display_name("sip:1@pbx;tag=1"), None);
        assert_eq!(display_name("\"unclosed <sip:1@pbx>"), None);
        let compact = [("f".to_owned(), "Eve <sip:2@pbx>".to_owned())];
        assert!(from_display_name(&compact).is_some_and(|n| n.as_str() == "Eve"));
        assert!(from_display_name(&[]).is_none());
        let parsed = inbound_headers(
            &request(&INVITE.replace("From: <", "From: \"A\\\"B\" <")),
            "X-",
        );
        let name = from_display_name(&parsed.0).expect("a display name through rsipstack");
        assert_eq!(name.as_str(), "A\"B");
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
