//! The fake's state: scripted outcomes per person, orders as timelines, and the three
//! endpoints' logic with the validation the real service does.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{FakeOutcome, FakeStep, FakeTiming};
use crate::verify::bankid::MAX_VISIBLE_DATA;

/// An answer: status and JSON body.
pub(super) type Answer = (StatusCode, Value);

/// An error answer in the API's shape.
pub(super) fn error(status: StatusCode, code: &str, details: &str) -> Answer {
    (status, json!({ "errorCode": code, "details": details }))
}

fn invalid(details: &str) -> Answer {
    error(StatusCode::BAD_REQUEST, "invalidParameters", details)
}

/// `/phone/auth` body as the API defines it; anything else is `invalidParameters`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuthBody {
    personal_number: String,
    call_initiator: String,
    user_visible_data: Option<String>,
    user_visible_data_format: Option<String>,
    user_non_visible_data: Option<String>,
    #[allow(dead_code)] // Parsed to check the shape; the fake does not act on it.
    requirement: Option<AuthRequirement>,
}

/// `requirement` of `/phone/auth`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // Parsed to check the shape; the fake does not act on it.
struct AuthRequirement {
    pin_code: Option<bool>,
    mrtd: Option<bool>,
    certificate_policies: Option<Vec<String>>,
}

/// `/collect` and `/cancel` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OrderBody {
    order_ref: String,
}

/// One order: whose, its timeline, and when it started.
struct Order {
    person: String,
    steps: Vec<FakeStep>,
    started: Instant,
    /// A newer order for the same person cancelled this one.
    superseded: bool,
}

/// Where an order is at a moment.
#[derive(Debug, PartialEq, Eq)]
enum State<'a> {
    Pending(&'a str),
    Failed(&'a str),
    Complete(&'a str),
}

impl Order {
    fn state(&self, timing: &FakeTiming, now: Instant) -> State<'_> {
        if self.superseded {
            return State::Failed("cancelled");
        }
        let elapsed = now.saturating_duration_since(self.started);
        let index = step_index(elapsed, timing.step).min(self.steps.len().saturating_sub(1));
        match self.steps.get(index) {
            Some(FakeStep::Pending(_)) | None if elapsed >= timing.expiry => {
                State::Failed("expiredTransaction")
            }
            Some(FakeStep::Pending(hint)) => State::Pending(hint),
            Some(FakeStep::Failed(hint)) => State::Failed(hint),
            Some(FakeStep::Complete(person)) => State::Complete(person.as_digits()),
            None => State::Pending("outstandingTransaction"),
        }
    }
}

fn step_index(elapsed: Duration, step: Duration) -> usize {
    if step.is_zero() {
        return usize::MAX;
    }
    usize::try_from(elapsed.as_nanos() / step.as_nanos()).unwrap_or(usize::MAX)
}

/// Everything the fake remembers.
#[derive(Default)]
pub(super) struct Orders {
    scripts: HashMap<String, FakeOutcome>,
    orders: HashMap<String, Order>,
    /// Orders cancelled through `/cancel`.
    pub cancelled: usize,
}

impl Orders {
    /// Scripts the outcome of `person`'s (12 digits) next orders.
    pub fn script(&mut self, person: String, outcome: FakeOutcome) {
        self.scripts.insert(person, outcome);
    }

    /// `POST /phone/auth`.
    pub fn auth(&mut self, body: &[u8], timing: &FakeTiming) -> Answer {
        let body: AuthBody = match serde_json::from_slice(body) {
            Ok(body) => body,
            Err(e) => return invalid(&format!("bad body: {e}")),
        };
        if let Err(details) = check_auth(&body) {
            return invalid(details);
        }
        let outcome = self.scripts.get(&body.personal_number).cloned();
        let steps = match outcome.unwrap_or(FakeOutcome::Approve) {
            FakeOutcome::ServerError => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internalError",
                    "scripted",
                );
            }
            other => other.steps(&body.personal_number),
        };
        let now = Instant::now();
        if self.supersede_pending(&body.personal_number, timing, now) {
            let details = "an order for this person is already in progress";
            return error(StatusCode::BAD_REQUEST, "alreadyInProgress", details);
        }
        let order_ref = uuid::Uuid::new_v4().to_string();
        let order = Order {
            person: body.personal_number,
            steps,
            started: now,
            superseded: false,
        };
        self.orders.insert(order_ref.clone(), order);
        (StatusCode::OK, json!({ "orderRef": order_ref }))
    }

    /// Cancels (as `cancelled`) a pending order of `person`; whether there was one.
    fn supersede_pending(&mut self, person: &str, timing: &FakeTiming, now: Instant) -> bool {
        let pending = self
            .orders
            .values_mut()
            .find(|o| o.person == person && matches!(o.state(timing, now), State::Pending(_)));
        match pending {
            Some(order) => {
                order.superseded = true;
                true
            }
            None => false,
        }
    }

    /// `POST /collect`.
    pub fn collect(&mut self, body: &[u8], timing: &FakeTiming) -> Answer {
        let order_ref = match order_ref(body) {
            Ok(order_ref) => order_ref,
            Err(answer) => return answer,
        };
        let Some(order) = self.orders.get(&order_ref) else {
            return invalid("no such order");
        };
        let answer = match order.state(timing, Instant::now()) {
            State::Pending(hint) => {
                json!({ "orderRef": order_ref, "status": "pending", "hintCode": hint })
            }
            State::Failed(hint) => {
                json!({ "orderRef": order_ref, "status": "failed", "hintCode": hint })
            }
            State::Complete(person) => json!({
                "orderRef": order_ref,
                "status": "complete",
                "completionData": completion_data(person),
            }),
        };
        (StatusCode::OK, answer)
    }

    /// `POST /cancel`: the order is gone afterwards.
    pub fn cancel(&mut self, body: &[u8]) -> Answer {
        let order_ref = match order_ref(body) {
            Ok(order_ref) => order_ref,
            Err(answer) => return answer,
        };
        if self.orders.remove(&order_ref).is_none() {
            return invalid("no such order");
        }
        self.cancelled += 1;
        (StatusCode::OK, json!({}))
    }
}

