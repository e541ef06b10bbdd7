//! The keyring row (the wrapped root key and how it is unsealed) and API token records.
//!
//! Making and revoking tokens, and initialisation, take the ledger events that describe them
//! and commit them in the same transaction (see [`Store::change`]).

use chaperone_core::Timestamp;
use chaperone_crypto::WrappedRootKey;
use chaperone_crypto::token::TokenHash;
use chaperone_ledger::entry::Event;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::conn::Conn;

use crate::{Store, StoreError, db};

/// How a server's unseal key is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealConfig {
    /// In a key file beside the data (`chaperone up`; evaluation only).
    KeyFile,
    /// Split into Shamir shares held by people (`chaperone init`).
    Shamir {
        /// Number of shares made.
        shares: u8,
        /// Number of shares needed.
        threshold: u8,
    },
}

/// The stored keyring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringRecord {
    /// The root key, encrypted under the unseal key.
    pub wrapped_root_key: WrappedRootKey,
    /// How the unseal key is held.
    pub seal: SealConfig,
    /// When the server was initialised.
    pub created_at: Timestamp,
    /// The key-encryption-key generation new keys are wrapped under.
    pub kek_generation: u32,
    /// Every stored key is wrapped under this generation or a later one.
    pub rewrapped_generation: u32,
    /// For a Shamir seal, the digest of each unseal share (`Share::digest`, hex), by index;
    /// empty for a key file and for keyrings stored before digests were kept.
    pub share_digests: Vec<String>,
}

/// A stored API token: its hash and what it may do, never the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public identifier, safe to log and show.
    pub id: String,
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// A label for people.
    pub name: String,
    /// The role the token acts with.
    pub role: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// The person it belongs to; `None` for the initial admin token.
    pub person_id: Option<String>,
    /// API token or login session.
    pub kind: TokenKind,
    /// For a scoped token, its scope as JSON (`[{"prefix": ..., "capabilities": [...]}]`).
    pub scope: Option<String>,
    /// When this session last verified a TOTP code (step-up).
    pub mfa_verified_at: Option<Timestamp>,
    /// The token this one was made from (Vault's token tree), whose revocation revokes it;
    /// `None` for an orphan.
    pub parent_id: Option<String>,
    /// When the session was last used, as recorded by [`Store::mark_token_used`]; `None`
    /// before the first record.
    pub last_used_at: Option<Timestamp>,
    /// Labels it was made with (Vault's token `meta`); not secret.
    pub meta: std::collections::BTreeMap<String, String>,
}

impl TokenRecord {
    /// Neither revoked nor expired at `now`. (Whether it may be used also depends on its
    /// session's idleness and its ancestors: the server checks those.)
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Made with `token create`, for scripts and automation.
    Api,
    /// Made by a login.
    Session,
}

impl TokenKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => "api",
            TokenKind::Session => "session",
        }
    }
}

