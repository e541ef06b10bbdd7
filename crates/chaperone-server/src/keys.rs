//! Key management on a running server: `POST /api/v1/sys/rekey` and `/sys/rekey/verify`
//! (new unseal shares for the same root key) and `/api/v1/sys/rotate` (a new
//! key-encryption-key generation, with the re-wrapping of every stored key in the
//! background).
//!
//! Rekey is two steps, so that new shares that never reached anyone cannot lock the server
//! out. The first takes a quorum of the current shares, which must open the stored root key,
//! makes a new unseal key and answers its split, and changes nothing stored: the new
//! wrapping waits in this node's memory (ten minutes at most). The second takes a quorum of
//! the *new* shares back; only then is the root key's new wrapping stored, with its ledger
//! entry. The old shares then combine into the old unseal key, which opens nothing stored
//! any more. The root key itself does not change: old shares still open backups taken
//! before the rekey, which must be destroyed if a share was exposed.
//!
//! Rotation starts generation `g + 1` in the store (with its ledger entry) and swaps the
//! keyring in memory, so every key wrapped from then on uses the new KEK. A background pass
//! then walks every sealed blob (data keys, TOTP secrets, the ledger seed, documents,
//! wrapped responses) and re-wraps those of older generations, each with a compare-and-swap
//! so that concurrent writes win. Requests that took the old keyring before the swap may
//! still write under it, so after the first pass the task waits until no request holds the
//! old keyring, then passes again, and records the generation complete only after a pass
//! that found nothing left to re-wrap. Old generations stay derivable from the root key, so
//! a blob not yet re-wrapped opens at any moment. The pass resumes after a restart (the
//! store keeps which generation is complete), backs off when it fails, and records its
//! completion in the ledger.

use std::sync::{Arc, Mutex, Weak};

use axum::extract::State;
use axum::{Extension, Json};
use chaperone_crypto::shamir::{self, Share};
use chaperone_crypto::{Binding, Keyring, UnsealKey, WrappedRootKey};
use chaperone_ledger::entry::{Actor, Outcome};
use chaperone_store::{SealConfig, SealedItem, SealedKey, SealedKind, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::api::ApiJson;
use crate::auth::Caller;
use crate::record::{Record, RequestInfo};
use crate::{ApiError, AppState};

/// Progress of the re-wrapping pass, kept in memory for `GET /api/v1/sys/rotate`.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub(crate) struct RewrapProgress {
    /// Whether a pass is running now.
    running: bool,
    /// The generation the pass wraps into.
    target: u32,
    /// Blobs looked at so far in the current walk (a rotation may walk several times).
    scanned: u64,
    /// Blobs re-wrapped so far, over every walk of the rotation.
    rewrapped: u64,
    /// Blobs stored, counted when the pass started.
    total: u64,
    /// Why the last pass stopped short, if it did.
    error: Option<String>,
}

/// Key-management state kept in memory: the pass's progress, the keyrings retired by a
/// rotation (held weakly, to know when no request uses them any more), and a rekey waiting
/// for its new shares.
#[derive(Default)]
pub(crate) struct Rewrap {
    progress: Mutex<RewrapProgress>,
    retired: Mutex<Vec<Weak<Keyring>>>,
    pending: Mutex<Option<PendingRekey>>,
}

impl std::fmt::Debug for Rewrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewrap").finish_non_exhaustive()
    }
}

/// A rekey whose new shares have not come back yet.
struct PendingRekey {
    nonce: String,
    /// The root key wrapped under the new unseal key.
    wrapped: WrappedRootKey,
    /// The wrapping it replaces (the compare-and-swap's old value).
    replaces: WrappedRootKey,
    seal: SealConfig,
    /// The new shares' digests (see `Share::digest`).
    share_digests: Vec<String>,
    expires: std::time::Instant,
}

/// How long a started rekey waits for its new shares.
const REKEY_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

