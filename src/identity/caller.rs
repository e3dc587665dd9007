//! Who is calling: the caller number in E.164 form, from the INVITE's identity headers.
//!
//! Hand-written on purpose: rsipstack misparses user parts with parameters
//! (`sip:+46701234567;cpc=ordinary@host` gives no user, see DESIGN.md), so this works on the
//! raw header text: RFC 3261 §20.10/§25.1 (name-addr, user part), RFC 3966 (tel:), RFC 3325
//! (P-Asserted-Identity), RFC 3323 (Privacy), draft-ietf-sip-privacy-04 (Remote-Party-ID).
//! Normalisation to E.164 is left to `phonenumber` (libphonenumber's metadata).

use std::fmt;

use percent_encoding::percent_decode_str;
use phonenumber::{Mode, country};

/// Why a text is not a usable caller number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    /// The default region is not a known ISO 3166 alpha-2 code (a configuration fault).
    #[error("unknown region code {region:?} (expected ISO 3166 alpha-2, such as \"SE\")")]
    UnknownRegion {
        /// The region code as configured.
        region: String,
    },
    /// The text is not a phone number at all (letters, nothing to parse, far too long).
    #[error("not a phone number")]
    NotANumber,
    /// A number no range in libphonenumber's metadata allows (a short extension, wrong length).
    #[error("not a valid phone number for its country")]
    InvalidNumber,
}

/// Whether `code` is an ISO 3166 alpha-2 region the phone number metadata knows (case-insensitive);
/// for validating a route's default region at start-up.
pub fn is_known_region(code: &str) -> bool {
    region_id(code).is_ok()
}

fn region_id(code: &str) -> Result<country::Id, CallerError> {
    let unknown = |_| CallerError::UnknownRegion {
        region: code.to_owned(),
    };
    code.trim().to_ascii_uppercase().parse().map_err(unknown)
}

/// A phone number in E.164 form (`+46701234567`). `Debug` is redacted (`E164(+467012*****)`);
/// `Display` and [`E164::as_str`] give the full number.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

impl E164 {
    /// Normalises a number with `phonenumber`, national forms read in `default_region` (ISO 3166
    /// alpha-2, `"SE"`): `+46 70-123 45 67`, `0701234567`, `0046701234567`. Only digits, `+`,
    /// space, `-`, `.`, `(`, `)` are accepted. Without a `+` (`46701234567` from a trunk),
    /// libphonenumber strips the region's own country code when the rest is a valid national
    /// number (`+46701234567`), else reads all digits as national. The result must be valid per
    /// the metadata (strict: a range newer than the crate's metadata is rejected).
    pub fn parse(raw: &str, default_region: &str) -> Result<E164, CallerError> {
        let region = region_id(default_region)?;
        let raw = raw.trim();
        let allowed =
            |c: char| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')');
        if !raw.chars().any(|c| c.is_ascii_digit()) || !raw.chars().all(allowed) {
            return Err(CallerError::NotANumber);
        }
        let number = phonenumber::parse(Some(region), raw).map_err(|_| CallerError::NotANumber)?;
        if !number.is_valid() {
            return Err(CallerError::InvalidNumber);
        }
        let e164 = number.format().mode(Mode::E164).to_string();
        // `phonenumber` can call a number valid that has more than E.164's 15 digits (the
        // fuzzer found `+0049662302222222225`: an international prefix after the `+` and a
        // long German number). Such a string is no caller number a token or an agent can use.
        let digits = e164.strip_prefix('+').unwrap_or_default();
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CallerError::InvalidNumber);
        }
        Ok(E164(e164))
    }

    /// The number, `+46701234567`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: `+` and at most the first six digits, the rest (at least four) as stars:
    /// `+467012*****`.
    pub fn redacted(&self) -> String {
        let digits = &self.0[1..];
        let keep = digits.len().saturating_sub(4).min(6);
        format!("+{}{}", &digits[..keep], "*".repeat(digits.len() - keep))
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.redacted())
    }
}

