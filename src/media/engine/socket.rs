//! RTP and RTCP sockets, registered with the tokio reactor for reading only.
//!
//! Why not `tokio::net::UdpSocket`: it registers every socket for both readable and writable
//! readiness (edge-triggered). Linux wakes a socket's waiters each time a sent datagram's
//! buffer is freed (`sock_wfree` → write space), so every RTP packet the pump sent became an
//! epoll event and woke a tokio worker to record "writable" that nobody waits for: measured
//! at ~30 % of idgate's CPU with 500 held calls (`ScheduledIo::wake`, scheduler wake-ups and
//! context switches in the profile). Sends never wait (`try_send_to`: a full buffer drops the
//! packet, as a late RTP packet is worthless), so write readiness is never needed.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Sets Don't Fragment on an IPv4 RTP socket's packets, ignoring the path MTU
/// (`IP_PMTUDISC_PROBE`). Linux then gives each packet IP ID 0 instead of drawing one from its
/// shared, hashed ID generator (`__ip_select_ident`: ~3 % of the pump at 4,000 held calls, and
/// an atomic on a table all cores share). Audio packets are a few hundred bytes at most, far
/// below any MTU, so none is ever refused for size. Best effort: on failure the socket keeps
/// the default, which works the same, only slower.
pub fn set_dont_fragment(socket: &std::net::UdpSocket) {
    if !matches!(socket.local_addr(), Ok(SocketAddr::V4(_))) {
        return; // IPv6 draws no ID for packets it does not fragment
    }
    use rustix::net::sockopt::{Ipv4PathMtuDiscovery, set_ip_mtu_discover};
    if let Err(e) = set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::PROBE) {
        tracing::debug!(error = %e, "IP_MTU_DISCOVER not set on an RTP socket");
    }
}

/// A non-blocking UDP socket the reactor watches for incoming datagrams only.
#[derive(Debug)]
pub struct RtpSocket(AsyncFd<std::net::UdpSocket>);

impl RtpSocket {
    /// Takes a socket already set non-blocking; must be called within a tokio runtime.
    // tokio 1.54 deprecated its safe constructors (tokio#8587: an `AsRawFd` type could close
    // or swap its fd while registered); the remaining ones are `unsafe`, which this crate
    // forbids. `std::net::UdpSocket` owns its fd for its whole life and `RtpSocket` never
    // hands out `&mut`, so the registration stays valid: the concern does not apply here.
    #[allow(deprecated)]
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        Ok(RtpSocket(AsyncFd::with_interest(
            socket,
            Interest::READABLE,
        )?))
    }

    /// Sends one datagram now, or fails with `WouldBlock` when the send buffer is full.
    pub fn try_send_to(&self, packet: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.0.get_ref().send_to(packet, target)
    }

    /// Waits for the next datagram.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0
            .async_io(Interest::READABLE, |socket| socket.recv_from(buf))
            .await
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::sockopt::{Ipv4PathMtuDiscovery, ip_mtu_discover};

    #[test]
    fn ipv4_rtp_sockets_set_dont_fragment_ignoring_the_path_mtu() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_ne!(
            ip_mtu_discover(&socket).unwrap(),
            Ipv4PathMtuDiscovery::PROBE
        );
        set_dont_fragment(&socket);
        assert_eq!(
            ip_mtu_discover(&socket).unwrap(),
            Ipv4PathMtuDiscovery::PROBE
        );
        // Still sends: a full-size audio packet and a large one (loopback's MTU is 64 KiB).
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sink.local_addr().unwrap();
        assert_eq!(socket.send_to(&[0u8; 172], to).unwrap(), 172);
        assert_eq!(socket.send_to(&[0u8; 2048], to).unwrap(), 2048);
    }
}
