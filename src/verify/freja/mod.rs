//! The Freja eID provider: pushes an authentication to the caller's Freja eID app, addressed by
//! personal identity number (`userInfoType: SSN`) or by the number they called from
//! (`userInfoType: PHONE`), and polls for the result.
//!
//! # Freja facts this module relies on, and where they come from
//!
//! Sources: Freja's relying-party documentation ("Authentication Service", "Authentication
//! Service - Other userInfoType", "Authentication in Organisation ID Service" at
//! frejaeid.atlassian.net/wiki/spaces/DOC), and Freja's own Java client
//! (github.com/Freja-eID/frejaeidclient: `FrejaEnvironment`, `MethodUrl`, `RequestTemplate`,
//! `HttpService`, `UserInfoUtil`, `TransactionStatus`, `FrejaEidErrorCode`,
//! `RequestedAttributes`, `BasicUserInfo`, `FrejaHttpErrorResponse`); IDkollen's Freja error
//! page (developers.idkollen.se/docs/frejaErrors) for error 2000.
//!
//! - Base URLs: test `https://services.test.frejaeid.com`, production
//!   `https://services.prod.frejaeid.com` (`FrejaEnvironment`). Mutual TLS with the relying
//!   party's client certificate.
//! - `POST /authentication/1.0/initAuthentication`, `/authentication/1.0/getOneResult`,
//!   `/authentication/1.0/cancel` (`MethodUrl`). The body is one parameter holding standard
//!   base64 of UTF-8 JSON: `initAuthRequest=`, `getOneAuthResultRequest=`, `cancelAuthRequest=`
//!   (`RequestTemplate`). Freja's Java client sends that body with `Content-Type:
//!   application/json` and the base64 not percent-encoded (`HttpService.send`); idgate sends
//!   exactly the same bytes, since that is what Freja's server is known to accept.
//! - `initAuthRequest`: `userInfoType` (`EMAIL`, `PHONE`, `SSN`, `UPI`, `INFERRED`),
//!   `userInfo` (max 256 characters), `minRegistrationLevel` (`BASIC`, `EXTENDED`, `PLUS`;
//!   SSN needs `EXTENDED` or `PLUS`), `attributesToReturn: [{"attribute": "BASIC_USER_INFO"},
//!   {"attribute": "SSN"}]`. For `SSN`, `userInfo` is base64 of `{"country": "SE", "ssn":
//!   "YYYYMMDDNNNN"}` (`UserInfoUtil`); for `PHONE` it is `+4673...`: a leading `+`, no trunk
//!   `0`, i.e. E.164 ("Other userInfoType" page). No text is shown to the user for an
//!   authentication, so the route language is not sent.
//! - The answer is `{"authRef": "..."}`; `getOneResult` and `cancel` take `{"authRef"}`.
//! - `getOneResult` answers `{authRef, status, details?, requestedAttributes?}`; `status` is
//!   `STARTED`, `DELIVERED_TO_MOBILE`, or final `CANCELED` (the user declined), `RP_CANCELED`
//!   (a relying party cancelled), `EXPIRED`, `APPROVED`, `REJECTED` (rejected for security
//!   reasons) (`TransactionStatus`). `details` is a JWS signed by Freja whose payload repeats
//!   `authRef`, `status` and `requestedAttributes` (`basicUserInfo {name, surname}`, `ssn
//!   {ssn, country}`).
//! - The user has at most two minutes; only one authentication per user may be active, and a
//!   second concurrent one (from any relying party) cancels both. Errors are HTTP 400/422 with
//!   `{"code", "message"}`: 1000 invalid parameters, 1001 userInfoType, 1002 userInfo, 1007
//!   minRegistrationLevel, 1010 JSON, 1012 no such user, 1100 invalid reference, 2000 previous
//!   request rejected for security reasons ("several requests in a row for the same person",
//!   IDkollen), 2002 attributesToReturn.
//!
//! # Mapping
//!
//! See [`order::step`] and [`client::CallError::failure`]: `STARTED`/`DELIVERED_TO_MOBILE` →
//! `Pending(Sent)`, `APPROVED` → `Complete` (SSN and name from the `details` payload),
//! `CANCELED` → `Declined`, `REJECTED` → `Provider` (Freja refused the request for its own
//! security reasons; Freja has no "not in a call" answer), `EXPIRED` → `Timeout`, `RP_CANCELED` → `Provider`, error 2000 →
//! `RateLimited`, any other error → `Provider`. The `details` signature is **not verified
//! yet** (follow-up: verify against Freja's published signing certificate, by `x5t`).

