//! The server on a network: security headers, connection limits and timeouts, metrics and
//! readiness.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use chaperone_server::ServeOptions;
use common::Server;

fn host_port(server: &Server) -> String {
    server.addr.trim_start_matches("http://").to_owned()
}

/// Everything the server sends on `stream` until it closes the connection (or 20 s pass,
/// which fails the test).
fn read_until_closed(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn raw(server: &Server, request: &str) -> String {
    let mut stream = TcpStream::connect(host_port(server)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_until_closed(&mut stream)
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Without TLS, a request naming a host the server is not known by is refused before
/// anything runs: a page whose name was rebound to this address gets nothing, not even a
/// login attempt. Addresses, localhost and the configured names pass.
#[test]
fn a_request_for_another_host_name_is_refused_without_tls() {
    let s = Server::start_with(|settings| {
        settings.allowed_hosts = Some(vec!["vault.example.com".into()]);
    });
    let get = |host: &str| {
        raw(
            &s,
            &format!("GET /api/v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    for host in [
        "evil.example",
        "evil.example:8420",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
    ] {
        let answer = get(host);
        assert!(answer.starts_with("HTTP/1.1 421"), "{host}: {answer}");
        assert!(answer.contains("unknown_host"), "{answer}");
        assert_eq!(header(&answer, "x-content-type-options"), Some("nosniff"));
    }
    for host in [
        "127.0.0.1",
        "127.0.0.1:8420",
        "[::1]:8420",
        "localhost:8420",
        "app.localhost",
        "VAULT.example.com.",
        "vault.example.com:443",
    ] {
        assert!(get(host).starts_with("HTTP/1.1 200"), "{host}");
    }
    let old = raw(&s, "GET /api/v1/health HTTP/1.0\r\n\r\n");
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "{old}"
    );
    // A login from a rebound page never reaches the lockout.
    let body = r#"{"user":"nobody","password":"wrong-password-123"}"#;
    let login = raw(
        &s,
        &format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: evil.example\r\nSec-Fetch-Site: \
             same-origin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(login.starts_with("HTTP/1.1 421"), "{login}");
    assert!(
        s.ledger().iter().all(|e| e["action"] != "auth.login"),
        "the refused login was recorded"
    );
}

#[test]
fn every_answer_carries_the_security_headers() {
    let s = Server::start();
    let api = raw(
        &s,
        "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    assert_eq!(header(&api, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&api, "referrer-policy"), Some("no-referrer"));
    assert_eq!(header(&api, "cache-control"), Some("no-store"));
    // HSTS only under TLS (tested end to end with the binary).
    assert_eq!(header(&api, "strict-transport-security"), None);
    let id = header(&api, "x-request-id").expect("a request id");
    assert_eq!(id.len(), 36);

    // Errors and unknown routes too.
    let missing = raw(
        &s,
        "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert_eq!(header(&missing, "x-content-type-options"), Some("nosniff"));

    // Every HTML answer forbids framing and loads nothing from elsewhere.
    let page = raw(
        &s,
        "GET /s/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let csp = header(&page, "content-security-policy").expect("a CSP");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(header(&page, "x-frame-options"), Some("DENY"));

    // The request id of an answer is the one its ledger entry carries.
    let (status, _) = s.call(
        "GET",
        "/api/v1/secrets/data/none/here",
        Some("not-a-token"),
        None,
        None,
    );
    assert_eq!(status, 401);
    let entry = s
        .ledger()
        .into_iter()
        .rev()
        .find(|e| e["action"] == "secret.read")
        .expect("the refusal is recorded");
    let recorded = entry["request_id"].as_str().unwrap().to_owned();
    let logs = String::from_utf8_lossy(&common::logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains(&recorded),
        "the log lines carry the request id"
    );
    // Tokens, valid or not, never reach the logs.
    assert!(!logs.contains("not-a-token") && !logs.contains(s.admin.as_str()));

    // A POST as a browser sends it, with `headers` (each ending in CRLF).
    let post = |path: &str, headers: &str, body: &str| {
        raw(
            &s,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    // A page on another site can make a browser send text/plain, not JSON: requests
    // without credentials must be JSON, so no page can reset unseal progress or spend an
    // account's lockout attempts.
    for (path, body) in [
        ("/api/v1/sys/unseal", r#"{"reset":true}"#),
        ("/api/v1/auth/login", r#"{"user":"nobody","password":"x"}"#),
    ] {
        let refused = post(path, "Content-Type: text/plain\r\n", body);
        assert!(refused.starts_with("HTTP/1.1 415"), "{refused}");
    }
    // Whatever its type, a browser's request from another site is refused, on the
    // Vault-compatible login, unseal and unwrapping too; a browser too old to say so by
    // `Sec-Fetch-Site` is known by its `Origin`. HTTP authentication a browser adds on its
    // own for a proxy in front (`Basic`) is no token.
    let cases = [
        ("/api/v1/auth/login", r#"{"user":"nobody","password":"x"}"#),
        ("/v1/auth/userpass/login/nobody", r#"{"password":"x"}"#),
        ("/v1/sys/unseal", r#"{"reset":true}"#),
        ("/v1/sys/wrapping/unwrap", r#"{"token":"chp_x"}"#),
        ("/v1/sys/wrapping/lookup", r#"{"token":"chp_x"}"#),
    ];
    for ((path, body), from) in cases.iter().flat_map(|case| {
        [
            "Sec-Fetch-Site: cross-site\r\n",
            "Sec-Fetch-Site: cross-site\r\nAuthorization: Basic dXNlcjpwYXNz\r\n",
            "Origin: https://elsewhere.example\r\n",
            "Origin: null\r\nAuthorization: Negotiate YII=\r\n",
            // A gateway in front may add a token of its own to whatever the browser sends.
            "Sec-Fetch-Site: cross-site\r\nAuthorization: Bearer chp_gateway\r\n",
        ]
        .map(|from| (case, from))
    }) {
        let refused = post(path, &format!("Content-Type: text/plain\r\n{from}"), body);
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        // (Vault's answer to any refusal is "permission denied".)
        assert!(
            refused.contains("cross_site") || refused.contains("permission denied"),
            "{refused}"
        );
    }
    // A request with no body is held to the same: a gateway passing an admin's token on does
    // not let a page elsewhere seal the server through the admin's browser.
    let refused = post(
        "/api/v1/sys/seal",
        &format!(
            "Sec-Fetch-Site: cross-site\r\nAuthorization: Bearer {}\r\n",
            s.admin
        ),
        "",
    );
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert_eq!(
        s.ok("GET", "/api/v1/sys/seal-status", None, None)["sealed"],
        false
    );
    // Nor have its images read secrets in the admin's name; the pages may be linked to.
    for from in ["cross-site", "same-site"] {
        let refused = raw(
            &s,
            &format!(
                "GET /api/v1/secrets/data/team/x HTTP/1.1\r\nHost: x\r\nSec-Fetch-Site: {from}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                s.admin
            ),
        );
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    }
    let page = raw(
        &s,
        "GET /ui HTTP/1.1\r\nHost: x\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{}", &page[..60]);
    // From the server's own origin (its console), an old browser is let through.
    let allowed = post(
        "/api/v1/sys/unseal",
        "Content-Type: application/json\r\nOrigin: http://x\r\n",
        r#"{"reset":true}"#,
    );
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(
        !s.ledger().iter().any(|e| e["action"] == "auth.login"),
        "a refused body is no login attempt"
    );
    let (status, _) = s.call(
        "POST",
        "/api/v1/sys/unseal",
        None,
        Some(serde_json::json!({ "reset": true })),
        None,
    );
    assert_eq!(status, 200);

    // A full ledger tile may be kept by the client, never by a shared cache: reading it
    // needed a token only some roles hold.
    common::write(&s, "team/x", "tile-filler-Zq81");
    while s.ledger().len() < 260 {
        for _ in 0..64 {
            s.ok("GET", "/api/v1/secrets/data/team/x", Some(&s.admin), None);
        }
    }
    let tile = raw(
        &s,
        &format!(
            "GET /api/v1/ledger/tile/entries/000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            s.admin
        ),
    );
    assert!(tile.starts_with("HTTP/1.1 200"), "{}", &tile[..80]);
    assert_eq!(
        header(&tile, "cache-control"),
        Some("private, max-age=31536000, immutable")
    );
}

#[test]
fn slow_and_oversized_clients_are_cut_off() {
    let s = Server::start_serving(
        |_| {},
        ServeOptions {
            header_read_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            max_header_bytes: 16 * 1024,
            ..ServeOptions::default()
        },
    );
    // Slow loris: headers that never end. The server closes the connection on its own.
    let mut stream = TcpStream::connect(host_port(&s)).unwrap();
    stream
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        if stream.write_all(b"X-Slow: 1\r\n").is_err() {
            break;
        }
    }
    let answer = read_until_closed(&mut stream);
    assert!(!answer.contains("200 OK"), "{answer}");

    // A body trickled slower than the request timeout allows: 408, then the connection closes.
    let mut stream = TcpStream::connect(host_port(&s)).unwrap();
    stream
        .write_all(
            b"POST /api/v1/sys/unseal HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..12 {
                std::thread::sleep(Duration::from_millis(300));
                if stream.write_all(b" ").is_err() {
                    break;
                }
            }
        })
    };
    let answer = read_until_closed(&mut stream);
    writer.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    // A header block over the limit is refused.
    let big = format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let mut stream = TcpStream::connect(host_port(&s)).unwrap();
    let _ = stream.write_all(big.as_bytes());
    let answer = read_until_closed(&mut stream);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // The server still answers everyone else.
    let (status, _) = s.call("GET", "/api/v1/health", None, None, None);
    assert_eq!(status, 200);
}

/// A connection to `server` from the loopback address `source` (all of 127.0.0.0/8 is this
/// machine), with a health request answered on it: `None` if the server closed it instead.
fn served_from(server: &Server, source: &str) -> Option<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let target = host_port(server).parse().unwrap();
    let stream = runtime.block_on(socket.connect(target)).unwrap();
    let mut stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = stream.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => {
            let answer = String::from_utf8_lossy(&buf[..n]);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            Some(stream)
        }
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("the server neither answered nor closed the connection: {e}"),
    }
}

#[test]
fn one_address_cannot_take_every_connection() {
    let s = Server::start_serving(
        |settings| settings.auth.trusted_proxies = vec!["127.0.0.9".parse().unwrap()],
        ServeOptions {
            max_connections: 6,
            max_connections_per_address: 2,
            ..ServeOptions::default()
        },
    );
    let first = served_from(&s, "127.0.0.1").expect("first connection");
    let _second = served_from(&s, "127.0.0.1").expect("second connection");
    assert!(
        served_from(&s, "127.0.0.1").is_none(),
        "a third from one address is closed at once"
    );
    // A trusted proxy carries many clients: it is held to the server's limit only.
    let _proxied: Vec<TcpStream> = (0..3)
        .map(|_| served_from(&s, "127.0.0.9").expect("a proxy's connection"))
        .collect();
    let _other = served_from(&s, "127.0.0.2").expect("another address");
    assert!(
        served_from(&s, "127.0.0.3").is_none(),
        "max_connections holds for every address"
    );
    // A closed connection gives its place back, to its address and to the server.
    drop(first);
    let mut again = None;
    for _ in 0..100 {
        again = served_from(&s, "127.0.0.1");
        if again.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        again.is_some(),
        "the closed connection's place was not given back"
    );
}

#[test]
fn metrics_need_their_token_and_count_requests() {
    let token = "metrics-token-0123456789";
    let s = Server::start_with(|settings| {
        settings.metrics_token = Some(chaperone_server::BearerToken::new(token.to_owned()));
    });
    s.ok("GET", "/api/v1/health", None, None);
    let (status, _) = s.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(serde_json::json!({"user": "nobody", "password": "wrong password 1"})),
        None,
    );
    assert_eq!(status, 401);
    // A Vault error keeps its route's label.
    let (status, _) = s.call("GET", "/v1/secret/data/team/x", None, None, None);
    assert_eq!(status, 403);

    let (status, _) = s.call("GET", "/metrics", None, None, None);
    assert_eq!(status, 401, "no token");
    let (status, _) = s.call(
        "GET",
        "/metrics",
        Some("wrong-token-0123456789"),
        None,
        None,
    );
    assert_eq!(status, 401, "wrong token");

    let mut response = s
        .agent
        .get(format!("{}/metrics", s.addr))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.body_mut().read_to_string().unwrap();
    for expected in [
        "chaperone_http_requests_total{route=\"/api/v1/health\",method=\"GET\",status=\"200\"} 1",
        "chaperone_http_requests_total{route=\"/v1/secret/data/{*path}\",method=\"GET\",status=\"403\"} 1",
        "chaperone_http_request_duration_seconds_count{route=\"/api/v1/health\",method=\"GET\",status=\"200\"} 1",
        "chaperone_login_failures_total 1",
        "chaperone_sealed 0",
        "chaperone_database_up 1",
        "chaperone_grants_active 0",
        "chaperone_ledger_entries ",
        "chaperone_ledger_checkpoint_age_seconds ",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    // Metrics name route templates, never a secret's path or a token.
    assert!(!text.contains(token));

    // Without a token configured, the main listener has no metrics route.
    let plain = Server::start();
    let (status, _) = plain.call("GET", "/metrics", Some(token), None, None);
    assert_eq!(status, 404);
}

#[test]
fn readiness_follows_the_seal_and_the_database() {
    let s = Server::start();
    let (status, body) = s.call("GET", "/api/v1/ready", None, None, None);
    assert_eq!((status, body["ready"].as_bool()), (200, Some(true)));

    s.ok("POST", "/api/v1/sys/seal", Some(&s.admin.clone()), None);
    let (status, body) = s.call("GET", "/api/v1/ready", None, None, None);
    assert_eq!(status, 503);
    assert_eq!(body["reasons"], serde_json::json!(["sealed"]));
    // Liveness stays up while sealed.
    let (status, _) = s.call("GET", "/api/v1/health", None, None, None);
    assert_eq!(status, 200);

    s.unseal();
    let (status, _) = s.call("GET", "/api/v1/ready", None, None, None);
    assert_eq!(status, 200);

    // The database goes away, and the ledger committer with it: not ready.
    s.runtime.block_on(s.state.store().close());
    let (status, body) = s.call("GET", "/api/v1/ready", None, None, None);
    assert_eq!(status, 503);
    assert_eq!(
        body["reasons"],
        serde_json::json!(["ledger_stopped", "database_unreachable"])
    );
}

/// A ledger commit that does not end (here another process holds SQLite's write lock, as a
/// stalled node holds the ledger's row lock on PostgreSQL) holds up every request that
/// records anything: the server is not ready until it ends.
#[test]
fn readiness_follows_the_ledger_committer() {
    let s = Server::start();
    let db = rusqlite::Connection::open(s._dir.path().join("t.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::scope(|scope| {
        let write = scope.spawn(|| {
            s.call(
                "POST",
                "/v1/secret/data/team/stalled",
                Some(&s.admin),
                Some(serde_json::json!({ "data": { "k": "stalled-Vq31" } })),
                None,
            )
        });
        // The committer waits up to SQLite's busy timeout (10 s); readiness gives up on it
        // after 5 s.
        let mut stalled = None;
        for _ in 0..150 {
            let (status, body) = s.call("GET", "/api/v1/ready", None, None, None);
            if status == 503 {
                stalled = Some(body);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let body = stalled.expect("not ready while the commit is stalled");
        assert_eq!(body["reasons"], serde_json::json!(["ledger_stalled"]));
        db.execute_batch("ROLLBACK").unwrap();
        let (status, body) = write.join().unwrap();
        assert_eq!(status, 200, "the write waited, and landed: {body}");
    });
    let (status, body) = s.call("GET", "/api/v1/ready", None, None, None);
    assert_eq!(
        (status, body["ready"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
}

#[test]
fn text_with_a_nul_character_is_refused_on_every_backend() {
    let s = Server::start();
    let (status, body) = s.call(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(serde_json::json!({ "name": "acme\u{0}corp", "status": "active" })),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{body}"
    );
    let listed = s.ok("GET", "/api/v1/vendors", Some(&s.admin), None);
    assert!(listed.as_array().unwrap().is_empty(), "nothing was stored");
}

#[test]
fn a_value_of_the_wrong_type_is_named_by_its_field_and_never_quoted() {
    let s = Server::start();
    let secret = "wrong-place-Zq81";
    s.remember(secret);
    let (status, body) = s.call(
        "PUT",
        "/api/v1/secrets/data/team/db",
        Some(&s.admin),
        Some(serde_json::json!({ "data": { "k": "v" }, "cas": secret })),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "`cas` has the wrong type or is out of range (line 1, column 25)"
    );
    let (status, body) = s.call(
        "POST",
        "/v1/secret/data/team/db",
        Some(&s.admin),
        Some(serde_json::json!({ "data": { "k": "v" }, "options": { "cas": secret } })),
        None,
    );
    assert_eq!(status, 400, "{body}");
    let message = body["errors"][0].as_str().unwrap();
    assert!(
        message.starts_with("`options.cas` has the wrong type"),
        "{message}"
    );
    assert!(!body.to_string().contains(secret));
    // (A login, so that the check below knows the logs were captured.)
    let max = s.person("max", "member", None);
    s.login(&max);
    s.assert_no_secret_logged();
}

#[test]
fn a_bad_path_or_query_is_answered_in_the_api_error_format() {
    let s = Server::start();
    // (path, the words the message must hold, the native code)
    for (path, words, code) in [
        ("/api/v1/grants?flagged=maybe", "flagged", "invalid_query"),
        (
            "/api/v1/findings?status=open&status=new",
            "duplicate field `status`",
            "invalid_query",
        ),
        (
            "/api/v1/ledger/proof/inclusion?index=x&size=1",
            "index",
            "invalid_query",
        ),
        ("/api/v1/vendors/%FF", "UTF-8", "invalid_path"),
    ] {
        let (status, body) = s.call("GET", path, Some(&s.admin), None, None);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{path}: {body}");
    }
    // The Vault API answers Vault's way, with the same words.
    let (status, body) = s.call(
        "GET",
        "/v1/secret/data/team/db?version=1&version=2",
        Some(&s.admin),
        None,
        None,
    );
    assert_eq!(status, 400, "{body}");
    let message = body["errors"][0].as_str().unwrap_or_default();
    assert!(message.contains("duplicate field `version`"), "{body}");
}

#[test]
fn a_field_name_that_changes_how_text_is_shown_is_refused_on_every_write() {
    let s = Server::start();
    let bad = "user\u{1b}[8m";
    let (status, body) = s.call(
        "PUT",
        "/api/v1/secrets/data/team/db",
        Some(&s.admin),
        Some(serde_json::json!({ "data": { bad: "v" } })),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    for (method, body) in [
        ("POST", serde_json::json!({ "data": { "x\u{9b}2J": "v" } })),
        (
            "POST",
            serde_json::json!({ "data": { "a\tb": { "nested": 1 } } }),
        ),
    ] {
        let (status, answer) = s.call(
            method,
            "/v1/secret/data/team/db",
            Some(&s.admin),
            Some(body),
            None,
        );
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["errors"][0].as_str().unwrap().contains("field name"),
            "{answer}"
        );
    }
    s.ok(
        "PUT",
        "/api/v1/secrets/data/team/db",
        Some(&s.admin),
        Some(serde_json::json!({ "data": { "pässwort": "v", "db.host": "h" } })),
    );
    let (status, answer) = s.call(
        "PATCH",
        "/v1/secret/data/team/db",
        Some(&s.admin),
        Some(serde_json::json!({ "data": { "new\u{202e}": "v" } })),
        None,
    );
    assert_eq!(status, 400, "{answer}");
    let read = s.ok("GET", "/api/v1/secrets/data/team/db", Some(&s.admin), None);
    assert_eq!(read["version"], 1, "nothing refused was written: {read}");
}

#[test]
fn a_version_change_names_a_bounded_list_of_versions() {
    let s = Server::start();
    common::write(&s, "team/db", "v1-Rk31");
    common::write(&s, "team/db", "v2-Rk32");
    let many: Vec<u64> = (1..=1_001).collect();
    for route in [
        "/api/v1/secrets/delete/team/db",
        "/v1/secret/delete/team/db",
    ] {
        let (status, body) = s.call(
            "POST",
            route,
            Some(&s.admin),
            Some(serde_json::json!({ "versions": many })),
            None,
        );
        assert_eq!(status, 400, "{route}: {body}");
        assert!(body.to_string().contains("at most 1000 versions"), "{body}");
    }
    // Repeats are one version: 1,001 copies of one number is a list of one.
    let (status, body) = s.call(
        "POST",
        "/api/v1/secrets/delete/team/db",
        Some(&s.admin),
        Some(serde_json::json!({ "versions": vec![1; 1_001] })),
        None,
    );
    assert_eq!(status, 204, "{body}");
    let deletes = s.recorded("secret.delete", "team/db");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0]["details"]["versions"], serde_json::json!([1]));
    // The entry names what the request changed: the current version when none is named,
    // nothing for a version already deleted.
    for (method, route, body, changed) in [
        (
            "DELETE",
            "/api/v1/secrets/data/team/db",
            None,
            serde_json::json!([2]),
        ),
        (
            "POST",
            "/api/v1/secrets/delete/team/db",
            Some(serde_json::json!({ "versions": [1] })),
            serde_json::json!([]),
        ),
    ] {
        s.ok(method, route, Some(&s.admin), body);
        let last = s.recorded("secret.delete", "team/db").pop().unwrap();
        assert_eq!(last["details"]["versions"], changed, "{last}");
    }
    // A write names the version it made, and what it pruned.
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/team/db",
        Some(&s.admin),
        Some(serde_json::json!({ "max_versions": 2 })),
    );
    let settings = s
        .recorded("secret.metadata_write", "team/db")
        .pop()
        .unwrap();
    assert_eq!(settings["details"]["max_versions"], 2, "{settings}");
    common::write(&s, "team/db", "v3-Rk33");
    let written = s.recorded("secret.write", "team/db").pop().unwrap();
    assert_eq!(
        (
            &written["details"]["version"],
            &written["details"]["pruned_below"]
        ),
        (&serde_json::json!(3), &serde_json::json!(2)),
        "{written}"
    );
    // Restoring a version that is not deleted changes nothing, and says so.
    s.ok(
        "POST",
        "/api/v1/secrets/undelete/team/db",
        Some(&s.admin),
        Some(serde_json::json!({ "versions": [3] })),
    );
    let restored = s.recorded("secret.undelete", "team/db").pop().unwrap();
    assert_eq!(restored["details"]["versions"], serde_json::json!([]));
    // The first write of a secret made by its settings prunes nothing.
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/team/fresh",
        Some(&s.admin),
        Some(serde_json::json!({ "max_versions": 3 })),
    );
    common::write(&s, "team/fresh", "f1-Rk34");
    let first = s.recorded("secret.write", "team/fresh").pop().unwrap();
    assert!(first["details"].get("pruned_below").is_none(), "{first}");
}

#[test]
fn a_vault_patch_that_is_no_merge_patch_is_refused_before_the_token_is_looked_at() {
    let s = Server::start();
    let before = s.ledger().len();
    for (header, status, message) in [
        (
            "Content-Type: application/json\r\n",
            "415",
            "PATCH requires Content-Type of application/merge-patch+json, provided application/json",
        ),
        ("", "400", "mime: no media type"),
    ] {
        let answer = raw(
            &s,
            &format!(
                "PATCH /v1/secret/data/team/db HTTP/1.1\r\nHost: x\r\nX-Vault-Token: not-a-token\r\n\
                 {header}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            ),
        );
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains(message), "{answer}");
    }
    assert_eq!(s.ledger().len(), before, "nothing is recorded");
}

/// Whether the requests overlap depends on timing: the store's conformance test covers the
/// conflict itself deterministically; this one checks what callers are answered.
#[test]
fn a_name_added_twice_at_once_is_one_record_and_one_conflict() {
    let s = Server::start();
    for (route, body) in [
        (
            "/api/v1/people",
            serde_json::json!({ "name": "racer", "role": "member" }),
        ),
        (
            "/api/v1/vendors",
            serde_json::json!({ "name": "racevendor" }),
        ),
    ] {
        let statuses: Vec<(u16, String)> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| common::error(&s, "POST", route, &s.admin, Some(body.clone())))
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let made = statuses.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(made, 1, "{route}: {statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|(status, code)| *status == 200 || (*status == 409 && code == "exists")),
            "{route}: {statuses:?}"
        );
    }
}

#[test]
fn a_version_limit_that_prunes_history_needs_the_destroy_capability() {
    let s = Server::start();
    common::vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    let grant = |capabilities: serde_json::Value| {
        s.ok(
            "POST",
            "/api/v1/grants",
            Some(&s.admin),
            Some(serde_json::json!({ "person": "cy", "prefix": "acme/app",
                "capabilities": capabilities, "ttl": "1h", "reason": "migration" })),
        )
    };
    let first = grant(serde_json::json!(["read", "write", "list"]));
    for value in ["v1-Pq81", "v2-Pq82", "v3-Pq83"] {
        common::write(&s, "acme/app/db", value);
    }
    // With write alone, a lower limit (which would destroy versions 1 and 2 at the next
    // write) is refused on both APIs and recorded; other settings still change.
    let (status, body) = s.call(
        "PUT",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "max_versions": 1 })),
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("destroy capability"),
        "{body}"
    );
    let (status, body) = s.call(
        "POST",
        "/v1/secret/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "max_versions": 1, "custom_metadata": { "o": "p" } })),
        None,
    );
    assert_eq!(status, 403, "{body}");
    let refusals: Vec<_> = s
        .ledger()
        .into_iter()
        .filter(|e| {
            e["action"] == "secret.destroy"
                && e["resource"] == "acme/app/db"
                && e["outcome"] == "denied"
        })
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    let cy_id = s.ok("GET", "/api/v1/auth/self", Some(&cy_t), None)["person_id"].clone();
    assert!(
        refusals.iter().all(|r| r["actor"]["person"] == cy_id),
        "{refusals:?}"
    );
    // Nothing of a refused request was applied.
    let meta = s.ok(
        "GET",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&s.admin),
        None,
    );
    assert_eq!(meta["custom_metadata"], serde_json::json!({}), "{meta}");
    assert_eq!(meta["max_versions"], 0, "{meta}");
    // Raising the limit, or giving it as it is, destroys nothing: a write grant does it
    // (clients such as Terraform's send it with every metadata write).
    for limit in [20, 20] {
        s.ok(
            "POST",
            "/v1/secret/metadata/acme/app/db",
            Some(&cy_t),
            Some(serde_json::json!({ "max_versions": limit })),
        );
    }
    // Dropping the secret's own limit for the server's (0) is lowering it: the server's may
    // be lowered later.
    let (status, body) = s.call(
        "POST",
        "/v1/secret/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "max_versions": 0 })),
        None,
    );
    assert_eq!(status, 403, "{body}");
    // So is `null`, which Vault clients' Go decoding reads as 0.
    let (status, body) = s.call(
        "POST",
        "/v1/secret/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "max_versions": null })),
        None,
    );
    assert_eq!(status, 403, "{body}");
    // A body that names no setting changes nothing and records nothing, as in OpenBao.
    let writes = |s: &common::Server| {
        s.ledger()
            .into_iter()
            .filter(|e| e["action"] == "secret.metadata_write")
            .count()
    };
    let before = writes(&s);
    for body in [serde_json::json!({}), serde_json::json!({ "unknown": 1 })] {
        let (status, answer) = s.call(
            "POST",
            "/v1/secret/metadata/acme/app/db",
            Some(&cy_t),
            Some(body),
            None,
        );
        assert_eq!(status, 204, "{answer}");
    }
    assert_eq!(writes(&s), before);
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "custom_metadata": { "team": "cy" } })),
    );
    // Staff read what a vendor's person writes here: no terminal escapes or hidden text,
    // in a key or a value, on either API.
    for (method, path, labels) in [
        (
            "PUT",
            "/api/v1/secrets/metadata/acme/app/db",
            serde_json::json!({ "team": "cy\u{1b}[2J" }),
        ),
        (
            "POST",
            "/v1/secret/metadata/acme/app/db",
            serde_json::json!({ "te\u{200b}am": "cy" }),
        ),
        (
            "PATCH",
            "/v1/secret/metadata/acme/app/db",
            serde_json::json!({ "team": "\u{202e}yc" }),
        ),
    ] {
        let (status, body) = s.call(
            method,
            path,
            Some(&cy_t),
            Some(serde_json::json!({ "custom_metadata": labels })),
            None,
        );
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(body.to_string().contains("custom_metadata"), "{body}");
    }
    let meta = s.ok(
        "GET",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&s.admin),
        None,
    );
    assert_eq!(meta["custom_metadata"], serde_json::json!({ "team": "cy" }));
    // The `owner` key is named by staff (it decides who owns the secret's rotation finding
    // when the vendor is offboarded): a vendor's person may not set, change or remove it,
    // on either API, and the refusal is recorded.
    let owner_refusals = |s: &Server| {
        s.ledger()
            .into_iter()
            .filter(|e| {
                // Named by the secret's path, as the policy's own denials there are.
                e["action"] == "secret.metadata_write"
                    && e["outcome"] == "denied"
                    && e["reasons"] == serde_json::json!(["not_permitted"])
                    && e["resource"] == "acme/app/db"
            })
            .count()
    };
    let before = owner_refusals(&s);
    let (status, body) = s.call(
        "PUT",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "custom_metadata": { "team": "cy", "owner": "aud" } })),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_permitted")),
        "{body}"
    );
    let (status, body) = s.call(
        "POST",
        "/v1/secret/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "custom_metadata": { "owner": "aud" } })),
        None,
    );
    assert_eq!(status, 403, "{body}");
    // Through a percent-encoded path, named by the path it would have written.
    let (status, body) = s.call(
        "POST",
        "/v1/secret/metadata/acme/app%2Fdb",
        Some(&cy_t),
        Some(serde_json::json!({ "custom_metadata": { "owner": "aud" } })),
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(owner_refusals(&s), before + 3);
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&s.admin),
        Some(serde_json::json!({ "custom_metadata": { "team": "cy", "owner": "ann" } })),
    );
    // Sent as it is, or left out of a merge patch, it is no change.
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "custom_metadata": { "team": "cy", "owner": "ann" } })),
    );
    let (status, body) = s.call(
        "PATCH",
        "/v1/secret/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "custom_metadata": { "tier": "1" } })),
        None,
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = s.call(
        "PATCH",
        "/v1/secret/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "custom_metadata": { "owner": null } })),
        None,
    );
    assert_eq!(status, 403, "removing it is changing it: {body}");
    common::write(&s, "acme/app/db", "v4-Pq84");
    let meta = s.ok(
        "GET",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&s.admin),
        None,
    );
    assert_eq!(meta["versions"].as_array().unwrap().len(), 4, "{meta}");
    assert_eq!(meta["custom_metadata"]["owner"], "ann", "{meta}");
    assert_eq!(meta["custom_metadata"]["tier"], "1", "{meta}");
    // Allowed to destroy there, the same request sets the limit.
    s.ok(
        "DELETE",
        &format!("/api/v1/grants/{}", first["id"].as_str().unwrap()),
        Some(&s.admin),
        None,
    );
    grant(serde_json::json!(["read", "write", "list", "destroy"]));
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&cy_t),
        Some(serde_json::json!({ "max_versions": 1 })),
    );
}

