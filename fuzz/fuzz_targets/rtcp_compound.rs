//! RTCP compound translation for the relay (`media::rtcp`).
//! The checks live in `idgate::fuzzing::rtcp_compound`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::rtcp_compound(data));
