//! The HTTP side towards the company backend: a reqwest client on rustls with the `ring`
//! provider passed explicitly (no process-wide `CryptoProvider` needed), and the two signed
//! requests idgate sends: the push and its cancel.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Serialize;
use uuid::Uuid;

use super::config::{Settings, Trust};
use super::signature::{SIGNATURE_HEADER, SigningKey, TIMESTAMP_HEADER, unix_now};
use crate::verify::tls;
use crate::verify::{Failure, SetupError, Subject, VerifyRequest};

/// The push request body (README, "Company app push").
#[derive(Debug, Serialize)]
struct PushBody<'a> {
    order: Uuid,
    call: Uuid,
    caller: Option<&'a str>,
    personal_number: Option<&'a str>,
    language: &'a str,
}

/// The cancel request body.
#[derive(Debug, Serialize)]
struct CancelBody {
    order: Uuid,
    call: Uuid,
}

/// The company backend, as idgate calls it.
#[derive(Debug)]
pub(super) struct Backend {
    client: reqwest::Client,
    push_url: Url,
    cancel_url: Url,
    key: SigningKey,
}

impl Backend {
    /// A client for the configured backend.
    pub fn new(settings: &Settings) -> Result<Self, SetupError> {
        Ok(Self {
            client: http_client(&settings.trust, settings.request_timeout)?,
            push_url: settings.push_url.clone(),
            cancel_url: settings.cancel_url.clone(),
            key: settings.key.clone(),
        })
    }

    /// Sends the push for `order`. 2xx: accepted; 409: the backend refuses (rate limit, or a
    /// push already in progress for this person); anything else: a provider failure.
    pub async fn push(&self, order: Uuid, request: &VerifyRequest) -> Result<(), Failure> {
        let (caller, personal_number) = match &request.subject {
            Subject::Phone(phone) => (Some(phone.as_str()), None),
            Subject::Person(person) => (None, Some(person.as_digits())),
        };
        let body = PushBody {
            order,
            call: request.call_id,
            caller,
            personal_number,
            language: request.language,
        };
        let status = self
            .post(&self.push_url, &body)
            .await
            .map_err(|e| Failure::Provider(format!("push request failed: {}", describe(e))))?;
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::CONFLICT => Err(Failure::RateLimited),
            s => Err(Failure::Provider(format!(
                "the backend answered the push with {s}"
            ))),
        }
    }

    /// Tells the backend to withdraw the push. Best effort: the outcome is only logged.
    pub async fn cancel(&self, order: Uuid, call: Uuid) {
        let body = CancelBody { order, call };
        match self.post(&self.cancel_url, &body).await {
            Ok(s) if s.is_success() => tracing::debug!(%order, "app-push order cancelled"),
            Ok(s) => tracing::warn!(%order, status = %s, "the backend refused the cancel"),
            Err(e) => tracing::warn!(%order, error = describe(e), "cancel request failed"),
        }
    }

    /// POSTs `body` as signed JSON; returns the status.
    async fn post(&self, url: &Url, body: &impl Serialize) -> Result<StatusCode, reqwest::Error> {
        // Serialising these plain structs cannot fail; an empty body would be refused anyway.
        let body = serde_json::to_vec(body).unwrap_or_default();
        let response = signed_post(&self.client, &self.key, url.clone(), body)
            .send()
            .await?;
        Ok(response.status())
    }
}

/// A request error with its causes ("error sending request: ...: Connection refused"), without
/// the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A POST of `body` (JSON) signed with `key` at the current time.
pub(crate) fn signed_post(
    client: &reqwest::Client,
    key: &SigningKey,
    url: Url,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let timestamp = unix_now();
    client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, key.sign(timestamp, &body))
        .body(body)
}

/// The app backend's HTTP client (see [`tls::http_client`]).
pub(crate) fn http_client(trust: &Trust, timeout: Duration) -> Result<reqwest::Client, SetupError> {
    tls::http_client(trust, timeout, "provider.app-push.ca")
}
