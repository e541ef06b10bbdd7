//! Response wrapping: `X-Vault-Wrap-TTL` on a request turns its answer into a single-use
//! wrapping token; `sys/wrapping/unwrap` hands the answer out once, `sys/wrapping/lookup`
//! describes it, `sys/wrapping/wrap` wraps data the caller gives.
//!
//! The answer is sealed under the keyring (purpose `wrapped-response`, bound to the wrapping
//! token's accessor) and stored with the SHA-256 of the token, never the token. Taking it
//! deletes it in the same transaction as its ledger entry (`wrap.unwrap`), so a second
//! unwrap finds nothing. Creating one is recorded as `wrap.create`, by the caller.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chaperone_core::SecretPath;
use chaperone_core::policy::Decision;
use chaperone_crypto::token::ApiToken;
use chaperone_ledger::entry::{Actor, Outcome};
use chaperone_store::{StoreError, WrapQuota, WrappedRecord};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::{envelope, errors, reply};
use crate::api::ApiJson;
use crate::api::secrets::unsealed;
use crate::auth::{Caller, presented_token};
use crate::record::{Record, RequestInfo};
use crate::{ApiError, AppState};

/// The keyring purpose wrapped answers are sealed for.
pub(crate) const PURPOSE: &str = "wrapped-response";
const INVALID: &str = "wrapping token is not valid or does not exist";

/// A wrap TTL as Vault clients send it: seconds (`300`) or a duration (`5m`, `5m0s`).
/// Zero or blank means unset (the answer is not wrapped), as for OpenBao.
pub(crate) fn parse_ttl(text: &str, max_secs: i64) -> Result<Option<i64>, String> {
    // A header's value comes without the spaces around it.
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match duration(text)? {
        0 => Ok(None),
        secs if secs > max_secs => Err(format!(
            "the wrap TTL is longer than the {max_secs} s the server allows"
        )),
        secs => Ok(Some(secs)),
    }
}

/// A duration as Vault clients send it, in seconds: a bare number of seconds (`3600`), or
/// Go's form (`time.ParseDuration`, which OpenBao reads them with): number-unit pairs,
/// each number with an optional fraction, units `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`, and
/// `d` as OpenBao also takes (`10m0s`, `1h30m`, `1.5h`, `0s`). Zero is a duration (clients
/// send `0s` for "unset"). A leading `+` is allowed, as in Go; spaces and negative
/// durations are refused, as OpenBao refuses them.
///
/// Security decision: a part of a second is dropped, except that a duration under one
/// second counts as one second. Zero means "unset", which for a token is the server's
/// maximum: `500ms` must not become the longest TTL there is.
pub(crate) fn duration(text: &str) -> Result<i64, String> {
    const SECOND: u128 = 1_000_000_000;
    let bad = || format!("`{text}` is not a duration like 300, 5m, 1.5h or 1h30m0s");
    if let Ok(secs) = text.parse::<i64>() {
        return u64::try_from(secs).map(|_| secs).map_err(|_| bad());
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.is_empty() {
        return Err(bad());
    }
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let (whole, after) = rest.split_at(digits(rest));
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => after.split_at(digits(after)),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(bad());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let per: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => SECOND,
            "m" => 60 * SECOND,
            "h" => 3_600 * SECOND,
            "d" => 86_400 * SECOND,
            _ => return Err(bad()),
        };
        let whole: u128 = match whole {
            "" => 0,
            whole => whole.parse().map_err(|_| bad())?,
        };
        let mut part = whole.checked_mul(per).ok_or_else(bad)?;
        // Each digit of the fraction is worth a tenth of the one before; digits past a
        // nanosecond add nothing.
        let mut scale = per;
        for digit in fraction.bytes() {
            scale /= 10;
            part = part
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(bad)?;
        }
        nanos = nanos.checked_add(part).ok_or_else(bad)?;
        rest = next;
    }
    let secs = match nanos / SECOND {
        0 if nanos > 0 => 1,
        secs => secs,
    };
    i64::try_from(secs).map_err(|_| bad())
}

