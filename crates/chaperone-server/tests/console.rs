//! The console (`/ui`) in a real headless Chromium against an in-process server: a
//! contractor asks for access, an approver approves it, and the contractor reads the secret
//! after a step-up, each through the page alone, with the API's decisions and ledger
//! entries behind every click.

mod common;

use chaperone_core::Clock as _;
use common::browser::Browser;
use common::{Person, Server, vendor, write};
use serde_json::json;

/// Signs `person` in on the console with the current TOTP code (used once: the clock moves
/// on to the next step).
fn sign_in(s: &Server, browser: &Browser, person: &Person) {
    browser.go(&format!("{}/ui", s.addr));
    browser.type_into("#user", &person.name);
    browser.type_into("#password", &person.password);
    browser.type_into("#totp", &s.code(person, 0));
    s.clock.advance_secs(30);
    browser.click("#signin-button");
    browser.wait_text("#who", &format!("Signed in as {}", person.name));
}

fn sign_out(browser: &Browser) {
    browser.click("#signout");
    browser.wait_text("#signin-box .small", "You are signed out.");
}

#[test]
fn a_request_is_asked_approved_and_used_through_the_console() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let s = Server::start();
    vendor(&s, "acme");
    s.ok(
        "POST",
        "/api/v1/vendors/acme/agreements",
        Some(&s.admin),
        Some(json!({ "kind": "nda", "signed": "2026-01-01" })),
    );
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "ops", "level": "confidential" })),
    );
    let value = "deploy-Wq83-Lx02-Tz61";
    write(&s, "ops/deploy", value);
    let ann = s.person("ann", "approver", None);
    let cy = s.person("cy", "contractor", Some("acme"));

    // The page: a strict policy, nothing cached, no referrer.
    let page = s.agent.get(format!("{}/ui", s.addr)).call().unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers()["cache-control"], "no-store");

    // A wrong password is refused on the page, and nothing is signed in.
    browser.go(&format!("{}/ui", s.addr));
    browser.type_into("#user", "cy");
    browser.type_into("#password", "not-the-password");
    browser.click("#signin-button");
    browser.wait_text("#error", "password");
    assert_eq!(browser.count("#console-box:not([hidden])"), 0);

    // The contractor asks; the reason is shown to approvers as text, never as markup.
    sign_in(&s, &browser, &cy);
    // Tabs follow the role: a contractor has no vendors or findings to look at.
    assert_eq!(browser.count("#tab-vendors"), 0);
    assert_eq!(browser.count("#tab-ledger"), 1);
    let reason = "rotate the deploy key <img src=x id=injected>";
    browser.type_into("#ask-prefix", "ops/deploy");
    browser.click("#ask-list");
    browser.type_into("#ask-duration", "2d");
    browser.type_into("#ask-reason", reason);
    browser.click("#ask button[type=submit]");
    browser.wait_text("#message", "Asked: request");
    browser.wait_text("#request-list", "ops/deploy");
    // No approve button on one's own request; a withdraw button instead.
    assert_eq!(browser.count("button.approve"), 0);
    assert_eq!(browser.count("button.withdraw"), 1);
    sign_out(&browser);

    sign_in(&s, &browser, &ann);
    let listed = browser.wait_text("#request-list", "cy");
    assert!(listed.contains(reason), "{listed}");
    assert_eq!(browser.count("#injected"), 0, "the reason became markup");
    browser.type_into("input.comment", "for the key rotation");
    // The level asks a fresh second factor of its readers, and so of its approvers: past
    // the step-up window, the console asks for a code, then approves.
    s.clock.advance_secs(16 * 60);
    browser.click("button.approve");
    browser.wait_text("#step-up", "Approving access to ops/deploy");
    assert!(s.recorded("access.approve", "ops/deploy").is_empty());
    browser.type_into("#step-up-code", &s.code(&ann, 0));
    browser.click("#step-up button[type=submit]");
    browser.wait_text("#message", "Approved: cy has read, list on ops/deploy.");
    sign_out(&browser);

    let approved = s.recorded("access.approve", "ops/deploy");
    assert_eq!(approved.len(), 1, "{approved:?}");
    let grants = s.ok("GET", "/api/v1/grants", Some(&s.admin), None);
    assert!(
        grants
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["prefix"] == "ops/deploy" && g["capabilities"] == json!(["read", "list"])),
        "{grants}"
    );

    // The contractor reads it. The level asks for a fresh second factor: past the step-up
    // window, the console asks for a code and then reads.
    sign_in(&s, &browser, &cy);
    s.clock.advance_secs(16 * 60);
    browser.click("#tab-secrets");
    browser.click("button.link[data-path='ops/']");
    browser.click("button.link[data-path='ops/deploy']");
    browser.wait_text("#step-up", "TOTP");
    assert!(s.recorded("secret.read", "ops/deploy").is_empty());
    // A mistyped code is said so, and the session goes on.
    browser.type_into("#step-up-code", "000000");
    browser.click("#step-up button[type=submit]");
    browser.wait_text("#error", "code");
    assert_eq!(browser.count("#console-box:not([hidden])"), 1);
    browser.type_into("#step-up-code", &s.code(&cy, 0));
    browser.click("#step-up button[type=submit]");
    browser.wait_text("#secret", value);
    assert_eq!(s.recorded("secret.read", "ops/deploy").len(), 1);
    // Their access, and an extension asked for from it.
    browser.click("#tab-requests");
    let held = browser.wait_text("#my-grants", "ops/deploy");
    assert!(held.contains("read, list"), "{held}");
    browser.type_into("input.extend-reason", "the rotation slipped a day");
    browser.click("button.extend");
    browser.wait_text("#message", "to extend your access to ops/deploy");
    let asked = s.ok(
        "GET",
        "/api/v1/requests?status=pending",
        Some(&s.admin),
        None,
    );
    let extension = asked
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "the rotation slipped a day")
        .unwrap_or_else(|| panic!("{asked}"));
    assert!(extension["extends"].is_string(), "{extension}");
    // Their own entries, as theirs; on a phone-sized window the page itself does not
    // scroll sideways (wide tables scroll in their own box).
    browser.click("#tab-ledger");
    let mine = browser.wait_text("#view-ledger", "secret.read");
    assert!(mine.contains("you"), "{mine}");
    browser.resize(420, 800);
    let widths = browser.run(
        "return [window.innerWidth, document.documentElement.scrollWidth, \
         document.querySelector('#view-ledger table').scrollWidth];",
    );
    // The ledger's table is wider than the window, and scrolls in its own box.
    assert!(widths[2].as_i64() > widths[0].as_i64(), "{widths}");
    assert!(widths[1].as_i64() <= widths[0].as_i64(), "{widths}");
    browser.resize(1280, 900);

    // Signing out revokes the session on the server, not only in the page.
    let session = s
        .ledger()
        .into_iter()
        .rev()
        .find(|e| e["action"] == "auth.login" && e["resource"] == "cy")
        .unwrap();
    let token_id = session["actor"]["token"].as_str().unwrap().to_owned();
    sign_out(&browser);
    let revoked = s
        .ledger()
        .into_iter()
        .any(|e| e["action"] == "token.revoke" && e["resource"] == token_id.as_str());
    assert!(revoked, "signing out left the session usable");

    // An auditor's report of the day: the wrong password and step-up code, and the read.
    let aud = s.person("aud", "auditor", None);
    sign_in(&s, &browser, &aud);
    // The ledger, a page at a time: the newest first, then older ones (enough entries for
    // more than two pages first).
    for n in 0..100 {
        s.ok(
            "PUT",
            "/api/v1/secrets/data/ops/counter",
            Some(&s.admin),
            Some(json!({ "data": { "n": n.to_string() } })),
        );
    }
    browser.click("#tab-ledger");
    let range = |text: String| -> (u64, u64) {
        let numbers: Vec<u64> = text
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    };
    let (from, to) = range(browser.wait_text("#ledger-range", "Entries"));
    assert_eq!(to + 1 - from, 50, "a full page");
    assert_eq!(
        browser.run("return document.querySelector('#ledger-newer').disabled;"),
        json!(true)
    );
    browser.click("#ledger-older");
    browser.wait_text("#ledger-range", &format!(" to {}", from - 1));
    let (older_from, _) = range(browser.text("#ledger-range"));
    assert_eq!(older_from, from.saturating_sub(50));
    let first_row = browser.text("#view-ledger tbody tr td");
    assert_eq!(
        first_row,
        (from - 1).to_string(),
        "newest of the page first"
    );
    browser.click("#ledger-newer");
    browser.wait_text("#ledger-range", &format!("Entries {from} to"));
    assert_eq!(browser.count("#tab-reports"), 1);
    browser.click("#tab-reports");
    browser.displayed("#report-period");
    let day = |offset: i64| s.clock.now().plus_secs(offset * 86_400).to_rfc3339()[..10].to_owned();
    browser.run(&format!(
        "document.querySelector('#report-from').value = '{}'; \
         document.querySelector('#report-to').value = '{}';",
        day(0),
        day(1)
    ));
    browser.click("#report-period button[type=submit]");
    // The wrong password and the wrong step-up code, both cy's.
    let report = browser.wait_text("#report", "Failed logins: 2");
    assert!(report.contains("cy 2"), "{report}");
    assert!(report.contains("secret.read"), "{report}");
    assert!(report.contains("acme"), "{report}");
    sign_out(&browser);
    s.assert_no_secret_logged();
}

/// The console keeps a session the server may still hold when the server cannot answer
/// (sealed, here), and ends it when the account is disabled; a refusal of the Secrets tab
/// other than a read-only grant's is shown as it is.
#[test]
fn the_console_keeps_a_live_session_through_an_outage_and_ends_a_disabled_one() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let s = Server::start();
    let mo = s.person("mo", "member", None);
    sign_in(&s, &browser, &mo);

    // Sealed: a reload cannot ask who the session is, and keeps it.
    s.ok("POST", "/api/v1/sys/seal", Some(&s.admin), None);
    browser.go(&format!("{}/ui", s.addr));
    browser.wait_text("#error", "Your session is kept");
    let kept = browser.run("return sessionStorage.length;");
    assert_eq!(kept, json!(1));
    s.unseal();
    browser.click("#retry");
    browser.wait_text("#who", "Signed in as mo");

    // Disabled: the next call ends the session in the page, and says why.
    s.ok("POST", "/api/v1/people/mo/disable", Some(&s.admin), None);
    browser.click("#tab-secrets");
    browser.wait_text("#signin-box .small", "Your account is not active");
    let kept = browser.run("return sessionStorage.length;");
    assert_eq!(kept, json!(0));
}
