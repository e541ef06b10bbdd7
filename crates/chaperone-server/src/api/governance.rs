//! Third-party governance: vendors (profile and lifecycle), agreements, evidence, their
//! sealed documents, versioned policy documents with acknowledgements, and classification
//! level policies.
//!
//! Statuses of agreements and evidence are derived from their dates when shown and when
//! the gate checks them (`chaperone_core::governance`); nothing here stores a status that
//! could go stale. Every change is recorded in the ledger in the transaction that makes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chaperone_core::SecretPath;
use chaperone_core::governance::{
    AgreementFacts, AgreementKind, Criticality, DEFAULT_LEVEL, EvidenceFacts, EvidenceKind,
    LevelPolicy, VendorStatus, date, parse_date,
};
use chaperone_core::policy::Role;
use chaperone_core::{Timestamp, parse_duration};
use chaperone_store::{DocumentRecord, Op, Record, StoreError, VendorRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiJson;
use super::admin::{change_event, normalise_networks, validate_name};
use super::auth::new_id;
use super::{ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::record::RequestInfo;
use crate::{ApiError, AppState};

// ---------------------------------------------------------------------------------------
// Records

/// A new record of `kind`, revision 1.
pub(crate) fn new_record(
    kind: &str,
    id: String,
    owner: Option<String>,
    body: &impl Serialize,
    now: Timestamp,
) -> Record {
    Record {
        kind: kind.to_owned(),
        id,
        owner,
        body: serde_json::to_value(body).expect("records serialise"),
        revision: 1,
        created_at: now,
        updated_at: now,
    }
}

/// The next revision of `record` with `body`.
pub(crate) fn revise(record: &Record, body: &impl Serialize, now: Timestamp) -> Record {
    Record {
        body: serde_json::to_value(body).expect("records serialise"),
        revision: record.revision + 1,
        updated_at: now,
        ..record.clone()
    }
}

/// A record's body as `T`.
pub(crate) fn body<T: for<'de> Deserialize<'de>>(record: &Record) -> Result<T, ApiError> {
    serde_json::from_value(record.body.clone())
        .map_err(|e| StoreError::Corrupt(format!("{} `{}`: {e}", record.kind, record.id)).into())
}

/// Who acted, for records and for separation of duties: the person, or [`ROOT_ACTOR`] for
/// every token that belongs to no person (the initial admin token and the tokens it made).
/// All such tokens are one actor, so whoever holds them cannot approve a request twice or
/// review their own break-glass grant.
pub(crate) fn actor_id(caller: &Caller) -> String {
    caller
        .person_id
        .clone()
        .unwrap_or_else(|| ROOT_ACTOR.to_owned())
}

/// 409 `exists`: a name already taken.
pub(crate) fn exists(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "exists", message)
}

/// A store error as [`exists`] when it is a name taken meanwhile.
pub(crate) fn or_exists(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(message) => exists(message),
        other => other.into(),
    }
}

/// The actor of tokens that belong to no person.
pub(crate) const ROOT_ACTOR: &str = "root";

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

fn parse<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, ApiError> {
    text.parse().map_err(invalid)
}

fn optional_date(text: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    text.map(parse_date).transpose().map_err(invalid)
}

/// The person id of `vendor`'s owner while their account is enabled: findings and
/// reminders go to someone who can act on them.
pub(crate) async fn active_owner(
    state: &AppState,
    vendor: &VendorRecord,
) -> Result<Option<String>, ApiError> {
    Ok(match vendor.profile.get("owner").and_then(Value::as_str) {
        Some(id) => state
            .store
            .acting_person(id)
            .await?
            .filter(|p| p.disabled_at.is_none())
            .map(|p| p.id),
        None => None,
    })
}

