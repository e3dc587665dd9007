//! `[provider.freja]`: where Freja eID is, the relying-party certificate, and how to poll.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::api::RegistrationLevel;

/// Freja's test environment (`FrejaEnvironment.TEST` in Freja's Java client); production is
/// `https://services.prod.frejaeid.com`.
pub const TEST_URL: &str = "https://services.test.frejaeid.com";

/// `[provider.freja]`: settings of the Freja eID provider, used when `kind = "freja"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrejaConfig {
    /// Base URL of Freja's relying-party API, `https://` without a trailing path. Default
    /// `"https://services.test.frejaeid.com"` (the test environment); production is
    /// `"https://services.prod.frejaeid.com"`.
    #[serde(deserialize_with = "https_url")]
    pub url: String,
    /// PEM file with the relying-party client certificate Freja issued to the company (chain
    /// allowed). Required when `kind = "freja"`.
    pub client_cert: Option<PathBuf>,
    /// PEM file with the private key of `client_cert` (PKCS#8, PKCS#1 or SEC1). Required when
    /// `kind = "freja"`.
    pub client_key: Option<PathBuf>,
    /// PEM file with the CA certificate(s) that Freja's server certificate must chain to (only
    /// these are trusted, not the system roots). Required when `kind = "freja"`.
    pub ca: Option<PathBuf>,
    /// Lowest Freja registration level accepted: `"EXTENDED"` (identity checked against an ID
    /// document) or `"PLUS"` (also checked in person). `"BASIC"` is refused: it is not
    /// identity-proofed. Default `"EXTENDED"`.
    #[serde(deserialize_with = "proofed_level")]
    pub min_registration_level: RegistrationLevel,
    /// Milliseconds between two `getOneResult` polls. Default `2000`.
    #[serde(deserialize_with = "positive_ms")]
    pub poll_interval_ms: u64,
    /// Milliseconds one HTTP request to Freja may take (connect included). Default `5000`.
    #[serde(deserialize_with = "positive_ms")]
    pub request_timeout_ms: u64,
    /// Country of the personal identity numbers pushes are addressed to (ISO 3166-1 alpha-2).
    /// Default `"SE"` (idgate's personal identity numbers are Swedish).
    #[serde(deserialize_with = "country_code")]
    pub country: String,
}

impl Default for FrejaConfig {
    fn default() -> Self {
        Self {
            url: TEST_URL.to_owned(),
            client_cert: None,
            client_key: None,
            ca: None,
            min_registration_level: RegistrationLevel::Extended,
            poll_interval_ms: 2000,
            request_timeout_ms: 5000,
            country: "SE".to_owned(),
        }
    }
}

fn https_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    let url = raw.trim_end_matches('/');
    let host = url.strip_prefix("https://").unwrap_or_default();
    if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
        return Err(serde::de::Error::custom(format!(
            "provider.freja.url: {raw:?} must be https://host[:port] without a path"
        )));
    }
    Ok(url.to_owned())
}

fn proofed_level<'de, D: Deserializer<'de>>(d: D) -> Result<RegistrationLevel, D::Error> {
    match RegistrationLevel::deserialize(d)? {
        RegistrationLevel::Basic => Err(serde::de::Error::custom(
            "provider.freja.min_registration_level: BASIC is not identity-proofed; use \
             EXTENDED or PLUS",
        )),
        level => Ok(level),
    }
}

fn positive_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match u64::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "provider.freja: poll_interval_ms and request_timeout_ms must be above 0",
        )),
        ms => Ok(ms),
    }
}

fn country_code<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(raw)
    } else {
        Err(serde::de::Error::custom(format!(
            "provider.freja.country: {raw:?} must be an ISO 3166-1 alpha-2 code such as \"SE\""
        )))
    }
}
