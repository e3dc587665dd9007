//! Freja provider tests: the contract suite and Freja specifics against the local fake, over
//! mutual TLS, every wait bounded.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::time::timeout;
use uuid::Uuid;

use super::api::{self, AuthResult, DetailsPayload, RequestedAttributes, SsnUserInfo, Status};
use super::client::CallError;
use super::fake::{FakeFreja, FakeOutcome, FakeTimings};
use super::order::{Step, step};
use super::{Freja, FrejaConfig};
use crate::config::{Config, ProviderKind};
use crate::identity::{E164, PersonalNumber};
use crate::verify::tls::{TestPki, client_config};
use crate::verify::{Failure, Hint, Provider, SetupError, Subject, VerifyRequest, VerifyUpdate};

/// The fake at test pace.
const FAST: FakeTimings = FakeTimings {
    delivered_after: Duration::from_millis(30),
    final_after: Duration::from_millis(150),
    cooldown: Duration::from_millis(500),
};

/// Bound on any single wait in these tests.
const LIMIT: Duration = Duration::from_secs(10);

/// A fake with mTLS, and a config pointing at it with certificate files on disk.
struct Setup {
    pki: TestPki,
    fake: FakeFreja,
    config: FrejaConfig,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let pki = TestPki::generate();
    let fake = FakeFreja::start(pki.server_config(true), FAST)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        Some(path)
    };
    let config = FrejaConfig {
        url: fake.url(),
        ca: write("ca.pem", &pki.server_ca_pem),
        client_cert: write("cert.pem", &pki.client_cert_pem),
        client_key: write("key.pem", &pki.client_key_pem),
        poll_interval_ms: 20,
        request_timeout_ms: 2000,
        ..FrejaConfig::default()
    };
    Setup {
        pki,
        fake,
        config,
        _dir: dir,
    }
}

fn pnr(digits: &str) -> PersonalNumber {
    PersonalNumber::parse(digits).unwrap()
}

fn start(freja: &Freja, subject: Subject) -> crate::verify::Verification {
    freja.start(VerifyRequest {
        call_id: Uuid::new_v4(),
        subject,
        language: "sv",
        intent: None,
    })
}

/// The last update of an order (bounded).
async fn outcome(freja: &Freja, subject: Subject) -> VerifyUpdate {
    let mut order = start(freja, subject);
    let mut last = None;
    timeout(LIMIT, async {
        while let Some(update) = order.updates.recv().await {
            last = Some(update);
        }
    })
    .await
    .expect("the order ended in time");
    last.expect("at least one update")
}

#[tokio::test]
async fn the_contract_suite_passes_over_mtls() {
    let s = setup().await;
    let freja = Freja::new(&s.config).unwrap();
    assert!(freja.supports_phone());
    let people = [
        "198001019804",
        "199001011239",
        "197505051230",
        "198511112347",
        "196503034560",
    ];
    crate::verify::contract::run(&freja, &s.fake, people).await;
}

#[tokio::test]
async fn a_phone_push_completes_with_the_person_scripted_for_that_number() {
    let s = setup().await;
    let freja = Freja::new(&s.config).unwrap();
    let phone = E164::parse("070-123 45 67", "SE").unwrap();
    s.fake
        .script_phone(&phone, &pnr("191212121212"), FakeOutcome::Approve);
    let VerifyUpdate::Complete(person) = outcome(&freja, Subject::Phone(phone)).await else {
        panic!("not approved");
    };
    assert_eq!(person.personal_number, pnr("191212121212"));
    assert_eq!(person.name.unwrap().as_str(), "Tolvan Tolvansson");
    let init = &s.fake.requests()[0];
    assert_eq!(init.path, api::INIT_PATH);
    assert_eq!(init.json["userInfoType"], "PHONE");
    assert_eq!(init.json["userInfo"], "+46701234567");
    assert_eq!(init.json["minRegistrationLevel"], "EXTENDED");
    let attributes = serde_json::json!([{"attribute": "BASIC_USER_INFO"}, {"attribute": "SSN"}]);
    assert_eq!(init.json["attributesToReturn"], attributes);
}

#[tokio::test]
async fn an_ssn_push_sends_the_country_and_twelve_digits_in_base64() {
    let s = setup().await;
    let freja = Freja::new(&s.config).unwrap();
    let done = outcome(&freja, Subject::Person(pnr("198001019804"))).await;
    assert!(matches!(done, VerifyUpdate::Complete(_)), "{done:?}");
    let init = &s.fake.requests()[0];
    assert_eq!(init.json["userInfoType"], "SSN");
    let raw = STANDARD
        .decode(init.json["userInfo"].as_str().unwrap())
        .unwrap();
    let info: SsnUserInfo = serde_json::from_slice(&raw).unwrap();
    let expected = SsnUserInfo {
        country: "SE".into(),
        ssn: "198001019804".into(),
    };
    assert_eq!(info, expected);
    assert!(
        !format!("{info:?}").contains("198001019804"),
        "Debug is redacted"
    );
}

