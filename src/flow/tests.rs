//! Flow tests: each reads like the call it plays, with no runtime and no sleeping.

use std::time::{Duration, Instant};

use super::keypad::Digits;
use super::*;
use crate::identity::{CallerId, E164, Method, PersonalNumber, Reason, Verdict, VerifiedPerson};
use crate::media::PromptId;
use crate::verify::{Failure, Hint, Subject, VerifyUpdate};

mod handoff;
mod keypad_entry;
mod reverify;

// ---- harness ----------------------------------------------------------------------------------

/// Feeds one input and drains the actions.
fn run(flow: &mut Flow, now: Instant, input: Input) -> Vec<Action> {
    flow.handle(now, input);
    drain(flow)
}

/// Fires the timers due at `now` and drains the actions.
fn tick(flow: &mut Flow, now: Instant) -> Vec<Action> {
    flow.handle_timeout(now);
    drain(flow)
}

fn drain(flow: &mut Flow) -> Vec<Action> {
    std::iter::from_fn(|| flow.poll_action()).collect()
}

/// Types each key of `keys` at `now`.
fn type_keys(flow: &mut Flow, now: Instant, keys: &str) -> Vec<Action> {
    keys.chars()
        .flat_map(|key| run(flow, now, Input::Digit(key)))
        .collect()
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

const ALICE: &str = "191212121212";
const BOB: &str = "198112289874";
const METHOD: Method = Method::Simulator;

fn pnr(digits: &str) -> PersonalNumber {
    PersonalNumber::parse(digits).expect("a valid test personal number")
}

fn person(digits: &str) -> VerifiedPerson {
    VerifiedPerson {
        personal_number: pnr(digits),
        name: None,
    }
}

fn number() -> E164 {
    E164::parse("+46701234567", "SE").expect("a valid test number")
}

fn known() -> Input {
    Input::Answered {
        caller: CallerId::Number(number()),
    }
}

fn anonymous() -> Input {
    Input::Answered {
        caller: CallerId::Anonymous,
    }
}

fn play(prompt: PromptId) -> Action {
    Action::Play {
        prompt,
        then_hold: true,
    }
}

fn say(prompt: PromptId) -> Action {
    Action::Play {
        prompt,
        then_hold: false,
    }
}

fn greeting_done() -> Input {
    Input::PromptDone(PromptId::Greeting)
}

fn complete(digits: &str) -> Input {
    Input::Verification(VerifyUpdate::Complete(person(digits)))
}

fn failed(failure: Failure) -> Input {
    Input::Verification(VerifyUpdate::Failed(failure))
}

fn pending(hint: Hint) -> Input {
    Input::Verification(VerifyUpdate::Pending(hint))
}

fn verified(digits: &str) -> Action {
    Action::Decided(Verdict::Verified {
        method: METHOD,
        person: person(digits),
    })
}

fn unverified(reason: Reason, method: Option<Method>) -> Action {
    Action::Decided(Verdict::Unverified { reason, method })
}

fn to_queue(target: Target) -> Action {
    Action::Transfer {
        mode: TransferMode::B2bua,
        target,
    }
}

fn policy() -> Policy {
    Policy {
        method: METHOD,
        ..Policy::default()
    }
}

fn no_keypad() -> Policy {
    Policy {
        keypad: false,
        ..policy()
    }
}

/// The verdict a finished identification emitted (panics in the test if none or several).
fn verdict_of(actions: &[Action]) -> Verdict {
    let verdicts: Vec<&Verdict> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Decided(verdict) => Some(verdict),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 1, "exactly one verdict in {actions:?}");
    verdicts[0].clone()
}

/// A known caller whose number the directory maps to Alice; the push is out, greeting over.
fn pushed_to_alice(policy: Policy, t0: Instant) -> Flow {
    let mut flow = Flow::new(policy);
    run(&mut flow, t0, known());
    run(
        &mut flow,
        secs(t0, 1),
        Input::DirectoryAnswer(Lookup::Found(pnr(ALICE))),
    );
    run(&mut flow, secs(t0, 5), greeting_done());
    flow
}

/// Alice verified; the primary queue target rings since `t0 + 20 s`.
fn ringing(policy: Policy, t0: Instant) -> Flow {
    let mut flow = pushed_to_alice(policy, t0);
    run(&mut flow, secs(t0, 20), complete(ALICE));
    flow
}

