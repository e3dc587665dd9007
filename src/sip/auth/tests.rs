//! The digest core against the RFCs' worked examples, and the admission policy as a trunk, a
//! guesser and a replaying attacker see it.

use std::net::IpAddr;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::digest::{Algorithm, DigestInput, constant_time_eq, parse_credentials, response};
use super::*;
use crate::config::{SipAuthConfig, Token, TrunkSecret};

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// RFC 2617 §3.5: the MD5, qop=auth example (response given in the RFC).
#[test]
fn rfc_2617_md5_example() {
    let input = DigestInput {
        algorithm: Algorithm::Md5,
        username: "Mufasa",
        realm: "testrealm@host.com",
        password: "Circle Of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        nc: "00000001",
        cnonce: "0a4f113b",
    };
    // The RFC's value, and the same computed step by step here from §3.2.2.1.
    let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
    let ha2 = md5_hex("GET:/dir/index.html");
    let by_hand = md5_hex(&format!(
        "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"
    ));
    assert_eq!(by_hand, "6629fae49393a05397450978507c4ef1");
    assert_eq!(response(&input), by_hand);
}

/// RFC 7616 §3.9.1 (the example RFC 8760 refers to): the same request with SHA-256 and MD5.
#[test]
fn rfc_7616_sha256_and_md5_example() {
    let input = |algorithm| DigestInput {
        algorithm,
        username: "Mufasa",
        realm: "http-auth@example.org",
        password: "Circle of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        nc: "00000001",
        cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    };
    let ha1 = sha256_hex("Mufasa:http-auth@example.org:Circle of Life");
    let ha2 = sha256_hex("GET:/dir/index.html");
    let by_hand = sha256_hex(&format!(
        "{ha1}:7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v:00000001:f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ:auth:{ha2}"
    ));
    assert_eq!(
        by_hand,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    assert_eq!(response(&input(Algorithm::Sha256)), by_hand);
    assert_eq!(
        response(&input(Algorithm::Md5)),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
}

#[test]
fn credentials_are_parsed_as_rfc_3261_writes_them() {
    let value = r#"Digest username="carrier", realm="idgate",
        nonce="abc", uri="sip:5000@127.0.0.1:5060", response="0123abcd",
        algorithm=SHA-256, cnonce="x\"y", opaque="", qop=auth, nc=0000012a"#;
    let c = parse_credentials(value).unwrap();
    assert_eq!(c.username, "carrier");
    assert_eq!(c.uri, "sip:5000@127.0.0.1:5060");
    assert_eq!(c.cnonce.as_deref(), Some("x\"y"));
    assert_eq!(c.nc.as_deref(), Some("0000012a"));
    assert_eq!(
        Algorithm::parse(c.algorithm.as_deref().unwrap()),
        Some(Algorithm::Sha256)
    );
    assert_eq!(Algorithm::parse("md5"), Some(Algorithm::Md5));
    assert_eq!(Algorithm::parse("MD5-sess"), None);

    let refused = [
        r#"Basic dXNlcjpwYXNz"#,
        r#"Digest username="a", realm="r", nonce="n", uri="u""#, // no response
        r#"Digest username="a", username="b", realm="r", nonce="n", uri="u", response="1""#,
        r#"Digest username="a, realm="r", nonce="n", uri="u", response="1""#,
        r#"Digest username="a" realm="r", nonce="n", uri="u", response="1""#,
        r#"Digest username=, realm="r", nonce="n", uri="u", response="1""#,
        "Digest",
    ];
    for value in refused {
        assert_eq!(parse_credentials(value), None, "{value}");
    }
}

#[test]
fn equality_is_exact() {
    assert!(constant_time_eq(b"abcd", b"abcd"));
    assert!(!constant_time_eq(b"abcd", b"abce"));
    assert!(!constant_time_eq(b"abcd", b"abc"));
}

// ---- the policy ----

const NOW: u64 = 1_800_000_000;
const URI: &str = "sip:5000@127.0.0.1:5060";
const TRUNK_IP: &str = "192.0.2.10";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn policy(mode: AuthMode, networks: &[&str]) -> TrunkAuth {
    let config = SipAuthConfig {
        mode,
        ..SipAuthConfig::default()
    };
    let trunk = TrunkSecret {
        name: "carrier".into(),
        username: "carrier-user".into(),
        password: Token::new("s3cret".into()),
        networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
    };
    TrunkAuth::with_key(&config, vec![trunk], &[7; 32])
}

fn invite<'a>(source: &str, trusted: bool, authorization: &'a [String]) -> InviteView<'a> {
    InviteView {
        source: Some(ip(source)),
        trusted_peer: trusted,
        method: "INVITE",
        request_uri: URI,
        authorization: authorization.iter().map(String::as_str).collect(),
    }
}

