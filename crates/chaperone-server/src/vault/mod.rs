//! `/v1/...`: the HashiCorp Vault / OpenBao HTTP API, so that existing clients (hvac, the
//! `vault` and `bao` CLIs, CI jobs) work against Chaperone unmodified.
//!
//! The routes are part of the one route table (`api::routes`): each declares the `Action`
//! it performs, and the same authorisation middleware, policy decision and ledger apply as
//! for the native API. This module only speaks Vault's wire format:
//!
//! - [`compat`] runs before routing: it turns Vault's `LIST` verb (and `?list=true`) into a
//!   `GET` of the listing route, and turns every error answer of a `/v1/` route that a
//!   handler did not format itself into Vault's `{"errors": [...]}`, with 403 (never 401)
//!   for a missing or bad token and `Vault is sealed` for a sealed server.
//! - Handlers answer with [`envelope`] (`request_id`, `lease_id`, `renewable`,
//!   `lease_duration`, `data`, `wrap_info`, `warnings`, `auth`).
//! - Tokens come from `X-Vault-Token` or `Authorization: Bearer` (see `auth::authenticate`).

mod capabilities;
mod kv;
mod sys;
mod token;
mod weak;
pub(crate) mod wrapping;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use chaperone_core::policy::Action;
use chaperone_ledger::entry::Actor;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{Guard, On, RouteSpec, guarded, route};
use crate::record::RequestInfo;

/// The mount Chaperone's secrets appear under, as a KV version 2 engine.
pub(crate) const MOUNT: &str = "secret/";

/// The header that asks for a wrapped answer.
pub(crate) const WRAP_TTL: &str = "x-vault-wrap-ttl";

/// Largest answer that can be wrapped.
const MAX_WRAPPED: usize = 32 * 1024 * 1024;

/// Marks a response already in Vault's format.
#[derive(Clone, Copy)]
struct Formatted;

/// Marks an answer that is an error status with a full envelope, which OpenBao wraps as it
/// wraps a success (a read of a deleted or destroyed version: 404, with its metadata); the
/// status goes with the wrapping and comes back at unwrap.
#[derive(Clone, Copy)]
pub(crate) struct WrappedWithStatus;

