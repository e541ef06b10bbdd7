//! Token authentication and the authorisation decision.
//!
//! A request carries `Authorization: Bearer <token>`. The token is hashed and looked up; it
//! must exist, not be revoked and not be expired at the server clock's "now". Every route
//! that needs a caller takes [`Caller`]; the only role so far is `admin`, which may do
//! everything, and any other role is denied, so access is refused unless a rule allows it.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use chaperone_crypto::token::ApiToken;

use crate::{ApiError, AppState, SealError};

/// An authenticated, authorised caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's public id (never the token).
    pub(crate) token_id: String,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // A sealed (or not yet initialised) server answers 503 before looking at credentials.
        if state.keyring().is_none() {
            let status = state.seal_status().await?;
            return Err(if status.initialized {
                ApiError::sealed()
            } else {
                SealError::NotInitialized.into()
            });
        }
        let unauthenticated = |message: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                message.to_owned(),
            )
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthenticated("missing `Authorization: Bearer <token>` header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
        let record = state
            .store
            .token_by_hash(&ApiToken::from_presented(token).hash())
            .await?
            .ok_or_else(|| unauthenticated("invalid token"))?;
        let now = state.clock.now();
        if record.revoked_at.is_some() || record.expires_at.is_some_and(|at| at <= now) {
            return Err(unauthenticated("the token was revoked or has expired"));
        }
        if record.role != "admin" {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the role `{}` may not use this route", record.role),
            ));
        }
        Ok(Self {
            token_id: record.id,
        })
    }
}
