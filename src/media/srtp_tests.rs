//! `srtp` without sockets: `a=crypto` parsing, negotiation, and protect/unprotect against
//! the RFC 3711 reference keys.

use super::*;

/// RFC 3711 Appendix B.3's master key and salt, which libsrtp's reference packets use.
const RFC3711_KEY: [u8; 30] = [
    0xe1, 0xf9, 0x7a, 0x0d, 0x3e, 0x01, 0x8b, 0xe0, 0xd6, 0x4f, 0xa3, 0x2c, 0x06, 0xde, 0x41, 0x39,
    0x0e, 0xc6, 0x75, 0xad, 0x49, 0x8a, 0xfe, 0xeb, 0xb6, 0x96, 0x0b, 0x3a, 0xab, 0xe6,
];

/// RTP version 2, PT 15, sequence 0x1234, timestamp 0xdecafbad, SSRC 0xcafebabe, 16 × 0xab.
fn reference_plaintext() -> Vec<u8> {
    let mut packet = vec![
        0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe,
    ];
    packet.extend([0xab; 16]);
    packet
}

/// The same packet protected with AES_CM_128_HMAC_SHA1_80 (libsrtp's `srtp_validate`).
const REFERENCE_SRTP_80: [u8; 38] = [
    0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe, 0x4e, 0x55, 0xdc, 0x4c,
    0xe7, 0x99, 0x78, 0xd8, 0x8c, 0xa4, 0xd2, 0x15, 0x94, 0x9d, 0x24, 0x02, 0xb7, 0x8d, 0x6a, 0xcc,
    0x99, 0xea, 0x17, 0x9b, 0x8d, 0xbb,
];

const INLINE: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

fn sdes(suite: CryptoSuite, local: KeySalt, remote: KeySalt) -> Sdes {
    Sdes {
        tag: 1,
        suite,
        remote,
        local,
    }
}

/// Two ends of one call: `a` protects what `b` unprotects and back.
fn pair(suite: CryptoSuite) -> (SrtpSession, SrtpSession) {
    let (k1, k2) = (KeySalt::generate(), KeySalt::generate());
    let a = SrtpSession::new(&sdes(suite, k1.clone(), k2.clone())).unwrap();
    let b = SrtpSession::new(&sdes(suite, k2, k1)).unwrap();
    (a, b)
}

fn rtp(sequence: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend(sequence.to_be_bytes());
    packet.extend(160u32.wrapping_mul(u32::from(sequence)).to_be_bytes());
    packet.extend(0x1234_5678u32.to_be_bytes());
    packet.extend(payload);
    packet
}

#[test]
fn parses_the_rfc_4568_forms() {
    let line = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}")).unwrap();
    assert_eq!(
        (line.tag, line.suite),
        (1, CryptoSuite::AesCm128HmacSha1_80)
    );
    assert_eq!(line.key.to_inline(), INLINE);
    let short = parse_crypto(&format!(
        "123456789 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}|2^31 WSH=64 KDR=0"
    ))
    .unwrap();
    assert_eq!(
        (short.tag, short.suite),
        (123_456_789, CryptoSuite::AesCm128HmacSha1_32)
    );
    let decimal = parse_crypto(&format!(
        "2 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|1099511627776"
    ));
    assert!(decimal.is_ok());
}

