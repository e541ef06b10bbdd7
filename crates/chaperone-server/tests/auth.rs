//! Identity, MFA and authorisation through the HTTP API of an in-process server with a
//! manual clock (time is moved, never slept).
//!
//! Every test also checks that no password, TOTP secret, recovery code, enrolment code or
//! token it handled appears in the captured logs.

mod common;

use chaperone_crypto::totp::TotpSecret;
use chaperone_server::route_table;
use common::{Server, error};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Login, TOTP, recovery codes

#[test]
fn login_needs_the_second_factor_and_each_code_works_once() {
    let s = Server::start();
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active" })),
    );
    let c = s.person("carol", "contractor", Some("acme"));
    let login = |body: Value| s.call("POST", "/api/v1/auth/login", None, Some(body), None);

    // A contractor's password alone is worth nothing.
    let (status, body) = login(json!({ "user": "carol", "password": c.password }));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("mfa_required"))
    );
    let code = s.code(&c, 0);
    let (status, body) = login(json!({ "user": "carol", "password": c.password, "totp": code }));
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    s.remember(&token);
    // The same code again, even within its window, is refused.
    let (status, _) = login(json!({ "user": "carol", "password": c.password, "totp": code }));
    assert_eq!(status, 401);
    // One step late is still fine; a wrong code is not.
    s.clock.advance_secs(30);
    let (status, _) =
        login(json!({ "user": "carol", "password": c.password, "totp": s.code(&c, -1) }));
    assert_eq!(status, 401, "the previous step was already used");
    let (status, _) =
        login(json!({ "user": "carol", "password": c.password, "totp": s.code(&c, 1) }));
    assert_eq!(status, 200);
    // A recovery code works once.
    let (status, _) =
        login(json!({ "user": "carol", "password": c.password, "recovery_code": c.recovery[0] }));
    assert_eq!(status, 200);
    let (status, _) =
        login(json!({ "user": "carol", "password": c.password, "recovery_code": c.recovery[0] }));
    assert_eq!(status, 401);
    let (status, body) =
        login(json!({ "user": "carol", "password": "not-hers", "totp": s.code(&c, 1) }));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    // The ledger names the factor that was wrong (a right password with a wrong code means
    // someone else may know the password); the answers all say `invalid_credentials`.
    let refused: Vec<(Value, Value)> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "auth.login" && e["outcome"] == "denied")
        .map(|e| (e["reasons"].clone(), e["details"].clone()))
        .collect();
    let wrong = |factor: &str| (json!(["invalid_credentials"]), json!({ "wrong": factor }));
    assert_eq!(
        refused,
        [
            (json!(["mfa_required"]), json!({ "password": "right" })),
            wrong("totp"),
            wrong("totp"),
            wrong("recovery_code"),
            wrong("password"),
        ]
    );

    // The session works, and knows who it is.
    let me = s.ok("GET", "/api/v1/auth/self", Some(&token), None);
    assert_eq!(
        (
            me["person"].as_str(),
            me["role"].as_str(),
            me["kind"].as_str()
        ),
        (Some("carol"), Some("contractor"), Some("session"))
    );
    // An enrolment code works once; weak passwords are refused.
    let added = s.ok(
        "POST",
        "/api/v1/people",
        Some(&s.admin),
        Some(json!({ "name": "dan", "role": "member" })),
    );
    let code = added["enrolment_code"].as_str().unwrap();
    s.remember(code);
    let (status, body) = s.call(
        "POST",
        "/api/v1/auth/enroll",
        None,
        Some(json!({ "code": code, "password": "password1234" })),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("weak_password"))
    );
    s.ok(
        "POST",
        "/api/v1/auth/enroll",
        None,
        Some(json!({ "code": code, "password": "long-enough-Jq7xPz" })),
    );
    let (status, _) = s.call(
        "POST",
        "/api/v1/auth/enroll",
        None,
        Some(json!({ "code": code, "password": "long-enough-Jq7xPz" })),
        None,
    );
    assert_eq!(status, 401);
    s.remember("long-enough-Jq7xPz");
    // A disabled account's code is dead, and stays dead when the account comes back.
    let added = s.ok(
        "POST",
        "/api/v1/people",
        Some(&s.admin),
        Some(json!({ "name": "eve", "role": "member" })),
    );
    let eve_code = added["enrolment_code"].as_str().unwrap().to_owned();
    s.remember(&eve_code);
    s.ok("POST", "/api/v1/people/eve/disable", Some(&s.admin), None);
    s.ok("POST", "/api/v1/people/eve/enable", Some(&s.admin), None);
    let (status, _) = s.call(
        "POST",
        "/api/v1/auth/enroll",
        None,
        Some(json!({ "code": eve_code, "password": "long-enough-Jq7xPz" })),
        None,
    );
    assert_eq!(status, 401);
    // Failed enrolments are recorded: under the account for its code, under no name for
    // a made-up one; the code never.
    let (status, _) = s.call(
        "POST",
        "/api/v1/auth/enroll",
        None,
        Some(json!({ "code": "made-up-code-Hq2w", "password": "long-enough-Jq7xPz" })),
        None,
    );
    assert_eq!(status, 401);
    let refused: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "auth.enroll" && e["outcome"] == "denied")
        .map(|e| e["resource"].clone())
        .collect();
    assert_eq!(refused, [json!("dan"), json!("eve"), json!("")]);
    assert!(
        !serde_json::to_string(&s.ledger())
            .unwrap()
            .contains("made-up-code")
    );
    // Guessing codes from one address locks the address; an enrolment refused so is
    // recorded too (within the address's budget), as a refused login is.
    let guess = || {
        s.call(
            "POST",
            "/api/v1/auth/enroll",
            None,
            Some(json!({ "code": "guessed-code-Wd81", "password": "long-enough-Jq7xPz" })),
            Some("203.0.113.9"),
        )
        .0
    };
    let tries = (1..=100).take_while(|_| guess() != 429).count();
    assert!(tries < 100, "the address was never locked");
    let locked: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| {
            e["action"] == "auth.enroll"
                && e["outcome"] == "denied"
                && e["reasons"] == json!(["locked"])
        })
        .collect();
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0]["client_ip"], "203.0.113.9");
    s.assert_no_secret_logged();
}

#[test]
fn failures_lock_accounts_and_addresses_without_revealing_accounts() {
    let s = Server::start_password_only();
    let ada = s.person("ada", "member", None);
    let login = |user: &str, password: &str, from: &str| {
        s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": user, "password": password })),
            Some(from),
        )
    };
    // A wrong password and an unknown account look the same.
    let wrong = login("ada", "wrong-password-123", "198.51.100.1");
    let unknown = login("nobody", "wrong-password-123", "198.51.100.2");
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown);
    // Ten failures on one account, from different addresses, lock it.
    for i in 3..=11 {
        assert_eq!(
            login("ada", "wrong-password-123", &format!("198.51.100.{i}")).0,
            401
        );
    }
    let (status, body) = login("ada", &ada.password, "198.51.100.50");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("locked"))
    );
    // An admin lifts it.
    s.ok("POST", "/api/v1/people/ada/unlock", Some(&s.admin), None);
    assert_eq!(login("ada", &ada.password, "198.51.100.51").0, 200);
    // The unlock changed the account's state, so it is recorded; one with nothing to lift
    // is not.
    s.ok("POST", "/api/v1/people/ada/unlock", Some(&s.admin), None);
    assert_eq!(s.recorded("person.unlock", "ada").len(), 1);

    // Ten failures from one address lock that address, for every account, known or not.
    for _ in 0..10 {
        login("ghost", "wrong-password-123", "203.0.113.5");
    }
    assert_eq!(login("ada", &ada.password, "203.0.113.5").0, 429);
    assert_eq!(login("ghost", "wrong-password-123", "203.0.113.5").0, 429);
    // Attempts past the lockout add nothing: they are not counted as failures (the lockout
    // still lifts a window after the attempts that reached it), and their refusals are
    // recorded within the address's budget of 20 a minute, the rest counted for the
    // sweep's summary.
    let locked = || {
        s.ledger()
            .iter()
            .filter(|e| e["action"] == "auth.login" && e["reasons"] == json!(["locked"]))
            .count()
    };
    assert_eq!(locked(), 3, "ada's, and two from the locked address");
    // Ten minutes on, still locked; tried again and again, the lockout does not move.
    s.clock.advance_secs(10 * 60);
    for _ in 0..40 {
        assert_eq!(login("ghost", "wrong-password-123", "203.0.113.5").0, 429);
    }
    assert_eq!(locked(), 3 + 20, "twenty from the address a minute");
    let report = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(report.refusals_suppressed, 20);
    // The lockout lifts by itself a window after the failures that reached it.
    s.clock.advance_secs(6 * 60);
    assert_eq!(login("ada", &ada.password, "203.0.113.5").0, 200);
    s.assert_no_secret_logged();
}

/// An address's lockout says so, and an administrator lifts it (an account's lockout
/// stays).
#[test]
fn an_address_lockout_is_named_and_lifted_by_an_administrator() {
    let s = Server::start_password_only();
    let ada = s.person("ada", "member", None);
    let login = |user: &str, password: &str| {
        s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": user, "password": password })),
            Some("203.0.113.5"),
        )
    };
    for i in 0..10 {
        assert_eq!(login(&format!("ghost{i}"), "wrong-password-123").0, 401);
    }
    let (status, body) = login("ada", &ada.password);
    assert_eq!(status, 429);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("from this address (203.0.113.5)") && message.contains("--ip"),
        "{message}"
    );
    let unlock = |address: &str| {
        s.call(
            "POST",
            "/api/v1/auth/unlock-address",
            Some(&s.admin),
            Some(json!({ "address": address })),
            None,
        )
    };
    assert_eq!(unlock("not an address").0, 400);
    assert_eq!(unlock(" 203.0.113.5 ").0, 204);
    assert_eq!(login("ada", &ada.password).0, 200);
    // Recorded once: a second unlock had nothing to lift.
    assert_eq!(unlock("203.0.113.5").0, 204);
    assert_eq!(s.recorded("address.unlock", "203.0.113.5").len(), 1);
    // A contractor may not.
    common::vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    let (status, _) = s.call(
        "POST",
        "/api/v1/auth/unlock-address",
        Some(&cy_t),
        Some(json!({ "address": "203.0.113.5" })),
        None,
    );
    assert_eq!(status, 403);
}

