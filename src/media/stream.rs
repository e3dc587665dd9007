//! One RTP stream: its sockets (RTP, and RTCP on the next port when it is free), the receive
//! tasks (symmetric-RTP latching, DTMF detection by RFC 4733 or in-band tones, relay and RTCP
//! translation when bridged) and the handle the call task holds.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

// Registered for reading only: see `engine::socket` (the pump's sends woke the reactor).
use super::engine::RtpSocket as UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::PromptId;
use super::dtmf::DtmfDetector;
use super::engine::{Command, Control, MediaCounters, PortLease, lock};
use super::g711::Codec;
use super::inband::InbandDetector;
use super::prompts::PromptSet;
use super::relay::{Continuity, Origin};
use super::rtcp::{self, Translation};
use super::rtp::{self, RtpHeader, RtpPacket};
use super::srtp::SrtpSession;

/// Events a stream reports to its call task.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// A prompt played to its end (not reported when interrupted).
    PromptDone(PromptId),
    /// The caller pressed a key (RFC 4733 telephone-event, or an in-band tone when no
    /// telephone-event was negotiated). `Debug` does not show the digit.
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
/// `detect` before `start`: no detection (a leg that is only relayed, like the queue leg,
/// whose events nobody reads).
const DETECT_OFF: u16 = u16::MAX;
/// `detect` after `start` without a telephone-event payload type: in-band tones.
const DETECT_INBAND: u16 = 0x100;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The state a stream shares between its handle, its receive task, the pump and its peer.
#[derive(Debug)]
pub(crate) struct StreamShared {
    id: u64,
    socket: UdpSocket,
    remote: Mutex<Remote>,
    /// The RTCP socket on the RTP port + 1, if that port was free (RFC 3550 §11).
    rtcp: Option<UdpSocket>,
    rtcp_remote: Mutex<Remote>,
    /// The sequence and timestamp space of what this leg sends (playout and relay alike).
    outgoing: Mutex<Continuity>,
    peer: Mutex<Weak<StreamShared>>,
    /// A telephone-event payload type, [`DETECT_INBAND`] or [`DETECT_OFF`].
    detect: AtomicU16,
    events: mpsc::Sender<MediaEvent>,
    counters: Arc<MediaCounters>,
    rtcp_received: AtomicU64,
    rtcp_sent: AtomicU64,
    /// SDES-SRTP for this leg, set once before `start` (the caller leg when it offered
    /// `RTP/SAVP`). Unset, the send and receive paths are the plain ones: one atomic load more.
    srtp: OnceLock<SrtpSession>,
    // Declared after the sockets: the port returns to the pool only once they are closed.
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
        lock(&self.remote).address()
    }

    /// Sends one playout packet to the remote without waiting; drops it if the socket buffer
    /// is full. Its header goes through the leg's [`Continuity`], so hold music after a relay
    /// (or a restarted playout) still continues the stream the far end knows.
    pub(crate) fn send_to_remote(&self, packet: &[u8]) {
        let Ok(parsed) = rtp::parse(packet) else {
            return self.transmit(packet);
        };
        let header = parsed.header;
        let rewrite = lock(&self.outgoing).next(now(), Origin::Playout, &header);
        let untouched = rewrite.ssrc == header.ssrc
            && rewrite.sequence == header.sequence
            && rewrite.timestamp == header.timestamp
            && (!rewrite.marker || header.marker);
        if untouched {
            return self.transmit(packet);
        }
        let mut copy = [0u8; RECEIVE_BUFFER];
        let Some(copy) = copy.get_mut(..packet.len()) else {
            return;
        };
        copy.copy_from_slice(packet);
        if rtp::rewrite(copy, &rewrite).is_ok() {
            self.transmit(copy);
        }
    }

    /// Sends a packet relayed from the peer leg, rewritten into this leg's stream.
    fn relay(&self, datagram: &mut [u8], header: &RtpHeader) {
        let rewrite = lock(&self.outgoing).next(now(), Origin::Relay, header);
        if rtp::rewrite(datagram, &rewrite).is_ok() {
            self.transmit(datagram);
        }
    }

    fn transmit(&self, packet: &[u8]) {
        let Some(remote) = self.remote() else { return };
        let sent = match self.srtp.get() {
            None => self.socket.try_send_to(packet, remote),
            // Each call's packet is protected with its own key and rollover counter.
            Some(srtp) => match srtp.protect_rtp(packet) {
                Ok(protected) => self.socket.try_send_to(protected.as_ref(), remote),
                Err(e) => Err(std::io::Error::other(e)),
            },
        };
        match sent {
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

    fn peer(&self) -> Option<Arc<StreamShared>> {
        lock(&self.peer).upgrade()
    }

    /// Counts an RTCP packet from the far end and, when bridged, re-issues it on the peer
    /// leg (never back towards this leg's far end). `from_rtcp_port` is false for RTCP that
    /// arrived multiplexed on the RTP port (RFC 5761), whose source is not an RTCP address.
    fn on_rtcp(&self, datagram: &[u8], from: SocketAddr, from_rtcp_port: bool, out: &mut Vec<u8>) {
        self.rtcp_received.fetch_add(1, Ordering::Relaxed);
        if from_rtcp_port {
            lock(&self.rtcp_remote).latch(from);
        }
        let Some(peer) = self.peer() else { return };
        let translation = self.translation_for(&peer, datagram);
        match rtcp::translate(datagram, &translation, out) {
            Ok(()) if !out.is_empty() => peer.send_rtcp(out),
            Ok(()) => {}
            Err(e) => tracing::trace!(stream = self.id, error = %e, "RTCP packet not relayed"),
        }
    }

    /// How a report from this leg's far end is re-issued on `peer`'s leg.
    fn translation_for(&self, peer: &StreamShared, datagram: &[u8]) -> Translation {
        let sender = datagram
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let (sender_ssrc, timestamp_offset) = {
            let out = lock(&peer.outgoing);
            let offsets = sender.and_then(|ssrc| out.offsets_of(ssrc));
            (out.ssrc(), offsets.map(|(_, ts)| ts))
        };
        let mine = lock(&self.outgoing);
        Translation {
            sender_ssrc,
            timestamp_offset,
            reported_ssrc: mine.ssrc(),
            reported_source: mine.current_source(),
        }
    }

    fn send_rtcp(&self, packet: &[u8]) {
        let Some(socket) = &self.rtcp else { return };
        let Some(remote) = lock(&self.rtcp_remote).address() else {
            return;
        };
        let sent = match self.srtp.get() {
            None => socket.try_send_to(packet, remote),
            Some(srtp) => match srtp.protect_rtcp(packet) {
                Ok(protected) => socket.try_send_to(protected.as_ref(), remote),
                Err(e) => Err(std::io::Error::other(e)),
            },
        };
        if sent.is_ok() {
            self.rtcp_sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Unprotects an SRTP (or, `rtcp`, SRTCP) datagram in place when the leg uses SRTP and
    /// returns its plain length; `None` drops it (failed authentication or replay, counted).
    fn unprotect(&self, datagram: &mut [u8], rtcp: bool) -> Option<usize> {
        let Some(srtp) = self.srtp.get() else {
            return Some(datagram.len());
        };
        let plain = if rtcp {
            srtp.unprotect_rtcp(datagram)
        } else {
            srtp.unprotect_rtp(datagram)
        };
        match plain {
            Ok(len) => Some(len),
            Err(e) => {
                let len = datagram.len();
                tracing::trace!(stream = self.id, len, rtcp, error = %e, "SRTP packet dropped");
                self.counters
                    .srtp_auth_failures
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// The current time on tokio's clock (paused in tests), as the sans-IO cores take it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Remote {
    fn address(&self) -> Option<SocketAddr> {
        self.latched.or(self.signalled)
    }

    /// Symmetric RTP: the first packet's source is where the far end listens.
    fn latch(&mut self, from: SocketAddr) {
        if self.latched.is_none() {
            self.latched = Some(from);
        }
    }

    /// A new signalled address (a re-INVITE) forgets the latched one: the far end moved.
    fn signal(&mut self, to: SocketAddr) {
        if self.signalled != Some(to) {
            self.latched = None;
        }
        self.signalled = Some(to);
    }
}

/// The DTMF detectors of one receive task.
#[derive(Default)]
struct Detection {
    telephone_event: Option<DtmfDetector>,
    source: Option<u32>,
    inband: Option<InbandDetector>,
}

impl Detection {
    /// Feeds one packet to the detector the stream's mode calls for.
    fn on_packet(&mut self, shared: &StreamShared, packet: &RtpPacket<'_>) {
        match shared.detect.load(Ordering::Relaxed) {
            DETECT_OFF => {}
            DETECT_INBAND => self.inband(shared, packet),
            pt => self.telephone_event(shared, packet, pt),
        }
    }

    /// RFC 4733 events; the detector starts over when the payload type or the source changes
    /// (a new SSRC numbers its timestamps afresh).
    fn telephone_event(&mut self, shared: &StreamShared, packet: &RtpPacket<'_>, pt: u16) {
        let Ok(pt) = u8::try_from(pt) else { return };
        let h = packet.header;
        let stale = self.source != Some(h.ssrc)
            || self
                .telephone_event
                .as_ref()
                .is_some_and(|d| d.payload_type() != pt);
        if stale {
            self.telephone_event = None;
            self.source = Some(h.ssrc);
        }
        let detector = self
            .telephone_event
            .get_or_insert_with(|| DtmfDetector::new(pt));
        if let Some(digit) =
            detector.on_packet(h.payload_type, h.marker, h.timestamp, packet.payload)
        {
            shared.emit(MediaEvent::Dtmf(digit));
        }
    }

    /// In-band tones in G.711 audio (other payload types, such as comfort noise, are skipped).
    fn inband(&mut self, shared: &StreamShared, packet: &RtpPacket<'_>) {
        let Some(codec) = Codec::from_payload_type(packet.header.payload_type) else {
            return;
        };
        let detector = self.inband.get_or_insert_with(InbandDetector::new);
        for digit in detector.on_payload(codec, packet.payload) {
            shared.emit(MediaEvent::Dtmf(digit));
        }
    }
}

/// Receives RTP until the stream is dropped: latches the remote, detects DTMF, and relays to
/// the bridged peer (rewritten into the peer leg's stream; telephone-events too).
async fn receive(shared: Arc<StreamShared>) {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let mut rtcp_out = Vec::new();
    let mut detection = Detection::default();
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
        let datagram = &mut buf[..len];
        let rtcp = rtp::is_rtcp(datagram);
        let Some(len) = shared.unprotect(datagram, rtcp) else {
            continue;
        };
        let datagram = &mut datagram[..len];
        if rtcp {
            shared.on_rtcp(datagram, from, false, &mut rtcp_out);
            continue;
        }
        let Ok(packet) = rtp::parse(datagram) else {
            continue;
        };
        let header = packet.header;
        lock(&shared.remote).latch(from);
        detection.on_packet(&shared, &packet);
        if let Some(peer) = shared.peer() {
            peer.relay(datagram, &header);
        }
    }
}

/// Receives RTCP on the odd port until the stream is dropped.
async fn receive_rtcp(shared: Arc<StreamShared>) {
    let Some(socket) = &shared.rtcp else { return };
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let mut out = Vec::new();
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, from)) => {
                if let Some(len) = shared.unprotect(&mut buf[..len], true) {
                    shared.on_rtcp(&buf[..len], from, true, &mut out);
                }
            }
            Err(e) => {
                tracing::debug!(stream = shared.id, error = %e, "RTCP receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Binds the RTCP socket next to the RTP one (RFC 3550 §11: RTP on an even port, RTCP on the
/// next). The pool hands out even ports only, so the odd one is normally free; when another
/// program holds it, the stream runs without RTCP rather than refusing the call.
fn bind_rtcp(local: SocketAddr) -> Option<UdpSocket> {
    let port = local.port().checked_add(1)?;
    let bound = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), port))
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(UdpSocket::from_std);
    match bound {
        Ok(socket) => Some(socket),
        Err(e) => {
            tracing::debug!(port, error = %e, "RTCP port not bound; stream without RTCP");
            None
        }
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
    receivers: [JoinHandle<()>; 2],
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
            rtcp: bind_rtcp(local),
            rtcp_remote: Mutex::new(Remote::default()),
            outgoing: Mutex::new(Continuity::new(rand::random())),
            peer: Mutex::new(Weak::new()),
            detect: AtomicU16::new(DETECT_OFF),
            events: events_tx,
            counters,
            rtcp_received: AtomicU64::new(0),
            rtcp_sent: AtomicU64::new(0),
            srtp: OnceLock::new(),
            _lease: lease,
        });
        let receivers = [
            tokio::spawn(receive(Arc::clone(&shared))),
            tokio::spawn(receive_rtcp(Arc::clone(&shared))),
        ];
        MediaStream {
            shared,
            local,
            prompts,
            commands,
            events,
            receivers,
        }
    }

    /// The local RTP address (for the SDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Begins sending silence to `remote` (until the first packet received from the far end,
    /// whose source then takes over) and detecting DTMF: `dtmf_pt` telephone-events, or
    /// in-band tones when the far end negotiated none. Calling it again restarts the playout;
    /// the far end still sees one stream (same SSRC, continuous numbering).
    pub fn start(&self, remote: SocketAddr, codec: Codec, dtmf_pt: Option<u8>) {
        self.set_remote(remote);
        self.shared
            .detect
            .store(dtmf_pt.map_or(DETECT_INBAND, u16::from), Ordering::Relaxed);
        let prompts = Arc::clone(&self.prompts);
        self.send(Command::Start {
            shared: Arc::clone(&self.shared),
            prompts,
            codec,
        });
    }

    /// Protects this leg with SDES-SRTP from now on: every RTP and RTCP packet sent is
    /// protected, every one received must authenticate or is dropped (and counted). Call it
    /// before `start`; a leg is keyed once (a second call is ignored: idgate answers
    /// re-INVITEs with its first answer, keys included).
    pub fn secure(&self, session: SrtpSession) {
        if self.shared.srtp.set(session).is_err() {
            tracing::debug!(
                stream = self.shared.id,
                "SRTP already set; new keys ignored"
            );
        }
    }

    /// Sets the signalled remote address without sending anything (for a leg that is only
    /// relayed, such as the queue leg before `bridge`). RTCP goes to the next port (RFC 3550
    /// §11) until the far end's first RTCP packet shows where it listens. A changed address
    /// forgets the latched sources.
    pub fn set_remote(&self, remote: SocketAddr) {
        lock(&self.shared.remote).signal(remote);
        if let Some(port) = remote.port().checked_add(1) {
            lock(&self.shared.rtcp_remote).signal(SocketAddr::new(remote.ip(), port));
        }
    }

    /// RTCP packets received from this leg's far end, and sent to it (translated from the
    /// bridged leg's far end), so far.
    pub fn rtcp_counts(&self) -> (u64, u64) {
        (
            self.shared.rtcp_received.load(Ordering::Relaxed),
            self.shared.rtcp_sent.load(Ordering::Relaxed),
        )
    }

    /// The SSRC the far end of this leg sees (stable for the whole call).
    pub fn ssrc(&self) -> u32 {
        lock(&self.shared.outgoing).ssrc()
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
    /// remote, telephone-events included, each rewritten into the receiving leg's own stream:
    /// its SSRC, and sequence numbers and timestamps that continue from what the leg sent
    /// before (hold music) and across source changes (see `relay`). RTCP is translated the
    /// same way (see `rtcp`).
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
        for receiver in &self.receivers {
            receiver.abort();
        }
    }
}
