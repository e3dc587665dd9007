//! The route's identification and hand-off policy, as the flow sees it.

use std::time::Duration;

use crate::identity::Method;
use crate::identity::personal_number::CivilDate;

/// How the call is handed to the agent queue (`DESIGN.md`, step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// idgate sends a new INVITE to the queue and relays media between the two legs.
    B2bua,
    /// idgate sends REFER in the caller's dialog (RFC 3515) and follows the NOTIFY sipfrag.
    Refer,
}

/// Which queue target a hand-off goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The route's queue.
    Primary,
    /// The route's fallback target, tried once when the primary fails (B2BUA only).
    Fallback,
}

/// What the flow does for one call: built by the driver from the route's config and the
/// provider's capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Whether to identify at all; `false` hands over `Unverified(Skipped)` at once.
    pub identify: bool,
    /// Whether to look the caller number up in the customer directory.
    pub directory: bool,
    /// Whether to push by caller number when the number is not in the directory (set by the
    /// driver only if the provider supports `Subject::Phone`).
    pub phone_push: bool,
    /// Whether unknown or anonymous callers may type their personal identity number.
    pub keypad: bool,
    /// How many keypad entries a caller gets (0 disables keypad entry).
    pub keypad_attempts: u8,
    /// How long to wait for the first digit after the `EnterNumber` prompt has ended.
    pub first_digit_timeout: Duration,
    /// How long to wait between digits; when it passes, what was typed is submitted.
    pub digit_timeout: Duration,
    /// The overall identification deadline, counted from `Answered`.
    pub identify_deadline: Duration,
    /// How long a queue target may ring (and a REFER may stay unanswered) per attempt.
    pub ring_timeout: Duration,
    /// The longest a bridged call may last before idgate ends both legs (a lost BYE or a
    /// vanished peer must not hold a call forever).
    pub max_bridged: Duration,
    /// How the call is handed to the queue.
    pub transfer: TransferMode,
    /// Whether the route has a fallback queue target.
    pub has_fallback: bool,
    /// The provider's method, written in verdicts (`X-Identity-Method`).
    pub method: Method,
    /// Today's date, for keypad entries of 10 digits (`YYMMDDNNNN`, century inferred). None
    /// accepts only 12 digits. A parameter, like time: the flow reads no clock.
    pub today: Option<CivilDate>,
}

impl Default for Policy {
    /// Identify by directory, then keypad (3 attempts, 15 s / 6 s), 150 s overall, B2BUA hand-off
    /// ringing 60 s without fallback, simulator method (the driver sets the real provider's).
    fn default() -> Self {
        Self {
            identify: true,
            directory: true,
            phone_push: false,
            keypad: true,
            keypad_attempts: 3,
            first_digit_timeout: Duration::from_secs(15),
            digit_timeout: Duration::from_secs(6),
            identify_deadline: Duration::from_secs(150),
            ring_timeout: Duration::from_secs(60),
            max_bridged: Duration::from_secs(4 * 3600),
            transfer: TransferMode::B2bua,
            has_fallback: false,
            method: Method::Simulator,
            today: None,
        }
    }
}

impl Policy {
    /// Whether keypad entry can be offered at all.
    pub(super) fn keypad_enabled(&self) -> bool {
        self.keypad && self.keypad_attempts > 0
    }
}
