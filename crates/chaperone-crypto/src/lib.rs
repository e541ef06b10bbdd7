//! Chaperone's cryptography: the key hierarchy, AEAD envelopes, Shamir secret sharing and
//! API tokens. Every primitive comes from RustCrypto; this crate only composes them and writes
//! down the parameters (see `docs/crypto.md`).
//!
//! Secret material lives in newtypes that zeroize on drop, print as `[redacted]` and do not
//! implement `Serialize`.

mod aead;
mod error;
mod keys;
pub mod password;
mod secret;
pub mod shamir;
pub mod share;
pub mod token;
pub mod totp;

pub use error::CryptoError;
pub use keys::{Binding, Keyring, RootKey, SealedValue, UnsealKey, WrappedRootKey, generation_of};
pub use secret::SecretBytes;

/// `prefix` followed by `bytes` in unpadded URL-safe base64, built in a buffer sized once
/// and zeroed on drop: no copy of a secret's text form is left behind in memory.
pub(crate) fn secret_text(prefix: &str, bytes: &[u8]) -> zeroize::Zeroizing<String> {
    use base64::Engine as _;
    let encoded = base64::encoded_len(bytes.len(), false).unwrap_or(0);
    let mut text = zeroize::Zeroizing::new(String::with_capacity(prefix.len() + encoded));
    text.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
    text
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// A failing system RNG is not recoverable for a key-management service: we abort the
/// operation loudly instead of continuing with weak randomness.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::getrandom(buf).expect("the operating system's random number generator failed");
}