/// An account's failures from the networks it logs in from count apart from the rest:
/// whoever knows its name cannot lock its owner out where they usually log in.
#[test]
fn guesses_from_elsewhere_do_not_lock_the_owner_out_where_they_log_in() {
    let s = Server::start();
    let ada = s.person("ada", "member", None);
    let login = |password: &str, totp: Option<String>, from: &str| {
        let (status, body) = s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": "ada", "password": password, "totp": totp })),
            Some(from),
        );
        if status == 200 {
            s.remember(body["token"].as_str().unwrap());
            // Codes are accepted once a step.
            s.clock.advance_secs(30);
        }
        (status, body["error"]["code"].clone())
    };
    let right = |from: &str| login(&ada.password, Some(s.code(&ada, 0)), from);
    let wrong = |from: &str| login("wrong-password-123", None, from);
    // Ada logs in from her office and from home.
    assert_eq!(right("192.0.2.10").0, 200);
    assert_eq!(right("2001:db8:1:2::7").0, 200);
    // A right password without its code does not make a network familiar.
    assert_eq!(
        login(&ada.password, None, "203.0.113.7"),
        (401, json!("mfa_required"))
    );
    // Nine wrong passwords from elsewhere (ten failures with the attempt without a code)
    // lock the account everywhere else...
    for i in 1..=9 {
        assert_eq!(wrong(&format!("198.51.100.{i}")).0, 401);
    }
    assert_eq!(right("198.51.100.50"), (429, json!("locked")));
    // ...but not where she logs in (her home /64 included).
    assert_eq!(right("192.0.2.10").0, 200);
    assert_eq!(right("2001:db8:1:2::99").0, 200);
    assert_eq!(right("203.0.113.7"), (429, json!("locked")));
    // Guesses from her networks have their own bucket, locked the same way: six from one
    // and four from the other (neither address reaches its own limit).
    for _ in 0..6 {
        assert_eq!(wrong("192.0.2.10").0, 401);
    }
    for _ in 0..4 {
        assert_eq!(wrong("2001:db8:1:2::7").0, 401);
    }
    assert_eq!(right("192.0.2.10"), (429, json!("locked")));
    // An unlock lifts both.
    s.ok("POST", "/api/v1/people/ada/unlock", Some(&s.admin), None);
    assert_eq!(right("198.51.100.50").0, 200);
    assert_eq!(right("192.0.2.10").0, 200);

    // A reset forgets the networks the account logged in from: whoever used the old
    // credentials may have logged in from theirs.
    let reset = s.ok("POST", "/api/v1/people/ada/reset", Some(&s.admin), None);
    let code = reset["enrolment_code"].as_str().unwrap().to_owned();
    s.remember(&code);
    let password = "new-password-Lk29vQ";
    s.remember(password);
    let enrolled = s.ok(
        "POST",
        "/api/v1/auth/enroll",
        None,
        Some(json!({ "code": code, "password": password })),
    );
    let ada = common::Person {
        password: password.to_owned(),
        totp: TotpSecret::from_base32(enrolled["totp_secret"].as_str().unwrap()).unwrap(),
        ..ada
    };
    for i in 1..=10 {
        assert_eq!(wrong(&format!("198.51.100.{i}")).0, 401);
    }
    assert_eq!(
        login(&ada.password, Some(s.code(&ada, 0)), "192.0.2.10"),
        (429, json!("locked"))
    );
    s.assert_no_secret_logged();
}

/// A lost password or authenticator: the account's credentials are cleared, its sessions
/// and tokens end, its lockout lifts, and a new enrolment code is handed out; the person
/// and security are told.
#[test]
fn a_reset_replaces_lost_credentials_and_tells_the_person_and_security() {
    let s = Server::start();
    common::vendor(&s, "acme");
    let sam = s.person_with_email("sam", "security", None, Some("sam@example.com"));
    let sam_t = s.login(&sam);
    let cy = s.person_with_email("cy", "contractor", Some("acme"), Some("cy@example.com"));
    let session = s.login(&cy);
    let api_token = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&session),
        Some(json!({ "ttl": "1h" })),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    s.remember(&api_token);
    let login_from = |person: &common::Person, password: &str, from: &str| {
        s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": person.name, "password": password,
                         "totp": s.code(person, 0) })),
            Some(from),
        )
    };
    let login =
        |person: &common::Person, password: &str| login_from(person, password, "203.0.113.9");
    // The account is locked by wrong passwords from many addresses.
    for i in 1..=10 {
        login_from(&cy, "wrong-password-123", &format!("198.51.100.{i}"));
    }
    assert_eq!(login(&cy, &cy.password).0, 429);

    let reset = |by: &str, name: &str| {
        s.call(
            "POST",
            &format!("/api/v1/people/{name}/reset"),
            Some(by),
            None,
            None,
        )
    };
    let (status, first) = reset(&sam_t, "cy");
    assert_eq!(status, 200, "{first}");
    let (status, answer) = reset(&sam_t, "cy");
    assert_eq!(status, 200, "{answer}");
    let code = answer["enrolment_code"].as_str().unwrap().to_owned();
    let first_code = first["enrolment_code"].as_str().unwrap().to_owned();
    s.remember(&code);
    s.remember(&first_code);
    // What the person held is gone.
    for token in [&session, &api_token] {
        assert_eq!(
            s.call("GET", "/api/v1/auth/self", Some(token), None, None)
                .0,
            401
        );
    }
    assert_eq!(login(&cy, &cy.password).0, 401);
    let recovery = s.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "user": "cy", "password": cy.password, "recovery_code": cy.recovery[1] })),
        None,
    );
    assert_eq!(recovery.0, 401, "{}", recovery.1);
    let people = s.ok("GET", "/api/v1/people", Some(&s.admin), None);
    let listed = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cy")
        .unwrap();
    assert_eq!(listed["enrolled"], false);
    // The first code ended with the second reset; the second enrols once.
    let enroll = |code: &str| {
        s.call(
            "POST",
            "/api/v1/auth/enroll",
            None,
            Some(json!({ "code": code, "password": "a-new-Passw0rd-for-cy" })),
            None,
        )
    };
    assert_ne!(enroll(&first_code).0, 200);
    let (status, enrolled) = enroll(&code);
    assert_eq!(status, 200, "{enrolled}");
    s.remember(enrolled["totp_secret"].as_str().unwrap());
    assert_ne!(enroll(&code).0, 200);
    let renewed = common::Person {
        name: "cy".into(),
        password: "a-new-Passw0rd-for-cy".into(),
        totp: chaperone_crypto::totp::TotpSecret::from_base32(
            enrolled["totp_secret"].as_str().unwrap(),
        )
        .unwrap(),
        recovery: Vec::new(),
    };
    s.remember(&renewed.password);
    // The lockout was lifted with the reset.
    let (status, body) = login(&renewed, &renewed.password);
    assert_eq!(status, 200, "{body}");
    let cy_t = body["token"].as_str().unwrap().to_owned();
    s.remember(&cy_t);
    // Whoever reset the account was handed its code, as its creator was: they do not
    // approve its requests.
    let asked = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cy_t),
        Some(json!({ "prefix": "acme/app", "capabilities": ["read"],
                     "reason": "deploy", "duration": "1d" })),
    );
    let id = asked["id"].as_str().unwrap();
    let (status, body) = s.call(
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        Some(&sam_t),
        Some(json!({})),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("created_requester")),
        "{body}"
    );
    // Whoever resets an account holds it: security does not reset one that holds grants
    // (its grants would be theirs); an admin does, and the reset closes its pending
    // requests, whose approval would go to whoever enrols next.
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme/app", "capabilities": ["read"],
                     "ttl": "1h", "reason": "incident 7" }),
        ),
    );
    let (status, body) = reset(&sam_t, "cy");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("holds_grants")),
        "{body}"
    );
    let (status, body) = reset(&s.admin, "cy");
    assert_eq!(status, 200, "{body}");
    s.remember(body["enrolment_code"].as_str().unwrap());
    let requests = s.ok("GET", "/api/v1/requests", Some(&s.admin), None);
    let closed = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap();
    assert_eq!(closed["status"], "cancelled", "{closed}");
    assert_eq!(
        s.recorded("person.reset", "cy")[2]["details"]["requests_closed"],
        1
    );

    // Recorded, and told to the person and to security, without the code.
    let entries = s.recorded("person.reset", "cy");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1]["details"]["requests_closed"], 0);
    let notes = s.ok("GET", "/api/v1/notifications", Some(&s.admin), None);
    let told: Vec<&Value> = notes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "credentials_reset")
        .collect();
    assert_eq!(told.len(), 3, "{notes}");
    let to: Vec<&str> = told[0]["to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(to.len(), 2, "{notes}");

    // Who may reset whom: security resets contractors and auditors, not staff; nobody
    // resets a disabled account.
    s.person("apu", "approver", None);
    let (status, body) = reset(&sam_t, "apu");
    assert_eq!(status, 403, "{body}");
    s.person("ada", "admin", None);
    assert_eq!(reset(&sam_t, "ada").0, 403);
    assert_eq!(reset(&s.admin, "apu").0, 200);
    s.ok("POST", "/api/v1/people/cy/disable", Some(&s.admin), None);
    let (status, body) = reset(&s.admin, "cy");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("disabled"))
    );
    assert_eq!(reset(&s.admin, "nobody").0, 404);
    s.assert_no_secret_logged();
}

#[test]
fn network_allowlists_apply_to_logins_and_tokens() {
    let s = Server::start();
    let m = s.person("mia", "member", None);
    let token = s.login(&m);
    s.ok("GET", "/api/v1/auth/self", Some(&token), None);
    s.ok(
        "PUT",
        "/api/v1/people/mia/networks",
        Some(&s.admin),
        Some(json!({ "networks": ["10.0.0.0/8"] })),
    );
    // The test client connects from 127.0.0.1, outside the list.
    let (status, body) = s.call("GET", "/api/v1/auth/self", Some(&token), None, None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("network_not_allowed"))
    );
    let (status, _) = s.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "user": "mia", "password": m.password })),
        None,
    );
    assert_eq!(status, 403);
    // Through the trusted proxy, from inside the list, it works.
    let (status, _) = s.call(
        "GET",
        "/api/v1/auth/self",
        Some(&token),
        None,
        Some("10.1.2.3"),
    );
    assert_eq!(status, 200);
    // A forwarded address that cannot be read is unknown, and unknown is outside the list.
    let (status, _) = s.call(
        "GET",
        "/api/v1/auth/self",
        Some(&token),
        None,
        Some("10.1.2.3, garbage"),
    );
    assert_eq!(status, 403);
    // A vendor's list applies to all its people.
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active", "networks": ["192.0.2.0/24"] })),
    );
    let c = s.person("cal", "contractor", Some("acme"));
    let body = json!({ "user": "cal", "password": c.password, "totp": s.code(&c, 0) });
    assert_eq!(
        s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(body.clone()),
            Some("198.51.100.7")
        )
        .0,
        403
    );
    assert_eq!(
        s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(body),
            Some("192.0.2.7")
        )
        .0,
        200
    );
    s.assert_no_secret_logged();
}