pub(crate) async fn vendor_named(state: &AppState, name: &str) -> Result<VendorRecord, ApiError> {
    state
        .store
        .vendor(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no vendor `{name}`")))
}

// ---------------------------------------------------------------------------------------
// Vendors

/// What the server keeps about a vendor besides its name, status and networks.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VendorProfile {
    /// Registered legal name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    legal_name: Option<String>,
    /// Registration identifiers by scheme (`duns`, `vat`, `lei`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    identifiers: BTreeMap<String, String>,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    country: Option<String>,
    /// People to contact at the vendor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    contacts: Vec<Contact>,
    /// The accountable internal owner (a person id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// How much the business depends on the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    criticality: Option<Criticality>,
    /// Where the vendor processes the business's data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    processing_locations: Vec<String>,
    /// Where the vendor stores it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    storage_locations: Vec<String>,
    /// The functions, ports and protocols the vendor needs (NIST SP 800-53 SA-9(2)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    functions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    protocols: Vec<String>,
    /// The vendor this one is a sub-processor of (a vendor id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Contact {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// What they are the contact for (`security`, `legal`, `billing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

/// A vendor as created and changed through the API. Every field is optional on a change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VendorRequest {
    name: Option<String>,
    /// On creation: `prospect` (the default), `onboarding` or `active`. On a change: a
    /// lifecycle transition, which needs a `reason`.
    status: Option<String>,
    /// Why the status changes.
    reason: Option<String>,
    networks: Option<Vec<String>>,
    legal_name: Option<String>,
    identifiers: Option<BTreeMap<String, String>>,
    country: Option<String>,
    contacts: Option<Vec<Contact>>,
    /// The accountable internal owner's name.
    owner: Option<String>,
    criticality: Option<String>,
    processing_locations: Option<Vec<String>>,
    storage_locations: Option<Vec<String>>,
    functions: Option<Vec<String>>,
    ports: Option<Vec<u16>>,
    protocols: Option<Vec<String>>,
    /// The vendor this one is a sub-processor of (a name).
    parent: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct VendorInfo {
    id: String,
    name: String,
    status: String,
    allowed_networks: Vec<String>,
    #[serde(flatten)]
    profile: VendorProfile,
    /// The owner's name (`owner` is their id), while the account exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_name: Option<String>,
    /// The parent vendor's name (`parent` is its id).
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_name: Option<String>,
    /// Vendors that name this one as their parent.
    sub_processors: Vec<String>,
    created_time: String,
}

/// Checks free text written by staff that others read (`super::check_text`), if given.
fn check_optional(field: &str, text: Option<&str>, max: usize) -> Result<(), ApiError> {
    text.map_or(Ok(()), |t| super::check_text(field, t, max))
}

/// The longest name, title or place in a vendor's profile, an agreement, evidence or a
/// policy's title.
const MAX_SHORT_TEXT: usize = 200;

/// The longest policy text, in characters (a long acceptable-use policy is some 30,000).
const MAX_POLICY_TEXT: usize = 200_000;

impl VendorRequest {
    /// Refuses control and invisible characters, and over-long values, in every text field
    /// people other than its writer read (approvers, auditors, the vendor's contacts).
    fn check_texts(&self) -> Result<(), ApiError> {
        check_optional("legal_name", self.legal_name.as_deref(), MAX_SHORT_TEXT)?;
        check_optional("reason", self.reason.as_deref(), 2_000)?;
        for (key, value) in self.identifiers.iter().flatten() {
            super::check_text("identifiers", key, MAX_SHORT_TEXT)?;
            super::check_text("identifiers", value, MAX_SHORT_TEXT)?;
        }
        for contact in self.contacts.iter().flatten() {
            super::check_text("contacts", &contact.name, MAX_SHORT_TEXT)?;
            check_optional("contacts", contact.role.as_deref(), MAX_SHORT_TEXT)?;
        }
        for (field, values) in [
            ("processing_locations", &self.processing_locations),
            ("storage_locations", &self.storage_locations),
            ("functions", &self.functions),
            ("protocols", &self.protocols),
        ] {
            for value in values.iter().flatten() {
                super::check_text(field, value, MAX_SHORT_TEXT)?;
            }
        }
        Ok(())
    }

    /// Applies the profile fields given to `profile`.
    async fn apply_to(
        &self,
        state: &AppState,
        vendor_id: Option<&str>,
        profile: &mut VendorProfile,
    ) -> Result<(), ApiError> {
        self.check_texts()?;
        if let Some(v) = &self.legal_name {
            profile.legal_name = Some(v.clone()).filter(|v| !v.is_empty());
        }
        if let Some(v) = &self.identifiers {
            profile.identifiers.clone_from(v);
        }
        if let Some(country) = &self.country {
            if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(invalid(
                    "country is an ISO 3166-1 alpha-2 code such as DE or US",
                ));
            }
            profile.country = Some(country.to_ascii_uppercase());
        }
        if let Some(v) = &self.contacts {
            // An address mail cannot be sent to is refused here, not dropped at sending.
            if let Some(bad) = v.iter().find(|c| {
                c.email
                    .as_deref()
                    .is_some_and(|e| !crate::mail::valid_address(e))
            }) {
                return Err(invalid(format!(
                    "the email of contact {:?} is not a plain address such as \
                     security@example.com",
                    bad.name
                )));
            }
            profile.contacts.clone_from(v);
        }
        if let Some(owner) = &self.owner {
            let person = state
                .store
                .person(owner)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no person `{owner}`")))?;
            if person.vendor_id.is_some() || person.role == Role::Contractor.as_str() {
                return Err(invalid(
                    "a vendor's owner is a member of staff, not a contractor",
                ));
            }
            if person.disabled_at.is_some() {
                return Err(invalid(format!(
                    "{owner}'s account is disabled: a vendor's owner must be able to act"
                )));
            }
            profile.owner = Some(person.id);
        }
        if let Some(c) = &self.criticality {
            profile.criticality = Some(parse(c)?);
        }
        for (given, field) in [
            (
                &self.processing_locations,
                &mut profile.processing_locations,
            ),
            (&self.storage_locations, &mut profile.storage_locations),
            (&self.functions, &mut profile.functions),
            (&self.protocols, &mut profile.protocols),
        ] {
            if let Some(v) = given {
                field.clone_from(v);
            }
        }
        if let Some(v) = &self.ports {
            profile.ports.clone_from(v);
        }
        if let Some(parent) = &self.parent {
            let parent = vendor_named(state, parent).await?;
            if Some(parent.id.as_str()) == vendor_id {
                return Err(invalid("a vendor cannot be its own sub-processor"));
            }
            profile.parent = Some(parent.id);
        }
        Ok(())
    }
}

async fn vendor_info(state: &AppState, vendor: VendorRecord) -> Result<VendorInfo, ApiError> {
    let profile: VendorProfile = serde_json::from_value(vendor.profile.clone())
        .map_err(|e| StoreError::Corrupt(format!("vendor profile: {e}")))?;
    let vendors = state.store.vendors().await?;
    let parent_name = profile
        .parent
        .as_ref()
        .and_then(|id| vendors.iter().find(|v| &v.id == id))
        .map(|v| v.name.clone());
    let sub_processors = vendors
        .into_iter()
        .filter(|v| v.profile.get("parent").and_then(Value::as_str) == Some(vendor.id.as_str()))
        .map(|v| v.name)
        .collect();
    let owner_name = match &profile.owner {
        Some(id) => state.store.acting_person(id).await?.map(|p| p.name),
        None => None,
    };
    Ok(VendorInfo {
        owner_name,
        parent_name,
        id: vendor.id,
        name: vendor.name,
        status: vendor.status,
        allowed_networks: vendor.allowed_networks,
        profile,
        sub_processors,
        created_time: vendor.created_at.to_rfc3339(),
    })
}

/// A status change, kept as the vendor's history.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct StatusChange {
    from: String,
    to: String,
    by: String,
    reason: String,
    time: String,
}