impl Store {
    /// Stores the keyring, the first admin token and the ledger's signing key (`origin`, its
    /// seed sealed under the new keyring) together, recording `events` with them. Fails with
    /// [`StoreError::AlreadyInitialized`] (storing and recording nothing) if a keyring
    /// exists. One transaction: a keyring stored without its ledger key would leave a ledger
    /// that, once it holds an entry, no key may be made for any more.
    pub async fn initialize(
        &self,
        keyring: &KeyringRecord,
        admin: &TokenRecord,
        ledger_key: (&str, &[u8]),
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (keyring, admin, events) = (keyring.clone(), admin.clone(), events.to_vec());
        let (origin, sealed_seed) = (ledger_key.0.to_owned(), ledger_key.1.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                initialize_in(conn, &keyring, &admin).await?;
                crate::ledger::insert_ledger_key(conn, &origin, &sealed_seed, keyring.created_at)
                    .await?;
                Ok(((), events))
            })
        })
        .await
    }

    /// The keyring, or `None` before initialisation.
    pub async fn keyring(&self) -> Result<Option<KeyringRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT wrapped_root_key, seal_kind, shares, threshold, created_at, kek_generation, \
             rewrapped_generation, share_digests FROM keyring WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading the keyring"))?;
        let Some(row) = row else { return Ok(None) };
        let read = |row: &AnyRow| -> Result<KeyringRecord, sqlx::Error> {
            let kind: String = row.try_get("seal_kind")?;
            let shares: i64 = row.try_get("shares")?;
            let threshold: i64 = row.try_get("threshold")?;
            let seal = match kind.as_str() {
                "key-file" => Some(SealConfig::KeyFile),
                "shamir" => u8::try_from(shares)
                    .ok()
                    .zip(u8::try_from(threshold).ok())
                    .map(|(shares, threshold)| SealConfig::Shamir { shares, threshold }),
                _ => None,
            };
            Ok(KeyringRecord {
                wrapped_root_key: WrappedRootKey::from_bytes(row.try_get("wrapped_root_key")?),
                seal: seal.ok_or_else(|| sqlx::Error::Decode("unknown seal kind".into()))?,
                created_at: Timestamp::from_unix_nanos(row.try_get("created_at")?),
                kek_generation: generation(row.try_get("kek_generation")?)?,
                rewrapped_generation: generation(row.try_get("rewrapped_generation")?)?,
                share_digests: match row.try_get::<Option<String>, _>("share_digests")? {
                    Some(text) => {
                        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?
                    }
                    None => Vec::new(),
                },
            })
        };
        read(&row)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("keyring row: {e}")))
    }

    /// Stores a new token record, recording `events` with it. A token with a parent is
    /// stored only while the parent is not revoked ([`StoreError::Conflict`] otherwise).
    pub async fn insert_token(
        &self,
        token: &TokenRecord,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.insert_token_decided(token, events, DecidedOn::Nothing)
            .await
    }

    /// Like [`Store::insert_token`], and only while what it was decided on still holds
    /// ([`StoreError::Conflict`] otherwise): a login's token while the account has the
    /// password hash the login verified, a token made by a request while the token that
    /// made the request is not revoked. So a token decided just before a credentials reset
    /// (or a revocation) committed is not stored after it.
    pub async fn insert_token_decided(
        &self,
        token: &TokenRecord,
        events: &[Event],
        decided_on: DecidedOn,
    ) -> Result<(), StoreError> {
        let (token, events) = (token.clone(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                match &decided_on {
                    DecidedOn::Password(hash) => {
                        let current: Option<Option<String>> =
                            sqlx::query_scalar("SELECT password_hash FROM people WHERE id = $1")
                                .bind(&token.person_id)
                                .fetch_optional(&mut *conn)
                                .await
                                .map_err(db("reading a token's owner"))?;
                        if current.flatten().as_deref() != Some(hash.as_str()) {
                            return Err(StoreError::Conflict(
                                "the account's credentials changed meanwhile".into(),
                            ));
                        }
                    }
                    DecidedOn::Token(id) | DecidedOn::TokenAtMost { by: id, .. } => {
                        if !token_live(conn, id).await? {
                            return Err(StoreError::Conflict(
                                "the token that asked for it is revoked".into(),
                            ));
                        }
                    }
                    DecidedOn::Nothing => {}
                }
                if let (DecidedOn::TokenAtMost { live, .. }, Some(person)) =
                    (&decided_on, &token.person_id)
                {
                    let held: i64 = sqlx::query_scalar(
                        "SELECT CAST(COUNT(*) AS BIGINT) FROM tokens WHERE person_id = $1 \
                         AND kind = 'api' AND revoked_at IS NULL \
                         AND (expires_at IS NULL OR expires_at > $2)",
                    )
                    .bind(person)
                    .bind(token.created_at.unix_nanos())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db("counting a person's tokens"))?;
                    if held >= *live {
                        return Err(StoreError::Conflict(format!(
                            "{TOKEN_QUOTA} ({live} live tokens)"
                        )));
                    }
                }
                insert_token_in(conn, &token).await?;
                Ok(((), events))
            })
        })
        .await
    }

    /// The token with this hash, if any (expired and revoked ones included: the caller
    /// decides, with its clock).
    pub async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let read = async {
            let row = sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = $1"
            ))
            .bind(hash.as_bytes().to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("looking up a token"))?;
            row.map(|row| token_from_row(&row)).transpose()
        };
        self.cached(&self.cache.tokens, *hash.as_bytes(), read)
            .await
    }

    /// The tokens of `person_id` (all personless tokens when `None`), newest first.
    pub async fn list_tokens(
        &self,
        person_id: Option<&str>,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens \
             WHERE ($1 = '' AND person_id IS NULL) OR person_id = $1 ORDER BY created_at DESC"
        ))
        .bind(person_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing tokens"))?;
        rows.iter().map(token_from_row).collect()
    }

    /// The token with this id.
    pub async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a token"))?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    /// Revokes a token and every token made from it, its children's children included,
    /// recording `event_for` of each in the same transaction. Returns the tokens revoked,
    /// the token itself first: none (and nothing recorded) if it does not exist or was
    /// already revoked.
    ///
    /// Changes are serialised by the ledger's lock (every batch takes it first, on every
    /// node), so a child stored at the same moment is either committed before and revoked
    /// here, or refused after ([`Store::insert_token`]): no child outlives a revocation.
    pub async fn revoke_token(
        &self,
        id: &str,
        now: Timestamp,
        event_for: impl Fn(&TokenRecord) -> Event + Send + 'static,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let id = id.to_owned();
        self.change(move |conn| {
            Box::pin(async move {
                let sql = |column: &str| {
                    format!(
                        "UPDATE tokens SET revoked_at = $2 WHERE {column} = $1 \
                         AND revoked_at IS NULL RETURNING {TOKEN_COLUMNS}"
                    )
                };
                let (by_id, by_parent) = (sql("id"), sql("parent_id"));
                let rows = sqlx::query(&by_id)
                    .bind(id)
                    .bind(now.unix_nanos())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("revoking a token"))?;
                let mut revoked = rows
                    .iter()
                    .map(token_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                // Breadth first; a token already revoked had its own children revoked then.
                let mut next = 0;
                while let Some(parent) = revoked.get(next).map(|t| t.id.clone()) {
                    next += 1;
                    let rows = sqlx::query(&by_parent)
                        .bind(parent)
                        .bind(now.unix_nanos())
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(db("revoking the tokens made from a token"))?;
                    for row in &rows {
                        revoked.push(token_from_row(row)?);
                    }
                }
                let events = revoked.iter().map(&event_for).collect();
                Ok((revoked, events))
            })
        })
        .await
    }

    /// Records that a token was used at `at` (never moving the record back). Callers record
    /// at most about once a minute per token. Security decision: the caches are kept (see
    /// `write_uncached`), so a cached token record may show an older use than the store;
    /// its only reader, the idle-session check, takes the later of it and the use the
    /// process itself recorded, so a stale record never extends a session.
    pub async fn mark_token_used(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write_uncached(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE tokens SET last_used_at = $2 WHERE id = $1 \
                     AND (last_used_at IS NULL OR last_used_at < $2)",
                )
                .bind(id)
                .bind(at.unix_nanos())
                .execute(conn)
                .await
                .map_err(db("recording a token's use"))?;
                Ok(())
            })
        })
        .await
    }

    /// Records a TOTP verification on a session, for step-up, with its ledger events in the
    /// same transaction.
    pub async fn mark_token_verified(
        &self,
        id: &str,
        now: Timestamp,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (id, events) = (id.to_owned(), events.to_vec());
        self.change(move |conn| {
            Box::pin(async move {
                sqlx::query("UPDATE tokens SET mfa_verified_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now.unix_nanos())
                    .execute(conn)
                    .await
                    .map_err(db("recording a verification"))?;
                Ok(((), events))
            })
        })
        .await
    }
}

