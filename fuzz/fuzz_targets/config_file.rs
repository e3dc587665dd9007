//! `idgate.toml` parse and validation (`config::Config::parse`).
//! The checks live in `idgate::fuzzing::config_file`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::config_file(data));
