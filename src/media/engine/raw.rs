//! Sending the pump's RTP through one send-only raw IPv4 socket per pump (`[media] raw_send`).
//!
//! Why: symmetric RTP needs each call's packets to leave from the call's own port, so the
//! normal path is one `sendto` per packet on that call's UDP socket. Each costs a syscall, cold
//! per-socket kernel state, and a wake-up walk of the socket's epoll wait queue when the kernel
//! frees the sent buffer (the socket is registered for receiving). A raw socket lets the pump
//! write the UDP header itself, source port included, and hand a whole batch to the kernel in
//! one `sendmmsg` on one hot socket. The calls' UDP sockets stay bound: they hold the ports
//! and receive as before.
//!
//! `IPPROTO_RAW` sockets only send (nothing is ever delivered to them), and need
//! `CAP_NET_RAW`. The kernel fills in the IPv4 header checksum and total length. With one
//! IPv4 `media.bind_ip`, the source address is written here and the UDP checksum computed
//! (RFC 768: it covers the source address). With `0.0.0.0`, the source is left zero, so the
//! kernel fills in the address its routing picks for each destination (raw(7)), as it would
//! for the call's own socket bound to `0.0.0.0`; the UDP checksum is then 0, "none", which
//! RFC 768 allows on IPv4. SRTP legs and IPv6 keep the per-socket path.
//!
//! Written by hand: building a 28-byte IPv4 + UDP header and its checksum is a few lines, and
//! no maintained crate offers batched raw sends without `unsafe` in this crate.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;

use rustix::net::{
    AddressFamily, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, SocketFlags, SocketType,
    ipproto, sendmmsg, socket_with,
};

/// Packets handed to the kernel in one `sendmmsg`.
pub const BATCH: usize = 64;
/// IPv4 header (no options) plus UDP header.
const HEADERS: usize = 20 + 8;
/// Room for one packet: the headers and an RTP packet from the pump (12 + 160 for G.711).
const SLOT: usize = 512;

/// A send-only raw IPv4 socket.
#[derive(Debug)]
pub struct RawSender {
    socket: OwnedFd,
    source: Ipv4Addr,
}

impl RawSender {
    /// Opens the socket; fails without `CAP_NET_RAW`.
    pub fn open(source: Ipv4Addr) -> io::Result<Self> {
        let socket = socket_with(
            AddressFamily::INET,
            SocketType::RAW,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            Some(ipproto::RAW),
        )?;
        Ok(RawSender { socket, source })
    }
}

/// Packets waiting for one `sendmmsg`, each written whole (IPv4 + UDP + RTP) into its slot.
#[derive(Debug)]
pub struct RawBatch {
    sender: RawSender,
    slots: Vec<u8>,
    lengths: Vec<usize>,
    targets: Vec<SocketAddrAny>,
}

impl RawBatch {
    /// An empty batch sending through `sender`.
    pub fn new(sender: RawSender) -> Self {
        RawBatch {
            sender,
            slots: vec![0; SLOT * BATCH],
            lengths: Vec::with_capacity(BATCH),
            targets: Vec::with_capacity(BATCH),
        }
    }

    /// Whether the batch is full (flush before the next `push`).
    pub fn is_full(&self) -> bool {
        self.lengths.len() == BATCH
    }

    /// Adds an RTP packet from local port `from` to `to`; false (not added) when the batch is
    /// full or the packet does not fit a slot.
    pub fn push(&mut self, from: u16, to: SocketAddrV4, rtp: &[u8]) -> bool {
        let i = self.lengths.len();
        let len = HEADERS + rtp.len();
        if i == BATCH || len > SLOT {
            return false;
        }
        let slot = &mut self.slots[i * SLOT..i * SLOT + len];
        write_headers(slot, self.sender.source, from, to, rtp);
        self.lengths.push(len);
        self.targets
            .push(SocketAddrAny::from(SocketAddrV4::new(*to.ip(), 0)));
        true
    }

    /// Sends every waiting packet; returns (sent, dropped). A full send buffer or another
    /// error drops the packets not taken (late RTP is worthless; the pump counts them).
    pub fn flush(&mut self) -> (u64, u64) {
        let total = self.lengths.len();
        if total == 0 {
            return (0, 0);
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = self
            .lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| [IoSlice::new(&self.slots[i * SLOT..i * SLOT + len])])
            .collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
            (0..total).map(|_| SendAncillaryBuffer::default()).collect();
        let mut messages: Vec<MMsgHdr<'_>> = iovs
            .iter()
            .zip(&self.targets)
            .zip(controls.iter_mut())
            .map(|((iov, target), control)| MMsgHdr::new_with_addr(target, iov, control))
            .collect();
        let mut sent = 0;
        while sent < total {
            match sendmmsg(
                &self.sender.socket,
                &mut messages[sent..],
                SendFlags::DONTWAIT,
            ) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) => {
                    tracing::trace!(error = %e, "raw RTP batch not sent");
                    break;
                }
            }
        }
        drop(messages);
        self.lengths.clear();
        self.targets.clear();
        (sent as u64, (total - sent) as u64)
    }
}

