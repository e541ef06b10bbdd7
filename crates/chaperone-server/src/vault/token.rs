//! `auth/token/...`: Chaperone's tokens as Vault tokens.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chaperone_core::policy::Role;
use chaperone_crypto::token::ApiToken;
use chaperone_ledger::entry::Outcome;
use chaperone_store::{TokenKind, TokenRecord};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::wrapping::duration;
use super::{envelope, errors, no_content, refused, reply};
use crate::api::ApiJson;
use crate::api::ApiPath;
use crate::api::auth::{
    LoginRequest, Minting, may_manage_token, may_orphan, mint_token, perform_login, revoke,
};
use crate::auth::{Caller, lineage, presented_token};
use crate::record::{Record, RequestInfo};
use crate::{ApiError, AppState};

/// `GET|POST auth/token/lookup-self`. Like Vault, `id` is the token the caller presented
/// (never stored, never logged); `accessor` is its public id.
pub(crate) async fn lookup_self(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = own_record(&state, &caller).await?;
    let token = presented_token(&headers).unwrap_or_default();
    Ok(describe(&state, &info, &record, &token).await)
}

/// Vault's description of a token; `id` is the token itself when the caller presented it,
/// empty for a lookup by accessor.
async fn describe(
    state: &AppState,
    info: &RequestInfo,
    record: &TokenRecord,
    id: &str,
) -> Response {
    let now = state.clock.now();
    let ttl = record
        .expires_at
        .map_or(0, |e| e.unix_secs().saturating_sub(now.unix_secs()));
    let creation_ttl = record.expires_at.map_or(0, |e| {
        e.unix_secs().saturating_sub(record.created_at.unix_secs())
    });
    // How the token was made, in Vault's terms: the initial admin token is the root token.
    let path = match (record.person_id.as_ref(), record.kind) {
        _ if is_root(record) => "auth/token/root".to_owned(),
        (None, _) => "auth/token/create".to_owned(),
        (Some(_), TokenKind::Session) => format!("auth/userpass/login/{}", record.name),
        (Some(_), TokenKind::Api) => "auth/token/create".to_owned(),
    };
    let mut body = envelope(
        info,
        json!({
            "accessor": record.id,
            "creation_time": record.created_at.unix_secs(),
            "creation_ttl": creation_ttl,
            "display_name": display_name(record),
            "entity_id": record.person_id.clone().unwrap_or_default(),
            "expire_time": record.expires_at.map(|t| t.to_rfc3339()),
            "explicit_max_ttl": 0,
            "id": id,
            "issue_time": record.created_at.to_rfc3339(),
            "meta": labels(record),
            "num_uses": 0,
            "orphan": record.parent_id.is_none(),
            "path": path,
            "policies": [policy_of(record)],
            "renewable": false,
            "ttl": ttl,
            "type": "service",
        }),
    );
    // A token that never expires has no lease: like Vault's root token, it shows neither an
    // issue time nor renewability.
    if record.expires_at.is_none()
        && let Some(data) = body["data"].as_object_mut()
    {
        data.remove("issue_time");
        data.remove("renewable");
    }
    reply(StatusCode::OK, &body)
}

/// The scope of a token made for OpenBao's default policy: no rules.
const NO_RULES: &str = "[]";

/// The policy a token shows Vault's clients: `default` for one made for it (scoped, with no
/// rules), otherwise its owner's role.
fn policy_of(record: &TokenRecord) -> &str {
    if record.scope.as_deref() == Some(NO_RULES) {
        "default"
    } else {
        &record.role
    }
}

/// A token's labels as Vault shows them: a login session's name its user (`username`), as
/// those of a userpass login's token do; `null` when there are none.
fn labels(record: &TokenRecord) -> serde_json::Value {
    if record.kind == TokenKind::Session && record.person_id.is_some() {
        json!({ "username": record.name })
    } else if record.meta.is_empty() {
        serde_json::Value::Null
    } else {
        json!(record.meta)
    }
}

