//! RTP fixed header (RFC 3550 §5.1): build and parse.
//!
//! Hand-written: idgate needs only the 12-byte fixed header of plain RTP (no SRTP yet): it
//! builds it for playout, and the relay rewrites SSRC, sequence number, timestamp and marker in
//! place, so a header codec is all there is to it.

use thiserror::Error;

/// The RTP version this module speaks (RFC 3550 §5.1, `V=2`).
pub const VERSION: u8 = 2;
/// Length of the fixed header without CSRCs or extension.
pub const HEADER_LEN: usize = 12;

/// The fields of the RTP fixed header that idgate sets or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The marker bit (`M`): first packet of a talkspurt for audio (RFC 3551 §4.1).
    pub marker: bool,
    /// The payload type (`PT`, 7 bits).
    pub payload_type: u8,
    /// The sequence number, +1 per packet.
    pub sequence: u16,
    /// The media timestamp, in clock-rate units (8,000 per second for G.711).
    pub timestamp: u32,
    /// The synchronisation source identifier.
    pub ssrc: u32,
}

impl RtpHeader {
    /// The 12-byte wire form (`V=2`, no padding, extension or CSRCs).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION << 6;
        out[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7F);
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        out
    }
}

/// A parsed RTP packet, borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The fixed header.
    pub header: RtpHeader,
    /// The payload, after CSRCs and header extension, without padding.
    pub payload: &'a [u8],
}

/// Why a datagram is not a valid RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpError {
    /// The datagram is shorter than the headers it announces.
    #[error("RTP packet too short: {len} bytes, need {needed}")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes the header requires.
        needed: usize,
    },
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    /// The padding count is zero or larger than the payload (RFC 3550 §5.1, `P`).
    #[error("invalid RTP padding")]
    Padding,
}

/// Parses a datagram as RTP, tolerating CSRCs, a header extension and padding.
pub fn parse(datagram: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let too_short = |needed| RtpError::TooShort {
        len: datagram.len(),
        needed,
    };
    if datagram.len() < HEADER_LEN {
        return Err(too_short(HEADER_LEN));
    }
    let version = datagram[0] >> 6;
    if version != VERSION {
        return Err(RtpError::Version(version));
    }
    let has_padding = datagram[0] & 0x20 != 0;
    let has_extension = datagram[0] & 0x10 != 0;
    let csrc_count = usize::from(datagram[0] & 0x0F);
    let mut start = HEADER_LEN + 4 * csrc_count;
    if has_extension {
        // RFC 3550 §5.3.1: 16-bit profile id, 16-bit length in 32-bit words.
        let ext = datagram.get(start..start + 4).ok_or(too_short(start + 4))?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if datagram.len() < start {
        return Err(too_short(start));
    }
    let mut end = datagram.len();
    if has_padding {
        let pad = usize::from(datagram[end - 1]);
        if pad == 0 || pad > end - start {
            return Err(RtpError::Padding);
        }
        end -= pad;
    }
    Ok(RtpPacket {
        header: RtpHeader {
            marker: datagram[1] & 0x80 != 0,
            payload_type: datagram[1] & 0x7F,
            sequence: u16::from_be_bytes([datagram[2], datagram[3]]),
            timestamp: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
            ssrc: u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
        },
        payload: &datagram[start..end],
    })
}

/// Whether a datagram that arrived on an RTP port is RTCP (RFC 5761 §4: the second byte of
/// RTCP packets is a packet type in 192..=223, which RTP never uses as marker + payload type).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.get(1).is_some_and(|b| (192..=223).contains(b))
}

/// The header fields the relay rewrites (RFC 3550 §5.1, §7.2: a translator that changes the
/// stream's identity keeps its own SSRC, sequence and timestamp space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    /// Set the marker bit (the first packet after a switch of source, RFC 3551 §4.1).
    pub marker: bool,
    /// The new sequence number.
    pub sequence: u16,
    /// The new timestamp.
    pub timestamp: u32,
    /// The new SSRC.
    pub ssrc: u32,
}

