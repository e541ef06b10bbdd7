//! `chaperone ledger ...`: the tamper-evident ledger.
//!
//! `verify` recomputes the whole tree from the entry bundles, offline from an export or over
//! the API, and remembers the last checkpoint it verified (and the log's key, on first use)
//! under `$XDG_CONFIG_HOME/chaperone/checkpoints/`, so that a later run also proves the log
//! only grew since: a truncated or rewritten history fails even under a valid new signature.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chaperone_ledger::audit::{Audit, BundleInput};
use chaperone_ledger::checkpoint::Checkpoint;
use chaperone_ledger::note::{self, Verifier};
use chaperone_ledger::proof::TlogProof;
use chaperone_ledger::tiles::{self, TileId, TileKind, WIDTH, split_tile};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::{Client, ClientArgs, Method, session};

/// `chaperone ledger ...`
#[derive(Subcommand, Debug)]
pub(crate) enum LedgerCommand {
    /// Print the ledger's verifier key (`name+hex8+base64`), for offline verification.
    Key {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a signed checkpoint of the ledger as it is now.
    Checkpoint {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write the ledger as static tlog-tiles files (checkpoint, tiles, entry bundles) to DIR.
    /// Full tiles already in DIR are kept, so a repeated export fetches only what is new.
    Export {
        /// Target directory (created if missing).
        dir: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Recompute the whole ledger and check it against its signed checkpoint and the last
    /// checkpoint verified before. Names the first bad entry on tampering.
    Verify(VerifyArgs),
    /// Write a C2SP tlog-proof that entry INDEX is in the ledger, to stdout.
    Prove {
        /// The entry's index.
        index: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check a tlog-proof file offline.
    VerifyProof {
        /// The proof file (`-` for stdin).
        file: PathBuf,
        /// The ledger's verifier key, or a file holding it.
        #[arg(long)]
        key: String,
        /// The entry to check (default: the entry the proof carries).
        #[arg(long)]
        entry: Option<PathBuf>,
    },
    /// Find entries by actor, vendor, action, resource prefix and time, oldest first.
    Search(SearchArgs),
}

/// `chaperone ledger verify`
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// An export made by `chaperone ledger export` (or any tlog-tiles directory).
    #[arg(required_unless_present = "server", conflicts_with = "server")]
    dir: Option<PathBuf>,
    /// Read the ledger from this server instead (needs an auditor, security or admin
    /// session).
    #[arg(long)]
    server: Option<String>,
    /// The verifier key (`name+hex8+base64`) or a file holding it. Default: the key saved
    /// on the first verification of this log.
    #[arg(long)]
    key: Option<String>,
    /// Neither check against nor update the last checkpoint verified before (for an
    /// archived export older than that checkpoint). Which log a server served before is
    /// still checked.
    #[arg(long)]
    no_remember: bool,
    /// PEM file of the CA that signs the server's TLS certificate (with --server).
    #[arg(long, env = "CHAPERONE_CACERT")]
    ca_cert: Option<PathBuf>,
}

/// `chaperone ledger search`
#[derive(Args, Debug)]
pub(crate) struct SearchArgs {
    /// The actor: a person's name or id.
    #[arg(long)]
    actor: Option<String>,
    /// The actor's vendor: its name or id.
    #[arg(long)]
    vendor: Option<String>,
    /// Action, e.g. `secret.read`, or a family ending in `.` (`secret.`).
    #[arg(long)]
    action: Option<String>,
    /// Resource prefix, e.g. `team/payments/`.
    #[arg(long)]
    resource: Option<String>,
    /// From this time (RFC 3339 or a prefix, e.g. `2026-11-25`).
    #[arg(long)]
    since: Option<String>,
    /// Until this time (exclusive).
    #[arg(long)]
    until: Option<String>,
    /// Print at most this many entries.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print entries as JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn run(command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Key { client } => print!("{}", Client::new(&client).text("ledger/key")?),
        LedgerCommand::Checkpoint { client } => {
            print!(
                "{}",
                Client::authenticated(&client)?.text("ledger/checkpoint")?
            )
        }
        LedgerCommand::Export { dir, client } => export(&Client::authenticated(&client)?, &dir)?,
        LedgerCommand::Verify(args) => verify(&args)?,
        LedgerCommand::Prove { index, client } => {
            print!(
                "{}",
                prove(&Client::authenticated(&client)?, index)?.to_text()
            )
        }
        LedgerCommand::VerifyProof { file, key, entry } => verify_proof(&file, &key, entry)?,
        LedgerCommand::Search(args) => search(&args)?,
    }
    Ok(())
}

/// Where the log's files come from.
enum Source {
    Dir(PathBuf),
    Server(Client),
}

/// The most bytes a file of the log can hold: a bundle, `WIDTH` entries of at most
/// `MAX_ENTRY` bytes each with its 2-byte length; a hash tile, `WIDTH` hashes; the
/// checkpoint, a signed note of a few signatures. Security decision: an export or a server
/// may be hostile, so a longer file or answer is refused before it is read whole, and the
/// auditor's machine cannot be made to run out of memory.
fn max_bytes(path: &str) -> u64 {
    if path.starts_with("tile/entries/") {
        WIDTH * (2 + tiles::MAX_ENTRY as u64)
    } else if path.starts_with("tile/") {
        WIDTH * 32
    } else {
        64 * 1024
    }
}

/// The regular file `file` (a `what`, at most `limit` bytes), `None` if absent. It is opened
/// without waiting (a named pipe would wait for a writer), then judged as opened, so that
/// nothing can be swapped in between: anything but a regular file, or a longer one, is
/// refused as `TAMPERED`.
fn read_regular(file: &Path, what: &str, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
    let opened = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(file)
    };
    let mut opened = match opened {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A path through something that is not a directory, or a loop of links: the
        // layout was changed.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
            bail!("TAMPERED: {}: {e}", file.display());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let metadata = opened
        .metadata()
        .with_context(|| format!("reading {}", file.display()))?;
    if !metadata.is_file() {
        bail!("TAMPERED: {} is not a regular file", file.display());
    }
    if metadata.len() > limit {
        bail!(
            "TAMPERED: {} holds {} bytes, more than a {what} can ({limit})",
            file.display(),
            metadata.len()
        );
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut opened, limit + 1), &mut bytes)
        .with_context(|| format!("reading {}", file.display()))?;
    if bytes.len() as u64 > limit {
        bail!(
            "TAMPERED: {} grew past {limit} bytes while read",
            file.display()
        );
    }
    Ok(Some(bytes))
}

impl Source {
    /// The file at `path` (tlog-tiles layout), `None` if absent. A file longer than the
    /// longest it can be (`max_bytes`), or not a regular file (a device, a pipe), is refused.
    fn get(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let limit = max_bytes(path);
        match self {
            Source::Dir(dir) => read_regular(&dir.join(path), path, limit),
            Source::Server(client) => client.bytes(&format!("ledger/{path}"), limit),
        }
    }

