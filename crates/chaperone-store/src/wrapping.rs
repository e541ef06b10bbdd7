//! Wrapped responses (Vault's response wrapping): stored sealed, looked up by the hash of
//! their wrapping token, and taken exactly once.

use chaperone_core::Timestamp;
use chaperone_crypto::token::TokenHash;
use chaperone_ledger::entry::Event;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::conn::Conn;
use crate::{Store, StoreError, db};

/// A wrapped response, sealed by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedRecord {
    /// SHA-256 of the wrapping token.
    pub hash: TokenHash,
    /// The wrapping token's public id.
    pub accessor: String,
    /// The response, sealed under the keyring.
    pub sealed: Vec<u8>,
    /// The API path whose response was wrapped.
    pub creation_path: String,
    /// When it was wrapped.
    pub created_at: Timestamp,
    /// When it can no longer be unwrapped.
    pub expires_at: Timestamp,
    /// The person who wrapped it; `None` for tokens of no person (and responses wrapped
    /// before this was kept).
    pub created_by: Option<String>,
    /// The HTTP status the response had, handed back with it: 200, or 404 for a Vault read
    /// of a deleted version (no other is read back).
    pub status: u16,
}

const COLUMNS: &str =
    "token_hash, accessor, sealed, creation_path, created_at, expires_at, created_by, status";

fn from_row(row: &AnyRow) -> Result<WrappedRecord, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("wrapped response: {e}"));
    let hash: Vec<u8> = row.try_get("token_hash").map_err(corrupt)?;
    Ok(WrappedRecord {
        hash: TokenHash::from_slice(&hash)
            .ok_or_else(|| StoreError::Corrupt("a wrapping token hash is not 32 bytes".into()))?,
        accessor: row.try_get("accessor").map_err(corrupt)?,
        sealed: row.try_get("sealed").map_err(corrupt)?,
        creation_path: row.try_get("creation_path").map_err(corrupt)?,
        created_at: Timestamp::from_unix_nanos(row.try_get("created_at").map_err(corrupt)?),
        expires_at: Timestamp::from_unix_nanos(row.try_get("expires_at").map_err(corrupt)?),
        created_by: row.try_get("created_by").map_err(corrupt)?,
        // Only the statuses a wrapping is made with: the column is outside the sealed
        // answer, so no other value is taken from the database.
        status: match row.try_get::<i64, _>("status").map_err(corrupt)? {
            200 => 200,
            404 => 404,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a wrapped response's status is {other}, neither 200 nor 404"
                )));
            }
        },
    })
}

/// How the conflict of a wrapped response over its maker's quota begins (see
/// [`Store::insert_wrapped`]).
pub const WRAP_QUOTA: &str = "live wrapped responses would be more than the limit";

/// The most one maker's live wrapped responses may be: how many, and their sealed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrapQuota {
    /// Live wrapped responses, this one included.
    pub count: i64,
    /// Their sealed bytes, this one's included.
    pub bytes: i64,
}

/// What is kept of a wrapping once it was unwrapped, revoked or refused, until it would have
/// expired: enough to tell a later unwrap with its token from one with a token never made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpentWrapping {
    /// The wrapping token's public id.
    pub accessor: String,
    /// The API path whose response was wrapped.
    pub creation_path: String,
    /// `used` (unwrapped), `revoked` (by its accessor, or with its maker's tokens) or
    /// `refused` (an unwrap refused because its maker could no longer read it).
    pub why: String,
    /// When.
    pub spent_at: Timestamp,
}

/// The version of a secret a wrapped read handed out: handed out again only while it is
/// still readable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldVersion {
    /// The secret's path.
    pub path: String,
    /// The version number.
    pub version: u64,
    /// When that version was written, as the answer says: a secret deleted whole and written
    /// again numbers its versions from 1 again.
    pub created_at: Timestamp,
}

/// Why a [`HeldVersion`] is no longer readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionGone {
    /// Soft-deleted.
    Deleted,
    /// Destroyed.
    Destroyed,
    /// Pruned, the secret deleted, or written again since.
    Gone,
}