/// The `orderRef` of a `/collect` or `/cancel` body.
fn order_ref(body: &[u8]) -> Result<String, Answer> {
    match serde_json::from_slice::<OrderBody>(body) {
        Ok(body) if !body.order_ref.is_empty() => Ok(body.order_ref),
        Ok(_) => Err(invalid("orderRef is empty")),
        Err(e) => Err(invalid(&format!("bad body: {e}"))),
    }
}

/// The field rules of `/phone/auth`.
fn check_auth(body: &AuthBody) -> Result<(), &'static str> {
    let pnr = &body.personal_number;
    if pnr.len() != 12 || !pnr.bytes().all(|b| b.is_ascii_digit()) {
        return Err("personalNumber must be 12 digits");
    }
    if !matches!(body.call_initiator.as_str(), "user" | "RP") {
        return Err("callInitiator must be \"user\" or \"RP\"");
    }
    if let Some(text) = &body.user_visible_data {
        let decoded = base64_field(text).ok_or("userVisibleData must be base64, 1-1500")?;
        String::from_utf8(decoded).map_err(|_| "userVisibleData must be UTF-8")?;
    }
    if let Some(format) = &body.user_visible_data_format
        && (format != "simpleMarkdownV1" || body.user_visible_data.is_none())
    {
        return Err("userVisibleDataFormat must be simpleMarkdownV1, with userVisibleData");
    }
    if let Some(data) = &body.user_non_visible_data {
        base64_field(data).ok_or("userNonVisibleData must be base64, 1-1500")?;
    }
    Ok(())
}

/// The bytes of a base64 field of 1 to 1500 characters.
fn base64_field(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() > MAX_VISIBLE_DATA {
        return None;
    }
    BASE64.decode(text).ok()
}

/// `completionData` for `person`, with placeholder evidence.
fn completion_data(person: &str) -> Value {
    json!({
        "user": {
            "personalNumber": person,
            "name": "Tolvan Tolvansson",
            "givenName": "Tolvan",
            "surname": "Tolvansson",
        },
        "device": { "ipAddress": "192.0.2.10", "uhi": "ZmFrZS11aGk=" },
        "bankIdIssueDate": "2024-06-10",
        "stepUp": { "mrtd": false },
        "signature": BASE64.encode("<fake-signature/>"),
        "ocspResponse": BASE64.encode("fake-ocsp-response"),
    })
}
