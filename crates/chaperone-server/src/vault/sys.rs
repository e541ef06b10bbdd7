//! `sys/health`, `sys/seal-status`, `sys/leader`, `sys/init`, `sys/mounts` and
//! `sys/internal/ui/mounts/:path`, as Vault clients expect them.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chaperone_store::Backend;
use serde_json::{Map, Value, json};

use super::{MOUNT, envelope, envelope_flat, errors, reply};
use crate::api::{ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::record::RequestInfo;
use crate::{ApiError, AppState};

/// The version clients see; Vault clients compare it only for features.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first value given for `key`, as Go's `Query()[key][0]` reads it.
fn first<'q>(query: &'q [(String, String)], key: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The status asked for with `key`, else `default`; `None` for a value that is no status
/// code (OpenBao answers that with 400).
fn status_override(query: &[(String, String)], key: &str, default: u16) -> Option<StatusCode> {
    match first(query, key) {
        None => StatusCode::from_u16(default).ok(),
        Some(value) => value
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok()),
    }
}

/// `GET|HEAD sys/health`: 200 unsealed, 503 sealed, 501 not initialised; `activecode`,
/// `sealedcode`, `uninitcode` (and `standbycode`, never used: there are no standbys)
/// override them. As in OpenBao, every override given must be a status code and
/// `standbyok` a boolean, whichever applies (else 400), and the first of a repeated one
/// counts.
pub(crate) async fn health(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let status = state.seal_status().await?;
    let valid = ["uninitcode", "sealedcode", "standbycode", "activecode"]
        .into_iter()
        .all(|key| status_override(&query, key, 200).is_some())
        && first(&query, "standbyok").is_none_or(|v| super::weak::go_bool(v).is_some());
    let code = match (status.initialized, status.sealed) {
        _ if !valid => None,
        (false, _) => status_override(&query, "uninitcode", 501),
        (true, true) => status_override(&query, "sealedcode", 503),
        (true, false) => status_override(&query, "activecode", 200),
    };
    let Some(code) = code else {
        return Ok(reply(StatusCode::BAD_REQUEST, &json!({ "errors": [] })));
    };
    // An informational code cannot end an answer: OpenBao's Go server sends it as an interim
    // line and then the health with 200, which is what its clients see.
    let code = if code.is_informational() {
        StatusCode::OK
    } else {
        code
    };
    // A sealed OpenBao knows nothing of its cluster or replication, and reports itself as
    // a standby; so does a sealed Chaperone, for dashboards that read these fields.
    let body = if status.sealed {
        json!({
            "initialized": status.initialized,
            "sealed": true,
            "standby": true,
            "replication_performance_mode": "unknown",
            "replication_dr_mode": "unknown",
            "server_time_utc": state.clock.now().unix_secs(),
            "version": VERSION,
        })
    } else {
        json!({
            "initialized": status.initialized,
            "sealed": false,
            "standby": false,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": state.clock.now().unix_secs(),
            "version": VERSION,
            "cluster_name": "chaperone",
            "cluster_id": "",
        })
    };
    Ok(reply(code, &body))
}

/// `GET sys/leader`, which `bao status` and `vault status` call after the seal status:
/// Chaperone has no leader election (every node on one PostgreSQL serves reads and
/// writes), so there is no HA mode to report. Open, as in OpenBao, which answers it only
/// unsealed (`bao status` asks only then).
pub(crate) async fn leader(State(state): State<Arc<AppState>>) -> Response {
    if state.keyring().is_none() {
        return errors(StatusCode::SERVICE_UNAVAILABLE, "Vault is sealed");
    }
    reply(StatusCode::OK, &json!({ "ha_enabled": false }))
}

/// `GET sys/seal-status`.
pub(crate) async fn seal_status(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let status = state.seal_status_current().await?;
    let storage = match state.store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    };
    let mut body = json!({
        "type": "shamir",
        "initialized": status.initialized,
        "sealed": status.sealed,
        "t": status.threshold,
        "n": status.shares,
        "progress": status.progress,
        "nonce": status.nonce,
        "recovery_seal": false,
        "version": VERSION,
        "commit_date": "",
        "migration": false,
        "cluster_name": "chaperone",
        "cluster_id": "",
        "storage_type": storage,
    });
    // A sealed OpenBao knows nothing of its cluster.
    if status.sealed
        && let Some(fields) = body.as_object_mut()
    {
        fields.remove("cluster_name");
        fields.remove("cluster_id");
    }
    Ok(reply(StatusCode::OK, &body))
}

/// `POST|PUT sys/unseal` (`bao operator unseal`): one share as `key` (as `chaperone init`
/// printed it), or `reset`, through the native unseal; the answer is the seal status.
pub(crate) async fn unseal(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    crate::api::ApiJson(body): crate::api::ApiJson<UnsealBody>,
) -> Result<Response, ApiError> {
    if body.migrate {
        return Ok(errors(
            StatusCode::BAD_REQUEST,
            "seal migration is not supported",
        ));
    }
    // As OpenBao answers them.
    if body.reset && state.keyring().is_some() {
        return Ok(errors(StatusCode::BAD_REQUEST, "vault is unsealed"));
    }
    if body.key.is_none() && !body.reset {
        return Ok(errors(
            StatusCode::BAD_REQUEST,
            "'key' must be specified in request body as JSON, or 'reset' set to true",
        ));
    }
    crate::api::sys::give_share(&state, &info, body.key, body.reset).await?;
    seal_status(State(state)).await
}

