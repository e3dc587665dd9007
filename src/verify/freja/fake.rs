//! A strict local fake of Freja eID's Authentication Service, **for tests and demos only**: it
//! serves the three endpoints idgate uses over mutual TLS ([`crate::verify::tls::serve_tls`]),
//! accepts only `POST`, validates the base64 JSON bodies strictly and answers Freja-style error
//! JSON (`{"code", "message"}`, HTTP 400) for anything off. Orders go `STARTED` →
//! `DELIVERED_TO_MOBILE` → their scripted final status on a configurable clock. A second
//! order for a person while one is active cancels both (`RP_CANCELED`), as Freja documents;
//! a further order for that person within the cool-down gets error 2000. `details` is an
//! unsigned compact JWS ([`super::api::unsigned_jws`]).
//!
//! It supports `userInfoType` `SSN` and `PHONE` (the others get error 1001), and unscripted
//! persons approve, unscripted phone numbers get error 1012 (no such user).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use super::api::{
    AuthResult, BasicUserInfo, BodyError, CANCEL_PARAM, CANCEL_PATH, DetailsPayload, INIT_PARAM,
    INIT_PATH, RESULT_PARAM, RESULT_PATH, RequestedAttributes, SsnUserInfo, Status, decode_body,
    unsigned_jws,
};
use crate::identity::{E164, PersonalNumber};

/// How a faked order ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeOutcome {
    /// `APPROVED`, with the person's SSN and the name "Tolvan Tolvansson".
    Approve,
    /// `CANCELED`: the user declined.
    Decline,
    /// `REJECTED`: rejected for security reasons.
    Reject,
    /// `EXPIRED`.
    Expire,
    /// `initAuthentication` answers HTTP 500.
    ServerError,
}

/// The fake's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeTimings {
    /// From `STARTED` to `DELIVERED_TO_MOBILE`.
    pub delivered_after: Duration,
    /// From the start to the final status.
    pub final_after: Duration,
    /// After a collision, how long further orders for that person get error 2000.
    pub cooldown: Duration,
}

impl Default for FakeTimings {
    /// Demo pace: delivered after 1 s, final after 5 s, 10 s cool-down.
    fn default() -> Self {
        Self {
            delivered_after: Duration::from_secs(1),
            final_after: Duration::from_secs(5),
            cooldown: Duration::from_secs(10),
        }
    }
}

/// One request the fake accepted as well-formed enough to decode.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The endpoint's path.
    pub path: String,
    /// The decoded JSON parameter.
    pub json: Map<String, Value>,
}

/// One order.
#[derive(Debug)]
struct FakeOrder {
    /// The person (12 digits).
    ssn: String,
    started: Instant,
    outcome: FakeOutcome,
    /// `RP_CANCELED` once cancelled or collided.
    forced: Option<Status>,
    /// `attributesToReturn` as asked.
    attributes: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    timings: Option<FakeTimings>,
    people: HashMap<String, FakeOutcome>,
    phones: HashMap<String, (String, FakeOutcome)>,
    orders: HashMap<String, FakeOrder>,
    collided: HashMap<String, Instant>,
    cancelled: usize,
    requests: Vec<RecordedRequest>,
    next_ref: u64,
}

type Fake = Arc<Mutex<State>>;

