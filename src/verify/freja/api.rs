//! The wire format of Freja eID's Authentication Service (relying-party REST API, version 1.0),
//! shared by the client ([`super::client`]) and the local fake ([`super::fake`]). The facts and
//! their sources are listed in the module documentation of [`super`].

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

/// `POST` here starts an authentication (parameter [`INIT_PARAM`]).
pub const INIT_PATH: &str = "/authentication/1.0/initAuthentication";
/// `POST` here fetches one authentication's result (parameter [`RESULT_PARAM`]).
pub const RESULT_PATH: &str = "/authentication/1.0/getOneResult";
/// `POST` here cancels an authentication (parameter [`CANCEL_PARAM`]).
pub const CANCEL_PATH: &str = "/authentication/1.0/cancel";
/// Body parameter of [`INIT_PATH`].
pub const INIT_PARAM: &str = "initAuthRequest";
/// Body parameter of [`RESULT_PATH`].
pub const RESULT_PARAM: &str = "getOneAuthResultRequest";
/// Body parameter of [`CANCEL_PATH`].
pub const CANCEL_PARAM: &str = "cancelAuthRequest";

/// How the user is addressed (`userInfoType`). idgate uses `SSN` and `PHONE` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum UserInfoType {
    /// By personal identity number: `userInfo` is base64 of `{"country", "ssn"}` JSON.
    Ssn,
    /// By phone number: `userInfo` is `+46701234567` (leading `+`, no trunk `0`).
    Phone,
}

/// `minRegistrationLevel`: how well the user's identity has been proofed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RegistrationLevel {
    /// An e-mail address only: not identity-proofed (refused by idgate's config).
    Basic,
    /// Identity checked against an ID document.
    Extended,
    /// Identity also checked in person (Freja eID+, Sweden only).
    Plus,
}

impl RegistrationLevel {
    /// The value as written on the wire and in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationLevel::Basic => "BASIC",
            RegistrationLevel::Extended => "EXTENDED",
            RegistrationLevel::Plus => "PLUS",
        }
    }
}

/// One entry of `attributesToReturn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeToReturn {
    /// The attribute's name (`BASIC_USER_INFO`, `SSN`, ...).
    pub attribute: String,
}

/// The attributes idgate asks for: the name, and the personal identity number.
pub const ATTRIBUTES: [&str; 2] = ["BASIC_USER_INFO", "SSN"];

/// The JSON inside `initAuthRequest`. `Debug` leaves out `user_info` (personal data).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitAuthRequest {
    /// How `user_info` addresses the user.
    pub user_info_type: UserInfoType,
    /// The user's identifier, per `user_info_type`.
    pub user_info: String,
    /// The lowest registration level accepted.
    pub min_registration_level: RegistrationLevel,
    /// The attributes returned with an approval.
    pub attributes_to_return: Vec<AttributeToReturn>,
}

/// `userInfo` for `SSN`, before base64 (also the `ssn` attribute of a result). `Debug` leaves
/// out the number.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsnUserInfo {
    /// ISO 3166-1 alpha-2 country of the number (`SE`).
    pub country: String,
    /// The number; for Sweden 12 digits `YYYYMMDDNNNN`.
    pub ssn: String,
}

impl SsnUserInfo {
    /// The `userInfo` string: standard base64 (padded) of the JSON.
    pub fn encode(&self) -> String {
        // Serialising two strings cannot fail.
        STANDARD.encode(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// `{"authRef": ...}`: the JSON inside `getOneAuthResultRequest` and `cancelAuthRequest`, and the
/// response of `initAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthRef {
    /// The authentication's reference.
    pub auth_ref: String,
}

/// The status of an authentication (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Received by Freja.
    Started,
    /// Delivered to the user's phone.
    DeliveredToMobile,
    /// Final: the user declined in the app.
    Canceled,
    /// Final: cancelled by a relying party (us, or another one starting an order for the user).
    RpCanceled,
    /// Final: the user did not answer within about two minutes.
    Expired,
    /// Final: the user approved; `details` holds the signed result.
    Approved,
    /// Final: Freja rejected the authentication for security reasons.
    Rejected,
}

impl Status {
    /// Whether the authentication has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Started | Status::DeliveredToMobile)
    }
}

/// The response of `getOneResult`. `Debug` leaves out `details` (it holds personal data).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthResult {
    /// The authentication's reference.
    pub auth_ref: String,
    /// Where it stands.
    pub status: Status,
    /// For `APPROVED`: a compact JWS whose payload is a [`DetailsPayload`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// The name attribute (`basicUserInfo`). `Debug` leaves out the name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicUserInfo {
    /// Given name.
    pub name: String,
    /// Surname.
    pub surname: String,
}

