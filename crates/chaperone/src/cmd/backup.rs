//! `chaperone backup` and `chaperone restore`: online snapshots with a signed manifest, and
//! restores that check the signature and the ledger before the data is used.
//!
//! A backup is a new directory: the snapshot (`chaperone.db` for SQLite, `chaperone.pgdump`
//! for PostgreSQL, in `pg_dump`'s custom format) and `manifest.json`. The snapshot is the
//! database as stored, so every secret in it stays encrypted under the root key; the unseal
//! key or shares are never part of a backup. The manifest holds the snapshot's SHA-256 and
//! size, the ledger's size and root in the snapshot, the latest signed checkpoint at or
//! below that size, and a *statement* the running server signed with the ledger key: a
//! checkpoint at the snapshot's ledger size whose extension line names the snapshot's hash
//! (the server checks the head against its own ledger first, and records `sys.backup`).
//!
//! Trust, and why: everything in the backup directory can be rewritten by whoever can write
//! to where backups are kept, the manifest included. So a restore trusts only the key the
//! operator gives with `--key` (printed by `chaperone ledger key`, kept apart from the
//! backups). It checks the statement's signature first, then copies the snapshot to a
//! private staging file and checks the copy's hash against the statement, and only then
//! lets PostgreSQL or SQLite read it. It then recomputes the whole ledger from its entries
//! and checks it against the statement and every signed checkpoint the database holds. Only
//! then does the SQLite file take the target's place (a replaced database is kept beside it);
//! PostgreSQL is restored only into an empty database, which is emptied again on failure.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use chaperone_core::Clock as _;
use chaperone_ledger::checkpoint::Checkpoint;
use chaperone_ledger::note::{self, Verifier};
use chaperone_store::{Backend, DatabaseUrl, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use chaperone_ledger::checkpoint::BACKUP_EXTENSION;

use crate::client::{Client, ClientArgs, Method};
use crate::cmd::server::runtime;
use crate::config::Layers;

/// The manifest's format name; a restore refuses any other.
const FORMAT: &str = "chaperone-backup/1";
const MANIFEST: &str = "manifest.json";

/// Where the database is.
#[derive(clap::Args, Debug)]
pub(crate) struct DatabaseArgs {
    /// Data directory of `chaperone up` (its chaperone.db).
    #[arg(long, conflicts_with_all = ["config", "database_url"])]
    data: Option<PathBuf>,
    /// Configuration file (for `database_url`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Database URL; overrides the file and CHAPERONE_DATABASE_URL.
    #[arg(long)]
    database_url: Option<String>,
}

impl DatabaseArgs {
    fn url(&self) -> anyhow::Result<DatabaseUrl> {
        if let Some(dir) = &self.data {
            return Ok(DatabaseUrl::sqlite_file(&dir.join("chaperone.db")));
        }
        let layers = Layers::load(
            self.config.as_deref(),
            &[("database_url", "--database-url", self.database_url.clone())],
        )?;
        Ok(layers.validate()?.database_url)
    }

    /// The address of the server a configuration file describes (its `listen`, on this
    /// machine when it listens on every address; `https` with TLS), for a backup run with
    /// `--config` and no `--addr` or CHAPERONE_ADDR: the manifest must be signed by the
    /// server of the database that is copied, not by the one a saved login names.
    fn configured_server(&self) -> anyhow::Result<Option<String>> {
        if self.config.is_none() {
            return Ok(None);
        }
        let config = Layers::load(
            self.config.as_deref(),
            &[("database_url", "--database-url", self.database_url.clone())],
        )?
        .validate()?;
        let mut listen = config.listen;
        if listen.ip().is_unspecified() {
            listen.set_ip(match listen.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        Ok(Some(format!("{scheme}://{listen}")))
    }
}

/// `chaperone backup`.
#[derive(clap::Args, Debug)]
pub(crate) struct BackupArgs {
    /// Directory to write the backup into (created; it must not exist).
    out: PathBuf,
    #[command(flatten)]
    database: DatabaseArgs,
    /// The running server, which signs the manifest (an admin token in CHAPERONE_TOKEN;
    /// with --data, the directory's admin.token is used when it is unset).
    #[command(flatten)]
    client: ClientArgs,
}

/// `chaperone restore`.
#[derive(clap::Args, Debug)]
pub(crate) struct RestoreArgs {
    /// A directory written by `chaperone backup`.
    backup: PathBuf,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Replace a SQLite database that already exists (it is kept beside, renamed). A
    /// PostgreSQL target must be an empty database.
    #[arg(long)]
    force: bool,
    /// The ledger's verifier key, or a file holding it (`chaperone ledger key` prints it).
    #[arg(long)]
    key: String,
}

/// What `manifest.json` holds.
#[derive(Serialize, Deserialize, Debug)]
struct Manifest {
    format: String,
    created_at: String,
    backend: String,
    snapshot: String,
    sha256: String,
    bytes: u64,
    ledger: LedgerState,
}

#[derive(Serialize, Deserialize, Debug)]
struct LedgerState {
    /// The server's signed statement: a checkpoint at `size` with the extension line
    /// `chaperone-backup/1 <backend> <sha256> <bytes> <signed at>`.
    statement: String,
    /// Entries in the snapshot.
    size: u64,
    /// The Merkle root at `size`, base64.
    root: String,
    /// The latest signed checkpoint at or below `size`.
    checkpoint: Option<String>,
    /// The ledger's verifier key.
    verifier: Option<String>,
}

pub(crate) fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let url = args.database.url()?;
    let mut client_args = args.client.clone();
    if client_args
        .addr
        .as_deref()
        .is_none_or(|a| a.trim().is_empty())
    {
        client_args.addr = args.database.configured_server()?;
    }
    let mut client = Client::new(&client_args);
    if !client.has_token()
        && let Some(dir) = &args.database.data
        && let Ok(token) = std::fs::read_to_string(dir.join("admin.token"))
    {
        client = client.with_token(&token);
    }
    if !client.has_token() {
        bail!(
            "a backup's manifest is signed by the running server: set CHAPERONE_TOKEN to an \
             admin token (and CHAPERONE_ADDR to the server)"
        );
    }
    // Written beside, under a name of its own, and given its name once its manifest is
    // written: a backup that fails, or is killed, leaves nothing under that name to be
    // mistaken for a backup.
    if args.out.exists() {
        bail!(
            "{} exists; a backup goes into a new directory",
            args.out.display()
        );
    }
    let name = args
        .out
        .file_name()
        .and_then(|n| n.to_str())
        .context("the backup directory needs a name")?;
    let partial = args
        .out
        .with_file_name(format!(".{name}.partial-{}", std::process::id()));
    create_new_dir(&partial)?;
    let result = runtime()?
        .block_on(take_backup(&partial, &url, &client))
        .and_then(|manifest| {
            if args.out.exists() {
                bail!(
                    "{} was made while the backup ran; the backup is not put there",
                    args.out.display()
                );
            }
            std::fs::rename(&partial, &args.out)
                .with_context(|| format!("cannot name the backup {}", args.out.display()))?;
            sync_dir_of(&args.out)?;
            Ok(manifest)
        });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    let manifest = result?;
    println!(
        "Backed up {} to {}: {} bytes, SHA-256 {}\nLedger: {} entries; the manifest is signed \
         by the ledger key.",
        url.redacted(),
        args.out.display(),
        manifest.bytes,
        manifest.sha256,
        manifest.ledger.size,
    );
    println!(
        "Secret values, keys and TOTP secrets in the snapshot are encrypted as the database \
         stores them; paths, people, vendors and the ledger are not: keep it as confidential \
         as the database. Keep the unseal key or shares, and the ledger's verifier key \
         (`chaperone ledger key`), apart from it."
    );
    Ok(())
}

async fn take_backup(out: &Path, url: &DatabaseUrl, client: &Client) -> anyhow::Result<Manifest> {
    let store = Store::connect_existing(url)
        .await
        .with_context(|| format!("cannot open {}", url.redacted()))?;
    let (snapshot_name, ledger) = match store.backend() {
        Backend::Sqlite => {
            let name = "chaperone.db";
            let path = out.join(name);
            create_private_file(&path)?;
            store.snapshot_into(&path).await?;
            // The copy is read through its own store, as a restore will read it.
            let copy = Store::connect_existing(&DatabaseUrl::sqlite_file(&path)).await?;
            let size = copy.ledger_size().await?;
            let facts = (
                copy.checkpoint_at_most(size).await?.map(|(_, note)| note),
                copy.ledger_verifier().await?,
            );
            let state = ledger_state(&copy, size, facts).await;
            copy.close().await;
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(out.join(format!("{name}{suffix}")));
            }
            (name, state?)
        }
        Backend::Postgres => {
            let name = "chaperone.pgdump";
            let path = out.join(name);
            create_private_file(&path)?;
            let mut snapshot = store.export_snapshot().await?;
            let size = snapshot.ledger_size;
            let facts = snapshot.ledger_facts(size).await?;
            let (bare, password) = url.split_password();
            let mut dump = Command::new(postgres_tool("pg_dump")?);
            dump.args(["--format=custom", "--no-owner", "--no-privileges"])
                .arg(format!("--snapshot={}", snapshot.id))
                .arg("--file")
                .arg(&path)
                .arg("--dbname")
                .arg(&bare);
            if let Some(password) = &password {
                dump.env("PGPASSWORD", password.as_str());
            }
            let status = dump.status().context("cannot run pg_dump")?;
            snapshot.finish().await?;
            if !status.success() {
                bail!("pg_dump failed ({status})");
            }
            // Hash tiles up to `size` never change once written, so the live database
            // gives the snapshot's root.
            (name, ledger_state(&store, size, facts).await?)
        }
    };
    store.close().await;
    let (sha256, bytes) = sha256_file(&out.join(snapshot_name))?;
    let backend = backend_name(url.backend());
    let answer = client
        .call(
            Method::Post,
            "sys/backup",
            Some(&serde_json::json!({
                "backend": backend,
                "sha256": sha256,
                "bytes": bytes,
                "ledger_size": ledger.size,
                "ledger_root": ledger.root,
            })),
        )
        .with_context(|| format!("the server at {} did not sign the manifest", client.base()))?;
    let statement = answer["statement"]
        .as_str()
        .context("the server did not return a signed statement")?
        .to_owned();
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        created_at: chaperone_server::SystemClock.now().to_rfc3339(),
        backend: backend.to_owned(),
        snapshot: snapshot_name.to_owned(),
        sha256,
        bytes,
        ledger: LedgerState {
            statement,
            ..ledger
        },
    };
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    crate::cmd::server::write_private(&out.join(MANIFEST), text.as_bytes())?;
    Ok(manifest)
}

