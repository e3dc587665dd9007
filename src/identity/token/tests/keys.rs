//! Keys: the JWKS, key files, and the `[identity]` key settings.

use super::*;

#[test]
fn jwks_has_the_rfc_8037_members_current_key_first() {
    let (current, old) = (signer(), signer());
    let previous = VerificationKey {
        key: old.public_key().clone(),
        retired_at: None,
    };
    let keys = KeySet::new(current.public_key().clone(), vec![previous]);
    let jwks = serde_json::to_value(keys.jwks()).unwrap();
    let list = jwks["keys"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for (jwk, signer) in list.iter().zip([&current, &old]) {
        let mut members: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"]);
        assert_eq!(
            (&jwk["kty"], &jwk["crv"], &jwk["use"], &jwk["alg"]),
            (
                &json!("OKP"),
                &json!("Ed25519"),
                &json!("sig"),
                &json!("EdDSA")
            )
        );
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        assert_eq!(x, signer.public_key().as_bytes());
        assert_eq!(jwk["kid"], signer.kid().as_str());
    }
    let back = KeySet::from_jwks(&jwks.to_string()).unwrap();
    let claims = claims_for(&verified(None), &caller(), &HeaderOptions::default(), NOW);
    assert!(back.verify(&old.sign(&claims), at(NOW)).is_ok());
    assert_eq!(back.current(), current.public_key());
}

#[test]
fn a_jwks_with_a_wrong_kid_or_key_type_is_refused() {
    let signer = signer();
    let mut jwks = serde_json::to_value(keys_of(&signer).jwks()).unwrap();
    jwks["keys"][0]["kid"] = json!("AAAAAAAAAAA");
    assert!(matches!(
        KeySet::from_jwks(&jwks.to_string()),
        Err(JwksError::BadKey { index: 0, .. })
    ));
    jwks["keys"][0]["kid"] = json!(signer.kid().as_str());
    jwks["keys"][0]["crv"] = json!("X25519");
    assert!(matches!(
        KeySet::from_jwks(&jwks.to_string()),
        Err(JwksError::BadKey { index: 0, .. })
    ));
    assert_eq!(KeySet::from_jwks(r#"{"keys":[]}"#), Err(JwksError::Empty));
    assert_eq!(KeySet::from_jwks("[]"), Err(JwksError::NotAJwks));
}

#[test]
fn key_files_round_trip_owner_only_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token-key.pem");
    let signer = signer();
    signer.write_new_file(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        load_signer("identity.signing_key_file", &path)
            .unwrap()
            .kid(),
        signer.kid()
    );
    assert!(matches!(
        signer.write_new_file(&path),
        Err(KeyError::Write { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn key_file_errors_name_the_setting_and_the_file_but_not_the_contents() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("key.pem");
    signer().write_new_file(&private).unwrap();
    let e = load_public_key("identity.previous_public_keys[0]", &private)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "identity.previous_public_keys[0]: {}: not an Ed25519 public key",
            private.display()
        )),
        "{e}"
    );
    assert!(!e.contains("PRIVATE"), "{e}");
    let missing = dir.path().join("missing.pem");
    let e = load_signer("identity.signing_key_file", &missing)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "identity.signing_key_file: {}: cannot read",
            missing.display()
        )),
        "{e}"
    );
}

#[test]
fn identity_key_settings_parse_and_validate() {
    let config = |text: &str| Config::parse("idgate.toml", &format!("[identity]\n{text}"));
    let c = config(
        "signing_key_file = \"/k.pem\"\ntoken_lifetime_secs = 120\n\
         previous_public_keys = [\"/a.pem\", \
         { file = \"/b.pem\", retired_at = 2025-07-01T02:00:00+02:00 }]\n",
    )
    .unwrap();
    let entries = &c.identity.previous_public_keys;
    assert_eq!(
        (entries[0].file().to_str(), entries[0].retired_at()),
        (Some("/a.pem"), None)
    );
    assert_eq!(
        entries[1].retired_at(),
        Some(at(1_751_328_000)),
        "2025-07-01T00:00:00Z"
    );
    assert_eq!(c.identity.token_lifetime_secs, 120);
    assert_eq!(
        Config::default().identity.token_lifetime_secs,
        DEFAULT_LIFETIME_SECS
    );
    let local = config(
        "previous_public_keys = [{ file = \"/b.pem\", retired_at = 2025-07-01T00:00:00 }]\n",
    );
    let e = local.unwrap_err().to_string();
    assert!(
        e.contains("identity.previous_public_keys[0].retired_at"),
        "{e}"
    );
    let e = config("token_lifetime_secs = 5\n").unwrap_err().to_string();
    assert!(e.contains("identity.token_lifetime_secs"), "{e}");
    let e = config(&format!("issuer = \"{}\"\n", "x".repeat(101)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("identity.issuer"), "{e}");
}

#[test]
fn the_issuer_from_config_signs_with_the_key_file_or_an_ephemeral_key() {
    let dir = tempfile::tempdir().unwrap();
    let (path, old_path) = (dir.path().join("key.pem"), dir.path().join("old.pub.pem"));
    let (key, old) = (signer(), signer());
    key.write_new_file(&path).unwrap();
    std::fs::write(&old_path, old.public_key().to_pem().unwrap()).unwrap();
    let mut identity = Config::default().identity;
    let ephemeral = TokenIssuer::from_config(&identity).unwrap();
    assert!(ephemeral.is_ephemeral());
    assert_eq!(configured_key_set(&identity).unwrap(), None);
    identity.signing_key_file = Some(path);
    identity.previous_public_keys = vec![PreviousPublicKey::File(old_path)];
    let tokens = TokenIssuer::from_config(&identity).unwrap();
    assert!(!tokens.is_ephemeral());
    assert_eq!(tokens.signer().kid(), key.kid());
    let facts = CallFacts {
        call: CALL,
        sip_call_id: SIP_CALL_ID,
        caller: &caller(),
    };
    let token = tokens.issue(&verified(None), facts, &HeaderOptions::default(), at(NOW));
    let keys = configured_key_set(&identity).unwrap().unwrap();
    assert_eq!(keys.keys().len(), 2);
    assert_eq!(
        keys.verify(&token, at(NOW)).unwrap().exp,
        NOW + DEFAULT_LIFETIME_SECS
    );
    assert_eq!(header_kid(&token), Ok(Some(key.kid().to_string())));
}