#[test]
fn basic_registration_level_is_refused_naming_the_key() {
    let text =
        "[provider]\nkind = \"freja\"\n[provider.freja]\nmin_registration_level = \"BASIC\"\n";
    let err = Config::parse("test.toml", text).unwrap_err().to_string();
    assert!(
        err.contains("provider.freja.min_registration_level"),
        "{err}"
    );
    let ok = "[provider]\nkind = \"freja\"\n[provider.freja]\nmin_registration_level = \"PLUS\"\n\
              poll_interval_ms = 500\ncountry = \"SE\"\n";
    let config = Config::parse("test.toml", ok).unwrap().provider;
    assert_eq!(config.kind, ProviderKind::Freja);
    assert_eq!(
        config.freja.min_registration_level,
        api::RegistrationLevel::Plus
    );
    assert_eq!(config.freja.url, "https://services.test.frejaeid.com");
    for bad in [
        "url = \"http://x\"",
        "country = \"se\"",
        "poll_interval_ms = 0",
        "pin = 1",
    ] {
        let text = format!("[provider.freja]\n{bad}\n");
        assert!(Config::parse("test.toml", &text).is_err(), "{bad}");
    }
}

#[test]
fn missing_certificate_files_are_named_by_key() {
    let err = Freja::new(&FrejaConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            SetupError::Invalid {
                key: "provider.freja.ca",
                ..
            }
        ),
        "{err}"
    );
    let config = FrejaConfig {
        ca: Some("/nonexistent/ca.pem".into()),
        client_cert: Some("/nonexistent/cert.pem".into()),
        client_key: Some("/nonexistent/key.pem".into()),
        ..FrejaConfig::default()
    };
    let err = Freja::new(&config).unwrap_err();
    assert!(
        matches!(
            err,
            SetupError::File {
                key: "provider.freja.ca",
                ..
            }
        ),
        "{err}"
    );
}

