//! Operations: readiness, Prometheus metrics, the calls (stored and live), a live event stream,
//! draining, and the OpenAPI document that describes the management API.
//!
//! | request | auth | answer |
//! |---|---|---|
//! | `GET /readyz` | none | 200 `{"status":"ready"}`; 503 `{"status":"draining"|"overloaded"}` with `Retry-After` |
//! | `GET /metrics` | none | OpenMetrics text |
//! | `GET /v1/openapi.json` | none | the OpenAPI 3.1 document (`assets/openapi.json`) |
//! | `GET /v1/calls?from&to&status&reason&caller&limit` | bearer | `{"calls": [..]}` from the database, newest first |
//! | `GET /v1/calls/{id}` | bearer | the stored call, its verification and security events, its re-verifications and, while known here, its live view |
//! | `GET /v1/events` | bearer | SSE, as `/agent/api/events` |
//! | `POST /v1/drain` | bearer | 202: the instance drains (new calls 503, exit when the last call ends) |

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::customers::refuse_without_token;
use crate::call::{Refusal, Services};
use crate::config::Token;
use crate::identity::Reason;
use crate::store::{CallFilter, CallRow, CallStatus, SecurityEvent, StoreError, VerificationEvent};
use crate::timefmt::{parse_rfc3339, rfc3339_millis};

/// The OpenAPI document of the management API.
pub const OPENAPI: &str = include_str!("../../assets/openapi.json");

/// What the handlers share.
#[derive(Clone)]
struct AdminApi {
    services: Arc<Services>,
    token: Option<Token>,
    shutdown: CancellationToken,
}

/// The operations routes.
pub fn router(
    services: Arc<Services>,
    token: Option<Token>,
    shutdown: CancellationToken,
) -> Router {
    let api = AdminApi {
        services,
        token,
        shutdown,
    };
    let guarded = Router::new()
        .route("/v1/calls", get(list_calls))
        .route("/v1/calls/{id}", get(one_call))
        .route("/v1/events", get(events))
        .route("/v1/drain", post(drain))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token));
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .merge(guarded)
        .with_state(api)
}

