//! Third-party governance through the HTTP API of an in-process server with a manual clock
//! (time is moved, never slept): the vendor lifecycle, approved requests held to their
//! level, the continuous compliance gate, break-glass, access reviews, reminders and their
//! delivery, sealed documents, acknowledgements, and isolation between vendors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use common::{Server, error, vendor, write};
use serde_json::{Value, json};

// The harness clock starts at 2027-01-15T08:00:00Z.
const DAY: i64 = 86_400;

fn agreement(s: &Server, vendor: &str, body: Value) -> Value {
    s.ok(
        "POST",
        &format!("/api/v1/vendors/{vendor}/agreements"),
        Some(&s.admin),
        Some(body),
    )
}

#[test]
fn regulated_access_follows_approvals_and_the_vendors_compliance_at_every_read() {
    let s = Server::start();
    let ann = s.person("ann", "approver", None);
    let sam = s.person("sam", "security", None);
    let ann_t = s.login(&ann);
    let sam_t = s.login(&sam);

    // Onboarding: prospect → onboarding → active, each transition with a reason.
    let created = s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({
            "name": "acme", "owner": "sam", "criticality": "critical", "country": "de",
            "contacts": [{ "name": "Ada", "email": "ada@acme.example", "role": "security" }],
            "storage_locations": ["eu-central-1"], "ports": [443], "protocols": ["https"]
        })),
    );
    assert_eq!(created["status"], "prospect");
    assert_eq!(created["country"], "DE");
    // The owner is kept by id and shown by name too.
    assert_eq!(created["owner_name"], "sam", "{created}");
    assert!(
        created["owner"].as_str().unwrap().starts_with("per_"),
        "{created}"
    );
    // A sub-processor names its parent, and the parent lists it.
    let sub = s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme-hosting", "parent": "acme" })),
    );
    assert_eq!(sub["parent"], created["id"], "{sub}");
    assert_eq!(sub["parent_name"], "acme", "{sub}");
    let parent = s.ok("GET", "/api/v1/vendors/acme", Some(&s.admin), None);
    assert_eq!(
        parent["sub_processors"],
        json!(["acme-hosting"]),
        "{parent}"
    );
    let refused = s.call(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "active", "reason": "skip ahead" })),
        None,
    );
    assert_eq!(refused.0, 400);
    assert_eq!(
        refused.1["error"]["message"],
        "a prospect vendor cannot become active (it can become: onboarding, terminated)"
    );
    assert_eq!(
        error(
            &s,
            "PUT",
            "/api/v1/vendors/acme",
            &s.admin,
            Some(json!({ "status": "onboarding" }))
        ),
        (400, "invalid_request".into()),
        "a transition needs a reason"
    );
    for (status, reason) in [
        ("onboarding", "MSA signed"),
        ("active", "paperwork complete"),
    ] {
        s.clock.advance_secs(60);
        s.ok(
            "PUT",
            "/api/v1/vendors/acme",
            Some(&s.admin),
            Some(json!({ "status": status, "reason": reason })),
        );
    }
    let shown = s.ok("GET", "/api/v1/vendors/acme", Some(&ann_t), None);
    assert_eq!(shown["status"], "active");
    let history: Vec<(&str, &str)> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["to"].as_str().unwrap(), h["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [
            ("onboarding", "MSA signed"),
            ("active", "paperwork complete")
        ]
    );

    // NDA (no end), DPA (ends 2027-01-17), SOC 2 Type II (valid to mid-2027).
    agreement(&s, "acme", json!({ "kind": "nda", "signed": "2026-01-01" }));
    let dpa = agreement(
        &s,
        "acme",
        json!({ "kind": "dpa", "signed": "2026-01-10", "effective": "2026-02-01",
                "expires": "2027-01-17",
                "clauses": { "breach_notification_hours": 72, "termination_data": "destroy",
                             "termination_data_days": 30, "audit_rights": true } }),
    );
    assert_eq!(dpa["status"], "active");
    assert_eq!(dpa["clauses"]["breach_notification_hours"], 72);
    s.ok(
        "POST",
        "/api/v1/vendors/acme/evidence",
        Some(&s.admin),
        Some(json!({ "kind": "soc2-type2", "issuer": "Example LLP",
                     "period_start": "2026-01-01", "period_end": "2026-06-30",
                     "expires": "2027-07-01" })),
    );
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "acme/prod", "level": "regulated" })),
    );
    write(&s, "acme/prod/db", "regulated-Yq71mZ");

    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    assert_eq!(
        error(&s, "GET", "/api/v1/secrets/data/acme/prod/db", &cy_t, None),
        (403, "not_permitted".into())
    );

    // The request is held to the level: at most 7 days, two approvals, never oneself.
    let ask = |duration: &str| {
        s.call(
            "POST",
            "/api/v1/requests",
            Some(&cy_t),
            Some(
                json!({ "prefix": "acme/prod", "capabilities": ["read", "list"],
                         "reason": "migrate the billing database", "duration": duration }),
            ),
            None,
        )
    };
    // The contractor is not told how the prefix is classified; an over-long request is
    // refused when an approver tries to approve it.
    let (status, too_long) = ask("8d");
    assert_eq!(status, 200, "{too_long}");
    assert_eq!(
        (
            too_long["level"].as_str(),
            too_long["approvals_needed"].as_u64()
        ),
        (Some(""), Some(0))
    );
    let (status, refused) = s.call(
        "POST",
        &format!(
            "/api/v1/requests/{}/approve",
            too_long["id"].as_str().unwrap()
        ),
        Some(&ann_t),
        Some(json!({})),
        None,
    );
    assert_eq!(status, 409);
    assert_eq!(
        refused["error"]["message"],
        "access at level regulated lasts at most 7 days, less than this request asks for (the \
         level may have changed since, or its vendor's people are not told it when filing): \
         deny it and ask again"
    );
    // The operation's own refusals are denials in the ledger, 409s as well as 403s, with
    // the request's path, never the route's pattern.
    let denied = |code: &str| {
        s.ledger()
            .into_iter()
            .filter(|e| e["action"] == "access.approve" && e["outcome"] == "denied")
            .filter(|e| e["reasons"] == json!([code]))
            .collect::<Vec<_>>()
    };
    let policy_changed = denied("policy_changed");
    assert_eq!(policy_changed.len(), 1, "{policy_changed:?}");
    assert_eq!(
        policy_changed[0]["resource"],
        format!(
            "/api/v1/requests/{}/approve",
            too_long["id"].as_str().unwrap()
        )
    );
    s.ok(
        "POST",
        &format!("/api/v1/requests/{}/deny", too_long["id"].as_str().unwrap()),
        Some(&ann_t),
        Some(json!({ "comment": "7 days at most" })),
    );
    let (status, request) = ask("3d");
    assert_eq!(status, 200, "{request}");
    let id = request["id"].as_str().unwrap().to_owned();
    // Approvers see the level it is held to.
    let pending = s.ok("GET", "/api/v1/requests?status=pending", Some(&ann_t), None);
    let held = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (held["level"].as_str(), held["approvals_needed"].as_u64()),
        (Some("regulated"), Some(2))
    );
    let approve = |token: &str| {
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            token,
            Some(json!({ "comment": "ok" })),
        )
    };
    assert_eq!(approve(&cy_t), (403, "not_permitted".into()));
    // An approver's own request cannot be approved by that approver.
    let own = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&ann_t),
        Some(
            json!({ "prefix": "ops", "capabilities": ["read"], "reason": "on call",
                     "duration": "1d" }),
        ),
    );
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{}/approve", own["id"].as_str().unwrap()),
            &ann_t,
            Some(json!({})),
        ),
        (403, "self_approval".into())
    );
    // A handler's refusal is a denial in the ledger like the policy's.
    let refused = s
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "access.approve" && e["outcome"] == "denied")
        .find(|e| e["reasons"] == json!(["self_approval"]))
        .expect("the self-approval is recorded");
    assert_eq!(
        refused["resource"],
        format!("/api/v1/requests/{}/approve", own["id"].as_str().unwrap())
    );
    assert!(refused["actor"]["person"].is_string(), "{refused}");
    // Approvers were told.
    let told = s.ok("GET", "/api/v1/notifications", Some(&ann_t), None);
    assert!(
        told.as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "access_request" && n["details"]["request_id"] == id.as_str()),
        "{told}"
    );
    let first = s.ok(
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        Some(&ann_t),
        Some(json!({ "comment": "for the migration" })),
    );
    assert_eq!(first["status"], "pending");
    assert_eq!(approve(&ann_t), (409, "already_approved".into()));
    let twice = denied("already_approved");
    assert_eq!(twice.len(), 1, "{twice:?}");
    assert_eq!(
        twice[0]["resource"],
        format!("/api/v1/requests/{id}/approve")
    );
    assert!(twice[0]["actor"]["person"].is_string(), "{}", twice[0]);
    // The contractor sees it pending, not that one approval of two is in: that would say
    // the path is regulated.
    let mine = s.ok("GET", "/api/v1/requests", Some(&cy_t), None);
    let seen = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(
        (
            seen["status"].as_str(),
            seen["approvals"].as_array().map(Vec::len),
            seen["level"].as_str()
        ),
        (Some("pending"), Some(0), Some("")),
        "{seen}"
    );
    assert_eq!(
        error(&s, "GET", "/api/v1/secrets/data/acme/prod/db", &cy_t, None),
        (403, "not_permitted".into()),
        "one approval of two grants nothing"
    );
    let second = s.ok(
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        Some(&sam_t),
        Some(json!({})),
    );
    assert_eq!(second["status"], "approved");
    let grant_id = second["grant_id"].as_str().unwrap().to_owned();
    assert_eq!(approve(&sam_t), (409, "not_pending".into()));
    let read = s.ok(
        "GET",
        "/api/v1/secrets/data/acme/prod/db",
        Some(&cy_t),
        None,
    );
    assert_eq!(read["data"]["password"], "regulated-Yq71mZ");
    let created = s.recorded("grant.create", &grant_id);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["details"]["request_id"], id.as_str());

    // The DPA expires at midnight on 2027-01-17: the next read is refused with that reason,
    // through both APIs, and the refusal is in the ledger with it.
    s.clock.advance_secs(2 * DAY);
    let cy_t = s.login(&cy);
    let (status, body) = s.call(
        "GET",
        "/api/v1/secrets/data/acme/prod/db",
        Some(&cy_t),
        None,
        None,
    );
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "compliance");
    assert_eq!(
        body["error"]["message"],
        "agreement DPA of vendor acme expired on 2027-01-17"
    );
    let (status, _) = s.call(
        "GET",
        "/v1/secret/data/acme/prod/db",
        Some(&cy_t),
        None,
        None,
    );
    assert_eq!(status, 403);
    let denial = s
        .ledger()
        .into_iter()
        .rev()
        .find(|e| {
            e["action"] == "secret.read"
                && e["resource"] == "acme/prod/db"
                && e["outcome"] == "denied"
        })
        .expect("the denial is recorded");
    assert_eq!(denial["reasons"], json!(["compliance"]));
    assert_eq!(
        denial["details"]["explanation"],
        "agreement DPA of vendor acme expired on 2027-01-17"
    );

    // A renewal restores access at once.
    agreement(
        &s,
        "acme",
        json!({ "kind": "dpa", "signed": "2027-01-16", "effective": "2027-01-17",
                "expires": "2028-01-17" }),
    );
    let read = s.ok(
        "GET",
        "/api/v1/secrets/data/acme/prod/db",
        Some(&cy_t),
        None,
    );
    assert_eq!(read["data"]["password"], "regulated-Yq71mZ");
    let listed = s.ok(
        "GET",
        "/api/v1/vendors/acme/agreements",
        Some(&s.admin),
        None,
    );
    let mut statuses: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["status"].as_str().unwrap()))
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [("dpa", "active"), ("dpa", "expired"), ("nda", "active")]
    );

    // The grant ends by itself (3 days after approval), without any sweep.
    s.clock.advance_secs(DAY + 3600);
    let cy_t = s.login(&cy);
    assert_eq!(
        error(&s, "GET", "/api/v1/secrets/data/acme/prod/db", &cy_t, None),
        (403, "not_permitted".into())
    );
    s.assert_no_secret_logged();
}

#[test]
fn an_approver_does_not_review_the_grant_they_approved_or_extended() {
    let s = Server::start();
    vendor(&s, "acme");
    let sam = s.person("sam", "security", None);
    let ann = s.person("ann", "approver", None);
    let bob = s.person("bob", "approver", None);
    let cy = s.person("cy", "contractor", Some("acme"));
    let (sam_t, ann_t, bob_t, cy_t) = (s.login(&sam), s.login(&ann), s.login(&bob), s.login(&cy));
    let ask = |body: Value| {
        s.ok("POST", "/api/v1/requests", Some(&cy_t), Some(body))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let approve = |token: &str, id: &str| {
        s.ok(
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            Some(token),
            Some(json!({ "comment": "ok" })),
        )
    };
    let first = ask(json!({ "prefix": "acme/app", "capabilities": ["read"],
                            "reason": "deploy", "duration": "1d" }));
    let grant = approve(&ann_t, &first)["grant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let review = |token: &str| {
        let campaign = s.ok(
            "POST",
            "/api/v1/reviews",
            Some(&sam_t),
            Some(json!({ "vendor": "acme", "deadline": "7d" })),
        );
        let id = campaign["id"].as_str().unwrap().to_owned();
        let item = campaign["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "grant" && i["subject"] == grant.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        error(
            &s,
            "POST",
            &format!("/api/v1/reviews/{id}/items/{item}"),
            token,
            Some(json!({ "decision": "certify" })),
        )
    };
    assert_eq!(review(&ann_t), (403, "self_review".into()));
    // Bob approves an extension of it: now neither of them reviews it, sam does.
    let extension = s.ok(
        "POST",
        &format!("/api/v1/grants/{grant}/extend"),
        Some(&cy_t),
        Some(json!({ "reason": "more work", "duration": "1d" })),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    approve(&bob_t, &extension);
    assert_eq!(review(&bob_t), (403, "self_review".into()));
    assert_eq!(review(&ann_t), (403, "self_review".into()));
    let (status, code) = review(&sam_t);
    assert_eq!(status, 200, "{code}");

    // An extension approved after the grant ended does not bring it back.
    let late = s.ok(
        "POST",
        &format!("/api/v1/grants/{grant}/extend"),
        Some(&cy_t),
        Some(json!({ "reason": "still more", "duration": "1d" })),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.clock.advance_secs(2 * DAY);
    let ann_t = s.login(&ann);
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{late}/approve"),
            &ann_t,
            Some(json!({})),
        ),
        (409, "grant_ended".into())
    );
    // Closed, and its requester told: it waits for no approval that cannot help.
    let closed = s.ok(
        "GET",
        "/api/v1/requests?status=cancelled",
        Some(&ann_t),
        None,
    );
    assert!(
        closed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == late.as_str()),
        "{closed}"
    );
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{late}/approve"),
            &ann_t,
            Some(json!({})),
        ),
        (409, "not_pending".into())
    );

    // Revoking the account in a review revokes its grants with it: enabling the account
    // again brings none of them back.
    write(&s, "acme/app/db", "reviewed-Tx30");
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme/app", "capabilities": ["read"],
                     "ttl": "1d", "reason": "incident 7" }),
        ),
    );
    let cy_t = s.login(&cy);
    s.ok("GET", "/api/v1/secrets/data/acme/app/db", Some(&cy_t), None);
    let wrapped = common::wrapped_read(&s, &cy_t, "acme/app/db");
    let sam_t = s.login(&sam);
    let campaign = s.ok(
        "POST",
        "/api/v1/reviews",
        Some(&sam_t),
        Some(json!({ "vendor": "acme", "deadline": "7d" })),
    );
    let account = campaign["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "account")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.ok(
        "POST",
        &format!(
            "/api/v1/reviews/{}/items/{account}",
            campaign["id"].as_str().unwrap()
        ),
        Some(&sam_t),
        Some(json!({ "decision": "revoke" })),
    );
    s.ok("POST", "/api/v1/people/cy/enable", Some(&s.admin), None);
    let cy_t = s.login(&cy);
    assert_eq!(
        error(&s, "GET", "/api/v1/secrets/data/acme/app/db", &cy_t, None),
        (403, "not_permitted".into())
    );
    // What the account wrapped went with it, and the decision names it.
    let decided = s.recorded("review.decide", campaign["id"].as_str().unwrap());
    assert_eq!(
        decided[0]["details"]["wrappings_revoked"],
        json!([wrapped["accessor"]]),
        "{decided:?}"
    );
    // Deleted, not only refused: a lookup (which does not ask after the maker) finds
    // nothing either.
    let (status, _) = s.call(
        "POST",
        "/v1/sys/wrapping/lookup",
        None,
        Some(json!({ "token": wrapped["token"] })),
        None,
    );
    assert_eq!(status, 400);
}

