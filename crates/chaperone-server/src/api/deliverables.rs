//! Deliverables: what a contractor hands over (an archive or a file) is scanned before it is
//! accepted: leaked credentials, sensitive data, malicious code, and any value currently
//! stored in this vault.
//!
//! The vault check decrypts the current version of every secret into memory for the length
//! of the scan, hands the values to the scanner's in-memory automaton and drops them; no
//! value, and no hash of one, is written anywhere or shown to the submitter. Security sees
//! which secret (its path and field, never its value) in the finding's details.
//!
//! Security decision: the submitter learns where a vault value appears (file and line) only
//! for a secret they may read themselves. For any other, they learn that the deliverable
//! holds a vault value, not where: otherwise an upload of a million guesses, one per line,
//! would say which guess is a stored secret. Each such match is a critical finding that
//! security sees at once.
//!
//! Each finding becomes a tracked finding (source `deliverable`) for the vendor; the
//! deliverable is accepted once every one of them is resolved or its risk accepted. The
//! status is derived when read, never stored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chaperone_core::SecretPath;
use chaperone_core::policy::{Action, Role};
use chaperone_scan::{KNOWN_VALUE, RuleSet, Scanner};
use chaperone_store::Op;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::admin::change_event;
use super::auth::new_id;
use super::findings::{Finding, NewFinding, new_finding};
use super::governance::{actor_id, body, new_record, vendor_named};
use super::{ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::record::RequestInfo;
use crate::{ApiError, AppState};

/// The largest deliverable accepted in one upload.
pub(crate) const MAX_DELIVERABLE_BYTES: usize = 64 * 1024 * 1024;

/// A deliverable as stored.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Deliverable {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) vendor_id: String,
    pub(crate) submitted_by: String,
    pub(crate) size: usize,
    pub(crate) sha256: String,
    pub(crate) files_scanned: u64,
    pub(crate) bytes_scanned: u64,
    pub(crate) skipped: u64,
    /// Whether the scan stopped at its time limit before the end (older records: false).
    #[serde(default)]
    pub(crate) out_of_time: bool,
    /// The findings it opened.
    pub(crate) findings: Vec<String>,
    pub(crate) time: String,
}

/// One finding of a deliverable, as its submitter may see it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Item {
    finding_id: String,
    path: String,
    line: u64,
    rule: String,
    description: String,
    severity: String,
    /// The value redacted (or, for malicious code, the code).
    shown: String,
    /// The finding's status: open, in_progress, resolved, risk_accepted.
    status: String,
}

/// A deliverable with its status and findings.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeliverableView {
    #[serde(flatten)]
    deliverable: Deliverable,
    /// `accepted` once every finding is resolved or its risk accepted, else `in_review`.
    status: String,
    open_findings: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
pub(crate) struct SubmitQuery {
    /// The file's name (its extension says how to read it: .zip, .tar, .tar.gz, ...).
    name: String,
    /// For staff submitting on a vendor's behalf: the vendor.
    vendor: Option<String>,
}

/// What a deliverable's submitter is told of a vault value they may not read.
const HIDDEN_VALUE: &str = "A value stored in Chaperone's vault, of a secret you cannot read: \
                            security has its location and will contact you";

/// Every current secret value (string fields of at least 8 bytes), labelled `path#field`.
async fn vault_values(state: &AppState) -> Result<Vec<(Zeroizing<Vec<u8>>, String)>, ApiError> {
    let keyring = super::secrets::unsealed(state)?;
    let mut out = Vec::new();
    for path in state.store.secret_paths("").await? {
        let Ok(parsed) = SecretPath::parse(&path) else {
            continue;
        };
        let Some(stored) = state.store.read_version(&parsed, None).await? else {
            continue;
        };
        let Some(Value::Object(fields)) = super::secrets::decrypt(&keyring, &stored)? else {
            continue;
        };
        for (field, value) in fields {
            if let Value::String(text) = value
                && text.len() >= 8
            {
                out.push((Zeroizing::new(text.into_bytes()), format!("{path}#{field}")));
            }
        }
    }
    Ok(out)
}

