//! A fake company backend, for tests and demos only: it plays the company's side of the
//! README's "Company app push" contract. It serves `POST /push` and `POST /push/cancel` on
//! `127.0.0.1` (plain HTTP, or TLS with a given server config), checks idgate's signature and
//! request format on both, and, as scripted per person or phone number, calls idgate's
//! callback URL back with a signed result after a short delay. It keeps no state on disk and
//! is not hardened: never expose it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::client::{http_client, signed_post};
use super::config::Trust;
use super::signature::{SIGNATURE_HEADER, SigningKey, TIMESTAMP_HEADER, unix_now};
use crate::identity::{E164, PersonalNumber};

/// The person an approved push by phone number completes as (Skatteverket's test person).
const PHONE_PERSON: &str = "191212121212";
/// The name sent with every approval.
const NAME: &str = "Tolvan Tolvansson";
/// The signature skew the fake accepts, seconds.
const MAX_SKEW_SECS: u64 = 300;

/// How the fake answers one subject's pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeOutcome {
    /// Calls back `approved` with the requested person (for a phone push, 191212121212).
    Approve,
    /// Calls back `approved` with this other person (for `mismatch` tests).
    ApproveAs(PersonalNumber),
    /// Calls back `declined`.
    Decline,
    /// Calls back `not-in-call`.
    NotInCall,
    /// Calls back `expired`.
    Expired,
    /// Calls back `failed`.
    Fail,
    /// Accepts the push and never calls back (idgate's own timeout ends the order).
    NoCallback,
    /// Answers the push with 500.
    ServerError,
    /// Answers the push with 409 (rate limited).
    Busy,
}

/// How to start the fake.
#[derive(Debug, Clone)]
pub struct FakeSettings {
    /// The shared secret (as in `provider.app-push.secret`).
    pub secret: String,
    /// idgate's callback URL, e.g. `http://127.0.0.1:8080/v1/app-push/callback`. Plain HTTP.
    pub callback_url: String,
    /// Delay between a push and its callback.
    pub delay: Duration,
}

/// A push request as idgate sent it (checked against the README's format).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceivedPush {
    /// `order`.
    pub order: Uuid,
    /// `call`.
    pub call: Uuid,
    /// `caller`, E.164 or null.
    #[serde(deserialize_with = "caller")]
    pub caller: Option<E164>,
    /// `personal_number`, 12 digits or null.
    #[serde(deserialize_with = "person")]
    pub personal_number: Option<PersonalNumber>,
    /// `language`.
    pub language: String,
}

fn caller<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<E164>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|raw| {
            let parsed = E164::parse(&raw, "SE").ok().filter(|p| p.as_str() == raw);
            parsed.ok_or_else(|| serde::de::Error::custom("caller is not E.164"))
        })
        .transpose()
}

fn person<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PersonalNumber>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|raw| match PersonalNumber::parse(&raw) {
            Ok(p) if p.as_digits() == raw => Ok(p),
            _ => Err(serde::de::Error::custom("personal_number is not 12 digits")),
        })
        .transpose()
}

/// A cancel request as idgate sent it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceivedCancel {
    order: Uuid,
    call: Uuid,
}

/// What the fake shares between its handlers and its handle.
struct Shared {
    key: SigningKey,
    callback_url: Url,
    delay: Duration,
    client: reqwest::Client,
    scripts: Mutex<HashMap<String, FakeOutcome>>,
    pushes: Mutex<Vec<ReceivedPush>>,
    cancels: AtomicUsize,
    refused: AtomicUsize,
    stop: CancellationToken,
}

/// A running fake backend; dropping it stops the server and any pending callbacks.
pub struct FakeBackend {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for FakeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBackend")
            .field("url", &self.url)
            .finish()
    }
}

impl FakeBackend {
    /// Starts the fake on plain HTTP at `127.0.0.1`, on a free port.
    pub async fn start(settings: FakeSettings) -> std::io::Result<FakeBackend> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Self::shared(settings)?;
        let app = router(Arc::clone(&shared));
        let stop = shared.stop.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::debug!(error = %e, "fake app backend stopped");
            }
        });
        Ok(Self::handle("http", addr, shared, server))
    }

    /// Starts the fake on HTTPS at `127.0.0.1` with `tls` (e.g. `TestPki::server_config`).
    pub async fn start_tls(
        settings: FakeSettings,
        tls: rustls::ServerConfig,
    ) -> std::io::Result<FakeBackend> {
        let shared = Self::shared(settings)?;
        let (addr, server) =
            crate::verify::tls::serve_tls(router(Arc::clone(&shared)), tls).await?;
        Ok(Self::handle("https", addr, shared, server))
    }

    fn shared(settings: FakeSettings) -> std::io::Result<Arc<Shared>> {
        let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
        let key =
            SigningKey::new(settings.secret.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        let callback_url =
            Url::parse(&settings.callback_url).map_err(|e| invalid(e.to_string()))?;
        let client = http_client(&Trust::Loopback, Duration::from_secs(5))
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Arc::new(Shared {
            key,
            callback_url,
            delay: settings.delay,
            client,
            scripts: Mutex::default(),
            pushes: Mutex::default(),
            cancels: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        }))
    }

    fn handle(scheme: &str, addr: SocketAddr, shared: Arc<Shared>, server: JoinHandle<()>) -> Self {
        let url = format!("{scheme}://{addr}/push");
        FakeBackend {
            url,
            shared,
            server,
        }
    }

    /// The push URL to configure as `provider.app-push.url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How pushes to this person are answered from now on (default: [`FakeOutcome::Approve`]).
    pub fn script_person(&self, person: &PersonalNumber, outcome: FakeOutcome) {
        self.script(person.as_digits().to_owned(), outcome);
    }

    /// How pushes by this phone number are answered from now on.
    pub fn script_phone(&self, phone: &E164, outcome: FakeOutcome) {
        self.script(phone.as_str().to_owned(), outcome);
    }

    fn script(&self, subject: String, outcome: FakeOutcome) {
        let mut scripts = self
            .shared
            .scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        scripts.insert(subject, outcome);
    }

    /// Every push accepted so far (signature and format checked), oldest first.
    pub fn pushes(&self) -> Vec<ReceivedPush> {
        let pushes = self
            .shared
            .pushes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pushes.clone()
    }

    /// How many signed cancel requests arrived.
    pub fn cancels(&self) -> usize {
        self.shared.cancels.load(Ordering::SeqCst)
    }

    /// How many requests were refused (bad or missing signature, stale, bad body).
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        self.server.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/push", post(push))
        .route("/push/cancel", post(cancel))
        .with_state(shared)
}