/// Every `/v1/` route, for the route table.
pub(crate) fn routes() -> Vec<(RouteSpec, MethodRouter<Arc<AppState>>)> {
    use Action::*;
    use Method as M;
    const DATA: &str = "/v1/secret/data/{*path}";
    const META: &str = "/v1/secret/metadata/{*path}";
    let mut routes = vec![
        route(M::GET, "/v1/sys/health", None, On::System, sys::health),
        route(
            M::GET,
            "/v1/sys/seal-status",
            None,
            On::System,
            sys::seal_status,
        ),
        route(M::GET, "/v1/sys/init", None, On::System, sys::init),
        route(M::GET, "/v1/sys/leader", None, On::System, sys::leader),
        route(
            M::GET,
            "/v1/sys/mounts",
            Some(ReadMounts),
            On::System,
            sys::mounts,
        ),
        route(
            M::GET,
            "/v1/sys/auth",
            Some(ReadMounts),
            On::System,
            sys::auth,
        ),
        route(
            M::GET,
            "/v1/sys/internal/ui/mounts/{*path}",
            Some(ReadMounts),
            On::System,
            sys::ui_mount,
        ),
        route(
            M::GET,
            "/v1/auth/token/lookup-self",
            Some(SelfToken),
            On::System,
            token::lookup_self,
        ),
        route(M::GET, DATA, Some(SecretRead), On::Secret, kv::read),
        route(M::PATCH, DATA, Some(SecretWrite), On::Secret, kv::patch),
        route(
            M::DELETE,
            DATA,
            Some(SecretDelete),
            On::Secret,
            kv::delete_latest,
        ),
        route(M::GET, META, Some(SecretList), On::Secret, kv::metadata),
        route(
            M::PATCH,
            META,
            Some(SecretMetadataWrite),
            On::Secret,
            kv::patch_metadata,
        ),
        route(
            M::DELETE,
            META,
            Some(SecretDestroy),
            On::Secret,
            kv::delete_all,
        ),
        route(
            M::GET,
            "/v1/secret/list",
            Some(SecretList),
            On::Listing,
            kv::list_root,
        ),
        route(
            M::GET,
            "/v1/secret/list/{*prefix}",
            Some(SecretList),
            On::Listing,
            kv::list,
        ),
        route(
            M::GET,
            "/v1/secret/config",
            Some(ReadMounts),
            On::System,
            kv::config,
        ),
    ];
    // Vault takes writes as POST or PUT alike (hvac sends POST, the CLIs PUT).
    routes.extend(both(
        "/v1/auth/token/lookup-self",
        Some(SelfToken),
        On::System,
        token::lookup_self,
    ));
    routes.extend(
        both(
            "/v1/auth/token/create",
            Some(OwnTokens),
            On::System,
            token::create,
        )
        .map(|r| guarded(Guard::Mint, r)),
    );
    routes.extend(
        both(
            "/v1/auth/token/create-orphan",
            Some(OwnTokens),
            On::System,
            token::create_orphan,
        )
        .map(|r| guarded(Guard::MintOrphan, r)),
    );
    routes.extend(both(
        "/v1/auth/token/renew",
        Some(OwnTokens),
        On::System,
        token::renew,
    ));
    routes.extend(both(
        "/v1/auth/token/renew-self",
        Some(SelfToken),
        On::System,
        token::renew_self,
    ));
    routes.extend(both(
        "/v1/auth/token/revoke-self",
        Some(SelfToken),
        On::System,
        token::revoke_self,
    ));
    routes.extend(both(
        "/v1/auth/token/lookup",
        Some(OwnTokens),
        On::System,
        token::lookup,
    ));
    routes.extend(both(
        "/v1/auth/token/revoke",
        Some(OwnTokens),
        On::System,
        token::revoke_token,
    ));
    routes.extend(both(
        "/v1/auth/token/lookup-accessor",
        Some(OwnTokens),
        On::System,
        token::lookup_accessor,
    ));
    routes.extend(both(
        "/v1/auth/token/renew-accessor",
        Some(OwnTokens),
        On::System,
        token::renew_accessor,
    ));
    routes.extend(both(
        "/v1/auth/token/revoke-accessor",
        Some(OwnTokens),
        On::System,
        token::revoke_accessor,
    ));
    routes.extend(both(
        "/v1/auth/userpass/login/{user}",
        None,
        On::System,
        token::userpass_login,
    ));
    routes.extend(both(
        "/v1/sys/capabilities-self",
        Some(SelfToken),
        On::System,
        capabilities::capabilities_self,
    ));
    routes.extend(both("/v1/sys/unseal", None, On::System, sys::unseal));
    routes.extend(both("/v1/sys/init", None, On::System, sys::init_write));
    routes.extend(both("/v1/sys/seal", Some(Seal), On::System, sys::seal));
    routes.extend(both(
        "/v1/sys/wrapping/unwrap",
        None,
        On::System,
        wrapping::unwrap,
    ));
    routes.extend(both(
        "/v1/sys/wrapping/lookup",
        None,
        On::System,
        wrapping::lookup,
    ));
    routes.extend(both(
        "/v1/sys/wrapping/wrap",
        Some(OwnTokens),
        On::System,
        wrapping::wrap_data,
    ));
    routes.extend(both(DATA, Some(SecretWrite), On::Secret, kv::write));
    routes.extend(both(
        META,
        Some(SecretMetadataWrite),
        On::Secret,
        kv::write_metadata,
    ));
    routes.extend(both(
        "/v1/secret/delete/{*path}",
        Some(SecretDelete),
        On::Secret,
        kv::delete_versions,
    ));
    routes.extend(both(
        "/v1/secret/undelete/{*path}",
        Some(SecretDelete),
        On::Secret,
        kv::undelete_versions,
    ));
    routes.extend(both(
        "/v1/secret/destroy/{*path}",
        Some(SecretDestroy),
        On::Secret,
        kv::destroy_versions,
    ));
    routes
}

/// The same handler for `POST` and `PUT`.
fn both<H, T>(
    path: &'static str,
    action: Option<Action>,
    on: On,
    handler: H,
) -> [(RouteSpec, MethodRouter<Arc<AppState>>); 2]
where
    H: Handler<T, Arc<AppState>> + Clone,
    T: 'static,
{
    [
        route(Method::POST, path, action, on, handler.clone()),
        route(Method::PUT, path, action, on, handler),
    ]
}

