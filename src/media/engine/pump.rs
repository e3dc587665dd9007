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
//! itself: it visits only due streams (a heap), reuses one packet buffer, shares encoded audio
//! (`Arc<[u8]>` per prompt and codec), and tallies lateness without atomics per packet.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use super::lateness::LatenessTally;
use super::schedule::{FrameClock, Schedule, Stagger, Visit};
use super::{Command, Control, MediaCounters};
use crate::media::playout::Playout;
use crate::media::stream::{MediaEvent, StreamShared};

/// The least time between two passes: frames due within it are sent together, at most this
/// late by design. Shorter costs a wake-up per window (a few µs); 1 ms keeps p99 under 2 ms.
pub const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// One started stream, as the pump sees it.
struct Paced {
    shared: Arc<StreamShared>,
    playout: Playout,
    clock: FrameClock,
    generation: u32,
    slot: usize,
}

/// The pump's state; `run` drives it.
pub(super) struct Pump {
    streams: HashMap<u64, Paced>,
    schedule: Schedule,
    stagger: Stagger,
    packet: Vec<u8>,
    tally: LatenessTally,
    counters: Arc<MediaCounters>,
    last_pass: Option<Instant>,
    generation: u32,
    /// This pump's share of `counters.paced` as last reported.
    paced_reported: u64,
}

impl Pump {
    pub(super) fn new(counters: Arc<MediaCounters>, epoch: Instant) -> Self {
        Pump {
            streams: HashMap::new(),
            schedule: Schedule::default(),
            stagger: Stagger::new(epoch),
            packet: Vec::with_capacity(256),
            tally: LatenessTally::default(),
            counters,
            last_pass: None,
            generation: 0,
            paced_reported: 0,
        }
    }

    /// When the next pass is due: the earliest deadline, but not sooner than one window after
    /// the last pass (so a thousand staggered streams cost ~50 passes per frame, not 1000).
    fn wake_at(&self) -> Option<Instant> {
        let due = self.schedule.next_due()?;
        Some(match self.last_pass {
            Some(last) => due.max(last + BATCH_WINDOW),
            None => due,
        })
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
                self.schedule.push(Visit {
                    due: first,
                    id,
                    generation,
                });
                let paced = Paced {
                    shared,
                    playout: Playout::new(prompts, codec),
                    clock: FrameClock::new(first),
                    generation,
                    slot,
                };
                self.streams.insert(id, paced);
            }
            Command::Control { id, action } => {
                let Some(stream) = self.streams.get_mut(&id) else {
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
        let paced = self.streams.len() as u64;
        if paced > self.paced_reported {
            let more = paced - self.paced_reported;
            self.counters.paced.fetch_add(more, Ordering::Relaxed);
        } else {
            let fewer = self.paced_reported - paced;
            self.counters.paced.fetch_sub(fewer, Ordering::Relaxed);
        }
        self.paced_reported = paced;
    }

    /// Drops a stream (its heap entry goes stale and is skipped when it comes up).
    fn forget(&mut self, id: u64) {
        if let Some(old) = self.streams.remove(&id) {
            self.stagger.release(old.slot);
        }
    }

    /// Sends every frame due at `now`, each stream's in order, and tallies their lateness.
    fn pass(&mut self, now: Instant) {
        self.last_pass = Some(now);
        while let Some(visit) = self.schedule.pop_due(now) {
            let Some(stream) = self.streams.get_mut(&visit.id) else {
                continue;
            };
            if stream.generation != visit.generation {
                continue;
            }
            send_due(
                stream,
                now,
                &mut self.packet,
                &mut self.tally,
                &self.counters,
            );
            self.schedule.push(Visit {
                due: stream.clock.next_due(),
                ..visit
            });
        }
        self.tally.flush(&self.counters.lateness);
    }
}

/// Sends one stream's due frames. The lateness of each is taken just before its send, so a
/// long pass shows in the histogram.
fn send_due(
    stream: &mut Paced,
    now: Instant,
    packet: &mut Vec<u8>,
    tally: &mut LatenessTally,
    counters: &MediaCounters,
) {
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
    for k in 0..due.send {
        let (frame, finished) = stream.playout.next_frame();
        if let Some(frame) = frame {
            frame.write_packet(packet);
            tally.record(Instant::now().saturating_duration_since(due.intended(k)));
            stream.shared.send_to_remote(packet);
        }
        if let Some(prompt) = finished {
            stream.shared.emit(MediaEvent::PromptDone(prompt));
        }
    }
}

/// The pump thread: applies commands and runs passes until every command sender is gone.
pub(super) fn run(commands: Receiver<Command>, counters: Arc<MediaCounters>) {
    let mut pump = Pump::new(counters, Instant::now());
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
