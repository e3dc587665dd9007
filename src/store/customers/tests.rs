//! Customer directory tests: listing masks, removal, and imports that are all-or-nothing and
//! idempotent.

use super::*;
use crate::store::{ImportError, ImportRow};

const TOLVAN: &str = "191212121212";
const ALICE: &str = "198001019804";

fn number(raw: &str) -> E164 {
    E164::parse(raw, "SE").unwrap()
}

fn customer(personal_number: &str, name: &str, numbers: &[&str]) -> NewCustomer {
    NewCustomer {
        personal_number: PersonalNumber::parse(personal_number).unwrap(),
        name: PersonName::new(name.to_owned()),
        numbers: numbers.iter().map(|n| number(n)).collect(),
    }
}

fn row(line: u64, personal_number: &str, name: &str, numbers: &[&str]) -> ImportRow {
    ImportRow {
        line,
        customer: customer(personal_number, name, numbers),
    }
}

async fn owner(store: &Store, raw: &str) -> Option<String> {
    let found = store.find_customer_by_number(&number(raw)).await.unwrap();
    found.map(|c| c.personal_number.as_digits().to_owned())
}

async fn the_list_masks_personal_numbers_and_groups_numbers(store: Store) {
    let tolvan = customer(TOLVAN, "Tolvan", &["+46701234567", "+46812345678"]);
    let id = store.insert_customer(&tolvan).await.unwrap();
    store
        .insert_customer(&customer(ALICE, "Alice", &["+46709876543"]))
        .await
        .unwrap();
    let list = store.list_customers().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].masked_personal_number, "19121212-****");
    assert_eq!(list[0].numbers, tolvan.numbers);
    assert_eq!(list[1].masked_personal_number, "19800101-****");
    assert_eq!(list[1].name.as_ref().map(PersonName::as_str), Some("Alice"));
    assert!(!format!("{list:?}").contains(TOLVAN));
}

async fn adding_names_the_taken_number_and_keeps_nothing(store: Store) {
    store
        .insert_customer(&customer(TOLVAN, "Tolvan", &["+46701234567"]))
        .await
        .unwrap();
    let alice = customer(ALICE, "Alice", &["+46709876543", "+46701234567"]);
    let e = store.insert_customer(&alice).await.unwrap_err();
    assert!(
        matches!(e, CustomerError::NumberTaken { position: 2 }),
        "{e}"
    );
    assert_eq!(owner(&store, "+46709876543").await, None);
    let again = customer(TOLVAN, "Tolvan", &[]);
    let e = store.insert_customer(&again).await.unwrap_err();
    assert!(matches!(e, CustomerError::PersonTaken), "{e}");
}

async fn a_customer_is_removed_by_id_or_personal_number_with_their_numbers(store: Store) {
    let id = store
        .insert_customer(&customer(TOLVAN, "Tolvan", &["+46701234567"]))
        .await
        .unwrap();
    store
        .insert_customer(&customer(ALICE, "Alice", &["+46709876543"]))
        .await
        .unwrap();
    assert!(store.remove_customer(&CustomerKey::Id(id)).await.unwrap());
    assert!(!store.remove_customer(&CustomerKey::Id(id)).await.unwrap());
    assert_eq!(owner(&store, "+46701234567").await, None);
    let alice = CustomerKey::PersonalNumber(PersonalNumber::parse(ALICE).unwrap());
    assert!(store.remove_customer(&alice).await.unwrap());
    assert!(store.list_customers().await.unwrap().is_empty());
    // The numbers are free again.
    store
        .insert_customer(&customer(ALICE, "Alice", &["+46701234567"]))
        .await
        .unwrap();
}

async fn an_import_is_all_or_nothing_and_names_the_line(store: Store) {
    store
        .insert_customer(&customer(TOLVAN, "Tolvan", &["+46701234567"]))
        .await
        .unwrap();
    let rows = [
        row(2, ALICE, "Alice", &["+46709876543"]),
        row(3, "198112189876", "Bob", &["+46701111111", "+46701234567"]),
    ];
    let e = store.import_customers(&rows).await.unwrap_err();
    assert!(
        matches!(
            e,
            ImportError::Row {
                line: 3,
                reason: CustomerError::NumberTaken { position: 2 }
            }
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("line 3: phone number 2"), "{e}");
    assert!(!e.to_string().contains("+4670"), "{e}");
    assert_eq!(owner(&store, "+46709876543").await, None);
    assert_eq!(store.list_customers().await.unwrap().len(), 1);
}

async fn a_number_twice_in_one_import_for_two_people_is_refused(store: Store) {
    let rows = [
        row(2, ALICE, "Alice", &["+46709876543"]),
        row(3, TOLVAN, "Tolvan", &["+46709876543"]),
    ];
    let e = store.import_customers(&rows).await.unwrap_err();
    assert!(matches!(e, ImportError::Row { line: 3, .. }), "{e}");
    assert!(store.list_customers().await.unwrap().is_empty());
}

async fn importing_again_updates_names_adds_numbers_and_is_idempotent(store: Store) {
    let id = store
        .insert_customer(&customer(TOLVAN, "T. Tolvansson", &["+46701234567"]))
        .await
        .unwrap();
    let rows = [
        row(
            2,
            TOLVAN,
            "Tolvan Tolvansson",
            &["+46701234567", "+46812345678"],
        ),
        row(3, ALICE, "Alice", &["+46709876543"]),
    ];
    let first = store.import_customers(&rows).await.unwrap();
    assert_eq!(
        (first.rows, first.added, first.updated, first.numbers_added),
        (2, 1, 1, 2)
    );
    let listed = store.list_customers().await.unwrap();
    let second = store.import_customers(&rows).await.unwrap();
    assert_eq!(
        (second.added, second.updated, second.numbers_added),
        (0, 2, 0)
    );
    assert_eq!(store.list_customers().await.unwrap(), listed);
    assert_eq!(listed[0].id, id);
    assert_eq!(
        listed[0].name.as_ref().map(PersonName::as_str),
        Some("Tolvan Tolvansson")
    );
    assert_eq!(listed[0].numbers.len(), 2);
}

#[tokio::test]
async fn an_import_into_a_file_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("idgate.db").display());
    let store = Store::connect(&url).await.unwrap();
    let rows = [row(2, ALICE, "Alice", &["+46709876543"])];
    store.import_customers(&rows).await.unwrap();
    store.close().await;
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(owner(&store, "+46709876543").await.as_deref(), Some(ALICE));
}

crate::store::testdb::store_tests!(
    the_list_masks_personal_numbers_and_groups_numbers,
    adding_names_the_taken_number_and_keeps_nothing,
    a_customer_is_removed_by_id_or_personal_number_with_their_numbers,
    an_import_is_all_or_nothing_and_names_the_line,
    a_number_twice_in_one_import_for_two_people_is_refused,
    importing_again_updates_names_adds_numbers_and_is_idempotent,
);
