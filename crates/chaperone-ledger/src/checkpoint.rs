//! C2SP tlog-checkpoint bodies (c2sp.org/tlog-checkpoint): the origin line, the tree size in
//! decimal, the root hash in base64, then optional extension lines. Signed as a note.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::Hash;
use crate::note::NoteError;

/// The first word of the extension line that makes a checkpoint a backup statement:
/// `chaperone-backup/1 <backend> <sha256 of the snapshot> <bytes> <signed at, RFC 3339>`
/// (statements signed before the time was added end at `<bytes>`). The server signs one for
/// each backup, after checking that the snapshot's ledger head is its own at that size.
pub const BACKUP_EXTENSION: &str = "chaperone-backup/1";

/// A tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (also its key name).
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// The tree head hash.
    pub root: Hash,
    /// Extension lines, in order.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses a note text (already verified by `note::open`).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("a checkpoint ends with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::Malformed("missing origin"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or(NoteError::Malformed("the size is not a decimal number"))?;
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::Malformed(
                "the root hash is not 32 bytes of base64",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::Malformed("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed() {
        let c = Checkpoint {
            origin: "example.com/log".into(),
            size: 42,
            root: [9u8; 32],
            extensions: vec!["ext".into()],
        };
        assert_eq!(Checkpoint::parse(&c.to_text()).unwrap(), c);
        for bad in [
            "",
            "o\n",
            "o\n01\nAAAA\n",
            "o\n1\nAAAA\n",
            "o\nx\n",
            "o\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
