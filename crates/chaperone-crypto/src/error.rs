//! The one error type of this crate. Messages never contain key or plaintext bytes.

/// Why a cryptographic operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authenticated decryption failed: wrong key, wrong associated data, or tampered bytes.
    #[error(
        "decryption failed: the ciphertext, its nonce or its binding was altered, or the key is wrong"
    )]
    Decrypt,
    /// A stored ciphertext is shorter than nonce plus tag, or has an unknown format version.
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    /// The unseal key does not open the stored root key (its check value does not match).
    #[error("the unseal key or shares are wrong: they do not open this server's root key")]
    WrongUnsealKey,
    /// A Shamir share could not be parsed or failed its checksum.
    #[error("invalid share: {0}")]
    InvalidShare(String),
    /// Shares that cannot be combined (too few, duplicated, or from different sets).
    #[error("cannot combine shares: {0}")]
    Combine(String),
    /// Invalid parameters for splitting a key into shares.
    #[error("invalid share parameters: {0}")]
    ShareParameters(String),
    /// A key file or key text has the wrong length or encoding.
    #[error("invalid key encoding: {0}")]
    KeyEncoding(&'static str),
}