impl Rewrap {
    fn update(&self, change: impl FnOnce(&mut RewrapProgress)) {
        change(&mut self.progress.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn snapshot(&self) -> RewrapProgress {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drops a rekey waiting for its new shares (the server is sealing).
    pub(crate) fn forget_pending(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn retire(&self, keyring: &Arc<Keyring>) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|k| k.strong_count() > 0);
        retired.push(Arc::downgrade(keyring));
    }

    /// Whether a request may still hold a keyring from before the last swap.
    fn retired_in_use(&self) -> bool {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|k| k.strong_count() > 0);
        !retired.is_empty()
    }
}

impl AppState {
    /// Follows what another node may have stored: new keys take the newest generation,
    /// whichever node started it, and the seal (shares and threshold) follows a rekey.
    fn follow(&self, stored: &chaperone_store::KeyringRecord) {
        self.advance_generation(stored.kek_generation);
        self.update_unsealed(|record, _| {
            if record.wrapped_root_key != stored.wrapped_root_key {
                record.wrapped_root_key = stored.wrapped_root_key.clone();
                record.seal = stored.seal;
            }
        });
    }

    /// Moves the in-memory keyring to `generation` unless it is there already (or beyond).
    fn advance_generation(&self, generation: u32) {
        self.update_unsealed(|record, keyring| {
            if keyring.generation() < generation {
                self.rewrap.retire(keyring);
                *keyring = Arc::new(keyring.at_generation(generation));
            }
            record.kek_generation = record.kek_generation.max(generation);
        });
    }
}

/// A rekey: a quorum of the current shares and the new split.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RekeyRequest {
    /// At least the threshold of current unseal shares.
    #[schema(value_type = Vec<String>)]
    current_shares: Vec<Zeroizing<String>>,
    /// Shares to make (2 to 255).
    shares: u8,
    /// Shares needed to unseal (2 to `shares`).
    threshold: u8,
}

/// The new shares, shown once; nothing changes until they come back.
#[derive(Serialize, ToSchema)]
pub(crate) struct RekeyResponse {
    /// Identifies this rekey in `/sys/rekey/verify`.
    nonce: String,
    /// The new unseal shares (zeroed once the answer is written).
    #[schema(value_type = Vec<String>)]
    shares: Vec<Zeroizing<String>>,
    threshold: u8,
}

/// The second step: a quorum of the new shares.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RekeyVerifyRequest {
    nonce: String,
    /// At least the new threshold of the new shares.
    #[schema(value_type = Vec<String>)]
    shares: Vec<Zeroizing<String>>,
}

/// The outcome of the second step.
#[derive(Serialize, ToSchema)]
pub(crate) struct RekeyVerifyResponse {
    /// Always true: the new shares are in force and the old ones open nothing.
    rekeyed: bool,
}