/// The most one person's stored wrapped responses (not unwrapped, not yet removed by the
/// sweep) may be, and hold; the tokens of no person share one such quota.
///
/// Security decision: a wrapped response is kept until it is unwrapped or its TTL ends (up
/// to the longest token TTL), and any token may wrap (a contractor's included), so without
/// a bound one account could fill the database's disk; and every request, reads included,
/// needs a ledger entry written to that disk. A wrapping hands one answer to one system or
/// person: ten thousand waiting at once, or 256 MiB (as for share links), is far past what
/// that needs.
const WRAP_QUOTA: WrapQuota = WrapQuota {
    count: 10_000,
    bytes: 256 * 1024 * 1024,
};

/// Wrapped responses removed by one change (one `wrap.expire` entry) at most.
const EXPIRE_PER_CHANGE: u32 = 500;
/// Changes of [`EXPIRE_PER_CHANGE`] one sweep makes at most; the next sweep takes the rest.
const EXPIRE_CHANGES_PER_SWEEP: usize = 40;

/// Removes wrapped responses that expired unopened (by the sweep), recording
/// `wrap.expire` with their accessors; returns how many. Without it, wrapped responses
/// nobody unwraps would stay stored, sealed, for good (and count against their maker's
/// quota, see [`WRAP_QUOTA`]).
pub(crate) async fn expire(
    state: &AppState,
    info: &RequestInfo,
    now: chaperone_core::Timestamp,
) -> Result<usize, ApiError> {
    let mut total = 0;
    for _ in 0..EXPIRE_CHANGES_PER_SWEEP {
        let record = Record::new("wrap.expire", "sys/wrapping", Outcome::Success);
        let mut event = state.event(info, Actor::default(), record);
        let removed = state
            .store
            .purge_expired_wrapped(now, EXPIRE_PER_CHANGE, move |accessors| {
                event.details.insert("accessors".into(), json!(accessors));
                vec![event]
            })
            .await?;
        total += removed.len();
        if removed.len() < EXPIRE_PER_CHANGE as usize {
            break;
        }
    }
    Ok(total)
}

/// Wraps `body` (the answer of `creation_path`, with `status`) for `ttl` seconds: stores it
/// sealed, records `wrap.create`, and answers with `wrap_info` only (200).
pub(crate) async fn wrap(
    state: &AppState,
    info: &RequestInfo,
    actor: Actor,
    creation_path: &str,
    ttl: i64,
    status: StatusCode,
    body: &[u8],
) -> Result<Response, ApiError> {
    let keyring = unsealed(state)?;
    let token = ApiToken::generate();
    let accessor = crate::api::auth::new_id("wrap");
    let now = state.clock.now();
    let record = WrappedRecord {
        hash: token.hash(),
        accessor: accessor.clone(),
        sealed: keyring.seal_field(PURPOSE, &accessor, body),
        creation_path: creation_path.to_owned(),
        created_at: now,
        expires_at: now.plus_secs(ttl),
        created_by: actor.person.clone(),
        status: status.as_u16(),
    };
    let mut event = Record::new("wrap.create", creation_path, Outcome::Success);
    event
        .details
        .insert("accessor".into(), accessor.clone().into());
    event.details.insert("ttl".into(), ttl.into());
    // A wrapped error (a read of a deleted version, 404) says so: no secret was handed out.
    if status != StatusCode::OK {
        event
            .details
            .insert("status".into(), status.as_u16().into());
    }
    let event = state.event(info, actor, event);
    let made_with = event.actor.token.clone();
    match state
        .store
        .insert_wrapped(&record, &[event], made_with.as_deref(), Some(WRAP_QUOTA))
        .await
    {
        Err(StoreError::Conflict(message)) if message.starts_with(chaperone_store::WRAP_QUOTA) => {
            return Err(ApiError::bad_request(
                "wrap_quota",
                "your live wrapped responses would be more than 10,000 or hold more than 256 \
                 MiB: unwrap them, or wrap for a shorter time",
            ));
        }
        other => other?,
    }
    let mut wrap_info = json!({
        "token": token.expose(),
        "accessor": accessor,
        "ttl": ttl,
        "creation_time": now.to_rfc3339(),
        "creation_path": shown_path(creation_path),
    });
    // A wrapped token (a login, a token made) names the token's accessor, as Vault's does,
    // so that it can be tracked or revoked without unwrapping it.
    if creation_path.starts_with("auth/")
        && let Ok(answer) = serde_json::from_slice::<Value>(body)
        && let Some(wrapped) = answer["auth"]["accessor"].as_str()
    {
        wrap_info["wrapped_accessor"] = wrapped.into();
    }
    Ok(reply(
        StatusCode::OK,
        &json!({
            "request_id": "",
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": null,
            "wrap_info": wrap_info,
            "warnings": null,
            "auth": null,
        }),
    ))
}

