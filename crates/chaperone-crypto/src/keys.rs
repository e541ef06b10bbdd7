//! The key hierarchy.
//!
//! ```text
//! unseal key (Shamir shares, or DIR/unseal.key in evaluation mode)
//!   └─ opens ─> root key (random 256 bits, stored only wrapped under the unseal key)
//!        └─ HKDF-SHA256 ─> key-encryption key (KEK)
//!             └─ wraps ─> data key (random 256 bits, one per secret version)
//!                  └─ encrypts ─> the version's fields
//! ```
//!
//! Every encryption is AES-256-GCM (see `aead`). The associated data of a data key and of a
//! value names the secret id and version they belong to ([`Binding`]), so a ciphertext copied
//! into another row fails to decrypt. The wrapped root key's GCM tag is the check value that
//! tells a wrong unseal key (or a wrong set of shares) from the right one: a wrong key is
//! reported as [`CryptoError::WrongUnsealKey`] and never used.
//!
//! The unseal key wraps the root key instead of being it so that changing the shares (rekey)
//! rewraps 32 bytes instead of re-encrypting every secret.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{CryptoError, SecretBytes, aead, random_bytes};

/// Associated data of the wrapped root key.
const ROOT_KEY_AAD: &[u8] = b"chaperone/root-key/v1";
/// HKDF `info` for the key-encryption key. A new purpose gets a new label, never a reused one.
const KEK_INFO: &[u8] = b"chaperone/kek/v1";
const DATA_KEY_AAD: &[u8] = b"chaperone/data-key/v1";
const VALUE_AAD: &[u8] = b"chaperone/secret-value/v1";
const FIELD_AAD: &[u8] = b"chaperone/field/v1";
/// HKDF `info` for the MAC key of values that must be matched later without being stored.
const MAC_INFO: &[u8] = b"chaperone/mac/v1";

/// The key that opens the root key. Reconstructed from shares or read from a key file.
pub struct UnsealKey(Zeroizing<[u8; 32]>);

impl UnsealKey {
    /// A fresh random unseal key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        random_bytes(key.as_mut());
        Self(key)
    }

    /// Wraps raw key bytes (from combined shares).
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for splitting into shares.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Text form for a key file: standard base64 of the 32 bytes.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_ref()))
    }

    /// Parses the text form written by [`UnsealKey::to_text`]; surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| CryptoError::KeyEncoding("the unseal key is not valid base64"))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != key.len() {
            return Err(CryptoError::KeyEncoding("the unseal key must be 32 bytes"));
        }
        key.copy_from_slice(&bytes);
        Ok(Self(key))
    }
}

impl fmt::Debug for UnsealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnsealKey([redacted])")
    }
}

/// The root of the key hierarchy. Exists in memory only while the server is unsealed.
pub struct RootKey(Zeroizing<[u8; 32]>);

impl RootKey {
    /// A fresh random root key, made once when a server is initialised.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        random_bytes(key.as_mut());
        Self(key)
    }

    /// Encrypts the root key under `unseal` for storage.
    pub fn wrap(&self, unseal: &UnsealKey) -> WrappedRootKey {
        WrappedRootKey(aead::seal(&unseal.0, ROOT_KEY_AAD, self.0.as_ref()))
    }

    /// Derives the keyring used while unsealed, at key-encryption-key generation 0.
    pub fn keyring(&self) -> Keyring {
        self.keyring_at(0)
    }

    /// Derives the keyring whose new keys are wrapped under KEK generation `generation`.
    pub fn keyring_at(&self, generation: u32) -> Keyring {
        let mut mac_key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, self.0.as_ref())
            .expand(MAC_INFO, mac_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Keyring {
            generation,
            kek: derive_kek(&self.0, generation),
            root: self.0.clone(),
            mac_key,
        }
    }
}