/// The caller as idgate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerId {
    /// A number, normalised.
    Number(E164),
    /// Withheld or anonymous (`Privacy: id`, `anonymous@anonymous.invalid`, RPID privacy).
    Anonymous,
    /// A SIP identity that is not a phone number (`sip:alice@example.com`, a short extension).
    NotANumber,
}

impl CallerId {
    /// The token's `orig` claim: the E.164 number, or `anonymous` for everything else (a SIP
    /// user that is not a number is no more a verifiable caller number than a withheld one).
    pub fn as_claim(&self) -> String {
        match self {
            CallerId::Number(number) => number.as_str().to_owned(),
            CallerId::Anonymous | CallerId::NotANumber => "anonymous".to_owned(),
        }
    }
}

/// Finds the caller in the INVITE's raw `(name, value)` header lines, in order:
///
/// 1. `P-Asserted-Identity`, only from a trusted peer (RFC 3325 §9.1). Several values (comma
///    separated or several lines): the first that is a number wins, else the first readable one.
/// 2. `Privacy` with the token `id` (RFC 3325 §9.3) and no trusted PAI: anonymous. With a trusted
///    PAI, the PAI is used anyway: `Privacy: id` asks the trust domain not to pass the identity
///    *on* to untrusted parties, and idgate is inside the trust domain of its trunk (it never
///    forwards the caller's PAI; the queue leg gets only idgate's own headers).
/// 3. `Remote-Party-ID`, only from a trusted peer: `privacy=full` or `privacy=uri` on any value
///    means withheld (`privacy=name` hides only the display name).
/// 4. `From` (or compact `f`). No `From` at all counts as anonymous.
///
/// Anonymous users are `anonymous`, `restricted`, `unavailable`, `unknown`, `private` and the
/// empty user, and any user at host `anonymous.invalid` (RFC 3323 §4.1.1.3).
pub fn extract_caller(
    headers: &[(String, String)],
    trusted_peer: bool,
    default_region: &str,
) -> CallerId {
    let classify = |value: &str| classify_value(value, default_region);
    if trusted_peer {
        let asserted = header_values(headers, &["p-asserted-identity"]).filter_map(classify);
        if let Some(caller) = prefer_number(asserted) {
            return caller;
        }
    }
    if privacy_requests_id(headers) {
        return CallerId::Anonymous;
    }
    if trusted_peer && let Some(caller) = remote_party_id(headers, default_region) {
        return caller;
    }
    match header_values(headers, &["from", "f"]).next() {
        Some(value) => classify(value).unwrap_or(CallerId::NotANumber),
        None => CallerId::Anonymous,
    }
}

/// The user part of a Request-URI (`sip:`, `sips:`, or the number of a `tel:` URI), with
/// user-part parameters and any password dropped and percent-escapes decoded, for routing by
/// called number: `sip:5000;phone-context=x@host` gives `5000`. `None` when there is no user,
/// the escapes are not UTF-8, or the result contains control characters.
pub fn request_uri_user(uri: &str) -> Option<String> {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let (scheme, rest) = uri.split_once(':')?;
    let user = match scheme.to_ascii_lowercase().as_str() {
        "sip" | "sips" => rest.split_once('@')?.0.split(':').next()?,
        "tel" => rest,
        _ => return None,
    };
    let user = user.split(';').next()?;
    let decoded = percent_decode_str(user).decode_utf8().ok()?;
    if decoded.is_empty() || decoded.chars().any(char::is_control) {
        return None;
    }
    Some(decoded.into_owned())
}

/// Raw `(name, value)` header lines.
type Headers = [(String, String)];

/// Whether a header name is one of `names` (lower case), ignoring case and surrounding space.
fn is_named(name: &str, names: &[&str]) -> bool {
    let name = name.trim();
    names.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Every value of the headers called `names`, split at top-level commas (RFC 3261 §7.3.1).
fn header_values<'a>(headers: &'a Headers, names: &'a [&str]) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(name, _)| is_named(name, names))
        .flat_map(|(_, value)| split_top_level_commas(value))
}