/// A creation path as clients see it: a listing, stored under its route (`secret/list/P`),
/// is shown as the request that made it (`secret/metadata/P/`), which clients check before
/// they unwrap.
fn shown_path(creation_path: &str) -> String {
    match listed_prefix(creation_path) {
        Some("") => "secret/metadata/".to_owned(),
        Some(prefix) => format!("secret/metadata/{}/", prefix.trim_end_matches('/')),
        None => creation_path.to_owned(),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct TokenBody {
    token: Option<Zeroizing<String>>,
}

/// The wrapping token: `{"token": ...}` in the body, else the request's token header.
///
/// A token in the body is no credential a page elsewhere could not send: a browser's
/// request from another site is refused before it gets here (`api::from_elsewhere`).
fn wrapping_token(headers: &HeaderMap, body: &[u8]) -> Option<Zeroizing<String>> {
    let from_body = serde_json::from_slice::<TokenBody>(body)
        .ok()
        .and_then(|b| b.token)
        .filter(|t| !t.is_empty());
    from_body.or_else(|| presented_token(headers))
}

/// The refusal, if any, of handing out an answer its maker wrapped. Security decision: a
/// wrapping token is a bearer credential, but it acts for its maker. What they wrapped from a
/// secret's `data/` or `metadata/` route is handed out only while the policy would still let
/// them read (or list) that path: their standing and their vendor's, a grant that still
/// covers it, the continuous gate and the path's level's networks (against the unwrapper's
/// address), as at a read of their own now. Their step-up is not asked again: the read was
/// made, step-up included, when it was wrapped. Anything else they wrapped (a token, data of
/// their own) is handed out while they and their vendor are active, and a listing while
/// they could still list its folder. Answers wrapped by
/// tokens of no person, or before the maker was kept, have no maker to lose.
async fn maker_refusal(
    state: &AppState,
    record: &WrappedRecord,
    client: Option<std::net::IpAddr>,
) -> Result<Option<Decision>, ApiError> {
    use chaperone_core::policy::{Action, Reason, Standing};
    let Some(maker) = record.created_by.as_deref() else {
        return Ok(None);
    };
    let secret = [
        ("secret/data/", Action::SecretRead),
        ("secret/metadata/", Action::SecretList),
    ]
    .into_iter()
    .find_map(|(prefix, action)| {
        record
            .creation_path
            .strip_prefix(prefix)
            .map(|path| (action, path))
    });
    let decision = if let Some((action, path)) = secret {
        match SecretPath::parse(path) {
            Ok(path) => {
                state
                    .maker_decision(maker, action, &path, client, true)
                    .await?
            }
            // It was read under this path, so it parsed then: whatever changed, fail closed.
            Err(_) => Decision::deny(Reason::NotPermitted),
        }
    } else {
        let Some(person) = state.store.acting_person(maker).await? else {
            return Ok(Some(Decision::deny(Reason::PersonInactive)));
        };
        let standing = state.standing(&person).await?;
        if standing.person == Standing::Inactive {
            Decision::deny(Reason::PersonInactive)
        } else if standing.vendor == Some(Standing::Inactive) {
            Decision::deny(Reason::VendorInactive)
        } else if let Some(prefix) = listed_prefix(&record.creation_path) {
            // A listing (`LIST secret/metadata/P`, stored as its `secret/list/P` route) is
            // handed out while the maker could still list that folder, as a listing decides
            // (and with only the keys they may still see: `MakerView::keep_listed`).
            let folder = format!("{}/", prefix.trim_end_matches('/'));
            if MakerView::of(state, &person, client)
                .await?
                .shows(state, &folder)
                .await?
            {
                return Ok(None);
            }
            Decision::deny(Reason::NotPermitted)
        } else {
            return Ok(None);
        }
    };
    Ok((!decision.allowed).then_some(decision))
}

/// For a wrapped KV read that handed out a value: the version it holds, which is handed out
/// again only while it is still readable (checked in the change that takes the wrapping,
/// `Store::take_wrapped`, so that a delete or destroy committed first on any node is seen).
/// Security decision: a wrapped value is a read made later, so a version deleted or destroyed
/// since is not handed out (OpenBao hands it out; here destroy means the value is gone, from
/// wrappings too). A later undelete does not bring back the wrapping, which was consumed by
/// the refused attempt. An answer that does not say which version it holds is refused.
fn held_version(
    record: &WrappedRecord,
    answer: &Value,
) -> Result<Option<chaperone_store::HeldVersion>, ApiError> {
    let Some(path) = record.creation_path.strip_prefix("secret/data/") else {
        return Ok(None);
    };
    // A wrapped 404 (a read of a deleted version) holds no value.
    if record.status != 200 || answer["data"]["data"].is_null() {
        return Ok(None);
    }
    let metadata = &answer["data"]["metadata"];
    let held = metadata["version"].as_u64().zip(
        metadata["created_time"]
            .as_str()
            .and_then(|t| chaperone_core::governance::parse_date(t).ok()),
    );
    let Some((version, created_at)) = held else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "integrity",
            "a wrapped read does not say which version it holds",
        ));
    };
    Ok(Some(chaperone_store::HeldVersion {
        path: path.to_owned(),
        version,
        created_at,
    }))
}