#[test]
fn terminating_a_vendor_revokes_its_peoples_grants_and_wrapped_answers() {
    let s = Server::start();
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    write(&s, "acme/app/db", "terminated-Hm41");
    let grant = s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme/app", "capabilities": ["read"],
                     "ttl": "1d", "reason": "incident 8" }),
        ),
    );
    let cy_t = s.login(&cy);
    let wrapped = common::wrapped_read(&s, &cy_t, "acme/app/db");
    let grants = s.ok("GET", "/api/v1/grants", Some(&s.admin), None);
    assert!(
        grants
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == grant["id"])
    );
    assert_eq!(
        error(
            &s,
            "PUT",
            "/api/v1/vendors/acme",
            &s.admin,
            Some(json!({ "status": "terminated", "reason": "contract ended" }))
        ),
        (400, "invalid_request".into()),
        "an active vendor is suspended or offboarded first"
    );
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "suspended", "reason": "contract ended" })),
    );
    // Nor is a vendor whose people had access ended by a status change alone: that would
    // skip the blast radius, the rotation findings and the attestation.
    for status in ["offboarding", "terminated"] {
        assert_eq!(
            error(
                &s,
                "PUT",
                "/api/v1/vendors/acme",
                &s.admin,
                Some(json!({ "status": status, "reason": "contract ended" }))
            ),
            (409, "offboard_first".into()),
            "{status}"
        );
    }
    let report = s.ok(
        "POST",
        "/api/v1/vendors/acme/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "contract ended" })),
    );
    assert_eq!(
        report["blast_radius"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    // An account added since is disabled by the termination, which names it.
    s.person("dee", "contractor", Some("acme"));
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "terminated", "reason": "contract ended" })),
    );
    let terminated = s.recorded("vendor.update", "acme").pop().unwrap();
    assert_eq!(
        terminated["details"]["people_disabled"][0]["name"], "dee",
        "{terminated}"
    );
    let grants = s.ok("GET", "/api/v1/grants", Some(&s.admin), None);
    assert!(
        !grants
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == grant["id"]),
        "revoked grants are no longer listed: {grants}"
    );
    let (status, _) = s.call(
        "POST",
        "/v1/sys/wrapping/lookup",
        None,
        Some(json!({ "token": wrapped["token"] })),
        None,
    );
    assert_eq!(
        status, 400,
        "the answer went with the vendor: deleted, not only refused"
    );
    let offboarded = s.recorded("vendor.offboard", "acme");
    let details = &offboarded.last().unwrap()["details"];
    assert_eq!(details["grants_revoked"], 1, "{details}");
    assert_eq!(
        details["wrappings_revoked"],
        json!([wrapped["accessor"]]),
        "{details}"
    );
}

#[test]
fn reviews_revoke_what_nobody_decided_and_break_glass_is_flagged() {
    let s = Server::start();
    vendor(&s, "acme");
    // The accounts the initial admin token made itself (ada) review nothing it did: whoever
    // holds the token was handed their enrolment codes. Sam and ann are ada's.
    let ada = s.person("ada", "admin", None);
    let ada_t = s.login(&ada);
    let sam = s.person_made_by(&ada_t, "sam", "security", None, None);
    let ann = s.person_made_by(&ada_t, "ann", "approver", None, None);
    let cy = s.person("cy", "contractor", Some("acme"));
    let cz = s.person("cz", "contractor", Some("acme"));
    let sam_t = s.login(&sam);
    let ann_t = s.login(&ann);
    write(&s, "acme/app/db", "internal-Kd82nQ");

    // Break-glass is for admins, needs a reason and stays within the level's maximum.
    let glass = |token: &str, body: Value| error(&s, "POST", "/api/v1/grants", token, Some(body));
    let body = json!({ "person": "cy", "prefix": "acme/app", "capabilities": ["read", "list"],
                       "ttl": "30d", "reason": "production incident 12" });
    assert_eq!(glass(&sam_t, body.clone()), (403, "not_permitted".into()));
    let mut no_reason = body.clone();
    no_reason["reason"] = json!("  ");
    assert_eq!(glass(&s.admin, no_reason), (400, "invalid_request".into()));
    let mut too_long = body.clone();
    too_long["ttl"] = json!("100d");
    assert_eq!(glass(&s.admin, too_long), (400, "grant_too_long".into()));
    // Refused by the operation, it is a denial in the ledger like the policy's.
    assert!(
        s.ledger().into_iter().any(|e| e["outcome"] == "denied"
            && e["reasons"] == json!(["grant_too_long"])
            && e["resource"] == "/api/v1/grants"),
        "the refused break-glass grant is recorded"
    );
    let grant = s.ok("POST", "/api/v1/grants", Some(&s.admin), Some(body));
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(grant["break_glass"], true);
    assert_eq!(grant["needs_review"], true);
    let flagged = s.ok("GET", "/api/v1/grants?flagged=true", Some(&sam_t), None);
    assert_eq!(flagged.as_array().unwrap().len(), 1);
    let cy_t = s.login(&cy);
    s.ok("GET", "/api/v1/secrets/data/acme/app/db", Some(&cy_t), None);
    let cz_t = s.login(&cz);
    // Reviewed by someone other than whoever broke the glass.
    let review = |token: &str| {
        error(
            &s,
            "POST",
            &format!("/api/v1/grants/{grant_id}/review"),
            token,
            Some(json!({ "note": "incident 12 confirmed" })),
        )
    };
    assert_eq!(review(&s.admin), (403, "self_review".into()));
    assert_eq!(review(&ada_t), (403, "self_review".into()));
    s.ok(
        "POST",
        &format!("/api/v1/grants/{grant_id}/review"),
        Some(&sam_t),
        Some(json!({ "note": "incident 12 confirmed" })),
    );
    assert_eq!(review(&sam_t), (409, "already_reviewed".into()));
    let flagged = s.ok("GET", "/api/v1/grants?flagged=true", Some(&sam_t), None);
    assert!(flagged.as_array().unwrap().is_empty());

    // A review of acme: both accounts and the grant. Ann certifies cy, revokes cz; nobody
    // decides the grant.
    let campaign = s.ok(
        "POST",
        "/api/v1/reviews",
        Some(&sam_t),
        Some(json!({ "vendor": "acme", "deadline": "7d" })),
    );
    let id = campaign["id"].as_str().unwrap().to_owned();
    let items = campaign["items"].as_array().unwrap();
    let item = |kind: &str, summary: &str| {
        items
            .iter()
            .find(|i| i["kind"] == kind && i["summary"].as_str().unwrap().contains(summary))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(items.len(), 3, "{campaign}");
    let decide = |token: &str, item: &str, decision: &str| {
        s.call(
            "POST",
            &format!("/api/v1/reviews/{id}/items/{item}"),
            Some(token),
            Some(json!({ "decision": decision, "note": "checked with the owner" })),
            None,
        )
    };
    // cz has a request pending: revoking the account closes it.
    let pending = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cz_t),
        Some(
            json!({ "prefix": "acme/app", "capabilities": ["read"], "reason": "deploy",
                     "duration": "1d" }),
        ),
    );
    let pending = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(decide(&ann_t, &item("account", "cy "), "certify").0, 200);
    assert_eq!(decide(&ann_t, &item("account", "cz "), "revoke").0, 200);
    let requests = s.ok("GET", "/api/v1/requests", Some(&s.admin), None);
    let closed = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == pending.as_str())
        .unwrap();
    assert_eq!(closed["status"], "cancelled", "{closed}");
    assert_eq!(decide(&ann_t, &item("account", "cy "), "revoke").0, 409);
    // Whoever broke the glass does not certify the grant in a review either.
    let (status, body) = decide(&s.admin, &item("grant", "cy may"), "certify");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("self_review"))
    );
    let (status, body) = s.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "user": "cz", "password": cz.password, "totp": s.code(&cz, 0) })),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("account_inactive")),
        "a revoked account is disabled at once"
    );
    // Its session was revoked with it: enabling the account again brings it back only
    // through a new login.
    s.ok("POST", "/api/v1/people/cz/enable", Some(&s.admin), None);
    let self_of = |token: &str| {
        s.call("GET", "/api/v1/auth/self", Some(token), None, None)
            .0
    };
    assert_eq!(self_of(&cz_t), 401);

    // Past the deadline: no more decisions; the sweep revokes the undecided grant.
    s.clock.advance_secs(8 * DAY);
    let ann_t = s.login(&ann);
    assert_eq!(decide(&ann_t, &item("grant", "cy may"), "certify").0, 409);
    let report = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!((report.campaigns_closed, report.items_revoked), (1, 1));
    let again = s.runtime.block_on(s.state.sweep()).unwrap();
    assert_eq!(again.campaigns_closed, 0, "a closed review stays closed");
    let closed = s.ok(
        "GET",
        &format!("/api/v1/reviews/{id}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(closed["status"], "closed");
    let grant_item = closed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "grant")
        .unwrap()
        .clone();
    assert_eq!(grant_item["decision"], "expired");
    let cy_t = s.login(&cy);
    assert_eq!(
        error(&s, "GET", "/api/v1/secrets/data/acme/app/db", &cy_t, None),
        (403, "not_permitted".into())
    );
    let entries = s.recorded("review.close", &id);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0]["details"]["revoked"][0]["subject"],
        grant_id.as_str()
    );

    // A grant that ended by itself before the deadline is not reported as revoked.
    let short = s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme/app", "capabilities": ["read"],
                     "ttl": "1d", "reason": "production incident 13" }),
        ),
    );
    let short_id = short["id"].as_str().unwrap().to_owned();
    let sam_t = s.login(&sam);
    let second = s.ok(
        "POST",
        "/api/v1/reviews",
        Some(&sam_t),
        Some(json!({ "vendor": "acme", "deadline": "7d" })),
    );
    let second_id = second["id"].as_str().unwrap().to_owned();
    s.clock.advance_secs(8 * DAY);
    s.runtime.block_on(s.state.sweep()).unwrap();
    let entry = s.recorded("review.close", &second_id).remove(0);
    let subjects = |key: &str| -> Vec<String> {
        entry["details"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["subject"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        subjects("already_ended"),
        std::slice::from_ref(&short_id),
        "{entry}"
    );
    assert!(!subjects("revoked").contains(&short_id), "{entry}");
    s.assert_no_secret_logged();
}

#[test]
fn a_contractor_never_reads_lists_or_learns_of_another_vendors_paths() {
    let s = Server::start();
    vendor(&s, "alpha");
    vendor(&s, "beta");
    let ca = s.person("ca", "contractor", Some("alpha"));
    let cb = s.person("cb", "contractor", Some("beta"));
    write(&s, "alpha/app/db", "alpha-Wq83nM");
    write(&s, "beta/app/db", "beta-Pz02kD");
    write(&s, "beta/plans/launch", "beta-Lk29sV");
    for (who, prefix) in [("ca", "alpha"), ("cb", "beta")] {
        s.ok(
            "POST",
            "/api/v1/grants",
            Some(&s.admin),
            Some(
                json!({ "person": who, "prefix": prefix, "capabilities": ["read", "list"],
                         "ttl": "7d", "reason": "project work" }),
            ),
        );
    }
    let ca_t = s.login(&ca);
    let cb_t = s.login(&cb);
    s.ok(
        "GET",
        "/api/v1/secrets/data/alpha/app/db",
        Some(&ca_t),
        None,
    );
    s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cb_t),
        Some(json!({ "prefix": "beta/plans", "capabilities": ["write"],
                     "reason": "launch notes", "duration": "1d" })),
    );

    // Reading an existing and a missing path of beta answer exactly alike, in both APIs.
    for api in [
        "/api/v1/secrets/data",
        "/v1/secret/data",
        "/api/v1/secrets/metadata",
    ] {
        let existing = s.call(
            "GET",
            &format!("{api}/beta/app/db"),
            Some(&ca_t),
            None,
            None,
        );
        let missing = s.call(
            "GET",
            &format!("{api}/beta/nothing"),
            Some(&ca_t),
            None,
            None,
        );
        assert_eq!(existing.0, 403, "{api}");
        assert_eq!(existing.1["error"], missing.1["error"], "{api}");
        assert_eq!(existing.1["errors"], missing.1["errors"], "{api}");
    }
    // Listings show only alpha.
    assert_eq!(
        s.ok("GET", "/api/v1/secrets/list", Some(&ca_t), None)["keys"],
        json!(["alpha/"])
    );
    let beta = s.call("GET", "/api/v1/secrets/list/beta", Some(&ca_t), None, None);
    assert!(
        beta.0 == 403 || beta.1["keys"] == json!([]),
        "a listing of beta shows nothing: {beta:?}"
    );
    let vault = s.call(
        "GET",
        "/v1/secret/metadata/?list=true",
        Some(&ca_t),
        None,
        None,
    );
    assert_eq!(vault.0, 200, "{vault:?}");
    assert_eq!(vault.1["data"]["keys"], json!(["alpha/"]));
    let vault_beta = s.call(
        "GET",
        "/v1/secret/metadata/beta?list=true",
        Some(&ca_t),
        None,
        None,
    );
    assert!(
        !vault_beta.1.to_string().contains("plans") && !vault_beta.1.to_string().contains("app"),
        "{vault_beta:?}"
    );
    // Asking for another vendor's prefix reveals nothing about how it is classified.
    let probe = |prefix: &str| {
        let mut answer = s.ok(
            "POST",
            "/api/v1/requests",
            Some(&ca_t),
            Some(
                json!({ "prefix": prefix, "capabilities": ["read"], "reason": "probe",
                         "duration": "30d" }),
            ),
        );
        for volatile in ["id", "prefix", "created_time"] {
            answer[volatile] = Value::Null;
        }
        answer
    };
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "beta/plans", "level": "regulated" })),
    );
    assert_eq!(probe("beta/plans"), probe("beta/nothing"));
    // Nor through requests, notifications, vendors or the ledger.
    let requests = s.ok("GET", "/api/v1/requests", Some(&ca_t), None);
    assert!(
        requests
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["person"] == "ca" && r["level"] == ""),
        "{requests}"
    );
    assert!(!requests.to_string().contains("launch notes"));
    let notes = s.ok("GET", "/api/v1/notifications", Some(&ca_t), None);
    assert!(!notes.to_string().contains("beta"), "{notes}");
    assert_eq!(
        error(&s, "GET", "/api/v1/vendors", &ca_t, None),
        (403, "not_permitted".into())
    );
    assert_eq!(
        error(&s, "GET", "/api/v1/vendors/beta", &ca_t, None),
        (403, "not_permitted".into())
    );
    let entries = s.ok("GET", "/api/v1/ledger/entries?start=0", Some(&ca_t), None);
    let text = entries.to_string();
    assert!(
        !text.contains("regulated") && !text.contains("launch notes"),
        "{text}"
    );
    s.assert_no_secret_logged();
}

