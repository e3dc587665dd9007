//! The prompt recordings: bundled WAVs (Swedish and English) embedded in the binary, optionally
//! overridden by the user's own, decoded once at start-up and encoded once per codec.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use thiserror::Error;

use super::PromptId;
use super::g711::Codec;

/// The sample rate of all telephone audio here (G.711).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (and G.711 bytes) per 20 ms frame.
pub const FRAME_SAMPLES: usize = 160;
/// The longest recording accepted, in seconds (a hold-music loop may be long, not endless).
pub const MAX_SECONDS: u32 = 600;

/// Why prompts could not be loaded. Every variant names the file.
#[derive(Debug, Error)]
pub enum PromptError {
    /// No bundled prompts exist for this language.
    #[error("no bundled prompts for language {0:?} (bundled: sv, en)")]
    UnknownLanguage(String),
    /// The file could not be read, or is not a WAV file.
    #[error("prompt file {file}: {source}")]
    Decode {
        /// The file (relative to the prompt directory for bundled prompts).
        file: String,
        /// What hound reported.
        #[source]
        source: hound::Error,
    },
    /// The WAV file is in a form idgate does not convert.
    #[error("prompt file {file}: {reason}")]
    Unsupported {
        /// The file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One recording, G.711-encoded for both codecs and padded with silence to whole frames.
#[derive(Clone)]
pub struct PromptAudio {
    pcmu: Arc<[u8]>,
    pcma: Arc<[u8]>,
}

impl PromptAudio {
    /// Encodes 8 kHz samples; pads to whole 20 ms frames (at least one).
    pub fn from_samples(samples: &[i16]) -> Self {
        let frames = samples.len().div_ceil(FRAME_SAMPLES).max(1);
        let mut padded = samples.to_vec();
        padded.resize(frames * FRAME_SAMPLES, 0);
        PromptAudio {
            pcmu: Codec::Pcmu.encode(&padded).into(),
            pcma: Codec::Pcma.encode(&padded).into(),
        }
    }

    /// One frame of silence.
    pub fn silence() -> Self {
        PromptAudio::from_samples(&[])
    }

    /// The encoded audio, a whole number of frames, shared by every call.
    pub fn encoded(&self, codec: Codec) -> &Arc<[u8]> {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    /// The length in 20 ms frames.
    pub fn frames(&self) -> usize {
        self.pcmu.len() / FRAME_SAMPLES
    }
}

impl fmt::Debug for PromptAudio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PromptAudio({} frames)", self.frames())
    }
}

/// All prompts of one language plus the hold music, ready to play.
#[derive(Debug, Clone)]
pub struct PromptSet {
    lang: String,
    prompts: HashMap<PromptId, PromptAudio>,
    hold: PromptAudio,
    silence: PromptAudio,
}

macro_rules! bundled {
    ($lang:literal: $($stem:literal),* $(,)?) => {
        &[$(($stem, include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"), "/assets/prompts/", $lang, "/", $stem, ".wav"
        )) as &[u8])),*]
    };
}

/// The bundled WAV files of one language, by stem.
type BundledFiles = &'static [(&'static str, &'static [u8])];

/// The bundled recordings, made by `scripts/make-prompts`.
const BUNDLED: &[(&str, BundledFiles)] = &[
    (
        "sv",
        bundled!("sv": "greeting", "push-sent", "confirm-in-app", "enter-number",
        "invalid-number", "verified", "not-verified", "all-busy", "error"),
    ),
    (
        "en",
        bundled!("en": "greeting", "push-sent", "confirm-in-app", "enter-number",
        "invalid-number", "verified", "not-verified", "all-busy", "error"),
    ),
];
const BUNDLED_HOLD: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/prompts/hold.wav"
));

