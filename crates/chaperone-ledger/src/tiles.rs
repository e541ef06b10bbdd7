//! C2SP tlog-tiles: how the tree and the entries are stored and served.
//!
//! A tile at level `L` holds up to 256 consecutive hashes of complete subtrees of height `8L`
//! (level 0: the leaf hashes). Entry bundles hold up to 256 consecutive entries, each prefixed
//! by its length as a big-endian `u16`. A tile or bundle with fewer than 256 items is partial
//! and is addressed with `.p/<W>`; its first `W` items never change as the log grows, so a
//! wider stored tile also answers for a narrower one.
//!
//! [`Edge`] is the right edge of the tree (the partial tiles and the partial bundle): what an
//! append needs, and all it rewrites. [`Tiles`] answers [`HashReader`] questions from tiles,
//! so proofs read O(log n) tiles. [`TreeBuilder`] recomputes a tree head from entries in one
//! pass, for verifiers.

use std::collections::HashMap;

use crate::merkle::{Hash, HashReader, ProofError, leaf_hash, node_hash};

/// Items in a full tile or bundle.
pub const WIDTH: u64 = 256;
/// Tree levels one tile spans.
pub const HEIGHT: u8 = 8;
/// The largest entry a bundle can hold.
pub const MAX_ENTRY: usize = u16::MAX as usize;

/// Why a tile, bundle or path is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileError {
    /// An entry is longer than a bundle can frame.
    #[error("a ledger entry of {0} bytes is larger than {MAX_ENTRY} bytes")]
    EntryTooLarge(usize),
    /// A bundle's framing is broken.
    #[error("entry bundle {bundle}: {problem}")]
    Bundle {
        /// Bundle index.
        bundle: u64,
        /// What is wrong.
        problem: String,
    },
    /// A tile's bytes are not whole hashes, or too few.
    #[error("tile {level}/{index}: {problem}")]
    Tile {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// What is wrong.
        problem: String,
    },
    /// A path is not a tlog-tiles path.
    #[error("not a tile path: {0}")]
    Path(String),
    /// Stored parts do not fit the tree size.
    #[error("the ledger's right edge does not fit its size: {0}")]
    Edge(String),
}

/// What a tile path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Hashes at tile level `L`.
    Hashes(u8),
    /// An entry bundle.
    Entries,
}

/// A tile or bundle address: kind, index and width (1..=256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileId {
    /// Hash level or entries.
    pub kind: TileKind,
    /// Index within its level.
    pub index: u64,
    /// Items it holds; 256 for a full tile.
    pub width: u64,
}

