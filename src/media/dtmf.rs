//! RFC 4733 telephone-event detection (DTMF digits carried in RTP).
//!
//! Hand-written: no maintained crate decodes RFC 4733, and the logic is a small state machine
//! over the RTP timestamp, which identifies an event (RFC 4733 §2.5.1.2).

use std::fmt;

/// Detects DTMF digits from RFC 4733 telephone-event packets of one RTP stream.
///
/// A digit is reported once per event, on the first packet of the event that arrives (normally
/// the start packet with the marker bit; any later packet of it if that was lost, §2.5.2.2).
/// Duration updates, the end packet (which senders repeat three times, §2.5.1.4), duplicates
/// and late packets of earlier events are ignored, and the segments of a long event (§2.5.1.3)
/// continue it. `Debug` never shows digits.
pub struct DtmfDetector {
    payload_type: u8,
    current: Option<Event>,
}

/// How far behind the current event a timestamp may be and still be a late packet of an
/// earlier event: one minute at 8 kHz. Further back, it is a source that restarted with a new
/// random timestamp (§2.5.2.1 identifies events by timestamp only), so a new event.
const LATE_WINDOW: u32 = 60 * 8000;
/// How much later than the last duration seen a long event's next segment may start: the
/// last packets of the previous segment may be lost (§2.5.1.3). 200 ms at 8 kHz.
const SEGMENT_SLACK: u32 = 1600;

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
        }
    }

    /// The payload type this detector listens to.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Feeds one RTP packet; returns the digit when a new event starts.
    ///
    /// Packets of another payload type, shorter than the 4-byte event payload (§2.3), or
    /// carrying events other than 0-15 (DTMF, §3.2) are ignored; the volume (§2.3.4) is not
    /// looked at.
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
        let event = Event {
            timestamp,
            code,
            duration,
            ended,
        };
        match self.current.as_mut() {
            Some(current) if current.timestamp == timestamp => {
                // Duration update, end packet, retransmission or reordering within the event.
                current.ended |= ended;
                current.duration = current.duration.max(duration);
                None
            }
            Some(current) if is_late(current.timestamp, timestamp) => None,
            Some(current) if !marker && current.continues_with(code, timestamp) => {
                *current = event;
                None
            }
            _ => {
                self.current = Some(event);
                Some(digit)
            }
        }
    }
}

/// Whether `timestamp` lies shortly before `current`: a late packet of an earlier event.
fn is_late(current: u32, timestamp: u32) -> bool {
    let behind = current.wrapping_sub(timestamp);
    behind != 0 && behind <= LATE_WINDOW
}

