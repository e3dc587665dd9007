//! Push attempts and the anti push-bombing limits (`DESIGN.md`: never two concurrent orders for
//! one person, limits per caller number and per person, a cooldown after the person declined or
//! said they are not in a call with us). Checked and recorded in one transaction, so several
//! instances sharing the database enforce one set of limits.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use sqlx::AnyConnection;

use super::{Backend, Record, Store, StoreError, to_millis};
use crate::identity::{E164, PersonalNumber};

/// The limits, from the `[limits]` config section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushLimits {
    /// Pushes allowed per caller number within `window`.
    pub per_caller: u32,
    /// Pushes allowed per person within `window`.
    pub per_person: u32,
    /// The window the two counts are taken over.
    pub window: Duration,
    /// No push to a person who declined (or said "not in a call") this recently.
    pub cooldown: Duration,
    /// An order without an outcome older than this no longer blocks a new one (a crashed
    /// instance never recorded its end).
    pub order_lifetime: Duration,
}

/// Whom a push goes to, as the limits see it.
#[derive(Debug, Clone, Copy)]
pub struct PushTarget<'a> {
    /// The caller number, if known.
    pub caller: Option<&'a E164>,
    /// The person, when pushed by personal number.
    pub person: Option<&'a PersonalNumber>,
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many pushes for this caller number within the window.
    CallerLimit,
    /// Too many pushes for this person within the window.
    PersonLimit,
    /// The person declined or said "not in a call" recently.
    Cooldown,
    /// An order for this person is still running (BankID would cancel both).
    Concurrent,
}

/// The answer to "may this call push now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushDecision {
    /// Go ahead; record the outcome on this attempt id.
    Allowed(Uuid),
    /// Refused; the refusal is recorded too.
    Refused(Refusal),
}

/// The stored pseudonym of a person: not reversible by reading the table, but the same for
/// every instance (pseudonymisation, not anonymisation: the number space is small).
pub(super) fn pseudonym(person: &PersonalNumber) -> String {
    hex::encode(Sha256::digest(format!(
        "idgate-person-v1:{}",
        person.as_digits()
    )))
}

impl Store {
    /// Checks the limits for a push and records the attempt (allowed or refused) atomically.
    /// It goes through the journal like every call write, so it sees the call's own earlier
    /// writes, and it is the one write the call path waits for.
    pub async fn begin_push(
        &self,
        call_id: Uuid,
        target: PushTarget<'_>,
        limits: &PushLimits,
        now: SystemTime,
    ) -> Result<PushDecision, StoreError> {
        let push = PushCheck {
            call_id,
            caller: target.caller.map(|c| c.as_str().to_owned()),
            person: target.person.map(pseudonym),
            limits: limits.clone(),
            now,
        };
        self.journal.begin_push(push).await
    }

    /// Records how an allowed push ended (`completed`, `declined`, `not-in-call`, `timeout`,
    /// `provider-error`, `rate-limited`, `cancelled`).
    pub async fn end_push(
        &self,
        attempt: Uuid,
        outcome: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let outcome = outcome.to_owned();
        self.commit(Record::PushEnded {
            attempt,
            outcome,
            at: now,
        })
        .await
    }
}

/// A push to check and record: [`Store::begin_push`]'s arguments, owned, for the journal.
#[derive(Debug, Clone)]
pub(super) struct PushCheck {
    call_id: Uuid,
    caller: Option<String>,
    /// The person's pseudonym.
    person: Option<String>,
    limits: PushLimits,
    now: SystemTime,
}

impl PushCheck {
    /// The call pushing.
    pub(super) fn call_id(&self) -> Uuid {
        self.call_id
    }
}

/// Checks and records one push inside the journal's transaction (SQLite: `BEGIN IMMEDIATE`,
/// so the check and the insert hold the write lock together).
pub(super) async fn begin_push_on(
    conn: &mut AnyConnection,
    backend: Backend,
    push: &PushCheck,
) -> Result<PushDecision, StoreError> {
    let op = "begin_push";
    let PushCheck {
        call_id,
        caller,
        person,
        limits,
        now,
    } = push;
    if backend == Backend::Postgres {
        // Atomic across instances: a transaction-scoped advisory lock per caller number and
        // per person serialises every check-and-insert on the same key (released when the
        // journal's batch commits or rolls back). Callers are always locked before persons, so
        // two pushes never wait on each other in a cycle.
        let keys = caller.iter().map(|c| format!("caller:{c}"));
        for key in keys.chain(person.iter().map(|p| format!("person:{p}"))) {
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock(hashtext($1))")
                .bind(key)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::query(op))?;
        }
    }
    let refusal = refusal(conn, caller.as_deref(), person.as_deref(), limits, *now).await?;
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO push_attempts (id, call_id, caller, person, started_at, ended_at, outcome) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(call_id.to_string())
    .bind(caller.as_deref())
    .bind(person.as_deref())
    .bind(to_millis(*now))
    .bind(refusal.map(|_| to_millis(*now)))
    .bind(refusal.map(|_| "rate-limited"))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query(op))?;
    Ok(match refusal {
        Some(r) => PushDecision::Refused(r),
        None => PushDecision::Allowed(id),
    })
}

