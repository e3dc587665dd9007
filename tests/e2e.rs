//! End to end on loopback: idgate as a process, SIPp as callers and as the agent queue.
//! Each test starts its own idgate (own ports, own database) and bounds every wait.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use support::jwks::claims_verified_by_jwks;
use support::{Idgate, Sipp, add_customer, assert_ok, header, header_count, wait_for_log};

const QUEUE_ROUTE: &str = r#"
[[route]]
name = "support"
match = "*"
target = "sip:queue@127.0.0.1:QUEUE_PORT"
"#;

/// A simulator that answers fast, so a verified call takes well under a second.
const FAST_APPROVE: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n";

fn route(queue_port: u16) -> String {
    QUEUE_ROUTE.replace("QUEUE_PORT", &queue_port.to_string())
}

fn call(idgate: &Idgate, scenario: &str, caller: &str, extra: &[&str]) -> Sipp {
    let mut args = vec!["-set", "caller", caller, "-s", "5000"];
    args.extend_from_slice(extra);
    let target = idgate.sip_addr();
    args.push(&target);
    Sipp::start(idgate.dir.path(), scenario, &args, 1)
}

/// The queue that answers; started before idgate so its port goes into the route.
fn queue(dir: &std::path::Path, scenario: &str) -> Sipp {
    Sipp::start(dir, scenario, &[], 1)
}

/// The call row idgate wrote, read through the store once the call has ended.
fn call_row(idgate: &Idgate, call_id: &str) -> idgate::store::CallRow {
    let id = uuid::Uuid::parse_str(call_id).expect("call id");
    let url = format!("sqlite://{}", idgate.db_path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = idgate::store::Store::connect(&url)
            .await
            .expect("open the store");
        store
            .get_call(id)
            .await
            .expect("query")
            .expect("a row for the call")
    })
}

fn verified_call_over(transport: &[&str]) {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = queue(queue_dir.path(), "queue.xml");
    let idgate = Idgate::start(&route(queue.port), FAST_APPROVE);
    let mut caller = call(
        &idgate,
        "caller.xml",
        "+46701234567",
        &[&["-d", "2500"], transport].concat(),
    );
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);

    let invite = queue.invite_with_status("verified");
    assert_eq!(header(&invite, "X-Identity-Method"), Some("simulator"));
    assert_eq!(header(&invite, "X-Identity-Reason"), None);
    assert_eq!(
        header_count(&invite, "X-Identity-Status"),
        1,
        "the caller's forged header was dropped"
    );
    assert!(!invite.contains("forged-by-the-caller"), "{invite}");
    let call_id = header(&invite, "X-Identity-Call").expect("X-Identity-Call");
    assert!(uuid::Uuid::parse_str(call_id).is_ok(), "{call_id}");
    assert!(
        header(&invite, "From").is_some_and(|f| f.contains("+46701234567")),
        "{invite}"
    );
    assert!(idgate.log().contains("spoofing attempt"));

    let token = header(&invite, "X-Identity-Token").expect("X-Identity-Token");
    assert!(token.len() < 1024, "{token}");
    let claims = claims_verified_by_jwks(&idgate, token);
    assert_eq!(claims["call"].as_str(), Some(call_id));
    assert_eq!(
        claims["status"].as_str(),
        header(&invite, "X-Identity-Status")
    );
    assert_eq!(claims["method"], "simulator");
    assert_eq!(claims["orig"], "+46701234567");
    assert_eq!(claims["sub"], "19121212-****", "masked by default");
    assert_eq!(claims["iss"], "idgate");
    assert!(claims.get("reason").is_none() && claims.get("name").is_none());
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    assert_eq!(exp.zip(iat).map(|(e, i)| e - i), Some(600));
    let sip_call_id = caller_call_id(&caller).expect("the caller's Call-ID");
    assert_eq!(claims["sip_call_id"].as_str(), Some(sip_call_id.as_str()));

    wait_for_log(&idgate, "outcome=\"connected\"");
    let row = call_row(&idgate, call_id);
    assert_eq!(row.status, Some(idgate::store::CallStatus::Verified));
    assert_eq!(row.method, Some(idgate::identity::Method::Simulator));
    assert_eq!(row.reason, None);
    assert_eq!(row.caller, "+46701234567");
    assert_eq!(row.called, "5000");
    assert_eq!(row.route.as_deref(), Some("support"));
    assert_eq!(
        row.transfer_outcome,
        Some(idgate::store::TransferOutcome::Connected)
    );
    assert!(row.answered_at.is_some() && row.verdict_at.is_some() && row.ended_at.is_some());

    // The audit trail: the forged header by name only, and the verification's steps.
    let (events, security) = audit(&idgate, call_id);
    assert_eq!(security.len(), 1, "{security:?}");
    assert_eq!(
        security[0].kind,
        idgate::store::SecurityEventKind::SpoofedHeaders
    );
    let names = security[0].detail.as_deref().unwrap_or("");
    assert_eq!(
        names, "X-Identity-Status, X-Identity-Token",
        "names, never values"
    );
    assert!(security[0].source.is_some_and(|ip| ip.is_loopback()));
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"started"), "{events:?}");
    assert_eq!(kinds.last(), Some(&"completed"), "{events:?}");
}

