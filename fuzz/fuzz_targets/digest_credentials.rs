//! `Authorization` values: `sip::auth`'s digest parser and `TrunkAuth::decide`.
//! The checks live in `idgate::fuzzing::digest_credentials`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::digest_credentials(data));
