//! Faults end to end, the signalling: a queue that is down or refuses (the caller gets the
//! all-busy prompt and a BYE, or the fallback), 10 % signalling loss on both sides, a 2xx never
//! ACKed. Shared setup: `support::faults`. Every wait is bounded; everything is on loopback.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::faults::{FAST_APPROVE, call, ended_call, route, start, verdicts};
use support::{Idgate, Sipp, assert_ok, eventually, header};

/// Checks the caller was announced to (the `AllBusy` prompt in the `announcing` state) and then
/// hung up by idgate, and the call ended `queue-unavailable`.
fn assert_announced_and_hung_up(idgate: &Idgate, caller: &str) {
    let row = ended_call(idgate, caller);
    assert_eq!(row["outcome"], "queue-unavailable", "{row}");
    let log = idgate.log();
    let announced = log
        .lines()
        .any(|l| l.contains("state=\"announcing\"") && l.contains("action=\"play\""));
    assert!(announced, "the all-busy prompt was played\n{log}");
    assert!(
        log.lines().any(|l| l.contains("action=\"hang-up-caller\"")),
        "{log}"
    );
}

#[test]
fn a_queue_that_never_answers_gets_the_caller_a_prompt_and_a_bye() {
    // A socket that takes the queue's datagrams and never answers: the INVITE goes unanswered
    // (retransmitted) until the ring timeout.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let routes = route(silent_port, "ring_timeout_secs = 3\n");
    let idgate = start(&routes, FAST_APPROVE, "");
    let mut caller = call(&idgate, "caller_waits.xml", "+46702200001", &[]);
    assert_ok("caller", &mut caller, &idgate);
    assert_announced_and_hung_up(&idgate, "+46702200001");
    silent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut buf = [0u8; 8192];
    let (n, _) = silent
        .recv_from(&mut buf)
        .expect("the queue INVITE arrived");
    assert!(
        buf[..n].starts_with(b"INVITE "),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[test]
fn a_queue_answering_503_gets_the_caller_a_prompt_and_a_bye() {
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue_unavailable.xml", &[], 1);
    let idgate = start(&route(queue.port, ""), FAST_APPROVE, "");
    let mut caller = call(&idgate, "caller_waits.xml", "+46702200002", &[]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    assert_announced_and_hung_up(&idgate, "+46702200002");
}

#[test]
fn a_queue_answering_503_falls_back_and_a_busy_fallback_gets_the_prompt() {
    let dir = tempfile::tempdir().expect("dir");
    // First call: 503 at the target, then the fallback answers. Second call: 503, then 486.
    let mut down = Sipp::start(dir.path(), "queue_unavailable.xml", &[], 2);
    let mut fallback = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let mut busy = Sipp::start(dir.path(), "queue_busy.xml", &[], 1);
    let routes = format!(
        "[[route]]\nname = \"support\"\nmatch = \"5000\"\ntarget = \"sip:queue@127.0.0.1:{down}\"\nfallback = \"sip:overflow@127.0.0.1:{fallback}\"\n\
         [[route]]\nname = \"busy-fallback\"\nmatch = \"5001\"\ntarget = \"sip:queue@127.0.0.1:{down}\"\nfallback = \"sip:overflow@127.0.0.1:{busy}\"\n",
        down = down.port,
        fallback = fallback.port,
        busy = busy.port,
    );
    let idgate = start(&routes, FAST_APPROVE, "");
    let mut first = call(&idgate, "caller.xml", "+46702200003", &["-d", "4000"]);
    assert_ok("caller who falls back", &mut first, &idgate);
    assert_ok("fallback queue", &mut fallback, &idgate);
    let target = idgate.sip_addr();
    let args = ["-set", "caller", "+46702200004", "-s", "5001", &target];
    let mut second = Sipp::start(idgate.dir.path(), "caller_waits.xml", &args, 1);
    assert_ok("caller whose fallback is busy", &mut second, &idgate);
    assert_ok("queue answering 503", &mut down, &idgate);
    assert_ok("busy fallback", &mut busy, &idgate);
    let invite = fallback.received("INVITE").expect("INVITE at the fallback");
    assert_eq!(header(&invite, "X-Identity-Status"), Some("verified"));
    assert_eq!(ended_call(&idgate, "+46702200003")["outcome"], "connected");
    assert_announced_and_hung_up(&idgate, "+46702200004");
}

// ---------------------------------------------------------------------------------------------
// Signalling loss.
// ---------------------------------------------------------------------------------------------

/// SIPp drops 10 % of what it sends and receives, on the caller side and the queue side; the
/// retransmissions of both ends carry every call through, each verified.
#[test]
fn calls_complete_with_ten_percent_signalling_loss_on_both_sides() {
    const CALLS: u32 = 5;
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &["-lost", "10"], CALLS);
    // One caller number for every call: lift the per-caller push limit.
    let limits = "[limits]\npushes_per_caller = 100\npushes_per_person = 100\n";
    let idgate = start(&route(queue.port, "keypad = false\n"), FAST_APPROVE, limits);
    let target = idgate.sip_addr();
    let args = [
        "-set",
        "caller",
        "+46702300001",
        "-s",
        "5000",
        "-d",
        "2500",
        "-lost",
        "10",
        "-r",
        "1",
        "-l",
        "1",
        &target,
    ];
    let mut callers = Sipp::start(idgate.dir.path(), "caller.xml", &args, CALLS);
    let status = callers.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "callers failed ({status})\n--- SIPp trace ---\n{}\n--- idgate log ---\n{}",
        callers.trace(),
        idgate.log()
    );
    // The queue SIPp's exit status is not asserted: with its own 10% loss it can fail a call
    // inside SIPp (seen in CI: "queue failed" while every caller completed and every INVITE
    // reached the queue verified). What idgate owes is asserted below: every call reached the
    // queue, verified, and none is left active.
    let _ = queue.wait(Duration::from_secs(60));
    // Not `eventually` (20 s): when every retransmission of a BYE or of its 200 is lost, the
    // transaction ends only at timer F (64*T1 = 32 s) after SIPp has gone.
    let deadline = Instant::now() + Duration::from_secs(70);
    while idgate.metric("idgate_active_calls") != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "calls still active 70 s after the traffic\n--- idgate log ---\n{}",
            idgate.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A retransmitted INVITE is the same call: count distinct Call-IDs.
    let mut call_ids: Vec<String> = queue
        .received_all("INVITE")
        .iter()
        .filter_map(|i| header(i, "Call-ID").map(str::to_owned))
        .collect();
    call_ids.sort();
    call_ids.dedup();
    assert_eq!(call_ids.len(), CALLS as usize, "{call_ids:?}");
    for (_, status, reason) in verdicts(&queue) {
        assert_eq!((status.as_str(), reason), ("verified", None));
    }
}

// ---------------------------------------------------------------------------------------------
// A 2xx never ACKed.
// ---------------------------------------------------------------------------------------------

/// The caller never ACKs: idgate retransmits the 200 OK (T1 doubling to T2, RFC 3261
/// §13.3.1.4), gives up after 64*T1 (32 s), ends the dialog, and no call is left.
#[test]
fn a_200_never_acked_is_retransmitted_then_given_up_and_the_call_cleaned_up() {
    let idgate = start(&route(9, ""), FAST_APPROVE, "");
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sip.local_addr().expect("addr").port();
    let rtp_port = rtp.local_addr().expect("addr").port();
    let target = idgate.sip_addr();
    let offer = format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    );
    let invite = format!(
        "INVITE sip:5000@{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKnoack1;rport\r\n\
         From: <sip:+46702400001@127.0.0.1:{port}>;tag=noack\r\nTo: <sip:5000@{target}>\r\n\
         Call-ID: never-acked-{port}\r\nCSeq: 1 INVITE\r\nContact: <sip:raw@127.0.0.1:{port}>\r\n\
         Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{offer}",
        len = offer.len()
    );
    sip.send_to(invite.as_bytes(), &target).expect("send");

    // Everything idgate sends for 45 s (64*T1 = 32 s, and some margin); a BYE is answered.
    let start = Instant::now();
    let mut oks: Vec<Duration> = Vec::new();
    let mut byes = 0;
    let mut buf = [0u8; 8192];
    while start.elapsed() < Duration::from_secs(45) {
        sip.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let Ok((n, from)) = sip.recv_from(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.starts_with("SIP/2.0 200") && msg.contains("INVITE") {
            oks.push(start.elapsed());
        } else if msg.starts_with("BYE ") {
            byes += 1;
            let ok = bye_ok(&msg);
            sip.send_to(ok.as_bytes(), from).expect("send");
        }
    }
    assert!(oks.len() >= 5, "the 200 OK was retransmitted: {oks:?}");
    let last = *oks.last().expect("a 200 OK");
    assert!(
        last < Duration::from_secs(40),
        "retransmissions stopped after 64*T1: {oks:?}"
    );
    assert!(
        oks.windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_millis(300)),
        "spaced by at least T1: {oks:?}"
    );
    eventually("no active call", &idgate, || {
        idgate.metric("idgate_active_calls") == Some(0.0)
    });
    let row = ended_call(&idgate, "+46702400001");
    assert_eq!(row["outcome"], "abandoned", "{row}");
    assert!(
        byes >= 1,
        "the dialog is ended with a BYE (RFC 3261 §13.3.1.4)"
    );
    assert!(row["status"].is_null(), "never identified: {row}");
}

/// A 200 OK for a BYE, copying its Via, From, To, Call-ID and CSeq.
fn bye_ok(bye: &str) -> String {
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for line in bye.lines() {
        let name = line.split(':').next().unwrap_or_default().trim();
        if ["Via", "From", "To", "Call-ID", "CSeq", "v", "f", "t", "i"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
        {
            ok.push_str(line.trim_end());
            ok.push_str("\r\n");
        }
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    ok
}
