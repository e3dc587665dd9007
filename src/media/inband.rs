//! In-band DTMF detection (ITU-T Q.23 tones in the audio) for callers whose SDP offers no
//! telephone-event: Goertzel filters on decoded G.711 at 8 kHz. Sans-IO: samples in, digits
//! out.
//!
//! Hand-written: the algorithm is a few lines per filter, and the checks (levels, twist,
//! relative peaks, duration, pause) are what decides quality, so they live here with tests.
//!
//! The samples are looked at in windows of [`WINDOW`] samples (12.75 ms, narrow enough bins to
//! tell 697 from 770 Hz), every [`HOP`] samples (half a window). A window is a *hit* for a
//! digit when one row and one column tone stand out (level, twist, relative peak, and together
//! most of the window's energy). A digit is reported after [`MIN_HITS`] consecutive hits of it
//! (tones of 40 ms and more are always reported, of 20 ms and less never: Q.24's accept and
//! reject limits), and the next digit only after [`PAUSE_MISSES`] windows without it (a pause
//! of 40 ms ends a press; a drop-out of 10 ms inside one press is bridged).

use std::fmt;

use super::g711::{Codec, alaw_to_linear, ulaw_to_linear};

/// Samples per analysis window (spandsp's choice: 12.75 ms at 8 kHz).
pub const WINDOW: usize = 102;
/// Samples between two windows: they overlap by half, so a tone's duration is measured in
/// 6.4 ms steps whatever its phase against the packets.
pub const HOP: usize = WINDOW / 2;
/// Consecutive hit windows that make a digit: 4 hops cover a tone of about 26 ms or more,
/// between Q.24's "reject at 20 ms" and "accept at 40 ms".
pub const MIN_HITS: u32 = 4;
/// Consecutive windows without the digit that end a press (about 32 ms of windows touching the
/// gap): a drop-out of up to 10 ms inside one press is bridged (one digit), a pause of 40 ms
/// between two presses is not (two digits), as Q.24 asks.
pub const PAUSE_MISSES: u32 = 5;

