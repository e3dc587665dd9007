//! SIP and RTP on the wire from a hand-written user agent (a UDP socket in the test): what a
//! SIPp scenario cannot easily show. 200 OK retransmitted until ACK, RTP paced to the SDP
//! address with continuous sequence numbers and timestamps, 488, and final responses to
//! methods idgate does not serve.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::{Idgate, header, wait_for_log};

const NO_IDENTIFY: &str = "[[route]]\nname = \"plain\"\nmatch = \"*\"\nidentify = false\ntarget = \"sip:queue@127.0.0.1:9\"\n";
const SIMULATOR: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n";

/// A user agent made of one UDP socket for SIP and one for RTP.
struct RawUa {
    sip: UdpSocket,
    rtp: UdpSocket,
    target: String,
}

impl RawUa {
    fn new(idgate: &Idgate) -> RawUa {
        let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        RawUa {
            sip,
            rtp,
            target: idgate.sip_addr(),
        }
    }

    fn port(&self) -> u16 {
        self.sip.local_addr().expect("addr").port()
    }

    fn send(&self, text: &str) {
        self.sip
            .send_to(text.as_bytes(), &self.target)
            .expect("send");
    }

    /// The next SIP message, or None after `limit`.
    fn recv(&self, limit: Duration) -> Option<String> {
        self.sip.set_read_timeout(Some(limit)).ok()?;
        let mut buf = [0u8; 8192];
        let (n, _) = self.sip.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Messages until one starts with `start` (bounded); returns it and how many came before.
    fn recv_until(&self, start: &str, limit: Duration) -> Option<(String, usize)> {
        let deadline = Instant::now() + limit;
        let mut skipped = 0;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let msg = self.recv(left)?;
            if msg.starts_with(start) {
                return Some((msg, skipped));
            }
            skipped += 1;
        }
        None
    }

    fn request(
        &self,
        method: &str,
        call_id: &str,
        cseq: u32,
        to_tag: &str,
        extra: &str,
        body: &str,
    ) -> String {
        format!(
            "{method} sip:5000@{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}{cseq}{method};rport\r\n\
             From: <sip:+46701234567@127.0.0.1:{port}>;tag=raw1\r\nTo: <sip:5000@{target}>{to_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:raw@127.0.0.1:{port}>\r\n\
             Max-Forwards: 70\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
            target = self.target,
            port = self.port(),
            len = body.len(),
        )
    }

    fn offer(&self, payloads: &str, rtpmaps: &str) -> String {
        let port = self.rtp.local_addr().expect("addr").port();
        format!(
            "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {payloads}\r\n{rtpmaps}"
        )
    }

    fn invite(&self, call_id: &str, offer: &str) -> String {
        self.request(
            "INVITE",
            call_id,
            1,
            "",
            "Content-Type: application/sdp\r\n",
            offer,
        )
    }
}

/// The To tag idgate put in its response (`;tag=...`), to build in-dialog requests.
fn to_tag(response: &str) -> String {
    let to = header(response, "To").expect("To");
    let tag = to.split(";tag=").nth(1).expect("a To tag");
    format!(";tag={}", tag.split(';').next().unwrap_or(tag))
}

