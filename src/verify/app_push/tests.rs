//! Provider-side tests against the fake backend: the push request (format and signature),
//! the backend's refusals, idgate's own timeout, TLS with a private CA and the system roots.
//! Callbacks over HTTP, and the provider contract, are tested in `api::app_push`.

use std::time::Duration;

use tokio::time::timeout;

use super::fake::{FakeBackend, FakeOutcome, FakeSettings};
use super::*;
use crate::config::{ProviderConfig, ProviderKind};
use crate::identity::{E164, PersonalNumber};
use crate::verify::Subject;

pub(crate) const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

pub(crate) fn config(url: &str, order_timeout_secs: u64) -> AppPushConfig {
    AppPushConfig {
        url: Some(url.to_owned()),
        secret: Some(Secret::new(SECRET.to_owned())),
        request_timeout_ms: 2000,
        order_timeout_secs,
        ..AppPushConfig::default()
    }
}

/// A fake whose callbacks go nowhere (these tests need none).
async fn fake() -> FakeBackend {
    FakeBackend::start(FakeSettings {
        secret: SECRET.to_owned(),
        callback_url: "http://127.0.0.1:9/v1/app-push/callback".to_owned(),
        delay: Duration::from_millis(10),
    })
    .await
    .unwrap()
}

fn pnr(digits: &str) -> PersonalNumber {
    PersonalNumber::parse(digits).unwrap()
}

fn request(subject: Subject) -> VerifyRequest {
    VerifyRequest {
        call_id: Uuid::new_v4(),
        subject,
        language: "en",
        intent: None,
    }
}