#[test]
fn confidential_reads_need_step_up_and_scoped_tokens_carry_scope() {
    let s = Server::start_password_only();
    let m = s.person("max", "member", None);
    s.ok(
        "PUT",
        "/api/v1/secrets/data/fin/ledger",
        Some(&s.admin),
        Some(json!({ "data": { "k": "v" } })),
    );
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "fin", "level": "confidential" })),
    );
    s.ok("POST", "/api/v1/grants", Some(&s.admin), Some(json!({ "person": "max", "prefix": "fin", "capabilities": ["read", "list"], "ttl": "7d", "reason": "incident 7" })));
    // A member logs in without TOTP (not required for members): no step-up yet.
    let body = json!({ "user": "max", "password": m.password });
    let token = s.ok("POST", "/api/v1/auth/login", None, Some(body))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    s.remember(&token);
    let (status, body) = s.call(
        "GET",
        "/api/v1/secrets/data/fin/ledger",
        Some(&token),
        None,
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("step_up_required"))
    );
    // Metadata needs no step-up.
    s.ok(
        "GET",
        "/api/v1/secrets/metadata/fin/ledger",
        Some(&token),
        None,
    );
    let (status, _) = s.call(
        "POST",
        "/api/v1/auth/verify",
        Some(&token),
        Some(json!({ "totp": "000000" })),
        None,
    );
    assert_eq!(status, 401);
    s.ok(
        "POST",
        "/api/v1/auth/verify",
        Some(&token),
        Some(json!({ "totp": s.code(&m, 0) })),
    );
    assert_eq!(
        s.ok("GET", "/api/v1/secrets/data/fin/ledger", Some(&token), None)["data"]["k"],
        "v"
    );
    // Both are in the ledger: a wrong code on a stolen session leaves a trace.
    let verified: Vec<(String, Value)> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "auth.verify" && e["resource"] == "max")
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().to_owned(),
                e["reasons"].clone(),
            )
        })
        .collect();
    assert_eq!(
        verified,
        [
            ("denied".to_owned(), json!(["invalid_credentials"])),
            ("success".to_owned(), json!([]))
        ]
    );
    // A scoped automation token reads within its scope without step-up, and nothing else.
    let scoped = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&token),
        Some(json!({ "ttl": "1h", "scope": [{ "prefix": "fin", "capabilities": ["read"] }] })),
    );
    let scoped = scoped["token"].as_str().unwrap().to_owned();
    s.remember(&scoped);
    // A token scoped to everything (or to a folder above the classified one) was not made
    // for the confidential data: it reads there only with a step-up, which it cannot make.
    let broad = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&token),
        Some(json!({ "ttl": "90d", "scope": [{ "prefix": "", "capabilities": ["read"] }] })),
    );
    let broad = broad["token"].as_str().unwrap().to_owned();
    s.remember(&broad);
    // Tokens that are not a login session (an API token, a Vault child of the session)
    // cannot step up, even with the right code: their verification would outlive the
    // session (a child would mint tokens that survive the logout).
    let unscoped = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&token),
        Some(json!({ "ttl": "8h" })),
    );
    let unscoped = unscoped["token"].as_str().unwrap().to_owned();
    s.remember(&unscoped);
    let child = s.ok(
        "POST",
        "/v1/auth/token/create",
        Some(&token),
        Some(json!({ "ttl": "1h" })),
    );
    let child = child["auth"]["client_token"].as_str().unwrap().to_owned();
    s.remember(&child);
    s.clock.advance_secs(16 * 60);
    for other in [&unscoped, &child] {
        assert_eq!(
            error(
                &s,
                "POST",
                "/api/v1/auth/verify",
                other,
                Some(json!({ "totp": s.code(&m, 0) }))
            ),
            (403, "session_required".into())
        );
    }
    assert_eq!(
        error(
            &s,
            "GET",
            "/api/v1/secrets/data/fin/ledger",
            &unscoped,
            None
        ),
        (403, "step_up_required".into())
    );
    let (status, _) = s.call(
        "POST",
        "/api/v1/auth/tokens",
        Some(&unscoped),
        Some(json!({ "ttl": "30d" })),
        None,
    );
    assert_eq!(status, 403, "a token that cannot step up mints nothing");
    let refusals = s
        .ledger()
        .into_iter()
        .filter(|e| e["outcome"] == "denied" && e["reasons"] == json!(["session_required"]))
        .count();
    assert_eq!(refusals, 2, "both refusals are recorded");
    // The verification lasts 15 minutes (the session's is already older).
    assert_eq!(
        error(&s, "GET", "/api/v1/secrets/data/fin/ledger", &broad, None),
        (403, "step_up_required".into())
    );
    assert_eq!(
        s.call(
            "GET",
            "/api/v1/secrets/data/fin/ledger",
            Some(&token),
            None,
            None
        )
        .0,
        403
    );
    // Minting a token needs a fresh verification too.
    let (status, body) = s.call(
        "POST",
        "/api/v1/auth/tokens",
        Some(&token),
        Some(json!({ "ttl": "1h" })),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("step_up_required"))
    );
    // A scoped token may not mint tokens (which could shed its scope).
    let (status, body) = s.call(
        "POST",
        "/api/v1/auth/tokens",
        Some(&scoped),
        Some(json!({ "ttl": "90d" })),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("outside_scope"))
    );
    assert_eq!(
        s.ok(
            "GET",
            "/api/v1/secrets/data/fin/ledger",
            Some(&scoped),
            None
        )["data"]["k"],
        "v"
    );
    // Outside its scope, even where the role alone would allow it.
    s.ok(
        "PUT",
        "/api/v1/secrets/data/team/x",
        Some(&token),
        Some(json!({ "data": { "k": "v" } })),
    );
    let (status, body) = s.call(
        "GET",
        "/api/v1/secrets/data/team/x",
        Some(&scoped),
        None,
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("outside_scope"))
    );
    // Tokens always expire.
    s.clock.advance_secs(3601);
    assert_eq!(
        s.call(
            "GET",
            "/api/v1/secrets/data/fin/ledger",
            Some(&scoped),
            None,
            None
        )
        .0,
        401
    );
    s.assert_no_secret_logged();
}