impl PromptSet {
    /// The bundled prompts for `lang` ("sv" or "en") and the bundled hold music.
    pub fn bundled(lang: &str) -> Result<Self, PromptError> {
        let (_, files) = BUNDLED
            .iter()
            .find(|(l, _)| *l == lang)
            .ok_or_else(|| PromptError::UnknownLanguage(lang.to_owned()))?;
        let mut prompts = HashMap::new();
        for id in PromptId::ALL {
            let file = format!("{lang}/{}.wav", id.stem());
            let wav = files
                .iter()
                .find(|(stem, _)| *stem == id.stem())
                .map(|(_, wav)| *wav)
                .ok_or_else(|| unsupported(&file, "not bundled"))?;
            prompts.insert(id, decode(wav, &file)?);
        }
        Ok(PromptSet {
            lang: lang.to_owned(),
            prompts,
            hold: decode(BUNDLED_HOLD, "hold.wav")?,
            silence: PromptAudio::silence(),
        })
    }

    /// The bundled prompts for `lang`, each replaced by `<dir>/<lang>/<stem>.wav` and the hold
    /// music by `<dir>/hold.wav` where those files exist (the layout of `assets/prompts/`).
    pub fn load_dir(dir: &Path, lang: &str) -> Result<Self, PromptError> {
        let mut set = PromptSet::bundled(lang)?;
        for id in PromptId::ALL {
            let path = dir.join(lang).join(format!("{}.wav", id.stem()));
            if let Some(audio) = load_file(&path)? {
                set.prompts.insert(id, audio);
            }
        }
        if let Some(audio) = load_file(&dir.join("hold.wav"))? {
            set.hold = audio;
        }
        Ok(set)
    }

    /// This set with one prompt replaced (for tests and tools).
    pub fn with_prompt(mut self, id: PromptId, audio: PromptAudio) -> Self {
        self.prompts.insert(id, audio);
        self
    }

    /// This set with the hold music replaced.
    pub fn with_hold(mut self, audio: PromptAudio) -> Self {
        self.hold = audio;
        self
    }

    /// The language of the prompts.
    pub fn lang(&self) -> &str {
        &self.lang
    }

    /// A prompt's audio.
    pub fn prompt(&self, id: PromptId) -> &PromptAudio {
        // Every constructor fills all of PromptId::ALL; silence is a harmless fallback.
        self.prompts.get(&id).unwrap_or(&self.silence)
    }

    /// The hold music, played in a loop.
    pub fn hold(&self) -> &PromptAudio {
        &self.hold
    }

    /// One frame of silence, looped when nothing else plays.
    pub fn silence(&self) -> &PromptAudio {
        &self.silence
    }
}

/// Decodes a user's WAV file if it exists.
fn load_file(path: &Path) -> Result<Option<PromptAudio>, PromptError> {
    if !path.exists() {
        return Ok(None);
    }
    let file = path.display().to_string();
    let reader = std::fs::File::open(path).map_err(|e| PromptError::Decode {
        file: file.clone(),
        source: hound::Error::IoError(e),
    })?;
    decode(std::io::BufReader::new(reader), &file).map(Some)
}

fn unsupported(file: &str, reason: impl Into<String>) -> PromptError {
    PromptError::Unsupported {
        file: file.to_owned(),
        reason: reason.into(),
    }
}