/// Splits at commas outside quoted strings and `<...>`; empty pieces are dropped.
fn split_top_level_commas(value: &str) -> Vec<&str> {
    let (mut pieces, mut start) = (Vec::new(), 0);
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    for (i, b) in value.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                pieces.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&value[start..]);
    pieces.retain(|p| !p.trim().is_empty());
    pieces.iter().map(|p| p.trim()).collect()
}

/// The first number among `callers`, else the first caller at all.
fn prefer_number(callers: impl Iterator<Item = CallerId>) -> Option<CallerId> {
    let mut first = None;
    for caller in callers {
        if matches!(caller, CallerId::Number(_)) {
            return Some(caller);
        }
        first.get_or_insert(caller);
    }
    first
}

/// Whether any `Privacy` header carries the token `id` (RFC 3323 §4.2: `;`-separated values).
fn privacy_requests_id(headers: &Headers) -> bool {
    header_values(headers, &["privacy"])
        .flat_map(|value| value.split(';'))
        .any(|token| token.trim().eq_ignore_ascii_case("id"))
}

/// The caller from trusted `Remote-Party-ID` values, if any is readable.
fn remote_party_id(headers: &Headers, region: &str) -> Option<CallerId> {
    let values: Vec<_> = header_values(headers, &["remote-party-id"])
        .filter_map(name_addr)
        .collect();
    let withheld = |(_, params): &(&str, &str)| {
        param(params, "privacy").is_some_and(|p| ["full", "uri"].contains(&&*p.to_lowercase()))
    };
    if values.iter().any(withheld) {
        return Some(CallerId::Anonymous);
    }
    prefer_number(values.iter().map(|(uri, _)| classify_uri(uri, region)))
}

/// Classifies one header value; `None` when it is not a readable name-addr or addr-spec.
fn classify_value(value: &str, region: &str) -> Option<CallerId> {
    name_addr(value).map(|(uri, _)| classify_uri(uri, region))
}

/// Splits a name-addr or addr-spec (RFC 3261 §20.10), `"Display \"Name\"" <uri>;params`,
/// `Display <uri>;params` or `uri;params`, into the URI (without `<>`) and the header
/// parameters from their first `;` (empty if none).
fn name_addr(value: &str) -> Option<(&str, &str)> {
    let value = value.trim();
    let (rest, quoted) = match value.strip_prefix('"') {
        Some(inside) => (skip_quoted(inside)?, true),
        None => (value, false),
    };
    if let Some(open) = rest.find('<') {
        let (uri, params) = rest[open + 1..].split_once('>')?;
        return Some((uri.trim(), params));
    }
    if quoted || value.is_empty() {
        return None;
    }
    // addr-spec: header parameters begin at the first `;` after the host (a `;` before the
    // `@` belongs to the user part, the case rsipstack gets wrong).
    let host = value.find('@').unwrap_or(0);
    Some((
        value,
        value[host..].find(';').map_or("", |i| &value[host + i..]),
    ))
}

/// The value of `name` in `;`-separated parameters (case-insensitive name, quotes removed).
fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (key, value) = p.split_once('=')?;
        let value = value.trim().trim_matches('"');
        key.trim().eq_ignore_ascii_case(name).then_some(value)
    })
}

/// The text after a quoted string whose opening `"` is already consumed (handles `\"`, `\\`).
fn skip_quoted(inside: &str) -> Option<&str> {
    let mut escaped = false;
    for (i, b) in inside.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(inside[i + 1..].trim_start()),
            _ => {}
        }
    }
    None
}

