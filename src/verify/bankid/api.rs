//! RP API v6.0 wire types (`/phone/auth`, `/collect`, `/cancel`) and how BankID's status and
//! hint codes map onto [`Hint`] and [`Failure`]. Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::identity::{PersonName, PersonalNumber, VerifiedPerson};
use crate::verify::{Failure, Hint};

/// `POST /phone/auth` request body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PhoneAuthRequest {
    /// 12 digits. Personal data: never log this struct.
    pub personal_number: String,
    /// `"user"`: the caller called us.
    pub call_initiator: &'static str,
    /// Base64 UTF-8 intent text.
    pub user_visible_data: String,
    /// `"simpleMarkdownV1"`.
    pub user_visible_data_format: &'static str,
    /// Base64 of the call id.
    pub user_non_visible_data: String,
    /// Present only when something is required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirement: Option<Requirement>,
}

/// `requirement` of `/phone/auth`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Requirement {
    /// The person must use their PIN.
    pub pin_code: bool,
}

/// `{ "orderRef": ... }`: the `/collect` and `/cancel` request body, and `/phone/auth`'s answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderRef {
    /// BankID's id of the order.
    pub order_ref: String,
}

/// `/collect` response.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CollectResponse {
    /// `pending`, `failed` or `complete`.
    pub status: String,
    /// Present while pending and when failed.
    #[serde(default)]
    pub hint_code: Option<String>,
    /// Present when complete.
    #[serde(default)]
    pub completion_data: Option<CompletionData>,
}

/// An error response body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ErrorBody {
    /// `alreadyInProgress`, `invalidParameters`, ...
    pub error_code: String,
}

/// `completionData` of a completed order.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CompletionData {
    user: User,
    #[serde(default)]
    device: Option<Device>,
    #[serde(default)]
    bank_id_issue_date: Option<String>,
    #[serde(default)]
    step_up: Option<StepUp>,
    signature: String,
    ocsp_response: String,
}

/// `completionData.user`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    personal_number: String,
    #[serde(default)]
    name: Option<String>,
}

/// `completionData.device`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Device {
    #[serde(default)]
    ip_address: Option<String>,
    #[serde(default)]
    uhi: Option<String>,
}

/// `completionData.stepUp`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepUp {
    #[serde(default)]
    mrtd: Option<bool>,
}

/// The evidence of a completed order (`completionData` less the user), kept for audit: stored
/// as JSON in the `verification_evidence` table (`verify::Evidence`). It is evidence about a
/// person: never log it; `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    /// `signature`: base64 of BankID's signed XML.
    pub signature: String,
    /// `ocspResponse`: base64 OCSP response for the person's certificate.
    pub ocsp_response: String,
    /// `device.ipAddress`: the IP address of the person's device as BankID saw it.
    pub device_ip_address: Option<String>,
    /// `device.uhi`: BankID's unique hardware identifier of the device.
    pub device_uhi: Option<String>,
    /// `bankIdIssueDate`: when the person's BankID was issued (`YYYY-MM-DD`).
    pub bank_id_issue_date: Option<String>,
    /// `stepUp.mrtd`: whether a passport/ID check was done.
    pub step_up_mrtd: Option<bool>,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completion(..)")
    }
}

/// What one `/collect` answer means for the order.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Collected {
    /// Still pending; the hint if it is one we know.
    Pending(Option<Hint>),
    /// Ended without a verified person.
    Failed(Failure),
    /// Completed for this person (not necessarily the one asked for: the flow compares).
    Complete(VerifiedPerson, Box<Completion>),
}

/// The [`Hint`] of a pending hint code; `None` for codes we do not know (still pending).
pub(super) fn pending_hint(code: &str) -> Option<Hint> {
    match code {
        "outstandingTransaction" | "noClient" => Some(Hint::Sent),
        "started" => Some(Hint::Started),
        "userCallConfirm" => Some(Hint::CallConfirm),
        "userSign" | "userMrtd" => Some(Hint::Signing),
        _ => None,
    }
}

/// The [`Failure`] of a failed hint code (unknown codes are provider failures).
pub(super) fn failed_hint(code: Option<&str>) -> Failure {
    match code {
        Some("userCancel") => Failure::Declined,
        Some("userDeclinedCall") => Failure::NotInCall,
        Some("expiredTransaction") => Failure::Timeout,
        Some("cancelled") => Failure::Provider("order cancelled by a newer order".to_owned()),
        Some(other) => Failure::Provider(format!("order failed: {}", token(other))),
        None => Failure::Provider("order failed without a hint code".to_owned()),
    }
}

/// Reads one `/collect` answer.
pub(super) fn collected(response: CollectResponse) -> Collected {
    match response.status.as_str() {
        "pending" => Collected::Pending(response.hint_code.as_deref().and_then(pending_hint)),
        "failed" => Collected::Failed(failed_hint(response.hint_code.as_deref())),
        "complete" => match response.completion_data {
            Some(data) => complete(data),
            None => Collected::Failed(provider("complete without completionData")),
        },
        other => Collected::Failed(provider(&format!("unknown status {}", token(other)))),
    }
}