impl TileId {
    /// The path under the log's prefix, e.g. `tile/0/x001/234.p/7` or `tile/entries/000`.
    pub fn path(&self) -> String {
        let level = match self.kind {
            TileKind::Hashes(level) => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let mut path = format!("tile/{level}/{}", encode_index(self.index));
        if self.width < WIDTH {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Parses a path made by [`TileId::path`] (without a leading slash).
    pub fn parse(path: &str) -> Result<Self, TileError> {
        let bad = || TileError::Path(path.chars().take(100).collect());
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (level, rest) = rest.split_once('/').ok_or_else(bad)?;
        let kind = if level == "entries" {
            TileKind::Entries
        } else {
            let l: u8 = parse_decimal(level).ok_or_else(bad)?;
            if l > 7 {
                return Err(bad());
            }
            TileKind::Hashes(l)
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let w: u64 = parse_decimal(width).ok_or_else(bad)?;
                if w == 0 || w >= WIDTH {
                    return Err(bad());
                }
                (index, w)
            }
            None => (rest, WIDTH),
        };
        let groups: Vec<&str> = index_part.split('/').collect();
        let mut index: u64 = 0;
        for (i, group) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                group.strip_prefix('x').ok_or_else(bad)?
            } else {
                group
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let value: u64 = digits.parse().map_err(|_| bad())?;
            index = index
                .checked_mul(1000)
                .and_then(|n| n.checked_add(value))
                .ok_or_else(bad)?;
        }
        let id = Self { kind, index, width };
        // One spelling per tile: reject extra leading zero groups.
        if id.path() != path {
            return Err(bad());
        }
        Ok(id)
    }
}

fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// `1234067` → `x001/x234/067`: groups of three digits, all but the last prefixed by `x`.
fn encode_index(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        groups.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

/// The tiles and bundles a client needs for a tree of `size` entries: every full one and
/// the partial right edge. Lazy: a size read from a checkpoint not yet verified must not
/// make a list of billions of tiles.
pub fn tiles_for_size(size: u64) -> impl Iterator<Item = TileId> {
    (0u8..8)
        .map(move |level| (TileKind::Hashes(level), size / WIDTH.pow(u32::from(level))))
        .take_while(|&(_, count)| count > 0)
        .chain(std::iter::once((TileKind::Entries, size)))
        .flat_map(|(kind, count)| {
            let full = (0..count / WIDTH).map(move |index| TileId {
                kind,
                index,
                width: WIDTH,
            });
            let partial = (!count.is_multiple_of(WIDTH)).then_some(TileId {
                kind,
                index: count / WIDTH,
                width: count % WIDTH,
            });
            full.chain(partial)
        })
}

/// Frames entries as a bundle.
pub fn encode_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, TileError> {
    let mut out = Vec::new();
    for entry in entries {
        push_entry(&mut out, entry)?;
    }
    Ok(out)
}

fn push_entry(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<(), TileError> {
    let len = u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLarge(entry.len()))?;
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Splits bundle `index` into its entries. Fails on a cut-short entry; the caller checks the
/// count.
pub fn split_bundle(index: u64, data: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let (entries, whole) = bundle_prefix(data);
    if !whole {
        return Err(TileError::Bundle {
            bundle: index,
            problem: format!("entry {} is cut short", entries.len()),
        });
    }
    Ok(entries)
}

/// The whole entries at the start of a bundle, and whether nothing follows them. It reads
/// at most `WIDTH + 1` entries (one more than a bundle holds, which shows it holds too
/// many): a hostile bundle of millions of empty entries costs no more than a real one.
pub fn bundle_prefix(data: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() <= WIDTH as usize
        && let Some((len, tail)) = rest.split_first_chunk::<2>()
    {
        let len = u16::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return (out, false);
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    (out, rest.is_empty())
}

/// Parses a hash tile's bytes.
pub fn split_tile(level: u8, index: u64, data: &[u8]) -> Result<Vec<Hash>, TileError> {
    if !data.len().is_multiple_of(32) || data.len() > 32 * WIDTH as usize {
        return Err(TileError::Tile {
            level,
            index,
            problem: format!("{} bytes is not a whole number of hashes", data.len()),
        });
    }
    Ok(data
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32-byte chunk"))
        .collect())
}

/// A tile's bytes.
pub fn join_tile(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// The root of a perfect subtree given its `2^k` bottom hashes.
pub fn perfect_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level[0]
}

/// Hash tiles by (tile level, index), each possibly partial.
#[derive(Clone, Debug, Default)]
pub struct Tiles(pub HashMap<(u8, u64), Vec<Hash>>);

/// The tiles (level, index, least width) that answer `nodes` (tree level, index).
pub fn tiles_needed(nodes: &[(u8, u64)]) -> Vec<(u8, u64, u64)> {
    let mut need: HashMap<(u8, u64), u64> = HashMap::new();
    for &(level, index) in nodes {
        let (tile_level, first, count) = locate(level, index);
        let width = (first % WIDTH) + count;
        let slot = need.entry((tile_level, first / WIDTH)).or_default();
        *slot = (*slot).max(width);
    }
    let mut out: Vec<_> = need.into_iter().map(|((l, n), w)| (l, n, w)).collect();
    out.sort_unstable();
    out
}

/// Where node (level, index) lives: its tile level, the index of its first hash at that tile
/// level, and how many hashes it spans.
fn locate(level: u8, index: u64) -> (u8, u64, u64) {
    let tile_level = level / HEIGHT;
    let r = level % HEIGHT;
    (tile_level, index << r, 1 << r)
}

impl HashReader for Tiles {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        let (tile_level, first, count) = locate(level, index);
        let tile = self
            .0
            .get(&(tile_level, first / WIDTH))
            .ok_or_else(|| ProofError::Read {
                level,
                index,
                reason: "tile not fetched".into(),
            })?;
        let start = (first % WIDTH) as usize;
        let end = start + count as usize;
        if tile.len() < end {
            return Err(ProofError::Read {
                level,
                index,
                reason: "tile too narrow".into(),
            });
        }
        Ok(perfect_root(&tile[start..end]))
    }
}

/// A tile or bundle to store: a tile or a full bundle replaces any narrower one at the same
/// address; a partial bundle's entries from `from` on are added after those stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileWrite {
    /// Where.
    pub id: TileId,
    /// For a partial bundle, how many of its entries an earlier [`Edge::take_writes`]
    /// handed out: `data` holds only the entries after them. 0 for everything else.
    pub from: u64,
    /// Hashes joined, or the framed bundle (from entry `from`).
    pub data: Vec<u8>,
}

/// The right edge of the tree: the partial bundle and the partial tile at every level.
#[derive(Clone, Debug, Default)]
pub struct Edge {
    size: u64,
    bundle: Vec<u8>,
    /// Entries and bytes of `bundle` already handed out by [`Edge::take_writes`].
    taken: (u64, usize),
    levels: Vec<Vec<Hash>>,
    /// The perfect subtrees the tree splits into, largest (leftmost) first, as (height,
    /// hash). The head folds them, and a tile's root is the subtree folded at its height,
    /// so neither hashes a partial tile again.
    stack: Vec<(u32, Hash)>,
    full: Vec<TileWrite>,
    dirty: bool,
}

impl Edge {
    /// The edge of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partial tiles and bundle that [`Edge::resume`] needs for a tree of `size`.
    pub fn parts_needed(size: u64) -> Vec<TileId> {
        tiles_for_size(size).filter(|t| t.width < WIDTH).collect()
    }

    /// The edge of a stored tree of `size` entries, from its partial tiles and bundle
    /// (`parts` as listed by [`Edge::parts_needed`], each possibly wider than needed).
    pub fn resume(size: u64, parts: &HashMap<TileId, Vec<u8>>) -> Result<Self, TileError> {
        let mut edge = Self {
            size,
            ..Self::default()
        };
        for id in Self::parts_needed(size) {
            let data = parts
                .get(&id)
                .ok_or_else(|| TileError::Edge(format!("{} is missing", id.path())))?;
            match id.kind {
                TileKind::Entries => {
                    let entries = split_bundle(id.index, data)?;
                    if (entries.len() as u64) < id.width {
                        return Err(TileError::Edge(format!(
                            "{} holds {} entries",
                            id.path(),
                            entries.len()
                        )));
                    }
                    edge.bundle = encode_bundle(entries.into_iter().take(id.width as usize))?;
                    edge.taken = (id.width, edge.bundle.len());
                }
                TileKind::Hashes(level) => {
                    let hashes = split_tile(level, id.index, data)?;
                    if (hashes.len() as u64) < id.width {
                        return Err(TileError::Edge(format!(
                            "{} holds {} hashes",
                            id.path(),
                            hashes.len()
                        )));
                    }
                    let level = usize::from(level);
                    if edge.levels.len() <= level {
                        edge.levels.resize(level + 1, Vec::new());
                    }
                    edge.levels[level] = hashes[..id.width as usize].to_vec();
                }
            }
        }
        // Each level's partial tile is a run of subtrees 8·level high: split in powers of
        // two, they are the tree's perfect subtrees, top level first.
        for (level, hashes) in edge.levels.iter().enumerate().rev() {
            let mut start = 0;
            for k in (0..u32::from(HEIGHT)).rev() {
                let run = 1usize << k;
                if hashes.len() & run != 0 {
                    let height = u32::from(HEIGHT) * level as u32 + k;
                    edge.stack
                        .push((height, perfect_root(&hashes[start..start + run])));
                    start += run;
                }
            }
        }
        Ok(edge)
    }

    /// Entries in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one entry; returns its leaf hash.
    pub fn append(&mut self, entry: &[u8]) -> Result<Hash, TileError> {
        let leaf = leaf_hash(entry);
        push_entry(&mut self.bundle, entry)?;
        if self.size % WIDTH == WIDTH - 1 {
            self.full.push(TileWrite {
                id: TileId {
                    kind: TileKind::Entries,
                    index: self.size / WIDTH,
                    width: WIDTH,
                },
                from: 0,
                data: std::mem::take(&mut self.bundle),
            });
            self.taken = (0, 0);
        }
        // The leaf folds into the subtrees to its left; each one folded at a multiple of
        // 8 high is the root of the tile it completes, one level up per multiple.
        let mut tile_roots = Vec::new();
        fold_in(&mut self.stack, leaf, |height, hash| {
            if height % u32::from(HEIGHT) == 0 {
                tile_roots.push(*hash);
            }
        });
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            if self.levels[level].len() < WIDTH as usize {
                break;
            }
            let full = std::mem::take(&mut self.levels[level]);
            hash = tile_roots[level];
            self.full.push(TileWrite {
                id: TileId {
                    kind: TileKind::Hashes(level as u8),
                    index: (self.size >> (usize::from(HEIGHT) * level)) / WIDTH,
                    width: WIDTH,
                },
                from: 0,
                data: join_tile(&full),
            });
            level += 1;
        }
        self.size += 1;
        self.dirty = true;
        Ok(leaf)
    }

    /// The tiles and bundles changed since the last call: completed ones and the current
    /// partial ones, of the partial bundle only the entries not handed out before.
    pub fn take_writes(&mut self) -> Vec<TileWrite> {
        let mut out = std::mem::take(&mut self.full);
        if std::mem::take(&mut self.dirty) {
            out.extend(self.partials());
        }
        out
    }

    fn partials(&mut self) -> Vec<TileWrite> {
        let mut out = Vec::new();
        let (from, offset) = self.taken;
        if self.bundle.len() > offset {
            out.push(TileWrite {
                id: TileId {
                    kind: TileKind::Entries,
                    index: self.size / WIDTH,
                    width: self.size % WIDTH,
                },
                from,
                data: self.bundle[offset..].to_vec(),
            });
            self.taken = (self.size % WIDTH, self.bundle.len());
        }
        for (level, hashes) in self.levels.iter().enumerate() {
            if hashes.is_empty() {
                continue;
            }
            let level_size = self.size >> (usize::from(HEIGHT) * level);
            out.push(TileWrite {
                id: TileId {
                    kind: TileKind::Hashes(level as u8),
                    index: level_size / WIDTH,
                    width: hashes.len() as u64,
                },
                from: 0,
                data: join_tile(hashes),
            });
        }
        out
    }

    /// The tree head.
    pub fn root(&self) -> Hash {
        fold_root(&self.stack)
    }
}

/// Recomputes a tree head from leaves in one pass, keeping O(log n) hashes.
#[derive(Clone, Debug, Default)]
pub struct TreeBuilder {
    size: u64,
    /// Perfect subtrees, largest (leftmost) first, as (height, hash).
    stack: Vec<(u32, Hash)>,
    /// The hash of every complete subtree of height 8, in order: the level-1 tile hashes.
    level8: Vec<Hash>,
}

impl TreeBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let level8 = &mut self.level8;
        fold_in(&mut self.stack, leaf, |height, hash| {
            if height == u32::from(HEIGHT) {
                level8.push(*hash);
            }
        });
        self.size += 1;
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes every hash tile above level 0 holds, recomputed: `[0]` for tile level 1
    /// (one hash per 256 leaves), `[1]` for level 2, and so on while any is complete.
    pub fn upper_levels(&self) -> Vec<Vec<Hash>> {
        let mut levels = vec![self.level8.clone()];
        loop {
            let below = levels.last().expect("one level at least");
            if below.len() < WIDTH as usize {
                break;
            }
            let next: Vec<Hash> = below
                .chunks_exact(WIDTH as usize)
                .map(perfect_root)
                .collect();
            levels.push(next);
        }
        levels
    }

