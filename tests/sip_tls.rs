//! SIP over TLS (RFC 3261 §26) end to end: idgate as a process with a TLS listener, a small
//! rustls user agent written here as the caller (Debian's SIPp is built without OpenSSL, so it
//! cannot speak TLS), SIPp over UDP as the agent queue. Certificates come from a throw-away CA
//! made with rcgen; the client trusts only that CA and checks the certificate it is served.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::{Idgate, Sipp, assert_ok, free_port, header, wait_for_log};

/// A simulator that answers fast, so a verified call takes well under a second.
const FAST_APPROVE: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n";

/// A route file sending every call to the queue at `port`.
fn route(port: u16) -> String {
    format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\ntarget = \"sip:queue@127.0.0.1:{port}\"\n"
    )
}

/// A test CA and the leaves it signs.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate and its key, in PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Leaf {
    fn der(&self) -> Vec<u8> {
        CertificateDer::from_pem_slice(self.cert.as_bytes())
            .unwrap()
            .to_vec()
    }
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "idgate SIP TLS test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        Pki { ca }
    }

    /// A server certificate for 127.0.0.1 with `common_name` (each call: a new key and serial).
    fn leaf(&self, common_name: &str) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// Where idgate's certificate and key live in a test.
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn in_dir(dir: &Path) -> Files {
        Files {
            cert: dir.join("sip-tls.crt"),
            key: dir.join("sip-tls.key"),
        }
    }

    /// Replaces both files the way a certificate renewal tool does: write aside, then rename.
    fn install(&self, cert: &str, key: &str) {
        for (path, text) in [(&self.key, key), (&self.cert, cert)] {
            let aside = path.with_extension("new");
            std::fs::write(&aside, text).unwrap();
            std::fs::rename(&aside, path).unwrap();
        }
    }

    /// The `[sip]` lines for a TLS listener on `port` with these files.
    fn sip_lines(&self, port: u16) -> String {
        format!(
            "transports = [\"udp\", \"tcp\", \"tls\"]\ntls_listen = \"127.0.0.1:{port}\"\n\
             tls_certificate = \"{}\"\ntls_private_key = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }
}

/// idgate with a TLS listener serving `leaf`; the files stay in `dir` for reload tests.
fn start_with_tls(dir: &Path, leaf: &Leaf, routes: &str) -> (Idgate, Files, u16) {
    let files = Files::in_dir(dir);
    files.install(&leaf.cert, &leaf.key);
    let port = free_port();
    let idgate = Idgate::start_with(routes, FAST_APPROVE, &files.sip_lines(port));
    (idgate, files, port)
}

/// A SIP user agent over TLS on one connection, written by hand.
struct TlsUa {
    tls: StreamOwned<ClientConnection, TcpStream>,
    buffer: Vec<u8>,
    local_port: u16,
}

impl TlsUa {
    /// Connects and completes the handshake (the server's certificate is then known).
    fn connect(port: u16, config: Arc<ClientConfig>) -> Result<TlsUa, String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut conn = ClientConnection::new(config, name).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        let local_port = tcp.local_addr().unwrap().port();
        Ok(TlsUa {
            tls: StreamOwned::new(conn, tcp),
            buffer: Vec::new(),
            local_port,
        })
    }

    /// The leaf certificate the server presented, DER.
    fn server_certificate(&self) -> Vec<u8> {
        self.tls.conn.peer_certificates().unwrap()[0].to_vec()
    }

    fn send(&mut self, message: &str) {
        self.tls.write_all(message.as_bytes()).unwrap();
        self.tls.flush().unwrap();
    }

    /// The next whole message (framed by Content-Length), within 5 s.
    fn recv(&mut self) -> String {
        loop {
            while self.buffer.starts_with(b"\r\n") {
                self.buffer.drain(..2);
            }
            if let Some(n) = framed(&self.buffer) {
                let message: Vec<u8> = self.buffer.drain(..n).collect();
                return String::from_utf8_lossy(&message).into_owned();
            }
            let mut chunk = [0u8; 8192];
            match self.tls.read(&mut chunk) {
                Ok(0) => panic!(
                    "connection closed; buffered: {}",
                    String::from_utf8_lossy(&self.buffer)
                ),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) => panic!(
                    "no message ({e}); buffered: {}",
                    String::from_utf8_lossy(&self.buffer)
                ),
            }
        }
    }

    /// The first final response within `limit`, without failing: `None` if none came or the
    /// server closed the connection.
    fn final_response_within(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            while self.buffer.starts_with(b"\r\n") {
                self.buffer.drain(..2);
            }
            if let Some(n) = framed(&self.buffer) {
                let message: Vec<u8> = self.buffer.drain(..n).collect();
                let message = String::from_utf8_lossy(&message).into_owned();
                if message.starts_with("SIP/2.0 ") && !message.starts_with("SIP/2.0 1") {
                    return Some(message);
                }
                continue;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let socket = self.tls.get_ref();
            socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let mut chunk = [0u8; 8192];
            match self.tls.read(&mut chunk) {
                Ok(n) if n > 0 => self.buffer.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// The next final response (provisional ones skipped).
    fn final_response(&mut self) -> String {
        loop {
            let message = self.recv();
            if !message.starts_with("SIP/2.0 1") {
                return message;
            }
        }
    }

    /// An out-of-dialog OPTIONS on this connection; its final response.
    fn options(&mut self, tag: &str) -> String {
        let port = self.local_port;
        self.send(&format!(
            "OPTIONS sip:ping@127.0.0.1;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bK{tag};rport\r\n\
             From: <sip:probe@127.0.0.1>;tag={tag}\r\nTo: <sip:ping@127.0.0.1>\r\n\
             Call-ID: {tag}@tls-test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        ));
        self.final_response()
    }
}

/// The length of the first whole message in `buffer`, if it is complete.
fn framed(buffer: &[u8]) -> Option<usize> {
    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..end]);
    let length: usize = header(&head, "Content-Length")
        .or_else(|| header(&head, "l"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (buffer.len() >= end + length).then_some(end + length)
}

fn status(message: &str) -> u16 {
    message
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) until a new connection is served `expected`.
fn served_within(port: u16, pki: &Pki, expected: &[u8], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TlsUa::connect(port, pki.client_config())
            .is_ok_and(|ua| ua.server_certificate() == expected)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn options_over_tls_is_answered_200_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf("idgate-a");
    let (idgate, _files, port) = start_with_tls(dir.path(), &leaf, &route(5999));
    let mut ua = TlsUa::connect(port, pki.client_config()).expect("TLS handshake");
    assert_eq!(ua.server_certificate(), leaf.der());
    let response = ua.options("opt1");
    assert_eq!(status(&response), 200, "{response}\n{}", idgate.log());
    let via = header(&response, "Via").unwrap_or("");
    assert!(via.starts_with("SIP/2.0/TLS"), "{via}");
    // A second request on the same connection.
    assert_eq!(status(&ua.options("opt2")), 200);
}

#[test]
fn a_malformed_message_over_tls_gets_400_and_the_connection_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (idgate, _files, port) = start_with_tls(dir.path(), &pki.leaf("idgate-a"), &route(5999));
    let mut ua = TlsUa::connect(port, pki.client_config()).expect("TLS handshake");
    let local = ua.local_port;
    // RFC 3261 §8.1.1.5: the CSeq method must be the request's method.
    ua.send(&format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:{local};branch=z9hG4bKbad1;rport\r\n\
         From: <sip:probe@127.0.0.1>;tag=bad1\r\nTo: <sip:ping@127.0.0.1>\r\n\
         Call-ID: bad1@tls-test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    ));
    let refusal = ua.final_response();
    assert_eq!(status(&refusal), 400, "{refusal}\n{}", idgate.log());
    let response = ua.options("after-bad1");
    assert_eq!(status(&response), 200, "{response}");
}

#[test]
fn a_verified_call_over_tls_reaches_the_queue_and_idgate_hangs_up_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let queue_dir = tempfile::tempdir().unwrap();
    let mut queue = Sipp::start(queue_dir.path(), "queue_hangs_up.xml", &["-d", "1500"], 1);
    let (idgate, _files, port) =
        start_with_tls(dir.path(), &pki.leaf("idgate-a"), &route(queue.port));
    let mut ua = TlsUa::connect(port, pki.client_config()).expect("TLS handshake");
    let local = ua.local_port;
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let media_port = media.local_addr().unwrap().port();
    let sdp = format!(
        "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {media_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    );
    let dialog = "From: <sip:+46701234567@127.0.0.1>;tag=tlscaller\r\n\
                  Call-ID: tls-call@tls-test\r\nMax-Forwards: 70\r\n";
    ua.send(&format!(
        "INVITE sip:5000@127.0.0.1:{port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:{local};branch=z9hG4bKinv1;rport\r\n{dialog}\
         To: <sip:5000@127.0.0.1>\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:caller@127.0.0.1:{local};transport=tls>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    let ok = ua.final_response();
    assert_eq!(status(&ok), 200, "{ok}\n{}", idgate.log());
    let contact = header(&ok, "Contact").unwrap_or("");
    assert!(
        contact.to_ascii_lowercase().contains("transport=tls")
            && contact.contains(&format!(":{port}")),
        "the Contact must send in-dialog requests back over TLS: {contact}"
    );
    let to = header(&ok, "To").unwrap().to_owned();
    ua.send(&format!(
        "ACK sip:5000@127.0.0.1:{port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:{local};branch=z9hG4bKack1;rport\r\n{dialog}\
         To: {to}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ));

    // Verified, handed to the queue (over UDP, as routed), which hangs up after 1.5 s: idgate
    // then ends the caller's leg with a BYE on this TLS connection.
    let bye = ua.recv();
    assert!(
        bye.starts_with("BYE sip:caller@"),
        "{bye}\n{}",
        idgate.log()
    );
    let via = header(&bye, "Via").unwrap_or("");
    assert!(via.starts_with("SIP/2.0/TLS"), "{via}");
    let mut reply = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let value = header(&bye, name).unwrap();
        reply.push_str(&format!("{name}: {value}\r\n"));
    }
    reply.push_str("Content-Length: 0\r\n\r\n");
    ua.send(&reply);

    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.invite_with_status("verified");
    assert!(
        header(&invite, "Via").is_some_and(|v| v.starts_with("SIP/2.0/UDP")),
        "the queue leg stays as routed: {invite}"
    );
    wait_for_log(&idgate, "outcome=\"connected\"");
}

#[test]
fn a_renewed_certificate_is_served_to_new_connections_while_old_ones_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let old = pki.leaf("idgate-old");
    let (idgate, files, port) = start_with_tls(dir.path(), &old, &route(5999));
    let mut before = TlsUa::connect(port, pki.client_config()).expect("TLS handshake");
    assert_eq!(before.server_certificate(), old.der());
    assert_eq!(status(&before.options("before-1")), 200);

    let new = pki.leaf("idgate-new");
    assert_ne!(new.der(), old.der());
    files.install(&new.cert, &new.key);
    // Picked up by the modification-time poll (every 5 s), no signal sent.
    assert!(
        served_within(port, &pki, &new.der(), Duration::from_secs(15)),
        "the new certificate was not served\n{}",
        idgate.log()
    );
    let log = wait_for_log(&idgate, "SIP TLS certificate reloaded");
    assert!(log.contains("SIP TLS certificate reloaded"), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "no key material in the log");

    let mut after = TlsUa::connect(port, pki.client_config()).expect("TLS handshake");
    assert_eq!(after.server_certificate(), new.der());
    assert_eq!(status(&after.options("after-1")), 200);
    // The connection made before the renewal still works, on its original session.
    assert_eq!(before.server_certificate(), old.der());
    assert_eq!(status(&before.options("before-2")), 200);
}

#[test]
fn a_bad_replacement_pair_is_refused_and_the_old_certificate_stays() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let old = pki.leaf("idgate-old");
    let (idgate, files, port) = start_with_tls(dir.path(), &old, &route(5999));
    // A new certificate installed with the old key: they do not match.
    let new = pki.leaf("idgate-new");
    files.install(&new.cert, &old.key);
    idgate.signal("HUP");
    let log = wait_for_log(&idgate, "SIP TLS certificate not reloaded");
    assert!(
        log.contains("SIP TLS certificate not reloaded"),
        "no refusal logged\n{log}"
    );
    assert!(log.contains(&files.key.display().to_string()), "{log}");
    assert!(log.contains("sip.tls_private_key"), "{log}");
    let mut ua = TlsUa::connect(port, pki.client_config()).expect("TLS handshake");
    assert_eq!(ua.server_certificate(), old.der(), "the old pair stays");
    assert_eq!(status(&ua.options("still-1")), 200);

    // Fixing the key then serves the new certificate (SIGHUP reloads at once).
    files.install(&new.cert, &new.key);
    idgate.signal("HUP");
    assert!(
        served_within(port, &pki, &new.der(), Duration::from_secs(10)),
        "{}",
        idgate.log()
    );
}

/// `idgate check-config` with `[sip]` lines; its exit code and its output (stdout, stderr).
fn check_config(sip: &str, dir: &Path) -> (Option<i32>, String) {
    let path = dir.join("idgate.toml");
    std::fs::write(&path, format!("[sip]\n{sip}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idgate"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run idgate");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code(),
        text + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn config_errors_name_the_tls_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let files = Files::in_dir(dir.path());
    let leaf = pki.leaf("idgate-a");
    files.install(&leaf.cert, &leaf.key);
    let port = free_port();

    let (code, stderr) = check_config(&files.sip_lines(port), dir.path());
    assert_eq!(code, Some(0), "a good pair passes: {stderr}");
    assert!(
        stderr.contains(&format!("sip tls:  127.0.0.1:{port}")),
        "{stderr}"
    );

    let missing = Files {
        cert: dir.path().join("missing.crt"),
        key: files.key.clone(),
    };
    let (code, stderr) = check_config(&missing.sip_lines(port), dir.path());
    assert_eq!(code, Some(1));
    assert!(stderr.contains("sip.tls_certificate"), "{stderr}");
    assert!(stderr.contains("missing.crt"), "{stderr}");

    let other = pki.leaf("idgate-b");
    std::fs::write(&files.key, &other.key).unwrap();
    let (code, stderr) = check_config(&files.sip_lines(port), dir.path());
    assert_eq!(code, Some(1));
    assert!(stderr.contains("sip.tls_private_key"), "{stderr}");
    assert!(stderr.contains("does not match"), "{stderr}");
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    // `serve` refuses the same pair before listening.
    let serve = Command::new(env!("CARGO_BIN_EXE_idgate"))
        .args(["serve", "--config"])
        .arg(dir.path().join("idgate.toml"))
        .output()
        .expect("run idgate");
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert_eq!(serve.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sip.tls_private_key"), "{stderr}");

    let (code, stderr) = check_config(
        "transports = [\"udp\", \"tls\"]\ntls_certificate = \"x.crt\"\n",
        dir.path(),
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("sip.tls_private_key"), "{stderr}");
}

/// RFC 4475's malformed requests that idgate must refuse with a status, sent over TLS: each is
/// answered with that status on its TLS connection, and where the message can still be framed
/// (its Content-Length is usable) the same connection answers OPTIONS afterwards.
#[test]
fn the_rfc4475_refusals_are_answered_over_tls_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (idgate, _files, port) = start_with_tls(dir.path(), &pki.leaf("idgate-a"), &route(5999));
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475");
    let table = std::fs::read_to_string(corpus.join("EXPECTED.tsv")).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in table.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, expected) = (cols[0], cols[2]);
        // clerr.dat's Content-Length runs past the end: a stream waits for the rest (tcp.rs).
        if expected.parse::<u16>().is_err() || file == "clerr.dat" {
            continue;
        }
        checked += 1;
        let bytes = std::fs::read(corpus.join(file)).unwrap();
        let mut ua = TlsUa::connect(port, pki.client_config()).expect("TLS handshake");
        ua.tls.write_all(&bytes).unwrap();
        ua.tls.flush().unwrap();
        let got = ua.final_response_within(Duration::from_secs(4));
        let got_status = got.as_deref().map_or(0, status);
        if got_status.to_string() != expected {
            failures.push(format!("{file}: expected {expected}, got {got:?}"));
        }
        let unframeable = file.starts_with("ncl") || file.starts_with("mcl");
        if !unframeable && status(&ua.options(&format!("after-{checked}"))) != 200 {
            failures.push(format!(
                "{file}: the connection did not answer OPTIONS afterwards"
            ));
        }
    }
    assert!(checked >= 15, "only {checked} corpus rows");
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        idgate.log()
    );
}
