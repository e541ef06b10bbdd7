//! C2SP tlog-proof files (c2sp.org/tlog-proof): an offline-verifiable proof that an entry is
//! in the log, made of the entry's index, its inclusion proof, and a signed checkpoint.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>          (Chaperone: the entry's canonical bytes)
//! index <decimal>
//! <base64 hash>           (the inclusion proof, lowest first, one per line)
//!
//! <signed checkpoint note>
//! ```
//!
//! Chaperone puts the entry itself in `extra`, so the file alone shows what was recorded;
//! a verifier given the entry separately checks that it is the same.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::checkpoint::Checkpoint;
use crate::merkle::{self, Hash};
use crate::note::{self, Verifier};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Why a proof file does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlogProofError {
    /// The file is not in the tlog-proof format.
    #[error("not a tlog-proof file: {0}")]
    Malformed(&'static str),
    /// The checkpoint's signature does not verify with the given key.
    #[error("the checkpoint is not signed by the given key: {0}")]
    Signature(note::NoteError),
    /// The checkpoint body is malformed.
    #[error("the checkpoint is malformed: {0}")]
    Checkpoint(note::NoteError),
    /// No entry was given or carried.
    #[error("no entry: the proof carries none and none was given")]
    NoEntry,
    /// The entry given differs from the one the proof carries.
    #[error("the entry given differs from the entry in the proof")]
    EntryMismatch,
    /// The inclusion proof does not lead to the checkpoint's root.
    #[error("the entry is not at index {index} of the checkpointed log: {source}")]
    NotIncluded {
        /// The index the proof claims.
        index: u64,
        /// Why.
        source: merkle::ProofError,
    },
}

/// A parsed tlog-proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Application data; for Chaperone, the entry bytes.
    pub extra: Option<Vec<u8>>,
    /// The entry's index.
    pub index: u64,
    /// The inclusion proof, lowest hash first.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, as served.
    pub checkpoint: String,
}