/// The body of `sys/unseal`.
#[derive(serde::Deserialize)]
pub(crate) struct UnsealBody {
    key: Option<String>,
    #[serde(default, deserialize_with = "super::weak::boolean_or_false")]
    reset: bool,
    #[serde(default, deserialize_with = "super::weak::boolean_or_false")]
    migrate: bool,
}

/// `POST|PUT sys/seal` (`bao operator seal`): the native seal, for an admin; 204.
pub(crate) async fn seal(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
) -> Result<Response, ApiError> {
    crate::api::sys::seal(caller, State(state), Extension(info)).await?;
    Ok(super::no_content())
}

/// `GET sys/init`.
pub(crate) async fn init(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let status = state.seal_status().await?;
    Ok(reply(
        StatusCode::OK,
        &json!({ "initialized": status.initialized }),
    ))
}

/// `PUT|POST sys/init` (`bao operator init`): an initialised server says so in OpenBao's
/// words, which init scripts look for. A server is not initialised over the API: its keys
/// are made on its own machine by `chaperone init`, which writes the unseal shares where
/// the operator says, so an uninitialised one says that instead. Both are 400, as OpenBao
/// answers a second init.
pub(crate) async fn init_write(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let status = state.seal_status().await?;
    let message = if status.initialized {
        "Vault is already initialized"
    } else {
        "this server is initialised on its own machine with `chaperone init`, not over the API"
    };
    Ok(errors(StatusCode::BAD_REQUEST, message))
}

/// The one secrets engine: Chaperone's secrets as KV version 2 at `secret/`.
fn kv_mount() -> Value {
    json!({
        "accessor": "kv_chaperone",
        "config": {
            "default_lease_ttl": 0,
            "force_no_cache": false,
            "max_lease_ttl": 0,
        },
        "deprecation_status": "supported",
        "description": "Chaperone secrets",
        "external_entropy_access": false,
        "local": false,
        "options": { "version": "2" },
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "seal_wrap": false,
        "type": "kv",
        "uuid": "00000000-0000-4000-8000-000000000001",
    })
}

/// `GET sys/mounts`: the mounts both at the top level (older clients) and under `data`.
pub(crate) async fn mounts(_caller: Caller, Extension(info): Extension<RequestInfo>) -> Response {
    let mut mounts = Map::new();
    mounts.insert(MOUNT.to_owned(), kv_mount());
    reply(StatusCode::OK, &envelope_flat(&info, mounts))
}

/// `GET sys/auth` (`bao auth list`): the two ways to a token, `token/` and `userpass/`
/// (Chaperone's people, with TOTP through `X-Vault-MFA`), as OpenBao describes them.
pub(crate) async fn auth(_caller: Caller, Extension(info): Extension<RequestInfo>) -> Response {
    let method = |kind: &str, description: &str, uuid: &str| {
        json!({
            "accessor": format!("auth_{kind}_chaperone"),
            "config": {
                "default_lease_ttl": 0,
                "force_no_cache": false,
                "max_lease_ttl": 0,
                "token_type": "default-service",
            },
            "description": description,
            "external_entropy_access": false,
            "local": false,
            "options": null,
            "plugin_version": "",
            "running_plugin_version": "",
            "running_sha256": "",
            "seal_wrap": false,
            "type": kind,
            "uuid": uuid,
        })
    };
    let mut userpass = method(
        "userpass",
        "Chaperone people: password, and TOTP through X-Vault-MFA",
        "00000000-0000-4000-8000-000000000003",
    );
    // As OpenBao shows it: on the auth method, not on the built-in token store.
    userpass["deprecation_status"] = json!("supported");
    let mut methods = Map::new();
    methods.insert(
        "token/".to_owned(),
        method(
            "token",
            "token based credentials",
            "00000000-0000-4000-8000-000000000002",
        ),
    );
    methods.insert("userpass/".to_owned(), userpass);
    reply(StatusCode::OK, &envelope_flat(&info, methods))
}

/// `GET sys/internal/ui/mounts/:path`: which mount serves `path` (the `vault kv` and `bao
/// kv` commands ask before every call).
pub(crate) async fn ui_mount(
    _caller: Caller,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
) -> Response {
    let under_secret = format!("{}/", path.trim_end_matches('/')).starts_with(MOUNT);
    if !under_secret {
        return errors(
            StatusCode::BAD_REQUEST,
            &format!("no mount serves {path:?}; Chaperone's secrets are at {MOUNT}"),
        );
    }
    let mut mount = kv_mount();
    mount["path"] = Value::String(MOUNT.to_owned());
    reply(StatusCode::OK, &envelope(&info, mount))
}