#[test]
fn only_a_token_holder_has_answers_wrapped_and_unopened_wrappings_expire() {
    let s = Server::start();
    common::write(&s, "team/db", "wrapped-Tx71");
    let get = |path: &str, token: Option<&str>| {
        let mut request = ureq::http::Request::builder()
            .method("GET")
            .uri(format!("{}{path}", s.addr))
            .header("X-Vault-Wrap-TTL", "60");
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        let mut answer = s.agent.run(request.body(()).unwrap()).unwrap();
        let body: serde_json::Value = answer.body_mut().read_json().unwrap();
        (answer.status().as_u16(), body)
    };
    // Open routes answer as usual: nothing is stored or recorded for an anonymous caller.
    for path in ["/v1/sys/health", "/v1/sys/seal-status", "/v1/sys/init"] {
        let (status, body) = get(path, None);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.get("wrap_info").is_none(), "{path}: {body}");
        assert!(body.get("initialized").is_some(), "{path}: {body}");
    }
    let wrapped_entries = || {
        s.ledger()
            .into_iter()
            .filter(|e| e["action"].as_str().unwrap().starts_with("wrap."))
            .count()
    };
    assert_eq!(wrapped_entries(), 0);

    let (status, body) = get("/v1/secret/data/team/db", Some(&s.admin));
    assert_eq!(status, 200, "{body}");
    let accessor = body["wrap_info"]["accessor"].as_str().unwrap().to_owned();
    assert_eq!(wrapped_entries(), 1, "wrap.create");
    let created = s.recorded("wrap.create", "secret/data/team/db");
    assert!(created[0]["details"].get("status").is_none(), "{created:?}");
    // A read of a deleted version is wrapped as its 404, and its entry says so.
    common::write(&s, "team/gone", "deleted-Tx72");
    s.ok("DELETE", "/v1/secret/data/team/gone", Some(&s.admin), None);
    let (status, body) = get("/v1/secret/data/team/gone", Some(&s.admin));
    assert_eq!(status, 200, "{body}");
    let gone = s.recorded("wrap.create", "secret/data/team/gone");
    assert_eq!(gone[0]["details"]["status"], 404, "{gone:?}");
    let (status, unwrapped) = s.call(
        "POST",
        "/v1/sys/wrapping/unwrap",
        None,
        Some(serde_json::json!({ "token": body["wrap_info"]["token"] })),
        None,
    );
    assert_eq!(status, 404, "{unwrapped}");
    assert!(unwrapped["data"]["data"].is_null(), "{unwrapped}");
    assert_eq!(wrapped_entries(), 3, "wrap.create and wrap.unwrap");
    let sweep = || s.runtime.block_on(s.state.sweep()).unwrap().wrapped_expired;
    assert_eq!(sweep(), 0, "not expired yet");
    s.clock.advance_secs(61);
    assert_eq!(sweep(), 1);
    assert_eq!(sweep(), 0, "removed once");
    let expired = s.recorded("wrap.expire", "sys/wrapping");
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(
        expired[0]["details"]["accessors"],
        serde_json::json!([accessor])
    );

    // A login proves who asks with its password: its answer is wrapped when asked, and the
    // wrapping is the person's (recorded so, and deleted when their access ends).
    let mo = s.person("mo", "member", None);
    let wrapped_login = || {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}/v1/auth/userpass/login/mo", s.addr))
            .header("X-Vault-Wrap-TTL", "5m0s")
            .header("X-Vault-MFA", s.code(&mo, 0))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "password": mo.password }).to_string())
            .unwrap();
        let mut answer = s.agent.run(request).unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        // The next login must use a later step: codes are accepted once.
        s.clock.advance_secs(30);
        answer.body_mut().read_json::<serde_json::Value>().unwrap()
    };
    let unwrap = |body: &serde_json::Value| {
        s.call(
            "POST",
            "/v1/sys/wrapping/unwrap",
            None,
            Some(serde_json::json!({ "token": body["wrap_info"]["token"] })),
            None,
        )
    };
    let body = wrapped_login();
    assert!(body["auth"].is_null(), "{body}");
    assert_eq!(body["wrap_info"]["ttl"], 300, "{body}");
    let (status, unwrapped) = unwrap(&body);
    assert_eq!(status, 200, "{unwrapped}");
    assert!(
        unwrapped["auth"]["client_token"]
            .as_str()
            .unwrap()
            .starts_with("chp_")
    );
    let made = s.recorded("wrap.create", "auth/userpass/login/mo");
    assert!(made[0]["actor"]["person"].as_str().is_some(), "{made:?}");
    let unopened = wrapped_login();
    s.ok("POST", "/api/v1/people/mo/disable", Some(&s.admin), None);
    let (status, refused) = unwrap(&unopened);
    assert_eq!(status, 400, "deleted with the account's access: {refused}");

    // A wrap TTL that does not parse is refused before the read: nothing is read or
    // recorded as given.
    let reads = || s.recorded("secret.read", "team/db").len();
    let before = reads();
    let request = ureq::http::Request::builder()
        .method("GET")
        .uri(format!("{}/v1/secret/data/team/db", s.addr))
        .header("X-Vault-Token", &s.admin)
        .header("X-Vault-Wrap-TTL", "soon")
        .body(())
        .unwrap();
    let mut answer = s.agent.run(request).unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: serde_json::Value = answer.body_mut().read_json().unwrap();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("X-Vault-Wrap-TTL"),
        "{body}"
    );
    assert_eq!(reads(), before);

    // So is one longer than the server allows: checked before the read, or before a token
    // is made, not after it was made and recorded.
    let wrapped = |method: &str, path: &str, ttl: &str| {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", s.addr))
            .header("X-Vault-Token", &s.admin)
            .header("X-Vault-Wrap-TTL", ttl)
            .body(Vec::new())
            .unwrap();
        let mut answer = s.agent.run(request).unwrap();
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.body_mut().read_json().unwrap();
        (status, body)
    };
    let created = || {
        s.ledger()
            .iter()
            .filter(|e| e["action"] == "token.create")
            .count()
    };
    let tokens_before = created();
    for (method, path) in [
        ("GET", "/v1/secret/data/team/db"),
        ("POST", "/v1/auth/token/create"),
    ] {
        let (status, body) = wrapped(method, path, "100000h");
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["errors"][0].as_str().unwrap().contains("longer than"),
            "{body}"
        );
    }
    assert_eq!((reads(), created()), (before, tokens_before));

    // `LIST` names a listing only under `metadata/`: on a secret's data it reads nothing.
    for request in [
        "LIST /v1/secret/data/team/db",
        "GET /v1/secret/data/team/db?list=true",
    ] {
        let answer = raw(
            &s,
            &format!(
                "{request} HTTP/1.1\r\nHost: x\r\nX-Vault-Token: {}\r\nConnection: close\r\n\r\n",
                s.admin
            ),
        );
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    }
    assert_eq!(reads(), before);

    // HEAD on a native route that needs a credential would run the GET (a secret read,
    // recorded as given) and send nothing: 405 before anything runs. Public routes keep it.
    let head = |path: &str| {
        raw(
            &s,
            &format!(
                "HEAD {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                s.admin
            ),
        )
    };
    let answer = head("/api/v1/secrets/data/team/db");
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let answer = head("/api/v1/health");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(reads(), before);
}

