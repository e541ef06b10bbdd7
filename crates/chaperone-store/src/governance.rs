//! Governance records (agreements, evidence, policy documents and acknowledgements, level
//! policies, access requests, review campaigns, vendor status history, notifications),
//! sealed documents, and [`Store::apply`]: several changes to them, to grants, vendors and
//! people, committed together with their ledger entries or not at all.
//!
//! A record is a JSON body under `(kind, id)` with an `owner` (the vendor, person, request
//! or campaign it belongs to) that queries select on. The server owns the bodies' shapes;
//! the store only keeps them and guards concurrent updates with a revision number: an
//! update names the revision it read, and a stale update fails with
//! [`StoreError::Conflict`] instead of overwriting someone else's change (two approvers
//! approving at once both count, neither is lost).

use chaperone_core::Timestamp;
use chaperone_core::policy::GrantTerms;
use chaperone_ledger::entry::Event;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::conn::Conn;

use crate::identity::{GrantRecord, VendorRecord, insert_grant};
use crate::{Store, StoreError, db};

/// One governance record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// What it is (`agreement`, `evidence`, `request`, ...).
    pub kind: String,
    /// Its identifier, unique within its kind.
    pub id: String,
    /// What it belongs to (a vendor, person, request or campaign id).
    pub owner: Option<String>,
    /// Its content.
    pub body: serde_json::Value,
    /// Incremented by every update; 1 for a new record.
    pub revision: i64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A sealed document (a signed agreement, an audit report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentRecord {
    /// Its identifier.
    pub id: String,
    /// The record it is attached to.
    pub owner: String,
    /// The uploaded file name.
    pub name: String,
    /// The media type given at upload.
    pub media_type: String,
    /// The plaintext's size in bytes.
    pub size: i64,
    /// The plaintext's SHA-256, lowercase hex.
    pub sha256: String,
    /// The content, sealed by the caller under the keyring.
    pub sealed: Vec<u8>,
    /// When it was uploaded.
    pub created_at: Timestamp,
}

/// One change within [`Store::apply`].
#[derive(Clone, Debug)]
pub enum Op {
    /// Creates `record` (which must not exist yet) or, when `record.revision` is above 1,
    /// replaces the revision before it.
    Put(Record),
    /// Adds a grant.
    InsertGrant(GrantRecord),
    /// Revokes an unrevoked grant; a grant already revoked is left as it is.
    RevokeGrant {
        /// The grant.
        id: String,
        /// When.
        at: Timestamp,
    },
    /// Moves an unrevoked grant's expiry, with what the extension was approved with; a
    /// grant that ended before `at` is not brought back (conflict).
    ExtendGrant {
        /// The grant.
        id: String,
        /// When the extension was approved.
        at: Timestamp,
        /// The new expiry.
        expires_at: Timestamp,
        /// The extension's approvals and length.
        terms: GrantTerms,
    },
    /// Revokes every unrevoked grant of a person, including one made after the caller last
    /// read them (a break-glass grant or an approval committed meanwhile).
    RevokeGrantsOf {
        /// The person.
        person_id: String,
        /// When.
        at: Timestamp,
    },
    /// Marks a break-glass grant as reviewed.
    ReviewGrant {
        /// The grant.
        id: String,
        /// When.
        at: Timestamp,
        /// By whom.
        by: String,
    },
    /// Replaces a vendor's status, allowlist and profile, provided its status is still
    /// `previous_status` (a change made on a stale read, say a profile edit racing a
    /// suspension, fails instead of reinstating the vendor).
    UpdateVendor {
        /// The vendor as it should be.
        vendor: VendorRecord,
        /// The status the change was decided on.
        previous_status: String,
        /// The vendor's `updated_at` as read: a change made meanwhile (another edit of its
        /// profile or allowlist) fails the update instead of being overwritten.
        previous_updated_at: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// Disables an enabled account.
    DisablePerson {
        /// The person.
        id: String,
        /// When.
        at: Timestamp,
    },
    /// Disables an account found lapsed, only if it is still as it was found: enabled, with
    /// the end date `ends_at`; otherwise the change fails with [`StoreError::Conflict`]. So
    /// two nodes' sweeps disable it once, and a sweep that read the account before an admin
    /// enabled it again with a later end does not disable it again.
    DisableLapsed {
        /// The person.
        id: String,
        /// When.
        at: Timestamp,
        /// The end date the sweep read.
        ends_at: Option<Timestamp>,
    },
    /// Stores a document.
    PutDocument(DocumentRecord),
    /// Destroys a share link's content (if not destroyed yet), recording why.
    DestroyShare {
        /// The share.
        id: String,
        /// Why (`revoked`, `expired`, ...).
        why: String,
        /// When.
        at: Timestamp,
    },
    /// Revokes every unrevoked token (sessions and API tokens) of a person and deletes the
    /// answers they wrapped and nobody unwrapped yet.
    RevokeTokensOf {
        /// The person.
        person_id: String,
        /// When.
        at: Timestamp,
    },
    /// Clears an enabled person's password, TOTP secret and recovery codes, ends their
    /// unused enrolment codes and adds a new one (hashed), so they enrol again; a disabled
    /// account fails the change ([`StoreError::Conflict`]). Their tokens are revoked with
    /// [`Op::RevokeTokensOf`] in the same change.
    ResetCredentials {
        /// The person.
        person_id: String,
        /// The new enrolment code's SHA-256.
        code_hash: [u8; 32],
        /// When the new code expires.
        expires_at: Timestamp,
        /// When.
        at: Timestamp,
        /// Who reset it (a person id; `None` for the initial admin token).
        by: Option<String>,
        /// Fails the change when the person holds a grant unrevoked and unexpired at `at`.
        refuse_if_granted: bool,
    },
    /// Forgets the failed attempts counted against these lockout subjects.
    ForgetFailures(Vec<String>),
    /// Forgets the networks the account of this lockout subject logged in from.
    ForgetLoginNetworks(String),
    /// Fails the change ([`StoreError::Conflict`]) unless the token is live: what a request
    /// authenticated by it adds is not stored after the token was revoked (by a reset, a
    /// disable) in a change that committed meanwhile.
    RequireLiveToken(String),
    /// Sets these top-level fields in the body of every record of `kind` and `owner` whose
    /// `field` is `equals` as the change runs (a new revision of each, updated `at`): what a
    /// change must close includes records added after its caller read them (a request filed
    /// while an account is disabled), which a list read beforehand would miss.
    ReviseRecordsWhere {
        /// The records' kind.
        kind: String,
        /// Their owner.
        owner: String,
        /// The body field looked at.
        field: String,
        /// The value it must hold.
        equals: serde_json::Value,
        /// The fields to set.
        set: serde_json::Map<String, serde_json::Value>,
        /// When.
        at: Timestamp,
    },
    /// Sets or clears a person's end date.
    SetPersonEnd {
        /// The person.
        id: String,
        /// The end date.
        ends_at: Option<Timestamp>,
    },
}

const RECORD_COLUMNS: &str = "kind, id, owner, body, revision, created_at, updated_at";

fn record_from_row(row: &AnyRow) -> Result<Record, StoreError> {
    let read = || -> Result<Record, sqlx::Error> {
        Ok(Record {
            kind: row.try_get("kind")?,
            id: row.try_get("id")?,
            owner: row.try_get("owner")?,
            body: serde_json::from_str(&row.try_get::<String, _>("body")?)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            revision: row.try_get("revision")?,
            created_at: Timestamp::from_unix_nanos(row.try_get("created_at")?),
            updated_at: Timestamp::from_unix_nanos(row.try_get("updated_at")?),
        })
    };
    read().map_err(|e| StoreError::Corrupt(format!("governance record: {e}")))
}

impl Store {
    /// Applies `ops` in order and records `events`, in one transaction: all of it or none.
    /// A stale [`Op::Put`] fails the whole change with [`StoreError::Conflict`].
    pub async fn apply(&self, ops: Vec<Op>, events: Vec<Event>) -> Result<(), StoreError> {
        self.change(move |conn| {
            Box::pin(async move {
                for op in &ops {
                    apply_one(conn, op).await?;
                }
                Ok(((), events))
            })
        })
        .await
    }

    /// The record `kind`/`id`.
    pub async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE kind = $1 AND id = $2"
        ))
        .bind(kind)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a governance record"))?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Records of `kind`, those of `owner` only when given, oldest first.
    pub async fn records(
        &self,
        kind: &str,
        owner: Option<&str>,
    ) -> Result<Vec<Record>, StoreError> {
        let rows =
            match owner {
                Some(owner) => {
                    sqlx::query(&format!(
                        "SELECT {RECORD_COLUMNS} FROM records WHERE kind = $1 AND owner = $2 \
                 ORDER BY created_at, id"
                    ))
                    .bind(kind)
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await
                }
                None => sqlx::query(&format!(
                    "SELECT {RECORD_COLUMNS} FROM records WHERE kind = $1 ORDER BY created_at, id"
                ))
                .bind(kind)
                .fetch_all(&self.pool)
                .await,
            }
            .map_err(db("reading governance records"))?;
        rows.iter().map(record_from_row).collect()
    }

    /// The document `id`.
    pub async fn document(&self, id: &str) -> Result<Option<DocumentRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, owner, name, media_type, size, sha256, sealed, created_at \
             FROM documents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a document"))?;
        row.map(|row| {
            let read = || -> Result<DocumentRecord, sqlx::Error> {
                Ok(DocumentRecord {
                    id: row.try_get("id")?,
                    owner: row.try_get("owner")?,
                    name: row.try_get("name")?,
                    media_type: row.try_get("media_type")?,
                    size: row.try_get("size")?,
                    sha256: row.try_get("sha256")?,
                    sealed: row.try_get("sealed")?,
                    created_at: Timestamp::from_unix_nanos(row.try_get("created_at")?),
                })
            };
            read().map_err(|e| StoreError::Corrupt(format!("document row: {e}")))
        })
        .transpose()
    }
}

