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