/// The nonce of the first challenge.
fn nonce_of(challenges: &[String]) -> String {
    let start = challenges[0].find("nonce=\"").unwrap() + 7;
    let rest = &challenges[0][start..];
    rest[..rest.find('"').unwrap()].to_owned()
}

struct Answer<'a> {
    algorithm: Algorithm,
    username: &'a str,
    password: &'a str,
    method: &'a str,
    uri: &'a str,
    nc: &'a str,
}

impl Default for Answer<'_> {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Md5,
            username: "carrier-user",
            password: "s3cret",
            method: "INVITE",
            uri: URI,
            nc: "00000001",
        }
    }
}

/// What a UAC sends back, computed with the digest function the RFC tests pin down.
fn authorization(nonce: &str, a: Answer<'_>) -> Vec<String> {
    let r = response(&DigestInput {
        algorithm: a.algorithm,
        username: a.username,
        realm: "idgate",
        password: a.password,
        method: a.method,
        uri: a.uri,
        nonce,
        nc: a.nc,
        cnonce: "c0ffee",
    });
    vec![format!(
        "Digest username=\"{}\", realm=\"idgate\", nonce=\"{nonce}\", uri=\"{}\", response=\"{r}\", algorithm={}, qop=auth, nc={}, cnonce=\"c0ffee\"",
        a.username,
        a.uri,
        a.algorithm.token(),
        a.nc
    )]
}

fn admitted_trunk(trusted_peer: bool) -> Decision {
    Decision::Admit {
        trusted_peer,
        trunk: Some("carrier".into()),
    }
}

#[test]
fn a_trunk_is_challenged_then_admitted_without_being_a_trusted_peer() {
    let auth = policy(AuthMode::PeersOrDigest, &[]);
    assert_eq!(
        auth.decide(NOW, &invite(TRUNK_IP, false, &[])),
        Decision::Challenge { stale: false }
    );
    let challenges = auth.challenges(NOW, ip(TRUNK_IP), false);
    assert_eq!(challenges.len(), 2);
    assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
    assert!(
        challenges
            .iter()
            .all(|c| c.starts_with("Digest realm=\"idgate\", nonce=\"")
                && c.contains("qop=\"auth\"")
                && !c.contains("stale"))
    );
    let nonce = nonce_of(&challenges);
    // Each call its own challenge (one second apart: another nonce).
    for (at, algorithm) in (NOW..).zip(Algorithm::OFFERED) {
        let nonce = nonce_of(&auth.challenges(at, ip(TRUNK_IP), false));
        let creds = authorization(
            &nonce,
            Answer {
                algorithm,
                ..Answer::default()
            },
        );
        assert_eq!(
            auth.decide(at + 10, &invite(TRUNK_IP, false, &creds)),
            admitted_trunk(false)
        );
    }
    // A trusted peer needs nothing in this mode.
    let peer = auth.decide(NOW, &invite("127.0.0.1", true, &[]));
    assert_eq!(
        peer,
        Decision::Admit {
            trusted_peer: true,
            trunk: None
        }
    );
    // Credentials for another realm are not ours: challenged.
    let other = vec![authorization(&nonce, Answer::default())[0].replace("\"idgate\"", "\"x\"")];
    assert_eq!(
        auth.decide(NOW, &invite(TRUNK_IP, false, &other)),
        Decision::Challenge { stale: false }
    );
}

#[test]
fn a_wrong_password_and_an_unknown_user_get_the_same_refusal() {
    let auth = policy(AuthMode::PeersOrDigest, &[]);
    let nonce = nonce_of(&auth.challenges(NOW, ip(TRUNK_IP), false));
    let wrong = authorization(
        &nonce,
        Answer {
            password: "guess",
            ..Answer::default()
        },
    );
    let unknown = authorization(
        &nonce,
        Answer {
            username: "admin",
            ..Answer::default()
        },
    );
    let bad = Decision::Refuse(Refusal::BadCredentials);
    assert_eq!(auth.decide(NOW, &invite(TRUNK_IP, false, &wrong)), bad);
    assert_eq!(auth.decide(NOW, &invite(TRUNK_IP, false, &unknown)), bad);
    // A wrong password with an expired nonce is still a wrong password, not a stale nonce.
    assert_eq!(
        auth.decide(NOW + 3600, &invite(TRUNK_IP, false, &wrong)),
        bad
    );
}

