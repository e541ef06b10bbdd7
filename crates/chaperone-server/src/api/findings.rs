//! Findings: things someone must act on (a secret to rotate after an offboarding, an overdue
//! attestation, ...), each with a source, a severity, an owner, a due date and a status
//! history: open → in progress → resolved or risk accepted (with a note), and back to open.
//!
//! Findings are opened by the server in the transaction of what caused them
//! ([`new_finding`]); people move them through their statuses here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chaperone_core::Timestamp;
use chaperone_core::governance::parse_date;
use chaperone_core::policy::Role;
use chaperone_store::{Op, Record};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ApiJson;
use super::admin::change_event;
use super::auth::new_id;
use super::governance::{ROOT_ACTOR, actor_id, body, new_record, revise};
use super::{ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::record::RequestInfo;
use crate::{ApiError, AppState};

/// The statuses a finding moves through.
const STATUSES: [&str; 4] = ["open", "in_progress", "resolved", "risk_accepted"];
/// Severities, lowest first.
const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// A finding as stored.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Finding {
    pub(crate) id: String,
    /// What opened it: `offboarding`, `attestation`, `exposure`, ...
    pub(crate) source: String,
    /// low, medium, high or critical.
    pub(crate) severity: String,
    pub(crate) title: String,
    /// What it is about (a secret path, a vendor).
    pub(crate) subject: String,
    pub(crate) vendor_id: Option<String>,
    /// Who must act (a person id), if anyone in particular.
    pub(crate) owner: Option<String>,
    pub(crate) due: String,
    /// open, in_progress, resolved or risk_accepted.
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) details: Value,
    pub(crate) history: Vec<FindingChange>,
    pub(crate) created_time: String,
}

/// One change of a finding.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct FindingChange {
    pub(crate) time: String,
    /// A person id, or `chaperone` for the server itself.
    pub(crate) by: String,
    pub(crate) status: String,
    pub(crate) note: Option<String>,
}

/// What a new finding is about.
pub(crate) struct NewFinding<'a> {
    pub(crate) source: &'a str,
    pub(crate) severity: &'a str,
    pub(crate) title: String,
    pub(crate) subject: String,
    pub(crate) vendor_id: Option<String>,
    pub(crate) owner: Option<String>,
    pub(crate) due: Timestamp,
    pub(crate) details: Value,
}

/// The change that opens a finding, and the finding.
pub(crate) fn new_finding(new: NewFinding<'_>, now: Timestamp) -> (Op, Finding) {
    debug_assert!(SEVERITIES.contains(&new.severity));
    let finding = Finding {
        id: new_id("fnd"),
        source: new.source.to_owned(),
        severity: new.severity.to_owned(),
        title: new.title,
        subject: new.subject,
        vendor_id: new.vendor_id,
        owner: new.owner.clone(),
        due: new.due.to_rfc3339(),
        status: "open".into(),
        details: new.details,
        history: vec![FindingChange {
            time: now.to_rfc3339(),
            by: "chaperone".into(),
            status: "open".into(),
            note: None,
        }],
        created_time: now.to_rfc3339(),
    };
    let op = Op::Put(new_record(
        "finding",
        finding.id.clone(),
        new.owner,
        &finding,
        now,
    ));
    (op, finding)
}

/// Whether the caller sees and updates every finding (security, admin) or only their own.
fn sees_all(caller: &Caller) -> bool {
    matches!(
        caller.principal.role,
        Role::Admin | Role::Security | Role::Auditor
    )
}

