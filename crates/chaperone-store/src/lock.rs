//! One process at a time on a SQLite database.
//!
//! Security decision: a SQLite database is served by one process. Its caches (tokens,
//! people, grants: see [`crate::cache`]) are emptied by the changes that process commits and
//! by no other, so a second process writing the same file would leave the first answering
//! from what it cached: a token revoked through one would still open secrets through the
//! other. [`Store::connect`](crate::Store::connect) therefore takes an exclusive lock on
//! `DATABASE.lock` beside the database, and holds it until the store is closed or dropped.
//! A second server, `chaperone init` or a restore over the same file fails at once and says
//! which process holds it; a restore takes the lock of the database it replaces. Backups ([`Store::connect_existing`](crate::Store::connect_existing))
//! only read, and are meant to run beside the server, so they take no lock.
//!
//! The lock is `flock(2)` on a file of its own: the kernel drops it when the process ends,
//! however it ends, so a crash leaves nothing to clean up. It is not taken on the database
//! file itself, because closing any descriptor of that file would drop SQLite's own
//! POSIX locks on it. The lock file holds the holder's process id, for the error message
//! only; it is never removed (removing it would let two processes lock two different
//! files of the same name).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::StoreError;

/// The lock file of the SQLite database at `database`: beside the file the path resolves to,
/// so that every spelling of one database (a symbolic link to it or to a directory above
/// it, `..`, a relative path) takes the same lock. SQLite resolves symbolic links the same
/// way, and keeps its `-wal` and `-shm` files beside the target. A database not created
/// yet resolves through its directory.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = resolved(database).into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// `database` with every symbolic link resolved, as far as the file system allows; the path
/// as given when even its directory cannot be resolved (opening the lock then reports why).
fn resolved(database: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(database) {
        return path;
    }
    let Some(name) = database.file_name() else {
        return database.to_owned();
    };
    let directory = match database.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::canonicalize(directory).map_or_else(|_| database.to_owned(), |dir| dir.join(name))
}

/// A held lock on a SQLite database; released by [`DatabaseLock::release`] or when dropped.
#[derive(Debug)]
pub struct DatabaseLock(Mutex<Option<File>>);

impl DatabaseLock {
    /// Takes the lock of the database at `database`, or says who holds it.
    pub fn acquire(database: &Path) -> Result<Self, StoreError> {
        let path = lock_path(database);
        let failed = |source| StoreError::CreateFile {
            path: path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(failed)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::InUse {
                    database: database.to_owned(),
                    holder: holder.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(source)) => return Err(failed(source)),
        }
        // Who holds it, for the next process's error message; the lock holds without it.
        let pid = std::process::id().to_string();
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()));
        Ok(Self(Mutex::new(Some(file))))
    }

    /// Releases the lock (closing the file releases it); later calls do nothing.
    pub fn release(&self) {
        let file = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder_until_the_first_is_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = dir.path().join("chaperone.db");
        let first = DatabaseLock::acquire(&database).expect("first lock");
        match DatabaseLock::acquire(&database) {
            Err(StoreError::InUse {
                database: d,
                holder,
            }) => {
                assert_eq!(d, database);
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("a second lock was not refused: {other:?}"),
        }
        first.release();
        first.release();
        let again = DatabaseLock::acquire(&database).expect("lock after release");
        drop(again);
        DatabaseLock::acquire(&database).expect("lock after drop");
        let dir_resolved = std::fs::canonicalize(dir.path()).expect("resolve");
        assert_eq!(lock_path(&database), dir_resolved.join("chaperone.db.lock"));
    }

    #[cfg(unix)]
    #[test]
    fn every_path_to_one_database_takes_the_same_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let database = data.join("chaperone.db");
        std::fs::write(&database, b"").expect("database file");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("other dir");
        let file_link = elsewhere.join("link.db");
        std::os::unix::fs::symlink(&database, &file_link).expect("link to the file");
        let dir_link = dir.path().join("data-link");
        std::os::unix::fs::symlink(&data, &dir_link).expect("link to the directory");

        let held = DatabaseLock::acquire(&database).expect("first lock");
        for other in [
            file_link,
            dir_link.join("chaperone.db"),
            elsewhere.join("..").join("data").join("chaperone.db"),
        ] {
            assert_eq!(
                lock_path(&other),
                lock_path(&database),
                "{}",
                other.display()
            );
            assert!(
                matches!(DatabaseLock::acquire(&other), Err(StoreError::InUse { .. })),
                "{} took a second lock",
                other.display()
            );
        }
        // A database not created yet, through a linked directory, resolves the same way.
        let new = lock_path(&dir_link.join("new.db"));
        assert_eq!(
            new,
            std::fs::canonicalize(&data)
                .expect("resolve")
                .join("new.db.lock")
        );
        drop(held);
    }
}
