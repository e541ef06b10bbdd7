//! What authorisation and secret reads fetch on every request, kept in memory while nothing
//! changes: token records by hash; people (without credentials), vendors and grants by id;
//! stored secret versions (still sealed) by path and version. See
//! [`crate::Store::data_generation`] for when caching is allowed at all.
//!
//! Each map has a generation, and a committed change moves it and empties the map before
//! its caller is answered, so a revocation, a new grant or a destroyed version is seen by
//! the very next request, and a destroyed version's ciphertext does not linger in memory.
//! An entry carries the generation read *before* the database was: a row read while a
//! change commits is filed under a generation that commit has already left, and is never
//! served.
//!
//! Every change empties the versions, but one declared to write only what no cache holds
//! ([`Touches::Uncached`]: the failed-attempt counters), which empties nothing, so that a
//! stream of failed logins cannot send every request back to the database. Only a change
//! declared to write secrets alone ([`Touches::Secrets`]: the `secrets` and
//! `secret_versions` tables, which no token, grant or classification is read from) leaves
//! the tokens, people, vendors and grants, so that a busy writer of secrets does not send
//! every other request's authorisation back to the database. Any other change, and any
//! change not declared, empties everything.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{GrantRecord, PersonRecord, StoredVersion, TokenRecord, VendorRecord};

/// Most entries per map; a full map is emptied.
const CAPACITY: usize = 10_000;

/// What a committed change may have written: what it must empty. Ordered from the least
/// to the most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Touches {
    /// Only tables no cache reads: the `auth_failures` counters and the `login_networks`
    /// an account logged in from.
    Uncached,
    /// Only secrets' values and metadata: the `secrets` and `secret_versions` tables.
    Secrets,
    /// Anything at all: the default.
    Anything,
}

impl Touches {
    /// What two changes committed together may have written: the more of the two.
    pub(crate) fn join(self, other: Touches) -> Touches {
        self.max(other)
    }
}

/// The caches of one store.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// Token records, by hash. This and the three maps below are what authorisation reads:
    /// emptied by every change but those to secrets alone.
    pub(crate) tokens: Map<[u8; 32], TokenRecord>,
    /// People as authorisation sees them (no password hash, no TOTP), by id.
    pub(crate) people: Map<String, PersonRecord>,
    /// Vendors, by the id or name asked for.
    pub(crate) vendors: Map<String, VendorRecord>,
    /// A person's unrevoked grants, by person id.
    pub(crate) grants: Map<String, Vec<GrantRecord>>,
    /// Stored secret versions (still sealed), by path and version; emptied by every change.
    pub(crate) versions: Map<(String, u64), StoredVersion>,
}

impl Cache {
    /// A change that may have written what `touched` says was committed.
    pub(crate) fn invalidate(&self, touched: Touches) {
        if touched == Touches::Uncached {
            return;
        }
        self.versions.invalidate();
        if touched == Touches::Anything {
            self.tokens.invalidate();
            self.people.invalidate();
            self.vendors.invalidate();
            self.grants.invalidate();
        }
    }
}

/// One map of entries filed under the generation they were read at.
#[derive(Debug)]
pub(crate) struct Map<K, V> {
    generation: AtomicU64,
    entries: Mutex<HashMap<K, (u64, V)>>,
}