#[test]
fn a_leaked_wrapping_is_revoked_by_its_accessor_by_its_maker_or_an_admin() {
    let s = Server::start();
    common::write(&s, "team/db", "wrapped-Vr61");
    let mia = s.person("mia", "member", None);
    let bob = s.person("bob", "member", None);
    let (mia_t, bob_t) = (s.login(&mia), s.login(&bob));
    let wrap = |token: &str| {
        let info = common::wrapped_read(&s, token, "team/db");
        (
            info["token"].as_str().unwrap().to_owned(),
            info["accessor"].as_str().unwrap().to_owned(),
        )
    };
    let revoke = |token: &str, accessor: &str| {
        s.call(
            "POST",
            "/v1/auth/token/revoke-accessor",
            Some(token),
            Some(serde_json::json!({ "accessor": accessor })),
            None,
        )
        .0
    };
    let unwrap = |wrapping: &str| {
        s.call(
            "POST",
            "/v1/sys/wrapping/unwrap",
            None,
            Some(serde_json::json!({ "token": wrapping })),
            None,
        )
        .0
    };
    let (first, first_accessor) = wrap(&mia_t);
    let (second, second_accessor) = wrap(&mia_t);
    // Someone else may not, and learns nothing of it.
    assert_eq!(revoke(&bob_t, &first_accessor), 400);
    // Its maker may; an admin may revoke anyone's.
    assert_eq!(revoke(&mia_t, &first_accessor), 204);
    assert_eq!(revoke(&s.admin, &second_accessor), 204);
    // Once: then it names nothing, which an admin is told with a warning (as OpenBao's
    // root token is), and its maker with `invalid accessor`.
    assert_eq!(revoke(&s.admin, &second_accessor), 200, "once");
    assert_eq!(revoke(&mia_t, &first_accessor), 400, "once");
    assert_eq!((unwrap(&first), unwrap(&second)), (400, 400));
    let revoked = s
        .ledger()
        .iter()
        .filter(|e| e["action"] == "wrap.revoke" && e["outcome"] == "success")
        .count();
    assert_eq!(revoked, 2);
    // The one left alone still opens, once.
    let (third, third_accessor) = wrap(&mia_t);
    assert_eq!(revoke(&bob_t, &third_accessor), 400);
    assert_eq!(unwrap(&third), 200);
    s.assert_no_secret_logged();
}

