//! SDES-SRTP interop with a real user agent: baresip (Debian's `baresip-core` 1.0.0, its
//! `srtp.so` over libre's own SRTP code, not the crate idgate uses) calls idgate with
//! `mediaenc=srtp-mand` (`RTP/SAVP` and `a=crypto`), all on loopback.
//!
//! What it shows: idgate answers `RTP/SAVP` with its own key; baresip decrypts idgate's
//! prompts and hold audio (it reports SRTP enabled, incoming RTP, a non-zero receive bit rate
//! and no decryption failure); idgate decrypts baresip's RFC 4733 digits (a personal number
//! typed on a keypad route, which gets the caller verified) and hands the call to the queue.
//!
//! baresip sends one plain 16-byte RTCP packet (an APP "PING" pinhole) as its stream starts,
//! before SRTP is on; idgate drops it as unauthenticated and counts it in
//! `idgate_srtp_auth_failures_total`, hence the small allowance below.

mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use support::baresip::{self, strip_ansi};
use support::{Idgate, Sipp, free_port, header, wait_for_log};

/// How long any one wait of the test may take (a loaded 2-core machine).
const LIMIT: Duration = Duration::from_secs(90);

/// The personal number typed (ten digits: the century is inferred), then `#`.
const TYPED: &str = "8112289874#";

/// A simulator that approves at once.
const FAST_APPROVE: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n";

/// A headless baresip with SRTP mandatory and a UDP console (`cons`) the test types keys on.
struct Baresip {
    child: Child,
    output: PathBuf,
    console: u16,
    /// Where `sndfile` writes what baresip decoded (`dump-*-dec.wav`) and encoded.
    dumps: PathBuf,
}

impl Baresip {
    fn start(dir: &Path, uri: &str) -> Baresip {
        let (sip_port, console) = (free_port(), free_port());
        let snd = dir.join("snd");
        std::fs::create_dir_all(&snd).expect("baresip's audio dump dir");
        let extra = format!(
            "module\t\t\tsrtp.so\n\
             module\t\t\tcons.so\n\
             cons_listen\t\t127.0.0.1:{console}\n\
             module\t\t\tsndfile.so\n\
             snd_path\t\t{snd}\n",
            snd = snd.display()
        );
        let setup = baresip::Setup {
            sip_port,
            extra: &extra,
            account: "\"Test Caller\" <sip:+46701234567@127.0.0.1>;regint=0;mediaenc=srtp-mand\n",
            uri,
            quit_after_secs: 150,
        };
        let (child, output) = baresip::spawn(dir, &setup);
        Baresip {
            child,
            output,
            console,
            dumps: snd,
        }
    }

    /// baresip's output, without colours, one line per status update.
    fn report(&self) -> String {
        let raw = std::fs::read_to_string(&self.output).unwrap_or_default();
        strip_ansi(&raw).replace('\r', "\n")
    }

