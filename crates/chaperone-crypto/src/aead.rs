//! AES-256-GCM with a random 96-bit nonce, stored as `version ‖ nonce ‖ ciphertext ‖ tag`.
//!
//! Random nonces are safe here because every key encrypts few messages: a data key encrypts
//! exactly one secret version, and the key-encryption key wraps one data key per version.
//! NIST SP 800-38D bounds random 96-bit nonces at 2^32 messages per key, far beyond any
//! realistic number of secret versions.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::{CryptoError, random_bytes};

/// Format byte that starts every blob this module writes.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Encrypts `plaintext` under `key`, binding it to `aad`.
pub(crate) fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// Decrypts a blob written by [`seal`] with the same `key` and `aad`.
pub(crate) fn open(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (&format, rest) = blob.split_first().ok_or(CryptoError::Malformed("empty"))?;
    if format != FORMAT_V1 {
        return Err(CryptoError::Malformed("unknown format version"));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_byte_is_authenticated() {
        let key = [7u8; 32];
        let blob = seal(&key, b"aad", b"hello");
        assert_eq!(open(&key, b"aad", &blob).unwrap(), b"hello");
        for i in 1..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(open(&key, b"aad", &bad), Err(CryptoError::Decrypt)),
                "byte {i}"
            );
        }
        let mut bad = blob.clone();
        bad[0] = 9;
        assert!(matches!(
            open(&key, b"aad", &bad),
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            open(&key, b"aae", &blob),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            open(&[8u8; 32], b"aad", &blob),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            open(&key, b"aad", &blob[..10]),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn nonces_differ() {
        let key = [1u8; 32];
        assert_ne!(seal(&key, b"", b"x"), seal(&key, b"", b"x"));
    }
}
