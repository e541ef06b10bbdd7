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
mod mail;
mod notify;
mod pages;
mod record;
mod seal;
mod state;
mod vault;

use std::future::Future;
use std::sync::Arc;

pub use api::{openapi_document, route_table};
pub use clock::SystemClock;
pub use error::ApiError;
pub use init::initialize;
pub use mail::{SmtpSettings, valid_address as valid_mail_address};
pub use notify::{NotifySettings, SweepReport};
pub use seal::{SealError, SealStatus};
pub use state::{AppState, AuthSettings, Settings};

/// The router with every route, for tests and embedding.
pub fn router(state: Arc<AppState>) -> axum::Router {
    api::router(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let checkpoints = tokio::spawn(api::checkpoints(Arc::clone(&state)));
    let sweep = tokio::spawn(notify::background(Arc::clone(&state)));
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    checkpoints.abort();
    sweep.abort();
    served
}
