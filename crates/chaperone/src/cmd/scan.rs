//! `chaperone scan PATH...`: leaked credentials in files and directories.
//!
//! Exit status: 0 when nothing at or above `--fail-on` was found, 1 when something was, 2
//! when the scan could not run (unreadable path, bad rules file).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chaperone_scan::{Baseline, RuleSet, Scanner, Severity, output};

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
    /// Also scan the whole history of each path that is a git repository (every blob of
    /// every branch and tag, once).
    #[arg(long)]
    history: bool,
    /// Accept the findings listed in this baseline file: only new ones are reported.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Write every finding of this scan to a baseline file (to review and commit), and exit 0.
    #[arg(long, conflicts_with = "baseline")]
    write_baseline: Option<PathBuf>,
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
    let bar = Progress::new();
    let mut report = scanner.scan_paths_with(&args.paths, &|bytes| bar.advance(bytes))?;
    if args.history {
        for path in &args.paths {
            if path.join(".git").exists() || path.join("HEAD").is_file() {
                report.merge(scanner.scan_git_history(path, &|bytes| bar.advance(bytes))?);
            } else {
                eprintln!(
                    "{} is not a git repository: its history is not scanned",
                    path.display()
                );
            }
        }
    }
    bar.finish();
    if let Some(path) = &args.write_baseline {
        std::fs::write(path, Baseline::of(&report).to_json())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "Wrote {} accepted finding(s) to {}: review it before you commit it.",
            report.findings.len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.baseline {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let baseline =
            Baseline::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let accepted = baseline.apply(&mut report);
        if accepted > 0 {
            eprintln!("{accepted} finding(s) accepted by {}.", path.display());
        }
    }
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

/// A progress bar on a terminal for scans that take longer than a second; nothing in pipes
/// or CI.
struct Progress {
    bar: indicatif::ProgressBar,
    start: std::time::Instant,
    shown: std::sync::atomic::AtomicBool,
    wanted: bool,
}

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal;
        let wanted = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bar = indicatif::ProgressBar::hidden();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} scanned {bytes} in {elapsed} ({bytes_per_sec})",
            )
            .expect("a valid template"),
        );
        Self {
            bar,
            start: std::time::Instant::now(),
            shown: std::sync::atomic::AtomicBool::new(false),
            wanted,
        }
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        if self.wanted
            && self.start.elapsed() > std::time::Duration::from_secs(1)
            && !self.shown.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
