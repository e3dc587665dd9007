//! `[provider.app-push]`: where the company backend is and how requests are signed. The raw
//! TOML ([`AppPushConfig`]) is checked once, at start, into [`Settings`]; every error names the
//! key and never echoes the secret.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::signature::SigningKey;
use crate::verify::SetupError;

/// The shortest shared secret accepted, in bytes (256 bits of hex, or more of anything).
const MIN_SECRET_LEN: usize = 32;

/// `[provider.app-push]`: the company's own app, reached through the company backend. Used when
/// `provider.kind = "app-push"`. The request and callback formats are in the README ("Company
/// app push").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppPushConfig {
    /// The company backend's push endpoint, which idgate POSTs each push request to; cancels go
    /// to this URL + `/cancel`. `https://` (or `http://` only with a loopback address such as
    /// `127.0.0.1` or `[::1]`, for a backend on the same host), no query or fragment. Required.
    pub url: Option<String>,
    /// The shared secret both sides sign with (HMAC-SHA256), at least 32 bytes, used as
    /// written. Prefer `secret_file`; exactly one of the two is required.
    pub secret: Option<Secret>,
    /// A file holding the shared secret (read at start; surrounding whitespace and the final
    /// newline are ignored). Preferred over `secret`: keep it readable by idgate only.
    pub secret_file: Option<PathBuf>,
    /// Milliseconds idgate waits for the backend to answer a push or cancel request. Default
    /// `5000`.
    pub request_timeout_ms: u64,
    /// Seconds a callback's `X-Idgate-Timestamp` may be from idgate's clock, either way;
    /// callbacks outside are refused (replay protection). Default `300`.
    pub max_skew_secs: u64,
    /// Seconds idgate waits for the callback after the backend accepted a push; then the
    /// order ends as `timeout` (and a cancel is sent). Default `120`.
    pub order_timeout_secs: u64,
    /// PEM file with the CA certificate(s) of a private CA that signed the backend's server
    /// certificate; only these are then trusted. Default: none (the system's trusted roots).
    pub ca: Option<PathBuf>,
}

impl Default for AppPushConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            secret_file: None,
            request_timeout_ms: 5000,
            max_skew_secs: 300,
            order_timeout_secs: 120,
            ca: None,
        }
    }
}

/// A secret from the config file. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

pub(crate) use crate::verify::tls::Trust;

/// [`AppPushConfig`], checked.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Where pushes go.
    pub push_url: Url,
    /// Where cancels go (`push_url` + `/cancel`).
    pub cancel_url: Url,
    /// The shared secret.
    pub key: SigningKey,
    /// Bound on each request to the backend.
    pub request_timeout: Duration,
    /// Allowed callback clock skew, seconds.
    pub max_skew_secs: u64,
    /// How long to wait for a callback.
    pub order_timeout: Duration,
    /// Which certificates to trust.
    pub trust: Trust,
}

/// `provider.app-push.<key>`, for error messages.
macro_rules! key {
    ($k:literal) => {
        concat!("provider.app-push.", $k)
    };
}

fn invalid(key: &'static str, detail: impl Into<String>) -> SetupError {
    SetupError::Invalid {
        key,
        detail: detail.into(),
    }
}

impl AppPushConfig {
    /// Checks the config and reads the secret file.
    pub(crate) fn settings(&self) -> Result<Settings, SetupError> {
        let raw_url = self
            .url
            .as_deref()
            .ok_or_else(|| invalid(key!("url"), "required when provider.kind = \"app-push\""))?;
        let (push_url, cancel_url, loopback) = parse_url(raw_url)?;
        let positive = |key: &'static str, value: u64| match value {
            0 => Err(invalid(key, "must be above 0")),
            v => Ok(v),
        };
        let trust = match (&self.ca, loopback) {
            (Some(ca), _) => Trust::Ca(ca.clone()),
            (None, true) => Trust::Loopback,
            (None, false) => Trust::System,
        };
        Ok(Settings {
            push_url,
            cancel_url,
            key: self.signing_key()?,
            request_timeout: Duration::from_millis(positive(
                key!("request_timeout_ms"),
                self.request_timeout_ms,
            )?),
            max_skew_secs: positive(key!("max_skew_secs"), self.max_skew_secs)?,
            order_timeout: Duration::from_secs(positive(
                key!("order_timeout_secs"),
                self.order_timeout_secs,
            )?),
            trust,
        })
    }

    /// The key from `secret` or `secret_file` (exactly one).
    fn signing_key(&self) -> Result<SigningKey, SetupError> {
        let (key, secret) = match (&self.secret, &self.secret_file) {
            (Some(Secret(secret)), None) => (key!("secret"), secret.clone()),
            (None, Some(path)) => (key!("secret_file"), read_secret(path)?),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    key!("secret"),
                    "set secret or secret_file, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(key!("secret_file"), "required (or secret)"));
            }
        };
        if secret.len() < MIN_SECRET_LEN {
            let detail = format!(
                "the secret is shorter than {MIN_SECRET_LEN} bytes (try `openssl rand -hex 32`)"
            );
            return Err(invalid(key, detail));
        }
        SigningKey::new(secret.as_bytes()).map_err(|_| invalid(key, "unusable as an HMAC key"))
    }
}

