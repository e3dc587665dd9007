//! Relay driver tests: two bridged streams on real UDP sockets on 127.0.0.1, the far ends
//! played by plain `UdpSocket`s. They assert what each far end receives (one continuous
//! stream, RTCP in its own leg's terms, DTMF), never timing; every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::rtp::{self, RtpHeader};
use super::test_support::{LOCALHOST, WAIT, engine, far_end, packet, recv};
use super::*;

const RELAYED: [u8; 160] = [0x11; 160];

fn prompts() -> Arc<PromptSet> {
    Arc::new(PromptSet::bundled("sv").unwrap())
}

/// A caller leg `a` on hold towards `far_a`, a queue leg `b` latched to `far_b`, bridged.
struct Bridged {
    a: MediaStream,
    b: MediaStream,
    far_a: UdpSocket,
    far_b: UdpSocket,
}

async fn bridged(engine: &MediaEngine, dtmf_pt: Option<u8>) -> (Bridged, Vec<RtpHeader>) {
    let a = engine.open(prompts()).await.unwrap();
    let b = engine.open(prompts()).await.unwrap();
    let (far_a, far_a_addr) = far_end().await;
    let (far_b, _) = far_end().await;
    a.start(far_a_addr, Codec::Pcmu, dtmf_pt);
    a.hold();
    let mut hold = Vec::new();
    for _ in 0..3 {
        hold.push(rtp::parse(&recv(&far_a).await).unwrap().header);
    }
    // The queue leg is signalled with a dead address; symmetric RTP latches to far_b.
    b.set_remote(SocketAddr::new(LOCALHOST, 9));
    far_b
        .send_to(&packet(true, 0, 1, 1, 0xB0, &[0xFF; 160]), b.local_addr())
        .await
        .unwrap();
    a.bridge(&b);
    let streams = Bridged { a, b, far_a, far_b };
    (streams, hold)
}

