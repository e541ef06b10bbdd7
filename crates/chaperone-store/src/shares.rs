//! One-time share links. The store keeps ciphertext it cannot open (the key lives only in
//! the link's URL fragment) and the rules around it: expiry, views left, an optional
//! passphrase hash and recipient. Content that is used up, expired or revoked is destroyed
//! (set to NULL) in the same transaction that decides so.

use chaperone_core::Timestamp;
use chaperone_ledger::entry::Event;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, db};

/// A share link, without its content. Its `Debug` leaves out the passphrase's hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareRecord {
    /// The link's id (in its path).
    pub id: String,
    /// Who made it (a person id, or `root`).
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// How many opens it allows.
    pub max_views: i64,
    /// How many opens it had.
    pub views: i64,
    /// Argon2id PHC string of the passphrase, if one is required.
    pub passphrase_hash: Option<String>,
    /// SHA-256 (hex) of the proof that a client holds the link's key.
    pub proof_hash: String,
    /// The only person who may open it, if restricted.
    pub restricted_to: Option<String>,
    /// What it is, for lists (never the content).
    pub label: String,
    /// The ciphertext's size in bytes.
    pub size: i64,
    /// Whether the ciphertext is stored (uploaded and not yet destroyed).
    pub has_content: bool,
    /// When the content was destroyed, and why (`used`, `expired`, `revoked`).
    pub destroyed: Option<(Timestamp, String)>,
}

impl std::fmt::Debug for ShareRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareRecord")
            .field("id", &self.id)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("max_views", &self.max_views)
            .field("views", &self.views)
            .field("passphrase", &self.passphrase_hash.is_some())
            .field("restricted_to", &self.restricted_to)
            .field("label", &self.label)
            .field("size", &self.size)
            .field("has_content", &self.has_content)
            .field("destroyed", &self.destroyed)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, created_by, created_at, expires_at, max_views, views, \
     passphrase_hash, proof_hash, restricted_to, label, size, \
     content IS NOT NULL AS has_content, \
     destroyed_at, destroyed_why";

fn from_row(row: &AnyRow) -> Result<ShareRecord, StoreError> {
    let read = || -> Result<ShareRecord, sqlx::Error> {
        let destroyed_at: Option<i64> = row.try_get("destroyed_at")?;
        let why: Option<String> = row.try_get("destroyed_why")?;
        // SQLite answers a boolean expression as an integer, PostgreSQL as a boolean.
        let has_content = row
            .try_get::<bool, _>("has_content")
            .or_else(|_| row.try_get::<i64, _>("has_content").map(|n| n != 0))?;
        Ok(ShareRecord {
            id: row.try_get("id")?,
            created_by: row.try_get("created_by")?,
            created_at: Timestamp::from_unix_nanos(row.try_get("created_at")?),
            expires_at: Timestamp::from_unix_nanos(row.try_get("expires_at")?),
            max_views: row.try_get("max_views")?,
            views: row.try_get("views")?,
            passphrase_hash: row.try_get("passphrase_hash")?,
            proof_hash: row.try_get("proof_hash")?,
            restricted_to: row.try_get("restricted_to")?,
            label: row.try_get("label")?,
            size: row.try_get("size")?,
            has_content,
            destroyed: destroyed_at
                .map(|at| (Timestamp::from_unix_nanos(at), why.unwrap_or_default())),
        })
    };
    read().map_err(|e| StoreError::Corrupt(format!("share row: {e}")))
}

/// The outcome of [`Store::open_share`].
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The ciphertext; `last` when this open used up the share (its content is gone now).
    Content {
        /// The ciphertext.
        ciphertext: Vec<u8>,
        /// Whether no views are left.
        last: bool,
    },
    /// Nothing to open: unknown, used up, revoked or not yet uploaded.
    Gone,
    /// Past its expiry, with its content still there: the caller destroys it and records
    /// that (`share.expire`), as the sweep does.
    Expired,
}

/// How the conflict of a share over its creator's quota begins (see [`Store::insert_share`]).
pub const SHARE_QUOTA: &str = "live shares would hold more than the limit";

