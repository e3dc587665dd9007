//! Scanners against a running idgate, on loopback, each run bounded in count and time (under
//! `timeout`): SIPVicious (`svmap`, `svwar -m INVITE`, `svcrack`) and sipsak's random
//! (`-R`, randtrash) and flood (`-F`) modes, plus a burst of INVITEs sent with sipsak.
//!
//! What must hold: idgate never falls over (after every tool it is running and answers
//! OPTIONS); a scanner from an untrusted source is refused (403) and sets up no call; it learns
//! nothing beyond what the config exposes (the configured `user_agent`, one answer for every
//! extension, routed or not; no password "cracked": idgate has no REGISTER and no digest users);
//! a flood is answered by the `[admission]` rate limit (503 with `Retry-After`) while a call
//! answered before it completes normally.
//!
//! The tools' output is printed (`cargo nextest run --test scanners --no-capture` shows it).
//! Without the tools the tests skip with a note, except under `CI=true`, where they fail.

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Idgate, Sipp, assert_ok, eventually, free_port};

const SIMULATOR: &str = "default = \"approve\"\ndelay_ms = 200\nhint_ms = 50\n";

/// What the config exposes to the network about the server: this value, and nothing else.
const USER_AGENT: &str = "edge-sbc";

/// Extension 105 and 110–119 are routed; the others of 100–120 are not. Nobody trusted listens
/// at the target (a scanner never gets that far).
const SCAN_ROUTES: &str = r#"
[[route]]
name = "support"
match = "105"
target = "sip:queue@127.0.0.1:9"

[[route]]
name = "sales"
match = "11*"
target = "sip:queue@127.0.0.1:9"
"#;

/// The flood test's one route, to the SIPp queue; the flood's INVITEs call 999 (no route).
const FLOOD_ROUTE: &str = r#"
[[route]]
name = "support"
match = "5000"
target = "sip:queue@127.0.0.1:QUEUE_PORT"
"#;

/// An INVITE for sipsak's `-f` (sipsak adds its Via; `$replace$` is `-g`, one per request).
const FLOOD_INVITE: &str = "INVITE sip:999@127.0.0.1:SIP_PORT SIP/2.0\n\
    From: <sip:+46701234567@127.0.0.1>;tag=flood$replace$\n\
    To: <sip:999@127.0.0.1>\n\
    Call-ID: flood-$replace$@127.0.0.1\n\
    CSeq: 1 INVITE\n\
    Contact: <sip:flood@127.0.0.1>\n\
    Max-Forwards: 70\n\
    Content-Length: 0\n\n";

/// Whether every tool is installed; if not, skips with a note, or fails under `CI=true`.
fn tools_present(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{missing:?} not installed: CI must run the scanner tests (.ci/run installs the Debian \
         packages sipvicious and sipsak)"
    );
    eprintln!("SKIPPED: {missing:?} not installed (apt-get install sipvicious sipsak)");
    false
}

/// One tool run: its exit code (`124`: stopped by `timeout`) and everything it printed.
struct Run {
    code: Option<i32>,
    output: String,
}

/// Runs `tool` under `timeout` (`limit` seconds, then SIGKILL 5 s later), with `HOME` in `home`
/// (SIPVicious keeps its sessions there); prints and returns what it said.
fn run(tool: &str, args: &[&str], home: &Path, limit: u32) -> Run {
    let out = Command::new("timeout")
        .args(["-k", "5", &limit.to_string(), tool])
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code();
    println!("=== {tool} {} (exit {code:?})\n{output}", args.join(" "));
    Run { code, output }
}

/// After each tool: idgate is still running and answers OPTIONS with 200 (within a minute:
/// after a flood it may still be working through the backlog; how long it took is printed).
fn assert_alive(idgate: &mut Idgate, after: &str) {
    assert!(
        idgate.running(),
        "idgate died after {after}:\n{}",
        idgate.log()
    );
    let asked = Instant::now();
    let answer = idgate.options_within(Duration::from_secs(60));
    println!(
        "--- OPTIONS after {after}: answered in {:?}",
        asked.elapsed()
    );
    let answer = answer.unwrap_or_else(|| panic!("no answer to OPTIONS after {after}"));
    assert!(
        answer.starts_with("SIP/2.0 200"),
        "OPTIONS after {after}: {answer}"
    );
    assert!(
        idgate.running(),
        "idgate died after {after}:\n{}",
        idgate.log()
    );
}

/// No call was ever set up: none active, none counted.
fn assert_no_call(idgate: &Idgate, after: &str) {
    assert_eq!(
        idgate.metric("idgate_active_calls"),
        Some(0.0),
        "active calls after {after}"
    );
    let health = idgate.http_get("/healthz").unwrap_or_default();
    assert!(
        health.contains("\"total_calls\":0"),
        "a call was set up by {after}: {health}"
    );
}

