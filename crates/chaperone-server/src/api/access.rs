//! Access requests, approvals and grants; break-glass; access review campaigns.
//!
//! A grant comes from an approved request, or from break-glass (an admin, a mandatory
//! reason, flagged for review). A request is held to the strictest level its prefix can
//! reach: at most that level's grant duration, that many approvals by distinct people of
//! its approver roles, never the requester. Grants end by themselves: expiry is checked at
//! every use by the policy decision; nothing depends on a background job having run.
//!
//! Updates of a request or campaign name the revision they read (see
//! `chaperone_store::governance`), so two approvals at the same moment both count or one
//! is refused with 409, and an approval never races a denial into a grant.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chaperone_core::Timestamp;
use chaperone_core::governance::{LevelPolicy, parse_date};
use chaperone_core::policy::{Capability, GrantTerms, Role, Standing};
use chaperone_ledger::entry::Event;
use chaperone_store::{GrantRecord, Op, PersonRecord, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiJson;
use super::admin::change_event;
use super::auth::new_id;
use super::governance::{
    actor_id, body, duration, grant_prefix, levels, levels_disagree, new_record, revise,
    strictest_under,
};
use super::{ApiPath, ApiQuery};
use crate::auth::{Caller, parse_capabilities};
use crate::notify::notification;
use crate::record::RequestInfo;
use crate::{ApiError, AppState};

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

/// A grant asked for longer than `level` allows: the operation's refusal, recorded.
fn too_long(level: &LevelPolicy) -> ApiError {
    ApiError::bad_request(
        "grant_too_long",
        format!(
            "access at level {} lasts at most {} days",
            level.name,
            level.max_grant_secs / 86_400
        ),
    )
    .refusal()
}

fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

// ---------------------------------------------------------------------------------------
// Requests

/// An access request as stored.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct AccessRequest {
    pub(crate) id: String,
    pub(crate) person_id: String,
    pub(crate) person: String,
    pub(crate) vendor_id: Option<String>,
    pub(crate) prefix: String,
    pub(crate) capabilities: Vec<String>,
    pub(crate) reason: String,
    pub(crate) duration_secs: i64,
    /// The level the request is held to.
    pub(crate) level: String,
    pub(crate) approvals_needed: u32,
    #[schema(value_type = Vec<String>)]
    pub(crate) approver_roles: Vec<Role>,
    /// pending, approved, denied or cancelled.
    pub(crate) status: String,
    pub(crate) approvals: Vec<Decision>,
    pub(crate) denial: Option<Decision>,
    /// The grant it made (or, for an extension, extended).
    pub(crate) grant_id: Option<String>,
    /// For an extension: the grant to extend.
    pub(crate) extends: Option<String>,
    pub(crate) created_time: String,
}

/// One approver's decision.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Decision {
    pub(crate) by: String,
    pub(crate) comment: Option<String>,
    pub(crate) time: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRequest {
    prefix: String,
    /// Any of read, list, write, delete, destroy; approvers see what is asked.
    capabilities: Vec<String>,
    reason: String,
    /// How long the grant should last, such as `3d`.
    duration: String,
}

/// The people who may approve at `level`, except `requester`.
async fn approvers(
    state: &AppState,
    level: &LevelPolicy,
    requester: &str,
) -> Result<Vec<PersonRecord>, ApiError> {
    Ok(state
        .store
        .list_people()
        .await?
        .into_iter()
        .filter(|p| {
            p.id != requester
                && p.disabled_at.is_none()
                && p.vendor_id.is_none()
                && p.role
                    .parse::<Role>()
                    .is_ok_and(|r| level.approver_roles.contains(&r))
        })
        .collect())
}

/// Builds a pending request after checking it against its level.
async fn pending_request(
    state: &AppState,
    person: &PersonRecord,
    prefix: &str,
    capabilities: &[Capability],
    reason: &str,
    duration_secs: i64,
    extends: Option<String>,
) -> Result<(AccessRequest, LevelPolicy), ApiError> {
    if reason.trim().is_empty() {
        return Err(invalid("say why you need the access in `reason`"));
    }
    super::check_text("reason", reason, MAX_TEXT)?;
    if capabilities.is_empty() {
        return Err(invalid("ask for at least one capability"));
    }
    let levels = levels(state).await?;
    let classifications = state.store.classifications().await?;
    let level = strictest_under(&levels, &classifications, prefix)?;
    // A vendor's people are not told how a prefix is classified (it would let them probe
    // other vendors' paths): their over-long or too-wide requests are refused at approval
    // instead.
    if person.vendor_id.is_none() && duration_secs > level.max_grant_secs {
        return Err(too_long(&level));
    }
    if person.vendor_id.is_none() && level.approver_roles.is_empty() {
        return Err(levels_disagree(prefix));
    }
    let now = state.clock.now();
    let request = AccessRequest {
        id: new_id("req"),
        person_id: person.id.clone(),
        person: person.name.clone(),
        vendor_id: person.vendor_id.clone(),
        prefix: prefix.to_owned(),
        capabilities: capabilities.iter().map(|c| c.as_str().to_owned()).collect(),
        reason: reason.to_owned(),
        duration_secs,
        level: level.name.clone(),
        approvals_needed: level.approvals,
        approver_roles: level.approver_roles.clone(),
        status: "pending".into(),
        approvals: Vec::new(),
        denial: None,
        grant_id: None,
        extends,
        created_time: now.to_rfc3339(),
    };
    Ok((request, level))
}

