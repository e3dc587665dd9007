//! The HTTP side of the RP API: one `POST` per call over mutual TLS, every request bounded by
//! the request timeout, and errors classified by whether a retry can help.

use std::error::Error as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{self, CollectResponse, ErrorBody, OrderRef, PhoneAuthRequest};
use crate::verify::Failure;

/// A request to BankID did not give the answer we wanted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ApiError {
    /// No answer: connection refused, TLS refused, timeout, connection dropped.
    #[error("{0}")]
    Transport(String),
    /// BankID answered with an error status (`errorCode` from the body, sanitised).
    #[error("HTTP {status} {error_code}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// `errorCode`, or `(none)` if the body had none.
        error_code: String,
    },
    /// A 200 whose body is not what the API documents.
    #[error("unexpected response: {0}")]
    Body(String),
}

impl ApiError {
    /// Whether trying the same request again may work (while collecting).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Transport(_) => true,
            ApiError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            ApiError::Body(_) => false,
        }
    }

    /// The failure an order that ends with this error reports. `alreadyInProgress` (an order
    /// for this person runs elsewhere) is BankID's refusal, a `provider-error` as the product
    /// contract says; `rate-limited` is kept for idgate's own anti push-bombing limits and
    /// BankID's 429.
    pub fn failure(&self) -> Failure {
        match self {
            ApiError::Status { status: 429, .. } => Failure::RateLimited,
            other => Failure::Provider(format!("bankid: {other}")),
        }
    }
}

/// A client of one RP API base URL.
#[derive(Debug, Clone)]
pub(super) struct Api {
    http: reqwest::Client,
    base: reqwest::Url,
    timeout: Duration,
}

impl Api {
    /// A client over `tls` (which must trust BankID's CA and carry the RP certificate).
    pub fn new(
        base: reqwest::Url,
        tls: rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            base,
            timeout,
        })
    }

    /// `POST phone/auth`: the new order's `orderRef`.
    pub async fn phone_auth(&self, body: &PhoneAuthRequest) -> Result<String, ApiError> {
        let answer: OrderRef = self.post("phone/auth", body).await?;
        Ok(answer.order_ref)
    }

    /// `POST collect`.
    pub async fn collect(&self, order_ref: &str) -> Result<CollectResponse, ApiError> {
        self.post("collect", &order_body(order_ref)).await
    }

    /// `POST cancel`.
    pub async fn cancel(&self, order_ref: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self.post("cancel", &order_body(order_ref)).await?;
        Ok(())
    }

    /// One `POST` of a JSON body to `path` (relative to the base URL). `Content-Type` is set to
    /// exactly `application/json`: BankID answers 415 to a charset parameter.
    async fn post<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ApiError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| ApiError::Transport(format!("bad URL: {e}")))?;
        let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Body(e.to_string()))?;
        let response = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(bytes)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport(&e))?;
        if status != StatusCode::OK {
            return Err(status_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| body_error(path, &e))
    }

    /// A transport error, described without the URL's query or any body.
    fn transport(&self, error: &reqwest::Error) -> ApiError {
        if error.is_timeout() {
            let ms = self.timeout.as_millis();
            return ApiError::Transport(format!("no answer within {ms} ms"));
        }
        let mut detail = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        ApiError::Transport(detail)
    }
}

fn order_body(order_ref: &str) -> OrderRef {
    OrderRef {
        order_ref: order_ref.to_owned(),
    }
}

/// A 200 body that does not parse. serde_json's messages can quote values (a personal number),
/// so only the kind of error and where it is are kept.
fn body_error(path: &str, error: &serde_json::Error) -> ApiError {
    let (kind, line, column) = (error.classify(), error.line(), error.column());
    ApiError::Body(format!(
        "{path}: {kind:?} error at line {line} column {column}"
    ))
}

/// The error for a non-200 answer, with `errorCode` if the body has one.
fn status_error(status: StatusCode, body: &[u8]) -> ApiError {
    let error_code = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| api::token(&b.error_code))
        .unwrap_or_else(|_| "(none)".to_owned());
    ApiError::Status {
        status: status.as_u16(),
        error_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: &str) -> ApiError {
        ApiError::Status {
            status,
            error_code: code.to_owned(),
        }
    }

    #[test]
    fn already_in_progress_is_a_provider_error_and_429_a_rate_limit() {
        assert!(matches!(
            status(400, "alreadyInProgress").failure(),
            Failure::Provider(_)
        ));
        assert_eq!(status(429, "(none)").failure(), Failure::RateLimited);
        for (code, name) in [
            (400, "invalidParameters"),
            (401, "unauthorized"),
            (403, "unauthorized"),
            (404, "notFound"),
            (405, "methodNotAllowed"),
            (408, "requestTimeout"),
            (415, "unsupportedMediaType"),
            (500, "internalError"),
            (503, "maintenance"),
        ] {
            let failure = status(code, name).failure();
            let expected = Failure::Provider(format!("bankid: HTTP {code} {name}"));
            assert_eq!(failure, expected);
        }
        let timeout = ApiError::Transport("no answer within 5000 ms".to_owned());
        assert!(matches!(timeout.failure(), Failure::Provider(_)));
    }

    #[test]
    fn only_transport_errors_and_server_trouble_are_worth_retrying() {
        assert!(ApiError::Transport("refused".to_owned()).is_transient());
        for code in [408, 429, 500, 503] {
            assert!(status(code, "x").is_transient(), "{code}");
        }
        for code in [400, 401, 403, 404, 405, 415] {
            assert!(!status(code, "x").is_transient(), "{code}");
        }
        assert!(!ApiError::Body("x".to_owned()).is_transient());
    }

    #[test]
    fn unparsable_answers_do_not_echo_their_values() {
        let json = br#"{"orderRef":"x","status":"complete","completionData":{"user":{"personalNumber":198001010290}}}"#;
        let error = serde_json::from_slice::<CollectResponse>(json).unwrap_err();
        assert!(
            error.to_string().contains("198001010290"),
            "serde_json quotes it"
        );
        let reported = body_error("collect", &error).to_string();
        assert!(!reported.contains("0290"), "{reported}");
        assert!(
            reported.starts_with("unexpected response: collect: Data error"),
            "{reported}"
        );
    }

    #[test]
    fn error_codes_come_from_the_body_when_there_is_one() {
        let json = br#"{"errorCode":"alreadyInProgress","details":"Order already in progress"}"#;
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, json),
            status(400, "alreadyInProgress")
        );
        assert_eq!(
            status_error(StatusCode::BAD_GATEWAY, b"<html>"),
            status(502, "(none)")
        );
    }
}
