//! End-to-end tests through the built `chaperone` binary: a real server process on
//! 127.0.0.1 and a free port, driven by the real CLI.

mod common;

use std::io::Write as _;
use std::process::Command;

use common::{BIN, Server, fails, files_in, mode, ok, run_cli, run_cli_with};

#[test]
fn quick_start_tour_survives_a_restart_and_stores_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = [
        "up",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    let server = Server::start(&up, dir.path(), &[]);
    assert!(
        server.banner.contains("evaluation only"),
        "{}",
        server.banner
    );
    assert!(server.banner.contains("unseal.key"), "{}", server.banner);
    // The keys in its memory never reach a core file.
    #[cfg(target_os = "linux")]
    {
        let limits =
            std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert_eq!(
            core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
            ["0", "0"],
            "{core}"
        );
    }
    #[cfg(unix)]
    for file in ["unseal.key", "admin.token", "chaperone.db"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim();
    assert!(token.starts_with("chp_"));

    // Values that must never appear in the database files.
    let first = "first-Wq8vNfH2kZ";
    let second = "second-Lm3xPq9rTb";
    let from_file = "file-Jd7sKa2mPq";
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, from_file).unwrap();

    let put = ok(server.cli(
        token,
        &["secret", "put", "team/db", "password=-", "user=app"],
        &format!("{first}\n"),
    ));
    assert!(put.contains("version 1"), "{put}");
    let cert_arg = format!("cert=@{}", cert.display());
    ok(server.cli(
        token,
        &[
            "secret",
            "put",
            "team/db",
            "password=-",
            &cert_arg,
            "--cas",
            "1",
        ],
        second,
    ));
    // A stale check-and-set is refused and changes nothing.
    let err = fails(server.cli(
        token,
        &["secret", "put", "team/db", "password=x", "--cas", "1"],
        "",
    ));
    assert!(
        err.contains("check-and-set") && err.contains("cas_mismatch"),
        "{err}"
    );
    let err = fails(server.cli(
        token,
        &["secret", "put", "team/db", "password=x", "--cas", "0"],
        "",
    ));
    assert!(err.contains("check-and-set"), "{err}");
    ok(server.cli(
        token,
        &["secret", "put", "team/other", "k=v", "--cas", "0"],
        "",
    ));

    let get = |args: &[&str]| ok(server.cli(token, args, ""));
    assert_eq!(
        get(&["secret", "get", "team/db", "--field", "password"]).trim(),
        second
    );
    assert_eq!(
        get(&["secret", "get", "team/db", "--field", "cert"]).trim(),
        from_file
    );
    assert_eq!(
        get(&[
            "secret",
            "get",
            "team/db",
            "--version",
            "1",
            "--field",
            "password"
        ])
        .trim(),
        first
    );
    let json: serde_json::Value =
        serde_json::from_str(&get(&["secret", "get", "team/db", "--format", "json"])).unwrap();
    assert_eq!(json["version"], 2);
    assert_eq!(json["data"]["user"], serde_json::Value::Null);
    assert_eq!(
        get(&["secret", "list"]).lines().collect::<Vec<_>>(),
        ["team/"]
    );
    assert_eq!(
        get(&["secret", "list", "team"]).lines().collect::<Vec<_>>(),
        ["db", "other"]
    );

    // Soft delete hides the version; undelete restores it; destroy removes its data.
    ok(server.cli(token, &["secret", "delete", "team/db"], ""));
    let err = fails(server.cli(token, &["secret", "get", "team/db"], ""));
    assert!(err.contains("version_deleted"), "{err}");
    ok(server.cli(
        token,
        &["secret", "undelete", "team/db", "--versions", "2"],
        "",
    ));
    assert_eq!(
        get(&["secret", "get", "team/db", "--field", "password"]).trim(),
        second
    );
    ok(server.cli(
        token,
        &["secret", "destroy", "team/db", "--versions", "1"],
        "",
    ));
    let err = fails(server.cli(token, &["secret", "get", "team/db", "--version", "1"], ""));
    assert!(err.contains("version_destroyed"), "{err}");
    let history = get(&["secret", "history", "team/db"]);
    assert!(
        history
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("destroyed")),
        "{history}"
    );
    assert!(
        history
            .lines()
            .any(|l| l.starts_with("2 ") && l.contains("active")),
        "{history}"
    );

    // Metadata: keys set and removed one by one, the others kept.
    ok(server.cli(
        token,
        &[
            "secret",
            "metadata",
            "team/db",
            "--set",
            "owner=ann",
            "--set",
            "team=payments",
        ],
        "",
    ));
    ok(server.cli(
        token,
        &[
            "secret",
            "metadata",
            "team/db",
            "--unset",
            "team",
            "--max-versions",
            "5",
        ],
        "",
    ));
    let meta: serde_json::Value =
        serde_json::from_str(&get(&["secret", "metadata", "team/db"])).unwrap();
    assert_eq!(
        meta["custom_metadata"],
        serde_json::json!({ "owner": "ann" })
    );
    assert_eq!(meta["max_versions"], 5);
    let err = fails(server.cli(
        token,
        &["secret", "metadata", "team/db", "--set", "Hunter2Secret"],
        "",
    ));
    assert!(
        err.contains("--set 1 ") && !err.contains("Hunter2"),
        "{err}"
    );

    // Bad input gets a clear error.
    let err = fails(server.cli(token, &["secret", "get", "team/../db"], ""));
    assert!(
        err.contains("invalid_path") || err.contains("not_found"),
        "{err}"
    );
    let err = fails(server.cli("chp_wrong", &["secret", "list"], ""));
    assert!(err.contains("invalid token"), "{err}");
    let err = fails(server.cli("", &["secret", "list"], ""));
    assert!(err.contains("CHAPERONE_TOKEN"), "{err}");

    // A hard kill loses nothing that was acknowledged.
    server.kill();
    for file in files_in(&data) {
        let bytes = std::fs::read(&file).unwrap();
        for value in [first, second, from_file] {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "{value} found in plaintext in {}",
                file.display()
            );
        }
    }
    // A key or token loosened to others' eyes since is named at the restart.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let readable = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(data.join("unseal.key"), readable).unwrap();
    }
    let log = dir.path().join("restart.log");
    let server = Server::start_logging(&up, dir.path(), &[], std::fs::File::create(&log).unwrap());
    assert!(server.banner.contains("Opened"), "{}", server.banner);
    #[cfg(unix)]
    {
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.contains("the unseal key can be read by other users"),
            "{logged}"
        );
        assert!(!logged.contains("the admin token can be read"), "{logged}");
    }
    assert_eq!(
        ok(server.cli(
            token,
            &["secret", "get", "team/db", "--field", "password"],
            ""
        ))
        .trim(),
        second
    );
    assert_eq!(
        ok(server.cli(
            token,
            &[
                "secret",
                "get",
                "team/db",
                "--version",
                "2",
                "--field",
                "cert"
            ],
            ""
        ))
        .trim(),
        from_file
    );
}

