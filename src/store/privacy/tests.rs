//! GDPR export and erasure, and the retention purge, on both backends. One scenario: Tolvan
//! calls from his own number and from a friend's phone; someone at Tolvan's number types
//! Alice's personal number; Alice calls herself; an anonymous caller is not identified.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::config::Transfer;
use crate::identity::{CallerId, E164, Method, PersonName, PersonalNumber, Reason, Verdict};
use crate::store::retention::PurgeReport;
use crate::store::{
    EraseReport, NewCall, NewCustomer, PushDecision, PushLimits, PushTarget, SecurityEvent,
    SecurityEventKind, Store, VerificationEvent, VerificationEventKind,
};

const TOLVAN: &str = "191212121212";
const ALICE: &str = "198001019804";
const TOLVAN_MOBILE: &str = "+46701234567";
const TOLVAN_HOME: &str = "+46812345678";
const ALICE_MOBILE: &str = "+46709876543";
const FRIEND: &str = "+46700000001";
const ORDER_REF: &str = "131daac9-16c6-4618-beb0-365768f37288";

/// Day `d` of the scenario.
fn day(d: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_689_600 + d * 86_400)
}

fn number(raw: &str) -> E164 {
    E164::parse(raw, "SE").unwrap()
}

fn person(raw: &str) -> PersonalNumber {
    PersonalNumber::parse(raw).unwrap()
}

/// The calls of the scenario.
struct Scenario {
    /// Day 0, from Tolvan's mobile, pushed to Tolvan: evidence, events, a spoofing attempt, a
    /// re-verification.
    own: Uuid,
    /// Day 1, from a friend's phone, Tolvan typed his number.
    friend: Uuid,
    /// Day 100, from Tolvan's mobile, someone typed Alice's number.
    typed_alice: Uuid,
    /// Day 100, Alice from her own mobile.
    alice: Uuid,
    /// Day 2, anonymous, not identified.
    anonymous: Uuid,
    /// Tolvan's customer id.
    tolvan: Uuid,
}

async fn call(store: &Store, caller: CallerId, at: SystemTime) -> Uuid {
    let id = Uuid::new_v4();
    let call = NewCall {
        id,
        sip_call_id: format!("{id}@pbx.example.com"),
        caller,
        called: "5000".to_owned(),
        route: Some("support".to_owned()),
        transfer_mode: Some(Transfer::B2bua),
        started_at: at,
    };
    store.insert_call(&call).await.unwrap();
    let verdict = Verdict::Unverified {
        reason: Reason::Timeout,
        method: Some(Method::Bankid),
    };
    store.record_verdict(id, &verdict, at).await.unwrap();
    store.finish_call(id, "connected", at).await.unwrap();
    id
}

