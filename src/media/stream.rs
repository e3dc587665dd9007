//! One RTP stream: its socket, the receive task (symmetric-RTP latching, RFC 4733 detection,
//! relay when bridged) and the handle the call task holds.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::PromptId;
use super::dtmf::DtmfDetector;
use super::engine::{Command, Control, MediaCounters, PortLease, lock};
use super::g711::Codec;
use super::prompts::PromptSet;
use super::rtp::{self, RtpPacket};

/// Events a stream reports to its call task.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// A prompt played to its end (not reported when interrupted).
    PromptDone(PromptId),
    /// The caller pressed a key (RFC 4733). `Debug` does not show the digit.
    Dtmf(char),
}

impl fmt::Debug for MediaEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaEvent::PromptDone(id) => write!(f, "PromptDone({id:?})"),
            MediaEvent::Dtmf(_) => f.write_str("Dtmf(<redacted>)"),
        }
    }
}

/// How many events may wait for the call task before new ones are dropped.
const EVENT_QUEUE: usize = 64;
/// Larger than any RTP packet on a normal path.
const RECEIVE_BUFFER: usize = 2048;
const NO_DTMF: u16 = u16::MAX;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The state a stream shares between its handle, its receive task, the pump and its peer.
#[derive(Debug)]
pub(crate) struct StreamShared {
    id: u64,
    socket: UdpSocket,
    remote: Mutex<Remote>,
    peer: Mutex<Weak<StreamShared>>,
    dtmf_pt: AtomicU16,
    events: mpsc::Sender<MediaEvent>,
    counters: Arc<MediaCounters>,
    // Declared after `socket`: the port returns to the pool only once the socket is closed.
    _lease: PortLease,
}

