//! The sections of `idgate.toml`, one struct per `[table]`. Every field is documented here, where
//! it is defined; `docs/config.md` is the same reference for PBX admins.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::error::Problem;
use crate::identity::headers::{DisplayTags, HeaderOptions, SubjectMode};

/// `[sip]`: the SIP endpoint that trunks and PBXs send INVITEs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Address to listen on, for UDP and TCP alike. Default `"127.0.0.1:5060"`.
    pub listen: SocketAddr,
    /// Transports opened: `"udp"`, `"tcp"` on `listen`, `"tls"` on `tls_listen`. Default
    /// `["udp", "tcp"]`.
    pub transports: Vec<Transport>,
    /// Address of the SIP over TLS listener (RFC 3261 §26). Default: `listen`'s address with
    /// port 5061. Only with `"tls"` in `transports`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain (leaf first) the TLS listener presents; required with `"tls"`.
    /// Reloaded without a restart when the file changes or on SIGHUP (`config::sip_tls`).
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key of `tls_certificate` (PKCS#8, PKCS#1 or SEC1, unencrypted); required
    /// with `"tls"`.
    pub tls_private_key: Option<PathBuf>,
    /// Peers (CIDR networks; a bare address is that one host) whose INVITEs are accepted and
    /// whose P-Asserted-Identity is trusted; anyone else gets 403. Default
    /// `["127.0.0.0/8", "::1/128"]`.
    #[serde(deserialize_with = "cidr_list")]
    pub trusted_peers: Vec<IpNet>,
    /// Prefix of the identity headers written on the queue leg and stripped from inbound
    /// requests (`X-Identity-Status`, ...). Default `"X-Identity-"`.
    pub header_prefix: String,
    /// `User-Agent` and `Server` header value. Default `"idgate/<version>"`.
    pub user_agent: String,
    /// Host name or address written in Contact and SDP when idgate sits behind NAT. Default:
    /// none (the listen address is used).
    pub public_address: Option<String>,
    /// `[sip.auth]`: admission by address, digest credentials or both (`config::trunks`).
    pub auth: super::trunks::SipAuthConfig,
    /// `[[sip.trunks]]`: trunks that authenticate with digest credentials. Default: none.
    pub trunks: Vec<super::trunks::TrunkConfig>,
}

/// A SIP transport to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SIP over UDP (RFC 3261 section 18).
    Udp,
    /// SIP over TCP (RFC 3261 section 18).
    Tcp,
    /// SIP over TLS (RFC 3261 section 26), on `sip.tls_listen`.
    Tls,
}

impl Transport {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060),
            transports: vec![Transport::Udp, Transport::Tcp],
            trusted_peers: vec![
                IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
                IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            ],
            header_prefix: "X-Identity-".to_owned(),
            user_agent: concat!("idgate/", env!("CARGO_PKG_VERSION")).to_owned(),
            public_address: None,
            tls_listen: None,
            tls_certificate: None,
            tls_private_key: None,
            auth: super::trunks::SipAuthConfig::default(),
            trunks: Vec::new(),
        }
    }
}

/// Reads `trusted_peers`, naming the entry that is not a network.
fn cidr_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(deserializer)?;
    raw.iter()
        .enumerate()
        .map(|(i, entry)| {
            parse_network(entry).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "sip.trusted_peers[{i}]: {entry:?} is not a CIDR network"
                ))
            })
        })
        .collect()
}

/// `10.0.0.0/8`, `::1/128`, or a bare address meaning that one host.
fn parse_network(entry: &str) -> Option<IpNet> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

impl SipConfig {
    /// Checks what the types alone do not.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if self.transports.is_empty() {
            return Err(Problem::new(
                "sip.transports",
                "at least one transport is needed",
            ));
        }
        for (i, t) in self.transports.iter().enumerate() {
            if self.transports[..i].contains(t) {
                let problem = format!("{:?} is listed twice", t.as_str());
                return Err(Problem::new(format!("sip.transports[{i}]"), problem));
            }
        }
        if self.header_prefix.is_empty() || !self.header_prefix.chars().all(is_token_char) {
            let problem = format!(
                "{:?} must be a non-empty SIP header name prefix (letters, digits, - . ! % * _ + ` ' ~)",
                self.header_prefix
            );
            return Err(Problem::new("sip.header_prefix", problem));
        }
        if self.user_agent.is_empty() || self.user_agent.chars().any(char::is_control) {
            let problem = "must be non-empty, without control characters";
            return Err(Problem::new("sip.user_agent", problem));
        }
        if let Some(host) = &self.public_address {
            validate_host(host).map_err(|p| Problem::new("sip.public_address", p))?;
        }
        super::trunks::validate(&self.auth, &self.trunks)?;
        self.validate_tls()?;
        Ok(())
    }
}