/// A push from `caller` to `to`, completed, with evidence naming `to` (as BankID's does, in
/// its signature).
async fn push(store: &Store, call: Uuid, caller: &str, to: &str, at: SystemTime) {
    let limits = PushLimits {
        per_caller: 100,
        per_person: 100,
        window: Duration::from_secs(600),
        cooldown: Duration::from_secs(300),
        order_lifetime: Duration::from_secs(180),
    };
    let (caller, to) = (number(caller), person(to));
    let target = PushTarget {
        caller: Some(&caller),
        person: Some(&to),
    };
    let PushDecision::Allowed(attempt) = store.begin_push(call, target, &limits, at).await.unwrap()
    else {
        panic!("push refused");
    };
    store.end_push(attempt, "completed", at).await.unwrap();
    let data = format!(r#"{{"signature":"evidence-of-{}"}}"#, &to.as_digits()[..8]);
    store
        .record_evidence(call, Method::Bankid, &data, at)
        .await
        .unwrap();
}

async fn scenario(store: &Store) -> Scenario {
    let tolvan = store
        .insert_customer(&NewCustomer {
            personal_number: person(TOLVAN),
            name: PersonName::new("Tolvan Tolvansson".to_owned()),
            numbers: vec![number(TOLVAN_MOBILE), number(TOLVAN_HOME)],
        })
        .await
        .unwrap();
    store
        .insert_customer(&NewCustomer {
            personal_number: person(ALICE),
            name: PersonName::new("Alice".to_owned()),
            numbers: vec![number(ALICE_MOBILE)],
        })
        .await
        .unwrap();
    let own = call(store, CallerId::Number(number(TOLVAN_MOBILE)), day(0)).await;
    push(store, own, TOLVAN_MOBILE, TOLVAN, day(0)).await;
    for (kind, detail) in [
        (VerificationEventKind::Started, Some(ORDER_REF)),
        (VerificationEventKind::Hint, Some("call-confirm")),
        (VerificationEventKind::Completed, None),
    ] {
        let event = VerificationEvent {
            call_id: own,
            at: day(0),
            method: Method::Bankid,
            kind,
            detail: detail.map(str::to_owned),
        };
        store.record_verification_event(&event).await.unwrap();
    }
    let spoofed = SecurityEvent {
        at: day(0),
        call_id: Some(own),
        kind: SecurityEventKind::SpoofedHeaders,
        detail: Some("X-Identity-Status".to_owned()),
        source: Some("192.0.2.10".parse().unwrap()),
    };
    store.record_security_event(&spoofed).await.unwrap();
    store
        .begin_reverification(own, "agent1", day(0))
        .await
        .unwrap();
    let friend = call(store, CallerId::Number(number(FRIEND)), day(1)).await;
    push(store, friend, FRIEND, TOLVAN, day(1)).await;
    let typed_alice = call(store, CallerId::Number(number(TOLVAN_MOBILE)), day(100)).await;
    push(store, typed_alice, TOLVAN_MOBILE, ALICE, day(100)).await;
    let alice = call(store, CallerId::Number(number(ALICE_MOBILE)), day(100)).await;
    push(store, alice, ALICE_MOBILE, ALICE, day(100)).await;
    let anonymous = call(store, CallerId::Anonymous, day(2)).await;
    Scenario {
        own,
        friend,
        typed_alice,
        alice,
        anonymous,
        tolvan,
    }
}

/// Every text column of every table but `customers`, as one string.
async fn everything_but_the_directory(store: &Store) -> String {
    let queries = [
        "SELECT id || sip_call_id || caller || called FROM calls",
        "SELECT id || call_id || COALESCE(caller, '') || COALESCE(person, '') || \
         COALESCE(outcome, '') FROM push_attempts",
        "SELECT call_id || method || data FROM verification_evidence",
        "SELECT call_id || method || kind || COALESCE(detail, '') FROM verification_events",
        "SELECT kind || COALESCE(detail, '') || COALESCE(source, '') FROM security_events",
        "SELECT actor || action || target FROM admin_actions",
        "SELECT call_id || requested_by FROM reverifications",
    ];
    let mut all = String::new();
    for sql in queries {
        let rows: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        all.push_str(&rows.join("\n"));
    }
    all
}

async fn an_export_holds_everything_about_the_person_and_nothing_about_others(store: Store) {
    let s = scenario(&store).await;
    let export = store
        .export_person(&person(TOLVAN), "cli", day(200))
        .await
        .unwrap();
    let json = serde_json::to_value(&export).unwrap();
    let customer = &json["customer"];
    assert_eq!(customer["id"], s.tolvan.to_string());
    assert_eq!(customer["personal_number"], TOLVAN);
    assert_eq!(customer["name"], "Tolvan Tolvansson");
    assert_eq!(
        customer["numbers"],
        serde_json::json!([TOLVAN_MOBILE, TOLVAN_HOME])
    );

    let attempts: Vec<(String, String)> = export
        .push_attempts
        .iter()
        .map(|a| (a.call_id.clone(), a.matched_by.to_owned()))
        .collect();
    assert_eq!(
        attempts,
        [
            (s.own.to_string(), "personal-number".to_owned()),
            (s.friend.to_string(), "personal-number".to_owned()),
            (s.typed_alice.to_string(), "phone-number".to_owned()),
        ]
    );
    let calls: Vec<&str> = export.calls.iter().map(|c| c.id.as_str()).collect();
    let expected = [s.own, s.friend, s.typed_alice].map(|id| id.to_string());
    assert_eq!(calls, expected);
    let own = &json["calls"][0];
    assert_eq!(own["call"]["caller"], TOLVAN_MOBILE);
    assert_eq!(own["call"]["reason"], "timeout");
    assert_eq!(own["verification_events"][0]["detail"], ORDER_REF);
    assert_eq!(own["security_events"][0]["source"], "192.0.2.10");
    assert_eq!(own["reverifications"][0]["requested_by"], "agent1");
    assert_eq!(json["calls"][1]["call"]["caller"], FRIEND);

    // Evidence only of the orders addressed to Tolvan; Alice's (call typed_alice) is hers.
    let evidence: Vec<&str> = export.evidence.iter().map(|e| e.call_id.as_str()).collect();
    assert_eq!(evidence, [s.own.to_string(), s.friend.to_string()]);
    let text = json.to_string();
    assert!(!text.contains("evidence-of-19800101"), "{text}");
    assert!(
        !text.contains(ALICE) && !text.contains(ALICE_MOBILE),
        "{text}"
    );
    assert!(!text.contains(&s.alice.to_string()) && !text.contains(&s.anonymous.to_string()));
    assert!(!format!("{export:?}").contains(TOLVAN));

    // The export is recorded, without the number; no table but the directory holds it.
    let actions = store.admin_actions_since(day(200)).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (actions[0].actor.as_str(), actions[0].action.as_str()),
        ("cli", "privacy-export")
    );
    assert_eq!(
        actions[0].target,
        format!("customer {}: 3 call(s)", s.tolvan)
    );
    let dump = everything_but_the_directory(&store).await;
    assert!(!dump.contains(TOLVAN) && !dump.contains(ALICE), "{dump}");
}

