//! The agent screen-pop page (`/agent`): live calls with their verdicts, a page per call
//! reachable from `X-Identity-Call`, "verify again", all updated live over Server-Sent Events.
//!
//! | request | answer |
//! |---|---|
//! | `GET /agent` | the live call list (HTML) |
//! | `GET /agent/calls/{id}` | one call (HTML); `{id}` is `X-Identity-Call` |
//! | `GET /agent/assets/agent.js`, `agent.css` | the page's script and style |
//! | `GET /agent/api/calls` | `{"calls": [CallView]}`, newest first (live and ended in the last 15 min) |
//! | `GET /agent/api/calls/{id}` | `CallView`; 404 |
//! | `GET /agent/api/events` | SSE: `event: call` with a `CallView` per known call, then one per change |
//! | `POST /agent/api/calls/{id}/reverify` `{"personal_number"?}` | 202; 400 bad number; 404; 409 why not |
//!
//! Access: `[agent]` token (`Authorization: Bearer`, or `?token=` once on a page, which sets an
//! HttpOnly SameSite=Strict cookie and redirects to the address without it) or basic auth.
//! With neither configured every request gets 401. `POST` needs a JSON body and, when the
//! browser sends `Origin`, the same origin.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::customers::{bearer, same_secret};
use crate::call::{CallView, Registry, ReverifyError};
use crate::config::AgentCredentials;
use crate::identity::PersonalNumber;

const INDEX_HTML: &str = include_str!("../../assets/agent/index.html");
const CALL_HTML: &str = include_str!("../../assets/agent/call.html");
const AGENT_JS: &str = include_str!("../../assets/agent/agent.js");
const AGENT_CSS: &str = include_str!("../../assets/agent/agent.css");

/// The cookie that carries the token after `?token=`.
const COOKIE: &str = "idgate_agent";

/// A reverify body is a few bytes.
const MAX_BODY: usize = 4 * 1024;

/// Same-origin scripts and styles only; nothing inline.
const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// What the handlers share.
#[derive(Clone)]
struct AgentApi {
    services: Arc<crate::call::Services>,
    credentials: Arc<AgentCredentials>,
    /// Ends the event streams when the server stops (graceful shutdown waits for them).
    shutdown: CancellationToken,
}

/// Who is asking: the basic-auth user, or `token`.
#[derive(Clone)]
struct Agent(String);

/// The agent routes.
pub fn router(
    services: Arc<crate::call::Services>,
    credentials: AgentCredentials,
    shutdown: CancellationToken,
) -> Router {
    let api = AgentApi {
        services,
        credentials: Arc::new(credentials),
        shutdown,
    };
    Router::new()
        .route("/agent", get(index))
        .route("/agent/", get(index))
        .route("/agent/calls/{id}", get(call_page))
        .route("/agent/assets/agent.js", get(script))
        .route("/agent/assets/agent.css", get(style))
        .route("/agent/api/calls", get(list))
        .route("/agent/api/calls/{id}", get(one))
        .route("/agent/api/calls/{id}/reverify", post(reverify))
        .route("/agent/api/events", get(events))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_agent))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Lets the request through with a valid credential; answers `?token=` with the cookie.
async fn require_agent(State(api): State<AgentApi>, request: Request, next: Next) -> Response {
    let creds = &api.credentials;
    if !creds.any() {
        return unauthorized(
            creds,
            "the agent page is not configured: set [agent] token or user and password",
        );
    }
    if let Some(given) = query_token(request.uri().query())
        && request.method() == axum::http::Method::GET
    {
        return match &creds.token {
            Some(expected) if same_secret(expected.expose(), &given) => {
                sign_in(request.uri().path(), expected.expose())
            }
            _ => refused(creds, "wrong-token"),
        };
    }
    let headers = request.headers();
    let by_token = creds.token.as_ref().is_some_and(|expected| {
        [bearer(headers), cookie(headers, COOKIE)]
            .into_iter()
            .flatten()
            .any(|given| same_secret(expected.expose(), given))
    });
    let agent = if by_token {
        Some("token".to_owned())
    } else {
        basic_user(headers, creds)
    };
    let Some(agent) = agent else {
        return refused(creds, "missing-or-wrong-credentials");
    };
    let mut request = request;
    request.extensions_mut().insert(Agent(agent));
    next.run(request).await
}

fn refused(creds: &AgentCredentials, reason: &'static str) -> Response {
    tracing::warn!(target: "idgate::security", reason, "agent page request refused");
    unauthorized(creds, "not signed in")
}

fn unauthorized(creds: &AgentCredentials, message: &str) -> Response {
    let mut response =
        (StatusCode::UNAUTHORIZED, Json(json!({ "error": message }))).into_response();
    let challenge = if creds.basic.is_some() {
        "Basic realm=\"idgate agents\", charset=\"UTF-8\""
    } else {
        "Bearer"
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// Sets the cookie and sends the browser to the same page without the token in the address
/// (so it stays out of history, bookmarks and Referer).
fn sign_in(path: &str, token: &str) -> Response {
    let mut response = Redirect::to(path).into_response();
    let cookie = format!("{COOKIE}={token}; Path=/agent; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `token=...` from a query string (no percent-decoding: tokens are URL-safe by advice).
fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_owned)
}

/// A cookie's value from the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then_some(v)
        })
}

