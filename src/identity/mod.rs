//! Who the caller is: caller numbers, personal identity numbers, the verdict, and the identity
//! headers written on the queue leg (see `IDENTITY-HEADERS.md`).

pub mod caller;
pub mod headers;
pub mod personal_number;
pub mod token;

pub use caller::{CallerId, E164};
pub use personal_number::{PersonName, PersonalNumber};

/// Why a call is handed over unverified (`X-Identity-Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Caller number not in the directory and no keypad entry given.
    NotFound,
    /// Caller withheld the number and did not type a personal number.
    Anonymous,
    /// Keypad entry never passed validation within the attempts allowed.
    InvalidInput,
    /// The person cancelled in the app.
    Declined,
    /// The person said in the app that they are not in a call with us: a fraud signal.
    NotInCall,
    /// No answer in time.
    Timeout,
    /// A person verified, but not the one the directory links to the caller number.
    Mismatch,
    /// Too many pushes for this caller number or person recently.
    RateLimited,
    /// The provider failed or was unreachable.
    ProviderError,
    /// The route does not identify, or the caller chose to skip.
    Skipped,
}

impl Reason {
    /// Every reason, in the order of `IDENTITY-HEADERS.md`.
    pub const ALL: [Reason; 10] = [
        Reason::NotFound,
        Reason::Anonymous,
        Reason::InvalidInput,
        Reason::Declined,
        Reason::NotInCall,
        Reason::Timeout,
        Reason::Mismatch,
        Reason::RateLimited,
        Reason::ProviderError,
        Reason::Skipped,
    ];

    /// The token written in `X-Identity-Reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "not-found",
            Reason::Anonymous => "anonymous",
            Reason::InvalidInput => "invalid-input",
            Reason::Declined => "declined",
            Reason::NotInCall => "not-in-call",
            Reason::Timeout => "timeout",
            Reason::Mismatch => "mismatch",
            Reason::RateLimited => "rate-limited",
            Reason::ProviderError => "provider-error",
            Reason::Skipped => "skipped",
        }
    }

    /// Parses the header token back (used by the store and by tests).
    pub fn parse(token: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == token)
    }
}

/// How the caller was (or was tried to be) identified (`X-Identity-Method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// BankID RP API v6 phone/auth.
    Bankid,
    /// Freja eID.
    Freja,
    /// The company's own app, by push.
    AppPush,
    /// The built-in simulator provider (demos and tests).
    Simulator,
}

impl Method {
    /// The token written in `X-Identity-Method`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Bankid => "bankid",
            Method::Freja => "freja",
            Method::AppPush => "app-push",
            Method::Simulator => "simulator",
        }
    }

    /// Parses the header token back.
    pub fn parse(token: &str) -> Option<Method> {
        [
            Method::Bankid,
            Method::Freja,
            Method::AppPush,
            Method::Simulator,
        ]
        .into_iter()
        .find(|m| m.as_str() == token)
    }
}

/// The person an eID provider vouched for, in this call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPerson {
    /// The personal identity number the provider returned.
    pub personal_number: PersonalNumber,
    /// The name the provider returned, if any.
    pub name: Option<PersonName>,
}

/// The outcome of identification for one call. A statement about this call only: never stored
/// as "this number is trusted", never reused for another call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A completed eID order for the right person in this call.
    Verified {
        /// The provider that completed the order.
        method: Method,
        /// Who it vouched for.
        person: VerifiedPerson,
    },
    /// Anything else.
    Unverified {
        /// Why.
        reason: Reason,
        /// The provider that was tried, if any.
        method: Option<Method>,
    },
}

impl Verdict {
    /// `verified` or `unverified`, as in `X-Identity-Status`.
    pub fn status_str(&self) -> &'static str {
        match self {
            Verdict::Verified { .. } => "verified",
            Verdict::Unverified { .. } => "unverified",
        }
    }

    /// The reason, when unverified.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Verdict::Verified { .. } => None,
            Verdict::Unverified { reason, .. } => Some(*reason),
        }
    }

    /// The method that was tried, if any.
    pub fn method(&self) -> Option<Method> {
        match self {
            Verdict::Verified { method, .. } => Some(*method),
            Verdict::Unverified { method, .. } => *method,
        }
    }
}
