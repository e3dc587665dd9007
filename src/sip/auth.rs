//! Who may send an INVITE: trusted peers by address (`sip.trusted_peers`), trunks by SIP digest
//! authentication (RFC 3261 §22, RFC 8760), or both (`sip.auth.mode`). Sans-IO: the caller
//! passes the time and the request's text and gets a [`Decision`]; `dispatch` answers it.
//!
//! idgate is a UAS, so it challenges with `401 Unauthorized` and `WWW-Authenticate`
//! (RFC 3261 §22.2; `407`/`Proxy-Authenticate` is for proxies, §22.3) and reads `Authorization`.
//! Each challenge offers `sip.auth.algorithms` (default `SHA-256` then `MD5`, RFC 8760 §2.4),
//! `qop="auth"`, and a stateless
//! nonce: the issue time, a serial number and an HMAC over both and the source address, keyed
//! per process. A nonce
//! past `nonce_lifetime_secs`, from another address or another process, or whose nonce count
//! was already used, gets a new challenge with `stale=true` when the response is otherwise
//! right. A wrong response, an unknown user name, a `uri` other than the Request-URI or a
//! trunk outside its `networks` all get the same `403`, at once.
//!
//! Password guessing is limited per source address (`lockout`, `sip.auth.max_failures` within
//! `failure_window_secs`): a locked-out source's credentials get that `403` unchecked, even
//! right ones, until the window has passed. Trusted peers are never locked out.

mod digest;
mod fuzz;
mod lockout;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use crate::config::AuthMode;
use crate::config::{SipAuthConfig, TrunkSecret};
use digest::{Algorithm, Credentials, DigestInput, constant_time_eq, parse_credentials};
use lockout::FailureLimit;

/// Nonce counts remembered (one entry per nonce that authenticated a request). Beyond this,
/// expired entries are dropped; if none is, a new request is asked to take a fresh nonce.
const REPLAY_ENTRIES: usize = 65_536;
/// Seconds a nonce's issue time may lie ahead of `now` (the clock stepped back).
const CLOCK_SKEW_SECS: u64 = 5;
/// Bytes of HMAC kept in a nonce.
const NONCE_MAC_LEN: usize = 16;

/// The admission policy of INVITEs and the trunks' credentials. Cheap to clone; `Debug` shows
/// the mode, the realm and the trunk names, never a password or the nonce key.
#[derive(Clone)]
pub struct TrunkAuth {
    inner: Arc<Inner>,
}

struct Inner {
    mode: AuthMode,
    realm: String,
    algorithms: Vec<Algorithm>,
    nonce_lifetime_secs: u64,
    trunks: Vec<TrunkSecret>,
    key: Hmac<Sha256>,
    /// Makes every nonce unique, even two to one source in the same second.
    issued: AtomicU64,
    replay: Mutex<ReplayGuard>,
    /// Failed responses per untrusted source.
    failures: Mutex<FailureLimit>,
}

impl fmt::Debug for TrunkAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.inner.trunks.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("TrunkAuth")
            .field("mode", &self.inner.mode)
            .field("realm", &self.inner.realm)
            .field("trunks", &names)
            .finish_non_exhaustive()
    }
}

/// What one INVITE is to `TrunkAuth::decide`.
#[derive(Debug, Clone)]
pub(crate) struct InviteView<'a> {
    /// The source address (top Via `received`), if known.
    pub source: Option<IpAddr>,
    /// Whether the source is in `sip.trusted_peers`.
    pub trusted_peer: bool,
    /// The method (`INVITE`).
    pub method: &'a str,
    /// The Request-URI as received.
    pub request_uri: &'a str,
    /// The values of every `Authorization` header.
    pub authorization: Vec<&'a str>,
}

/// What to do with an INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Take the call.
    Admit {
        /// Whether P-Asserted-Identity is believed: only for sources in `trusted_peers`, never
        /// because of credentials alone.
        trusted_peer: bool,
        /// The trunk whose credentials were checked, if any.
        trunk: Option<String>,
    },
    /// Answer `401` with [`TrunkAuth::challenges`].
    Challenge {
        /// `stale=true`: the credentials were right but the nonce is not (RFC 7616 §3.3).
        stale: bool,
    },
    /// Answer `403`.
    Refuse(Refusal),
}

/// Why an INVITE was refused. For logs and tests; the peer sees the same `403` for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not admitted by address, and digest does not apply (mode `peers`, no trunks, or
    /// `peers_and_digest` from elsewhere).
    UntrustedSource,
    /// Credentials for our realm that do not have the shape idgate asked for (algorithm, qop,
    /// nc, cnonce).
    Malformed,
    /// The `uri` is not the Request-URI.
    WrongUri,
    /// Wrong response, unknown user name, or a trunk outside its `networks`.
    BadCredentials,
    /// Credentials from a source with too many failed responses of late
    /// (`sip.auth.max_failures`); not checked.
    LockedOut,
}