impl VersionGone {
    /// The reason code recorded for it.
    pub fn code(self) -> &'static str {
        match self {
            Self::Deleted => "version_deleted",
            Self::Destroyed => "version_destroyed",
            Self::Gone => "version_gone",
        }
    }
}

/// Whether `held` is still readable, read in the transaction.
async fn version_gone(
    conn: &mut Conn<'_>,
    held: &HeldVersion,
) -> Result<Option<VersionGone>, StoreError> {
    let row = sqlx::query(
        "SELECT v.created_at, v.deleted_at, v.destroyed_at \
         FROM secrets s JOIN secret_versions v ON v.secret_id = s.id \
         WHERE s.path = $1 AND v.version = $2",
    )
    .bind(&held.path)
    .bind(i64::try_from(held.version).unwrap_or(i64::MAX))
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading a wrapped version's state"))?;
    let Some(row) = row else {
        return Ok(Some(VersionGone::Gone));
    };
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("version row: {e}"));
    let created: i64 = row.try_get("created_at").map_err(corrupt)?;
    let deleted: Option<i64> = row.try_get("deleted_at").map_err(corrupt)?;
    let destroyed: Option<i64> = row.try_get("destroyed_at").map_err(corrupt)?;
    Ok(if created != held.created_at.unix_nanos() {
        Some(VersionGone::Gone)
    } else if destroyed.is_some() {
        Some(VersionGone::Destroyed)
    } else if deleted.is_some() {
        Some(VersionGone::Deleted)
    } else {
        None
    })
}

