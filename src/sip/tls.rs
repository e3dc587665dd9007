//! SIP over TLS (RFC 3261 §26: `sip:...;transport=tls`, port 5061) behind the same gate as TCP.
//!
//! idgate terminates TLS itself (tokio-rustls with the `ring` provider) and hands rsipstack a
//! plain stream connection made of two loopback pipes (`super::tcp::Pipes`): the gate
//! (`super::tcp::gate`) writes the decrypted messages that passed `intake` into one, and
//! [`relay`] encrypts what the stack writes into the other back to the caller. A malformed
//! message so gets its 400 on the TLS connection, which stays open; rsipstack's own
//! `TlsListenerConnection` would close it without a word. The stack's addresses for the
//! connection carry the TLS token, so its replies, the Via of in-dialog requests and their
//! connection affinity all say and use TLS; [`SipStack::contact_for`] puts the TLS listener
//! with `transport=tls` in the Contact of calls that arrived over TLS. One wart: the sent-by of
//! that Via names the UDP/TCP listener's port with the TLS token (rsipstack looks for a TLS
//! listener of its own and has none); responses return on the connection (RFC 3261 §18.2.2), so
//! a conforming peer never uses it.
//!
//! Certificate hot reload: every handshake takes the pair in [`CertStore`], which [`watch`]
//! replaces when the files' modification time or length changes (polled) or on SIGHUP. New
//! connections get the new certificate, established ones keep their session, and a bad new pair
//! is refused with a warning naming the file while the old pair stays in service.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rsipstack::sip::{Param, Transport};
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::stream::StreamConnectionInner;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::tcp::{Pipes, accept_each, gate};
use super::{SipError, SipStack, contact_host};
use crate::config::{TlsFileError, TlsFiles};

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often `idgate serve` checks the certificate files for a change.
pub const DEFAULT_RELOAD_POLL: Duration = Duration::from_secs(5);

/// What the SIP over TLS listener needs to start.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Address to listen on (`sip.tls_listen`).
    pub listen: SocketAddr,
    /// The certificate chain and private key (`sip.tls_certificate`, `sip.tls_private_key`).
    pub files: TlsFiles,
    /// How often the files are checked for a change; SIGHUP reloads at once.
    pub reload_poll: Duration,
}

/// The certificate every new handshake is given; replaced whole on a reload.
#[derive(Debug)]
pub(super) struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    fn new(key: Arc<CertifiedKey>) -> CertStore {
        CertStore {
            current: RwLock::new(key),
        }
    }

    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(key) => key.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, key: Arc<CertifiedKey>) {
        match self.current.write() {
            Ok(mut current) => *current = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server config with the `ring` provider, serving whatever `store` holds.
fn server_config(store: Arc<CertStore>) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store))
}

/// The SHA-256 fingerprint of the leaf certificate, in hex: what a reload log line names.
fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|leaf| hex::encode(Sha256::digest(leaf.as_ref())))
        .unwrap_or_default()
}

/// The TLS listener, bound, with its certificate loaded and its reload watch running.
pub(super) struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

