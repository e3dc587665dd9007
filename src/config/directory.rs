//! `[directory]`: where caller numbers are looked up (idgate's own customer table, or the
//! company's CRM over HTTP), and [`Token`], a secret from the config file that `Debug` never
//! shows (CRM and API bearer tokens).

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;
use serde::Deserialize;

use super::error::Problem;

/// The placeholder in `directory.url` that the caller number replaces.
pub const NUMBER_PLACEHOLDER: &str = "{number}";

/// `[directory]`: the customer directory consulted for caller-ID pushes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Where numbers are looked up: `"database"` (idgate's own table, managed with
    /// `idgate customers` and `/v1/customers`) or `"crm"` (an HTTP GET per call to `url`).
    /// Default `"database"`.
    pub kind: DirectoryKind,
    /// For `kind = "crm"`: the lookup URL, with `{number}` where the caller number goes (E.164,
    /// percent-encoded: `%2B46701234567`), e.g. `"https://crm.example.com/idgate/{number}"`.
    /// `https://`, or `http://` only to a loopback address. Required for `"crm"`.
    pub url: Option<String>,
    /// For `kind = "crm"`: milliseconds the CRM has to answer; slower is a lookup failure.
    /// Default `2000`.
    pub timeout_ms: u64,
    /// For `kind = "crm"`: seconds an answer (customer or not) is reused for the same number;
    /// `0` turns the cache off. Default `60`.
    pub cache_secs: u64,
    /// For `kind = "crm"`: sent as `Authorization: Bearer <token>`. Default: none.
    pub bearer_token: Option<Token>,
}

/// Which customer directory idgate asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    /// idgate's own `customers` table.
    #[default]
    Database,
    /// The company's CRM over HTTP.
    Crm,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            kind: DirectoryKind::Database,
            url: None,
            timeout_ms: 2000,
            cache_secs: 60,
            bearer_token: None,
        }
    }
}

impl DirectoryConfig {
    /// For `kind = "crm"`: a usable URL template and a timeout above 0.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if self.kind == DirectoryKind::Database {
            return Ok(());
        }
        let raw = self.url.as_deref().ok_or_else(|| {
            Problem::new("directory.url", "required when directory.kind = \"crm\"")
        })?;
        validate_url(raw).map_err(|p| Problem::new("directory.url", p))?;
        if self.timeout_ms == 0 {
            return Err(Problem::new("directory.timeout_ms", "must be above 0"));
        }
        if self.bearer_token.as_ref().is_some_and(|t| t.0.is_empty()) {
            return Err(Problem::new("directory.bearer_token", "must not be empty"));
        }
        Ok(())
    }
}

/// The URL template holds `{number}`, gives a URL with it replaced, and is `https://` (or
/// `http://` to a loopback address: caller numbers are personal data).
fn validate_url(raw: &str) -> Result<(), String> {
    if !raw.contains(NUMBER_PLACEHOLDER) {
        return Err(format!("{raw:?} must contain {NUMBER_PLACEHOLDER}"));
    }
    let sample = raw.replace(NUMBER_PLACEHOLDER, "%2B46701234567");
    let url = Url::parse(&sample).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user name or password (use bearer_token)".to_owned());
    }
    let loopback = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => {
            Err("http:// only with a loopback address (127.0.0.1, [::1]); use https://".into())
        }
        other => Err(format!("unsupported scheme {other:?}")),
    }
}

/// A secret from the config file (a bearer token). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a secret.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself, to send or compare; never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(body: &str) -> String {
        Config::parse("idgate.toml", &format!("[directory]\n{body}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_crm_section_parses_and_hides_its_token() {
        let text = "[directory]\nkind = \"crm\"\nurl = \"https://crm.example.com/c/{number}\"\n\
                    bearer_token = \"s3cret\"\ncache_secs = 0\n";
        let c = Config::parse("idgate.toml", text).unwrap().directory;
        assert_eq!((c.timeout_ms, c.cache_secs), (2000, 0));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_crm_section_names_the_key() {
        let missing = err("kind = \"crm\"\n");
        assert!(missing.contains("directory.url: required"), "{missing}");
        let no_placeholder = err("kind = \"crm\"\nurl = \"https://crm.example.com/\"\n");
        assert!(no_placeholder.contains("{number}"), "{no_placeholder}");
        let plain = err("kind = \"crm\"\nurl = \"http://crm.example.com/{number}\"\n");
        assert!(plain.contains("loopback"), "{plain}");
        let zero = err("kind = \"crm\"\nurl = \"http://127.0.0.1:9/{number}\"\ntimeout_ms = 0\n");
        assert!(zero.contains("directory.timeout_ms"), "{zero}");
        let kind = err("kind = \"ldap\"\n");
        assert!(kind.contains("ldap"), "{kind}");
    }
}
