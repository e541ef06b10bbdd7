//! `/api/v1/secrets/...`: versioned secrets.
//!
//! The layout follows KV version 2: `data/` reads and writes versions, `metadata/` manages a
//! secret as a whole, `delete/`, `undelete/` and `destroy/` act on chosen versions, `list/`
//! lists by prefix. A version's value is a map of string fields, stored as a JSON object
//! encrypted under its own data key.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chaperone_core::policy::visible_in_listing;
use chaperone_core::{
    Cas, MaxVersions, SecretMetadata, SecretPath, SecretPrefix, VersionMeta, VersionState,
};
use chaperone_crypto::Keyring;
use chaperone_store::{MetadataUpdate, StoredVersion, WrittenVersion};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiJson;
use super::{ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::record::{Record, RequestInfo};
use crate::{ApiError, AppState};
use chaperone_ledger::entry::{Actor, Outcome};

/// A new version to write.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteRequest {
    /// The fields of the new version.
    data: BTreeMap<String, String>,
    /// Check-and-set: the current version this write replaces; `0` means "only if absent".
    cas: Option<u64>,
}

/// The version a write created.
#[derive(Serialize, ToSchema)]
pub(crate) struct WriteResponse {
    path: String,
    version: u64,
    /// RFC 3339 with nanoseconds.
    created_time: String,
}

/// One version's value.
#[derive(Serialize, ToSchema)]
pub(crate) struct ReadResponse {
    path: String,
    version: u64,
    created_time: String,
    /// The fields (secret).
    data: serde_json::Value,
    custom_metadata: BTreeMap<String, String>,
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct ReadQuery {
    /// The version to read; the current one when absent or 0.
    version: Option<u64>,
}

/// Versions to act on.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionsRequest {
    versions: Vec<u64>,
}

/// A secret's own settings.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetadataRequest {
    /// Versions to keep; 0 returns to the server default.
    max_versions: Option<u32>,
    cas_required: Option<bool>,
    /// Replaces the custom metadata (not secret; visible in listings and metadata reads).
    custom_metadata: Option<BTreeMap<String, String>>,
}

/// A version's metadata.
#[derive(Serialize, ToSchema)]
pub(crate) struct VersionInfo {
    version: u64,
    created_time: String,
    /// When the version was deleted (also if it was destroyed after); empty if never.
    deletion_time: String,
    destroyed: bool,
}

/// A secret's metadata.
#[derive(Serialize, ToSchema)]
pub(crate) struct MetadataResponse {
    path: String,
    current_version: u64,
    oldest_version: u64,
    /// 0 means the server default.
    max_versions: u32,
    cas_required: bool,
    custom_metadata: BTreeMap<String, String>,
    created_time: String,
    updated_time: String,
    versions: Vec<VersionInfo>,
}

/// Keys under a prefix; folders end with `/`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ListResponse {
    pub(crate) keys: Vec<String>,
}

pub(crate) fn unsealed(state: &AppState) -> Result<Arc<Keyring>, ApiError> {
    state.keyring().ok_or_else(ApiError::sealed)
}

