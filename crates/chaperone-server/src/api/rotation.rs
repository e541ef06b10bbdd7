//! Rotation: a secret's rotation policy (its maximum age), the list of secrets due for
//! rotation, and exposures.
//!
//! A rotation is a new version: the ledger's `secret.write` entry says who wrote it and
//! when. A secret is stale when its current version is older than its policy allows, or
//! when it is exposed: someone who read it or held a grant for it lost access (an
//! offboarding), and no version was written since. The sweep resolves an exposure's
//! rotation finding once a newer version exists.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use chaperone_core::{SecretPath, Timestamp, parse_duration};
use chaperone_store::Op;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ApiJson;
use super::ApiPath;
use super::admin::change_event;
use super::findings::Finding;
use super::governance::{body, new_record, revise};
use crate::auth::Caller;
use crate::record::RequestInfo;
use crate::{ApiError, AppState};

/// A rotation policy as stored (under the secret's path).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct RotationPolicy {
    pub(crate) path: String,
    pub(crate) max_age_secs: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotationRequest {
    /// The longest a version may stay current, such as `90d`.
    max_age: String,
}

/// The longest `max_age`: ten years.
const MAX_AGE_LIMIT_SECS: i64 = 3650 * 86_400;

#[utoipa::path(put, path = "/api/v1/rotation/{path}", params(("path" = String, Path)), request_body = RotationRequest, responses((status = 200, body = RotationPolicy), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Sets a secret's rotation policy.
pub(crate) async fn set_policy(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(path): ApiPath<String>,
    ApiJson(req): ApiJson<RotationRequest>,
) -> Result<Json<RotationPolicy>, ApiError> {
    let path = SecretPath::parse(&path)?;
    let max_age_secs =
        parse_duration(&req.max_age).map_err(|e| ApiError::bad_request("invalid_request", e))?;
    // A policy that can never fall due is no policy: it would only hide the secret from the
    // stale list.
    if max_age_secs > MAX_AGE_LIMIT_SECS {
        return Err(ApiError::bad_request(
            "invalid_request",
            "a rotation's max_age is at most 3650d",
        ));
    }
    let policy = RotationPolicy {
        path: path.as_str().to_owned(),
        max_age_secs,
    };
    let now = state.clock.now();
    let op = match state.store.record("rotation", path.as_str()).await? {
        Some(existing) => Op::Put(revise(&existing, &policy, now)),
        None => Op::Put(new_record(
            "rotation",
            path.as_str().to_owned(),
            None,
            &policy,
            now,
        )),
    };
    let event = change_event(
        &state,
        &info,
        &caller,
        "rotation.set",
        path.as_str(),
        [("max_age_secs", max_age_secs.into())],
    );
    state.store.apply(vec![op], vec![event]).await?;
    Ok(Json(policy))
}

/// A secret due for rotation.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Stale {
    path: String,
    /// `overdue` (older than its policy) or `exposed` (exposed — rotate).
    reason: String,
    /// The current version and when it was written.
    version: u64,
    version_time: String,
    /// When it should be rotated by: for an overdue secret, when it reached its maximum
    /// age; for an exposed one, its finding's due date (the exposure's time when the finding
    /// is gone).
    due: String,
    /// The rotation finding, for an exposure.
    finding_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/secrets/stale", responses((status = 200, body = Vec<Stale>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Secrets due for rotation that the caller may list: past their maximum age, or exposed.
