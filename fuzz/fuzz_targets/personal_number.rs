//! Personal identity numbers (`identity::personal_number`): all forms, round trips.
//! The checks live in `idgate::fuzzing::personal_number`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::personal_number(data));