#[test]
fn refuses_what_it_cannot_honour() {
    let cases = [
        ("", CryptoError::Malformed),
        ("1 AES_CM_128_HMAC_SHA1_80", CryptoError::Malformed),
        ("x AES_CM_128_HMAC_SHA1_80 inline:a", CryptoError::Malformed),
        (
            "1234567890 AES_CM_128_HMAC_SHA1_80 inline:a",
            CryptoError::Malformed,
        ),
        (
            "1 AES_256_CM_HMAC_SHA1_80 inline:a",
            CryptoError::UnsupportedSuite("AES_256_CM_HMAC_SHA1_80".into()),
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:x", CryptoError::KeyMethod),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",
            CryptoError::BadKey,
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!", CryptoError::BadKey),
    ];
    for (line, error) in cases {
        assert_eq!(parse_crypto(line), Err(error), "{line:?}");
    }
    let with =
        |rest: &str| parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}{rest}"));
    assert_eq!(with("|2^31|1:4"), Err(CryptoError::Mki));
    assert_eq!(with("|2^20|1:4"), Err(CryptoError::Lifetime));
    assert_eq!(with("|1:4"), Err(CryptoError::Mki));
    assert_eq!(with("|2^10"), Err(CryptoError::Lifetime));
    assert_eq!(with("|2^x"), Err(CryptoError::Lifetime));
    assert_eq!(with("|1000"), Err(CryptoError::Lifetime));
    assert_eq!(
        with(&format!(";inline:{INLINE}")),
        Err(CryptoError::KeyMethod)
    );
    assert_eq!(
        with(" UNENCRYPTED_SRTP"),
        Err(CryptoError::SessionParameter)
    );
    assert_eq!(with(" KDR=24"), Err(CryptoError::SessionParameter));
}

#[test]
fn errors_and_debug_never_show_the_key() {
    let line = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}")).unwrap();
    assert!(!format!("{line:?}").contains(INLINE));
    let session = SrtpSession::new(&sdes(line.suite, line.key.clone(), line.key)).unwrap();
    assert!(!format!("{session:?}").contains(INLINE));
    let error =
        parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|1:4")).unwrap_err();
    assert!(!error.to_string().contains(INLINE));
}

#[test]
fn negotiate_takes_the_first_usable_line_with_a_fresh_key() {
    let lines = [
        "1 F8_128_HMAC_SHA1_80 inline:x".to_owned(),
        format!("2 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}"),
        format!("3 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"),
    ];
    let chosen = negotiate(lines.iter().map(String::as_str)).unwrap();
    assert_eq!(
        (chosen.tag, chosen.suite),
        (2, CryptoSuite::AesCm128HmacSha1_32)
    );
    assert_ne!(chosen.local, chosen.remote);
    assert!(
        chosen
            .answer_value()
            .starts_with("2 AES_CM_128_HMAC_SHA1_32 inline:")
    );
    assert_eq!(negotiate(["1 NULL_HMAC_SHA1_80 inline:x"]), None);
    assert_eq!(negotiate([]), None);
}

/// libsrtp's reference packet (RFC 3711 B.3 keys): protect gives its bytes, unprotect its
/// plaintext; the 32-bit suite's packet is the same with the tag cut to 4 bytes.
#[test]
fn reference_packet_from_the_rfc_3711_keys() {
    let key = KeySalt::from_bytes(RFC3711_KEY);
    let other = KeySalt::generate();
    let sender = SrtpSession::new(&sdes(
        CryptoSuite::AesCm128HmacSha1_80,
        key.clone(),
        other.clone(),
    ))
    .unwrap();
    let protected = sender.protect_rtp(&reference_plaintext()).unwrap();
    assert_eq!(protected.as_ref(), REFERENCE_SRTP_80);
    let receiver = SrtpSession::new(&sdes(
        CryptoSuite::AesCm128HmacSha1_80,
        other.clone(),
        key.clone(),
    ))
    .unwrap();
    let mut packet = REFERENCE_SRTP_80.to_vec();
    let len = receiver.unprotect_rtp(&mut packet).unwrap();
    assert_eq!(&packet[..len], reference_plaintext().as_slice());

    let sender32 = SrtpSession::new(&sdes(
        CryptoSuite::AesCm128HmacSha1_32,
        key.clone(),
        other.clone(),
    ))
    .unwrap();
    let protected = sender32.protect_rtp(&reference_plaintext()).unwrap();
    assert_eq!(protected.as_ref(), &REFERENCE_SRTP_80[..32]);
    let receiver32 = SrtpSession::new(&sdes(CryptoSuite::AesCm128HmacSha1_32, other, key)).unwrap();
    let mut packet = REFERENCE_SRTP_80[..32].to_vec();
    assert_eq!(receiver32.unprotect_rtp(&mut packet).unwrap(), 28);
}