/// The user, if `Authorization: Basic` carries the configured user and password.
fn basic_user(headers: &HeaderMap, creds: &AgentCredentials) -> Option<String> {
    let (user, password) = creds.basic.as_ref()?;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (given_user, given_password) = text.split_once(':')?;
    // Both compared, always, so timing does not tell which one was wrong.
    let user_ok = same_secret(user, given_user);
    let password_ok = same_secret(password.expose(), given_password);
    (user_ok && password_ok).then(|| user.clone())
}

/// An HTML page or asset with the page's security headers.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn call_page() -> Response {
    asset("text/html; charset=utf-8", CALL_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", AGENT_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", AGENT_CSS)
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn registry(api: &AgentApi) -> &Registry {
    &api.services.registry
}

/// `GET /agent/api/calls`.
async fn list(State(api): State<AgentApi>) -> Response {
    let calls = registry(&api).snapshot();
    Json(json!({ "calls": calls })).into_response()
}

/// `GET /agent/api/calls/{id}`.
async fn one(State(api): State<AgentApi>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(StatusCode::NOT_FOUND, "no such call");
    };
    match registry(&api).get(id) {
        Some(view) => Json(view).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such call on this instance"),
    }
}

/// The `POST .../reverify` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReverifyBody {
    /// The person to push to; else the person the call already knows.
    #[serde(default)]
    personal_number: Option<String>,
}

/// `POST /agent/api/calls/{id}/reverify`.
async fn reverify(
    State(api): State<AgentApi>,
    Extension(Agent(agent)): Extension<Agent>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ReverifyBody>, JsonRejection>,
) -> Response {
    if !same_origin(&headers) {
        tracing::warn!(target: "idgate::security", "cross-origin verify-again request refused");
        return error(StatusCode::FORBIDDEN, "cross-origin request");
    }
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(StatusCode::NOT_FOUND, "no such call");
    };
    let person = match body.personal_number.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match PersonalNumber::parse(text) {
            Ok(person) => Some(person),
            // The error names what is wrong, never the number.
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("not a valid personal identity number (12 digits): {e}"),
                );
            }
        },
    };
    match registry(&api).reverify(id, person, agent).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "status": "pending" }))).into_response(),
        Err(ReverifyError::UnknownCall) => error(StatusCode::NOT_FOUND, "no such call"),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

/// No `Origin`, or an `Origin` whose host is the `Host` the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// `GET /agent/api/events`.
async fn events(State(api): State<AgentApi>) -> Response {
    call_events(api.services, api.shutdown)
}

/// Server-Sent Events: `event: call` for every known call, then one per change; a subscriber
/// that falls behind gets every call again. Ends when `shutdown` fires.
pub(super) fn call_events(
    services: Arc<crate::call::Services>,
    shutdown: CancellationToken,
) -> Response {
    let receiver = services.registry.subscribe();
    // Newest first: popped from the end, the oldest call comes first.
    let backlog: Vec<Arc<CallView>> = services.registry.snapshot();
    let state = (receiver, backlog, shutdown, services);
    let stream = futures_util::stream::unfold(
        state,
        |(mut receiver, mut backlog, shutdown, services)| async move {
            loop {
                if let Some(view) = backlog.pop() {
                    let event = call_event(&view);
                    return Some((event, (receiver, backlog, shutdown, services)));
                }
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    next = receiver.recv() => next,
                };
                match next {
                    Ok(view) => {
                        let event = call_event(&view);
                        return Some((event, (receiver, backlog, shutdown, services)));
                    }
                    Err(RecvError::Lagged(_)) => backlog = services.registry.snapshot(),
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn call_event(view: &CallView) -> Result<Event, axum::Error> {
    Event::default().event("call").json_data(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn basic(user: &str, password: &str) -> String {
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn basic_auth_needs_both_user_and_password() {
        let creds = AgentCredentials {
            token: None,
            basic: Some((
                "alice".to_owned(),
                crate::config::Token::new("pw".to_owned()),
            )),
        };
        let ok = headers(&[("authorization", &basic("alice", "pw"))]);
        assert_eq!(basic_user(&ok, &creds).as_deref(), Some("alice"));
        for (user, password) in [("alice", "px"), ("bob", "pw"), ("", "")] {
            let bad = headers(&[("authorization", &basic(user, password))]);
            assert_eq!(basic_user(&bad, &creds), None);
        }
        let garbage = headers(&[("authorization", "Basic %%%")]);
        assert_eq!(basic_user(&garbage, &creds), None);
        assert_eq!(basic_user(&HeaderMap::new(), &creds), None);
    }

    #[test]
    fn cookies_and_query_tokens_are_found() {
        let h = headers(&[("cookie", "a=1; idgate_agent=sekret; b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("sekret"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(query_token(Some("x=1&token=abc")).as_deref(), Some("abc"));
        assert_eq!(query_token(Some("tokens=abc")), None);
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn only_same_origin_posts_pass() {
        assert!(same_origin(&HeaderMap::new()));
        let same = headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(same_origin(&same));
        let other = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(!same_origin(&other));
        let null = headers(&[("origin", "null"), ("host", "127.0.0.1:8080")]);
        assert!(!same_origin(&null));
    }
}