/// One request an [`http_receiver`] took.
struct Received {
    /// The request line.
    line: String,
    /// The header lines, as sent.
    headers: Vec<String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A receiver of HTTP requests on loopback that answers each of the first `count` with
/// `answer`: each request, in order.
fn http_receiver(count: usize, answer: &'static [u8]) -> (String, mpsc::Receiver<Received>) {
    http_receiver_by(count, move |_| answer)
}

/// Like [`http_receiver`], answering each request by its body.
fn http_receiver_by(
    count: usize,
    answer: impl Fn(&[u8]) -> &'static [u8] + Send + 'static,
) -> (String, mpsc::Receiver<Received>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut length = 0;
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                headers.push(line.trim_end().to_owned());
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream.write_all(answer(&body)).unwrap();
            let line = first.trim().to_owned();
            tx.send(Received {
                line,
                headers,
                body,
            })
            .unwrap();
        }
    });
    (url, rx)
}

/// A webhook that takes `count` posts: their JSON bodies, in order.
fn webhook(count: usize) -> (String, mpsc::Receiver<Value>) {
    let (url, raw) = http_receiver(
        count,
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for received in raw {
            if tx
                .send(serde_json::from_slice(&received.body).unwrap())
                .is_err()
            {
                break;
            }
        }
    });
    (url, rx)
}

#[test]
fn reminders_are_sent_once_per_threshold_and_delivered_to_the_webhook() {
    let (url, received) = webhook(5);
    let s = Server::start_with(|settings| settings.notify.webhook_url = Some(url));
    let sam = s.person("sam", "security", None);
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active", "owner": "sam" })),
    );
    // The NDA ends 20 days from now (2027-02-04).
    agreement(
        &s,
        "acme",
        json!({ "kind": "nda", "signed": "2026-01-01", "expires": "2027-02-04" }),
    );
    let sweep = || s.runtime.block_on(s.state.sweep()).unwrap().reminders;
    assert_eq!(sweep(), 1, "within 30 days");
    assert_eq!(sweep(), 0, "once per threshold");
    s.clock.advance_secs(14 * DAY);
    assert_eq!(sweep(), 1, "within 7 days");
    s.clock.advance_secs(5 * DAY + 12 * 3600);
    assert_eq!(sweep(), 1, "within a day");
    assert_eq!(sweep(), 0);
    // A grant ending within a day is announced too.
    s.person("cy", "contractor", Some("acme"));
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme", "capabilities": ["read"],
                     "ttl": "12h", "reason": "hotfix" }),
        ),
    );
    // Break-glass notified security; the grant reminder follows.
    assert_eq!(sweep(), 1);

    let delivered = s.runtime.block_on(s.state.deliver_notifications()).unwrap();
    assert_eq!(delivered, 5);
    assert_eq!(
        s.runtime.block_on(s.state.deliver_notifications()).unwrap(),
        0,
        "each notification is delivered once"
    );
    let bodies: Vec<Value> = received.iter().take(5).collect();
    let subjects: Vec<&str> = bodies
        .iter()
        .map(|b| b["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects
            .iter()
            .filter(|s| **s == "agreement NDA of vendor acme ends on 2027-02-04")
            .count()
            == 3,
        "{subjects:?}"
    );
    assert!(
        bodies.iter().all(|b| b["to"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "sam")),
        "the vendor's owner (and security, of break-glass) is told: {bodies:?}"
    );
    assert!(bodies.iter().any(|b| b["kind"] == "break_glass"));
    assert!(bodies.iter().any(|b| {
        b["subject"]
            .as_str()
            .unwrap()
            .starts_with("grant on acme for cy ends at")
    }));
    let listed = s.ok("GET", "/api/v1/notifications", Some(&s.login(&sam)), None);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["delivered_time"].is_string()),
        "{listed}"
    );
}

#[test]
fn a_webhook_that_redirects_is_not_followed_nor_counted_delivered() {
    // The receiver answers every request with a redirect to itself; it records what it got.
    let (url, requests) = http_receiver(
        4,
        b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\
          Connection: close\r\n\r\n",
    );
    let s = Server::start_with(|settings| settings.notify.webhook_url = Some(url));
    let sam = s.person("sam", "security", None);
    vendor(&s, "acme");
    s.person("cy", "contractor", Some("acme"));
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme", "capabilities": ["read"],
                     "ttl": "1h", "reason": "incident 7" }),
        ),
    );
    let delivered = s.runtime.block_on(s.state.deliver_notifications()).unwrap();
    assert_eq!(delivered, 0);
    assert_eq!(
        requests.recv_timeout(Duration::from_secs(5)).unwrap().line,
        "POST /hook HTTP/1.1"
    );
    assert!(
        requests.recv_timeout(Duration::from_millis(300)).is_err(),
        "the redirect was not followed"
    );
    let listed = s.ok("GET", "/api/v1/notifications", Some(&s.login(&sam)), None);
    let note = &listed[0];
    assert!(note["delivered_time"].is_null(), "{note}");
    assert!(
        note["last_error"].as_str().unwrap().contains("HTTP 302"),
        "{note}"
    );
}

#[test]
fn webhook_posts_are_signed_with_the_configured_key() {
    let (url, requests) = http_receiver(1, b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    let key = "whsec-Zq81Lm02Xv93Hk27Qw83Rq55Ab12Cd";
    let s = Server::start_with(|settings| {
        settings.notify.webhook_url = Some(url);
        settings.notify.webhook_secret = Some(chaperone_server::BearerToken::new(key.into()));
    });
    s.remember(key);
    s.person("sam", "security", None);
    vendor(&s, "acme");
    s.person("cy", "contractor", Some("acme"));
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme", "capabilities": ["read"],
                     "ttl": "1h", "reason": "incident 8" }),
        ),
    );
    assert_eq!(
        s.runtime.block_on(s.state.deliver_notifications()).unwrap(),
        1
    );
    let post = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    let timestamp = post.header("X-Chaperone-Timestamp").unwrap();
    assert_eq!(
        timestamp,
        chaperone_core::Clock::now(&*s.clock)
            .unix_secs()
            .to_string()
    );
    // What a receiver computes: HMAC-SHA256 of the timestamp, a dot and the body.
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&post.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        post.header("X-Chaperone-Signature"),
        Some(expected.as_str())
    );
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["kind"], "break_glass");
    s.assert_no_secret_logged();
}

#[test]
fn a_receiver_that_is_down_stops_a_delivery_pass_after_three_failures() {
    // A port nothing listens on: every post fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let s = Server::start_with(|settings| settings.notify.webhook_url = Some(url));
    let sam = s.person("sam", "security", None);
    vendor(&s, "acme");
    s.person("cy", "contractor", Some("acme"));
    for n in 0..5 {
        s.ok(
            "POST",
            "/api/v1/grants",
            Some(&s.admin),
            Some(json!({ "person": "cy", "prefix": format!("acme/p{n}"),
                         "capabilities": ["read"], "ttl": "1h", "reason": "incident" })),
        );
    }
    assert_eq!(
        s.runtime.block_on(s.state.deliver_notifications()).unwrap(),
        0
    );
    // Three were tried and failed; the pass stopped there, and the other two wait for the
    // next one without an attempt counted.
    let listed = s.ok("GET", "/api/v1/notifications", Some(&s.login(&sam)), None);
    let tried = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["last_error"].is_string())
        .count();
    assert_eq!(
        (listed.as_array().unwrap().len(), tried),
        (5, 3),
        "{listed}"
    );
}

#[test]
fn concurrent_deliveries_post_each_notification_once() {
    // Every node of a cluster delivers notifications; two deliveries at once stand for two
    // nodes. The receiver would take more than three posts: it must get exactly three.
    let (url, received) = webhook(6);
    let s = Server::start_with(|settings| settings.notify.webhook_url = Some(url));
    s.person("sam", "security", None);
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active", "owner": "sam" })),
    );
    for kind in ["nda", "dpa", "msa"] {
        agreement(
            &s,
            "acme",
            json!({ "kind": kind, "signed": "2026-01-01", "expires": "2027-02-04" }),
        );
    }
    assert_eq!(s.runtime.block_on(s.state.sweep()).unwrap().reminders, 3);

    let (a, b) = s.runtime.block_on(async {
        tokio::join!(
            s.state.deliver_notifications(),
            s.state.deliver_notifications()
        )
    });
    assert_eq!(a.unwrap() + b.unwrap(), 3, "each delivered by one of them");
    let mut ids: Vec<String> = received
        .iter()
        .take(3)
        .map(|body| body["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three different notifications: {ids:?}");
    assert!(
        received
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "a notification was posted twice"
    );
    assert_eq!(
        s.runtime.block_on(s.state.deliver_notifications()).unwrap(),
        0,
        "nothing is left to deliver"
    );
    let listed = s.ok("GET", "/api/v1/notifications", Some(&s.admin), None);
    assert!(
        listed.as_array().unwrap().iter().all(|n| {
            n["delivered_time"].is_string()
                && n["attempts"] == 1
                && n.get("claimed_until").is_none()
        }),
        "{listed}"
    );
}

#[test]
fn documents_are_sealed_and_acknowledgements_gate_access() {
    let s = Server::start();
    vendor(&s, "acme");
    let nda = agreement(&s, "acme", json!({ "kind": "nda", "signed": "2026-01-01" }));
    let id = nda["id"].as_str().unwrap();

    // The signed document: stored sealed, returned intact with its SHA-256.
    let content = b"%PDF-1.7 NDA between us and acme, marker Hx73LqPz".repeat(100);
    let upload = ureq::http::Request::builder()
        .method("PUT")
        .uri(format!("{}/api/v1/documents/{id}?name=nda.pdf", s.addr))
        .header("Authorization", format!("Bearer {}", s.admin))
        .header("Content-Type", "application/pdf")
        .body(content.clone())
        .unwrap();
    let mut answer = s.agent.run(upload).unwrap();
    assert_eq!(answer.status(), 200);
    let stored: Value = serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
    let expected_hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(stored["sha256"], expected_hash.as_str());
    let download = ureq::http::Request::builder()
        .method("GET")
        .uri(format!("{}/api/v1/documents/{id}", s.addr))
        .header("Authorization", format!("Bearer {}", s.admin))
        .body(())
        .unwrap();
    let mut answer = s.agent.run(download).unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["x-content-sha256"].to_str().unwrap(),
        expected_hash
    );
    assert_eq!(answer.body_mut().read_to_vec().unwrap(), content);
    // The download is recorded, with the document's hash and never its content.
    let reads = s.recorded("document.read", id);
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0]["details"]["sha256"], expected_hash.as_str());
    assert!(!reads[0].to_string().contains("Hx73LqPz"), "{}", reads[0]);
    let mut searched = 0;
    for file in ["t.db", "t.db-wal"] {
        if let Ok(bytes) = std::fs::read(s._dir.path().join(file)) {
            searched += bytes.len();
            assert!(
                !bytes.windows(15).any(|w| w == b"marker Hx73LqPz"),
                "{file} holds the document in clear"
            );
        }
    }
    assert!(searched > content.len(), "the database files were read");
    let shown = s.ok(
        "GET",
        "/api/v1/vendors/acme/agreements",
        Some(&s.admin),
        None,
    );
    assert_eq!(shown[0]["document"]["sha256"], expected_hash.as_str());

    // A level that needs the acceptable-use policy acknowledged.
    let mut confidential = s
        .ok("GET", "/api/v1/levels", Some(&s.admin), None)
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "confidential")
        .unwrap()
        .clone();
    confidential["acknowledgements"] = json!(["acceptable-use"]);
    s.ok(
        "PUT",
        "/api/v1/levels/confidential",
        Some(&s.admin),
        Some(confidential),
    );
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "acme/keys", "level": "confidential" })),
    );
    assert_eq!(
        error(
            &s,
            "PUT",
            "/api/v1/classifications",
            &s.admin,
            Some(json!({ "prefix": "x", "level": "top-secret" }))
        ),
        (400, "invalid_request".into())
    );
    write(&s, "acme/keys/signing", "confidential-Mv61pX");
    let cy = s.person("cy", "contractor", Some("acme"));
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme/keys", "capabilities": ["read"],
                     "ttl": "7d", "reason": "key rotation" }),
        ),
    );
    let cy_t = s.login(&cy);
    let read = || {
        let (status, body) = s.call(
            "GET",
            "/api/v1/secrets/data/acme/keys/signing",
            Some(&cy_t),
            None,
            None,
        );
        (status, body["error"]["message"].as_str().map(str::to_owned))
    };
    assert_eq!(
        read(),
        (
            403,
            Some("policy acceptable-use has not been published".into())
        )
    );
    let publish = |text: &str| {
        s.ok(
            "POST",
            "/api/v1/policies",
            Some(&s.admin),
            Some(json!({ "name": "acceptable-use", "title": "Acceptable use", "text": text })),
        )
    };
    assert_eq!(
        publish("Use our systems only for the work agreed.")["version"],
        1
    );
    assert_eq!(
        read(),
        (
            403,
            Some("cy has not acknowledged version 1 of policy acceptable-use".into())
        )
    );
    assert_eq!(
        error(
            &s,
            "POST",
            "/api/v1/policies/acceptable-use/acknowledge",
            &cy_t,
            Some(json!({ "version": 2 }))
        ),
        (400, "invalid_request".into())
    );
    s.ok(
        "POST",
        "/api/v1/policies/acceptable-use/acknowledge",
        Some(&cy_t),
        Some(json!({ "version": 1 })),
    );
    assert_eq!(read().0, 200);
    // A new version must be acknowledged again.
    assert_eq!(
        publish("Use our systems only for the work agreed. No AI uploads.")["version"],
        2
    );
    assert_eq!(read().0, 403);
    s.assert_no_secret_logged();
}

#[test]
fn the_openapi_document_describes_every_native_route() {
    let document = serde_json::to_value(chaperone_server::openapi_document()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    let mut missing = Vec::new();
    for (method, pattern, _) in chaperone_server::route_table() {
        if !pattern.starts_with("/api/v1/") {
            continue;
        }
        let documented = pattern.replace("{*", "{");
        let method = method.as_str().to_ascii_lowercase();
        if paths
            .get(&documented)
            .and_then(|p| p.get(&method))
            .is_none()
        {
            missing.push(format!("{method} {documented}"));
        }
    }
    assert!(missing.is_empty(), "undocumented routes: {missing:?}");
}

/// Settings that mail notifications through `relay`, in plain SMTP.
fn mail_through(settings: &mut chaperone_server::Settings, relay: String) {
    settings.notify.smtp = Some(chaperone_server::SmtpSettings::new(
        relay,
        "chaperone@example.com".into(),
    ));
}

/// A fake SMTP relay on loopback that accepts `count` messages and hands over each
/// transcript (commands and data).
fn smtp_relay(count: usize) -> (String, mpsc::Receiver<String>) {
    let (relay, _, transcripts) = smtp_relay_offering(count, Offers::default());
    (relay, transcripts)
}

/// What a fake relay offers beyond plain SMTP.
#[derive(Clone, Copy, Default)]
struct Offers {
    /// STARTTLS, with a certificate for 127.0.0.1.
    starttls: bool,
    /// TLS from the first byte.
    implicit: bool,
    /// The AUTH mechanisms offered inside TLS (for `mailer`, `correct horse battery`), and
    /// then required.
    auth: Option<&'static str>,
    /// A second answer line sent with the answer to STARTTLS, before the handshake, as
    /// someone between could inject it.
    inject: bool,
}

const RELAY_PASSWORD: &str = "correct horse battery";

/// A fake SMTP relay offering `offers`, with the PEM of its certificate. `<TLS>` in a
/// transcript marks where TLS began.
fn smtp_relay_offering(count: usize, offers: Offers) -> (String, String, mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = listener.local_addr().unwrap().to_string();
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = key.cert.pem();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.key_pair.serialize_der().into()),
            )
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let stream = stream.unwrap();
            let tls = |stream| {
                let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                BufReader::new(rustls::StreamOwned::new(connection, stream))
            };
            let mut transcript = String::new();
            if offers.implicit {
                transcript.push_str("<TLS>\r\n");
                converse(&mut tls(stream), true, true, offers, &mut transcript);
            } else {
                let mut plain = BufReader::new(stream);
                if converse(&mut plain, true, false, offers, &mut transcript) {
                    transcript.push_str("<TLS>\r\n");
                    converse(
                        &mut tls(plain.into_inner()),
                        false,
                        true,
                        offers,
                        &mut transcript,
                    );
                }
            }
            tx.send(transcript).unwrap();
        }
    });
    (relay, pem, rx)
}

