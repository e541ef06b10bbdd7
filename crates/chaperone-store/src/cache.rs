//! What authorisation and secret reads fetch on every request, kept in memory while nothing
//! changes: token records by hash and stored secret versions (still sealed) by path and
//! version. See [`crate::Store::data_generation`] for when caching is allowed at all.
//!
//! Every committed change moves the generation and empties the maps before its caller is
//! answered, so a revocation, a new grant or a destroyed version is seen by the very next
//! request, and a destroyed version's ciphertext does not linger in memory. An entry carries
//! the generation read *before* the database was: a row read while a change commits is
//! filed under a generation that commit has already left, and is never served.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{StoredVersion, TokenRecord};

/// Most entries per map; a full map is emptied.
const CAPACITY: usize = 10_000;

/// The caches of one store.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    generation: AtomicU64,
    pub(crate) tokens: Map<[u8; 32], TokenRecord>,
    pub(crate) versions: Map<(String, u64), StoredVersion>,
}

impl Cache {
    /// The current generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Something changed: every entry is dropped.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.tokens.clear();
        self.versions.clear();
    }

    /// Keeps `value` under `generation` unless the generation moved meanwhile.
    pub(crate) fn put<K: Hash + Eq, V>(&self, map: &Map<K, V>, key: K, generation: u64, value: V) {
        let mut entries = map.lock();
        if self.generation() != generation {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, (generation, value));
    }
}

/// One map of entries filed under the generation they were read at.
#[derive(Debug)]
pub(crate) struct Map<K, V>(Mutex<HashMap<K, (u64, V)>>);

impl<K, V> Default for Map<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
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
}

impl<K, V> Map<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (u64, V)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clear(&self) {
        self.lock().clear();
    }
}
