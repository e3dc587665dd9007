//! idgate's UDP socket under rsipstack: every datagram passes [`intake`] before the stack reads
//! it, and nothing is ever sent to a broadcast, multicast or unspecified address.
//!
//! Why a socket and not a patch or a second listener: rsipstack 0.7.14 takes any
//! `platform::net::UdpSocket` (`UdpConnection::from_socket`), so the gate sits exactly where the
//! stack would otherwise drop a malformed datagram in silence, the stack keeps its own receive
//! loop, transactions and retransmissions, and no rsipstack type leaves the `sip` module.
//! A refused request is answered here, to the datagram's source address and port: the same place
//! rsipstack answers every UDP request, since it always adds `received` and `rport` when the Via
//! differs from the source (RFC 3261 §18.2.2, RFC 3581). So a forged or foreign Via host
//! (`192.0.2.x`, `example.com`) is never a destination.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use rsipstack::platform::net::UdpSocket as StackUdpSocket;
use tracing::{debug, warn};

use super::intake::{Carrier, Verdict, inspect};

/// A tokio UDP socket with the intake gate on receive and the destination guard on send.
pub(super) struct GatedUdpSocket {
    socket: tokio::net::UdpSocket,
}

impl GatedUdpSocket {
    pub(super) fn new(socket: tokio::net::UdpSocket) -> Self {
        GatedUdpSocket { socket }
    }

    /// Receives until a datagram passes the gate; answers or drops the others.
    async fn recv_checked(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        loop {
            let (len, source) = self.socket.recv_from(buf).await?;
            let datagram = &buf[..len];
            // Keep-alives (CRLF, RFC 5626 §3.5.1) are the stack's to answer.
            if datagram.iter().all(u8::is_ascii_whitespace) {
                return Ok((len, source));
            }
            match inspect(datagram, source, Carrier::Udp) {
                Verdict::Pass(_) => return Ok((len, source)),
                Verdict::Refuse {
                    status,
                    reason,
                    response,
                } => {
                    debug!(%source, status, %reason, "malformed SIP request refused");
                    if let Err(e) = self.send_guarded(&response, source).await {
                        debug!(%source, error = %e, "could not send a refusal");
                    }
                }
                Verdict::Discard(reason) => {
                    debug!(%source, %reason, "malformed SIP message discarded");
                }
            }
        }
    }

    async fn send_guarded(&self, buf: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        if !deliverable(to) {
            warn!(destination = %to, "SIP message to a non-unicast address not sent");
            return Ok(buf.len());
        }
        self.socket.send_to(buf, to).await
    }
}

/// Where a response the stack sends over UDP must go when its top Via carries `received` and
/// `rport`: that address and port (RFC 3261 §18.2.2, RFC 3581 §4). rsipstack 0.7.14 writes an
/// IPv6 `received` in brackets (`received=[::1]`, the form RFC 5118 §4.5 says to accept) and
/// then cannot read it back, so it would send the response to the Via's sent-by host, an
/// address the caller chose. Only the stack's responses come here: it strips a caller's own
/// `received` and `rport` and writes both only from the datagram's source.
fn stack_response_destination(message: &[u8]) -> Option<SocketAddr> {
    if !message.starts_with(b"SIP/2.0 ") {
        return None;
    }
    let head = std::str::from_utf8(message)
        .ok()?
        .split("\r\n\r\n")
        .next()?;
    let via = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v")).then_some(value)
    })?;
    let top = via.split(',').next()?;
    let param = |key: &str| {
        top.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
        })
    };
    let received = param("received")?;
    let ip = received
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = param("rport")?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The response with its top Via's IPv6 `received` written as RFC 3261 §20.42 has it
/// (`received=::1`), where rsipstack 0.7.14 writes `received=[[::1]]`; `None` when there is
/// nothing to rewrite (IPv4, no `received`, a request). A v4-mapped address is written as the
/// IPv4 address it is.
fn normalized_received(message: &[u8]) -> Option<Vec<u8>> {
    if !message.starts_with(b"SIP/2.0 ") {
        return None;
    }
    let text = std::str::from_utf8(message).ok()?;
    let head_end = text.find("\r\n\r\n")?;
    let via_start = text[..head_end]
        .find("\r\nVia:")
        .or_else(|| text[..head_end].find("\r\nv:"))?;
    let line_end = via_start + 2 + text[via_start + 2..].find("\r\n")?;
    let top_end = text[via_start..line_end]
        .find(',')
        .map_or(line_end, |i| via_start + i);
    let value_start =
        via_start + text[via_start..top_end].find(";received=[")? + ";received=".len();
    let value_end = text[value_start..top_end]
        .find([';', ' ', '\t'])
        .map_or(top_end, |i| value_start + i);
    let ip = text[value_start..value_end]
        .trim_start_matches('[')
        .trim_end_matches(']');
    // On a dual-stack socket an IPv4 peer's source is v4-mapped: it is told its IPv4 address.
    let mapped = ip
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .and_then(|v6| v6.to_ipv4_mapped());
    let ip = mapped.map_or_else(|| ip.to_owned(), |v4| v4.to_string());
    let mut fixed = String::with_capacity(message.len());
    fixed.push_str(&text[..value_start]);
    fixed.push_str(&ip);
    fixed.push_str(&text[value_end..]);
    Some(fixed.into_bytes())
}

