//! The end-to-end harness: idgate started as a process with a test config, SIPp as callers and
//! as the agent queue, all on loopback. Every wait is bounded.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod baresip;
pub mod faults;
pub mod jwks;
pub mod kamailio;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where [`free_port`] looks: below the kernel's ephemeral range (32768–60999), where every
/// outgoing connection of every concurrent test takes its local port, and below the RTP ranges
/// of [`rtp_range`] (20000 and up). A port picked from the ephemeral range could be taken by a
/// test's HTTP or database client between the check and the program's own bind.
const TEST_PORTS: std::ops::Range<u32> = 10_000..20_000;

/// A UDP+TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A UDP+TCP port free on `ip` right now.
pub fn free_port_on(ip: &str) -> u16 {
    free_port_where(|port| udp_free(ip, port) && TcpListener::bind((ip, port)).is_ok())
}

/// A port for SIPp's `-mp`: SIPp binds that port for audio and the port 2 above it for video,
/// and exits at start if either is taken.
pub fn free_sipp_media_port() -> u16 {
    free_port_where(|port| udp_free("127.0.0.1", port) && udp_free("127.0.0.1", port + 2))
}

fn udp_free(ip: &str, port: u16) -> bool {
    UdpSocket::bind((ip, port)).is_ok()
}