/// Vault's `auth` block for a token Chaperone just issued.
fn auth_block(token: &str, record: &TokenRecord, role: &str, now_secs: u64) -> serde_json::Value {
    json!({
        "client_token": token,
        "accessor": record.id,
        "policies": [role],
        "token_policies": [role],
        "metadata": labels(record),
        "lease_duration": record.expires_at.map_or(0, |e| e.unix_secs().saturating_sub(now_secs)),
        "renewable": false,
        "entity_id": record.person_id.clone().unwrap_or_default(),
        "token_type": "service",
        "orphan": record.parent_id.is_none(),
        "mfa_requirement": null,
        "num_uses": 0,
    })
}

fn auth_reply(info: &RequestInfo, auth: serde_json::Value, warnings: &[String]) -> Response {
    let mut body = envelope(info, serde_json::Value::Null);
    body["auth"] = auth;
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    reply(StatusCode::OK, &body)
}

/// Seconds as OpenBao writes a duration in its warnings: `768h`, `30m`, `1h30m`.
fn go_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".to_owned() } else { out }
}

/// A duration field as Vault clients send it: a string (`"1h"`, `"3600"`) or a number of
/// seconds (hvac's `ttl=60`).
fn duration_field<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(text) => Ok(Some(text)),
        serde_json::Value::Number(secs) => Ok(Some(secs.to_string())),
        _ => Err(serde::de::Error::custom(
            "a duration is a string like 1h30m or a number of seconds",
        )),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct CreateBody {
    #[serde(default, deserialize_with = "duration_field")]
    ttl: Option<String>,
    /// `ttl`'s old name, which older scripts still send: read when `ttl` is not given.
    #[serde(default, deserialize_with = "duration_field")]
    lease: Option<String>,
    #[serde(default, deserialize_with = "super::weak::text")]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "super::weak::integer")]
    num_uses: Option<i64>,
    #[serde(default, deserialize_with = "super::weak::strings")]
    policies: Option<Vec<String>>,
    #[serde(default, deserialize_with = "duration_field")]
    explicit_max_ttl: Option<String>,
    #[serde(default, deserialize_with = "duration_field")]
    period: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    #[serde(default, deserialize_with = "super::weak::boolean")]
    no_parent: Option<bool>,
    /// Read to be checked only: Chaperone tokens are never renewable.
    #[serde(default, deserialize_with = "super::weak::boolean")]
    #[allow(dead_code)]
    renewable: Option<bool>,
    #[serde(default, deserialize_with = "super::weak::boolean")]
    no_default_policy: Option<bool>,
    /// Labels, shown by lookups (`meta`) and in the `auth` block (`metadata`); also given as
    /// `"k=v"` or `["k=v"]`, as OpenBao reads key-value pairs.
    #[serde(default, deserialize_with = "super::weak::key_value_pairs")]
    meta: Option<Option<std::collections::BTreeMap<String, String>>>,
}

/// Whether a policy name is `default`, as OpenBao reads policy names (trimmed, in any case).
fn is_default(policy: &str) -> bool {
    policy.trim().eq_ignore_ascii_case("default")
}

impl CreateBody {
    /// Whether the request asks for OpenBao's default policy and nothing else.
    fn default_only(&self) -> bool {
        self.policies
            .as_ref()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|p| is_default(p)))
    }

    /// What the request asks for that a Chaperone token cannot be. Security decision: a
    /// client that asks for a restriction (a narrower policy, a use count) and silently gets
    /// a token without it holds more than it believes, so such requests are refused, not
    /// granted in part. The defaults clients send (`policies` empty or `["default"]`, a
    /// `service` token, no period) pass.
    fn unsupported(&self) -> Option<&'static str> {
        // Unset, empty, or zero (`0`, `0s`).
        let zero = |d: &Option<String>| {
            d.as_deref()
                .is_none_or(|d| d.is_empty() || duration(d) == Ok(0))
        };
        if self.num_uses.is_some_and(|n| n > 0) {
            Some("num_uses is not supported: Chaperone tokens are limited by time")
        } else if self.policies.iter().flatten().any(|p| !is_default(p)) {
            Some(
                "policies are not supported: a token created here has its creator's \
                 permissions; for a narrower one, create a scoped token \
                 (`chaperone token create --scope`)",
            )
        } else if !zero(&self.period) {
            Some("periodic tokens are not supported: Chaperone tokens always expire")
        } else if self
            .kind
            .as_deref()
            .is_some_and(|k| !k.is_empty() && k != "service" && k != "default")
        {
            Some("only service tokens are supported")
        } else if self.id.as_deref().is_some_and(|id| !id.is_empty()) {
            Some("a token's value is always generated by the server")
        } else if self.default_only() && self.no_default_policy == Some(true) {
            Some(
                "a token with no policy at all (`default` removed by no_default_policy) is not \
                 supported: it could do nothing",
            )
        } else {
            None
        }
    }
}