/// Keeps the token hash of `record`, spent for `why` at `at`, until it would have expired.
pub(crate) async fn spend(
    conn: &mut Conn<'_>,
    record: &WrappedRecord,
    why: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO spent_wrappings \
         (token_hash, accessor, creation_path, why, spent_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(record.hash.as_bytes().to_vec())
    .bind(&record.accessor)
    .bind(&record.creation_path)
    .bind(why)
    .bind(at.unix_nanos())
    .bind(record.expires_at.unix_nanos())
    .execute(&mut *conn)
    .await
    .map_err(db("keeping a spent wrapping"))?;
    Ok(())
}

/// Deletes the wrappings of `person_id` not yet expired at `at`, keeping each as revoked.
pub(crate) async fn revoke_wrapped_by(
    conn: &mut Conn<'_>,
    person_id: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO spent_wrappings \
         (token_hash, accessor, creation_path, why, spent_at, expires_at) \
         SELECT token_hash, accessor, creation_path, 'revoked', $2, expires_at \
         FROM wrapped_responses WHERE created_by = $1 AND expires_at > $2 \
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(person_id)
    .bind(at.unix_nanos())
    .execute(&mut *conn)
    .await
    .map_err(db("keeping a person's revoked wrapped answers"))?;
    sqlx::query("DELETE FROM wrapped_responses WHERE created_by = $1")
        .bind(person_id)
        .execute(&mut *conn)
        .await
        .map_err(db("revoking a person's wrapped answers"))?;
    Ok(())
}

impl Store {
    /// Stores a wrapped response, with its events, in one transaction, only while the token
    /// whose request it answers (`made_with`) is live ([`StoreError::Conflict`] otherwise):
    /// an answer wrapped just before a reset, a disable or an offboarding revoked its maker's
    /// tokens (and deleted the wrappings it saw) is not stored after it. With `quota`, fails
    /// with [`StoreError::Conflict`] (starting [`WRAP_QUOTA`]) when its maker's stored wrapped
    /// responses (`created_by`, or all of those of no person together) would pass it with
    /// this one: checked in the change, so concurrent wraps cannot pass it together. Expired
    /// responses count until the sweep removes them: they take the disk until then, and
    /// wraps of a second's TTL would otherwise pass any quota.
    pub async fn insert_wrapped(
        &self,
        record: &WrappedRecord,
        events: &[Event],
        made_with: Option<&str>,
        quota: Option<WrapQuota>,
    ) -> Result<(), StoreError> {
        let (record, events) = (record.clone(), events.to_vec());
        let made_with = made_with.map(str::to_owned);
        self.change(move |conn| {
            Box::pin(async move {
                if let Some(id) = &made_with
                    && !crate::keyring::token_live(conn, id).await?
                {
                    return Err(StoreError::Conflict(
                        "the token that asked for it is revoked".into(),
                    ));
                }
                if let Some(quota) = quota {
                    let row = sqlx::query(
                        "SELECT CAST(COUNT(*) AS BIGINT) AS n, \
                         CAST(COALESCE(SUM(LENGTH(sealed)), 0) AS BIGINT) AS bytes \
                         FROM wrapped_responses \
                         WHERE (created_by = $1 OR ($1 IS NULL AND created_by IS NULL))",
                    )
                    .bind(record.created_by.clone())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db("reading the live wrapped responses"))?;
                    let kept: i64 = row.try_get("n").map_err(db("counting wrapped responses"))?;
                    let bytes: i64 = row
                        .try_get("bytes")
                        .map_err(db("counting wrapped responses"))?;
                    let size = i64::try_from(record.sealed.len()).unwrap_or(i64::MAX);
                    if kept >= quota.count || bytes.saturating_add(size) > quota.bytes {
                        return Err(StoreError::Conflict(format!(
                            "{WRAP_QUOTA} ({} responses, {} bytes)",
                            quota.count, quota.bytes
                        )));
                    }
                }
                crate::keys::sealed_under_current(conn, &record.sealed).await?;
                sqlx::query(&format!(
                    "INSERT INTO wrapped_responses ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(record.hash.as_bytes().to_vec())
                .bind(&record.accessor)
                .bind(&record.sealed)
                .bind(&record.creation_path)
                .bind(record.created_at.unix_nanos())
                .bind(record.expires_at.unix_nanos())
                .bind(record.created_by.clone())
                .bind(i64::from(record.status))
                .execute(&mut *conn)
                .await
                .map_err(db("storing a wrapped response"))?;
                Ok(((), events))
            })
        })
        .await
    }

    /// The wrapped response of this token, if it exists and has not expired.
    pub async fn wrapped(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<WrappedRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM wrapped_responses WHERE token_hash = $1"
        ))
        .bind(hash.as_bytes().to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a wrapped response"))?;
        Ok(row
            .map(|r| from_row(&r))
            .transpose()?
            .filter(|r| r.expires_at > now))
    }

    /// What is kept of the spent wrapping of this token, if it was spent and would not have
    /// expired yet.
    pub async fn spent_wrapping(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<SpentWrapping>, StoreError> {
        let row = sqlx::query(
            "SELECT accessor, creation_path, why, spent_at FROM spent_wrappings \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(hash.as_bytes().to_vec())
        .bind(now.unix_nanos())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a spent wrapping"))?;
        let Some(row) = row else { return Ok(None) };
        let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("spent wrapping: {e}"));
        Ok(Some(SpentWrapping {
            accessor: row.try_get("accessor").map_err(corrupt)?,
            creation_path: row.try_get("creation_path").map_err(corrupt)?,
            why: row.try_get("why").map_err(corrupt)?,
            spent_at: Timestamp::from_unix_nanos(row.try_get("spent_at").map_err(corrupt)?),
        }))
    }

    /// The accessors of the unexpired answers `person_id` wrapped, oldest first (what
    /// [`crate::Op::RevokeTokensOf`] deletes with their tokens).
    pub async fn wrapped_by(
        &self,
        person_id: &str,
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT accessor FROM wrapped_responses WHERE created_by = $1 AND expires_at > $2 \
             ORDER BY created_at",
        )
        .bind(person_id)
        .bind(now.unix_nanos())
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a person's wrapped responses"))?;
        rows.iter()
            .map(|r| {
                r.try_get("accessor")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// Deletes up to `limit` wrapped responses that expired by `now`, unopened, with the
    /// events `events_for` makes for their accessors in the same transaction; returns the
    /// accessors.
    pub async fn purge_expired_wrapped(
        &self,
        now: Timestamp,
        limit: u32,
        events_for: impl FnOnce(&[String]) -> Vec<Event> + Send + 'static,
    ) -> Result<Vec<String>, StoreError> {
        // Most sweeps find none: they commit nothing (a commit empties the caches).
        let any: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM wrapped_responses WHERE expires_at <= $1 \
             UNION ALL SELECT 1 FROM spent_wrappings WHERE expires_at <= $1 LIMIT 1",
        )
        .bind(now.unix_nanos())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading expired wrapped responses"))?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        self.change(move |conn| {
            Box::pin(async move {
                // What was kept of spent ones goes when they would have expired.
                sqlx::query(
                    "DELETE FROM spent_wrappings WHERE token_hash IN \
                     (SELECT token_hash FROM spent_wrappings WHERE expires_at <= $1 \
                      ORDER BY expires_at LIMIT $2)",
                )
                .bind(now.unix_nanos())
                .bind(i64::from(limit))
                .execute(&mut *conn)
                .await
                .map_err(db("removing expired spent wrappings"))?;
                let accessors: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM wrapped_responses WHERE token_hash IN \
                     (SELECT token_hash FROM wrapped_responses WHERE expires_at <= $1 \
                      ORDER BY expires_at LIMIT $2) RETURNING accessor",
                )
                .bind(now.unix_nanos())
                .bind(i64::from(limit))
                .fetch_all(&mut *conn)
                .await
                .map_err(db("removing expired wrapped responses"))?;
                let events = if accessors.is_empty() {
                    Vec::new()
                } else {
                    events_for(&accessors)
                };
                Ok((accessors, events))
            })
        })
        .await
    }

    /// Revokes the wrapped response with this accessor: deletes it, unread, if
    /// `events_for` allows it (returns the events to record with the deletion). `None`, and
    /// nothing deleted or recorded, if there is none, it expired, or it was not allowed.
    pub async fn revoke_wrapped(
        &self,
        accessor: &str,
        now: Timestamp,
        events_for: impl FnOnce(&WrappedRecord) -> Option<Vec<Event>> + Send + 'static,
    ) -> Result<Option<WrappedRecord>, StoreError> {
        let accessor = accessor.to_owned();
        self.change(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM wrapped_responses WHERE accessor = $1"
                ))
                .bind(&accessor)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading a wrapped response"))?;
                let Some(record) = row
                    .map(|r| from_row(&r))
                    .transpose()?
                    .filter(|r| r.expires_at > now)
                else {
                    return Ok((None, Vec::new()));
                };
                let Some(events) = events_for(&record) else {
                    return Ok((None, Vec::new()));
                };
                sqlx::query("DELETE FROM wrapped_responses WHERE accessor = $1")
                    .bind(&accessor)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("revoking a wrapped response"))?;
                spend(conn, &record, "revoked", now).await?;
                Ok((Some(record), events))
            })
        })
        .await
    }

    /// Takes the wrapped response of this token: deletes it and returns it, once, with the
    /// events `events_for` makes for it committed in the same transaction, and keeps it as
    /// spent ([`SpentWrapping`]: `used`, or `refused` when `refused` is given or the version
    /// `holds` names is no longer readable). `events_for` is told why the version is not
    /// ([`VersionGone`]), checked in the transaction, so that a delete or destroy committed
    /// before it (on any node) is seen. `None` (and nothing recorded) if there is none or it
    /// expired (an expired one is deleted too).
    pub async fn take_wrapped(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        refused: bool,
        holds: Option<HeldVersion>,
        events_for: impl FnOnce(&WrappedRecord, Option<VersionGone>) -> Vec<Event> + Send + 'static,
    ) -> Result<Option<(WrappedRecord, Option<VersionGone>)>, StoreError> {
        let hash = hash.as_bytes().to_vec();
        self.change(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "DELETE FROM wrapped_responses WHERE token_hash = $1 RETURNING {COLUMNS}"
                ))
                .bind(hash)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("taking a wrapped response"))?;
                let Some(record) = row
                    .map(|r| from_row(&r))
                    .transpose()?
                    .filter(|r| r.expires_at > now)
                else {
                    return Ok((None, Vec::new()));
                };
                let gone = match &holds {
                    Some(held) => version_gone(conn, held).await?,
                    None => None,
                };
                let why = if refused || gone.is_some() {
                    "refused"
                } else {
                    "used"
                };
                spend(conn, &record, why, now).await?;
                let events = events_for(&record, gone);
                Ok((Some((record, gone)), events))
            })
        })
        .await
    }
}
