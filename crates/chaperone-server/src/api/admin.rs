//! Administration: people and path classifications (vendors are in `governance`, grants
//! in `access`).
//!
//! Every change is recorded in the ledger in the same transaction as the change (actions
//! `person.*`, `vendor.*`, `grant.*`, `classification.*`, listed in `docs/ledger.md`); a
//! change that does not happen records nothing.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chaperone_core::SecretPath;
use chaperone_core::net::Cidr;
use chaperone_core::policy::Role;
use chaperone_crypto::password::{code_hash, recovery_codes};
use chaperone_ledger::entry::{Event, Outcome};
use chaperone_store::{Op, PersonRecord, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ApiJson;
use super::ApiPath;
use super::auth::new_id;
use super::governance::{actor_id, exists, or_exists};
use crate::auth::Caller;
use crate::record::{Record, RequestInfo};
use crate::{ApiError, AppState};

/// The event for a successful change by `caller`, with `details` (non-secret facts only).
pub(super) fn change_event<const N: usize>(
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
    /// The account's end date (`2027-03-31`): past it, the account acts no more.
    ends: Option<String>,
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
    // An address mail cannot be sent to is refused here, not dropped at sending.
    if let Some(email) = body.email.as_deref()
        && !crate::mail::valid_address(email)
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            "email is not a plain address such as ann@example.com",
        ));
    }
    may_manage(&caller, role)?;
    may_hand_code(&caller, role)?;
    let vendor_id = match (&body.vendor, role) {
        (Some(_), role) if role != Role::Contractor => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "only contractors belong to a vendor; staff roles are the business's own",
            ));
        }
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
        return Err(exists(format!("`{}` already exists", body.name)));
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
        // The initial admin token is recorded as `root`: it holds the code as a person would.
        created_by: Some(actor_id(&caller)),
        reset_by: None,
        ends_at: body
            .ends
            .as_deref()
            .map(chaperone_core::governance::parse_date)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_request", e))?,
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
        .await
        .map_err(or_exists)?;
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

/// Security decision: a role that may not read secrets or approve access (security) does
/// not hand out the enrolment code of an account that may (creating it, or resetting its
/// credentials), since the code is the account: it does so for contractors, who get access
/// only through approved grants, and auditors. Staff who read or approve get their codes
/// from admins.
fn may_hand_code(caller: &Caller, role: Role) -> Result<(), ApiError> {
    if caller.principal.role != Role::Admin && !matches!(role, Role::Contractor | Role::Auditor) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "only an admin may create staff accounts or reset their credentials; security \
             does so for contractor and auditor accounts",
        ));
    }
    Ok(())
}

