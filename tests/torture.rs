//! RFC 4475 torture messages on the wire: every message of `tests/data/rfc4475` sent byte-exact
//! to a running idgate over UDP and over TCP from loopback, the response checked against
//! `EXPECTED.tsv`, and after each message idgate must still answer OPTIONS.
//!
//! Where replies go: the corpus's Vias name hosts that are not ours (`192.0.2.x`,
//! `example.com`). idgate answers a UDP request at the packet's source address and port
//! (`received`/`rport`, RFC 3261 §18.2.2, RFC 3581), and a TCP request on its connection, so every
//! reply must arrive at the very socket that sent the message; the test listens there.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use support::Idgate;

/// Routes no corpus Request-URI matches: accepted INVITEs end in 404 from call setup.
const ROUTES: &str =
    "[[route]]\nname = \"only-5001\"\nmatch = \"5001\"\ntarget = \"sip:queue@127.0.0.1:9\"\n";
const SIMULATOR: &str = "default = \"approve\"\ndelay_ms = 100\nhint_ms = 50\n";

/// Messages whose answer differs from EXPECTED.tsv, as the parser-level test records them
/// (`src/sip/conformance.rs`): idgate answers 400 where rsipstack cannot match an RFC 2543-style
/// transaction.
const DEVIATIONS: [&str; 2] = ["wsinv.dat", "inv2543.dat"];

struct Row {
    file: String,
    expected: String,
    bytes: Vec<u8>,
}

fn corpus() -> Vec<Row> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475");
    let table = std::fs::read_to_string(dir.join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Row {
                file: cols[0].to_owned(),
                expected: cols[2].to_owned(),
                bytes: std::fs::read(dir.join(cols[0])).expect("corpus file"),
            }
        })
        .collect()
}

/// The status codes of the responses, in order.
fn statuses(responses: &[String]) -> Vec<u16> {
    responses
        .iter()
        .filter_map(|r| r.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok())
        .collect()
}

/// The Call-ID of the first message in `bytes` (long or compact form, RFC 3261 §7.3.3).
fn call_id(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim().to_owned())
    })
}

/// The first final status with the sent message's Call-ID, or `drop` when none came. Over TCP
/// dblreq.dat is two messages (RFC 4475 §3.1.1.8 is about datagrams): only the first counts.
fn outcome(want: &Option<String>, responses: &[String]) -> String {
    responses
        .iter()
        .filter(|r| call_id(r.as_bytes()) == *want)
        .filter_map(|r| r.strip_prefix("SIP/2.0 ")?.get(..3)?.parse::<u16>().ok())
        .find(|s| *s >= 200)
        .map_or_else(|| "drop".to_owned(), |s| s.to_string())
}

fn meets(expected: &str, got: &str) -> bool {
    match expected {
        "no-crash" => true,
        "accept" => got != "400" && got != "drop",
        "drop" => got == "drop",
        code => got == code,
    }
}

/// How long to listen for a reply: a message that must not be answered gets a shorter wait.
fn patience(expected: &str) -> Duration {
    if expected == "drop" {
        Duration::from_millis(800)
    } else {
        Duration::from_secs(4)
    }
}

/// Datagrams that reach `socket` within `limit`, stopping at the first final response.
fn udp_responses(
    socket: &UdpSocket,
    from: &str,
    want: &Option<String>,
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            break;
        };
        assert_eq!(peer.to_string(), from, "a reply from an unexpected source");
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if outcome(want, &out) != "drop" {
            break;
        }
    }
    out
}

fn check_alive(idgate: &Idgate, after: &str) {
    let answer = idgate.options();
    assert!(
        answer.starts_with("SIP/2.0 200"),
        "after {after}: OPTIONS got {answer}\n--- log ---\n{}",
        idgate.log()
    );
}

#[test]
fn every_torture_message_over_udp_is_answered_as_expected_and_only_to_its_sender() {
    let idgate = Idgate::start(ROUTES, SIMULATOR);
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for row in corpus() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.send_to(&row.bytes, idgate.sip_addr()).expect("send");
        let want = call_id(&row.bytes);
        let responses = udp_responses(&socket, &idgate.sip_addr(), &want, patience(&row.expected));
        let got = outcome(&want, &responses);
        table.push(format!("{}\t{}\t{got}", row.file, row.expected));
        let deviation = DEVIATIONS.contains(&row.file.as_str());
        if !(meets(&row.expected, &got) || deviation && got == "400") {
            failures.push(format!(
                "{} over UDP: expected {}, got {got}: {responses:?}",
                row.file, row.expected
            ));
        }
        check_alive(&idgate, &row.file);
    }
    println!("UDP\n{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Reads SIP messages from a stream (framed by Content-Length) until a final response, EOF or
/// `limit`; returns them and whether the server closed the connection.
fn tcp_responses(
    stream: &mut TcpStream,
    want: &Option<String>,
    limit: Duration,
) -> (Vec<String>, bool) {
    let deadline = Instant::now() + limit;
    let mut data = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => return (out, true),
        }
        while let Some(message) = take_message(&mut data) {
            out.push(message);
        }
        if outcome(want, &out) != "drop" {
            break;
        }
    }
    (out, false)
}

fn take_message(data: &mut Vec<u8>) -> Option<String> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let length: usize = support::header(&head, "Content-Length")
        .or_else(|| support::header(&head, "l"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if data.len() < end + length {
        return None;
    }
    let message: Vec<u8> = data.drain(..end + length).collect();
    Some(String::from_utf8_lossy(&message).into_owned())
}

fn options_on(stream: &mut TcpStream, n: usize) -> Option<String> {
    let port = stream.local_addr().ok()?.port();
    let options = format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKtcpopt{n}\r\n\
         From: <sip:probe@127.0.0.1>;tag=p{n}\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: tcp-options-{port}-{n}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(options.as_bytes()).ok()?;
    let want = Some(format!("tcp-options-{port}-{n}"));
    let (responses, _) = tcp_responses(stream, &want, Duration::from_secs(3));
    responses.into_iter().find(|r| r.starts_with("SIP/2.0 2"))
}

#[test]
fn every_torture_message_over_tcp_is_answered_as_expected_and_the_connection_survives() {
    let idgate = Idgate::start(ROUTES, SIMULATOR);
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (n, row) in corpus().into_iter().enumerate() {
        let mut stream = TcpStream::connect(idgate.sip_addr()).expect("connect");
        stream.write_all(&row.bytes).expect("send");
        let want = call_id(&row.bytes);
        let (mut responses, mut closed) =
            tcp_responses(&mut stream, &want, patience(&row.expected));
        // A Content-Length larger than what follows (clerr) keeps a stream waiting for the rest:
        // the sender ending its side makes the message complete, and bad.
        if responses.is_empty() && !closed && row.expected != "drop" {
            let _ = stream.shutdown(Shutdown::Write);
            (responses, closed) = tcp_responses(&mut stream, &want, Duration::from_secs(3));
        }
        let got = outcome(&want, &responses);
        let survives = !closed && options_on(&mut stream, n).is_some();
        table.push(format!(
            "{}\t{}\t{got}\t{}\t{:?}",
            row.file,
            row.expected,
            if survives { "open" } else { "closed" },
            statuses(&responses)
        ));
        let deviation = DEVIATIONS.contains(&row.file.as_str());
        if !(meets(&row.expected, &got) || deviation && got == "400") {
            failures.push(format!(
                "{} over TCP: expected {}, got {got}: {responses:?}",
                row.file, row.expected
            ));
        }
        check_alive(&idgate, &row.file);
    }
    println!("TCP\n{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