const TOKEN_COLUMNS: &str = "id, token_hash, name, role, created_at, expires_at, revoked_at, \
     person_id, kind, scope, mfa_verified_at, parent_id, last_used_at, meta";

fn generation(value: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|_| sqlx::Error::Decode("a key generation out of range".into()))
}

async fn initialize_in(
    conn: &mut Conn<'_>,
    keyring: &KeyringRecord,
    admin: &TokenRecord,
) -> Result<(), StoreError> {
    let (kind, shares, threshold) = match keyring.seal {
        SealConfig::KeyFile => ("key-file", 1, 1),
        SealConfig::Shamir { shares, threshold } => ("shamir", shares, threshold),
    };
    let inserted = sqlx::query(
        "INSERT INTO keyring (id, wrapped_root_key, seal_kind, shares, threshold, created_at, \
         share_digests) VALUES (1, $1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(keyring.wrapped_root_key.as_bytes().to_vec())
    .bind(kind)
    .bind(i64::from(shares))
    .bind(i64::from(threshold))
    .bind(keyring.created_at.unix_nanos())
    .bind(digests_column(&keyring.share_digests))
    .execute(&mut *conn)
    .await
    .map_err(db("storing the keyring"))?
    .rows_affected();
    if inserted == 0 {
        return Err(StoreError::AlreadyInitialized);
    }
    insert_token_in(conn, admin).await
}

/// The `share_digests` column: NULL when there are none.
pub(crate) fn digests_column(digests: &[String]) -> Option<String> {
    (!digests.is_empty())
        .then(|| serde_json::to_string(digests).expect("a string list always serialises"))
}

/// How the conflict of a token over its person's quota begins ([`DecidedOn::TokenAtMost`]).
pub const TOKEN_QUOTA: &str = "the person's live tokens would be more than the limit";

/// What a new token was decided on (see [`Store::insert_token_decided`]).
#[derive(Clone, Debug)]
pub enum DecidedOn {
    /// A login that verified this password hash (an Argon2 PHC string, not a secret).
    Password(String),
    /// A request authenticated by this token (its id).
    Token(String),
    /// A request authenticated by the token `by`, for a person who may hold `live` API
    /// tokens that are not revoked or expired, this one included ([`StoreError::Conflict`]
    /// starting [`TOKEN_QUOTA`] past it, checked in the change).
    TokenAtMost {
        /// The id of the token that made the request.
        by: String,
        /// The most live API tokens the person may hold.
        live: i64,
    },
    /// Nothing to check again.
    Nothing,
}

/// Whether the token `id` exists and is not revoked.
pub(crate) async fn token_live(conn: &mut Conn<'_>, id: &str) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("SELECT id FROM tokens WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading a token"))?
            .is_some(),
    )
}

