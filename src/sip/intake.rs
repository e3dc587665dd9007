//! The gate every received SIP message passes before rsipstack sees it (RFC 3261 §8.2, §18.3,
//! RFC 4475). Sans-IO: bytes in, a [`Verdict`] out.
//!
//! Why idgate checks syntax itself: rsipstack 0.7.14's parser is lenient where RFC 3261 is strict
//! (a negative or duplicated Content-Length reads as 0 or the first value, a repeated To or CSeq
//! is kept, a CSeq method that differs from the request's is ignored) and, where it does fail, the
//! transport drops the message without a word (`udp.rs`: "error parsing SIP message"; TCP: the
//! connection is closed; a request whose transaction key cannot be built is dropped in the
//! endpoint). A UAS must answer such a request with 400 when a response can be built at all
//! (RFC 3261 §8.2, RFC 4475 §3.1.2), and a request idgate cannot parse must never reach the call
//! logic. So every message is checked here: a request that fails gets its final response
//! statelessly (RFC 3261 §8.2.7) and never reaches the stack; a malformed response is discarded.

use std::fmt::Write as _;
use std::net::SocketAddr;

use rsipstack::sip::{Method, SipMessage};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transport::SipConnection;

/// The methods idgate answers (the `Allow` header of every refusal).
pub(super) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE, PRACK";

/// The transport a message arrived on: framing differs (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// One datagram is one message; the body runs to the datagram's end.
    Udp,
    /// A stream: the message was framed by its Content-Length.
    Tcp,
}

impl Carrier {
    fn stack(self) -> rsipstack::sip::Transport {
        match self {
            Carrier::Udp => rsipstack::sip::Transport::Udp,
            Carrier::Tcp => rsipstack::sip::Transport::Tcp,
        }
    }
}

/// What becomes of one received message.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Well-formed: hand it to the stack, parsed.
    Pass(Box<SipMessage>),
    /// A request refused here; `response` is the whole stateless response to send back on the
    /// transport it came from (to the packet's source address and port for UDP).
    Refuse {
        /// The status code (400, 416, 501 or 505).
        status: u16,
        /// Why.
        reason: Malformed,
        /// The response bytes.
        response: Vec<u8>,
    },
    /// Nothing may be answered (a response, or a request without a Via to answer along): drop.
    Discard(Malformed),
}

/// Why a message was refused or discarded. The texts name the rule, never the message's content
/// (it may hold caller numbers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    /// No empty line ends the header section (RFC 3261 §7).
    #[error("no empty line after the headers")]
    NoHeaderEnd,
    /// The header section is not UTF-8 (the stack would silently cut the headers there).
    #[error("header section is not UTF-8")]
    Encoding,
    /// The first line is neither a Request-Line nor a Status-Line (RFC 3261 §7.1, §7.2).
    #[error("malformed start line")]
    StartLine,
    /// A SIP version other than 2.0 (RFC 3261 §8.2.2 … answered 505).
    #[error("SIP version not supported")]
    Version,
    /// The Request-URI is not a URI (`<>` around it, spaces inside it, no scheme).
    #[error("malformed Request-URI")]
    RequestUri,
    /// A Request-URI scheme idgate does not serve (RFC 3261 §8.2.2.1, answered 416).
    #[error("Request-URI scheme not supported")]
    Scheme,
    /// A method the stack does not know (RFC 3261 §8.2.1, answered 501).
    #[error("method not implemented")]
    Method,
    /// A header line that is neither `name: value` nor a continuation.
    #[error("malformed header line")]
    HeaderLine,
    /// A mandatory header is missing (RFC 3261 §8.1.1).
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header that takes one value appears more than once (RFC 3261 §7.3.1).
    #[error("{0} header appears more than once")]
    Repeated(&'static str),
    /// A header value breaks its grammar or range (RFC 3261 §25.1, §20).
    #[error("malformed {0} header")]
    Value(&'static str),
    /// Content-Length says more bytes than the datagram holds (RFC 3261 §18.3).
    #[error("Content-Length exceeds the message")]
    ShortBody,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method differs from the request method")]
    CSeqMethod,
    /// A Status-Line or response the stack cannot take (responses are never answered).
    #[error("malformed response")]
    Response,
    /// The stack's own parser, transaction key or Via handling refused it.
    #[error("refused by the SIP stack's parser")]
    Stack,
}

impl Malformed {
    /// The status code a request refused for this reason gets.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Malformed::Version => 505,
            Malformed::Scheme => 416,
            Malformed::Method => 501,
            _ => 400,
        }
    }
}

