//! Chaperone's persistence: one [`Store`] over SQLite (the embedded default) or PostgreSQL
//! (several server nodes sharing one database).
//!
//! Both backends run the same SQL through sqlx's runtime-selected `Any` driver: queries use
//! `$N` placeholders and portable SQL (`ON CONFLICT`, `RETURNING`), and only the schema
//! migrations are written per backend (`migrations/sqlite`, `migrations/postgres`). The
//! conformance suite in `tests/conformance.rs` runs every behaviour on both.
//!
//! What is stored is already encrypted or hashed by the caller: this crate sees wrapped keys,
//! ciphertexts and token hashes, never a secret in clear.
//!
//! Every read returns `Result<Option<T>, StoreError>`: a database failure is an error, never
//! "not found".

mod backup;
mod cache;
mod conn;
mod governance;
mod identity;
mod keyring;
mod keys;
mod ledger;
mod lock;
mod migrate;
mod secrets;
mod shares;
mod wrapping;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use backup::{AuditError, PgSnapshot, postgres_clear, postgres_has_tables};
pub use governance::{DocumentRecord, Op, Record};
pub use identity::{GrantRecord, PersonRecord, VendorRecord};
pub use keyring::{DecidedOn, KeyringRecord, SealConfig, TOKEN_QUOTA, TokenKind, TokenRecord};
pub use keys::{SealedItem, SealedKey, SealedKind};
pub use ledger::LedgerStall;
pub use lock::{DatabaseLock, lock_path};
pub use secrets::{KvSettings, MetadataUpdate, StoredVersion, WrittenVersion};
pub use shares::{Opened, SHARE_QUOTA, ShareRecord};
pub use wrapping::{HeldVersion, SpentWrapping, VersionGone, WRAP_QUOTA, WrapQuota, WrappedRecord};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database error while {context}: {source}")]
    Database {
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database could not be reached when the store opened.
    #[error("cannot reach the database at {url}")]
    Unreachable {
        /// Where, without its password.
        url: String,
        /// The driver's error (refused, unknown host, wrong password, timed out).
        #[source]
        source: sqlx::Error,
    },
    /// A key/value rule refused the operation (check-and-set, limits).
    #[error(transparent)]
    Kv(#[from] chaperone_core::KvError),
    /// `initialize` was called on a database that already has a keyring.
    #[error("this database is already initialised")]
    AlreadyInitialized,
    /// The database URL is not `sqlite://PATH` or `postgres://...`.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// A change was refused because the data changed under it or already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored row breaks an invariant (a negative version, unparsable metadata).
    #[error("corrupt data in the database: {0}")]
    Corrupt(String),
    /// A ledger entry is larger than a tlog bundle can hold.
    #[error("a ledger entry of {0} bytes is too large to record")]
    EntryTooLarge(usize),
    /// The ledger batch holding this request's entries failed before its commit, or its
    /// commit was refused, so neither the change nor its entries were stored.
    #[error("the ledger could not record the request: {0}")]
    LedgerWrite(String),
    /// The ledger's size in the database is not the one this server's committer left: its
    /// tail was changed outside the server. Every later write fails until a restart.
    #[error("the ledger was changed in the database outside this server: {0}")]
    LedgerTampered(String),
    /// The ledger batch's commit failed in a way that does not say whether the database
    /// applied it (the connection dropped after COMMIT was sent, an I/O error while SQLite
    /// wrote its commit): the change and its entries may or may not be stored.
    #[error("the database failed while committing; the outcome is unknown: {0}")]
    CommitUnknown(String),
    /// The database was written by a newer Chaperone.
    #[error("the database schema is at version {found}; this binary knows up to {known}")]
    SchemaTooNew {
        /// The newest migration applied to the database.
        found: i64,
        /// The newest migration this binary has.
        known: i64,
    },
    /// A change was asked of a store opened only to read ([`Store::connect_existing`]).
    #[error("this store was opened for a backup and only reads")]
    ReadOnly,
    /// The operation does not apply to this backend.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The SQLite file or its directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the SQLite database (see [`lock_path`]).
    #[error(
        "{} is in use by {}: one process at a time serves a SQLite database; stop it first",
        database.display(),
        holder.map_or("another process".to_owned(), |pid| format!("process {pid}"))
    )]
    InUse {
        /// The database.
        database: PathBuf,
        /// The process holding it, as its lock file says.
        holder: Option<u32>,
    },
}