impl TlogProof {
    /// The file text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.hashes {
            out.push_str(&STANDARD.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a file.
    pub fn parse(text: &str) -> Result<Self, TlogProofError> {
        if text.trim().is_empty() {
            return Err(TlogProofError::Malformed("the file is empty"));
        }
        let (head, checkpoint) = text.split_once("\n\n").ok_or(TlogProofError::Malformed(
            "no blank line before the checkpoint",
        ))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(TlogProofError::Malformed(
                "the first line is not c2sp.org/tlog-proof@v1",
            ));
        }
        let mut line = lines.next();
        let mut extra = None;
        if let Some(rest) = line.and_then(|l| l.strip_prefix("extra ")) {
            extra = Some(
                STANDARD
                    .decode(rest)
                    .map_err(|_| TlogProofError::Malformed("extra is not base64"))?,
            );
            line = lines.next();
        }
        let index = line
            .and_then(|l| l.strip_prefix("index "))
            .filter(|d| {
                !d.is_empty()
                    && d.bytes().all(|b| b.is_ascii_digit())
                    && (d.len() == 1 || !d.starts_with('0'))
            })
            .and_then(|d| d.parse().ok())
            .ok_or(TlogProofError::Malformed("missing or invalid index line"))?;
        let hashes = lines
            .map(|l| {
                STANDARD
                    .decode(l)
                    .ok()
                    .and_then(|h| Hash::try_from(h).ok())
                    .ok_or(TlogProofError::Malformed(
                        "a proof line is not a base64 hash",
                    ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// Checks the proof offline: the checkpoint's signature by `verifiers`, and that the entry
    /// (`entry`, or the one carried in `extra`) is at `index` under the checkpoint's root.
    /// Returns the checkpoint.
    pub fn verify(
        &self,
        verifiers: &[Verifier],
        entry: Option<&[u8]>,
    ) -> Result<Checkpoint, TlogProofError> {
        // Only a signature by a key of the log the checkpoint names vouches for its head: a
        // witness's cosignature alone must not, so the note is opened with those keys only.
        let origin = self.checkpoint.split('\n').next().unwrap_or_default();
        let log_keys: Vec<Verifier> = verifiers
            .iter()
            .filter(|v| v.name() == origin)
            .cloned()
            .collect();
        if log_keys.is_empty() {
            return Err(TlogProofError::Malformed(
                "the checkpoint names a log other than the key's",
            ));
        }
        let text =
            note::open(self.checkpoint.as_bytes(), &log_keys).map_err(TlogProofError::Signature)?;
        let checkpoint = Checkpoint::parse(&text).map_err(TlogProofError::Checkpoint)?;
        let entry = match (entry, self.extra.as_deref()) {
            (Some(given), Some(carried)) if given != carried => {
                return Err(TlogProofError::EntryMismatch);
            }
            (Some(given), _) => given,
            (None, Some(carried)) => carried,
            (None, None) => return Err(TlogProofError::NoEntry),
        };
        merkle::verify_inclusion(
            self.index,
            checkpoint.size,
            &merkle::leaf_hash(entry),
            &self.hashes,
            &checkpoint.root,
        )
        .map_err(|source| TlogProofError::NotIncluded {
            index: self.index,
            source,
        })?;
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;
    use crate::note::Signer;

    fn proof_for(index: u64) -> (TlogProof, Signer, Vec<Vec<u8>>) {
        let entries: Vec<Vec<u8>> = (0..7)
            .map(|i| format!("{{\"seq\":{i}}}").into_bytes())
            .collect();
        let leaves: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let root = merkle::root(7, &leaves[..]).unwrap();
        let signer = Signer::new("example.com/ledger", &Zeroizing::new([3u8; 32])).unwrap();
        let checkpoint = Checkpoint {
            origin: "example.com/ledger".into(),
            size: 7,
            root,
            extensions: vec![],
        };
        let proof = TlogProof {
            extra: Some(entries[index as usize].clone()),
            index,
            hashes: merkle::inclusion_proof(index, 7, &leaves[..]).unwrap(),
            checkpoint: signer.sign(&checkpoint.to_text()).unwrap(),
        };
        (proof, signer, entries)
    }

    #[test]
    fn round_trips_and_verifies() {
        let (proof, signer, entries) = proof_for(5);
        let text = proof.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
        let parsed = TlogProof::parse(&text).unwrap();
        assert_eq!(parsed, proof);
        // An empty file (a failed `prove` redirected into it) says so.
        assert_eq!(
            TlogProof::parse("\n"),
            Err(TlogProofError::Malformed("the file is empty"))
        );
        let key = [signer.verifier()];
        assert_eq!(parsed.verify(&key, None).unwrap().size, 7);
        parsed.verify(&key, Some(&entries[5])).unwrap();
        assert_eq!(
            parsed.verify(&key, Some(&entries[4])),
            Err(TlogProofError::EntryMismatch)
        );
    }

    #[test]
    fn tampering_fails() {
        let (proof, _signer, entries) = proof_for(2);
        let other = Signer::new("example.com/ledger", &Zeroizing::new([4u8; 32])).unwrap();
        assert!(matches!(
            proof.verify(&[other.verifier()], None),
            Err(TlogProofError::Signature(_))
        ));
        let (mut moved, signer, _) = proof_for(2);
        moved.index = 3;
        assert!(matches!(
            moved.verify(&[signer.verifier()], None),
            Err(TlogProofError::NotIncluded { .. })
        ));
        let mut no_extra = proof.clone();
        no_extra.extra = None;
        assert_eq!(
            no_extra.verify(&[signer.verifier()], None),
            Err(TlogProofError::NoEntry)
        );
        no_extra
            .verify(&[signer.verifier()], Some(&entries[2]))
            .unwrap();
        let mut flipped = proof.clone();
        flipped.hashes[0][0] ^= 1;
        assert!(flipped.verify(&[signer.verifier()], None).is_err());
        // A witness's cosignature alone does not vouch for a log head: a head of the log's
        // name signed only by the witness fails, though the log's key is given too.
        let (mut forged, log, entries) = proof_for(2);
        let witness = Signer::new("witness.example", &Zeroizing::new([5u8; 32])).unwrap();
        let leaves: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let mut fake = leaves.clone();
        fake[6] = merkle::leaf_hash(b"not in the log");
        let head = Checkpoint {
            origin: "example.com/ledger".into(),
            size: 7,
            root: merkle::root(7, &fake[..]).unwrap(),
            extensions: vec![],
        };
        forged.checkpoint = witness.sign(&head.to_text()).unwrap();
        forged.hashes = merkle::inclusion_proof(2, 7, &fake[..]).unwrap();
        assert!(
            forged
                .verify(&[log.verifier(), witness.verifier()], None)
                .is_err()
        );
        assert!(TlogProof::parse("c2sp.org/tlog-proof@v2\nindex 1\n\nx").is_err());
        assert!(TlogProof::parse("c2sp.org/tlog-proof@v1\nindex 01\n\nx").is_err());
    }
}
