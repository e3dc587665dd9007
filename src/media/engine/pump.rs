//! The pump: one OS thread that paces every stream's outgoing RTP.
//!
//! Why a thread and not a tokio task: tokio's timer wheel has 1 ms resolution and fires late
//! under load (the async workers also run every call task), which alone made most frames ~1 ms
//! late. `recv_timeout` on a std channel sleeps on a futex with a high-resolution deadline and
//! also wakes the moment a command arrives. A pass sends with the streams' own tokio sockets
//! (`try_send_to` needs no runtime context; their receive tasks stay on tokio).
//!
//! Why `try_send_to` and not `sendmmsg`: symmetric RTP (RFC 4961) requires each call's packets
//! to leave from the port its SDP announced, so every stream has its own socket, and
//! `sendmmsg` batches only datagrams of one socket. A stream has one frame due per pass (three
//! at most when catching up), so per-socket `sendmmsg` would carry one message per call: the
//! same syscall as `sendto` with a larger header to fill. The cost left to cut is the pass
//! itself: it visits only due streams (a timing wheel, streams in a slab), writes each packet
//! once into one reused buffer (copying the payload from audio encoded once per prompt and
//! codec, with no reference count touched), and counts lateness and packets locally, adding
//! them to the shared counters once per pass: two pumps adding to one atomic per packet made
//! its cache line bounce between the cores. With `[media] raw_send` the constraint goes: the
//! pump writes the UDP source port itself and batches a pass through one raw socket (`raw`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use super::lateness::LatenessTally;
use super::raw::RawBatch;
use super::schedule::{FrameClock, Schedule, Stagger, TICK, Visit};
use super::{Command, Control, MediaCounters};
use crate::media::playout::Playout;
use crate::media::stream::{Delivery, MediaEvent, StreamShared};

/// The least time between two passes: frames due within it are sent together, at most this
/// late by design. It is the schedule's tick (`schedule::Schedule`): shorter costs a wake-up
/// per window (a few µs); 1 ms keeps p99 under 2 ms.
pub const BATCH_WINDOW: Duration = TICK;

/// A pass whose earliest frame is this late is a late pass.
pub const OVERLOAD_LATE: Duration = Duration::from_millis(20);
/// Late passes for this long without an on-time one in between: the pump cannot keep up (the
/// machine is out of CPU for media), and new calls are refused. A single stall (a descheduled
/// thread, a VM's stolen time) is not overload.
pub const OVERLOAD_AFTER: Duration = Duration::from_secs(1);
/// How long a pump must keep its deadlines after falling behind before new calls are taken.
pub const OVERLOAD_HOLD: Duration = Duration::from_secs(2);

/// Whether one pump is behind: sans-IO, each pass's lateness and clock passed in.
#[derive(Debug, Default)]
struct OverloadWatch {
    behind: bool,
    /// The first of the late passes since the last on-time one.
    late_since: Option<Instant>,
    last_late: Option<Instant>,
}

impl OverloadWatch {
    /// Notes a pass at `now` whose earliest frame was `late`; returns the new state when it
    /// changed.
    fn pass(&mut self, late: Duration, now: Instant) -> Option<bool> {
        if late > OVERLOAD_LATE {
            self.last_late = Some(now);
            let since = *self.late_since.get_or_insert(now);
            let sustained = now.saturating_duration_since(since) >= OVERLOAD_AFTER;
            return (sustained && !std::mem::replace(&mut self.behind, true)).then_some(true);
        }
        self.late_since = None;
        let kept_up = self
            .last_late
            .is_none_or(|at| now.saturating_duration_since(at) >= OVERLOAD_HOLD);
        (self.behind && kept_up).then(|| {
            self.behind = false;
            false
        })
    }
}

/// RTCP sender reports while idgate plays: RFC 3550's 5 s minimum interval (§6.2), the first
/// after half of it, each randomized over [0.5, 1.5] of the interval (§6.3.1) so thousands of
/// streams started together do not report together.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);
const FIRST_REPORT: Duration = Duration::from_millis(2500);

fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.5 + rand::random::<f64>())
}

/// One started stream, as the pump sees it.
struct Paced {
    shared: Arc<StreamShared>,
    playout: Playout,
    clock: FrameClock,
    /// When idgate's next RTCP sender report on this stream is due.
    next_report: Instant,
    generation: u32,
    slot: usize,
}

/// The pump's state; `run` drives it.
pub(super) struct Pump {
    /// Started streams by slab index (what a `Visit` names: no hashing per packet); `None`
    /// entries are free and listed in `free`.
    streams: Vec<Option<Paced>>,
    free: Vec<u32>,
    /// Stream id to slab index, for commands.
    index: HashMap<u64, u32>,
    schedule: Schedule,
    stagger: Stagger,
    /// The visits of the pass in progress (kept to reuse its allocation).
    ready: Vec<Visit>,
    out: Outbox,
    overload: OverloadWatch,
    counters: Arc<MediaCounters>,
    generation: u32,
    /// This pump's share of `counters.paced` as last reported.
    paced_reported: u64,
}