/// POSTs `body` to the fake with a certified client; the status and body.
async fn raw_post(s: &Setup, method: reqwest::Method, path: &str, body: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(s.pki.client_config())
        .timeout(LIMIT)
        .build()
        .unwrap();
    let url = format!("{}{path}", s.fake.url());
    let response = client
        .request(method, url)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn freja_code(body: &str) -> u64 {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    json["code"].as_u64().unwrap()
}

#[tokio::test]
async fn the_fake_validates_bodies_strictly() {
    let s = setup().await;
    let post = reqwest::Method::POST;
    let b64 = |json: &str| STANDARD.encode(json);
    let ssn = b64(r#"{"country":"SE","ssn":"198001019804"}"#);
    let cases = [
        ("initAuthRequest=***not-base64***".to_owned(), 1010),
        (format!("initAuthRequest={}", b64("[1,2]")), 1010),
        (format!("getOneAuthResultRequest={}", b64("{}")), 1000),
        (
            format!(
                "initAuthRequest={}",
                b64(r#"{"userInfoType":"EMAIL","userInfo":"a@b"}"#)
            ),
            1001,
        ),
        (
            format!(
                "initAuthRequest={}",
                b64(&format!(r#"{{"userInfoType":"SSN","userInfo":"{ssn}"}}"#))
            ),
            1007,
        ),
        (
            format!(
                "initAuthRequest={}",
                b64(
                    r#"{"userInfoType":"PHONE","userInfo":"0701234567","minRegistrationLevel":"PLUS"}"#
                )
            ),
            1002,
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = raw_post(&s, post.clone(), api::INIT_PATH, &body).await;
        assert_eq!((status, freja_code(&answer)), (400, code), "{body}");
    }
    let unknown_ref = format!("getOneAuthResultRequest={}", b64(r#"{"authRef":"nope"}"#));
    let (status, answer) = raw_post(&s, post.clone(), api::RESULT_PATH, &unknown_ref).await;
    assert_eq!((status, freja_code(&answer)), (400, 1100));
    let (status, _) = raw_post(&s, reqwest::Method::GET, api::INIT_PATH, "").await;
    assert_eq!(status, 405);
    let (status, _) = raw_post(&s, post, "/authentication/1.0/other", "").await;
    assert_eq!(status, 404);
    assert!(s.fake.requests().iter().all(|r| r.path != api::CANCEL_PATH));
}

#[tokio::test]
async fn concurrent_orders_for_one_person_cancel_both_then_rate_limit() {
    let s = setup().await;
    let freja = Freja::new(&s.config).unwrap();
    let who = || Subject::Person(pnr("199001011239"));
    s.fake
        .script_person(&pnr("199001011239"), FakeOutcome::Expire);
    let mut first = start(&freja, who());
    let sent = timeout(LIMIT, first.updates.recv()).await.unwrap();
    assert_eq!(sent, Some(VerifyUpdate::Pending(Hint::Sent)));
    // The second order cancels both at Freja (RP_CANCELED): a provider error for each.
    let second = outcome(&freja, who()).await;
    assert!(
        matches!(second, VerifyUpdate::Failed(Failure::Provider(_))),
        "{second:?}"
    );
    let first_end = timeout(LIMIT, async {
        let mut last = None;
        while let Some(update) = first.updates.recv().await {
            last = Some(update);
        }
        last
    })
    .await
    .unwrap();
    assert!(
        matches!(first_end, Some(VerifyUpdate::Failed(Failure::Provider(_)))),
        "{first_end:?}"
    );
    // Right after, Freja refuses further orders for that person (error 2000).
    let third = outcome(&freja, who()).await;
    assert_eq!(third, VerifyUpdate::Failed(Failure::RateLimited));
}

#[tokio::test]
async fn dropping_an_order_cancels_it_at_freja() {
    let s = setup().await;
    let freja = Freja::new(&s.config).unwrap();
    s.fake
        .script_person(&pnr("197505051230"), FakeOutcome::Expire);
    let mut order = start(&freja, Subject::Person(pnr("197505051230")));
    let sent = timeout(LIMIT, order.updates.recv()).await.unwrap();
    assert_eq!(sent, Some(VerifyUpdate::Pending(Hint::Sent)));
    // The authRef is known by the first update (for the audit trail).
    assert_eq!(order.order_ref().get(), Some("fake-auth-ref-1"));
    drop(order);
    timeout(LIMIT, async {
        while s.fake.cancelled_count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the cancel reached the fake");
    let cancel = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == api::CANCEL_PATH);
    assert_eq!(cancel.unwrap().json["authRef"], "fake-auth-ref-1");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let s = setup().await;
    let anonymous = client_config(s.pki.server_ca_pem.as_bytes(), None).unwrap();
    let freja = Freja::with_tls(&s.config, anonymous).unwrap();
    let done = outcome(&freja, Subject::Person(pnr("198511112347"))).await;
    assert!(
        matches!(done, VerifyUpdate::Failed(Failure::Provider(_))),
        "{done:?}"
    );
    assert!(s.fake.requests().is_empty());
}

fn result(status: Status, details: Option<String>) -> AuthResult {
    AuthResult {
        auth_ref: "r1".into(),
        status,
        details,
    }
}

fn details(auth_ref: &str, ssn: Option<&str>) -> String {
    api::unsigned_jws(&DetailsPayload {
        auth_ref: auth_ref.into(),
        status: Status::Approved,
        requested_attributes: RequestedAttributes {
            basic_user_info: None,
            ssn: ssn.map(|s| SsnUserInfo {
                country: "SE".into(),
                ssn: s.into(),
            }),
        },
    })
}

#[test]
fn statuses_and_errors_map_as_documented() {
    let failed = |f| Step::Done(VerifyUpdate::Failed(f));
    assert_eq!(
        step(&result(Status::Started, None), "SE"),
        Step::Pending(Hint::Sent)
    );
    let delivered = step(&result(Status::DeliveredToMobile, None), "SE");
    assert_eq!(delivered, Step::Pending(Hint::Sent));
    assert_eq!(
        step(&result(Status::Canceled, None), "SE"),
        failed(Failure::Declined)
    );
    assert_eq!(
        step(&result(Status::Rejected, None), "SE"),
        failed(Failure::Provider("rejected by Freja".to_owned()))
    );
    assert_eq!(
        step(&result(Status::Expired, None), "SE"),
        failed(Failure::Timeout)
    );
    let rp = step(&result(Status::RpCanceled, None), "SE");
    assert!(matches!(
        rp,
        Step::Done(VerifyUpdate::Failed(Failure::Provider(_)))
    ));
    assert_eq!(CallError::Freja(2000).failure(), Failure::RateLimited);
    assert!(matches!(
        CallError::Freja(1100).failure(),
        Failure::Provider(_)
    ));
    assert!(matches!(
        CallError::Http(503).failure(),
        Failure::Provider(_)
    ));
}

#[test]
fn an_approval_needs_matching_details_with_a_personal_number() {
    let approved = |d: Option<String>| step(&result(Status::Approved, d), "SE");
    let Step::Done(VerifyUpdate::Complete(p)) = approved(Some(details("r1", Some("191212121212"))))
    else {
        panic!("not complete");
    };
    assert_eq!((p.personal_number, p.name), (pnr("191212121212"), None));
    for bad in [
        None,
        Some("not.a-jws".to_owned()),
        Some(details("other-ref", Some("191212121212"))),
        Some(details("r1", None)),
        Some(details("r1", Some("191212121213"))),
    ] {
        let step = approved(bad.clone());
        assert!(
            matches!(step, Step::Done(VerifyUpdate::Failed(Failure::Provider(_)))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        step(
            &result(Status::Approved, Some(details("r1", Some("191212121212")))),
            "NO"
        ),
        Step::Done(VerifyUpdate::Failed(Failure::Provider(_)))
    ));
}
