//! Initialisation: storing a new keyring and the first admin token.
//!
//! The caller generates the unseal key and the token and keeps them safe (key file, shares,
//! terminal) before calling [`initialize`], so a crash in between never leaves a database
//! whose key was lost.

use chaperone_core::Timestamp;
use chaperone_crypto::shamir::Share;
use chaperone_crypto::token::ApiToken;
use chaperone_crypto::{RootKey, UnsealKey};
use chaperone_store::{KeyringRecord, SealConfig, Store, StoreError, TokenKind, TokenRecord};

/// Stores a fresh root key wrapped under `unseal`, and `admin` as an admin token that does
/// not expire. Fails with [`StoreError::AlreadyInitialized`] on an initialised database.
/// For a Shamir seal, `shares` are the unseal key's shares: their digests are stored, never
/// the shares (see `Share::digest`); empty for a key file.
///
/// The ledger's signing key is made here too, sealed under the new keyring, so that it
/// exists before the first entry: a ledger that has entries but no key is refused as
/// tampered with.
pub async fn initialize(
    store: &Store,
    unseal: &UnsealKey,
    seal: SealConfig,
    shares: &[Share],
    admin: &ApiToken,
    now: Timestamp,
) -> Result<(), StoreError> {
    let root = RootKey::generate();
    let keyring = KeyringRecord {
        kek_generation: 0,
        rewrapped_generation: 0,
        wrapped_root_key: root.wrap(unseal),
        seal,
        created_at: now,
        share_digests: crate::seal::share_digests(shares),
    };
    let record = TokenRecord {
        id: crate::api::auth::new_id("tok"),
        hash: admin.hash(),
        name: "initial admin".to_owned(),
        role: "admin".to_owned(),
        created_at: now,
        expires_at: None,
        revoked_at: None,
        person_id: None,
        kind: TokenKind::Api,
        scope: None,
        mfa_verified_at: None,
        parent_id: None,
        last_used_at: None,
        meta: Default::default(),
    };
    let (origin, sealed_seed) = crate::api::new_ledger_key(&root.keyring());
    store
        .initialize(&keyring, &record, (&origin, &sealed_seed), &[])
        .await?;
    Ok(())
}
