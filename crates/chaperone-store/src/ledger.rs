//! Ledger storage: entries, the hashes of every complete subtree, and the tree size.
//!
//! An append reads the left siblings it completes (O(log n) rows), writes the new entries and
//! hashes, and moves the size, in one transaction ordered by the `ledger_head` row. Proofs
//! and tree heads read only the hashes they name (see `chaperone_ledger::merkle`).

use chaperone_ledger::entry::Event;
use chaperone_ledger::merkle::{self, Hash, NodeMap};
use sqlx::Row;

use crate::{Store, StoreError, db, to_i64, to_u64};

impl Store {
    /// Appends entries (canonical bytes); returns the index of the first one. The entries get
    /// consecutive indices, in order.
    pub async fn append_ledger(&self, entries: &[Vec<u8>]) -> Result<u64, StoreError> {
        self.append_with(entries.len(), |_| entries.to_vec()).await
    }

    /// Appends events; each gets its index (`seq`) inside its canonical bytes. Returns the
    /// index of the first.
    pub async fn append_events(&self, events: &[Event]) -> Result<u64, StoreError> {
        self.append_with(events.len(), |first| {
            events
                .iter()
                .zip(first..)
                .map(|(event, seq)| event.to_entry(seq))
                .collect()
        })
        .await
    }

    /// Appends `count` entries built by `build` from the index of the first, which is known
    /// only once the append holds the ledger's lock.
    async fn append_with(
        &self,
        count: usize,
        build: impl FnOnce(u64) -> Vec<Vec<u8>> + Send,
    ) -> Result<u64, StoreError> {
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting a ledger append"))?;
        let first = append_in_tx(&mut tx, count, build).await?;
        tx.commit()
            .await
            .map_err(db("committing a ledger append"))?;
        Ok(first)
    }
}

/// Appends `events` inside the caller's transaction, so that a change and its record commit
/// together or not at all.
pub(crate) async fn append_events_in_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[Event],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    append_in_tx(tx, events.len(), |first| {
        events
            .iter()
            .zip(first..)
            .map(|(event, seq)| event.to_entry(seq))
            .collect()
    })
    .await?;
    Ok(())
}

async fn append_in_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    count: usize,
    build: impl FnOnce(u64) -> Vec<Vec<u8>> + Send,
) -> Result<u64, StoreError> {
    {
        let size: i64 =
            sqlx::query_scalar("UPDATE ledger_head SET size = size WHERE id = 1 RETURNING size")
                .fetch_one(&mut **tx)
                .await
                .map_err(db("locking the ledger"))?;
        let size = to_u64(size, "ledger size")?;
        let entries = build(size);
        debug_assert_eq!(entries.len(), count);
        let mut existing = NodeMap::default();
        for (level, index) in merkle::append_needs(size, entries.len() as u64) {
            let hash: Vec<u8> =
                sqlx::query_scalar("SELECT hash FROM ledger_hashes WHERE level = $1 AND idx = $2")
                    .bind(i64::from(level))
                    .bind(to_i64(index))
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("reading a ledger hash"))?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("ledger hash {level}/{index} is missing"))
                    })?;
            existing.0.insert((level, index), to_hash(hash)?);
        }
        let leaves: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let nodes = merkle::append(size, &leaves, &existing)
            .map_err(|e| StoreError::Corrupt(format!("ledger append: {e}")))?;
        for (i, body) in entries.iter().enumerate() {
            sqlx::query("INSERT INTO ledger_entries (seq, body) VALUES ($1, $2)")
                .bind(to_i64(size + i as u64))
                .bind(body.as_slice())
                .execute(&mut **tx)
                .await
                .map_err(db("storing a ledger entry"))?;
        }
        for (level, index, hash) in nodes {
            sqlx::query("INSERT INTO ledger_hashes (level, idx, hash) VALUES ($1, $2, $3)")
                .bind(i64::from(level))
                .bind(to_i64(index))
                .bind(hash.to_vec())
                .execute(&mut **tx)
                .await
                .map_err(db("storing a ledger hash"))?;
        }
        sqlx::query("UPDATE ledger_head SET size = $1 WHERE id = 1")
            .bind(to_i64(size + entries.len() as u64))
            .execute(&mut **tx)
            .await
            .map_err(db("moving the ledger size"))?;
        Ok(size)
    }
}

impl Store {
    /// The number of entries.
    pub async fn ledger_size(&self) -> Result<u64, StoreError> {
        let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading the ledger size"))?;
        to_u64(size, "ledger size")
    }

    /// Entries `[start, end)` with their indices.
    pub async fn ledger_entries(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, body FROM ledger_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
        )
        .bind(to_i64(start))
        .bind(to_i64(end))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading ledger entries"))?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row
                    .try_get("seq")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let body: Vec<u8> = row
                    .try_get("body")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((to_u64(seq, "ledger index")?, body))
            })
            .collect()
    }

    /// The stored hashes at `nodes` (level, index). A missing one is an error: the tree is
    /// complete by construction.
    pub async fn ledger_nodes(&self, nodes: &[(u8, u64)]) -> Result<NodeMap, StoreError> {
        let mut map = NodeMap::default();
        for &(level, index) in nodes {
            let hash: Vec<u8> =
                sqlx::query_scalar("SELECT hash FROM ledger_hashes WHERE level = $1 AND idx = $2")
                    .bind(i64::from(level))
                    .bind(to_i64(index))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("reading a ledger hash"))?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("ledger hash {level}/{index} is missing"))
                    })?;
            map.0.insert((level, index), to_hash(hash)?);
        }
        Ok(map)
    }
}

impl Store {
    /// The ledger's origin and sealed signing seed, if made.
    pub async fn ledger_key(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = sqlx::query("SELECT origin, sealed_seed FROM ledger_key WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading the ledger key"))?;
        row.map(|row| {
            Ok((
                row.try_get("origin")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                row.try_get("sealed_seed")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ))
        })
        .transpose()
    }

    /// Stores the ledger key unless one exists; returns the one in force (another node may
    /// have made it first).
    pub async fn create_ledger_key(
        &self,
        origin: &str,
        sealed_seed: &[u8],
        now: chaperone_core::Timestamp,
    ) -> Result<(String, Vec<u8>), StoreError> {
        sqlx::query(
            "INSERT INTO ledger_key (id, origin, sealed_seed, created_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(origin)
        .bind(sealed_seed)
        .bind(now.unix_nanos())
        .execute(&self.writer)
        .await
        .map_err(db("storing the ledger key"))?;
        self.ledger_key()
            .await?
            .ok_or_else(|| StoreError::Corrupt("the ledger key vanished".into()))
    }

    /// Remembers a checkpoint handed out.
    pub async fn record_checkpoint(
        &self,
        size: u64,
        note: &str,
        now: chaperone_core::Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ledger_checkpoints (size, note, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (size) DO NOTHING",
        )
        .bind(to_i64(size))
        .bind(note)
        .bind(now.unix_nanos())
        .execute(&self.writer)
        .await
        .map_err(db("storing a checkpoint"))?;
        Ok(())
    }
}

fn to_hash(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a ledger hash is not 32 bytes".into()))
}