#[test]
fn credentials_for_another_method_or_uri_are_refused() {
    let auth = policy(AuthMode::PeersOrDigest, &[]);
    let nonce = nonce_of(&auth.challenges(NOW, ip(TRUNK_IP), false));
    // Computed for a BYE: the same text in an INVITE does not verify.
    let bye = authorization(
        &nonce,
        Answer {
            method: "BYE",
            ..Answer::default()
        },
    );
    assert_eq!(
        auth.decide(NOW, &invite(TRUNK_IP, false, &bye)),
        Decision::Refuse(Refusal::BadCredentials)
    );
    let other_uri = authorization(
        &nonce,
        Answer {
            uri: "sip:6000@127.0.0.1:5060",
            ..Answer::default()
        },
    );
    assert_eq!(
        auth.decide(NOW, &invite(TRUNK_IP, false, &other_uri)),
        Decision::Refuse(Refusal::WrongUri)
    );
    let no_qop = vec![authorization(&nonce, Answer::default())[0].replace("qop=auth, ", "")];
    assert_eq!(
        auth.decide(NOW, &invite(TRUNK_IP, false, &no_qop)),
        Decision::Refuse(Refusal::Malformed)
    );
}

#[test]
fn an_old_foreign_or_replayed_nonce_is_answered_stale() {
    let auth = policy(AuthMode::PeersOrDigest, &[]);
    let nonce = nonce_of(&auth.challenges(NOW, ip(TRUNK_IP), true));
    assert!(auth.challenges(NOW, ip(TRUNK_IP), true)[0].ends_with(", stale=true"));
    let creds = authorization(&nonce, Answer::default());
    let stale = Decision::Challenge { stale: true };
    // Expired (300 s by default).
    assert_eq!(
        auth.decide(NOW + 300, &invite(TRUNK_IP, false, &creds)),
        stale
    );
    // Issued to another address.
    assert_eq!(
        auth.decide(NOW, &invite("192.0.2.11", false, &creds)),
        stale
    );
    // Issued by another process (another key).
    let restarted = TrunkAuth::with_key(
        &SipAuthConfig::default(),
        auth.inner.trunks.clone(),
        &[8; 32],
    );
    assert_eq!(
        restarted.decide(NOW, &invite(TRUNK_IP, false, &creds)),
        stale
    );
    // Tampered issue time.
    let mut raw = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
    raw[7] ^= 1;
    let forged = authorization(&URL_SAFE_NO_PAD.encode(raw), Answer::default());
    assert_eq!(auth.decide(NOW, &invite(TRUNK_IP, false, &forged)), stale);
    // Used once: the same nonce count again is a replay; a higher one is the trunk's next call.
    assert_eq!(
        auth.decide(NOW + 1, &invite(TRUNK_IP, false, &creds)),
        admitted_trunk(false)
    );
    assert_eq!(
        auth.decide(NOW + 2, &invite(TRUNK_IP, false, &creds)),
        stale
    );
    let next = authorization(
        &nonce,
        Answer {
            nc: "00000002",
            ..Answer::default()
        },
    );
    assert_eq!(
        auth.decide(NOW + 3, &invite(TRUNK_IP, false, &next)),
        admitted_trunk(false)
    );
}

#[test]
fn a_trunk_outside_its_networks_is_refused() {
    let auth = policy(AuthMode::PeersOrDigest, &["192.0.2.0/28"]);
    let cases = [
        (TRUNK_IP, admitted_trunk(false)),
        ("::ffff:192.0.2.10", admitted_trunk(false)),
        ("198.51.100.1", Decision::Refuse(Refusal::BadCredentials)),
    ];
    for (at, (source, expected)) in (NOW..).zip(cases) {
        let nonce = nonce_of(&auth.challenges(at, ip(source), false));
        let creds = authorization(&nonce, Answer::default());
        assert_eq!(
            auth.decide(at, &invite(source, false, &creds)),
            expected,
            "{source}"
        );
    }
}

