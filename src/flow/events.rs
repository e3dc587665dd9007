//! The flow's vocabulary: what the driver feeds in ([`Input`]) and what it must do
//! ([`Action`]).

use crate::identity::{CallerId, E164, PersonalNumber, Verdict};
use crate::media::PromptId;
use crate::verify::{Subject, VerifyUpdate};

use super::{Target, TransferMode};

/// The customer directory's answer for the caller number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The number maps to this person.
    Found(PersonalNumber),
    /// The number is not in the directory.
    NotFound,
    /// The directory failed or could not be reached.
    Failed,
}

/// Something that happened to the call, fed to [`Flow::handle`](super::Flow::handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The caller's 200 OK was ACKed and media started: the flow begins.
    Answered {
        /// The caller as taken from the INVITE.
        caller: CallerId,
    },
    /// A prompt finished playing.
    PromptDone(PromptId),
    /// A keypad press (RFC 4733 telephone-event or SIP INFO): `0`–`9`, `*`, `#`, `A`–`D`.
    Digit(char),
    /// The customer directory answered [`Action::LookupCustomer`].
    DirectoryAnswer(Lookup),
    /// A progress report from the running verification.
    Verification(VerifyUpdate),
    /// The provider's task ended without a final update.
    VerificationLost,
    /// The queue leg answered (2xx to the queue INVITE).
    QueueAnswered,
    /// The current queue INVITE failed (4xx/5xx/6xx or transport failure).
    QueueFailed,
    /// The REFER succeeded (NOTIFY with a 2xx sipfrag, RFC 3515 §2.4.5).
    ReferAccepted,
    /// The REFER was rejected, or the NOTIFY sipfrag carried a final status ≥ 300.
    ReferFailed,
    /// The caller hung up (BYE or CANCEL on the caller leg).
    CallerHangup,
    /// The queue leg hung up (BYE on the queue leg).
    QueueHangup,
}

/// How a call ended, carried by [`Action::Done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The caller was bridged to the queue; one side has hung up.
    Connected,
    /// The PBX took the call over by REFER.
    Referred,
    /// The caller hung up before reaching the queue.
    Abandoned,
    /// No queue target answered; the caller heard `AllBusy` and was hung up.
    QueueUnavailable,
}

/// Something the driver must do, drained with [`Flow::poll_action`](super::Flow::poll_action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Play a prompt, replacing what plays now; with `then_hold`, hold music loops after it.
    Play {
        /// The prompt.
        prompt: PromptId,
        /// Whether hold music follows the prompt.
        then_hold: bool,
    },
    /// Play hold music only.
    Hold,
    /// Look the caller number up in the customer directory; answer with
    /// [`Input::DirectoryAnswer`].
    LookupCustomer(E164),
    /// Start an eID order; report with [`Input::Verification`] / [`Input::VerificationLost`].
    StartVerification(Subject),
    /// Cancel the running eID order (BankID `/cancel`).
    CancelVerification,
    /// The verdict for this call: emitted exactly once per call that reaches one. The driver
    /// records it and builds the identity headers from it.
    Decided(Verdict),
    /// Hand the call to the queue: INVITE the target (B2BUA) or REFER the caller.
    Transfer {
        /// B2BUA or REFER.
        mode: TransferMode,
        /// Which queue target.
        target: Target,
    },
    /// CANCEL (ringing) or BYE (connected) the queue leg.
    CancelQueueLeg,
    /// Stop playout and relay media between the caller and the queue leg.
    Bridge,
    /// BYE the caller.
    HangUpCaller,
    /// The result of a re-verification an agent asked for ([`Flow::reverify`]): recorded in
    /// the audit trail and shown to the agent. It does not change the hand-off's verdict.
    ///
    /// [`Flow::reverify`]: super::Flow::reverify
    Reverified(Verdict),
    /// The last action; nothing follows.
    Done(Outcome),
}
