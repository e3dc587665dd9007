//! idgate's TCP listener under rsipstack: each connection's bytes are framed and pass
//! [`intake`] before the stack reads them, so a malformed message gets its 400 on the connection
//! instead of the stack closing the connection without a word (rsipstack 0.7.14's stream codec
//! returns an error and its serve loop ends on the first unparseable message).
//!
//! How, without patching the stack: rsipstack's `TcpConnection` is built from a read half and a
//! write half of tokio `TcpStream`s (its fields are public). idgate gives it the caller's socket as
//! the write half, so every response and in-dialog request goes straight to the caller, and as
//! the read half one end of a loopback pipe, into which the gate writes only the messages that
//! passed, re-serialized by rsipstack's own writer (its stream codec only recognizes an exact
//! `Content-Length:` name, RFC 3261 §7.3.1 allows white space before the colon). The stack sees the
//! caller's real address, keeps its flow affinity, idle timeout and connection table; a refusal
//! is written on the same write half under the stack's own lock.

use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::sip::Transport;
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transport::stream::StreamConnectionInner;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::intake::{Carrier, Verdict, inspect};

/// The largest message a connection may buffer (rsipstack's own stream limit).
const MAX_MESSAGE: usize = 65535;

/// Accepts connections on `listener` until `cancel`, handing each to the stack behind a gate.
pub(super) fn serve(
    listener: TcpListener,
    endpoint: Arc<EndpointInner>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let local = SipAddr {
        r#type: Some(Transport::Tcp),
        addr: listener.local_addr()?.into(),
    };
    let pipes = Arc::new(Pipes::bind()?);
    accept_each(listener, "TCP", cancel, move |client, peer, token| {
        let (endpoint, pipes, local) = (endpoint.clone(), pipes.clone(), local.clone());
        tokio::spawn(async move {
            if let Err(e) = connect(client, peer, local, &pipes, &endpoint, token).await {
                warn!(%peer, error = %e, "cannot take a TCP connection");
            }
        });
    });
    Ok(())
}

/// Accepts connections on `listener` until `cancel` and hands each, with a child token of
/// `cancel`, to `take` (which spawns what serves it). A failed accept is logged and skipped.
pub(super) fn accept_each(
    listener: TcpListener,
    transport: &'static str,
    cancel: CancellationToken,
    take: impl Fn(TcpStream, SocketAddr, CancellationToken) + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((client, peer)) => take(client, peer, cancel.child_token()),
                Err(e) => warn!(error = %e, transport, "accept failed"),
            }
        }
    });
}

/// Registers the connection with the stack and starts its gate.
async fn connect(
    client: TcpStream,
    peer: SocketAddr,
    local: SipAddr,
    pipes: &Pipes,
    endpoint: &EndpointInner,
    token: CancellationToken,
) -> std::io::Result<()> {
    let (to_stack, stack_side) = pipes.pair().await?;
    let (client_read, client_write) = tokio::io::split(client);
    let (stack_read, _) = tokio::io::split(stack_side);
    let remote = SipAddr {
        r#type: Some(Transport::Tcp),
        addr: peer.into(),
    };
    let conn = TcpConnection {
        inner: Arc::new(StreamConnectionInner::new(
            local,
            remote,
            stack_read,
            client_write,
        )),
        cancel_token: Some(token.clone()),
    };
    endpoint
        .transport_layer
        .add_connection(SipConnection::Tcp(conn.clone()));
    tokio::spawn(gate(client_read, to_stack, conn, peer, token));
    Ok(())
}

/// Reads the caller's bytes, frames them and passes, refuses or drops each message. Ends when
/// the caller closes, the stack retires the connection (`token`) or the stream cannot be framed.
/// `client` is the caller's socket, or its decrypted TLS stream (`super::tls`).
pub(super) async fn gate<R: AsyncRead + Unpin>(
    mut client: R,
    mut to_stack: TcpStream,
    conn: TcpConnection,
    peer: SocketAddr,
    token: CancellationToken,
) {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 16384];
    loop {
        let read = tokio::select! {
            _ = token.cancelled() => break,
            read = client.read(&mut chunk) => read,
        };
        let n = match read {
            Ok(n) if n > 0 => n,
            _ => {
                // The caller is done sending: what is left is all the message there will be.
                if !buffer.iter().all(u8::is_ascii_whitespace) {
                    answer(&buffer, peer, &conn).await;
                }
                break;
            }
        };
        buffer.extend_from_slice(&chunk[..n]);
        if !drain(&mut buffer, &mut to_stack, &conn, peer).await {
            let _ = conn.inner.close().await;
            break;
        }
    }
    // EOF on the pipe ends the stack's serve loop, which retires the connection.
    let _ = to_stack.shutdown().await;
}