#[test]
fn grants_limit_contractors_to_their_paths_and_listings() {
    let s = Server::start();
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active" })),
    );
    let c = s.person("cy", "contractor", Some("acme"));
    for path in ["acme/app/db", "acme/other", "globex/db"] {
        s.ok(
            "PUT",
            &format!("/api/v1/secrets/data/{path}"),
            Some(&s.admin),
            Some(json!({ "data": { "k": path } })),
        );
    }
    let token = s.login(&c);
    assert_eq!(
        s.call(
            "GET",
            "/api/v1/secrets/data/acme/app/db",
            Some(&token),
            None,
            None
        )
        .0,
        403
    );
    let grant = s.ok("POST", "/api/v1/grants", Some(&s.admin), Some(json!({ "person": "cy", "prefix": "acme/app", "capabilities": ["read", "list"], "ttl": "1h", "reason": "incident 7" })));
    // Grants name their holder, in every view.
    assert_eq!(grant["person"], "cy", "{grant}");
    let mine = s.ok("GET", "/api/v1/auth/grants", Some(&token), None);
    assert_eq!(mine[0]["id"], grant["id"], "{mine}");
    assert_eq!(mine[0]["person"], "cy", "{mine}");
    for query in ["", "?flagged=true", "?person=cy"] {
        let listed = s.ok(
            "GET",
            &format!("/api/v1/grants{query}"),
            Some(&s.admin),
            None,
        );
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["id"] == grant["id"] && g["person"] == "cy"),
            "{query}: {listed}"
        );
    }
    assert_eq!(
        s.ok(
            "GET",
            "/api/v1/secrets/data/acme/app/db",
            Some(&token),
            None
        )["data"]["k"],
        "acme/app/db"
    );
    // Denials for paths that exist and paths that do not look the same.
    let exists = s.call(
        "GET",
        "/api/v1/secrets/data/globex/db",
        Some(&token),
        None,
        None,
    );
    let absent = s.call(
        "GET",
        "/api/v1/secrets/data/globex/nothing",
        Some(&token),
        None,
        None,
    );
    assert_eq!(exists, absent);
    assert_eq!(exists.0, 403);
    // Both the denial and the read are in the ledger, with who and why.
    let entries = s.ok(
        "GET",
        "/api/v1/ledger/entries?start=0",
        Some(&s.admin),
        None,
    );
    let find =
        |action: &str, resource: &str, outcome: &str| {
            entries.as_array().unwrap().iter().any(|e| {
                e["action"] == action && e["resource"] == resource && e["outcome"] == outcome
            })
        };
    assert!(find("secret.read", "acme/app/db", "denied"));
    assert!(find("secret.read", "acme/app/db", "success"));
    assert!(find("secret.read", "globex/db", "denied"));
    assert!(find("auth.login", "cy", "success"));
    // Writes are recorded in the same transaction as the change.
    assert!(find("secret.write", "acme/app/db", "success"));
    assert!(find("secret.write", "globex/db", "success"));
    // So are the other changes, with their non-secret details.
    let vendor = s.recorded("vendor.create", "acme");
    assert_eq!(vendor.len(), 1);
    assert_eq!(vendor[0]["details"]["status"], "active");
    let vendor_id = vendor[0]["details"]["vendor_id"].as_str().unwrap();
    let created = s.recorded("person.create", "cy");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["details"]["role"], "contractor");
    assert_eq!(created[0]["details"]["vendor_id"], vendor_id);
    let cy_id = created[0]["details"]["person_id"].as_str().unwrap();
    let enrolled = s.recorded("auth.enroll", "cy");
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0]["actor"]["person"], cy_id);
    let grant_id = grant["id"].as_str().unwrap();
    let granted = s.recorded("grant.create", grant_id);
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["details"]["person_id"], cy_id);
    assert_eq!(granted[0]["details"]["prefix"], "acme/app");
    assert_eq!(
        granted[0]["details"]["capabilities"],
        json!(["read", "list"])
    );
    assert_eq!(granted[0]["details"]["expires_time"], grant["expires_time"]);
    // The login's session was stored with its entry, which names the session's id.
    let login = s.recorded("auth.login", "cy");
    assert_eq!(login.len(), 1);
    let session = s.ok("GET", "/api/v1/auth/tokens", Some(&token), None);
    assert_eq!(login[0]["actor"]["token"], session[0]["id"]);
    assert_eq!(login[0]["details"]["second_factor"], "totp");
    // Tokens: made and revoked once; a second revocation changes nothing and records
    // nothing.
    let admin_id = s.ok("GET", "/api/v1/auth/self", Some(&s.admin), None)["token_id"].clone();
    let made = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&s.admin),
        Some(json!({ "name": "ci", "ttl": "1h", "scope": [{ "prefix": "acme", "capabilities": ["read"] }] })),
    );
    s.remember(made["token"].as_str().unwrap());
    let made_id = made["id"].as_str().unwrap();
    for _ in 0..2 {
        s.ok(
            "DELETE",
            &format!("/api/v1/auth/tokens/{made_id}"),
            Some(&s.admin),
            None,
        );
    }
    let create = s.recorded("token.create", made_id);
    assert_eq!(create.len(), 1);
    assert_eq!(create[0]["actor"]["token"], admin_id);
    assert_eq!(create[0]["details"]["name"], "ci");
    assert_eq!(create[0]["details"]["kind"], "api");
    assert_eq!(
        create[0]["details"]["scope"],
        json!([{ "prefix": "acme", "capabilities": ["read"] }])
    );
    assert_eq!(create[0]["details"]["expires_time"], made["expires_time"]);
    assert_eq!(s.recorded("token.revoke", made_id).len(), 1);
    let denial = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"] == "globex/db" && e["outcome"] == "denied")
        .unwrap();
    assert_eq!(denial["reasons"], json!(["not_permitted"]));
    assert!(
        denial["actor"]["person"]
            .as_str()
            .unwrap()
            .starts_with("per_")
    );
    assert!(
        denial["actor"]["vendor"]
            .as_str()
            .unwrap()
            .starts_with("ven_")
    );
    // Listings show only the way to the grant.
    assert_eq!(
        s.ok("GET", "/api/v1/secrets/list", Some(&token), None)["keys"],
        json!(["acme/"])
    );
    assert_eq!(
        s.ok("GET", "/api/v1/secrets/list/acme", Some(&token), None)["keys"],
        json!(["app/"])
    );
    // Each listing is recorded with how many keys it showed, never the keys.
    for (prefix, shown) in [("", 1), ("acme/", 1)] {
        let listed = s.recorded("secret.list", prefix);
        assert_eq!(listed.len(), 1, "{prefix}: {listed:?}");
        assert_eq!(listed[0]["details"], json!({ "keys": shown }));
        assert!(
            listed[0]["actor"]["person"]
                .as_str()
                .unwrap()
                .starts_with("per_")
        );
    }
    // So is a metadata read (versions and times, no value), before it is answered.
    s.ok(
        "GET",
        "/api/v1/secrets/metadata/acme/app/db",
        Some(&token),
        None,
    );
    let read = s.recorded("secret.list", "acme/app/db");
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["details"], json!({ "metadata": true }));
    // The Vault API records the same.
    s.ok(
        "GET",
        "/v1/secret/metadata/acme?list=true",
        Some(&token),
        None,
    );
    s.ok("GET", "/v1/secret/metadata/acme/app/db", Some(&token), None);
    assert_eq!(s.recorded("secret.list", "acme/").len(), 2);
    assert_eq!(s.recorded("secret.list", "acme/app/db").len(), 2);
    // `sys/capabilities-self` says what the same decisions allow, path by path, and records
    // nothing.
    let before = s.ledger().len();
    let paths = [
        "secret/data/acme/app/db",
        "secret/metadata/acme/app/db",
        "secret/metadata/acme",
        "secret/metadata/globex",
        "secret/metadata/acme/../globex",
        "secret/data/globex/db",
        "secret/destroy/acme/app/db",
        "auth/token/lookup-self",
        "sys/seal",
    ];
    let caps = s.ok(
        "POST",
        "/v1/sys/capabilities-self",
        Some(&token),
        Some(json!({ "paths": paths })),
    );
    assert_eq!(
        caps["data"],
        json!({
            "secret/data/acme/app/db": ["read"],
            // Its metadata, and a listing under it (the grant covers the folder).
            "secret/metadata/acme/app/db": ["list", "read"],
            // A folder on the way to the grant is listed, as listings show it.
            "secret/metadata/acme": ["list"],
            "secret/metadata/globex": ["deny"],
            // Not a path a listing takes: nothing, as the listing itself is refused.
            "secret/metadata/acme/../globex": ["deny"],
            "secret/data/globex/db": ["deny"],
            "secret/destroy/acme/app/db": ["deny"],
            "auth/token/lookup-self": ["read", "update"],
            "sys/seal": ["deny"],
        })
    );
    assert_eq!(caps["secret/data/acme/app/db"], json!(["read"]));
    assert_eq!(s.ledger().len(), before);
    // Grants end by themselves and can be revoked. (The session, used meanwhile, lasts.)
    for _ in 0..2 {
        s.clock.advance_secs(1500);
        s.ok("GET", "/api/v1/auth/self", Some(&token), None);
    }
    s.clock.advance_secs(601);
    assert_eq!(
        s.call(
            "GET",
            "/api/v1/secrets/data/acme/app/db",
            Some(&token),
            None,
            None
        )
        .0,
        403
    );
    let id = grant["id"].as_str().unwrap();
    s.ok(
        "DELETE",
        &format!("/api/v1/grants/{id}"),
        Some(&s.admin),
        None,
    );
    // Nobody grants to themselves.
    let sec = s.person("sue", "security", None);
    let sue = s.login(&sec);
    let (status, _) = s.call(
        "POST",
        "/api/v1/grants",
        Some(&sue),
        Some(json!({ "person": "sue", "prefix": "x", "capabilities": ["read"], "ttl": "1h", "reason": "incident 7" })),
        None,
    );
    assert_eq!(status, 403);
    // Security staff cannot make admins, nor touch an admin's account.
    let (status, _) = s.call(
        "POST",
        "/api/v1/people",
        Some(&sue),
        Some(json!({ "name": "eve", "role": "admin" })),
        None,
    );
    assert_eq!(status, 403);
    s.ok(
        "POST",
        "/api/v1/people",
        Some(&s.admin),
        Some(json!({ "name": "boss", "role": "admin" })),
    );
    assert_eq!(
        s.call(
            "POST",
            "/api/v1/people/boss/disable",
            Some(&sue),
            None,
            None
        )
        .0,
        403
    );
    // They can manage contractors.
    s.ok("POST", "/api/v1/people/cy/disable", Some(&sue), None);
    assert_eq!(
        s.call("GET", "/api/v1/auth/self", Some(&token), None, None)
            .0,
        403
    );
    // The revocation, the refused attempts (no change) and the disabling are in the ledger.
    assert_eq!(s.recorded("grant.revoke", id).len(), 1);
    let grants = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "grant.create");
    assert_eq!(grants.count(), 1, "the refused self-grant recorded nothing");
    assert!(s.recorded("person.create", "eve").is_empty());
    assert!(s.recorded("person.disable", "boss").is_empty());
    assert_eq!(
        s.recorded("person.create", "boss")[0]["details"]["role"],
        "admin"
    );
    let disabled = s.recorded("person.disable", "cy");
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["details"]["person_id"], cy_id);
    let sue_session = s.ok("GET", "/api/v1/auth/self", Some(&sue), None)["token_id"].clone();
    assert_eq!(disabled[0]["actor"]["token"], sue_session);
    s.assert_no_secret_logged();
}

// ---------------------------------------------------------------------------------------
// The authorisation matrix

/// Roles allowed on each protected route (method, pattern). Every route of the router must be
/// here; public routes map to `None`.
fn expected(method: &str, path: &str) -> Option<&'static [&'static str]> {
    const ALL: &[&str] = &[
        "admin",
        "security",
        "approver",
        "member",
        "contractor",
        "auditor",
    ];
    const LISTERS: &[&str] = &["admin", "security", "approver", "member", "auditor"];
    const MEMBERS: &[&str] = &["admin", "member"];
    const ADMIN: &[&str] = &["admin"];
    const LEDGER: &[&str] = &["admin", "security", "auditor", "contractor"];
    const SECURITY: &[&str] = &["admin", "security"];
    const AUDIT: &[&str] = &["admin", "security", "auditor"];
    const GOVERNANCE_READERS: &[&str] = &["admin", "security", "approver", "auditor"];
    const APPROVERS: &[&str] = &["admin", "security", "approver"];
    const FINDINGS: &[&str] = &["admin", "security", "approver", "member", "auditor"];
    const SHARERS: &[&str] = &["admin", "security", "approver", "member"];
    const DELIVERABLES: &[&str] = &["admin", "security", "auditor", "contractor"];
    const SUBMITTERS: &[&str] = &["admin", "security", "contractor"];
    Some(match (method, path) {
        ("GET", "/api/v1/health")
        | ("GET", "/api/v1/ready")
        // Metrics have their own bearer token (tested in hardening.rs).
        | ("GET", "/metrics")
        | ("GET", "/api/v1/openapi.json")
        | ("GET", "/api/v1/sys/seal-status")
        | ("POST", "/api/v1/sys/unseal")
        | ("POST", "/api/v1/auth/login")
        | ("POST", "/api/v1/auth/enroll") => return None,
        ("POST", "/api/v1/sys/seal")
        | ("POST", "/api/v1/sys/rekey" | "/api/v1/sys/rotate" | "/api/v1/sys/backup")
        | ("POST", "/api/v1/sys/rekey/verify")
        | ("GET", "/api/v1/sys/rotate") => ADMIN,
        ("GET" | "PUT" | "POST" | "DELETE", "/api/v1/secrets/data/{*path}") => MEMBERS,
        ("GET", "/api/v1/secrets/metadata/{*path}") => LISTERS,
        ("PUT", "/api/v1/secrets/metadata/{*path}") => MEMBERS,
        ("DELETE", "/api/v1/secrets/metadata/{*path}") => ADMIN,
        ("POST", "/api/v1/secrets/delete/{*path}")
        | ("POST", "/api/v1/secrets/undelete/{*path}") => MEMBERS,
        ("POST", "/api/v1/secrets/destroy/{*path}") => ADMIN,
        ("GET", "/api/v1/secrets/list") | ("GET", "/api/v1/secrets/list/{*prefix}") => LISTERS,
        ("GET", "/api/v1/classifications") => LISTERS,
        ("POST", "/api/v1/auth/verify")
        | ("GET", "/api/v1/auth/self")
        | ("GET", "/api/v1/auth/tokens")
        | ("GET", "/api/v1/auth/grants")
        | ("GET", "/api/v1/request-links")
        | ("DELETE", "/api/v1/request-links/{id}")
        | ("POST", "/api/v1/auth/tokens")
        | ("DELETE", "/api/v1/auth/tokens/{id}") => ALL,
        ("GET", "/api/v1/ledger/key") => return None,
        ("POST", "/api/v1/attestations/info" | "/api/v1/attestations/sign")
        | ("POST", "/api/v1/shares/{id}/info" | "/api/v1/shares/{id}/open")
        | ("POST", "/api/v1/request-links/info" | "/api/v1/request-links/submit")
        | ("GET", "/s/{id}" | "/r" | "/a" | "/r/{token}" | "/a/{token}")
        | ("GET", "/ui" | "/static/console.js")
        | ("GET", "/static/chaperone.js" | "/static/chaperone.css") => return None,
        ("POST", "/api/v1/secret-requests/{*path}") => MEMBERS,
        ("PUT", "/api/v1/rotation/{*path}") => SECURITY,
        ("GET", "/api/v1/secrets/stale") => LISTERS,
        ("POST", "/api/v1/vendors/{name}/offboard") => SECURITY,
        (_, p) if p.starts_with("/api/v1/findings") => FINDINGS,
        ("POST", "/api/v1/deliverables") => SUBMITTERS,
        (_, p) if p.starts_with("/api/v1/deliverables") => DELIVERABLES,
        (_, p) if p.starts_with("/api/v1/shares") => SHARERS,
        ("GET", "/v1/sys/health" | "/v1/sys/seal-status" | "/v1/sys/init" | "/v1/sys/leader")
        | ("POST" | "PUT", "/v1/auth/userpass/login/{user}")
        | ("POST" | "PUT", "/v1/sys/wrapping/unwrap" | "/v1/sys/wrapping/lookup" | "/v1/sys/unseal")
        | ("POST" | "PUT", "/v1/sys/init") => {
            return None;
        }
        ("POST" | "PUT", "/v1/sys/wrapping/wrap" | "/v1/sys/capabilities-self") => ALL,
        ("POST" | "PUT", "/v1/sys/seal" | "/v1/auth/token/create-orphan") => ADMIN,
        ("POST" | "PUT", p) if p.starts_with("/v1/auth/token/") => ALL,
        ("GET", "/v1/sys/mounts" | "/v1/sys/auth" | "/v1/sys/internal/ui/mounts/{*path}" | "/v1/secret/config")
        | ("GET" | "POST", "/v1/auth/token/lookup-self") => ALL,
        ("GET" | "PUT" | "POST" | "PATCH" | "DELETE", "/v1/secret/data/{*path}") => MEMBERS,
        ("GET", "/v1/secret/metadata/{*path}") => LISTERS,
        ("PUT" | "POST" | "PATCH", "/v1/secret/metadata/{*path}") => MEMBERS,
        ("DELETE", "/v1/secret/metadata/{*path}") => ADMIN,
        ("GET", "/v1/secret/list" | "/v1/secret/list/{*prefix}") => LISTERS,
        ("PUT" | "POST", "/v1/secret/delete/{*path}" | "/v1/secret/undelete/{*path}") => MEMBERS,
        ("PUT" | "POST", "/v1/secret/destroy/{*path}") => ADMIN,
        ("GET", "/api/v1/ledger/tile/{*path}" | "/api/v1/reports") => AUDIT,
        ("GET", p) if p.starts_with("/api/v1/ledger/") => LEDGER,
        ("GET", "/api/v1/policies" | "/api/v1/requests" | "/api/v1/notifications")
        | ("POST", "/api/v1/policies/{name}/acknowledge" | "/api/v1/requests")
        | ("POST", "/api/v1/requests/{id}/cancel")
        | ("POST", "/api/v1/grants/{id}/extend") => ALL,
        ("POST", "/api/v1/requests/{id}/approve" | "/api/v1/requests/{id}/deny")
        | ("POST", "/api/v1/reviews/{id}/items/{item}") => APPROVERS,
        ("POST", "/api/v1/grants") => ADMIN,
        // On a member's account: security resets contractors and auditors only.
        ("POST", "/api/v1/people/{name}/reset") => ADMIN,
        ("POST", "/api/v1/auth/unlock-address") => SECURITY,
        ("GET", p)
            if p.starts_with("/api/v1/vendors")
                || p.starts_with("/api/v1/documents")
                || p.starts_with("/api/v1/levels")
                || p.starts_with("/api/v1/reviews") =>
        {
            GOVERNANCE_READERS
        }
        (_, p)
            if [
                "/api/v1/people",
                "/api/v1/vendors",
                "/api/v1/agreements",
                "/api/v1/evidence",
                "/api/v1/documents",
                "/api/v1/policies",
                "/api/v1/levels",
                "/api/v1/reviews",
                "/api/v1/grants",
                "/api/v1/classifications",
            ]
            .iter()
            .any(|prefix| p.starts_with(prefix)) =>
        {
            SECURITY
        }
        _ => panic!("route {method} {path} has no entry in the authorisation matrix"),
    })
}

