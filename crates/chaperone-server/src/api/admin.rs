//! Administration: people, vendors, grants and path classifications.
//!
//! Every change is recorded in the ledger in the same transaction as the change (actions
//! `person.*`, `vendor.*`, `grant.*`, `classification.*`, listed in `docs/ledger.md`); a
//! change that does not happen records nothing.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chaperone_core::net::Cidr;
use chaperone_core::policy::{Level, Role};
use chaperone_core::{SecretPath, parse_duration};
use chaperone_crypto::password::{code_hash, recovery_codes};
use chaperone_ledger::entry::{Event, Outcome};
use chaperone_store::{GrantRecord, PersonRecord, VendorRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ApiJson;
use super::auth::new_id;
use crate::auth::{Caller, parse_capabilities};
use crate::record::{Record, RequestInfo};
use crate::{ApiError, AppState};

/// The event for a successful change by `caller`, with `details` (non-secret facts only).
fn change_event<const N: usize>(
    state: &AppState,
    info: &RequestInfo,
    caller: &Caller,
    action: &str,
    resource: &str,
    details: [(&str, Value); N],
) -> Event {
    let mut record = Record::new(action, resource, Outcome::Success);
    record.details = details
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    state.event(info, caller.actor(), record)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddPersonRequest {
    name: String,
    role: String,
    vendor: Option<String>,
    email: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AddPersonResponse {
    id: String,
    name: String,
    /// One-time code for `chaperone enroll`.
    enrolment_code: String,
    expires_time: String,
}

#[utoipa::path(post, path = "/api/v1/people", request_body = AddPersonRequest, responses((status = 200, body = AddPersonResponse), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Adds a person and returns their one-time enrolment code.
pub(crate) async fn add_person(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<AddPersonRequest>,
) -> Result<Json<AddPersonResponse>, ApiError> {
    let role: Role = body
        .role
        .parse()
        .map_err(|e: String| ApiError::bad_request("invalid_request", e))?;
    validate_name(&body.name)?;
    may_manage(&caller, role)?;
    let vendor_id = match (&body.vendor, role) {
        (Some(name), _) => Some(
            state
                .store
                .vendor(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no vendor `{name}`")))?
                .id,
        ),
        (None, Role::Contractor) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "a contractor belongs to a vendor: give --vendor",
            ));
        }
        (None, _) => None,
    };
    if state.store.person(&body.name).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("`{}` already exists", body.name),
        ));
    }
    let now = state.clock.now();
    let person = PersonRecord {
        id: new_id("per"),
        name: body.name,
        email: body.email,
        role: role.to_string(),
        vendor_id,
        disabled_at: None,
        password_hash: None,
        totp_secret: None,
        totp_last_step: None,
        allowed_networks: Vec::new(),
        created_at: now,
    };
    let code = recovery_codes(1).pop().expect("one code");
    let expires = now.plus_secs(state.settings.auth.enrolment_ttl_secs);
    let event = change_event(
        &state,
        &info,
        &caller,
        "person.create",
        &person.name,
        [
            ("person_id", person.id.clone().into()),
            ("role", person.role.clone().into()),
            ("vendor_id", person.vendor_id.clone().into()),
            ("enrolment_expires_time", expires.to_rfc3339().into()),
        ],
    );
    state
        .store
        .insert_person(&person, &code_hash(&code), expires, &[event])
        .await?;
    tracing::info!(by = %caller.token_id, person = %person.name, role = %person.role, "person added");
    Ok(Json(AddPersonResponse {
        id: person.id,
        name: person.name,
        enrolment_code: code.to_string(),
        expires_time: expires.to_rfc3339(),
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PersonInfo {
    id: String,
    name: String,
    email: Option<String>,
    role: String,
    vendor_id: Option<String>,
    disabled: bool,
    enrolled: bool,
    allowed_networks: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/people", responses((status = 200, body = Vec<PersonInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Everyone, without credentials.
pub(crate) async fn list_people(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<PersonInfo>>, ApiError> {
    Ok(Json(
        state
            .store
            .list_people()
            .await?
            .into_iter()
            .map(|p| PersonInfo {
                enrolled: p.password_hash.is_some(),
                disabled: p.disabled_at.is_some(),
                id: p.id,
                name: p.name,
                email: p.email,
                role: p.role,
                vendor_id: p.vendor_id,
                allowed_networks: p.allowed_networks,
            })
            .collect(),
    ))
}

/// Refuses a non-admin caller acting on an `admin` or `security` account: otherwise security
/// staff could make themselves admins (or disable the admins).
fn may_manage(caller: &Caller, role: Role) -> Result<(), ApiError> {
    if caller.principal.role != Role::Admin && matches!(role, Role::Admin | Role::Security) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "only an admin may create or change admin and security accounts",
        ));
    }
    Ok(())
}

/// The id and login name of the person `name` (a name or an id), after checking the caller
/// may manage them.
async fn managed_person(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<(String, String), ApiError> {
    let person = state
        .store
        .person(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no person `{name}`")))?;
    let role: Role = person
        .role
        .parse()
        .map_err(|e: String| ApiError::bad_request("invalid_request", e))?;
    may_manage(caller, role)?;
    Ok((person.id, person.name))
}

async fn person_id(state: &AppState, name: &str) -> Result<String, ApiError> {
    Ok(state
        .store
        .person(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no person `{name}`")))?
        .id)
}

#[utoipa::path(post, path = "/api/v1/people/{name}/disable", params(("name" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Disables a person: logins and existing tokens stop working at once.
pub(crate) async fn disable_person(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (id, name) = managed_person(&state, &caller, &name).await?;
    let event = change_event(
        &state,
        &info,
        &caller,
        "person.disable",
        &name,
        [("person_id", id.clone().into())],
    );
    state
        .store
        .set_person_disabled(&id, Some(state.clock.now()), &[event])
        .await?;
    tracing::warn!(by = %caller.token_id, person = %name, "person disabled");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/people/{name}/enable", params(("name" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Re-enables a person.
pub(crate) async fn enable_person(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (id, name) = managed_person(&state, &caller, &name).await?;
    let event = change_event(
        &state,
        &info,
        &caller,
        "person.enable",
        &name,
        [("person_id", id.clone().into())],
    );
    state.store.set_person_disabled(&id, None, &[event]).await?;
    tracing::info!(by = %caller.token_id, person = %name, "person enabled");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/people/{name}/unlock", params(("name" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Lifts a login lockout on an account (recorded only if there were failures to forget).
pub(crate) async fn unlock_person(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (id, name) = managed_person(&state, &caller, &name).await?;
    let keyring = state.keyring().ok_or_else(ApiError::sealed)?;
    let event = change_event(
        &state,
        &info,
        &caller,
        "person.unlock",
        &name,
        [("person_id", id.into())],
    );
    if state
        .store
        .lift_lockout(&super::auth::account_subject(&keyring, &name), &[event])
        .await?
    {
        tracing::info!(by = %caller.token_id, person = %name, "account unlocked");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworksRequest {
    networks: Vec<String>,
}

#[utoipa::path(put, path = "/api/v1/people/{name}/networks", params(("name" = String, Path)), request_body = NetworksRequest, responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Sets a person's network allowlist (empty: unrestricted).
pub(crate) async fn set_person_networks(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<NetworksRequest>,
) -> Result<StatusCode, ApiError> {
    let networks = normalise_networks(&body.networks)?;
    let (id, name) = managed_person(&state, &caller, &name).await?;
    let event = change_event(
        &state,
        &info,
        &caller,
        "person.networks",
        &name,
        [
            ("person_id", id.clone().into()),
            ("networks", networks.clone().into()),
        ],
    );
    state
        .store
        .set_person_networks(&id, &networks, &[event])
        .await?;
    tracing::info!(by = %caller.token_id, person = %name, ?networks, "networks set");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VendorRequest {
    name: Option<String>,
    status: Option<String>,
    networks: Option<Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct VendorInfo {
    id: String,
    name: String,
    status: String,
    allowed_networks: Vec<String>,
}

impl From<VendorRecord> for VendorInfo {
    fn from(v: VendorRecord) -> Self {
        Self {
            id: v.id,
            name: v.name,
            status: v.status,
            allowed_networks: v.allowed_networks,
        }
    }
}

const VENDOR_STATUSES: [&str; 6] = [
    "prospect",
    "onboarding",
    "active",
    "suspended",
    "offboarding",
    "terminated",
];

fn validate_status(status: &str) -> Result<(), ApiError> {
    if VENDOR_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_request",
            format!("status must be one of {}", VENDOR_STATUSES.join(", ")),
        ))
    }
}

#[utoipa::path(post, path = "/api/v1/vendors", request_body = VendorRequest, responses((status = 200, body = VendorInfo), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Adds a vendor (status `active` unless given).
pub(crate) async fn add_vendor(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<VendorRequest>,
) -> Result<Json<VendorInfo>, ApiError> {
    let name = body
        .name
        .ok_or_else(|| ApiError::bad_request("invalid_request", "give `name`"))?;
    validate_name(&name)?;
    let status = body.status.unwrap_or_else(|| "active".to_owned());
    validate_status(&status)?;
    if state.store.vendor(&name).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("vendor `{name}` already exists"),
        ));
    }
    let vendor = VendorRecord {
        id: new_id("ven"),
        name,
        status,
        allowed_networks: normalise_networks(body.networks.as_deref().unwrap_or_default())?,
        created_at: state.clock.now(),
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "vendor.create",
        &vendor.name,
        [
            ("vendor_id", vendor.id.clone().into()),
            ("status", vendor.status.clone().into()),
            ("networks", vendor.allowed_networks.clone().into()),
        ],
    );
    state.store.insert_vendor(&vendor, &[event]).await?;
    tracing::info!(by = %caller.token_id, vendor = %vendor.name, "vendor added");
    Ok(Json(vendor.into()))
}

#[utoipa::path(get, path = "/api/v1/vendors/{name}", params(("name" = String, Path)), responses((status = 200, body = VendorInfo), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Shows a vendor.
pub(crate) async fn show_vendor(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<VendorInfo>, ApiError> {
    let vendor = state
        .store
        .vendor(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no vendor `{name}`")))?;
    Ok(Json(vendor.into()))
}

#[utoipa::path(put, path = "/api/v1/vendors/{name}", params(("name" = String, Path)), request_body = VendorRequest, responses((status = 200, body = VendorInfo), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Changes a vendor's status or allowlist. A suspended or terminated vendor's people lose
/// access at once.
pub(crate) async fn update_vendor(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<VendorRequest>,
) -> Result<Json<VendorInfo>, ApiError> {
    let vendor = state
        .store
        .vendor(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no vendor `{name}`")))?;
    let status = body.status.unwrap_or(vendor.status.clone());
    validate_status(&status)?;
    let networks = match &body.networks {
        Some(n) => normalise_networks(n)?,
        None => vendor.allowed_networks.clone(),
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "vendor.update",
        &vendor.name,
        [
            ("vendor_id", vendor.id.clone().into()),
            ("status", status.clone().into()),
            ("previous_status", vendor.status.clone().into()),
            ("networks", networks.clone().into()),
        ],
    );
    state
        .store
        .update_vendor(&vendor.id, &status, &networks, state.clock.now(), &[event])
        .await?;
    tracing::warn!(by = %caller.token_id, vendor = %vendor.name, %status, "vendor updated");
    Ok(Json(VendorInfo {
        status,
        allowed_networks: networks,
        ..vendor.into()
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantRequest {
    person: String,
    prefix: String,
    capabilities: Vec<String>,
    /// A duration such as `7d`; grants always end.
    ttl: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct GrantInfo {
    id: String,
    person_id: String,
    prefix: String,
    capabilities: Vec<String>,
    expires_time: String,
    created_by: String,
}

impl From<GrantRecord> for GrantInfo {
    fn from(g: GrantRecord) -> Self {
        Self {
            id: g.id,
            person_id: g.person_id,
            prefix: g.prefix,
            capabilities: g.capabilities,
            expires_time: g.expires_at.to_rfc3339(),
            created_by: g.created_by,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/grants", request_body = GrantRequest, responses((status = 200, body = GrantInfo), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Grants capabilities on a path prefix to a person until a time.
pub(crate) async fn add_grant(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<GrantRequest>,
) -> Result<Json<GrantInfo>, ApiError> {
    let capabilities = parse_capabilities(&body.capabilities)?;
    let prefix = body.prefix.trim_end_matches('/');
    SecretPath::parse(prefix)?;
    let ttl = parse_duration(&body.ttl).map_err(|e| ApiError::bad_request("invalid_request", e))?;
    let person = person_id(&state, &body.person).await?;
    if caller.person_id.as_deref() == Some(person.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "self_grant",
            "nobody may grant access to themselves",
        ));
    }
    let now = state.clock.now();
    let grant = GrantRecord {
        id: new_id("gra"),
        person_id: person,
        prefix: prefix.to_owned(),
        capabilities: capabilities.iter().map(|c| c.as_str().to_owned()).collect(),
        expires_at: now.plus_secs(ttl),
        created_at: now,
        created_by: caller.person_id.clone().unwrap_or(caller.token_id.clone()),
        revoked_at: None,
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "grant.create",
        &grant.id,
        [
            ("person_id", grant.person_id.clone().into()),
            ("prefix", grant.prefix.clone().into()),
            ("capabilities", grant.capabilities.clone().into()),
            ("expires_time", grant.expires_at.to_rfc3339().into()),
        ],
    );
    state.store.insert_grant(&grant, &[event]).await?;
    tracing::info!(by = %caller.token_id, grant = %grant.id, person = %body.person, prefix = %grant.prefix, "grant added");
    Ok(Json(grant.into()))
}

#[derive(Deserialize)]
pub(crate) struct GrantQuery {
    person: String,
}

#[utoipa::path(get, path = "/api/v1/grants", params(("person" = String, Query)), responses((status = 200, body = Vec<GrantInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// A person's active grants.
pub(crate) async fn list_grants(
    State(state): State<Arc<AppState>>,
    Query(query): Query<GrantQuery>,
) -> Result<Json<Vec<GrantInfo>>, ApiError> {
    let id = person_id(&state, &query.person).await?;
    let now = state.clock.now();
    Ok(Json(
        state
            .store
            .grants_of(&id)
            .await?
            .into_iter()
            .filter(|g| g.expires_at > now)
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/grants/{id}", params(("id" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Revokes a grant.
pub(crate) async fn revoke_grant(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let event = change_event(&state, &info, &caller, "grant.revoke", &id, []);
    if !state
        .store
        .revoke_grant(&id, state.clock.now(), &[event])
        .await?
    {
        return Err(ApiError::not_found("no such active grant"));
    }
    tracing::info!(by = %caller.token_id, grant = %id, "grant revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Classification {
    prefix: String,
    level: String,
}

#[utoipa::path(get, path = "/api/v1/classifications", responses((status = 200, body = Vec<Classification>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Classified prefixes; unlisted paths are `internal`.
pub(crate) async fn list_classifications(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<Classification>>, ApiError> {
    Ok(Json(
        state
            .store
            .classifications()
            .await?
            .into_iter()
            .map(|(prefix, level)| Classification { prefix, level })
            .collect(),
    ))
}

#[utoipa::path(put, path = "/api/v1/classifications", request_body = Classification, responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Classifies a path prefix.
pub(crate) async fn set_classification(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Classification>,
) -> Result<StatusCode, ApiError> {
    let level: Level = body
        .level
        .parse()
        .map_err(|e: String| ApiError::bad_request("invalid_request", e))?;
    let prefix = body.prefix.trim_end_matches('/');
    SecretPath::parse(prefix)?;
    let event = change_event(
        &state,
        &info,
        &caller,
        "classification.set",
        prefix,
        [("level", level.as_str().into())],
    );
    state
        .store
        .set_classification(prefix, level.as_str(), state.clock.now(), &[event])
        .await?;
    tracing::info!(by = %caller.token_id, prefix, level = level.as_str(), "classification set");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/classifications/{prefix}", params(("prefix" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Removes a prefix's classification.
pub(crate) async fn remove_classification(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(prefix): Path<String>,
) -> Result<StatusCode, ApiError> {
    let trimmed = prefix.trim_end_matches('/');
    let event = change_event(&state, &info, &caller, "classification.remove", trimmed, []);
    if !state.store.remove_classification(trimmed, &[event]).await? {
        return Err(ApiError::not_found(format!("`{prefix}` is not classified")));
    }
    tracing::info!(by = %caller.token_id, prefix, "classification removed");
    Ok(StatusCode::NO_CONTENT)
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_request",
            "names are 1 to 64 of A-Z a-z 0-9 . _ - @",
        ))
    }
}

fn normalise_networks(networks: &[String]) -> Result<Vec<String>, ApiError> {
    networks
        .iter()
        .map(|n| {
            n.parse::<Cidr>()
                .map(|c| c.to_string())
                .map_err(|e| ApiError::bad_request("invalid_request", e))
        })
        .collect()
}
