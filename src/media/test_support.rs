//! What the media driver tests share: an engine on a port range, a far end played by a plain
//! `UdpSocket` on 127.0.0.1, a bounded receive and an RTP packet builder.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::rtp::RtpHeader;
use super::{MediaConfig, MediaEngine};

/// The longest a test waits for a packet.
pub(super) const WAIT: Duration = Duration::from_secs(3);
/// Where every socket of these tests lives.
pub(super) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An engine handing out RTP ports from `port_min..=port_max` on 127.0.0.1.
pub(super) fn engine(port_min: u16, port_max: u16) -> MediaEngine {
    MediaEngine::start(MediaConfig {
        bind_ip: LOCALHOST,
        port_min,
        port_max,
        raw_send: false,
    })
}

/// A far end: a socket on an ephemeral port and its address.
pub(super) async fn far_end() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// The next datagram on `socket`; panics after [`WAIT`].
pub(super) async fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let (len, _) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("no packet")
        .unwrap();
    buf.truncate(len);
    buf
}

/// An RTP packet: a 12-byte header and `payload`.
pub(super) fn packet(
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    let header = RtpHeader {
        marker,
        payload_type,
        sequence,
        timestamp,
        ssrc,
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}
