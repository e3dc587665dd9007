//! RTP fixed header parse, rebuild and the relay's rewrite (`media::rtp`).
//! The checks live in `idgate::fuzzing::rtp_packet`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::rtp_packet(data));
