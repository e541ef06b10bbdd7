//! Full verification of a log from its entry bundles, as an auditor runs it offline.
//!
//! [`Audit`] takes the bundles in order and recomputes every leaf hash and the tree head in
//! one pass. Where the log also serves its level-0 tiles, each recomputed leaf is compared
//! with the stored one, which names the first entry changed after it was written. Each entry's
//! `seq` must equal its index, which names an entry deleted, inserted or moved even when the
//! tiles were rewritten to match. The caller then compares the recomputed heads with the
//! signed checkpoint and with the last checkpoint it saw before.

use std::collections::BTreeMap;

use crate::merkle::{Hash, leaf_hash};
use crate::tiles::{TreeBuilder, WIDTH, bundle_prefix};

/// What is wrong with the log, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{what}", index.map(|i| format!("entry {i}: ")).unwrap_or_default())]
pub struct Problem {
    /// The first bad entry, when it can be named.
    pub index: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl Problem {
    /// A problem at entry `index`.
    pub fn at(index: u64, what: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            what: what.into(),
        }
    }

    /// A problem with the log as a whole.
    pub fn log(what: impl Into<String>) -> Self {
        Self {
            index: None,
            what: what.into(),
        }
    }
}

/// A one-pass recomputation of a log of `size` entries.
#[derive(Debug)]
pub struct Audit {
    size: u64,
    builder: TreeBuilder,
    /// Sizes whose heads the caller wants (earlier checkpoints), and the heads once reached.
    heads: BTreeMap<u64, Option<Hash>>,
}

impl Audit {
    /// Starts an audit of `size` entries that also reports the heads at `earlier` sizes.
    pub fn new(size: u64, earlier: &[u64]) -> Self {
        let mut heads: BTreeMap<u64, Option<Hash>> = earlier
            .iter()
            .filter(|&&s| s <= size)
            .map(|&s| (s, None))
            .collect();
        if let Some(head) = heads.get_mut(&0) {
            *head = Some(crate::merkle::empty_root());
        }
        Self {
            size,
            builder: TreeBuilder::new(),
            heads,
        }
    }

    /// The bundles to feed, in order: (index, width).
    pub fn wanted(&self) -> impl Iterator<Item = (u64, u64)> + use<> {
        let size = self.size;
        (0..size.div_ceil(WIDTH)).map(move |i| (i, (size - i * WIDTH).min(WIDTH)))
    }

    /// Feeds the next bundle (`index`, holding `width` entries) and, if the log serves it,
    /// the level-0 tile with the stored leaf hashes of the same entries.
    pub fn bundle(
        &mut self,
        index: u64,
        width: u64,
        data: &[u8],
        leaf_tile: Option<&[Hash]>,
    ) -> Result<(), Problem> {
        self.bundles(&[BundleInput {
            index,
            width,
            data,
            leaf_tile,
        }])
    }

    /// Feeds the next bundles, in order. Their entries are checked and hashed on all cores;
    /// the tree is then extended in order, so the first problem reported is the first in
    /// the log.
    pub fn bundles(&mut self, inputs: &[BundleInput<'_>]) -> Result<(), Problem> {
        let mut expected = self.builder.size();
        for input in inputs {
            if input.index * WIDTH != expected {
                return Err(Problem::log(format!(
                    "bundle {} fed out of order (expected entry {expected})",
                    input.index
                )));
            }
            expected += input.width;
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let results: Vec<Result<Vec<Hash>, Problem>> = if threads < 2 || inputs.len() < 2 {
            inputs.iter().map(leaves_of).collect()
        } else {
            let chunk = inputs.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = inputs
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || part.iter().map(leaves_of).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("a hashing thread panicked"))
                    .collect()
            })
        };
        for result in results {
            for leaf in result? {
                self.builder.push(leaf);
                let size = self.builder.size();
                if let Some(head) = self.heads.get_mut(&size) {
                    *head = Some(self.builder.root());
                }
            }
        }
        Ok(())
    }

    /// The recomputed log: its head, the heads at the earlier sizes asked for, and the hashes
    /// its upper tiles must hold.
    pub fn finish(self) -> Result<Audited, Problem> {
        if self.builder.size() != self.size {
            return Err(Problem::at(
                self.builder.size(),
                format!("is missing: the log claims {} entries", self.size),
            ));
        }
        Ok(Audited {
            root: self.builder.root(),
            heads: self
                .heads
                .into_iter()
                .filter_map(|(size, head)| head.map(|h| (size, h)))
                .collect(),
            upper: self.builder.upper_levels(),
        })
    }
}

