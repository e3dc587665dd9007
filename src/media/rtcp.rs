//! RTCP (RFC 3550 §6) for the relay: translates one leg's compound RTCP packet for the other
//! leg, so that each far end sees reports that match the RTP stream it receives.
//!
//! Each leg is its own RTP session (see `relay`): the far end of leg B knows idgate's stream
//! by leg B's SSRC, with leg B's sequence numbers and timestamps. So a sender report from far
//! end A is re-issued under leg B's SSRC with its RTP timestamp in leg B's space, and A's
//! reception reports, which are about leg A's outgoing stream, are re-issued about far end
//! B's own SSRC with the extended highest sequence number in B's numbering. Only SR, RR and
//! SDES (the first chunk) are relayed; BYE (idgate ends legs by SIP), APP, feedback and XR are
//! dropped, since their SSRCs and semantics do not survive the translation.
//!
//! Hand-written: the fixed formats of §6.4 and §6.5 are all idgate reads, and no maintained
//! crate translates SSRCs between sessions.

use thiserror::Error;

/// Sender report (§6.4.1).
const SR: u8 = 200;
/// Receiver report (§6.4.2).
const RR: u8 = 201;
/// Source description (§6.5).
const SDES: u8 = 202;
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
    out.push(0);
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
    finish(out, start, 1);
}

/// Fills in the count and length of the packet written from `start`.
fn finish(out: &mut [u8], start: usize, count: u8) {
    out[start] = 0x80 | (count & 0x1F);
    let words = (out.len() - start) / 4 - 1;
    let words = u16::try_from(words).unwrap_or(u16::MAX);
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
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
}
