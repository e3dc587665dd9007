//! Driver tests: real UDP sockets on 127.0.0.1, the far end played by a plain `UdpSocket`.
//! They assert order and continuity, never timing, and every wait is bounded.

use std::sync::Arc;

use tokio::time::timeout;

use super::prompts::PromptAudio;
use super::rtp;
use super::test_support::{WAIT, engine, far_end, packet, recv};
use super::*;

fn prompts() -> Arc<PromptSet> {
    let set = PromptSet::bundled("sv")
        .unwrap()
        .with_prompt(PromptId::Verified, PromptAudio::from_samples(&[500; 480]));
    Arc::new(set)
}

async fn next_event(stream: &mut MediaStream) -> MediaEvent {
    timeout(WAIT, stream.events().recv())
        .await
        .expect("no event")
        .expect("events closed")
}

#[tokio::test]
async fn frames_arrive_with_continuous_sequence_and_timestamp() {
    let engine = engine(47100, 47199);
    let stream = engine.open(prompts()).await.unwrap();
    let (far, far_addr) = far_end().await;
    stream.start(far_addr, Codec::Pcma, None);
    stream.hold();
    let mut headers = Vec::new();
    for _ in 0..12 {
        let datagram = recv(&far).await;
        assert_eq!(datagram.len(), 172);
        headers.push(rtp::parse(&datagram).unwrap().header);
    }
    for pair in headers.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence.wrapping_add(1));
        assert_eq!(pair[1].timestamp, pair[0].timestamp.wrapping_add(160));
        assert_eq!((pair[1].ssrc, pair[1].payload_type), (pair[0].ssrc, 8));
    }
    assert!(headers[0].marker);
}

#[tokio::test]
async fn prompt_done_arrives_after_a_short_prompt() {
    let engine = engine(47200, 47299);
    let mut stream = engine.open(prompts()).await.unwrap();
    let (_far, far_addr) = far_end().await;
    stream.start(far_addr, Codec::Pcmu, None);
    stream.play(PromptId::Verified, true);
    assert_eq!(
        next_event(&mut stream).await,
        MediaEvent::PromptDone(PromptId::Verified)
    );
}

#[tokio::test]
async fn telephone_event_yields_one_dtmf_event() {
    let engine = engine(47300, 47399);
    let mut stream = engine.open(prompts()).await.unwrap();
    let (far, far_addr) = far_end().await;
    stream.start(far_addr, Codec::Pcmu, Some(101));
    let to = stream.local_addr();
    // Digit 5: start, two continuations, the end packet three times; then '#'.
    for (i, (code, ts)) in [(5u8, 8000u32), (11, 16000)].into_iter().enumerate() {
        for n in 0..6u16 {
            let end = if n >= 3 { 0x80 } else { 0 };
            let [hi, lo] = (160 * (n.min(3) + 1)).to_be_bytes();
            let seq = i as u16 * 6 + n;
            far.send_to(
                &packet(n == 0, 101, seq, ts, 42, &[code, end | 10, hi, lo]),
                to,
            )
            .await
            .unwrap();
        }
    }
    assert_eq!(next_event(&mut stream).await, MediaEvent::Dtmf('5'));
    assert_eq!(
        next_event(&mut stream).await,
        MediaEvent::Dtmf('#'),
        "'5' reported once"
    );
    assert_eq!(format!("{:?}", MediaEvent::Dtmf('5')), "Dtmf(<redacted>)");
}

// The relay (bridge) tests are in `relay_tests.rs`.

#[tokio::test]
async fn port_range_exhaustion_and_release() {
    let engine = engine(47501, 47504); // two even ports: 47502, 47504
    let first = engine.open(prompts()).await.unwrap();
    let second = engine.open(prompts()).await.unwrap();
    assert_eq!(first.local_addr().port() % 2, 0);
    assert_ne!(first.local_addr(), second.local_addr());
    assert!(matches!(
        engine.open(prompts()).await,
        Err(MediaError::NoPorts)
    ));
    let freed = first.local_addr().port();
    drop(first);
    // The socket closes when its receive task has been cancelled, which the runtime does next.
    let reopened = timeout(WAIT, async {
        loop {
            match engine.open(prompts()).await {
                Ok(stream) => return stream,
                Err(MediaError::NoPorts) => tokio::task::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("port not freed");
    assert_eq!(reopened.local_addr().port(), freed);
}
