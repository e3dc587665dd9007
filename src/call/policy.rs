//! From a dialplan route to the flow's policy.

use crate::config::{Route, Transfer};
use std::time::SystemTime;

use crate::flow::{Policy, TransferMode};
use crate::identity::personal_number::CivilDate;
use crate::verify::Provider;

/// The flow policy for a route, given what the provider can do.
pub(super) fn for_route(route: &Route, provider: &dyn Provider) -> Policy {
    Policy {
        identify: route.identify,
        directory: route.directory,
        phone_push: route.phone_push && provider.supports_phone(),
        keypad: route.keypad,
        keypad_attempts: u8::try_from(route.keypad_attempts).unwrap_or(u8::MAX),
        identify_deadline: route.identify_timeout,
        ring_timeout: route.ring_timeout,
        max_bridged: route.max_call,
        transfer: match route.transfer {
            Transfer::B2bua => TransferMode::B2bua,
            Transfer::Refer => TransferMode::Refer,
        },
        has_fallback: route.fallback.is_some(),
        method: provider.method(),
        today: Some(CivilDate::today_utc(SystemTime::now())),
        ..Policy::default()
    }
}
