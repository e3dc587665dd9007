//! Trunks that authenticate with SIP digest (RFC 3261 §22, RFC 8760): idgate as a process,
//! SIPp as the trunk (`-au`/`-ap`, `[authentication]`) and the queue, and a hand-written UAC on
//! a raw socket for SHA-256 and replays. The trunk sends from 127.0.0.1, which these tests leave
//! out of `trusted_peers` (only `127.0.0.2`), so it is admitted by credentials or not at all.

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::baresip;
use support::{Idgate, Sipp, assert_ok, free_port, header, wait_for_log};

const PASSWORD: &str = "correct-horse-battery-staple";
/// The number in From; the trunk's P-Asserted-Identity says `FORGED_PAI`.
const CALLER: &str = "+46701110001";
const FORGED_PAI: &str = "+46709999999";
const FAST_APPROVE: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n";
const NOT_TRUSTED: &str = "trusted_peers = [\"127.0.0.2/32\"]\n";

fn route(queue_port: u16) -> String {
    format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\ntarget = \"sip:queue@127.0.0.1:{queue_port}\"\n"
    )
}

/// `[sip.auth]` with MD5 offered first (SIPp 3.6 reads only the first challenge and knows only
/// MD5) and one trunk whose password is in a file.
fn trunk_sections(dir: &std::path::Path, algorithms: &str) -> String {
    let file = dir.join("trunk.pw");
    std::fs::write(&file, format!("{PASSWORD}\n")).expect("password file");
    format!(
        "[sip.auth]\nalgorithms = {algorithms}\n\
         [[sip.trunks]]\nname = \"carrier\"\nusername = \"carrier\"\npassword_file = \"{}\"\n",
        file.display()
    )
}

fn start(queue_port: u16, sip_extra: &str, algorithms: &str) -> (Idgate, tempfile::TempDir) {
    let secrets = tempfile::tempdir().expect("dir");
    let sections = trunk_sections(secrets.path(), algorithms);
    let idgate = Idgate::start_full(&route(queue_port), FAST_APPROVE, sip_extra, &sections);
    (idgate, secrets)
}

/// SIPp as the trunk, placing `calls` calls (10 a second: several share a second).
fn trunk(idgate: &Idgate, password: &str, calls: u32) -> Sipp {
    let target = idgate.sip_addr();
    let auth_uri = format!("5000@{target}");
    let args = [
        "-set",
        "caller",
        CALLER,
        "-s",
        "5000",
        "-d",
        "1000",
        "-au",
        "carrier",
        "-ap",
        password,
        "-auth_uri",
        &auth_uri,
        &target,
    ];
    Sipp::start(idgate.dir.path(), "trunk_caller.xml", &args, calls)
}

/// The queue got no INVITE within a short while after the caller gave up.
fn assert_no_call(queue: &Sipp) {
    std::thread::sleep(Duration::from_millis(500));
    assert!(queue.received("INVITE").is_none(), "{}", queue.trace());
}

#[test]
fn a_trunk_with_the_right_password_is_handed_to_the_queue_without_being_trusted() {
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], 3);
    let (idgate, _secrets) = start(queue.port, NOT_TRUSTED, "[\"MD5\", \"SHA-256\"]");
    let mut caller = trunk(&idgate, PASSWORD, 3);
    assert_ok("trunk", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);

    let trace = caller.trace();
    let challenge = trace
        .split_once("SIP/2.0 401")
        .map(|(_, rest)| rest.split("-----").next().unwrap_or(rest))
        .expect("challenged first");
    let offers: Vec<&str> = challenge
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate:"))
        .collect();
    assert_eq!(offers.len(), 2, "{challenge}");
    assert!(offers[0].contains("algorithm=MD5") && offers[1].contains("algorithm=SHA-256"));
    assert!(
        offers
            .iter()
            .all(|o| o.contains("realm=\"idgate\"") && o.contains("qop=\"auth\""))
    );

    assert_eq!(queue.received_all("INVITE").len(), 3, "{}", queue.trace());
    let invite = queue.received("INVITE").expect("the queue got the call");
    let from = header(&invite, "From").expect("From");
    // Admitted by credentials only: its P-Asserted-Identity is not believed.
    assert!(
        from.contains(CALLER) && !invite.contains(FORGED_PAI),
        "{invite}"
    );
    let log = wait_for_log(&idgate, "authenticated by digest");
    assert!(
        log.contains("trunk=\"carrier\"") || log.contains("trunk=carrier"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "the password reached the log");
}

