//! Authentication (who is asking) and the authorisation middleware (may they).
//!
//! Every route is registered with the action it performs (see `api::routes`). The
//! [`authorize`] middleware looks the matched route up, authenticates the bearer token,
//! resolves the caller into a [`Principal`] (role, account and vendor standing, grants, token
//! scope, step-up time, network allowlist), classifies the secret path if there is one, and
//! asks `chaperone_core::policy::decide`. Handlers only run after an allow; a route missing
//! from the table is refused (fail closed).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chaperone_core::governance::{AcknowledgementFacts, Compliance, LevelPolicy, VendorStatus};
use chaperone_core::net::{Cidr, allowed};
use chaperone_core::policy::{
    Action, Capability, Context, Decision, PathRule, Principal, Reason, Resource, Role, Standing,
    decide,
};
use chaperone_core::{SecretPath, Timestamp};
use chaperone_crypto::token::ApiToken;
use chaperone_ledger::entry::{Actor, Outcome};
use chaperone_store::{StoreError, TokenKind, TokenRecord};
use serde::{Deserialize, Serialize};

use crate::api::{On, RouteTable};
use crate::error::Refused;
use crate::record::{Record, RequestInfo};
use crate::{ApiError, AppState, SealError};

/// An authenticated, authorised caller, available to handlers of protected routes.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's public id (never the token).
    pub(crate) token_id: String,
    /// The person, unless this is the initial admin token.
    pub(crate) person_id: Option<String>,
    /// The person's vendor, for contractors.
    pub(crate) vendor_id: Option<String>,
    /// API token or session.
    pub(crate) kind: TokenKind,
    /// What the policy decision saw.
    pub(crate) principal: Principal,
    /// The client's address, as the server believes it.
    pub(crate) client_ip: Option<IpAddr>,
    /// For a login session, its last recorded use: the request's use is recorded once the
    /// policy allows it (a refused request keeps no session alive).
    pub(crate) session_last_used: Option<Timestamp>,
}

/// A rule as written in a token scope or a grant request.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleBody {
    /// Path prefix (`""` for everything).
    pub(crate) prefix: String,
    /// Capabilities: read, write, delete, destroy, list.
    pub(crate) capabilities: Vec<String>,
}

impl RuleBody {
    pub(crate) fn to_rule(&self, expires_at: Option<Timestamp>) -> Result<PathRule, ApiError> {
        let capabilities = parse_capabilities(&self.capabilities)?;
        let prefix = self.prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            SecretPath::parse(prefix)?;
        }
        Ok(PathRule {
            prefix: prefix.to_owned(),
            capabilities,
            expires_at,
            terms: None,
        })
    }
}

pub(crate) fn parse_capabilities(names: &[String]) -> Result<Vec<Capability>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give at least one capability",
        ));
    }
    names
        .iter()
        .map(|c| {
            c.parse()
                .map_err(|e: String| ApiError::bad_request("invalid_request", e))
        })
        .collect()
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // Set only by `authorize`; its absence means a route escaped the policy table.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "no_policy",
                "this route has no policy",
            )
        })
    }
}

