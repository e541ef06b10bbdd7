//! What backup and restore need from the database: a consistent snapshot while the server
//! keeps writing, the ledger's head as of that snapshot, and a full audit of a restored
//! ledger.
//!
//! SQLite is snapshotted with `VACUUM INTO`, which copies the database as one read
//! transaction sees it (writers carry on meanwhile under WAL). PostgreSQL is snapshotted by
//! `pg_dump` run on a snapshot this module exports from a repeatable-read transaction
//! ([`Store::export_snapshot`]), so the ledger size read in that transaction is exactly the
//! one the dump holds.

use std::path::Path;

use chaperone_ledger::audit::{Audit, Audited, BundleInput};
use chaperone_ledger::merkle::{self, Hash};
use chaperone_ledger::tiles::{TileId, TileKind, WIDTH, split_tile};
use sqlx::Row as _;

use crate::{Backend, Store, StoreError, db};

/// A PostgreSQL snapshot held open for `pg_dump --snapshot`. The snapshot lives until
/// [`PgSnapshot::finish`] ends its transaction, or until this is dropped: then its
/// connection is closed rather than handed back to the pool, so no later query runs inside
/// the snapshot's read-only transaction.
#[derive(Debug)]
pub struct PgSnapshot {
    /// The id to pass to `pg_dump --snapshot`.
    pub id: String,
    /// The ledger's size in the snapshot.
    pub ledger_size: u64,
    /// Taken by `finish`.
    connection: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Out of the pool; dropping the bare connection closes it, and PostgreSQL ends
            // its transaction.
            drop(connection.detach());
        }
    }
}

impl PgSnapshot {
    /// The latest signed checkpoint at or below `size` and the verifier key, as the
    /// snapshot holds them.
    pub async fn ledger_facts(
        &mut self,
        size: u64,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let connection = self
            .connection
            .as_mut()
            .ok_or(StoreError::Unsupported("the snapshot has ended"))?;
        let note: Option<String> = sqlx::query_scalar(
            "SELECT note FROM ledger_checkpoints WHERE size <= $1 ORDER BY size DESC LIMIT 1",
        )
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .fetch_optional(&mut **connection)
        .await
        .map_err(db("reading a checkpoint"))?;
        let verifier: Option<Option<String>> =
            sqlx::query_scalar("SELECT verifier FROM ledger_key WHERE id = 1")
                .fetch_optional(&mut **connection)
                .await
                .map_err(db("reading the ledger verifier"))?;
        Ok((note, verifier.flatten()))
    }

    /// Ends the snapshot's transaction.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        let Some(mut connection) = self.connection.take() else {
            return Ok(());
        };
        match sqlx::query("COMMIT").execute(&mut *connection).await {
            // Ended: the connection goes back to the pool.
            Ok(_) => Ok(()),
            Err(e) => {
                drop(connection.detach());
                Err(db("ending the snapshot")(e))
            }
        }
    }
}