/// What an audit recomputed.
#[derive(Clone, Debug)]
pub struct Audited {
    /// The tree head.
    pub root: Hash,
    /// Heads at the earlier sizes asked for.
    pub heads: BTreeMap<u64, Hash>,
    /// The hashes of hash tiles at levels 1, 2, ... (`upper[0]` is level 1).
    pub upper: Vec<Vec<Hash>>,
}

impl Audited {
    /// Checks a stored hash tile at level 1 or above against the recomputed hashes.
    pub fn check_tile(&self, level: u8, index: u64, hashes: &[Hash]) -> Result<(), Problem> {
        let start = (index * WIDTH) as usize;
        let expected = usize::from(level)
            .checked_sub(1)
            .and_then(|l| self.upper.get(l))
            .and_then(|hashes| hashes.get(start..start + hashes_len(hashes, start)));
        match expected {
            Some(expected) if expected == hashes => Ok(()),
            _ => Err(Problem::log(format!(
                "hash tile {level}/{index} differs from the hashes of the entries: it was changed"
            ))),
        }
    }
}

fn hashes_len(all: &[Hash], start: usize) -> usize {
    all.len().saturating_sub(start).min(WIDTH as usize)
}

/// One entry bundle to audit.
#[derive(Clone, Copy, Debug)]
pub struct BundleInput<'a> {
    /// Bundle index.
    pub index: u64,
    /// Entries it must hold.
    pub width: u64,
    /// The bundle's bytes.
    pub data: &'a [u8],
    /// The stored level-0 tile of the same entries, if the log serves it.
    pub leaf_tile: Option<&'a [Hash]>,
}

/// Checks one bundle's entries and returns their leaf hashes.
fn leaves_of(input: &BundleInput<'_>) -> Result<Vec<Hash>, Problem> {
    let first = input.index * WIDTH;
    let (entries, whole) = bundle_prefix(input.data);
    let mut leaves = Vec::with_capacity(input.width as usize);
    for (offset, entry) in entries.iter().enumerate().take(input.width as usize) {
        let at = first + offset as u64;
        match entry_seq(entry) {
            Some(seq) if seq == at => {}
            Some(seq) => {
                return Err(Problem::at(
                    at,
                    format!(
                        "holds the entry numbered {seq}: entries were deleted, inserted or moved"
                    ),
                ));
            }
            None => {
                return Err(Problem::at(
                    at,
                    "is not a ledger entry (no sequence number)",
                ));
            }
        }
        let leaf = leaf_hash(entry);
        if let Some(tile) = input.leaf_tile {
            match tile.get(offset) {
                Some(stored) if *stored == leaf => {}
                Some(_) => {
                    return Err(Problem::at(
                        at,
                        "does not match the hash stored when it was written: it was changed",
                    ));
                }
                None => return Err(Problem::at(at, "has no stored hash (its tile is short)")),
            }
        }
        leaves.push(leaf);
    }
    if let Some(tile) = input.leaf_tile
        && tile.len() as u64 != input.width
    {
        return Err(Problem::at(
            first,
            format!(
                "its level-0 tile holds {} hashes where {} are due",
                tile.len(),
                input.width
            ),
        ));
    }
    if entries.len() as u64 > input.width {
        return Err(Problem::at(
            first + input.width,
            format!(
                "bundle {} holds more than its {} entries: something was added",
                input.index, input.width
            ),
        ));
    }
    if !whole && entries.len() as u64 == input.width {
        return Err(Problem::at(
            first + input.width,
            format!("bundle {} has bytes after its last entry", input.index),
        ));
    }
    if (entries.len() as u64) < input.width {
        let what = if whole { "is missing" } else { "is cut short" };
        return Err(Problem::at(
            first + entries.len() as u64,
            format!(
                "{what}: bundle {} holds {} whole entries of its {}",
                input.index,
                entries.len(),
                input.width
            ),
        ));
    }
    Ok(leaves)
}