#[test]
fn a_wrapped_read_of_a_step_up_path_is_not_asked_for_step_up_again() {
    let s = Server::start();
    let max = s.person("max", "member", None);
    common::write(&s, "fin/ledger", "stepped-up-Wk70");
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(serde_json::json!({ "prefix": "fin", "level": "confidential" })),
    );
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            serde_json::json!({ "person": "max", "prefix": "fin", "capabilities": ["read"],
                                  "ttl": "1d", "reason": "month end" }),
        ),
    );
    // Logged in with a TOTP code: the read passes step-up, and is wrapped.
    let max_t = s.login(&max);
    let wrapped = common::wrapped_read(&s, &max_t, "fin/ledger")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Past the step-up window the maker could not read again without a code; the answer
    // they already read is still handed out.
    s.clock.advance_secs(20 * 60);
    assert_eq!(
        common::error(&s, "GET", "/api/v1/secrets/data/fin/ledger", &max_t, None),
        (403, "step_up_required".into())
    );
    let (status, body) = s.call(
        "POST",
        "/v1/sys/wrapping/unwrap",
        None,
        Some(serde_json::json!({ "token": wrapped })),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"]["password"], "stepped-up-Wk70");
}

#[test]
fn a_wrapped_value_is_not_handed_out_once_its_version_is_deleted_or_destroyed() {
    let s = Server::start();
    let unwrap = |token: &serde_json::Value| {
        s.call(
            "POST",
            "/v1/sys/wrapping/unwrap",
            None,
            Some(serde_json::json!({ "token": token })),
            None,
        )
    };
    common::write(&s, "team/db", "first-value-Qe31");
    common::write(&s, "team/api", "api-value-Ho22");
    common::write(&s, "team/old", "old-value-Ty09");
    let db = common::wrapped_read(&s, &s.admin, "team/db")["token"].clone();
    let api = common::wrapped_read(&s, &s.admin, "team/api")["token"].clone();
    let old = common::wrapped_read(&s, &s.admin, "team/old")["token"].clone();
    let kept = common::wrapped_read(&s, &s.admin, "team/db")["token"].clone();
    // A newer version leaves the older one readable, and its wrapping too.
    common::write(&s, "team/db", "second-value-Lp48");
    let (status, body) = unwrap(&kept);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"]["password"], "first-value-Qe31");

    s.ok(
        "POST",
        "/api/v1/secrets/destroy/team/db",
        Some(&s.admin),
        Some(serde_json::json!({ "versions": [1] })),
    );
    s.ok(
        "POST",
        "/api/v1/secrets/delete/team/api",
        Some(&s.admin),
        Some(serde_json::json!({ "versions": [1] })),
    );
    s.ok(
        "DELETE",
        "/api/v1/secrets/metadata/team/old",
        Some(&s.admin),
        None,
    );
    // Deleted whole and written again, its versions count from 1 again: the wrapped v1 is
    // still gone.
    s.clock.advance_secs(1);
    common::write(&s, "team/old", "new-value-Ty10");
    for (token, path, reason) in [
        (&db, "secret/data/team/db", "version_destroyed"),
        (&api, "secret/data/team/api", "version_deleted"),
        (&old, "secret/data/team/old", "version_gone"),
    ] {
        let (status, body) = unwrap(token);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(!body.to_string().contains("value-"), "{path}: {body}");
        let ledger = s.ledger();
        let refused = ledger
            .iter()
            .rfind(|e| e["action"] == "wrap.unwrap" && e["resource"] == path)
            .unwrap();
        assert_eq!(refused["outcome"], "denied", "{refused}");
        assert_eq!(refused["reasons"], serde_json::json!([reason]), "{refused}");
        // Consumed: an undelete does not bring it back.
        assert_eq!(unwrap(token).0, 400);
    }
    s.ok(
        "POST",
        "/api/v1/secrets/undelete/team/api",
        Some(&s.admin),
        Some(serde_json::json!({ "versions": [1] })),
    );
    assert_eq!(unwrap(&api).0, 400);
}

