//! Key management on a running server: `POST /api/v1/sys/rekey` (new unseal shares for the
//! same root key) and `/api/v1/sys/rotate` (a new key-encryption-key generation, with the
//! re-wrapping of every stored key in the background).
//!
//! Rekey needs a quorum of the current shares: they are combined, must open the stored root
//! key, and the root key is wrapped again under a new unseal key that is split into the new
//! shares. The old shares combine into the old unseal key, which opens nothing any more. The
//! new shares are answered once and stored nowhere.
//!
//! Rotation starts generation `g + 1` in the store (with its ledger entry) and swaps the
//! keyring in memory, so every key wrapped from then on uses the new KEK. A background pass
//! then walks every sealed blob (data keys, TOTP secrets, the ledger seed, documents,
//! wrapped responses) and re-wraps those of older generations, each with a compare-and-swap
//! so that concurrent writes win. Old generations stay derivable from the root key, so a blob
//! not yet re-wrapped opens at any moment. The pass resumes after a restart (the store keeps
//! which generation is complete) and records its completion in the ledger.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::{Extension, Json};
use chaperone_crypto::shamir::{self, Share};
use chaperone_crypto::{Binding, Keyring, UnsealKey};
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
    /// Blobs looked at so far in this pass.
    scanned: u64,
    /// Blobs re-wrapped so far in this pass.
    rewrapped: u64,
    /// Blobs stored, counted when the pass started.
    total: u64,
    /// Why the last pass stopped short, if it did.
    error: Option<String>,
}

/// The shared progress record.
#[derive(Debug, Default)]
pub(crate) struct Rewrap(Mutex<RewrapProgress>);

impl Rewrap {
    fn update(&self, change: impl FnOnce(&mut RewrapProgress)) {
        change(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn snapshot(&self) -> RewrapProgress {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

/// The new shares, shown once.
#[derive(Serialize, ToSchema)]
pub(crate) struct RekeyResponse {
    /// The new unseal shares; the old ones no longer unseal.
    shares: Vec<String>,
    threshold: u8,
}

/// Issues new unseal shares for the same root key.
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
    let (record, keyring) = state.unsealed_record().ok_or_else(ApiError::sealed)?;
    let SealConfig::Shamir { threshold, .. } = record.seal else {
        return Err(ApiError::bad_request(
            "key_file",
            "this server unseals from a key file (`chaperone up`); rekeying is for servers \
             initialised with `chaperone init`",
        ));
    };
    let invalid = |message: String| ApiError::bad_request("invalid_share", message);
    if body.threshold < 2 || body.shares < body.threshold {
        return Err(ApiError::bad_request(
            "invalid_split",
            "the threshold must be at least 2 and at most the number of shares",
        ));
    }
    let given = body
        .current_shares
        .iter()
        .map(|text| Share::from_text(text.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if given.len() < usize::from(threshold) {
        return Err(invalid(format!(
            "{} current shares given; {threshold} are needed",
            given.len()
        )));
    }
    let refused = |state: Arc<AppState>, info: RequestInfo, caller: Caller| async move {
        let mut record = Record::new("sys.rekey", "", Outcome::Failure);
        record.reasons.push("wrong_shares".into());
        state.record(&info, caller.actor(), record).await?;
        Err::<Json<RekeyResponse>, ApiError>(ApiError::bad_request(
            "wrong_shares",
            "the shares do not open this server's root key",
        ))
    };
    let Ok(combined) = shamir::combine(&given) else {
        return refused(state, info, caller).await;
    };
    let old_key = UnsealKey::from_bytes(combined);
    let Ok(root) = record.wrapped_root_key.open(&old_key) else {
        return refused(state, info, caller).await;
    };
    let new_key = UnsealKey::generate();
    let new_shares = shamir::split(new_key.expose(), body.shares, body.threshold)
        .map_err(|e| ApiError::bad_request("invalid_split", e.to_string()))?;
    let wrapped = root.wrap(&new_key);
    let seal = SealConfig::Shamir {
        shares: body.shares,
        threshold: body.threshold,
    };
    let mut entry = Record::new("sys.rekey", "", Outcome::Success);
    entry.details.insert("shares".into(), body.shares.into());
    entry
        .details
        .insert("threshold".into(), body.threshold.into());
    let event = state.event(&info, caller.actor(), entry);
    state
        .store
        .rekey(&record.wrapped_root_key, &wrapped, seal, &[event])
        .await?;
    let mut updated = record;
    updated.wrapped_root_key = wrapped;
    updated.seal = seal;
    state.replace_unsealed(updated, keyring);
    tracing::warn!(token = %caller.token_id, "rekeyed: new unseal shares issued");
    Ok(Json(RekeyResponse {
        shares: new_shares
            .iter()
            .map(|s| s.to_text().as_str().to_owned())
            .collect(),
        threshold: body.threshold,
    }))
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
    let mut updated = record;
    updated.kek_generation = generation;
    state.replace_unsealed(updated, Arc::new(keyring.at_generation(generation)));
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

/// The background task: while unsealed, whenever the stored generation is ahead of the
/// re-wrapped one, runs a pass.
pub(crate) async fn background(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some((_, keyring)) = state.unsealed_record() else {
            continue;
        };
        let Ok(Some(stored)) = state.store.keyring().await else {
            continue;
        };
        if stored.rewrapped_generation >= stored.kek_generation {
            continue;
        }
        // Another node may have started the generation: wrap into it here too.
        let keyring = if keyring.generation() < stored.kek_generation {
            let newer = Arc::new(keyring.at_generation(stored.kek_generation));
            state.replace_unsealed(stored, Arc::clone(&newer));
            newer
        } else {
            keyring
        };
        if let Err(error) = pass(&state, &keyring).await {
            tracing::error!(%error, "re-wrapping stopped; it resumes in a moment");
            state.rewrap.update(|p| {
                p.running = false;
                p.error = Some(error.to_string());
            });
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
}

async fn pass(state: &AppState, keyring: &Keyring) -> Result<(), PassError> {
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
    let mut unreadable = None;
    for kind in SealedKind::ALL {
        let mut after: Option<SealedKey> = None;
        loop {
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
            let scanned = page.len() as u64;
            state.rewrap.update(|p| {
                p.scanned += scanned;
                p.rewrapped += rewrapped;
            });
            // Leave room for the requests the server is there to answer.
            tokio::task::yield_now().await;
        }
    }
    if let Some(error) = unreadable {
        return Err(error);
    }
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
        let fresh = state.store.keyring().await?;
        if let (Some(fresh), Some((_, keyring))) = (fresh, state.unsealed_record()) {
            state.replace_unsealed(fresh, keyring);
        }
    }
    state.rewrap.update(|p| p.running = false);
    Ok(())
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
