//! RTCP (RFC 3550 §6) for the relay: translates one leg's compound RTCP packet for the other
//! leg, so that each far end sees reports that match the RTP stream it receives.
//!
//! Each leg is its own RTP session (see `relay`): the far end of leg B knows idgate's stream
//! by leg B's SSRC, with leg B's sequence numbers and timestamps. So a sender report from far
//! end A is re-issued under leg B's SSRC with its RTP timestamp in leg B's space, and A's
//! reception reports, which are about leg A's outgoing stream, are re-issued about far end
//! B's own SSRC with the extended highest sequence number in B's numbering. Only SR, RR and
//! SDES (the first chunk) are relayed; BYE (idgate sends its own when a leg ends), APP, feedback and XR are
//! dropped, since their SSRCs and semantics do not survive the translation.
//!
//! While idgate itself is the sender (prompts and hold music), it reports on its own stream:
//! `write_sender_report` builds the SR + SDES CNAME compound packet the pump sends every ~5 s,
//! with a reception report block about the far end's stream (`super::reception`).
//!
//! Hand-written: the fixed formats of §6.4 and §6.5 are all idgate reads and writes, and no
//! maintained crate translates SSRCs between sessions.

use thiserror::Error;

/// Sender report (§6.4.1).
const SR: u8 = 200;
/// Receiver report (§6.4.2).
const RR: u8 = 201;
/// Source description (§6.5).
const SDES: u8 = 202;
/// Goodbye (§6.6).
const BYE: u8 = 203;
/// One reception report block (§6.4.1).
const REPORT_BLOCK_LEN: usize = 24;
/// The sender info of an SR after the sender's SSRC (§6.4.1).
const SENDER_INFO_LEN: usize = 20;

/// Why a datagram is not a valid compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtcpError {
    /// A packet's header or announced length runs past the datagram.
    #[error("RTCP packet truncated at byte {offset}")]
    Truncated {
        /// Where the packet that does not fit starts.
        offset: usize,
    },
    /// The version field is not 2.
    #[error("RTCP version {0}, expected 2")]
    Version(u8),
    /// The compound packet does not start with SR or RR (§6.1).
    #[error("RTCP compound packet starts with packet type {0}, not SR or RR")]
    NotAReport(u8),
    /// An SR or RR announces more report blocks than its length holds.
    #[error("RTCP report with {count} blocks does not fit its length")]
    BadCount {
        /// The report count field.
        count: u8,
    },
}

/// How to re-issue a report received on one leg (A) for the other (B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// Leg B's SSRC: the sender SSRC of every relayed packet.
    pub sender_ssrc: u32,
    /// The timestamp offset of far end A's stream into leg B's space, if it has been relayed.
    pub timestamp_offset: Option<u32>,
    /// Leg A's SSRC: the stream far end A's reception reports are about.
    pub reported_ssrc: u32,
    /// The source that feeds leg A now (far end B's SSRC) and its sequence offset into leg
    /// A's space; reports on leg A's stream are re-issued about it.
    pub reported_source: Option<(u32, u16)>,
}

/// One packet of a compound: its type, report count, and body after the 4-byte header.
struct Packet<'a> {
    packet_type: u8,
    count: u8,
    body: &'a [u8],
}

/// Splits a compound RTCP datagram into its packets (§6.1), validating each header.
fn packets(datagram: &[u8]) -> Result<Vec<Packet<'_>>, RtcpError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let header = datagram
            .get(offset..offset + 4)
            .ok_or(RtcpError::Truncated { offset })?;
        let version = header[0] >> 6;
        if version != 2 {
            return Err(RtcpError::Version(version));
        }
        let len = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
        let packet = datagram
            .get(offset..offset + len)
            .ok_or(RtcpError::Truncated { offset })?;
        let mut body = &packet[4..];
        if header[0] & 0x20 != 0 {
            // Padding (§6.4.1 P): the last byte counts the padding bytes.
            let pad = usize::from(*body.last().ok_or(RtcpError::Truncated { offset })?);
            body = body
                .get(..body.len().saturating_sub(pad))
                .filter(|_| pad > 0)
                .ok_or(RtcpError::Truncated { offset })?;
        }
        out.push(Packet {
            packet_type: header[1],
            count: header[0] & 0x1F,
            body,
        });
        offset += len;
    }
    match out.first() {
        Some(first) if first.packet_type == SR || first.packet_type == RR => Ok(out),
        Some(first) => Err(RtcpError::NotAReport(first.packet_type)),
        None => Err(RtcpError::Truncated { offset: 0 }),
    }
}