/// `POST auth/token/create`: an API token for the caller, with the caller's role. A request
/// for what Chaperone tokens cannot be (Vault policies, a use count, a period) is refused
/// ([`CreateBody::unsupported`]). Tokens always expire: without `ttl`, the server's maximum
/// applies, and `explicit_max_ttl` shortens it.
///
/// As in Vault, the new token is a child of the token that made it: it expires no later
/// than its parent, and revoking the parent (or a login session ending with `revoke-self`)
/// revokes it. Only an admin may ask for an orphan (`no_parent`), as only root or sudo may
/// in Vault.
pub(crate) async fn create(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    create_token(caller, &state, &info, &body, false).await
}

/// `POST auth/token/create-orphan` (`bao token create -orphan`): `create` with `no_parent`,
/// so for an admin only. Anyone else is refused as OpenBao refuses a token whose policy
/// does not name the path, and the refusal is recorded.
pub(crate) async fn create_orphan(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !may_orphan(&caller) {
        return Ok(refused(
            errors(StatusCode::FORBIDDEN, "permission denied"),
            "orphan_not_permitted",
        ));
    }
    create_token(caller, &state, &info, &body, true).await
}

async fn create_token(
    caller: Caller,
    state: &Arc<AppState>,
    info: &RequestInfo,
    body: &[u8],
    orphan: bool,
) -> Result<Response, ApiError> {
    // An empty body (or `null`) asks for the defaults. A field of the wrong type is named,
    // its value never repeated.
    let body: CreateBody = if body.trim_ascii().is_empty() || body.trim_ascii() == b"null" {
        CreateBody::default()
    } else {
        crate::api::parse_body(body)?
    };
    if body.num_uses.is_some_and(|n| n < 0) {
        return Ok(errors(
            StatusCode::BAD_REQUEST,
            "number of uses cannot be negative",
        ));
    }
    if let Some(message) = body.unsupported() {
        return Ok(errors(StatusCode::BAD_REQUEST, message));
    }
    // Unset, empty and zero all mean "the default", as in Vault.
    let seconds = |text: Option<&str>| match text.filter(|t| !t.is_empty()) {
        Some(text) => duration(text).map_err(|e| ApiError::bad_request("invalid_request", e)),
        None => Ok(0),
    };
    let mut ttl = match seconds(body.ttl.as_deref().or(body.lease.as_deref()))? {
        0 => state.settings.auth.max_token_ttl_secs,
        ttl => ttl,
    };
    // A TTL over the server's maximum (or the request's `explicit_max_ttl`) is capped to it,
    // with OpenBao's warning: the token lives less than asked, never more.
    let mut limit = state.settings.auth.max_token_ttl_secs;
    let max = seconds(body.explicit_max_ttl.as_deref())?;
    if max > 0 {
        limit = limit.min(max);
    }
    let mut warnings = Vec::new();
    if ttl > limit {
        warnings.push(format!(
            "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped \
             accordingly",
            go_duration(ttl),
            go_duration(limit)
        ));
        ttl = limit;
    }
    let no_parent = orphan || body.no_parent.unwrap_or(false);
    // An orphan outlives the session it was made with (and a revocation of it): asked for
    // by anyone but an admin, the refusal is recorded.
    if no_parent && !may_orphan(&caller) {
        return Ok(refused(
            errors(
                StatusCode::BAD_REQUEST,
                "root or sudo privileges required to create orphan token",
            ),
            "orphan_not_permitted",
        ));
    }
    let parent = if no_parent {
        None
    } else {
        Some(own_record(state, &caller).await?)
    };
    // A child expires no later than its parent (`mint_token`): said, not done silently.
    if let Some(ends) = parent.as_ref().and_then(|p| p.expires_at) {
        let left = i64::try_from(
            ends.unix_secs()
                .saturating_sub(state.clock.now().unix_secs()),
        )
        .unwrap_or(i64::MAX);
        if left < ttl {
            warnings.push(format!(
                "TTL of \"{}\" exceeded the parent token's remaining TTL of \"{}\"; the \
                 token expires with its parent",
                go_duration(ttl),
                go_duration(left)
            ));
        }
    }
    let default_only = body.default_only();
    let meta = body.meta.flatten().unwrap_or_default();
    // Vault's limits on key/value labels, as for a secret's custom metadata.
    chaperone_core::secret::check_custom_metadata(&meta)
        .map_err(|e| ApiError::bad_request("invalid_request", format!("meta: {e}")))?;
    crate::api::check_labels("meta", &meta)?;
    // A login's token names its user in `username` (`labels`), and a service may take it for
    // who is calling: a token made by one person may not name another there.
    if let Some(named) = meta.get("username") {
        let own = match &caller.person_id {
            Some(id) => state.store.person(id).await?.map(|p| p.name),
            None => None,
        };
        if own.as_deref() != Some(named.as_str()) {
            // An attempt to pass for someone else, not a mistyped field: recorded.
            return Err(ApiError::bad_request(
                "invalid_request",
                "meta: `username` names who logged in; a token may carry only its maker's",
            )
            .refusal());
        }
    }
    // `policies: ["default"]` asks for OpenBao's default policy: a token that can only look
    // itself up, renew and revoke itself. That is a scoped token with no rules, never one
    // with its creator's permissions (which is what no `policies` at all asks for).
    let name = body.display_name.unwrap_or_default();
    let minting = Minting {
        scope: default_only.then(|| NO_RULES.to_owned()),
        parent: parent.as_ref(),
        meta,
    };
    let (token, record) = mint_token(state, &caller, info, &name, ttl, minting).await?;
    // The lease as minted: a second read of the clock could fall in the next second.
    let auth = auth_block(
        token.expose(),
        &record,
        policy_of(&record),
        record.created_at.unix_secs(),
    );
    Ok(auth_reply(info, auth, &warnings))
}

