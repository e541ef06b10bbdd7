//! Shamir's secret sharing of the 32-byte unseal key over GF(2^8).
//!
//! Each byte of the key is the constant term of its own random polynomial of degree
//! `threshold - 1`; share `x` (1..=255) holds the 32 polynomial values at `x`. Field
//! arithmetic uses the AES polynomial x^8 + x^4 + x^3 + x + 1 and is written without tables or
//! secret-dependent branches, so its timing does not depend on key bytes.
//!
//! A share's text form is `chs1-` followed by unpadded base64url of
//! `format(1) ‖ set id(4) ‖ threshold(1) ‖ x(1) ‖ y(32) ‖ checksum(4)`, where the checksum is
//! the first four bytes of SHA-256 over the preceding bytes. The checksum catches a mistyped
//! share before it is used; the set id catches shares from two different initialisations.
//! Neither can tell a wrong-but-well-formed share set: that is the job of the root key's check
//! value (see `keys`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{CryptoError, random_bytes};

const PREFIX: &str = "chs1-";
const FORMAT_V1: u8 = 1;
const ENCODED_LEN: usize = 1 + 4 + 1 + 1 + 32 + 4;

/// One share of an unseal key. Secret: zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct Share {
    set_id: [u8; 4],
    threshold: u8,
    x: u8,
    y: Zeroizing<[u8; 32]>,
}

impl Share {
    /// How many shares are needed to rebuild the key.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// The share's x coordinate (1-based index within its set).
    pub fn index(&self) -> u8 {
        self.x
    }

    /// The text form handed to a key holder.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(ENCODED_LEN));
        bytes.push(FORMAT_V1);
        bytes.extend_from_slice(&self.set_id);
        bytes.push(self.threshold);
        bytes.push(self.x);
        bytes.extend_from_slice(self.y.as_ref());
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum);
        crate::secret_text(PREFIX, &bytes)
    }

    /// Parses the text form; whitespace around it is ignored.
    pub fn from_text(text: &str) -> Result<Self, CryptoError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| CryptoError::InvalidShare(format!("a share starts with `{PREFIX}`")))?;
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| CryptoError::InvalidShare("not valid base64url".into()))?,
        );
        if bytes.len() != ENCODED_LEN {
            return Err(CryptoError::InvalidShare("wrong length".into()));
        }
        let (payload, sum) = bytes.split_at(ENCODED_LEN - 4);
        if checksum(payload) != sum {
            return Err(CryptoError::InvalidShare(
                "checksum mismatch (was it mistyped or truncated?)".into(),
            ));
        }
        if payload[0] != FORMAT_V1 {
            return Err(CryptoError::InvalidShare("unknown format version".into()));
        }
        let mut y = Zeroizing::new([0u8; 32]);
        y.copy_from_slice(&payload[7..39]);
        let share = Share {
            set_id: payload[1..5].try_into().expect("4 bytes"),
            threshold: payload[5],
            x: payload[6],
            y,
        };
        if share.x == 0 || share.threshold == 0 {
            return Err(CryptoError::InvalidShare(
                "index and threshold must be non-zero".into(),
            ));
        }
        Ok(share)
    }

    /// A digest of the whole share, to recognise it later without keeping it. Security
    /// decision: the server stores one per share at initialisation and rekey, so that a share
    /// that is not one of its own (made up by anyone who can reach the unseal endpoint) is
    /// refused before it joins the unseal progress, where it would discard the real shares
    /// given so far. A share's `y` is 256 bits that reveal nothing of the key below the
    /// threshold (with a threshold of 1 it is the key, which the stored wrapping already lets
    /// one test), so its SHA-256 under a label of its own gives nothing to guess with.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        hash.update(b"chaperone unseal share digest v1");
        hash.update(self.set_id);
        hash.update([self.threshold, self.x]);
        hash.update(self.y.as_ref());
        hash.finalize().into()
    }

    /// Whether `other` belongs to the same split as `self`.
    pub fn same_set(&self, other: &Share) -> bool {
        self.set_id == other.set_id && self.threshold == other.threshold
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Share {{ index: {}, threshold: {}, y: [redacted] }}",
            self.x, self.threshold
        )
    }
}

