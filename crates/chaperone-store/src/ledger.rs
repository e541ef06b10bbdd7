//! Ledger storage with group commit: entries and hashes as C2SP tlog-tiles, and every change
//! committed in the same transaction as its entries.
//!
//! One committer task per store owns appends. Callers queue jobs (a change to run plus the
//! entries it produces, or entries alone); the committer takes every job waiting, runs each
//! in its own savepoint inside one transaction, appends their entries to the tree's right
//! edge in memory, writes the tiles and bundles the batch touched, moves the size, and
//! commits once. So concurrent requests share one durable write (one fsync on SQLite, one
//! WAL flush on PostgreSQL), and a change and its entries commit together or not at all. A
//! job that fails rolls back to its savepoint and fails alone; a failed commit fails the
//! batch, and the edge is reloaded from the database.
//!
//! The `ledger_head` row is the lock that orders appends: the committer takes it first. With
//! PostgreSQL several nodes append to one log; a committer that finds the size moved since
//! its last batch reloads the edge (O(log n) rows) before appending. A size smaller than
//! the one it last committed, or on SQLite (one server per database) any other size, is the
//! database changed outside the server: every batch fails while it lasts
//! ([`StoreError::LedgerTampered`]), and checkpoints, signed over the head the committer
//! wrote ([`Store::ledger_committed_head`]), are not signed over entries it did not write.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chaperone_ledger::entry::{EntryTemplate, Event};
use chaperone_ledger::merkle::{Hash, HashReader};
use chaperone_ledger::tiles::{
    Edge, MAX_ENTRY, TileId, TileKind, TileWrite, Tiles, WIDTH, bundle_prefix, split_tile,
    tiles_needed,
};
use sqlx::{AnyPool, Row};

use crate::cache::Touches;
use crate::conn::Conn;
use tokio::sync::{mpsc, oneshot};

use crate::{Store, StoreError, db, to_i64, to_u64};

/// A boxed future borrowing the connection.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A change run inside the batch's transaction; returns the events to record with it.
type Work = Box<
    dyn for<'c> FnOnce(&'c mut Conn<'c>) -> BoxFuture<'c, Result<Vec<Event>, StoreError>> + Send,
>;

/// Most jobs in one batch: bounds the transaction's size and the latency of its first job.
const MAX_BATCH: usize = 4096;
/// Queued jobs before callers wait: back-pressure instead of unbounded memory.
const QUEUE: usize = 16_384;

enum Payload {
    Templates(Vec<EntryTemplate>),
    Raw(Vec<Vec<u8>>),
}

struct Job {
    /// The change to run, and what it may write; `None` for events alone.
    work: Option<(Touches, Work)>,
    payload: Payload,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// Why the ledger committer cannot take a change now ([`Store::ledger_committing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerStall {
    /// It has stopped: every change fails.
    Stopped,
    /// Its batch has been running this long.
    Stalled(std::time::Duration),
    /// Its last batch failed, a moment ago.
    Failing,
    /// The database file, or its lock file, is no longer the one it opened.
    Moved,
}

/// The handle to a store's committer.
pub(crate) struct Committer {
    jobs: mpsc::Sender<Job>,
    /// Stops the committer once the jobs queued so far are committed ([`Committer::close`]).
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// Answered when the committer has stopped and closed its connection.
    stopped: Mutex<Option<oneshot::Receiver<()>>>,
    /// What the committer wrote.
    written: Arc<Mutex<Written>>,
    /// With SQLite, the files it opened, checked by readiness too ([`Store::ledger_committing`]).
    opened: Option<Opened>,
}

/// What the committer wrote, kept across failed batches.
#[derive(Default)]
struct Written {
    /// The size and root of the tree as its last successful batch left it, published
    /// before that batch's callers are answered.
    head: Option<(u64, Hash)>,
    /// The size and root a batch whose commit's outcome is unknown would have reached: the
    /// database may hold it.
    unknown: Option<(u64, Hash)>,
    /// When the batch running now started, for readiness ([`Committer::busy_for`]).
    running_since: Option<std::time::Instant>,
    /// When the last batch failed, if none succeeded since (for readiness).
    failed_at: Option<std::time::Instant>,
    /// Why the database file or its lock file is no longer the one this server opened:
    /// every batch fails from then on, even if the file is put back (another server may
    /// have opened the path meanwhile).
    moved: Option<String>,
}

impl Written {
    /// Checks the database's `size` against what was written, before a batch builds on it:
    /// the head it must match (and its root, once the edge is loaded), or an error if the
    /// database was changed outside the committer. A batch of unknown outcome found in the
    /// database becomes the head.
    ///
    /// Security decision: no writer ever removes entries, and on SQLite (`alone`) this
    /// committer is the only writer (the database is locked to one server). A size other
    /// than the one it last committed (or, after a commit of unknown outcome, the one that
    /// would have reached) is the database changed outside it: it builds on nothing it did
    /// not write, and every batch fails while that lasts (a restart takes the database as
    /// it is). With PostgreSQL other nodes append: a larger size is theirs and is reloaded.
    /// Kept apart from the edge, so that no failed batch turns the check off.
    fn check(&mut self, size: u64, alone: bool) -> Result<Option<(u64, Hash)>, StoreError> {
        let Some((committed, root)) = self.head else {
            return Ok(None);
        };
        if let Some(landed) = self.unknown.filter(|(target, _)| *target == size) {
            self.head = Some(landed);
            self.unknown = None;
            return Ok(Some(landed));
        }
        if size < committed || (alone && size != committed) {
            return Err(StoreError::LedgerTampered(format!(
                "the database holds {size} entries where this server committed {committed}"
            )));
        }
        Ok((size == committed).then_some((committed, root)))
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

impl Committer {
    /// Starts the committer task on `writer` (PostgreSQL: the shared pool); `cache` is
    /// emptied after every batch that committed a change. It ends when the last handle is
    /// dropped.
    pub(crate) fn start(writer: AnyPool, cache: Arc<crate::cache::Cache>) -> Arc<Self> {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let (handle, control) = Self::handle(jobs, None);
        tokio::spawn(run(Writer::Pool(writer), rx, cache, control));
        handle
    }

    /// Starts the committer for SQLite on a thread of its own, with its own connection to
    /// the database at `path` (see [`crate::conn`]): every statement of a batch runs where
    /// the committer is, with no hand-off to another thread, and the thread may block on
    /// SQLite (and on its fsync) without holding up the server's runtime. `locked`: this
    /// process holds the database's lock file (checked with the database before each batch).
    pub(crate) async fn start_sqlite(
        path: PathBuf,
        cache: Arc<crate::cache::Cache>,
        locked: bool,
    ) -> Result<Arc<Self>, StoreError> {
        let files = Opened::of(&path, locked)?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        let (handle, control) = Self::handle(jobs, Some(files.clone()));
        let (opened, started) = oneshot::channel::<Result<(), StoreError>>();
        let not_started =
            |why: String| StoreError::LedgerWrite(format!("starting the committer: {why}"));
        std::thread::Builder::new()
            .name("ledger-committer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = opened.send(Err(not_started(e.to_string())));
                        return;
                    }
                };
                let conn = match open_sqlite(&path) {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                let _ = opened.send(Ok(()));
                let writer = Writer::Sqlite {
                    path,
                    conn: Some(conn),
                    opened: files,
                };
                runtime.block_on(run(writer, rx, cache, control));
            })
            .map_err(|e| not_started(e.to_string()))?;
        started
            .await
            .map_err(|_| not_started("the thread ended".into()))??;
        Ok(handle)
    }

