//! RFC 4733 telephone-event detection (DTMF digits carried in RTP).
//!
//! Hand-written: no maintained crate decodes RFC 4733, and the logic is a small state machine
//! over the RTP timestamp, which identifies an event (RFC 4733 §2.5.1.2).

use std::fmt;

/// Detects DTMF digits from RFC 4733 telephone-event packets of one RTP stream.
///
/// A digit is reported once per event, on the first packet of the event that arrives (normally
/// the start packet with the marker bit; the first continuation or end packet if it was lost).
/// The end packet, which senders repeat three times (§2.5.1.4), and late packets of the
/// previous event are ignored. `Debug` never shows digits.
pub struct DtmfDetector {
    payload_type: u8,
    current: Option<Event>,
    previous_timestamp: Option<u32>,
}

/// The event being received, identified by its RTP timestamp.
#[derive(Clone, Copy)]
struct Event {
    timestamp: u32,
    code: u8,
    duration: u16,
    ended: bool,
}

impl DtmfDetector {
    /// A detector for telephone-events sent with this (dynamic) payload type.
    pub fn new(payload_type: u8) -> Self {
        DtmfDetector {
            payload_type,
            current: None,
            previous_timestamp: None,
        }
    }

    /// The payload type this detector listens to.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Feeds one RTP packet; returns the digit when a new event starts.
    ///
    /// Packets of another payload type, shorter than the 4-byte event payload (§2.3), or
    /// carrying events other than 0-15 (DTMF, §3.2) are ignored.
    pub fn on_packet(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Option<char> {
        if payload_type != self.payload_type || payload.len() < 4 {
            return None;
        }
        let code = payload[0];
        let ended = payload[1] & 0x80 != 0;
        let duration = u16::from_be_bytes([payload[2], payload[3]]);
        let digit = digit(code)?;
        if let Some(current) = self.current.as_mut().filter(|c| c.timestamp == timestamp) {
            current.ended |= ended;
            current.duration = current.duration.max(duration);
            return None;
        }
        if self.previous_timestamp == Some(timestamp) {
            return None;
        }
        let segment = !marker && self.continues_long_event(code, timestamp);
        self.previous_timestamp = self.current.map(|c| c.timestamp);
        self.current = Some(Event {
            timestamp,
            code,
            duration,
            ended,
        });
        (!segment).then_some(digit)
    }

    /// Whether a packet with a new timestamp is the next segment of a long event that has not
    /// ended (§2.5.1.3: a new segment starts at the previous timestamp plus its duration).
    fn continues_long_event(&self, code: u8, timestamp: u32) -> bool {
        self.current.is_some_and(|c| {
            let gap = timestamp.wrapping_sub(c.timestamp);
            !c.ended && c.code == code && gap >= u32::from(c.duration) && gap <= 0xFFFF
        })
    }
}

impl fmt::Debug for DtmfDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtmfDetector")
            .field("payload_type", &self.payload_type)
            .field("in_event", &self.current.is_some_and(|c| !c.ended))
            .finish()
    }
}