/// `requestedAttributes` of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedAttributes {
    /// Name, if `BASIC_USER_INFO` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_user_info: Option<BasicUserInfo>,
    /// Personal identity number, if `SSN` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssn: Option<SsnUserInfo>,
}

/// The payload of the `details` JWS: the result as Freja signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailsPayload {
    /// Must equal the order's reference.
    pub auth_ref: String,
    /// Must be `APPROVED`.
    pub status: Status,
    /// The attributes asked for.
    #[serde(default)]
    pub requested_attributes: RequestedAttributes,
}

/// Freja's error body (HTTP 400 or 422): `{"code": 1100, "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Freja's error code.
    pub code: u32,
    /// Freja's message (never contains the request).
    #[serde(default)]
    pub message: String,
}

/// `Debug` without personal data: the named fields print as `..`.
macro_rules! redacted_debug {
    ($type:ty, $name:literal, $($field:ident),* ; $($hidden:literal),*) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct($name)
                    $(.field(stringify!($field), &self.$field))*
                    $(.field($hidden, &format_args!("..")))*
                    .finish()
            }
        }
    };
}

redacted_debug!(InitAuthRequest, "InitAuthRequest", user_info_type, min_registration_level,
    attributes_to_return; "user_info");
redacted_debug!(SsnUserInfo, "SsnUserInfo", country; "ssn");
redacted_debug!(AuthResult, "AuthResult", auth_ref, status; "details");
redacted_debug!(BasicUserInfo, "BasicUserInfo", ; "name", "surname");

/// Error code: previous authentication request rejected for security reasons (several requests
/// in a row for the same person).
pub const ERROR_REQUEST_IN_A_ROW: u32 = 2000;

/// A request body: `<param>=<standard base64 of the JSON>`, the base64 not percent-encoded,
/// exactly as Freja's own Java client sends it.
pub fn encode_body(param: &str, json: &impl Serialize) -> Result<String, serde_json::Error> {
    Ok(format!(
        "{param}={}",
        STANDARD.encode(serde_json::to_vec(json)?)
    ))
}

/// Why a request body was not accepted (the fake's side of [`encode_body`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not `<expected param>=<value>` (wrong or missing name, more parameters, not UTF-8).
    #[error("expected one parameter {0}=<base64>")]
    Parameter(&'static str),
    /// The value is not standard base64.
    #[error("the parameter is not base64")]
    Base64,
    /// The decoded value is not a JSON object.
    #[error("the parameter is not a JSON object")]
    Json,
}

/// Reads `<param>=<base64 JSON object>`. A `%`-encoded value is decoded first (as a form body);
/// a `+` stays a `+` (it is base64, not a space).
pub fn decode_body(
    param: &'static str,
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| BodyError::Parameter(param))?;
    let value = match text.trim_end().split_once('=') {
        Some((name, value)) if name == param && !value.is_empty() && !value.contains('&') => value,
        _ => return Err(BodyError::Parameter(param)),
    };
    let value = percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| BodyError::Base64)?;
    let json = STANDARD
        .decode(value.as_bytes())
        .map_err(|_| BodyError::Base64)?;
    match serde_json::from_slice(&json) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(BodyError::Json),
    }
}

/// Why a `details` JWS could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not three dot-separated base64url parts.
    #[error("not a compact JWS")]
    Shape,
    /// The payload is not the expected JSON.
    #[error("unexpected JWS payload")]
    Payload,
}

/// The payload of a compact JWS, **without verifying its signature**.
///
/// Follow-up (security): verify the signature (RS256) against Freja's published signing
/// certificate for the environment, selected by the header's `x5t`, before trusting an
/// approval. Today the result is trusted because it came over the mutually authenticated TLS
/// connection to the configured Freja URL.
pub fn jws_payload(jws: &str) -> Result<DetailsPayload, JwsError> {
    let mut parts = jws.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Shape);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwsError::Shape)?;
    serde_json::from_slice(&bytes).map_err(|_| JwsError::Payload)
}

/// An unsigned compact JWS (`alg: none`, empty signature) carrying `payload`: what the fake
/// returns as `details`.
pub fn unsigned_jws(payload: &DetailsPayload) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","x5t":"idgate-fake"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap_or_default());
    format!("{header}.{body}.")
}
