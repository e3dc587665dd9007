//! Keypad entry: digits, `*`, `#`, attempts and timers.

use super::*;

// ---- keypad entry -----------------------------------------------------------------------------

#[test]
fn keypad_valid_the_first_time() {
    let t0 = Instant::now();
    let mut flow = Flow::new(policy());
    run(&mut flow, t0, anonymous());
    assert_eq!(
        type_keys(&mut flow, secs(t0, 2), "19"),
        [],
        "ignored during the greeting"
    );
    let actions = run(&mut flow, secs(t0, 5), greeting_done());
    assert_eq!(actions, [say(PromptId::EnterNumber)]);
    assert_eq!(flow.state_name(), "collecting_digits");

    // Typed during the prompt: counts.
    assert_eq!(type_keys(&mut flow, secs(t0, 6), "1912"), []);
    run(
        &mut flow,
        secs(t0, 8),
        Input::PromptDone(PromptId::EnterNumber),
    );
    let actions = type_keys(&mut flow, secs(t0, 10), "12121212#");
    let push = Action::StartVerification(Subject::Person(pnr(ALICE)));
    assert_eq!(actions, [push, play(PromptId::PushSent)]);

    let actions = run(&mut flow, secs(t0, 20), complete(BOB));
    assert_eq!(verdict_of(&actions).reason(), Some(Reason::Mismatch));
}

#[test]
fn keypad_invalid_then_valid() {
    let t0 = Instant::now();
    let mut flow = asked_for_number(policy(), t0);
    let actions = type_keys(&mut flow, secs(t0, 10), "191212121213#");
    assert_eq!(actions, [say(PromptId::InvalidNumber)]);
    let actions = run(
        &mut flow,
        secs(t0, 12),
        Input::PromptDone(PromptId::InvalidNumber),
    );
    assert_eq!(actions, [say(PromptId::EnterNumber)]);
    let actions = type_keys(&mut flow, secs(t0, 15), "198112289874#");
    assert_eq!(
        actions[0],
        Action::StartVerification(Subject::Person(pnr(BOB)))
    );
    let actions = run(&mut flow, secs(t0, 30), complete(BOB));
    assert_eq!(actions[0], verified(BOB));
}

#[test]
fn keypad_attempts_exhausted_is_invalid_input() {
    let t0 = Instant::now();
    let mut flow = asked_for_number(policy(), t0);
    for attempt in 1..=3 {
        let actions = type_keys(&mut flow, secs(t0, 10 * attempt), "1912#");
        if attempt < 3 {
            assert_eq!(actions, [say(PromptId::InvalidNumber)]);
            run(
                &mut flow,
                secs(t0, 10 * attempt + 2),
                Input::PromptDone(PromptId::InvalidNumber),
            );
        } else {
            let not_verified = [
                unverified(Reason::InvalidInput, None),
                play(PromptId::NotVerified),
                to_queue(Target::Primary),
            ];
            assert_eq!(actions, not_verified);
        }
    }
}

#[test]
fn star_clears_the_entry() {
    let t0 = Instant::now();
    let mut flow = asked_for_number(policy(), t0);
    let actions = type_keys(&mut flow, secs(t0, 10), "19812*191212121212#");
    assert_eq!(
        actions[0],
        Action::StartVerification(Subject::Person(pnr(ALICE)))
    );
}

#[test]
fn first_digit_timeouts_for_an_anonymous_caller_end_anonymous() {
    let t0 = Instant::now();
    let mut flow = asked_for_number(policy(), t0);
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 9 + 15)));
    assert_eq!(tick(&mut flow, secs(t0, 23)), [], "not yet");
    assert_eq!(tick(&mut flow, secs(t0, 24)), [say(PromptId::EnterNumber)]);
    assert_eq!(
        flow.poll_timeout(),
        Some(secs(t0, 150)),
        "only the overall deadline"
    );
    run(
        &mut flow,
        secs(t0, 28),
        Input::PromptDone(PromptId::EnterNumber),
    );
    assert_eq!(tick(&mut flow, secs(t0, 43)), [say(PromptId::EnterNumber)]);
    run(
        &mut flow,
        secs(t0, 47),
        Input::PromptDone(PromptId::EnterNumber),
    );
    let actions = tick(&mut flow, secs(t0, 62));
    assert_eq!(actions[0], unverified(Reason::Anonymous, None));
}

