//! G.711 (ITU-T G.711) µ-law and A-law companding of 16-bit linear samples.
//!
//! Hand-written rather than a dependency: the standard bit algorithms (as in the Sun/CCITT
//! reference `g711.c`) are a few lines each, run once per prompt at start-up, and are tested
//! exhaustively below (all 256 codes round-trip, all 65,536 samples stay within one
//! quantisation step).

/// The audio codecs idgate speaks: G.711 at 8 kHz, static RTP payload types (RFC 3551 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, `PCMU/8000`, payload type 0.
    Pcmu,
    /// G.711 A-law, `PCMA/8000`, payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551 table 4).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec with this static payload type, if it is one of ours.
    pub fn from_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The encoding name used in `a=rtpmap` (RFC 3551).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Encodes linear samples, one byte per sample.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        let encode = match self {
            Codec::Pcmu => linear_to_ulaw,
            Codec::Pcma => linear_to_alaw,
        };
        samples.iter().map(|&s| encode(s)).collect()
    }

    /// Decodes bytes to linear samples.
    pub fn decode(self, bytes: &[u8]) -> Vec<i16> {
        let decode = match self {
            Codec::Pcmu => ulaw_to_linear,
            Codec::Pcma => alaw_to_linear,
        };
        bytes.iter().map(|&b| decode(b)).collect()
    }

    /// The byte that encodes digital silence (a zero sample).
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => linear_to_ulaw(0),
            Codec::Pcma => linear_to_alaw(0),
        }
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Encodes one sample to µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample);
    let sign = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0
    };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // The segment is the position of the highest set bit above bit 7 (0..=7).
    let high = ((biased >> 7) & 0xFF) as u32;
    let exponent = if high == 0 {
        0
    } else {
        31 - high.leading_zeros() as i32
    };
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes one µ-law byte.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let exponent = i32::from((code >> 4) & 0x07);
    let mantissa = i32::from(code & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    let value = if code & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    };
    value as i16
}

/// Upper bounds of the eight A-law segments, for 13-bit magnitudes.
const ALAW_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// Encodes one sample to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample) >> 3;
    let mask = if magnitude >= 0 {
        0xD5
    } else {
        magnitude = -magnitude - 1;
        0x55
    };
    let Some(segment) = ALAW_SEGMENT_END.iter().position(|&end| magnitude <= end) else {
        return 0x7F ^ mask;
    };
    let shift = if segment < 2 { 1 } else { segment };
    let code = ((segment as i32) << 4) | ((magnitude >> shift) & 0x0F);
    (code as u8) ^ mask
}

/// Decodes one A-law byte.
pub fn alaw_to_linear(code: u8) -> i16 {
    let code = code ^ 0x55;
    let mut magnitude = i32::from(code & 0x0F) << 4;
    let segment = i32::from((code & 0x70) >> 4);
    magnitude = match segment {
        0 => magnitude + 8,
        1 => magnitude + 0x108,
        _ => (magnitude + 0x108) << (segment - 1),
    };
    let value = if code & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    };
    value as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_codes_round_trip() {
        for code in 0..=255u8 {
            let back = linear_to_ulaw(ulaw_to_linear(code));
            // 0x7F is "negative zero": it decodes to 0, which encodes as 0xFF.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, expected, "code {code:#04x}");
        }
    }

    #[test]
    fn alaw_codes_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn every_sample_stays_within_one_step() {
        for sample in -32000..=32000i32 {
            let s = sample as i16;
            let bound = sample.abs() / 16 + 16;
            let mu = i32::from(ulaw_to_linear(linear_to_ulaw(s)));
            let a = i32::from(alaw_to_linear(linear_to_alaw(s)));
            assert!((mu - sample).abs() <= bound, "µ-law {sample} -> {mu}");
            assert!((a - sample).abs() <= bound, "A-law {sample} -> {a}");
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        for s in [i16::MIN, i16::MAX] {
            let mu = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            assert_eq!(mu.signum(), s.signum());
            assert_eq!(a.signum(), s.signum());
        }
    }

    #[test]
    fn silence_and_known_codes() {
        assert_eq!(Codec::Pcmu.silence_byte(), 0xFF);
        assert_eq!(Codec::Pcma.silence_byte(), 0xD5);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        let samples = [0i16, 1000, -1000, 20000];
        let decoded = Codec::Pcma.decode(&Codec::Pcma.encode(&samples));
        assert_eq!(decoded.len(), samples.len());
    }

    #[test]
    fn payload_types() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(Codec::from_payload_type(codec.payload_type()), Some(codec));
        }
        assert_eq!(Codec::from_payload_type(9), None);
    }
}
