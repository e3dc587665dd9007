//! Prompt playout for one RTP stream: turns "play this, then hold music" into 20 ms RTP frames
//! with continuous sequence numbers and timestamps. Sans-IO: the caller decides when a frame is
//! due (see `engine`) and sends it.

use std::sync::Arc;

use super::PromptId;
use super::g711::Codec;
use super::prompts::{FRAME_SAMPLES, PromptSet};
use super::rtp::{HEADER_LEN, RtpHeader};

/// What the stream is playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Nothing is sent (bridged or stopped); the timestamp keeps advancing.
    Stopped,
    /// Silence frames.
    Silence,
    /// A prompt, then hold music or silence.
    Prompt { id: PromptId, then_hold: bool },
    /// Hold music in a loop.
    Hold,
}

/// The playout state of one outgoing RTP stream (RFC 3550 §5.1 sender fields).
#[derive(Debug)]
pub struct Playout {
    prompts: Arc<PromptSet>,
    codec: Codec,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    source: Source,
    audio: Arc<[u8]>,
    position: usize,
    marker: bool,
}

impl Playout {
    /// A playout sending silence, with a random SSRC and random initial sequence number and
    /// timestamp (RFC 3550 §5.1).
    pub fn new(prompts: Arc<PromptSet>, codec: Codec) -> Self {
        Playout::with_ids(
            prompts,
            codec,
            rand::random(),
            rand::random(),
            rand::random(),
        )
    }

    /// A playout with chosen SSRC, first sequence number and first timestamp.
    pub fn with_ids(
        prompts: Arc<PromptSet>,
        codec: Codec,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
    ) -> Self {
        let audio = prompts.silence().encoded(codec).clone();
        Playout {
            prompts,
            codec,
            ssrc,
            sequence,
            timestamp,
            source: Source::Silence,
            audio,
            position: 0,
            marker: true,
        }
    }

    /// Plays `prompt` from its start, then hold music (`then_hold`) or silence.
    pub fn play(&mut self, prompt: PromptId, then_hold: bool) {
        self.set_source(Source::Prompt {
            id: prompt,
            then_hold,
        });
    }

    /// Plays hold music in a loop (continues it if it is already playing).
    pub fn hold(&mut self) {
        if self.source != Source::Hold {
            self.set_source(Source::Hold);
        }
    }

    /// Sends silence.
    pub fn silence(&mut self) {
        if self.source != Source::Silence {
            self.set_source(Source::Silence);
        }
    }

    /// Sends nothing until the next `play`, `hold` or `silence`.
    pub fn stop(&mut self) {
        self.source = Source::Stopped;
    }