/// Who looks at a deliverable: security (which sees which secret a vault value is), or
/// the submitter's side, which sees where a vault value is only for the secrets in
/// `readable` (labels `path#field`).
enum Viewer {
    Security,
    Submitter { readable: HashSet<String> },
}

impl Viewer {
    /// The viewer `caller` is, for these findings of `deliverable`. Whoever submitted it
    /// is its submitter, whatever their role: otherwise a member of security, who may not
    /// read secrets, could upload guesses and be told which one is a stored value.
    async fn of(
        state: &AppState,
        caller: &Caller,
        deliverable: &Deliverable,
        findings: &[Finding],
    ) -> Result<Viewer, ApiError> {
        if sees_all(caller) && deliverable.submitted_by != actor_id(caller) {
            return Ok(Viewer::Security);
        }
        let mut readable = HashSet::new();
        for label in findings.iter().filter_map(|f| f.details["secret"].as_str()) {
            if readable.contains(label) {
                continue;
            }
            let path = label.rsplit_once('#').map_or(label, |(path, _)| path);
            let Ok(path) = SecretPath::parse(path) else {
                continue;
            };
            let decision = state
                .decide_on_secret(
                    caller.principal.clone(),
                    caller.person_id.as_ref(),
                    caller.vendor_id.as_ref(),
                    Action::SecretRead,
                    &path,
                    caller.client_ip,
                )
                .await?;
            if decision.allowed {
                readable.insert(label.to_owned());
            }
        }
        Ok(Viewer::Submitter { readable })
    }

    /// Whether this viewer is told where the finding is.
    fn sees_where(&self, finding: &Finding) -> bool {
        match (self, finding.details["secret"].as_str()) {
            (Viewer::Submitter { readable }, Some(label)) => readable.contains(label),
            _ => true,
        }
    }
}

/// A secret as findings stored before only its length was shown showed it: its first
/// characters and its length (`Summ****(11 chars)`). The length alone, or `None` for any
/// other text.
fn without_head(shown: &str) -> Option<String> {
    let at = shown.find("****(")?;
    let (head, rest) = shown.split_at(at);
    let digits = rest.strip_prefix("****(")?.strip_suffix(" chars)")?;
    // Four characters, or more where `printable` escaped a control or hidden one.
    (!head.is_empty()
        && !head.contains(char::is_whitespace)
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit()))
    .then(|| rest.to_owned())
}

/// Findings as `caller` may see them through the findings API: to whoever submitted a
/// deliverable, its findings say no more than its view ([`view`]) does, whatever their role:
/// a vault value they may not read is not placed, and no code is shown beside one.
pub(crate) async fn findings_for(
    state: &AppState,
    caller: &Caller,
    mut findings: Vec<Finding>,
) -> Result<Vec<Finding>, ApiError> {
    let mut viewers: HashMap<String, Option<(Viewer, bool)>> = HashMap::new();
    for finding in &mut findings {
        if finding.source != "deliverable" {
            continue;
        }
        // Kept by findings made before fingerprints were dropped: shown to no one.
        if let Some(details) = finding.details.as_object_mut() {
            details.remove("fingerprint");
            // And by those made while a secret showed its first characters: its length only.
            if let Some(bare) = details
                .get("shown")
                .and_then(Value::as_str)
                .and_then(without_head)
            {
                details.insert("shown".into(), bare.into());
            }
        }
        let Some(id) = finding.details["deliverable_id"]
            .as_str()
            .map(str::to_owned)
        else {
            continue;
        };
        if !viewers.contains_key(&id) {
            let seen = match state.store.record("deliverable", &id).await? {
                Some(record) => {
                    let deliverable: Deliverable = body(&record)?;
                    if deliverable.submitted_by == actor_id(caller) {
                        let all = findings_of(state, &deliverable).await?;
                        let viewer = Viewer::of(state, caller, &deliverable, &all).await?;
                        let any_hidden = all.iter().any(|f| !viewer.sees_where(f));
                        Some((viewer, any_hidden))
                    } else {
                        None
                    }
                }
                None => None,
            };
            viewers.insert(id.clone(), seen);
        }
        let Some(Some((viewer, any_hidden))) = viewers.get(&id) else {
            // Not the submitter: the finding's owner (often the vendor's owner) reviews the
            // deliverable by its places, but which vault secret matched is for security,
            // auditors and admins: the owner may not read or list it.
            if !sees_all(caller) {
                finding.details["secret"] = Value::Null;
            }
            continue;
        };
        if !viewer.sees_where(finding) {
            finding.title = "known-value in a deliverable you submitted".into();
            for field in [
                "path",
                "line",
                "shown",
                "secret",
                "fingerprint",
                "occurrences",
                "places",
            ] {
                finding.details[field] = Value::Null;
            }
            // As the deliverable's view says it: how the value was written (base64, hex)
            // would tell which of several groups of guesses, each encoded its own way, holds
            // the stored one.
            finding.details["description"] = HIDDEN_VALUE.into();
        } else if *any_hidden {
            // Neither the code beside a hidden value nor a fingerprint, which is a hash the
            // submitter can compute for each guess, and which differs for a vault value.
            finding.details["shown"] = Value::Null;
            finding.details["fingerprint"] = Value::Null;
        }
    }
    Ok(findings)
}

