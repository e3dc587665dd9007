//! What one leg's far end receives, kept one continuous RTP stream whoever feeds it: idgate's
//! own playout (prompts, hold music) before the bridge, the other leg's relayed packets after
//! it, and a new source whenever the other side's SSRC changes or its numbering restarts.
//! Sans-IO: headers and `now` in, the header to send out.
//!
//! RFC 3550 §7.2 lets a translator keep the SSRC but calls for care with sequence numbers and
//! timestamps; idgate is a B2BUA, so each leg is its own RTP session: the far end sees the
//! leg's SSRC throughout, and sequence numbers and timestamps that continue across every switch
//! (offsets fixed at the switch and kept for the source's packets, so loss and reordering show
//! through unchanged).

use std::time::{Duration, Instant};

use super::rtp::{Rewrite, RtpHeader};

/// Where an outgoing packet comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// idgate's playout (the pump).
    Playout,
    /// The bridged peer leg (the relay).
    Relay,
}

/// A sequence jump this far ahead is a restart of the source's numbering, not loss
/// (RFC 3550 appendix A.1, `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;
/// A sequence number this far behind is a late packet; further back is a restart
/// (RFC 3550 appendix A.1, `MAX_MISORDER`).
const MAX_MISORDER: u16 = 100;
/// The timestamp step of one 20 ms G.711 frame: at a switch the timestamp advances by the
/// elapsed time rounded to whole frames, and at least one frame.
const FRAME_UNITS: u32 = 160;
/// The clock rate of every payload idgate relays (G.711 and telephone-event/8000).
pub(super) const CLOCK_RATE: u64 = 8000;

/// The sequence number and timestamp space one leg sends in.
#[derive(Debug, Clone)]
pub struct Continuity {
    ssrc: u32,
    adopted: bool,
    last: Option<Sent>,
    current: Option<Source>,
    previous: Option<Source>,
    switches: u64,
}

/// The newest packet sent so far.
#[derive(Debug, Clone, Copy)]
struct Sent {
    sequence: u16,
    timestamp: u32,
    at: Instant,
}

/// One source's mapping into the leg's space.
#[derive(Debug, Clone, Copy)]
struct Source {
    origin: Origin,
    ssrc: u32,
    sequence_offset: u16,
    timestamp_offset: u32,
    highest: u16,
}

/// How a source's packet relates to the highest sequence number seen of it (RFC 3550 A.1).
pub(super) enum Fit {
    /// Newer than any so far (or a small loss gap).
    Ahead,
    /// A late or duplicate packet.
    Late,
    /// A jump that restarts the numbering.
    Restart,
}

impl Fit {
    /// Where `sequence` falls against `highest`.
    pub(super) fn of(sequence: u16, highest: u16) -> Fit {
        let ahead = sequence.wrapping_sub(highest);
        if ahead == 0 || ahead > u16::MAX - MAX_MISORDER {
            Fit::Late
        } else if ahead < MAX_DROPOUT {
            Fit::Ahead
        } else {
            Fit::Restart
        }
    }
}

impl Source {
    fn fit(&self, sequence: u16) -> Fit {
        Fit::of(sequence, self.highest)
    }

    fn map(&self, header: &RtpHeader) -> (u16, u32) {
        (
            header.sequence.wrapping_add(self.sequence_offset),
            header.timestamp.wrapping_add(self.timestamp_offset),
        )
    }

    fn is(&self, origin: Origin, ssrc: u32) -> bool {
        self.origin == origin && self.ssrc == ssrc
    }
}

impl Continuity {
    /// A leg that has sent nothing. Its SSRC will be that of its first playout packet (so
    /// idgate's own stream goes out untouched), or `fallback_ssrc` if the first packet is a
    /// relayed one (a leg that never played anything, like the queue leg).
    pub fn new(fallback_ssrc: u32) -> Self {
        Continuity {
            ssrc: fallback_ssrc,
            adopted: false,
            last: None,
            current: None,
            previous: None,
            switches: 0,
        }
    }

    /// The leg's SSRC: every packet it sends carries it.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTP timestamp of the newest packet sent, if any.
    pub fn last_timestamp(&self) -> Option<u32> {
        self.last.map(|last| last.timestamp)
    }

