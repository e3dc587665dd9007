//! The agent screen-pop page (`/agent`) end to end: idgate as a process, SIPp as the caller
//! and the agent queue, and a real browser (Debian's Chromium driven by playwright-core,
//! `tests/browser/screen_pop.mjs`) watching the call appear, then pressing "verify again".
//! Plus the page's access rules over plain HTTP. Every wait is bounded.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{Idgate, Sipp, header};

const TOKEN: &str = "agent-secret";
/// Tolvan Tolvansson, the test person; nobody's number is in the directory.
const PERSONAL_NUMBER: &str = "191212121212";
const CALLER: &str = "+46701234567";

/// The browser gets `[agent]` credentials and the verified name on the page.
fn sections() -> String {
    format!("[agent]\ntoken = \"{TOKEN}\"\n[identity]\ninclude_name = true\n")
}

/// One route whose identification ends `not-found`: the caller number is looked up in the
/// (empty) directory, and there is no push by phone number and no keypad entry.
fn not_found_route(queue_port: u16) -> String {
    format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\ndirectory = true\nphone_push = false\n\
         keypad = false\ntarget = \"sip:queue@127.0.0.1:{queue_port}\"\n"
    )
}

/// Approves every push (the re-verification by personal number), slowly enough that the page
/// shows "pending" first.
const SLOW_APPROVE: &str = "default = \"approve\"\ndelay_ms = 1500\nhint_ms = 200\n";

// ---- plain HTTP ----------------------------------------------------------------------------

/// A response: status code, header lines, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }
}

/// One HTTP/1.1 request on the API port with extra header lines.
fn http(idgate: &Idgate, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", idgate.http_port)).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(request.as_bytes()).expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the answer");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

#[test]
fn the_agent_api_needs_the_token() {
    let idgate = Idgate::start_full(&not_found_route(9), SLOW_APPROVE, "", &sections());

    let anonymous = http(&idgate, "GET", "/agent/api/calls", &[]);
    assert_eq!(
        anonymous.status, 401,
        "{}{}",
        anonymous.head, anonymous.body
    );
    assert!(!anonymous.body.contains("\"calls\""), "{}", anonymous.body);
    for (name, value) in [
        ("Cookie", "idgate_agent=wrong-secret"),
        ("Authorization", "Bearer wrong-secret"),
    ] {
        let wrong = http(&idgate, "GET", "/agent/api/calls", &[(name, value)]);
        assert_eq!(wrong.status, 401, "{name}: {}", wrong.head);
    }
    let events = http(&idgate, "GET", "/agent/api/events", &[]);
    assert_eq!(events.status, 401, "{}", events.head);

    // The sign-in link sets an HttpOnly cookie; with it the page, its assets and the API answer.
    let sign_in = http(&idgate, "GET", &format!("/agent?token={TOKEN}"), &[]);
    assert!(
        matches!(sign_in.status, 200 | 302 | 303 | 307),
        "{}",
        sign_in.head
    );
    let set_cookie = sign_in.header("Set-Cookie").expect("Set-Cookie").to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    let with_cookie = [("Cookie", cookie.as_str())];

    let page = http(&idgate, "GET", "/agent", &with_cookie);
    assert_eq!(page.status, 200, "{}", page.head);
    let csp = page.header("Content-Security-Policy").unwrap_or_default();
    assert!(csp.contains("default-src 'self'"), "{}", page.head);
    assert!(
        page.body.contains("/agent/assets/agent.js"),
        "{}",
        page.body
    );
    for (asset, kind) in [
        ("/agent/assets/agent.js", "javascript"),
        ("/agent/assets/agent.css", "text/css"),
    ] {
        let answer = http(&idgate, "GET", asset, &with_cookie);
        assert_eq!(answer.status, 200, "{asset}: {}", answer.head);
        let content_type = answer.header("Content-Type").unwrap_or_default();
        assert!(content_type.contains(kind), "{asset}: {}", answer.head);
    }
    let calls = http(&idgate, "GET", "/agent/api/calls", &with_cookie);
    assert_eq!(calls.status, 200, "{}", calls.head);
    let json: serde_json::Value = serde_json::from_str(&calls.body).expect("JSON");
    assert_eq!(json["calls"], serde_json::json!([]), "{}", calls.body);
}

