//! The adapter around the SIP stack (rsipstack, pinned exactly). Nothing outside this module
//! names an rsipstack type: an upgrade or a replacement of the stack touches only these files.
//!
//! It owns transports, inbound INVITE/CANCEL/BYE/OPTIONS/INFO, the outbound queue leg,
//! REFER/NOTIFY and header hygiene. It makes no call-flow decisions: an accepted INVITE is
//! handed to the `call` module as an [`IncomingCall`].

mod auth;
mod challenge;
#[cfg(test)]
mod conformance;
mod dispatch;
// `pub(crate)`: the fuzz entry points (`crate::fuzzing`) drive the gate directly.
pub(crate) mod intake;
mod leg;
mod message;
mod screen;
mod tcp;
mod tls;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transport::{TcpListenerConnection, TransportLayer, udp::UdpConnection};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use auth::{AuthMode, TrunkAuth};
pub use leg::{CallerLeg, LegEvent, OutboundCall, QueueLeg};
pub use message::parse_dtmf_info;
pub use tls::{DEFAULT_RELOAD_POLL, TlsSettings};

/// What the SIP layer needs to know to start.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// Address for UDP and TCP.
    pub listen: SocketAddr,
    /// Listen on UDP.
    pub udp: bool,
    /// Listen on TCP.
    pub tcp: bool,
    /// Peers allowed to send INVITEs; everyone else gets 403.
    pub trusted_peers: Vec<IpNet>,
    /// The identity header prefix (`X-Identity-`); inbound headers with it are removed.
    pub header_prefix: String,
    /// The User-Agent / Server value.
    pub user_agent: String,
    /// Asked before a new call is taken and before OPTIONS is answered 200.
    pub admit: std::sync::Arc<dyn Admit>,
    /// Host written in Contact instead of the listen address (behind NAT, or listening on
    /// `0.0.0.0` behind a proxy).
    pub public_address: Option<String>,
    /// Who else may send INVITEs: trunks with digest credentials (`sip.auth`, `sip.trunks`).
    pub trunk_auth: TrunkAuth,
    /// The SIP over TLS listener (`sip::tls`), if any.
    pub tls: Option<TlsSettings>,
}

/// What the SIP layer asks the rest of idgate before taking new work. A refusal carries the
/// `Retry-After` seconds of the 503.
pub trait Admit: std::fmt::Debug + Send + Sync + 'static {
    /// Whether a new INVITE (from a trusted peer) may become a call.
    fn admit_call(&self) -> Result<(), u32>;
    /// Whether OPTIONS is answered 200 (a load balancer's probe) rather than 503.
    fn accepting(&self) -> Result<(), u32>;
    /// An INVITE from a source outside `trusted_peers`, or with bad trunk credentials, was
    /// refused (403).
    fn untrusted(&self, _source: Option<std::net::IpAddr>) {}
}

/// Takes every call (tests and tools that need no limits).
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl Admit for AdmitAll {
    fn admit_call(&self) -> Result<(), u32> {
        Ok(())
    }

    fn accepting(&self) -> Result<(), u32> {
        Ok(())
    }
}

/// Errors of the SIP layer.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    /// A listener could not be bound (address in use, permission).
    #[error("cannot listen on {addr} ({transport}): {detail}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// udp, tcp or tls.
        transport: &'static str,
        /// What the stack said.
        detail: String,
    },
    /// A URI from the configuration or the flow could not be parsed.
    #[error("invalid SIP URI {uri:?}: {detail}")]
    BadUri {
        /// The URI text.
        uri: String,
        /// What the parser said.
        detail: String,
    },
    /// The stack refused or failed an operation on a dialog.
    #[error("SIP stack: {0}")]
    Stack(String),
    /// The TLS listener's certificate or key cannot be used.
    #[error("SIP TLS: {0}")]
    Tls(#[from] crate::config::TlsFileError),
}

impl From<rsipstack::Error> for SipError {
    fn from(e: rsipstack::Error) -> Self {
        SipError::Stack(e.to_string())
    }
}

/// An INVITE from a trusted peer, with a dialog already created (100 Trying sent). The call
/// module answers or rejects it through `leg`.
#[derive(Debug)]
pub struct IncomingCall {
    /// The Call-ID of the caller leg.
    pub sip_call_id: String,
    /// The Request-URI user part (the called number), if any.
    pub called: Option<String>,
    /// The request's headers as (name, value) text, identity-prefixed ones removed.
    pub headers: Vec<(String, String)>,
    /// Names of identity-prefixed headers that were removed (a spoofing attempt).
    pub spoofed: Vec<String>,
    /// The From display name as the caller sent it. Caller-supplied: anyone can write
    /// `"✔ Verified"` there; clean it before showing it (`identity::headers::display`).
    pub caller_display_name: Option<crate::identity::headers::CallerDisplayName>,
    /// The source address of the INVITE (from the top Via's received/sent-by).
    pub source: IpAddr,
    /// Whether the source is a trusted peer (only then is P-Asserted-Identity believed). False
    /// for a trunk admitted by digest credentials alone (`sip.auth`).
    pub trusted_peer: bool,
    /// The SDP offer (may be empty: offerless INVITE).
    pub offer: Vec<u8>,
    /// The caller leg.
    pub leg: CallerLeg,
}

/// The running SIP stack. Cheap to clone.
#[derive(Clone)]
pub struct SipStack {
    inner: Arc<StackInner>,
}

struct StackInner {
    dialogs: Arc<DialogLayer>,
    local: SocketAddr,
    settings: SipSettings,
}