/// Inspects one message (a datagram, or one framed message of a stream) from `source`.
pub(crate) fn inspect(bytes: &[u8], source: SocketAddr, carrier: Carrier) -> Verdict {
    let head = match Head::split(bytes) {
        Ok(head) => head,
        Err(why) => return Verdict::Discard(why),
    };
    let result = if head.is_response() {
        check_response(&head, bytes)
    } else {
        check_request(&head, bytes)
    };
    let why = match result.and_then(|()| stack_accepts(bytes, source, carrier)) {
        Ok(msg) => return Verdict::Pass(Box::new(msg)),
        Err(why) => why,
    };
    if head.is_response() || head.first("via").is_none() {
        return Verdict::Discard(why);
    }
    Verdict::Refuse {
        status: why.status(),
        response: stateless_response(&head, &why),
        reason: why,
    }
}

/// The same steps rsipstack takes on receipt (parse, Via `received`/`rport`, transaction key):
/// whatever would fail there silently fails here, where it can still be answered.
fn stack_accepts(
    bytes: &[u8],
    source: SocketAddr,
    carrier: Carrier,
) -> Result<SipMessage, Malformed> {
    let msg = SipMessage::try_from(bytes).map_err(|_| Malformed::Stack)?;
    // The stack adds `received`/`rport` itself on receipt: the message handed on stays as sent.
    SipConnection::update_msg_received(msg.clone(), source, carrier.stack())
        .map_err(|_| Malformed::Stack)?;
    let key = match &msg {
        SipMessage::Request(r) => TransactionKey::from_request(r, TransactionRole::Server),
        SipMessage::Response(r) => TransactionKey::from_response(r, TransactionRole::Client),
    };
    key.map_err(|_| Malformed::Stack)?;
    Ok(msg)
}

/// The start line and the unfolded headers of a message (RFC 3261 §7.3.1).
struct Head<'a> {
    start: &'a str,
    headers: Vec<(&'a str, String)>,
    /// Byte offset of the body.
    body_at: usize,
    /// A line that is neither `name: value` nor a continuation of one.
    bad_line: bool,
}

impl<'a> Head<'a> {
    fn split(bytes: &'a [u8]) -> Result<Head<'a>, Malformed> {
        let end = find(bytes, b"\r\n\r\n").ok_or(Malformed::NoHeaderEnd)?;
        let text = std::str::from_utf8(&bytes[..end]).map_err(|_| Malformed::Encoding)?;
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or_default();
        let mut headers: Vec<(&str, String)> = Vec::new();
        let mut bad_line = false;
        for line in lines {
            if line.starts_with([' ', '\t']) {
                match headers.last_mut() {
                    Some((_, value)) => {
                        value.push(' ');
                        value.push_str(line.trim());
                    }
                    None => bad_line = true,
                }
                continue;
            }
            match line.split_once(':') {
                Some((name, value)) => headers.push((name.trim_end(), value.trim().to_owned())),
                None => bad_line = true,
            }
        }
        // A bad line still leaves a head that may be answered.
        Ok(Head {
            start,
            headers,
            body_at: end + 4,
            bad_line,
        })
    }

    fn is_response(&self) -> bool {
        self.start.starts_with("SIP/")
    }

    /// Every value of a header, by its long or compact name (RFC 3261 §7.3.3), in order.
    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        let compact = compact_form(name);
        self.headers
            .iter()
            .filter(move |(n, _)| {
                n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c))
            })
            .map(|(_, v)| v.as_str())
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.all(name).next()
    }

    /// The single value of a header that takes one (RFC 3261 §7.3.1).
    fn single(&self, name: &'static str) -> Result<Option<&str>, Malformed> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(Malformed::Repeated(name));
        }
        Ok(first)
    }
}