/// One SMTP conversation on `stream`, written down in `transcript`; true when the client
/// asked for STARTTLS and was told to go ahead.
fn converse<S: Read + Write>(
    stream: &mut BufReader<S>,
    greet: bool,
    tls: bool,
    offers: Offers,
    transcript: &mut String,
) -> bool {
    let say = |stream: &mut BufReader<S>, text: &str| {
        let inner = stream.get_mut();
        inner.write_all(text.as_bytes()).is_ok() && inner.flush().is_ok()
    };
    if greet && !say(stream, "220 relay.test ESMTP\r\n") {
        return false;
    }
    let mut in_data = false;
    let mut logged_in = false;
    // The lines of an AUTH LOGIN exchange still to come: the user name, then the password.
    let mut login: Vec<String> = Vec::new();
    let mut login_step = 0;
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line) {
            Ok(0) => return false,
            Err(e) => {
                transcript.push_str(&format!("<closed: {e}>\r\n"));
                return false;
            }
            Ok(_) => {}
        }
        transcript.push_str(&line);
        let decode = |text: &str| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .unwrap_or_default()
        };
        let reply = if login_step > 0 {
            login.push(String::from_utf8(decode(&line)).unwrap_or_default());
            login_step -= 1;
            if login_step == 1 {
                "334 UGFzc3dvcmQ6\r\n".to_owned()
            } else if login == ["mailer", RELAY_PASSWORD] {
                logged_in = true;
                "235 2.7.0 ok\r\n".to_owned()
            } else {
                "535 5.7.8 authentication failed\r\n".to_owned()
            }
        } else if in_data {
            if line != ".\r\n" {
                continue;
            }
            in_data = false;
            "250 2.0.0 queued\r\n".to_owned()
        } else if line.starts_with("EHLO") {
            let mut answer = "250-relay.test\r\n".to_owned();
            if offers.starttls && !tls {
                answer.push_str("250-STARTTLS\r\n");
            }
            if let (Some(mechanisms), true) = (offers.auth, tls) {
                answer.push_str(&format!("250-AUTH {mechanisms}\r\n"));
            }
            answer + "250 8BITMIME\r\n"
        } else if line == "STARTTLS\r\n" && offers.starttls && !tls {
            let injected = if offers.inject {
                "250 2.1.0 ok\r\n"
            } else {
                ""
            };
            return say(stream, &format!("220 2.0.0 go ahead\r\n{injected}"));
        } else if let Some(initial) = line.strip_prefix("AUTH PLAIN ") {
            if decode(initial) == format!("\0mailer\0{RELAY_PASSWORD}").as_bytes() {
                logged_in = true;
                "235 2.7.0 ok\r\n".to_owned()
            } else {
                "535 5.7.8 authentication failed\r\n".to_owned()
            }
        } else if line == "AUTH LOGIN\r\n" {
            login_step = 2;
            "334 VXNlcm5hbWU6\r\n".to_owned()
        } else if line.starts_with("MAIL FROM") && offers.auth.is_some() && !logged_in {
            "530 5.7.0 authentication required\r\n".to_owned()
        } else if line.starts_with("DATA") {
            in_data = true;
            "354 go ahead\r\n".to_owned()
        } else if line.starts_with("QUIT") {
            say(stream, "221 bye\r\n");
            return false;
        } else if line.starts_with("RCPT TO:<gone@") {
            "550 5.1.1 no such mailbox\r\n".to_owned()
        } else if line.starts_with("RCPT TO:<later@") {
            "451 4.2.0 try again later\r\n".to_owned()
        } else if line.starts_with("RCPT TO:<norelay@") {
            "554 5.7.1 Relay access denied\r\n".to_owned()
        } else {
            "250 ok\r\n".to_owned()
        };
        if !say(stream, &reply) {
            return false;
        }
    }
}

/// A server mailing through a relay offering `offers`, with `smtp` for its SMTP settings
/// (given the relay's address and certificate); one notification queued for
/// `ann@example.com`, and tried once. Returns the relay's transcript and the
/// notification's last error, if any.
fn mail_once(
    offers: Offers,
    smtp: impl FnOnce(String, &str) -> chaperone_server::SmtpSettings,
) -> (String, Option<String>) {
    let (relay, pem, mails) = smtp_relay_offering(1, offers);
    let settings = smtp(relay, &pem);
    let s = Server::start_with(|s| s.notify.smtp = Some(settings));
    s.remember(RELAY_PASSWORD);
    s.person_with_email("ann", "approver", None, Some("ann@example.com"));
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cy_t),
        Some(json!({ "prefix": "acme/app", "capabilities": ["read"],
                     "reason": "deploy", "duration": "1d" })),
    );
    s.runtime.block_on(s.state.deliver_notifications()).unwrap();
    let transcript = mails.recv_timeout(Duration::from_secs(30)).unwrap();
    let notes = s.ok("GET", "/api/v1/notifications", Some(&s.admin), None);
    let error = notes[0]["last_error"].as_str().map(str::to_owned);
    s.assert_no_secret_logged();
    (transcript, error)
}

/// STARTTLS or TLS from the first byte, the relay's certificate verified against the
/// configured CA, and the login (PLAIN, or LOGIN when only that is offered) inside TLS.
#[test]
fn mail_goes_over_tls_with_the_login_inside_it() {
    use chaperone_server::{BearerToken, SmtpSettings, SmtpTls};
    let with = |tls, login: bool| {
        move |relay: String, pem: &str| {
            let smtp = SmtpSettings::new(relay, "chaperone@example.com".into())
                .with_tls(tls, Some(pem.as_bytes()))
                .unwrap();
            if login {
                smtp.with_login("mailer".into(), BearerToken::new(RELAY_PASSWORD.into()))
            } else {
                smtp
            }
        }
    };
    let offers = Offers {
        starttls: true,
        auth: Some("PLAIN LOGIN"),
        ..Offers::default()
    };
    let (transcript, error) = mail_once(offers, with(SmtpTls::StartTls, true));
    assert_eq!(error, None, "{transcript}");
    let tls_at = transcript
        .find("STARTTLS\r\n<TLS>\r\nEHLO")
        .expect(&transcript);
    let auth_at = transcript.find("AUTH PLAIN ").expect(&transcript);
    assert!(tls_at < auth_at, "{transcript}");
    assert!(transcript.contains("\r\nDATA\r\n"), "{transcript}");
    // TLS from the first byte; a relay offering LOGIN only.
    let offers = Offers {
        implicit: true,
        auth: Some("LOGIN"),
        ..Offers::default()
    };
    let (transcript, error) = mail_once(offers, with(SmtpTls::Implicit, true));
    assert_eq!(error, None, "{transcript}");
    assert!(
        transcript.starts_with("<TLS>\r\nEHLO") && transcript.contains("AUTH LOGIN\r\n"),
        "{transcript}"
    );
    assert!(transcript.contains("\r\nDATA\r\n"), "{transcript}");
    // STARTTLS without a login.
    let offers = Offers {
        starttls: true,
        ..Offers::default()
    };
    let (transcript, error) = mail_once(offers, with(SmtpTls::StartTls, false));
    assert_eq!(error, None, "{transcript}");
    assert!(
        transcript.contains("<TLS>") && !transcript.contains("AUTH"),
        "{transcript}"
    );
}

/// Where TLS cannot be had, or the login fails, no message and no password is sent, and the
/// notification says why.
#[test]
fn no_mail_and_no_password_goes_where_tls_or_the_login_fails() {
    use chaperone_server::{BearerToken, SmtpSettings, SmtpTls};
    let login = |password: &str, tls, ca: bool| {
        let password = password.to_owned();
        move |relay: String, pem: &str| {
            SmtpSettings::new(relay, "chaperone@example.com".into())
                .with_tls(tls, ca.then_some(pem.as_bytes()))
                .unwrap()
                .with_login("mailer".into(), BearerToken::new(password))
        }
    };
    let starttls = Offers {
        starttls: true,
        auth: Some("PLAIN LOGIN"),
        ..Offers::default()
    };
    let cases = [
        // A relay (or someone between) that does not offer STARTTLS.
        (
            Offers::default(),
            login(RELAY_PASSWORD, SmtpTls::StartTls, true),
            "does not offer STARTTLS",
        ),
        // A certificate no trusted CA signed.
        (
            starttls,
            login(RELAY_PASSWORD, SmtpTls::StartTls, false),
            "TLS with SMTP relay",
        ),
        // An answer injected before the handshake.
        (
            Offers {
                inject: true,
                ..starttls
            },
            login(RELAY_PASSWORD, SmtpTls::StartTls, true),
            "more than its answer to STARTTLS",
        ),
        // Plain SMTP with a login.
        (
            starttls,
            login(RELAY_PASSWORD, SmtpTls::None, true),
            "credentials without TLS",
        ),
        // The wrong password.
        (
            starttls,
            login("not the password", SmtpTls::StartTls, true),
            "refused the login: 535",
        ),
    ];
    for (offers, smtp, expected) in cases {
        let (transcript, error) = mail_once(offers, smtp);
        let error = error.unwrap_or_default();
        assert!(error.contains(expected), "{expected}: {error}");
        assert!(!transcript.contains("MAIL FROM"), "{transcript}");
        if expected != "refused the login: 535" {
            assert!(!transcript.contains("AUTH"), "{transcript}");
        }
        assert!(
            !error.contains(RELAY_PASSWORD) && !error.contains("not the password"),
            "{error}"
        );
    }
}

#[test]
fn a_mailbox_the_relay_refuses_does_not_keep_the_mail_from_the_others() {
    let (relay, mails) = smtp_relay(1);
    let s = Server::start_with(|settings| mail_through(settings, relay));
    s.person_with_email("ann", "approver", None, Some("ann@example.com"));
    s.person_with_email("bo", "approver", None, Some("gone@example.com"));
    // Disabled since: not written to.
    s.person_with_email("dee", "approver", None, Some("dee@example.com"));
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cy_t),
        Some(json!({ "prefix": "acme/app", "capabilities": ["read"],
                     "reason": "deploy", "duration": "1d" })),
    );
    s.ok("POST", "/api/v1/people/dee/disable", Some(&s.admin), None);
    let delivered = s.runtime.block_on(s.state.deliver_notifications()).unwrap();
    assert_eq!(delivered, 1);
    let transcript = mails.recv().unwrap();
    assert!(
        transcript.contains("RCPT TO:<ann@example.com>"),
        "{transcript}"
    );
    assert!(
        transcript.contains("RCPT TO:<gone@example.com>"),
        "{transcript}"
    );
    assert!(!transcript.contains("dee@example.com"), "{transcript}");
    assert!(transcript.contains("\r\nDATA\r\n"), "{transcript}");
}

/// A notification whose webhook post fails is passed over until its next try is due, and
/// the mail still goes: nothing queued behind it waits for it. Given up after 72 hours,
/// security is told.
#[test]
fn a_failing_notification_or_channel_holds_up_no_other() {
    let (url, posts) = http_receiver_by(20, |body| {
        if String::from_utf8_lossy(body).contains("acme/down") {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        } else {
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        }
    });
    let (relay, mails) = smtp_relay(8);
    let s = Server::start_with(|settings| {
        settings.notify.webhook_url = Some(url);
        mail_through(settings, relay);
    });
    s.person_with_email("sam", "security", None, Some("sam@example.com"));
    vendor(&s, "acme");
    s.person("cy", "contractor", Some("acme"));
    // Queued a second apart: delivered oldest first.
    for prefix in [
        "acme/down0",
        "acme/down1",
        "acme/down2",
        "acme/up0",
        "acme/up1",
    ] {
        s.clock.advance_secs(1);
        s.ok(
            "POST",
            "/api/v1/grants",
            Some(&s.admin),
            Some(json!({ "person": "cy", "prefix": prefix,
                         "capabilities": ["read"], "ttl": "1h", "reason": "incident" })),
        );
    }
    let deliver = || s.runtime.block_on(s.state.deliver_notifications()).unwrap();
    let listed = || s.ok("GET", "/api/v1/notifications", Some(&s.admin), None);
    // The webhook fails three times and is not used again in this pass; every one is mailed.
    assert_eq!(deliver(), 0);
    for _ in 0..5 {
        mails.recv().unwrap();
    }
    let notes = listed();
    assert!(
        notes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["channels_done"] == json!(["email"])),
        "{notes}"
    );
    // The three that failed wait for their next try; the two behind them go through.
    assert_eq!(deliver(), 2);
    let mut posted = Vec::new();
    while let Ok(post) = posts.try_recv() {
        posted.push(String::from_utf8_lossy(&post.body).into_owned());
    }
    assert_eq!(posted.len(), 5, "{posted:?}");
    assert_eq!(deliver(), 0);
    assert!(posts.try_recv().is_err(), "not due yet");
    // Still failing 72 hours after they were queued: given up, and security is told,
    // once, without the delivery errors (the notice goes out on the webhook too).
    s.clock.advance_secs(73 * 3600);
    assert_eq!(deliver(), 0);
    assert_eq!(deliver(), 1);
    mails.recv().unwrap();
    let notes = listed();
    let failed: Vec<&Value> = notes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "notification_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{notes}");
    assert!(failed[0]["delivered_time"].is_string());
    assert_eq!(failed[0]["details"]["kind"], "break_glass", "{notes}");
    assert!(failed[0]["details"].get("last_error").is_none(), "{notes}");
    let given_up = notes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "break_glass" && n["delivered_time"].is_null())
        .count();
    assert_eq!(given_up, 3, "{notes}");
}

