//! `/v1/privacy`: GDPR requests about one person over HTTP, for the company's back office. The
//! same bearer token as `/v1/customers` (`http.api_token`); with none configured, every request
//! is refused. The personal number travels in a POST body, never in a URL (URLs end up in access
//! logs).
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/privacy/export` `{"personal_number"}` | 200 everything idgate holds about the person (see `store::privacy`), `Cache-Control: no-store` |
//! | `POST /v1/privacy/erase` `{"personal_number", "dry_run"?}` | 200 `{"erased": {counts}}`, or with `"dry_run": true` `{"would_erase": {counts}}` and nothing changed |
//! | bad body or personal number | 400 |
//! | no token, wrong token, none configured | 401 |
//!
//! Errors are `{"error": "..."}` and never hold the personal number. Exports and erasures are
//! recorded as admin actions by `api-token`, without the number.

use std::time::SystemTime;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::customers::{bearer, same_secret};
use crate::config::Token;
use crate::identity::PersonalNumber;
use crate::store::{Store, StoreError};

/// A request body is well under this.
const MAX_BODY: usize = 4 * 1024;

/// The admin actions' actor.
const ACTOR: &str = "api-token";

/// What the handlers share.
#[derive(Clone)]
struct PrivacyApi {
    store: Store,
    token: Option<Token>,
}

/// The request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonBody {
    personal_number: String,
    /// Erase only: report what would be erased, change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// A refused request: its status and the `error` text.
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The privacy routes on `store`, guarded by `token` (`None`: every request is refused).
pub fn router(store: Store, token: Option<Token>) -> Router {
    let api = PrivacyApi { store, token };
    Router::new()
        .route("/v1/privacy/export", post(export))
        .route("/v1/privacy/erase", post(erase))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Lets the request through only with the configured bearer token.
async fn require_token(State(api): State<PrivacyApi>, request: Request, next: Next) -> Response {
    let refusal = match (&api.token, bearer(request.headers())) {
        (None, _) => "no-token-configured",
        (Some(_), None) => "missing-token",
        (Some(expected), Some(given)) if !same_secret(expected.expose(), given) => "wrong-token",
        (Some(_), Some(_)) => return next.run(request).await,
    };
    tracing::warn!(target: "idgate::security", reason = refusal, "privacy API request refused");
    let mut response = Refused(StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// The body's person, or 400 (the message never echoes the number).
fn person(
    body: Result<Json<PersonBody>, JsonRejection>,
) -> Result<(PersonalNumber, bool), Refused> {
    let Json(body) = body.map_err(|_| {
        let expected =
            "the body must be JSON {\"personal_number\": string} (erase: \"dry_run\"?: bool)";
        Refused(StatusCode::BAD_REQUEST, expected)
    })?;
    let person = PersonalNumber::parse(&body.personal_number).map_err(|_| {
        let problem = "personal_number: not a valid personal identity number";
        Refused(StatusCode::BAD_REQUEST, problem)
    })?;
    Ok((person, body.dry_run))
}

/// `POST /v1/privacy/export`.
async fn export(
    State(api): State<PrivacyApi>,
    body: Result<Json<PersonBody>, JsonRejection>,
) -> Result<Response, Refused> {
    let (person, _) = person(body)?;
    let export = api
        .store
        .export_person(&person, ACTOR, SystemTime::now())
        .await
        .map_err(internal)?;
    tracing::info!("privacy API: personal data exported");
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    Ok((no_store, Json(export)).into_response())
}

/// `POST /v1/privacy/erase`.
async fn erase(
    State(api): State<PrivacyApi>,
    body: Result<Json<PersonBody>, JsonRejection>,
) -> Result<Response, Refused> {
    let (person, dry_run) = person(body)?;
    if dry_run {
        let report = api.store.preview_erase(&person).await.map_err(internal)?;
        return Ok(Json(json!({ "would_erase": report })).into_response());
    }
    let report = api
        .store
        .erase_person(&person, ACTOR, SystemTime::now())
        .await
        .map_err(internal)?;
    tracing::info!(%report, "privacy API: personal data erased");
    Ok(Json(json!({ "erased": report })).into_response())
}

/// A database failure: logged (store errors hold no personal data), answered 500.
fn internal(e: StoreError) -> Refused {
    tracing::error!(error = %e, "privacy API: database failure");
    Refused(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}