    fn need(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        self.get(path)?
            .ok_or_else(|| anyhow!("TAMPERED: the log has no {path}: it is incomplete"))
    }
}

fn export(client: &Client, dir: &Path) -> anyhow::Result<()> {
    let source = Source::Server(client.clone());
    let note = source.need("checkpoint")?;
    let size = unverified_checkpoint(&note)?.size;
    check_size(size)?;
    // Every tile is fetched, also those a previous export into `dir` wrote: a full tile
    // never changes, so one the server now serves differently is reported, not kept. Were
    // they skipped, entries changed in the database since would be verified from the old
    // copies and go unnoticed.
    let (mut written, mut kept) = (0usize, 0usize);
    let before = Source::Dir(dir.to_owned());
    for id in tiles::tiles_for_size(size) {
        let data = source.need(&id.path())?;
        if id.width == WIDTH
            && let Some(old) = before.get(&id.path())?
        {
            if old != data {
                bail!(
                    "TAMPERED: the server now serves {} differently from the copy exported to \
                     {} before: a full tile never changes",
                    id.path(),
                    dir.display()
                );
            }
            kept += 1;
            continue;
        }
        write_file(dir, &dir.join(id.path()), &data)?;
        written += 1;
    }
    // The checkpoint last: a reader of the directory never sees one whose tiles are missing.
    write_file(dir, &dir.join("checkpoint"), &note)?;
    println!(
        "exported {size} entries to {} ({written} tiles written, {kept} already there and \
         unchanged)",
        dir.display()
    );
    Ok(())
}

/// Writes `data` to `path`, a file under `base`, whole or not at all (a temporary file, then
/// a rename). Security decision: an export directory may have been prepared by someone else,
/// so nothing is written through a symbolic link below `base` (a link planted as `tile/` or
/// as a file would send the write elsewhere, with the auditor's rights), and the temporary
/// file gets a random name and is created new, so that nothing already there is followed.
fn write_file(base: &Path, path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let no_links = || -> anyhow::Result<()> {
        let rel = path.strip_prefix(base).unwrap_or(path);
        let mut at = base.to_path_buf();
        for part in rel.components() {
            at.push(part);
            if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                bail!(
                    "refusing to write through the symbolic link {}",
                    at.display()
                );
            }
        }
        Ok(())
    };
    no_links()?;
    let parent = path.parent().unwrap_or(base);
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    no_links()?;
    let mut suffix = [0u8; 8];
    chaperone_crypto::random_bytes(&mut suffix);
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, data)?;
            file.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The largest log this tool handles (2^40 entries): a checkpoint claiming more is refused
