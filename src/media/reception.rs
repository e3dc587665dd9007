//! What idgate hears of a far end's RTP, for the reception report block in its own sender
//! reports (RFC 3550 §6.4.1): packets lost (cumulative, and the fraction since the last
//! report), the extended highest sequence number, interarrival jitter, and the timing of the
//! far end's last sender report (LSR, DLSR), from which the far end computes round-trip time.
//!
//! Sans-IO: arrival times are durations since an epoch the caller keeps (the stream's
//! creation), so the tests drive it with made-up times. The algorithms are those of RFC 3550
//! Appendix A.1 (sequence validity, without the probation of a new source: symmetric RTP
//! already trusts the first packet), A.3 (loss) and A.8 (jitter). Hand-written: the RTP
//! crates at hand parse packets but keep no receiver statistics.

use std::time::Duration;

use super::relay::{CLOCK_RATE, Fit};
use super::rtcp::ReportBlock;

/// The largest and smallest cumulative loss a report block holds (24 bits, signed).
const CUMULATIVE_MAX: i64 = 0x7F_FFFF;
const CUMULATIVE_MIN: i64 = -0x80_0000;

/// Receiver statistics for the far end of one leg.
#[derive(Debug, Default)]
pub struct Reception {
    source: Option<Source>,
    /// The far end's last SR: its SSRC, the middle 32 bits of its NTP timestamp, and when it
    /// arrived.
    last_sr: Option<(u32, u32, Duration)>,
}

/// One SSRC heard (A.1's `source`).
#[derive(Debug)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    /// Sequence wraparounds, shifted: the high 16 bits of the extended sequence number.
    cycles: u32,
    base_seq: u32,
    /// After a very large jump, the sequence number that would confirm a restart.
    bad_seq: Option<u16>,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// The last relative transit time (arrival − RTP timestamp, in clock units).
    transit: Option<i64>,
    /// Interarrival jitter in clock units, times 16 (A.8's integer form).
    jitter: u32,
}

impl Source {
    /// The first packet of `ssrc`: counts start from it (A.1 `init_seq`, then the packet).
    fn new(ssrc: u32, seq: u16) -> Self {
        let mut source = Source {
            ssrc,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0,
        };
        source.restart(seq);
        source.received = 1;
        source
    }

    /// A.1 `init_seq`: counts start again from `seq`.
    fn restart(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.cycles = 0;
        self.bad_seq = None;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.transit = None;
    }

    /// A.1 `update_seq`: whether the packet counts (a very large jump does not, until the
    /// next packet confirms it as a restart).
    fn update_seq(&mut self, seq: u16) -> bool {
        match Fit::of(seq, self.max_seq) {
            Fit::Ahead => {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_seq = seq;
            }
            // A duplicate or a reordered packet: counted, max_seq unchanged.
            Fit::Late => {}
            // Two sequential packets after a very large jump: the sender restarted.
            Fit::Restart if self.bad_seq == Some(seq) => self.restart(seq),
            Fit::Restart => {
                self.bad_seq = Some(seq.wrapping_add(1));
                return false;
            }
        }
        self.received = self.received.wrapping_add(1);
        true
    }

    fn extended_max(&self) -> u32 {
        self.cycles | u32::from(self.max_seq)
    }

    /// A.8: one transit-time sample.
    fn update_jitter(&mut self, timestamp: u32, arrival: Duration) {
        let arrival_units = arrival.as_micros() as i64 * CLOCK_RATE as i64 / 1_000_000;
        // Only differences of transit matter, so the timestamp's wrap is taken modulo 2^32.
        let transit = arrival_units.wrapping_sub(i64::from(timestamp)) & 0xFFFF_FFFF;
        if let Some(last) = self.transit {
            let mut d = (transit - last).abs();
            if d > 0x7FFF_FFFF {
                d = 0x1_0000_0000 - d;
            }
            let d = u32::try_from(d).unwrap_or(u32::MAX);
            // J += (|D| − J) / 16, with J kept times 16.
            self.jitter = self
                .jitter
                .saturating_add(d)
                .saturating_sub(self.jitter.saturating_add(8) >> 4);
        }
        self.transit = Some(transit);
    }
}

impl Reception {
    /// One RTP packet from the far end. `timed`: whether it is a jitter sample (audio; the
    /// packets of a telephone-event repeat the event's start timestamp, so they are not).
    pub fn on_rtp(&mut self, ssrc: u32, seq: u16, timestamp: u32, arrival: Duration, timed: bool) {
        match &mut self.source {
            Some(source) if source.ssrc == ssrc => {
                if source.update_seq(seq) && timed {
                    source.update_jitter(timestamp, arrival);
                }
            }
            slot => {
                // A new SSRC is a new source (RFC 3550 §8.2): its counts start afresh.
                let source = slot.insert(Source::new(ssrc, seq));
                if timed {
                    source.update_jitter(timestamp, arrival);
                }
            }
        }
    }