/// A Vault response envelope around `data`.
pub(crate) fn envelope(info: &RequestInfo, data: Value) -> Value {
    json!({
        "request_id": info.request_id,
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
    })
}

/// [`envelope`] with each of `data`'s fields also at the top level, as Vault answers the
/// `sys/` listings (`sys/mounts`, `sys/auth`, `sys/capabilities-self`) for its older
/// clients.
pub(crate) fn envelope_flat(info: &RequestInfo, data: serde_json::Map<String, Value>) -> Value {
    let mut body = envelope(info, Value::Object(data.clone()));
    if let Value::Object(top) = &mut body {
        top.extend(data);
    }
    body
}

/// A JSON answer in Vault's format, exempt from [`compat`]'s error rewriting.
pub(crate) fn reply(status: StatusCode, body: &Value) -> Response {
    let body = serde_json::to_vec(body).expect("a JSON value always serialises");
    let mut response = (status, body).into_response();
    vault_headers(&mut response);
    response
}

/// `Content-Type: application/json` and `Cache-Control: no-store` on every answer, as
/// OpenBao sends them; and the mark that the answer is in Vault's format.
fn vault_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.extensions_mut().insert(Formatted);
}

/// Vault's error answer: `{"errors": [message]}`.
pub(crate) fn errors(status: StatusCode, message: &str) -> Response {
    reply(status, &json!({ "errors": [message] }))
}

/// `response`, marked as a handler's refusal with `code`, so that the authorisation
/// middleware records it in the ledger as a denial (see `error::Refused`). For answers
/// whose status Vault clients expect as they are (a 400 for an accessor one may not touch,
/// a 204 for revoking a token one may not).
pub(crate) fn refused(mut response: Response, code: &'static str) -> Response {
    response
        .extensions_mut()
        .insert(crate::error::Refused(code));
    response
}

/// 204 No Content, as Vault answers writes that return nothing.
pub(crate) fn no_content() -> Response {
    empty(StatusCode::NO_CONTENT)
}

/// An answer with Vault's headers and no body: OpenBao's 204, and its 404 to a `PATCH` of
/// a secret (or metadata) that does not exist.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut response = status.into_response();
    vault_headers(&mut response);
    response
}

