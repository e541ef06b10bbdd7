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

/// Fills `buf` from the operating system's CSPRNG.
///
/// A failing system RNG is not recoverable for a key-management service: we abort the
/// operation loudly instead of continuing with weak randomness.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::getrandom(buf).expect("the operating system's random number generator failed");
}
