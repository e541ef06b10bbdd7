//! The ledger end to end, on a real database: tampering with stored entries is caught by
//! `chaperone ledger verify`, which names the entry; a server killed with SIGKILL under write
//! load loses no entry of a request it acknowledged. Each test runs on SQLite and on
//! PostgreSQL (`CHAPERONE_TEST_POSTGRES_URL`, set by `cargo xtask test`).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaperone_ledger::checkpoint::Checkpoint;
use chaperone_ledger::note::Signer;
use chaperone_ledger::tiles::{encode_bundle, split_bundle};
use common::{Db, Node, fails, ok};
use zeroize::Zeroizing;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Writes `count` secrets through the API; each write appends one entry.
fn write_secrets(node: &Node, prefix: &str, count: usize) {
    let agent = agent();
    for i in 0..count {
        let response = agent
            .put(&format!("{}/api/v1/secrets/data/{prefix}/{i}", node.addr()))
            .header("Authorization", &format!("Bearer {}", node.token))
            .send_json(serde_json::json!({ "data": { "v": format!("value {i}") } }))
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// Reads bundle `index` from the database as its entries.
fn read_bundle(url: &str, index: i64) -> Vec<Vec<u8>> {
    let data: Vec<u8> = query_one(url, "SELECT data FROM ledger_bundles WHERE idx = $1", index);
    split_bundle(index as u64, &data)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

fn query_one(url: &str, sql: &str, bind: i64) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let value: Vec<u8> = sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        value
    })
}

