//! The media engine: RTP port allocation and ONE pump task that paces every stream.
//!
//! Each started stream has absolute 20 ms deadlines counted from its start time, so calls are
//! naturally staggered across the frame. The pump sleeps until the earliest deadline (at least
//! [`BATCH_WINDOW`] after its last pass), then sends every stream's due frames with non-blocking
//! `try_send_to`. A later step replaces the per-packet send with `sendmmsg` batches.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::PromptId;
use super::g711::Codec;
use super::playout::Playout;
use super::prompts::PromptSet;
use super::stream::{MediaEvent, MediaStream, StreamShared};

/// The RTP frame interval.
pub const FRAME: Duration = Duration::from_millis(20);
/// The least time between two pump passes: frames due within it are sent together.
pub const BATCH_WINDOW: Duration = Duration::from_millis(2);
/// The most frames one stream sends in one pass when the pump fell behind; older ones are
/// skipped (the timestamp jumps, the sequence number does not).
pub const MAX_CATCH_UP: u32 = 3;

/// Where RTP sockets are bound.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The local address to bind RTP sockets to.
    pub bind_ip: IpAddr,
    /// The lowest RTP port (even ports from the range are used).
    pub port_min: u16,
    /// The highest RTP port.
    pub port_max: u16,
}

/// Why a media stream could not be opened.
#[derive(Debug, Error)]
pub enum MediaError {
    /// Every even port in the configured range is in use (the call is refused with 503).
    #[error("no free RTP port in the configured range")]
    NoPorts,
    /// Binding the RTP socket failed for another reason (local configuration).
    #[error("RTP socket: {0}")]
    Io(#[from] std::io::Error),
}

/// What the media path did since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct MediaCounters {
    /// RTP packets handed to the kernel (prompts, hold music, relay).
    pub packets_sent: AtomicU64,
    /// RTP packets dropped because the socket buffer was full or the send failed.
    pub packets_not_sent: AtomicU64,
    /// RTP datagrams received.
    pub packets_received: AtomicU64,
    /// Streams open now.
    pub streams: AtomicU64,
}

/// The shared media engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MediaEngine {
    config: Arc<MediaConfig>,
    ports: Arc<Mutex<PortPool>>,
    commands: mpsc::UnboundedSender<Command>,
    counters: Arc<MediaCounters>,
}

impl MediaEngine {
    /// Starts the engine, spawning its pump on the current tokio runtime (panics outside one).
    /// The pump ends when the engine and all its streams are dropped.
    pub fn start(config: MediaConfig) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(pump(receiver));
        MediaEngine {
            ports: Arc::new(Mutex::new(PortPool::new(config.port_min, config.port_max))),
            config: Arc::new(config),
            commands,
            counters: Arc::default(),
        }
    }

    /// The engine's packet and stream counts.
    pub fn counters(&self) -> Arc<MediaCounters> {
        Arc::clone(&self.counters)
    }

    /// Binds a socket on a free even port in the range and starts receiving on it.
    pub async fn open(&self, prompts: Arc<PromptSet>) -> Result<MediaStream, MediaError> {
        let (socket, lease) = self.bind()?;
        let local = socket.local_addr()?;
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        Ok(MediaStream::new(
            socket,
            local,
            lease,
            prompts,
            self.commands.clone(),
            Arc::clone(&self.counters),
        ))
    }

    fn bind(&self) -> Result<(std::net::UdpSocket, PortLease), MediaError> {
        let mut pool = lock(&self.ports);
        for port in pool.candidates() {
            match std::net::UdpSocket::bind((self.config.bind_ip, port)) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    pool.take(port);
                    let lease = PortLease {
                        port,
                        pool: Arc::clone(&self.ports),
                    };
                    return Ok((socket, lease));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(MediaError::Io(e)),
            }
        }
        Err(MediaError::NoPorts)
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The even ports of the range, handed out round-robin so a freed port rests before reuse.
#[derive(Debug)]
struct PortPool {
    first: u16,
    count: usize,
    next: usize,
    in_use: HashSet<u16>,
}

impl PortPool {
    fn new(min: u16, max: u16) -> Self {
        let first = u32::from(min.max(2));
        let first = first + first % 2;
        let max = u32::from(max);
        let count = if first > max {
            0
        } else {
            ((max - first) / 2 + 1) as usize
        };
        PortPool {
            first: first.min(u32::from(u16::MAX)) as u16,
            count,
            next: 0,
            in_use: HashSet::new(),
        }
    }

    /// Free ports, starting after the last one taken.
    fn candidates(&self) -> Vec<u16> {
        (0..self.count)
            .map(|i| (self.next + i) % self.count)
            .map(|i| self.first + 2 * i as u16)
            .filter(|port| !self.in_use.contains(port))
            .collect()
    }

    fn take(&mut self, port: u16) {
        self.in_use.insert(port);
        self.next = usize::from((port - self.first) / 2 + 1) % self.count.max(1);
    }
}

/// A port taken from the pool, returned when dropped (after the socket closed).
#[derive(Debug)]
pub(crate) struct PortLease {
    port: u16,
    pool: Arc<Mutex<PortPool>>,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        lock(&self.pool).in_use.remove(&self.port);
    }
}