#[derive(Deserialize)]
pub(crate) struct FindingQuery {
    status: Option<String>,
    source: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/findings", params(("status" = Option<String>, Query), ("source" = Option<String>, Query)), responses((status = 200, body = Vec<Finding>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Findings: security, admins and auditors see all, everyone else those they own.
pub(crate) async fn list_findings(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<FindingQuery>,
) -> Result<Json<Vec<Finding>>, ApiError> {
    let owner = if sees_all(&caller) {
        None
    } else {
        match &caller.person_id {
            Some(id) => Some(id.clone()),
            None => return Ok(Json(Vec::new())),
        }
    };
    let mut out = Vec::new();
    for record in state.store.records("finding", owner.as_deref()).await? {
        let finding: Finding = body(&record)?;
        if query.status.as_deref().is_none_or(|s| s == finding.status)
            && query.source.as_deref().is_none_or(|s| s == finding.source)
        {
            out.push(finding);
        }
    }
    Ok(Json(
        super::deliverables::findings_for(&state, &caller, out).await?,
    ))
}

async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<Record, ApiError> {
    let record = state.store.record("finding", id).await?;
    match record {
        Some(r) if sees_all(caller) || r.owner.is_some() && r.owner == caller.person_id => Ok(r),
        _ => Err(ApiError::not_found(format!("no finding `{id}`"))),
    }
}

#[utoipa::path(get, path = "/api/v1/findings/{id}", params(("id" = String, Path)), responses((status = 200, body = Finding), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// One finding with its history.
pub(crate) async fn show_finding(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Finding>, ApiError> {
    let finding = body(&visible(&state, &caller, &id).await?)?;
    let mut shown = super::deliverables::findings_for(&state, &caller, vec![finding]).await?;
    Ok(Json(shown.remove(0)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindingUpdate {
    /// open, in_progress, resolved or risk_accepted.
    status: Option<String>,
    /// Required to resolve or accept the risk.
    note: Option<String>,
    /// A new owner (a person's name); security and admins only.
    owner: Option<String>,
    /// A new due date; security and admins only.
    due: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/findings/{id}", params(("id" = String, Path)), request_body = FindingUpdate, responses((status = 200, body = Finding), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Moves a finding (its owner, security or an admin), or reassigns it (security, admin).
pub(crate) async fn update_finding(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<FindingUpdate>,
) -> Result<Json<Finding>, ApiError> {
    if let Some(note) = &req.note {
        super::check_text("note", note, 2_000)?;
    }
    let record = visible(&state, &caller, &id).await?;
    let mut finding: Finding = body(&record)?;
    let manager = matches!(caller.principal.role, Role::Admin | Role::Security);
    if caller.principal.role == Role::Auditor {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "auditors read findings; they do not change them",
        ));
    }
    if (req.owner.is_some() || req.due.is_some()) && !manager {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "only security reassigns findings or moves their due date",
        ));
    }
    let now = state.clock.now();
    let mut record_owner = record.owner.clone();
    if let Some(name) = &req.owner {
        let person = state
            .store
            .person(name)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no person `{name}`")))?;
        finding.owner = Some(person.id.clone());
        record_owner = Some(person.id);
    }
    if let Some(due) = &req.due {
        finding.due = parse_date(due)
            .map_err(|e| ApiError::bad_request("invalid_request", e))?
            .to_rfc3339();
    }
    let status = req.status.clone().unwrap_or(finding.status.clone());
    if !STATUSES.contains(&status.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("status is one of {}", STATUSES.join(", ")),
        ));
    }
    let allowed = match finding.status.as_str() {
        "open" => ["in_progress", "resolved", "risk_accepted"].as_slice(),
        "in_progress" => ["open", "resolved", "risk_accepted"].as_slice(),
        // Closed findings only reopen.
        _ => ["open"].as_slice(),
    };
    if status != finding.status && !allowed.contains(&status.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_transition",
            format!(
                "a {} finding can become: {}",
                finding.status,
                allowed.join(", ")
            ),
        ));
    }
    if status == "risk_accepted" && !manager {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "only security accepts a risk; resolve the finding or ask security",
        ));
    }
    let closing = status == "resolved" || status == "risk_accepted";
    // An anomaly about someone (their reads, their networks) is closed by someone else, as
    // a break-glass grant is reviewed by someone other than its holder. It names a person,
    // or a token of no person: all of those (the initial admin token and the tokens it
    // made) are one actor, `root`, as for approvals.
    let subject = finding.details["person_id"].as_str().map(|id| {
        if id.starts_with("per_") {
            id
        } else {
            ROOT_ACTOR
        }
    });
    // Nor by whoever holds (or is held by) the subject's account through the chain of
    // creators: they may be the same person.
    let me = actor_id(&caller);
    let related = match subject {
        Some(id) if id != ROOT_ACTOR && id != me => {
            super::access::created_account(&state, id, &me).await?
        }
        _ => false,
    };
    if closing
        && status != finding.status
        && finding.source == "anomaly"
        && (subject == Some(me.as_str()) || related)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "self_review",
            "this anomaly is about you: someone else resolves it or accepts its risk",
        ));
    }
    // A deliverable that holds a value stored in the vault is security's to close: its
    // owner (often the vendor's owner, who may not read that secret) cannot tell whether it
    // was rotated, and closing it would accept the deliverable.
    if closing
        && status != finding.status
        && !manager
        && finding.source == "deliverable"
        && finding.details["secret"].is_string()
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "a deliverable holding a value stored in the vault is closed by security",
        ));
    }
    if closing && req.note.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "resolving a finding or accepting its risk needs a `note`",
        ));
    }
    finding.history.push(FindingChange {
        time: now.to_rfc3339(),
        by: actor_id(&caller),
        status: status.clone(),
        note: req.note.clone(),
    });
    let previous = std::mem::replace(&mut finding.status, status.clone());
    let mut updated = revise(&record, &finding, now);
    updated.owner = record_owner;
    let event = change_event(
        &state,
        &info,
        &caller,
        "finding.update",
        &id,
        [
            ("status", status.into()),
            ("previous_status", previous.into()),
            ("owner", finding.owner.clone().into()),
            ("due", finding.due.clone().into()),
            ("note", req.note.into()),
        ],
    );
    state
        .store
        .apply(vec![Op::Put(updated)], vec![event])
        .await?;
    let mut shown = super::deliverables::findings_for(&state, &caller, vec![finding]).await?;
    Ok(Json(shown.remove(0)))
}
