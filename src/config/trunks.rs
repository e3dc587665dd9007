//! `[sip.auth]` and `[[sip.trunks]]`: SIP digest authentication (RFC 3261 §22, RFC 8760) for
//! trunks that cannot be admitted by source address alone. `sip::auth` does the checking; this
//! file only reads and validates the settings and the trunks' passwords.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::Token;
use super::agent::SecretFileError;
use super::error::Problem;

/// How an INVITE's source is admitted: by address (`sip.trusted_peers`), by digest credentials
/// (`[[sip.trunks]]`), or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Only `trusted_peers`; anyone else gets 403 (no challenge). No trunks may be configured.
    Peers,
    /// Every INVITE must carry valid credentials, trusted peers included. `trusted_peers` then
    /// only decides whose P-Asserted-Identity is believed.
    Digest,
    /// Trusted peers as today; any other source is challenged (401) and admitted with a trunk's
    /// credentials. Without trunks this is the same as `Peers`. The default.
    #[default]
    PeersOrDigest,
    /// Only trusted peers, and they too must send a trunk's credentials.
    PeersAndDigest,
}

impl AuthMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Peers => "peers",
            AuthMode::Digest => "digest",
            AuthMode::PeersOrDigest => "peers_or_digest",
            AuthMode::PeersAndDigest => "peers_and_digest",
        }
    }
}

/// A digest algorithm (RFC 8760 §2.3 token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum DigestAlgorithm {
    /// `SHA-256` (RFC 8760).
    #[serde(rename = "SHA-256")]
    Sha256,
    /// `MD5` (RFC 3261 §22.4).
    #[serde(rename = "MD5")]
    Md5,
}

/// `[sip.auth]`: how INVITEs are admitted, and the digest challenge's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipAuthConfig {
    /// `"peers"`, `"digest"`, `"peers_or_digest"` or `"peers_and_digest"` (see [`AuthMode`]).
    /// Default `"peers_or_digest"`.
    pub mode: AuthMode,
    /// The digest realm (RFC 3261 §22.1), shown to the trunk in the challenge. Default
    /// `"idgate"`.
    pub realm: String,
    /// Seconds a challenge's nonce stays valid; an older one is answered with a new challenge
    /// marked `stale=true`. 10 to 3600. Default `300`.
    pub nonce_lifetime_secs: u32,
    /// The challenges sent, one per algorithm, in this order: `"SHA-256"`, `"MD5"`. RFC 8760
    /// §2.4 has the UAC take the first it supports, but older UACs know only MD5 and some read
    /// only the first challenge (SIPp 3.6: put `"MD5"` first) or give up on any they do not
    /// know (baresip 1.0.0: `["MD5"]` alone). Default `["SHA-256", "MD5"]`.
    pub algorithms: Vec<DigestAlgorithm>,
    /// Failed digest responses (wrong password, unknown user name, wrong `uri`) from one source
    /// address within `failure_window_secs` that lock it out: for `failure_window_secs` from
    /// the last of them its INVITEs with credentials get `403` without being checked. Trusted
    /// peers are never locked out. `0` turns the limit off. 0 to 1000. Default `5`.
    pub max_failures: u32,
    /// The counting window and the lockout's length, in seconds. 1 to 86400. Default `60`.
    pub failure_window_secs: u32,
}

impl Default for SipAuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::default(),
            realm: "idgate".to_owned(),
            nonce_lifetime_secs: 300,
            algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
            max_failures: 5,
            failure_window_secs: 60,
        }
    }
}

/// `[[sip.trunks]]`: one trunk that authenticates with digest credentials.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// A name for logs (not secret, not personal): letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The digest user name the trunk sends.
    pub username: String,
    /// The password. Prefer `password_file`.
    #[serde(default)]
    pub password: Option<Token>,
    /// A file holding the password (read at start; surrounding whitespace ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Networks the trunk may send from (CIDR; a bare address is one host). Default: empty,
    /// any source.
    #[serde(default, deserialize_with = "networks")]
    pub networks: Vec<IpNet>,
}

impl std::fmt::Debug for TrunkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkConfig")
            .field("name", &self.name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("networks", &self.networks)
            .finish()
    }
}

/// A trunk with its password read: what `sip::auth` checks credentials against.
#[derive(Debug, Clone)]
pub struct TrunkSecret {
    /// `name`.
    pub name: String,
    /// `username`.
    pub username: String,
    /// The password (from `password` or `password_file`); `Debug` redacts it.
    pub password: Token,
    /// `networks`.
    pub networks: Vec<IpNet>,
}

/// Reads `networks`, naming the entry that is not a network.
fn networks<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(deserializer)?;
    raw.iter()
        .enumerate()
        .map(|(i, entry)| {
            let entry = entry.trim();
            let net = entry
                .parse::<IpNet>()
                .ok()
                .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from));
            net.ok_or_else(|| {
                serde::de::Error::custom(format!("networks[{i}]: {entry:?} is not a CIDR network"))
            })
        })
        .collect()
}

