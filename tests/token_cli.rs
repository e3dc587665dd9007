//! The token key and offline check as an operator uses them: `idgate keys generate` makes a
//! key, a config points at it, and `idgate token verify` accepts a token signed with it and
//! refuses an altered or expired one (exit 1, with the reason).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use idgate::identity::headers::{HeaderOptions, SubjectMode};
use idgate::identity::token::{CallFacts, Claims, load_signer};
use idgate::identity::{
    CallerId, E164, Method, PersonName, PersonalNumber, Reason, Verdict, VerifiedPerson,
};

fn idgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idgate"))
        .args(args)
        .output()
        .expect("run idgate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `keys generate` into `dir`, and a config using the key; returns the config path and kid.
fn key_and_config(dir: &Path) -> (String, String) {
    let key = dir.join("token-key.pem");
    let out = idgate(&["keys", "generate", "--out", key.to_str().expect("path")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("-----BEGIN PUBLIC KEY-----"), "{stdout}");
    assert!(
        !stdout.contains("PRIVATE"),
        "the private key is never printed"
    );
    let kid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kid: "))
        .expect("kid line")
        .to_owned();
    let config = dir.join("idgate.toml");
    let toml = format!(
        "[identity]\nissuer = \"acme\"\nsigning_key_file = \"{}\"\n",
        key.display()
    );
    std::fs::write(&config, toml).expect("config");
    (config.to_str().expect("path").to_owned(), kid)
}

/// A token made by the library with the key in `dir`, issued at `at`.
fn token(dir: &Path, verdict: &Verdict, subject: SubjectMode, at: SystemTime) -> String {
    let signer = load_signer("key", &dir.join("token-key.pem")).expect("key");
    let caller = CallerId::Number(E164::parse("+46701234567", "SE").expect("number"));
    let facts = CallFacts {
        call: uuid::Uuid::from_u128(7),
        sip_call_id: "abc@pbx",
        caller: &caller,
    };
    let opts = HeaderOptions {
        subject,
        include_name: true,
        ..HeaderOptions::default()
    };
    let claims = Claims::for_call(verdict, facts, &opts, "acme", at, Duration::from_secs(600));
    signer.sign(&claims)
}

fn verified() -> Verdict {
    Verdict::Verified {
        method: Method::Bankid,
        person: VerifiedPerson {
            personal_number: PersonalNumber::parse("198112289874").expect("pnr"),
            name: Some(PersonName::new("Tolvan Tolvansson".into())),
        },
    }
}

fn verify(token: &str, config: &str) -> Output {
    idgate(&["token", "verify", token, "--config", config])
}

#[test]
fn a_token_signed_with_the_generated_key_is_valid_and_shown_masked() {
    let dir = tempfile::tempdir().expect("dir");
    let (config, kid) = key_and_config(dir.path());
    let token = token(
        dir.path(),
        &verified(),
        SubjectMode::Masked,
        SystemTime::now(),
    );
    let out = verify(&token, &config);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("current key (kid {kid})")),
        "{stdout}"
    );
    for line in [
        "status:      verified",
        "method:      bankid",
        "subject:     19811228-****",
        "call:        00000000-0000-0000-0000-000000000007",
        "orig:        +46701234567",
        "issuer:      acme",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    let left = ["(in 9 min", "(in 10 min 0 s)"];
    assert!(left.iter().any(|l| stdout.contains(l)), "{stdout}");
    assert!(!stdout.contains("198112289874"), "{stdout}");
}

#[test]
fn a_full_subject_is_printed_only_because_the_token_carries_it() {
    let dir = tempfile::tempdir().expect("dir");
    let (config, _) = key_and_config(dir.path());
    let token = token(
        dir.path(),
        &verified(),
        SubjectMode::Full,
        SystemTime::now(),
    );
    let out = verify(&token, &config);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("198112289874 (the full number: the token carries it"),
        "{stdout}"
    );
}

#[test]
fn an_unverified_token_shows_its_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let (config, _) = key_and_config(dir.path());
    let verdict = Verdict::Unverified {
        reason: Reason::NotInCall,
        method: Some(Method::Bankid),
    };
    let token = token(dir.path(), &verdict, SubjectMode::Masked, SystemTime::now());
    let out = verify(&token, &config);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("status:      unverified"), "{stdout}");
    assert!(stdout.contains("reason:      not-in-call"), "{stdout}");
}