async fn ledger_state(
    store: &Store,
    size: u64,
    (checkpoint, verifier): (Option<String>, Option<String>),
) -> anyhow::Result<LedgerState> {
    let root = store.ledger_root(size).await?;
    Ok(LedgerState {
        statement: String::new(),
        size,
        root: base64::engine::general_purpose::STANDARD.encode(root),
        checkpoint,
        verifier,
    })
}

/// What the server's signed statement vouches for.
struct Statement {
    size: u64,
    root: String,
    backend: String,
    sha256: String,
    bytes: u64,
    /// When the server signed it; statements from before the time was signed have none.
    signed_at: Option<String>,
}

/// Checks the statement's signature with `key` and reads what it vouches for.
fn open_statement(note_text: &str, key: &Verifier) -> anyhow::Result<Statement> {
    let body = note::open(note_text.as_bytes(), std::slice::from_ref(key))
        .map_err(|e| anyhow!("the backup's manifest is not signed by the ledger key {key}: {e}"))?;
    let checkpoint = Checkpoint::parse(&body).map_err(|e| anyhow!("the statement: {e}"))?;
    if checkpoint.origin != key.name() {
        bail!(
            "the statement names the log {}, not {}",
            checkpoint.origin,
            key.name()
        );
    }
    let claim = checkpoint
        .extensions
        .iter()
        .find_map(|line| {
            line.strip_prefix(BACKUP_EXTENSION)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .context("the signed note is a checkpoint, not a backup statement")?;
    let fields: Vec<&str> = claim.split(' ').collect();
    let (backend, sha256, bytes, signed_at) = match fields[..] {
        [backend, sha256, bytes] => (backend, sha256, bytes, None),
        [backend, sha256, bytes, at] => (backend, sha256, bytes, Some(at.to_owned())),
        _ => bail!("the backup statement is malformed"),
    };
    Ok(Statement {
        size: checkpoint.size,
        root: base64::engine::general_purpose::STANDARD.encode(checkpoint.root),
        backend: backend.to_owned(),
        sha256: sha256.to_owned(),
        bytes: bytes.parse().context("the backup statement is malformed")?,
        signed_at,
    })
}

/// Opens a file of a backup for reading: a regular file only, never through a final
/// symbolic link, and without blocking on a named pipe (which could otherwise hold a
/// restore forever). Anyone who can write where backups are kept could plant either.
fn open_backup_file(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NONBLOCK | libc::O_NOFOLLOW,
    );
    let file = options.open(path).with_context(|| {
        format!(
            "cannot read {} (a backup holds regular files only)",
            path.display()
        )
    })?;
    if !file.metadata()?.is_file() {
        bail!(
            "{} is not a regular file: the backup was altered",
            path.display()
        );
    }
    Ok(file)
}

/// The most a manifest may hold.
const MAX_MANIFEST: u64 = 1024 * 1024;

pub(crate) fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    if args.backup.is_dir() && !args.backup.join(MANIFEST).exists() {
        bail!(
            "{} has no {MANIFEST}: it is not a complete backup (`chaperone backup` writes the \
             manifest last)",
            args.backup.display()
        );
    }
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(open_backup_file(&args.backup.join(MANIFEST))?, MAX_MANIFEST),
        &mut text,
    )
    .with_context(|| format!("cannot read {}", args.backup.join(MANIFEST).display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{MANIFEST} is not a Chaperone backup manifest"))?;
    if manifest.format != FORMAT {
        bail!(
            "the backup's format is {:?}; this binary restores {FORMAT}",
            manifest.format
        );
    }
    // The signature first: nothing else in the directory is trusted before it.
    let key = crate::cmd::ledger::parse_key(&args.key)?;
    let statement = open_statement(&manifest.ledger.statement, &key)?;
    if (
        &statement.backend,
        &statement.sha256,
        statement.bytes,
        statement.size,
        &statement.root,
    ) != (
        &manifest.backend,
        &manifest.sha256,
        manifest.bytes,
        manifest.ledger.size,
        &manifest.ledger.root,
    ) {
        bail!("the manifest does not match the statement signed for it: it was altered");
    }
    if manifest.snapshot.contains(['/', '\\']) || manifest.snapshot.starts_with('.') {
        bail!("the manifest names an invalid snapshot file");
    }
    let url = args.database.url()?;
    if backend_name(url.backend()) != statement.backend {
        bail!(
            "this is a {} backup; restore it into a {} database",
            statement.backend,
            statement.backend
        );
    }
    runtime()?.block_on(async {
        match url.backend() {
            Backend::Sqlite => restore_sqlite(&args, &manifest, &statement, &key, &url).await,
            Backend::Postgres => restore_postgres(&args, &manifest, &statement, &key, &url).await,
        }
    })
}

/// Copies the snapshot to `staging` (created new, mode 0600) and checks the copy against the
/// statement: what is read afterwards is exactly what was signed for.
fn stage(
    args: &RestoreArgs,
    manifest: &Manifest,
    statement: &Statement,
    staging: &Path,
) -> anyhow::Result<()> {
    let source = args.backup.join(&manifest.snapshot);
    let from = open_backup_file(&source)?;
    create_private_file(staging)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .open(staging)
        .with_context(|| format!("cannot write {}", staging.display()))?;
    // No more than the signed size, and one byte to tell a longer file: a file that never
    // ends (a link to a device, before it was refused) cannot fill the disk.
    std::io::copy(
        &mut std::io::Read::take(from, statement.bytes.saturating_add(1)),
        &mut to,
    )
    .with_context(|| format!("cannot copy {} to {}", source.display(), staging.display()))?;
    to.sync_all()?;
    let (sha256, bytes) = sha256_file(staging)?;
    if sha256 != statement.sha256 || bytes != statement.bytes {
        bail!(
            "{} does not match the signed statement (SHA-256 {sha256}, {bytes} bytes; signed: \
             {}, {} bytes): the backup is damaged or was altered",
            source.display(),
            statement.sha256,
            statement.bytes
        );
    }
    Ok(())
}

async fn restore_sqlite(
    args: &RestoreArgs,
    manifest: &Manifest,
    statement: &Statement,
    key: &Verifier,
    url: &DatabaseUrl,
) -> anyhow::Result<()> {
    let target = url.sqlite_path().context("a SQLite URL has a path")?;
    let dir = target.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        // A data directory is the owner's only, as `chaperone up` makes it.
        crate::cmd::server::create_private_dir(dir)?;
    }
    // Held until the restored database is in place: a server still running on the target
    // is refused here, before anything is staged, and none can start on it (or create it)
    // meanwhile, so what is checked next stays true.
    let _lock = chaperone_store::DatabaseLock::acquire(target)?;
    if target.exists() && !args.force {
        bail!(
            "{} exists; restoring over it needs --force (stop the server first)",
            target.display()
        );
    }
    let staging = dir.join(format!(
        ".{}.restoring",
        target.file_name().and_then(|n| n.to_str()).unwrap_or("db")
    ));
    let remove_staging = || {
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", staging.display()));
        }
    };
    remove_staging();
    let checked = async {
        stage(args, manifest, statement, &staging)?;
        let store = Store::connect(&DatabaseUrl::sqlite_file(&staging)).await?;
        let checked = verify(&store, manifest, statement, key).await;
        store.close().await;
        checked
    }
    .await;
    if let Err(error) = checked {
        remove_staging();
        return Err(error.context(format!("{} was left as it was", target.display())));
    }
    // A replaced database is moved aside with its journal, never deleted. So is a journal
    // left without its database: SQLite would replay it onto the restored file, which would
    // then no longer be the one verified.
    let beside = |suffix: &str| PathBuf::from(format!("{}{suffix}", target.display()));
    let mut kept_as = None;
    if ["", "-wal", "-shm"]
        .iter()
        .any(|suffix| beside(suffix).exists())
    {
        // A name no earlier restore used (two in one second would share the time), and a
        // move that fails rather than replace a file of that name.
        let secs = chaperone_server::SystemClock.now().unix_secs();
        let taken = |stamp: &str| {
            ["", "-wal", "-shm"].iter().any(|suffix| {
                Path::new(&format!("{}.replaced-{stamp}{suffix}", target.display())).exists()
            })
        };
        let stamp = (0..)
            .map(|n: u32| match n {
                0 => secs.to_string(),
                n => format!("{secs}-{n}"),
            })
            .find(|stamp| !taken(stamp))
            .expect("a free name");
        for suffix in ["", "-wal", "-shm"] {
            let from = beside(suffix);
            if from.exists() {
                let to = format!("{}.replaced-{stamp}{suffix}", target.display());
                std::fs::hard_link(&from, &to)
                    .and_then(|()| std::fs::remove_file(&from))
                    .with_context(|| format!("cannot move {} aside to {to}", from.display()))?;
            }
        }
        kept_as = Some(format!("{}.replaced-{stamp}*", target.display()));
    }
    std::fs::rename(&staging, target)
        .with_context(|| format!("cannot move the restored database to {}", target.display()))?;
    // The renames are durable only once the directory is.
    sync_dir_of(target)?;
    remove_staging();
    // Said once the restore is in place: output a reader may stop taking comes last.
    if let Some(kept) = kept_as {
        println!("What it replaced was kept as {kept}.");
    }
    report(manifest, statement, &target.display().to_string());
    println!(
        "Start the server on it with its unseal key (for `chaperone up`, copy unseal.key into \
         the data directory) or unseal it with its shares."
    );
    Ok(())
}

