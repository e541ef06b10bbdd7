//! `chaperone backup` and `chaperone restore`: online snapshots with a manifest, and restores
//! that verify the ledger before the data is used.
//!
//! A backup is a directory: the snapshot (`chaperone.db` for SQLite, `chaperone.pgdump` for
//! PostgreSQL, in `pg_dump`'s custom format) and `manifest.json`. The snapshot is the
//! database as stored, so every secret in it stays encrypted under the root key; the unseal
//! key or shares are never part of a backup. The manifest holds the snapshot's SHA-256, the
//! ledger's size and Merkle root in the snapshot, the latest signed checkpoint at or below
//! that size, and the ledger's verifier key.
//!
//! A restore checks the SHA-256, loads the snapshot beside the target (SQLite) or into the
//! empty target database (PostgreSQL), recomputes the whole ledger from its entries, and
//! checks it against the manifest's root and against every signed checkpoint the database
//! holds. Only then does the SQLite file take the target's place; a PostgreSQL target that
//! fails is emptied again.

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
}

/// `chaperone backup`.
#[derive(clap::Args, Debug)]
pub(crate) struct BackupArgs {
    /// Directory to write the backup into (created; must be empty if it exists).
    out: PathBuf,
    #[command(flatten)]
    database: DatabaseArgs,
}

/// `chaperone restore`.
#[derive(clap::Args, Debug)]
pub(crate) struct RestoreArgs {
    /// A directory written by `chaperone backup`.
    backup: PathBuf,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Replace a target that already holds data.
    #[arg(long)]
    force: bool,
    /// The ledger's verifier key (or a file holding it), to check the checkpoints against
    /// a key you hold rather than the one in the manifest.
    #[arg(long)]
    key: Option<String>,
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
    if let Some(path) = url.sqlite_path()
        && !path.exists()
    {
        bail!("{} does not exist", path.display());
    }
    create_empty_dir(&args.out)?;
    runtime()?.block_on(async {
        let store = Store::connect(&url)
            .await
            .with_context(|| format!("cannot open {}", url.redacted()))?;
        let (snapshot_name, ledger) = match store.backend() {
            Backend::Sqlite => {
                let name = "chaperone.db";
                let path = args.out.join(name);
                store.snapshot_into(&path).await?;
                set_private(&path)?;
                // The copy is read through its own store, as a restore will read it.
                let copy = Store::connect(&DatabaseUrl::sqlite_file(&path)).await?;
                let state = ledger_state(&copy, copy.ledger_size().await?).await;
                copy.close().await;
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(args.out.join(format!("{name}{suffix}")));
                }
                (name, state?)
            }
            Backend::Postgres => {
                let name = "chaperone.pgdump";
                let path = args.out.join(name);
                let snapshot = store.export_snapshot().await?;
                let size = snapshot.ledger_size;
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
                set_private(&path)?;
                // Tiles and checkpoints at or below `size` never change, so the live
                // database gives the snapshot's head.
                (name, ledger_state(&store, size).await?)
            }
        };
        store.close().await;
        let path = args.out.join(snapshot_name);
        let (sha256, bytes) = sha256_file(&path)?;
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            created_at: chaperone_server::SystemClock.now().to_rfc3339(),
            backend: backend_name(url.backend()).to_owned(),
            snapshot: snapshot_name.to_owned(),
            sha256,
            bytes,
            ledger,
        };
        let text = serde_json::to_string_pretty(&manifest)? + "\n";
        crate::cmd::server::write_private(&args.out.join(MANIFEST), text.as_bytes())?;
        println!(
            "Backed up {} to {}: {} bytes, SHA-256 {}\nLedger: {} entries{}",
            url.redacted(),
            args.out.display(),
            manifest.bytes,
            manifest.sha256,
            manifest.ledger.size,
            match &manifest.ledger.checkpoint {
                Some(_) => ", with its latest signed checkpoint",
                None => " (no signed checkpoint yet)",
            }
        );
        println!(
            "The snapshot is encrypted as stored. Keep the unseal key or shares apart from it."
        );
        Ok(())
    })
}

