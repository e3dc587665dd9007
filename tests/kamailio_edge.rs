//! The Kamailio edge proxy of `dialplans/kamailio/kamailio.cfg`, for real: Kamailio on
//! 127.0.0.2 in front of idgate (which trusts only 127.0.0.2), SIPp as a caller that forges its
//! identity and as the agent queue. Everything on loopback, every wait bounded. The same
//! forgeries sent straight to idgate, from a trusted and an untrusted source: `tests/spoofing.rs`.
//!
//! Needs the Debian packages `kamailio`, `sip-tester` and `procps` (`kill`).

mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::kamailio::{self, EDGE_ADDR, Kamailio, free_port_on};
use support::{Idgate, Sipp, header, header_count, wait_for_log};

/// The caller's own number (From) and the one it forges in P-Asserted-Identity.
const CALLER: &str = "+46701234567";
const FORGED_PAI: &str = "+46709999999";

/// The caller's push is declined: idgate's real verdict is `unverified`, never the `verified`
/// the caller forges. Anyone else (the forged PAI number) would be approved.
const SIMULATOR: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n\
     [[provider.simulator.script]]\ncaller = \"+46701234567\"\noutcome = \"decline\"\n";

fn config_file() -> PathBuf {
    kamailio::config("kamailio.cfg")
}

fn route(queue_port: u16) -> String {
    format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\ntarget = \"sip:queue@127.0.0.1:{queue_port}\"\n"
    )
}

/// idgate as deployed behind the proxy: only Kamailio's address may send it calls.
fn idgate_behind_the_edge(queue_port: u16) -> Idgate {
    let trusted = format!("trusted_peers = [\"{EDGE_ADDR}/32\"]\n");
    Idgate::start_with(&route(queue_port), SIMULATOR, &trusted)
}

/// Starts Kamailio with the edge config on 127.0.0.2 in front of idgate's SIP port, with extra
/// `-A` defines; returns once it answers requests (the runner is `support::kamailio`).
fn start_edge(dir: &Path, idgate_port: u16, defines: &[&str]) -> Kamailio {
    Kamailio::start(dir, &config_file(), |port| {
        let mut args = edge_defines(port, idgate_port);
        args.extend(
            defines
                .iter()
                .flat_map(|d| ["-A".to_owned(), (*d).to_owned()]),
        );
        args
    })
}

/// The `-A` defines that put the proxy on 127.0.0.2:`port` in front of idgate.
fn edge_defines(port: u16, idgate_port: u16) -> Vec<String> {
    [
        format!("LISTEN_ADDR={EDGE_ADDR}"),
        format!("LISTEN_PORT={port}"),
        "IDGATE_ADDR=127.0.0.1".to_owned(),
        format!("IDGATE_PORT={idgate_port}"),
        "CHILDREN=2".to_owned(),
    ]
    .into_iter()
    .flat_map(|d| ["-A".to_owned(), d])
    .collect()
}

/// An out-of-dialog request from `socket` to the proxy, with `extra` header lines.
fn sip_request(method: &str, socket: &UdpSocket, port: u16, extra: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let local = socket.local_addr().expect("local address");
    let nonce = format!(
        "{}-{}-{}",
        std::process::id(),
        local.port(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    format!(
        "{method} sip:5000@{EDGE_ADDR}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{nonce}\r\n\
         From: <sip:{CALLER}@127.0.0.1>;tag={nonce}\r\n\
         To: <sip:5000@{EDGE_ADDR}>\r\n\
         Call-ID: {nonce}@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:caller@{local}>\r\n\
         Max-Forwards: 70\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

/// Sends `request` to the proxy and returns the first final (non-1xx) response, if one comes
/// within `limit`.
fn exchange(socket: &UdpSocket, request: &str, port: u16, limit: Duration) -> Option<String> {
    socket.send_to(request.as_bytes(), (EDGE_ADDR, port)).ok()?;
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 65_535];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return Some(text);
        }
    }
}

/// The first request of `method` received on `socket` within `limit`, as text.
fn receive_request(socket: &UdpSocket, method: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 65_535];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with(&format!("{method} ")) {
            return Some(text);
        }
    }
}

/// Waits (bounded) for SIPp; fails with every log that could explain why.
fn assert_sipp_ok(name: &str, sipp: &mut Sipp, idgate: &Idgate, kamailio: &Kamailio) {
    let status = sipp.wait(Duration::from_secs(45));
    assert!(
        status.success(),
        "{name} SIPp failed ({status})\n--- SIPp trace ---\n{}\n--- idgate log ---\n{}\n\
         --- kamailio log ---\n{}",
        sipp.trace(),
        idgate.log(),
        kamailio.log()
    );
}

/// The claims of a compact JWS, without checking its signature (tests/e2e.rs checks that).
fn token_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = token.split('.').nth(1).expect("a compact JWS");
    let json = URL_SAFE_NO_PAD.decode(payload).expect("base64url claims");
    serde_json::from_slice(&json).expect("JSON claims")
}

