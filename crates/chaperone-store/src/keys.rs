//! Key management in the database: a new wrapping of the root key (rekey), a new
//! key-encryption-key generation (rotate), and the pages of sealed blobs the re-wrapping pass
//! walks through.
//!
//! Every blob is replaced with a compare-and-swap (`... WHERE blob = old`), so a re-wrap
//! never overwrites a value written, destroyed or re-enrolled meanwhile: such a row simply
//! keeps its newer blob, which is already under the current generation.

use chaperone_crypto::WrappedRootKey;
use chaperone_ledger::entry::Event;
use sqlx::Row as _;

use crate::{Backend, SealConfig, Store, StoreError, db};

/// Refuses (`StoreError::Conflict`) to store `blob` under a key-encryption-key generation
/// older than one already recorded complete (every blob re-wrapped under it or later).
///
/// Security decision: a node sealing under the generation before a rotation may be paused
/// (a suspended virtual machine, a stopped process) past the rotation's wait for other nodes
/// and write afterwards, leaving a key under a generation the operator was told is retired.
/// On PostgreSQL every change that stores a blob the keyring sealed checks it in its own
/// transaction, holding the keyring row shared until it commits: recording the generation
/// complete waits for the writes that checked before it, and the server's rotation walks
/// the blobs once more after it, for what those wrote. A write refused so is answered as a
/// conflict, to be sent again. Before the rotation is complete, an older blob is still
/// stored: the re-wrapping pass takes it. With SQLite one process serves the database, and
/// the rotation waits for its own requests.
pub(crate) async fn sealed_under_current(
    conn: &mut crate::conn::Conn<'_>,
    blob: &[u8],
) -> Result<(), StoreError> {
    if matches!(conn, crate::conn::Conn::Sqlite(_)) {
        return Ok(());
    }
    let done: Option<i64> =
        sqlx::query_scalar("SELECT rewrapped_generation FROM keyring WHERE id = 1 FOR SHARE")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading the key generation"))?;
    if done.is_some_and(|done| i64::from(chaperone_crypto::generation_of(blob)) < done) {
        return Err(StoreError::Conflict(
            "the key-encryption key was rotated while this request ran: send it again".into(),
        ));
    }
    Ok(())
}

/// A kind of sealed blob, by where it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealedKind {
    /// Secret versions' wrapped data keys (`secret_versions.wrapped_key`).
    DataKeys,
    /// People's TOTP secrets (`people.totp_secret`), owner = person id.
    TotpSecrets,
    /// The ledger's signing seed (`ledger_key.sealed_seed`), owner = origin.
    LedgerSeed,
    /// Sealed documents (`documents.sealed`), owner = document id.
    Documents,
    /// Wrapped Vault responses (`wrapped_responses.sealed`), owner = accessor.
    WrappedResponses,
}

impl SealedKind {
    /// Every kind, in the order a pass walks them.
    pub const ALL: [SealedKind; 5] = [
        SealedKind::DataKeys,
        SealedKind::TotpSecrets,
        SealedKind::LedgerSeed,
        SealedKind::Documents,
        SealedKind::WrappedResponses,
    ];

    /// (table, owner column, blob column) of a field kind; data keys have a two-column key.
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SealedKind::DataKeys => ("secret_versions", "", "wrapped_key"),
            SealedKind::TotpSecrets => ("people", "id", "totp_secret"),
            SealedKind::LedgerSeed => ("ledger_key", "origin", "sealed_seed"),
            SealedKind::Documents => ("documents", "id", "sealed"),
            SealedKind::WrappedResponses => ("wrapped_responses", "accessor", "sealed"),
        }
    }
}

/// Where a sealed blob is, within its kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SealedKey {
    /// A secret version.
    Version {
        /// The secret's id.
        secret_id: i64,
        /// The version.
        version: i64,
    },
    /// A row keyed by the field's owner.
    Owner(String),
}

/// One sealed blob.
#[derive(Clone, Debug)]
pub struct SealedItem {
    /// Where it is.
    pub key: SealedKey,
    /// The blob as stored.
    pub blob: Vec<u8>,
}

