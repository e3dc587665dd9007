//! The HTTP API (axum): health now; metrics, calls, customers, the agent page and JWKS come
//! with later capabilities. It controls calls only through the call registry.

mod app_push;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::call::Services;

/// Errors starting the HTTP API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} (http): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The router, for tests and for `serve`.
pub fn router(services: Arc<Services>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/app-push/callback", app_push::route())
        .with_state(services)
}

/// Binds `addr` and serves until `cancel` fires. Returns the bound address at once.
pub async fn serve(
    addr: SocketAddr,
    services: Arc<Services>,
    cancel: CancellationToken,
) -> Result<SocketAddr, ApiError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ApiError::Bind { addr, source })?;
    let app = router(services);
    tokio::spawn(async move {
        let shutdown = async move { cancel.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    });
    Ok(local)
}

/// `GET /healthz`: the process is up; how many calls it holds.
async fn healthz(State(services): State<Arc<Services>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "active_calls": services.registry.active(),
        "total_calls": services.registry.total(),
    }))
}
