//! When frames are due, without a clock or sockets: each stream's absolute 20 ms deadlines
//! (`FrameClock`), where in the frame a new stream starts (`Stagger`), and the order the pump
//! visits due streams in (`Schedule`). The pump passes `now`; tests pass made-up instants.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// The RTP frame interval.
pub const FRAME: Duration = Duration::from_millis(20);
/// The most frames one stream sends in one pass when the pump fell behind; older ones are
/// skipped (the timestamp jumps, the sequence number does not).
pub const MAX_CATCH_UP: u32 = 3;
/// How many phase slots the frame is cut into for staggering (1 ms each).
pub const SLOTS: usize = 20;
const SLOT: Duration = Duration::from_millis(1);

/// A stream's deadlines: one every 20 ms from its first, however late the sends are, so the
/// RTP timestamps (advanced per due frame) stay on the ideal grid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameClock {
    next_due: Instant,
}

/// What is due at a pass: frames to send now, frames to skip because the pump fell too far
/// behind, and the deadline of the first frame sent (the later ones follow every 20 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub send: u32,
    pub skip: u32,
    pub first: Instant,
}

impl Due {
    /// The deadline of the `k`-th frame sent in this pass (0-based).
    pub fn intended(&self, k: u32) -> Instant {
        self.first + FRAME * k
    }
}

impl FrameClock {
    /// A clock whose first frame is due at `first`.
    pub fn new(first: Instant) -> Self {
        FrameClock { next_due: first }
    }

    /// The next deadline.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// The frames due at `now`; moves the deadline past them.
    pub fn poll(&mut self, now: Instant) -> Due {
        let was = self.next_due;
        if now < was {
            return Due {
                send: 0,
                skip: 0,
                first: was,
            };
        }
        let behind = now.duration_since(was).as_micros() / FRAME.as_micros();
        let due = u32::try_from(behind + 1).unwrap_or(u32::MAX);
        self.next_due += FRAME * due;
        let send = due.min(MAX_CATCH_UP);
        let skip = due - send;
        Due {
            send,
            skip,
            first: was + FRAME * skip,
        }
    }
}

/// Spreads streams over the 20 ms frame: a new stream starts in the 1 ms slot (phase relative
/// to the engine's epoch) that has the fewest streams, so a burst of calls answered in the same
/// millisecond does not make every later pass send them all at once. Waiting up to one frame
/// for the first packet is harmless: the caller hears the greeting at most 20 ms later.
#[derive(Debug)]
pub(crate) struct Stagger {
    epoch: Instant,
    load: [u32; SLOTS],
}

impl Stagger {
    /// An empty frame whose phase 0 is at `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Stagger {
            epoch,
            load: [0; SLOTS],
        }
    }

    /// The slot `at` falls in.
    pub fn slot_of(&self, at: Instant) -> usize {
        let phase = at.saturating_duration_since(self.epoch).as_nanos() % FRAME.as_nanos();
        (phase / SLOT.as_nanos()) as usize % SLOTS
    }

    /// Places a stream starting at `now`: the least loaded slot, the soonest of equals. Returns
    /// its first deadline and its slot (to `release` later).
    pub fn place(&mut self, now: Instant) -> (Instant, usize) {
        let frame = FRAME.as_nanos();
        let phase = now.saturating_duration_since(self.epoch).as_nanos() % frame;
        let current = self.slot_of(now);
        let wait = |slot: usize| {
            if slot == current {
                0
            } else {
                (slot as u128 * SLOT.as_nanos() + frame - phase) % frame
            }
        };
        let slot = (0..SLOTS)
            .min_by_key(|&slot| (self.load[slot], wait(slot)))
            .unwrap_or(current);
        self.load[slot] += 1;
        let wait = u64::try_from(wait(slot)).unwrap_or(0);
        (now + Duration::from_nanos(wait), slot)
    }

    /// A stream placed in `slot` is gone.
    pub fn release(&mut self, slot: usize) {
        if let Some(load) = self.load.get_mut(slot) {
            *load = load.saturating_sub(1);
        }
    }

    /// Streams per slot.
    #[cfg(test)]
    pub fn load(&self) -> [u32; SLOTS] {
        self.load
    }
}