#[test]
fn the_200_ok_is_retransmitted_until_the_ack_and_rtp_flows_with_continuous_numbering() {
    let idgate = Idgate::start(NO_IDENTIFY, SIMULATOR);
    let ua = RawUa::new(&idgate);
    let offer = ua.offer(
        "0 101",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    ua.send(&ua.invite("wire-1", &offer));

    // No ACK yet: RFC 3261 §13.3.1.4, the 2xx is sent again at T1, 2*T1, ... (500 ms, 1 s).
    let (ok, _) = ua
        .recv_until("SIP/2.0 200", Duration::from_secs(5))
        .expect("200 OK");
    let (again, _) = ua
        .recv_until("SIP/2.0 200", Duration::from_secs(3))
        .expect("a retransmitted 200 OK");
    assert_eq!(header(&ok, "CSeq"), header(&again, "CSeq"));
    assert!(ok.contains("m=audio") && ok.contains("RTP/AVP 0"), "{ok}");
    let tag = to_tag(&ok);
    ua.send(&ua.request("ACK", "wire-1", 1, &tag, "", ""));

    let packets = receive_rtp(&ua.rtp, 300, Duration::from_secs(15));
    assert!(packets.len() >= 300, "only {} RTP packets", packets.len());
    assert_continuous(&packets);
    assert!(
        packets
            .iter()
            .all(|p| p.payload_type == 0 && p.payload_len == 160),
        "PCMU, 20 ms frames"
    );
    assert!(
        packets.iter().skip(1).any(|p| p.marker),
        "a marker bit where the greeting gives way to hold music"
    );

    ua.send(&ua.request("BYE", "wire-1", 2, &tag, "", ""));
    let (bye_ok, _) = ua
        .recv_until("SIP/2.0 200", Duration::from_secs(5))
        .expect("200 to BYE");
    assert!(
        header(&bye_ok, "CSeq").is_some_and(|c| c.ends_with("BYE")),
        "{bye_ok}"
    );
}

/// `[media] raw_send`: prompts and hold music leave through the pump's raw socket, still from
/// the port idgate's answer announced (symmetric RTP), numbered as on the normal path.
#[test]
fn raw_send_rtp_comes_from_the_answered_port_with_continuous_numbering() {
    if let Err(e) = idgate::media::check_raw_send("127.0.0.1".parse().expect("ip")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to open a raw socket (run as root): {e}"
        );
        eprintln!("raw_send test not run: no raw socket here ({e}); CI runs it as root");
        return;
    }
    let idgate = Idgate::start_with_media(NO_IDENTIFY, SIMULATOR, "raw_send = true\n");
    assert!(
        idgate
            .metric("idgate_media_raw_send_pumps")
            .is_some_and(|n| n >= 1.0)
    );
    let ua = RawUa::new(&idgate);
    ua.send(&ua.invite("wire-raw", &ua.offer("0", "a=rtpmap:0 PCMU/8000\r\n")));
    let (ok, _) = ua
        .recv_until("SIP/2.0 200", Duration::from_secs(5))
        .expect("200 OK");
    let tag = to_tag(&ok);
    ua.send(&ua.request("ACK", "wire-raw", 1, &tag, "", ""));
    let answered: u16 = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|m| m.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("an m=audio port in the answer");
    let packets = receive_rtp(&ua.rtp, 100, Duration::from_secs(10));
    assert!(packets.len() >= 100, "only {} RTP packets", packets.len());
    assert!(
        packets.iter().all(|p| p.from.port() == answered),
        "every packet from the answered port {answered}"
    );
    assert_continuous(&packets);
    ua.send(&ua.request("BYE", "wire-raw", 2, &tag, "", ""));
    ua.recv_until("SIP/2.0 200", Duration::from_secs(5))
        .expect("200 to BYE");
}

#[test]
fn an_offer_without_pcmu_or_pcma_gets_488() {
    let idgate = Idgate::start(NO_IDENTIFY, SIMULATOR);
    let ua = RawUa::new(&idgate);
    let offer = ua.offer(
        "9 101",
        "a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    ua.send(&ua.invite("wire-488", &offer));
    let (answer, _) = ua
        .recv_until("SIP/2.0 488", Duration::from_secs(5))
        .expect("488");
    assert!(
        header(&answer, "CSeq").is_some_and(|c| c.ends_with("INVITE")),
        "{answer}"
    );
}

/// `[media] srtp` on the wire: "required" refuses a plain offer and answers an SDES one with
/// RTP/SAVP and a key of its own; "off" refuses the SDES offer.
#[test]
fn srtp_required_and_off_answer_offers_as_configured() {
    const KEY: &str = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let secure = |ua: &RawUa| {
        ua.offer("0 8", "").replace("RTP/AVP", "RTP/SAVP")
            + &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY}\r\n")
    };

    let required = Idgate::start_with_media(NO_IDENTIFY, SIMULATOR, "srtp = \"required\"\n");
    let ua = RawUa::new(&required);
    ua.send(&ua.invite("wire-srtp-plain", &ua.offer("0 8", "")));
    ua.recv_until("SIP/2.0 488", Duration::from_secs(5))
        .expect("a plain offer refused with 488 when SRTP is required");
    ua.send(&ua.invite("wire-srtp-sdes", &secure(&ua)));
    let (ok, _) = ua
        .recv_until("SIP/2.0 200", Duration::from_secs(5))
        .expect("the SDES offer answered");
    assert!(ok.contains("RTP/SAVP 0"), "{ok}");
    let crypto = ok
        .lines()
        .find(|l| l.starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"))
        .unwrap_or_else(|| panic!("an a=crypto answer with the offer's tag and suite: {ok}"));
    assert!(!crypto.contains(KEY), "idgate's key is its own: {crypto}");

    let off = Idgate::start_with_media(NO_IDENTIFY, SIMULATOR, "srtp = \"off\"\n");
    let ua = RawUa::new(&off);
    ua.send(&ua.invite("wire-srtp-off", &secure(&ua)));
    ua.recv_until("SIP/2.0 488", Duration::from_secs(5))
        .expect("an SDES offer refused with 488 when SRTP is off");
}

#[test]
fn methods_idgate_does_not_serve_get_sane_final_responses() {
    let idgate = Idgate::start(NO_IDENTIFY, SIMULATOR);
    let ua = RawUa::new(&idgate);
    let cases = [
        ("REGISTER", "SIP/2.0 405"),
        ("SUBSCRIBE", "SIP/2.0 405"),
        ("MESSAGE", "SIP/2.0 405"),
        ("BYE", "SIP/2.0 481"),
        ("INFO", "SIP/2.0 481"),
        ("CANCEL", "SIP/2.0 481"),
    ];
    for (i, (method, expected)) in cases.into_iter().enumerate() {
        let call_id = format!("wire-method-{i}");
        ua.send(&ua.request(method, &call_id, 1, "", "", ""));
        let answer = ua
            .recv(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no answer to {method}"));
        assert!(answer.starts_with(expected), "{method}: {answer}");
        if expected.ends_with("405") {
            assert!(
                header(&answer, "Allow").is_some_and(|a| a.contains("INVITE")),
                "{answer}"
            );
        }
    }
}

#[test]
fn keypad_digits_sent_as_rfc4733_events_identify_an_anonymous_caller() {
    let routes = "[[route]]\nname = \"keypad\"\nmatch = \"*\"\ndirectory = false\nphone_push = false\ntarget = \"sip:queue@127.0.0.1:9\"\n";
    let idgate = Idgate::start(routes, SIMULATOR);
    let ua = RawUa::new(&idgate);
    let offer = ua.offer(
        "0 101",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    let invite = ua
        .invite("wire-keypad", &offer)
        .replace("sip:+46701234567@", "sip:anonymous@");
    ua.send(&invite);
    let (ok, _) = ua
        .recv_until("SIP/2.0 200", Duration::from_secs(5))
        .expect("200 OK");
    let tag = to_tag(&ok);
    ua.send(&ua.request("ACK", "wire-keypad", 1, &tag, "", ""));

    // Keys are taken once the flow collects digits. The first marker bit after the stream's
    // start is the greeting giving way to silence, which comes before the flow has moved on
    // (under load by long enough for every key to be sent too early): wait for the flow's own
    // word, then send to the address the marker came from.
    let remote =
        wait_for_marker(&ua.rtp, Duration::from_secs(15)).expect("the end of the greeting");
    let log = wait_for_log(&idgate, "state=\"collecting_digits\"");
    assert!(log.contains("state=\"collecting_digits\""), "{log}");
    send_rfc4733_digits(&ua.rtp, remote, "8112289874#");

    let log = wait_for_log(&idgate, "status=\"verified\"");
    assert!(log.contains("status=\"verified\""), "{log}");
    assert!(
        !log.contains("8112289874"),
        "typed digits never reach the log"
    );
    ua.send(&ua.request("BYE", "wire-keypad", 2, &tag, "", ""));
}

/// Waits for the first RTP packet with the marker bit after the stream's first packet; returns
/// idgate's RTP address.
fn wait_for_marker(socket: &UdpSocket, limit: Duration) -> Option<std::net::SocketAddr> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 2048];
    let mut first = true;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let (n, from) = socket.recv_from(&mut buf).ok()?;
        if n >= 12 && buf[1] & 0x80 != 0 && !first {
            return Some(from);
        }
        first = false;
    }
    None
}