fn parse_shares(texts: &[Zeroizing<String>], needed: u8) -> Result<Vec<Share>, ApiError> {
    let shares = texts
        .iter()
        .map(|text| Share::from_text(text.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request("invalid_share", e.to_string()))?;
    if shares.len() < usize::from(needed) {
        return Err(ApiError::bad_request(
            "invalid_share",
            format!("{} shares given; {needed} are needed", shares.len()),
        ));
    }
    Ok(shares)
}

/// The unseal key a quorum of shares combines into. Shares that cannot be combined (one
/// given twice, too few, of different splits) are a mistake to name, 400 `invalid_share`,
/// not a wrong key: only shares that combine into a key that opens nothing are recorded as
/// a failed rekey.
fn combine_shares(shares: &[Share]) -> Result<UnsealKey, ApiError> {
    shamir::combine(shares)
        .map(UnsealKey::from_bytes)
        .map_err(|e| ApiError::bad_request("invalid_share", e.to_string()))
}

/// Records a refused rekey step and answers `wrong_shares`.
async fn refused<T>(
    state: &AppState,
    info: &RequestInfo,
    caller: &Caller,
    message: &str,
) -> Result<T, ApiError> {
    let mut record = Record::new("sys.rekey", "", Outcome::Failure);
    record.reasons.push("wrong_shares".into());
    state.record(info, caller.actor(), record).await?;
    Err(ApiError::bad_request("wrong_shares", message.to_owned()))
}

/// Starts a rekey: checks a quorum of the current shares and answers the new split. Nothing
/// stored changes until `/api/v1/sys/rekey/verify` gets the new shares back.
#[utoipa::path(post, path = "/api/v1/sys/rekey", request_body = RekeyRequest,
    responses((status = 200, body = RekeyResponse),
        (status = 400, description = "shares missing or wrong", body = crate::api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn rekey(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<RekeyRequest>,
) -> Result<Json<RekeyResponse>, ApiError> {
    state.unsealed_record().ok_or_else(ApiError::sealed)?;
    // The stored wrapping, not this node's copy from its unseal: another node may have
    // rekeyed since, and the shares given are checked against the current one.
    let record = state
        .store
        .keyring()
        .await?
        .ok_or_else(|| StoreError::Corrupt("the keyring is missing".into()))?;
    let SealConfig::Shamir { threshold, .. } = record.seal else {
        return Err(ApiError::bad_request(
            "key_file",
            "this server unseals from a key file (`chaperone up`); rekeying is for servers \
             initialised with `chaperone init`",
        ));
    };
    if body.threshold < 2 || body.shares < body.threshold {
        return Err(ApiError::bad_request(
            "invalid_split",
            "the threshold must be at least 2 and at most the number of shares",
        ));
    }
    let given = parse_shares(&body.current_shares, threshold)?;
    let key = combine_shares(&given)?;
    let root = match record.wrapped_root_key.open(&key) {
        Ok(root) => root,
        Err(_) => {
            return refused(
                &state,
                &info,
                &caller,
                "the shares do not open this server's root key",
            )
            .await;
        }
    };
    let new_key = UnsealKey::generate();
    let new_shares = shamir::split(new_key.expose(), body.shares, body.threshold)
        .map_err(|e| ApiError::bad_request("invalid_split", e.to_string()))?;
    let mut nonce = [0u8; 16];
    chaperone_crypto::random_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let mut pending = state
        .rewrap
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // One rekey waits at a time, and a second never silently replaces it: the holders of
    // the first one's new shares would hold shares that never come into force.
    if let Some(waiting) = pending
        .as_ref()
        .filter(|p| p.expires > std::time::Instant::now())
    {
        let left = waiting.expires - std::time::Instant::now();
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "rekey_pending",
            format!(
                "another rekey is waiting for its new shares (for {} more seconds): verify \
                 it, or start again once it has expired",
                left.as_secs() + 1
            ),
        ));
    }
    *pending = Some(PendingRekey {
        nonce: nonce.clone(),
        wrapped: root.wrap(&new_key),
        replaces: record.wrapped_root_key,
        seal: SealConfig::Shamir {
            shares: body.shares,
            threshold: body.threshold,
        },
        share_digests: crate::seal::share_digests(&new_shares),
        expires: std::time::Instant::now() + REKEY_WINDOW,
    });
    tracing::warn!(token = %caller.token_id, "rekey started: new shares issued, waiting for them to come back");
    Ok(Json(RekeyResponse {
        nonce,
        shares: new_shares.iter().map(|s| s.to_text()).collect(),
        threshold: body.threshold,
    }))
}

/// Completes a rekey: a quorum of the new shares must open the new wrapping; then it is
/// stored (with its ledger entry) and the old shares open nothing.
#[utoipa::path(post, path = "/api/v1/sys/rekey/verify", request_body = RekeyVerifyRequest,
    responses((status = 200, body = RekeyVerifyResponse),
        (status = 400, description = "shares missing or wrong, or no rekey started", body = crate::api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn rekey_verify(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<RekeyVerifyRequest>,
) -> Result<Json<RekeyVerifyResponse>, ApiError> {
    state.unsealed_record().ok_or_else(ApiError::sealed)?;
    let pending = {
        let mut slot = state
            .rewrap
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match slot.take() {
            Some(p) if p.expires > std::time::Instant::now() && p.nonce == body.nonce => p,
            other => {
                // Another nonce leaves the rekey in progress alone; an expired one is dropped.
                if let Some(p) = other
                    && p.expires > std::time::Instant::now()
                {
                    *slot = Some(p);
                }
                return Err(ApiError::bad_request(
                    "no_rekey",
                    "no rekey with this nonce is waiting on this server (they last ten \
                     minutes); nothing was changed",
                ));
            }
        }
    };
    let SealConfig::Shamir { threshold, .. } = pending.seal else {
        return Err(ApiError::bad_request("no_rekey", "no rekey is waiting"));
    };
    // Every share given must be one of the new split (a share beyond the quorum is not used
    // to combine, but a wrong one there is a mistake all the same).
    let checked = parse_shares(&body.shares, threshold).and_then(|shares| {
        let foreign = shares
            .iter()
            .find(|s| !pending.share_digests.contains(&hex::encode(s.digest())));
        match foreign {
            Some(share) => Err(ApiError::bad_request(
                "invalid_share",
                format!(
                    "share {} is not one of this rekey's new shares",
                    share.index()
                ),
            )),
            None => combine_shares(&shares),
        }
    });
    let opened = checked
        .as_ref()
        .map(|key| pending.wrapped.open(key).is_ok());
    if !matches!(opened, Ok(true)) {
        // The rekey stays open for the right shares.
        *state
            .rewrap
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(pending);
        // A mistake in the shares given is named, not recorded as a failed rekey.
        checked?;
        return refused(
            &state,
            &info,
            &caller,
            "the shares do not open the new wrapping; the rekey is still waiting for them",
        )
        .await;
    }
    let (shares, threshold) = match pending.seal {
        SealConfig::Shamir { shares, threshold } => (shares, threshold),
        SealConfig::KeyFile => (1, 1),
    };
    let mut entry = Record::new("sys.rekey", "", Outcome::Success);
    entry.details.insert("shares".into(), shares.into());
    entry.details.insert("threshold".into(), threshold.into());
    let event = state.event(&info, caller.actor(), entry);
    state
        .store
        .rekey(
            &pending.replaces,
            &pending.wrapped,
            pending.seal,
            &pending.share_digests,
            &[event],
        )
        .await?;
    state.update_unsealed(|record, _| {
        record.wrapped_root_key = pending.wrapped.clone();
        record.seal = pending.seal;
        record.share_digests.clone_from(&pending.share_digests);
    });
    tracing::warn!(token = %caller.token_id, "rekeyed: the new unseal shares are in force");
    Ok(Json(RekeyVerifyResponse { rekeyed: true }))
}

/// The key generation and the re-wrapping pass.
#[derive(Serialize, ToSchema)]
pub(crate) struct RotationStatus {
    /// The KEK generation new keys are wrapped under.
    generation: u32,
    /// Every stored key is wrapped under this generation or a later one.
    rewrapped_generation: u32,
    /// The pass of this process.
    progress: RewrapProgress,
}

/// Starts a new key-encryption-key generation; stored keys are re-wrapped in the background.
#[utoipa::path(post, path = "/api/v1/sys/rotate",
    responses((status = 200, body = RotationStatus)), security(("bearer" = [])))]
pub(crate) async fn rotate(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
) -> Result<Json<RotationStatus>, ApiError> {
    let (record, keyring) = state.unsealed_record().ok_or_else(ApiError::sealed)?;
    let mut entry = Record::new("sys.rotate", "", Outcome::Success);
    entry
        .details
        .insert("generation".into(), (record.kek_generation + 1).into());
    let event = state.event(&info, caller.actor(), entry);
    let generation = state
        .store
        .start_kek_generation(record.kek_generation, &[event])
        .await?;
    drop(keyring);
    state.advance_generation(generation);
    tracing::warn!(token = %caller.token_id, generation, "key-encryption key rotated");
    rotation_status(State(state)).await
}

/// The key generation and the progress of re-wrapping.
#[utoipa::path(get, path = "/api/v1/sys/rotate",
    responses((status = 200, body = RotationStatus)), security(("bearer" = [])))]
