//! TLS for provider clients (BankID, Freja) and their local fakes, on rustls with the `ring`
//! provider passed explicitly (no process-global `CryptoProvider` is needed or installed).
//!
//! - [`client_config`] / [`client_config_from_files`]: a client that trusts only the given CA
//!   (never the system roots) and optionally presents a client certificate (mutual TLS). Hand
//!   the result to reqwest with `ClientBuilder::tls_backend_preconfigured`.
//! - [`read_pem_file`]: reads a PEM file named by a config key; errors name the key and path.
//! - [`TestPki`] and [`serve_tls`]: throw-away certificates made at run time and an HTTPS server
//!   for an axum router, used by the provider fakes (tests and demos only).
//!
//! This API is shared by several providers: keep it stable.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use rustls_platform_verifier::BuilderVerifierExt;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// How long [`serve_tls`] waits for a client to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS material could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by a config key could not be read or holds no usable PEM.
    #[error("{key}: {}: {detail}", path.display())]
    File {
        /// The config key that names the file (e.g. `provider.bankid.ca`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong (never the file's contents).
        detail: String,
    },
    /// PEM given in memory holds no usable item of the kind needed.
    #[error("{what}: {detail}")]
    Pem {
        /// Which input: `"CA"`, `"client certificate"` or `"client key"`.
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A PEM file named in the configuration: the key (for error messages) and the path.
#[derive(Debug, Clone, Copy)]
pub struct PemFile<'a> {
    /// The config key, e.g. `"provider.bankid.client_cert"`.
    pub key: &'static str,
    /// The file's path as configured.
    pub path: &'a Path,
}

impl PemFile<'_> {
    /// An error about this file.
    fn error(self, detail: String) -> TlsError {
        TlsError::File {
            key: self.key,
            path: self.path.to_owned(),
            detail,
        }
    }
}

/// The `ring` crypto provider every config here is built with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file whole. Errors name `key` and `path`, never the contents.
pub fn read_pem_file(file: PemFile<'_>) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file.path).map_err(|e| TlsError::File {
        key: file.key,
        path: file.path.to_owned(),
        detail: e.to_string(),
    })
}

/// All certificates in `pem` (at least one).
fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in the PEM".to_owned());
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, PKCS#1 or SEC1).
fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        if pem.windows(21).any(|w| w == b"ENCRYPTED PRIVATE KEY") {
            "the private key is encrypted: decrypt it first (openssl pkey -in FILE -out KEY.pem)"
                .to_owned()
        } else {
            format!("no usable PRIVATE KEY: {e}")
        }
    })
}

/// A root store holding exactly the certificates in `certs`.
fn roots(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store
            .add(cert)
            .map_err(|e| format!("not a CA certificate: {e}"))?;
    }
    Ok(store)
}