/// Decodes a WAV file to 8 kHz mono and encodes it: channels are averaged, other sample rates
/// resampled linearly, any integer depth up to 32 bits or 32-bit float accepted.
fn decode<R: Read>(reader: R, file: &str) -> Result<PromptAudio, PromptError> {
    let hound_err = |source| PromptError::Decode {
        file: file.to_owned(),
        source,
    };
    let wav = hound::WavReader::new(reader).map_err(hound_err)?;
    let spec = wav.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(unsupported(file, "zero channels or sample rate"));
    }
    if wav.duration() / spec.sample_rate > MAX_SECONDS {
        return Err(unsupported(file, format!("longer than {MAX_SECONDS} s")));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int if (1..=32).contains(&spec.bits_per_sample) => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            wav.into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(hound_err)?
        }
        hound::SampleFormat::Float if spec.bits_per_sample == 32 => wav
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(hound_err)?,
        _ => {
            return Err(unsupported(
                file,
                format!("{}-bit samples", spec.bits_per_sample),
            ));
        }
    };
    let mono = downmix(&interleaved, usize::from(spec.channels));
    let resampled = resample(&mono, spec.sample_rate, SAMPLE_RATE);
    let samples: Vec<i16> = resampled
        .iter()
        .map(|&x| (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    Ok(PromptAudio::from_samples(&samples))
}

/// Averages interleaved channels to mono.
fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Linear-interpolation resampling (adequate for speech going to 8 kHz G.711).
fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let out_len = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let step = f64::from(from) / f64::from(to);
    (0..out_len)
        .map(|i| {
            let pos = i as f64 * step;
            let index = pos as usize;
            let frac = (pos - index as f64) as f32;
            let a = input[index.min(input.len() - 1)];
            let b = input[(index + 1).min(input.len() - 1)];
            a + (b - a) * frac
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_prompt_decodes() {
        for lang in ["sv", "en"] {
            let set = PromptSet::bundled(lang).unwrap();
            assert_eq!(set.lang(), lang);
            for id in PromptId::ALL {
                let frames = set.prompt(id).frames();
                // Non-trivial and under 6 s (300 frames).
                assert!(
                    (25..300).contains(&frames),
                    "{lang}/{}: {frames} frames",
                    id.stem()
                );
            }
            assert_eq!(set.hold().frames(), 400, "hold music is an 8 s loop");
        }
        assert!(matches!(
            PromptSet::bundled("fi"),
            Err(PromptError::UnknownLanguage(_))
        ));
    }

    #[test]
    fn a_16khz_stereo_wav_is_converted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("en")).unwrap();
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let path = dir.path().join("en/verified.wav");
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for _ in 0..16_000 {
            // Left and right average to 8,000.
            writer.write_sample(12_000i16).unwrap();
            writer.write_sample(4_000i16).unwrap();
        }
        writer.finalize().unwrap();
        let set = PromptSet::load_dir(dir.path(), "en").unwrap();
        let audio = set.prompt(PromptId::Verified);
        assert_eq!(audio.frames(), 50, "one second at 8 kHz");
        let decoded = Codec::Pcmu.decode(&audio.encoded(Codec::Pcmu)[..160]);
        assert!(
            decoded.iter().all(|&s| (7_500..8_500).contains(&s)),
            "{decoded:?}"
        );
        let bundled = PromptSet::bundled("en").unwrap();
        let greeting = set.prompt(PromptId::Greeting).encoded(Codec::Pcma);
        assert_eq!(
            greeting,
            bundled.prompt(PromptId::Greeting).encoded(Codec::Pcma)
        );
    }

    #[test]
    fn a_non_wav_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hold.wav"), b"this is not a RIFF file").unwrap();
        let err = PromptSet::load_dir(dir.path(), "sv").unwrap_err();
        assert!(matches!(err, PromptError::Decode { .. }));
        assert!(err.to_string().contains("hold.wav"), "{err}");
    }

    #[test]
    fn float_wavs_are_accepted() {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for _ in 0..200 {
            writer.write_sample(0.5f32).unwrap();
        }
        writer.finalize().unwrap();
        let audio = decode(std::io::Cursor::new(cursor.into_inner()), "x.wav").unwrap();
        assert_eq!(audio.frames(), 2, "200 samples pad to two frames");
        let decoded = Codec::Pcma.decode(audio.encoded(Codec::Pcma));
        assert!((15_500..17_000).contains(&decoded[0]) && decoded[319] == 8);
    }

    #[test]
    fn resample_and_downmix() {
        assert_eq!(downmix(&[1.0, 0.0, 0.5, 0.5], 2), vec![0.5, 0.5]);
        let up = resample(&[0.0, 1.0], 4000, 8000);
        assert_eq!(up, vec![0.0, 0.5, 1.0, 1.0]);
        assert_eq!(
            resample(&[0.0, 1.0, 2.0, 3.0], 16_000, 8000),
            vec![0.0, 2.0]
        );
    }
}