/// The authorisation middleware; see the module documentation.
pub(crate) async fn authorize(
    State((state, table)): State<(Arc<AppState>, RouteTable)>,
    request: Request,
    next: Next,
) -> Response {
    let mut request_id = None;
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| table.find(request.method(), m.as_str()));
    let label = route.map(|route| crate::observe::RouteLabel(route.path));
    // The route's pattern and action, for a handler's refusal (public routes have none).
    let acted = route.and_then(|route| route.action.map(|action| (route, action)));
    // Kept for a refusal's ledger entry (a shared buffer: no copy on the hot path).
    let uri = request.uri().clone();
    let mut response = match check(&state, &table, request, &mut request_id).await {
        Ok(request) => {
            // Who asked and the request's facts travel back with the answer, for layers
            // that act on it (Vault response wrapping records who wrapped what).
            let actor = request.extensions().get::<Caller>().map(Caller::actor);
            let info = request.extensions().get::<RequestInfo>().cloned();
            let mut response = next.run(request).await;
            // A handler's own refusal (approving one's own request, a role it may not
            // manage, ...) is a denial like the policy's, and is recorded as one.
            if let (Some((route, action)), Some(actor), Some(info), Some(Refused(code))) = (
                acted,
                &actor,
                &info,
                response.extensions().get::<Refused>().copied(),
            ) {
                // As the policy's own denials name it: a secret route's path, else the route.
                let raw = route
                    .path
                    .split_once('{')
                    .and_then(|(prefix, _)| uri.path().strip_prefix(prefix));
                let resource = named_resource(route, raw)
                    .unwrap_or_else(|| route_resource(route.path, uri.path()));
                let mut record = Record::new(action.as_str(), &resource, Outcome::Denied);
                record.reasons.push(code.to_owned());
                if let Err(error) = state.record(info, actor.clone(), record).await {
                    response = error.into_response();
                }
            }
            if let Some(actor) = actor {
                response.extensions_mut().insert(actor);
            }
            if let Some(info) = info {
                response.extensions_mut().insert(info);
            }
            response
        }
        Err(error) => error.into_response(),
    };
    if let Some(label) = label {
        response.extensions_mut().insert(label);
    }
    // The id the request's ledger entries carry, so a client can find them.
    if let Some(id) = request_id.and_then(|id| axum::http::HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

async fn check(
    state: &AppState,
    table: &RouteTable,
    request: Request,
    request_id: &mut Option<String>,
) -> Result<Request, ApiError> {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some(route) = matched
        .as_deref()
        .and_then(|p| table.find(request.method(), p))
    else {
        // A route with another method (`LIST` on a secret's data): 405, whoever asks and
        // before any credential is looked at, so that the answer says nothing of a token
        // (a live one and a dead one would otherwise be told apart, unrecorded).
        if matched.as_deref().is_some_and(|p| table.knows(p)) {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "unsupported operation",
            ));
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no_policy",
            "this route has no policy",
        ));
    };
    let (mut parts, body) = request.into_parts();
    let info = request_info(state, &parts);
    parts.extensions.insert(info.clone());
    *request_id = Some(info.request_id.clone());
    let Some(action) = route.action else {
        return Ok(Request::from_parts(parts, body));
    };
    let mut caller = match authenticate_known(state, &parts.headers, peer(&parts)).await {
        Ok(caller) => caller,
        Err(BadCredential { error, actor }) => {
            // Refused credentials are recorded; a sealed server has nothing to record with.
            if (error.status == StatusCode::UNAUTHORIZED || error.status == StatusCode::FORBIDDEN)
                && state
                    .anonymous_refusals
                    .admit(state, &actor, info.client_ip)
            {
                let resource = refused_resource(route, &mut parts).await;
                let mut record = Record::new(action.as_str(), &resource, Outcome::Denied);
                record.reasons.push(error.code.to_owned());
                state.record(&info, actor, record).await?;
            }
            return Err(error);
        }
    };
    let now = state.clock.now();
    let secret_path;
    let level;
    let resource = match route.on {
        On::Secret => {
            let params = RawPathParams::from_request_parts(&mut parts, &())
                .await
                .map_err(|_| ApiError::bad_request("invalid_path", "missing secret path"))?;
            let raw = params.iter().map(|(_, v)| v).next().unwrap_or_default();
            secret_path = SecretPath::parse(raw)?;
            level = state.classify(&secret_path).await?;
            if level.step_up
                && let Some(scope) = &caller.principal.scope
            {
                caller.principal.scope_steps_up =
                    state.scope_steps_up(scope, &secret_path, now).await?;
            }
            caller.principal.compliance = state
                .compliance(caller.person_id.as_ref(), caller.vendor_id.as_ref(), &level)
                .await?;
            Resource::Secret(&secret_path, &level)
        }
        On::Listing => Resource::Listing,
        On::System => Resource::System,
    };
    let context = Context {
        now,
        ..state.context(info.client_ip)
    };
    let decision = decide(&caller.principal, action, resource, context);
    if !decision.allowed {
        let reason = decision
            .reasons
            .first()
            .cloned()
            .expect("a denial has a reason");
        tracing::info!(token = %caller.token_id, route = %route.path, ?action, reason = reason.code(), "denied");
        let resource = match resource {
            Resource::Secret(path, _) => path.as_str().to_owned(),
            _ => refused_resource(route, &mut parts).await,
        };
        let record = Record::denied(action.as_str(), &resource, &decision);
        state.record(&info, caller.actor(), record).await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            reason.code(),
            reason.message().to_owned(),
        ));
    }
    if let Some(last) = caller.session_last_used {
        note_session_use(state, &caller.token_id, last, now).await?;
    }
    parts.extensions.insert(caller);
    Ok(Request::from_parts(parts, body))
}

/// What a refused request was aimed at, for its ledger entry: the secret path or the
/// listed folder as the route's successes record them, else the route's pattern with its
/// parameters filled in ([`route_resource`]). A secret path or folder that is not valid is
/// recorded as the latter.
async fn refused_resource(route: &crate::api::RouteSpec, parts: &mut Parts) -> String {
    let raw = match route.on {
        On::Secret | On::Listing => RawPathParams::from_request_parts(parts, &())
            .await
            .ok()
            .and_then(|params| params.iter().next().map(|(_, v)| v.to_owned())),
        On::System => None,
    };
    named_resource(route, raw.as_deref())
        .unwrap_or_else(|| route_resource(route.path, parts.uri.path()))
}

/// A secret route's resource, as its ledger entries name it: the secret path (or listing
/// prefix) given as `raw`, percent-decoded, if it is one.
fn named_resource(route: &crate::api::RouteSpec, raw: Option<&str>) -> Option<String> {
    // Handlers act on the path decoded (axum's `Path`, the Vault router), so a refusal
    // names what a success through the same URL would have.
    let decoded = match raw.map(|raw| percent_encoding::percent_decode_str(raw).decode_utf8()) {
        Some(Ok(decoded)) => Some(decoded),
        Some(Err(_)) => return None,
        None => None,
    };
    let raw = decoded.as_deref();
    match (route.on, raw) {
        (On::Secret, Some(raw)) => SecretPath::parse(raw).ok().map(|p| p.as_str().to_owned()),
        (On::Listing, Some(raw)) => chaperone_core::SecretPrefix::parse(raw)
            .ok()
            .map(|p| p.as_str().to_owned()),
        // The root listing, whose route has no parameter.
        (On::Listing, None) if !route.path.contains('{') => Some(String::new()),
        _ => None,
    }
}

/// The request's path as a ledger resource: the route's `pattern` with each parameter
/// replaced by what the request gave for it (`/api/v1/requests/req_.../approve`), when
/// that is plainly an id, a name or a path of such segments; otherwise the parameter stays
/// as written in the pattern (`/api/v1/auth/tokens/{id}`).
///
/// Security decision: a path parameter is whatever the client typed, and the ledger keeps
/// it for ever. A token pasted where its id belongs, or any long or odd text, must not
/// reach it, so only segments of at most 64 letters, digits, `.`, `_`, `-` or `@` (not
/// `.` or `..`), not starting like a Chaperone token, and not percent-encoded, are written (and, for a
/// route's trailing path, a valid secret path, which is what secret routes record anyway);
/// this also bounds the entry's size whatever the request.
pub(crate) fn route_resource(pattern: &str, path: &str) -> String {
    fn plain(segment: &str) -> bool {
        (1..=64).contains(&segment.len())
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
            && !segment.starts_with(chaperone_crypto::token::TOKEN_PREFIX)
            && !segment.bytes().all(|b| b == b'.')
    }
    let mut given = path.split('/');
    let mut out = Vec::new();
    for part in pattern.split('/') {
        if part.starts_with("{*") {
            let rest: Vec<&str> = given.by_ref().collect();
            let rest_text = rest.join("/");
            let filled = (rest.len() <= 16 && rest.iter().all(|s| plain(s)))
                || SecretPath::parse(&rest_text).is_ok();
            out.push(if filled { rest_text } else { part.to_owned() });
            break;
        }
        let segment = given.next().unwrap_or_default();
        out.push(if part.starts_with('{') && plain(segment) {
            segment.to_owned()
        } else {
            part.to_owned()
        });
    }
    out.join("/")
}

