//! The command line as a PBX admin uses it: `idgate check-config` accepts good configs, and
//! `check-config` and `serve` refuse bad ones with a message that names the key.

use std::process::{Command, Output};

fn idgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idgate"))
        .args(args)
        .output()
        .expect("run idgate")
}

fn with_config(text: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("idgate.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_string_lossy().into_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", &path]);
    idgate(&all)
}

#[test]
fn check_config_accepts_the_embedded_defaults_and_lists_the_route() {
    let out = idgate(&["check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("sip:queue@127.0.0.1:5080"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:5060"), "{stdout}");
}

#[test]
fn check_config_names_an_unknown_key() {
    let out = with_config("[sip]\nlisen = \"127.0.0.1:5060\"\n", &["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("lisen"), "{stderr}");
    assert!(stderr.contains("idgate.toml:2"), "{stderr}");
}

#[test]
fn check_config_names_the_bad_trusted_peer() {
    let out = with_config(
        "[sip]\ntrusted_peers = [\"127.0.0.1/8\", \"10.0.0/8\"]\n",
        &["check-config"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("sip.trusted_peers[1]"), "{stderr}");
}

#[test]
fn check_config_names_the_route_with_a_bad_target() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plans = dir.path().join("plans");
    std::fs::create_dir(&plans).expect("dir");
    std::fs::write(
        plans.join("10-support.toml"),
        "[[route]]\nname = \"support\"\nmatch = \"*\"\ntarget = \"queue@pbx\"\n",
    )
    .expect("route file");
    let config = format!("[dialplan]\ndir = \"{}\"\n", plans.display());
    let out = with_config(&config, &["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("support") && stderr.contains("target"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_bad_config_before_listening() {
    let out = with_config("[http]\nlisten = \"not an address\"\n", &["serve"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("http.listen"), "{stderr}");
}

#[test]
fn check_config_reads_the_provider_files_and_names_the_missing_one() {
    let config = "[provider]\nkind = \"bankid\"\n[provider.bankid]\nclient_cert = \"/nonexistent/rp.crt\"\n\
                  client_key = \"/nonexistent/rp.key\"\nca = \"/nonexistent/bankid-ca.pem\"\n";
    let out = with_config(config, &["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("provider.bankid.ca") && stderr.contains("/nonexistent/bankid-ca.pem"),
        "{stderr}"
    );
}
