//! `/api/v1/ledger/...`: the verifier key, signed checkpoints, proofs and entries.
//!
//! The signing key is an Ed25519 seed made at initialisation, stored encrypted under the keyring
//! (bound to the purpose `ledger-signing-key` and the log's origin), so it exists in clear only
//! in memory of an unsealed server.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chaperone_core::policy::Role;
use chaperone_crypto::{Keyring, random_bytes};
use chaperone_ledger::checkpoint::Checkpoint;
use chaperone_ledger::merkle::{self, Hash};
use chaperone_ledger::note::{self, Signer};
use chaperone_ledger::tiles::{self, TileId};
use chaperone_store::StoreError;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The keyring purpose of the ledger's signing seed.
pub(crate) const KEY_PURPOSE: &str = "ledger-signing-key";
/// Most entries one request returns.
const MAX_ENTRIES: u64 = 1000;

/// A new ledger origin, `chaperone-<8 hex digits>/ledger`, and a new Ed25519 signing seed
/// sealed under `keyring` (bound to the purpose and the origin).
pub(crate) fn new_ledger_key(keyring: &Keyring) -> (String, Vec<u8>) {
    let mut id = [0u8; 4];
    random_bytes(&mut id);
    let origin = format!("chaperone-{}/ledger", hex::encode(id));
    let mut seed = Zeroizing::new([0u8; 32]);
    random_bytes(seed.as_mut());
    let sealed = keyring.seal_field(KEY_PURPOSE, &origin, seed.as_ref());
    (origin, sealed)
}

impl AppState {
    /// The ledger's signer, made (and stored sealed) on first use.
    pub(crate) async fn ledger_signer(&self) -> Result<Signer, ApiError> {
        let keyring = self.keyring().ok_or_else(ApiError::sealed)?;
        let (origin, sealed) = match self.store.ledger_key().await? {
            Some(key) => key,
            None => {
                // A log that has entries had a key; making a new one would let whoever
                // deleted it start a fresh history under a new name.
                if self.store.ledger_size().await? > 0 {
                    return Err(inconsistent(
                        "the ledger has entries but its signing key is missing".to_owned(),
                    ));
                }
                let (origin, sealed) = new_ledger_key(&keyring);
                self.store
                    .create_ledger_key(&origin, &sealed, self.clock.now())
                    .await?
            }
        };
        let plain = keyring.open_field(KEY_PURPOSE, &origin, &sealed)?;
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(plain.expose().try_into().map_err(|_| {
                ApiError::from(StoreError::Corrupt(
                    "the ledger seed is not 32 bytes".into(),
                ))
            })?);
        Signer::new(&origin, &seed).map_err(|e| StoreError::Corrupt(e.to_string()).into())
    }

    /// The tree head at `size`, from the stored tiles.
    async fn ledger_root(&self, size: u64) -> Result<Hash, ApiError> {
        Ok(self.store.ledger_root(size).await?)
    }

    /// The signed checkpoint of the current ledger: the latest one made if the log has not
    /// grown since, otherwise a new one. A new checkpoint is signed only after checking that
    /// it is consistent with the latest one kept in the database and with the largest one
    /// this process signed or checked (so checkpoints never go backwards or fork, whatever
    /// happened to the database meanwhile, and deleting kept checkpoints is noticed), and
    /// is kept.
    pub(crate) async fn checkpoint_now(&self) -> Result<String, ApiError> {
        let signer = self.ledger_signer().await?;
        let verifier = signer.verifier();
        // The latest checkpoint first, the head second: the log only grows, so a checkpoint
        // made meanwhile (by the background task, or another node) cannot look newer than
        // the head read after it.
        // The pin before both: it only ever names a checkpoint already kept, so the latest
        // one read after it is at least as large unless checkpoints were removed (read after
        // them, a checkpoint signed meanwhile by another request would look removed).
        let pinned = *self.ledger_pin.lock().unwrap_or_else(|e| e.into_inner());
        let latest = self.store.latest_checkpoint().await?;
        // The head as this server's committer wrote it, not as the database holds it now:
        // entries written into the database by anyone else are not signed. At least as
        // large as what was kept or pinned (with PostgreSQL, another node may have signed
        // past what this one wrote).
        let at_least = latest
            .as_ref()
            .map(|(size, _, _)| *size)
            .max(pinned.map(|(size, _)| size))
            .unwrap_or(0);
        let (size, root) = self.store.ledger_committed_head(at_least).await?;
        let kept = match &latest {
            Some((old_size, note, _)) => {
                let old = note::open(note.as_bytes(), std::slice::from_ref(&verifier))
                    .ok()
                    .and_then(|text| Checkpoint::parse(&text).ok())
                    .ok_or_else(|| {
                        inconsistent(format!(
                            "the checkpoint kept at size {old_size} does not verify"
                        ))
                    })?;
                Some((old.size, old.root, note.clone()))
            }
            None => None,
        };
        if let Some((pin_size, _)) = pinned
            && kept
                .as_ref()
                .is_none_or(|(kept_size, _, _)| *kept_size < pin_size)
        {
            return Err(inconsistent(format!(
                "this server signed a checkpoint at {pin_size} that the database no longer \
                 keeps: checkpoints were removed"
            )));
        }
        // When the pin is the kept checkpoint itself (the usual case), checking the kept one
        // below checks both.
        if let Some((pin_size, pin_root)) = pinned
            && kept.as_ref().is_none_or(|(kept_size, kept_root, _)| {
                (*kept_size, kept_root) != (pin_size, &pin_root)
            })
        {
            self.check_extends(pin_size, &pin_root, size, &root).await?;
        }
        if let Some((old_size, old_root, note)) = &kept {
            self.check_extends(*old_size, old_root, size, &root).await?;
            if *old_size == size {
                self.pin_ledger(size, root);
                return Ok(note.clone());
            }
        }
        let body = Checkpoint {
            origin: verifier.name().to_owned(),
            size,
            root,
            extensions: Vec::new(),
        };
        let signed = signer
            .sign(&body.to_text())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store
            .record_checkpoint(size, &signed, self.clock.now())
            .await?;
        self.pin_ledger(size, root);
        Ok(signed)
    }