/// Stores `entries` as bundle `index`, as someone with write access to the database would.
fn write_bundle(url: &str, index: i64, entries: &[Vec<u8>]) {
    let data = encode_bundle(entries.iter().map(Vec::as_slice)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        sqlx::query("UPDATE ledger_bundles SET data = $1 WHERE idx = $2")
            .bind(data)
            .bind(index)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
}

fn unverified_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

fn verify_server(node: &Node, config: &Path) -> std::process::Output {
    node.cli(config, &["ledger", "verify", "--server", node.addr()])
}

fn tampering_is_detected_and_named(db: Db) {
    let url = db.url.clone();
    let mut node = Node::init(db);
    let config = tempfile::tempdir().unwrap();
    write_secrets(&node, "t", 300);

    let key = ok(node.cli(config.path(), &["ledger", "key"]));
    let key = key.trim();
    let first = ok(verify_server(&node, config.path()));
    assert!(first.contains("ledger verified"), "{first}");
    // The export verifies offline with the key.
    let export = tempfile::tempdir().unwrap();
    let dir = export.path().to_str().unwrap();
    ok(node.cli(config.path(), &["ledger", "export", dir]));
    let offline = ok(node.cli(config.path(), &["ledger", "verify", dir, "--key", key]));
    assert!(offline.contains("ledger verified"), "{offline}");
    // An export directory someone else prepared cannot turn the export into a write
    // elsewhere: nothing is written through a symbolic link in it.
    let planted = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), planted.path().join("tile")).unwrap();
    let err = fails(node.cli(
        config.path(),
        &["ledger", "export", planted.path().to_str().unwrap()],
    ));
    assert!(
        err.contains("refusing to write through the symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);

    // A tlog-proof of one entry verifies offline, and not once changed.
    let proof = ok(node.cli(config.path(), &["ledger", "prove", "42"]));
    assert!(
        proof.starts_with("c2sp.org/tlog-proof@v1\nextra "),
        "{proof}"
    );
    let proof_file = export.path().join("42.tlog-proof");
    std::fs::write(&proof_file, &proof).unwrap();
    let proof_path = proof_file.to_str().unwrap();
    let checked = ok(node.cli(
        config.path(),
        &["ledger", "verify-proof", proof_path, "--key", key],
    ));
    assert!(checked.contains("entry 42"), "{checked}");
    std::fs::write(&proof_file, proof.replace("index 42\n", "index 43\n")).unwrap();
    let err = fails(node.cli(
        config.path(),
        &["ledger", "verify-proof", proof_path, "--key", key],
    ));
    assert!(err.contains("not at index 43"), "{err}");

    // Search finds the writes to one path, and only those.
    let found = ok(node.cli(
        config.path(),
        &[
            "ledger",
            "search",
            "--action",
            "secret.write",
            "--resource",
            "t/12",
            "--json",
        ],
    ));
    let found: Vec<serde_json::Value> = found
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let resources: HashSet<&str> = found
        .iter()
        .map(|e| e["resource"].as_str().unwrap())
        .collect();
    assert_eq!(
        resources,
        HashSet::from([
            "t/12", "t/120", "t/121", "t/122", "t/123", "t/124", "t/125", "t/126", "t/127",
            "t/128", "t/129"
        ])
    );
    assert!(found.iter().all(|e| e["action"] == "secret.write"));

    // Sealing and unsealing are recorded.
    ok(node.cli(config.path(), &["seal"]));
    ok(common::run_cli(
        node.addr(),
        "",
        &["unseal"],
        &format!("{}\n", node.share),
    ));
    let sys = ok(node.cli(
        config.path(),
        &["ledger", "search", "--action", "sys.", "--json"],
    ));
    let actions: Vec<String> = sys
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].to_string())
        .collect();
    assert_eq!(
        actions,
        ["\"sys.unseal\"", "\"sys.seal\"", "\"sys.unseal\""],
        "{sys}"
    );

    let original = read_bundle(&url, 0);
    assert_eq!(original.len(), 256);
    let cases: Vec<(&str, u64, Vec<Vec<u8>>)> = vec![
        ("one byte changed", 44, {
            let mut e = original.clone();
            let at = e[44]
                .windows(12)
                .position(|w| w == b"\"resource\":\"")
                .unwrap()
                + 12;
            e[44][at] ^= 0x01;
            e
        }),
        ("an entry deleted", 10, {
            let mut e = original.clone();
            e.remove(10);
            e
        }),
        ("two entries swapped", 20, {
            let mut e = original.clone();
            e.swap(20, 21);
            e
        }),
    ];
    for (what, index, tampered) in cases {
        write_bundle(&url, 0, &tampered);
        let err = fails(verify_server(&node, config.path()));
        assert!(
            err.contains("TAMPERED") && err.contains(&format!("entry {index}:")),
            "{what}: {err}"
        );
        write_bundle(&url, 0, &original);
        ok(verify_server(&node, config.path()));
    }

    // A new export into the directory of an earlier one fetches every tile again: a full
    // bundle the server now serves changed is reported, not verified from the old copy.
    let mut changed = original.clone();
    let at = changed[44]
        .windows(12)
        .position(|w| w == b"\"resource\":\"")
        .unwrap()
        + 12;
    changed[44][at] ^= 0x01;
    write_bundle(&url, 0, &changed);
    let err = fails(node.cli(config.path(), &["ledger", "export", dir]));
    assert!(
        err.contains("TAMPERED") && err.contains("serves tile/entries/000 differently"),
        "{err}"
    );
    write_bundle(&url, 0, &original);
    let again = ok(node.cli(config.path(), &["ledger", "export", dir]));
    assert!(again.contains("already there and unchanged"), "{again}");

    // A checkpoint re-signed with another key under the same name.
    let note = std::fs::read_to_string(export.path().join("checkpoint")).unwrap();
    let body = note.split_once("\n\n").unwrap().0.to_owned() + "\n";
    let checkpoint = Checkpoint::parse(&body).unwrap();
    let forger = Signer::new(&checkpoint.origin, &Zeroizing::new([9u8; 32])).unwrap();
    std::fs::write(
        export.path().join("checkpoint"),
        forger.sign(&checkpoint.to_text()).unwrap(),
    )
    .unwrap();
    let err = fails(node.cli(config.path(), &["ledger", "verify", dir, "--key", key]));
    assert!(err.contains("not signed by the ledger key"), "{err}");

    // Truncated below a checkpoint: the server itself refuses to sign the shorter log...
    let size = unverified_size(&ok(node.cli(config.path(), &["ledger", "checkpoint"])));
    ok(verify_server(&node, config.path()));
    node.kill();
    common::sql(&url, &["UPDATE ledger_head SET size = 100 WHERE id = 1"]);
    node.start();
    let err = fails(verify_server(&node, config.path()));
    assert!(err.contains("entries were removed"), "{err}");
    // ...and with the server's own checkpoints deleted too, the verifier's memory catches it.
    common::sql(&url, &["DELETE FROM ledger_checkpoints"]);
    let err = fails(verify_server(&node, config.path()));
    assert!(
        err.contains("TAMPERED") && err.contains("truncated") && err.contains("entry 10"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{size} entries was verified before")),
        "{err}"
    );

    // The newest entry erased while the server runs: it records nothing more (so serves
    // no request that must be recorded) rather than build on a tail it did not write, until
    // the entry is back.
    write_secrets(&node, "tail", 1);
    let shorter = ["UPDATE ledger_head SET size = size - 1 WHERE id = 1"];
    common::sql(&url, &shorter);
    let err = fails(node.cli(config.path(), &["secret", "get", "tail/0"]));
    assert!(
        err.contains("changed in the database outside this server"),
        "{err}"
    );
    common::sql(
        &url,
        &["UPDATE ledger_head SET size = size + 1 WHERE id = 1"],
    );
    ok(node.cli(config.path(), &["secret", "get", "tail/0"]));

    // A running server remembers the largest checkpoint it signed: with the kept
    // checkpoints deleted under it, it signs nothing more.
    write_secrets(&node, "after", 3);
    let signed = unverified_size(&ok(node.cli(config.path(), &["ledger", "checkpoint"])));
    assert!(signed > 100, "{signed}");
    common::sql(&url, &["DELETE FROM ledger_checkpoints"]);
    write_secrets(&node, "later", 2);
    let err = fails(node.cli(config.path(), &["ledger", "checkpoint"]));
    assert!(
        err.contains(&format!("signed a checkpoint at {signed}"))
            && err.contains("checkpoints were removed"),
        "{err}"
    );

    // The whole ledger and its key deleted: the server starts a new log under a new name,
    // which the verifier, remembering which log this server served, refuses.
    node.kill();
    common::sql(
        &url,
        &[
            "DELETE FROM ledger_key",
            "DELETE FROM ledger_checkpoints",
            "DELETE FROM ledger_tiles",
            "DELETE FROM ledger_bundles",
            "DELETE FROM ledger_bundle_chunks",
            "UPDATE ledger_head SET size = 0 WHERE id = 1",
        ],
    );
    node.start();
    let err = fails(verify_server(&node, config.path()));
    assert!(
        err.contains("TAMPERED") && err.contains("served the log"),
        "{err}"
    );
    // The address is remembered without its case.
    let shouted = node.addr().to_ascii_uppercase();
    let err = fails(node.cli(config.path(), &["ledger", "verify", "--server", &shouted]));
    assert!(
        err.contains("TAMPERED") && err.contains("served the log"),
        "{err}"
    );
    // --no-remember is for archived exports: it does not let a replaced log through.
    let err = fails(node.cli(
        config.path(),
        &["ledger", "verify", "--server", node.addr(), "--no-remember"],
    ));
    assert!(
        err.contains("TAMPERED") && err.contains("served the log"),
        "{err}"
    );
}

