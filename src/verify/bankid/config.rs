//! `[provider.bankid]`: where BankID's RP API is, the RP certificate, and what the app shows.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::verify::SetupError;

/// BankID's test environment (RP API v6.0).
pub const TEST_URL: &str = "https://appapi2.test.bankid.com/rp/v6.0/";

/// The most `userVisibleData` may hold, in characters after base64 encoding (RP API v6).
pub const MAX_VISIBLE_DATA: usize = 1500;

/// `[provider.bankid]`: settings of the BankID provider, used when `kind = "bankid"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BankIdConfig {
    /// Base URL of the RP API v6.0, ending in `/rp/v6.0/`: production
    /// `"https://appapi2.bankid.com/rp/v6.0/"`. Default the test environment
    /// `"https://appapi2.test.bankid.com/rp/v6.0/"`.
    pub url: String,
    /// PEM file with the RP client certificate (leaf first, chain after) that BankID issued to
    /// the company (for tests: BankID's published test RP certificate, as PEM). Required.
    pub client_cert: Option<PathBuf>,
    /// PEM file with the private key of `client_cert` (unencrypted PKCS#8, PKCS#1 or SEC1).
    /// Required.
    pub client_key: Option<PathBuf>,
    /// PEM file with BankID's server CA certificate for the environment in `url` (test and
    /// production differ). Only this CA is trusted, not the system roots. Required.
    pub ca: Option<PathBuf>,
    /// Milliseconds between two `collect` calls while an order is pending. BankID asks for
    /// 2000. Default `2000`.
    pub poll_interval_ms: u64,
    /// Milliseconds one request to BankID may take, connecting included. Default `5000`.
    pub request_timeout_ms: u64,
    /// Text the BankID app shows (the intent) when the route's language is Swedish (any
    /// language but `"en"`): name the company and say that the caller called you.
    /// `simpleMarkdownV1`; at most 1500 characters once base64-encoded. Default `"Du har ringt
    /// till vår kundtjänst. Vi ringer aldrig upp och ber dig identifiera dig."`.
    pub intent_sv: String,
    /// The same text for routes in English (`"en"`). Default `"You called our customer service.
    /// We never call you and ask you to identify yourself."`.
    pub intent_en: String,
    /// Whether the person must use their PIN (not face or fingerprint): `requirement.pinCode`.
    /// Default `false`.
    pub pin_code: bool,
}

impl Default for BankIdConfig {
    fn default() -> Self {
        Self {
            url: TEST_URL.to_owned(),
            client_cert: None,
            client_key: None,
            ca: None,
            poll_interval_ms: 2000,
            request_timeout_ms: 5000,
            intent_sv: "Du har ringt till vår kundtjänst. Vi ringer aldrig upp och ber dig \
                        identifiera dig."
                .to_owned(),
            intent_en: "You called our customer service. We never call you and ask you to \
                        identify yourself."
                .to_owned(),
            pin_code: false,
        }
    }
}

/// The checked settings an order needs (everything but the TLS files).
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// The base URL, ending in `/`.
    pub url: reqwest::Url,
    /// Between two collects.
    pub poll_interval: Duration,
    /// Per request.
    pub request_timeout: Duration,
    /// `userVisibleData` for Swedish routes, already base64.
    pub intent_sv: String,
    /// `userVisibleData` for English routes, already base64.
    pub intent_en: String,
    /// `requirement.pinCode`.
    pub pin_code: bool,
}

impl Settings {
    /// The base64 intent for a route language.
    pub fn intent(&self, language: &str) -> &str {
        if language == "en" {
            &self.intent_en
        } else {
            &self.intent_sv
        }
    }
}

/// An invalid-setting error for `provider.bankid.<key>`.
fn invalid(key: &'static str, detail: impl Into<String>) -> SetupError {
    SetupError::Invalid {
        key,
        detail: detail.into(),
    }
}

