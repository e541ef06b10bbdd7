//! Chaperone's deliverable scanner: leaked credentials in what contractors deliver.
//!
//! - [`rules`]: the rule format (TOML; the built-in set is `rules/secrets.toml`), compiled
//!   with regex-automata (ASCII classes, byte input), and the placeholder and entropy filters.
//! - [`scan`]: an Aho-Corasick keyword prefilter, then the regexes of the rules whose keywords
//!   occur, line by line; files and directories with binary sniffing and a size limit.
//! - `sensitive`: payment card numbers (issuer ranges and Luhn), IBANs (country lengths and
//!   mod-97) and US Social Security numbers (issued ranges), checked on every line.
//! - [`output`]: text, JSON and SARIF 2.1.0.
//! - [`baseline`]: accepted findings, by fingerprint.
//! - `history`: every blob of a git repository's history, once, with gix.
//! - `archive`: zip, tar and tar.gz members, scanned as files (`a.zip!dir/file`) within
//!   limits against zip bombs.
//!
//! A finding never holds the secret: only its length and a 64-bit fingerprint (a hash of
//! rule, path and value, for baselines; it confirms a guessed weak value, so reports and
//! baselines are as private as the code).

mod archive;
pub mod baseline;
mod history;
pub mod output;
pub mod rules;
pub mod scan;
mod sensitive;

pub use baseline::Baseline;
pub use rules::{Category, RuleError, RuleSet, Severity};
pub use scan::{Finding, KNOWN_VALUE, Report, ScanError, Scanner};