#[test]
fn production_mode_starts_sealed_and_unseals_with_a_threshold_of_shares() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chaperone.toml");
    let db = dir.path().join("prod.db");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let init = ok(run_cli(
        "",
        "",
        &[
            "init",
            "--shares",
            "5",
            "--threshold",
            "3",
            "--config",
            config,
        ],
        "",
    ));
    let shares: Vec<&str> = init
        .lines()
        .filter_map(|l| l.strip_prefix("Unseal share "))
        .map(|l| l.split(": ").nth(1).unwrap())
        .collect();
    assert_eq!(shares.len(), 5, "{init}");
    let token = init
        .lines()
        .find_map(|l| l.strip_prefix("Initial admin token: "))
        .unwrap()
        .trim()
        .to_owned();
    // Shares are shown once and stored nowhere.
    let db_bytes = std::fs::read(&db).unwrap();
    assert!(
        !db_bytes
            .windows(20)
            .any(|w| w == &shares[0].as_bytes()[5..25])
    );
    let again = fails(run_cli("", "", &["init", "--config", config], ""));
    assert!(again.contains("already initialised"), "{again}");
    assert!(!again.contains("DatabaseUrl("), "{again}");

    let server = Server::start(&["server", "--config", config], dir.path(), &[]);
    assert!(server.banner.contains("sealed"), "{}", server.banner);
    assert!(
        server.banner.contains("Database: sqlite://"),
        "the banner names the database as written: {}",
        server.banner
    );
    let err = fails(server.cli(&token, &["secret", "list"], ""));
    assert!(err.contains("sealed") && err.contains("503"), "{err}");

    // A mistyped share is caught by its checksum.
    let mut typo = shares[0].to_owned();
    let last = typo.pop().unwrap();
    typo.push(if last == 'A' { 'B' } else { 'A' });
    let err = fails(server.cli("", &["unseal"], &format!("{typo}\n")));
    assert!(
        err.contains("checksum") || err.contains("invalid share"),
        "{err}"
    );
    // Shares from another initialisation are refused.
    let other_dir = tempfile::tempdir().unwrap();
    let other_url = format!("sqlite://{}", other_dir.path().join("o.db").display());
    let other = ok(run_cli(
        "",
        "",
        &[
            "init",
            "--shares",
            "3",
            "--threshold",
            "3",
            "--database-url",
            &other_url,
        ],
        "",
    ));
    let foreign = other
        .lines()
        .find_map(|l| l.strip_prefix("Unseal share 1: "))
        .unwrap();
    // Well formed, of the same threshold, and refused before it joins: it does not discard
    // the share given before it (anyone who reaches the server can send one).
    let err = fails(server.cli("", &["unseal"], &format!("{}\n{foreign}\n", shares[0])));
    assert!(
        err.contains("not one of this server's unseal shares"),
        "{err}"
    );
    // Too few shares leave it sealed; the server keeps the progress between calls, the
    // first share included. A holder who gave theirs is done: no error.
    let out = ok(server.cli("", &["unseal"], &format!("{}\n", shares[1])));
    assert!(
        out.contains("still sealed: 1 more share(s) needed"),
        "{out}"
    );
    let err = fails(server.cli("", &["unseal"], ""));
    assert!(err.contains("no share was given"), "{err}");
    let out = ok(server.cli("", &["unseal"], &format!("{}\n", shares[2])));
    assert!(out.contains("Unsealed"), "{out}");

    ok(server.cli(&token, &["secret", "put", "prod/api", "key=k1"], ""));
    assert_eq!(
        ok(server.cli(&token, &["secret", "get", "prod/api", "--field", "key"], "")).trim(),
        "k1"
    );
    ok(server.cli(&token, &["seal"], ""));
    let err = fails(server.cli(&token, &["secret", "get", "prod/api"], ""));
    assert!(err.contains("sealed"), "{err}");
    // Any other three shares unseal it again.
    ok(server.cli(
        "",
        &["unseal"],
        &format!("{}\n{}\n{}\n", shares[0], shares[1], shares[3]),
    ));
    assert_eq!(
        ok(server.cli(&token, &["secret", "get", "prod/api", "--field", "key"], "")).trim(),
        "k1"
    );
    // And through Vault's `sys/unseal` (`bao operator unseal`): the seal status after each
    // share, a reset, and the threshold met.
    ok(server.cli(&token, &["seal"], ""));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let unseal = |body: serde_json::Value| -> (u16, serde_json::Value) {
        let mut answer = agent
            .put(format!("{}/v1/sys/unseal", server.addr))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap())
    };
    let (status, body) = unseal(serde_json::json!({ "key": "chs1-not-a-share" }));
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0].is_string(), "{body}");
    let (status, body) = unseal(serde_json::json!({ "key": shares[4] }));
    assert_eq!(
        (status, &body["sealed"], &body["progress"], &body["t"]),
        (
            200,
            &serde_json::json!(true),
            &serde_json::json!(1),
            &serde_json::json!(3)
        ),
        "{body}"
    );
    // The attempt has a nonce while it holds shares, as in OpenBao.
    let nonce = body["nonce"].as_str().unwrap().to_owned();
    assert_eq!(nonce.len(), 36, "{body}");
    // The same share again (a retry after a lost answer) changes nothing, as in OpenBao.
    let (status, body) = unseal(serde_json::json!({ "key": shares[4] }));
    assert_eq!(
        (status, &body["progress"], body["nonce"].as_str()),
        (200, &serde_json::json!(1), Some(nonce.as_str())),
        "{body}"
    );
    let (_, body) = unseal(serde_json::json!({ "reset": true }));
    assert_eq!(
        (&body["progress"], &body["nonce"]),
        (&serde_json::json!(0), &serde_json::json!("")),
        "{body}"
    );
    // A new attempt is another nonce.
    for share in [shares[2], shares[3]] {
        let (_, body) = unseal(serde_json::json!({ "key": share }));
        assert_ne!(body["nonce"].as_str().unwrap(), nonce, "{body}");
    }
    let (status, body) = unseal(serde_json::json!({ "key": shares[4] }));
    assert_eq!(
        (status, &body["sealed"]),
        (200, &serde_json::json!(false)),
        "{body}"
    );
    assert_eq!(
        ok(server.cli(&token, &["secret", "get", "prod/api", "--field", "key"], "")).trim(),
        "k1"
    );
}

