//! A strict local fake of BankID's RP API v6.0 (`phone/auth`, `collect`, `cancel`), for tests
//! and demos. Never used on a production path: [`BankId`](super::BankId) talks to it only when
//! pointed at it.
//!
//! Like the real service it speaks HTTPS with a **required** client certificate (signed by its
//! own test client CA, see [`TestPki`]), takes only `POST` (405 `methodNotAllowed`), only
//! `Content-Type: application/json` exactly (415 `unsupportedMediaType`, a charset included),
//! checks bodies (400 `invalidParameters`), refuses a second order for a person who has one
//! pending (400 `alreadyInProgress`; the pending one then fails with `cancelled`), and forgets
//! cancelled orders. Orders follow a script per person ([`FakeOutcome`]), one step per
//! [`FakeTiming::step`]; a pending order fails `expiredTransaction` after
//! [`FakeTiming::expiry`]. Every request is recorded ([`SeenRequest`]) for assertions.

mod orders;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

use self::orders::{Orders, error};
use super::BankIdConfig;
use crate::identity::PersonalNumber;
use crate::verify::tls::{self, TestPki};

/// The path the fake serves the API under, like BankID.
pub const BASE_PATH: &str = "/rp/v6.0/";

/// How fast orders move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeTiming {
    /// How long each scripted step lasts (the last one lasts until the order ends).
    pub step: Duration,
    /// How long an order may stay pending before it fails `expiredTransaction`.
    pub expiry: Duration,
}

impl Default for FakeTiming {
    /// Human speed, for demos: a step every 2 s, expiry after 3 minutes (as BankID).
    fn default() -> Self {
        Self {
            step: Duration::from_secs(2),
            expiry: Duration::from_secs(180),
        }
    }
}

impl FakeTiming {
    /// Test speed: a step every 20 ms, expiry after 300 ms.
    pub fn fast() -> Self {
        Self {
            step: Duration::from_millis(20),
            expiry: Duration::from_millis(300),
        }
    }
}

/// One step of a scripted order, as `/collect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeStep {
    /// `status: "pending"` with this `hintCode` (unknown codes are allowed: BankID adds some).
    Pending(String),
    /// `status: "failed"` with this `hintCode`.
    Failed(String),
    /// `status: "complete"`, with `completionData` for this person.
    Complete(PersonalNumber),
}

/// How a person's orders go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeOutcome {
    /// `outstandingTransaction`, `started`, `userCallConfirm`, then complete for that person.
    Approve,
    /// As `Approve`, but complete for another person.
    ApproveAs(PersonalNumber),
    /// `outstandingTransaction`, `started`, then failed `userCancel`.
    Decline,
    /// `outstandingTransaction`, `userCallConfirm`, then failed `userDeclinedCall`.
    NotInCall,
    /// `outstandingTransaction` until [`FakeTiming::expiry`], then `expiredTransaction`.
    Expire,
    /// `/phone/auth` answers 500 `internalError`.
    ServerError,
    /// These steps, one per [`FakeTiming::step`].
    Steps(Vec<FakeStep>),
}

impl FakeOutcome {
    /// The steps of an order for `person` (12 digits). Not meaningful for `ServerError`.
    fn steps(self, person: &str) -> Vec<FakeStep> {
        let pending = |hint: &str| FakeStep::Pending(hint.to_owned());
        let failed = |hint: &str| FakeStep::Failed(hint.to_owned());
        let approve = |who: PersonalNumber| {
            let confirm = ["outstandingTransaction", "started", "userCallConfirm"];
            let mut steps: Vec<FakeStep> = confirm.into_iter().map(pending).collect();
            steps.push(FakeStep::Complete(who));
            steps
        };
        match self {
            FakeOutcome::Approve => match PersonalNumber::parse(person) {
                Ok(who) => approve(who),
                // 12 digits that are not a valid number: BankID would not know the person.
                Err(_) => vec![pending("outstandingTransaction")],
            },
            FakeOutcome::ApproveAs(who) => approve(who),
            FakeOutcome::Decline => vec![
                pending("outstandingTransaction"),
                pending("started"),
                failed("userCancel"),
            ],
            FakeOutcome::NotInCall => vec![
                pending("outstandingTransaction"),
                pending("userCallConfirm"),
                failed("userDeclinedCall"),
            ],
            FakeOutcome::Expire | FakeOutcome::ServerError => {
                vec![pending("outstandingTransaction")]
            }
            FakeOutcome::Steps(steps) => steps,
        }
    }
}

