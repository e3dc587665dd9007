//! SIP intake: `sip::intake::inspect` over UDP and TCP framing, then rsipstack's parser.
//! The checks live in `idgate::fuzzing::sip_message`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::sip_message(data));
