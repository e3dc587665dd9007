//! Faults end to end, the provider: slow (never answering within the route's deadline), failing
//! (BankID answering 500), untrusted (a TLS certificate idgate does not trust), silent (accepts
//! and never answers) or down (connection refused). The caller always reaches the queue,
//! unverified with the right reason. Shared setup: `support::faults`. Every wait is bounded;
//! everything is on loopback.

mod support;

use std::time::Duration;

use idgate::identity::PersonalNumber;
use idgate::verify::bankid::fake::{FakeBankId, FakeOutcome, FakeTiming};
use support::faults::{
    assert_unverified, call, ended_call, http_token, route, start, verification_events,
};
use support::{Idgate, Sipp, add_customer, assert_ok, header};

/// The simulator never answers: at the route's identification deadline the caller goes on
/// unverified with `timeout`, and the push is cancelled.
#[test]
fn a_provider_that_never_answers_ends_in_timeout_at_the_route_deadline() {
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let routes = route(queue.port, "keypad = false\nidentify_timeout_secs = 3\n");
    let silent = "default = \"approve\"\ndelay_ms = 600000\nhint_ms = 100\n";
    let idgate = start(&routes, silent, "");
    let mut caller = call(&idgate, "caller.xml", "+46702000001", &["-d", "9000"]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    assert_unverified(&queue, "timeout");

    let row = ended_call(&idgate, "+46702000001");
    let at = |key: &str| {
        idgate::timefmt::parse_rfc3339(row[key].as_str().expect(key)).expect("RFC 3339")
    };
    let waited = at("decided_at")
        .duration_since(at("answered_at"))
        .expect("decided after answered");
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(30),
        "the route's 3 s deadline decided the call: {waited:?}"
    );
    let events = verification_events(&idgate, row["id"].as_str().expect("id"));
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("started"));
    assert!(
        events.iter().any(|e| e.0 == "cancelled"),
        "the running order was cancelled: {events:?}"
    );
}

/// A fake BankID and the runtime that serves it.
struct Bank {
    fake: FakeBankId,
    runtime: tokio::runtime::Runtime,
}

fn bank() -> Bank {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime
        .block_on(FakeBankId::start(FakeTiming::fast()))
        .expect("start the BankID fake");
    Bank { fake, runtime }
}

/// idgate on BankID at `url`, trusting `ca`, with the fake's RP certificate; 1 s per request.
fn idgate_on_bankid(bank: &Bank, url: &str, ca: &str, queue_port: u16) -> Idgate {
    let extra = "request_timeout_ms = 1000\n";
    let (files, sections) = support::bankid_sections(bank.fake.pki(), url, ca, extra);
    let routes = route(queue_port, "keypad = false\n");
    let idgate = Idgate::start_with_http(&routes, "", &http_token(), &sections);
    drop(files);
    idgate
}

/// A caller in the directory calls; BankID fails as `fault` sets up; the queue must get the
/// caller unverified with `provider-error`, and the call must end cleanly.
fn bankid_fault(fault: impl FnOnce(&Bank) -> (String, String)) {
    let bank = bank();
    let (url, ca) = fault(&bank);
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let idgate = idgate_on_bankid(&bank, &url, &ca, queue.port);
    add_customer(&idgate, "191212121212", "+46702000002");
    let mut caller = call(&idgate, "caller.xml", "+46702000002", &["-d", "8000"]);
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    assert_unverified(&queue, "provider-error");
    let invite = queue.received("INVITE").expect("INVITE");
    assert_eq!(header(&invite, "X-Identity-Method"), Some("bankid"));
    let row = ended_call(&idgate, "+46702000002");
    assert_eq!(row["outcome"], "connected", "{row}");
}

#[test]
fn bankid_answering_500_reaches_the_queue_as_provider_error() {
    bankid_fault(|bank| {
        let person = PersonalNumber::parse("191212121212").expect("pnr");
        bank.fake.script(&person, FakeOutcome::ServerError);
        (bank.fake.url(), bank.fake.pki().server_ca_pem.clone())
    });
}

#[test]
fn bankid_with_a_certificate_idgate_does_not_trust_reaches_the_queue_as_provider_error() {
    bankid_fault(|bank| {
        // Another test CA: the TLS handshake with the fake fails.
        let stranger = idgate::verify::tls::TestPki::generate();
        (bank.fake.url(), stranger.server_ca_pem)
    });
}

#[test]
fn bankid_that_accepts_but_never_answers_reaches_the_queue_as_provider_error() {
    bankid_fault(|bank| {
        let addr = bank.runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            // Accepts and holds every connection, says nothing (ends with the runtime).
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((socket, _)) = listener.accept().await {
                    held.push(socket);
                }
            });
            addr
        });
        let url = format!("https://{addr}/rp/v6.0/");
        (url, bank.fake.pki().server_ca_pem.clone())
    });
}

#[test]
fn bankid_down_reaches_the_queue_as_provider_error() {
    bankid_fault(|bank| {
        // A port nobody listens on: connections are refused.
        let port = support::free_port();
        let url = format!("https://127.0.0.1:{port}/rp/v6.0/");
        (url, bank.fake.pki().server_ca_pem.clone())
    });
}