#[test]
fn each_mode_admits_what_it_says() {
    let untrusted = Decision::Refuse(Refusal::UntrustedSource);
    let challenge = Decision::Challenge { stale: false };
    let by_address = Decision::Admit {
        trusted_peer: true,
        trunk: None,
    };
    let none: [String; 0] = [];
    // (mode, trusted peer without credentials, stranger without credentials)
    let table = [
        (AuthMode::Peers, by_address.clone(), untrusted.clone()),
        (
            AuthMode::PeersOrDigest,
            by_address.clone(),
            challenge.clone(),
        ),
        (AuthMode::Digest, challenge.clone(), challenge.clone()),
        (
            AuthMode::PeersAndDigest,
            challenge.clone(),
            untrusted.clone(),
        ),
    ];
    for (mode, peer, stranger) in table {
        let auth = policy(mode, &[]);
        assert_eq!(
            auth.decide(NOW, &invite("10.0.0.1", true, &none)),
            peer,
            "{mode:?}"
        );
        assert_eq!(
            auth.decide(NOW, &invite(TRUNK_IP, false, &none)),
            stranger,
            "{mode:?}"
        );
    }
    // With credentials: a trusted peer keeps its trust; a stranger never gains it.
    for (mode, source, trusted) in [
        (AuthMode::Digest, "10.0.0.1", true),
        (AuthMode::Digest, TRUNK_IP, false),
        (AuthMode::PeersAndDigest, "10.0.0.1", true),
    ] {
        let auth = policy(mode, &[]);
        let nonce = nonce_of(&auth.challenges(NOW, ip(source), false));
        let creds = authorization(&nonce, Answer::default());
        let got = auth.decide(NOW, &invite(source, trusted, &creds));
        assert_eq!(got, admitted_trunk(trusted), "{mode:?} {source}");
    }
    // No trunks: the default mode is today's behaviour, 403 without a challenge.
    let peers_only = TrunkAuth::with_key(&SipAuthConfig::default(), Vec::new(), &[1; 32]);
    assert_eq!(
        peers_only.decide(NOW, &invite(TRUNK_IP, false, &none)),
        untrusted
    );
    assert_eq!(
        TrunkAuth::peers_only().decide(NOW, &invite(TRUNK_IP, false, &none)),
        untrusted
    );
}

#[test]
fn debug_shows_no_secret() {
    let auth = policy(AuthMode::Digest, &[]);
    let debug = format!("{auth:?}");
    assert!(
        debug.contains("carrier") && !debug.contains("s3cret"),
        "{debug}"
    );
}

#[test]
fn only_the_configured_algorithms_are_offered_and_accepted() {
    use crate::config::DigestAlgorithm;
    let trunks = policy(AuthMode::PeersOrDigest, &[]).inner.trunks.clone();
    let with = |algorithms: Vec<DigestAlgorithm>| {
        let config = SipAuthConfig {
            algorithms,
            ..SipAuthConfig::default()
        };
        TrunkAuth::with_key(&config, trunks.clone(), &[7; 32])
    };
    let md5_first = with(vec![DigestAlgorithm::Md5, DigestAlgorithm::Sha256]);
    let order: Vec<bool> = md5_first
        .challenges(NOW, ip(TRUNK_IP), false)
        .iter()
        .map(|c| c.contains("algorithm=MD5"))
        .collect();
    assert_eq!(order, [true, false]);

    let sha_only = with(vec![DigestAlgorithm::Sha256]);
    assert_eq!(sha_only.challenges(NOW, ip(TRUNK_IP), false).len(), 1);
    let nonce = nonce_of(&sha_only.challenges(NOW, ip(TRUNK_IP), false));
    let md5 = authorization(&nonce, Answer::default());
    assert_eq!(
        sha_only.decide(NOW, &invite(TRUNK_IP, false, &md5)),
        Decision::Refuse(Refusal::Malformed)
    );
    let sha = authorization(
        &nonce,
        Answer {
            algorithm: Algorithm::Sha256,
            ..Answer::default()
        },
    );
    assert_eq!(
        sha_only.decide(NOW, &invite(TRUNK_IP, false, &sha)),
        admitted_trunk(false)
    );
}