/// A unicast destination: never broadcast (RFC 4475 §3.3.10), multicast, unspecified or port 0.
fn deliverable(to: SocketAddr) -> bool {
    let ip = to.ip();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    to.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

type StackFuture<'a, T> = Pin<Box<dyn Future<Output = rsipstack::Result<T>> + Send + 'a>>;

// The trait is declared with `#[async_trait]`; this is its expansion, written out so that idgate
// needs no extra dependency for one impl.
impl StackUdpSocket for GatedUdpSocket {
    fn recv_from<'s, 'b, 'f>(&'s self, buf: &'b mut [u8]) -> StackFuture<'f, (usize, SocketAddr)>
    where
        's: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async move { Ok(self.recv_checked(buf).await?) })
    }

    fn send_to<'s, 'b, 'f>(&'s self, buf: &'b [u8], addr: SocketAddr) -> StackFuture<'f, usize>
    where
        's: 'f,
        'b: 'f,
        Self: 'f,
    {
        let to = stack_response_destination(buf).unwrap_or(addr);
        let fixed = normalized_received(buf);
        Box::pin(async move {
            let sent = self
                .send_guarded(fixed.as_deref().unwrap_or(buf), to)
                .await?;
            Ok(if fixed.is_some() { buf.len() } else { sent })
        })
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unicast_destinations_are_deliverable() {
        let ok = |s: &str| deliverable(s.parse().expect("addr"));
        assert!(ok("127.0.0.1:5060"));
        assert!(ok("[::1]:5060"));
        assert!(!ok("255.255.255.255:5060"));
        assert!(!ok("224.0.0.1:5060"));
        assert!(!ok("0.0.0.0:5060"));
        assert!(!ok("[::]:5060"));
        assert!(!ok("[ff02::1]:5060"));
        assert!(!ok("127.0.0.1:0"));
    }

    fn response(via: &str) -> Vec<u8> {
        format!("SIP/2.0 200 OK\r\n{via}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            .into_bytes()
    }

    #[test]
    fn a_response_goes_to_received_and_rport_in_either_ipv6_form() {
        let to = |via: &str| stack_response_destination(&response(via));
        let foreign = "Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bK1";
        let expected = Some("[::1]:40000".parse().expect("addr"));
        assert_eq!(
            to(&format!("{foreign};received=[::1];rport=40000")),
            expected
        );
        assert_eq!(to(&format!("{foreign};rport=40000;received=::1")), expected);
        assert_eq!(
            to("v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=127.0.0.1;rport=5070"),
            Some("127.0.0.1:5070".parse().expect("addr"))
        );
    }

    #[test]
    fn an_ipv6_received_is_written_without_brackets() {
        let fixed = |via: &str| {
            normalized_received(&response(via)).map(|b| String::from_utf8(b).expect("UTF-8"))
        };
        let via = "Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bK1;received=[[::1]];rport=4";
        let out = fixed(via).expect("rewritten");
        assert!(
            out.contains(
                "\r\nVia: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bK1;received=::1;rport=4\r\n"
            ),
            "{out}"
        );
        assert!(
            out.ends_with("CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"),
            "{out}"
        );
        let last = fixed("Via: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1;received=[::1]");
        assert!(last.expect("rewritten").contains(";received=::1\r\n"));
        assert_eq!(
            fixed("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;received=127.0.0.1"),
            None
        );
        assert_eq!(
            fixed("Via: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport=5060"),
            None
        );
        let mapped = "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;received=[[::ffff:127.0.0.1]];rport=5071";
        let mapped = fixed(mapped).expect("rewritten");
        assert!(
            mapped.contains(";received=127.0.0.1;rport=5071\r\n"),
            "{mapped}"
        );
        // A lower Via value (after a comma) is another hop's and stays as it is.
        let lower = "Via: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1, SIP/2.0/UDP [::2];received=[::3]";
        assert_eq!(fixed(lower), None);
    }

    #[test]
    fn requests_and_vias_without_both_parameters_keep_the_stacks_destination() {
        let to = |text: &str| stack_response_destination(text.as_bytes());
        assert_eq!(
            to("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport=5060\r\n\r\n"),
            None
        );
        assert_eq!(
            to(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;received=::1\r\n\r\n"
            ),
            None
        );
        let request =
            "BYE sip:a@[::1] SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:5060;received=::1;rport=1\r\n\r\n";
        assert_eq!(to(request), None);
        // Only the top Via counts: a lower one is another hop's.
        let lower = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1\r\n\
                     Via: SIP/2.0/UDP [::2]:5060;received=::3;rport=9\r\n\r\n";
        assert_eq!(to(lower), None);
    }
}
