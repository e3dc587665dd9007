//! The HTTP API (axum): health, customers, app-push callbacks, the token keys (JWKS) and the
//! agent screen-pop page. It controls calls only through the call registry.

mod admin;
mod agent;
mod app_push;
pub mod customers;
mod jwks;
pub mod privacy;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::call::Services;
use crate::config::{AgentConfig, AgentCredentials, HttpConfig, Token};

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
    /// An `[agent]` secret file could not be read or is empty.
    #[error(transparent)]
    AgentSecret(#[from] crate::config::SecretFileError),
    /// `http.api_token_file` could not be read or is empty.
    #[error("http.api_token_file: {}: {detail}", .path.display())]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong (never the file's contents).
        detail: String,
    },
}

/// The router, for tests and for `serve`. `api_token` guards the management routes
/// (`/v1/customers`), `agent` the agent page; without them they answer 401. `shutdown` ends the
/// agent page's event streams.
pub fn router(
    services: Arc<Services>,
    api_token: Option<Token>,
    agent: AgentCredentials,
    shutdown: CancellationToken,
) -> Router {
    let customers = customers::router(services.store.clone(), api_token.clone());
    let privacy = privacy::router(services.store.clone(), api_token.clone());
    let admin = admin::router(services.clone(), api_token.clone(), shutdown.clone());
    let agent = agent::router(services.clone(), agent, shutdown);
    Router::new()
        .route("/healthz", get(healthz))
        // Browsers ask for it on every page; nothing to show.
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route("/v1/app-push/callback", app_push::route())
        .route("/.well-known/jwks.json", jwks::route())
        .with_state(services)
        .merge(customers)
        .merge(privacy)
        .merge(admin)
        .merge(agent)
}

/// The management API token: `http.api_token`, or the contents of `http.api_token_file`
/// (surrounding whitespace ignored).
pub fn api_token(http: &HttpConfig) -> Result<Option<Token>, ApiError> {
    let Some(path) = &http.api_token_file else {
        return Ok(http.api_token.clone());
    };
    let error = |detail: String| ApiError::TokenFile {
        path: path.clone(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    match text.trim() {
        "" => Err(error("the file is empty".to_owned())),
        token => Ok(Some(Token::new(token.to_owned()))),
    }
}

/// Reads the API token and the agent credentials, binds `http.listen` and serves until
/// `cancel` fires. Returns the bound address at once.
pub async fn serve(
    http: &HttpConfig,
    agent: &AgentConfig,
    services: Arc<Services>,
    cancel: CancellationToken,
) -> Result<SocketAddr, ApiError> {
    let api_token = api_token(http)?;
    let agent = agent.credentials()?;
    let addr = http.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ApiError::Bind { addr, source })?;
    let app = router(services, api_token, agent, cancel.clone());
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