fn view(deliverable: Deliverable, findings: &[Finding], viewer: &Viewer) -> DeliverableView {
    // Findings come in file and line order: one whose place is hidden would still be placed
    // by its neighbours, so the hidden ones go last, ordered by their (random) ids.
    let (mut hidden, shown): (Vec<&Finding>, Vec<&Finding>) =
        findings.iter().partition(|f| !viewer.sees_where(f));
    hidden.sort_by(|a, b| a.id.cmp(&b.id));
    // Code shown in a finding has every secret on its line redacted, vault values included,
    // so the redaction would place a hidden one: with any hidden, no code is shown.
    let show_code = hidden.is_empty();
    let items: Vec<Item> = shown
        .into_iter()
        .chain(hidden)
        .map(|f| {
            if !viewer.sees_where(f) {
                return Item {
                    finding_id: f.id.clone(),
                    path: String::new(),
                    line: 0,
                    rule: f.details["rule"].as_str().unwrap_or_default().to_owned(),
                    description: HIDDEN_VALUE.to_owned(),
                    severity: f.severity.clone(),
                    shown: String::new(),
                    status: f.status.clone(),
                };
            }
            Item {
                finding_id: f.id.clone(),
                path: f.details["path"].as_str().unwrap_or_default().to_owned(),
                line: f.details["line"].as_u64().unwrap_or(0),
                rule: f.details["rule"].as_str().unwrap_or_default().to_owned(),
                description: f.details["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                severity: f.severity.clone(),
                shown: match (viewer, f.details["secret"].as_str()) {
                    (Viewer::Security, Some(secret)) => format!("value of {secret}"),
                    _ if show_code => {
                        let shown = f.details["shown"].as_str().unwrap_or_default();
                        without_head(shown).unwrap_or_else(|| shown.to_owned())
                    }
                    _ => String::new(),
                },
                status: f.status.clone(),
            }
        })
        .collect();
    let open = findings
        .iter()
        .filter(|f| !matches!(f.status.as_str(), "resolved" | "risk_accepted"))
        .count();
    // The record lists its findings in file and line order too: shown as the items are,
    // or a hidden one's id would be placed by its neighbours in that list.
    let mut deliverable = deliverable;
    deliverable.findings = items.iter().map(|i| i.finding_id.clone()).collect();
    DeliverableView {
        deliverable,
        status: if open == 0 { "accepted" } else { "in_review" }.into(),
        open_findings: open,
        items,
    }
}

fn sees_all(caller: &Caller) -> bool {
    matches!(
        caller.principal.role,
        Role::Admin | Role::Security | Role::Auditor
    )
}

#[utoipa::path(post, path = "/api/v1/deliverables", params(("name" = String, Query, description = "the file's name, e.g. release-1.4.zip"), ("vendor" = Option<String>, Query, description = "for staff: the vendor it is from")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, body = DeliverableView), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 413, body = super::ErrorBody)), security(("bearer" = [])))]
/// Submits a deliverable (an archive or a file) for the caller's vendor; it is scanned at
/// once and its findings are opened for review.
pub(crate) async fn submit(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiQuery(query): ApiQuery<SubmitQuery>,
    body: axum::body::Body,
) -> Result<Json<DeliverableView>, ApiError> {
    // A slot before the body is read (it is held until the answer): uploads waiting for
    // the scan hold at most `MAX_QUEUED_UPLOADS` bodies in memory, one an uploader.
    let _mine = super::Uploading::start(&state.deliverable_uploaders, &caller)?;
    let slot = super::upload_slot(
        &state.upload_slots,
        "other deliverables are being scanned; try again in a minute",
    )?;
    let content = axum::body::to_bytes(body, MAX_DELIVERABLE_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the deliverable is larger than the server accepts (64 MiB)",
            )
        })?;
    let name = query.name.trim().to_owned();
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if name.is_empty() || name.len() > 200 || !plain {
        return Err(ApiError::bad_request(
            "invalid_request",
            "name the file with 1 to 200 of A-Z a-z 0-9 . - _",
        ));
    }
    if content.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the upload is empty",
        ));
    }
    let vendor_id = match (&caller.vendor_id, &query.vendor) {
        (Some(own), None) => own.clone(),
        (None, Some(name)) => vendor_named(&state, name).await?.id,
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_permitted",
                "a contractor submits for their own vendor only",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "say which vendor the deliverable is from: ?vendor=NAME",
            ));
        }
    };
    let vendor = state
        .store
        .vendor(&vendor_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such vendor"))?;
    // The permit moves into the scan: it is released when the scan ends, even if this
    // request has timed out meanwhile.
    let permit = Arc::clone(&state.scans)
        .acquire_owned()
        .await
        .expect("the scan semaphore is never closed");
    let values = vault_values(&state).await?;
    let name_for_scan = name.clone();
    let data = content.clone();
    let time_limit = state.settings.scan_time_limit;
    let report = tokio::task::spawn_blocking(move || {
        // Both held until the scan ends, even when the request has timed out meanwhile:
        // the scan still holds the upload.
        let _permits = (permit, slot);
        let known: Vec<(&[u8], String)> = values
            .iter()
            .map(|(v, label)| (v.as_slice(), label.clone()))
            .collect();
        let mut scanner = Scanner::new(RuleSet::builtin().expect("the built-in rules compile"))
            .with_known_values(&known);
        // The submitter writes every line: an allow comment of theirs hides nothing.
        scanner.honour_allow = false;
        scanner.max_expanded = MAX_EXPANDED;
        // From when the scan starts, not when the upload arrived: time spent waiting for
        // another upload's scan is not taken from this one's.
        scanner.deadline = Some(std::time::Instant::now() + time_limit);
        scanner.scan_upload(&name_for_scan, &data)
        // `values` (and the scanner's copy) are dropped here, at the end of the scan.
    })
    .await
    .map_err(|e| {
        // A panic's message could quote what was scanned: neither the log nor the answer
        // carries it.
        tracing::error!(panicked = e.is_panic(), "the deliverable scan failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "scan",
            "the deliverable could not be scanned",
        )
    })?
    .map_err(|e| {
        ApiError::bad_request(
            "unreadable",
            format!("the deliverable could not be read as {name}: {e}"),
        )
    })?;

    let now = state.clock.now();
    let id = new_id("dlv");
    let owner = super::governance::active_owner(&state, &vendor).await?;
    let mut ops = Vec::new();
    let mut findings = Vec::new();
    // One finding per vault secret, however often its value occurs (with the count and the
    // first places, for security): a submitter who may not see where a value is would
    // otherwise tell guesses apart by repeating each a different number of times and
    // counting the hidden findings.
    let mut occurrences: HashMap<&str, (usize, Vec<Value>)> = HashMap::new();
    let mut kept = Vec::new();
    for f in &report.findings {
        if f.rule == KNOWN_VALUE
            && let Some(label) = f.known.as_deref()
        {
            let (count, places) = occurrences.entry(label).or_default();
            *count += 1;
            if places.len() < MAX_PLACES {
                places.push(json!({ "path": member(&f.path), "line": f.line }));
            }
            if *count > 1 {
                continue;
            }
        }
        kept.push(f);
    }
    let mut add = |severity: &str, title: String, details: Value| {
        let (op, finding) = new_finding(
            NewFinding {
                source: "deliverable",
                severity,
                title,
                subject: id.clone(),
                vendor_id: Some(vendor.id.clone()),
                owner: owner.clone(),
                due: now.plus_secs(7 * 86_400),
                details,
            },
            now,
        );
        ops.push(op);
        findings.push(finding);
    };
    for f in kept {
        let counted = f.known.as_deref().and_then(|l| occurrences.get(l));
        add(
            f.severity.as_str(),
            format!(
                "{} in {} of {name}, line {}",
                f.rule,
                member(&f.path),
                f.line
            ),
            json!({
                "deliverable_id": id,
                "path": member(&f.path),
                "line": f.line,
                "rule": f.rule,
                "description": f.description,
                // The file's text around the match, written by the submitter: escaped too.
                "shown": chaperone_scan::output::printable(&f.redacted),
                // No fingerprint: it is an unkeyed hash of the value (for CLI baselines),
                // which would let whoever reads findings confirm a guess of a short value
                // (an identity number, a card number) offline, and the server never uses it.
                // Which vault secret (path and field, never the value): for security.
                "secret": f.known,
                "occurrences": counted.map(|(n, _)| n),
                "places": counted.map(|(_, p)| p),
            }),
        );
    }
    // What could not be scanned is not taken for clean: it holds the deliverable in review
    // until someone has looked at it.
    let unscanned = report.skipped_binary + report.skipped_large;
    if unscanned > 0 || report.out_of_time {
        let mut parts = Vec::new();
        if unscanned > 0 {
            parts.push(format!(
                "{} binary and {} over the size or archive limits",
                report.skipped_binary, report.skipped_large
            ));
        }
        if report.out_of_time {
            parts.push(format!(
                "the scan stopped at its time limit ({} s) before the end",
                time_limit.as_secs()
            ));
        }
        add(
            "high",
            if unscanned > 0 {
                format!("{unscanned} part(s) of {name} could not be scanned")
            } else {
                format!("{name} was not scanned to the end")
            },
            json!({
                "deliverable_id": id,
                "path": "",
                "line": 0,
                "rule": UNSCANNED,
                "description": format!(
                    "{}: review the deliverable by hand before accepting it",
                    parts.join("; ")
                ),
                "shown": "",
                "fingerprint": null,
                "secret": null,
            }),
        );
    }
    let deliverable = Deliverable {
        id: id.clone(),
        name: name.clone(),
        vendor_id: vendor.id.clone(),
        submitted_by: actor_id(&caller),
        size: content.len(),
        sha256: super::sha256_hex(&content),
        files_scanned: report.files_scanned,
        bytes_scanned: report.bytes_scanned,
        skipped: report.skipped_binary + report.skipped_large,
        out_of_time: report.out_of_time,
        findings: findings.iter().map(|f| f.id.clone()).collect(),
        time: now.to_rfc3339(),
    };
    ops.push(Op::Put(new_record(
        "deliverable",
        id.clone(),
        Some(vendor.id.clone()),
        &deliverable,
        now,
    )));
    // A stored value in a deliverable is a leak, or someone testing which values are
    // stored: security hears of it in the same change, with counts (the findings say where).
    if !occurrences.is_empty() {
        let people = state.store.list_people().await?;
        ops.push(crate::notify::notification(
            "deliverable_vault_match",
            &crate::notify::security_or_admins(&people),
            &id,
            json!({
                "deliverable_id": id,
                "vendor": vendor.name,
                "submitted_by": actor_id(&caller),
                "vault_matches": occurrences.len(),
            }),
            now,
        ));
    }
    let event = change_event(
        &state,
        &info,
        &caller,
        "deliverable.submit",
        &id,
        [
            ("vendor_id", vendor.id.clone().into()),
            ("name", name.clone().into()),
            ("size", content.len().into()),
            ("sha256", deliverable.sha256.clone().into()),
            ("findings", findings.len().into()),
            // Distinct vault secrets, not occurrences: the submitter reads this entry.
            ("vault_matches", occurrences.len().into()),
        ],
    );
    state.store.apply(ops, vec![event]).await?;
    tracing::info!(deliverable = %id, vendor = %vendor.name, findings = findings.len(), "deliverable scanned");
    let viewer = Viewer::of(&state, &caller, &deliverable, &findings).await?;
    Ok(Json(view(deliverable, &findings, &viewer)))
}

