//! Running Chaperone in production: TLS end to end (the CLI and curl), certificate reload on
//! SIGHUP, the refusal of plaintext on a public address, JSON logs and a graceful shutdown.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use common::{BIN, Db, Server, fails, ok, run_cli, shares_in};
use sha2::{Digest as _, Sha256};

/// The SHA-256 fingerprint of the first certificate in a PEM file, as `AB:CD:...`.
fn fingerprint(pem: &Path) -> String {
    let text = std::fs::read_to_string(pem).unwrap();
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed (cargo xtask test installs it)")
}

/// `chaperone up --tls` in a new directory.
fn up_tls(dir: &Path, env: &[(&str, &str)], log: std::fs::File) -> Server {
    let data = dir.join("data");
    Server::start_logging(
        &[
            "up",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--tls",
        ],
        dir,
        env,
        log,
    )
}

#[test]
fn tls_end_to_end_with_the_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let server = up_tls(
        dir.path(),
        &[
            ("CHAPERONE_LOG", "info,chaperone_server::observe=debug"),
            ("CHAPERONE_LOG_FORMAT", "json"),
        ],
        std::fs::File::create(&log_path).unwrap(),
    );
    let data = dir.path().join("data");
    let cert = data.join("tls.crt");
    let cert_arg = cert.to_str().unwrap();
    assert!(
        server.addr.starts_with("https://127.0.0.1:"),
        "{}",
        server.addr
    );
    #[cfg(unix)]
    assert_eq!(common::mode(&data.join("tls.key")), 0o600);

    // The fingerprint printed is the certificate's.
    let printed = server
        .banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("SHA-256 fingerprint "))
        .expect("the fingerprint is printed");
    assert_eq!(printed, fingerprint(&cert));

    // curl with the certificate as its CA: HSTS and the other headers.
    let url = format!("{}/api/v1/ready", server.addr);
    let answer = curl(&["-i", "--cacert", cert_arg, &url]);
    let text = String::from_utf8_lossy(&answer.stdout).to_lowercase();
    assert!(answer.status.success(), "{answer:?}");
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("strict-transport-security: max-age=63072000"),
        "{text}"
    );
    assert!(text.contains("x-content-type-options: nosniff"), "{text}");
    // Without it, curl refuses the self-signed certificate; plaintext gets no answer.
    assert!(!curl(&[&url]).status.success());
    let plain = url.replace("https://", "http://");
    let answer = curl(&["-i", &plain]);
    assert!(!String::from_utf8_lossy(&answer.stdout).contains("200 OK"));

    // The CLI verifies the certificate: refused without the CA, with a hint.
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim();
    let value = "tls-protected-value-81f3";
    let error = fails(server.cli(token, &["secret", "put", "team/db", "password=-"], value));
    assert!(error.contains("--ca-cert"), "{error}");
    // With CHAPERONE_CACERT, and with --ca-cert.
    let with_ca = |args: &[&str], stdin: &str| {
        common::run_cli_env(
            &server.addr,
            token,
            dir.path(),
            &[("CHAPERONE_CACERT", cert.as_path())],
            args,
            stdin,
        )
    };
    ok(with_ca(&["secret", "put", "team/db", "password=-"], value));
    let read = ok(run_cli(
        &server.addr,
        token,
        &["secret", "get", "team/db", "--ca-cert", cert_arg],
        "",
    ));
    assert!(read.contains(value), "{read}");

    // SIGHUP loads a new certificate from the same files; new connections get it.
    let other = tempfile::tempdir().unwrap();
    let donor = up_tls(
        other.path(),
        &[],
        std::fs::File::create(other.path().join("log")).unwrap(),
    );
    donor.kill();
    let new_cert = other.path().join("data/tls.crt");
    let old_cert = other.path().join("old.crt");
    std::fs::copy(&cert, &old_cert).unwrap();
    std::fs::copy(other.path().join("data/tls.key"), data.join("tls.key")).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    server.signal("HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if curl(&["--cacert", new_cert.to_str().unwrap(), &url])
            .status
            .success()
        {
            reloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reloaded, "the new certificate is served after SIGHUP");
    assert!(
        !curl(&["--cacert", old_cert.to_str().unwrap(), &url])
            .status
            .success(),
        "the old certificate is no longer served"
    );
    // The server kept running through the reload.
    ok(with_ca(&["secret", "get", "team/db"], ""));

    // SIGTERM: a clean exit, with a last checkpoint over every entry.
    let mut server = server;
    server.signal("TERM");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let (size, checkpointed) = ledger_head(&data.join("chaperone.db"));
    assert!(size > 0);
    assert_eq!(checkpointed, size, "the final checkpoint covers the ledger");

    // The log is JSON, one object per line, every request line with its request id; no
    // token or secret value in it.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let mut requests = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if event["message"] == "request" {
            requests += 1;
            assert_eq!(
                event["span"]["id"].as_str().map(str::len),
                Some(36),
                "{line}"
            );
            assert!(
                event["route"].is_string() && event["status"].is_number(),
                "{line}"
            );
        }
    }
    assert!(requests >= 4, "{log}");
    assert!(!log.contains(value) && !log.contains(token));
}

