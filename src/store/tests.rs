//! Store tests: most on each backend (SQLite in memory, PostgreSQL; see `testdb`), the file
//! and URL ones on SQLite only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use super::*;
use crate::config::Transfer;
use crate::identity::{
    CallerId, E164, Method, PersonName, PersonalNumber, Reason, Verdict, VerifiedPerson,
};

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn number(raw: &str) -> E164 {
    E164::parse(raw, "SE").unwrap()
}

fn tolvan() -> PersonalNumber {
    PersonalNumber::parse("191212121212").unwrap()
}

fn new_call(caller: CallerId) -> NewCall {
    NewCall {
        id: Uuid::new_v4(),
        sip_call_id: "a84b4c76e66710@pc33.example.com".to_owned(),
        caller,
        called: "5000".to_owned(),
        route: Some("default".to_owned()),
        transfer_mode: Some(Transfer::B2bua),
        started_at: at(1_700_000_000_123),
    }
}

async fn a_call_round_trips(store: Store) {
    let call = new_call(CallerId::Number(number("+46701234567")));
    store.insert_call(&call).await.unwrap();
    let row = store.get_call(call.id).await.unwrap().unwrap();
    assert_eq!(row.id, call.id);
    assert_eq!(row.sip_call_id, call.sip_call_id);
    assert_eq!(row.caller, "+46701234567");
    assert_eq!(
        (row.called.as_str(), row.route.as_deref()),
        ("5000", Some("default"))
    );
    assert_eq!(row.started_at, at(1_700_000_000_123));
    assert_eq!(row.transfer_mode, Some(Transfer::B2bua));
    assert_eq!(
        (row.answered_at, row.status, row.ended_at),
        (None, None, None)
    );
    assert!(store.get_call(Uuid::new_v4()).await.unwrap().is_none());
}

async fn an_anonymous_call_is_stored_as_anonymous(store: Store) {
    let call = new_call(CallerId::Anonymous);
    store.insert_call(&call).await.unwrap();
    assert_eq!(
        store.get_call(call.id).await.unwrap().unwrap().caller,
        "anonymous"
    );
    let e = store.insert_call(&call).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { .. }), "{e}");
}

async fn an_unverified_verdict_and_the_end_are_recorded(store: Store) {
    let call = new_call(CallerId::Anonymous);
    store.insert_call(&call).await.unwrap();
    store
        .mark_answered(call.id, at(1_700_000_000_500))
        .await
        .unwrap();
    let verdict = Verdict::Unverified {
        reason: Reason::NotInCall,
        method: Some(Method::Simulator),
    };
    store
        .record_verdict(call.id, &verdict, at(1_700_000_010_000))
        .await
        .unwrap();
    store
        .finish_call(call.id, "queue-unavailable", at(1_700_000_020_000))
        .await
        .unwrap();
    let row = store.get_call(call.id).await.unwrap().unwrap();
    assert_eq!(row.answered_at, Some(at(1_700_000_000_500)));
    assert_eq!(row.status, Some(CallStatus::Unverified));
    assert_eq!(row.reason, Some(Reason::NotInCall));
    assert_eq!(row.method, Some(Method::Simulator));
    assert_eq!(row.verdict_at, Some(at(1_700_000_010_000)));
    assert_eq!(
        row.transfer_outcome,
        Some(TransferOutcome::QueueUnavailable)
    );
    assert_eq!(row.ended_at, Some(at(1_700_000_020_000)));
}

async fn updates_of_unknown_calls_and_bad_outcomes_are_errors(store: Store) {
    let id = Uuid::new_v4();
    let e = store.finish_call(id, "connected", at(1)).await.unwrap_err();
    assert!(matches!(e, StoreError::CallNotFound { .. }), "{e}");
    let e = store.mark_answered(id, at(1)).await.unwrap_err();
    assert!(matches!(e, StoreError::CallNotFound { .. }), "{e}");
    let e = store.finish_call(id, "hung-up", at(1)).await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidValue { .. }), "{e}");
}

