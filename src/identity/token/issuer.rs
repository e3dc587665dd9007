//! The token keys of this instance from `[identity]`: the signing key (or an ephemeral one),
//! the previous public keys kept during a rotation, and the issuer and lifetime.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::claims::{CallFacts, Claims};
use super::keys::{KeyError, KeySet, Signer, VerificationKey, load_public_key, load_signer};
use crate::config::IdentityConfig;
use crate::identity::Verdict;
use crate::identity::headers::HeaderOptions;

/// One entry of `identity.previous_public_keys`: a PEM public key file, or
/// `{ file = "...", retired_at = 2025-07-01T00:00:00Z }` (a TOML offset date-time).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PreviousPublicKey {
    /// Only the file: the key verifies tokens for as long as it is listed.
    File(PathBuf),
    /// The file and when idgate stopped signing with the key.
    Retired(RetiredKeyFile),
}

/// A previous public key with the time it stopped signing: tokens it signed with a later `iat`
/// are refused (a leaked old key cannot mint new tokens).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredKeyFile {
    /// The SPKI PEM public key file.
    pub file: PathBuf,
    /// When idgate stopped signing with it, with an offset (`2025-07-01T00:00:00Z`).
    pub retired_at: toml::value::Datetime,
}

impl PreviousPublicKey {
    /// The public key file.
    pub fn file(&self) -> &PathBuf {
        match self {
            PreviousPublicKey::File(file) => file,
            PreviousPublicKey::Retired(entry) => &entry.file,
        }
    }

    /// When the key retired (`None`: no limit, or a date-time that [`Self::is_valid`] refuses).
    pub fn retired_at(&self) -> Option<SystemTime> {
        match self {
            PreviousPublicKey::File(_) => None,
            PreviousPublicKey::Retired(entry) => system_time(&entry.retired_at),
        }
    }

    /// Whether `retired_at`, if given, is a full offset date-time from 1970 on.
    pub fn is_valid(&self) -> bool {
        match self {
            PreviousPublicKey::File(_) => true,
            PreviousPublicKey::Retired(entry) => system_time(&entry.retired_at).is_some(),
        }
    }
}

/// An RFC 3339 offset date-time as a `SystemTime` (`None` if any part is missing or it is
/// before 1970).
fn system_time(at: &toml::value::Datetime) -> Option<SystemTime> {
    let (date, time) = (at.date?, at.time?);
    let offset_minutes = match at.offset? {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let secs = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    let secs = u64::try_from(secs).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What tokens are signed and verified with: the signer, the key set (the JWKS), the issuer
/// and the lifetime.
#[derive(Debug)]
pub struct TokenIssuer {
    signer: Signer,
    keys: KeySet,
    issuer: String,
    lifetime: Duration,
    ephemeral: bool,
}

impl TokenIssuer {
    /// An issuer signing with `signer`; tokens verify against it and `previous`. `issuer` is at
    /// most 100 bytes (config validation enforces it) so tokens stay under 1 KB.
    pub fn new(
        signer: Signer,
        previous: Vec<VerificationKey>,
        issuer: &str,
        lifetime: Duration,
    ) -> TokenIssuer {
        let keys = KeySet::new(signer.public_key().clone(), previous);
        TokenIssuer {
            signer,
            keys,
            issuer: issuer.to_owned(),
            lifetime,
            ephemeral: false,
        }
    }

    /// From validated `[identity]`: reads `signing_key_file` (or makes an ephemeral key when it
    /// is not set: see [`TokenIssuer::is_ephemeral`]) and `previous_public_keys`.
    pub fn from_config(identity: &IdentityConfig) -> Result<TokenIssuer, KeyError> {
        let (signer, ephemeral) = match &identity.signing_key_file {
            Some(path) => (load_signer("identity.signing_key_file", path)?, false),
            None => (Signer::generate()?, true),
        };
        let previous = previous_keys(identity)?;
        let lifetime = Duration::from_secs(identity.token_lifetime_secs);
        let mut issuer = TokenIssuer::new(signer, previous, &identity.issuer, lifetime);
        issuer.ephemeral = ephemeral;
        Ok(issuer)
    }

    /// Whether the key was made at start-up (no `signing_key_file`): its tokens stop verifying
    /// when the process ends.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The signing key.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The keys tokens verify against (served as the JWKS).
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The token for a call's verdict, issued at `now`: `sub` and `name` per `opts`, as the
    /// headers. ASCII, no CR/LF, at most [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN) bytes.
    pub fn issue(
        &self,
        verdict: &Verdict,
        facts: CallFacts<'_>,
        opts: &HeaderOptions,
        now: SystemTime,
    ) -> String {
        let claims = Claims::for_call(verdict, facts, opts, &self.issuer, now, self.lifetime);
        self.signer.sign(&claims)
    }
}

/// Reads `identity.previous_public_keys` (errors name the entry and the file).
pub fn previous_keys(identity: &IdentityConfig) -> Result<Vec<VerificationKey>, KeyError> {
    identity
        .previous_public_keys
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let setting = format!("identity.previous_public_keys[{i}]");
            let key = load_public_key(&setting, entry.file())?;
            Ok(VerificationKey {
                key,
                retired_at: entry.retired_at(),
            })
        })
        .collect()
}

/// The key set `[identity]` describes, for verifying offline: the public half of
/// `signing_key_file` and the previous keys. `None` when no signing key file is configured.
pub fn configured_key_set(identity: &IdentityConfig) -> Result<Option<KeySet>, KeyError> {
    let Some(path) = &identity.signing_key_file else {
        return Ok(None);
    };
    let current = load_signer("identity.signing_key_file", path)?
        .public_key()
        .clone();
    Ok(Some(KeySet::new(current, previous_keys(identity)?)))
}
