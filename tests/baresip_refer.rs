//! REFER interop with a real user agent: baresip (Debian's `baresip-core`, 1.0.0) as the
//! caller, SIPp as the agent queue, all on loopback.
//!
//! What baresip 1.0.0 does with a REFER (found by these tests, see the asserts):
//!
//! - It accepts the REFER (202), sends NOTIFY `SIP/2.0 100 Trying`, calls the Refer-To target,
//!   and reports the outcome by NOTIFY sipfrag (`SIP/2.0 200 OK` once the target answered).
//!   It leaves the transferor's dialog up until the transferor hangs up.
//! - It copies NONE of the Refer-To URI headers (`?X-Identity-Status=...&...`) onto its INVITE
//!   as header fields: it keeps the whole URI, headers part included, verbatim as the
//!   Request-URI and in To (RFC 3261 19.1.5 says to turn them into header fields and forbids
//!   them in a Request-URI). It does not copy the REFER's own X-Identity-* headers either, and
//!   sends no Referred-By.
//! - It cannot follow a Refer-To longer than 255 bytes: `call_event_handler` in its call.c
//!   formats the Refer-To into `char buf[256]`, which comes out empty when the value does not
//!   fit; the transfer then fails (`call: sipsess_connect: No such file or directory`) and it
//!   sends NOTIFY `SIP/2.0 500 Call Error`. idgate's Refer-To carries X-Identity-Token (a JWS of
//!   several hundred bytes), so baresip never follows idgate's REFER: idgate falls back to calling
//!   the queue itself (B2BUA) and the call ends `connected`, not `referred`.
//!
//! So for a REFER target that is a phone or softphone, the identity reaches the agent, at best,
//! as text in the Request-URI; PBXs (Asterisk, FreeSWITCH) are the real REFER targets.

mod support;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use support::baresip::{self, strip_ansi};
use support::{Idgate, Sipp, free_port, header, header_count, wait_for_log};

/// How long any one process of a test may take to finish (a loaded 2-core machine).
const LIMIT: Duration = Duration::from_secs(90);

/// The account baresip calls from: idgate reads the caller number from its From.
const CALLER: &str = "+46701234567";

/// A simulator that approves at once, so the call is verified within a second of the greeting.
const FAST_APPROVE: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n";

/// What baresip 1.0.0 can pass from a REFER to its transfer code: `char buf[256]` in call.c.
const BARESIP_REFER_TO_MAX: usize = 255;

/// A running baresip, headless: no audio device (aubridge loops its own audio), no UI but the
/// `menu` commands `-e` types, SIP trace (`-s`) on. Killed on drop.
struct Baresip {
    child: Child,
    output: PathBuf,
    sip_port: u16,
}

impl Baresip {
    /// Starts baresip with its config in `dir/baresip` and makes it dial `uri` at once.
    fn start(dir: &Path, uri: &str) -> Baresip {
        let sip_port = free_port();
        // regint=0: no REGISTER; calls go straight to the dialled URI.
        let account = format!("\"Test Caller\" <sip:{CALLER}@127.0.0.1>;regint=0\n");
        let setup = baresip::Setup {
            sip_port,
            extra: "call_local_timeout\t60\ncall_max_calls\t\t4\n",
            account: &account,
            uri,
            quit_after_secs: 150,
        };
        let (child, output) = baresip::spawn(dir, &setup);
        Baresip {
            child,
            output,
            sip_port,
        }
    }