    /// How many times the source changed (for tests and logs).
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The header fields to send `header` (from `origin`) with at `now`.
    pub fn next(&mut self, now: Instant, origin: Origin, header: &RtpHeader) -> Rewrite {
        if !self.adopted {
            self.adopted = true;
            if origin == Origin::Playout {
                self.ssrc = header.ssrc;
            }
        }
        let mut marker = false;
        let source = match self.source(origin, header) {
            Some(source) => source,
            None => {
                marker = self.last.is_some();
                self.switch(now, origin, header)
            }
        };
        let (sequence, timestamp) = source.map(header);
        self.note_sent(now, sequence, timestamp);
        Rewrite {
            marker,
            sequence,
            timestamp,
            ssrc: self.ssrc,
        }
    }

    /// The mapping in the leg's space of a source SSRC the far end reports on (RTCP), if
    /// that source is current or the one before: `(sequence offset, timestamp offset)`.
    pub fn offsets_of(&self, ssrc: u32) -> Option<(u16, u32)> {
        [self.current, self.previous]
            .into_iter()
            .flatten()
            .find(|s| s.ssrc == ssrc)
            .map(|s| (s.sequence_offset, s.timestamp_offset))
    }

    /// The SSRC and sequence offset of the relayed source feeding the leg now (`None` while
    /// idgate's own playout feeds it: the far end's reports on it concern no one else).
    pub fn current_source(&self) -> Option<(u32, u16)> {
        self.current
            .filter(|s| s.origin == Origin::Relay)
            .map(|s| (s.ssrc, s.sequence_offset))
    }

    /// The mapping this packet belongs to, updated; `None` when it starts a new one.
    fn source(&mut self, origin: Origin, header: &RtpHeader) -> Option<Source> {
        if let Some(current) = self.current.as_mut().filter(|s| s.is(origin, header.ssrc)) {
            match current.fit(header.sequence) {
                Fit::Ahead => current.highest = header.sequence,
                Fit::Late => {}
                Fit::Restart => return None,
            }
            return Some(*current);
        }
        // A late packet of the source before the switch keeps its old numbering (it arrives
        // late at the far end too); one that resumes sending is a new switch.
        self.previous
            .filter(|s| s.is(origin, header.ssrc))
            .filter(|s| matches!(s.fit(header.sequence), Fit::Late))
    }

    /// Starts a new mapping so that `header` follows the last packet sent.
    fn switch(&mut self, now: Instant, origin: Origin, header: &RtpHeader) -> Source {
        let (sequence, timestamp) = match self.last {
            Some(last) => (
                last.sequence.wrapping_add(1),
                last.timestamp
                    .wrapping_add(advance(now.saturating_duration_since(last.at))),
            ),
            None => (header.sequence, header.timestamp),
        };
        let source = Source {
            origin,
            ssrc: header.ssrc,
            sequence_offset: sequence.wrapping_sub(header.sequence),
            timestamp_offset: timestamp.wrapping_sub(header.timestamp),
            highest: header.sequence,
        };
        if self.current.is_some() {
            self.switches += 1;
        }
        self.previous = self.current.replace(source);
        source
    }

    fn note_sent(&mut self, now: Instant, sequence: u16, timestamp: u32) {
        let newer = self.last.is_none_or(|last| {
            let ahead = sequence.wrapping_sub(last.sequence);
            ahead != 0 && ahead < u16::MAX / 2
        });
        if newer {
            self.last = Some(Sent {
                sequence,
                timestamp,
                at: now,
            });
        }
    }
}