async fn apply_one(conn: &mut Conn<'_>, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::Put(record) if record.revision <= 1 => {
            let inserted = sqlx::query(
                "INSERT INTO records (kind, id, owner, body, revision, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 1, $5, $6) ON CONFLICT (kind, id) DO NOTHING",
            )
            .bind(&record.kind)
            .bind(&record.id)
            .bind(&record.owner)
            .bind(record.body.to_string())
            .bind(record.created_at.unix_nanos())
            .bind(record.updated_at.unix_nanos())
            .execute(&mut *conn)
            .await
            .map_err(db("adding a governance record"))?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "{} `{}` already exists",
                    record.kind, record.id
                )));
            }
        }
        Op::Put(record) => {
            let updated = sqlx::query(
                "UPDATE records SET owner = $3, body = $4, revision = $5, updated_at = $6 \
                 WHERE kind = $1 AND id = $2 AND revision = $7",
            )
            .bind(&record.kind)
            .bind(&record.id)
            .bind(&record.owner)
            .bind(record.body.to_string())
            .bind(record.revision)
            .bind(record.updated_at.unix_nanos())
            .bind(record.revision - 1)
            .execute(&mut *conn)
            .await
            .map_err(db("updating a governance record"))?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::Conflict(format!(
                    "{} `{}` was changed by someone else; read it again",
                    record.kind, record.id
                )));
            }
        }
        Op::InsertGrant(grant) => insert_grant(conn, grant).await?,
        Op::RevokeGrant { id, at } => {
            sqlx::query("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(at.unix_nanos())
                .execute(&mut *conn)
                .await
                .map_err(db("revoking a grant"))?;
        }
        Op::RevokeGrantsOf { person_id, at } => {
            sqlx::query(
                "UPDATE grants SET revoked_at = $2 WHERE person_id = $1 AND revoked_at IS NULL",
            )
            .bind(person_id)
            .bind(at.unix_nanos())
            .execute(&mut *conn)
            .await
            .map_err(db("revoking a person's grants"))?;
        }
        Op::ExtendGrant {
            id,
            at,
            expires_at,
            terms,
        } => {
            let changed = sqlx::query(
                "UPDATE grants SET expires_at = $2, approvals = $3, term_secs = $4 \
                 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $5",
            )
            .bind(id)
            .bind(expires_at.unix_nanos())
            .bind(i64::from(terms.approvals))
            .bind(terms.secs)
            .bind(at.unix_nanos())
            .execute(&mut *conn)
            .await
            .map_err(db("extending a grant"))?
            .rows_affected();
            if changed == 0 {
                return Err(StoreError::Conflict(format!(
                    "grant `{id}` was revoked or has ended"
                )));
            }
        }
        Op::ReviewGrant { id, at, by } => {
            let changed = sqlx::query(
                "UPDATE grants SET reviewed_at = $2, reviewed_by = $3 \
                 WHERE id = $1 AND break_glass = 1 AND reviewed_at IS NULL",
            )
            .bind(id)
            .bind(at.unix_nanos())
            .bind(by)
            .execute(&mut *conn)
            .await
            .map_err(db("reviewing a grant"))?
            .rows_affected();
            if changed == 0 {
                return Err(StoreError::Conflict(format!(
                    "grant `{id}` is not a break-glass grant awaiting review"
                )));
            }
        }
        Op::UpdateVendor {
            vendor,
            previous_status,
            previous_updated_at,
            at,
        } => {
            // Always later than the time it was decided on, so that the next update's
            // comparison tells the two apart even within one clock tick.
            let updated_at = at.unix_nanos().max(previous_updated_at.unix_nanos() + 1);
            let changed = sqlx::query(
                "UPDATE vendors SET status = $2, allowed_networks = $3, profile = $4, \
                 updated_at = $5 WHERE id = $1 AND status = $6 AND updated_at = $7",
            )
            .bind(&vendor.id)
            .bind(&vendor.status)
            .bind(serde_json::to_string(&vendor.allowed_networks).expect("strings serialise"))
            .bind(vendor.profile.to_string())
            .bind(updated_at)
            .bind(previous_status)
            .bind(previous_updated_at.unix_nanos())
            .execute(&mut *conn)
            .await
            .map_err(db("updating a vendor"))?
            .rows_affected();
            if changed == 0 {
                return Err(StoreError::Conflict(format!(
                    "vendor `{}` does not exist or changed meanwhile; read it again",
                    vendor.id
                )));
            }
        }
        Op::DisablePerson { id, at } => {
            sqlx::query("UPDATE people SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL")
                .bind(id)
                .bind(at.unix_nanos())
                .execute(&mut *conn)
                .await
                .map_err(db("disabling a person"))?;
            crate::identity::end_enrolments(conn, id, *at).await?;
        }
        Op::DisableLapsed { id, at, ends_at } => {
            let changed = sqlx::query(
                "UPDATE people SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL \
                 AND ends_at IS NOT DISTINCT FROM $3",
            )
            .bind(id)
            .bind(at.unix_nanos())
            .bind(ends_at.map(Timestamp::unix_nanos))
            .execute(&mut *conn)
            .await
            .map_err(db("disabling a lapsed account"))?
            .rows_affected();
            if changed == 0 {
                return Err(StoreError::Conflict(format!(
                    "person `{id}` changed since it was found lapsed"
                )));
            }
            crate::identity::end_enrolments(conn, id, *at).await?;
        }
        Op::DestroyShare { id, why, at } => {
            crate::shares::destroy(conn, id, why, *at).await?;
        }
        Op::RevokeTokensOf { person_id, at } => {
            sqlx::query(
                "UPDATE tokens SET revoked_at = $2 WHERE person_id = $1 AND revoked_at IS NULL",
            )
            .bind(person_id)
            .bind(at.unix_nanos())
            .execute(&mut *conn)
            .await
            .map_err(db("revoking a person's tokens"))?;
            // Answers the person wrapped are tokens of theirs too: an unwrap racing this
            // change either took its answer before it or finds nothing after it.
            crate::wrapping::revoke_wrapped_by(conn, person_id, *at).await?;
        }
        Op::ResetCredentials {
            person_id,
            code_hash,
            expires_at,
            at,
            by,
            refuse_if_granted,
        } => {
            if *refuse_if_granted {
                let granted = sqlx::query(
                    "SELECT id FROM grants WHERE person_id = $1 AND revoked_at IS NULL \
                     AND expires_at > $2",
                )
                .bind(person_id)
                .bind(at.unix_nanos())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading a person's grants"))?
                .is_some();
                if granted {
                    return Err(StoreError::Conflict(format!(
                        "person `{person_id}` holds a grant"
                    )));
                }
            }
            crate::identity::reset_credentials(
                conn,
                person_id,
                code_hash,
                *expires_at,
                *at,
                by.as_deref(),
            )
            .await?;
        }
        Op::ForgetFailures(subjects) => {
            crate::identity::forget_failures(conn, subjects).await?;
        }
        Op::ForgetLoginNetworks(subject) => {
            crate::identity::forget_login_networks(conn, subject).await?;
        }
        Op::RequireLiveToken(id) => {
            if !crate::keyring::token_live(conn, id).await? {
                return Err(StoreError::Conflict(
                    "the token that asked is revoked".into(),
                ));
            }
        }
        Op::ReviseRecordsWhere {
            kind,
            owner,
            field,
            equals,
            set,
            at,
        } => {
            let rows = sqlx::query(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE kind = $1 AND owner = $2"
            ))
            .bind(kind)
            .bind(owner)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("reading governance records"))?;
            for row in &rows {
                let mut record = record_from_row(row)?;
                let serde_json::Value::Object(body) = &mut record.body else {
                    continue;
                };
                if body.get(field) != Some(equals) {
                    continue;
                }
                body.extend(set.clone());
                sqlx::query(
                    "UPDATE records SET body = $3, revision = revision + 1, updated_at = $4 \
                     WHERE kind = $1 AND id = $2",
                )
                .bind(&record.kind)
                .bind(&record.id)
                .bind(record.body.to_string())
                .bind(at.unix_nanos())
                .execute(&mut *conn)
                .await
                .map_err(db("updating a governance record"))?;
            }
        }
        Op::SetPersonEnd { id, ends_at } => {
            let changed = sqlx::query("UPDATE people SET ends_at = $2 WHERE id = $1")
                .bind(id)
                .bind(ends_at.map(Timestamp::unix_nanos))
                .execute(&mut *conn)
                .await
                .map_err(db("setting an end date"))?
                .rows_affected();
            if changed == 0 {
                return Err(StoreError::Conflict(format!(
                    "person `{id}` does not exist"
                )));
            }
        }
        Op::PutDocument(doc) => {
            crate::keys::sealed_under_current(conn, &doc.sealed).await?;
            sqlx::query(
                "INSERT INTO documents (id, owner, name, media_type, size, sha256, sealed, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&doc.id)
            .bind(&doc.owner)
            .bind(&doc.name)
            .bind(&doc.media_type)
            .bind(doc.size)
            .bind(&doc.sha256)
            .bind(&doc.sealed)
            .bind(doc.created_at.unix_nanos())
            .execute(&mut *conn)
            .await
            .map_err(db("storing a document"))?;
        }
    }
    Ok(())
}
