//! The identity headers idgate writes on the queue leg, the contract in `IDENTITY-HEADERS.md`,
//! and their embedding as URI headers in a Refer-To URI (RFC 3261 §19.1.1). The contract's two
//! optional extras are here too: RFC 7433 `User-to-User` ([`user_to_user`]) and the tagged From
//! display name ([`display`]).
//!
//! Every header value written here is ASCII without CR/LF and under 1 KB: tokens, a UUID, the
//! masked or full personal identity number, the verified name percent-encoded (RFC 3986), the
//! hex UUI. The one exception is the display name, which is UTF-8 inside an RFC 3261
//! quoted-string (see [`display`]).

pub mod display;

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use uuid::Uuid;

use super::Verdict;

pub use display::{CallerDisplayName, DisplayTags, queue_display_name};

/// The default header-name prefix, `X-Identity-` (configurable per deployment).
pub const DEFAULT_PREFIX: &str = "X-Identity-";

/// Longest `<prefix>Name` value, in bytes after encoding: names are cut (on a character
/// boundary, before encoding the next character would pass this) so the value stays under
/// 1 KB, which every PBX and softphone accepts in a header.
pub const MAX_ENCODED_NAME_LEN: usize = 1000;

/// RFC 3986 §2.3 unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`) stay literal in
/// `<prefix>Name`; everything else, UTF-8 bytes included, is percent-encoded.
const NAME_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// RFC 3261 §25.1 `hname`/`hvalue`: `unreserved` (alphanum and the marks `-_.!~*'()`) and
/// `hnv-unreserved` (`[]/:$`) stay literal. `?` and `+`, though `hnv-unreserved`, are escaped
/// too: `?` to keep the URI unambiguous for lax parsers, `+` because form-style decoders turn
/// it into a space. Everything else (`&`, `=`, `%`, space, non-ASCII, ...) is escaped.
const URI_HEADER_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'[')
    .remove(b']')
    .remove(b'/')
    .remove(b':')
    .remove(b'$');

/// Whether `name` is in idgate's identity namespace (`prefix` compared ignoring ASCII case).
/// Such headers arriving from the caller side are spoofing attempts and are removed. An empty
/// prefix matches nothing (config validation rejects it).
pub fn is_identity_header(name: &str, prefix: &str) -> bool {
    !prefix.is_empty()
        && name
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// The part of `name` after `prefix` (ASCII case ignored), if `name` is in the namespace.
pub fn strip_prefix<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    is_identity_header(name, prefix).then(|| &name[prefix.len()..])
}

/// How much of the personal identity number leaves idgate in `<prefix>Subject`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectMode {
    /// The date part only, `19800101-****` (the default).
    #[default]
    Masked,
    /// All twelve digits.
    Full,
    /// No `<prefix>Subject` header at all.
    None,
}

/// How the identity headers are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderOptions {
    /// Header-name prefix, [`DEFAULT_PREFIX`] unless configured.
    pub prefix: String,
    /// What `<prefix>Subject` carries.
    pub subject: SubjectMode,
    /// Whether the verified name is sent in `<prefix>Name`.
    pub include_name: bool,
    /// Whether the queue leg (and the REFER) also carries [`USER_TO_USER`], off by default.
    pub user_to_user: bool,
    /// The From display-name tags of the B2BUA queue leg; `None` (the default): no display name.
    pub display_tags: Option<DisplayTags>,
}

impl Default for HeaderOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            subject: SubjectMode::Masked,
            include_name: false,
            user_to_user: false,
            display_tags: None,
        }
    }
}