/// A wrapping token presented after it was unwrapped (or revoked) is recorded, and the
/// watch raises `link_reused` once for a used one: the recipient of a wrapping someone else
/// unwrapped first leaves a trace, where a token never made leaves none.
#[test]
fn a_wrapping_presented_after_it_was_used_is_recorded_and_raised() {
    let s = Server::start();
    common::write(&s, "team/db", "intercepted-Vx52");
    let sam = s.person("sam", "security", None);
    let max = s.person("max", "member", None);
    let max_t = s.login(&max);
    let unwrap = |token: &serde_json::Value, bearer: Option<&str>| {
        s.call(
            "POST",
            "/v1/sys/wrapping/unwrap",
            bearer,
            Some(serde_json::json!({ "token": token })),
            None,
        )
        .0
    };
    let refused = || -> Vec<serde_json::Value> {
        s.ledger()
            .into_iter()
            .filter(|e| e["action"] == "wrap.unwrap" && e["outcome"] == "denied")
            .collect()
    };
    let wrapping = common::wrapped_read(&s, &s.admin, "team/db");
    let (token, accessor) = (wrapping["token"].clone(), wrapping["accessor"].clone());
    // Someone else unwraps it first; the recipient, logged in, finds it spent.
    assert_eq!(unwrap(&token, None), 200);
    assert_eq!(unwrap(&token, Some(&max_t)), 400);
    let spent = refused();
    assert_eq!(spent.len(), 1, "{spent:?}");
    assert_eq!(spent[0]["reasons"], serde_json::json!(["used"]));
    assert_eq!(spent[0]["details"]["accessor"], accessor);
    assert!(spent[0]["actor"]["person"].is_string(), "{}", spent[0]);
    assert!(spent[0]["details"]["spent_time"].is_string());
    // Revoked: recorded as such, and no alert.
    let revoked = common::wrapped_read(&s, &s.admin, "team/db");
    s.ok(
        "POST",
        "/v1/auth/token/revoke-accessor",
        Some(&s.admin),
        Some(serde_json::json!({ "accessor": revoked["accessor"] })),
    );
    assert_eq!(unwrap(&revoked["token"], None), 400);
    assert_eq!(
        refused().last().unwrap()["reasons"],
        serde_json::json!(["revoked"])
    );
    // A token never made is answered alike, and not recorded.
    let before = s.ledger().len();
    assert_eq!(
        unwrap(
            &serde_json::json!("chp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            None
        ),
        400
    );
    assert_eq!(s.ledger().len(), before);

    let raised = s.runtime.block_on(s.state.sweep()).unwrap().anomalies;
    assert_eq!(raised, 1);
    let sam_t = s.login(&sam);
    let found = s.ok("GET", "/api/v1/findings?source=anomaly", Some(&sam_t), None);
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["details"]["kind"], "link_reused");
    assert_eq!(found[0]["details"]["link"], accessor);
    assert!(
        found[0]["title"].as_str().unwrap().contains("max"),
        "{}",
        found[0]
    );
}

