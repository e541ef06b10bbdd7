//! TOTP per RFC 6238: HMAC-SHA1, 6 digits, 30-second steps, accepted one step either side.
//!
//! SHA-1, 6 digits and 30 s are what every authenticator app supports by default; HMAC-SHA1
//! is not weakened by SHA-1's collision attacks. Secrets are 160 bits (RFC 4226 recommends
//! at least 128). A code is accepted at most once: [`verify`] takes the last step accepted
//! for the account and only accepts later steps, so a code seen over a shoulder or in a log
//! cannot be replayed within its window.

use std::fmt;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{CryptoError, random_bytes};

/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted before and after the current one.
pub const SKEW_STEPS: u64 = 1;

/// A TOTP shared secret. Zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// A fresh random 160-bit secret.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; 20]);
        random_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps stored (decrypted) bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw bytes, for encryption at rest.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Unpadded RFC 4648 base32, the form authenticator apps take.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32(&self.0))
    }

    /// Parses the base32 form (spaces and case ignored).
    pub fn from_base32(text: &str) -> Result<Self, CryptoError> {
        let mut bits = 0u64;
        let mut count = 0;
        let mut out = Zeroizing::new(Vec::new());
        for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
            let value = BASE32
                .iter()
                .position(|&b| b == c.to_ascii_uppercase() as u8)
                .ok_or(CryptoError::KeyEncoding(
                    "a TOTP secret is base32 (A-Z, 2-7)",
                ))?;
            bits = (bits << 5) | value as u64;
            count += 5;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        Ok(Self(out))
    }

    /// The `otpauth://` URI for enrolling an authenticator app.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            percent(issuer),
            percent(account),
            self.to_base32().as_str(),
            percent(issuer)
        ))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

/// The code for `step` with `digits` digits (RFC 4226 HOTP with dynamic truncation).
pub fn code_at(secret: &TotpSecret, step: u64, digits: u32) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let value =
        u32::from_be_bytes(digest[offset..offset + 4].try_into().expect("4 bytes")) & 0x7fff_ffff;
    value % 10u32.pow(digits)
}

/// The step that contains `unix_seconds`.
pub fn step_at(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// Checks `code` at `unix_seconds`, accepting the current step and one either side, but only
/// steps after `last_used`. Returns the matched step, to be stored as the new `last_used`.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    unix_seconds: u64,
    last_used: Option<u64>,
) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(unix_seconds);
    let mut matched = None;
    // Every candidate is computed and compared in constant time, whatever matches.
    for step in current.saturating_sub(SKEW_STEPS)..=current + SKEW_STEPS {
        let expected = format!(
            "{:0width$}",
            code_at(secret, step, DIGITS),
            width = DIGITS as usize
        );
        let fresh = last_used.is_none_or(|last| step > last);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && fresh && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut bits = 0u64;
    let mut count = 0;
    for &b in bytes {
        bits = (bits << 8) | u64::from(b);
        count += 8;
        while count >= 5 {
            count -= 5;
            out.push(BASE32[((bits >> count) & 31) as usize] as char);
        }
    }
    if count > 0 {
        out.push(BASE32[((bits << (5 - count)) & 31) as usize] as char);
    }
    out
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (secret "12345678901234567890", 8 digits).
    const RFC6238: [(u64, u32); 6] = [
        (59, 94_287_082),
        (1_111_111_109, 7_081_804),
        (1_111_111_111, 14_050_471),
        (1_234_567_890, 89_005_924),
        (2_000_000_000, 69_279_037),
        (20_000_000_000, 65_353_130),
    ];

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec())
    }

    #[test]
    fn rfc6238_vectors() {
        for (time, expected) in RFC6238 {
            assert_eq!(
                code_at(&rfc_secret(), step_at(time), 8),
                expected,
                "T = {time}"
            );
            assert_eq!(
                code_at(&rfc_secret(), step_at(time), 6),
                expected % 1_000_000
            );
        }
    }

    fn code(secret: &TotpSecret, unix: u64) -> String {
        format!("{:06}", code_at(secret, step_at(unix), 6))
    }

    #[test]
    fn one_step_of_skew_is_accepted_two_are_not() {
        let s = TotpSecret::generate();
        let now = 1_800_000_000;
        let step = step_at(now);
        assert_eq!(verify(&s, &code(&s, now), now, None), Some(step));
        assert_eq!(verify(&s, &code(&s, now - 30), now, None), Some(step - 1));
        assert_eq!(verify(&s, &code(&s, now + 30), now, None), Some(step + 1));
        assert_eq!(verify(&s, &code(&s, now - 60), now, None), None);
        assert_eq!(verify(&s, &code(&s, now + 60), now, None), None);
        assert_eq!(verify(&s, "12345", now, None), None);
        assert_eq!(verify(&s, "abcdef", now, None), None);
    }

    #[test]
    fn a_code_is_accepted_at_most_once() {
        let s = TotpSecret::generate();
        let now = 1_800_000_000;
        let used = verify(&s, &code(&s, now), now, None).unwrap();
        assert_eq!(verify(&s, &code(&s, now), now, Some(used)), None);
        assert_eq!(verify(&s, &code(&s, now), now + 10, Some(used)), None);
        // An older code within the window is refused too once a later one was used.
        assert_eq!(verify(&s, &code(&s, now - 30), now, Some(used)), None);
        assert_eq!(
            verify(&s, &code(&s, now + 30), now + 30, Some(used)),
            Some(used + 1)
        );
    }

    #[test]
    fn base32_and_uri() {
        let s = rfc_secret();
        assert_eq!(s.to_base32().as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq")
                .unwrap()
                .expose(),
            s.expose()
        );
        assert!(TotpSecret::from_base32("189").is_err());
        let uri = s.otpauth_uri("Chaperone", "ada@example.com");
        assert!(
            uri.starts_with("otpauth://totp/Chaperone:ada%40example.com?secret=GEZDGNBV"),
            "{}",
            uri.as_str()
        );
        assert_eq!(format!("{s:?}"), "TotpSecret([redacted])");
    }
}