/// An anonymous caller, asked for the number at `t0 + 5 s` (prompt ends at `t0 + 9 s`).
fn asked_for_number(policy: Policy, t0: Instant) -> Flow {
    let mut flow = Flow::new(policy);
    run(&mut flow, t0, anonymous());
    run(&mut flow, secs(t0, 5), greeting_done());
    run(
        &mut flow,
        secs(t0, 9),
        Input::PromptDone(PromptId::EnterNumber),
    );
    flow
}

// ---- the happy path ---------------------------------------------------------------------------

#[test]
fn directory_push_call_confirm_complete_transfer_bridge_bye() {
    let t0 = Instant::now();
    let mut flow = Flow::new(policy());
    assert_eq!(flow.state_name(), "awaiting_answer");

    let actions = run(&mut flow, t0, known());
    assert_eq!(
        actions,
        [play(PromptId::Greeting), Action::LookupCustomer(number())]
    );
    assert_eq!(flow.state_name(), "awaiting_directory");

    let found = Input::DirectoryAnswer(Lookup::Found(pnr(ALICE)));
    let actions = run(&mut flow, secs(t0, 1), found);
    assert_eq!(
        actions,
        [Action::StartVerification(Subject::Person(pnr(ALICE)))]
    );
    assert_eq!(flow.state_name(), "awaiting_verification");

    assert_eq!(
        run(&mut flow, secs(t0, 5), greeting_done()),
        [play(PromptId::PushSent)]
    );
    assert_eq!(run(&mut flow, secs(t0, 8), pending(Hint::Started)), []);
    let actions = run(&mut flow, secs(t0, 9), pending(Hint::CallConfirm));
    assert_eq!(actions, [play(PromptId::ConfirmInApp)]);
    assert_eq!(run(&mut flow, secs(t0, 12), pending(Hint::Signing)), []);

    let actions = run(&mut flow, secs(t0, 20), complete(ALICE));
    let handoff = [
        verified(ALICE),
        play(PromptId::Verified),
        to_queue(Target::Primary),
    ];
    assert_eq!(actions, handoff);
    assert_eq!(flow.state_name(), "ringing");

    assert_eq!(
        run(&mut flow, secs(t0, 30), Input::QueueAnswered),
        [Action::Bridge]
    );
    assert_eq!(flow.state_name(), "bridged");
    assert_eq!(
        flow.poll_timeout(),
        Some(secs(t0, 30 + 4 * 3600)),
        "the maximum call length"
    );

    let actions = run(&mut flow, secs(t0, 300), Input::CallerHangup);
    assert_eq!(
        actions,
        [Action::CancelQueueLeg, Action::Done(Outcome::Connected)]
    );
    assert!(flow.is_done());
}

#[test]
fn agent_hangs_up_first() {
    let t0 = Instant::now();
    let mut flow = ringing(policy(), t0);
    run(&mut flow, secs(t0, 30), Input::QueueAnswered);
    let actions = run(&mut flow, secs(t0, 300), Input::QueueHangup);
    assert_eq!(
        actions,
        [Action::HangUpCaller, Action::Done(Outcome::Connected)]
    );
}

// ---- the greeting is never cut off ------------------------------------------------------------

#[test]
fn prompts_wait_for_the_greeting_and_the_latest_wins() {
    let t0 = Instant::now();
    let mut flow = Flow::new(policy());
    run(&mut flow, t0, known());
    run(
        &mut flow,
        secs(t0, 1),
        Input::DirectoryAnswer(Lookup::Found(pnr(ALICE))),
    );
    assert_eq!(run(&mut flow, secs(t0, 2), pending(Hint::CallConfirm)), []);
    let actions = run(&mut flow, secs(t0, 5), greeting_done());
    assert_eq!(actions, [play(PromptId::ConfirmInApp)]);
    assert_eq!(run(&mut flow, secs(t0, 6), greeting_done()), []);
    assert_eq!(run(&mut flow, secs(t0, 7), pending(Hint::CallConfirm)), []);
}

#[test]
fn no_identification_hands_over_skipped_without_a_not_verified_prompt() {
    let t0 = Instant::now();
    let mut flow = Flow::new(Policy {
        identify: false,
        ..policy()
    });
    let actions = run(&mut flow, t0, known());
    let skipped = unverified(Reason::Skipped, None);
    assert_eq!(
        actions,
        [play(PromptId::Greeting), skipped, to_queue(Target::Primary)]
    );
    // The greeting ends into hold music; "we could not verify you" would be wrong here.
    let actions = run(&mut flow, secs(t0, 5), greeting_done());
    assert_eq!(actions, []);
}