/// The DTMF digit for an RFC 4733 §3.2 event code.
fn digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some(char::from(b'0' + code)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + code - 12)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT: u8 = 101;

    fn payload(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let [hi, lo] = duration.to_be_bytes();
        [code, if end { 0x80 | 10 } else { 10 }, hi, lo]
    }

    /// Feeds a whole event (start, two continuations, end three times); returns the digits.
    fn event(d: &mut DtmfDetector, code: u8, ts: u32) -> Vec<char> {
        let packets = [
            (true, payload(code, false, 160)),
            (false, payload(code, false, 320)),
            (false, payload(code, false, 480)),
            (false, payload(code, true, 640)),
            (false, payload(code, true, 640)),
            (false, payload(code, true, 640)),
        ];
        packets
            .iter()
            .filter_map(|(m, p)| d.on_packet(PT, *m, ts, p))
            .collect()
    }

    #[test]
    fn one_digit_per_event_despite_repeated_end_packets() {
        let mut d = DtmfDetector::new(PT);
        assert_eq!(event(&mut d, 5, 1000), vec!['5']);
        assert_eq!(
            event(&mut d, 5, 2000),
            vec!['5'],
            "same digit again is a new event"
        );
        assert_eq!(event(&mut d, 11, 3000), vec!['#']);
    }

    #[test]
    fn all_sixteen_events_map_and_others_are_ignored() {
        let mut d = DtmfDetector::new(PT);
        let digits: String = (0..16u8)
            .flat_map(|code| event(&mut d, code, 1000 + u32::from(code) * 1000))
            .collect();
        assert_eq!(digits, "0123456789*#ABCD");
        assert_eq!(
            event(&mut d, 16, 90_000),
            Vec::<char>::new(),
            "flash is not DTMF"
        );
        assert_eq!(event(&mut d, 70, 91_000), Vec::<char>::new());
    }

    #[test]
    fn lost_start_packet_still_yields_the_digit() {
        let mut d = DtmfDetector::new(PT);
        assert_eq!(
            d.on_packet(PT, false, 500, &payload(3, false, 320)),
            Some('3')
        );
        assert_eq!(d.on_packet(PT, false, 500, &payload(3, true, 640)), None);
        // Only end packets of the next event arrive.
        assert_eq!(
            d.on_packet(PT, false, 1500, &payload(4, true, 640)),
            Some('4')
        );
        assert_eq!(d.on_packet(PT, false, 1500, &payload(4, true, 640)), None);
    }

    #[test]
    fn late_packets_of_the_previous_event_are_ignored() {
        let mut d = DtmfDetector::new(PT);
        assert_eq!(
            d.on_packet(PT, true, 100, &payload(1, false, 160)),
            Some('1')
        );
        assert_eq!(
            d.on_packet(PT, true, 900, &payload(2, false, 160)),
            Some('2')
        );
        assert_eq!(d.on_packet(PT, false, 100, &payload(1, true, 640)), None);
    }

    #[test]
    fn long_event_segments_are_one_digit() {
        let mut d = DtmfDetector::new(PT);
        assert_eq!(
            d.on_packet(PT, true, 0, &payload(9, false, 0xFFFF)),
            Some('9')
        );
        // RFC 4733 §2.5.1.3: the next segment starts at timestamp + duration, no marker.
        assert_eq!(
            d.on_packet(PT, false, 0xFFFF, &payload(9, false, 800)),
            None
        );
        assert_eq!(
            d.on_packet(PT, false, 0xFFFF, &payload(9, true, 1600)),
            None
        );
    }

    #[test]
    fn other_payload_types_and_short_payloads_are_ignored() {
        let mut d = DtmfDetector::new(PT);
        assert_eq!(d.on_packet(0, true, 0, &payload(1, false, 160)), None);
        assert_eq!(d.on_packet(PT, true, 0, &[1, 0, 0]), None);
        assert_eq!(d.on_packet(PT, true, 0, &[]), None);
        assert_eq!(d.on_packet(PT, true, 0, &payload(1, false, 160)), Some('1'));
    }

    #[test]
    fn timestamp_wraparound_is_a_new_event() {
        let mut d = DtmfDetector::new(PT);
        assert_eq!(event(&mut d, 7, u32::MAX - 10), vec!['7']);
        assert_eq!(event(&mut d, 8, 50), vec!['8']);
    }

    #[test]
    fn debug_does_not_show_digits() {
        let mut d = DtmfDetector::new(PT);
        d.on_packet(PT, true, 0, &payload(7, false, 160));
        let text = format!("{d:?}");
        assert!(!text.contains('7'), "{text}");
        assert!(text.contains("in_event: true"));
        assert_eq!(d.payload_type(), PT);
    }
}
