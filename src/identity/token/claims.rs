//! The token's claims (`IDENTITY-HEADERS.md`, "The token"): built from a verdict, written as
//! JSON within a byte budget, and read back with every claim's shape checked.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::TokenError;
use crate::identity::headers::{HeaderOptions, SubjectMode};
use crate::identity::{CallerId, E164, Method, PersonName, PersonalNumber, Reason, Verdict};

/// Longest `sip_call_id` written, in bytes as JSON-escaped: a longer Call-ID is cut (on a
/// character boundary) so the token stays under 1 KB. RFC 3261 Call-IDs are far shorter.
pub const MAX_SIP_CALL_ID_LEN: usize = 128;

/// `status`: the verdict, as in `X-Identity-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// A completed eID order for the right person in this call.
    Verified,
    /// Anything else (`reason` says why).
    Unverified,
}

impl Status {
    /// `verified` or `unverified`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Verified => "verified",
            Status::Unverified => "unverified",
        }
    }
}

/// `sub`: the personal identity number, as the `subject` setting allows. `Debug` never shows
/// all twelve digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSubject {
    /// All twelve digits (`subject = "full"`).
    Full(PersonalNumber),
    /// The date part and four stars, `19800101-****` (`subject = "masked"`).
    Masked(String),
}

impl TokenSubject {
    /// The masked form, whatever the token carries: what screens and logs may show.
    pub fn masked(&self) -> String {
        match self {
            TokenSubject::Full(number) => number.masked(),
            TokenSubject::Masked(masked) => masked.clone(),
        }
    }

    /// The text of the claim. For [`TokenSubject::Full`], all twelve digits: never log it.
    pub fn as_claim(&self) -> &str {
        match self {
            TokenSubject::Full(number) => number.as_digits(),
            TokenSubject::Masked(masked) => masked,
        }
    }
}

/// The claims of one token. Times are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `iss`: the configured issuer.
    pub iss: String,
    /// `iat`: when the token was issued.
    pub iat: u64,
    /// `exp`: when it expires.
    pub exp: u64,
    /// `jti`: unique per token.
    pub jti: Uuid,
    /// `call`: idgate's call id (as `X-Identity-Call`).
    pub call: Uuid,
    /// `sip_call_id`: the Call-ID of the inbound caller leg (see [`MAX_SIP_CALL_ID_LEN`]).
    pub sip_call_id: String,
    /// `orig`: the caller number, or `anonymous` ([`CallerId::Anonymous`]).
    pub orig: CallerId,
    /// `status`.
    pub status: Status,
    /// `reason`: present exactly when unverified.
    pub reason: Option<Reason>,
    /// `method`: when a method was tried (always when verified).
    pub method: Option<Method>,
    /// `sub`: verified only, per the `subject` setting.
    pub sub: Option<TokenSubject>,
    /// `name`: verified only, if `include_name` (cut so the token stays under 1 KB).
    pub name: Option<PersonName>,
}

/// What the call task knows about the call besides the verdict.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    /// idgate's call id.
    pub call: Uuid,
    /// The Call-ID of the inbound caller leg.
    pub sip_call_id: &'a str,
    /// The caller.
    pub caller: &'a CallerId,
}

impl Claims {
    /// The claims for a call's verdict, issued at `now`, valid for `lifetime`, with a fresh `jti`.
    /// `sub` and `name` follow `opts` exactly as the headers do.
    pub fn for_call(
        verdict: &Verdict,
        facts: CallFacts<'_>,
        opts: &HeaderOptions,
        issuer: &str,
        now: SystemTime,
        lifetime: Duration,
    ) -> Claims {
        let iat = unix_secs(now);
        let (sub, name) = person_claims(verdict, opts);
        let orig = match facts.caller {
            CallerId::Number(n) => CallerId::Number(n.clone()),
            CallerId::Anonymous | CallerId::NotANumber => CallerId::Anonymous,
        };
        Claims {
            iss: issuer.to_owned(),
            iat,
            exp: iat.saturating_add(lifetime.as_secs()),
            jti: Uuid::new_v4(),
            call: facts.call,
            sip_call_id: cut_escaped(facts.sip_call_id, MAX_SIP_CALL_ID_LEN),
            orig,
            status: match verdict {
                Verdict::Verified { .. } => Status::Verified,
                Verdict::Unverified { .. } => Status::Unverified,
            },
            reason: verdict.reason(),
            method: verdict.method(),
            sub,
            name,
        }
    }

