//! Scale-out for real (the topology of `docker-compose.yml`, on loopback): Kamailio with
//! `dialplans/kamailio/dispatcher.cfg` on 127.0.0.2 in front of two idgate processes started from
//! `deploy/idgate-a.toml` and `deploy/idgate-b.toml` (only addresses, paths and the simulator's
//! delay changed) that share one fresh PostgreSQL database, one SIPp agent queue for both, and
//! SIPp callers that follow the Record-Route. Calls spread over both instances; one instance is
//! killed (SIGKILL) or drained mid-run and the other one takes the new calls.
//!
//! Every wait is bounded; every process is killed by a guard when the test ends. Kamailio probes
//! every second here (the default is every 5 s) and fails a call over after 2 s without an
//! answer (the default).
//!
//! Needs the Debian packages `kamailio`, `sip-tester` and `procps` (`kill`), and a PostgreSQL
//! server whose user may create databases: `IDGATE_TEST_POSTGRES_URL` (as `.ci/run` sets it), else
//! postgres://postgres@127.0.0.1:5432/test. Each test makes its own database and drops it.

#[path = "scale_out/instance.rs"]
mod instance;
mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use instance::{Database, Instance};
use support::kamailio::{self, EDGE_ADDR, Kamailio, free_port_on};
use support::{Sipp, free_port, rtp_range};

/// The bearer token of both instances' API.
const API_TOKEN: &str = "scale-out-test-token-0123456789abcdef";

/// Every test call comes from this number (the deploy config's push limits allow it).
const CALLER: &str = "+46701234567";

/// Kamailio's timers here: an OPTIONS probe of each instance every second; 2 s without any
/// answer fails a request over (and a probe), as by default; 5 s after a 100 Trying without a
/// final answer (idgate answers within milliseconds).
const KAMAILIO_TIMERS: [&str; 3] = [
    "PING_INTERVAL=1",
    "FAILOVER_TIMEOUT_MS=2000",
    "INVITE_TIMEOUT_MS=5000",
];

/// Test calls per run and their rate (calls per second); each caller stays on the line this
/// long after the answer (long enough for the simulator's verdict and the hand-off).
const RATE: &str = "5";
const HOLD_MS: &str = "2000";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Polls `check` every 50 ms until it holds or `limit` passes; whether it held.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dispatcher_cfg() -> PathBuf {
    kamailio::config("dispatcher.cfg")
}

/// The `-A` defines of a Kamailio on 127.0.0.2:`port` with the dispatcher list `list`.
fn dispatcher_defines(port: u16, list: &Path) -> Vec<String> {
    [
        format!("LISTEN_ADDR={EDGE_ADDR}"),
        format!("LISTEN_PORT={port}"),
        format!("DISPATCHER_LIST=\"{}\"", list.display()),
        "CHILDREN=2".to_owned(),
    ]
    .into_iter()
    .chain(KAMAILIO_TIMERS.map(str::to_owned))
    .flat_map(|d| ["-A".to_owned(), d])
    .collect()
}

/// Starts Kamailio on 127.0.0.2 with the dispatcher list `list`; returns once it answers.
fn start_dispatcher(dir: &Path, list: &Path) -> Kamailio {
    Kamailio::start(dir, &dispatcher_cfg(), |port| {
        dispatcher_defines(port, list)
    })
}

// ---------------------------------------------------------------------------------------------
// What Kamailio's log says about the calls.

/// The Call-ID of a Kamailio log line (from the config's `log_prefix`, `{1 1 INVITE <id>}`).
fn call_id(line: &str) -> Option<&str> {
    let prefix = line.split_once('{')?.1.split_once('}')?.0;
    prefix.split_whitespace().nth(3)
}

/// The destination a dispatcher log line sent an INVITE to: `sip:host:port`.
fn sent_to(line: &str) -> Option<&str> {
    if !(line.contains("idgate-dispatcher: new INVITE from") || line.contains(" retried to sip:")) {
        return None;
    }
    let start = line.rfind(" to sip:")? + " to ".len();
    let uri = &line[start..];
    Some(uri.split([';', ' ']).next().unwrap_or(uri))
}

/// Per Call-ID, the instance Kamailio sent the call's INVITE to last (after any failover), and
/// the index of the line where the call first appears.
fn final_destinations(log: &[String]) -> HashMap<String, (String, usize)> {
    let mut calls: HashMap<String, (String, usize)> = HashMap::new();
    for (index, line) in log.iter().enumerate() {
        let (Some(id), Some(to)) = (call_id(line), sent_to(line)) else {
            continue;
        };
        calls
            .entry(id.to_owned())
            .and_modify(|(dest, _)| *dest = to.to_owned())
            .or_insert((to.to_owned(), index));
    }
    calls
}