impl SipStack {
    /// Binds the transports, starts the stack and returns it with the stream of incoming calls.
    pub async fn start(
        mut settings: SipSettings,
        cancel: CancellationToken,
    ) -> Result<(SipStack, mpsc::Receiver<IncomingCall>), SipError> {
        // TLS is idgate's own listener behind the gate (`tls`); it keeps the bound address in
        // `settings.tls` for Contact.
        let tls_listener = match settings.tls.as_mut() {
            Some(tls) => Some(tls::bind(tls, cancel.child_token()).await?),
            None => None,
        };
        let transports = TransportLayer::new(cancel.child_token());
        if settings.udp {
            // idgate's own socket, so that malformed datagrams are answered (`udp`, `intake`).
            let socket = tokio::net::UdpSocket::bind(settings.listen)
                .await
                .map_err(|e| bind_error(settings.listen, "udp", e.into()))?;
            let socket: Arc<dyn rsipstack::platform::net::UdpSocket> =
                Arc::new(udp::GatedUdpSocket::new(socket));
            let udp = UdpConnection::from_socket(socket, None, Some(cancel.child_token()))
                .await
                .map_err(|e| bind_error(settings.listen, "udp", e))?;
            transports.add_transport(udp.into());
        }
        // With UDP on the same address, TCP runs through idgate's gate (`tcp`); rsipstack then
        // takes its own addresses for Via and Contact from the UDP listener with the TCP token.
        // TCP alone keeps rsipstack's listener, which closes a connection on a malformed
        // message instead of answering 400.
        let mut gated_tcp = None;
        if settings.tcp && settings.udp {
            let listener = tokio::net::TcpListener::bind(settings.listen)
                .await
                .map_err(|e| bind_error(settings.listen, "tcp", e.into()))?;
            gated_tcp = Some(listener);
        } else if settings.tcp {
            let tcp = TcpListenerConnection::new(settings.listen, None)
                .await
                .map_err(|e| bind_error(settings.listen, "tcp", e))?;
            transports.add_transport(tcp.into());
        }
        let option = EndpointOption {
            // Call-IDs of the queue leg: a UUID and our own address, not the stack's vendor name.
            callid_suffix: Some(settings.listen.ip().to_string()),
            ..EndpointOption::default()
        };
        let endpoint = EndpointBuilder::new()
            .with_option(option)
            .with_cancel_token(cancel.child_token())
            .with_transport_layer(transports)
            .with_user_agent(&settings.user_agent)
            .build();
        if let Some(listener) = gated_tcp {
            tcp::serve(listener, endpoint.inner.clone(), cancel.child_token())
                .map_err(|e| bind_error(settings.listen, "tcp", e.into()))?;
        }
        if let (Some(listener), Some(tls)) = (tls_listener, &settings.tls) {
            listener
                .serve(endpoint.inner.clone(), cancel.child_token())
                .map_err(|e| bind_error(tls.listen, "tls", e.into()))?;
        }
        let incoming = endpoint.incoming_transactions()?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let inner = Arc::new(StackInner {
            dialogs,
            local: settings.listen,
            settings,
        });
        let serve = endpoint.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = serve.serve().await {
                tracing::error!(error = %e, "SIP endpoint stopped");
            }
        });
        let (calls_tx, calls_rx) = mpsc::channel(1024);
        let stack = SipStack { inner };
        tokio::spawn(dispatch::run(stack.clone(), incoming, calls_tx, cancel));
        Ok((stack, calls_rx))
    }

    /// The address SIP listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    fn contact(&self) -> rsipstack::sip::Uri {
        rsipstack::sip::Uri {
            scheme: Some(rsipstack::sip::Scheme::Sip),
            auth: None,
            host_with_port: contact_host(
                self.inner.settings.public_address.as_deref(),
                self.inner.local,
            ),
            params: vec![],
            headers: vec![],
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.inner
            .settings
            .trusted_peers
            .iter()
            .any(|net| net.contains(&ip))
    }
}

fn bind_error(addr: SocketAddr, transport: &'static str, e: rsipstack::Error) -> SipError {
    SipError::Bind {
        addr,
        transport,
        detail: e.to_string(),
    }
}

/// The Contact's host and port: `public` (an address or a host name) if set, else the listen
/// address; the port is always the listen port.
fn contact_host(public: Option<&str>, local: SocketAddr) -> rsipstack::sip::HostWithPort {
    use rsipstack::sip::uri::{Domain, Host, Port};
    let host = match public {
        None => Host::IpAddr(local.ip()),
        Some(text) => match text.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => Host::IpAddr(ip),
            Err(_) => Host::Domain(Domain::from(text)),
        },
    };
    rsipstack::sip::HostWithPort {
        host,
        port: Some(Port(local.port())),
    }
}

#[cfg(test)]
mod contact_tests {
    use super::*;

    #[test]
    fn the_public_address_replaces_the_listen_address_in_contact() {
        let local: SocketAddr = "0.0.0.0:5060".parse().unwrap();
        assert_eq!(contact_host(None, local).to_string(), "0.0.0.0:5060");
        assert_eq!(
            contact_host(Some("203.0.113.7"), local).to_string(),
            "203.0.113.7:5060"
        );
        assert_eq!(
            contact_host(Some("idgate-a.example.com"), local).to_string(),
            "idgate-a.example.com:5060"
        );
        assert_eq!(
            contact_host(Some("[2001:db8::7]"), local).to_string(),
            "[2001:db8::7]:5060"
        );
    }
}