pub(super) async fn end_push_on(
    conn: &mut AnyConnection,
    attempt: Uuid,
    outcome: &str,
    at: SystemTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE push_attempts SET ended_at = $1, outcome = $2 WHERE id = $3 AND ended_at IS NULL",
    )
    .bind(to_millis(at))
    .bind(outcome)
    .bind(attempt.to_string())
    .execute(conn)
    .await
    .map_err(StoreError::query("end_push"))?;
    Ok(())
}

async fn refusal(
    tx: &mut sqlx::AnyConnection,
    caller: Option<&str>,
    person: Option<&str>,
    limits: &PushLimits,
    now: SystemTime,
) -> Result<Option<Refusal>, StoreError> {
    let op = "begin_push";
    let since = |d: Duration| to_millis(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH));
    if let Some(caller) = caller {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM push_attempts WHERE caller = $1 AND started_at >= $2",
        )
        .bind(caller)
        .bind(since(limits.window))
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::query(op))?;
        if n >= i64::from(limits.per_caller) {
            return Ok(Some(Refusal::CallerLimit));
        }
    }
    let Some(person) = person else {
        return Ok(None);
    };
    let (recent, cooling, running): (i64, i64, i64) = sqlx::query_as(
        "SELECT \
           COALESCE(SUM(CASE WHEN started_at >= $2 THEN 1 ELSE 0 END), 0), \
           COALESCE(SUM(CASE WHEN outcome IN ('declined', 'not-in-call') AND ended_at >= $3 THEN 1 ELSE 0 END), 0), \
           COALESCE(SUM(CASE WHEN ended_at IS NULL AND started_at >= $4 THEN 1 ELSE 0 END), 0) \
         FROM push_attempts WHERE person = $1",
    )
    .bind(person)
    .bind(since(limits.window))
    .bind(since(limits.cooldown))
    .bind(since(limits.order_lifetime))
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::query(op))?;
    Ok(if running > 0 {
        Some(Refusal::Concurrent)
    } else if cooling > 0 {
        Some(Refusal::Cooldown)
    } else if recent >= i64::from(limits.per_person) {
        Some(Refusal::PersonLimit)
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "191212121212";

    fn limits() -> PushLimits {
        PushLimits {
            per_caller: 2,
            per_person: 3,
            window: Duration::from_secs(600),
            cooldown: Duration::from_secs(300),
            order_lifetime: Duration::from_secs(180),
        }
    }

    fn at(t0: SystemTime, secs: u64) -> SystemTime {
        t0 + Duration::from_secs(secs)
    }

    async fn push(
        store: &Store,
        caller: &E164,
        person: Option<&PersonalNumber>,
        now: SystemTime,
    ) -> PushDecision {
        let target = PushTarget {
            caller: Some(caller),
            person,
        };
        store
            .begin_push(Uuid::new_v4(), target, &limits(), now)
            .await
            .expect("begin_push")
    }

    fn allowed(decision: PushDecision) -> Uuid {
        match decision {
            PushDecision::Allowed(id) => id,
            other => panic!("expected Allowed, got {other:?}"),
        }
    }

    async fn a_caller_number_gets_a_limited_number_of_pushes_per_window(store: Store) {
        let caller = E164::parse("+46701234567", "SE").expect("number");
        let t0 = SystemTime::now();
        for i in 0..2 {
            let id = allowed(push(&store, &caller, None, at(t0, i)).await);
            store
                .end_push(id, "declined", at(t0, i))
                .await
                .expect("end");
        }
        assert_eq!(
            push(&store, &caller, None, at(t0, 10)).await,
            PushDecision::Refused(Refusal::CallerLimit)
        );
        // The refused attempt counts too, but all of them age out of the window.
        allowed(push(&store, &caller, None, at(t0, 700)).await);
    }

    async fn never_two_running_orders_for_one_person(store: Store) {
        let person = PersonalNumber::parse(ALICE).expect("pnr");
        let a = E164::parse("+46701111111", "SE").expect("number");
        let b = E164::parse("+46702222222", "SE").expect("number");
        let t0 = SystemTime::now();
        let first = allowed(push(&store, &a, Some(&person), t0).await);
        assert_eq!(
            push(&store, &b, Some(&person), at(t0, 1)).await,
            PushDecision::Refused(Refusal::Concurrent)
        );
        store
            .end_push(first, "verified", at(t0, 5))
            .await
            .expect("end");
        allowed(push(&store, &b, Some(&person), at(t0, 6)).await);
    }

    async fn a_running_order_older_than_its_lifetime_no_longer_blocks(store: Store) {
        let person = PersonalNumber::parse(ALICE).expect("pnr");
        let caller = E164::parse("+46701111111", "SE").expect("number");
        let t0 = SystemTime::now();
        allowed(push(&store, &caller, Some(&person), t0).await);
        let other = E164::parse("+46703333333", "SE").expect("number");
        allowed(push(&store, &other, Some(&person), at(t0, 181)).await);
    }

    async fn a_decline_cools_the_person_down(store: Store) {
        let person = PersonalNumber::parse(ALICE).expect("pnr");
        let t0 = SystemTime::now();
        for (i, outcome) in ["declined", "not-in-call"].into_iter().enumerate() {
            let caller = E164::parse(&format!("+4670444444{i}"), "SE").expect("number");
            let start = at(t0, i as u64 * 1000);
            let id = allowed(push(&store, &caller, Some(&person), start).await);
            store.end_push(id, outcome, start).await.expect("end");
            let again = push(
                &store,
                &caller,
                Some(&person),
                start + Duration::from_secs(60),
            )
            .await;
            assert_eq!(again, PushDecision::Refused(Refusal::Cooldown), "{outcome}");
            let later = E164::parse(&format!("+4670555555{i}"), "SE").expect("number");
            allowed(
                push(
                    &store,
                    &later,
                    Some(&person),
                    start + Duration::from_secs(301),
                )
                .await,
            );
            let last = push(
                &store,
                &later,
                Some(&person),
                start + Duration::from_secs(302),
            )
            .await;
            assert_eq!(last, PushDecision::Refused(Refusal::Concurrent));
        }
    }

    async fn a_person_gets_a_limited_number_of_pushes_per_window_from_any_number(store: Store) {
        let person = PersonalNumber::parse(ALICE).expect("pnr");
        let t0 = SystemTime::now();
        for i in 0..3u64 {
            let caller = E164::parse(&format!("+4670666666{i}"), "SE").expect("number");
            let id = allowed(push(&store, &caller, Some(&person), at(t0, i)).await);
            store.end_push(id, "timeout", at(t0, i)).await.expect("end");
        }
        let caller = E164::parse("+46706666669", "SE").expect("number");
        assert_eq!(
            push(&store, &caller, Some(&person), at(t0, 5)).await,
            PushDecision::Refused(Refusal::PersonLimit)
        );
    }

    async fn the_table_holds_a_pseudonym_never_the_personal_number(store: Store) {
        let person = PersonalNumber::parse(ALICE).expect("pnr");
        let caller = E164::parse("+46701111111", "SE").expect("number");
        allowed(push(&store, &caller, Some(&person), SystemTime::now()).await);
        let stored: String = sqlx::query_scalar("SELECT person FROM push_attempts")
            .fetch_one(&store.pool)
            .await
            .expect("row");
        assert_eq!(stored.len(), 64);
        assert!(!stored.contains(ALICE) && !stored.contains("121212"));
    }

    async fn concurrent_pushes_for_one_person_allow_exactly_one(store: Store) {
        let person = PersonalNumber::parse(ALICE).expect("pnr");
        let now = SystemTime::now();
        // Open the connections first, so the pushes overlap rather than queue for the pool.
        let warm: Vec<_> = (0..8).map(|_| store.pool.acquire()).collect();
        for conn in warm {
            drop(conn.await.expect("connection"));
        }
        let pushes = (0..8).map(|i| {
            let store = store.clone();
            let person = person.clone();
            tokio::spawn(async move {
                let caller = E164::parse(&format!("+4670777777{i}"), "SE").expect("number");
                push(&store, &caller, Some(&person), now).await
            })
        });
        let mut allowed = 0;
        for push in pushes.collect::<Vec<_>>() {
            match push.await.expect("task") {
                PushDecision::Allowed(_) => allowed += 1,
                PushDecision::Refused(r) => assert_eq!(r, Refusal::Concurrent),
            }
        }
        assert_eq!(allowed, 1);
    }

    /// The in-memory SQLite store has one connection; a file has a pool, where concurrent
    /// pushes really overlap (and, without BEGIN IMMEDIATE, fail on a stale snapshot).
    #[tokio::test]
    async fn concurrent_pushes_on_a_sqlite_file_allow_exactly_one_and_never_fail() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("idgate.db").display());
        let store = Store::connect(&url).await.expect("store");
        for _ in 0..5 {
            concurrent_pushes_for_one_person_allow_exactly_one(store.clone()).await;
            sqlx::query("DELETE FROM push_attempts")
                .execute(&store.pool)
                .await
                .expect("clean");
        }
    }

    crate::store::testdb::store_tests!(
        concurrent_pushes_for_one_person_allow_exactly_one,
        a_caller_number_gets_a_limited_number_of_pushes_per_window,
        never_two_running_orders_for_one_person,
        a_running_order_older_than_its_lifetime_no_longer_blocks,
        a_decline_cools_the_person_down,
        a_person_gets_a_limited_number_of_pushes_per_window_from_any_number,
        the_table_holds_a_pseudonym_never_the_personal_number,
    );
}