/// Translates a compound RTCP datagram received on leg A into `out` for leg B (cleared
/// first). `out` stays empty when nothing in it is worth relaying.
pub fn translate(
    datagram: &[u8],
    translation: &Translation,
    out: &mut Vec<u8>,
) -> Result<(), RtcpError> {
    out.clear();
    for packet in packets(datagram)? {
        match packet.packet_type {
            SR | RR => report(&packet, translation, out)?,
            SDES => sdes(&packet, translation, out),
            _ => {}
        }
    }
    Ok(())
}

/// Re-issues an SR or RR: sender SSRC, SR timestamp, and the blocks about leg A's stream.
fn report(packet: &Packet<'_>, t: &Translation, out: &mut Vec<u8>) -> Result<(), RtcpError> {
    let fixed = if packet.packet_type == SR {
        4 + SENDER_INFO_LEN
    } else {
        4
    };
    let blocks_len = usize::from(packet.count) * REPORT_BLOCK_LEN;
    let (head, rest) = packet
        .body
        .split_at_checked(fixed)
        .ok_or(RtcpError::BadCount {
            count: packet.count,
        })?;
    let blocks = rest.get(..blocks_len).ok_or(RtcpError::BadCount {
        count: packet.count,
    })?;
    let start = out.len();
    out.extend_from_slice(&[0x80, packet.packet_type, 0, 0]);
    out.extend_from_slice(&t.sender_ssrc.to_be_bytes());
    out.extend_from_slice(&head[4..]);
    if packet.packet_type == SR {
        // The sender info's RTP timestamp (bytes 8..12 of it) in leg B's space.
        let at = start + 8 + 8;
        let ts = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
        let ts = ts.wrapping_add(t.timestamp_offset.unwrap_or(0));
        out[at..at + 4].copy_from_slice(&ts.to_be_bytes());
    }
    let mut count = 0u8;
    for block in blocks.chunks_exact(REPORT_BLOCK_LEN) {
        let about = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
        let Some((source, offset)) = t.reported_source.filter(|_| about == t.reported_ssrc) else {
            continue; // about a stream far end B never sent: meaningless to it
        };
        out.extend_from_slice(&source.to_be_bytes());
        out.extend_from_slice(&block[4..8]); // fraction lost, cumulative lost
        // Only the low 16 bits map between the two numberings; the cycle count stays far
        // end A's (B cannot tell it from its own: it never saw A's numbering).
        let cycles = u16::from_be_bytes([block[8], block[9]]);
        let highest = u16::from_be_bytes([block[10], block[11]]).wrapping_sub(offset);
        out.extend_from_slice(&cycles.to_be_bytes());
        out.extend_from_slice(&highest.to_be_bytes());
        out.extend_from_slice(&block[12..]); // jitter, LSR, DLSR
        count += 1;
    }
    finish(out, start, count);
    Ok(())
}

/// Re-issues the first SDES chunk (§6.5) under the sender SSRC.
fn sdes(packet: &Packet<'_>, t: &Translation, out: &mut Vec<u8>) {
    let Some(items) = packet.body.get(4..).filter(|_| packet.count > 0) else {
        return;
    };
    // The chunk's items end with a zero type byte; the chunk is padded to 32 bits.
    let mut end = 0;
    while let Some(&kind) = items.get(end) {
        if kind == 0 {
            break;
        }
        let Some(&len) = items.get(end + 1) else {
            return;
        };
        end += 2 + usize::from(len);
    }
    let Some(chunk) = items.get(..end) else {
        return;
    };
    let start = out.len();
    out.extend_from_slice(&[0x80, SDES, 0, 0]);
    out.extend_from_slice(&t.sender_ssrc.to_be_bytes());
    out.extend_from_slice(chunk);
    end_chunk(out, start);
    finish(out, start, 1);
}

/// Ends an SDES chunk written from `start`: the item list's null octet, then padding to a
/// 32-bit boundary (§6.5).
fn end_chunk(out: &mut Vec<u8>, start: usize) {
    out.push(0);
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
}

/// Fills in the count and length of the packet written from `start`.
fn finish(out: &mut [u8], start: usize, count: u8) {
    out[start] = 0x80 | (count & 0x1F);
    let words = (out.len() - start) / 4 - 1;
    let words = u16::try_from(words).unwrap_or(u16::MAX);
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

/// What idgate reports about a stream it sends (§6.4.1 sender info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Wallclock time as a 64-bit NTP timestamp (seconds since 1900 in the high 32 bits).
    pub ntp: u64,
    /// The RTP timestamp matching `ntp`.
    pub rtp_timestamp: u32,
    /// RTP packets sent under `ssrc` so far.
    pub packets: u32,
    /// Payload octets sent under `ssrc` so far.
    pub octets: u32,
}

