//! SRTP through the engine: real UDP sockets on 127.0.0.1, the far end played by a plain
//! `UdpSocket` with its own `SrtpSession` (the same crate, the keys the other way round).
//! Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::timeout;

use super::rtp;
use super::srtp::{CryptoSuite, KeySalt, Sdes, SrtpSession};
use super::test_support::{self, WAIT, engine, far_end, recv};
use super::*;

fn prompts() -> Arc<PromptSet> {
    Arc::new(PromptSet::bundled("sv").unwrap())
}

/// idgate's session and the far end's, keyed against each other.
fn keyed(suite: CryptoSuite) -> (SrtpSession, SrtpSession) {
    let (ours, theirs) = (KeySalt::generate(), KeySalt::generate());
    let sdes = |local: &KeySalt, remote: &KeySalt| Sdes {
        tag: 1,
        suite,
        local: local.clone(),
        remote: remote.clone(),
    };
    (
        SrtpSession::new(&sdes(&ours, &theirs)).unwrap(),
        SrtpSession::new(&sdes(&theirs, &ours)).unwrap(),
    )
}

/// An RTP packet of the far end's one SSRC.
fn packet(
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    payload: &[u8],
) -> Vec<u8> {
    test_support::packet(
        marker,
        payload_type,
        sequence,
        timestamp,
        0x5EC0_0001,
        payload,
    )
}

/// Digit `code` as RFC 4733 packets: start, two continuations, the end three times.
fn digit(code: u8, first_sequence: u16, timestamp: u32) -> Vec<Vec<u8>> {
    (0..6u16)
        .map(|n| {
            let end = if n >= 3 { 0x80 } else { 0 };
            let [hi, lo] = (160 * (n.min(3) + 1)).to_be_bytes();
            let payload = [code, end | 10, hi, lo];
            packet(n == 0, 101, first_sequence + n, timestamp, &payload)
        })
        .collect()
}

#[tokio::test]
async fn a_secured_stream_sends_srtp_and_hears_srtp_digits_only() {
    let engine = engine(48200, 48299);
    let counters = engine.counters();
    let mut stream = engine.open(prompts()).await.unwrap();
    let (ours, far_session) = keyed(CryptoSuite::AesCm128HmacSha1_80);
    stream.secure(ours);
    let (far, far_addr) = far_end().await;
    stream.start(far_addr, Codec::Pcmu, Some(101));

    // What idgate sends is SRTP: 12-byte header, 160 bytes of G.711, a 10-byte tag.
    let mut wire = recv(&far).await;
    assert_eq!(wire.len(), 12 + 160 + 10);
    let len = far_session.unprotect_rtp(&mut wire).unwrap();
    let plain = rtp::parse(&wire[..len]).unwrap();
    assert_eq!(plain.header.payload_type, 0);
    assert_eq!(plain.payload.len(), 160);

    // A plain digit (no key) and a tampered one are dropped and counted; no event.
    let to = stream.local_addr();
    let before = counters.srtp_auth_failures.load(Ordering::Relaxed);
    for p in digit(1, 0, 8000) {
        far.send_to(&p, to).await.unwrap();
    }
    for p in digit(2, 6, 16000) {
        let mut protected = far_session.protect_rtp(&p).unwrap().as_ref().to_vec();
        protected[13] ^= 0x01;
        far.send_to(&protected, to).await.unwrap();
    }
    // The protected digit is heard.
    for p in digit(5, 12, 24000) {
        let protected = far_session.protect_rtp(&p).unwrap();
        far.send_to(protected.as_ref(), to).await.unwrap();
    }
    let event = timeout(WAIT, stream.events().recv()).await.unwrap();
    assert_eq!(event, Some(MediaEvent::Dtmf('5')), "only the SRTP digit");
    let failures = counters.srtp_auth_failures.load(Ordering::Relaxed) - before;
    assert_eq!(failures, 12, "six plain and six tampered packets counted");
}

