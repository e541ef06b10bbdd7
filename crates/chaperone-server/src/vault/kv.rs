//! KV version 2 at `secret/`: the same secrets, versions and ledger entries as the native
//! `/api/v1/secrets` API, in Vault's shapes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chaperone_core::{Cas, MaxVersions, SecretPath, SecretPrefix, VersionMeta};
use chaperone_store::{MetadataUpdate, StoredVersion};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{empty, envelope, errors, no_content, reply, weak};
use crate::api::ApiJson;
use crate::api::secrets::{
    Change, Found, apply_metadata, change, decrypt, delete_all as delete_all_versions,
    list_visible, read_value, record_metadata_read, required, unsealed, write_version,
};
use crate::api::{ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::record::RequestInfo;
use crate::{ApiError, AppState};

#[derive(Deserialize)]
pub(crate) struct VersionQuery {
    version: Option<String>,
}

/// A query field read as OpenBao reads an integer: absent or empty is `None`; anything but
/// a 64-bit integer is refused with OpenBao's message (for a 400).
fn integer_field(field: &str, text: Option<&str>) -> Result<Option<i64>, String> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    weak::decimal(text).map(Some).ok_or_else(|| {
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        let why = if !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
        {
            "value out of range"
        } else {
            "invalid syntax"
        };
        format!(
            "Field validation failed: error converting input for field \"{field}\": '' \
             cannot parse value as 'int': strconv.ParseInt: {why}"
        )
    })
}

/// A version's metadata as Vault shows it: `deletion_time` empty when unset,
/// `custom_metadata` null when none.
fn version_metadata(meta: &VersionMeta, custom: &BTreeMap<String, String>) -> Value {
    json!({
        "created_time": meta.created_at.to_rfc3339(),
        "custom_metadata": custom_value(custom),
        "deletion_time": meta.deletion_time().map(|t| t.to_rfc3339()).unwrap_or_default(),
        "destroyed": meta.destroyed(),
        "version": meta.version,
    })
}

/// 404 with the envelope around a deleted or destroyed version's metadata, as OpenBao
/// answers a patch of it (a successful write answers with the same metadata).
fn gone(info: &RequestInfo, stored: &StoredVersion) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        &envelope(
            info,
            version_metadata(&stored.meta, &stored.custom_metadata),
        ),
    )
}

fn custom_value(custom: &BTreeMap<String, String>) -> Value {
    if custom.is_empty() {
        Value::Null
    } else {
        json!(custom)
    }
}