/// The verification and security events idgate recorded for a call.
fn audit(
    idgate: &Idgate,
    call_id: &str,
) -> (
    Vec<idgate::store::VerificationEvent>,
    Vec<idgate::store::SecurityEvent>,
) {
    let id = uuid::Uuid::parse_str(call_id).expect("call id");
    let url = format!("sqlite://{}", idgate.db_path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = idgate::store::Store::connect(&url).await.expect("store");
        let events = store.verification_events_for(id).await.expect("query");
        let security = store.security_events_for(id).await.expect("query");
        (events, security)
    })
}

/// The Call-ID of the INVITE a SIPp caller sent.
fn caller_call_id(caller: &Sipp) -> Option<String> {
    let trace = caller.trace();
    let sent = trace
        .split("----------------------------------------------")
        .find(|entry| entry.contains("message sent") && entry.contains("INVITE sip:"))?;
    header(sent, "Call-ID").map(str::to_owned)
}

#[test]
fn verified_caller_reaches_the_queue_with_identity_headers_over_udp() {
    verified_call_over(&[]);
}

#[test]
fn verified_caller_reaches_the_queue_with_identity_headers_over_tcp() {
    verified_call_over(&["-t", "t1"]);
}

#[test]
fn a_session_refresh_from_the_queue_is_answered_with_sdp() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = queue(queue_dir.path(), "queue_refresh.xml");
    let idgate = Idgate::start(&route(queue.port), FAST_APPROVE);
    let mut caller = call(&idgate, "caller.xml", "+46701234568", &["-d", "3000"]);
    assert_ok("caller", &mut caller, &idgate);
    // The queue's scenario checks idgate's 200 OK to its re-INVITE carries an m=audio line.
    assert_ok("queue", &mut queue, &idgate);
}

#[test]
fn a_declined_push_reaches_the_queue_unverified_with_its_reason() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = queue(queue_dir.path(), "queue.xml");
    let simulator = format!(
        "{FAST_APPROVE}[[provider.simulator.script]]\ncaller = \"+46701111111\"\noutcome = \"decline\"\n"
    );
    let idgate = Idgate::start(&route(queue.port), &simulator);
    let mut caller = call(&idgate, "caller.xml", "+46701111111", &["-d", "2500"]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.invite_with_status("unverified");
    assert_eq!(header(&invite, "X-Identity-Reason"), Some("declined"));
    assert_eq!(header(&invite, "X-Identity-Method"), Some("simulator"));
}