/// How many calls ended up on `instance`.
fn taken_by(calls: &HashMap<String, (String, usize)>, instance: &Instance) -> usize {
    let uri = instance.uri();
    calls.values().filter(|(dest, _)| *dest == uri).count()
}

/// Lines of the dispatcher's own messages about `instance` that contain `what`.
fn about<'a>(log: &'a [String], instance: &Instance, what: &str) -> Vec<&'a String> {
    let prefix = format!("idgate-dispatcher: instance {};", instance.uri());
    log.iter()
        .filter(|l| l.contains(&prefix) && l.contains(what))
        .collect()
}

/// The index of the first line at or after `from` where the dispatcher took `instance` out of
/// the rotation; checks that it never sent it a call afterwards and never took it back.
fn assert_taken_out_for_good(
    log: &[String],
    from: usize,
    instance: &Instance,
    report: &dyn Fn() -> String,
) -> usize {
    let uri = instance.uri();
    let prefix = format!("idgate-dispatcher: instance {uri};");
    let down = (from..log.len())
        .find(|&i| log[i].contains(&prefix) && log[i].contains(" down ("))
        .unwrap_or_else(|| panic!("Kamailio never took {uri} out\n{}", report()));
    for line in &log[down + 1..] {
        assert!(
            sent_to(line) != Some(uri.as_str()),
            "a call went to {uri} after it was taken out: {line}\n{}",
            report()
        );
        assert!(
            !(line.contains(&prefix) && line.contains(" up")),
            "{uri} came back: {line}\n{}",
            report()
        );
    }
    down
}

/// The destinations of the calls that first appear after line `index`.
fn calls_after(calls: &HashMap<String, (String, usize)>, index: usize) -> Vec<&str> {
    calls
        .values()
        .filter(|(_, first)| *first > index)
        .map(|(dest, _)| dest.as_str())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The whole topology.

/// The final counts of a SIPp run, from its `-trace_stat` file.
#[derive(Debug)]
struct CallStats {
    successful: usize,
    failed: usize,
}

fn read_stats(file: &Path) -> CallStats {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = lines.next_back().unwrap_or_default().split(';').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {}:\n{text}", file.display()))
    };
    CallStats {
        successful: column("SuccessfulCall(C)"),
        failed: column("FailedCall(C)"),
    }
}

/// Kamailio (with the dispatcher config) in front of instances `a` and `b`, which share a fresh
/// database and hand calls to one SIPp queue. Fields drop in order: the proxy, the instances,
/// the queue, then the database.
struct Topology {
    kamailio: Kamailio,
    a: Instance,
    b: Instance,
    _queue: Sipp,
    dir: tempfile::TempDir,
    _db: Database,
    /// The calls each instance had ended (all, connected) before the run under test.
    base_a: (usize, usize),
    base_b: (usize, usize),
}

impl Topology {
    /// Starts everything and warms each instance up with one call through Kamailio.
    ///
    /// The warm-up matters: an instance's first call loads the phone number metadata, which
    /// holds a runtime thread for a second or more in a debug build, delaying even the
    /// 100 Trying of other calls; the dispatcher would take that for a dead instance.
    fn start() -> Topology {
        let db = Database::create();
        let dir = tempfile::tempdir().expect("temp dir");
        let queue = Sipp::start(dir.path(), "queue.xml", &[], 10_000);
        let key = dir.path().join("token-key.pem");
        let keygen = Command::new(env!("CARGO_BIN_EXE_idgate"))
            .args(["keys", "generate", "--out"])
            .arg(&key)
            .output()
            .expect("idgate keys generate");
        assert!(keygen.status.success(), "{keygen:?}");
        let a = Instance::start("a", &db, queue.port, &key);
        let b = Instance::start("b", &db, queue.port, &key);
        let list = dir.path().join("dispatcher.list");
        let lines = format!(
            "1 {};transport=udp 0 0\n1 {};transport=udp 0 0\n",
            a.uri(),
            b.uri()
        );
        std::fs::write(&list, lines).expect("dispatcher list");
        let kamailio = start_dispatcher(dir.path(), &list);
        let mut topology = Topology {
            kamailio,
            a,
            b,
            _queue: queue,
            dir,
            _db: db,
            base_a: (0, 0),
            base_b: (0, 0),
        };
        topology.warm_up();
        topology
    }