pub(crate) async fn rotation_status(
    State(state): State<Arc<AppState>>,
) -> Result<Json<RotationStatus>, ApiError> {
    let record = state
        .store
        .keyring()
        .await?
        .ok_or_else(|| ApiError::from(crate::SealError::NotInitialized))?;
    Ok(Json(RotationStatus {
        generation: record.kek_generation,
        rewrapped_generation: record.rewrapped_generation,
        progress: state.rewrap.snapshot(),
    }))
}

/// The background task: while unsealed, follows the stored generation (another node may
/// have started one) and, whenever it is ahead of the re-wrapped one, runs passes until a
/// pass finds nothing left. Failures back off (1 s doubling to 5 minutes).
pub(crate) async fn background(state: Arc<AppState>) {
    let mut backoff = std::time::Duration::from_secs(1);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if state.unsealed_record().is_none() {
            continue;
        }
        let Ok(Some(stored)) = state.store.keyring().await else {
            continue;
        };
        state.follow(&stored);
        if stored.rewrapped_generation >= stored.kek_generation {
            continue;
        }
        match complete(&state).await {
            Ok(()) => backoff = std::time::Duration::from_secs(1),
            Err(PassError::Stopped) => state.rewrap.update(|p| p.running = false),
            Err(error) => {
                tracing::error!(%error, retry_in_secs = backoff.as_secs(), "re-wrapping stopped");
                state.rewrap.update(|p| {
                    p.running = false;
                    p.error = Some(error.to_string());
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(300));
            }
        }
    }
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a sealed {kind:?} blob does not open; it was left as it is")]
    Unreadable { kind: SealedKind },
    #[error("blobs of older generations keep appearing; the generation stays incomplete")]
    NotConverging,
    /// Sealed, or a newer generation started: the keyring this pass holds must go now (a
    /// seal drops the keys from memory at once), and the next round takes over.
    #[error("sealed or superseded")]
    Stopped,
}

