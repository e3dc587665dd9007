//! Compact JWS (RFC 7515 §7.1) with EdDSA over Ed25519 (RFC 8037 §3.1): signing a token and
//! verifying one against a [`KeySet`].

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::claims::{Claims, unix_secs};
use super::keys::{KeySet, Signer};
use super::{ALG, MAX_SKEW_SECS, MAX_TOKEN_LEN, TYP, TokenError};

/// Length of a base64url Ed25519 signature (64 bytes).
const SIGNATURE_B64_LEN: usize = 86;

/// Tokens longer than this are not even decoded.
const MAX_INPUT_LEN: usize = 8 * 1024;

/// The JOSE header (RFC 7515 §4); any other member (`crit`, `jku`, ...) is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

impl Signer {
    /// Signs `claims` as a compact JWS, header `{"alg":"EdDSA","typ":"idgate+jwt","kid":...}`.
    /// The result is ASCII (base64url and two dots), without CR/LF, and at most
    /// [`MAX_TOKEN_LEN`] bytes: `name` is cut to fit (see `Claims`).
    pub fn sign(&self, claims: &Claims) -> String {
        let header = format!(r#"{{"alg":"{ALG}","typ":"{TYP}","kid":"{}"}}"#, self.kid());
        let header = URL_SAFE_NO_PAD.encode(header);
        // base64url of n bytes is ceil(4n/3) characters, so n <= floor(room * 3/4) fits.
        let room = MAX_TOKEN_LEN.saturating_sub(header.len() + 2 + SIGNATURE_B64_LEN);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_json_within(room * 3 / 4));
        let signing_input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.sign_bytes(signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }
}

impl KeySet {
    /// Verifies a compact JWS at `now`: the header (`alg` EdDSA, `typ` idgate+jwt, a known
    /// `kid`), the signature, every claim's shape, `exp` and `iat` (each with
    /// [`MAX_SKEW_SECS`] of clock skew), and that a retired key did not sign after it retired.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        let (signing_input, signature) = split(token)?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or(malformed("not three dot-separated parts"))?;
        let header: Header = serde_json::from_slice(&decode(header)?)
            .map_err(|_| malformed("the header is not a JOSE header"))?;
        if header.alg != ALG {
            return Err(TokenError::UnsupportedAlgorithm { alg: header.alg });
        }
        if header.typ.as_deref() != Some(TYP) {
            return Err(TokenError::WrongType { typ: header.typ });
        }
        let kid = header.kid.ok_or(TokenError::UnknownKid { kid: None })?;
        let key = self
            .find(&kid)
            .ok_or(TokenError::UnknownKid { kid: Some(kid) })?;
        if !key
            .key
            .verifies(signing_input.as_bytes(), &decode(signature)?)
        {
            return Err(TokenError::BadSignature);
        }
        let claims = Claims::parse(&decode(payload)?)?;
        check_times(&claims, unix_secs(now))?;
        if let Some(retired) = key.retired_at.map(unix_secs)
            && claims.iat > retired.saturating_add(MAX_SKEW_SECS)
        {
            let kid = key.key.kid().to_string();
            return Err(TokenError::RetiredKey { kid, retired });
        }
        Ok(claims)
    }
}

/// `exp` not passed and `iat` not in the future, each within the allowed skew.
fn check_times(claims: &Claims, now: u64) -> Result<(), TokenError> {
    if now > claims.exp.saturating_add(MAX_SKEW_SECS) {
        return Err(TokenError::Expired { exp: claims.exp });
    }
    if claims.iat > now.saturating_add(MAX_SKEW_SECS) {
        return Err(TokenError::NotYetValid { iat: claims.iat });
    }
    Ok(())
}

/// The `kid` in a token's header, without verifying anything (to tell which key signed it).
pub fn header_kid(token: &str) -> Result<Option<String>, TokenError> {
    let (signing_input, _) = split(token)?;
    let header = signing_input.split('.').next().unwrap_or_default();
    let header: Header = serde_json::from_slice(&decode(header)?)
        .map_err(|_| malformed("the header is not a JOSE header"))?;
    Ok(header.kid)
}

/// `(header.payload, signature)`, checking the overall form.
fn split(token: &str) -> Result<(&str, &str), TokenError> {
    let token = token.trim();
    if token.len() > MAX_INPUT_LEN {
        return Err(malformed("longer than any token idgate writes"));
    }
    if token.matches('.').count() != 2 {
        return Err(malformed("not three dot-separated parts"));
    }
    token
        .rsplit_once('.')
        .ok_or(malformed("not three dot-separated parts"))
}

fn decode(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed("a part is not base64url without padding"))
}

fn malformed(detail: &'static str) -> TokenError {
    TokenError::Malformed { detail }
}
