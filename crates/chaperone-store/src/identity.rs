//! People, vendors, enrolment codes, recovery codes, grants, path classifications and failed
//! authentication attempts.
//!
//! Secrets among them are stored only in protected form: passwords as Argon2id PHC strings,
//! TOTP secrets encrypted by the caller, enrolment and recovery codes as SHA-256.
//!
//! Every state change takes the ledger events that describe it and commits them in the same
//! transaction (see [`Store::change`]); a change that did not happen (an unknown id, a used
//! code) records nothing. Failed-attempt counters, TOTP steps and recovery codes are
//! bookkeeping of the login that uses them, which the login's own entry records.

use chaperone_core::Timestamp;
use chaperone_core::policy::GrantTerms;
use chaperone_ledger::entry::Event;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::conn::Conn;

use crate::{Store, StoreError, db, db_unique};

/// A vendor.
#[derive(Clone, Debug, PartialEq)]
pub struct VendorRecord {
    /// Public identifier.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Lifecycle status, e.g. `active`, `suspended`, `terminated`.
    pub status: String,
    /// CIDR allowlist for all of the vendor's people; empty means no restriction.
    pub allowed_networks: Vec<String>,
    /// Everything else the server keeps about the vendor (legal name, contacts, owner,
    /// criticality, locations, sub-processors), as a JSON object.
    pub profile: serde_json::Value,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it last changed: an update names the one it was decided on, and fails if the
    /// vendor changed since ([`crate::Op::UpdateVendor`]).
    pub updated_at: Timestamp,
}

/// A person. Its `Debug` leaves out the password hash and the TOTP secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonRecord {
    /// Public identifier.
    pub id: String,
    /// Unique login name.
    pub name: String,
    /// Contact address.
    pub email: Option<String>,
    /// Role name.
    pub role: String,
    /// The vendor the person belongs to, for contractors.
    pub vendor_id: Option<String>,
    /// When the account was disabled.
    pub disabled_at: Option<Timestamp>,
    /// Argon2id PHC string, once enrolled.
    pub password_hash: Option<String>,
    /// The TOTP secret, encrypted by the caller, once enrolled.
    pub totp_secret: Option<Vec<u8>>,
    /// The last TOTP step accepted (codes are accepted once).
    pub totp_last_step: Option<i64>,
    /// CIDR allowlist; empty means no restriction.
    pub allowed_networks: Vec<String>,
    /// When the person was added.
    pub created_at: Timestamp,
    /// The account's own end date, past which it acts no more.
    pub ends_at: Option<Timestamp>,
    /// The person who created the account; `None` for the initial admin token.
    pub created_by: Option<String>,
    /// The person who last reset the account's credentials, and so was handed its current
    /// enrolment code; `None` when never reset (or by the initial admin token).
    pub reset_by: Option<String>,
}

impl std::fmt::Debug for PersonRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |present: bool| if present { "<set>" } else { "<none>" };
        f.debug_struct("PersonRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("vendor_id", &self.vendor_id)
            .field("disabled_at", &self.disabled_at)
            .field("password_hash", &set(self.password_hash.is_some()))
            .field("totp_secret", &set(self.totp_secret.is_some()))
            .field("totp_last_step", &self.totp_last_step)
            .field("allowed_networks", &self.allowed_networks)
            .field("created_at", &self.created_at)
            .field("ends_at", &self.ends_at)
            .field("created_by", &self.created_by)
            .finish()
    }
}

/// A grant: capabilities on a path prefix until a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    /// Public identifier.
    pub id: String,
    /// Who holds it.
    pub person_id: String,
    /// Paths it covers.
    pub prefix: String,
    /// Capability names (`read`, `write`, ...).
    pub capabilities: Vec<String>,
    /// When it ends.
    pub expires_at: Timestamp,
    /// When it was made.
    pub created_at: Timestamp,
    /// Who made it (a person or token id).
    pub created_by: String,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// The access request whose approval made it.
    pub request_id: Option<String>,
    /// Made at once by an admin without approval; flagged for review.
    pub break_glass: bool,
    /// Why it was made (mandatory for break-glass).
    pub reason: Option<String>,
    /// When a break-glass grant was reviewed, and by whom.
    pub reviewed: Option<(Timestamp, String)>,
    /// What the grant (or its latest extension) was approved with; `None` for break-glass
    /// grants and grants made before this was kept. The policy holds the grant to it at
    /// every request (`PathRule::terms`).
    pub terms: Option<GrantTerms>,
}