fn checksum(bytes: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(bytes);
    digest[..4].try_into().expect("4 bytes")
}

/// Splits `secret` into `shares` shares, any `threshold` of which rebuild it.
pub fn split(secret: &[u8; 32], shares: u8, threshold: u8) -> Result<Vec<Share>, CryptoError> {
    check_split(shares, threshold)?;
    let mut set_id = [0u8; 4];
    random_bytes(&mut set_id);
    // coefficients[i][b]: coefficient of x^(i+1) for key byte b.
    let mut coefficients = Zeroizing::new(vec![[0u8; 32]; usize::from(threshold) - 1]);
    for row in coefficients.iter_mut() {
        random_bytes(row);
    }
    Ok((1..=shares)
        .map(|x| {
            let mut y = Zeroizing::new([0u8; 32]);
            for (b, out) in y.iter_mut().enumerate() {
                // Horner's rule, from the highest coefficient down to the secret byte.
                let mut acc = 0u8;
                for row in coefficients.iter().rev() {
                    acc = mul(acc, x) ^ row[b];
                }
                *out = mul(acc, x) ^ secret[b];
            }
            Share {
                set_id,
                threshold,
                x,
                y,
            }
        })
        .collect())
}

/// Whether `shares` shares with `threshold` needed make a valid split (what [`split`]
/// checks first), so that a caller can refuse bad parameters before doing anything else.
pub fn check_split(shares: u8, threshold: u8) -> Result<(), CryptoError> {
    if threshold == 0 || shares == 0 {
        return Err(CryptoError::ShareParameters(
            "shares and threshold must be at least 1".into(),
        ));
    }
    if threshold > shares {
        return Err(CryptoError::ShareParameters(format!(
            "threshold {threshold} is larger than the number of shares {shares}"
        )));
    }
    if threshold == 1 && shares > 1 {
        return Err(CryptoError::ShareParameters(
            "threshold 1 with several shares would make every share the whole key".into(),
        ));
    }
    Ok(())
}

/// Rebuilds the secret from at least `threshold` shares of one set.
pub fn combine(shares: &[Share]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let first = shares
        .first()
        .ok_or_else(|| CryptoError::Combine("no shares given".into()))?;
    if shares.iter().any(|s| !s.same_set(first)) {
        return Err(CryptoError::Combine(
            "the shares come from different key splits".into(),
        ));
    }
    for (i, share) in shares.iter().enumerate() {
        if shares[..i].iter().any(|s| s.x == share.x) {
            return Err(CryptoError::Combine(format!(
                "share {} was given twice",
                share.x
            )));
        }
    }
    let needed = usize::from(first.threshold);
    if shares.len() < needed {
        return Err(CryptoError::Combine(format!(
            "{} of {needed} required shares given",
            shares.len()
        )));
    }
    let used = &shares[..needed];
    let mut secret = Zeroizing::new([0u8; 32]);
    for (i, share) in used.iter().enumerate() {
        // Lagrange basis polynomial i evaluated at 0: prod_{j != i} x_j / (x_j - x_i).
        let mut basis = 1u8;
        for (j, other) in used.iter().enumerate() {
            if i != j {
                basis = mul(basis, mul(other.x, inverse(other.x ^ share.x)));
            }
        }
        for (out, y) in secret.iter_mut().zip(share.y.iter()) {
            *out ^= mul(basis, *y);
        }
    }
    Ok(secret)
}

/// Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1, without branches on the operands.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    product
}

