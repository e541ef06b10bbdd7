//! Real Vault clients against Chaperone's Vault-compatible API, run by the Python that
//! `cargo xtask test` prepares (a virtualenv with the versions pinned in
//! `tests/vault/requirements.txt`): the `hvac` suite, the `bao` CLI, and the contract test
//! that sends the same requests to a real OpenBao (`bao server`) and compares the answers.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, contractor_token, enrol, python};

#[test]
fn vault_clients_and_openbao_agree_with_chaperone() {
    let Some(python) = python() else { return };
    let (dir, server) = Server::up();
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let contractor = contractor_token(&server.addr, &admin, "carol", "acme");
    // Enrolled, never logged in: their TOTP codes are unused, for the userpass logins.
    let (dave_password, dave_totp) =
        enrol(&server.addr, &admin, "dave", "contractor", Some("acme"));
    let (erin_password, erin_totp) = enrol(&server.addr, &admin, "erin", "member", None);
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vault");
    let bao = python.with_file_name("bao");
    let output = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&suite)
        .env("VAULT_ADDR", &server.addr)
        .env("CHAPERONE_ADMIN_TOKEN", &admin)
        .env("CHAPERONE_CONTRACTOR_TOKEN", &contractor)
        .env("BAO_BIN", &bao)
        .env("CHAPERONE_MFA_USER", "dave")
        .env("CHAPERONE_MFA_PASSWORD", &dave_password)
        .env("CHAPERONE_MFA_TOTP_SECRET", &dave_totp)
        .env("CHAPERONE_MEMBER_USER", "erin")
        .env("CHAPERONE_MEMBER_PASSWORD", &erin_password)
        .env("CHAPERONE_MEMBER_TOTP_SECRET", &erin_totp)
        .env_remove("VAULT_TOKEN")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Vault client suite failed\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
    eprintln!("{stdout}");
}
