//! The key set as a JWKS (RFC 7517 §5) of OKP keys (RFC 8037 §2), as served at
//! `GET /.well-known/jwks.json`, and read back (`idgate token verify --jwks FILE`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::keys::{KeySet, PublicKey};
use super::{ALG, InvalidKey};

/// One key of the JWKS: an Ed25519 public key as an RFC 8037 OKP JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The raw 32-byte public key, base64url without padding.
    pub x: String,
    /// The key id (see [`Kid`](super::Kid)).
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Always `EdDSA`.
    pub alg: String,
}

/// A JWKS: `{"keys": [...]}`, the current key first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// Why a JWKS could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON of the form `{"keys": [...]}` with the RFC 8037 members.
    #[error("not a JWKS of OKP keys (RFC 8037)")]
    NotAJwks,
    /// A key is not an Ed25519 signing key or its `x` is not one.
    #[error("key {index}: {problem}")]
    BadKey {
        /// The key's index in `keys`.
        index: usize,
        /// What is wrong.
        problem: InvalidKey,
    },
    /// `keys` is empty.
    #[error("the JWKS holds no key")]
    Empty,
}

impl From<&PublicKey> for Jwk {
    fn from(key: &PublicKey) -> Self {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
            kid: key.kid().to_string(),
            use_: "sig".to_owned(),
            alg: ALG.to_owned(),
        }
    }
}

impl KeySet {
    /// The JWKS of every key, current first (retired keys too: they verify until removed).
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.keys().iter().map(|k| Jwk::from(&k.key)).collect(),
        }
    }

    /// A key set from JWKS text: Ed25519 `sig` keys only; the first is taken as current. A
    /// `kid` that is not the one derived from `x` is refused.
    pub fn from_jwks(text: &str) -> Result<KeySet, JwksError> {
        let jwks: Jwks = serde_json::from_str(text).map_err(|_| JwksError::NotAJwks)?;
        let mut keys = jwks.keys.iter().enumerate().map(|(index, jwk)| {
            jwk_key(jwk).map_err(|problem| JwksError::BadKey { index, problem })
        });
        let current = keys.next().ok_or(JwksError::Empty)??;
        let previous = keys
            .map(|key| {
                key.map(|key| super::VerificationKey {
                    key,
                    retired_at: None,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(KeySet::new(current, previous))
    }
}

fn jwk_key(jwk: &Jwk) -> Result<PublicKey, InvalidKey> {
    const NOT_ED25519: InvalidKey = InvalidKey {
        expected: "an Ed25519 signing key (kty OKP, crv Ed25519, use sig, alg EdDSA)",
    };
    const KID: InvalidKey = InvalidKey {
        expected: "a kid derived from x (base64url of SHA-256(x)[..8])",
    };
    if (
        jwk.kty.as_str(),
        jwk.crv.as_str(),
        jwk.use_.as_str(),
        jwk.alg.as_str(),
    ) != ("OKP", "Ed25519", "sig", ALG)
    {
        return Err(NOT_ED25519);
    }
    let raw = URL_SAFE_NO_PAD.decode(&jwk.x).map_err(|_| NOT_ED25519)?;
    let key = PublicKey::from_bytes(&raw)?;
    if key.kid().as_str() != jwk.kid {
        return Err(KID);
    }
    Ok(key)
}