fn concrete(pattern: &str) -> String {
    pattern
        .replace("{*path}", "team/x")
        .replace("{*prefix}", "team")
        .replace("{name}", "victim")
        .replace("{id}", "tok_none")
        .replace("{item}", "item-1")
        .replace("{token}", "tok_none")
        .replace("{user}", "nobody")
}

#[test]
fn authorisation_matrix_covers_every_route_role_and_credential_state() {
    let s = Server::start();
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active" })),
    );
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "badco", "status": "active" })),
    );
    s.ok(
        "POST",
        "/api/v1/people",
        Some(&s.admin),
        Some(json!({ "name": "victim", "role": "member" })),
    );
    let mut tokens = Vec::new();
    for role in [
        "admin",
        "security",
        "approver",
        "member",
        "contractor",
        "auditor",
    ] {
        let vendor = (role == "contractor").then_some("acme");
        let person = s.person(&format!("{role}1"), role, vendor);
        tokens.push((role, s.login(&person)));
    }
    // Credential states that must never pass.
    let member = s.person("gone", "member", None);
    let disabled = s.login(&member);
    s.ok("POST", "/api/v1/people/gone/disable", Some(&s.admin), None);
    let contractor = s.person("bad", "contractor", Some("badco"));
    let suspended = s.login(&contractor);
    s.ok(
        "PUT",
        "/api/v1/vendors/badco",
        Some(&s.admin),
        Some(json!({ "status": "suspended", "reason": "breach under investigation" })),
    );
    let revoked = tokens[0].1.clone();
    let revoked = {
        let made = s.ok(
            "POST",
            "/api/v1/auth/tokens",
            Some(&revoked),
            Some(json!({ "ttl": "1h" })),
        );
        let id = made["id"].as_str().unwrap().to_owned();
        s.ok(
            "DELETE",
            &format!("/api/v1/auth/tokens/{id}"),
            Some(&s.admin),
            None,
        );
        made["token"].as_str().unwrap().to_owned()
    };
    let expired = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&tokens[0].1),
        Some(json!({ "ttl": "1m" })),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    s.clock.advance_secs(120);
    s.remember(&revoked);
    s.remember(&expired);
    // The sessions made above were verified at login; the clock moved past the step-up
    // window only for reads of confidential paths, and none is classified here.

    let table = route_table();
    assert!(table.len() >= 30, "the route table looks incomplete");
    for (method, pattern, action) in table {
        let method = method.as_str();
        let path = concrete(pattern);
        let allowed = expected(method, pattern);
        assert_eq!(
            allowed.is_none(),
            action.is_none(),
            "{method} {pattern}: public in one place only"
        );
        let Some(allowed) = allowed else { continue };
        let body = (method != "GET" && method != "DELETE").then(|| json!({}));
        // Listings are routed at `secret/list`, reached with `?list=true` (or Vault's
        // `LIST`) on `secret/metadata`; asked for directly, `secret/list` is an unknown path.
        let path = match path.strip_prefix("/v1/secret/list") {
            Some(rest) => format!("/v1/secret/metadata{rest}?list=true"),
            None => path,
        };
        let status = |token: Option<&str>| s.call(method, &path, token, body.clone(), None).0;
        // Vault's API answers 403 where the native one says 401.
        let refused = if pattern.starts_with("/v1/") {
            403
        } else {
            401
        };
        assert_eq!(status(None), refused, "{method} {pattern} without a token");
        assert_eq!(
            status(Some("chp_unknown")),
            refused,
            "{method} {pattern} unknown token"
        );
        assert_eq!(
            status(Some(&expired)),
            refused,
            "{method} {pattern} expired token"
        );
        assert_eq!(
            status(Some(&revoked)),
            refused,
            "{method} {pattern} revoked token"
        );
        assert_eq!(
            status(Some(&disabled)),
            403,
            "{method} {pattern} disabled person"
        );
        assert_eq!(
            status(Some(&suspended)),
            403,
            "{method} {pattern} suspended vendor"
        );
        // Revoking oneself would end the tokens the rest of the matrix uses; its own test
        // covers it.
        if pattern == "/v1/auth/token/revoke-self" {
            continue;
        }
        for (role, token) in &tokens {
            let got = status(Some(token));
            if allowed.contains(role) {
                assert!(
                    ![401, 403].contains(&got) && got < 500,
                    "{method} {pattern} as {role}: {got}"
                );
            } else {
                assert_eq!(got, 403, "{method} {pattern} as {role}");
            }
            if matches!(pattern, "/api/v1/sys/seal" | "/v1/sys/seal") && got == 204 {
                s.unseal();
            }
        }
    }
    s.assert_no_secret_logged();
}

// ---------------------------------------------------------------------------------------
// Ledger reads