impl Event {
    /// Whether a packet with a new timestamp is the next segment of this long event, which
    /// has not ended (§2.5.1.3: a new segment starts at the previous timestamp plus its
    /// duration, without the marker bit). The gap may exceed the duration seen by
    /// [`SEGMENT_SLACK`] when the last packets of the segment were lost; a longer gap is a new
    /// press of the same key whose start packet was lost.
    fn continues_with(&self, code: u8, timestamp: u32) -> bool {
        let gap = timestamp.wrapping_sub(self.timestamp);
        let duration = u32::from(self.duration);
        !self.ended
            && self.code == code
            && duration > 0
            && (duration..=duration + SEGMENT_SLACK).contains(&gap)
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

/// RFC 4733 edge cases, one test per case (§ numbers of RFC 4733).
#[cfg(test)]
mod edge_cases {
    use super::*;

    const PT: u8 = 101;

    /// An event payload (§2.3): event code, E bit, volume, duration.
    fn ev(code: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
        let [hi, lo] = duration.to_be_bytes();
        [code, if end { 0x80 } else { 0 } | (volume & 0x3F), hi, lo]
    }

    fn feed(d: &mut DtmfDetector, packets: &[(bool, u32, [u8; 4])]) -> String {
        packets
            .iter()
            .filter_map(|(m, ts, p)| d.on_packet(PT, *m, *ts, p))
            .collect()
    }

    #[test]
    fn end_packet_repeated_three_times_is_one_digit() {
        // §2.5.1.4: the final packet is sent three times.
        let mut d = DtmfDetector::new(PT);
        let end = ev(1, true, 10, 800);
        assert_eq!(
            feed(
                &mut d,
                &[
                    (true, 0, ev(1, false, 10, 160)),
                    (false, 0, end),
                    (false, 0, end),
                    (false, 0, end)
                ]
            ),
            "1"
        );
    }

    #[test]
    fn only_end_packets_arrive() {
        // §2.5.2.2: a receiver that missed the start reports the event from any packet of it.
        let mut d = DtmfDetector::new(PT);
        let end = ev(2, true, 10, 800);
        assert_eq!(
            feed(&mut d, &[(false, 0, end), (false, 0, end), (false, 0, end)]),
            "2"
        );
    }

    #[test]
    fn missing_marker_bit_still_starts_an_event() {
        let mut d = DtmfDetector::new(PT);
        assert_eq!(
            feed(
                &mut d,
                &[
                    (false, 800, ev(3, false, 10, 160)),
                    (false, 800, ev(3, true, 10, 480))
                ]
            ),
            "3"
        );
        // The same digit again, no marker, new timestamp after a pause: a new event.
        assert_eq!(
            feed(
                &mut d,
                &[
                    (false, 2400, ev(3, false, 10, 160)),
                    (false, 2400, ev(3, true, 10, 480))
                ]
            ),
            "3"
        );
    }

    #[test]
    fn same_digit_with_a_new_timestamp_is_a_new_event_even_without_end_packets() {
        // The end packets of the first press are lost, and so is the start of the second
        // (no marker): the new timestamp is well past the first event, so it is a new press.
        let mut d = DtmfDetector::new(PT);
        assert_eq!(feed(&mut d, &[(true, 1000, ev(4, false, 10, 400))]), "4");
        assert_eq!(
            feed(&mut d, &[(false, 1000 + 8000, ev(4, false, 10, 400))]),
            "4"
        );
    }

    #[test]
    fn volume_does_not_matter() {
        // §2.3.4: volume 0 (loudest) to 63 (-63 dBm0); idgate reports the digit at any level.
        let mut d = DtmfDetector::new(PT);
        assert_eq!(feed(&mut d, &[(true, 0, ev(5, false, 0, 160))]), "5");
        assert_eq!(feed(&mut d, &[(true, 800, ev(6, false, 63, 160))]), "6");
    }

    #[test]
    fn duration_updates_of_one_event_are_one_digit() {
        // §2.5.1.2: every packet of an event repeats its timestamp with a growing duration.
        let mut d = DtmfDetector::new(PT);
        let packets: Vec<_> = (1..=20u16)
            .map(|i| (i == 1, 5000, ev(7, false, 10, 160 * i)))
            .collect();
        assert_eq!(feed(&mut d, &packets), "7");
    }

    #[test]
    fn long_event_in_segments_is_one_digit() {
        // §2.5.1.3: an event longer than 0xFFFF units is sent as segments, each starting at the
        // previous segment's timestamp plus its duration, without the marker bit.
        let mut d = DtmfDetector::new(PT);
        let mut ts = u32::MAX - 1000; // across the timestamp wrap too
        let mut digits = feed(
            &mut d,
            &[
                (true, ts, ev(8, false, 10, 160)),
                (false, ts, ev(8, false, 10, 0xFFFF)),
            ],
        );
        for _ in 0..3 {
            ts = ts.wrapping_add(0xFFFF);
            digits += &feed(
                &mut d,
                &[
                    (false, ts, ev(8, false, 10, 400)),
                    (false, ts, ev(8, false, 10, 0xFFFF)),
                ],
            );
        }
        ts = ts.wrapping_add(0xFFFF);
        digits += &feed(
            &mut d,
            &[
                (false, ts, ev(8, true, 10, 800)),
                (false, ts, ev(8, true, 10, 800)),
            ],
        );
        assert_eq!(digits, "8");
    }

    #[test]
    fn long_event_segment_after_a_lost_last_packet_is_still_one_digit() {
        // The 0xFFFF packet of the first segment is lost: the last duration seen is shorter.
        let mut d = DtmfDetector::new(PT);
        let digits = feed(
            &mut d,
            &[
                (true, 0, ev(9, false, 10, 0xFFFF - 400)),
                (false, 0xFFFF, ev(9, false, 10, 400)),
            ],
        );
        assert_eq!(digits, "9");
    }

    #[test]
    fn duration_wrap_inside_one_timestamp_is_one_digit() {
        // A sender that lets the 16-bit duration wrap instead of segmenting.
        let mut d = DtmfDetector::new(PT);
        let digits = feed(
            &mut d,
            &[
                (true, 0, ev(0, false, 10, 0xFF00)),
                (false, 0, ev(0, false, 10, 0x0100)),
                (false, 0, ev(0, true, 10, 0x0200)),
            ],
        );
        assert_eq!(digits, "0");
    }

    #[test]
    fn unknown_events_are_ignored_and_do_not_disturb_a_digit() {
        // §3.2: 0-15 are DTMF; 16 (flash) and the rest are other events.
        let mut d = DtmfDetector::new(PT);
        let digits = feed(
            &mut d,
            &[
                (true, 0, ev(1, false, 10, 160)),
                (true, 400, ev(16, false, 10, 160)),
                (false, 0, ev(1, true, 10, 480)),
                (true, 800, ev(255, true, 10, 160)),
                (true, 1600, ev(2, false, 10, 160)),
            ],
        );
        assert_eq!(digits, "12");
    }

    #[test]
    fn reordered_and_duplicate_packets_are_one_digit_each() {
        let mut d = DtmfDetector::new(PT);
        let digits = feed(
            &mut d,
            &[
                (false, 0, ev(1, false, 10, 320)), // continuation before the start
                (true, 0, ev(1, false, 10, 160)),
                (true, 0, ev(1, false, 10, 160)), // duplicate
                (true, 1600, ev(2, false, 10, 160)),
                (false, 0, ev(1, true, 10, 480)), // late end of '1'
                (true, 3200, ev(3, false, 10, 160)),
                (false, 0, ev(1, true, 10, 480)), // very late end of '1', two events back
                (false, 1600, ev(2, true, 10, 480)),
            ],
        );
        assert_eq!(digits, "123");
    }

    #[test]
    fn redundant_packets_of_another_payload_type_are_ignored() {
        // RFC 2198 redundancy (`red`) is not negotiated by idgate's answer; such packets carry
        // another payload type and are not mistaken for events.
        let mut d = DtmfDetector::new(PT);
        let red = [0x80 | PT, 0, 0, 4, PT, 1, 0, 0];
        assert_eq!(d.on_packet(100, true, 0, &red), None);
        assert_eq!(feed(&mut d, &[(true, 0, ev(1, false, 10, 160))]), "1");
    }

    #[test]
    fn a_restarted_source_is_not_taken_for_late_packets() {
        // A timestamp far behind the current event (a new random start) is a new event.
        let mut d = DtmfDetector::new(PT);
        assert_eq!(
            feed(&mut d, &[(true, 3_000_000_000, ev(1, true, 10, 480))]),
            "1"
        );
        assert_eq!(feed(&mut d, &[(true, 1_000, ev(1, true, 10, 480))]), "1");
    }
}
