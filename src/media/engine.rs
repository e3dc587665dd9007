//! The media engine: RTP/RTCP port pairs, the streams' sockets, and the pump threads (one per
//! core, at most `MAX_PUMPS`) that pace every stream (`pump`).
//!
//! Each started stream gets absolute 20 ms deadlines from a start placed in the least loaded
//! millisecond of the frame (`schedule::Stagger`), so calls are spread over the frame. A pump
//! sleeps until the end of the first schedule tick ([`BATCH_WINDOW`]) holding a deadline, then
//! sends the frames due, measuring how late each one is ([`LatenessHistogram`]) and whether it
//! keeps up (the overload signal admission reads). `pump.rs` says why it is a thread and why
//! each packet is one `try_send_to`, unless `raw_send` batches them (`raw`).

mod lateness;
mod pump;
mod raw;
mod schedule;
mod socket;

pub use lateness::{LATENESS_BUCKETS_US, LatenessHistogram, LatenessSnapshot};
pub use pump::{BATCH_WINDOW, OVERLOAD_AFTER, OVERLOAD_HOLD, OVERLOAD_LATE};
pub use schedule::{FRAME, MAX_CATCH_UP};
pub use socket::RtpSocket;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use thiserror::Error;
use tokio::sync::mpsc;

use super::PromptId;
use super::g711::Codec;
use super::prompts::PromptSet;
use super::stream::{Delivery, MediaStream, StreamShared};

/// Where RTP sockets are bound.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The local address to bind RTP sockets to.
    pub bind_ip: IpAddr,
    /// The lowest RTP port (even ports from the range are used).
    pub port_min: u16,
    /// The highest RTP port.
    pub port_max: u16,
    /// Pace through raw sockets (`engine::raw`); needs `CAP_NET_RAW` and an IPv4 `bind_ip`.
    pub raw_send: bool,
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
    /// RTCP packets received from far ends (on the RTCP port, or multiplexed on the RTP one).
    pub rtcp_received: AtomicU64,
    /// RTCP packets sent (idgate's own reports while it plays and when a leg ends, and the
    /// far ends' reports re-issued on the bridged leg).
    pub rtcp_sent: AtomicU64,
    /// RTP packets the far ends sent that never arrived, from their sequence numbers, added
    /// when a leg ends.
    pub packets_lost: AtomicU64,
    /// SRTP/SRTCP packets dropped because they failed authentication or the replay check.
    pub srtp_auth_failures: AtomicU64,
    /// Streams open now.
    pub streams: AtomicU64,
    /// Streams the pump paces now (started and not yet dropped; bridged ones included).
    pub paced: AtomicU64,
    /// Pump threads that cannot keep up now (passes more than [`OVERLOAD_LATE`] late for
    /// [`OVERLOAD_AFTER`], and not on time for [`OVERLOAD_HOLD`] since): while any can't, new
    /// calls are refused with 503.
    pub pumps_behind: AtomicU64,
    /// Pump threads sending through a raw socket (`raw_send`; 0 when off or refused).
    pub raw_pumps: AtomicU64,
    /// Frames never sent because the pump fell more than [`MAX_CATCH_UP`] frames behind.
    pub frames_skipped: AtomicU64,
    /// How late the pump sent each frame, from its 20 ms deadline to just before the send.
    pub lateness: LatenessHistogram,
}

impl MediaCounters {
    /// Whether the media path is overloaded: a pump thread fell behind its deadlines (new
    /// calls would get broken audio, so admission refuses them).
    pub fn overloaded(&self) -> bool {
        self.pumps_behind.load(Ordering::Relaxed) > 0
    }

    /// Counts one packet a receive task relayed.
    pub(crate) fn count(&self, sent: Delivery) {
        match sent {
            Delivery::Sent => self.add_sent(1, 0),
            Delivery::Dropped => self.add_sent(0, 1),
            Delivery::NoRemote => {}
        }
    }

    /// Adds packets sent and dropped (a pump adds a whole pass's at once: the counters are
    /// shared between pumps, and an atomic add per packet made their cache line bounce).
    pub(crate) fn add_sent(&self, sent: u64, dropped: u64) {
        if sent > 0 {
            self.packets_sent.fetch_add(sent, Ordering::Relaxed);
        }
        if dropped > 0 {
            self.packets_not_sent.fetch_add(dropped, Ordering::Relaxed);
        }
    }
}