/// Largest error body rewritten; native error bodies are small.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The Vault layer: `LIST` and `?list=true` become the listing route before routing, and
/// error answers become Vault's format after. Other paths pass untouched.
pub(crate) async fn compat(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    // A path with `//`, `.` or `..` segments is sent to its clean form, as OpenBao's HTTP
    // server sends it (307, the method kept), before anything else: nothing runs, and the
    // client asks again for the path every check then sees. The clean form of a `/v1/` path
    // is a path on this server (never `//host`).
    if let Some(clean) = cleaned(request.uri().path()) {
        // Only to a path of this API, and never with a `\`, which browsers read as `/`
        // (`/\host` is another site to them).
        if !clean.starts_with("/v1/") || clean.contains('\\') {
            return reply(StatusCode::NOT_FOUND, &json!({ "errors": [] }));
        }
        return redirect(&request, &clean);
    }
    // Chaperone has one tree, the root namespace: a client aimed at another namespace is
    // told it does not exist, as OpenBao tells it, rather than served the root's secrets.
    // As in OpenBao, the seal status and leader are the server's whatever the namespace
    // (`bao status` works with `BAO_NAMESPACE` set), health, init and unseal are refused
    // with any namespace named, the root's too, and a sealed server says so first.
    if let Some(namespace) = request.headers().get("x-vault-namespace") {
        let given = namespace.to_str().unwrap_or("?").trim();
        let name = given.trim_matches('/');
        let path = request.uri().path();
        if !given.is_empty() && matches!(path, "/v1/sys/health" | "/v1/sys/init" | "/v1/sys/unseal")
        {
            return errors(
                StatusCode::BAD_REQUEST,
                "operation unavailable in namespaces",
            );
        }
        if !(name.is_empty() || name == "root") {
            match path {
                "/v1/sys/seal-status" | "/v1/sys/leader" => {}
                _ if state.keyring().is_none() => {
                    return errors(StatusCode::SERVICE_UNAVAILABLE, "Vault is sealed");
                }
                _ => return errors(StatusCode::NOT_FOUND, "namespace not found"),
            }
        }
    }
    // Sealing a sealed server has nothing to do: OpenBao answers 204 whoever asks (the seal
    // status tells anyone the server is sealed), and a sealed server has no tokens to check.
    if state.keyring().is_none()
        && matches!(*request.method(), Method::PUT | Method::POST)
        && request.uri().path() == "/v1/sys/seal"
    {
        return no_content();
    }
    // A PATCH is a JSON merge patch or nothing, as OpenBao has it, before any token is
    // looked at: a client that sends another type learns so instead of a different patch.
    if request.method() == Method::PATCH {
        let given = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let media = given.split(';').next().unwrap_or_default().trim();
        if media.is_empty() {
            return errors(StatusCode::BAD_REQUEST, "mime: no media type");
        }
        if !media.eq_ignore_ascii_case("application/merge-patch+json") {
            return errors(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "PATCH requires Content-Type of application/merge-patch+json, provided \
                     {media}"
                ),
            );
        }
    }
    // `secret/list/...` is where listings are routed after the rewrite below, not a path of
    // Vault's API: asked for directly, it is one more path the mount does not have, as in
    // OpenBao (and answered as such after the usual checks of the token).
    if let Some(rest) = request.uri().path().strip_prefix(LISTING)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        let unrouted = format!("{LISTING}-{rest}");
        *request.uri_mut() = unrouted
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/v1/secret/-"));
    }
    if rewrite_list(&mut request).is_err() {
        return reply(StatusCode::BAD_REQUEST, &json!({ "errors": [] }));
    }
    // The route as the handlers saw it: percent-decoded, as axum decodes path parameters, so
    // that a wrapping made through `acme/app%2Fdb` names `acme/app/db` (where it is checked
    // again at unwrap) and its ledger entries name the path the reads do.
    let raw = &request.uri().path()["/v1/".len()..];
    let route = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_or_else(|_| raw.to_owned(), |decoded| decoded.into_owned());
    let request_id = request
        .extensions()
        .get::<crate::observe::RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    // The `bao kv` command OpenBao's warning names for a path the KV v2 mount does not have:
    // `list` for a list anywhere but under `metadata/` (left a `LIST` by `rewrite_list`).
    let kv_command = match request.method().as_str() {
        "LIST" => "list",
        "POST" | "PUT" => "put",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "get",
    };
    // Methods OpenBao has no operation for are refused by its HTTP server, with no message;
    // `OPTIONS` is an operation only its own backends have (its status routes refuse it as
    // any other method they do not take).
    let method = request.method().as_str();
    let status_route = STATUS_ROUTES.contains(&route.as_str());
    if !matches!(
        method,
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "LIST" | "HEAD" | "OPTIONS"
    ) || (method == "OPTIONS" && status_route)
    {
        return reply(StatusCode::METHOD_NOT_ALLOWED, &json!({ "errors": [] }));
    }
    if method == "OPTIONS" {
        return errors(
            StatusCode::BAD_REQUEST,
            "cannot handle internal-only request operation",
        );
    }
    // OpenBao answers HEAD on `sys/health` only. Elsewhere it would run the GET (a secret
    // read, recorded as given) and send nothing: 405, before anything runs; 404 where no
    // route is (the KV mount takes every path under it).
    if request.method() == Method::HEAD && route != "sys/health" {
        if state.keyring().is_none() {
            return empty(StatusCode::SERVICE_UNAVAILABLE);
        }
        if !(route == "secret" || route.starts_with("secret/") || is_route(&route)) {
            return empty(StatusCode::NOT_FOUND);
        }
        return errors(
            StatusCode::METHOD_NOT_ALLOWED,
            "1 error occurred:\n\t* unsupported operation\n\n",
        );
    }
    // Checked before the request runs: a read or a token made, recorded, and then refused
    // for a bad header would be an answer recorded as given that nobody received.
    let wrap_ttl = match request.headers().get(WRAP_TTL).map(|v| {
        v.to_str()
            .map_err(|e| e.to_string())
            .and_then(|ttl| wrapping::parse_ttl(ttl, state.settings.auth.max_token_ttl_secs))
    }) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(ttl))) => Some(ttl),
        Some(Err(e)) => {
            return errors(
                StatusCode::BAD_REQUEST,
                &format!("invalid X-Vault-Wrap-TTL: {e}"),
            );
        }
    };
    // An unwrap asked to wrap its answer again would hand out the plaintext instead: it is
    // refused before the wrapping is spent.
    if wrap_ttl.is_some() && route == "sys/wrapping/unwrap" {
        return errors(
            StatusCode::BAD_REQUEST,
            "X-Vault-Wrap-TTL is not supported on sys/wrapping/unwrap: unwrap, then wrap the \
             answer with sys/wrapping/wrap",
        );
    }
    let response = next.run(request).await;
    // A successful answer with data is wrapped when asked, and so is one a handler marked
    // `WrappedWithStatus` (never the wrapping routes' own answers, apart from `wrap`), and only for a caller who proved who they are: a
    // token, or the password of a successful login. Each wrapping is stored and recorded,
    // which an anonymous request must not cause. Open routes (`sys/health`,
    // `sys/seal-status`, `sys/init`) answer unwrapped, as OpenBao's do.
    let wrappable = (!route.starts_with("sys/wrapping/") || route == "sys/wrapping/wrap")
        && (response.extensions().get::<Actor>().is_some()
            || route.starts_with("auth/userpass/login/"));
    if let Some(ttl) = wrap_ttl
        && wrappable
        && (response.status() == StatusCode::OK
            || response.extensions().get::<WrappedWithStatus>().is_some())
        && response.extensions().get::<Formatted>().is_some()
    {
        return wrap_answer(&state, &route, ttl, response).await;
    }
    if response.status().as_u16() < 400 || response.extensions().get::<Formatted>().is_some() {
        return response;
    }
    let status = response.status();
    // The route's label goes with the answer Vault's way, for the metrics and the log line.
    let label = response
        .extensions()
        .get::<crate::observe::RouteLabel>()
        .cloned();
    let mut answer = async move {
        let body = axum::body::to_bytes(response.into_body(), MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let native: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let code = native["error"]["code"].as_str().unwrap_or_default();
        let message = native["error"]["message"]
            .as_str()
            .unwrap_or("request failed");
        // A path under `secret/` that the KV v2 mount does not have: OpenBao's KV engine answers
        // with its envelope and a warning, not an error.
        if (status, code) == (StatusCode::NOT_FOUND, "not_found")
            && message.starts_with("no such route")
            && let Some(rest) = route
                .strip_prefix("secret/")
                .or((route == "secret").then_some(""))
        {
            let warning = if matches!(rest, "data" | "metadata" | "delete") {
                "Non-listing operations on the root of a K/V v2 mount are not supported.".to_owned()
            } else {
                format!(
                    "Invalid path for a versioned K/V secrets engine. See the API docs for the \
                     appropriate API endpoints to use. If using the OpenBao CLI, use 'bao kv \
                     {kv_command}' for this operation."
                )
            };
            let body = json!({
                "request_id": request_id, "lease_id": "", "renewable": false, "lease_duration": 0,
                "data": null, "wrap_info": null, "warnings": [warning], "auth": null,
            });
            return reply(StatusCode::NOT_FOUND, &body);
        }
        vault_error(status, code, message, &route)
    }
    .await;
    if let Some(label) = label {
        answer.extensions_mut().insert(label);
    }
    answer
}

