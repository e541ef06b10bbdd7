//! Offboarding a person or a whole vendor, the blast radius that follows, and the vendor's
//! attestation that it returned or destroyed the business's data.
//!
//! Offboarding first cuts access, in one transaction with its ledger entry: the vendor
//! moves to `offboarding` (or `terminated` when it never got further than onboarding), every
//! grant of its people is revoked, their accounts disabled, their tokens and sessions
//! revoked, their pending requests closed. Then the blast radius is computed from the ledger
//! (every secret version its people read) and the grants (every secret any grant of theirs
//! covered, and its versions), and a rotation finding is opened for each secret, owned by
//! the secret's owner. Reading the whole ledger is linear in its size; offboarding is rare.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chaperone_core::governance::{VendorStatus, date};
use chaperone_core::{SecretPath, Timestamp};
use chaperone_ledger::entry::Outcome;
use chaperone_store::{Op, PersonRecord, VendorRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiJson;
use super::ApiPath;
use super::admin::change_event;
use super::auth::new_id;
use super::findings::{Finding, NewFinding, new_finding};
use super::governance::{
    StatusChange, actor_id, agreements_of, body, duration, merge_levels, new_record, revise,
    vendor_named,
};
use crate::auth::Caller;
use crate::record::{Record as LedgerRecord, RequestInfo};
use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OffboardRequest {
    reason: String,
    /// How soon exposed secrets must be rotated, such as `7d` (the default).
    rotate_within: Option<String>,
    /// How long the vendor has to attest return or destruction of data; by default the
    /// days its agreement gives, else 30 days.
    attest_within: Option<String>,
}

/// One secret the offboarded people could have taken with them.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Exposure {
    pub(crate) path: String,
    /// Versions they read (from the ledger).
    pub(crate) versions_read: Vec<u64>,
    /// Versions they wrote (from the ledger): they know those values without reading them.
    #[serde(default)]
    pub(crate) versions_written: Vec<u64>,
    /// Versions that existed under a grant they held.
    pub(crate) versions_held: Vec<u64>,
    /// The grant prefixes that covered it.
    pub(crate) granted_under: Vec<String>,
    pub(crate) level: String,
    pub(crate) finding_id: String,
}

/// The attestation link handed to the vendor's contact.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct AttestationLink {
    /// `/a#<token>`: the token is shown once, here (after `#`, which browsers never send),
    /// unless the link was mailed to the vendor's contacts (then `/a#…`); the server keeps
    /// only its SHA-256.
    pub(crate) path: String,
    pub(crate) due: String,
    /// Contacts it was mailed to (when mail and `public_url` are configured).
    pub(crate) mailed_to: Vec<String>,
}

/// How a link's path reads where its token is not shown (the stored report, and the answer
/// once the link was mailed).
const HIDDEN_LINK: &str = "/a#…";

impl AttestationLink {
    /// The link as answered once mailed to `to`: when any contact received it, its token is
    /// not handed to whoever offboarded too.
    ///
    /// Security decision: the attestation is the vendor's word that it returned or destroyed
    /// the data. Whoever holds the token can sign it; once the vendor's contact has it, no one
    /// on the business's side needs it (a lost link is replaced, `reissue_attestation`).
    fn mailed(mut self, to: Vec<String>) -> Self {
        if !to.is_empty() {
            self.path = HIDDEN_LINK.into();
        }
        self.mailed_to = to;
        self
    }
}

/// What an offboarding did and found.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct OffboardReport {
    pub(crate) id: String,
    /// The vendor or person offboarded.
    pub(crate) subject: String,
    pub(crate) vendor_id: Option<String>,
    pub(crate) reason: String,
    pub(crate) people: Vec<String>,
    pub(crate) grants_revoked: usize,
    pub(crate) requests_closed: usize,
    pub(crate) blast_radius: Vec<Exposure>,
    pub(crate) attestation: Option<AttestationLink>,
    pub(crate) time: String,
}

/// An attestation as stored (under the SHA-256 of its token).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Attestation {
    pub(crate) vendor_id: String,
    pub(crate) vendor: String,
    pub(crate) offboarding_id: String,
    /// What the agreement asks, in words.
    pub(crate) terms: String,
    pub(crate) due: String,
    #[schema(value_type = i64)]
    pub(crate) due_nanos: i64,
    /// pending or submitted.
    pub(crate) status: String,
    pub(crate) signed: Option<SignedAttestation>,
    pub(crate) finding_id: Option<String>,
}

/// What the vendor's contact signed.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct SignedAttestation {
    pub(crate) name: String,
    pub(crate) email: String,
    /// returned, destroyed or returned_and_destroyed.
    pub(crate) action: String,
    pub(crate) statement: String,
    pub(crate) time: String,
    pub(crate) client_ip: Option<String>,
    /// SHA-256 of the canonical JSON of the fields above.
    pub(crate) sha256: String,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