fn ledger_head(db: &Path) -> (i64, i64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let checkpointed: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(size), 0) FROM ledger_checkpoints")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        (size, checkpointed)
    })
}

#[test]
fn plaintext_on_a_public_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Command::new(BIN)
        .args([
            "up",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    let error = fails(up);
    assert!(
        error.contains("refusing to listen on 0.0.0.0:0 without TLS"),
        "{error}"
    );
    assert!(!data.exists(), "nothing is created");

    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let server = Command::new(BIN)
        .args(["server", "--listen", "0.0.0.0:0", "--database-url", &url])
        .output()
        .unwrap();
    let error = fails(server);
    assert!(error.contains("dangerously_allow_plaintext"), "{error}");
}

/// A key file, or a config file holding a secret, that other users may read is named in the
/// log at start; the server still starts.
#[test]
fn a_key_file_others_may_read_is_named_in_the_log() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, server) = Server::up();
    drop(server);
    let data = dir.path().join("data");
    let key = data.join("unseal.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!("sqlite://{}", data.join("chaperone.db").display());
    let log_path = dir.path().join("server.log");
    // A config file holding a secret, readable by all.
    let config = dir.path().join("chaperone.toml");
    std::fs::write(&config, "metrics_token = \"metrics-Zq71-token-value\"\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start_logging(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--config",
            config.to_str().unwrap(),
        ],
        dir.path(),
        &[("CHAPERONE_UNSEAL_KEY_FILE", key.to_str().unwrap())],
        std::fs::File::create(&log_path).unwrap(),
    );
    assert!(server.banner.contains("unsealed"), "{}", server.banner);
    drop(server);
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("the unseal key file can be read by other users"),
        "{logged}"
    );
    assert!(
        logged.contains("the config file, which holds metrics_token, can be read by other users"),
        "{logged}"
    );
    assert!(!logged.contains("Zq71"), "{logged}");
}