impl StatusChange {
    pub(crate) fn new(
        from: VendorStatus,
        to: VendorStatus,
        by: String,
        reason: String,
        now: Timestamp,
    ) -> Self {
        Self {
            from: from.to_string(),
            to: to.to_string(),
            by,
            reason,
            time: now.to_rfc3339(),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/vendors", request_body = VendorRequest, responses((status = 200, body = VendorInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Adds a vendor, in status `prospect` unless `onboarding` or `active` is given.
pub(crate) async fn add_vendor(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<VendorRequest>,
) -> Result<Json<VendorInfo>, ApiError> {
    let name = body.name.clone().ok_or_else(|| invalid("give `name`"))?;
    validate_name(&name)?;
    let status: VendorStatus = parse(body.status.as_deref().unwrap_or("prospect"))?;
    if !matches!(
        status,
        VendorStatus::Prospect | VendorStatus::Onboarding | VendorStatus::Active
    ) {
        return Err(invalid(
            "a new vendor starts as prospect, onboarding or active",
        ));
    }
    if state.store.vendor(&name).await?.is_some() {
        return Err(exists(format!("vendor `{name}` already exists")));
    }
    let mut profile = VendorProfile::default();
    body.apply_to(&state, None, &mut profile).await?;
    let vendor = VendorRecord {
        id: new_id("ven"),
        name,
        status: status.to_string(),
        allowed_networks: normalise_networks(body.networks.as_deref().unwrap_or_default())?,
        profile: serde_json::to_value(&profile).expect("profiles serialise"),
        created_at: state.clock.now(),
        updated_at: state.clock.now(),
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
            ("profile", vendor.profile.clone()),
        ],
    );
    // Checked above, but another request may have added the name since.
    state
        .store
        .insert_vendor(&vendor, &[event])
        .await
        .map_err(or_exists)?;
    tracing::info!(by = %caller.token_id, vendor = %vendor.name, "vendor added");
    Ok(Json(vendor_info(&state, vendor).await?))
}

#[utoipa::path(get, path = "/api/v1/vendors", responses((status = 200, body = Vec<VendorInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Every vendor.
pub(crate) async fn list_vendors(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<VendorInfo>>, ApiError> {
    let mut out = Vec::new();
    for vendor in state.store.vendors().await? {
        out.push(vendor_info(&state, vendor).await?);
    }
    Ok(Json(out))
}

/// A vendor with its agreements, evidence and status history.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct VendorDetail {
    #[serde(flatten)]
    vendor: VendorInfo,
    agreements: Vec<AgreementInfo>,
    evidence: Vec<EvidenceInfo>,
    /// Its attestations of return or destruction of data, pending or signed.
    attestations: Vec<super::offboard::Attestation>,
    history: Vec<StatusChange>,
}

#[utoipa::path(get, path = "/api/v1/vendors/{name}", params(("name" = String, Path)), responses((status = 200, body = VendorDetail), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Shows a vendor with its agreements and evidence (statuses as of now) and its history.
pub(crate) async fn show_vendor(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<VendorDetail>, ApiError> {
    let vendor = vendor_named(&state, &name).await?;
    let now = state.clock.now();
    let agreements = agreements_of(&state, &vendor.id)
        .await?
        .into_iter()
        .map(|(record, a)| a.info(&record, now))
        .collect();
    let evidence = evidence_of(&state, &vendor.id)
        .await?
        .into_iter()
        .map(|(record, e)| e.info(&record, now))
        .collect();
    let history = state
        .store
        .records("vendor_status", Some(&vendor.id))
        .await?
        .iter()
        .map(body)
        .collect::<Result<_, _>>()?;
    // The signer's address is in the ledger, for those who may read it; approvers, who read
    // governance but not the ledger, are not shown it here.
    let mut attestations = super::offboard::current_attestations(&state, &vendor.id).await?;
    for attestation in &mut attestations {
        if let Some(signed) = &mut attestation.signed {
            signed.client_ip = None;
        }
    }
    Ok(Json(VendorDetail {
        vendor: vendor_info(&state, vendor).await?,
        agreements,
        evidence,
        attestations,
        history,
    }))
}

#[utoipa::path(put, path = "/api/v1/vendors/{name}", params(("name" = String, Path)), request_body = VendorRequest, responses((status = 200, body = VendorInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Changes a vendor's profile, allowlist or status. A status change must be a lifecycle
/// transition and give a reason; it is kept in the vendor's history. A vendor that is not
/// active or onboarding lets none of its people in, from the next request on.
pub(crate) async fn update_vendor(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<VendorRequest>,
) -> Result<Json<VendorInfo>, ApiError> {
    if body.name.is_some() {
        return Err(invalid("a vendor's name cannot change"));
    }
    let vendor = vendor_named(&state, &name).await?;
    let now = state.clock.now();
    let mut profile: VendorProfile = serde_json::from_value(vendor.profile.clone())
        .map_err(|e| StoreError::Corrupt(format!("vendor profile: {e}")))?;
    body.apply_to(&state, Some(&vendor.id), &mut profile)
        .await?;
    let mut updated = vendor.clone();
    updated.profile = serde_json::to_value(&profile).expect("profiles serialise");
    if let Some(n) = &body.networks {
        updated.allowed_networks = normalise_networks(n)?;
    }
    let mut ops = Vec::new();
    let mut details = vec![
        ("vendor_id", json!(vendor.id)),
        ("networks", json!(updated.allowed_networks)),
        ("profile", updated.profile.clone()),
    ];
    if let Some(status) = &body.status {
        let from: VendorStatus = parse(&vendor.status)?;
        let to: VendorStatus = parse(status)?;
        if from != to {
            from.check_transition(to).map_err(invalid)?;
            // Ending a vendor whose people may have had access is an offboarding: it cuts
            // that access, reports what they could reach and opens the rotation findings and
            // the attestation. A status change alone would skip all of that, so only a
            // prospect (whose people were never let in) or a vendor already offboarding is
            // terminated here.
            if to == VendorStatus::Offboarding
                || (to == VendorStatus::Terminated
                    && !matches!(from, VendorStatus::Prospect | VendorStatus::Offboarding))
            {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "offboard_first",
                    format!(
                        "a vendor that is {from} is ended by offboarding it (`chaperone vendor \
                         offboard {}`), which cuts its people's access and reports what they could \
                         reach",
                        vendor.name
                    ),
                ));
            }
            let reason = body
                .reason
                .clone()
                .filter(|r| !r.trim().is_empty())
                .ok_or_else(|| invalid("a status change needs a `reason`"))?;
            updated.status = to.to_string();
            let change = StatusChange::new(from, to, actor_id(&caller), reason.clone(), now);
            ops.push(Op::Put(new_record(
                "vendor_status",
                new_id("vst"),
                Some(vendor.id.clone()),
                &change,
                now,
            )));
            details.push(("status", json!(to.as_str())));
            details.push(("previous_status", json!(from.as_str())));
            details.push(("reason", json!(reason)));
        }
    }
    if updated == vendor {
        // Nothing changes, so nothing is recorded.
        return Ok(Json(vendor_info(&state, updated).await?));
    }
    let terminated =
        updated.status == VendorStatus::Terminated.as_str() && vendor.status != updated.status;
    ops.insert(
        0,
        Op::UpdateVendor {
            vendor: updated.clone(),
            previous_status: vendor.status.clone(),
            previous_updated_at: vendor.updated_at,
            at: now,
        },
    );
    // A termination counts the pending requests before the change, which closes every one
    // pending as it commits, also one filed meanwhile (`close_pending`); a change that
    // conflicts (the vendor changed meanwhile) reads everything again.
    for attempt in 1.. {
        let mut ops = ops.clone();
        let mut details = details.clone();
        if terminated {
            // A terminated vendor's accounts are disabled, and their tokens, grants and the
            // answers they wrapped revoked with it; the entry names the accounts it disabled
            // and the wrapped answers (as read here: one wrapped meanwhile goes too, unnamed).
            let mut disabled = Vec::new();
            let mut grants_revoked = 0;
            let mut wrappings_revoked = Vec::new();
            let closer = super::access::Decision {
                by: actor_id(&caller),
                comment: Some(format!("vendor {} terminated", vendor.name)),
                time: now.to_rfc3339(),
            };
            let mut requests_closed = 0;
            for person in state.store.list_people().await? {
                if person.vendor_id.as_deref() == Some(vendor.id.as_str()) {
                    let closed =
                        super::access::close_pending(&state, &person.id, &closer, now).await?;
                    requests_closed += closed.len();
                    ops.extend(closed);
                    if person.disabled_at.is_none() {
                        ops.push(Op::DisablePerson {
                            id: person.id.clone(),
                            at: now,
                        });
                        disabled.push(json!({ "person_id": person.id, "name": person.name }));
                    }
                    ops.push(Op::RevokeTokensOf {
                        person_id: person.id.clone(),
                        at: now,
                    });
                    wrappings_revoked.extend(state.store.wrapped_by(&person.id, now).await?);
                    // Counted as read; revoked in the change by person, so a grant made after
                    // this read is revoked too (as offboarding does).
                    grants_revoked += state.store.grants_of(&person.id).await?.len();
                    ops.push(Op::RevokeGrantsOf {
                        person_id: person.id,
                        at: now,
                    });
                }
            }
            details.push(("people_disabled", json!(disabled)));
            details.push(("requests_closed", json!(requests_closed)));
            details.push(("grants_revoked", json!(grants_revoked)));
            details.push(("wrappings_revoked", json!(wrappings_revoked)));
        }
        let mut record = crate::record::Record::new(
            "vendor.update",
            &vendor.name,
            chaperone_ledger::entry::Outcome::Success,
        );
        record.details = details
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let event = state.event(&info, caller.actor(), record);
        match state.store.apply(ops, vec![event]).await {
            Err(chaperone_store::StoreError::Conflict(_)) if terminated && attempt < 3 => {}
            other => {
                other?;
                break;
            }
        }
    }
    tracing::warn!(by = %caller.token_id, vendor = %vendor.name, status = %updated.status, "vendor updated");
    Ok(Json(vendor_info(&state, updated).await?))
}

// ---------------------------------------------------------------------------------------
// Agreements

/// Key clauses of an agreement, as data.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Clauses {
    /// The business may audit the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_rights: Option<bool>,
    /// Who owns the IP and code the vendor produces (`client`, `vendor`, `shared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_ownership: Option<String>,
    /// Breach notification within this many hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    breach_notification_hours: Option<u32>,
    /// Promised uptime, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sla_uptime_percent: Option<f64>,
    /// Incident response within this many hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incident_response_hours: Option<u32>,
    /// On termination: `return`, `destroy` or `return_or_destroy` the business's data...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) termination_data: Option<String>,
    /// ...within this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) termination_data_days: Option<u32>,
    /// Escrow terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    escrow: Option<String>,
}