/// A running fake; dropping it stops the server.
#[derive(Debug)]
pub struct FakeFreja {
    state: Fake,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl FakeFreja {
    /// Starts the fake on `127.0.0.1` at a free port with `tls` (require client certificates
    /// in it, e.g. `TestPki::server_config(true)`).
    pub async fn start(tls: rustls::ServerConfig, timings: FakeTimings) -> std::io::Result<Self> {
        let state = Fake::default();
        lock(&state).timings = Some(timings);
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let (addr, server) = crate::verify::tls::serve_tls(router, tls).await?;
        Ok(Self {
            state,
            addr,
            server,
        })
    }

    /// The base URL to configure as `provider.freja.url`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// How this person's orders (by SSN) end from now on.
    pub fn script_person(&self, person: &PersonalNumber, outcome: FakeOutcome) {
        let ssn = person.as_digits().to_owned();
        lock(&self.state).people.insert(ssn, outcome);
    }

    /// Makes `phone` a Freja user who is `person`, and how pushes to that number end.
    pub fn script_phone(&self, phone: &E164, person: &PersonalNumber, outcome: FakeOutcome) {
        let entry = (person.as_digits().to_owned(), outcome);
        lock(&self.state)
            .phones
            .insert(phone.as_str().to_owned(), entry);
    }

    /// How many active orders were cancelled by `cancel`.
    pub fn cancelled_count(&self) -> usize {
        lock(&self.state).cancelled
    }

    /// Every decodable request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }
}

impl Drop for FakeFreja {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The state, even if a handler panicked while holding it.
fn lock(state: &Fake) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Invalid parameters (error codes as in `FrejaEidErrorCode`, Freja's Java client).
const INVALID_PARAMETERS: u32 = 1000;
/// Invalid or missing `userInfoType`.
const INVALID_USER_INFO_TYPE: u32 = 1001;
/// Invalid or missing `userInfo`.
const INVALID_USER_INFO: u32 = 1002;
/// Invalid `minRegistrationLevel`.
const INVALID_MIN_REGISTRATION_LEVEL: u32 = 1007;
/// The JSON request cannot be parsed.
const INVALID_JSON: u32 = 1010;
/// No Freja user with this user info.
const NO_SUCH_USER: u32 = 1012;
/// Invalid reference (nonexistent or expired).
const INVALID_REFERENCE: u32 = 1100;
/// Previous request rejected for security reasons (requests in a row for one person).
const REQUEST_IN_A_ROW: u32 = super::api::ERROR_REQUEST_IN_A_ROW;
/// Invalid `attributesToReturn`.
const INVALID_ATTRIBUTES: u32 = 2002;

/// A Freja error answer.
fn error(code: u32) -> Response {
    let message = match code {
        INVALID_PARAMETERS => "Invalid parameters.",
        INVALID_USER_INFO_TYPE => "Invalid or missing userInfoType.",
        INVALID_USER_INFO => "Invalid or missing userInfo.",
        INVALID_MIN_REGISTRATION_LEVEL => "Invalid minimum registration level.",
        INVALID_JSON => "JSON request cannot be parsed.",
        NO_SUCH_USER => {
            "User with the specified user info does not exist in the Freja eID database."
        }
        INVALID_REFERENCE => "Invalid reference (for example, nonexistent or expired).",
        REQUEST_IN_A_ROW => {
            "Authentication request failed. Previous authentication request was rejected \
                 due to security reasons."
        }
        INVALID_ATTRIBUTES => "Invalid attributesToReturn parameter.",
        _ => "Internal error.",
    };
    let body = json!({ "code": code, "message": message }).to_string();
    (StatusCode::BAD_REQUEST, json_headers(), body).into_response()
}

fn json_headers() -> [(axum::http::HeaderName, &'static str); 1] {
    [(axum::http::header::CONTENT_TYPE, "application/json")]
}

fn ok(value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_default();
    (StatusCode::OK, json_headers(), body).into_response()
}

/// Every request: method, path, body, then the endpoint.
async fn handle(Shared(state): Shared<Fake>, method: Method, uri: Uri, body: Bytes) -> Response {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = uri.path();
    let param = match path {
        INIT_PATH => INIT_PARAM,
        RESULT_PATH => RESULT_PARAM,
        CANCEL_PATH => CANCEL_PARAM,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let json = match decode_body(param, &body) {
        Ok(json) => json,
        Err(BodyError::Parameter(_)) => return error(INVALID_PARAMETERS),
        Err(BodyError::Base64 | BodyError::Json) => return error(INVALID_JSON),
    };
    let mut state = lock(&state);
    state.requests.push(RecordedRequest {
        path: path.to_owned(),
        json: json.clone(),
    });
    let answer = match path {
        INIT_PATH => state.init(&json),
        RESULT_PATH => auth_ref(&json).and_then(|r| state.result(r)),
        _ => auth_ref(&json).and_then(|r| state.cancel(r)),
    };
    answer.unwrap_or_else(error)
}

/// The `authRef` of a `{"authRef"}` body (no other keys).
fn auth_ref(json: &Map<String, Value>) -> Result<&str, u32> {
    match (json.len(), json.get("authRef").and_then(Value::as_str)) {
        (1, Some(r)) => Ok(r),
        _ => Err(INVALID_PARAMETERS),
    }
}

/// A validated `initAuthRequest`: who, and what to return.
struct Init {
    user: User,
    attributes: Vec<String>,
}

enum User {
    Ssn(String),
    Phone(String),
}

/// `attributesToReturn` values Freja documents.
const KNOWN_ATTRIBUTES: [&str; 13] = [
    "BASIC_USER_INFO",
    "EMAIL_ADDRESS",
    "ALL_EMAIL_ADDRESSES",
    "ALL_PHONE_NUMBERS",
    "DATE_OF_BIRTH",
    "AGE",
    "PHOTO",
    "ADDRESSES",
    "SSN",
    "REGISTRATION_LEVEL",
    "RELYING_PARTY_USER_ID",
    "INTEGRATOR_SPECIFIC_USER_ID",
    "CUSTOM_IDENTIFIER",
];

/// Checks an `initAuthRequest` the way Freja's error codes describe.
fn validate_init(json: &Map<String, Value>) -> Result<Init, u32> {
    const KEYS: [&str; 6] = [
        "userInfoType",
        "userInfo",
        "minRegistrationLevel",
        "attributesToReturn",
        "userConfirmationMethod",
        "useDynamicQrCode",
    ];
    if json.keys().any(|k| !KEYS.contains(&k.as_str())) {
        return Err(INVALID_PARAMETERS);
    }
    let user_info = json.get("userInfo").and_then(Value::as_str);
    let user_info = user_info.filter(|u| !u.is_empty() && u.len() <= 256);
    let user = match json.get("userInfoType").and_then(Value::as_str) {
        Some("SSN") => User::Ssn(ssn_user_info(user_info.ok_or(INVALID_USER_INFO)?)?),
        Some("PHONE") => User::Phone(phone_user_info(user_info.ok_or(INVALID_USER_INFO)?)?),
        _ => return Err(INVALID_USER_INFO_TYPE),
    };
    match json.get("minRegistrationLevel").and_then(Value::as_str) {
        Some("EXTENDED" | "PLUS") => {}
        Some("BASIC") if matches!(user, User::Phone(_)) => {}
        _ => return Err(INVALID_MIN_REGISTRATION_LEVEL),
    }
    let attributes = match json.get("attributesToReturn") {
        None => Vec::new(),
        Some(list) => attributes(list).ok_or(INVALID_ATTRIBUTES)?,
    };
    Ok(Init { user, attributes })
}

/// SSN `userInfo`: base64 of exactly `{"country", "ssn"}`; the 12 digits.
fn ssn_user_info(user_info: &str) -> Result<String, u32> {
    let bytes = STANDARD.decode(user_info).map_err(|_| INVALID_USER_INFO)?;
    let map: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| INVALID_USER_INFO)?;
    let info: SsnUserInfo =
        serde_json::from_value(Value::Object(map.clone())).map_err(|_| INVALID_USER_INFO)?;
    let country_ok =
        info.country.len() == 2 && info.country.bytes().all(|b| b.is_ascii_uppercase());
    let digits_ok = info.ssn.len() == 12 && info.ssn.bytes().all(|b| b.is_ascii_digit());
    if map.len() == 2 && country_ok && digits_ok {
        Ok(info.ssn)
    } else {
        Err(INVALID_USER_INFO)
    }
}

/// PHONE `userInfo`: `+`, a non-zero digit, 7 to 15 digits in all.
fn phone_user_info(user_info: &str) -> Result<String, u32> {
    let digits = user_info.strip_prefix('+').ok_or(INVALID_USER_INFO)?;
    let shape = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if shape {
        Ok(user_info.to_owned())
    } else {
        Err(INVALID_USER_INFO)
    }
}

/// `[{"attribute": "<known>"}]`, each object with that one key.
fn attributes(list: &Value) -> Option<Vec<String>> {
    let list = list.as_array()?;
    list.iter()
        .map(|item| {
            let item = item.as_object().filter(|o| o.len() == 1)?;
            let name = item.get("attribute")?.as_str()?;
            KNOWN_ATTRIBUTES.contains(&name).then(|| name.to_owned())
        })
        .collect()
}

impl State {
    fn timings(&self) -> FakeTimings {
        self.timings.unwrap_or_default()
    }

    /// `initAuthentication`.
    fn init(&mut self, json: &Map<String, Value>) -> Result<Response, u32> {
        let init = validate_init(json)?;
        let (ssn, outcome) = match &init.user {
            User::Ssn(ssn) => {
                let outcome = self.people.get(ssn).copied();
                (ssn.clone(), outcome.unwrap_or(FakeOutcome::Approve))
            }
            User::Phone(phone) => self.phones.get(phone).cloned().ok_or(NO_SUCH_USER)?,
        };
        if outcome == FakeOutcome::ServerError {
            return Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        let now = Instant::now();
        let cooldown = self.timings().cooldown;
        if self.collided.get(&ssn).is_some_and(|t| now < *t + cooldown) {
            return Err(REQUEST_IN_A_ROW);
        }
        let collision = self.cancel_active_orders_of(&ssn, now);
        self.next_ref += 1;
        let auth_ref = format!("fake-auth-ref-{}", self.next_ref);
        let order = FakeOrder {
            ssn,
            started: now,
            outcome,
            forced: collision.then_some(Status::RpCanceled),
            attributes: init.attributes,
        };
        self.orders.insert(auth_ref.clone(), order);
        Ok(ok(&json!({ "authRef": auth_ref })))
    }

    /// A second order for a person cancels the active one (and, by the caller, the new one).
    fn cancel_active_orders_of(&mut self, ssn: &str, now: Instant) -> bool {
        let timings = self.timings();
        let mut collision = false;
        for order in self.orders.values_mut() {
            if order.ssn == ssn && !order.status(now, &timings).is_final() {
                order.forced = Some(Status::RpCanceled);
                collision = true;
            }
        }
        if collision {
            self.collided.insert(ssn.to_owned(), now);
        }
        collision
    }

    /// `getOneResult`.
    fn result(&self, auth_ref: &str) -> Result<Response, u32> {
        let order = self.orders.get(auth_ref).ok_or(INVALID_REFERENCE)?;
        let status = order.status(Instant::now(), &self.timings());
        let details = (status == Status::Approved).then(|| {
            unsigned_jws(&DetailsPayload {
                auth_ref: auth_ref.to_owned(),
                status,
                requested_attributes: order.requested_attributes(),
            })
        });
        Ok(ok(&AuthResult {
            auth_ref: auth_ref.to_owned(),
            status,
            details,
        }))
    }

    /// `cancel`: only an active order can be cancelled.
    fn cancel(&mut self, auth_ref: &str) -> Result<Response, u32> {
        let timings = self.timings();
        let order = self.orders.get_mut(auth_ref).ok_or(INVALID_REFERENCE)?;
        if order.status(Instant::now(), &timings).is_final() {
            return Err(INVALID_REFERENCE);
        }
        order.forced = Some(Status::RpCanceled);
        self.cancelled += 1;
        Ok(ok(&json!({})))
    }
}

impl FakeOrder {
    fn status(&self, now: Instant, timings: &FakeTimings) -> Status {
        if let Some(forced) = self.forced {
            return forced;
        }
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < timings.delivered_after {
            Status::Started
        } else if elapsed < timings.final_after {
            Status::DeliveredToMobile
        } else {
            match self.outcome {
                FakeOutcome::Approve => Status::Approved,
                FakeOutcome::Decline => Status::Canceled,
                FakeOutcome::Reject => Status::Rejected,
                FakeOutcome::Expire | FakeOutcome::ServerError => Status::Expired,
            }
        }
    }

    /// The attributes asked for, with the fake's data.
    fn requested_attributes(&self) -> RequestedAttributes {
        let asked = |name: &str| self.attributes.iter().any(|a| a == name);
        RequestedAttributes {
            basic_user_info: asked("BASIC_USER_INFO").then(|| BasicUserInfo {
                name: "Tolvan".to_owned(),
                surname: "Tolvansson".to_owned(),
            }),
            ssn: asked("SSN").then(|| SsnUserInfo {
                country: "SE".to_owned(),
                ssn: self.ssn.clone(),
            }),
        }
    }
}

#[cfg(test)]
impl crate::verify::contract::FakeControl for FakeFreja {
    fn script(&self, person: &PersonalNumber, outcome: crate::verify::contract::Scripted) {
        use crate::verify::contract::Scripted;
        let outcome = match outcome {
            Scripted::Approve => FakeOutcome::Approve,
            Scripted::Decline => FakeOutcome::Decline,
            // Freja has no "not in a call" answer (see `has_not_in_call`); never asked.
            Scripted::NotInCall => FakeOutcome::Reject,
            Scripted::Expire => FakeOutcome::Expire,
            Scripted::ServerError => FakeOutcome::ServerError,
        };
        self.script_person(person, outcome);
    }

    fn cancelled(&self) -> usize {
        self.cancelled_count()
    }

    fn has_not_in_call(&self) -> bool {
        false
    }
}