/// What `far` receives until the first packet carrying `payload`, inclusive.
async fn until_payload(far: &UdpSocket, payload: &[u8]) -> Vec<(RtpHeader, Vec<u8>)> {
    let mut seen = Vec::new();
    loop {
        let datagram = recv(far).await;
        let parsed = rtp::parse(&datagram).unwrap();
        let done = parsed.payload == payload;
        seen.push((parsed.header, parsed.payload.to_vec()));
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn caller_hears_one_stream_across_hold_and_bridge() {
    let engine = engine(47600, 47699);
    let (s, hold) = bridged(&engine, Some(101)).await;
    for n in 0..5u16 {
        let p = packet(false, 0, 5000 + n, 777 + 160 * u32::from(n), 0xB1, &RELAYED);
        s.far_b.send_to(&p, s.b.local_addr()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen: Vec<RtpHeader> = hold;
    seen.extend(
        until_payload(&s.far_a, &RELAYED)
            .await
            .into_iter()
            .map(|(h, _)| h),
    );
    for _ in 0..4 {
        seen.push(rtp::parse(&recv(&s.far_a).await).unwrap().header);
    }
    for pair in seen.windows(2) {
        assert_eq!(pair[1].ssrc, pair[0].ssrc, "one SSRC");
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence.wrapping_add(1),
            "{seen:?}"
        );
        let step = pair[1].timestamp.wrapping_sub(pair[0].timestamp);
        assert!(
            step > 0 && step % 160 == 0 && step < 8000,
            "timestamp step {step}"
        );
    }
    assert_eq!(s.a.ssrc(), seen[0].ssrc);
}

#[tokio::test]
async fn queue_leg_gets_its_own_ssrc_and_telephone_events_pass_through() {
    let engine = engine(47700, 47799);
    let (mut s, _) = bridged(&engine, Some(101)).await;
    let mut sent = Vec::new();
    for n in 0..4u16 {
        let end = if n == 3 { 0x80 } else { 0 };
        let [hi, lo] = (160 * (n + 1)).to_be_bytes();
        sent.push(packet(
            n == 0,
            101,
            900 + n,
            16000,
            0xA1,
            &[5, end | 10, hi, lo],
        ));
    }
    sent.push(packet(false, 0, 904, 16800, 0xA1, &RELAYED));
    for p in &sent {
        s.far_a.send_to(p, s.a.local_addr()).await.unwrap();
    }
    let seen = until_payload(&s.far_b, &RELAYED).await;
    let events: Vec<_> = seen.iter().filter(|(h, _)| h.payload_type == 101).collect();
    assert_eq!(events.len(), 4, "every event packet relayed");
    assert!(
        events
            .iter()
            .all(|(h, _)| h.timestamp == events[0].0.timestamp)
    );
    assert_eq!(events[3].1, vec![5, 0x80 | 10, 2, 128], "payload untouched");
    let relayed: Vec<_> = seen[seen.len() - 5..].iter().map(|(h, _)| *h).collect();
    for pair in relayed.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence.wrapping_add(1));
    }
    assert!(
        relayed
            .iter()
            .all(|h| h.ssrc == s.b.ssrc() && h.ssrc != 0xA1)
    );
    let event = timeout(WAIT, s.a.events().recv()).await.unwrap();
    assert_eq!(
        event,
        Some(MediaEvent::Dtmf('5')),
        "still detected while relayed"
    );
}

#[tokio::test]
async fn telephone_events_take_the_payload_type_each_far_end_negotiated() {
    let engine = engine(48100, 48199);
    let (mut s, _) = bridged(&engine, Some(101)).await;
    // The queue answered telephone-event as 96, not the offered 101.
    s.b.set_dtmf_pt(Some(96));
    let event = |n: u16, seq: u16| packet(n == 0, 101, seq, 16000, 0xA1, &[7, 10, 0, 160]);
    s.far_a
        .send_to(&event(0, 900), s.a.local_addr())
        .await
        .unwrap();
    s.far_a
        .send_to(
            &packet(false, 0, 901, 16160, 0xA1, &RELAYED),
            s.a.local_addr(),
        )
        .await
        .unwrap();
    let seen = until_payload(&s.far_b, &RELAYED).await;
    let events: Vec<_> = seen.iter().filter(|(h, _)| h.payload_type != 0).collect();
    assert_eq!(events.len(), 1, "{seen:?}");
    assert_eq!(events[0].0.payload_type, 96);
    assert!(events[0].0.marker, "the marker bit kept");
    assert_eq!(events[0].1, vec![7, 10, 0, 160], "payload untouched");
    assert_eq!(
        timeout(WAIT, s.a.events().recv()).await.unwrap(),
        Some(MediaEvent::Dtmf('7')),
        "still detected on the caller leg"
    );
    // A queue that negotiated no telephone-event gets no event packets; audio still flows.
    s.b.set_dtmf_pt(None);
    s.far_a
        .send_to(&event(1, 902), s.a.local_addr())
        .await
        .unwrap();
    let later = [0x33; 160];
    s.far_a
        .send_to(
            &packet(false, 0, 903, 16320, 0xA1, &later),
            s.a.local_addr(),
        )
        .await
        .unwrap();
    let seen = until_payload(&s.far_b, &later).await;
    assert!(seen.iter().all(|(h, _)| h.payload_type == 0), "{seen:?}");
}

#[tokio::test]
async fn a_new_source_ssrc_mid_call_continues_the_stream() {
    let engine = engine(47800, 47899);
    let (s, _) = bridged(&engine, Some(101)).await;
    let first = packet(false, 0, 10, 100, 0xC1, &RELAYED);
    s.far_b.send_to(&first, s.b.local_addr()).await.unwrap();
    let before = until_payload(&s.far_a, &RELAYED).await;
    let before = before.last().unwrap().0;
    let second = packet(true, 0, 40_000, 9_999_999, 0xC2, &[0x22; 160]);
    s.far_b.send_to(&second, s.b.local_addr()).await.unwrap();
    let after = until_payload(&s.far_a, &[0x22; 160]).await;
    let after = after.last().unwrap().0;
    assert_eq!(after.ssrc, before.ssrc);
    assert_eq!(after.sequence, before.sequence.wrapping_add(1));
    assert!(after.marker);
}

#[tokio::test]
async fn rtcp_is_translated_for_the_other_leg_and_never_sent_back() {
    let engine = engine(47900, 47999);
    let (s, _) = bridged(&engine, Some(101)).await;
    let rtcp_port = |addr: SocketAddr| SocketAddr::new(addr.ip(), addr.port() + 1);
    let far_a_rtcp = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let far_b_rtcp = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    // Far end B's first RTCP packet (an empty RR) latches its RTCP address.
    let mut rr = vec![0x80, 201, 0, 1];
    rr.extend_from_slice(&0xB0u32.to_be_bytes());
    far_b_rtcp
        .send_to(&rr, rtcp_port(s.b.local_addr()))
        .await
        .unwrap();
    // Far end A relays media first, then sends an SR.
    let media = packet(false, 0, 1, 1000, 0xA1, &RELAYED);
    s.far_a.send_to(&media, s.a.local_addr()).await.unwrap();
    let media_ts = until_payload(&s.far_b, &RELAYED)
        .await
        .last()
        .unwrap()
        .0
        .timestamp;
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0xA1u32.to_be_bytes());
    sr.extend_from_slice(&[0xAA; 8]);
    sr.extend_from_slice(&1000u32.to_be_bytes());
    sr.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 160]);
    far_a_rtcp
        .send_to(&sr, rtcp_port(s.a.local_addr()))
        .await
        .unwrap();
    let got = recv(&far_b_rtcp).await;
    assert_eq!(&got[..2], &[0x80, 200]);
    assert_eq!(&got[4..8], &s.b.ssrc().to_be_bytes(), "under leg B's SSRC");
    assert_eq!(&got[8..16], &[0xAA; 8]);
    let relayed_ts = u32::from_be_bytes([got[16], got[17], got[18], got[19]]);
    assert_eq!(relayed_ts, media_ts, "in leg B's timestamp space");
    // Each leg received one packet and sent the other leg's one to its far end (B's RR went
    // to far end A's signalled RTCP port before A's SR latched its real one).
    assert_eq!(s.a.rtcp_counts(), (1, 1));
    assert_eq!(s.b.rtcp_counts(), (1, 1));
    // And the engine's totals (`/metrics`) add both legs.
    let counters = engine.counters();
    assert_eq!(counters.rtcp_received.load(Ordering::Relaxed), 2);
    assert_eq!(counters.rtcp_sent.load(Ordering::Relaxed), 2);
    let mut buf = [0u8; 64];
    let back = timeout(Duration::from_millis(200), far_a_rtcp.recv_from(&mut buf)).await;
    assert!(back.is_err(), "A's SR is not echoed back to far end A");
}

#[tokio::test]
async fn in_band_tones_are_digits_when_no_telephone_event_was_negotiated() {
    let engine = engine(48000, 48099);
    let mut stream = engine.open(prompts()).await.unwrap();
    let (far, far_addr) = far_end().await;
    stream.start(far_addr, Codec::Pcmu, None);
    let samples: Vec<i16> = (0..8 * 200)
        .map(|n| {
            let t = f64::from(n) / 8000.0;
            let tau = 2.0 * std::f64::consts::PI;
            let s = 7000.0 * ((tau * 852.0 * t).sin() + (tau * 1477.0 * t).sin());
            if n < 8 * 100 { s as i16 } else { 0 }
        })
        .collect();
    for (i, chunk) in samples.chunks(160).enumerate() {
        let seq = u16::try_from(i).unwrap();
        let p = packet(
            i == 0,
            0,
            seq,
            160 * u32::from(seq),
            0xD1,
            &Codec::Pcmu.encode(chunk),
        );
        far.send_to(&p, stream.local_addr()).await.unwrap();
    }
    let event = timeout(WAIT, stream.events().recv()).await.unwrap();
    assert_eq!(event, Some(MediaEvent::Dtmf('9')));
}