impl Clauses {
    fn validate(&self) -> Result<(), ApiError> {
        check_optional("escrow", self.escrow.as_deref(), 2_000)?;
        if let Some(ip) = &self.ip_ownership
            && !["client", "vendor", "shared"].contains(&ip.as_str())
        {
            return Err(invalid("ip_ownership is client, vendor or shared"));
        }
        if let Some(t) = &self.termination_data
            && !["return", "destroy", "return_or_destroy"].contains(&t.as_str())
        {
            return Err(invalid(
                "termination_data is return, destroy or return_or_destroy",
            ));
        }
        if self
            .sla_uptime_percent
            .is_some_and(|p| !(0.0..=100.0).contains(&p))
        {
            return Err(invalid("sla_uptime_percent is between 0 and 100"));
        }
        Ok(())
    }
}

/// An agreement as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Agreement {
    pub(crate) vendor_id: String,
    pub(crate) kind: AgreementKind,
    pub(crate) title: Option<String>,
    pub(crate) signed_at: Option<Timestamp>,
    pub(crate) effective_at: Option<Timestamp>,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) terminated_at: Option<Timestamp>,
    pub(crate) clauses: Clauses,
    pub(crate) document: Option<DocumentRef>,
    pub(crate) created_by: String,
}

/// A sealed document attached to a record.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct DocumentRef {
    id: String,
    name: String,
    media_type: String,
    size: i64,
    sha256: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgreementRequest {
    /// nda, msa, sow, dpa, sla, baa, escrow or other.
    kind: String,
    title: Option<String>,
    /// Dates as `2026-10-01` (midnight UTC) or RFC 3339.
    signed: Option<String>,
    effective: Option<String>,
    /// The first day it no longer applies.
    expires: Option<String>,
    #[serde(default)]
    clauses: Clauses,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AgreementInfo {
    id: String,
    vendor_id: String,
    kind: String,
    title: Option<String>,
    /// draft, pending, active, expired or terminated, as of now.
    status: String,
    signed: Option<String>,
    effective: Option<String>,
    expires: Option<String>,
    terminated: Option<String>,
    clauses: Clauses,
    document: Option<DocumentRef>,
}

impl Agreement {
    pub(crate) fn facts(&self) -> AgreementFacts {
        AgreementFacts {
            kind: self.kind,
            signed_at: self.signed_at,
            effective_at: self.effective_at,
            expires_at: self.expires_at,
            terminated_at: self.terminated_at,
        }
    }

    fn info(&self, record: &Record, now: Timestamp) -> AgreementInfo {
        let status = serde_json::to_value(self.facts().status(now)).expect("statuses serialise");
        AgreementInfo {
            id: record.id.clone(),
            vendor_id: self.vendor_id.clone(),
            kind: self.kind.to_string(),
            title: self.title.clone(),
            status: status.as_str().unwrap_or_default().to_owned(),
            signed: self.signed_at.map(date),
            effective: self.effective_at.map(date),
            expires: self.expires_at.map(date),
            terminated: self.terminated_at.map(date),
            clauses: self.clauses.clone(),
            document: self.document.clone(),
        }
    }
}

pub(crate) async fn agreements_of(
    state: &AppState,
    vendor_id: &str,
) -> Result<Vec<(Record, Agreement)>, ApiError> {
    let records = state.store.records("agreement", Some(vendor_id)).await?;
    records
        .into_iter()
        .map(|r| body(&r).map(|a| (r, a)))
        .collect()
}

#[utoipa::path(post, path = "/api/v1/vendors/{name}/agreements", params(("name" = String, Path)), request_body = AgreementRequest, responses((status = 200, body = AgreementInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Records an agreement with a vendor. A renewal is a new agreement of the same kind.
pub(crate) async fn add_agreement(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<AgreementRequest>,
) -> Result<Json<AgreementInfo>, ApiError> {
    let vendor = vendor_named(&state, &name).await?;
    req.clauses.validate()?;
    check_optional("title", req.title.as_deref(), MAX_SHORT_TEXT)?;
    let agreement = Agreement {
        vendor_id: vendor.id.clone(),
        kind: parse(&req.kind)?,
        title: req.title,
        signed_at: optional_date(req.signed.as_deref())?,
        effective_at: optional_date(req.effective.as_deref())?,
        expires_at: optional_date(req.expires.as_deref())?,
        terminated_at: None,
        clauses: req.clauses,
        document: None,
        created_by: actor_id(&caller),
    };
    // It must expire after it binds: after its effective date and after its signature.
    let binds_from = match (agreement.effective_at, agreement.signed_at) {
        (Some(e), Some(s)) => Some(e.max(s)),
        (e, s) => e.or(s),
    };
    if let (Some(from), Some(to)) = (binds_from, agreement.expires_at)
        && to <= from
    {
        return Err(invalid("an agreement must expire after it takes effect"));
    }
    let now = state.clock.now();
    let record = new_record(
        "agreement",
        new_id("agr"),
        Some(vendor.id.clone()),
        &agreement,
        now,
    );
    let event = change_event(
        &state,
        &info,
        &caller,
        "agreement.create",
        &record.id,
        [
            ("vendor_id", vendor.id.clone().into()),
            ("kind", agreement.kind.as_str().into()),
            ("signed", agreement.signed_at.map(date).into()),
            ("effective", agreement.effective_at.map(date).into()),
            ("expires", agreement.expires_at.map(date).into()),
        ],
    );
    state
        .store
        .apply(vec![Op::Put(record.clone())], vec![event])
        .await?;
    tracing::info!(by = %caller.token_id, vendor = %vendor.name, kind = %agreement.kind, "agreement recorded");
    Ok(Json(agreement.info(&record, now)))
}

#[utoipa::path(get, path = "/api/v1/vendors/{name}/agreements", params(("name" = String, Path)), responses((status = 200, body = Vec<AgreementInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// A vendor's agreements, with their statuses as of now.
pub(crate) async fn list_agreements(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<AgreementInfo>>, ApiError> {
    let vendor = vendor_named(&state, &name).await?;
    let now = state.clock.now();
    Ok(Json(
        agreements_of(&state, &vendor.id)
            .await?
            .into_iter()
            .map(|(r, a)| a.info(&r, now))
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TerminateRequest {
    reason: String,
    /// When it ends (now, if not given).
    date: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/agreements/{id}/terminate", params(("id" = String, Path)), request_body = TerminateRequest, responses((status = 200, body = AgreementInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Ends an agreement early.
pub(crate) async fn terminate_agreement(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<TerminateRequest>,
) -> Result<Json<AgreementInfo>, ApiError> {
    if req.reason.trim().is_empty() {
        return Err(invalid("give a `reason`"));
    }
    super::check_text("reason", &req.reason, 2_000)?;
    let record = state
        .store
        .record("agreement", &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no agreement `{id}`")))?;
    let mut agreement: Agreement = body(&record)?;
    let now = state.clock.now();
    let at = optional_date(req.date.as_deref())?.unwrap_or(now);
    // A termination already set may be brought forward (a breach during a notice period),
    // never pushed back or repeated.
    let previous = agreement.terminated_at;
    match previous {
        Some(ended) if ended <= now => {
            return Err(invalid(format!(
                "the agreement was already terminated on {}",
                date(ended)
            )));
        }
        Some(scheduled) if at >= scheduled => {
            return Err(invalid(format!(
                "the agreement is already to end on {}; a termination can only be brought \
                 forward",
                date(scheduled)
            )));
        }
        _ => {}
    }
    agreement.terminated_at = Some(at);
    let updated = revise(&record, &agreement, now);
    let event = change_event(
        &state,
        &info,
        &caller,
        "agreement.terminate",
        &id,
        [
            ("vendor_id", agreement.vendor_id.clone().into()),
            ("kind", agreement.kind.as_str().into()),
            ("terminated", date(at).into()),
            ("previously_scheduled", previous.map(date).into()),
            ("reason", req.reason.into()),
        ],
    );
    state
        .store
        .apply(vec![Op::Put(updated.clone())], vec![event])
        .await?;
    Ok(Json(agreement.info(&updated, now)))
}

// ---------------------------------------------------------------------------------------
// Evidence

/// Evidence as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Evidence {
    pub(crate) vendor_id: String,
    pub(crate) kind: EvidenceKind,
    pub(crate) issuer: Option<String>,
    pub(crate) period_start: Option<Timestamp>,
    pub(crate) period_end: Option<Timestamp>,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) document: Option<DocumentRef>,
    pub(crate) created_by: String,
    /// Withdrawn before its expiry (a certificate revoked by its issuer, a wrong date):
    /// from then on it counts for nothing.
    #[serde(default)]
    pub(crate) revoked_at: Option<Timestamp>,
    #[serde(default)]
    pub(crate) revoked_reason: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvidenceRequest {
    /// soc2-type1, soc2-type2, iso27001, pentest, insurance or other.
    kind: String,
    /// The auditor, certification body or insurer.
    issuer: Option<String>,
    /// The period it covers.
    period_start: Option<String>,
    period_end: Option<String>,
    /// The first day it is no longer valid.
    expires: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EvidenceInfo {
    id: String,
    vendor_id: String,
    kind: String,
    issuer: Option<String>,
    /// pending, valid, expired or revoked, as of now.
    status: String,
    period_start: Option<String>,
    period_end: Option<String>,
    expires: Option<String>,
    revoked: Option<String>,
    revoked_reason: Option<String>,
    document: Option<DocumentRef>,
}

impl Evidence {
    pub(crate) fn facts(&self) -> EvidenceFacts {
        EvidenceFacts {
            kind: self.kind,
            valid_from: self.period_start,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }

    fn info(&self, record: &Record, now: Timestamp) -> EvidenceInfo {
        let status = serde_json::to_value(self.facts().status(now)).expect("statuses serialise");
        EvidenceInfo {
            id: record.id.clone(),
            vendor_id: self.vendor_id.clone(),
            kind: self.kind.to_string(),
            issuer: self.issuer.clone(),
            status: status.as_str().unwrap_or_default().to_owned(),
            period_start: self.period_start.map(date),
            period_end: self.period_end.map(date),
            expires: self.expires_at.map(date),
            revoked: self.revoked_at.map(date),
            revoked_reason: self.revoked_reason.clone(),
            document: self.document.clone(),
        }
    }
}

pub(crate) async fn evidence_of(
    state: &AppState,
    vendor_id: &str,
) -> Result<Vec<(Record, Evidence)>, ApiError> {
    let records = state.store.records("evidence", Some(vendor_id)).await?;
    records
        .into_iter()
        .map(|r| body(&r).map(|e| (r, e)))
        .collect()
}

#[utoipa::path(post, path = "/api/v1/vendors/{name}/evidence", params(("name" = String, Path)), request_body = EvidenceRequest, responses((status = 200, body = EvidenceInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Records a piece of evidence (an audit report, a certificate) for a vendor.
pub(crate) async fn add_evidence(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<EvidenceRequest>,
) -> Result<Json<EvidenceInfo>, ApiError> {
    check_optional("issuer", req.issuer.as_deref(), MAX_SHORT_TEXT)?;
    let vendor = vendor_named(&state, &name).await?;
    let evidence = Evidence {
        vendor_id: vendor.id.clone(),
        kind: parse(&req.kind)?,
        issuer: req.issuer,
        period_start: optional_date(req.period_start.as_deref())?,
        period_end: optional_date(req.period_end.as_deref())?,
        expires_at: Some(parse_date(&req.expires).map_err(invalid)?),
        document: None,
        created_by: actor_id(&caller),
        revoked_at: None,
        revoked_reason: None,
    };
    if let (Some(a), Some(b)) = (evidence.period_start, evidence.period_end)
        && b < a
    {
        return Err(invalid("the period ends before it starts"));
    }
    let now = state.clock.now();
    let record = new_record(
        "evidence",
        new_id("evi"),
        Some(vendor.id.clone()),
        &evidence,
        now,
    );
    let event = change_event(
        &state,
        &info,
        &caller,
        "evidence.create",
        &record.id,
        [
            ("vendor_id", vendor.id.clone().into()),
            ("kind", evidence.kind.as_str().into()),
            ("issuer", evidence.issuer.clone().into()),
            ("expires", evidence.expires_at.map(date).into()),
        ],
    );
    state
        .store
        .apply(vec![Op::Put(record.clone())], vec![event])
        .await?;
    Ok(Json(evidence.info(&record, now)))
}

#[utoipa::path(get, path = "/api/v1/vendors/{name}/evidence", params(("name" = String, Path)), responses((status = 200, body = Vec<EvidenceInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// A vendor's evidence, with statuses as of now.
pub(crate) async fn list_evidence(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<EvidenceInfo>>, ApiError> {
    let vendor = vendor_named(&state, &name).await?;
    let now = state.clock.now();
    Ok(Json(
        evidence_of(&state, &vendor.id)
            .await?
            .into_iter()
            .map(|(r, e)| e.info(&r, now))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/evidence/{id}/revoke", params(("id" = String, Path)), request_body = TerminateRequest, responses((status = 200, body = EvidenceInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Withdraws a piece of evidence before its expiry (revoked by its issuer, recorded with a
/// wrong date): from `date` (now, if not given) it satisfies no requirement.
pub(crate) async fn revoke_evidence(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<TerminateRequest>,
) -> Result<Json<EvidenceInfo>, ApiError> {
    if req.reason.trim().is_empty() {
        return Err(invalid("give a `reason`"));
    }
    super::check_text("reason", &req.reason, 2_000)?;
    let record = state
        .store
        .record("evidence", &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no evidence `{id}`")))?;
    let mut evidence: Evidence = body(&record)?;
    let now = state.clock.now();
    let at = optional_date(req.date.as_deref())?.unwrap_or(now);
    if let Some(revoked) = evidence.revoked_at
        && (revoked <= now || at >= revoked)
    {
        return Err(invalid(format!(
            "the evidence is already revoked from {}",
            date(revoked)
        )));
    }
    evidence.revoked_at = Some(at);
    evidence.revoked_reason = Some(req.reason.clone());
    let updated = revise(&record, &evidence, now);
    let event = change_event(
        &state,
        &info,
        &caller,
        "evidence.revoke",
        &id,
        [
            ("vendor_id", evidence.vendor_id.clone().into()),
            ("kind", evidence.kind.as_str().into()),
            ("revoked", date(at).into()),
            ("reason", req.reason.into()),
        ],
    );
    state
        .store
        .apply(vec![Op::Put(updated.clone())], vec![event])
        .await?;
    Ok(Json(evidence.info(&updated, now)))
}

// ---------------------------------------------------------------------------------------
// Documents

pub(crate) const DOCUMENT_PURPOSE: &str = "document";

#[derive(Deserialize)]
pub(crate) struct DocumentQuery {
    name: Option<String>,
}

/// The agreement or evidence record a document id belongs to.
async fn document_owner(state: &AppState, id: &str) -> Result<Record, ApiError> {
    let kind = if id.starts_with("agr_") {
        "agreement"
    } else if id.starts_with("evi_") {
        "evidence"
    } else {
        return Err(ApiError::not_found(
            "documents attach to agreements (agr_...) and evidence (evi_...)",
        ));
    };
    state
        .store
        .record(kind, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {kind} `{id}`")))
}

#[utoipa::path(put, path = "/api/v1/documents/{id}", params(("id" = String, Path, description = "an agreement or evidence id"), ("name" = Option<String>, Query, description = "the file name")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, body = DocumentRef), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Uploads the signed document of an agreement or evidence. It is stored sealed under the
/// keyring with the SHA-256 of its content; a new upload replaces the reference (the old
/// document is kept).
pub(crate) async fn put_document(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DocumentQuery>,
    headers: HeaderMap,
    content: Bytes,
) -> Result<Json<DocumentRef>, ApiError> {
    let keyring = super::secrets::unsealed(&state)?;
    let record = document_owner(&state, &id).await?;
    if content.is_empty() {
        return Err(invalid("the document is empty"));
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let name = query.name.unwrap_or_else(|| format!("{id}.bin"));
    // Plain ASCII names only: they travel back in a Content-Disposition header.
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '(' | ')'));
    if name.is_empty() || name.len() > 200 || !plain {
        return Err(invalid(
            "give a file name of at most 200 of A-Z a-z 0-9 . - _ ( ) and space",
        ));
    }
    let doc_id = new_id("doc");
    let sha256: String = super::sha256_hex(&content);
    let now = state.clock.now();
    let reference = DocumentRef {
        id: doc_id.clone(),
        name: name.clone(),
        media_type: media_type.clone(),
        size: i64::try_from(content.len()).unwrap_or(i64::MAX),
        sha256: sha256.clone(),
    };
    let mut value = record.body.clone();
    value["document"] = serde_json::to_value(&reference).expect("references serialise");
    let updated = Record {
        body: value,
        revision: record.revision + 1,
        updated_at: now,
        ..record.clone()
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "document.upload",
        &id,
        [
            ("document_id", doc_id.clone().into()),
            ("name", name.clone().into()),
            ("size", reference.size.into()),
            ("sha256", sha256.clone().into()),
        ],
    );
    let document = DocumentRecord {
        id: doc_id.clone(),
        owner: id.clone(),
        name,
        media_type,
        size: reference.size,
        sha256,
        // Bound to the document's id, so a sealed blob cannot be passed off as another.
        sealed: keyring.seal_field(DOCUMENT_PURPOSE, &doc_id, &content),
        created_at: now,
    };
    state
        .store
        .apply(
            vec![Op::PutDocument(document), Op::Put(updated)],
            vec![event],
        )
        .await?;
    Ok(Json(reference))
}

#[utoipa::path(get, path = "/api/v1/documents/{id}", params(("id" = String, Path, description = "an agreement or evidence id")), responses((status = 200, content_type = "application/octet-stream"), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Downloads the current document of an agreement or evidence, checked against its SHA-256.
pub(crate) async fn get_document(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let keyring = super::secrets::unsealed(&state)?;
    let record = document_owner(&state, &id).await?;
    let reference: DocumentRef = record
        .body
        .get("document")
        .filter(|d| !d.is_null())
        .map(|d| serde_json::from_value(d.clone()))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("document reference: {e}")))?
        .ok_or_else(|| ApiError::not_found(format!("`{id}` has no document")))?;
    let document =
        state.store.document(&reference.id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("document `{}` is missing", reference.id))
        })?;
    let plain = keyring.open_field(DOCUMENT_PURPOSE, &document.id, &document.sealed)?;
    let digest: String = super::sha256_hex(plain.expose());
    if digest != document.sha256 {
        return Err(StoreError::Corrupt(format!(
            "document `{}` does not match its SHA-256",
            document.id
        ))
        .into());
    }
    // A decrypted document is given out like a secret's value: recorded first.
    let mut record = crate::record::Record::new(
        "document.read",
        &id,
        chaperone_ledger::entry::Outcome::Success,
    );
    record
        .details
        .insert("document_id".into(), document.id.clone().into());
    record
        .details
        .insert("sha256".into(), document.sha256.clone().into());
    state.record(&info, caller.actor(), record).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        document.name.replace('"', "")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::HeaderName::from_static("x-content-sha256"),
                document.sha256,
            ),
        ],
        plain.expose().to_vec(),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// Policy documents and acknowledgements

/// One version of a policy document.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct PolicyVersion {
    name: String,
    version: u32,
    title: String,
    text: String,
    sha256: String,
    published_by: String,
    published_time: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyRequest {
    /// The policy's name (`acceptable-use`); publishing again makes a new version.
    name: String,
    title: String,
    text: String,
}

impl PolicyVersion {
    /// Its version number.
    pub(crate) fn version(&self) -> u32 {
        self.version
    }
}

/// An acknowledgement of one policy version by one person.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Acknowledgement {
    person_id: String,
    policy: String,
    version: u32,
    sha256: String,
    time: String,
}

/// Every version of every policy, by name, oldest version first.
pub(crate) async fn policies(
    state: &AppState,
) -> Result<BTreeMap<String, Vec<PolicyVersion>>, ApiError> {
    let mut out: BTreeMap<String, Vec<PolicyVersion>> = BTreeMap::new();
    for record in state.store.records("policy", None).await? {
        let version: PolicyVersion = body(&record)?;
        out.entry(version.name.clone()).or_default().push(version);
    }
    for versions in out.values_mut() {
        versions.sort_by_key(|v| v.version);
    }
    Ok(out)
}

/// The highest version of each policy `person_id` acknowledged.
pub(crate) async fn acknowledged(
    state: &AppState,
    person_id: &str,
) -> Result<BTreeMap<String, u32>, ApiError> {
    let mut out = BTreeMap::new();
    for record in state
        .store
        .records("acknowledgement", Some(person_id))
        .await?
    {
        let ack: Acknowledgement = body(&record)?;
        let v = out.entry(ack.policy).or_insert(0);
        *v = (*v).max(ack.version);
    }
    Ok(out)
}

#[utoipa::path(post, path = "/api/v1/policies", request_body = PolicyRequest, responses((status = 200, body = PolicyVersion), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Publishes a policy document: a new policy, or the next version of an existing one.
/// People must acknowledge the new version where a level asks for it.
pub(crate) async fn publish_policy(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> Result<Json<PolicyVersion>, ApiError> {
    validate_name(&req.name)?;
    if req.title.trim().is_empty() || req.text.trim().is_empty() {
        return Err(invalid("a policy has a title and a text"));
    }
    // A text keeps its lines and tabs; nothing else that a terminal or a reader's eye would
    // take for something other than what it is.
    super::check_text("title", &req.title, MAX_SHORT_TEXT)?;
    super::check_text("text", &req.text, MAX_POLICY_TEXT)?;
    let existing = policies(&state).await?;
    let version = existing
        .get(&req.name)
        .and_then(|v| v.last())
        .map_or(1, |v| v.version + 1);
    let now = state.clock.now();
    let sha256: String = super::sha256_hex(req.text.as_bytes());
    let policy = PolicyVersion {
        name: req.name.clone(),
        version,
        title: req.title,
        text: req.text,
        sha256: sha256.clone(),
        published_by: actor_id(&caller),
        published_time: now.to_rfc3339(),
    };
    let record = new_record(
        "policy",
        format!("{}@{version}", req.name),
        Some(req.name.clone()),
        &policy,
        now,
    );
    let event = change_event(
        &state,
        &info,
        &caller,
        "policy.publish",
        &req.name,
        [("version", version.into()), ("sha256", sha256.into())],
    );
    state
        .store
        .apply(vec![Op::Put(record)], vec![event])
        .await?;
    Ok(Json(policy))
}

#[utoipa::path(get, path = "/api/v1/policies", responses((status = 200, body = Vec<PolicyVersion>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// The latest version of every policy document.
pub(crate) async fn list_policies(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<PolicyVersion>>, ApiError> {
    Ok(Json(
        policies(&state)
            .await?
            .into_values()
            .filter_map(|mut v| v.pop())
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcknowledgeRequest {
    /// The version read; it must be the latest.
    version: u32,
}

#[utoipa::path(post, path = "/api/v1/policies/{name}/acknowledge", params(("name" = String, Path)), request_body = AcknowledgeRequest, responses((status = 200, body = Acknowledgement), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Acknowledges, for oneself, that one has read the latest version of a policy.
pub(crate) async fn acknowledge_policy(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<AcknowledgeRequest>,
) -> Result<Json<Acknowledgement>, ApiError> {
    let person_id = caller
        .person_id
        .clone()
        .ok_or_else(|| invalid("only a person can acknowledge a policy"))?;
    let all = policies(&state).await?;
    let latest = all
        .get(&name)
        .and_then(|v| v.last())
        .ok_or_else(|| ApiError::not_found(format!("no policy `{name}`")))?;
    if req.version != latest.version {
        return Err(invalid(format!(
            "the latest version of {name} is {}; read and acknowledge that one",
            latest.version
        )));
    }
    let now = state.clock.now();
    let ack = Acknowledgement {
        person_id: person_id.clone(),
        policy: name.clone(),
        version: latest.version,
        sha256: latest.sha256.clone(),
        time: now.to_rfc3339(),
    };
    let id = format!("{person_id}/{name}@{}", latest.version);
    if state.store.record("acknowledgement", &id).await?.is_some() {
        return Ok(Json(ack));
    }
    let record = new_record("acknowledgement", id, Some(person_id), &ack, now);
    let event = change_event(
        &state,
        &info,
        &caller,
        "policy.acknowledge",
        &name,
        [
            ("version", latest.version.into()),
            ("sha256", latest.sha256.clone().into()),
        ],
    );
    state
        .store
        .apply(vec![Op::Put(record)], vec![event])
        .await?;
    Ok(Json(ack))
}

// ---------------------------------------------------------------------------------------
// Levels

/// A classification level's access policy (see `docs/governance.md`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct LevelSchema {
    name: String,
    rank: u32,
    staff_access: bool,
    step_up: bool,
    agreements: Vec<String>,
    evidence: Vec<Vec<String>>,
    acknowledgements: Vec<String>,
    max_grant_secs: i64,
    approvals: u32,
    approver_roles: Vec<String>,
    networks: Vec<String>,
}

/// Every level: the built-in ones, replaced by stored ones of the same name, plus stored
/// new ones; by rank.
pub(crate) async fn levels(state: &AppState) -> Result<Vec<LevelPolicy>, ApiError> {
    let (_, stored) = state.store.classification_rules().await?;
    merge_levels(&stored)
}

/// The built-in levels with the stored ones (JSON bodies) applied over them, by rank.
pub(crate) fn merge_levels(stored: &[String]) -> Result<Vec<LevelPolicy>, ApiError> {
    let mut levels = LevelPolicy::defaults();
    for text in stored {
        let level: LevelPolicy = serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("level policy: {e}")))?;
        match levels.iter_mut().find(|l| l.name == level.name) {
            Some(slot) => *slot = level,
            None => levels.push(level),
        }
    }
    levels.sort_by_key(|l| l.rank);
    Ok(levels)
}

/// The level named `name` among `levels`, or an error naming the known ones.
pub(crate) fn level_named<'a>(
    levels: &'a [LevelPolicy],
    name: &str,
) -> Result<&'a LevelPolicy, ApiError> {
    levels.iter().find(|l| l.name == name).ok_or_else(|| {
        let names: Vec<&str> = levels.iter().map(|l| l.name.as_str()).collect();
        invalid(format!(
            "unknown level `{name}` (levels: {})",
            names.join(", ")
        ))
    })
}

#[utoipa::path(get, path = "/api/v1/levels", responses((status = 200, body = Vec<LevelSchema>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Every classification level with its access policy, by rank.
pub(crate) async fn list_levels(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<LevelPolicy>>, ApiError> {
    Ok(Json(levels(&state).await?))
}

#[utoipa::path(put, path = "/api/v1/levels/{name}", params(("name" = String, Path)), request_body = LevelSchema, responses((status = 200, body = LevelSchema), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Defines a level or changes its access policy. It applies from the next request on.
pub(crate) async fn put_level(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
    ApiJson(level): ApiJson<LevelPolicy>,
) -> Result<Json<LevelPolicy>, ApiError> {
    if level.name != name {
        return Err(invalid("the body's name differs from the path's"));
    }
    level.validate().map_err(invalid)?;
    let now = state.clock.now();
    let op = match state.store.record("level", &name).await? {
        Some(existing) => Op::Put(revise(&existing, &level, now)),
        None => Op::Put(new_record("level", name.clone(), None, &level, now)),
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "level.set",
        &name,
        [(
            "policy",
            serde_json::to_value(&level).expect("levels serialise"),
        )],
    );
    state.store.apply(vec![op], vec![event]).await?;
    tracing::warn!(by = %caller.token_id, level = %name, "level policy set");
    Ok(Json(level))
}

/// The level of `path`: that of the longest classified prefix covering it, the default
/// level when none does.
pub(crate) fn level_of<'a>(
    levels: &'a [LevelPolicy],
    classifications: &[(String, String)],
    path: &str,
) -> Result<&'a LevelPolicy, ApiError> {
    let mut best: Option<(usize, &str)> = None;
    for (prefix, level) in classifications {
        let p = prefix.trim_end_matches('/');
        if covers(p, path) && best.is_none_or(|(len, _)| p.len() > len) {
            best = Some((p.len(), level));
        }
    }
    let name = best.map_or(DEFAULT_LEVEL, |(_, l)| l);
    levels.iter().find(|l| l.name == name).ok_or_else(|| {
        StoreError::Corrupt(format!("path classified as unknown level `{name}`")).into()
    })
}

/// What a grant on `prefix` is held to. It reaches the prefix's own level and every level
/// classified below it, so it takes the strictest of each term, whatever the levels' ranks
/// say: the most approvals, the shortest longest grant, and only the approver roles every
/// one of them names (none, when they name different roles: nobody may then approve a grant
/// that wide). Its name and rank are those of the highest-ranked level it reaches.
pub(crate) fn strictest_under(
    levels: &[LevelPolicy],
    classifications: &[(String, String)],
    prefix: &str,
) -> Result<LevelPolicy, ApiError> {
    let mut reached = vec![level_of(levels, classifications, prefix)?];
    for (classified, name) in classifications {
        if covers(prefix, classified.trim_end_matches('/'))
            && let Some(level) = levels.iter().find(|l| &l.name == name)
        {
            reached.push(level);
        }
    }
    let top = reached.iter().fold(
        reached[0],
        |top, &level| if level.rank > top.rank { level } else { top },
    );
    let mut held = top.clone();
    for level in &reached {
        held.approvals = held.approvals.max(level.approvals);
        held.max_grant_secs = held.max_grant_secs.min(level.max_grant_secs);
        // Approving access to a folder that reaches a level with step-up asks a fresh code,
        // whichever level ranks highest.
        held.step_up |= level.step_up;
        held.approver_roles
            .retain(|role| level.approver_roles.contains(role));
    }
    Ok(held)
}

/// The refusal of a grant whose prefix reaches levels approved by different roles.
pub(crate) fn levels_disagree(prefix: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "levels_disagree",
        format!(
            "paths under `{prefix}` are classified at levels approved by different roles, so \
             nobody may approve one grant on all of them: ask for the narrower prefixes"
        ),
    )
}

fn covers(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Parses a grant duration (`7d`) or refuses it.
pub(crate) fn duration(text: &str) -> Result<i64, ApiError> {
    parse_duration(text).map_err(invalid)
}

/// Checks that `prefix` is a valid path prefix, returning it without a trailing slash.
pub(crate) fn grant_prefix(prefix: &str) -> Result<String, ApiError> {
    let prefix = prefix.trim_end_matches('/');
    SecretPath::parse(prefix)?;
    Ok(prefix.to_owned())
}