/// One process at a time on a SQLite database: a second `up`, an `init` and a forced
/// restore onto a database a server is running on are refused, name the server's process and
/// change nothing. Once the server is gone, even killed, the database opens again.
#[test]
fn a_served_sqlite_database_is_refused_to_a_second_process() {
    let (dir, server) = Server::up();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}", data.join("chaperone.db").display());
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim();
    ok(server.cli(
        token,
        &["secret", "put", "team/db", "password=-"],
        "kept-41d9",
    ));
    let holder = format!("is in use by process {}", server.child.id());

    // Were it not refused, a second server would run on: it gets 20 s to exit.
    let mut second = Command::new(BIN)
        .args([
            "up",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("CHAPERONE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if second.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if second.try_wait().unwrap().is_none() {
        second.kill().unwrap();
        panic!("a second server started on a database a server is running on");
    }
    let error = fails(second.wait_with_output().unwrap());
    assert!(error.contains(&holder), "{error}");
    let error = fails(run_cli("", "", &["init", "--database-url", &url], ""));
    assert!(error.contains(&holder), "{error}");

    let backup = dir.path().join("backup");
    ok(server.cli(
        token,
        &["backup", backup.to_str().unwrap(), "--database-url", &url],
        "",
    ));
    let key = ok(server.cli(token, &["ledger", "key"], ""));
    let restore = || {
        run_cli(
            "",
            "",
            &[
                "restore",
                backup.to_str().unwrap(),
                "--database-url",
                &url,
                "--key",
                key.trim(),
                "--force",
            ],
            "",
        )
    };
    let error = fails(restore());
    assert!(error.contains(&holder), "{error}");
    let names = |dir: &Path| -> Vec<String> {
        common::files_in(dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert!(
        !names(&data)
            .iter()
            .any(|n| n.contains("replaced") || n.contains("restoring")),
        "{:?}",
        names(&data)
    );
    let read = ok(server.cli(
        token,
        &["secret", "get", "team/db", "--field", "password"],
        "",
    ));
    assert_eq!(read.trim(), "kept-41d9");

    // A killed server leaves no lock behind: the kernel drops it with the process.
    server.kill();
    let restored = ok(restore());
    assert!(restored.contains("Verified"), "{restored}");
    let server = Server::start(
        &[
            "up",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
        &[],
    );
    let read = ok(server.cli(
        token,
        &["secret", "get", "team/db", "--field", "password"],
        "",
    ));
    assert_eq!(read.trim(), "kept-41d9");
}

/// `chaperone init` on `url` (5 shares, threshold 3): the shares and the admin token.
fn init(url: &str) -> (Vec<String>, String) {
    let out = ok(run_cli(
        "",
        "",
        &[
            "init",
            "--shares",
            "5",
            "--threshold",
            "3",
            "--database-url",
            url,
        ],
        "",
    ));
    let shares = shares_in(&out);
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("Initial admin token: "))
        .unwrap()
        .trim()
        .to_owned();
    (shares, token)
}

fn serve(url: &str, cwd: &Path, shares: &[&str]) -> Server {
    let server = Server::start(
        &["server", "--database-url", url, "--listen", "127.0.0.1:0"],
        cwd,
        &[],
    );
    ok(server.cli("", &["unseal"], &format!("{}\n", shares.join("\n"))));
    server
}

fn read_value(agent: &ureq::Agent, server: &Server, token: &str, path: &str) -> Option<String> {
    let mut response = agent
        .get(format!("{}/api/v1/secrets/data/{path}", server.addr))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    if response.status() != 200 {
        return None;
    }
    let body: serde_json::Value = response.body_mut().read_json().unwrap();
    body["data"]["v"].as_str().map(str::to_owned)
}

/// Writes while `chaperone backup` runs, restores into `target`, and checks that every write
/// acknowledged before the backup started is there, that nothing after it ended is, and
/// that the ledger verified.
fn backup_during_writes(source: &str, target: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let (shares, token) = init(source);
    let shares: Vec<&str> = shares.iter().map(String::as_str).take(3).collect();
    let server = serve(source, dir.path(), &shares);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acknowledged, stop, agent) = (acknowledged.clone(), stop.clone(), agent.clone());
        let (url, token) = (server.addr.clone(), token.clone());
        std::thread::spawn(move || {
            for i in 0..5_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let response = agent
                    .put(format!("{url}/api/v1/secrets/data/load/k{i}"))
                    .header("Authorization", format!("Bearer {token}"))
                    .send_json(serde_json::json!({ "data": { "v": format!("value-{i}") } }))
                    .unwrap();
                assert_eq!(response.status(), 200);
                acknowledged.lock().unwrap().push(i);
            }
        })
    };
    while acknowledged.lock().unwrap().len() < 30 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = acknowledged.lock().unwrap().len();
    let out = dir.path().join("backup");
    let report = ok(server.cli(
        &token,
        &["backup", out.to_str().unwrap(), "--database-url", source],
        "",
    ));
    let after = acknowledged.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(report.contains("Backed up"), "{report}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["ledger"]["size"].as_u64().unwrap() > before as u64);
    let key = ok(server.cli(&token, &["ledger", "key"], ""));
    let key = key.trim();
    server.kill();

    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            out.to_str().unwrap(),
            "--database-url",
            target,
            "--key",
            key,
        ];
        args.extend_from_slice(extra);
        run_cli("", "", &args, "")
    };
    // A journal left without its database (the database deleted, the journal not) is
    // moved aside, not replayed onto the restored file.
    let stray = target
        .strip_prefix("sqlite://")
        .map(|path| std::path::PathBuf::from(format!("{path}-wal")));
    if let Some(stray) = &stray {
        std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
        std::fs::write(stray, b"a journal of another database").unwrap();
    }
    let restored = ok(restore(&[]));
    assert!(
        restored.contains("Verified: the signed statement"),
        "{restored}"
    );
    // Dated by the server's signature, not by the manifest, which anyone could edit; and
    // by the newest entry, which the signed root covers.
    assert!(
        restored.contains("Restored the backup signed by the server at 20"),
        "{restored}"
    );
    assert!(
        restored.contains("Its newest ledger entry was recorded at 20"),
        "{restored}"
    );
    if let Some(stray) = &stray {
        let dir = stray.parent().unwrap();
        let kept = std::fs::read_dir(dir).unwrap().flatten().find(|e| {
            let name = e.file_name().into_string().unwrap();
            name.contains(".replaced-") && name.ends_with("-wal")
        });
        let kept = kept.expect("the stray journal was moved aside");
        assert_eq!(
            std::fs::read(kept.path()).unwrap(),
            b"a journal of another database"
        );
    }
    // A second restore over the now-full target is refused.
    let again = fails(restore(&[]));
    assert!(
        again.contains("--force") || again.contains("not empty"),
        "{again}"
    );
    if target.starts_with("postgres") {
        a_database_the_restorer_cannot_read_is_not_empty(&out, key);
    }
    // Forced, twice in the same second: each replaced database is kept, under a name of its
    // own.
    if let Some(path) = target.strip_prefix("sqlite://") {
        let dir = std::path::Path::new(path).parent().unwrap();
        let kept = || {
            std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .filter(|e| {
                    let name = e.file_name().into_string().unwrap();
                    name.contains(".replaced-")
                        && !name.ends_with("-wal")
                        && !name.ends_with("-shm")
                })
                .count()
        };
        let kept_before = kept();
        ok(restore(&["--force"]));
        ok(restore(&["--force"]));
        assert_eq!(kept(), kept_before + 2);
        // Into a bare file name, in the directory the command runs in.
        let here = tempfile::tempdir().unwrap();
        let bare = Command::new(BIN)
            .current_dir(here.path())
            .env("XDG_CONFIG_HOME", here.path())
            .args([
                "restore",
                out.to_str().unwrap(),
                "--database-url",
                "sqlite://restored.db",
                "--key",
                key,
            ])
            .output()
            .unwrap();
        assert!(
            bare.status.success(),
            "{}",
            String::from_utf8_lossy(&bare.stderr)
        );
        assert!(here.path().join("restored.db").exists());
    }

    // The restored database opens with the same shares and holds every acknowledged write
    // from before the backup, and none made after it finished.
    let server = serve(target, dir.path(), &shares);
    for i in 0..before {
        assert_eq!(
            read_value(&agent, &server, &token, &format!("load/k{i}")).as_deref(),
            Some(format!("value-{i}").as_str()),
            "write {i} was acknowledged before the backup"
        );
    }
    let total = acknowledged.lock().unwrap().len();
    for i in after..total {
        assert_eq!(
            read_value(&agent, &server, &token, &format!("load/k{i}")),
            None,
            "write {i} came after the backup"
        );
    }
    // The restored server extends the restored ledger: its next checkpoint is consistent.
    let checkpoint = agent
        .get(format!("{}/api/v1/ledger/checkpoint", server.addr))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(checkpoint.status(), 200);
}

