//! Caller hang-up, the queue leg, REFER, and inputs that come late, twice or out of order.

use super::*;

fn abandoned() -> Action {
    Action::Done(Outcome::Abandoned)
}

// ---- caller hang-up in every state ------------------------------------------------------------

#[test]
fn caller_hangs_up_before_a_verdict() {
    let t0 = Instant::now();

    let mut flow = Flow::new(policy());
    assert_eq!(run(&mut flow, t0, Input::CallerHangup), [abandoned()]);

    let mut flow = Flow::new(policy());
    run(&mut flow, t0, known());
    assert_eq!(run(&mut flow, t0, Input::CallerHangup), [abandoned()]);

    let mut flow = Flow::new(policy());
    run(&mut flow, t0, anonymous());
    assert_eq!(flow.state_name(), "greeting");
    assert_eq!(run(&mut flow, t0, Input::CallerHangup), [abandoned()]);

    let mut flow = asked_for_number(policy(), t0);
    type_keys(&mut flow, secs(t0, 10), "1912");
    assert_eq!(run(&mut flow, t0, Input::CallerHangup), [abandoned()]);

    let mut flow = pushed_to_alice(policy(), t0);
    let actions = run(&mut flow, secs(t0, 10), Input::CallerHangup);
    assert_eq!(actions, [Action::CancelVerification, abandoned()]);
    assert!(flow.is_done());
    assert_eq!(flow.poll_timeout(), None);
}

#[test]
fn caller_hangs_up_while_the_queue_rings_or_the_prompt_plays() {
    let t0 = Instant::now();
    let mut flow = ringing(policy(), t0);
    let actions = run(&mut flow, secs(t0, 25), Input::CallerHangup);
    assert_eq!(
        actions,
        [Action::CancelQueueLeg, Action::Done(Outcome::Abandoned)]
    );

    let mut flow = ringing(policy(), t0);
    run(&mut flow, secs(t0, 25), Input::QueueFailed);
    assert_eq!(flow.state_name(), "announcing");
    let actions = run(&mut flow, secs(t0, 26), Input::CallerHangup);
    assert_eq!(actions, [Action::Done(Outcome::Abandoned)]);

    let mut flow = ringing(
        Policy {
            transfer: TransferMode::Refer,
            ..policy()
        },
        t0,
    );
    assert_eq!(flow.state_name(), "referring");
    let actions = run(&mut flow, secs(t0, 25), Input::CallerHangup);
    assert_eq!(actions, [Action::Done(Outcome::Abandoned)]);
}

// ---- the queue leg ----------------------------------------------------------------------------

#[test]
fn queue_failure_without_fallback_announces_and_hangs_up() {
    let t0 = Instant::now();
    let mut flow = ringing(policy(), t0);
    let actions = run(&mut flow, secs(t0, 25), Input::QueueFailed);
    assert_eq!(actions, [say(PromptId::AllBusy)]);
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 40)));
    let actions = run(
        &mut flow,
        secs(t0, 30),
        Input::PromptDone(PromptId::AllBusy),
    );
    let expected = [
        Action::HangUpCaller,
        Action::Done(Outcome::QueueUnavailable),
    ];
    assert_eq!(actions, expected);
}

#[test]
fn the_all_busy_prompt_has_a_safety_timeout() {
    let t0 = Instant::now();
    let mut flow = ringing(policy(), t0);
    run(&mut flow, secs(t0, 25), Input::QueueFailed);
    let actions = tick(&mut flow, secs(t0, 40));
    let expected = [
        Action::HangUpCaller,
        Action::Done(Outcome::QueueUnavailable),
    ];
    assert_eq!(actions, expected);
}

#[test]
fn queue_failure_with_fallback_tries_it_once() {
    let t0 = Instant::now();
    let with_fallback = Policy {
        has_fallback: true,
        ..policy()
    };
    let mut flow = ringing(with_fallback, t0);
    let actions = run(&mut flow, secs(t0, 25), Input::QueueFailed);
    assert_eq!(actions, [to_queue(Target::Fallback)]);
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 85)));
    let actions = run(&mut flow, secs(t0, 30), Input::QueueFailed);
    assert_eq!(actions, [say(PromptId::AllBusy)]);
}

