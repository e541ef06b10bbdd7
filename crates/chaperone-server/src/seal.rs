//! Sealed and unsealed: the server holds the keyring in memory only while unsealed.
//!
//! Unsealing collects shares until the threshold is met, combines them into the unseal key
//! and opens the stored root key with it. A wrong combination is caught by the root key's
//! authentication tag (the check value) and discards the collected shares; the keyring is
//! only ever built from a root key that authenticated.

use std::sync::{Arc, RwLock};

use chaperone_crypto::shamir::{self, Share};
use chaperone_crypto::{CryptoError, Keyring, UnsealKey};
use chaperone_store::{KeyringRecord, SealConfig, StoreError};
use serde::Serialize;

use crate::AppState;

/// The in-memory seal state.
#[derive(Debug, Default)]
pub(crate) struct SealState(RwLock<Inner>);

#[derive(Debug, Default)]
enum Inner {
    /// No keyring loaded yet (not initialised, or not yet read from the store).
    #[default]
    Unknown,
    Sealed {
        record: KeyringRecord,
        shares: Vec<Share>,
        /// Names the current unseal attempt (a random UUID made at its first share), as
        /// OpenBao's `nonce` does; shown only while shares are held.
        nonce: String,
    },
    Unsealed {
        record: KeyringRecord,
        keyring: Arc<Keyring>,
    },
}

/// What `seal-status` reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SealStatus {
    /// Whether the server has a keyring.
    pub initialized: bool,
    /// Whether the keyring is locked.
    pub sealed: bool,
    /// `shamir` or `key-file`; absent before initialisation.
    pub seal_kind: Option<&'static str>,
    /// Shares made at initialisation.
    pub shares: u8,
    /// Shares needed to unseal.
    pub threshold: u8,
    /// Shares given so far in the current unseal attempt.
    pub progress: u8,
    /// The current unseal attempt's id while shares are held, else empty: a nonce that
    /// changes tells operators someone else reset or restarted the attempt. Random, so
    /// it says nothing of the shares.
    pub nonce: String,
}

/// Why sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The store has no keyring: run `chaperone init` (or `chaperone up`).
    #[error("the server is not initialised; run `chaperone init` (or `chaperone up`)")]
    NotInitialized,
    /// A share, the shares together, or the unseal key were wrong.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A well-formed share that is not one of this server's: one a rekey retired (which may
    /// have leaked), or another server's. Answered as any invalid share; recorded.
    #[error("{0}")]
    ForeignShare(String),
    /// The store failed while loading the keyring.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The digests stored for `shares` (see `Share::digest`), by index.
pub(crate) fn share_digests(shares: &[Share]) -> Vec<String> {
    let mut sorted: Vec<&Share> = shares.iter().collect();
    sorted.sort_by_key(|s| s.index());
    sorted.iter().map(|s| hex::encode(s.digest())).collect()
}

impl AppState {
    /// The keyring, if unsealed.
    pub(crate) fn keyring(&self) -> Option<Arc<Keyring>> {
        match &*self.seal.0.read().expect("seal lock poisoned") {
            Inner::Unsealed { keyring, .. } => Some(keyring.clone()),
            _ => None,
        }
    }

    /// The current seal status, loading the keyring record if it was not loaded yet.
    pub async fn seal_status(&self) -> Result<SealStatus, SealError> {
        self.load().await?;
        Ok(self.status())
    }

    /// [`AppState::seal_status`] for the seal-status routes, which holders read before they
    /// give their shares: sealed, the split may have changed under this node (a rekey
    /// through another node), so it is read again, and shares given for the old one are
    /// dropped. Unsealed, this reads nothing more. (Other routes answer a sealed node
    /// without reading the database each time.)
    pub async fn seal_status_current(&self) -> Result<SealStatus, SealError> {
        self.load().await?;
        self.refresh_record().await?;
        Ok(self.status())
    }

    /// Adds one share; unseals when the threshold is met. A wrong combination discards the
    /// collected shares and fails with [`CryptoError::WrongUnsealKey`].
    pub async fn submit_share(&self, text: &str) -> Result<SealStatus, SealError> {
        self.refresh_record().await?;
        let status = self.add_share(text).await?;
        self.ready_ledger().await;
        Ok(status)
    }

