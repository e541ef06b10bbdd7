//! `ApiError`: the one place where failures become HTTP responses.
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}` with a fitting status. A
//! message never contains a secret value, a token or a key; storage and decryption failures
//! are logged in full on the server and answered with a short, stable message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chaperone_core::{KvError, PathError};
use chaperone_crypto::CryptoError;
use chaperone_store::StoreError;
use serde::Serialize;

use crate::SealError;

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code, e.g. `cas_mismatch`.
    pub code: &'static str,
    /// What went wrong and, where possible, what to do.
    pub message: String,
    /// Whether the answer is the operation's own refusal, recorded in the ledger as a
    /// denial (every 403 is; see [`ApiError::refusal`] for the others).
    refusal: bool,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            refusal: status == StatusCode::FORBIDDEN,
        }
    }

    /// The same answer, marked as a refusal by the operation of what the caller asked,
    /// such as approving a request already approved or one over its level's longest grant
    /// (409): the authorisation middleware records it as a denial with its code, as it
    /// records every 403. Input that is merely malformed is not marked.
    pub(crate) fn refusal(mut self) -> Self {
        self.refusal = true;
        self
    }

    pub(crate) fn sealed() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sealed",
            "the server is sealed: unseal it with `chaperone unseal` (a server started with an \
             unseal key file, such as `chaperone up`, unseals when restarted)",
        )
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

/// Marks a refusal answer made from an [`ApiError`] (every 403, and those marked with
/// [`ApiError::refusal`]), with its code: the authorisation middleware records such a
/// refusal by a handler in the ledger, as it records its own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refused(pub(crate) &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if self.refusal {
            response.extensions_mut().insert(Refused(self.code));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Kv(kv) => kv.into(),
            StoreError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::CommitUnknown(_) => {
                tracing::error!(error = %err, "storage failure at commit");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "outcome_unknown",
                    "the database failed while committing: the change may or may not have been \
                     stored; look before trying again",
                )
            }
            StoreError::LedgerTampered(_) => {
                tracing::error!(error = %err, "the ledger was changed outside the server");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ledger_inconsistent",
                    format!(
                        "{err}; nothing more is recorded while it differs: compare the \
                         database with a backup before restarting the server"
                    ),
                )
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage",
                    "the database failed; the server log has the details",
                )
            }
        }
    }
}

impl From<KvError> for ApiError {
    fn from(err: KvError) -> Self {
        let (status, code) = match err {
            KvError::CasRequired => (StatusCode::BAD_REQUEST, "cas_required"),
            KvError::CasMismatch { .. } => (StatusCode::CONFLICT, "cas_mismatch"),
            KvError::VersionGone { .. } => (StatusCode::NOT_FOUND, "version_deleted"),
            _ => (StatusCode::BAD_REQUEST, "invalid_request"),
        };
        let message = match err {
            KvError::CasMismatch { expected, current } => {
                format!("{err} (expected {expected}, current version is {current})")
            }
            other => other.to_string(),
        };
        Self::new(status, code, message)
    }
}

impl From<PathError> for ApiError {
    fn from(err: PathError) -> Self {
        Self::bad_request("invalid_path", format!("invalid secret path: {err}"))
    }
}

impl From<CryptoError> for ApiError {
    fn from(err: CryptoError) -> Self {
        tracing::error!(error = %err, "a stored ciphertext failed to decrypt");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "integrity",
            "a stored secret failed its integrity check and was not returned",
        )
    }
}

impl From<SealError> for ApiError {
    fn from(err: SealError) -> Self {
        match err {
            SealError::NotInitialized => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_initialized",
                err.to_string(),
            ),
            SealError::Crypto(CryptoError::WrongUnsealKey) => Self::bad_request(
                "wrong_shares",
                "the shares do not open this server's root key; progress was reset",
            ),
            SealError::Crypto(crypto) => Self::bad_request("invalid_share", crypto.to_string()),
            SealError::ForeignShare(why) => Self::bad_request("invalid_share", why),
            SealError::Store(store) => store.into(),
        }
    }
}