async fn an_unknown_person_exports_empty(store: Store) {
    scenario(&store).await;
    let export = store
        .export_person(&person("200001012384"), "api-token", day(200))
        .await
        .unwrap();
    assert!(export.customer.is_none());
    assert!(export.push_attempts.is_empty() && export.calls.is_empty());
    assert!(export.evidence.is_empty());
    let target = &store.admin_actions_since(day(200)).await.unwrap()[0].target;
    assert_eq!(target, "no directory entry: 0 call(s)");
}

async fn erasing_removes_the_person_and_keeps_aggregates_and_others(store: Store) {
    let s = scenario(&store).await;
    let tolvan = person(TOLVAN);
    let preview = store.preview_erase(&tolvan).await.unwrap();
    let expected = EraseReport {
        customer: Some(s.tolvan),
        numbers_removed: 2,
        attempts_deleted: 2,
        attempts_unlinked: 1,
        evidence_deleted: 2,
        calls_redacted: 3,
        order_refs_removed: 1,
        sources_removed: 1,
    };
    assert_eq!(preview, expected);
    // A preview changes nothing.
    assert!(
        store
            .find_customer_by_number(&number(TOLVAN_MOBILE))
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.admin_actions_since(day(0)).await.unwrap().is_empty());

    let report = store
        .erase_person(&tolvan, "api-token", day(200))
        .await
        .unwrap();
    assert_eq!(report, expected);
    assert!(
        store
            .find_customer_by_number(&number(TOLVAN_MOBILE))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_customer_by_number(&number(ALICE_MOBILE))
            .await
            .unwrap()
            .is_some()
    );
    for id in [s.own, s.friend, s.typed_alice] {
        let row = store.get_call(id).await.unwrap().unwrap();
        assert_eq!(
            (row.caller.as_str(), row.sip_call_id.as_str()),
            ("redacted", "redacted")
        );
        assert_eq!(
            (row.reason, row.method),
            (Some(Reason::Timeout), Some(Method::Bankid))
        );
        assert!(row.ended_at.is_some());
    }
    assert_eq!(
        store.get_call(s.alice).await.unwrap().unwrap().caller,
        ALICE_MOBILE
    );
    assert!(store.evidence_for(s.own).await.unwrap().is_empty());
    assert_eq!(
        store.evidence_for(s.typed_alice).await.unwrap().len(),
        1,
        "Alice's evidence"
    );
    let events = store.verification_events_for(s.own).await.unwrap();
    assert_eq!(events.len(), 3, "the steps are kept");
    assert!(
        events
            .iter()
            .all(|e| e.detail.as_deref() != Some(ORDER_REF))
    );
    assert_eq!(store.reverifications_for(s.own).await.unwrap().len(), 1);

    let action = &store.admin_actions_since(day(200)).await.unwrap()[0];
    assert_eq!(action.action, "privacy-erase");
    assert_eq!(action.target, expected.to_string());
    assert!(!action.target.contains(TOLVAN));
    let after = store.export_person(&tolvan, "cli", day(201)).await.unwrap();
    assert!(after.customer.is_none() && after.push_attempts.is_empty());
    assert!(after.calls.is_empty() && after.evidence.is_empty());
    let again = store.erase_person(&tolvan, "cli", day(201)).await.unwrap();
    assert_eq!(again, EraseReport::default());
    // Alice's export still finds her own call and the one where her number was typed.
    let alice = store
        .export_person(&person(ALICE), "cli", day(201))
        .await
        .unwrap();
    assert_eq!(alice.push_attempts.len(), 2);
    assert_eq!(alice.evidence.len(), 2);
}

