//! The scale-out test's own parts: a fresh PostgreSQL database per test and idgate instances
//! started from the deploy configs (`deploy/idgate-<name>.toml`).

use super::*;

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a fresh database per test.

/// A database made for one test, dropped (with whatever is still connected) at the end.
pub(super) struct Database {
    admin_url: String,
    pub(super) name: String,
    pub(super) url: String,
}

impl Database {
    pub(super) fn create() -> Database {
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
pub(super) struct Instance {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) sip_port: u16,
    pub(super) http_port: u16,
    pub(super) dir: tempfile::TempDir,
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
    pub(super) fn start(
        name: &'static str,
        db: &Database,
        queue_port: u16,
        key: &Path,
    ) -> Instance {
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
    pub(super) fn request(&self, method: &str, path: &str) -> Option<(u16, String)> {
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
    pub(super) fn stored_calls(&self) -> usize {
        let (status, body) = self.request("GET", "/v1/calls").expect("GET /v1/calls");
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        list["calls"].as_array().expect("calls").len()
    }

    /// Sends a signal (`KILL`, `TERM`, ...) with the `kill` program.
    pub(super) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill (procps)");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit by itself.
    pub(super) fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        eventually(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idgate.log")).unwrap_or_default()
    }

    /// Calls this instance has ended (`call ended` lines), and those of them that reached the
    /// agent queue (`outcome="connected"`).
    pub(super) fn ended(&self) -> (usize, usize) {
        let log = self.log();
        let ended: Vec<&str> = log.lines().filter(|l| l.contains("call ended")).collect();
        let connected = ended
            .iter()
            .filter(|l| l.contains("outcome=\"connected\""))
            .count();
        (ended.len(), connected)
    }

    /// How Kamailio writes this instance in its log: `sip:127.0.0.1:<port>`.
    pub(super) fn uri(&self) -> String {
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