async fn restore_postgres(
    args: &RestoreArgs,
    manifest: &Manifest,
    statement: &Statement,
    key: &Verifier,
    url: &DatabaseUrl,
) -> anyhow::Result<()> {
    if chaperone_store::postgres_has_tables(url).await? {
        bail!(
            "{} is not empty: restore into a new, empty database and point the servers at it \
             (a PostgreSQL database is never replaced in place{})",
            url.redacted(),
            if args.force {
                ", even with --force"
            } else {
                ""
            }
        );
    }
    let mut staging = std::env::temp_dir();
    let mut id = [0u8; 8];
    chaperone_crypto::random_bytes(&mut id);
    staging.push(format!("chaperone-restore-{}.pgdump", hex::encode(id)));
    // Only what this restore put there is ever dropped: a failure before `pg_restore` has
    // succeeded (a damaged backup, a missing tool, an object already there) leaves the
    // target as it was, since `--single-transaction` restores all or nothing.
    let mut restored = false;
    let result = async {
        stage(args, manifest, statement, &staging)?;
        let (bare, password) = url.split_password();
        let mut command = Command::new(postgres_tool("pg_restore")?);
        command
            .args([
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
            ])
            .arg("--dbname")
            .arg(&bare)
            .arg(&staging);
        if let Some(password) = &password {
            command.env("PGPASSWORD", password.as_str());
        }
        let status = command.status().context("cannot run pg_restore")?;
        if !status.success() {
            bail!("pg_restore failed ({status})");
        }
        restored = true;
        let store = Store::connect(url).await?;
        let checked = verify(&store, manifest, statement, key).await;
        store.close().await;
        checked
    }
    .await;
    let _ = std::fs::remove_file(&staging);
    if let Err(error) = result {
        if !restored {
            return Err(error.context("nothing was restored; the target database is unchanged"));
        }
        // The verification's failure is what matters: a failure to clear up after it must
        // not hide it, nor leave the operator to believe the database is usable.
        if let Err(clear) = chaperone_store::postgres_clear(url).await {
            return Err(error.context(format!(
                "emptying the target database failed too ({clear}): it still holds the \
                 restore that did not verify; do not start a server on it, empty it by hand"
            )));
        }
        return Err(error.context("the target database was emptied again"));
    }
    report(manifest, statement, &url.redacted());
    println!("Start the servers on it and unseal them with the shares.");
    Ok(())
}