#[test]
fn backup_during_writes_and_restore_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let source = format!("sqlite://{}", dir.path().join("live.db").display());
    let target = format!(
        "sqlite://{}",
        dir.path().join("restored/chaperone.db").display()
    );
    backup_during_writes(&source, &target);
}

/// A role that owns a database's `public` schema but was granted nothing on its tables sees
/// none of them in `information_schema`; the restore must still find the database in use,
/// refuse it, and leave it alone.
fn a_database_the_restorer_cannot_read_is_not_empty(backup: &Path, key: &str) {
    let live = common::Db::postgres().unwrap();
    let role = format!("restorer_{}", live.url.rsplit('_').next().unwrap());
    let (scheme_user, rest) = live.url.split_once('@').unwrap();
    let (scheme, _) = scheme_user.split_once("://").unwrap();
    let database = live.url.rsplit('/').next().unwrap();
    common::sql(
        &live.url,
        &[
            &format!("CREATE ROLE {role} LOGIN"),
            &format!("ALTER DATABASE {database} OWNER TO {role}"),
            &format!("ALTER SCHEMA public OWNER TO {role}"),
            "CREATE TABLE public.payroll (id INTEGER)",
            "REVOKE ALL ON public.payroll FROM PUBLIC",
            "INSERT INTO public.payroll VALUES (1)",
        ],
    );
    let as_restorer = format!("{scheme}://{role}@{rest}");
    let refused = fails(run_cli(
        "",
        "",
        &[
            "restore",
            backup.to_str().unwrap(),
            "--database-url",
            &as_restorer,
            "--key",
            key,
        ],
        "",
    ));
    assert!(refused.contains("not empty"), "{refused}");
    common::sql(&live.url, &["SELECT id FROM public.payroll"]);
}

#[test]
fn backup_during_writes_and_restore_on_postgres() {
    let (Some(source), Some(target)) = (common::Db::postgres(), common::Db::postgres()) else {
        return;
    };
    backup_during_writes(&source.url, &target.url);
}

#[test]
fn a_tampered_backup_is_refused_and_the_target_left_alone() {
    let (dir, server) = Server::up();
    let data = dir.path().join("data");
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim();
    for i in 0..5 {
        ok(server.cli(token, &["secret", "put", &format!("t/s{i}"), "v=x"], ""));
    }
    let out = dir.path().join("backup");
    // With --data, the directory's admin token asks the server to sign the manifest.
    ok(run_cli(
        &server.addr,
        "",
        &[
            "backup",
            out.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        "",
    ));
    // Into an existing directory: refused.
    let error = fails(server.cli(
        token,
        &[
            "backup",
            out.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        "",
    ));
    assert!(error.contains("new directory"), "{error}");
    let key = ok(server.cli(token, &["ledger", "key"], ""));
    let key = key.trim().to_owned();
    // Another server's key, for a restore that must refuse it.
    let (_other_dir, other) = Server::up();
    let other_token = std::fs::read_to_string(_other_dir.path().join("data/admin.token")).unwrap();
    let other_key = ok(other.cli(other_token.trim(), &["ledger", "key"], ""));
    server.kill();

    let target = dir.path().join("restored");
    let restore = |key: &str| {
        run_cli(
            "",
            "",
            &[
                "restore",
                out.to_str().unwrap(),
                "--data",
                target.to_str().unwrap(),
                "--key",
                key,
            ],
            "",
        )
    };
    let error = fails(restore(other_key.trim()));
    assert!(error.contains("not signed by the ledger key"), "{error}");

    // A flipped byte in the snapshot: the copy's hash no longer matches the signed one.
    let snapshot = out.join("chaperone.db");
    let original = std::fs::read(&snapshot).unwrap();
    let mut bytes = original.clone();
    let last = bytes.len() - 100;
    bytes[last] ^= 1;
    std::fs::write(&snapshot, &bytes).unwrap();
    let error = fails(restore(&key));
    assert!(
        error.contains("does not match the signed statement"),
        "{error}"
    );
    assert!(!target.join("chaperone.db").exists());

    // A snapshot swapped for a link to a file that never ends: refused before a byte is
    // copied, and nothing staged is left behind.
    std::fs::remove_file(&snapshot).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &snapshot).unwrap();
    let error = fails(restore(&key));
    assert!(error.contains("regular files only"), "{error}");
    let left: Vec<_> = std::fs::read_dir(&target)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| n.to_string_lossy().ends_with(".lock")),
        "something was staged: {left:?}"
    );
    std::fs::remove_file(&snapshot).unwrap();

    // An admin token planted in the snapshot, with the manifest's hash "fixed" to match:
    // the manifest no longer matches the statement the server signed.
    std::fs::write(&snapshot, &original).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", snapshot.display()))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO tokens (id, token_hash, name, role, created_at) \
             VALUES ('tok_planted', x'00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'planted', 'admin', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
    let manifest_path = out.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let bytes = std::fs::read(&snapshot).unwrap();
    manifest["sha256"] = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into();
    manifest["bytes"] = bytes.len().into();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let error = fails(restore(&key));
    assert!(
        error.contains("does not match the statement signed for it"),
        "{error}"
    );
    assert!(!target.join("chaperone.db").exists(), "nothing restored");
    // Only the database's lock file, which is never removed, stays.
    let leftovers: Vec<_> = std::fs::read_dir(&target)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.iter().all(|name| name == "chaperone.db.lock"),
        "no staging file left behind: {leftovers:?}"
    );

    // A backup without its manifest (one that was killed) is named as incomplete, and no
    // backup leaves its work directory behind.
    std::fs::remove_file(&manifest_path).unwrap();
    let error = fails(restore(&key));
    assert!(error.contains("not a complete backup"), "{error}");
    let partial: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|name| name.contains(".partial-"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");

    // Without a key there is no restore at all.
    let error = fails(run_cli(
        "",
        "",
        &[
            "restore",
            out.to_str().unwrap(),
            "--data",
            target.to_str().unwrap(),
        ],
        "",
    ));
    assert!(error.contains("--key"), "{error}");
}

