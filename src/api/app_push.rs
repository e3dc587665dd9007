//! `POST /v1/app-push/callback`: the company backend reports how an app-push order ended.
//! The checks (signature, timestamp, body, order) are [`Callbacks::deliver`]'s; this module
//! only turns its answer into HTTP and logs refusals as security events (the kind and, once
//! the signature is good, the order id: never the body or personal data).
//!
//! | outcome | status |
//! |---|---|
//! | accepted | 204 |
//! | unsigned, bad signature, stale timestamp | 401 |
//! | signed but not a valid callback | 400 |
//! | unknown order | 404 (also when app-push is not the configured provider) |
//! | order already answered, timed out or cancelled (a replay) | 409 |

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde_json::json;

use crate::call::Services;
use crate::verify::app_push::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, unix_now};
use crate::verify::app_push::{Callbacks, Refusal, SignedHeaders};

/// Callback bodies are a few hundred bytes; anything near this is not one.
const MAX_BODY: usize = 16 * 1024;

/// The route as mounted on the API router.
pub(super) fn route() -> MethodRouter<Arc<Services>> {
    post(from_services).layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn from_services(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match &services.app_push {
        Some(callbacks) => handle(callbacks, &headers, &body),
        None => {
            tracing::warn!(
                target: "idgate::security",
                reason = "not-configured",
                "app-push callback refused: app-push is not the configured provider"
            );
            refusal_response(StatusCode::NOT_FOUND, "unknown-order")
        }
    }
}

/// Checks one callback and answers it.
pub(super) fn handle(callbacks: &Callbacks, headers: &HeaderMap, body: &[u8]) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = SignedHeaders {
        timestamp: header(TIMESTAMP_HEADER),
        signature: header(SIGNATURE_HEADER),
    };
    match callbacks.deliver(signed, body, unix_now()) {
        Ok(order) => {
            tracing::debug!(%order, "app-push callback accepted");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => refuse(&refusal),
    }
}

/// Logs a refused callback as a security event and answers it.
fn refuse(refusal: &Refusal) -> Response {
    let status = match refusal {
        Refusal::Signature(_) => StatusCode::UNAUTHORIZED,
        Refusal::BadBody(_) => StatusCode::BAD_REQUEST,
        Refusal::UnknownOrder(_) => StatusCode::NOT_FOUND,
        Refusal::NotPending(_) => StatusCode::CONFLICT,
    };
    let order = refusal.order().map(tracing::field::display);
    tracing::warn!(
        target: "idgate::security",
        reason = refusal.kind(),
        order,
        %status,
        detail = %refusal,
        "app-push callback refused"
    );
    refusal_response(status, refusal.kind())
}

fn refusal_response(status: StatusCode, kind: &str) -> Response {
    (status, Json(json!({ "error": kind }))).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::post;
    use reqwest::StatusCode;
    use tokio::task::JoinHandle;
    use tokio::time::timeout;
    use uuid::Uuid;

    use super::*;
    use crate::identity::PersonalNumber;
    use crate::verify::app_push::fake::{FakeBackend, FakeOutcome, FakeSettings};
    use crate::verify::app_push::signature::SigningKey;
    use crate::verify::app_push::{AppPush, AppPushConfig, Secret};
    use crate::verify::{Hint, Provider, Subject, Verification, VerifyRequest, VerifyUpdate};

    const SECRET: &str = "api-test-secret-0123456789abcdef-012345";
    const PATH: &str = "/v1/app-push/callback";
    /// Every wait in these tests is bounded by this.
    const LIMIT: Duration = Duration::from_secs(10);

    /// idgate's callback endpoint (alone, on the hub), the fake backend calling it, and the
    /// provider pushing to the fake.
    struct Setup {
        provider: AppPush,
        fake: FakeBackend,
        callback_url: String,
        server: JoinHandle<()>,
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    async fn by_hub(
        State(callbacks): State<Callbacks>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        handle(&callbacks, &headers, &body)
    }

    async fn setup(order_timeout_secs: u64) -> Setup {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback_url = format!("http://{}{PATH}", listener.local_addr().unwrap());
        let fake = FakeBackend::start(FakeSettings {
            secret: SECRET.to_owned(),
            callback_url: callback_url.clone(),
            delay: Duration::from_millis(50),
        })
        .await
        .unwrap();
        let config = AppPushConfig {
            url: Some(fake.url().to_owned()),
            secret: Some(Secret::new(SECRET.to_owned())),
            order_timeout_secs,
            ..AppPushConfig::default()
        };
        let provider = AppPush::from_config(&config).unwrap();
        let app = Router::new()
            .route(PATH, post(by_hub).layer(DefaultBodyLimit::max(MAX_BODY)))
            .with_state(provider.callbacks());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Setup {
            provider,
            fake,
            callback_url,
            server,
        }
    }

    fn pnr(digits: &str) -> PersonalNumber {
        PersonalNumber::parse(digits).unwrap()
    }

    /// Starts an order the fake never answers; returns it and its order id.
    async fn pending_order(s: &Setup) -> (Verification, Uuid) {
        let person = pnr("198001019804");
        s.fake.script_person(&person, FakeOutcome::NoCallback);
        let call_id = Uuid::new_v4();
        let mut order = s.provider.start(VerifyRequest {
            call_id,
            subject: Subject::Person(person),
            language: "sv",
            intent: None,
        });
        let first = timeout(LIMIT, order.updates.recv()).await.unwrap();
        assert_eq!(first, Some(VerifyUpdate::Pending(Hint::Sent)));
        let push = s.fake.pushes().into_iter().find(|p| p.call == call_id);
        (order, push.unwrap().order)
    }

    /// POSTs `body` to the callback endpoint signed with `secret` at `timestamp` (or unsigned).
    async fn post_callback(s: &Setup, body: &str, signed: Option<(&str, u64)>) -> StatusCode {
        let mut request = reqwest_client().post(&s.callback_url).body(body.to_owned());
        if let Some((secret, ts)) = signed {
            let key = SigningKey::new(secret.as_bytes()).unwrap();
            request = request
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(SIGNATURE_HEADER, key.sign(ts, body.as_bytes()));
        }
        let response = timeout(LIMIT, request.send()).await.unwrap().unwrap();
        response.status()
    }

    fn reqwest_client() -> reqwest::Client {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap()
    }

    fn declined(order: Uuid) -> String {
        format!(r#"{{"order":"{order}","status":"declined"}}"#)
    }

    #[tokio::test]
    async fn the_provider_contract_holds_against_the_fake_backend() {
        let s = setup(1).await;
        let people = [
            "198001019804",
            "199001011239",
            "198507099805",
            "200001012384",
            "191212121212",
        ];
        crate::verify::contract::run(&s.provider, &s.fake, people).await;
        assert_eq!(
            s.fake.refused(),
            0,
            "every request idgate sent was signed correctly"
        );
    }

    #[tokio::test]
    async fn a_good_callback_ends_the_order_and_its_replay_is_409() {
        let s = setup(60).await;
        let (mut order, id) = pending_order(&s).await;
        let now = unix_now();
        assert_eq!(
            post_callback(&s, &declined(id), Some((SECRET, now))).await,
            204
        );
        let last = timeout(LIMIT, order.updates.recv()).await.unwrap();
        assert_eq!(
            last,
            Some(VerifyUpdate::Failed(crate::verify::Failure::Declined))
        );
        assert_eq!(
            post_callback(&s, &declined(id), Some((SECRET, now))).await,
            409
        );
    }

    #[tokio::test]
    async fn unsigned_badly_signed_and_stale_callbacks_are_401() {
        let s = setup(60).await;
        let (_order, id) = pending_order(&s).await;
        let body = declined(id);
        let now = unix_now();
        let wrong = "wrong-secret-0123456789abcdef-0123456789";
        assert_eq!(post_callback(&s, &body, None).await, 401);
        assert_eq!(post_callback(&s, &body, Some((wrong, now))).await, 401);
        assert_eq!(
            post_callback(&s, &body, Some((SECRET, now - 301))).await,
            401
        );
        assert_eq!(
            post_callback(&s, &body, Some((SECRET, now + 301))).await,
            401
        );
        assert_eq!(s.provider.callbacks().pending(), 1, "the order still waits");
    }

    #[tokio::test]
    async fn unknown_orders_are_404_and_bad_bodies_400() {
        let s = setup(60).await;
        let (_order, id) = pending_order(&s).await;
        let now = unix_now();
        let unknown = declined(Uuid::new_v4());
        assert_eq!(post_callback(&s, &unknown, Some((SECRET, now))).await, 404);
        let no_person = format!(r#"{{"order":"{id}","status":"approved"}}"#);
        assert_eq!(
            post_callback(&s, &no_person, Some((SECRET, now))).await,
            400
        );
        let big = " ".repeat(MAX_BODY + 1);
        assert_eq!(post_callback(&s, &big, Some((SECRET, now))).await, 413);
        assert_eq!(s.provider.callbacks().pending(), 1);
    }

    #[tokio::test]
    async fn a_callback_after_the_caller_hung_up_is_409() {
        let s = setup(60).await;
        let (order, id) = pending_order(&s).await;
        drop(order);
        let cancelled = timeout(LIMIT, async {
            while s.fake.cancels() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(
            cancelled.await.is_ok(),
            "the cancel never reached the backend"
        );
        let status = post_callback(&s, &declined(id), Some((SECRET, unix_now()))).await;
        assert_eq!(status, 409);
    }

    #[tokio::test]
    async fn a_callback_after_the_timeout_is_409() {
        let s = setup(1).await;
        let (mut order, id) = pending_order(&s).await;
        let last = timeout(LIMIT, order.updates.recv()).await.unwrap();
        assert_eq!(
            last,
            Some(VerifyUpdate::Failed(crate::verify::Failure::Timeout))
        );
        let status = post_callback(&s, &declined(id), Some((SECRET, unix_now()))).await;
        assert_eq!(status, 409);
    }
}
