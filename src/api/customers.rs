//! `/v1/customers`: the customer directory over HTTP, for the company's back office. Every
//! request needs `Authorization: Bearer <http.api_token>`; with no token configured, every
//! request is refused. Personal identity numbers go in (POST) but only come out masked.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/customers` | 200 `{"customers": [{"id", "personal_number": "19800101-****", "name", "numbers"}]}` |
//! | `POST /v1/customers` `{"personal_number", "name", "numbers": [..], "region"?}` | 201 the customer as listed; 400 bad input; 409 person or number already registered |
//! | `DELETE /v1/customers/{id}` | 204; 400 not an id; 404 no such customer |
//! | no token, wrong token, none configured | 401 |
//!
//! Errors are `{"error": "..."}`; none holds a personal identity number. Adding and deleting
//! are recorded as admin actions by `api-token` (the customer id, never the number).

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::Token;
use crate::store::{AdminAction, CustomerError, CustomerKey, CustomerSummary, Store};
use crate::verify::directory::parse_customer;

/// A customer body is well under this.
const MAX_BODY: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
struct CustomersApi {
    store: Store,
    token: Option<Token>,
}

/// The `POST /v1/customers` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    personal_number: String,
    name: String,
    numbers: Vec<String>,
    /// Region for numbers in national form. Default `"SE"`.
    #[serde(default = "default_region")]
    region: String,
}

fn default_region() -> String {
    "SE".to_owned()
}

/// A refused request: its status and the `error` text.
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The customer routes on `store`, guarded by `token` (`None`: every request is refused).
pub fn router(store: Store, token: Option<Token>) -> Router {
    let api = CustomersApi { store, token };
    Router::new()
        .route("/v1/customers", get(list).post(add))
        .route("/v1/customers/{id}", delete(remove))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Lets the request through only with the configured bearer token.
async fn require_token(State(api): State<CustomersApi>, request: Request, next: Next) -> Response {
    match refuse_without_token(api.token.as_ref(), request.headers()) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// The 401 for a management request without `Authorization: Bearer <http.api_token>` (or with
/// none configured); `None` lets it through.
pub(super) fn refuse_without_token(
    expected: Option<&Token>,
    headers: &HeaderMap,
) -> Option<Response> {
    let refusal = match (expected, bearer(headers)) {
        (None, _) => "no-token-configured",
        (Some(_), None) => "missing-token",
        (Some(expected), Some(given)) if !same_secret(expected.expose(), given) => "wrong-token",
        (Some(_), Some(_)) => return None,
    };
    tracing::warn!(target: "idgate::security", reason = refusal, "management API request refused");
    let mut response = Refused(StatusCode::UNAUTHORIZED, "unauthorized".to_owned()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(response)
}

/// The token in `Authorization: Bearer <token>`.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares two secrets in time independent of where they differ or how long they are: both
/// are hashed, and the digests compared without an early exit.
pub(super) fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (Sha256::digest(expected), Sha256::digest(given));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// `GET /v1/customers`.
async fn list(State(api): State<CustomersApi>) -> Result<Json<Value>, Refused> {
    let customers = api.store.list_customers().await.map_err(internal)?;
    let customers: Vec<Value> = customers.iter().map(summary_json).collect();
    Ok(Json(json!({ "customers": customers })))
}

/// `POST /v1/customers`.
async fn add(
    State(api): State<CustomersApi>,
    body: Result<Json<AddBody>, JsonRejection>,
) -> Result<Response, Refused> {
    let Json(body) = body.map_err(|_| {
        let expected = "the body must be JSON {\"personal_number\": string, \"name\": string, \
                        \"numbers\": [string, ...], \"region\"?: string}";
        Refused(StatusCode::BAD_REQUEST, expected.to_owned())
    })?;
    let numbers = body.numbers.iter().map(String::as_str);
    let customer = parse_customer(&body.personal_number, &body.name, numbers, &body.region)
        .map_err(|e| Refused(StatusCode::BAD_REQUEST, e.to_string()))?;
    let id = api
        .store
        .insert_customer(&customer)
        .await
        .map_err(|e| match e {
            CustomerError::Store(e) => internal(e),
            taken => Refused(StatusCode::CONFLICT, taken.to_string()),
        })?;
    let target = format!("customer {id} ({} number(s))", customer.numbers.len());
    record(&api.store, "customer-add", target).await;
    let created = CustomerSummary {
        id,
        masked_personal_number: customer.personal_number.masked(),
        name: Some(customer.name),
        numbers: customer.numbers,
    };
    Ok((StatusCode::CREATED, Json(summary_json(&created))).into_response())
}

/// `DELETE /v1/customers/{id}`.
async fn remove(
    State(api): State<CustomersApi>,
    Path(id): Path<String>,
) -> Result<StatusCode, Refused> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| Refused(StatusCode::BAD_REQUEST, "id: not a customer id".to_owned()))?;
    match api.store.remove_customer(&CustomerKey::Id(id)).await {
        Ok(true) => {
            record(&api.store, "customer-remove", format!("customer {id}")).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => Err(Refused(StatusCode::NOT_FOUND, format!("no customer {id}"))),
        Err(e) => Err(internal(e)),
    }
}

/// A customer as the API shows it.
fn summary_json(c: &CustomerSummary) -> Value {
    json!({
        "id": c.id,
        "personal_number": c.masked_personal_number,
        "name": c.name.as_ref().map(|n| n.as_str()),
        "numbers": c.numbers.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
    })
}

/// Records a change made with the API token in the audit trail; a failure is only logged (the
/// change is made).
pub(super) async fn record(store: &Store, action: &str, target: String) {
    let action = AdminAction::now("api-token", action, target);
    if let Err(e) = store.record_admin_action(&action).await {
        tracing::warn!(error = %e, action = action.action, "admin action not recorded");
    }
}

/// A database failure: logged (store errors hold no personal data), answered 500.
fn internal(e: crate::store::StoreError) -> Refused {
    tracing::error!(error = %e, "customer API: database failure");
    Refused(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiError, api_token};
    use crate::config::{Config, HttpConfig};

    #[test]
    fn the_token_comes_from_the_config_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api-token");
        std::fs::write(&file, "  file-token\n").unwrap();
        let http = HttpConfig {
            api_token_file: Some(file.clone()),
            ..HttpConfig::default()
        };
        let token = api_token(&http).unwrap().unwrap();
        assert_eq!(token.expose(), "file-token");
        std::fs::write(&file, "\n").unwrap();
        let e = api_token(&http).unwrap_err();
        assert!(matches!(e, ApiError::TokenFile { .. }), "{e}");
        assert!(e.to_string().starts_with("http.api_token_file: "), "{e}");
        assert!(api_token(&HttpConfig::default()).unwrap().is_none());
    }

    #[test]
    fn both_token_keys_or_an_empty_token_are_refused() {
        let both = "[http]\napi_token = \"a\"\napi_token_file = \"/etc/idgate/t\"\n";
        let e = Config::parse("idgate.toml", both).unwrap_err().to_string();
        assert!(
            e.contains("http.api_token: set api_token or api_token_file"),
            "{e}"
        );
        let empty = Config::parse("idgate.toml", "[http]\napi_token = \" \"\n").unwrap_err();
        assert!(empty.to_string().contains("must not be empty"), "{empty}");
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("abc", ""));
    }
}