impl Refusal {
    /// A token for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::UntrustedSource => "untrusted-source",
            Refusal::Malformed => "malformed-credentials",
            Refusal::WrongUri => "wrong-uri",
            Refusal::BadCredentials => "bad-credentials",
            Refusal::LockedOut => "locked-out",
        }
    }
}

impl TrunkAuth {
    /// The policy of `[sip.auth]` over these trunks, with a fresh random nonce key.
    pub fn new(config: &SipAuthConfig, trunks: Vec<TrunkSecret>) -> Self {
        Self::with_key(config, trunks, &rand::random::<[u8; 32]>())
    }

    /// Only `trusted_peers`, no trunks (tests and tools).
    pub fn peers_only() -> Self {
        let config = SipAuthConfig {
            mode: AuthMode::Peers,
            ..SipAuthConfig::default()
        };
        Self::new(&config, Vec::new())
    }

    fn with_key(config: &SipAuthConfig, trunks: Vec<TrunkSecret>, key: &[u8; 32]) -> Self {
        let key = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        Self {
            inner: Arc::new(Inner {
                mode: config.mode,
                realm: config.realm.clone(),
                algorithms: config
                    .algorithms
                    .iter()
                    .map(|a| Algorithm::from(*a))
                    .collect(),
                nonce_lifetime_secs: u64::from(config.nonce_lifetime_secs),
                trunks,
                key,
                issued: AtomicU64::new(0),
                replay: Mutex::new(ReplayGuard::default()),
                failures: Mutex::new(FailureLimit::new(
                    config.max_failures,
                    u64::from(config.failure_window_secs),
                )),
            }),
        }
    }

    /// Decides on an INVITE at `now` (unix seconds).
    pub(crate) fn decide(&self, now: u64, invite: &InviteView<'_>) -> Decision {
        let trusted = invite.trusted_peer;
        let by_address = Decision::Admit {
            trusted_peer: true,
            trunk: None,
        };
        let untrusted = Decision::Refuse(Refusal::UntrustedSource);
        match self.inner.mode {
            AuthMode::Peers if trusted => by_address,
            AuthMode::Peers => untrusted,
            AuthMode::PeersOrDigest if trusted => by_address,
            AuthMode::PeersOrDigest if self.inner.trunks.is_empty() => untrusted,
            AuthMode::PeersOrDigest | AuthMode::Digest => self.digest(now, invite),
            AuthMode::PeersAndDigest if trusted => self.digest(now, invite),
            AuthMode::PeersAndDigest => untrusted,
        }
    }