/// What a listing would show a wrapping's maker now.
struct MakerView {
    principal: chaperone_core::policy::Principal,
    person_id: String,
    vendor_id: Option<String>,
    client: Option<std::net::IpAddr>,
    listing: crate::api::secrets::Listing,
}

impl MakerView {
    async fn of(
        state: &AppState,
        person: &chaperone_store::PersonRecord,
        client: Option<std::net::IpAddr>,
    ) -> Result<Self, ApiError> {
        // Where the maker asked from was checked when they wrapped; the unwrapper's address
        // is checked by the levels' networks below.
        let mut principal = state.person_principal(person, None).await?;
        principal.network_allowed = true;
        Ok(Self {
            principal,
            person_id: person.id.clone(),
            vendor_id: person.vendor_id.clone(),
            client,
            listing: crate::api::secrets::Listing::new(state).await?,
        })
    }

    async fn shows(&mut self, state: &AppState, path: &str) -> Result<bool, ApiError> {
        self.listing
            .shows_to(
                state,
                &self.principal,
                (Some(&self.person_id), self.vendor_id.as_ref()),
                self.client,
                path,
            )
            .await
    }

    /// Leaves out of a wrapped listing of `prefix` the keys its maker may no longer see (a
    /// grant on one of them revoked since), as a listing made now would: a long wrap TTL
    /// does not outlive the access it was made under.
    async fn keep_listed(
        &mut self,
        state: &AppState,
        prefix: &str,
        answer: &mut Value,
    ) -> Result<(), ApiError> {
        let Some(keys) = answer["data"]["keys"].as_array().cloned() else {
            return Ok(());
        };
        let folder = match prefix.trim_end_matches('/') {
            "" => String::new(),
            prefix => format!("{prefix}/"),
        };
        let mut kept = Vec::new();
        for key in keys {
            if let Some(name) = key.as_str()
                && self.shows(state, &format!("{folder}{name}")).await?
            {
                kept.push(key);
            }
        }
        answer["data"]["keys"] = Value::Array(kept);
        Ok(())
    }
}