    /// Checks that the tree head (`size`, `root`) extends the one at `old_size` with
    /// `old_root` (equal sizes: the same root), from the stored tiles.
    async fn check_extends(
        &self,
        old_size: u64,
        old_root: &Hash,
        size: u64,
        root: &Hash,
    ) -> Result<(), ApiError> {
        if old_size > size {
            return Err(inconsistent(format!(
                "the ledger holds {size} entries but a checkpoint at {old_size} was made: entries were removed"
            )));
        }
        if old_size == size {
            if old_root != root {
                return Err(inconsistent(format!(
                    "the ledger's head at {size} differs from its checkpoint: entries were changed"
                )));
            }
            return Ok(());
        }
        if old_size > 0 {
            let needed = merkle::nodes_needed(|r| merkle::consistency_proof(old_size, size, r));
            let tiles = self.store.ledger_tiles_for(&needed).await?;
            let proof = merkle::consistency_proof(old_size, size, &tiles)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            merkle::verify_consistency(old_size, size, &proof, old_root, root).map_err(|_| {
                inconsistent(format!(
                    "the ledger is not an extension of its checkpoint at {old_size}: entries were changed"
                ))
            })?;
        }
        Ok(())
    }

    /// Remembers (`size`, `root`) as checked, if it is the largest so far.
    fn pin_ledger(&self, size: u64, root: Hash) {
        let mut pin = self.ledger_pin.lock().unwrap_or_else(|e| e.into_inner());
        if pin.is_none_or(|(pinned, _)| pinned < size) {
            *pin = Some((size, root));
        }
    }
}

fn inconsistent(message: String) -> ApiError {
    tracing::error!(%message, "the ledger failed its consistency check; no checkpoint signed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ledger_inconsistent",
        message,
    )
}

/// Signs checkpoints at least once a second while entries arrive, until the task is
/// dropped. Sealed servers and errors are retried at the next tick.
pub(crate) async fn checkpoints(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.keyring().is_none() {
            continue;
        }
        let grown = match (
            state.store.ledger_size().await,
            state.store.latest_checkpoint().await,
        ) {
            (Ok(size), Ok(latest)) => latest.is_none_or(|(s, _, _)| s < size),
            _ => false,
        };
        if grown && let Err(e) = state.checkpoint_now().await {
            tracing::warn!(error = %e.message, "checkpoint not made");
        }
    }
}

/// The verifier key, `name+hex8+base64`.
#[utoipa::path(get, path = "/api/v1/ledger/key", responses((status = 200, description = "verifier key", content_type = "text/plain")))]
pub(crate) async fn key(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let verifier = state.ledger_signer().await?.verifier();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{verifier}\n"),
    ))
}

/// The signed checkpoint of the current log (C2SP tlog-checkpoint as a signed note); the
/// tlog-tiles `checkpoint` path.
#[utoipa::path(get, path = "/api/v1/ledger/checkpoint", responses((status = 200, description = "signed note", content_type = "text/plain")), security(("bearer" = [])))]
pub(crate) async fn checkpoint(
    _caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, ApiError> {
    let note = state.checkpoint_now().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        note,
    ))
}

