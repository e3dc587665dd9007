//! Ed25519 keys for the identity token (RFC 8032): the signing key as a PKCS#8 PEM file
//! (RFC 5958, RFC 8410), public keys as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the `kid`
//! derived from a public key, and the set of keys tokens verify against during a rotation.
//!
//! Private keys never reach logs or error messages: errors name the setting and the file only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Why a key could not be read, made or written. Always the operator's to fix (a retry without
/// changing the file does not help), except [`KeyError::Random`].
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("{setting}: {}: cannot read: {source}", .path.display())]
    Read {
        /// The setting that names the file (`identity.signing_key_file`).
        setting: String,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A key file does not hold the key expected (its contents are never echoed).
    #[error("{setting}: {}: {problem}", .path.display())]
    Invalid {
        /// The setting that names the file.
        setting: String,
        /// The file.
        path: PathBuf,
        /// What was expected.
        problem: InvalidKey,
    },
    /// A new key file could not be written (an existing file is never overwritten).
    #[error("{}: cannot write the key: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The operating system's random number generator failed (a new key could not be made).
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// A key could not be PEM-encoded (a bug in the encoder, never the input).
    #[error("cannot encode the key: {0}")]
    Encode(String),
}

/// Text that is not the key expected: what was expected (the text is never echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not {expected}")]
pub struct InvalidKey {
    /// A description of the expected key format.
    pub expected: &'static str,
}

const PRIVATE_PEM: InvalidKey = InvalidKey {
    expected: "an Ed25519 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----; \
               make one with `idgate keys generate`)",
};
const PUBLIC_PEM: InvalidKey = InvalidKey {
    expected: "an Ed25519 public key in PEM (-----BEGIN PUBLIC KEY-----)",
};
const PUBLIC_RAW: InvalidKey = InvalidKey {
    expected: "a 32-byte Ed25519 public key",
};

/// A key id, the JWS `kid`: base64url (no padding) of the first 8 bytes of SHA-256 over the
/// raw 32-byte public key (RFC 8032 §5.1.5 encoding), 11 characters. Anyone holding the public
/// key can recompute it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Kid(String);

impl Kid {
    /// The kid of a public key.
    pub fn of(key: &VerifyingKey) -> Kid {
        let digest = Sha256::digest(key.as_bytes());
        Kid(URL_SAFE_NO_PAD.encode(&digest[..8]))
    }

    /// The 11 characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Ed25519 public key and its [`Kid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    kid: Kid,
}

impl PublicKey {
    /// From the raw 32 bytes (the JWK `x`, RFC 8037 §2).
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, InvalidKey> {
        let bytes: &[u8; 32] = bytes.try_into().map_err(|_| PUBLIC_RAW)?;
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| PUBLIC_RAW)?;
        Ok(PublicKey::from(key))
    }

    /// From SPKI PEM (`-----BEGIN PUBLIC KEY-----`, RFC 8410 §4). Text before the PEM (such
    /// as the `kid:` line of `idgate keys public`) is ignored (RFC 7468 §2).
    pub fn from_pem(text: &str) -> Result<PublicKey, InvalidKey> {
        let pem = text.find("-----BEGIN").map_or(text, |start| &text[start..]);
        let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| PUBLIC_PEM)?;
        Ok(PublicKey::from(key))
    }

    /// SPKI PEM, as `idgate keys generate` prints it.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.key
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// The key id.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// The raw 32 bytes (the JWK `x`).
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Whether `signature` is this key's over `message` (strict: RFC 8032 §5.1.7 with the
    /// small-order and malleability checks).
    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        Signature::from_slice(signature)
            .is_ok_and(|sig| self.key.verify_strict(message, &sig).is_ok())
    }
}

impl From<VerifyingKey> for PublicKey {
    fn from(key: VerifyingKey) -> Self {
        let kid = Kid::of(&key);
        PublicKey { key, kid }
    }
}

/// The private key tokens are signed with, and its public half. `Debug` shows the kid only.
pub struct Signer {
    key: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Signer, KeyError> {
        use rand::TryRngCore;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        let signer = Signer::from(SigningKey::from_bytes(&seed));
        seed.fill(0);
        Ok(signer)
    }

    /// From PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, RFC 8410 §7).
    pub fn from_pem(text: &str) -> Result<Signer, InvalidKey> {
        let key = SigningKey::from_pkcs8_pem(text.trim()).map_err(|_| PRIVATE_PEM)?;
        Ok(Signer::from(key))
    }

    /// The key id.
    pub fn kid(&self) -> &Kid {
        &self.public.kid
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The Ed25519 signature over `message`.
    pub(super) fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// Writes the private key as PKCS#8 PEM to a new file, readable by its owner only (0600 on
    /// Unix). An existing file is never overwritten.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        let pem = self
            .key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let write = |source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(write)?;
        file.write_all(pem.as_bytes()).map_err(write)?;
        file.sync_all().map_err(write)
    }
}

impl From<SigningKey> for Signer {
    fn from(key: SigningKey) -> Self {
        let public = PublicKey::from(key.verifying_key());
        Signer { key, public }
    }
}

/// Reads the signing key file named by `setting`.
pub fn load_signer(setting: &str, path: &Path) -> Result<Signer, KeyError> {
    let text = read(setting, path)?;
    Signer::from_pem(&text).map_err(|problem| invalid(setting, path, problem))
}

/// Reads a public key file named by `setting`.
pub fn load_public_key(setting: &str, path: &Path) -> Result<PublicKey, KeyError> {
    let text = read(setting, path)?;
    PublicKey::from_pem(&text).map_err(|problem| invalid(setting, path, problem))
}

fn read(setting: &str, path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        setting: setting.to_owned(),
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(setting: &str, path: &Path, problem: InvalidKey) -> KeyError {
    KeyError::Invalid {
        setting: setting.to_owned(),
        path: path.to_path_buf(),
        problem,
    }
}

/// A key tokens verify against, with the time idgate stopped signing with it (if it has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKey {
    /// The public key.
    pub key: PublicKey,
    /// When the key stopped signing (a rotation): a token it signed with a later `iat` is
    /// refused ([`TokenError::RetiredKey`](super::TokenError::RetiredKey)). `None`: no limit.
    pub retired_at: Option<SystemTime>,
}

/// The keys tokens verify against: the current key first, then earlier keys kept during a
/// rotation. Served as the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

impl KeySet {
    /// The current key and the previous ones.
    pub fn new(current: PublicKey, previous: Vec<VerificationKey>) -> KeySet {
        let current = VerificationKey {
            key: current,
            retired_at: None,
        };
        KeySet {
            keys: std::iter::once(current).chain(previous).collect(),
        }
    }

    /// Every key, the current one first.
    pub fn keys(&self) -> &[VerificationKey] {
        &self.keys
    }

    /// The current key (the one tokens are signed with now).
    pub fn current(&self) -> &PublicKey {
        &self.keys[0].key
    }

    /// The key with this kid, if any (the first, should a key be listed twice).
    pub fn find(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.iter().find(|k| k.key.kid.as_str() == kid)
    }
}