/// Maps a driver error to [`StoreError::Database`] with what the store was doing.
fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { context, source }
}

/// Like [`db`], but a unique constraint refusing the row is [`StoreError::Conflict`] with
/// `conflict`: two requests raced to add the same name, and the one that lost is told so.
fn db_unique(context: &'static str, conflict: String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| match &source {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::Conflict(conflict),
        _ => StoreError::Database { context, source },
    }
}

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A parsed `database_url`: `sqlite://PATH` or `postgres://...` (`postgresql://` too).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    url: String,
}

impl DatabaseUrl {
    /// Parses `text`, refusing other schemes.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        if let Some(path) = text.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::InvalidUrl("sqlite:// needs a file path".into()));
            }
            return Ok(Self {
                backend: Backend::Sqlite,
                url: text.to_owned(),
            });
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let url = Self {
                backend: Backend::Postgres,
                url: text.to_owned(),
            };
            url.check_parameters()?;
            return Ok(url);
        }
        Err(StoreError::InvalidUrl(
            "expected sqlite://PATH or postgres://USER@HOST/DB".to_owned(),
        ))
    }

    /// A URL for the SQLite file at `path`.
    pub fn sqlite_file(path: &Path) -> Self {
        Self {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}", path.display()),
        }
    }

    /// The backend this URL selects.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite file path, for SQLite URLs.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self.backend {
            Backend::Sqlite => {
                let rest = self
                    .url
                    .strip_prefix("sqlite://")
                    .expect("checked at parse");
                Some(Path::new(rest.split('?').next().unwrap_or(rest)))
            }
            Backend::Postgres => None,
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    /// Prints the URL without a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl DatabaseUrl {
    /// Whether the URL holds a password (in its user information or a query parameter).
    pub fn holds_password(&self) -> bool {
        self.redacted() != self.url
    }

    /// The URL with any password replaced by `***`, for messages and logs: the one in the
    /// user information (`user:password@`) and the value of any query parameter whose name
    /// holds `password` (`?password=`, `sslpassword=`), which the PostgreSQL driver accepts
    /// too.
    pub fn redacted(&self) -> String {
        let (url, query) = self.split_query();
        let mut out = redact_user_info(url);
        if let Some(query) = query {
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                        format!("{name}=***")
                    }
                    _ => parameter.to_owned(),
                })
                .collect();
            out.push('?');
            out.push_str(&parameters.join("&"));
        }
        out
    }
}

impl DatabaseUrl {
    /// The URL before its query, and the query. The query starts at the first `?` after the
    /// user information (a password may hold a `?` itself).
    fn split_query(&self) -> (&str, Option<&str>) {
        let after_user = self.url.find("://").map_or(0, |scheme| {
            let rest = &self.url[scheme + 3..];
            let authority = rest.find('/').unwrap_or(rest.len());
            scheme + 3 + rest[..authority].rfind('@').map_or(0, |at| at + 1)
        });
        match self.url[after_user..].find('?') {
            Some(q) => (
                &self.url[..after_user + q],
                Some(&self.url[after_user + q + 1..]),
            ),
            None => (self.url.as_str(), None),
        }
    }