/// Classifies a URI: `sip:`/`sips:` by user and host, `tel:` by number, other schemes are not
/// numbers.
fn classify_uri(uri: &str, region: &str) -> CallerId {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return CallerId::NotANumber;
    };
    match scheme.trim().to_ascii_lowercase().as_str() {
        "sip" | "sips" => classify_sip(rest, region),
        "tel" => {
            let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
            classify_user(number, params, region)
        }
        _ => CallerId::NotANumber,
    }
}

fn classify_sip(rest: &str, region: &str) -> CallerId {
    let (userinfo, hostport) = rest.split_once('@').unwrap_or(("", rest));
    let host = hostport.split([';', '?']).next().unwrap_or("");
    let host = host
        .rsplit_once(':')
        .filter(|_| !host.ends_with(']'))
        .map_or(host, |(h, _)| h);
    if host.trim().eq_ignore_ascii_case("anonymous.invalid") {
        return CallerId::Anonymous;
    }
    let userinfo = userinfo.split(':').next().unwrap_or("");
    let (user, params) = userinfo.split_once(';').unwrap_or((userinfo, ""));
    classify_user(user, params, region)
}

/// Words that mean "no caller identity" in a user part (RFC 3323 and common trunk practice).
const ANONYMOUS_USERS: &[&str] = &[
    "anonymous",
    "restricted",
    "unavailable",
    "unknown",
    "private",
];

/// Classifies a user part (or tel number) with its `;`-parameters (`phone-context`).
fn classify_user(user: &str, params: &str, region: &str) -> CallerId {
    let user = percent_decode_str(user).decode_utf8_lossy();
    let user = user.trim();
    if user.is_empty() || ANONYMOUS_USERS.iter().any(|a| user.eq_ignore_ascii_case(a)) {
        return CallerId::Anonymous;
    }
    let digits = strip_visual_separators(user);
    let is_number = digits.strip_prefix('+').unwrap_or(&digits);
    if is_number.is_empty() || !is_number.bytes().all(|b| b.is_ascii_digit()) {
        return CallerId::NotANumber;
    }
    // RFC 3966 §5.1.5: a local number in a global-number context (`phone-context=+46`).
    let global = match param(params, "phone-context").map(percent_decode_str) {
        Some(ctx) if !digits.starts_with('+') => {
            let ctx = strip_visual_separators(&ctx.decode_utf8_lossy());
            if ctx.starts_with('+') {
                ctx + &digits
            } else {
                digits
            }
        }
        _ => digits,
    };
    E164::parse(&global, region).map_or(CallerId::NotANumber, CallerId::Number)
}