#[utoipa::path(post, path = "/api/v1/vendors/{name}/offboard", params(("name" = String, Path)), request_body = OffboardRequest, responses((status = 200, body = OffboardReport), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Offboards a vendor: cuts all its people's access at once, reports the blast radius,
/// opens a rotation finding per exposed secret and issues the attestation link.
pub(crate) async fn offboard_vendor(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<OffboardRequest>,
) -> Result<Json<OffboardReport>, ApiError> {
    let vendor = vendor_named(&state, &name).await?;
    let people: Vec<PersonRecord> = state
        .store
        .list_people()
        .await?
        .into_iter()
        .filter(|p| p.vendor_id.as_deref() == Some(vendor.id.as_str()))
        .collect();
    Ok(Json(
        offboard(&state, &info, &caller, people, Some(vendor), &req).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/people/{name}/offboard", params(("name" = String, Path)), request_body = OffboardRequest, responses((status = 200, body = OffboardReport), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Offboards one person: the same as a vendor's offboarding, for one account.
pub(crate) async fn offboard_person(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<OffboardRequest>,
) -> Result<Json<OffboardReport>, ApiError> {
    let person = state
        .store
        .person(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no person `{name}`")))?;
    if caller.person_id.as_deref() == Some(person.id.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "self_offboard",
            "nobody offboards themselves",
        ));
    }
    if matches!(person.role.as_str(), "admin" | "security")
        && caller.principal.role != chaperone_core::policy::Role::Admin
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "only admins offboard admin and security accounts",
        ));
    }
    Ok(Json(
        offboard(&state, &info, &caller, vec![person], None, &req).await?,
    ))
}