/// The folder a wrapped listing was made from (`""` for the root), if it was one.
fn listed_prefix(creation_path: &str) -> Option<&str> {
    if creation_path == "secret/list" {
        return Some("");
    }
    creation_path.strip_prefix("secret/list/")
}

/// Who unwraps, for the ledger: whoever the token the request carries besides the wrapping
/// token in its body authenticates, as any route would (live, its session not idle, its
/// parent live, an active account acting from an allowed network), else no one. Unwrapping
/// needs no token of one's own, as in OpenBao, but whoever shows one is named with what
/// they received.
async fn unwrapper(
    state: &AppState,
    headers: &HeaderMap,
    wrapping: &str,
    peer: std::net::IpAddr,
) -> Actor {
    if presented_token(headers).is_none_or(|own| own.as_str() == wrapping) {
        return Actor::default();
    }
    match crate::auth::authenticate_known(state, headers, Some(peer)).await {
        Ok(caller)
            if caller.principal.network_allowed
                && caller.principal.person == chaperone_core::policy::Standing::Active =>
        {
            caller.actor()
        }
        _ => Actor::default(),
    }
}

/// A token that was a wrapping once, spent since: whoever presents it is recorded (the
/// recipient of a wrapping someone else unwrapped first leaves a trace, and the watch raises
/// `link_reused`). A token never made is answered alike, and not recorded.
async fn record_spent(
    state: &AppState,
    info: &RequestInfo,
    headers: &HeaderMap,
    token: &str,
    peer: std::net::IpAddr,
    hash: &chaperone_crypto::token::TokenHash,
) -> Result<(), ApiError> {
    let Some(spent) = state.store.spent_wrapping(hash, state.clock.now()).await? else {
        return Ok(());
    };
    let actor = unwrapper(state, headers, token, peer).await;
    if !state.anonymous_refusals.admit_spent(
        state,
        &actor,
        info.client_ip,
        &spent.accessor,
        &spent.why,
    ) {
        return Ok(());
    }
    let mut event = Record::new("wrap.unwrap", &spent.creation_path, Outcome::Denied);
    event.reasons.push(spent.why.clone());
    event
        .details
        .insert("accessor".into(), spent.accessor.clone().into());
    event
        .details
        .insert("spent_time".into(), spent.spent_at.to_rfc3339().into());
    state.record(info, actor, event).await
}

