//! SDES-SRTP for the caller leg: keys exchanged in SDP `a=crypto` lines (RFC 4568), RTP and
//! RTCP protected with them (RFC 3711).
//!
//! The SDP side is sans-IO: [`negotiate`] picks the offer's first acceptable `a=crypto` line
//! and answers it with a fresh key of ours. [`SrtpSession`] wraps `rtc-srtp`'s two contexts,
//! one per direction; the stream calls it where each call's packet is written and read.
//! Keys live in [`KeySalt`], whose `Debug` shows nothing; no error carries key material.

use std::fmt;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rtc_srtp::context::Context;
use rtc_srtp::crypto::RTCCryptoProvider as _;
use rtc_srtp::crypto::providers::RingProvider;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;
use serde::Deserialize;
use thiserror::Error;

use super::engine::lock;

/// `[media] srtp`: whether the caller leg may, must or must not use SDES-SRTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    /// `RTP/SAVP` offers are refused (488 when nothing else is offered), as before SRTP.
    Off,
    /// `RTP/SAVP` offers with a usable `a=crypto` line get SRTP; plain `RTP/AVP` still works.
    #[default]
    Optional,
    /// Only `RTP/SAVP` with a usable `a=crypto` line; plain `RTP/AVP` offers get 488.
    Required,
}

/// The SRTP crypto suites idgate accepts (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: AES-128 counter mode, 80-bit HMAC-SHA1 tag (RFC 4568 §6.2.1).
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: the same with a 32-bit tag on SRTP (SRTCP keeps 80 bits,
    /// RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
}

impl CryptoSuite {
    /// The suite's name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            CryptoSuite::AesCm128HmacSha1_80,
            CryptoSuite::AesCm128HmacSha1_32,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

/// Master key (16 bytes) then master salt (14 bytes), as `inline:` carries them for the
/// AES-128 suites. `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySalt([u8; KEY_SALT_LEN]);

/// The master key length of the AES-128 suites.
const KEY_LEN: usize = 16;
/// Key and salt: 16 + 14 bytes.
const KEY_SALT_LEN: usize = 30;
/// The shortest key lifetime accepted, in packets: idgate never re-keys, and 2^24 packets
/// are 93 hours of 20 ms frames.
const MIN_LIFETIME: u64 = 1 << 24;
/// ring, as everywhere in this binary (rustls' provider too).
static PROVIDER: RingProvider = RingProvider::new();
/// The replay window (packets) on what the caller sends (RFC 3711 §3.3.2 asks at least 64).
const REPLAY_WINDOW: usize = 128;

impl KeySalt {
    /// A fresh random key and salt from the OS (ring's `SystemRandom`; `rand`'s thread
    /// CSPRNG, itself seeded by the OS, should that ever fail).
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_SALT_LEN];
        if PROVIDER.random().fill(&mut bytes).is_err() {
            bytes = rand::random();
        }
        KeySalt(bytes)
    }

    /// The key and salt from their bytes.
    pub fn from_bytes(bytes: [u8; KEY_SALT_LEN]) -> Self {
        KeySalt(bytes)
    }

    /// The base64 text for `inline:` (RFC 4568 §6.1).
    pub fn to_inline(&self) -> String {
        BASE64.encode(self.0)
    }

    fn key(&self) -> &[u8] {
        &self.0[..KEY_LEN]
    }

    fn salt(&self) -> &[u8] {
        &self.0[KEY_LEN..]
    }
}

impl fmt::Debug for KeySalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySalt(<redacted>)")
    }
}

/// Why one `a=crypto` line is not usable (the line is refused, not the call, while another
/// line is usable). Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The line lacks the tag, suite or key parameters, or the tag is not 1-9 digits.
    #[error("malformed a=crypto line")]
    Malformed,
    /// A suite idgate does not implement (AES-256, F8, NULL, GCM...).
    #[error("unsupported crypto suite {0}")]
    UnsupportedSuite(String),
    /// A key method other than `inline:`, or several keys.
    #[error("unsupported key parameters (only one inline: key)")]
    KeyMethod,
    /// The key is not base64 of 30 bytes.
    #[error("inline key is not base64 of a 16-byte key and 14-byte salt")]
    BadKey,
    /// An MKI (`|n:len`): idgate sends and reads packets without an MKI field.
    #[error("MKI not supported")]
    Mki,
    /// A lifetime shorter than a call can last, or unreadable: idgate never re-keys.
    #[error("key lifetime too short or malformed")]
    Lifetime,
    /// A session parameter other than `WSH=` or `KDR=0` (RFC 4568 §6.3).
    #[error("unsupported session parameter")]
    SessionParameter,
}

