//! `[limits]`: anti push-bombing. A push is a notification on someone's phone; a fraudster who
//! knows a victim's number must not be able to flood them until they tap "confirm". The limits
//! hold across instances (they are checked in the shared database).

use std::time::Duration;

use serde::Deserialize;

use super::error::Problem;
use crate::store::PushLimits;

/// `[limits]`: how often a caller number or a person may be pushed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Pushes per caller number within `window_secs`. Default `3`.
    pub pushes_per_caller: u32,
    /// Pushes per person (personal identity number) within `window_secs`, from any number.
    /// Default `3`.
    pub pushes_per_person: u32,
    /// The window both counts are taken over, in seconds. Default `600`.
    pub window_secs: u64,
    /// After a person declined or said "I am not in a call", no push to them for this many
    /// seconds. Default `300`.
    pub cooldown_secs: u64,
    /// A running order older than this (seconds) no longer blocks a new order for the same
    /// person (it was left behind by a stopped instance). Default `180`, BankID's order life.
    pub order_lifetime_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            pushes_per_caller: 3,
            pushes_per_person: 3,
            window_secs: 600,
            cooldown_secs: 300,
            order_lifetime_secs: 180,
        }
    }
}

impl LimitsConfig {
    /// Counts and the window must be at least 1.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        let positive = [
            (
                "limits.pushes_per_caller",
                u64::from(self.pushes_per_caller),
            ),
            (
                "limits.pushes_per_person",
                u64::from(self.pushes_per_person),
            ),
            ("limits.window_secs", self.window_secs),
            ("limits.order_lifetime_secs", self.order_lifetime_secs),
        ];
        match positive.into_iter().find(|(_, v)| *v == 0) {
            Some((key, _)) => Err(Problem::new(key, "must be at least 1")),
            None => Ok(()),
        }
    }

    /// The limits as the store applies them.
    pub fn push_limits(&self) -> PushLimits {
        PushLimits {
            per_caller: self.pushes_per_caller,
            per_person: self.pushes_per_person,
            window: Duration::from_secs(self.window_secs),
            cooldown: Duration::from_secs(self.cooldown_secs),
            order_lifetime: Duration::from_secs(self.order_lifetime_secs),
        }
    }
}