/// The identity headers for the queue leg, in this order: `Status`, `Reason` (unverified only),
/// `Method` (when a method was tried), `Name` (verified, if `include_name`; see
/// [`MAX_ENCODED_NAME_LEN`]), `Subject` (verified, per [`SubjectMode`]), `Call` (the call id,
/// hyphenated lower case), each name prefixed with `opts.prefix`. Without the token: the queue
/// leg gets [`identity_headers_with_token`].
pub fn identity_headers(
    verdict: &Verdict,
    call_id: Uuid,
    opts: &HeaderOptions,
) -> Vec<(String, String)> {
    let named = |suffix: &str, value: String| (format!("{}{suffix}", opts.prefix), value);
    let mut headers = vec![named("Status", verdict.status_str().to_owned())];
    if let Some(reason) = verdict.reason() {
        headers.push(named("Reason", reason.as_str().to_owned()));
    }
    if let Some(method) = verdict.method() {
        headers.push(named("Method", method.as_str().to_owned()));
    }
    if let Verdict::Verified { person, .. } = verdict {
        let name = person.name.as_ref().filter(|_| opts.include_name);
        if let Some(name) = name
            .map(|n| encode_name(n.as_str()))
            .filter(|n| !n.is_empty())
        {
            headers.push(named("Name", name));
        }
        let number = &person.personal_number;
        match opts.subject {
            SubjectMode::Masked => headers.push(named("Subject", number.masked())),
            SubjectMode::Full => headers.push(named("Subject", number.as_digits().to_owned())),
            SubjectMode::None => {}
        }
    }
    headers.push(named("Call", call_id.hyphenated().to_string()));
    headers
}

/// [`identity_headers`] and `<prefix>Token`: the compact JWS of IDENTITY-HEADERS.md "The
/// token" (see [`TokenIssuer::issue`](super::token::TokenIssuer::issue): ASCII, no CR/LF,
/// under 1 KB); last, when `opts.user_to_user`, [`USER_TO_USER`] with [`user_to_user`]. What
/// the queue leg and the REFER carry (the REFER in its Refer-To URI too, where Genesys Cloud
/// looks for UUI).
pub fn identity_headers_with_token(
    verdict: &Verdict,
    call_id: Uuid,
    opts: &HeaderOptions,
    token: &str,
) -> Vec<(String, String)> {
    let mut headers = identity_headers(verdict, call_id, opts);
    headers.push((format!("{}Token", opts.prefix), token.to_owned()));
    if opts.user_to_user {
        headers.push((USER_TO_USER.to_owned(), user_to_user(verdict, call_id)));
    }
    headers
}

/// The RFC 7433 header name. Not under the identity prefix: platforms that read UUI look for
/// exactly this name (Genesys Cloud: `User-to-User`, then `x-User-to-User`).
pub const USER_TO_USER: &str = "User-to-User";

/// Q.931 §4.5.30 protocol discriminator `0x04`, "IA5 characters": the first octet of ISDN UUI
/// data (RFC 7434 carries the user-user information element's contents from this octet on).
/// Receivers drop it (Genesys Cloud always removes the first octet of `User-to-User` data).
pub const UUI_PROTOCOL_DISCRIMINATOR: u8 = 0x04;

/// Most octets of UUI data, protocol discriminator included: 128, the ISDN user-user limit
/// (Q.931 §4.5.30) that gateways and contact-center platforms keep (Genesys Cloud advises 128
/// or fewer). [`uui_text`] stays far below it (at most 74 bytes).
pub const MAX_UUI_OCTETS: usize = 128;

/// The UUI payload, short ASCII with the verdict and idgate's call id:
/// `verified;call=<uuid>`, or `unverified;reason=<reason>;call=<uuid>` (reason and call id as
/// in `<prefix>Reason` and `<prefix>Call`). Nothing personal: no number, no name.
pub fn uui_text(verdict: &Verdict, call_id: Uuid) -> String {
    let call = call_id.hyphenated();
    match verdict.reason() {
        Some(reason) => format!("unverified;reason={};call={call}", reason.as_str()),
        None => format!("{};call={call}", verdict.status_str()),
    }
}

/// The `User-to-User` header value (RFC 7433 §4.1, ISDN UUI package of RFC 7434):
/// `04<uui_text as hex>;encoding=hex;purpose=isdn-uui;content=isdn-uui`, the protocol
/// discriminator first, lower-case hex, at most [`MAX_UUI_OCTETS`] octets before encoding.
pub fn user_to_user(verdict: &Verdict, call_id: Uuid) -> String {
    let mut octets = vec![UUI_PROTOCOL_DISCRIMINATOR];
    octets.extend_from_slice(uui_text(verdict, call_id).as_bytes());
    octets.truncate(MAX_UUI_OCTETS);
    format!(
        "{};encoding=hex;purpose=isdn-uui;content=isdn-uui",
        hex::encode(octets)
    )
}