#[test]
fn an_anonymous_caller_on_a_route_without_keypad_reaches_the_queue_as_anonymous() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = queue(queue_dir.path(), "queue.xml");
    let routes = format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\nkeypad = false\ntarget = \"sip:queue@127.0.0.1:{}\"\n",
        queue.port
    );
    let idgate = Idgate::start(&routes, FAST_APPROVE);
    let mut caller = call(&idgate, "caller.xml", "anonymous", &["-d", "2000"]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.invite_with_status("unverified");
    assert_eq!(header(&invite, "X-Identity-Reason"), Some("anonymous"));
    assert_eq!(
        header(&invite, "X-Identity-Method"),
        None,
        "no provider was tried"
    );
    assert!(
        header(&invite, "From").is_some_and(|f| f.contains("sip:anonymous@")),
        "{invite}"
    );
}

#[test]
fn an_anonymous_caller_types_a_personal_number_by_sip_info_and_is_verified() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = queue(queue_dir.path(), "queue.xml");
    let routes = format!(
        "[[route]]\nname = \"keypad\"\nmatch = \"*\"\ndirectory = false\nphone_push = false\ntarget = \"sip:queue@127.0.0.1:{}\"\n",
        queue.port
    );
    let idgate = Idgate::start(&routes, FAST_APPROVE);
    // The scenario types 8112289874# (ten digits: the century is inferred).
    let mut caller = call(&idgate, "caller_keypad.xml", "anonymous", &["-d", "3000"]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.invite_with_status("verified");
    assert_eq!(
        header(&invite, "X-Identity-Subject"),
        Some("19811228-****"),
        "{invite}"
    );
    assert!(
        !idgate.log().contains("8112289874"),
        "typed digits never reach the log"
    );
}

#[test]
fn a_keypad_entry_that_fails_validation_reaches_the_queue_as_invalid_input() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = queue(queue_dir.path(), "queue.xml");
    let routes = format!(
        "[[route]]\nname = \"keypad\"\nmatch = \"*\"\ndirectory = false\nphone_push = false\nkeypad_attempts = 1\ntarget = \"sip:queue@127.0.0.1:{}\"\n",
        queue.port
    );
    let idgate = Idgate::start(&routes, FAST_APPROVE);
    // The scenario types 8112289875#: a real date, a wrong check digit. No push is sent.
    let mut caller = call(
        &idgate,
        "caller_keypad_invalid.xml",
        "anonymous",
        &["-d", "3000"],
    );
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.received("INVITE").expect("INVITE");
    assert_eq!(
        header(&invite, "X-Identity-Reason"),
        Some("invalid-input"),
        "{invite}"
    );
    assert_eq!(
        header(&invite, "X-Identity-Method"),
        None,
        "no push was sent"
    );
}

#[test]
fn a_caller_who_hangs_up_during_identification_ends_cleanly_and_the_push_is_cancelled() {
    let simulator = "default = \"approve\"\ndelay_ms = 20000\nhint_ms = 100\n";
    let idgate = Idgate::start(&route(9), simulator);
    let mut caller = call(&idgate, "caller.xml", "+46702222222", &["-d", "800"]);
    assert_ok("caller", &mut caller, &idgate);
    let log = wait_for_log(&idgate, "outcome=\"abandoned\"");
    assert!(log.contains("outcome=\"abandoned\""), "{log}");
    assert!(log.contains("action=\"cancel-verification\""), "{log}");
}

#[test]
fn a_busy_queue_gets_the_caller_a_prompt_and_a_bye_never_silence() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = queue(queue_dir.path(), "queue_busy.xml");
    let idgate = Idgate::start(&route(queue.port), FAST_APPROVE);
    let mut caller = call(&idgate, "caller_waits.xml", "+46703333333", &[]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let log = wait_for_log(&idgate, "outcome=\"queue-unavailable\"");
    assert!(log.contains("outcome=\"queue-unavailable\""), "{log}");
}

