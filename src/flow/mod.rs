//! The call flow: what happens to one answered call, from the greeting to the hand-off.
//!
//! Sans-IO, in the shape of quinn-proto: the driver feeds [`Input`]s with
//! [`Flow::handle`] and deadlines with [`Flow::handle_timeout`], then drains [`Action`]s with
//! [`Flow::poll_action`] and asks for the next deadline with [`Flow::poll_timeout`]. No clock, no
//! I/O, no logging here: time is a parameter and every decision is a value a test can read.
//!
//! The steps follow `DESIGN.md` ("The call, step by step"): greeting, identification (customer
//! directory → eID push, or keypad entry → eID push), one verdict, then the hand-off (B2BUA with
//! an optional fallback target, or REFER falling back to B2BUA). Every late, duplicated or
//! out-of-order input is ignored.

mod events;
mod keypad;
mod policy;
#[cfg(test)]
mod tests;

pub use events::{Action, Input, Lookup, Outcome};
pub use policy::{Policy, Target, TransferMode};

use std::collections::VecDeque;
use std::mem;
use std::time::{Duration, Instant};

use crate::identity::{CallerId, E164, Method, PersonalNumber, Reason, Verdict, VerifiedPerson};
use crate::media::PromptId;
use crate::verify::{Hint, Subject, VerifyUpdate};
use keypad::Keypad;

/// How long the `AllBusy` prompt may take before the caller is hung up regardless.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the flow waits for now (rustls style: each state is named after what it expects).
#[derive(Debug)]
enum State {
    /// Waiting for [`Input::Answered`].
    AwaitingAnswer,
    /// Keypad entry is next; waiting for the greeting to end before asking for the number.
    Greeting(Keypad),
    /// Waiting for the customer directory's answer for this number.
    AwaitingDirectory(E164),
    /// Waiting for the eID order's final update.
    AwaitingVerification(Pushed),
    /// Waiting for the caller to type a personal identity number.
    CollectingDigits(Keypad),
    /// Waiting for the queue target to answer (B2BUA).
    Ringing(Ringing),
    /// Waiting for the REFER's outcome.
    Referring { deadline: Option<Instant> },
    /// Waiting for either side to hang up, at most until the deadline (`max_bridged`): a BYE
    /// lost on UDP or a vanished peer must not keep a call, its dialogs and ports forever.
    /// An agent may ask for a new verification meanwhile ([`Flow::reverify`]).
    Bridged {
        deadline: Option<Instant>,
        reverify: Option<Reverify>,
    },
    /// Waiting for the `AllBusy` prompt to end.
    Announcing { deadline: Option<Instant> },
    /// Nothing more to do.
    Done,
}

/// A running eID order.
#[derive(Debug)]
struct Pushed {
    /// The person the order must verify (from the directory or the keypad), if known.
    expected: Option<PersonalNumber>,
    /// Whether `ConfirmInApp` has been played.
    confirm_prompted: bool,
}

/// A verification an agent asked for while talking to the caller.
#[derive(Debug)]
struct Reverify {
    /// The person the new order must verify.
    expected: PersonalNumber,
    /// When it counts as `timeout` (the route's identification deadline, from the request).
    deadline: Option<Instant>,
}

/// Why [`Flow::reverify`] refused to start a new verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReverifyRefused {
    /// Only a caller bridged to an agent (B2BUA) can be verified again.
    #[error("the caller is not connected to an agent through idgate")]
    NotConnected,
    /// One re-verification at a time.
    #[error("a verification is already running for this call")]
    AlreadyRunning,
    /// Nobody to send the push to: the agent must give the personal identity number.
    #[error("no person is known for this call: give the personal identity number")]
    NoPerson,
}

/// A queue INVITE in progress.
#[derive(Debug)]
struct Ringing {
    target: Target,
    deadline: Option<Instant>,
    /// This leg replaces a REFER that was never answered: the PBX may still carry it out.
    unanswered_refer: bool,
}

/// Whether an eID order was started in this call, and whether it still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    NotStarted,
    Running,
    Ended,
}