/// Removes RFC 3966 visual separators (`-`, `.`, `(`, `)`) and whitespace.
fn strip_visual_separators(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')') && !c.is_whitespace())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallerId::{Anonymous, NotANumber};

    const NUMBER: &str = "+46701234567";
    const PAI: &str = "P-Asserted-Identity";
    const FROM_ALICE: (&str, &str) = ("From", "<sip:alice@example.com>");
    const FROM_NUMBER: (&str, &str) = ("f", "<sip:0701234567@h>");

    fn extract(lines: &[(&str, &str)], trusted: bool) -> CallerId {
        let owned = lines.iter().map(|(n, v)| (n.to_string(), v.to_string()));
        extract_caller(&owned.collect::<Vec<_>>(), trusted, "SE")
    }

    fn number() -> CallerId {
        CallerId::Number(E164::parse(NUMBER, "SE").unwrap())
    }

    /// Asserts that each value, as the only `From` header, gives `expected`.
    fn assert_from(values: &[&str], expected: CallerId) {
        for value in values {
            assert_eq!(extract(&[("From", value)], false), expected, "{value}");
        }
    }

    #[test]
    fn e164_forms_and_errors() {
        // `46701234567`: no plus from the trunk; libphonenumber strips the region's code.
        for raw in [
            "0701234567",
            "+46 70-123 45 67",
            "0046701234567",
            " (070) 123.45.67 ",
        ]
        .into_iter()
        .chain(["46701234567", "+46701234567"])
        {
            assert_eq!(E164::parse(raw, "SE").unwrap().as_str(), NUMBER, "{raw}");
        }
        let gb = E164::parse("07400 123456", "gb").unwrap();
        assert_eq!(gb.as_str(), "+447400123456");
        let err = E164::parse(NUMBER, "XX").unwrap_err();
        assert!(matches!(&err, CallerError::UnknownRegion { region } if region == "XX"));
        assert!(err.to_string().contains("XX"));
        assert!(!is_known_region("XX") && is_known_region("se"));
        let errors = [
            ("alice", CallerError::NotANumber),
            ("", CallerError::NotANumber),
            ("0701234567#", CallerError::NotANumber),
            ("tel:+46701234567", CallerError::NotANumber),
            ("112", CallerError::InvalidNumber),
            ("1001", CallerError::InvalidNumber),
            ("+4670123", CallerError::InvalidNumber),
            // Found by fuzz/run caller_number: "valid" to phonenumber, 17 digits in E.164.
            ("+0049662302222222225", CallerError::InvalidNumber),
        ];
        for (raw, error) in errors {
            assert_eq!(E164::parse(raw, "SE"), Err(error), "{raw}");
        }
    }

    #[test]
    fn e164_display_and_redaction() {
        let n = E164::parse(NUMBER, "SE").unwrap();
        assert_eq!(n.to_string(), NUMBER);
        assert_eq!(n.redacted(), "+467012*****");
        assert_eq!(format!("{:?}", Some(&n)), "Some(E164(+467012*****))");
        assert_eq!(CallerId::Number(n).as_claim(), NUMBER);
        assert_eq!(Anonymous.as_claim(), "anonymous");
        assert_eq!(NotANumber.as_claim(), "anonymous");
    }

    #[test]
    fn uri_forms_giving_the_number() {
        assert_from(
            &[
                r#""Doe, \"JD\" <x>" <sip:+46701234567@example.com>;tag=a,b"#,
                r#""a\\" <sip:0701234567@example.com>"#,
                "Alice Doe <sip:0701234567@example.com>;tag=1",
                "sip:0701234567@example.com;tag=1",
                "<sips:+46701234567@example.com:5061;transport=tls>",
                "<SIP:+46701234567:secret@example.com>",
                "<tel:+46701234567;phone-context=example.com>",
                "<tel:0701234567;phone-context=+46>;tag=9",
                "tel:+46-70-(123) 45.67",
                "<sip:0701234567;phone-context=+46@gw.example.com;user=phone>",
                "<sip:+46701234567;cpc=ordinary@host;user=phone>;tag=x",
                "sip:+46701234567;cpc=ordinary@host;user=phone;tag=x",
                "<sip:%2b46%2070%2D1234567@host>",
                "  <sip:0701234567@host>  ",
            ],
            number(),
        );
    }

    #[test]
    fn anonymous_and_not_a_number() {
        for user in ANONYMOUS_USERS {
            assert_eq!(
                extract(&[("From", &format!("<sip:{user}@h>"))], false),
                Anonymous
            );
        }
        assert_from(
            &[
                "<sip:Anonymous@example.com>",
                "<sip:UNKNOWN@example.com>",
                r#""Anonymous" <sip:anonymous@anonymous.invalid>;tag=1"#,
                "<sip:+46701234567@Anonymous.Invalid:5060>",
                "<sip:example.com>",
                "<sip:@example.com>",
            ],
            Anonymous,
        );
        assert_from(
            &[
                "<sip:alice@example.com>",
                "<sip:1001@pbx.local>",
                "<sip:*21#@pbx.local>",
                "<sip:+@pbx.local>",
                "<urn:service:sos>",
                "garbage",
                "<sip:0701234567@host",
                r#""unterminated <sip:0701234567@example.com>"#,
            ],
            NotANumber,
        );
    }

    #[test]
    fn header_names_any_case_and_compact() {
        for name in ["from", "FROM", "f", "F", "  From "] {
            let lines = [("Via", "SIP/2.0/UDP x"), (name, "<sip:0701234567@h>")];
            assert_eq!(extract(&lines, false), number(), "{name}");
        }
        assert_eq!(extract(&[("To", "<sip:1@h>")], false), Anonymous);
    }

    #[test]
    fn pai_trusted_only_and_number_preferred() {
        let lines = [FROM_ALICE, (PAI, "<sip:+46701234567@t>")];
        assert_eq!(extract(&lines, true), number());
        assert_eq!(extract(&lines, false), NotANumber);
        let one_line = r#""Doe, J" <sip:alice@example.com>, <tel:+46701234567>"#;
        assert_eq!(
            extract(&[("p-asserted-identity", one_line)], true),
            number()
        );
        let two_lines = [
            (PAI, "<sip:a@x>"),
            ("P-ASSERTED-IDENTITY", "<tel:0701234567>"),
        ];
        assert_eq!(extract(&two_lines, true), number());
        let only_name = [(PAI, "<sip:alice@example.com>"), FROM_NUMBER];
        assert_eq!(extract(&only_name, true), NotANumber);
        assert_eq!(extract(&[(PAI, "\"x"), FROM_NUMBER], true), number());
    }

    #[test]
    fn privacy_id() {
        for privacy in ["id", "ID", "header;id", "user ; id ; critical"] {
            let lines = [("Privacy", privacy), FROM_NUMBER];
            assert_eq!(extract(&lines, true), Anonymous, "{privacy}");
        }
        for privacy in ["none", "user", "header"] {
            let lines = [("privacy", privacy), FROM_NUMBER];
            assert_eq!(extract(&lines, true), number(), "{privacy}");
        }
        let anonymous = ("From", "\"Anonymous\" <sip:anonymous@anonymous.invalid>");
        let with_pai = [("Privacy", "id"), (PAI, "<tel:+46701234567>"), anonymous];
        assert_eq!(extract(&with_pai, true), number());
        assert_eq!(extract(&with_pai, false), Anonymous);
    }

    #[test]
    fn remote_party_id() {
        let cases = [
            (
                "<sip:+46701234567@gw>;party=calling;screen=yes",
                true,
                number(),
            ),
            ("<sip:+46701234567@gw>;privacy=name", true, number()),
            ("<sip:+46701234567@gw>;privacy=full", true, Anonymous),
            ("<sip:+46701234567@gw>;Privacy=\"URI\"", true, Anonymous),
            ("sip:+46701234567@gw;privacy=full", true, Anonymous),
            ("<sip:+46701234567@gw>;privacy=full", false, NotANumber),
        ];
        for (rpid, trusted, expected) in cases {
            let lines = [("Remote-Party-ID", rpid), FROM_ALICE];
            assert_eq!(extract(&lines, trusted), expected, "{rpid}");
        }
        let with_pai = [
            ("remote-party-id", "<sip:1@gw>;privacy=full"),
            (PAI, "<tel:+46701234567>"),
        ];
        assert_eq!(extract(&with_pai, true), number());
    }

    #[test]
    fn request_uri_users() {
        let cases = [
            ("sip:5000@idgate.example.com", Some("5000")),
            ("sip:5000;phone-context=x@host", Some("5000")),
            (
                " <sips:%2B468123456@h:5061;transport=tls> ",
                Some("+468123456"),
            ),
            ("SIP:support:pw@h", Some("support")),
            ("tel:+46812345;phone-context=x", Some("+46812345")),
            ("sip:%C3%A5sa@h", Some("åsa")),
            ("sip:h.example", None),
            ("sip:@h", None),
            ("sip:%FF@h", None),
            ("sip:a%0D%0Ab@h", None),
            ("mailto:a@h", None),
            ("5000", None),
        ];
        for (uri, user) in cases {
            assert_eq!(request_uri_user(uri).as_deref(), user, "{uri}");
        }
    }
}