    /// Refuses a PostgreSQL connection parameter the driver does not know. Security
    /// decision: the driver logs an unknown parameter with its value at WARN, so a
    /// `sslpassword=`, a `Password=` or a misspelt `pasword=` would put a credential in the
    /// server's log. The error names the parameter, never its value.
    fn check_parameters(&self) -> Result<(), StoreError> {
        const KNOWN: &[&str] = &[
            "sslmode",
            "ssl-mode",
            "sslrootcert",
            "ssl-root-cert",
            "ssl-ca",
            "sslcert",
            "ssl-cert",
            "sslkey",
            "ssl-key",
            "statement-cache-capacity",
            "host",
            "hostaddr",
            "port",
            "dbname",
            "user",
            "password",
            "application_name",
            "options",
        ];
        let Some(query) = self.split_query().1 else {
            return Ok(());
        };
        for parameter in query.split('&').filter(|p| !p.is_empty()) {
            let name = parameter
                .split_once('=')
                .map_or(parameter, |(name, _)| name);
            let known = KNOWN.contains(&name)
                || name
                    .strip_prefix("options[")
                    .is_some_and(|rest| rest.ends_with(']'));
            if !known {
                let shown: String = name.chars().take(40).collect();
                return Err(StoreError::InvalidUrl(format!(
                    "unknown connection parameter `{shown}` (known: {})",
                    KNOWN.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// `url` (without its query) with the password of its user information replaced by `***`.
fn redact_user_info(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// SQLite settings applied to every connection: WAL for concurrent readers, `synchronous =
/// FULL` so a committed transaction survives power loss, a busy timeout so concurrent
/// writers wait for each other instead of failing, and `secure_delete` so that destroyed
/// data (a destroyed version, a used-up share) is overwritten with zeros in the file rather
/// than left in free pages.
///
/// Each connection's page cache is held to 512 KiB (SQLite's default is 2 MiB). The data
/// read on every request is kept in the store's own caches, and a page that is not in
/// SQLite's is read from the operating system's page cache; what the larger cache kept was
/// mostly pages read once (the ledger, by the anomaly watch, reports and verification),
/// 2 MiB per connection. After `bench/vault.sh`'s read load the server's memory was 25.0
/// MB with this limit and 26.5 MB without (docs/performance.md).
pub(crate) const SQLITE_PRAGMAS: [&str; 6] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
    "PRAGMA secure_delete = ON",
    "PRAGMA cache_size = -512",
];

/// The database handle. Cheap to clone; all clones share the connection pools.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads.
    pool: AnyPool,
    /// Write transactions. For SQLite a separate pool of one connection: SQLite allows one
    /// writer at a time, and queueing writers in the pool is fair and fast, where letting them
    /// contend for the file lock makes them sleep in SQLite's busy handler (seconds of tail
    /// latency under load). Every write after the migrations goes through the ledger
    /// committer ([`Store::change`], [`Store::write`]), which with SQLite has a connection
    /// of its own on its own thread (see [`conn`]); this pool runs the migrations. For
    /// PostgreSQL the same pool as reads (where [`Store::write`] runs directly).
    writer: AnyPool,
    backend: Backend,
    /// Appends to the ledger, with every change that records itself (see [`ledger`]).
    committer: std::sync::Arc<ledger::Committer>,
    /// What every request reads, kept while nothing changed (see [`Store::data_generation`]).
    cache: std::sync::Arc<cache::Cache>,
    /// SQLite opened by [`Store::connect`]: this process's hold on the database (see
    /// [`lock`]), released by [`Store::close`] or when the last clone is dropped.
    lock: Option<std::sync::Arc<lock::DatabaseLock>>,
    /// Opened by [`Store::connect_existing`] (a backup's store): every change is refused,
    /// since it holds no lock and another process may be serving the database.
    read_only: bool,
}

impl Store {
    /// Connects, creating the SQLite file (mode 0600) if needed, and applies migrations. A
    /// SQLite database is locked for this process until the store is closed: if another
    /// process holds it, this fails with [`StoreError::InUse`].
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let store = Self::open(url, true).await?;
        migrate::run(&store).await?;
        Ok(store)
    }

    /// Connects to an existing database without changing its schema (for backups, which
    /// must not migrate a database that running servers use): the schema must be the one
    /// this binary knows. It takes no lock, so that it can read beside a running server, and
    /// for the same reason it only reads: every change through it fails with
    /// [`StoreError::ReadOnly`].
    pub async fn connect_existing(url: &DatabaseUrl) -> Result<Self, StoreError> {
        if let Some(path) = url.sqlite_path()
            && !path.exists()
        {
            return Err(StoreError::Unsupported(
                "the SQLite database does not exist",
            ));
        }
        let store = Self::open(url, false).await?;
        migrate::check(&store).await?;
        Ok(store)
    }

    async fn open(url: &DatabaseUrl, create: bool) -> Result<Self, StoreError> {
        // Registers the compiled-in drivers with sqlx's `Any` driver; idempotent.
        sqlx::any::install_default_drivers();
        let backend = url.backend;
        let mut connect_url = url.url.clone();
        let mut lock = None;
        if let Some(path) = url.sqlite_path() {
            if create {
                // The lock before the file: a process refused here leaves no empty database
                // behind (a restore would take one for a database to move aside).
                create_parent_dir(path)?;
                lock = Some(std::sync::Arc::new(lock::DatabaseLock::acquire(path)?));
                create_private_file(path)?;
            }
            connect_url = format!("sqlite://{}", path.display());
        }
        if backend == Backend::Postgres {
            // One connection on its own first: its error says why (refused, an unknown host,
            // a wrong password), where the pool's would only say that it timed out, 30 s on.
            let unreachable = |source| StoreError::Unreachable {
                url: url.redacted(),
                source,
            };
            match tokio::time::timeout(
                Duration::from_secs(10),
                <sqlx::AnyConnection as sqlx::Connection>::connect(&connect_url),
            )
            .await
            {
                Ok(Ok(connection)) => {
                    let _ = sqlx::Connection::close(connection).await;
                }
                Ok(Err(source)) => return Err(unreachable(source)),
                Err(_) => {
                    return Err(unreachable(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no answer within 10 s",
                    ))));
                }
            }
        }
        let pool = pool_options(backend, sqlite_readers(), 16)
            .connect(&connect_url)
            .await
            .map_err(db("connecting"))?;
        let cache = std::sync::Arc::new(cache::Cache::default());
        let (writer, committer) = match url.sqlite_path() {
            Some(path) => (
                pool_options(backend, 1, 1)
                    .connect(&connect_url)
                    .await
                    .map_err(db("connecting the writer"))?,
                ledger::Committer::start_sqlite(path.to_owned(), cache.clone(), lock.is_some())
                    .await?,
            ),
            None => (
                pool.clone(),
                ledger::Committer::start(pool.clone(), cache.clone()),
            ),
        };
        Ok(Self {
            pool,
            writer,
            backend,
            committer,
            cache,
            lock,
            read_only: !create,
        })
    }
}

/// How many connections read a SQLite database: twice the cores, from 2 to 8. Each is a
/// thread of its own (sqlx runs a SQLite connection on one) with its own page cache and
/// parsed schema, and a read waits on the CPU far more than on the disk (the file's pages
/// are in the operating system's cache), so more connections than that add memory, not
/// reads. On two cores: four.
fn sqlite_readers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .clamp(2, 8)
}

/// Security decision: every node's changes take the ledger head's row lock, so a node that
/// stops in the middle of a transaction (a paused virtual machine, a process stopped, a
/// network cut between it and PostgreSQL) would hold it, and stall every other node's
/// writes, logins, reads and seals, until PostgreSQL noticed the connection gone (TCP
/// keepalive: hours). A transaction idle for 10 s is ended by PostgreSQL, which releases
/// its locks (no change of ours waits that long between two statements: a batch runs its
/// statements back to back); and a lock is waited for 15 s at most, so a request fails
/// instead of hanging past its own timeout. The stopped node's change is rolled back, and
/// its callers are told it failed.
pub const POSTGRES_SESSION: &[&str] = &[
    "SET idle_in_transaction_session_timeout = '10s'",
    "SET lock_timeout = '15s'",
];

/// Pool settings: `sqlite` or `postgres` connections at most, and each connection's session
/// settings (SQLite's pragmas, PostgreSQL's timeouts).
fn pool_options(backend: Backend, sqlite: u32, postgres: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(match backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        })
        .acquire_timeout(Duration::from_secs(30))
        // One SQLite connection always open: SQLite deletes the write-ahead log when the
        // last connection to a database closes, and the ledger committer takes a log that
        // is no longer the one it opened for the database moved (`ledger::Opened`).
        .min_connections(u32::from(backend == Backend::Sqlite))
        // A pooled PostgreSQL connection is pinged before use, since the server may have
        // closed it. A SQLite connection is a file this process holds open: the ping would
        // only add a round trip to sqlx's worker thread in front of every query.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                let settings = match backend {
                    Backend::Sqlite => SQLITE_PRAGMAS.as_slice(),
                    Backend::Postgres => POSTGRES_SESSION,
                };
                for setting in settings {
                    sqlx::query(setting).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

impl Store {
    /// A number that moves whenever a change is committed on this node: what was read under
    /// one generation may be kept and reused while the generation stays the same.
    ///
    /// Security decision: only SQLite has one. A SQLite database is served by one process,
    /// so every change to it passes through this store and moves the generation before its
    /// caller is answered (a revocation is in force for the very next request). PostgreSQL
    /// may be written by other nodes, whose changes this node cannot see happen, so with it
    /// nothing is cached and every request reads the database.
    pub fn data_generation(&self) -> Option<u64> {
        (self.backend == Backend::Sqlite).then(|| self.cache.versions.generation())
    }

    /// `read` with `map` in front of it, on SQLite (see [`Store::data_generation`]): what
    /// `map` holds for `key` under its current generation, or else what `read` finds, kept
    /// under the generation taken before `read` ran. Only what `read` finds (`Some`) is
    /// kept, so that lookups of what does not exist cannot crowd out what does (a person's
    /// grants, even none, are found: the person exists).
    pub(crate) async fn cached<K: std::hash::Hash + Eq, V: Clone>(
        &self,
        map: &cache::Map<K, V>,
        key: K,
        read: impl std::future::Future<Output = Result<Option<V>, StoreError>>,
    ) -> Result<Option<V>, StoreError> {
        let generation = (self.backend == Backend::Sqlite).then(|| map.generation());
        if let Some(value) = generation.and_then(|g| map.get(&key, g)) {
            return Ok(Some(value));
        }
        let value = read.await?;
        if let (Some(generation), Some(value)) = (generation, &value) {
            map.put(key, generation, value.clone());
        }
        Ok(value)
    }

    /// Like [`Store::data_generation`], but left where it is by changes that write only
    /// secrets' values and metadata: what authorisation reads (tokens, people, vendors,
    /// grants, classifications and levels) may be kept under it. Every other change moves
    /// it.
    pub fn access_generation(&self) -> Option<u64> {
        (self.backend == Backend::Sqlite).then(|| self.cache.tokens.generation())
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("pinging"))?;
        Ok(())
    }

    /// Closes every connection (and, for SQLite, checkpoints the WAL), then lets go of the
    /// database's lock.
    pub async fn close(&self) {
        self.committer.close().await;
        self.writer.close().await;
        self.pool.close().await;
        // A clone used after this must not answer from memory what the database, which
        // another process may now open, no longer says.
        self.cache.invalidate(cache::Touches::Anything);
        if let Some(lock) = &self.lock {
            lock.release();
        }
    }
}

/// Creates the directory `path` is in, if it is missing.
fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateFile {
            path: parent.to_owned(),
            source,
        }),
        None => Ok(()),
    }
}

