//! SDP offer/answer (RFC 3264) for G.711 audio with RFC 4733 telephone-events, and SDES-SRTP
//! keys (RFC 4568 `a=crypto`, see `srtp`) on `RTP/SAVP` streams as `[media] srtp` allows.
//!
//! Parsing uses `rtc-sdp`. Checked against SIPp's, baresip's and Asterisk's offers, LF or CRLF
//! line ends, IPv4 and IPv6: it parses them. It is strict about RFC 4566 line order and
//! required lines, so it rejects (as `Malformed`) offers without `s=` or `t=`, with session
//! `a=` before `c=`, with unknown line types, or with an `o=` session id above 2^64; those
//! violate RFC 4566 and have not been seen from the peers idgate targets. The answer and offer
//! are written here: they are a fixed ten-line template.

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use rtc_sdp::SessionDescription;
use rtc_sdp::description::common::ConnectionInformation;
use rtc_sdp::description::media::MediaDescription;
use thiserror::Error;

use super::g711::Codec;
use super::srtp::{self, Sdes, SrtpPolicy};

/// The packetisation interval idgate sends and asks for, in milliseconds.
pub const PTIME_MS: u32 = 20;

/// Why an SDP could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    /// The SDP does not parse, or lacks a usable connection address (the peer's fault; the SIP
    /// layer answers 400 or 488).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No active audio stream offers PCMU or PCMA over RTP/AVP (the SIP layer answers 488 Not
    /// Acceptable Here, RFC 3264 §6).
    #[error("no common codec")]
    NoCommonCodec,
    /// An audio stream with a common codec was offered, but none meets `[media] srtp`: plain
    /// RTP when SRTP is required, `RTP/SAVP` when SRTP is off, or `RTP/SAVP` without a usable
    /// `a=crypto` line (488, RFC 4568 §7.1.2). The text says which, for the log.
    #[error("no audio stream meets media.srtp: {0}")]
    Security(&'static str),
}

/// The result of answering an offer: the answer to send and what was agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The SDP answer.
    pub sdp: String,
    /// The codec both sides use, the first of PCMU/PCMA in the offer's order.
    pub codec: Codec,
    /// Where to send RTP: the `c=` address (media level, else session level) and `m=` port.
    pub remote: SocketAddr,
    /// The offer's `telephone-event/8000` payload type, if it offered one.
    pub dtmf_pt: Option<u8>,
    /// The offer's `a=ptime` (20 if absent). idgate itself always sends 20 ms frames.
    pub ptime: u32,
    /// The SDES-SRTP keys when the chosen stream is `RTP/SAVP` (`None`: plain RTP).
    pub srtp: Option<Sdes>,
}

/// What a remote answer agreed to (see [`parse_answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// The codec, always the one offered.
    pub codec: Codec,
    /// Where to send RTP.
    pub remote: SocketAddr,
    /// The answer's `telephone-event/8000` payload type, if any.
    pub dtmf_pt: Option<u8>,
    /// The answer's `a=ptime` (20 if absent).
    pub ptime: u32,
}

/// Answers an offer (RFC 3264 §6): accepts the first usable audio stream with PCMU or PCMA
/// (in the offer's order) plus telephone-event when offered, and rejects other streams with
/// port 0, keeping the offer's m-line order. Whether an `RTP/SAVP` or a plain stream is usable
/// is `policy`'s call; an `RTP/SAVP` stream is answered with its first usable `a=crypto` line's
/// tag and suite and a fresh key of ours.
pub fn answer(
    offer: &str,
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    policy: SrtpPolicy,
) -> Result<Negotiated, SdpError> {
    let desc = parse(offer)?;
    let mut refused = None;
    let (index, codec, srtp) = desc
        .media_descriptions
        .iter()
        .enumerate()
        .find_map(|(i, m)| {
            let codec = first_codec(m)?;
            match security(m, policy) {
                Ok(srtp) => Some((i, codec, srtp)),
                Err(why) => {
                    refused.get_or_insert(why);
                    None
                }
            }
        })
        .ok_or(refused.map_or(SdpError::NoCommonCodec, SdpError::Security))?;
    let media = &desc.media_descriptions[index];
    let remote = remote_addr(&desc, media)?;
    let dtmf_pt = telephone_event_pt(media);
    let mut sdp = session_header(local_ip, session_id);
    for (i, m) in desc.media_descriptions.iter().enumerate() {
        if i == index {
            audio_section(&mut sdp, local_port, &proto(m), codec, dtmf_pt);
            if let Some(sdes) = &srtp {
                let _ = write!(sdp, "a=crypto:{}\r\n", sdes.answer_value());
            }
        } else {
            let first = m.media_name.formats.first().map_or("0", String::as_str);
            let _ = write!(sdp, "m={} 0 {} {first}\r\n", m.media_name.media, proto(m));
        }
    }
    Ok(Negotiated {
        sdp,
        codec,
        remote,
        dtmf_pt,
        ptime: ptime(media),
        srtp,
    })
}