/// The answer to a renewal of `token`: its unchanged remaining TTL, with a warning that says
/// so.
fn renewed(state: &AppState, info: &RequestInfo, token: &str, record: &TokenRecord) -> Response {
    // A token that never expires (the initial admin token) has no lease, as OpenBao's root
    // token has none.
    if record.expires_at.is_none() {
        return errors(StatusCode::BAD_REQUEST, "invalid lease ID");
    }
    let now = state.clock.now().unix_secs();
    let auth = auth_block(token, record, policy_of(record), now);
    auth_reply(
        info,
        auth,
        &["Chaperone tokens are not renewable; the TTL is unchanged".to_owned()],
    )
}

/// `POST auth/token/renew-self`: Chaperone tokens are not renewable, so the answer carries
/// the unchanged remaining TTL and says so, as Vault does for a token at its maximum TTL.
pub(crate) async fn renew_self(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
    ApiJson(_): ApiJson<Increment>,
) -> Result<Response, ApiError> {
    let record = own_record(&state, &caller).await?;
    let token = presented_token(&headers).unwrap_or_default();
    Ok(renewed(&state, &info, &token, &record))
}

/// `POST auth/token/renew` with `{"token": ...}` (`bao token renew TOKEN`): for a token the
/// caller may look up (their own, or any for an admin), the unchanged TTL, as `renew-self`
/// answers. An admin naming no live token is told so (400, as OpenBao tells root); anyone
/// else is refused (403) whether the token exists or not, as for `revoke`.
pub(crate) async fn renew(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(Renewal { named: body, .. }): ApiJson<Renewal<TokenBody>>,
) -> Result<Response, ApiError> {
    let token = body.named()?;
    match managed_by_token(&state, &caller, token, Purpose::Lookup).await? {
        Some(record) => Ok(renewed(&state, &info, token, &record)),
        None if caller.principal.role == Role::Admin => Ok(refused(
            errors(StatusCode::BAD_REQUEST, "token not found"),
            BAD_TOKEN,
        )),
        None => Ok(refused(
            errors(StatusCode::FORBIDDEN, "permission denied"),
            BAD_TOKEN,
        )),
    }
}