async fn ledger_state(store: &Store, size: u64) -> anyhow::Result<LedgerState> {
    let root = store.ledger_root(size).await?;
    Ok(LedgerState {
        size,
        root: base64::engine::general_purpose::STANDARD.encode(root),
        checkpoint: store.checkpoint_at_most(size).await?.map(|(_, note)| note),
        verifier: store.ledger_verifier().await?,
    })
}

pub(crate) fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(args.backup.join(MANIFEST))
        .with_context(|| format!("cannot read {}", args.backup.join(MANIFEST).display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{MANIFEST} is not a Chaperone backup manifest"))?;
    if manifest.format != FORMAT {
        bail!(
            "the backup's format is {:?}; this binary restores {FORMAT}",
            manifest.format
        );
    }
    if manifest.snapshot.contains(['/', '\\']) || manifest.snapshot.starts_with('.') {
        bail!("the manifest names an invalid snapshot file");
    }
    let snapshot = args.backup.join(&manifest.snapshot);
    let (sha256, bytes) = sha256_file(&snapshot)?;
    if sha256 != manifest.sha256 || bytes != manifest.bytes {
        bail!(
            "{} does not match the manifest (SHA-256 {sha256}, {bytes} bytes; the manifest says \
             {}, {} bytes): the backup is damaged or was altered",
            snapshot.display(),
            manifest.sha256,
            manifest.bytes
        );
    }
    let key = match (&args.key, &manifest.ledger.verifier) {
        (Some(text), in_manifest) => {
            let key = crate::cmd::ledger::parse_key(text)?;
            if in_manifest.as_deref().is_some_and(|m| m != key.to_string()) {
                bail!("the manifest's ledger key is not the key given with --key");
            }
            Some(key)
        }
        (None, Some(text)) => {
            let key: Verifier = text
                .parse()
                .map_err(|e| anyhow!("the manifest's ledger key is malformed: {e:?}"))?;
            eprintln!(
                "note: checking the ledger against the key in the manifest, {key}; pass --key \
                 to check it against a key you hold"
            );
            Some(key)
        }
        (None, None) => None,
    };
    if manifest.ledger.checkpoint.is_some() && key.is_none() {
        bail!("the manifest holds no ledger key: pass --key (see `chaperone ledger key`)");
    }
    let url = args.database.url()?;
    let backend = backend_name(url.backend());
    if backend != manifest.backend {
        bail!(
            "this is a {} backup; restore it into a {} database",
            manifest.backend,
            manifest.backend
        );
    }
    runtime()?.block_on(async {
        match url.backend() {
            Backend::Sqlite => {
                restore_sqlite(&args, &manifest, &snapshot, &url, key.as_ref()).await
            }
            Backend::Postgres => {
                restore_postgres(&args, &manifest, &snapshot, &url, key.as_ref()).await
            }
        }
    })
}

async fn restore_sqlite(
    args: &RestoreArgs,
    manifest: &Manifest,
    snapshot: &Path,
    url: &DatabaseUrl,
    key: Option<&Verifier>,
) -> anyhow::Result<()> {
    let target = url.sqlite_path().context("a SQLite URL has a path")?;
    if target.exists() && !args.force {
        bail!(
            "{} exists; restoring over it needs --force (stop the server first)",
            target.display()
        );
    }
    let dir = target.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        // A data directory is the owner's only, as `chaperone up` makes it.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let staging = dir.join(format!(
        ".{}.restoring",
        target.file_name().and_then(|n| n.to_str()).unwrap_or("db")
    ));
    let remove_staging = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", staging.display()));
        }
    };
    remove_staging();
    std::fs::copy(snapshot, &staging)
        .with_context(|| format!("cannot copy the snapshot to {}", staging.display()))?;
    set_private(&staging)?;
    let store = Store::connect(&DatabaseUrl::sqlite_file(&staging)).await?;
    let checked = verify(&store, manifest, key).await;
    store.close().await;
    if let Err(error) = checked {
        remove_staging();
        return Err(error.context(format!("{} was left as it was", target.display())));
    }
    // The old database's journal must not be applied to the restored file.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", target.display()));
    }
    std::fs::rename(&staging, target)
        .with_context(|| format!("cannot move the restored database to {}", target.display()))?;
    remove_staging();
    report(manifest, &target.display().to_string());
    println!(
        "Start the server on it with its unseal key (for `chaperone up`, copy unseal.key into \
         the data directory) or unseal it with its shares."
    );
    Ok(())
}

