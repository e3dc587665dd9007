//! The fake is as strict as the real service: raw HTTP requests against it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::*;

const PERSON: &str = "198001010290";

/// A fake (orders never move on their own) and a raw client with the test RP certificate.
async fn fake_and_client() -> (FakeBankId, reqwest::Client) {
    let timing = FakeTiming {
        step: Duration::from_secs(60),
        expiry: Duration::from_secs(60),
    };
    let fake = FakeBankId::start(timing).await.unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(fake.client_tls())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    (fake, client)
}

/// Sends `body` to `endpoint` with `content_type`; the status and the JSON answer.
async fn post(
    fake: &FakeBankId,
    client: &reqwest::Client,
    endpoint: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let response = client
        .post(format!("{}{endpoint}", fake.url()))
        .header(CONTENT_TYPE, content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn post_json(
    fake: &FakeBankId,
    client: &reqwest::Client,
    endpoint: &str,
    body: Value,
) -> (u16, Value) {
    post(fake, client, endpoint, "application/json", &body).await
}

fn auth_body() -> Value {
    json!({
        "personalNumber": PERSON,
        "callInitiator": "user",
        "userVisibleData": BASE64.encode("Du har ringt oss."),
        "userVisibleDataFormat": "simpleMarkdownV1",
        "userNonVisibleData": BASE64.encode("call-1"),
    })
}

#[tokio::test]
async fn a_charset_or_another_media_type_gets_415() {
    let (fake, client) = fake_and_client().await;
    for content_type in [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "text/plain",
    ] {
        let (status, answer) = post(&fake, &client, "phone/auth", content_type, &auth_body()).await;
        assert_eq!(
            (status, &answer["errorCode"]),
            (415, &json!("unsupportedMediaType")),
            "{content_type}"
        );
    }
    let (status, _) = post_json(&fake, &client, "phone/auth", auth_body()).await;
    assert_eq!(status, 200);
    let seen = fake.requests();
    assert_eq!(
        seen[0].content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
}

#[tokio::test]
async fn only_post_to_known_paths() {
    let (fake, client) = fake_and_client().await;
    let response = client
        .get(format!("{}collect", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["errorCode"], "methodNotAllowed");
    for endpoint in ["auth", "phone/sign", "sign"] {
        let (status, answer) = post_json(&fake, &client, endpoint, auth_body()).await;
        assert_eq!(
            (status, &answer["errorCode"]),
            (404, &json!("notFound")),
            "{endpoint}"
        );
    }
    let outside = client
        .post(format!("https://{}/collect", fake.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status().as_u16(), 404);
}

#[tokio::test]
async fn bad_bodies_are_invalid_parameters() {
    let (fake, client) = fake_and_client().await;
    let with = |key: &str, value: Value| {
        let mut body = auth_body();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = auth_body();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let cases = [
        ("no personal number", without("personalNumber")),
        ("no call initiator", without("callInitiator")),
        ("11 digits", with("personalNumber", json!("19800101029"))),
        ("a dash", with("personalNumber", json!("19800101-0290"))),
        (
            "as a number",
            with("personalNumber", json!(198001010290u64)),
        ),
        ("odd initiator", with("callInitiator", json!("bank"))),
        ("not base64", with("userVisibleData", json!("hej där!"))),
        ("empty text", with("userVisibleData", json!(""))),
        (
            "long text",
            with("userVisibleData", json!(BASE64.encode("x".repeat(1200)))),
        ),
        ("odd format", with("userVisibleDataFormat", json!("html"))),
        (
            "hidden not base64",
            with("userNonVisibleData", json!("%%%")),
        ),
        ("unknown field", with("personalnumber", json!(PERSON))),
        (
            "odd requirement",
            with("requirement", json!({ "pin": true })),
        ),
    ];
    for (what, body) in cases {
        let (status, answer) = post_json(&fake, &client, "phone/auth", body).await;
        assert_eq!(
            (status, &answer["errorCode"]),
            (400, &json!("invalidParameters")),
            "{what}"
        );
    }
    let not_json = post(
        &fake,
        &client,
        "phone/auth",
        "application/json",
        &json!("{"),
    )
    .await;
    assert_eq!(not_json.0, 400);
    let with_pin = with("requirement", json!({ "pinCode": true }));
    assert_eq!(
        post_json(&fake, &client, "phone/auth", with_pin).await.0,
        200
    );
}

#[tokio::test]
async fn unknown_orders_are_invalid_parameters_and_cancelled_ones_are_gone() {
    let (fake, client) = fake_and_client().await;
    let unknown = json!({ "orderRef": "0d5a3b7e-0000-4000-8000-000000000000" });
    for endpoint in ["collect", "cancel"] {
        let (status, answer) = post_json(&fake, &client, endpoint, unknown.clone()).await;
        assert_eq!(
            (status, &answer["errorCode"]),
            (400, &json!("invalidParameters")),
            "{endpoint}"
        );
    }
    let (_, order) = post_json(&fake, &client, "phone/auth", auth_body()).await;
    let order_ref = json!({ "orderRef": order["orderRef"] });
    let (status, answer) = post_json(&fake, &client, "collect", order_ref.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&answer["status"], &answer["hintCode"]),
        (&json!("pending"), &json!("outstandingTransaction"))
    );
    assert_eq!(
        post_json(&fake, &client, "cancel", order_ref.clone()).await,
        (200, json!({}))
    );
    assert_eq!(fake.cancelled(), 1);
    assert_eq!(
        post_json(&fake, &client, "collect", order_ref.clone())
            .await
            .0,
        400
    );
    assert_eq!(post_json(&fake, &client, "cancel", order_ref).await.0, 400);
    assert_eq!(fake.cancelled(), 1);
}

#[tokio::test]
async fn a_second_order_is_already_in_progress_and_cancels_the_first() {
    let (fake, client) = fake_and_client().await;
    let (status, first) = post_json(&fake, &client, "phone/auth", auth_body()).await;
    assert_eq!(status, 200);
    let (status, answer) = post_json(&fake, &client, "phone/auth", auth_body()).await;
    assert_eq!(
        (status, &answer["errorCode"]),
        (400, &json!("alreadyInProgress"))
    );
    let order_ref = json!({ "orderRef": first["orderRef"] });
    let (_, answer) = post_json(&fake, &client, "collect", order_ref).await;
    assert_eq!(
        (&answer["status"], &answer["hintCode"]),
        (&json!("failed"), &json!("cancelled"))
    );
    // Nothing is pending any more, so a new order is taken.
    assert_eq!(
        post_json(&fake, &client, "phone/auth", auth_body()).await.0,
        200
    );
}

#[tokio::test]
async fn scripted_outcomes_play_out_and_server_errors_are_500() {
    let fake = FakeBankId::start(FakeTiming::fast()).await.unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(fake.client_tls())
        .build()
        .unwrap();
    let person = PersonalNumber::parse(PERSON).unwrap();
    fake.script(&person, FakeOutcome::ServerError);
    let (status, answer) = post_json(&fake, &client, "phone/auth", auth_body()).await;
    assert_eq!(
        (status, &answer["errorCode"]),
        (500, &json!("internalError"))
    );
    fake.script(&person, FakeOutcome::Expire);
    let (_, order) = post_json(&fake, &client, "phone/auth", auth_body()).await;
    let order_ref = json!({ "orderRef": order["orderRef"] });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, answer) = post_json(&fake, &client, "collect", order_ref.clone()).await;
        if answer["status"] != "pending" {
            assert_eq!(
                (&answer["status"], &answer["hintCode"]),
                (&json!("failed"), &json!("expiredTransaction"))
            );
            break;
        }
        assert_eq!(answer["hintCode"], "outstandingTransaction");
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