impl BankIdConfig {
    /// Checks everything but the files and returns the settings orders use.
    pub(super) fn settings(&self) -> Result<Settings, SetupError> {
        Ok(Settings {
            url: base_url(&self.url)?,
            poll_interval: millis("provider.bankid.poll_interval_ms", self.poll_interval_ms)?,
            request_timeout: millis(
                "provider.bankid.request_timeout_ms",
                self.request_timeout_ms,
            )?,
            intent_sv: intent("provider.bankid.intent_sv", &self.intent_sv)?,
            intent_en: intent("provider.bankid.intent_en", &self.intent_en)?,
            pin_code: self.pin_code,
        })
    }
}

/// An `https` URL, with a trailing `/` added so relative paths join below it.
fn base_url(raw: &str) -> Result<reqwest::Url, SetupError> {
    const KEY: &str = "provider.bankid.url";
    let with_slash = if raw.ends_with('/') {
        raw.to_owned()
    } else {
        format!("{raw}/")
    };
    let url = reqwest::Url::parse(&with_slash).map_err(|e| invalid(KEY, e.to_string()))?;
    if url.scheme() != "https" {
        return Err(invalid(
            KEY,
            "must be an https URL (BankID uses mutual TLS)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(KEY, "must not have a query or fragment"));
    }
    Ok(url)
}

/// A positive number of milliseconds, at most an hour.
fn millis(key: &'static str, ms: u64) -> Result<Duration, SetupError> {
    if ms == 0 || ms > 3_600_000 {
        return Err(invalid(key, format!("{ms} must be between 1 and 3600000")));
    }
    Ok(Duration::from_millis(ms))
}

/// The intent text, base64-encoded, checked for BankID's length limit.
fn intent(key: &'static str, text: &str) -> Result<String, SetupError> {
    if text.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    let encoded = BASE64.encode(text.as_bytes());
    if encoded.len() > MAX_VISIBLE_DATA {
        let detail = format!(
            "is {} characters once base64-encoded; BankID takes at most {MAX_VISIBLE_DATA}",
            encoded.len()
        );
        return Err(invalid(key, detail));
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BankIdConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_are_the_test_environment_and_two_second_polling() {
        let config = parse("").unwrap();
        assert_eq!(config, BankIdConfig::default());
        let settings = config.settings().unwrap();
        assert_eq!(settings.url.as_str(), TEST_URL);
        assert_eq!(settings.poll_interval, Duration::from_secs(2));
        assert_eq!(settings.request_timeout, Duration::from_secs(5));
        let sv = BASE64.decode(settings.intent("sv")).unwrap();
        assert!(String::from_utf8(sv).unwrap().starts_with("Du har ringt"));
        let en = BASE64.decode(settings.intent("en")).unwrap();
        assert!(String::from_utf8(en).unwrap().starts_with("You called"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = parse("pincode = true").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases = [
            ("url = \"http://example.com/\"", "provider.bankid.url"),
            ("url = \"not a url\"", "provider.bankid.url"),
            ("poll_interval_ms = 0", "provider.bankid.poll_interval_ms"),
            (
                "request_timeout_ms = 0",
                "provider.bankid.request_timeout_ms",
            ),
            ("intent_sv = \" \"", "provider.bankid.intent_sv"),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap().settings().unwrap_err();
            assert!(err.to_string().starts_with(key), "{text}: {err}");
        }
        let long = format!("intent_en = \"{}\"", "x".repeat(1200));
        let err = parse(&long).unwrap().settings().unwrap_err();
        assert!(
            err.to_string().starts_with("provider.bankid.intent_en"),
            "{err}"
        );
    }

    #[test]
    fn a_url_without_a_trailing_slash_gets_one() {
        let config = parse("url = \"https://127.0.0.1:8443/rp/v6.0\"").unwrap();
        let url = config.settings().unwrap().url;
        assert_eq!(url.join("collect").unwrap().path(), "/rp/v6.0/collect");
    }
}
