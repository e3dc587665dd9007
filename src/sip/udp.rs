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
        Box::pin(async move { Ok(self.send_guarded(buf, addr).await?) })
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
}