/// The person `name` (a name or an id) and their role, after checking the caller may
/// manage them.
async fn managed(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<(PersonRecord, Role), ApiError> {
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
    Ok((person, role))
}

/// The id and login name of the person `name` (a name or an id), after checking the caller
/// may manage them.
async fn managed_person(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<(String, String), ApiError> {
    let (person, _) = managed(state, caller, name).await?;
    Ok((person.id, person.name))
}

#[utoipa::path(post, path = "/api/v1/people/{name}/reset", params(("name" = String, Path)), responses((status = 200, body = AddPersonResponse), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Resets a person's credentials, for a lost password or authenticator: their password,
/// TOTP secret and recovery codes are cleared, every session and API token they hold is
/// revoked with the answers they wrapped, the share links and request links they made end,
/// their pending requests are closed, their lockout
/// is lifted, and a new one-time enrolment code is returned (earlier unused codes end).
/// Grants stay. The person, security and the admins are told (never the code), so a reset
/// nobody asked for is seen.
pub(crate) async fn reset_person(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<AddPersonResponse>, ApiError> {
    let keyring = state.keyring().ok_or_else(ApiError::sealed)?;
    // Security decision: whoever resets an account holds its new enrolment code, and so the
    // account and its grants. Security, which reads no secrets, resets a contractor only
    // while it holds no grant, checked again in the change (`refuse_if_granted`), so a
    // grant approved meanwhile fails it. Admins, who may read everything, reset any account.
    let refuse_if_granted = caller.principal.role != Role::Admin;
    for attempt in 1.. {
        let (person, role) = managed(&state, &caller, &name).await?;
        may_hand_code(&caller, role)?;
        if person.disabled_at.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "disabled",
                format!(
                    "`{}` is disabled: enable the account before resetting it",
                    person.name
                ),
            ));
        }
        let now = state.clock.now();
        if refuse_if_granted
            && state
                .store
                .grants_of(&person.id)
                .await?
                .iter()
                .any(|g| g.expires_at > now)
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "holds_grants",
                format!(
                    "`{}` holds grants: an admin resets the account, or revoke its grants first",
                    person.name
                ),
            ));
        }
        // Requests filed before the reset are closed: approving one later would hand its
        // access to whoever enrols with the new code.
        let closer = super::access::Decision {
            by: actor_id(&caller),
            comment: Some("the account's credentials were reset".into()),
            time: now.to_rfc3339(),
        };
        let closed = super::access::close_pending(&state, &person.id, &closer, now).await?;
        let code = recovery_codes(1).pop().expect("one code");
        let expires = now.plus_secs(state.settings.auth.enrolment_ttl_secs);
        let wrapped = state.store.wrapped_by(&person.id, now).await?;
        // The links they made end too: a reset answers a stolen password or authenticator,
        // and whoever held it could have made share links, or request links that write into
        // the vault under the account's grants.
        let (link_ops, link_events, links_ended) =
            super::shares::end_links_of(&state, &info, &caller.actor(), &person.id, "reset", now)
                .await?;
        let event = change_event(
            &state,
            &info,
            &caller,
            "person.reset",
            &person.name,
            [
                ("person_id", person.id.clone().into()),
                ("enrolment_expires_time", expires.to_rfc3339().into()),
                ("requests_closed", closed.len().into()),
                ("wrappings_revoked", wrapped.into()),
                ("links_ended", links_ended.into()),
            ],
        );
        let people = state.store.list_people().await?;
        let mut to: Vec<String> = people
            .iter()
            .filter(|p| p.disabled_at.is_none() && matches!(p.role.as_str(), "admin" | "security"))
            .map(|p| p.id.clone())
            .collect();
        if !to.contains(&person.id) {
            to.push(person.id.clone());
        }
        let mut ops = vec![
            Op::ResetCredentials {
                person_id: person.id.clone(),
                code_hash: code_hash(&code),
                expires_at: expires,
                at: now,
                by: Some(actor_id(&caller)),
                refuse_if_granted,
            },
            Op::RevokeTokensOf {
                person_id: person.id.clone(),
                at: now,
            },
            Op::ForgetFailures(
                super::auth::account_subjects(&keyring, &person.name)
                    .into_iter()
                    .chain([super::auth::step_up_subject(&person.id)])
                    .collect(),
            ),
            Op::ForgetLoginNetworks(super::auth::account_subject(&keyring, &person.name)),
            crate::notify::notification(
                "credentials_reset",
                &to,
                &format!(
                    "the password and authenticator of {} were reset; they enrol again with \
                     a new code",
                    person.name
                ),
                serde_json::json!({ "person_id": person.id, "by": actor_id(&caller) }),
                now,
            ),
        ];
        ops.extend(closed);
        ops.extend(link_ops);
        let mut events = vec![event];
        events.extend(link_events);
        match state.store.apply(ops, events).await {
            // Disabled or granted meanwhile: looked at again.
            Err(StoreError::Conflict(_)) if attempt < 3 => continue,
            other => other?,
        }
        // A link made while the reset ran is ended by one more pass; the reset is done, and
        // this never withholds the code.
        super::shares::end_late_links_of(&state, &info, &caller.actor(), &person.id, "reset", now)
            .await;
        tracing::warn!(by = %caller.token_id, person = %person.name, "credentials reset; their tokens revoked");
        return Ok(Json(AddPersonResponse {
            id: person.id,
            name: person.name,
            enrolment_code: code.to_string(),
            expires_time: expires.to_rfc3339(),
        }));
    }
    unreachable!("the loop returns")
}