    /// The SSRC of this stream.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The codec of this stream.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Writes the next 20 ms RTP packet into `out` (cleared first; nothing while stopped) and
    /// returns its header, with the prompt that finished with it, if any. The timestamp
    /// advances by 160 per call either way. The payload is copied from the shared encoded
    /// audio: no reference count is touched per packet (the pumps share those counts).
    pub fn next_packet(&mut self, out: &mut Vec<u8>) -> (Option<RtpHeader>, Option<PromptId>) {
        out.clear();
        if self.source == Source::Stopped {
            self.skip(1);
            return (None, None);
        }
        let header = RtpHeader {
            marker: std::mem::take(&mut self.marker),
            payload_type: self.codec.payload_type(),
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        let payload = self
            .audio
            .get(self.position..self.position + FRAME_SAMPLES)
            .unwrap_or_default();
        out.reserve(HEADER_LEN + FRAME_SAMPLES);
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(payload);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        self.position += FRAME_SAMPLES;
        (Some(header), self.after_frame())
    }

    /// Advances the timestamp over frames that were not sent (the sender fell behind), so the
    /// timestamp stays on the 20 ms grid; the sequence number is unchanged (RFC 3550 §5.1).
    pub fn skip(&mut self, frames: u32) {
        let samples = (FRAME_SAMPLES as u32).wrapping_mul(frames);
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// At the end of the audio: loops, or moves on from a finished prompt.
    fn after_frame(&mut self) -> Option<PromptId> {
        if self.position < self.audio.len() {
            return None;
        }
        self.position = 0;
        let Source::Prompt { id, then_hold } = self.source else {
            return None;
        };
        self.set_source(if then_hold {
            Source::Hold
        } else {
            Source::Silence
        });
        Some(id)
    }

    fn set_source(&mut self, source: Source) {
        let audio = match source {
            Source::Stopped | Source::Silence => self.prompts.silence(),
            Source::Prompt { id, .. } => self.prompts.prompt(id),
            Source::Hold => self.prompts.hold(),
        };
        self.audio = audio.encoded(self.codec).clone();
        self.source = source;
        self.position = 0;
        self.marker = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::prompts::PromptAudio;

    /// Prompts of 3 frames (Verified) and 2 frames (Error), hold music of 4 frames.
    fn prompts() -> Arc<PromptSet> {
        let set = PromptSet::bundled("en")
            .unwrap()
            .with_prompt(PromptId::Verified, PromptAudio::from_samples(&[1000; 480]))
            .with_prompt(PromptId::Error, PromptAudio::from_samples(&[-1000; 300]))
            .with_hold(PromptAudio::from_samples(&[2000; 640]));
        Arc::new(set)
    }

    /// One packet `next_packet` wrote, with the header it returned.
    struct Frame {
        header: RtpHeader,
        packet: Vec<u8>,
    }

    impl Frame {
        fn payload(&self) -> &[u8] {
            &self.packet[HEADER_LEN..]
        }
    }

    fn frames(p: &mut Playout, n: usize) -> Vec<(Frame, Option<PromptId>)> {
        (0..n)
            .map(|_| {
                let mut packet = Vec::new();
                match p.next_packet(&mut packet) {
                    (Some(header), done) => (Frame { header, packet }, done),
                    (None, _) => panic!("no frame"),
                }
            })
            .collect()
    }

    fn assert_continuous(frames: &[(Frame, Option<PromptId>)]) {
        for pair in frames.windows(2) {
            let (a, b) = (pair[0].0.header, pair[1].0.header);
            assert_eq!(b.sequence, a.sequence.wrapping_add(1));
            assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
            assert_eq!(b.ssrc, a.ssrc);
        }
    }

    #[test]
    fn continuity_across_play_hold_play() {
        let mut p = Playout::with_ids(prompts(), Codec::Pcmu, 7, u16::MAX - 2, u32::MAX - 300);
        let mut all = frames(&mut p, 2);
        p.play(PromptId::Verified, true);
        all.extend(frames(&mut p, 5));
        p.hold();
        all.extend(frames(&mut p, 2));
        p.play(PromptId::Error, false);
        all.extend(frames(&mut p, 4));
        assert_continuous(&all);
        let markers: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, f)| f.0.header.marker)
            .map(|(i, _)| i)
            .collect();
        // Start, play, prompt→hold, play, prompt→silence. `hold()` while holding changes nothing.
        assert_eq!(markers, vec![0, 2, 5, 9, 11]);
        assert!(
            all.iter()
                .all(|(f, _)| f.payload().len() == 160 && f.header.payload_type == 0)
        );
    }

    #[test]
    fn prompt_done_is_reported_once_at_the_end() {
        let mut p = Playout::with_ids(prompts(), Codec::Pcma, 1, 0, 0);
        p.play(PromptId::Verified, false);
        let done: Vec<Option<PromptId>> = frames(&mut p, 10).into_iter().map(|(_, d)| d).collect();
        assert_eq!(done[2], Some(PromptId::Verified));
        assert_eq!(done.iter().flatten().count(), 1);
        // An interrupted prompt is not reported.
        p.play(PromptId::Verified, false);
        frames(&mut p, 1);
        p.play(PromptId::Error, false);
        let done: Vec<_> = frames(&mut p, 5)
            .into_iter()
            .filter_map(|(_, d)| d)
            .collect();
        assert_eq!(done, vec![PromptId::Error]);
    }

    #[test]
    fn hold_loops_and_prompt_audio_is_played() {
        let mut p = Playout::with_ids(prompts(), Codec::Pcmu, 1, 0, 0);
        p.play(PromptId::Verified, true);
        let all = frames(&mut p, 3 + 9);
        let level = |f: &Frame| Codec::Pcmu.decode(f.payload())[0];
        assert!((900..1100).contains(&level(&all[0].0)));
        assert!(
            all[3..]
                .iter()
                .all(|(f, d)| (1900..2100).contains(&level(f)) && d.is_none())
        );
        // 9 hold frames of a 4-frame loop: only the first carries the marker.
        assert_eq!(all[3..].iter().filter(|(f, _)| f.header.marker).count(), 1);
        let packet = &all[0].0.packet;
        assert_eq!(packet.len(), 172);
        assert_eq!(
            crate::media::rtp::parse(packet).unwrap().header,
            all[0].0.header
        );
    }

    #[test]
    fn stop_and_skip_keep_the_timestamp_on_the_grid() {
        let mut p = Playout::with_ids(prompts(), Codec::Pcmu, 1, 10, 1000);
        let first = frames(&mut p, 1)[0].0.header;
        p.stop();
        let mut packet = vec![1, 2, 3];
        assert!(p.next_packet(&mut packet).0.is_none());
        assert!(packet.is_empty(), "nothing to send while stopped");
        p.skip(2);
        p.silence();
        let next = frames(&mut p, 1)[0].0.header;
        assert_eq!(next.sequence, first.sequence + 1);
        assert_eq!(next.timestamp, first.timestamp + 4 * 160);
        assert!(next.marker);
    }

    #[test]
    fn random_ids_differ() {
        let a = Playout::new(prompts(), Codec::Pcmu);
        let b = Playout::new(prompts(), Codec::Pcmu);
        assert_ne!(a.ssrc(), b.ssrc());
        assert_eq!(a.codec(), Codec::Pcmu);
    }
}