/// `POST auth/token/revoke-self`.
pub(crate) async fn revoke_self(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
) -> Result<Response, ApiError> {
    let record = own_record(&state, &caller).await?;
    revoke(&state, &caller, &info, &record).await?;
    Ok(no_content())
}

/// Whether `record` is the initial admin token, Vault's root token: of no person, made from
/// no token, and the only token that never expires (every minted one does). The admin
/// token's orphans are not.
fn is_root(record: &TokenRecord) -> bool {
    record.person_id.is_none() && record.parent_id.is_none() && record.expires_at.is_none()
}

/// A token's `display_name` as OpenBao makes it: `root` for the root token,
/// `userpass-NAME` for a login, and for a created token `token`, or `token-` and its given
/// name with every character but ASCII letters, digits and `-` made a `-`, less one
/// trailing `-`.
fn display_name(record: &TokenRecord) -> String {
    match (record.person_id.as_ref(), record.kind) {
        _ if is_root(record) => "root".to_owned(),
        (Some(_), TokenKind::Session) => format!("userpass-{}", record.name),
        _ if record.name.is_empty() => "token".to_owned(),
        _ => {
            let name: String = format!("token-{}", record.name)
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            name.strip_suffix('-').unwrap_or(&name).to_owned()
        }
    }
}

async fn own_record(state: &AppState, caller: &Caller) -> Result<TokenRecord, ApiError> {
    state
        .store
        .token_by_id(&caller.token_id)
        .await?
        .ok_or_else(|| ApiError::not_found("the token was removed"))
}

/// A renewal's `increment`, checked as OpenBao checks it (a duration) and then unused:
/// Chaperone tokens are not renewable.
#[derive(Deserialize)]
pub(crate) struct Increment {
    #[serde(default, deserialize_with = "super::weak::duration")]
    #[allow(dead_code)]
    increment: Option<i64>,
}

/// The body of a renewal of a token named by value or by accessor.
#[derive(Deserialize)]
pub(crate) struct Renewal<T> {
    #[serde(flatten)]
    named: T,
    #[serde(flatten)]
    #[allow(dead_code)]
    increment: Increment,
}

#[derive(Deserialize)]
pub(crate) struct TokenBody {
    #[serde(default)]
    token: Zeroizing<String>,
}

/// `value`, or a 400 with OpenBao's words for it missing (the Vault layer answers a native
/// error as `{"errors": [message]}`).
fn named<'a>(value: &'a str, missing: &str) -> Result<&'a str, ApiError> {
    match value {
        "" => Err(ApiError::bad_request("invalid_request", missing)),
        value => Ok(value),
    }
}

impl TokenBody {
    /// The token named, or OpenBao's 400 for a body that names none: never a success for a
    /// script whose variable came out empty.
    fn named(&self) -> Result<&str, ApiError> {
        named(&self.token, "missing token ID")
    }
}

/// The body of `auth/token/lookup`: the token is optional there.
#[derive(Deserialize)]
pub(crate) struct LookupBody {
    #[serde(default)]
    token: Zeroizing<String>,
}

#[derive(Deserialize)]
pub(crate) struct AccessorBody {
    #[serde(default)]
    accessor: String,
}

impl AccessorBody {
    /// The accessor named, or OpenBao's answer to a body that names none.
    fn named(&self) -> Result<&str, ApiError> {
        named(
            &self.accessor,
            "1 error occurred:\n\t* missing accessor\n\n",
        )
    }
}

/// What a caller wants with a token it names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Lookup,
    Revoke,
}

/// The token record a caller may look up or revoke: their own, or any for an admin.
/// Anything else is "bad token", whether it exists or not. Like Vault, a token that can no
/// longer be used (revoked, expired, idle, or made from one that has ended) is not found
/// (nor revoked: nothing changes): a service that checks the tokens presented to it through
/// `auth/token/lookup` must never be told such a token is valid. A token refused only while
/// its owner may not act (a suspended vendor's contractor) is not found by a lookup but is
/// revoked: it would otherwise work again when they may.
async fn managed_by_token(
    state: &AppState,
    caller: &Caller,
    token: &str,
    purpose: Purpose,
) -> Result<Option<TokenRecord>, ApiError> {
    let hash = ApiToken::from_presented(token).hash();
    let record = state.store.token_by_hash(&hash).await?;
    managed(state, caller, record, purpose).await
}

