//! mTLS round trips through `serve_tls`, and how bad TLS material is reported.

use super::*;

/// A router answering `POST /ping` with `pong`.
fn router() -> axum::Router {
    axum::Router::new().route("/ping", axum::routing::post(|| async { "pong" }))
}

/// POSTs to `/ping` with `tls`; the body on success.
async fn ping(addr: SocketAddr, tls: ClientConfig) -> Result<String, reqwest::Error> {
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("https://127.0.0.1:{}/ping", addr.port());
    client
        .post(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

#[tokio::test]
async fn an_mtls_round_trip_works() {
    let pki = TestPki::generate();
    let (addr, server) = serve_tls(router(), pki.server_config(true)).await.unwrap();
    assert_eq!(ping(addr, pki.client_config()).await.unwrap(), "pong");
    server.abort();
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_when_one_is_required() {
    let pki = TestPki::generate();
    let (addr, server) = serve_tls(router(), pki.server_config(true)).await.unwrap();
    let anonymous = client_config(pki.server_ca_pem.as_bytes(), None).unwrap();
    assert!(ping(addr, anonymous.clone()).await.is_err());
    // The same client is fine where no certificate is required.
    let (open, open_server) = serve_tls(router(), pki.server_config(false)).await.unwrap();
    assert_eq!(ping(open, anonymous).await.unwrap(), "pong");
    server.abort();
    open_server.abort();
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() {
    let (pki, other) = (TestPki::generate(), TestPki::generate());
    let (addr, server) = serve_tls(router(), pki.server_config(true)).await.unwrap();
    let cert = (
        pki.client_cert_pem.as_bytes(),
        pki.client_key_pem.as_bytes(),
    );
    let wrong_ca = client_config(other.server_ca_pem.as_bytes(), Some(cert)).unwrap();
    assert!(ping(addr, wrong_ca).await.is_err());
    // And a client certificate from another client CA is refused by the server.
    assert!(ping(addr, other_client(&pki, &other)).await.is_err());
    server.abort();
}

/// Trusts `pki`'s server but presents `other`'s client certificate.
fn other_client(pki: &TestPki, other: &TestPki) -> ClientConfig {
    let cert = (
        other.client_cert_pem.as_bytes(),
        other.client_key_pem.as_bytes(),
    );
    client_config(pki.server_ca_pem.as_bytes(), Some(cert)).unwrap()
}

#[test]
fn bad_pem_is_reported_by_input() {
    let pki = TestPki::generate();
    let err = client_config(b"not pem", None).unwrap_err();
    assert!(matches!(err, TlsError::Pem { what: "CA", .. }), "{err}");
    let no_key = (pki.client_cert_pem.as_bytes(), &b""[..]);
    let err = client_config(pki.server_ca_pem.as_bytes(), Some(no_key)).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Pem {
                what: "client key",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn file_errors_name_the_key_and_the_path() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("ca.pem", &pki.server_ca_pem);
    let cert = write("cert.pem", &pki.client_cert_pem);
    let key = write("key.pem", &pki.client_key_pem);
    let other_key = write("other.pem", &TestPki::generate().client_key_pem);
    let missing = dir.path().join("missing.pem");
    fn file<'a>(key: &'static str, path: &'a Path) -> PemFile<'a> {
        PemFile { key, path }
    }
    let ok = client_config_from_files(
        file("p.ca", &ca),
        Some((file("p.cert", &cert), file("p.key", &key))),
    );
    assert!(ok.is_ok());
    let err = client_config_from_files(file("p.ca", &missing), None).unwrap_err();
    assert!(err.to_string().starts_with("p.ca: "), "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = client_config_from_files(file("p.ca", &key), None).unwrap_err();
    assert!(err.to_string().starts_with("p.ca: "), "{err}");
    let mismatch = Some((file("p.cert", &cert), file("p.key", &other_key)));
    let err = client_config_from_files(file("p.ca", &ca), mismatch).unwrap_err();
    assert!(err.to_string().starts_with("p.key: "), "{err}");
}