/// A tlog-tiles hash tile or entry bundle: `tile/<L>/<N>[.p/<W>]` or
/// `tile/entries/<N>[.p/<W>]`. Full tiles never change and may be cached forever.
#[utoipa::path(get, path = "/api/v1/ledger/tile/{path}", params(("path" = String, Path, description = "e.g. 0/x001/234.p/7 or entries/000")),
    responses((status = 200, description = "tile bytes", content_type = "application/octet-stream"), (status = 404, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn tile(
    _caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(path): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = TileId::parse(&format!("tile/{path}"))
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let Some(data) = state.store.ledger_tile(id).await? else {
        // A full tile the log is large enough to have, and the database does not hold, is
        // a broken store, never "not there yet". (A partial tile may be gone once the log
        // grew past it.)
        let level = match id.kind {
            tiles::TileKind::Hashes(level) => u32::from(level),
            tiles::TileKind::Entries => 0,
        };
        // The entries up to the tile's end, in 128 bits: a tile far past any log (level 7,
        // a large index) is simply not there yet.
        let covers = (u128::from(id.index) * u128::from(tiles::WIDTH) + u128::from(id.width))
            .saturating_mul(u128::from(tiles::WIDTH).saturating_pow(level));
        if id.width == tiles::WIDTH && u128::from(state.store.ledger_size().await?) >= covers {
            return Err(chaperone_store::StoreError::Corrupt(format!(
                "{} is missing from a log of its size",
                id.path()
            ))
            .into());
        }
        return Err(ApiError::not_found(format!(
            "{} is not in the log yet",
            id.path()
        )));
    };
    // `private`: the answer needed a token that only some roles hold, so no shared cache
    // (a reverse proxy that ignores Authorization) may keep it for others.
    let cache = if id.width == tiles::WIDTH {
        "private, max-age=31536000, immutable"
    } else {
        "no-store"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        data,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct InclusionQuery {
    index: u64,
    size: u64,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct ConsistencyQuery {
    old: u64,
    new: u64,
}

/// A proof: base64 hashes, lowest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ProofResponse {
    proof: Vec<String>,
}

fn proof_error(e: merkle::ProofError) -> ApiError {
    ApiError::bad_request("invalid_request", e.to_string())
}

/// The inclusion proof of entry `index` in the tree of `size` entries.
#[utoipa::path(get, path = "/api/v1/ledger/proof/inclusion", params(InclusionQuery), responses((status = 200, body = ProofResponse)), security(("bearer" = [])))]
pub(crate) async fn inclusion(
    _caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Json<ProofResponse>, ApiError> {
    check_size(&state, q.size).await?;
    let needed = merkle::nodes_needed(|r| merkle::inclusion_proof(q.index, q.size, r));
    let nodes = state.store.ledger_tiles_for(&needed).await?;
    let proof = merkle::inclusion_proof(q.index, q.size, &nodes).map_err(proof_error)?;
    Ok(Json(ProofResponse {
        proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
    }))
}

/// The consistency proof from the tree of `old` entries to the tree of `new` entries.
#[utoipa::path(get, path = "/api/v1/ledger/proof/consistency", params(ConsistencyQuery), responses((status = 200, body = ProofResponse)), security(("bearer" = [])))]
pub(crate) async fn consistency(
    _caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Json<ProofResponse>, ApiError> {
    check_size(&state, q.new).await?;
    let needed = merkle::nodes_needed(|r| merkle::consistency_proof(q.old, q.new, r));
    let nodes = state.store.ledger_tiles_for(&needed).await?;
    let proof = merkle::consistency_proof(q.old, q.new, &nodes).map_err(proof_error)?;
    Ok(Json(ProofResponse {
        proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
    }))
}

async fn check_size(state: &AppState, size: u64) -> Result<(), ApiError> {
    if size > state.store.ledger_size().await? {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the size is larger than the ledger",
        ));
    }
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct EntriesQuery {
    start: u64,
    end: Option<u64>,
}

/// Entries `[start, end)` (at most 1000), as JSON. A contractor sees only entries in which
/// they are the actor.
#[utoipa::path(get, path = "/api/v1/ledger/entries", params(EntriesQuery), responses((status = 200, description = "entries")), security(("bearer" = [])))]
pub(crate) async fn entries(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<EntriesQuery>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let end = q
        .end
        .unwrap_or(u64::MAX)
        .min(q.start.saturating_add(MAX_ENTRIES));
    let rows = state.store.ledger_entries(q.start, end).await?;
    let own_only = caller.principal.role == Role::Contractor;
    let mut out = Vec::with_capacity(rows.len());
    for (_, body) in rows {
        let entry: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::from(StoreError::Corrupt(format!("ledger entry: {e}"))))?;
        if !own_only || entry["actor"]["person"].as_str() == caller.person_id.as_deref() {
            out.push(shown(entry, own_only));
        }
    }
    Ok(Json(out))
}

/// An entry as a caller reads it: whole, or for a contractor (who reads only their own)
/// without where it came from.
///
/// Security decision: a token taken from a contractor would otherwise learn the networks
/// they act from (and their client), and act from there, past the watch's `new_network`.
/// Their own entries still say what they did and when; the tiles, which only auditors and
/// staff read, keep every byte for verification.
fn shown(mut entry: serde_json::Value, own_only: bool) -> serde_json::Value {
    if own_only && let Some(fields) = entry.as_object_mut() {
        fields.remove("client_ip");
        fields.remove("user_agent");
    }
    entry
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct SearchQuery {
    /// The actor: a person's id or name.
    actor: Option<String>,
    /// The actor's vendor: its id or name.
    vendor: Option<String>,
    /// Action, e.g. `secret.read`; a trailing `.` matches a family (`secret.`).
    action: Option<String>,
    /// Resource prefix, e.g. a secret path prefix.
    resource: Option<String>,
    /// Earliest time, RFC 3339 or a prefix of one (`2026-11-25`).
    since: Option<String>,
    /// Latest time (exclusive), same form.
    until: Option<String>,
    /// First index to scan (default 0).
    start: Option<u64>,
    /// Most entries to return (default and cap 1000).
    limit: Option<usize>,
}

/// Matching entries and where to continue.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SearchResponse {
    entries: Vec<serde_json::Value>,
    /// The index to pass as `start` to continue, if the scan stopped before the end of the
    /// log (at `limit` matches, or after 65,536 entries scanned).
    next: Option<u64>,
}

/// Entries filtered by actor, vendor, action, resource prefix and time range, oldest first,
/// for investigations. A contractor sees only entries in which they are the actor.
#[utoipa::path(get, path = "/api/v1/ledger/search", params(SearchQuery), responses((status = 200, body = SearchResponse)), security(("bearer" = [])))]
pub(crate) async fn search(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResponse>, ApiError> {
    const CHUNK: u64 = 4096;
    // Entries scanned per request, matching or not: bounds the cost of one call; `next`
    // continues the scan.
    const SCAN: u64 = 65_536;
    let limit = q
        .limit
        .unwrap_or(MAX_ENTRIES as usize)
        .clamp(1, MAX_ENTRIES as usize);
    let own_only = caller.principal.role == Role::Contractor;
    // Entries name people and vendors by id; a name is looked up, and one that names nobody
    // is said so rather than answered with an empty list. A contractor, who sees only their
    // own entries, is not told who exists: an unknown name just matches nothing.
    let mut q = q;
    if let Some(actor) = q.actor.as_deref().filter(|a| !a.starts_with("per_")) {
        q.actor = match state.store.person(actor).await? {
            Some(person) => Some(person.id),
            None if own_only => Some(String::new()),
            None => return Err(ApiError::not_found(format!("no person `{actor}`"))),
        };
    }
    if let Some(vendor) = q.vendor.as_deref().filter(|v| !v.starts_with("ven_")) {
        q.vendor = match state.store.vendor(vendor).await? {
            Some(found) => Some(found.id),
            None if own_only => Some(String::new()),
            None => return Err(ApiError::not_found(format!("no vendor `{vendor}`"))),
        };
    }
    let size = state.store.ledger_size().await?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    let mut at = q.start.unwrap_or(0);
    let stop = at.saturating_add(SCAN).min(size);
    while at < stop {
        let rows = state
            .store
            .ledger_entries(at, at.saturating_add(CHUNK))
            .await?;
        if rows.is_empty() {
            break;
        }
        for (seq, body) in rows {
            at = seq + 1;
            let entry: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                ApiError::from(StoreError::Corrupt(format!("ledger entry {seq}: {e}")))
            })?;
            let person = entry["actor"]["person"].as_str();
            if own_only && person != caller.person_id.as_deref() {
                continue;
            }
            let action = text(&entry["action"]);
            let time = text(&entry["time"]);
            let keep = q.actor.as_deref().is_none_or(|a| person == Some(a))
                && q.vendor
                    .as_deref()
                    .is_none_or(|v| entry["actor"]["vendor"].as_str() == Some(v))
                && q.action.as_deref().is_none_or(|a| {
                    if a.ends_with('.') {
                        action.starts_with(a)
                    } else {
                        action == a
                    }
                })
                && q.resource
                    .as_deref()
                    .is_none_or(|r| text(&entry["resource"]).starts_with(r))
                && q.since.as_deref().is_none_or(|s| time.as_str() >= s)
                && q.until.as_deref().is_none_or(|u| time.as_str() < u);
            if keep {
                out.push(shown(entry, own_only));
                if out.len() == limit {
                    return Ok(Json(SearchResponse {
                        entries: out,
                        next: (at < size).then_some(at),
                    }));
                }
            }
        }
    }
    Ok(Json(SearchResponse {
        entries: out,
        next: (at < size).then_some(at),
    }))
}

/// What `chaperone backup` asks the server to vouch for.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupRequest {
    /// `sqlite` or `postgres`.
    backend: String,
    /// SHA-256 of the snapshot file, lowercase hex.
    sha256: String,
    /// Size of the snapshot file in bytes.
    bytes: u64,
    /// Ledger entries in the snapshot.
    ledger_size: u64,
    /// The ledger's root at `ledger_size`, base64.
    ledger_root: String,
}

/// The signed backup statement.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BackupStatement {
    /// A signed note: a checkpoint at the snapshot's ledger size with the extension line
    /// `chaperone-backup/1 <backend> <sha256> <bytes> <signed at, RFC 3339>`.
    statement: String,
}

/// Signs a backup's manifest with the ledger key, after checking that the snapshot's ledger
/// head is this ledger's head at that size. A restore checks the statement against the
/// verifier key before it reads anything else from the backup, so a backup altered after it
/// was taken (the snapshot, or the manifest beside it) is refused.
#[utoipa::path(post, path = "/api/v1/sys/backup", request_body = BackupRequest,
    responses((status = 200, body = BackupStatement)), security(("bearer" = [])))]
