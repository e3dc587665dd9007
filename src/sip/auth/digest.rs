//! The digest computation (RFC 3261 §22.4 over RFC 2617 §3.2.2; SHA-256 from RFC 8760 §2) and
//! the parsing of a `credentials` header value (RFC 3261 §25.1, `Authorization`).
//!
//! Hand-written rather than rsipstack's typed `Authorization`: that one reads `nc` as a `u8`
//! (a nonce count above `000000ff` fails to parse) and knows SHA-256 only as `SHA256`, not the
//! `SHA-256` token RFC 8760 §2.3 registers, so a server cannot rely on it.

use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm idgate offers and accepts (RFC 8760 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// `SHA-256` (RFC 8760 §2.1, RFC 7616 §3.3).
    Sha256,
    /// `MD5` (RFC 3261 §22.4): the default when a credential names no algorithm.
    Md5,
}

impl Algorithm {
    /// Every algorithm idgate knows, most preferred first (RFC 8760 §2.4).
    pub(crate) const OFFERED: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// The `algorithm` token (RFC 8760 §2.3).
    pub(crate) fn token(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Reads an `algorithm` value (case-insensitive); `-sess` variants and others are `None`.
    pub(crate) fn parse(token: &str) -> Option<Algorithm> {
        Self::OFFERED
            .into_iter()
            .find(|a| a.token().eq_ignore_ascii_case(token.trim()))
    }

    /// Lower-case hex of the hash of `data` (`H()` of RFC 7616 §3.4.1).
    pub(crate) fn hex(self, data: &str) -> String {
        match self {
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
        }
    }
}

impl From<crate::config::DigestAlgorithm> for Algorithm {
    fn from(a: crate::config::DigestAlgorithm) -> Self {
        match a {
            crate::config::DigestAlgorithm::Sha256 => Algorithm::Sha256,
            crate::config::DigestAlgorithm::Md5 => Algorithm::Md5,
        }
    }
}

/// Digest credentials as a UAC sends them (RFC 3261 §25.1 `digest-response`). Every value is
/// the peer's and unchecked; only the parser's shape rules hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`, as the server issued it (or not).
    pub nonce: String,
    /// `uri`: the digest-uri, which must be the Request-URI (RFC 3261 §22.4 item 5).
    pub uri: String,
    /// `response`: hex digits.
    pub response: String,
    /// `algorithm`, when sent (absent means MD5).
    pub algorithm: Option<String>,
    /// `qop`, when sent.
    pub qop: Option<String>,
    /// `nc` (8 hex digits), when sent.
    pub nc: Option<String>,
    /// `cnonce`, when sent.
    pub cnonce: Option<String>,
}

/// Parses an `Authorization` value: `Digest` then comma-separated `name=value` pairs, values
/// tokens or quoted-strings. `None` for another scheme, a repeated or malformed parameter, or a
/// missing `username`, `realm`, `nonce`, `uri` or `response`. Unknown parameters (`opaque`,
/// extensions) are skipped.
pub(crate) fn parse_credentials(value: &str) -> Option<Credentials> {
    let value = value.trim();
    let split = value.find(|c: char| c.is_ascii_whitespace())?;
    let (scheme, mut rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut creds = Credentials::default();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let (name, value, after) = param(rest.trim_start())?;
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        assign(&mut creds, &name, value);
        seen.push(name);
        rest = after.trim_start();
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(',')?;
    }
    let required = [
        &creds.username,
        &creds.realm,
        &creds.nonce,
        &creds.uri,
        &creds.response,
    ];
    required.iter().all(|v| !v.is_empty()).then_some(creds)
}

fn assign(creds: &mut Credentials, name: &str, value: String) {
    match name {
        "username" => creds.username = value,
        "realm" => creds.realm = value,
        "nonce" => creds.nonce = value,
        "uri" => creds.uri = value,
        "response" => creds.response = value,
        "algorithm" => creds.algorithm = Some(value),
        "qop" => creds.qop = Some(value),
        "nc" => creds.nc = Some(value),
        "cnonce" => creds.cnonce = Some(value),
        _ => {}
    }
}

/// One `name=value` at the start of `s`: the name, the value (quotes and quoted-pairs undone)
/// and the text after it.
fn param(s: &str) -> Option<(&str, String, &str)> {
    let (name, value) = s.split_once('=')?;
    let name = name.trim();
    let is_token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || !name.chars().all(is_token) {
        return None;
    }
    let value = value.trim_start();
    if let Some(inside) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inside.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                '"' => return Some((name, out, &inside[i + 1..])),
                c if c.is_control() => return None,
                c => out.push(c),
            }
        }
        return None;
    }
    let end = value
        .find(|c: char| c == ',' || c.is_ascii_whitespace())
        .unwrap_or(value.len());
    let (token, rest) = value.split_at(end);
    (!token.is_empty() && token.chars().all(is_token)).then(|| (name, token.to_owned(), rest))
}

/// What a `qop=auth` response is computed over (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DigestInput<'a> {
    /// The hash.
    pub algorithm: Algorithm,
    /// `username`.
    pub username: &'a str,
    /// `realm`.
    pub realm: &'a str,
    /// The shared secret.
    pub password: &'a str,
    /// The request method (`INVITE`).
    pub method: &'a str,
    /// The digest-uri.
    pub uri: &'a str,
    /// `nonce`.
    pub nonce: &'a str,
    /// `nc`, as sent (8 hex digits).
    pub nc: &'a str,
    /// `cnonce`.
    pub cnonce: &'a str,
}

/// `KD(H(A1), nonce:nc:cnonce:auth:H(A2))` with `A1 = username:realm:password` and
/// `A2 = method:uri`, as lower-case hex.
pub(crate) fn response(input: &DigestInput<'_>) -> String {
    let h = |data: &str| input.algorithm.hex(data);
    let ha1 = h(&format!(
        "{}:{}:{}",
        input.username, input.realm, input.password
    ));
    let ha2 = h(&format!("{}:{}", input.method, input.uri));
    h(&format!(
        "{ha1}:{}:{}:{}:auth:{ha2}",
        input.nonce, input.nc, input.cnonce
    ))
}

/// Equality whose time does not depend on where `a` and `b` differ (only on their length,
/// which for a digest response is public: it follows from the algorithm).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}
