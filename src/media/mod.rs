//! Media: SDP offer/answer, G.711, RTP, prompt playout, RFC 4733 DTMF, and the RTP relay for
//! bridged calls.

/// The prompts idgate can play. Each has a bundled recording (`assets/prompts/`), replaceable
/// by the user's own WAV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PromptId {
    /// "Welcome. We will identify you before you speak to an agent."
    Greeting,
    /// "We have sent an identification request: open the app and confirm that you called us."
    PushSent,
    /// "Confirm in the app that you are in a call with us."
    ConfirmInApp,
    /// "Type your 12-digit personal identity number, then hash."
    EnterNumber,
    /// "That number is not valid."
    InvalidNumber,
    /// "You are verified. Connecting you to an agent."
    Verified,
    /// "We could not verify you. Connecting you to an agent."
    NotVerified,
    /// "All agents are busy. Please call again later."
    AllBusy,
    /// "Something went wrong. Please call again later."
    Error,
}

impl PromptId {
    /// Every prompt.
    pub const ALL: [PromptId; 9] = [
        PromptId::Greeting,
        PromptId::PushSent,
        PromptId::ConfirmInApp,
        PromptId::EnterNumber,
        PromptId::InvalidNumber,
        PromptId::Verified,
        PromptId::NotVerified,
        PromptId::AllBusy,
        PromptId::Error,
    ];

    /// The file stem of the prompt (`assets/prompts/<lang>/<stem>.wav`).
    pub fn stem(self) -> &'static str {
        match self {
            PromptId::Greeting => "greeting",
            PromptId::PushSent => "push-sent",
            PromptId::ConfirmInApp => "confirm-in-app",
            PromptId::EnterNumber => "enter-number",
            PromptId::InvalidNumber => "invalid-number",
            PromptId::Verified => "verified",
            PromptId::NotVerified => "not-verified",
            PromptId::AllBusy => "all-busy",
            PromptId::Error => "error",
        }
    }
}

pub mod dtmf;
pub mod engine;
pub mod g711;
pub mod inband;
pub mod playout;
pub mod prompts;
pub mod reception;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod srtp;
pub mod stream;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod srtp_engine_tests;
#[cfg(test)]
mod test_support;

pub use engine::{MediaConfig, MediaCounters, MediaEngine, MediaError, check_raw_send};
pub use g711::Codec;
pub use prompts::{PromptError, PromptSet};
pub use sdp::{Negotiated, RemoteMedia, SdpError};
pub use stream::{MediaEvent, MediaStream};
