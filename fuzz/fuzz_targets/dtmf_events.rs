//! RFC 4733 telephone-events: RTP datagrams fed to `media::dtmf::DtmfDetector`.
//! The checks live in `idgate::fuzzing::dtmf_events`, where a crash becomes a unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idgate::fuzzing::dtmf_events(data));