#[test]
fn configuration_errors_name_the_key_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ndatabse_url = \"sqlite://x.db\"\n",
    )
    .unwrap();
    let err = fails(run_cli(
        "",
        "",
        &["server", "--config", config.to_str().unwrap()],
        "",
    ));
    assert!(err.contains("unknown key `databse_url`"), "{err}");

    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let out = Command::new(BIN)
        .args(["server", "--database-url", &url])
        .env("CHAPERONE_LISTEN", "not-an-address")
        .output()
        .unwrap();
    let err = fails(out);
    assert!(
        err.contains("`listen`") && err.contains("CHAPERONE_LISTEN"),
        "{err}"
    );

    // The flag beats the environment, which beats the file.
    std::fs::write(
        &config,
        "listen = \"bad\"\ndatabase_url = \"mysql://nope\"\n",
    )
    .unwrap();
    let server = Server::start(
        &[
            "server",
            "--config",
            config.to_str().unwrap(),
            "--database-url",
            &url,
        ],
        dir.path(),
        &[("CHAPERONE_LISTEN", "127.0.0.1:0")],
    );
    assert!(
        server.banner.contains("not initialised"),
        "{}",
        server.banner
    );
}

#[test]
fn api_errors_are_json_and_bodies_are_limited() {
    let (dir, server) = Server::up();
    let data = dir.path().join("data");
    let token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = |p: &str| format!("{}/api/v1/{p}", server.addr);
    let error = |mut r: ureq::http::Response<ureq::Body>| -> (u16, serde_json::Value) {
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
        )
    };

    let (status, body) = error(agent.get(url("secrets/list")).call().unwrap());
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthenticated");

    let auth = format!("Bearer {token}");
    // A body declared larger than the limit is refused before it is sent.
    let mut socket =
        std::net::TcpStream::connect(server.addr.trim_start_matches("http://")).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        socket,
        "PUT /api/v1/secrets/data/big HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        2 * 1024 * 1024
    )
    .unwrap();
    let mut answer = [0u8; 4096];
    let n = std::io::Read::read(&mut socket, &mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");

    // A wrong-typed value is refused without echoing it.
    let (status, body) = error(
        agent
            .put(url("secrets/data/x"))
            .header("Authorization", &auth)
            .send("{\"data\":{\"k\":987654321}}")
            .unwrap(),
    );
    assert_eq!(status, 400);
    assert!(!body.to_string().contains("987654321"), "{body}");

    let (status, body) = error(agent.get(url("openapi.json")).call().unwrap());
    assert_eq!(status, 200);
    for path in [
        "/api/v1/secrets/data/{path}",
        "/api/v1/sys/unseal",
        "/api/v1/health",
    ] {
        assert!(
            body["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    // The ledger's key and a checkpoint it signed, through the CLI.
    let key = ok(server.cli("", &["ledger", "key"], ""));
    let verifier: chaperone_ledger::note::Verifier = key.trim().parse().unwrap();
    let note = ok(server.cli(&token, &["ledger", "checkpoint"], ""));
    let text = chaperone_ledger::note::open(note.as_bytes(), &[verifier]).unwrap();
    let checkpoint = chaperone_ledger::checkpoint::Checkpoint::parse(&text).unwrap();
    assert!(checkpoint.origin.starts_with("chaperone-"));

    let (status, body) = error(agent.get(url("health")).call().unwrap());
    assert_eq!(
        (status, &body["sealed"]),
        (200, &serde_json::Value::Bool(false))
    );
}

#[test]
fn people_enrol_log_in_with_totp_and_see_only_their_grants() {
    let (dir, server) = Server::up();
    let data = dir.path().join("data");
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    ok(server.cli(
        &admin,
        &["secret", "put", "acme/app/db", "password=granted-Xy7"],
        "",
    ));
    ok(server.cli(
        &admin,
        &["secret", "put", "globex/db", "password=other-Qp2"],
        "",
    ));
    ok(server.cli(&admin, &["vendor", "add", "acme", "--status", "active"], ""));
    let (password, secret) =
        common::enrol(&server.addr, &admin, "carol", "contractor", Some("acme"));
    let password = password.as_str();
    let totp = common::totp_now(&secret);

    let home = dir.path().join("home");
    let carol = |args: &[&str], stdin: &str| run_cli_with(&server.addr, "", &home, args, stdin);
    // Without the second factor the password is worth nothing.
    let err = fails(carol(
        &["login", "carol", "--password-stdin"],
        &format!("{password}\n"),
    ));
    assert!(err.contains("mfa_required"), "{err}");
    // The code from stdin too, after the password: neither is in the process list.
    let out = ok(carol(
        &["login", "carol", "--password-stdin", "--totp", "-"],
        &format!("{password}\n{totp}\n"),
    ));
    assert!(out.contains("Logged in as carol (contractor)"), "{out}");
    // A step-up code, read from stdin when it is no terminal.
    let out = ok(carol(
        &["verify"],
        &format!("{}\n", common::totp_steps_ahead(&secret, 1)),
    ));
    assert!(out.contains("Verified"), "{out}");
    #[cfg(unix)]
    assert_eq!(mode(&home.join("chaperone/token")), 0o600);
    // The saved session goes only to the server it was saved for, and nothing goes over
    // plain HTTP to another machine.
    let elsewhere = server.addr.replace("127.0.0.1", "localhost");
    let err = fails(run_cli_with(
        &elsewhere,
        "",
        &home,
        &["secret", "get", "acme/app/db"],
        "",
    ));
    assert!(
        err.contains(&format!("the saved session is for {}", server.addr)),
        "the error names where the session goes: {err}"
    );
    let err = fails(run_cli_with(
        "http://192.0.2.1:8420",
        "",
        &home,
        &["login", "carol", "--password-stdin", "--totp", "000000"],
        &format!("{password}\n"),
    ));
    assert!(err.contains("plain HTTP"), "{err}");

    // Nothing until a grant; then exactly the grant.
    let err = fails(carol(&["secret", "get", "acme/app/db"], ""));
    assert!(err.contains("not_permitted"), "{err}");
    // Carol asks; she cannot approve her own request; an approver does.
    let asked = ok(carol(
        &[
            "request",
            "create",
            "acme/app",
            "--capabilities",
            "read,list",
            "--duration",
            "1h",
            "--reason",
            // A line break is kept; lists print it escaped, so it cannot forge a row.
            "deploy the billing fix\nreq_0000  pending  carol  acme/app  read",
        ],
        "",
    ));
    let request = asked
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| id.to_owned())
        .expect("the request id");
    let refused = fails(carol(&["request", "approve", &request], ""));
    assert!(refused.contains("not_permitted"), "{refused}");
    // She is not told the level her path is at; and she can withdraw what she asked.
    let extra = ok(carol(
        &[
            "request",
            "create",
            "acme/other",
            "--capabilities",
            "read",
            "--duration",
            "1h",
            "--reason",
            "not needed after all",
        ],
        "",
    ));
    assert!(extra.contains("waits for approval"), "{extra}");
    let extra_id = extra
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| id.to_owned())
        .expect("the request id");
    let withdrawn = ok(carol(&["request", "cancel", &extra_id], ""));
    assert!(withdrawn.contains("Withdrew"), "{withdrawn}");
    // An escape sequence, which could overwrite what an approver's list shows, is refused.
    let escaped = fails(carol(
        &[
            "request",
            "create",
            "team",
            "--capabilities",
            "read,write",
            "--duration",
            "1h",
            "--reason",
            "\u{1b}[50G\u{1b}[Kacme/app/docs  read",
        ],
        "",
    ));
    assert!(escaped.contains("control characters"), "{escaped}");
    let pending = ok(server.cli(&admin, &["request", "list", "--status", "pending"], ""));
    assert!(
        pending.contains(&request)
            && pending.contains("deploy the billing fix\\nreq_0000  pending")
            && !pending.lines().any(|line| line.starts_with("req_0000")),
        "{pending}"
    );
    // The initial admin token made carol's account (it was handed her enrolment code), so
    // it does not approve her requests; an approver does.
    let refused = fails(server.cli(&admin, &["request", "approve", &request], ""));
    assert!(refused.contains("created_requester"), "{refused}");
    let (ann_password, ann_secret) = common::enrol(&server.addr, &admin, "ann", "approver", None);
    let ann_home = dir.path().join("ann");
    let ann = |args: &[&str], stdin: &str| run_cli_with(&server.addr, "", &ann_home, args, stdin);
    ok(ann(
        &[
            "login",
            "ann",
            "--password-stdin",
            "--totp",
            &common::totp_now(&ann_secret),
        ],
        &format!("{ann_password}\n"),
    ));
    let approved = ok(ann(&["request", "approve", &request], ""));
    assert!(approved.contains("grant gra_"), "{approved}");
    assert_eq!(
        ok(carol(
            &["secret", "get", "acme/app/db", "--field", "password"],
            ""
        ))
        .trim(),
        "granted-Xy7"
    );
    assert!(fails(carol(&["secret", "get", "globex/db"], "")).contains("not_permitted"));
    assert_eq!(ok(carol(&["secret", "list"], "")).trim(), "acme/");

    // A scoped token, shown once, listed without its value.
    let token = ok(carol(
        &["token", "create", "--ttl", "1h", "--scope", "acme/app:read"],
        "",
    ));
    let token = token.trim();
    assert!(token.starts_with("chp_"));
    let listed = ok(carol(&["token", "list"], ""));
    assert!(
        !listed.contains(token) && listed.contains("api"),
        "{listed}"
    );
    assert_eq!(
        ok(run_cli_with(
            &server.addr,
            token,
            &home,
            &["secret", "get", "acme/app/db", "--field", "password"],
            ""
        ))
        .trim(),
        "granted-Xy7"
    );

    // Suspending the vendor stops the session at once.
    ok(server.cli(
        &admin,
        &[
            "vendor",
            "set",
            "acme",
            "--status",
            "suspended",
            "--reason",
            "security incident",
        ],
        "",
    ));
    assert!(fails(carol(&["secret", "get", "acme/app/db"], "")).contains("vendor_inactive"));
    ok(server.cli(
        &admin,
        &[
            "vendor", "set", "acme", "--status", "active", "--reason", "resolved",
        ],
        "",
    ));
    let saved = std::fs::read_to_string(home.join("chaperone/token")).unwrap();
    ok(carol(&["logout"], ""));
    assert!(fails(carol(&["secret", "list"], "")).contains("not logged in"));
    // A session that already ended (here revoked; idle or expired alike) still logs out:
    // the saved copy goes.
    std::fs::write(home.join("chaperone/token"), saved).unwrap();
    let out = ok(carol(&["logout"], ""));
    assert!(out.contains("had already ended"), "{out}");
    assert!(!home.join("chaperone/token").exists());

    // A lost authenticator: an admin resets the account, which ends the API token, and
    // hands over a new enrolment code.
    let out = ok(server.cli(&admin, &["user", "reset", "carol"], ""));
    assert!(
        out.contains("Reset carol") && out.contains("They run: chaperone enroll CODE"),
        "{out}"
    );
    let code = out
        .lines()
        .skip_while(|l| !l.starts_with("Enrolment code"))
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    fails(run_cli_with(
        &server.addr,
        token,
        &home,
        &["secret", "get", "acme/app/db"],
        "",
    ));
    let enrolled = ok(server.cli(
        "",
        &["enroll", &code, "--password-stdin", "--json"],
        "carol-new-password-Qw71x\n",
    ));
    assert!(enrolled.contains("totp_secret"), "{enrolled}");

    // Offboarding prints the attestation link, and says it was not mailed (no relay here).
    let out = ok(server.cli(
        &admin,
        &["vendor", "offboard", "acme", "--reason", "contract ended"],
        "",
    ));
    assert!(out.contains("Attestation link for acme's contact"), "{out}");
    assert!(out.contains("It was not mailed"), "{out}");
    // A lost link is replaced.
    let out = ok(server.cli(&admin, &["vendor", "attestation", "acme"], ""));
    assert!(
        out.contains("The earlier attestation link of acme no longer works")
            && out.contains("Attestation link for acme's contact"),
        "{out}"
    );
}

#[test]
fn share_links_are_sealed_and_opened_by_the_cli() {
    let (dir, server) = Server::up();
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let token = token.trim();
    let value = "shared-Xv72-Kp19";
    ok(server.cli(
        token,
        &["secret", "put", "team/db", "password=-"],
        &format!("{value}\n"),
    ));
    let link = ok(server.cli(
        token,
        &[
            "share", "create", "--secret", "team/db", "--field", "password",
        ],
        "",
    ));
    let link = link.trim().to_owned();
    assert!(link.contains("/s/shr_") && link.contains('#'), "{link}");
    // Anyone with the link opens it once, without an account.
    // The link from stdin, which is no terminal here: its key stays out of the process list.
    let opened = ok(run_cli(
        &server.addr,
        "",
        &["share", "open"],
        &format!("{link}\n"),
    ));
    assert_eq!(opened, value);
    let again = fails(run_cli(&server.addr, "", &["share", "open", &link], ""));
    assert!(again.contains("used up"), "{again}");
    // Without the fragment there is nothing to decrypt with.
    let (without_key, _) = link.split_once('#').unwrap();
    assert!(
        fails(run_cli(
            &server.addr,
            "",
            &["share", "open", without_key],
            ""
        ))
        .contains("key")
    );

    // A file travels the same way.
    let file = dir.path().join("dump.bin");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let link = ok(server.cli(
        token,
        &[
            "share",
            "create",
            "--file",
            file.to_str().unwrap(),
            "--views",
            "3",
        ],
        "",
    ));
    // A name that would show as another (a right-to-left override) is refused.
    let disguised = dir.path().join("invoice_\u{202e}fdp.exe");
    std::fs::write(&disguised, b"MZ").unwrap();
    let refused = fails(server.cli(
        token,
        &["share", "create", "--file", disguised.to_str().unwrap()],
        "",
    ));
    assert!(refused.contains("rename the file"), "{refused}");
    let out = dir.path().join("received.bin");
    std::fs::write(&out, b"already here").unwrap();
    // A target that exists is refused before the link is opened: no view is used up, and
    // the file is left as it was.
    let refused = fails(run_cli(
        &server.addr,
        "",
        &["share", "open", link.trim(), "--out", out.to_str().unwrap()],
        "",
    ));
    assert!(refused.contains("nothing was opened"), "{refused}");
    assert_eq!(std::fs::read(&out).unwrap(), b"already here");
    std::fs::remove_file(&out).unwrap();
    // A link that does not open leaves no empty file behind.
    let (without_key, _) = link.trim().split_once('#').unwrap();
    let wrong = format!("{without_key}#{}", "A".repeat(43));
    fails(run_cli(
        &server.addr,
        "",
        &["share", "open", &wrong, "--out", out.to_str().unwrap()],
        "",
    ));
    assert!(!out.exists(), "an empty file was left behind");
    ok(run_cli(
        &server.addr,
        "",
        &["share", "open", link.trim(), "--out", out.to_str().unwrap()],
        "",
    ));
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    assert_eq!(mode(&out), 0o600, "a received secret is its owner's only");
    // Without --out, the file keeps its name, and a name already taken gets a suffix.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("dump.bin"), b"mine").unwrap();
    let opened = Command::new(BIN)
        .args(["share", "open", link.trim()])
        .current_dir(cwd.path())
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("chaperone-e2e-no-config"),
        )
        .env("CHAPERONE_ADDR", &server.addr)
        .output()
        .unwrap();
    assert!(opened.status.success(), "{opened:?}");
    assert_eq!(std::fs::read(cwd.path().join("dump.bin")).unwrap(), b"mine");
    assert_eq!(std::fs::read(cwd.path().join("dump.bin.1")).unwrap(), bytes);
    let listed = ok(server.cli(token, &["share", "list"], ""));
    assert!(
        listed.contains("used") && listed.contains("live"),
        "{listed}"
    );

    // The database never held the value in a share, nor the key.
    let key = link.trim().split_once('#').unwrap().1.to_owned();
    for path in files_in(&dir.path().join("data")) {
        let content = std::fs::read(&path).unwrap();
        assert!(
            !content.windows(key.len()).any(|w| w == key.as_bytes()),
            "{} holds a share key",
            path.display()
        );
    }

    // The week's report, from the CLI: what was written and shared is in it.
    let report = ok(server.cli(token, &["report"], ""));
    assert!(report.contains("Data transfers:"), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.trim_start().starts_with("share.open")),
        "{report}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(server.cli(token, &["report", "--json"], ""))).unwrap();
    assert!(
        json["data_transfers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["action"] == "secret.write" && t["total"] == 1),
        "{json}"
    );
    let refused = fails(server.cli(
        token,
        &["report", "--from", "2027-02-01", "--to", "2027-01-01"],
        "",
    ));
    assert!(refused.contains("before"), "{refused}");
}

/// `chaperone enroll` at a terminal asks for a code from the authenticator just set up and
/// checks it, so a wrong secret shows before the first login. Run in a pseudo-terminal
/// (`script`, util-linux), as a person types it.
#[test]
fn enrolment_at_a_terminal_checks_the_authenticator() {
    use std::io::Read as _;
    use std::sync::{Arc, Mutex};
    if Command::new("script").arg("--version").output().is_err() {
        // util-linux's `script` is part of every Debian system; say it when it is not.
        panic!("`script` (util-linux) is needed to run the CLI in a pseudo-terminal");
    }
    let (dir, server) = Server::up();
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let admin = admin.trim();
    let added = ok(server.cli(
        admin,
        &["user", "add", "tia", "--role", "member", "--json"],
        "",
    ));
    let added: serde_json::Value = serde_json::from_str(&added).unwrap();
    let code = added["enrolment_code"].as_str().unwrap().to_owned();

    let mut child = Command::new("script")
        .args(["-qefc", &format!("{BIN} enroll {code}"), "/dev/null"])
        .env("CHAPERONE_ADDR", &server.addr)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                output
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    // Waits until the terminal shows `text` `times` times in all, then returns all it shows.
    let shown = |text: &str, times: usize| {
        for _ in 0..600 {
            let seen = output.lock().unwrap().clone();
            if seen.matches(text).count() >= times {
                return seen;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "the terminal never showed {text:?}: {}",
            output.lock().unwrap()
        );
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut typed = |line: &str| {
        stdin.write_all(format!("{line}\r").as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    shown("New password", 1);
    typed("tia-password-Lk20vQ");
    shown("Again", 1);
    typed("tia-password-Lk20vQ");
    let screen = shown("type the code it shows now", 1);
    let secret = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret: "))
        .expect("the secret is shown")
        .trim()
        .to_owned();
    // A wrong code is told, and asked again; the right one is confirmed.
    typed("12345x");
    shown("does not match", 1);
    shown("type the code it shows now", 2);
    typed(&common::totp_now(&secret));
    let screen = shown("The authenticator's code matches.", 1);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{screen}");
    assert!(!screen.contains("not confirmed"), "{screen}");
}
