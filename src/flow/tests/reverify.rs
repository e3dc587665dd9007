//! "Verify again": an agent asks for a new eID order while talking to the caller.

use super::*;

/// Alice verified and bridged to an agent at `t0 + 30 s`.
fn bridged_with_alice(t0: Instant) -> Flow {
    let mut flow = ringing(policy(), t0);
    run(&mut flow, secs(t0, 30), Input::QueueAnswered);
    assert_eq!(flow.state_name(), "bridged");
    flow
}

/// An unknown caller without keypad entry, unverified `not-found`, bridged at `t0 + 10 s`.
fn bridged_unknown(t0: Instant) -> Flow {
    let mut flow = Flow::new(no_keypad());
    run(&mut flow, t0, known());
    run(
        &mut flow,
        secs(t0, 1),
        Input::DirectoryAnswer(Lookup::NotFound),
    );
    run(&mut flow, secs(t0, 10), Input::QueueAnswered);
    assert_eq!(flow.state_name(), "bridged");
    flow
}

fn reverified(verdict: Verdict) -> Action {
    Action::Reverified(verdict)
}

fn start_for(digits: &str) -> Action {
    Action::StartVerification(Subject::Person(pnr(digits)))
}

#[test]
fn the_known_person_is_pushed_again_and_the_result_reported_once() {
    let t0 = Instant::now();
    let mut flow = bridged_with_alice(t0);
    assert!(flow.can_reverify());

    assert_eq!(flow.reverify(secs(t0, 60), None), Ok(()));
    assert_eq!(drain(&mut flow), [start_for(ALICE)]);
    assert!(!flow.can_reverify());

    // Hints are not played: the caller is talking to the agent.
    assert_eq!(run(&mut flow, secs(t0, 61), pending(Hint::CallConfirm)), []);
    let actions = run(&mut flow, secs(t0, 62), complete(ALICE));
    assert_eq!(
        actions,
        [reverified(Verdict::Verified {
            method: METHOD,
            person: person(ALICE),
        })]
    );
    assert_eq!(flow.state_name(), "bridged");
    assert!(flow.can_reverify());
    // A late duplicate changes nothing.
    assert_eq!(run(&mut flow, secs(t0, 63), complete(ALICE)), []);
}

#[test]
fn the_agent_names_the_person_when_nobody_is_known() {
    let t0 = Instant::now();
    let mut flow = bridged_unknown(t0);
    assert_eq!(
        flow.reverify(secs(t0, 20), None),
        Err(ReverifyRefused::NoPerson)
    );
    assert_eq!(drain(&mut flow), []);

    assert_eq!(flow.reverify(secs(t0, 20), Some(pnr(BOB))), Ok(()));
    assert_eq!(drain(&mut flow), [start_for(BOB)]);
    let actions = run(&mut flow, secs(t0, 25), complete(ALICE));
    assert_eq!(
        actions,
        [reverified(Verdict::Unverified {
            reason: Reason::Mismatch,
            method: Some(METHOD),
        })],
        "someone else confirmed: that is a mismatch, never verified"
    );
}

#[test]
fn one_at_a_time_and_only_while_bridged() {
    let t0 = Instant::now();
    let mut flow = pushed_to_alice(policy(), t0);
    assert!(!flow.can_reverify());
    assert_eq!(
        flow.reverify(secs(t0, 6), None),
        Err(ReverifyRefused::NotConnected)
    );
    assert_eq!(drain(&mut flow), []);

    let mut flow = bridged_with_alice(t0);
    assert_eq!(flow.reverify(secs(t0, 40), None), Ok(()));
    drain(&mut flow);
    assert_eq!(
        flow.reverify(secs(t0, 41), Some(pnr(BOB))),
        Err(ReverifyRefused::AlreadyRunning)
    );
    assert_eq!(drain(&mut flow), []);

    let mut flow = ringing(
        Policy {
            transfer: TransferMode::Refer,
            ..policy()
        },
        t0,
    );
    assert_eq!(
        flow.reverify(secs(t0, 21), None),
        Err(ReverifyRefused::NotConnected)
    );
}

#[test]
fn failures_and_the_deadline_are_unverified_with_their_reason() {
    let t0 = Instant::now();
    let mut flow = bridged_with_alice(t0);
    flow.reverify(secs(t0, 40), None).unwrap();
    drain(&mut flow);
    let actions = run(&mut flow, secs(t0, 45), failed(Failure::NotInCall));
    assert_eq!(
        actions,
        [reverified(Verdict::Unverified {
            reason: Reason::NotInCall,
            method: Some(METHOD),
        })]
    );

    flow.reverify(secs(t0, 50), None).unwrap();
    drain(&mut flow);
    let actions = run(&mut flow, secs(t0, 51), Input::VerificationLost);
    assert_eq!(
        actions,
        [reverified(Verdict::Unverified {
            reason: Reason::ProviderError,
            method: Some(METHOD),
        })]
    );

    flow.reverify(secs(t0, 60), None).unwrap();
    drain(&mut flow);
    let due = secs(t0, 60) + policy().identify_deadline;
    assert_eq!(flow.poll_timeout(), Some(due));
    assert_eq!(tick(&mut flow, due - Duration::from_millis(1)), []);
    assert_eq!(
        tick(&mut flow, due),
        [
            Action::CancelVerification,
            reverified(Verdict::Unverified {
                reason: Reason::Timeout,
                method: Some(METHOD),
            })
        ]
    );
    assert_eq!(flow.state_name(), "bridged");
    assert_eq!(
        flow.poll_timeout(),
        secs(t0, 30).checked_add(policy().max_bridged),
        "back to the bridged call's own deadline"
    );
}

#[test]
fn a_hang_up_cancels_the_running_order() {
    let t0 = Instant::now();
    let mut flow = bridged_with_alice(t0);
    flow.reverify(secs(t0, 40), None).unwrap();
    drain(&mut flow);
    let actions = run(&mut flow, secs(t0, 41), Input::QueueHangup);
    assert_eq!(
        actions,
        [
            Action::CancelVerification,
            Action::HangUpCaller,
            Action::Done(Outcome::Connected)
        ]
    );

    let mut flow = bridged_with_alice(t0);
    flow.reverify(secs(t0, 40), None).unwrap();
    drain(&mut flow);
    let actions = run(&mut flow, secs(t0, 41), Input::CallerHangup);
    assert_eq!(
        actions,
        [
            Action::CancelVerification,
            Action::CancelQueueLeg,
            Action::Done(Outcome::Connected)
        ]
    );
}
