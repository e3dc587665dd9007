//! What a token says: claims on the wire, round trips, sizes.

use super::*;

#[test]
fn round_trip_keeps_every_claim() {
    let signer = signer();
    let verdict = verified(Some("Åsa Öberg"));
    let claims = claims_for(&verdict, &caller(), &opts(SubjectMode::Full, true), NOW);
    let token = signer.sign(&claims);
    assert_eq!(keys_of(&signer).verify(&token, at(NOW + 1)), Ok(claims));
}

#[test]
fn header_is_eddsa_idgate_jwt_with_the_kid() {
    let signer = signer();
    let claims = claims_for(&verified(None), &caller(), &HeaderOptions::default(), NOW);
    let token = signer.sign(&claims);
    let header = token.split('.').next().unwrap();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    let expected = format!(
        r#"{{"alg":"EdDSA","typ":"idgate+jwt","kid":"{}"}}"#,
        signer.kid()
    );
    assert_eq!(text, expected);
}

#[test]
fn verified_claims_on_the_wire() {
    let signer = signer();
    let claims = claims_for(
        &verified(Some("Tolvan")),
        &caller(),
        &opts(SubjectMode::Masked, true),
        NOW,
    );
    let wire = part(&signer.sign(&claims), 1);
    let object = wire.as_object().unwrap();
    let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
    names.sort_unstable();
    let expected = [
        "call",
        "exp",
        "iat",
        "iss",
        "jti",
        "method",
        "name",
        "orig",
        "sip_call_id",
        "status",
        "sub",
    ];
    assert_eq!(names, expected);
    assert_eq!(wire["iss"], "idgate");
    assert_eq!(
        (wire["iat"].as_u64(), wire["exp"].as_u64()),
        (Some(NOW), Some(NOW + 600))
    );
    assert!(Uuid::parse_str(wire["jti"].as_str().unwrap()).is_ok());
    assert_eq!(wire["call"], CALL.hyphenated().to_string());
    assert_eq!(wire["sip_call_id"], SIP_CALL_ID);
    assert_eq!(wire["orig"], "+46701234567");
    assert_eq!(wire["status"], "verified");
    assert_eq!(wire["method"], "bankid");
    assert_eq!(wire["sub"], "19811228-****");
    assert_eq!(wire["name"], "Tolvan");
}

#[test]
fn unverified_claims_carry_reason_and_method_but_no_person() {
    let signer = signer();
    for reason in Reason::ALL {
        let verdict = unverified(reason, Some(Method::AppPush));
        let claims = claims_for(
            &verdict,
            &CallerId::Anonymous,
            &opts(SubjectMode::Full, true),
            NOW,
        );
        let wire = part(&signer.sign(&claims), 1);
        assert_eq!(wire["status"], "unverified");
        assert_eq!(wire["reason"], reason.as_str());
        assert_eq!(wire["method"], "app-push");
        assert_eq!(wire["orig"], "anonymous");
        assert!(
            wire.get("sub").is_none() && wire.get("name").is_none(),
            "{wire}"
        );
        assert!(
            keys_of(&signer)
                .verify(&signer.sign(&claims), at(NOW))
                .is_ok()
        );
    }
    let no_method = claims_for(
        &unverified(Reason::NotFound, None),
        &caller(),
        &HeaderOptions::default(),
        NOW,
    );
    assert!(part(&signer.sign(&no_method), 1).get("method").is_none());
}

#[test]
fn subject_and_name_follow_the_settings() {
    let signer = signer();
    let sub = |mode, include_name| {
        let claims = claims_for(
            &verified(Some("Tolvan")),
            &caller(),
            &opts(mode, include_name),
            NOW,
        );
        let wire = part(&signer.sign(&claims), 1);
        (wire.get("sub").cloned(), wire.get("name").cloned())
    };
    assert_eq!(
        sub(SubjectMode::Full, false),
        (Some(json!("198112289874")), None)
    );
    assert_eq!(
        sub(SubjectMode::Masked, false).0,
        Some(json!("19811228-****"))
    );
    assert_eq!(sub(SubjectMode::None, true), (None, Some(json!("Tolvan"))));
    let not_a_number = claims_for(
        &verified(None),
        &CallerId::NotANumber,
        &HeaderOptions::default(),
        NOW,
    );
    assert_eq!(part(&signer.sign(&not_a_number), 1)["orig"], "anonymous");
}

#[test]
fn debug_never_shows_the_full_number_or_the_key() {
    let signer = signer();
    let claims = claims_for(
        &verified(None),
        &caller(),
        &opts(SubjectMode::Full, false),
        NOW,
    );
    let shown = format!("{claims:?} {signer:?}");
    assert!(!shown.contains("198112289874"), "{shown}");
    assert!(shown.contains(signer.kid().as_str()));
}

#[test]
fn kid_is_the_documented_digest_of_the_public_key() {
    let signer = signer();
    let digest = Sha256::digest(signer.public_key().as_bytes());
    let expected = URL_SAFE_NO_PAD.encode(&digest[..8]);
    assert_eq!(signer.kid().as_str(), expected);
    assert_eq!(expected.len(), 11);
    let pem = signer.public_key().to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    assert_eq!(PublicKey::from_pem(&pem).unwrap().kid(), signer.kid());
}

#[test]
fn header_values_stay_short_ascii_without_crlf() {
    let signer = signer();
    let keys = keys_of(&signer);
    let long_call_id = format!("{}@host", "\"\\x".repeat(200));
    let issuer = "\"".repeat(MAX_ISSUER_LEN);
    for unit in ["a", "å", "€", "𝄞", "a\r\n", "\"", "\u{1}"] {
        let name = unit.repeat(500);
        let facts = CallFacts {
            call: CALL,
            sip_call_id: &long_call_id,
            caller: &caller(),
        };
        let verdict = verified(Some(&name));
        let claims = Claims::for_call(
            &verdict,
            facts,
            &opts(SubjectMode::Full, true),
            &issuer,
            at(NOW),
            LIFETIME,
        );
        let token = signer.sign(&claims);
        assert!(
            token.len() <= MAX_TOKEN_LEN && token.len() < 1024,
            "{unit:?}: {}",
            token.len()
        );
        assert!(
            token.is_ascii() && !token.contains(['\r', '\n']),
            "{unit:?}"
        );
        let back = keys.verify(&token, at(NOW)).unwrap();
        let cut = back.name.map(|n| n.as_str().to_owned()).unwrap_or_default();
        assert!(
            !cut.is_empty() && name.starts_with(&cut),
            "{unit:?}: name cut on a char boundary"
        );
        assert!(long_call_id.starts_with(&back.sip_call_id));
        assert!(back.sip_call_id.len() <= MAX_SIP_CALL_ID_LEN);
        let headers =
            identity_headers_with_token(&verdict, CALL, &HeaderOptions::default(), &token);
        for (header, value) in &headers {
            assert!(
                value.is_ascii() && value.len() < 1024 && !value.contains(['\r', '\n']),
                "{header}"
            );
        }
    }
}

#[test]
fn the_token_header_comes_last_with_the_prefix() {
    let opts = HeaderOptions {
        prefix: "X-Id-".into(),
        ..HeaderOptions::default()
    };
    let headers = identity_headers_with_token(&verified(None), CALL, &opts, "a.b.c");
    let last = headers.last().unwrap();
    assert_eq!((last.0.as_str(), last.1.as_str()), ("X-Id-Token", "a.b.c"));
    assert_eq!(headers[headers.len() - 2].0, "X-Id-Call");
}