#[test]
fn a_wrong_password_gets_403_and_no_call() {
    let dir = tempfile::tempdir().expect("dir");
    let queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let (idgate, _secrets) = start(queue.port, NOT_TRUSTED, "[\"MD5\", \"SHA-256\"]");
    let mut caller = trunk(&idgate, "Tr0ub4dor&3", 1);
    let status = caller.wait(Duration::from_secs(20));
    let trace = caller.trace();
    assert!(!status.success(), "the call went through:\n{trace}");
    let after_credentials = trace.split_once("Authorization: Digest").map(|(_, r)| r);
    assert!(
        after_credentials.is_some_and(|r| r.contains("SIP/2.0 403")),
        "no 403 after the credentials:\n{trace}"
    );
    assert_no_call(&queue);
    let log = wait_for_log(&idgate, "bad trunk credentials refused");
    assert!(log.contains("bad-credentials"), "{log}");
    assert!(
        idgate.metric_series("idgate_calls_rejected_total{status=\"403\"}") >= 1.0,
        "the refusal is counted"
    );
}

#[test]
fn an_invite_without_credentials_is_challenged() {
    let dir = tempfile::tempdir().expect("dir");
    let queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    // The default order: SHA-256 first (RFC 8760 §2.4).
    let (idgate, _secrets) = start(queue.port, NOT_TRUSTED, "[\"SHA-256\", \"MD5\"]");
    let target = idgate.sip_addr();
    let args = ["-set", "caller", CALLER, "-s", "5000", &target];
    let mut caller = Sipp::start(idgate.dir.path(), "caller.xml", &args, 1);
    let status = caller.wait(Duration::from_secs(20));
    let trace = caller.trace();
    assert!(!status.success(), "the call went through:\n{trace}");
    assert!(trace.contains("SIP/2.0 401 Unauthorized"), "{trace}");
    let first = header(&trace, "WWW-Authenticate").expect("a challenge");
    assert!(
        first.starts_with("Digest realm=\"idgate\", nonce=\""),
        "{first}"
    );
    assert!(first.contains("algorithm=SHA-256") && first.contains("qop=\"auth\""));
    assert!(!trace.contains("SIP/2.0 403"), "{trace}");
    assert_no_call(&queue);
}

#[test]
fn a_trusted_peer_still_needs_no_credentials_by_default() {
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    // Default trusted_peers (127.0.0.0/8) and mode (peers_or_digest), with a trunk configured.
    let (idgate, _secrets) = start(queue.port, "", "[\"MD5\"]");
    let target = idgate.sip_addr();
    let args = [
        "-set", "caller", CALLER, "-s", "5000", "-d", "1000", &target,
    ];
    let mut caller = Sipp::start(idgate.dir.path(), "caller_spoofing.xml", &args, 1);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    assert!(
        !caller.trace().contains("SIP/2.0 401"),
        "{}",
        caller.trace()
    );
    // A trusted peer's P-Asserted-Identity is believed: the queue sees that number.
    let invite = queue.received("INVITE").expect("the queue got the call");
    let from = header(&invite, "From").expect("From");
    assert!(from.contains(FORGED_PAI), "{invite}");
}

// ---- a hand-written UAC: SHA-256, replays ----

struct Uac {
    socket: UdpSocket,
    target: String,
    port: u16,
}

impl Uac {
    fn new(target: String) -> Uac {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let port = socket.local_addr().expect("addr").port();
        Uac {
            socket,
            target,
            port,
        }
    }

