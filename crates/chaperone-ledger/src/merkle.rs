//! The RFC 9162 Merkle tree: `leaf = SHA-256(0x00 ‖ entry)`, `node = SHA-256(0x01 ‖ left ‖
//! right)`, the tree head of `n` leaves splitting at the largest power of two below `n`.
//!
//! Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 in the generalised form of the Merkle
//! Tree Certificates draft (subtree inclusion and subtree consistency), of which the plain
//! proofs are the case `start = 0`. Proof generation reads only hashes of complete, aligned
//! subtrees (what tlog tiles store) through [`HashReader`], O(log n) of them per proof.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Why a proof did not verify, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The indices or sizes are impossible (index past the end, empty tree, ...).
    #[error("invalid proof request: {0}")]
    Invalid(&'static str),
    /// The proof has the wrong number of hashes.
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    /// The recomputed hash differs from the expected one.
    #[error("the proof does not lead to the expected root hash")]
    Mismatch,
    /// A hash the proof needs could not be read.
    #[error("cannot read hash at level {level}, index {index}: {reason}")]
    Read {
        /// Tree level (0 = leaves).
        level: u8,
        /// Index within the level.
        index: u64,
        /// What the reader said.
        reason: String,
    },
}

/// The hash of an entry as a leaf.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hash of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Reads the hash of the complete subtree at `level` (its leaves are
/// `index·2^level .. (index+1)·2^level`).
pub trait HashReader {
    /// The stored hash.
    fn node(&self, level: u8, index: u64) -> Result<Hash, ProofError>;
}

/// Stored hashes by (level, index): what a caller fetched from storage for one proof.
#[derive(Clone, Debug, Default)]
pub struct NodeMap(pub std::collections::HashMap<(u8, u64), Hash>);

impl HashReader for NodeMap {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        self.0
            .get(&(level, index))
            .copied()
            .ok_or_else(|| ProofError::Read {
                level,
                index,
                reason: "not fetched".into(),
            })
    }
}

/// The stored hashes that `run` reads, found by running it against a reader that records
/// requests and answers with placeholders. Lets async storage fetch exactly the O(log n)
/// hashes a proof needs in one query, then run it for real against a [`NodeMap`].
pub fn nodes_needed<T>(
    run: impl FnOnce(&dyn HashReader) -> Result<T, ProofError>,
) -> Vec<(u8, u64)> {
    struct Recorder(std::cell::RefCell<Vec<(u8, u64)>>);
    impl HashReader for Recorder {
        fn node(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
            self.0.borrow_mut().push((level, index));
            Ok([0; 32])
        }
    }
    let recorder = Recorder(Default::default());
    let _ = run(&recorder);
    let mut nodes = recorder.0.into_inner();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// The stored hashes that appending `leaves` to a tree of `size` leaves creates: each leaf at
/// level 0, and every subtree the append completes. `reader` supplies the left siblings that
/// existed before (see [`append_needs`]).
pub fn append(
    size: u64,
    leaves: &[Hash],
    reader: &(impl HashReader + ?Sized),
) -> Result<Vec<(u8, u64, Hash)>, ProofError> {
    let mut created: std::collections::HashMap<(u8, u64), Hash> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let mut index = size + i as u64;
        let mut level = 0u8;
        let mut hash = *leaf;
        loop {
            created.insert((level, index), hash);
            out.push((level, index, hash));
            if index & 1 == 0 {
                break;
            }
            let left = match created.get(&(level, index - 1)) {
                Some(h) => *h,
                None => reader.node(level, index - 1)?,
            };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
        }
    }
    Ok(out)
}

/// The stored hashes (existing before the append) that [`append`] reads.
pub fn append_needs(size: u64, count: u64) -> Vec<(u8, u64)> {
    let mut needs = Vec::new();
    for n in size..size + count {
        let (mut index, mut level) = (n, 0u8);
        while index & 1 == 1 {
            // The left sibling existed before if all its leaves did.
            if index << level <= size {
                needs.push((level, index - 1));
            }
            index >>= 1;
            level += 1;
        }
    }
    needs.sort_unstable();
    needs.dedup();
    needs
}

/// Leaf hashes in memory, for tests and small trees.
impl HashReader for [Hash] {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        let width = 1u64 << level;
        let lo = index * width;
        let hi = lo + width;
        if hi > self.len() as u64 {
            return Err(ProofError::Read {
                level,
                index,
                reason: "past the end".into(),
            });
        }
        Ok(mth_in_memory(&self[lo as usize..hi as usize]))
    }
}