    async fn add_share(&self, text: &str) -> Result<SealStatus, SealError> {
        let share = Share::from_text(text)?;
        if !self.load().await? {
            return Err(SealError::NotInitialized);
        }
        let mut inner = self.seal.0.write().expect("seal lock poisoned");
        let Inner::Sealed {
            record,
            shares,
            nonce,
        } = &mut *inner
        else {
            drop(inner);
            return Ok(self.status());
        };
        match record.seal {
            SealConfig::KeyFile => {
                return Err(CryptoError::InvalidShare(
                    "this server unseals from its key file, not from shares; restart it to unseal"
                        .into(),
                )
                .into());
            }
            // A well-formed share of another split (another server's, or one a rekey that
            // changed the threshold retired): foreign, and logged as such.
            SealConfig::Shamir { threshold, .. } if share.threshold() != threshold => {
                return Err(SealError::ForeignShare(format!(
                    "invalid share: this share belongs to a split with threshold {}, the \
                     server needs {threshold}",
                    share.threshold()
                )));
            }
            SealConfig::Shamir { .. } => {}
        }
        // A share that is not one of this server's own is refused before it joins: it leaves
        // the shares given so far as they are. (Keyrings stored before digests were kept are
        // checked only when the threshold is met.)
        if !record.share_digests.is_empty()
            && record
                .share_digests
                .get(usize::from(share.index()) - 1)
                .is_none_or(|d| *d != hex::encode(share.digest()))
        {
            return Err(SealError::ForeignShare(
                "this is not one of this server's unseal shares (an old share from before a \
                 rekey, or another server's); the shares given so far are kept"
                    .into(),
            ));
        }
        if let Some(first) = shares.first()
            && !first.same_set(&share)
        {
            shares.clear();
            return Err(CryptoError::Combine(
                "the share comes from a different key split than the ones before it; \
                 progress was reset"
                    .into(),
            )
            .into());
        }
        if let Some(given) = shares.iter().find(|s| s.index() == share.index()) {
            // The same share again (a client retrying after a lost answer) changes nothing
            // and is no error, as in OpenBao; another share with that number is.
            if given.digest() == share.digest() {
                drop(inner);
                return Ok(self.status());
            }
            return Err(
                CryptoError::Combine(format!("share {} was already given", share.index())).into(),
            );
        }
        if shares.is_empty() {
            *nonce = crate::record::new_request_id();
        }
        shares.push(share);
        if shares.len() < usize::from(shares[0].threshold()) {
            drop(inner);
            return Ok(self.status());
        }
        let combined = shamir::combine(shares);
        shares.clear();
        let key = UnsealKey::from_bytes(combined?);
        let root = record.wrapped_root_key.open(&key)?;
        *inner = Inner::Unsealed {
            record: record.clone(),
            keyring: Arc::new(root.keyring_at(record.kek_generation)),
        };
        drop(inner);
        tracing::info!("unsealed with shares");
        Ok(self.status())
    }

    /// Unseals with a whole unseal key (the key file of `chaperone up`).
    pub async fn unseal_with_key(&self, key: &UnsealKey) -> Result<SealStatus, SealError> {
        let status = self.open_with_key(key).await?;
        self.ready_ledger().await;
        Ok(status)
    }

    async fn open_with_key(&self, key: &UnsealKey) -> Result<SealStatus, SealError> {
        if !self.load().await? {
            return Err(SealError::NotInitialized);
        }
        self.refresh_record().await?;
        let mut inner = self.seal.0.write().expect("seal lock poisoned");
        if let Inner::Sealed { record, .. } = &*inner {
            let root = record.wrapped_root_key.open(key)?;
            *inner = Inner::Unsealed {
                record: record.clone(),
                keyring: Arc::new(root.keyring_at(record.kek_generation)),
            };
            tracing::info!("unsealed with the key file");
        }
        drop(inner);
        Ok(self.status())
    }

    /// Makes the ledger's signing key, if it is not made yet, as soon as the keyring is
    /// available: before the first request can record an entry (a ledger with entries but no
    /// key is refused). A failure leaves the server unsealed; checkpoints report it.
    async fn ready_ledger(&self) {
        if self.keyring().is_none() {
            return;
        }
        match self.ledger_signer().await {
            // The public half is kept beside the sealed seed, for backups and restores.
            Ok(signer) => {
                let verifier = signer.verifier().to_string();
                if let Err(e) = self.store.set_ledger_verifier(&verifier).await {
                    tracing::warn!(error = %e, "the ledger verifier key was not recorded");
                }
            }
            Err(e) => tracing::warn!(error = %e.message, "the ledger signing key is not available"),
        }
    }