    /// Two calls, 200 ms apart: round-robin gives each instance one.
    fn warm_up(&mut self) {
        let (mut caller, stats) = self.callers("warm-up", 2, "1000");
        let status = caller.wait(Duration::from_secs(45));
        let stats = read_stats(&stats);
        let calls = final_destinations(&self.kamailio.lines());
        let (a, b) = (taken_by(&calls, &self.a), taken_by(&calls, &self.b));
        assert!(
            status.success() && stats.successful == 2 && (a, b) == (1, 1),
            "warm-up: {stats:?}, a {a}, b {b}\n{}",
            self.report()
        );
        let ended = eventually(Duration::from_secs(15), || {
            self.a.ended().0 == 1 && self.b.ended().0 == 1
        });
        assert!(ended, "warm-up calls not ended\n{}", self.report());
        self.base_a = self.a.ended();
        self.base_b = self.b.ended();
    }

    /// SIPp callers through Kamailio: `calls` calls at RATE per second, each hanging up
    /// `hold_ms` after the answer; and the file with their final counts.
    fn callers(&self, name: &str, calls: u32, hold_ms: &str) -> (Sipp, PathBuf) {
        let stats = self.dir.path().join(format!("{name}.stat.csv"));
        let stats_arg = stats.display().to_string();
        let edge = self.kamailio.addr();
        let args = [
            "-set",
            "caller",
            CALLER,
            "-s",
            "5000",
            "-d",
            hold_ms,
            "-r",
            RATE,
            "-trace_stat",
            "-stf",
            &stats_arg,
            "-fd",
            "1",
            &edge,
        ];
        let sipp = Sipp::start(self.dir.path(), "caller_routed.xml", &args, calls);
        (sipp, stats)
    }

    /// Calls `instance` ended with the queue reached, since the warm-up.
    fn connected(&self, instance: &Instance) -> usize {
        let base = if instance.name == "a" {
            self.base_a.1
        } else {
            self.base_b.1
        };
        instance.ended().1 - base
    }

    /// Waits (bounded) until instance `a` has connected `n` calls of the run: the run is then
    /// well under way on both instances.
    fn wait_until_a_connected(&self, n: usize) {
        let reached = eventually(Duration::from_secs(20), || self.connected(&self.a) >= n);
        assert!(
            reached,
            "instance a never connected {n} calls\n{}",
            self.report()
        );
    }

    /// Everything that could explain a failure: the logs of Kamailio and both instances.
    fn report(&self) -> String {
        format!(
            "--- kamailio log ---\n{}\n--- idgate a log ---\n{}\n--- idgate b log ---\n{}",
            self.kamailio.log(),
            self.a.log(),
            self.b.log()
        )
    }

