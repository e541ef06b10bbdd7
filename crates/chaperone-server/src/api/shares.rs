//! One-time share links and request-a-secret links.
//!
//! A share's content is encrypted by the client that creates it, under a key that exists
//! only in the link's URL fragment (`chaperone_crypto::share`): this server stores and hands
//! out ciphertext it cannot read, so neither it, its logs nor its database ever hold the
//! plaintext or the key. It enforces the rest: expiry (24 hours by default, at most 30
//! days), views (1 by default), an optional passphrase (Argon2id; guesses are counted per
//! link and per address before they are checked, and locked out like logins), and an
//! optional recipient who must
//! present a session verified with TOTP. Used-up, expired and revoked content is destroyed.
//!
//! A request-a-secret link lets someone without an account put one secret into one path,
//! once: its token is the credential, stored only as a SHA-256.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chaperone_core::policy::{Action, Role};
use chaperone_core::{Cas, SecretPath, Timestamp, parse_duration};
use chaperone_crypto::password::{Password, hash_password, verify_password};
use chaperone_ledger::entry::{Actor, Outcome};
use chaperone_store::{Op, Opened, ShareRecord, StoreError, TokenKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::admin::change_event;
use super::auth::new_id;
use super::governance::{actor_id, body, new_record, revise};
use super::{ApiJson, ApiPath};
use crate::auth::Caller;
use crate::record::{Record as LedgerRecord, RequestInfo};
use crate::{ApiError, AppState};

/// The largest file a share carries.
pub(crate) const MAX_SHARE_BYTES: usize = 25 * 1024 * 1024;
/// The ciphertext of the largest share: the content, a header of at most 4 KiB with its
/// length, and the format byte, nonce and tag.
pub(crate) const MAX_SEALED_BYTES: usize = MAX_SHARE_BYTES + 4096 + 4 + 1 + 12 + 16;
const DEFAULT_TTL: i64 = 24 * 3600;
const MAX_TTL: i64 = 30 * 86_400;
/// The most one person's live share links (not yet expired, viewed out or revoked) hold.
const MAX_LIVE_SHARE_BYTES: i64 = 256 * 1024 * 1024;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

fn gone() -> ApiError {
    // One answer for unknown, used up, expired and revoked: a link reveals nothing more. A
    // link its holder never used may have been used by someone else: they are asked to say so.
    ApiError::not_found(
        "this link has expired, was used up or was revoked: if you did not use it yourself, \
         tell whoever sent it to you",
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewShare {
    /// What it is, for lists and for the recipient (`db password for the migration`).
    label: String,
    /// The ciphertext's exact size in bytes.
    size: usize,
    /// How long the link works: `24h` by default, at most `30d`.
    expires: Option<String>,
    /// How many times it can be opened: 1 by default, at most 100.
    views: Option<i64>,
    /// A passphrase the recipient must give as well.
    passphrase: Option<String>,
    /// The only person who may open it (they must be logged in with TOTP).
    recipient: Option<String>,
    /// Where the content came from, for the ledger (`secret:team/db@3`, `text`, `file`).
    source: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ShareInfo {
    id: String,
    label: String,
    created_by: String,
    created_time: String,
    expires_time: String,
    max_views: i64,
    views: i64,
    needs_passphrase: bool,
    recipient: Option<String>,
    /// live, waiting (no content yet), used, expired or revoked.
    state: String,
}

impl From<ShareRecord> for ShareInfo {
    fn from(s: ShareRecord) -> Self {
        let state = match (&s.destroyed, s.has_content) {
            (Some((_, why)), _) => why.clone(),
            (None, true) => "live".into(),
            (None, false) => "waiting".into(),
        };
        Self {
            id: s.id,
            label: s.label,
            created_by: s.created_by,
            created_time: s.created_at.to_rfc3339(),
            expires_time: s.expires_at.to_rfc3339(),
            max_views: s.max_views,
            views: s.views,
            needs_passphrase: s.passphrase_hash.is_some(),
            recipient: s.restricted_to,
            state,
        }
    }
}

/// Holds a share's `source` to what its maker could have put in it: `text`, `file`, or
/// `secret:PATH@VERSION` of a version that exists and that the maker may read now.
/// Security decision: the offboarding report trusts this claim (a contractor who opened the
/// link saw that version, and it is to be rotated), so a maker may not name a secret they
/// cannot read (which would open rotation findings for it) nor a path that does not exist.
/// A refused read is recorded as the request layer records it. The server cannot see what
/// the ciphertext holds: a maker who leaves `source` out shares what they read unnamed.
async fn check_source(
    state: &AppState,
    caller: &Caller,
    info: &RequestInfo,
    source: &str,
) -> Result<(), ApiError> {
    let malformed =
        || invalid("source is `text`, `file` or `secret:PATH@VERSION` (as `secret:team/db@3`)");
    if matches!(source, "text" | "file") {
        return Ok(());
    }
    let (path, version) = source
        .strip_prefix("secret:")
        .and_then(|s| s.rsplit_once('@'))
        .ok_or_else(malformed)?;
    let version: u64 = version
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(malformed)?;
    let path = SecretPath::parse(path).map_err(|_| malformed())?;
    state
        .require_also(
            caller,
            info,
            Action::SecretRead,
            &path,
            "a share's source is a secret you may read",
        )
        .await?;
    if state
        .store
        .read_version(&path, Some(version))
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "{} has no version {version} to share",
            path.as_str()
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/shares", request_body = NewShare, responses((status = 200, body = ShareInfo), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Creates a share link; its ciphertext follows with `PUT /api/v1/shares/{id}/content`.
pub(crate) async fn create_share(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(req): ApiJson<NewShare>,
) -> Result<Json<ShareInfo>, ApiError> {
    if req.label.trim().is_empty() || req.label.len() > 200 {
        return Err(invalid("give a label of 1 to 200 characters"));
    }
    super::check_text("label", &req.label, 200)?;
    if req.size == 0 || req.size > MAX_SEALED_BYTES {
        return Err(invalid("a share carries at most 25 MiB"));
    }

    let ttl = match &req.expires {
        Some(text) => parse_duration(text).map_err(invalid)?,
        None => DEFAULT_TTL,
    };
    if ttl > MAX_TTL {
        return Err(invalid("a share link works for at most 30 days"));
    }
    let views = req.views.unwrap_or(1);
    if !(1..=100).contains(&views) {
        return Err(invalid("views is 1 to 100"));
    }
    if let Some(source) = &req.source {
        check_source(&state, &caller, &info, source).await?;
    }
    let passphrase_hash = match &req.passphrase {
        Some(p) if p.chars().count() < 8 => {
            return Err(invalid("a passphrase has at least 8 characters"));
        }
        Some(p) => {
            let p = Password::new(p.clone());
            Some(state.password_work(move || hash_password(&p)).await?)
        }
        None => None,
    };
    let recipient = match &req.recipient {
        Some(name) => Some(
            state
                .store
                .person(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no person `{name}`")))?
                .id,
        ),
        None => None,
    };
    let now = state.clock.now();
    let share = ShareRecord {
        id: new_id("shr"),
        created_by: actor_id(&caller),
        created_at: now,
        expires_at: now.plus_secs(ttl),
        max_views: views,
        views: 0,
        passphrase_hash,
        proof_hash: String::new(),
        restricted_to: recipient,
        label: req.label.clone(),
        size: i64::try_from(req.size).unwrap_or(i64::MAX),
        has_content: false,
        destroyed: None,
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "share.create",
        &share.id,
        [
            ("label", share.label.clone().into()),
            ("expires_time", share.expires_at.to_rfc3339().into()),
            ("max_views", views.into()),
            ("passphrase", share.passphrase_hash.is_some().into()),
            ("recipient", share.restricted_to.clone().into()),
            ("size", share.size.into()),
            ("source", req.source.clone().into()),
        ],
    );
    // Shares are kept until their last view or expiry (up to 30 days): what one person
    // keeps at once is bounded, so no account can fill the database's disk.
    match state
        .store
        .insert_share(
            &share,
            Some(MAX_LIVE_SHARE_BYTES),
            &caller.token_id,
            &[event],
        )
        .await
    {
        Err(StoreError::Conflict(message)) if message.starts_with(chaperone_store::SHARE_QUOTA) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "share_quota",
                "your live share links would hold more than 256 MiB: revoke some (`chaperone \
                 share revoke`) or let them expire",
            ));
        }
        other => other?,
    }
    Ok(Json(share.into()))
}

#[utoipa::path(put, path = "/api/v1/shares/{id}/content", params(("id" = String, Path), ("X-Share-Proof" = String, Header, description = "the key proof: hex SHA-256 of `chaperone-share-open:` ‖ id ‖ `:` ‖ key")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 204), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Uploads a share's ciphertext, once, by its creator, with the proof that opening it will
/// require.
pub(crate) async fn put_share_content(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    let proof = headers
        .get("x-share-proof")
        .and_then(|v| v.to_str().ok())
        .filter(|p| p.len() == 64 && p.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| invalid("send the key proof in X-Share-Proof (64 hex digits)"))?;
    let proof_hash = proof_hash(proof);
    let me = actor_id(&caller);
    let share = state.store.share(&id).await?.ok_or_else(gone)?;
    if share.created_by != me {
        return Err(ApiError::not_found("no such share of yours"));
    }
    if share.has_content {
        return Err(invalid("the content is already there"));
    }
    // Slots before the body is read (held until the answer): share uploads hold at most
    // `MAX_QUEUED_UPLOADS` bodies in memory at once, apart from deliverables', and one
    // uploader (a vendor's people together) uploads one at a time, so one stalling its
    // uploads holds one slot.
    let _mine = super::Uploading::start(&state.share_uploaders, &caller)?;
    let _slot = super::upload_slot(
        &state.share_upload_slots,
        "other share contents are being uploaded; try again in a moment",
    )?;
    let announced = usize::try_from(share.size)
        .unwrap_or(0)
        .min(MAX_SEALED_BYTES);
    let content = axum::body::to_bytes(body, announced).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "a share's content is at most its announced size",
        )
    })?;
    let event = change_event(
        &state,
        &info,
        &caller,
        "share.upload",
        &id,
        [("size", content.len().into())],
    );
    if !state
        .store
        .put_share_content(&id, Vec::from(content), &proof_hash, &[event])
        .await?
    {
        return Err(invalid(
            "the content is already there, or its size is not the one announced",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/shares", responses((status = 200, body = Vec<ShareInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Share links: one's own; security and admins see all.
pub(crate) async fn list_shares(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<ShareInfo>>, ApiError> {
    let all = matches!(caller.principal.role, Role::Admin | Role::Security);
    let me = actor_id(&caller);
    Ok(Json(
        state
            .store
            .shares(if all { None } else { Some(&me) })
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/shares/{id}", params(("id" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// Revokes a share link: its content is destroyed now. Its creator, security or an admin.
pub(crate) async fn revoke_share(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let share = state.store.share(&id).await?.ok_or_else(gone)?;
    let manager = matches!(caller.principal.role, Role::Admin | Role::Security);
    if share.created_by != actor_id(&caller) && !manager {
        return Err(ApiError::not_found("no such share of yours"));
    }
    let event = change_event(&state, &info, &caller, "share.revoke", &id, []);
    if !state
        .store
        .destroy_share(&id, "revoked", state.clock.now(), &[event])
        .await?
    {
        return Err(gone());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What the recipient's page shows before opening.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ShareTeaser {
    label: String,
    needs_passphrase: bool,
    /// Whether the recipient must log in first.
    restricted: bool,
    expires_time: String,
    views_left: i64,
}

/// The stored form of a key proof.
fn proof_hash(proof: &str) -> String {
    super::sha256_hex(proof.to_ascii_lowercase().as_bytes())
}

/// A share that can be opened by whoever holds its key (shown by `proof`); an expired one
/// is destroyed on the spot. Without the right proof the link is answered as gone.
async fn live_share(state: &AppState, id: &str, proof: &str) -> Result<ShareRecord, ApiError> {
    share_for(state, id, proof).await?.map_err(|_| gone())
}

/// [`live_share`], telling apart why a link does not open: `Err(None)` for a link unknown or
/// not shown its key, `Err(Some(why))` for a link its key opened once but no longer does
/// (`used`, `expired`, `revoked`, or `maker_inactive`): only the holder of a link's key
/// learns, and records, that it is spent.
async fn share_for(
    state: &AppState,
    id: &str,
    proof: &str,
) -> Result<Result<ShareRecord, Option<String>>, ApiError> {
    // A sealed server hands nothing out, links included: sealing is the stop for everything
    // that gives data away, whoever asks and whatever the server can decrypt.
    super::secrets::unsealed(state)?;
    let Some(share) = state.store.share(id).await? else {
        return Ok(Err(None));
    };
    let given = proof_hash(proof);
    if share.proof_hash.is_empty()
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            share.proof_hash.as_bytes(),
        ))
    {
        return Ok(Err(None));
    }
    if let Some((_, why)) = &share.destroyed {
        return Ok(Err(Some(why.clone())));
    }
    if !share.has_content {
        return Ok(Err(None));
    }
    let now = state.clock.now();
    if share.expires_at <= now {
        expire(state, id, now).await?;
        return Ok(Err(Some("expired".into())));
    }
    // A link hands out what its maker shared only while the maker may act (as request
    // links and wrapped Vault answers do): disabled, past their end date, or of a vendor no
    // longer active, the link is gone, and back if they are. Offboarding destroys it.
    if share.created_by != super::governance::ROOT_ACTOR {
        let active = match state.store.acting_person(&share.created_by).await? {
            Some(maker) => state.standing(&maker).await?.active(),
            None => false,
        };
        if !active {
            return Ok(Err(Some("maker_inactive".into())));
        }
    }
    Ok(Ok(share))
}

/// The ledger entry of a share destroyed because it expired: the server's doing (`info`
/// names which part of it), whoever came by.
fn expire_event(state: &AppState, info: &RequestInfo, id: &str) -> chaperone_ledger::entry::Event {
    state.event(
        info,
        Actor::default(),
        LedgerRecord::new("share.expire", id, Outcome::Success),
    )
}

/// Destroys an expired share's content, recorded as `share.expire`; the answer to give.
async fn expire(state: &AppState, id: &str, now: Timestamp) -> Result<ApiError, ApiError> {
    let event = expire_event(state, &RequestInfo::new(None, Some("chaperone".into())), id);
    state
        .store
        .destroy_share(id, "expired", now, &[event])
        .await?;
    Ok(gone())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShareProof {
    /// The key proof (see `chaperone_crypto::share::open_proof`).
    proof: String,
}

#[utoipa::path(post, path = "/api/v1/shares/{id}/info", params(("id" = String, Path)), request_body = ShareProof, responses((status = 200, body = ShareTeaser), (status = 404, body = super::ErrorBody)))]
/// What a link holds (its label) and what opening it needs, for whoever holds its key;
/// opening is a separate step.
pub(crate) async fn share_info(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ShareProof>,
) -> Result<Json<ShareTeaser>, ApiError> {
    let share = live_share(&state, &id, &req.proof).await?;
    Ok(Json(ShareTeaser {
        label: share.label,
        needs_passphrase: share.passphrase_hash.is_some(),
        restricted: share.restricted_to.is_some(),
        expires_time: share.expires_at.to_rfc3339(),
        views_left: share.max_views - share.views,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenShare {
    /// The key proof.
    proof: String,
    passphrase: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/shares/{id}/open", params(("id" = String, Path)), request_body = OpenShare, responses((status = 200, content_type = "application/octet-stream", description = "the sealed content"), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 429, body = super::ErrorBody)))]
/// Opens a link: one view of its ciphertext (the last view destroys it). A restricted link
/// needs its recipient's TOTP-verified session as bearer token.
pub(crate) async fn open_share(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<OpenShare>,
) -> Result<Response, ApiError> {
    // A passphrase guess is counted before it is checked: to its end.
    let task_state = Arc::clone(&state);
    super::to_the_end(
        &state,
        "opening the link",
        open_share_to_the_end(task_state, info, headers, id, req),
    )
    .await
}

async fn open_share_to_the_end(
    state: Arc<AppState>,
    info: RequestInfo,
    headers: HeaderMap,
    id: String,
    req: OpenShare,
) -> Result<Response, ApiError> {
    let mut actor = Actor::default();
    let refuse = |reason: &str, actor: Actor| {
        let reason = reason.to_owned();
        let state = &state;
        let info = &info;
        let id = &id;
        async move {
            // A refusal of a caller the server does not know costs its sender nothing: it is
            // recorded within the address's budget, as a refused token is (the first of a used
            // link on this node past it: `admit_spent`).
            if !state
                .anonymous_refusals
                .admit_spent(state, &actor, info.client_ip, id, &reason)
            {
                return Ok(());
            }
            let mut record = LedgerRecord::new("share.open", id, Outcome::Denied);
            record.reasons.push(reason);
            state.record(info, actor, record).await
        }
    };
    let share = match share_for(&state, &id, &req.proof).await? {
        Ok(share) => share,
        // Its key, on a link that no longer opens: recorded, so that a recipient who finds
        // their link already used leaves a trace beside the open that used it.
        Err(Some(why)) => {
            let caller = if crate::auth::presented_token(&headers).is_some() {
                crate::auth::authenticate(&state, &headers, info.client_ip)
                    .await
                    .ok()
            } else {
                None
            };
            if let Some(c) = &caller {
                actor = c.actor();
            }
            refuse(&why, actor).await?;
            return Err(gone());
        }
        Err(None) => return Err(gone()),
    };
    if let Some(recipient) = &share.restricted_to {
        // A token that does not authenticate is no caller; a storage error or a sealed
        // server is an error, never a "someone else".
        let caller = if crate::auth::presented_token(&headers).is_some() {
            match crate::auth::authenticate(&state, &headers, info.client_ip).await {
                Ok(caller) => Some(caller),
                Err(e) if matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        // The recipient as the policy sees them now: their account and their vendor
        // active, from a network their allowlists admit. Their TOTP code is asked for next,
        // so that a recipient logged in without one (a recovery code) is told to verify.
        let allowed = caller.as_ref().is_some_and(|c| {
            c.person_id.as_deref() == Some(recipient.as_str())
                && c.principal.person == chaperone_core::policy::Standing::Active
                && c.principal.vendor != Some(chaperone_core::policy::Standing::Inactive)
                && c.principal.network_allowed
        });
        if let Some(c) = &caller {
            actor = c.actor();
        }
        if !allowed {
            refuse("not_recipient", actor).await?;
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_recipient",
                "this link is for someone else: log in as its recipient, with your TOTP code",
            ));
        }
        // Security decision: the recipient proves a code now, as for a step-up path, not
        // only at a login hours ago: a session token taken from their machine does not open
        // what was shared with them. The page logs in with a code each time, so it passes.
        let window = state
            .settings
            .auth
            .step_up_secs
            .saturating_mul(1_000_000_000);
        let fresh = caller.as_ref().is_some_and(|c| {
            chaperone_core::policy::verified_within(
                c.principal.mfa_verified_at,
                state.clock.now(),
                window,
            )
        });
        if !fresh {
            refuse("step_up_required", actor).await?;
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "step_up_required",
                "opening a link shared with you needs a recent TOTP code: run `chaperone \
                 verify`, or open the link in a browser (it asks for the code)",
            ));
        }
    }
    if let Some(hash) = &share.passphrase_hash {
        // Counted before it is checked, like a login: parallel guesses cannot slip past
        // the lockout.
        // The address counts as logins count it (IPv6: its /64), apart from them.
        let subjects = vec![
            format!("share:{id}"),
            format!("share-{}", super::auth::address_subject(info.client_ip)),
        ];
        let attempt = match state.begin_attempt(subjects).await {
            Ok(attempt) => attempt,
            Err(locked) => {
                // Recorded within the address's budget when nobody known asked (`refuse`).
                if locked.code == "locked" {
                    refuse("locked", actor.clone()).await?;
                }
                return Err(locked);
            }
        };
        let given = req.passphrase.clone().unwrap_or_default();
        let hash = hash.clone();
        // A check that did not run (its task panicked) is an error, not a wrong guess.
        let right = state
            .password_work_for(&attempt, move || {
                verify_password(&Password::new(given), &hash)
            })
            .await?;
        if !right {
            refuse("wrong_passphrase", actor.clone()).await?;
            let _slowed = state.fail(&attempt, "wrong passphrase").await;
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_passphrase",
                "the passphrase is wrong",
            ));
        }
        state.succeed(&attempt, true).await?;
    }
    let now = state.clock.now();
    let mut record = LedgerRecord::new("share.open", &id, Outcome::Success);
    record
        .details
        .insert("max_views".to_owned(), share.max_views.into());
    let actor_for_refusal = actor.clone();
    let event = state.event(&info, actor, record);
    match state.store.open_share(&id, now, &[event]).await? {
        Opened::Content { ciphertext, .. } => Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            ciphertext,
        )
            .into_response()),
        Opened::Gone => {
            // Used up (or revoked) by a racing open since it was looked at: whoever holds its
            // key is recorded, as after it.
            let why = state
                .store
                .share(&id)
                .await?
                .and_then(|s| s.destroyed.map(|(_, why)| why))
                .unwrap_or_else(|| "used".into());
            refuse(&why, actor_for_refusal).await?;
            Err(gone())
        }
        // It expired while the passphrase was checked.
        Opened::Expired => Err(expire(&state, &id, now).await?),
    }
}

/// The changes that end every link `person_id` made, for a change that ends what they hold
/// (an offboarding, a reset of their credentials): their share links lose their content,
/// each recorded as `share.revoke` with `why`, and their open request-a-secret links are
/// revoked, each recorded as `secret_request.revoke` with `why`. Also the number of links
/// ended.
pub(crate) async fn end_links_of(
    state: &AppState,
    info: &RequestInfo,
    actor: &Actor,
    person_id: &str,
    why: &str,
    now: Timestamp,
) -> Result<(Vec<Op>, Vec<chaperone_ledger::entry::Event>, usize), ApiError> {
    let (mut ops, mut events) = (Vec::new(), Vec::new());
    let ended_event = |action: &str, resource: &str, details: Vec<(&str, serde_json::Value)>| {
        let mut record = LedgerRecord::new(action, resource, Outcome::Success);
        record.details = details
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        state.event(info, actor.clone(), record)
    };
    let mut ended = 0;
    for share in state.store.shares(Some(person_id)).await? {
        // One that ran out is not alive to end: the sweep destroys it as expired.
        if share.destroyed.is_some() || share.expires_at <= now {
            continue;
        }
        ended += 1;
        events.push(ended_event(
            "share.revoke",
            &share.id,
            vec![("why", why.into())],
        ));
        ops.push(Op::DestroyShare {
            id: share.id,
            why: "revoked".into(),
            at: now,
        });
    }
    for record in state
        .store
        .records("secret_request", Some(person_id))
        .await?
    {
        let mut link: SecretRequest = body(&record)?;
        // A link being submitted is ended too: its write may still land (it was asked for
        // before this change), but a failed one no longer gives the link back. One that
        // ended already (ran out, or its token was revoked) is left as it is.
        if matches!(link_state(state, &link, now).await?, "open" | CLAIMED) {
            events.push(ended_event(
                "secret_request.revoke",
                &link.path,
                vec![("id", link_id(&record.id).into()), ("why", why.into())],
            ));
            link.status = "revoked".into();
            ops.push(Op::Put(revise(&record, &link, now)));
            ended += 1;
        }
    }
    Ok((ops, events, ended))
}

/// One more pass of [`end_links_of`] after the change that ended `person_id`'s access (and
/// revoked their tokens) committed: a link made while that change ran (read before it,
/// committed before it) is ended too, and none is made after it. The change is done, so a
/// failure here is retried (a link moving on its own meanwhile, from claimed to used) and
/// then logged, never answered.
pub(crate) async fn end_late_links_of(
    state: &AppState,
    info: &RequestInfo,
    actor: &Actor,
    person_id: &str,
    why: &str,
    now: Timestamp,
) {
    for attempt in 1..=3 {
        let pass = async {
            let (ops, events, _) = end_links_of(state, info, actor, person_id, why, now).await?;
            if !ops.is_empty() {
                state.store.apply(ops, events).await?;
            }
            Ok::<_, ApiError>(())
        };
        match pass.await {
            Ok(()) => return,
            Err(error) if error.status == StatusCode::CONFLICT && attempt < 3 => {}
            Err(error) => {
                tracing::error!(code = error.code, person = %person_id, why, "ending the links a person made while their access ended failed: run `chaperone share requests` and revoke what is open");
                return;
            }
        }
    }
}

/// Destroys the content of expired shares; how many.
pub(crate) async fn expire_shares(state: &AppState) -> Result<usize, ApiError> {
    let now = state.clock.now();
    let info = RequestInfo::new(None, Some("chaperone-sweep".into()));
    let mut destroyed = 0;
    for id in state.store.expired_shares(now).await? {
        let event = expire_event(state, &info, &id);
        if state
            .store
            .destroy_share(&id, "expired", now, &[event])
            .await?
        {
            destroyed += 1;
        }
    }
    Ok(destroyed)
}

// ---------------------------------------------------------------------------------------
// Request-a-secret links

/// A request-a-secret link as stored (under the SHA-256 of its token).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct SecretRequest {
    pub(crate) path: String,
    pub(crate) note: String,
    pub(crate) created_by: String,
    pub(crate) expires_time: String,
    #[schema(value_type = i64)]
    pub(crate) expires_nanos: i64,
    /// open, claimed (a submission is being written), used or revoked.
    pub(crate) status: String,
    /// The path's version when the link was made (0: none): the outsider's write must come
    /// next, so a leaked link cannot overwrite a secret someone wrote since.
    pub(crate) after_version: u64,
    /// The API token the link was made with (none for a login session, and on links made
    /// before it was kept). Revoking it ends the link: a stolen API token, once revoked,
    /// leaves no way to write behind it. A session ends every day and at each logout, which
    /// must not end the links its person made; a stolen session is answered by a reset,
    /// which ends them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) made_with: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSecretRequest {
    /// What to ask for, shown on the page (`the production API key for the billing service`).
    note: String,
    /// How long the link works: `72h` by default, at most `30d`.
    expires: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SecretRequestLink {
    /// `/r#<token>`: shown once; the server keeps only its SHA-256. The token is in the
    /// fragment, which browsers never send: proxies and server logs see only `/r`, and the
    /// page removes it from the address bar and sends it in a POST body.
    path: String,
    expires_time: String,
}

fn token_key(token: &str) -> String {
    super::sha256_hex(token.as_bytes())
}

#[utoipa::path(post, path = "/api/v1/secret-requests/{path}", params(("path" = String, Path, description = "where the secret will be written")), request_body = NewSecretRequest, responses((status = 200, body = SecretRequestLink), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Makes a one-time link through which someone without an account writes one secret into
/// `path` (the caller must be allowed to write there).
pub(crate) async fn create_secret_request(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(req): ApiJson<NewSecretRequest>,
) -> Result<Json<SecretRequestLink>, ApiError> {
    let path = SecretPath::parse(&path)?;
    if req.note.trim().is_empty() || req.note.len() > 500 {
        return Err(invalid("say what you ask for in 1 to 500 characters"));
    }
    super::check_text("note", &req.note, 500)?;
    let ttl = match &req.expires {
        Some(text) => parse_duration(text).map_err(invalid)?,
        None => 72 * 3600,
    };
    if ttl > MAX_TTL {
        return Err(invalid("a request link works for at most 30 days"));
    }
    let mut raw = [0u8; 32];
    chaperone_crypto::random_bytes(&mut raw);
    use base64::Engine;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let now = state.clock.now();
    let expires = now.plus_secs(ttl);
    let after_version = state
        .store
        .metadata(&path)
        .await?
        .map_or(0, |m| m.current_version);
    let request = SecretRequest {
        path: path.as_str().to_owned(),
        note: req.note.clone(),
        created_by: actor_id(&caller),
        expires_time: expires.to_rfc3339(),
        expires_nanos: expires.unix_nanos(),
        status: "open".into(),
        after_version,
        made_with: (caller.kind == TokenKind::Api).then(|| caller.token_id.clone()),
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "secret_request.create",
        path.as_str(),
        [
            ("note", req.note.into()),
            ("expires_time", expires.to_rfc3339().into()),
        ],
    );
    // Stored only while the maker's token is live: a reset or a disable that revoked it
    // meanwhile (and ended the links it saw) leaves none made after it.
    state
        .store
        .apply(
            vec![
                Op::RequireLiveToken(caller.token_id.clone()),
                Op::Put(new_record(
                    "secret_request",
                    token_key(&token),
                    Some(request.created_by.clone()),
                    &request,
                    now,
                )),
            ],
            vec![event],
        )
        .await?;
    Ok(Json(SecretRequestLink {
        path: format!("/r#{token}"),
        expires_time: expires.to_rfc3339(),
    }))
}

/// A request-a-secret link as its maker (or security) sees it: never its token.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RequestLinkInfo {
    /// The first 16 hex digits of the token's SHA-256, as the ledger names the link
    /// (`secret-request:<id>`).
    id: String,
    path: String,
    note: String,
    created_by: String,
    expires_time: String,
    /// open, claimed (a submission is being written), used, revoked or expired.
    status: String,
}

/// The status of a request link while a submission through it is written: no other
/// submission opens it, and whatever ends the link's maker's links ends it too.
const CLAIMED: &str = "claimed";

/// A request link's state as of `now`: `open` or `claimed` while it may still be used,
/// else `expired` (it ran out), `revoked` (revoked, or the API token it was made with was:
/// see [`SecretRequest::made_with`]) or `used`.
async fn link_state(
    state: &AppState,
    link: &SecretRequest,
    now: Timestamp,
) -> Result<&'static str, ApiError> {
    let stored = match link.status.as_str() {
        "open" => "open",
        CLAIMED => CLAIMED,
        "used" => return Ok("used"),
        _ => return Ok("revoked"),
    };
    if link.expires_nanos <= now.unix_nanos() {
        return Ok("expired");
    }
    if let Some(id) = &link.made_with {
        let revoked = state
            .store
            .token_by_id(id)
            .await?
            .is_none_or(|token| token.revoked_at.is_some());
        if revoked {
            return Ok("revoked");
        }
    }
    Ok(stored)
}

/// The public id of a link stored under `key` (its token's SHA-256).
fn link_id(key: &str) -> &str {
    &key[..16.min(key.len())]
}

/// The request links `caller` may see and revoke: their own; security and admins, all.
async fn request_links(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<(chaperone_store::Record, SecretRequest)>, ApiError> {
    let all = matches!(caller.principal.role, Role::Admin | Role::Security);
    let me = actor_id(caller);
    state
        .store
        .records("secret_request", if all { None } else { Some(&me) })
        .await?
        .into_iter()
        .map(|record| {
            let request: SecretRequest = body(&record)?;
            Ok((record, request))
        })
        .collect()
}

#[utoipa::path(get, path = "/api/v1/request-links", responses((status = 200, body = Vec<RequestLinkInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Request-a-secret links: one's own; security and admins, everyone's.
pub(crate) async fn list_request_links(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<RequestLinkInfo>>, ApiError> {
    let now = state.clock.now();
    let mut links = Vec::new();
    for (record, r) in request_links(&state, &caller).await? {
        let status = link_state(&state, &r, now).await?.to_owned();
        links.push(RequestLinkInfo {
            id: link_id(&record.id).to_owned(),
            status,
            path: r.path,
            note: r.note,
            created_by: r.created_by,
            expires_time: r.expires_time,
        });
    }
    links.sort_by(|a, b| b.expires_time.cmp(&a.expires_time));
    Ok(Json(links))
}

#[utoipa::path(delete, path = "/api/v1/request-links/{id}", params(("id" = String, Path)), responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)), security(("bearer" = [])))]
/// Revokes an open request link at once (a leaked one, one no longer needed): its maker,
/// security or an admin.
pub(crate) async fn revoke_request_link(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut found: Vec<_> = request_links(&state, &caller)
        .await?
        .into_iter()
        .filter(|(record, _)| id.len() == 16 && link_id(&record.id) == id)
        .collect();
    let (Some((record, mut request)), None) = (found.pop(), found.pop()) else {
        return Err(ApiError::not_found("no such request link of yours"));
    };
    let now = state.clock.now();
    let current = link_state(&state, &request, now).await?;
    if !matches!(current, "open" | CLAIMED) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_open",
            format!("the link is {current}"),
        ));
    }
    request.status = "revoked".into();
    let event = change_event(
        &state,
        &info,
        &caller,
        "secret_request.revoke",
        &request.path,
        [("id", id.clone().into())],
    );
    state
        .store
        .apply(vec![Op::Put(revise(&record, &request, now))], vec![event])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SecretRequestView {
    /// The maker's own words.
    note: String,
    expires_time: String,
    /// Who made the link: their name, or `an administrator` for a token of no person.
    asked_by: String,
    /// The maker's vendor when they are outside the business. The page says so: the note is
    /// theirs, and what is submitted goes where they can read it.
    vendor: Option<String>,
}

async fn open_request(
    state: &AppState,
    token: &str,
) -> Result<(chaperone_store::Record, SecretRequest), ApiError> {
    // Sealed: no link answers, not even with its note.
    super::secrets::unsealed(state)?;
    let record = state
        .store
        .record("secret_request", &token_key(token))
        .await?
        .ok_or_else(gone)?;
    let request: SecretRequest = body(&record)?;
    if link_state(state, &request, state.clock.now()).await? != "open" {
        return Err(gone());
    }
    Ok((record, request))
}

#[utoipa::path(post, path = "/api/v1/request-links/info", request_body = super::LinkToken, responses((status = 200, body = SecretRequestView), (status = 404, body = super::ErrorBody)))]
/// What a request-a-secret link asks for (never the path it writes to).
pub(crate) async fn show_secret_request(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(link): ApiJson<super::LinkToken>,
) -> Result<Json<SecretRequestView>, ApiError> {
    let (_, request) = open_request(&state, &link.token).await?;
    // A link its maker could not write through shows no form either, so that nobody types
    // a secret into a page that will then refuse it (the submission records the refusal).
    if request.created_by != super::governance::ROOT_ACTOR {
        let path = SecretPath::parse(&request.path)?;
        let decision = state
            .maker_decision(
                &request.created_by,
                Action::SecretWrite,
                &path,
                info.client_ip,
                false,
            )
            .await?;
        if !decision.allowed {
            return Err(gone());
        }
    }
    // Security decision: the page names who asks. A contractor may make request links for
    // the paths they may write, and the page is the business's own: without the name, a
    // note like "paste the production database password" would read as the business
    // asking.
    let maker = match request.created_by.as_str() {
        super::governance::ROOT_ACTOR => None,
        id => Some(state.store.acting_person(id).await?.ok_or_else(gone)?),
    };
    let vendor = match maker.as_ref().and_then(|p| p.vendor_id.as_deref()) {
        Some(id) => Some(
            state
                .store
                .vendor(id)
                .await?
                .map_or_else(|| id.to_owned(), |v| v.name),
        ),
        None => None,
    };
    Ok(Json(SecretRequestView {
        note: request.note,
        expires_time: request.expires_time,
        asked_by: maker.map_or_else(|| "an administrator".to_owned(), |p| p.name),
        vendor,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretSubmission {
    /// The link's token (the part after `#`).
    token: String,
    /// The secret's fields (`{"api_key": "..."}`).
    data: std::collections::BTreeMap<String, String>,
}

/// The link acts for whoever made it, with what they may do at the moment it is used: a
/// maker whose account or vendor was disabled, whose grant was revoked or ran out, or whose
/// vendor no longer meets the path's compliance gate cannot write through it either. The
/// policy decides as for the maker writing the path themselves, except for where the request
/// comes from: the maker's own allowlists bound where they act from, and the submitter is
/// someone else, so only the path's level's networks are held against the submitter's
/// address. A refusal is recorded and answered as a dead link (404); the link stays open, so
/// a renewed grant revives it. Links made by tokens of no person (the initial admin's) have
/// no standing to lose.
async fn maker_may_write(
    state: &AppState,
    info: &RequestInfo,
    request: &SecretRequest,
    path: &SecretPath,
) -> Result<(), ApiError> {
    if request.created_by == super::governance::ROOT_ACTOR {
        return Ok(());
    }
    let decision = state
        .maker_decision(
            &request.created_by,
            Action::SecretWrite,
            path,
            info.client_ip,
            false,
        )
        .await?;
    if decision.allowed {
        return Ok(());
    }
    let mut refused = LedgerRecord::denied("secret_request.submit", path.as_str(), &decision);
    refused
        .details
        .insert("requested_by".into(), json!(request.created_by));
    state.record(info, Actor::default(), refused).await?;
    Err(gone())
}

#[utoipa::path(post, path = "/api/v1/request-links/submit", request_body = SecretSubmission, responses((status = 204), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
/// Writes the submitted secret into the requested path, once.
pub(crate) async fn submit_secret_request(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(mut req): ApiJson<SecretSubmission>,
) -> Result<StatusCode, ApiError> {
    let token = std::mem::take(&mut req.token);
    // A sealed server can write nothing: refuse before the link is touched.
    super::secrets::unsealed(&state)?;
    let (record, mut request) = open_request(&state, &token).await?;
    if req.data.is_empty() || req.data.values().all(String::is_empty) {
        return Err(invalid("submit at least one non-empty field"));
    }
    let path = SecretPath::parse(&request.path)?;
    maker_may_write(&state, &info, &request, &path).await?;
    let plaintext = zeroize::Zeroizing::new(
        serde_json::to_vec(&req.data).expect("a string map always serialises"),
    );
    drop(req);
    // Claim, write and give back run to the end in a task of their own: a client that
    // hangs up, or the request timeout, drops this handler, and must not leave the link
    // claimed with nothing written.
    let task = tokio::spawn(async move {
        // Claim the link first (a racing second submission fails on the revision), then write;
        // if the write fails, the claim is given back, so the secret is never lost with the
        // link. The write records `secret.write`; `secret_request.submit` follows it.
        // Both the give-back and the final `used` revise the claim: a link revoked meanwhile
        // (by its maker, a reset or an offboarding) stays revoked.
        let now = state.clock.now();
        request.status = CLAIMED.into();
        let claimed = revise(&record, &request, now);
        // Claimed only while the API token it was made with is live: a revocation that
        // committed since the link was looked at ends it here.
        let mut claim: Vec<Op> = request
            .made_with
            .iter()
            .map(|id| Op::RequireLiveToken(id.clone()))
            .collect();
        claim.push(Op::Put(claimed.clone()));
        state
            .store
            .apply(claim, Vec::new())
            .await
            .map_err(|e| match e {
                chaperone_store::StoreError::Conflict(_) => gone(),
                other => other.into(),
            })?;
        let actor = Actor {
            person: None,
            vendor: None,
            token: Some(format!("secret-request:{}", &token_key(&token)[..16])),
        };
        let written = super::secrets::write_version(
            &state,
            actor,
            &info,
            &path,
            Cas::Version(request.after_version),
            plaintext,
        )
        .await;
        let written = match written {
            Ok(written) => {
                request.status = "used".into();
                let done = revise(&claimed, &request, state.clock.now());
                match state.store.apply(vec![Op::Put(done)], Vec::new()).await {
                    Ok(_) | Err(chaperone_store::StoreError::Conflict(_)) => {}
                    // The value is written and recorded; the link stays claimed, which no
                    // submission opens.
                    Err(error) => {
                        tracing::warn!(%error, "a used request link could not be marked used");
                    }
                }
                written.meta
            }
            Err(error) => {
                request.status = "open".into();
                let _ = state
                    .store
                    .apply(
                        vec![Op::Put(revise(&claimed, &request, state.clock.now()))],
                        Vec::new(),
                    )
                    .await;
                return Err(if error.code == "cas_mismatch" {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        "changed_meanwhile",
                        "the secret was changed since this link was made; ask for a new link",
                    )
                } else {
                    error
                });
            }
        };
        let mut used = LedgerRecord::new("secret_request.submit", path.as_str(), Outcome::Success);
        used.details
            .insert("requested_by".into(), json!(request.created_by));
        used.details
            .insert("version".into(), json!(written.version));
        state.record(&info, Actor::default(), used).await?;
        tracing::info!(path = %path, version = written.version, "secret submitted through a request link");
        Ok::<_, ApiError>(())
    });
    task.await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the submission did not complete",
        )
    })??;
    Ok(StatusCode::NO_CONTENT)
}
