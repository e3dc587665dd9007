//! A bounded cache of CRM answers, customers and "not a customer" alike, each kept for a fixed
//! time. Time is a parameter, so tests need no clock.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::DirectoryEntry;
use crate::identity::E164;

/// What the CRM said about a number.
pub(super) type Answer = Option<DirectoryEntry>;

/// Answers by caller number, at most `capacity` of them, each for `ttl`.
#[derive(Debug)]
pub(super) struct Cache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<E164, (Instant, Answer)>>,
}

impl Cache {
    /// An empty cache; a `ttl` or `capacity` of zero keeps nothing.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `number` if it is younger than the ttl at `now`.
    pub fn get(&self, number: &E164, now: Instant) -> Option<Answer> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, answer) = entries.get(number)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| answer.clone())
    }

    /// Keeps `answer` for `number` from `now`. When full, expired answers are dropped first,
    /// then the oldest one.
    pub fn put(&self, number: E164, answer: Answer, now: Instant) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&number) {
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < self.ttl);
            if entries.len() >= self.capacity {
                let oldest = entries.iter().min_by_key(|(_, (at, _))| *at);
                if let Some(oldest) = oldest.map(|(n, _)| n.clone()) {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(number, (now, answer));
    }

    /// How many answers are kept (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PersonalNumber;

    fn number(n: u32) -> E164 {
        E164::parse(&format!("+467012{n:05}"), "SE").unwrap()
    }

    fn entry() -> Answer {
        Some(DirectoryEntry {
            personal_number: PersonalNumber::parse("191212121212").unwrap(),
            name: None,
        })
    }

    #[test]
    fn hits_and_misses_are_kept_for_the_ttl() {
        let cache = Cache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        cache.put(number(1), entry(), t0);
        cache.put(number(2), None, t0);
        assert_eq!(
            cache.get(&number(1), t0 + Duration::from_secs(59)),
            Some(entry())
        );
        assert_eq!(
            cache.get(&number(2), t0 + Duration::from_secs(59)),
            Some(None)
        );
        assert_eq!(cache.get(&number(1), t0 + Duration::from_secs(60)), None);
        assert_eq!(cache.get(&number(3), t0), None);
    }

    #[test]
    fn the_size_is_bounded_expired_first_then_oldest() {
        let cache = Cache::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        cache.put(number(1), None, t0);
        cache.put(number(2), None, t0 + s(30));
        cache.put(number(3), None, t0 + s(40));
        cache.put(number(4), None, t0 + s(61));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&number(1), t0 + s(61)), None);
        cache.put(number(5), None, t0 + s(62));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&number(2), t0 + s(62)), None);
        assert_eq!(cache.get(&number(5), t0 + s(62)), Some(None));
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = Cache::new(Duration::ZERO, 10);
        cache.put(number(1), entry(), Instant::now());
        assert_eq!(cache.len(), 0);
    }
}
