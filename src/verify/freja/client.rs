//! The HTTP side of Freja's Authentication Service: one method per endpoint, over mutual TLS,
//! with errors classified into what idgate reports. Bodies are never logged.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{
    AuthRef, AuthResult, CANCEL_PARAM, CANCEL_PATH, ERROR_REQUEST_IN_A_ROW, ErrorBody, INIT_PARAM,
    INIT_PATH, InitAuthRequest, RESULT_PARAM, RESULT_PATH, encode_body,
};
use crate::verify::Failure;

/// A request to Freja failed. Display texts carry no personal data and no bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Freja could not be reached, the TLS handshake failed, or the request timed out.
    #[error("transport: {0}")]
    Transport(String),
    /// Freja answered with an HTTP status and no Freja error body (5xx, 404, 405, ...).
    #[error("HTTP {0}")]
    Http(u16),
    /// Freja answered with its error body (`{"code", "message"}`).
    #[error("Freja error code {0}")]
    Freja(u32),
    /// A 200 answer that is not the JSON the endpoint returns.
    #[error("unexpected response body")]
    Decode,
}

impl CallError {
    /// How an order that hit this error ends: error code 2000 (requests for the same person in
    /// a row) is a rate limit, everything else a provider error.
    pub fn failure(&self) -> Failure {
        match self {
            CallError::Freja(ERROR_REQUEST_IN_A_ROW) => Failure::RateLimited,
            other => Failure::Provider(other.to_string()),
        }
    }
}

/// A client for one Freja environment.
#[derive(Debug, Clone)]
pub struct FrejaClient {
    http: reqwest::Client,
    base: String,
}

impl FrejaClient {
    /// A client for `base` (`https://host[:port]`) using `tls` (which should present the
    /// relying-party certificate), each request bounded by `timeout`.
    pub fn new(
        base: &str,
        tls: rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// `initAuthentication`: the new authentication's `authRef`.
    pub async fn init(&self, request: &InitAuthRequest) -> Result<String, CallError> {
        let answer: AuthRef = self.call(INIT_PATH, INIT_PARAM, request).await?;
        Ok(answer.auth_ref)
    }

    /// `getOneResult`: where the authentication stands.
    pub async fn get_one_result(&self, auth_ref: &str) -> Result<AuthResult, CallError> {
        let request = AuthRef {
            auth_ref: auth_ref.to_owned(),
        };
        let result: AuthResult = self.call(RESULT_PATH, RESULT_PARAM, &request).await?;
        if result.auth_ref == auth_ref {
            Ok(result)
        } else {
            Err(CallError::Decode)
        }
    }

    /// `cancel`: Freja answers 200 with `{}` or 204.
    pub async fn cancel(&self, auth_ref: &str) -> Result<(), CallError> {
        let request = AuthRef {
            auth_ref: auth_ref.to_owned(),
        };
        self.post(CANCEL_PATH, CANCEL_PARAM, &request)
            .await
            .map(drop)
    }

    /// POSTs and reads a JSON answer.
    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        param: &str,
        json: &impl Serialize,
    ) -> Result<T, CallError> {
        let body = self.post(path, param, json).await?;
        serde_json::from_slice(&body).map_err(|_| CallError::Decode)
    }

    /// POSTs `param=<base64 JSON>` the way Freja's own Java client does (`Content-Type:
    /// application/json`, the body not percent-encoded); the body of a 2xx answer, else the
    /// classified error.
    async fn post(
        &self,
        path: &str,
        param: &str,
        json: &impl Serialize,
    ) -> Result<Vec<u8>, CallError> {
        let body = encode_body(param, json).map_err(|_| CallError::Decode)?;
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        classify(status, bytes.to_vec())
    }
}

/// A 2xx body, or the error the answer means: a 4xx with Freja's error body is that error
/// code, anything else its HTTP status.
fn classify(status: StatusCode, body: Vec<u8>) -> Result<Vec<u8>, CallError> {
    if status.is_success() {
        return Ok(body);
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(error) if status.is_client_error() => Err(CallError::Freja(error.code)),
        _ => Err(CallError::Http(status.as_u16())),
    }
}

/// A transport error, described without the URL.
fn transport(error: reqwest::Error) -> CallError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    CallError::Transport(kind.to_owned())
}