    /// Polls (bounded) until a line of baresip's output holds `needle`.
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + LIMIT;
        while !self.report().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "baresip never printed {needle:?}:\n{}",
                self.report()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types keys on baresip's console, one datagram each, as a person would.
    fn type_keys(&self, keys: &str) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("console socket");
        for key in keys.chars() {
            let mut buf = [0u8; 4];
            socket
                .send_to(
                    key.encode_utf8(&mut buf).as_bytes(),
                    ("127.0.0.1", self.console),
                )
                .expect("type a key");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The audio baresip decoded from idgate's SRTP, as `sndfile` wrote it once the call
    /// ended (polled, bounded: the WAV header is completed on close).
    fn decoded_audio(&self) -> Vec<i16> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let dump = std::fs::read_dir(&self.dumps)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("-dec.wav"));
            let samples = dump.and_then(|p| hound::WavReader::open(p).ok()).map(|r| {
                r.into_samples::<i16>()
                    .filter_map(Result::ok)
                    .collect::<Vec<_>>()
            });
            match samples {
                Some(samples) if !samples.is_empty() => return samples,
                _ if Instant::now() > deadline => return Vec::new(),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls (bounded) until the queue has received idgate's INVITE.
fn queue_invite(queue: &Sipp, idgate: &Idgate, baresip: &Baresip) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(invite) = queue.received("INVITE") {
            return invite;
        }
        assert!(
            Instant::now() < deadline,
            "the call never reached the queue\n--- baresip ---\n{}\n--- idgate ---\n{}",
            baresip.report(),
            idgate.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn baresip_calls_with_sdes_srtp_hears_idgate_and_types_its_number_through_srtp() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let routes = format!(
        "[[route]]\nname = \"keypad\"\nmatch = \"*\"\ndirectory = false\nphone_push = false\n\
         target = \"sip:queue@127.0.0.1:{}\"\n",
        queue.port
    );
    let idgate = Idgate::start(&routes, FAST_APPROVE);
    let baresip = Baresip::start(dir.path(), &format!("sip:468612345@{}", idgate.sip_addr()));

    // The offer and answer are RTP/SAVP with one a=crypto each; SRTP is on in baresip.
    baresip.wait_for("SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)");
    let output = baresip.report();
    let answer = output
        .split("o=idgate ")
        .nth(1)
        .expect("idgate's SDP answer in baresip's trace");
    assert!(answer.contains(" RTP/SAVP 0 101"), "{output}");
    let ours = answer
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
        })
        .expect("idgate's a=crypto answers tag 1");
    assert_eq!(ours.trim().len(), 40, "{ours}");
    assert!(
        !idgate.log().contains(ours.trim()),
        "idgate's key reached its log"
    );

    // idgate's greeting reaches baresip decrypted; the number is typed on the keypad prompt.
    baresip.wait_for("incoming rtp for 'audio' established");
    let prompt = "state=\"collecting_digits\" action=\"play\"";
    let log = wait_for_log(&idgate, prompt);
    assert!(log.contains(prompt), "no keypad prompt:\n{log}");
    baresip.type_keys(TYPED);

    // Decoded through SRTP: verified, and handed to the queue with the identity headers.
    let invite = queue_invite(&queue, &idgate, &baresip);
    assert_eq!(
        header(&invite, "X-Identity-Status"),
        Some("verified"),
        "{invite}"
    );
    assert_eq!(header(&invite, "X-Identity-Subject"), Some("19811228-****"));
    assert!(
        !idgate.log().contains("8112289874"),
        "typed digits never logged"
    );

    let output = baresip.report();
    assert!(
        !output.contains("failed to decrypt") && !output.contains("failed to encrypt"),
        "baresip reported SRTP errors:\n{output}"
    );
    let failures = idgate
        .metric("idgate_srtp_auth_failures_total")
        .expect("the SRTP failure counter");
    assert!(
        failures <= 2.0,
        "{failures} SRTP packets failed authentication (baresip's plain pinhole is one)"
    );

    // baresip hangs up; idgate ends the queue leg, so the queue's scenario completes.
    baresip.type_keys("/hangup\n");
    let status = queue.wait(LIMIT);
    assert!(
        status.success(),
        "queue SIPp failed ({status})\n{}\n--- idgate ---\n{}",
        queue.trace(),
        idgate.log()
    );

    // What baresip decrypted and decoded: seconds of idgate's prompts, not silence. (libre
    // drops a packet whose tag does not verify before decoding, so this audio is authentic.)
    baresip.wait_for("terminated");
    let decoded = baresip.decoded_audio();
    let loud = decoded.iter().filter(|s| s.unsigned_abs() > 1000).count();
    assert!(
        decoded.len() >= 8000 * 3 && loud >= 8000,
        "baresip decoded {} samples, {loud} loud ones:\n{}",
        decoded.len(),
        baresip.report()
    );
}
