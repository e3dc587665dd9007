//! Every way a token is refused, and rotation.

use super::*;

#[test]
fn malformed_tokens() {
    let signer = signer();
    let keys = keys_of(&signer);
    let good = signer.sign(&claims_for(
        &verified(None),
        &caller(),
        &HeaderOptions::default(),
        NOW,
    ));
    let (input, _) = good.rsplit_once('.').unwrap();
    let header_only = good.split('.').next().unwrap();
    let not_json = format!("{header_only}.{}", URL_SAFE_NO_PAD.encode("not json"));
    let not_json = raw_token_input(&signer, &not_json);
    let cases = [
        String::new(),
        input.to_owned(),
        format!("{good}.x"),
        format!("{input}.not*base64"),
        raw_token_input(&signer, &format!("{input}=")),
        "x".repeat(10_000),
        not_json,
    ];
    for token in cases {
        let result = keys.verify(&token, at(NOW));
        assert!(
            matches!(result, Err(TokenError::Malformed { .. })),
            "{result:?}"
        );
    }
    let unknown = good_claims().as_object().cloned().map(|mut m| {
        m.insert("admin".into(), json!(true));
        Value::Object(m)
    });
    let token = raw_token(&signer, &header_of(&signer), &unknown.unwrap());
    assert!(matches!(
        keys.verify(&token, at(NOW)),
        Err(TokenError::Malformed { .. })
    ));
}

fn raw_token_input(signer: &Signer, input: &str) -> String {
    let signature = URL_SAFE_NO_PAD.encode(signer.sign_bytes(input.as_bytes()));
    format!("{input}.{signature}")
}

#[test]
fn algorithm_type_and_kid_are_checked_before_the_signature() {
    let signer = signer();
    let keys = keys_of(&signer);
    let kid = signer.kid().as_str();
    let verify = |header: Value| keys.verify(&raw_token(&signer, &header, &good_claims()), at(NOW));
    assert_eq!(
        verify(json!({"alg": "none", "typ": "idgate+jwt", "kid": kid})),
        Err(TokenError::UnsupportedAlgorithm { alg: "none".into() })
    );
    assert_eq!(
        verify(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid})),
        Err(TokenError::WrongType {
            typ: Some("JWT".into())
        })
    );
    assert_eq!(
        verify(json!({"alg": "EdDSA", "kid": kid})),
        Err(TokenError::WrongType { typ: None })
    );
    assert_eq!(
        verify(json!({"alg": "EdDSA", "typ": "idgate+jwt"})),
        Err(TokenError::UnknownKid { kid: None })
    );
    let other = Signer::generate().unwrap();
    let token = other.sign(&claims_for(
        &verified(None),
        &caller(),
        &HeaderOptions::default(),
        NOW,
    ));
    assert_eq!(
        keys.verify(&token, at(NOW)),
        Err(TokenError::UnknownKid {
            kid: Some(other.kid().to_string())
        })
    );
    let crit = json!({"alg": "EdDSA", "typ": "idgate+jwt", "kid": kid, "crit": ["exp"]});
    assert!(matches!(verify(crit), Err(TokenError::Malformed { .. })));
}