const VENDOR_COLUMNS: &str = "id, name, status, allowed_networks, profile, created_at, updated_at";

fn vendor_from_row(row: &AnyRow) -> Result<VendorRecord, StoreError> {
    let read = || -> Result<VendorRecord, sqlx::Error> {
        Ok(VendorRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            status: row.try_get("status")?,
            allowed_networks: parse_list(&row.try_get::<String, _>("allowed_networks")?)?,
            profile: serde_json::from_str(&row.try_get::<String, _>("profile")?)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            created_at: Timestamp::from_unix_nanos(row.try_get("created_at")?),
            updated_at: Timestamp::from_unix_nanos(row.try_get("updated_at")?),
        })
    };
    read().map_err(|e| StoreError::Corrupt(format!("vendor row: {e}")))
}

const GRANT_COLUMNS: &str = "id, person_id, prefix, capabilities, expires_at, created_at, \
     created_by, revoked_at, request_id, break_glass, reason, reviewed_at, reviewed_by, \
     approvals, term_secs";

pub(crate) fn grant_from_row(row: &AnyRow) -> Result<GrantRecord, StoreError> {
    let read = || -> Result<GrantRecord, sqlx::Error> {
        let reviewed_at: Option<i64> = row.try_get("reviewed_at")?;
        let reviewed_by: Option<String> = row.try_get("reviewed_by")?;
        Ok(GrantRecord {
            id: row.try_get("id")?,
            person_id: row.try_get("person_id")?,
            prefix: row.try_get("prefix")?,
            capabilities: parse_list(&row.try_get::<String, _>("capabilities")?)?,
            expires_at: Timestamp::from_unix_nanos(row.try_get("expires_at")?),
            created_at: Timestamp::from_unix_nanos(row.try_get("created_at")?),
            created_by: row.try_get("created_by")?,
            revoked_at: row
                .try_get::<Option<i64>, _>("revoked_at")?
                .map(Timestamp::from_unix_nanos),
            request_id: row.try_get("request_id")?,
            break_glass: row.try_get::<i64, _>("break_glass")? != 0,
            reason: row.try_get("reason")?,
            reviewed: reviewed_at
                .zip(reviewed_by)
                .map(|(at, by)| (Timestamp::from_unix_nanos(at), by)),
            terms: match (
                row.try_get::<Option<i64>, _>("approvals")?,
                row.try_get::<Option<i64>, _>("term_secs")?,
            ) {
                (Some(approvals), Some(secs)) => Some(GrantTerms {
                    approvals: u32::try_from(approvals)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    secs,
                }),
                _ => None,
            },
        })
    };
    read().map_err(|e| StoreError::Corrupt(format!("grant row: {e}")))
}

const PERSON_COLUMNS: &str = "id, name, email, role, vendor_id, disabled_at, password_hash, \
     totp_secret, totp_last_step, allowed_networks, created_at, ends_at, created_by, reset_by";