/// Checks `[sip.auth]` against `[[sip.trunks]]`.
pub(crate) fn validate(auth: &SipAuthConfig, trunks: &[TrunkConfig]) -> Result<(), Problem> {
    if !is_quotable(&auth.realm) {
        return Err(Problem::new("sip.auth.realm", QUOTABLE));
    }
    if !(10..=3600).contains(&auth.nonce_lifetime_secs) {
        let problem = format!("{} must be 10 to 3600", auth.nonce_lifetime_secs);
        return Err(Problem::new("sip.auth.nonce_lifetime_secs", problem));
    }
    if auth.max_failures > 1000 {
        let problem = format!("{} must be 0 (off) to 1000", auth.max_failures);
        return Err(Problem::new("sip.auth.max_failures", problem));
    }
    if !(1..=86_400).contains(&auth.failure_window_secs) {
        let problem = format!("{} must be 1 to 86400", auth.failure_window_secs);
        return Err(Problem::new("sip.auth.failure_window_secs", problem));
    }
    if auth.algorithms.is_empty() {
        return Err(Problem::new(
            "sip.auth.algorithms",
            "at least one is needed",
        ));
    }
    for (i, a) in auth.algorithms.iter().enumerate() {
        if auth.algorithms[..i].contains(a) {
            let problem = "is listed twice";
            return Err(Problem::new(format!("sip.auth.algorithms[{i}]"), problem));
        }
    }
    match auth.mode {
        AuthMode::Peers if !trunks.is_empty() => {
            let problem = "\"peers\" never asks for credentials: remove [[sip.trunks]] or choose \"peers_or_digest\"";
            return Err(Problem::new("sip.auth.mode", problem));
        }
        AuthMode::Digest | AuthMode::PeersAndDigest if trunks.is_empty() => {
            let problem = format!(
                "{:?} needs at least one [[sip.trunks]] entry",
                auth.mode.as_str()
            );
            return Err(Problem::new("sip.auth.mode", problem));
        }
        _ => {}
    }
    for (i, trunk) in trunks.iter().enumerate() {
        validate_trunk(i, trunk, &trunks[..i])?;
    }
    Ok(())
}

const QUOTABLE: &str = "must be 1 to 128 characters, without '\"', '\\' or control characters";

/// Fits a digest quoted-string without escaping (RFC 3261 §25.1).
fn is_quotable(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && !text
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
}

fn validate_trunk(i: usize, trunk: &TrunkConfig, before: &[TrunkConfig]) -> Result<(), Problem> {
    let key = |k: &str| format!("sip.trunks[{i}].{k}");
    let name_ok = !trunk.name.is_empty()
        && trunk.name.len() <= 64
        && trunk
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        let problem = "must be 1 to 64 letters, digits, '-', '_' or '.'";
        return Err(Problem::new(key("name"), problem));
    }
    if before.iter().any(|t| t.name == trunk.name) {
        return Err(Problem::new(key("name"), "another trunk has this name"));
    }
    if !is_quotable(&trunk.username) {
        return Err(Problem::new(key("username"), QUOTABLE));
    }
    if before.iter().any(|t| t.username == trunk.username) {
        return Err(Problem::new(
            key("username"),
            "another trunk has this user name",
        ));
    }
    match (&trunk.password, &trunk.password_file) {
        (Some(_), Some(_)) => Err(Problem::new(
            key("password"),
            "set password or password_file, not both",
        )),
        (None, None) => Err(Problem::new(
            key("password"),
            "set password or password_file",
        )),
        (Some(p), None) if p.expose().trim().is_empty() => {
            Err(Problem::new(key("password"), "must not be empty"))
        }
        _ => Ok(()),
    }
}

impl super::SipConfig {
    /// Reads every trunk's password (files included). Errors name the key, the trunk and the
    /// file, never a secret.
    pub fn trunk_secrets(&self) -> Result<Vec<TrunkSecret>, SecretFileError> {
        self.trunks.iter().map(secret).collect()
    }
}

