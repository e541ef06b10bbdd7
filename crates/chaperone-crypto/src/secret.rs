//! `SecretBytes`: plaintext that must not leak through logs, errors or serialization.

use std::fmt;

use zeroize::Zeroizing;

/// Decrypted secret bytes. Zeroized on drop; `Debug` prints `[redacted]`; no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes that are secret.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The plaintext. Callers must not log or persist it unencrypted.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}
