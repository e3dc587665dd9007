//! `/v1/customers` through the router (tower `oneshot`, no sockets): the bearer token, adding,
//! listing (masked) and deleting, and errors as JSON `{error}` with 400/401/404/409.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use idgate::api::customers::router;
use idgate::config::Token;
use idgate::store::Store;

const TOKEN: &str = "test-api-token-0123456789";
const TOLVAN: &str = "191212121212";
/// Every request here ends well within this.
const BOUND: Duration = Duration::from_secs(10);

async fn app(token: Option<&str>) -> Router {
    let store = Store::memory().await.expect("store");
    router(store, token.map(|t| Token::new(t.to_owned())))
}

/// Sends one request; returns the status and the JSON body (`Null` if empty).
async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let call = app.clone().oneshot(request.body(body).expect("request"));
    let response = tokio::time::timeout(BOUND, call)
        .await
        .expect("answered in time")
        .expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(TOLVAN), "a full personal number: {text}");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (status, value)
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn tolvan() -> Value {
    json!({
        "personal_number": TOLVAN,
        "name": "Tolvan Tolvansson",
        "numbers": ["070-123 45 67", "+46812345678"],
    })
}

#[tokio::test]
async fn requests_without_the_right_token_are_refused() {
    let app = app(Some(TOKEN)).await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic dGVzdDp0ZXN0"),
        Some(TOKEN),
    ] {
        let (status, body) = send(&app, Method::GET, "/v1/customers", auth, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(body, json!({ "error": "unauthorized" }));
    }
    let (status, _) = send(&app, Method::POST, "/v1/customers", None, Some(tolvan())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&app, Method::GET, "/v1/customers", Some(&bearer()), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn without_a_configured_token_everything_is_refused() {
    let app = app(None).await;
    let (status, _) = send(&app, Method::GET, "/v1/customers", Some(&bearer()), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&app, Method::GET, "/v1/customers", Some("Bearer "), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn add_list_and_delete() {
    let app = app(Some(TOKEN)).await;
    let auth = Some(bearer());
    let auth = auth.as_deref();
    let (status, created) = send(&app, Method::POST, "/v1/customers", auth, Some(tolvan())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["personal_number"], "19121212-****");
    assert_eq!(created["numbers"], json!(["+46701234567", "+46812345678"]));
    let id = created["id"].as_str().expect("an id").to_owned();

    let (status, list) = send(&app, Method::GET, "/v1/customers", auth, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!({ "customers": [created] }));

    let uri = format!("/v1/customers/{id}");
    let (status, body) = send(&app, Method::DELETE, &uri, auth, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, body) = send(&app, Method::DELETE, &uri, auth, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], format!("no customer {id}"));
    let (_, list) = send(&app, Method::GET, "/v1/customers", auth, None).await;
    assert_eq!(list, json!({ "customers": [] }));
}

#[tokio::test]
async fn bad_input_is_400_and_a_taken_person_or_number_is_409() {
    let app = app(Some(TOKEN)).await;
    let auth = Some(bearer());
    let auth = auth.as_deref();
    let post = |body: Value| send(&app, Method::POST, "/v1/customers", auth, Some(body));
    let (status, body) = post(json!({ "personal_number": "191212121213", "name": "T",
                                      "numbers": ["+46701234567"] }))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = body["error"].as_str().expect("error text");
    assert!(error.starts_with("personal_number:"), "{error}");
    assert!(!error.contains("19121212"), "{error}");
    let (status, body) = post(json!({ "personal_number": 191212121212u64, "name": "T",
                                      "numbers": [] }))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("must be JSON")),
        "{body}"
    );

    assert_eq!(post(tolvan()).await.0, StatusCode::CREATED);
    let (status, body) = post(tolvan()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"],
        "the personal identity number is already registered"
    );
    let (status, body) = post(json!({ "personal_number": "198001019804", "name": "Alice",
                                      "numbers": ["+46709876543", "+46701234567"] }))
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"],
        "phone number 2 is already registered to another customer"
    );
    let (status, _) = send(&app, Method::DELETE, "/v1/customers/nope", auth, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