#[test]
fn altered_or_forged_tokens_have_a_bad_signature() {
    let signer = signer();
    let keys = keys_of(&signer);
    let unverified = claims_for(
        &unverified(Reason::Declined, Some(Method::Bankid)),
        &caller(),
        &HeaderOptions::default(),
        NOW,
    );
    let token = signer.sign(&unverified);
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = part(&token, 1);
    forged["status"] = json!("verified");
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    assert_eq!(
        keys.verify(&altered, at(NOW)),
        Err(TokenError::BadSignature)
    );
    // A key that claims the right kid but is not the key.
    let impostor = Signer::generate().unwrap();
    let forged = raw_token(&impostor, &header_of(&signer), &good_claims());
    assert_eq!(keys.verify(&forged, at(NOW)), Err(TokenError::BadSignature));
    let short_sig = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]);
    assert_eq!(
        keys.verify(&short_sig, at(NOW)),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn expiry_and_issue_time_with_skew() {
    let signer = signer();
    let keys = keys_of(&signer);
    let token = signer.sign(&claims_for(
        &verified(None),
        &caller(),
        &HeaderOptions::default(),
        NOW,
    ));
    let exp = NOW + 600;
    assert!(keys.verify(&token, at(exp + MAX_SKEW_SECS)).is_ok());
    assert_eq!(
        keys.verify(&token, at(exp + MAX_SKEW_SECS + 1)),
        Err(TokenError::Expired { exp })
    );
    assert!(keys.verify(&token, at(NOW - MAX_SKEW_SECS)).is_ok());
    assert_eq!(
        keys.verify(&token, at(NOW - MAX_SKEW_SECS - 1)),
        Err(TokenError::NotYetValid { iat: NOW })
    );
}

#[test]
fn claim_shapes_are_checked() {
    let signer = signer();
    let keys = keys_of(&signer);
    let check = |change: &dyn Fn(&mut Value)| {
        let mut claims = good_claims();
        change(&mut claims);
        keys.verify(&raw_token(&signer, &header_of(&signer), &claims), at(NOW))
    };
    assert!(check(&|_| {}).is_ok());
    let bad = |claim, problem| Err(TokenError::BadClaim { claim, problem });
    assert_eq!(check(&|c| c["iss"] = json!(" ")), bad("iss", "empty"));
    assert_eq!(
        check(&|c| c["exp"] = json!(NOW)),
        bad("exp", "not after iat")
    );
    assert_eq!(check(&|c| c["jti"] = json!("1")), bad("jti", "not a UUID"));
    assert_eq!(
        check(&|c| c["call"] = json!("x")),
        bad("call", "not a UUID")
    );
    assert_eq!(
        check(&|c| c["status"] = json!("VERIFIED")),
        bad("status", "neither verified nor unverified")
    );
    assert_eq!(
        check(&|c| c["orig"] = json!("0701234567")),
        bad("orig", "neither E.164 nor anonymous")
    );
    assert_eq!(
        check(&|c| c["orig"] = json!("+46 70 123 45 67")),
        bad("orig", "neither E.164 nor anonymous")
    );
    let sub_problem = "neither a personal identity number nor YYYYMMDD-****";
    assert_eq!(
        check(&|c| c["sub"] = json!("198112289875")),
        bad("sub", sub_problem)
    );
    assert_eq!(
        check(&|c| c["sub"] = json!("1981122-****")),
        bad("sub", sub_problem)
    );
    assert_eq!(
        check(&|c| c["method"] = json!("sms")),
        bad("method", "unknown method")
    );
    assert_eq!(
        check(&|c| c["reason"] = json!("declined")),
        bad("reason", "present (verified)")
    );
    assert_eq!(
        check(&|c| {
            c.as_object_mut().unwrap().remove("method");
        }),
        bad("method", "missing (verified)")
    );
    assert_eq!(check(&|c| c["name"] = json!("")), bad("name", "empty"));
    let unverified = |c: &mut Value| {
        c["status"] = json!("unverified");
        c.as_object_mut().unwrap().remove("sub");
    };
    assert_eq!(
        check(&|c| unverified(c)),
        bad("reason", "missing (unverified)")
    );
    assert_eq!(
        check(&|c| {
            unverified(c);
            c["reason"] = json!("busy");
        }),
        bad("reason", "unknown reason")
    );
    assert_eq!(
        check(&|c| {
            unverified(c);
            c["reason"] = json!("declined");
            c["sub"] = json!("19811228-****");
        }),
        bad("sub", "only on a verified token")
    );
    assert!(
        check(&|c| {
            unverified(c);
            c["reason"] = json!("declined");
        })
        .is_ok()
    );
    let full = check(&|c| c["sub"] = json!("198112289874")).unwrap();
    assert!(matches!(full.sub, Some(TokenSubject::Full(_))));
}

#[test]
fn a_token_signed_by_the_previous_key_verifies_after_a_rotation() {
    let old = signer();
    let new = signer();
    let claims = claims_for(&verified(None), &caller(), &HeaderOptions::default(), NOW);
    let old_token = old.sign(&claims);
    let previous = VerificationKey {
        key: old.public_key().clone(),
        retired_at: None,
    };
    let keys = KeySet::new(new.public_key().clone(), vec![previous]);
    assert_eq!(keys.verify(&old_token, at(NOW)), Ok(claims.clone()));
    assert_eq!(keys.verify(&new.sign(&claims), at(NOW)), Ok(claims.clone()));
    assert_eq!(keys.current(), new.public_key());
    assert!(
        keys_of(&new).verify(&old_token, at(NOW)).is_err(),
        "dropped: no longer verifies"
    );

    let retired = |secs| {
        let previous = VerificationKey {
            key: old.public_key().clone(),
            retired_at: Some(at(secs)),
        };
        KeySet::new(new.public_key().clone(), vec![previous])
    };
    assert!(
        retired(NOW).verify(&old_token, at(NOW)).is_ok(),
        "signed before it retired"
    );
    assert_eq!(
        retired(NOW - 3600).verify(&old_token, at(NOW)),
        Err(TokenError::RetiredKey {
            kid: old.kid().to_string(),
            retired: NOW - 3600
        })
    );
}
