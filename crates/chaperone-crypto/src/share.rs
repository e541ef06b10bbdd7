//! Share-link encryption, done by the client that creates or opens a link; the server only
//! ever stores and returns the sealed blob, and never sees the key.
//!
//! The key is 32 random bytes carried in the link's URL fragment as unpadded base64url
//! (browsers never send the fragment to the server). The blob is the format of `aead`:
//! `1 ‖ nonce (12) ‖ AES-256-GCM ciphertext ‖ tag (16)`, with the associated data
//! `chaperone-share:` ‖ the link's id, so a blob cannot be passed off as another link's.
//! The plaintext is `u32 big-endian header length ‖ header (JSON: type, name, media type) ‖
//! content`. The page served at `/s/<id>` implements the same format with WebCrypto.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::{CryptoError, aead, random_bytes};

/// A share link's key.
pub struct ShareKey(Zeroizing<[u8; 32]>);

impl ShareKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        random_bytes(key.as_mut());
        Self(key)
    }

    /// The key as it appears in a link's fragment.
    pub fn to_fragment(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.0.as_ref()))
    }

    /// Reads a key from a link's fragment.
    pub fn from_fragment(text: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| {
            CryptoError::KeyEncoding("a share key is 32 bytes of unpadded base64url")
        })?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            CryptoError::KeyEncoding("a share key is 32 bytes of unpadded base64url")
        })?;
        Ok(Self(Zeroizing::new(key)))
    }
}

impl std::fmt::Debug for ShareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareKey(redacted)")
    }
}

/// The proof that a client holds a link's key, without giving the key away: lowercase hex
/// of SHA-256(`chaperone-share-open:` ‖ id ‖ `:` ‖ key). The server keeps only its
/// SHA-256 and asks for the proof before it shows or hands out anything, so knowing a
/// link's id (from a list or the ledger) is not enough to use up its views or probe its
/// passphrase.
pub fn open_proof(key: &ShareKey, id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"chaperone-share-open:");
    hasher.update(id.as_bytes());
    hasher.update(b":");
    hasher.update(key.0.as_ref());
    hex::encode(hasher.finalize())
}

fn aad(id: &str) -> Vec<u8> {
    [b"chaperone-share:".as_slice(), id.as_bytes()].concat()
}

/// Seals `header` (JSON) and `content` for the link `id`.
pub fn seal(key: &ShareKey, id: &str, header: &[u8], content: &[u8]) -> Vec<u8> {
    let length = u32::try_from(header.len()).expect("share headers are small");
    let mut plain = Zeroizing::new(Vec::with_capacity(4 + header.len() + content.len()));
    plain.extend_from_slice(&length.to_be_bytes());
    plain.extend_from_slice(header);
    plain.extend_from_slice(content);
    aead::seal(&key.0, &aad(id), &plain)
}

/// Opens a blob of the link `id`: its header and content.
#[allow(clippy::type_complexity)]
pub fn open(
    key: &ShareKey,
    id: &str,
    blob: &[u8],
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), CryptoError> {
    let plain = Zeroizing::new(aead::open(&key.0, &aad(id), blob)?);
    let length = plain
        .get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("four bytes")) as usize)
        .ok_or(CryptoError::Decrypt)?;
    let header = plain
        .get(4..4 + length)
        .ok_or(CryptoError::Decrypt)?
        .to_vec();
    let content = Zeroizing::new(plain[4 + length..].to_vec());
    Ok((header, content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = ShareKey::generate();
        let blob = seal(&key, "shr_1", br#"{"type":"text"}"#, b"hunter2");
        let (header, content) = open(&key, "shr_1", &blob).unwrap();
        assert_eq!(header, br#"{"type":"text"}"#);
        assert_eq!(content.as_slice(), b"hunter2");
        assert!(open(&key, "shr_2", &blob).is_err(), "bound to its link");
        assert!(open(&ShareKey::generate(), "shr_1", &blob).is_err());
        let again = ShareKey::from_fragment(&key.to_fragment()).unwrap();
        assert!(open(&again, "shr_1", &blob).is_ok());
        assert!(ShareKey::from_fragment("short").is_err());
        assert_eq!(open_proof(&key, "shr_1"), open_proof(&again, "shr_1"));
        assert_ne!(open_proof(&key, "shr_1"), open_proof(&key, "shr_2"));
        assert_eq!(open_proof(&key, "shr_1").len(), 64);
    }
}