/// What a refusal looks like from outside: the status line and the header names with their
/// values, minus what differs per request anyway (tags, branch, Call-ID, the request's From).
fn shape(response: &str) -> String {
    let mut lines = response.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    let mut shape = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let kept = match name.trim().to_ascii_lowercase().as_str() {
            "via" | "from" | "to" | "call-id" | "cseq" => "…".to_owned(),
            _ => value.trim().to_owned(),
        };
        shape.push(format!("{}: {kept}", name.trim()));
    }
    shape.sort();
    format!("{status} | {}", shape.join(" | "))
}

/// Sends an INVITE for `extension` without a body from a fresh socket; returns the final
/// response (ACKed, RFC 3261 §17.1.1.3).
fn invite(idgate: &Idgate, extension: u32) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    let head = |method: &str, to_tag: &str| {
        format!(
            "{method} sip:{extension}@127.0.0.1:{sip} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKscan{extension}x{port};rport\r\n\
             From: <sip:scanner@127.0.0.1>;tag=s{extension}\r\nTo: <sip:{extension}@127.0.0.1>{to_tag}\r\n\
             Call-ID: scan-{extension}-{port}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n\
             Contact: <sip:scanner@127.0.0.1:{port}>\r\n\
             Content-Length: 0\r\n\r\n",
            sip = idgate.sip_port
        )
    };
    let send = |text: String| socket.send_to(text.as_bytes(), idgate.sip_addr());
    send(head("INVITE", "")).expect("send INVITE");
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no final answer for {extension}: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("SIP/2.0 1") {
            continue;
        }
        let to_tag = support::header(&text, "To")
            .and_then(|to| to.split_once(";tag="))
            .map_or(String::new(), |(_, tag)| format!(";tag={tag}"));
        send(head("ACK", &to_tag)).expect("send ACK");
        return text;
    }
}

#[test]
fn scanners_from_an_untrusted_source_are_refused_and_learn_nothing() {
    if !tools_present(&["svmap", "svwar", "svcrack", "sipsak"]) {
        return;
    }
    // The scanners send from 127.0.0.1; only 127.0.0.2 is trusted.
    let sip = format!("trusted_peers = [\"127.0.0.2\"]\nuser_agent = \"{USER_AGENT}\"\n");
    let mut idgate = Idgate::start_with(SCAN_ROUTES, SIMULATOR, &sip);
    let home = tempfile::tempdir().expect("home for SIPVicious");
    let port = idgate.sip_port.to_string();
    let device = format!("127.0.0.1:{port}");

    // svmap, OPTIONS and INVITE: found, named only by the configured user agent.
    for method in ["OPTIONS", "INVITE"] {
        let local = free_port().to_string();
        let args = ["-P", &local, "-m", method, "127.0.0.1", "-p", &port];
        let svmap = run("svmap", &args, home.path(), 60);
        assert_eq!(svmap.code, Some(0), "svmap -m {method}");
        assert!(
            svmap.output.contains(&device) && svmap.output.contains(USER_AGENT),
            "svmap -m {method} lists the device by the configured name"
        );
        assert!(
            !svmap.output.to_lowercase().contains("idgate"),
            "svmap -m {method} learnt the product name"
        );
        assert_alive(&mut idgate, &format!("svmap -m {method}"));
    }
    assert!(
        idgate.metric_series("idgate_calls_rejected_total{status=\"403\"}") >= 1.0,
        "svmap's INVITE was refused as untrusted"
    );
    assert_no_call(&idgate, "svmap");

    // svwar: nothing found (it meets the same 403 for its random probe as for 100, and stops).
    let local = free_port().to_string();
    let args = [
        "-m",
        "INVITE",
        "-e100-120",
        "--force",
        "-P",
        &local,
        "127.0.0.1",
        "-p",
        &port,
    ];
    let svwar = run("svwar", &args, home.path(), 60);
    assert_eq!(svwar.code, Some(0), "svwar");
    assert!(
        svwar.output.contains("found nothing"),
        "svwar found something"
    );
    assert!(!svwar.output.contains("exists"), "svwar found an extension");
    assert_alive(&mut idgate, "svwar");
    // Every extension of the range, routed or not, gets the very same refusal.
    let answers: Vec<(u32, String)> = (100..=120).map(|e| (e, invite(&idgate, e))).collect();
    let routed = shape(&answers[5].1);
    assert!(routed.starts_with("SIP/2.0 403"), "extension 105: {routed}");
    for (extension, answer) in &answers {
        assert_eq!(
            shape(answer),
            routed,
            "extension {extension} answered differently"
        );
    }
    assert_alive(&mut idgate, "INVITEs to 100-120");
    assert_no_call(&idgate, "svwar");

    // svcrack: REGISTER is not served (405); no password, not even "[no password]".
    let local = free_port().to_string();
    let args = [
        "-u105",
        "-r1000-1020",
        "-P",
        &local,
        "127.0.0.1",
        "-p",
        &port,
    ];
    let svcrack = run("svcrack", &args, home.path(), 60);
    assert_eq!(svcrack.code, Some(0), "svcrack");
    assert!(
        svcrack.output.contains("found nothing"),
        "svcrack found something"
    );
    for success in [
        "The password for",
        "[no password]",
        "Does not seem to require",
    ] {
        assert!(
            !svcrack.output.contains(success),
            "svcrack reported {success:?}"
        );
    }
    assert_alive(&mut idgate, "svcrack");

    sipsak_random_and_flood(&mut idgate, "untrusted");
    assert_no_call(&idgate, "the scanners");
}

