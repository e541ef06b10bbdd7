//! Chaperone's HTTP server: the native JSON API under `/api/v1`, the seal state, and request
//! authentication. This is the only crate that knows HTTP.
//!
//! A request passes, in order: the body size limit, the seal check (503 while sealed), token
//! authentication, the authorisation decision, then the handler, which talks to the store and
//! the keyring. Errors become JSON in one place ([`error::ApiError`]).

mod api;
mod auth;
mod clock;
mod error;
mod init;
mod keys;
mod listen;
mod mail;
mod notify;
mod observe;
mod pages;
mod record;
mod seal;
mod state;
mod tls;
mod vault;
mod watch;

use std::future::Future;
use std::sync::Arc;

pub use api::{openapi_document, route_table};
pub use clock::SystemClock;
pub use error::ApiError;
pub use init::initialize;
pub use listen::ServeOptions;
pub use mail::{SmtpSettings, SmtpTls, valid_address as valid_mail_address};
pub use notify::{NotifySettings, SweepReport};
pub use observe::{host_name, metrics_router};
pub use seal::{SealError, SealStatus};
pub use state::{AppState, AuthSettings, BearerToken, Settings};
pub use tls::{TlsCertificate, TlsError, ensure_self_signed};
pub use watch::{BusinessHours, WatchSettings};

/// The router with every route, for tests and embedding.
pub fn router(state: Arc<AppState>) -> axum::Router {
    api::router(state)
}

/// Serves `state` on `listener` with the default [`ServeOptions`] (plaintext) until
/// `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, ServeOptions::default(), shutdown).await
}

/// Serves a small router of its own (the metrics listener) with `options`' limits.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // No trusted proxies here: every address is held to `max_connections_per_address`.
    listen::run(listener, router, options, Vec::new(), shutdown).await
}

/// Serves `state` on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests finish, and signs a last checkpoint over everything recorded.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let checkpoints = tokio::spawn(api::checkpoints(Arc::clone(&state)));
    let sweep = tokio::spawn(notify::background(Arc::clone(&state)));
    let rewrap = tokio::spawn(keys::background(Arc::clone(&state)));
    let proxies = state.settings.auth.trusted_proxies.clone();
    let app = router(Arc::clone(&state));
    let served = listen::run(listener, app, options, proxies, shutdown).await;
    checkpoints.abort();
    sweep.abort();
    rewrap.abort();
    // Logins and other attempts running to their end record before the last entries.
    state
        .unfinished
        .wait(std::time::Duration::from_secs(30))
        .await;
    if let Err(error) = state.record_suppressed_at_exit().await {
        tracing::warn!(error = %error.message, "the refusals past the budget were not recorded");
    }
    // Every acknowledged change is committed already; the last checkpoint makes the
    // ledger's final size signed and visible to auditors.
    if state.keyring().is_some()
        && let Err(error) = state.checkpoint_now().await
    {
        tracing::warn!(error = %error.message, "no final checkpoint");
    }
    served
}