impl Store {
    /// Writes a consistent copy of this SQLite database to `path` (which must not exist).
    pub async fn snapshot_into(&self, path: &Path) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Unsupported(
                "VACUUM INTO is for SQLite; PostgreSQL is exported with pg_dump",
            ));
        }
        let target = path
            .to_str()
            .ok_or(StoreError::Unsupported("a backup path must be UTF-8"))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.pool)
            .await
            .map_err(db("copying the database"))?;
        Ok(())
    }

    /// Opens a repeatable-read transaction on PostgreSQL, exports its snapshot and reads the
    /// ledger size in it.
    pub async fn export_snapshot(&self) -> Result<PgSnapshot, StoreError> {
        if self.backend != Backend::Postgres {
            return Err(StoreError::Unsupported(
                "exported snapshots are for PostgreSQL; SQLite is copied with VACUUM INTO",
            ));
        }
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(db("connecting for a snapshot"))?;
        match begin_snapshot(&mut connection).await {
            Ok((id, ledger_size)) => Ok(PgSnapshot {
                id,
                ledger_size,
                connection: Some(connection),
            }),
            Err(e) => {
                // Possibly inside the transaction: closed, not pooled (see `PgSnapshot`).
                drop(connection.detach());
                Err(e)
            }
        }
    }

    /// The tree head at `size`, from the stored hash tiles.
    pub async fn ledger_root(&self, size: u64) -> Result<Hash, StoreError> {
        let needed = merkle::nodes_needed(|r| merkle::root(size, r));
        let tiles = self.ledger_tiles_for(&needed).await?;
        merkle::root(size, &tiles).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The latest signed checkpoint at or below `size`: (size, note).
    pub async fn checkpoint_at_most(&self, size: u64) -> Result<Option<(u64, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT size, note FROM ledger_checkpoints WHERE size <= $1 ORDER BY size DESC LIMIT 1",
        )
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a checkpoint"))?;
        row.as_ref().map(checkpoint_row).transpose()
    }

    /// Every signed checkpoint kept: (size, note), smallest first.
    pub async fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = sqlx::query("SELECT size, note FROM ledger_checkpoints ORDER BY size")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the checkpoints"))?;
        rows.iter().map(checkpoint_row).collect()
    }

    /// Recomputes the whole ledger from its entry bundles: every entry's leaf against the
    /// stored leaf tiles, the heads at `earlier` sizes, and the head at the stored size
    /// against the one the hash tiles give. Returns (size, recomputed audit).
    pub async fn audit_ledger(&self, earlier: &[u64]) -> Result<(u64, Audited), AuditError> {
        let size = self.ledger_size().await?;
        let mut audit = Audit::new(size, earlier);
        let wanted: Vec<(u64, u64)> = audit.wanted().collect();
        for chunk in wanted.chunks(64) {
            let mut bundles = Vec::with_capacity(chunk.len());
            let mut leaves = Vec::with_capacity(chunk.len());
            for &(index, width) in chunk {
                let bundle = self
                    .ledger_tile(TileId {
                        kind: TileKind::Entries,
                        index,
                        width,
                    })
                    .await?
                    .ok_or_else(|| {
                        AuditError::Problem(format!("entry bundle {index} is missing"))
                    })?;
                let tile = self
                    .ledger_tile(TileId {
                        kind: TileKind::Hashes(0),
                        index,
                        width,
                    })
                    .await?
                    .ok_or_else(|| AuditError::Problem(format!("leaf tile {index} is missing")))?;
                let tile =
                    split_tile(0, index, &tile).map_err(|e| AuditError::Problem(e.to_string()))?;
                bundles.push(bundle);
                leaves.push(tile);
            }
            let inputs: Vec<BundleInput<'_>> = chunk
                .iter()
                .zip(&bundles)
                .zip(&leaves)
                .map(|((&(index, width), data), leaf_tile)| BundleInput {
                    index,
                    width,
                    data,
                    leaf_tile: Some(
                        &leaf_tile[..usize::try_from(width).unwrap_or(0).min(leaf_tile.len())],
                    ),
                })
                .collect();
            audit
                .bundles(&inputs)
                .map_err(|e| AuditError::Problem(e.to_string()))?;
        }
        let audited = audit
            .finish()
            .map_err(|e| AuditError::Problem(e.to_string()))?;
        let from_tiles = self.ledger_root(size).await?;
        if from_tiles != audited.root {
            return Err(AuditError::Problem(
                "the hash tiles give another head than the entries: they were changed".into(),
            ));
        }
        // Every tile above level 0 (what proofs are made from) must match the entries too,
        // not only the nodes the head needs: a changed one would serve wrong proofs.
        for id in chaperone_ledger::tiles::tiles_for_size(size) {
            let TileKind::Hashes(level @ 1..) = id.kind else {
                continue;
            };
            let data = self.ledger_tile(id).await?.ok_or_else(|| {
                AuditError::Problem(format!("the hash tile {} is missing", id.path()))
            })?;
            let hashes = split_tile(level, id.index, &data)
                .map_err(|e| AuditError::Problem(e.to_string()))?;
            audited
                .check_tile(level, id.index, &hashes)
                .map_err(|p| AuditError::Problem(p.to_string()))?;
        }
        debug_assert!(size.div_ceil(WIDTH) as usize == wanted.len());
        Ok((size, audited))
    }

    /// The ledger's verifier key, once the server has recorded it.
    pub async fn ledger_verifier(&self) -> Result<Option<String>, StoreError> {
        let verifier: Option<Option<String>> =
            sqlx::query_scalar("SELECT verifier FROM ledger_key WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading the ledger verifier"))?;
        Ok(verifier.flatten())
    }

    /// Records the ledger's verifier key (public) unless recorded already.
    pub async fn set_ledger_verifier(&self, verifier: &str) -> Result<(), StoreError> {
        let verifier = verifier.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE ledger_key SET verifier = $1 WHERE id = 1 AND verifier IS NULL",
                )
                .bind(verifier)
                .execute(conn)
                .await
                .map_err(db("recording the ledger verifier"))?;
                Ok(())
            })
        })
        .await
    }
}

/// Begins the snapshot's transaction on `conn`, exports it and reads the ledger size in it.
async fn begin_snapshot(conn: &mut sqlx::AnyConnection) -> Result<(String, u64), StoreError> {
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(db("starting the snapshot"))?;
    // The snapshot stays open, idle, while pg_dump reads through it, for as long as the dump
    // takes: the session's limit on idle transactions (`POSTGRES_SESSION`) is raised to six
    // hours. Rows changed meanwhile wait for nothing; a schema change (an upgrade's
    // migration) waits for the dump, and a backup stopped halfway lets go after that time.
    sqlx::query("SET LOCAL idle_in_transaction_session_timeout = '6h'")
        .execute(&mut *conn)
        .await
        .map_err(db("starting the snapshot"))?;
    let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *conn)
        .await
        .map_err(db("exporting the snapshot"))?;
    let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(db("reading the ledger size"))?;
    let size =
        u64::try_from(size).map_err(|_| StoreError::Corrupt("negative ledger size".into()))?;
    Ok((id, size))
}