#[test]
fn a_tampered_token_fails_with_bad_signature() {
    let dir = tempfile::tempdir().expect("dir");
    let (config, _) = key_and_config(dir.path());
    let token = token(
        dir.path(),
        &verified(),
        SubjectMode::Masked,
        SystemTime::now(),
    );
    let (rest, signature) = token.rsplit_once('.').expect("three parts");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{rest}.{flipped}{}", &signature[1..]);
    let out = verify(&tampered, &config);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid token: bad signature"),
        "{}",
        text(&out.stderr)
    );
    let out = verify("not-a-token", &config);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("malformed"));
}

#[test]
fn an_expired_token_fails_with_its_expiry() {
    let dir = tempfile::tempdir().expect("dir");
    let (config, _) = key_and_config(dir.path());
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let token = token(dir.path(), &verified(), SubjectMode::Masked, an_hour_ago);
    let out = verify(&token, &config);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("invalid token: expired at 20"), "{stderr}");
}

#[test]
fn a_token_from_another_key_or_issuer_fails() {
    let dir = tempfile::tempdir().expect("dir");
    let other = tempfile::tempdir().expect("dir");
    let (config, _) = key_and_config(dir.path());
    let (other_config, _) = key_and_config(other.path());
    let foreign = token(
        other.path(),
        &verified(),
        SubjectMode::Masked,
        SystemTime::now(),
    );
    let out = verify(&foreign, &config);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown key id"));
    let toml = std::fs::read_to_string(&other_config).expect("config");
    std::fs::write(&other_config, toml.replace("acme", "someone-else")).expect("config");
    let out = verify(&foreign, &other_config);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("issuer \"acme\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_previous_key_still_verifies_and_a_jwks_file_works_too() {
    let dir = tempfile::tempdir().expect("dir");
    let old = tempfile::tempdir().expect("dir");
    let (config, _) = key_and_config(dir.path());
    key_and_config(old.path());
    let old_key = old.path().join("token-key.pem");
    let public = idgate(&["keys", "public", old_key.to_str().expect("path")]);
    assert!(public.status.success(), "{}", text(&public.stderr));
    let pub_file = dir.path().join("old.pub.pem");
    std::fs::write(&pub_file, &public.stdout).expect("the output as it is");
    let toml = std::fs::read_to_string(&config).expect("config");
    let toml = format!(
        "{toml}previous_public_keys = [\"{}\"]\n",
        pub_file.display()
    );
    std::fs::write(&config, toml).expect("config");
    let old_token = token(
        old.path(),
        &verified(),
        SubjectMode::Masked,
        SystemTime::now(),
    );
    let out = verify(&old_token, &config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("signed by the previous key"));

    let signer = load_signer("key", &old_key).expect("key");
    let jwks = idgate::identity::token::KeySet::new(signer.public_key().clone(), Vec::new());
    let jwks_file = dir.path().join("jwks.json");
    let jwks_text = serde_json::to_string(&jwks.jwks()).expect("json");
    std::fs::write(&jwks_file, jwks_text).expect("jwks");
    let jwks_path = jwks_file.to_str().expect("path");
    let out = idgate(&["token", "verify", &old_token, "--jwks", jwks_path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn without_a_key_file_there_is_nothing_to_verify_against() {
    let out = idgate(&["token", "verify", "a.b.c"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("signing_key_file is not set"));
}

#[test]
fn check_config_names_a_bad_key_file() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("not-a-key.pem");
    std::fs::write(&key, "hello").expect("file");
    let config = dir.path().join("idgate.toml");
    let toml = format!("[identity]\nsigning_key_file = \"{}\"\n", key.display());
    std::fs::write(&config, toml).expect("config");
    let out = idgate(&["check-config", "--config", config.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("identity.signing_key_file"), "{stderr}");
    assert!(stderr.contains("not-a-key.pem"), "{stderr}");
    let out = idgate(&["keys", "generate", "--out", key.to_str().expect("path")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an existing file is not overwritten"
    );
    assert_eq!(std::fs::read_to_string(&key).expect("file"), "hello");
}