    /// The claims as JSON of at most `budget` bytes: `name` is cut on a character boundary (or
    /// left out) to fit. Everything else is bounded by construction (a validated issuer of at
    /// most 100 bytes, [`MAX_SIP_CALL_ID_LEN`]).
    pub(super) fn to_json_within(&self, budget: usize) -> String {
        let mut map = self.fixed_claims();
        let Some(name) = &self.name else {
            return Value::Object(map).to_string();
        };
        let without = Value::Object(map.clone()).to_string();
        let room = budget.saturating_sub(without.len() + r#","name":"""#.len());
        let name = cut_escaped(name.as_str(), room);
        if name.is_empty() {
            return without;
        }
        map.insert("name".into(), name.into());
        Value::Object(map).to_string()
    }

    fn fixed_claims(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("iss".into(), self.iss.clone().into());
        map.insert("iat".into(), self.iat.into());
        map.insert("exp".into(), self.exp.into());
        map.insert("jti".into(), self.jti.hyphenated().to_string().into());
        map.insert("call".into(), self.call.hyphenated().to_string().into());
        map.insert("sip_call_id".into(), self.sip_call_id.clone().into());
        map.insert("orig".into(), self.orig.as_claim().into());
        map.insert("status".into(), self.status.as_str().into());
        if let Some(reason) = self.reason {
            map.insert("reason".into(), reason.as_str().into());
        }
        if let Some(method) = self.method {
            map.insert("method".into(), method.as_str().into());
        }
        if let Some(sub) = &self.sub {
            map.insert("sub".into(), sub.as_claim().into());
        }
        map
    }

    /// Reads claims JSON, checking every claim's shape (not the times: see `KeySet::verify`).
    pub(super) fn parse(json: &[u8]) -> Result<Claims, TokenError> {
        let raw: RawClaims = serde_json::from_slice(json).map_err(|_| TokenError::Malformed {
            detail: "the claims are not the JSON object idgate writes",
        })?;
        raw.into_claims()
    }
}

/// `sub` and `name` of a verified verdict, as `opts` allow (the same rules as the headers).
fn person_claims(
    verdict: &Verdict,
    opts: &HeaderOptions,
) -> (Option<TokenSubject>, Option<PersonName>) {
    let Verdict::Verified { person, .. } = verdict else {
        return (None, None);
    };
    let number = &person.personal_number;
    let sub = match opts.subject {
        SubjectMode::Full => Some(TokenSubject::Full(number.clone())),
        SubjectMode::Masked => Some(TokenSubject::Masked(number.masked())),
        SubjectMode::None => None,
    };
    let name = person
        .name
        .clone()
        .filter(|n| opts.include_name && !n.as_str().is_empty());
    (sub, name)
}

/// The claims as they are on the wire; unknown claims are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaims {
    iss: String,
    iat: u64,
    exp: u64,
    jti: String,
    call: String,
    sip_call_id: String,
    orig: String,
    status: String,
    reason: Option<String>,
    method: Option<String>,
    sub: Option<String>,
    name: Option<String>,
}

fn bad(claim: &'static str, problem: &'static str) -> TokenError {
    TokenError::BadClaim { claim, problem }
}