/// sipsak's randtrash mode (a few runs; each ends after three unanswered sends) and an OPTIONS
/// flood of 3,000 requests; idgate is alive after each.
fn sipsak_random_and_flood(idgate: &mut Idgate, source: &str) {
    let target = format!("sip:ping@{}", idgate.sip_addr());
    for round in 1..=3 {
        let random = run(
            "sipsak",
            &["-R", "-t", "40", "-s", &target],
            Path::new("/tmp"),
            60,
        );
        assert_ne!(random.code, Some(124), "sipsak -R ran into its time limit");
        assert_alive(idgate, &format!("sipsak -R round {round} ({source})"));
    }
    let flood = run(
        "sipsak",
        &["-F", "-e", "3000", "-s", &target],
        Path::new("/tmp"),
        60,
    );
    assert!(
        flood.output.contains("flood end reached"),
        "sipsak -F ended early"
    );
    assert_alive(idgate, &format!("sipsak -F ({source})"));
}

#[test]
fn a_flood_is_answered_by_the_rate_limit_and_a_call_in_progress_completes() {
    if !tools_present(&["sipsak"]) {
        return;
    }
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let route = FLOOD_ROUTE.replace("QUEUE_PORT", &queue.port.to_string());
    let sip = "trusted_peers = [\"127.0.0.1\"]\n";
    let admission = "[admission]\nmax_calls_per_second = 1\nretry_after_secs = 7\n";
    let mut idgate = Idgate::start_full(&route, SIMULATOR, sip, admission);

    // The call: answered and on its way to the queue before the flood starts.
    let target = idgate.sip_addr();
    let args = [
        "-set",
        "caller",
        "+46701234567",
        "-s",
        "5000",
        "-d",
        "12000",
        &target,
    ];
    let mut caller = Sipp::start(idgate.dir.path(), "caller.xml", &args, 1);
    eventually("the call is in progress", &idgate, || {
        idgate.metric("idgate_active_calls") == Some(1.0)
    });

    sipsak_random_and_flood(&mut idgate, "trusted");

    // 20 INVITEs at once from a trusted source to a number without a route: each gets 404
    // (admitted) or 503 with Retry-After (over the rate of one call a second).
    let file = idgate.dir.path().join("flood-invite.txt");
    let text = FLOOD_INVITE.replace("SIP_PORT", &idgate.sip_port.to_string());
    std::fs::write(&file, text).expect("INVITE file");
    let file = file.display().to_string();
    let target = format!("sip:999@{}", idgate.sip_addr());
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let (file, target) = (file.clone(), target.clone());
            let args = ["-v", "-f", &file, "-g", &i.to_string(), "-s", &target];
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run("sipsak", &args, Path::new("/tmp"), 60)
            })
        })
        .collect();
    let answers: Vec<Run> = burst
        .into_iter()
        .map(|t| t.join().expect("sipsak"))
        .collect();
    let mut refused = 0;
    for answer in &answers {
        let status = answer.output.lines().find(|l| l.starts_with("SIP/2.0 "));
        match status.and_then(|s| s.get(8..11)) {
            Some("404") => {}
            Some("503") => {
                assert!(
                    answer.output.contains("Retry-After: 7"),
                    "{}",
                    answer.output
                );
                refused += 1;
            }
            other => panic!("an INVITE of the burst got {other:?}:\n{}", answer.output),
        }
    }
    assert!(refused >= 1, "the rate limit refused none of 20 INVITEs");
    assert!(
        idgate.metric_series("idgate_calls_rejected_total{status=\"503\"}") >= refused as f64,
        "the refusals are counted"
    );
    assert_alive(&mut idgate, "the INVITE burst");

    // The call answered before the flood ends normally, on both sides.
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    eventually("no call is left", &idgate, || {
        idgate.metric("idgate_active_calls") == Some(0.0)
    });
    assert_alive(&mut idgate, "the held call");
}