/// The timestamp advance for `elapsed` since the last packet: whole 20 ms frames, nearest,
/// at least one (the new source's first packet follows the last one sent).
fn advance(elapsed: Duration) -> u32 {
    let units = elapsed.as_micros() * u128::from(CLOCK_RATE) / 1_000_000;
    let frames = (units + u128::from(FRAME_UNITS / 2)) / u128::from(FRAME_UNITS);
    // Wrapping on purpose: RTP timestamps are modulo 2^32 (a gap of days still maps).
    (frames.max(1) as u64 as u32).wrapping_mul(FRAME_UNITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYOUT_SSRC: u32 = 0x1111;
    const FAR_SSRC: u32 = 0xAAAA;
    const LEG_SSRC: u32 = 0x5E5E;

    fn header(ssrc: u32, sequence: u16, timestamp: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence,
            timestamp,
            ssrc,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends `count` 20 ms packets from `ssrc`, starting at `seq`/`ts`, from `at`.
    fn run(
        c: &mut Continuity,
        at: Instant,
        origin: Origin,
        ssrc: u32,
        seq: u16,
        ts: u32,
        count: u16,
    ) -> Vec<Rewrite> {
        (0..count)
            .map(|i| {
                let h = header(
                    ssrc,
                    seq.wrapping_add(i),
                    ts.wrapping_add(160 * u32::from(i)),
                );
                c.next(at + ms(20 * u64::from(i)), origin, &h)
            })
            .collect()
    }

    fn assert_continuous(out: &[Rewrite]) {
        for pair in out.windows(2) {
            assert_eq!(
                pair[1].sequence,
                pair[0].sequence.wrapping_add(1),
                "{out:?}"
            );
            assert_eq!(
                pair[1].timestamp,
                pair[0].timestamp.wrapping_add(160),
                "{out:?}"
            );
            assert_eq!(pair[1].ssrc, pair[0].ssrc);
        }
    }

    #[test]
    fn playout_alone_goes_out_untouched() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        let out = run(&mut c, t0, Origin::Playout, PLAYOUT_SSRC, 100, 5000, 10);
        assert_eq!(out[0].sequence, 100);
        assert_eq!(out[9].timestamp, 5000 + 9 * 160);
        assert!(out.iter().all(|r| r.ssrc == PLAYOUT_SSRC && !r.marker));
        assert_eq!(c.ssrc(), PLAYOUT_SSRC);
    }

    #[test]
    fn hold_then_bridge_is_one_stream() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        let mut out = run(&mut c, t0, Origin::Playout, PLAYOUT_SSRC, 65530, 10, 10);
        // The first relayed packet 20 ms after the last playout frame.
        let relayed = run(&mut c, t0 + ms(200), Origin::Relay, FAR_SSRC, 7, 99_999, 10);
        assert!(
            relayed[0].marker,
            "a new talkspurt for the far end's jitter buffer"
        );
        assert!(relayed[1..].iter().all(|r| !r.marker));
        out.extend(relayed);
        assert_continuous(&out);
        assert_eq!(out[10].ssrc, PLAYOUT_SSRC);
        assert_eq!(c.switches(), 1);
    }

    #[test]
    fn a_pause_at_the_switch_advances_the_timestamp_by_the_time_elapsed() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        let hold = run(&mut c, t0, Origin::Playout, PLAYOUT_SSRC, 1, 1000, 5);
        // Last frame at 80 ms; the relay starts 1 s later (ringing the queue).
        let relayed = run(&mut c, t0 + ms(1080), Origin::Relay, FAR_SSRC, 500, 7, 2);
        assert_eq!(relayed[0].sequence, hold[4].sequence + 1);
        assert_eq!(relayed[0].timestamp, hold[4].timestamp + 8000);
        // Jitter of a few ms at the switch rounds to whole frames.
        let mut c = Continuity::new(LEG_SSRC);
        let hold = run(&mut c, t0, Origin::Playout, PLAYOUT_SSRC, 1, 1000, 5);
        let relayed = run(&mut c, t0 + ms(80 + 27), Origin::Relay, FAR_SSRC, 500, 7, 1);
        assert_eq!(relayed[0].timestamp, hold[4].timestamp + 160);
    }

    #[test]
    fn a_new_source_ssrc_mid_call_continues_the_stream() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        let mut out = run(&mut c, t0, Origin::Playout, PLAYOUT_SSRC, 1, 1, 3);
        out.extend(run(
            &mut c,
            t0 + ms(60),
            Origin::Relay,
            FAR_SSRC,
            40_000,
            3,
            3,
        ));
        out.extend(run(&mut c, t0 + ms(120), Origin::Relay, 0xBBBB, 9, 123, 3));
        assert_continuous(&out);
        assert_eq!(c.switches(), 2);
    }

    #[test]
    fn a_numbering_restart_of_the_same_ssrc_continues_the_stream() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        let mut out = run(&mut c, t0, Origin::Relay, FAR_SSRC, 100, 0, 3);
        out.extend(run(
            &mut c,
            t0 + ms(60),
            Origin::Relay,
            FAR_SSRC,
            30_000,
            0,
            3,
        ));
        assert_continuous(&out);
    }

    #[test]
    fn loss_and_reordering_show_through() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        run(&mut c, t0, Origin::Playout, PLAYOUT_SSRC, 1, 1, 1);
        let first = c.next(t0 + ms(20), Origin::Relay, &header(FAR_SSRC, 10, 1600));
        let skipped = c.next(t0 + ms(60), Origin::Relay, &header(FAR_SSRC, 12, 1920));
        let late = c.next(t0 + ms(61), Origin::Relay, &header(FAR_SSRC, 11, 1760));
        assert_eq!(skipped.sequence, first.sequence + 2);
        assert_eq!(late.sequence, first.sequence + 1);
        assert_eq!(late.timestamp, first.timestamp + 160);
        assert_eq!(c.switches(), 1, "a late packet is not a switch");
    }

    #[test]
    fn late_packets_of_the_previous_source_keep_their_numbers() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        let hold = run(&mut c, t0, Origin::Playout, PLAYOUT_SSRC, 1, 1, 5);
        let relayed = run(&mut c, t0 + ms(100), Origin::Relay, FAR_SSRC, 900, 5, 2);
        // Playout frame 4 was in flight when the relay took over.
        let late = c.next(t0 + ms(130), Origin::Playout, &header(PLAYOUT_SSRC, 4, 481));
        assert_eq!(late.sequence, hold[3].sequence);
        let next = c.next(t0 + ms(140), Origin::Relay, &header(FAR_SSRC, 902, 325));
        assert_eq!(next.sequence, relayed[1].sequence + 1);
        assert_eq!(c.switches(), 1);
    }

    #[test]
    fn a_leg_that_only_relays_uses_its_own_ssrc() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        let out = run(&mut c, t0, Origin::Relay, FAR_SSRC, 5, 50, 3);
        assert!(out.iter().all(|r| r.ssrc == LEG_SSRC));
        assert_continuous(&out);
        assert!(!out[0].marker);
    }

    #[test]
    fn telephone_events_keep_their_shared_timestamp() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        run(&mut c, t0, Origin::Playout, PLAYOUT_SSRC, 1, 1, 2);
        let start = c.next(t0 + ms(40), Origin::Relay, &header(FAR_SSRC, 20, 8000));
        let update = c.next(t0 + ms(90), Origin::Relay, &header(FAR_SSRC, 21, 8000));
        let end = c.next(t0 + ms(140), Origin::Relay, &header(FAR_SSRC, 22, 8000));
        assert_eq!(
            (update.timestamp, end.timestamp),
            (start.timestamp, start.timestamp)
        );
        assert_eq!(end.sequence, start.sequence + 2);
    }

    #[test]
    fn offsets_are_known_for_rtcp() {
        let t0 = Instant::now();
        let mut c = Continuity::new(LEG_SSRC);
        assert_eq!(c.current_source(), None);
        run(&mut c, t0, Origin::Playout, PLAYOUT_SSRC, 10, 100, 1);
        assert_eq!(c.current_source(), None, "playout is not reported on");
        let out = c.next(t0 + ms(20), Origin::Relay, &header(FAR_SSRC, 1000, 50_000));
        let (seq_off, ts_off) = c.offsets_of(FAR_SSRC).unwrap();
        assert_eq!(1000u16.wrapping_add(seq_off), out.sequence);
        assert_eq!(50_000u32.wrapping_add(ts_off), out.timestamp);
        assert_eq!(c.current_source(), Some((FAR_SSRC, seq_off)));
        assert!(c.offsets_of(PLAYOUT_SSRC).is_some());
        assert!(c.offsets_of(0xDEAD).is_none());
    }
}