/// Stores a pending request, notifies its approvers and records it.
async fn submit(
    state: &AppState,
    info: &RequestInfo,
    caller: &Caller,
    request: &AccessRequest,
    level: &LevelPolicy,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    // Only those who may decide it: not whoever created the requester's account or whose
    // account the requester created (`created_requester`, `created_approver`).
    let mut to = Vec::new();
    for approver in approvers(state, level, &request.person_id).await? {
        if !created_account(state, &request.person_id, &approver.id).await? {
            to.push(approver.id);
        }
    }
    let action = if request.extends.is_some() {
        "access.extend_request"
    } else {
        "access.request"
    };
    let note = notification(
        "access_request",
        &to,
        // The reason is the requester's own text: in the details, where it is shown quoted
        // (mail and webhooks carry them as JSON), never in the subject, which mail and chat
        // tools show as the server's own words.
        &format!(
            "{} asks for {} on {} for {}",
            request.person,
            request.capabilities.join(", "),
            request.prefix,
            human_duration(request.duration_secs),
        ),
        json!({ "request_id": request.id, "level": request.level, "reason": request.reason }),
        now,
    );
    let event = change_event(
        state,
        info,
        caller,
        action,
        &request.prefix,
        [
            ("request_id", request.id.clone().into()),
            ("capabilities", request.capabilities.clone().into()),
            ("duration_secs", request.duration_secs.into()),
            ("extends", request.extends.clone().into()),
        ],
    );
    let record = new_record(
        "request",
        request.id.clone(),
        Some(request.person_id.clone()),
        request,
        now,
    );
    // Stored only while the filer's token is live: a reset or a disable that revoked it
    // meanwhile (and closed the requests it saw) leaves none filed after it.
    state
        .store
        .apply(
            vec![
                Op::RequireLiveToken(caller.token_id.clone()),
                Op::Put(record),
                note,
            ],
            vec![event],
        )
        .await?;
    Ok(())
}

/// A request as its caller may see it: for a vendor's people, without the level it is held
/// to and without what would give the level away: the approvals needed, the approver roles,
/// and the approvals given (one approval on a request still pending says that two are
/// needed). They see its status, and a denial's comment.
fn as_seen_by(caller: &Caller, mut request: AccessRequest) -> AccessRequest {
    if caller.vendor_id.is_some() {
        request.level = String::new();
        request.approvals_needed = 0;
        request.approver_roles.clear();
        request.approvals.clear();
    }
    request
}

fn level_rank(levels: &[LevelPolicy], name: &str) -> u32 {
    levels
        .iter()
        .find(|l| l.name == name)
        .map_or(u32::MAX, |l| l.rank)
}

pub(crate) fn human_duration(secs: i64) -> String {
    if secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", (secs + 59) / 60)
    }
}

async fn caller_person(state: &AppState, caller: &Caller) -> Result<PersonRecord, ApiError> {
    let id = caller
        .person_id
        .as_deref()
        .ok_or_else(|| invalid("only a person can ask for access"))?;
    state
        .store
        .person(id)
        .await?
        .ok_or_else(|| ApiError::not_found("the caller no longer exists"))
}

#[utoipa::path(post, path = "/api/v1/requests", request_body = NewRequest, responses((status = 200, body = AccessRequest), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Asks for capabilities on a path prefix for a while. Approvers are notified.
pub(crate) async fn create_request(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(req): ApiJson<NewRequest>,
) -> Result<Json<AccessRequest>, ApiError> {
    let person = caller_person(&state, &caller).await?;
    let prefix = grant_prefix(&req.prefix)?;
    let capabilities = parse_capabilities(&req.capabilities)?;
    let secs = duration(&req.duration)?;
    let (request, level) = pending_request(
        &state,
        &person,
        &prefix,
        &capabilities,
        &req.reason,
        secs,
        None,
    )
    .await?;
    submit(&state, &info, &caller, &request, &level).await?;
    tracing::info!(request = %request.id, person = %person.name, prefix = %prefix, "access requested");
    Ok(Json(as_seen_by(&caller, request)))
}

#[derive(Deserialize)]
pub(crate) struct RequestQuery {
    status: Option<String>,
}

/// Whether `caller` may decide requests at all (their role is an approver role somewhere).
fn is_approver_role(caller: &Caller) -> bool {
    matches!(
        caller.principal.role,
        Role::Admin | Role::Security | Role::Approver
    )
}