/// `LIST secret/metadata/{folder}` answered wrapped; the wrapping token.
fn wrapped_listing(s: &Server, token: &str, folder: &str) -> String {
    common::wrapped(s, token, &format!("secret/metadata/{folder}?list=true"))["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_wrapped_listing_names_only_what_its_maker_may_still_list() {
    let s = Server::start();
    common::vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    common::write(&s, "acme/app/db", "wrapped-Qn52");
    common::write(&s, "acme/app/api", "wrapped-Zk17");
    let grant = |prefix: &str| {
        s.ok(
            "POST",
            "/api/v1/grants",
            Some(&s.admin),
            Some(serde_json::json!({ "person": "cy", "prefix": prefix,
                                      "capabilities": ["read", "list"],
                                      "ttl": "1h", "reason": "deploy" })),
        )["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    grant("acme/app/db");
    let api = grant("acme/app/api");
    let unwrap = |token: &str| {
        s.call(
            "POST",
            "/v1/sys/wrapping/unwrap",
            None,
            Some(serde_json::json!({ "token": token })),
            None,
        )
    };
    let before = wrapped_listing(&s, &cy_t, "acme/app");
    let (status, body) = unwrap(&before);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"], serde_json::json!(["api", "db"]));
    // One grant revoked after the listing was wrapped: its key is no longer named.
    let listed = wrapped_listing(&s, &cy_t, "acme/app");
    s.ok(
        "DELETE",
        &format!("/api/v1/grants/{api}"),
        Some(&s.admin),
        None,
    );
    let (status, body) = unwrap(&listed);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"], serde_json::json!(["db"]));
    // An admin's listing names everything still.
    let (status, body) = unwrap(&wrapped_listing(&s, &s.admin, "acme/app"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"], serde_json::json!(["api", "db"]));
}

#[test]
fn a_wrapping_is_not_handed_out_once_its_maker_may_no_longer_act() {
    let s = Server::start();
    common::vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    common::write(&s, "acme/app/db", "wrapped-Qn52");
    let grant = s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(serde_json::json!({ "person": "cy", "prefix": "acme/app",
                                  "capabilities": ["read", "list"],
                                  "ttl": "1h", "reason": "deploy" })),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrap = |token: &str| {
        common::wrapped_read(&s, token, "acme/app/db")["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let unwrap = |token: &str| {
        s.call(
            "POST",
            "/v1/sys/wrapping/unwrap",
            None,
            Some(serde_json::json!({ "token": token })),
            None,
        )
    };
    let by_contractor = wrap(&cy_t);
    let by_admin = wrap(&s.admin);
    let before_suspension = wrap(&cy_t);
    let vendor_status = |status: &str| {
        s.ok(
            "PUT",
            "/api/v1/vendors/acme",
            Some(&s.admin),
            Some(serde_json::json!({ "status": status, "reason": "review" })),
        );
    };
    vendor_status("suspended");

    // The maker's vendor is suspended: the wrapping is taken, refused and recorded.
    let (status, body) = unwrap(&before_suspension);
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        serde_json::json!({ "errors": ["wrapping token is not valid or does not exist"] })
    );
    let refused: Vec<serde_json::Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "wrap.unwrap")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["outcome"], "denied");
    assert_eq!(
        refused[0]["reasons"],
        serde_json::json!(["vendor_inactive"])
    );
    // Taken: the vendor's return does not bring it back.
    vendor_status("active");
    assert_eq!(unwrap(&before_suspension).0, 400);

    // The policy decides at the unwrap as at a read of the maker's own now: once the grant
    // that let them read is revoked, what they wrapped under it is not handed out, listings
    // (`LIST secret/metadata/acme/app`) included.
    let before_revocation = wrap(&cy_t);
    let listed = wrapped_listing(&s, &cy_t, "acme/app");
    s.ok(
        "DELETE",
        &format!("/api/v1/grants/{grant}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(unwrap(&before_revocation).0, 400);
    assert_eq!(unwrap(&listed).0, 400);
    let last = s
        .ledger()
        .into_iter()
        .rfind(|e| e["action"] == "wrap.unwrap")
        .unwrap();
    assert_eq!(
        (&last["outcome"], &last["reasons"]),
        (
            &serde_json::json!("denied"),
            &serde_json::json!(["not_permitted"])
        )
    );

    // Disabling the maker revokes what they wrapped with their tokens, in the same change
    // (an unwrap racing it finds nothing after it): re-enabling brings back neither the
    // wrapping nor the session; the maker logs in again.
    let unwraps = || {
        s.ledger()
            .into_iter()
            .filter(|e| e["action"] == "wrap.unwrap")
            .count()
    };
    let before = unwraps();
    s.ok("POST", "/api/v1/people/cy/disable", Some(&s.admin), None);
    s.ok("POST", "/api/v1/people/cy/enable", Some(&s.admin), None);
    assert_eq!(unwrap(&by_contractor).0, 400);
    // Deleted with the tokens: nothing was left to take, and the try is recorded as one of
    // a revoked wrapping.
    assert_eq!(unwraps(), before + 1);
    let last = s
        .ledger()
        .into_iter()
        .rfind(|e| e["action"] == "wrap.unwrap")
        .unwrap();
    assert_eq!(
        (&last["outcome"], &last["reasons"]),
        (
            &serde_json::json!("denied"),
            &serde_json::json!(["revoked"])
        )
    );
    // The disable's entry names the one answer still waiting.
    let disabled = s.recorded("person.disable", "cy");
    let named = disabled[0]["details"]["wrappings_revoked"]
        .as_array()
        .unwrap();
    assert_eq!(named.len(), 1, "{disabled:?}");
    assert!(named[0].as_str().unwrap().starts_with("wrap_"));
    assert_eq!(
        s.call("GET", "/api/v1/auth/self", Some(&cy_t), None, None)
            .0,
        401
    );
    let again = s.login(&cy);
    assert_eq!(
        s.call("GET", "/api/v1/auth/self", Some(&again), None, None)
            .0,
        200
    );

    // What a token of no person wrapped has no maker to lose.
    let (status, body) = unwrap(&by_admin);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"]["password"], "wrapped-Qn52");
}

#[test]
fn an_unknown_vault_route_answers_as_openbao_and_records_a_refused_token() {
    let s = Server::start();
    let (status, body) = s.call("GET", "/v1/nope/x", Some("chp_not-a-token"), None, None);
    assert_eq!(
        (status, body),
        (403, serde_json::json!({ "errors": ["permission denied"] }))
    );
    let (status, body) = s.call("GET", "/v1/nope/x", Some(&s.admin), None, None);
    assert_eq!(status, 404, "{body}");
    // The token tried there is in the ledger, as on any route; the valid one is not.
    let refused: Vec<_> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "route.unknown")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["outcome"], "denied");
    assert_eq!(
        refused[0]["reasons"],
        serde_json::json!(["unauthenticated"])
    );
}

/// A token pasted where a secret path belongs (`bao kv get secret/$TOKEN`) is refused as a
/// path and never written to the ledger, whoever asks and on either API.
#[test]
fn a_token_in_a_secret_path_never_reaches_the_ledger() {
    let s = Server::start();
    let mo = s.person("mo", "member", None);
    let mo_t = s.login(&mo);
    let pasted = s.login(&s.person("ann", "member", None));
    for (path, token) in [
        (format!("/v1/secret/data/{pasted}"), Some(mo_t.as_str())),
        (format!("/v1/secret/metadata/team/{pasted}"), None),
        (
            format!("/api/v1/secrets/data/team/{pasted}"),
            Some(mo_t.as_str()),
        ),
        (
            format!("/api/v1/secrets/data/{pasted}"),
            Some("chp_unknown"),
        ),
    ] {
        let (status, body) = s.call("GET", &path, token, None, None);
        assert!(
            matches!(status, 400 | 401 | 403 | 404),
            "{path}: {status} {body}"
        );
        assert!(!body.to_string().contains(&pasted), "{body}");
    }
    let ledger = serde_json::to_string(&s.ledger()).unwrap();
    assert!(!ledger.contains(&pasted[4..]), "a token reached the ledger");
}

/// `username` in a token's labels is how a login's token names its user: a token made by one
/// person may not name another there.
#[test]
fn a_token_names_only_its_maker_as_its_user() {
    let s = Server::start();
    let mo = s.person("mo", "member", None);
    s.person("mary", "member", None);
    let mo_t = s.login(&mo);
    let create = |meta: serde_json::Value| {
        s.call(
            "POST",
            "/v1/auth/token/create",
            Some(&mo_t),
            Some(serde_json::json!({ "meta": meta, "ttl": "1h" })),
            None,
        )
    };
    let denials = || {
        s.ledger()
            .into_iter()
            .filter(|e| e["outcome"] == "denied")
            .collect::<Vec<_>>()
    };
    let before = denials().len();
    let (status, body) = create(serde_json::json!({ "username": "mary" }));
    assert_eq!(status, 400, "{body}");
    // An attempt to pass for someone else is recorded, as a refusal.
    let refused = denials();
    assert_eq!(refused.len(), before + 1, "{refused:?}");
    assert_eq!(
        refused.last().unwrap()["reasons"],
        serde_json::json!(["invalid_request"])
    );
    let (status, body) = create(serde_json::json!({ "username": "mo", "job": "ci" }));
    assert_eq!(status, 200, "{body}");
    s.remember(body["auth"]["client_token"].as_str().unwrap());
}

/// A person's live tokens are bounded; a refusal at the bound, and a try at revoking someone
/// else's token, are recorded.
#[test]
fn token_refusals_are_recorded() {
    let s = Server::start();
    let mo = s.person("mo", "member", None);
    let mary = s.person("mary", "member", None);
    let mo_t = s.login(&mo);
    let mary_t = s.login(&mary);
    let refused = |code: &str| {
        s.ledger()
            .into_iter()
            .filter(|e| e["outcome"] == "denied" && e["reasons"] == serde_json::json!([code]))
            .count()
    };
    // Someone else's token is "no such token", and the try is recorded.
    let mary_self = s.ok("GET", "/api/v1/auth/self", Some(&mary_t), None);
    let mary_token = mary_self["token_id"].as_str().unwrap().to_owned();
    assert_eq!(
        common::error(
            &s,
            "DELETE",
            &format!("/api/v1/auth/tokens/{mary_token}"),
            &mo_t,
            None
        ),
        (404, "not_found".into())
    );
    assert_eq!(refused("not_found"), 1);
    s.ok("GET", "/api/v1/auth/self", Some(&mary_t), None);
    // The 1,000th live API token is the last (sessions are not counted).
    for _ in 0..1000 {
        s.ok(
            "POST",
            "/api/v1/auth/tokens",
            Some(&mo_t),
            Some(serde_json::json!({ "name": "ci", "ttl": "1h" })),
        );
    }
    assert_eq!(
        common::error(
            &s,
            "POST",
            "/api/v1/auth/tokens",
            &mo_t,
            Some(serde_json::json!({ "name": "ci", "ttl": "1h" }))
        ),
        (409, "token_quota".into())
    );
    assert_eq!(refused("token_quota"), 1);
}

/// A read through a percent-encoded path is wrapped under the path it read, where the unwrap
/// checks it again, and recorded so.
#[test]
fn a_wrapped_read_through_an_encoded_path_names_the_path_it_read() {
    let s = Server::start();
    common::write(&s, "team/app/db", "encoded-path-Kq27");
    let request = ureq::http::Request::builder()
        .method("GET")
        .uri(format!("{}/v1/secret/data/team/app%2Fdb", s.addr))
        .header("X-Vault-Token", &s.admin)
        .header("X-Vault-Wrap-TTL", "300")
        .body(())
        .unwrap();
    let mut answer = s.agent.run(request).unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = answer.body_mut().read_json().unwrap();
    assert_eq!(
        body["wrap_info"]["creation_path"], "secret/data/team/app/db",
        "{body}"
    );
    assert_eq!(
        s.recorded("wrap.create", "secret/data/team/app/db").len(),
        1
    );
    // Whoever unwraps with a token of their own is named with what they received.
    let mo = s.person("mo", "member", None);
    let mo_t = s.login(&mo);
    let (status, unwrapped) = s.call(
        "POST",
        "/v1/sys/wrapping/unwrap",
        Some(&mo_t),
        Some(serde_json::json!({ "token": body["wrap_info"]["token"] })),
        None,
    );
    assert_eq!(status, 200, "{unwrapped}");
    assert_eq!(unwrapped["data"]["data"]["password"], "encoded-path-Kq27");
    let taken = s.recorded("wrap.unwrap", "secret/data/team/app/db");
    assert_eq!(taken.len(), 1);
    let me = s.ok("GET", "/api/v1/auth/self", Some(&mo_t), None);
    assert_eq!(taken[0]["actor"]["person"], me["person_id"], "{taken:?}");
    assert!(taken[0]["actor"]["person"].is_string(), "{taken:?}");
}

/// Refusals of requests that show no credential the server knows cost their sender nothing:
/// they are recorded up to a budget per address and minute, and what is past it is counted
/// and recorded in one entry by the sweep.
#[test]
fn refusals_without_a_known_credential_are_recorded_up_to_a_budget() {
    let s = Server::start();
    let refused = |from: &str, n: usize| {
        for i in 0..n {
            let (status, _) = s.call(
                "GET",
                &format!("/v1/secret/data/flood/x{i}"),
                None,
                None,
                Some(from),
            );
            assert_eq!(status, 403);
        }
    };
    let recorded = || {
        s.ledger()
            .iter()
            .filter(|e| e["action"] == "secret.read" && e["outcome"] == "denied")
            .count()
    };
    refused("198.51.100.9", 30);
    assert_eq!(recorded(), 20, "twenty an address a minute");
    refused("203.0.113.7", 1);
    assert_eq!(recorded(), 21, "another address has its own");
    let report = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(report.refusals_suppressed, 10);
    let summary: Vec<serde_json::Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "auth.suppressed")
        .collect();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0]["details"]["refusals"], 10);
    assert_eq!(summary[0]["details"]["most"][0]["address"], "198.51.100.9");
    assert_eq!(
        s.runtime
            .block_on(s.state.sweep())
            .unwrap()
            .refusals_suppressed,
        0
    );
    // The next minute, the budget is back.
    s.clock.advance_secs(60);
    refused("198.51.100.9", 1);
    assert_eq!(recorded(), 22);
    // What is counted when the server stops is recorded then, not lost with the process.
    refused("198.51.100.9", 22);
    assert_eq!(recorded(), 41);
    s.shut_down();
    let summary: Vec<serde_json::Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "auth.suppressed")
        .collect();
    assert_eq!(summary.len(), 2, "{summary:?}");
    assert_eq!(summary[1]["details"]["refusals"], 3, "{summary:?}");
}