/// Who is asking, for the ledger: the request's id (from the access log's layer), the
/// client's address and user agent.
pub(crate) fn request_info(state: &AppState, parts: &Parts) -> RequestInfo {
    let user_agent = parts
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let id = parts
        .extensions
        .get::<crate::observe::RequestId>()
        .map_or_else(crate::record::new_request_id, |id| id.0.clone());
    RequestInfo::with_id(
        id,
        client_ip(
            &parts.headers,
            peer(parts),
            &state.settings.auth.trusted_proxies,
        ),
        user_agent,
    )
}

/// The credentials of a request to a `/v1/` route that does not exist, checked so that it
/// is answered as OpenBao answers it (sealed, then permission denied, then not found), and a
/// refusal is recorded as on every other route (`route.unknown`, with the reason): a token
/// tried there is in the ledger like one tried anywhere else.
pub(crate) async fn check_unknown_route(
    state: &AppState,
    request: Request,
) -> Result<(), ApiError> {
    let (parts, _) = request.into_parts();
    let info = request_info(state, &parts);
    match authenticate_known(state, &parts.headers, peer(&parts)).await {
        Ok(_) => Ok(()),
        Err(BadCredential { error, actor }) => {
            if (error.status == StatusCode::UNAUTHORIZED || error.status == StatusCode::FORBIDDEN)
                && state
                    .anonymous_refusals
                    .admit(state, &actor, info.client_ip)
            {
                let mut record = Record::new("route.unknown", "/v1/", Outcome::Denied);
                record.reasons.push(error.code.to_owned());
                state.record(&info, actor, record).await?;
            }
            Err(error)
        }
    }
}

/// Refusals of requests that showed no credential the server knows (no token, or a token it
/// never made), recorded up to a budget.
///
/// Security decision: such a request costs its sender nothing, and the ledger keeps its
/// entry for ever: without a bound, anyone could grow the database as fast as the server
/// answers and bury the entries that matter among theirs. So each address (an IPv6 client's
/// /64) has 20 such entries a minute, and all addresses together 200, on each node; past
/// them a refusal is counted instead, and the sweep records what it counted in one
/// `auth.suppressed` entry (how many, since when, and the addresses with the most). A
/// refusal of a token the server knows (revoked, expired, of an offboarded person) names
/// someone, and is always recorded.
#[derive(Debug, Default)]
pub(crate) struct AnonymousRefusals(std::sync::Mutex<RefusalWindow>);

#[derive(Debug, Default)]
struct RefusalWindow {
    /// The minute (Unix seconds / 60) the counts below are for.
    minute: u64,
    /// Refusals recorded this minute, in all and by address (at most [`REFUSALS_PER_NODE`]
    /// addresses).
    recorded: u32,
    by_address: HashMap<String, u32>,
    /// Refusals counted and not recorded since the sweep last took them, by address (at most
    /// [`SUPPRESSED_ADDRESSES`], then one count for the others), and since when.
    suppressed: HashMap<String, u64>,
    since: Option<Timestamp>,
    /// One-time links (share ids, wrapping accessors) a refusal as used was recorded for on
    /// this node, whatever the budget (at most [`SPENT_LINKS`]).
    spent_links: std::collections::HashSet<String>,
}

/// How many spent links [`AnonymousRefusals::admit_spent`] remembers.
const SPENT_LINKS: usize = 10_000;

const REFUSALS_PER_ADDRESS: u32 = 20;
const REFUSALS_PER_NODE: u32 = 200;
const SUPPRESSED_ADDRESSES: usize = 10_000;
/// Where refusals from addresses past [`SUPPRESSED_ADDRESSES`] are counted.
const OTHER_ADDRESSES: &str = "other addresses";

/// What the sweep records of the refusals not recorded one by one.
pub(crate) struct Suppressed {
    pub(crate) since: Timestamp,
    pub(crate) by_address: Vec<(String, u64)>,
}

impl AnonymousRefusals {
    /// Whether a refusal of `actor` from `ip` is recorded: always for someone the server
    /// knows, within the budget for anyone else (and counted when not).
    pub(crate) fn admit(&self, state: &AppState, actor: &Actor, ip: Option<IpAddr>) -> bool {
        if actor.person.is_some() || actor.token.is_some() {
            return true;
        }
        let now = state.clock.now();
        let address = ip.map_or_else(
            || "unknown".to_owned(),
            |ip| {
                crate::api::auth::ip_subject(ip)
                    .trim_start_matches("ip:")
                    .to_owned()
            },
        );
        let mut window = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let minute = now.unix_secs().div_euclid(60);
        if window.minute != minute {
            window.minute = minute;
            window.recorded = 0;
            window.by_address.clear();
        }
        let mine = window.by_address.get(&address).copied().unwrap_or(0);
        if window.recorded < REFUSALS_PER_NODE && mine < REFUSALS_PER_ADDRESS {
            window.recorded += 1;
            *window.by_address.entry(address).or_default() += 1;
            return true;
        }
        window.since.get_or_insert(now);
        let key = if window.suppressed.len() < SUPPRESSED_ADDRESSES
            || window.suppressed.contains_key(&address)
        {
            address
        } else {
            OTHER_ADDRESSES.to_owned()
        };
        *window.suppressed.entry(key).or_default() += 1;
        false
    }