impl Pump {
    pub(super) fn new(counters: Arc<MediaCounters>, epoch: Instant, raw: Option<RawBatch>) -> Self {
        Pump {
            streams: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            schedule: Schedule::new(epoch),
            stagger: Stagger::new(epoch),
            ready: Vec::new(),
            out: Outbox {
                packet: Vec::with_capacity(256),
                report: Vec::with_capacity(64),
                tally: LatenessTally::default(),
                sent: 0,
                dropped: 0,
                raw,
            },
            overload: OverloadWatch::default(),
            counters,
            generation: 0,
            paced_reported: 0,
        }
    }

    /// When the next pass is due: the end of the first schedule tick holding a deadline, so
    /// a thousand staggered streams cost ~20 passes per frame, not 1000.
    fn wake_at(&self) -> Option<Instant> {
        self.schedule.next_due()
    }

    fn apply(&mut self, command: Command, now: Instant) {
        match command {
            Command::Start {
                shared,
                prompts,
                codec,
            } => {
                let id = shared.id();
                self.forget(id);
                let (first, slot) = self.stagger.place(now);
                self.generation = self.generation.wrapping_add(1);
                let generation = self.generation;
                let paced = Paced {
                    shared,
                    playout: Playout::new(prompts, codec),
                    clock: FrameClock::new(first),
                    next_report: first + jittered(FIRST_REPORT),
                    generation,
                    slot,
                };
                let index = match self.free.pop() {
                    Some(index) => {
                        self.streams[index as usize] = Some(paced);
                        index
                    }
                    None => {
                        self.streams.push(Some(paced));
                        u32::try_from(self.streams.len() - 1).unwrap_or(u32::MAX)
                    }
                };
                self.index.insert(id, index);
                self.schedule.push(Visit {
                    due: first,
                    index,
                    generation,
                });
            }
            Command::Control { id, action } => {
                let Some(stream) = self.get_mut(id) else {
                    tracing::debug!(stream = id, "media control before start ignored");
                    return;
                };
                match action {
                    Control::Play(prompt, then_hold) => stream.playout.play(prompt, then_hold),
                    Control::Hold => stream.playout.hold(),
                    Control::Silence => stream.playout.silence(),
                    Control::Stop => stream.playout.stop(),
                }
            }
            Command::Remove { id } => self.forget(id),
        }
        // Several pumps share the gauge: each adds its own change.
        let paced = self.index.len() as u64;
        if paced > self.paced_reported {
            let more = paced - self.paced_reported;
            self.counters.paced.fetch_add(more, Ordering::Relaxed);
        } else {
            let fewer = self.paced_reported - paced;
            self.counters.paced.fetch_sub(fewer, Ordering::Relaxed);
        }
        self.paced_reported = paced;
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Paced> {
        let index = *self.index.get(&id)?;
        self.streams.get_mut(index as usize)?.as_mut()
    }

    /// Drops a stream (its schedule entry goes stale and is skipped when it comes up).
    fn forget(&mut self, id: u64) {
        let Some(index) = self.index.remove(&id) else {
            return;
        };
        if let Some(old) = self.streams.get_mut(index as usize).and_then(Option::take) {
            self.stagger.release(old.slot);
            self.free.push(index);
        }
    }

    /// Sends every frame due at `now`, each stream's in order, and tallies their lateness.
    fn pass(&mut self, now: Instant) {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        self.schedule.take_due(now, &mut ready);
        if let Some(first) = ready.first() {
            let late = now.saturating_duration_since(first.due);
            match self.overload.pass(late, now) {
                Some(true) => {
                    self.counters.pumps_behind.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        late_ms = late.as_millis(),
                        streams = self.index.len(),
                        "media pump behind its deadlines: new calls refused (503) until it keeps up"
                    );
                }
                Some(false) => {
                    self.counters.pumps_behind.fetch_sub(1, Ordering::Relaxed);
                    tracing::info!("media pump keeps up again: new calls taken");
                }
                None => {}
            }
        }
        for visit in &ready {
            let Some(Some(stream)) = self.streams.get_mut(visit.index as usize) else {
                continue;
            };
            if stream.generation != visit.generation {
                continue;
            }
            self.out.send_due(stream, now, &self.counters);
            self.schedule.push(Visit {
                due: stream.clock.next_due(),
                ..*visit
            });
        }
        self.ready = ready;
        self.out.finish_pass(&self.counters);
    }
}

/// How a pass sends: one packet buffer, the pass's tallies (added to the shared counters once
/// per pass), and the raw batch when `[media] raw_send` is on.
struct Outbox {
    packet: Vec<u8>,
    /// For RTCP sender reports.
    report: Vec<u8>,
    tally: LatenessTally,
    sent: u64,
    dropped: u64,
    raw: Option<RawBatch>,
}

