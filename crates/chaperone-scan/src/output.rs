//! Reports as text for people, JSON, and SARIF 2.1.0 as GitHub code scanning accepts it.

use serde_json::{Value, json};

use crate::rules::{RuleSet, Severity};
use crate::scan::Report;

/// `file:line:column  severity  rule  redacted` lines, then a summary.
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        out.push_str(&format!(
            "{}:{}:{}  {:<8}  {}  {}\n    {}\n    {}\n",
            f.path,
            f.line,
            f.column,
            f.severity.as_str(),
            f.rule,
            f.redacted,
            f.description,
            f.context
        ));
    }
    out.push_str(&format!(
        "{} finding(s) in {} file(s), {} bytes scanned ({} binary and {} oversized files skipped)\n",
        report.findings.len(),
        report.files_scanned,
        report.bytes_scanned,
        report.skipped_binary,
        report.skipped_large
    ));
    out
}

/// The report as JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report always serialises")
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// GitHub's `security-severity` scale (0-10).
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}

/// SARIF 2.1.0: one run, the rules that fired as the driver's rules, one result per finding
/// with its location and a partial fingerprint.
pub fn sarif(report: &Report, rules: &RuleSet) -> String {
    let mut fired: Vec<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
    fired.sort_unstable();
    fired.dedup();
    let driver_rules: Vec<Value> = fired
        .iter()
        .filter_map(|id| rules.rules().iter().find(|r| r.spec.id == *id))
        .map(|r| {
            json!({
                "id": r.spec.id,
                "name": r.spec.id,
                "shortDescription": { "text": r.spec.description },
                "fullDescription": { "text": format!("{} found in the scanned files.", r.spec.description) },
                "defaultConfiguration": { "level": level(r.spec.severity) },
                "properties": {
                    "security-severity": security_severity(r.spec.severity),
                    "tags": ["security", "secret"],
                },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.rule,
                "ruleIndex": fired.iter().position(|id| *id == f.rule),
                "level": level(f.severity),
                "message": { "text": format!("{}: {}", f.description, f.redacted) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": f.path.replace('\\', "/") },
                        "region": { "startLine": f.line, "startColumn": f.column },
                    }
                }],
                "partialFingerprints": { "chaperoneFinding/v1": f.fingerprint },
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "chaperone",
                    "informationUri": "https://github.com/chaperone/chaperone",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": driver_rules,
                }
            },
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&doc).expect("SARIF always serialises")
}