/// Writes a new version (`POST` does the same as `PUT`).
#[utoipa::path(post, path = "/api/v1/secrets/data/{path}", request_body = WriteRequest,
    params(("path" = String, Path, description = "Secret path, e.g. team/payments/db")),
    responses((status = 200, body = WriteResponse), (status = 400, body = super::ErrorBody),
        (status = 409, description = "check-and-set mismatch", body = super::ErrorBody),
        (status = 503, description = "sealed", body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn write_post(
    caller: Caller,
    state: State<Arc<AppState>>,
    info: Extension<RequestInfo>,
    path: ApiPath<String>,
    body: ApiJson<WriteRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    write(caller, state, info, path, body).await
}

/// Writes a new version.
#[utoipa::path(put, path = "/api/v1/secrets/data/{path}", request_body = WriteRequest,
    params(("path" = String, Path, description = "Secret path, e.g. team/payments/db")),
    responses((status = 200, body = WriteResponse), (status = 400, body = super::ErrorBody),
        (status = 409, description = "check-and-set mismatch", body = super::ErrorBody),
        (status = 503, description = "sealed", body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn write(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<WriteRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    let path = SecretPath::parse(&path)?;
    let plaintext = zeroize::Zeroizing::new(
        serde_json::to_vec(&body.data).expect("a string map always serialises"),
    );
    drop(body.data);
    let cas = body.cas.map_or(Cas::None, Cas::Version);
    let written = write_version(&state, caller.actor(), &info, &path, cas, plaintext).await?;
    Ok(Json(WriteResponse {
        path: path.to_string(),
        version: written.meta.version,
        created_time: written.meta.created_at.to_rfc3339(),
    }))
}

/// Refuses a secret whose field names hold characters that change how text is shown
/// (as [`super::check_text`] does, line breaks and tabs included). Security decision: field names are shown as they are to whoever
/// reads the secret (`vault kv get`'s table, `chaperone secret get`, the console, scanner
/// findings naming `path#field`), and who writes them is often not who reads them (a request
/// link's submitter has no account). The values are not looked at (a value is the secret,
/// any bytes), and the names are read without the values being copied.
fn check_field_names(plaintext: &[u8]) -> Result<(), ApiError> {
    let names: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_slice(plaintext).map_err(|_| {
            ApiError::bad_request("invalid_body", "a secret's data is a JSON object")
        })?;
    // Not even line breaks or tabs, which a reason may hold: a name is one cell of a table.
    if names
        .keys()
        .any(|name| name.chars().any(chaperone_scan::output::is_hidden))
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            "a field name may not contain control characters (such as line breaks or \
             terminal escape sequences), text direction controls or invisible characters",
        ));
    }
    Ok(())
}

/// Writes `plaintext` (a JSON object's bytes) as a new version of `path`, recorded in the
/// same transaction; shared by the native and the Vault-compatible API.
pub(crate) async fn write_version(
    state: &AppState,
    actor: Actor,
    info: &RequestInfo,
    path: &SecretPath,
    cas: Cas,
    plaintext: zeroize::Zeroizing<Vec<u8>>,
) -> Result<WrittenVersion, ApiError> {
    check_field_names(&plaintext)?;
    let keyring = unsealed(state)?;
    let now = state.clock.now();
    let mut record = Record::new("secret.write", path.as_str(), Outcome::Success);
    if let Cas::Version(v) | Cas::Merge(v) = cas {
        record.details.insert("cas".into(), v.into());
    }
    let token = actor.token.clone().unwrap_or_default();
    let event = state.event(info, actor, record);
    let written = state
        .store
        .put_version(
            path,
            cas,
            state.settings.kv,
            now,
            std::slice::from_ref(&event),
            move |binding| keyring.seal(binding, &plaintext),
        )
        .await?;
    tracing::info!(%token, path = %path, version = written.meta.version, "secret written");
    Ok(written)
}

/// Reads a version (the current one by default).
#[utoipa::path(get, path = "/api/v1/secrets/data/{path}", params(("path" = String, Path), ReadQuery),
    responses((status = 200, body = ReadResponse),
        (status = 404, description = "absent, deleted or destroyed", body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn read(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Json<ReadResponse>, ApiError> {
    let path = SecretPath::parse(&path)?;
    let version = query.version.filter(|&v| v > 0);
    let found = read_value(&state, &caller, &info, &path, version).await?;
    let (stored, data) = match found {
        Some(Found::Value { stored, data }) => (stored, data),
        Some(Found::Gone(stored)) => {
            let number = stored.meta.version;
            return Err(match stored.meta.state {
                VersionState::Deleted(at) => ApiError::new(
                    StatusCode::NOT_FOUND,
                    "version_deleted",
                    format!(
                        "version {number} of `{path}` was deleted at {}; undelete it to read it",
                        at.to_rfc3339()
                    ),
                ),
                _ => ApiError::new(
                    StatusCode::NOT_FOUND,
                    "version_destroyed",
                    format!("version {number} of `{path}` was destroyed"),
                ),
            });
        }
        None => {
            return Err(ApiError::not_found(match version {
                Some(v) => format!("secret `{path}` has no version {v}"),
                None => format!("no secret at `{path}`"),
            }));
        }
    };
    Ok(Json(ReadResponse {
        path: path.to_string(),
        version: stored.meta.version,
        created_time: stored.meta.created_at.to_rfc3339(),
        data,
        custom_metadata: stored.custom_metadata,
    }))
}

/// What a read found.
pub(crate) enum Found {
    /// An active version and its value (recorded as read).
    Value {
        stored: StoredVersion,
        data: serde_json::Value,
    },
    /// A deleted or destroyed version: nothing returned, nothing recorded.
    Gone(StoredVersion),
}

/// Reads `version` (the current one when `None`) of `path`; `None` when absent. A value is
/// recorded (durably) before it is returned; shared by the native and the Vault API.
pub(crate) async fn read_value(
    state: &AppState,
    caller: &Caller,
    info: &RequestInfo,
    path: &SecretPath,
    version: Option<u64>,
) -> Result<Option<Found>, ApiError> {
    let keyring = unsealed(state)?;
    let Some(stored) = state.store.read_version(path, version).await? else {
        return Ok(None);
    };
    let Some(data) = decrypt(&keyring, &stored)? else {
        return Ok(Some(Found::Gone(stored)));
    };
    // The read is recorded (durably) before the value leaves the server.
    let mut record = Record::new("secret.read", path.as_str(), Outcome::Success);
    record
        .details
        .insert("version".into(), stored.meta.version.into());
    state.record(info, caller.actor(), record).await?;
    Ok(Some(Found::Value { stored, data }))
}

/// The value of an active version; `None` for a deleted or destroyed one. Not recorded:
/// callers that return the value record the read first.
pub(crate) fn decrypt(
    keyring: &Keyring,
    stored: &StoredVersion,
) -> Result<Option<serde_json::Value>, ApiError> {
    let sealed = match (stored.meta.state, &stored.sealed) {
        (VersionState::Active, Some(sealed)) => sealed,
        _ => return Ok(None),
    };
    let plaintext = keyring.open(stored.binding(), sealed)?;
    let data = serde_json::from_slice(plaintext.expose()).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "integrity",
            "a stored secret decrypted to a value that is not a JSON object",
        )
    })?;
    Ok(Some(data))
}

/// Soft-deletes the current version.
#[utoipa::path(delete, path = "/api/v1/secrets/data/{path}", params(("path" = String, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn delete_latest(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    change(&caller, &state, &info, &path, &[], Change::Delete).await
}

