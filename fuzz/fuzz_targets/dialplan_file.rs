//! Dialplan route files (`config::Dialplan::parse_file`).
//! The checks live in `idgate::fuzzing::dialplan_file`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::dialplan_file(data));