#[utoipa::path(get, path = "/api/v1/requests", params(("status" = Option<String>, Query, description = "pending, approved, denied or cancelled")), responses((status = 200, body = Vec<AccessRequest>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Access requests: approvers see every request they could decide, others their own.
pub(crate) async fn list_requests(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<RequestQuery>,
) -> Result<Json<Vec<AccessRequest>>, ApiError> {
    let owner = if is_approver_role(&caller) && caller.vendor_id.is_none() {
        None
    } else {
        Some(
            caller
                .person_id
                .clone()
                .ok_or_else(|| invalid("only a person has requests"))?,
        )
    };
    // A pending request is shown held to its level as it is now, as an approval will hold
    // it: an approver sees the level and approvals it needs today.
    let levels = levels(&state).await?;
    let classifications = state.store.classifications().await?;
    let mut out = Vec::new();
    for record in state.store.records("request", owner.as_deref()).await? {
        let mut request: AccessRequest = body(&record)?;
        if query.status.as_deref().is_none_or(|s| s == request.status) {
            if request.status == "pending"
                && let Ok(current) = strictest_under(&levels, &classifications, &request.prefix)
            {
                held_to(&mut request, &levels, &current);
            }
            out.push(as_seen_by(&caller, request));
        }
    }
    Ok(Json(out))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionRequest {
    comment: Option<String>,
}

impl DecisionRequest {
    fn check(&self) -> Result<(), ApiError> {
        match &self.comment {
            Some(comment) => super::check_text("comment", comment, MAX_TEXT),
            None => Ok(()),
        }
    }
}

/// The longest reason, comment or note (characters).
const MAX_TEXT: usize = 2_000;

/// Holds a pending request to its prefix's level as it is now (`current`): a stricter level
/// than the one it was filed at, or more approvals, and the approver roles the level names
/// now (roles taken off a level since the request was filed approve it no more).
fn held_to(request: &mut AccessRequest, levels: &[LevelPolicy], current: &LevelPolicy) {
    if current.approvals > request.approvals_needed
        || current.rank > level_rank(levels, &request.level)
    {
        request.approvals_needed = request.approvals_needed.max(current.approvals);
        request.level.clone_from(&current.name);
    }
    request.approver_roles.clone_from(&current.approver_roles);
}

async fn decidable(
    state: &AppState,
    caller: &Caller,
    id: &str,
    approving: bool,
) -> Result<(Record, AccessRequest), ApiError> {
    let record = state
        .store
        .record("request", id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no request `{id}`")))?;
    let mut request: AccessRequest = body(&record)?;
    if request.status != "pending" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_pending",
            format!("the request is {}", request.status),
        )
        .refusal());
    }
    let me = actor_id(caller);
    if me == request.person_id {
        return Err(forbidden(
            "self_approval",
            "nobody may approve or deny their own request",
        ));
    }
    if caller.vendor_id.is_some() {
        return Err(forbidden(
            "not_an_approver",
            "requests are decided by the business's own staff",
        ));
    }
    let requester = state.store.person(&request.person_id).await?;
    // A disabled or ended account (or one whose vendor is no longer active) gets nothing:
    // its request can only be denied.
    if approving {
        let active = match &requester {
            Some(person) => state.standing(person).await?.active(),
            None => false,
        };
        if !active {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "requester_inactive",
                "the requester's account or vendor is not active: deny the request",
            )
            .refusal());
        }
    }
    // Whoever created the requester's account, or reset its credentials, was handed its
    // enrolment code, and may hold it: their approval would be an approval of their own
    // request. So may whoever holds the code of an account up that chain.
    let handed_code = match &requester {
        Some(person) => code_holders_upstream(state, person).await?,
        None => Vec::new(),
    };
    if approving && handed_code.contains(&me) {
        return Err(forbidden(
            "created_requester",
            "you created this account or reset its credentials: another approver decides \
             its requests",
        ));
    }
    // The other way round: an approver whose account the requester created (or reset) may
    // be the requester, enrolled with the code they were handed.
    let approver = match caller.person_id.as_deref() {
        Some(id) => state.store.person(id).await?,
        None => None,
    };
    let approver_holders = match &approver {
        Some(person) => code_holders_upstream(state, person).await?,
        None => Vec::new(),
    };
    if approving && approver_holders.contains(&request.person_id) {
        return Err(forbidden(
            "created_approver",
            "the requester created your account or reset its credentials: another approver \
             decides this request",
        ));
    }
    // The request is held to its level as it is now, not as it was when filed: a prefix
    // classified stricter since, or a tightened level, asks more of this approval.
    let levels = levels(state).await?;
    let current = strictest_under(
        &levels,
        &state.store.classifications().await?,
        &request.prefix,
    )?;
    if approving && request.duration_secs > current.max_grant_secs {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "policy_changed",
            format!(
                "access at level {} lasts at most {} days, less than this request asks for \
                 (the level may have changed since, or its vendor's people are not told it when \
                 filing): deny it and ask again",
                current.name,
                current.max_grant_secs / 86_400
            ),
        )
        .refusal());
    }
    held_to(&mut request, &levels, &current);
    if request.approver_roles.is_empty() {
        if approving {
            return Err(levels_disagree(&request.prefix).refusal());
        }
        // Nobody may approve it; the approvers of its highest level may still deny it.
        if let Some(top) = levels.iter().find(|l| l.name == current.name) {
            request.approver_roles.clone_from(&top.approver_roles);
        }
    }
    if !request.approver_roles.contains(&caller.principal.role) {
        let roles: Vec<&str> = request.approver_roles.iter().map(|r| r.as_str()).collect();
        return Err(forbidden(
            "not_an_approver",
            format!(
                "requests at level {} are decided by: {}",
                request.level,
                roles.join(", ")
            ),
        ));
    }
    // Security decision: handing out access to a level that asks a fresh second factor of
    // whoever reads there asks one of whoever approves it too. A session taken from an
    // approver's machine, or a login hours ago, would otherwise let it give the reading
    // away. A denial needs nothing more.
    if approving && current.step_up && !super::auth::may_mint(state, caller) {
        return Err(forbidden(
            "step_up_required",
            format!(
                "approving access at level {} needs a recent TOTP code: run `chaperone verify` \
                 (the console asks for it)",
                current.name
            ),
        ));
    }
    // Earlier approvals count only while their authors still may approve: still active
    // (not disabled, not past their end date), of a role the level names.
    let people = state.store.list_people().await?;
    let mut kept = Vec::new();
    for a in std::mem::take(&mut request.approvals) {
        let may_approve = match people.iter().find(|p| p.id == a.by) {
            Some(p) => {
                p.vendor_id.is_none()
                    && p.role
                        .parse::<Role>()
                        .is_ok_and(|r| request.approver_roles.contains(&r))
                    && state.standing(p).await?.person == Standing::Active
            }
            None => {
                a.by == super::governance::ROOT_ACTOR
                    && request.approver_roles.contains(&Role::Admin)
                    && request.approvals_needed < 2
            }
        };
        let made_by_requester = match people.iter().find(|p| p.id == a.by) {
            Some(p) => code_holders_upstream(state, p)
                .await?
                .contains(&request.person_id),
            None => false,
        };
        if may_approve && !handed_code.contains(&a.by) && !made_by_requester {
            kept.push(a);
        }
    }
    request.approvals = kept;
    Ok((record, request))
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", params(("id" = String, Path)), request_body = DecisionRequest, responses((status = 200, body = AccessRequest), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Approves a request. With the last approval it needs, the grant is made (or extended).
pub(crate) async fn approve_request(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<AccessRequest>, ApiError> {
    req.check()?;
    let (record, mut request) = decidable(&state, &caller, &id, true).await?;
    let me = actor_id(&caller);
    // Security decision: a request that needs several approvals is approved by named
    // people. Tokens of no person are one actor, `root`, but nothing ties them to a person:
    // whoever holds the initial admin token and an admin account of their own would
    // otherwise give two approvals.
    if me == super::governance::ROOT_ACTOR && request.approvals_needed >= 2 {
        return Err(forbidden(
            "named_approvers_only",
            "a request that needs several approvals is approved by people with accounts, \
             not by a token of no person",
        ));
    }
    if request.approvals.iter().any(|a| a.by == me) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_approved",
            "you already approved this request; another approver must",
        )
        .refusal());
    }
    let now = state.clock.now();
    request.approvals.push(Decision {
        by: me.clone(),
        comment: req.comment.clone(),
        time: now.to_rfc3339(),
    });
    let mut ops = Vec::new();
    let mut events = vec![change_event(
        &state,
        &info,
        &caller,
        "access.approve",
        &request.prefix,
        [
            ("request_id", request.id.clone().into()),
            ("level", request.level.clone().into()),
            ("approvals", request.approvals.len().into()),
            ("approvals_needed", request.approvals_needed.into()),
            ("comment", req.comment.clone().into()),
        ],
    )];
    if request.approvals.len() >= request.approvals_needed as usize {
        request.status = "approved".into();
        let expires_at = now.plus_secs(request.duration_secs);
        let approvers: Vec<Value> = request.approvals.iter().map(|a| json!(a.by)).collect();
        let terms = GrantTerms {
            approvals: u32::try_from(request.approvals.len()).unwrap_or(u32::MAX),
            secs: request.duration_secs,
        };
        match &request.extends {
            Some(grant_id) => {
                // A grant that ended meanwhile is not brought back by its extension: the
                // requester asks again, and the request is decided as a new one.
                let live = state
                    .store
                    .grant(grant_id)
                    .await?
                    .is_some_and(|g| g.revoked_at.is_none() && g.expires_at > now);
                if !live {
                    // Closed, so that it does not wait for approvals that cannot help, and
                    // the requester is told.
                    let mut closed = request.clone();
                    closed.approvals.pop();
                    closed.status = "cancelled".into();
                    closed.denial = Some(Decision {
                        by: me.clone(),
                        comment: Some("the grant it extends ended first".into()),
                        time: now.to_rfc3339(),
                    });
                    let event = change_event(
                        &state,
                        &info,
                        &caller,
                        "access.close",
                        &request.prefix,
                        [
                            ("request_id", request.id.clone().into()),
                            ("why", "grant_ended".into()),
                        ],
                    );
                    let told = notification(
                        "access_closed",
                        std::slice::from_ref(&request.person_id),
                        &format!(
                            "your request to extend your access to {} was closed: the grant \
                             ended first; ask for access again",
                            request.prefix
                        ),
                        json!({ "request_id": request.id }),
                        now,
                    );
                    state
                        .store
                        .apply(
                            vec![Op::Put(revise(&record, &closed, now)), told],
                            vec![event],
                        )
                        .await?;
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "grant_ended",
                        "the grant this extends was revoked or has ended; the request is closed \
                         and its requester told to ask for access again",
                    ));
                }
                ops.push(Op::ExtendGrant {
                    id: grant_id.clone(),
                    at: now,
                    expires_at,
                    terms,
                });
                request.grant_id = Some(grant_id.clone());
                events.push(change_event(
                    &state,
                    &info,
                    &caller,
                    "grant.extend",
                    grant_id,
                    [
                        ("request_id", request.id.clone().into()),
                        ("person_id", request.person_id.clone().into()),
                        ("expires_time", expires_at.to_rfc3339().into()),
                        ("approved_by", approvers.into()),
                    ],
                ));
            }
            None => {
                let grant = GrantRecord {
                    id: new_id("gra"),
                    person_id: request.person_id.clone(),
                    prefix: request.prefix.clone(),
                    capabilities: request.capabilities.clone(),
                    expires_at,
                    created_at: now,
                    created_by: me.clone(),
                    revoked_at: None,
                    request_id: Some(request.id.clone()),
                    break_glass: false,
                    reason: Some(request.reason.clone()),
                    reviewed: None,
                    terms: Some(terms),
                };
                request.grant_id = Some(grant.id.clone());
                events.push(grant_event(&state, &info, &caller, &grant, approvers));
                ops.push(Op::InsertGrant(grant));
            }
        }
        ops.push(notification(
            "access_approved",
            std::slice::from_ref(&request.person_id),
            &format!(
                "your access to {} is approved until {}",
                request.prefix,
                expires_at.to_rfc3339()
            ),
            json!({ "request_id": request.id, "grant_id": request.grant_id }),
            now,
        ));
    }
    ops.insert(0, Op::Put(revise(&record, &request, now)));
    state.store.apply(ops, events).await?;
    tracing::info!(request = %request.id, by = %me, status = %request.status, "request approved");
    Ok(Json(request))
}

