//! The signed verdict token, `X-Identity-Token` (`IDENTITY-HEADERS.md`, "The token"): a compact
//! JWS (RFC 7515) signed with Ed25519 (EdDSA, RFC 8037), header
//! `{"alg":"EdDSA","typ":"idgate+jwt","kid":"..."}`, so a CRM can check that a verdict on the
//! queue leg really came from idgate, for this call, recently.
//!
//! - [`Claims`]: what a token says, built from a [`Verdict`](crate::identity::Verdict).
//! - [`Signer`]: the private key and its [`Kid`]; [`Signer::sign`] writes a token.
//! - [`KeySet`]: the current and previous public keys; [`KeySet::verify`] checks a token and
//!   [`KeySet::jwks`] is served at `GET /.well-known/jwks.json`.
//! - [`TokenIssuer`]: all of it from `[identity]`, as the call tasks use it.
//!
//! Pure: the clock is an input (`now`); only `jti` and new keys use randomness.

mod claims;
mod issuer;
mod jwks;
mod jws;
mod keys;
#[cfg(test)]
mod tests;

pub use claims::{CallFacts, Claims, MAX_SIP_CALL_ID_LEN, Status, TokenSubject, unix_secs};
pub use issuer::{
    PreviousPublicKey, RetiredKeyFile, TokenIssuer, configured_key_set, previous_keys,
};
pub use jwks::{Jwk, Jwks, JwksError};
pub use jws::header_kid;
pub use keys::{
    InvalidKey, KeyError, KeySet, Kid, PublicKey, Signer, VerificationKey, load_public_key,
    load_signer,
};

/// The JWS `alg`: EdDSA (RFC 8037 §3.1), always over Ed25519 here.
pub const ALG: &str = "EdDSA";

/// The JWS `typ` (RFC 7515 §4.1.9, RFC 8725 §3.11): idgate's tokens only, so a token of another
/// kind signed with the same key is never taken for one.
pub const TYP: &str = "idgate+jwt";

/// The default lifetime, `[identity] token_lifetime_secs`: 10 minutes.
pub const DEFAULT_LIFETIME_SECS: u64 = 600;

/// Clock skew allowed on `exp` and `iat` between idgate and whoever verifies.
pub const MAX_SKEW_SECS: u64 = 60;

/// Longest token written, in bytes: under 1 KB, which every PBX and softphone accepts in a
/// header, with room to spare.
pub const MAX_TOKEN_LEN: usize = 1000;

/// Longest `[identity] issuer`, in bytes, so the claims leave room for a name.
pub const MAX_ISSUER_LEN: usize = 100;

/// Why a token was refused. Every case is the presenter's (a forged, altered, stale or foreign
/// token); none is worth retrying with the same token. Messages never carry claim values that
/// could be personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS of idgate's form (three base64url parts, JSON header and claims).
    #[error("malformed token: {detail}")]
    Malformed {
        /// What is wrong.
        detail: &'static str,
    },
    /// The header's `alg` is not `EdDSA` (RFC 8725 §3.1: never take the algorithm on trust).
    #[error("unsupported algorithm {alg:?} (only EdDSA)")]
    UnsupportedAlgorithm {
        /// The `alg` given.
        alg: String,
    },
    /// The header's `typ` is not `idgate+jwt`.
    #[error("wrong token type {typ:?} (expected \"idgate+jwt\")")]
    WrongType {
        /// The `typ` given, if any.
        typ: Option<String>,
    },
    /// No key with the header's `kid` (or no `kid`): signed by a key idgate does not (or no
    /// longer) lists, e.g. an ephemeral key from before a restart.
    #[error("unknown key id {kid:?}")]
    UnknownKid {
        /// The `kid` given, if any.
        kid: Option<String>,
    },
    /// The signature does not match the header and claims: altered or forged.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (beyond the allowed skew).
    #[error("expired at {exp} (Unix time)")]
    Expired {
        /// The token's `exp`.
        exp: u64,
    },
    /// `iat` is in the future (beyond the allowed skew).
    #[error("issued in the future, at {iat} (Unix time)")]
    NotYetValid {
        /// The token's `iat`.
        iat: u64,
    },
    /// Signed by a previous key after the time it retired.
    #[error("key {kid} retired at {retired} (Unix time), before this token was issued")]
    RetiredKey {
        /// The retired key's kid.
        kid: String,
        /// When it retired.
        retired: u64,
    },
    /// A claim is not of its shape, or not allowed with the token's `status` (a missing or
    /// unknown claim is [`TokenError::Malformed`]).
    #[error("claim {claim}: {problem}")]
    BadClaim {
        /// The claim.
        claim: &'static str,
        /// What is wrong (never the value).
        problem: &'static str,
    },
}
