//! Rotating the key-encryption key on a running server: every secret written before, during
//! and after the rotation stays readable, and every stored key ends up under the new
//! generation.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chaperone_crypto::generation_of;
use chaperone_store::{SealedKey, SealedKind};
use common::{Server, write};
use serde_json::Value;

fn read(s: &Server, path: &str) -> Option<String> {
    let (status, body) = s.call(
        "GET",
        &format!("/api/v1/secrets/data/{path}"),
        Some(&s.admin),
        None,
        None,
    );
    (status == 200).then(|| body["data"]["password"].as_str().unwrap().to_owned())
}

/// The KEK generations of every stored blob of `kind`.
fn generations(s: &Server, kind: SealedKind) -> Vec<u32> {
    let store = s.state.store();
    let mut out = Vec::new();
    let mut after: Option<SealedKey> = None;
    loop {
        let page = s
            .runtime
            .block_on(store.sealed_page(kind, after.as_ref(), 100))
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        out.extend(page.iter().map(|item| generation_of(&item.blob)));
    }
    out
}

fn wait_until_rewrapped(s: &Server, generation: u64) -> Value {
    for _ in 0..600 {
        let status = s.ok("GET", "/api/v1/sys/rotate", Some(&s.admin), None);
        if status["rewrapped_generation"] == generation {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the re-wrapping pass did not finish");
}

#[test]
fn rotation_keeps_every_secret_readable_and_rewraps_every_key() {
    let s = Arc::new(Server::start());
    for i in 0..300 {
        write(&s, &format!("before/s{i}"), &format!("before-value-{i}"));
    }
    // A person with TOTP, so a sealed field is re-wrapped too.
    let person = s.person("pat", "member", None);
    assert!(
        generations(&s, SealedKind::DataKeys)
            .iter()
            .all(|&g| g == 0)
    );

    // Readers and a writer keep going while the generation changes and keys are re-wrapped.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) && reads < 20_000 {
                let i = reads % 300;
                assert_eq!(
                    read(&s, &format!("before/s{i}")).as_deref(),
                    Some(format!("before-value-{i}").as_str()),
                    "a secret became unreadable during the rotation"
                );
                reads += 1;
            }
            reads
        })
    };
    let writer = {
        let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut written = 0;
            while !stop.load(Ordering::SeqCst) && written < 300 {
                write(
                    &s,
                    &format!("during/s{written}"),
                    &format!("during-value-{written}"),
                );
                written += 1;
            }
            written
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let started = s.ok("POST", "/api/v1/sys/rotate", Some(&s.admin), None);
    assert_eq!(started["generation"], 1);
    let done = wait_until_rewrapped(&s, 1);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().unwrap();
    let during = writer.join().unwrap();
    assert!(reads > 0 && during > 0);
    assert!(
        done["progress"]["scanned"].as_u64().unwrap() >= 300,
        "{done}"
    );

    for i in 0..100 {
        write(&s, &format!("after/s{i}"), &format!("after-value-{i}"));
    }
    for i in 0..300 {
        assert_eq!(
            read(&s, &format!("before/s{i}")),
            Some(format!("before-value-{i}"))
        );
    }
    for i in 0..during {
        assert_eq!(
            read(&s, &format!("during/s{i}")),
            Some(format!("during-value-{i}"))
        );
    }
    for i in 0..100 {
        assert_eq!(
            read(&s, &format!("after/s{i}")),
            Some(format!("after-value-{i}"))
        );
    }
    // Every key and sealed field is under generation 1 now; logins still work (the TOTP
    // secret was re-sealed) and so does the ledger's signing key.
    for kind in [
        SealedKind::DataKeys,
        SealedKind::TotpSecrets,
        SealedKind::LedgerSeed,
    ] {
        let found = generations(&s, kind);
        assert!(!found.is_empty(), "{kind:?}");
        assert!(found.iter().all(|&g| g == 1), "{kind:?}: {found:?}");
    }
    s.login(&person);
    s.ok("GET", "/api/v1/ledger/checkpoint", Some(&s.admin), None);

    // Sealing and unsealing again derives the same generations.
    s.ok("POST", "/api/v1/sys/seal", Some(&s.admin.clone()), None);
    s.unseal();
    assert_eq!(read(&s, "before/s7").as_deref(), Some("before-value-7"));
    write(&s, "after/unsealed", "after-unseal-value");
    assert!(
        generations(&s, SealedKind::DataKeys)
            .iter()
            .all(|&g| g == 1)
    );

    // A second rotation goes on to generation 2.
    let started = s.ok("POST", "/api/v1/sys/rotate", Some(&s.admin), None);
    assert_eq!(started["generation"], 2);
    wait_until_rewrapped(&s, 2);
    assert!(
        generations(&s, SealedKind::DataKeys)
            .iter()
            .all(|&g| g == 2)
    );
    assert_eq!(
        read(&s, "after/unsealed").as_deref(),
        Some("after-unseal-value")
    );

    // Both rotations and their completion are in the ledger; only admins may rotate.
    assert_eq!(s.recorded("sys.rotate", "").len(), 2);
    assert_eq!(s.recorded("sys.rotate.complete", "").len(), 2);
    let member = s.login(&person);
    let (status, _) = s.call("POST", "/api/v1/sys/rotate", Some(&member), None, None);
    assert_eq!(status, 403);
    s.assert_no_secret_logged();
}
