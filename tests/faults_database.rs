//! Faults end to end, the database: PostgreSQL going away mid-call, through a TCP forwarder the
//! test owns. Calls are still handed to the queue, `verified` only after a completed order for
//! the right person, and the journal writes every record once the database is back. Shared
//! setup: `support::faults`. Every wait is bounded; everything is on loopback.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::faults::{FAST_APPROVE, call, http_token, pushes_started, route, verdicts};
use support::{Idgate, Sipp, assert_ok, eventually};

/// A TCP forwarder to PostgreSQL: `down` drops every connection and refuses new ones (the
/// listening socket is closed), `up` listens on the same port again.
struct Forwarder {
    runtime: tokio::runtime::Runtime,
    port: u16,
    upstream: u16,
    serving: Mutex<
        Option<(
            tokio_util::sync::CancellationToken,
            tokio::task::JoinHandle<()>,
        )>,
    >,
}

impl Forwarder {
    fn start(upstream: u16) -> Arc<Forwarder> {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the forwarder");
        let port = listener.local_addr().expect("addr").port();
        let forwarder = Arc::new(Forwarder {
            runtime,
            port,
            upstream,
            serving: Mutex::new(None),
        });
        forwarder.serve(listener);
        forwarder
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let token = tokio_util::sync::CancellationToken::new();
        let upstream = self.upstream;
        let stop = token.clone();
        let task = self.runtime.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        *self.serving.lock().expect("lock") = Some((token, task));
    }

    fn down(&self) {
        let serving = self.serving.lock().expect("lock").take();
        if let Some((token, task)) = serving {
            token.cancel();
            // The accept loop has returned (its listener is closed) once this is done.
            let _ = self.runtime.block_on(task);
        }
    }

