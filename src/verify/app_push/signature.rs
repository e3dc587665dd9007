//! The signature on every request between idgate and the company backend, both directions:
//! `X-Idgate-Timestamp: <unix seconds>` and `X-Idgate-Signature: v1=<hex>`, where `<hex>` is
//! the lower-case hex HMAC-SHA256, keyed with the shared secret, of `timestamp + "." + body`
//! (the body's exact bytes). The scheme of Stripe's and Slack's webhooks; the README has a
//! worked example, which a test below keeps true.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header holding the signing time, in unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Idgate-Timestamp";
/// The header holding the signature, `v1=<64 hex digits>`.
pub const SIGNATURE_HEADER: &str = "X-Idgate-Signature";
/// The scheme version prefix of the signature header.
const V1: &str = "v1=";

/// The shared secret, ready to sign and verify. `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Why a signed request was refused. Only the kind is reported: never the body or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `X-Idgate-Timestamp` or `X-Idgate-Signature` is absent.
    #[error("unsigned: the timestamp or signature header is missing")]
    Missing,
    /// A header is present but not in the documented form.
    #[error("malformed signature header")]
    Malformed,
    /// The signature does not match the body, the timestamp and the shared secret.
    #[error("signature mismatch")]
    Mismatch,
    /// The timestamp is further from now than the allowed skew (a replay, or a bad clock).
    #[error("timestamp {age_secs} s from now (at most {max_skew_secs} s allowed)")]
    Stale {
        /// Seconds between the timestamp and now (either direction).
        age_secs: u64,
        /// The allowed skew.
        max_skew_secs: u64,
    },
}

impl SigningKey {
    /// A key from the secret's bytes, used as they are (no decoding). HMAC takes keys of any
    /// length (RFC 2104 section 2), so the error is only there because the trait has one.
    pub fn new(secret: &[u8]) -> Result<Self, hmac::digest::InvalidLength> {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)?;
        Ok(Self { mac })
    }

    /// The MAC over `timestamp + "." + body`, not yet finalised.
    fn mac(&self, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `X-Idgate-Signature` value for `body` signed at `timestamp`.
    pub fn sign(&self, timestamp: u64, body: &[u8]) -> String {
        let tag = self.mac(timestamp, body).finalize().into_bytes();
        format!("{V1}{}", hex::encode(tag))
    }

    /// Checks a signed request's headers against its body: the signature (compared in constant
    /// time), then that the timestamp is within `max_skew_secs` of `now` (unix seconds).
    /// Returns the timestamp.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: u64,
        max_skew_secs: u64,
    ) -> Result<u64, SignatureError> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(SignatureError::Missing);
        };
        let timestamp = parse_timestamp(timestamp.trim())?;
        let tag = signature
            .trim()
            .strip_prefix(V1)
            .and_then(|h| hex::decode(h).ok())
            .filter(|tag| tag.len() == 32)
            .ok_or(SignatureError::Malformed)?;
        self.mac(timestamp, body)
            .verify_slice(&tag)
            .map_err(|_| SignatureError::Mismatch)?;
        let age_secs = now.abs_diff(timestamp);
        if age_secs > max_skew_secs {
            return Err(SignatureError::Stale {
                age_secs,
                max_skew_secs,
            });
        }
        Ok(timestamp)
    }
}

/// Unix seconds, digits only (no sign, no fraction).
fn parse_timestamp(raw: &str) -> Result<u64, SignatureError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    raw.parse().map_err(|_| SignatureError::Malformed)
}

/// Now, in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in the README ("Company app push"): keep both in step.
    const SECRET: &str = "example-secret-do-not-use-0123456789abcdef";
    const TS: u64 = 1_795_000_000;
    const BODY: &str = r#"{"order":"4f1c2b3a-5d6e-4f70-8a9b-0c1d2e3f4a5b","status":"declined"}"#;
    const SIGNATURE: &str = "v1=ff8a559b23fcf5bcfa574b8c39b466319090399367435d24a6b7c7959071441a";

    fn key() -> SigningKey {
        SigningKey::new(SECRET.as_bytes()).unwrap()
    }

    #[test]
    fn the_readme_example_holds() {
        assert_eq!(key().sign(TS, BODY.as_bytes()), SIGNATURE);
        let ok = key().verify(
            Some("1795000000"),
            Some(SIGNATURE),
            BODY.as_bytes(),
            TS,
            300,
        );
        assert_eq!(ok, Ok(TS));
    }

    #[test]
    fn a_changed_body_timestamp_or_secret_is_a_mismatch() {
        let sig = Some(SIGNATURE);
        let other_body = BODY.replace("declined", "approved");
        let cases = [
            (key(), "1795000000", other_body.as_bytes()),
            (key(), "1795000001", BODY.as_bytes()),
            (
                SigningKey::new(b"another secret").unwrap(),
                "1795000000",
                BODY.as_bytes(),
            ),
        ];
        for (k, ts, body) in cases {
            assert_eq!(
                k.verify(Some(ts), sig, body, TS, 300),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn missing_and_malformed_headers() {
        let body = BODY.as_bytes();
        let check = |ts: Option<&str>, sig: Option<&str>| key().verify(ts, sig, body, TS, 300);
        assert_eq!(check(None, Some(SIGNATURE)), Err(SignatureError::Missing));
        assert_eq!(
            check(Some("1795000000"), None),
            Err(SignatureError::Missing)
        );
        let malformed = [
            ("-1795000000", SIGNATURE),
            ("1795000000.5", SIGNATURE),
            ("", SIGNATURE),
            ("1795000000", "v2=00"),
            ("1795000000", "v1=zz"),
            ("1795000000", "v1=abcd"),
        ];
        for (ts, sig) in malformed {
            assert_eq!(
                check(Some(ts), Some(sig)),
                Err(SignatureError::Malformed),
                "{ts} {sig}"
            );
        }
    }

    #[test]
    fn old_and_future_timestamps_are_stale() {
        let sign_at = |ts: u64| key().sign(ts, BODY.as_bytes());
        let verify_at = |ts: u64, now: u64| {
            let sig = sign_at(ts);
            key().verify(Some(&ts.to_string()), Some(&sig), BODY.as_bytes(), now, 300)
        };
        assert_eq!(verify_at(TS, TS + 300), Ok(TS));
        assert_eq!(verify_at(TS + 300, TS), Ok(TS + 300));
        let stale = |age_secs| {
            Err(SignatureError::Stale {
                age_secs,
                max_skew_secs: 300,
            })
        };
        assert_eq!(verify_at(TS, TS + 301), stale(301));
        assert_eq!(verify_at(TS + 301, TS), stale(301));
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(format!("{:?}", key()), "SigningKey(<redacted>)");
    }
}
