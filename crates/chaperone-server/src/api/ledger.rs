//! `/api/v1/ledger/...`: the verifier key, signed checkpoints, proofs and entries.
//!
//! The signing key is an Ed25519 seed made on first use, stored encrypted under the keyring
//! (bound to the purpose `ledger-signing-key` and the log's origin), so it exists in clear only
//! in memory of an unsealed server.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chaperone_core::policy::Role;
use chaperone_crypto::random_bytes;
use chaperone_ledger::checkpoint::Checkpoint;
use chaperone_ledger::merkle::{self, Hash};
use chaperone_ledger::note::Signer;
use chaperone_store::StoreError;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The keyring purpose of the ledger's signing seed.
const KEY_PURPOSE: &str = "ledger-signing-key";
/// Most entries one request returns.
const MAX_ENTRIES: u64 = 1000;

impl AppState {
    /// The ledger's signer, made (and stored sealed) on first use.
    pub(crate) async fn ledger_signer(&self) -> Result<Signer, ApiError> {
        let keyring = self.keyring().ok_or_else(ApiError::sealed)?;
        let (origin, sealed) = match self.store.ledger_key().await? {
            Some(key) => key,
            None => {
                let mut id = [0u8; 4];
                random_bytes(&mut id);
                let origin = format!(
                    "chaperone-{}/ledger",
                    id.iter().map(|b| format!("{b:02x}")).collect::<String>()
                );
                let mut seed = Zeroizing::new([0u8; 32]);
                random_bytes(seed.as_mut());
                let sealed = keyring.seal_field(KEY_PURPOSE, &origin, seed.as_ref());
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

    /// The tree head of the current ledger.
    async fn ledger_head(&self) -> Result<(u64, Hash), ApiError> {
        let size = self.store.ledger_size().await?;
        let needed = merkle::nodes_needed(|r| merkle::root(size, r));
        let nodes = self.store.ledger_nodes(&needed).await?;
        let root = merkle::root(size, &nodes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((size, root))
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

/// A fresh signed checkpoint (C2SP tlog-checkpoint as a signed note).
#[utoipa::path(get, path = "/api/v1/ledger/checkpoint", responses((status = 200, description = "signed note", content_type = "text/plain")), security(("bearer" = [])))]
pub(crate) async fn checkpoint(
    _caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, ApiError> {
    let signer = state.ledger_signer().await?;
    let (size, root) = state.ledger_head().await?;
    let body = Checkpoint {
        origin: signer.verifier().name().to_owned(),
        size,
        root,
        extensions: Vec::new(),
    };
    let note = signer
        .sign(&body.to_text())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    state
        .store
        .record_checkpoint(size, &note, state.clock.now())
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note))
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
    Query(q): Query<InclusionQuery>,
) -> Result<Json<ProofResponse>, ApiError> {
    check_size(&state, q.size).await?;
    let needed = merkle::nodes_needed(|r| merkle::inclusion_proof(q.index, q.size, r));
    let nodes = state.store.ledger_nodes(&needed).await?;
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
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ProofResponse>, ApiError> {
    check_size(&state, q.new).await?;
    let needed = merkle::nodes_needed(|r| merkle::consistency_proof(q.old, q.new, r));
    let nodes = state.store.ledger_nodes(&needed).await?;
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
    Query(q): Query<EntriesQuery>,
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
            out.push(entry);
        }
    }
    Ok(Json(out))
}