/// A request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The URL path, e.g. `/rp/v6.0/collect`.
    pub path: String,
    /// The `Content-Type` header as sent, if any.
    pub content_type: Option<String>,
    /// The body as text (test data only: this is a fake).
    pub body: String,
}

/// The fake's shared state.
struct Shared {
    timing: FakeTiming,
    orders: Mutex<Orders>,
    requests: Mutex<Vec<SeenRequest>>,
}

impl Shared {
    fn orders(&self) -> MutexGuard<'_, Orders> {
        self.orders.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requests(&self) -> MutexGuard<'_, Vec<SeenRequest>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake, serving on `127.0.0.1` until dropped.
pub struct FakeBankId {
    shared: Arc<Shared>,
    addr: SocketAddr,
    pki: TestPki,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for FakeBankId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBankId")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeBankId {
    /// Starts a fake with a fresh [`TestPki`] on a free port.
    pub async fn start(timing: FakeTiming) -> std::io::Result<Self> {
        let pki = TestPki::generate();
        let shared = Arc::new(Shared {
            timing,
            orders: Mutex::new(Orders::default()),
            requests: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (addr, server) = tls::serve_tls(router, pki.server_config(true)).await?;
        Ok(Self {
            shared,
            addr,
            pki,
            server,
        })
    }

    /// The API's base URL, `https://127.0.0.1:<port>/rp/v6.0/`.
    pub fn url(&self) -> String {
        format!("https://{}{BASE_PATH}", self.addr)
    }

    /// The address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fake's certificates (server CA to trust, client certificate to present).
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// A TLS client config that trusts the fake and presents its test RP certificate.
    pub fn client_tls(&self) -> rustls::ClientConfig {
        self.pki.client_config()
    }

    /// `[provider.bankid]` pointing at the fake (the TLS files are not set: build the provider
    /// with [`BankId::with_tls`](super::BankId::with_tls) and [`Self::client_tls`]).
    pub fn config(&self) -> BankIdConfig {
        BankIdConfig {
            url: self.url(),
            ..BankIdConfig::default()
        }
    }

    /// How `person`'s orders go from now on (unscripted persons: [`FakeOutcome::Approve`]).
    pub fn script(&self, person: &PersonalNumber, outcome: FakeOutcome) {
        self.shared
            .orders()
            .script(person.as_digits().to_owned(), outcome);
    }

    /// How many orders were cancelled with `/cancel`.
    pub fn cancelled(&self) -> usize {
        self.shared.orders().cancelled
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.requests().clone()
    }

    /// How many requests went to `endpoint` (`"phone/auth"`, `"collect"`, `"cancel"`).
    pub fn count(&self, endpoint: &str) -> usize {
        let path = format!("{BASE_PATH}{endpoint}");
        self.shared
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

impl Drop for FakeBankId {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Every request: recorded, then checked like BankID checks it, then dispatched.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    shared.requests().push(SeenRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        content_type: content_type.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let endpoint = uri.path().strip_prefix(BASE_PATH).unwrap_or_default();
    let (status, json) = if !matches!(endpoint, "phone/auth" | "collect" | "cancel") {
        error(StatusCode::NOT_FOUND, "notFound", "no such endpoint")
    } else if method != Method::POST {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "methodNotAllowed",
            "only POST",
        )
    } else if content_type.as_deref() != Some("application/json") {
        let details = "Content-Type must be application/json, without parameters";
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupportedMediaType",
            details,
        )
    } else {
        let timing = &shared.timing;
        let mut orders = shared.orders();
        match endpoint {
            "phone/auth" => orders.auth(&body, timing),
            "collect" => orders.collect(&body, timing),
            _ => orders.cancel(&body),
        }
    };
    (status, axum::Json(json)).into_response()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
impl crate::verify::contract::FakeControl for FakeBankId {
    fn script(&self, person: &PersonalNumber, outcome: crate::verify::contract::Scripted) {
        use crate::verify::contract::Scripted;
        let outcome = match outcome {
            Scripted::Approve => FakeOutcome::Approve,
            Scripted::Decline => FakeOutcome::Decline,
            Scripted::NotInCall => FakeOutcome::NotInCall,
            Scripted::Expire => FakeOutcome::Expire,
            Scripted::ServerError => FakeOutcome::ServerError,
        };
        FakeBankId::script(self, person, outcome);
    }

    fn cancelled(&self) -> usize {
        FakeBankId::cancelled(self)
    }
}
