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

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a fresh database per test.

/// A database made for one test, dropped (with whatever is still connected) at the end.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    fn create() -> Database {
        let admin_url = std::env::var("IDGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("idgate_scale_out_{}", uuid::Uuid::new_v4().simple());
        if let Err(e) = admin_sql(&admin_url, &format!("CREATE DATABASE {name}")) {
            panic!(
                "cannot create a test database with {admin_url} ({e}); start PostgreSQL \
                 (.ci/run does) or set IDGATE_TEST_POSTGRES_URL"
            );
        }
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin_url.as_str(), String::new()),
        };
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        let url = format!("{server}/{name}{query}");
        Database {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = admin_sql(&self.admin_url, &drop) {
            eprintln!("test database {} not dropped: {e}", self.name);
        }
    }
}

/// Runs one statement outside a transaction (CREATE/DROP DATABASE), within 15 s.
fn admin_sql(url: &str, sql: &str) -> Result<(), String> {
    use sqlx::{Connection, Executor};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let work = async {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .map_err(|e| e.to_string())?;
            conn.execute(sqlx::AssertSqlSafe(sql.to_owned()))
                .await
                .map_err(|e| e.to_string())?;
            conn.close().await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(Duration::from_secs(15), work)
            .await
            .map_err(|_| "timed out".to_owned())?
    })
}

// ---------------------------------------------------------------------------------------------
// idgate instances, from the deploy configs.

/// A running idgate instance; killed when dropped.
struct Instance {
    name: &'static str,
    child: Child,
    sip_port: u16,
    http_port: u16,
    dir: tempfile::TempDir,
}

/// Replaces the value of a key that the deploy config has (never adds one: the structure stays
/// the deploy file's).
fn replace(table: &mut toml::Table, path: &[&str], value: impl Into<toml::Value>) {
    let (last, parents) = path.split_last().expect("a key path");
    let mut section = table;
    for name in parents {
        section = section
            .get_mut(*name)
            .and_then(toml::Value::as_table_mut)
            .unwrap_or_else(|| panic!("the deploy config has no [{name}]"));
    }
    assert!(
        section.contains_key(*last),
        "the deploy config has no {}",
        path.join(".")
    );
    section.insert((*last).to_owned(), value.into());
}

impl Instance {
    /// Starts idgate with `deploy/idgate-<name>.toml` and the deploy dialplan, on loopback:
    /// SIP and HTTP on free ports of 127.0.0.1, trusting only Kamailio's address, the test's
    /// database, key and token, calls handed to the queue on `queue_port`. Waits until /healthz
    /// answers.
    fn start(name: &'static str, db: &Database, queue_port: u16, key: &Path) -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let sip_port = free_port();
        let http_port = free_port();
        let (rtp_min, rtp_max) = rtp_range();

        let dialplans = dir.path().join("dialplans");
        std::fs::create_dir(&dialplans).expect("dialplan dir");
        let route_file = "deploy/dialplans/10-demo.toml";
        let text = std::fs::read_to_string(repo(route_file)).expect("the deploy dialplan");
        let mut routes: toml::Table = toml::from_str(&text).expect("the deploy dialplan parses");
        let route = routes
            .get_mut("route")
            .and_then(toml::Value::as_array_mut)
            .and_then(|r| r.first_mut())
            .and_then(toml::Value::as_table_mut)
            .expect("a [[route]] in the deploy dialplan");
        replace(
            route,
            &["target"],
            format!("sip:queue@127.0.0.1:{queue_port}"),
        );
        let routes = toml::to_string(&routes).expect("dialplan TOML");
        std::fs::write(dialplans.join("10-demo.toml"), routes).expect("dialplan");

        let token_file = dir.path().join("api-token");
        std::fs::write(&token_file, format!("{API_TOKEN}\n")).expect("token file");

        let deploy = format!("deploy/idgate-{name}.toml");
        let text = std::fs::read_to_string(repo(&deploy)).expect("the deploy config");
        let mut config: toml::Table = toml::from_str(&text).expect("the deploy config parses");
        let path = |p: &Path| p.display().to_string();
        replace(
            &mut config,
            &["sip", "listen"],
            format!("127.0.0.1:{sip_port}"),
        );
        replace(
            &mut config,
            &["sip", "trusted_peers"],
            vec![toml::Value::from(format!("{EDGE_ADDR}/32"))],
        );
        replace(
            &mut config,
            &["http", "listen"],
            format!("127.0.0.1:{http_port}"),
        );
        replace(&mut config, &["http", "api_token_file"], path(&token_file));
        replace(&mut config, &["media", "bind_ip"], "127.0.0.1");
        replace(&mut config, &["media", "rtp_port_min"], i64::from(rtp_min));
        replace(&mut config, &["media", "rtp_port_max"], i64::from(rtp_max));
        replace(&mut config, &["store", "url"], db.url.clone());
        replace(&mut config, &["identity", "signing_key_file"], path(key));
        replace(&mut config, &["dialplan", "dir"], path(&dialplans));
        // Faster verdicts than the demo's, for short test calls.
        replace(&mut config, &["provider", "simulator", "delay_ms"], 200_i64);
        replace(&mut config, &["provider", "simulator", "hint_ms"], 50_i64);
        let config = toml::to_string(&config).expect("config TOML");
        let config_path = dir.path().join("idgate.toml");
        std::fs::write(&config_path, config).expect("config");

        let log = std::fs::File::create(dir.path().join("idgate.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_idgate"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env_remove("RUST_LOG") // the deploy config's [log] level
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start idgate");
        let instance = Instance {
            name,
            child,
            sip_port,
            http_port,
            dir,
        };
        let healthy = eventually(Duration::from_secs(20), || {
            instance
                .request("GET", "/healthz")
                .is_some_and(|(status, _)| status == 200)
        });
        assert!(
            healthy,
            "idgate {name} did not become healthy; log:\n{}",
            instance.log()
        );
        instance
    }

    /// An HTTP/1.1 request with the bearer token: the status and the body, if it answered.
    fn request(&self, method: &str, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {API_TOKEN}\r\n\
             Connection: close\r\nContent-Length: 0\r\n\r\n",
            self.http_port
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.split(' ').nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        Some((status, body))
    }

    /// The number of stored calls this instance's API lists (all instances share them).
    fn stored_calls(&self) -> usize {
        let (status, body) = self.request("GET", "/v1/calls").expect("GET /v1/calls");
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        list["calls"].as_array().expect("calls").len()
    }

    /// Sends a signal (`KILL`, `TERM`, ...) with the `kill` program.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill (procps)");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit by itself.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        eventually(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idgate.log")).unwrap_or_default()
    }

    /// Calls this instance has ended (`call ended` lines), and those of them that reached the
    /// agent queue (`outcome="connected"`).
    fn ended(&self) -> (usize, usize) {
        let log = self.log();
        let ended: Vec<&str> = log.lines().filter(|l| l.contains("call ended")).collect();
        let connected = ended
            .iter()
            .filter(|l| l.contains("outcome=\"connected\""))
            .count();
        (ended.len(), connected)
    }

    /// How Kamailio writes this instance in its log: `sip:127.0.0.1:<port>`.
    fn uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.sip_port)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Kamailio with the dispatcher config (the runner is `support::kamailio`).

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