/// Rewrites the fixed header of an RTP datagram in place (payload, CSRCs, extension and
/// payload type untouched; the marker bit is only ever set, never cleared).
pub fn rewrite(datagram: &mut [u8], rewrite: &Rewrite) -> Result<(), RtpError> {
    let Some(header) = datagram.get_mut(..HEADER_LEN) else {
        return Err(RtpError::TooShort {
            len: datagram.len(),
            needed: HEADER_LEN,
        });
    };
    if rewrite.marker {
        header[1] |= 0x80;
    }
    header[2..4].copy_from_slice(&rewrite.sequence.to_be_bytes());
    header[4..8].copy_from_slice(&rewrite.timestamp.to_be_bytes());
    header[8..12].copy_from_slice(&rewrite.ssrc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 101,
            sequence: 0xBEEF,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x0102_0304,
        }
    }

    #[test]
    fn build_then_parse() {
        let mut datagram = header().to_bytes().to_vec();
        datagram.extend_from_slice(&[1, 2, 3]);
        assert_eq!(&datagram[..2], &[0x80, 0x80 | 101]);
        let packet = parse(&datagram).unwrap();
        assert_eq!(packet.header, header());
        assert_eq!(packet.payload, &[1, 2, 3]);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut datagram = header().to_bytes().to_vec();
        datagram[0] |= 0x20 | 0x10 | 2; // P, X, CC=2
        datagram.extend_from_slice(&[0; 8]); // two CSRCs
        datagram.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // extension, 1 word
        datagram.extend_from_slice(&[7, 7, 0, 0, 3]); // payload + 3 bytes padding
        let packet = parse(&datagram).unwrap();
        assert_eq!(packet.payload, &[7, 7]);
        assert_eq!(packet.header.ssrc, 0x0102_0304);
    }

    #[test]
    fn short_and_invalid_input_is_an_error() {
        let full = header().to_bytes();
        for len in 0..HEADER_LEN {
            assert!(matches!(
                parse(&full[..len]),
                Err(RtpError::TooShort { .. })
            ));
        }
        let mut bad = full;
        bad[0] = 0x40;
        assert_eq!(parse(&bad), Err(RtpError::Version(1)));
        let mut csrc = full;
        csrc[0] |= 0x0F;
        assert!(matches!(parse(&csrc), Err(RtpError::TooShort { .. })));
        let mut ext = full.to_vec();
        ext[0] |= 0x10;
        ext.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
        assert!(matches!(parse(&ext), Err(RtpError::TooShort { .. })));
        let mut pad = full.to_vec();
        pad[0] |= 0x20;
        pad.push(0);
        assert_eq!(parse(&pad), Err(RtpError::Padding));
        pad.pop();
        pad.push(200);
        assert_eq!(parse(&pad), Err(RtpError::Padding));
    }

    #[test]
    fn parse_never_panics_on_any_prefix_of_noise() {
        let noise: Vec<u8> = (0..64u32)
            .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 7) as u8 | 0x80)
            .collect();
        for len in 0..noise.len() {
            let _ = parse(&noise[..len]);
        }
    }

    #[test]
    fn rewrite_changes_only_the_identity_fields() {
        let mut datagram = header().to_bytes().to_vec();
        datagram[1] &= 0x7F; // no marker
        datagram.extend_from_slice(&[5, 6]);
        let new = Rewrite {
            marker: true,
            sequence: 7,
            timestamp: 8,
            ssrc: 9,
        };
        rewrite(&mut datagram, &new).unwrap();
        let packet = parse(&datagram).unwrap();
        let expected = RtpHeader {
            marker: true,
            payload_type: 101,
            sequence: 7,
            timestamp: 8,
            ssrc: 9,
        };
        assert_eq!((packet.header, packet.payload), (expected, &[5u8, 6][..]));
        assert!(rewrite(&mut datagram[..11], &new).is_err());
    }

    #[test]
    fn rtcp_is_told_from_rtp() {
        assert!(is_rtcp(&[0x81, 200, 0, 6])); // SR
        assert!(is_rtcp(&[0x81, 201, 0, 1])); // RR
        assert!(!is_rtcp(&header().to_bytes())); // marker + PT 101 = 229
        assert!(!is_rtcp(&[0x80, 0x80])); // marker + PCMU
        assert!(!is_rtcp(&[0x80]));
    }
}