/// A native error (status, code, message) as Vault says it.
fn vault_error(status: StatusCode, code: &str, message: &str, route: &str) -> Response {
    match (status, code) {
        // Vault answers 403 for a missing, unknown, expired or revoked token, as for a
        // policy denial; the reason is in the ledger, and nothing more is said of a token
        // that does not work.
        (StatusCode::UNAUTHORIZED, _) => errors(StatusCode::FORBIDDEN, "permission denied"),
        // A valid token refused by the policy is told why, after Vault's words, as the
        // native API tells it (an agreement missing, a step-up due, a capability lacking):
        // `bao` prints every error, hvac keeps them in the exception.
        (StatusCode::FORBIDDEN, _) => reply(
            StatusCode::FORBIDDEN,
            &json!({ "errors": ["permission denied", message] }),
        ),
        (_, "sealed") => errors(StatusCode::SERVICE_UNAVAILABLE, "Vault is sealed"),
        // OpenBao's status routes are its HTTP server's own, which say nothing more; the
        // userpass backend says it without the error list around it.
        (_, "method_not_allowed") if STATUS_ROUTES.contains(&route) => {
            reply(StatusCode::METHOD_NOT_ALLOWED, &json!({ "errors": [] }))
        }
        (_, "method_not_allowed") if route.starts_with("auth/userpass/") => {
            errors(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
        }
        (_, "method_not_allowed") => errors(
            StatusCode::METHOD_NOT_ALLOWED,
            "1 error occurred:\n\t* unsupported operation\n\n",
        ),
        (_, "not_initialized") => {
            errors(StatusCode::SERVICE_UNAVAILABLE, "Vault is not initialized")
        }
        // OpenBao's own backends (`sys/`, the token store) say a path is unsupported; a
        // path under no mount has no handler.
        (StatusCode::NOT_FOUND, "not_found")
            if message.starts_with("no such route")
                && (route.starts_with("sys/") || route.starts_with("auth/token/")) =>
        {
            errors(
                StatusCode::NOT_FOUND,
                "1 error occurred:\n\t* unsupported path\n\n",
            )
        }
        (StatusCode::NOT_FOUND, "not_found") if message.starts_with("no such route") => errors(
            StatusCode::NOT_FOUND,
            &format!("no handler for route {route:?}. route entry not found."),
        ),
        _ => errors(status, message),
    }
}

/// Replaces an answer by its wrapping.
async fn wrap_answer(state: &AppState, route: &str, ttl: i64, response: Response) -> Response {
    let actor = response
        .extensions()
        .get::<Actor>()
        .cloned()
        .unwrap_or_default();
    let status = response.status();
    let Some(info) = response.extensions().get::<RequestInfo>().cloned() else {
        return errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the answer cannot be wrapped",
        );
    };
    let body = match axum::body::to_bytes(response.into_body(), MAX_WRAPPED).await {
        Ok(body) => body,
        Err(_) => return errors(StatusCode::BAD_REQUEST, "the answer is too large to wrap"),
    };
    match wrapping::wrap(state, &info, actor, route, ttl, status, &body).await {
        Ok(response) => response,
        Err(e) => vault_error(e.status, e.code, &e.message, route),
    }
}