/// RFC 3261 section 25.1 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// A host name or IP address, without scheme or port.
fn validate_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if is_name {
        Ok(())
    } else {
        Err(format!(
            "{host:?} must be a host name or an IP address (no scheme, no port)"
        ))
    }
}

/// `[http]`: health, metrics, API and the agent screen-pop page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP server listens on. Default `"127.0.0.1:8080"`.
    pub listen: SocketAddr,
    /// Bearer token the management API (`/v1/customers`) requires
    /// (`Authorization: Bearer <token>`). Prefer `api_token_file`. Default: none, and then
    /// every management request is refused with 401.
    pub api_token: Option<super::Token>,
    /// A file holding the API token (read at start; surrounding whitespace ignored). Default:
    /// none. At most one of `api_token` and `api_token_file`.
    pub api_token_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            api_token: None,
            api_token_file: None,
        }
    }
}

impl HttpConfig {
    /// At most one token source, and no empty token.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        match (&self.api_token, &self.api_token_file) {
            (Some(_), Some(_)) => Err(Problem::new(
                "http.api_token",
                "set api_token or api_token_file, not both",
            )),
            (Some(token), None) if token.expose().trim().is_empty() => {
                Err(Problem::new("http.api_token", "must not be empty"))
            }
            _ => Ok(()),
        }
    }
}

/// `[media]`: RTP for prompts, hold music and the bridged call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    /// Local address RTP sockets bind to. Default `"127.0.0.1"`.
    pub bind_ip: IpAddr,
    /// Lowest RTP port (even; RTP uses even ports, RFC 3550 section 11). Default `20000`.
    pub rtp_port_min: u16,
    /// Highest port of the range, above `rtp_port_min`: each call leg takes an even RTP port
    /// and the odd RTCP port above it, both within the range. Default `30000`.
    pub rtp_port_max: u16,
    /// SDES-SRTP (RFC 4568 keys in SDP, RFC 3711) on the caller leg: `"optional"` answers
    /// `RTP/SAVP` offers with SRTP and plain `RTP/AVP` ones with RTP; `"required"` refuses
    /// plain offers (488); `"off"` refuses `RTP/SAVP` (488 when nothing else is offered).
    /// The queue leg is always plain RTP. Default `"optional"`.
    pub srtp: crate::media::srtp::SrtpPolicy,
    /// Send prompts and hold music through one raw socket per pump thread, in batches
    /// (`sendmmsg`), instead of one `sendto` per packet on each call's socket: about half the
    /// CPU per packet with thousands of calls on hold. Needs `CAP_NET_RAW` and an IPv4
    /// `bind_ip` (one address, or `0.0.0.0`: then the kernel fills in the source and no UDP
    /// checksum is sent). Plain RTP over IPv4 only; SRTP and IPv6 legs and relayed media use
    /// the calls' sockets as before. Default `false`.
    pub raw_send: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            rtp_port_min: 20000,
            rtp_port_max: 30000,
            srtp: crate::media::srtp::SrtpPolicy::default(),
            raw_send: false,
        }
    }
}

impl MediaSettings {
    /// Checks the port range.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        let (min, max) = (self.rtp_port_min, self.rtp_port_max);
        if min >= max {
            let problem = format!("{min} must be below media.rtp_port_max ({max})");
            return Err(Problem::new("media.rtp_port_min", problem));
        }
        if min % 2 != 0 {
            let problem = format!("{min} must be even (RTP uses even ports)");
            return Err(Problem::new("media.rtp_port_min", problem));
        }
        if self.raw_send && self.bind_ip.is_ipv6() {
            let problem = format!(
                "needs an IPv4 media.bind_ip (one address, or 0.0.0.0), not {}: the raw path \
                 sends IPv4 only",
                self.bind_ip
            );
            return Err(Problem::new("media.raw_send", problem));
        }
        Ok(())
    }
}

/// `[store]`: where calls and customers are kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Database URL. `sqlite://idgate.db` (a relative path is relative to the working directory;
    /// the file is created if missing), `sqlite:///var/lib/idgate/idgate.db`, `sqlite::memory:`,
    /// or `postgres://user@host:5432/idgate` (also `postgresql://`; the database must exist;
    /// plain TCP, no TLS in this version) for several instances sharing one database.
    /// Default `"sqlite://idgate.db"`.
    pub url: String,
    /// Days the personal data of a call is kept (caller number, Call-ID, BankID's completion
    /// data, push attempts' caller and person, order references, source addresses); after
    /// that `serve` removes it (hourly) and keeps the rest as aggregate data. `0` keeps it
    /// until erased (`idgate privacy erase`). At most 36500, and at least as long as the push
    /// limits look back (`[limits]` window, cooldown, order lifetime). Default `90`.
    pub retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://idgate.db".to_owned(),
            retention_days: 90,
        }
    }
}

