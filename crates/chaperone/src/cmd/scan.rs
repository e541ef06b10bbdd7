//! `chaperone scan PATH...`: leaked credentials in files and directories.
//!
//! Exit status: 0 when nothing at or above `--fail-on` was found, 1 when something was, 2
//! when the scan could not run (unreadable path, bad rules file).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chaperone_scan::{RuleSet, Scanner, Severity, output};

/// `chaperone scan`
#[derive(clap::Args, Debug)]
pub(crate) struct ScanArgs {
    /// Files and directories to scan (directories recursively, hidden files included).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output: human, json or sarif (SARIF 2.1.0, for GitHub code scanning).
    #[arg(long, default_value = "human")]
    format: String,
    /// Exit with status 1 when a finding of this severity or above exists.
    #[arg(long, default_value = "low")]
    fail_on: Severity,
    /// Extra rules (TOML, the format of the built-in rules); may `disable` built-in ids.
    #[arg(long = "rules")]
    rule_files: Vec<PathBuf>,
    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    max_file_size: u64,
}

pub(crate) fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let texts = args
        .rule_files
        .iter()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rules = RuleSet::with_user_files(&refs)?;
    let format = args.format.as_str();
    if !matches!(format, "human" | "json" | "sarif") {
        anyhow::bail!("unknown --format {format:?}: human, json or sarif");
    }
    let mut scanner = Scanner::new(rules);
    scanner.max_file_size = args.max_file_size;
    let report = scanner.scan_paths(&args.paths)?;
    let text = match format {
        "json" => output::json(&report),
        "sarif" => output::sarif(&report, scanner.rules()),
        _ => output::human(&report),
    };
    println!("{}", text.trim_end());
    let failing = report.findings.iter().any(|f| f.severity >= args.fail_on);
    Ok(if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