/// The flow of one call. Create it when the INVITE is accepted; feed it until [`is_done`].
///
/// [`is_done`]: Flow::is_done
pub struct Flow {
    policy: Policy,
    state: State,
    actions: VecDeque<Action>,
    /// The overall identification deadline, set on `Answered`.
    identify_by: Option<Instant>,
    order: Order,
    greeting_playing: bool,
    /// A prompt waiting for the greeting to end (the greeting is never cut off).
    after_greeting: Option<PromptId>,
    /// The person this call is about, once known (directory, keypad, or the verified person):
    /// whom a re-verification pushes to when the agent names nobody.
    known_person: Option<PersonalNumber>,
}

impl std::fmt::Debug for Flow {
    /// Shows the state only: no numbers, no digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("state", &self.state_name())
            .field("order", &self.order)
            .field("pending_actions", &self.actions.len())
            .finish_non_exhaustive()
    }
}

impl Flow {
    /// A flow for one call, waiting for [`Input::Answered`].
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            state: State::AwaitingAnswer,
            actions: VecDeque::new(),
            identify_by: None,
            order: Order::NotStarted,
            greeting_playing: false,
            after_greeting: None,
            known_person: None,
        }
    }

    /// Feeds one input. Inputs the current state does not expect are ignored.
    pub fn handle(&mut self, now: Instant, input: Input) {
        let state = mem::replace(&mut self.state, State::Done);
        self.state = match (state, input) {
            (State::Done, _) => State::Done,
            (state, Input::CallerHangup) => self.caller_hung_up(state),
            (state, Input::PromptDone(PromptId::Greeting)) => self.greeting_done(state),
            (State::AwaitingAnswer, Input::Answered { caller }) => self.answered(now, caller),
            (State::AwaitingDirectory(number), Input::DirectoryAnswer(lookup)) => {
                self.directory_answered(now, number, lookup)
            }
            (State::AwaitingVerification(pushed), input) => {
                self.awaiting_verification(now, pushed, input)
            }
            (State::CollectingDigits(keypad), input) => self.collecting_digits(now, keypad, input),
            (State::Ringing(ringing), input) => self.ringing(now, ringing, input),
            (State::Referring { deadline }, input) => self.referring(now, deadline, input),
            (State::Bridged { .. }, Input::QueueHangup) => {
                self.end_order();
                self.emit(Action::HangUpCaller);
                self.finish(Outcome::Connected)
            }
            (
                State::Bridged {
                    deadline,
                    reverify: Some(reverify),
                },
                input,
            ) => self.reverifying(deadline, reverify, input),
            (State::Announcing { .. }, Input::PromptDone(PromptId::AllBusy)) => {
                self.queue_unavailable()
            }
            // Anything else is late, duplicated or out of order.
            (state, _) => state,
        };
    }

    /// Handles every deadline that has passed by `now`; call it once `poll_timeout()` has
    /// passed. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let state = mem::replace(&mut self.state, State::Done);
        self.state = match state {
            state if state.is_identifying() && due(self.identify_by, now) => {
                self.unverified(now, Reason::Timeout, self.method_tried())
            }
            State::CollectingDigits(keypad) if due(keypad.deadline(), now) => {
                self.digits_timed_out(now, keypad)
            }
            State::Ringing(ringing) if due(ringing.deadline, now) => {
                self.emit(Action::CancelQueueLeg);
                self.queue_failed(now, ringing.target)
            }
            State::Referring { deadline } if due(deadline, now) => {
                match self.transfer(now, TransferMode::B2bua, Target::Primary) {
                    State::Ringing(ringing) => State::Ringing(Ringing {
                        unanswered_refer: true,
                        ..ringing
                    }),
                    other => other,
                }
            }
            State::Announcing { deadline } if due(deadline, now) => self.queue_unavailable(),
            State::Bridged { deadline, .. } if due(deadline, now) => {
                self.end_order();
                self.emit(Action::CancelQueueLeg);
                self.emit(Action::HangUpCaller);
                self.finish(Outcome::Connected)
            }
            State::Bridged {
                deadline,
                reverify: Some(reverify),
            } if due(reverify.deadline, now) => {
                self.end_order();
                self.emit(Action::Reverified(Verdict::Unverified {
                    reason: Reason::Timeout,
                    method: Some(self.policy.method),
                }));
                State::Bridged {
                    deadline,
                    reverify: None,
                }
            }
            state => state,
        };
    }

    /// The next action for the driver, in order; drain after every `handle*` call.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Flow::handle_timeout`] should be called next, if anything is timed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Greeting(_) | State::AwaitingDirectory(_) | State::AwaitingVerification(_) => {
                self.identify_by
            }
            State::CollectingDigits(keypad) => [self.identify_by, keypad.deadline()]
                .into_iter()
                .flatten()
                .min(),
            State::Ringing(ringing) => ringing.deadline,
            State::Referring { deadline } | State::Announcing { deadline } => *deadline,
            State::Bridged { deadline, reverify } => {
                [*deadline, reverify.as_ref().and_then(|r| r.deadline)]
                    .into_iter()
                    .flatten()
                    .min()
            }
            State::AwaitingAnswer | State::Done => None,
        }
    }

    /// The state's name, for logs and metrics (`greeting`, `awaiting_verification`, ...).
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::AwaitingAnswer => "awaiting_answer",
            State::Greeting(_) => "greeting",
            State::AwaitingDirectory(_) => "awaiting_directory",
            State::AwaitingVerification(_) => "awaiting_verification",
            State::CollectingDigits(_) => "collecting_digits",
            State::Ringing(_) => "ringing",
            State::Referring { .. } => "referring",
            State::Bridged { .. } => "bridged",
            State::Announcing { .. } => "announcing",
            State::Done => "done",
        }
    }

    /// An agent asks to verify the caller again while they talk (B2BUA calls only): a new eID
    /// order for `person`, or for the person already known in this call. Its result comes as
    /// [`Action::Reverified`]; the hand-off's verdict ([`Action::Decided`]) never changes.
    pub fn reverify(
        &mut self,
        now: Instant,
        person: Option<PersonalNumber>,
    ) -> Result<(), ReverifyRefused> {
        let State::Bridged { reverify, .. } = &self.state else {
            return Err(ReverifyRefused::NotConnected);
        };
        if reverify.is_some() || self.order == Order::Running {
            return Err(ReverifyRefused::AlreadyRunning);
        }
        let expected = person
            .or_else(|| self.known_person.clone())
            .ok_or(ReverifyRefused::NoPerson)?;
        self.emit(Action::StartVerification(Subject::Person(expected.clone())));
        self.order = Order::Running;
        if let State::Bridged { reverify, .. } = &mut self.state {
            *reverify = Some(Reverify {
                expected,
                deadline: now.checked_add(self.policy.identify_deadline),
            });
        }
        Ok(())
    }

    /// Whether [`Flow::reverify`] could start a verification now (given a person).
    pub fn can_reverify(&self) -> bool {
        matches!(self.state, State::Bridged { reverify: None, .. }) && self.order != Order::Running
    }

    /// Whether [`Action::Done`] has been emitted; every later input is ignored.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn answered(&mut self, now: Instant, caller: CallerId) -> State {
        self.identify_by = now.checked_add(self.policy.identify_deadline);
        self.greeting_playing = true;
        self.emit(Action::Play {
            prompt: PromptId::Greeting,
            then_hold: true,
        });
        if !self.policy.identify {
            return self.unverified(now, Reason::Skipped, None);
        }
        match caller {
            CallerId::Number(number) if self.policy.directory => {
                self.emit(Action::LookupCustomer(number.clone()));
                State::AwaitingDirectory(number)
            }
            CallerId::Number(number) => self.without_directory(now, number, Reason::NotFound),
            CallerId::NotANumber => self.keypad_or(now, Reason::NotFound),
            CallerId::Anonymous => self.keypad_or(now, Reason::Anonymous),
        }
    }

    fn directory_answered(&mut self, now: Instant, number: E164, lookup: Lookup) -> State {
        match lookup {
            Lookup::Found(person) => {
                self.start_verification(Subject::Person(person.clone()), Some(person))
            }
            Lookup::NotFound => self.without_directory(now, number, Reason::NotFound),
            Lookup::Failed => self.without_directory(now, number, Reason::ProviderError),
        }
    }

    /// The caller number gave no person: push by number, else keypad, else `reason`.
    fn without_directory(&mut self, now: Instant, number: E164, reason: Reason) -> State {
        if self.policy.phone_push {
            return self.start_verification(Subject::Phone(number), None);
        }
        self.keypad_or(now, reason)
    }

    /// Keypad entry if the policy allows it; else unverified with `reason`.
    fn keypad_or(&mut self, now: Instant, reason: Reason) -> State {
        if self.policy.keypad_enabled() {
            self.ask_for_number(reason)
        } else {
            self.unverified(now, reason, None)
        }
    }

    fn start_verification(&mut self, subject: Subject, expected: Option<PersonalNumber>) -> State {
        if expected.is_some() {
            self.known_person.clone_from(&expected);
        }
        self.emit(Action::StartVerification(subject));
        self.order = Order::Running;
        self.play(PromptId::PushSent);
        State::AwaitingVerification(Pushed {
            expected,
            confirm_prompted: false,
        })
    }

    fn awaiting_verification(&mut self, now: Instant, mut pushed: Pushed, input: Input) -> State {
        let method = Some(self.policy.method);
        let update = match input {
            Input::Verification(update) => update,
            Input::VerificationLost => {
                self.order = Order::Ended;
                return self.unverified(now, Reason::ProviderError, method);
            }
            _ => return State::AwaitingVerification(pushed),
        };
        match update {
            VerifyUpdate::Pending(Hint::CallConfirm) if !pushed.confirm_prompted => {
                pushed.confirm_prompted = true;
                self.play(PromptId::ConfirmInApp);
                State::AwaitingVerification(pushed)
            }
            VerifyUpdate::Pending(_) => State::AwaitingVerification(pushed),
            VerifyUpdate::Complete(person) => {
                self.order = Order::Ended;
                let verdict = self.completed(pushed.expected, person);
                self.decide(now, verdict)
            }
            VerifyUpdate::Failed(failure) => {
                self.order = Order::Ended;
                self.unverified(now, failure.reason(), method)
            }
        }
    }

    /// Verified, unless the directory or keypad named someone else.
    fn completed(&mut self, expected: Option<PersonalNumber>, person: VerifiedPerson) -> Verdict {
        let method = self.policy.method;
        if expected.is_none() {
            self.known_person = Some(person.personal_number.clone());
        }
        match expected {
            Some(expected) if expected != person.personal_number => Verdict::Unverified {
                reason: Reason::Mismatch,
                method: Some(method),
            },
            _ => Verdict::Verified { method, person },
        }
    }

    fn unverified(&mut self, now: Instant, reason: Reason, method: Option<Method>) -> State {
        self.decide(now, Verdict::Unverified { reason, method })
    }

    /// The one place an identification ends: cancel the order if it runs, record the verdict,
    /// tell the caller, and start the hand-off while they hear the prompt and hold music.
    fn decide(&mut self, now: Instant, verdict: Verdict) -> State {
        self.end_order();
        // A route that does not identify says nothing about it: hold music goes on.
        let prompt = match verdict {
            Verdict::Verified { .. } => Some(PromptId::Verified),
            Verdict::Unverified {
                reason: Reason::Skipped,
                ..
            } => None,
            Verdict::Unverified { .. } => Some(PromptId::NotVerified),
        };
        self.emit(Action::Decided(verdict));
        if let Some(prompt) = prompt {
            self.play(prompt);
        }
        self.transfer(now, self.policy.transfer, Target::Primary)
    }

    fn transfer(&mut self, now: Instant, mode: TransferMode, target: Target) -> State {
        self.emit(Action::Transfer { mode, target });
        let deadline = now.checked_add(self.policy.ring_timeout);
        match mode {
            TransferMode::B2bua => State::Ringing(Ringing {
                target,
                deadline,
                unanswered_refer: false,
            }),
            TransferMode::Refer => State::Referring { deadline },
        }
    }

    fn ringing(&mut self, now: Instant, ringing: Ringing, input: Input) -> State {
        match input {
            Input::QueueAnswered => {
                self.stop_playout();
                self.emit(Action::Bridge);
                State::Bridged {
                    deadline: now.checked_add(self.policy.max_bridged),
                    reverify: None,
                }
            }
            Input::QueueFailed => self.queue_failed(now, ringing.target),
            // The REFER we gave up on was carried out after all: the PBX has the caller, so
            // our own leg to the queue must not reach an agent too.
            Input::ReferAccepted if ringing.unanswered_refer => {
                self.emit(Action::CancelQueueLeg);
                self.emit(Action::HangUpCaller);
                self.finish(Outcome::Referred)
            }
            _ => State::Ringing(ringing),
        }
    }

    /// The fallback target once after the primary, else the all-busy announcement.
    fn queue_failed(&mut self, now: Instant, target: Target) -> State {
        if self.policy.has_fallback && target == Target::Primary {
            return self.transfer(now, TransferMode::B2bua, Target::Fallback);
        }
        // The call ends here: this prompt may cut the greeting off.
        self.stop_playout();
        self.emit(Action::Play {
            prompt: PromptId::AllBusy,
            then_hold: false,
        });
        State::Announcing {
            deadline: now.checked_add(ANNOUNCE_TIMEOUT),
        }
    }

    fn referring(&mut self, now: Instant, deadline: Option<Instant>, input: Input) -> State {
        match input {
            Input::ReferAccepted => {
                self.emit(Action::HangUpCaller);
                self.finish(Outcome::Referred)
            }
            Input::ReferFailed => self.transfer(now, TransferMode::B2bua, Target::Primary),
            _ => State::Referring { deadline },
        }
    }

    /// A re-verification's updates while the caller talks to the agent: no prompts (media is
    /// relayed), one [`Action::Reverified`] at the end.
    fn reverifying(
        &mut self,
        deadline: Option<Instant>,
        reverify: Reverify,
        input: Input,
    ) -> State {
        let method = Some(self.policy.method);
        let verdict = match input {
            Input::Verification(VerifyUpdate::Complete(person)) => {
                if person.personal_number == reverify.expected {
                    Verdict::Verified {
                        method: self.policy.method,
                        person,
                    }
                } else {
                    Verdict::Unverified {
                        reason: Reason::Mismatch,
                        method,
                    }
                }
            }
            Input::Verification(VerifyUpdate::Failed(failure)) => Verdict::Unverified {
                reason: failure.reason(),
                method,
            },
            Input::VerificationLost => Verdict::Unverified {
                reason: Reason::ProviderError,
                method,
            },
            _ => {
                return State::Bridged {
                    deadline,
                    reverify: Some(reverify),
                };
            }
        };
        self.order = Order::Ended;
        self.emit(Action::Reverified(verdict));
        State::Bridged {
            deadline,
            reverify: None,
        }
    }

    fn queue_unavailable(&mut self) -> State {
        self.emit(Action::HangUpCaller);
        self.finish(Outcome::QueueUnavailable)
    }

    /// Cancels the eID order if one runs.
    fn end_order(&mut self) {
        if self.order == Order::Running {
            self.order = Order::Ended;
            self.emit(Action::CancelVerification);
        }
    }

    /// The caller left: cancel whatever runs on their behalf.
    fn caller_hung_up(&mut self, state: State) -> State {
        self.end_order();
        match state {
            State::Ringing(_) => {
                self.emit(Action::CancelQueueLeg);
                self.finish(Outcome::Abandoned)
            }
            State::Bridged { .. } => {
                self.emit(Action::CancelQueueLeg);
                self.finish(Outcome::Connected)
            }
            _ => self.finish(Outcome::Abandoned),
        }
    }

    /// Plays what waited for the greeting; keypad entry may now ask for the number.
    fn greeting_done(&mut self, state: State) -> State {
        if !mem::take(&mut self.greeting_playing) {
            return state;
        }
        if let Some(prompt) = self.after_greeting.take() {
            self.emit(Action::Play {
                prompt,
                then_hold: true,
            });
        }
        match state {
            State::Greeting(keypad) => self.prompt_for_number(keypad),
            state => state,
        }
    }

    /// Plays `prompt` then hold music, or after the greeting if it still plays (the latest
    /// such prompt wins).
    fn play(&mut self, prompt: PromptId) {
        if self.greeting_playing {
            self.after_greeting = Some(prompt);
        } else {
            self.emit(Action::Play {
                prompt,
                then_hold: true,
            });
        }
    }

    fn stop_playout(&mut self) {
        self.greeting_playing = false;
        self.after_greeting = None;
    }

    fn method_tried(&self) -> Option<Method> {
        (self.order != Order::NotStarted).then_some(self.policy.method)
    }

    fn finish(&mut self, outcome: Outcome) -> State {
        self.emit(Action::Done(outcome));
        State::Done
    }

    fn emit(&mut self, action: Action) {
        self.actions.push_back(action);
    }
}

impl State {
    /// Whether the identification deadline applies.
    fn is_identifying(&self) -> bool {
        matches!(
            self,
            State::Greeting(_)
                | State::AwaitingDirectory(_)
                | State::AwaitingVerification(_)
                | State::CollectingDigits(_)
        )
    }
}

/// Whether `deadline` exists and has passed by `now`.
fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|deadline| now >= deadline)
}
