//! Faults end to end, SIGKILL mid-calls and a restart on the same SQLite file: the database
//! opens and passes its integrity check, and a new call is verified by its own completed order.
//! Shared setup: `support::faults`. Every wait is bounded; everything is on loopback.

mod support;

use support::faults::{FAST_APPROVE, call, ended_call, pushes_started, route, start, verdicts};
use support::{Sipp, assert_ok, eventually};

#[test]
fn sigkill_mid_calls_then_restart_on_the_same_database() {
    let dir = tempfile::tempdir().expect("dir");
    let queue = Sipp::start(dir.path(), "queue.xml", &[], 3);
    let simulator = format!(
        "{FAST_APPROVE}[[provider.simulator.script]]\ncaller = \"+46702600002\"\noutcome = \"approve\"\ndelay_ms = 60000\n"
    );
    let mut idgate = start(&route(queue.port, "keypad = false\n"), &simulator, "");
    // One call bridged to the queue, one with its push pending, one in its greeting.
    let _bridged = call(&idgate, "caller.xml", "+46702600001", &["-d", "30000"]);
    eventually("the first call is bridged", &idgate, || {
        queue.received("INVITE").is_some()
    });
    let _pending = call(&idgate, "caller.xml", "+46702600002", &["-d", "30000"]);
    eventually("the second call's push is pending", &idgate, || {
        pushes_started(&idgate) >= 2
    });
    let _greeting = call(&idgate, "caller.xml", "+46702600003", &["-d", "30000"]);
    eventually("three calls in progress", &idgate, || {
        idgate.metric("idgate_active_calls") == Some(3.0)
    });

    idgate.kill_and_restart();

    // The database: opens (migrations run again, nothing to do), passes SQLite's integrity
    // check, and holds the calls that were in progress (never ended).
    let url = format!("sqlite://{}", idgate.db_path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (integrity, rows) = runtime.block_on(async {
        let store = idgate::store::Store::connect(&url).await.expect("store");
        let pool = sqlx::SqlitePool::connect(&url).await.expect("pool");
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .expect("integrity check");
        let rows: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT caller, ended_at FROM calls ORDER BY started_at")
                .fetch_all(&pool)
                .await
                .expect("calls");
        pool.close().await;
        store.close().await;
        (integrity, rows)
    });
    assert_eq!(integrity, "ok");
    let callers: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        callers,
        ["+46702600001", "+46702600002", "+46702600003"],
        "{rows:?}"
    );

    // A new call works end to end, verified by its own completed order.
    let mut after = call(&idgate, "caller.xml", "+46702600004", &["-d", "2500"]);
    assert_ok("a call after the restart", &mut after, &idgate);
    let row = ended_call(&idgate, "+46702600004");
    assert_eq!(
        (row["status"].as_str(), row["outcome"].as_str()),
        (Some("verified"), Some("connected")),
        "{row}"
    );
    let got = verdicts(&queue);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].0, "+46702600004");
    assert_eq!((got[1].1.as_str(), got[1].2.clone()), ("verified", None));
}