    /// [`AnonymousRefusals::admit`] for a refused use of a one-time link (`link`: a share id,
    /// a wrapping token's accessor) that no longer works for `why`, except that the first
    /// refusal on this node of one used by someone else (`why` is `used`) is recorded past
    /// the budget: it is the trace of a link that may have been intercepted,
    /// which the watch raises (`link_reused`), and only whoever holds the link's key can cause
    /// it. At most [`SPENT_LINKS`] links a node's lifetime are so recorded (the set is never
    /// emptied: emptying it would let whoever holds that many used links record without
    /// bound); past them, the budget applies to all.
    pub(crate) fn admit_spent(
        &self,
        state: &AppState,
        actor: &Actor,
        ip: Option<IpAddr>,
        link: &str,
        why: &str,
    ) -> bool {
        if why == "used" {
            let mut window = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if window.spent_links.len() < SPENT_LINKS && window.spent_links.insert(link.to_owned())
            {
                return true;
            }
        }
        self.admit(state, actor, ip)
    }

    /// Puts back what [`AnonymousRefusals::take`] took, when it could not be recorded: it is
    /// recorded with the next ones.
    pub(crate) fn restore(&self, taken: Suppressed) {
        let mut window = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = window.since.map_or(taken.since, |s| s.min(taken.since));
        window.since = Some(since);
        for (address, n) in taken.by_address {
            *window.suppressed.entry(address).or_default() += n;
        }
    }

    /// The refusals counted and not recorded since the last call, most first.
    pub(crate) fn take(&self) -> Option<Suppressed> {
        let mut window = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = window.since.take()?;
        let mut by_address: Vec<(String, u64)> = window.suppressed.drain().collect();
        by_address.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Some(Suppressed { since, by_address })
    }
}

fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy. Entries are read from the right
/// (the part the trusted proxies wrote); an entry that does not parse ends the walk with an
/// unknown address (`None`), never with an entry further left that the client could have
/// written. `ip:port` and `[v6]:port` forms are accepted.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    // An IPv4 client of a dual-stack listener (or named so by a proxy) arrives as
    // `::ffff:a.b.c.d`: it is that IPv4 address for lockouts, limits and the ledger, not a
    // member of one shared IPv6 /64.
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    // Split as bytes: a byte that is not text in an entry the client wrote (further left)
    // must not hide the entries the trusted proxies wrote after it.
    let entries: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let entry = std::str::from_utf8(entry).ok()?.trim();
        let ip = entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
            .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    Some(client)
}

/// Whether a client at `ip` passes every allowlist in `networks` (each empty list allows all).
/// An unknown address passes only when there is no list at all.
pub(crate) fn network_allowed(networks: &[Vec<Cidr>], ip: Option<IpAddr>) -> bool {
    match ip {
        Some(ip) => networks.iter().all(|list| allowed(list, ip)),
        None => networks.iter().all(Vec::is_empty),
    }
}

/// The header Vault clients send their token in.
const VAULT_TOKEN: &str = "x-vault-token";

/// The token the request presents: `X-Vault-Token: <token>` (Vault clients), or
/// `Authorization: Bearer <token>`.
pub(crate) fn presented_token(headers: &HeaderMap) -> Option<zeroize::Zeroizing<String>> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    let vault = headers.get(VAULT_TOKEN).and_then(|h| h.to_str().ok());
    // `X-Vault-Token` first, as OpenBao reads them: a gateway in front may add its own
    // `Authorization: Bearer` to every request.
    vault
        .filter(|t| !t.is_empty())
        .or(bearer.filter(|t| !t.is_empty()))
        .map(|t| zeroize::Zeroizing::new(t.to_owned()))
}

/// Whether a token neither revoked nor expired may still be used: a session unused for
/// longer than the server allows may not, nor a token made from a token that has ended
/// (revoked, expired or idle), however deep the tree. For a session, its last use. Refusals
/// are 401s; shared by authentication and Vault's token lookups, so that a lookup never
/// calls live a token that would be refused.
pub(crate) async fn lineage(
    state: &AppState,
    record: &TokenRecord,
    now: Timestamp,
) -> Result<Option<Timestamp>, ApiError> {
    let unauthenticated = |message: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            message.to_owned(),
        )
    };
    let idle_secs = state.settings.auth.session_idle_secs;
    let idle = |what: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "session_idle",
            format!(
                "{what} was unused for longer than the server allows ({idle_secs} s): \
                 log in again"
            ),
        )
    };
    let mut session_last_used = None;
    if record.kind == TokenKind::Session {
        let Some(last) = idle_since(state, record, now) else {
            return Err(idle("the session"));
        };
        session_last_used = Some(last);
    }
    // A person's token made from their session (through the Vault API) ends with it, idle
    // included; the session's own use is what counts, not the child's. Every ancestor is
    // checked, however deep the tree.
    if record.person_id.is_some() {
        let mut next = record.parent_id.clone();
        for _ in 0..MAX_TOKEN_DEPTH {
            let Some(id) = next else { break };
            let parent = state
                .store
                .token_by_id(&id)
                .await?
                .ok_or_else(|| unauthenticated("invalid token"))?;
            if !parent.is_live(now) {
                return Err(unauthenticated(
                    "the token was revoked or has expired: log in again (`chaperone login`) or use another token",
                ));
            }
            if parent.kind == TokenKind::Session && idle_since(state, &parent, now).is_none() {
                return Err(idle("the session this token was made from"));
            }
            next = parent.parent_id;
        }
        if next.is_some() {
            return Err(unauthenticated("the token was made from too many tokens"));
        }
    }
    Ok(session_last_used)
}

/// Resolves the bearer token of a request into a [`Caller`]. 401 for a missing, unknown,
/// expired or revoked token; 503 while sealed.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Caller, ApiError> {
    authenticate_known(state, headers, peer)
        .await
        .map_err(|refused| refused.error)
}