/// Checks a restored database against the signed statement: the same ledger size, the
/// entries recomputed into the signed root, and every kept checkpoint signed by the key
/// and matching the recomputed head at its size.
async fn verify(
    store: &Store,
    manifest: &Manifest,
    statement: &Statement,
    key: &Verifier,
) -> anyhow::Result<()> {
    let checkpoints = store.checkpoints().await?;
    let sizes: Vec<u64> = checkpoints.iter().map(|(size, _)| *size).collect();
    let (size, audited) = store
        .audit_ledger(&sizes)
        .await
        .map_err(|e| anyhow!("the restored ledger does not verify: {e}"))?;
    if size != statement.size {
        bail!(
            "the restored ledger holds {size} entries; the signed statement says {}",
            statement.size
        );
    }
    let root = base64::engine::general_purpose::STANDARD.encode(audited.root);
    if root != statement.root {
        bail!("the restored ledger's root differs from the signed one: entries were changed");
    }
    if store
        .ledger_verifier()
        .await?
        .is_some_and(|stored| stored != key.to_string())
    {
        bail!("the restored database names another ledger key than {key}");
    }
    let mut verified = 0;
    for (at, text) in checkpoints.iter().filter(|(at, _)| *at <= size) {
        let body = note::open(text.as_bytes(), std::slice::from_ref(key))
            .map_err(|e| anyhow!("the checkpoint at {at} is not signed by {key}: {e}"))?;
        let checkpoint =
            Checkpoint::parse(&body).map_err(|e| anyhow!("the checkpoint at {at}: {e}"))?;
        let head = audited.heads.get(at).copied();
        if checkpoint.size != *at || head != Some(checkpoint.root) {
            bail!("the signed checkpoint at {at} does not match the restored entries");
        }
        verified += 1;
    }
    if let Some(note_text) = &manifest.ledger.checkpoint
        && !checkpoints.iter().any(|(_, kept)| kept == note_text)
    {
        bail!("the manifest's checkpoint is not among the restored database's checkpoints");
    }
    println!(
        "Verified: the signed statement, the snapshot's SHA-256, and the ledger's {size} \
         entries against it and {verified} signed checkpoints."
    );
    // The newest entry's time is covered by the signed root: unlike the signing time (which
    // an admin could have had put on an old snapshot), it dates what the snapshot holds.
    if let Some((_, newest)) = store
        .ledger_entries(size.saturating_sub(1), size)
        .await?
        .pop()
        && let Some(time) = serde_json::from_slice::<serde_json::Value>(&newest)
            .ok()
            .and_then(|entry| entry["time"].as_str().map(str::to_owned))
    {
        println!("Its newest ledger entry was recorded at {time}.");
    }
    Ok(())
}