/// The longest `store.retention_days` accepted (100 years).
const MAX_RETENTION_DAYS: u32 = 36_500;

impl StoreConfig {
    /// SQLite or PostgreSQL; a retention period of at most [`MAX_RETENTION_DAYS`].
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        let schemes = ["sqlite:", "postgres://", "postgresql://"];
        if !schemes.iter().any(|s| self.url.starts_with(s)) {
            let problem = "must be a sqlite: or postgres:// URL \
                           (e.g. \"sqlite://idgate.db\", \"postgres://idgate@db-host/idgate\")";
            return Err(Problem::new("store.url", problem));
        }
        if self.retention_days > MAX_RETENTION_DAYS {
            let problem = format!(
                "{} is more than {MAX_RETENTION_DAYS} days (use 0 to keep personal data until \
                 erased)",
                self.retention_days
            );
            return Err(Problem::new("store.retention_days", problem));
        }
        Ok(())
    }

    /// How long personal data is kept; `None` for `retention_days = 0` (until erased).
    pub fn retention(&self) -> Option<std::time::Duration> {
        (self.retention_days > 0)
            .then(|| std::time::Duration::from_secs(u64::from(self.retention_days) * 86_400))
    }

    /// The retention period must cover what the push limits look back at, or a purge would
    /// weaken them (they count recent attempts by caller number and person).
    pub(crate) fn covers(&self, limits: &super::limits::LimitsConfig) -> Result<(), Problem> {
        let Some(keep) = self.retention() else {
            return Ok(());
        };
        let needed = limits
            .window_secs
            .max(limits.cooldown_secs)
            .max(limits.order_lifetime_secs);
        if keep.as_secs() >= needed {
            return Ok(());
        }
        let problem = format!(
            "{} day(s) is shorter than the push limits look back ({needed} s, from \
             limits.window_secs, cooldown_secs and order_lifetime_secs)",
            self.retention_days
        );
        Err(Problem::new("store.retention_days", problem))
    }
}

/// `[identity]`: what the identity headers and token say about the verified person.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Personal identity number in `X-Identity-Subject` and the token's `sub`: `"masked"`
    /// (`19800101-****`), `"full"`, or `"none"`. Default `"masked"`.
    pub subject: SubjectMode,
    /// Whether the verified name goes in `X-Identity-Name` and the token. Default `false`.
    pub include_name: bool,
    /// The token's `iss` (instance or company name), at most 100 bytes. Default `"idgate"`.
    pub issuer: String,
    /// PKCS#8 PEM file with the Ed25519 private key tokens are signed with (make one with
    /// `idgate keys generate --out FILE`). Default: none: a new key is made at each start, and
    /// tokens stop verifying after a restart.
    pub signing_key_file: Option<PathBuf>,
    /// Public keys (PEM files) of earlier signing keys, still served in the JWKS and accepted
    /// by `idgate token verify` during a rotation: `"file.pem"` or
    /// `{ file = "file.pem", retired_at = 2025-07-01T00:00:00Z }` (tokens it signed later than
    /// that are refused). Default: none.
    pub previous_public_keys: Vec<crate::identity::token::PreviousPublicKey>,
    /// Seconds a token is valid after it is issued, 60 to 86400. Default 600.
    pub token_lifetime_secs: u64,
    /// Whether the queue leg also carries RFC 7433 `User-to-User` (ISDN UUI package, hex) with
    /// `verified;call=<id>` or `unverified;reason=<reason>;call=<id>`, for platforms that pass
    /// UUI but not X- headers (Genesys Cloud `Call.UUIData`). B2BUA INVITE and REFER (header
    /// and Refer-To URI). Default `false`.
    pub user_to_user: bool,
    /// Whether the From display name on the B2BUA queue leg is `tag_verified` or
    /// `tag_unverified` followed by the caller's cleaned display name (or number). A
    /// convenience for softphones that show nothing else, trustworthy only where the PBX strips
    /// caller-supplied display names. Off: no display name at all. Default `false`.
    pub display_tag: bool,
    /// The tag for verified callers: 1 to 8 characters, no control characters. Default `"✔ "`.
    pub tag_verified: String,
    /// The tag for everyone else, same rules, different from `tag_verified`. Default `"✖ "`.
    pub tag_unverified: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        let tags = DisplayTags::default();
        Self {
            subject: SubjectMode::Masked,
            include_name: false,
            issuer: "idgate".to_owned(),
            signing_key_file: None,
            previous_public_keys: Vec::new(),
            token_lifetime_secs: crate::identity::token::DEFAULT_LIFETIME_SECS,
            user_to_user: false,
            display_tag: false,
            tag_verified: tags.verified,
            tag_unverified: tags.unverified,
        }
    }
}