/// Loads the pair, binds `settings.listen` (rewritten to the bound address, for Contact) and
/// starts watching the files.
pub(super) async fn bind(
    settings: &mut TlsSettings,
    cancel: CancellationToken,
) -> Result<TlsListener, SipError> {
    let bind_error = |detail: String| SipError::Bind {
        addr: settings.listen,
        transport: "tls",
        detail,
    };
    let key = settings.files.load()?;
    let sha256 = fingerprint(&key);
    let store = Arc::new(CertStore::new(key));
    let config = server_config(store.clone()).map_err(|e| bind_error(e.to_string()))?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| bind_error(e.to_string()))?;
    settings.listen = listener
        .local_addr()
        .map_err(|e| bind_error(e.to_string()))?;
    info!(
        listen = %settings.listen,
        certificate = %settings.files.certificate.display(),
        %sha256,
        "SIP over TLS listening"
    );
    let watch_files = settings.files.clone();
    tokio::spawn(watch(store, watch_files, settings.reload_poll, cancel));
    Ok(TlsListener {
        listener,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

impl TlsListener {
    /// Accepts connections until `cancel`, handing each to the stack behind the gate.
    pub(super) fn serve(
        self,
        endpoint: Arc<EndpointInner>,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        let local = SipAddr {
            r#type: Some(Transport::Tls),
            addr: self.listener.local_addr()?.into(),
        };
        let pipes = Arc::new(Pipes::bind()?);
        let TlsListener { listener, acceptor } = self;
        accept_each(listener, "TLS", cancel, move |client, peer, token| {
            let taken = Connection {
                local: local.clone(),
                acceptor: acceptor.clone(),
                pipes: pipes.clone(),
                endpoint: endpoint.clone(),
                token,
            };
            tokio::spawn(async move {
                if let Err(e) = taken.connect(client, peer).await {
                    debug!(%peer, error = %e, "TLS connection not taken");
                }
            });
        });
        Ok(())
    }
}

/// What one accepted connection needs to be handed to the stack.
struct Connection {
    local: SipAddr,
    acceptor: TlsAcceptor,
    pipes: Arc<Pipes>,
    endpoint: Arc<EndpointInner>,
    token: CancellationToken,
}

impl Connection {
    /// Runs the handshake, registers the connection with the stack and starts the gate and the
    /// relay.
    async fn connect(self, client: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(client));
        let tls = handshake
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        let (tls_read, tls_write) = tokio::io::split(tls);
        let (to_stack, stack_in) = self.pipes.pair().await?;
        let (stack_out, from_stack) = self.pipes.pair().await?;
        let (stack_read, _) = tokio::io::split(stack_in);
        let (_, stack_write) = tokio::io::split(stack_out);
        let remote = SipAddr {
            r#type: Some(Transport::Tls),
            addr: peer.into(),
        };
        let conn = TcpConnection {
            inner: Arc::new(StreamConnectionInner::new(
                self.local,
                remote,
                stack_read,
                stack_write,
            )),
            cancel_token: Some(self.token.clone()),
        };
        self.endpoint
            .transport_layer
            .add_connection(SipConnection::Tcp(conn.clone()));
        debug!(%peer, "TLS connection taken");
        tokio::spawn(relay(from_stack, tls_write));
        tokio::spawn(gate(tls_read, to_stack, conn, peer, self.token));
        Ok(())
    }
}

/// Encrypts what the stack writes for the caller; when the stack closes its side, ends the TLS
/// session (close_notify) and so the connection.
async fn relay(mut from_stack: TcpStream, mut to_caller: WriteHalf<TlsStream<TcpStream>>) {
    if let Err(e) = tokio::io::copy(&mut from_stack, &mut to_caller).await {
        debug!(error = %e, "TLS relay to the caller ended");
    }
    let _ = to_caller.shutdown().await;
}

impl SipStack {
    /// The Contact of a dialog that `tx` creates: for a request that arrived over TLS, the TLS
    /// listener's port with `transport=tls`, so that the caller's in-dialog requests (ACK, BYE,
    /// re-INVITE) come back over TLS; else [`SipStack::contact`].
    pub(super) fn contact_for(&self, tx: &Transaction) -> rsipstack::sip::Uri {
        let mut contact = self.contact();
        let Some(tls) = &self.inner.settings.tls else {
            return contact;
        };
        if arrived_over_tls(tx) {
            let public = self.inner.settings.public_address.as_deref();
            contact.host_with_port = contact_host(public, tls.listen);
            contact.params.push(Param::Transport(Transport::Tls));
        }
        contact
    }
}

/// Whether `tx` came in on one of the TLS listener's connections.
fn arrived_over_tls(tx: &Transaction) -> bool {
    tx.connection
        .as_ref()
        .is_some_and(|c| c.get_addr().r#type == Some(Transport::Tls))
}

/// What is known of a file to tell that it changed: modification time and length.
type FileStamp = Option<(SystemTime, u64)>;

fn file_stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Both files' stamps.
fn stamps(files: &TlsFiles) -> (FileStamp, FileStamp) {
    (
        file_stamp(&files.certificate),
        file_stamp(&files.private_key),
    )
}

/// Why a reload was attempted (for the log).
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// A file's modification time or length changed.
    Changed,
    /// SIGHUP.
    Hangup,
}

/// Reloads the pair when the files change or on SIGHUP, until `cancel`.
async fn watch(store: Arc<CertStore>, files: TlsFiles, poll: Duration, cancel: CancellationToken) {
    let mut seen = stamps(&files);
    let mut hangup = Hangup::new();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        let trigger = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => Trigger::Changed,
            Some(()) = hangup.recv() => Trigger::Hangup,
        };
        let now = stamps(&files);
        if matches!(trigger, Trigger::Changed) && now == seen {
            continue;
        }
        seen = now;
        log_reload(reload(&store, &files), &files, trigger);
    }
}