pub mod api;
pub mod client;
pub mod config;
pub mod fake;
pub mod order;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::FrejaConfig;

use self::api::{ATTRIBUTES, AttributeToReturn, InitAuthRequest, SsnUserInfo, UserInfoType};
use self::client::FrejaClient;
use super::tls::{PemFile, TlsError, client_config_from_files};
use super::{OrderRef, Provider, SetupError, Subject, Verification, VerifyRequest};
use crate::identity::Method;

/// The Freja eID provider. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Freja {
    client: Arc<FrejaClient>,
    config: Arc<FrejaConfig>,
}

impl Freja {
    /// The provider `[provider.freja]` describes: reads the CA, client certificate and key.
    pub fn new(config: &FrejaConfig) -> Result<Self, SetupError> {
        let path = |key: &'static str, path: &Option<std::path::PathBuf>| {
            path.clone().ok_or(SetupError::Invalid {
                key,
                detail: "required when provider.kind = \"freja\"".to_owned(),
            })
        };
        let ca = path("provider.freja.ca", &config.ca)?;
        let cert = path("provider.freja.client_cert", &config.client_cert)?;
        let key = path("provider.freja.client_key", &config.client_key)?;
        let file = |key, path| PemFile { key, path };
        let tls = client_config_from_files(
            file("provider.freja.ca", &ca),
            Some((
                file("provider.freja.client_cert", &cert),
                file("provider.freja.client_key", &key),
            )),
        )
        .map_err(setup_error)?;
        Self::with_tls(config, tls)
    }

    /// The provider with a ready TLS client config (tests, demos against the fake); the
    /// certificate paths in `config` are ignored.
    pub fn with_tls(config: &FrejaConfig, tls: rustls::ClientConfig) -> Result<Self, SetupError> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let client =
            FrejaClient::new(&config.url, tls, timeout).map_err(|e| SetupError::Invalid {
                key: "provider.freja",
                detail: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            client: Arc::new(client),
            config: Arc::new(config.clone()),
        })
    }

    /// The `initAuthRequest` for `subject`.
    fn init_request(&self, subject: &Subject) -> InitAuthRequest {
        let (user_info_type, user_info) = match subject {
            Subject::Person(p) => {
                let ssn = SsnUserInfo {
                    country: self.config.country.clone(),
                    ssn: p.as_digits().to_owned(),
                };
                (UserInfoType::Ssn, ssn.encode())
            }
            Subject::Phone(number) => (UserInfoType::Phone, number.as_str().to_owned()),
        };
        InitAuthRequest {
            user_info_type,
            user_info,
            min_registration_level: self.config.min_registration_level,
            attributes_to_return: ATTRIBUTES
                .iter()
                .map(|a| AttributeToReturn {
                    attribute: (*a).to_owned(),
                })
                .collect(),
        }
    }
}

/// A TLS set-up error as a [`SetupError`], naming the config key.
fn setup_error(e: TlsError) -> SetupError {
    match e {
        TlsError::File { key, path, detail } => SetupError::File {
            key,
            path: path.display().to_string(),
            detail,
        },
        other => SetupError::Invalid {
            key: "provider.freja",
            detail: other.to_string(),
        },
    }
}

impl Provider for Freja {
    fn method(&self) -> Method {
        Method::Freja
    }

    fn supports_phone(&self) -> bool {
        true
    }

    fn start(&self, request: VerifyRequest) -> Verification {
        let by = match request.subject {
            Subject::Person(_) => "ssn",
            Subject::Phone(_) => "phone",
        };
        tracing::debug!(call = %request.call_id, by, "freja order");
        let order = order::Order {
            client: Arc::clone(&self.client),
            request: self.init_request(&request.subject),
            poll_interval: Duration::from_millis(self.config.poll_interval_ms),
            country: self.config.country.clone(),
            call_id: request.call_id,
            order_ref: OrderRef::default(),
        };
        let order_ref = order.order_ref.clone();
        let (tx, rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        tokio::spawn(order::run(order, tx, cancel.clone()));
        Verification::new(rx, cancel).with_order_ref(order_ref)
    }
}
