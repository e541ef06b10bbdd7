//! Versioned secrets: version states, check-and-set and version retention.
//!
//! A secret is a path with a list of versions. Each write adds a version numbered one past the
//! current one; a version is active, soft-deleted (recoverable with undelete) or destroyed
//! (its data gone for good, its metadata kept). Writes prune the oldest versions beyond the
//! secret's maximum.

use std::collections::BTreeMap;

use crate::{SecretPath, Timestamp};

/// The number of versions kept when neither the secret nor the server says otherwise.
pub const DEFAULT_MAX_VERSIONS: u32 = 10;
/// The largest accepted per-secret or server-wide maximum.
pub const MAX_MAX_VERSIONS: u32 = 10_000;

/// How many versions to keep. Zero is not representable: "use the default" is `None` where a
/// setting is optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxVersions(u32);

impl MaxVersions {
    /// [`DEFAULT_MAX_VERSIONS`].
    pub const DEFAULT: Self = Self(DEFAULT_MAX_VERSIONS);

    /// Accepts 1 ..= [`MAX_MAX_VERSIONS`].
    pub fn new(n: u32) -> Result<Self, KvError> {
        if (1..=MAX_MAX_VERSIONS).contains(&n) {
            Ok(Self(n))
        } else {
            Err(KvError::InvalidMaxVersions(n))
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for MaxVersions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A check-and-set requirement on a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cas {
    /// No requirement (refused if the secret requires check-and-set).
    None,
    /// The secret's current version must be this one; `0` means "only if the secret is absent".
    Version(u64),
    /// Like [`Cas::Version`], and that version must still be readable: the write merges
    /// into it (a patch), so one deleted or destroyed meanwhile must not come back.
    Merge(u64),
}

/// Why a key/value operation is refused by the rules (not by storage).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The secret requires check-and-set and the write carried none.
    #[error("check-and-set parameter required for this call")]
    CasRequired,
    /// The check-and-set version is not the current version.
    #[error("check-and-set parameter did not match the current version")]
    CasMismatch {
        /// The version the writer expected.
        expected: u64,
        /// The secret's current version.
        current: u64,
    },
    /// A maximum number of versions out of range.
    #[error("max_versions must be between 1 and {MAX_MAX_VERSIONS}, got {0}")]
    InvalidMaxVersions(u32),
    /// Custom metadata over Vault's limits.
    #[error("custom_metadata: {0}")]
    CustomMetadata(String),
    /// The version a patch merges into was deleted or destroyed since it was read.
    #[error("version {version} was deleted or destroyed meanwhile")]
    VersionGone {
        /// The version merged into.
        version: u64,
    },
}

/// Most keys in a secret's custom metadata, as in Vault.
pub const MAX_CUSTOM_METADATA_KEYS: usize = 64;
/// Longest custom metadata key, in bytes, as in Vault.
pub const MAX_CUSTOM_METADATA_KEY_BYTES: usize = 128;
/// Longest custom metadata value, in bytes, as in Vault.
pub const MAX_CUSTOM_METADATA_VALUE_BYTES: usize = 512;

/// Checks custom metadata against Vault's limits. Security decision: the limits bound what
/// one secret's settings cost in memory, since every cached version carries them.
pub fn check_custom_metadata(metadata: &BTreeMap<String, String>) -> Result<(), KvError> {
    if metadata.len() > MAX_CUSTOM_METADATA_KEYS {
        return Err(KvError::CustomMetadata(format!(
            "at most {MAX_CUSTOM_METADATA_KEYS} keys, got {}",
            metadata.len()
        )));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.len() > MAX_CUSTOM_METADATA_KEY_BYTES {
            return Err(KvError::CustomMetadata(format!(
                "keys are 1 to {MAX_CUSTOM_METADATA_KEY_BYTES} bytes"
            )));
        }
        if value.len() > MAX_CUSTOM_METADATA_VALUE_BYTES {
            return Err(KvError::CustomMetadata(format!(
                "the value of `{key}` is longer than {MAX_CUSTOM_METADATA_VALUE_BYTES} bytes"
            )));
        }
    }
    Ok(())
}

/// Decides whether a write may proceed given the secret's `current` version (0 when absent).
pub fn check_cas(current: u64, cas: Cas, cas_required: bool) -> Result<(), KvError> {
    match cas {
        Cas::None if cas_required => Err(KvError::CasRequired),
        Cas::None => Ok(()),
        Cas::Version(expected) | Cas::Merge(expected) if expected == current => Ok(()),
        Cas::Version(expected) | Cas::Merge(expected) => {
            Err(KvError::CasMismatch { expected, current })
        }
    }
}

/// After writing `new_version`, versions strictly below the returned number are pruned.
pub fn pruned_below(new_version: u64, keep: MaxVersions) -> u64 {
    (new_version + 1)
        .saturating_sub(u64::from(keep.get()))
        .max(1)
}

/// The state of one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionState {
    /// Readable.
    Active,
    /// Soft-deleted at this time; undelete restores it.
    Deleted(Timestamp),
    /// Data destroyed for good at `at`. `deleted` is when it had been soft-deleted before,
    /// if it had: Vault's clients are shown that time with a destroyed version.
    Destroyed {
        at: Timestamp,
        deleted: Option<Timestamp>,
    },
}

/// Metadata of one version. Carries no secret data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionMeta {
    /// The version number, from 1.
    pub version: u64,
    /// When it was written.
    pub created_at: Timestamp,
    /// Active, deleted or destroyed.
    pub state: VersionState,
}

