//! One RTP stream: its sockets (RTP, and RTCP on the next port when it is free), the receive
//! tasks (symmetric-RTP latching, DTMF detection by RFC 4733 or in-band tones, relay and RTCP
//! translation when bridged) and the handle the call task holds.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

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
use super::reception::Reception;
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

/// `dtmf_pt` before anything was negotiated: relayed DTMF keeps its payload type.
const DTMF_UNKNOWN: u16 = u16::MAX;
/// `dtmf_pt` when the far end negotiated no telephone-event: relayed DTMF is not sent to it.
const DTMF_NONE: u16 = 0x100;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The state a stream shares between its handle, its receive task, the pump and its peer.
///
/// `repr(C)` keeps declaration order: the fields the pump touches for every packet come first
/// and share a few adjacent cache lines. With thousands of streams each one is cold when its
/// turn comes, and that first miss was the pump's costliest instruction in a profile at
/// 4,000 held calls; fields spread over the struct would each add one.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct StreamShared {
    /// The sequence and timestamp space of what this leg sends (playout and relay alike).
    outgoing: Mutex<Continuity>,
    remote: Mutex<Remote>,
    socket: UdpSocket,
    /// The socket's address (the raw path writes its port as the source).
    local: SocketAddr,
    /// SDES-SRTP for this leg, set once before `start` (the caller leg when it offered
    /// `RTP/SAVP`). Unset, the send and receive paths are the plain ones: one atomic load more.
    /// Boxed: the contexts are large and would push the fields below away.
    srtp: OnceLock<Box<SrtpSession>>,
    id: u64,
    /// The RTCP socket on the RTP port + 1, if that port was free (RFC 3550 §11).
    rtcp: Option<UdpSocket>,
    rtcp_remote: Mutex<Remote>,
    peer: Mutex<Weak<StreamShared>>,
    /// A telephone-event payload type, [`DETECT_INBAND`] or [`DETECT_OFF`].
    detect: AtomicU16,
    /// The telephone-event payload type this leg's far end negotiated, [`DTMF_NONE`] when it
    /// negotiated none, or [`DTMF_UNKNOWN`]: what relayed DTMF is renumbered to.
    dtmf_pt: AtomicU16,
    events: mpsc::Sender<MediaEvent>,
    counters: Arc<MediaCounters>,
    rtcp_received: AtomicU64,
    rtcp_sent: AtomicU64,
    /// What idgate hears of the far end, for the block in its own SRs. Written by the receive
    /// tasks, read by the pump every ~5 s.
    reception: Mutex<Reception>,
    /// Arrival times for `reception` count from here.
    epoch: Instant,
    /// The SDES CNAME of idgate's own reports (`idgate@<local address>`).
    cname: Box<str>,
    /// RTP packets and payload octets sent under the leg's SSRC (for idgate's own SRs).
    sent_packets: AtomicU32,
    sent_octets: AtomicU32,
    // Declared after the sockets: the port returns to the pool only once they are closed.
    _lease: PortLease,
}