/// One visit the pump owes a stream: at `due`, stream `id` in its `generation` (a restarted or
/// removed stream leaves a stale entry behind, skipped when it comes up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Visit {
    pub due: Instant,
    pub id: u64,
    pub generation: u32,
}

/// The streams' next deadlines in order: a binary heap, so a pass touches only the streams
/// that are due (O(log n) each), never all of them. No allocation once it has grown to the
/// number of streams.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    heap: BinaryHeap<Reverse<Visit>>,
}

impl Schedule {
    /// Adds a visit.
    pub fn push(&mut self, visit: Visit) {
        self.heap.push(Reverse(visit));
    }

    /// The earliest visit due at `now`, removed.
    pub fn pop_due(&mut self, now: Instant) -> Option<Visit> {
        let Reverse(next) = self.heap.peek()?;
        if next.due > now {
            return None;
        }
        self.heap.pop().map(|Reverse(visit)| visit)
    }

    /// The earliest deadline.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(visit)| visit.due)
    }

    /// Visits held, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn frame_clock_sends_on_time_and_catches_up_a_little() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start);
        let due = |send, skip, first| Due { send, skip, first };
        assert_eq!(clock.poll(start), due(1, 0, start));
        assert_eq!(clock.poll(start + ms(10)), due(0, 0, start + ms(20)));
        assert_eq!(clock.poll(start + ms(21)), due(1, 0, start + ms(20)));
        // 45 ms late: three frames due (at 40, 60 and 80 ms).
        let three = clock.poll(start + ms(85));
        assert_eq!(three, due(3, 0, start + ms(40)));
        assert_eq!(three.intended(2), start + ms(80));
        assert_eq!(clock.next_due(), start + ms(100));
        // A 200 ms stall: frames 100..=300 are due, the last 3 are sent, the rest skipped.
        let stall = clock.poll(start + ms(300));
        assert_eq!(stall, due(3, 8, start + ms(260)));
        assert_eq!(clock.next_due(), start + ms(320));
    }

    #[test]
    fn deadlines_stay_on_the_grid_whatever_the_pass_times() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start);
        let mut frames = 0;
        // Passes at irregular times, sometimes late by most of a frame.
        for at in [0, 3, 19, 20, 39, 41, 77, 79, 99, 140, 141, 180] {
            let due = clock.poll(start + ms(at));
            frames += due.send + due.skip;
        }
        // Every frame due by 180 ms (0, 20, ..., 180) counted exactly once.
        assert_eq!(frames, 10);
        assert_eq!(clock.next_due(), start + ms(200));
    }

    #[test]
    fn stagger_spreads_a_burst_over_the_frame() {
        let epoch = Instant::now();
        let mut stagger = Stagger::new(epoch);
        let now = epoch + Duration::from_micros(5_300); // in slot 5
        let placed: Vec<(Instant, usize)> = (0..40).map(|_| stagger.place(now)).collect();
        // The first starts at once; then the soonest empty slots, in order.
        assert_eq!(placed[0], (now, 5));
        assert_eq!(placed[1], (epoch + ms(6), 6));
        assert_eq!(placed[15], (epoch + ms(20), 0));
        assert_eq!(placed[19].1, 4);
        assert_eq!(stagger.load(), [2; SLOTS]);
        assert!(placed.iter().all(|(at, _)| *at >= now && *at < now + FRAME));
        for (at, slot) in &placed[1..] {
            assert_eq!(stagger.slot_of(*at), *slot);
        }
        stagger.release(9);
        stagger.release(99); // out of range: ignored
        assert_eq!(stagger.place(now).1, 9);
    }

    #[test]
    fn schedule_pops_due_visits_in_order() {
        let t = Instant::now();
        let mut schedule = Schedule::default();
        for (due, id) in [(30, 3), (10, 1), (20, 2), (10, 4)] {
            schedule.push(Visit {
                due: t + ms(due),
                id,
                generation: 0,
            });
        }
        assert_eq!(schedule.next_due(), Some(t + ms(10)));
        let mut ids = Vec::new();
        while let Some(visit) = schedule.pop_due(t + ms(20)) {
            ids.push(visit.id);
        }
        assert_eq!(ids, vec![1, 4, 2]);
        assert_eq!(schedule.len(), 1);
        assert_eq!(schedule.pop_due(t + ms(29)), None);
        assert_eq!(schedule.next_due(), Some(t + ms(30)));
    }
}