/// One reception report block (§6.4.1): what idgate heard of the far end's stream, from
/// [`super::reception::Reception::report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source reported on (the far end's SSRC).
    pub ssrc: u32,
    /// Packets lost since the previous report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Packets lost since the first (24 bits, signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// The extended highest sequence number received (wraparounds in the high 16 bits).
    pub highest_sequence: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP timestamp of the source's last SR, or 0.
    pub last_sr: u32,
    /// Since that SR, in units of 1/65536 s, or 0.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.push(self.fraction_lost);
        // The low 24 bits of the two's complement (the caller clamps to that range).
        out.extend_from_slice(&self.cumulative_lost.to_be_bytes()[1..]);
        out.extend_from_slice(&self.highest_sequence.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// Writes a compound packet into `out` (cleared first): an SR, with a reception report block
/// when idgate hears the far end (`block`), then SDES with the CNAME (§6.1: every compound
/// packet carries one).
pub fn write_sender_report(
    info: &SenderInfo,
    block: Option<&ReportBlock>,
    cname: &str,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&[0x80, SR, 0, 0]);
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packets.to_be_bytes());
    out.extend_from_slice(&info.octets.to_be_bytes());
    if let Some(block) = block {
        block.write(out);
    }
    finish(out, 0, u8::from(block.is_some()));
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let start = out.len();
    out.extend_from_slice(&[0x80, SDES, 0, 0]);
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.push(1); // CNAME
    out.push(u8::try_from(cname.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(cname);
    end_chunk(out, start);
    finish(out, start, 1);
}

/// Appends a BYE for `ssrc` (§6.6) to a compound packet `write_sender_report` wrote: the
/// source leaves the session.
pub fn append_bye(ssrc: u32, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0x80, BYE, 0, 0]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    finish(out, start, 1);
}

/// The sender SSRC and NTP timestamp of the SR a compound packet starts with, if it does
/// (what a reception report's LSR is taken from).
pub fn sender_report_of(datagram: &[u8]) -> Option<(u32, u64)> {
    let packets = packets(datagram).ok()?;
    let first = packets.first().filter(|p| p.packet_type == SR)?;
    let ssrc = first.body.get(0..4)?;
    let ntp = first.body.get(4..12)?;
    Some((
        u32::from_be_bytes(ssrc.try_into().ok()?),
        u64::from_be_bytes(ntp.try_into().ok()?),
    ))
}