#[test]
fn rtp_round_trip_both_suites_across_a_sequence_wrap() {
    for suite in [
        CryptoSuite::AesCm128HmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32,
    ] {
        let (a, b) = pair(suite);
        let tag = if suite == CryptoSuite::AesCm128HmacSha1_80 {
            10
        } else {
            4
        };
        for sequence in [65533u16, 65534, 65535, 0, 1, 2] {
            let plain = rtp(sequence, &[0x55; 160]);
            let protected = a.protect_rtp(&plain).unwrap();
            let mut wire = protected.as_ref().to_vec();
            assert_eq!(wire.len(), plain.len() + tag);
            assert_ne!(&wire[12..172], &plain[12..], "payload encrypted");
            let len = b.unprotect_rtp(&mut wire).unwrap();
            assert_eq!(&wire[..len], plain.as_slice(), "{suite:?} {sequence}");
        }
    }
}

#[test]
fn tampered_replayed_and_foreign_packets_fail() {
    let (a, b) = pair(CryptoSuite::AesCm128HmacSha1_80);
    let wire = a
        .protect_rtp(&rtp(10, &[1; 160]))
        .unwrap()
        .as_ref()
        .to_vec();
    let mut tampered = wire.clone();
    tampered[20] ^= 1;
    assert!(matches!(
        b.unprotect_rtp(&mut tampered),
        Err(SrtpError::Unprotect(_))
    ));
    let mut first = wire.clone();
    assert!(b.unprotect_rtp(&mut first).is_ok());
    let mut replayed = wire.clone();
    assert!(b.unprotect_rtp(&mut replayed).is_err(), "replay accepted");
    // Plain RTP (an attacker without the key) fails authentication too.
    let mut plain = rtp(11, &[1; 160]);
    assert!(b.unprotect_rtp(&mut plain).is_err());
    let mut short = vec![0x80, 0, 0, 1];
    assert!(b.unprotect_rtp(&mut short).is_err());
}

#[test]
fn rtcp_round_trip_and_tamper() {
    let (a, b) = pair(CryptoSuite::AesCm128HmacSha1_32);
    // A receiver report: V=2 RC=0 PT=201 length=1, SSRC.
    let report = [0x80, 0xc9, 0x00, 0x01, 0xca, 0xfe, 0xba, 0xbe];
    let wire = a.protect_rtcp(&report).unwrap().as_ref().to_vec();
    // E flag + 31-bit index, then the 80-bit tag (SRTCP keeps 80 bits for _32).
    assert_eq!(wire.len(), report.len() + 4 + 10);
    assert_eq!(wire[8] & 0x80, 0x80, "E flag");
    let mut copy = wire.clone();
    let len = b.unprotect_rtcp(&mut copy).unwrap();
    assert_eq!(&copy[..len], report.as_slice());
    let mut tampered = wire;
    tampered[5] ^= 0xff;
    assert!(b.unprotect_rtcp(&mut tampered).is_err());
}

#[test]
fn policy_reads_from_config_text() {
    #[derive(Deserialize)]
    struct Media {
        srtp: SrtpPolicy,
    }
    let read = |text: &str| toml::from_str::<Media>(text).map(|m| m.srtp);
    assert_eq!(read("srtp = \"off\"").unwrap(), SrtpPolicy::Off);
    assert_eq!(read("srtp = \"optional\"").unwrap(), SrtpPolicy::Optional);
    assert_eq!(read("srtp = \"required\"").unwrap(), SrtpPolicy::Required);
    assert!(read("srtp = \"mandatory\"").is_err());
    assert_eq!(SrtpPolicy::default(), SrtpPolicy::Optional);
}

#[test]
fn the_config_key_defaults_to_optional_and_errors_name_it() {
    use crate::config::Config;
    assert_eq!(Config::embedded().media.srtp, SrtpPolicy::Optional);
    let required = Config::parse("t.toml", "[media]\nsrtp = \"required\"\n").unwrap();
    assert_eq!(required.media.srtp, SrtpPolicy::Required);
    let error = Config::parse("t.toml", "[media]\nsrtp = \"yes\"\n").unwrap_err();
    assert!(error.to_string().contains("media.srtp"), "{error}");
}