/// `GET secret/data/:path[?version=N]`.
pub(crate) async fn read(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Response, ApiError> {
    let path = SecretPath::parse(&path)?;
    // As OpenBao reads it: empty, zero or negative is the current version.
    let version = match integer_field("version", query.version.as_deref()) {
        Ok(version) => version
            .and_then(|v| u64::try_from(v).ok())
            .filter(|&v| v > 0),
        Err(message) => return Ok(errors(StatusCode::BAD_REQUEST, &message)),
    };
    Ok(
        match read_value(&state, &caller, &info, &path, version).await? {
            Some(Found::Value { stored, data }) => {
                let metadata = version_metadata(&stored.meta, &stored.custom_metadata);
                reply(
                    StatusCode::OK,
                    &envelope(&info, json!({ "data": data, "metadata": metadata })),
                )
            }
            // Vault answers a deleted or destroyed version with 404 and the full envelope,
            // and wraps that answer when asked to, as a success.
            Some(Found::Gone(stored)) => {
                let metadata = version_metadata(&stored.meta, &stored.custom_metadata);
                let mut response = reply(
                    StatusCode::NOT_FOUND,
                    &envelope(&info, json!({ "data": null, "metadata": metadata })),
                );
                response.extensions_mut().insert(super::WrappedWithStatus);
                response
            }
            None => reply(StatusCode::NOT_FOUND, &json!({ "errors": [] })),
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct WriteBody {
    data: Option<Map<String, Value>>,
    options: Option<WriteOptions>,
}

#[derive(Deserialize)]
struct WriteOptions {
    #[serde(default, deserialize_with = "weak::cas")]
    cas: Option<u64>,
}

impl WriteBody {
    /// `options.cas`, if given.
    fn cas(&self) -> Option<u64> {
        self.options.as_ref().and_then(|o| o.cas)
    }
}

/// `POST|PUT secret/data/:path` with `{"data": {...}, "options": {"cas": N}}`.
pub(crate) async fn write(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<WriteBody>,
) -> Result<Response, ApiError> {
    let path = SecretPath::parse(&path)?;
    let cas = body.cas().map_or(Cas::None, Cas::Version);
    let Some(mut data) = body.data else {
        return Ok(errors(StatusCode::BAD_REQUEST, "no data provided"));
    };
    data.values_mut().for_each(go_numbers);
    let plaintext = zeroize::Zeroizing::new(
        serde_json::to_vec(&data).expect("a JSON object always serialises"),
    );
    drop(data);
    let written = match write_version(&state, caller.actor(), &info, &path, cas, plaintext).await {
        Ok(written) => written,
        // Vault's check-and-set failures are 400 with its exact messages.
        Err(e) if e.code == "cas_mismatch" => {
            return Ok(errors(
                StatusCode::BAD_REQUEST,
                "check-and-set parameter did not match the current version",
            ));
        }
        Err(e) if e.code == "cas_required" => {
            return Ok(errors(
                StatusCode::BAD_REQUEST,
                "check-and-set parameter required for this call",
            ));
        }
        Err(e) => return Err(e),
    };
    Ok(reply(
        StatusCode::OK,
        &envelope(
            &info,
            version_metadata(&written.meta, &written.custom_metadata),
        ),
    ))
}

/// `PATCH secret/data/:path`: a JSON merge patch (RFC 7396) of the current version's data,
/// written as a new version with check-and-set on the version it was applied to, so a
/// concurrent write is never lost. The current value is not returned; the write is recorded
/// as `secret.write`.
pub(crate) async fn patch(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<WriteBody>,
) -> Result<Response, ApiError> {
    let path = SecretPath::parse(&path)?;
    let cas = body.cas();
    let Some(mut changes) = body.data else {
        return Ok(errors(StatusCode::BAD_REQUEST, "no data provided"));
    };
    changes.values_mut().for_each(go_numbers);
    let keyring = unsealed(&state)?;
    // OpenBao answers a patch of nothing with a bare 404, and a patch of a deleted or
    // destroyed current version with its metadata, after the check-and-set checks.
    let Some(stored) = state.store.read_version(&path, None).await? else {
        return Ok(empty(StatusCode::NOT_FOUND));
    };
    let current = stored.meta.version;
    // Merged with the current version, the write always names it; a secret (or server)
    // that requires check-and-set still needs the caller to give it.
    if cas.is_none()
        && (state.settings.kv.cas_required
            || state
                .store
                .metadata(&path)
                .await?
                .is_some_and(|m| m.cas_required))
    {
        return Ok(errors(
            StatusCode::BAD_REQUEST,
            "check-and-set parameter required for this call",
        ));
    }
    if cas.is_some_and(|cas| cas != current) {
        return Ok(errors(
            StatusCode::BAD_REQUEST,
            "check-and-set parameter did not match the current version",
        ));
    }
    let Some(Value::Object(mut merged)) = decrypt(&keyring, &stored)? else {
        return Ok(gone(&info, &stored));
    };
    merge_patch(&mut merged, changes);
    let plaintext = zeroize::Zeroizing::new(
        serde_json::to_vec(&merged).expect("a JSON object always serialises"),
    );
    drop(merged);
    let written = match write_version(
        &state,
        caller.actor(),
        &info,
        &path,
        Cas::Merge(current),
        plaintext,
    )
    .await
    {
        Ok(written) => written,
        Err(e) if e.code == "cas_mismatch" => {
            return Ok(errors(
                StatusCode::BAD_REQUEST,
                "check-and-set parameter did not match the current version",
            ));
        }
        // Deleted or destroyed since it was read: as if the patch had come after.
        Err(e) if e.code == "version_deleted" => {
            return match state.store.read_version(&path, None).await? {
                Some(stored) => Ok(gone(&info, &stored)),
                None => Ok(empty(StatusCode::NOT_FOUND)),
            };
        }
        Err(e) => return Err(e),
    };
    Ok(reply(
        StatusCode::OK,
        &envelope(
            &info,
            version_metadata(&written.meta, &written.custom_metadata),
        ),
    ))
}

/// `DELETE secret/data/:path`: soft-deletes the current version.
pub(crate) async fn delete_latest(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
) -> Result<Response, ApiError> {
    versions_change(&caller, &state, &info, &path, &[], Change::Delete).await
}

#[derive(Deserialize)]
pub(crate) struct VersionsBody {
    #[serde(default, deserialize_with = "weak::integers")]
    versions: Vec<i64>,
}

/// `POST secret/delete/:path` with `{"versions": [...]}`.
pub(crate) async fn delete_versions(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<VersionsBody>,
) -> Result<Response, ApiError> {
    listed_versions_change(&caller, &state, &info, &path, body.versions, Change::Delete).await
}

/// `POST secret/undelete/:path`.
pub(crate) async fn undelete_versions(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<VersionsBody>,
) -> Result<Response, ApiError> {
    listed_versions_change(
        &caller,
        &state,
        &info,
        &path,
        body.versions,
        Change::Undelete,
    )
    .await
}

/// `POST secret/destroy/:path`.
pub(crate) async fn destroy_versions(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<VersionsBody>,
) -> Result<Response, ApiError> {
    listed_versions_change(
        &caller,
        &state,
        &info,
        &path,
        body.versions,
        Change::Destroy,
    )
    .await
}

/// A change of the versions a body lists. As in OpenBao, a body that names no version is a
/// 400, and one that names only negative numbers (no version that can exist) changes
/// nothing: 204, not recorded.
async fn listed_versions_change(
    caller: &Caller,
    state: &AppState,
    info: &RequestInfo,
    path: &str,
    given: Vec<i64>,
    kind: Change,
) -> Result<Response, ApiError> {
    if given.is_empty() {
        // OpenBao's words, capital and all.
        let message = match kind {
            Change::Destroy => "no version number provided",
            Change::Delete | Change::Undelete => "No version number provided",
        };
        return Ok(errors(StatusCode::BAD_REQUEST, message));
    }
    let versions: Vec<u64> = given
        .into_iter()
        .filter_map(|n| u64::try_from(n).ok())
        .collect();
    if versions.is_empty() {
        return Ok(no_content());
    }
    versions_change(caller, state, info, path, &required(versions)?, kind).await
}

/// Vault answers 204 for version changes, also on a path with no secret; no versions is
/// the current one.
async fn versions_change(
    caller: &Caller,
    state: &AppState,
    info: &RequestInfo,
    path: &str,
    versions: &[u64],
    kind: Change,
) -> Result<Response, ApiError> {
    match change(caller, state, info, path, versions, kind).await {
        Ok(_) => Ok(no_content()),
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(no_content()),
        Err(e) => Err(e),
    }
}

/// `GET secret/metadata/:path`.
pub(crate) async fn metadata(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
) -> Result<Response, ApiError> {
    let path = SecretPath::parse(&path)?;
    let Some(meta) = state.store.metadata(&path).await? else {
        return Ok(reply(StatusCode::NOT_FOUND, &json!({ "errors": [] })));
    };
    record_metadata_read(&state, &caller, &info, &path).await?;
    let versions: Map<String, Value> = meta
        .versions
        .iter()
        .map(|v| {
            (
                v.version.to_string(),
                json!({
                    "created_time": v.created_at.to_rfc3339(),
                    "deletion_time": v.deletion_time().map(|t| t.to_rfc3339()).unwrap_or_default(),
                    "destroyed": v.destroyed(),
                }),
            )
        })
        .collect();
    let data = json!({
        "cas_required": meta.cas_required,
        "created_time": meta.created_at.to_rfc3339(),
        "current_metadata_version": meta.metadata_version,
        "current_version": meta.current_version,
        "custom_metadata": custom_value(&meta.custom_metadata),
        "delete_version_after": "0s",
        "max_versions": meta.max_versions.map_or(0, MaxVersions::get),
        "metadata_cas_required": false,
        // Vault reports 0 until max_versions has removed an old version.
        "oldest_version": if meta.oldest_version <= 1 { 0 } else { meta.oldest_version },
        "updated_time": meta.updated_at.to_rfc3339(),
        "versions": versions,
    });
    Ok(reply(StatusCode::OK, &envelope(&info, data)))
}

#[derive(Deserialize)]
pub(crate) struct MetadataBody {
    /// `null` is 0 (the server's limit), as Go decodes it into the integer's zero value.
    #[serde(default, deserialize_with = "weak::patched_integer")]
    max_versions: Option<Option<u32>>,
    /// `null` is `false`, likewise.
    #[serde(default, deserialize_with = "weak::patched_boolean")]
    cas_required: Option<Option<bool>>,
    /// `null` is as absent, as OpenBao reads a duration.
    #[serde(default, deserialize_with = "weak::duration")]
    delete_version_after: Option<i64>,
    /// Null clears it, as `{}` does.
    #[serde(default, deserialize_with = "weak::pairs")]
    custom_metadata: Option<Option<BTreeMap<String, String>>>,
    /// Check-and-set on the metadata itself, which Chaperone does not version: refused
    /// when asked for, rather than accepted and not done.
    metadata_cas_required: Option<bool>,
    cas: Option<Value>,
}

impl MetadataBody {
    /// Whether the body names a setting at all, as OpenBao tells: a setting given as `null`
    /// counts (but not `delete_version_after` or `metadata_cas_required`, whose null is as
    /// absent, nor `cas`), unknown keys do not.
    fn names_a_setting(&self) -> bool {
        self.max_versions.is_some()
            || self.cas_required.is_some()
            || self.delete_version_after.is_some()
            || self.custom_metadata.is_some()
            || self.metadata_cas_required.is_some()
    }

    /// What this body cannot have done, in Vault's words; `None` if it can.
    fn unsupported(&self) -> Option<&'static str> {
        if self.delete_version_after.is_some_and(|secs| secs != 0) {
            return Some("delete_version_after is not supported; versions are kept until deleted");
        }
        if self.metadata_cas_required == Some(true)
            || self.cas.as_ref().is_some_and(|c| !c.is_null())
        {
            return Some(
                "check-and-set on metadata (metadata_cas_required, cas) is not supported; \
                 metadata writes are not versioned",
            );
        }
        None
    }
}

#[derive(Deserialize)]
pub(crate) struct MetadataPatch {
    /// `null` resets it (to the server's), as OpenBao's patch does.
    #[serde(default, deserialize_with = "weak::patched_integer")]
    max_versions: Option<Option<u32>>,
    /// `null` resets it (to `false`).
    #[serde(default, deserialize_with = "weak::patched_boolean")]
    cas_required: Option<Option<bool>>,
    #[serde(default, deserialize_with = "weak::duration")]
    delete_version_after: Option<i64>,
    /// Merged key by key: a `null` value removes the key, and `null` for the whole of it
    /// removes every key. Values are text only, as OpenBao's patch takes them.
    #[serde(default, deserialize_with = "weak::nullable")]
    custom_metadata: Option<Option<BTreeMap<String, Option<String>>>>,
    metadata_cas_required: Option<bool>,
    cas: Option<Value>,
}

/// `POST secret/metadata/:path`.
pub(crate) async fn write_metadata(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<MetadataBody>,
) -> Result<Response, ApiError> {
    let path = SecretPath::parse(&path)?;
    if let Some(message) = body.unsupported() {
        return Ok(errors(StatusCode::BAD_REQUEST, message));
    }
    if let Some(refused) = body
        .custom_metadata
        .iter()
        .flatten()
        .flatten()
        .find_map(|(key, value)| empty_value(key, value))
    {
        return Ok(refused);
    }
    // A body that names no setting (`{}`, or only keys OpenBao does not know) changes
    // nothing, creates no metadata and counts no metadata version, as in OpenBao. Nothing
    // is done, so nothing is recorded, as for a read of a secret that does not exist.
    if !body.names_a_setting() {
        return Ok(no_content());
    }
    let update = metadata_update(
        body.max_versions,
        body.cas_required,
        body.custom_metadata.map(Option::unwrap_or_default),
    )?;
    apply_metadata(&state, &caller, &info, &path, &update).await?;
    Ok(no_content())
}

/// OpenBao's refusal of an empty custom metadata value, for the values a request gives (a
/// value stored empty before stays, and does not block changes to other keys).
fn empty_value(key: &str, value: &str) -> Option<Response> {
    value.is_empty().then(|| {
        errors(
            StatusCode::BAD_REQUEST,
            &format!(
                "custom_metadata validation failed: length of value for key \"{key}\" is 0 \
                 but must be 0 < len(value) <= 512"
            ),
        )
    })
}

/// The change a metadata write or patch asks for. `max_versions` 0 returns to the server's
/// limit, and a `null` setting is its zero value, as Go decodes it: 0 for `max_versions`,
/// `false` for `cas_required`.
fn metadata_update(
    max_versions: Option<Option<u32>>,
    cas_required: Option<Option<bool>>,
    custom_metadata: Option<BTreeMap<String, String>>,
) -> Result<MetadataUpdate, ApiError> {
    Ok(MetadataUpdate {
        max_versions: match max_versions.map(Option::unwrap_or_default) {
            None => None,
            Some(0) => Some(None),
            Some(n) => Some(Some(MaxVersions::new(n)?)),
        },
        cas_required: cas_required.map(Option::unwrap_or_default),
        custom_metadata,
    })
}

/// `PATCH secret/metadata/:path` (`bao kv metadata patch`): the fields given change, the
/// others stay; custom metadata is merged key by key. On a path with no metadata, 404 as
/// in OpenBao. The merge reads the current custom metadata first, so of two patches at the
/// same moment to different keys, one may undo the other's.
pub(crate) async fn patch_metadata(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(body): ApiJson<MetadataPatch>,
) -> Result<Response, ApiError> {
    let path = SecretPath::parse(&path)?;
    let checked = MetadataBody {
        max_versions: body.max_versions,
        cas_required: body.cas_required,
        delete_version_after: body.delete_version_after,
        custom_metadata: body
            .custom_metadata
            .as_ref()
            .map(|changes| changes.as_ref().map(|_| BTreeMap::new())),
        metadata_cas_required: body.metadata_cas_required,
        cas: body.cas,
    };
    if let Some(message) = checked.unsupported() {
        return Ok(errors(StatusCode::BAD_REQUEST, message));
    }
    if let Some(refused) = body
        .custom_metadata
        .iter()
        .flatten()
        .flatten()
        .find_map(|(key, value)| value.as_deref().and_then(|value| empty_value(key, value)))
    {
        return Ok(refused);
    }
    let Some(current) = state.store.metadata(&path).await? else {
        // OpenBao's answer has no body at all.
        return Ok(empty(StatusCode::NOT_FOUND));
    };
    // As for a write, a patch that names no setting changes nothing.
    if !checked.names_a_setting() {
        return Ok(no_content());
    }
    let custom_metadata = body.custom_metadata.map(|changes| {
        let Some(changes) = changes else {
            return BTreeMap::new();
        };
        let mut merged = current.custom_metadata.clone();
        for (key, value) in changes {
            match value {
                Some(value) => merged.insert(key, value),
                None => merged.remove(&key),
            };
        }
        merged
    });
    let update = metadata_update(body.max_versions, body.cas_required, custom_metadata)?;
    apply_metadata(&state, &caller, &info, &path, &update).await?;
    Ok(no_content())
}

/// `DELETE secret/metadata/:path`: the secret with all its versions.
pub(crate) async fn delete_all(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
) -> Result<Response, ApiError> {
    let path = SecretPath::parse(&path)?;
    delete_all_versions(&state, &caller, &info, &path).await?;
    Ok(no_content())
}

/// A listing's page, as OpenBao's KV engine takes it: the keys after `after` (in sorted
/// order), at most `limit` of them (all when absent or not positive).
#[derive(Deserialize)]
pub(crate) struct ListPage {
    after: Option<String>,
    limit: Option<String>,
}

/// `LIST secret/metadata/:prefix` (rewritten to this route by `compat`).
pub(crate) async fn list(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(prefix): ApiPath<String>,
    ApiQuery(page): ApiQuery<ListPage>,
) -> Result<Response, ApiError> {
    let prefix = SecretPrefix::parse(&prefix)?;
    list_keys(&caller, &state, &info, &prefix, page).await
}

/// `LIST secret/metadata/`.
pub(crate) async fn list_root(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiQuery(page): ApiQuery<ListPage>,
) -> Result<Response, ApiError> {
    list_keys(&caller, &state, &info, &SecretPrefix::default(), page).await
}

async fn list_keys(
    caller: &Caller,
    state: &AppState,
    info: &RequestInfo,
    prefix: &SecretPrefix,
    page: ListPage,
) -> Result<Response, ApiError> {
    let limit = match integer_field("limit", page.limit.as_deref()) {
        Ok(limit) => limit
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0),
        Err(message) => return Ok(errors(StatusCode::BAD_REQUEST, &message)),
    };
    let mut keys = list_visible(caller, state, info, prefix).await?.0.keys;
    if let Some(after) = page.after.filter(|a| !a.is_empty()) {
        keys.retain(|key| key.as_str() > after.as_str());
    }
    if let Some(limit) = limit {
        keys.truncate(limit);
    }
    if keys.is_empty() {
        return Ok(reply(StatusCode::NOT_FOUND, &json!({ "errors": [] })));
    }
    Ok(reply(
        StatusCode::OK,
        &envelope(info, json!({ "keys": keys })),
    ))
}

/// `GET secret/config`: the server-wide settings (set in Chaperone's configuration file).
pub(crate) async fn config(
    _caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
) -> Response {
    let kv = state.settings.kv;
    reply(
        StatusCode::OK,
        &envelope(
            &info,
            json!({
                "cas_required": kv.cas_required,
                "delete_version_after": "0s",
                "max_versions": kv.max_versions.get(),
                "metadata_cas_required": false,
            }),
        ),
    )
}

/// JSON Merge Patch (RFC 7396), as Vault's KV `PATCH` applies it: objects merge key by key
/// at every depth, `null` removes a key, anything else replaces the value.
/// Writes whole numbers given with a fraction or an exponent (`1.0`, `1e3`) as the integers
/// they are, as OpenBao does: it holds every number as a float64, which Go writes without a
/// fraction when it has none. Integers are kept as written (OpenBao rounds those above
/// 2^53, Chaperone does not), and other floats read back in their shortest form, which is
/// Go's for the common ones (docs/vault-compatibility.md lists where they differ).
fn go_numbers(value: &mut Value) {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    match value {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            // -0.0 stays a float: Go writes it as `-0`, which no integer is.
            if x.fract() == 0.0 && !(x == 0.0 && x.is_sign_negative()) {
                if x.abs() < TWO_POW_63 {
                    *n = serde_json::Number::from(x as i64);
                } else if x > 0.0 && x < 2.0 * TWO_POW_63 {
                    *n = serde_json::Number::from(x as u64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(go_numbers),
        Value::Object(fields) => fields.values_mut().for_each(go_numbers),
        _ => {}
    }
}

fn merge_patch(target: &mut serde_json::Map<String, Value>, patch: serde_json::Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key)
                    .or_insert_with(|| Value::Object(Default::default()));
                if !slot.is_object() {
                    *slot = Value::Object(Default::default());
                }
                if let Value::Object(slot) = slot {
                    merge_patch(slot, inner);
                }
            }
            other => {
                target.insert(key, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::go_numbers;

    fn normalised(text: &str) -> String {
        let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
        go_numbers(&mut value);
        value.to_string()
    }

    #[test]
    fn whole_floats_become_integers_and_the_rest_is_kept() {
        assert_eq!(
            normalised(r#"{"a":1.0,"b":1e3,"c":[2.0,{"d":-3E+2}],"e":1.5,"f":1.5e-7,"g":"1.0"}"#),
            r#"{"a":1,"b":1000,"c":[2,{"d":-300}],"e":1.5,"f":1.5e-7,"g":"1.0"}"#
        );
        // Integers as written, also past 2^53; 2^63 and above as unsigned up to 2^64.
        assert_eq!(
            normalised("[9007199254740993,-0.0,9.3e18,1e19,2e19]"),
            "[9007199254740993,-0.0,9300000000000000000,10000000000000000000,2e+19]"
        );
    }
}
