//! Faults end to end, the caller hanging up at every step: while idgate rings, during the
//! greeting, while the push is pending, during the keypad entry, while the queue leg rings. No
//! push is left running and no call is left. Shared setup: `support::faults`. Every wait is
//! bounded; everything is on loopback.

mod support;

use support::faults::{
    FAST_APPROVE, call, ended_call, pushes_started, route, start, verification_events,
};
use support::{Sipp, assert_ok, eventually, header};

/// The caller CANCELs while idgate rings (before the answer): 487, no call left.
#[test]
fn hang_up_while_idgate_rings() {
    let idgate = start(&route(9, "answer_after_ms = 3000\n"), FAST_APPROVE, "");
    let mut caller = call(&idgate, "caller_cancel.xml", "+46702500001", &[]);
    assert_ok("caller", &mut caller, &idgate);
    let row = ended_call(&idgate, "+46702500001");
    assert_eq!(row["outcome"], "abandoned", "{row}");
    assert!(row["answered_at"].is_null(), "never answered: {row}");
}

/// An anonymous caller on a keypad route hangs up during the greeting: no push, no call left.
#[test]
fn hang_up_during_the_greeting() {
    let keypad_only = "directory = false\nphone_push = false\n";
    let idgate = start(&route(9, keypad_only), FAST_APPROVE, "");
    let mut caller = call(&idgate, "caller.xml", "anonymous", &["-d", "800"]);
    assert_ok("caller", &mut caller, &idgate);
    let row = ended_call(&idgate, "anonymous");
    assert_eq!(row["outcome"], "abandoned", "{row}");
    let events = verification_events(&idgate, row["id"].as_str().expect("id"));
    assert_eq!(events, [], "no push was sent");
    assert_eq!(pushes_started(&idgate), 0);
}

/// The caller hangs up while the push is pending: the order is cancelled (audit trail), and
/// the queue is never called.
#[test]
fn hang_up_while_the_push_is_pending() {
    let slow = "default = \"approve\"\ndelay_ms = 20000\nhint_ms = 100\n";
    let dir = tempfile::tempdir().expect("dir");
    let queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let idgate = start(&route(queue.port, "keypad = false\n"), slow, "");
    let mut caller = call(&idgate, "caller.xml", "+46702500002", &["-d", "1500"]);
    assert_ok("caller", &mut caller, &idgate);
    let row = ended_call(&idgate, "+46702500002");
    assert_eq!(row["outcome"], "abandoned", "{row}");
    let events = verification_events(&idgate, row["id"].as_str().expect("id"));
    let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"started"), "{events:?}");
    assert_eq!(kinds.last(), Some(&"cancelled"), "{events:?}");
    assert!(!kinds.contains(&"completed"), "{events:?}");
    assert!(
        queue.received("INVITE").is_none(),
        "the queue was never called"
    );
}

/// An anonymous caller hangs up in the middle of typing a personal number: no push.
#[test]
fn hang_up_during_the_keypad_entry() {
    let keypad_only = "directory = false\nphone_push = false\n";
    let idgate = start(&route(9, keypad_only), FAST_APPROVE, "");
    let mut caller = call(&idgate, "caller_keypad_partial.xml", "anonymous", &[]);
    assert_ok("caller", &mut caller, &idgate);
    let row = ended_call(&idgate, "anonymous");
    assert_eq!(row["outcome"], "abandoned", "{row}");
    assert!(
        idgate
            .log()
            .lines()
            .any(|l| l.contains("state=\"collecting_digits\"")),
        "the entry had begun\n{}",
        idgate.log()
    );
    let events = verification_events(&idgate, row["id"].as_str().expect("id"));
    assert_eq!(events, [], "no push was sent");
}

/// The caller hangs up while the queue leg rings: idgate CANCELs the queue INVITE (the queue
/// scenario succeeds only on a CANCEL), and no call is left.
#[test]
fn hang_up_while_the_queue_leg_rings() {
    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue_rings.xml", &[], 1);
    let idgate = start(&route(queue.port, "keypad = false\n"), FAST_APPROVE, "");
    let mut caller = call(&idgate, "caller.xml", "+46702500003", &["-d", "5000"]);
    eventually("the queue leg rings", &idgate, || {
        queue.received("INVITE").is_some()
    });
    assert_ok("caller", &mut caller, &idgate);
    assert_ok("queue (cancelled)", &mut queue, &idgate);
    let row = ended_call(&idgate, "+46702500003");
    assert_eq!(row["outcome"], "abandoned", "{row}");
    let invite = queue.received("INVITE").expect("INVITE");
    assert_eq!(header(&invite, "X-Identity-Status"), Some("verified"));
}