    /// Everything baresip printed so far, raw (ANSI colours, CR LF).
    fn raw(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// baresip's output for a failure message: without colours and the per-second status line.
    fn report(&self) -> String {
        strip_ansi(&self.raw())
            .replace("\r\n", "\n")
            .split(['\n', '\r'])
            .filter(|line| !line.contains("audio=") && !line.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The SIP messages in baresip's trace, in order.
    fn messages(&self) -> Vec<Traced> {
        let local = format!("127.0.0.1:{} ->", self.sip_port);
        let raw = self.raw();
        // Each message: "ESC[36;1m#\n<transport> <from> -> <to>\n<message>ESC[;m".
        raw.split("\x1b[36;1m#\n")
            .skip(1)
            .filter_map(|block| {
                let block = block.split("\x1b[;m").next()?;
                let (route, text) = block.split_once('\n')?;
                Some(Traced {
                    sent: route.contains(&local),
                    text: text.replace("\r\n", "\n"),
                })
            })
            .collect()
    }

    /// Polls (bounded) until baresip's trace holds a message that `wanted` accepts.
    fn wait_for(&self, what: &str, wanted: impl Fn(&Traced) -> bool) -> Traced {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(found) = self.messages().into_iter().find(&wanted) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "baresip never {what}; its output:\n{}",
                self.report()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One SIP message from baresip's trace.
#[derive(Debug, Clone)]
struct Traced {
    /// Whether baresip sent it (else received).
    sent: bool,
    /// The message, LF line ends.
    text: String,
}

impl Traced {
    fn is_request(&self, method: &str) -> bool {
        self.text.starts_with(&format!("{method} "))
    }

    fn is_response(&self, status: u16) -> bool {
        self.text.starts_with(&format!("SIP/2.0 {status} "))
    }

    fn body(&self) -> &str {
        self.text.split_once("\n\n").map_or("", |(_, body)| body)
    }
}

/// Waits (bounded) until something has bound UDP `port` on 127.0.0.1 (SIPp is listening).
/// Read from /proc/net/udp: probing with a bind of our own could steal the port from SIPp.
fn wait_until_bound(port: u16) {
    let needle = format!("0100007F:{port:04X}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        let bound = table
            .lines()
            .skip(1)
            .any(|line| line.split_whitespace().nth(1) == Some(needle.as_str()));
        if bound {
            return;
        }
        assert!(Instant::now() < deadline, "nothing listens on UDP {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) for SIPp to end and fails the test, with everything there is to see, unless
/// every call of its scenario succeeded.
fn assert_sipp_ok(name: &str, sipp: &mut Sipp, baresip: &Baresip, idgate: Option<&Idgate>) {
    let status = sipp.wait(LIMIT);
    assert!(
        status.success(),
        "{name} SIPp failed ({status})\n--- SIPp trace ---\n{}\n--- baresip ---\n{}\n--- idgate log ---\n{}",
        sipp.trace(),
        baresip.report(),
        idgate.map(Idgate::log).unwrap_or_default()
    );
}

/// The first request of `method` a SIPp message log says was sent.
fn sent_request(trace: &str, method: &str) -> Option<String> {
    trace
        .split("----------------------------------------------")
        .find_map(|entry| {
            let body = entry.split_once("message sent")?.1;
            let start = body.find(&format!("{method} sip:"))?;
            Some(body[start..].to_string())
        })
}

/// The URI inside a Refer-To value (`<uri>`).
fn refer_to_uri(refer_to: &str) -> &str {
    refer_to
        .trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default()
}

/// The header names a URI carries after `?` (`?A=1&B=2` gives A, B).
fn uri_header_names(uri: &str) -> Vec<String> {
    uri.split_once('?')
        .map(|(_, headers)| {
            headers
                .split('&')
                .filter_map(|h| h.split_once('=').map(|(n, _)| n.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The request line of a message.
fn request_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default().trim()
}

/// baresip follows a REFER whose Refer-To fits its 255-byte limit. The transferor is SIPp playing
/// idgate's part (tests/sipp/transferor_short_refer.xml: the identity headers in the Refer-To URI
/// and on the REFER, Referred-By, a short stand-in token), because idgate's own Refer-To is too
/// long for baresip (next test). This is the test that shows which headers baresip carries.
#[test]
fn baresip_follows_a_short_refer_to_but_copies_none_of_its_headers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut queue = Sipp::start(dir.path(), "queue_referred.xml", &[], 1);
    let queue_port = queue.port.to_string();
    let mut transferor = Sipp::start(
        dir.path(),
        "transferor_short_refer.xml",
        &["-set", "queue_port", &queue_port],
        1,
    );
    wait_until_bound(queue.port);
    wait_until_bound(transferor.port);
    let baresip = Baresip::start(
        dir.path(),
        &format!("sip:468612345@127.0.0.1:{}", transferor.port),
    );
    assert_sipp_ok("transferor", &mut transferor, &baresip, None);
    assert_sipp_ok("queue", &mut queue, &baresip, None);

    // What the transferor sent.
    let refer = sent_request(&transferor.trace(), "REFER").expect("the REFER sent");
    let refer_to = header(&refer, "Refer-To").expect("Refer-To");
    assert!(refer_to.len() <= BARESIP_REFER_TO_MAX, "{refer_to}");
    let target = refer_to_uri(refer_to);
    let names = uri_header_names(target);
    assert_eq!(
        names,
        [
            "X-Identity-Status",
            "X-Identity-Method",
            "X-Identity-Subject",
            "X-Identity-Call",
            "X-Identity-Token"
        ],
        "{refer_to}"
    );
    assert!(header(&refer, "Referred-By").is_some(), "{refer}");
    assert_eq!(header(&refer, "X-Identity-Status"), Some("verified"));

    // baresip accepted, reported progress, then success once the queue answered.
    let trace = transferor.trace();
    assert!(trace.contains("SIP/2.0 202 Accepted"), "{trace}");
    let notifies = transferor.received_all("NOTIFY");
    let fragments: Vec<String> = notifies
        .iter()
        .map(|n| {
            let n = n.replace("\r\n", "\n");
            n.split_once("\n\n")
                .map_or(String::new(), |(_, body)| body.trim().to_owned())
        })
        .collect();
    assert!(
        fragments.len() == 2
            && fragments[0].starts_with("SIP/2.0 100 Trying")
            && fragments[1].starts_with("SIP/2.0 200 OK"),
        "NOTIFY sipfrags: {fragments:?}\n{trace}"
    );
    assert!(
        notifies
            .iter()
            .all(|n| header(n, "Event").is_some_and(|e| e.starts_with("refer"))),
        "{notifies:?}"
    );

    // The queue got baresip's own INVITE (not a forwarded one).
    let invite = queue.received("INVITE").expect("the queue got an INVITE");
    assert!(
        header(&invite, "User-Agent").is_some_and(|ua| ua.starts_with("baresip")),
        "{invite}"
    );
    assert!(
        header(&invite, "From").is_some_and(|f| f.contains(&format!("sip:{CALLER}@127.0.0.1"))),
        "{invite}"
    );
    // baresip 1.0.0: the Refer-To URI, `?headers` and all, verbatim as the Request-URI and in
    // To; none of its URI headers (X-Identity-Status, -Method, -Subject, -Call, -Token) becomes
    // a header field; the REFER's own X-Identity-* headers are not copied; no Referred-By.
    assert_eq!(
        request_line(&invite),
        format!("INVITE {target} SIP/2.0"),
        "{invite}"
    );
    assert_eq!(header(&invite, "To"), Some(format!("<{target}>").as_str()));
    for name in &names {
        assert_eq!(header_count(&invite, name), 0, "{name} copied:\n{invite}");
    }
    let identity_fields: Vec<&str> = invite
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.to_ascii_lowercase().starts_with("x-identity-"))
        .collect();
    assert!(identity_fields.is_empty(), "{invite}");
    assert_eq!(header(&invite, "Referred-By"), None, "{invite}");
    assert_eq!(header(&invite, "Replaces"), None, "{invite}");

    // And from baresip's side: one transfer INVITE, to the queue.
    let sent_invites: Vec<Traced> = baresip
        .messages()
        .into_iter()
        .filter(|m| m.sent && m.is_request("INVITE"))
        .collect();
    assert_eq!(sent_invites.len(), 2, "{}", baresip.report());
    assert!(
        sent_invites[1]
            .text
            .starts_with(&format!("INVITE sip:queue@127.0.0.1:{queue_port}?")),
        "{}",
        baresip.report()
    );
}

/// The real thing: idgate in REFER mode with baresip as the caller. idgate's Refer-To carries
/// the identity token and is longer than baresip 1.0.0 can handle, so baresip accepts the REFER
/// but cannot follow it (NOTIFY `500 Call Error`); idgate then calls the queue itself (B2BUA)
/// with the identity headers, and records the call `connected` with transfer mode `refer`.
/// If this fails because the queue got an INVITE from baresip, idgate's Refer-To has become
/// short enough for baresip: assert the referred path instead (see the test above for what
/// baresip then carries).
#[test]
fn baresip_accepts_idgates_refer_but_cannot_follow_it_and_idgate_falls_back_to_b2bua() {
    let queue_dir = tempfile::tempdir().expect("temp dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue_referred.xml", &[], 1);
    let routes = format!(
        "[[route]]\nname = \"pbx\"\nmatch = \"4686*\"\ntransfer = \"refer\"\n\
         target = \"sip:queue@127.0.0.1:{}\"\n",
        queue.port
    );
    let idgate = Idgate::start(&routes, FAST_APPROVE);
    wait_until_bound(queue.port);
    let baresip = Baresip::start(
        queue_dir.path(),
        &format!("sip:468612345@{}", idgate.sip_addr()),
    );
    assert_sipp_ok("queue", &mut queue, &baresip, Some(&idgate));

    // idgate's REFER, as baresip received it.
    let refer = baresip.wait_for("received a REFER", |m| !m.sent && m.is_request("REFER"));
    let refer_to = header(&refer.text, "Refer-To").expect("Refer-To");
    let target = refer_to_uri(refer_to);
    assert!(
        target.starts_with(&format!("sip:queue@127.0.0.1:{}?", queue.port)),
        "{refer_to}"
    );
    assert!(
        uri_header_names(target).contains(&"X-Identity-Token".to_owned()),
        "{refer_to}"
    );
    assert!(
        header(&refer.text, "Referred-By").is_some(),
        "{}",
        refer.text
    );
    assert!(
        refer_to.len() > BARESIP_REFER_TO_MAX,
        "idgate's Refer-To now fits baresip ({} bytes): it should have followed it\n{}",
        refer_to.len(),
        baresip.report()
    );

    // baresip: 202, NOTIFY 100 Trying, the target comes out empty, NOTIFY 500 Call Error.
    baresip.wait_for("answered the REFER 202", |m| m.sent && m.is_response(202));
    baresip.wait_for("reported the failed transfer", |m| {
        m.sent && m.is_request("NOTIFY") && m.body().starts_with("SIP/2.0 500 Call Error")
    });
    let output = baresip.report();
    assert!(
        output
            .lines()
            .any(|l| l.contains("menu: transferring call") && l.ends_with("to ''")),
        "{output}"
    );
    let sent_invites = baresip
        .messages()
        .into_iter()
        .filter(|m| m.sent && m.is_request("INVITE"))
        .count();
    assert_eq!(sent_invites, 1, "baresip never called the queue\n{output}");

    // The queue got idgate's B2BUA INVITE, identity headers as header fields.
    let invite = queue.received("INVITE").expect("the queue got an INVITE");
    assert!(
        header(&invite, "User-Agent").is_some_and(|ua| ua.starts_with("idgate")),
        "{invite}"
    );
    assert_eq!(header(&invite, "X-Identity-Status"), Some("verified"));
    assert_eq!(header(&invite, "X-Identity-Method"), Some("simulator"));
    assert!(header(&invite, "X-Identity-Token").is_some(), "{invite}");
    let call_id = header(&invite, "X-Identity-Call").expect("X-Identity-Call");

    // idgate hangs baresip up once the queue has (the queue ends the call after half a second).
    baresip.wait_for("was hung up by idgate", |m| !m.sent && m.is_request("BYE"));
    let log = wait_for_log(&idgate, "call ended");
    let ended = log
        .lines()
        .find(|l| l.contains("call ended"))
        .unwrap_or_default();
    assert!(ended.contains("outcome=\"connected\""), "{log}");
    let row = finished_call_row(&idgate, call_id);
    assert!(row.ended_at.is_some(), "the call's end was never recorded");
    assert_eq!(row.caller, CALLER);
    assert_eq!(row.status, Some(idgate::store::CallStatus::Verified));
    // The route says REFER; the row says how the call really went after the fallback.
    assert_eq!(row.transfer_mode, Some(idgate::config::Transfer::B2bua));
    assert_eq!(
        row.transfer_outcome,
        Some(idgate::store::TransferOutcome::Connected)
    );
}

/// The call row idgate wrote, read through the store once it records the call's end. idgate
/// logs "call ended" just before it writes the outcome, so this polls (bounded).
fn finished_call_row(idgate: &Idgate, call_id: &str) -> idgate::store::CallRow {
    let id = uuid::Uuid::parse_str(call_id).expect("call id");
    let url = format!("sqlite://{}", idgate.db_path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = idgate::store::Store::connect(&url)
            .await
            .expect("open the store");
        let deadline = Instant::now() + LIMIT;
        loop {
            let row = store
                .get_call(id)
                .await
                .expect("query")
                .expect("a row for the call");
            if row.ended_at.is_some() || Instant::now() > deadline {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// With `refer_to_headers = "short"` idgate's Refer-To fits baresip: baresip follows the REFER
/// to the SIPp queue, reports success by NOTIFY, and idgate records the call as referred. The
/// REFER itself still carries every identity header, the token included.
#[test]
fn baresip_follows_idgates_short_refer_to_the_queue() {
    let queue_dir = tempfile::tempdir().expect("temp dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue_referred.xml", &[], 1);
    let routes = format!(
        "[[route]]\nname = \"pbx\"\nmatch = \"4686*\"\ntransfer = \"refer\"\n\
         refer_to_headers = \"short\"\ntarget = \"sip:queue@127.0.0.1:{}\"\n",
        queue.port
    );
    let idgate = Idgate::start(&routes, FAST_APPROVE);
    wait_until_bound(queue.port);
    let baresip = Baresip::start(
        queue_dir.path(),
        &format!("sip:468612345@{}", idgate.sip_addr()),
    );
    assert_sipp_ok("queue", &mut queue, &baresip, Some(&idgate));

    let refer = baresip.wait_for("received a REFER", |m| !m.sent && m.is_request("REFER"));
    let refer_to = header(&refer.text, "Refer-To").expect("Refer-To");
    assert!(
        refer_to.len() <= BARESIP_REFER_TO_MAX,
        "{} bytes: {refer_to}",
        refer_to.len()
    );
    assert_eq!(
        uri_header_names(refer_to_uri(refer_to)),
        ["X-Identity-Status", "X-Identity-Method", "X-Identity-Call"],
        "{refer_to}"
    );
    assert!(
        header(&refer.text, "X-Identity-Token").is_some(),
        "the REFER itself carries the token\n{}",
        refer.text
    );
    assert_eq!(header_count(&refer.text, "Contact"), 1, "{}", refer.text);

    // baresip called the queue itself and said so.
    let invite = queue.received("INVITE").expect("the queue got an INVITE");
    assert!(
        !header(&invite, "User-Agent").is_some_and(|ua| ua.starts_with("idgate")),
        "the INVITE came from baresip, not idgate's fallback\n{invite}"
    );
    let call_id = uri_header_value(refer_to_uri(refer_to), "X-Identity-Call")
        .expect("the call id in the Refer-To");
    baresip.wait_for("reported the transfer's success", |m| {
        m.sent && m.is_request("NOTIFY") && m.body().starts_with("SIP/2.0 200")
    });
    let row = finished_call_row(&idgate, &call_id);
    assert_eq!(row.caller, CALLER);
    assert_eq!(row.status, Some(idgate::store::CallStatus::Verified));
    assert_eq!(
        row.transfer_outcome,
        Some(idgate::store::TransferOutcome::Referred),
        "{}",
        idgate.log()
    );
}

/// The value of one URI header (`?a=1&b=2`), undecoded (call ids need no decoding).
fn uri_header_value(uri: &str, name: &str) -> Option<String> {
    let (_, query) = uri.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n == name).then(|| v.to_owned())
    })
}
