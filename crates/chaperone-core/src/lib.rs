//! Chaperone's domain model and rules.
//!
//! This crate decides, it does not do: it never touches the network, the database, the file
//! system or the clock. Values that come from outside (paths, times) are parsed into types
//! here at the edge, and the rules about them (which version a check-and-set may replace,
//! which versions a write prunes) live next to those types.

pub mod governance;
pub mod net;
pub mod path;
pub mod policy;
pub mod secret;
pub mod time;

pub use path::{PathError, SecretPath, SecretPrefix};
pub use secret::{
    Cas, KvError, MaxVersions, SecretMetadata, VersionMeta, VersionState, check_cas, pruned_below,
};
pub use time::{Clock, Timestamp, parse_duration};
