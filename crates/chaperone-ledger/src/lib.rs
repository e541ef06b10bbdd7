//! Chaperone's tamper-evident ledger, as pure functions and types.
//!
//! - [`merkle`]: RFC 9162 hashing, tree heads, inclusion and consistency proofs (and their
//!   subtree generalisations), generated from any store of complete-subtree hashes.
//! - [`note`]: C2SP signed notes with Ed25519 signatures and verifier keys.
//! - [`checkpoint`]: C2SP tlog-checkpoint bodies.
//! - [`entry`]: the ledger entry and its canonical JSON bytes.
//! - [`audit`]: full verification of a log from its bundles, naming the first bad entry.
//! - [`proof`]: C2SP tlog-proof files, verified offline.
//! - [`tiles`]: C2SP tlog-tiles: tile paths, entry bundles, the tree's right edge.
//!
//! This crate does no I/O of its own: storage, clocks and networks belong to its callers,
//! which is what lets an auditor run the same verification code offline.

pub mod audit;
pub mod checkpoint;
pub mod entry;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod tiles;