fn compact_form(name: &str) -> Option<&'static str> {
    const FORMS: [(&str, &str); 8] = [
        ("via", "v"),
        ("from", "f"),
        ("to", "t"),
        ("call-id", "i"),
        ("content-length", "l"),
        ("content-type", "c"),
        ("contact", "m"),
        ("supported", "k"),
    ];
    FORMS
        .iter()
        .find(|(long, _)| long.eq_ignore_ascii_case(name))
        .map(|(_, short)| *short)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn check_response(head: &Head, bytes: &[u8]) -> Result<(), Malformed> {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 §7.2).
    let mut parts = head.start.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.eq_ignore_ascii_case("SIP/2.0")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
        || !(b'1'..=b'6').contains(&code.as_bytes()[0])
    {
        return Err(Malformed::Response);
    }
    check_common(head, bytes)
        .and_then(|()| cseq(head).map(|_| ()))
        .map_err(|_| Malformed::Response)
}

fn check_request(head: &Head, bytes: &[u8]) -> Result<(), Malformed> {
    let method = request_line(head.start)?;
    check_common(head, bytes)?;
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if head.first(name).is_none() {
            return Err(Malformed::Missing(name));
        }
    }
    // A request that can create a dialog names its target (RFC 3261 §8.1.1.8).
    if method == "INVITE" && head.first("Contact").is_none() {
        return Err(Malformed::Missing("Contact"));
    }
    let (_, cseq_method) = cseq(head)?;
    if cseq_method != method {
        return Err(Malformed::CSeqMethod);
    }
    if !is_known_method(method) {
        return Err(Malformed::Method);
    }
    Ok(())
}

/// Request-Line = Method SP Request-URI SP SIP-Version CRLF (RFC 3261 §7.1): exactly one space
/// between the elements. Trailing white space is tolerated (RFC 4475 §3.1.2.10 leaves it open).
fn request_line(line: &str) -> Result<&str, Malformed> {
    let line = line.trim_end_matches([' ', '\t']);
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts[..] else {
        return Err(if parts.len() > 3 && parts.iter().all(|p| !p.is_empty()) {
            Malformed::RequestUri
        } else {
            Malformed::StartLine
        });
    };
    if method.is_empty() || !method.chars().all(is_token_char) {
        return Err(Malformed::StartLine);
    }
    version_2_0(version)?;
    request_uri(uri)?;
    Ok(method)
}