/// before anything is sized from it.
const MAX_SIZE: u64 = 1 << 40;

fn check_size(size: u64) -> anyhow::Result<()> {
    if size > MAX_SIZE {
        bail!(
            "TAMPERED: the checkpoint claims {size} entries, more than this tool handles \
             ({MAX_SIZE})"
        );
    }
    Ok(())
}

/// The checkpoint body, before its signature is checked (to learn the origin).
fn unverified_checkpoint(note: &[u8]) -> anyhow::Result<Checkpoint> {
    let text = std::str::from_utf8(note).context("TAMPERED: the checkpoint is not UTF-8")?;
    let body = text
        .split_once("\n\n")
        .map(|(body, _)| format!("{body}\n"))
        .context("TAMPERED: the checkpoint is not a signed note")?;
    Checkpoint::parse(&body).map_err(|e| anyhow!("TAMPERED: the checkpoint is malformed: {e}"))
}

/// A verifier key given as text or as a file holding it.
pub(crate) fn parse_key(text: &str) -> anyhow::Result<Verifier> {
    if let Ok(key) = text.trim().parse() {
        return Ok(key);
    }
    let from_file = std::fs::read_to_string(text)
        .with_context(|| format!("--key is neither a verifier key nor a readable file: {text}"))?;
    from_file
        .trim()
        .parse()
        .map_err(|e| anyhow!("{text} does not hold a verifier key: {e:?}"))
}

/// What `verify` remembers of a log: its key and the last checkpoint verified.
struct Remembered {
    dir: PathBuf,
    origin: String,
}

/// `text` as a file name: letters, digits, `.` and `-` kept, every other byte `_` and its
/// two hex digits (`/` is `_2F`, `_` is `_5F`). Two texts never share a name, so two logs
/// never share what is remembered of them.
fn file_stem(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02X}"));
        }
    }
    out
}

/// A file `verify` keeps, as text; `None` if absent. Read like an export's files (a named
/// pipe put there would otherwise hold `verify`), and refused when it is not text.
fn remembered_text(path: &Path) -> anyhow::Result<Option<String>> {
    match read_regular(path, "remembered file", 64 * 1024)? {
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| anyhow!("TAMPERED: {} is not text", path.display())),
        None => Ok(None),
    }
}

