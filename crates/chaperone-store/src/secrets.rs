//! Versioned secrets: write with check-and-set, read a version, soft delete, undelete,
//! destroy, metadata and listing.
//!
//! Writers serialise on the secret's row: a write first upserts the row, then updates it
//! (`UPDATE ... RETURNING`), which takes PostgreSQL's row lock or SQLite's write lock before
//! the check-and-set is decided. Two concurrent writers with the same `cas` therefore cannot
//! both succeed.

use std::collections::BTreeMap;

use chaperone_core::{
    Cas, MaxVersions, SecretMetadata, SecretPath, SecretPrefix, Timestamp, VersionMeta,
    VersionState, check_cas, pruned_below,
};
use chaperone_crypto::{Binding, SealedValue};
use sqlx::Row;
use sqlx::any::AnyRow;

use chaperone_ledger::entry::Event;

use crate::cache::Touches;
use crate::conn::Conn;
use crate::{Store, StoreError, db, to_i64, to_u64};

/// Server-wide key/value settings that apply where a secret sets nothing of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvSettings {
    /// Versions kept per secret.
    pub max_versions: MaxVersions,
    /// Whether every write needs a check-and-set version.
    pub cas_required: bool,
}

/// One stored version, as read.
#[derive(Clone, Debug)]
pub struct StoredVersion {
    /// The secret's id, part of the ciphertext binding.
    pub secret_id: i64,
    /// The secret's newest version.
    pub current_version: u64,
    /// This version's metadata.
    pub meta: VersionMeta,
    /// The encrypted value; `None` once destroyed.
    pub sealed: Option<SealedValue>,
    /// The secret's custom metadata (not secret).
    pub custom_metadata: BTreeMap<String, String>,
}

impl StoredVersion {
    /// The binding its ciphertexts were sealed with.
    pub fn binding(&self) -> Binding {
        Binding {
            secret_id: self.secret_id,
            version: self.meta.version,
        }
    }
}

/// A change to a secret's own settings; `None` fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataUpdate {
    /// New maximum; `Some(None)` returns to the server default.
    pub max_versions: Option<Option<MaxVersions>>,
    /// New check-and-set requirement.
    pub cas_required: Option<bool>,
    /// New custom metadata, replacing the old.
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

/// What a write made: the new version, and the secret's custom metadata (which Vault's
/// write answer shows).
#[derive(Clone, Debug)]
pub struct WrittenVersion {
    /// The new version.
    pub meta: VersionMeta,
    /// The secret's custom metadata.
    pub custom_metadata: BTreeMap<String, String>,
    /// Versions below this one were pruned by this write (`max_versions`).
    pub pruned_below: Option<u64>,
}

impl Store {
    /// Writes a new version of `path`. `seal` encrypts the value for the binding the new
    /// version gets; it runs inside the transaction, after check-and-set has passed.
    pub async fn put_version(
        &self,
        path: &SecretPath,
        cas: Cas,
        settings: KvSettings,
        now: Timestamp,
        events: &[Event],
        seal: impl FnOnce(Binding) -> SealedValue + Send + 'static,
    ) -> Result<WrittenVersion, StoreError> {
        let (path, events) = (path.clone(), events.to_vec());
        self.change_touching(Touches::Secrets, move |conn| {
            Box::pin(async move {
                let written = put_version_in(conn, &path, cas, settings, now, seal).await?;
                // The entries name the version written and what it pruned, which only
                // the transaction knows.
                let mut events = events;
                for event in &mut events {
                    event
                        .details
                        .insert("version".into(), written.meta.version.into());
                    if let Some(below) = written.pruned_below {
                        event.details.insert("pruned_below".into(), below.into());
                    }
                }
                Ok((written, events))
            })
        })
        .await
    }

    /// Reads `version` of `path` (the current one when `None`). `None` if the secret or the
    /// version does not exist (never written, or pruned). Deleted and destroyed versions are
    /// returned with their state; the caller decides what to show.
    pub async fn read_version(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let key = (path.as_str().to_owned(), version.unwrap_or(0));
        self.cached(
            &self.cache.versions,
            key,
            self.read_version_uncached(path, version),
        )
        .await
    }

