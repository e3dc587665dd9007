//! Kamailio as a test peer: a config from `dialplans/kamailio/` started on 127.0.0.2 in its own
//! process group, logging to a file, ready once it answers a request itself. Used by
//! `tests/kamailio_edge.rs` (the edge proxy) and `tests/scale_out.rs` (the dispatcher).
//!
//! Needs the Debian packages `kamailio` and `procps` (`kill`).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The address Kamailio listens on; the idgate instances behind it trust this one only.
pub const EDGE_ADDR: &str = "127.0.0.2";

/// A file of `dialplans/kamailio/` (`kamailio.cfg`, `dispatcher.cfg`).
pub fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dialplans/kamailio")
        .join(name)
}

pub use super::free_port_on;

/// A running Kamailio in its own process group (its children die with it), logging to
/// `kamailio.<port>.log` in the test's directory.
pub struct Kamailio {
    child: Child,
    /// The port it listens on, on [`EDGE_ADDR`] (UDP and TCP).
    pub port: u16,
    log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio with `cfg` on a free port of [`EDGE_ADDR`]; `defines(port)` gives the
    /// `-A` arguments (pairs: `"-A"`, `"NAME=value"`). Returns once it answers requests.
    pub fn start(dir: &Path, cfg: &Path, defines: impl FnOnce(u16) -> Vec<String>) -> Kamailio {
        use std::os::unix::process::CommandExt;
        let port = free_port_on(EDGE_ADDR);
        let log = dir.join(format!("kamailio.{port}.log"));
        let stderr = std::fs::File::create(&log).expect("kamailio log file");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(cfg)
            .args(["-DD", "-E", "-m", "32", "-M", "4"])
            .args(defines(port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("start kamailio (apt-get install kamailio)");
        let mut kamailio = Kamailio { child, port, log };
        kamailio.wait_ready();
        kamailio
    }

    /// Polls with a method the proxy answers itself (405) until it does; fails at once if
    /// Kamailio exits (a config error, a port taken).
    fn wait_ready(&mut self) {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let local = probe.local_addr().expect("address");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut n = 0;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kamailio exited ({status}); log:\n{}", self.log());
            }
            n += 1;
            let request = format!(
                "MESSAGE sip:probe@{EDGE_ADDR}:{port} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bKready{n}\r\n\
                 From: <sip:probe@127.0.0.1>;tag=ready{n}\r\nTo: <sip:probe@{EDGE_ADDR}>\r\n\
                 Call-ID: ready-{n}-{local}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n",
                port = self.port
            );
            let _ = probe.send_to(request.as_bytes(), (EDGE_ADDR, self.port));
            let mut buf = [0u8; 4096];
            if let Ok((len, _)) = probe.recv_from(&mut buf)
                && buf[..len].starts_with(b"SIP/2.0 405")
            {
                return;
            }
        }
        panic!("kamailio did not answer; log:\n{}", self.log());
    }

    /// `127.0.0.2:<port>`.
    pub fn addr(&self) -> String {
        format!("{EDGE_ADDR}:{}", self.port)
    }

    /// Kamailio's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The complete lines of the log so far (a line being written is left out).
    pub fn lines(&self) -> Vec<String> {
        let log = self.log();
        let complete = log.rfind('\n').map_or("", |end| &log[..end]);
        complete.lines().map(str::to_owned).collect()
    }

    /// Sends a signal to Kamailio's process group, by its id (std has no SIGTERM); the main
    /// process alone gets SIGKILL if `kill` (procps) cannot be run.
    fn signal_group(&mut self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            let _ = self.child.kill();
        }
    }
}

impl Drop for Kamailio {
    /// SIGTERM lets Kamailio's main process stop its children; whatever is left after 5 s gets
    /// SIGKILL (the group id cannot be reused before the main process is reaped).
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}
