//! Entry points for the `cargo fuzz` targets in `fuzz/` (see `fuzz/README.md`), one per parser
//! that reads bytes from the network, a config file or a caller's keypad. Each takes the fuzzer's
//! bytes, runs the parser the server runs, and asserts what must hold for any input: no panic
//! first, and where cheap a round trip or a property a peer relies on. A failing input becomes a
//! test in [`tests`] by calling the same function. Not part of idgate's API.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rsipstack::sip::SipMessage;

use crate::config::{CalledMatch, Config, Dialplan, SipUri, Transfer};
use crate::identity::caller::{extract_caller, request_uri_user};
use crate::identity::headers::display::{
    DisplayTags, is_tag_look_alike, queue_display_name, sanitize_display_name,
};
use crate::identity::personal_number::CivilDate;
use crate::identity::{CallerId, E164, PersonalNumber, Reason, Verdict};
use crate::media::dtmf::DtmfDetector;
use crate::media::srtp::SrtpPolicy;
use crate::media::{Codec, rtcp, rtp, sdp};

use crate::sip::intake;

/// SIP intake (`sip::intake::inspect` over UDP and TCP framing), then the stack's own parser on
/// the raw bytes (what a TCP-only listener hands rsipstack without idgate's gate). A refused
/// request's stateless response must be a response the stack reads back, with that status.
pub fn sip_message(data: &[u8]) {
    let source = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
    for carrier in [intake::Carrier::Udp, intake::Carrier::Tcp] {
        if let intake::Verdict::Refuse {
            status, response, ..
        } = intake::inspect(data, source, carrier)
        {
            assert!(matches!(status, 400 | 416 | 501 | 505), "status {status}");
            match SipMessage::try_from(response.as_slice()) {
                Ok(SipMessage::Response(r)) => assert_eq!(u16::from(r.status_code), status),
                other => panic!("our {status} does not parse as a response: {other:?}"),
            }
        }
    }
    let _ = SipMessage::try_from(data);
}

/// `Authorization` header values (one a line, `NONCE`/`RESPONSE` placeholders filled in with a
/// real nonce and the right response): `sip::auth`'s digest parser (required fields present,
/// fields are text of the input, written back parses the same) and `TrunkAuth::decide` (never
/// admits without the configured password's response; a locked-out source never admitted).
pub fn digest_credentials(data: &[u8]) {
    crate::sip::TrunkAuth::fuzz_authorization(data);
}

/// SDP offer/answer: answering any offer (IPv4 and IPv6) gives an answer that is itself a usable
/// offer agreeing to the same codec and telephone-event, at our address, with as many m-lines
/// as the offer; reading any text as the queue's answer does not panic.
pub fn sdp_offer_answer(data: &[u8]) {
    let Ok(offer) = std::str::from_utf8(data) else {
        return;
    };
    let locals = [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10)),
    ];
    for local in locals {
        let Ok(negotiated) = sdp::answer(offer, local, 4000, 7, SrtpPolicy::Optional) else {
            continue;
        };
        let again = sdp::answer(&negotiated.sdp, local, 4002, 8, SrtpPolicy::Optional)
            .unwrap_or_else(|e| panic!("our answer is not usable SDP ({e}): {negotiated:?}"));
        assert_eq!(again.codec, negotiated.codec);
        assert_eq!(again.dtmf_pt, negotiated.dtmf_pt);
        assert_eq!(again.remote, SocketAddr::new(local, 4000));
        assert_eq!(m_lines(&again.sdp), m_lines(&negotiated.sdp));
    }
    for codec in [Codec::Pcmu, Codec::Pcma] {
        if let Ok(remote) = sdp::parse_answer(offer, codec) {
            assert_eq!(remote.codec, codec);
            assert!(remote.ptime > 0);
        }
    }
}

fn m_lines(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with("m=")).count()
}