/// `POST sys/wrapping/unwrap`: the wrapped answer, once.
pub(crate) async fn unwrap(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let keyring = unsealed(&state)?;
    // No token at all is refused as OpenBao refuses it (403); a token that names nothing is
    // a 400, below.
    let Some(token) = wrapping_token(&headers, &body) else {
        return Ok(errors(
            StatusCode::FORBIDDEN,
            "error validating wrapping token: token is empty",
        ));
    };
    let hash = ApiToken::from_presented(&token).hash();
    let now = state.clock.now();
    let Some(found) = state.store.wrapped(&hash, now).await? else {
        record_spent(&state, &info, &headers, &token, peer.ip(), &hash).await?;
        return Ok(errors(StatusCode::BAD_REQUEST, INVALID));
    };
    // Opened before it is taken, to see which version a wrapped read holds.
    let plain = keyring.open_field(PURPOSE, &found.accessor, &found.sealed)?;
    let mut answer: Value = serde_json::from_slice(plain.expose()).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "integrity",
            "a wrapped answer decrypted to something that is not JSON",
        )
    })?;
    let held = held_version(&found, &answer)?;
    let refused = maker_refusal(&state, &found, info.client_ip).await?;
    let refusal = refused.clone();
    let recorder = Arc::clone(&state);
    let request = info.clone();
    let unwrapper = unwrapper(&state, &headers, &token, peer.ip()).await;
    let taken = state
        .store
        .take_wrapped(&hash, now, refused.is_some(), held, move |record, gone| {
            let mut event = match (&refusal, gone) {
                (Some(decision), _) => {
                    Record::denied("wrap.unwrap", &record.creation_path, decision)
                }
                (None, Some(gone)) => {
                    let mut event =
                        Record::new("wrap.unwrap", &record.creation_path, Outcome::Denied);
                    event.reasons.push(gone.code().to_owned());
                    event
                }
                (None, None) => Record::new("wrap.unwrap", &record.creation_path, Outcome::Success),
            };
            event
                .details
                .insert("accessor".into(), record.accessor.clone().into());
            vec![recorder.event(&request, unwrapper, event)]
        })
        .await?;
    let Some((record, gone)) = taken else {
        // Taken by a racing unwrap since it was looked at: spent now, and recorded so.
        record_spent(&state, &info, &headers, &token, peer.ip(), &hash).await?;
        return Ok(errors(StatusCode::BAD_REQUEST, INVALID));
    };
    // A wrapping its maker could no longer read, or of a version deleted or destroyed since,
    // is dead: taken (so it cannot be tried again), recorded as denied, and answered as one
    // that does not exist.
    if refused.is_some() || gone.is_some() {
        return Ok(errors(StatusCode::BAD_REQUEST, INVALID));
    }
    if let (Some(prefix), Some(maker)) = (
        listed_prefix(&record.creation_path),
        record.created_by.as_deref(),
    ) && let Some(person) = state.store.acting_person(maker).await?
    {
        MakerView::of(&state, &person, info.client_ip)
            .await?
            .keep_listed(&state, prefix, &mut answer)
            .await?;
    }
    // The status the answer had: a wrapped read of a deleted version unwraps as its 404.
    let status = StatusCode::from_u16(record.status).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "integrity",
            "a wrapped answer's status is no HTTP status",
        )
    })?;
    Ok(reply(status, &answer))
}

/// `POST sys/wrapping/lookup`: when and where a wrapping token was made.
pub(crate) async fn lookup(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // Sealed, the server answers nothing about what it holds, as OpenBao does (503).
    unsealed(&state)?;
    let Some(token) = wrapping_token(&headers, &body) else {
        return Ok(errors(StatusCode::BAD_REQUEST, INVALID));
    };
    let hash = ApiToken::from_presented(&token).hash();
    let Some(record) = state.store.wrapped(&hash, state.clock.now()).await? else {
        return Ok(errors(StatusCode::BAD_REQUEST, INVALID));
    };
    let ttl = record.expires_at.unix_secs() - record.created_at.unix_secs();
    Ok(reply(
        StatusCode::OK,
        &envelope(
            &info,
            json!({
                "creation_path": shown_path(&record.creation_path),
                "creation_time": record.created_at.to_rfc3339(),
                "creation_ttl": ttl,
            }),
        ),
    ))
}

/// `POST sys/wrapping/wrap`: wraps the JSON object given (the `X-Vault-Wrap-TTL` header is
/// required; the wrapping itself happens in `compat`, as for any wrapped answer).
pub(crate) async fn wrap_data(
    _caller: Caller,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
    ApiJson(data): ApiJson<Map<String, Value>>,
) -> Response {
    // A zero or blank TTL asks for nothing to be wrapped, which leaves nothing to answer.
    let asked = headers
        .get(super::WRAP_TTL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ttl| matches!(parse_ttl(ttl, i64::MAX), Ok(Some(_))));
    if !asked {
        return errors(
            StatusCode::BAD_REQUEST,
            "sys/wrapping/wrap needs the X-Vault-Wrap-TTL header",
        );
    }
    reply(StatusCode::OK, &envelope(&info, Value::Object(data)))
}
