//! Baselines: findings someone reviewed and accepted, by fingerprint, so that a scan
//! reports only what is new. The file is JSON, written by `chaperone scan
//! --write-baseline` and meant to be committed and reviewed like code:
//!
//! ```json
//! { "version": 1, "accepted": [ { "fingerprint": "…", "rule": "…", "path": "…", "line": 3 } ] }
//! ```
//!
//! A fingerprint covers the rule, the path and the value, never the value itself; a finding
//! that moves to another line keeps its fingerprint, a changed value gets a new one.

use serde::{Deserialize, Serialize};

use crate::scan::{Finding, Report};

/// Accepted findings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The format's version: 1.
    pub version: u32,
    /// What was accepted.
    pub accepted: Vec<Accepted>,
}

/// One accepted finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The finding's fingerprint.
    pub fingerprint: String,
    /// Its rule, for the reader.
    pub rule: String,
    /// Its file, for the reader.
    pub path: String,
    /// Its line when accepted, for the reader.
    pub line: usize,
}

impl Baseline {
    /// A baseline accepting every finding of `report`.
    pub fn of(report: &Report) -> Self {
        Self {
            version: 1,
            accepted: report
                .findings
                .iter()
                .map(|f| Accepted {
                    fingerprint: f.fingerprint.clone(),
                    rule: f.rule.clone(),
                    path: f.path.clone(),
                    line: f.line,
                })
                .collect(),
        }
    }

    /// Reads a baseline file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let baseline: Baseline =
            serde_json::from_str(text).map_err(|e| format!("not a baseline file: {e}"))?;
        if baseline.version != 1 {
            return Err(format!("baseline version {} is not 1", baseline.version));
        }
        Ok(baseline)
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a baseline serialises")
    }

    /// Whether `finding` was accepted: an entry with its fingerprint, and the rule and path
    /// the reviewer saw (an entry labelled as a test fixture accepts nothing elsewhere). A
    /// file's "too many findings" is never accepted: past it, nothing was looked for, so
    /// what is added later would go unseen.
    pub fn accepts(&self, finding: &Finding) -> bool {
        finding.rule != crate::scan::TOO_MANY
            && self.accepted.iter().any(|a| {
                a.fingerprint == finding.fingerprint
                    && a.rule == finding.rule
                    && a.path == finding.path
            })
    }

    /// Removes the accepted findings from `report`; how many.
    pub fn apply(&self, report: &mut Report) -> usize {
        let before = report.findings.len();
        report.findings.retain(|f| !self.accepts(f));
        before - report.findings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RuleSet, Scanner};

    #[test]
    fn accepted_findings_drop_out_and_new_ones_stay() {
        let scanner = Scanner::new(RuleSet::builtin().unwrap());
        let old = "token = ghp_R2x9bQ7mVt4Lk8Zp1Ws6Yc3Nd5Fh0Jg2Ua7E\n";
        let report = Report {
            findings: scanner.scan_bytes("ci.yml", old.as_bytes()),
            ..Report::default()
        };
        assert_eq!(report.findings.len(), 1);
        let baseline = Baseline::parse(&Baseline::of(&report).to_json()).unwrap();
        // The same value a line lower is still accepted; a new value is not.
        let later = format!("# moved\n{old}token2 = ghp_Q7w1eR5tY9uI3oP6aS2dF8gH4jK0lZ5xC1vB\n");
        let mut again = Report {
            findings: scanner.scan_bytes("ci.yml", later.as_bytes()),
            ..Report::default()
        };
        assert_eq!(baseline.apply(&mut again), 1);
        assert_eq!(again.findings.len(), 1);
        assert_eq!(again.findings[0].line, 3);
        assert!(
            !baseline.to_json().contains("R2x9bQ7mVt4Lk8Zp1Ws6"),
            "no value in the file"
        );
        assert!(Baseline::parse("{\"version\": 2, \"accepted\": []}").is_err());
    }

    #[test]
    fn an_entry_accepts_only_the_rule_and_path_it_names_and_never_too_many() {
        let scanner = Scanner::new(RuleSet::builtin().unwrap());
        let leak = "token = ghp_R2x9bQ7mVt4Lk8Zp1Ws6Yc3Nd5Fh0Jg2Ua7E\n";
        let report = Report {
            findings: scanner.scan_bytes("ci.yml", leak.as_bytes()),
            ..Report::default()
        };
        let mut baseline = Baseline::of(&report);
        // Relabelled by hand as a fixture: the reviewer saw another file.
        baseline.accepted[0].path = "tests/fixture.yml".into();
        let mut again = report.clone();
        assert_eq!(baseline.apply(&mut again), 0);
        // A file past the findings limit says so, and that is never baselined away.
        let many = "ghp_R2x9bQ7mVt4Lk8Zp1Ws6Yc3Nd5Fh0Jg2Ua7E\n".repeat(1100);
        let full = Report {
            findings: scanner.scan_bytes("dump.txt", many.as_bytes()),
            ..Report::default()
        };
        assert!(
            full.findings
                .iter()
                .any(|f| f.rule == crate::scan::TOO_MANY)
        );
        let mut again = full.clone();
        Baseline::of(&full).apply(&mut again);
        assert_eq!(
            again
                .findings
                .iter()
                .map(|f| f.rule.as_str())
                .collect::<Vec<_>>(),
            [crate::scan::TOO_MANY]
        );
    }
}