async fn offboard(
    state: &AppState,
    info: &RequestInfo,
    caller: &Caller,
    people: Vec<PersonRecord>,
    vendor: Option<VendorRecord>,
    req: &OffboardRequest,
) -> Result<OffboardReport, ApiError> {
    if req.reason.trim().is_empty() {
        return Err(invalid("give a `reason`"));
    }
    super::check_text("reason", &req.reason, 2_000)?;
    // Everything the request says is checked before anything is cut: a bad value must not
    // leave access cut with no report, findings or attestation.
    let rotate_within = duration(req.rotate_within.as_deref().unwrap_or("7d"))?;
    let attest_within = req.attest_within.as_deref().map(duration).transpose()?;
    let now = state.clock.now();
    let id = new_id("off");
    let subject = match (&vendor, people.first()) {
        (Some(v), _) => v.name.clone(),
        (None, Some(p)) => p.name.clone(),
        (None, None) => return Err(invalid("nobody to offboard")),
    };

    // 1. Cut access, in one transaction.
    let mut ops = Vec::new();
    if let Some(vendor) = &vendor {
        let from: VendorStatus = vendor.status.parse().map_err(invalid)?;
        let to = [VendorStatus::Offboarding, VendorStatus::Terminated]
            .into_iter()
            .find(|to| from.check_transition(*to).is_ok())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "already_offboarded",
                    format!("vendor {} is {from}", vendor.name),
                )
            })?;
        let mut updated = vendor.clone();
        updated.status = to.to_string();
        ops.push(Op::UpdateVendor {
            vendor: updated,
            previous_status: vendor.status.clone(),
            previous_updated_at: vendor.updated_at,
            at: now,
        });
        let change = StatusChange::new(from, to, actor_id(caller), req.reason.clone(), now);
        ops.push(Op::Put(new_record(
            "vendor_status",
            new_id("vst"),
            Some(vendor.id.clone()),
            &change,
            now,
        )));
    }
    let mut grants_revoked = 0;
    let mut requests_closed = 0;
    let mut wrappings_revoked = Vec::new();
    let mut link_ops = Vec::new();
    let mut link_events = Vec::new();
    for person in &people {
        // Always, even if they were disabled when read: someone may enable them before this
        // change commits (a disabled account stays as it is).
        ops.push(Op::DisablePerson {
            id: person.id.clone(),
            at: now,
        });
        ops.push(Op::RevokeTokensOf {
            person_id: person.id.clone(),
            at: now,
        });
        // The answers they wrapped go with their tokens; the entry names them.
        wrappings_revoked.extend(state.store.wrapped_by(&person.id, now).await?);
        // Pending requests close in the change by their status, also one filed after this
        // read; a grant approved meanwhile is revoked in the change by person (below).
        let closer = super::access::Decision {
            by: actor_id(caller),
            comment: Some(format!("offboarded: {}", req.reason)),
            time: now.to_rfc3339(),
        };
        let closed = super::access::close_pending(state, &person.id, &closer, now).await?;
        requests_closed += closed.len();
        ops.extend(closed);
        // Counted as read; revoked in the change by person, so a grant made after this read
        // (a break-glass grant has no request to conflict on) is revoked too.
        grants_revoked += state.store.grants_of(&person.id).await?.len();
        ops.push(Op::RevokeGrantsOf {
            person_id: person.id.clone(),
            at: now,
        });
        // The links they made stop working: share links lose their content, request links
        // close.
        let (ops_, events_, _) = super::shares::end_links_of(
            state,
            info,
            &caller.actor(),
            &person.id,
            "offboarding",
            now,
        )
        .await?;
        link_ops.extend(ops_);
        link_events.extend(events_);
    }
    let names: Vec<String> = people.iter().map(|p| p.name.clone()).collect();
    let action = if vendor.is_some() {
        "vendor.offboard"
    } else {
        "person.offboard"
    };
    let event = change_event(
        state,
        info,
        caller,
        action,
        &subject,
        [
            ("offboarding_id", id.clone().into()),
            ("people", names.clone().into()),
            ("grants_revoked", grants_revoked.into()),
            ("requests_closed", requests_closed.into()),
            ("wrappings_revoked", wrappings_revoked.into()),
            ("reason", req.reason.clone().into()),
        ],
    );
    // Their links end in the same change as the access cut, so none can be opened in
    // between.
    let mut events = vec![event];
    events.extend(link_events);
    ops.extend(link_ops);
    state.store.apply(ops, events).await?;
    // A link made while the change ran (read before, committed before it) goes too.
    for person in &people {
        super::shares::end_late_links_of(
            state,
            info,
            &caller.actor(),
            &person.id,
            "offboarding",
            state.clock.now(),
        )
        .await;
    }
    tracing::warn!(by = %caller.token_id, %subject, people = names.len(), "offboarded");

    // 2. The blast radius, and a rotation finding per secret.
    let blast = blast_radius(state, &people).await?;
    let (classifications, stored) = state.store.classification_rules().await?;
    let levels = merge_levels(&stored)?;
    // A person's findings go to their vendor's owner too, as a vendor's do.
    let owning_vendor = match (&vendor, people.first().and_then(|p| p.vendor_id.as_ref())) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(id)) => state.store.vendor(id).await?,
        (None, None) => None,
    };
    let vendor_owner = match &owning_vendor {
        Some(vendor) => super::governance::active_owner(state, vendor).await?,
        None => None,
    };
    let mut ops = Vec::new();
    let mut exposures = Vec::new();
    // The paths of new rotation findings, by owner (`None`: nobody owns them).
    let mut to_rotate: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for (path, reach) in blast {
        let Reach {
            read,
            written,
            held,
            prefixes,
        } = reach;
        let level = super::governance::level_of(&levels, &classifications, &path)?;
        let mut exposure = Exposure {
            path: path.clone(),
            versions_read: read.iter().copied().collect(),
            versions_written: written.iter().copied().collect(),
            versions_held: held.iter().copied().collect(),
            granted_under: prefixes.into_iter().collect(),
            level: level.name.clone(),
            finding_id: String::new(),
        };
        // Offboarding again (an offboarding vendor, to terminate it) reports the blast
        // radius again but does not open a second finding where one is still open.
        if let Some(found) = open_exposure(state, &path, owning_vendor.as_ref()).await? {
            let mut finding: Finding = body(&found)?;
            exposure.finding_id = finding.id.clone();
            // The value may have changed since the finding opened (a partial rotation), and
            // these people may know the newer one: only a rotation after this exposure
            // closes the finding now.
            finding.details["exposed_at"] = Value::from(now.unix_nanos());
            ops.push(Op::Put(revise(&found, &finding, now)));
            exposures.push(exposure);
            continue;
        }
        let severity = match level.rank {
            r if r >= 30 => "critical",
            r if r >= 20 => "high",
            r if r >= 10 => "medium",
            _ => "low",
        };
        let due = now.plus_secs(rotate_within);
        let owner = secret_owner(state, &path, due)
            .await?
            .or(vendor_owner.clone());
        to_rotate
            .entry(owner.clone())
            .or_default()
            .push(path.clone());
        let (op, finding) = new_finding(
            NewFinding {
                source: "offboarding",
                severity,
                title: format!("rotate {path}: exposed to offboarded {subject}"),
                subject: path.clone(),
                vendor_id: owning_vendor.as_ref().map(|v| v.id.clone()),
                owner,
                due,
                details: json!({
                    "offboarding_id": id,
                    "versions_read": read,
                    "versions_written": written,
                    "versions_held": held,
                    "people": names,
                }),
            },
            now,
        );
        ops.push(op);
        ops.push(Op::Put(new_record(
            "exposure",
            format!("{path}@{id}"),
            Some(path.clone()),
            &json!({ "path": path, "since": now, "offboarding_id": id, "finding_id": finding.id }),
            now,
        )));
        exposure.finding_id = finding.id;
        exposures.push(exposure);
    }

    // Each owner hears of the secrets they are to rotate, in the same change as the
    // findings; security (admins when nobody is in security) of those nobody owns.
    if !to_rotate.is_empty() {
        let people = state.store.list_people().await?;
        let due = date(now.plus_secs(rotate_within));
        for (owner, paths) in to_rotate {
            let to = match owner {
                Some(owner) => vec![owner],
                None => crate::notify::security_or_admins(&people),
            };
            ops.push(crate::notify::notification(
                "rotation_due",
                &to,
                &format!(
                    "rotate {} secret(s) exposed to offboarded {subject} by {due}",
                    paths.len()
                ),
                json!({ "offboarding_id": id, "paths": paths, "due": due }),
                now,
            ));
        }
    }

    // 3. The attestation link, for a vendor that has none pending or signed yet.
    let attestation = match &vendor {
        Some(vendor) if !attestation_exists(state, &vendor.id).await? => {
            Some(attestation_link(state, &mut ops, vendor, &id, attest_within, now).await?)
        }
        _ => None,
    };
    let report = OffboardReport {
        id: id.clone(),
        subject: subject.clone(),
        vendor_id: vendor.as_ref().map(|v| v.id.clone()),
        reason: req.reason.clone(),
        people: names,
        grants_revoked,
        requests_closed,
        blast_radius: exposures,
        attestation: attestation.clone(),
        time: now.to_rfc3339(),
    };
    // The stored report never holds the attestation token.
    let mut stored = report.clone();
    if let Some(link) = &mut stored.attestation {
        link.path = HIDDEN_LINK.into();
    }
    ops.push(Op::Put(new_record(
        "offboarding",
        id.clone(),
        report.vendor_id.clone(),
        &stored,
        now,
    )));
    let event = change_event(
        state,
        info,
        caller,
        "offboarding.report",
        &subject,
        [
            ("offboarding_id", id.into()),
            (
                "secrets",
                report
                    .blast_radius
                    .iter()
                    .map(|e| e.path.clone())
                    .collect::<Vec<_>>()
                    .into(),
            ),
            (
                "findings",
                report
                    .blast_radius
                    .iter()
                    .map(|e| e.finding_id.clone())
                    .collect::<Vec<_>>()
                    .into(),
            ),
            (
                "attestation_due",
                attestation.as_ref().map(|a| a.due.clone()).into(),
            ),
        ],
    );
    state.store.apply(ops, vec![event]).await?;
    if let (Some(vendor), Some(link)) = (&vendor, &report.attestation) {
        let mailed = mail_attestation(state, vendor, link).await;
        let mut report = report;
        report.attestation = report.attestation.map(|a| a.mailed(mailed));
        return Ok(report);
    }
    Ok(report)
}

