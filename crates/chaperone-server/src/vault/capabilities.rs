//! `sys/capabilities-self` (`bao token capabilities PATH`): what the caller's token may do on
//! each path, in Vault's capability names, as the same policy decision that every request
//! passes would decide it now.
//!
//! Each path is matched against the Vault routes of the route table. A route the path
//! matches adds the capabilities of its method (`GET`: `read`; `POST`/`PUT`: `update`, and
//! `create` on a secret's `data/` and `metadata/`; `PATCH`: `patch`; `DELETE`: `delete`)
//! when the policy allows its action there: for a secret, with the path's level, the
//! caller's grants, the continuous compliance gate, step-up and networks, as a request would
//! be decided. `list` on `secret/metadata/P` is what a listing of the folder `P/` would be
//! allowed and shown. No capability is `deny`, as in Vault. Nothing is recorded: the answer
//! is the caller's own permissions, and no secret or path is read.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use axum::Extension;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaperone_core::policy::{Resource, decide};
use chaperone_core::{SecretPath, SecretPrefix};
use serde::Deserialize;
use serde_json::{Map, json};

use super::{envelope_flat, errors, reply};
use crate::api::secrets::Listing;
use crate::api::{ApiJson, On, RouteSpec};
use crate::auth::Caller;
use crate::record::RequestInfo;
use crate::{ApiError, AppState};

/// Paths asked about in one request at most (each can be a policy decision with database
/// reads).
const MAX_PATHS: usize = 100;

#[derive(Deserialize)]
pub(crate) struct Body {
    #[serde(default, deserialize_with = "super::weak::strings")]
    paths: Option<Vec<String>>,
    /// Vault's older name, read only when `paths` is not given.
    #[serde(default, deserialize_with = "super::weak::strings")]
    path: Option<Vec<String>>,
}

/// `POST|PUT sys/capabilities-self` with `paths` (a list, or one string of paths separated
/// by commas), or `path` when there is no `paths`, as OpenBao reads them. A question about
/// one path is also answered as `capabilities` (Vault's older form).
pub(crate) async fn capabilities_self(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<Body>,
) -> Result<Response, ApiError> {
    let paths = body
        .paths
        .filter(|p| !p.is_empty())
        .or(body.path)
        .unwrap_or_default();
    if paths.is_empty() {
        return Ok(errors(StatusCode::BAD_REQUEST, "paths must be supplied"));
    }
    if paths.iter().any(|p| p.trim().is_empty()) {
        return Ok(errors(StatusCode::BAD_REQUEST, "missing path"));
    }
    if paths.len() > MAX_PATHS {
        return Ok(errors(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_PATHS} paths may be asked about at once"),
        ));
    }
    let mut data = Map::new();
    let mut listing = Listing::new(&state).await?;
    for path in &paths {
        let found = of(&state, &caller, &mut listing, path).await?;
        data.insert(path.clone(), json!(found));
    }
    if let [path] = paths.as_slice() {
        data.insert("capabilities".to_owned(), data[path.as_str()].clone());
    }
    Ok(reply(StatusCode::OK, &envelope_flat(&info, data)))
}

/// The Vault routes' specs, taken once from the route table.
static ROUTES: LazyLock<Vec<RouteSpec>> =
    LazyLock::new(|| super::routes().into_iter().map(|(spec, _)| spec).collect());

/// The capabilities `caller` has on `path` (a Vault path, `secret/data/app/db`), sorted;
/// `["deny"]` for none.
async fn of(
    state: &AppState,
    caller: &Caller,
    listing: &mut Listing,
    path: &str,
) -> Result<Vec<&'static str>, ApiError> {
    let path = path.trim_start_matches('/');
    let full = format!("/v1/{path}");
    let mut found = BTreeSet::new();
    for spec in ROUTES.iter() {
        // Listings are routed inside the server; clients name them under `metadata/`.
        if matches!(spec.on, On::Listing) {
            continue;
        }
        let Some(param) = matched(spec.path, &full) else {
            continue;
        };
        if spec.guard.is_some_and(|guard| !guard.allows(state, caller)) {
            continue;
        }
        let allowed = match (spec.action, spec.on) {
            (None, _) => true,
            (Some(action), On::Secret) => match SecretPath::parse(param) {
                Ok(secret) => {
                    state
                        .decide_on_secret(
                            caller.principal.clone(),
                            caller.person_id.as_ref(),
                            caller.vendor_id.as_ref(),
                            action,
                            &secret,
                            caller.client_ip,
                        )
                        .await?
                        .allowed
                }
                Err(_) => false,
            },
            (Some(action), _) => {
                decide(
                    &caller.principal,
                    action,
                    Resource::System,
                    state.context(caller.client_ip),
                )
                .allowed
            }
        };
        if allowed {
            found.extend(method_capabilities(&spec.method, spec.path));
        }
    }
    if let Some(folder) = listed_folder(path)
        && may_list(state, caller, listing, &folder).await?
    {
        found.insert("list");
    }
    if found.is_empty() {
        found.insert("deny");
    }
    Ok(found.into_iter().collect())
}