/// The routes OpenBao's HTTP server answers itself, outside its backends.
const STATUS_ROUTES: [&str; 6] = [
    "sys/health",
    "sys/seal-status",
    "sys/init",
    "sys/leader",
    "sys/seal",
    "sys/unseal",
];

/// Whether `route` (a `/v1/` path without the prefix) is one of the routes served here, for
/// some method.
fn is_route(route: &str) -> bool {
    static PATTERNS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        routes()
            .into_iter()
            .map(|(spec, _)| &spec.path["/v1/".len()..])
            .collect()
    });
    PATTERNS.iter().any(|pattern| {
        let mut given = route.split('/');
        for part in pattern.split('/') {
            if part.starts_with("{*") {
                return given.next().is_some_and(|s| !s.is_empty());
            }
            match given.next() {
                Some(segment) if part.starts_with('{') => {
                    if segment.is_empty() {
                        return false;
                    }
                }
                Some(segment) if segment == part => {}
                _ => return false,
            }
        }
        given.next().is_none()
    })
}

/// The clean form of `path` when it differs (Go's `path.Clean`, keeping a final `/`, as
/// OpenBao's HTTP server cleans paths): no empty, `.` or `..` segments.
fn cleaned(path: &str) -> Option<String> {
    // Every request passes here: a path with no `//` and no segment starting with `.` has
    // nothing to clean, and is let through without a copy.
    if !path.contains("//") && !path.contains("/.") {
        return None;
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            _ => kept.push(segment),
        }
    }
    let mut clean = format!("/{}", kept.join("/"));
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    (clean != path).then_some(clean)
}