/// What the offboarded people could have taken of one secret.
#[derive(Default)]
struct Reach {
    /// Versions read (from the ledger).
    read: BTreeSet<u64>,
    /// Versions written (from the ledger).
    written: BTreeSet<u64>,
    /// Versions that existed under a read grant.
    held: BTreeSet<u64>,
    /// The grant prefixes that covered it.
    prefixes: BTreeSet<String>,
}

type Blast = BTreeMap<String, Reach>;

/// Every secret `people` read or wrote (from the ledger) or held a read grant for (from the
/// grants), with the versions read, the versions written, the versions that existed under
/// the grants, and the grant prefixes.
async fn blast_radius(state: &AppState, people: &[PersonRecord]) -> Result<Blast, ApiError> {
    let ids: BTreeSet<&str> = people.iter().map(|p| p.id.as_str()).collect();
    let mut blast = Blast::new();
    // Share links made from a vault secret (their `share.create` names it as `source`,
    // `secret:PATH@VERSION`), by link id: one restricted to them that they opened gave them
    // that version.
    let mut shared: std::collections::HashMap<String, (String, u64)> =
        std::collections::HashMap::new();
    let size = state.store.ledger_size().await?;
    let mut start = 0;
    while start < size {
        let end = (start + 4096).min(size);
        for (_, bytes) in state.store.ledger_entries(start, end).await? {
            let entry: Value = serde_json::from_slice(&bytes)
                .map_err(|e| chaperone_store::StoreError::Corrupt(format!("ledger entry: {e}")))?;
            let by_them = entry["actor"]["person"]
                .as_str()
                .is_some_and(|p| ids.contains(p));
            let action = entry["action"].as_str().unwrap_or_default();
            let success = entry["outcome"] == "success";
            if action == "share.create" && success {
                if let Some((path, version)) = entry["details"]["source"]
                    .as_str()
                    .and_then(|s| s.strip_prefix("secret:"))
                    .and_then(|s| s.rsplit_once('@'))
                    .and_then(|(path, v)| Some((path.to_owned(), v.parse::<u64>().ok()?)))
                {
                    let id = entry["resource"].as_str().unwrap_or_default().to_owned();
                    shared.insert(id, (path, version));
                }
                continue;
            }
            if by_them && action == "share.open" && success {
                if let Some((path, version)) =
                    shared.get(entry["resource"].as_str().unwrap_or_default())
                {
                    blast.entry(path.clone()).or_default().read.insert(*version);
                }
                continue;
            }
            if by_them
                && (action == "secret.read" || action == "secret.write")
                && entry["outcome"] == "success"
            {
                let path = entry["resource"].as_str().unwrap_or_default().to_owned();
                let slot = blast.entry(path).or_default();
                if let Some(v) = entry["details"]["version"].as_u64() {
                    if action == "secret.read" {
                        slot.read.insert(v);
                    } else {
                        slot.written.insert(v);
                    }
                }
            }
        }
        start = end;
    }
    for person in people {
        for grant in state.store.grants_ever_of(&person.id).await? {
            // Only a grant that let them read could let them take a value away.
            if !grant.capabilities.iter().any(|c| c == "read") {
                continue;
            }
            for path in state.store.secret_paths(&grant.prefix).await? {
                let versions: Vec<u64> = match SecretPath::parse(&path) {
                    Ok(p) => state
                        .store
                        .metadata(&p)
                        .await?
                        .map(|m| {
                            m.versions
                                .iter()
                                .filter(|v| {
                                    !v.destroyed()
                                        && v.created_at
                                            < grant.revoked_at.unwrap_or(grant.expires_at)
                                })
                                .map(|v| v.version)
                                .collect()
                        })
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                // A secret written only after the grant ended was never within reach.
                if versions.is_empty() {
                    continue;
                }
                let slot = blast.entry(path).or_default();
                slot.held.extend(versions);
                slot.prefixes.insert(grant.prefix.clone());
            }
        }
    }
    Ok(blast)
}

/// The owner of a secret: the person its `owner` custom metadata names (only staff name
/// it: `secrets::apply_metadata`), if they can act on its finding until `due`.
async fn secret_owner(
    state: &AppState,
    path: &str,
    due: chaperone_core::Timestamp,
) -> Result<Option<String>, ApiError> {
    let Ok(path) = SecretPath::parse(path) else {
        return Ok(None);
    };
    let Some(meta) = state.store.metadata(&path).await? else {
        return Ok(None);
    };
    match meta.custom_metadata.get(super::secrets::OWNER_KEY) {
        // Only someone who can act on the finding owns it: not a disabled account or one that
        // ends before the finding is due, not a contractor (who sees no findings), not an
        // auditor (who reads findings but does not change them). Anyone else named: the
        // vendor's owner gets it instead.
        Some(name) => Ok(state
            .store
            .person(name)
            .await?
            .filter(|p| {
                p.disabled_at.is_none()
                    && p.ends_at.is_none_or(|end| end > due)
                    && p.vendor_id.is_none()
                    && p.role != chaperone_core::policy::Role::Contractor.as_str()
                    && p.role != chaperone_core::policy::Role::Auditor.as_str()
            })
            .map(|p| p.id)),
        None => Ok(None),
    }
}

/// The finding of an earlier offboarding of `vendor` that exposed `path`, while it is open.
async fn open_exposure(
    state: &AppState,
    path: &str,
    vendor: Option<&VendorRecord>,
) -> Result<Option<chaperone_store::Record>, ApiError> {
    let Some(vendor) = vendor else {
        return Ok(None);
    };
    for record in state.store.records("exposure", Some(path)).await? {
        let Some(finding_id) = record.body["finding_id"].as_str() else {
            continue;
        };
        let Some(record) = state.store.record("finding", finding_id).await? else {
            continue;
        };
        let finding: Finding = body(&record)?;
        if finding.vendor_id.as_deref() == Some(vendor.id.as_str())
            && !matches!(finding.status.as_str(), "resolved" | "risk_accepted")
        {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// The vendor's attestations, each with its record.
async fn attestations_of(
    state: &AppState,
    vendor_id: &str,
) -> Result<Vec<(chaperone_store::Record, Attestation)>, ApiError> {
    let mut all = Vec::new();
    for record in state.store.records("attestation", Some(vendor_id)).await? {
        let attestation = body(&record)?;
        all.push((record, attestation));
    }
    Ok(all)
}

/// The vendor's attestations pending or signed (not those replaced by a new link), the
/// earliest due first: what `vendors/{name}` shows.
pub(crate) async fn current_attestations(
    state: &AppState,
    vendor_id: &str,
) -> Result<Vec<Attestation>, ApiError> {
    let mut current: Vec<Attestation> = attestations_of(state, vendor_id)
        .await?
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| matches!(a.status.as_str(), "pending" | "submitted"))
        .collect();
    current.sort_by_key(|a| a.due_nanos);
    Ok(current)
}

/// Whether `vendor` already has an attestation link pending or signed.
async fn attestation_exists(state: &AppState, vendor_id: &str) -> Result<bool, ApiError> {
    Ok(!current_attestations(state, vendor_id).await?.is_empty())
}

async fn attestation_link(
    state: &AppState,
    ops: &mut Vec<Op>,
    vendor: &VendorRecord,
    offboarding_id: &str,
    attest_within: Option<i64>,
    now: Timestamp,
) -> Result<AttestationLink, ApiError> {
    let mut terms = "return or destroy all of the business's data you hold".to_owned();
    let mut days = 30;
    for (_, agreement) in agreements_of(state, &vendor.id).await? {
        if let Some(what) = &agreement.clauses.termination_data {
            let verb = match what.as_str() {
                "return" => "return",
                "destroy" => "destroy",
                _ => "return or destroy",
            };
            if let Some(d) = agreement.clauses.termination_data_days {
                days = i64::from(d);
            }
            terms = format!(
                "{verb} all of the business's data you hold within {days} days, as your {} \
                 requires",
                agreement.kind.label()
            );
        }
    }
    let within = attest_within.unwrap_or(days * 86_400);
    let (token, key) = link_token();
    let due = now.plus_secs(within);
    let attestation = Attestation {
        vendor_id: vendor.id.clone(),
        vendor: vendor.name.clone(),
        offboarding_id: offboarding_id.to_owned(),
        terms,
        due: date(due),
        due_nanos: due.unix_nanos(),
        status: "pending".into(),
        signed: None,
        finding_id: None,
    };
    ops.push(Op::Put(new_record(
        "attestation",
        key,
        Some(vendor.id.clone()),
        &attestation,
        now,
    )));
    Ok(AttestationLink {
        path: format!("/a#{token}"),
        due: date(due),
        mailed_to: Vec::new(),
    })
}

/// A new link token (256 random bits, URL-safe base64) and the key its attestation is
/// stored under (its SHA-256: the server never keeps the token).
fn link_token() -> (String, String) {
    use base64::Engine;
    let mut raw = [0u8; 32];
    chaperone_crypto::random_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let key = super::sha256_hex(token.as_bytes());
    (token, key)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReissueRequest {
    /// A new deadline, from now (such as `14d`); by default the current one stays.
    within: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/vendors/{name}/attestation", params(("name" = String, Path)), request_body = ReissueRequest, responses((status = 200, body = AttestationLink), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Replaces the vendor's pending attestation link with a new one, for a link lost or never
/// received: the old link stops working, the new one is returned once and mailed to the
/// vendor's contacts as the first was. The deadline stays unless `within` gives a new one.
pub(crate) async fn reissue_attestation(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ReissueRequest>,
) -> Result<Json<AttestationLink>, ApiError> {
    let vendor = vendor_named(&state, &name).await?;
    let within = req.within.as_deref().map(duration).transpose()?;
    if within.is_some_and(|secs| secs <= 0) {
        return Err(invalid("`within` must be longer than zero"));
    }
    let mut pending = None;
    let mut signed = false;
    for (record, attestation) in attestations_of(&state, &vendor.id).await? {
        match attestation.status.as_str() {
            "pending" => pending = Some((record, attestation)),
            "submitted" => signed = true,
            _ => {}
        }
    }
    let Some((record, old)) = pending else {
        return Err(if signed {
            ApiError::new(
                StatusCode::CONFLICT,
                "already_attested",
                format!("`{}` already signed its attestation", vendor.name),
            )
        } else {
            ApiError::not_found(format!(
                "`{}` has no pending attestation: offboarding the vendor issues one",
                vendor.name
            ))
        });
    };
    let now = state.clock.now();
    let due = within.map_or(Timestamp::from_unix_nanos(old.due_nanos), |secs| {
        now.plus_secs(secs)
    });
    let (token, key) = link_token();
    // The overdue finding, if one was opened, stays the attestation's: it is not opened twice.
    let renewed = Attestation {
        due: date(due),
        due_nanos: due.unix_nanos(),
        ..old.clone()
    };
    let replaced = Attestation {
        status: "replaced".into(),
        ..old
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "attestation.reissue",
        &vendor.name,
        [
            ("vendor_id", vendor.id.clone().into()),
            ("offboarding_id", renewed.offboarding_id.clone().into()),
            ("due", renewed.due.clone().into()),
        ],
    );
    let ops = vec![
        Op::Put(revise(&record, &replaced, now)),
        Op::Put(new_record(
            "attestation",
            key,
            Some(vendor.id.clone()),
            &renewed,
            now,
        )),
    ];
    match state.store.apply(ops, vec![event]).await {
        Err(chaperone_store::StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "changed",
                "the attestation changed meanwhile (signed, or its link replaced): look again",
            ));
        }
        other => other?,
    }
    let link = AttestationLink {
        path: format!("/a#{token}"),
        due: renewed.due,
        mailed_to: Vec::new(),
    };
    let mailed = mail_attestation(&state, &vendor, &link).await;
    Ok(Json(link.mailed(mailed)))
}

/// Mails the attestation link to the vendor's contacts; the addresses it reached.
async fn mail_attestation(
    state: &AppState,
    vendor: &VendorRecord,
    link: &AttestationLink,
) -> Vec<String> {
    let (Some(smtp), Some(base)) = (
        &state.settings.notify.smtp,
        &state.settings.notify.public_url,
    ) else {
        return Vec::new();
    };
    let emails: Vec<String> = vendor
        .profile
        .get("contacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("email").and_then(Value::as_str))
        .filter(|e| crate::mail::valid_address(e))
        .map(str::to_owned)
        .collect();
    if emails.is_empty() {
        return Vec::new();
    }
    let text = format!(
        "Our work with {} has ended. Please confirm, by {}, that you returned or destroyed our \
         data as your agreement requires:\n\n{}{}\n\nThe link works once.",
        vendor.name,
        link.due,
        base.trim_end_matches('/'),
        link.path
    );
    let id = new_id("att");
    let message = crate::mail::Message {
        to: &emails,
        subject: "Please confirm return or destruction of data",
        body: &text,
        id: &id,
        date: state.clock.now(),
    };
    match crate::mail::send(smtp, &message).await {
        // The addresses the relay took; the others are named in the log.
        Ok(delivery) => {
            for (address, answer) in delivery.refused.iter().chain(&delivery.deferred) {
                tracing::warn!(vendor = %vendor.name, %address, %answer, "attestation mail not taken for a contact");
            }
            delivery.accepted
        }
        Err(error) => {
            tracing::warn!(vendor = %vendor.name, %error, "attestation mail failed");
            Vec::new()
        }
    }
}

/// What the attestation page shows before signing.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AttestationView {
    vendor: String,
    terms: String,
    due: String,
    status: String,
}

async fn attestation_record(
    state: &AppState,
    token: &str,
) -> Result<(chaperone_store::Record, Attestation), ApiError> {
    // Sealed: no link answers (the server is stopped for everything but unsealing).
    super::secrets::unsealed(state)?;
    let key = super::sha256_hex(token.as_bytes());
    let record = state
        .store
        .record("attestation", &key)
        .await?
        .ok_or_else(|| ApiError::not_found("this link is not valid"))?;
    let attestation: Attestation = body(&record)?;
    if attestation.status == "replaced" {
        return Err(ApiError::new(
            StatusCode::GONE,
            "replaced",
            "this link was replaced by a newer one: use the latest link you were sent",
        ));
    }
    Ok((record, attestation))
}

#[utoipa::path(post, path = "/api/v1/attestations/info", request_body = super::LinkToken, responses((status = 200, body = AttestationView), (status = 404, body = super::ErrorBody)))]
/// What the vendor is asked to attest (the link's token is the credential).
pub(crate) async fn show_attestation(
    State(state): State<Arc<AppState>>,
    ApiJson(link): ApiJson<super::LinkToken>,
) -> Result<Json<AttestationView>, ApiError> {
    let (_, a) = attestation_record(&state, &link.token).await?;
    Ok(Json(AttestationView {
        vendor: a.vendor,
        terms: a.terms,
        due: a.due,
        status: a.status,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttestationSubmit {
    /// The link's token (the part after `#`).
    token: String,
    name: String,
    email: String,
    /// returned, destroyed or returned_and_destroyed.
    action: String,
    statement: String,
}

#[utoipa::path(post, path = "/api/v1/attestations/sign", request_body = AttestationSubmit, responses((status = 200, body = SignedAttestation), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
/// Signs the attestation, once: who, when, what, and their statement, kept with its SHA-256
/// and recorded in the ledger.
pub(crate) async fn submit_attestation(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(req): ApiJson<AttestationSubmit>,
) -> Result<Json<SignedAttestation>, ApiError> {
    let (record, mut attestation) = attestation_record(&state, &req.token).await?;
    if attestation.status != "pending" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_attested",
            "this attestation was already signed",
        ));
    }
    if !["returned", "destroyed", "returned_and_destroyed"].contains(&req.action.as_str()) {
        return Err(invalid(
            "action is returned, destroyed or returned_and_destroyed",
        ));
    }
    if req.name.trim().is_empty() || req.name.len() > 200 {
        return Err(invalid("sign with your name"));
    }
    if !crate::mail::valid_address(&req.email) {
        return Err(invalid("give a valid email address"));
    }
    if req.statement.trim().is_empty() || req.statement.len() > 4000 {
        return Err(invalid("the statement is 1 to 4000 characters"));
    }
    super::check_text("name", &req.name, 200)?;
    super::check_text("statement", &req.statement, 4000)?;
    let now = state.clock.now();
    let client_ip = info.client_ip.map(|ip| ip.to_string());
    let canonical = json!({
        "vendor": attestation.vendor,
        "offboarding_id": attestation.offboarding_id,
        "terms": attestation.terms,
        "name": req.name,
        "email": req.email,
        "action": req.action,
        "statement": req.statement,
        "time": now.to_rfc3339(),
        "client_ip": client_ip,
    });
    let sha256 = super::sha256_hex(canonical.to_string().as_bytes());
    let signed = SignedAttestation {
        name: req.name.clone(),
        email: req.email.clone(),
        action: req.action.clone(),
        statement: req.statement.clone(),
        time: now.to_rfc3339(),
        client_ip,
        sha256: sha256.clone(),
    };
    attestation.status = "submitted".into();
    attestation.signed = Some(signed.clone());
    let mut entry = LedgerRecord::new("attestation.submit", &attestation.vendor, Outcome::Success);
    entry.details = [
        ("vendor_id", json!(attestation.vendor_id)),
        ("offboarding_id", json!(attestation.offboarding_id)),
        ("name", json!(req.name)),
        ("email", json!(req.email)),
        ("action", json!(req.action)),
        ("statement", json!(req.statement)),
        ("sha256", json!(sha256)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let event = state.event(&info, chaperone_ledger::entry::Actor::default(), entry);
    state
        .store
        .apply(
            vec![Op::Put(revise(&record, &attestation, now))],
            vec![event],
        )
        .await?;
    Ok(Json(signed))
}

/// Opens a finding for each attestation past its due date and still unsigned.
pub(crate) async fn overdue_attestations(
    state: &AppState,
    now: Timestamp,
) -> Result<usize, ApiError> {
    let mut opened = 0;
    for record in state.store.records("attestation", None).await? {
        let mut attestation: Attestation = body(&record)?;
        if attestation.status != "pending"
            || attestation.finding_id.is_some()
            || attestation.due_nanos > now.unix_nanos()
        {
            continue;
        }
        let owner = match state.store.vendor(&attestation.vendor_id).await? {
            Some(vendor) => super::governance::active_owner(state, &vendor).await?,
            None => None,
        };
        let (op, finding) = new_finding(
            NewFinding {
                source: "attestation",
                severity: "high",
                title: format!(
                    "vendor {} has not attested return or destruction of data (due {})",
                    attestation.vendor, attestation.due
                ),
                subject: attestation.vendor.clone(),
                vendor_id: Some(attestation.vendor_id.clone()),
                owner: owner.clone(),
                due: now.plus_secs(7 * 86_400),
                details: json!({ "offboarding_id": attestation.offboarding_id }),
            },
            now,
        );
        let mut entry =
            LedgerRecord::new("attestation.overdue", &attestation.vendor, Outcome::Success);
        entry.details = [
            ("vendor_id", json!(attestation.vendor_id)),
            ("offboarding_id", json!(attestation.offboarding_id)),
            ("due", json!(attestation.due)),
            ("finding_id", json!(finding.id)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let event = state.event(
            &RequestInfo::new(None, Some("chaperone-sweep".into())),
            chaperone_ledger::entry::Actor::default(),
            entry,
        );
        // Its owner hears of it (security, or admins, when the vendor has none).
        let to = match &owner {
            Some(owner) => vec![owner.clone()],
            None => crate::notify::security_or_admins(&state.store.list_people().await?),
        };
        let told = crate::notify::notification(
            "attestation_overdue",
            &to,
            &format!(
                "vendor {} has not attested return or destruction of data (due {})",
                attestation.vendor, attestation.due
            ),
            json!({ "finding_id": finding.id, "offboarding_id": attestation.offboarding_id }),
            now,
        );
        attestation.finding_id = Some(finding.id);
        let applied = state
            .store
            .apply(
                vec![op, Op::Put(revise(&record, &attestation, now)), told],
                vec![event],
            )
            .await;
        match applied {
            Ok(()) => opened += 1,
            Err(chaperone_store::StoreError::Conflict(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(opened)
}