/// Whether a stream meets the policy: `Ok(None)` plain RTP, `Ok(Some)` SRTP with the keys.
fn security(media: &MediaDescription, policy: SrtpPolicy) -> Result<Option<Sdes>, &'static str> {
    let secure = matches!(proto(media).as_str(), "RTP/SAVP" | "RTP/SAVPF");
    match (secure, policy) {
        (false, SrtpPolicy::Required) => Err("plain RTP offered, SRTP required"),
        (false, _) => Ok(None),
        (true, SrtpPolicy::Off) => Err("RTP/SAVP offered, SRTP off"),
        (true, _) => {
            let offered = media
                .attributes
                .iter()
                .filter(|a| a.key == "crypto")
                .filter_map(|a| a.value.as_deref());
            srtp::negotiate(offered)
                .map(Some)
                .ok_or("RTP/SAVP without a usable a=crypto line")
        }
    }
}

/// Builds an offer for the queue leg: exactly `codec` (the caller's, so the relay can pass
/// packets through untouched) plus telephone-event with the caller's payload type.
pub fn offer(
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    codec: Codec,
    dtmf_pt: Option<u8>,
) -> String {
    let mut sdp = session_header(local_ip, session_id);
    audio_section(&mut sdp, local_port, "RTP/AVP", codec, dtmf_pt);
    sdp
}

/// Reads the queue's answer to [`offer`]: its first audio stream must be active and accept the
/// offered codec.
pub fn parse_answer(answer: &str, offered: Codec) -> Result<RemoteMedia, SdpError> {
    let desc = parse(answer)?;
    let media = desc
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio")
        .ok_or(SdpError::NoCommonCodec)?;
    let pt = offered.payload_type().to_string();
    if media.media_name.port.value == 0 || !media.media_name.formats.contains(&pt) {
        return Err(SdpError::NoCommonCodec);
    }
    Ok(RemoteMedia {
        codec: offered,
        remote: remote_addr(&desc, media)?,
        dtmf_pt: telephone_event_pt(media),
        ptime: ptime(media),
    })
}

fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .map_err(|e| SdpError::Malformed(e.to_string()))
}

/// The first of PCMU/PCMA in an active RTP/AVP(F) or RTP/SAVP(F) audio stream, in the offer's
/// order. Only the static payload types 0 and 8 are recognised (RFC 3551), without `a=rtpmap`
/// or with one that names that same encoding: a static type an `a=rtpmap` gives to another
/// encoding (`a=rtpmap:0 telephone-event/8000`) is not G.711.
fn first_codec(media: &MediaDescription) -> Option<Codec> {
    let name = &media.media_name;
    let rtp_avp = matches!(
        proto(media).as_str(),
        "RTP/AVP" | "RTP/AVPF" | "RTP/SAVP" | "RTP/SAVPF"
    );
    if name.media != "audio" || name.port.value == 0 || !rtp_avp {
        return None;
    }
    let codecs = media.codecs();
    name.formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| Codec::from_payload_type(pt).map(|codec| (pt, codec)))
        .find(|(pt, codec)| {
            codecs
                .get(pt)
                .is_none_or(|c| c.name.eq_ignore_ascii_case(codec.encoding_name()))
        })
        .map(|(_, codec)| codec)
}

fn proto(media: &MediaDescription) -> String {
    media.media_name.protos.join("/")
}

