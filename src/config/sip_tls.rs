//! `[sip]`'s TLS listener (RFC 3261 §26: `transport=tls`, port 5061): where it listens and the
//! PEM certificate chain and private key it presents. The pair is loaded here: once at start, so
//! that `idgate serve` and `idgate check-config` refuse a missing, unreadable or mismatched pair
//! naming the key, and again by the SIP layer on every hot reload.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::Problem;
use super::sections::{SipConfig, Transport};

/// The TLS listener's port when `sip.tls_listen` is not set (RFC 3261 §19.1.2).
pub const DEFAULT_TLS_PORT: u16 = 5061;

/// The certificate and private key files of the SIP TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `sip.tls_certificate`: the PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// `sip.tls_private_key`: the PEM private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub private_key: PathBuf,
}

/// Why a certificate/key pair cannot be used. Each names the config key and the file, never the
/// file's contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The certificate file is missing, unreadable or holds no PEM certificate.
    #[error("sip.tls_certificate: {}: {detail}", .path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The key file is missing, unreadable, encrypted or holds no usable private key.
    #[error("sip.tls_private_key: {}: {detail}", .path.display())]
    PrivateKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The private key does not belong to the certificate (or rustls refused the pair).
    #[error(
        "sip.tls_private_key: {}: does not match the certificate in {}: {detail}",
        .private_key.display(),
        .certificate.display()
    )]
    Mismatch {
        /// The key file.
        private_key: PathBuf,
        /// The certificate file.
        certificate: PathBuf,
        /// What rustls said.
        detail: String,
    },
}

impl TlsFileError {
    /// The config key to fix.
    pub fn key(&self) -> &'static str {
        match self {
            TlsFileError::Certificate { .. } => "sip.tls_certificate",
            TlsFileError::PrivateKey { .. } | TlsFileError::Mismatch { .. } => {
                "sip.tls_private_key"
            }
        }
    }

    /// The file to fix.
    pub fn path(&self) -> &Path {
        match self {
            TlsFileError::Certificate { path, .. } | TlsFileError::PrivateKey { path, .. } => path,
            TlsFileError::Mismatch { private_key, .. } => private_key,
        }
    }

    /// What is wrong, with the file but without the key name (config errors add the key).
    fn detail(&self) -> String {
        let text = self.to_string();
        let prefix = format!("{}: ", self.key());
        text.strip_prefix(&prefix).unwrap_or(&text).to_owned()
    }
}

impl TlsFiles {
    /// Reads both files and checks that the key belongs to the leaf certificate, with rustls's
    /// `ring` provider (the one this binary links).
    pub fn load(&self) -> Result<Arc<CertifiedKey>, TlsFileError> {
        let cert_error = |detail: String| TlsFileError::Certificate {
            path: self.certificate.clone(),
            detail,
        };
        let key_error = |detail: String| TlsFileError::PrivateKey {
            path: self.private_key.clone(),
            detail,
        };
        let cert_pem = std::fs::read(&self.certificate).map_err(|e| cert_error(e.to_string()))?;
        let key_pem = std::fs::read(&self.private_key).map_err(|e| key_error(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_error(format!("not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(cert_error("no CERTIFICATE in the PEM".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            if key_pem.windows(21).any(|w| w == b"ENCRYPTED PRIVATE KEY") {
                key_error("the private key is encrypted: decrypt it first".to_owned())
            } else {
                key_error(format!("no usable PRIVATE KEY: {e}"))
            }
        })?;
        let provider = rustls::crypto::ring::default_provider();
        CertifiedKey::from_der(certs, key, &provider)
            .map(Arc::new)
            .map_err(|e| TlsFileError::Mismatch {
                private_key: self.private_key.clone(),
                certificate: self.certificate.clone(),
                detail: e.to_string(),
            })
    }
}

impl SipConfig {
    /// Whether `"tls"` is in `sip.transports`.
    pub fn tls_enabled(&self) -> bool {
        self.transports.contains(&Transport::Tls)
    }

    /// `sip.tls_listen`, or the listen address with port 5061.
    pub fn tls_listen_addr(&self) -> SocketAddr {
        self.tls_listen
            .unwrap_or_else(|| SocketAddr::new(self.listen.ip(), DEFAULT_TLS_PORT))
    }