    fn handle(jobs: mpsc::Sender<Job>, opened: Option<Opened>) -> (Arc<Self>, Control) {
        let (stop, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped) = oneshot::channel();
        let written = Arc::new(Mutex::new(Written::default()));
        let handle = Arc::new(Self {
            jobs,
            stop: Mutex::new(Some(stop)),
            stopped: Mutex::new(Some(stopped)),
            written: Arc::clone(&written),
            opened,
        });
        (
            handle,
            Control {
                stop: stop_rx,
                stopped: stopped_tx,
                written,
            },
        )
    }

    /// How long the batch running now has been running; `None` when none is. Every
    /// request that records or changes anything waits for its batch, so a long one (a lock
    /// held by a stalled node, a disk that does not answer) is the server not serving.
    pub(crate) fn busy_for(&self) -> Option<std::time::Duration> {
        let written = self.written.lock().expect("unpoisoned");
        written.running_since.map(|since| since.elapsed())
    }

    /// Whether the committer has stopped: every later change fails.
    pub(crate) fn has_stopped(&self) -> bool {
        self.jobs.is_closed()
    }

    /// Whether the files under the database path are no longer those this server opened,
    /// and how long ago the last batch failed (none succeeding since).
    ///
    /// The files are looked at here too, so that a node whose database went away says so
    /// before a write fails on it; every batch from then on fails.
    fn failures(&self) -> (bool, Option<std::time::Duration>) {
        let mut written = self.written.lock().expect("unpoisoned");
        if written.moved.is_none()
            && let Some(opened) = &self.opened
        {
            written.moved = opened.check().err();
        }
        (
            written.moved.is_some(),
            written.failed_at.map(|at| at.elapsed()),
        )
    }

    /// Commits what is queued, then stops and closes the committer's connection (with
    /// SQLite, so that the last connection to close folds the write-ahead log into the
    /// database file). Later changes fail with [`StoreError::LedgerWrite`].
    pub(crate) async fn close(&self) {
        let stop = self.stop.lock().expect("unpoisoned").take();
        let stopped = self.stopped.lock().expect("unpoisoned").take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(stopped) = stopped {
            let _ = stopped.await;
        }
    }
}

/// The committer's side of [`Committer::close`], and where it keeps what it wrote.
struct Control {
    stop: oneshot::Receiver<()>,
    stopped: oneshot::Sender<()>,
    written: Arc<Mutex<Written>>,
}

/// Where the committer writes.
enum Writer {
    /// A pool (PostgreSQL): one transaction per batch.
    Pool(AnyPool),
    /// The committer's own SQLite connection; `None` after a batch that panicked took it,
    /// reopened at the next batch.
    Sqlite {
        path: PathBuf,
        conn: Option<rusqlite::Connection>,
        /// The database file and its lock file as the server opened them.
        opened: Opened,
    },
}

/// The files a SQLite server opened: the database and its lock file, each as its path and
/// the (device, inode) it named then.
#[derive(Clone, Debug)]
struct Opened(Vec<(PathBuf, (u64, u64))>);