const SAMPLE_RATE: f32 = 8000.0;
/// The low-group (row) frequencies of Q.23.
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// The high-group (column) frequencies of Q.23.
const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// The keypad, row by row.
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The least amplitude of each tone (about -35 dBm0 in 16-bit linear; G.711's 0 dBm0 sine
/// peaks near 22,700). Q.24 requires accepting -25 dBm0 per tone; quieter is line noise.
const MIN_AMPLITUDE: f32 = 400.0;
/// How much louder the high tone may be than the low one: 8 dB ("normal twist", senders
/// pre-emphasise the high group against line loss).
const MAX_NORMAL_TWIST: f32 = 6.31;
/// How much louder the low tone may be than the high one: 4 dB ("reverse twist").
const MAX_REVERSE_TWIST: f32 = 2.51;
/// How much the strongest tone of a group must exceed each other tone of the group: 8 dB.
const MIN_RELATIVE_PEAK: f32 = 6.31;
/// The share of the window's energy the two tones must hold together: speech and music
/// spread theirs over many harmonics.
const MIN_TONE_SHARE: f32 = 0.85;

/// Detects DTMF tones in one stream's audio. `Debug` never shows digits.
pub struct InbandDetector {
    filters: [Goertzel; 8],
    window: [f32; WINDOW],
    filled: usize,
    state: State,
}

/// What the detector waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// A tone: nothing heard yet, or the last press has ended.
    AwaitingTone,
    /// More hits of a digit heard in `hits` consecutive windows.
    Confirming { key: char, hits: u32 },
    /// The end of a reported press: `misses` consecutive windows without it so far.
    AwaitingPause { key: char, misses: u32 },
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    /// A detector with no audio seen.
    pub fn new() -> Self {
        let mut filters = [Goertzel { coefficient: 0.0 }; 8];
        for (filter, frequency) in filters.iter_mut().zip(ROWS.iter().chain(&COLUMNS)) {
            *filter = Goertzel::new(*frequency);
        }
        InbandDetector {
            filters,
            window: [0.0; WINDOW],
            filled: 0,
            state: State::AwaitingTone,
        }
    }

    /// Feeds one G.711 payload (8 kHz); yields the digits whose press it completes (at most
    /// one for 20 ms packets).
    pub fn on_payload<'a>(
        &'a mut self,
        codec: Codec,
        payload: &'a [u8],
    ) -> impl Iterator<Item = char> + 'a {
        let decode = match codec {
            Codec::Pcmu => ulaw_to_linear,
            Codec::Pcma => alaw_to_linear,
        };
        payload.iter().filter_map(move |&b| self.push(decode(b)))
    }

    /// Feeds one linear sample; returns a digit when this sample completes a press.
    pub fn push(&mut self, sample: i16) -> Option<char> {
        self.window[self.filled] = f32::from(sample);
        self.filled += 1;
        if self.filled < WINDOW {
            return None;
        }
        let hit = self.classify();
        self.window.copy_within(HOP.., 0);
        self.filled = WINDOW - HOP;
        self.advance(hit)
    }

    /// Moves the press state machine on by one window.
    fn advance(&mut self, hit: Option<char>) -> Option<char> {
        let (state, reported) = match (self.state, hit) {
            (State::AwaitingTone, None) => (State::AwaitingTone, None),
            (State::AwaitingTone, Some(key)) => (State::Confirming { key, hits: 1 }, None),
            (State::Confirming { key, hits }, Some(k)) if k == key => {
                if hits + 1 >= MIN_HITS {
                    (State::AwaitingPause { key, misses: 0 }, Some(key))
                } else {
                    (
                        State::Confirming {
                            key,
                            hits: hits + 1,
                        },
                        None,
                    )
                }
            }
            (State::Confirming { .. }, Some(key)) => (State::Confirming { key, hits: 1 }, None),
            (State::Confirming { .. }, None) => (State::AwaitingTone, None),
            (State::AwaitingPause { key, .. }, Some(k)) if k == key => {
                (State::AwaitingPause { key, misses: 0 }, None)
            }
            (State::AwaitingPause { key, misses }, _) if misses + 1 < PAUSE_MISSES => (
                State::AwaitingPause {
                    key,
                    misses: misses + 1,
                },
                None,
            ),
            (State::AwaitingPause { .. }, _) => (State::AwaitingTone, None),
        };
        self.state = state;
        reported
    }

    /// The key whose two tones the current window holds, if it passes every check.
    fn classify(&self) -> Option<char> {
        let energy: f32 = self.window.iter().map(|s| s * s).sum();
        let mut power = [0.0f32; 8];
        for (p, filter) in power.iter_mut().zip(&self.filters) {
            *p = filter.power(&self.window);
        }
        let (rows, columns) = power.split_at(4);
        let row = strongest(rows)?;
        let column = strongest(columns)?;
        let (low, high) = (rows[row], columns[column]);
        let min_power = tone_power(MIN_AMPLITUDE);
        let levels = low >= min_power && high >= min_power;
        let twist = high <= low * MAX_NORMAL_TWIST && low <= high * MAX_REVERSE_TWIST;
        let share = low + high >= MIN_TONE_SHARE * energy;
        (levels && twist && share).then_some(KEYS[row][column])
    }
}

/// The index of the tone that exceeds every other of its group by [`MIN_RELATIVE_PEAK`].
fn strongest(group: &[f32]) -> Option<usize> {
    let (index, peak) = group
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let clear = group
        .iter()
        .enumerate()
        .all(|(i, &p)| i == index || p * MIN_RELATIVE_PEAK <= peak);
    clear.then_some(index)
}

/// The energy a sine of this amplitude puts in one window (A² N / 2), in the units of
/// [`Goertzel::power`].
fn tone_power(amplitude: f32) -> f32 {
    amplitude * amplitude * WINDOW as f32 / 2.0
}

/// One Goertzel filter: the DFT power at one frequency.
#[derive(Clone, Copy)]
struct Goertzel {
    coefficient: f32,
}

impl Goertzel {
    fn new(frequency: f32) -> Self {
        let omega = 2.0 * std::f32::consts::PI * frequency / SAMPLE_RATE;
        Goertzel {
            coefficient: 2.0 * omega.cos(),
        }
    }

    /// The power of `samples` at the filter's frequency, scaled (2/N) so that a sine at that
    /// frequency reads as its energy in the window, comparable with the sum of squares.
    fn power(&self, samples: &[f32]) -> f32 {
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &x in samples {
            let s0 = x + self.coefficient * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let magnitude = s1 * s1 + s2 * s2 - self.coefficient * s1 * s2;
        magnitude * 2.0 / samples.len() as f32
    }
}

impl fmt::Debug for InbandDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_press = !matches!(self.state, State::AwaitingTone);
        f.debug_struct("InbandDetector")
            .field("in_press", &in_press)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 8000.0;

