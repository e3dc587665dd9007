//! idgate: a SIP service that identifies callers with a strong eID push before they reach a
//! contact center's agents. See `ARCHITECTURE.md` for the module map.

pub mod api;
pub mod call;
pub mod cli;
pub mod config;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod media;
pub mod metrics;
pub mod sip;
pub mod store;
pub mod timefmt;
pub mod verify;