async fn insert_token_in(conn: &mut Conn<'_>, token: &TokenRecord) -> Result<(), StoreError> {
    // Checked in the transaction that stores it (changes are serialised): a login or a token
    // decided just before the account was disabled stores nothing after the disable revoked
    // the account's tokens, so enabling it again brings no token back.
    if let Some(person) = &token.person_id
        && !crate::identity::person_enabled(conn, person).await?
    {
        return Err(StoreError::Conflict(
            "the account is disabled or gone".into(),
        ));
    }
    if let Some(parent) = &token.parent_id
        && !token_live(conn, parent).await?
    {
        return Err(StoreError::Conflict(
            "the token it would be made from is revoked".into(),
        ));
    }
    sqlx::query(
        "INSERT INTO tokens (id, token_hash, name, role, created_at, expires_at, revoked_at, \
         person_id, kind, scope, mfa_verified_at, parent_id, last_used_at, meta) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&token.id)
    .bind(token.hash.as_bytes().to_vec())
    .bind(&token.name)
    .bind(&token.role)
    .bind(token.created_at.unix_nanos())
    .bind(token.expires_at.map(Timestamp::unix_nanos))
    .bind(token.revoked_at.map(Timestamp::unix_nanos))
    .bind(&token.person_id)
    .bind(token.kind.as_str())
    .bind(&token.scope)
    .bind(token.mfa_verified_at.map(Timestamp::unix_nanos))
    .bind(&token.parent_id)
    .bind(token.last_used_at.map(Timestamp::unix_nanos))
    .bind(
        (!token.meta.is_empty())
            .then(|| serde_json::to_string(&token.meta).expect("a string map always serialises")),
    )
    .execute(&mut *conn)
    .await
    .map_err(db("storing a token"))?;
    Ok(())
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let read = || -> Result<TokenRecord, sqlx::Error> {
        let hash: Vec<u8> = row.try_get("token_hash")?;
        Ok(TokenRecord {
            id: row.try_get("id")?,
            hash: TokenHash::from_slice(&hash)
                .ok_or_else(|| sqlx::Error::Decode("token hash is not 32 bytes".into()))?,
            name: row.try_get("name")?,
            role: row.try_get("role")?,
            created_at: Timestamp::from_unix_nanos(row.try_get("created_at")?),
            expires_at: row
                .try_get::<Option<i64>, _>("expires_at")?
                .map(Timestamp::from_unix_nanos),
            revoked_at: row
                .try_get::<Option<i64>, _>("revoked_at")?
                .map(Timestamp::from_unix_nanos),
            person_id: row.try_get("person_id")?,
            kind: match row.try_get::<String, _>("kind")?.as_str() {
                "api" => TokenKind::Api,
                "session" => TokenKind::Session,
                other => return Err(sqlx::Error::Decode(format!("token kind {other}").into())),
            },
            scope: row.try_get("scope")?,
            mfa_verified_at: row
                .try_get::<Option<i64>, _>("mfa_verified_at")?
                .map(Timestamp::from_unix_nanos),
            parent_id: row.try_get("parent_id")?,
            last_used_at: row
                .try_get::<Option<i64>, _>("last_used_at")?
                .map(Timestamp::from_unix_nanos),
            meta: match row.try_get::<Option<String>, _>("meta")? {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| sqlx::Error::Decode(format!("token meta: {e}").into()))?,
                None => Default::default(),
            },
        })
    };
    read().map_err(|e| StoreError::Corrupt(format!("token row: {e}")))
}