/// The person and the evidence of a completed order.
fn complete(data: CompletionData) -> Collected {
    let Ok(personal_number) = PersonalNumber::parse(&data.user.personal_number) else {
        return Collected::Failed(provider("completionData.user.personalNumber is not valid"));
    };
    let person = VerifiedPerson {
        personal_number,
        name: data.user.name.map(PersonName::new),
    };
    let device = data.device.unwrap_or(Device {
        ip_address: None,
        uhi: None,
    });
    let completion = Completion {
        signature: data.signature,
        ocsp_response: data.ocsp_response,
        device_ip_address: device.ip_address,
        device_uhi: device.uhi,
        bank_id_issue_date: data.bank_id_issue_date,
        step_up_mrtd: data.step_up.and_then(|s| s.mrtd),
    };
    Collected::Complete(person, Box::new(completion))
}

fn provider(detail: &str) -> Failure {
    Failure::Provider(detail.to_owned())
}

/// A code from BankID made safe for logs: short, letters and digits only.
pub(super) fn token(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect();
    if clean.is_empty() {
        "(none)".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(json: &str) -> Collected {
        collected(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn pending_hints_map_to_hints_and_unknown_ones_stay_pending() {
        let cases = [
            ("outstandingTransaction", Some(Hint::Sent)),
            ("noClient", Some(Hint::Sent)),
            ("started", Some(Hint::Started)),
            ("userCallConfirm", Some(Hint::CallConfirm)),
            ("userSign", Some(Hint::Signing)),
            ("userMrtd", Some(Hint::Signing)),
            ("somethingNew", None),
        ];
        for (code, hint) in cases {
            let json = format!(r#"{{"orderRef":"x","status":"pending","hintCode":"{code}"}}"#);
            assert_eq!(response(&json), Collected::Pending(hint), "{code}");
        }
        let no_hint = response(r#"{"orderRef":"x","status":"pending"}"#);
        assert_eq!(no_hint, Collected::Pending(None));
    }

    #[test]
    fn failed_hints_map_to_failures() {
        let provider = |s: &str| Failure::Provider(s.to_owned());
        let cases = [
            ("userCancel", Failure::Declined),
            ("userDeclinedCall", Failure::NotInCall),
            ("expiredTransaction", Failure::Timeout),
            ("cancelled", provider("order cancelled by a newer order")),
            ("startFailed", provider("order failed: startFailed")),
            ("certificateErr", provider("order failed: certificateErr")),
            (
                "notSupportedByUserApp",
                provider("order failed: notSupportedByUserApp"),
            ),
            (
                "transactionRiskBlocked",
                provider("order failed: transactionRiskBlocked"),
            ),
            ("brandNew", provider("order failed: brandNew")),
        ];
        for (code, failure) in cases {
            let json = format!(r#"{{"orderRef":"x","status":"failed","hintCode":"{code}"}}"#);
            assert_eq!(response(&json), Collected::Failed(failure), "{code}");
        }
    }

    #[test]
    fn a_completion_gives_the_person_and_the_evidence() {
        let json = r#"{"orderRef":"x","status":"complete","completionData":{
            "user":{"personalNumber":"191212121212","name":"Tolvan Tolvansson",
                    "givenName":"Tolvan","surname":"Tolvansson"},
            "device":{"ipAddress":"192.0.2.1","uhi":"OZvYM9VvyiAmG7NA5jU5zqGcVpo="},
            "bankIdIssueDate":"2020-02-01","stepUp":{"mrtd":false},
            "signature":"PHNpZy8+","ocspResponse":"b2NzcA=="}}"#;
        let Collected::Complete(person, completion) = response(json) else {
            panic!("not complete");
        };
        assert_eq!(person.personal_number.as_digits(), "191212121212");
        assert_eq!(person.name.unwrap().as_str(), "Tolvan Tolvansson");
        assert_eq!(completion.signature, "PHNpZy8+");
        assert_eq!(completion.device_ip_address.as_deref(), Some("192.0.2.1"));
        assert_eq!(completion.step_up_mrtd, Some(false));
        assert_eq!(format!("{completion:?}"), "Completion(..)");
    }

    #[test]
    fn odd_answers_are_provider_failures_without_echoing_data() {
        let bad_pnr = r#"{"orderRef":"x","status":"complete","completionData":{
            "user":{"personalNumber":"191212121213"},"signature":"","ocspResponse":""}}"#;
        let Collected::Failed(Failure::Provider(detail)) = response(bad_pnr) else {
            panic!("accepted a bad personal number");
        };
        assert!(!detail.contains("1213"), "{detail}");
        let odd = response(r#"{"orderRef":"x","status":"weird\n<b>"}"#);
        assert_eq!(odd, Collected::Failed(provider("unknown status weirdb")));
        let empty = response(r#"{"orderRef":"x","status":"complete"}"#);
        assert!(matches!(empty, Collected::Failed(Failure::Provider(_))));
    }
}