/// Writes the IPv4 and UDP headers in front of `rtp` into `out` (exactly their length). The
/// kernel fills in the IPv4 checksum and total length (`IP_HDRINCL`); Don't Fragment is set,
/// so the ID stays 0 (as on the UDP sockets, `socket::set_dont_fragment`).
fn write_headers(out: &mut [u8], source: Ipv4Addr, from: u16, to: SocketAddrV4, rtp: &[u8]) {
    let udp_len = u16::try_from(8 + rtp.len()).unwrap_or(u16::MAX);
    let total = udp_len.saturating_add(20);
    let (ip, rest) = out.split_at_mut(20);
    ip.copy_from_slice(&[
        0x45, 0, // version 4, 5 words; DSCP/ECN 0
        0, 0, // total length (filled in by the kernel)
        0, 0, // ID
        0x40, 0, // Don't Fragment, offset 0
        64, 17, // TTL, UDP
        0, 0, // header checksum (filled in by the kernel)
        0, 0, 0, 0, 0, 0, 0, 0, // source, destination
    ]);
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[12..16].copy_from_slice(&source.octets());
    ip[16..20].copy_from_slice(&to.ip().octets());
    let (udp, payload) = rest.split_at_mut(8);
    udp[0..2].copy_from_slice(&from.to_be_bytes());
    udp[2..4].copy_from_slice(&to.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    payload.copy_from_slice(rtp);
    if !source.is_unspecified() {
        let checksum = udp_checksum(source, *to.ip(), udp, payload);
        udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    }
    // Else the kernel chooses the source, which the checksum would cover: none is sent.
}

/// The UDP checksum (RFC 768): the ones' complement sum over the pseudo-header, the UDP header
/// (checksum field zero) and the payload; 0 is sent as 0xFFFF (0 means "no checksum").
fn udp_checksum(source: Ipv4Addr, destination: Ipv4Addr, header: &[u8], payload: &[u8]) -> u16 {
    let len = u32::try_from(header.len() + payload.len()).unwrap_or(u32::MAX);
    let mut sum: u32 = 0;
    for pair in source
        .octets()
        .chunks(2)
        .chain(destination.octets().chunks(2))
    {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    sum += 17 + len;
    let mut add = |bytes: &[u8]| {
        let mut words = bytes.chunks_exact(2);
        for word in &mut words {
            sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
    };
    add(header);
    add(payload);
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    match !(sum as u16) {
        0 => 0xFFFF,
        checksum => checksum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_checksum_matches_a_worked_example() {
        // 192.168.0.31:20 -> 192.168.0.30:10 carrying "Hi there!\n": 0x196C, as
        // an independent ones' complement sum (a few lines of Python) gives.
        let source = Ipv4Addr::new(192, 168, 0, 31);
        let destination = Ipv4Addr::new(192, 168, 0, 30);
        let header = [0x00, 0x14, 0x00, 0x0a, 0x00, 0x12, 0x00, 0x00];
        let payload = *b"Hi there!\n";
        let checksum = udp_checksum(source, destination, &header, &payload);
        // Verifying: the sum over everything, checksum included, is all ones.
        let mut with = header;
        with[6..8].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(udp_checksum(source, destination, &with, &payload), 0xFFFF);
        assert_eq!(checksum, 0x196C);
    }

    #[test]
    fn headers_carry_ports_length_and_dont_fragment() {
        let mut out = [0u8; HEADERS + 5];
        let to = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 40_000);
        write_headers(&mut out, Ipv4Addr::LOCALHOST, 20_002, to, b"hello");
        assert_eq!(out[0], 0x45);
        assert_eq!(&out[2..4], &33u16.to_be_bytes());
        assert_eq!(&out[6..8], &[0x40, 0]);
        assert_eq!(out[9], 17);
        assert_eq!(&out[12..16], &[127, 0, 0, 1]);
        assert_eq!(&out[16..20], &[127, 0, 0, 2]);
        assert_eq!(&out[20..22], &20_002u16.to_be_bytes());
        assert_eq!(&out[22..24], &40_000u16.to_be_bytes());
        assert_eq!(&out[24..26], &13u16.to_be_bytes());
        assert_eq!(&out[28..], b"hello");
        let sum = udp_checksum(Ipv4Addr::LOCALHOST, *to.ip(), &out[20..28], &out[28..]);
        assert_eq!(sum, 0xFFFF, "the written checksum verifies");
    }

    #[test]
    fn with_an_unspecified_source_the_kernel_picks_it_and_no_checksum_is_sent() {
        let mut out = [0u8; HEADERS + 5];
        let to = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 40_000);
        write_headers(&mut out, Ipv4Addr::UNSPECIFIED, 20_002, to, b"hello");
        assert_eq!(
            &out[12..16],
            &[0, 0, 0, 0],
            "filled in by the kernel (raw(7))"
        );
        assert_eq!(&out[16..20], &[127, 0, 0, 2]);
        assert_eq!(&out[20..22], &20_002u16.to_be_bytes());
        assert_eq!(&out[26..28], &[0, 0], "RFC 768: no checksum");
        assert_eq!(&out[28..], b"hello");
    }
}