async fn restore_postgres(
    args: &RestoreArgs,
    manifest: &Manifest,
    snapshot: &Path,
    url: &DatabaseUrl,
    key: Option<&Verifier>,
) -> anyhow::Result<()> {
    if chaperone_store::postgres_has_tables(url).await? {
        if !args.force {
            bail!(
                "{} already holds tables; restoring over it needs --force (stop the servers \
                 first)",
                url.redacted()
            );
        }
        chaperone_store::postgres_clear(url).await?;
    }
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
        .arg(snapshot);
    if let Some(password) = &password {
        command.env("PGPASSWORD", password.as_str());
    }
    let status = command.status().context("cannot run pg_restore")?;
    if !status.success() {
        chaperone_store::postgres_clear(url).await?;
        bail!("pg_restore failed ({status}); the target was emptied again");
    }
    let store = Store::connect(url).await?;
    let checked = verify(&store, manifest, key).await;
    store.close().await;
    if let Err(error) = checked {
        chaperone_store::postgres_clear(url).await?;
        return Err(error.context("the target database was emptied again"));
    }
    report(manifest, &url.redacted());
    println!("Start the servers on it and unseal them with the shares.");
    Ok(())
}

/// Checks a restored database against the manifest: same ledger size, the entries
/// recomputed into the manifest's root, and every kept checkpoint signed by the key and
/// matching the recomputed head at its size.
async fn verify(store: &Store, manifest: &Manifest, key: Option<&Verifier>) -> anyhow::Result<()> {
    let stored_key = store.ledger_verifier().await?;
    if let (Some(stored), Some(key)) = (&stored_key, key)
        && *stored != key.to_string()
    {
        bail!("the restored database names another ledger key than the one checked against");
    }
    let checkpoints = store.checkpoints().await?;
    let sizes: Vec<u64> = checkpoints.iter().map(|(size, _)| *size).collect();
    let (size, audited) = store
        .audit_ledger(&sizes)
        .await
        .map_err(|e| anyhow!("the restored ledger does not verify: {e}"))?;
    if size != manifest.ledger.size {
        bail!(
            "the restored ledger holds {size} entries; the manifest says {}",
            manifest.ledger.size
        );
    }
    let root = base64::engine::general_purpose::STANDARD.encode(audited.root);
    if root != manifest.ledger.root {
        bail!("the restored ledger's root differs from the manifest's: entries were changed");
    }
    let mut verified = 0;
    for (at, text) in checkpoints.iter().filter(|(at, _)| *at <= size) {
        let key = key.context("the database holds signed checkpoints but no key was given")?;
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
    println!("Ledger verified: {size} entries, {verified} signed checkpoints match them.");
    Ok(())
}

fn report(manifest: &Manifest, target: &str) {
    println!(
        "Restored the backup of {} ({} ledger entries) into {target}.",
        manifest.created_at, manifest.ledger.size
    );
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// `pg_dump` or `pg_restore`: from PATH, else the newest in Debian's
/// /usr/lib/postgresql/<version>/bin (which must be at least the server's version).
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
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, bytes))
}

fn create_empty_dir(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        let mut entries =
            std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?;
        if entries.next().is_some() {
            bail!("{} exists and is not empty", path.display());
        }
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn set_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
    let _ = path;
    Ok(())
}