fn mth_in_memory(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&mth_in_memory(&leaves[..k]), &mth_in_memory(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Whether `[start, end)` is a subtree: non-empty, and `start` a multiple of the smallest
/// power of two at least `end - start`.
pub fn valid_subtree(start: u64, end: u64) -> bool {
    start < end
        && (end - start)
            .checked_next_power_of_two()
            .is_some_and(|width| start.is_multiple_of(width))
}

/// The hash of the leaves `[lo, hi)`, the tree head when `lo = 0`.
pub fn range_hash(
    lo: u64,
    hi: u64,
    reader: &(impl HashReader + ?Sized),
) -> Result<Hash, ProofError> {
    let len = hi - lo;
    if len == 0 {
        return Ok(empty_root());
    }
    if len.is_power_of_two() && lo.is_multiple_of(len) {
        return reader.node(len.trailing_zeros() as u8, lo / len);
    }
    let k = split(len);
    Ok(node_hash(
        &range_hash(lo, lo + k, reader)?,
        &range_hash(lo + k, hi, reader)?,
    ))
}

/// The tree head of the first `size` leaves.
pub fn root(size: u64, reader: &(impl HashReader + ?Sized)) -> Result<Hash, ProofError> {
    range_hash(0, size, reader)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 PATH).
pub fn inclusion_proof(
    index: u64,
    size: u64,
    reader: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::Invalid("the index is not below the tree size"));
    }
    let mut proof = Vec::new();
    path(index, 0, size, reader, &mut proof)?;
    Ok(proof)
}