/// Most characters in `identity.tag_verified` / `identity.tag_unverified`.
const MAX_TAG_CHARS: usize = 8;

impl IdentityConfig {
    /// How the identity headers are written: these settings and `[sip] header_prefix`.
    pub fn header_options(&self, prefix: &str) -> HeaderOptions {
        HeaderOptions {
            prefix: prefix.to_owned(),
            subject: self.subject,
            include_name: self.include_name,
            user_to_user: self.user_to_user,
            display_tags: self.display_tag.then(|| DisplayTags {
                verified: self.tag_verified.clone(),
                unverified: self.tag_unverified.clone(),
            }),
        }
    }

    /// The issuer must be usable as a JWT `iss`; the tags must fit a display name.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if self.issuer.trim().is_empty() || self.issuer.chars().any(char::is_control) {
            let problem = "must be non-empty, without control characters";
            return Err(Problem::new("identity.issuer", problem));
        }
        if self.issuer.len() > crate::identity::token::MAX_ISSUER_LEN {
            return Err(Problem::new("identity.issuer", "must be at most 100 bytes"));
        }
        if !(60..=86_400).contains(&self.token_lifetime_secs) {
            let problem = "must be 60 to 86400 seconds";
            return Err(Problem::new("identity.token_lifetime_secs", problem));
        }
        for (i, entry) in self.previous_public_keys.iter().enumerate() {
            if !entry.is_valid() {
                let key = format!("identity.previous_public_keys[{i}].retired_at");
                let problem =
                    "must be a date-time with an offset, from 1970 on (2025-07-01T00:00:00Z)";
                return Err(Problem::new(key, problem));
            }
        }
        validate_tag("identity.tag_verified", &self.tag_verified)?;
        validate_tag("identity.tag_unverified", &self.tag_unverified)?;
        if self.tag_verified == self.tag_unverified {
            let problem = "must differ from identity.tag_verified";
            return Err(Problem::new("identity.tag_unverified", problem));
        }
        Ok(())
    }
}

/// A display-name tag: visible (not only spaces), at most [`MAX_TAG_CHARS`] characters, no
/// control characters (they would break the From header).
fn validate_tag(key: &str, tag: &str) -> Result<(), Problem> {
    if tag.trim().is_empty() || tag.chars().count() > MAX_TAG_CHARS {
        let problem = "must be 1 to 8 characters, not only spaces (e.g. \"✔ \")";
        return Err(Problem::new(key, problem));
    }
    if tag.chars().any(char::is_control) {
        return Err(Problem::new(key, "must not contain control characters"));
    }
    Ok(())
}

/// `[provider]`: the eID provider that verifies callers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Which provider: `"simulator"`, `"bankid"`, `"freja"` or `"app-push"`, each set up in its
    /// own section below. Default `"simulator"`.
    pub kind: ProviderKind,
    /// `[provider.simulator]`: settings of the simulator, used when `kind = "simulator"`.
    pub simulator: crate::verify::simulator::SimulatorConfig,
    /// `[provider.freja]`: settings of Freja eID, used when `kind = "freja"`.
    #[serde(default)]
    pub freja: crate::verify::freja::FrejaConfig,
    /// `[provider.bankid]`: settings of BankID (RP API v6 phone/auth), used when
    /// `kind = "bankid"`.
    #[serde(default)]
    pub bankid: crate::verify::bankid::BankIdConfig,
    /// `[provider.app-push]`: the company's own app through the company backend (signed push
    /// request, signed callback), used when `kind = "app-push"`.
    #[serde(default, rename = "app-push")]
    pub app_push: crate::verify::app_push::AppPushConfig,
}

/// The eID provider in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The built-in simulator (demos and tests); see `[provider.simulator]`.
    #[default]
    Simulator,
    /// Freja eID (relying-party API over mutual TLS); see `[provider.freja]`.
    Freja,
    /// BankID (RP API v6 phone/auth over mutual TLS); see `[provider.bankid]`.
    Bankid,
    /// The company's own app, by a signed push through the company backend; see
    /// `[provider.app-push]`.
    #[serde(rename = "app-push")]
    AppPush,
}

impl ProviderKind {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Simulator => "simulator",
            ProviderKind::Freja => "freja",
            ProviderKind::Bankid => "bankid",
            ProviderKind::AppPush => "app-push",
        }
    }
}

/// `[dialplan]`: where idgate's route files are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialplanConfig {
    /// Directory of route files (`*.toml`, read in file-name order; a relative path is relative
    /// to the working directory). Default: none, meaning the bundled `dialplans/default.toml`
    /// (everything to `sip:queue@127.0.0.1:5080`).
    pub dir: Option<PathBuf>,
}