/// What was restored, dated by the server's signature: the manifest's own date is not
/// signed, so it is shown only for a statement from before the time was signed.
fn report(manifest: &Manifest, statement: &Statement, target: &str) {
    let when = match &statement.signed_at {
        Some(at) => format!("signed by the server at {at}"),
        None => format!(
            "of {} (a date the statement does not sign)",
            manifest.created_at
        ),
    };
    println!(
        "Restored the backup {when} ({} ledger entries) into {target}.",
        manifest.ledger.size
    );
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// `pg_dump` or `pg_restore`: the newest in Debian's /usr/lib/postgresql/<version>/bin
/// (it must be at least the server's version), else the one on PATH.
fn postgres_tool(name: &str) -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let tool = entry.path().join("bin").join(name);
            tool.exists().then_some((version, tool))
        })
        .collect();
    found.sort();
    if let Some((_, tool)) = found.pop() {
        return Ok(tool);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|tool| tool.exists())
        })
        .with_context(|| format!("{name} is needed: install PostgreSQL's client tools"))
}

fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// Syncs the directory holding `path` (`.` for a bare name): a rename into it is durable
/// only then.
fn sync_dir_of(path: &Path) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Creates `path` as a new directory, mode 0700; an existing path is refused, so a backup
/// never lands in a directory someone else prepared.
fn create_new_dir(path: &Path) -> anyhow::Result<()> {
    // Its parents are made as needed (private too); the backup directory itself must be
    // new.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::cmd::server::create_private_dir(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).with_context(|| {
        if path.exists() {
            format!(
                "{} exists; a backup goes into a new directory",
                path.display()
            )
        } else {
            format!("cannot create {}", path.display())
        }
    })
}

/// Creates `path` as a new empty file, mode 0600 (never following a symbolic link or
/// reusing a file someone else made); tools then write into it.
fn create_private_file(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .with_context(|| format!("cannot create {}", path.display()))
}