async fn a_verified_verdict_never_stores_the_person(store: Store) {
    let call = new_call(CallerId::Number(number("0701234567")));
    store.insert_call(&call).await.unwrap();
    let person = VerifiedPerson {
        personal_number: tolvan(),
        name: Some(PersonName::new("Tolvan Tolvansson".to_owned())),
    };
    let verdict = Verdict::Verified {
        method: Method::Simulator,
        person,
    };
    store
        .record_verdict(call.id, &verdict, at(1_700_000_001_000))
        .await
        .unwrap();
    let row = store.get_call(call.id).await.unwrap().unwrap();
    assert_eq!((row.status, row.reason), (Some(CallStatus::Verified), None));
    // Every column of every call row, as text: neither the digits nor the name appear.
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT id || sip_call_id || caller || called || COALESCE(route, '') || \
         COALESCE(status, '') || COALESCE(reason, '') || COALESCE(method, '') || \
         COALESCE(transfer_mode, '') || COALESCE(transfer_outcome, '') FROM calls",
    )
    .fetch_all(&store.pool)
    .await
    .unwrap();
    assert_eq!(dump.len(), 1);
    assert!(
        !dump[0].contains("121212") && !dump[0].contains("Tolvan"),
        "{}",
        dump[0]
    );
}

async fn a_customer_is_found_by_any_of_their_numbers(store: Store) {
    let name = PersonName::new("Tolvan Tolvansson".to_owned());
    let numbers = [number("+46701234567"), number("+46812345678")];
    let id = store
        .add_customer(&name, &tolvan(), &numbers)
        .await
        .unwrap();
    for n in &numbers {
        let customer = store.find_customer_by_number(n).await.unwrap().unwrap();
        assert_eq!(customer.id, id);
        assert_eq!(customer.personal_number, tolvan());
        assert_eq!(
            customer.name.as_ref().map(PersonName::as_str),
            Some("Tolvan Tolvansson")
        );
    }
    assert!(
        store
            .find_customer_by_number(&number("+46709999999"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_number_belongs_to_one_customer_only(store: Store) {
    let name = PersonName::new("A".to_owned());
    let shared = number("+46701234567");
    store
        .add_customer(&name, &tolvan(), std::slice::from_ref(&shared))
        .await
        .unwrap();
    let other = PersonalNumber::parse("198001019804").unwrap();
    let e = store
        .add_customer(&name, &other, std::slice::from_ref(&shared))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Duplicate {
                what: "a phone number",
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("+4670"), "{e}");
    // The failed insert was rolled back: the other person is not half-registered.
    let e = store.add_customer(&name, &tolvan(), &[]).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { .. }), "{e}");
    store.add_customer(&name, &other, &[]).await.unwrap();
    let found = store
        .find_customer_by_number(&shared)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.personal_number, tolvan());
}

async fn a_corrupt_personal_number_is_an_error_not_a_panic(store: Store) {
    let name = PersonName::new("A".to_owned());
    let n = number("+46701234567");
    let id = store
        .add_customer(&name, &tolvan(), std::slice::from_ref(&n))
        .await
        .unwrap();
    sqlx::query("UPDATE customers SET personal_number = '191212121213' WHERE id = $1")
        .bind(id.to_string())
        .execute(&store.pool)
        .await
        .unwrap();
    let e = store.find_customer_by_number(&n).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Corrupt {
                column: "personal_number",
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("1212"), "{e}");
}

#[tokio::test]
async fn a_file_database_is_created_in_wal_mode_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("idgate.db").display());
    let call = new_call(CallerId::Anonymous);
    {
        let store = Store::connect(&url).await.unwrap();
        store.insert_call(&call).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        store.close().await;
    }
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.get_call(call.id).await.unwrap().unwrap().id, call.id);
}

#[tokio::test]
async fn an_unopenable_database_is_an_open_error() {
    let e = Store::connect("sqlite:///nonexistent-dir/sub/idgate.db")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e}");
}

crate::store::testdb::store_tests!(
    a_call_round_trips,
    an_anonymous_call_is_stored_as_anonymous,
    an_unverified_verdict_and_the_end_are_recorded,
    updates_of_unknown_calls_and_bad_outcomes_are_errors,
    a_verified_verdict_never_stores_the_person,
    a_customer_is_found_by_any_of_their_numbers,
    a_number_belongs_to_one_customer_only,
    a_corrupt_personal_number_is_an_error_not_a_panic,
);