/// `SIP/2.0` is served; another well-formed version gets 505 (RFC 3261 §8.2.2 … §21.5.7).
fn version_2_0(version: &str) -> Result<(), Malformed> {
    let Some(number) = version
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .map(|_| &version[4..])
    else {
        return Err(Malformed::StartLine);
    };
    let well_formed = number.split_once('.').is_some_and(|(major, minor)| {
        [major, minor]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    match (well_formed, number == "2.0") {
        (_, true) => Ok(()),
        (true, false) => Err(Malformed::Version),
        (false, false) => Err(Malformed::StartLine),
    }
}

/// The Request-URI: an absolute URI, a scheme idgate serves, no headers part in a SIP URI
/// (RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI).
fn request_uri(uri: &str) -> Result<(), Malformed> {
    let (scheme, rest) = uri.split_once(':').ok_or(Malformed::RequestUri)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok || rest.is_empty() {
        return Err(Malformed::RequestUri);
    }
    if !["sip", "sips", "tel"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return Err(Malformed::Scheme);
    }
    // userinfo may hold '?' (user-unreserved); the hostport and parameters after '@' may not.
    let host_part = rest.split_once('@').map_or(rest, |(_, host)| host);
    if host_part.contains('?') {
        return Err(Malformed::RequestUri);
    }
    // An IPv6 reference is in brackets (RFC 3261 §25.1 `IPv6reference`); `sip:2001:db8::10`
    // is refused with 400 (RFC 5118 §4.2).
    let hostport = host_part.split(';').next().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("tel")
        && !hostport.starts_with('[')
        && hostport.matches(':').count() > 1
    {
        return Err(Malformed::RequestUri);
    }
    Ok(())
}

fn is_known_method(method: &str) -> bool {
    // Methods are case-sensitive (RFC 3261 §7.1); the stack's parser is not.
    Method::all().iter().any(|m| m.to_string() == method)
}

/// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Checks shared by requests and responses: header names, single-valued headers, scalars,
/// Content-Length against the datagram, Via syntax, name-addr display names.
fn check_common(head: &Head, bytes: &[u8]) -> Result<(), Malformed> {
    if head.bad_line {
        return Err(Malformed::HeaderLine);
    }
    if head
        .headers
        .iter()
        .any(|(name, _)| name.is_empty() || !name.chars().all(is_token_char))
    {
        return Err(Malformed::HeaderLine);
    }
    for name in [
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Max-Forwards",
        "Content-Type",
    ] {
        head.single(name)?;
    }
    content_length(head, bytes)?;
    if let Some(value) = head.single("Max-Forwards")? {
        digits(value, 255).ok_or(Malformed::Value("Max-Forwards"))?;
    }
    if let Some(value) = head.single("Expires")? {
        expires(value)?;
    }
    if head
        .single("Call-ID")?
        .is_some_and(|id| id.is_empty() || id.contains([' ', '\t']))
    {
        return Err(Malformed::Value("Call-ID"));
    }
    for via in head.all("Via") {
        check_via(via)?;
    }
    for name in ["From", "To"] {
        if let Some(value) = head.first(name) {
            name_addr(value).ok_or(Malformed::Value(if name == "From" { "From" } else { "To" }))?;
        }
    }
    Ok(())
}

/// A decimal number no larger than `max`.
fn digits(value: &str, max: u64) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().filter(|n| *n <= max)
}

/// Expires: delta-seconds (RFC 3261 §20.19) up to 2^32-1. RFC 2543's date form is let through.
fn expires(value: &str) -> Result<(), Malformed> {
    if value.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        digits(value, u64::from(u32::MAX)).ok_or(Malformed::Value("Expires"))?;
    }
    Ok(())
}

/// Content-Length: one value (RFC 3261 §20.14), digits only; over UDP no larger than the bytes
/// that follow (§18.3: extra bytes after it are ignored, missing ones make the message bad).
fn content_length(head: &Head, bytes: &[u8]) -> Result<(), Malformed> {
    let Some(value) = head.single("Content-Length")? else {
        return Ok(());
    };
    let declared = digits(value, u64::from(u32::MAX)).ok_or(Malformed::Value("Content-Length"))?;
    let available = bytes.len().saturating_sub(head.body_at) as u64;
    // A stream hands over only complete messages, so on TCP this happens when it ends early.
    if declared > available {
        return Err(Malformed::ShortBody);
    }
    Ok(())
}

/// CSeq = 1*DIGIT LWS Method (RFC 3261 §20.16), the number below 2^31 (§8.1.1.5).
fn cseq<'h>(head: &'h Head) -> Result<(u32, &'h str), Malformed> {
    let value = head.single("CSeq")?.ok_or(Malformed::Missing("CSeq"))?;
    let mut parts = value.split_whitespace();
    let (Some(number), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Malformed::Value("CSeq"));
    };
    let number = digits(number, (1 << 31) - 1).ok_or(Malformed::Value("CSeq"))?;
    if !method.chars().all(is_token_char) {
        return Err(Malformed::Value("CSeq"));
    }
    Ok((number as u32, method))
}

