//! `/v1/privacy` through the router (tower `oneshot`, no sockets), merged with `/v1/customers`
//! on one store as in `serve`: the bearer token, export, erase (with a dry run), the audit
//! trail, and errors as JSON `{error}` that never echo the personal number.

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use idgate::config::{Token, Transfer};
use idgate::identity::{CallerId, E164, PersonalNumber};
use idgate::store::{NewCall, PushDecision, PushLimits, PushTarget, Store};

const TOKEN: &str = "test-api-token-0123456789";
const TOLVAN: &str = "191212121212";
const TOLVAN_MOBILE: &str = "+46701234567";
/// Every request here ends well within this.
const BOUND: Duration = Duration::from_secs(10);

async fn app(token: Option<&str>) -> (Router, Store) {
    let store = Store::memory().await.expect("store");
    let token = token.map(|t| Token::new(t.to_owned()));
    let app = idgate::api::customers::router(store.clone(), token.clone())
        .merge(idgate::api::privacy::router(store.clone(), token));
    (app, store)
}

/// What came back.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

/// Sends one request with a JSON body.
async fn send(app: &Router, method: Method, uri: &str, auth: Option<&str>, body: &str) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let call = app
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).expect("request"));
    let response = tokio::time::timeout(BOUND, call)
        .await
        .expect("answered in time")
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn tolvan() -> String {
    json!({ "personal_number": TOLVAN }).to_string()
}

/// A call from Tolvan's mobile, pushed to Tolvan.
async fn seed_call(store: &Store) -> Uuid {
    let id = Uuid::new_v4();
    let at = SystemTime::now();
    let caller = E164::parse(TOLVAN_MOBILE, "SE").expect("number");
    let call = NewCall {
        id,
        sip_call_id: format!("{id}@pbx.example.com"),
        caller: CallerId::Number(caller.clone()),
        called: "5000".to_owned(),
        route: None,
        transfer_mode: Some(Transfer::B2bua),
        started_at: at,
    };
    store.insert_call(&call).await.expect("call");
    let person = PersonalNumber::parse(TOLVAN).expect("pnr");
    let limits = PushLimits {
        per_caller: 10,
        per_person: 10,
        window: Duration::from_secs(600),
        cooldown: Duration::from_secs(300),
        order_lifetime: Duration::from_secs(180),
    };
    let target = PushTarget {
        caller: Some(&caller),
        person: Some(&person),
    };
    let decision = store
        .begin_push(id, target, &limits, at)
        .await
        .expect("push");
    assert!(matches!(decision, PushDecision::Allowed(_)));
    id
}

#[tokio::test]
async fn requests_without_the_right_token_are_refused() {
    let (guarded, _) = app(Some(TOKEN)).await;
    for uri in ["/v1/privacy/export", "/v1/privacy/erase"] {
        for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
            let answer = send(&guarded, Method::POST, uri, auth, &tolvan()).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri} {auth:?}");
            assert_eq!(answer.body, json!({ "error": "unauthorized" }));
        }
    }
    let (unconfigured, _) = app(None).await;
    let answer = send(
        &unconfigured,
        Method::POST,
        "/v1/privacy/export",
        Some(&bearer()),
        &tolvan(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn export_then_erase_with_a_dry_run_and_an_audit_trail() {
    let (app, store) = app(Some(TOKEN)).await;
    let auth = bearer();
    let auth = Some(auth.as_str());
    let customer =
        json!({ "personal_number": TOLVAN, "name": "Tolvan", "numbers": [TOLVAN_MOBILE] });
    let added = send(
        &app,
        Method::POST,
        "/v1/customers",
        auth,
        &customer.to_string(),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let customer_id = added.body["id"].as_str().expect("id").to_owned();
    let call = seed_call(&store).await;

    let export = send(&app, Method::POST, "/v1/privacy/export", auth, &tolvan()).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert_eq!(export.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(export.body["customer"]["id"], customer_id);
    assert_eq!(export.body["customer"]["personal_number"], TOLVAN);
    assert_eq!(export.body["calls"][0]["id"], call.to_string());

    let body = json!({ "personal_number": "19121212-1212", "dry_run": true }).to_string();
    let dry = send(&app, Method::POST, "/v1/privacy/erase", auth, &body).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert_eq!(dry.body["would_erase"]["customer"], customer_id);
    assert_eq!(dry.body["would_erase"]["calls_redacted"], 1);
    let caller = store
        .get_call(call)
        .await
        .expect("read")
        .expect("row")
        .caller;
    assert_eq!(caller, TOLVAN_MOBILE, "a dry run changes nothing");

    let erased = send(&app, Method::POST, "/v1/privacy/erase", auth, &tolvan()).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
    assert!(!erased.text.contains(TOLVAN), "{}", erased.text);
    assert_eq!(erased.body["erased"], dry.body["would_erase"]);
    let caller = store
        .get_call(call)
        .await
        .expect("read")
        .expect("row")
        .caller;
    assert_eq!(caller, "redacted");
    let list = send(&app, Method::GET, "/v1/customers", auth, "").await;
    assert_eq!(list.body, json!({ "customers": [] }));

    let actions = store
        .admin_actions_since(SystemTime::UNIX_EPOCH)
        .await
        .expect("read");
    let summary: Vec<(&str, &str)> = actions
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("api-token", "customer-add"),
            ("api-token", "privacy-export"),
            ("api-token", "privacy-erase"),
        ]
    );
    assert!(actions.iter().all(|a| a.target.contains(&customer_id)));
    assert!(actions.iter().all(|a| !a.target.contains("121212")));
}

#[tokio::test]
async fn bad_bodies_are_400_and_never_echo_the_number() {
    let (app, store) = app(Some(TOKEN)).await;
    let auth = bearer();
    let auth = Some(auth.as_str());
    for uri in ["/v1/privacy/export", "/v1/privacy/erase"] {
        let bad = json!({ "personal_number": "191212121213" }).to_string();
        let answer = send(&app, Method::POST, uri, auth, &bad).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        let error = answer.body["error"].as_str().expect("error text");
        assert!(error.starts_with("personal_number:"), "{error}");
        assert!(!answer.text.contains("121212"), "{}", answer.text);
        for body in [
            "not json",
            r#"{"personal_number": 191212121212}"#,
            r#"{"pnr": "191212121212"}"#,
        ] {
            let answer = send(&app, Method::POST, uri, auth, body).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri} {body}");
            assert!(answer.text.contains("must be JSON"), "{}", answer.text);
            assert!(!answer.text.contains("121212"), "{}", answer.text);
        }
    }
    // The number never sits in a URL: there is no GET.
    let get = send(&app, Method::GET, "/v1/privacy/export", auth, "").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    let actions = store
        .admin_actions_since(SystemTime::UNIX_EPOCH)
        .await
        .expect("read");
    assert!(actions.is_empty());
}