impl Drop for StreamShared {
    fn drop(&mut self) {
        self.counters.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What became of one outgoing RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Handed to the kernel.
    Sent,
    /// Dropped: the socket buffer was full, or the send or SRTP protection failed.
    Dropped,
    /// Not sent: no remote address yet.
    NoRemote,
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

    /// Sends one playout packet (as `Playout::next_packet` wrote it, `header` being what it
    /// returned) without waiting; a full socket buffer drops it.
    /// The header is rewritten in place through the leg's [`Continuity`], so hold music after
    /// a relay (or a restarted playout) still continues the stream the far end knows. `now`
    /// is the pump's clock reading for this packet; the pump counts the results per pass.
    pub(crate) fn send_playout(
        &self,
        packet: &mut [u8],
        header: &RtpHeader,
        now: Instant,
    ) -> Delivery {
        if self.rewrite_playout(packet, header, now) {
            self.transmit(packet)
        } else {
            Delivery::Dropped
        }
    }

    /// Rewrites a playout packet's header in place through the leg's [`Continuity`] (as
    /// `send_playout` does), for the pump's raw path; false if it is not an RTP packet.
    pub(crate) fn rewrite_playout(
        &self,
        packet: &mut [u8],
        header: &RtpHeader,
        now: Instant,
    ) -> bool {
        let rewrite = lock(&self.outgoing).next(now, Origin::Playout, header);
        let ok = rtp::rewrite(packet, &rewrite).is_ok();
        if ok {
            self.count_sent(packet);
        }
        ok
    }

    /// Adds an outgoing RTP packet to the sender counts of idgate's own reports.
    fn count_sent(&self, packet: &[u8]) {
        let payload = u32::try_from(packet.len().saturating_sub(rtp::HEADER_LEN)).unwrap_or(0);
        self.sent_packets.fetch_add(1, Ordering::Relaxed);
        self.sent_octets.fetch_add(payload, Ordering::Relaxed);
    }

    /// Sends idgate's own RTCP sender report on this leg (the pump calls it every ~5 s while
    /// it plays; RFC 3550 §6.4.1), with `now` as its wallclock. Nothing before the first
    /// packet was sent. `out` is a reusable buffer.
    pub(crate) fn send_report(&self, now: std::time::SystemTime, out: &mut Vec<u8>) {
        if self.write_report(now, out).is_some() {
            self.send_rtcp(out);
        }
    }

    /// The leg's last RTCP packet when it ends (RFC 3550 §6.6): the report, then BYE for the
    /// leg's SSRC. Nothing if idgate never sent RTP on the leg.
    fn send_goodbye(&self) {
        let mut out = Vec::new();
        if let Some(ssrc) = self.write_report(std::time::SystemTime::now(), &mut out) {
            rtcp::append_bye(ssrc, &mut out);
            self.send_rtcp(&out);
        }
    }

    /// Writes the SR + SDES compound into `out`; the leg's SSRC, or `None` (and `out` left as
    /// it was) before the first packet was sent.
    fn write_report(&self, now: std::time::SystemTime, out: &mut Vec<u8>) -> Option<u32> {
        let (ssrc, timestamp) = {
            let outgoing = lock(&self.outgoing);
            (outgoing.ssrc(), outgoing.last_timestamp())
        };
        let info = rtcp::SenderInfo {
            ssrc,
            ntp: rtcp::ntp_timestamp(now),
            rtp_timestamp: timestamp?,
            packets: self.sent_packets.load(Ordering::Relaxed),
            octets: self.sent_octets.load(Ordering::Relaxed),
        };
        let block = lock(&self.reception).report(self.epoch.elapsed());
        rtcp::write_sender_report(&info, block.as_ref(), &self.cname, out);
        Some(ssrc)
    }

    /// Where the pump's raw path sends this leg's packets: (local port, remote), when both
    /// ends are IPv4 and the leg is plain RTP (SRTP protects per leg, on its own socket).
    pub(crate) fn raw_route(&self) -> Option<(u16, SocketAddrV4)> {
        if self.srtp.get().is_some() {
            return None;
        }
        match (self.local, self.remote()?) {
            (SocketAddr::V4(local), SocketAddr::V4(remote)) => Some((local.port(), remote)),
            _ => None,
        }
    }

    /// Sends a packet relayed from the peer leg, rewritten into this leg's stream. A
    /// telephone-event packet (the peer's far end's negotiated type, `from_dtmf_pt`) takes
    /// this leg's negotiated type: the two far ends may have chosen different numbers
    /// (RFC 3264 only recommends that an answer keep the offer's). It is dropped when this
    /// leg's far end negotiated no telephone-event.
    fn relay(&self, datagram: &mut [u8], header: &RtpHeader, from_dtmf_pt: u16) {
        if u16::from(header.payload_type) == from_dtmf_pt {
            match self.dtmf_pt.load(Ordering::Relaxed) {
                DTMF_UNKNOWN => {}
                DTMF_NONE => {
                    tracing::trace!(stream = self.id, "relayed DTMF dropped: none negotiated");
                    return;
                }
                pt => {
                    if let (Some(byte), Ok(pt)) = (datagram.get_mut(1), u8::try_from(pt)) {
                        *byte = (*byte & 0x80) | (pt & 0x7F);
                    }
                }
            }
        }
        let rewrite = lock(&self.outgoing).next(now(), Origin::Relay, header);
        if rtp::rewrite(datagram, &rewrite).is_ok() {
            self.count_sent(datagram);
            self.counters.count(self.transmit(datagram));
        }
    }

    fn transmit(&self, packet: &[u8]) -> Delivery {
        let Some(remote) = self.remote() else {
            return Delivery::NoRemote;
        };
        let sent = match self.srtp.get() {
            None => self.socket.try_send_to(packet, remote),
            // Each call's packet is protected with its own key and rollover counter.
            Some(srtp) => match srtp.protect_rtp(packet) {
                Ok(protected) => self.socket.try_send_to(protected.as_ref(), remote),
                Err(e) => Err(std::io::Error::other(e)),
            },
        };
        match sent {
            Ok(_) => Delivery::Sent,
            Err(e) => {
                tracing::trace!(stream = self.id, error = %e, "RTP packet not sent");
                Delivery::Dropped
            }
        }
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
        self.counters.rtcp_received.fetch_add(1, Ordering::Relaxed);
        if from_rtcp_port {
            lock(&self.rtcp_remote).latch(from);
        }
        if let Some((ssrc, ntp)) = rtcp::sender_report_of(datagram) {
            lock(&self.reception).on_sender_report(ssrc, ntp, self.epoch.elapsed());
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
            self.counters.rtcp_sent.fetch_add(1, Ordering::Relaxed);
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
        let dtmf_pt = shared.dtmf_pt.load(Ordering::Relaxed);
        // Telephone-events repeat their start timestamp: no jitter sample.
        let timed = u16::from(header.payload_type) != dtmf_pt;
        lock(&shared.reception).on_rtp(
            header.ssrc,
            header.sequence,
            header.timestamp,
            shared.epoch.elapsed(),
            timed,
        );
        detection.on_packet(&shared, &packet);
        if let Some(peer) = shared.peer() {
            peer.relay(datagram, &header, dtmf_pt);
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

/// One RTP stream (one call leg). Dropping it stops the stream and frees its port.
#[derive(Debug)]
pub struct MediaStream {
    shared: Arc<StreamShared>,
    prompts: Arc<PromptSet>,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<MediaEvent>,
    receivers: [JoinHandle<()>; 2],
}

impl MediaStream {
    pub(crate) fn new(
        socket: UdpSocket,
        rtcp: Option<UdpSocket>,
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
            local,
            remote: Mutex::new(Remote::default()),
            rtcp,
            rtcp_remote: Mutex::new(Remote::default()),
            outgoing: Mutex::new(Continuity::new(rand::random())),
            peer: Mutex::new(Weak::new()),
            detect: AtomicU16::new(DETECT_OFF),
            dtmf_pt: AtomicU16::new(DTMF_UNKNOWN),
            events: events_tx,
            counters,
            rtcp_received: AtomicU64::new(0),
            rtcp_sent: AtomicU64::new(0),
            reception: Mutex::new(Reception::default()),
            epoch: Instant::now(),
            cname: format!("idgate@{}", local.ip()).into(),
            sent_packets: AtomicU32::new(0),
            sent_octets: AtomicU32::new(0),
            srtp: OnceLock::new(),
            _lease: lease,
        });
        let receivers = [
            tokio::spawn(receive(Arc::clone(&shared))),
            tokio::spawn(receive_rtcp(Arc::clone(&shared))),
        ];
        MediaStream {
            shared,
            prompts,
            commands,
            events,
            receivers,
        }
    }

    /// The local RTP address (for the SDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Begins sending silence to `remote` (until the first packet received from the far end,
    /// whose source then takes over) and detecting DTMF: `dtmf_pt` telephone-events, or
    /// in-band tones when the far end negotiated none. Calling it again restarts the playout;
    /// the far end still sees one stream (same SSRC, continuous numbering).
    pub fn start(&self, remote: SocketAddr, codec: Codec, dtmf_pt: Option<u8>) {
        self.set_remote(remote);
        self.set_dtmf_pt(dtmf_pt);
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
        if self.shared.srtp.set(Box::new(session)).is_err() {
            tracing::debug!(
                stream = self.shared.id,
                "SRTP already set; new keys ignored"
            );
        }
    }

    /// The telephone-event payload type this leg's far end negotiated (`None`: none), for the
    /// DTMF relayed to it from the bridged leg. `start` sets it too.
    pub fn set_dtmf_pt(&self, dtmf_pt: Option<u8>) {
        let pt = dtmf_pt.map_or(DTMF_NONE, u16::from);
        self.shared.dtmf_pt.store(pt, Ordering::Relaxed);
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
        self.shared.send_goodbye();
        let lost = lock(&self.shared.reception).lost();
        self.shared
            .counters
            .packets_lost
            .fetch_add(lost, Ordering::Relaxed);
        for receiver in &self.receivers {
            receiver.abort();
        }
    }
}
