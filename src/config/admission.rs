//! `[admission]`: how many calls this instance takes, and how it drains.

use std::time::Duration;

use serde::Deserialize;

use super::error::Problem;

/// `[admission]`: overload limits and draining.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Calls in progress at once (answered or being set up); beyond it, new INVITEs get 503.
    /// `0`: no limit. Default `4000`.
    pub max_calls: u64,
    /// New calls per second (a token bucket of this size, refilled at this rate); beyond it,
    /// 503. `0`: no limit. Default `500`.
    pub max_calls_per_second: u32,
    /// The `Retry-After` (seconds) sent with every 503. Default `5`.
    pub retry_after_secs: u32,
    /// When draining (SIGTERM, `POST /v1/drain`), how long to wait for calls in progress to
    /// end before exiting anyway. B2BUA calls stay in idgate until they hang up. Default `3600`.
    pub drain_timeout_secs: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_calls: 4000,
            max_calls_per_second: 500,
            retry_after_secs: 5,
            drain_timeout_secs: 3600,
        }
    }
}

impl AdmissionConfig {
    /// A 503 must tell the peer when to come back.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if self.retry_after_secs == 0 {
            return Err(Problem::new(
                "admission.retry_after_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The drain timeout as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn retry_after_must_be_positive() {
        let e = Config::parse("idgate.toml", "[admission]\nretry_after_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("admission.retry_after_secs"), "{e}");
        let ok = Config::parse("idgate.toml", "[admission]\nmax_calls = 0\n").unwrap();
        assert_eq!(ok.admission.max_calls, 0);
    }
}