/// A hostile export costs the auditor no more than a real one: a signed checkpoint claiming
/// 2^40 entries, a bundle that is a device, or one longer than any bundle, is refused with
/// `TAMPERED` and status 1, without sizing anything from the claim.
#[test]
fn a_hostile_export_is_refused_without_running_out_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let signer = Signer::new("hostile.example/log", &Zeroizing::new([7u8; 32])).unwrap();
    let claim = Checkpoint::parse(&format!(
        "hostile.example/log\n{}\n{}\n",
        1u64 << 40,
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    ))
    .unwrap();
    std::fs::write(
        dir.path().join("checkpoint"),
        signer.sign(&claim.to_text()).unwrap(),
    )
    .unwrap();
    let key = signer.verifier().to_string();
    let verify = || {
        common::run_cli_with(
            "",
            "",
            config.path(),
            &[
                "ledger",
                "verify",
                dir.path().to_str().unwrap(),
                "--key",
                &key,
            ],
            "",
        )
    };
    let err = fails(verify());
    assert!(
        err.contains("TAMPERED") && err.contains("no tile/entries/000"),
        "{err}"
    );
    let bundle = dir.path().join("tile/entries/000");
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &bundle).unwrap();
    let err = fails(verify());
    assert!(
        err.contains("TAMPERED") && err.contains("not a regular file"),
        "{err}"
    );
    std::fs::remove_file(&bundle).unwrap();
    // A named pipe would block the reader forever were it opened.
    let made = std::process::Command::new("mkfifo")
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(made.success());
    let err = fails(verify());
    assert!(
        err.contains("TAMPERED") && err.contains("not a regular file"),
        "{err}"
    );
    std::fs::remove_file(&bundle).unwrap();
    let file = std::fs::File::create(&bundle).unwrap();
    file.set_len(3 << 30).unwrap();
    let err = fails(verify());
    assert!(
        err.contains("TAMPERED") && err.contains("more than a tile/entries/000 can"),
        "{err}"
    );
}