#[test]
fn rekey_issues_new_shares_and_retires_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let (shares, token) = init(&url);
    let old: Vec<&str> = shares.iter().map(String::as_str).collect();
    let server = serve(&url, dir.path(), &old[..3]);
    ok(server.cli(
        &token,
        &["secret", "put", "prod/db", "password=before-rekey"],
        "",
    ));

    // Shares of another initialisation do not open this root key; nothing changes.
    let other_dir = tempfile::tempdir().unwrap();
    let other_url = format!("sqlite://{}", other_dir.path().join("other.db").display());
    let (foreign, _) = init(&other_url);
    let error = fails(server.cli(
        &token,
        &["operator", "rekey", "--shares", "3", "--threshold", "2"],
        &format!("{}\n", foreign[..3].join("\n")),
    ));
    assert!(error.contains("do not open"), "{error}");
    // Too few current shares: nothing is sent.
    let error = fails(server.cli(
        &token,
        &["operator", "rekey", "--shares", "3", "--threshold", "2"],
        &format!("{}\n", old[..2].join("\n")),
    ));
    assert!(error.contains("2 of 3"), "{error}");
    // The same share twice is named as such, not taken for a wrong share.
    let error = fails(server.cli(
        &token,
        &["operator", "rekey", "--shares", "3", "--threshold", "2"],
        &format!("{}\n{}\n{}\n", old[0], old[1], old[0]),
    ));
    assert!(error.contains("was given twice"), "{error}");

    // A first step whose new shares never come back changes nothing.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |path: &str, body: serde_json::Value| {
        let mut response = agent
            .post(format!("{}/api/v1/{path}", server.addr))
            .header("Authorization", format!("Bearer {token}"))
            .send_json(body)
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response
                .body_mut()
                .read_json::<serde_json::Value>()
                .unwrap(),
        )
    };
    let (status, started) = post(
        "sys/rekey",
        serde_json::json!({ "current_shares": &old[..3], "shares": 3, "threshold": 2 }),
    );
    assert_eq!(status, 200, "{started}");
    let unused: Vec<String> = started["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    let (status, answer) = post(
        "sys/rekey/verify",
        serde_json::json!({ "nonce": "0000", "shares": &unused[..2] }),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("no_rekey"))
    );
    // A second rekey does not replace the one waiting: the holders of its shares would hold
    // shares that never come into force.
    let (status, answer) = post(
        "sys/rekey",
        serde_json::json!({ "current_shares": &old[..3], "shares": 3, "threshold": 2 }),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("rekey_pending")),
        "{answer}"
    );
    // Shares that are not the new ones are named as such, and the rekey keeps waiting.
    let (status, answer) = post(
        "sys/rekey/verify",
        serde_json::json!({ "nonce": started["nonce"], "shares": &old[..2] }),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_share")),
        "{answer}"
    );
    // So is a share of another split given beyond the quorum.
    let (status, answer) = post(
        "sys/rekey/verify",
        serde_json::json!({ "nonce": started["nonce"],
                            "shares": [&unused[0], &unused[1], old[2]] }),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_share")),
        "{answer}"
    );
    ok(server.cli(&token, &["seal"], ""));
    ok(server.cli("", &["unseal"], &format!("{}\n", old[..3].join("\n"))));
    // Sealing dropped the waiting rekey: its shares cannot complete it any more.
    let (status, answer) = post(
        "sys/rekey/verify",
        serde_json::json!({ "nonce": started["nonce"], "shares": &unused[..2] }),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("no_rekey"))
    );

    // Written to a pipe, the new shares are not put in force by the first step: they could
    // have been lost on the way (`| head -4`). Sealed, the server still opens with the
    // current shares, and a verification with a wrong share changes nothing.
    let out = first_step(
        &server,
        &token,
        &format!("{}\n{}\n{}\n", old[0], old[1], old[2]),
        3,
        2,
    );
    let nonce = out
        .lines()
        .find_map(|l| l.strip_prefix("Rekey nonce: "))
        .unwrap()
        .to_owned();
    let lost = shares_in(&out);
    let error = fails(server.cli(
        &token,
        &["operator", "rekey", "--verify", &nonce],
        &format!("{}\n{}\n", lost[0], old[1]),
    ));
    assert!(error.contains("NOT put in force"), "{error}");
    ok(server.cli(&token, &["seal"], ""));
    ok(server.cli("", &["unseal"], &format!("{}\n", old[2..5].join("\n"))));

    let wrapping = || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::Connection as _;
            let url = format!("sqlite://{}?mode=ro", dir.path().join("keys.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let bytes: Vec<u8> = sqlx::query_scalar("SELECT wrapped_root_key FROM keyring")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
            bytes
        })
    };
    let old_wrapping = wrapping();
    let new = rekey(
        &server,
        &token,
        &format!("{}\n{}\n{}\n", old[4], old[1], old[3]),
        3,
        2,
    );
    assert_eq!(new.len(), 3);
    // The new shares are stored nowhere, and the old wrapping of the root key, which the
    // old shares open, is gone from the files: the write-ahead log too.
    let db = std::fs::read(dir.path().join("keys.db")).unwrap();
    assert!(!db.windows(20).any(|w| w == &new[0].as_bytes()[5..25]));
    assert_ne!(wrapping(), old_wrapping);
    for file in ["keys.db", "keys.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(32).any(|w| w == &old_wrapping[..32]),
            "the old wrapping is still in {file}"
        );
    }

    // Sealed, the old shares no longer unseal; two new shares do.
    ok(server.cli(&token, &["seal"], ""));
    let error = fails(server.cli("", &["unseal"], &format!("{}\n", old[..3].join("\n"))));
    assert!(error.contains("the server needs 2"), "{error}");
    ok(server.cli("", &["unseal"], &format!("{}\n{}\n", new[2], new[0])));

    // Back to a 5-of-3 split: the original shares have the right shape again, and still
    // open nothing.
    let new = rekey(&server, &token, &format!("{}\n{}\n", new[0], new[1]), 5, 3);
    assert_eq!(new.len(), 5);
    ok(server.cli(&token, &["seal"], ""));
    let error = fails(server.cli("", &["unseal"], &format!("{}\n", old[..3].join("\n"))));
    assert!(
        error.contains("not one of this server's unseal shares"),
        "{error}"
    );
    ok(server.cli(
        "",
        &["unseal"],
        &format!("{}\n{}\n{}\n", new[4], new[0], new[2]),
    ));
    let value = ok(server.cli(
        &token,
        &["secret", "get", "prod/db", "--field", "password"],
        "",
    ));
    assert_eq!(value.trim(), "before-rekey");

    // A restarted server needs the new shares too.
    server.kill();
    let server = serve(
        &url,
        dir.path(),
        &[new[0].as_str(), new[1].as_str(), new[3].as_str()],
    );
    let value = ok(server.cli(
        &token,
        &["secret", "get", "prod/db", "--field", "password"],
        "",
    ));
    assert_eq!(value.trim(), "before-rekey");

    // The rekey and the refused attempt are in the ledger, without any share.
    let ledger = ok(server.cli(&token, &["ledger", "search", "--action", "sys.rekey"], ""));
    assert!(
        ledger.contains("success") && ledger.contains("failure"),
        "{ledger}"
    );
    for share in old.iter().copied().chain(new.iter().map(String::as_str)) {
        assert!(!ledger.contains(share));
    }

    // `chaperone up` servers unseal from their key file and cannot be rekeyed.
    let (up_dir, up) = Server::up();
    let up_token = std::fs::read_to_string(up_dir.path().join("data/admin.token")).unwrap();
    let error = fails(up.cli(
        up_token.trim(),
        &["operator", "rekey", "--shares", "3", "--threshold", "2"],
        "",
    ));
    assert!(error.contains("key file"), "{error}");
}