/// The shared media engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MediaEngine {
    config: Arc<MediaConfig>,
    ports: Arc<Mutex<PortPool>>,
    /// One command channel per pump thread; a stream is paced by one pump for its life.
    pumps: Arc<[mpsc::UnboundedSender<Command>]>,
    next_pump: Arc<AtomicUsize>,
    counters: Arc<MediaCounters>,
}

/// Pump threads: one per core, at most this many; streams are dealt round-robin. One pump
/// now sends 4,000 held calls' 200,000 packets a second at ~45 % of a core on the bench
/// machine (`bench/run held`), so one would do there; two halve each pass (p99 lateness 1.5
/// against 2 ms) and leave headroom for a core taken by something else, and in A/B runs cost
/// the same per packet within the noise.
const MAX_PUMPS: usize = 4;

impl MediaEngine {
    /// Starts the engine: the pump thread, and a task on the current tokio runtime that
    /// forwards the streams' commands to it (panics outside a runtime, or if the OS refuses a
    /// thread). The pump ends when the engine and all its streams are dropped, or the runtime
    /// shuts down.
    pub fn start(config: MediaConfig) -> Self {
        let counters = Arc::<MediaCounters>::default();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_PUMPS));
        let pumps = (0..threads)
            .map(|_| {
                let (commands, receiver) = mpsc::unbounded_channel();
                let (to_pump, from_streams) = std::sync::mpsc::channel();
                tokio::spawn(forward(receiver, to_pump));
                let pump_counters = Arc::clone(&counters);
                let raw = raw_batch(&config);
                if raw.is_some() {
                    counters.raw_pumps.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::Builder::new()
                    .name("media-pump".into())
                    .spawn(move || pump::run(from_streams, pump_counters, raw))
                    .expect("the OS refused a thread for the media pump");
                commands
            })
            .collect();
        MediaEngine {
            ports: Arc::new(Mutex::new(PortPool::new(config.port_min, config.port_max))),
            config: Arc::new(config),
            pumps,
            next_pump: Arc::new(AtomicUsize::new(0)),
            counters,
        }
    }

    /// The engine's packet and stream counts.
    pub fn counters(&self) -> Arc<MediaCounters> {
        Arc::clone(&self.counters)
    }

    /// Binds a free even port of the range for RTP and the odd one above it for RTCP, and
    /// starts receiving on both.
    pub async fn open(&self, prompts: Arc<PromptSet>) -> Result<MediaStream, MediaError> {
        let (socket, rtcp, lease) = self.bind()?;
        let local = socket.local_addr()?;
        let socket = RtpSocket::from_std(socket)?;
        let rtcp = match rtcp.map(RtpSocket::from_std).transpose() {
            Ok(rtcp) => rtcp,
            Err(e) => {
                tracing::debug!(error = %e, "RTCP socket not registered; stream without RTCP");
                None
            }
        };
        Ok(MediaStream::new(
            socket,
            rtcp,
            local,
            lease,
            prompts,
            self.next_pump(),
            Arc::clone(&self.counters),
        ))
    }

    /// The pump for a new stream, round-robin.
    fn next_pump(&self) -> mpsc::UnboundedSender<Command> {
        let i = self.next_pump.fetch_add(1, Ordering::Relaxed) % self.pumps.len();
        self.pumps[i].clone()
    }

    /// A free pair of the range: RTP on the even port, RTCP on the odd one above it
    /// (RFC 3550 §11). A pair whose RTCP port another program holds is skipped, so the far
    /// end's reports never go to a port that is not ours. RTCP failing to bind for another
    /// reason leaves the stream without RTCP rather than refusing the call.
    fn bind(
        &self,
    ) -> Result<(std::net::UdpSocket, Option<std::net::UdpSocket>, PortLease), MediaError> {
        let ip = self.config.bind_ip;
        let mut pool = lock(&self.ports);
        for i in 0..pool.count {
            let Some(port) = pool.free_after_last(i) else {
                continue;
            };
            let socket = match std::net::UdpSocket::bind((ip, port)) {
                Ok(socket) => socket,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(MediaError::Io(e)),
            };
            let rtcp = match std::net::UdpSocket::bind((ip, port + 1)) {
                Ok(rtcp) => rtcp.set_nonblocking(true).map(|()| rtcp).ok(),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::debug!(port = port + 1, "RTCP port in use elsewhere; pair skipped");
                    continue;
                }
                Err(e) => {
                    tracing::debug!(port = port + 1, error = %e, "RTCP port not bound");
                    None
                }
            };
            socket.set_nonblocking(true)?;
            socket::set_dont_fragment(&socket);
            pool.take(port);
            let lease = PortLease {
                port,
                pool: Arc::clone(&self.ports),
            };
            return Ok((socket, rtcp, lease));
        }
        Err(MediaError::NoPorts)
    }
}