/// Each key as an RFC 4733 event: three packets while pressed, three end packets (§2.5.1.4),
/// one RTP timestamp per event, 100 ms apart.
fn send_rfc4733_digits(socket: &UdpSocket, to: std::net::SocketAddr, keys: &str) {
    let mut seq: u16 = 1000;
    for (i, key) in keys.chars().enumerate() {
        let event = match key {
            '*' => 10,
            '#' => 11,
            d => d.to_digit(10).expect("a keypad key") as u8,
        };
        let timestamp = 8000 + i as u32 * 1600;
        for (n, end) in [
            (1u16, false),
            (2, false),
            (3, false),
            (4, true),
            (4, true),
            (4, true),
        ] {
            let mut packet = vec![0x80, 101 | if n == 1 { 0x80 } else { 0 }];
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&timestamp.to_be_bytes());
            packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            packet.extend_from_slice(&[event, if end { 0x8a } else { 0x0a }]);
            packet.extend_from_slice(&(n * 160).to_be_bytes());
            socket.send_to(&packet, to).expect("send RTP");
            seq = seq.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The RTP fields the tests check.
#[derive(Debug)]
struct Rtp {
    from: std::net::SocketAddr,
    payload_type: u8,
    marker: bool,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    payload_len: usize,
}

fn receive_rtp(socket: &UdpSocket, count: usize, limit: Duration) -> Vec<Rtp> {
    let deadline = Instant::now() + limit;
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    while packets.len() < count {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            break;
        };
        if n >= 12 && buf[0] >> 6 == 2 {
            packets.push(Rtp {
                from,
                payload_type: buf[1] & 0x7f,
                marker: buf[1] & 0x80 != 0,
                seq: u16::from_be_bytes([buf[2], buf[3]]),
                timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                payload_len: n - 12,
            });
        }
    }
    packets
}

/// One SSRC, sequence +1 and timestamp +160 per packet (loopback loses nothing).
fn assert_continuous(packets: &[Rtp]) {
    for pair in packets.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(a.ssrc, b.ssrc, "one SSRC for the whole call");
        assert_eq!(
            b.seq,
            a.seq.wrapping_add(1),
            "sequence continuous: {a:?} -> {b:?}"
        );
        assert_eq!(
            b.timestamp,
            a.timestamp.wrapping_add(160),
            "timestamps on the 20 ms grid: {a:?} -> {b:?}"
        );
    }
}