    fn up(&self) {
        let addr = ("127.0.0.1", self.port);
        let mut listener = None;
        for _ in 0..100 {
            if let Ok(l) = self.runtime.block_on(tokio::net::TcpListener::bind(addr)) {
                listener = Some(l);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.serve(listener.expect("the forwarder's port again"));
    }
}

/// A stored call as read directly: (caller, status, reason, outcome).
type CallRow = (String, Option<String>, Option<String>, Option<String>);

/// A fresh schema in the test PostgreSQL database, dropped at the end.
struct PgSchema {
    admin_url: String,
    name: String,
}

impl PgSchema {
    fn create(runtime: &tokio::runtime::Runtime) -> PgSchema {
        use sqlx::{Connection, Executor};
        let admin_url = std::env::var("IDGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("idgate_faults_{}", uuid::Uuid::new_v4().simple());
        runtime.block_on(async {
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("connect to the test PostgreSQL (127.0.0.1:5432, db test)");
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                .await
                .expect("create schema");
            admin.close().await.ok();
        });
        PgSchema { admin_url, name }
    }

    /// The URL of the schema through `port` on 127.0.0.1 (the forwarder, or PostgreSQL itself).
    fn url_via(&self, port: u16) -> String {
        let base = self.admin_url.replacen(":5432/", &format!(":{port}/"), 1);
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.name)
    }

    /// Every call row, read directly (not through idgate): (caller, status, reason, outcome).
    fn calls(&self, runtime: &tokio::runtime::Runtime) -> Vec<CallRow> {
        use sqlx::Connection;
        let url = self.url_via(5432);
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            let rows = sqlx::query_as(
                "SELECT caller, status, reason, transfer_outcome FROM calls ORDER BY started_at",
            )
            .fetch_all(&mut conn)
            .await
            .expect("query calls");
            conn.close().await.ok();
            rows
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        use sqlx::{Connection, Executor};
        let Ok(runtime) = tokio::runtime::Runtime::new() else {
            return;
        };
        runtime.block_on(async {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
                let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
                let _ = admin.execute(sqlx::AssertSqlSafe(drop)).await;
                admin.close().await.ok();
            }
        });
    }
}

/// PostgreSQL goes away while one call's push is pending and before another call comes in:
/// both are handed to the queue (the pending one verified by its completed order, the new one
/// unverified `provider-error`, its push never sent because the limits cannot be checked); when
/// the database is back, the journal writes every queued record.
#[test]
fn calls_are_handed_off_while_the_database_is_down_and_recorded_when_it_returns() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let schema = PgSchema::create(&runtime);
    let forwarder = Forwarder::start(5432);
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], 3);
    // Pushes by caller number (no directory: the directory is in the database too).
    let routes = route(queue.port, "directory = false\nkeypad = false\n");
    let simulator = format!(
        "{FAST_APPROVE}[[provider.simulator.script]]\ncaller = \"+46702100002\"\noutcome = \"approve\"\ndelay_ms = 4000\n"
    );
    let idgate = Idgate::start_on_store(
        &forwarder_url(&schema, &forwarder),
        &routes,
        &simulator,
        &http_token(),
        "",
    );

    let mut before = call(&idgate, "caller.xml", "+46702100001", &["-d", "2000"]);
    assert_ok("a call with the database up", &mut before, &idgate);

    let mut pending = call(&idgate, "caller.xml", "+46702100002", &["-d", "9000"]);
    eventually("the second call's push is sent", &idgate, || {
        pushes_started(&idgate) >= 2
    });
    forwarder.down();
    let mut during = call(&idgate, "caller.xml", "+46702100003", &["-d", "6000"]);
    assert_ok(
        "the call in progress when the database went",
        &mut pending,
        &idgate,
    );
    assert_ok("a call while the database is down", &mut during, &idgate);
    eventually("no active call", &idgate, || {
        idgate.metric("idgate_active_calls") == Some(0.0)
    });
    // Kept down until the journal has given up on a connection (the pool's 30 s acquire
    // timeout) and keeps its records for later: the retry path, not only a slow commit.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !idgate.log().contains("the database is unavailable") {
        assert!(
            Instant::now() < deadline,
            "the outage is never logged\n{}",
            idgate.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    forwarder.up();
    assert_ok("queue", &mut queue, &idgate);

    let mut got = verdicts(&queue);
    got.sort();
    let want = [
        ("+46702100001", "verified", None),
        ("+46702100002", "verified", None),
        ("+46702100003", "unverified", Some("provider-error")),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((caller, status, reason), (c, s, r)) in got.iter().zip(want) {
        assert_eq!((caller.as_str(), status.as_str()), (c, s), "{got:?}");
        assert_eq!(reason.as_deref(), r, "{got:?}");
    }

    // Back up: every queued record is written (polled: the journal retries with backoff).
    let deadline = Instant::now() + Duration::from_secs(30);
    let want_rows = [
        ("+46702100001", "verified", None),
        ("+46702100002", "verified", None),
        ("+46702100003", "unverified", Some("provider-error")),
    ];
    loop {
        let rows = schema.calls(&runtime);
        let complete = rows.len() == 3 && rows.iter().all(|r| r.3.is_some());
        if complete {
            for (row, (caller, status, reason)) in rows.iter().zip(want_rows) {
                assert_eq!(row.0, caller, "{rows:?}");
                assert_eq!(row.1.as_deref(), Some(status), "{rows:?}");
                assert_eq!(row.2.as_deref(), reason, "{rows:?}");
                assert_eq!(row.3.as_deref(), Some("connected"), "{rows:?}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records not written after the database returned: {rows:?}\n{}",
            idgate.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The journal's counters, where /metrics has them: nothing lost, nothing left queued.
    if idgate.metric("idgate_db_records_lost_total").is_some() {
        assert_eq!(idgate.metric("idgate_db_records_lost_total"), Some(0.0));
        eventually("the journal's queue is empty", &idgate, || {
            idgate.metric("idgate_db_writes_queued") == Some(0.0)
        });
    }
    assert!(
        !idgate.log().contains("a database record was dropped"),
        "nothing lost\n{}",
        idgate.log()
    );
}

fn forwarder_url(schema: &PgSchema, forwarder: &Forwarder) -> String {
    schema.url_via(forwarder.port)
}
