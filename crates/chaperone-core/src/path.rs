//! Secret paths such as `team/payments/db`, and prefixes for listing.
//!
//! Rules, chosen so that a path is safe in URLs, shells, file names and SQL `LIKE`-free
//! comparisons: segments separated by `/`; each segment 1 to 128 characters from
//! `A-Z a-z 0-9 . _ -`; no `.` or `..` segment; no empty segment (so no leading, trailing or
//! doubled `/`); at most 512 characters and 32 segments in all.

use std::fmt;

/// Longest accepted path, in bytes (every accepted character is one byte).
pub const MAX_PATH_LEN: usize = 512;
/// Longest accepted segment.
pub const MAX_SEGMENT_LEN: usize = 128;
/// Deepest accepted path.
pub const MAX_SEGMENTS: usize = 32;

/// Why a path was refused. The message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty.
    #[error("the path is empty")]
    Empty,
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("the path is {0} characters long; at most {MAX_PATH_LEN} are allowed")]
    TooLong(usize),
    /// The path has more than [`MAX_SEGMENTS`] segments.
    #[error("the path has {0} segments; at most {MAX_SEGMENTS} are allowed")]
    TooDeep(usize),
    /// Two slashes in a row, or a slash at the start or the end.
    #[error("the path has an empty segment (a leading, trailing or doubled `/`)")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("the path has a `{0}` segment; relative segments are not allowed")]
    DotSegment(&'static str),
    /// A segment longer than [`MAX_SEGMENT_LEN`].
    #[error("a path segment is {0} characters long; at most {MAX_SEGMENT_LEN} are allowed")]
    SegmentTooLong(usize),
    /// A character outside the allowed set.
    #[error("the path contains {0:?}; allowed are letters, digits, `.`, `_`, `-` and `/`")]
    BadCharacter(char),
    /// A segment shaped like a Chaperone token.
    #[error("a path segment looks like a Chaperone token; tokens never go in a path")]
    LooksLikeToken,
}

/// How a Chaperone bearer token begins (`chaperone_crypto::token::TOKEN_PREFIX`), and how
/// many characters follow it at least.
const TOKEN_PREFIX: &str = "chp_";
const TOKEN_BODY_LEN: usize = 43;

/// Whether `segment` is shaped like a Chaperone token.
///
/// Security decision: a path is kept for ever, in the ledger and in listings, whoever asks for
/// it and whether or not it exists. A token pasted where a path belongs (`bao kv get
/// secret/$TOKEN`) would be kept with it, so such a path is refused before anything looks it
/// up or records it.
pub fn looks_like_token(segment: &str) -> bool {
    segment
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|body| body.len() >= TOKEN_BODY_LEN)
}

/// A validated secret path.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretPath(String);

impl SecretPath {
    /// Parses and validates `text`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if let Some(bad) = text.chars().find(|&c| !allowed(c) && c != '/') {
            return Err(PathError::BadCharacter(bad));
        }
        if text.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong(text.len()));
        }
        let segments = text.split('/').count();
        if segments > MAX_SEGMENTS {
            return Err(PathError::TooDeep(segments));
        }
        for segment in text.split('/') {
            match segment {
                "" => return Err(PathError::EmptySegment),
                "." => return Err(PathError::DotSegment(".")),
                ".." => return Err(PathError::DotSegment("..")),
                s if s.len() > MAX_SEGMENT_LEN => return Err(PathError::SegmentTooLong(s.len())),
                s if looks_like_token(s) => return Err(PathError::LooksLikeToken),
                _ => {}
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The path text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretPath({:?})", self.0)
    }
}

/// A listing prefix: empty (everything) or a valid path followed by `/`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SecretPrefix(String);

impl SecretPrefix {
    /// Parses `text`; a missing trailing `/` is added, so `team` lists `team/...`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        if trimmed.is_empty() {
            return Ok(Self(String::new()));
        }
        let path = SecretPath::parse(trimmed)?;
        Ok(Self(format!("{}/", path.0)))
    }

    /// The prefix text: empty, or ending in `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The direct children of this prefix among `paths`, sorted and without duplicates: leaf
    /// names as they are, and sub-folders with a trailing `/` (as Vault's `LIST` does).
    pub fn children<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut keys: Vec<String> = paths
            .into_iter()
            .filter_map(|p| p.strip_prefix(self.0.as_str()))
            .filter(|rest| !rest.is_empty())
            .map(|rest| match rest.find('/') {
                Some(i) => rest[..=i].to_owned(),
                None => rest.to_owned(),
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for ok in ["a", "team/payments/db", "x.y_z-1/A", &"s".repeat(128)] {
            assert_eq!(SecretPath::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_bad_paths_with_a_reason() {
        let cases = [
            ("", PathError::Empty),
            ("/a", PathError::EmptySegment),
            ("a/", PathError::EmptySegment),
            ("a//b", PathError::EmptySegment),
            ("a/../b", PathError::DotSegment("..")),
            ("./a", PathError::DotSegment(".")),
            ("a b", PathError::BadCharacter(' ')),
            ("a%2e", PathError::BadCharacter('%')),
            ("é", PathError::BadCharacter('é')),
            ("a\0", PathError::BadCharacter('\0')),
        ];
        for (input, expected) in cases {
            assert_eq!(SecretPath::parse(input).unwrap_err(), expected, "{input:?}");
        }
        assert_eq!(
            SecretPath::parse(&"s".repeat(129)).unwrap_err(),
            PathError::SegmentTooLong(129)
        );
        let long = vec!["abcdefghij"; 50].join("/");
        assert_eq!(
            SecretPath::parse(&long).unwrap_err(),
            PathError::TooLong(long.len())
        );
        let deep = vec!["a"; 33].join("/");
        assert_eq!(
            SecretPath::parse(&deep).unwrap_err(),
            PathError::TooDeep(33)
        );
        // A token pasted where a path belongs; a name that merely starts alike is a name.
        let token = format!("team/chp_{}", "A1b2_C3d4-".repeat(5));
        assert_eq!(
            SecretPath::parse(&token).unwrap_err(),
            PathError::LooksLikeToken
        );
        assert!(SecretPath::parse("team/chp_notes").is_ok());
    }

    #[test]
    fn prefixes_list_direct_children() {
        let paths = ["team/a", "team/b/c", "team/b/d", "other/x", "teamx"];
        assert_eq!(
            SecretPrefix::parse("team").unwrap().children(paths),
            ["a", "b/"]
        );
        assert_eq!(
            SecretPrefix::parse("team/").unwrap().children(paths),
            ["a", "b/"]
        );
        assert_eq!(
            SecretPrefix::parse("").unwrap().children(paths),
            ["other/", "team/", "teamx"]
        );
        assert!(SecretPrefix::parse("../x").is_err());
    }
}
