//! `/api/v1/health` and `/api/v1/sys/...`: liveness, seal status, unseal and seal.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chaperone_ledger::entry::{Actor, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::Caller;
use crate::record::{Record, RequestInfo};
use crate::{ApiError, AppState, SealError, SealStatus};

/// Liveness.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` when the process answers.
    status: &'static str,
    initialized: bool,
    sealed: bool,
}

/// Whether the process is up; 200 even while sealed.
#[utoipa::path(get, path = "/api/v1/health", responses((status = 200, body = Health)))]
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    // A database failure while loading the keyring shows as "not initialised" here; the
    // readiness endpoint reports it properly.
    let status = state.seal_status().await.ok();
    Json(Health {
        status: "ok",
        initialized: status.as_ref().is_some_and(|s| s.initialized),
        sealed: status.as_ref().is_none_or(|s| s.sealed),
    })
}

/// The seal state and unseal progress.
#[utoipa::path(get, path = "/api/v1/sys/seal-status", responses((status = 200, body = SealStatus)))]
pub(crate) async fn seal_status(
    State(state): State<Arc<AppState>>,
) -> Result<Json<SealStatus>, ApiError> {
    Ok(Json(state.seal_status_current().await?))
}

/// One unseal share, or a reset of the progress.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnsealRequest {
    /// A share as printed by `chaperone init`.
    share: Option<String>,
    /// Discard the shares given so far.
    #[serde(default)]
    reset: bool,
}

/// Gives one share; the server unseals when the threshold is met.
#[utoipa::path(post, path = "/api/v1/sys/unseal", request_body = UnsealRequest,
    responses((status = 200, body = SealStatus),
        (status = 400, description = "invalid or wrong share", body = super::ErrorBody)))]
pub(crate) async fn unseal(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<UnsealRequest>,
) -> Result<Json<SealStatus>, ApiError> {
    Ok(Json(
        give_share(&state, &info, body.share, body.reset).await?,
    ))
}

/// One unseal share (`share`), or a reset of the progress; the seal status after it. The
/// native and the Vault unseal both come here.
pub(crate) async fn give_share(
    state: &AppState,
    info: &RequestInfo,
    share: Option<String>,
    reset: bool,
) -> Result<SealStatus, ApiError> {
    if reset {
        // Anyone may reset (a holder who gave a wrong share starts again); a stream of
        // resets keeps a server sealed, so each is in the log for operators to see. Not in
        // the ledger: an anonymous caller could fill it.
        state.reset_unseal();
        tracing::warn!(client = %shown_ip(info.client_ip), "unseal progress reset");
        return Ok(state.seal_status().await?);
    }
    let share = share
        .map(zeroize::Zeroizing::new)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "give `share` or `reset`"))?;
    let was_sealed = state.keyring().is_none();
    match state.submit_share(&share).await {
        // The unseal completes with this share: recorded (shares are anonymous).
        Ok(status) if was_sealed && !status.sealed => {
            let record = Record::new("sys.unseal", "", Outcome::Success);
            state.record(info, Actor::default(), record).await?;
            Ok(status)
        }
        Ok(status) => Ok(status),
        Err(e) => {
            // A wrong combination of shares is worth an entry. A well-formed share that is
            // not one of this server's (one a rekey retired may have leaked) is logged, not
            // recorded: anyone can make one up (its checksum is public), and the ledger must
            // not grow at an anonymous caller's will. A mistyped share is neither.
            if matches!(e, SealError::ForeignShare(_)) {
                tracing::warn!(client = %shown_ip(info.client_ip), "an unseal share that is not one of this server's was refused");
            }
            let error = ApiError::from(e);
            if error.code == "wrong_shares" {
                let mut record = Record::new("sys.unseal", "", Outcome::Failure);
                record.reasons.push(error.code.to_owned());
                state.record(info, Actor::default(), record).await?;
            }
            Err(error)
        }
    }
}

/// Seals the server: the keys leave memory until the next unseal.
#[utoipa::path(post, path = "/api/v1/sys/seal", responses((status = 204),
    (status = 503, description = "already sealed", body = super::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn seal(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
) -> Result<StatusCode, ApiError> {
    let record = Record::new("sys.seal", "", Outcome::Success);
    // Sealing protects; it happens even if its entry could not be written, and without
    // waiting past a few seconds for it (a database that stalls must not keep the keys in
    // memory until the request times out and the seal never happens).
    let recorded = match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state.record(&info, caller.actor(), record),
    )
    .await
    {
        Ok(recorded) => recorded,
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_recorded",
            "the server is sealed, but the database did not take the seal's ledger entry in \
             time (it may still be written)",
        )),
    };
    state.seal();
    tracing::warn!(token = %caller.token_id, "sealed through the API");
    recorded?;
    Ok(StatusCode::NO_CONTENT)
}

/// A client address for a log line: the address, or `unknown`.
fn shown_ip(ip: Option<std::net::IpAddr>) -> String {
    ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}
