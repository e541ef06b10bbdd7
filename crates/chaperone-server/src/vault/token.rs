//! `auth/token/...`: Chaperone's tokens as Vault tokens.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chaperone_store::TokenKind;
use serde_json::json;

use super::{envelope, reply};
use crate::auth::{Caller, presented_token};
use crate::record::RequestInfo;
use crate::{ApiError, AppState};

/// `GET|POST auth/token/lookup-self`. Like Vault, `id` is the token the caller presented
/// (never stored, never logged); `accessor` is its public id.
pub(crate) async fn lookup_self(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = state
        .store
        .token_by_id(&caller.token_id)
        .await?
        .ok_or_else(|| ApiError::not_found("the token was removed"))?;
    let now = state.clock.now();
    let ttl = record
        .expires_at
        .map_or(0, |e| e.unix_secs().saturating_sub(now.unix_secs()));
    let creation_ttl = record.expires_at.map_or(0, |e| {
        e.unix_secs().saturating_sub(record.created_at.unix_secs())
    });
    // How the token was made, in Vault's terms: the initial admin token is the root token.
    let path = match (record.person_id.as_ref(), record.kind) {
        (None, _) => "auth/token/root",
        (Some(_), TokenKind::Session) => "auth/userpass/login",
        (Some(_), TokenKind::Api) => "auth/token/create",
    };
    let mut body = envelope(
        &info,
        json!({
            "accessor": record.id,
            "creation_time": record.created_at.unix_secs(),
            "creation_ttl": creation_ttl,
            "display_name": format!("token-{}", record.name),
            "entity_id": caller.person_id.clone().unwrap_or_default(),
            "expire_time": record.expires_at.map(|t| t.to_rfc3339()),
            "explicit_max_ttl": 0,
            "id": presented_token(&headers).unwrap_or_default(),
            "issue_time": record.created_at.to_rfc3339(),
            "meta": null,
            "num_uses": 0,
            "orphan": true,
            "path": path,
            "policies": [caller.principal.role.as_str()],
            "renewable": false,
            "ttl": ttl,
            "type": "service",
        }),
    );
    // A token that never expires has no lease: like Vault's root token, it shows neither an
    // issue time nor renewability.
    if record.expires_at.is_none()
        && let Some(data) = body["data"].as_object_mut()
    {
        data.remove("issue_time");
        data.remove("renewable");
    }
    Ok(reply(StatusCode::OK, &body))
}
