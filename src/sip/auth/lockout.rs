//! The password-guessing limit (`sip.auth.max_failures`, `sip.auth.failure_window_secs`):
//! failed digest responses counted per source address, sans-IO (the caller passes `now`).
//!
//! A source's first failure opens a window of `failure_window_secs`; the `max_failures`-th
//! failure inside it locks the source out for `failure_window_secs` from that failure. While
//! locked out, every INVITE from it that carries credentials gets `403` without its response
//! being checked, so a guesser learns nothing, not even when it hits the right password; a
//! refusal while locked out does not extend the lock. Successful responses neither count nor
//! reset the count. The table holds at most [`MAX_SOURCES`] addresses; when full, expired
//! entries go first, then the one whose last failure is oldest.

use std::collections::HashMap;
use std::net::IpAddr;

/// Sources remembered at once.
pub(crate) const MAX_SOURCES: usize = 4096;

/// Failed responses per source (see the module documentation).
#[derive(Debug)]
pub(crate) struct FailureLimit {
    max_failures: u32,
    window_secs: u64,
    capacity: usize,
    sources: HashMap<IpAddr, Failures>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// When the counting window opened (the first failure in it).
    since: u64,
    /// Failures in the window.
    count: u32,
    /// The latest failure (eviction order).
    last: u64,
    /// Locked out before this time (unix seconds), once `count` reached the limit.
    locked_until: Option<u64>,
}

impl Failures {
    /// Whether this entry says nothing any more at `now`.
    fn expired(&self, now: u64, window_secs: u64) -> bool {
        match self.locked_until {
            Some(until) => now >= until,
            None => now >= self.since.saturating_add(window_secs),
        }
    }
}

impl FailureLimit {
    /// `max_failures` failures within `window_secs` lock a source out for `window_secs`;
    /// `max_failures = 0` turns the limit off.
    pub(crate) fn new(max_failures: u32, window_secs: u64) -> Self {
        Self::with_capacity(max_failures, window_secs, MAX_SOURCES)
    }

    /// As [`FailureLimit::new`], remembering at most `capacity` sources (at least one).
    pub(crate) fn with_capacity(max_failures: u32, window_secs: u64, capacity: usize) -> Self {
        Self {
            max_failures,
            window_secs,
            capacity: capacity.max(1),
            sources: HashMap::new(),
        }
    }

    /// Whether `source` is locked out at `now`.
    pub(crate) fn locked_out(&self, now: u64, source: IpAddr) -> bool {
        self.sources
            .get(&source)
            .and_then(|f| f.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Counts a failed response from `source` at `now`; `true` when it locks the source out.
    pub(crate) fn failed(&mut self, now: u64, source: IpAddr) -> bool {
        if self.max_failures == 0 || self.locked_out(now, source) {
            return false;
        }
        let window_secs = self.window_secs;
        if !self.sources.contains_key(&source) {
            self.make_room(now);
        }
        let entry = self.sources.entry(source).or_insert(Failures {
            since: now,
            count: 0,
            last: now,
            locked_until: None,
        });
        if entry.expired(now, window_secs) {
            *entry = Failures {
                since: now,
                count: 0,
                last: now,
                locked_until: None,
            };
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        if entry.count >= self.max_failures {
            entry.locked_until = Some(now.saturating_add(window_secs));
            return true;
        }
        false
    }

    /// Frees one slot when the table is full: expired entries first, else the oldest.
    fn make_room(&mut self, now: u64) {
        if self.sources.len() < self.capacity {
            return;
        }
        let window_secs = self.window_secs;
        self.sources.retain(|_, f| !f.expired(now, window_secs));
        if self.sources.len() < self.capacity {
            return;
        }
        let oldest = self
            .sources
            .iter()
            .min_by_key(|(_, f)| f.last)
            .map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            self.sources.remove(&ip);
        }
    }

    /// Sources remembered (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sources.len()
    }
}
