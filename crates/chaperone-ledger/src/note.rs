//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then signature lines
//! `— NAME BASE64(key id ‖ signature)`. A key id is the first four bytes of
//! `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`; a verifier key is written
//! `name+hex(key id)+base64(0x01 ‖ public key)`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The signature type byte of Ed25519 keys.
const ED25519: u8 = 0x01;
/// The start of every signature line: U+2014 EM DASH and a space.
const DASH: &str = "\u{2014} ";

/// Why a note or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is not text, blank line, signature lines.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A verifier key is not `name+hex8+base64`.
    #[error("malformed verifier key: {0}")]
    MalformedKey(&'static str),
    /// No signature by a known key.
    #[error("the note has no signature from a known key")]
    UnknownKey,
    /// A signature by a known key is wrong.
    #[error("the signature of {0} does not verify")]
    BadSignature(String),
}

/// Checks a key name: non-empty, no spaces, no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public);
    h.finalize()[..4].try_into().expect("4 bytes")
}

/// A public key that verifies notes.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl Verifier {
    /// The key's name (the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }
}

impl FromStr for Verifier {
    type Err = NoteError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hex), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey("expected name+hex8+base64"));
        };
        if !valid_name(name) {
            return Err(NoteError::MalformedKey("invalid name"));
        }
        let bytes = STANDARD
            .decode(key)
            .map_err(|_| NoteError::MalformedKey("key is not base64"))?;
        let (&alg, public) = bytes
            .split_first()
            .ok_or(NoteError::MalformedKey("empty key"))?;
        if alg != ED25519 {
            return Err(NoteError::MalformedKey("not an Ed25519 key"));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| NoteError::MalformedKey("wrong key length"))?;
        let id = key_id(name, &public);
        if hex.len() != 8 || hex != hex8(&id) {
            return Err(NoteError::MalformedKey("the key id does not match the key"));
        }
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::MalformedKey("invalid Ed25519 key"))?;
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex8(&self.id),
            STANDARD.encode(bytes)
        )
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({self})")
    }
}

fn hex8(id: &[u8; 4]) -> String {
    hex::encode(id)
}

/// A private key that signs notes. Zeroized on drop; `Debug` is redacted.
pub struct Signer {
    name: String,
    key: SigningKey,
}

impl Signer {
    /// A signer named `name` from a 32-byte Ed25519 seed.
    pub fn new(name: &str, seed: &Zeroizing<[u8; 32]>) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::MalformedKey("invalid name"));
        }
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        let key = self.key.verifying_key();
        Verifier {
            name: self.name.clone(),
            id: key_id(&self.name, key.as_bytes()),
            key,
        }
    }

    /// Signs `text` (which must end with a newline) into a note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || text.contains("\n\n") {
            return Err(NoteError::Malformed(
                "note text must end with a newline and have no blank line",
            ));
        }
        check_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.verifier().id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{DASH}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({}, [redacted])", self.name)
    }
}

/// Verifies `note` against `verifiers` and returns its text. At least one signature must come
/// from a known key, and every signature from a known key must verify; signatures by other
/// keys are ignored, as the spec requires.
pub fn open(note: &[u8], verifiers: &[Verifier]) -> Result<String, NoteError> {
    let note = std::str::from_utf8(note).map_err(|_| NoteError::Malformed("not UTF-8"))?;
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let text = &note[..=split];
    let signatures = &note[split + 2..];
    if !signatures.ends_with('\n') || signatures.len() < 2 {
        return Err(NoteError::Malformed(
            "the signatures must end with a newline",
        ));
    }
    check_text(text)?;
    let lines = &signatures[..signatures.len() - 1];
    if lines.split('\n').count() > MAX_SIGNATURES {
        return Err(NoteError::Malformed("too many signatures"));
    }
    let mut verified = false;
    for line in lines.split('\n') {
        let rest = line.strip_prefix(DASH).ok_or(NoteError::Malformed(
            "a signature line must start with an em dash",
        ))?;
        let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "a signature line needs a name and a signature",
        ))?;
        if !valid_name(name) || blob.contains(' ') {
            return Err(NoteError::Malformed("invalid signature line"));
        }
        let blob = STANDARD
            .decode(blob)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if blob.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let (id, signature) = blob.split_at(4);
        let Some(verifier) = verifiers.iter().find(|v| v.name == name && v.id == id) else {
            continue;
        };
        let signature = Signature::from_slice(signature)
            .map_err(|_| NoteError::BadSignature(name.to_owned()))?;
        verifier
            .key
            .verify(text.as_bytes(), &signature)
            .map_err(|_| NoteError::BadSignature(name.to_owned()))?;
        verified = true;
    }
    if !verified {
        return Err(NoteError::UnknownKey);
    }
    Ok(text.to_owned())
}

/// At most this many signature lines are read (C2SP signed-note: verifiers SHOULD bound
/// them; Go's note package reads 100).
const MAX_SIGNATURES: usize = 100;

/// C2SP signed-note: the text MUST NOT hold ASCII control characters other than newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err(NoteError::Malformed(
            "note text holds a control character other than newline",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_open_round_trip_and_other_keys() {
        let signer = Signer::new("log.example/ledger", &Zeroizing::new([7u8; 32])).unwrap();
        let note = signer.sign("hello\nworld\n").unwrap();
        let verifier = signer.verifier();
        let text = open(note.as_bytes(), std::slice::from_ref(&verifier)).unwrap();
        assert_eq!(text, "hello\nworld\n");
        let parsed: Verifier = verifier.to_string().parse().unwrap();
        assert_eq!(parsed, verifier);
        let other = Signer::new("log.example/ledger", &Zeroizing::new([8u8; 32])).unwrap();
        assert_eq!(
            open(note.as_bytes(), &[other.verifier()]),
            Err(NoteError::UnknownKey)
        );
        // A note re-signed by another key with the same name does not pass for the first.
        let forged = other.sign("hello\nworld\n").unwrap();
        assert!(open(forged.as_bytes(), std::slice::from_ref(&verifier)).is_err());
        assert!(signer.sign("no newline").is_err());
        // Control characters other than newline are refused, signed or not.
        assert!(signer.sign("o\n1\nroot\t\n").is_err());
        let tabbed = format!(
            "o\n1\nroot\t\n{}",
            &signer.sign("o\n1\nroot\n").unwrap()["o\n1\nroot\n".len()..]
        );
        assert_eq!(
            open(tabbed.as_bytes(), std::slice::from_ref(&verifier)),
            Err(NoteError::Malformed(
                "note text holds a control character other than newline"
            ))
        );
        // A bounded number of signature lines.
        let one = &note["hello\nworld\n\n".len()..];
        let many = format!("hello\nworld\n\n{}", one.repeat(MAX_SIGNATURES + 1));
        assert_eq!(
            open(many.as_bytes(), std::slice::from_ref(&verifier)),
            Err(NoteError::Malformed("too many signatures"))
        );
        let enough = format!("hello\nworld\n\n{}", one.repeat(MAX_SIGNATURES));
        assert!(open(enough.as_bytes(), std::slice::from_ref(&verifier)).is_ok());
        assert!(!format!("{signer:?}").contains("7"));
    }
}