    /// Seals: drops the keyring (its keys zeroize) and any unseal progress.
    pub fn seal(&self) {
        self.rewrap.forget_pending();
        let mut inner = self.seal.0.write().expect("seal lock poisoned");
        if let Inner::Unsealed { record, .. } | Inner::Sealed { record, .. } = &*inner {
            *inner = Inner::Sealed {
                record: record.clone(),
                shares: Vec::new(),
                nonce: String::new(),
            };
            tracing::info!("sealed");
        }
    }

    /// Discards shares given so far.
    pub fn reset_unseal(&self) {
        if let Inner::Sealed { shares, .. } = &mut *self.seal.0.write().expect("seal lock poisoned")
        {
            shares.clear();
        }
    }

    /// While sealed, reads the keyring record again: another node may have rekeyed or
    /// started a new key generation since it was loaded.
    async fn refresh_record(&self) -> Result<(), SealError> {
        if !matches!(
            *self.seal.0.read().expect("seal lock poisoned"),
            Inner::Sealed { .. }
        ) {
            return Ok(());
        }
        let Some(fresh) = self.store.keyring().await? else {
            return Ok(());
        };
        if let Inner::Sealed { record, shares, .. } =
            &mut *self.seal.0.write().expect("seal lock poisoned")
            && *record != fresh
        {
            // Shares given for the old wrapping cannot open the new one.
            if record.wrapped_root_key != fresh.wrapped_root_key {
                shares.clear();
            }
            *record = fresh;
        }
        Ok(())
    }

    /// The keyring record and keyring of an unsealed server.
    pub(crate) fn unsealed_record(&self) -> Option<(KeyringRecord, Arc<Keyring>)> {
        match &*self.seal.0.read().expect("seal lock poisoned") {
            Inner::Unsealed { record, keyring } => Some((record.clone(), keyring.clone())),
            _ => None,
        }
    }

    /// Changes the keyring record (and keyring) of an unsealed server in place, under the
    /// lock, so that concurrent changes (a rekey, a new generation) each keep the other's.
    /// Nothing happens if the server was sealed meanwhile.
    pub(crate) fn update_unsealed(
        &self,
        change: impl FnOnce(&mut KeyringRecord, &mut Arc<Keyring>),
    ) {
        if let Inner::Unsealed { record, keyring } =
            &mut *self.seal.0.write().expect("seal lock poisoned")
        {
            change(record, keyring);
        }
    }

    /// Loads the keyring record if it is not loaded yet. `false` if the store has none.
    async fn load(&self) -> Result<bool, SealError> {
        if !matches!(
            *self.seal.0.read().expect("seal lock poisoned"),
            Inner::Unknown
        ) {
            return Ok(true);
        }
        let Some(record) = self.store.keyring().await? else {
            return Ok(false);
        };
        let mut inner = self.seal.0.write().expect("seal lock poisoned");
        if matches!(*inner, Inner::Unknown) {
            *inner = Inner::Sealed {
                record,
                shares: Vec::new(),
                nonce: String::new(),
            };
        }
        Ok(true)
    }

    fn status(&self) -> SealStatus {
        let inner = self.seal.0.read().expect("seal lock poisoned");
        let (record, sealed, progress, nonce) = match &*inner {
            Inner::Unknown => {
                return SealStatus {
                    initialized: false,
                    sealed: true,
                    seal_kind: None,
                    shares: 0,
                    threshold: 0,
                    progress: 0,
                    nonce: String::new(),
                };
            }
            Inner::Sealed {
                record,
                shares,
                nonce,
            } => (record, true, shares.len(), nonce.as_str()),
            Inner::Unsealed { record, .. } => (record, false, 0, ""),
        };
        let (kind, shares, threshold) = match record.seal {
            SealConfig::KeyFile => ("key-file", 1, 1),
            SealConfig::Shamir { shares, threshold } => ("shamir", shares, threshold),
        };
        SealStatus {
            initialized: true,
            sealed,
            seal_kind: Some(kind),
            shares,
            threshold,
            progress: u8::try_from(progress).unwrap_or(u8::MAX),
            nonce: if progress == 0 {
                String::new()
            } else {
                nonce.to_owned()
            },
        }
    }
}