/// Bytes one uploaded archive may expand to. Members are read one at a time, each at most
/// the scanner's file limit, but a tar's extension header is held whole, up to this.
const MAX_EXPANDED: u64 = 256 * 1024 * 1024;

/// Places of one vault value kept on its finding at most.
const MAX_PLACES: usize = 100;

/// The rule of the finding that says part of a deliverable was not scanned.
const UNSCANNED: &str = "unscanned-content";

/// The member path without the upload's name (`a.zip!src/x` → `src/x`), with what would
/// change how it is shown escaped: the submitter named the members, and staff read these
/// names in findings (a direction control could make `a.env` show as another file).
fn member(path: &str) -> String {
    let member = path.split_once('!').map_or(path, |(_, m)| m);
    chaperone_scan::output::printable(member).into_owned()
}

async fn findings_of(
    state: &AppState,
    deliverable: &Deliverable,
) -> Result<Vec<Finding>, ApiError> {
    let mut out = Vec::new();
    for id in &deliverable.findings {
        if let Some(record) = state.store.record("finding", id).await? {
            out.push(body(&record)?);
        }
    }
    Ok(out)
}

#[utoipa::path(get, path = "/api/v1/deliverables", responses((status = 200, body = Vec<DeliverableView>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Deliverables: a contractor sees their vendor's; security, admins and auditors all.
pub(crate) async fn list(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<DeliverableView>>, ApiError> {
    let all = sees_all(&caller);
    let owner = if all { None } else { caller.vendor_id.clone() };
    if !all && owner.is_none() {
        return Ok(Json(Vec::new()));
    }
    let mut out = Vec::new();
    for record in state.store.records("deliverable", owner.as_deref()).await? {
        let deliverable: Deliverable = body(&record)?;
        let findings = findings_of(&state, &deliverable).await?;
        let viewer = Viewer::of(&state, &caller, &deliverable, &findings).await?;
        out.push(view(deliverable, &findings, &viewer));
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/deliverables/{id}", params(("id" = String, Path)), responses((status = 200, body = DeliverableView), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)), security(("bearer" = [])))]
/// One deliverable, with its status as of now.
pub(crate) async fn show(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeliverableView>, ApiError> {
    let record = state
        .store
        .record("deliverable", &id)
        .await?
        .filter(|r| sees_all(&caller) || (r.owner.is_some() && r.owner == caller.vendor_id))
        .ok_or_else(|| ApiError::not_found(format!("no deliverable `{id}`")))?;
    let deliverable: Deliverable = body(&record)?;
    let findings = findings_of(&state, &deliverable).await?;
    let viewer = Viewer::of(&state, &caller, &deliverable, &findings).await?;
    Ok(Json(view(deliverable, &findings, &viewer)))
}

#[cfg(test)]
mod tests {
    use super::without_head;

    #[test]
    fn a_stored_secrets_first_characters_are_not_shown() {
        assert_eq!(
            without_head("Summ****(11 chars)").as_deref(),
            Some("****(11 chars)")
        );
        assert_eq!(
            without_head("ghp_****(40 chars)").as_deref(),
            Some("****(40 chars)")
        );
        // Already its length only, code, or other text: as it is.
        assert_eq!(without_head("****(11 chars)"), None);
        assert_eq!(without_head("curl -H \"K: ****(22 chars)\" x | sh"), None);
        assert_eq!(without_head("Summer****(x chars)"), None);
        assert_eq!(
            without_head("ab\\u{202e}c****(9 chars)").as_deref(),
            Some("****(9 chars)")
        );
    }
}
