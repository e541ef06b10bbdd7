//! Password hashing (Argon2id), password rules, and recovery codes.
//!
//! Parameters: Argon2id, m = 19 MiB (19,456 KiB), t = 2, p = 1, 16-byte random salt, 32-byte
//! output, stored as a PHC string. This is the first configuration OWASP's Password Storage
//! Cheat Sheet recommends for Argon2id (m=19 MiB, t=2, p=1): memory-hard enough that GPU
//! guessing is expensive, cheap enough (tens of milliseconds) to verify logins on a small
//! server. The PHC string records the parameters, so raising them later only affects new hashes.
//!
//! Recovery codes carry 80 random bits (16 base32 characters in groups of four), so a fast
//! SHA-256 is enough to store them: 2^80 guesses are out of reach even with the hashes.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::random_bytes;

/// Argon2id memory cost in KiB.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes.
pub const ARGON2_ITERATIONS: u32 = 2;
/// Argon2id lanes.
pub const ARGON2_PARALLELISM: u32 = 1;
/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password, in bytes (bounds hashing work on hostile input).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Common passwords of 12 or more characters, refused outright (one per line, lower case).
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// A password in clear. Zeroized on drop, redacted in `Debug`, never serialized.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password as typed.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The text, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Why a new password was refused. Messages never include the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordRuleError {
    /// Shorter than [`MIN_PASSWORD_CHARS`].
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    /// Longer than [`MAX_PASSWORD_BYTES`].
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// In the bundled list of common passwords, or one character repeated.
    #[error("the password is too common; choose another")]
    Common,
}

/// Checks a new password against the rules.
pub fn check_new_password(password: &Password) -> Result<(), PasswordRuleError> {
    let text = password.expose();
    if text.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordRuleError::TooLong);
    }
    if text.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordRuleError::TooShort);
    }
    let lower = zeroize::Zeroizing::new(text.to_lowercase());
    let mut chars = lower.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first)
        || COMMON_PASSWORDS
            .lines()
            .any(|common| common == lower.as_str())
    {
        return Err(PasswordRuleError::Common);
    }
    Ok(())
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_PARALLELISM,
        Some(32),
    )
    .expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password to a PHC string.
pub fn hash_password(password: &Password) -> String {
    let mut salt = [0u8; 16];
    random_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2()
        .hash_password(password.expose().as_bytes(), &salt)
        .expect("hashing with valid parameters cannot fail")
        .to_string()
}

/// Checks a password against a stored PHC string. A malformed hash never verifies.
pub fn verify_password(password: &Password, phc: &str) -> bool {
    if password.expose().len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|hash| {
        argon2()
            .verify_password(password.expose().as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash to verify against when the account does not exist, so that an unknown user costs
/// as much time as a wrong password and responses do not reveal which accounts exist.
pub fn dummy_password_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$1GqcKQFw7T5iaKXWEfMAng$W+OObq/B+vlHWCWsd4hrXN6RyAttczun0UF5CaP/dC4"
}

/// Makes `count` recovery codes, each `XXXX-XXXX-XXXX-XXXX` (80 random bits).
pub fn recovery_codes(count: usize) -> Vec<Zeroizing<String>> {
    (0..count)
        .map(|_| {
            let mut bytes = Zeroizing::new([0u8; 10]);
            random_bytes(bytes.as_mut());
            let text = crate::totp::TotpSecret::from_bytes(bytes.to_vec()).to_base32();
            Zeroizing::new(
                text.as_bytes()
                    .chunks(4)
                    .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
                    .collect::<Vec<_>>()
                    .join("-"),
            )
        })
        .collect()
}

/// The stored form of a recovery or enrolment code: SHA-256 of its normalised text (no dashes or spaces,
/// upper case).
pub fn code_hash(code: &str) -> [u8; 32] {
    let normal: Zeroizing<String> = Zeroizing::new(
        code.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    Sha256::digest(normal.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let pw = Password::new("correct horse battery".into());
        let phc = hash_password(&pw);
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct"));
        assert!(verify_password(&pw, &phc));
        assert!(!verify_password(
            &Password::new("correct horse batterY".into()),
            &phc
        ));
        assert!(!verify_password(&pw, "not a hash"));
        assert!(!verify_password(&pw, dummy_password_hash()));
        // The dummy is a real hash with the current parameters, so checking it costs the same.
        assert!(PasswordHash::new(dummy_password_hash()).is_ok());
        assert!(dummy_password_hash().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_ne!(hash_password(&pw), phc, "salts differ");
    }

    #[test]
    fn password_rules() {
        let check = |s: &str| check_new_password(&Password::new(s.into()));
        assert_eq!(check("short"), Err(PasswordRuleError::TooShort));
        assert_eq!(check("ëëëëëëëëëëë"), Err(PasswordRuleError::TooShort));
        assert_eq!(check("aaaaaaaaaaaaaaaa"), Err(PasswordRuleError::Common));
        assert_eq!(check("Password1234"), Err(PasswordRuleError::Common));
        assert_eq!(check(&"x".repeat(2000)), Err(PasswordRuleError::TooLong));
        assert_eq!(check("tram-lantern-oyster-42"), Ok(()));
        assert!(!format!("{:?}", Password::new("hunter2hunter2".into())).contains("hunter2"));
    }

    #[test]
    fn recovery_codes_are_random_and_hash_normalised() {
        let codes = recovery_codes(10);
        assert_eq!(codes.len(), 10);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 19 && c.matches('-').count() == 3)
        );
        let mut unique: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        let spaced = codes[0].replace('-', " ").to_lowercase();
        assert_eq!(code_hash(&codes[0]), code_hash(&spaced));
        assert_ne!(code_hash(&codes[0]), code_hash(&codes[1]));
    }
}