    /// An INVITE (with an SDP offer) for `user`, with `extra` header lines.
    fn invite(&self, user: &str, call: &str, cseq: u32, branch: &str, extra: &str) -> String {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            self.port + 2
        );
        format!(
            "INVITE sip:{user}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{branch}\r\n\
             From: <sip:{CALLER}@127.0.0.1:{p}>;tag=uac-{call}\r\nTo: <sip:{user}@{t}>\r\n\
             Call-ID: {call}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:uac@127.0.0.1:{p}>\r\n\
             Max-Forwards: 70\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            t = self.target,
            p = self.port,
        )
    }

    fn send(&self, message: &str) {
        self.socket
            .send_to(message.as_bytes(), &self.target)
            .expect("send");
    }

    /// The first final response (>= 200) for `call` within 10 s.
    fn final_response(&self, call: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 65_535];
        while Instant::now() < deadline {
            let Ok((n, _)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let status: u16 = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|r| r.get(..3))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if status >= 200 && header(&text, "Call-ID") == Some(call) {
                return text;
            }
        }
        panic!("no final response for {call}");
    }

    /// ACK for a non-2xx final response (same branch as the INVITE, RFC 3261 §17.1.1.3) or a
    /// 2xx (new branch), and BYE for a 2xx.
    fn ack(&self, response: &str, user: &str, call: &str, cseq: u32, branch: &str) {
        let to = header(response, "To").expect("To");
        let p = self.port;
        let t = &self.target;
        let ack = format!(
            "ACK sip:{user}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{branch}\r\n\
             From: <sip:{CALLER}@127.0.0.1:{p}>;tag=uac-{call}\r\nTo: {to}\r\nCall-ID: {call}\r\n\
             CSeq: {cseq} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        self.send(&ack);
    }
}

/// `Authorization` for a SHA-256 challenge, computed here from RFC 7616 §3.4.1.
fn sha256_authorization(challenge: &str, uri: &str, nc: &str) -> String {
    authorization_with_password(challenge, uri, nc, PASSWORD)
}