/// Multiplicative inverse as a^254 (Fermat), a fixed sequence of multiplications.
fn inverse(a: u8) -> u8 {
    let a2 = mul(a, a);
    let a4 = mul(a2, a2);
    let a8 = mul(a4, a4);
    let a16 = mul(a8, a8);
    let a32 = mul(a16, a16);
    let a64 = mul(a32, a32);
    let a128 = mul(a64, a64);
    mul(mul(mul(a128, a64), mul(a32, a16)), mul(mul(a8, a4), a2))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(seed: u8) -> [u8; 32] {
        std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
    }

    #[test]
    fn field_inverse() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1, "{a}");
        }
    }

    #[test]
    fn three_of_five() {
        let secret = key(9);
        let shares = split(&secret, 5, 3).unwrap();
        for a in 0..5 {
            for b in 0..5 {
                for c in 0..5 {
                    if a != b && b != c && a != c {
                        let pick = [shares[a].clone(), shares[b].clone(), shares[c].clone()];
                        assert_eq!(*combine(&pick).unwrap(), secret);
                    }
                }
            }
        }
    }

    #[test]
    fn too_few_duplicated_and_mixed_sets_are_rejected() {
        let shares = split(&key(1), 5, 3).unwrap();
        let err = combine(&shares[..2]).unwrap_err().to_string();
        assert!(err.contains("2 of 3"), "{err}");
        let err = combine(&[shares[0].clone(), shares[0].clone(), shares[1].clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
        let other = split(&key(1), 5, 3).unwrap();
        let err = combine(&[shares[0].clone(), shares[1].clone(), other[2].clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("different"), "{err}");
    }

    #[test]
    fn parameters_are_checked() {
        assert!(split(&key(1), 3, 4).is_err());
        assert!(split(&key(1), 0, 0).is_err());
        assert!(split(&key(1), 3, 1).is_err());
        assert_eq!(*combine(&split(&key(2), 1, 1).unwrap()).unwrap(), key(2));
    }

    #[test]
    fn text_form_round_trip_and_typo_detection() {
        let shares = split(&key(3), 3, 2).unwrap();
        let text = shares[1].to_text();
        let back = Share::from_text(&format!("  {}\n", text.as_str())).unwrap();
        assert_eq!(back.index(), 2);
        assert_eq!(back.threshold(), 2);
        assert_eq!(*combine(&[shares[0].clone(), back]).unwrap(), key(3));
        // Change one character in the middle: the checksum catches it.
        let mut typo: Vec<char> = text.chars().collect();
        let mid = typo.len() / 2;
        typo[mid] = if typo[mid] == 'A' { 'B' } else { 'A' };
        let typo: String = typo.into_iter().collect();
        let err = Share::from_text(&typo).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        assert!(Share::from_text("hello").is_err());
        assert!(Share::from_text(&text[..text.len() - 3]).is_err());
        assert!(!format!("{:?}", shares[0]).contains(&text[5..15]));
    }

    #[test]
    fn a_wrong_share_is_caught_by_the_root_key_check_value() {
        let unseal = crate::UnsealKey::generate();
        let wrapped = crate::RootKey::generate().wrap(&unseal);
        let mut shares = split(unseal.expose(), 5, 3).unwrap();
        // Well-formed (its checksum is recomputed on encoding) but wrong.
        shares[0].y[0] ^= 0x55;
        let reparsed = Share::from_text(&shares[0].to_text()).unwrap();
        let key = crate::UnsealKey::from_bytes(
            combine(&[reparsed, shares[1].clone(), shares[2].clone()]).unwrap(),
        );
        assert!(matches!(
            wrapped.open(&key),
            Err(CryptoError::WrongUnsealKey)
        ));
        let good = crate::UnsealKey::from_bytes(combine(&shares[1..4]).unwrap());
        assert!(wrapped.open(&good).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_threshold_subset_reconstructs(
            secret in any::<[u8; 32]>(),
            n in 2u8..12,
            t_seed in any::<u8>(),
            order in any::<u64>(),
        ) {
            let t = 2 + t_seed % (n - 1);
            let mut shares = split(&secret, n, t).unwrap();
            // A deterministic shuffle driven by `order`.
            let mut state = order | 1;
            for i in (1..shares.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shares.swap(i, (state % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(*combine(&shares[..usize::from(t)]).unwrap(), secret);
            prop_assert!(combine(&shares[..usize::from(t) - 1]).is_err());
        }

        #[test]
        fn a_wrong_share_never_yields_the_secret(
            secret in any::<[u8; 32]>(),
            flip in 0usize..32,
            bit in 0u8..8,
        ) {
            let mut shares = split(&secret, 5, 3).unwrap();
            shares[1].y[flip] ^= 1 << bit;
            prop_assert_ne!(*combine(&shares[..3]).unwrap(), secret);
        }
    }
}