impl VersionMeta {
    /// When the version was soft-deleted, if it is (or was, before it was destroyed).
    pub fn deletion_time(&self) -> Option<Timestamp> {
        match self.state {
            VersionState::Deleted(at) => Some(at),
            VersionState::Destroyed { deleted, .. } => deleted,
            VersionState::Active => None,
        }
    }

    /// Whether the data was destroyed.
    pub fn destroyed(&self) -> bool {
        matches!(self.state, VersionState::Destroyed { .. })
    }
}

/// A secret's metadata and the metadata of its kept versions. Carries no secret data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMetadata {
    /// The secret's path.
    pub path: SecretPath,
    /// The newest version number (0 if never written).
    pub current_version: u64,
    /// The oldest kept version number.
    pub oldest_version: u64,
    /// The secret's own maximum, if set; the server default applies otherwise.
    pub max_versions: Option<MaxVersions>,
    /// Whether every write must carry a check-and-set version.
    pub cas_required: bool,
    /// Free-form, non-secret labels.
    pub custom_metadata: BTreeMap<String, String>,
    /// How many times the metadata was written (0 until the first metadata write).
    pub metadata_version: u64,
    /// When the secret was first written.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Kept versions, oldest first.
    pub versions: Vec<VersionMeta>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_and_set() {
        assert_eq!(check_cas(0, Cas::None, false), Ok(()));
        assert_eq!(check_cas(3, Cas::None, true), Err(KvError::CasRequired));
        assert_eq!(check_cas(0, Cas::Version(0), false), Ok(()));
        assert_eq!(
            check_cas(2, Cas::Version(0), false),
            Err(KvError::CasMismatch {
                expected: 0,
                current: 2
            })
        );
        assert_eq!(check_cas(2, Cas::Version(2), true), Ok(()));
        assert_eq!(
            check_cas(2, Cas::Version(1), false),
            Err(KvError::CasMismatch {
                expected: 1,
                current: 2
            })
        );
    }

    #[test]
    fn retention() {
        let keep = MaxVersions::new(3).unwrap();
        assert_eq!(pruned_below(1, keep), 1);
        assert_eq!(pruned_below(3, keep), 1);
        assert_eq!(pruned_below(4, keep), 2);
        assert_eq!(pruned_below(10, keep), 8);
        assert!(MaxVersions::new(0).is_err());
        assert!(MaxVersions::new(MAX_MAX_VERSIONS + 1).is_err());
        assert_eq!(MaxVersions::default().get(), 10);
    }
}