impl Opened {
    /// The database at `database`, its write-ahead log and shared-memory index (which the
    /// store's open connections have made), and its lock file when this process holds the
    /// lock.
    ///
    /// The log holds every commit since the last checkpoint: deleted under the server, the
    /// connections write on into the unlinked file, and a crash then loses every write since.
    /// SQLite removes it only when the last connection closes, which the server's own never
    /// all do while it runs.
    fn of(database: &Path, locked: bool) -> Result<Self, StoreError> {
        let mut files = Vec::new();
        let beside = |suffix: &str| {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let journal = [beside("-wal"), beside("-shm")];
        let lock = locked.then(|| crate::lock_path(database));
        for path in std::iter::once(database.to_path_buf())
            .chain(journal)
            .chain(lock)
        {
            let identity = identity(&path)
                .map_err(|e| StoreError::LedgerWrite(format!("reading {}: {e}", path.display())))?;
            files.push((path, identity));
        }
        Ok(Self(files))
    }

    /// Checks that each path still names the file it named when the server opened it.
    ///
    /// Security decision: a database file deleted, moved or replaced under a running server
    /// (its directory removed, a restore by hand, the lock file deleted) still takes this
    /// connection's writes, into a file nobody will open again, while another server may
    /// start on the path: every write acknowledged from then on would be lost. One `stat`
    /// of each file before each batch (microseconds) refuses the batch instead.
    fn check(&self) -> Result<(), String> {
        for (path, opened) in &self.0 {
            match identity(path) {
                Ok(now) if now == *opened => {}
                Ok(_) => {
                    return Err(format!(
                        "{} is no longer the file this server opened (replaced or moved); \
                         nothing more is written: stop this server and start it again",
                        path.display()
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "{} is gone ({e}); nothing more is written: stop this server and \
                         start it again",
                        path.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}

impl Writer {
    /// The same writer without its connection, to carry on with if a batch panics.
    fn fallback(&self) -> Self {
        match self {
            Writer::Pool(pool) => Writer::Pool(pool.clone()),
            Writer::Sqlite { path, opened, .. } => Writer::Sqlite {
                path: path.clone(),
                conn: None,
                opened: opened.clone(),
            },
        }
    }
}

/// Opens the committer's SQLite connection with the store's settings.
fn open_sqlite(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let failed = |e: rusqlite::Error| db("opening the ledger writer")(crate::conn::failure(e));
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    for pragma in crate::SQLITE_PRAGMAS {
        let mut statement = conn.prepare(pragma).map_err(failed)?;
        let mut rows = statement.raw_query();
        while rows.next().map_err(failed)?.is_some() {}
    }
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// One batch's transaction.
enum Tx<'w> {
    Pool(Option<sqlx::Transaction<'static, sqlx::Any>>),
    Sqlite(&'w mut rusqlite::Connection),
}

/// Sets a PostgreSQL transaction to READ COMMITTED, whatever the database's or role's
/// default. The batches of several nodes serialise on the `ledger_head` row's lock, and a
/// batch that waited for it must then read the head the other node committed; under
/// REPEATABLE READ or SERIALIZABLE (a common hardening default) it would fail instead, and
/// every request in it with it.
async fn read_committed(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> Result<(), StoreError> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut **tx)
        .await
        .map_err(db("setting the isolation level"))?;
    Ok(())
}

impl<'w> Tx<'w> {
    async fn begin(writer: &'w mut Writer) -> Result<Tx<'w>, StoreError> {
        match writer {
            Writer::Pool(pool) => {
                let mut tx = pool.begin().await.map_err(db("starting a ledger batch"))?;
                read_committed(&mut tx).await?;
                Ok(Tx::Pool(Some(tx)))
            }
            Writer::Sqlite { path, conn, .. } => {
                // A connection a failed rollback left inside a transaction is replaced.
                if conn.as_ref().is_none_or(|c| !c.is_autocommit()) {
                    *conn = None;
                    *conn = Some(open_sqlite(path)?);
                }
                let conn = conn.as_mut().expect("opened above");
                conn.execute_batch("BEGIN IMMEDIATE")
                    .map_err(|e| db("starting a ledger batch")(crate::conn::failure(e)))?;
                Ok(Tx::Sqlite(conn))
            }
        }
    }

    fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Pool(tx) => Conn::Any(tx.as_mut().expect("until committed")),
            Tx::Sqlite(conn) => Conn::Sqlite(conn),
        }
    }

    /// Commits. A failure is [`StoreError::CommitUnknown`] unless it says the database did
    /// not apply the batch: PostgreSQL answered with an error (it rolled back), or SQLite
    /// is still inside the transaction (dropping this rolls it back).
    async fn commit(mut self) -> Result<(), StoreError> {
        match &mut self {
            Tx::Pool(tx) => match tx.take().expect("committed once").commit().await {
                Ok(()) => Ok(()),
                Err(e @ sqlx::Error::Database(_)) => Err(db("committing a ledger batch")(e)),
                Err(e) => Err(StoreError::CommitUnknown(e.to_string())),
            },
            Tx::Sqlite(conn) => match conn.execute_batch("COMMIT") {
                Ok(()) => Ok(()),
                Err(e) if !conn.is_autocommit() => {
                    Err(db("committing a ledger batch")(crate::conn::failure(e)))
                }
                Err(e) => Err(StoreError::CommitUnknown(e.to_string())),
            },
        }
    }
}

impl Drop for Tx<'_> {
    /// A batch that did not commit leaves nothing behind (sqlx's transaction rolls itself
    /// back when dropped).
    fn drop(&mut self) {
        if let Tx::Sqlite(conn) = self
            && !conn.is_autocommit()
        {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

async fn run(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Job>,
    cache: Arc<crate::cache::Cache>,
    control: Control,
) {
    let Control {
        mut stop,
        stopped,
        written,
    } = control;
    let mut stopping = false;
    let mut edge: Option<Edge> = None;
    let mut batch = Vec::new();
    loop {
        let received = if stopping {
            rx.recv_many(&mut batch, MAX_BATCH).await
        } else {
            tokio::select! {
                received = rx.recv_many(&mut batch, MAX_BATCH) => received,
                _ = &mut stop => {
                    // No new jobs; those queued are still committed, then the loop ends.
                    rx.close();
                    stopping = true;
                    continue;
                }
            }
        };
        if received == 0 {
            break;
        }
        // Requests answered by the last commit are building their next jobs right now:
        // give them a moment to join this batch rather than commit a handful alone. Ends as
        // soon as a round brings nothing new, so a quiet server does not wait.
        loop {
            tokio::task::yield_now().await;
            let before = batch.len();
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.len() == before || batch.len() >= MAX_BATCH {
                break;
            }
        }
        let jobs = std::mem::take(&mut batch);
        // What the batch's changes may have written, for what the caches must drop.
        let touched = jobs
            .iter()
            .filter_map(|job| job.work.as_ref().map(|(touches, _)| *touches))
            .reduce(Touches::join);
        // Each batch runs in its own task, so that a panic in a change fails that batch (its
        // callers see their replies dropped, and the transaction rolls back) instead of
        // stopping the committer and with it every later request.
        let fallback = writer.fallback();
        let mut taken = std::mem::replace(&mut writer, fallback);
        let mut current = edge.take();
        let moved = Arc::clone(&cache);
        let record = Arc::clone(&written);
        written.lock().expect("unpoisoned").running_since = Some(std::time::Instant::now());
        let task = tokio::spawn(async move {
            let outcome = commit_batch(
                &mut taken,
                &mut current,
                &record,
                jobs,
                touched.map(|t| (&*moved, t)),
            )
            .await;
            (taken, current, outcome)
        });
        let ended = task.await;
        written.lock().expect("unpoisoned").running_since = None;
        match ended {
            Ok((back, next, outcome)) => {
                writer = back;
                edge = next;
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "a ledger batch failed");
                }
            }
            Err(e) => {
                written.lock().expect("unpoisoned").failed_at = Some(std::time::Instant::now());
                tracing::error!(error = %e, "a ledger batch panicked; nothing of it was stored")
            }
        }
    }
    drop(writer);
    let _ = stopped.send(());
}

/// Runs and commits one batch, answering every job.
async fn commit_batch(
    writer: &mut Writer,
    edge: &mut Option<Edge>,
    written: &Mutex<Written>,
    jobs: Vec<Job>,
    cache: Option<(&crate::cache::Cache, Touches)>,
) -> Result<(), StoreError> {
    let mut pending: Vec<(oneshot::Sender<Result<u64, StoreError>>, u64)> = Vec::new();
    let mut jobs = jobs.into_iter();
    let alone = matches!(writer, Writer::Sqlite { .. });
    // The size and root this batch would reach, for a commit whose outcome is unknown.
    let mut attempted = None;
    let moved = match &*writer {
        Writer::Sqlite { opened, .. } => {
            let mut written = written.lock().expect("unpoisoned");
            if written.moved.is_none() {
                written.moved = opened.check().err();
            }
            written.moved.clone()
        }
        Writer::Pool(_) => None,
    };
    let outcome = async {
        if let Some(why) = moved {
            return Err(StoreError::LedgerWrite(why));
        }
        let mut tx = Tx::begin(writer).await?;
        let mut conn = tx.conn();
        let size: i64 =
            sqlx::query_scalar("UPDATE ledger_head SET size = size WHERE id = 1 RETURNING size")
                .fetch_one(&mut conn)
                .await
                .map_err(db("locking the ledger"))?;
        let size = to_u64(size, "ledger size")?;
        let expected = written.lock().expect("unpoisoned").check(size, alone)?;
        let current = match edge.take() {
            Some(e) if e.size() == size => e,
            _ => {
                let loaded = load_edge(&mut conn, size).await?;
                // Reloaded (after a failed batch) at a size this committer wrote: the tail
                // must be the one it wrote, not only as long.
                if let Some((_, root)) = expected
                    && loaded.root() != root
                {
                    return Err(StoreError::LedgerTampered(format!(
                        "the newest of the {size} entries in the database differ from those \
                         this server committed"
                    )));
                }
                loaded
            }
        };
        // Built on in place: a batch that fails drops it, and the next reloads it.
        let before = current.size();
        let mut next = current;
        let mut open = None;
        for job in jobs.by_ref() {
            let first = next.size();
            let work = job.work.map(|(_, work)| work);
            match run_job(&mut conn, &mut next, work, job.payload, &mut open).await {
                Ok(Ok(())) => pending.push((job.reply, first)),
                Ok(Err(e)) => {
                    let _ = job.reply.send(Err(e));
                }
                Err(e) => {
                    let _ = job.reply.send(Err(StoreError::LedgerWrite(e.to_string())));
                    return Err(e);
                }
            }
        }
        for write in next.take_writes() {
            store_write(&mut conn, write, before).await?;
        }
        sqlx::query("UPDATE ledger_head SET size = $1 WHERE id = 1")
            .bind(to_i64(next.size()))
            .execute(&mut conn)
            .await
            .map_err(db("moving the ledger size"))?;
        attempted = Some((next.size(), next.root()));
        tx.commit().await?;
        Ok::<Edge, StoreError>(next)
    }
    .await;
    // Whatever the outcome, a batch that ran changes may have changed what caches hold (a
    // failed commit may still have reached the disk), and it moves the generation before
    // any caller is answered.
    if let Some((cache, touched)) = cache {
        cache.invalidate(touched);
    }
    match outcome {
        Ok(next) => {
            // Published before anyone is answered: a caller that waited for this batch
            // reads a head that holds it.
            {
                let mut written = written.lock().expect("unpoisoned");
                written.head = attempted.or_else(|| Some((next.size(), next.root())));
                written.unknown = None;
                written.failed_at = None;
            }
            *edge = Some(next);
            for (reply, first) in pending {
                let _ = reply.send(Ok(first));
            }
            Ok(())
        }
        Err(e) => {
            // The edge is reloaded from what the database holds at the next batch.
            *edge = None;
            let message = e.to_string();
            let unknown = matches!(e, StoreError::CommitUnknown(_));
            {
                let mut written = written.lock().expect("unpoisoned");
                if unknown && attempted.is_some() {
                    written.unknown = attempted;
                }
                written.failed_at = Some(std::time::Instant::now());
            }
            let unanswered = pending
                .into_iter()
                .map(|(reply, _)| reply)
                .chain(jobs.map(|job| job.reply));
            for reply in unanswered {
                let _ = reply.send(Err(match &e {
                    StoreError::LedgerTampered(why) => StoreError::LedgerTampered(why.clone()),
                    _ if unknown => StoreError::CommitUnknown(message.clone()),
                    _ => StoreError::LedgerWrite(message.clone()),
                }));
            }
            Err(e)
        }
    }
}

/// Change jobs whose savepoints stay open together: then one statement folds them into the
/// transaction, so that SQLite's bookkeeping for open savepoints (walked on every page
/// write) stays bounded however large the batch.
const SAVEPOINT_GROUP: usize = 64;

/// Runs one job in a savepoint and appends its entries to `edge`. The inner result is the
/// job's own (on error nothing of it remains in the transaction or the edge); the outer
/// error means the batch cannot go on (the database failed under it).
///
/// Each job opens a savepoint named `job` and does not release it: `ROLLBACK TO` undoes up
/// to the most recent savepoint of that name (SQLite and PostgreSQL agree), which is the
/// job's own, and releasing the enclosing `jobs` savepoint (every [`SAVEPOINT_GROUP`] jobs)
/// or the batch's `COMMIT` ends them. That is about one statement per job instead of two
/// (every statement is on the path every queued request waits for). `open` counts the
/// jobs of the current group; `None` before the batch's first change.
async fn run_job(
    conn: &mut Conn<'_>,
    edge: &mut Edge,
    work: Option<Work>,
    payload: Payload,
    open: &mut Option<usize>,
) -> Result<Result<(), StoreError>, StoreError> {
    let Some(work) = work else {
        return Ok(append_entries(edge, payload));
    };
    let statements: &[&str] = match *open {
        None => &["SAVEPOINT jobs", "SAVEPOINT job"],
        Some(SAVEPOINT_GROUP) => &["RELEASE SAVEPOINT jobs", "SAVEPOINT jobs", "SAVEPOINT job"],
        Some(_) => &["SAVEPOINT job"],
    };
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut *conn)
            .await
            .map_err(db("starting a change"))?;
    }
    *open = Some(open.map_or(0, |n| n % SAVEPOINT_GROUP) + 1);
    let outcome = match work(&mut conn.reborrow()).await {
        Ok(events) => {
            let mut templates: Vec<EntryTemplate> = events.iter().map(Event::template).collect();
            if let Payload::Templates(more) = payload {
                templates.extend(more);
            }
            entries_at(edge.size(), Payload::Templates(templates))
        }
        Err(e) => Err(e),
    };
    // SQLite ends a transaction by itself on some failures (disk full, I/O): what follows
    // would run outside it, so the batch stops.
    if !conn.in_transaction() {
        return Err(StoreError::LedgerWrite(
            "the batch's transaction ended under a change".into(),
        ));
    }
    match outcome {
        Ok(entries) => {
            append(edge, &entries);
            Ok(Ok(()))
        }
        Err(e) => {
            sqlx::query("ROLLBACK TO SAVEPOINT job")
                .execute(&mut *conn)
                .await
                .map_err(db("rolling back a change"))?;
            Ok(Err(e))
        }
    }
}

/// Appends a job's entries, all or none.
fn append_entries(edge: &mut Edge, payload: Payload) -> Result<(), StoreError> {
    let entries = entries_at(edge.size(), payload)?;
    append(edge, &entries);
    Ok(())
}

/// A job's entries numbered from `first`, each checked to fit a bundle.
fn entries_at(first: u64, payload: Payload) -> Result<Vec<Vec<u8>>, StoreError> {
    let entries: Vec<Vec<u8>> = match payload {
        Payload::Raw(entries) => entries,
        Payload::Templates(templates) => templates
            .iter()
            .zip(first..)
            .map(|(template, seq)| template.entry(seq))
            .collect(),
    };
    match entries.iter().find(|e| e.len() > MAX_ENTRY) {
        Some(big) => Err(StoreError::EntryTooLarge(big.len())),
        None => Ok(entries),
    }
}

fn append(edge: &mut Edge, entries: &[Vec<u8>]) {
    for entry in entries {
        edge.append(entry).expect("sizes checked by entries_at");
    }
}

async fn load_edge(conn: &mut Conn<'_>, size: u64) -> Result<Edge, StoreError> {
    let mut parts = HashMap::new();
    for id in Edge::parts_needed(size) {
        let data = read_part(conn, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("ledger {} is missing", id.path())))?;
        parts.insert(id, data);
    }
    Edge::resume(size, &parts).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Stores a tile or bundle the batch touched; `before` is the log's size before the batch.
/// A partial bundle stores only the entries the batch added, as a chunk; a full one is
/// written whole, and its chunks go.
async fn store_write(conn: &mut Conn<'_>, write: TileWrite, before: u64) -> Result<(), StoreError> {
    let TileWrite { id, from, data } = write;
    let level = match id.kind {
        TileKind::Hashes(level) => level,
        TileKind::Entries => return store_bundle(conn, id, from, &data, before).await,
    };
    sqlx::query(
        "INSERT INTO ledger_tiles (level, idx, width, data) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (level, idx) DO UPDATE SET width = excluded.width, data = excluded.data",
    )
    .bind(i64::from(level))
    .bind(to_i64(id.index))
    .bind(to_i64(id.width))
    .bind(&data)
    .execute(conn)
    .await
    .map_err(db("storing a ledger tile"))?;
    Ok(())
}

/// `data` holds a partial bundle's entries from entry `from` (those the batch added), or a
/// full bundle whole.
async fn store_bundle(
    conn: &mut Conn<'_>,
    id: TileId,
    from: u64,
    data: &[u8],
    before: u64,
) -> Result<(), StoreError> {
    // Entries of this bundle stored by earlier batches.
    let had = if before / WIDTH == id.index {
        before % WIDTH
    } else {
        0
    };
    if id.width < WIDTH {
        if from != had {
            return Err(StoreError::LedgerWrite(format!(
                "ledger bundle {}: entries from {from} to store after {had} stored",
                id.index
            )));
        }
        sqlx::query(
            "INSERT INTO ledger_bundle_chunks (idx, first, width, data) VALUES ($1, $2, $3, $4)",
        )
        .bind(to_i64(id.index))
        .bind(to_i64(had))
        .bind(to_i64(id.width))
        .bind(data)
        .execute(conn)
        .await
        .map_err(db("storing ledger entries"))?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO ledger_bundles (idx, width, data) VALUES ($1, $2, $3) \
         ON CONFLICT (idx) DO UPDATE SET width = excluded.width, data = excluded.data",
    )
    .bind(to_i64(id.index))
    .bind(to_i64(id.width))
    .bind(data)
    .execute(&mut *conn)
    .await
    .map_err(db("storing a ledger bundle"))?;
    if had > 0 {
        sqlx::query("DELETE FROM ledger_bundle_chunks WHERE idx = $1")
            .bind(to_i64(id.index))
            .execute(conn)
            .await
            .map_err(db("storing a ledger bundle"))?;
    }
    Ok(())
}

/// Bundle `index` as far as it is stored: its `ledger_bundles` row, then the chunks that
/// follow it. `None` if nothing of it is stored. One statement, so one snapshot: a batch
/// that fills the bundle meanwhile (writing it whole and deleting its chunks) is seen
/// either wholly or not at all.
async fn read_bundle(
    conn: &mut Conn<'_>,
    index: u64,
) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let parts = sqlx::query(
        "SELECT CAST(0 AS BIGINT) AS part, CAST(0 AS BIGINT) AS first, width, data \
         FROM ledger_bundles WHERE idx = $1 \
         UNION ALL \
         SELECT CAST(1 AS BIGINT) AS part, first, width, data \
         FROM ledger_bundle_chunks WHERE idx = $1 \
         ORDER BY part, first",
    )
    .bind(to_i64(index))
    .fetch_all(conn)
    .await
    .map_err(db("reading ledger entries"))?;
    if parts.is_empty() {
        return Ok(None);
    }
    let mut width = 0;
    let mut data = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let whole = part.try_get::<i64, _>("part").map_err(corrupt)? == 0;
        let first = to_u64(part.try_get("first").map_err(corrupt)?, "chunk start")?;
        if !whole && first != width {
            return Err(StoreError::Corrupt(format!(
                "ledger bundle {index}: a chunk starts at entry {first}, after {width} entries"
            )));
        }
        width = to_u64(part.try_get("width").map_err(corrupt)?, "bundle width")?;
        data.extend(part.try_get::<Vec<u8>, _>("data").map_err(corrupt)?);
        // A full bundle is complete; chunks are only ever left beside a partial one.
        if i == 0 && whole && width >= WIDTH {
            break;
        }
    }
    Ok(Some((width, data)))
}

/// The stored tile or bundle at `id`'s address cut to `id.width`, or `None` if what is
/// stored is narrower (not written yet).
async fn read_part(conn: &mut Conn<'_>, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
    let (width, data) = match id.kind {
        TileKind::Entries => match read_bundle(conn, id.index).await? {
            Some(found) => found,
            None => return Ok(None),
        },
        TileKind::Hashes(level) => {
            let row =
                sqlx::query("SELECT width, data FROM ledger_tiles WHERE level = $1 AND idx = $2")
                    .bind(i64::from(level))
                    .bind(to_i64(id.index))
                    .fetch_optional(conn)
                    .await
                    .map_err(db("reading a ledger tile"))?;
            let Some(row) = row else { return Ok(None) };
            let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
            (
                to_u64(row.try_get("width").map_err(corrupt)?, "tile width")?,
                row.try_get("data").map_err(corrupt)?,
            )
        }
    };
    if width < id.width {
        return Ok(None);
    }
    Ok(Some(cut(id, data)))
}

/// The bytes the first `n` of `entries` take in a bundle.
fn prefix_bytes(entries: &[&[u8]], n: u64) -> usize {
    entries.iter().take(n as usize).map(|e| 2 + e.len()).sum()
}

/// The first `id.width` items of a stored tile or bundle. A stored row that holds fewer is
/// returned whole, for the verifier to report.
fn cut(id: TileId, mut data: Vec<u8>) -> Vec<u8> {
    match id.kind {
        TileKind::Hashes(_) => data.truncate(32 * id.width as usize),
        TileKind::Entries => {
            let (entries, _) = bundle_prefix(&data);
            if entries.len() as u64 > id.width {
                let keep = prefix_bytes(&entries, id.width);
                data.truncate(keep);
            }
        }
    }
    data
}

impl Store {
    /// Appends entries (canonical bytes); returns the index of the first one. The entries get
    /// consecutive indices, in order.
    pub async fn append_ledger(&self, entries: Vec<Vec<u8>>) -> Result<u64, StoreError> {
        self.submit(None, Payload::Raw(entries)).await
    }

    /// The size and root of the ledger as this server's committer last wrote it, of
    /// `at_least` entries: when it has written less, or the database holds another size
    /// (other nodes appended, or the database was changed), a batch of no entries goes
    /// through it first, which reads the database's size (and checks it against the one it
    /// committed). Security decision:
    /// checkpoints are signed over this, not over the head read back from the database, so
    /// that entries added to or removed from the database's tail by anyone but the
    /// committer are never signed. (With PostgreSQL, entries other nodes append are read
    /// from the database.)
    pub async fn ledger_committed_head(&self, at_least: u64) -> Result<(u64, Hash), StoreError> {
        let written = || self.committer.written.lock().expect("unpoisoned").head;
        let stored = self.ledger_size().await?;
        if let Some(head) = written().filter(|(size, _)| *size >= at_least && *size == stored) {
            return Ok(head);
        }
        self.submit(None, Payload::Raw(Vec::new())).await?;
        written().ok_or_else(|| StoreError::LedgerWrite("no ledger batch has committed".into()))
    }

    /// Appends events durably; each gets its index (`seq`) inside its canonical bytes.
    /// Returns the index of the first.
    pub async fn append_events(&self, events: Vec<Event>) -> Result<u64, StoreError> {
        let templates = events.iter().map(Event::template).collect();
        self.submit(None, Payload::Templates(templates)).await
    }

    /// Runs `work` in a transaction that also appends the events it returns, and returns its
    /// value once both are durable. `work` runs on the committer, in a savepoint of a batch
    /// shared with other requests: it must only touch the database through the connection.
    pub(crate) async fn change<T: Send + 'static>(
        &self,
        work: impl for<'c> FnOnce(
            &'c mut Conn<'c>,
        ) -> BoxFuture<'c, Result<(T, Vec<Event>), StoreError>>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        self.change_touching(Touches::Anything, work).await
    }

    /// [`Store::change`] for a change that writes only what `touches` says, so that the
    /// caches keep the rest (see `cache`). Security decision: a change declared to touch
    /// [`Touches::Secrets`] that wrote a token, a person, a grant or a classification would
    /// leave authorisation reading the old one; only the secrets module declares it, for
    /// statements on the `secrets` and `secret_versions` tables alone.
    pub(crate) async fn change_touching<T: Send + 'static>(
        &self,
        touches: Touches,
        work: impl for<'c> FnOnce(
            &'c mut Conn<'c>,
        ) -> BoxFuture<'c, Result<(T, Vec<Event>), StoreError>>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let out = Arc::clone(&slot);
        let work: Work = Box::new(move |conn| {
            Box::pin(async move {
                let (value, events) = work(conn).await?;
                *out.lock().expect("unpoisoned") = Some(value);
                Ok(events)
            })
        });
        self.submit(Some((touches, work)), Payload::Templates(Vec::new()))
            .await?;
        let value = slot.lock().expect("unpoisoned").take();
        value.ok_or_else(|| StoreError::LedgerWrite("a change returned no value".into()))
    }

    /// Runs `work` in a transaction of its own, recording nothing: for the few writes that
    /// are not ledger events themselves (failed-login counters, checkpoints made).
    ///
    /// With SQLite it runs on the committer like [`Store::change`]: every write goes
    /// through the committer's connection, so no other connection competes for SQLite's one
    /// write lock while requests wait on it. PostgreSQL has no such lock, so there it runs
    /// on a pooled connection, without waiting for a ledger batch or taking the ledger's
    /// row lock.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        work: impl for<'c> FnOnce(&'c mut Conn<'c>) -> BoxFuture<'c, Result<T, StoreError>>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        self.write_touching(Touches::Anything, work).await
    }

    /// [`Store::write`] for statements on tables that no cache reads (the failed-attempt
    /// counters): the caches are kept. Security decision: only those counters may use it
    /// (a unit test in `cache` holds it to them).
    pub(crate) async fn write_uncached<T: Send + 'static>(
        &self,
        work: impl for<'c> FnOnce(&'c mut Conn<'c>) -> BoxFuture<'c, Result<T, StoreError>>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        self.write_touching(Touches::Uncached, work).await
    }

    async fn write_touching<T: Send + 'static>(
        &self,
        touches: Touches,
        work: impl for<'c> FnOnce(&'c mut Conn<'c>) -> BoxFuture<'c, Result<T, StoreError>>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        if self.backend == crate::Backend::Postgres {
            let mut tx = self.pool.begin().await.map_err(db("starting a write"))?;
            read_committed(&mut tx).await?;
            let value = work(&mut Conn::Any(&mut tx)).await?;
            tx.commit().await.map_err(db("committing a write"))?;
            return Ok(value);
        }
        self.change_touching(touches, move |conn| {
            Box::pin(async move { Ok((work(conn).await?, Vec::new())) })
        })
        .await
    }

    async fn submit(
        &self,
        work: Option<(Touches, Work)>,
        payload: Payload,
    ) -> Result<u64, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::LedgerWrite("the ledger committer has stopped".into());
        self.committer
            .jobs
            .send(Job {
                work,
                payload,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Whether this server's ledger committer can take a change now: `Err` with why not
    /// when it has stopped, when its database file is no longer the one it opened, when its
    /// last batch failed less than `stalled_after` ago (a full disk, an I/O error; it is
    /// ready again after that, so that traffic comes back to try once the cause is gone),
    /// or when the batch it runs has run for `stalled_after` or more.
    pub fn ledger_committing(&self, stalled_after: std::time::Duration) -> Result<(), LedgerStall> {
        if self.committer.has_stopped() {
            return Err(LedgerStall::Stopped);
        }
        let (moved, failed) = self.committer.failures();
        if moved {
            return Err(LedgerStall::Moved);
        }
        if let Some(ago) = failed
            && ago < stalled_after
        {
            return Err(LedgerStall::Failing);
        }
        match self.committer.busy_for() {
            Some(running) if running >= stalled_after => Err(LedgerStall::Stalled(running)),
            _ => Ok(()),
        }
    }

    /// The number of entries.
    pub async fn ledger_size(&self) -> Result<u64, StoreError> {
        let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading the ledger size"))?;
        to_u64(size, "ledger size")
    }

    /// The tile or bundle `id` (cut to its width), or `None` if the log has not reached it.
    pub async fn ledger_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db("reading a tile"))?;
        read_part(&mut Conn::Any(&mut conn), id).await
    }

    /// The hash tiles that answer `nodes` (tree level, index), for proofs and tree heads,
    /// read in one query.
    pub async fn ledger_tiles_for(&self, nodes: &[(u8, u64)]) -> Result<Tiles, StoreError> {
        let needed = tiles_needed(nodes);
        let mut tiles = Tiles::default();
        if !needed.is_empty() {
            let filter: Vec<String> = (0..needed.len())
                .map(|i| format!("(level = ${} AND idx = ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "SELECT level, idx, width, data FROM ledger_tiles WHERE {}",
                filter.join(" OR ")
            );
            let mut query = sqlx::query(&sql);
            for &(level, index, _) in &needed {
                query = query.bind(i64::from(level)).bind(to_i64(index));
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading tiles"))?;
            let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
            let mut found: HashMap<(u8, u64), (u64, Vec<u8>)> = HashMap::new();
            for row in rows {
                let level: i64 = row.try_get("level").map_err(corrupt)?;
                let index: i64 = row.try_get("idx").map_err(corrupt)?;
                let width: i64 = row.try_get("width").map_err(corrupt)?;
                let level = u8::try_from(level)
                    .map_err(|_| StoreError::Corrupt(format!("tile level {level}")))?;
                found.insert(
                    (level, to_u64(index, "tile index")?),
                    (
                        to_u64(width, "tile width")?,
                        row.try_get("data").map_err(corrupt)?,
                    ),
                );
            }
            for (level, index, width) in needed {
                let id = TileId {
                    kind: TileKind::Hashes(level),
                    index,
                    width,
                };
                let missing = || StoreError::Corrupt(format!("ledger {} is missing", id.path()));
                let (stored, data) = found.remove(&(level, index)).ok_or_else(missing)?;
                if stored < width {
                    return Err(missing());
                }
                let hashes = split_tile(level, index, &cut(id, data))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                tiles.0.insert((level, index), hashes);
            }
        }
        // Every node asked for must now be answerable.
        for &(level, index) in nodes {
            tiles
                .node(level, index)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
        Ok(tiles)
    }

    /// Entries `[start, end)` with their indices (fewer if the log is shorter).
    pub async fn ledger_entries(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let end = end.min(self.ledger_size().await?);
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let last = (end - 1) / WIDTH;
        let rows = sqlx::query(
            "SELECT idx, data FROM ledger_bundles WHERE idx >= $1 AND idx <= $2 ORDER BY idx",
        )
        .bind(to_i64(start / WIDTH))
        .bind(to_i64(last))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading ledger entries"))?;
        let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
        let mut bundles = Vec::with_capacity(rows.len() + 1);
        for row in rows {
            let idx: i64 = row.try_get("idx").map_err(corrupt)?;
            let data: Vec<u8> = row.try_get("data").map_err(corrupt)?;
            bundles.push((to_u64(idx, "bundle index")?, data));
        }
        // The last bundle may be partial: its newer entries are chunks.
        if bundles.last().is_none_or(|(idx, data)| {
            *idx != last || (bundle_prefix(data).0.len() as u64) < end - last * WIDTH
        }) {
            let mut conn = self.pool.acquire().await.map_err(db("reading entries"))?;
            if let Some((_, data)) = read_bundle(&mut Conn::Any(&mut conn), last).await? {
                if bundles.last().is_some_and(|(idx, _)| *idx == last) {
                    bundles.pop();
                }
                bundles.push((last, data));
            }
        }
        for (idx, data) in bundles {
            let first = idx * WIDTH;
            let (entries, _) = bundle_prefix(&data);
            for (seq, entry) in (first..).zip(entries) {
                if seq >= start && seq < end {
                    out.push((seq, entry.to_vec()));
                }
            }
        }
        Ok(out)
    }
}

impl Store {
    /// The ledger's origin and sealed signing seed, if made.
    pub async fn ledger_key(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = sqlx::query("SELECT origin, sealed_seed FROM ledger_key WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading the ledger key"))?;
        row.map(|row| {
            Ok((
                row.try_get("origin")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                row.try_get("sealed_seed")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ))
        })
        .transpose()
    }

    /// Stores the ledger key unless one exists; returns the one in force (another node may
    /// have made it first).
    pub async fn create_ledger_key(
        &self,
        origin: &str,
        sealed_seed: &[u8],
        now: chaperone_core::Timestamp,
    ) -> Result<(String, Vec<u8>), StoreError> {
        let (origin, sealed_seed) = (origin.to_owned(), sealed_seed.to_vec());
        self.write(move |conn| {
            Box::pin(async move { insert_ledger_key(conn, &origin, &sealed_seed, now).await })
        })
        .await?;
        self.ledger_key()
            .await?
            .ok_or_else(|| StoreError::Corrupt("the ledger key vanished".into()))
    }

    /// Remembers a checkpoint handed out.
    pub async fn record_checkpoint(
        &self,
        size: u64,
        note: &str,
        now: chaperone_core::Timestamp,
    ) -> Result<(), StoreError> {
        let note = note.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO ledger_checkpoints (size, note, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (size) DO NOTHING",
                )
                .bind(to_i64(size))
                .bind(note)
                .bind(now.unix_nanos())
                .execute(conn)
                .await
                .map_err(db("storing a checkpoint"))?;
                Ok(())
            })
        })
        .await
    }

    /// The largest checkpoint made so far: (size, signed note, unix nanos).
    pub async fn latest_checkpoint(&self) -> Result<Option<(u64, String, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT size, note, created_at FROM ledger_checkpoints ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading the latest checkpoint"))?;
        row.map(|row| {
            let size: i64 = row
                .try_get("size")
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((
                to_u64(size, "checkpoint size")?,
                row.try_get("note")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                row.try_get("created_at")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ))
        })
        .transpose()
    }
}