/// The secret in `path`, without surrounding whitespace. Errors never hold the contents.
fn read_secret(path: &std::path::Path) -> Result<String, SetupError> {
    let file_error = |detail: String| SetupError::File {
        key: key!("secret_file"),
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    Ok(text.trim().to_owned())
}

/// The push URL, the cancel URL, and whether the host is a loopback address.
fn parse_url(raw: &str) -> Result<(Url, Url, bool), SetupError> {
    let url = Url::parse(raw).map_err(|e| invalid(key!("url"), format!("not a URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(key!("url"), "must have no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            key!("url"),
            "must not hold a user name or password",
        ));
    }
    let loopback = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        // Plain HTTP carries personal identity numbers in clear text: only to this host.
        "http" if loopback => {}
        "http" => {
            let detail = "http:// only with a loopback address (127.0.0.1, [::1]); use https://";
            return Err(invalid(key!("url"), detail));
        }
        other => {
            return Err(invalid(
                key!("url"),
                format!("unsupported scheme {other:?}"),
            ));
        }
    }
    let cancel = format!("{}/cancel", url.as_str().trim_end_matches('/'));
    let cancel_url =
        Url::parse(&cancel).map_err(|e| invalid(key!("url"), format!("cancel URL: {e}")))?;
    Ok((url, cancel_url, loopback))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config(body: &str) -> AppPushConfig {
        let text = format!("[provider]\nkind = \"app-push\"\n[provider.app-push]\n{body}");
        Config::parse("test.toml", &text).unwrap().provider.app_push
    }

    fn error(body: &str) -> String {
        config(body).settings().unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_a_full_section() {
        let c = config(&format!(
            "url = \"https://backend.example.com/idgate/push/\"\nsecret = \"{SECRET}\"\n"
        ));
        assert_eq!(
            (c.request_timeout_ms, c.max_skew_secs, c.order_timeout_secs),
            (5000, 300, 120)
        );
        let s = c.settings().unwrap();
        assert_eq!(
            s.cancel_url.as_str(),
            "https://backend.example.com/idgate/push/cancel"
        );
        assert_eq!((&s.trust, s.max_skew_secs), (&Trust::System, 300));
        assert!(
            !format!("{c:?}{s:?}").contains(SECRET),
            "Debug shows the secret"
        );
    }

    #[test]
    fn the_secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let c = config(&format!(
            "url = \"http://127.0.0.1:9/push\"\nsecret_file = {:?}\n",
            path.display().to_string()
        ));
        let s = c.settings().unwrap();
        assert_eq!(s.trust, Trust::Loopback);
        let expected = SigningKey::new(SECRET.as_bytes()).unwrap().sign(1, b"x");
        assert_eq!(s.key.sign(1, b"x"), expected);
        let missing = c.clone().secret_file.map(|p| p.with_file_name("nope"));
        let e = AppPushConfig {
            secret_file: missing,
            ..c
        };
        let e = e.settings().unwrap_err().to_string();
        assert!(e.starts_with("provider.app-push.secret_file: "), "{e}");
    }

    #[test]
    fn errors_name_the_key_and_never_the_secret() {
        let url = "url = \"https://b.example/push\"\n";
        let cases = [
            (
                format!("secret = \"{SECRET}\"\n"),
                "provider.app-push.url: required",
            ),
            (url.to_owned(), "provider.app-push.secret_file: required"),
            (
                format!("{url}secret = \"tiny-s3cret\"\n"),
                "provider.app-push.secret: the secret is shorter",
            ),
            (
                format!("{url}secret = \"{SECRET}\"\nsecret_file = \"/x\"\n"),
                "provider.app-push.secret: set secret or secret_file, not both",
            ),
            (
                format!("url = \"http://10.0.0.1/push\"\nsecret = \"{SECRET}\"\n"),
                "provider.app-push.url: http:// only with a loopback address",
            ),
            (
                format!("url = \"http://localhost/push\"\nsecret = \"{SECRET}\"\n"),
                "provider.app-push.url: http:// only with a loopback address",
            ),
            (
                format!("url = \"https://b.example/p?x=1\"\nsecret = \"{SECRET}\"\n"),
                "provider.app-push.url: must have no query",
            ),
            (
                format!("{url}secret = \"{SECRET}\"\norder_timeout_secs = 0\n"),
                "provider.app-push.order_timeout_secs: must be above 0",
            ),
        ];
        for (body, expected) in cases {
            let e = error(&body);
            assert!(e.starts_with(expected), "{e}");
            assert!(!e.contains(SECRET) && !e.contains("tiny-s3cret"), "{e}");
        }
        let unknown = Config::parse("t.toml", "[provider.app-push]\nurll = \"x\"\n").unwrap_err();
        assert!(
            unknown.to_string().contains("unknown field `urll`"),
            "{unknown}"
        );
    }

    #[test]
    fn ipv6_loopback_may_use_http_and_a_ca_is_kept() {
        let c = config(&format!(
            "url = \"http://[::1]:8443/push\"\nsecret = \"{SECRET}\"\nca = \"/etc/ca.pem\"\n"
        ));
        assert_eq!(c.settings().unwrap().trust, Trust::Ca("/etc/ca.pem".into()));
    }
}