#[test]
fn rotate_from_the_cli_waits_for_the_rewrapping() {
    let (dir, server) = Server::up();
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let token = token.trim();
    for i in 0..20 {
        ok(server.cli(
            token,
            &["secret", "put", &format!("r/s{i}"), &format!("v=value-{i}")],
            "",
        ));
    }
    let out = ok(server.cli(token, &["operator", "rotate"], ""));
    assert!(out.contains("generation 1 started"), "{out}");
    assert!(out.contains("wrapped under generation 1 or later"), "{out}");
    let status = ok(server.cli(token, &["operator", "rotate", "--status"], ""));
    assert!(status.contains("Generation 1;"), "{status}");
    for i in 0..20 {
        let value = ok(server.cli(
            token,
            &["secret", "get", &format!("r/s{i}"), "--field", "v"],
            "",
        ));
        assert_eq!(value.trim(), format!("value-{i}"));
    }
}

/// Two unsealed nodes on one new PostgreSQL database (initialised with 5 shares, 3 needed):
/// the database, the shares, the initial admin token and the nodes.
fn two_nodes() -> Option<(Db, Vec<String>, String, Server, Server)> {
    let db = Db::postgres()?;
    let (shares, token) = init(&db.url);
    let quorum: Vec<&str> = shares[..3].iter().map(String::as_str).collect();
    let a = serve(&db.url, db.dir.path(), &quorum);
    let b = serve(&db.url, db.dir.path(), &quorum);
    Some((db, shares, token, a, b))
}

