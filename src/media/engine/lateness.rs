//! Send lateness: how long after its deadline each RTP frame was handed to the kernel. The
//! pump tallies a pass locally (`LatenessTally`, plain integers) and adds it to the shared
//! histogram once per pass, so a packet costs no atomic operation; `/metrics` reads a
//! `LatenessSnapshot`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the lateness buckets, in microseconds (0.1 ms .. 50 ms; fine below 2 ms,
/// where the targets are, coarse above). A last bucket takes everything later.
pub const LATENESS_BUCKETS_US: [u64; 16] = [
    100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000,
    30_000, 50_000,
];
/// Buckets including the overflow one.
const BUCKETS: usize = LATENESS_BUCKETS_US.len() + 1;

fn bucket(late: Duration) -> usize {
    let nanos = late.as_nanos();
    LATENESS_BUCKETS_US.partition_point(|&us| u128::from(us) * 1_000 < nanos)
}

/// The engine's lateness histogram since start (shared with `/metrics`).
#[derive(Debug, Default)]
pub struct LatenessHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl LatenessHistogram {
    /// The counts now.
    pub fn snapshot(&self) -> LatenessSnapshot {
        LatenessSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// The histogram at one moment: per-bucket (not cumulative) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatenessSnapshot {
    counts: [u64; BUCKETS],
    sum_nanos: u64,
}

impl LatenessSnapshot {
    /// Frames measured.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The total lateness, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        Duration::from_nanos(self.sum_nanos).as_secs_f64()
    }

    /// (upper bound in seconds, count in that bucket), the last bound infinite: what the
    /// Prometheus encoder takes.
    pub fn buckets(&self) -> [(f64, u64); BUCKETS] {
        std::array::from_fn(|i| {
            let upper = LATENESS_BUCKETS_US
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            (upper, self.counts[i])
        })
    }
}

/// One pass's lateness, kept in plain integers until `flush`.
#[derive(Debug, Default)]
pub(crate) struct LatenessTally {
    counts: [u64; BUCKETS],
    sum_nanos: u64,
    any: bool,
}

impl LatenessTally {
    /// One frame sent `late` after its deadline (zero when on time).
    pub fn record(&mut self, late: Duration) {
        self.counts[bucket(late)] += 1;
        let nanos = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
        self.any = true;
    }

    /// Adds the tally to `histogram` and starts over.
    pub fn flush(&mut self, histogram: &LatenessHistogram) {
        if !std::mem::take(&mut self.any) {
            return;
        }
        for (shared, count) in histogram.counts.iter().zip(&mut self.counts) {
            if *count > 0 {
                shared.fetch_add(std::mem::take(count), Ordering::Relaxed);
            }
        }
        histogram
            .sum_nanos
            .fetch_add(std::mem::take(&mut self.sum_nanos), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_late_frames_overflow() {
        let us = Duration::from_micros;
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(us(100)), 0);
        assert_eq!(bucket(us(101)), 1);
        assert_eq!(bucket(us(2_000)), 7);
        assert_eq!(bucket(us(50_000)), 15);
        assert_eq!(bucket(Duration::from_secs(3)), 16);
    }

    #[test]
    fn a_tally_reaches_the_histogram_once() {
        let histogram = LatenessHistogram::default();
        let mut tally = LatenessTally::default();
        for us in [50, 150, 150, 60_000] {
            tally.record(Duration::from_micros(us));
        }
        tally.flush(&histogram);
        tally.flush(&histogram);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 4);
        assert!((snapshot.sum_seconds() - 0.06035).abs() < 1e-9);
        let buckets = snapshot.buckets();
        assert_eq!(buckets[0], (0.0001, 1));
        assert_eq!(buckets[1], (0.0002, 2));
        assert_eq!(buckets[16], (f64::INFINITY, 1));
    }
}