fn path(
    m: u64,
    lo: u64,
    hi: u64,
    reader: &(impl HashReader + ?Sized),
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    if hi - lo <= 1 {
        return Ok(());
    }
    let k = split(hi - lo);
    if m < lo + k {
        path(m, lo, lo + k, reader, out)?;
        out.push(range_hash(lo + k, hi, reader)?);
    } else {
        path(m, lo + k, hi, reader, out)?;
        out.push(range_hash(lo, lo + k, reader)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `old` leaves to the tree of `new` leaves (RFC 9162
/// PROOF). Requires `0 < old <= new`.
pub fn consistency_proof(
    old: u64,
    new: u64,
    reader: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::Invalid(
            "consistency needs 0 < old size <= new size",
        ));
    }
    let mut proof = Vec::new();
    subproof(old, 0, new, true, reader, &mut proof)?;
    Ok(proof)
}

fn subproof(
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    reader: &(impl HashReader + ?Sized),
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(range_hash(lo, hi, reader)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, lo, lo + k, complete, reader, out)?;
        out.push(range_hash(lo + k, hi, reader)?);
    } else {
        subproof(m - k, lo + k, hi, false, reader, out)?;
        out.push(range_hash(lo, lo + k, reader)?);
    }
    Ok(())
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves whose head is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    verify_subtree_inclusion(index, 0, size, leaf, proof, root)
}

/// Checks that `leaf` is at `index` in the subtree `[start, end)` whose hash is `subtree`.
pub fn verify_subtree_inclusion(
    index: u64,
    start: u64,
    end: u64,
    leaf: &Hash,
    proof: &[Hash],
    subtree: &Hash,
) -> Result<(), ProofError> {
    if !valid_subtree(start, end) {
        return Err(ProofError::Invalid("not a subtree"));
    }
    if index < start || index >= end {
        return Err(ProofError::Invalid("the index is outside the subtree"));
    }
    let mut fn_ = index - start;
    let mut sn = end - start - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *subtree {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Checks that the tree of `new` leaves with head `new_root` extends the tree of `old` leaves
/// with head `old_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &[u8],
    new_root: &[u8],
) -> Result<(), ProofError> {
    if old == 0 {
        return Err(ProofError::Invalid(
            "a consistency proof from the empty tree proves nothing",
        ));
    }
    verify_subtree_consistency(0, old, new, proof, old_root, new_root)
}

/// Checks that the subtree `[start, end)` with hash `subtree` sits at those positions in the
/// tree of `size` leaves with head `root`. The hashes are byte strings so that a subtree that
/// is the whole tree is checked by equality alone, whatever its encoding.
pub fn verify_subtree_consistency(
    start: u64,
    end: u64,
    size: u64,
    proof: &[Hash],
    subtree: &[u8],
    root: &[u8],
) -> Result<(), ProofError> {
    if start == end && end <= size {
        // The empty subtree is in every tree; its hash must be the empty hash.
        return if proof.is_empty() && subtree == empty_root() {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if !valid_subtree(start, end) || end > size {
        return Err(ProofError::Invalid("not a subtree of that tree"));
    }
    let (mut fn_, mut sn, mut tn) = (start, end - 1, size - 1);
    if sn == tn {
        while fn_ != sn {
            fn_ >>= 1;
            sn >>= 1;
            tn >>= 1;
        }
    } else {
        while fn_ != sn && sn & 1 == 1 {
            fn_ >>= 1;
            sn >>= 1;
            tn >>= 1;
        }
    }
    if fn_ == sn && proof.is_empty() {
        // The subtree is the tree: nothing to recompute.
        return if tn == 0 && subtree == root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    let (mut fr, mut sr, rest) = if fn_ == sn {
        let subtree: Hash = subtree
            .try_into()
            .map_err(|_| ProofError::Invalid("a hash is not 32 bytes"))?;
        (subtree, subtree, proof)
    } else {
        let (first, rest) = proof.split_first().ok_or(ProofError::WrongLength)?;
        (*first, *first, rest)
    };
    for c in rest {
        if tn == 0 {
            return Err(ProofError::WrongLength);
        }
        if sn & 1 == 1 || sn == tn {
            if fn_ < sn {
                fr = node_hash(c, &fr);
            }
            sr = node_hash(c, &sr);
            while sn & 1 == 0 && sn != 0 {
                fn_ >>= 1;
                sn >>= 1;
                tn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
        tn >>= 1;
    }
    if tn != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr[..] != *subtree || sr[..] != *root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn generated_proofs_verify_and_tampered_ones_do_not() {
        let all = leaves(70);
        for size in 1..=70u64 {
            let tree = &all[..size as usize];
            let head = root(size, tree).unwrap();
            assert_eq!(head, mth_in_memory(tree));
            for index in 0..size {
                let proof = inclusion_proof(index, size, tree).unwrap();
                verify_inclusion(index, size, &tree[index as usize], &proof, &head).unwrap();
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(
                        verify_inclusion(index, size, &tree[index as usize], &bad, &head).is_err()
                    );
                }
            }
            for old in 1..=size {
                let proof = consistency_proof(old, size, tree).unwrap();
                let old_root = root(old, tree).unwrap();
                verify_consistency(old, size, &proof, &old_root, &head).unwrap();
                if old < size {
                    assert!(verify_consistency(old, size, &proof, &head, &head).is_err());
                }
            }
        }
    }

    #[test]
    fn appends_store_every_complete_subtree() {
        let all = leaves(300);
        let mut stored = NodeMap::default();
        let mut size = 0u64;
        for batch in [1usize, 2, 5, 64, 100, 128] {
            let new = &all[size as usize..size as usize + batch];
            let needs = append_needs(size, batch as u64);
            for (level, index) in &needs {
                assert!(
                    stored.0.contains_key(&(*level, *index)),
                    "missing {level}/{index}"
                );
            }
            for (level, index, hash) in append(size, new, &stored).unwrap() {
                stored.0.insert((level, index), hash);
            }
            size += batch as u64;
            assert_eq!(
                root(size, &stored).unwrap(),
                mth_in_memory(&all[..size as usize])
            );
        }
        // A proof needs only the nodes it names.
        let needed = nodes_needed(|r| inclusion_proof(7, size, r));
        let subset = NodeMap(needed.iter().map(|k| (*k, stored.0[k])).collect());
        let proof = inclusion_proof(7, size, &subset).unwrap();
        verify_inclusion(7, size, &all[7], &proof, &root(size, &stored).unwrap()).unwrap();
        assert!(needed.len() <= 2 * 64);
    }

    #[test]
    fn empty_tree_and_subtree_rules() {
        let empty: [Hash; 0] = [];
        assert_eq!(root(0, &empty[..]).unwrap(), empty_root());
        assert!(valid_subtree(8, 12) && valid_subtree(0, 5) && valid_subtree(8, 16));
        assert!(!valid_subtree(4, 12) && !valid_subtree(3, 3) && !valid_subtree(6, 9));
    }
}
