//! Spoofing, end to end (IDENTITY-HEADERS.md "Trust rules"): a caller forges every identity
//! signal it can (`tests/sipp/caller_forged.xml`): idgate's identity headers in mixed letter
//! case, a token shaped like idgate's (its `kid`, claims `verified`) but signed with another
//! key, a From display name imitating the verified tag, a User-to-User saying `verified`, and
//! P-Asserted-Identity / Remote-Party-ID naming a number of its choice.
//!
//! - From a trusted peer: none of the caller's identity headers reach the queue; the verdict
//!   headers, the token, the display tag and User-to-User are idgate's own, and say
//!   `unverified` whenever the push was not completed by the right person (declined; completed
//!   by someone else: `mismatch`).
//! - From an untrusted source: the INVITE is refused (403) before anything is read or sent on.
//!
//! What a proxy in front of idgate does with the same forgeries is `tests/kamailio_edge.rs`.
//! Everything on loopback, every wait bounded.

mod support;

use std::time::Duration;

use support::jwks::{claims_verified_by_jwks, current_kid, forged_token, signature_verifies};
use support::{Idgate, Sipp, add_customer, assert_ok, header, header_count, wait_for_log};

/// The number in the caller's own From header.
const CALLER: &str = "+46701111111";
/// The number the caller asserts (P-Asserted-Identity, Remote-Party-ID): a customer whose push
/// is declined.
const ASSERTED: &str = "+46709999999";

/// Every push is approved fast, except those for the asserted number (declined) and for
/// 198001019804 (completed by 191212121212 instead: someone else confirmed).
const SIMULATOR: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n\
     [[provider.simulator.script]]\ncaller = \"+46709999999\"\noutcome = \"decline\"\n\
     [[provider.simulator.script]]\npersonal_number = \"198001019804\"\n\
     outcome = \"approve-as\"\nas = \"191212121212\"\n";

/// The display tag and User-to-User on, default tags (`✔ ` / `✖ `): the caller's imitation of
/// the verified tag is exactly what they must not let through.
const EXTRAS: &str = "[identity]\nuser_to_user = true\ndisplay_tag = true\n";

/// The identity headers idgate writes on an unverified hand-off, as it spells them.
const IDGATE_HEADERS: [&str; 5] = [
    "X-Identity-Status",
    "X-Identity-Reason",
    "X-Identity-Method",
    "X-Identity-Call",
    "X-Identity-Token",
];

fn route(queue_port: u16) -> String {
    format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\nkeypad = false\n\
         target = \"sip:queue@127.0.0.1:{queue_port}\"\n"
    )
}

/// A token claiming `verified` for `asserted`, shaped like idgate's and carrying its `kid`.
fn forged(idgate: &Idgate, asserted: &str) -> String {
    let claims = serde_json::json!({
        "iss": "idgate", "iat": 1_700_000_000u64, "exp": 4_000_000_000u64,
        "jti": "forged", "call": "00000000-0000-0000-0000-000000000000",
        "sip_call_id": "forged", "orig": asserted, "status": "verified",
        "method": "bankid", "sub": "19121212-****", "name": "Mallory Verified",
    });
    forged_token(&current_kid(idgate), &claims)
}

/// The forging caller, asserting `asserted` and sending `token`.
fn forging_caller(idgate: &Idgate, asserted: &str, token: &str, hold_ms: &str) -> Sipp {
    let target = idgate.sip_addr();
    let args = [
        "-set", "caller", CALLER, "-set", "asserted", asserted, "-set", "token", token, "-s",
        "5000", "-d", hold_ms, &target,
    ];
    Sipp::start(idgate.dir.path(), "caller_forged.xml", &args, 1)
}

/// One call from the forging caller through a trusted idgate; the INVITE the queue got.
fn handed_off(idgate: &Idgate, queue: &mut Sipp, asserted: &str, token: &str) -> String {
    let mut caller = forging_caller(idgate, asserted, token, "2500");
    assert_ok("caller", &mut caller, idgate);
    assert_ok("queue", queue, idgate);
    queue.received("INVITE").expect("the queue got an INVITE")
}