/// What a `MediaStream` asks of the pump.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start (or restart) sending silence with this codec.
    Start {
        /// The stream.
        shared: Arc<StreamShared>,
        /// Its prompts.
        prompts: Arc<PromptSet>,
        /// The negotiated codec.
        codec: Codec,
    },
    /// Change what a started stream plays.
    Control {
        /// The stream.
        id: u64,
        /// What to play.
        action: Control,
    },
    /// Forget the stream (dropped).
    Remove {
        /// The stream.
        id: u64,
    },
}

/// What to play on a started stream.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    /// A prompt, then hold music (`true`) or silence.
    Play(PromptId, bool),
    /// Hold music.
    Hold,
    /// Silence.
    Silence,
    /// Nothing (bridged or stopped).
    Stop,
}

/// When a stream's frames are due: absolute deadlines every 20 ms from its start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameClock {
    next_due: Instant,
}

/// Frames to send now, and frames to skip because the pump fell too far behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    send: u32,
    skip: u32,
}

impl FrameClock {
    fn new(start: Instant) -> Self {
        FrameClock { next_due: start }
    }

    /// The frames due at `now`; moves the deadline past them.
    fn poll(&mut self, now: Instant) -> Due {
        if now < self.next_due {
            return Due { send: 0, skip: 0 };
        }
        let behind = now.duration_since(self.next_due).as_micros() / FRAME.as_micros();
        let due = u32::try_from(behind + 1).unwrap_or(u32::MAX);
        self.next_due += FRAME * due;
        let send = due.min(MAX_CATCH_UP);
        Due {
            send,
            skip: due - send,
        }
    }
}

/// One started stream, as the pump sees it.
struct Paced {
    shared: Arc<StreamShared>,
    playout: Playout,
    clock: FrameClock,
}

/// The pump: applies commands and sends due frames until every sender is gone.
async fn pump(mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut streams: HashMap<u64, Paced> = HashMap::new();
    let mut packet = Vec::with_capacity(256);
    let mut wake: Option<Instant> = None;
    loop {
        let sleep = async move {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => apply(&mut streams, command, &mut wake),
                None => return,
            },
            () = sleep => {
                let now = Instant::now();
                let earliest = send_due(&mut streams, now, &mut packet);
                wake = earliest.map(|at| at.max(now + BATCH_WINDOW));
            }
        }
    }
}

fn apply(streams: &mut HashMap<u64, Paced>, command: Command, wake: &mut Option<Instant>) {
    match command {
        Command::Start {
            shared,
            prompts,
            codec,
        } => {
            let now = Instant::now();
            let clock = FrameClock::new(now);
            let playout = Playout::new(prompts, codec);
            streams.insert(
                shared.id(),
                Paced {
                    shared,
                    playout,
                    clock,
                },
            );
            *wake = Some(wake.map_or(now, |w| w.min(now)));
        }
        Command::Control { id, action } => {
            let Some(stream) = streams.get_mut(&id) else {
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
        Command::Remove { id } => {
            streams.remove(&id);
        }
    }
}

/// Sends every stream's due frames; returns the earliest next deadline.
fn send_due(
    streams: &mut HashMap<u64, Paced>,
    now: Instant,
    packet: &mut Vec<u8>,
) -> Option<Instant> {
    let mut earliest: Option<Instant> = None;
    for stream in streams.values_mut() {
        let due = stream.clock.poll(now);
        if due.skip > 0 {
            tracing::debug!(
                stream = stream.shared.id(),
                frames = due.skip,
                "media pump behind; frames skipped"
            );
            stream.playout.skip(due.skip);
        }
        for _ in 0..due.send {
            let (frame, finished) = stream.playout.next_frame();
            if let Some(frame) = frame {
                frame.write_packet(packet);
                stream.shared.send_to_remote(packet);
            }
            if let Some(prompt) = finished {
                stream.shared.emit(MediaEvent::PromptDone(prompt));
            }
        }
        let next = stream.clock.next_due;
        earliest = Some(earliest.map_or(next, |e| e.min(next)));
    }
    earliest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_clock_sends_on_time_and_catches_up_a_little() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start);
        assert_eq!(clock.poll(start), Due { send: 1, skip: 0 });
        assert_eq!(
            clock.poll(start + Duration::from_millis(10)),
            Due { send: 0, skip: 0 }
        );
        assert_eq!(
            clock.poll(start + Duration::from_millis(21)),
            Due { send: 1, skip: 0 }
        );
        // 45 ms late: three frames due (at 40, 60 and 80 ms).
        assert_eq!(
            clock.poll(start + Duration::from_millis(85)),
            Due { send: 3, skip: 0 }
        );
        assert_eq!(clock.next_due, start + Duration::from_millis(100));
        // A 200 ms stall: frames 100..=300 are due, 3 are sent, the rest skipped.
        assert_eq!(
            clock.poll(start + Duration::from_millis(300)),
            Due { send: 3, skip: 8 }
        );
        assert_eq!(clock.next_due, start + Duration::from_millis(320));
    }

    #[test]
    fn port_pool_uses_even_ports_round_robin() {
        let mut pool = PortPool::new(40001, 40006);
        assert_eq!(pool.candidates(), vec![40002, 40004, 40006]);
        pool.take(40002);
        assert_eq!(pool.candidates(), vec![40004, 40006]);
        pool.take(40006);
        pool.in_use.remove(&40002);
        assert_eq!(pool.candidates(), vec![40002, 40004]);
        assert!(PortPool::new(5001, 5001).candidates().is_empty());
        assert!(PortPool::new(6000, 5000).candidates().is_empty());
        assert_eq!(PortPool::new(0, 3).candidates(), vec![2]);
    }
}