#[test]
fn queue_answering_during_the_greeting_bridges_and_drops_the_queued_prompt() {
    let t0 = Instant::now();
    let mut flow = Flow::new(Policy {
        identify: false,
        ..policy()
    });
    run(&mut flow, t0, known());
    assert_eq!(
        run(&mut flow, secs(t0, 2), Input::QueueAnswered),
        [Action::Bridge]
    );
    assert_eq!(run(&mut flow, secs(t0, 5), greeting_done()), []);
}

// ---- every reason is reachable ----------------------------------------------------------------

/// Plays a call that ends unverified for `reason`, and returns its verdict.
fn call_ending_in(reason: Reason) -> Verdict {
    let t0 = Instant::now();
    let mut all = Vec::new();
    let mut flow = match reason {
        Reason::NotFound | Reason::Anonymous | Reason::Skipped => Flow::new(Policy {
            identify: reason != Reason::Skipped,
            ..no_keypad()
        }),
        Reason::InvalidInput => asked_for_number(policy(), t0),
        _ => pushed_to_alice(policy(), t0),
    };
    let inputs = match reason {
        Reason::NotFound => vec![known(), Input::DirectoryAnswer(Lookup::NotFound)],
        Reason::Anonymous => vec![anonymous()],
        Reason::Skipped => vec![known()],
        Reason::InvalidInput => [Input::Digit('1'), Input::Digit('#')]
            .into_iter()
            .chain([Input::PromptDone(PromptId::InvalidNumber)])
            .cycle()
            .take(8)
            .collect(),
        Reason::Declined => vec![failed(Failure::Declined)],
        Reason::NotInCall => vec![failed(Failure::NotInCall)],
        Reason::Timeout => vec![failed(Failure::Timeout)],
        Reason::Mismatch => vec![complete(BOB)],
        Reason::RateLimited => vec![failed(Failure::RateLimited)],
        Reason::ProviderError => vec![failed(Failure::Provider("503".into()))],
    };
    for input in inputs {
        all.extend(run(&mut flow, secs(t0, 30), input));
    }
    verdict_of(&all)
}

#[test]
fn every_reason_is_reachable() {
    for reason in Reason::ALL {
        assert_eq!(call_ending_in(reason).reason(), Some(reason), "{reason:?}");
    }
}

#[test]
fn provider_failures_carry_the_method() {
    for (failure, reason) in [
        (Failure::Declined, Reason::Declined),
        (Failure::NotInCall, Reason::NotInCall),
        (Failure::Timeout, Reason::Timeout),
        (Failure::RateLimited, Reason::RateLimited),
        (Failure::Provider("down".into()), Reason::ProviderError),
    ] {
        let t0 = Instant::now();
        let mut flow = pushed_to_alice(policy(), t0);
        let actions = run(&mut flow, secs(t0, 20), failed(failure));
        let expected = [
            unverified(reason, Some(METHOD)),
            play(PromptId::NotVerified),
            to_queue(Target::Primary),
        ];
        assert_eq!(actions, expected);
    }
}

#[test]
fn the_wrong_person_verifying_is_a_mismatch() {
    let t0 = Instant::now();
    let mut flow = pushed_to_alice(policy(), t0);
    let actions = run(&mut flow, secs(t0, 20), complete(BOB));
    assert_eq!(verdict_of(&actions).reason(), Some(Reason::Mismatch));
    assert_eq!(verdict_of(&actions).method(), Some(METHOD));
}

#[test]
fn a_lost_provider_task_is_a_provider_error() {
    let t0 = Instant::now();
    let mut flow = pushed_to_alice(policy(), t0);
    let actions = run(&mut flow, secs(t0, 20), Input::VerificationLost);
    assert_eq!(actions[0], unverified(Reason::ProviderError, Some(METHOD)));
}

#[test]
fn a_failed_directory_with_nothing_else_is_a_provider_error() {
    let t0 = Instant::now();
    let mut flow = Flow::new(no_keypad());
    run(&mut flow, t0, known());
    let actions = run(
        &mut flow,
        secs(t0, 1),
        Input::DirectoryAnswer(Lookup::Failed),
    );
    assert_eq!(actions[0], unverified(Reason::ProviderError, None));
}