/// The key-encryption key of `generation`, derived from the root key with HKDF-SHA256.
///
/// Generations are derived rather than stored: nothing more to keep or back up, and the KEKs
/// are independent of each other (HKDF outputs for different `info`), so a KEK that leaked
/// says nothing about the next generation. Rotating the KEK does not help against a leaked
/// root key; a new root key means re-encrypting everything. Generation 0 keeps the `info`
/// of the first release, so existing data opens unchanged.
fn derive_kek(root: &[u8; 32], generation: u32) -> Zeroizing<[u8; 32]> {
    let mut info = KEK_INFO.to_vec();
    if generation > 0 {
        info.extend_from_slice(format!("/generation/{generation}").as_bytes());
    }
    let mut kek = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, root)
        .expand(&info, kek.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    kek
}

/// First byte of a blob wrapped under a KEK generation above 0: `GENERATION_TAG ‖ generation
/// (u32, big-endian) ‖ AEAD blob`. A blob of generation 0 is a bare AEAD blob, whose first
/// byte is the AEAD format (1), so blobs written before generations existed read unchanged.
/// The header is not authenticated on its own: a changed generation picks another KEK, and
/// the GCM tag then fails.
const GENERATION_TAG: u8 = 2;

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey([redacted])")
    }
}

/// The root key encrypted under the unseal key, as stored in the database. Not secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedRootKey(Vec<u8>);

impl WrappedRootKey {
    /// Takes the stored bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Opens the root key with `unseal`. A wrong key is detected by the GCM tag and reported
    /// as [`CryptoError::WrongUnsealKey`].
    pub fn open(&self, unseal: &UnsealKey) -> Result<RootKey, CryptoError> {
        let bytes = Zeroizing::new(aead::open(&unseal.0, ROOT_KEY_AAD, &self.0).map_err(
            |err| match err {
                CryptoError::Decrypt => CryptoError::WrongUnsealKey,
                other => other,
            },
        )?);
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != key.len() {
            return Err(CryptoError::Malformed(
                "the stored root key has the wrong length",
            ));
        }
        key.copy_from_slice(&bytes);
        Ok(RootKey(key))
    }
}

impl fmt::Debug for WrappedRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedRootKey({} bytes)", self.0.len())
    }
}

/// What a secret version's ciphertexts are bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The secret's stable database id.
    pub secret_id: i64,
    /// The version number within that secret.
    pub version: u64,
}

impl Binding {
    fn aad(&self, label: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(label.len() + 17);
        aad.extend_from_slice(label);
        aad.push(0);
        aad.extend_from_slice(&self.secret_id.to_be_bytes());
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad
    }
}

/// One secret version as stored: its wrapped data key and its encrypted value.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedValue {
    /// The data key, encrypted under the KEK.
    pub wrapped_key: Vec<u8>,
    /// The value, encrypted under the data key.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedValue {{ wrapped_key: {} bytes, ciphertext: {} bytes }}",
            self.wrapped_key.len(),
            self.ciphertext.len()
        )
    }
}

/// The keys of an unsealed server. Only obtainable from a [`RootKey`].
///
/// It keeps the root key (in zeroizing memory, like the KEKs) so that it can open blobs of a
/// KEK generation newer than its own, which another node may have started, and derive the
/// next generation when the KEK is rotated.
pub struct Keyring {
    /// The generation new keys are wrapped under, and its KEK. Older generations are derived
    /// when a blob of theirs is opened (one HKDF), so nothing grows with the generation.
    generation: u32,
    kek: Zeroizing<[u8; 32]>,
    root: Zeroizing<[u8; 32]>,
    mac_key: Zeroizing<[u8; 32]>,
}