async fn next(v: &mut Verification) -> Option<VerifyUpdate> {
    timeout(LIMIT, v.updates.recv())
        .await
        .expect("bounded wait")
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let waited = timeout(LIMIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never: {what}");
}

#[tokio::test]
async fn the_push_is_signed_and_carries_the_documented_fields() {
    let fake = fake().await;
    let person = pnr("198001019804");
    let phone = E164::parse("+46701234567", "SE").unwrap();
    fake.script_person(&person, FakeOutcome::NoCallback);
    fake.script_phone(&phone, FakeOutcome::NoCallback);
    let provider = AppPush::from_config(&config(fake.url(), 60)).unwrap();
    assert_eq!(
        (provider.method(), provider.supports_phone()),
        (Method::AppPush, true)
    );
    let by_person = request(Subject::Person(person.clone()));
    let by_phone = request(Subject::Phone(phone.clone()));
    let calls = [by_person.call_id, by_phone.call_id];
    let mut a = provider.start(by_person);
    let mut b = provider.start(by_phone);
    assert_eq!(next(&mut a).await, Some(VerifyUpdate::Pending(Hint::Sent)));
    assert_eq!(next(&mut b).await, Some(VerifyUpdate::Pending(Hint::Sent)));
    let pushes = fake.pushes();
    assert_eq!((pushes.len(), fake.refused()), (2, 0));
    let p = pushes.iter().find(|p| p.call == calls[0]).unwrap();
    assert_eq!((&p.personal_number, &p.caller), (&Some(person), &None));
    assert_eq!(p.language, "en");
    let q = pushes.iter().find(|p| p.call == calls[1]).unwrap();
    assert_eq!((&q.personal_number, &q.caller), (&None, &Some(phone)));
    assert_ne!(p.order, q.order);
    assert_eq!(provider.callbacks().pending(), 2);
}

#[tokio::test]
async fn no_callback_ends_as_timeout_and_withdraws_the_push() {
    let fake = fake().await;
    let person = pnr("198001019804");
    fake.script_person(&person, FakeOutcome::NoCallback);
    let provider = AppPush::from_config(&config(fake.url(), 1)).unwrap();
    let started = tokio::time::Instant::now();
    let mut order = provider.start(request(Subject::Person(person)));
    // idgate's own order id is the reference, known at once.
    let order_ref = order.order_ref().get().map(uuid::Uuid::parse_str);
    assert!(matches!(order_ref, Some(Ok(_))), "{order_ref:?}");
    assert_eq!(
        next(&mut order).await,
        Some(VerifyUpdate::Pending(Hint::Sent))
    );
    let last = next(&mut order).await;
    assert_eq!(last, Some(VerifyUpdate::Failed(Failure::Timeout)));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(next(&mut order).await, None);
    wait_until("the cancel reaches the backend", || fake.cancels() == 1).await;
    assert_eq!(provider.callbacks().pending(), 0);
}

#[tokio::test]
async fn backend_refusals_map_to_failures() {
    let fake = fake().await;
    let (busy, broken) = (pnr("198001019804"), pnr("199001011239"));
    fake.script_person(&busy, FakeOutcome::Busy);
    fake.script_person(&broken, FakeOutcome::ServerError);
    let provider = AppPush::from_config(&config(fake.url(), 60)).unwrap();
    let mut order = provider.start(request(Subject::Person(busy)));
    assert_eq!(
        next(&mut order).await,
        Some(VerifyUpdate::Failed(Failure::RateLimited))
    );
    let mut order = provider.start(request(Subject::Person(broken)));
    let last = next(&mut order).await;
    assert!(
        matches!(last, Some(VerifyUpdate::Failed(Failure::Provider(_)))),
        "{last:?}"
    );
    assert_eq!(provider.callbacks().pending(), 0);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_backend() {
    let fake = fake().await;
    let mut wrong = config(fake.url(), 60);
    wrong.secret = Some(Secret::new(
        "another-secret-0123456789abcdef-0123456".to_owned(),
    ));
    let provider = AppPush::from_config(&wrong).unwrap();
    let mut order = provider.start(request(Subject::Person(pnr("198001019804"))));
    let last = next(&mut order).await;
    let Some(VerifyUpdate::Failed(Failure::Provider(detail))) = last else {
        panic!("{last:?}");
    };
    assert!(detail.contains("401"), "{detail}");
    assert_eq!((fake.refused(), fake.pushes().len()), (1, 0));
}

#[tokio::test]
async fn an_unreachable_backend_fails_within_the_request_timeout() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/push");
    let provider = AppPush::from_config(&config(&url, 60)).unwrap();
    let mut order = provider.start(request(Subject::Person(pnr("198001019804"))));
    let last = next(&mut order).await;
    assert!(
        matches!(last, Some(VerifyUpdate::Failed(Failure::Provider(_)))),
        "{last:?}"
    );
}

#[tokio::test]
async fn https_with_a_private_ca_and_the_system_roots() {
    let pki = crate::verify::tls::TestPki::generate();
    let settings = FakeSettings {
        secret: SECRET.to_owned(),
        callback_url: "http://127.0.0.1:9/".to_owned(),
        delay: Duration::from_millis(10),
    };
    let fake = FakeBackend::start_tls(settings, pki.server_config(false))
        .await
        .unwrap();
    fake.script_person(&pnr("198001019804"), FakeOutcome::NoCallback);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.server_ca_pem).unwrap();
    let private = AppPushConfig {
        ca: Some(ca),
        ..config(fake.url(), 60)
    };
    let provider = AppPush::from_config(&private).unwrap();
    let mut order = provider.start(request(Subject::Person(pnr("198001019804"))));
    assert_eq!(
        next(&mut order).await,
        Some(VerifyUpdate::Pending(Hint::Sent))
    );
    // The system roots (rustls-platform-verifier on the ring provider, no process-wide
    // provider installed) load, and do not trust the test CA.
    let system = AppPush::from_config(&config(fake.url(), 60)).unwrap();
    let mut order = system.start(request(Subject::Person(pnr("198001019804"))));
    let last = next(&mut order).await;
    assert!(
        matches!(last, Some(VerifyUpdate::Failed(Failure::Provider(_)))),
        "{last:?}"
    );
    assert_eq!(fake.pushes().len(), 1);
}

#[tokio::test]
async fn a_missing_ca_file_is_named_by_its_key() {
    let cfg = AppPushConfig {
        ca: Some("/nonexistent/ca.pem".into()),
        ..config("https://backend.example/push", 60)
    };
    let e = AppPush::from_config(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("provider.app-push.ca: /nonexistent/ca.pem: "),
        "{e}"
    );
}

#[tokio::test]
async fn setup_hands_out_the_hub_only_for_app_push() {
    let setup = |c: &ProviderConfig| {
        crate::verify::from_config(c, tokio::sync::mpsc::unbounded_channel().0)
            .map(|configured| (configured.provider, configured.app_push))
    };
    let (simulator, hub) = setup(&ProviderConfig::default()).unwrap();
    assert_eq!(
        (simulator.method(), hub.is_none()),
        (Method::Simulator, true)
    );
    let app_push = ProviderConfig {
        kind: ProviderKind::AppPush,
        app_push: config("https://backend.example/push", 60),
        ..ProviderConfig::default()
    };
    let (provider, hub) = setup(&app_push).unwrap();
    assert_eq!((provider.method(), hub.is_some()), (Method::AppPush, true));
    let missing_url = ProviderConfig {
        app_push: AppPushConfig::default(),
        ..app_push
    };
    let e = setup(&missing_url).err().unwrap().to_string();
    assert!(e.starts_with("provider.app-push.url: required"), "{e}");
}