/// One parsed `a=crypto` attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag the answer echoes.
    pub tag: u32,
    /// The suite.
    pub suite: CryptoSuite,
    /// The offerer's key: what it protects its packets with.
    pub key: KeySalt,
}

/// Parses an `a=crypto` value: `<tag> <suite> inline:<key||salt>[|lifetime] [params]`.
pub fn parse_crypto(value: &str) -> Result<CryptoAttribute, CryptoError> {
    let mut fields = value.split_whitespace();
    let (Some(tag), Some(suite), Some(key_params)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(CryptoError::Malformed);
    };
    let tag = (tag.len() <= 9 && tag.bytes().all(|b| b.is_ascii_digit()))
        .then(|| tag.parse::<u32>().ok())
        .flatten()
        .ok_or(CryptoError::Malformed)?;
    let suite = CryptoSuite::from_name(suite)
        .ok_or_else(|| CryptoError::UnsupportedSuite(suite.to_owned()))?;
    fields.try_for_each(session_parameter)?;
    let key = inline_key(key_params)?;
    Ok(CryptoAttribute { tag, suite, key })
}

/// `inline:<key||salt>[|lifetime][|mki:length]`, exactly one of them.
fn inline_key(key_params: &str) -> Result<KeySalt, CryptoError> {
    let info = key_params
        .strip_prefix("inline:")
        .filter(|info| !info.contains(';'))
        .ok_or(CryptoError::KeyMethod)?;
    let mut parts = info.split('|');
    let encoded = parts.next().unwrap_or_default();
    for part in parts {
        if part.contains(':') {
            return Err(CryptoError::Mki);
        }
        if lifetime(part).is_none_or(|packets| packets < MIN_LIFETIME) {
            return Err(CryptoError::Lifetime);
        }
    }
    let bytes = BASE64.decode(encoded).map_err(|_| CryptoError::BadKey)?;
    let bytes: [u8; KEY_SALT_LEN] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
    Ok(KeySalt(bytes))
}

/// A lifetime: decimal, or `2^n` (RFC 4568 §9.2).
fn lifetime(text: &str) -> Option<u64> {
    match text.strip_prefix("2^") {
        Some(exponent) => exponent
            .parse::<u32>()
            .ok()
            .and_then(|n| 1u64.checked_shl(n)),
        None => text.parse().ok(),
    }
}

/// Session parameters idgate can honour: a window-size hint, and a key derivation rate of 0
/// (the default: no re-derivation).
fn session_parameter(param: &str) -> Result<(), CryptoError> {
    match param.split_once('=') {
        Some(("WSH", n)) if n.parse::<u32>().is_ok() => Ok(()),
        Some(("KDR", "0")) => Ok(()),
        _ => Err(CryptoError::SessionParameter),
    }
}

/// What SDES agreed for one stream: the offer's line and the key idgate answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdes {
    /// The offer's tag, echoed in the answer.
    pub tag: u32,
    /// The suite.
    pub suite: CryptoSuite,
    /// The caller's key (unprotects what it sends).
    pub remote: KeySalt,
    /// idgate's key (protects what idgate sends).
    pub local: KeySalt,
}

impl Sdes {
    /// The answer's `a=crypto` value (without `a=crypto:`), RFC 4568 §7.1.2.
    pub fn answer_value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            self.local.to_inline()
        )
    }
}