/// Percent-encodes a name (RFC 3986, UTF-8), cut on a character boundary so the result is at
/// most [`MAX_ENCODED_NAME_LEN`] bytes.
fn encode_name(name: &str) -> String {
    let mut encoded = String::new();
    let mut buf = [0u8; 4];
    for c in name.chars() {
        let piece: Cow<'_, str> =
            utf8_percent_encode(c.encode_utf8(&mut buf), NAME_ENCODE_SET).into();
        if encoded.len() + piece.len() > MAX_ENCODED_NAME_LEN {
            break;
        }
        encoded.push_str(&piece);
    }
    encoded
}

/// `name=value&name=value`, for the headers part of a Refer-To URI
/// (`<sip:queue@pbx?X-Identity-Status=verified&...>`), escaped per RFC 3261 §19.1.1 (see
/// `URI_HEADER_ENCODE_SET`): the receiving PBX decodes once to get the header values back.
pub fn encode_uri_headers(headers: &[(String, String)]) -> String {
    let encode = |s: &str| utf8_percent_encode(s, URI_HEADER_ENCODE_SET).to_string();
    headers
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Method, PersonName, PersonalNumber, Reason, VerifiedPerson};

    const CALL: Uuid = Uuid::from_u128(0x0123_4567_89AB_CDEF_0123_4567_89AB_CDEF);
    const CALL_TEXT: &str = "01234567-89ab-cdef-0123-456789abcdef";

    fn verified(name: Option<&str>) -> Verdict {
        Verdict::Verified {
            method: Method::Bankid,
            person: VerifiedPerson {
                personal_number: PersonalNumber::parse("198112289874").unwrap(),
                name: name.map(|n| PersonName::new(n.to_owned())),
            },
        }
    }

    fn opts(subject: SubjectMode, include_name: bool) -> HeaderOptions {
        HeaderOptions {
            subject,
            include_name,
            ..HeaderOptions::default()
        }
    }

    fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
        headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// Decodes `%XX` escapes (test-only, independent of the encoder's crate).
    fn percent_decode(s: &str) -> String {
        let mut bytes = Vec::new();
        let mut input = s.bytes();
        while let Some(b) = input.next() {
            if b == b'%' {
                let hex: String = input.by_ref().take(2).map(char::from).collect();
                bytes.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                bytes.push(b);
            }
        }
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn defaults() {
        let d = HeaderOptions::default();
        assert_eq!(
            (d.prefix.as_str(), d.subject, d.include_name),
            ("X-Identity-", SubjectMode::Masked, false)
        );
        assert_eq!(SubjectMode::default(), SubjectMode::Masked);
    }

    #[test]
    fn every_reason_unverified() {
        for reason in Reason::ALL {
            let verdict = Verdict::Unverified {
                reason,
                method: None,
            };
            let headers = identity_headers(&verdict, CALL, &HeaderOptions::default());
            let expected = [
                ("X-Identity-Status", "unverified"),
                ("X-Identity-Reason", reason.as_str()),
                ("X-Identity-Call", CALL_TEXT),
            ];
            assert_eq!(pairs(&headers), expected);
        }
    }

    #[test]
    fn unverified_after_a_method_was_tried() {
        let verdict = Verdict::Unverified {
            reason: Reason::Declined,
            method: Some(Method::AppPush),
        };
        let opts = opts(SubjectMode::Full, true);
        let expected = [
            ("X-Identity-Status", "unverified"),
            ("X-Identity-Reason", "declined"),
            ("X-Identity-Method", "app-push"),
            ("X-Identity-Call", CALL_TEXT),
        ];
        assert_eq!(pairs(&identity_headers(&verdict, CALL, &opts)), expected);
    }

    #[test]
    fn verified_with_name_in_order() {
        let verdict = verified(Some("Åsa Öberg-Äng"));
        let headers = identity_headers(&verdict, CALL, &opts(SubjectMode::Masked, true));
        let expected = [
            ("X-Identity-Status", "verified"),
            ("X-Identity-Method", "bankid"),
            ("X-Identity-Name", "%C3%85sa%20%C3%96berg-%C3%84ng"),
            ("X-Identity-Subject", "19811228-****"),
            ("X-Identity-Call", CALL_TEXT),
        ];
        assert_eq!(pairs(&headers), expected);
        assert_eq!(percent_decode(&headers[2].1), "Åsa Öberg-Äng");
    }

    #[test]
    fn name_only_when_configured_and_present() {
        let has_name = |verdict: &Verdict, include| {
            let headers = identity_headers(verdict, CALL, &opts(SubjectMode::Masked, include));
            headers.iter().any(|(n, _)| n == "X-Identity-Name")
        };
        assert!(!has_name(&verified(Some("Tolvan")), false));
        assert!(!has_name(&verified(None), true));
        assert!(!has_name(&verified(Some("")), true));
        assert!(has_name(&verified(Some("Tolvan")), true));
    }

    #[test]
    fn subject_modes() {
        let subject = |mode| {
            let headers = identity_headers(&verified(None), CALL, &opts(mode, false));
            headers
                .into_iter()
                .find(|(n, _)| n == "X-Identity-Subject")
                .map(|(_, v)| v)
        };
        assert_eq!(
            subject(SubjectMode::Masked).as_deref(),
            Some("19811228-****")
        );
        assert_eq!(subject(SubjectMode::Full).as_deref(), Some("198112289874"));
        assert_eq!(subject(SubjectMode::None), None);
    }

    #[test]
    fn custom_prefix() {
        let opts = HeaderOptions {
            prefix: "X-Id-".into(),
            ..HeaderOptions::default()
        };
        let headers = identity_headers(&verified(None), CALL, &opts);
        let names: Vec<_> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["X-Id-Status", "X-Id-Method", "X-Id-Subject", "X-Id-Call"]
        );
    }

    #[test]
    fn values_are_short_ascii_without_crlf() {
        for unit in ["a", "å", "€", "𝄞", "a\r\n", "%", " "] {
            let name = unit.repeat(500);
            let headers =
                identity_headers(&verified(Some(&name)), CALL, &opts(SubjectMode::Full, true));
            for (header, value) in &headers {
                assert!(
                    value.is_ascii() && value.len() < 1024,
                    "{header} for {unit:?}"
                );
                assert!(!value.contains(['\r', '\n']), "{header} for {unit:?}");
            }
            let encoded = &headers
                .iter()
                .find(|(n, _)| n == "X-Identity-Name")
                .unwrap()
                .1;
            assert!(encoded.len() <= MAX_ENCODED_NAME_LEN);
            assert!(
                name.starts_with(&percent_decode(encoded)),
                "cut on a char boundary"
            );
        }
    }

    #[test]
    fn uri_headers_escape_and_round_trip() {
        let headers = identity_headers(
            &verified(Some("Åsa & Bo = ?+%")),
            CALL,
            &opts(SubjectMode::Masked, true),
        );
        let mut all = headers.clone();
        all.push((
            "X-Odd name&=?".into(),
            "a b&c=d?e%f+g/h:i[j]$k~l'm(n)*!".into(),
        ));
        let encoded = encode_uri_headers(&all);
        let literal = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()[]/:$%&=".contains(c);
        assert!(encoded.chars().all(literal), "{encoded}");
        assert!(encoded.starts_with("X-Identity-Status=verified&X-Identity-Method=bankid&"));
        assert!(encoded.contains("X-Identity-Name=%25C3%2585sa%2520%2526%2520Bo"));
        let decoded: Vec<(String, String)> = encoded
            .split('&')
            .map(|pair| pair.split_once('=').unwrap())
            .map(|(n, v)| (percent_decode(n), percent_decode(v)))
            .collect();
        assert_eq!(decoded, all);
        assert_eq!(encode_uri_headers(&[]), "");
    }

    #[test]
    fn identity_header_names_any_case() {
        for name in [
            "X-Identity-Status",
            "x-identity-token",
            "X-IDENTITY-Whatever",
            "X-Identity-",
        ] {
            assert!(is_identity_header(name, DEFAULT_PREFIX), "{name}");
        }
        for name in [
            "X-Identit",
            "From",
            "X-Identity",
            "P-Asserted-Identity",
            "X-Idéntity-Status",
            "",
        ] {
            assert!(!is_identity_header(name, DEFAULT_PREFIX), "{name}");
        }
        assert!(is_identity_header("x-id-status", "X-Id-"));
        assert!(!is_identity_header("X-Identity-Status", ""));
    }

    /// Splits a `User-to-User` value into its text (after the protocol discriminator) and
    /// parameters, decoding the hex (test-only).
    fn decode_uui(value: &str) -> (String, Vec<&str>) {
        let mut parts = value.split(';');
        let octets = hex::decode(parts.next().unwrap()).unwrap();
        assert_eq!(octets[0], UUI_PROTOCOL_DISCRIMINATOR, "{value}");
        assert!(octets.len() <= MAX_UUI_OCTETS, "{value}");
        (
            String::from_utf8(octets[1..].to_vec()).unwrap(),
            parts.collect(),
        )
    }

    #[test]
    fn user_to_user_round_trips_every_verdict() {
        let verdict = verified(Some("Tolvan"));
        let value = user_to_user(&verdict, CALL);
        let (text, params) = decode_uui(&value);
        assert_eq!(text, format!("verified;call={CALL_TEXT}"));
        assert_eq!(
            params,
            ["encoding=hex", "purpose=isdn-uui", "content=isdn-uui"]
        );
        for reason in Reason::ALL {
            let verdict = Verdict::Unverified {
                reason,
                method: Some(Method::Bankid),
            };
            let value = user_to_user(&verdict, CALL);
            let expected = format!("unverified;reason={};call={CALL_TEXT}", reason.as_str());
            assert_eq!(decode_uui(&value).0, expected);
            assert_eq!(uui_text(&verdict, CALL), expected);
        }
    }

    #[test]
    fn user_to_user_is_short_ascii_hex_without_crlf() {
        let verdicts = Reason::ALL
            .into_iter()
            .map(|reason| Verdict::Unverified {
                reason,
                method: None,
            })
            .chain([verified(Some(&"å".repeat(500)))]);
        for verdict in verdicts {
            let call = Uuid::from_u128(u128::MAX);
            let text = uui_text(&verdict, call);
            assert!(text.is_ascii() && text.len() <= 74, "{text}");
            assert!(!text.contains(['\r', '\n']), "{text}");
            let value = user_to_user(&verdict, call);
            let (hex_part, _) = value.split_once(';').unwrap();
            assert!(hex_part.len() <= 2 * MAX_UUI_OCTETS, "{value}");
            let hex_digit = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
            assert!(hex_part.chars().all(hex_digit), "{value}");
            assert!(value.is_ascii() && !value.contains(['\r', '\n']));
        }
    }

    #[test]
    fn user_to_user_only_when_configured_and_last() {
        let verdict = verified(None);
        let off = identity_headers_with_token(&verdict, CALL, &HeaderOptions::default(), "t");
        assert!(off.iter().all(|(n, _)| n != USER_TO_USER));
        let opts = HeaderOptions {
            user_to_user: true,
            ..HeaderOptions::default()
        };
        let on = identity_headers_with_token(&verdict, CALL, &opts, "t");
        assert_eq!(on.len(), off.len() + 1);
        assert_eq!(on[..off.len()], off[..]);
        let (name, value) = on.last().unwrap();
        assert_eq!(
            (name.as_str(), value.clone()),
            (USER_TO_USER, user_to_user(&verdict, CALL))
        );
        // In a Refer-To URI the parameters are escaped with the value (Genesys Cloud's format).
        let encoded = encode_uri_headers(&on);
        let hex_text = hex::encode(format!("\u{4}verified;call={CALL_TEXT}"));
        assert!(
            encoded.ends_with(&format!(
                "&User-to-User={hex_text}%3Bencoding%3Dhex%3Bpurpose%3Disdn-uui%3Bcontent%3Disdn-uui"
            )),
            "{encoded}"
        );
    }
}