    /// The `WWW-Authenticate` values of a `401` to `source` at `now`: one per algorithm, most
    /// preferred first, sharing one nonce.
    pub(crate) fn challenges(&self, now: u64, source: IpAddr, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now, source);
        let stale = if stale { ", stale=true" } else { "" };
        self.inner
            .algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    self.inner.realm,
                    a.token()
                )
            })
            .collect()
    }

    /// RFC 3261 §22.4 on the first credentials for our realm.
    fn digest(&self, now: u64, invite: &InviteView<'_>) -> Decision {
        let Some(source) = invite.source else {
            return Decision::Refuse(Refusal::UntrustedSource);
        };
        let ours = invite
            .authorization
            .iter()
            .filter_map(|v| parse_credentials(v))
            .find(|c| c.realm == self.inner.realm);
        let Some(creds) = ours else {
            return Decision::Challenge { stale: false };
        };
        // Trusted peers are never locked out, and their failures are not counted.
        let limited = !invite.trusted_peer;
        if limited && self.failures().locked_out(now, canonical(source)) {
            return Decision::Refuse(Refusal::LockedOut);
        }
        let trunk = match self.check_response(source, invite, &creds) {
            Ok(trunk) => trunk,
            Err(refusal) => {
                if limited && matches!(refusal, Refusal::BadCredentials | Refusal::WrongUri) {
                    self.failures().failed(now, canonical(source));
                }
                return Decision::Refuse(refusal);
            }
        };
        let Some(expires) = self.nonce_expiry(&creds.nonce, now, source) else {
            return Decision::Challenge { stale: true };
        };
        let nc = creds
            .nc
            .as_deref()
            .and_then(|nc| u32::from_str_radix(nc, 16).ok());
        let mut replay = self.inner.replay.lock().unwrap_or_else(|e| e.into_inner());
        match nc.filter(|nc| replay.fresh(now, &creds.nonce, *nc, expires)) {
            Some(_) => Decision::Admit {
                trusted_peer: invite.trusted_peer,
                trunk: Some(trunk.name.clone()),
            },
            None => Decision::Challenge { stale: true },
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, FailureLimit> {
        self.inner
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The trunk whose password gives `creds.response`; the same work for an unknown user.
    fn check_response(
        &self,
        source: IpAddr,
        invite: &InviteView<'_>,
        creds: &Credentials,
    ) -> Result<&TrunkSecret, Refusal> {
        let algorithm = match &creds.algorithm {
            None => Some(Algorithm::Md5),
            Some(token) => Algorithm::parse(token),
        };
        // Only what was offered: with MD5 switched off, an MD5 answer is refused.
        let algorithm = algorithm.filter(|a| self.inner.algorithms.contains(a));
        let (Some(algorithm), Some(nc), Some(cnonce)) = (algorithm, &creds.nc, &creds.cnonce)
        else {
            return Err(Refusal::Malformed);
        };
        let qop_auth = creds
            .qop
            .as_deref()
            .is_some_and(|q| q.eq_ignore_ascii_case("auth"));
        let nc_ok = nc.len() == 8 && nc.chars().all(|c| c.is_ascii_hexdigit());
        if !qop_auth || !nc_ok || cnonce.is_empty() {
            return Err(Refusal::Malformed);
        }
        if !same_uri(&creds.uri, invite.request_uri) {
            return Err(Refusal::WrongUri);
        }
        let trunk = self
            .inner
            .trunks
            .iter()
            .find(|t| t.username == creds.username);
        // An unknown user costs the same hashing as a known one: no enumeration by timing.
        let password = trunk.map_or("\u{0}unknown-user", |t| t.password.expose());
        let expected = digest::response(&DigestInput {
            algorithm,
            username: &creds.username,
            realm: &self.inner.realm,
            password,
            method: invite.method,
            uri: &creds.uri,
            nonce: &creds.nonce,
            nc,
            cnonce,
        });
        let given = creds.response.to_ascii_lowercase();
        let matches = constant_time_eq(expected.as_bytes(), given.as_bytes());
        match trunk {
            Some(t) if matches && allowed(t, source) => Ok(t),
            _ => Err(Refusal::BadCredentials),
        }
    }

    /// `base64url(issued || serial || HMAC(key, issued || serial || source)[..16])`, `issued`
    /// in unix seconds, `serial` counting this process's nonces.
    fn nonce(&self, now: u64, source: IpAddr) -> String {
        let serial = self.inner.issued.fetch_add(1, Ordering::Relaxed);
        let mut bytes = now.to_be_bytes().to_vec();
        bytes.extend_from_slice(&serial.to_be_bytes());
        bytes.extend_from_slice(&self.nonce_mac(now, serial, source)[..NONCE_MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn nonce_mac(&self, issued: u64, serial: u64, source: IpAddr) -> Vec<u8> {
        let mut mac = self.inner.key.clone();
        mac.update(b"idgate digest nonce\0");
        mac.update(&issued.to_be_bytes());
        mac.update(&serial.to_be_bytes());
        match canonical(source) {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// When a nonce this process issued to `source` expires, if it is still valid at `now`.
    fn nonce_expiry(&self, nonce: &str, now: u64, source: IpAddr) -> Option<u64> {
        let bytes = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        let (issued, rest) = bytes.split_at_checked(8)?;
        let (serial, tag) = rest.split_at_checked(8)?;
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        let serial = u64::from_be_bytes(serial.try_into().ok()?);
        let expected = self.nonce_mac(issued, serial, source);
        if tag.len() != NONCE_MAC_LEN || !constant_time_eq(tag, &expected[..NONCE_MAC_LEN]) {
            return None;
        }
        let expires = issued.saturating_add(self.inner.nonce_lifetime_secs);
        (issued <= now.saturating_add(CLOCK_SKEW_SECS) && now < expires).then_some(expires)
    }
}

/// Whether the digest-uri names the Request-URI (RFC 3261 §22.4 item 5). Compared as text, but
/// case-insensitively and without enclosing `<>`: the stack writes the Request-URI back from
/// its parse, which may change the case of the scheme or host.
fn same_uri(digest_uri: &str, request_uri: &str) -> bool {
    let bare = |u: &str| {
        u.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned()
    };
    bare(digest_uri).eq_ignore_ascii_case(&bare(request_uri))
}

/// Whether `source` is in the trunk's `networks` (empty: anywhere).
fn allowed(trunk: &TrunkSecret, source: IpAddr) -> bool {
    let source = canonical(source);
    trunk.networks.is_empty() || trunk.networks.iter().any(|n| n.contains(&source))
}

/// An IPv4-mapped IPv6 address as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The highest nonce count accepted per nonce, until the nonce expires: a captured request
/// cannot be sent again (RFC 7616 §5.12). A higher count with the same nonce is a new request.
#[derive(Debug, Default)]
struct ReplayGuard {
    seen: HashMap<String, (u32, u64)>,
}

impl ReplayGuard {
    /// Records `nc` for `nonce` if it is higher than any before; `false` for a replay (or when
    /// full of unexpired nonces).
    fn fresh(&mut self, now: u64, nonce: &str, nc: u32, expires: u64) -> bool {
        if let Some((highest, _)) = self.seen.get_mut(nonce) {
            if nc <= *highest {
                return false;
            }
            *highest = nc;
            return true;
        }
        if self.seen.len() >= REPLAY_ENTRIES {
            self.seen.retain(|_, (_, exp)| *exp > now);
            if self.seen.len() >= REPLAY_ENTRIES {
                return false;
            }
        }
        self.seen.insert(nonce.to_owned(), (nc, expires));
        true
    }
}