async fn a_purge_removes_old_personal_data_and_keeps_the_rest(store: Store) {
    let s = scenario(&store).await;
    let cutoff = day(50);
    let expected = PurgeReport {
        calls_redacted: 3,
        evidence_deleted: 2,
        attempts_unlinked: 2,
        order_refs_removed: 1,
        sources_removed: 1,
    };
    assert_eq!(store.preview_purge(cutoff).await.unwrap(), expected);
    assert_eq!(store.purge_personal_data(cutoff).await.unwrap(), expected);
    assert!(store.purge_personal_data(cutoff).await.unwrap().is_empty());

    let own = store.get_call(s.own).await.unwrap().unwrap();
    assert_eq!(
        (own.caller.as_str(), own.sip_call_id.as_str()),
        ("redacted", "redacted")
    );
    assert_eq!(
        (own.reason, own.started_at),
        (Some(Reason::Timeout), day(0))
    );
    let anonymous = store.get_call(s.anonymous).await.unwrap().unwrap();
    assert_eq!(
        anonymous.caller, "anonymous",
        "not personal data: kept for statistics"
    );
    let recent = store.get_call(s.typed_alice).await.unwrap().unwrap();
    assert_eq!(recent.caller, TOLVAN_MOBILE);
    assert!(store.evidence_for(s.own).await.unwrap().is_empty());
    assert_eq!(store.evidence_for(s.alice).await.unwrap().len(), 1);
    let events = store.verification_events_for(s.own).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].detail, None);
    assert_eq!(events[1].detail.as_deref(), Some("call-confirm"));
    let security = store.security_events_for(s.own).await.unwrap();
    assert_eq!(
        (security[0].source, security[0].detail.as_deref()),
        (None, Some("X-Identity-Status"))
    );
    // The old attempts are counted still, but no longer linked to a number or a person.
    let unlinked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM push_attempts WHERE caller IS NULL AND person IS NULL",
    )
    .fetch_one(&store.pool)
    .await
    .unwrap();
    assert_eq!(unlinked, 2);
    // Tolvan's export no longer finds the purged calls through their attempts.
    let export = store
        .export_person(&person(TOLVAN), "cli", day(200))
        .await
        .unwrap();
    let calls: Vec<&str> = export.calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(calls, [s.typed_alice.to_string()]);
}

async fn the_retention_task_purges_at_start_and_stops_when_cancelled(store: Store) {
    let old = SystemTime::now() - Duration::from_secs(100 * 86_400);
    let id = call(&store, CallerId::Number(number(TOLVAN_MOBILE)), old).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let keep = Some(Duration::from_secs(90 * 86_400));
    let task = tokio::spawn(crate::store::retention::purge_periodically(
        store.clone(),
        keep,
        cancel.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The purge is recorded once it is done.
    let actions = loop {
        let actions = store.admin_actions_since(UNIX_EPOCH).await.unwrap();
        if !actions.is_empty() {
            break actions;
        }
        assert!(tokio::time::Instant::now() < deadline, "no purge at start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the task stops")
        .unwrap();
    assert_eq!(
        store.get_call(id).await.unwrap().unwrap().caller,
        "redacted"
    );
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (actions[0].actor.as_str(), actions[0].action.as_str()),
        ("retention", "privacy-purge")
    );
    // retention_days = 0: nothing is purged, the task ends at once.
    let kept = call(&store, CallerId::Number(number(TOLVAN_HOME)), old).await;
    let forever = crate::store::retention::purge_periodically(store.clone(), None, cancel);
    tokio::time::timeout(Duration::from_secs(10), forever)
        .await
        .unwrap();
    assert_eq!(
        store.get_call(kept).await.unwrap().unwrap().caller,
        TOLVAN_HOME
    );
}

crate::store::testdb::store_tests!(
    an_export_holds_everything_about_the_person_and_nothing_about_others,
    an_unknown_person_exports_empty,
    erasing_removes_the_person_and_keeps_aggregates_and_others,
    a_purge_removes_old_personal_data_and_keeps_the_rest,
    the_retention_task_purges_at_start_and_stops_when_cancelled,
);