/// `at` as a 64-bit NTP timestamp (RFC 5905: seconds since 1900, 32-bit fraction).
pub fn ntp_timestamp(at: std::time::SystemTime) -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs().wrapping_add(UNIX_TO_NTP);
    let fraction = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAR_A: u32 = 0xA0A0_A0A0;
    const FAR_B: u32 = 0xB0B0_B0B0;
    const LEG_A: u32 = 0x1A1A_1A1A;
    const LEG_B: u32 = 0x2B2B_2B2B;

    fn translation() -> Translation {
        Translation {
            sender_ssrc: LEG_B,
            timestamp_offset: Some(1000),
            reported_ssrc: LEG_A,
            reported_source: Some((FAR_B, 100)),
        }
    }

    fn block(about: u32, highest: u32) -> Vec<u8> {
        let mut b = about.to_be_bytes().to_vec();
        b.extend_from_slice(&[5, 0, 0, 7]); // fraction lost 5, cumulative 7
        b.extend_from_slice(&highest.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8]);
        b
    }

    fn packet(packet_type: u8, count: u8, body: &[u8]) -> Vec<u8> {
        let words = u16::try_from((body.len() + 4) / 4 - 1).unwrap();
        let mut p = vec![0x80 | count, packet_type];
        p.extend_from_slice(&words.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    fn sender_report(blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut body = FAR_A.to_be_bytes().to_vec();
        body.extend_from_slice(&[0xAA; 8]); // NTP timestamp
        body.extend_from_slice(&5000u32.to_be_bytes()); // RTP timestamp
        body.extend_from_slice(&[0, 0, 0, 50, 0, 0, 0x1F, 0x40]); // packets, octets
        for b in blocks {
            body.extend_from_slice(b);
        }
        packet(SR, u8::try_from(blocks.len()).unwrap(), &body)
    }

    fn sdes_cname() -> Vec<u8> {
        let mut body = FAR_A.to_be_bytes().to_vec();
        body.extend_from_slice(&[1, 5, b'a', b'@', b'f', b'a', b'r', 0]);
        packet(SDES, 1, &body)
    }

    #[test]
    fn sender_report_is_reissued_in_the_other_legs_space() {
        let mut datagram = sender_report(&[block(LEG_A, 0x0001_0200), block(0xDEAD, 1)]);
        datagram.extend(sdes_cname());
        let mut out = Vec::new();
        translate(&datagram, &translation(), &mut out).unwrap();
        let packets = packets(&out).unwrap();
        assert_eq!(packets.len(), 2);
        let sr = &packets[0];
        assert_eq!(
            (sr.packet_type, sr.count),
            (SR, 1),
            "the unknown block is dropped"
        );
        assert_eq!(&sr.body[0..4], &LEG_B.to_be_bytes());
        assert_eq!(&sr.body[4..12], &[0xAA; 8]);
        assert_eq!(&sr.body[12..16], &6000u32.to_be_bytes());
        let block = &sr.body[24..48];
        assert_eq!(&block[0..4], &FAR_B.to_be_bytes());
        assert_eq!(&block[4..8], &[5, 0, 0, 7]);
        assert_eq!(
            &block[8..12],
            &[0, 1, 0x01, 0x9C],
            "0x200 - 100 in B's numbering"
        );
        let sdes = &packets[1];
        assert_eq!(sdes.packet_type, SDES);
        assert_eq!(&sdes.body[0..4], &LEG_B.to_be_bytes());
        assert_eq!(&sdes.body[4..11], &[1, 5, b'a', b'@', b'f', b'a', b'r']);
    }

    #[test]
    fn receiver_report_before_any_relay_has_no_blocks() {
        let mut body = FAR_A.to_be_bytes().to_vec();
        body.extend(block(LEG_A, 10));
        let datagram = packet(RR, 1, &body);
        let t = Translation {
            reported_source: None,
            ..translation()
        };
        let mut out = Vec::new();
        translate(&datagram, &t, &mut out).unwrap();
        assert_eq!(out, packet(RR, 0, &LEG_B.to_be_bytes()));
    }

    #[test]
    fn bye_app_and_feedback_are_dropped() {
        let mut datagram = packet(RR, 0, &FAR_A.to_be_bytes());
        datagram.extend(packet(203, 1, &FAR_A.to_be_bytes())); // BYE
        datagram.extend(packet(204, 0, &[0; 12])); // APP
        datagram.extend(packet(205, 1, &[0; 8])); // RTPFB
        let mut out = Vec::new();
        translate(&datagram, &translation(), &mut out).unwrap();
        assert_eq!(out, packet(RR, 0, &LEG_B.to_be_bytes()));
    }

    #[test]
    fn malformed_compounds_are_errors() {
        let mut out = Vec::new();
        let t = translation();
        let sr = sender_report(&[block(LEG_A, 1)]);
        for len in 0..sr.len() {
            assert!(translate(&sr[..len], &t, &mut out).is_err(), "prefix {len}");
        }
        let mut bad_version = sr.clone();
        bad_version[0] = 0x40;
        assert_eq!(
            translate(&bad_version, &t, &mut out),
            Err(RtcpError::Version(1))
        );
        assert_eq!(
            translate(&sdes_cname(), &t, &mut out),
            Err(RtcpError::NotAReport(SDES))
        );
        let mut too_many = sr.clone();
        too_many[0] = 0x80 | 3;
        assert_eq!(
            translate(&too_many, &t, &mut out),
            Err(RtcpError::BadCount { count: 3 })
        );
        let mut padded = packet(RR, 0, &[0, 0, 0, 1, 0, 0, 0, 9]);
        padded[0] |= 0x20;
        assert!(
            translate(&padded, &t, &mut out).is_err(),
            "padding beyond the body"
        );
    }

    #[test]
    fn translate_never_panics_on_noise() {
        let noise: Vec<u8> = (0..96u32)
            .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 9) as u8)
            .collect();
        let mut out = Vec::new();
        for len in 0..noise.len() {
            let mut d = noise[..len].to_vec();
            if let Some(first) = d.first_mut() {
                *first = 0x80 | (*first & 0x3F);
            }
            if let Some(second) = d.get_mut(1) {
                *second = RR;
            }
            let _ = translate(&d, &translation(), &mut out);
        }
    }

    /// What the pump would report after 1,000 packets of G.711.
    fn sender_info() -> SenderInfo {
        SenderInfo {
            ssrc: 0x1234_5678,
            ntp: 0xE5A1_0000_8000_0000,
            rtp_timestamp: 160_000,
            packets: 1000,
            octets: 160_000,
        }
    }

    #[test]
    fn a_sender_report_is_a_valid_compound_packet_with_a_cname() {
        let info = sender_info();
        let mut out = Vec::new();
        write_sender_report(&info, None, "idgate@127.0.0.1", &mut out);
        assert_eq!(out.len() % 4, 0);
        let parsed = packets(&out).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!((parsed[0].packet_type, parsed[0].count), (SR, 0));
        assert_eq!(&out[4..8], &0x1234_5678u32.to_be_bytes());
        assert_eq!(&out[8..16], &0xE5A1_0000_8000_0000u64.to_be_bytes());
        assert_eq!(&out[16..20], &160_000u32.to_be_bytes());
        assert_eq!(&out[20..24], &1000u32.to_be_bytes());
        assert_eq!(&out[24..28], &160_000u32.to_be_bytes());
        assert_eq!((parsed[1].packet_type, parsed[1].count), (SDES, 1));
        // SDES: SSRC, CNAME (type 1, length 16), the text, then the null octet and padding.
        assert_eq!(&out[32..36], &0x1234_5678u32.to_be_bytes());
        assert_eq!(&out[36..38], &[1, 16]);
        assert_eq!(&out[38..54], b"idgate@127.0.0.1");
        assert!(out[54..].iter().all(|&b| b == 0) && !out[54..].is_empty());
        // What the relay would do with it: it translates like any far end's report.
        let t = Translation {
            sender_ssrc: 9,
            timestamp_offset: Some(0),
            reported_ssrc: 7,
            reported_source: None,
        };
        let mut relayed = Vec::new();
        translate(&out, &t, &mut relayed).unwrap();
        assert_eq!(&relayed[4..8], &9u32.to_be_bytes());
    }

    #[test]
    fn a_sender_report_carries_the_reception_block_it_is_given() {
        let info = sender_info();
        let block = ReportBlock {
            ssrc: 0xFA,
            fraction_lost: 25,
            cumulative_lost: -2,
            highest_sequence: 0x0001_0004,
            jitter: 80,
            last_sr: 0x2345_6789,
            delay_since_last_sr: 98_304,
        };
        let mut out = Vec::new();
        write_sender_report(&info, Some(&block), "idgate@127.0.0.1", &mut out);
        let parsed = packets(&out).unwrap();
        assert_eq!((parsed[0].packet_type, parsed[0].count), (SR, 1));
        assert_eq!(parsed[0].body.len(), 4 + SENDER_INFO_LEN + REPORT_BLOCK_LEN);
        let b = &out[28..52];
        assert_eq!(&b[0..4], &0xFAu32.to_be_bytes());
        assert_eq!(b[4], 25);
        assert_eq!(&b[5..8], &[0xFF, 0xFF, 0xFE], "-2 in 24 bits");
        assert_eq!(&b[8..12], &0x0001_0004u32.to_be_bytes());
        assert_eq!(&b[12..16], &80u32.to_be_bytes());
        assert_eq!(&b[16..20], &0x2345_6789u32.to_be_bytes());
        assert_eq!(&b[20..24], &98_304u32.to_be_bytes());
        assert_eq!(parsed[1].packet_type, SDES);
        // Read back as the far end's SR would be.
        assert_eq!(
            sender_report_of(&out),
            Some((0x1234_5678, 0xE5A1_0000_8000_0000))
        );
        // And relayed, the block is re-issued like any far end's.
        let t = Translation {
            sender_ssrc: 9,
            timestamp_offset: Some(0),
            reported_ssrc: 0xFA,
            reported_source: Some((0xBB, 0)),
        };
        let mut relayed = Vec::new();
        translate(&out, &t, &mut relayed).unwrap();
        assert_eq!(relayed[0] & 0x1F, 1);
        // A leg's last packet: the same, then BYE, still one valid compound.
        let report_len = out.len();
        append_bye(0x1234_5678, &mut out);
        let parsed = packets(&out).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!((parsed[2].packet_type, parsed[2].count), (BYE, 1));
        assert_eq!(&out[report_len + 4..], &0x1234_5678u32.to_be_bytes());
    }

    #[test]
    fn only_a_compound_that_starts_with_an_sr_has_sender_timing() {
        assert_eq!(sender_report_of(&[0x80, RR, 0, 1, 0, 0, 0, 0xFA]), None);
        assert_eq!(sender_report_of(&[0x80, SR, 0, 1, 0, 0, 0, 0xFA]), None);
        assert_eq!(sender_report_of(b"noise"), None);
    }

    #[test]
    fn ntp_timestamps_count_from_1900_with_a_binary_fraction() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        assert_eq!(
            ntp_timestamp(at),
            ((2_208_988_800u64 + 1) << 32) | 0x8000_0000
        );
    }
}