    async fn read_version_uncached(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let row = sqlx::query(
            "SELECT s.id, s.current_version, s.custom_metadata, v.version, v.created_at, \
             v.deleted_at, v.destroyed_at, v.wrapped_key, v.ciphertext \
             FROM secrets s JOIN secret_versions v ON v.secret_id = s.id \
             WHERE s.path = $1 AND v.version = \
             (CASE WHEN $2 = 0 THEN s.current_version ELSE $2 END)",
        )
        .bind(path.as_str())
        .bind(to_i64(version.unwrap_or(0)))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a secret"))?;
        let Some(row) = row else { return Ok(None) };
        let read = || -> Result<StoredVersion, sqlx::Error> {
            let custom: String = row.try_get("custom_metadata")?;
            let wrapped_key: Option<Vec<u8>> = row.try_get("wrapped_key")?;
            let ciphertext: Option<Vec<u8>> = row.try_get("ciphertext")?;
            Ok(StoredVersion {
                secret_id: row.try_get("id")?,
                current_version: row.try_get::<i64, _>("current_version")? as u64,
                meta: version_meta(&row)?,
                sealed: wrapped_key
                    .zip(ciphertext)
                    .map(|(wrapped_key, ciphertext)| SealedValue {
                        wrapped_key,
                        ciphertext,
                    }),
                custom_metadata: serde_json::from_str(&custom)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            })
        };
        read()
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("version row: {e}")))
    }

    /// The metadata of `path` and all its kept versions.
    pub async fn metadata(&self, path: &SecretPath) -> Result<Option<SecretMetadata>, StoreError> {
        let row = sqlx::query(
            "SELECT id, current_version, oldest_version, max_versions, cas_required, \
             custom_metadata, metadata_version, created_at, updated_at FROM secrets \
             WHERE path = $1",
        )
        .bind(path.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading metadata"))?;
        let Some(row) = row else { return Ok(None) };
        let head = SecretHead::from_row(&row)?;
        let rows = sqlx::query(
            "SELECT version, created_at, deleted_at, destroyed_at FROM secret_versions \
             WHERE secret_id = $1 ORDER BY version",
        )
        .bind(head.id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading versions"))?;
        let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("metadata row: {e}"));
        let custom: String = row.try_get("custom_metadata").map_err(corrupt)?;
        Ok(Some(SecretMetadata {
            path: path.clone(),
            current_version: head.current_version,
            oldest_version: head.oldest_version,
            max_versions: head.max_versions,
            cas_required: head.cas_required,
            custom_metadata: serde_json::from_str(&custom)
                .map_err(|e| StoreError::Corrupt(format!("custom metadata: {e}")))?,
            metadata_version: row
                .try_get::<i64, _>("metadata_version")
                .map_err(corrupt)
                .and_then(|v| {
                    u64::try_from(v).map_err(|_| StoreError::Corrupt("metadata version".into()))
                })?,
            created_at: Timestamp::from_unix_nanos(row.try_get("created_at").map_err(corrupt)?),
            updated_at: Timestamp::from_unix_nanos(row.try_get("updated_at").map_err(corrupt)?),
            versions: rows
                .iter()
                .map(version_meta)
                .collect::<Result<_, _>>()
                .map_err(corrupt)?,
        }))
    }

    /// The direct children of `prefix`: secret names, and sub-folders ending in `/`. A
    /// secret with metadata and no version yet is listed, as Vault lists it.
    pub async fn list(&self, prefix: &SecretPrefix) -> Result<Vec<String>, StoreError> {
        let len = i64::try_from(prefix.as_str().len()).expect("prefixes are short");
        let paths: Vec<String> = sqlx::query_scalar(
            "SELECT path FROM secrets WHERE substr(path, 1, CAST($2 AS INTEGER)) = $1",
        )
        .bind(prefix.as_str())
        .bind(len)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing secrets"))?;
        Ok(prefix.children(paths.iter().map(String::as_str)))
    }

    /// Every written secret at or under `prefix` (all of them for an empty prefix), by
    /// path.
    pub async fn secret_paths(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.trim_end_matches('/');
        let folder = format!("{prefix}/");
        let len = i64::try_from(folder.len()).expect("prefixes are short");
        let paths: Vec<String> = sqlx::query_scalar(
            "SELECT path FROM secrets WHERE current_version > 0 AND ($1 = '' OR path = $1 \
             OR substr(path, 1, CAST($3 AS INTEGER)) = $2) ORDER BY path",
        )
        .bind(prefix)
        .bind(&folder)
        .bind(len)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing secrets"))?;
        Ok(paths)
    }

    /// Soft-deletes `versions` (or the current version when empty). Versions that do not
    /// exist, or are already deleted or destroyed, are left alone. `false` if the secret does
    /// not exist.
    pub async fn delete_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
        now: Timestamp,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        self.change_versions(path, versions, VersionChange::Delete, now, events)
            .await
    }

    /// Restores soft-deleted `versions`. `false` if the secret does not exist.
    pub async fn undelete_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
        now: Timestamp,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        self.change_versions(path, versions, VersionChange::Undelete, now, events)
            .await
    }

    /// Destroys the data of `versions` for good, keeping their metadata. `false` if the
    /// secret does not exist.
    pub async fn destroy_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
        now: Timestamp,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        self.change_versions(path, versions, VersionChange::Destroy, now, events)
            .await
    }

    /// Removes the secret with all its versions and metadata. `false` if it did not exist.
    pub async fn delete_secret(
        &self,
        path: &SecretPath,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (path, events) = (path.clone(), events.to_vec());
        self.change_touching(Touches::Secrets, move |conn| {
            Box::pin(async move {
                let deleted = delete_secret_in(conn, &path).await?;
                Ok((deleted, if deleted { events } else { Vec::new() }))
            })
        })
        .await
    }

    /// Changes a secret's own settings, creating its metadata if the secret is new.
    pub async fn update_metadata(
        &self,
        path: &SecretPath,
        update: &MetadataUpdate,
        now: Timestamp,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (path, update, events) = (path.clone(), update.clone(), events.to_vec());
        self.change_touching(Touches::Secrets, move |conn| {
            Box::pin(async move {
                update_metadata_in(conn, &path, &update, now).await?;
                Ok(((), events))
            })
        })
        .await
    }

    async fn change_versions(
        &self,
        path: &SecretPath,
        versions: &[u64],
        change: VersionChange,
        now: Timestamp,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (path, versions, events) = (path.clone(), versions.to_vec(), events.to_vec());
        self.change_touching(Touches::Secrets, move |conn| {
            Box::pin(async move {
                let Some(changed) = change_versions_in(conn, &path, &versions, change, now).await?
                else {
                    return Ok((false, Vec::new()));
                };
                // The entries name the versions this change did change (the current one
                // when none was named; none already in the state asked for).
                let mut events = events;
                for event in &mut events {
                    event
                        .details
                        .insert("versions".into(), changed.clone().into());
                }
                Ok((true, events))
            })
        })
        .await
    }
}