#[test]
fn ring_timeout_cancels_the_leg_and_moves_on() {
    let t0 = Instant::now();
    let with_fallback = Policy {
        has_fallback: true,
        ..policy()
    };
    let mut flow = ringing(with_fallback, t0);
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 80)));
    assert_eq!(tick(&mut flow, secs(t0, 79)), []);
    let actions = tick(&mut flow, secs(t0, 80));
    assert_eq!(
        actions,
        [Action::CancelQueueLeg, to_queue(Target::Fallback)]
    );
    let actions = tick(&mut flow, secs(t0, 140));
    assert_eq!(actions, [Action::CancelQueueLeg, say(PromptId::AllBusy)]);
}

// ---- REFER ------------------------------------------------------------------------------------

fn refer() -> Policy {
    Policy {
        transfer: TransferMode::Refer,
        ..policy()
    }
}

#[test]
fn refer_accepted_hangs_up_the_caller() {
    let t0 = Instant::now();
    let mut flow = pushed_to_alice(refer(), t0);
    let actions = run(&mut flow, secs(t0, 20), complete(ALICE));
    let by_refer = Action::Transfer {
        mode: TransferMode::Refer,
        target: Target::Primary,
    };
    assert_eq!(
        actions,
        [verified(ALICE), play(PromptId::Verified), by_refer]
    );
    let actions = run(&mut flow, secs(t0, 22), Input::ReferAccepted);
    assert_eq!(
        actions,
        [Action::HangUpCaller, Action::Done(Outcome::Referred)]
    );
}

#[test]
fn refer_failed_falls_back_to_b2bua() {
    let t0 = Instant::now();
    let mut flow = ringing(refer(), t0);
    let actions = run(&mut flow, secs(t0, 22), Input::ReferFailed);
    assert_eq!(actions, [to_queue(Target::Primary)]);
    assert_eq!(
        run(&mut flow, secs(t0, 23), Input::ReferAccepted),
        [],
        "late"
    );
    assert_eq!(
        run(&mut flow, secs(t0, 25), Input::QueueAnswered),
        [Action::Bridge]
    );
}

#[test]
fn an_unanswered_refer_falls_back_to_b2bua() {
    let t0 = Instant::now();
    let mut flow = ringing(refer(), t0);
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 80)));
    assert_eq!(tick(&mut flow, secs(t0, 80)), [to_queue(Target::Primary)]);
}

#[test]
fn a_bridged_call_ends_at_its_maximum_length() {
    let t0 = Instant::now();
    let short = Policy {
        max_bridged: Duration::from_secs(3600),
        ..policy()
    };
    let mut flow = ringing(short, t0);
    assert_eq!(
        run(&mut flow, secs(t0, 30), Input::QueueAnswered),
        [Action::Bridge]
    );
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 3630)));
    assert_eq!(tick(&mut flow, secs(t0, 3629)), [], "not yet");
    assert_eq!(
        tick(&mut flow, secs(t0, 3630)),
        [
            Action::CancelQueueLeg,
            Action::HangUpCaller,
            Action::Done(Outcome::Connected)
        ]
    );
}

#[test]
fn a_refer_accepted_after_we_gave_up_on_it_cancels_our_own_queue_leg() {
    let t0 = Instant::now();
    let mut flow = ringing(refer(), t0);
    assert_eq!(tick(&mut flow, secs(t0, 80)), [to_queue(Target::Primary)]);
    // The PBX's NOTIFY 200 comes late: it has transferred the caller; no second agent leg.
    assert_eq!(
        run(&mut flow, secs(t0, 81), Input::ReferAccepted),
        [
            Action::CancelQueueLeg,
            Action::HangUpCaller,
            Action::Done(Outcome::Referred)
        ]
    );
}

// ---- late, duplicate and out-of-order inputs --------------------------------------------------