/// Every header line of `message` whose name starts with the identity prefix, as `name`.
fn identity_header_names(message: &str) -> Vec<&str> {
    message
        .lines()
        .filter_map(|line| line.split_once(':').map(|(name, _)| name.trim()))
        .filter(|name| name.to_ascii_lowercase().starts_with("x-identity-"))
        .collect()
}

/// Asserts nothing the caller forged is on the queue's INVITE: only idgate's own identity
/// headers, once each and spelled as idgate spells them, none of the forged values, no
/// asserted identity of the caller's.
fn assert_only_idgates_headers(invite: &str, token: &str) {
    let mut names = identity_header_names(invite);
    names.sort_unstable();
    let mut expected = IDGATE_HEADERS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "{invite}");
    for forged in [
        token,
        "Mallory",
        "19121212-1212",
        "00000000-0000-0000-0000-000000000000",
        "bankid",
        "screen=yes",
    ] {
        assert!(
            !invite.contains(forged),
            "{forged:?} reached the queue:\n{invite}"
        );
    }
    assert_eq!(header(invite, "X-Identity-Status"), Some("unverified"));
    assert_eq!(header(invite, "X-Identity-Method"), Some("simulator"));
    assert_eq!(header(invite, "X-Identity-Name"), None);
    assert_eq!(header(invite, "X-Identity-Subject"), None);
    assert_eq!(header(invite, "Remote-Party-ID"), None, "{invite}");
}

/// The display name of a From header value (`"name" <uri>;tag=...`), without its quotes.
fn display_name(from: &str) -> &str {
    let inside = from.strip_prefix('"').expect("a quoted display name");
    inside.split_once('"').expect("the closing quote").0
}

/// Asserts the From display name on the queue leg is idgate's unverified tag followed by the
/// caller's name without its imitation of the verified tag, and that User-to-User is idgate's.
fn assert_unverified_extras(invite: &str, reason: &str) {
    let from = header(invite, "From").expect("From");
    let shown = display_name(from);
    assert_eq!(shown, "✖ Verifierad", "{invite}");
    assert_eq!(shown.matches(['✔', '✖']).count(), 1, "{shown}");
    assert_eq!(header_count(invite, "User-to-User"), 1, "{invite}");
    let call_id = header(invite, "X-Identity-Call").expect("X-Identity-Call");
    let uui = uui_text(header(invite, "User-to-User").expect("User-to-User"));
    assert_eq!(uui, format!("unverified;reason={reason};call={call_id}"));
}

/// The text of a `User-to-User` value, checking the RFC 7433/7434 form on the way.
fn uui_text(value: &str) -> String {
    let (data, params) = value.split_once(';').expect("parameters");
    assert_eq!(params, "encoding=hex;purpose=isdn-uui;content=isdn-uui");
    let octets = hex::decode(data).expect("hex UUI data");
    assert!(octets.len() <= 128, "{value}");
    assert_eq!(octets[0], 0x04, "IA5 protocol discriminator first");
    String::from_utf8(octets[1..].to_vec()).expect("ASCII text")
}

/// Asserts idgate logged the forgery by header names only, counted it, and never logged what
/// the caller forged.
fn assert_logged_as_spoofing(idgate: &Idgate, token: &str) {
    let log = wait_for_log(idgate, "outcome=");
    assert!(log.contains("spoofing attempt"), "{log}");
    for forged in [token, "Mallory", "19121212-1212", "Verifierad"] {
        assert!(!log.contains(forged), "{forged:?} was logged");
    }
    assert_eq!(
        idgate.metric_series("idgate_spoofing_attempts_total"),
        1.0,
        "one spoofing attempt counted"
    );
}