/// RTP: a parsed packet's header rebuilt with [`rtp::RtpHeader::to_bytes`] and its payload parses
/// back to the same; the relay's in-place rewrite keeps the payload and sets what it says.
pub fn rtp_packet(data: &[u8]) {
    let _ = rtp::is_rtcp(data);
    let Ok(packet) = rtp::parse(data) else {
        return;
    };
    let mut rebuilt = packet.header.to_bytes().to_vec();
    rebuilt.extend_from_slice(packet.payload);
    assert_eq!(rtp::parse(&rebuilt), Ok(packet));
    let rewrite = rtp::Rewrite {
        marker: data.len().is_multiple_of(2),
        sequence: packet.header.sequence.wrapping_add(1),
        timestamp: packet.header.timestamp.wrapping_add(160),
        ssrc: !packet.header.ssrc,
    };
    let mut copy = data.to_vec();
    rtp::rewrite(&mut copy, &rewrite).expect("a parsed packet has a fixed header");
    let after = rtp::parse(&copy).expect("a rewritten packet still parses");
    assert_eq!(after.payload, packet.payload);
    assert_eq!(after.header.payload_type, packet.header.payload_type);
    assert_eq!(after.header.marker, packet.header.marker || rewrite.marker);
    assert_eq!(
        (
            after.header.sequence,
            after.header.timestamp,
            after.header.ssrc
        ),
        (rewrite.sequence, rewrite.timestamp, rewrite.ssrc)
    );
}

/// RTCP: translating any compound packet either fails or writes a compound that starts with a
/// report and translates again without error (what the other leg's far end receives is RTCP).
pub fn rtcp_compound(data: &[u8]) {
    let translations = [
        rtcp::Translation {
            sender_ssrc: 0x2B2B_2B2B,
            timestamp_offset: Some(1000),
            reported_ssrc: 0x1A1A_1A1A,
            reported_source: Some((0xB0B0_B0B0, 100)),
        },
        rtcp::Translation {
            sender_ssrc: 1,
            timestamp_offset: None,
            reported_ssrc: 2,
            reported_source: None,
        },
    ];
    let (mut out, mut again) = (Vec::new(), Vec::new());
    for t in &translations {
        if rtcp::translate(data, t, &mut out).is_err() || out.is_empty() {
            continue;
        }
        assert!(matches!(out[1], 200 | 201), "starts with {}", out[1]);
        assert_eq!(out.len() % 4, 0);
        rtcp::translate(&out, t, &mut again)
            .unwrap_or_else(|e| panic!("our RTCP does not translate again: {e}"));
    }
}

/// RFC 4733: datagrams (each a length byte, then that many bytes) parsed as RTP and fed to a
/// detector for payload type 101. Every digit is a DTMF character, and a packet repeated at once
/// (as senders do with end packets) never reports a second digit.
pub fn dtmf_events(data: &[u8]) {
    let mut detector = DtmfDetector::new(101);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (datagram, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        let Ok(p) = rtp::parse(datagram) else {
            continue;
        };
        let h = p.header;
        if let Some(digit) = detector.on_packet(h.payload_type, h.marker, h.timestamp, p.payload) {
            assert!("0123456789*#ABCD".contains(digit), "digit {digit:?}");
        }
        let repeat = detector.on_packet(h.payload_type, h.marker, h.timestamp, p.payload);
        assert_eq!(repeat, None, "a repeated packet reported a digit");
    }
}

/// Caller-number extraction from raw header lines (`name: value`, the first line read as a
/// Request-URI too) and display-name cleaning. A number is E.164 and normalises to itself; an
/// untrusted peer's P-Asserted-Identity and Remote-Party-ID change nothing; a caller's display
/// name never carries a verdict tag or anything that could pass for one.
pub fn caller_number(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let headers: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    for trusted in [true, false] {
        if let CallerId::Number(number) = extract_caller(&headers, trusted, "SE") {
            check_e164(&number);
        }
    }
    let untrusted_view: Vec<_> = headers
        .iter()
        .filter(|(n, _)| {
            let n = n.trim();
            !n.eq_ignore_ascii_case("p-asserted-identity")
                && !n.eq_ignore_ascii_case("remote-party-id")
        })
        .cloned()
        .collect();
    assert_eq!(
        extract_caller(&headers, false, "SE"),
        extract_caller(&untrusted_view, false, "SE")
    );
    if let Some(user) = text.lines().next().and_then(request_uri_user) {
        assert!(!user.is_empty() && !user.chars().any(char::is_control));
    }
    check_display_name(text);
}

fn check_e164(number: &E164) {
    let digits = number
        .as_str()
        .strip_prefix('+')
        .expect("E.164 starts with +");
    assert!(!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()));
    let again = E164::parse(number.as_str(), "SE").expect("E.164 parses again");
    assert_eq!(again.as_str(), number.as_str());
    let redacted = number.redacted();
    assert!(redacted.len() == number.as_str().len() && redacted.ends_with("****"));
}