impl<K, V> Default for Map<K, V> {
    fn default() -> Self {
        Self {
            generation: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V: Clone> Map<K, V> {
    /// The entry for `key` if it was read at `generation`.
    pub(crate) fn get(&self, key: &K, generation: u64) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|(at, _)| *at == generation)
            .map(|(_, value)| value.clone())
    }

    /// Keeps `value` under `generation` unless the generation moved meanwhile.
    pub(crate) fn put(&self, key: K, generation: u64, value: V) {
        let mut entries = self.lock();
        if self.generation() != generation {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, (generation, value));
    }
}

impl<K, V> Map<K, V> {
    /// The current generation: read it before reading the database.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Something this map holds may have changed: every entry is dropped.
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (u64, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_served_only_under_the_generation_it_was_read_at() {
        let map: Map<u32, &str> = Map::default();
        let read_at = map.generation();
        map.put(1, read_at, "one");
        assert_eq!(map.get(&1, read_at), Some("one"));
        map.invalidate();
        assert_eq!(map.get(&1, read_at), None);
        assert_eq!(map.get(&1, map.generation()), None, "emptied");
        // A row read before a change committed is not kept after it.
        map.put(1, read_at, "stale");
        assert_eq!(map.get(&1, map.generation()), None);
    }

    #[test]
    fn a_batch_touches_what_any_of_its_changes_touch() {
        use Touches::{Anything, Secrets, Uncached};
        assert_eq!(Secrets.join(Secrets), Secrets);
        assert_eq!(Secrets.join(Anything), Anything);
        assert_eq!(Anything.join(Secrets), Anything);
        assert_eq!(Anything.join(Anything), Anything);
        assert_eq!(Uncached.join(Uncached), Uncached);
        assert_eq!(Uncached.join(Secrets), Secrets);
        assert_eq!(Anything.join(Uncached), Anything);
    }

    /// Security decision (see `Store::change_touching`): only the secrets module, whose
    /// statements write the `secrets` and `secret_versions` tables alone, may declare a
    /// change that leaves the cached tokens; and only the failed-attempt counters of the
    /// identity module a change that leaves everything.
    #[test]
    fn only_the_secrets_module_declares_changes_to_secrets_alone() {
        let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut declared = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .any(|line| {
                        line.contains("Touches::Secrets")
                            || (line.contains("Touches::{") && line.contains("Secrets"))
                    });
                // This file defines `Touches` and tests it.
                if code && name != "cache.rs" {
                    declared.push(name);
                }
            }
        }
        assert_eq!(declared, ["secrets.rs"]);
    }

    #[test]
    fn only_the_failed_attempt_counters_declare_changes_that_empty_nothing() {
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut declared = Vec::new();
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() || name == "cache.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                if line.contains("Touches::Uncached") || line.contains("write_uncached(") {
                    declared.push((name.clone(), line.trim().to_owned()));
                }
            }
        }
        declared.sort();
        let files: Vec<&str> = declared.iter().map(|(f, _)| f.as_str()).collect();
        // The definition of `write_uncached` (ledger.rs), its callers on `auth_failures` and
        // `login_networks`, and the record of a session's use (keyring.rs), which only the
        // idle check reads.
        assert!(
            files
                .iter()
                .all(|f| *f == "identity.rs" || *f == "ledger.rs" || *f == "keyring.rs"),
            "{declared:?}"
        );
        // What follows each `write_uncached(` call in `file`: the statement it runs.
        let calls = |file: &str| -> Vec<String> {
            let text = std::fs::read_to_string(source.join(file)).unwrap();
            text.split("write_uncached(")
                .skip(1)
                .map(|chunk| chunk.chars().take(700).collect())
                .collect()
        };
        for body in calls("keyring.rs") {
            let statement = body.split('"').nth(1).unwrap_or_default();
            assert!(
                statement.starts_with("UPDATE tokens SET last_used_at = $2 WHERE"),
                "a write_uncached in keyring.rs that is not the use record: {body}"
            );
        }
        for body in calls("identity.rs") {
            assert!(
                (body.contains("auth_failures") || body.contains("login_networks"))
                    && !body.contains("INSERT INTO tokens"),
                "a write_uncached that is not on auth_failures or login_networks: {body}"
            );
        }
    }

    #[test]
    fn changes_to_uncached_tables_empty_nothing() {
        let cache = Cache::default();
        let all = |c: &Cache| {
            [
                c.tokens.generation(),
                c.people.generation(),
                c.vendors.generation(),
                c.grants.generation(),
                c.versions.generation(),
            ]
        };
        let before = all(&cache);
        cache.invalidate(Touches::Uncached);
        assert_eq!(all(&cache), before);
    }

    #[test]
    fn changes_to_secrets_alone_keep_what_authorisation_reads() {
        let cache = Cache::default();
        let access = |c: &Cache| {
            [
                c.tokens.generation(),
                c.people.generation(),
                c.vendors.generation(),
                c.grants.generation(),
            ]
        };
        let (before, versions) = (access(&cache), cache.versions.generation());
        cache.invalidate(Touches::Secrets);
        assert_eq!(access(&cache), before);
        assert!(cache.versions.generation() > versions);
        let versions = cache.versions.generation();
        cache.invalidate(Touches::Anything);
        assert!(
            access(&cache)
                .iter()
                .zip(before)
                .all(|(now, was)| *now > was)
        );
        assert!(cache.versions.generation() > versions);
    }
}