impl Store {
    /// Adds a share without content, recording `events` with it, made by the token
    /// `made_with`, which must still be live. With `limit`, fails with
    /// [`StoreError::Conflict`] (starting [`SHARE_QUOTA`]) when its creator's live shares
    /// (not destroyed, not expired at its creation) would hold more than `limit` bytes with
    /// it: checked in the change, so concurrent creations cannot pass it together.
    pub async fn insert_share(
        &self,
        share: &ShareRecord,
        limit: Option<i64>,
        made_with: &str,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (share, events, made_with) = (share.clone(), events.to_vec(), made_with.to_owned());
        self.change(move |conn| {
            Box::pin(async move {
                // Stored only while the token that asked for it is live: a disable, a reset
                // or an offboarding that revoked it (and ended the links it saw) leaves none
                // made after it.
                if !crate::keyring::token_live(conn, &made_with).await? {
                    return Err(StoreError::Conflict(
                        "the token that asked for it is revoked".into(),
                    ));
                }
                if let Some(limit) = limit {
                    let kept: i64 = sqlx::query_scalar(
                        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM shares \
                         WHERE created_by = $1 AND destroyed_at IS NULL AND expires_at > $2",
                    )
                    .bind(&share.created_by)
                    .bind(share.created_at.unix_nanos())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db("reading the size of live shares"))?;
                    if kept.saturating_add(share.size) > limit {
                        return Err(StoreError::Conflict(format!(
                            "{SHARE_QUOTA} ({limit} bytes)"
                        )));
                    }
                }
                sqlx::query(
                    "INSERT INTO shares (id, created_by, created_at, expires_at, max_views, \
                     views, passphrase_hash, restricted_to, label, size, proof_hash) \
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10)",
                )
                .bind(&share.id)
                .bind(&share.created_by)
                .bind(share.created_at.unix_nanos())
                .bind(share.expires_at.unix_nanos())
                .bind(share.max_views)
                .bind(&share.passphrase_hash)
                .bind(&share.restricted_to)
                .bind(&share.label)
                .bind(share.size)
                .bind(&share.proof_hash)
                .execute(&mut *conn)
                .await
                .map_err(db("adding a share"))?;
                Ok(((), events))
            })
        })
        .await
    }

    /// The share `id`.
    pub async fn share(&self, id: &str) -> Result<Option<ShareRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM shares WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a share"))?;
        row.as_ref().map(from_row).transpose()
    }

    /// Shares made by `created_by`, or all of them; newest first.
    pub async fn shares(&self, created_by: Option<&str>) -> Result<Vec<ShareRecord>, StoreError> {
        let rows =
            match created_by {
                Some(who) => sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM shares WHERE created_by = $1 ORDER BY created_at DESC"
                ))
                .bind(who)
                .fetch_all(&self.pool)
                .await,
                None => {
                    sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM shares ORDER BY created_at DESC"
                    ))
                    .fetch_all(&self.pool)
                    .await
                }
            }
            .map_err(db("listing shares"))?;
        rows.iter().map(from_row).collect()
    }

    /// Stores a share's ciphertext and the hash of its key proof, once, if it has the size
    /// announced. `false` (and nothing recorded) otherwise.
    pub async fn put_share_content(
        &self,
        id: &str,
        ciphertext: Vec<u8>,
        proof_hash: &str,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (id, proof_hash, events) = (id.to_owned(), proof_hash.to_owned(), events.to_vec());
        let size = i64::try_from(ciphertext.len()).unwrap_or(i64::MAX);
        self.change(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE shares SET content = $2, proof_hash = $4 WHERE id = $1 \
                     AND content IS NULL AND destroyed_at IS NULL AND views = 0 AND size = $3",
                )
                .bind(&id)
                .bind(&ciphertext)
                .bind(size)
                .bind(&proof_hash)
                .execute(&mut *conn)
                .await
                .map_err(db("storing a share"))?
                .rows_affected()
                    > 0;
                Ok((changed, if changed { events } else { Vec::new() }))
            })
        })
        .await
    }

    /// Takes one view of a share at `now`: its ciphertext, destroyed with the last view. An
    /// expired share is left as it is ([`Opened::Expired`]). `events` are recorded only when
    /// content is returned.
    pub async fn open_share(
        &self,
        id: &str,
        now: Timestamp,
        events: &[Event],
    ) -> Result<Opened, StoreError> {
        let (id, events) = (id.to_owned(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(
                    "SELECT content, views, max_views, expires_at FROM shares \
                     WHERE id = $1 AND content IS NOT NULL",
                )
                .bind(&id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("opening a share"))?;
                let Some(row) = row else {
                    return Ok((Opened::Gone, Vec::new()));
                };
                let read = || -> Result<(Vec<u8>, i64, i64, i64), sqlx::Error> {
                    Ok((
                        row.try_get("content")?,
                        row.try_get("views")?,
                        row.try_get("max_views")?,
                        row.try_get("expires_at")?,
                    ))
                };
                let (content, views, max_views, expires_at) =
                    read().map_err(|e| StoreError::Corrupt(format!("share row: {e}")))?;
                if expires_at <= now.unix_nanos() {
                    return Ok((Opened::Expired, Vec::new()));
                }
                let last = views + 1 >= max_views;
                let changed = sqlx::query(
                    "UPDATE shares SET views = views + 1, \
                     content = CASE WHEN $3 THEN NULL ELSE content END, \
                     destroyed_at = CASE WHEN $3 THEN $4 ELSE destroyed_at END, \
                     destroyed_why = CASE WHEN $3 THEN 'used' ELSE destroyed_why END \
                     WHERE id = $1 AND views = $2 AND content IS NOT NULL",
                )
                .bind(&id)
                .bind(views)
                .bind(last)
                .bind(now.unix_nanos())
                .execute(&mut *conn)
                .await
                .map_err(db("opening a share"))?
                .rows_affected();
                if changed == 0 {
                    // Another open took this view first.
                    return Ok((Opened::Gone, Vec::new()));
                }
                Ok((
                    Opened::Content {
                        ciphertext: content,
                        last,
                    },
                    events,
                ))
            })
        })
        .await
    }

    /// Destroys a share's content now (`why`: `revoked`, `expired`). `false` (and nothing
    /// recorded) when there was nothing left to destroy.
    pub async fn destroy_share(
        &self,
        id: &str,
        why: &str,
        now: Timestamp,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (id, why, events) = (id.to_owned(), why.to_owned(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                let changed = destroy(conn, &id, &why, now).await?;
                Ok((changed, if changed { events } else { Vec::new() }))
            })
        })
        .await
    }

    /// Ids of shares past their expiry whose content is still stored.
    pub async fn expired_shares(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM shares WHERE expires_at <= $1 AND destroyed_at IS NULL ORDER BY id",
        )
        .bind(now.unix_nanos())
        .fetch_all(&self.pool)
        .await
        .map_err(db("finding expired shares"))
    }
}

pub(crate) async fn destroy(
    conn: &mut crate::conn::Conn<'_>,
    id: &str,
    why: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE shares SET content = NULL, destroyed_at = $2, destroyed_why = $3 \
         WHERE id = $1 AND destroyed_at IS NULL",
    )
    .bind(id)
    .bind(now.unix_nanos())
    .bind(why)
    .execute(&mut *conn)
    .await
    .map_err(db("destroying a share"))?
    .rows_affected()
        > 0)
}
