//! `idgate check-config`: load everything the way start-up does and summarise it.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use super::{Config, ConfigError, Dialplan, ProviderKind, Transport};

/// What `idgate check-config` prints when the config and the dialplan are valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The config file checked, or the embedded one.
    pub config_file: String,
    /// `sip.listen`.
    pub sip_listen: SocketAddr,
    /// `sip.transports`.
    pub transports: Vec<Transport>,
    /// `sip.tls_listen` (or its default), when `"tls"` is on; the pair was loaded and matched.
    pub tls_listen: Option<SocketAddr>,
    /// `http.listen`.
    pub http_listen: SocketAddr,
    /// `provider.kind`.
    pub provider: ProviderKind,
    /// The routes, in the order they are tried.
    pub routes: Vec<RouteSummary>,
}

/// One route in a [`CheckReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    /// `name`.
    pub name: String,
    /// `match`, as written (`"5000"`, `"46*"`, `"*"`).
    pub matches: String,
    /// `target`.
    pub target: String,
    /// `transfer` (`b2bua` or `refer`).
    pub transfer: &'static str,
    /// The route file.
    pub file: String,
}

/// Loads the config at `path` (or the embedded one) and its dialplan, as start-up would.
pub fn check(path: Option<&Path>) -> Result<CheckReport, ConfigError> {
    let (config, config_file) = match path {
        Some(path) => (Config::load(path)?, path.display().to_string()),
        None => (Config::embedded(), super::EMBEDDED_NAME.to_owned()),
    };
    let dialplan = Dialplan::load(&config.dialplan)?;
    let routes = dialplan
        .routes()
        .iter()
        .map(|r| RouteSummary {
            name: r.name.clone(),
            matches: r.matches.to_string(),
            target: r.target.to_string(),
            transfer: r.transfer.as_str(),
            file: r.file.clone(),
        })
        .collect();
    Ok(CheckReport {
        config_file,
        sip_listen: config.sip.listen,
        transports: config.sip.transports.clone(),
        tls_listen: config
            .sip
            .tls_enabled()
            .then(|| config.sip.tls_listen_addr()),
        http_listen: config.http.listen,
        provider: config.provider.kind,
        routes,
    })
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transports: Vec<&str> = self.transports.iter().map(|t| t.as_str()).collect();
        writeln!(f, "config:   {} (valid)", self.config_file)?;
        writeln!(
            f,
            "sip:      {} ({})",
            self.sip_listen,
            transports.join(", ")
        )?;
        if let Some(tls) = self.tls_listen {
            writeln!(f, "sip tls:  {tls} (certificate and key match)")?;
        }
        writeln!(f, "http:     {}", self.http_listen)?;
        writeln!(f, "provider: {}", self.provider.as_str())?;
        writeln!(f, "routes:   {}", self.routes.len())?;
        for (i, r) in self.routes.iter().enumerate() {
            let n = i + 1;
            let (name, matches, target, transfer, file) =
                (&r.name, &r.matches, &r.target, r.transfer, &r.file);
            writeln!(
                f,
                "  {n}. {name}: match \"{matches}\" -> {target} ({transfer}) [{file}]"
            )?;
        }
        Ok(())
    }
}
