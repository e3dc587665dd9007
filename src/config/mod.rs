//! Typed configuration from TOML: `idgate.toml` (one section per subsystem) and idgate's own
//! route files (`dialplans/*.toml`). Unknown keys are errors everywhere, an empty file is a valid
//! config, and every error names the file and the key. `docs/config.md` is the reference.

mod admission;
mod agent;
mod check;
mod dialplan;
mod directory;
mod error;
mod limits;
mod log;
mod sections;
mod sip_tls;
#[cfg(test)]
mod tests;
mod trunks;

use std::path::Path;

use serde::Deserialize;

/// Re-exported: `identity.subject` is the headers module's own setting.
pub use crate::identity::headers::SubjectMode;

pub use admission::AdmissionConfig;
pub use agent::{AgentConfig, AgentCredentials, SecretFileError};
pub use check::{CheckReport, RouteSummary, check};
pub use dialplan::{CalledMatch, Dialplan, Language, ReferToHeaders, Route, SipUri, Transfer};
pub use directory::{DirectoryConfig, DirectoryKind, NUMBER_PLACEHOLDER, Token};
pub use error::ConfigError;
pub use limits::LimitsConfig;
pub use log::{LogConfig, LogFormat};
pub use sections::{
    DialplanConfig, HttpConfig, IdentityConfig, MediaSettings, ProviderConfig, ProviderKind,
    SipConfig, StoreConfig, Transport,
};
pub use sip_tls::{DEFAULT_TLS_PORT, TlsFileError, TlsFiles};
pub use trunks::{AuthMode, DigestAlgorithm, SipAuthConfig, TrunkConfig, TrunkSecret};

use error::{Problem, display_path};

/// The documented default config, compiled in (`assets/idgate.toml`).
const EMBEDDED: &str = include_str!("../../assets/idgate.toml");
/// How the compiled-in config is named in errors and reports.
const EMBEDDED_NAME: &str = "assets/idgate.toml (embedded)";

/// The whole of `idgate.toml`. Every section may be left out; its defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[sip]`: the SIP endpoint.
    pub sip: SipConfig,
    /// `[http]`: health, metrics, API, screen-pop.
    pub http: HttpConfig,
    /// `[media]`: RTP.
    pub media: MediaSettings,
    /// `[store]`: the database.
    pub store: StoreConfig,
    /// `[identity]`: what the identity headers and token reveal.
    pub identity: IdentityConfig,
    /// `[provider]`: the eID provider.
    pub provider: ProviderConfig,
    /// `[dialplan]`: where the route files are.
    pub dialplan: DialplanConfig,
    /// `[limits]`: anti push-bombing.
    pub limits: LimitsConfig,
    /// `[directory]`: where caller numbers are looked up.
    pub directory: DirectoryConfig,
    /// `[agent]`: the screen-pop page's credentials.
    pub agent: AgentConfig,
    /// `[admission]`: overload limits and draining.
    pub admission: AdmissionConfig,
    /// `[log]`: format and level.
    pub log: LogConfig,
}

impl Config {
    /// The compiled-in `assets/idgate.toml`: the defaults, with every key documented, and a
    /// simulator that approves phone pushes after 3 s so a demo call comes out verified.
    pub fn embedded() -> Config {
        // A unit test proves the embedded file parses and equals the defaults, so falling back to
        // the defaults can only ever return the same value.
        Self::parse(EMBEDDED_NAME, EMBEDDED).unwrap_or_default()
    }

    /// The text of the compiled-in config (`idgate` can print it as a starting point).
    pub fn embedded_text() -> &'static str {
        EMBEDDED
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(&display_path(path), &source)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(file: &str, source: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(source).map_err(|e| ConfigError::from_toml(file, source, &e))?;
        config.check().map_err(|p| p.in_file(file))?;
        Ok(config)
    }

    /// Checks what the types alone cannot (port range, header prefix, store URL, ...).
    /// [`Config::load`] and [`Config::parse`] already do this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|p| p.in_file("(config)"))
    }

    /// The first problem found, without the file.
    fn check(&self) -> Result<(), Problem> {
        self.sip.validate()?;
        self.media.validate()?;
        self.store.validate()?;
        self.identity.validate()?;
        self.limits.validate()?;
        self.store.covers(&self.limits)?;
        self.http.validate()?;
        self.directory.validate()?;
        self.agent.validate()?;
        self.admission.validate()?;
        self.log.validate()?;
        Ok(())
    }
}