// ---- the browser -----------------------------------------------------------------------------

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where the screenshots go (kept after the test, for people and CI artifacts).
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("screen-pop")
}

/// A line of the browser script's stdout or stderr.
enum Line {
    Out(String),
    Err(String),
}

/// The browser script, its output collected line by line.
struct Browser {
    child: Child,
    lines: mpsc::Receiver<Line>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Browser {
    fn start(base: &str, screenshots: &Path) -> Browser {
        let dir = browser_dir();
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "tests/browser/node_modules is missing: run `npm ci --prefix tests/browser` \
             (the browser is Debian's /usr/bin/chromium; no browser is downloaded)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("screen_pop.mjs"))
            .args([base, TOKEN, PERSONAL_NUMBER])
            .arg(screenshots)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node (apt-get install nodejs)");
        let (send, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let send_err = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = send.send(Line::Out(line));
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = send_err.send(Line::Err(line));
            }
        });
        Browser {
            child,
            lines,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// Collects output until a stderr line holds `needle` (true), or the script ends or the
    /// time is up (false).
    fn wait_for_stderr(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(Line::Out(line)) => self.stdout.push(line),
                Ok(Line::Err(line)) => {
                    let found = line.contains(needle);
                    self.stderr.push(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits (bounded) for the script to end; its exit status, `None` if it had to be killed.
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader threads end with the pipes: take what is left.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            match line {
                Line::Out(line) => self.stdout.push(line),
                Line::Err(line) => self.stderr.push(line),
            }
        }
        status
    }

    fn output(&self) -> String {
        format!(
            "--- browser stdout ---\n{}\n--- browser stderr ---\n{}",
            self.stdout.join("\n"),
            self.stderr.join("\n")
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_agent_sees_the_call_pop_up_and_verifies_the_caller_again() {
    let dir = tempfile::tempdir().expect("dir");
    let queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let idgate = Idgate::start_full(&not_found_route(queue.port), SLOW_APPROVE, "", &sections());
    let screenshots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&screenshots);

    // The browser opens the list first, so the call arrives live over SSE.
    let base = format!("http://127.0.0.1:{}", idgate.http_port);
    let mut browser = Browser::start(&base, &screenshots);
    let listening = browser.wait_for_stderr("screen_pop: listening", Duration::from_secs(30));
    assert!(
        listening,
        "the list page never went live\n{}\n--- idgate log ---\n{}",
        browser.output(),
        idgate.log()
    );

    // The caller stays on the line ~30 s: long enough to be verified again while with the agent.
    let target = idgate.sip_addr();
    let args = [
        "-set", "caller", CALLER, "-s", "5000", "-d", "30000", &target,
    ];
    let caller = Sipp::start(idgate.dir.path(), "caller.xml", &args, 1);

    let status = browser.wait(Duration::from_secs(60));
    let failure = |what: &str| {
        format!(
            "{what}\n{}\n--- idgate log ---\n{}\n--- caller trace ---\n{}",
            browser.output(),
            idgate.log(),
            caller.trace()
        )
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        failure(&format!("the browser test failed ({status:?})"))
    );
    let seen: serde_json::Value = browser
        .stdout
        .iter()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("{}", failure("no JSON line from the browser")));
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["list_initial"]["reason"], "not-found", "{seen}");
    assert_eq!(seen["list_initial"]["caller"], CALLER, "{seen}");
    assert_eq!(seen["reverify_done"]["state"], "verified", "{seen}");
    assert!(
        seen["reverify_done"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Tolvan Tolvansson") && t.contains("19121212-****")),
        "{seen}"
    );
    let list_after = seen["list_after"]["text"].as_str().unwrap_or_default();
    assert!(
        list_after.contains("Verified") && !list_after.contains("Unverified"),
        "the list shows the latest verdict: {seen}"
    );

    // The row the page showed is the call the queue got: its id is X-Identity-Call.
    let invite = queue.received("INVITE").expect("the queue got an INVITE");
    assert_eq!(
        header(&invite, "X-Identity-Call"),
        seen["call_id"].as_str(),
        "{invite}"
    );
    assert_eq!(header(&invite, "X-Identity-Reason"), Some("not-found"));
    for shot in ["list.png", "call.png", "list-narrow.png", "call-narrow.png"] {
        assert!(screenshots.join(shot).is_file(), "{shot} was not taken");
    }
    eprintln!("screenshots: {}", screenshots.display());
}
