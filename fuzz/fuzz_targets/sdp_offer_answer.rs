//! SDP offer/answer (`media::sdp`): our answer to any offer is usable SDP.
//! The checks live in `idgate::fuzzing::sdp_offer_answer`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::sdp_offer_answer(data));