/// What a method on a route is, in Vault's capabilities.
fn method_capabilities(method: &Method, pattern: &str) -> &'static [&'static str] {
    let creates =
        pattern.starts_with("/v1/secret/data/") || pattern.starts_with("/v1/secret/metadata/");
    match *method {
        Method::GET | Method::HEAD => &["read"],
        Method::POST | Method::PUT if creates => &["create", "update"],
        Method::POST | Method::PUT => &["update"],
        Method::PATCH => &["patch"],
        Method::DELETE => &["delete"],
        _ => &[],
    }
}

/// The folder a `LIST` of `path` would list (`""` for the root, else ending in `/`), for
/// paths under `secret/metadata` that a listing would take (`SecretPrefix`: no `..`).
fn listed_folder(path: &str) -> Option<String> {
    let rest = path.strip_prefix("secret/metadata")?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let folder = rest.trim_matches('/');
    if folder.is_empty() {
        return Some(String::new());
    }
    SecretPrefix::parse(folder)
        .ok()
        .map(|prefix| prefix.as_str().to_owned())
}

/// Whether a listing of `folder` would be allowed and show it: the route's decision, then
/// the folder as a listing of its parent would show it (the root is shown to whoever may
/// list).
async fn may_list(
    state: &AppState,
    caller: &Caller,
    listing: &mut Listing,
    folder: &str,
) -> Result<bool, ApiError> {
    let route = decide(
        &caller.principal,
        chaperone_core::policy::Action::SecretList,
        Resource::Listing,
        state.context(caller.client_ip),
    );
    if !route.allowed {
        return Ok(false);
    }
    if folder.is_empty() {
        return Ok(true);
    }
    listing.shows(state, caller, folder).await
}

/// The parameter `path` gives a route `pattern` (`""` when it has none), if it matches:
/// `{name}` takes one segment, `{*name}` the non-empty rest.
fn matched<'p>(pattern: &str, path: &'p str) -> Option<&'p str> {
    if let Some((head, _)) = pattern.split_once("{*") {
        let rest = path.strip_prefix(head)?;
        return (!rest.is_empty()).then_some(rest);
    }
    if let Some((head, tail)) = pattern.split_once('{') {
        let tail = &tail[tail.find('}')? + 1..];
        let value = path.strip_prefix(head)?.strip_suffix(tail)?;
        return (!value.is_empty() && !value.contains('/')).then_some(value);
    }
    (pattern == path).then_some("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_route_patterns_as_the_router_does() {
        let cases = [
            (
                "/v1/secret/data/{*path}",
                "/v1/secret/data/a/b",
                Some("a/b"),
            ),
            ("/v1/secret/data/{*path}", "/v1/secret/data/", None),
            ("/v1/secret/data/{*path}", "/v1/secret/datax/a", None),
            (
                "/v1/auth/userpass/login/{user}",
                "/v1/auth/userpass/login/ann",
                Some("ann"),
            ),
            (
                "/v1/auth/userpass/login/{user}",
                "/v1/auth/userpass/login/a/b",
                None,
            ),
            (
                "/v1/auth/userpass/login/{user}",
                "/v1/auth/userpass/login/",
                None,
            ),
            ("/v1/sys/mounts", "/v1/sys/mounts", Some("")),
            ("/v1/sys/mounts", "/v1/sys/mounts/x", None),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(matched(pattern, path), want, "{pattern} {path}");
        }
    }

    #[test]
    fn a_list_is_of_the_folder_under_metadata() {
        assert_eq!(listed_folder("secret/metadata"), Some(String::new()));
        assert_eq!(listed_folder("secret/metadata/"), Some(String::new()));
        assert_eq!(
            listed_folder("secret/metadata/a/b"),
            Some("a/b/".to_owned())
        );
        assert_eq!(listed_folder("secret/metadata/a/"), Some("a/".to_owned()));
        assert_eq!(listed_folder("secret/metadatax"), None);
        assert_eq!(listed_folder("secret/metadata/a/../b"), None);
        assert_eq!(listed_folder("secret/metadata/a//b"), None);
        assert_eq!(listed_folder("secret/data/a"), None);
    }
}