/// The first message of the SIPp trace that starts with `start_line` and has `cseq_method` in
/// its CSeq.
fn traced(trace: &str, start_line: &str, cseq_method: &str) -> Option<String> {
    trace
        .split("----------------------------------------------")
        .filter_map(|entry| entry.find(start_line).map(|i| entry[i..].to_string()))
        .find(|message| header(message, "CSeq").is_some_and(|c| c.ends_with(cseq_method)))
}

#[test]
fn the_config_passes_kamailios_own_check() {
    for extra in [&[][..], &["-A", "TRUNKS_ONLY"][..]] {
        let output = Command::new("kamailio")
            .arg("-c")
            .arg("-f")
            .arg(config_file())
            .args(edge_defines(free_port_on(EDGE_ADDR), 5070))
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("run kamailio -c (apt-get install kamailio)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kamailio -c {extra:?}:\n{stderr}");
        assert!(stderr.contains("config file ok"), "{stderr}");
    }
}

#[test]
fn forged_identity_headers_are_removed_by_kamailio_before_idgate_sees_them() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let idgate = idgate_behind_the_edge(queue.port);
    // The caller (127.0.0.1) is not a trusted trunk: its P-Asserted-Identity goes too.
    let kamailio = start_edge(
        idgate.dir.path(),
        idgate.sip_port,
        &["TRUNK_NETS=192.0.2.0/24"],
    );
    let edge = kamailio.addr();
    let args = ["-set", "caller", CALLER, "-s", "5000", "-d", "2500", &edge];
    let mut caller = Sipp::start(idgate.dir.path(), "caller_spoofing.xml", &args, 1);
    assert_sipp_ok("caller", &mut caller, &idgate, &kamailio);
    assert_sipp_ok("queue", &mut queue, &idgate, &kamailio);

    // The queue got idgate's own verdict, once: the caller's push was declined.
    let invite = queue.received("INVITE").expect("the queue got an INVITE");
    assert_eq!(header_count(&invite, "X-Identity-Status"), 1, "{invite}");
    assert_eq!(
        header(&invite, "X-Identity-Status"),
        Some("unverified"),
        "{invite}"
    );
    assert_eq!(
        header(&invite, "X-Identity-Reason"),
        Some("declined"),
        "{invite}"
    );
    assert_eq!(header_count(&invite, "X-Identity-Token"), 1, "{invite}");
    assert_eq!(header(&invite, "X-Identity-Name"), None, "{invite}");
    let token = header(&invite, "X-Identity-Token").expect("X-Identity-Token");
    assert_ne!(token, "forged");
    let claims = token_claims(token);
    assert_eq!(claims["status"], "unverified");
    // The forged P-Asserted-Identity did not make the caller someone else.
    assert_eq!(claims["orig"], CALLER, "{claims}");
    assert!(!invite.contains(FORGED_PAI), "{invite}");
    assert!(!invite.contains("Mallory"), "{invite}");

    // idgate never saw the forged headers: Kamailio removed them and said so.
    let log = wait_for_log(&idgate, "outcome=");
    assert!(
        !log.contains("spoofing attempt"),
        "idgate saw identity headers:\n{log}"
    );
    let edge_log = kamailio.log();
    let from_caller = format!("from 127.0.0.1:{}", caller.port);
    assert!(
        edge_log.lines().any(|l| l.contains("X-Identity-* headers")
            && l.contains("removed (spoofing attempt)")
            && l.contains(&from_caller)),
        "{edge_log}"
    );
    assert!(
        edge_log
            .lines()
            .any(|l| l.contains("P-Asserted-Identity") && l.contains(&from_caller)),
        "{edge_log}"
    );

    // The call went through Kamailio: it forwarded the INVITE, and idgate's 200 OK carries the
    // Record-Route Kamailio put on the INVITE idgate received.
    let forwarded = format!(
        "new INVITE {from_caller} to sip:127.0.0.1:{}",
        idgate.sip_port
    );
    assert!(edge_log.contains(&forwarded), "{edge_log}");
    let ok = traced(&caller.trace(), "SIP/2.0 200 OK", "INVITE").expect("a 200 OK");
    let record_route = header(&ok, "Record-Route").unwrap_or_default();
    assert!(
        record_route.contains(&format!("sip:{edge}")),
        "no Record-Route of the proxy in idgate's answer:\n{ok}"
    );
    // The caller's ACK and BYE followed that route back through the proxy to idgate.
    for method in ["ACK", "BYE"] {
        let request = traced(&caller.trace(), &format!("{method} sip:"), method)
            .unwrap_or_else(|| panic!("the caller's {method}"));
        assert!(
            header(&request, "Route").is_some_and(|r| r.contains(&format!("sip:{edge}"))),
            "{request}"
        );
    }
}