/// Bodies read before anyone is known are small, and large bodies are read within a budget
/// of bytes, of which one sender may hold a quarter: clients sending large bodies slowly on
/// many connections hold a bounded amount of memory, are answered `busy` past it, and one
/// sender cannot take it from the others; small requests go on.
#[test]
fn request_bodies_are_held_to_a_budget() {
    let s = Server::start();
    // A route anyone may call takes 16 KiB at most.
    let (status, body) = s.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(serde_json::json!({ "user": "ada", "password": "x".repeat(20 * 1024) })),
        None,
    );
    assert_eq!(status, 413, "{body}");
    // Writes of 1 MiB whose bodies have not arrived: each takes its share as the server
    // starts to read it.
    let head = |token: &str, path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            1024 * 1024
        )
    };
    let mut held = Vec::new();
    // Holds bodies until one is refused; the refusal.
    let mut hold_until_refused = |token: &str, path: &str| {
        for _ in 0..100 {
            let mut stream = TcpStream::connect(host_port(&s)).unwrap();
            stream.write_all(head(token, path).as_bytes()).unwrap();
            // A body not yet taken when this gives up waiting is taken, or refused, later:
            // either way, the loop goes on until one is refused.
            stream
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut buf = [0u8; 4096];
            if let Ok(n) = stream.read(&mut buf)
                && n > 0
            {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
            held.push(stream);
        }
        panic!("no body was refused");
    };
    // One sender holds a quarter of the 64 MiB at most.
    let refused = hold_until_refused(&s.admin, "/v1/secret/data/team/large");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("as one sender may"), "{refused}");
    // Three more senders take the rest, and then nobody sends a large body.
    let mut senders = Vec::new();
    for name in ["m1", "m2", "m3", "m4"] {
        let person = s.person(name, "member", None);
        senders.push(s.login(&person));
    }
    for token in &senders[..3] {
        let refused = hold_until_refused(token, "/v1/sys/wrapping/wrap");
        assert!(refused.contains("as one sender may"), "{refused}");
    }
    let refused = hold_until_refused(&senders[3], "/v1/sys/wrapping/wrap");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("large request bodies"), "{refused}");
    // Small bodies go on.
    common::write(&s, "team/small", "small-body-Hx82");
    // Once the held bodies are gone, a large one is read again.
    drop(held);
    let value = "v".repeat(100 * 1024);
    let mut read = 0;
    for _ in 0..100 {
        let (status, _) = s.call(
            "POST",
            "/v1/secret/data/team/large",
            Some(&s.admin),
            Some(serde_json::json!({ "data": { "k": value } })),
            None,
        );
        read = status;
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read, 200);
}