    /// The certificate and key files, when both are set.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            certificate: self.tls_certificate.clone()?,
            private_key: self.tls_private_key.clone()?,
        })
    }

    /// The TLS keys' checks: both files given and usable when `"tls"` is on, none of the keys
    /// set when it is off, and a plain transport beside it.
    pub(super) fn validate_tls(&self) -> Result<(), Problem> {
        if !self.tls_enabled() {
            let set = [
                ("sip.tls_listen", self.tls_listen.is_some()),
                ("sip.tls_certificate", self.tls_certificate.is_some()),
                ("sip.tls_private_key", self.tls_private_key.is_some()),
            ];
            if let Some((key, _)) = set.iter().find(|(_, is_set)| *is_set) {
                let problem = "is set but \"tls\" is not in sip.transports";
                return Err(Problem::new(*key, problem));
            }
            return Ok(());
        }
        if !self.transports.contains(&Transport::Udp) && !self.transports.contains(&Transport::Tcp)
        {
            let problem = "\"tls\" needs \"udp\" or \"tcp\" beside it (the queue leg uses them)";
            return Err(Problem::new("sip.transports", problem));
        }
        let required = "is required when sip.transports has \"tls\" (a PEM file path)";
        if self.tls_certificate.is_none() {
            return Err(Problem::new("sip.tls_certificate", required));
        }
        let Some(files) = self.tls_files() else {
            return Err(Problem::new("sip.tls_private_key", required));
        };
        let tls_listen = self.tls_listen_addr();
        if self.transports.contains(&Transport::Tcp) && tls_listen == self.listen {
            let problem = format!("{tls_listen} is sip.listen's TCP address: use another port");
            return Err(Problem::new("sip.tls_listen", problem));
        }
        files
            .load()
            .map(|_| ())
            .map_err(|e| Problem::new(e.key(), e.detail()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> TlsFiles {
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let files = TlsFiles {
            certificate: dir.join(format!("{name}.crt")),
            private_key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.certificate, issued.cert.pem()).unwrap();
        std::fs::write(&files.private_key, issued.signing_key.serialize_pem()).unwrap();
        files
    }

    fn tls_config(files: &TlsFiles) -> SipConfig {
        SipConfig {
            transports: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
            tls_certificate: Some(files.certificate.clone()),
            tls_private_key: Some(files.private_key.clone()),
            ..SipConfig::default()
        }
    }

    #[test]
    fn a_matching_pair_loads_and_the_listener_defaults_to_port_5061() {
        let dir = tempfile::tempdir().unwrap();
        let files = pair(dir.path(), "a");
        assert!(files.load().is_ok());
        let config = tls_config(&files);
        assert_eq!(config.validate_tls(), Ok(()));
        assert_eq!(config.tls_listen_addr().to_string(), "127.0.0.1:5061");
    }

    #[test]
    fn a_missing_file_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = pair(dir.path(), "a");
        files.certificate = dir.path().join("nowhere.crt");
        let problem = tls_config(&files).validate_tls().unwrap_err();
        assert_eq!(problem.key, "sip.tls_certificate");
        assert!(problem.problem.contains("nowhere.crt"), "{problem:?}");

        let mut files = pair(dir.path(), "b");
        files.private_key = dir.path().join("nowhere.key");
        let problem = tls_config(&files).validate_tls().unwrap_err();
        assert_eq!(problem.key, "sip.tls_private_key");
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let a = pair(dir.path(), "a");
        let b = pair(dir.path(), "b");
        let crossed = TlsFiles {
            certificate: a.certificate,
            private_key: b.private_key,
        };
        let err = crossed.load().unwrap_err();
        assert!(matches!(err, TlsFileError::Mismatch { .. }), "{err}");
        assert_eq!(err.key(), "sip.tls_private_key");
        assert!(!err.to_string().contains("PRIVATE KEY-----"));
    }

    #[test]
    fn garbage_is_not_a_certificate_or_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = pair(dir.path(), "a");
        std::fs::write(&files.certificate, "not pem").unwrap();
        let err = files.load().unwrap_err();
        assert_eq!(err.key(), "sip.tls_certificate");
        let files = pair(dir.path(), "b");
        std::fs::write(&files.private_key, "not pem").unwrap();
        assert_eq!(files.load().unwrap_err().key(), "sip.tls_private_key");
    }

    #[test]
    fn tls_needs_both_files_and_a_plain_transport() {
        let config = SipConfig {
            transports: vec![Transport::Udp, Transport::Tls],
            ..SipConfig::default()
        };
        assert_eq!(
            config.validate_tls().unwrap_err().key,
            "sip.tls_certificate"
        );
        let config = SipConfig {
            tls_certificate: Some("a.crt".into()),
            ..config
        };
        assert_eq!(
            config.validate_tls().unwrap_err().key,
            "sip.tls_private_key"
        );
        let config = SipConfig {
            transports: vec![Transport::Tls],
            ..config
        };
        assert_eq!(config.validate_tls().unwrap_err().key, "sip.transports");
    }

    #[test]
    fn tls_keys_without_tls_are_refused() {
        let config = SipConfig {
            tls_certificate: Some("a.crt".into()),
            ..SipConfig::default()
        };
        assert_eq!(
            config.validate_tls().unwrap_err().key,
            "sip.tls_certificate"
        );
    }

    #[test]
    fn tls_cannot_share_the_tcp_address() {
        let dir = tempfile::tempdir().unwrap();
        let files = pair(dir.path(), "a");
        let config = SipConfig {
            tls_listen: Some("127.0.0.1:5060".parse().unwrap()),
            ..tls_config(&files)
        };
        assert_eq!(config.validate_tls().unwrap_err().key, "sip.tls_listen");
    }
}