/// The KEK generation a wrapped blob was made under.
pub fn generation_of(blob: &[u8]) -> u32 {
    match blob {
        [GENERATION_TAG, a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

impl Keyring {
    /// The KEK generation new keys are wrapped under.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The same keys, with new keys wrapped under `generation`.
    pub fn at_generation(&self, generation: u32) -> Keyring {
        Keyring {
            generation,
            kek: derive_kek(&self.root, generation),
            root: self.root.clone(),
            mac_key: self.mac_key.clone(),
        }
    }

    /// Wraps `plaintext` under the current KEK.
    fn kek_seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let generation = self.generation;
        let blob = aead::seal(&self.kek, aad, plaintext);
        if generation == 0 {
            return blob;
        }
        let mut out = Vec::with_capacity(5 + blob.len());
        out.push(GENERATION_TAG);
        out.extend_from_slice(&generation.to_be_bytes());
        out.extend_from_slice(&blob);
        out
    }

    /// Unwraps a blob made by [`Keyring::kek_seal`] under any generation.
    fn kek_open(&self, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (generation, body) = match blob {
            [GENERATION_TAG, rest @ ..] if rest.len() >= 4 => (generation_of(blob), &rest[4..]),
            [GENERATION_TAG, ..] => return Err(CryptoError::Malformed("truncated generation")),
            _ => (0, blob),
        };
        if generation == self.generation {
            aead::open(&self.kek, aad, body)
        } else {
            aead::open(&derive_kek(&self.root, generation), aad, body)
        }
    }

    /// Encrypts `plaintext` under a fresh data key bound to `binding`.
    pub fn seal(&self, binding: Binding, plaintext: &[u8]) -> SealedValue {
        let mut data_key = Zeroizing::new([0u8; 32]);
        random_bytes(data_key.as_mut());
        SealedValue {
            wrapped_key: self.kek_seal(&binding.aad(DATA_KEY_AAD), data_key.as_ref()),
            ciphertext: aead::seal(&data_key, &binding.aad(VALUE_AAD), plaintext),
        }
    }

    /// A data key wrapped under an older KEK generation, wrapped again under the current one
    /// (the value's ciphertext does not change); `None` when it is current already.
    pub fn rewrap_data_key(
        &self,
        binding: Binding,
        wrapped_key: &[u8],
    ) -> Result<Option<Vec<u8>>, CryptoError> {
        if generation_of(wrapped_key) >= self.generation() {
            return Ok(None);
        }
        let aad = binding.aad(DATA_KEY_AAD);
        let data_key = Zeroizing::new(self.kek_open(&aad, wrapped_key)?);
        Ok(Some(self.kek_seal(&aad, &data_key)))
    }

    /// A field sealed under an older KEK generation, sealed again under the current one;
    /// `None` when it is current already.
    pub fn reseal_field(
        &self,
        purpose: &str,
        owner: &str,
        sealed: &[u8],
    ) -> Result<Option<Vec<u8>>, CryptoError> {
        if generation_of(sealed) >= self.generation() {
            return Ok(None);
        }
        let aad = field_aad(purpose, owner);
        let plain = Zeroizing::new(self.kek_open(&aad, sealed)?);
        Ok(Some(self.kek_seal(&aad, &plain)))
    }

    /// Decrypts a value sealed for `binding`. Fails if either ciphertext was altered or was
    /// sealed for another secret id or version.
    pub fn open(&self, binding: Binding, sealed: &SealedValue) -> Result<SecretBytes, CryptoError> {
        let key_bytes =
            Zeroizing::new(self.kek_open(&binding.aad(DATA_KEY_AAD), &sealed.wrapped_key)?);
        let mut data_key = Zeroizing::new([0u8; 32]);
        if key_bytes.len() != data_key.len() {
            return Err(CryptoError::Malformed("a data key has the wrong length"));
        }
        data_key.copy_from_slice(&key_bytes);
        let plaintext = aead::open(&data_key, &binding.aad(VALUE_AAD), &sealed.ciphertext)?;
        Ok(SecretBytes::new(plaintext))
    }
}

impl Keyring {
    /// Encrypts a small secret field (such as a TOTP secret) directly under the KEK, bound to
    /// its `purpose` and `owner` (e.g. `"totp"`, a person id), so it cannot be moved to another
    /// owner or used for another purpose.
    pub fn seal_field(&self, purpose: &str, owner: &str, plaintext: &[u8]) -> Vec<u8> {
        self.kek_seal(&field_aad(purpose, owner), plaintext)
    }

    /// Decrypts a field sealed by [`Keyring::seal_field`] with the same purpose and owner.
    pub fn open_field(
        &self,
        purpose: &str,
        owner: &str,
        sealed: &[u8],
    ) -> Result<SecretBytes, CryptoError> {
        self.kek_open(&field_aad(purpose, owner), sealed)
            .map(SecretBytes::new)
    }
}

impl Keyring {
    /// HMAC-SHA256 of `value` for `purpose` under a key derived from the root key: lets a
    /// value that must not be stored (a name typed at a login, which may be a password) be
    /// matched later, as Vault's audit devices do. Without the root key the MAC says nothing
    /// about the value, however guessable it is.
    pub fn mac(&self, purpose: &str, value: &[u8]) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(self.mac_key.as_ref())
            .expect("HMAC takes any key length");
        mac.update(&(purpose.len() as u64).to_be_bytes());
        mac.update(purpose.as_bytes());
        mac.update(value);
        mac.finalize().into_bytes().into()
    }
}

fn field_aad(purpose: &str, owner: &str) -> Vec<u8> {
    let mut aad = FIELD_AAD.to_vec();
    for part in [purpose, owner] {
        aad.push(0);
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keyring([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        RootKey::generate().keyring()
    }

    #[test]
    fn macs_are_keyed_and_separated_by_purpose() {
        let root = RootKey::generate();
        let (a, b) = (root.keyring(), root.keyring());
        assert_eq!(a.mac("p", b"hunter2"), b.mac("p", b"hunter2"));
        assert_ne!(a.mac("p", b"hunter2"), a.mac("q", b"hunter2"));
        assert_ne!(a.mac("p", b"hunter2"), a.mac("p", b"hunter3"));
        // Purpose and value cannot be shifted into each other.
        assert_ne!(a.mac("pa", b"b"), a.mac("p", b"ab"));
        assert_ne!(a.mac("p", b"hunter2"), keyring().mac("p", b"hunter2"));
    }

    const B: Binding = Binding {
        secret_id: 42,
        version: 3,
    };

    #[test]
    fn envelope_round_trip() {
        let ring = keyring();
        let sealed = ring.seal(B, b"s3cr3t");
        assert_eq!(ring.open(B, &sealed).unwrap().expose(), b"s3cr3t");
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"s3cr3t"));
    }

    #[test]
    fn any_changed_byte_fails_with_a_clear_error() {
        let ring = keyring();
        let sealed = ring.seal(B, b"value");
        for i in 0..sealed.wrapped_key.len() {
            let mut bad = sealed.clone();
            bad.wrapped_key[i] ^= 0x80;
            let err = ring.open(B, &bad).unwrap_err();
            assert!(err.to_string().contains("ciphertext"), "{err}");
        }
        for i in 0..sealed.ciphertext.len() {
            let mut bad = sealed.clone();
            bad.ciphertext[i] ^= 0x80;
            assert!(ring.open(B, &bad).is_err(), "ciphertext byte {i}");
        }
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_fails() {
        let ring = keyring();
        let sealed = ring.seal(B, b"value");
        let other_secret = Binding { secret_id: 43, ..B };
        let other_version = Binding { version: 4, ..B };
        assert!(matches!(
            ring.open(other_secret, &sealed),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            ring.open(other_version, &sealed),
            Err(CryptoError::Decrypt)
        ));
        // Swapping the data key of one version with another's also fails.
        let second = ring.seal(other_version, b"value");
        let mixed = SealedValue {
            wrapped_key: second.wrapped_key,
            ..sealed
        };
        assert!(ring.open(B, &mixed).is_err());
    }

    #[test]
    fn fields_are_bound_to_purpose_and_owner() {
        let ring = keyring();
        let sealed = ring.seal_field("totp", "p1", b"secret");
        assert_eq!(
            ring.open_field("totp", "p1", &sealed).unwrap().expose(),
            b"secret"
        );
        assert!(ring.open_field("totp", "p2", &sealed).is_err());
        assert!(ring.open_field("other", "p1", &sealed).is_err());
    }

    #[test]
    fn keyrings_from_different_roots_cannot_open_each_other() {
        let sealed = keyring().seal(B, b"value");
        assert!(keyring().open(B, &sealed).is_err());
    }

    #[test]
    fn wrong_unseal_key_is_detected() {
        let root = RootKey::generate();
        let unseal = UnsealKey::generate();
        let wrapped = root.wrap(&unseal);
        let reopened = wrapped.open(&unseal).unwrap();
        let sealed = root.keyring().seal(B, b"x");
        assert_eq!(reopened.keyring().open(B, &sealed).unwrap().expose(), b"x");
        assert!(matches!(
            wrapped.open(&UnsealKey::generate()),
            Err(CryptoError::WrongUnsealKey)
        ));
    }

    #[test]
    fn unseal_key_text_round_trip_and_errors() {
        let key = UnsealKey::generate();
        let back = UnsealKey::from_text(&format!("{}\n", key.to_text().as_str())).unwrap();
        assert_eq!(back.expose(), key.expose());
        assert!(UnsealKey::from_text("not base64!").is_err());
        assert!(UnsealKey::from_text("AAAA").is_err());
    }

    #[test]
    fn debug_output_is_redacted() {
        let key = UnsealKey::generate();
        assert_eq!(format!("{key:?}"), "UnsealKey([redacted])");
        assert_eq!(format!("{:?}", RootKey::generate()), "RootKey([redacted])");
        assert_eq!(format!("{:?}", keyring()), "Keyring([redacted])");
        let plain = SecretBytes::new(b"hunter2".to_vec());
        assert!(!format!("{plain:?}").contains("hunter2"));
    }

    #[test]
    fn kek_generations_rotate_without_losing_anything() {
        let root = RootKey::generate();
        let old = root.keyring();
        const B: Binding = Binding {
            secret_id: 7,
            version: 3,
        };
        let value = old.seal(B, b"written before");
        let field = old.seal_field("totp", "person-1", b"totp secret");
        assert_eq!(generation_of(&value.wrapped_key), 0);
        assert_eq!(value.wrapped_key[0], 1, "generation 0 blobs are unchanged");

        // The next generation opens the old blobs and wraps new keys under itself.
        let new = old.at_generation(1);
        assert_eq!(new.generation(), 1);
        assert_eq!(new.open(B, &value).unwrap().expose(), b"written before");
        let during = new.seal(B, b"written during");
        assert_eq!(generation_of(&during.wrapped_key), 1);

        // Re-wrapping moves a data key to generation 1 without touching the ciphertext.
        let rewrapped = new.rewrap_data_key(B, &value.wrapped_key).unwrap().unwrap();
        assert_eq!(generation_of(&rewrapped), 1);
        let moved = SealedValue {
            wrapped_key: rewrapped.clone(),
            ciphertext: value.ciphertext.clone(),
        };
        assert_eq!(new.open(B, &moved).unwrap().expose(), b"written before");
        assert!(new.rewrap_data_key(B, &rewrapped).unwrap().is_none());
        let resealed = new
            .reseal_field("totp", "person-1", &field)
            .unwrap()
            .unwrap();
        assert_eq!(
            new.open_field("totp", "person-1", &resealed)
                .unwrap()
                .expose(),
            b"totp secret"
        );
        assert!(
            new.reseal_field("totp", "person-2", &field).is_err(),
            "bound to its owner"
        );

        // A keyring still at generation 0 (another node) opens generation-1 blobs too.
        assert_eq!(old.open(B, &during).unwrap().expose(), b"written during");
        // A keyring from another root key opens none of them.
        let other = RootKey::generate().keyring_at(1);
        assert!(other.open(B, &moved).is_err());

        // A forged generation header picks another KEK and fails authentication.
        let mut forged = rewrapped.clone();
        forged[4] = 2;
        let forged = SealedValue {
            wrapped_key: forged,
            ciphertext: value.ciphertext.clone(),
        };
        assert!(new.open(B, &forged).is_err());
        assert!(matches!(
            new.open_field("totp", "person-1", &[GENERATION_TAG, 0, 0]),
            Err(CryptoError::Malformed(_))
        ));
    }
}