/// The top-level `seq` of a canonical entry. Keys are sorted, so `seq` follows `details`
/// and only the strings `time` and `user_agent` come after it; a quote inside a JSON string
/// is always escaped, so the last `"seq":` in the bytes is the top-level key.
fn entry_seq(entry: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"seq\":";
    // Scan back for the key's closing `":`, then compare the rest: cheaper than comparing
    // every window.
    let mut end = entry.len();
    let at = loop {
        let colon = entry[..end].iter().rposition(|&b| b == b':')?;
        if colon + 1 >= KEY.len() && &entry[colon + 1 - KEY.len()..=colon] == KEY {
            break colon + 1;
        }
        end = colon;
    };
    let rest = &entry[at..];
    let len = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    let digits = &rest[..len];
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Actor, Event, Outcome};
    use crate::merkle;
    use crate::tiles::{Edge, TileKind, encode_bundle, split_bundle, split_tile};

    fn event(i: usize) -> Event {
        Event {
            time: "2026-01-01T00:00:00.000000000Z".into(),
            actor: Actor::default(),
            action: "secret.read".into(),
            resource: format!("app/{i}"),
            outcome: Outcome::Success,
            reasons: vec![],
            request_id: "req".into(),
            client_ip: None,
            user_agent: Some("agent \"seq\":1 x".into()),
            details: [("seq".to_owned(), serde_json::json!(99))].into(),
        }
    }

    struct Log {
        bundles: Vec<Vec<u8>>,
        leaf_tiles: Vec<Vec<Hash>>,
        size: u64,
        root: Hash,
    }

    fn log(n: usize) -> Log {
        let mut edge = Edge::new();
        let mut bundles = vec![Vec::new(); n.div_ceil(256)];
        let mut leaf_tiles = vec![Vec::new(); n.div_ceil(256)];
        for i in 0..n {
            edge.append(&event(i).to_entry(i as u64)).unwrap();
        }
        for w in edge.take_writes() {
            match w.id.kind {
                TileKind::Entries => bundles[w.id.index as usize] = w.data,
                TileKind::Hashes(0) => {
                    leaf_tiles[w.id.index as usize] = split_tile(0, w.id.index, &w.data).unwrap()
                }
                TileKind::Hashes(_) => {}
            }
        }
        Log {
            bundles,
            leaf_tiles,
            size: n as u64,
            root: edge.root(),
        }
    }

    fn run(
        log: &Log,
        tiles: bool,
        earlier: &[u64],
    ) -> Result<(Hash, BTreeMap<u64, Hash>), Problem> {
        let mut audit = Audit::new(log.size, earlier);
        for (i, w) in audit.wanted().collect::<Vec<_>>() {
            let tile = tiles.then(|| log.leaf_tiles[i as usize].as_slice());
            audit.bundle(i, w, &log.bundles[i as usize], tile)?;
        }
        audit.finish().map(|a| (a.root, a.heads))
    }

    fn rebundle(log: &mut Log, b: usize, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
        let mut entries: Vec<Vec<u8>> = split_bundle(b as u64, &log.bundles[b])
            .unwrap()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        f(&mut entries);
        log.bundles[b] = encode_bundle(entries.iter().map(Vec::as_slice)).unwrap();
    }

    #[test]
    fn an_intact_log_gives_its_head_and_earlier_heads() {
        let l = log(600);
        let (root, heads) = run(&l, true, &[0, 1, 300, 600, 700]).unwrap();
        assert_eq!(root, l.root);
        let leaves: Vec<Hash> = (0..600)
            .map(|i| merkle::leaf_hash(&event(i).to_entry(i as u64)))
            .collect();
        assert_eq!(heads[&300], merkle::root(300, &leaves[..]).unwrap());
        assert_eq!(heads[&1], leaves[0]);
        assert_eq!(heads[&0], merkle::empty_root());
        assert!(!heads.contains_key(&700));
    }

    #[test]
    fn a_changed_byte_is_named_by_its_stored_hash() {
        let mut l = log(600);
        rebundle(&mut l, 1, |e| {
            let at = e[44].len() / 2;
            e[44][at] ^= 1;
        });
        let p = run(&l, true, &[]).unwrap_err();
        assert_eq!(p.index, Some(256 + 44), "{p}");
        // Without tiles the change still changes the head.
        assert_ne!(run(&l, false, &[]).unwrap().0, l.root);
    }

    #[test]
    fn deleted_and_swapped_entries_are_named_by_their_sequence() {
        let mut l = log(600);
        rebundle(&mut l, 0, |e| {
            e.remove(10);
        });
        assert_eq!(run(&l, false, &[]).unwrap_err().index, Some(10));

        let mut l = log(600);
        rebundle(&mut l, 2, |e| e.swap(3, 4));
        assert_eq!(run(&l, false, &[]).unwrap_err().index, Some(512 + 3));

        let mut l = log(600);
        l.bundles[2].extend_from_slice(&[0, 1, b'x']);
        assert_eq!(run(&l, false, &[]).unwrap_err().index, Some(600));
        let mut l = log(600);
        l.bundles[1].push(0);
        assert_eq!(run(&l, false, &[]).unwrap_err().index, Some(512));

        let mut l = log(600);
        let cut = l.bundles[2].len() - 3;
        l.bundles[2].truncate(cut);
        assert_eq!(run(&l, false, &[]).unwrap_err().index, Some(512 + 87));
    }

    #[test]
    fn seq_is_read_from_the_top_level_key() {
        let e = event(7).to_entry(1234);
        assert_eq!(entry_seq(&e), Some(1234));
        assert_eq!(entry_seq(b"{\"seq\":01}"), None);
        assert_eq!(entry_seq(b"{}"), None);
    }
}