/// Via = via-parm *(COMMA via-parm); via-parm = sent-protocol LWS sent-by *(SEMI via-params)
/// (RFC 3261 §20.42). LWS around the separators is allowed; empty values and parameters are not.
fn check_via(value: &str) -> Result<(), Malformed> {
    let bad = Malformed::Value("Via");
    for parm in value.split(',') {
        let mut pieces = parm.split(';');
        let sent = pieces.next().unwrap_or_default();
        let protocol: Vec<&str> = sent.split('/').map(str::trim).collect();
        let [name, version, rest] = protocol[..] else {
            return Err(bad);
        };
        let mut rest = rest.split_whitespace();
        let (Some(transport), Some(_sent_by), None) = (rest.next(), rest.next(), rest.next())
        else {
            return Err(bad);
        };
        let tokens_ok = [name, version, transport]
            .iter()
            .all(|t| !t.is_empty() && t.chars().all(is_token_char));
        if !tokens_ok {
            return Err(bad);
        }
        for param in pieces {
            let key = param.split('=').next().unwrap_or_default().trim();
            if key.is_empty() || !key.chars().all(is_token_char) {
                return Err(bad);
            }
        }
    }
    Ok(())
}

/// From / To: a name-addr whose display name is a closed quoted-string or tokens (RFC 3261
/// §25.1 `display-name = *(token LWS) / quoted-string`), or an addr-spec.
fn name_addr(value: &str) -> Option<()> {
    if let Some(inside) = value.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in inside.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => return inside[i + 1..].contains('<').then_some(()),
                _ => {}
            }
        }
        return None; // unterminated quoted-string
    }
    match value.split_once('<') {
        Some((display, _)) => display
            .chars()
            .all(|c| is_token_char(c) || c == ' ' || c == '\t')
            .then_some(()),
        None => Some(()),
    }
}

/// A final response built from the raw request (RFC 3261 §8.2.6): its Vias, From, To (with a tag
/// added), Call-ID and CSeq copied, nothing else of the caller's echoed.
fn stateless_response(head: &Head, why: &Malformed) -> Vec<u8> {
    let status = why.status();
    let mut out = format!("SIP/2.0 {status} {}\r\n", reason_phrase(status));
    for via in head.all("Via") {
        let _ = write!(out, "Via: {}\r\n", printable(via));
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        let Some(value) = head.first(name) else {
            continue;
        };
        let value = printable(value);
        if name == "To" && !value.to_ascii_lowercase().contains("tag=") {
            let _ = write!(out, "To: {value};tag={:08x}\r\n", rand::random::<u32>());
        } else {
            let _ = write!(out, "{name}: {value}\r\n");
        }
    }
    if status == 501 {
        let _ = write!(out, "Allow: {ALLOW}\r\n");
    }
    let _ = write!(
        out,
        "Warning: 399 idgate \"{why}\"\r\nContent-Length: 0\r\n\r\n"
    );
    out.into_bytes()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        416 => "Unsupported URI Scheme",
        501 => "Not Implemented",
        505 => "Version Not Supported",
        _ => "Bad Request",
    }
}

/// The value without control characters (a malformed message may carry any byte).
fn printable(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect()
}

#[cfg(test)]
mod request_uri_tests {
    use super::*;

    #[test]
    fn ipv6_references_in_the_request_uri_need_brackets() {
        for good in [
            "sip:[2001:db8::10]",
            "sip:[2001:db8::10]:5070",
            "sip:[2001:db8::10:5070]",
            "sip:user@[::1]:5060;transport=udp",
            "sip:user:secret@[::1]",
            "sip:192.0.2.1:5060",
            "tel:+46701234567",
        ] {
            assert_eq!(request_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "sip:2001:db8::10",
            "sip:user@2001:db8::10:5070",
            "sip:::1:5060",
        ] {
            assert_eq!(request_uri(bad), Err(Malformed::RequestUri), "{bad}");
        }
    }
}
