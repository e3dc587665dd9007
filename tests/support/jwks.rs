//! The verdict token checked as a PBX or CRM would: its signature against idgate's JWKS
//! (`/.well-known/jwks.json`), then its claims (IDENTITY-HEADERS.md "The token"); and a forged
//! one, signed with a key that is not idgate's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Idgate;

fn decode(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).expect("base64url")
}

/// idgate's JWKS as served.
fn jwks(idgate: &Idgate) -> serde_json::Value {
    let response = idgate.http_get("/.well-known/jwks.json").expect("JWKS");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split_once("\r\n\r\n").expect("body").1;
    serde_json::from_str(body).expect("JWKS JSON")
}

/// The `kid` of idgate's first (current) key.
pub fn current_kid(idgate: &Idgate) -> String {
    let jwks = jwks(idgate);
    jwks["keys"][0]["kid"].as_str().expect("a kid").to_owned()
}

/// Whether `token`'s signature verifies with the JWKS key its `kid` names (false when the
/// `kid` is unknown or the signature is not that key's).
pub fn signature_verifies(idgate: &Idgate, token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).expect("header");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "idgate+jwt");
    let jwks = jwks(idgate);
    let keys = jwks["keys"].as_array().expect("keys");
    let Some(jwk) = keys.iter().find(|k| k["kid"] == header["kid"]) else {
        return false;
    };
    assert_eq!(
        (&jwk["kty"], &jwk["crv"]),
        (&"OKP".into(), &"Ed25519".into())
    );
    let x: [u8; 32] = decode(jwk["x"].as_str().expect("x"))
        .try_into()
        .expect("32 bytes");
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x).expect("an Ed25519 key");
    let signature = ed25519_dalek::Signature::from_slice(&decode(parts[2])).expect("64 bytes");
    let signed = format!("{}.{}", parts[0], parts[1]);
    key.verify_strict(signed.as_bytes(), &signature).is_ok()
}

/// The claims of `token` (compact JWS), after checking its header and its Ed25519 signature
/// against the key with its `kid` in idgate's JWKS; panics if any of that fails.
pub fn claims_verified_by_jwks(idgate: &Idgate, token: &str) -> serde_json::Value {
    assert!(
        signature_verifies(idgate, token),
        "the signature verifies with the JWKS key: {token}"
    );
    let claims = token.split('.').nth(1).expect("claims part");
    serde_json::from_slice(&decode(claims)).expect("claims")
}

/// A token shaped exactly like idgate's (header with `kid`, `claims`), signed with a key that
/// is not idgate's: what a caller who has seen a real token could forge.
pub fn forged_token(kid: &str, claims: &serde_json::Value) -> String {
    use ed25519_dalek::Signer;
    let header = serde_json::json!({"alg": "EdDSA", "typ": "idgate+jwt", "kid": kid});
    let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signed = format!("{}.{}", encode(&header), encode(claims));
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}