/// A relay that takes the message for nobody, refusing to relay for this server, relays
/// nothing: that is a failure to retry, not a delivery. A mailbox that does not exist is
/// the address's fault, not the relay's: refused for good, alone or not.
#[test]
fn a_relay_that_refuses_to_relay_has_not_delivered() {
    let (relay, mails) = smtp_relay(2);
    let s = Server::start_with(|settings| mail_through(settings, relay));
    s.person_with_email("bo", "approver", None, Some("gone@example.com"));
    s.person_with_email("cal", "approver", None, Some("norelay@example.com"));
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    let ask = |reason: &str| {
        s.ok(
            "POST",
            "/api/v1/requests",
            Some(&cy_t),
            Some(json!({ "prefix": "acme/app", "capabilities": ["read"],
                         "reason": reason, "duration": "1d" })),
        );
    };
    ask("deploy");
    let deliver = || s.runtime.block_on(s.state.deliver_notifications()).unwrap();
    assert_eq!(deliver(), 0);
    let transcript = mails.recv().unwrap();
    assert!(!transcript.contains("DATA"), "{transcript}");
    let notes = s.ok("GET", "/api/v1/notifications", Some(&s.admin), None);
    assert!(notes[0]["delivered_time"].is_null(), "{notes}");
    assert!(
        notes[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("refused every recipient"),
        "{notes}"
    );
    // To the missing mailbox alone: refused for good, and done with.
    s.ok("POST", "/api/v1/people/cal/disable", Some(&s.admin), None);
    s.clock.advance_secs(1);
    ask("deploy again");
    assert_eq!(deliver(), 1);
    let transcript = mails.recv().unwrap();
    assert!(
        transcript.contains("RCPT TO:<gone@") && !transcript.contains("DATA"),
        "{transcript}"
    );
    let notes = s.ok("GET", "/api/v1/notifications", Some(&s.admin), None);
    let done = &notes[0];
    assert!(done["delivered_time"].is_string(), "{notes}");
    assert!(
        done["refused"][0]
            .as_str()
            .unwrap()
            .starts_with("gone@example.com: 550")
    );
}

/// A recipient the relay refuses for now (4xx) is tried again at the next try, alone; one
/// it refuses for good (5xx) is not; those who took the message get it once.
#[test]
fn a_recipient_the_relay_defers_is_tried_again_alone() {
    let (relay, mails) = smtp_relay(2);
    let s = Server::start_with(|settings| mail_through(settings, relay));
    let ann = s.person_with_email("ann", "approver", None, Some("ann@example.com"));
    s.person_with_email("lee", "approver", None, Some("later@example.com"));
    s.person_with_email("bo", "approver", None, Some("gone@example.com"));
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cy_t),
        Some(json!({ "prefix": "acme/app", "capabilities": ["read"],
                     "reason": "deploy", "duration": "1d" })),
    );
    let deliver = || s.runtime.block_on(s.state.deliver_notifications()).unwrap();
    assert_eq!(deliver(), 0);
    let first = mails.recv().unwrap();
    assert!(first.contains("\r\nDATA\r\n"), "{first}");
    let notes = s.ok("GET", "/api/v1/notifications", Some(&s.admin), None);
    let note = &notes[0];
    assert!(
        note["last_error"]
            .as_str()
            .unwrap()
            .contains("later@example.com: 451"),
        "{note}"
    );
    assert_eq!(
        note["emailed"],
        json!(["ann@example.com", "gone@example.com"])
    );
    assert!(
        note["refused"][0]
            .as_str()
            .unwrap()
            .starts_with("gone@example.com: 550")
    );
    // Recipients do not see whom else it was mailed to, nor why a delivery failed.
    let seen = s.ok("GET", "/api/v1/notifications", Some(&s.login(&ann)), None);
    assert!(
        seen[0].get("emailed").is_none() && seen[0]["last_error"].is_null(),
        "{seen}"
    );
    // Not due yet: nothing is sent.
    assert_eq!(deliver(), 0);
    s.clock.advance_secs(61);
    assert_eq!(deliver(), 0);
    let second = mails.recv().unwrap();
    assert!(second.contains("RCPT TO:<later@example.com>"), "{second}");
    assert!(
        !second.contains("ann@") && !second.contains("gone@") && !second.contains("DATA"),
        "{second}"
    );
}

#[test]
fn notifications_are_mailed_through_the_smtp_relay() {
    let (relay, mails) = smtp_relay(1);
    let s = Server::start_with(|settings| mail_through(settings, relay));
    s.person_with_email("ann", "approver", None, Some("ann@example.com"));
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let cy_t = s.login(&cy);
    s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cy_t),
        Some(json!({ "prefix": "acme/app", "capabilities": ["read"],
                     "reason": "line one\r\nBcc: evil@example.net", "duration": "1d" })),
    );
    let delivered = s.runtime.block_on(s.state.deliver_notifications()).unwrap();
    assert_eq!(delivered, 1);
    let transcript = mails.recv().unwrap();
    assert!(
        transcript.contains("MAIL FROM:<chaperone@example.com>\r\n"),
        "{transcript}"
    );
    assert!(
        transcript.contains("RCPT TO:<ann@example.com>\r\n"),
        "{transcript}"
    );
    assert!(
        transcript.contains("Subject: cy asks for read on acme/app for 1d\r\n"),
        "{transcript}"
    );
    // The reason the requester typed is in the details, quoted as a JSON string: it can
    // neither start a line of the mail nor pass for the server's words.
    assert!(
        transcript.contains(r#""reason": "line one\r\nBcc: evil@example.net""#),
        "{transcript}"
    );
    // The text a requester typed cannot start a header line.
    let data = transcript.split_once("DATA\r\n").unwrap().1;
    let headers = data.split_once("\r\n\r\n").unwrap().0;
    assert!(!headers.contains("\r\nBcc:"), "{headers}");
    assert!(
        headers.contains("\r\nTo: <ann@example.com>\r\n"),
        "{headers}"
    );
    assert_eq!(
        s.runtime.block_on(s.state.deliver_notifications()).unwrap(),
        0
    );
}

/// Whoever was handed an account's enrolment code may be that account: the initial admin
/// token approves no request of an account it made, and nobody's request is approved by an
/// account they made.
#[test]
fn nobody_approves_through_an_account_whose_code_they_were_handed() {
    let s = Server::start();
    let ada = s.person("ada", "admin", None);
    let ada_t = s.login(&ada);
    let ask = |token: &str| {
        s.ok(
            "POST",
            "/api/v1/requests",
            Some(token),
            Some(
                json!({ "prefix": "ops/db", "capabilities": ["read"], "reason": "deploy",
                         "duration": "1d" }),
            ),
        )["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // dee was made by the initial admin token.
    let dee = s.person("dee", "member", None);
    let dee_t = s.login(&dee);
    let asked = ask(&dee_t);
    let approve = |id: &str, token: &str| {
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            token,
            Some(json!({})),
        )
    };
    assert_eq!(approve(&asked, &s.admin), (403, "created_requester".into()));
    // sock was made by ada: sock does not approve ada's request.
    let sock = s.person_made_by(&ada_t, "sock", "approver", None, None);
    let sock_t = s.login(&sock);
    let own = ask(&ada_t);
    assert_eq!(approve(&own, &sock_t), (403, "created_approver".into()));
    // Nor does an approver made by an admin ada made: ada may hold both accounts.
    let ade = s.person_made_by(&ada_t, "ade", "admin", None, None);
    let ade_t = s.login(&ade);
    let sock2 = s.person_made_by(&ade_t, "sock2", "approver", None, None);
    let sock2_t = s.login(&sock2);
    assert_eq!(approve(&own, &sock2_t), (403, "created_approver".into()));
    // And the other way round: sock2 asks, and neither ada nor ade approves.
    let theirs = ask(&sock2_t);
    assert_eq!(approve(&theirs, &ada_t), (403, "created_requester".into()));
    assert_eq!(approve(&theirs, &ade_t), (403, "created_requester".into()));
    // An approver nobody involved made does.
    let ann = s.person("ann", "approver", None);
    let ann_t = s.login(&ann);
    let approved = s.ok(
        "POST",
        &format!("/api/v1/requests/{own}/approve"),
        Some(&ann_t),
        Some(json!({})),
    );
    assert_eq!(approved["status"], "approved", "{approved}");
    // Nor is a grant of ada's reviewed by a security account ada made.
    let sock_sec = s.person_made_by(&ada_t, "sock-sec", "security", None, None);
    let sock_sec_t = s.login(&sock_sec);
    let glass = s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "ada", "prefix": "ops", "capabilities": ["read"],
                     "ttl": "4h", "reason": "incident 14" }),
        ),
    );
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/grants/{}/review", glass["id"].as_str().unwrap()),
            &sock_sec_t,
            Some(json!({ "note": "fine" })),
        ),
        (403, "self_review".into())
    );
    // Nor is a break-glass grant ada made (to someone else) reviewed by an account she made.
    let made_by_ada = s.ok(
        "POST",
        "/api/v1/grants",
        Some(&ada_t),
        Some(
            json!({ "person": "dee", "prefix": "ops", "capabilities": ["read"],
                     "ttl": "4h", "reason": "incident 15" }),
        ),
    );
    assert_eq!(
        error(
            &s,
            "POST",
            &format!(
                "/api/v1/grants/{}/review",
                made_by_ada["id"].as_str().unwrap()
            ),
            &sock_sec_t,
            Some(json!({ "note": "fine" })),
        ),
        (403, "self_review".into())
    );
}

/// A disabled account loses its grants (enabling it again brings none back), gets no
/// break-glass grant, and a break-glass grant is held to the longest grant of a level a
/// path is classified at later.
#[test]
fn grants_end_with_the_account_and_break_glass_is_held_to_later_levels() {
    let s = Server::start();
    let cy = acme_reader(&s);
    write(&s, "acme/pay/bank", "bank-Jq27");
    let read = |token: &str, path: &str| {
        s.call(
            "GET",
            &format!("/api/v1/secrets/data/{path}"),
            Some(token),
            None,
            None,
        )
    };
    let cy_t = s.login(&cy);
    assert_eq!(read(&cy_t, "acme/app/db").0, 200);
    s.ok("POST", "/api/v1/people/cy/disable", Some(&s.admin), None);
    assert_eq!(
        s.recorded("person.disable", "cy")[0]["details"]["grants_revoked"],
        1
    );
    let (status, body) = s.call(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme", "capabilities": ["read"],
                     "ttl": "1d", "reason": "incident 9" }),
        ),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("grantee_inactive"))
    );
    s.ok("POST", "/api/v1/people/cy/enable", Some(&s.admin), None);
    let cy_t = s.login(&cy);
    let (status, body) = read(&cy_t, "acme/app/db");
    assert_eq!(status, 403, "the old grant came back: {body}");

    // Break-glass for 60 days; then part of its prefix is classified at a level that grants
    // at most a week.
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme", "capabilities": ["read"],
                     "ttl": "60d", "reason": "incident 10" }),
        ),
    );
    assert_eq!(read(&cy_t, "acme/pay/bank").0, 200);
    let mut tight = s
        .ok("GET", "/api/v1/levels", Some(&s.admin), None)
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "internal")
        .unwrap()
        .clone();
    tight["name"] = json!("tight");
    tight["rank"] = json!(5);
    tight["max_grant_secs"] = json!(7 * 86_400);
    s.ok("PUT", "/api/v1/levels/tight", Some(&s.admin), Some(tight));
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "acme/pay", "level": "tight" })),
    );
    // (A vendor's person is not told that the path's level is the reason.)
    let (status, body) = read(&cy_t, "acme/pay/bank");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_permitted")),
        "{body}"
    );
    assert_eq!(read(&cy_t, "acme/app/db").0, 200);
}

#[test]
fn separation_of_duties_holds_for_root_tokens_grantees_and_vendor_staff() {
    let s = Server::start();
    vendor(&s, "acme");
    let sam = s.person("sam", "security", None);
    let sam_t = s.login(&sam);
    // Made by security: the initial admin token, which made no account of cy's, is held to
    // the rule below.
    let cy = s.person_made_by(&sam_t, "cy", "contractor", Some("acme"), None);
    let cy_t = s.login(&cy);
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "acme/prod", "level": "regulated" })),
    );
    // Tokens without a person approve no request that needs several approvals: nothing ties
    // them to a person, who could approve again with an account of their own.
    let second_root = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&s.admin),
        Some(json!({ "ttl": "1h" })),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    s.remember(&second_root);
    let request = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cy_t),
        Some(
            json!({ "prefix": "acme/prod", "capabilities": ["read"], "reason": "audit",
                     "duration": "1d" }),
        ),
    );
    let approve = format!(
        "/api/v1/requests/{}/approve",
        request["id"].as_str().unwrap()
    );
    for root in [&s.admin, &second_root] {
        assert_eq!(
            error(&s, "POST", &approve, root, Some(json!({}))),
            (403, "named_approvers_only".into())
        );
    }

    // Security, which reads no secrets, creates no account that may: it would hold the
    // enrolment code. It creates contractors, and does not approve their requests.
    for role in ["member", "approver"] {
        assert_eq!(
            error(
                &s,
                "POST",
                "/api/v1/people",
                &sam_t,
                Some(json!({ "name": format!("sock-{role}"), "role": role }))
            ),
            (403, "not_permitted".into())
        );
    }
    let made = s.ok(
        "POST",
        "/api/v1/people",
        Some(&sam_t),
        Some(json!({ "name": "sock", "role": "contractor", "vendor": "acme" })),
    );
    let password = "pw-sock-Zq81xK4mTr-long";
    s.remember(password);
    let enrolled = s.ok(
        "POST",
        "/api/v1/auth/enroll",
        None,
        Some(json!({ "code": made["enrolment_code"], "password": password })),
    );
    let sock = common::Person {
        name: "sock".into(),
        password: password.into(),
        totp: chaperone_crypto::totp::TotpSecret::from_base32(
            enrolled["totp_secret"].as_str().unwrap(),
        )
        .unwrap(),
        recovery: Vec::new(),
    };
    let sock_t = s.login(&sock);
    let asked = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&sock_t),
        Some(
            json!({ "prefix": "team/x", "capabilities": ["read"], "reason": "sock",
                     "duration": "1d" }),
        ),
    );
    let approve_sock = format!("/api/v1/requests/{}/approve", asked["id"].as_str().unwrap());
    assert_eq!(
        error(&s, "POST", &approve_sock, &sam_t, Some(json!({}))),
        (403, "created_requester".into())
    );
    let ann = s.person("ann", "approver", None);
    let ann_t = s.login(&ann);
    assert_eq!(
        s.ok("POST", &approve_sock, Some(&ann_t), Some(json!({})))["status"],
        "approved"
    );

    // A requester withdraws a pending request, once; nobody else can, and it can no
    // longer be approved.
    let again = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&sock_t),
        Some(
            json!({ "prefix": "team/y", "capabilities": ["read"], "reason": "sock",
                     "duration": "1d" }),
        ),
    );
    let id = again["id"].as_str().unwrap();
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{id}/cancel"),
            &cy_t,
            None
        ),
        (404, "not_found".into())
    );
    let cancelled = s.ok(
        "POST",
        &format!("/api/v1/requests/{id}/cancel"),
        Some(&sock_t),
        None,
    );
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{id}/cancel"),
            &sock_t,
            None
        ),
        (409, "not_pending".into())
    );
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            &ann_t,
            Some(json!({}))
        ),
        (409, "not_pending".into())
    );
    assert_eq!(s.recorded("access.cancel", "team/y").len(), 1);

    // Staff roles do not belong to vendors.
    assert_eq!(
        error(
            &s,
            "POST",
            "/api/v1/people",
            &s.admin,
            Some(json!({ "name": "vic", "role": "approver", "vendor": "acme" }))
        ),
        (400, "invalid_request".into())
    );

    // Whoever holds a break-glass grant does not review it, even from security; an
    // unreviewed grant stays flagged after it ends.
    let glass = s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "sam", "prefix": "ops", "capabilities": ["read"],
                     "ttl": "1h", "reason": "incident 9" }),
        ),
    );
    let review = format!("/api/v1/grants/{}/review", glass["id"].as_str().unwrap());
    assert_eq!(
        error(&s, "POST", &review, &sam_t, Some(json!({ "note": "fine" }))),
        (403, "self_review".into())
    );
    s.clock.advance_secs(2 * 3600);
    let flagged = s.ok("GET", "/api/v1/grants?flagged=true", Some(&s.admin), None);
    assert_eq!(flagged.as_array().unwrap().len(), 1, "{flagged}");
    assert_eq!(flagged[0]["id"], glass["id"]);
    // Nor does whoever created the holder's account (security made `sock`).
    let (sam_t, ann_t, sock_t) = (s.login(&sam), s.login(&ann), s.login(&sock));
    let glass = s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "sock", "prefix": "team", "capabilities": ["read"],
                     "ttl": "1h", "reason": "incident 10" }),
        ),
    );
    let review = format!("/api/v1/grants/{}/review", glass["id"].as_str().unwrap());
    assert_eq!(
        error(&s, "POST", &review, &sam_t, Some(json!({ "note": "fine" }))),
        (403, "self_review".into())
    );

    // A disabled account asks for nothing any more: its pending requests are closed with
    // it, so enabling it again does not bring an approvable request back.
    let pending = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&sock_t),
        Some(
            json!({ "prefix": "team/z", "capabilities": ["read"], "reason": "sock",
                     "duration": "1d" }),
        ),
    );
    let id = pending["id"].as_str().unwrap();
    s.ok("POST", "/api/v1/people/sock/disable", Some(&s.admin), None);
    let disabled = s.recorded("person.disable", "sock");
    assert_eq!(disabled[0]["details"]["requests_closed"], 1, "{disabled:?}");
    s.ok("POST", "/api/v1/people/sock/enable", Some(&s.admin), None);
    assert_eq!(
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            &ann_t,
            Some(json!({}))
        ),
        (409, "not_pending".into())
    );

    // Offboarding a vendor disables its accounts and revokes their tokens in the same step.
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({ "status": "suspended", "reason": "breach" })),
    );
    // A suspended vendor's people get nothing: their requests can only be denied.
    assert_eq!(
        error(&s, "POST", &approve, &ann_t, Some(json!({}))),
        (409, "requester_inactive".into())
    );
    s.ok(
        "POST",
        "/api/v1/vendors/acme/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "contract ended" })),
    );
    let people = s.ok("GET", "/api/v1/people", Some(&s.admin), None);
    let cy_row = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cy")
        .unwrap()
        .clone();
    assert_eq!(cy_row["disabled"], true, "{cy_row}");
    // What the account asked for before is closed with it.
    assert_eq!(
        error(&s, "POST", &approve, &ann_t, Some(json!({}))),
        (409, "not_pending".into())
    );
    assert_eq!(
        error(&s, "GET", "/api/v1/auth/self", &cy_t, None),
        (403, "person_inactive".into()),
        "the session was revoked, and says why"
    );
    // The offboarded account's attempts are recorded under its name, with what they
    // aimed at: the secret path on both APIs, the request's path elsewhere.
    assert_eq!(
        error(&s, "GET", "/api/v1/secrets/data/acme/prod/db", &cy_t, None),
        (403, "person_inactive".into())
    );
    let (status, _) = s.call(
        "GET",
        "/v1/secret/data/acme/prod/db",
        Some(&cy_t),
        None,
        None,
    );
    assert_eq!(status, 403);
    assert_eq!(
        error(&s, "GET", "/api/v1/secrets/list/acme/prod", &cy_t, None),
        (403, "person_inactive".into())
    );
    assert_eq!(
        error(&s, "GET", "/api/v1/vendors/acme", &cy_t, None),
        (403, "person_inactive".into())
    );
    let attempts: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["outcome"] == "denied" && e["reasons"] == json!(["person_inactive"]))
        .collect();
    let resources: Vec<&str> = attempts
        .iter()
        .map(|e| e["resource"].as_str().unwrap())
        .collect();
    assert_eq!(
        resources,
        [
            "/api/v1/auth/self",
            "acme/prod/db",
            "acme/prod/db",
            "acme/prod/",
            "/api/v1/vendors/acme"
        ],
        "{attempts:?}"
    );
    for attempt in &attempts {
        assert_eq!(attempt["actor"]["person"], cy_row["id"], "{attempt}");
        assert!(attempt["actor"]["token"].is_string(), "{attempt}");
    }
    let offboarded = s.recorded("vendor.offboard", "acme");
    assert_eq!(
        offboarded[0]["details"]["requests_closed"], 1,
        "{}",
        offboarded[0]
    );
    assert_eq!(
        offboarded[0]["details"]["people"][0], "cy",
        "the offboarding names the accounts it disabled: {}",
        offboarded[0]
    );
    assert_eq!(
        s.recorded("vendor.update", "acme").len(),
        1,
        "an update that changes nothing records nothing"
    );
    s.ok(
        "PUT",
        "/api/v1/vendors/acme",
        Some(&s.admin),
        Some(json!({})),
    );
    assert_eq!(s.recorded("vendor.update", "acme").len(), 1);
}