async fn put_version_in(
    conn: &mut Conn<'_>,
    path: &SecretPath,
    cas: Cas,
    settings: KvSettings,
    now: Timestamp,
    seal: impl FnOnce(Binding) -> SealedValue,
) -> Result<WrittenVersion, StoreError> {
    // One statement creates the secret if needed, takes its row and moves it to the new
    // version. Check-and-set then judges the version it replaced; a failure rolls the job's
    // savepoint back, so nothing of it stays. (Fewer statements: each is a round trip on
    // the path every queued change waits for.)
    let row = sqlx::query(
        "INSERT INTO secrets (path, current_version, oldest_version, max_versions, \
         cas_required, custom_metadata, created_at, updated_at) \
         VALUES ($1, 1, 1, 0, 0, '{}', $2, $2) \
         ON CONFLICT (path) DO UPDATE SET current_version = secrets.current_version + 1, \
         updated_at = excluded.updated_at \
         RETURNING id, current_version, oldest_version, max_versions, cas_required, \
         custom_metadata",
    )
    .bind(path.as_str())
    .bind(now.unix_nanos())
    .fetch_one(&mut *conn)
    .await
    .map_err(db("writing a secret"))?;
    let head = SecretHead::from_row(&row)?;
    let version = head.current_version;
    check_cas(version - 1, cas, head.cas_required || settings.cas_required)?;
    if let Cas::Merge(base) = cas {
        // The version merged into was read before this change: a delete or destroy of it
        // committed meanwhile leaves the version number as it was, so it is checked here.
        let readable = sqlx::query(
            "SELECT 1 FROM secret_versions WHERE secret_id = $1 AND version = $2 \
             AND deleted_at IS NULL AND destroyed_at IS NULL",
        )
        .bind(head.id)
        .bind(to_i64(base))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("checking the version merged into"))?;
        if readable.is_none() {
            return Err(chaperone_core::secret::KvError::VersionGone { version: base }.into());
        }
    }
    let custom: String = row
        .try_get("custom_metadata")
        .map_err(|e| StoreError::Corrupt(format!("secret row: {e}")))?;
    let custom_metadata = serde_json::from_str(&custom)
        .map_err(|e| StoreError::Corrupt(format!("custom metadata: {e}")))?;
    let sealed = seal(Binding {
        secret_id: head.id,
        version,
    });
    crate::keys::sealed_under_current(conn, &sealed.wrapped_key).await?;
    sqlx::query(
        "INSERT INTO secret_versions (secret_id, version, created_at, wrapped_key, ciphertext) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(head.id)
    .bind(to_i64(version))
    .bind(now.unix_nanos())
    .bind(sealed.wrapped_key)
    .bind(sealed.ciphertext)
    .execute(&mut *conn)
    .await
    .map_err(db("storing a version"))?;

    let keep = head.max_versions.unwrap_or(settings.max_versions);
    let oldest = pruned_below(version, keep).max(head.oldest_version.max(1));
    // A secret made by a metadata write starts at 0: moving it to 1 prunes nothing.
    let pruned = (oldest > head.oldest_version.max(1)).then_some(oldest);
    if oldest != head.oldest_version {
        sqlx::query("DELETE FROM secret_versions WHERE secret_id = $1 AND version < $2")
            .bind(head.id)
            .bind(to_i64(oldest))
            .execute(&mut *conn)
            .await
            .map_err(db("pruning old versions"))?;
        sqlx::query("UPDATE secrets SET oldest_version = $2 WHERE id = $1")
            .bind(head.id)
            .bind(to_i64(oldest))
            .execute(&mut *conn)
            .await
            .map_err(db("updating a secret"))?;
    }
    Ok(WrittenVersion {
        meta: VersionMeta {
            version,
            created_at: now,
            state: VersionState::Active,
        },
        custom_metadata,
        pruned_below: pruned,
    })
}