/// The first port of [`TEST_PORTS`] that passes `free`, starting from a point that differs
/// per process (tests run as concurrent processes) and moving on with every call (so a
/// process does not hand out a port twice before its program has bound it).
fn free_port_where(free: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.subsec_nanos());
    let _ = NEXT.compare_exchange(u32::MAX, seed % span, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        // Steps of 3 keep a SIPp media pair (port, port + 2) clear of the next pick.
        let offset = NEXT.fetch_add(3, Ordering::Relaxed) % span;
        let port = (TEST_PORTS.start + offset) as u16;
        if free(port) {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

/// An RTP range no other test of this process uses (ranges are spread by process id too).
pub fn rtp_range() -> (u16, u16) {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) as u32 + (std::process::id() % 50) * 4;
    let min = 20_000 + (slot % 200) * 100;
    (min as u16, (min + 98) as u16)
}

/// A running idgate.
pub struct Idgate {
    child: Child,
    pub sip_port: u16,
    pub http_port: u16,
    pub dir: tempfile::TempDir,
}

impl Idgate {
    /// Starts idgate with `routes` as its only dialplan file and `simulator` as the body of
    /// `[provider.simulator]`; waits until /healthz answers.
    pub fn start(routes: &str, simulator: &str) -> Idgate {
        Idgate::start_with(routes, simulator, "")
    }

    /// As `start`, with extra lines for the `[sip]` section.
    pub fn start_with(routes: &str, simulator: &str, sip_extra: &str) -> Idgate {
        Idgate::start_full(routes, simulator, sip_extra, "")
    }

    /// As `start_with`, with whole extra sections (`[limits]`, ...) appended to the config.
    pub fn start_full(routes: &str, simulator: &str, sip_extra: &str, sections: &str) -> Idgate {
        Idgate::launch(None, routes, simulator, sip_extra, "", sections)
    }

    /// As `start`, with extra lines for the `[media]` section (`srtp = "required"`).
    pub fn start_with_media(routes: &str, simulator: &str, media_extra: &str) -> Idgate {
        let sip = ("127.0.0.1", "127.0.0.1", "", media_extra);
        Idgate::launch_on(sip, None, routes, simulator, "", "")
    }

    /// As `start_full`, with SIP listening on `host` (`[::1]`, `[::]`, `0.0.0.0`) and RTP on
    /// `media_ip` (`[media] bind_ip`: `::1`) instead of `127.0.0.1`; ports picked as for the
    /// others.
    pub fn start_listening(
        (host, media_ip): (&str, &str),
        routes: &str,
        simulator: &str,
        sip_extra: &str,
        sections: &str,
    ) -> Idgate {
        let http = None;
        let sip = (host, media_ip, sip_extra, "");
        Idgate::launch_on(sip, http, routes, simulator, "", sections)
    }

    /// As `start_full`, with the HTTP API on a port chosen beforehand (a fake backend that
    /// calls idgate back must know it first).
    pub fn start_on(
        http_port: u16,
        routes: &str,
        simulator: &str,
        sip_extra: &str,
        sections: &str,
    ) -> Idgate {
        Idgate::launch(Some(http_port), routes, simulator, sip_extra, "", sections)
    }

    /// As `start_full`, with extra lines for the `[http]` section (`api_token = "..."`).
    pub fn start_with_http(
        routes: &str,
        simulator: &str,
        http_extra: &str,
        sections: &str,
    ) -> Idgate {
        Idgate::launch(None, routes, simulator, "", http_extra, sections)
    }

    /// Starts idgate and waits until it is healthy. The ports are picked free before idgate
    /// binds them, so a test running beside it can take one in between: then idgate exits with
    /// "Address already in use" and is started again on other ports (`http_port`: the caller's
    /// fixed one, kept).
    fn launch(
        http_port: Option<u16>,
        routes: &str,
        simulator: &str,
        sip_extra: &str,
        http_extra: &str,
        sections: &str,
    ) -> Idgate {
        let sip = ("127.0.0.1", "127.0.0.1", sip_extra, "");
        Idgate::launch_on(sip, http_port, routes, simulator, http_extra, sections)
    }

    /// As `launch`, with SIP listening on `sip.0` and RTP on `sip.1`; `sip.2`: extra `[sip]`
    /// lines, `sip.3`: extra `[media]` lines.
    fn launch_on(
        sip: (&str, &str, &str, &str),
        http_port: Option<u16>,
        routes: &str,
        simulator: &str,
        http_extra: &str,
        sections: &str,
    ) -> Idgate {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let port = http_port.unwrap_or_else(free_port);
            let idgate = Idgate::launch_once(port, routes, simulator, sip, http_extra, sections);
            if idgate.healthy_within(Duration::from_secs(20)) {
                return idgate;
            }
            let log = idgate.log();
            if attempt == ATTEMPTS || !log.contains("Address already in use") {
                panic!("idgate did not become healthy; log:\n{log}");
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn launch_once(
        http_port: u16,
        routes: &str,
        simulator: &str,
        (sip_host, media_ip, sip_extra, media_extra): (&str, &str, &str, &str),
        http_extra: &str,
        sections: &str,
    ) -> Idgate {
        let dir = tempfile::tempdir().expect("temp dir");
        let sip_port = free_port();
        let (rtp_min, rtp_max) = rtp_range();
        let dialplans = dir.path().join("dialplans");
        std::fs::create_dir(&dialplans).expect("dialplan dir");
        std::fs::write(dialplans.join("10-test.toml"), routes).expect("routes");
        let db = dir.path().join("idgate.db");
        let config = format!(
            "[sip]\nlisten = \"{sip_host}:{sip_port}\"\n{sip_extra}\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n{http_extra}\
             [media]\nbind_ip = \"{media_ip}\"\nrtp_port_min = {rtp_min}\nrtp_port_max = {rtp_max}\n{media_extra}\
             [store]\nurl = \"sqlite://{db}\"\n\
             [dialplan]\ndir = \"{dialplans}\"\n\
             [provider.simulator]\n{simulator}\n{sections}\n",
            db = db.display(),
            dialplans = dialplans.display(),
        );
        let config_path = dir.path().join("idgate.toml");
        std::fs::write(&config_path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("idgate.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_idgate"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start idgate");
        Idgate {
            child,
            sip_port,
            http_port,
            dir,
        }
    }

    fn wait_healthy(&self) {
        if !self.healthy_within(Duration::from_secs(20)) {
            panic!("idgate did not become healthy; log:\n{}", self.log());
        }
    }

    /// Whether /healthz answers 200 within `limit` (false at once if idgate has exited).
    fn healthy_within(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .http_get("/healthz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return true;
            }
            if self.log().contains("Address already in use") {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// A plain HTTP/1.1 GET on the API; the whole response text.
    pub fn http_get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// Sends a signal (`TERM`, `KILL`, ...) to the process, with the `kill` program.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill (procps)");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit by itself; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends an OPTIONS over UDP from a fresh socket; the response's text.
    pub fn options(&self) -> String {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let port = socket.local_addr().expect("addr").port();
        let options = format!(
            "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKopt{port};rport\r\n\
             From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: options-{port}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        socket
            .send_to(options.as_bytes(), self.sip_addr())
            .expect("send");
        let mut buf = [0u8; 4096];
        let (n, _) = socket.recv_from(&mut buf).expect("an answer to OPTIONS");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// An HTTP/1.1 request on the API with extra header lines; the status and the body.
    pub fn http(&self, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut text = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.http_port,
            body.len()
        );
        for h in headers {
            text.push_str(h);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text.push_str(body);
        s.write_all(text.as_bytes()).expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        (status, body)
    }

    /// idgate's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idgate.log")).unwrap_or_default()
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("idgate.db")
    }

    /// `127.0.0.1:<sip port>`.
    pub fn sip_addr(&self) -> String {
        format!("127.0.0.1:{}", self.sip_port)
    }
}

impl Drop for Idgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SIPp process.
pub struct Sipp {
    child: Child,
    pub messages: PathBuf,
    /// SIPp's own complaints (a port it could not bind, a scenario error).
    errors: PathBuf,
    pub port: u16,
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

impl Sipp {
    /// Starts SIPp with a scenario from tests/sipp, bounded to `calls` calls and 60 s.
    pub fn start(dir: &Path, scenario_file: &str, args: &[&str], calls: u32) -> Sipp {
        let port = free_port();
        let media_port = free_sipp_media_port();
        let messages = dir.join(format!("{scenario_file}.{port}.messages.log"));
        let errors = dir.join(format!("{scenario_file}.{port}.stderr.log"));
        let stderr = std::fs::File::create(&errors).expect("SIPp stderr file");
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(scenario(scenario_file))
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-mp",
                &media_port.to_string(),
            ])
            .args([
                "-m",
                &calls.to_string(),
                "-timeout",
                "60s",
                "-timeout_error",
                "-nostdin",
            ])
            .args(["-trace_msg", "-message_file"])
            .arg(&messages)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start sipp (apt-get install sip-tester)");
        Sipp {
            child,
            messages,
            errors,
            port,
        }
    }

    /// Waits for SIPp to end (bounded); its exit status is 0 only when every call succeeded.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if !status.success() {
                    // Shown with the failing test's output.
                    let errors = std::fs::read_to_string(&self.errors).unwrap_or_default();
                    eprintln!("SIPp ended with {status}; its stderr:\n{errors}");
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                eprintln!("SIPp still ran after {limit:?}: killed");
                return self.child.wait().expect("sipp wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything SIPp sent and received.
    pub fn trace(&self) -> String {
        std::fs::read_to_string(&self.messages).unwrap_or_default()
    }

    /// Every received request of `method`, in order, as text.
    pub fn received_all(&self, method: &str) -> Vec<String> {
        let trace = self.trace();
        trace
            .split("----------------------------------------------")
            .filter_map(|entry| {
                let body = entry.split_once("message received")?.1;
                let start = body.find(&format!("{method} sip:"))?;
                Some(body[start..].to_string())
            })
            .collect()
    }

    /// The first received request of `method`, as text.
    pub fn received(&self, method: &str) -> Option<String> {
        received_request(&self.trace(), method)
    }

    /// The INVITE this SIPp (a queue) received, asserted to carry `X-Identity-Status: status`.
    pub fn invite_with_status(&self, status: &str) -> String {
        let invite = self.received("INVITE").expect("the queue got an INVITE");
        assert_eq!(
            header(&invite, "X-Identity-Status"),
            Some(status),
            "{invite}"
        );
        invite
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first request of `method` in a SIPp message log, up to the next log entry.
pub fn received_request(trace: &str, method: &str) -> Option<String> {
    let mut entries = trace.split("----------------------------------------------");
    entries.find_map(|entry| {
        let body = entry.split_once("message received")?.1;
        let start = body.find(&format!("{method} sip:"))?;
        Some(body[start..].to_string())
    })
}

/// The value of header `name` in a message text (first occurrence), trimmed.
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// How many headers named `name` a message has.
pub fn header_count(message: &str, name: &str) -> usize {
    message
        .lines()
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .count()
}

/// Adds a customer to a running idgate's directory through its store (the SQLite file).
pub fn add_customer(idgate: &Idgate, personal_number: &str, number: &str) {
    use idgate::identity::{E164, PersonName, PersonalNumber};
    let url = format!("sqlite://{}", idgate.db_path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = idgate::store::Store::connect(&url).await.expect("store");
        let pnr = PersonalNumber::parse(personal_number).expect("pnr");
        let e164 = E164::parse(number, "SE").expect("number");
        let name = PersonName::new("Tolvan Tolvansson".to_string());
        store
            .add_customer(&name, &pnr, &[e164])
            .await
            .expect("add customer");
    });
}

/// Polls `check` until it holds (bounded: 20 s), failing with idgate's log if it never does.
pub fn eventually(what: &str, idgate: &Idgate, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "never: {what}\n--- idgate log ---\n{}",
            idgate.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until idgate's log holds `needle` on a finished line; returns the log.
pub fn wait_for_log(idgate: &Idgate, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = idgate.log();
        let done = log.lines().any(|l| l.contains(needle)) && log.ends_with('\n');
        if done || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) for a SIPp process and fails the test, with SIPp's trace and idgate's log,
/// unless every call of the scenario succeeded.
pub fn assert_ok(name: &str, sipp: &mut Sipp, idgate: &Idgate) {
    let status = sipp.wait(Duration::from_secs(45));
    assert!(
        status.success(),
        "{name} SIPp failed ({status})\n--- SIPp trace ---\n{}\n--- idgate log ---\n{}",
        sipp.trace(),
        idgate.log()
    );
}

impl Idgate {
    /// As `start_with_http`, with `store_url` as `[store] url` instead of the SQLite file in
    /// the test's directory (PostgreSQL through a forwarder the test owns, ...).
    pub fn start_on_store(
        store_url: &str,
        routes: &str,
        simulator: &str,
        http_extra: &str,
        sections: &str,
    ) -> Idgate {
        let dir = tempfile::tempdir().expect("temp dir");
        let (sip_port, http_port) = (free_port(), free_port());
        let (rtp_min, rtp_max) = rtp_range();
        let dialplans = dir.path().join("dialplans");
        std::fs::create_dir(&dialplans).expect("dialplan dir");
        std::fs::write(dialplans.join("10-test.toml"), routes).expect("routes");
        let config = format!(
            "[sip]\nlisten = \"127.0.0.1:{sip_port}\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n{http_extra}\
             [media]\nrtp_port_min = {rtp_min}\nrtp_port_max = {rtp_max}\n\
             [store]\nurl = \"{store_url}\"\n\
             [dialplan]\ndir = \"{dialplans}\"\n\
             [provider.simulator]\n{simulator}\n{sections}\n",
            dialplans = dialplans.display(),
        );
        std::fs::write(dir.path().join("idgate.toml"), config).expect("config");
        let child = Idgate::spawn_serve(dir.path());
        let idgate = Idgate {
            child,
            sip_port,
            http_port,
            dir,
        };
        idgate.wait_healthy();
        idgate
    }

    /// `idgate serve` with the config in `dir`, its log appended to `dir/idgate.log`.
    fn spawn_serve(dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("idgate.log"))
            .expect("log file");
        Command::new(env!("CARGO_BIN_EXE_idgate"))
            .args(["serve", "--config"])
            .arg(dir.join("idgate.toml"))
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start idgate")
    }

    /// SIGKILLs the process (no shutdown of any kind), then starts it again with the same
    /// config, ports and database; waits until /healthz answers. The log goes on in the same
    /// file.
    pub fn kill_and_restart(&mut self) {
        self.signal("KILL");
        let exit = self.wait_exit(Duration::from_secs(10));
        assert!(exit.is_some(), "idgate did not die of SIGKILL");
        self.child = Idgate::spawn_serve(self.dir.path());
        self.wait_healthy();
    }

    /// The value of an unlabelled metric (`idgate_active_calls`) on `/metrics`, if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.http("GET", "/metrics", &[], "");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl Idgate {
    /// Whether the process is still running (it has not exited or crashed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The value of one labelled series on `/metrics`, by its whole name with labels
    /// (`idgate_calls_rejected_total{status="403"}`); `0` when the series is absent.
    pub fn metric_series(&self, series: &str) -> f64 {
        let (_, text) = self.http("GET", "/metrics", &[], "");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// Sends OPTIONS over UDP (a fresh socket, a new transaction each try, 3 s per try) until
    /// one is answered or `limit` has passed; the first response's text.
    pub fn options_within(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        for attempt in 0u32.. {
            if Instant::now() > deadline {
                return None;
            }
            let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
            socket.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
            let port = socket.local_addr().ok()?.port();
            let options = format!(
                "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKalive{port}x{attempt};rport\r\n\
                 From: <sip:probe@127.0.0.1>;tag=a{attempt}\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: alive-{port}-{attempt}\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            socket.send_to(options.as_bytes(), self.sip_addr()).ok()?;
            let mut buf = [0u8; 4096];
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None
    }
}

/// The `[provider]` sections for BankID at `url` with `ca` trusted and `pki`'s RP certificate,
/// plus `extra` lines of `[provider.bankid]`. The PEM files are in the returned directory:
/// keep it until idgate has started (it reads them at start-up).
pub fn bankid_sections(
    pki: &idgate::verify::tls::TestPki,
    url: &str,
    ca: &str,
    extra: &str,
) -> (tempfile::TempDir, String) {
    let files = tempfile::tempdir().expect("dir");
    let write = |name: &str, pem: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, pem).expect("pem file");
        path.display().to_string()
    };
    let sections = format!(
        "[provider]\nkind = \"bankid\"\n[provider.bankid]\nurl = \"{url}\"\nclient_cert = \"{cert}\"\n\
         client_key = \"{key}\"\nca = \"{ca}\"\npoll_interval_ms = 50\n{extra}",
        cert = write("rp.crt", &pki.client_cert_pem),
        key = write("rp.key", &pki.client_key_pem),
        ca = write("ca.pem", ca),
    );
    (files, sections)
}
