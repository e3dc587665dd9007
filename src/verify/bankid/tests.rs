//! The BankID provider against its fake, over mutual TLS on loopback. Every wait is bounded.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::time::{Instant, timeout};
use uuid::Uuid;

use super::fake::{FakeBankId, FakeOutcome, FakeStep, FakeTiming};
use super::*;
use crate::identity::PersonalNumber;
use crate::verify::Hint;

/// Five valid personal numbers (date + Luhn).
pub(super) const PEOPLE: [&str; 5] = [
    "198001010290",
    "198112280295",
    "198502020210",
    "199003030237",
    "197507070246",
];

/// Longest any single wait in these tests may take.
const LIMIT: Duration = Duration::from_secs(10);

/// Fake timing where orders stay at their first step for the whole test.
const STILL: FakeTiming = FakeTiming {
    step: LIMIT,
    expiry: LIMIT,
};

pub(super) fn pnr(digits: &str) -> PersonalNumber {
    PersonalNumber::parse(digits).unwrap()
}

/// A fake and a provider polling it every `poll_ms`.
async fn setup(poll_ms: u64, timing: FakeTiming) -> (FakeBankId, BankId) {
    let fake = FakeBankId::start(timing).await.unwrap();
    let config = BankIdConfig {
        poll_interval_ms: poll_ms,
        request_timeout_ms: 2000,
        ..fake.config()
    };
    let provider = BankId::with_tls(&config, fake.client_tls()).unwrap();
    (fake, provider)
}

fn request(who: &PersonalNumber, language: &'static str) -> VerifyRequest {
    VerifyRequest {
        call_id: Uuid::new_v4(),
        subject: Subject::Person(who.clone()),
        language,
        intent: None,
    }
}