#[test]
fn two_calls_in_the_same_second_get_their_own_nonces() {
    let auth = policy(AuthMode::PeersOrDigest, &[]);
    let first = nonce_of(&auth.challenges(NOW, ip(TRUNK_IP), false));
    let second = nonce_of(&auth.challenges(NOW, ip(TRUNK_IP), false));
    assert_ne!(first, second);
    for nonce in [first, second] {
        let creds = authorization(&nonce, Answer::default());
        let got = auth.decide(NOW, &invite(TRUNK_IP, false, &creds));
        assert_eq!(got, admitted_trunk(false));
    }
}

// ---- the password-guessing limit ----

fn wrong(nonce: &str, nc: &str) -> Vec<String> {
    authorization(
        nonce,
        Answer {
            password: "guess",
            nc,
            ..Answer::default()
        },
    )
}

fn right(nonce: &str, nc: &str) -> Vec<String> {
    authorization(
        nonce,
        Answer {
            nc,
            ..Answer::default()
        },
    )
}

#[test]
fn too_many_failures_lock_a_source_out_even_with_the_right_password_until_the_window_passes() {
    let auth = policy(AuthMode::PeersOrDigest, &[]);
    let nonce = nonce_of(&auth.challenges(NOW, ip(TRUNK_IP), false));
    for i in 0..5 {
        let creds = wrong(&nonce, &format!("{:08x}", i + 1));
        let decision = auth.decide(NOW + i, &invite(TRUNK_IP, false, &creds));
        assert_eq!(decision, Decision::Refuse(Refusal::BadCredentials), "{i}");
    }
    // The 5th failure was at NOW + 4: locked out until NOW + 64, the right password included.
    let creds = right(&nonce, "00000010");
    for at in [NOW + 5, NOW + 63] {
        let decision = auth.decide(at, &invite(TRUNK_IP, false, &creds));
        assert_eq!(decision, Decision::Refuse(Refusal::LockedOut), "at {at}");
    }
    // Without credentials it is still challenged (nothing to guess with).
    let decision = auth.decide(NOW + 5, &invite(TRUNK_IP, false, &[]));
    assert_eq!(decision, Decision::Challenge { stale: false });
    // Another source is not affected.
    let other = "198.51.100.7";
    let other_nonce = nonce_of(&auth.challenges(NOW + 5, ip(other), false));
    let creds_other = right(&other_nonce, "00000001");
    let decision = auth.decide(NOW + 5, &invite(other, false, &creds_other));
    assert_eq!(decision, admitted_trunk(false));
    // Once the window has passed, the right password gets through.
    let decision = auth.decide(NOW + 64, &invite(TRUNK_IP, false, &creds));
    assert_eq!(decision, admitted_trunk(false));
}

#[test]
fn failures_count_only_within_the_window_and_only_wrong_answers_count() {
    let auth = policy(AuthMode::PeersOrDigest, &[]);
    let nonce = nonce_of(&auth.challenges(NOW, ip(TRUNK_IP), false));
    for i in 0..4 {
        auth.decide(
            NOW,
            &invite(TRUNK_IP, false, &wrong(&nonce, &format!("{i:08x}"))),
        );
    }
    // Successes, malformed credentials and requests without credentials do not count.
    let ok = auth.decide(
        NOW + 1,
        &invite(TRUNK_IP, false, &right(&nonce, "00000100")),
    );
    assert_eq!(ok, admitted_trunk(false));
    let mut malformed = right(&nonce, "00000101");
    malformed[0] = malformed[0].replace(", qop=auth", "");
    let decision = auth.decide(NOW + 1, &invite(TRUNK_IP, false, &malformed));
    assert_eq!(decision, Decision::Refuse(Refusal::Malformed));
    let decision = auth.decide(
        NOW + 1,
        &invite(TRUNK_IP, false, &right(&nonce, "00000102")),
    );
    assert_eq!(decision, admitted_trunk(false));
    // The 5th failure, but 60 s after the first: a new window, not a lockout.
    let late = wrong(&nonce, "00000200");
    auth.decide(NOW + 60, &invite(TRUNK_IP, false, &late));
    let decision = auth.decide(
        NOW + 61,
        &invite(TRUNK_IP, false, &right(&nonce, "00000201")),
    );
    assert_eq!(decision, admitted_trunk(false));
    // A wrong uri counts as a failure: four more make five in this window.
    let wrong_uri = authorization(
        &nonce,
        Answer {
            uri: "sip:5001@127.0.0.1:5060",
            nc: "00000300",
            ..Answer::default()
        },
    );
    for _ in 0..4 {
        let decision = auth.decide(NOW + 62, &invite(TRUNK_IP, false, &wrong_uri));
        assert_eq!(decision, Decision::Refuse(Refusal::WrongUri));
    }
    let decision = auth.decide(
        NOW + 62,
        &invite(TRUNK_IP, false, &right(&nonce, "00000301")),
    );
    assert_eq!(decision, Decision::Refuse(Refusal::LockedOut));
}

