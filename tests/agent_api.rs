//! The agent page's API end to end, without a browser: a real call (SIPp caller and queue)
//! shows up in `/agent/api/calls` and on the event stream, "verify again" pushes while the
//! caller talks to the agent, and the result reaches the page and the audit trail.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Idgate, Sipp, assert_ok};

const TOKEN: &str = "agent-secret-0123456789";

/// Unknown callers are not in the directory; no keypad, no phone push: `not-found`.
const ROUTE: &str = r#"
[[route]]
name = "support"
match = "*"
keypad = false
phone_push = false
target = "sip:queue@127.0.0.1:QUEUE_PORT"
"#;

/// Slow enough that the page can see "pending".
const SIMULATOR: &str = "default = \"approve\"\ndelay_ms = 800\nhint_ms = 100\n";

fn sections() -> String {
    format!("[agent]\ntoken = \"{TOKEN}\"\nuser = \"alice\"\npassword = \"pw-alice\"\n")
}

fn request(
    idgate: &Idgate,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    idgate.http(method, path, headers, body)
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

fn get_json(idgate: &Idgate, path: &str) -> Value {
    let (status, body) = request(idgate, "GET", path, &[&bearer()], "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Polls `/agent/api/calls` until `pred` holds for some call (bounded); returns that call.
fn wait_for_call(idgate: &Idgate, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let calls = get_json(idgate, "/agent/api/calls");
        if let Some(call) = calls["calls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| pred(c)))
        {
            return call.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no call {what} in {calls}\n--- idgate log ---\n{}",
            idgate.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `event: call` data lines from an open SSE response until `pred` holds (bounded).
fn sse_until(reader: &mut BufReader<TcpStream>, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => panic!("SSE read: {e}"),
        }
        // Chunked transfer: data lines arrive whole between chunk-size lines.
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let view: Value = serde_json::from_str(data).expect("event JSON");
            let done = pred(&view);
            seen.push(view);
            if done {
                return seen;
            }
        }
    }
    panic!("the event stream never showed the expected call; saw {seen:?}");
}

#[test]
fn verify_again_while_talking_to_the_agent() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let route = ROUTE.replace("QUEUE_PORT", &queue.port.to_string());
    let idgate = Idgate::start_full(&route, SIMULATOR, "", &sections());

    // The event stream, opened before the call.
    let mut sse = TcpStream::connect(("127.0.0.1", idgate.http_port)).expect("connect");
    sse.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    write!(
        sse,
        "GET /agent/api/events HTTP/1.1\r\nHost: localhost\r\n{}\r\n\r\n",
        bearer()
    )
    .expect("send");
    let mut events = BufReader::new(sse);

    let target = idgate.sip_addr();
    let args = [
        "-set",
        "caller",
        "+46701234599",
        "-s",
        "5000",
        "-d",
        "12000",
        &target,
    ];
    let mut caller = Sipp::start(idgate.dir.path(), "caller.xml", &args, 1);

    let call = wait_for_call(&idgate, "with the agent", |c| c["phase"] == "with-agent");
    let id = call["id"].as_str().expect("id").to_owned();
    assert_eq!(call["caller"], "+46701234599");
    assert_eq!(call["status"], "unverified");
    assert_eq!(call["reason"], "not-found");
    assert_eq!(call["mode"], "b2bua");
    assert_eq!(call["can_reverify"], true);
    assert!(call["connected_at"].is_string() && call["decided_at"].is_string());
    // The page per call, by the X-Identity-Call value.
    assert_eq!(
        get_json(&idgate, &format!("/agent/api/calls/{id}"))["id"],
        id
    );

    let seen = sse_until(&mut events, |v| v["id"] == id && v["phase"] == "with-agent");
    let phases: Vec<&str> = seen
        .iter()
        .filter(|v| v["id"] == id)
        .filter_map(|v| v["phase"].as_str())
        .collect();
    assert_eq!(phases.first(), Some(&"identifying"), "{phases:?}");

    // Nobody is known for this caller: the agent must name the person.
    let path = format!("/agent/api/calls/{id}/reverify");
    let json = "Content-Type: application/json";
    let (status, body) = request(&idgate, "POST", &path, &[&bearer(), json], "{}");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("personal identity number"), "{body}");
    let (status, body) = request(
        &idgate,
        "POST",
        &path,
        &[&bearer(), json],
        r#"{"personal_number":"191212121213"}"#,
    );
    assert_eq!(status, 400, "a bad check digit: {body}");
    assert!(
        !body.contains("191212121213"),
        "errors never echo the number"
    );
    let cross = "Origin: https://evil.example";
    let (status, _) = request(
        &idgate,
        "POST",
        &path,
        &[&bearer(), json, cross],
        r#"{"personal_number":"191212121212"}"#,
    );
    assert_eq!(status, 403, "a cross-origin POST is refused");

    // Basic auth: the user name goes into the audit trail.
    let alice = "Authorization: Basic YWxpY2U6cHctYWxpY2U="; // alice:pw-alice
    let (status, body) = request(
        &idgate,
        "POST",
        &path,
        &[alice, json],
        r#"{"personal_number":"19121212-1212"}"#,
    );
    assert_eq!(status, 202, "{body}");
    let (status, body) = request(&idgate, "POST", &path, &[&bearer(), json], "{}");
    assert_eq!(status, 409, "one at a time: {body}");

    let seen = sse_until(&mut events, |v| {
        v["id"] == id && v["reverify"]["status"] == "verified"
    });
    assert!(
        seen.iter().any(|v| v["reverify"]["status"] == "pending"),
        "pending was shown first: {seen:?}"
    );
    let call = get_json(&idgate, &format!("/agent/api/calls/{id}"));
    let reverify = &call["reverify"];
    assert_eq!(reverify["method"], "simulator");
    assert_eq!(reverify["subject"], "19121212-****");
    assert_eq!(
        reverify["name"],
        Value::Null,
        "names only with include_name"
    );
    assert_eq!(call["status"], "unverified", "the hand-off verdict stays");
    assert_eq!(call["can_reverify"], true);

    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let ended = wait_for_call(&idgate, "ended", |c| c["id"] == id && c["phase"] == "ended");
    assert_eq!(ended["outcome"], "connected");
    assert_eq!(ended["can_reverify"], false);

    // The audit trail: who asked, what came of it; never the person.
    let rows = reverifications(&idgate, &id);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].requested_by, "alice");
    assert_eq!(rows[0].status.as_deref(), Some("verified"));
    assert!(rows[0].completed_at.is_some());
    assert!(
        !idgate.log().contains("191212121212"),
        "the personal number never reaches the log"
    );
}