/// Every update until the channel closes.
async fn all_updates(mut order: Verification) -> Vec<VerifyUpdate> {
    let mut out = Vec::new();
    let done = timeout(LIMIT, async {
        while let Some(update) = order.updates.recv().await {
            out.push(update);
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "updates did not end within {LIMIT:?}: {out:?}"
    );
    out
}

/// Waits until `condition` holds, polling; panics after `LIMIT`.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_contract_holds_against_the_fake_over_mtls() {
    let (fake, provider) = setup(10, FakeTiming::fast()).await;
    assert_eq!(
        (provider.method(), provider.supports_phone()),
        (Method::Bankid, false)
    );
    crate::verify::contract::run(&provider, &fake, PEOPLE).await;
}

#[tokio::test]
async fn requests_are_json_without_charset_and_carry_the_call() {
    let (fake, provider) = setup(10, FakeTiming::fast()).await;
    let who = pnr(PEOPLE[0]);
    let order = request(&who, "en");
    let call_id = order.call_id;
    let updates = all_updates(provider.start(order)).await;
    assert!(
        matches!(updates.last(), Some(VerifyUpdate::Complete(_))),
        "{updates:?}"
    );
    let seen = fake.requests();
    assert!(seen.len() >= 2, "{seen:?}");
    for r in &seen {
        assert_eq!(
            (r.method.as_str(), r.content_type.as_deref()),
            ("POST", Some("application/json"))
        );
    }
    let auth: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(seen[0].path, "/rp/v6.0/phone/auth");
    assert_eq!(auth["personalNumber"], PEOPLE[0]);
    assert_eq!(auth["callInitiator"], "user");
    assert_eq!(auth["userVisibleDataFormat"], "simpleMarkdownV1");
    assert!(auth.get("requirement").is_none(), "{auth}");
    let decode = |field: &str| {
        let text = auth[field].as_str().unwrap();
        String::from_utf8(BASE64.decode(text).unwrap()).unwrap()
    };
    assert_eq!(decode("userVisibleData"), BankIdConfig::default().intent_en);
    assert_eq!(decode("userNonVisibleData"), call_id.to_string());
}

#[tokio::test]
async fn swedish_routes_get_the_swedish_intent_and_pin_code_is_required_when_configured() {
    let fake = FakeBankId::start(FakeTiming::fast()).await.unwrap();
    let config = BankIdConfig {
        poll_interval_ms: 10,
        pin_code: true,
        ..fake.config()
    };
    let provider = BankId::with_tls(&config, fake.client_tls()).unwrap();
    all_updates(provider.start(request(&pnr(PEOPLE[1]), "sv"))).await;
    let auth: serde_json::Value = serde_json::from_str(&fake.requests()[0].body).unwrap();
    let text = BASE64
        .decode(auth["userVisibleData"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), config.intent_sv);
    assert_eq!(auth["requirement"], serde_json::json!({ "pinCode": true }));
}

#[tokio::test]
async fn a_route_intent_replaces_the_language_default() {
    let fake = FakeBankId::start(FakeTiming::fast()).await.unwrap();
    let config = BankIdConfig {
        poll_interval_ms: 10,
        ..fake.config()
    };
    let provider = BankId::with_tls(&config, fake.client_tls()).unwrap();
    let route_text = "Du ringde **Acme kundtjänst**. Vi ringer aldrig upp dig.";
    let order = VerifyRequest {
        intent: Some(route_text.to_owned()),
        ..request(&pnr(PEOPLE[2]), "sv")
    };
    all_updates(provider.start(order)).await;
    let auth: serde_json::Value = serde_json::from_str(&fake.requests()[0].body).unwrap();
    let shown = BASE64
        .decode(auth["userVisibleData"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(shown).unwrap(), route_text);
}

#[tokio::test]
async fn each_pending_hint_becomes_its_hint_once() {
    let timing = FakeTiming {
        step: Duration::from_millis(50),
        expiry: LIMIT,
    };
    let (fake, provider) = setup(10, timing).await;
    let who = pnr(PEOPLE[0]);
    let pending = |h: &str| FakeStep::Pending(h.to_owned());
    let steps = vec![
        pending("outstandingTransaction"),
        pending("noClient"),
        pending("started"),
        pending("started"),
        pending("someNewHint"),
        pending("userCallConfirm"),
        pending("userMrtd"),
        pending("userSign"),
        FakeStep::Complete(who.clone()),
    ];
    fake.script(&who, FakeOutcome::Steps(steps));
    let updates = all_updates(provider.start(request(&who, "sv"))).await;
    let VerifyUpdate::Complete(person) = &updates[4] else {
        panic!("{updates:?}");
    };
    assert_eq!(person.personal_number, who);
    let hints: Vec<_> = updates[..4].to_vec();
    let expected = [Hint::Sent, Hint::Started, Hint::CallConfirm, Hint::Signing];
    assert_eq!(hints, expected.map(VerifyUpdate::Pending).to_vec());
    assert_eq!(updates.len(), 5, "{updates:?}");
    // Each step was collected several times: the absence of repeats is the provider's doing.
    assert!(fake.count("collect") > 12, "{}", fake.count("collect"));
}

#[tokio::test]
async fn a_completion_for_another_person_is_complete_with_that_person() {
    let (fake, provider) = setup(10, FakeTiming::fast()).await;
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let provider = provider.on_completion(move |call, completion| {
        sink.lock().unwrap().push((call, completion));
    });
    let (asked, other) = (pnr(PEOPLE[0]), pnr(PEOPLE[1]));
    fake.script(&asked, FakeOutcome::ApproveAs(other.clone()));
    let order = request(&asked, "sv");
    let call_id = order.call_id;
    let updates = all_updates(provider.start(order)).await;
    let Some(VerifyUpdate::Complete(person)) = updates.last() else {
        panic!("{updates:?}");
    };
    assert_eq!(person.personal_number, other);
    assert_eq!(person.name.as_ref().unwrap().as_str(), "Tolvan Tolvansson");
    let seen = seen.lock().unwrap();
    let [(call, completion)] = &seen[..] else {
        panic!("one completion expected");
    };
    assert_eq!(*call, call_id);
    let signature = BASE64.decode(&completion.signature).unwrap();
    assert_eq!(signature, b"<fake-signature/>");
    assert!(completion.device_uhi.is_some() && completion.bank_id_issue_date.is_some());
}

#[tokio::test]
async fn collects_follow_the_poll_interval() {
    let (fake, provider) = setup(100, STILL).await;
    fake.script(&pnr(PEOPLE[2]), FakeOutcome::Expire);
    let mut order = provider.start(request(&pnr(PEOPLE[2]), "sv"));
    let first = timeout(LIMIT, order.updates.recv()).await.unwrap();
    assert_eq!(first, Some(VerifyUpdate::Pending(Hint::Sent)));
    let before = fake.count("collect");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = fake.count("collect") - before;
    assert!(
        (8..=12).contains(&during),
        "{during} collects in 1 s at 100 ms"
    );
    drop(order);
    eventually("cancel after drop", || fake.cancelled() == 1).await;
}

#[tokio::test]
async fn cancel_reaches_the_fake_and_ends_the_updates() {
    let (fake, provider) = setup(10, FakeTiming::fast()).await;
    let who = pnr(PEOPLE[3]);
    fake.script(&who, FakeOutcome::Expire);
    let mut order = provider.start(request(&who, "sv"));
    let first = timeout(LIMIT, order.updates.recv()).await.unwrap();
    assert_eq!(first, Some(VerifyUpdate::Pending(Hint::Sent)));
    // The orderRef is known by the first update: the one the cancel names.
    let order_ref = order.order_ref().get().expect("orderRef").to_owned();
    order.cancel();
    eventually("the fake sees the cancel", || fake.cancelled() == 1).await;
    assert_eq!(fake.count("cancel"), 1);
    let cancel = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/cancel"));
    assert!(cancel.expect("a cancel").body.contains(&order_ref));
    assert_eq!(timeout(LIMIT, order.updates.recv()).await.unwrap(), None);
    // The order is gone at the fake, so the person can be asked again at once.
    fake.script(&who, FakeOutcome::Approve);
    let updates = all_updates(provider.start(request(&who, "sv"))).await;
    assert!(
        matches!(updates.last(), Some(VerifyUpdate::Complete(_))),
        "{updates:?}"
    );
}

#[tokio::test]
async fn a_second_order_for_a_person_is_a_provider_error_and_the_first_cancelled() {
    let (fake, provider) = setup(10, STILL).await;
    let who = pnr(PEOPLE[4]);
    let mut first = provider.start(request(&who, "sv"));
    let hint = timeout(LIMIT, first.updates.recv()).await.unwrap();
    assert_eq!(hint, Some(VerifyUpdate::Pending(Hint::Sent)));
    let second = all_updates(provider.start(request(&who, "sv"))).await;
    assert!(
        matches!(second.as_slice(), [VerifyUpdate::Failed(Failure::Provider(detail))] if detail.contains("alreadyInProgress")),
        "{second:?}"
    );
    let rest = all_updates(first).await;
    let cancelled = Failure::Provider("order cancelled by a newer order".to_owned());
    assert_eq!(rest, vec![VerifyUpdate::Failed(cancelled)]);
    assert_eq!(fake.count("phone/auth"), 2);
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_by_the_fake() {
    let fake = FakeBankId::start(FakeTiming::fast()).await.unwrap();
    let anonymous = tls::client_config(fake.pki().server_ca_pem.as_bytes(), None).unwrap();
    let provider = BankId::with_tls(&fake.config(), anonymous).unwrap();
    let updates = all_updates(provider.start(request(&pnr(PEOPLE[0]), "sv"))).await;
    assert!(
        matches!(updates[..], [VerifyUpdate::Failed(Failure::Provider(_))]),
        "{updates:?}"
    );
    assert!(fake.requests().is_empty(), "no request got through TLS");
}

#[tokio::test]
async fn an_unreachable_url_fails_within_the_request_timeout() {
    // A listener that never answers: the TLS handshake hangs until the request timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pki = crate::verify::tls::TestPki::generate();
    let config = BankIdConfig {
        url: format!("https://{}/rp/v6.0/", silent.local_addr().unwrap()),
        request_timeout_ms: 300,
        ..BankIdConfig::default()
    };
    let provider = BankId::with_tls(&config, pki.client_config()).unwrap();
    let started = Instant::now();
    let updates = all_updates(provider.start(request(&pnr(PEOPLE[0]), "sv"))).await;
    let took = started.elapsed();
    let [VerifyUpdate::Failed(Failure::Provider(detail))] = &updates[..] else {
        panic!("{updates:?}");
    };
    assert!(detail.contains("300 ms"), "{detail}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // A closed port fails at once.
    let port = silent.local_addr().unwrap().port();
    drop(silent);
    let closed = BankIdConfig {
        url: format!("https://127.0.0.1:{port}/rp/v6.0/"),
        ..config
    };
    let provider = BankId::with_tls(&closed, pki.client_config()).unwrap();
    let updates = all_updates(provider.start(request(&pnr(PEOPLE[0]), "sv"))).await;
    assert!(
        matches!(updates[..], [VerifyUpdate::Failed(Failure::Provider(_))]),
        "{updates:?}"
    );
}

#[tokio::test]
async fn three_failed_collects_in_a_row_end_the_order() {
    let (fake, provider) = setup(20, STILL).await;
    let mut order = provider.start(request(&pnr(PEOPLE[0]), "sv"));
    let first = timeout(LIMIT, order.updates.recv()).await.unwrap();
    assert_eq!(first, Some(VerifyUpdate::Pending(Hint::Sent)));
    drop(fake); // The server goes away: every collect now fails to connect.
    let rest = all_updates(order).await;
    let [VerifyUpdate::Failed(Failure::Provider(detail))] = &rest[..] else {
        panic!("{rest:?}");
    };
    assert!(detail.contains("3 collects in a row failed"), "{detail}");
}

#[tokio::test]
async fn a_push_by_phone_number_is_refused_at_once() {
    let (_fake, provider) = setup(10, FakeTiming::fast()).await;
    let phone = crate::identity::E164::parse("+46701234567", "SE").unwrap();
    let order = provider.start(VerifyRequest {
        call_id: Uuid::new_v4(),
        subject: Subject::Phone(phone),
        language: "sv",
        intent: None,
    });
    let updates = all_updates(order).await;
    assert!(
        matches!(updates[..], [VerifyUpdate::Failed(Failure::Provider(_))]),
        "{updates:?}"
    );
}

#[test]
fn setup_reads_the_pem_files_and_names_missing_keys() {
    let pki = crate::verify::tls::TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut config = BankIdConfig::default();
    let err = BankId::new(&config).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("provider.bankid.client_cert: required"),
        "{err}"
    );
    config.client_cert = Some(write("rp.crt", &pki.client_cert_pem));
    config.client_key = Some(write("rp.key", &pki.client_key_pem));
    config.ca = Some(dir.path().join("missing-ca.pem"));
    let err = BankId::new(&config).unwrap_err();
    assert!(
        matches!(
            err,
            SetupError::File {
                key: "provider.bankid.ca",
                ..
            }
        ),
        "{err}"
    );
    config.ca = Some(write("ca.pem", &pki.server_ca_pem));
    assert!(BankId::new(&config).is_ok());
}

#[test]
fn the_config_file_selects_bankid() {
    let text = "[provider]\nkind = \"bankid\"\n[provider.bankid]\npoll_interval_ms = 2000\n\
                client_cert = \"/nonexistent/rp.crt\"\nclient_key = \"/nonexistent/rp.key\"\n\
                ca = \"/nonexistent/ca.pem\"\n";
    let config = crate::config::Config::parse("test.toml", text).unwrap();
    assert_eq!(config.provider.kind.as_str(), "bankid");
    let err =
        crate::verify::from_config(&config.provider, tokio::sync::mpsc::unbounded_channel().0)
            .err()
            .unwrap();
    assert!(
        err.to_string()
            .starts_with("provider.bankid.ca: /nonexistent/ca.pem"),
        "{err}"
    );
}
