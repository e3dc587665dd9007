//! End to end with BankID: idgate as a process configured for BankID, talking mutual TLS to the
//! strict local fake of RP API v6 that this test starts (BankID's servers cannot be reached from
//! here), SIPp as caller and agent queue. The caller number is in the directory; the push goes
//! to that person with `callInitiator: "user"`.

mod support;

use std::time::{Duration, Instant};

use idgate::identity::PersonalNumber;
use idgate::verify::bankid::fake::{FakeBankId, FakeOutcome, FakeTiming};
use support::{Idgate, Sipp, add_customer, assert_ok, header, wait_for_log};

/// A fake BankID and the runtime that serves it for the whole test.
struct Bank {
    fake: FakeBankId,
    _runtime: tokio::runtime::Runtime,
}

fn bank(timing: FakeTiming) -> Bank {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime
        .block_on(FakeBankId::start(timing))
        .expect("start the BankID fake");
    Bank {
        fake,
        _runtime: runtime,
    }
}

/// idgate configured for the fake: the RP certificate, its key and the fake's CA as files.
fn idgate_for(bank: &Bank, queue_port: u16) -> Idgate {
    let pki = bank.fake.pki();
    let url = bank.fake.url();
    let (files, sections) = support::bankid_sections(pki, &url, &pki.server_ca_pem, "");
    let routes = format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\nkeypad = false\ntarget = \"sip:queue@127.0.0.1:{queue_port}\"\n"
    );
    let idgate = Idgate::start_full(&routes, "", "", &sections);
    // The PEM files were read at start-up.
    drop(files);
    idgate
}

fn person(digits: &str) -> PersonalNumber {
    PersonalNumber::parse(digits).expect("test personal number")
}

fn call(idgate: &Idgate, caller: &str, stay_ms: &str) -> Sipp {
    let target = idgate.sip_addr();
    let args = [
        "-set", "caller", caller, "-s", "5000", "-d", stay_ms, &target,
    ];
    Sipp::start(idgate.dir.path(), "caller.xml", &args, 1)
}

#[test]
fn a_caller_in_the_directory_is_verified_by_bankid_and_the_evidence_is_kept() {
    let bank = bank(FakeTiming::fast());
    bank.fake
        .script(&person("191212121212"), FakeOutcome::Approve);
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let idgate = idgate_for(&bank, queue.port);
    add_customer(&idgate, "191212121212", "+46701230001");

    let mut caller = call(&idgate, "+46701230001", "2500");
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.invite_with_status("verified");
    assert_eq!(header(&invite, "X-Identity-Method"), Some("bankid"));
    assert_eq!(header(&invite, "X-Identity-Subject"), Some("19121212-****"));

    let auth = bank
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/phone/auth"))
        .expect("a phone/auth request");
    assert_eq!(
        auth.content_type.as_deref(),
        Some("application/json"),
        "no charset"
    );
    assert!(
        auth.body.contains("\"callInitiator\":\"user\""),
        "{}",
        auth.body
    );
    assert!(bank.fake.count("collect") >= 2, "polled until complete");

    let call_id = header(&invite, "X-Identity-Call").expect("call id");
    let evidence = evidence_for(&idgate, call_id);
    assert_eq!(evidence.len(), 1, "BankID's completionData kept for audit");
    assert_eq!(evidence[0].0, "bankid");
    assert!(evidence[0].1.contains("\"signature\""), "{}", evidence[0].1);
    assert!(
        !idgate.log().contains("191212121212"),
        "no personal number in the log"
    );

    // The audit trail: started with BankID's orderRef (the one idgate collected), the hints,
    // the completion.
    let (events, _) = audit_for(&idgate, call_id);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"started"), "{events:?}");
    assert_eq!(kinds.last(), Some(&"completed"), "{events:?}");
    assert!(
        kinds[1..kinds.len() - 1].iter().all(|k| *k == "hint"),
        "{events:?}"
    );
    let order_ref = events[0].detail.as_deref().expect("the orderRef");
    let collect = bank
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/collect"));
    assert!(collect.expect("a collect").body.contains(order_ref));
    assert!(
        !idgate.log().contains(order_ref),
        "the orderRef is not logged"
    );
}

#[test]
fn a_caller_who_hangs_up_during_the_push_gets_the_order_cancelled_at_bankid() {
    let timing = FakeTiming {
        step: Duration::from_millis(20),
        expiry: Duration::from_secs(60),
    };
    let bank = bank(timing);
    bank.fake
        .script(&person("198112289874"), FakeOutcome::Expire);
    let idgate = idgate_for(&bank, 9);
    add_customer(&idgate, "198112289874", "+46701230002");

    let mut caller = call(&idgate, "+46701230002", "1500");
    assert_ok("caller", &mut caller, &idgate);
    let deadline = Instant::now() + Duration::from_secs(10);
    while bank.fake.cancelled() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        bank.fake.cancelled(),
        1,
        "the fake saw /cancel\n{}",
        idgate.log()
    );
}

#[test]
fn not_in_a_call_reaches_the_queue_and_is_logged_as_a_fraud_signal() {
    let bank = bank(FakeTiming::fast());
    bank.fake
        .script(&person("191212121212"), FakeOutcome::NotInCall);
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let idgate = idgate_for(&bank, queue.port);
    add_customer(&idgate, "191212121212", "+46701230003");

    let mut caller = call(&idgate, "+46701230003", "2500");
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.received("INVITE").expect("INVITE");
    assert_eq!(
        header(&invite, "X-Identity-Reason"),
        Some("not-in-call"),
        "{invite}"
    );
    let log = wait_for_log(&idgate, "fraud signal");
    assert!(log.contains("fraud signal"), "{log}");
    let call_id = header(&invite, "X-Identity-Call").expect("call id");
    let (events, security) = audit_for(&idgate, call_id);
    let last = events.last().expect("events");
    assert_eq!(
        (last.kind.as_str(), last.detail.as_deref()),
        ("failed", Some("not-in-call"))
    );
    let kinds: Vec<&str> = security.iter().map(|e| e.kind.as_str()).collect();
    // caller.xml also forges an identity header.
    assert_eq!(kinds, ["spoofed-headers", "not-in-call"]);
}

/// The verification and security events recorded for a call.
fn audit_for(
    idgate: &Idgate,
    call_id: &str,
) -> (
    Vec<idgate::store::VerificationEvent>,
    Vec<idgate::store::SecurityEvent>,
) {
    let id = uuid::Uuid::parse_str(call_id).expect("uuid");
    let url = format!("sqlite://{}", idgate.db_path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = idgate::store::Store::connect(&url).await.expect("store");
        let events = store.verification_events_for(id).await.expect("query");
        let security = store.security_events_for(id).await.expect("query");
        (events, security)
    })
}

/// The evidence rows stored for a call: (method, JSON).
fn evidence_for(idgate: &Idgate, call_id: &str) -> Vec<(String, String)> {
    let id = uuid::Uuid::parse_str(call_id).expect("uuid");
    let url = format!("sqlite://{}", idgate.db_path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = idgate::store::Store::connect(&url).await.expect("store");
        // The evidence is written by a task; give it a bounded moment.
        for _ in 0..100 {
            let rows = store.evidence_for(id).await.expect("query");
            if !rows.is_empty() {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Vec::new()
    })
}
