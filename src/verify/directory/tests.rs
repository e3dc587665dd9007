//! The CRM directory against a small fake CRM on 127.0.0.1:0: a customer, not a customer
//! (404), failures (timeout, 500, a bad body), the bearer token, and the cache.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::*;
use crate::config::Token;

const TOLVAN: &str = "+46701234567";
const UNKNOWN: &str = "+46709999999";
const SLOW: &str = "+46705555555";
const BROKEN: &str = "+46703333333";
const GARBAGE: &str = "+46704444444";
/// Every lookup in these tests ends well within this.
const BOUND: Duration = Duration::from_secs(5);
/// How long the fake CRM takes for `SLOW`.
const SLOW_CRM: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Fake {
    requests: AtomicUsize,
}

async fn customer(
    State(fake): State<Arc<Fake>>,
    Path(number): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some("Bearer crm-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    assert!(uri.path().contains("%2B46"), "{uri}");
    match number.as_str() {
        TOLVAN => axum::Json(serde_json::json!({
            "personal_number": "191212121212",
            "name": "Tolvan Tolvansson",
            "segment": "gold",
        }))
        .into_response(),
        SLOW => {
            // Far longer than any timeout here: only idgate's own timeout ends the lookup.
            tokio::time::sleep(SLOW_CRM).await;
            StatusCode::NOT_FOUND.into_response()
        }
        BROKEN => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        GARBAGE => (StatusCode::OK, "{\"personal_number\": \"191212121213\"}").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn fake_crm() -> (SocketAddr, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/customers/{number}", get(customer))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, fake)
}

fn config(addr: SocketAddr, cache_secs: u64) -> DirectoryConfig {
    DirectoryConfig {
        kind: DirectoryKind::Crm,
        url: Some(format!("http://{addr}/customers/{{number}}")),
        timeout_ms: 300,
        cache_secs,
        bearer_token: Some(Token::new("crm-token".to_owned())),
    }
}

async fn crm_directory(addr: SocketAddr, cache_secs: u64) -> Directory {
    let store = Store::memory().await.unwrap();
    Directory::from_config(&config(addr, cache_secs), &store).unwrap()
}

async fn lookup(
    directory: &Directory,
    number: &str,
) -> Result<Option<DirectoryEntry>, LookupError> {
    let number = E164::parse(number, "SE").unwrap();
    tokio::time::timeout(BOUND, directory.lookup(&number))
        .await
        .expect("the lookup ends within its timeout")
}

#[tokio::test]
async fn a_customer_is_found_and_a_404_is_no_customer() {
    let (addr, _) = fake_crm().await;
    let directory = crm_directory(addr, 60).await;
    let entry = lookup(&directory, TOLVAN).await.unwrap().unwrap();
    assert_eq!(entry.personal_number.as_digits(), "191212121212");
    assert_eq!(
        entry.name.as_ref().map(PersonName::as_str),
        Some("Tolvan Tolvansson")
    );
    assert_eq!(lookup(&directory, UNKNOWN).await.unwrap(), None);
}

#[tokio::test]
async fn a_slow_crm_is_a_failure_within_the_timeout() {
    let (addr, _) = fake_crm().await;
    let directory = crm_directory(addr, 60).await;
    let started = std::time::Instant::now();
    let e = lookup(&directory, SLOW).await.unwrap_err();
    assert!(matches!(e, LookupError::Crm(CrmError::Timeout)), "{e}");
    // Not a timing test: generous for a loaded machine, far below the CRM's own delay.
    assert!(started.elapsed() < SLOW_CRM / 4, "{:?}", started.elapsed());
}

#[tokio::test]
async fn other_statuses_bad_bodies_and_a_wrong_token_are_failures_without_personal_data() {
    let (addr, _) = fake_crm().await;
    let directory = crm_directory(addr, 60).await;
    let e = lookup(&directory, BROKEN).await.unwrap_err();
    assert!(matches!(e, LookupError::Crm(CrmError::Status(_))), "{e}");
    let e = lookup(&directory, GARBAGE).await.unwrap_err().to_string();
    assert!(e.contains("not a valid personal identity number"), "{e}");
    assert!(!e.contains("19121212") && !e.contains("4670"), "{e}");
    let mut wrong = config(addr, 60);
    wrong.bearer_token = Some(Token::new("nope".to_owned()));
    let store = Store::memory().await.unwrap();
    let wrong = Directory::from_config(&wrong, &store).unwrap();
    let e = lookup(&wrong, TOLVAN).await.unwrap_err().to_string();
    assert_eq!(e, "the CRM answered 401 Unauthorized");
}

#[tokio::test]
async fn a_refused_connection_is_a_failure_that_names_no_number() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let directory = crm_directory(addr, 60).await;
    let e = lookup(&directory, TOLVAN).await.unwrap_err().to_string();
    assert!(e.starts_with("CRM request failed"), "{e}");
    assert!(!e.contains("4670"), "{e}");
}

#[tokio::test]
async fn answers_and_misses_are_cached_failures_are_not() {
    let (addr, fake) = fake_crm().await;
    let directory = crm_directory(addr, 60).await;
    let requests = || fake.requests.load(Ordering::SeqCst);
    lookup(&directory, TOLVAN).await.unwrap().unwrap();
    lookup(&directory, UNKNOWN).await.unwrap();
    assert_eq!(requests(), 2);
    assert!(lookup(&directory, TOLVAN).await.unwrap().is_some());
    assert!(lookup(&directory, UNKNOWN).await.unwrap().is_none());
    assert_eq!(
        requests(),
        2,
        "the second lookups were answered from the cache"
    );
    lookup(&directory, BROKEN).await.unwrap_err();
    lookup(&directory, BROKEN).await.unwrap_err();
    assert_eq!(requests(), 4, "failures are asked again");
    let uncached = crm_directory(addr, 0).await;
    lookup(&uncached, TOLVAN).await.unwrap();
    lookup(&uncached, TOLVAN).await.unwrap();
    assert_eq!(requests(), 6);
}

#[tokio::test]
async fn the_database_directory_reads_the_customer_table() {
    let store = Store::memory().await.unwrap();
    let customer = parse_customer("191212121212", "Tolvan", [TOLVAN], "SE").unwrap();
    store.insert_customer(&customer).await.unwrap();
    let directory = Directory::from_config(&DirectoryConfig::default(), &store).unwrap();
    let entry = lookup(&directory, TOLVAN).await.unwrap().unwrap();
    assert_eq!(entry.personal_number, customer.personal_number);
    assert_eq!(lookup(&directory, UNKNOWN).await.unwrap(), None);
}