#[test]
fn listings_and_classifications_follow_the_gate_and_the_grants() {
    let s = Server::start();
    vendor(&s, "alpha");
    vendor(&s, "beta");
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "alpha/keys", "level": "confidential" })),
    );
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "beta/plans", "level": "regulated" })),
    );
    write(&s, "alpha/keys/signing", "alpha-keys-Gh27sL");
    write(&s, "alpha/app/db", "alpha-app-Mn38dK");
    let ca = s.person("ca", "contractor", Some("alpha"));
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "ca", "prefix": "alpha", "capabilities": ["read", "list"],
                     "ttl": "7d", "reason": "project" }),
        ),
    );
    s.ok(
        "PUT",
        "/api/v1/rotation/alpha/keys/signing",
        Some(&s.admin),
        Some(json!({ "max_age": "1d" })),
    );
    // The policy is security's: not a contractor's, even with write on the path, and never
    // so long that it cannot fall due.
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "ca", "prefix": "alpha/keys", "capabilities": ["write"],
                     "ttl": "1h", "reason": "rotation" }),
        ),
    );
    let ca_t = s.login(&ca);
    assert_eq!(
        error(
            &s,
            "PUT",
            "/api/v1/rotation/alpha/keys/signing",
            &ca_t,
            Some(json!({ "max_age": "99999d" }))
        ),
        (403, "not_permitted".into())
    );
    assert_eq!(
        error(
            &s,
            "PUT",
            "/api/v1/rotation/alpha/keys/signing",
            &s.admin,
            Some(json!({ "max_age": "3651d" }))
        ),
        (400, "invalid_request".into())
    );
    s.clock.advance_secs(2 * DAY);
    let ca_t = s.login(&ca);
    // No NDA: the confidential folder is not even listed; the internal one is. Nor is the
    // overdue key under it, nor the classified prefix.
    assert_eq!(
        s.ok("GET", "/api/v1/secrets/list/alpha", Some(&ca_t), None)["keys"],
        json!(["app/"])
    );
    let stale_paths = |token: &str| -> Vec<String> {
        s.ok("GET", "/api/v1/secrets/stale", Some(token), None)
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(stale_paths(&s.admin), ["alpha/keys/signing"]);
    assert!(stale_paths(&ca_t).is_empty());
    assert_eq!(
        s.ok("GET", "/api/v1/classifications", Some(&ca_t), None),
        json!([])
    );
    agreement(
        &s,
        "alpha",
        json!({ "kind": "nda", "signed": "2026-01-01" }),
    );
    assert_eq!(
        s.ok("GET", "/api/v1/secrets/list/alpha", Some(&ca_t), None)["keys"],
        json!(["app/", "keys/"])
    );
    assert_eq!(stale_paths(&ca_t), ["alpha/keys/signing"]);
    // Classified prefixes are shown only where the grantee could list.
    let classified = s.ok("GET", "/api/v1/classifications", Some(&ca_t), None);
    assert_eq!(
        classified,
        json!([{ "prefix": "alpha/keys", "level": "confidential" }])
    );
    let all = s.ok("GET", "/api/v1/classifications", Some(&s.admin), None);
    assert_eq!(all.as_array().unwrap().len(), 2);
}

/// A request is announced to the approvers who may decide it: not to whoever created the
/// requester's account.
#[test]
fn a_request_is_announced_only_to_approvers_who_may_decide_it() {
    let s = Server::start();
    vendor(&s, "acme");
    let ada = s.person("ada", "admin", None);
    let ada_t = s.login(&ada);
    let ann = s.person("ann", "approver", None);
    let ann_t = s.login(&ann);
    let cy = s.person_made_by(&ada_t, "cy", "contractor", Some("acme"), None);
    let cy_t = s.login(&cy);
    let request = s.ok(
        "POST",
        "/api/v1/requests",
        Some(&cy_t),
        Some(
            json!({ "prefix": "acme/app", "capabilities": ["read"], "reason": "release",
                     "duration": "1d" }),
        ),
    );
    let id = request["id"].as_str().unwrap().to_owned();
    let people = s.ok("GET", "/api/v1/people", Some(&s.admin), None);
    let id_of = |name: &str| {
        people
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["id"]
            .clone()
    };
    let notes = s.ok("GET", "/api/v1/notifications", Some(&s.admin), None);
    let note = notes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "access_request" && n["details"]["request_id"] == id.as_str())
        .unwrap();
    let to = note["to"].as_array().unwrap();
    assert!(to.contains(&id_of("ann")), "{note}");
    assert!(
        !to.contains(&id_of("ada")),
        "ada made cy's account and may not approve: {note}"
    );
    // Ann sees it among her own.
    let hers = s.ok("GET", "/api/v1/notifications", Some(&ann_t), None);
    assert!(
        hers.as_array()
            .unwrap()
            .iter()
            .any(|n| n["details"]["request_id"] == id.as_str())
    );
}

#[test]
fn a_wide_request_is_held_to_every_level_it_reaches() {
    let s = Server::start();
    let ada = s.person("ada", "admin", None);
    let ada_t = s.login(&ada);
    // Made by an admin of the business, so the initial admin token may decide mo's requests.
    let mo = s.person_made_by(&ada_t, "mo", "member", None, None);
    let ann = s.person("ann", "approver", None);
    let sam = s.person("sam", "security", None);
    let (mo_t, ann_t, sam_t) = (s.login(&mo), s.login(&ann), s.login(&sam));
    let level = |name: &str| {
        s.ok("GET", "/api/v1/levels", Some(&s.admin), None)
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone()
    };
    let put_level = |body: Value| {
        let path = format!("/api/v1/levels/{}", body["name"].as_str().unwrap());
        s.ok("PUT", &path, Some(&s.admin), Some(body));
    };
    // Ranked below regulated, but stricter in every term that approval decides.
    let mut pci = level("internal");
    pci["name"] = json!("pci");
    pci["rank"] = json!(5);
    pci["approvals"] = json!(3);
    pci["max_grant_secs"] = json!(86_400);
    pci["approver_roles"] = json!(["security", "admin"]);
    put_level(pci.clone());
    for (prefix, level) in [("ops/cards", "pci"), ("ops/prod", "regulated")] {
        s.ok(
            "PUT",
            "/api/v1/classifications",
            Some(&s.admin),
            Some(json!({ "prefix": prefix, "level": level })),
        );
    }
    let ask = |prefix: &str, duration: &str| {
        s.call(
            "POST",
            "/api/v1/requests",
            Some(&mo_t),
            Some(json!({ "prefix": prefix, "capabilities": ["read"],
                         "reason": "quarterly reconciliation", "duration": duration })),
            None,
        )
    };
    let decide = |id: &str, token: &str, verb: &str| {
        error(
            &s,
            "POST",
            &format!("/api/v1/requests/{id}/{verb}"),
            token,
            Some(json!({ "comment": "checked" })),
        )
    };

    // A grant on `ops` reaches both: the shorter longest grant, the more approvals, and only
    // the roles both levels name.
    let (status, body) = ask("ops", "3d");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1 days"),
        "{body}"
    );
    let (status, wide) = ask("ops", "12h");
    assert_eq!(status, 200, "{wide}");
    assert_eq!(wide["approvals_needed"], 3, "{wide}");
    let wide_id = wide["id"].as_str().unwrap();
    assert_eq!(
        decide(wide_id, &ann_t, "approve"),
        (403, "not_an_approver".into())
    );

    // Roles taken off a level after a request was filed approve it no more.
    let (status, narrow) = ask("ops/prod", "1d");
    assert_eq!(status, 200, "{narrow}");
    let narrow_id = narrow["id"].as_str().unwrap();
    let mut regulated = level("regulated");
    regulated["approver_roles"] = json!(["security"]);
    put_level(regulated);
    assert_eq!(
        decide(narrow_id, &ann_t, "approve"),
        (403, "not_an_approver".into())
    );
    assert_eq!(
        s.call(
            "POST",
            &format!("/api/v1/requests/{narrow_id}/approve"),
            Some(&sam_t),
            Some(json!({})),
            None
        )
        .0,
        200
    );

    // Levels approved by different roles: nobody approves one grant over both, and the
    // request can still be denied.
    pci["approver_roles"] = json!(["admin"]);
    put_level(pci);
    let (status, body) = ask("ops", "12h");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "levels_disagree", "{body}");
    assert_eq!(
        decide(wide_id, &s.admin, "approve"),
        (409, "levels_disagree".into())
    );
    assert_eq!(
        s.call(
            "POST",
            &format!("/api/v1/requests/{wide_id}/deny"),
            Some(&sam_t),
            Some(json!({ "comment": "too wide" })),
            None
        )
        .0,
        200
    );
}

#[test]
fn a_grant_does_not_reach_a_path_classified_stricter_after_its_approval() {
    let s = Server::start();
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let ann = s.person("ann", "approver", None);
    let sam = s.person("sam", "security", None);
    let (cy_t, ann_t, sam_t) = (s.login(&cy), s.login(&ann), s.login(&sam));
    for path in ["acme/prod/db", "acme/dev/db"] {
        write(&s, path, "v-Qm41-Zr88");
    }
    // Two approvals and at most a week, with nothing else asked of the vendor.
    let mut strict = s
        .ok("GET", "/api/v1/levels", Some(&s.admin), None)
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "internal")
        .unwrap()
        .clone();
    strict["name"] = json!("strict");
    strict["rank"] = json!(6);
    strict["approvals"] = json!(2);
    strict["max_grant_secs"] = json!(7 * 86_400);
    s.ok("PUT", "/api/v1/levels/strict", Some(&s.admin), Some(strict));
    let ask = |prefix: &str, duration: &str| -> String {
        let asked = s.ok(
            "POST",
            "/api/v1/requests",
            Some(&cy_t),
            Some(json!({ "prefix": prefix, "capabilities": ["read"],
                         "reason": "release", "duration": duration })),
        );
        asked["id"].as_str().unwrap().to_owned()
    };
    let approve = |id: &str, token: &str| {
        let path = format!("/api/v1/requests/{id}/approve");
        s.ok("POST", &path, Some(token), Some(json!({})));
    };
    let read = |path: &str| {
        s.call(
            "GET",
            &format!("/api/v1/secrets/data/{path}"),
            Some(&cy_t),
            None,
            None,
        )
    };

    // One approval for 30 days on `acme`, when all of it is internal.
    let wide = ask("acme", "30d");
    approve(&wide, &ann_t);
    assert_eq!(read("acme/prod/db").0, 200);

    // `acme/prod` is classified stricter afterwards: the grant no longer reaches it (the
    // contractor is not told why, which would say how the path is classified); the rest of
    // `acme` stays within it.
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "acme/prod", "level": "strict" })),
    );
    let (status, body) = read("acme/prod/db");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "not_permitted", "{body}");
    assert_eq!(read("acme/dev/db").0, 200);
    let denied: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| e["resource"] == "acme/prod/db" && e["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["reasons"], json!(["not_permitted"]));

    // Asked for again, as the level asks now, it is reached again.
    let narrow = ask("acme/prod", "7d");
    approve(&narrow, &ann_t);
    assert_eq!(read("acme/prod/db").0, 403, "one approval of two");
    approve(&narrow, &sam_t);
    assert_eq!(read("acme/prod/db").0, 200);
}