#[test]
fn checkpoints_are_signed_and_proofs_verify_against_them() {
    use base64::Engine as _;
    use chaperone_ledger::checkpoint::Checkpoint;
    use chaperone_ledger::merkle;
    use chaperone_ledger::note::{Verifier, open};

    let s = Server::start();
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active" })),
    );
    let c = s.person("cleo", "contractor", Some("acme"));
    let cleo = s.login(&c);
    let me = s.ok("GET", "/api/v1/people", Some(&s.admin), None);
    let cleo_id = me
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cleo")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = |i: u64, person: &str| {
        format!(r#"{{"actor":{{"person":"{person}"}},"seq":{i}}}"#).into_bytes()
    };
    let first: Vec<Vec<u8>> = (0..10)
        .map(|i| entry(i, if i % 3 == 0 { &cleo_id } else { "per_other" }))
        .collect();
    // Logins are already in the ledger; the appended entries follow them.
    let base = s.runtime.block_on(s.state.store().ledger_size()).unwrap();
    s.runtime
        .block_on(s.state.store().append_ledger(first.clone()))
        .unwrap();

    let get_text = |path: &str, token: Option<&str>| {
        let url = format!("{}{path}", s.addr);
        let mut request = s.agent.get(&url);
        if let Some(t) = token {
            request = request.header("Authorization", &format!("Bearer {t}"));
        }
        request.call().unwrap().body_mut().read_to_string().unwrap()
    };
    let verifier: Verifier = get_text("/api/v1/ledger/key", None).trim().parse().unwrap();
    let note = get_text("/api/v1/ledger/checkpoint", Some(&s.admin));
    let old = Checkpoint::parse(&open(note.as_bytes(), std::slice::from_ref(&verifier)).unwrap())
        .unwrap();
    assert_eq!(old.size, base + 10);
    assert_eq!(old.origin, verifier.name());

    let more: Vec<Vec<u8>> = (10..25).map(|i| entry(i, "per_other")).collect();
    s.runtime
        .block_on(s.state.store().append_ledger(more))
        .unwrap();
    let note = get_text("/api/v1/ledger/checkpoint", Some(&s.admin));
    let new = Checkpoint::parse(&open(note.as_bytes(), std::slice::from_ref(&verifier)).unwrap())
        .unwrap();
    assert_eq!(new.size, base + 25);

    // The same log as tlog tiles: partial tiles cut to the width asked for.
    let get_bytes = |path: &str| {
        let mut response = s
            .agent
            .get(&format!("{}/api/v1/ledger/{path}", s.addr))
            .header("Authorization", &format!("Bearer {}", s.admin))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_vec().unwrap())
    };
    let size = base + 25;
    assert!(size < 256, "the test expects one partial tile");
    let (status, tile) = get_bytes(&format!("tile/0/000.p/{size}"));
    assert_eq!(status, 200);
    assert_eq!(tile.len() as u64, 32 * size);
    let at = (32 * (base + 3)) as usize;
    assert_eq!(tile[at..at + 32], merkle::leaf_hash(&first[3]));
    let (status, narrow) = get_bytes(&format!("tile/0/000.p/{}", base + 4));
    assert_eq!((status, narrow.as_slice()), (200, &tile[..at + 32]));
    let (status, bundle) = get_bytes(&format!("tile/entries/000.p/{size}"));
    assert_eq!(status, 200);
    let entries = chaperone_ledger::tiles::split_bundle(0, &bundle).unwrap();
    assert_eq!(entries.len() as u64, size);
    assert_eq!(entries[(base + 3) as usize], first[3].as_slice());
    assert_eq!(get_bytes(&format!("tile/0/000.p/{}", size + 1)).0, 404);
    assert_eq!(get_bytes("tile/0/000").0, 404);
    assert_eq!(get_bytes("tile/0/5").0, 400);
    assert_eq!(get_bytes("tile/9/000").0, 400);

    let decode = |v: &Value| -> Vec<merkle::Hash> {
        v["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                base64::engine::general_purpose::STANDARD
                    .decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect()
    };
    let proof = decode(&s.ok(
        "GET",
        &format!(
            "/api/v1/ledger/proof/inclusion?index={}&size={}",
            base + 3,
            base + 25
        ),
        Some(&s.admin),
        None,
    ));
    merkle::verify_inclusion(
        base + 3,
        base + 25,
        &merkle::leaf_hash(&first[3]),
        &proof,
        &new.root,
    )
    .unwrap();
    assert!(
        merkle::verify_inclusion(
            base + 3,
            base + 25,
            &merkle::leaf_hash(&first[4]),
            &proof,
            &new.root
        )
        .is_err()
    );
    let proof = decode(&s.ok(
        "GET",
        &format!(
            "/api/v1/ledger/proof/consistency?old={}&new={}",
            base + 10,
            base + 25
        ),
        Some(&s.admin),
        None,
    ));
    merkle::verify_consistency(base + 10, base + 25, &proof, &old.root, &new.root).unwrap();
    assert_eq!(
        s.call(
            "GET",
            "/api/v1/ledger/proof/inclusion?index=3&size=9999",
            Some(&s.admin),
            None,
            None
        )
        .0,
        400
    );

    // Numbers beyond what is stored are refused or not found, and the server keeps
    // recording: a hostile version or tile index cannot stop the ledger's committer.
    s.ok(
        "PUT",
        "/api/v1/secrets/data/big/x",
        Some(&s.admin),
        Some(json!({ "data": { "v": "1" } })),
    );
    let huge = json!({ "versions": [u64::MAX] });
    let status = s
        .call(
            "POST",
            "/api/v1/secrets/delete/big/x",
            Some(&s.admin),
            Some(huge),
            None,
        )
        .0;
    assert!(status < 500, "{status}");
    let status = s
        .call(
            "GET",
            &format!("/api/v1/secrets/data/big/x?version={}", u64::MAX),
            Some(&s.admin),
            None,
            None,
        )
        .0;
    assert_eq!(status, 404);
    let status = s
        .call(
            "GET",
            "/api/v1/ledger/tile/0/x018/x446/x744/x073/x709/x551/615",
            Some(&s.admin),
            None,
            None,
        )
        .0;
    assert_eq!(status, 404);
    // A high tile level is not there yet either (its reach does not wrap around).
    for far in ["/api/v1/ledger/tile/7/000", "/api/v1/ledger/tile/6/255"] {
        assert_eq!(
            s.call("GET", far, Some(&s.admin), None, None).0,
            404,
            "{far}"
        );
    }
    let read = s.ok("GET", "/api/v1/secrets/data/big/x", Some(&s.admin), None);
    assert_eq!(read["data"]["v"], "1");

    // Auditors read everything; a contractor only entries about themselves.
    let all = s.ok(
        "GET",
        &format!("/api/v1/ledger/entries?start=0&end={}", base + 25),
        Some(&s.admin),
        None,
    );
    assert_eq!(all.as_array().unwrap().len() as u64, base + 25);
    let own = s.ok("GET", "/api/v1/ledger/entries?start=0", Some(&cleo), None);
    let own = own.as_array().unwrap();
    assert!(own.iter().all(|e| e["actor"]["person"] == cleo_id.as_str()));
    // Without where they came from: a token taken from them learns nothing of their networks.
    assert!(
        own.iter()
            .all(|e| e.get("client_ip").is_none() && e.get("user_agent").is_none())
    );
    let searched = s.ok("GET", "/api/v1/ledger/search", Some(&cleo), None);
    assert!(!searched["entries"].as_array().unwrap().is_empty());
    assert!(
        searched["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("client_ip").is_none())
    );
    let theirs = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"]["person"] == cleo_id.as_str())
        .count();
    assert_eq!(own.len(), theirs);
    assert!(own.len() >= 4);
    // A search names the actor by name or id alike; a name that names nobody is said so,
    // except to a contractor, who is not told who exists.
    let search = |token: &str, actor: &str| {
        s.call(
            "GET",
            &format!("/api/v1/ledger/search?actor={actor}"),
            Some(token),
            None,
            None,
        )
    };
    let (status, by_name) = search(&s.admin, &c.name);
    assert_eq!(status, 200);
    let (_, by_id) = search(&s.admin, &cleo_id);
    assert_eq!(by_name["entries"], by_id["entries"]);
    assert_eq!(by_name["entries"].as_array().unwrap().len(), theirs);
    assert_eq!(search(&s.admin, "nobody-here").0, 404);
    let (status, none) = search(&cleo, "nobody-here");
    assert_eq!(status, 200);
    assert!(none["entries"].as_array().unwrap().is_empty());
    s.assert_no_secret_logged();
}

#[test]
fn a_password_alone_does_not_forgive_wrong_totp_codes() {
    // A member may log in with the password alone. Wrong step-up codes count against the
    // person, and such a login must not wipe them, or knowing the password would allow
    // guessing the second factor forever. Each request comes from a new address, so only
    // the person's count can lock.
    let s = Server::start_password_only();
    let mia = s.person("mia", "member", None);
    let mut address = 0;
    // Attempts are told apart by their time: the test clock moves a second between them.
    let mut from = || {
        address += 1;
        s.clock.advance_secs(1);
        format!("198.51.100.{address}")
    };
    let password_login = |from: &str| {
        s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": "mia", "password": mia.password })),
            Some(from),
        )
    };
    let (status, body) = password_login(&from());
    assert_eq!(status, 200, "{body}");
    let session = body["token"].as_str().unwrap().to_owned();
    let wrong = if s.code(&mia, 0) == "000000" {
        "000001"
    } else {
        "000000"
    };
    let verify = |code: &str, from: &str| {
        s.call(
            "POST",
            "/api/v1/auth/verify",
            Some(&session),
            Some(json!({ "totp": code })),
            Some(from),
        )
        .0
    };
    for _ in 0..3 {
        for _ in 0..3 {
            assert_eq!(verify(wrong, &from()), 401);
        }
        assert_eq!(password_login(&from()).0, 200, "under the threshold");
    }
    assert_eq!(verify(wrong, &from()), 401);
    // Ten wrong codes in the window: the eleventh attempt is refused, even with the right
    // code.
    assert_eq!(verify(&s.code(&mia, 0), &from()), 429);
}

#[test]
fn wrong_passwords_for_a_name_do_not_lock_its_signed_in_owner_out_of_step_up() {
    let s = Server::start();
    let sam = s.person("sam", "security", None);
    let session = s.login(&sam);
    // Anyone who knows the name can lock its logins from networks it does not log in
    // from...
    for attempt in 0..12 {
        let (status, _) = s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": "sam", "password": format!("guess-{attempt}") })),
            Some(&format!("203.0.113.{attempt}")),
        );
        assert!(status == 401 || status == 429, "{status}");
    }
    let (status, _) = s.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "user": "sam", "password": sam.password, "totp": s.code(&sam, 0) })),
        Some("198.51.100.77"),
    );
    assert_eq!(status, 429);
    // ...but not the step-up of a session already open: only that session's own wrong
    // codes count there.
    s.clock.advance_secs(30);
    let (status, body) = s.call(
        "POST",
        "/api/v1/auth/verify",
        Some(&session),
        Some(json!({ "totp": s.code(&sam, 0) })),
        None,
    );
    assert_eq!(status, 204, "{body}");
    // A right code forgives the wrong ones before it; the session's own wrong codes lock
    // step-up, until an administrator unlocks the person.
    let verify = |code: &str| {
        s.clock.advance_secs(1);
        s.call(
            "POST",
            "/api/v1/auth/verify",
            Some(&session),
            Some(json!({ "totp": code })),
            None,
        )
        .0
    };
    let wrong = if s.code(&sam, 0) == "000000" {
        "000001"
    } else {
        "000000"
    };
    for _ in 0..9 {
        assert_eq!(verify(wrong), 401);
    }
    s.clock.advance_secs(30);
    assert_eq!(verify(&s.code(&sam, 0)), 204);
    assert_eq!(verify(wrong), 401);
    s.clock.advance_secs(30);
    assert_eq!(
        verify(&s.code(&sam, 0)),
        204,
        "the nine before were forgiven"
    );
    for _ in 0..10 {
        assert_eq!(verify(wrong), 401);
    }
    s.clock.advance_secs(30);
    assert_eq!(verify(&s.code(&sam, 0)), 429);
    s.ok("POST", "/api/v1/people/sam/unlock", Some(&s.admin), None);
    assert_eq!(verify(&s.code(&sam, 0)), 204);
}