/// SIGHUP, on Unix: an operator's "reload the certificate now".
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Hangup {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(|e| warn!(error = %e, "no SIGHUP: TLS certificates reload on change"))
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    /// The next SIGHUP; never, where there is none.
    async fn recv(&mut self) -> Option<()> {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            return signal.recv().await;
        }
        std::future::pending().await
    }
}

/// Loads the files again and serves the new pair if it is usable; the old one stays otherwise.
/// Returns the new leaf certificate's fingerprint.
fn reload(store: &CertStore, files: &TlsFiles) -> Result<String, TlsFileError> {
    let key = files.load()?;
    let print = fingerprint(&key);
    store.replace(key);
    Ok(print)
}

fn log_reload(outcome: Result<String, TlsFileError>, files: &TlsFiles, trigger: Trigger) {
    match outcome {
        Ok(sha256) => info!(
            certificate = %files.certificate.display(),
            %sha256,
            ?trigger,
            "SIP TLS certificate reloaded: new connections get it"
        ),
        Err(e) => warn!(
            key = e.key(),
            file = %e.path().display(),
            error = %e,
            ?trigger,
            "SIP TLS certificate not reloaded: the previous one stays in service"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let issued = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let files = TlsFiles {
            certificate: dir.join("sip.crt"),
            private_key: dir.join("sip.key"),
        };
        std::fs::write(&files.certificate, issued.cert.pem()).unwrap();
        std::fs::write(&files.private_key, issued.signing_key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn a_good_new_pair_replaces_the_served_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "old.example");
        let store = CertStore::new(files.load().unwrap());
        let old = fingerprint(&store.current());
        write_pair(dir.path(), "new.example");
        let new = reload(&store, &files).unwrap();
        assert_ne!(old, new);
        assert_eq!(fingerprint(&store.current()), new);
    }

    #[test]
    fn a_bad_new_pair_is_refused_and_the_old_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "old.example");
        let store = CertStore::new(files.load().unwrap());
        let old = fingerprint(&store.current());
        // A new certificate with the old key: a mismatch.
        let key = std::fs::read(&files.private_key).unwrap();
        write_pair(dir.path(), "new.example");
        std::fs::write(&files.private_key, key).unwrap();
        let err = reload(&store, &files).unwrap_err();
        assert_eq!(err.key(), "sip.tls_private_key");
        assert_eq!(fingerprint(&store.current()), old);
        // A truncated certificate.
        std::fs::write(&files.certificate, "-----BEGIN CERTIFICATE-----\n").unwrap();
        assert_eq!(
            reload(&store, &files).unwrap_err().key(),
            "sip.tls_certificate"
        );
        assert_eq!(fingerprint(&store.current()), old);
    }

    #[test]
    fn a_rewritten_file_changes_its_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "a.example");
        let before = stamps(&files);
        std::fs::write(
            &files.certificate,
            "longer than it was, surely: xxxxxxxxxxxxxxxxxxx",
        )
        .unwrap();
        assert_ne!(stamps(&files), before);
        std::fs::remove_file(&files.private_key).unwrap();
        assert_eq!(stamps(&files).1, None);
    }

    #[tokio::test]
    async fn the_server_config_serves_the_store_with_ring() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "a.example");
        let store = Arc::new(CertStore::new(files.load().unwrap()));
        assert!(server_config(store).is_ok());
    }
}