#[test]
fn terminations_come_forward_evidence_is_revoked_and_times_are_kept() {
    let s = Server::start();
    vendor(&s, "acme");
    // Confidential asks for an NDA; "audited" (a level of its own) for ISO 27001.
    let mut audited = s
        .ok("GET", "/api/v1/levels", Some(&s.admin), None)
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "internal")
        .unwrap()
        .clone();
    audited["name"] = json!("audited");
    audited["rank"] = json!(15);
    audited["evidence"] = json!([["iso27001"]]);
    s.ok(
        "PUT",
        "/api/v1/levels/audited",
        Some(&s.admin),
        Some(audited),
    );
    for (prefix, level) in [("acme/keys", "confidential"), ("acme/audit", "audited")] {
        s.ok(
            "PUT",
            "/api/v1/classifications",
            Some(&s.admin),
            Some(json!({ "prefix": prefix, "level": level })),
        );
    }
    write(&s, "acme/keys/signing", "acme-keys-Gh27sL");
    write(&s, "acme/audit/db", "acme-audit-Mn38dK");
    let cy = s.person("cy", "contractor", Some("acme"));
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme", "capabilities": ["read"],
                     "ttl": "7d", "reason": "project" }),
        ),
    );
    // An NDA ending at noon: the ledger keeps the time, not only the day.
    let nda = agreement(
        &s,
        "acme",
        json!({ "kind": "nda", "signed": "2026-01-01", "expires": "2028-06-01T12:00:00Z" }),
    );
    assert_eq!(nda["expires"], "2028-06-01T12:00:00Z");
    let id = nda["id"].as_str().unwrap();
    assert_eq!(
        s.recorded("agreement.create", id)[0]["details"]["expires"],
        "2028-06-01T12:00:00Z"
    );
    let evidence = s.ok(
        "POST",
        "/api/v1/vendors/acme/evidence",
        Some(&s.admin),
        Some(json!({ "kind": "iso27001", "expires": "2029-01-01" })),
    );
    let cy_t = s.login(&cy);
    for path in ["acme/keys/signing", "acme/audit/db"] {
        s.ok(
            "GET",
            &format!("/api/v1/secrets/data/{path}"),
            Some(&cy_t),
            None,
        );
    }

    // A termination with notice, then a breach: it is brought forward to now, and the
    // next read is refused. It cannot be pushed back.
    let terminate = |body: Value| {
        s.call(
            "POST",
            &format!("/api/v1/agreements/{id}/terminate"),
            Some(&s.admin),
            Some(body),
            None,
        )
    };
    assert_eq!(
        terminate(json!({ "reason": "notice given", "date": "2027-12-31" })).0,
        200
    );
    assert_eq!(
        terminate(json!({ "reason": "later", "date": "2028-01-31" })).0,
        400
    );
    s.ok(
        "GET",
        "/api/v1/secrets/data/acme/keys/signing",
        Some(&cy_t),
        None,
    );
    let (status, _) = terminate(json!({ "reason": "breach" }));
    assert_eq!(status, 200);
    let refused = |path: &str| {
        let (status, body) = s.call(
            "GET",
            &format!("/api/v1/secrets/data/{path}"),
            Some(&cy_t),
            None,
            None,
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("compliance"))
        );
        body["error"]["message"].as_str().unwrap().to_owned()
    };
    assert!(refused("acme/keys/signing").contains("was terminated on"));
    let entries = s.recorded("agreement.terminate", id);
    assert_eq!(entries[1]["details"]["previously_scheduled"], "2027-12-31");
    assert_eq!(terminate(json!({ "reason": "again" })).0, 400);

    // Evidence withdrawn (its certificate revoked) counts for nothing from then on.
    s.ok(
        "GET",
        "/api/v1/secrets/data/acme/audit/db",
        Some(&cy_t),
        None,
    );
    let evi = evidence["id"].as_str().unwrap();
    let revoked = s.ok(
        "POST",
        &format!("/api/v1/evidence/{evi}/revoke"),
        Some(&s.admin),
        Some(json!({ "reason": "certificate withdrawn by the issuer" })),
    );
    assert_eq!(revoked["status"], "revoked");
    assert!(
        refused("acme/audit/db").starts_with("evidence ISO 27001 of vendor acme was revoked on"),
        "{}",
        refused("acme/audit/db")
    );
    assert_eq!(s.recorded("evidence.revoke", evi).len(), 1);
    let cy_only = s.login(&cy);
    assert_eq!(
        s.call(
            "POST",
            &format!("/api/v1/evidence/{evi}/revoke"),
            Some(&cy_only),
            Some(json!({ "reason": "x" })),
            None
        )
        .0,
        403
    );
}

#[test]
fn reminders_reach_someone_and_follow_new_end_dates() {
    let (url, received) = webhook(6);
    let s = Server::start_with(|settings| settings.notify.webhook_url = Some(url));
    // No one in security; the vendor's owner leaves.
    let olga = s.person("olga", "member", None);
    let ada = s.person("ada", "admin", None);
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active", "owner": "olga" })),
    );
    s.ok("POST", "/api/v1/people/olga/disable", Some(&s.admin), None);
    assert_eq!(
        error(
            &s,
            "PUT",
            "/api/v1/vendors/acme",
            &s.admin,
            Some(json!({ "owner": "olga" }))
        ),
        (400, "invalid_request".into())
    );
    drop(olga);
    // The NDA expires in a year but ends by termination in 20 days.
    let nda = agreement(
        &s,
        "acme",
        json!({ "kind": "nda", "signed": "2026-01-01", "expires": "2028-01-01" }),
    );
    s.ok(
        "POST",
        &format!(
            "/api/v1/agreements/{}/terminate",
            nda["id"].as_str().unwrap()
        ),
        Some(&s.admin),
        Some(json!({ "reason": "notice given", "date": "2027-02-04" })),
    );
    let sweep = || s.runtime.block_on(s.state.sweep()).unwrap().reminders;
    assert_eq!(sweep(), 1, "the termination is 20 days away");
    // A week before it; then it is brought forward, and the new end is announced.
    s.clock.advance_secs(14 * DAY);
    assert_eq!(sweep(), 1, "a week before");
    s.ok(
        "POST",
        &format!(
            "/api/v1/agreements/{}/terminate",
            nda["id"].as_str().unwrap()
        ),
        Some(&s.admin),
        Some(json!({ "reason": "breach", "date": "2027-01-31" })),
    );
    assert_eq!(sweep(), 1, "the new end");
    assert_eq!(sweep(), 0);
    // A grant reminded of, then extended: reminded of again before its new end.
    let cy = s.person("cy", "contractor", Some("acme"));
    let grant = s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme", "capabilities": ["read"],
                     "ttl": "12h", "reason": "hotfix" }),
        ),
    );
    assert_eq!(sweep(), 1);
    let cy_t = s.login(&cy);
    let extension = s.ok(
        "POST",
        &format!("/api/v1/grants/{}/extend", grant["id"].as_str().unwrap()),
        Some(&cy_t),
        Some(json!({ "duration": "2d", "reason": "more work" })),
    );
    // By an admin of the business: the initial admin token made cy's account.
    let ada_t = s.login(&ada);
    s.ok(
        "POST",
        &format!(
            "/api/v1/requests/{}/approve",
            extension["id"].as_str().unwrap()
        ),
        Some(&ada_t),
        Some(json!({})),
    );
    assert_eq!(sweep(), 0, "two days left");
    s.clock.advance_secs(DAY + 3600);
    assert_eq!(
        sweep(),
        2,
        "a day before the grant's new end, and the NDA's"
    );

    s.runtime.block_on(s.state.deliver_notifications()).unwrap();
    let bodies: Vec<Value> = received.iter().take(6).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b["subject"] == "agreement NDA of vendor acme ends on 2027-01-31"),
        "{bodies:?}"
    );
    let nda_reminder = bodies
        .iter()
        .find(|b| b["subject"] == "agreement NDA of vendor acme ends on 2027-02-04")
        .unwrap_or_else(|| panic!("{bodies:?}"));
    // To an admin: nobody else is left to take it.
    let to: Vec<&str> = nda_reminder["to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["ada"]);
}

/// Vendor acme, its contractor cy with a week's read grant on `acme`, and a secret there.
fn acme_reader(s: &Server) -> common::Person {
    vendor(s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    write(s, "acme/app/db", "acme-app-Hk27wQ");
    s.ok(
        "POST",
        "/api/v1/grants",
        Some(&s.admin),
        Some(
            json!({ "person": "cy", "prefix": "acme", "capabilities": ["read"],
                     "ttl": "7d", "reason": "project" }),
        ),
    );
    cy
}

#[test]
fn the_watch_raises_each_anomaly_once_to_security() {
    let s = Server::start_with(|settings| settings.notify.watch.reads_per_hour = 5);
    let sam = s.person("sam", "security", None);
    let cy = acme_reader(&s);
    let sweep = || s.runtime.block_on(s.state.sweep()).unwrap().anomalies;
    let read = |token: &str, from: Option<&str>| {
        let (status, _) = s.call(
            "GET",
            "/api/v1/secrets/data/acme/app/db",
            Some(token),
            None,
            from,
        );
        assert_eq!(status, 200);
    };
    // Friday morning (the test clock starts at 2027-01-15T08:01:30Z): business hours. The
    // contractor's first network is learnt, not alerted on.
    let cy_t = s.login(&cy);
    read(&cy_t, None);
    assert_eq!(sweep(), 0);

    // A new network; then more reads within the hour than allowed (5).
    read(&cy_t, Some("198.51.100.7"));
    for _ in 0..5 {
        read(&cy_t, None);
    }
    // Friday evening: reads outside business hours (one alert a day).
    s.clock.advance_secs(12 * 3600);
    let cy_t = s.login(&cy);
    read(&cy_t, None);
    read(&cy_t, None);
    // A burst of failed logins for an account that does not exist, from one address.
    for _ in 0..10 {
        let (status, _) = s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": "mallory", "password": "guess-Zq81", "totp": "000000" })),
            Some("203.0.113.5"),
        );
        assert!(status == 401 || status == 429, "{status}");
    }
    assert_eq!(sweep(), 5);
    assert_eq!(sweep(), 0, "each anomaly is raised once");
    // The watch goes on past them.
    read(&cy_t, Some("192.0.2.44"));
    assert_eq!(sweep(), 1);

    let sam_t = s.login(&sam);
    let found = s.ok("GET", "/api/v1/findings?source=anomaly", Some(&sam_t), None);
    let mut kinds: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["details"]["kind"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "login_burst",
            "login_burst",
            "new_network",
            "new_network",
            "off_hours",
            "unusual_volume"
        ],
        "{found}"
    );
    let network = found
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["details"]["network"] == "198.51.100.0/24")
        .unwrap();
    assert_eq!(network["details"]["network"], "198.51.100.0/24");
    assert_eq!(network["subject"], "cy");
    assert!(
        network["vendor_id"]
            .as_str()
            .is_some_and(|v| v.starts_with("ven_"))
    );
    // Security is told; each alert is in the ledger.
    let told = s.ok("GET", "/api/v1/notifications", Some(&sam_t), None);
    assert_eq!(
        told.as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "anomaly")
            .count(),
        6,
        "{told}"
    );
    assert_eq!(
        s.ledger()
            .iter()
            .filter(|e| e["action"] == "anomaly.detect")
            .count(),
        6
    );

    // Names that do not exist are one subject, whatever the name: trying many raises one
    // alert, not one per ten requests. (From a new address each: no address bursts.)
    s.clock.advance_secs(3600);
    for n in 0..30 {
        let (status, _) = s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": format!("ghost-{}", n / 10), "password": "guess-Zq81" })),
            Some(&format!("198.18.0.{n}")),
        );
        assert!(status == 401 || status == 429, "{status}");
    }
    assert_eq!(sweep(), 1);
    // A token of no person is watched too: the initial admin token reading past the limit.
    for _ in 0..6 {
        read(&s.admin, None);
    }
    assert_eq!(sweep(), 1);
    let sam_t = s.login(&sam);
    let found = s.ok("GET", "/api/v1/findings?source=anomaly", Some(&sam_t), None);
    let about_root = found
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["details"]["kind"] == "unusual_volume"
                && f["subject"].as_str().is_some_and(|s| s.starts_with("tok_"))
        })
        .unwrap_or_else(|| panic!("{found}"));
    // Neither that token nor one it made closes it: tokens of no person are one actor.
    let path = format!("/api/v1/findings/{}", about_root["id"].as_str().unwrap());
    let child = s.ok(
        "POST",
        "/api/v1/auth/tokens",
        Some(&s.admin),
        Some(json!({ "ttl": "1h" })),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for token in [&s.admin, &child] {
        assert_eq!(
            error(
                &s,
                "POST",
                &path,
                token,
                Some(json!({ "status": "risk_accepted", "note": "it was me" }))
            ),
            (403, "self_review".into())
        );
    }

    // An anomaly about someone is closed by someone else.
    let ada = s.person("ada", "admin", None);
    let ada_t = s.login(&ada);
    for _ in 0..6 {
        read(&ada_t, None);
    }
    assert_eq!(sweep(), 1);
    let found = s.ok("GET", "/api/v1/findings?source=anomaly", Some(&ada_t), None);
    let about_ada = found
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "ada")
        .unwrap();
    let path = format!("/api/v1/findings/{}", about_ada["id"].as_str().unwrap());
    let close = json!({ "status": "risk_accepted", "note": "expected" });
    assert_eq!(
        error(&s, "POST", &path, &ada_t, Some(close.clone())),
        (403, "self_review".into())
    );
    // Nor by an account ada made: she may hold it.
    let ada_sec = s.person_made_by(&ada_t, "ada-sec", "security", None, None);
    let ada_sec_t = s.login(&ada_sec);
    assert_eq!(
        error(&s, "POST", &path, &ada_sec_t, Some(close.clone())),
        (403, "self_review".into())
    );
    let sam_t = s.login(&sam);
    assert_eq!(
        s.ok("POST", &path, Some(&sam_t), Some(close))["status"],
        "risk_accepted"
    );
    s.assert_no_secret_logged();
}