#[test]
fn asserted_identity_from_a_trusted_trunk_is_kept_and_identity_headers_are_not() {
    // A stand-in for idgate that only records what the proxy forwards.
    let downstream = UdpSocket::bind("127.0.0.1:0").expect("downstream socket");
    let downstream_port = downstream.local_addr().expect("address").port();
    let dir = tempfile::tempdir().expect("dir");
    let kamailio = start_edge(dir.path(), downstream_port, &["TRUNK_NETS=127.0.0.1/32"]);
    let trunk = UdpSocket::bind("127.0.0.1:0").expect("trunk socket");
    let spoofed = "X-Identity-Status: verified\r\nx-identity-call: 1\r\nX-IDENTITY-SUBJECT: x\r\n\
         P-Asserted-Identity: <sip:+46701234567@127.0.0.1>\r\nX-Other: kept\r\n";
    let request = sip_request("INVITE", &trunk, kamailio.port, spoofed);
    trunk
        .send_to(request.as_bytes(), kamailio.addr())
        .expect("send");
    let forwarded = receive_request(&downstream, "INVITE", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("nothing forwarded; log:\n{}", kamailio.log()));
    assert!(
        !forwarded.to_ascii_lowercase().contains("x-identity-"),
        "{forwarded}"
    );
    assert_eq!(
        header(&forwarded, "P-Asserted-Identity"),
        Some("<sip:+46701234567@127.0.0.1>")
    );
    assert_eq!(header(&forwarded, "X-Other"), Some("kept"));
    assert_eq!(header(&forwarded, "Max-Forwards"), Some("69"));
    assert!(
        header(&forwarded, "Record-Route")
            .is_some_and(|rr| rr.contains(&format!("sip:{}", kamailio.addr()))),
        "{forwarded}"
    );
}

/// REFER mode: idgate's REFER to the caller's side carries the identity headers, and the proxy
/// must pass them on (it cleans only what comes from outside).
#[test]
fn identity_headers_sent_by_idgate_itself_pass_unchanged() {
    let idgate = UdpSocket::bind("127.0.0.1:0").expect("stand-in idgate socket");
    let idgate_addr = idgate.local_addr().expect("address");
    let dir = tempfile::tempdir().expect("dir");
    let kamailio = start_edge(dir.path(), idgate_addr.port(), &[]);
    let trunk = UdpSocket::bind("127.0.0.1:0").expect("trunk socket");
    let trunk_addr = trunk.local_addr().expect("address");
    let refer = format!(
        "REFER sip:caller@{trunk_addr} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {idgate_addr};branch=z9hG4bK-refer-{pid}\r\n\
         Route: <sip:{edge};lr>\r\n\
         From: <sip:5000@{EDGE_ADDR}>;tag=idgate\r\n\
         To: <sip:{CALLER}@127.0.0.1>;tag=caller\r\n\
         Call-ID: refer-{pid}@127.0.0.1\r\n\
         CSeq: 2 REFER\r\n\
         Contact: <sip:{idgate_addr}>\r\n\
         Max-Forwards: 70\r\n\
         Refer-To: <sip:queue@127.0.0.1?X-Identity-Status=verified>\r\n\
         Referred-By: <sip:5000@{EDGE_ADDR}>\r\n\
         X-Identity-Status: verified\r\n\
         X-Identity-Token: a.b.c\r\n\
         Content-Length: 0\r\n\r\n",
        pid = std::process::id(),
        edge = kamailio.addr(),
    );
    idgate
        .send_to(refer.as_bytes(), kamailio.addr())
        .expect("send");
    let relayed = receive_request(&trunk, "REFER", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("REFER not relayed; log:\n{}", kamailio.log()));
    assert_eq!(header(&relayed, "X-Identity-Status"), Some("verified"));
    assert_eq!(header(&relayed, "X-Identity-Token"), Some("a.b.c"));
    assert!(!kamailio.log().contains("spoofing attempt"));
}

#[test]
fn with_trunks_only_a_call_from_elsewhere_is_refused_at_the_edge() {
    let downstream = UdpSocket::bind("127.0.0.1:0").expect("downstream socket");
    let downstream_port = downstream.local_addr().expect("address").port();
    let dir = tempfile::tempdir().expect("dir");
    let kamailio = start_edge(
        dir.path(),
        downstream_port,
        &["TRUNK_NETS=192.0.2.0/24", "TRUNKS_ONLY"],
    );
    let caller = UdpSocket::bind("127.0.0.1:0").expect("caller socket");
    let request = sip_request("INVITE", &caller, kamailio.port, "");
    let response = exchange(&caller, &request, kamailio.port, Duration::from_secs(5));
    assert!(
        response
            .as_deref()
            .is_some_and(|r| r.starts_with("SIP/2.0 403")),
        "{response:?}\n--- kamailio log ---\n{}",
        kamailio.log()
    );
    let mut buf = [0u8; 2048];
    downstream
        .set_nonblocking(true)
        .expect("non-blocking socket");
    assert!(
        downstream.recv_from(&mut buf).is_err(),
        "a refused call was forwarded"
    );
}
