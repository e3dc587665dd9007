//! When frames are due, without a clock or sockets: each stream's absolute 20 ms deadlines
//! (`FrameClock`), where in the frame a new stream starts (`Stagger`), and the order the pump
//! visits due streams in (`Schedule`). The pump passes `now`; tests pass made-up instants.

use std::time::{Duration, Instant};

/// The RTP frame interval.
pub const FRAME: Duration = Duration::from_millis(20);
/// The most frames one stream sends in one pass when the pump fell behind; older ones are
/// skipped (the timestamp jumps, the sequence number does not).
pub const MAX_CATCH_UP: u32 = 3;
/// How many phase slots the frame is cut into for staggering (1 ms each).
pub const SLOTS: usize = 20;
const SLOT: Duration = Duration::from_millis(1);
/// The schedule's granularity: one phase slot.
pub const TICK: Duration = SLOT;

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

/// One visit the pump owes a stream: at `due`, the stream in slab entry `index`, in its
/// `generation` (a restarted or removed stream leaves a stale entry behind, skipped when it
/// comes up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Visit {
    pub due: Instant,
    pub index: u32,
    pub generation: u32,
}

/// Ticks on the wheel: more than a frame's worth plus one, so every visit a pass pushes (due
/// within the next frame) lands in a bucket the cursor has not passed.
const WHEEL: usize = 64;

/// The streams' next deadlines, on a timing wheel of 1 ms ticks counted from the pump's epoch
/// (the stagger's, so placed deadlines fall on tick boundaries). Bucket `t % WHEEL` holds the
/// visits due in `(t - 1, t]` ms. A pass takes the buckets whose tick has come, in tick order:
/// O(1) per visit, where a binary heap of 4,000 streams cost ~12 comparisons and a cold cache
/// line per level (3.7 % of the pump in a profile at 4,000 held calls). The granularity is the
/// pump's batch window anyway: frames due within one tick are sent in one pass.
#[derive(Debug)]
pub(crate) struct Schedule {
    epoch: Instant,
    buckets: Vec<Vec<Visit>>,
    /// The first tick not yet taken.
    cursor: u64,
    /// Visits in the buckets.
    queued: usize,
}