#[test]
fn reports_count_a_period_and_reach_security_on_schedule() {
    let s = Server::start_with(|settings| {
        settings.notify.report_every = Some(Duration::from_secs(7 * DAY as u64));
    });
    let sam = s.person("sam", "security", None);
    let cy = acme_reader(&s);
    let cy_t = s.login(&cy);
    for _ in 0..3 {
        s.ok("GET", "/api/v1/secrets/data/acme/app/db", Some(&cy_t), None);
    }
    for _ in 0..2 {
        let (status, _) = s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": "cy", "password": "wrong-Zq81-guess", "totp": "000000" })),
            Some("203.0.113.5"),
        );
        assert_eq!(status, 401);
    }
    let sam_t = s.login(&sam);
    let report = s.ok("GET", "/api/v1/reports", Some(&sam_t), None);
    assert_eq!(report["failed_logins"]["total"], 2, "{report}");
    assert_eq!(
        report["failed_logins"]["by_address"],
        json!([{ "name": "203.0.113.5", "count": 2 }])
    );
    let transfers = |action: &str| {
        report["data_transfers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} in {report}"))
    };
    let reads = transfers("secret.read");
    assert_eq!(reads["total"], 3);
    assert_eq!(reads["by_person"], json!([{ "name": "cy", "count": 3 }]));
    assert_eq!(reads["by_vendor"], json!([{ "name": "acme", "count": 3 }]));
    assert_eq!(transfers("secret.write")["total"], 1);
    let counts = &report["provisioning"]["counts"];
    assert_eq!(
        (
            &counts["person.create"],
            &counts["grant.create"],
            &counts["vendor.create"]
        ),
        (&json!(2), &json!(1), &json!(1)),
        "{counts}"
    );
    let changes = report["provisioning"]["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["action"] == "grant.create" && c["by"] == "root"),
        "{changes:?}"
    );
    // acme has no NDA: confidential paths are closed to its people.
    let acme = &report["vendor_compliance"][0];
    let confidential = acme["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["level"] == "confidential")
        .unwrap();
    assert_eq!(confidential["met"], false);
    assert!(
        confidential["reason"].as_str().unwrap().contains("NDA"),
        "{confidential}"
    );
    // A period before any of it is empty; a bad period is refused; contractors may not ask.
    let empty = s.ok(
        "GET",
        "/api/v1/reports?from=2020-01-01&to=2020-01-08",
        Some(&sam_t),
        None,
    );
    assert_eq!(
        (&empty["entries"], &empty["failed_logins"]["total"]),
        (&json!(0), &json!(0))
    );
    for bad in [
        "from=2027-02-01&to=2027-01-01",
        "from=2020-01-01&to=2027-01-01",
        "from=1700-01-01&to=2250-01-01",
    ] {
        assert_eq!(
            error(&s, "GET", &format!("/api/v1/reports?{bad}"), &sam_t, None),
            (400, "invalid_request".into()),
            "{bad}"
        );
    }
    assert_eq!(
        error(&s, "GET", "/api/v1/reports", &cy_t, None),
        (403, "not_permitted".into())
    );

    // The sweep sends security the report of the week just ended, once a week; not of the
    // week that ended before the server was initialised.
    let sweep = || s.runtime.block_on(s.state.sweep()).unwrap().report_sent;
    assert!(!sweep(), "the server did not exist that week");
    s.clock.advance_secs(7 * DAY);
    // (The server's own sweep may send it first.)
    sweep();
    assert!(!sweep(), "once a week");
    let told = s.ok("GET", "/api/v1/notifications", Some(&s.login(&sam)), None);
    let reports: Vec<&Value> = told
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "report")
        .collect();
    assert_eq!(reports.len(), 1);
    // It covers the reads and failures above, from the server's initialisation.
    assert!(
        reports
            .iter()
            .any(|n| n["details"]["failed_logins"] == 2 && n["details"]["transfers"] == 4),
        "{reports:?}"
    );
}

/// A burst against a contractor's account names the person and the vendor (its owner is
/// told); a burst from one address names nobody.
#[test]
fn a_login_burst_on_an_account_names_its_person_and_vendor() {
    let s = Server::start();
    let cy = acme_reader(&s);
    for i in 0..10 {
        s.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": cy.name, "password": "guess-Zq81" })),
            Some(&format!("198.51.100.{}", 10 + i)),
        );
    }
    assert_eq!(s.runtime.block_on(s.state.sweep()).unwrap().anomalies, 1);
    let found = s.ok(
        "GET",
        "/api/v1/findings?source=anomaly",
        Some(&s.admin),
        None,
    );
    let burst = &found[0];
    assert_eq!(burst["details"]["kind"], "login_burst", "{found}");
    assert!(
        burst["vendor_id"]
            .as_str()
            .is_some_and(|v| v.starts_with("ven_")),
        "{burst}"
    );
    assert!(
        burst["details"]["person_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("per_")),
        "{burst}"
    );
}

#[test]
fn a_flood_of_anomalies_and_a_late_watch_are_said_in_one_alert() {
    let s = Server::start_with(|settings| settings.notify.watch.alerts_per_sweep = 2);
    let sam = s.person("sam", "security", None);
    let sweep = || s.runtime.block_on(s.state.sweep()).unwrap().anomalies;
    let burst = |from: &str| {
        for _ in 0..10 {
            let (status, _) = s.call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({ "user": "mallory", "password": "guess-Zq81", "totp": "000000" })),
                Some(from),
            );
            assert!(status == 401 || status == 429, "{status}");
        }
    };
    // A contractor's first network is learnt.
    let cy = acme_reader(&s);
    let cy_t = s.login(&cy);
    let read = |from: &str| {
        let (status, _) = s.call(
            "GET",
            "/api/v1/secrets/data/acme/app/db",
            Some(&cy_t),
            None,
            Some(from),
        );
        assert_eq!(status, 200);
    };
    read("127.0.0.1");
    assert_eq!(sweep(), 0);
    // Three address bursts (and the account's), then the contractor from a new network:
    // two raised one by one, the rest in one. The bursts, which anyone can cause, do not
    // take the place of what the account did.
    for from in ["203.0.113.5", "198.51.100.5", "192.0.2.5"] {
        burst(from);
    }
    read("100.64.2.5");
    assert_eq!(sweep(), 3);
    let overflow = |found: &Value| -> Vec<Value> {
        found
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["details"]["kind"] == "watch_overflow")
            .cloned()
            .collect()
    };
    let sam_t = s.login(&sam);
    let found = s.ok("GET", "/api/v1/findings?source=anomaly", Some(&sam_t), None);
    let said = overflow(&found);
    assert_eq!(said.len(), 1, "{found}");
    assert!(
        said[0]["details"]["not_raised"].as_u64().unwrap() >= 2,
        "{said:?}"
    );
    assert!(
        said[0]["details"]["not_raised_by_kind"]["login_burst"]
            .as_u64()
            .unwrap()
            >= 2,
        "{said:?}"
    );
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["details"]["kind"] == "new_network"),
        "{found}"
    );
    assert_eq!(said[0]["severity"], "high");

    // Entries read more than a day late raise no alert of their own, but are counted.
    burst("100.64.0.5");
    s.clock.advance_secs(2 * 86_400);
    assert_eq!(sweep(), 1);
    let sam_t = s.login(&sam);
    let found = s.ok("GET", "/api/v1/findings?source=anomaly", Some(&sam_t), None);
    let said = overflow(&found);
    assert_eq!(said.len(), 2, "{found}");
    assert!(
        said.iter()
            .any(|f| f["details"]["read_late"].as_u64().unwrap() >= 1),
        "{said:?}"
    );
}

/// Addresses mail cannot go to are refused when saved, not dropped silently at sending.
#[test]
fn email_addresses_are_checked_when_saved() {
    let s = Server::start();
    let (status, body) = s.call(
        "POST",
        "/api/v1/people",
        Some(&s.admin),
        Some(json!({ "name": "erin", "role": "member",
                     "email": "Erin <erin@example.com>\r\nBcc: x@evil.example" })),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains("evil"), "{body}");
    s.ok(
        "POST",
        "/api/v1/people",
        Some(&s.admin),
        Some(json!({ "name": "erin", "role": "member", "email": "erin@example.com" })),
    );
    let (status, body) = s.call(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active",
                     "contacts": [{ "name": "Ada", "email": "not an address" }] })),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("Ada"),
        "{body}"
    );
}

/// Staff write what approvers, auditors and contractors read: a profile, an agreement's
/// title, evidence, a policy. None of it may carry a terminal escape or hidden text.
#[test]
fn text_others_read_refuses_control_and_hidden_characters() {
    let s = Server::start();
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active", "legal_name": "Acme GmbH" })),
    );
    let refused = |method: &str, path: &str, body: Value, field: &str| {
        let (status, answer) = s.call(method, path, Some(&s.admin), Some(body), None);
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`")),
            "{answer}"
        );
    };
    refused(
        "PUT",
        "/api/v1/vendors/acme",
        json!({ "legal_name": "Acme\u{1b}[2J GmbH" }),
        "legal_name",
    );
    refused(
        "PUT",
        "/api/v1/vendors/acme",
        json!({ "contacts": [{ "name": "Ada\u{202e}nimda" }] }),
        "contacts",
    );
    refused(
        "PUT",
        "/api/v1/vendors/acme",
        json!({ "functions": ["backups\u{200b}"] }),
        "functions",
    );
    refused(
        "POST",
        "/api/v1/vendors/acme/agreements",
        json!({ "kind": "nda", "title": "NDA\u{1b}]8;;https://evil.example\u{7}" }),
        "title",
    );
    refused(
        "POST",
        "/api/v1/vendors/acme/evidence",
        json!({ "kind": "iso27001", "issuer": "TÜV\u{9b}2J", "expires": "2030-01-01" }),
        "issuer",
    );
    refused(
        "POST",
        "/api/v1/policies",
        json!({ "name": "acceptable-use", "title": "Use", "text": "Be kind.\u{1b}[8m hidden" }),
        "text",
    );
    // Nothing was changed or made.
    let vendor = s.ok("GET", "/api/v1/vendors/acme", Some(&s.admin), None);
    assert_eq!(vendor["legal_name"], "Acme GmbH");
    assert!(vendor.get("contacts").is_none(), "{vendor}");
    let policies = s.ok("GET", "/api/v1/policies", Some(&s.admin), None);
    assert!(policies.as_array().unwrap().is_empty(), "{policies}");
    // A policy keeps its lines and tabs, and other scripts are text like any other.
    s.ok(
        "POST",
        "/api/v1/policies",
        Some(&s.admin),
        Some(json!({ "name": "acceptable-use", "title": "Nutzung",
                     "text": "1. Be kind.\r\n\t2. Sei freundlich: äöü, 日本語.\n" })),
    );
}

/// The `internal` level as the server has it, to copy.
fn stepped_level(s: &Server) -> Value {
    s.ok("GET", "/api/v1/levels", Some(&s.admin), None)
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "internal")
        .unwrap()
        .clone()
}

/// Access to a level that asks a fresh second factor of its readers asks one of its
/// approvers too: a session hours old (or taken) does not hand it out; a denial needs none.
#[test]
fn approving_access_to_a_step_up_level_needs_a_fresh_code() {
    let s = Server::start();
    vendor(&s, "acme");
    let cy = s.person("cy", "contractor", Some("acme"));
    let ann = s.person("ann", "approver", None);
    let (cy_t, ann_t) = (s.login(&cy), s.login(&ann));
    let mut stepped = stepped_level(&s);
    stepped["name"] = json!("stepped");
    stepped["rank"] = json!(15);
    stepped["step_up"] = json!(true);
    s.ok(
        "PUT",
        "/api/v1/levels/stepped",
        Some(&s.admin),
        Some(stepped),
    );
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "acme/keys", "level": "stepped" })),
    );
    let ask = |prefix: &str| -> String {
        let asked = s.ok(
            "POST",
            "/api/v1/requests",
            Some(&cy_t),
            Some(json!({ "prefix": prefix, "capabilities": ["read"],
                         "reason": "release", "duration": "1d" })),
        );
        asked["id"].as_str().unwrap().to_owned()
    };
    let decide = |id: &str, verb: &str| {
        s.call(
            "POST",
            &format!("/api/v1/requests/{id}/{verb}"),
            Some(&ann_t),
            Some(json!({})),
            None,
        )
    };
    // A folder whose highest level has no step-up, over a folder whose level has: approving
    // access to the whole of it asks a code too.
    let mut top = stepped_level(&s);
    top["name"] = json!("top");
    top["rank"] = json!(25);
    top["step_up"] = json!(false);
    s.ok("PUT", "/api/v1/levels/top", Some(&s.admin), Some(top));
    for (prefix, level) in [("acme/merge", "top"), ("acme/merge/deep", "stepped")] {
        s.ok(
            "PUT",
            "/api/v1/classifications",
            Some(&s.admin),
            Some(json!({ "prefix": prefix, "level": level })),
        );
    }
    let ada = s.person("ada", "admin", None);
    let ada_t = s.login(&ada);
    let (keys, plain, denied) = (ask("acme/keys"), ask("acme/app"), ask("acme/keys/ci"));
    let merged = ask("acme/merge");
    // The login's code is 16 minutes old: past the step-up window, within the session's.
    s.clock.advance_secs(16 * 60);
    assert_eq!(decide(&merged, "approve").0, 403);
    // A break-glass grant there is handed out after a fresh code too.
    let glass = json!({ "person": "cy", "prefix": "acme/keys", "capabilities": ["read"],
                        "ttl": "1d", "reason": "incident 7" });
    let (status, body) = s.call(
        "POST",
        "/api/v1/grants",
        Some(&ada_t),
        Some(glass.clone()),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("step_up_required")),
        "{body}"
    );
    let (status, body) = decide(&keys, "approve");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("step_up_required")),
        "{body}"
    );
    let refused: Vec<Value> = s
        .ledger()
        .into_iter()
        .filter(|e| {
            e["action"] == "access.approve"
                && e["outcome"] == "denied"
                && e["resource"] == format!("/api/v1/requests/{keys}/approve")
        })
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["reasons"], json!(["step_up_required"]));
    // A level without step-up, and a denial, need no code.
    assert_eq!(decide(&plain, "approve").0, 200);
    assert_eq!(decide(&denied, "deny").0, 200);
    s.ok(
        "POST",
        "/api/v1/auth/verify",
        Some(&ann_t),
        Some(json!({ "totp": s.code(&ann, 0) })),
    );
    let (status, body) = decide(&keys, "approve");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(decide(&merged, "approve").0, 200);
    s.ok(
        "POST",
        "/api/v1/auth/verify",
        Some(&ada_t),
        Some(json!({ "totp": s.code(&ada, 0) })),
    );
    s.ok("POST", "/api/v1/grants", Some(&ada_t), Some(glass));
    // A prefix classified stricter after a request was filed: approvers see the request held
    // to the level it has now, as their approval will hold it.
    let later = ask("acme/later");
    s.ok(
        "PUT",
        "/api/v1/classifications",
        Some(&s.admin),
        Some(json!({ "prefix": "acme/later", "level": "stepped" })),
    );
    let pending = s.ok("GET", "/api/v1/requests?status=pending", Some(&ann_t), None);
    let shown = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == later.as_str())
        .unwrap();
    assert_eq!(shown["level"], "stepped", "{shown}");
}

/// An attestation link mailed to the vendor's contacts is theirs alone: the answer to
/// whoever offboarded (or replaced the link) does not carry its token, and the mailed one
/// signs.
#[test]
fn a_mailed_attestation_link_is_not_shown_to_the_offboarder() {
    let (relay, mails) = smtp_relay(2);
    let s = Server::start_with(|settings| {
        mail_through(settings, relay);
        settings.notify.public_url = Some("https://chaperone.example".into());
    });
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": "acme", "status": "active",
                     "contacts": [{ "name": "Ada", "email": "ada@acme.example" }] })),
    );
    let report = s.ok(
        "POST",
        "/api/v1/vendors/acme/offboard",
        Some(&s.admin),
        Some(json!({ "reason": "contract ended", "attest_within": "10d" })),
    );
    assert_eq!(
        report["attestation"]["mailed_to"],
        json!(["ada@acme.example"])
    );
    assert_eq!(report["attestation"]["path"], "/a#…", "{report}");
    let mail = mails.recv().unwrap();
    let mailed_token = |mail: &str| {
        let at = mail
            .find("https://chaperone.example/a#")
            .expect("the link is mailed");
        mail[at + "https://chaperone.example/a#".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect::<String>()
    };
    let first = mailed_token(&mail);
    assert!(first.len() > 20, "{mail}");
    // Replaced (lost in the contact's mailbox): mailed again, and not shown either.
    let second = s.ok(
        "POST",
        "/api/v1/vendors/acme/attestation",
        Some(&s.admin),
        Some(json!({})),
    );
    assert_eq!(second["path"], "/a#…", "{second}");
    let token = mailed_token(&mails.recv().unwrap());
    assert_ne!(token, first);
    s.remember(&token);
    let (status, body) = s.call(
        "POST",
        "/api/v1/attestations/info",
        None,
        Some(json!({ "token": token })),
        None,
    );
    assert_eq!(status, 200, "{body}");
}