/// A database file moved, replaced or deleted under the running server (or its lock file,
/// which lets another server start on the path) takes no more writes: each would be lost
/// with the file. Readiness says so.
#[test]
fn a_database_moved_under_the_server_takes_no_more_writes() {
    for moved in ["t.db", "t.db-wal", "t.db.lock"] {
        let s = Server::start();
        common::write(&s, "team/before", "before-Tq55");
        let path = s._dir.path().join(moved);
        std::fs::rename(&path, s._dir.path().join("aside")).unwrap();
        // Readiness says so before any write fails on it.
        let (status, body) = s.call("GET", "/api/v1/ready", None, None, None);
        assert_eq!(status, 503, "{moved}: {body}");
        assert_eq!(
            body["reasons"],
            serde_json::json!(["database_moved"]),
            "{moved}"
        );
        let (status, body) = s.call(
            "POST",
            "/v1/secret/data/team/after",
            Some(&s.admin),
            Some(serde_json::json!({ "data": { "k": "after-Tq55" } })),
            None,
        );
        assert!(status >= 500, "{moved}: {status} {body}");
        // Put back, it is the same file again, but another server may have opened the path
        // meanwhile: this one writes nothing more until it is restarted.
        std::fs::rename(s._dir.path().join("aside"), &path).unwrap();
        let (status, _) = s.call("GET", "/api/v1/ready", None, None, None);
        assert_eq!(status, 503, "{moved}");
        let (status, _) = s.call(
            "POST",
            "/v1/secret/data/team/after",
            Some(&s.admin),
            Some(serde_json::json!({ "data": { "k": "after-Tq55" } })),
            None,
        );
        assert!(status >= 500, "{moved}: {status}");
    }
}

/// A vendor's people upload one deliverable at a time: one of them sending slowly holds
/// one of the few upload slots, not all of them.
#[test]
fn one_upload_at_a_time_per_vendor() {
    let s = Server::start();
    common::vendor(&s, "acme");
    common::vendor(&s, "beta");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    let di = s.person("di", "contractor", Some("acme"));
    let di_t = s.login(&di);
    let bo = s.person("bo", "contractor", Some("beta"));
    let bo_t = s.login(&bo);
    let upload = |token: &str| {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}/api/v1/deliverables?name=notes.txt", s.addr))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/octet-stream")
            .body(b"release notes".to_vec())
            .unwrap();
        let mut answer = s.agent.run(request).unwrap();
        let status = answer.status().as_u16();
        (status, answer.body_mut().read_to_string().unwrap())
    };
    // Cy's upload, whose body does not come. While di's own is in flight, cy's may be the
    // one refused (one at a time): then cy starts again.
    let head = format!(
        "POST /api/v1/deliverables?name=big.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {cy_t}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 1000000\r\n\r\n"
    );
    let mut refused = None;
    let mut slow = None;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(host_port(&s)).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 512];
        if matches!(stream.read(&mut buf), Ok(n) if n > 0) {
            continue; // cy's was answered (refused): again
        }
        let (status, body) = upload(&di_t);
        if status == 429 {
            refused = Some(body);
            slow = Some(stream);
            break;
        }
        // Di's went through before cy's was taken: again.
    }
    let body = refused.expect("di's upload waits for cy's");
    assert!(body.contains("another upload of yours"), "{body}");
    // Another vendor's person uploads meanwhile.
    let (status, body) = upload(&bo_t);
    assert_eq!(status, 200, "{body}");
    drop(slow);
    let mut passed = false;
    for _ in 0..100 {
        if upload(&di_t).0 == 200 {
            passed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(passed, "once cy's upload is gone, di uploads");
}
