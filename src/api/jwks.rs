//! `GET /.well-known/jwks.json`: the public keys `X-Identity-Token` verifies against, as a JWKS
//! (RFC 7517 §5) of Ed25519 OKP keys (RFC 8037 §2), the current key first, then the previous
//! ones kept during a rotation. No authentication: these are public keys.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};

use crate::call::Services;

/// How long verifiers may cache the key set. A verifier that meets an unknown `kid` should
/// fetch the set again at once (a rotation, or a restart with an ephemeral key).
const CACHE: &str = "public, max-age=300";

/// The route, mounted at `/.well-known/jwks.json`.
pub(super) fn route() -> MethodRouter<Arc<Services>> {
    get(jwks)
}

async fn jwks(State(services): State<Arc<Services>>) -> impl IntoResponse {
    (
        [(CACHE_CONTROL, CACHE)],
        Json(services.tokens.keys().jwks()),
    )
}