fn secret(trunk: &TrunkConfig) -> Result<TrunkSecret, SecretFileError> {
    let password = match (&trunk.password, &trunk.password_file) {
        (_, Some(path)) => {
            let problem = |detail: String| SecretFileError {
                key: "sip.trunks.password_file",
                detail: format!("trunk {:?}: {}: {detail}", trunk.name, path.display()),
            };
            let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
            match text.trim() {
                "" => return Err(problem("the file is empty".to_owned())),
                secret => Token::new(secret.to_owned()),
            }
        }
        (Some(password), None) => password.clone(),
        (None, None) => {
            return Err(SecretFileError {
                key: "sip.trunks.password",
                detail: format!("trunk {:?}: no password", trunk.name),
            });
        }
    };
    Ok(TrunkSecret {
        name: trunk.name.clone(),
        username: trunk.username.clone(),
        password,
        networks: trunk.networks.clone(),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{AuthMode, Config, DigestAlgorithm};

    fn err(body: &str) -> String {
        Config::parse("idgate.toml", body)
            .expect_err("should be refused")
            .to_string()
    }

    const TRUNK: &str = "[[sip.trunks]]\nname = \"carrier\"\nusername = \"u\"\npassword = \"pw\"\n";

    #[test]
    fn trunks_and_the_mode_are_read() {
        let body = format!(
            "[sip.auth]\nmode = \"digest\"\nrealm = \"pbx.example\"\n{TRUNK}networks = [\"192.0.2.0/24\", \"198.51.100.7\"]\n"
        );
        let config = Config::parse("idgate.toml", &body).unwrap();
        assert_eq!(config.sip.auth.mode, AuthMode::Digest);
        assert_eq!(config.sip.auth.realm, "pbx.example");
        assert_eq!(
            config.sip.auth.algorithms,
            [DigestAlgorithm::Sha256, DigestAlgorithm::Md5]
        );
        assert_eq!(
            config.sip.trunks[0].networks[1].to_string(),
            "198.51.100.7/32"
        );
        let secrets = config.sip.trunk_secrets().unwrap();
        assert_eq!(secrets[0].password.expose(), "pw");
        let defaults = Config::parse("idgate.toml", "").unwrap();
        assert_eq!(defaults.sip.auth.mode, AuthMode::PeersOrDigest);
        assert!(defaults.sip.trunks.is_empty());
        assert_eq!(defaults.sip.auth.max_failures, 5);
        assert_eq!(defaults.sip.auth.failure_window_secs, 60);
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        assert!(err("[sip.auth]\nmode = \"digest\"\n").contains("sip.auth.mode"));
        assert!(err(&format!("[sip.auth]\nmode = \"peers\"\n{TRUNK}")).contains("sip.auth.mode"));
        assert!(err("[sip.auth]\nmode = \"sometimes\"\n").contains("sip.auth.mode"));
        assert!(err("[sip.auth]\nrealm = \"a\\\"b\"\n").contains("sip.auth.realm"));
        assert!(err("[sip.auth]\nnonce_lifetime_secs = 5\n").contains("nonce_lifetime_secs"));
        assert!(err("[sip.auth]\nalgorithms = []\n").contains("sip.auth.algorithms"));
        assert!(err("[sip.auth]\nmax_failures = 1001\n").contains("sip.auth.max_failures"));
        assert!(err("[sip.auth]\nmax_failures = -1\n").contains("sip.auth.max_failures"));
        let window = "[sip.auth]\nfailure_window_secs = 0\n";
        assert!(err(window).contains("sip.auth.failure_window_secs"));
        let twice = "[sip.auth]\nalgorithms = [\"MD5\", \"MD5\"]\n";
        assert!(err(twice).contains("sip.auth.algorithms[1]"));
        assert!(err("[sip.auth]\nalgorithms = [\"SHA256\"]\n").contains("sip.auth.algorithms"));
        let no_password = "[[sip.trunks]]\nname = \"c\"\nusername = \"u\"\n";
        assert!(err(no_password).contains("sip.trunks[0].password"));
        let twice = format!("{TRUNK}{}", TRUNK.replace("\"u\"", "\"v\""));
        assert!(
            err(&twice).contains("sip.trunks[1].name"),
            "{}",
            err(&twice)
        );
        let same_user = format!("{TRUNK}{}", TRUNK.replace("carrier", "other"));
        assert!(err(&same_user).contains("sip.trunks[1].username"));
        let bad_net = format!("{TRUNK}networks = [\"10.0.0/8\"]\n");
        let e = err(&bad_net);
        assert!(
            e.contains("sip.trunks[0].networks") && e.contains("networks[0]"),
            "{e}"
        );
        assert!(err(&format!("{TRUNK}pasword = \"x\"\n")).contains("pasword"));
    }

    #[test]
    fn passwords_never_show_in_debug_or_errors() {
        let config =
            Config::parse("idgate.toml", &TRUNK.replace("\"pw\"", "\"s3cret-pw\"")).unwrap();
        let debug = format!("{:?} {:?}", config.sip, config.sip.trunk_secrets().unwrap());
        assert!(!debug.contains("s3cret-pw"), "{debug}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "\n").unwrap();
        let body = format!(
            "[[sip.trunks]]\nname = \"c\"\nusername = \"u\"\npassword_file = \"{}\"\n",
            file.display()
        );
        let config = Config::parse("idgate.toml", &body).unwrap();
        let e = config.sip.trunk_secrets().unwrap_err().to_string();
        assert!(
            e.contains("sip.trunks.password_file") && e.contains("empty"),
            "{e}"
        );
        std::fs::write(&file, " from-a-file \n").unwrap();
        let secrets = config.sip.trunk_secrets().unwrap();
        assert_eq!(secrets[0].password.expose(), "from-a-file");
    }
}