impl Schedule {
    /// An empty wheel whose tick 0 is at `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Schedule {
            epoch,
            buckets: (0..WHEEL).map(|_| Vec::new()).collect(),
            cursor: 0,
            queued: 0,
        }
    }

    /// The tick whose bucket holds a deadline at `at` (rounded up).
    fn tick_of(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos.div_ceil(TICK.as_nanos())).unwrap_or(u64::MAX)
    }

    /// The last tick that has fully come at `now` (rounded down).
    fn ticks_at(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos / TICK.as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant_of(&self, tick: u64) -> Instant {
        self.epoch + TICK * u32::try_from(tick).unwrap_or(u32::MAX)
    }

    /// Adds a visit. One due before the cursor goes in the cursor's bucket (the next pass).
    /// After the wheel idled (no streams) the cursor is behind: a new visit may then be more
    /// than a turn ahead, which costs one early pass, whose `now` brings the cursor up.
    pub fn push(&mut self, visit: Visit) {
        let tick = self.tick_of(visit.due).max(self.cursor);
        self.buckets[(tick % WHEEL as u64) as usize].push(visit);
        self.queued += 1;
    }

    /// Moves every visit due at `now` to `ready`, earliest tick first. A visit more than a
    /// wheel turn ahead stays put.
    pub fn take_due(&mut self, now: Instant, ready: &mut Vec<Visit>) {
        let last = self.ticks_at(now);
        if last < self.cursor {
            return;
        }
        let turns = (last - self.cursor + 1).min(WHEEL as u64);
        for tick in self.cursor..self.cursor + turns {
            let bucket = &mut self.buckets[(tick % WHEEL as u64) as usize];
            let before = bucket.len();
            let mut kept = 0;
            for i in 0..before {
                let visit = bucket[i];
                if visit.due <= now {
                    ready.push(visit);
                } else {
                    bucket[kept] = visit;
                    kept += 1;
                }
            }
            bucket.truncate(kept);
            self.queued -= before - kept;
        }
        self.cursor = last + 1;
    }

    /// When the next visit is due: the end of the first tick with a visit (its bucket's
    /// deadlines are all at or before it).
    pub fn next_due(&self) -> Option<Instant> {
        if self.queued == 0 {
            return None;
        }
        (self.cursor..self.cursor + WHEEL as u64)
            .find(|tick| !self.buckets[(tick % WHEEL as u64) as usize].is_empty())
            .map(|tick| self.instant_of(tick))
    }

    /// Visits held, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queued
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

    fn visit(due: Instant, index: u32) -> Visit {
        Visit {
            due,
            index,
            generation: 0,
        }
    }

    fn take(schedule: &mut Schedule, now: Instant) -> Vec<u32> {
        let mut ready = Vec::new();
        schedule.take_due(now, &mut ready);
        ready.iter().map(|v| v.index).collect()
    }

    #[test]
    fn schedule_takes_due_visits_by_tick() {
        let t = Instant::now();
        let mut schedule = Schedule::new(t);
        let micros = Duration::from_micros;
        for (due, index) in [(ms(30), 3), (ms(10), 1), (ms(20), 2), (ms(10), 4)] {
            schedule.push(visit(t + due, index));
        }
        assert_eq!(schedule.next_due(), Some(t + ms(10)));
        // Tick order; push order within a tick.
        assert_eq!(take(&mut schedule, t + ms(20)), vec![1, 4, 2]);
        assert_eq!(schedule.len(), 1);
        // A deadline in a tick the wheel has passed (10.4 ms: tick 11) goes to the next pass.
        assert_eq!(
            take(&mut schedule, t + ms(20) + micros(500)),
            Vec::<u32>::new()
        );
        schedule.push(visit(t + micros(10_400), 6));
        assert_eq!(schedule.next_due(), Some(t + ms(21)));
        assert_eq!(take(&mut schedule, t + ms(21)), vec![6]);
        // Not before its deadline, even within its tick.
        assert_eq!(
            take(&mut schedule, t + ms(29) + micros(999)),
            Vec::<u32>::new()
        );
        assert_eq!(schedule.next_due(), Some(t + ms(30)));
        assert_eq!(take(&mut schedule, t + ms(30)), vec![3]);
        assert_eq!(schedule.next_due(), None);
    }

    #[test]
    fn schedule_catches_up_after_a_stall_and_restarts_after_idling() {
        let t = Instant::now();
        let mut schedule = Schedule::new(t);
        for i in 0..20 {
            schedule.push(visit(t + ms(u64::from(i)), i));
        }
        // A 500 ms stall (many wheel turns): everything is due, earliest first, once.
        let late = take(&mut schedule, t + ms(500));
        assert_eq!(late, (0..20).collect::<Vec<u32>>());
        assert_eq!(schedule.len(), 0);
        // A visit a frame after the stall lands in reach of the cursor.
        schedule.push(visit(t + ms(520), 7));
        assert_eq!(schedule.next_due(), Some(t + ms(520)));
        // Idle for a minute, then new streams: one early pass (at the pump's real time)
        // brings the cursor up to them.
        assert_eq!(take(&mut schedule, t + ms(520)), vec![7]);
        let later = t + Duration::from_secs(60);
        schedule.push(visit(later + ms(3), 8));
        schedule.push(visit(later + ms(23), 9));
        assert!(schedule.next_due().is_some_and(|at| at < later));
        assert_eq!(take(&mut schedule, later), Vec::<u32>::new());
        assert_eq!(schedule.next_due(), Some(later + ms(3)));
        assert_eq!(take(&mut schedule, later + ms(22)), vec![8]);
        assert_eq!(take(&mut schedule, later + ms(23)), vec![9]);
    }

    #[test]
    fn a_visit_more_than_a_turn_ahead_waits_for_its_turn() {
        let t = Instant::now();
        let mut schedule = Schedule::new(t);
        schedule.push(visit(t + ms(1), 1));
        // 100 ms ahead: shares a bucket with tick 36 (100 - 64).
        schedule.push(visit(t + ms(100), 2));
        assert_eq!(take(&mut schedule, t + ms(1)), vec![1]);
        assert_eq!(take(&mut schedule, t + ms(40)), Vec::<u32>::new());
        assert_eq!(schedule.len(), 1);
        assert_eq!(take(&mut schedule, t + ms(99)), Vec::<u32>::new());
        assert_eq!(take(&mut schedule, t + ms(100)), vec![2]);
    }
}