async fn delete_secret_in(conn: &mut Conn<'_>, path: &SecretPath) -> Result<bool, StoreError> {
    sqlx::query(
        "DELETE FROM secret_versions WHERE secret_id IN (SELECT id FROM secrets WHERE path = $1)",
    )
    .bind(path.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db("deleting versions"))?;
    let deleted = sqlx::query("DELETE FROM secrets WHERE path = $1")
        .bind(path.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("deleting a secret"))?
        .rows_affected();
    Ok(deleted > 0)
}

async fn update_metadata_in(
    conn: &mut Conn<'_>,
    path: &SecretPath,
    update: &MetadataUpdate,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO secrets (path, current_version, oldest_version, max_versions, \
         cas_required, custom_metadata, created_at, updated_at) \
         VALUES ($1, 0, 0, 0, 0, '{}', $2, $2) ON CONFLICT (path) DO NOTHING",
    )
    .bind(path.as_str())
    .bind(now.unix_nanos())
    .execute(&mut *conn)
    .await
    .map_err(db("creating a secret"))?;
    if let Some(max) = update.max_versions {
        sqlx::query("UPDATE secrets SET max_versions = $2 WHERE path = $1")
            .bind(path.as_str())
            .bind(max.map_or(0, |m| i64::from(m.get())))
            .execute(&mut *conn)
            .await
            .map_err(db("updating max_versions"))?;
    }
    if let Some(required) = update.cas_required {
        sqlx::query("UPDATE secrets SET cas_required = $2 WHERE path = $1")
            .bind(path.as_str())
            .bind(i64::from(required))
            .execute(&mut *conn)
            .await
            .map_err(db("updating cas_required"))?;
    }
    if let Some(custom) = &update.custom_metadata {
        let json = serde_json::to_string(custom).expect("a string map always serialises");
        sqlx::query("UPDATE secrets SET custom_metadata = $2 WHERE path = $1")
            .bind(path.as_str())
            .bind(json)
            .execute(&mut *conn)
            .await
            .map_err(db("updating custom metadata"))?;
    }
    sqlx::query(
        "UPDATE secrets SET updated_at = $2, metadata_version = metadata_version + 1 \
         WHERE path = $1",
    )
    .bind(path.as_str())
    .bind(now.unix_nanos())
    .execute(&mut *conn)
    .await
    .map_err(db("updating a secret"))?;
    Ok(())
}