/// Soft-deletes versions.
#[utoipa::path(post, path = "/api/v1/secrets/delete/{path}", request_body = VersionsRequest,
    params(("path" = String, Path)), responses((status = 204), (status = 404, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn delete_versions(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<VersionsRequest>,
) -> Result<StatusCode, ApiError> {
    change(
        &caller,
        &state,
        &info,
        &path,
        &required(body.versions)?,
        Change::Delete,
    )
    .await
}

/// Restores soft-deleted versions.
#[utoipa::path(post, path = "/api/v1/secrets/undelete/{path}", request_body = VersionsRequest,
    params(("path" = String, Path)), responses((status = 204), (status = 404, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn undelete_versions(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<VersionsRequest>,
) -> Result<StatusCode, ApiError> {
    change(
        &caller,
        &state,
        &info,
        &path,
        &required(body.versions)?,
        Change::Undelete,
    )
    .await
}

/// Destroys versions' data for good; their metadata stays.
#[utoipa::path(post, path = "/api/v1/secrets/destroy/{path}", request_body = VersionsRequest,
    params(("path" = String, Path)), responses((status = 204), (status = 404, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn destroy_versions(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<VersionsRequest>,
) -> Result<StatusCode, ApiError> {
    change(
        &caller,
        &state,
        &info,
        &path,
        &required(body.versions)?,
        Change::Destroy,
    )
    .await
}

/// A secret's metadata and version history.
#[utoipa::path(get, path = "/api/v1/secrets/metadata/{path}", params(("path" = String, Path)),
    responses((status = 200, body = MetadataResponse), (status = 404, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn metadata(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
) -> Result<Json<MetadataResponse>, ApiError> {
    let path = SecretPath::parse(&path)?;
    let meta = state
        .store
        .metadata(&path)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no secret at `{path}`")))?;
    record_metadata_read(&state, &caller, &info, &path).await?;
    Ok(Json(metadata_response(meta)))
}

/// Records (durably) that `caller` read the metadata of `path` (its versions, times and
/// custom metadata), before the answer is sent; shared by the native and the Vault API.
/// A missing secret is not recorded, as a read of one is not.
pub(crate) async fn record_metadata_read(
    state: &AppState,
    caller: &Caller,
    info: &RequestInfo,
    path: &SecretPath,
) -> Result<(), ApiError> {
    let mut record = Record::new("secret.list", path.as_str(), Outcome::Success);
    record.details.insert("metadata".into(), true.into());
    state.record(info, caller.actor(), record).await
}

/// Changes a secret's own settings.
#[utoipa::path(put, path = "/api/v1/secrets/metadata/{path}", request_body = MetadataRequest,
    params(("path" = String, Path)), responses((status = 204), (status = 400, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn update_metadata(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<MetadataRequest>,
) -> Result<StatusCode, ApiError> {
    let path = SecretPath::parse(&path)?;
    let max_versions = match body.max_versions {
        None => None,
        Some(0) => Some(None),
        Some(n) => Some(Some(MaxVersions::new(n)?)),
    };
    let update = MetadataUpdate {
        max_versions,
        cas_required: body.cas_required,
        custom_metadata: body.custom_metadata,
    };
    apply_metadata(&state, &caller, &info, &path, &update).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The custom metadata key naming a secret's owner.
pub(crate) const OWNER_KEY: &str = "owner";

/// Changes a secret's own settings, recorded in the same transaction.
pub(crate) async fn apply_metadata(
    state: &AppState,
    caller: &Caller,
    info: &RequestInfo,
    path: &SecretPath,
    update: &MetadataUpdate,
) -> Result<(), ApiError> {
    if let Some(metadata) = &update.custom_metadata {
        chaperone_core::secret::check_custom_metadata(metadata)?;
        super::check_labels("custom_metadata", metadata)?;
    }
    // A lower limit destroys the versions past it at the next write: whoever lowers it must
    // be allowed to destroy versions there, or a write grant would erase history at once.
    // (Raising it, or setting it again, needs nothing more: clients that always send it, such
    // as Terraform's, keep working with a write grant.) The limit is compared as it applies:
    // the secret's own, or the server's when it has none. Dropping the secret's own limit
    // for the server's counts as lowering it whatever they are now, since the server's may
    // be lowered later (or differ on another node).
    let applied =
        |limit: Option<MaxVersions>| limit.unwrap_or(state.settings.kv.max_versions).get();
    let current = match (update.max_versions, &update.custom_metadata) {
        (None, None) => None,
        _ => state.store.metadata(path).await?,
    };
    // Security decision: the `owner` key names who owns the secret's rotation finding when
    // a vendor is offboarded (docs/handoff.md). A vendor's people may write metadata under a
    // write grant, so they may not set, change or remove it: a contractor could otherwise
    // hand their own vendor's findings to someone of their choosing.
    if caller.principal.vendor.is_some()
        && let Some(custom) = &update.custom_metadata
        && custom.get(OWNER_KEY)
            != current
                .as_ref()
                .and_then(|m| m.custom_metadata.get(OWNER_KEY))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "a secret's `owner` metadata is named by staff: send it as it is, or leave it out \
             of a merge patch",
        ));
    }
    let lowered = match update.max_versions {
        Some(asked) => {
            let current = current.as_ref().and_then(|m| m.max_versions);
            (asked.is_none() && current.is_some()) || applied(asked) < applied(current)
        }
        None => false,
    };
    if lowered {
        state
            .require_also(
                caller,
                info,
                chaperone_core::policy::Action::SecretDestroy,
                path,
                "setting max_versions prunes versions, which needs the destroy capability",
            )
            .await?;
    }
    // What changed, so that a lowered `max_versions` (which prunes history at the next
    // write) is seen in the ledger; custom metadata values are the owner's notes and are
    // not copied, only how many there are.
    let mut record = Record::new("secret.metadata_write", path.as_str(), Outcome::Success);
    if let Some(max) = update.max_versions {
        let max = max.map_or(0, |m| u64::from(m.get()));
        record.details.insert("max_versions".into(), max.into());
    }
    if let Some(required) = update.cas_required {
        record
            .details
            .insert("cas_required".into(), required.into());
    }
    if let Some(custom) = &update.custom_metadata {
        record
            .details
            .insert("custom_metadata_keys".into(), custom.len().into());
    }
    let events = [state.event(info, caller.actor(), record)];
    state
        .store
        .update_metadata(path, update, state.clock.now(), &events)
        .await?;
    tracing::info!(token = %caller.token_id, path = %path, "secret metadata updated");
    Ok(())
}

/// Deletes a secret with all its versions and metadata.
#[utoipa::path(delete, path = "/api/v1/secrets/metadata/{path}", params(("path" = String, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
pub(crate) async fn delete_secret(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let path = SecretPath::parse(&path)?;
    if !delete_all(&state, &caller, &info, &path).await? {
        return Err(ApiError::not_found(format!("no secret at `{path}`")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a secret with all its versions, recorded in the same transaction; `false` if
/// there was none.
pub(crate) async fn delete_all(
    state: &AppState,
    caller: &Caller,
    info: &RequestInfo,
    path: &SecretPath,
) -> Result<bool, ApiError> {
    let record = Record::new("secret.delete_all", path.as_str(), Outcome::Success);
    let events = [state.event(info, caller.actor(), record)];
    let deleted = state.store.delete_secret(path, &events).await?;
    if deleted {
        tracing::info!(token = %caller.token_id, path = %path, "secret deleted with all versions");
    }
    Ok(deleted)
}

/// Lists keys under a prefix.
#[utoipa::path(get, path = "/api/v1/secrets/list/{prefix}", params(("prefix" = String, Path)),
    responses((status = 200, body = ListResponse)), security(("bearer" = [])))]
pub(crate) async fn list(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(prefix): ApiPath<String>,
) -> Result<Json<ListResponse>, ApiError> {
    let prefix = SecretPrefix::parse(&prefix)?;
    list_visible(&caller, &state, &info, &prefix).await
}

/// Lists top-level keys.
#[utoipa::path(get, path = "/api/v1/secrets/list",
    responses((status = 200, body = ListResponse)), security(("bearer" = [])))]
pub(crate) async fn list_root(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
) -> Result<Json<ListResponse>, ApiError> {
    list_visible(&caller, &state, &info, &SecretPrefix::default()).await
}

/// The keys under `prefix` that the caller may see: all of them for roles that list, only
/// those on the way to or under their grants for everyone else. The listing is recorded
/// (durably) before it is returned, with how many keys the caller may see there (never the
/// keys themselves: names can say more than an entry should, and an auditor can list the
/// prefix).
pub(crate) async fn list_visible(
    caller: &Caller,
    state: &AppState,
    info: &RequestInfo,
    prefix: &SecretPrefix,
) -> Result<Json<ListResponse>, ApiError> {
    let mut listing = Listing::new(state).await?;
    let mut keys = Vec::new();
    for key in state.store.list(prefix).await? {
        let full = format!("{}{key}", prefix.as_str());
        if listing.shows(state, caller, &full).await? {
            keys.push(key);
        }
    }
    let mut record = Record::new("secret.list", prefix.as_str(), Outcome::Success);
    record.details.insert("keys".into(), keys.len().into());
    state.record(info, caller.actor(), record).await?;
    Ok(Json(ListResponse { keys }))
}

/// Whether paths may be shown to a caller in a listing (`list_visible`, and every other
/// answer that names secret paths, such as the stale-secrets list): the path must be on the
/// way to or under what the caller may list, and its level must admit the caller now, by
/// its networks and the continuous gate (an expired agreement hides key names too, not only
/// values). The level decisions are kept for the one answer.
pub(crate) struct Listing {
    now: chaperone_core::Timestamp,
    levels: Vec<chaperone_core::governance::LevelPolicy>,
    classifications: Vec<(String, String)>,
    admitted: std::collections::HashMap<String, bool>,
}

impl Listing {
    pub(crate) async fn new(state: &AppState) -> Result<Self, ApiError> {
        let (classifications, stored) = state.store.classification_rules().await?;
        Ok(Self {
            now: state.clock.now(),
            levels: super::governance::merge_levels(&stored)?,
            classifications,
            admitted: Default::default(),
        })
    }

    /// Whether `path` (a key, or a folder ending in `/`) may be shown to `caller`.
    pub(crate) async fn shows(
        &mut self,
        state: &AppState,
        caller: &Caller,
        path: &str,
    ) -> Result<bool, ApiError> {
        self.shows_to(
            state,
            &caller.principal,
            (caller.person_id.as_ref(), caller.vendor_id.as_ref()),
            caller.client_ip,
            path,
        )
        .await
    }

    /// [`Listing::shows`] for `principal`, the person and vendor whose compliance facts
    /// apply, asking from `client`.
    pub(crate) async fn shows_to(
        &mut self,
        state: &AppState,
        principal: &chaperone_core::policy::Principal,
        (person_id, vendor_id): (Option<&String>, Option<&String>),
        client: Option<std::net::IpAddr>,
        path: &str,
    ) -> Result<bool, ApiError> {
        let level = super::governance::level_of(
            &self.levels,
            &self.classifications,
            path.trim_end_matches('/'),
        )?;
        if !visible_in_listing(principal, path, level, self.now) {
            return Ok(false);
        }
        if let Some(ok) = self.admitted.get(&level.name) {
            return Ok(*ok);
        }
        let ok = level.network_allows(client)
            && match state.compliance(person_id, vendor_id, level).await? {
                Some(c) => chaperone_core::governance::gate(level, &c, self.now).is_ok(),
                None => true,
            };
        self.admitted.insert(level.name.clone(), ok);
        Ok(ok)
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Change {
    Delete,
    Undelete,
    Destroy,
}

pub(crate) async fn change(
    caller: &Caller,
    state: &AppState,
    info: &RequestInfo,
    path: &str,
    versions: &[u64],
    change: Change,
) -> Result<StatusCode, ApiError> {
    let path = SecretPath::parse(path)?;
    let now = state.clock.now();
    let action = match change {
        Change::Delete => "secret.delete",
        Change::Undelete => "secret.undelete",
        Change::Destroy => "secret.destroy",
    };
    let mut record = Record::new(action, path.as_str(), Outcome::Success);
    record.details.insert("versions".into(), versions.into());
    let events = [state.event(info, caller.actor(), record)];
    let found = match change {
        Change::Delete => {
            state
                .store
                .delete_versions(&path, versions, now, &events)
                .await?
        }
        Change::Undelete => {
            state
                .store
                .undelete_versions(&path, versions, now, &events)
                .await?
        }
        Change::Destroy => {
            state
                .store
                .destroy_versions(&path, versions, now, &events)
                .await?
        }
    };
    if !found {
        return Err(ApiError::not_found(format!("no secret at `{path}`")));
    }
    tracing::info!(token = %caller.token_id, path = %path, ?versions, ?change, "versions changed");
    Ok(StatusCode::NO_CONTENT)
}

/// Versions named in one delete, undelete or destroy at most. Each is a statement on the
/// ledger's committer, which every other change waits behind, and the ledger entry lists
/// them all.
const MAX_VERSIONS_PER_CHANGE: usize = 1_000;

/// The versions a delete, undelete or destroy names: at least one, each once, in order.
pub(crate) fn required(mut versions: Vec<u64>) -> Result<Vec<u64>, ApiError> {
    versions.sort_unstable();
    versions.dedup();
    if versions.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`versions` must not be empty",
        ));
    }
    if versions.len() > MAX_VERSIONS_PER_CHANGE {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("`versions` names at most {MAX_VERSIONS_PER_CHANGE} versions at once"),
        ));
    }
    Ok(versions)
}

fn version_info(meta: &VersionMeta) -> VersionInfo {
    VersionInfo {
        version: meta.version,
        created_time: meta.created_at.to_rfc3339(),
        deletion_time: meta
            .deletion_time()
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        destroyed: meta.destroyed(),
    }
}

fn metadata_response(meta: SecretMetadata) -> MetadataResponse {
    MetadataResponse {
        path: meta.path.to_string(),
        current_version: meta.current_version,
        oldest_version: meta.oldest_version,
        max_versions: meta.max_versions.map_or(0, MaxVersions::get),
        cas_required: meta.cas_required,
        created_time: meta.created_at.to_rfc3339(),
        updated_time: meta.updated_at.to_rfc3339(),
        versions: meta.versions.iter().map(version_info).collect(),
        custom_metadata: meta.custom_metadata,
    }
}