#[test]
fn a_rekey_on_one_node_is_the_one_every_node_checks_on_postgres() {
    let Some((_db, shares, token, a, b)) = two_nodes() else {
        return;
    };
    let old: Vec<&str> = shares.iter().map(String::as_str).collect();
    let new = rekey(&a, &token, &format!("{}\n", old[..3].join("\n")), 3, 2);
    assert_eq!(new.len(), 3);
    // Node B was unsealed before the rekey: it checks the shares it is given against the
    // stored wrapping, so the new shares work there and the retired ones do not. Its seal
    // status follows within a second or so.
    let threshold = || -> serde_json::Value {
        ureq::get(format!("{}/api/v1/sys/seal-status", b.addr))
            .call()
            .unwrap()
            .body_mut()
            .read_json::<serde_json::Value>()
            .unwrap()["threshold"]
            .clone()
    };
    let followed = (0..50).any(|_| {
        let done = threshold() == 2;
        if !done {
            std::thread::sleep(Duration::from_millis(200));
        }
        done
    });
    assert!(followed, "{}", threshold());
    let error = fails(b.cli(
        &token,
        &["operator", "rekey", "--shares", "3", "--threshold", "2"],
        &format!("{}\n", old[..3].join("\n")),
    ));
    assert!(
        error.contains("2 of 3") || error.contains("do not open"),
        "{error}"
    );
    let newer = rekey(&b, &token, &format!("{}\n{}\n", new[0], new[2]), 3, 2);
    assert_eq!(newer.len(), 3);

    // A sealed node holding a share of the old split tells its holders the split in force
    // once another node rekeys, and has dropped the share given for the old one.
    ok(b.cli(&token, &["seal"], ""));
    ok(b.cli("", &["unseal"], &format!("{}\n", newer[0])));
    rekey(&a, &token, &format!("{}\n{}\n", newer[0], newer[1]), 5, 4);
    let status: serde_json::Value = ureq::get(format!("{}/api/v1/sys/seal-status", b.addr))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(
        (
            &status["sealed"],
            &status["shares"],
            &status["threshold"],
            &status["progress"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!(5),
            &serde_json::json!(4),
            &serde_json::json!(0)
        ),
        "{status}"
    );
}

/// The first step of `chaperone operator rekey` with its output to a pipe: it prints the new
/// shares and the nonce, and fails (on stderr too), since nothing is in force yet; its
/// standard output.
fn first_step(server: &Server, token: &str, current: &str, shares: u8, threshold: u8) -> String {
    let (shares, threshold) = (shares.to_string(), threshold.to_string());
    let output = server.cli(
        token,
        &[
            "operator",
            "rekey",
            "--shares",
            &shares,
            "--threshold",
            &threshold,
        ],
        current,
    );
    let (stdout, stderr) = (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    );
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Not in force yet"), "{stdout}");
    assert!(stderr.contains("NOT in force yet"), "{stderr}");
    stdout
}

/// `chaperone operator rekey` as a script runs it, its output to a pipe: the new shares,
/// put in force by `--verify` with the first step's own output on stdin.
fn rekey(server: &Server, token: &str, current: &str, shares: u8, threshold: u8) -> Vec<String> {
    let out = first_step(server, token, current, shares, threshold);
    let nonce = out
        .lines()
        .find_map(|l| l.strip_prefix("Rekey nonce: "))
        .expect("the first step names its nonce");
    let done = ok(server.cli(token, &["operator", "rekey", "--verify", nonce], &out));
    assert!(done.contains("Rekeyed"), "{done}");
    shares_in(&out)
}

#[test]
fn a_node_waiting_out_a_rotation_follows_a_newer_one_on_postgres() {
    let Some((_db, _, token, a, b)) = two_nodes() else {
        return;
    };
    ok(a.cli(&token, &["secret", "put", "r/s", "v=value"], ""));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let call = |server: &Server, post: bool| -> (u16, serde_json::Value) {
        let url = format!("{}/api/v1/sys/rotate", server.addr);
        let auth = format!("Bearer {token}");
        let mut answer = if post {
            agent.post(&url).header("Authorization", &auth).send_empty()
        } else {
            agent.get(&url).header("Authorization", &auth).call()
        }
        .unwrap();
        let status = answer.status().as_u16();
        (status, answer.body_mut().read_json().unwrap())
    };
    let until = |what: &dyn Fn() -> bool| {
        (0..100).any(|_| {
            let done = what();
            if !done {
                std::thread::sleep(Duration::from_millis(100));
            }
            done
        })
    };
    // A starts generation 1; on PostgreSQL its pass then waits out the cluster grace
    // (two minutes) before it may record the generation complete.
    assert_eq!(call(&a, true).0, 200);
    assert!(until(&|| call(&a, false).1["progress"]["target"] == 1));
    // B, once it has followed generation 1, starts generation 2.
    assert!(until(&|| {
        let (status, answer) = call(&b, true);
        status == 200 && answer["generation"] == 2
    }));
    // A leaves its wait at once and works for generation 2, not after the grace.
    assert!(
        until(&|| call(&a, false).1["progress"]["target"] == 2),
        "{}",
        call(&a, false).1
    );
    let value = ok(a.cli(&token, &["secret", "get", "r/s", "--field", "v"], ""));
    assert_eq!(value.trim(), "value");
}

#[test]
fn init_stores_nothing_when_the_shares_cannot_be_written_out() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("init.db").display());
    // Standard output closed before anything is written: the shares would reach nobody.
    let mut child = Command::new(BIN)
        .args([
            "init",
            "--shares",
            "3",
            "--threshold",
            "2",
            "--database-url",
            &url,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let failed = child.wait_with_output().unwrap();
    assert!(!failed.status.success());
    let error = String::from_utf8_lossy(&failed.stderr);
    assert!(error.contains("nothing was initialised"), "{error}");
    // So the database can still be initialised, and its shares are the ones printed.
    let (shares, _) = init(&url);
    assert_eq!(shares.len(), 5);
}

#[test]
fn up_on_a_database_made_by_init_says_how_to_run_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chaperone.db").display());
    init(&url);
    let error = fails(run_cli(
        "",
        "",
        &["up", "--data", dir.path().to_str().unwrap()],
        "",
    ));
    assert!(
        error.contains("made by `chaperone init`") && error.contains("chaperone unseal"),
        "{error}"
    );
}