fn check_display_name(raw: &str) {
    let tags = DisplayTags::default();
    let Some(clean) = sanitize_display_name(raw, &tags) else {
        return;
    };
    assert!(!clean.starts_with(' ') && !clean.ends_with(' '));
    assert!(clean.chars().count() <= crate::identity::headers::display::MAX_DISPLAY_NAME_CHARS);
    assert!(
        !clean
            .chars()
            .any(|c| c.is_control() || is_tag_look_alike(c))
    );
    let unverified = Verdict::Unverified {
        reason: Reason::NotFound,
        method: None,
    };
    let name = crate::identity::headers::CallerDisplayName::new(raw.to_owned());
    let number = CallerId::NotANumber;
    let shown = queue_display_name(Some(&unverified), &number, Some(&name), &tags);
    let rest = shown
        .strip_prefix(&tags.unverified)
        .expect("unverified tag first");
    assert!(
        !rest.contains(tags.verified.trim()),
        "verified tag in {shown:?}"
    );
}

/// Personal identity numbers: every accepted form gives a number that parses back from its own
/// digits and its dashed form, has a real birth date not after today (with a two-digit year),
/// and shows only its date part in `Debug` and `masked`.
pub fn personal_number(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let days = [
        CivilDate {
            year: 2026,
            month: 2,
            day: 10,
        },
        CivilDate {
            year: 2000,
            month: 2,
            day: 29,
        },
        CivilDate {
            year: 99,
            month: 12,
            day: 31,
        },
    ];
    if let Ok(number) = PersonalNumber::parse(text) {
        check_personal_number(&number);
    }
    for today in days {
        for parsed in [
            PersonalNumber::parse_text(text, today),
            PersonalNumber::parse_keypad(text, today),
        ] {
            let Ok(number) = parsed else { continue };
            check_personal_number(&number);
            let two_digit_year = text.trim().len() <= 11;
            if two_digit_year && !text.contains('+') {
                assert!(number.birth_date() <= today, "born after {today:?}");
            }
        }
    }
}

fn check_personal_number(number: &PersonalNumber) {
    let digits = number.as_digits();
    assert!(digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(PersonalNumber::parse(digits).as_ref(), Ok(number));
    let dashed = format!("{}-{}", &digits[..8], &digits[8..]);
    assert_eq!(PersonalNumber::parse(&dashed).as_ref(), Ok(number));
    assert!(number.birth_date().is_valid());
    assert_eq!(number.masked(), format!("{}-****", &digits[..8]));
    assert_eq!(
        format!("{number:?}"),
        format!("PersonalNumber({})", number.masked())
    );
}

/// `idgate.toml`: a config that parses also validates; every error formats (it quotes the file).
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse("fuzz.toml", text) {
        Ok(config) => config.validate().expect("a parsed config validates"),
        Err(e) => drop(e.to_string()),
    }
}

/// Dialplan route files: every parsed route's `match`, target, fallback and transfer mode read
/// back from their own text, and a prefix route takes its own prefix; errors format. The whole
/// text is also read as a `match` value.
pub fn dialplan_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(m) = CalledMatch::parse(text) {
        assert_eq!(CalledMatch::parse(&m.to_string()).as_ref(), Some(&m));
    }
    let routes = match Dialplan::parse_file("fuzz.toml", text) {
        Ok(routes) => routes,
        Err(e) => return drop(e.to_string()),
    };
    for route in routes {
        let m = &route.matches;
        assert_eq!(CalledMatch::parse(&m.to_string()).as_ref(), Some(m));
        if let CalledMatch::Prefix(p) | CalledMatch::Exact(p) = m {
            assert!(m.matches(p));
        }
        for uri in std::iter::once(&route.target).chain(&route.fallback) {
            assert_eq!(SipUri::parse(uri.as_str()).as_ref(), Some(uri));
        }
        assert_eq!(
            Transfer::parse(route.transfer.as_str()),
            Some(route.transfer)
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    type Target = fn(&[u8]);

    const TARGETS: [(&str, Target); 10] = [
        ("sip_message", sip_message),
        ("sdp_offer_answer", sdp_offer_answer),
        ("rtp_packet", rtp_packet),
        ("rtcp_compound", rtcp_compound),
        ("dtmf_events", dtmf_events),
        ("caller_number", caller_number),
        ("personal_number", personal_number),
        ("config_file", config_file),
        ("dialplan_file", dialplan_file),
        ("digest_credentials", digest_credentials),
    ];

    /// The committed seeds (`fuzz/seeds/<target>`) pass their target: a cheap corpus run in CI.
    #[test]
    fn every_seed_passes_its_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
            let mut count = 0;
            for entry in entries {
                let path = entry.expect("seed entry").path();
                target(&std::fs::read(&path).expect("seed"));
                count += 1;
            }
            assert!(count > 0, "no seeds for {name}");
        }
    }
}