pub(crate) async fn sign_backup(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    axum::Extension(info): axum::Extension<crate::record::RequestInfo>,
    super::ApiJson(body): super::ApiJson<BackupRequest>,
) -> Result<Json<BackupStatement>, ApiError> {
    let bad = |message: &str| ApiError::bad_request("invalid_backup", message.to_owned());
    if !matches!(body.backend.as_str(), "sqlite" | "postgres") {
        return Err(bad("the backend is sqlite or postgres"));
    }
    if body.sha256.len() != 64
        || !body
            .sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(bad("sha256 is 64 lowercase hex digits"));
    }
    let root: Hash = STANDARD
        .decode(&body.ledger_root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| bad("ledger_root is a base64 SHA-256"))?;
    // The ledger is checked against its checkpoints first (and a checkpoint signed of its
    // head), then the snapshot's tree head against that head: a statement is only ever
    // signed for a prefix of the history the checkpoints vouch for.
    let head = state.checkpoint_now().await?;
    let verifier = state.ledger_signer().await?.verifier();
    let head = note::open(head.as_bytes(), std::slice::from_ref(&verifier))
        .ok()
        .and_then(|text| Checkpoint::parse(&text).ok())
        .ok_or_else(|| inconsistent("the checkpoint just made does not verify".to_owned()))?;
    let matches = body.ledger_size <= head.size
        && state.ledger_root(body.ledger_size).await? == root
        && state
            .check_extends(body.ledger_size, &root, head.size, &head.root)
            .await
            .is_ok();
    if !matches {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ledger_mismatch",
            "the snapshot's ledger is not this server's ledger: it cannot be vouched for",
        ));
    }
    let signer = state.ledger_signer().await?;
    let checkpoint = Checkpoint {
        origin: signer.verifier().name().to_owned(),
        size: body.ledger_size,
        root,
        // The server's time is signed too: the manifest's date is not, so an older backup
        // could otherwise pass for a newer one and bring back access revoked since.
        extensions: vec![format!(
            "{} {} {} {} {}",
            chaperone_ledger::checkpoint::BACKUP_EXTENSION,
            body.backend,
            body.sha256,
            body.bytes,
            state.clock.now().to_rfc3339()
        )],
    };
    let statement = signer
        .sign(&checkpoint.to_text())
        .map_err(|e| ApiError::from(StoreError::Corrupt(e.to_string())))?;
    let mut record =
        crate::record::Record::new("sys.backup", "", chaperone_ledger::entry::Outcome::Success);
    record
        .details
        .insert("sha256".into(), body.sha256.clone().into());
    record.details.insert("bytes".into(), body.bytes.into());
    record
        .details
        .insert("ledger_size".into(), body.ledger_size.into());
    state.record(&info, caller.actor(), record).await?;
    Ok(Json(BackupStatement { statement }))
}