/// Answers the offer's `a=crypto` values (in its order of preference): the first usable one
/// with a fresh key of ours, or `None` when none is usable (each refusal is logged without
/// the key).
pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Sdes> {
    offered
        .into_iter()
        .find_map(|value| match parse_crypto(value) {
            Ok(line) => Some(Sdes {
                tag: line.tag,
                suite: line.suite,
                remote: line.key,
                local: KeySalt::generate(),
            }),
            Err(e) => {
                tracing::debug!(reason = %e, "a=crypto line refused");
                None
            }
        })
}

/// Why a packet could not be protected or unprotected (the packet is dropped).
#[derive(Debug, Error)]
pub enum SrtpError {
    /// The contexts could not be built from the keys (local: a crypto provider problem).
    #[error("SRTP context: {0}")]
    Context(String),
    /// An incoming packet failed authentication, was replayed, or is too short (the peer's
    /// or an attacker's packet; counted, never relayed).
    #[error("SRTP unprotect failed: {0}")]
    Unprotect(String),
    /// An outgoing packet could not be protected (not RTP, or the index space is spent).
    #[error("SRTP protect failed: {0}")]
    Protect(String),
}

/// The SRTP state of one leg: what idgate sends is protected with its key, what the caller
/// sends is unprotected with the caller's, each with its own per-SSRC rollover counters.
pub struct SrtpSession {
    suite: CryptoSuite,
    outbound: Mutex<Context>,
    inbound: Mutex<Context>,
}

impl fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpSession")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SrtpSession {
    /// Builds both directions from what SDES agreed.
    pub fn new(sdes: &Sdes) -> Result<Self, SrtpError> {
        let outbound = context(&sdes.local, sdes.suite, false)?;
        let inbound = context(&sdes.remote, sdes.suite, true)?;
        Ok(SrtpSession {
            suite: sdes.suite,
            outbound: Mutex::new(outbound),
            inbound: Mutex::new(inbound),
        })
    }

    /// The suite in use.
    pub fn suite(&self) -> CryptoSuite {
        self.suite
    }

    /// Encrypts and authenticates one RTP packet (RFC 3711 §3.3).
    pub fn protect_rtp(&self, packet: &[u8]) -> Result<impl AsRef<[u8]> + use<>, SrtpError> {
        lock(&self.outbound)
            .encrypt_rtp(packet)
            .map_err(|e| SrtpError::Protect(e.to_string()))
    }

    /// Encrypts and authenticates one RTCP compound packet (RFC 3711 §3.4).
    pub fn protect_rtcp(&self, packet: &[u8]) -> Result<impl AsRef<[u8]> + use<>, SrtpError> {
        lock(&self.outbound)
            .encrypt_rtcp(packet)
            .map_err(|e| SrtpError::Protect(e.to_string()))
    }

    /// Authenticates and decrypts one SRTP packet in place; returns the plain length.
    pub fn unprotect_rtp(&self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let plain = lock(&self.inbound)
            .decrypt_rtp(packet)
            .map_err(|e| SrtpError::Unprotect(e.to_string()))?;
        copy_back(packet, &plain)
    }

    /// Authenticates and decrypts one SRTCP packet in place; returns the plain length.
    pub fn unprotect_rtcp(&self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let plain = lock(&self.inbound)
            .decrypt_rtcp(packet)
            .map_err(|e| SrtpError::Unprotect(e.to_string()))?;
        copy_back(packet, &plain)
    }
}

fn copy_back(packet: &mut [u8], plain: &[u8]) -> Result<usize, SrtpError> {
    let target = packet
        .get_mut(..plain.len())
        .ok_or_else(|| SrtpError::Unprotect("plaintext longer than the packet".into()))?;
    target.copy_from_slice(plain);
    Ok(plain.len())
}

/// One direction's context; replay protection on what arrives (RFC 3711 §3.3.2).
fn context(key: &KeySalt, suite: CryptoSuite, inbound: bool) -> Result<Context, SrtpError> {
    let (rtp, rtcp) = if inbound {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(
        key.key(),
        key.salt(),
        suite.profile(),
        rtp,
        rtcp,
        PROVIDER.crypto(),
    )
    .map_err(|e| SrtpError::Context(e.to_string()))
}

#[cfg(test)]
#[path = "srtp_tests.rs"]
mod tests;