#[test]
fn tampering_with_sqlite_is_detected_and_named() {
    tampering_is_detected_and_named(Db::sqlite());
}

#[test]
fn tampering_with_postgres_is_detected_and_named() {
    if let Some(db) = Db::postgres() {
        tampering_is_detected_and_named(db);
    }
}

fn random_below(n: u64) -> u64 {
    use std::io::Read as _;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u64::from_le_bytes(b) % n
}

/// Writers and readers hammer the server while it is killed and restarted; every request
/// answered 2xx must have its entry afterwards, and the whole log must verify.
fn acknowledged_requests_survive_kills(db: Db) {
    const KILLS: usize = 20;
    const CLIENTS: usize = 4;
    let mut node = Node::init(db);
    let config = tempfile::tempdir().unwrap();
    let addr = Arc::new(Mutex::new(node.addr().to_owned()));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (addr, stop, acked) = (addr.clone(), stop.clone(), acked.clone());
        let token = node.token.clone();
        clients.push(std::thread::spawn(move || {
            let agent = agent();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let base = addr.lock().unwrap().clone();
                let url = format!("{base}/api/v1/secrets/data/crash/{c}/{}", i % 50);
                let auth = format!("Bearer {token}");
                let response = if i.is_multiple_of(3) {
                    agent.get(&url).header("Authorization", &auth).call()
                } else {
                    agent
                        .put(&url)
                        .header("Authorization", &auth)
                        .send_json(serde_json::json!({ "data": { "n": i.to_string() } }))
                };
                match response {
                    Ok(r) if r.status().is_success() => {
                        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                        acked.lock().unwrap().push(id);
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(50 + random_below(250)));
        node.kill();
        node.start();
        *addr.lock().unwrap() = node.addr().to_owned();
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "only {} requests succeeded",
        acked.len()
    );

    // Every acknowledged request id is in the ledger.
    let agent = agent();
    let mut recorded = HashSet::new();
    let mut start = 0u64;
    loop {
        let mut response = agent
            .get(&format!(
                "{}/api/v1/ledger/entries?start={start}&end={}",
                node.addr(),
                start + 1000
            ))
            .header("Authorization", &format!("Bearer {}", node.token))
            .call()
            .unwrap();
        let entries: Vec<serde_json::Value> = response.body_mut().read_json().unwrap();
        if entries.is_empty() {
            break;
        }
        start += entries.len() as u64;
        for e in entries {
            recorded.insert(e["request_id"].as_str().unwrap().to_owned());
        }
    }
    let missing: Vec<&String> = acked.iter().filter(|id| !recorded.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged requests have no entry, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
    let verified = ok(verify_server(&node, config.path()));
    assert!(verified.contains("ledger verified"), "{verified}");
}

#[test]
fn acknowledged_requests_survive_kills_on_sqlite() {
    acknowledged_requests_survive_kills(Db::sqlite());
}

#[test]
fn acknowledged_requests_survive_kills_on_postgres() {
    if let Some(db) = Db::postgres() {
        acknowledged_requests_survive_kills(db);
    }
}