#[test]
fn tokens_made_through_the_vault_api_end_with_the_session_that_made_them() {
    let s = Server::start();
    let mia = s.person("mia", "member", None);
    let body = json!({ "user": "mia", "password": mia.password, "totp": s.code(&mia, 0) });
    let login = s.ok("POST", "/api/v1/auth/login", None, Some(body));
    let session = login["token"].as_str().unwrap().to_owned();
    let session_id = login["token_id"].as_str().unwrap().to_owned();
    s.remember(&session);

    // A Vault child asks for more than the session has left: it gets what the session has.
    let made = s.ok(
        "POST",
        "/v1/auth/token/create",
        Some(&session),
        Some(json!({ "ttl": "1000h" })),
    );
    let child = made["auth"]["client_token"].as_str().unwrap().to_owned();
    let child_id = made["auth"]["accessor"].as_str().unwrap().to_owned();
    s.remember(&child);
    assert_eq!(made["auth"]["orphan"], false);
    let warned = made["warnings"][0].as_str().unwrap();
    assert!(
        warned.starts_with("TTL of \"1000h\" exceeded the parent token's remaining TTL of \""),
        "{warned}"
    );
    let looked = s.ok("GET", "/v1/auth/token/lookup-self", Some(&child), None);
    assert_eq!(looked["data"]["expire_time"], login["expires_time"]);
    assert_eq!(looked["data"]["orphan"], false);
    let created = s.recorded("token.create", &child_id);
    assert_eq!(created[0]["details"]["parent_id"], session_id.as_str());
    // A native token is made to outlive the session (a CI token): it has no parent.
    let native = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&session),
        Some(json!({ "ttl": "48h" })),
    );
    let native = native["token"].as_str().unwrap().to_owned();
    s.remember(&native);
    let listed = s.ok("GET", "/api/v1/auth/tokens", Some(&session), None);
    let parent_of = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["parent"].clone())
            .unwrap()
    };
    assert_eq!(parent_of(&child_id), session_id.as_str());
    assert_eq!(parent_of(&session_id), Value::Null);
    // Only an admin makes an orphan through `create-orphan`, as through `no_parent`; the
    // refusal is recorded.
    let (status, body) = s.call(
        "POST",
        "/v1/auth/token/create-orphan",
        Some(&session),
        Some(json!({ "ttl": "1h" })),
        None,
    );
    assert_eq!(
        (status, &body),
        (403, &json!({ "errors": ["permission denied"] }))
    );
    let refusals = s
        .ledger()
        .into_iter()
        .filter(|e| e["reasons"] == json!(["orphan_not_permitted"]))
        .count();
    assert_eq!(refusals, 1);
    let orphan = s.ok(
        "POST",
        "/v1/auth/token/create-orphan",
        Some(&s.admin),
        Some(json!({ "ttl": "1h" })),
    );
    assert_eq!(orphan["auth"]["orphan"], true);
    let orphan = orphan["auth"]["client_token"].as_str().unwrap().to_owned();
    s.remember(&orphan);
    // `renew` of a token one may look up answers its unchanged TTL; of another's, no.
    let renewed = s.ok(
        "POST",
        "/v1/auth/token/renew",
        Some(&session),
        Some(json!({ "token": child, "increment": "1h" })),
    );
    assert_eq!(renewed["auth"]["accessor"], child_id.as_str());
    assert_eq!(
        renewed["auth"]["lease_duration"],
        looked["data"]["ttl"].as_i64().unwrap()
    );
    assert_eq!(renewed["warnings"].as_array().unwrap().len(), 1);
    let (status, body) = s.call(
        "POST",
        "/v1/auth/token/renew",
        Some(&session),
        Some(json!({ "token": orphan })),
        None,
    );
    assert_eq!(
        (status, &body),
        (403, &json!({ "errors": ["permission denied"] }))
    );
    // A token is minted only within the step-up window; capabilities-self says so too.
    let can_create = || {
        let body = json!({ "paths": ["auth/token/create", "auth/token/lookup-self"] });
        s.ok(
            "POST",
            "/v1/sys/capabilities-self",
            Some(&session),
            Some(body),
        )["data"]
            .clone()
    };
    assert_eq!(can_create()["auth/token/create"], json!(["update"]));
    s.clock.advance_secs(16 * 60);
    let after = can_create();
    assert_eq!(after["auth/token/create"], json!(["deny"]));
    assert_eq!(after["auth/token/lookup-self"], json!(["read", "update"]));
    let (status, _) = s.call(
        "POST",
        "/v1/auth/token/create",
        Some(&session),
        Some(json!({ "ttl": "1h" })),
        None,
    );
    assert_eq!(status, 403);

    // Ending the session ends the child, recorded as revoked with it.
    let path = format!("/api/v1/auth/tokens/{session_id}");
    assert_eq!(s.call("DELETE", &path, Some(&session), None, None).0, 204);
    let lookup = |token: &str| {
        s.call("GET", "/v1/auth/token/lookup-self", Some(token), None, None)
            .0
    };
    assert_eq!(lookup(&child), 403);
    assert_eq!(lookup(&native), 200);
    let revoked = s.recorded("token.revoke", &child_id);
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["details"]["revoked_with"], session_id.as_str());
    let own = s.recorded("token.revoke", &session_id);
    assert!(own[0]["details"].get("revoked_with").is_none(), "{own:?}");
    s.assert_no_secret_logged();
}

#[test]
fn a_vault_token_asked_with_the_default_policy_can_only_manage_itself() {
    let s = Server::start();
    common::write(&s, "team/db", "default-policy-Vx42");
    let made = s.ok(
        "POST",
        "/v1/auth/token/create",
        Some(&s.admin),
        Some(json!({ "policies": ["default"], "ttl": "1h" })),
    );
    assert_eq!(made["auth"]["policies"], json!(["default"]), "{made}");
    let token = made["auth"]["client_token"].as_str().unwrap().to_owned();
    s.remember(&token);
    // It looks itself up and ends itself; it reads, lists and makes nothing.
    let looked = s.ok("GET", "/v1/auth/token/lookup-self", Some(&token), None);
    assert_eq!(looked["data"]["policies"], json!(["default"]));
    for (method, path, body) in [
        ("GET", "/v1/secret/data/team/db", None),
        ("GET", "/v1/secret/metadata/team?list=true", None),
        (
            "POST",
            "/v1/auth/token/create",
            Some(json!({ "ttl": "1h" })),
        ),
        ("GET", "/api/v1/people", None),
    ] {
        let (status, body) = s.call(method, path, Some(&token), body, None);
        assert_eq!(status, 403, "{method} {path}: {body}");
        // A valid token is told why, after Vault's words.
        if path.starts_with("/v1/") {
            assert_eq!(body["errors"][0], "permission denied", "{body}");
            assert!(
                body["errors"][1]
                    .as_str()
                    .is_some_and(|why| !why.is_empty()),
                "{body}"
            );
        }
    }
    // Without `policies`, a child has its maker's permissions; `lease` is `ttl`'s old name.
    let made = s.ok(
        "POST",
        "/v1/auth/token/create",
        Some(&s.admin),
        Some(json!({ "lease": "1h" })),
    );
    assert_eq!(made["auth"]["policies"], json!(["admin"]));
    assert_eq!(made["auth"]["lease_duration"], 3600, "{made}");
    s.remember(made["auth"]["client_token"].as_str().unwrap());
    // Anyone but an admin asking for an orphan is refused, and the refusal recorded.
    let mia = s.person("mia", "member", None);
    let session = s.login(&mia);
    let (status, body) = s.call(
        "POST",
        "/v1/auth/token/create",
        Some(&session),
        Some(json!({ "no_parent": true, "ttl": "1h" })),
        None,
    );
    assert_eq!(status, 400, "{body}");
    let refused: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["outcome"] == "denied" && e["reasons"] == json!(["orphan_not_permitted"]))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    s.assert_no_secret_logged();
}

#[test]
fn scoped_tokens_end_themselves_and_vault_lookups_call_no_ended_token_valid() {
    let s = Server::start();
    let mia = s.person("mia", "member", None);
    let session = s.login(&mia);
    let mint = |ttl: &str| -> (String, String) {
        let scope = json!([{ "prefix": "ci", "capabilities": ["read"] }]);
        let made = s.ok(
            "POST",
            "/api/v1/auth/tokens",
            Some(&session),
            Some(json!({ "ttl": ttl, "scope": scope })),
        );
        let token = made["token"].as_str().unwrap().to_owned();
        s.remember(&token);
        (token, made["id"].as_str().unwrap().to_owned())
    };
    let (job, job_id) = mint("1h");
    let (done, done_id) = mint("1h");

    // A job's scoped token sees the mounts (Vault clients ask before every call), looks
    // itself up, and ends itself when the job is done. It still mints nothing.
    for path in ["/v1/sys/mounts", "/v1/sys/internal/ui/mounts/secret/ci/app"] {
        assert_eq!(s.call("GET", path, Some(&job), None, None).0, 200, "{path}");
    }
    let me = s.ok("GET", "/v1/auth/token/lookup-self", Some(&job), None);
    assert_eq!(me["data"]["accessor"], job_id.as_str());
    assert_eq!(
        s.ok("GET", "/api/v1/auth/self", Some(&job), None)["token_id"],
        job_id.as_str()
    );
    let ended = s.call(
        "POST",
        "/v1/auth/token/revoke-self",
        Some(&done),
        None,
        None,
    );
    assert_eq!(ended.0, 204, "{}", ended.1);
    assert_eq!(s.recorded("token.revoke", &done_id).len(), 1);
    let after = s.call("GET", "/v1/auth/token/lookup-self", Some(&done), None, None);
    assert_eq!(after.0, 403);
    let minted = s.call("POST", "/v1/auth/token/create", Some(&job), None, None);
    assert_eq!(minted.0, 403, "{}", minted.1);

    // A service checking the tokens presented to it is never told an ended token is valid:
    // revoked, expired, or a session unused for too long.
    let lookup = |token: &str| {
        s.call(
            "POST",
            "/v1/auth/token/lookup",
            Some(&s.admin),
            Some(json!({ "token": token })),
            None,
        )
        .0
    };
    let by_accessor = |accessor: &str| {
        s.call(
            "POST",
            "/v1/auth/token/lookup-accessor",
            Some(&s.admin),
            Some(json!({ "accessor": accessor })),
            None,
        )
        .0
    };
    assert_eq!((lookup(&job), by_accessor(&job_id)), (200, 200));
    assert_eq!((lookup(&session), lookup(&done)), (200, 403));
    assert_eq!(by_accessor(&done_id), 400);
    s.clock.advance_secs(3601);
    assert_eq!((lookup(&job), by_accessor(&job_id)), (403, 400));
    assert_eq!(lookup(&session), 403, "the session was unused for an hour");
    // Revoking what cannot be revoked any more answers as OpenBao answers its root token
    // (so a clean-up job goes on), and changes nothing.
    let revoke = s.call(
        "POST",
        "/v1/auth/token/revoke-accessor",
        Some(&s.admin),
        Some(json!({ "accessor": job_id })),
        None,
    );
    assert_eq!(revoke.0, 200, "{}", revoke.1);
    assert_eq!(
        revoke.1["warnings"],
        json!(["No token found with this accessor"])
    );
    assert!(s.recorded("token.revoke", &job_id).is_empty());
    // Anyone else is told `invalid accessor`, whether it exists or not.
    let max = s.person("max", "member", None);
    let max_t = s.login(&max);
    let revoke = s.call(
        "POST",
        "/v1/auth/token/revoke-accessor",
        Some(&max_t),
        Some(json!({ "accessor": job_id })),
        None,
    );
    assert_eq!(
        (revoke.0, &revoke.1),
        (
            400,
            &json!({ "errors": ["1 error occurred:\n\t* invalid accessor\n\n"] })
        )
    );
    // A token by value: refused, never a 204 that would say it was revoked, whether it is
    // someone else's live token or gone; an admin revoking one that is gone gets 204.
    let live = s.login(&max);
    let other = s.person("ora", "member", None);
    let other_t = s.login(&other);
    for token in [&live, &job] {
        let revoke = s.call(
            "POST",
            "/v1/auth/token/revoke",
            Some(&other_t),
            Some(json!({ "token": token })),
            None,
        );
        assert_eq!(
            (revoke.0, &revoke.1),
            (403, &json!({ "errors": ["permission denied"] }))
        );
    }
    assert_eq!(lookup(&live), 200, "left alive");
    let revoke = s.call(
        "POST",
        "/v1/auth/token/revoke",
        Some(&s.admin),
        Some(json!({ "token": job })),
        None,
    );
    assert_eq!(revoke.0, 204, "{}", revoke.1);

    // Each refusal is a denial in the ledger, with one reason whether the token exists or
    // not.
    let denied = |path: &str| -> Vec<Value> {
        s.ledger()
            .into_iter()
            .filter(|e| e["resource"] == path && e["outcome"] == "denied")
            .collect()
    };
    let lookups = denied("/v1/auth/token/lookup");
    assert_eq!(lookups.len(), 3, "{lookups:?}");
    assert!(
        lookups
            .iter()
            .all(|e| e["action"] == "tokens.own" && e["reasons"] == json!(["bad_token"])),
        "{lookups:?}"
    );
    assert_eq!(denied("/v1/auth/token/lookup-accessor").len(), 2);
    // The admin's (answered 200 with a warning) and the member's.
    assert_eq!(denied("/v1/auth/token/revoke-accessor").len(), 2);
    assert_eq!(denied("/v1/auth/token/revoke").len(), 3);
    s.assert_no_secret_logged();
}