/// Checks that the raw send path can be used here (`[media] raw_send`): a raw socket opens,
/// which needs `CAP_NET_RAW`.
pub fn check_raw_send(bind_ip: IpAddr) -> std::io::Result<()> {
    match bind_ip {
        IpAddr::V4(ip) => raw::RawSender::open(ip).map(drop),
        IpAddr::V6(_) => Err(std::io::Error::other("an IPv6 bind_ip has no raw path")),
    }
}

/// A pump's raw batch, when `raw_send` is on and its socket opens (`check_raw_send` said it
/// would at start; if it no longer does, the pump sends on the calls' sockets).
fn raw_batch(config: &MediaConfig) -> Option<raw::RawBatch> {
    let IpAddr::V4(ip) = config.bind_ip else {
        return None;
    };
    if !config.raw_send {
        return None;
    }
    match raw::RawSender::open(ip) {
        Ok(sender) => Some(raw::RawBatch::new(sender)),
        Err(e) => {
            tracing::warn!(error = %e, "media.raw_send: no raw socket; sending per call");
            None
        }
    }
}

/// Moves commands from the streams' tokio channel (what `MediaStream` holds) to the pump's std
/// channel, which the pump thread can wait on with a precise timeout.
async fn forward(
    mut from_streams: mpsc::UnboundedReceiver<Command>,
    to_pump: std::sync::mpsc::Sender<Command>,
) {
    while let Some(command) = from_streams.recv().await {
        if to_pump.send(command).is_err() {
            return;
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The port pairs of the range (an even RTP port and the odd RTCP port above it, both in the
/// range), handed out round-robin so a freed pair rests before reuse. Pairs are named by their
/// even port.
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
        let count = if first + 1 > max {
            0
        } else {
            ((max - 1 - first) / 2 + 1) as usize
        };
        PortPool {
            first: first.min(u32::from(u16::MAX)) as u16,
            count,
            next: 0,
            in_use: HashSet::new(),
        }
    }

    /// The `i`th port after the last one taken, if it is free. Asked in turn from 0 until a
    /// port binds, so a new stream costs a few lookups, not a walk over the whole range.
    fn free_after_last(&self, i: usize) -> Option<u16> {
        if self.count == 0 {
            return None;
        }
        let port = self.first + 2 * ((self.next + i) % self.count) as u16;
        (!self.in_use.contains(&port)).then_some(port)
    }

    /// Every free port, in the order `bind` tries them.
    #[cfg(test)]
    fn candidates(&self) -> Vec<u16> {
        (0..self.count)
            .filter_map(|i| self.free_after_last(i))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pool_uses_even_odd_pairs_round_robin() {
        // 40006 is in the range, but its RTCP port 40007 is not.
        assert_eq!(PortPool::new(40001, 40006).candidates(), vec![40002, 40004]);
        let mut pool = PortPool::new(40001, 40007);
        assert_eq!(pool.candidates(), vec![40002, 40004, 40006]);
        pool.take(40002);
        assert_eq!(pool.candidates(), vec![40004, 40006]);
        pool.take(40006);
        pool.in_use.remove(&40002);
        assert_eq!(pool.candidates(), vec![40002, 40004]);
        assert!(PortPool::new(5001, 5001).candidates().is_empty());
        assert!(PortPool::new(5000, 5000).candidates().is_empty());
        assert_eq!(PortPool::new(5000, 5001).candidates(), vec![5000]);
        assert!(PortPool::new(6000, 5000).candidates().is_empty());
        assert_eq!(PortPool::new(0, 3).candidates(), vec![2]);
    }
}
