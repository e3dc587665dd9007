//! The company's CRM as the customer directory: `GET <url with the caller number>` answered
//! 200 `{"personal_number": "...", "name": "..."}` (a customer) or 404 (not a customer).
//! Anything else, or no answer within the timeout, is a failure. Answers, customers and
//! "not a customer" alike, are cached for `cache_secs`.
//!
//! The HTTP client is reqwest on rustls with the `ring` provider passed explicitly, trusting
//! the system's roots (rustls-platform-verifier), as the app-push client does.

use std::time::{Duration, Instant};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::DirectoryEntry;
use super::cache::{Answer, Cache};
use crate::config::{DirectoryConfig, NUMBER_PLACEHOLDER, Token};
use crate::identity::{E164, PersonName, PersonalNumber};
use crate::verify::SetupError;
use crate::verify::tls::{self, Trust};

/// The most answers kept in the cache.
const CACHE_CAPACITY: usize = 10_000;
/// The largest answer body read; a customer record is far smaller.
const MAX_BODY: usize = 64 * 1024;

/// Why the CRM gave no usable answer. Never holds the caller number or a personal number.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// No answer within `directory.timeout_ms`.
    #[error("the CRM did not answer in time")]
    Timeout,
    /// The request could not be sent or the answer not read (connection, TLS).
    #[error("CRM request failed: {0}")]
    Request(String),
    /// An HTTP status other than 200 and 404.
    #[error("the CRM answered {0}")]
    Status(StatusCode),
    /// A 200 answer that is not the documented JSON, or holds an invalid personal number.
    #[error("the CRM's answer is not usable: {0}")]
    Body(&'static str),
    /// The configured URL with the number in it is not a URL.
    #[error("directory.url does not give a URL: {0}")]
    Url(String),
}

/// The CRM's 200 answer. Other fields are ignored.
#[derive(Debug, Deserialize)]
struct Found {
    personal_number: String,
    #[serde(default)]
    name: Option<String>,
}

/// The CRM directory: a client, the URL template, and the cache.
#[derive(Debug)]
pub struct Crm {
    client: reqwest::Client,
    template: String,
    bearer: Option<Token>,
    cache: Cache,
}

impl Crm {
    /// A CRM directory for `config` (`kind = "crm"`).
    pub fn new(config: &DirectoryConfig) -> Result<Self, SetupError> {
        let invalid = |key, detail: String| SetupError::Invalid { key, detail };
        let template = config
            .url
            .clone()
            .ok_or_else(|| invalid("directory.url", "required when kind = \"crm\"".into()))?;
        if config.timeout_ms == 0 {
            return Err(invalid("directory.timeout_ms", "must be above 0".into()));
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        Ok(Self {
            client: http_client(timeout, template.starts_with("https:"))?,
            template,
            bearer: config.bearer_token.clone(),
            cache: Cache::new(Duration::from_secs(config.cache_secs), CACHE_CAPACITY),
        })
    }

    /// The customer `number` belongs to, `None` if the CRM says it is no customer's.
    pub async fn lookup(&self, number: &E164) -> Result<Answer, CrmError> {
        if let Some(answer) = self.cache.get(number, Instant::now()) {
            return Ok(answer);
        }
        let answer = self.fetch(number).await?;
        self.cache
            .put(number.clone(), answer.clone(), Instant::now());
        Ok(answer)
    }

    /// Asks the CRM.
    async fn fetch(&self, number: &E164) -> Result<Answer, CrmError> {
        let mut request = self.client.get(self.url(number)?);
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token.expose());
        }
        let mut response = request.send().await.map_err(request_error)?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            other => return Err(CrmError::Status(other)),
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(CrmError::Body("larger than 64 KiB"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_found(&body).map(Some)
    }

    /// The lookup URL for `number`.
    fn url(&self, number: &E164) -> Result<Url, CrmError> {
        let encoded = utf8_percent_encode(number.as_str(), NON_ALPHANUMERIC).to_string();
        let raw = self.template.replace(NUMBER_PLACEHOLDER, &encoded);
        Url::parse(&raw).map_err(|e| CrmError::Url(e.to_string()))
    }
}

/// The entry in a 200 answer.
fn parse_found(body: &[u8]) -> Result<DirectoryEntry, CrmError> {
    let found: Found = serde_json::from_slice(body)
        .map_err(|_| CrmError::Body("not JSON with a personal_number string"))?;
    let personal_number = PersonalNumber::parse(&found.personal_number)
        .map_err(|_| CrmError::Body("personal_number is not a valid personal identity number"))?;
    let name = found
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
        .map(PersonName::new);
    Ok(DirectoryEntry {
        personal_number,
        name,
    })
}

/// A reqwest error as a [`CrmError`], without the URL (it holds the caller number).
fn request_error(e: reqwest::Error) -> CrmError {
    if e.is_timeout() {
        return CrmError::Timeout;
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    CrmError::Request(text)
}

/// The CRM's HTTP client: system roots for `https`, none for plain `http` (loopback only,
/// checked with the config). See [`tls::http_client`].
fn http_client(timeout: Duration, https: bool) -> Result<reqwest::Client, SetupError> {
    let trust = if https {
        Trust::System
    } else {
        Trust::Loopback
    };
    tls::http_client(&trust, timeout, "directory.url")
}