impl Drop for StreamShared {
    fn drop(&mut self) {
        self.counters.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The far end: from signalling (SDP), and from the first packet received (symmetric RTP).
#[derive(Debug, Default)]
struct Remote {
    signalled: Option<SocketAddr>,
    latched: Option<SocketAddr>,
}

impl StreamShared {
    /// The stream's id (unique in the process).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Where to send: the latched source if any packet arrived, else the signalled address.
    fn remote(&self) -> Option<SocketAddr> {
        let remote = lock(&self.remote);
        remote.latched.or(remote.signalled)
    }

    /// Sends one packet to the remote without waiting; drops it if the socket buffer is full.
    pub(crate) fn send_to_remote(&self, packet: &[u8]) {
        let Some(remote) = self.remote() else { return };
        match self.socket.try_send_to(packet, remote) {
            Ok(_) => self.counters.packets_sent.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::trace!(stream = self.id, error = %e, "RTP packet not sent");
                self.counters
                    .packets_not_sent
                    .fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Queues an event for the call task, never waiting.
    pub(crate) fn emit(&self, event: MediaEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            tracing::warn!(stream = self.id, "media event queue full; event dropped");
        }
    }

    fn latch(&self, from: SocketAddr) {
        let mut remote = lock(&self.remote);
        if remote.latched.is_none() {
            remote.latched = Some(from);
        }
    }

    fn peer(&self) -> Option<Arc<StreamShared>> {
        lock(&self.peer).upgrade()
    }

    fn dtmf_pt(&self) -> Option<u8> {
        u8::try_from(self.dtmf_pt.load(Ordering::Relaxed)).ok()
    }

    /// Feeds telephone-events to the detector (re-created if the payload type changed).
    fn detect_dtmf(&self, detector: &mut Option<DtmfDetector>, packet: &RtpPacket<'_>) {
        let Some(pt) = self.dtmf_pt() else { return };
        if detector.as_ref().is_some_and(|d| d.payload_type() != pt) {
            *detector = None;
        }
        let detector = detector.get_or_insert_with(|| DtmfDetector::new(pt));
        let h = packet.header;
        if let Some(digit) =
            detector.on_packet(h.payload_type, h.marker, h.timestamp, packet.payload)
        {
            self.emit(MediaEvent::Dtmf(digit));
        }
    }
}

/// Receives RTP until the stream is dropped: latches the remote, relays to the bridged peer,
/// and detects DTMF. RTCP is not handled yet.
async fn receive(shared: Arc<StreamShared>) {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let mut detector = None;
    loop {
        let (len, from) = match shared.socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(stream = shared.id, error = %e, "RTP receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared
            .counters
            .packets_received
            .fetch_add(1, Ordering::Relaxed);
        let datagram = &buf[..len];
        let Ok(packet) = rtp::parse(datagram) else {
            continue;
        };
        shared.latch(from);
        if let Some(peer) = shared.peer() {
            peer.send_to_remote(datagram);
        }
        shared.detect_dtmf(&mut detector, &packet);
    }
}

/// One RTP stream (one call leg). Dropping it stops the stream and frees its port.
#[derive(Debug)]
pub struct MediaStream {
    shared: Arc<StreamShared>,
    local: SocketAddr,
    prompts: Arc<PromptSet>,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<MediaEvent>,
    receiver: JoinHandle<()>,
}

impl MediaStream {
    pub(crate) fn new(
        socket: UdpSocket,
        local: SocketAddr,
        lease: PortLease,
        prompts: Arc<PromptSet>,
        commands: mpsc::UnboundedSender<Command>,
        counters: Arc<MediaCounters>,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        counters.streams.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(StreamShared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            socket,
            remote: Mutex::new(Remote::default()),
            peer: Mutex::new(Weak::new()),
            dtmf_pt: AtomicU16::new(NO_DTMF),
            events: events_tx,
            counters,
            _lease: lease,
        });
        let receiver = tokio::spawn(receive(Arc::clone(&shared)));
        MediaStream {
            shared,
            local,
            prompts,
            commands,
            events,
            receiver,
        }
    }

    /// The local RTP address (for the SDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Begins sending silence to `remote` (until the first packet received from the far end,
    /// whose source then takes over) and detecting `dtmf_pt` telephone-events. Calling it again
    /// restarts the stream with a new SSRC.
    pub fn start(&self, remote: SocketAddr, codec: Codec, dtmf_pt: Option<u8>) {
        self.set_remote(remote);
        self.shared
            .dtmf_pt
            .store(dtmf_pt.map_or(NO_DTMF, u16::from), Ordering::Relaxed);
        let prompts = Arc::clone(&self.prompts);
        self.send(Command::Start {
            shared: Arc::clone(&self.shared),
            prompts,
            codec,
        });
    }

    /// Sets the signalled remote address without sending anything (for a leg that is only
    /// relayed, such as the queue leg before `bridge`).
    pub fn set_remote(&self, remote: SocketAddr) {
        lock(&self.shared.remote).signalled = Some(remote);
    }

    /// Plays a prompt from its start, then hold music (`then_hold`) or silence. A
    /// [`MediaEvent::PromptDone`] follows when it played to its end. Ignored before `start`.
    pub fn play(&self, prompt: PromptId, then_hold: bool) {
        self.control(Control::Play(prompt, then_hold));
    }

    /// Plays hold music in a loop.
    pub fn hold(&self) {
        self.control(Control::Hold);
    }

    /// Sends silence.
    pub fn silence(&self) {
        self.control(Control::Silence);
    }

    /// The stream's events.
    pub fn events(&mut self) -> &mut mpsc::Receiver<MediaEvent> {
        &mut self.events
    }

    /// Stops playout on both streams and relays every packet received on one to the other's
    /// remote, untouched (sequence numbers, timestamps and SSRC pass through).
    pub fn bridge(&self, other: &MediaStream) {
        self.control(Control::Stop);
        other.control(Control::Stop);
        *lock(&self.shared.peer) = Arc::downgrade(&other.shared);
        *lock(&other.shared.peer) = Arc::downgrade(&self.shared);
    }

    /// Stops sending and relaying; the port stays bound until the stream is dropped.
    pub fn stop(&self) {
        self.control(Control::Stop);
        self.unbridge();
    }

    fn unbridge(&self) {
        let peer = std::mem::take(&mut *lock(&self.shared.peer));
        if let Some(peer) = peer.upgrade() {
            let mut back = lock(&peer.peer);
            if std::ptr::eq(back.as_ptr(), Arc::as_ptr(&self.shared)) {
                *back = Weak::new();
            }
        }
    }

    fn control(&self, action: Control) {
        self.send(Command::Control {
            id: self.shared.id,
            action,
        });
    }

    fn send(&self, command: Command) {
        // Fails only when the pump is gone (runtime shutting down): nothing left to do.
        let _ = self.commands.send(command);
    }
}

impl Drop for MediaStream {
    fn drop(&mut self) {
        self.unbridge();
        self.send(Command::Remove { id: self.shared.id });
        self.receiver.abort();
    }
}