#[test]
fn a_busy_queue_falls_back_to_the_fallback_target() {
    let dir = tempfile::tempdir().expect("dir");
    let mut busy = queue(dir.path(), "queue_busy.xml");
    let mut fallback = queue(dir.path(), "queue.xml");
    let routes = format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\ntarget = \"sip:queue@127.0.0.1:{}\"\nfallback = \"sip:overflow@127.0.0.1:{}\"\n",
        busy.port, fallback.port
    );
    let idgate = Idgate::start(&routes, FAST_APPROVE);
    let mut caller = call(&idgate, "caller.xml", "+46704444444", &["-d", "2500"]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("busy queue", &mut busy, &idgate);
    assert_ok("fallback queue", &mut fallback, &idgate);
    let invite = fallback.received("INVITE").expect("INVITE at the fallback");
    assert_eq!(header(&invite, "X-Identity-Status"), Some("verified"));
}

#[test]
fn refer_mode_embeds_the_headers_in_refer_to_and_on_the_refer() {
    let routes = "[[route]]\nname = \"pbx\"\nmatch = \"*\"\ntransfer = \"refer\"\ntarget = \"sip:queue@pbx.example\"\n";
    let idgate = Idgate::start(routes, FAST_APPROVE);
    let mut caller = call(&idgate, "caller_refer.xml", "+46705555555", &[]);
    assert_ok("caller", &mut caller, &idgate);
    let refer = caller.received("REFER").expect("REFER");
    let refer_to = header(&refer, "Refer-To").expect("Refer-To");
    assert!(
        refer_to.starts_with("<sip:queue@pbx.example?"),
        "{refer_to}"
    );
    assert!(
        refer_to.contains("X-Identity-Status=verified"),
        "{refer_to}"
    );
    assert!(refer_to.contains("X-Identity-Call="), "{refer_to}");
    assert_eq!(
        header(&refer, "X-Identity-Status"),
        Some("verified"),
        "{refer}"
    );
    assert!(header(&refer, "Referred-By").is_some(), "{refer}");
    let log = wait_for_log(&idgate, "outcome=\"referred\"");
    assert!(log.contains("outcome=\"referred\""), "{log}");
}

#[test]
fn a_caller_can_cancel_while_idgate_rings() {
    let routes = "[[route]]\nname = \"slow\"\nmatch = \"*\"\nanswer_after_ms = 3000\ntarget = \"sip:queue@127.0.0.1:9\"\n";
    let idgate = Idgate::start(routes, FAST_APPROVE);
    let mut caller = call(&idgate, "caller_cancel.xml", "+46706666666", &[]);
    assert_ok("caller", &mut caller, &idgate);
}

#[test]
fn an_unmatched_called_number_gets_404() {
    let routes =
        "[[route]]\nname = \"only-5001\"\nmatch = \"5001\"\ntarget = \"sip:queue@127.0.0.1:9\"\n";
    let idgate = Idgate::start(routes, FAST_APPROVE);
    let mut caller = call(&idgate, "caller.xml", "+46707777777", &[]);
    let status = caller.wait(Duration::from_secs(20));
    assert!(!status.success());
    assert!(caller.trace().contains("SIP/2.0 404"), "{}", caller.trace());
}

#[test]
fn options_is_answered_200_and_garbage_does_not_stop_the_server() {
    let idgate = Idgate::start(&route(9), FAST_APPROVE);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    for garbage in [
        &b"\x00\x01\x02 not sip"[..],
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200\r\n\r\n",
        &[0xffu8; 3000],
    ] {
        socket.send_to(garbage, idgate.sip_addr()).expect("send");
    }
    let options = format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKopt1;rport\r\n\
         From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: options-1\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    socket
        .send_to(options.as_bytes(), idgate.sip_addr())
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer to OPTIONS");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert!(
        header(&answer, "Allow").is_some_and(|a| a.contains("INVITE")),
        "{answer}"
    );
}

#[test]
fn an_invite_from_an_untrusted_peer_gets_403() {
    let routes = route(9);
    let idgate = Idgate::start_with(
        &routes,
        FAST_APPROVE,
        "trusted_peers = [\"10.99.0.0/16\"]\n",
    );
    let mut caller = call(&idgate, "caller.xml", "+46708888888", &[]);
    let status = caller.wait(Duration::from_secs(20));
    assert!(!status.success());
    assert!(caller.trace().contains("SIP/2.0 403"), "{}", caller.trace());
}