impl Store {
    /// Adds a vendor, recording `events` with it.
    pub async fn insert_vendor(
        &self,
        vendor: &VendorRecord,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (vendor, events) = (vendor.clone(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO vendors (id, name, status, allowed_networks, created_at, \
                     updated_at, profile) VALUES ($1, $2, $3, $4, $5, $5, $6)",
                )
                .bind(&vendor.id)
                .bind(&vendor.name)
                .bind(&vendor.status)
                .bind(json_list(&vendor.allowed_networks))
                .bind(vendor.created_at.unix_nanos())
                .bind(vendor.profile.to_string())
                .execute(&mut *conn)
                .await
                .map_err(db_unique(
                    "adding a vendor",
                    format!("vendor `{}` already exists", vendor.name),
                ))?;
                Ok(((), events))
            })
        })
        .await
    }

    /// The vendor with this id or name. Kept in memory on SQLite while nothing but secrets
    /// changes (see [`Store::access_generation`]).
    pub async fn vendor(&self, id_or_name: &str) -> Result<Option<VendorRecord>, StoreError> {
        let read = async {
            let row = sqlx::query(&format!(
                "SELECT {VENDOR_COLUMNS} FROM vendors WHERE id = $1 OR name = $1"
            ))
            .bind(id_or_name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a vendor"))?;
            row.as_ref().map(vendor_from_row).transpose()
        };
        self.cached(&self.cache.vendors, id_or_name.to_owned(), read)
            .await
    }

    /// Every vendor, by name.
    pub async fn vendors(&self) -> Result<Vec<VendorRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {VENDOR_COLUMNS} FROM vendors ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing vendors"))?;
        rows.iter().map(vendor_from_row).collect()
    }

    /// Adds a person together with their enrolment code (hashed), recording `events` with
    /// them.
    pub async fn insert_person(
        &self,
        person: &PersonRecord,
        enrolment_code_hash: &[u8; 32],
        enrolment_expires_at: Timestamp,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (person, code_hash, events) = (person.clone(), *enrolment_code_hash, events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                insert_person_in(conn, &person, &code_hash, enrolment_expires_at).await?;
                Ok(((), events))
            })
        })
        .await
    }

    /// The person with this id or login name.
    pub async fn person(&self, id_or_name: &str) -> Result<Option<PersonRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PERSON_COLUMNS} FROM people WHERE id = $1 OR name = $1"
        ))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a person"))?;
        row.map(|row| person_from_row(&row)).transpose()
    }

    /// The person as authorisation sees them on every request: [`Store::person`] without
    /// the password hash and the TOTP fields (`None`). Kept in memory on SQLite while
    /// nothing but secrets changes (see [`Store::access_generation`]).
    ///
    /// Security decision: credentials are not kept in a long-lived cache, and logins,
    /// which check them, read the person from the database each time.
    pub async fn acting_person(&self, id: &str) -> Result<Option<PersonRecord>, StoreError> {
        let read = async {
            Ok(self.person(id).await?.map(|person| PersonRecord {
                password_hash: None,
                totp_secret: None,
                totp_last_step: None,
                ..person
            }))
        };
        self.cached(&self.cache.people, id.to_owned(), read).await
    }

    /// Every person, by name.
    pub async fn list_people(&self) -> Result<Vec<PersonRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PERSON_COLUMNS} FROM people ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing people"))?;
        rows.iter().map(person_from_row).collect()
    }

    /// Disables (`Some(now)`) or re-enables (`None`) a person. `false` (and nothing
    /// recorded) if the person does not exist.
    pub async fn set_person_disabled(
        &self,
        id: &str,
        disabled_at: Option<Timestamp>,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (id, events) = (id.to_owned(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query("UPDATE people SET disabled_at = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(disabled_at.map(Timestamp::unix_nanos))
                    .execute(&mut *conn)
                    .await
                    .map_err(db("disabling a person"))?
                    .rows_affected()
                    > 0;
                Ok((changed, if changed { events } else { Vec::new() }))
            })
        })
        .await
    }

    /// Sets a person's network allowlist. `false` (and nothing recorded) if the person does
    /// not exist.
    pub async fn set_person_networks(
        &self,
        id: &str,
        networks: &[String],
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (id, networks, events) = (id.to_owned(), json_list(networks), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query("UPDATE people SET allowed_networks = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(&networks)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("setting networks"))?
                    .rows_affected()
                    > 0;
                Ok((changed, if changed { events } else { Vec::new() }))
            })
        })
        .await
    }

    /// The person an enrolment code was made for, whatever the code's state (used, expired),
    /// so the caller can describe the enrolment before attempting it. `None` if the code is
    /// unknown.
    pub async fn enrolment_person(
        &self,
        code_hash: &[u8; 32],
    ) -> Result<Option<PersonRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PERSON_COLUMNS} FROM people \
             WHERE id = (SELECT person_id FROM enrolments WHERE code_hash = $1)"
        ))
        .bind(code_hash.to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an enrolment"))?;
        row.map(|row| person_from_row(&row)).transpose()
    }

    /// Uses an enrolment code: if it is unused and unexpired at `now`, sets the person's
    /// password hash, encrypted TOTP secret and recovery code hashes, records `events`, and
    /// returns the person. `None` (and nothing recorded) if the code is unknown, used or
    /// expired.
    pub async fn complete_enrolment(
        &self,
        code_hash: &[u8; 32],
        now: Timestamp,
        password_hash: &str,
        seal_totp: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
        recovery_hashes: &[[u8; 32]],
        events: &[Event],
    ) -> Result<Option<PersonRecord>, StoreError> {
        let (code_hash, password_hash) = (*code_hash, password_hash.to_owned());
        let (recovery_hashes, events) = (recovery_hashes.to_vec(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                let person = complete_enrolment_in(
                    conn,
                    &code_hash,
                    now,
                    &password_hash,
                    seal_totp,
                    &recovery_hashes,
                )
                .await?;
                let events = if person.is_some() { events } else { Vec::new() };
                Ok((person, events))
            })
        })
        .await
    }

    /// Records that TOTP step `step` was used, if it is later than the last one used. `false`
    /// means the code was already used (or a later one was): reject it. Atomic, so two
    /// concurrent logins with the same code cannot both succeed.
    pub async fn accept_totp_step(&self, person_id: &str, step: i64) -> Result<bool, StoreError> {
        let person_id = person_id.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE people SET totp_last_step = $2 \
                     WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                )
                .bind(person_id)
                .bind(step)
                .execute(conn)
                .await
                .map_err(db("recording a TOTP step"))?
                .rows_affected();
                Ok(changed > 0)
            })
        })
        .await
    }

    /// Uses a recovery code once. `false` if unknown or already used.
    pub async fn use_recovery_code(
        &self,
        person_id: &str,
        code_hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (person_id, code_hash) = (person_id.to_owned(), code_hash.to_vec());
        self.write(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $3 \
                     WHERE person_id = $1 AND code_hash = $2 AND used_at IS NULL",
                )
                .bind(person_id)
                .bind(code_hash)
                .bind(now.unix_nanos())
                .execute(conn)
                .await
                .map_err(db("using a recovery code"))?
                .rows_affected();
                Ok(changed > 0)
            })
        })
        .await
    }

    /// Adds a grant, recording `events` with it.
    pub async fn insert_grant(
        &self,
        grant: &GrantRecord,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (grant, events) = (grant.clone(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                insert_grant(conn, &grant).await?;
                Ok(((), events))
            })
        })
        .await
    }

    /// Revokes a grant. `false` (and nothing recorded) if it does not exist or was already
    /// revoked.
    pub async fn revoke_grant(
        &self,
        id: &str,
        now: Timestamp,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (id, events) = (id.to_owned(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(&id)
                .bind(now.unix_nanos())
                .execute(&mut *conn)
                .await
                .map_err(db("revoking a grant"))?
                .rows_affected()
                    > 0;
                Ok((changed, if changed { events } else { Vec::new() }))
            })
        })
        .await
    }

    /// A person's unrevoked grants (expired ones included: the caller checks expiry). Kept
    /// in memory on SQLite while nothing but secrets changes (see
    /// [`Store::access_generation`]).
    pub async fn grants_of(&self, person_id: &str) -> Result<Vec<GrantRecord>, StoreError> {
        let read = async {
            let rows = sqlx::query(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE person_id = $1 AND revoked_at IS NULL \
                 ORDER BY created_at"
            ))
            .bind(person_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading grants"))?;
            rows.iter()
                .map(grant_from_row)
                .collect::<Result<_, _>>()
                .map(Some)
        };
        let grants = self.cached(&self.cache.grants, person_id.to_owned(), read);
        Ok(grants.await?.unwrap_or_default())
    }

    /// Every unrevoked grant that has not expired at `now`, oldest first.
    pub async fn active_grants(&self, now: Timestamp) -> Result<Vec<GrantRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE revoked_at IS NULL AND expires_at > $1 \
             ORDER BY created_at"
        ))
        .bind(now.unix_nanos())
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading grants"))?;
        rows.iter().map(grant_from_row).collect()
    }

    /// How many grants are in force at `now`.
    pub async fn count_active_grants(&self, now: Timestamp) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM grants WHERE revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now.unix_nanos())
        .fetch_one(&self.pool)
        .await
        .map_err(db("counting grants"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Every grant a person ever held, revoked and expired ones included, oldest first.
    pub async fn grants_ever_of(&self, person_id: &str) -> Result<Vec<GrantRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE person_id = $1 ORDER BY created_at"
        ))
        .bind(person_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading grants"))?;
        rows.iter().map(grant_from_row).collect()
    }

    /// When each person last logged in (started a session), `None` for never.
    pub async fn last_logins(&self) -> Result<Vec<(String, Option<Timestamp>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.id AS id, MAX(t.created_at) AS last FROM people p LEFT JOIN tokens t \
             ON t.person_id = p.id AND t.kind = 'session' GROUP BY p.id ORDER BY p.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading last logins"))?;
        rows.iter()
            .map(|row| {
                let read = || -> Result<(String, Option<Timestamp>), sqlx::Error> {
                    Ok((
                        row.try_get("id")?,
                        row.try_get::<Option<i64>, _>("last")?
                            .map(Timestamp::from_unix_nanos),
                    ))
                };
                read().map_err(|e| StoreError::Corrupt(format!("login row: {e}")))
            })
            .collect()
    }

    /// Break-glass grants nobody has reviewed yet, expired and revoked ones included (an
    /// emergency grant must be reviewed even after it ended).
    pub async fn unreviewed_break_glass(&self) -> Result<Vec<GrantRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE break_glass = 1 AND reviewed_at IS NULL \
             ORDER BY created_at"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading grants"))?;
        rows.iter().map(grant_from_row).collect()
    }

    /// The grant with this id, revoked or not.
    pub async fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a grant"))?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// Sets the classification level of a path prefix, recording `events` with it.
    pub async fn set_classification(
        &self,
        prefix: &str,
        level: &str,
        now: Timestamp,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (prefix, level, events) = (prefix.to_owned(), level.to_owned(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO classifications (prefix, level, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (prefix) DO UPDATE SET level = $2, updated_at = $3",
                )
                .bind(&prefix)
                .bind(&level)
                .bind(now.unix_nanos())
                .execute(&mut *conn)
                .await
                .map_err(db("classifying a path"))?;
                Ok(((), events))
            })
        })
        .await
    }

    /// Removes a prefix's classification. `false` (and nothing recorded) if it had none.
    pub async fn remove_classification(
        &self,
        prefix: &str,
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (prefix, events) = (prefix.to_owned(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query("DELETE FROM classifications WHERE prefix = $1")
                    .bind(&prefix)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("removing a classification"))?
                    .rows_affected()
                    > 0;
                Ok((changed, if changed { events } else { Vec::new() }))
            })
        })
        .await
    }

    /// Every classified prefix with its level, by prefix.
    pub async fn classifications(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT prefix, level FROM classifications ORDER BY prefix")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading classifications"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("prefix")
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    row.try_get("level")
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ))
            })
            .collect()
    }

    /// The classified prefixes and the stored level policies (JSON bodies), in one round
    /// trip: every secret request needs both to classify its path.
    pub async fn classification_rules(
        &self,
    ) -> Result<(Vec<(String, String)>, Vec<String>), StoreError> {
        let rows = sqlx::query(
            "SELECT 'c' AS kind, prefix AS a, level AS b FROM classifications \
             UNION ALL SELECT 'l' AS kind, id AS a, body AS b FROM records WHERE kind = 'level'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading classifications"))?;
        let (mut classifications, mut levels) = (Vec::new(), Vec::new());
        for row in &rows {
            let get = |column: &str| -> Result<String, StoreError> {
                row.try_get(column)
                    .map_err(|e| StoreError::Corrupt(format!("classification row: {e}")))
            };
            if get("kind")? == "c" {
                classifications.push((get("a")?, get("b")?));
            } else {
                levels.push(get("b")?);
            }
        }
        classifications.sort();
        Ok((classifications, levels))
    }

    /// Records a failed authentication attempt for each subject.
    pub async fn record_auth_failure(
        &self,
        subjects: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let subjects = subjects.to_vec();
        self.write_uncached(move |conn| {
            Box::pin(async move {
                for subject in subjects {
                    sqlx::query("INSERT INTO auth_failures (subject, at) VALUES ($1, $2)")
                        .bind(subject)
                        .bind(now.unix_nanos())
                        .execute(&mut *conn)
                        .await
                        .map_err(db("recording a failure"))?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Failed attempts of `subject` at or after `since`.
    pub async fn auth_failures_since(
        &self,
        subject: &str,
        since: Timestamp,
    ) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM auth_failures WHERE subject = $1 AND at >= $2",
        )
        .bind(subject)
        .bind(since.unix_nanos())
        .fetch_one(&self.pool)
        .await
        .map_err(db("counting failures"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Forgets the attempt recorded for each of `subjects` at `at` (an attempt that
    /// succeeded, or checked nothing): one row each, so that another attempt recorded at the
    /// same instant (a coarse clock, a burst) still counts.
    pub async fn forget_auth_failure(
        &self,
        subjects: &[String],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let subjects = subjects.to_vec();
        // The table has no key: SQLite's rowid or PostgreSQL's ctid names one row.
        // On PostgreSQL, two forgets at once take two rows, not the same one twice.
        let (row, lock) = match self.backend {
            crate::Backend::Sqlite => ("rowid", ""),
            crate::Backend::Postgres => ("ctid", " FOR UPDATE SKIP LOCKED"),
        };
        let statement = format!(
            "DELETE FROM auth_failures WHERE {row} = (SELECT {row} FROM auth_failures \
             WHERE subject = $1 AND at = $2 LIMIT 1{lock})"
        );
        self.write_uncached(move |conn| {
            Box::pin(async move {
                for subject in subjects {
                    sqlx::query(&statement)
                        .bind(subject)
                        .bind(at.unix_nanos())
                        .execute(&mut *conn)
                        .await
                        .map_err(db("forgetting an attempt"))?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Forgets the failures of `subject` (after a success).
    pub async fn clear_auth_failures(&self, subject: &str) -> Result<(), StoreError> {
        let subject = subject.to_owned();
        self.write_uncached(move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM auth_failures WHERE subject = $1")
                    .bind(subject)
                    .execute(conn)
                    .await
                    .map_err(db("clearing failures"))?;
                Ok(())
            })
        })
        .await
    }

    /// Forgets failed attempts made before `before`: they no longer count towards any
    /// lockout (the window is shorter), and would otherwise be kept for good.
    pub async fn prune_auth_failures(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write_uncached(move |conn| {
            Box::pin(async move {
                let removed = sqlx::query("DELETE FROM auth_failures WHERE at < $1")
                    .bind(before.unix_nanos())
                    .execute(conn)
                    .await
                    .map_err(db("removing old failures"))?
                    .rows_affected();
                Ok(removed)
            })
        })
        .await
    }

    /// Whether the account of lockout subject `subject` completed a login from `network`
    /// at or after `since`.
    pub async fn login_network_known(
        &self,
        subject: &str,
        network: &str,
        since: Timestamp,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT at FROM login_networks WHERE subject = $1 AND network = $2 AND at >= $3",
        )
        .bind(subject)
        .bind(network)
        .bind(since.unix_nanos())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an account's networks"))?;
        Ok(found.is_some())
    }

    /// Remembers that the account of lockout subject `subject` completed a login from
    /// `network` at `at`, with the session `session` (nothing if the session was revoked
    /// meanwhile: a reset that revoked it also forgot the account's networks); the account
    /// keeps its `MAX_LOGIN_NETWORKS` most recent networks.
    pub async fn remember_login_network(
        &self,
        subject: &str,
        network: &str,
        session: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let (subject, network, session) =
            (subject.to_owned(), network.to_owned(), session.to_owned());
        self.write_uncached(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO login_networks (subject, network, at) SELECT $1, $2, $3 \
                     WHERE EXISTS (SELECT 1 FROM tokens WHERE id = $4 AND revoked_at IS NULL) \
                     ON CONFLICT (subject, network) DO UPDATE SET at = excluded.at",
                )
                .bind(&subject)
                .bind(&network)
                .bind(at.unix_nanos())
                .bind(&session)
                .execute(&mut *conn)
                .await
                .map_err(db("remembering a login network"))?;
                sqlx::query(
                    "DELETE FROM login_networks WHERE subject = $1 AND network NOT IN \
                     (SELECT network FROM login_networks WHERE subject = $1 \
                      ORDER BY at DESC, network LIMIT $2)",
                )
                .bind(&subject)
                .bind(MAX_LOGIN_NETWORKS)
                .execute(&mut *conn)
                .await
                .map_err(db("forgetting old login networks"))?;
                Ok(())
            })
        })
        .await
    }

    /// Forgets the login networks last used before `before`.
    pub async fn prune_login_networks(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write_uncached(move |conn| {
            Box::pin(async move {
                let removed = sqlx::query("DELETE FROM login_networks WHERE at < $1")
                    .bind(before.unix_nanos())
                    .execute(conn)
                    .await
                    .map_err(db("forgetting old login networks"))?
                    .rows_affected();
                Ok(removed)
            })
        })
        .await
    }

    /// An administrator lifting a lockout: forgets the failures of `subjects` and records
    /// `events`. `false` (and nothing recorded) if there were none to forget.
    pub async fn lift_lockout(
        &self,
        subjects: &[String],
        events: &[Event],
    ) -> Result<bool, StoreError> {
        let (subjects, events) = (subjects.to_vec(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                let cleared = forget_failures(conn, &subjects).await?;
                Ok((cleared, if cleared { events } else { Vec::new() }))
            })
        })
        .await
    }
}

/// The most networks an account keeps as those it logs in from.
const MAX_LOGIN_NETWORKS: i64 = 32;

/// Forgets the networks the account of lockout subject `subject` logged in from (its
/// credentials were reset: whoever used them before may have logged in from theirs).
pub(crate) async fn forget_login_networks(
    conn: &mut Conn<'_>,
    subject: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_networks WHERE subject = $1")
        .bind(subject)
        .execute(&mut *conn)
        .await
        .map_err(db("forgetting login networks"))?;
    Ok(())
}

/// Forgets the failed attempts counted against `subjects`; whether there were any.
pub(crate) async fn forget_failures(
    conn: &mut Conn<'_>,
    subjects: &[String],
) -> Result<bool, StoreError> {
    let mut cleared = false;
    for subject in subjects {
        cleared |= sqlx::query("DELETE FROM auth_failures WHERE subject = $1")
            .bind(subject)
            .execute(&mut *conn)
            .await
            .map_err(db("clearing failures"))?
            .rows_affected()
            > 0;
    }
    Ok(cleared)
}

async fn insert_person_in(
    conn: &mut Conn<'_>,
    person: &PersonRecord,
    enrolment_code_hash: &[u8; 32],
    enrolment_expires_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO people ({PERSON_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&person.id)
    .bind(&person.name)
    .bind(&person.email)
    .bind(&person.role)
    .bind(&person.vendor_id)
    .bind(person.disabled_at.map(Timestamp::unix_nanos))
    .bind(&person.password_hash)
    .bind(&person.totp_secret)
    .bind(person.totp_last_step)
    .bind(json_list(&person.allowed_networks))
    .bind(person.created_at.unix_nanos())
    .bind(person.ends_at.map(Timestamp::unix_nanos))
    .bind(&person.created_by)
    .bind(&person.reset_by)
    .execute(&mut *conn)
    .await
    .map_err(db_unique(
        "adding a person",
        format!("`{}` already exists", person.name),
    ))?;
    insert_enrolment(
        conn,
        &person.id,
        enrolment_code_hash,
        person.created_at,
        enrolment_expires_at,
    )
    .await
}

async fn insert_enrolment(
    conn: &mut Conn<'_>,
    person_id: &str,
    code_hash: &[u8; 32],
    created_at: Timestamp,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO enrolments (code_hash, person_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(code_hash.to_vec())
    .bind(person_id)
    .bind(created_at.unix_nanos())
    .bind(expires_at.unix_nanos())
    .execute(&mut *conn)
    .await
    .map_err(db("storing an enrolment code"))?;
    Ok(())
}

/// Ends the person's unused enrolment codes, as used at `at`. Security decision: a
/// disabled account's code is dead: an intercepted code must not set the password and TOTP
/// of an account an admin disabled on hearing of it, nor come back with the account. The
/// person needs a new code.
pub(crate) async fn end_enrolments(
    conn: &mut Conn<'_>,
    person_id: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE enrolments SET used_at = $2 WHERE person_id = $1 AND used_at IS NULL")
        .bind(person_id)
        .bind(at.unix_nanos())
        .execute(&mut *conn)
        .await
        .map_err(db("ending enrolment codes"))?;
    Ok(())
}

/// See [`crate::Op::ResetCredentials`].
pub(crate) async fn reset_credentials(
    conn: &mut Conn<'_>,
    person_id: &str,
    code_hash: &[u8; 32],
    expires_at: Timestamp,
    at: Timestamp,
    by: Option<&str>,
) -> Result<(), StoreError> {
    let changed = sqlx::query(
        "UPDATE people SET password_hash = NULL, totp_secret = NULL, totp_last_step = NULL, \
         reset_by = $2 WHERE id = $1 AND disabled_at IS NULL",
    )
    .bind(person_id)
    .bind(by)
    .execute(&mut *conn)
    .await
    .map_err(db("clearing credentials"))?
    .rows_affected();
    if changed == 0 {
        return Err(StoreError::Conflict(format!(
            "person `{person_id}` is disabled or gone"
        )));
    }
    sqlx::query("DELETE FROM recovery_codes WHERE person_id = $1")
        .bind(person_id)
        .execute(&mut *conn)
        .await
        .map_err(db("clearing recovery codes"))?;
    end_enrolments(conn, person_id, at).await?;
    insert_enrolment(conn, person_id, code_hash, at, expires_at).await
}

async fn complete_enrolment_in(
    conn: &mut Conn<'_>,
    code_hash: &[u8; 32],
    now: Timestamp,
    password_hash: &str,
    seal_totp: impl FnOnce(&str) -> Vec<u8>,
    recovery_hashes: &[[u8; 32]],
) -> Result<Option<PersonRecord>, StoreError> {
    let person_id: Option<String> = sqlx::query_scalar(
        "UPDATE enrolments SET used_at = $2 \
         WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         AND person_id IN (SELECT id FROM people WHERE disabled_at IS NULL) \
         RETURNING person_id",
    )
    .bind(code_hash.to_vec())
    .bind(now.unix_nanos())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("using an enrolment code"))?;
    let Some(person_id) = person_id else {
        return Ok(None);
    };
    let totp_secret = seal_totp(&person_id);
    crate::keys::sealed_under_current(conn, &totp_secret).await?;
    sqlx::query(
        "UPDATE people SET password_hash = $2, totp_secret = $3, totp_last_step = NULL \
         WHERE id = $1",
    )
    .bind(&person_id)
    .bind(password_hash)
    .bind(totp_secret)
    .execute(&mut *conn)
    .await
    .map_err(db("storing credentials"))?;
    sqlx::query("DELETE FROM recovery_codes WHERE person_id = $1")
        .bind(&person_id)
        .execute(&mut *conn)
        .await
        .map_err(db("replacing recovery codes"))?;
    for hash in recovery_hashes {
        sqlx::query("INSERT INTO recovery_codes (person_id, code_hash) VALUES ($1, $2)")
            .bind(&person_id)
            .bind(hash.to_vec())
            .execute(&mut *conn)
            .await
            .map_err(db("storing recovery codes"))?;
    }
    let row = sqlx::query(&format!(
        "SELECT {PERSON_COLUMNS} FROM people WHERE id = $1"
    ))
    .bind(&person_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading an enrolled person"))?;
    row.map(|row| person_from_row(&row)).transpose()
}

fn person_from_row(row: &AnyRow) -> Result<PersonRecord, StoreError> {
    let read = || -> Result<PersonRecord, sqlx::Error> {
        Ok(PersonRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            email: row.try_get("email")?,
            role: row.try_get("role")?,
            vendor_id: row.try_get("vendor_id")?,
            disabled_at: row
                .try_get::<Option<i64>, _>("disabled_at")?
                .map(Timestamp::from_unix_nanos),
            password_hash: row.try_get("password_hash")?,
            totp_secret: row.try_get("totp_secret")?,
            totp_last_step: row.try_get("totp_last_step")?,
            allowed_networks: parse_list(&row.try_get::<String, _>("allowed_networks")?)?,
            created_at: Timestamp::from_unix_nanos(row.try_get("created_at")?),
            ends_at: row
                .try_get::<Option<i64>, _>("ends_at")?
                .map(Timestamp::from_unix_nanos),
            created_by: row.try_get("created_by")?,
            reset_by: row.try_get("reset_by")?,
        })
    };
    read().map_err(|e| StoreError::Corrupt(format!("person row: {e}")))
}

/// Whether the person `id` exists and is not disabled, as this change sees it.
pub(crate) async fn person_enabled(conn: &mut Conn<'_>, id: &str) -> Result<bool, StoreError> {
    let disabled: Option<Option<i64>> =
        sqlx::query_scalar("SELECT disabled_at FROM people WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading a person"))?;
    Ok(matches!(disabled, Some(None)))
}

pub(crate) async fn insert_grant(
    conn: &mut Conn<'_>,
    grant: &GrantRecord,
) -> Result<(), StoreError> {
    // Checked in the change that stores it: a grant decided just before the account was
    // disabled is not stored after the disable revoked the account's grants (enabling it
    // again would bring it back).
    if !person_enabled(conn, &grant.person_id).await? {
        return Err(StoreError::Conflict(
            "the account is disabled or gone".into(),
        ));
    }
    let (reviewed_at, reviewed_by) = match &grant.reviewed {
        Some((at, by)) => (Some(at.unix_nanos()), Some(by.clone())),
        None => (None, None),
    };
    sqlx::query(
        "INSERT INTO grants (id, person_id, prefix, capabilities, expires_at, created_at, \
         created_by, request_id, break_glass, reason, reviewed_at, reviewed_by, approvals, \
         term_secs) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&grant.id)
    .bind(&grant.person_id)
    .bind(&grant.prefix)
    .bind(json_list(&grant.capabilities))
    .bind(grant.expires_at.unix_nanos())
    .bind(grant.created_at.unix_nanos())
    .bind(&grant.created_by)
    .bind(&grant.request_id)
    .bind(i64::from(grant.break_glass))
    .bind(&grant.reason)
    .bind(reviewed_at)
    .bind(reviewed_by)
    .bind(grant.terms.map(|t| i64::from(t.approvals)))
    .bind(grant.terms.map(|t| t.secs))
    .execute(&mut *conn)
    .await
    .map_err(db("adding a grant"))?;
    Ok(())
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("a string list always serialises")
}

fn parse_list(text: &str) -> Result<Vec<String>, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