/// A credential refused by [`authenticate_known`], with whose it is when the server knows
/// the token (revoked, expired, its owner offboarded, the session it was made from ended):
/// the refusal's ledger entry names that person and token, so that an auditor sees an
/// offboarded contractor's attempts under their name. An unknown token names nobody.
pub(crate) struct BadCredential {
    pub(crate) error: ApiError,
    pub(crate) actor: Actor,
}

impl From<ApiError> for BadCredential {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            actor: Actor::default(),
        }
    }
}

impl From<StoreError> for BadCredential {
    fn from(error: StoreError) -> Self {
        ApiError::from(error).into()
    }
}

/// [`authenticate`], telling whose a known token is when it is refused.
pub(crate) async fn authenticate_known(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Caller, BadCredential> {
    // A sealed (or not yet initialised) server answers 503 before looking at credentials.
    if state.keyring().is_none() {
        let status = state.seal_status().await.map_err(ApiError::from)?;
        return Err(if status.initialized {
            ApiError::sealed()
        } else {
            SealError::NotInitialized.into()
        }
        .into());
    }
    let unauthenticated = |message: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            message.to_owned(),
        )
    };
    if headers.get(axum::http::header::AUTHORIZATION).is_none()
        && headers.get(VAULT_TOKEN).is_none()
    {
        return Err(unauthenticated("missing `Authorization: Bearer <token>` header").into());
    }
    let token = presented_token(headers)
        .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
    let token = token.as_str();
    let record = state
        .store
        .token_by_hash(&ApiToken::from_presented(token).hash())
        .await?
        .ok_or_else(|| unauthenticated("invalid token"))?;
    // Whose the token is, for the entry of a refusal from here on.
    let owner = |vendor: Option<String>| Actor {
        person: record.person_id.clone(),
        vendor,
        token: Some(record.id.clone()),
    };
    let now = state.clock.now();
    if !record.is_live(now) {
        let mut vendor = None;
        // A token revoked because its owner was disabled or offboarded says so (403): the
        // identity is known, and barred; logging in again would not help.
        if let Some(person_id) = &record.person_id
            && let Some(person) = state.store.acting_person(person_id).await?
        {
            vendor.clone_from(&person.vendor_id);
            let standing = match record.revoked_at {
                Some(_) => Some(state.standing(&person).await?),
                None => None,
            };
            let barred = match standing {
                Some(s) if s.person == Standing::Inactive => {
                    Some(chaperone_core::policy::Reason::PersonInactive)
                }
                Some(s) if s.vendor == Some(Standing::Inactive) => {
                    Some(chaperone_core::policy::Reason::VendorInactive)
                }
                _ => None,
            };
            if let Some(reason) = barred {
                return Err(BadCredential {
                    error: ApiError::new(
                        StatusCode::FORBIDDEN,
                        reason.code(),
                        reason.message().to_owned(),
                    ),
                    actor: owner(vendor),
                });
            }
        }
        return Err(BadCredential {
            error: unauthenticated(
                "the token was revoked or has expired: log in again (`chaperone login`) or use another token",
            ),
            actor: owner(vendor),
        });
    }
    let session_last_used = match lineage(state, &record, now).await {
        Ok(last) => last,
        Err(error) if error.status == StatusCode::UNAUTHORIZED => {
            let vendor = match &record.person_id {
                Some(id) => state
                    .store
                    .acting_person(id)
                    .await?
                    .and_then(|p| p.vendor_id),
                None => None,
            };
            return Err(BadCredential {
                error,
                actor: owner(vendor),
            });
        }
        Err(error) => return Err(error.into()),
    };
    let ip = client_ip(headers, peer, &state.settings.auth.trusted_proxies);
    let mut vendor_id = None;
    let mut principal = match &record.person_id {
        Some(person_id) => {
            let Some(person) = state.store.acting_person(person_id).await? else {
                return Err(BadCredential {
                    error: unauthenticated("invalid token"),
                    actor: owner(None),
                });
            };
            vendor_id.clone_from(&person.vendor_id);
            state.person_principal(&person, ip).await?
        }
        None => Principal::of_role(parse_role(&record.role)?),
    };
    principal.scope = record.scope.as_deref().map(parse_scope).transpose()?;
    principal.mfa_verified_at = record.mfa_verified_at;
    Ok(Caller {
        client_ip: ip,
        token_id: record.id,
        person_id: record.person_id,
        vendor_id,
        kind: record.kind,
        principal,
        session_last_used,
    })
}

/// When the session `record` was last used, as recorded; `None` once it has been unused for
/// longer than the server allows.
///
/// The use is the later of the record's and this process's own mark: with SQLite the record
/// may come from the cache, which recording a use does not empty (so that active sessions
/// do not empty every cache once a minute each), and the mark is what this process wrote
/// since. A stale record can only be older than the truth, never newer.
fn idle_since(state: &AppState, record: &TokenRecord, now: Timestamp) -> Option<Timestamp> {
    let limit = state.settings.auth.session_idle_secs;
    let marked = state
        .session_marks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&record.id)
        .copied();
    let last = record
        .last_used_at
        .unwrap_or(record.created_at)
        .max(marked.unwrap_or(record.created_at));
    (now.unix_nanos() - last.unix_nanos() <= limit.saturating_mul(1_000_000_000)).then_some(last)
}

/// The deepest chain of tokens made from tokens that authentication follows; deeper chains
/// are refused (revocation cascades through any depth, but each request walks the chain).
const MAX_TOKEN_DEPTH: usize = 16;

/// How stale a session's recorded use may be: it is written at most once in this many
/// seconds per session, so idleness is judged to the minute and an active session costs
/// one write a minute, not one per request.
pub(crate) const SESSION_MARK_SECS: i64 = 60;