/// Every kind of input, with the values most likely to confuse a state.
fn every_input() -> Vec<Input> {
    let mut inputs = vec![
        known(),
        anonymous(),
        Input::DirectoryAnswer(Lookup::Found(pnr(BOB))),
        Input::DirectoryAnswer(Lookup::NotFound),
        Input::DirectoryAnswer(Lookup::Failed),
        pending(Hint::CallConfirm),
        complete(BOB),
        failed(Failure::Declined),
        Input::VerificationLost,
        Input::QueueAnswered,
        Input::QueueFailed,
        Input::ReferAccepted,
        Input::ReferFailed,
        Input::QueueHangup,
        Input::Digit('#'),
        Input::Digit('5'),
        Input::Digit('A'),
    ];
    inputs.extend(PromptId::ALL.map(Input::PromptDone));
    inputs
}

#[test]
fn duplicates_change_nothing() {
    let t0 = Instant::now();
    let mut flow = pushed_to_alice(policy(), t0);
    assert_eq!(run(&mut flow, secs(t0, 6), known()), []);
    let found = Input::DirectoryAnswer(Lookup::Found(pnr(BOB)));
    assert_eq!(run(&mut flow, secs(t0, 6), found), []);
    run(&mut flow, secs(t0, 20), complete(ALICE));
    assert_eq!(run(&mut flow, secs(t0, 20), complete(ALICE)), []);
    assert_eq!(run(&mut flow, secs(t0, 21), failed(Failure::Timeout)), []);
    assert_eq!(
        run(&mut flow, secs(t0, 25), Input::QueueAnswered),
        [Action::Bridge]
    );
    assert_eq!(run(&mut flow, secs(t0, 25), Input::QueueAnswered), []);
    assert_eq!(run(&mut flow, secs(t0, 26), Input::QueueFailed), []);
    assert_eq!(tick(&mut flow, secs(t0, 1000)), []);
    run(&mut flow, secs(t0, 90), Input::QueueHangup);
    assert!(flow.is_done());
    for input in every_input() {
        assert_eq!(run(&mut flow, secs(t0, 91), input), []);
    }
    assert_eq!(run(&mut flow, secs(t0, 91), Input::CallerHangup), []);
}

#[test]
fn no_input_in_any_state_panics_or_decides_twice() {
    let t0 = Instant::now();
    let starts: [fn(Instant) -> Flow; 4] = [
        |t0| pushed_to_alice(policy(), t0),
        |t0| asked_for_number(policy(), t0),
        |t0| ringing(refer(), t0),
        |t0| ringing(policy(), t0),
    ];
    for start in starts {
        for first in every_input() {
            let mut flow = start(t0);
            let mut actions = run(&mut flow, secs(t0, 30), first);
            for (i, input) in every_input().into_iter().enumerate() {
                actions.extend(run(&mut flow, secs(t0, 31 + i as u64), input));
            }
            actions.extend(tick(&mut flow, secs(t0, 10_000)));
            let decided = actions
                .iter()
                .filter(|a| matches!(a, Action::Decided(_)))
                .count();
            assert!(decided <= 1, "{actions:?}");
            let done = actions.iter().position(|a| matches!(a, Action::Done(_)));
            if let Some(done) = done {
                assert_eq!(done, actions.len() - 1, "Done is last: {actions:?}");
            }
        }
    }
}

#[test]
fn decided_exactly_once_per_call_that_reaches_a_verdict() {
    let t0 = Instant::now();
    let mut flow = Flow::new(policy());
    let mut actions = run(&mut flow, t0, known());
    actions.extend(run(
        &mut flow,
        t0,
        Input::DirectoryAnswer(Lookup::Found(pnr(ALICE))),
    ));
    actions.extend(run(&mut flow, secs(t0, 20), complete(ALICE)));
    actions.extend(tick(&mut flow, secs(t0, 150)));
    actions.extend(run(&mut flow, secs(t0, 151), Input::VerificationLost));
    actions.extend(run(&mut flow, secs(t0, 152), Input::CallerHangup));
    assert_eq!(
        verdict_of(&actions),
        Verdict::Verified {
            method: METHOD,
            person: person(ALICE),
        }
    );
}
