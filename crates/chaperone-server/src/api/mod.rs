//! The native API under `/api/v1`: routes, the JSON body extractor, and the OpenAPI
//! document generated from the handlers' annotations.

mod secrets;
mod sys;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;

use crate::{ApiError, AppState};

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limit = state.settings.max_request_bytes;
    Router::new()
        .route("/api/v1/health", get(sys::health))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/sys/seal-status", get(sys::seal_status))
        .route("/api/v1/sys/unseal", post(sys::unseal))
        .route("/api/v1/sys/seal", post(sys::seal))
        .route(
            "/api/v1/secrets/data/{*path}",
            get(secrets::read)
                .put(secrets::write)
                .post(secrets::write)
                .delete(secrets::delete_latest),
        )
        .route(
            "/api/v1/secrets/metadata/{*path}",
            get(secrets::metadata)
                .put(secrets::update_metadata)
                .delete(secrets::delete_secret),
        )
        .route(
            "/api/v1/secrets/delete/{*path}",
            post(secrets::delete_versions),
        )
        .route(
            "/api/v1/secrets/undelete/{*path}",
            post(secrets::undelete_versions),
        )
        .route(
            "/api/v1/secrets/destroy/{*path}",
            post(secrets::destroy_versions),
        )
        .route("/api/v1/secrets/list", get(secrets::list_root))
        .route("/api/v1/secrets/list/{*prefix}", get(secrets::list))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; the API is described at /api/v1/openapi.json")
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chaperone API",
        description = "Native API of Chaperone. Authenticate with `Authorization: Bearer <token>`."
    ),
    paths(
        sys::health,
        sys::seal_status,
        sys::unseal,
        sys::seal,
        secrets::read,
        secrets::write,
        secrets::delete_latest,
        secrets::metadata,
        secrets::update_metadata,
        secrets::delete_secret,
        secrets::delete_versions,
        secrets::undelete_versions,
        secrets::destroy_versions,
        secrets::list,
        secrets::list_root,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of the native API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi_document())
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error envelope of every failed request.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    error: ErrorDetail,
}

/// One error.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Stable machine-readable code, e.g. `cas_mismatch`, `sealed`, `invalid_path`.
    code: String,
    /// What went wrong, for people.
    message: String,
}

/// A JSON request body, with rejections in the API's error format.
///
/// serde's messages for a wrong type or value quote the offending value (`invalid type:
/// string "hunter2"`), which may be a secret; only messages that name a field (missing or
/// unknown) are passed on, the others are replaced by their position.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection {
                BytesRejection::FailedToBufferBody(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body is larger than the server accepts",
                    )
                }
                other => ApiError::bad_request("invalid_body", other.body_text()),
            })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|err| {
            let message = match err.classify() {
                serde_json::error::Category::Data => {
                    let text = err.to_string();
                    if text.starts_with("missing field") || text.starts_with("unknown field") {
                        text
                    } else {
                        format!(
                            "a value has the wrong type or is out of range at line {} column {}",
                            err.line(),
                            err.column()
                        )
                    }
                }
                _ => format!("the request body is not valid JSON: {err}"),
            };
            ApiError::bad_request("invalid_body", message)
        })
    }
}
