//! What `fuzzing::digest_credentials` runs (here, beside the private parts it checks): the
//! `Authorization` parser and `TrunkAuth::decide` on arbitrary header text.
//!
//! The input is up to four header values, one a line. In each, `NONCE` is replaced by a nonce
//! this policy issued and `RESPONSE` by the right response for the parsed credentials and the
//! configured password, so that the fuzzer reaches the admit path (seeds use both).

use std::net::IpAddr;

use super::digest::{Algorithm, Credentials, DigestInput, parse_credentials, response};
use super::{AuthMode, Decision, InviteView, Refusal, TrunkAuth, same_uri};
use crate::config::{SipAuthConfig, Token, TrunkSecret};

const NOW: u64 = 1_800_000_000;
const URI: &str = "sip:5000@192.0.2.1:5060";
const USER: &str = "carrier-user";
const PASSWORD: &str = "s3cret";
const MAX_FAILURES: u32 = 3;

impl TrunkAuth {
    /// The fuzz target's checks: the parser's shape rules and round trip, `decide` never
    /// admitting without the configured password's response, and a locked-out source never
    /// admitted.
    pub(crate) fn fuzz_authorization(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        for line in text.lines() {
            check_parse(line);
        }
        let source = source();
        let (auth, headers) = headers(&text);
        let view = view(&headers);
        match auth.decide(NOW, &view) {
            Decision::Admit {
                trunk,
                trusted_peer,
            } => {
                assert!(!trusted_peer && trunk.as_deref() == Some("carrier"));
                assert!(
                    headers.iter().any(|h| right_answer(&auth, h, source)),
                    "admitted without the password's response: {headers:?}"
                );
            }
            Decision::Challenge { .. } | Decision::Refuse(_) => {}
        }
        // Locked out: the same text is never admitted, and credentials are not looked at.
        let locked = fuzz_policy();
        for _ in 0..MAX_FAILURES {
            locked.failures().failed(NOW, source);
        }
        match locked.decide(NOW + 1, &view) {
            Decision::Admit { .. } => panic!("a locked-out source was admitted: {headers:?}"),
            Decision::Refuse(why) => assert_eq!(why, Refusal::LockedOut),
            Decision::Challenge { stale } => assert!(!stale, "credentials were checked"),
        }
    }
}

fn source() -> IpAddr {
    [192, 0, 2, 10].into()
}

/// A fresh policy and the header values of `text` with the placeholders filled in.
fn headers(text: &str) -> (TrunkAuth, Vec<String>) {
    let auth = fuzz_policy();
    let nonce = auth.nonce(NOW, source());
    let headers = text
        .lines()
        .take(4)
        .map(|l| with_response(&l.replace("NONCE", &nonce)))
        .collect();
    (auth, headers)
}

fn view(headers: &[String]) -> InviteView<'_> {
    InviteView {
        source: Some(source()),
        trusted_peer: false,
        method: "INVITE",
        request_uri: URI,
        authorization: headers.iter().map(String::as_str).collect(),
    }
}

/// Whether the fuzz target's first decision on `data` admits (tests: the seeds reach it).
#[cfg(test)]
pub(super) fn admits(data: &[u8]) -> bool {
    let (auth, headers) = headers(&String::from_utf8_lossy(data));
    matches!(auth.decide(NOW, &view(&headers)), Decision::Admit { .. })
}

fn fuzz_policy() -> TrunkAuth {
    let config = SipAuthConfig {
        mode: AuthMode::Digest,
        max_failures: MAX_FAILURES,
        ..SipAuthConfig::default()
    };
    let trunk = TrunkSecret {
        name: "carrier".into(),
        username: USER.into(),
        password: Token::new(PASSWORD.into()),
        networks: Vec::new(),
    };
    TrunkAuth::with_key(&config, vec![trunk], &[7; 32])
}

/// A parsed credential has its required fields; without escapes, every field is text of the
/// input; written back with every value quoted, it parses to the same.
fn check_parse(value: &str) {
    let Some(creds) = parse_credentials(value) else {
        return;
    };
    let fields = fields(&creds);
    for (name, field) in &fields[..5] {
        assert!(
            field.is_some_and(|f| !f.is_empty()),
            "{name} empty: {value:?}"
        );
    }
    if !value.contains('\\') {
        for (name, field) in fields.iter() {
            if let Some(field) = field {
                assert!(value.contains(field), "{name} {field:?} not in {value:?}");
            }
        }
    }
    let mut again = String::from("Digest ");
    let written: Vec<String> = fields
        .iter()
        .filter_map(|(name, field)| field.map(|f| format!("{name}=\"{}\"", escape(f))))
        .collect();
    again.push_str(&written.join(", "));
    assert_eq!(parse_credentials(&again), Some(creds), "{again:?}");
}

fn fields(c: &Credentials) -> [(&'static str, Option<&str>); 9] {
    [
        ("username", Some(c.username.as_str())),
        ("realm", Some(c.realm.as_str())),
        ("nonce", Some(c.nonce.as_str())),
        ("uri", Some(c.uri.as_str())),
        ("response", Some(c.response.as_str())),
        ("algorithm", c.algorithm.as_deref()),
        ("qop", c.qop.as_deref()),
        ("nc", c.nc.as_deref()),
        ("cnonce", c.cnonce.as_deref()),
    ]
}

fn escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if c == '"' || c == '\\' || c.is_control() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `value` with `RESPONSE` replaced by the configured password's response to what it says.
fn with_response(value: &str) -> String {
    if !value.contains("RESPONSE") {
        return value.to_owned();
    }
    let Some(creds) = parse_credentials(&value.replace("RESPONSE", "0")) else {
        return value.to_owned();
    };
    let algorithm = match creds.algorithm.as_deref() {
        None => Algorithm::Md5,
        Some(token) => Algorithm::parse(token).unwrap_or(Algorithm::Md5),
    };
    value.replace("RESPONSE", &expected(algorithm, &creds))
}

fn expected(algorithm: Algorithm, creds: &Credentials) -> String {
    response(&DigestInput {
        algorithm,
        username: &creds.username,
        realm: &creds.realm,
        password: PASSWORD,
        method: "INVITE",
        uri: &creds.uri,
        nonce: &creds.nonce,
        nc: creds.nc.as_deref().unwrap_or_default(),
        cnonce: creds.cnonce.as_deref().unwrap_or_default(),
    })
}

/// Whether `value` holds the trunk's right answer, for our realm and the Request-URI, on a
/// nonce this policy issued and that is still valid.
fn right_answer(auth: &TrunkAuth, value: &str, source: IpAddr) -> bool {
    let Some(creds) = parse_credentials(value) else {
        return false;
    };
    let Some(algorithm) = creds
        .algorithm
        .as_deref()
        .map_or(Some(Algorithm::Md5), Algorithm::parse)
    else {
        return false;
    };
    creds.username == USER
        && creds.realm == "idgate"
        && same_uri(&creds.uri, URI)
        && auth.nonce_expiry(&creds.nonce, NOW, source).is_some()
        && creds
            .response
            .eq_ignore_ascii_case(&expected(algorithm, &creds))
}
