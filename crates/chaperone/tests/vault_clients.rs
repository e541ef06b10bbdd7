//! Real Vault clients against Chaperone's Vault-compatible API: the `hvac` suite in
//! `tests/vault/test_hvac.py`, run by the Python that `cargo xtask test` prepares (a
//! virtualenv with the versions pinned in `tests/vault/requirements.txt`).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, contractor_token, python};

#[test]
fn hvac_suite_passes() {
    let Some(python) = python() else { return };
    let (dir, server) = Server::up();
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let contractor = contractor_token(&server.addr, &admin, "carol", "acme");
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vault/test_hvac.py");
    let output = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&suite)
        .env("VAULT_ADDR", &server.addr)
        .env("CHAPERONE_ADMIN_TOKEN", &admin)
        .env("CHAPERONE_CONTRACTOR_TOKEN", &contractor)
        .env_remove("VAULT_TOKEN")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the hvac suite failed\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
    eprintln!("{stdout}");
}