impl Store {
    /// Replaces the wrapped root key (same root key, new unseal key) and the seal
    /// configuration, recording `events` with it. Fails with a conflict if the wrapped root
    /// key changed meanwhile (another rekey).
    pub async fn rekey(
        &self,
        old: &WrappedRootKey,
        new: &WrappedRootKey,
        seal: SealConfig,
        share_digests: &[String],
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (old, new, events) = (old.clone(), new.clone(), events.to_vec());
        let digests = crate::keyring::digests_column(share_digests);
        let (kind, shares, threshold) = match seal {
            SealConfig::KeyFile => ("key-file", 1, 1),
            SealConfig::Shamir { shares, threshold } => ("shamir", shares, threshold),
        };
        self.change(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE keyring SET wrapped_root_key = $1, seal_kind = $2, shares = $3, \
                     threshold = $4, share_digests = $6 WHERE id = 1 AND wrapped_root_key = $5",
                )
                .bind(new.as_bytes().to_vec())
                .bind(kind)
                .bind(i64::from(shares))
                .bind(i64::from(threshold))
                .bind(old.as_bytes().to_vec())
                .bind(digests)
                .execute(&mut *conn)
                .await
                .map_err(db("storing the new root key wrapping"))?
                .rows_affected();
                if changed == 0 {
                    return Err(StoreError::Conflict(
                        "the root key was rekeyed meanwhile".into(),
                    ));
                }
                Ok(((), events))
            })
        })
        .await?;
        // `secure_delete` zeroes the old wrapping in the database file once its page is
        // written back, but the write-ahead log keeps the page as it was until a checkpoint:
        // the old shares would still open the root key from a copy of the files. The log is
        // written back and emptied now. A reader in the log makes the checkpoint say it is
        // busy (a row, not an error): it is tried again for a while, then said in the log.
        if self.backend == Backend::Sqlite {
            for attempt in 1..=20 {
                let busy = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&self.pool)
                    .await
                    .and_then(|row| row.try_get::<i64, _>(0));
                match busy {
                    Ok(0) => break,
                    Ok(_) if attempt < 20 => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Ok(_) => tracing::warn!(
                        "a reader held the write-ahead log: the old root key wrapping stays in \
                         it until the next checkpoint"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "the write-ahead log could not be emptied after a rekey");
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts KEK generation `from + 1`, recording `events` with it. Fails with a conflict
    /// if the generation is no longer `from`.
    pub async fn start_kek_generation(
        &self,
        from: u32,
        events: &[Event],
    ) -> Result<u32, StoreError> {
        let events = events.to_vec();
        let next = from
            .checked_add(1)
            .ok_or(StoreError::Conflict("no key generation is left".into()))?;
        self.change(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE keyring SET kek_generation = $1 WHERE id = 1 AND kek_generation = $2",
                )
                .bind(i64::from(next))
                .bind(i64::from(from))
                .execute(&mut *conn)
                .await
                .map_err(db("starting a key generation"))?
                .rows_affected();
                if changed == 0 {
                    return Err(StoreError::Conflict(
                        "the key generation changed meanwhile".into(),
                    ));
                }
                Ok((next, events))
            })
        })
        .await
    }

    /// Records that every blob is wrapped under `generation` (or later), with `events`.
    /// Nothing changes if a newer generation started meanwhile.
    pub async fn finish_kek_generation(
        &self,
        generation: u32,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let events = events.to_vec();
        self.change(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE keyring SET rewrapped_generation = $1 \
                     WHERE id = 1 AND kek_generation = $1 AND rewrapped_generation < $1",
                )
                .bind(i64::from(generation))
                .execute(&mut *conn)
                .await
                .map_err(db("finishing a key generation"))?
                .rows_affected()
                    > 0;
                Ok((changed, if changed { events } else { Vec::new() }))
            })
        })
        .await
    }

    /// How many sealed blobs of `kind` are stored.
    pub async fn count_sealed(&self, kind: SealedKind) -> Result<u64, StoreError> {
        let (table, _, blob) = kind.columns();
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table} WHERE {blob} IS NOT NULL"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(db("counting sealed blobs"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Up to `limit` sealed blobs of `kind` after `after`, in key order.
    pub async fn sealed_page(
        &self,
        kind: SealedKind,
        after: Option<&SealedKey>,
        limit: u32,
    ) -> Result<Vec<SealedItem>, StoreError> {
        let (table, owner, blob) = kind.columns();
        let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
        if kind == SealedKind::DataKeys {
            let (secret_id, version) = match after {
                Some(SealedKey::Version { secret_id, version }) => (*secret_id, *version),
                _ => (i64::MIN, i64::MIN),
            };
            let rows = sqlx::query(
                "SELECT secret_id, version, wrapped_key FROM secret_versions \
                 WHERE wrapped_key IS NOT NULL \
                 AND (secret_id > $1 OR (secret_id = $1 AND version > $2)) \
                 ORDER BY secret_id, version LIMIT $3",
            )
            .bind(secret_id)
            .bind(version)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading wrapped data keys"))?;
            return rows
                .iter()
                .map(|row| {
                    Ok(SealedItem {
                        key: SealedKey::Version {
                            secret_id: row.try_get("secret_id").map_err(corrupt)?,
                            version: row.try_get("version").map_err(corrupt)?,
                        },
                        blob: row.try_get("wrapped_key").map_err(corrupt)?,
                    })
                })
                .collect();
        }
        let after = match after {
            Some(SealedKey::Owner(owner)) => owner.clone(),
            _ => String::new(),
        };
        let rows = sqlx::query(&format!(
            "SELECT {owner} AS owner, {blob} AS blob FROM {table} \
             WHERE {blob} IS NOT NULL AND {owner} > $1 ORDER BY {owner} LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading sealed fields"))?;
        rows.iter()
            .map(|row| {
                Ok(SealedItem {
                    key: SealedKey::Owner(row.try_get("owner").map_err(corrupt)?),
                    blob: row.try_get("blob").map_err(corrupt)?,
                })
            })
            .collect()
    }

    /// Replaces each sealed blob `(key, old, new)` that is still `old`, in one transaction;
    /// how many were replaced.
    pub async fn replace_sealed(
        &self,
        kind: SealedKind,
        changes: &[(SealedKey, Vec<u8>, Vec<u8>)],
    ) -> Result<u64, StoreError> {
        // One change on the committer, so all of the page or none; the cache is emptied
        // after it (cached versions hold the blobs replaced here).
        let changes = changes.to_vec();
        self.write(move |conn| {
            Box::pin(async move {
                let mut replaced = 0;
                for (key, old, new) in &changes {
                    replaced += replace_one(conn, kind, key, old, new).await?;
                }
                Ok(replaced)
            })
        })
        .await
    }
}

async fn replace_one(
    conn: &mut crate::conn::Conn<'_>,
    kind: SealedKind,
    key: &SealedKey,
    old: &[u8],
    new: &[u8],
) -> Result<u64, StoreError> {
    {
        let (table, owner, blob) = kind.columns();
        // Table and column names come from `SealedKind`, never from input.
        let field_sql =
            format!("UPDATE {table} SET {blob} = $1 WHERE {owner} = $2 AND {blob} = $3");
        let query = match key {
            SealedKey::Version { secret_id, version } => sqlx::query(
                "UPDATE secret_versions SET wrapped_key = $1 \
                 WHERE secret_id = $2 AND version = $3 AND wrapped_key = $4",
            )
            .bind(new.to_vec())
            .bind(*secret_id)
            .bind(*version)
            .bind(old.to_vec()),
            SealedKey::Owner(id) => sqlx::query(&field_sql)
                .bind(new.to_vec())
                .bind(id.clone())
                .bind(old.to_vec()),
        };
        Ok(query
            .execute(&mut *conn)
            .await
            .map_err(db("re-wrapping a sealed blob"))?
            .rows_affected())
    }
}