#[utoipa::path(post, path = "/api/v1/people/{name}/disable", params(("name" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Disables a person: logins stop working, and every session and API token they hold is
/// revoked, in one change, as the sweep does for lapsed accounts. Re-enabling brings none
/// of them back (a token taken before the account was disabled must not come back to life
/// with it): the person logs in again.
pub(crate) async fn disable_person(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let (id, name) = managed_person(&state, &caller, &name).await?;
    // The pending requests are counted before the change, which closes every one pending as
    // it commits, also one filed meanwhile (`close_pending`).
    for attempt in 1.. {
        let now = state.clock.now();
        let closer = super::access::Decision {
            by: actor_id(&caller),
            comment: Some("the account was disabled".into()),
            time: now.to_rfc3339(),
        };
        let closed = super::access::close_pending(&state, &id, &closer, now).await?;
        // The answers they wrapped go with their tokens; the entry names them (as read
        // here: one wrapped meanwhile goes too, unnamed).
        let wrapped = state.store.wrapped_by(&id, now).await?;
        // Grants go with the account: re-enabling it brings no access back without a new
        // approval.
        let grants = state
            .store
            .grants_of(&id)
            .await?
            .iter()
            .filter(|g| g.expires_at > now)
            .count();
        // The links they made end with the account, as its grants do: enabling it again
        // brings none back.
        let (link_ops, link_events, links_ended) =
            super::shares::end_links_of(&state, &info, &caller.actor(), &id, "disable", now)
                .await?;
        let event = change_event(
            &state,
            &info,
            &caller,
            "person.disable",
            &name,
            [
                ("person_id", id.clone().into()),
                ("requests_closed", closed.len().into()),
                ("grants_revoked", grants.into()),
                ("wrappings_revoked", wrapped.into()),
                ("links_ended", links_ended.into()),
            ],
        );
        let mut ops = vec![
            Op::DisablePerson {
                id: id.clone(),
                at: now,
            },
            Op::RevokeTokensOf {
                person_id: id.clone(),
                at: now,
            },
            Op::RevokeGrantsOf {
                person_id: id.clone(),
                at: now,
            },
        ];
        ops.extend(closed);
        ops.extend(link_ops);
        let mut events = vec![event];
        events.extend(link_events);
        match state.store.apply(ops, events).await {
            Err(StoreError::Conflict(_)) if attempt < 3 => {}
            other => {
                other?;
                super::shares::end_late_links_of(
                    &state,
                    &info,
                    &caller.actor(),
                    &id,
                    "disable",
                    state.clock.now(),
                )
                .await;
                break;
            }
        }
    }
    tracing::warn!(by = %caller.token_id, person = %name, "person disabled; their tokens revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/people/{name}/enable", params(("name" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Re-enables a person.
pub(crate) async fn enable_person(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
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
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let (id, name) = managed_person(&state, &caller, &name).await?;
    let keyring = state.keyring().ok_or_else(ApiError::sealed)?;
    let event = change_event(
        &state,
        &info,
        &caller,
        "person.unlock",
        &name,
        [("person_id", id.clone().into())],
    );
    if state
        .store
        .lift_lockout(
            &super::auth::account_subjects(&keyring, &name)
                .into_iter()
                .chain([super::auth::step_up_subject(&id)])
                .collect::<Vec<_>>(),
            &[event],
        )
        .await?
    {
        tracing::info!(by = %caller.token_id, person = %name, "account unlocked");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnlockAddressRequest {
    /// The client address whose lockout to lift (an IPv6 address lifts its /64).
    address: String,
}

#[utoipa::path(post, path = "/api/v1/auth/unlock-address", request_body = UnlockAddressRequest, responses((status = 204), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Lifts the lockout of a client address, which every login and enrolment from it counts
/// towards (one guesser behind an office's address locks every colleague out). Recorded only if there were failures to forget; the accounts' own
/// lockouts stay.
pub(crate) async fn unlock_address(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(req): ApiJson<UnlockAddressRequest>,
) -> Result<StatusCode, ApiError> {
    let ip: std::net::IpAddr = req.address.trim().parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_request",
            "`address` must be an IP address such as 203.0.113.5 or 2001:db8::1",
        )
    })?;
    let subject = super::auth::ip_subject(ip);
    let address = subject.trim_start_matches("ip:").to_owned();
    let event = change_event(&state, &info, &caller, "address.unlock", &address, []);
    if state.store.lift_lockout(&[subject], &[event]).await? {
        tracing::info!(by = %caller.token_id, %address, "address unlocked");
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
    ApiPath(name): ApiPath<String>,
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

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Classification {
    prefix: String,
    level: String,
}

#[utoipa::path(get, path = "/api/v1/classifications", responses((status = 200, body = Vec<Classification>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Classified prefixes; unlisted paths are `internal`.
pub(crate) async fn list_classifications(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<Classification>>, ApiError> {
    // A grantee sees only the classified prefixes its listings would show it: a prefix
    // names a path, and other vendors' paths are none of its business. Those who manage
    // classifications see them all, wherever they are.
    let manages = matches!(caller.principal.role, Role::Admin | Role::Security);
    let mut listing = super::secrets::Listing::new(&state).await?;
    let mut shown = Vec::new();
    for (prefix, level) in state.store.classifications().await? {
        if manages
            || listing
                .shows(&state, &caller, &format!("{prefix}/"))
                .await?
        {
            shown.push(Classification { prefix, level });
        }
    }
    Ok(Json(shown))
}

#[utoipa::path(put, path = "/api/v1/classifications", request_body = Classification, responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Classifies a path prefix.
pub(crate) async fn set_classification(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Classification>,
) -> Result<StatusCode, ApiError> {
    let levels = super::governance::levels(&state).await?;
    let level = super::governance::level_named(&levels, &body.level)?;
    let prefix = body.prefix.trim_end_matches('/');
    SecretPath::parse(prefix)?;
    let event = change_event(
        &state,
        &info,
        &caller,
        "classification.set",
        prefix,
        [("level", level.name.clone().into())],
    );
    state
        .store
        .set_classification(prefix, &level.name, state.clock.now(), &[event])
        .await?;
    tracing::info!(by = %caller.token_id, prefix, level = %level.name, "classification set");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/classifications/{prefix}", params(("prefix" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Removes a prefix's classification.
pub(crate) async fn remove_classification(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(prefix): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let trimmed = prefix.trim_end_matches('/');
    let event = change_event(&state, &info, &caller, "classification.remove", trimmed, []);
    if !state.store.remove_classification(trimmed, &[event]).await? {
        return Err(ApiError::not_found(format!("`{prefix}` is not classified")));
    }
    tracing::info!(by = %caller.token_id, prefix, "classification removed");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn validate_name(name: &str) -> Result<(), ApiError> {
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

pub(super) fn normalise_networks(networks: &[String]) -> Result<Vec<String>, ApiError> {
    networks
        .iter()
        .map(|n| {
            n.parse::<Cidr>()
                .map(|c| c.to_string())
                .map_err(|e| ApiError::bad_request("invalid_request", e))
        })
        .collect()
}