async fn change_versions_in(
    conn: &mut Conn<'_>,
    path: &SecretPath,
    versions: &[u64],
    change: VersionChange,
    now: Timestamp,
) -> Result<Option<Vec<u64>>, StoreError> {
    // Locks the secret's row; `updated_at` stays the time of its last write or metadata
    // change, as Vault's `updated_time` (deleting a version is neither).
    let row = sqlx::query(
        "UPDATE secrets SET updated_at = updated_at WHERE path = $1 \
         RETURNING id, current_version, oldest_version, max_versions, cas_required",
    )
    .bind(path.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("locking a secret"))?;
    let Some(row) = row else { return Ok(None) };
    let head = SecretHead::from_row(&row)?;
    let current = [head.current_version];
    let versions = if versions.is_empty() {
        &current[..]
    } else {
        versions
    };
    let sql = match change {
        VersionChange::Delete => {
            "UPDATE secret_versions SET deleted_at = $3 WHERE secret_id = $1 AND version = $2 \
             AND deleted_at IS NULL AND destroyed_at IS NULL"
        }
        VersionChange::Undelete => {
            "UPDATE secret_versions SET deleted_at = NULL WHERE secret_id = $1 \
             AND version = $2 AND deleted_at IS NOT NULL AND destroyed_at IS NULL"
        }
        VersionChange::Destroy => {
            // A deletion time stays, as Vault keeps showing it with the destroyed version.
            "UPDATE secret_versions SET destroyed_at = $3, \
             wrapped_key = NULL, ciphertext = NULL \
             WHERE secret_id = $1 AND version = $2 AND destroyed_at IS NULL"
        }
    };
    let mut changed = Vec::new();
    for &version in versions {
        let query = sqlx::query(sql).bind(head.id).bind(to_i64(version));
        let query = match change {
            VersionChange::Undelete => query,
            VersionChange::Delete | VersionChange::Destroy => query.bind(now.unix_nanos()),
        };
        let rows = query
            .execute(&mut *conn)
            .await
            .map_err(db("changing a version"))?
            .rows_affected();
        if rows > 0 && !changed.contains(&version) {
            changed.push(version);
        }
    }
    Ok(Some(changed))
}

#[derive(Clone, Copy)]
enum VersionChange {
    Delete,
    Undelete,
    Destroy,
}

/// The columns of a `secrets` row that writes need.
struct SecretHead {
    id: i64,
    current_version: u64,
    oldest_version: u64,
    max_versions: Option<MaxVersions>,
    cas_required: bool,
}

impl SecretHead {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("secret row: {e}"));
        let max: i64 = row.try_get("max_versions").map_err(corrupt)?;
        let max_versions = match max {
            0 => None,
            n => Some(
                u32::try_from(n)
                    .ok()
                    .and_then(|n| MaxVersions::new(n).ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("max_versions {n}")))?,
            ),
        };
        Ok(Self {
            id: row.try_get("id").map_err(corrupt)?,
            current_version: to_u64(row.try_get("current_version").map_err(corrupt)?, "version")?,
            oldest_version: to_u64(row.try_get("oldest_version").map_err(corrupt)?, "version")?,
            max_versions,
            cas_required: row.try_get::<i64, _>("cas_required").map_err(corrupt)? != 0,
        })
    }
}

fn version_meta(row: &AnyRow) -> Result<VersionMeta, sqlx::Error> {
    let deleted: Option<i64> = row.try_get("deleted_at")?;
    let destroyed: Option<i64> = row.try_get("destroyed_at")?;
    let state = match (destroyed, deleted) {
        (Some(at), deleted) => VersionState::Destroyed {
            at: Timestamp::from_unix_nanos(at),
            deleted: deleted.map(Timestamp::from_unix_nanos),
        },
        (None, Some(at)) => VersionState::Deleted(Timestamp::from_unix_nanos(at)),
        (None, None) => VersionState::Active,
    };
    Ok(VersionMeta {
        version: row.try_get::<i64, _>("version")? as u64,
        created_at: Timestamp::from_unix_nanos(row.try_get("created_at")?),
        state,
    })
}