async fn require_token(State(api): State<AdminApi>, request: Request, next: Next) -> Response {
    match refuse_without_token(api.token.as_ref(), request.headers()) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `GET /readyz`: whether a load balancer should send new calls here.
async fn readyz(State(api): State<AdminApi>) -> Response {
    let admission = &api.services.admission;
    let active = api.services.registry.active();
    match admission.ready(active) {
        Ok(()) => Json(json!({ "status": "ready", "active_calls": active })).into_response(),
        Err(refusal) => {
            let status = match refusal {
                Refusal::Draining => "draining",
                Refusal::TooManyCalls | Refusal::TooFast | Refusal::MediaOverload => "overloaded",
            };
            let body = json!({ "status": status, "active_calls": active });
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            if let Ok(value) = HeaderValue::from_str(&admission.retry_after().to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

/// `GET /metrics`.
async fn metrics(State(api): State<AdminApi>) -> Response {
    let services = &api.services;
    let text = services
        .metrics
        .encode(services.registry.active(), services.admission.is_draining());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// `GET /v1/openapi.json`.
async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The `GET /v1/calls` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallsQuery {
    from: Option<String>,
    to: Option<String>,
    status: Option<String>,
    reason: Option<String>,
    caller: Option<String>,
    limit: Option<u32>,
}

impl CallsQuery {
    /// The store filter, or a 400 naming the parameter.
    fn filter(self) -> Result<CallFilter, Box<Response>> {
        let bad = |name: &str, expected: &str| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("{name}: expected {expected}"),
            ))
        };
        let time = |name: &str, value: Option<String>| match value {
            None => Ok(None),
            Some(text) => parse_rfc3339(&text)
                .map(Some)
                .ok_or_else(|| bad(name, "RFC 3339 UTC, e.g. 2026-11-23T08:00:00Z")),
        };
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => {
                Some(CallStatus::parse(s).ok_or_else(|| bad("status", "verified or unverified"))?)
            }
        };
        let reason = match self.reason.as_deref() {
            None => None,
            Some(r) => Some(Reason::parse(r).ok_or_else(|| bad("reason", "a reason token"))?),
        };
        Ok(CallFilter {
            from: time("from", self.from)?,
            to: time("to", self.to)?,
            status,
            reason,
            caller: self.caller,
            limit: self.limit.unwrap_or(100),
        })
    }
}

/// `GET /v1/calls`.
async fn list_calls(
    State(api): State<AdminApi>,
    query: Result<Query<CallsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let filter = match query.filter() {
        Ok(f) => f,
        Err(response) => return *response,
    };
    match api.services.store.list_calls(&filter).await {
        Ok(rows) => {
            let calls: Vec<Value> = rows.iter().map(call_json).collect();
            Json(json!({ "calls": calls })).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "calls not listed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            )
        }
    }
}

/// `GET /v1/calls/{id}`.
async fn one_call(State(api): State<AdminApi>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(StatusCode::NOT_FOUND, "no such call");
    };
    let store = &api.services.store;
    let read = async {
        Ok::<_, StoreError>((
            store.get_call(id).await?,
            store.reverifications_for(id).await?,
            store.verification_events_for(id).await?,
            store.security_events_for(id).await?,
        ))
    };
    let (row, reverifications, verification, security) = match read.await {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(error = %e, "call not read");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            );
        }
    };
    let live = api.services.registry.get(id);
    let Some(row) = row else {
        return match live {
            Some(view) => Json(json!({ "id": id, "live": view })).into_response(),
            None => error(StatusCode::NOT_FOUND, "no such call"),
        };
    };
    let mut body = call_json(&row);
    body["reverifications"] = reverifications.iter().map(|r| r.to_json()).collect();
    body["verification_events"] = verification.iter().map(verification_event_json).collect();
    body["security_events"] = security.iter().map(security_event_json).collect();
    body["live"] = serde_json::to_value(live).unwrap_or(Value::Null);
    Json(body).into_response()
}

/// One step of a verification: the provider, what happened and its token (an order
/// reference, a hint code or a reason; never a personal identity number).
fn verification_event_json(event: &VerificationEvent) -> Value {
    json!({
        "at": rfc3339_millis(event.at),
        "method": event.method.as_str(),
        "kind": event.kind.as_str(),
        "detail": event.detail,
    })
}

/// A spoofing attempt or fraud signal in this call (header names only, never values).
fn security_event_json(event: &SecurityEvent) -> Value {
    json!({
        "at": rfc3339_millis(event.at),
        "kind": event.kind.as_str(),
        "detail": event.detail,
        "source": event.source.map(|ip| ip.to_string()),
    })
}

/// A stored call as JSON (never the person: the row holds none).
fn call_json(row: &CallRow) -> Value {
    let time = |t: Option<SystemTime>| t.map(rfc3339_millis);
    json!({
        "id": row.id,
        "sip_call_id": row.sip_call_id,
        "caller": row.caller,
        "called": row.called,
        "route": row.route,
        "started_at": rfc3339_millis(row.started_at),
        "answered_at": time(row.answered_at),
        "decided_at": time(row.verdict_at),
        "status": row.status.map(CallStatus::as_str),
        "reason": row.reason.map(Reason::as_str),
        "method": row.method.map(|m| m.as_str()),
        "mode": row.transfer_mode.map(|m| m.as_str()),
        "outcome": row.transfer_outcome.map(|o| o.as_str()),
        "ended_at": time(row.ended_at),
    })
}

/// `GET /v1/events`.
async fn events(State(api): State<AdminApi>) -> Response {
    super::agent::call_events(api.services, api.shutdown)
}

/// `POST /v1/drain`.
async fn drain(State(api): State<AdminApi>) -> Response {
    let first = api.services.admission.drain();
    if first {
        tracing::info!("drain requested over the API");
    }
    let body = json!({
        "status": "draining",
        "active_calls": api.services.registry.active(),
    });
    (StatusCode::ACCEPTED, Json(body)).into_response()
}