    /// The head of the tree so far.
    pub fn root(&self) -> Hash {
        fold_root(&self.stack)
    }
}

/// Adds `leaf` to `stack`, the perfect subtrees of a tree as (height, hash), largest
/// (leftmost) first: it joins every subtree to its left as high as the one it has grown
/// into. `folded` sees each subtree made on the way, with its height.
fn fold_in(stack: &mut Vec<(u32, Hash)>, leaf: Hash, mut folded: impl FnMut(u32, &Hash)) {
    let mut hash = leaf;
    let mut height = 0u32;
    while let Some(&(h, left)) = stack.last() {
        if h != height {
            break;
        }
        stack.pop();
        hash = node_hash(&left, &hash);
        height += 1;
        folded(height, &hash);
    }
    stack.push((height, hash));
}

/// The head of the tree whose perfect subtrees are `stack` (RFC 9162: the right ones
/// first, each joined under the one to its left).
fn fold_root(stack: &[(u32, Hash)]) -> Hash {
    let mut subtrees = stack.iter().rev();
    let Some(&(_, mut hash)) = subtrees.next() else {
        return crate::merkle::empty_root();
    };
    for (_, left) in subtrees {
        hash = node_hash(left, &hash);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle;

    fn entries(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
    }

    #[test]
    fn tiles_for_size_lists_full_and_partial_tiles_lazily() {
        let paths: Vec<String> = tiles_for_size(257).map(|t| t.path()).collect();
        assert_eq!(
            paths,
            [
                "tile/0/000",
                "tile/0/001.p/1",
                "tile/1/000.p/1",
                "tile/entries/000",
                "tile/entries/001.p/1"
            ]
        );
        assert_eq!(tiles_for_size(0).count(), 0);
        // A huge claimed size costs nothing until the tiles are walked.
        let first = tiles_for_size(1 << 40).next().unwrap();
        assert_eq!(first.path(), "tile/0/000");
    }

    #[test]
    fn paths_round_trip_and_reject_other_spellings() {
        let cases = [
            (TileKind::Hashes(0), 0, 256, "tile/0/000"),
            (TileKind::Hashes(1), 1234067, 7, "tile/1/x001/x234/067.p/7"),
            (TileKind::Entries, 5, 256, "tile/entries/005"),
            (TileKind::Entries, 1000, 1, "tile/entries/x001/000.p/1"),
        ];
        for (kind, index, width, path) in cases {
            let id = TileId { kind, index, width };
            assert_eq!(id.path(), path);
            assert_eq!(TileId::parse(path).unwrap(), id);
        }
        for bad in [
            "tile/0/5",
            "tile/0/x000/005",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/07",
            "tile/8/000",
            "tile/00/000",
            "tile/0/001/002",
            "tile/0/../000",
            "tile/entries/",
            "tiles/0/000",
        ] {
            assert!(TileId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bundles_frame_and_detect_cut_short_entries() {
        let e = entries(3);
        let bundle = encode_bundle(e.iter().map(Vec::as_slice)).unwrap();
        let parts = split_bundle(0, &bundle).unwrap();
        assert_eq!(parts, e.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert!(split_bundle(0, &bundle[..bundle.len() - 1]).is_err());
        assert!(split_bundle(0, &bundle[..1]).is_err());
        assert_eq!(
            encode_bundle([vec![0u8; MAX_ENTRY + 1].as_slice()]),
            Err(TileError::EntryTooLarge(MAX_ENTRY + 1))
        );
    }

    #[test]
    fn edge_roots_match_the_reference_tree_across_tile_boundaries() {
        let e = entries(70_000);
        let leaves: Vec<Hash> = e.iter().map(|x| merkle::leaf_hash(x)).collect();
        let mut edge = Edge::new();
        let mut builder = TreeBuilder::new();
        let mut stored: HashMap<TileId, Vec<u8>> = HashMap::new();
        let mut last_take = 0;
        for (i, entry) in e.iter().enumerate() {
            edge.append(entry).unwrap();
            builder.push(leaves[i]);
            let n = i + 1;
            if [1, 2, 255, 256, 257, 65_535, 65_536, 65_537, 70_000].contains(&n) {
                let expected = merkle::root(n as u64, &leaves[..n]).unwrap();
                assert_eq!(edge.root(), expected, "edge at {n}");
                assert_eq!(builder.root(), expected, "builder at {n}");
            }
            if n % 97 == 0 || n == e.len() {
                for w in edge.take_writes() {
                    // A partial bundle comes as the entries added since the last call.
                    if w.id.kind == TileKind::Entries {
                        let (chunk, _) = bundle_prefix(&w.data);
                        assert_eq!(chunk.len() as u64, w.id.width - w.from, "{}", w.id.path());
                        let had = if last_take / 256 == w.id.index as usize && w.id.width < WIDTH {
                            last_take % 256
                        } else {
                            0
                        };
                        assert_eq!(w.from, had as u64, "{}", w.id.path());
                    }
                    let mut data = match w.from {
                        0 => Vec::new(),
                        from => stored[&TileId {
                            width: from,
                            ..w.id
                        }]
                            .clone(),
                    };
                    data.extend(w.data);
                    stored.insert(w.id, data);
                }
                last_take = n;
                // Resumed from what is stored, the edge has the same head and goes on alike.
                let parts: HashMap<TileId, Vec<u8>> = Edge::parts_needed(n as u64)
                    .into_iter()
                    .map(|id| (id, stored[&id].clone()))
                    .collect();
                let mut resumed = Edge::resume(n as u64, &parts).unwrap();
                assert_eq!(resumed.root(), builder.root(), "resumed at {n}");
                let mut ahead = edge.clone();
                for extra in [b"x".as_slice(), b"y"] {
                    resumed.append(extra).unwrap();
                    ahead.append(extra).unwrap();
                    assert_eq!(resumed.root(), ahead.root(), "resumed at {n}, then more");
                }
            }
        }
        // Everything stored answers proofs, and the tiles a client lists are all there.
        let mut tiles = Tiles::default();
        for id in tiles_for_size(e.len() as u64) {
            let data = stored
                .iter()
                .find(|(k, _)| k.kind == id.kind && k.index == id.index && k.width >= id.width)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("{} not stored", id.path()));
            if let TileKind::Hashes(level) = id.kind {
                tiles.0.insert(
                    (level, id.index),
                    split_tile(level, id.index, data).unwrap(),
                );
            }
        }
        let size = e.len() as u64;
        let root = merkle::root(size, &leaves[..]).unwrap();
        assert_eq!(merkle::root(size, &tiles).unwrap(), root);
        for index in [0, 255, 256, 65_535, 65_536, 69_999] {
            let proof = merkle::inclusion_proof(index, size, &tiles).unwrap();
            merkle::verify_inclusion(index, size, &leaves[index as usize], &proof, &root).unwrap();
        }
        let proof = merkle::consistency_proof(1000, size, &tiles).unwrap();
        let old = merkle::root(1000, &leaves[..]).unwrap();
        merkle::verify_consistency(1000, size, &proof, &old, &root).unwrap();

        // Resuming from the stored partial parts gives the same edge.
        let parts: HashMap<TileId, Vec<u8>> = Edge::parts_needed(size)
            .into_iter()
            .map(|id| (id, stored[&id].clone()))
            .collect();
        let mut resumed = Edge::resume(size, &parts).unwrap();
        assert_eq!(resumed.root(), root);
        resumed.append(b"next").unwrap();
        edge.append(b"next").unwrap();
        assert_eq!(resumed.root(), edge.root());
    }

    #[test]
    fn tiles_needed_covers_proof_nodes() {
        let size = 1_000_000u64;
        let nodes = merkle::nodes_needed(|r| merkle::inclusion_proof(123_456, size, r));
        let tiles = tiles_needed(&nodes);
        assert!(tiles.len() <= 9, "{tiles:?}");
        assert!(tiles.iter().all(|&(l, _, w)| l <= 2 && w <= WIDTH));
    }
}
