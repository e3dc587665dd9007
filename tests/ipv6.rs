//! IPv6 on the wire (RFC 5118): idgate listening on `[::1]`, SIPp callers and queues on `::1`
//! with `c=IN IP6 ::1`, OPTIONS over UDP and TCP, RFC 5118's IPv6 forms in Request-URI, Via
//! and Contact; then dual stack: idgate on `[::]` taking IPv4 callers as v4-mapped addresses,
//! matched against IPv4 `trusted_peers` and answered on IPv4. Everything on loopback, every
//! wait bounded.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use support::jwks::claims_verified_by_jwks;
use support::{Idgate, Sipp, assert_ok, header, wait_for_log};

/// A simulator that answers fast, so a verified call takes well under a second.
const FAST_APPROVE: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n";

/// Only IPv6 loopback is trusted: the IPv6 calls below are trusted as themselves, not through
/// the default's `127.0.0.0/8`.
const TRUST_V6: &str = "trusted_peers = [\"::1/128\"]\n";

/// Only IPv4 loopback is trusted: on `[::]` an IPv4 caller arrives as `::ffff:127.0.0.1`.
const TRUST_V4: &str = "trusted_peers = [\"127.0.0.0/8\"]\n";

fn route(queue_host: &str, queue_port: u16) -> String {
    format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\nkeypad = false\n\
         target = \"sip:queue@{queue_host}:{queue_port}\"\n"
    )
}

/// idgate with SIP on `[::1]` and RTP on `::1`.
fn idgate_on_v6(routes: &str) -> Idgate {
    Idgate::start_listening(("[::1]", "::1"), routes, FAST_APPROVE, TRUST_V6, "")
}

/// `[::1]:<sip port>`.
fn v6_addr(idgate: &Idgate) -> String {
    format!("[::1]:{}", idgate.sip_port)
}

/// A SIPp queue on `::1` (SIPp takes the last `-i`).
fn v6_queue(dir: &std::path::Path, scenario: &str, extra: &[&str]) -> Sipp {
    let args = [&["-i", "::1"][..], extra].concat();
    Sipp::start(dir, scenario, &args, 1)
}

/// A SIPp caller on `::1` calling 5000 at `[::1]:<sip port>`.
fn v6_caller(idgate: &Idgate, scenario: &str, caller: &str, extra: &[&str]) -> Sipp {
    let target = v6_addr(idgate);
    let mut args = vec!["-i", "::1", "-set", "caller", caller, "-s", "5000"];
    args.extend_from_slice(extra);
    args.push(&target);
    Sipp::start(idgate.dir.path(), scenario, &args, 1)
}

/// The message SIPp logged as sent or received (`direction`) whose first line starts with
/// `start` and whose CSeq ends with `cseq_method`.
fn traced(sipp: &Sipp, direction: &str, start: &str, cseq_method: &str) -> Option<String> {
    sipp.trace()
        .split("----------------------------------------------")
        .filter(|entry| entry.contains(direction))
        .filter_map(|entry| entry.find(start).map(|i| entry[i..].to_string()))
        .find(|message| header(message, "CSeq").is_some_and(|c| c.ends_with(cseq_method)))
}

/// The `c=` line of a message's SDP body.
fn connection_line(message: &str) -> Option<&str> {
    message.lines().map(str::trim).find(|l| l.starts_with("c="))
}

/// Checks the queue's INVITE: idgate's verified verdict, its token signed with the JWKS key,
/// and IPv6 in the Request-URI, the Via and the SDP.
fn assert_verified_over_v6(idgate: &Idgate, queue: &Sipp, caller: &str) {
    let invite = queue.received("INVITE").expect("the queue got an INVITE");
    let request_line = invite.lines().next().unwrap_or_default();
    assert_eq!(
        request_line,
        format!("INVITE sip:queue@[::1]:{} SIP/2.0", queue.port)
    );
    assert_eq!(header(&invite, "X-Identity-Status"), Some("verified"));
    let via = header(&invite, "Via").expect("Via");
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP [::1]:{};", idgate.sip_port)),
        "{via}"
    );
    assert_eq!(connection_line(&invite), Some("c=IN IP6 ::1"), "{invite}");
    let token = header(&invite, "X-Identity-Token").expect("X-Identity-Token");
    let claims = claims_verified_by_jwks(idgate, token);
    assert_eq!(claims["status"], "verified");
    assert_eq!(claims["orig"], caller);
}

/// Checks idgate's 200 OK to the caller's INVITE: SDP answer in IPv6, Contact in brackets.
fn assert_answered_over_v6(idgate: &Idgate, caller: &Sipp) {
    let ok = traced(caller, "message received", "SIP/2.0 200", "INVITE").expect("a 200 OK");
    assert_eq!(connection_line(&ok), Some("c=IN IP6 ::1"), "{ok}");
    assert!(ok.contains("o=idgate"), "idgate's own SDP answer:\n{ok}");
    let contact = header(&ok, "Contact").expect("Contact");
    assert!(
        contact.contains(&format!("[::1]:{}", idgate.sip_port)),
        "{contact}"
    );
}