/// OpenBao's redirect to `path` (the query kept): 307, so that the client repeats its
/// method and body; a GET or HEAD also gets Go's short HTML body.
fn redirect(request: &Request, path: &str) -> Response {
    let location = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let Ok(value) = HeaderValue::from_str(&location) else {
        return reply(StatusCode::BAD_REQUEST, &json!({ "errors": [] }));
    };
    let mut response = if matches!(*request.method(), Method::GET | Method::HEAD) {
        let escaped = location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;");
        let mut response =
            format!("<a href=\"{escaped}\">Temporary Redirect</a>.\n\n").into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    } else {
        ().into_response()
    };
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    response.headers_mut().insert(header::LOCATION, value);
    response
}

/// The route listings are served at (see [`rewrite_list`]).
const LISTING: &str = "/v1/secret/list";

/// `LIST /v1/secret/metadata/P` and `GET ...?list=true` → `GET /v1/secret/list/P`, with
/// the query kept (a listing's `after` and `limit`). `list` is read as Go's `ParseBool`
/// reads it, as OpenBao does (hvac sends `list=True`); any other value is an error (a 400).
fn rewrite_list(request: &mut Request) -> Result<(), ()> {
    // Only a GET reads `list` (the first one, percent-decoded), as OpenBao's handler does.
    let listed_by_query = request.method() == Method::GET
        && request.uri().query().is_some_and(|q| q.contains("list"))
        && {
            let axum::extract::Query(pairs) =
                axum::extract::Query::<Vec<(String, String)>>::try_from_uri(request.uri())
                    .map_err(|_| ())?;
            let flag = pairs.into_iter().find(|(key, _)| key == "list");
            match flag.as_ref().map(|(_, value)| value.as_str()) {
                None | Some("") => false,
                Some(value) => weak::go_bool(value).ok_or(())?,
            }
        };
    let is_list = request.method().as_str() == "LIST" || listed_by_query;
    if !is_list {
        return Ok(());
    }
    let path = request.uri().path();
    let listed = match path.strip_prefix("/v1/secret/metadata") {
        Some("" | "/") => Some(LISTING.to_owned()),
        Some(rest) => rest
            .strip_prefix('/')
            .map(|prefix| format!("{LISTING}/{prefix}")),
        None => None,
    }
    .map(|listed| match request.uri().query() {
        Some(query) => format!("{listed}?{query}"),
        None => listed,
    });
    // Only a listing becomes a GET: a list on any other path (`LIST`, or `GET ?list=true`)
    // is a `LIST`, which no route takes (405), so it never reads what a GET there would (a
    // secret's value).
    match listed.and_then(|listed| listed.parse::<Uri>().ok()) {
        Some(uri) => {
            *request.method_mut() = Method::GET;
            *request.uri_mut() = uri;
        }
        None => {
            *request.method_mut() =
                Method::from_bytes(b"LIST").expect("LIST is a valid method name");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_as_go_cleans_them_and_stay_on_this_server() {
        for (given, clean) in [
            ("/v1//secret/data/a", Some("/v1/secret/data/a")),
            ("/v1/sys/health//", Some("/v1/sys/health/")),
            ("/v1/secret/data/a/./b", Some("/v1/secret/data/a/b")),
            ("/v1/secret/data/a/..", Some("/v1/secret/data")),
            ("/v1/../../x", Some("/x")),
            ("/v1/..//..//", Some("/")),
            ("/v1/secret/metadata/", None),
            ("/v1/sys/health", None),
            ("/v1/secret/data/a%2F%2Fb", None),
            ("/v1/secret/data/.env/a", None),
            ("/v1/secret/data/a.", None),
        ] {
            assert_eq!(cleaned(given).as_deref(), clean, "{given}");
        }
    }

    #[test]
    fn routes_are_known_by_their_patterns() {
        for known in [
            "sys/mounts",
            "auth/token/lookup-self",
            "auth/userpass/login/x",
            "sys/internal/ui/mounts/secret/a/b",
            "secret/data/a/b",
        ] {
            assert!(is_route(known), "{known}");
        }
        for unknown in [
            "sys/nope",
            "auth/token/nope",
            "auth/userpass/login",
            "auth/userpass/login/x/y",
            "sys/internal/ui/mounts",
            "nope/x",
        ] {
            assert!(!is_route(unknown), "{unknown}");
        }
    }
}
