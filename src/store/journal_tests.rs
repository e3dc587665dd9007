//! The journal: order, a bad write in a batch, the database away, a full queue.

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use uuid::Uuid;

use super::*;
use crate::config::Transfer;
use crate::identity::{CallerId, E164};
use crate::store::testdb::store_tests;
use crate::store::{PushLimits, PushTarget};

fn call(id: Uuid) -> NewCall {
    NewCall {
        id,
        sip_call_id: format!("{id}@journal.test"),
        caller: CallerId::Number(E164::parse("+46701234567", "SE").unwrap()),
        called: "100".to_owned(),
        route: Some("support".to_owned()),
        transfer_mode: Some(Transfer::B2bua),
        started_at: SystemTime::now(),
    }
}

fn limits() -> PushLimits {
    PushLimits {
        per_caller: 100,
        per_person: 100,
        window: Duration::from_secs(600),
        cooldown: Duration::from_secs(60),
        order_lifetime: Duration::from_secs(180),
    }
}

store_tests!(a_bad_write_fails_alone_and_order_is_kept);

/// A duplicate call row (a unique violation: PostgreSQL aborts the whole transaction) fails on
/// its own; the writes queued with it land, in order (the answer after its row).
async fn a_bad_write_fails_alone_and_order_is_kept(store: Store) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let at = SystemTime::now();
    store.record(Record::Call(call(a)));
    store.record(Record::Call(call(a)));
    store.record(Record::Answered { id: a, at });
    store.record(Record::Call(NewCall {
        transfer_mode: Some(Transfer::Refer),
        ..call(b)
    }));
    // The REFER was refused and the call fell back to B2BUA.
    store.record(Record::TransferMode {
        id: b,
        mode: Transfer::B2bua,
    });
    store.record(Record::Ended {
        id: b,
        outcome: TransferOutcome::Connected,
        at,
    });
    store.flush().await.unwrap();
    let row_a = store.get_call(a).await.unwrap().expect("first call stored");
    assert!(row_a.answered_at.is_some());
    let row_b = store
        .get_call(b)
        .await
        .unwrap()
        .expect("second call stored");
    assert_eq!(row_b.transfer_outcome, Some(TransferOutcome::Connected));
    let stats = store.journal_stats();
    assert_eq!(stats.failed.load(Ordering::Relaxed), 1);
    assert_eq!(stats.lost.load(Ordering::Relaxed), 0);
}

/// An in-memory SQLite store whose one connection can be held by the test, and whose pool
/// gives up waiting for it after 50 ms (the journal then sees "unavailable").
async fn store_with_short_pool_timeout() -> Store {
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str("sqlite::memory:").unwrap();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_millis(50))
        .connect_with(options)
        .await
        .unwrap();
    Store::migrated(pool, Backend::Sqlite).await.unwrap()
}

#[tokio::test]
async fn records_wait_out_an_unavailable_database_and_a_push_check_does_not() {
    let store = store_with_short_pool_timeout().await;
    let id = Uuid::new_v4();
    let held = store.writer.acquire().await.unwrap();
    store.record(Record::Call(call(id)));
    let caller = E164::parse("+46701234567", "SE").unwrap();
    let target = PushTarget {
        caller: Some(&caller),
        person: None,
    };
    // The push check cannot wait for the database: it fails at once (the call goes on
    // unverified), while the call row stays queued.
    let push = store
        .begin_push(id, target, &limits(), SystemTime::now())
        .await;
    assert!(
        matches!(
            push,
            Err(StoreError::Unavailable {
                op: "begin_push",
                ..
            })
        ),
        "{push:?}"
    );
    drop(held);
    store.flush().await.unwrap();
    assert!(store.get_call(id).await.unwrap().is_some());
    assert_eq!(
        push_attempts(&store).await,
        0,
        "the refused check never ran"
    );
    let stats = store.journal_stats();
    assert_eq!(stats.lost.load(Ordering::Relaxed), 0);
    assert_eq!(stats.failed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_the_record() {
    let mut store = Store::memory().await.unwrap();
    store.journal = Journal::with_capacity(store.writer.clone(), Backend::Sqlite, 1, 3);
    let held = store.writer.acquire().await.unwrap();
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    // No await between the records: the writer task has not run, so the fourth finds the
    // queue of three full.
    for id in &ids {
        store.record(Record::Call(call(*id)));
    }
    assert_eq!(store.journal_stats().lost.load(Ordering::Relaxed), 1);
    drop(held);
    store.flush().await.unwrap();
    for id in &ids[..3] {
        assert!(store.get_call(*id).await.unwrap().is_some());
    }
    assert!(store.get_call(ids[3]).await.unwrap().is_none());
}

async fn push_attempts(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM push_attempts")
        .fetch_one(&store.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_push_check_nobody_waits_for_any_more_is_not_run() {
    let store = Store::memory().await.unwrap();
    let id = Uuid::new_v4();
    store.commit(Record::Call(call(id))).await.unwrap();
    let held = store.writer.acquire().await.unwrap();
    let caller = E164::parse("+46701234567", "SE").unwrap();
    let target = PushTarget {
        caller: Some(&caller),
        person: None,
    };
    // The call gives up waiting (its own deadline) while the database is busy.
    let limits = limits();
    let check = store.begin_push(id, target, &limits, SystemTime::now());
    let gave_up = tokio::time::timeout(Duration::from_millis(50), check).await;
    assert!(gave_up.is_err());
    drop(held);
    store.flush().await.unwrap();
    assert_eq!(
        push_attempts(&store).await,
        0,
        "an attempt nobody would end"
    );
    // A check someone waits for still runs.
    let decision = store
        .begin_push(id, target, &limits, SystemTime::now())
        .await
        .unwrap();
    assert!(matches!(decision, PushDecision::Allowed(_)));
    assert_eq!(push_attempts(&store).await, 1);
}

/// On SQLite push checks queued together share one transaction with the records around them,
/// and each still sees the attempts before it: a limit of 2 per caller lets exactly 2 of 4
/// concurrent checks through.
#[tokio::test]
async fn queued_push_checks_share_a_batch_and_keep_their_limits_on_sqlite() {
    let store = Store::memory().await.unwrap();
    let caller = E164::parse("+46701234567", "SE").unwrap();
    let limits = PushLimits {
        per_caller: 2,
        ..limits()
    };
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        store.commit(Record::Call(call(*id))).await.unwrap();
    }
    let batches_before = store.journal_stats().batches.load(Ordering::Relaxed);
    // Hold the writer's connection so that all four checks queue up behind it.
    let held = store.writer.acquire().await.unwrap();
    let target = PushTarget {
        caller: Some(&caller),
        person: None,
    };
    let check = |id: Uuid| store.begin_push(id, target, &limits, SystemTime::now());
    let released = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
    };
    let (a, b, c, d, ()) = tokio::join!(
        check(ids[0]),
        check(ids[1]),
        check(ids[2]),
        check(ids[3]),
        released
    );
    let decisions = [a, b, c, d];
    let allowed = decisions
        .iter()
        .filter(|d| matches!(d, Ok(PushDecision::Allowed(_))))
        .count();
    let refused = decisions
        .iter()
        .filter(|d| matches!(d, Ok(PushDecision::Refused(_))))
        .count();
    assert_eq!((allowed, refused), (2, 2), "{decisions:?}");
    assert_eq!(
        store.journal_stats().batches.load(Ordering::Relaxed) - batches_before,
        1,
        "the four checks were one transaction"
    );
    assert_eq!(push_attempts(&store).await, 4, "refusals are recorded too");
}