/// Records that a session was used `now`, if its record (`last`) is a minute old or more
/// and this process has not recorded it in the last minute. The record is in the store, so
/// that every node and a restarted one judge idleness alike.
async fn note_session_use(
    state: &AppState,
    id: &str,
    last: Timestamp,
    now: Timestamp,
) -> Result<(), ApiError> {
    let stale =
        |at: Timestamp| now.unix_nanos() - at.unix_nanos() >= SESSION_MARK_SECS * 1_000_000_000;
    if !stale(last) {
        return Ok(());
    }
    {
        let mut marks = state
            .session_marks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if marks.get(id).is_some_and(|&at| !stale(at)) {
            return Ok(());
        }
        // Marks older than the idle limit decide nothing: they go before the map grows
        // large.
        if marks.len() >= 10_000 {
            let limit = state
                .settings
                .auth
                .session_idle_secs
                .saturating_mul(1_000_000_000);
            marks.retain(|_, at| now.unix_nanos() - at.unix_nanos() <= limit);
        }
        marks.insert(id.to_owned(), now);
    }
    if let Err(error) = state.store.mark_token_used(id, now).await {
        // Not recorded: the request the policy allowed still goes ahead, and the next one
        // tries again.
        tracing::warn!(%error, token = %id, "a session's use was not recorded");
        let mut marks = state
            .session_marks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if marks.get(id) == Some(&now) {
            marks.remove(id);
        }
    }
    Ok(())
}

fn parse_role(text: &str) -> Result<Role, ApiError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown role `{text}`")).into())
}

fn parse_scope(json: &str) -> Result<Vec<PathRule>, ApiError> {
    let rules: Vec<RuleBody> = serde_json::from_str(json)
        .map_err(|e| ApiError::from(StoreError::Corrupt(format!("token scope: {e}"))))?;
    rules.iter().map(|r| r.to_rule(None)).collect()
}

/// A person's standing, as the policy and the login see it.
pub(crate) struct PersonStanding {
    pub(crate) person: Standing,
    pub(crate) vendor: Option<Standing>,
    /// The person's and the vendor's allowlists (each empty when unrestricted).
    pub(crate) networks: Vec<Vec<Cidr>>,
}

impl PersonStanding {
    /// Whether the person may act at all: active, and of an active vendor if any.
    pub(crate) fn active(&self) -> bool {
        self.person == Standing::Active && self.vendor.is_none_or(|v| v == Standing::Active)
    }
}

impl AppState {
    /// `person` as the policy sees them apart from any token (no scope, no MFA time): their
    /// role, their standing and their vendor's, whether `ip` is inside their allowlists,
    /// and their grants.
    pub(crate) async fn person_principal(
        &self,
        person: &chaperone_store::PersonRecord,
        ip: Option<IpAddr>,
    ) -> Result<Principal, ApiError> {
        let standing = self.standing(person).await?;
        let grants = self
            .store
            .grants_of(&person.id)
            .await?
            .iter()
            .map(|g| PathRule {
                prefix: g.prefix.clone(),
                capabilities: g
                    .capabilities
                    .iter()
                    .filter_map(|c| c.parse().ok())
                    .collect(),
                expires_at: Some(g.expires_at),
                // A break-glass grant was approved by nobody, and is held to no approval
                // count; but it is held to the longest grant a path's level allows, so a
                // path classified stricter since is not reached for longer than that level
                // grants anything.
                terms: g.terms.or_else(|| {
                    g.break_glass.then(|| chaperone_core::policy::GrantTerms {
                        approvals: u32::MAX,
                        secs: (g.expires_at.unix_nanos() - g.created_at.unix_nanos())
                            .div_euclid(1_000_000_000),
                    })
                }),
            })
            .collect();
        Ok(Principal {
            person: standing.person,
            vendor: standing.vendor,
            grants,
            network_allowed: network_allowed(&standing.networks, ip),
            ..Principal::of_role(parse_role(&person.role)?)
        })
    }

    /// The policy's decision on `action` over the secret at `path` for `principal` (with
    /// the compliance facts of `person_id` and `vendor_id`), as at a request from `client`
    /// now: for decisions made outside the request layer, on someone's behalf.
    pub(crate) async fn decide_on_secret(
        &self,
        mut principal: Principal,
        person_id: Option<&String>,
        vendor_id: Option<&String>,
        action: Action,
        path: &SecretPath,
        client: Option<IpAddr>,
    ) -> Result<Decision, ApiError> {
        let level = self.classify(path).await?;
        if level.step_up
            && let Some(scope) = &principal.scope
        {
            let steps_up = self.scope_steps_up(scope, path, self.clock.now()).await?;
            principal.scope_steps_up = steps_up;
        }
        principal.compliance = self.compliance(person_id, vendor_id, &level).await?;
        Ok(decide(
            &principal,
            action,
            Resource::Secret(path, &level),
            self.context(client),
        ))
    }

    /// The circumstances of a decision made now for a request from `client`.
    pub(crate) fn context(&self, client: Option<IpAddr>) -> Context {
        Context {
            now: self.clock.now(),
            step_up_window_nanos: self
                .settings
                .auth
                .step_up_secs
                .saturating_mul(1_000_000_000),
            client,
        }
    }