impl Shared {
    /// Checks the signature and parses the body; counts and logs refusals.
    fn accept<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<T, StatusCode> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let signed = self.key.verify(
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            body,
            unix_now(),
            MAX_SKEW_SECS,
        );
        let result = match signed {
            Err(e) => Err((StatusCode::UNAUTHORIZED, e.to_string())),
            Ok(_) => {
                serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
            }
        };
        result.map_err(|(status, why)| {
            self.refused.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(%status, why, "fake app backend refused a request");
            status
        })
    }

    fn outcome(&self, push: &ReceivedPush) -> FakeOutcome {
        let subject = match (&push.personal_number, &push.caller) {
            (Some(p), _) => p.as_digits().to_owned(),
            (None, Some(c)) => c.as_str().to_owned(),
            (None, None) => String::new(),
        };
        let scripts = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        scripts
            .get(&subject)
            .cloned()
            .unwrap_or(FakeOutcome::Approve)
    }
}

async fn push(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let push: ReceivedPush = match shared.accept(&headers, &body) {
        Ok(push) => push,
        Err(status) => return status,
    };
    let outcome = shared.outcome(&push);
    let order = push.order;
    let requested = push.personal_number.clone();
    shared
        .pushes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(push);
    let callback = match outcome {
        FakeOutcome::ServerError => return StatusCode::INTERNAL_SERVER_ERROR,
        FakeOutcome::Busy => return StatusCode::CONFLICT,
        FakeOutcome::NoCallback => return StatusCode::ACCEPTED,
        FakeOutcome::Approve => approved(
            order,
            requested.as_ref().map_or(PHONE_PERSON, |p| p.as_digits()),
        ),
        FakeOutcome::ApproveAs(p) => approved(order, p.as_digits()),
        FakeOutcome::Decline => json!({ "order": order, "status": "declined" }),
        FakeOutcome::NotInCall => json!({ "order": order, "status": "not-in-call" }),
        FakeOutcome::Expired => json!({ "order": order, "status": "expired" }),
        FakeOutcome::Fail => json!({ "order": order, "status": "failed" }),
    };
    tokio::spawn(call_back(shared, callback));
    StatusCode::ACCEPTED
}

fn approved(order: Uuid, person: &str) -> serde_json::Value {
    json!({ "order": order, "status": "approved", "personal_number": person, "name": NAME })
}

/// Sends one signed callback after the delay, unless the fake stops first.
async fn call_back(shared: Arc<Shared>, body: serde_json::Value) {
    tokio::select! {
        () = shared.stop.cancelled() => return,
        () = tokio::time::sleep(shared.delay) => {}
    }
    let body = body.to_string().into_bytes();
    let request = signed_post(
        &shared.client,
        &shared.key,
        shared.callback_url.clone(),
        body,
    );
    match request.send().await {
        Ok(r) => tracing::debug!(status = %r.status(), "fake app backend called back"),
        Err(e) => tracing::warn!(error = %e, "fake app backend could not call back"),
    }
}

async fn cancel(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    match shared.accept::<ReceivedCancel>(&headers, &body) {
        Ok(ReceivedCancel { order, call }) => {
            tracing::debug!(%order, %call, "fake app backend: cancel");
            shared.cancels.fetch_add(1, Ordering::SeqCst);
            StatusCode::NO_CONTENT
        }
        Err(status) => status,
    }
}

#[cfg(test)]
impl crate::verify::contract::FakeControl for FakeBackend {
    fn script(&self, person: &PersonalNumber, outcome: crate::verify::contract::Scripted) {
        use crate::verify::contract::Scripted;
        let outcome = match outcome {
            Scripted::Approve => FakeOutcome::Approve,
            Scripted::Decline => FakeOutcome::Decline,
            Scripted::NotInCall => FakeOutcome::NotInCall,
            Scripted::Expire => FakeOutcome::NoCallback,
            Scripted::ServerError => FakeOutcome::ServerError,
        };
        self.script_person(person, outcome);
    }

    fn cancelled(&self) -> usize {
        self.cancels()
    }
}
