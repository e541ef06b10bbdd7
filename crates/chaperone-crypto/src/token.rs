//! API tokens.
//!
//! A token is `chp_` followed by 43 characters of unpadded base64url carrying 256 random
//! bits. The server stores only SHA-256 of the token: with 256 bits of entropy a fast hash
//! cannot be brute-forced, and a fast hash keeps authentication on the hot path cheap. The
//! fixed prefix lets secret scanners recognise a leaked Chaperone token.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::random_bytes;

/// The prefix of every Chaperone API token.
pub const TOKEN_PREFIX: &str = "chp_";

/// A bearer token in clear. Shown once to its owner; never stored, logged or serialized.
#[derive(Clone)]
pub struct ApiToken(Zeroizing<String>);

impl ApiToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random_bytes(bytes.as_mut());
        Self(crate::secret_text(TOKEN_PREFIX, bytes.as_ref()))
    }

    /// Wraps a token presented by a client. The text is not validated: an unknown token simply
    /// has no matching hash.
    pub fn from_presented(text: &str) -> Self {
        Self(Zeroizing::new(text.trim().to_owned()))
    }

    /// The token text, to show once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash under which the token is stored and looked up.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken([redacted])")
    }
}

/// SHA-256 of a token: what the database stores.
#[derive(Clone, Copy, Debug)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Takes stored bytes; `None` when the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for TokenHash {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for TokenHash {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hash_stably() {
        let a = ApiToken::generate();
        let b = ApiToken::generate();
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(
            a.hash(),
            ApiToken::from_presented(&format!(" {}\n", a.expose())).hash()
        );
        assert_ne!(a.hash(), b.hash());
        assert_eq!(format!("{a:?}"), "ApiToken([redacted])");
    }
}