/// Stores the ledger's signing key unless one is stored (the first one stays).
pub(crate) async fn insert_ledger_key(
    conn: &mut Conn<'_>,
    origin: &str,
    sealed_seed: &[u8],
    now: chaperone_core::Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ledger_key (id, origin, sealed_seed, created_at) \
         VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(origin)
    .bind(sealed_seed)
    .bind(now.unix_nanos())
    .execute(conn)
    .await
    .map_err(db("storing the ledger key"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_size_is_checked_across_unknown_outcomes() {
        let root = |b: u8| [b; 32];
        let mut written = Written {
            head: Some((100, root(1))),
            unknown: Some((110, root(2))),
            running_since: None,
            failed_at: None,
            moved: None,
        };
        // A batch of unknown outcome found in the database becomes the head...
        assert_eq!(written.check(110, true).unwrap(), Some((110, root(2))));
        // ...so a second one that did not land leaves the database at the head.
        written.unknown = Some((115, root(3)));
        assert_eq!(written.check(110, true).unwrap(), Some((110, root(2))));
        // Any other size is refused on SQLite; on PostgreSQL a larger one is another
        // node's, and a smaller one is refused too.
        for (size, alone) in [(111, true), (109, true), (109, false)] {
            assert!(
                matches!(
                    written.check(size, alone),
                    Err(StoreError::LedgerTampered(_))
                ),
                "{size} {alone}"
            );
        }
        assert_eq!(written.check(120, false).unwrap(), None);
        // Nothing written yet: nothing to check against.
        assert_eq!(Written::default().check(7, true).unwrap(), None);
    }
}