#[test]
fn a_verified_call_over_ipv6_reaches_a_queue_on_ipv6_and_the_caller_hangs_up() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = v6_queue(queue_dir.path(), "queue.xml", &[]);
    let idgate = idgate_on_v6(&route("[::1]", queue.port));
    let mut caller = v6_caller(&idgate, "caller.xml", "+46701234561", &["-d", "2500"]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);

    assert_verified_over_v6(&idgate, &queue, "+46701234561");
    assert_answered_over_v6(&idgate, &caller);
    // The caller's BYE was answered (the scenario needs the 200), and idgate's own BYE reached
    // the queue over IPv6.
    let bye = queue.received("BYE").expect("idgate's BYE to the queue");
    assert!(
        bye.starts_with(&format!("BYE sip:queue@[::1]:{}", queue.port)),
        "{bye}"
    );
    let log = wait_for_log(&idgate, "outcome=");
    assert!(log.contains("outcome=\"connected\""), "{log}");
}

#[test]
fn a_verified_call_over_ipv6_tcp_where_the_queue_hangs_up() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = v6_queue(queue_dir.path(), "queue_hangs_up.xml", &["-d", "1500"]);
    let idgate = idgate_on_v6(&route("[::1]", queue.port));
    let mut caller = v6_caller(&idgate, "caller_waits.xml", "+46701234562", &["-t", "t1"]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);

    assert_verified_over_v6(&idgate, &queue, "+46701234562");
    assert_answered_over_v6(&idgate, &caller);
    // The queue's BYE was answered (the scenario needs the 200), and idgate ended the caller's
    // leg with a BYE of its own over IPv6 TCP.
    let bye = caller.received("BYE").expect("idgate's BYE to the caller");
    let via = header(&bye, "Via").expect("Via");
    assert!(
        via.starts_with(&format!("SIP/2.0/TCP [::1]:{};", idgate.sip_port)),
        "{via}"
    );
}

/// An OPTIONS from `local` (for Via and Contact) to idgate at `[::1]:port`, with `extra` header
/// lines; `top_via` replaces the Via's sent-by when set.
fn options(port: u16, local: &str, transport: &str, top_via: Option<&str>, extra: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let sent_by = top_via.unwrap_or(local);
    format!(
        "OPTIONS sip:[::1]:{port} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {sent_by};branch=z9hG4bK6v{n}x{pid};rport\r\n\
         From: <sip:probe@[::1]>;tag=v6{n}\r\n\
         To: <sip:ping@[::1]:{port}>\r\n\
         Call-ID: v6-{n}-{pid}@[::1]\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: \"Probe\" <sip:probe@{local}>\r\n\
         Max-Forwards: 70\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        pid = std::process::id(),
    )
}

/// Sends `request` over UDP from `socket` to `to`; the first final response within 3 s.
fn udp_exchange(socket: &UdpSocket, request: &str, to: &str) -> Option<String> {
    socket.send_to(request.as_bytes(), to).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let mut buf = [0u8; 8192];
    loop {
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return Some(text);
        }
    }
}

#[test]
fn options_over_ipv6_udp_and_tcp_are_answered() {
    let idgate = idgate_on_v6(&route("[::1]", 9));
    let udp = UdpSocket::bind("[::1]:0").expect("bind ::1");
    let local = udp.local_addr().expect("addr").to_string();
    let request = options(idgate.sip_port, &local, "UDP", None, "");
    let response = udp_exchange(&udp, &request, &v6_addr(&idgate)).expect("a UDP answer");
    assert!(response.starts_with("SIP/2.0 200"), "{response}");
    let via = header(&response, "Via").expect("Via");
    assert!(via.starts_with(&format!("SIP/2.0/UDP {local};")), "{via}");

    let mut tcp = TcpStream::connect(v6_addr(&idgate)).expect("connect over IPv6 TCP");
    tcp.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let local = tcp.local_addr().expect("addr").to_string();
    let request = options(idgate.sip_port, &local, "TCP", None, "");
    tcp.write_all(request.as_bytes()).expect("send");
    let response = read_response(&mut tcp).expect("a TCP answer");
    assert!(response.starts_with("SIP/2.0 200"), "{response}");
    let via = header(&response, "Via").expect("Via");
    assert!(via.starts_with(&format!("SIP/2.0/TCP {local};")), "{via}");
}

/// Reads from a TCP stream until a whole final response (headers and an empty body) is in;
/// bounded by the stream's read timeout and 5 s overall.
fn read_response(stream: &mut TcpStream) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(end) = text.find("\r\n\r\n") {
            let message: String = text.drain(..end + 4).collect();
            if !message.starts_with("SIP/2.0 1") {
                return Some(message);
            }
        }
    }
    None
}