/// The names earlier versions gave: every byte but letters, digits, `.` and `-` became `_`,
/// so `a/b` and `a_b` shared one. A file under such a name is read only when the log's
/// name is not found under the new one, and only when its contents name this log.
fn legacy_stem(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Remembered {
    fn for_origin(origin: &str) -> anyhow::Result<Self> {
        let dir = session::dir()
            .context("neither XDG_CONFIG_HOME nor HOME is set")?
            .join("checkpoints");
        Ok(Self {
            dir,
            origin: origin.to_owned(),
        })
    }

    /// Where the log's name last verified from the server at `addr` is kept. Security
    /// decision: keys are remembered by the log's name, which the server states; a server
    /// whose key and log were deleted starts a new log under a new name, for which nothing
    /// is remembered. Remembering which log each server address served catches that: a
    /// server that changes its log's name is refused until `--key` pins the new one. The
    /// address is compared without case (host names have none), so `HTTPS://Node1` and
    /// `https://node1` share one memory.
    fn server_path(&self, addr: &str) -> PathBuf {
        let addr = addr.trim_end_matches('/').to_ascii_lowercase();
        self.dir.join(format!("server-{}.origin", file_stem(&addr)))
    }

    /// The log's name last verified from the server at `addr`.
    fn server_origin(&self, addr: &str) -> anyhow::Result<Option<String>> {
        let legacy = {
            let addr = addr.trim_end_matches('/').to_ascii_lowercase();
            self.dir
                .join(format!("server-{}.origin", legacy_stem(&addr)))
        };
        Ok(match remembered_text(&self.server_path(addr))? {
            Some(text) => Some(text),
            None => remembered_text(&legacy)?,
        }
        .map(|text| text.trim().to_owned()))
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", file_stem(&self.origin)))
    }

    /// The file `ext` under the new name, else under the legacy one (`true` for a legacy
    /// file).
    fn read(&self, ext: &str) -> anyhow::Result<Option<(PathBuf, String, bool)>> {
        let legacy = self
            .dir
            .join(format!("{}.{ext}", legacy_stem(&self.origin)));
        for (path, old) in [(self.path(ext), false), (legacy, true)] {
            if let Some(text) = remembered_text(&path)? {
                return Ok(Some((path, text, old)));
            }
        }
        Ok(None)
    }

    /// What is remembered under `ext` when it names this log (`named` says whether it
    /// does). A legacy file that names another log is another log's (the old names were
    /// not kept apart), and is passed over; a file under the new name cannot be another
    /// log's, so one that names another log was changed, and is an error.
    fn read_named(
        &self,
        ext: &str,
        named: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Option<(PathBuf, String)>> {
        match self.read(ext)? {
            Some((path, text, legacy)) if !named(&text) => {
                if legacy {
                    Ok(None)
                } else {
                    bail!(
                        "TAMPERED: {} does not belong to the log {}: it was changed",
                        path.display(),
                        self.origin
                    )
                }
            }
            Some((path, text, _)) => Ok(Some((path, text))),
            None => Ok(None),
        }
    }

    fn key(&self) -> anyhow::Result<Option<Verifier>> {
        let parse = |text: &str| text.trim().parse::<Verifier>();
        let named = |text: &str| parse(text).is_ok_and(|key| key.name() == self.origin);
        let Some((path, text)) = self.read_named("key", named)? else {
            return Ok(None);
        };
        parse(&text)
            .map(Some)
            .map_err(|e| anyhow!("{} is not a verifier key: {e:?}", path.display()))
    }

    fn checkpoint(&self) -> anyhow::Result<Option<String>> {
        let named = |text: &str| text.lines().next() == Some(self.origin.as_str());
        Ok(self.read_named("checkpoint", named)?.map(|(_, text)| text))
    }

    fn save(&self, key: &Verifier, note: &[u8]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        if !self.path("key").exists() {
            write_file(&self.dir, &self.path("key"), format!("{key}\n").as_bytes())?;
        }
        write_file(&self.dir, &self.path("checkpoint"), note)
    }
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let source = match (&args.dir, &args.server) {
        (Some(dir), _) => Source::Dir(dir.clone()),
        (None, Some(server)) => Source::Server(Client::authenticated(&ClientArgs {
            addr: Some(server.clone()),
            ca_cert: args.ca_cert.clone(),
        })?),
        (None, None) => bail!("give an export directory or --server URL"),
    };
    let note = source.need("checkpoint")?;
    let origin = unverified_checkpoint(&note)?.origin;
    let remembered = Remembered::for_origin(&origin)?;
    // Checked under --no-remember too: that flag is for archived exports, and a server that
    // now serves a log of another name and key would otherwise verify as a new log.
    if let (Some(addr), None) = (&args.server, &args.key)
        && let Some(before) = remembered.server_origin(addr)?
        && before != origin
    {
        bail!(
            "TAMPERED: the server at {addr} served the log {before} before, and now serves \
             {origin}: a new log name and key start a new history, and the old one was \
             not verified here. If the log was replaced on purpose, pin its new key with \
             --key (print it with `chaperone ledger key`)"
        );
    }
    let key = match (&args.key, remembered.key()?) {
        (Some(text), _) => parse_key(text)?,
        (None, Some(saved)) => saved,
        (None, None) => match &source {
            Source::Server(client) => {
                let key = parse_key(&client.text("ledger/key")?)?;
                let how_long = if args.no_remember {
                    "for this run only (--no-remember saves nothing)"
                } else {
                    "from now on"
                };
                eprintln!(
                    "note: no key given or saved for {origin}; trusting the server's key {key} \
                     {how_long} (pass --key to pin it yourself)"
                );
                key
            }
            Source::Dir(_) => bail!(
                "no verifier key for {origin}: pass --key (print it with `chaperone ledger key`)"
            ),
        },
    };
    let text = note::open(&note, std::slice::from_ref(&key)).map_err(|e| {
        anyhow!("TAMPERED: the checkpoint is not signed by the ledger key {key}: {e}")
    })?;
    let checkpoint = Checkpoint::parse(&text)
        .map_err(|e| anyhow!("TAMPERED: the checkpoint is malformed: {e}"))?;
    if checkpoint.origin != key.name() {
        bail!(
            "TAMPERED: the checkpoint names the log {} but the key is for {}",
            checkpoint.origin,
            key.name()
        );
    }
    check_size(checkpoint.size)?;
    let remembered_checkpoint = if args.no_remember {
        None
    } else {
        remembered.checkpoint()?
    };
    let earlier = match remembered_checkpoint {
        Some(old) => {
            let text = note::open(old.as_bytes(), std::slice::from_ref(&key)).map_err(|e| {
                anyhow!(
                    "TAMPERED: the checkpoint remembered in {} does not verify with this key \
                     ({e}); was the log's key replaced?",
                    remembered.path("checkpoint").display()
                )
            })?;
            Some(Checkpoint::parse(&text).map_err(|e| anyhow!("remembered checkpoint: {e}"))?)
        }
        None => None,
    };
    if let Some(old) = &earlier
        && old.size > checkpoint.size
    {
        bail!(
            "TAMPERED: entry {}: missing; the log was truncated to {} entries, but a checkpoint \
             of {} entries was verified before (to check an archived export older than that \
             checkpoint, pass --no-remember)",
            checkpoint.size,
            checkpoint.size,
            old.size
        );
    }
    let earlier_sizes: Vec<u64> = earlier.iter().map(|c| c.size).collect();
    let mut audit = Audit::new(checkpoint.size, &earlier_sizes);
    // Fetched 64 bundles at a time, then checked and hashed on all cores. The list is walked,
    // never built: a checkpoint claiming 2^40 entries costs nothing until its first bundle
    // is missing.
    let mut wanted = audit.wanted();
    loop {
        let part: Vec<(u64, u64)> = wanted.by_ref().take(64).collect();
        if part.is_empty() {
            break;
        }
        let mut fetched = Vec::with_capacity(part.len());
        for &(index, width) in &part {
            let bundle = source.need(
                &TileId {
                    kind: TileKind::Entries,
                    index,
                    width,
                }
                .path(),
            )?;
            let leaf_id = TileId {
                kind: TileKind::Hashes(0),
                index,
                width,
            };
            let leaves = match source.get(&leaf_id.path())? {
                Some(data) => {
                    Some(split_tile(0, index, &data).map_err(|e| anyhow!("TAMPERED: {e}"))?)
                }
                None => {
                    eprintln!(
                        "warning: the log has no {}: changed entries there are caught by the \
                         root, but cannot be named",
                        leaf_id.path()
                    );
                    None
                }
            };
            fetched.push((index, width, bundle, leaves));
        }
        let inputs: Vec<BundleInput<'_>> = fetched
            .iter()
            .map(|(index, width, data, leaves)| BundleInput {
                index: *index,
                width: *width,
                data,
                leaf_tile: leaves.as_deref(),
            })
            .collect();
        audit
            .bundles(&inputs)
            .map_err(|p| anyhow!("TAMPERED: {p}"))?;
    }
    let audited = audit.finish().map_err(|p| anyhow!("TAMPERED: {p}"))?;
    let (root, heads) = (audited.root, &audited.heads);
    if root != checkpoint.root {
        bail!(
            "TAMPERED: the {} entries do not hash to the root the checkpoint signs",
            checkpoint.size
        );
    }
    if let Some(old) = &earlier
        && heads.get(&old.size) != Some(&old.root)
    {
        bail!(
            "TAMPERED: the first {} entries differ from the ones a checkpoint verified before \
             covered: history was rewritten and re-signed",
            old.size
        );
    }
    // The tiles above level 0 (what proofs are made from) must match the entries too.
    for id in tiles::tiles_for_size(checkpoint.size) {
        let TileKind::Hashes(level @ 1..) = id.kind else {
            continue;
        };
        let data = source.need(&id.path())?;
        let hashes = split_tile(level, id.index, &data).map_err(|e| anyhow!("TAMPERED: {e}"))?;
        audited
            .check_tile(level, id.index, &hashes)
            .map_err(|p| anyhow!("TAMPERED: {p}"))?;
    }
    if !args.no_remember {
        remembered.save(&key, &note)?;
        if let Some(addr) = &args.server {
            write_file(
                &remembered.dir,
                &remembered.server_path(addr),
                format!("{origin}\n").as_bytes(),
            )?;
        }
    }
    let since = earlier
        .map(|c| format!(", consistent with the {} entries verified before", c.size))
        .unwrap_or_default();
    println!(
        "ledger verified: {} entries of {}, root {}, signed by {key}{since}",
        checkpoint.size,
        checkpoint.origin,
        STANDARD.encode(root)
    );
    Ok(())
}

fn prove(client: &Client, index: u64) -> anyhow::Result<TlogProof> {
    let note = client
        .bytes("ledger/checkpoint", max_bytes("checkpoint"))?
        .context("the server has no checkpoint")?;
    let size = unverified_checkpoint(&note)?.size;
    if index >= size {
        bail!("the ledger has {size} entries; there is no entry {index}");
    }
    let id = TileId {
        kind: TileKind::Entries,
        index: index / WIDTH,
        width: (size - index / WIDTH * WIDTH).min(WIDTH),
    };
    let bundle = client
        .bytes(&format!("ledger/{}", id.path()), max_bytes(&id.path()))?
        .with_context(|| format!("the server has no {}", id.path()))?;
    let entries = tiles::split_bundle(id.index, &bundle)?;
    let entry = entries
        .get((index % WIDTH) as usize)
        .with_context(|| format!("entry {index} is missing from its bundle"))?;
    let answer = client.call(
        Method::Get,
        &format!("ledger/proof/inclusion?index={index}&size={size}"),
        None,
    )?;
    let hashes = answer["proof"]
        .as_array()
        .context("the server's proof has no hashes")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .and_then(|b| b.try_into().ok())
                .context("the server's proof holds a malformed hash")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let proof = TlogProof {
        extra: Some(entry.to_vec()),
        index,
        hashes,
        checkpoint: String::from_utf8(note).context("the checkpoint is not UTF-8")?,
    };
    Ok(proof)
}

fn verify_proof(file: &Path, key: &str, entry: Option<PathBuf>) -> anyhow::Result<()> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the proof from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let key = parse_key(key)?;
    let proof = TlogProof::parse(&text)?;
    let entry = entry
        .map(|p| std::fs::read(&p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let checkpoint = proof.verify(std::slice::from_ref(&key), entry.as_deref())?;
    println!(
        "proof verified: entry {} is in {} (size {}), signed by {key}",
        proof.index, checkpoint.origin, checkpoint.size
    );
    Ok(())
}

fn search(args: &SearchArgs) -> anyhow::Result<()> {
    let client = Client::authenticated(&args.client)?;
    let mut params: Vec<(&str, &str)> = Vec::new();
    for (name, value) in [
        ("actor", &args.actor),
        ("vendor", &args.vendor),
        ("action", &args.action),
        ("resource", &args.resource),
        ("since", &args.since),
        ("until", &args.until),
    ] {
        if let Some(value) = value {
            params.push((name, value));
        }
    }
    let query: String = params
        .iter()
        .map(|(k, v)| format!("&{k}={}", crate::client::query_value(v)))
        .collect();
    let mut printed = 0usize;
    let mut start = 0u64;
    let mut out = std::io::stdout().lock();
    while printed < args.limit {
        let limit = (args.limit - printed).min(1000);
        let answer = client.call(
            Method::Get,
            &format!("ledger/search?start={start}&limit={limit}{query}"),
            None,
        )?;
        let entries = answer["entries"].as_array().cloned().unwrap_or_default();
        for entry in &entries {
            if args.json {
                writeln!(out, "{entry}")?;
            } else {
                writeln!(out, "{}", summary(entry))?;
            }
        }
        printed += entries.len();
        match answer["next"].as_u64() {
            Some(next) => start = next,
            None => break,
        }
    }
    if printed == 0 {
        eprintln!("no matching entries");
    }
    Ok(())
}

/// One line per entry: index, time, outcome, action, resource, actor.
fn summary(entry: &Value) -> String {
    let s = |v: &Value| super::shown(v, "-").into_owned();
    let actor = &entry["actor"];
    let who: HashMap<&str, String> = ["person", "vendor", "token"]
        .into_iter()
        .filter(|k| actor[*k].is_string())
        .map(|k| (k, super::shown(&actor[k], "-").into_owned()))
        .collect();
    // A person, else the token that acted (the initial admin token's, or a request link's
    // `secret-request:ID`), else nobody known.
    let mut who_text = who
        .get("person")
        .cloned()
        .or_else(|| who.get("token").map(|t| format!("token {t}")))
        .unwrap_or_else(|| "-".into());
    if let Some(v) = who.get("vendor") {
        who_text.push_str(&format!(" ({v})"));
    }
    let reasons = entry["reasons"]
        .as_array()
        .filter(|r| !r.is_empty())
        .map(|r| {
            format!(
                " [{}]",
                r.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .unwrap_or_default();
    format!(
        "{:>8}  {}  {:<8} {:<22} {:<30} {}  {}{reasons}",
        entry["seq"],
        s(&entry["time"]),
        s(&entry["outcome"]),
        s(&entry["action"]),
        s(&entry["resource"]),
        who_text,
        s(&entry["client_ip"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_names_the_token_when_no_person_acted() {
        let entry = |actor: Value| {
            serde_json::json!({ "seq": 7, "time": "2026-11-28T10:00:00Z", "outcome": "success",
                                "action": "secret.write", "resource": "acme/db", "actor": actor })
        };
        let line = summary(&entry(
            serde_json::json!({ "token": "secret-request:req_1" }),
        ));
        assert!(line.contains("token secret-request:req_1"), "{line}");
        let line = summary(&entry(
            serde_json::json!({ "person": "per_1", "vendor": "ven_1", "token": "tok_1" }),
        ));
        assert!(
            line.contains("per_1 (ven_1)") && !line.contains("tok_1"),
            "{line}"
        );
        assert!(summary(&entry(serde_json::json!({}))).contains(" -  "));
    }

    #[test]
    fn two_log_names_never_share_a_file_name() {
        assert_eq!(
            file_stem("chaperone-1a2b3c4d/ledger"),
            "chaperone-1a2b3c4d_2Fledger"
        );
        let names = ["a/b", "a_b", "a_2Fb", "a:b", "a%2Fb", "é", "_C3_A9"];
        let stems: std::collections::HashSet<String> = names.iter().map(|n| file_stem(n)).collect();
        assert_eq!(stems.len(), names.len(), "{stems:?}");
        // The old names did share one, which is why a legacy file is read only when its
        // contents name the log.
        assert_eq!(legacy_stem("a/b"), legacy_stem("a_b"));
    }

    #[test]
    fn a_legacy_file_is_read_only_for_the_log_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let signer =
            note::Signer::new("x.example/log", &zeroize::Zeroizing::new([3u8; 32])).unwrap();
        let key = signer.verifier();
        std::fs::write(dir.path().join("x.example_log.key"), format!("{key}\n")).unwrap();
        std::fs::write(
            dir.path().join("x.example_log.checkpoint"),
            "x.example/log\n1\nAAAA\n\n",
        )
        .unwrap();
        let ours = Remembered {
            dir: dir.path().to_owned(),
            origin: "x.example/log".into(),
        };
        assert_eq!(ours.key().unwrap().unwrap().to_string(), key.to_string());
        assert!(ours.checkpoint().unwrap().is_some());
        // Another log whose old name was the same file name finds nothing.
        let other = Remembered {
            dir: dir.path().to_owned(),
            origin: "x.example_log".into(),
        };
        assert!(other.key().unwrap().is_none());
        assert!(other.checkpoint().unwrap().is_none());
        // A named pipe where a remembered file is does not hold verify.
        let pipe = dir.path().join("x.example_2Flog.checkpoint");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&pipe)
                .status()
                .unwrap()
                .success()
        );
        let err = ours.checkpoint().unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_file(&pipe).unwrap();
        // Under the new name, a file of another log was changed: an error, not forgotten.
        std::fs::write(other.path("key"), format!("{key}\n")).unwrap();
        let err = other.key().unwrap_err().to_string();
        assert!(
            err.contains("TAMPERED") && err.contains("does not belong"),
            "{err}"
        );
    }
}