async fn managed_by_accessor(
    state: &AppState,
    caller: &Caller,
    accessor: &str,
    purpose: Purpose,
) -> Result<Option<TokenRecord>, ApiError> {
    let record = state.store.token_by_id(accessor).await?;
    managed(state, caller, record, purpose).await
}

async fn managed(
    state: &AppState,
    caller: &Caller,
    record: Option<TokenRecord>,
    purpose: Purpose,
) -> Result<Option<TokenRecord>, ApiError> {
    let Some(record) = record.filter(|t| may_manage_token(caller, t)) else {
        return Ok(None);
    };
    let now = state.clock.now();
    if !record.is_live(now) {
        return Ok(None);
    }
    // A token whose owner may not act (disabled, past their end date, a vendor no longer
    // active) is refused every action, so it is no valid token either; but it is revoked.
    if let Some(person_id) = record
        .person_id
        .as_ref()
        .filter(|_| purpose == Purpose::Lookup)
    {
        let active = match state.store.acting_person(person_id).await? {
            Some(person) => state.standing(&person).await?.active(),
            None => false,
        };
        if !active {
            return Ok(None);
        }
    }
    match lineage(state, &record, now).await {
        Ok(_) => Ok(Some(record)),
        Err(refused) if refused.status == StatusCode::UNAUTHORIZED => Ok(None),
        Err(e) => Err(e),
    }
}

/// `POST auth/token/lookup` with `{"token": ...}`; without one (or with an empty one), the
/// caller's own token, as in OpenBao.
pub(crate) async fn lookup(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LookupBody>,
) -> Result<Response, ApiError> {
    if body.token.is_empty() {
        return lookup_self(caller, State(state), Extension(info), headers).await;
    }
    match managed_by_token(&state, &caller, &body.token, Purpose::Lookup).await? {
        Some(record) => Ok(describe(&state, &info, &record, &body.token).await),
        None => Ok(refused(
            errors(StatusCode::FORBIDDEN, "bad token"),
            BAD_TOKEN,
        )),
    }
}

/// `POST auth/token/lookup-accessor` with `{"accessor": ...}`; `id` is empty, as in Vault.
pub(crate) async fn lookup_accessor(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<AccessorBody>,
) -> Result<Response, ApiError> {
    let accessor = body.named()?;
    match managed_by_accessor(&state, &caller, accessor, Purpose::Lookup).await? {
        Some(record) => Ok(describe(&state, &info, &record, "").await),
        None => Ok(invalid_accessor()),
    }
}

/// `POST auth/token/renew-accessor` with `{"accessor": ...}` (`bao token renew -accessor`):
/// `renew` for the token an accessor names, answered without the token itself
/// (`client_token` empty), as in OpenBao. An accessor that names nothing the caller may
/// look up gets `invalid accessor`, whether it exists or not, as for `lookup-accessor`.
pub(crate) async fn renew_accessor(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(Renewal { named: body, .. }): ApiJson<Renewal<AccessorBody>>,
) -> Result<Response, ApiError> {
    let accessor = body.named()?;
    match managed_by_accessor(&state, &caller, accessor, Purpose::Lookup).await? {
        Some(record) => Ok(renewed(&state, &info, "", &record)),
        None => Ok(invalid_accessor()),
    }
}