/// RFC 5118's forms: a foreign IPv6 sent-by with a port (§4.10's delimiters) is answered at
/// the source, with `received` and `rport` (RFC 3581); a bracketed `received` from a proxy in
/// a lower Via (§4.5) and IPv4 next to IPv6 (§4.7) are carried back unchanged; an IPv6
/// reference without brackets in the Request-URI (§4.2) is refused with 400.
#[test]
fn rfc5118_ipv6_forms_on_the_wire() {
    let idgate = idgate_on_v6(&route("[::1]", 9));
    let to = v6_addr(&idgate);
    let socket = UdpSocket::bind("[::1]:0").expect("bind ::1");
    let local = socket.local_addr().expect("addr");

    let foreign = "[2001:db8::9:1]:6050";
    let lower = "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144\r\n\
                 Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=[2001:db8::9:255]\r\n";
    let request = options(
        idgate.sip_port,
        &local.to_string(),
        "UDP",
        Some(foreign),
        lower,
    );
    let response = udp_exchange(&socket, &request, &to).expect("an answer at the source");
    assert!(response.starts_with("SIP/2.0 200"), "{response}");
    let vias: Vec<&str> = response
        .lines()
        .filter(|l| l.starts_with("Via:") || l.starts_with("v:"))
        .collect();
    assert_eq!(vias.len(), 3, "{response}");
    assert!(vias[0].contains(foreign), "{}", vias[0]);
    // RFC 3261 §20.42: no brackets (rsipstack's own `[[::1]]` is rewritten in `sip::udp`).
    assert!(vias[0].contains(";received=::1;"), "{}", vias[0]);
    assert!(
        vias[0].contains(&format!("rport={}", local.port())),
        "{}",
        vias[0]
    );
    assert!(vias[1].contains("192.0.2.1;"), "{}", vias[1]);
    assert!(
        vias[2].contains("received=[2001:db8::9:255]"),
        "{}",
        vias[2]
    );

    let bad = options(idgate.sip_port, &local.to_string(), "UDP", None, "").replacen(
        "OPTIONS sip:[::1]:",
        "OPTIONS sip:::1:",
        1,
    );
    let response = udp_exchange(&socket, &bad, &to)
        .unwrap_or_else(|| panic!("no answer to {bad}\n--- idgate log ---\n{}", idgate.log()));
    assert!(response.starts_with("SIP/2.0 400"), "{response}");
}

/// Dual stack (`[::]`, Linux's default `bindv6only = 0`): an IPv4 caller arrives as
/// `::ffff:127.0.0.1`, is trusted by `127.0.0.0/8` and answered on IPv4; the queue on IPv4 is
/// reached from the same socket.
#[test]
fn dual_stack_takes_ipv4_callers_as_trusted_and_answers_them_on_ipv4() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let routes = route("127.0.0.1", queue.port);
    let idgate =
        Idgate::start_listening(("[::]", "127.0.0.1"), &routes, FAST_APPROVE, TRUST_V4, "");
    let target = idgate.sip_addr();
    let args = [
        "-set",
        "caller",
        "+46701234563",
        "-s",
        "5000",
        "-d",
        "2500",
        &target,
    ];
    let mut caller = Sipp::start(idgate.dir.path(), "caller.xml", &args, 1);
    assert_ok("caller over IPv4", &mut caller, &idgate);
    assert_ok("queue over IPv4", &mut queue, &idgate);

    let invite = queue.received("INVITE").expect("the queue got an INVITE");
    assert_eq!(header(&invite, "X-Identity-Status"), Some("verified"));
    let ok = traced(&caller, "message received", "SIP/2.0 200", "INVITE").expect("a 200 OK");
    assert_eq!(connection_line(&ok), Some("c=IN IP4 127.0.0.1"), "{ok}");
    // The caller is told its IPv4 address, not the v4-mapped form the socket saw.
    let via = header(&ok, "Via").expect("Via");
    assert!(!via.contains("::ffff") && !via.contains('['), "{via}");
    let log = wait_for_log(&idgate, "outcome=");
    assert!(!log.contains("untrusted peer refused"), "{log}");

    // The same caller is refused when only another IPv4 address is trusted: the match above
    // was the v4-mapped address against 127.0.0.0/8, not trust by default.
    let strict = "trusted_peers = [\"127.0.0.2/32\"]\n";
    let idgate = Idgate::start_listening(("[::]", "127.0.0.1"), &routes, FAST_APPROVE, strict, "");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = udp.local_addr().expect("addr").to_string();
    let invite = options(idgate.sip_port, &local, "UDP", None, "")
        .replace("OPTIONS", "INVITE")
        .replace("sip:[::1]", "sip:5000@127.0.0.1")
        .replace("<sip:ping@[::1]", "<sip:5000@127.0.0.1");
    let response = udp_exchange(&udp, &invite, &idgate.sip_addr()).expect("an answer on IPv4");
    assert!(response.starts_with("SIP/2.0 403"), "{response}");
}