pub(crate) async fn stale(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<Stale>>, ApiError> {
    let now = state.clock.now();
    // Shown as a listing would show the path: its level must admit the caller now.
    let mut listing = super::secrets::Listing::new(&state).await?;
    let mut out = Vec::new();
    for record in state.store.records("rotation", None).await? {
        let policy: RotationPolicy = body(&record)?;
        let Some((version, at)) = current(&state, &policy.path).await? else {
            continue;
        };
        let due = at.plus_secs(policy.max_age_secs);
        if due <= now && listing.shows(&state, &caller, &policy.path).await? {
            out.push(Stale {
                path: policy.path,
                reason: "overdue".into(),
                version,
                version_time: at.to_rfc3339(),
                due: due.to_rfc3339(),
                finding_id: None,
            });
        }
    }
    for record in state.store.records("exposure", None).await? {
        let path = record.body["path"].as_str().unwrap_or_default().to_owned();
        let Some((version, at)) = current(&state, &path).await? else {
            continue;
        };
        // Exposed until its finding is closed: by the sweep once the value has changed, or
        // by a person.
        let finding = record.body["finding_id"].as_str().unwrap_or_default();
        let mut due = record.created_at.to_rfc3339();
        let open = match state.store.record("finding", finding).await? {
            Some(finding) => {
                if let Some(by) = finding.body["due"].as_str().filter(|d| !d.is_empty()) {
                    by.clone_into(&mut due);
                }
                ["open", "in_progress"]
                    .contains(&finding.body["status"].as_str().unwrap_or_default())
            }
            None => at <= record.created_at,
        };
        if open && listing.shows(&state, &caller, &path).await? {
            out.push(Stale {
                path,
                reason: "exposed".into(),
                version,
                version_time: at.to_rfc3339(),
                due,
                finding_id: record.body["finding_id"].as_str().map(str::to_owned),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.reason.cmp(&b.reason)));
    Ok(Json(out))
}

/// The current version of `path` and when it was written.
async fn current(state: &AppState, path: &str) -> Result<Option<(u64, Timestamp)>, ApiError> {
    let Ok(path) = SecretPath::parse(path) else {
        return Ok(None);
    };
    Ok(state.store.metadata(&path).await?.and_then(|m| {
        m.versions
            .iter()
            .find(|v| v.version == m.current_version)
            .map(|v| (v.version, v.created_at))
    }))
}

/// Whether `path` was rotated since `exposed_at`: its current version is newer, and no
/// credential of a version kept from before `exposed_at` is still in it ([`changed`]). A new
/// version that keeps an exposed credential (a change to another field, the same value
/// written again, an older value put back) is no rotation. Security decision: when the
/// current version, the one current at `exposed_at`, or one the finding names as read, held
/// or written by whoever was offboarded (`named`) cannot be opened (deleted, destroyed,
/// pruned by `max_versions`), it is not judged rotated; a person closes the finding instead.
/// Otherwise a value put back after the exposed version was pruned would pass for new.
async fn rotated_since(
    state: &AppState,
    keyring: &chaperone_crypto::Keyring,
    path: &str,
    exposed_at: Timestamp,
    named: &[u64],
) -> Result<Option<(u64, Timestamp)>, ApiError> {
    let Ok(path) = SecretPath::parse(path) else {
        return Ok(None);
    };
    let Some(meta) = state.store.metadata(&path).await? else {
        return Ok(None);
    };
    let Some(now) = meta
        .versions
        .iter()
        .find(|v| v.version == meta.current_version)
    else {
        return Ok(None);
    };
    if now.created_at <= exposed_at {
        return Ok(None);
    }
    // A version that does not open (or decrypts to something else than an object) cannot
    // be judged: the finding stays open, and the rest of the sweep goes on.
    let open = |version: u64| {
        let path = &path;
        async move {
            let opened = match state.store.read_version(path, Some(version)).await? {
                Some(stored) => super::secrets::decrypt(keyring, &stored),
                None => Ok(None),
            };
            Ok::<_, ApiError>(match opened {
                Ok(Some(Value::Object(fields))) => Some(fields),
                Ok(_) => None,
                Err(error) => {
                    tracing::warn!(code = error.code, path = %path, version, "a version to compare does not open");
                    None
                }
            })
        }
    };
    let Some(new) = open(now.version).await? else {
        return Ok(None);
    };
    let mut exposed: Vec<_> = meta
        .versions
        .iter()
        .filter(|v| v.created_at <= exposed_at)
        .map(|v| v.version)
        .collect();
    exposed.sort_unstable();
    // The version current at `exposed_at` must be there to compare with (not pruned by
    // `max_versions`, not destroyed); older ones are compared when they still open.
    let Some(&then) = exposed.last() else {
        return Ok(None);
    };
    if open(then).await?.is_none() {
        return Ok(None);
    }
    exposed.extend(named.iter().copied().filter(|&v| v != now.version));
    exposed.sort_unstable();
    exposed.dedup();
    for version in exposed {
        match open(version).await? {
            Some(old) if !changed(&old, &new) => return Ok(None),
            Some(_) => {}
            None if named.contains(&version) => return Ok(None),
            None => {}
        }
    }
    Ok(Some((now.version, now.created_at)))
}

/// Whether the value `old` is gone from `new`: every credential field of `old` (by its name:
/// a password, token, key, secret, connection string...) has another value or is gone, or,
/// when no field is named so, every field. A user name kept beside a new password is no
/// exposure; a password kept beside a new note is, and so is an old value moved under
/// another name (`password` to `db_password`), written with spaces around it, or kept inside
/// another value (a password inside a new connection string) at any depth.
fn changed(old: &serde_json::Map<String, Value>, new: &serde_json::Map<String, Value>) -> bool {
    const CREDENTIAL: [&str; 16] = [
        "pass", "pwd", "secret", "token", "key", "cred", "private", "auth", "cert", "pin", "otp",
        "seed", "salt", "dsn", "url", "conn",
    ];
    let credential = |name: &String| {
        let name = name.to_ascii_lowercase();
        CREDENTIAL.iter().any(|word| name.contains(word))
    };
    let judged: Vec<&String> = if old.keys().any(credential) {
        old.keys().filter(|name| credential(name)).collect()
    } else {
        old.keys().collect()
    };
    judged.into_iter().all(|name| {
        let value = &old[name];
        new.get(name) != Some(value) && !new.values().any(|kept| holds(kept, value))
    })
}

/// Whether `new` (a value of the new version) still holds the old value `old`: equal to it,
/// or, for text, equal once trimmed or, from 8 bytes on, found whole inside any text of `new`
/// at any depth, verbatim, hex- or percent-encoded (a password inside a connection string).
/// Empty text is no credential, and held by nothing.
fn holds(new: &Value, old: &Value) -> bool {
    let Some(text) = old.as_str().map(str::trim) else {
        return contains(new, &|kept| kept == old);
    };
    if text.is_empty() {
        return false;
    }
    let forms: Vec<String> = if text.len() >= 8 {
        chaperone_scan::scan::whole_value_forms(text.as_bytes())
            .iter()
            .filter_map(|form| std::str::from_utf8(form).ok().map(str::to_owned))
            .collect()
    } else {
        Vec::new()
    };
    contains(new, &|kept| {
        kept.as_str().is_some_and(|kept| {
            kept.trim() == text || forms.iter().any(|form| kept.contains(form.as_str()))
        })
    })
}

/// Whether `value`, or any value inside it at any depth, is one `matches` accepts.
fn contains(value: &Value, matches: &dyn Fn(&Value) -> bool) -> bool {
    matches(value)
        || match value {
            Value::Array(items) => items.iter().any(|item| contains(item, matches)),
            Value::Object(fields) => fields.values().any(|field| contains(field, matches)),
            _ => false,
        }
}

/// Resolves open rotation findings whose secret was rotated since ([`rotated_since`]); how
/// many. Sealed, it resolves none: values must be compared.
pub(crate) async fn resolve_rotated(state: &AppState, now: Timestamp) -> Result<usize, ApiError> {
    let Some(keyring) = state.keyring() else {
        return Ok(0);
    };
    let mut resolved = 0;
    for record in state.store.records("finding", None).await? {
        let mut finding: Finding = body(&record)?;
        if finding.source != "offboarding"
            || !["open", "in_progress"].contains(&finding.status.as_str())
        {
            continue;
        }
        // From the latest exposure: an offboarding that found the finding open moved it.
        let exposed_at = finding.details["exposed_at"]
            .as_i64()
            .map_or(record.created_at, Timestamp::from_unix_nanos);
        let named: Vec<u64> = ["versions_read", "versions_held", "versions_written"]
            .iter()
            .filter_map(|key| finding.details[*key].as_array())
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        let Some((version, at)) =
            rotated_since(state, &keyring, &finding.subject, exposed_at, &named).await?
        else {
            continue;
        };
        // Reopened by hand after that rotation closed it (the old value lives on somewhere):
        // only a later rotation closes it again.
        if finding.details["rotated_version"]
            .as_u64()
            .is_some_and(|closed_by| closed_by >= version)
        {
            continue;
        }
        finding.status = "resolved".into();
        finding.history.push(super::findings::FindingChange {
            time: now.to_rfc3339(),
            by: "chaperone".into(),
            status: "resolved".into(),
            note: Some(format!(
                "rotated: version {version} written at {} (its author is in the ledger)",
                at.to_rfc3339()
            )),
        });
        finding.details["rotated_version"] = Value::from(version);
        let mut entry = crate::record::Record::new(
            "finding.update",
            &finding.id,
            chaperone_ledger::entry::Outcome::Success,
        );
        entry.details.insert("status".into(), "resolved".into());
        entry
            .details
            .insert("previous_status".into(), record.body["status"].clone());
        entry
            .details
            .insert("rotated_version".into(), version.into());
        let event = state.event(
            &RequestInfo::new(None, Some("chaperone-sweep".into())),
            chaperone_ledger::entry::Actor::default(),
            entry,
        );
        match state
            .store
            .apply(vec![Op::Put(revise(&record, &finding, now))], vec![event])
            .await
        {
            Ok(()) => resolved += 1,
            Err(chaperone_store::StoreError::Conflict(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::changed;
    use serde_json::{Value, json};

    fn fields(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(fields) => fields,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_rotation_changes_every_credential_and_nothing_else_needs_to() {
        let rotated = |old: Value, new: Value| changed(&fields(old), &fields(new));
        // A user name kept beside a new password.
        assert!(rotated(
            json!({ "username": "app", "password": "old" }),
            json!({ "username": "app", "password": "new" })
        ));
        // A password kept beside a new note, or one of two keys kept.
        assert!(!rotated(
            json!({ "password": "old", "note": "a" }),
            json!({ "password": "old", "note": "b" })
        ));
        assert!(!rotated(
            json!({ "access_key": "a1", "secret_key": "s1" }),
            json!({ "access_key": "a1", "secret_key": "s2" })
        ));
        // A removed credential is gone too.
        assert!(rotated(
            json!({ "api_token": "t" }),
            json!({ "api_token_v2": "u" })
        ));
        // Without a credential name, every field must change.
        assert!(!rotated(
            json!({ "value": "a", "region": "eu" }),
            json!({ "value": "b", "region": "eu" })
        ));
        assert!(rotated(json!({ "value": "a" }), json!({ "value": "b" })));
        // The old value under another name is the old value.
        assert!(!rotated(
            json!({ "password": "P3" }),
            json!({ "db_password": "P3" })
        ));
        assert!(!rotated(
            json!({ "password": "P3", "user": "app" }),
            json!({ "PASSWORD": "P3", "user": "app" })
        ));
        // Nor is it rotated with a space added, or kept inside another value at any depth.
        assert!(!rotated(
            json!({ "password": "ACME-DB-PASS-1" }),
            json!({ "password": "ACME-DB-PASS-1 " })
        ));
        assert!(!rotated(
            json!({ "password": "P1-old-secret", "dsn": "postgres://app:P1-old-secret@db1/x" }),
            json!({ "password": "P2-new-secret", "dsn": "postgres://app:P1-old-secret@db2/x" })
        ));
        assert!(!rotated(
            json!({ "token": "tok-0123456789" }),
            json!({ "token": "new-token-value", "old": { "list": ["tok-0123456789"] } })
        ));
        // Nor kept encoded: percent-encoded in a URL, or in hex.
        assert!(!rotated(
            json!({ "password": "p@ss:w0rd/Xy" }),
            json!({ "password": "new-pass-Qw81", "url": "postgres://app:p%40ss%3Aw0rd%2FXy@db/x" })
        ));
        assert!(!rotated(
            json!({ "password": "p@ss:w0rd/Xy" }),
            json!({ "password": "new-pass-Qw81", "hex": hex::encode("p@ss:w0rd/Xy") })
        ));
        // A new value that shares only most of the old one (a bumped digit) is rotated,
        // also inside base64 (which is not searched: it would match such near misses).
        assert!(rotated(
            json!({ "password": "hunter2-2024" }),
            json!({ "password": "hunter2-2025", "auth": "Ym9iOmh1bnRlcjItMjAyNQ==" })
        ));
        // A short value is judged whole: "42" inside another value is a coincidence.
        assert!(rotated(
            json!({ "pin": "42" }),
            json!({ "pin": "77", "url": "https://x.example/42" })
        ));
        assert!(rotated(
            json!({ "password": "P1-old-secret", "dsn": "postgres://app:P1-old-secret@db1/x" }),
            json!({ "password": "P2-new-secret", "dsn": "postgres://app:P2-new-secret@db2/x" })
        ));
    }
}
