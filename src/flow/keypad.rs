//! Keypad entry of a personal identity number: prompts, digit collection, timeouts, attempts.
//!
//! The caller types 12 digits then `#` (RFC 4733 telephone-events); `*` clears. Digits typed
//! while `EnterNumber` plays count; keys pressed during the greeting are ignored (nobody has
//! asked yet). The number is validated (date + Luhn) by
//! [`PersonalNumber::parse`] before any push is sent.

use std::fmt;
use std::time::Instant;

use super::{Action, Flow, Input, State};
use crate::identity::{PersonalNumber, Reason};
use crate::media::PromptId;
use crate::verify::Subject;

/// More keys than any valid entry has; extra keys are dropped (the entry is invalid anyway).
const MAX_DIGITS: usize = 16;

/// The digits typed so far. Redacting: `Debug` shows how many, never which.
#[derive(Default)]
pub(super) struct Digits(String);

impl Digits {
    fn push(&mut self, digit: char) {
        if self.0.len() < MAX_DIGITS {
            self.0.push(digit);
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digits(<{} redacted>)", self.0.len())
    }
}

/// What plays while digits are collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `EnterNumber` plays; the first-digit timer starts when it ends.
    Asking,
    /// `InvalidNumber` plays; `EnterNumber` follows.
    Apologising,
    /// No prompt; a timer runs.
    Listening,
}

/// One caller's keypad entry, across attempts.
#[derive(Debug)]
pub(super) struct Keypad {
    digits: Digits,
    /// Attempts that ended without a valid number.
    failed: u8,
    /// Whether the caller ever typed a digit.
    typed: bool,
    /// The reason if the caller never types anything (`Anonymous`, `NotFound`, ...).
    if_silent: Reason,
    phase: Phase,
    /// The first-digit or inter-digit deadline.
    deadline: Option<Instant>,
}

impl Keypad {
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl Flow {
    /// Starts keypad entry: at once, or when the greeting has ended.
    pub(super) fn ask_for_number(&mut self, if_silent: Reason) -> State {
        let keypad = Keypad {
            digits: Digits::default(),
            failed: 0,
            typed: false,
            if_silent,
            phase: Phase::Asking,
            deadline: None,
        };
        if self.greeting_playing {
            State::Greeting(keypad)
        } else {
            self.prompt_for_number(keypad)
        }
    }

    /// Plays `EnterNumber`; the first-digit timer starts when it ends.
    pub(super) fn prompt_for_number(&mut self, mut keypad: Keypad) -> State {
        self.emit(Action::Play {
            prompt: PromptId::EnterNumber,
            then_hold: false,
        });
        keypad.phase = Phase::Asking;
        State::CollectingDigits(keypad)
    }

    pub(super) fn collecting_digits(
        &mut self,
        now: Instant,
        mut keypad: Keypad,
        input: Input,
    ) -> State {
        match input {
            Input::Digit(digit @ '0'..='9') => {
                keypad.digits.push(digit);
                keypad.typed = true;
                keypad.deadline = now.checked_add(self.policy.digit_timeout);
            }
            Input::Digit('*') => {
                keypad.digits.clear();
                keypad.deadline = match keypad.phase {
                    Phase::Listening => now.checked_add(self.policy.first_digit_timeout),
                    Phase::Asking | Phase::Apologising => None,
                };
            }
            Input::Digit('#') => return self.submit(now, keypad),
            Input::PromptDone(PromptId::EnterNumber) if keypad.phase == Phase::Asking => {
                keypad.phase = Phase::Listening;
                if keypad.digits.is_empty() {
                    keypad.deadline = now.checked_add(self.policy.first_digit_timeout);
                }
            }
            Input::PromptDone(PromptId::InvalidNumber) if keypad.phase == Phase::Apologising => {
                return self.prompt_for_number(keypad);
            }
            _ => {}
        }
        State::CollectingDigits(keypad)
    }

    /// The first-digit or inter-digit timer passed: submit what was typed, if anything.
    pub(super) fn digits_timed_out(&mut self, now: Instant, mut keypad: Keypad) -> State {
        keypad.deadline = None;
        self.submit(now, keypad)
    }

    fn submit(&mut self, now: Instant, mut keypad: Keypad) -> State {
        if keypad.digits.is_empty() {
            return self.attempt_failed(now, keypad, false);
        }
        let parsed = match self.policy.today {
            Some(today) => PersonalNumber::parse_keypad(keypad.digits.as_str(), today),
            None => PersonalNumber::parse(keypad.digits.as_str()),
        };
        keypad.digits.clear();
        match parsed {
            Ok(person) => self.start_verification(Subject::Person(person.clone()), Some(person)),
            Err(_) => self.attempt_failed(now, keypad, true),
        }
    }

    /// One attempt gave no valid number (`entered`: digits were typed and rejected).
    fn attempt_failed(&mut self, now: Instant, mut keypad: Keypad, entered: bool) -> State {
        keypad.failed = keypad.failed.saturating_add(1);
        keypad.digits.clear();
        keypad.deadline = None;
        if keypad.failed >= self.policy.keypad_attempts {
            let reason = if keypad.typed {
                Reason::InvalidInput
            } else {
                keypad.if_silent
            };
            return self.unverified(now, reason, None);
        }
        if !entered {
            return self.prompt_for_number(keypad);
        }
        self.emit(Action::Play {
            prompt: PromptId::InvalidNumber,
            then_hold: false,
        });
        keypad.phase = Phase::Apologising;
        State::CollectingDigits(keypad)
    }
}