/// A client config from parsed parts.
fn build_client(
    roots: RootCertStore,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    match client {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A TLS client config that trusts only the CA certificate(s) in `ca_pem` (not the system
/// roots) and, with `client_cert_pem = Some((cert_pem, key_pem))`, presents that certificate
/// chain and key (mutual TLS). `cert_pem` may hold the whole chain, leaf first. No ALPN is set,
/// so HTTP clients speak HTTP/1.1.
pub fn client_config(
    ca_pem: &[u8],
    client_cert_pem: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, TlsError> {
    let pem = |what: &'static str| move |detail: String| TlsError::Pem { what, detail };
    let roots = parse_certs(ca_pem).and_then(roots).map_err(pem("CA"))?;
    let client = match client_cert_pem {
        Some((cert, key)) => Some((
            parse_certs(cert).map_err(pem("client certificate"))?,
            parse_key(key).map_err(pem("client key"))?,
        )),
        None => None,
    };
    Ok(build_client(roots, client)?)
}

/// Like [`client_config`], reading the PEM files named in the configuration. Every error names
/// the config key and the path of the file at fault.
pub fn client_config_from_files(
    ca: PemFile<'_>,
    client: Option<(PemFile<'_>, PemFile<'_>)>,
) -> Result<ClientConfig, TlsError> {
    let roots = parse_certs(&read_pem_file(ca)?)
        .and_then(roots)
        .map_err(|d| ca.error(d))?;
    let parts = match client {
        Some((cert, key)) => Some((
            parse_certs(&read_pem_file(cert)?).map_err(|d| cert.error(d))?,
            parse_key(&read_pem_file(key)?).map_err(|d| key.error(d))?,
        )),
        None => None,
    };
    // With a client certificate, rustls' complaints are about the key or its certificate.
    let blame = client.map(|(_, key)| key);
    build_client(roots, parts).map_err(|e| match blame {
        Some(key) => key.error(format!("does not fit the client certificate: {e}")),
        None => TlsError::Rustls(e),
    })
}

/// Throw-away PKI generated at run time for the provider fakes (tests and demos): a server CA
/// and a server certificate for `127.0.0.1`/`localhost`, a client CA and a client certificate.
/// Everything is PEM text. Never use it in production: the keys live in memory, unprotected.
#[derive(Clone)]
pub struct TestPki {
    /// The CA that signed the server certificate (what clients trust).
    pub server_ca_pem: String,
    /// The server certificate, for `127.0.0.1`, `::1` and `localhost`.
    pub server_cert_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub server_key_pem: String,
    /// The CA that signs client certificates (what the server requires).
    pub client_ca_pem: String,
    /// A client certificate signed by the client CA.
    pub client_cert_pem: String,
    /// The client certificate's private key (PKCS#8).
    pub client_key_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestPki(..)")
    }
}

/// A certificate and its key, in PEM.
struct Issued {
    cert: String,
    key: String,
}

/// A fresh CA (ECDSA P-256, `ring`) with `name` as its common name.
fn new_ca(name: &str) -> Result<rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate()?)
}

/// A leaf certificate signed by `ca`, for `names`, with the extended key usage `usage`.
fn new_leaf(
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> Result<Issued, rcgen::Error> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(Issued {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

impl TestPki {
    /// Generates a new PKI (a few milliseconds).
    ///
    /// # Panics
    ///
    /// If `ring` cannot generate keys or rcgen cannot encode a certificate, which does not
    /// happen with the fixed, valid parameters used here.
    pub fn generate() -> TestPki {
        Self::try_generate().unwrap_or_else(|e| panic!("generating the test PKI: {e}"))
    }

    fn try_generate() -> Result<TestPki, rcgen::Error> {
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let server_ca = new_ca("idgate test server CA")?;
        let server = new_leaf(
            &server_ca,
            "idgate test server",
            &["127.0.0.1", "::1", "localhost"],
            ServerAuth,
        )?;
        let client_ca = new_ca("idgate test client CA")?;
        let client = new_leaf(&client_ca, "idgate test RP", &[], ClientAuth)?;
        Ok(TestPki {
            server_ca_pem: server_ca.pem(),
            server_cert_pem: server.cert,
            server_key_pem: server.key,
            client_ca_pem: client_ca.pem(),
            client_cert_pem: client.cert,
            client_key_pem: client.key,
        })
    }

    /// A server config presenting the server certificate. With `require_client_cert`, a client
    /// must present a certificate signed by the client CA, or the handshake fails.
    ///
    /// # Panics
    ///
    /// If the PEM fields were replaced by unusable ones (they are public for reading).
    pub fn server_config(&self, require_client_cert: bool) -> ServerConfig {
        self.try_server_config(require_client_cert)
            .unwrap_or_else(|e| panic!("test PKI server config: {e}"))
    }

    fn try_server_config(&self, require_client_cert: bool) -> Result<ServerConfig, String> {
        let certs = parse_certs(self.server_cert_pem.as_bytes())?;
        let key = parse_key(self.server_key_pem.as_bytes())?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if require_client_cert {
            let roots = roots(parse_certs(self.client_ca_pem.as_bytes())?)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())
    }

    /// A client config trusting the server CA and presenting the client certificate.
    ///
    /// # Panics
    ///
    /// As [`TestPki::server_config`].
    pub fn client_config(&self) -> ClientConfig {
        let client = (
            self.client_cert_pem.as_bytes(),
            self.client_key_pem.as_bytes(),
        );
        client_config(self.server_ca_pem.as_bytes(), Some(client))
            .unwrap_or_else(|e| panic!("test PKI client config: {e}"))
    }
}

/// Serves `router` over TLS on `127.0.0.1` at a free port: returns the address and the task
/// accepting connections (HTTP/1.1 and HTTP/2, each connection on its own task). Aborting the
/// returned task stops the server and every connection it accepted. Handshake failures (e.g. a
/// missing client certificate) close that connection and are logged at debug.
pub async fn serve_tls(
    router: axum::Router,
    config: ServerConfig,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        // Dropping the set (when this task is aborted) aborts the connections.
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "tls accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            connections.spawn(serve_connection(stream, acceptor.clone(), router.clone()));
        }
    });
    Ok((addr, task))
}

/// One connection: the TLS handshake (bounded), then HTTP until the client closes.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    router: axum::Router,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "tls handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("tls handshake timed out");
            return;
        }
    };
    let service = TowerToHyperService::new(router);
    if let Err(e) = Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(error = %e, "tls connection ended with an error");
    }
}

#[cfg(test)]
mod tests;

/// Whom an HTTPS client to a company system (app backend, CRM) trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Plain HTTP to a loopback address: no certificate is checked, as none is sent.
    Loopback,
    /// The system's trusted roots (rustls-platform-verifier).
    System,
    /// Only the CA certificate(s) in this PEM file.
    Ca(std::path::PathBuf),
}

/// A reqwest client on rustls with ring that trusts as `trust` says, times every request out
/// after `timeout` (connect, send and body) and follows no redirects (a request goes where it
/// was configured to, or fails). `key` is the config key named in errors.
pub fn http_client(
    trust: &Trust,
    timeout: std::time::Duration,
    key: &'static str,
) -> Result<reqwest::Client, crate::verify::SetupError> {
    let mut tls = trusting(trust, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("idgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::verify::SetupError::Invalid {
            key,
            detail: format!("HTTP client: {e}"),
        })
}

/// The rustls client config for `trust`, on the ring provider.
fn trusting(trust: &Trust, key: &'static str) -> Result<ClientConfig, crate::verify::SetupError> {
    use crate::verify::SetupError;
    let invalid = |detail: String| SetupError::Invalid { key, detail };
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS: {e}")))?;
    match trust {
        // reqwest builds TLS even for plain HTTP; nothing is trusted, as nothing is used.
        Trust::Loopback => Ok(builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()),
        Trust::System => builder
            .with_platform_verifier()
            .map(|b| b.with_no_client_auth())
            .map_err(|e| {
                invalid(format!(
                    "the system's trusted roots are unusable ({e}); install ca-certificates or name a CA file"
                ))
            }),
        Trust::Ca(path) => {
            let file = PemFile { key, path };
            client_config_from_files(file, None).map_err(|e| match e {
                TlsError::File { key, path, detail } => SetupError::File {
                    key,
                    path: path.display().to_string(),
                    detail,
                },
                other => invalid(other.to_string()),
            })
        }
    }
}