/// Whether the keyring of generation `target` is still the one in use, after following a
/// newer generation another node started: while this task runs a pass or waits, the
/// background loop's poll does not, and new keys must not stay on the older generation
/// for the length of a pass or of the cluster grace.
async fn still_current(state: &AppState, target: u32) -> Result<bool, PassError> {
    if let Some(stored) = state.store.keyring().await? {
        state.follow(&stored);
    }
    Ok(state
        .unsealed_record()
        .is_some_and(|(_, k)| k.generation() == target))
}

/// Sleeps `duration`, waking each half second to stop early once [`still_current`] fails.
async fn wait_current(
    state: &AppState,
    target: u32,
    duration: std::time::Duration,
) -> Result<(), PassError> {
    let until = std::time::Instant::now() + duration;
    loop {
        if !still_current(state, target).await? {
            return Err(PassError::Stopped);
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        tokio::time::sleep(left.min(std::time::Duration::from_millis(500))).await;
    }
}

/// Re-wraps everything under the current generation and records it complete once a pass,
/// made after no request holds an older keyring, finds nothing left to re-wrap.
async fn complete(state: &AppState) -> Result<(), PassError> {
    let Some((_, keyring)) = state.unsealed_record() else {
        return Ok(());
    };
    let target = keyring.generation();
    let mut total = 0;
    for kind in SealedKind::ALL {
        total += state.store.count_sealed(kind).await?;
    }
    state.rewrap.update(|p| {
        *p = RewrapProgress {
            running: true,
            target,
            total,
            ..RewrapProgress::default()
        };
    });
    let started = std::time::Instant::now();
    for _ in 0..10 {
        // Requests that took the older keyring before the swap may still write under it:
        // a pass counts only if none was held when it started, so that no such write can
        // land behind it.
        let mut waited = 0;
        while state.rewrap.retired_in_use() && waited < 600 {
            wait_current(state, target, std::time::Duration::from_millis(500)).await?;
            waited += 1;
        }
        let clean = !state.rewrap.retired_in_use();
        let rewrapped = pass(state, &keyring, target).await?;
        if rewrapped == 0 && clean {
            let grace = cluster_grace(state);
            if started.elapsed() >= grace {
                finish(state, target).await?;
                // On PostgreSQL a write that checked the generation before it was recorded
                // complete may have landed behind the last pass; none can land after it (the
                // store refuses them, `sealed_under_current`). One more walk takes those.
                if cluster_grace(state) > std::time::Duration::ZERO {
                    let late = pass(state, &keyring, target).await?;
                    if late > 0 {
                        tracing::warn!(
                            generation = target,
                            late,
                            "re-wrapped keys written under the older generation as it ended"
                        );
                    }
                    state.rewrap.update(|p| p.running = false);
                }
                return Ok(());
            }
            // Other nodes may still write under the older KEK: wait them out, then one more
            // pass must find nothing too.
            wait_current(state, target, grace.saturating_sub(started.elapsed())).await?;
        }
        if !still_current(state, target).await? {
            return Err(PassError::Stopped);
        }
    }
    Err(PassError::NotConverging)
}

/// How long after starting a generation a pass must wait before it may record it complete.
/// Other nodes seal under the older KEK until their next poll (each second) sees the new
/// generation, and their requests that took it before may write for as long as a request
/// lasts (`request_timeout`, 60 s by default). With SQLite one process serves the database,
/// and its own requests are tracked (`retired_in_use`), so there is nothing to wait for. A
/// node that writes later still (paused through the rotation) is refused by the store once
/// the generation is complete (`chaperone_store`'s `sealed_under_current`).
fn cluster_grace(state: &AppState) -> std::time::Duration {
    match state.store.backend() {
        chaperone_store::Backend::Sqlite => std::time::Duration::ZERO,
        chaperone_store::Backend::Postgres => CLUSTER_GRACE,
    }
}

/// See [`cluster_grace`]: the poll interval and the default request time limit, doubled.
const CLUSTER_GRACE: std::time::Duration = std::time::Duration::from_secs(2 * (1 + 60));

async fn finish(state: &AppState, target: u32) -> Result<(), PassError> {
    let progress = state.rewrap.snapshot();
    let info = RequestInfo::new(None, Some("chaperone-rotation".into()));
    let mut entry = Record::new("sys.rotate.complete", "", Outcome::Success);
    entry.details.insert("generation".into(), target.into());
    entry
        .details
        .insert("rewrapped".into(), progress.rewrapped.into());
    let event = state.event(&info, Actor::default(), entry);
    if state.store.finish_kek_generation(target, &[event]).await? {
        tracing::info!(
            generation = target,
            rewrapped = progress.rewrapped,
            "every stored key is wrapped under the current generation"
        );
        state.update_unsealed(|record, _| {
            record.rewrapped_generation = record.rewrapped_generation.max(target);
        });
    }
    state.rewrap.update(|p| {
        p.running = false;
        p.error = None;
    });
    Ok(())
}

/// One walk over every sealed blob; how many it re-wrapped.
async fn pass(state: &AppState, keyring: &Keyring, target: u32) -> Result<u64, PassError> {
    let mut unreadable = None;
    let mut total_rewrapped = 0;
    // A new walk: what it looked at is counted from nothing, against the total.
    state.rewrap.update(|p| p.scanned = 0);
    for kind in SealedKind::ALL {
        let mut after: Option<SealedKey> = None;
        loop {
            if !still_current(state, target).await? {
                return Err(PassError::Stopped);
            }
            let page = state.store.sealed_page(kind, after.as_ref(), 256).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            let mut changes = Vec::new();
            for item in &page {
                match rewrap(kind, keyring, item) {
                    Ok(Some(new)) => changes.push((item.key.clone(), item.blob.clone(), new)),
                    Ok(None) => {}
                    Err(()) => unreadable = Some(PassError::Unreadable { kind }),
                }
            }
            // One transaction per page: a few hundred keys per commit.
            let rewrapped = if changes.is_empty() {
                0
            } else {
                state.store.replace_sealed(kind, &changes).await?
            };
            total_rewrapped += rewrapped;
            let scanned = page.len() as u64;
            state.rewrap.update(|p| {
                p.scanned += scanned;
                p.rewrapped += rewrapped;
            });
            // Leave room for the requests the server is there to answer.
            tokio::task::yield_now().await;
        }
    }
    match unreadable {
        Some(error) => Err(error),
        None => Ok(total_rewrapped),
    }
}

/// The blob wrapped under the current generation, `None` when it is already, `Err` when it
/// does not open.
fn rewrap(kind: SealedKind, keyring: &Keyring, item: &SealedItem) -> Result<Option<Vec<u8>>, ()> {
    let result = match (&item.key, kind) {
        (SealedKey::Version { secret_id, version }, SealedKind::DataKeys) => {
            let binding = Binding {
                secret_id: *secret_id,
                version: u64::try_from(*version).map_err(|_| ())?,
            };
            keyring.rewrap_data_key(binding, &item.blob)
        }
        (SealedKey::Owner(owner), kind) => {
            let purpose = match kind {
                SealedKind::TotpSecrets => crate::api::auth::TOTP_PURPOSE,
                SealedKind::LedgerSeed => crate::api::ledger::KEY_PURPOSE,
                SealedKind::Documents => crate::api::governance::DOCUMENT_PURPOSE,
                SealedKind::WrappedResponses => crate::vault::wrapping::PURPOSE,
                SealedKind::DataKeys => return Err(()),
            };
            keyring.reseal_field(purpose, owner, &item.blob)
        }
        _ => return Err(()),
    };
    result.map_err(|_| ())
}