    /// Holds `caller` to `action` on `path` as well as to the route's own action, for a
    /// change that does what `action` does: refused (and the refusal recorded) as the request
    /// layer refuses, with `why` in front of the policy's reason.
    pub(crate) async fn require_also(
        &self,
        caller: &Caller,
        info: &RequestInfo,
        action: Action,
        path: &SecretPath,
        why: &str,
    ) -> Result<(), ApiError> {
        let decision = self
            .decide_on_secret(
                caller.principal.clone(),
                caller.person_id.as_ref(),
                caller.vendor_id.as_ref(),
                action,
                path,
                caller.client_ip,
            )
            .await?;
        if decision.allowed {
            return Ok(());
        }
        let reason = decision
            .reasons
            .first()
            .cloned()
            .expect("a denial has a reason");
        let record = Record::denied(action.as_str(), path.as_str(), &decision);
        self.record(info, caller.actor(), record).await?;
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            reason.code(),
            format!("{why}: {}", reason.message()),
        ))
    }

    /// The policy's decision on `action` over `path` for its maker, when someone else uses
    /// from `client` what the maker set up earlier (a request link's submission, the unwrap
    /// of an answer the maker wrapped): the maker's role, grants, standing and the
    /// continuous gate as they are now. The maker's own allowlists bound where the maker
    /// acts from, and the other party is elsewhere, so only the path's level's networks are
    /// held against `client`. `stepped_up` stands for a step-up the maker already passed
    /// for this use (an unwrap: the read was made, step-up included, when it was wrapped).
    /// A maker who no longer exists is refused as inactive.
    pub(crate) async fn maker_decision(
        &self,
        maker_id: &str,
        action: Action,
        path: &SecretPath,
        client: Option<IpAddr>,
        stepped_up: bool,
    ) -> Result<Decision, ApiError> {
        let Some(maker) = self.store.acting_person(maker_id).await? else {
            return Ok(Decision::deny(Reason::PersonInactive));
        };
        let mut principal = self.person_principal(&maker, None).await?;
        principal.network_allowed = true;
        if stepped_up {
            principal.mfa_verified_at = Some(self.clock.now());
        }
        self.decide_on_secret(
            principal,
            Some(&maker.id),
            maker.vendor_id.as_ref(),
            action,
            path,
            client,
        )
        .await
    }

    /// Resolves whether a person and their vendor are active, and their allowlists.
    pub(crate) async fn standing(
        &self,
        person: &chaperone_store::PersonRecord,
    ) -> Result<PersonStanding, ApiError> {
        let parse = |list: &[String]| -> Result<Vec<Cidr>, ApiError> {
            list.iter()
                .map(|n| n.parse().map_err(|e: String| StoreError::Corrupt(e).into()))
                .collect()
        };
        let mut networks = vec![parse(&person.allowed_networks)?];
        let vendor = match &person.vendor_id {
            Some(id) => {
                let vendor = self.store.vendor(id).await?;
                if let Some(v) = &vendor {
                    networks.push(parse(&v.allowed_networks)?);
                }
                // Only these statuses let a vendor's people in; every other (and any future
                // one) keeps them out.
                let admits = vendor
                    .as_ref()
                    .and_then(|v| v.status.parse::<VendorStatus>().ok())
                    .is_some_and(VendorStatus::admits_people);
                Some(if admits {
                    Standing::Active
                } else {
                    Standing::Inactive
                })
            }
            None => None,
        };
        // An account past its own end date acts no more, whether or not the sweep has
        // disabled it yet.
        let ended = person.ends_at.is_some_and(|end| end <= self.clock.now());
        let person = if person.disabled_at.is_some() || ended {
            Standing::Inactive
        } else {
            Standing::Active
        };
        Ok(PersonStanding {
            person,
            vendor,
            networks,
        })
    }

    /// Whether a rule of `scope` that allows reading `path` names a prefix classified, by
    /// itself, at a level with step-up (see `Principal::scope_steps_up`).
    async fn scope_steps_up(
        &self,
        scope: &[PathRule],
        path: &SecretPath,
        now: Timestamp,
    ) -> Result<bool, ApiError> {
        let rules = self.classification_rules().await?;
        for rule in scope {
            if rule.allows(Capability::Read, Some(path), now)
                && crate::api::governance::level_of(
                    &rules.levels,
                    &rules.classifications,
                    &rule.prefix,
                )?
                .step_up
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The classification level of `path`: that of the longest classified prefix covering
    /// it, the default level when none does.
    pub(crate) async fn classify(&self, path: &SecretPath) -> Result<LevelPolicy, ApiError> {
        let rules = self.classification_rules().await?;
        crate::api::governance::level_of(&rules.levels, &rules.classifications, path.as_str())
            .cloned()
    }

    /// Classified prefixes and level policies, parsed; kept while the store's access
    /// generation stays the same (see `Store::access_generation`).
    async fn classification_rules(&self) -> Result<Arc<ClassificationRules>, ApiError> {
        let generation = self.store.access_generation();
        if let Some(rules) = self.rules.get(generation, &()) {
            return Ok(rules);
        }
        let (classifications, stored) = self.store.classification_rules().await?;
        let rules = Arc::new(ClassificationRules {
            levels: crate::api::governance::merge_levels(&stored)?,
            classifications,
        });
        self.rules.put(generation, (), Arc::clone(&rules));
        Ok(rules)
    }

    /// What the continuous gate needs to decide on `level` for `caller`: `None` when the
    /// level asks for nothing that applies to the caller (so most requests read nothing
    /// more). The facts are dates and versions, which the gate compares with the clock at each
    /// request (an expiry needs no change to take effect), so they are kept while the access
    /// generation stays the same: an agreement added or terminated, evidence, a policy
    /// version or an acknowledgement recorded is a change, and moves it.
    pub(crate) async fn compliance(
        &self,
        person_id: Option<&String>,
        vendor_id: Option<&String>,
        level: &LevelPolicy,
    ) -> Result<Option<Compliance>, ApiError> {
        let Some(person_id) = person_id else {
            return Ok(None);
        };
        let vendor_rules = !level.agreements.is_empty() || !level.evidence.is_empty();
        let vendor_id = vendor_id.filter(|_| vendor_rules);
        if vendor_id.is_none() && level.acknowledgements.is_empty() {
            return Ok(None);
        }
        // The key is what the facts are read for, not the level's name: the level may have
        // been read under an older generation than the one taken here.
        let generation = self.store.access_generation();
        let key = (
            person_id.clone(),
            vendor_id.cloned(),
            level.acknowledgements.clone(),
        );
        if let Some(kept) = self.compliance.get(generation, &key) {
            return Ok(Some(kept));
        }
        let person = self
            .store
            .acting_person(person_id)
            .await?
            .ok_or_else(|| ApiError::not_found("the caller no longer exists"))?;
        let mut compliance = Compliance {
            person: person.name,
            ..Compliance::default()
        };
        if let Some(vendor_id) = vendor_id {
            let vendor = self.store.vendor(vendor_id).await?;
            compliance.vendor = Some(vendor.map_or_else(|| vendor_id.clone(), |v| v.name));
            compliance.agreements = crate::api::governance::agreements_of(self, vendor_id)
                .await?
                .iter()
                .map(|(_, a)| a.facts())
                .collect();
            compliance.evidence = crate::api::governance::evidence_of(self, vendor_id)
                .await?
                .iter()
                .map(|(_, e)| e.facts())
                .collect();
        }
        if !level.acknowledgements.is_empty() {
            let policies = crate::api::governance::policies(self).await?;
            let acknowledged = crate::api::governance::acknowledged(self, person_id).await?;
            compliance.acknowledgements = level
                .acknowledgements
                .iter()
                .map(|name| AcknowledgementFacts {
                    policy: name.clone(),
                    latest: policies
                        .get(name)
                        .and_then(|v| v.last())
                        .map(|v| v.version()),
                    acknowledged: acknowledged.get(name).copied(),
                })
                .collect();
        }
        self.compliance.put(generation, key, compliance.clone());
        Ok(Some(compliance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_never_a_secret_path() {
        // The path rules know a token's shape without depending on the crypto crate.
        for _ in 0..16 {
            let token = chaperone_crypto::token::ApiToken::generate();
            assert!(chaperone_core::path::looks_like_token(token.expose()));
            assert!(SecretPath::parse(&format!("team/{}", token.expose())).is_err());
        }
    }

    #[test]
    fn a_refused_request_path_keeps_ids_and_names_never_tokens_or_odd_text() {
        let long = format!("/api/v1/vendors/{}", "a".repeat(65));
        let cases = [
            (
                "/api/v1/requests/{id}/approve",
                "/api/v1/requests/req_0123456789abcdef/approve",
                "/api/v1/requests/req_0123456789abcdef/approve",
            ),
            (
                "/api/v1/vendors/{name}",
                "/api/v1/vendors/acme",
                "/api/v1/vendors/acme",
            ),
            // A token pasted where its id belongs is never written.
            (
                "/api/v1/auth/tokens/{id}",
                "/api/v1/auth/tokens/chp_q8NnZ3kTbW0vYx2LmR5sJ7dA9fGhUoPeCiKtV1wXyz4",
                "/api/v1/auth/tokens/{id}",
            ),
            // Nor long, encoded or odd text.
            (
                "/api/v1/vendors/{name}",
                long.as_str(),
                "/api/v1/vendors/{name}",
            ),
            (
                "/api/v1/vendors/{name}",
                "/api/v1/vendors/%61cme",
                "/api/v1/vendors/{name}",
            ),
            (
                "/api/v1/vendors/{name}",
                "/api/v1/vendors/a b",
                "/api/v1/vendors/{name}",
            ),
            // A trailing path: plain segments or a valid secret path.
            (
                "/v1/secret/metadata/{*path}",
                "/v1/secret/metadata/acme/app/db",
                "/v1/secret/metadata/acme/app/db",
            ),
            (
                "/api/v1/ledger/tile/{*path}",
                "/api/v1/ledger/tile/0/x001/234",
                "/api/v1/ledger/tile/0/x001/234",
            ),
            (
                "/v1/secret/metadata/{*path}",
                "/v1/secret/metadata/a/../b",
                "/v1/secret/metadata/{*path}",
            ),
            (
                "/api/v1/auth/self",
                "/api/v1/auth/self",
                "/api/v1/auth/self",
            ),
        ];
        for (pattern, path, recorded) in cases {
            assert_eq!(route_resource(pattern, path), recorded, "{path}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.7".parse().unwrap());
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            client_ip(&headers, ip("10.0.0.5"), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(&headers, ip("198.51.100.1"), &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_ip(&HeaderMap::new(), ip("10.0.0.5"), &trusted),
            ip("10.0.0.5")
        );
        // Bytes that are not text in what the client wrote do not hide what the proxy
        // appended after them; reached while walking from the right, they end the walk.
        let garbled = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-forwarded-for",
                axum::http::HeaderValue::from_bytes(value).unwrap(),
            );
            client_ip(&headers, ip("10.0.0.5"), &trusted)
        };
        assert_eq!(garbled(b"\xff, 203.0.113.7"), ip("203.0.113.7"));
        assert_eq!(garbled(b"203.0.113.7, \xff"), None);
        assert_eq!(garbled(b"\xff\xfe"), None);
    }

    #[test]
    fn ipv4_mapped_clients_are_their_ipv4_address() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        // A dual-stack listener's IPv4 peer.
        assert_eq!(
            client_ip(&HeaderMap::new(), ip("::ffff:192.0.2.1"), &[]),
            ip("192.0.2.1")
        );
        // A mapped trusted proxy, and a mapped client named by it.
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "::ffff:203.0.113.9".parse().unwrap());
        assert_eq!(
            client_ip(&headers, ip("::ffff:10.0.0.5"), &trusted),
            ip("203.0.113.9")
        );
        // Two IPv4 clients are two lockout subjects, not one shared IPv6 /64.
        let subject = |s: &str| crate::api::auth::ip_subject(s.parse().unwrap());
        assert_eq!(subject("::ffff:192.0.2.1"), "ip:192.0.2.1");
        assert_ne!(subject("::ffff:192.0.2.1"), subject("::ffff:192.0.2.2"));
    }
}

/// Classified prefixes and the level policies, as one request reads them.
#[derive(Debug)]
pub(crate) struct ClassificationRules {
    levels: Vec<LevelPolicy>,
    classifications: Vec<(String, String)>,
}