#[tokio::test]
async fn a_bridge_decrypts_towards_the_plain_leg_and_encrypts_back() {
    let engine = engine(48300, 48399);
    let caller = engine.open(prompts()).await.unwrap();
    let queue = engine.open(prompts()).await.unwrap();
    let (ours, far_session) = keyed(CryptoSuite::AesCm128HmacSha1_32);
    caller.secure(ours);
    let (caller_far, caller_addr) = far_end().await;
    let (queue_far, queue_addr) = far_end().await;
    caller.set_remote(caller_addr);
    queue.set_remote(queue_addr);
    caller.bridge(&queue);

    // Caller → queue: SRTP in, plain RTP out, the payload intact.
    let audio = [0x2A; 160];
    let protected = far_session
        .protect_rtp(&packet(true, 0, 7, 1600, &audio))
        .unwrap();
    caller_far
        .send_to(protected.as_ref(), caller.local_addr())
        .await
        .unwrap();
    let relayed = recv(&queue_far).await;
    let relayed = rtp::parse(&relayed).unwrap();
    assert_eq!(relayed.payload, &audio[..], "the queue hears plain audio");

    // Queue → caller: plain in, SRTP out with the 32-bit tag.
    let back = [0x3B; 160];
    queue_far
        .send_to(&packet(true, 0, 100, 9000, &back), queue.local_addr())
        .await
        .unwrap();
    let mut wire = recv(&caller_far).await;
    assert_eq!(wire.len(), 12 + 160 + 4);
    assert_ne!(&wire[12..172], &back[..], "encrypted on the caller leg");
    let len = far_session.unprotect_rtp(&mut wire).unwrap();
    assert_eq!(rtp::parse(&wire[..len]).unwrap().payload, &back[..]);
}

#[tokio::test]
async fn srtcp_from_the_caller_is_relayed_plain_and_rtcp_back_is_protected() {
    let engine = engine(48400, 48499);
    let counters = engine.counters();
    let caller = engine.open(prompts()).await.unwrap();
    let queue = engine.open(prompts()).await.unwrap();
    let (ours, far_session) = keyed(CryptoSuite::AesCm128HmacSha1_80);
    caller.secure(ours);
    let (_, caller_addr) = far_end().await;
    let (_, queue_addr) = far_end().await;
    caller.set_remote(caller_addr);
    queue.set_remote(queue_addr);
    caller.bridge(&queue);
    let rtcp_port = |addr: SocketAddr| SocketAddr::new(addr.ip(), addr.port() + 1);
    let (caller_rtcp, _) = far_end().await;
    let (queue_rtcp, _) = far_end().await;
    let rr = |ssrc: u32| {
        let mut rr = vec![0x80, 201, 0, 1];
        rr.extend_from_slice(&ssrc.to_be_bytes());
        rr
    };
    // The queue's far end latches its RTCP address first (its RR goes to the caller's
    // signalled port, where nobody listens).
    queue_rtcp
        .send_to(&rr(0xB0), rtcp_port(queue.local_addr()))
        .await
        .unwrap();
    // The caller's SRTCP is unprotected and reaches the queue's far end plain.
    let srtcp = far_session.protect_rtcp(&rr(0x5EC0_0001)).unwrap();
    caller_rtcp
        .send_to(srtcp.as_ref(), rtcp_port(caller.local_addr()))
        .await
        .unwrap();
    let plain = recv(&queue_rtcp).await;
    assert_eq!(
        (plain.len(), plain[1]),
        (8, 201),
        "plain RR, no SRTCP trailer"
    );
    // The queue's next RR reaches the caller's far end as SRTCP it can unprotect.
    queue_rtcp
        .send_to(&rr(0xB0), rtcp_port(queue.local_addr()))
        .await
        .unwrap();
    let mut wire = recv(&caller_rtcp).await;
    assert_eq!(wire.len(), 8 + 4 + 10);
    let len = far_session.unprotect_rtcp(&mut wire).unwrap();
    assert_eq!((len, wire[1]), (8, 201));
    assert_eq!(
        &wire[4..8],
        &caller.ssrc().to_be_bytes(),
        "under the caller leg's SSRC"
    );
    // A forged SRTCP packet is dropped and counted, never relayed.
    let before = counters.srtp_auth_failures.load(Ordering::Relaxed);
    let mut forged = far_session
        .protect_rtcp(&rr(0x5EC0_0001))
        .unwrap()
        .as_ref()
        .to_vec();
    forged[6] ^= 0xff;
    caller_rtcp
        .send_to(&forged, rtcp_port(caller.local_addr()))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let relayed = timeout(Duration::from_millis(300), queue_rtcp.recv_from(&mut buf)).await;
    assert!(relayed.is_err(), "a forged SRTCP packet was relayed");
    assert_eq!(
        counters.srtp_auth_failures.load(Ordering::Relaxed),
        before + 1
    );
}