impl Outbox {
    /// Sends one stream's due frames. The lateness of each is taken just before its send (the
    /// same clock reading the stream's RTP continuity gets), so a long pass shows in the
    /// histogram; on the raw path, just before it joins the batch, which leaves within the
    /// next 64 packets.
    fn send_due(&mut self, stream: &mut Paced, now: Instant, counters: &MediaCounters) {
        let due = stream.clock.poll(now);
        if due.skip > 0 {
            tracing::debug!(
                stream = stream.shared.id(),
                frames = due.skip,
                "media pump behind; frames skipped"
            );
            stream.playout.skip(due.skip);
            counters
                .frames_skipped
                .fetch_add(u64::from(due.skip), Ordering::Relaxed);
        }
        let mut played = false;
        for k in 0..due.send {
            let (header, finished) = stream.playout.next_packet(&mut self.packet);
            if let Some(header) = header {
                played = true;
                let at = Instant::now();
                self.tally
                    .record(at.saturating_duration_since(due.intended(k)));
                let shared = &stream.shared;
                // The route is asked for only with a raw batch: it locks the stream's remote.
                let route = match self.raw.as_mut() {
                    Some(raw) => shared.raw_route().map(|route| (raw, route)),
                    None => None,
                };
                match route {
                    Some((raw, (from, to))) => {
                        if !shared.rewrite_playout(&mut self.packet, &header, at) {
                            self.dropped += 1;
                            continue;
                        }
                        if raw.is_full() {
                            let (sent, dropped) = raw.flush();
                            self.sent += sent;
                            self.dropped += dropped;
                        }
                        if !raw.push(from, to, &self.packet) {
                            self.dropped += 1;
                        }
                    }
                    None => {
                        let delivery = shared.send_playout(&mut self.packet, &header, at);
                        self.count(delivery);
                    }
                }
            }
            if let Some(prompt) = finished {
                stream.shared.emit(MediaEvent::PromptDone(prompt));
            }
        }
        // While idgate plays it is the stream's sender and reports on it; once bridged the far
        // ends' own reports are relayed instead.
        if played && now >= stream.next_report {
            stream
                .shared
                .send_report(std::time::SystemTime::now(), &mut self.report);
            stream.next_report = now + jittered(REPORT_INTERVAL);
        }
    }

    fn count(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Sent => self.sent += 1,
            Delivery::Dropped => self.dropped += 1,
            Delivery::NoRemote => {}
        }
    }

    /// Sends what waits in the raw batch and adds the pass's tallies to the shared counters.
    fn finish_pass(&mut self, counters: &MediaCounters) {
        if let Some(raw) = self.raw.as_mut() {
            let (sent, dropped) = raw.flush();
            self.sent += sent;
            self.dropped += dropped;
        }
        self.tally.flush(&counters.lateness);
        counters.add_sent(self.sent, self.dropped);
        (self.sent, self.dropped) = (0, 0);
    }
}

/// The pump thread: applies commands and runs passes until every command sender is gone.
pub(super) fn run(
    commands: Receiver<Command>,
    counters: Arc<MediaCounters>,
    raw: Option<RawBatch>,
) {
    let mut pump = Pump::new(counters, Instant::now(), raw);
    loop {
        // Commands first, all of them: a pass must not be starved by a busy channel, and a
        // burst of starts should be placed before the pass that sends their first frames.
        loop {
            match commands.try_recv() {
                Ok(command) => pump.apply(command, Instant::now()),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let now = Instant::now();
        let received = match pump.wake_at() {
            Some(at) if at <= now => {
                pump.pass(now);
                continue;
            }
            Some(at) => commands.recv_timeout(at - now),
            None => commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(command) => pump.apply(command, Instant::now()),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_pump_is_behind_after_a_second_of_late_passes_until_it_keeps_up_for_the_hold() {
        let t = Instant::now();
        let mut watch = OverloadWatch::default();
        // On time, and late by less than a frame: nothing to report.
        assert_eq!(watch.pass(ms(0), t), None);
        assert_eq!(watch.pass(ms(20), t + ms(1)), None);
        // A stall: late passes for 900 ms, then on time. Not overload.
        assert_eq!(watch.pass(ms(50), t + ms(10)), None);
        assert_eq!(watch.pass(ms(50), t + ms(910)), None);
        assert_eq!(watch.pass(ms(1), t + ms(911)), None);
        assert_eq!(watch.pass(ms(50), t + ms(1500)), None);
        // Late passes for a whole second: behind (reported once).
        assert_eq!(watch.pass(ms(60), t + ms(2499)), None);
        assert_eq!(watch.pass(ms(60), t + ms(2500)), Some(true));
        assert_eq!(watch.pass(ms(80), t + ms(2600)), None);
        // On time again, but not yet for the whole hold after the last late pass.
        let last_late = t + ms(2600);
        assert_eq!(watch.pass(ms(0), last_late + OVERLOAD_HOLD - ms(1)), None);
        assert_eq!(watch.pass(ms(0), last_late + OVERLOAD_HOLD), Some(false));
        assert_eq!(watch.pass(ms(0), last_late + OVERLOAD_HOLD + ms(5)), None);
    }
}