/// `POST auth/token/revoke` with `{"token": ...}`.
pub(crate) async fn revoke_token(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Response, ApiError> {
    let token = body.named()?;
    match managed_by_token(&state, &caller, token, Purpose::Revoke).await? {
        Some(record) => {
            revoke(&state, &caller, &info, &record).await?;
            Ok(no_content())
        }
        // Like Vault's root token, an admin revoking a token that is gone is not told of an
        // error (a clean-up job goes on); anyone else is refused, whether the token exists
        // or not, as a token of OpenBao's default policy is: never told it was revoked when
        // it was not. The ledger says that nothing was revoked, and why.
        None if caller.principal.role == Role::Admin => Ok(refused(no_content(), BAD_TOKEN)),
        None => Ok(refused(
            errors(StatusCode::FORBIDDEN, "permission denied"),
            BAD_TOKEN,
        )),
    }
}

/// `POST auth/token/revoke-accessor` with `{"accessor": ...}`. A wrapping token's accessor
/// (`wrap_...`, as `wrap_info.accessor` gives it) revokes that wrapping unread, as in Vault:
/// for whoever wrapped it, or an admin, so that a wrapping token that leaked can be made
/// useless without holding it.
pub(crate) async fn revoke_accessor(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<AccessorBody>,
) -> Result<Response, ApiError> {
    let accessor = body.named()?;
    if accessor.starts_with("wrap_") {
        let admin = caller.principal.role == Role::Admin;
        let me = caller.person_id.clone();
        let (recorder, request, actor) = (Arc::clone(&state), info.clone(), caller.actor());
        let revoked = state
            .store
            .revoke_wrapped(accessor, state.clock.now(), move |record| {
                let mine = me.is_some() && record.created_by == me;
                (admin || mine).then(|| {
                    let mut event =
                        Record::new("wrap.revoke", &record.creation_path, Outcome::Success);
                    event
                        .details
                        .insert("accessor".into(), record.accessor.clone().into());
                    vec![recorder.event(&request, actor, event)]
                })
            })
            .await?;
        return Ok(match revoked {
            Some(_) => no_content(),
            None => no_such_accessor(&caller, &info),
        });
    }
    match managed_by_accessor(&state, &caller, accessor, Purpose::Revoke).await? {
        Some(record) => {
            revoke(&state, &caller, &info, &record).await?;
            Ok(no_content())
        }
        None => Ok(no_such_accessor(&caller, &info)),
    }
}

/// The answer to revoking an accessor that names nothing the caller may revoke. An admin,
/// who may revoke every token, is told as OpenBao tells its root token: 200 with a warning,
/// so that a clean-up job revoking a list of accessors goes past one that has already
/// expired or been revoked. Anyone else gets `invalid accessor` whether it exists or not.
/// Either way the ledger records that nothing was revoked, and why (`bad_token`).
fn no_such_accessor(caller: &Caller, info: &RequestInfo) -> Response {
    if caller.principal.role == Role::Admin {
        let mut body = envelope(info, serde_json::Value::Null);
        body["warnings"] = json!(["No token found with this accessor"]);
        return refused(reply(StatusCode::OK, &body), BAD_TOKEN);
    }
    invalid_accessor()
}

/// `invalid accessor` in OpenBao's words (its errors come wrapped in a list of one), recorded
/// as `bad_token`.
fn invalid_accessor() -> Response {
    refused(
        errors(
            StatusCode::BAD_REQUEST,
            "1 error occurred:\n\t* invalid accessor\n\n",
        ),
        BAD_TOKEN,
    )
}

/// The reason recorded when a token or accessor names nothing the caller may manage: one
/// reason whether it exists or not, so that the caller's own ledger entries do not tell.
const BAD_TOKEN: &str = "bad_token";

#[derive(Deserialize)]
pub(crate) struct UserpassBody {
    password: Zeroizing<String>,
}

/// `POST auth/userpass/login/:user` with `{"password": ...}`; a person who needs MFA sends
/// the TOTP code in `X-Vault-MFA` (`CODE`, or `METHOD:CODE` as Vault's login MFA does).
/// The same checks, lockout and ledger entries as the native login.
pub(crate) async fn userpass_login(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiPath(user): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UserpassBody>,
) -> Result<Response, ApiError> {
    let totp = headers
        .get("x-vault-mfa")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.rsplit(':').next().unwrap_or(v).trim().to_owned());
    let request = LoginRequest {
        user,
        password: body.password,
        totp,
        recovery_code: None,
    };
    let (login, actor) = match perform_login(&state, &info, peer, &headers, request).await {
        Ok(done) => done,
        Err(e) if e.code == "mfa_required" => {
            return Ok(errors(
                StatusCode::BAD_REQUEST,
                "this account needs a TOTP code: send it in the X-Vault-MFA header (`bao login -mfa=CODE`)",
            ));
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return Ok(errors(
                StatusCode::BAD_REQUEST,
                "invalid username or password",
            ));
        }
        Err(e) => return Err(e),
    };
    let record = state
        .store
        .token_by_id(&login.token_id)
        .await?
        .ok_or_else(|| ApiError::not_found("the session was removed"))?;
    // The lease as minted, as for `create`.
    let auth = auth_block(
        &login.token,
        &record,
        &login.role,
        record.created_at.unix_secs(),
    );
    // The answer is the person's: wrapped, it is theirs (deleted with their other wrappings
    // when their access ends) and stored only while this session is live.
    let mut response = auth_reply(&info, auth, &[]);
    response.extensions_mut().insert(actor);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::CreateBody;

    fn body(json: &str) -> CreateBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_token_request_with_a_restriction_that_cannot_be_honoured_is_refused() {
        // What hvac and the bao CLI send by default passes.
        for ok in [
            r#"{}"#,
            r#"{"ttl": "1h", "display_name": "ci", "no_parent": false, "renewable": true, "num_uses": 0}"#,
            r#"{"policies": null, "type": "", "period": "", "explicit_max_ttl": ""}"#,
            r#"{"policies": ["default"], "type": "service", "period": "0s", "id": ""}"#,
            // Policy names as OpenBao reads them: trimmed, in any case.
            r#"{"policies": [" Default "], "no_default_policy": false}"#,
            r#"{"no_default_policy": true}"#,
            // What `bao token create -ttl=10m` sends: Go durations, zero for unset.
            r#"{"ttl": "10m0s", "explicit_max_ttl": "0s", "period": "0s", "num_uses": 0}"#,
        ] {
            assert_eq!(body(ok).unsupported(), None, "{ok}");
        }
        for (refused, why) in [
            (r#"{"policies": ["ci-readonly"]}"#, "policies"),
            (r#"{"policies": ["default", "admin"]}"#, "policies"),
            (r#"{"num_uses": 3}"#, "num_uses"),
            (r#"{"period": "24h"}"#, "periodic"),
            (r#"{"type": "batch"}"#, "service tokens"),
            (r#"{"id": "my-own-token"}"#, "generated"),
            (
                r#"{"policies": ["default"], "no_default_policy": "t"}"#,
                "no policy at all",
            ),
        ] {
            let message = body(refused).unsupported().unwrap_or_default();
            assert!(message.contains(why), "{refused}: {message:?}");
        }
    }

    #[test]
    fn durations_are_read_as_vault_clients_write_them() {
        use super::duration;
        for (text, seconds) in [
            ("3600", 3600),
            ("0", 0),
            ("0s", 0),
            ("10m0s", 600),
            ("1h30m", 5400),
            ("2h0m0s", 7200),
            ("7d", 7 * 86_400),
            // Go's fractions and units below a second.
            ("1.5h", 5400),
            (".5m", 30),
            ("1.h", 3600),
            ("1h.5m", 3630),
            ("2.999s", 2),
            ("1500ms", 1),
            ("90000000us", 90),
            ("2\u{b5}s3s", 3),
            ("0.0000000001h", 1),
            // Under a second is a second, never zero ("unset": the longest TTL).
            ("500ms", 1),
            ("1ns", 1),
            ("0ms", 0),
            ("+1h", 3600),
        ] {
            assert_eq!(duration(text), Ok(seconds), "{text}");
        }
        for bad in [
            "",
            "-5",
            "-1h",
            "5x",
            "m",
            "10m0",
            "1.5",
            ".h",
            "1..5h",
            "1h-5m",
            "99999999999999999999s",
            "99999999999999999999999999999999999999999h",
            // Past what 128 bits hold once the fraction is added.
            "340282366920938463463374607431768211.9us",
            "94522879700260684295381835.9h",
            // Units and characters Go does not take.
            "1\u{b5}",
            "1\u{3bc}",
            "5\u{e9}",
            ".",
            "\u{b5}s",
            "+",
            "++1h",
            "1h+1m",
            // Spaces, as OpenBao refuses them: `"  "` is no "unset".
            " 5m",
            "5m ",
            "  ",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
