//! Token tests without a runtime: round trips, every claim, every `TokenError`, rotation, the
//! JWKS shape (RFC 8037), size limits, key files, and the `[identity]` key settings.

mod claims;
mod keys;
mod refusals;

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::*;
use crate::config::Config;
use crate::identity::headers::{HeaderOptions, SubjectMode, identity_headers_with_token};
use crate::identity::{
    CallerId, E164, Method, PersonName, PersonalNumber, Reason, Verdict, VerifiedPerson,
};

const CALL: Uuid = Uuid::from_u128(0x0123_4567_89AB_CDEF_0123_4567_89AB_CDEF);
const SIP_CALL_ID: &str = "a84b4c76e66710@pc33.example.com";
const LIFETIME: Duration = Duration::from_secs(600);

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

const NOW: u64 = 1_751_371_200; // 2025-07-01T12:00:00Z

fn caller() -> CallerId {
    CallerId::Number(E164::parse("+46701234567", "SE").unwrap())
}

fn verified(name: Option<&str>) -> Verdict {
    Verdict::Verified {
        method: Method::Bankid,
        person: VerifiedPerson {
            personal_number: PersonalNumber::parse("198112289874").unwrap(),
            name: name.map(|n| PersonName::new(n.to_owned())),
        },
    }
}

fn unverified(reason: Reason, method: Option<Method>) -> Verdict {
    Verdict::Unverified { reason, method }
}

fn opts(subject: SubjectMode, include_name: bool) -> HeaderOptions {
    HeaderOptions {
        subject,
        include_name,
        ..HeaderOptions::default()
    }
}

fn claims_for(verdict: &Verdict, caller: &CallerId, opts: &HeaderOptions, now: u64) -> Claims {
    let facts = CallFacts {
        call: CALL,
        sip_call_id: SIP_CALL_ID,
        caller,
    };
    Claims::for_call(verdict, facts, opts, "idgate", at(now), LIFETIME)
}

fn signer() -> Signer {
    Signer::generate().unwrap()
}

fn keys_of(signer: &Signer) -> KeySet {
    KeySet::new(signer.public_key().clone(), Vec::new())
}

/// A token with any header and claims JSON, signed by `signer` (for the refusal cases).
fn raw_token(signer: &Signer, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = URL_SAFE_NO_PAD.encode(signer.sign_bytes(input.as_bytes()));
    format!("{input}.{signature}")
}

fn header_of(signer: &Signer) -> Value {
    json!({"alg": "EdDSA", "typ": "idgate+jwt", "kid": signer.kid().as_str()})
}

fn good_claims() -> Value {
    json!({
        "iss": "idgate", "iat": NOW, "exp": NOW + 600,
        "jti": Uuid::new_v4().to_string(), "call": CALL.to_string(),
        "sip_call_id": SIP_CALL_ID, "orig": "+46701234567",
        "status": "verified", "method": "bankid", "sub": "19811228-****",
    })
}

fn part(token: &str, index: usize) -> Value {
    let text = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
}