#[test]
fn a_vault_lookup_does_not_call_valid_the_token_of_a_suspended_vendors_contractor_but_revokes_it() {
    let s = Server::start();
    common::vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let session = s.login(&cy);
    let lookup = || {
        s.call(
            "POST",
            "/v1/auth/token/lookup",
            Some(&s.admin),
            Some(json!({ "token": session })),
            None,
        )
        .0
    };
    assert_eq!(lookup(), 200);
    // Suspending the vendor revokes nothing (its people work again if it comes back), but
    // while it lasts the token is refused every action: it is no valid token.
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "suspended", "reason": "breach" })),
    );
    assert_eq!(lookup(), 403);
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "active", "reason": "resolved" })),
    );
    assert_eq!(lookup(), 200);
    // Revoked while the vendor is suspended, by token or by accessor, a token stays
    // revoked when it comes back.
    let other = s.login(&cy);
    let accessor = s.ok("GET", "/api/v1/auth/self", Some(&other), None)["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "suspended", "reason": "breach" })),
    );
    let (status, body) = s.call(
        "POST",
        "/v1/auth/token/revoke",
        Some(&s.admin),
        Some(json!({ "token": session })),
        None,
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = s.call(
        "POST",
        "/v1/auth/token/revoke-accessor",
        Some(&s.admin),
        Some(json!({ "accessor": accessor })),
        None,
    );
    assert_eq!((status, &body["warnings"]), (204, &Value::Null), "{body}");
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "active", "reason": "resolved" })),
    );
    assert_eq!(lookup(), 403);
    for token in [&session, &other] {
        assert_eq!(
            s.call("GET", "/v1/auth/token/lookup-self", Some(token), None, None)
                .0,
            403
        );
    }
    let fresh = s.login(&cy);
    assert_eq!(
        s.ok("GET", "/api/v1/auth/self", Some(&fresh), None)["role"],
        "contractor"
    );
}

#[test]
fn sessions_end_after_half_an_hour_unused_and_api_tokens_do_not() {
    let s = Server::start();
    let mia = s.person("mia", "member", None);
    let session = s.login(&mia);
    let native = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&session),
        Some(json!({ "ttl": "48h" })),
    );
    let api = native["token"].as_str().unwrap().to_owned();
    s.remember(&api);
    let made = s.ok("POST", "/v1/auth/token/create", Some(&session), None);
    let child = made["auth"]["client_token"].as_str().unwrap().to_owned();
    s.remember(&child);
    let me = |token: &str| s.call("GET", "/api/v1/auth/self", Some(token), None, None);

    // Used every 29 minutes, a session lasts, and so does the Vault token made from it.
    for _ in 0..4 {
        s.clock.advance_secs(29 * 60);
        assert_eq!(me(&session).0, 200);
        assert_eq!(me(&child).0, 200);
    }
    // Unused for 31 minutes, it ends, and says why, even though its child was used
    // meanwhile; the child ends with it. The native API token made with it still works.
    s.clock.advance_secs(15 * 60);
    assert_eq!(me(&child).0, 200);
    s.clock.advance_secs(16 * 60);
    let (status, body) = me(&session);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "session_idle", "{body}");
    let (status, body) = me(&child);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "session_idle", "{body}");
    assert_eq!(me(&api).0, 200);
    // Through the Vault API too.
    let vault = s.call(
        "GET",
        "/v1/auth/token/lookup-self",
        Some(&session),
        None,
        None,
    );
    assert_eq!(vault.0, 403);

    // What decides is the use recorded in the store (so a restarted server or another
    // node judges alike): the session made 40 minutes ago was used 20 minutes ago.
    let fresh = s.login(&mia);
    s.clock.advance_secs(20 * 60);
    assert_eq!(me(&fresh).0, 200);
    s.clock.advance_secs(20 * 60);
    assert_eq!(me(&fresh).0, 200, "used 20 minutes ago");
    s.clock.advance_secs(31 * 60);
    assert_eq!(me(&fresh).0, 401);

    // A refused request is no use: it does not keep the session alive.
    let third = s.login(&mia);
    s.clock.advance_secs(20 * 60);
    let refused = s.call("GET", "/api/v1/people", Some(&third), None, None);
    assert_eq!(refused.0, 403, "{}", refused.1);
    s.clock.advance_secs(15 * 60);
    assert_eq!(me(&third).0, 401, "idle since the login");

    // A child of a session makes no tokens of its own: it cannot step up (that is the
    // session's), so the tree under a session is one level deep, and ends with it.
    let fourth = s.login(&mia);
    let made = s.ok("POST", "/v1/auth/token/create", Some(&fourth), None);
    let child = made["auth"]["client_token"].as_str().unwrap().to_owned();
    s.remember(&child);
    let code = s.code(&mia, 0);
    let verified = s.call(
        "POST",
        "/api/v1/auth/verify",
        Some(&child),
        Some(json!({ "totp": code })),
        None,
    );
    assert_eq!(verified.0, 403, "{}", verified.1);
    let (status, body) = s.call("POST", "/v1/auth/token/create", Some(&child), None, None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(me(&child).0, 200);
    s.clock.advance_secs(31 * 60);
    let (status, body) = me(&child);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "session_idle", "{body}");
}

/// A login refused after its password was verified right says so in its entry (for the
/// anomaly watch: the password is known to whoever sent it); a wrong password does not.
#[test]
fn a_refused_login_records_whether_its_password_was_right() {
    let s = Server::start();
    let ann = s.person("ann", "member", None);
    let login = |password: &str| {
        s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": "ann", "password": password })),
            Some("198.51.100.4"),
        )
        .0
    };
    assert_eq!(login(&ann.password), 401, "no code: mfa_required");
    assert_eq!(login("not-her-password-1"), 401);
    let entries: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "auth.login" && e["resource"] == "ann")
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["reasons"], json!(["mfa_required"]));
    assert_eq!(entries[0]["details"]["password"], "right");
    assert_eq!(entries[1]["details"]["wrong"], "password");
    assert!(entries[1]["details"].get("password").is_none());
}

/// Password checks wait for each other in a bounded queue: a burst of logins from many
/// addresses is answered `busy` past it at once, instead of making every login wait past
/// the request timeout, and a login refused so does not count against its account or
/// address.
#[test]
fn a_burst_of_logins_past_the_password_queue_is_answered_busy() {
    let s = Server::start_password_only();
    let ada = s.person("ada", "member", None);
    // Twice what the queue holds (32 a core, at most eight cores), and some.
    let queue = 32 * std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let statuses: Vec<(u16, String, String)> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2 * queue + 64)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    let from = format!("198.51.{}.{}", 100 + i / 200, 1 + i % 200);
                    let (status, body) = s.call(
                        "POST",
                        "/api/v1/auth/login",
                        None,
                        Some(json!({ "user": format!("nobody{i}"), "password": "wrong-password-123" })),
                        Some(&from),
                    );
                    (
                        status,
                        body["error"]["code"].as_str().unwrap_or_default().to_owned(),
                        from,
                    )
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let busy: Vec<&(u16, String, String)> = statuses
        .iter()
        .filter(|(_, code, _)| code == "busy")
        .collect();
    assert!(!busy.is_empty(), "{statuses:?}");
    for (status, code, _) in &statuses {
        assert!(
            (*status, code.as_str()) == (401, "invalid_credentials")
                || (*status, code.as_str()) == (429, "busy"),
            "{status} {code}"
        );
    }
    // The refused attempt checked nothing and is not counted: nine more wrong passwords from
    // that address do not reach the lockout of ten, and the right one then logs in.
    let from = busy[0].2.clone();
    for _ in 0..9 {
        let (status, _) = s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": "ghost", "password": "wrong-password-123" })),
            Some(&from),
        );
        assert_eq!(status, 401);
    }
    let (status, body) = s.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "user": "ada", "password": ada.password })),
        Some(&from),
    );
    assert_eq!(status, 200, "{body}");
}

/// A login whose client hangs up while it is checked runs to its end: its attempt is never
/// counted towards a lockout without its ledger entry.
#[test]
fn a_login_its_client_abandons_is_counted_and_recorded_or_neither() {
    use std::io::Write as _;
    let s = Server::start_password_only();
    s.person("fay", "member", None);
    let from = "198.51.100.77";
    let body = json!({ "user": "fay", "password": "wrong-password-123" }).to_string();
    let request = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: {from}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let host = s.addr.trim_start_matches("http://").to_owned();
    for wait_ms in [0, 2, 5, 10, 20, 40] {
        let mut stream = std::net::TcpStream::connect(&host).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        drop(stream);
    }
    let counted = || {
        s.runtime
            .block_on(s.state.store().auth_failures_since(
                &format!("ip:{from}"),
                chaperone_core::Timestamp::from_unix_nanos(0),
            ))
            .unwrap()
    };
    let recorded = || {
        s.ledger()
            .iter()
            .filter(|e| e["action"] == "auth.login" && e["client_ip"] == from)
            .count() as u64
    };
    // Every attempt the server took is recorded in the end (within 30 s on a loaded machine).
    let mut last = (0, 0);
    for _ in 0..300 {
        last = (counted(), recorded());
        if last.0 > 0 && last.0 == last.1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(last.0 > 0, "the server took none of the attempts");
    assert_eq!(last.0, last.1, "attempts counted, and recorded");
}