#[test]
fn not_a_number_gets_the_keypad_or_not_found() {
    let t0 = Instant::now();
    let answered = Input::Answered {
        caller: CallerId::NotANumber,
    };
    let mut flow = Flow::new(policy());
    assert_eq!(
        run(&mut flow, t0, answered.clone()),
        [play(PromptId::Greeting)]
    );
    assert_eq!(flow.state_name(), "greeting");
    let mut flow = Flow::new(no_keypad());
    let actions = run(&mut flow, t0, answered);
    assert_eq!(actions[1], unverified(Reason::NotFound, None));
}

// ---- push by phone number ---------------------------------------------------------------------

#[test]
fn phone_push_when_not_in_the_directory() {
    let t0 = Instant::now();
    let phone_push = Policy {
        phone_push: true,
        ..policy()
    };
    for lookup in [Lookup::NotFound, Lookup::Failed] {
        let mut flow = Flow::new(phone_push.clone());
        run(&mut flow, t0, known());
        let actions = run(&mut flow, secs(t0, 1), Input::DirectoryAnswer(lookup));
        assert_eq!(
            actions,
            [Action::StartVerification(Subject::Phone(number()))]
        );
        // Anyone the provider vouches for by this phone is the caller: no expected person.
        let actions = run(&mut flow, secs(t0, 20), complete(BOB));
        assert_eq!(actions[0], verified(BOB));
    }
}

#[test]
fn phone_push_without_a_directory() {
    let t0 = Instant::now();
    let mut flow = Flow::new(Policy {
        directory: false,
        phone_push: true,
        ..policy()
    });
    let actions = run(&mut flow, t0, known());
    let push = Action::StartVerification(Subject::Phone(number()));
    assert_eq!(actions, [play(PromptId::Greeting), push]);
}

// ---- the identification deadline --------------------------------------------------------------

#[test]
fn identify_deadline_cancels_the_push() {
    let t0 = Instant::now();
    let mut flow = pushed_to_alice(policy(), t0);
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 150)));
    assert_eq!(tick(&mut flow, secs(t0, 149)), []);
    let actions = tick(&mut flow, secs(t0, 150));
    let expected = [
        Action::CancelVerification,
        unverified(Reason::Timeout, Some(METHOD)),
        play(PromptId::NotVerified),
        to_queue(Target::Primary),
    ];
    assert_eq!(actions, expected);
    // The provider's late answer changes nothing.
    assert_eq!(run(&mut flow, secs(t0, 151), complete(ALICE)), []);
}

#[test]
fn identify_deadline_without_a_push_has_no_method() {
    let t0 = Instant::now();
    let mut flow = Flow::new(policy());
    run(&mut flow, t0, known());
    let actions = tick(&mut flow, secs(t0, 150));
    assert_eq!(actions[0], unverified(Reason::Timeout, None));
    assert_eq!(
        run(
            &mut flow,
            secs(t0, 151),
            Input::DirectoryAnswer(Lookup::NotFound)
        ),
        []
    );

    let mut flow = asked_for_number(policy(), t0);
    type_keys(&mut flow, secs(t0, 146), "1");
    assert_eq!(
        flow.poll_timeout(),
        Some(secs(t0, 150)),
        "the earlier deadline wins"
    );
    let actions = tick(&mut flow, secs(t0, 150));
    assert_eq!(actions[0], unverified(Reason::Timeout, None));
}

// ---- deadlines --------------------------------------------------------------------------------

#[test]
fn poll_timeout_follows_the_call() {
    let t0 = Instant::now();
    let mut flow = Flow::new(policy());
    assert_eq!(flow.poll_timeout(), None);
    run(&mut flow, t0, known());
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 150)));
    assert_eq!(tick(&mut flow, secs(t0, 100)), [], "early calls do nothing");
    run(
        &mut flow,
        secs(t0, 1),
        Input::DirectoryAnswer(Lookup::Found(pnr(ALICE))),
    );
    assert_eq!(flow.poll_timeout(), Some(secs(t0, 150)));
    run(&mut flow, secs(t0, 40), complete(ALICE));
    assert_eq!(
        flow.poll_timeout(),
        Some(secs(t0, 100)),
        "ring timeout from the transfer"
    );
    run(&mut flow, secs(t0, 50), Input::QueueAnswered);
    assert_eq!(
        flow.poll_timeout(),
        Some(secs(t0, 50 + 4 * 3600)),
        "bridged: the maximum call length"
    );
}