/// Hands every complete message in `buffer` on; false when the stream must be closed.
async fn drain(
    buffer: &mut Vec<u8>,
    to_stack: &mut TcpStream,
    conn: &TcpConnection,
    peer: SocketAddr,
) -> bool {
    loop {
        match frame(buffer) {
            Frame::Partial if buffer.len() > MAX_MESSAGE => {
                answer(buffer, peer, conn).await;
                return false;
            }
            Frame::Partial => return true,
            Frame::Keepalive(n) => {
                if to_stack.write_all(&buffer[..n]).await.is_err() {
                    return false;
                }
                buffer.drain(..n);
            }
            Frame::Message(n) => {
                let message: Vec<u8> = buffer.drain(..n).collect();
                if let Verdict::Pass(msg) = inspect(&message, peer, Carrier::Tcp) {
                    if to_stack.write_all(&msg.to_bytes()).await.is_err() {
                        return false;
                    }
                } else {
                    answer(&message, peer, conn).await;
                }
            }
            // No trustworthy Content-Length: where the next message starts is unknown.
            Frame::Unframeable => {
                answer(buffer, peer, conn).await;
                return false;
            }
        }
    }
}

/// Sends the refusal for a message that did not pass, if it may be answered.
async fn answer(message: &[u8], peer: SocketAddr, conn: &TcpConnection) {
    match inspect(message, peer, Carrier::Tcp) {
        Verdict::Refuse {
            status,
            reason,
            response,
        } => {
            debug!(%peer, status, %reason, "malformed SIP request refused");
            if let Err(e) = conn.inner.send_raw(&response).await {
                debug!(%peer, error = %e, "could not send a refusal");
            }
        }
        Verdict::Discard(reason) => debug!(%peer, %reason, "malformed SIP message discarded"),
        // Complete and well-formed only now that the stream ended: too late to process.
        Verdict::Pass(_) => debug!(%peer, "incomplete SIP message at end of stream"),
    }
}

/// Where the first message of a stream buffer ends (RFC 3261 §18.3: by Content-Length).
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// More bytes are needed.
    Partial,
    /// A CRLF keep-alive of this length (RFC 5626 §3.5.1), for the stack to answer.
    Keepalive(usize),
    /// A whole message of this length.
    Message(usize),
    /// The header section is complete but its Content-Length is missing a usable value.
    Unframeable,
}

fn frame(buffer: &[u8]) -> Frame {
    if buffer.starts_with(b"\r\n\r\n") {
        return Frame::Keepalive(4);
    }
    if buffer.starts_with(b"\r\n") {
        return Frame::Keepalive(2);
    }
    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Frame::Partial;
    };
    let head = String::from_utf8_lossy(&buffer[..end]);
    let mut lengths = head.split("\r\n").filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
            .then(|| value.trim().to_owned())
    });
    let first = lengths.next();
    if lengths.any(|other| Some(&other) != first.as_ref()) {
        return Frame::Unframeable;
    }
    let length = match first.map(|v| v.parse::<usize>()) {
        None => 0, // RFC 3261 §18.3 requires it on streams; without it there is no body.
        Some(Ok(n)) if n <= MAX_MESSAGE => n,
        Some(_) => return Frame::Unframeable,
    };
    let total = end + 4 + length;
    if buffer.len() < total {
        Frame::Partial
    } else {
        Frame::Message(total)
    }
}

/// Loopback socket pairs: one per caller connection, its far end read by the stack.
pub(super) struct Pipes {
    listener: TcpListener,
    /// One pair at a time, so that each accept belongs to its connect.
    lock: Mutex<()>,
}

impl Pipes {
    pub(super) fn bind() -> std::io::Result<Pipes> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        Ok(Pipes {
            listener: TcpListener::from_std(std_listener)?,
            lock: Mutex::new(()),
        })
    }

    pub(super) async fn pair(&self) -> std::io::Result<(TcpStream, TcpStream)> {
        let _one_at_a_time = self.lock.lock().await;
        let near = TcpStream::connect(self.listener.local_addr()?).await?;
        near.set_nodelay(true)?;
        let ours = near.local_addr()?;
        // Anyone on the host can connect here; only our own connect becomes a pipe.
        for _ in 0..8 {
            let (far, from) = self.listener.accept().await?;
            if from == ours {
                return Ok((near, far));
            }
            warn!(%from, "unexpected connection on idgate's internal pipe listener");
        }
        Err(std::io::Error::other("internal pipe listener flooded"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_by_content_length() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabcNEXT";
        assert_eq!(frame(msg), Frame::Message(msg.len() - 4));
        assert_eq!(frame(&msg[..30]), Frame::Partial);
        assert_eq!(
            frame(b"X sip:a SIP/2.0\r\nl : 0\r\n\r\n"),
            Frame::Message(26)
        );
        assert_eq!(frame(b"X sip:a SIP/2.0\r\n\r\n"), Frame::Message(19));
        assert_eq!(frame(b"\r\n\r\nX"), Frame::Keepalive(4));
        assert_eq!(frame(b"\r\nX"), Frame::Keepalive(2));
    }

    #[test]
    fn a_bad_or_doubled_content_length_cannot_be_framed() {
        assert_eq!(
            frame(b"X sip:a SIP/2.0\r\nContent-Length: -999\r\n\r\n"),
            Frame::Unframeable
        );
        assert_eq!(
            frame(b"X sip:a SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n"),
            Frame::Unframeable
        );
        assert_eq!(
            frame(b"X sip:a SIP/2.0\r\nContent-Length: 99999999\r\n\r\n"),
            Frame::Unframeable
        );
    }
}
