//! The BankID provider: RP API v6.0 `phone/auth` for inbound calls (`callInitiator: "user"`),
//! over mutual TLS with the company's RP certificate.
//!
//! An order is `POST phone/auth` (the person, the intent text in the route's language, the call
//! id as non-visible data), then `POST collect` every poll interval: pending hint codes become
//! [`Hint`](crate::verify::Hint)s (reported only when they change), failed ones
//! [`Failure`](crate::verify::Failure)s, and `complete` the person BankID vouches for, whoever
//! it is (the flow compares with the person asked for and reports `mismatch`). Cancelling or
//! dropping the [`Verification`] sends `POST cancel`. See `shared/BANKID-PHONE.md`.
//!
//! [`fake`] is a strict local fake of the API for tests and demos.

mod api;
mod client;
mod config;
pub mod fake;
mod order;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use api::Completion;
pub use config::{BankIdConfig, MAX_VISIBLE_DATA, TEST_URL};

use self::api::{PhoneAuthRequest, Requirement};
use self::client::Api;
use self::config::Settings;
use self::order::{CompletionSink, Order};
use crate::identity::Method;
use crate::verify::tls::{self, PemFile};
use crate::verify::{
    Failure, OrderRef, Provider, SetupError, Subject, Verification, VerifyRequest, VerifyUpdate,
};

/// The BankID provider. Cheap to clone; clones share the HTTP connection pool.
#[derive(Clone)]
pub struct BankId {
    api: Api,
    settings: Arc<Settings>,
    on_completion: Option<CompletionSink>,
}

impl std::fmt::Debug for BankId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankId")
            .field("url", &self.settings.url.as_str())
            .finish_non_exhaustive()
    }
}

impl BankId {
    /// The provider as `[provider.bankid]` says: reads the RP certificate, its key and
    /// BankID's CA from the configured PEM files. Errors name the config key (and the file).
    pub fn new(config: &BankIdConfig) -> Result<Self, SetupError> {
        let required = |key: &'static str, path: &Option<std::path::PathBuf>| {
            path.clone().ok_or(SetupError::Invalid {
                key,
                detail: "required when provider.kind = \"bankid\"".to_owned(),
            })
        };
        let cert = required("provider.bankid.client_cert", &config.client_cert)?;
        let key = required("provider.bankid.client_key", &config.client_key)?;
        let ca = required("provider.bankid.ca", &config.ca)?;
        let tls = tls::client_config_from_files(
            PemFile {
                key: "provider.bankid.ca",
                path: &ca,
            },
            Some((
                PemFile {
                    key: "provider.bankid.client_cert",
                    path: &cert,
                },
                PemFile {
                    key: "provider.bankid.client_key",
                    path: &key,
                },
            )),
        )
        .map_err(setup_error)?;
        Self::with_tls(config, tls)
    }

    /// The provider with a TLS client config built elsewhere (the fake's test PKI, say); the
    /// file settings of `config` are ignored.
    pub fn with_tls(config: &BankIdConfig, tls: rustls::ClientConfig) -> Result<Self, SetupError> {
        let settings = config.settings()?;
        let api = Api::new(settings.url.clone(), tls, settings.request_timeout).map_err(|e| {
            SetupError::Invalid {
                key: "provider.bankid",
                detail: format!("HTTP client: {e}"),
            }
        })?;
        Ok(Self {
            api,
            settings: Arc::new(settings),
            on_completion: None,
        })
    }

    /// Hands the evidence of every completed order ([`Completion`]) to `sink`, with the call
    /// id, before the `Complete` update is sent. For the audit store; nothing else is kept.
    pub fn on_completion(
        mut self,
        sink: impl Fn(Uuid, Completion) + Send + Sync + 'static,
    ) -> Self {
        self.on_completion = Some(Arc::new(sink));
        self
    }

    /// The `/phone/auth` body for `request`'s person.
    fn auth_request(&self, request: &VerifyRequest, person: &str) -> PhoneAuthRequest {
        PhoneAuthRequest {
            personal_number: person.to_owned(),
            call_initiator: "user",
            user_visible_data: match &request.intent {
                Some(text) => BASE64.encode(text.as_bytes()),
                None => self.settings.intent(request.language).to_owned(),
            },
            user_visible_data_format: "simpleMarkdownV1",
            user_non_visible_data: BASE64.encode(request.call_id.to_string()),
            requirement: self
                .settings
                .pin_code
                .then_some(Requirement { pin_code: true }),
        }
    }
}

/// A TLS error as a setup error, naming the config key.
fn setup_error(error: tls::TlsError) -> SetupError {
    match error {
        tls::TlsError::File { key, path, detail } => SetupError::File {
            key,
            path: path.display().to_string(),
            detail,
        },
        other => SetupError::Invalid {
            key: "provider.bankid",
            detail: other.to_string(),
        },
    }
}

impl Provider for BankId {
    fn method(&self) -> Method {
        Method::Bankid
    }

    fn supports_phone(&self) -> bool {
        false
    }

    fn start(&self, request: VerifyRequest) -> Verification {
        let (tx, rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let Subject::Person(person) = &request.subject else {
            let failure = Failure::Provider("bankid needs a personal identity number".to_owned());
            // The channel is new and empty: this cannot be full.
            let _ = tx.try_send(VerifyUpdate::Failed(failure));
            return Verification::new(rx, cancel);
        };
        let auth = self.auth_request(&request, person.as_digits());
        let order_ref = OrderRef::default();
        let order = Order {
            api: self.api.clone(),
            settings: Arc::clone(&self.settings),
            call_id: request.call_id,
            updates: tx,
            cancel: cancel.clone(),
            on_completion: self.on_completion.clone(),
            order_ref: order_ref.clone(),
        };
        tokio::spawn(order.run(auth));
        Verification::new(rx, cancel).with_order_ref(order_ref)
    }
}