/// As `sha256_authorization`, with `password`.
fn authorization_with_password(challenge: &str, uri: &str, nc: &str, password: &str) -> String {
    let h = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce");
    let ha1 = h(&format!("carrier:idgate:{password}"));
    let ha2 = h(&format!("INVITE:{uri}"));
    let response = h(&format!("{ha1}:{nonce}:{nc}:raw-cnonce:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"carrier\", realm=\"idgate\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=SHA-256, qop=auth, nc={nc}, \
         cnonce=\"raw-cnonce\"\r\n"
    )
}

#[test]
fn sha256_credentials_admit_once_and_a_replay_or_another_uri_does_not() {
    let (idgate, _secrets) = start(9, NOT_TRUSTED, "[\"SHA-256\", \"MD5\"]");
    let uac = Uac::new(idgate.sip_addr());
    let uri = format!("sip:5000@{}", idgate.sip_addr());

    uac.send(&uac.invite("5000", "raw-1", 1, "r1a", ""));
    let challenge = uac.final_response("raw-1");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    uac.ack(&challenge, "5000", "raw-1", 1, "r1a");
    let offer = header(&challenge, "WWW-Authenticate").expect("challenge");
    assert!(offer.contains("algorithm=SHA-256"), "{offer}");
    let credentials = sha256_authorization(offer, &uri, "00000001");

    uac.send(&uac.invite("5000", "raw-1", 2, "r1b", &credentials));
    let answer = uac.final_response("raw-1");
    assert!(
        answer.starts_with("SIP/2.0 200"),
        "{answer}\n{}",
        idgate.log()
    );
    uac.ack(&answer, "5000", "raw-1", 2, "r1c");

    // The same credentials on a new call: a replay, answered with a fresh stale challenge.
    uac.send(&uac.invite("5000", "raw-2", 1, "r2a", &credentials));
    let replay = uac.final_response("raw-2");
    assert!(replay.starts_with("SIP/2.0 401"), "{replay}");
    let stale = header(&replay, "WWW-Authenticate").expect("challenge");
    assert!(stale.contains("stale=true"), "{stale}");
    uac.ack(&replay, "5000", "raw-2", 1, "r2a");

    // Next nonce count, but computed for 5000 and sent to 5001: refused.
    let credentials = sha256_authorization(offer, &uri, "00000002");
    uac.send(&uac.invite("5001", "raw-3", 1, "r3a", &credentials));
    let other_uri = uac.final_response("raw-3");
    assert!(other_uri.starts_with("SIP/2.0 403"), "{other_uri}");
    uac.ack(&other_uri, "5001", "raw-3", 1, "r3a");
    let log = wait_for_log(&idgate, "wrong-uri");
    assert!(log.contains("wrong-uri"), "{log}");
}

#[test]
fn a_guesser_is_locked_out_even_for_the_right_password_until_the_window_has_passed() {
    let secrets = tempfile::tempdir().expect("dir");
    // Three failures within 3 s lock the source out for 3 s.
    let sections = trunk_sections(secrets.path(), "[\"SHA-256\"]").replace(
        "[sip.auth]\n",
        "[sip.auth]\nmax_failures = 3\nfailure_window_secs = 3\n",
    );
    let idgate = Idgate::start_full(&route(9), FAST_APPROVE, NOT_TRUSTED, &sections);
    let uac = Uac::new(idgate.sip_addr());
    let uri = format!("sip:5000@{}", idgate.sip_addr());

    uac.send(&uac.invite("5000", "guess-0", 1, "g0", ""));
    let challenge = uac.final_response("guess-0");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    uac.ack(&challenge, "5000", "guess-0", 1, "g0");
    let offer = header(&challenge, "WWW-Authenticate").expect("challenge");

    // Three wrong passwords, then the right one: 403 for all four.
    let attempts = ["hunter2", "letmein", "123456", PASSWORD];
    for (i, password) in attempts.iter().enumerate() {
        let call = format!("guess-{}", i + 1);
        let branch = format!("g{}", i + 1);
        let nc = format!("{:08x}", i + 1);
        let credentials = authorization_with_password(offer, &uri, &nc, password);
        uac.send(&uac.invite("5000", &call, 1, &branch, &credentials));
        let answer = uac.final_response(&call);
        assert!(answer.starts_with("SIP/2.0 403"), "{password}: {answer}");
        uac.ack(&answer, "5000", &call, 1, &branch);
    }
    let log = wait_for_log(&idgate, "locked-out");
    assert!(log.contains("too many failures"), "{log}");
    assert!(!log.contains(PASSWORD), "the password reached the log");
    assert!(
        idgate.metric_series("idgate_calls_rejected_total{status=\"403\"}") >= 4.0,
        "the refusals are counted"
    );

    // After the window, the right password gets through.
    std::thread::sleep(Duration::from_millis(4_100));
    let credentials = authorization_with_password(offer, &uri, "00000010", PASSWORD);
    uac.send(&uac.invite("5000", "guess-5", 1, "g5", &credentials));
    let answer = uac.final_response("guess-5");
    assert!(
        answer.starts_with("SIP/2.0 200"),
        "{answer}\n{}",
        idgate.log()
    );
    uac.ack(&answer, "5000", "guess-5", 1, "g5b");
}

// ---- a real UAC: baresip ----

/// baresip (Debian's baresip-core 1.0.0) dialling `uri` at once as the trunk `carrier`, with
/// SIP trace on. Killed on drop.
struct Baresip {
    child: Child,
    output: std::path::PathBuf,
}

impl Baresip {
    fn dial(dir: &Path, uri: &str) -> Baresip {
        // regint=0: no REGISTER; the credentials answer idgate's challenge.
        let account =
            format!("<sip:{CALLER}@127.0.0.1>;auth_user=carrier;auth_pass={PASSWORD};regint=0\n");
        let setup = baresip::Setup {
            sip_port: free_port(),
            extra: "",
            account: &account,
            uri,
            quit_after_secs: 60,
        };
        let (child, output) = baresip::spawn(dir, &setup);
        Baresip { child, output }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn baresip_answers_the_md5_challenge_and_its_call_reaches_the_queue() {
    let dir = tempfile::tempdir().expect("dir");
    let queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    // baresip 1.0.0 (libre 1.x) knows only MD5 and fails the whole authentication on any
    // other challenge in the 401, even one after the MD5 challenge ("session closed: Function
    // not implemented", seen with ["MD5", "SHA-256"]): MD5 alone for it.
    let (idgate, _secrets) = start(queue.port, NOT_TRUSTED, "[\"MD5\"]");
    let uri = format!("sip:5000@{}", idgate.sip_addr());
    let baresip = Baresip::dial(dir.path(), &uri);
    // baresip stays on the line: wait for the queue's INVITE, not for the call to end.
    let deadline = Instant::now() + Duration::from_secs(60);
    while queue.received("INVITE").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = baresip.output();
    assert!(
        queue.received("INVITE").is_some(),
        "the queue got no call\n--- baresip ---\n{output}\n--- idgate ---\n{}",
        idgate.log()
    );
    assert!(output.contains("SIP/2.0 401 Unauthorized"), "{output}");
    assert!(output.contains("Authorization: Digest"), "{output}");
    let invite = queue.received("INVITE").expect("the queue got the call");
    assert!(
        header(&invite, "From").is_some_and(|f| f.contains(CALLER)),
        "{invite}"
    );
}
