//! Caller number from PAI / Remote-Party-ID / From (`identity::caller`), display names.
//! The checks live in `idgate::fuzzing::caller_number`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::caller_number(data));