/// A `(size, note)` row of `ledger_checkpoints`.
fn checkpoint_row(row: &sqlx::any::AnyRow) -> Result<(u64, String), StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let size: i64 = row.try_get("size").map_err(corrupt)?;
    Ok((
        u64::try_from(size).map_err(|_| StoreError::Corrupt("negative size".into()))?,
        row.try_get("note").map_err(corrupt)?,
    ))
}

/// Why a ledger audit failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger is not what its entries say.
    #[error("{0}")]
    Problem(String),
}

impl crate::DatabaseUrl {
    /// The URL without its password, and the password (percent-decoded), for PostgreSQL's
    /// own tools: the password goes to them in `PGPASSWORD`, never on a command line that
    /// other users can read in the process list. A password given as a query parameter
    /// (`?password=`) is taken out the same way; other parameters that hold a password
    /// (`sslpassword`) are dropped, and libpq then asks for them or reads them from its own
    /// files.
    pub fn split_password(&self) -> (String, Option<zeroize::Zeroizing<String>>) {
        let url = &self.url;
        let Some(scheme_end) = url.find("://") else {
            return (url.clone(), None);
        };
        let (main, query) = url
            .split_once('?')
            .map_or((url.as_str(), None), |(m, q)| (m, Some(q)));
        let mut password = None;
        let mut bare = main.to_owned();
        let rest = &main[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            password = Some(zeroize::Zeroizing::new(percent_decode(
                &rest[colon + 1..at],
            )));
            bare = format!(
                "{}{}{}",
                &main[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            );
        }
        if let Some(query) = query {
            let mut kept = Vec::new();
            for pair in query.split('&') {
                let name = pair.split('=').next().unwrap_or_default();
                if name.eq_ignore_ascii_case("password") {
                    let value = pair.split_once('=').map_or("", |(_, v)| v);
                    password = Some(zeroize::Zeroizing::new(percent_decode(value)));
                } else if !name.to_ascii_lowercase().contains("password") {
                    kept.push(pair);
                }
            }
            if !kept.is_empty() {
                bare.push('?');
                bare.push_str(&kept.join("&"));
            }
        }
        (bare, password)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the PostgreSQL database at `url` has anything (a table, index, sequence or
/// view) in its `public` schema. Checked without running migrations, so that a restore
/// target is judged as found. Security decision: the catalog (`pg_class`) is read, not
/// `information_schema`, which lists only what the connecting role has privileges on: a
/// role that owns the schema but was granted nothing on the tables would see a live
/// database as empty.
pub async fn postgres_has_tables(url: &crate::DatabaseUrl) -> Result<bool, StoreError> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url.url)
        .await
        .map_err(db("connecting"))?;
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(db("listing tables"))?;
    let _ = conn.close().await;
    Ok(count > 0)
}

/// Drops everything in the `public` schema of the PostgreSQL database at `url`: used by a
/// forced restore, and to empty a target again when a restored ledger fails to verify.
pub async fn postgres_clear(url: &crate::DatabaseUrl) -> Result<(), StoreError> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url.url)
        .await
        .map_err(db("connecting"))?;
    for statement in ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"] {
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .map_err(db("emptying the database"))?;
    }
    let _ = conn.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::DatabaseUrl;

    #[test]
    fn passwords_are_split_out_for_libpq_tools() {
        let url = DatabaseUrl::parse("postgres://app:p%40ss:w@db.example:5432/chaperone").unwrap();
        let (bare, password) = url.split_password();
        assert_eq!(bare, "postgres://app@db.example:5432/chaperone");
        assert_eq!(password.as_deref().map(String::as_str), Some("p@ss:w"));
        let url = DatabaseUrl::parse("postgres://app@localhost/c").unwrap();
        assert_eq!(
            url.split_password(),
            ("postgres://app@localhost/c".into(), None)
        );
        // A password in the query string leaves the URL too, and so does any other
        // password-bearing parameter.
        let url = DatabaseUrl::parse(
            "postgres://app@db/c?sslmode=require&password=hun%26ter2&application_name=c",
        )
        .unwrap();
        let (bare, password) = url.split_password();
        assert_eq!(
            bare,
            "postgres://app@db/c?sslmode=require&application_name=c"
        );
        assert_eq!(password.as_deref().map(String::as_str), Some("hun&ter2"));
    }
}
