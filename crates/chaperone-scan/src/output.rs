//! Reports as text for people, JSON, and SARIF 2.1.0 as GitHub code scanning accepts it.

use serde_json::{Value, json};

use crate::rules::{RuleSet, Severity};
use crate::scan::Report;

/// Whether `c` changes how text is shown rather than showing: a control character (an
/// escape sequence moves the cursor and overwrites what is on screen; a line break can
/// forge a row of a list), a text direction control (which reorders what is shown), a
/// line or paragraph separator, or an invisible character (zero-width spaces and joiners,
/// the soft hyphen, Hangul fillers, invisible operators, tag characters) that makes two
/// texts look alike. Variation selectors stay: emoji need them, and they change a
/// character's look, not which characters are shown.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// `text` for a terminal, on one line: every [`is_hidden`] character is written as a Rust
/// escape (`\u{1b}`, `\n`, `\u{202e}`), so that what a file, a member's name or another
/// person wrote cannot change what else is shown.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, is_hidden)
}

/// [`printable`] for text of several lines (a policy's text): line breaks and tabs stay.
pub fn printable_lines(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, |c| is_hidden(c) && !matches!(c, '\n' | '\t'))
}

fn escaped(text: &str, hide: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(&hide) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if hide(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// `file:line:column  severity  rule  redacted` lines, then a summary.
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        out.push_str(&format!(
            "{}:{}:{}  {:<8}  {}  {}\n    {}\n    {}\n",
            printable(&f.path),
            f.line,
            f.column,
            f.severity.as_str(),
            f.rule,
            printable(&f.redacted),
            f.description,
            printable(&f.context)
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

/// A scanned file's path as a relative URI reference (RFC 3986), as SARIF's `uri` is read:
/// `/` (and `\` from Windows) separates segments, and every byte but the unreserved ones is
/// percent-encoded. Names come from whoever made the files: read as a URI, a file named
/// `main%2Ers` is `main.rs` and `a#b` is `a`, so a viewer would show another file's alert.
fn uri_reference(path: &str) -> String {
    let mut uri = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'\\' | b'/' => uri.push('/'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                uri.push(char::from(byte));
            }
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri
}

/// SARIF 2.1.0: one run, the rules that fired as the driver's rules, one result per finding
/// with its location and a partial fingerprint.
pub fn sarif(report: &Report, rules: &RuleSet) -> String {
    let mut fired: Vec<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
    fired.sort_unstable();
    fired.dedup();
    // Every rule that fired is described, so that each result's `ruleIndex` points at its
    // own rule: the rule set's rules, and the others (sensitive data, vault values, a
    // file cut short) from their first finding.
    let driver_rules: Vec<Value> = fired
        .iter()
        .map(|id| {
            let (description, severity) = match rules.rules().iter().find(|r| r.spec.id == *id) {
                Some(r) => (r.spec.description.as_str(), r.spec.severity),
                None => {
                    let first = report
                        .findings
                        .iter()
                        .find(|f| f.rule == *id)
                        .expect("a fired rule has a finding");
                    (first.description.as_str(), first.severity)
                }
            };
            json!({
                "id": id,
                "name": id,
                "shortDescription": { "text": description },
                "fullDescription": { "text": format!("{description} found in the scanned files.") },
                "defaultConfiguration": { "level": level(severity) },
                "properties": {
                    "security-severity": security_severity(severity),
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
                        "artifactLocation": { "uri": uri_reference(&f.path) },
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

#[cfg(test)]
mod tests {
    use super::{is_hidden, printable, printable_lines};
    use crate::{RuleSet, Scanner};

    #[test]
    fn terminal_text_has_no_control_characters() {
        let mut finding = crate::scan::too_many("a\u{1b}[2Jb.env", 1);
        finding.context = "x = 1\r\u{1b}[1A".into();
        let report = crate::scan::Report {
            findings: vec![finding],
            ..crate::scan::Report::default()
        };
        let text = super::human(&report);
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("a\\u{1b}[2Jb.env"), "{text}");
    }

    #[test]
    fn what_changes_how_text_is_shown_is_escaped() {
        for hidden in [
            "\u{1b}[2K",
            "\n",
            "\u{202e}",
            "\u{200b}",
            "\u{2028}",
            "\u{feff}",
            "\u{e0041}",
            "\u{034f}",
            "\u{3164}",
            "\u{ffa0}",
            "\u{fffa}",
            "\u{206b}",
        ] {
            assert!(hidden.chars().any(is_hidden), "{hidden:?}");
            let shown = printable(hidden);
            assert!(!shown.chars().any(is_hidden), "{hidden:?} -> {shown:?}");
        }
        assert_eq!(printable("plain, ünïcödé 日本"), "plain, ünïcödé 日本");
        // Emoji keep their variation selectors.
        assert_eq!(
            printable("thanks \u{2764}\u{fe0f}"),
            "thanks \u{2764}\u{fe0f}"
        );
        // A policy's lines stay; what would change them does not.
        assert_eq!(
            printable_lines("one\n\ttwo\u{1b}[2K"),
            "one\n\ttwo\\u{1b}[2K"
        );
    }

    #[test]
    fn a_path_is_a_uri_reference_that_names_only_its_own_file() {
        assert_eq!(super::uri_reference("src/main.rs"), "src/main.rs");
        assert_eq!(super::uri_reference("src\\win.rs"), "src/win.rs");
        assert_eq!(super::uri_reference("src/main%2Ers"), "src/main%252Ers");
        assert_eq!(super::uri_reference("a b%20c#d.txt"), "a%20b%2520c%23d.txt");
        assert_eq!(super::uri_reference("C:x?y"), "C%3Ax%3Fy");
        assert_eq!(super::uri_reference("é\u{202e}"), "%C3%A9%E2%80%AE");
    }

    #[test]
    fn every_sarif_result_points_at_its_own_rule() {
        let rules = RuleSet::builtin().unwrap();
        let scanner = Scanner::new(RuleSet::builtin().unwrap())
            .with_known_values(&[(b"Vault-Secret-Zq81-Lm02".as_slice(), "a#b".to_owned())]);
        let findings = scanner.scan_bytes(
            "x.sh",
            b"GITHUB_TOKEN=ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo\n\
              card 4539 1488 0343 6467\nVault-Secret-Zq81-Lm02\n",
        );
        let report = crate::scan::Report {
            findings,
            ..Default::default()
        };
        let sarif: serde_json::Value =
            serde_json::from_str(&super::sarif(&report, &rules)).unwrap();
        let driver = sarif["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap();
        let results = sarif["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 3, "{results:?}");
        for result in results {
            let index = result["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(driver[index]["id"], result["ruleId"], "{result}");
        }
    }
}