/// The payload type of `a=rtpmap:<pt> telephone-event/8000` among the stream's formats: never
/// one of RFC 3551's static audio/video types (0-34), which could also carry the call's audio,
/// nor 72-76 (RTCP packet types); 96-127 in practice, the unassigned 35-71 and 77-95 tolerated.
fn telephone_event_pt(media: &MediaDescription) -> Option<u8> {
    let codecs = media.codecs();
    media
        .media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|pt| matches!(pt, 35..=71 | 77..=127))
        .find(|pt| {
            codecs.get(pt).is_some_and(|c| {
                c.name.eq_ignore_ascii_case("telephone-event") && c.clock_rate == 8000
            })
        })
}

fn ptime(media: &MediaDescription) -> u32 {
    media
        .attribute("ptime")
        .flatten()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&p| p > 0)
        .unwrap_or(PTIME_MS)
}

/// The media-level `c=` (else the session-level one) with the `m=` port (RFC 4566 §5.7).
fn remote_addr(
    desc: &SessionDescription,
    media: &MediaDescription,
) -> Result<SocketAddr, SdpError> {
    let connection: Option<&ConnectionInformation> = media
        .connection_information
        .as_ref()
        .or(desc.connection_information.as_ref());
    let address = connection
        .and_then(|c| c.address.as_ref())
        .ok_or_else(|| SdpError::Malformed("no connection address (c=)".into()))?;
    let ip: IpAddr = address.address.parse().map_err(|_| {
        SdpError::Malformed(format!("c= address {:?} is not an IP", address.address))
    })?;
    let port = u16::try_from(media.media_name.port.value)
        .map_err(|_| SdpError::Malformed("m= port out of range".into()))?;
    Ok(SocketAddr::new(ip, port))
}

fn session_header(ip: IpAddr, session_id: u64) -> String {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=idgate {session_id} {session_id} IN {family} {ip}\r\ns=idgate\r\n\
         c=IN {family} {ip}\r\nt=0 0\r\n"
    )
}