    /// Packets of the current source that never arrived (0 before any arrived, and when
    /// duplicates outnumber the losses).
    pub fn lost(&self) -> u64 {
        self.source.as_ref().map_or(0, |source| {
            let expected = source
                .extended_max()
                .wrapping_sub(source.base_seq)
                .wrapping_add(1);
            u64::from(expected.saturating_sub(source.received))
        })
    }

    /// A sender report from the far end: `ntp` is its 64-bit NTP timestamp.
    pub fn on_sender_report(&mut self, ssrc: u32, ntp: u64, arrival: Duration) {
        self.last_sr = Some((ssrc, (ntp >> 16) as u32, arrival));
    }

    /// The report block about the source heard, for a report sent at `now`; `None` before any
    /// packet arrived. Starts a new interval for the fraction lost.
    pub fn report(&mut self, now: Duration) -> Option<ReportBlock> {
        let source = self.source.as_mut()?;
        let extended_max = source.extended_max();
        let expected = extended_max.wrapping_sub(source.base_seq).wrapping_add(1);
        let lost = i64::from(expected) - i64::from(source.received);
        let expected_interval = expected.wrapping_sub(source.expected_prior);
        let received_interval = source.received.wrapping_sub(source.received_prior);
        source.expected_prior = expected;
        source.received_prior = source.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            u8::try_from((lost_interval << 8) / i64::from(expected_interval)).unwrap_or(u8::MAX)
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((ssrc, lsr, at)) if ssrc == source.ssrc => {
                let delay = now.saturating_sub(at).as_secs_f64() * 65_536.0;
                (lsr, delay.min(f64::from(u32::MAX)) as u32)
            }
            _ => (0, 0),
        };
        Some(ReportBlock {
            ssrc: source.ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(CUMULATIVE_MIN, CUMULATIVE_MAX) as i32,
            highest_sequence: extended_max,
            jitter: source.jitter >> 4,
            last_sr,
            delay_since_last_sr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 0xFA;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Packets `seqs`, each 20 ms and 160 timestamp units after the sequence's first, on time.
    fn heard(seqs: impl IntoIterator<Item = u16>) -> Reception {
        let mut reception = Reception::default();
        for seq in seqs {
            let n = u32::from(seq.wrapping_sub(1000));
            reception.on_rtp(SSRC, seq, n * 160, ms(u64::from(n) * 20), true);
        }
        reception
    }

    #[test]
    fn nothing_heard_means_no_block() {
        assert_eq!(Reception::default().report(ms(0)), None);
        assert_eq!(Reception::default().lost(), 0);
    }

    #[test]
    fn an_even_stream_reports_no_loss_and_no_jitter() {
        let block = heard(1000..1050).report(ms(1000)).unwrap();
        assert_eq!(block.ssrc, SSRC);
        assert_eq!(block.cumulative_lost, 0);
        assert_eq!(block.fraction_lost, 0);
        assert_eq!(block.highest_sequence, 1049);
        assert_eq!(block.jitter, 0);
        assert_eq!((block.last_sr, block.delay_since_last_sr), (0, 0));
    }

    #[test]
    fn loss_is_cumulative_and_the_fraction_per_interval() {
        // 1000..=1009 without 1003 and 1007: 2 of 10 lost.
        let mut reception = heard((1000..1010).filter(|s| *s != 1003 && *s != 1007));
        let first = reception.report(ms(200)).unwrap();
        assert_eq!(first.cumulative_lost, 2);
        assert_eq!(reception.lost(), 2);
        assert_eq!(first.fraction_lost, 51, "2 of 10, in 256ths");
        assert_eq!(first.highest_sequence, 1009);
        // The next ten all arrive: the fraction is of this interval only.
        for seq in 1010..1020u16 {
            let n = u32::from(seq - 1000);
            reception.on_rtp(SSRC, seq, n * 160, ms(u64::from(n) * 20), true);
        }
        let second = reception.report(ms(400)).unwrap();
        assert_eq!(second.cumulative_lost, 2);
        assert_eq!(second.fraction_lost, 0);
        assert_eq!(second.highest_sequence, 1019);
    }

    #[test]
    fn the_extended_sequence_number_counts_wraparounds() {
        let mut reception = Reception::default();
        for (n, seq) in (65_530..=65_535).chain(0..5).enumerate() {
            let n = n as u32;
            reception.on_rtp(SSRC, seq, n * 160, ms(u64::from(n) * 20), true);
        }
        let block = reception.report(ms(300)).unwrap();
        assert_eq!(block.highest_sequence, (1 << 16) | 4);
        assert_eq!(block.cumulative_lost, 0);
    }

    #[test]
    fn reordered_and_duplicate_packets_count_but_do_not_move_the_highest() {
        let mut reception = heard([1000, 1001, 1003, 1002, 1003, 1004]);
        let block = reception.report(ms(100)).unwrap();
        assert_eq!(block.highest_sequence, 1004);
        // Five expected, six received: a duplicate makes the loss negative (§6.4.1 allows it).
        assert_eq!(block.cumulative_lost, -1);
        assert_eq!(block.fraction_lost, 0);
        assert_eq!(
            reception.lost(),
            0,
            "a duplicate is no negative loss in the metric"
        );
    }

    #[test]
    fn a_very_large_jump_counts_only_once_a_second_packet_confirms_it() {
        let mut reception = heard(1000..1010);
        // One stray packet far ahead: not counted, the highest stays.
        reception.on_rtp(SSRC, 30_000, 0, ms(200), true);
        assert_eq!(reception.report(ms(200)).unwrap().highest_sequence, 1009);
        // Two sequential ones: the sender restarted its numbering.
        reception.on_rtp(SSRC, 40_000, 0, ms(220), true);
        reception.on_rtp(SSRC, 40_001, 160, ms(240), true);
        let block = reception.report(ms(240)).unwrap();
        assert_eq!(block.highest_sequence, 40_001);
        assert_eq!(block.cumulative_lost, 0);
    }

    #[test]
    fn a_new_ssrc_starts_afresh() {
        let mut reception = heard((1000..1010).filter(|s| *s != 1005));
        reception.on_rtp(0xBEEF, 7, 0, ms(300), true);
        let block = reception.report(ms(300)).unwrap();
        assert_eq!(block.ssrc, 0xBEEF);
        assert_eq!(block.highest_sequence, 7);
        assert_eq!(block.cumulative_lost, 0);
    }

    /// 400 packets on a 20 ms timestamp grid, every other one arriving 10 ms early; `timed`
    /// as for audio, or not as for telephone-events (whose timestamp stays at the start).
    fn alternating(timed: bool) -> Reception {
        let mut reception = Reception::default();
        for n in 0..400u32 {
            let arrival = u64::from(n) * 20 - if n % 2 == 1 { 10 } else { 0 };
            let timestamp = if timed { n * 160 } else { 0 };
            reception.on_rtp(SSRC, n as u16, timestamp, ms(arrival), timed);
        }
        reception
    }

    #[test]
    fn jitter_follows_rfc_3550_a8() {
        // Every transit difference is 80 clock units (10 ms at 8 kHz): J converges on 80.
        let jitter = alternating(true).report(ms(8000)).unwrap().jitter;
        assert!((78..=80).contains(&jitter), "{jitter}");
        // The same arrivals as untimed packets (telephone-events) add no jitter.
        assert_eq!(alternating(false).report(ms(8000)).unwrap().jitter, 0);
    }

    #[test]
    fn lsr_and_dlsr_come_from_the_far_ends_last_sender_report() {
        let mut reception = heard(1000..1010);
        let ntp = 0xE8A1_2345_6789_ABCD_u64;
        reception.on_sender_report(SSRC, ntp, ms(100));
        let block = reception.report(ms(1600)).unwrap();
        assert_eq!(block.last_sr, 0x2345_6789);
        // 1.5 s in units of 1/65536 s.
        assert_eq!(block.delay_since_last_sr, 98_304);
        // An SR from another SSRC is not about this source.
        let mut other = heard(1000..1010);
        other.on_sender_report(0xBEEF, ntp, ms(100));
        let block = other.report(ms(1600)).unwrap();
        assert_eq!((block.last_sr, block.delay_since_last_sr), (0, 0));
    }

    #[test]
    fn cumulative_loss_is_clamped_to_24_bits() {
        let mut reception = Reception::default();
        // One packet, then 2,999 ahead over and over: almost everything between is lost.
        let mut seq = 0u16;
        let mut cycles = 0;
        for n in 0..4000u32 {
            reception.on_rtp(SSRC, seq, n * 160, ms(u64::from(n) * 20), true);
            let next = seq.wrapping_add(2_999);
            if next < seq {
                cycles += 1;
            }
            seq = next;
        }
        assert!(cycles > 100);
        assert_eq!(reception.report(ms(0)).unwrap().cumulative_lost, 0x7F_FFFF);
    }
}