/// Creates `path` (and its parent directory) readable by the owner only, if it is missing.
/// SQLite gives its `-wal` and `-shm` files the same permissions as the database file.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::CreateFile {
        path: path.to_owned(),
        source,
    };
    create_parent_dir(path)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(err)?;
    Ok(())
}

/// Converts a stored non-negative integer.
fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}: {value}")))
}

/// Converts a number for a query. Stored numbers (versions, ledger indices) never approach
/// `i64::MAX`, so a larger one (from a request) saturates and matches nothing, rather than
/// panicking where a hostile request can reach it.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://a/b.db").unwrap().backend(),
            Backend::Sqlite
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://a/b.db?mode=rwc")
                .unwrap()
                .sqlite_path()
                .unwrap(),
            Path::new("a/b.db")
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://x/y").unwrap().backend(),
            Backend::Postgres
        );
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        let url = DatabaseUrl::parse("postgres://me:s3cret@db:5432/c").unwrap();
        assert_eq!(url.redacted(), "postgres://me:***@db:5432/c");
        assert!(!format!("{url:?}").contains("s3cret"));
        let url = DatabaseUrl::parse(
            "postgres://me@db/c?sslmode=require&password=s3cret&application_name=x",
        )
        .unwrap();
        assert_eq!(
            url.redacted(),
            "postgres://me@db/c?sslmode=require&password=***&application_name=x"
        );
        // Parameters the driver would log with their value are refused, by name only.
        for bad in [
            "postgres://me@db/c?sslpassword=k3y",
            "postgres://me:s3cret@db?Password=k3y",
            "postgres://me@db/c?sslmode=require&pasword=k3y",
        ] {
            let error = DatabaseUrl::parse(bad).unwrap_err().to_string();
            assert!(error.contains("unknown connection parameter"), "{error}");
            assert!(
                !error.contains("k3y") && !error.contains("s3cret"),
                "{error}"
            );
        }
        assert!(DatabaseUrl::parse("postgres://me@db/c?options[statement_timeout]=5s").is_ok());
        let url = DatabaseUrl::parse("postgres://me:pa?ss@db/c?sslmode=require").unwrap();
        assert_eq!(url.redacted(), "postgres://me:***@db/c?sslmode=require");
    }
}