#[test]
fn silent_unknown_caller_ends_not_found_and_empty_hash_is_an_attempt() {
    let t0 = Instant::now();
    let mut flow = Flow::new(policy());
    run(&mut flow, t0, known());
    run(
        &mut flow,
        secs(t0, 1),
        Input::DirectoryAnswer(Lookup::NotFound),
    );
    assert_eq!(
        run(&mut flow, secs(t0, 5), greeting_done()),
        [say(PromptId::EnterNumber)]
    );
    assert_eq!(
        type_keys(&mut flow, secs(t0, 6), "#"),
        [say(PromptId::EnterNumber)]
    );
    assert_eq!(
        type_keys(&mut flow, secs(t0, 7), "#"),
        [say(PromptId::EnterNumber)]
    );
    let actions = type_keys(&mut flow, secs(t0, 8), "#");
    assert_eq!(actions[0], unverified(Reason::NotFound, None));
}

#[test]
fn inter_digit_timeout_submits_what_was_typed() {
    let t0 = Instant::now();
    let mut flow = asked_for_number(policy(), t0);
    type_keys(&mut flow, secs(t0, 10), ALICE);
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 16)));
    let actions = tick(&mut flow, secs(t0, 16));
    assert_eq!(
        actions[0],
        Action::StartVerification(Subject::Person(pnr(ALICE)))
    );
}

#[test]
fn inter_digit_timeout_with_a_partial_number_is_invalid() {
    let t0 = Instant::now();
    let mut flow = asked_for_number(policy(), t0);
    type_keys(&mut flow, secs(t0, 10), "1912");
    assert_eq!(
        tick(&mut flow, secs(t0, 16)),
        [say(PromptId::InvalidNumber)]
    );
    assert_eq!(
        flow.poll_timeout(),
        Some(secs(t0, 150)),
        "no digit timer during the apology"
    );
}

#[test]
fn no_attempts_means_no_keypad() {
    let t0 = Instant::now();
    let mut flow = Flow::new(Policy {
        keypad_attempts: 0,
        ..policy()
    });
    let actions = run(&mut flow, t0, anonymous());
    assert_eq!(actions[1], unverified(Reason::Anonymous, None));
}

#[test]
fn the_digit_buffer_is_redacted() {
    let mut keypad = asked_for_number(policy(), Instant::now());
    type_keys(&mut keypad, Instant::now(), "19121212");
    let shown = format!("{:?} {:?}", keypad.state, Digits::default());
    assert!(!shown.contains("1912"), "{shown}");
    assert!(!format!("{keypad:?}").contains("1912"));
}

#[test]
fn ten_digits_are_accepted_with_the_century_inferred_from_today() {
    let t0 = Instant::now();
    let today = crate::identity::personal_number::CivilDate {
        year: 2026,
        month: 11,
        day: 23,
    };
    let with_today = Policy {
        today: Some(today),
        ..policy()
    };
    let mut flow = asked_for_number(with_today, t0);
    // 8112289874: born 1981, not 2081.
    let actions = type_keys(&mut flow, secs(t0, 10), "8112289874#");
    assert_eq!(
        actions[0],
        Action::StartVerification(Subject::Person(pnr(BOB)))
    );
}

#[test]
fn ten_digits_are_refused_when_the_flow_has_no_date() {
    let t0 = Instant::now();
    let mut flow = asked_for_number(policy(), t0);
    let actions = type_keys(&mut flow, secs(t0, 10), "8112289874#");
    assert_eq!(actions, [say(PromptId::InvalidNumber)]);
}