    /// `ms` of the key's two tones, each at `low_db`/`high_db` relative to -10 dBm0.
    fn dual_tone(key: char, ms: usize, low_db: f64, high_db: f64) -> Vec<f64> {
        let index = KEYS.iter().flatten().position(|&k| k == key).unwrap();
        let (row, column) = (index / 4, index % 4);
        let base = 7200.0; // about -10 dBm0 per tone
        let low = base * 10f64.powf(low_db / 20.0);
        let high = base * 10f64.powf(high_db / 20.0);
        (0..ms * 8)
            .map(|n| {
                let t = n as f64 / RATE;
                low * (2.0 * std::f64::consts::PI * f64::from(ROWS[row]) * t).sin()
                    + high * (2.0 * std::f64::consts::PI * f64::from(COLUMNS[column]) * t).sin()
            })
            .collect()
    }

    fn tone(key: char, ms: usize) -> Vec<f64> {
        dual_tone(key, ms, 0.0, 0.0)
    }

    fn silence(ms: usize) -> Vec<f64> {
        vec![0.0; ms * 8]
    }

    /// Deterministic white noise (xorshift) of this peak amplitude.
    fn noise(ms: usize, amplitude: f64, seed: u32) -> Vec<f64> {
        let mut x = seed.max(1);
        (0..ms * 8)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (f64::from(x) / f64::from(u32::MAX) * 2.0 - 1.0) * amplitude
            })
            .collect()
    }

    fn mix(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    /// Runs audio through G.711 µ-law in 20 ms packets, as the receive path does.
    fn detect(audio: &[f64]) -> String {
        let samples: Vec<i16> = audio
            .iter()
            .map(|s| s.round().clamp(-32768.0, 32767.0) as i16)
            .collect();
        let mut detector = InbandDetector::new();
        let mut digits = String::new();
        for packet in samples.chunks(160) {
            let encoded = Codec::Pcmu.encode(packet);
            digits.extend(detector.on_payload(Codec::Pcmu, &encoded));
        }
        digits
    }

    fn concat(parts: &[Vec<f64>]) -> Vec<f64> {
        parts.concat()
    }

    #[test]
    fn each_of_the_sixteen_keys() {
        for key in "123A456B789C*0#D".chars() {
            let audio = concat(&[silence(30), tone(key, 60), silence(60)]);
            assert_eq!(detect(&audio), key.to_string(), "key {key}");
        }
    }

    #[test]
    fn a_whole_number_in_a_law_too() {
        let mut audio = Vec::new();
        for key in "198001011234#".chars() {
            audio.extend(tone(key, 50));
            audio.extend(silence(50));
        }
        let samples: Vec<i16> = audio.iter().map(|s| s.round() as i16).collect();
        let mut detector = InbandDetector::new();
        let mut digits = String::new();
        for packet in samples.chunks(160) {
            let encoded = Codec::Pcma.encode(packet);
            digits.extend(detector.on_payload(Codec::Pcma, &encoded));
        }
        assert_eq!(digits, "198001011234#");
    }

    #[test]
    fn forty_ms_is_always_enough_and_twenty_never_at_any_phase() {
        for key in "123A456B789C*0#D".chars() {
            for offset in (0..WINDOW).step_by(if key == '5' { 1 } else { 5 }) {
                let lead = vec![0.0; offset];
                let long = concat(&[lead.clone(), tone(key, 40), silence(60)]);
                assert_eq!(detect(&long), key.to_string(), "40 ms at offset {offset}");
                let short = concat(&[lead, tone(key, 20), silence(60)]);
                assert_eq!(detect(&short), "", "20 ms of {key} at offset {offset}");
            }
        }
    }

    #[test]
    fn one_long_press_is_one_digit_even_with_a_short_drop_out() {
        assert_eq!(detect(&concat(&[tone('7', 2000), silence(50)])), "7");
        let dropout = concat(&[tone('7', 200), silence(10), tone('7', 200), silence(50)]);
        assert_eq!(detect(&dropout), "7");
    }

    #[test]
    fn two_presses_of_the_same_key_with_a_pause_are_two_digits() {
        for pause in [40, 60, 100] {
            let audio = concat(&[tone('0', 70), silence(pause), tone('0', 70), silence(50)]);
            assert_eq!(detect(&audio), "00", "pause {pause} ms");
        }
    }

    #[test]
    fn twist_within_limits_is_accepted_and_beyond_is_not() {
        // The high tone louder by up to 8 dB, the low one by up to 4 dB.
        for (low_db, high_db, expected) in [
            (0.0, 7.0, "9"),
            (-7.0, 0.0, "9"),
            (3.0, 0.0, "9"),
            (0.0, -3.0, "9"),
            (0.0, 10.0, ""),
            (-10.0, 0.0, ""),
            (6.0, 0.0, ""),
            (0.0, -6.0, ""),
        ] {
            let audio = concat(&[dual_tone('9', 60, low_db, high_db), silence(50)]);
            assert_eq!(
                detect(&audio),
                expected,
                "low {low_db} dB, high {high_db} dB"
            );
        }
    }

    #[test]
    fn quiet_tones_are_not_digits() {
        // About -45 dBm0 per tone: line noise, not a key.
        let audio = concat(&[dual_tone('1', 100, -35.0, -35.0), silence(50)]);
        assert_eq!(detect(&audio), "");
        let audio = concat(&[dual_tone('1', 100, -20.0, -20.0), silence(50)]);
        assert_eq!(detect(&audio), "1", "-30 dBm0 per tone is a key");
    }

    #[test]
    fn noise_alone_is_nothing_and_tones_in_noise_are_found() {
        assert_eq!(detect(&noise(3000, 8000.0, 7)), "");
        let tones = concat(&[tone('4', 80), silence(80), tone('2', 80), silence(80)]);
        let noisy = mix(&tones, &noise(320, 1200.0, 11)); // about 20 dB below the tones
        assert_eq!(detect(&noisy), "42");
    }

    /// A voiced sound: a gliding fundamental with 20 harmonics under two formants.
    fn vowel(ms: usize, f0_start: f64, f0_end: f64) -> Vec<f64> {
        let n = ms * 8;
        let mut phase = [0.0f64; 20];
        (0..n)
            .map(|i| {
                let f0 = f0_start + (f0_end - f0_start) * i as f64 / n as f64;
                let mut sample = 0.0;
                for (h, p) in phase.iter_mut().enumerate() {
                    let f = f0 * (h + 1) as f64;
                    *p += 2.0 * std::f64::consts::PI * f / RATE;
                    let formants = 1.0 / (1.0 + ((f - 700.0) / 150.0).powi(2))
                        + 0.6 / (1.0 + ((f - 1250.0) / 200.0).powi(2));
                    sample += 6000.0 * formants * p.sin();
                }
                sample
            })
            .collect()
    }

    #[test]
    fn speech_like_sounds_are_not_digits() {
        // Fundamentals whose harmonics cross the DTMF rows and columns.
        for (start, end) in [
            (100.0, 180.0),
            (139.4, 139.4),
            (232.3, 240.0),
            (174.25, 174.25),
        ] {
            assert_eq!(detect(&vowel(1500, start, end)), "", "f0 {start}-{end} Hz");
        }
    }

    #[test]
    fn a_key_tone_pair_inside_a_richer_mixture_is_not_a_digit() {
        // 697 + 1209 Hz ('1') with three other tones as loud: music, not a key press.
        let key = tone('1', 300);
        let other: Vec<f64> = (0..key.len())
            .map(|n| {
                let t = n as f64 / RATE;
                [440.0, 1000.0, 2200.0]
                    .iter()
                    .map(|f| 7200.0 * (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum()
            })
            .collect();
        assert_eq!(detect(&mix(&key, &other)), "");
        // The same key with its second harmonics at -6 dB (an instrument, not a keypad).
        let harmonics: Vec<f64> = (0..key.len())
            .map(|n| {
                let t = n as f64 / RATE;
                [1394.0, 2418.0]
                    .iter()
                    .map(|f| 3600.0 * (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum()
            })
            .collect();
        assert_eq!(detect(&mix(&key, &harmonics)), "");
    }

    #[test]
    fn a_single_tone_is_not_a_digit() {
        let audio: Vec<f64> = (0..800)
            .map(|n| 9000.0 * (2.0 * std::f64::consts::PI * 697.0 * n as f64 / RATE).sin())
            .collect();
        assert_eq!(detect(&audio), "");
    }

    #[test]
    fn debug_does_not_show_digits() {
        let mut detector = InbandDetector::new();
        let samples: Vec<i16> = tone('8', 100).iter().map(|s| *s as i16).collect();
        let digits: String = samples.iter().filter_map(|&s| detector.push(s)).collect();
        assert_eq!(digits, "8");
        let text = format!("{detector:?}");
        assert!(!text.contains('8'), "{text}");
        assert!(text.contains("in_press: true"));
    }
}