#[test]
fn trusted_peers_are_never_locked_out_and_zero_turns_the_limit_off() {
    let auth = policy(AuthMode::PeersAndDigest, &[]);
    let nonce = nonce_of(&auth.challenges(NOW, ip(TRUNK_IP), false));
    for i in 0..20 {
        let creds = wrong(&nonce, &format!("{i:08x}"));
        let decision = auth.decide(NOW, &invite(TRUNK_IP, true, &creds));
        assert_eq!(decision, Decision::Refuse(Refusal::BadCredentials));
    }
    let decision = auth.decide(NOW, &invite(TRUNK_IP, true, &right(&nonce, "00000100")));
    assert_eq!(decision, admitted_trunk(true));

    let config = SipAuthConfig {
        max_failures: 0,
        ..SipAuthConfig::default()
    };
    let trunk = TrunkSecret {
        name: "carrier".into(),
        username: "carrier-user".into(),
        password: Token::new("s3cret".into()),
        networks: Vec::new(),
    };
    let off = TrunkAuth::with_key(&config, vec![trunk], &[7; 32]);
    let nonce = nonce_of(&off.challenges(NOW, ip(TRUNK_IP), false));
    for i in 0..20 {
        off.decide(
            NOW,
            &invite(TRUNK_IP, false, &wrong(&nonce, &format!("{i:08x}"))),
        );
    }
    let decision = off.decide(NOW, &invite(TRUNK_IP, false, &right(&nonce, "00000100")));
    assert_eq!(decision, admitted_trunk(false));
}

#[test]
fn the_failure_table_is_capped_dropping_expired_then_oldest_entries() {
    use super::lockout::FailureLimit;
    let source = |n: u8| IpAddr::from([198, 51, 100, n]);
    // One failure locks out for 60 s; three sources at most.
    let mut limit = FailureLimit::with_capacity(1, 60, 3);
    for n in 1..=3 {
        assert!(limit.failed(NOW + u64::from(n), source(n)));
    }
    assert!(limit.failed(NOW + 4, source(4)));
    assert_eq!(limit.len(), 3);
    assert!(
        !limit.locked_out(NOW + 5, source(1)),
        "the oldest was dropped"
    );
    for n in 2..=4 {
        assert!(limit.locked_out(NOW + 5, source(n)), "{n}");
    }
    // At NOW + 63 the locks of sources 2 and 3 have run out: both go, 4 stays.
    assert!(limit.failed(NOW + 63, source(5)));
    assert_eq!(limit.len(), 2);
    assert!(limit.locked_out(NOW + 63, source(4)) && limit.locked_out(NOW + 63, source(5)));
    // IPv4-mapped IPv6 is the same source as IPv4 to the policy.
    let auth = policy(AuthMode::PeersOrDigest, &[]);
    let nonce = nonce_of(&auth.challenges(NOW, ip(TRUNK_IP), false));
    for i in 0..5 {
        auth.decide(
            NOW,
            &invite(TRUNK_IP, false, &wrong(&nonce, &format!("{i:08x}"))),
        );
    }
    let mapped = invite("::ffff:192.0.2.10", false, &[]);
    let creds = right(&nonce, "00000100");
    let mapped = InviteView {
        authorization: creds.iter().map(String::as_str).collect(),
        ..mapped
    };
    assert_eq!(
        auth.decide(NOW, &mapped),
        Decision::Refuse(Refusal::LockedOut)
    );
}

#[test]
fn the_fuzz_seeds_reach_the_admit_path() {
    // `fuzz_authorization` asserts for each; this pins that the placeholders work.
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/digest_credentials");
    for name in [
        "md5_right.txt",
        "sha256_right.txt",
        "two_headers_escaped.txt",
    ] {
        let data = std::fs::read(dir.join(name)).unwrap();
        TrunkAuth::fuzz_authorization(&data);
        assert!(super::fuzz::admits(&data), "{name}");
    }
    assert!(!super::fuzz::admits(
        &std::fs::read(dir.join("md5_wrong.txt")).unwrap()
    ));
}