fn audio_section(sdp: &mut String, port: u16, proto: &str, codec: Codec, dtmf_pt: Option<u8>) {
    let pt = codec.payload_type();
    let name = codec.encoding_name();
    match dtmf_pt {
        Some(dtmf) => {
            let _ = write!(
                sdp,
                "m=audio {port} {proto} {pt} {dtmf}\r\na=rtpmap:{pt} {name}/8000\r\n\
                 a=rtpmap:{dtmf} telephone-event/8000\r\na=fmtp:{dtmf} 0-15\r\n"
            );
        }
        None => {
            let _ = write!(
                sdp,
                "m=audio {port} {proto} {pt}\r\na=rtpmap:{pt} {name}/8000\r\n"
            );
        }
    }
    let _ = write!(sdp, "a=ptime:{PTIME_MS}\r\na=sendrecv\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::srtp::CryptoSuite;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

    /// The default policy (`optional`): what every plain-RTP test below runs under.
    fn answer(o: &str, ip: IpAddr, port: u16, id: u64) -> Result<Negotiated, SdpError> {
        super::answer(o, ip, port, id, SrtpPolicy::Optional)
    }

    /// SIPp's built-in `uac` scenario offer.
    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    /// baresip-like: many codecs, G.711 after opus and G.722, LF line ends.
    const BARESIP: &str = "v=0\no=- 1628151616 1396640391 IN IP4 192.168.1.10\ns=-\n\
        c=IN IP4 192.168.1.10\nt=0 0\nm=audio 10050 RTP/AVP 96 9 8 0 101\nb=AS:64\n\
        a=rtpmap:96 opus/48000/2\na=fmtp:96 stereo=1;sprop-stereo=1\na=rtpmap:9 G722/8000\n\
        a=rtpmap:8 PCMA/8000\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n\
        a=fmtp:101 0-15\na=sendrecv\na=label:1\na=rtcp-rsize\na=ptime:20\n";

    /// Asterisk-style: PCMA first, GSM, telephone-event 0-16, maxptime.
    const ASTERISK: &str = "v=0\r\no=- 1234567890 1234567890 IN IP4 10.0.0.1\r\ns=Asterisk\r\n\
        c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 17000 RTP/AVP 8 0 3 101\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:3 GSM/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:30\r\n\
        a=maxptime:150\r\na=sendrecv\r\n";

    /// rtpmaps for 0, 8 and 101 (the common softphone form).
    const RTPMAP: &str = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=call\r\nc=IN IP4 203.0.113.5\r\n\
        t=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    fn offer_with(media: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n{media}"
        )
    }

    #[test]
    fn sipp_offer() {
        let n = answer(SIPP, LOCAL, 20000, 42).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.remote, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(n.dtmf_pt, None);
        assert_eq!(n.ptime, 20);
        assert!(
            n.sdp
                .contains("m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        );
        assert!(n.sdp.contains("c=IN IP4 192.0.2.10\r\n"));
        assert!(n.sdp.contains("a=sendrecv\r\n") && n.sdp.contains("a=ptime:20\r\n"));
        assert!(!n.sdp.contains("telephone-event"));
    }

    #[test]
    fn baresip_offer_prefers_the_offers_order() {
        let n = answer(BARESIP, LOCAL, 20002, 7).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.remote, "192.168.1.10:10050".parse().unwrap());
        assert_eq!(n.dtmf_pt, Some(101));
        assert!(n.sdp.contains("m=audio 20002 RTP/AVP 8 101\r\n"));
        assert!(
            n.sdp
                .contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n")
        );
    }

    #[test]
    fn asterisk_offer() {
        let n = answer(ASTERISK, LOCAL, 20004, 7).unwrap();
        assert_eq!((n.codec, n.dtmf_pt, n.ptime), (Codec::Pcma, Some(101), 30));
        assert!(n.sdp.contains("a=ptime:20\r\n"));
    }

    #[test]
    fn rtpmap_offer_and_static_types_without_rtpmap() {
        let n = answer(RTPMAP, LOCAL, 20006, 7).unwrap();
        assert_eq!((n.codec, n.dtmf_pt), (Codec::Pcmu, Some(101)));
        let bare = offer_with("m=audio 4000 RTP/AVP 18 8 0\r\n");
        let n = answer(&bare, LOCAL, 20006, 7).unwrap();
        assert_eq!((n.codec, n.dtmf_pt), (Codec::Pcma, None));
    }

    /// Found by fuzz/run sdp_offer_answer: PT 0 given to telephone-event made idgate answer
    /// PCMU and DTMF on the same payload type.
    #[test]
    fn a_static_type_given_to_another_encoding_is_neither_audio_nor_dtmf() {
        let o = offer_with(
            "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 telephone-event/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        );
        let n = answer(&o, LOCAL, 1234, 1).unwrap();
        assert_eq!((n.codec, n.dtmf_pt), (Codec::Pcma, Some(101)));
        let again = answer(&n.sdp, LOCAL, 1236, 2).unwrap();
        assert_eq!((again.codec, again.dtmf_pt), (Codec::Pcma, Some(101)));
        let only = offer_with("m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 telephone-event/8000\r\n");
        assert_eq!(answer(&only, LOCAL, 1, 1), Err(SdpError::NoCommonCodec));
    }

    #[test]
    fn dynamic_telephone_event_type_is_echoed() {
        let o = offer_with("m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n");
        let n = answer(&o, LOCAL, 1234, 1).unwrap();
        assert_eq!(n.dtmf_pt, Some(96));
        assert!(n.sdp.contains("m=audio 1234 RTP/AVP 0 96\r\n"));
        let wideband =
            offer_with("m=audio 4000 RTP/AVP 0 97\r\na=rtpmap:97 telephone-event/16000\r\n");
        assert_eq!(answer(&wideband, LOCAL, 1234, 1).unwrap().dtmf_pt, None);
    }

    #[test]
    fn no_common_codec() {
        let g722 = offer_with("m=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n");
        let video = offer_with("m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
        let port0 = offer_with("m=audio 0 RTP/AVP 0 8\r\n");
        let srtp_g722 = offer_with(&format!("m=audio 4000 RTP/SAVP 9\r\na=crypto:{KEY80}\r\n"));
        let dtls = offer_with("m=audio 4000 UDP/TLS/RTP/SAVP 0\r\n");
        for o in [g722, video, port0, srtp_g722, dtls] {
            assert_eq!(answer(&o, LOCAL, 1, 1), Err(SdpError::NoCommonCodec), "{o}");
        }
    }

    #[test]
    fn other_streams_are_rejected_in_order() {
        let o = offer_with(
            "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\nm=audio 4000 RTP/AVP 0\r\n",
        );
        let n = answer(&o, LOCAL, 1000, 1).unwrap();
        let video = n.sdp.find("m=video 0 RTP/AVP 96\r\n").unwrap();
        let audio = n.sdp.find("m=audio 1000 RTP/AVP 0\r\n").unwrap();
        assert!(video < audio);
        assert_eq!(n.remote.port(), 4000);
    }

    #[test]
    fn media_level_connection_overrides_session_level() {
        let o = offer_with("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 198.51.100.99\r\n");
        assert_eq!(
            answer(&o, LOCAL, 1, 1).unwrap().remote,
            "198.51.100.99:4000".parse().unwrap()
        );
        let no_session_c = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 8\r\nc=IN IP4 1.2.3.4\r\n";
        assert_eq!(
            answer(no_session_c, LOCAL, 1, 1).unwrap().codec,
            Codec::Pcma
        );
    }

    #[test]
    fn ipv6() {
        let o = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let local = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let n = answer(o, local, 5000, 9).unwrap();
        assert_eq!(n.remote, "[::1]:4000".parse().unwrap());
        assert!(
            n.sdp.contains("o=idgate 9 9 IN IP6 ::1\r\n") && n.sdp.contains("c=IN IP6 ::1\r\n")
        );
    }

    #[test]
    fn malformed() {
        let no_c = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let host = offer_with("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 media.example.com\r\n");
        for o in ["", "hello", "v=0\r\nm=audio 1 RTP/AVP 0\r\n", no_c, &host] {
            assert!(
                matches!(answer(o, LOCAL, 1, 1), Err(SdpError::Malformed(_))),
                "{o}"
            );
        }
    }

    #[test]
    fn offer_then_parse_answer() {
        let ours = offer(LOCAL, 7000, 5, Codec::Pcma, Some(101));
        assert!(ours.contains("m=audio 7000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"));
        // The queue answers our offer; its answer is then parsed.
        let theirs = answer(&ours, "10.1.1.1".parse().unwrap(), 9000, 6).unwrap();
        let media = parse_answer(&theirs.sdp, Codec::Pcma).unwrap();
        assert_eq!(media.remote, "10.1.1.1:9000".parse().unwrap());
        assert_eq!(
            (media.codec, media.dtmf_pt, media.ptime),
            (Codec::Pcma, Some(101), 20)
        );
        assert_eq!(
            parse_answer(&theirs.sdp, Codec::Pcmu),
            Err(SdpError::NoCommonCodec)
        );
        let rejected = offer_with("m=audio 0 RTP/AVP 8\r\n");
        assert_eq!(
            parse_answer(&rejected, Codec::Pcma),
            Err(SdpError::NoCommonCodec)
        );
        let plain = offer(LOCAL, 7000, 5, Codec::Pcmu, None);
        assert!(!plain.contains("telephone-event") && plain.contains("a=sendrecv\r\n"));
    }

    /// RFC 4568 §8.1's example key (30 bytes of base64).
    const KEY80: &str =
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";
    const INLINE: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn savp(crypto: &[&str]) -> String {
        let mut m =
            "m=audio 4000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n".to_owned();
        for c in crypto {
            m.push_str(&format!("a=crypto:{c}\r\n"));
        }
        offer_with(&m)
    }

    fn with(o: &str, policy: SrtpPolicy) -> Result<Negotiated, SdpError> {
        super::answer(o, LOCAL, 1000, 1, policy)
    }

    /// The answer's `a=crypto` value.
    fn answered_crypto(n: &Negotiated) -> &str {
        n.sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=crypto:"))
            .unwrap()
    }

    #[test]
    fn savp_offer_is_answered_with_savp_our_key_and_the_echoed_tag() {
        let line = format!("7 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}");
        let n = with(&savp(&[&line]), SrtpPolicy::Optional).unwrap();
        assert!(
            n.sdp.contains("m=audio 1000 RTP/SAVP 0 101\r\n"),
            "{}",
            n.sdp
        );
        let sdes = n.srtp.clone().unwrap();
        assert_eq!(
            (sdes.tag, sdes.suite),
            (7, CryptoSuite::AesCm128HmacSha1_80)
        );
        assert_eq!(sdes.remote.to_inline(), INLINE);
        let ours = answered_crypto(&n);
        let key = ours
            .strip_prefix("7 AES_CM_128_HMAC_SHA1_80 inline:")
            .unwrap();
        assert_eq!(key.len(), 40, "{ours}");
        assert_ne!(key, INLINE, "the answer carries our own key");
        assert_eq!(key, sdes.local.to_inline());
        assert_eq!(n.sdp.matches("a=crypto:").count(), 1);
        // A second answer to the same offer has a fresh key.
        let again = with(&savp(&[&line]), SrtpPolicy::Required).unwrap();
        assert_ne!(answered_crypto(&again), ours);
    }

    #[test]
    fn the_first_usable_crypto_line_wins_and_unusable_ones_are_skipped() {
        let offer = savp(&[
            &format!("1 AES_256_CM_HMAC_SHA1_80 inline:{INLINE}{INLINE}"),
            KEY80, // MKI |1:4: refused
            "3 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",
            &format!("4 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}|2^31"),
            &format!("5 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"),
        ]);
        let n = with(&offer, SrtpPolicy::Optional).unwrap();
        let sdes = n.srtp.clone().unwrap();
        assert_eq!(
            (sdes.tag, sdes.suite),
            (4, CryptoSuite::AesCm128HmacSha1_32)
        );
        assert!(answered_crypto(&n).starts_with("4 AES_CM_128_HMAC_SHA1_32 inline:"));
    }

    #[test]
    fn savp_without_a_usable_crypto_line_is_refused() {
        let none = savp(&[]);
        let bad = savp(&[KEY80, "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!"]);
        for o in [none, bad] {
            assert!(
                matches!(with(&o, SrtpPolicy::Optional), Err(SdpError::Security(_))),
                "{o}"
            );
        }
    }

    #[test]
    fn policy_off_refuses_savp_and_required_refuses_plain_rtp() {
        let secure = savp(&[&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}")]);
        assert_eq!(
            with(&secure, SrtpPolicy::Off),
            Err(SdpError::Security("RTP/SAVP offered, SRTP off"))
        );
        assert_eq!(
            with(SIPP, SrtpPolicy::Required),
            Err(SdpError::Security("plain RTP offered, SRTP required"))
        );
        assert_eq!(with(SIPP, SrtpPolicy::Off).unwrap().srtp, None);
        assert_eq!(with(SIPP, SrtpPolicy::Optional).unwrap().srtp, None);
        assert!(with(&secure, SrtpPolicy::Required).unwrap().srtp.is_some());
        // Plain answers never carry a=crypto.
        assert!(
            !with(SIPP, SrtpPolicy::Optional)
                .unwrap()
                .sdp
                .contains("crypto")
        );
    }

    #[test]
    fn with_a_plain_and_a_secure_stream_the_policy_picks() {
        let both = offer_with(&format!(
            "m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/SAVP 0\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}\r\n"
        ));
        let optional = with(&both, SrtpPolicy::Optional).unwrap();
        assert_eq!(
            (optional.remote.port(), optional.srtp.is_none()),
            (4000, true)
        );
        assert!(optional.sdp.contains("m=audio 0 RTP/SAVP 0\r\n"));
        let required = with(&both, SrtpPolicy::Required).unwrap();
        assert_eq!(
            (required.remote.port(), required.srtp.is_some()),
            (4002, true)
        );
        assert!(
            required
                .sdp
                .contains("m=audio 0 RTP/AVP 0\r\nm=audio 1000 RTP/SAVP 0\r\n")
        );
    }

    #[test]
    fn keys_never_show_in_debug() {
        let n = with(
            &savp(&[&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}")]),
            SrtpPolicy::Optional,
        )
        .unwrap();
        let sdes = n.srtp.unwrap();
        let shown = format!("{sdes:?}");
        assert!(
            !shown.contains(INLINE) && !shown.contains(&sdes.local.to_inline()),
            "{shown}"
        );
        assert!(shown.contains("redacted"), "{shown}");
    }
}