/// `up` keeps its keys where nobody else can swap or redirect them: it refuses a data
/// directory others may write, a key file whose database is gone (starting anew would write
/// over the key that opens it), and a link where it writes a key or token.
#[test]
fn up_refuses_a_directory_others_may_write_and_never_writes_over_a_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = |data: &std::path::Path| {
        fails(run_cli(
            "",
            "",
            &[
                "up",
                "--data",
                data.to_str().unwrap(),
                "--listen",
                "127.0.0.1:1",
            ],
            "",
        ))
    };
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = up(&data);
    assert!(error.contains("can be written by other users"), "{error}");
    assert!(!data.join("unseal.key").exists());

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        data.join("unseal.key"),
        "the key of a database moved away\n",
    )
    .unwrap();
    let error = up(&data);
    assert!(
        error.contains("holds unseal.key but no chaperone.db"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("unseal.key")).unwrap(),
        "the key of a database moved away\n"
    );

    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, fresh.join("admin.token")).unwrap();
    let error = up(&fresh);
    assert!(error.contains("admin.token"), "{error}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
}

#[test]
fn a_backup_with_a_configuration_file_asks_the_server_it_describes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chaperone.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("chaperone.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{url}\"\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (shares, token) = init(&url);
    let server = Server::start(&["server", "--config", config], dir.path(), &[]);
    ok(server.cli("", &["unseal"], &format!("{}\n", shares[..3].join("\n"))));
    ok(server.cli(&token, &["secret", "put", "b/x", "v=1"], ""));
    // No --addr and no CHAPERONE_ADDR: the file's `listen` names the server, not the
    // default address.
    let out = dir.path().join("backup");
    ok(run_cli(
        "",
        &token,
        &["backup", out.to_str().unwrap(), "--config", config],
        "",
    ));
    assert!(out.join("manifest.json").exists());
}

#[test]
fn init_refuses_a_bad_split_before_it_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let url = format!("sqlite://{}", db.display());
    let error = fails(run_cli(
        "",
        "",
        &[
            "init",
            "--shares",
            "3",
            "--threshold",
            "1",
            "--database-url",
            &url,
        ],
        "",
    ));
    assert!(error.contains("threshold 1"), "{error}");
    assert!(!db.exists(), "nothing was created");
}

/// A limit of open files that cannot hold `max_connections` lowers it, and the log says so:
/// past the limit, `accept` and the database's own files would fail for everyone.
#[test]
fn a_small_limit_of_open_files_lowers_max_connections() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 300 && exec \"$0\" up --data data --listen 127.0.0.1:0")
        .arg(BIN)
        .current_dir(dir.path())
        .env("CHAPERONE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let listening = lines.any(|line| line.unwrap().starts_with("Listening on"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(listening, "{}", std::fs::read_to_string(&log_path).unwrap());
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("the limit of open files holds fewer connections than max_connections"),
        "{logged}"
    );
    // Without the terminal's colours, whichever way the log is written.
    let mut plain = String::new();
    let mut escape = false;
    for c in logged.chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    assert!(
        plain.contains("lowered_to=44") || plain.contains("\"lowered_to\":44"),
        "300 files less 256 kept aside: {plain}"
    );
}