    /// Kamailio's log lines from line `mark` on.
    fn kamailio_lines_since(&self, mark: usize) -> Vec<String> {
        self.kamailio.lines().split_off(mark)
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn the_dispatcher_config_passes_kamailios_own_check() {
    let dir = tempfile::tempdir().expect("dir");
    let list = dir.path().join("dispatcher.list");
    std::fs::write(&list, "1 sip:127.0.0.1:5070;transport=udp 0 0\n").expect("list");
    let test_run = dispatcher_defines(free_port_on(EDGE_ADDR), &list);
    let trunks_only: Vec<String> = test_run
        .iter()
        .cloned()
        .chain(["-A".to_owned(), "TRUNKS_ONLY".to_owned()])
        .collect();
    for args in [test_run, trunks_only, compose_kamailio_args()] {
        let output = Command::new("kamailio")
            .arg("-c")
            .arg("-f")
            .arg(dispatcher_cfg())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run kamailio -c (apt-get install kamailio)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kamailio -c {args:?}:\n{stderr}");
        assert!(stderr.contains("config file ok"), "{stderr}");
    }
}

/// The `-A` arguments of the kamailio service in docker-compose.yml (its `command` list, without
/// the `-f` and run-mode flags).
fn compose_kamailio_args() -> Vec<String> {
    let compose = std::fs::read_to_string(repo("docker-compose.yml")).expect("docker-compose.yml");
    let service = compose
        .split_once("\n  kamailio:\n")
        .expect("a kamailio service")
        .1;
    let command = service.split_once("    command:\n").expect("its command").1;
    let items: Vec<String> = command
        .lines()
        .map_while(|l| l.strip_prefix("      - "))
        .map(|item| item.trim().trim_matches('\'').to_owned())
        .collect();
    let defines: Vec<String> = items
        .windows(2)
        .filter(|w| w[0] == "-A")
        .flat_map(|w| ["-A".to_owned(), w[1].clone()])
        .collect();
    assert!(
        defines.iter().any(|d| d.starts_with("DISPATCHER_LIST=")),
        "{items:?}"
    );
    defines
}

/// Every host file docker-compose.yml mounts exists (a rename breaks the demo, not a build).
#[test]
fn the_compose_file_mounts_files_that_exist() {
    let compose = std::fs::read_to_string(repo("docker-compose.yml")).expect("docker-compose.yml");
    let mounts: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- ./"))
        .map(|m| m.split(':').next().unwrap_or(m))
        .collect();
    assert!(mounts.len() >= 8, "{mounts:?}");
    for mount in mounts {
        assert!(repo(mount).exists(), "docker-compose.yml mounts ./{mount}");
    }
    for scenario in ["queue.xml", "caller_routed.xml"] {
        assert!(
            compose.contains(&format!("/scenarios/{scenario}")),
            "{scenario}"
        );
    }
}

/// (a) Round-robin: both instances take calls, every call succeeds, Kamailio's view and the
/// instances' agree; the proxy removed the forged identity header; both instances see every call
/// in the shared database and sign with the one shared key.
#[test]
fn calls_spread_over_both_instances() {
    let t = Topology::start();
    let mark = t.kamailio.lines().len();
    let (mut caller, stats_file) = t.callers("spread", 20, "1500");
    let status = caller.wait(Duration::from_secs(45));
    let stats = read_stats(&stats_file);
    assert!(
        status.success() && stats.successful == 20 && stats.failed == 0,
        "{stats:?}\n--- SIPp trace ---\n{}\n{}",
        caller.trace(),
        t.report()
    );
    let all_ended = eventually(Duration::from_secs(15), || {
        t.connected(&t.a) + t.connected(&t.b) == 20
    });
    let (a, b) = (t.connected(&t.a), t.connected(&t.b));
    assert!(all_ended, "a {a} + b {b} != 20 connected\n{}", t.report());
    assert!(a > 0 && b > 0, "a {a}, b {b}\n{}", t.report());

    let log = t.kamailio_lines_since(mark);
    let calls = final_destinations(&log);
    assert_eq!(calls.len(), 20, "{}", t.report());
    assert_eq!(
        (taken_by(&calls, &t.a), taken_by(&calls, &t.b)),
        (a, b),
        "{}",
        t.report()
    );
    let failovers = log.iter().filter(|l| l.contains("failed the call")).count();
    eprintln!(
        "calls per instance: a {a}, b {b}; failovers {failovers} (expected 0 on an idle machine)"
    );

    let removed = format!(
        "X-Identity-* headers from 127.0.0.1:{} removed",
        caller.port
    );
    assert!(log.iter().any(|l| l.contains(&removed)), "{}", t.report());
    for instance in [&t.a, &t.b] {
        assert!(
            !instance.log().contains("spoofing attempt"),
            "idgate {} saw an identity header\n{}",
            instance.name,
            t.report()
        );
        // The 20 calls and the 2 warm-up calls, whichever instance took them.
        assert_eq!(instance.stored_calls(), 22, "idgate {}", instance.name);
    }
    let jwks = |i: &Instance| i.request("GET", "/.well-known/jwks.json").expect("JWKS");
    assert_eq!(jwks(&t.a), jwks(&t.b), "one signing key for both");
}

/// (b) SIGKILL of one instance mid-run: the calls it was carrying are lost (their BYE times out
/// at Kamailio: 408), nothing else is. Calls sent to it after the kill fail over to the survivor
/// after 2 s without an answer, the probes take it out of the rotation within about 3 s, and
/// every call the survivor took succeeds.
#[test]
fn killing_one_instance_sends_new_calls_to_the_other() {
    let mut t = Topology::start();
    let mark = t.kamailio.lines().len();
    let (mut caller, stats_file) = t.callers("kill", 40, HOLD_MS);
    t.wait_until_a_connected(3);
    let kill_mark = t.kamailio.lines().len() - mark;
    t.a.signal("KILL");
    assert!(
        t.a.wait_exit(Duration::from_secs(5)).is_some(),
        "SIGKILL did not end instance a"
    );
    let a = t.connected(&t.a);

    let status = caller.wait(Duration::from_secs(60));
    let stats = read_stats(&stats_file);
    assert_eq!(
        stats.successful + stats.failed,
        40,
        "{status} {stats:?}\n{}",
        t.report()
    );
    let accounted = eventually(Duration::from_secs(15), || {
        a + t.connected(&t.b) == stats.successful
    });
    let b = t.connected(&t.b);
    let log = t.kamailio_lines_since(mark);
    let calls = final_destinations(&log);
    let (taken_a, taken_b) = (taken_by(&calls, &t.a), taken_by(&calls, &t.b));
    let in_progress_on_a = taken_a.saturating_sub(a);
    let failovers = about(&log, &t.a, "failed the call").len();
    eprintln!(
        "SIGKILL: {stats:?}; instance a connected {a} and had {in_progress_on_a} calls in \
         progress when killed; instance b took {taken_b} and connected {b}; {failovers} calls \
         failed over from a to b"
    );
    assert!(
        accounted,
        "successful calls {} != a {a} + b {b}\n{}",
        stats.successful,
        t.report()
    );
    assert_eq!(calls.len(), 40, "{}", t.report());
    assert!(
        stats.failed <= in_progress_on_a,
        "only calls in progress on the killed instance may fail: {stats:?}, {in_progress_on_a} \
         in progress\n--- SIPp trace ---\n{}\n{}",
        caller.trace(),
        t.report()
    );
    assert_eq!(
        taken_b,
        b,
        "every call instance b took succeeded\n{}",
        t.report()
    );

    // The dispatcher noticed, and every call that came after went to b (and succeeded: above).
    let report = || t.report();
    let down = assert_taken_out_for_good(&log, kill_mark, &t.a, &report);
    let later = calls_after(&calls, down);
    assert!(
        later.len() >= 5,
        "the kill came too late in the run to show anything: {} calls after it\n{}",
        later.len(),
        t.report()
    );
    let b_uri = t.b.uri();
    assert!(later.iter().all(|dest| *dest == b_uri), "{}", t.report());
}

/// (c) Draining one instance mid-run: no call is lost. Its calls in progress go on to the end,
/// then it exits by itself; new calls it refuses with 503 fail over to the other instance, and
/// the probes (OPTIONS answered 503) take it out of the rotation.
#[test]
fn draining_one_instance_loses_no_call() {
    let mut t = Topology::start();
    let mark = t.kamailio.lines().len();
    let (mut caller, stats_file) = t.callers("drain", 40, HOLD_MS);
    t.wait_until_a_connected(3);
    let drain_mark = t.kamailio.lines().len() - mark;
    let (status, body) = t.a.request("POST", "/v1/drain").expect("POST /v1/drain");
    assert_eq!(status, 202, "{body}");

    let exit = t.a.wait_exit(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "the drained instance exits by itself once its calls ended: {exit:?}\n{}",
        t.report()
    );
    assert!(t.a.log().contains("drained"), "{}", t.a.log());

    let status = caller.wait(Duration::from_secs(60));
    let stats = read_stats(&stats_file);
    assert!(
        status.success() && stats.successful == 40 && stats.failed == 0,
        "no call may be lost: {stats:?}\n--- SIPp trace ---\n{}\n{}",
        caller.trace(),
        t.report()
    );
    let all_ended = eventually(Duration::from_secs(15), || {
        t.connected(&t.a) + t.connected(&t.b) == 40
    });
    let (a, b) = (t.connected(&t.a), t.connected(&t.b));
    let log = t.kamailio_lines_since(mark);
    let calls = final_destinations(&log);
    let refused = about(&log, &t.a, "failed the call (503)").len();
    eprintln!(
        "drain: instance a connected {a}, instance b {b}; {refused} INVITEs refused by a (503) \
         and failed over to b"
    );
    assert!(all_ended, "a {a} + b {b} != 40 connected\n{}", t.report());
    assert_eq!(calls.len(), 40, "{}", t.report());
    assert_eq!(
        (taken_by(&calls, &t.a), taken_by(&calls, &t.b)),
        (a, b),
        "{}",
        t.report()
    );

    let report = || t.report();
    let down = assert_taken_out_for_good(&log, drain_mark, &t.a, &report);
    let later = calls_after(&calls, down);
    assert!(
        later.len() >= 5,
        "the drain came too late in the run to show anything: {} calls after it\n{}",
        later.len(),
        t.report()
    );
    let b_uri = t.b.uri();
    assert!(later.iter().all(|dest| *dest == b_uri), "{}", t.report());
}
