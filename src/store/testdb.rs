//! The store test harness: every backend-neutral test runs once on SQLite (in memory) and once
//! on PostgreSQL, in a fresh schema of the database `IDGATE_TEST_POSTGRES_URL` names, dropped
//! afterwards. Without that variable the PostgreSQL run is skipped with a note, except under
//! `CI=true`, where it fails: CI must never skip it silently.

use std::future::Future;

use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use super::Store;

/// The variable naming the test database.
pub(crate) const POSTGRES_URL_VAR: &str = "IDGATE_TEST_POSTGRES_URL";

/// Runs `test` on a fresh in-memory SQLite store.
pub(crate) async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    test(Store::memory().await.expect("in-memory store")).await;
}

/// Runs `test` on a store in a new PostgreSQL schema, then drops the schema (also when the test
/// panics; the panic is then resumed).
pub(crate) async fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(url) = std::env::var(POSTGRES_URL_VAR) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{POSTGRES_URL_VAR} is not set: CI must run the PostgreSQL store tests"
        );
        eprintln!("{name}: skipped on PostgreSQL ({POSTGRES_URL_VAR} is not set)");
        return;
    };
    let schema = format!("idgate_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url)
        .await
        .expect("connect to the test PostgreSQL");
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .expect("create schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    let store_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let store = Store::connect(&store_url).await.expect("PostgreSQL store");
    let run = tokio::spawn(test(store.clone())).await;
    store.close().await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .expect("drop schema");
    admin.close().await.ok();
    if let Err(e) = run {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Turns `async fn name(store: Store)` tests into `name::sqlite` and `name::postgres`.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                $crate::store::testdb::on_sqlite(super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::store::testdb::on_postgres(stringify!($name), super::$name).await;
            }
        }
    )*};
}
pub(crate) use store_tests;