/// A trusted peer's caller asserts a customer who then declines the push: the queue gets
/// idgate's `unverified`/`declined` for the asserted number, never the caller's forgeries.
#[test]
fn forgeries_from_a_trusted_peer_never_reach_the_queue_and_the_verdict_is_idgates() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let idgate = Idgate::start_full(&route(queue.port), SIMULATOR, "", EXTRAS);
    let token = forged(&idgate, ASSERTED);
    assert!(
        !signature_verifies(&idgate, &token),
        "the forged token must not verify"
    );
    let invite = handed_off(&idgate, &mut queue, ASSERTED, &token);

    assert_only_idgates_headers(&invite, &token);
    assert_eq!(header(&invite, "X-Identity-Reason"), Some("declined"));
    let real = header(&invite, "X-Identity-Token").expect("X-Identity-Token");
    let claims = claims_verified_by_jwks(&idgate, real);
    assert_eq!(claims["status"], "unverified");
    assert_eq!(claims["reason"], "declined");
    assert_eq!(claims["call"].as_str(), header(&invite, "X-Identity-Call"));
    // A trusted peer's P-Asserted-Identity is believed (that is what trusting it means), so
    // the push went to the asserted number, whose customer declined.
    assert_eq!(claims["orig"], ASSERTED, "{claims}");
    assert!(claims.get("sub").is_none() && claims.get("name").is_none());
    assert_unverified_extras(&invite, "declined");
    assert_logged_as_spoofing(&idgate, &token);
}

/// The caller asserts a number whose customer (198001019804) is in the directory; the push is
/// confirmed, but by someone else (191212121212): `mismatch`, never `verified`, and the
/// verified person's name and number never reach the queue.
#[test]
fn a_push_completed_by_someone_else_is_unverified_mismatch_despite_the_forgeries() {
    const CUSTOMER_NUMBER: &str = "+46709999998";
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let idgate = Idgate::start_full(&route(queue.port), SIMULATOR, "", EXTRAS);
    add_customer(&idgate, "198001019804", CUSTOMER_NUMBER);
    let token = forged(&idgate, CUSTOMER_NUMBER);
    let invite = handed_off(&idgate, &mut queue, CUSTOMER_NUMBER, &token);

    assert_only_idgates_headers(&invite, &token);
    assert_eq!(header(&invite, "X-Identity-Reason"), Some("mismatch"));
    let real = header(&invite, "X-Identity-Token").expect("X-Identity-Token");
    let claims = claims_verified_by_jwks(&idgate, real);
    assert_eq!(
        (&claims["status"], &claims["reason"]),
        (&"unverified".into(), &"mismatch".into()),
        "{claims}"
    );
    assert_eq!(claims["orig"], CUSTOMER_NUMBER);
    assert!(claims.get("sub").is_none() && claims.get("name").is_none());
    assert!(!invite.contains("Tolvan"), "{invite}");
    assert_unverified_extras(&invite, "mismatch");
    assert_logged_as_spoofing(&idgate, &token);
}

/// The same forgeries from a source that is not a trusted peer (only 127.0.0.2 is; SIPp sends
/// from 127.0.0.1): 403, the queue is never called, and nothing the caller forged is read
/// into the log.
#[test]
fn forgeries_from_an_untrusted_source_are_refused_with_the_call() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let trusted = "trusted_peers = [\"127.0.0.2/32\"]\n";
    let idgate = Idgate::start_full(&route(queue.port), SIMULATOR, trusted, EXTRAS);
    let token = forged(&idgate, ASSERTED);
    let mut caller = forging_caller(&idgate, ASSERTED, &token, "500");
    let status = caller.wait(Duration::from_secs(30));
    let trace = caller.trace();
    assert!(!status.success(), "the call went through:\n{trace}");
    let refused = trace
        .split("----------------------------------------------")
        .any(|entry| entry.contains("SIP/2.0 403") && entry.contains("CSeq: 1 INVITE"));
    assert!(
        refused,
        "no 403:\n{trace}\n--- idgate log ---\n{}",
        idgate.log()
    );

    let log = wait_for_log(&idgate, "untrusted peer refused");
    assert!(log.contains("untrusted peer refused"), "{log}");
    assert!(!log.contains("spoofing attempt"), "{log}");
    for forged in [token.as_str(), "Mallory", "19121212-1212", ASSERTED] {
        assert!(!log.contains(forged), "{forged:?} was logged");
    }
    assert_eq!(
        idgate.metric_series("idgate_calls_rejected_total{status=\"403\"}"),
        1.0
    );
    assert_eq!(idgate.metric("idgate_active_calls"), Some(0.0));
    assert!(
        queue.received("INVITE").is_none(),
        "the queue was never called"
    );
}