#[test]
fn the_page_needs_credentials() {
    let idgate = Idgate::start_full(
        &ROUTE.replace("QUEUE_PORT", "9"),
        SIMULATOR,
        "",
        &sections(),
    );
    for path in ["/agent", "/agent/api/calls", "/agent/api/events"] {
        let (status, _) = request(&idgate, "GET", path, &[], "");
        assert_eq!(status, 401, "{path} without credentials");
        let (status, _) = request(&idgate, "GET", path, &["Authorization: Bearer nope"], "");
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let wrong = "Authorization: Basic YWxpY2U6d3Jvbmc="; // alice:wrong
    assert_eq!(request(&idgate, "GET", "/agent", &[wrong], "").0, 401);

    // ?token= signs in with a cookie and drops the token from the address.
    let mut s = TcpStream::connect(("127.0.0.1", idgate.http_port)).expect("connect");
    write!(
        s,
        "GET /agent?token={TOKEN} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 303"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("location: /agent\r\n"),
        "{out}"
    );
    let cookie = format!("Cookie: idgate_agent={TOKEN}");
    let (status, page) = request(&idgate, "GET", "/agent", &[&cookie], "");
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    assert_eq!(request(&idgate, "GET", "/agent?token=nope", &[], "").0, 401);
}

#[test]
fn without_agent_credentials_the_page_is_off() {
    let idgate = Idgate::start(&ROUTE.replace("QUEUE_PORT", "9"), SIMULATOR);
    let (status, body) = request(&idgate, "GET", "/agent/api/calls", &[&bearer()], "");
    assert_eq!(status, 401);
    assert!(body.contains("[agent]"), "{body}");
}

fn reverifications(idgate: &Idgate, call_id: &str) -> Vec<idgate::store::ReverificationRow> {
    let id = uuid::Uuid::parse_str(call_id).expect("call id");
    let url = format!("sqlite://{}", idgate.db_path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = idgate::store::Store::connect(&url).await.expect("store");
        store.reverifications_for(id).await.expect("query")
    })
}