/// One idgate, one queue, a caller per reason: every unverified reason idgate can produce
/// without a keypad reaches the queue in `X-Identity-Reason` (declined, anonymous and the
/// keypad paths, invalid-input among them, have their own tests).
#[test]
fn every_reason_reaches_the_queue_header() {
    let dir = tempfile::tempdir().expect("dir");
    let cases: [(&str, &str, &str); 8] = [
        ("+46701000001", "5000", "not-in-call"),
        ("+46701000002", "5000", "timeout"),
        ("+46701000003", "5000", "provider-error"),
        ("+46701000004", "5000", "rate-limited"),
        ("+46701000005", "5001", "not-found"),
        ("+46701000006", "5001", "mismatch"),
        ("+46701000007", "5002", "skipped"),
        ("+46701000008", "5000", "rate-limited"),
    ];
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], cases.len() as u32 + 1);
    let routes = format!(
        "[[route]]\nname = \"push\"\nmatch = \"5000\"\nkeypad = false\ntarget = \"sip:q@127.0.0.1:{port}\"\n\
         [[route]]\nname = \"directory-only\"\nmatch = \"5001\"\nphone_push = false\nkeypad = false\ntarget = \"sip:q@127.0.0.1:{port}\"\n\
         [[route]]\nname = \"no-identification\"\nmatch = \"5002\"\nidentify = false\ntarget = \"sip:q@127.0.0.1:{port}\"\n",
        port = queue.port
    );
    let script = |caller: &str, outcome: &str| {
        format!("[[provider.simulator.script]]\ncaller = \"{caller}\"\noutcome = \"{outcome}\"\n")
    };
    let simulator = [
        FAST_APPROVE.to_string(),
        script("+46701000001", "not-in-call"),
        script("+46701000002", "timeout"),
        script("+46701000003", "error"),
        script("+46701000004", "rate-limited"),
        // The directory links +46701000006 to 19121212-1212; the app completes for someone else.
        "[[provider.simulator.script]]\npersonal_number = \"191212121212\"\noutcome = \"approve-as\"\nas = \"198112289874\"\n".to_string(),
    ]
    .concat();
    // Our own limit: one push per caller number, so the second call of +46701000008 is refused
    // by idgate before any push is sent.
    let limits = "[limits]\npushes_per_caller = 1\n";
    let idgate = Idgate::start_full(&routes, &simulator, "", limits);
    add_customer(&idgate, "191212121212", "+46701000006");

    let run = |caller: &str, service: &str| {
        let target = idgate.sip_addr();
        let args = [
            "-set", "caller", caller, "-s", service, "-d", "1500", &target,
        ];
        let mut sipp = Sipp::start(idgate.dir.path(), "caller.xml", &args, 1);
        assert_ok(caller, &mut sipp, &idgate);
    };
    for (caller, service, _) in &cases[..7] {
        run(caller, service);
    }
    run("+46701000008", "5000"); // first call: verified, and it uses up the number's one push
    run("+46701000008", "5000");
    assert_ok("queue", &mut queue, &idgate);

    let invites = queue.received_all("INVITE");
    assert_eq!(invites.len(), cases.len() + 1, "one INVITE per call");
    let mut expected: Vec<(&str, Option<&str>)> =
        cases[..7].iter().map(|(c, _, r)| (*c, Some(*r))).collect();
    expected.push(("+46701000008", None));
    expected.push(("+46701000008", Some("rate-limited")));
    for (invite, (caller, reason)) in invites.iter().zip(expected) {
        assert!(
            header(invite, "From").is_some_and(|f| f.contains(caller)),
            "{invite}"
        );
        assert_eq!(
            header(invite, "X-Identity-Reason"),
            reason,
            "{caller}: {invite}"
        );
        let status = if reason.is_some() {
            "unverified"
        } else {
            "verified"
        };
        assert_eq!(
            header(invite, "X-Identity-Status"),
            Some(status),
            "{caller}"
        );
    }
}