impl RawClaims {
    fn into_claims(self) -> Result<Claims, TokenError> {
        if self.iss.trim().is_empty() {
            return Err(bad("iss", "empty"));
        }
        if self.exp <= self.iat {
            return Err(bad("exp", "not after iat"));
        }
        let uuid = |claim, text: &str| Uuid::parse_str(text).map_err(|_| bad(claim, "not a UUID"));
        let status = match self.status.as_str() {
            "verified" => Status::Verified,
            "unverified" => Status::Unverified,
            _ => return Err(bad("status", "neither verified nor unverified")),
        };
        let (sub, name) = parse_person(self.sub.as_deref(), self.name.as_deref(), status)?;
        Ok(Claims {
            jti: uuid("jti", &self.jti)?,
            call: uuid("call", &self.call)?,
            orig: parse_orig(&self.orig)?,
            reason: parse_reason(self.reason.as_deref(), status)?,
            method: parse_method(self.method.as_deref(), status)?,
            iss: self.iss,
            iat: self.iat,
            exp: self.exp,
            sip_call_id: self.sip_call_id,
            status,
            sub,
            name,
        })
    }
}

/// `reason`: exactly when unverified.
fn parse_reason(reason: Option<&str>, status: Status) -> Result<Option<Reason>, TokenError> {
    match (reason, status) {
        (Some(r), Status::Unverified) => Reason::parse(r)
            .map(Some)
            .ok_or(bad("reason", "unknown reason")),
        (None, Status::Unverified) => Err(bad("reason", "missing (unverified)")),
        (Some(_), Status::Verified) => Err(bad("reason", "present (verified)")),
        (None, Status::Verified) => Ok(None),
    }
}

/// `method`: always when verified.
fn parse_method(method: Option<&str>, status: Status) -> Result<Option<Method>, TokenError> {
    match method {
        Some(m) => Method::parse(m)
            .map(Some)
            .ok_or(bad("method", "unknown method")),
        None if status == Status::Verified => Err(bad("method", "missing (verified)")),
        None => Ok(None),
    }
}

/// `sub` and `name`: only when verified.
fn parse_person(
    sub: Option<&str>,
    name: Option<&str>,
    status: Status,
) -> Result<(Option<TokenSubject>, Option<PersonName>), TokenError> {
    if status == Status::Unverified {
        if sub.is_some() {
            return Err(bad("sub", "only on a verified token"));
        }
        if name.is_some() {
            return Err(bad("name", "only on a verified token"));
        }
    }
    let sub = sub.map(parse_subject).transpose()?;
    let name = match name {
        Some("") => return Err(bad("name", "empty")),
        Some(name) => Some(PersonName::new(name.to_owned())),
        None => None,
    };
    Ok((sub, name))
}

/// `anonymous`, or a number exactly in E.164 form.
fn parse_orig(text: &str) -> Result<CallerId, TokenError> {
    if text == "anonymous" {
        return Ok(CallerId::Anonymous);
    }
    match E164::parse(text, "SE") {
        Ok(number) if text.starts_with('+') && number.as_str() == text => {
            Ok(CallerId::Number(number))
        }
        _ => Err(bad("orig", "neither E.164 nor anonymous")),
    }
}

/// Twelve digits (a valid personal identity number), or `YYYYMMDD-****`.
fn parse_subject(text: &str) -> Result<TokenSubject, TokenError> {
    let digits = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match text.strip_suffix("-****") {
        Some(date) if digits(date, 8) => return Ok(TokenSubject::Masked(text.to_owned())),
        None if digits(text, 12) => {
            if let Ok(number) = PersonalNumber::parse(text) {
                return Ok(TokenSubject::Full(number));
            }
        }
        _ => {}
    }
    Err(bad(
        "sub",
        "neither a personal identity number nor YYYYMMDD-****",
    ))
}

/// The longest prefix of `text`, on a character boundary, whose JSON-escaped form is at most
/// `max` bytes.
fn cut_escaped(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let escaped = Value::String(c.to_string()).to_string().len() - 2;
        if used + escaped > max {
            break;
        }
        used += escaped;
        out.push(c);
    }
    out
}

/// Seconds since the Unix epoch (0 for a clock before it), as `iat` and `exp` count.
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