fn grant_event(
    state: &AppState,
    info: &RequestInfo,
    caller: &Caller,
    grant: &GrantRecord,
    approved_by: Vec<Value>,
) -> Event {
    change_event(
        state,
        info,
        caller,
        "grant.create",
        &grant.id,
        [
            ("person_id", grant.person_id.clone().into()),
            ("prefix", grant.prefix.clone().into()),
            ("capabilities", grant.capabilities.clone().into()),
            ("expires_time", grant.expires_at.to_rfc3339().into()),
            ("request_id", grant.request_id.clone().into()),
            ("break_glass", grant.break_glass.into()),
            ("reason", grant.reason.clone().into()),
            ("approved_by", approved_by.into()),
        ],
    )
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/deny", params(("id" = String, Path)), request_body = DecisionRequest, responses((status = 200, body = AccessRequest), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Denies a request, with a comment for the requester.
pub(crate) async fn deny_request(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<AccessRequest>, ApiError> {
    req.check()?;
    let (record, mut request) = decidable(&state, &caller, &id, false).await?;
    let now = state.clock.now();
    request.status = "denied".into();
    request.denial = Some(Decision {
        by: actor_id(&caller),
        comment: req.comment.clone(),
        time: now.to_rfc3339(),
    });
    let event = change_event(
        &state,
        &info,
        &caller,
        "access.deny",
        &request.prefix,
        [
            ("request_id", request.id.clone().into()),
            ("comment", req.comment.clone().into()),
        ],
    );
    let note = notification(
        "access_denied",
        std::slice::from_ref(&request.person_id),
        &format!("your request for {} was denied", request.prefix),
        json!({ "request_id": request.id, "comment": req.comment }),
        now,
    );
    state
        .store
        .apply(
            vec![Op::Put(revise(&record, &request, now)), note],
            vec![event],
        )
        .await?;
    Ok(Json(request))
}

/// Whether `me` may be one of `ids` (people, or `root`): one of them, or holding one of their
/// accounts or held by it through the chain of creators ([`created_account`]). For a
/// review, which is a second look by someone else. The initial admin token (`root`) counts
/// as the holder of the accounts it made itself, as for approvals: whoever holds it was
/// handed their enrolment codes, so none of those accounts reviews what the token did.
async fn same_party(state: &AppState, me: &str, ids: &[String]) -> Result<bool, ApiError> {
    for id in ids {
        if id == me || created_account(state, id, me).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether one of `actor` and the account of `person_id` was handed the other's enrolment
/// code (created or reset it, or an account up its chain: [`code_holders_upstream`]): each
/// may then be the other.
pub(crate) async fn created_account(
    state: &AppState,
    person_id: &str,
    actor: &str,
) -> Result<bool, ApiError> {
    let made_by = |id: &str, maker: &str| {
        let id = id.to_owned();
        let maker = maker.to_owned();
        async move {
            // `root` is the initial admin token, never a person (not one named `root`).
            if id == super::governance::ROOT_ACTOR {
                return Ok(false);
            }
            Ok::<_, ApiError>(match state.store.person(&id).await? {
                Some(person) => code_holders_upstream(state, &person)
                    .await?
                    .contains(&maker),
                None => false,
            })
        }
    };
    Ok(made_by(person_id, actor).await? || made_by(actor, person_id).await?)
}

/// [`code_holders`] of `person`'s account, and of every account up its chain of creators
/// and resetters: whoever may hold an account may hold the accounts it created, so an
/// admin who made a second admin who made two approvers may be all three. The initial
/// admin token (`root`) counts where it made an account itself, not through the accounts
/// it made (every chain starts there; it approves one-approval requests only). The whole
/// chain is followed, however long (each account once).
pub(crate) async fn code_holders_upstream(
    state: &AppState,
    person: &chaperone_store::PersonRecord,
) -> Result<Vec<String>, ApiError> {
    let people = state.store.list_people().await?;
    let mut holders = code_holders(person);
    let mut next = 0;
    while next < holders.len() {
        let id = holders[next].clone();
        next += 1;
        if id == super::governance::ROOT_ACTOR {
            continue;
        }
        if let Some(up) = people.iter().find(|p| p.id == id) {
            for holder in code_holders(up) {
                if holder != super::governance::ROOT_ACTOR && !holders.contains(&holder) {
                    holders.push(holder);
                }
            }
        }
    }
    Ok(holders)
}

/// Who was handed the enrolment code of `person`'s account, and may hold it: its creator and
/// whoever last reset its credentials.
///
/// An account with no creator on record was made by the initial admin token (or before
/// creators were kept): the token is taken for its creator, so it approves none of its
/// requests either.
fn code_holders(person: &chaperone_store::PersonRecord) -> Vec<String> {
    let creator = person
        .created_by
        .clone()
        .unwrap_or_else(|| super::governance::ROOT_ACTOR.to_owned());
    std::iter::once(creator)
        .chain(person.reset_by.clone())
        .collect()
}

/// Who decided a grant: whoever made it and everyone who approved the request behind it or
/// an extension of it.
async fn granted_by(state: &AppState, grant: &GrantRecord) -> Result<Vec<String>, ApiError> {
    let mut deciders = vec![grant.created_by.clone()];
    for record in state
        .store
        .records("request", Some(&grant.person_id))
        .await?
    {
        let request: AccessRequest = body(&record)?;
        if request.status == "approved"
            && (grant.request_id.as_deref() == Some(request.id.as_str())
                || request.extends.as_deref() == Some(grant.id.as_str()))
        {
            deciders.extend(request.approvals.into_iter().map(|a| a.by));
        }
    }
    Ok(deciders)
}

/// The changes that close a person's pending requests, as cancelled by `closer` (an
/// account disabled or offboarded asks for nothing any more: approving such a request later
/// would hand access back with the account, without a fresh request).
pub(crate) async fn close_pending(
    state: &AppState,
    person_id: &str,
    closer: &Decision,
    now: Timestamp,
) -> Result<Closing, ApiError> {
    let mut count = 0;
    for record in state.store.records("request", Some(person_id)).await? {
        let request: AccessRequest = body(&record)?;
        if request.status == "pending" {
            count += 1;
        }
    }
    let mut set = serde_json::Map::new();
    set.insert("status".into(), "cancelled".into());
    set.insert(
        "denial".into(),
        serde_json::to_value(closer).expect("decisions serialise"),
    );
    // Closed by status as the change runs, not by the list read above: a request filed
    // after that read, before the change commits, is closed too.
    let op = Op::ReviseRecordsWhere {
        kind: "request".into(),
        owner: person_id.to_owned(),
        field: "status".into(),
        equals: "pending".into(),
        set,
        at: now,
    };
    Ok(Closing { count, op })
}

/// The change that closes a person's pending requests, and how many there were when read
/// (the count recorded; any filed since are closed too).
pub(crate) struct Closing {
    count: usize,
    op: Op,
}

impl Closing {
    /// The requests pending when read.
    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

impl IntoIterator for Closing {
    type Item = Op;
    type IntoIter = std::iter::Once<Op>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.op)
    }
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/cancel", params(("id" = String, Path)), responses((status = 200, body = AccessRequest), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Withdraws one's own pending request; approvers can no longer approve it.
pub(crate) async fn cancel_request(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AccessRequest>, ApiError> {
    let record = state
        .store
        .record("request", &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no request `{id}`")))?;
    let mut request: AccessRequest = body(&record)?;
    // Someone else's request is not found: its existence is not the caller's business.
    if caller.person_id.as_deref() != Some(request.person_id.as_str()) {
        return Err(ApiError::not_found(format!("no request `{id}`")));
    }
    if request.status != "pending" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_pending",
            format!("the request is {}", request.status),
        )
        .refusal());
    }
    let now = state.clock.now();
    request.status = "cancelled".into();
    let event = change_event(
        &state,
        &info,
        &caller,
        "access.cancel",
        &request.prefix,
        [("request_id", request.id.clone().into())],
    );
    state
        .store
        .apply(vec![Op::Put(revise(&record, &request, now))], vec![event])
        .await?;
    Ok(Json(as_seen_by(&caller, request)))
}

// ---------------------------------------------------------------------------------------
// Grants

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct GrantInfo {
    id: String,
    person_id: String,
    /// The holder's name.
    person: String,
    prefix: String,
    capabilities: Vec<String>,
    expires_time: String,
    created_by: String,
    request_id: Option<String>,
    break_glass: bool,
    reason: Option<String>,
    /// For break-glass grants: whether someone reviewed it yet.
    needs_review: bool,
    revoked: bool,
}

impl GrantInfo {
    /// `g` as answered, held by the person named `person`.
    fn new(g: GrantRecord, person: String) -> Self {
        Self {
            needs_review: g.break_glass && g.reviewed.is_none(),
            revoked: g.revoked_at.is_some(),
            id: g.id,
            person_id: g.person_id,
            person,
            prefix: g.prefix,
            capabilities: g.capabilities,
            expires_time: g.expires_at.to_rfc3339(),
            created_by: g.created_by,
            request_id: g.request_id,
            break_glass: g.break_glass,
            reason: g.reason,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakGlassRequest {
    person: String,
    prefix: String,
    capabilities: Vec<String>,
    /// How long, such as `4h`; at most the level's maximum.
    ttl: String,
    /// Why this cannot wait for an approval. Mandatory.
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/grants", request_body = BreakGlassRequest, responses((status = 200, body = GrantInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Break-glass: an admin grants access at once, without approval, with a mandatory reason.
/// The grant is flagged for review, and security is notified.
pub(crate) async fn break_glass(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<BreakGlassRequest>,
) -> Result<Json<GrantInfo>, ApiError> {
    if body.reason.trim().is_empty() {
        return Err(invalid("break-glass needs a `reason`"));
    }
    super::check_text("reason", &body.reason, MAX_TEXT)?;
    let capabilities = parse_capabilities(&body.capabilities)?;
    let prefix = grant_prefix(&body.prefix)?;
    let ttl = duration(&body.ttl)?;
    let person = state
        .store
        .person(&body.person)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no person `{}`", body.person)))?;
    if caller.person_id.as_deref() == Some(person.id.as_str()) {
        return Err(forbidden(
            "self_grant",
            "nobody may grant access to themselves",
        ));
    }
    // Only an active account of an active vendor is granted anything.
    if !state.standing(&person).await?.active() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "grantee_inactive",
            "the account or its vendor is not active: nothing is granted to it",
        )
        .refusal());
    }
    let levels = levels(&state).await?;
    let level = strictest_under(&levels, &state.store.classifications().await?, &prefix)?;
    if ttl > level.max_grant_secs {
        return Err(too_long(&level));
    }
    // As for an approval: access to a level with step-up is handed out after a fresh code.
    if level.step_up && !super::auth::may_mint(&state, &caller) {
        return Err(forbidden(
            "step_up_required",
            "a break-glass grant to a level with step-up needs a recent TOTP code: run \
             `chaperone verify`",
        ));
    }
    let now = state.clock.now();
    let grant = GrantRecord {
        id: new_id("gra"),
        person_id: person.id.clone(),
        prefix,
        capabilities: capabilities.iter().map(|c| c.as_str().to_owned()).collect(),
        expires_at: now.plus_secs(ttl),
        created_at: now,
        created_by: actor_id(&caller),
        revoked_at: None,
        request_id: None,
        break_glass: true,
        reason: Some(body.reason.clone()),
        reviewed: None,
        // An emergency override, reviewed afterwards: held to no level's approvals.
        terms: None,
    };
    let security: Vec<String> = state
        .store
        .list_people()
        .await?
        .into_iter()
        .filter(|p| p.disabled_at.is_none() && (p.role == "security" || p.role == "admin"))
        .filter(|p| Some(&p.id) != caller.person_id.as_ref())
        .map(|p| p.id)
        .collect();
    let note = notification(
        "break_glass",
        &security,
        &format!("break-glass grant to {} on {}", person.name, grant.prefix),
        json!({ "grant_id": grant.id, "reason": body.reason }),
        now,
    );
    let event = grant_event(&state, &info, &caller, &grant, Vec::new());
    state
        .store
        .apply(vec![Op::InsertGrant(grant.clone()), note], vec![event])
        .await?;
    tracing::warn!(by = %caller.token_id, grant = %grant.id, person = %person.name, prefix = %grant.prefix, "break-glass grant");
    Ok(Json(GrantInfo::new(grant, person.name)))
}

#[derive(Deserialize)]
pub(crate) struct GrantQuery {
    person: Option<String>,
    /// `true`: only break-glass grants not yet reviewed.
    flagged: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/grants", params(("person" = Option<String>, Query), ("flagged" = Option<bool>, Query, description = "only break-glass grants awaiting review")), responses((status = 200, body = Vec<GrantInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Active grants: of one person, or all; or break-glass grants awaiting review.
pub(crate) async fn list_grants(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<GrantQuery>,
) -> Result<Json<Vec<GrantInfo>>, ApiError> {
    let now = state.clock.now();
    let grants = match &query.person {
        Some(name) => {
            let person = state
                .store
                .person(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no person `{name}`")))?;
            state
                .store
                .grants_of(&person.id)
                .await?
                .into_iter()
                .filter(|g| g.expires_at > now)
                .collect()
        }
        None if query.flagged == Some(true) => state.store.unreviewed_break_glass().await?,
        None => state.store.active_grants(now).await?,
    };
    let names: HashMap<String, String> = state
        .store
        .list_people()
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    Ok(Json(
        grants
            .into_iter()
            .filter(|g| query.flagged != Some(true) || (g.break_glass && g.reviewed.is_none()))
            .map(|g| {
                let person = names.get(&g.person_id).cloned().unwrap_or_default();
                GrantInfo::new(g, person)
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/auth/grants", responses((status = 200, body = Vec<GrantInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// The caller's own grants that have not ended: what they may use now, and the ids to ask
/// an extension for. A token of no person holds none.
pub(crate) async fn my_grants(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<GrantInfo>>, ApiError> {
    let Some(person_id) = &caller.person_id else {
        return Ok(Json(Vec::new()));
    };
    let now = state.clock.now();
    let name = state
        .store
        .acting_person(person_id)
        .await?
        .map(|p| p.name)
        .unwrap_or_default();
    Ok(Json(
        state
            .store
            .grants_of(person_id)
            .await?
            .into_iter()
            .filter(|g| g.expires_at > now)
            .map(|g| GrantInfo::new(g, name.clone()))
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/grants/{id}", params(("id" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Revokes a grant.
pub(crate) async fn revoke_grant(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtendRequest {
    /// The new duration, counted from the approval.
    duration: String,
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/grants/{id}/extend", params(("id" = String, Path)), request_body = ExtendRequest, responses((status = 200, body = AccessRequest), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Asks for one's grant to be extended; like any request, it needs new approvals.
pub(crate) async fn extend_grant(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ExtendRequest>,
) -> Result<Json<AccessRequest>, ApiError> {
    let person = caller_person(&state, &caller).await?;
    let now = state.clock.now();
    let grant = state
        .store
        .grant(&id)
        .await?
        .filter(|g| g.person_id == person.id && g.revoked_at.is_none() && g.expires_at > now)
        .ok_or_else(|| ApiError::not_found("you hold no such active grant"))?;
    let capabilities = parse_capabilities(&grant.capabilities)?;
    let secs = duration(&req.duration)?;
    let (request, level) = pending_request(
        &state,
        &person,
        &grant.prefix,
        &capabilities,
        &req.reason,
        secs,
        Some(grant.id.clone()),
    )
    .await?;
    submit(&state, &info, &caller, &request, &level).await?;
    Ok(Json(as_seen_by(&caller, request)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantReview {
    note: String,
}

#[utoipa::path(post, path = "/api/v1/grants/{id}/review", params(("id" = String, Path)), request_body = GrantReview, responses((status = 204), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Marks a break-glass grant as reviewed, with a note. The admin who made it cannot.
pub(crate) async fn review_grant(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<GrantReview>,
) -> Result<StatusCode, ApiError> {
    super::check_text("note", &req.note, MAX_TEXT)?;
    let grant = state
        .store
        .grant(&id)
        .await?
        .filter(|g| g.break_glass)
        .ok_or_else(|| ApiError::not_found("no such break-glass grant"))?;
    let me = actor_id(&caller);
    if same_party(
        &state,
        &me,
        &[grant.created_by.clone(), grant.person_id.clone()],
    )
    .await?
    {
        return Err(forbidden(
            "self_review",
            "a break-glass grant is reviewed by someone other than who made or holds it, or \
             created the maker's or holder's account",
        ));
    }
    if grant.reviewed.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_reviewed",
            "the grant was already reviewed",
        )
        .refusal());
    }
    let now = state.clock.now();
    let event = change_event(
        &state,
        &info,
        &caller,
        "grant.review",
        &id,
        [("note", req.note.into())],
    );
    state
        .store
        .apply(
            vec![Op::ReviewGrant {
                id,
                at: now,
                by: me,
            }],
            vec![event],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Access reviews

/// A review campaign as stored.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Campaign {
    pub(crate) id: String,
    /// The vendor reviewed, or every vendor and grant.
    pub(crate) vendor_id: Option<String>,
    pub(crate) deadline: String,
    /// The deadline in nanoseconds since the epoch.
    pub(crate) deadline_nanos: i64,
    /// open or closed.
    pub(crate) status: String,
    pub(crate) created_by: String,
    pub(crate) items: Vec<ReviewItem>,
}

/// One thing to certify or revoke.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct ReviewItem {
    pub(crate) id: String,
    /// grant or account.
    pub(crate) kind: String,
    /// The grant or person id.
    pub(crate) subject: String,
    /// What it is, for the reviewer.
    pub(crate) summary: String,
    /// certify, revoke, or (at the deadline, undecided) expired.
    pub(crate) decision: Option<String>,
    pub(crate) note: Option<String>,
    pub(crate) decided_by: Option<String>,
    pub(crate) decided_time: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCampaign {
    /// One vendor's name; all vendors when absent.
    vendor: Option<String>,
    /// A date, an RFC 3339 instant, or a duration from now such as `14d`.
    deadline: String,
}

#[utoipa::path(post, path = "/api/v1/reviews", request_body = NewCampaign, responses((status = 200, body = Campaign), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Opens a review campaign listing every active grant of the vendor's people (every grant,
/// for all vendors) and every contractor account. Undecided items are revoked at the
/// deadline.
pub(crate) async fn create_campaign(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(req): ApiJson<NewCampaign>,
) -> Result<Json<Campaign>, ApiError> {
    let now = state.clock.now();
    let deadline = match parse_date(&req.deadline) {
        Ok(t) => t,
        Err(_) => now.plus_secs(duration(&req.deadline)?),
    };
    if deadline <= now {
        return Err(invalid("the deadline must be in the future"));
    }
    let vendor = match &req.vendor {
        Some(name) => Some(super::governance::vendor_named(&state, name).await?),
        None => None,
    };
    let people = state.store.list_people().await?;
    let in_scope = |p: &PersonRecord| match &vendor {
        Some(v) => p.vendor_id.as_deref() == Some(v.id.as_str()),
        None => true,
    };
    let mut items = Vec::new();
    for person in people.iter().filter(|p| in_scope(p)) {
        if person.vendor_id.is_some() && person.disabled_at.is_none() {
            items.push(ReviewItem {
                id: format!("item-{}", items.len() + 1),
                kind: "account".into(),
                subject: person.id.clone(),
                summary: format!("contractor account {} ({})", person.name, person.role),
                decision: None,
                note: None,
                decided_by: None,
                decided_time: None,
            });
        }
    }
    for grant in state.store.active_grants(now).await? {
        let Some(person) = people.iter().find(|p| p.id == grant.person_id) else {
            continue;
        };
        if in_scope(person) {
            items.push(ReviewItem {
                id: format!("item-{}", items.len() + 1),
                kind: "grant".into(),
                subject: grant.id.clone(),
                summary: format!(
                    "{} may {} on {} until {}",
                    person.name,
                    grant.capabilities.join(", "),
                    grant.prefix,
                    grant.expires_at.to_rfc3339()
                ),
                decision: None,
                note: None,
                decided_by: None,
                decided_time: None,
            });
        }
    }
    let campaign = Campaign {
        id: new_id("rev"),
        vendor_id: vendor.as_ref().map(|v| v.id.clone()),
        deadline: deadline.to_rfc3339(),
        deadline_nanos: deadline.unix_nanos(),
        status: "open".into(),
        created_by: actor_id(&caller),
        items,
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "review.create",
        &campaign.id,
        [
            ("vendor_id", campaign.vendor_id.clone().into()),
            ("deadline", campaign.deadline.clone().into()),
            ("items", campaign.items.len().into()),
        ],
    );
    let record = new_record("review", campaign.id.clone(), None, &campaign, now);
    state
        .store
        .apply(vec![Op::Put(record)], vec![event])
        .await?;
    Ok(Json(campaign))
}

#[utoipa::path(get, path = "/api/v1/reviews", responses((status = 200, body = Vec<Campaign>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Every review campaign.
pub(crate) async fn list_campaigns(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<Campaign>>, ApiError> {
    Ok(Json(
        state
            .store
            .records("review", None)
            .await?
            .iter()
            .map(body)
            .collect::<Result<_, _>>()?,
    ))
}

#[utoipa::path(get, path = "/api/v1/reviews/{id}", params(("id" = String, Path)), responses((status = 200, body = Campaign), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// One review campaign with its items.
pub(crate) async fn show_campaign(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Campaign>, ApiError> {
    let record = state
        .store
        .record("review", &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no review `{id}`")))?;
    Ok(Json(body(&record)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemDecision {
    /// certify or revoke.
    decision: String,
    note: Option<String>,
}

/// The changes revoking one review item's subject, and the accessors of the wrapped answers
/// they delete: a grant is revoked; an account is disabled, its sessions, tokens, grants and
/// wrapped answers revoked and its pending requests closed, so that enabling it again brings
/// none of them back.
pub(crate) async fn revoke_item(
    state: &AppState,
    item: &ReviewItem,
    by: &str,
    now: Timestamp,
) -> Result<(Vec<Op>, Vec<String>), ApiError> {
    if item.kind == "grant" {
        Ok((
            vec![Op::RevokeGrant {
                id: item.subject.clone(),
                at: now,
            }],
            Vec::new(),
        ))
    } else {
        // Its pending requests close with it, as with `user disable`.
        let closer = Decision {
            by: by.to_owned(),
            comment: Some("the account was revoked by an access review".into()),
            time: now.to_rfc3339(),
        };
        let mut ops = vec![
            Op::DisablePerson {
                id: item.subject.clone(),
                at: now,
            },
            Op::RevokeTokensOf {
                person_id: item.subject.clone(),
                at: now,
            },
        ];
        ops.extend(close_pending(state, &item.subject, &closer, now).await?);
        ops.push(Op::RevokeGrantsOf {
            person_id: item.subject.clone(),
            at: now,
        });
        // Named as read here: one wrapped meanwhile goes too, unnamed.
        let wrapped = state.store.wrapped_by(&item.subject, now).await?;
        Ok((ops, wrapped))
    }
}

#[utoipa::path(post, path = "/api/v1/reviews/{id}/items/{item}", params(("id" = String, Path), ("item" = String, Path)), request_body = ItemDecision, responses((status = 200, body = Campaign), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Certifies or revokes one item. Revoking takes effect at once (the grant is revoked, the
/// account disabled).
pub(crate) async fn decide_item(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath((id, item_id)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ItemDecision>,
) -> Result<Json<Campaign>, ApiError> {
    if !["certify", "revoke"].contains(&req.decision.as_str()) {
        return Err(invalid("decide certify or revoke"));
    }
    if let Some(note) = &req.note {
        super::check_text("note", note, MAX_TEXT)?;
    }
    let record = state
        .store
        .record("review", &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no review `{id}`")))?;
    let mut campaign: Campaign = body(&record)?;
    let now = state.clock.now();
    if campaign.status != "open" || campaign.deadline_nanos <= now.unix_nanos() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "review_closed",
            "the review is past its deadline",
        )
        .refusal());
    }
    let me = actor_id(&caller);
    if caller.vendor_id.is_some() {
        return Err(forbidden(
            "not_permitted",
            "access reviews are decided by the business's own staff",
        ));
    }
    let item = campaign
        .items
        .iter_mut()
        .find(|i| i.id == item_id)
        .ok_or_else(|| ApiError::not_found(format!("no item `{item_id}` in this review")))?;
    if item.decision.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "decided",
            "this item is already decided",
        )
        .refusal());
    }
    // Whose account or grant it is: nobody reviews their own, nor one whose account they
    // created or reset (they were handed its enrolment code, as for approvals), nor a grant they
    // made, approved or approved an extension of (a review is a second look, not the first
    // one again).
    let holder = if item.kind == "grant" {
        match state.store.grant(&item.subject).await? {
            Some(grant) => {
                if same_party(&state, &me, &granted_by(&state, &grant).await?).await? {
                    return Err(forbidden(
                        "self_review",
                        "nobody reviews a grant they made or approved",
                    ));
                }
                Some(grant.person_id)
            }
            None => None,
        }
    } else {
        Some(item.subject.clone())
    };
    if let Some(holder) = holder
        && (holder == me || created_account(&state, &holder, &me).await?)
    {
        return Err(forbidden(
            "self_review",
            "nobody reviews their own account or grants, or those of an account they created \
             or reset",
        ));
    }
    item.decision = Some(req.decision.clone());
    item.note.clone_from(&req.note);
    item.decided_by = Some(me.clone());
    item.decided_time = Some(now.to_rfc3339());
    let (mut ops, wrappings_revoked) = if req.decision == "revoke" {
        revoke_item(&state, item, &me, now).await?
    } else {
        (Vec::new(), Vec::new())
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "review.decide",
        &id,
        [
            ("item", item.id.clone().into()),
            ("kind", item.kind.clone().into()),
            ("subject", item.subject.clone().into()),
            ("decision", req.decision.clone().into()),
            ("note", req.note.clone().into()),
            ("wrappings_revoked", wrappings_revoked.into()),
        ],
    );
    ops.insert(0, Op::Put(revise(&record, &campaign, now)));
    state.store.apply(ops, vec![event]).await?;
    Ok(Json(campaign))
}

#[utoipa::path(get, path = "/api/v1/notifications", responses((status = 200, body = Vec<crate::notify::Notification>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Notifications: security and admins see all, everyone else those addressed to them.
pub(crate) async fn list_notifications(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<crate::notify::Notification>>, ApiError> {
    let everything = matches!(caller.principal.role, Role::Admin | Role::Security);
    let me = caller.person_id.as_deref();
    if !everything && me.is_none() {
        return Ok(Json(Vec::new()));
    }
    let mut notes = state
        .notifications(if everything { None } else { me })
        .await?;
    if !everything {
        notes
            .iter_mut()
            .for_each(crate::notify::Notification::for_recipient);
    }
    Ok(Json(notes))
}
